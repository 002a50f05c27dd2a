"""``python main.py plan IMAGES --treat L4,L5 [--hint NAME=x,y,z ...] [--modality CT|MR] -o PLAN.bvnplan``.

Runs the level finder on the images (as ``main.py levels`` does: CT needs no hint, MRI two), marks the
levels to treat, and for each of them suggests trajectories with the default instrument
(:func:`planner.suggest.suggest_checked`: the search respects the image checks):

* ``--approach unipedicular`` (the default; the usual Intracept approach, domain.md 4: one curved path
  through one pedicle reaching the midline): both sides are searched and the better one is kept (the
  one that passes every check over one with warnings, then the one with fewer warnings, then the
  wider pedicle clearance); the message names the other side's result. When no curved path passes
  from either side, a straight path is searched from both sides the same way.
* ``--approach bipedicular``: a left and a right path whose tips lie on either side of the midline
  target (the bipedicular variant, :func:`planner.suggest.suggest_bipedicular_checked`).

A level for which no path passes the image checks gets no trajectory, and the message says why; the
plan is written with the
case (patient, study) and the series (UIDs and the path as a hint) so that ``check``, ``report`` and
the GUI find the images again.

Exit codes: 0 the plan is written and every treated level has a trajectory; 1 the plan is written
but a treated level has none (not found on the images, or no path passes the checks: the message
says why), or no level was found at all (nothing written); 2 bad input (missing or unreadable images,
a bad hint, an output that cannot be written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HELP = "find the levels and write a plan with checked trajectory suggestions for the levels to treat"

_PREFIX = "bvn-planner plan"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", help="DICOM folder or file, zip, or NIfTI/MHA/NRRD volume")
    parser.add_argument("--treat", required=True, metavar="L4,L5", help="levels to treat, comma separated")
    parser.add_argument("--hint", action="append", default=[], metavar="NAME=x,y,z",
                        help="a point inside a vertebral body, LPS mm (MRI: two, e.g. L1=... and L5=...)")
    parser.add_argument("--modality", choices=["CT", "MR"], help="override the modality read from the images")
    parser.add_argument("--series", metavar="UID", help="Series Instance UID (or key) of the volume to label")
    parser.add_argument("--approach", choices=["unipedicular", "bipedicular"], default="unipedicular",
                        help="one curved path through the better pedicle (default, the usual approach) or a "
                             "left and a right path with their tips either side of the midline")
    parser.add_argument("-o", "--output", required=True, metavar="PLAN.bvnplan", help="plan file to write")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _role(volume: Any) -> str:
    from planner.trajectory import is_ct

    if is_ct(volume):
        return "CT"
    desc = (volume.info.series_description or "").upper()
    for role in ("STIR", "T2", "T1"):
        if role in desc:
            return "AX_T2" if role == "T2" and abs(volume.slice_normal()[2]) > 0.7 else role
    return ""


def _case(volumes: dict[str, Any], path: Path) -> Any:
    from planner.plan import CaseInfo, SeriesRef

    first = next(iter(volumes.values())).info
    refs = [SeriesRef(series_instance_uid=key, modality=v.info.modality or ("CT" if _role(v) == "CT" else ""),
                      description=v.info.series_description, frame_of_reference_uid=v.info.frame_of_reference_uid,
                      role=_role(v), number_of_images=int(v.array.shape[0]), path_hint=str(path.resolve()))
            for key, v in volumes.items()]
    return CaseInfo(patient_name=first.patient_name, patient_id=first.patient_id,
                    patient_birth_date=first.patient_birth_date, patient_sex=first.patient_sex,
                    study_instance_uid=first.study_instance_uid, study_date=first.study_date,
                    study_description=first.study_description, accession_number=first.accession_number,
                    institution=first.institution, series=refs)


_RANK = {"pass": 0, "warning": 1}


def _attempt(plan: Any, level: Any, side: str, images: Any, curved: bool, results: list[dict[str, Any]]) -> Any:
    """One side's checked suggestion (no alternatives: the caller weighs the sides), or None when the
    level's landmarks do not allow one (the reason goes into ``results``)."""
    from planner.suggest import suggest_checked
    from planner.trajectory import LandmarkError, PathError

    try:
        return suggest_checked(plan, level, side, images, curved=curved, alternatives=False)
    except (LandmarkError, PathError, ValueError) as exc:
        results.append({"level": level.name, "side": side, "status": "none",
                        "message": f"{level.name} {side}: cannot suggest: {exc}"})
        return None


