#!/usr/bin/env python3
"""Summary benchmark (issue 15, point 8): how long writing the plan summary PDF takes, and how many pages
it has, for the demo case and for a plan on the real CT of ``../shared/data/totalseg_example``.

For each case the plan's images are loaded first (not timed as the summary: the GUI has them loaded).
Then the summary is built and written exactly as the command line and the GUI export do
(:func:`planner.report.build_report_data` + :func:`planner.report.render_report_pdf`), ``--repeat``
times; the median is reported with its parts: key images (reslices, 3D, fluoroscopy), the rest of the
data, the PDF. References measured in the same run: the same summary without the 3D view (the one part
that needs OpenGL), and the time to load the images. Target: under 10 s per summary on this machine.

    .venv/bin/python bench/report_bench.py [--repeat 3] [--case demo|ct|both] [--keep FOLDER]

Run it with the offscreen rendering variables of the tests (``QT_QPA_PLATFORM=offscreen
VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``) on a machine without a display.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 10.0
SHARED = ROOT.parent / "shared" / "data"


def _demo_case(folder: Path):
    from planner.demo import write_demo_study
    from planner.report.sources import find_plan_images
    from planner.storage import load_plan

    manifest = write_demo_study(folder / "demo")
    t0 = time.perf_counter()
    plan = load_plan(manifest.plan_path)
    images = find_plan_images(plan, None, plan_path=manifest.plan_path).images
    return plan, images, time.perf_counter() - t0


def _ct_case(folder: Path):
    from tests.report_support import ct_example_plan

    t0 = time.perf_counter()
    plan, images = ct_example_plan(SHARED / "totalseg_example" / "example_ct.nii.gz")
    return plan, images, time.perf_counter() - t0


def _time_summary(plan, images, out: Path, with_3d: bool) -> dict:
    from pypdf import PdfReader

    from planner.report import build_report_data, render_report_pdf
    from planner.report import data as report_data

    parts = {"key_images": 0.0}
    original = report_data.trajectory_key_images
    original_3d = report_data.trajectory_key_image_3d  # the 3D picture is a key image too

    def timing(fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts["key_images"] += time.perf_counter() - t
        return timed

    report_data.trajectory_key_images = timing(original)
    report_data.trajectory_key_image_3d = timing(original_3d)
    try:
        t0 = time.perf_counter()
        data = build_report_data(plan, images, with_3d=with_3d)
        t1 = time.perf_counter()
        render_report_pdf(data, out)
        t2 = time.perf_counter()
    finally:
        report_data.trajectory_key_images = original
        report_data.trajectory_key_image_3d = original_3d
    return {"total": t2 - t0, "key_images": parts["key_images"], "data_other": t1 - t0 - parts["key_images"],
            "pdf": t2 - t1, "pages": len(PdfReader(str(out)).pages)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--case", choices=["demo", "ct", "both"], default="both")
    ap.add_argument("--keep", help="folder to keep the summaries in")
    args = ap.parse_args()
    cases = ["demo", "ct"] if args.case == "both" else [args.case]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        worst = 0.0
        for case in cases:
            plan, images, load_s = (_demo_case if case == "demo" else _ct_case)(folder)
            runs = [_time_summary(plan, images, folder / f"summary-{case}.pdf", True) for _ in range(args.repeat)]
            ref = [_time_summary(plan, images, folder / f"summary-{case}-no3d.pdf", False)
                   for _ in range(max(1, args.repeat // 2))]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            ref_total = statistics.median(r["total"] for r in ref)
            worst = max(worst, med["total"])
            print(f"{case}: summary {med['total']:.2f} s (key images {med['key_images']:.2f} s, other data "
                  f"{med['data_other']:.2f} s, PDF {med['pdf']:.2f} s), {int(med['pages'])} pages, "
                  f"{len(plan.trajectories)} trajectories | references: without the 3D view {ref_total:.2f} s; "
                  f"loading the images {load_s:.2f} s | target < {TARGET_S:g} s: "
                  f"{'met' if med['total'] < TARGET_S else 'NOT met'}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
