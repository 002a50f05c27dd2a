"""``python main.py report PLAN.bvnplan -o FILE.pdf [--images PATH]``: the plan summary PDF.

Exit codes: 0 written; 2 bad input, or a trajectory whose checks fail or are unverified (not measured
on the images) without a recorded reason (the message names it; nothing is written)."""

from __future__ import annotations

import argparse
import sys

from planner.cli._docs_common import (
    add_images_argument, blocked_by_checks, check_output, load_images, load_plan_or_message, plan_results,
)

HELP = "write the plan summary PDF (planning aid, for the physician and the chart)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the .bvnplan file")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.pdf", help="PDF file to write")
    add_images_argument(parser)
    parser.add_argument("--no-3d", action="store_true", help="leave out the 3D view (no OpenGL needed)")


def run(args: argparse.Namespace) -> int:
    plan = load_plan_or_message(args.plan, "report")
    if plan is None:
        return 2
    out = check_output(args.output, (".pdf",), "report")
    if out is None:
        return 2
    from planner.report import build_report_data, render_report_pdf

    images = load_images(plan, args.images, "report", args.plan)
    results = plan_results(plan, images)
    if blocked_by_checks(results, "report"):
        return 2
    data = build_report_data(plan, images, with_3d=not args.no_3d, reports=results.reports())
    try:
        render_report_pdf(data, out)
    except OSError as exc:
        print(f"bvn-planner report: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    n_img = sum(len(t.key_images) for t in data.trajectories)
    print(f"Wrote {out} ({len(data.trajectories)} trajectories, {n_img} key images)")
    return 0