def _preference(sg: Any) -> tuple:
    """Sort key of a usable suggestion: every check passed first, then fewer warnings, then the wider
    narrowest pedicle clearance (measured on the image or from the landmarks)."""
    warnings = sum(1 for c in sg.report.checks if c.status == "warning")
    ped = sg.report.pedicle
    values = [v for v in (ped.clearance_mm.values() if ped is not None else ()) if v is not None]
    narrowest = min(values) if values else float("-inf")
    return (_RANK[sg.status], warnings, -narrowest)


def _why_better(kept: Any, other: Any, side: str, other_side: str) -> str:
    """Why ``kept`` (on ``side``) is preferred to ``other`` (see :func:`_preference`), in words."""
    (r1, w1, n1), (r2, w2, n2) = _preference(kept), _preference(other)
    if r1 != r2:
        return "with warnings; this side passes every check"
    if w1 != w2:
        return f"{w2} warnings on the {other_side} against {w1} on the {side}"
    if n1 != n2 and max(n1, n2) != float("inf"):
        return f"narrowest pedicle clearance {-n2:.1f} mm on the {other_side} against {-n1:.1f} mm on the {side}"
    return "equally well; the left is taken first"


def _suggested(level: Any, sg: Any, message: str) -> dict[str, Any]:
    """The result line of a suggestion that goes into the plan."""
    return {"level": level.name, "side": sg.trajectory.side, "status": sg.status, "message": message,
            "trajectory_id": sg.trajectory.id, "seconds": round(sg.seconds, 2)}


def _unipedicular(plan: Any, level: Any, images: Any, results: list[dict[str, Any]]) -> list[Any]:
    """The better of the two sides' curved paths (straight paths when no curved one passes)."""
    from planner.trajectory import TrajectoryParams

    curved_default = TrajectoryParams.from_settings(plan.settings).curved
    refused: list[str] = []
    for curved in (curved_default, not curved_default):
        tried = {side: _attempt(plan, level, side, images, curved, results) for side in ("left", "right")}
        usable = {side: sg for side, sg in tried.items() if sg is not None and sg.status in _RANK}
        refused += [sg.message for sg in tried.values() if sg is not None and sg.status not in _RANK]
        if not usable:
            continue
        side = min(usable, key=lambda k: (_preference(usable[k]), k))
        sg = usable[side]
        other = "right" if side == "left" else "left"
        if other in usable:
            why = f"the {other} side also passes ({_why_better(sg, usable[other], side, other)}, so the {side} is kept)"
        elif tried[other] is not None:
            why = f"no {'curved' if curved else 'straight'} path from the {other} passes the image checks"
        else:
            why = f"the {other} side could not be searched"
        results.append(_suggested(level, sg, f"{sg.message}; unipedicular: {why}"))
        return [sg.trajectory]
    # one line per distinct reason (a level whose image checks are not measured is refused alike four times)
    results.extend({"level": level.name, "side": "both", "status": "none", "message": m}
                   for m in dict.fromkeys(refused))
    return []


def _bipedicular(plan: Any, level: Any, images: Any, results: list[dict[str, Any]]) -> list[Any]:
    """A left and a right path with their tips either side of the midline target; a side that cannot be
    suggested says why."""
    from planner.suggest import suggest_bipedicular_checked
    from planner.trajectory import LandmarkError, PathError

    try:
        pair = suggest_bipedicular_checked(plan, level, images)
    except (LandmarkError, PathError, ValueError) as exc:
        results.append({"level": level.name, "side": "both", "status": "none",
                        "message": f"{level.name}: cannot suggest a bipedicular pair: {exc}"})
        return []
    out = []
    for sg in pair:
        if sg.trajectory is None or sg.status not in _RANK:
            results.append({"level": level.name, "side": "both", "status": "none", "message": sg.message})
            continue
        out.append(sg.trajectory)
        results.append(_suggested(level, sg, sg.message))
    return out


