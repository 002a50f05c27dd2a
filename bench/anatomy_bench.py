"""Anatomy benchmark: the level finder on the real labelled scans of ../shared/data.

Per scan and in total: levels found and named right, body-centre error, posterior/anterior wall and
endplate errors against the labels, pedicle errors on CT, time and peak memory.

Scans and marks:

* the 21 MRIs of ``lumbar_mri_vb/`` (1 mm, 8-bit, no DICOM header; left and right unknown, see that
  folder's README, section 0), loaded with the project's own NIfTI reader (``planner.imaging``), in three
  modes: ``centroid`` (marks at the L1 and L5 label centroids), ``moved`` (the same marks moved 5 mm in
  a random direction that stays inside the body; fixed seed per scan) and ``none`` (no marks);
* the CTs: ``totalseg`` (``totalseg_example/example_ct.nii.gz``, 3 mm, no marks) and ``tptbox``
  (``tptbox_vertebra_crops/sample_ct``, the L2-L4 crop at 1.5 mm; one mark at the L3 label centroid,
  as there is no sacrum to count from).

The reference (walls and endplates on the mid-sagittal line through the labelled body's centroid, the
pedicle centre from the labels) is defined and computed in ``tests/anatomy_reference.py``, independently
of ``planner.levels``; this script calls only the public API (``propose_levels_detailed``), so it
measures whatever the package does.

Time and memory are measured per scan in a subprocess of its own: wall time of the
``propose_levels_detailed`` call (and its CPU time: on a shared machine the wall time grows with the
load), and the subprocess's peak resident memory (``ru_maxrss``: the
interpreter, the libraries and the loaded image included; the rise during the call is printed too). The time to import the same image with ``planner.imaging.load_path`` is
printed beside it as the reference measured in the same run. Each subprocess runs under an address-space
limit (``--limit-gib``) so that a runaway allocation ends as a MemoryError in the report instead of
exhausting the machine.

Usage::

    .venv/bin/python bench/anatomy_bench.py                      # everything (about 4 minutes)
    .venv/bin/python bench/anatomy_bench.py --cases VB3_01,VB2_04 --modes centroid
    .venv/bin/python bench/anatomy_bench.py --no-mri             # the CTs only
    .venv/bin/python bench/anatomy_bench.py --json out.json      # also write every number
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("BVN_SHARED_DATA", ROOT.parent / "shared" / "data"))
MRI_DIR = SHARED / "lumbar_mri_vb"
MODES = ("centroid", "moved", "none")
from tests.anatomy_reference import FOV_CUTS  # noqa: E402  (the cut fields of view of --fov)
from tests.anatomy_reference import fold_of_cases  # noqa: E402  (the held-out fold of each MRI)
#: Issue 10 acceptance (MRI with marks; CT pedicles; every scan).
ACCEPT = {"found_share": 0.97, "centre_median": 3.0, "centre_p95": 6.0, "wall_median": 2.0,
          "ct_pedicle_tptbox": 3.0, "ct_pedicle_totalseg": 4.5, "time_s": 10.0, "peak_gib": 2.0}


# ------------------------------------------------------------------------------------ one run (child)
def marks_for(case: dict, mode: str, seed: int) -> Optional[dict[str, list[float]]]:
    """The marks of a run: None (no marks), the L1 and L5 centroids, or those moved 5 mm inside the body."""
    from tests.anatomy_reference import moved_mark

    if mode == "none" or mode in FOV_CUTS:
        return None
    code = {n: v for v, n in case["names"].items()}
    out = {}
    rng = np.random.default_rng(seed)
    for name in ("L1", "L5"):
        c = case["bodies"][name].centroid
        if mode == "moved":
            c = moved_mark(case["labels"], case["ijk_to_lps"], code[name], c, rng)
        out[name] = [float(v) for v in c]
    return out


def run_one(kind: str, case_name: str, mode: str, model: Optional[str] = None) -> dict[str, Any]:
    """Load one scan, run the level finder and score it (in the current process); ``model``: the MRI body
    finder's model (ONNX) instead of the shipped one."""
    import resource

    from planner.imaging import load_path
    from planner.levels import DetectionParams, LevelDetectionError, propose_levels_detailed
    from planner.levels.params import MrBodiesParams
    from tests.anatomy_reference import ct_cases, fov_cut, mri_case, score_levels

    if kind == "mri":
        case = mri_case(MRI_DIR, case_name)
        image = MRI_DIR / f"{case_name}_mr.nii.gz"
        hints = marks_for(case, mode, seed=sum(map(ord, case_name)))
    else:
        case = ct_cases(SHARED)[case_name]
        image = case["image"]
        hints = None
        if case_name == "tptbox":
            hints = {"L3": [float(v) for v in case["bodies"]["L3"].centroid]}
    t0 = time.perf_counter()
    loaded = load_path(image)
    load_s = time.perf_counter() - t0
    (key, volume), = loaded.images.items()
    if mode in FOV_CUTS:  # a shorter field of view (marks_for gives none)
        volume = fov_cut(volume, case, mode)
    modality = "CT" if kind == "ct" else None
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    c0 = time.process_time()
    error = None
    levels: list = []
    notes: list[str] = []
    try:
        params = None
        if kind == "mri" and model:
            params = DetectionParams(mr_bodies=MrBodiesParams(model_path=model))
        result = propose_levels_detailed(volume, hints, modality=modality, params=params)
        levels, notes = result.levels, result.notes
    except LevelDetectionError as exc:
        error = f"LevelDetectionError: {exc}"
    except MemoryError:
        error = "MemoryError"
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    score = score_levels(levels, case)
    return {"kind": kind, "case": case_name, "mode": mode, "model": model, "hints": hints, "error": error, "notes": notes,
            "names": [lv.name for lv in levels], "time_s": elapsed, "cpu_s": cpu, "load_s": load_s,
            "rss_before_mib": rss0, "rss_peak_mib": rss,
            "shape": list(volume.array.shape), **score}


