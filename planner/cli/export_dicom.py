"""``python main.py export-dicom PLAN.bvnplan -o OUTDIR [--images PATH] [--deidentify]``.

Exit codes: 0 written; 2 bad input, or a trajectory whose checks fail or are unverified without a
recorded reason (the message names it; nothing is written)."""

from __future__ import annotations

import argparse
import sys

from planner.cli._docs_common import (
    add_images_argument, blocked_by_checks, load_images, load_plan_or_message, plan_results,
)

HELP = "export the plan summary (Encapsulated PDF), key images (SC) and the plan (SR) as DICOM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the .bvnplan file")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="new or empty folder to write")
    add_images_argument(parser)
    parser.add_argument("--deidentify", action="store_true",
                        help="teaching export: de-identify plan and images (DICOM PS3.15 basic profile)")
    parser.add_argument("--pseudonym", help="name to use instead of the patient's (teaching export)")
    parser.add_argument("--no-3d", action="store_true", help="leave out the 3D view (no OpenGL needed)")


def run(args: argparse.Namespace) -> int:
    plan = load_plan_or_message(args.plan, "export-dicom")
    if plan is None:
        return 2
    from planner.deidentify import Deidentifier
    from planner.export import ExportError, export_dicom

    images = load_images(plan, args.images, "export-dicom", args.plan)
    results = plan_results(plan, images)
    if blocked_by_checks(results, "export-dicom"):
        return 2
    de = Deidentifier(pseudonym_name=args.pseudonym) if args.deidentify else None
    try:
        result = export_dicom(plan, args.output, images, deidentify=args.deidentify, with_3d=not args.no_3d,
                              deidentifier=de, reports=results.reports())
    except ExportError as exc:
        print(f"bvn-planner export-dicom: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bvn-planner export-dicom: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}")
    for path in result.files:
        print(path)
    kind = "de-identified teaching export" if result.deidentified else "export"
    print(f"Wrote {len(result.files)} files ({kind}) to {result.folder}")
    return 0
