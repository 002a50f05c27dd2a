"""Default target placement on real anatomy: does the target (and its ablation zone) stay inside the
vertebral body on the 21 labelled lumbar MRIs of ``../shared/data/lumbar_mri_vb``?

For every labelled body the landmarks of a level (body centre, endplate centres, wall midpoints at the
midline) are measured from the manual body label alone: the principal axes of the body in its
mid-sagittal plane give the AP and craniocaudal directions, and the landmarks are the label's extreme
points along them through the centre. :func:`planner.trajectory.place_target` then places the default
target with the default settings (canal margin from the zone edge) and with the margin measured from the
zone centre, and the script reports, per rule:

* targets whose voxel lies in the body's own label (the acceptance: all of them),
* the share of the ablation zone (sampled sphere) inside the body label,
* the depth the target ended at and the placements whose depth and margin conflict.

The reference measured in the same run is the body centre, which lies inside the label by
construction of the landmarks: a target placement can do no better than the centre on the "inside"
count. Run: ``.venv/bin/python bench/target_bench.py [--data ../shared/data/lumbar_mri_vb]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.imaging.importer import load_path  # noqa: E402
from planner.plan import Landmarks, Level  # noqa: E402
from planner.settings import PlanningSettings  # noqa: E402
from planner.trajectory import place_target, vertebra_frame  # noqa: E402

#: Half-width (mm) of the band through the centre in which the extreme label points are taken.
BAND_MM = 3.0


def _only_volume(path: Path):
    res = load_path(path)
    [vol] = list(res.images.values())
    return vol


def body_landmarks(labels: np.ndarray, ijk_to_lps: np.ndarray, value: int) -> Landmarks | None:
    """Landmarks of one labelled body (LPS mm) from its label mask."""
    ijk = np.argwhere(labels == value)[:, ::-1]  # (k, j, i) array order -> (i, j, k) = (col, row, slice)
    if len(ijk) < 500:
        return None
    pts = (np.c_[ijk, np.ones(len(ijk))] @ ijk_to_lps.T)[:, :3]
    c = pts.mean(axis=0)
    # mid-sagittal band: within BAND_MM of the centre left-right (LPS x)
    mid = pts[np.abs(pts[:, 0] - c[0]) <= BAND_MM]
    yz = mid[:, 1:] - c[1:]
    w, v = np.linalg.eigh(np.cov(yz.T))
    ap2, si2 = v[:, 1], v[:, 0]  # larger spread: AP (lumbar bodies are deeper than high)
    u = np.array([0.0, *ap2])
    s = np.array([0.0, *si2])
    if u[1] > 0:  # u points anterior (LPS -y)
        u = -u
    if s[2] < 0:  # s points superior (+z)
        s = -s
    d = mid - c
    along_u, along_s = d @ u, d @ s
    band_u = np.abs(along_s) <= BAND_MM
    band_s = np.abs(along_u) <= BAND_MM
    if band_u.sum() < 5 or band_s.sum() < 5:
        return None
    return Landmarks(body_center_lps=tuple(c), posterior_wall_lps=tuple(c + along_u[band_u].min() * u),
                     anterior_wall_lps=tuple(c + along_u[band_u].max() * u),
                     inferior_endplate_lps=tuple(c + along_s[band_s].min() * s),
                     superior_endplate_lps=tuple(c + along_s[band_s].max() * s))


def label_at(vol, labels: np.ndarray, pts_lps: np.ndarray) -> np.ndarray:
    ijk = np.rint(vol.world_to_ijk(np.atleast_2d(pts_lps))).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape[::-1])), axis=1)
    out = np.zeros(len(ijk), dtype=labels.dtype)
    i, j, k = ijk[inside].T
    out[inside] = labels[k, j, i]
    return out


def sphere(center: np.ndarray, radius: float, step: float = 1.0) -> np.ndarray:
    g = np.arange(-radius, radius + 1e-9, step)
    p = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return center + p[np.linalg.norm(p, axis=1) <= radius]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "lumbar_mri_vb"))
    args = ap.parse_args()
    folder = Path(args.data)
    cases = sorted(p.name[:-5] for p in folder.glob("*.json"))
    rules = {"zone_edge": PlanningSettings(), "zone_centre": PlanningSettings(canal_margin_from="zone_centre")}
    stats = {r: {"n": 0, "inside": 0, "zone_in": [], "depth": [], "conflict": 0, "unresolvable": 0,
                 "outside": []} for r in rules}
    centre_inside = 0
    t0 = time.perf_counter()
    for case in cases:
        meta = json.loads((folder / f"{case}.json").read_text())
        vol = _only_volume(folder / f"{case}_vb.nii.gz")
        labels = np.asarray(vol.array)
        for name, value in meta["label_values"].items():
            lm = body_landmarks(labels, vol.ijk_to_lps, int(value))
            if lm is None:
                continue
            level = Level(name=name, landmarks=lm)
            frame = vertebra_frame(level)
            centre_inside += int(label_at(vol, labels, np.asarray(lm.body_center_lps))[0] == value)
            for rule, st in rules.items():
                p = place_target(frame, st)
                sr = stats[rule]
                sr["n"] += 1
                hit = label_at(vol, labels, p.target_lps)[0] == value
                sr["inside"] += int(hit)
                if not hit:
                    sr["outside"].append(f"{case} {name}")
                zone = sphere(p.target_lps, st.zone_diameter_mm / 2)
                sr["zone_in"].append(float(np.mean(label_at(vol, labels, zone) == value)))
                sr["depth"].append(p.depth_pct)
                sr["conflict"] += int(bool(p.conflict))
                sr["unresolvable"] += int(p.conflict_unresolvable)
    dt = time.perf_counter() - t0
    n = stats["zone_edge"]["n"]
    print(f"{len(cases)} MRIs, {n} labelled bodies, {dt:.1f} s")
    print(f"reference: body centre inside its own label: {centre_inside}/{n}")
    for rule, sr in stats.items():
        zi = np.array(sr["zone_in"])
        dp = np.array(sr["depth"])
        print(f"canal margin from the {rule.replace('_', ' ')}: target inside its body {sr['inside']}/{sr['n']}; "
              f"zone inside the body: median {100 * np.median(zi):.0f}%, min {100 * zi.min():.0f}%; "
              f"depth {dp.min():.0f}-{dp.max():.0f}% (median {np.median(dp):.0f}%); depth/margin conflict "
              f"{sr['conflict']} ({sr['unresolvable']} cannot both be met)")
        if sr["outside"]:
            print("   outside: " + ", ".join(sr["outside"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