def _final_status(plan: Any, images: Any, results: list[dict[str, Any]]) -> None:
    """Each suggestion was checked on its own; the plan's checks (what ``check`` and the window show)
    also weigh the trajectories against each other (a bipedicular pair's tip spacing and midline):
    the status printed is the plan's, and a change is said."""
    from planner.cli._docs_common import plan_results

    reports = plan_results(plan, images).reports()
    for r in results:
        rep = reports.get(r.get("trajectory_id", ""))
        if rep is not None and rep.overall != r["status"]:
            r["message"] += f"; with the other trajectories of the plan: {rep.overall}"
            r["status"] = rep.overall


def run(args: argparse.Namespace) -> int:
    from planner.cli.levels import _InputError, choose_volume, load_volumes, parse_hint
    from planner.levels import LevelDetectionError, propose_levels_detailed
    from planner.plan import Plan
    from planner.storage import save_plan

    path = Path(args.images)
    out = Path(args.output)
    treat = [t.strip().upper() for t in args.treat.split(",") if t.strip()]
    try:
        if not treat:
            raise _InputError("--treat needs at least one level name, e.g. --treat L4,L5")
        if out.suffix.lower() != ".bvnplan":
            raise _InputError(f"the output file {out.name} must end in .bvnplan")
        if out.exists() and out.is_dir():
            raise _InputError(f"{out} is a folder, not a file")
        hints = dict(parse_hint(h) for h in args.hint)
        if not path.exists():
            raise _InputError(f"{path}: no such file or folder")
        volumes = load_volumes(path)
        key, volume = choose_volume(volumes, args.series)
        if args.modality:
            # the physician's word for this image holds for everything made from it: the level finder, the
            # image checks, the plan's record of the series (which check, report and the window read back)
            volume.info.modality = args.modality
    except _InputError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        companions = [v for k, v in volumes.items() if k != key]
        found = propose_levels_detailed(volume, hints or None, modality=args.modality, companions=companions)
    except LevelDetectionError as exc:
        msg = str(exc)
        bad_input = any(w in msg for w in ("hint", "transitional", "outside the image"))
        print(f"{_PREFIX}: {path}: cannot suggest: {msg}", file=sys.stderr)
        return 2 if bad_input else 1
    names = [lv.name for lv in found.levels]
    plan = Plan(case=_case(volumes, path), levels=list(found.levels))
    for lv in plan.levels:
        lv.treat = lv.name in treat
    images = dict(volumes)
    results: list[dict[str, Any]] = []
    without: list[str] = []
    for name in treat:
        level = plan.level_by_name(name)
        if level is None:
            results.append({"level": name, "side": "both", "status": "none",
                            "message": f"{name}: cannot suggest: the level was not found on the images (levels found: "
                                       f"{', '.join(names) or 'none'})"})
            without.append(name)
            continue
        chosen = (_bipedicular if args.approach == "bipedicular" else _unipedicular)(plan, level, images, results)
        plan.trajectories.extend(chosen)
        got = len(chosen)
        if got == 0:
            without.append(name)
    _final_status(plan, images, results)
    try:
        save_plan(plan, out)
    except OSError as exc:
        print(f"{_PREFIX}: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    if args.json:
        from planner.cli._json import json_text

        print(json_text({"plan": str(out), "series": key, "modality": found.modality, "levels": names,
                          "treat": treat, "trajectories": results, "notes": found.notes,
                          "seconds": round(seconds, 2)}, "plan", indent=2))
    else:
        print(f"Wrote {out}: {len(plan.trajectories)} trajectories for {', '.join(treat)} "
              f"({found.modality}, levels {', '.join(names)}; {seconds:.1f} s)")
        for r in results:
            print(f"  [{r['status'].upper():<10}] {r['message']}")
        for note in found.notes:
            print(f"  note: {note}")
    if without:
        print(f"{_PREFIX}: no trajectory for {', '.join(without)} (see the messages above)", file=sys.stderr)
        return 1
    return 0
