"""Image safety checks and checked suggestions on the real scans in ../shared/data (issue 11).

Run: ``.venv/bin/python bench/safety_bench.py [--ct] [--mri] [--quick] [--ct-pose] [--ct-bodies] [--mri-cv DIR]
[--cases A,B]``

CT (``totalseg_example/example_ct.nii.gz``, 3 mm voxels):
  * ``main.py plan ... --treat L3,L4,L5,S1`` (the same code: :func:`planner.cli.plan.run`), then every
    trajectory it returns is checked; each must pass every image check or be reported failing or
    unverified;
  * an independent recheck with the vertebra labels (``example_ct_vertebrae_labels.nii.gz``, never seen
    by the app): the path's axis samples between the first contact with any vertebra label and the
    target that lie outside every vertebra label (a gap); no path the app calls pass may have one;
  * hand-made paths (from the labels: through the canal, through the L5 inferior articular process into
    S1, through the ilium into S1) must fail the right check;
  * the time of each suggestion (the model is built once per level, then cached) against the time of
    the landmark-only suggestion in the same run.

CT body outlines (``--ct-bodies``): the body the zone check and the target use (``SpineModel.body_mask``) per
level of example_ct (no marks) and of the TPTBox crop (L2-L4, 1.5 mm; one mark at L3's label centroid)
against the labelled bodies: the share of the label inside the outline, where the outline lies (the level's
own label, another vertebra's, no label), and the AP extent through the label's centroid.

MRI (``lumbar_mri_vb``, 21 scans, 1 mm voxels, labels of the bodies only, left/right unknown):
  ``plan ... --treat L4,L5`` with two marks (the L1 and L5 label centroids as hints). For each
  suggested trajectory: the target lies inside the labelled body, at 30-50 % of the label's AP depth
  from its posterior wall (along the level's AP axis through the target), within 3 mm of the label's
  mid-sagittal plane, and the zone inside the label; or a clear "cannot suggest" with its reason.
  The landmarks come from the level finder (planner.levels, the MRI developer's work): rerun after
  their landings. The shipped body model was trained on these 21 scans, so these are not held-out numbers;
  ``--mri-cv DIR`` measures each scan with the fold model that did not see it (``DIR/folds.json`` and
  ``DIR/fold<K>.onnx`` of scripts/train_mri_bodies.py), for the level finder and the image checks alike: what
  to expect on scans not in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
CT = DATA / "totalseg_example" / "example_ct.nii.gz"
CT_LABELS = DATA / "totalseg_example" / "example_ct_vertebrae_labels.nii.gz"
MRI = DATA / "lumbar_mri_vb"
#: TotalSegmentator v2 labels of example_ct_vertebrae_labels.
CT_LABEL_OF = {"S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31, "T12": 32, "T11": 33}

from tests.anatomy_reference import label_gaps, label_volume  # noqa: E402  (the labels' own recheck of a path)


# ============================================================================ CT
def bench_ct(quick: bool) -> dict[str, Any]:
    import tempfile

    from planner.checks import evaluate_plan, evaluate_trajectory
    from planner.cli.plan import add_arguments, run
    from planner.imaging import load_path
    from planner.storage import load_plan
    from planner.suggest import suggest_checked
    from planner.trajectory import suggest_trajectory

    vol = next(iter(load_path(CT).images.values()))
    labels = label_volume(CT_LABELS, vol)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = Path(tmp) / "ct.bvnplan"
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        t0 = time.perf_counter()
        rc = run(parser.parse_args([str(CT), "--treat", "L3,L4,L5,S1", "-o", str(plan_path)]))
        out["plan_seconds"] = round(time.perf_counter() - t0, 1)
        out["plan_exit"] = rc
        plan = load_plan(plan_path)
    images = {"ct": vol}
    rep = evaluate_plan(plan, images)
    rows = []
    pass_with_gap = 0
    warned_with_gap = 0
    for t in rep.trajectories:
        gaps = label_gaps(labels, t.path_lps)
        image_rows = {c.name: c.status for c in t.checks if c.name in
                      ("canal", "bone_corridor", "other_bone", "pedicle_clearance", "zone")}
        # the app calls a path PASS when every image check passes; a warning (a clearance below 2 mm,
        # within a voxel of this 3 mm CT) is reported to the physician as such
        if gaps and all(v == "pass" for v in image_rows.values()):
            pass_with_gap += 1
        elif gaps and all(v in ("pass", "warning") for v in image_rows.values()):
            warned_with_gap += 1
        rows.append({"trajectory": f"{t.level_name} {t.side}", "overall": t.overall, "image_checks": image_rows,
                     "label_gaps_mm": [(round(a, 1), round(b, 1)) for a, b in gaps]})
    out["trajectories"] = rows
    out["every_trajectory_passes_or_is_reported"] = all(
        r["overall"] in ("pass", "warning") and all(v in ("pass", "warning") for v in r["image_checks"].values())
        or r["overall"] in ("fail", "unverified") for r in rows)
    out["pass_paths_with_a_label_gap"] = pass_with_gap
    out["warned_paths_with_a_label_gap"] = warned_with_gap

    # hand-made paths (from the labels, not from the app)
    out["hand_made"] = hand_made_ct(plan, vol, labels)

    # timing of a suggestion: image search (model cached after the first level) vs landmarks only, same run
    times = []
    for name in ("L3", "L4", "L5"):
        level = plan.level_by_name(name)
        for side in ("left", "right"):
            t1 = time.perf_counter()
            suggest_checked(plan, level, side, images)
            t2 = time.perf_counter()
            suggest_trajectory(plan, level, side, vol)
            t3 = time.perf_counter()
            times.append((t2 - t1, t3 - t2))
    out["suggestion_seconds_median"] = round(float(np.median([a for a, _ in times])), 2)
    out["suggestion_seconds_max"] = round(float(np.max([a for a, _ in times])), 2)
    out["landmark_suggestion_seconds_median"] = round(float(np.median([b for _, b in times])), 3)
    _ = evaluate_trajectory
    return out


def bench_ct_poses() -> dict[str, Any]:
    """``--ct-pose``: example_ct and its vertebra labels turned, tilted and bent alike (and noise added;
    tests/anatomy_reference.py CT_POSES) or resampled onto a clinical fine grid (CT_GRIDS), written as NIfTI and
    planned with ``main.py plan ... --treat L3,L4,L5,S1``; each trajectory is evaluated on the posed image and
    rechecked against the posed labels. The landmarks of a posed CT can lie far off (bench/anatomy_bench.py
    --pose); the image checks must still never pass a path with a gap outside the vertebrae."""
    import tempfile

    import nibabel as nib

    from planner.checks import evaluate_plan
    from planner.cli.plan import add_arguments, run
    from planner.imaging import load_path
    from planner.storage import load_plan
    from tests.anatomy_reference import CT_GRIDS, CT_POSES, posed_volume

    vol = next(iter(load_path(CT).images.values()))
    labels = label_volume(CT_LABELS, vol)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pose in (*CT_POSES, *CT_GRIDS):
            posed, _, _ = posed_volume(vol, pose)
            posed_labels, _, _ = posed_volume(labels, pose, order=0, fill=0.0)
            image = Path(tmp) / f"{pose}.nii.gz"
            nib.save(nib.Nifti1Image(np.transpose(posed.array, (2, 1, 0)), lps_to_ras @ posed.ijk_to_lps), str(image))
            plan_path = Path(tmp) / f"{pose}.bvnplan"
            parser = argparse.ArgumentParser()
            add_arguments(parser)
            rc = run(parser.parse_args([str(image), "--treat", "L3,L4,L5,S1", "-o", str(plan_path)]))
            row: dict[str, Any] = {"plan_exit": rc, "trajectories": []}
            if plan_path.exists():
                plan = load_plan(plan_path)
                row["levels"] = [lv.name for lv in plan.levels]
                rep = evaluate_plan(plan, {"ct": next(iter(load_path(image).images.values()))})
                for t in rep.trajectories:
                    gaps = label_gaps(posed_labels, t.path_lps)
                    image_rows = {c.name: c.status for c in t.checks if c.name in
                                  ("canal", "bone_corridor", "other_bone", "pedicle_clearance", "zone")}
                    row["trajectories"].append({
                        "trajectory": f"{t.level_name} {t.side}", "overall": t.overall,
                        "image_checks_pass": all(v == "pass" for v in image_rows.values()),
                        "label_gaps_mm": [(round(a, 1), round(b, 1)) for a, b in gaps]})
            out[pose] = row
    return out


def _label_points(labels: Any, value: int) -> np.ndarray:
    idx = np.argwhere(labels.array == value)[:, ::-1]  # (i, j, k)
    return labels.ijk_to_world(idx.astype(float))


def hand_made_ct(plan: Any, vol: Any, labels: Any) -> list[dict[str, Any]]:
    """Paths built from the labels through the canal, the L5 inferior articular process and the ilium."""
    from planner.checks import evaluate_trajectory
    from planner.plan import Trajectory, TrajectoryParams
    from planner.trajectory import vertebra_frame

    out = []
    images = {"ct": vol}
    l5 = plan.level_by_name("L5")
    s1 = plan.level_by_name("S1")
    f5 = vertebra_frame(l5)
    f1 = vertebra_frame(s1)
    # 1. through the canal: a straight path into L5 from straight behind, on the midline (it crosses the
    #    canal by construction: the lamina, the canal, the posterior wall)
    target = f5.body_center_lps
    entry = target - 45.0 * f5.u
    out.append(_hand(plan, Trajectory(level_id=l5.id, side="left", entry_lps=tuple(entry), target_lps=tuple(target),
                                      params=TrajectoryParams(curved=False)), images, "canal", labels))
    # 2. through the L5 inferior articular process into S1: the L5 label voxel behind S1's body, lateral,
    #    nearest to S1's pedicle level, then on to S1's body centre
    l5_pts = _label_points(labels, CT_LABEL_OF["L5"])
    depth = (l5_pts - f1.posterior_wall_lps) @ f1.u
    lat = (l5_pts - f1.body_center_lps) @ f1.l
    height = (l5_pts - f1.body_center_lps) @ f1.s
    for side, sign in (("left", -1.0), ("right", 1.0)):
        sel = (depth < -8.0) & (sign * lat > 8.0) & (sign * lat < 30.0) & (height < 25.0)
        if not sel.any():
            out.append({"path": f"L5 inferior articular process ({side})", "result": "no such label voxels"})
            continue
        iap = l5_pts[sel][np.argmin(height[sel])]
        target = f1.body_center_lps + 0.0
        d = (target - iap) / np.linalg.norm(target - iap)
        entry = iap - 8.0 * d
        out.append(_hand(plan, Trajectory(level_id=s1.id, side=side, entry_lps=tuple(entry), target_lps=tuple(target),
                                          params=TrajectoryParams(curved=False)), images, "other_bone", labels,
                         f"L5 inferior articular process ({side})"))
    # 3. through the ilium into S1: from far lateral and behind through the posterior iliac wing
    for side, sign in (("left", -1.0), ("right", 1.0)):
        target = f1.body_center_lps
        start = target + sign * 85.0 * f1.l - 60.0 * f1.u
        pts = np.linspace(start, target, 200)
        lab = labels.sample(pts, order=0)
        hu = vol.sample(pts, order=1)
        ilium = np.nonzero((lab == 0) & (hu > 250) & (np.abs((pts - f1.body_center_lps) @ f1.l) > 45.0))[0]
        if len(ilium) == 0:
            out.append({"path": f"ilium ({side})", "result": "the line misses the ilium"})
            continue
        entry = pts[max(0, int(ilium[0]) - 10)]
        out.append(_hand(plan, Trajectory(level_id=s1.id, side=side, entry_lps=tuple(entry), target_lps=tuple(target),
                                          params=TrajectoryParams(curved=False)), images, "other_bone", labels,
                         f"ilium ({side})"))
    _ = evaluate_trajectory
    return out


def _hand(plan: Any, traj: Any, images: dict, expect: str, labels: Any, name: Optional[str] = None) -> dict[str, Any]:
    from planner.checks import evaluate_trajectory

    probe = plan.model_copy(deep=True)
    probe.trajectories = [traj]
    rep = evaluate_trajectory(probe, traj, images)
    c = rep.check(expect)
    return {"path": name or expect, "expected": f"{expect} fails", "status": c.status,
            "ok": c.status == "fail", "reason": c.reason[:200], "overall": rep.overall}


# ============================================================================ MRI
def bench_mri(quick: bool, cv_dir: Optional[Path] = None, only: Optional[list[str]] = None,
              pose: Optional[str] = None) -> dict[str, Any]:
    """``--mri``: each scan planned with ``main.py plan --treat L4,L5`` and marks at the L1 and L5 centroids, its
    targets checked against the labels; ``pose`` (tests/anatomy_reference.py MR_POSES, e.g. "slices4"): the scan
    made so first (written as NIfTI; the labels stay on the original grid, the geometry in LPS is the same)."""
    import tempfile

    import nibabel as nib

    from planner.cli.plan import add_arguments, run
    from planner.imaging import load_path
    from planner.levels import mri_bodies
    from planner.storage import load_plan
    from planner.trajectory import vertebra_frame
    from tests.anatomy_reference import fold_of_cases, posed_volume

    cases = sorted(p.name[:-5] for p in MRI.glob("*.json"))
    if quick:
        cases = cases[:4]
    if only:
        cases = [c for c in cases if c in only]
    fold_of = {} if cv_dir is None else fold_of_cases(cv_dir)
    unknown = [c for c in cases if cv_dir is not None and c not in fold_of]
    if unknown:
        raise SystemExit(f"{', '.join(unknown)}: in no fold of {cv_dir / 'folds.json'}")
    shipped = mri_bodies.MODEL_PATH
    counts: Counter = Counter()
    per_case = []
    for case in cases:
        # the model the level finder and the image checks load (planner.levels.mri_bodies.default_net)
        mri_bodies.MODEL_PATH = shipped if cv_dir is None else cv_dir / f"fold{fold_of[case]}.onnx"
        meta = json.loads((MRI / f"{case}.json").read_text())
        cen = meta["body_centroid_lps_mm"]
        if "L1" not in cen or "L5" not in cen:
            per_case.append({"case": case, "result": "no L1 or L5 label"})
            continue
        img_path = MRI / f"{case}_mr.nii.gz"
        with tempfile.TemporaryDirectory() as tmp:
            original = next(iter(load_path(img_path).images.values()))
            if pose is not None:
                posed, _, _ = posed_volume(original, pose, fill=0.0)
                img_path = Path(tmp) / f"{case}_{pose}.nii.gz"
                nib.save(nib.Nifti1Image(np.transpose(posed.array, (2, 1, 0)),
                                         np.diag([-1.0, -1.0, 1.0, 1.0]) @ posed.ijk_to_lps), str(img_path))
            # what the plan was made on (the posed scan read back as the plan command reads it)
            vol = original if pose is None else next(iter(load_path(img_path).images.values()))
            plan_path = Path(tmp) / "p.bvnplan"
            parser = argparse.ArgumentParser()
            add_arguments(parser)
            hints = [f"L1={','.join(str(v) for v in cen['L1'])}", f"L5={','.join(str(v) for v in cen['L5'])}"]
            args = parser.parse_args([str(img_path), "--treat", "L4,L5", "--hint", hints[0], "--hint", hints[1],
                                      "-o", str(plan_path), "--json"])
            t0 = time.perf_counter()
            c0 = time.process_time()
            import contextlib
            import io

            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()) as err:
                rc = run(args)
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - c0
            result = json.loads(buf.getvalue()) if buf.getvalue().strip() else None
            plan = load_plan(plan_path) if plan_path.exists() else None
        if plan is None or result is None:
            counts["cannot suggest"] += 2  # L4 and L5
            per_case.append({"case": case, "exit": rc, "result": err.getvalue().strip()[:200]})
            continue
        from planner.checks import evaluate_plan

        labels = label_volume(MRI / f"{case}_vb.nii.gz", original)
        report = {t.trajectory_id: t for t in evaluate_plan(plan, {"mr": vol}).trajectories}
        rows = []
        canal = set()
        # one outcome per planned path: the plan makes one path per level (both sides searched, the better
        # kept) and lists every side it tried when none passes; a level without any path counts once
        with_path = {r["level"] for r in result["trajectories"] if r["status"] != "none"}
        refused: set[str] = set()
        for r in result["trajectories"]:
            if r["status"] == "none":
                if r["level"] not in with_path and r["level"] not in refused:
                    counts["cannot suggest"] += 1
                    refused.add(r["level"])
                rows.append({"level": r["level"], "side": r["side"], "result": "cannot suggest",
                             "reason": r["message"]})
                continue
            traj = plan.trajectory(r["trajectory_id"])
            level = plan.level(traj.level_id)
            ok, detail = _mri_target_ok(labels, meta["label_values"][level.name], traj, vertebra_frame(level))
            counts["target right" if ok else "target wrong"] += 1
            rep = report[traj.id]
            canal.add(rep.check("canal").basis)
            counts[f"overall {rep.overall}"] += 1
            rows.append({"level": level.name, "side": traj.side, "status": r["status"], "overall": rep.overall,
                         "canal": rep.check("canal").basis, "ok": ok, **detail})
        per_case.append({"case": case, "exit": rc, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
                         "canal": sorted(canal), "trajectories": rows})
    mri_bodies.MODEL_PATH = shipped
    scans = Counter("canal " + ("/".join(c["canal"]) or "-") for c in per_case if "canal" in c)
    return {"model": "shipped" if cv_dir is None else f"held-out folds of {cv_dir}", "pose": pose,
            "counts": dict(counts), "scans": dict(scans), "cases": per_case}


def _mri_target_ok(labels: Any, value: int, traj: Any, frame: Any) -> tuple[bool, dict[str, Any]]:
    """Target inside the labelled body, at 30-50 % of its AP depth from the posterior wall, within 3 mm of
    its mid-sagittal plane, and the zone inside the label."""
    t = np.asarray(traj.target_lps, dtype=float)
    inside = int(labels.sample(t[None, :], order=0)[0]) == value
    line = t[None, :] + np.arange(-60.0, 60.0, 0.25)[:, None] * frame.u[None, :]
    lab = labels.sample(line, order=0) == value
    depth_pct = None
    if lab.any():
        idx = np.nonzero(lab)[0]
        post = -60.0 + idx[0] * 0.25
        ant = -60.0 + idx[-1] * 0.25
        depth_pct = 100.0 * (0.0 - post) / max(ant - post, 1e-6)
    pts = np.argwhere(labels.array == value)[:, ::-1]
    centre = labels.ijk_to_world(pts.mean(axis=0)) if len(pts) else t
    lateral = abs(float((t - centre) @ frame.l))
    r = traj.params.zone_diameter_mm / 2.0
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3))
    sphere = t[None, :] + r * v / np.linalg.norm(v, axis=1, keepdims=True)
    zone_in = bool(np.all(labels.sample(sphere, order=0) == value))
    ok = bool(inside and depth_pct is not None and 30.0 <= depth_pct <= 50.0 and lateral <= 3.0 and zone_in)
    return ok, {"inside": inside, "depth_pct": None if depth_pct is None else round(depth_pct, 1),
                "lateral_mm": round(lateral, 1), "zone_inside": zone_in}


def bench_ct_bodies() -> list[dict[str, Any]]:
    """``--ct-bodies``: see the module docstring."""
    from planner.imaging import load_path
    from planner.levels import propose_levels_detailed
    from planner.plan import Plan
    from planner.safety.build import anchors_of, approach_box, spine_model
    from planner.trajectory import vertebra_frame
    from tests.anatomy_reference import ct_cases, sample_mask

    rows = []
    for key, case in ct_cases(DATA).items():
        vol = next(iter(load_path(case["image"]).images.values()))
        hints = None if key == "totalseg" else {"L3": case["bodies"]["L3"].centroid}
        plan = Plan(levels=list(propose_levels_detailed(vol, hints).levels))
        a = case["ijk_to_lps"]
        for value, name in case["names"].items():
            level = plan.level_by_name(name)
            if level is None or level.landmarks.posterior_wall_lps is None:
                rows.append({"ct": key, "level": name, "result": "no level or no walls"})
                continue
            frame = vertebra_frame(level)
            box = approach_box(vol, anchors_of([level])[0])
            model = spine_model(vol, plan.levels, box)
            outline = model.body_mask(model.owner_index(level.id))
            body = (case["labels"] == value) & case["body_mask"]
            label_pts = (np.argwhere(body) @ a[:3, :3].T) + a[:3, 3]
            outline_pts = model.grid.lps_of(np.argwhere(outline))
            ijk = np.rint((outline_pts - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T).astype(int)
            inside = np.all((ijk >= 0) & (ijk < np.array(body.shape)), axis=1)
            under = np.full(len(ijk), -1)
            under[inside] = case["labels"][tuple(ijk[inside].T)]
            t = np.arange(-40.0, 40.0, 0.25)
            line = case["bodies"][name].centroid + t[:, None] * frame.u

            def extent(member: np.ndarray) -> Optional[list[float]]:
                """The run of ``member`` through the middle of ``t`` (the centroid), as [from, to] mm."""
                k = len(t) // 2
                if not member[k]:
                    return None
                lo, hi = k, k
                while lo > 0 and member[lo - 1]:
                    lo -= 1
                while hi < len(t) - 1 and member[hi + 1]:
                    hi += 1
                return [float(t[lo]), float(t[hi])]

            rows.append({"ct": key, "level": name,
                         "label_inside_outline": round(float(np.mean(model.inside(outline, label_pts))), 2),
                         "outline_in_own_label": round(float(np.mean(under == value)), 2),
                         "outline_in_other_vertebra": round(float(np.mean((under > 0) & (under != value))), 2),
                         "outline_unlabelled": round(float(np.mean(under <= 0)), 2),
                         "ap_label_mm": extent(sample_mask(body, a, line) >= 0.5),
                         "ap_outline_mm": extent(model.inside(outline, line))})
    return rows


def _plain(value: Any) -> Any:
    """numpy numbers and arrays and paths as JSON (a numpy bool as true/false, not the string "False");
    anything else is an error that names its type."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} in the benchmark's JSON")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ct", action="store_true", help="only the CT part")
    ap.add_argument("--mri", action="store_true", help="only the MRI part")
    ap.add_argument("--quick", action="store_true", help="four MRI scans only")
    ap.add_argument("--ct-pose", action="store_true",
                    help="only example_ct turned, tilted, bent and with noise (tests/anatomy_reference.py CT_POSES), "
                         "and on a clinical 0.75 x 0.75 x 1 mm grid (CT_GRIDS): "
                         "plan, checks and the recheck against the labels posed alike")
    ap.add_argument("--mri-cv", type=Path, metavar="DIR",
                    help="MRI part with the held-out fold models of DIR (folds.json, fold<K>.onnx of "
                         "scripts/train_mri_bodies.py) instead of the shipped model, which saw these scans")
    ap.add_argument("--cases", help="MRI part on these scans only (comma-separated, e.g. VB1_03,VB3_11)")
    ap.add_argument("--mri-pose", choices=["slices4", "oblique-turn10", "oblique-turn20", "oblique-tilt10"],
                    help="MRI part on the scans made so first (tests/anatomy_reference.py MR_POSES and MR_GRIDS; "
                         "slices4: 4 mm sagittal slices, as a clinical sagittal T2; oblique-*: 4 mm slices on a grid "
                         "turned about the long axis or tilted in the coronal plane)")
    ap.add_argument("--ct-bodies", action="store_true",
                    help="only the CT body outlines (the zone's and the target's body) against the labelled bodies")
    ap.add_argument("--json", action="store_true", help="print everything as JSON")
    args = ap.parse_args(argv)
    if args.ct_bodies:
        rows = bench_ct_bodies()
        if args.json:
            print(json.dumps(rows, indent=1, default=_plain))
            return 0
        print("CT body outlines against the labelled bodies (share of the label inside the outline; where the outline"
              " lies: own label / another vertebra's / no label; AP extent through the label's centroid, mm):")
        for r in rows:
            if "result" in r:
                print(f"  {r['ct']:<8} {r['level']:<4} {r['result']}")
                continue
            print(f"  {r['ct']:<8} {r['level']:<4} label inside {r['label_inside_outline']:.2f}  outline "
                  f"{r['outline_in_own_label']:.2f} / {r['outline_in_other_vertebra']:.2f} / "
                  f"{r['outline_unlabelled']:.2f}  AP label {r['ap_label_mm']} outline {r['ap_outline_mm']}")
        return 0
    if args.ct_pose:
        poses = bench_ct_poses()
        if args.json:
            print(json.dumps(poses, indent=1, default=_plain))
            return 0
        bad = 0
        for pose, row in poses.items():
            print(f"CT example_ct {pose}: plan exit {row['plan_exit']}, levels {row.get('levels', '-')}")
            for t in row["trajectories"]:
                flag = ""
                if t["label_gaps_mm"] and t["image_checks_pass"]:
                    flag, bad = "  <- PASSES ITS IMAGE CHECKS WITH A GAP", bad + 1
                print(f"  {t['trajectory']:<10} {t['overall']:<10} label gaps {t['label_gaps_mm'] or 'none'}{flag}")
        print(f"paths whose image checks all pass, with a gap outside the vertebra labels: {bad}")
        return 0
    both = not args.ct and not args.mri
    out: dict[str, Any] = {"load_average_start": list(os.getloadavg())}
    if args.ct or both:
        out["ct"] = bench_ct(args.quick)
    if args.mri or both:
        out["mri"] = bench_mri(args.quick, args.mri_cv, args.cases.split(",") if args.cases else None,
                               args.mri_pose)
    out["load_average_end"] = list(os.getloadavg())
    if args.json:
        print(json.dumps(out, indent=1, default=_plain))
        return 0
    print(f"load average (1, 5, 15 min) at the start {out['load_average_start']}, at the end {out['load_average_end']} "
          f"on {os.cpu_count()} CPUs (wall times grow with the load; CPU times do not)")
    if "ct" in out:
        ct = out["ct"]
        print(f"CT example_ct: plan L3,L4,L5,S1 in {ct['plan_seconds']} s (exit {ct['plan_exit']})")
        for r in ct["trajectories"]:
            print(f"  {r['trajectory']:<10} {r['overall']:<10} image checks {r['image_checks']} label gaps "
                  f"{r['label_gaps_mm'] or 'none'}")
        print(f"  every trajectory passes every image check or is reported failing/unverified: "
              f"{ct['every_trajectory_passes_or_is_reported']}")
        print(f"  paths whose image checks all pass, with a gap outside the vertebra labels: "
              f"{ct['pass_paths_with_a_label_gap']}; paths with an image-check warning and such a gap: "
              f"{ct['warned_paths_with_a_label_gap']}")
        for h in ct["hand_made"]:
            print(f"  hand-made path through the {h['path']}: {h.get('status', '-')} "
                  f"({'right' if h.get('ok') else 'WRONG'}; {h.get('reason', h.get('result', ''))})")
        print(f"  suggestion time (image search, model cached per level): median {ct['suggestion_seconds_median']} s, "
              f"max {ct['suggestion_seconds_max']} s; landmark-only suggestion (same run): median "
              f"{ct['landmark_suggestion_seconds_median']} s")
    if "mri" in out:
        m = out["mri"]
        print(f"MRI lumbar_mri_vb ({len(m['cases'])} scans{', ' + m['pose'] if m['pose'] else ''}, {m['model']} "
              "body model), plan --treat L4,L5 with hints "
              f"at the L1 and L5 centroids:")
        for c in m["cases"]:
            if "trajectories" not in c:
                print(f"  {c['case']}: {c.get('result')}")
                continue
            bits = []
            for r in c["trajectories"]:
                if r.get("result") == "cannot suggest":
                    bits.append(f"{r['level']} {r['side']} CANNOT SUGGEST: {r['reason']}")
                else:
                    bits.append(f"{r['level']} {r['side']} {'ok' if r['ok'] else 'WRONG'} {r['overall']} (depth "
                                f"{r['depth_pct']}%, lateral {r['lateral_mm']} mm, inside {r['inside']}, zone inside "
                                f"{r['zone_inside']})")
            print(f"  {c['case']} ({c['seconds']} s wall, {c['cpu_seconds']} s CPU; canal {'/'.join(c['canal']) or '-'}): "
                  + "\n      ".join([""] + bits))
        print(f"  counts: {m['counts']}")
        print(f"  scans by the canal row: {m['scans']} (MRI: the canal is measured where its fluid is bright)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
