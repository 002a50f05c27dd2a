"""Shared helpers of the document commands (report, sheet, export-dicom): load the plan and images
with clear messages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from planner.plan import Plan
from planner.storage import PlanFileError, load_plan


def load_plan_or_message(path: str, command: str) -> Optional[Plan]:
    """The plan at ``path``, or None after printing a clear message (the command then exits 2)."""
    try:
        return load_plan(path)
    except PlanFileError as exc:
        print(f"bvn-planner {command}: {exc}", file=sys.stderr)
        return None


def plan_results(plan: Plan, images: dict):
    """The results of the command's plan with its images (:class:`planner.display.results.PlanResults`:
    the checks are computed there, once, as in the window; the command reads them from there)."""
    from planner.display.results import PlanResults

    return PlanResults.for_plan(plan, images)


def blocked_by_checks(results: Any, command: str) -> bool:
    """True (after printing a message naming each trajectory) when a trajectory of the command's
    results (:func:`plan_results`) has a failing or an unverified check and no recorded reason: the
    document is not written (exit 2), as the GUI refuses the export. The checks run with the images
    found for the plan (the image checks)."""
    report = results.plan_report()
    blocked = report.missing_override_reasons
    for t in blocked:
        what = "; ".join(f"{c.label} {c.status.upper()}" + (f" ({c.basis})" if c.basis == "not measured" else "")
                         for c in t.blocking)
        print(f"bvn-planner {command}: trajectory {t.level_name} {t.side}: {what}. Record the reason for going on "
              "(override reason) in the plan, or load the images that let the checks measure it (--images).",
              file=sys.stderr)
    if blocked:
        print(f"bvn-planner {command}: nothing written: {len(blocked)} trajectory(ies) with failing or unverified "
              "checks and no recorded reason", file=sys.stderr)
    return bool(blocked)


def check_output(path: str, suffixes: tuple[str, ...], command: str) -> Optional[Path]:
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        print(f"bvn-planner {command}: the output file {out.name} must end in {' or '.join(suffixes)}", file=sys.stderr)
        return None
    if out.exists() and out.is_dir():
        print(f"bvn-planner {command}: {out} is a folder, not a file", file=sys.stderr)
        return None
    return out


def add_images_argument(parser, purpose: str = "") -> None:
    """The ``--images PATH`` option of the commands that read a plan's images."""
    parser.add_argument("--images", metavar="PATH",
                        help=f"folder or file holding the plan's images (found by UID){purpose}; default: the "
                             "plan's path hints")


def load_images(plan: Plan, folder: Optional[str], command: str, plan_path: Optional[str] = None) -> dict:
    """The plan's series found by UID in ``folder`` (a folder, zip or image file), else in its path hints."""
    from planner.report.sources import find_plan_images

    if folder is not None and not Path(folder).exists():
        print(f"bvn-planner {command}: {folder} does not exist; continuing without images", file=sys.stderr)
        return {}
    found = find_plan_images(plan, folder, plan_path)
    for note in found.notes:
        print(f"bvn-planner {command}: {note}", file=sys.stderr)
    return found.images
