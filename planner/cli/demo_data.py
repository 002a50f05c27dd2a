"""``python main.py demo-data OUTDIR``: write the built-in demo study.

Writes a synthetic lumbar study as DICOM files (sagittal T1, T2 and STIR, an axial T2 stack along the
L4/L5 disc, AP and lateral fluoroscopy), its ``ground_truth.json`` and a ``sample.bvnplan`` into
OUTDIR (see :mod:`planner.demo`). The output is deterministic: two runs write identical files.

Exit codes: 0 written; 2 the folder cannot be used (not a folder, not empty without ``--force``,
not writable).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "write the synthetic demo study (DICOM MR + fluoroscopy, ground truth, sample plan)"

_PREFIX = "bvn-planner demo-data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", help="folder to write into (created if missing)")
    parser.add_argument("--force", action="store_true",
                        help="write into a folder that already holds files (existing demo files are replaced)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.outdir)
    if out.exists() and not out.is_dir():
        print(f"{_PREFIX}: {out} exists and is not a folder", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()) and not args.force:
        print(f"{_PREFIX}: {out} is not empty; choose an empty folder or pass --force", file=sys.stderr)
        return 2
    from planner.demo import write_demo_study

    t0 = time.perf_counter()
    try:
        manifest = write_demo_study(out)
    except OSError as exc:
        print(f"{_PREFIX}: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(manifest.summary())
    print(f"  {len(manifest.files)} files in {time.perf_counter() - t0:.1f} s")
    return 0
