#!/usr/bin/env python3
"""Viewing benchmark (issue 4): prints, in one run,

1. the median time to redraw a slice view after a slice change, for a 512x512 image (goal < 16 ms),
   with the cost of each reslice method for the same plane (native indexing, vtkImageReslice, numpy);
2. the time from process start to the first image on screen with the demo case (goal < 2 s), next
   to a reference measured in the same run: a bare Qt window showing one image;
3. the redraw time of the 3D view (volume rendering of the demo T2, and without the volume);
4. the longest time the GUI thread cannot answer (a "stall": the longest gap between the ticks of a 5 ms
   timer) while the plan summary and the DICOM export of the demo case are written from the window,
   next to the reference measured in the same run: the key images rendered in one call on the GUI
   thread, as the window did before issue 15 (``build_report_data`` / ``prepare_export``, then the
   writing in the background).

Run: ``.venv/bin/python bench/view_bench.py [--part slice|startup|3d|export]`` (all parts by default;
offscreen when there is no DISPLAY). Numbers depend on the machine (software OpenGL on CI machines);
compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
HOME = tempfile.mkdtemp(prefix="bvn-bench-")
os.environ["BVN_PLANNER_HOME"] = HOME

import numpy as np  # noqa: E402


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def volume_512(nk: int = 24):
    from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps

    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[0:nk, 0:512, 0:512]
    arr = (500 + 2 * i + 600 * ((j // 60) % 2) + rng.integers(0, 80, size=(nk, 512, 512))).astype(np.int16)
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # sagittal: i=P, j=I, k=L
    m = make_ijk_to_lps((-40.0, -120.0, 120.0), direction, (0.47, 0.47, 3.5))
    return Volume(arr, m, ImageInfo(modality="MR", series_description="BENCH 512", frame_of_reference_uid="1.2.3"))


def bench_slice_redraw(app) -> None:
    from planner.session import Session
    from planner.views.context import ViewContext
    from planner.display.slice_geometry import SliceFrame
    from planner.views.slice_view import SliceView

    vol = volume_512()
    session = Session()
    session.add_image("v", vol)
    ctx = ViewContext(session)
    view = SliceView(ctx, "sagittal", "v")
    view.resize(900, 900)
    view.show()
    for _ in range(5):
        app.processEvents()
    assert view.frame.image(0).shape == (512, 512)
    times, paints = [], []
    for idx in range(80):
        t0 = time.perf_counter()
        view.step(1 if (idx // 20) % 2 == 0 else -1)
        view.repaint()  # synchronous paint: window/level, 8-bit image, drawing, overlays, text
        times.append(time.perf_counter() - t0)
        paints.append(view.last_paint_ms)
    med = statistics.median(times)
    print(f"slice view redraw after a slice change, 512x512 image in a 900x900 view: median {ms(med)} "
          f"(p90 {ms(sorted(times)[int(0.9 * len(times))])}, {1 / med:.0f} frames/s; goal < 16 ms)")
    print(f"    of which paintEvent (windowing + drawing): median {statistics.median(paints):.1f} ms over "
          f"{len(paints)} paints")
    # the reslice step alone, for the same plane size
    native = SliceFrame(vol, "sagittal")
    t = [time.perf_counter()]
    for n in range(native.n_slices):
        native.image(n)
    t.append(time.perf_counter())
    print(f"    reslice, acquisition-aligned (array indexing): {(t[1] - t[0]) / native.n_slices * 1e6:.1f} us "
          f"per slice (a view of the array; what the views use by default)")
    for backend in ("vtk", "numpy"):
        frame = SliceFrame(vol, "sagittal", mode="patient", reslice_backend=backend)
        frame.image(0)
        n_run = 5
        t0 = time.perf_counter()
        for n in range(n_run):
            frame.image(frame.n_slices // 2 + n)
        per = (time.perf_counter() - t0) / n_run
        rows, cols = frame.image(0).shape
        print(f"    reslice, patient axes with {backend:5s}: {ms(per)} per {cols}x{rows} slice")
    view.shutdown()
    view.close()


def bench_startup() -> None:
    from planner.demo import ensure_demo_case

    ensure_demo_case()  # written once into the bench's data folder (not timed)
    env = dict(os.environ, BVN_STARTUP_PROBE="1")
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, str(ROOT / "main.py"), "--demo"], capture_output=True, text=True,
                             env=env, timeout=120, cwd=str(ROOT))
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("first-image-ms")), None)
        if line is None:
            print("start-up: no first image reported:", out.stderr[-500:])
            return
        runs.append(float(line.split()[1]))
    ref_code = (
        "import time,os,sys\n"
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "from PySide6.QtGui import QImage, QPixmap\n"
        "app=QApplication([]); import numpy as np\n"
        "a=np.zeros((512,512),np.uint8); lab=QLabel(); lab.setPixmap(QPixmap.fromImage(QImage(a.data,512,512,512,"
        "QImage.Format.Format_Grayscale8))); lab.show(); app.processEvents()\n"
        "f=open('/proc/self/stat').read().rsplit(')',1)[1].split(); up=float(open('/proc/uptime').read().split()[0])\n"
        "print('ref-ms', (up-float(f[19])/os.sysconf('SC_CLK_TCK'))*1000)\n")
    refs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", ref_code], capture_output=True, text=True, env=env, timeout=60)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("ref-ms")), None)
        if line:
            refs.append(float(line.split()[1]))
    print(f"start-up to the first image on screen with the demo case: median {statistics.median(runs):.0f} ms "
          f"(runs {', '.join(f'{r:.0f}' for r in runs)}; goal < 2000 ms)")
    if refs:
        print(f"    reference, a bare Qt window showing one 512x512 image: median {statistics.median(refs):.0f} ms")


def bench_3d(app) -> None:
    from planner.session import Session
    from planner.display import roles
    from planner.views.app import open_demo
    from planner.views.context import ViewContext
    from planner.views.volume_view import VolumeView

    session = Session()
    open_demo(session)
    ctx = ViewContext(session)
    vv = VolumeView(ctx)
    vv.resize(600, 600)
    vv.show()
    for _ in range(5):
        app.processEvents()
    vv.set_series(roles.main_volume_key(session))
    vv.ensure_volume_now()
    vv.render_now()  # first frame: uploads the volume to the GPU (or llvmpipe)
    first = vv.last_render_ms
    cam = vv.renderer.GetActiveCamera()
    times = []
    for _ in range(6):
        cam.Azimuth(10)
        vv.render_now()
        times.append(vv.last_render_ms)
    rw = vv.vtk.GetRenderWindow()
    rw.SetDesiredUpdateRate(15.0)  # what the interactor asks for while the user rotates
    interactive = []
    for _ in range(6):
        cam.Azimuth(10)
        vv.render_now()
        interactive.append(vv.last_render_ms)
    rw.SetDesiredUpdateRate(0.0001)
    vv.volume_check.setChecked(False)
    no_vol = []
    for _ in range(6):
        cam.Azimuth(10)
        vv.render_now()
        no_vol.append(vv.last_render_ms)
    vol = session.images[vv.series_key]
    print(f"3D view redraw at 600x600 (demo T2, {'x'.join(map(str, vol.shape_ijk))} voxels): median "
          f"{statistics.median(times):.0f} ms with volume rendering (first frame {first:.0f} ms); "
          f"{statistics.median(no_vol):.0f} ms without the volume (planes, labels, trajectories)")
    print(f"    while rotating (interactive update rate 15/s, coarser sampling): median "
          f"{statistics.median(interactive):.0f} ms")
    try:
        info = vv.vtk.GetRenderWindow().ReportCapabilities().splitlines()
        renderer = next((ln for ln in info if "OpenGL renderer" in ln), "")
        if renderer:
            print(f"    {renderer.strip()}")
    except Exception:
        pass
    vv.shutdown()


class StallMeter:
    """The longest gap between the ticks of a 5 ms timer on the GUI thread: how long the window could
    not repaint or answer a click."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.longest = 0.0
        #: What was running when the longest stall began (``where()`` at the tick before it).
        self.during = ""
        self.where = lambda: ""
        self._where_last = ""

    def _tick(self) -> None:
        now = time.perf_counter()
        if now - self.last > self.longest:
            self.longest, self.during = now - self.last, self._where_last
        self.last = now
        self._where_last = self.where()

    def start(self, where=lambda: "") -> None:
        self.last, self.longest, self.during, self.where = time.perf_counter(), 0.0, "", where
        self._where_last = where()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        self._tick()
        return self.longest