def run_in_subprocess(kind: str, case_name: str, mode: str, limit_gib: float, model: Optional[str] = None
                      ) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", kind, case_name, mode, "--limit-gib", str(limit_gib)]
    if model:
        cmd += ["--mri-model", model]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"kind": kind, "case": case_name, "mode": mode, "error": "crashed: " + " | ".join(tail),
                "names": [], "labelled": [], "found_right": [], "misnamed": [], "off": [], "levels": {},
                "time_s": float("nan"), "cpu_s": float("nan"), "load_s": float("nan"), "rss_before_mib": float("nan"),
                "rss_peak_mib": float("nan")}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------ summary
def _values(runs: list[dict], key: str, absolute: bool = True) -> np.ndarray:
    vals = [e[key] for r in runs for e in r["levels"].values() if e.get(key) is not None]
    a = np.asarray(vals, float)
    return np.abs(a) if absolute else a


def _stat(a: np.ndarray) -> str:
    if a.size == 0:
        return "      -       -"
    return f"{np.median(a):7.1f} {np.percentile(a, 95):7.1f}"


def summarize(runs: list[dict], title: str) -> dict[str, Any]:
    labelled = sum(len(r["labelled"]) for r in runs)
    right = sum(len(r["found_right"]) for r in runs)
    misnamed = sum(len(r["misnamed"]) for r in runs)
    errors = sum(1 for r in runs if r.get("error"))
    share = right / labelled if labelled else float("nan")
    out = {"runs": len(runs), "labelled": labelled, "found_right": right, "found_share": share,
           "misnamed": misnamed, "errors": errors}
    for key in ("centre", "posterior", "anterior", "superior", "inferior", "pedicle_left", "pedicle_right"):
        a = _values(runs, key)
        out[key] = {"n": int(a.size), "median": float(np.median(a)) if a.size else None,
                    "p95": float(np.percentile(a, 95)) if a.size else None}
    every = sum(1 for r in runs if not r.get("error") and r["labelled"] and len(r["found_right"]) == len(r["labelled"])
                and not r["misnamed"])
    wrong = sum(1 for r in runs if r["misnamed"])
    out["scans_all_right"], out["scans_refused"], out["scans_misnamed"] = every, errors, wrong
    peds = [e["pedicles_measured"] for r in runs for e in r["levels"].values() if "pedicles_measured" in e]
    out["pedicles_measured"] = {"levels": len(peds), "both": sum(v == 2 for v in peds), "one": sum(v == 1 for v in peds)}
    out["time_max_s"] = float(np.nanmax([r["time_s"] for r in runs])) if runs else None
    out["cpu_max_s"] = float(np.nanmax([r["cpu_s"] for r in runs])) if runs else None
    out["rss_peak_max_mib"] = float(np.nanmax([r["rss_peak_mib"] for r in runs])) if runs else None
    print(f"\n== {title}: {len(runs)} runs; levels found and named right {right}/{labelled} ({100 * share:.0f} %); "
          f"misnamed {misnamed}; runs without levels {errors}")
    print(f"   scans with every level found and named right {every}/{len(runs)}; refused with a message {errors}; "
          f"with a wrong name {wrong}")
    print("   error (mm)      n  median     p95")
    for key in ("centre", "posterior", "anterior", "superior", "inferior", "pedicle_left", "pedicle_right"):
        a = _values(runs, key)
        if a.size:
            print(f"   {key:<13} {a.size:4d} {_stat(a)}")
    pm = out["pedicles_measured"]
    print(f"   pedicles measured: both on {pm['both']} and one on {pm['one']} of {pm['levels']} levels named right")
    print(f"   slowest {out['time_max_s']:.1f} s (cpu {out['cpu_max_s']:.1f} s); largest peak resident memory "
          f"{out['rss_peak_max_mib']:.0f} MiB")
    return out


def fov_summary(runs: list[dict], title: str) -> dict[str, Any]:
    """Runs on a cut field of view: scans whose every level found is named right, refused with a message, and
    with a wrong name (a wrong ladder). Bodies cut off by the field of view are not counted as missed."""
    named = [r["case"] for r in runs if not r.get("error") and r["found_right"] and not r["misnamed"]]
    refused = [r["case"] for r in runs if r.get("error")]
    wrong = [r["case"] for r in runs if r["misnamed"]]
    flagged = {r["case"] for r in runs if any(n.startswith("check that the body named") for n in r.get("notes", []))}
    print(f"\n== {title}: {len(runs)} scans; named right {len(named)} ({len(flagged & set(named))} with the note to "
          f"check S1), refused with a message {len(refused)}, named wrong {len(wrong)} "
          f"({len(flagged & set(wrong))} with the note)" + (f": {', '.join(wrong)}" if wrong else ""))
    return {"runs": len(runs), "named_right": named, "refused": refused, "wrong": wrong, "flagged": sorted(flagged)}


