"""``python main.py levels PATH [--json] [--hint NAME=x,y,z ...] [--series UID]``: propose the levels.

Loads the images at PATH with :func:`planner.imaging.load_path` (a DICOM folder or file, a zip, or a
NIfTI/MHA/NRRD volume), picks the
volume to label (``--series``, else a CT, else a sagittal T1/T2 MR, else the largest volume) and
prints the proposed levels with their landmarks in LPS millimetres. CT needs no hint. On MRI (the learned
body finder, :mod:`planner.levels.mri_bodies`) any two bodies may be marked (``--hint S1=x,y,z --hint
L1=x,y,z``, or L1 and L5, ...: points anywhere inside those bodies, LPS mm), or none: the levels are then
counted from the sacrum as a proposal to confirm, or the command says why they cannot be named; hints that
disagree with the image (a mark in a disc or outside the bodies, a count of bodies
between the marks that does not fit their names) end with exit code 1 and a message naming the likely
correction, and a proposal whose marks the sacrum counts differently is printed with a WARNING line. The other series
found at PATH in the same frame of reference go along (on MRI an axial stack refines the pedicles of
the levels it covers).

Exit codes: 0 levels found; 1 the images were read but no levels could be found (the message says
why); 2 bad input (missing or unreadable file, bad hint, unknown series).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from planner.cli._json import json_text

HELP = "propose the vertebral levels T12-S1 with their landmarks (LPS mm)"

_PREFIX = "bvn-planner levels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="DICOM folder or file, zip, or NIfTI/MHA/NRRD volume")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--hint", action="append", default=[], metavar="NAME=x,y,z",
                        help="a point inside a vertebral body, LPS mm (MRI: e.g. S1=... and L1=...); repeatable")
    parser.add_argument("--series", metavar="UID", help="Series Instance UID (or key) of the volume to label")
    parser.add_argument("--transitional", choices=["L6", "sacralised_L5"],
                        help="transitional anatomy: six lumbar vertebrae, or L5 fused into the sacrum")
    parser.add_argument("--modality", choices=["CT", "MR"], help="override the modality read from the images")


class _InputError(Exception):
    pass


def parse_hint(text: str) -> tuple[str, tuple[float, float, float]]:
    """``NAME=x,y,z`` -> (NAME, (x, y, z)); raises _InputError with a clear message."""
    name, sep, coords = text.partition("=")
    if not sep or not name.strip():
        raise _InputError(f"hint {text!r} must look like NAME=x,y,z (for example S1=0,-110,215)")
    parts = [p.strip() for p in coords.split(",")]
    if len(parts) != 3:
        raise _InputError(f"hint {text!r} needs three coordinates x,y,z in LPS mm")
    try:
        xyz = tuple(float(p) for p in parts)
    except ValueError:
        raise _InputError(f"hint {text!r}: coordinates must be numbers") from None
    import math

    if not all(math.isfinite(v) for v in xyz):
        raise _InputError(f"hint {text!r}: coordinates must be finite numbers")
    return name.strip().upper(), xyz  # type: ignore[return-value]


# --------------------------------------------------------------------------- loading
def load_volumes(path: Path) -> dict[str, Any]:
    """Volumes found at ``path`` keyed by Series Instance UID (or the importer's key)."""
    from planner.imaging import load_path
    from planner.imaging.volume import Volume

    try:
        result = load_path(path)
    except Exception as exc:  # the importer reports per file; anything escaping is a bad input
        raise _InputError(f"{path}: cannot read the images ({exc})") from None
    vols = {k: v for k, v in result.images.items() if isinstance(v, Volume) and v.array.shape[0] >= 3}
    if vols:
        return vols
    raise _InputError(f"{path}: no 3D image series found" + _skips_of(result))


def _skips_of(result: Any) -> str:
    """`` (summary; first skipped files and why)`` from the import report, or ""."""
    report = getattr(result, "report", None)
    if report is None:
        return ""
    summary = getattr(report, "summary", None)
    parts = [str(summary() if callable(summary) else summary or "")]
    # ImportReport.skipped_files is a property (a list); accept a method too
    skipped = getattr(report, "skipped_files", None)
    if callable(skipped):
        skipped = skipped()
    try:
        entries = list(skipped or [])
    except TypeError:
        entries = []
    parts += [f"{getattr(e, 'name', e)}: {getattr(e, 'reason', '')}" for e in entries[:3]]
    text = "; ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def choose_volume(volumes: dict[str, Any], series: Optional[str]) -> tuple[str, Any]:
    if series is not None:
        if series not in volumes:
            known = ", ".join(sorted(volumes)) or "none"
            raise _InputError(f"series {series!r} not found; series found: {known}")
        return series, volumes[series]

    def rank(item: tuple[str, Any]) -> tuple[int, int]:
        key, v = item
        mod = (v.info.modality or "").upper()
        desc = (v.info.series_description or "").upper()
        sag = abs(v.slice_normal()[0]) > 0.7
        score = 3 if mod == "CT" else 2 if (mod == "MR" and sag and any(t in desc for t in ("T1", "T2"))) else \
            1 if sag else 0
        return score, int(v.array.size)

    return max(volumes.items(), key=rank)


# --------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    from planner.levels import LevelDetectionError, MarkError, landmark_label, propose_levels_detailed

    path = Path(args.path)
    try:
        hints = dict(parse_hint(h) for h in args.hint)
        if not path.exists():
            raise _InputError(f"{path}: no such file or folder")
        volumes = load_volumes(path)
        key, volume = choose_volume(volumes, args.series)
    except _InputError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return 2
    try:
        # the other series at PATH in the same frame of reference (an axial stack refines the MRI pedicles)
        companions = [v for k, v in volumes.items() if k != key]
        result = propose_levels_detailed(volume, hints or None, modality=args.modality,
                                         transitional=args.transitional, companions=companions)
    except LevelDetectionError as exc:
        msg = str(exc)
        if isinstance(exc, MarkError):
            msg = f"check the marks: {msg}"
        bad_input = any(w in msg for w in ("hint", "transitional", "outside the image"))
        print(f"{_PREFIX}: {path}: {msg}", file=sys.stderr)
        return 2 if bad_input else 1
    levels = [level_record(lv) for lv in result.levels]
    if args.json:
        out = {"path": str(path), "series": key, "modality": result.modality, "frame": "LPS", "units": "mm",
               "transitional": args.transitional, "hints": {k: list(v) for k, v in hints.items()},
               "levels": levels, "notes": result.notes, "warnings": result.warnings}
        print(json_text(out, "levels", indent=2))
    else:
        for warning in result.warnings:
            print(f"WARNING: {warning}")
        print(f"{len(levels)} levels in {path.name} ({result.modality}, series {key}); LPS mm")
        for lv in levels:
            c = lv["body_center_lps"]
            print(f"  {lv['name']:<4} body centre ({c[0]:7.1f}, {c[1]:7.1f}, {c[2]:7.1f})")
            for name in lv["not_measured"]:
                print(f"       {landmark_label(name)}: not measured, place by hand")
        for note in result.notes:
            print(f"  warning: {note}")
    return 0


def level_record(level: Any) -> dict[str, Any]:
    """One proposed level for the output: its landmarks (None where not measured), the names of those
    not measured (to place by hand) and its measured outlines (pedicles, canal; empty when none)."""
    from planner.levels import not_measured
    from planner.plan import LANDMARK_NAMES

    lm = level.landmarks
    out: dict[str, Any] = {"name": level.name}
    for n in LANDMARK_NAMES:
        v = getattr(lm, n)
        out[n] = None if v is None else [float(x) for x in v]
    out["not_measured"] = not_measured(lm)
    for n in ("pedicle_outline_left_lps", "pedicle_outline_right_lps", "canal_outline_lps"):
        out[n] = [[float(x) for x in q] for q in getattr(level, n)]
    return out