def _wait(app, done) -> None:
    while not done():
        app.processEvents()
        time.sleep(0.002)


def bench_export(app) -> None:
    from planner.session import Session
    from planner.views.app import open_demo, settle
    from planner.views.background import BackgroundCall
    from planner.views.main_window import MainWindow

    session = Session()
    open_demo(session)
    window = MainWindow(session, initial_layout="planning", restore_state=False)
    window.resize(1280, 800)
    window.show()
    settle(app, 300)
    out = Path(tempfile.mkdtemp(prefix="bvn-export-bench-"))
    plan, images = session.document.plan, dict(session.images)
    n = len(plan.trajectories)
    meter = StallMeter()

    def reference(build, write) -> tuple[float, float]:
        """The window before: the key images in one call on the GUI thread, then writing in the background."""
        state: dict = {}

        def run() -> None:
            data = build()
            call = BackgroundCall(lambda _p: write(data))
            call.finished.connect(lambda *_: state.setdefault("done", True))
            state["call"] = call
            call.start()

        t0 = time.perf_counter()
        meter.start()
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, run)
        _wait(app, lambda: state.get("done"))
        return meter.stop(), time.perf_counter() - t0

    def window_export(start) -> tuple[float, float]:
        result: list = []
        window.exports.finished.connect(lambda *a: result.append(a))
        t0 = time.perf_counter()
        meter.start(lambda: window.exports.stage)
        start()
        _wait(app, lambda: result)
        stall, total = meter.stop(), time.perf_counter() - t0
        window.exports.finished.disconnect()
        if result[0][2] != "ok":
            raise RuntimeError(f"the export failed: {result[0][2]}")
        return stall, total

    from planner.export import prepare_export, write_export
    from planner.report import build_report_data, render_report_pdf

    # warm-up (not measured): the first imports and the first offscreen VTK context of the process
    render_report_pdf(build_report_data(plan, images), out / "warm-up.pdf")
    ref = reference(lambda: build_report_data(plan, images), lambda d: render_report_pdf(d, out / "ref.pdf"))
    new = window_export(lambda: window.exports.export_report(str(out / "summary.pdf")))
    print(f"Export from the window, demo case ({n} trajectories), longest GUI-thread stall / total time:")
    print(f"    plan summary: {ms(new[0])} (in the {meter.during} stage) / {new[1]:.1f} s  (reference, key images "
          f"in one GUI-thread call: {ms(ref[0])} / {ref[1]:.1f} s)")
    ref = reference(lambda: prepare_export(plan, images), lambda p: write_export(p, out / "ref-dicom"))
    new = window_export(lambda: window.exports.export_dicom(str(out / "dicom"), offer_send=False))
    print(f"    DICOM export: {ms(new[0])} (in the {meter.during} stage) / {new[1]:.1f} s  (reference: {ms(ref[0])} / "
          f"{ref[1]:.1f} s)")
    window.shutdown()


def main() -> int:
    from planner.views.app import create_application

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("all", "slice", "startup", "3d", "export"), default="all")
    args = ap.parse_args()
    app = create_application()
    print(f"platform: {app.platformName()}, CPUs: {os.cpu_count()}")
    if args.part in ("all", "slice"):
        bench_slice_redraw(app)
    if args.part in ("all", "startup"):
        bench_startup()
    if args.part in ("all", "3d"):
        bench_3d(app)
    if args.part in ("all", "export"):
        bench_export(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