def print_run(r: dict) -> None:
    e = r["levels"]
    cen = [v["centre"] for v in e.values()]
    walls = [abs(v[k]) for v in e.values() for k in ("posterior", "anterior") if v.get(k) is not None]
    plates = [abs(v[k]) for v in e.values() for k in ("superior", "inferior") if v.get(k) is not None]
    peds = [v[k] for v in e.values() for k in ("pedicle_left", "pedicle_right") if v.get(k) is not None]
    med = lambda a: f"{np.median(a):5.1f}" if a else "    -"  # noqa: E731
    print(f"{r['case']:<9} {r['mode']:<9} {len(r['found_right'])}/{len(r['labelled'])} right"
          f"{' misnamed ' + ','.join(r['misnamed']) if r['misnamed'] else ''}"
          f"  centre {med(cen)}  walls {med(walls)}  endplates {med(plates)}  pedicles {med(peds)}"
          f"  {r['time_s']:5.1f} s (cpu {r['cpu_s']:.1f} s; load {r['load_s']:.1f} s)  peak {r['rss_peak_mib']:5.0f} MiB"
          f" (+{r['rss_peak_mib'] - r['rss_before_mib']:.0f} in the call)" + (f"  [{r['error']}]" if r.get("error") else ""), flush=True)


# ------------------------------------------------------------------------------------ CT pedicles
#: The CT pedicle search's parameters tried by ``--ct-cv`` (DetectionParams fields; the defaults are among them).
CT_CV_GRID = {"ct_pedicle_close_mm": (0.0, 1.5, 2.0), "ct_pedicle_widening": (1.15, 1.25, 1.5)}
#: The pedicle acceptance per CT (issue 10): within this many mm of the label's isthmus.
CT_PEDICLE_LIMIT = {"totalseg": ACCEPT["ct_pedicle_totalseg"], "tptbox": ACCEPT["ct_pedicle_tptbox"]}


def ct_pedicle_errors(cases: dict, volumes: dict, params: Any) -> dict[str, dict[tuple[str, str], Optional[float]]]:
    """Per CT, per (level, side) with a label reference: the pedicle error (mm), None when not measured."""
    from planner.levels import LevelDetectionError, propose_levels_detailed
    from tests.anatomy_reference import score_levels

    out = {}
    for name, case in cases.items():
        hints = {"L3": case["bodies"]["L3"].centroid} if name == "tptbox" else None
        try:
            levels = propose_levels_detailed(volumes[name], hints, modality="CT", params=params).levels
        except LevelDetectionError:
            levels = []
        score = score_levels(levels, case)
        errs = {}
        for level, ped in case["pedicles"].items():
            for side in ("left", "right"):
                if getattr(ped, side) is not None:
                    errs[(level, side)] = score["levels"].get(level, {}).get(f"pedicle_{side}")
        out[name] = errs
    return out


def _ct_rank(errs: dict[tuple[str, str], Optional[float]], limit: float) -> tuple[int, float]:
    """How well a configuration did on one CT: (pedicles within the limit, -median error of the measured)."""
    got = [e for e in errs.values() if e is not None]
    return sum(e <= limit for e in got), -(float(np.median(got)) if got else 1e9)


def _ct_line(errs: dict[tuple[str, str], Optional[float]], limit: float) -> str:
    got = [e for e in errs.values() if e is not None]
    per = " ".join(f"{lv}{side[0].upper()} {'-' if e is None else f'{e:.1f}'}" for (lv, side), e in errs.items())
    return (f"{sum(e <= limit for e in got)}/{len(errs)} within {limit:g} mm, {len(errs) - len(got)} not measured, "
            f"median {np.median(got) if got else float('nan'):.1f}, max {max(got) if got else float('nan'):.1f}  [{per}]")


