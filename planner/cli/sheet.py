"""``python main.py sheet PLAN.bvnplan -o FILE.pdf|FILE.html [--lang en|es] [--images PATH]``: the patient sheet.

Exit codes: 0 written; 2 bad input, or a trajectory whose checks fail or are unverified without a
recorded reason (the message names it; nothing is written)."""

from __future__ import annotations

import argparse
import sys

from planner.cli._docs_common import (
    add_images_argument, blocked_by_checks, check_output, load_images, load_plan_or_message, plan_results,
)

HELP = "write the patient explanation sheet (PDF or HTML, English or Spanish)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the .bvnplan file")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.pdf|FILE.html", help="file to write")
    parser.add_argument("--lang", choices=["en", "es"], default="en", help="language of the sheet (default en)")
    add_images_argument(parser, ", for the safety checks")
    parser.add_argument("--clinic", metavar="FILE.json",
                        help='clinic contact details {"name", "phone", "after_hours_phone", "doctor"}; default: '
                             "clinic.json in the application's data folder, if present")
    parser.add_argument("--clinic-name", help="clinic name printed on the sheet")
    parser.add_argument("--clinic-phone", help="clinic phone number")
    parser.add_argument("--after-hours-phone", help="phone number outside opening hours")
    parser.add_argument("--doctor", help="the treating doctor's name")


def run(args: argparse.Namespace) -> int:
    plan = load_plan_or_message(args.plan, "sheet")
    if plan is None:
        return 2
    out = check_output(args.output, (".pdf", ".html", ".htm"), "sheet")
    if out is None:
        return 2
    from planner.report.sheet import ClinicInfo, build_sheet_data, measure_readability, running_text
    from planner.report.sheet_render import render_sheet

    try:
        clinic = ClinicInfo.load(args.clinic).merged(name=args.clinic_name, phone=args.clinic_phone,
                                                     after_hours_phone=args.after_hours_phone, doctor=args.doctor)
    except ValueError as exc:
        print(f"bvn-planner sheet: {exc}", file=sys.stderr)
        return 2
    images = load_images(plan, args.images, "sheet", args.plan)
    if blocked_by_checks(plan_results(plan, images), "sheet"):
        return 2
    data = build_sheet_data(plan, args.lang, clinic)
    try:
        render_sheet(data, out)
    except OSError as exc:
        print(f"bvn-planner sheet: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    grade = ""
    try:
        r = measure_readability(running_text(data), args.lang)
        if args.lang == "en":
            grade = f"; reading grade {r.flesch_kincaid_grade:.1f} (Flesch-Kincaid), SMOG {r.smog_index:.1f}"
            if r.flesch_kincaid_grade > plan.settings.sheet_max_grade:
                print(f"bvn-planner sheet: warning: reading grade {r.flesch_kincaid_grade:.1f} is above "
                      f"{plan.settings.sheet_max_grade:g}", file=sys.stderr)
        else:
            grade = f"; Fernandez-Huerta {r.fernandez_huerta:.0f}, Szigriszt-Pazos {r.szigriszt_pazos:.0f}"
    except (LookupError, OSError) as exc:  # readability data missing: the sheet is still written
        print(f"bvn-planner sheet: reading grade not measured ({type(exc).__name__})", file=sys.stderr)
    print(f"Wrote {out} ({args.lang}{grade})")
    return 0
