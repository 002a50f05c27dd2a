"""``python main.py check PLAN.bvnplan [--json] [--images PATH]``: metrics and safety checks.

Prints every level (its landmarks, LPS mm) and every trajectory with its metrics and checks, as
computed by :func:`planner.checks.evaluate_plan` through the plan's results (the same code and the
same place the planning panel and the reports use). The images are found by UID in PATH
(``--images``: a folder, zip or image file), else at the plan's path hints; the image checks (canal,
bone corridor, other bones, pedicle clearance, zone) are measured on them and say "not measured"
without them. Each check says how it was obtained (measured / from landmarks / not measured). The
JSON lists each trajectory's instrument axis as ``path_lps`` (points at most 1 mm apart, from the
skin when it is found on the image, else from the entry, to the tip).

Exit codes: 0 every check passes or warns; 1 at least one check fails or is unverified (not
measured); 2 the plan is missing or damaged (the message names the file and the problem).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from planner.cli._docs_common import add_images_argument
from planner.cli._json import json_text

HELP = "print the levels, trajectory metrics and safety checks of a plan (exit 1 when a check fails or is unverified)"

_PREFIX = "bvn-planner check"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the .bvnplan file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_images_argument(parser, ", for the image checks")


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(f"{float(x):.{digits}f}" for x in v) + ")"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(data: dict[str, Any], plan_name: str) -> str:
    lines = [f"Plan {plan_name}: overall {data['overall'].upper()}", "", "Levels (LPS mm)"]
    if not data["levels"]:
        lines.append("  (no levels)")
    for lv in data["levels"]:
        lines.append(f"  {lv['name']}")
        for key in ("body_center_lps", "superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps",
                    "anterior_wall_lps", "pedicle_left_lps", "pedicle_right_lps"):
            lines.append(f"    {key.removesuffix('_lps').replace('_', ' '):<20} {_fmt(lv[key])}")
    lines += ["", "Trajectories"]
    if not data["trajectories"]:
        lines.append("  (no trajectories)")
    for t in data["trajectories"]:
        lines.append(f"  {t['level']} {t['side']}: {t['overall'].upper()}  (image checks: {t['image'] or '-'})")
        rows = [
            ("entry (LPS mm)", _fmt(t["entry_lps"])),
            ("bend (LPS mm)", _fmt(t["bend_lps"]) if t["bend_lps"] is not None else "straight path"),
            ("target (LPS mm)", _fmt(t["target_lps"])),
            ("zone diameter", f"{_fmt(t['zone_diameter_mm'])} mm"),
            ("length", f"{_fmt(t['length_mm'])} mm"),
            ("medial angle", f"{_fmt(t['medial_angle_deg'])} deg"),
            ("cranial angle", f"{_fmt(t['cranial_angle_deg'])} deg"),
            ("target depth", f"{_fmt(t['target_depth_pct'])} % of AP depth"),
            ("midline offset", f"{_fmt(t['midline_offset_mm'])} mm"),
            ("canal margin", f"{_fmt(t['canal_margin_mm'])} mm"),
            ("pedicle clearance", ", ".join(f"{w} {_fmt(v)}" for w, v in t["pedicle_clearance_mm"].items())
             + f" mm (from the {t['pedicle_clearance_source'] or '-'})"),
        ]
        for k, v in rows:
            lines.append(f"    {k:<20} {v}")
        lines.append("    checks:")
        for c in t["checks"]:
            lines.append(f"      [{c['status'].upper():<10}] {c['name']} ({c['basis']}): {c['reason']}")
            for part in c.get("parts", []):
                lines.append(f"                   {part['label']} from {part['start_mm']:.1f} mm along the path")
            if c["status"] in ("fail", "unverified") and t["override_reason"]:
                lines.append(f"                override reason: {t['override_reason']}")
        if t["overall"] in ("fail", "unverified") and not t["override_reason"].strip():
            lines.append(f"    no override reason recorded for the {t['overall']} check(s)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from planner.storage import PlanFileError, load_plan

    try:
        plan = load_plan(args.plan)
    except PlanFileError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return 2
    from planner.cli._docs_common import load_images, plan_results

    images: Any = load_images(plan, args.images, "check", args.plan)
    report = plan_results(plan, images).plan_report()
    data = report.to_dict()
    if args.json:
        print(json_text(data, "check", indent=2))
    else:
        print(_table(data, Path(args.plan).name))
    return 1 if report.any_fail or report.any_unverified else 0
