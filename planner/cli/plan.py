"""``python main.py plan IMAGES --treat L4,L5 [--hint NAME=x,y,z ...] [--modality CT|MR] -o PLAN.bvnplan``.

Runs the level finder on the images (as ``main.py levels`` does: CT needs no hint, MRI two), marks the
levels to treat, and for each of them suggests a trajectory from both sides with the default
instrument (:func:`planner.suggest.suggest_checked`: the search respects the image checks). A side
for which no path passes the image checks gets no trajectory, and the message says why and what
is proposed instead (the other side alone, or the other path kind); the plan is written with the
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


def run(args: argparse.Namespace) -> int:
    from planner.cli.levels import _InputError, choose_volume, load_volumes, parse_hint
    from planner.levels import LevelDetectionError, propose_levels_detailed
    from planner.plan import Plan
    from planner.storage import save_plan
    from planner.suggest import suggest_checked
    from planner.trajectory import LandmarkError, PathError

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
        got = 0
        for side in ("left", "right"):
            try:
                sg = suggest_checked(plan, level, side, images, alternatives=True)
            except (LandmarkError, PathError, ValueError) as exc:
                results.append({"level": name, "side": side, "status": "none",
                                "message": f"{name} {side}: cannot suggest: {exc}"})
                continue
            traj = sg.trajectory
            if traj is not None and sg.alternative and traj.side != side:
                # the alternative is the other side alone (unipedicular): that side is planned on its own
                results.append({"level": name, "side": side, "status": "none", "message": sg.message})
                continue
            if traj is None:
                results.append({"level": name, "side": side, "status": "none", "message": sg.message})
                continue
            plan.trajectories.append(traj)
            got += 1
            results.append({"level": name, "side": traj.side, "status": sg.status, "message": sg.message,
                            "trajectory_id": traj.id, "seconds": round(sg.seconds, 2)})
        if got == 0:
            without.append(name)
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
