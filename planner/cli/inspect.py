"""``python main.py inspect PATH [PATH...] [--json] [--headers-only]``: what the importer finds.

For each series: UIDs, modality, description, size, spacing, ``ijk_to_lps`` (row-major 4x4), origin,
direction (row-major 3x3, columns = i, j, k axes, as SimpleITK), transfer syntax and warnings; then
every skipped file with its reason. Exit code 0 when at least one series loaded, 2 otherwise (with a
message on stderr). No patient identifiers are printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from planner.cli._json import json_text

HELP = "list the series in a folder, DICOMDIR, zip or image file, with geometry and skip reasons"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="DICOM folder, DICOMDIR, zip, DICOM file, NIfTI, MHA/MHD, NRRD, PNG or JPEG")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--headers-only", action="store_true",
                        help="read headers only (fast; pixel data is not decoded, so decoding errors are not found)")


def _study_rows(result: Any) -> list[dict[str, Any]]:
    return [{"key": s.key, "study_instance_uid": s.study_instance_uid, "description": s.description,
             "date": s.date, "modalities": s.modalities, "series": s.series_keys} for s in result.studies()]


def build_output(result: Any, paths: list[str]) -> dict[str, Any]:
    rep = result.report
    return {
        "paths": paths,
        "summary": rep.summary(),
        "cancelled": rep.cancelled,
        "series": [s.to_dict() for s in result.series],
        "studies": _study_rows(result),
        "skipped": [{"file": e.name, "reason": e.reason} for e in rep.skipped_files],
        "notes": list(rep.notes),
    }


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x, digits) for x in v) + ")"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def render_text(out: dict[str, Any]) -> str:
    lines = [out["summary"], ""]
    for n, s in enumerate(out["series"], 1):
        lines.append(f"Series {n}: {s['modality'] or s['source_format']} {s['kind']} "
                     f"\"{s['description']}\"  [{s['key']}]")
        lines.append(f"  study UID        {s['study_instance_uid'] or '(none)'}")
        lines.append(f"  series UID       {s['series_instance_uid'] or '(none)'}")
        lines.append(f"  frame of ref.    {s['frame_of_reference_uid'] or '(none)'}")
        size = " x ".join(str(x) for x in s["size"])
        lines.append(f"  size             {size}   ({s['n_files']} file(s), dtype {s['dtype'] or '?'})")
        if s["kind"] == "volume":
            lines.append(f"  spacing (mm)     {_fmt(s['spacing'], 4)}")
            lines.append(f"  origin (LPS mm)  {_fmt(s['origin'], 3)}")
            d = s["direction"]
            lines.append(f"  direction        {_fmt(d[0], 5)} {_fmt(d[1], 5)} {_fmt(d[2], 5)}")
            lines.append("  ijk_to_lps       " + "\n                   ".join(_fmt(r, 4) for r in s["ijk_to_lps"]))
            if not s["geometry_exact"]:
                lines.append("  geometry         APPROXIMATE (see warnings)")
        else:
            lines.append(f"  pixel spacing    {_fmt(s['pixel_spacing'], 4)}   imager pixel spacing "
                         f"{_fmt(s['imager_pixel_spacing'], 4)}   lengths in: {s['measurement_unit']}")
        if s["transfer_syntaxes"]:
            lines.append(f"  transfer syntax  {', '.join(s['transfer_syntaxes'])}")
        for w in s["warnings"]:
            lines.append(f"  WARNING          {w}")
        if not s["loaded"]:
            lines.append("  (not loaded)")
        lines.append("")
    if len(out["studies"]) > 1 or any(len(st["series"]) > 1 for st in out["studies"]):
        lines.append("Studies:")
        for st in out["studies"]:
            lines.append(f"  {st['study_instance_uid'] or st['key']}  {st['date']}  {st['description']}  "
                         f"{'/'.join(st['modalities'])}: {len(st['series'])} series")
        lines.append("")
    for note in out["notes"]:
        lines.append(f"Note: {note}")
    if out["skipped"]:
        lines.append(f"Skipped files ({len(out['skipped'])}):")
        for e in out["skipped"]:
            lines.append(f"  {e['file']}: {e['reason']}")
    return "\n".join(lines).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from planner.imaging import load_path

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing and len(missing) == len(args.paths):
        print(f"bvn-planner inspect: {', '.join(missing)}: no such file or folder", file=sys.stderr)
        return 2
    result = load_path(args.paths, load_pixels=not args.headers_only)
    out = build_output(result, list(args.paths))
    if args.json:
        sys.stdout.write(json_text(out, "inspect") + "\n")
    else:
        sys.stdout.write(render_text(out))
    ok = [s for s in result.series if s.loaded or (args.headers_only and s.key in result.groups)]
    if not ok:
        n_skipped = len(result.report.skipped_files)
        print(f"bvn-planner inspect: no image series could be loaded from {', '.join(args.paths)} "
              f"({n_skipped} file(s) skipped; see the reasons above)", file=sys.stderr)
        return 2
    return 0