def ct_cross_validation() -> None:
    """``--ct-cv``: every configuration of :data:`CT_CV_GRID` on both CTs; for each direction, the
    configuration that does best on the tuning CT (most pedicles within its limit, then the smallest median)
    and what it gives on the held-out one, beside the defaults."""
    import itertools
    from dataclasses import replace

    from planner.imaging import load_path
    from planner.levels import DetectionParams
    from tests.anatomy_reference import ct_cases

    cases = ct_cases(SHARED)
    volumes = {n: next(iter(load_path(c["image"]).images.values())) for n, c in cases.items()}
    base = DetectionParams()
    keys = list(CT_CV_GRID)
    results = []
    for values in itertools.product(*(CT_CV_GRID[k] for k in keys)):
        cfg = dict(zip(keys, values))
        results.append((cfg, ct_pedicle_errors(cases, volumes, replace(base, **cfg))))
        print("  " + ", ".join(f"{k}={v}" for k, v in cfg.items()) + ": " + "; ".join(
            f"{n} {_ct_rank(e, CT_PEDICLE_LIMIT[n])[0]}/{len(e)}" for n, e in results[-1][1].items()), flush=True)
    default = {k: getattr(base, k) for k in keys}
    print("\n== CT pedicles, defaults (" + ", ".join(f"{k}={v}" for k, v in default.items()) + ")")
    for cfg, res in results:
        if cfg == default:
            for n, e in res.items():
                print(f"   {n:<9} {_ct_line(e, CT_PEDICLE_LIMIT[n])}")
    for tune, held in (("totalseg", "tptbox"), ("tptbox", "totalseg")):
        cfg, res = max(results, key=lambda r: _ct_rank(r[1][tune], CT_PEDICLE_LIMIT[tune]))
        print(f"\n== tuned on {tune}, held out {held}: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
        print(f"   tuning   {tune:<9} {_ct_line(res[tune], CT_PEDICLE_LIMIT[tune])}")
        print(f"   held out {held:<9} {_ct_line(res[held], CT_PEDICLE_LIMIT[held])}")


def reference_check() -> None:
    """``--reference-check``: how far the label reference's pedicle centre (tests/anatomy_reference.py) moves
    when its search starts 2.5 mm away in each of six directions, and when its samples and cuts are every
    0.25 mm instead of 0.5 mm."""
    import tests.anatomy_reference as ref

    for name, case in ref.ct_cases(SHARED).items():
        code = {n: v for v, n in case["names"].items()}
        for level, body in case["bodies"].items():
            vert = case["labels"] == code[level]
            body_mask = vert & case["body_mask"]
            ped = case["pedicles"][level]
            fine = ref.pedicle_reference(body, body_mask, vert, case["ijk_to_lps"], sample=0.25)
            for side, centre, centre_fine in ((+1, ped.left, fine.left), (-1, ped.right, fine.right)):
                label = f"{name:<9} {level:<4} {'left' if side > 0 else 'right':<5}"
                if centre is None:
                    print(f"{label} no reference: {ped.why_not[side]}")
                    continue
                sx = side * (int(np.sign(body.e_lat[0])) or 1)
                moved = []
                for d in (body.e_lat, -body.e_lat, body.e_ap, -body.e_ap, body.e_h, -body.e_h):
                    c = ref._narrowest_section(vert, body_mask, case["ijk_to_lps"], body, sx, centre + 2.5 * d)[0]
                    moved.append(float("nan") if c is None else float(np.linalg.norm(c - centre)))
                step = float("nan") if centre_fine is None else float(np.linalg.norm(centre_fine - centre))
                print(f"{label} start moved 2.5 mm: centre moves " + " ".join(f"{m:.2f}" for m in moved)
                      + f" mm; samples every 0.25 mm: {step:.2f} mm", flush=True)


def ct_poses() -> None:
    """``--pose``: both CTs turned, tilted, bent, with noise added (tests/anatomy_reference.py CT_POSES) and on a
    clinical fine grid (CT_GRIDS):
    per pose, the levels named right, misnamed or refused, the body-centre error and the pedicles within
    the acceptance limit, the posterior and anterior wall errors (landmarks mapped back onto the original labels)."""
    from planner.imaging import load_path
    from planner.levels import LevelDetectionError, propose_levels_detailed
    from tests.anatomy_reference import CT_GRIDS, CT_POSES, ct_cases, posed_levels, posed_volume, score_levels

    cases = ct_cases(SHARED)
    limit = {"totalseg": ACCEPT["ct_pedicle_totalseg"], "tptbox": ACCEPT["ct_pedicle_tptbox"]}
    print("CT poses (the image turned about the volume's centre on its own grid, or noise added; the landmarks "
          "mapped back onto the original labels)")
    for name, case in cases.items():
        (_, volume), = load_path(case["image"]).images.items()
        counts = {"named right": 0, "refused": 0, "misnamed": 0, "off": 0}
        for pose in ("none", *CT_POSES, *CT_GRIDS):
            if pose == "none":
                posed, back, forward = volume, (lambda q: q), (lambda q: np.asarray(q, float))
            else:
                posed, back, forward = posed_volume(volume, pose)
            hints = ({"L3": [float(c) for c in forward(case["bodies"]["L3"].centroid)]} if name == "tptbox"
                     else None)
            t0 = time.perf_counter()
            try:
                levels = posed_levels(propose_levels_detailed(posed, hints, modality="CT").levels, back)
                error = ""
            except LevelDetectionError as exc:
                levels, error = [], str(exc)
            dt = time.perf_counter() - t0
            sc = score_levels(levels, case)
            centres = [sc["levels"][n]["centre"] for n in sc["found_right"]]
            walls = [abs(sc["levels"][n][k]) for n in sc["found_right"] for k in ("posterior", "anterior")
                     if sc["levels"][n][k] is not None]
            peds = [sc["levels"].get(lv, {}).get(f"pedicle_{side}") for lv, ped in case["pedicles"].items()
                    for side in ("left", "right") if getattr(ped, side) is not None]
            got = [e for e in peds if e is not None]
            verdict = ("misnamed" if sc["misnamed"] else "refused" if not levels
                       else "named right" if sc["found_right"] else "off")
            if pose != "none":
                counts[verdict] += 1
            print(f"  {name:8s} {pose:8s} {dt:4.1f} s  {verdict:11s} right {len(sc['found_right'])}/{len(sc['labelled'])}"
                  + (f" misnamed {sc['misnamed']}" if sc["misnamed"] else "")
                  + (f"  centre median {np.median(centres):.1f} max {max(centres):.1f} mm" if centres else "")
                  + (f"  walls median {np.median(walls):.1f} max {max(walls):.1f} mm" if walls else "")
                  + f"  pedicles within {limit[name]:g} mm {sum(e <= limit[name] for e in got)}/{len(peds)}"
                  + (f" (max {max(got):.1f})" if got else "") + (f"  [{error[:90]}]" if error else ""))
        print(f"  {name}: of {len(CT_POSES) + len(CT_GRIDS)} poses "
              + ", ".join(f"{v} {k}" for k, v in counts.items()))


#: The poses of the MRIs (``--pose --mri-cv``): turned and tilted by 10 degrees either way (bent: the training's
#: in-plane rotations already cover it), 4 mm sagittal slices (tests/anatomy_reference.py MR_POSES) and oblique
#: 4 mm sagittal grids (MR_GRIDS).
MRI_POSES = ("turn+10", "turn-10", "tilt+10", "tilt-10", "slices4", "oblique-turn10", "oblique-turn20",
             "oblique-tilt10")


def mri_poses(cv_dir: Path, cases: list[str]) -> None:
    """``--pose --mri-cv DIR``: each MRI turned, tilted and thick-sliced (:data:`MRI_POSES`), with the fold model
    that did not see it: with marks at the L1 and L5 centroids (mapped into the posed image) the levels named right,
    misnamed and the body-centre error; without marks the scans named right, refused and named wrong."""
    from planner.imaging import load_path
    from planner.levels import DetectionParams, LevelDetectionError, propose_levels_detailed
    from planner.levels.params import MrBodiesParams
    from tests.anatomy_reference import mri_case, posed_levels, posed_volume, score_levels

    fold_of = fold_of_cases(cv_dir)
    print(f"MRI poses, HELD-OUT (each scan with the fold model of {cv_dir} trained without it)")
    tally = {pose: {"right": 0, "labelled": 0, "misnamed": 0, "centres": [], "worst": 0.0,
                    "no marks": {"named right": 0, "refused": 0, "named wrong": 0}} for pose in MRI_POSES}
    for name in cases:  # each scan and its labels read once
        case = mri_case(MRI_DIR, name)
        (_, volume), = load_path(MRI_DIR / f"{name}_mr.nii.gz").images.items()
        params = DetectionParams(mr_bodies=MrBodiesParams(model_path=str(cv_dir / f"fold{fold_of[name]}.onnx")))
        for pose in MRI_POSES:
            got = tally[pose]
            posed, back, forward = posed_volume(volume, pose, fill=0.0)
            for marks in (True, False):
                hints = ({n: [float(c) for c in forward(case["bodies"][n].centroid)] for n in ("L1", "L5")}
                         if marks else None)
                t0 = time.perf_counter()
                try:
                    levels = posed_levels(propose_levels_detailed(posed, hints, params=params).levels, back)
                except LevelDetectionError:
                    levels = []
                got["worst"] = max(got["worst"], time.perf_counter() - t0)
                sc = score_levels(levels, case)
                if marks:
                    got["right"] += len(sc["found_right"])
                    got["labelled"] += len(sc["labelled"])
                    got["misnamed"] += len(sc["misnamed"])
                    got["centres"] += [sc["levels"][n]["centre"] for n in sc["found_right"]]
                else:
                    key = ("named wrong" if sc["misnamed"] else "refused" if not levels
                           else "named right" if len(sc["found_right"]) == len(sc["labelled"]) else "named wrong")
                    got["no marks"][key] += 1
    for pose, got in tally.items():
        c = np.asarray(got["centres"])
        print(f"  {pose:8s} marks: {got['right']}/{got['labelled']} named right, {got['misnamed']} misnamed, centre "
              f"median {np.median(c):.1f} p95 {np.percentile(c, 95):.1f} mm;  no marks: "
              + ", ".join(f"{v} {k}" for k, v in got["no marks"].items()) + f";  slowest {got['worst']:.1f} s")


def mri_modic(cv_dir: Path, cases: list[str]) -> None:
    """``--modic --mri-cv DIR``: each MRI with Modic-like bands along its L4-L5 disc (tests/anatomy_reference.py
    MODIC_BANDS), with the fold model that did not see it: with marks at the L1 and L5 centroids, the levels named
    right, misnamed, the scans refused (and why), and the errors of the banded bodies L4 and L5; without marks the
    scans named right, refused and named wrong."""
    from planner.imaging import load_path
    from planner.levels import DetectionParams, LevelDetectionError, propose_levels_detailed
    from planner.levels.params import MrBodiesParams
    from tests.anatomy_reference import MODIC_BANDS, modic_banded, mri_case, score_levels

    fold_of = fold_of_cases(cv_dir)
    bands = ("none", *MODIC_BANDS)
    keys = ("centre", "posterior", "anterior", "superior", "inferior")
    print(f"MRI with Modic-like bands at L4-L5, HELD-OUT (each scan with the fold model of {cv_dir} trained "
          "without it)")
    tally = {b: {"right": 0, "labelled": 0, "misnamed": 0, "refused": [], "err": {k: [] for k in keys}, "missing": 0,
                 "no marks": {"named right": 0, "partly named": 0, "refused": 0, "named wrong": 0},
                 "no marks, not right": []} for b in bands}
    for name in cases:
        case = mri_case(MRI_DIR, name)
        (_, volume), = load_path(MRI_DIR / f"{name}_mr.nii.gz").images.items()
        params = DetectionParams(mr_bodies=MrBodiesParams(model_path=str(cv_dir / f"fold{fold_of[name]}.onnx")))
        line = []
        for band in bands:
            got = tally[band]
            image = volume if band == "none" else modic_banded(volume, case["labels"], band)
            for marks in (True, False):
                hints = {n: [float(c) for c in case["bodies"][n].centroid] for n in ("L1", "L5")} if marks else None
                try:
                    levels = propose_levels_detailed(image, hints, params=params).levels
                except LevelDetectionError as e:
                    levels = []
                    if marks:
                        got["refused"].append(f"{name}: {e}")
                sc = score_levels(levels, case)
                if not marks:
                    # a ladder with every name it gives right but some labelled level left unnamed is "partly named"
                    key = ("named wrong" if sc["misnamed"] else "refused" if not levels
                           else "named right" if len(sc["found_right"]) == len(sc["labelled"]) else "partly named")
                    got["no marks"][key] += 1
                    if key != "named right":
                        got["no marks, not right"].append(f"{name} {key}")
                    continue
                got["right"] += len(sc["found_right"])
                got["labelled"] += len(sc["labelled"])
                got["misnamed"] += len(sc["misnamed"])
                for lv in ("L4", "L5"):
                    e = sc["levels"].get(lv)
                    if e is None:
                        got["missing"] += 1
                        line.append(f"{band} {lv} -")
                        continue
                    for k in keys:
                        if e.get(k) is not None:
                            got["err"][k].append(abs(e[k]))
                    line.append(f"{band} {lv} {e['centre']:.1f}")
        print(f"  {name:8s} " + ", ".join(line), flush=True)
    for band, got in tally.items():
        errs = "; ".join(f"{k} {np.median(v):.1f}/{np.percentile(v, 95):.1f}" for k, v in got["err"].items() if v)
        print(f"  {band:8s} marks: {got['right']}/{got['labelled']} named right, {got['misnamed']} misnamed, "
              f"{len(got['refused'])} scans refused; L4/L5 not found {got['missing']}; L4/L5 errors median/p95 mm: "
              f"{errs};  no marks: " + ", ".join(f"{v} {k}" for k, v in got["no marks"].items())
              + (f" ({', '.join(got['no marks, not right'])})" if got["no marks, not right"] else ""))
        for r in got["refused"]:
            print(f"      refused {r}")


def _ring_score(ring: Any, labels: np.ndarray, ijk_to_lps: np.ndarray, value: int, voxel_mm: float) -> str:
    """A canal outline against its vertebra's label in the outline's plane: the share of its points inside the
    ring (the convex hull of the label's section, pulled in by one voxel), its area, and its overlap (IoU)
    with the ring's hole that holds the outline's centre (the part of the hull that is not the label)."""
    from matplotlib.path import Path as MplPath
    from scipy import ndimage
    from scipy.spatial import Delaunay

    ring = np.asarray(ring, float)
    if len(ring) < 8:
        return "no outline"
    c = ring.mean(axis=0)
    _, _, vt = np.linalg.svd(ring - c)
    u, v = vt[0], vt[1]
    g = np.arange(-50.0, 50.0 + 1e-6, 0.5)
    plane = c + g[None, :, None] * u + g[:, None, None] * v
    ijk = np.round((plane - ijk_to_lps[:3, 3]) @ np.linalg.inv(ijk_to_lps[:3, :3]).T).astype(int)
    ijk = np.clip(ijk, 0, np.array(labels.shape) - 1)
    bone = labels[ijk[..., 0], ijk[..., 1], ijk[..., 2]] == value
    gu, gv = np.meshgrid(g, g)
    hull = Delaunay(np.column_stack([gu[bone], gv[bone]]))
    rel = np.column_stack([(ring - c) @ u, (ring - c) @ v])
    pulled = rel - voxel_mm * rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-9)
    inside = float(np.mean(hull.find_simplex(pulled) >= 0))
    area = 0.5 * abs(float(np.dot(rel[:, 0], np.roll(rel[:, 1], -1)) - np.dot(rel[:, 1], np.roll(rel[:, 0], -1))))
    grid_uv = np.column_stack([gu.ravel(), gv.ravel()])
    hole, _ = ndimage.label((hull.find_simplex(grid_uv) >= 0).reshape(bone.shape) & ~bone)
    k = hole[len(g) // 2, len(g) // 2]
    piece = hole == k if k else np.zeros_like(bone)
    poly = MplPath(rel).contains_points(grid_uv).reshape(bone.shape)
    iou = (poly & piece).sum() / max(int((poly | piece).sum()), 1)
    return f"inside {inside:4.0%}  area {area:4.0f} mm2  IoU with the ring's hole {iou:.2f} (hole {piece.sum() * 0.25:.0f} mm2)"


def canal_compare() -> None:
    """``--canal``: on both CTs, per level, the levels package's canal outline and the safety model's
    (planner.safety.canal_outline_lps) against the vertebra's label (:func:`_ring_score`)."""
    from planner.imaging import load_path
    from planner.levels import propose_levels_detailed
    from planner.safety import canal_outline_lps
    from tests.anatomy_reference import ct_cases

    for name, case in ct_cases(SHARED).items():
        volume = next(iter(load_path(case["image"]).images.values()))
        hints = {"L3": case["bodies"]["L3"].centroid} if name == "tptbox" else None
        levels = propose_levels_detailed(volume, hints, modality="CT").levels
        code = {n: v for v, n in case["names"].items()}
        voxel = float(np.max(np.linalg.norm(case["ijk_to_lps"][:3, :3], axis=0)))
        for lv in levels:
            if lv.name not in code:
                continue
            t0 = time.process_time()
            other = canal_outline_lps(volume, lv, levels)
            cpu = time.process_time() - t0
            print(f"{name:<9} {lv.name:<4} levels: {_ring_score(lv.canal_outline_lps, case['labels'], case['ijk_to_lps'], code[lv.name], voxel)}")
            print(f"{'':<14} safety: {_ring_score(other or [], case['labels'], case['ijk_to_lps'], code[lv.name], voxel)}"
                  f"  ({cpu:.1f} s cpu)", flush=True)


def ct_edge_sweep() -> dict[str, dict[str, int]]:
    """``--fov`` on CT: example_ct ending every 4 mm from L4's centroid down to 45 mm below S1's, and starting
    every 4 mm from 10 mm below T12's centroid down to 10 mm below L2's (no marks): per sweep, the cuts named
    right, refused with a message, named wrong (a level named as another body) and with a level off its body."""
    from planner.imaging import load_path
    from planner.levels import LevelDetectionError, propose_levels_detailed
    from tests.anatomy_reference import ct_cases, cut_volume_z, score_levels

    case = ct_cases(SHARED)["totalseg"]
    (_, volume), = load_path(case["image"]).images.items()
    z = {n: float(b.centroid[2]) for n, b in case["bodies"].items()}
    sweeps = {"bottom": [(float(c), None) for c in np.arange(z["L4"], z["S1"] - 45.0, -4.0)],
              "top": [(None, float(c)) for c in np.arange(z["T12"] - 10.0, z["L2"] - 10.0, -4.0)]}
    out = {}
    for edge, cuts in sweeps.items():
        counts = {"named right": 0, "refused": 0, "named wrong": 0, "off": 0}
        wrong = []
        for z_min, z_max in cuts:
            try:
                r = score_levels(propose_levels_detailed(cut_volume_z(volume, z_min, z_max), None,
                                                         modality="CT").levels, case)
                verdict = "named wrong" if r["misnamed"] else "off" if r["off"] else "named right"
            except LevelDetectionError:
                verdict = "refused"
            counts[verdict] += 1
            if verdict in ("named wrong", "off"):
                wrong.append(f"{z_min if edge == 'bottom' else z_max:.1f}")
        print(f"\n== CT example_ct, its {edge} edge moved in {len(cuts)} steps of 4 mm: "
              + ", ".join(f"{v} {k}" for k, v in counts.items()) + (f" (at z {', '.join(wrong)})" if wrong else ""))
        out[edge] = counts
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", help="comma-separated MRI cases (default: all 21)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated: centroid, moved, none")
    ap.add_argument("--no-mri", action="store_true", help="skip the MRIs")
    ap.add_argument("--no-ct", action="store_true", help="skip the CTs")
    ap.add_argument("--json", type=Path, help="write every run and the summaries here")
    ap.add_argument("--limit-gib", type=float, default=8.0, help="address-space limit of each subprocess (GiB)")
    ap.add_argument("--mri-model", help="the MRI body finder with this model (ONNX) instead of the shipped one")
    ap.add_argument("--mri-cv", type=Path, metavar="DIR",
                    help="cross-validation: each MRI scan with the fold model that did not see it in training "
                         "(DIR/folds.json and DIR/fold<K>.onnx written by scripts/train_mri_bodies.py); prints the "
                         "held-out numbers per fold and in total")
    ap.add_argument("--ct-cv", action="store_true",
                    help="CT pedicles: every configuration of CT_CV_GRID on both CTs; the best on one CT reported on "
                         "the other (both directions), beside the defaults")
    ap.add_argument("--reference-check", action="store_true",
                    help="how far the label reference's pedicle centres move with the search's start and sampling")
    ap.add_argument("--fov", action="store_true",
                    help="fields of view cut from the scans (tests/anatomy_reference.py FOV_CUTS), without marks: "
                         "each MRI ending in the L5-S1 disc, halfway down S1, just below S1, and starting between L1 "
                         "and L2; example_ct cut alike, and its bottom and top edges moved in 4 mm steps. Prints, "
                         "per cut, the scans named right, refused and named wrong")
    ap.add_argument("--pose", action="store_true",
                    help="CT robustness: both CTs turned, tilted and bent by 5-10 degrees and with noise added "
                         "(tests/anatomy_reference.py CT_POSES), and on a clinical 0.75 x 0.75 x 1 mm grid "
                         "(CT_GRIDS); per pose, the levels named right, misnamed or refused, "
                         "centre and pedicle errors. With --mri-cv DIR: the MRIs turned and tilted by 10 degrees "
                         "and made of 4 mm sagittal slices, straight or on oblique grids (held-out), with and "
                         "without marks")
    ap.add_argument("--modic", action="store_true",
                    help="with --mri-cv DIR: the MRIs with Modic-like bands along the L4-L5 disc "
                         "(tests/anatomy_reference.py MODIC_BANDS), held-out: levels named right, misnamed and "
                         "refused, L4 and L5 errors")
    ap.add_argument("--canal", action="store_true",
                    help="CT canal outlines: the levels package's and the safety model's against the vertebra labels")
    ap.add_argument("--one", nargs=3, metavar=("KIND", "CASE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        import resource

        limit = int(args.limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps(run_one(*args.one, model=args.mri_model)))
        return 0
    if args.ct_cv:
        ct_cross_validation()
        return 0
    if args.reference_check:
        reference_check()
        return 0
    if args.canal:
        canal_compare()
        return 0
    if args.modic:
        if not args.mri_cv:
            ap.error("--modic needs --mri-cv DIR (the fold models: the labelled scans are their training data)")
        from tests.anatomy_reference import mri_cases

        mri_modic(args.mri_cv, args.cases.split(",") if args.cases else mri_cases(MRI_DIR))
        return 0
    if args.pose:
        if args.mri_cv:
            from tests.anatomy_reference import mri_cases

            mri_poses(args.mri_cv, args.cases.split(",") if args.cases else mri_cases(MRI_DIR))
        else:
            ct_poses()
        return 0
    from tests.anatomy_reference import mri_cases

    print("load average at the start (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
          + f" on {os.cpu_count()} CPUs (wall times grow with the load; the CPU times do not)")
    fold_of: dict[str, int] = {}
    if args.mri_cv:
        fold_of = fold_of_cases(args.mri_cv)
        args.no_ct = True
        print(f"HELD-OUT numbers (cross-validation, {len(set(fold_of.values()))} folds): each scan is measured with "
              f"the model of {args.mri_cv} that was trained without it")
    elif args.mri_model:
        print(f"MRI: the body finder with the model {args.mri_model}")
    else:
        print("MRI: the body finder with the shipped model (trained on all 21 scans: these are NOT held-out numbers)")
    jobs = []
    if not args.no_mri:
        cases = args.cases.split(",") if args.cases else mri_cases(MRI_DIR)
        modes = list(FOV_CUTS) if args.fov else args.modes.split(",")
        for mode in modes:
            if mode not in MODES and mode not in FOV_CUTS:
                ap.error(f"unknown mode {mode!r}")
            jobs += [("mri", c, mode) for c in cases]
    if not args.no_ct:
        jobs += ([("ct", "totalseg", m) for m in FOV_CUTS] if args.fov
                 else [("ct", "totalseg", "none"), ("ct", "tptbox", "mark")])
    runs = []
    for kind, case, mode in jobs:
        model = args.mri_model
        if args.mri_cv and kind == "mri":
            if case not in fold_of:
                ap.error(f"{case} is in no fold of {args.mri_cv / 'folds.json'}")
            model = str(args.mri_cv / f"fold{fold_of[case]}.onnx")
        r = run_in_subprocess(kind, case, mode, args.limit_gib, model)
        r["fold"] = fold_of.get(case)
        print_run(r)
        runs.append(r)
    summaries = {}
    tag = "held-out, " if args.mri_cv else ""
    for mode in MODES:
        sel = [r for r in runs if r["kind"] == "mri" and r["mode"] == mode]
        if sel:
            if args.mri_cv:
                for k in sorted(set(fold_of.values())):
                    part = [r for r in sel if r["fold"] == k]
                    if part:
                        summaries[f"mri_{mode}_fold{k}"] = summarize(part, f"MRI, {tag}fold {k}, marks: {mode}")
            summaries[f"mri_{mode}"] = summarize(sel, f"MRI, {tag}marks: {mode}")
    for mode in FOV_CUTS:
        for kind in ("mri", "ct"):
            sel = [r for r in runs if r["mode"] == mode and r["kind"] == kind]
            if sel:
                summaries[f"fov_{mode}" + ("_ct" if kind == "ct" else "")] = fov_summary(
                    sel, f"{tag if kind == 'mri' else ''}{kind.upper()}, no marks, field of view {mode}")
    if args.fov and not args.no_ct:
        summaries["ct_edge_sweep"] = ct_edge_sweep()
    for case in ("totalseg", "tptbox"):
        sel = [r for r in runs if r["kind"] == "ct" and r["case"] == case and r["mode"] not in FOV_CUTS]
        if sel:
            summaries[f"ct_{case}"] = summarize(sel, f"CT {case}")
    if runs:
        slow = max(runs, key=lambda r: r["time_s"] if np.isfinite(r["time_s"]) else 1e9)
        big = max(runs, key=lambda r: r["rss_peak_mib"] if np.isfinite(r["rss_peak_mib"]) else 1e12)
        print(f"\nall runs: slowest {slow['case']} ({slow['mode']}) {slow['time_s']:.1f} s "
              f"(limit {ACCEPT['time_s']:.0f} s); largest peak memory {big['case']} ({big['mode']}) "
              f"{big['rss_peak_mib']:.0f} MiB (limit {1024 * ACCEPT['peak_gib']:.0f} MiB)")
        cpu = max(runs, key=lambda r: r["cpu_s"] if np.isfinite(r["cpu_s"]) else -1.0)
        print(f"most CPU time: {cpu['case']} ({cpu['mode']}) {cpu['cpu_s']:.1f} s; load average at the end: "
              + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summaries": summaries}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
