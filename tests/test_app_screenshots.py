"""Screenshots of each layout with the demo case (planning, fluoroscopy, compare), composited with
the VTK picture, checked on their pixels: images shown, orientation letters and annotations drawn,
the 3D view rendered. Runs offscreen and under Xvfb (the CI runs the GUI tests in both modes)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage

from tests.views_support import open_window

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def _rect(window, widget, img_w):
    """The widget's rectangle in screenshot pixels."""
    scale = img_w / window.width()
    tl = widget.mapTo(window, QPoint(0, 0))
    return (int(tl.x() * scale), int(tl.y() * scale), int(widget.width() * scale), int(widget.height() * scale))


def _letter_pixels(region: np.ndarray) -> int:
    r, g, b = (region[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r > 200) & (g > 160) & (b < 130)))  # the amber letter colour


def _check_canvas(arr, window, view, *, letters=True):
    x, y, w, h = _rect(window, view, arr.shape[1])
    region = arr[y:y + h, x:x + w]
    gray = region.mean(axis=2)
    assert gray.std() > 15 and gray.max() > 150, "the image is shown"
    if letters:
        band = 34
        edges = {"top": region[:band, w // 2 - 30: w // 2 + 30], "bottom": region[h - band:, w // 2 - 30: w // 2 + 30],
                 "left": region[h // 2 - 30: h // 2 + 30, :band], "right": region[h // 2 - 30: h // 2 + 30, w - band:]}
        for edge, px in edges.items():
            assert _letter_pixels(px) > 8, f"orientation letter on the {edge} edge"
    corner = region[: 30, : min(140, w // 2)].mean(axis=2)
    assert (corner > 180).sum() > 20, "corner annotation text"


@pytest.fixture(scope="module")
def demo_session_factory(demo_study):
    from planner.session import Session
    from planner.views.app import open_demo

    def make():
        s = Session()
        open_demo(s, demo_study.folder)
        return s

    return make


@pytest.mark.parametrize("layout", ["planning", "fluoro", "compare"])
def test_layout_screenshot_with_the_demo_case(layout, qtbot, demo_session_factory, tmp_path):
    w = open_window(qtbot, demo_session_factory(), layout=layout, size=(1600, 1000))
    qtbot.wait(200)
    if layout == "planning":
        vv = w.views.ensure_volume_view()
        vv.ensure_volume_now()
        assert vv.render_now()
    img = w.grab_with_vtk()
    out = tmp_path / f"{layout}.png"
    assert img.save(str(out)) and out.stat().st_size > 20000
    arr = _rgb(img)
    assert arr.mean() > 15 and arr.std() > 20
    if layout == "planning":
        for o in ("sagittal", "axial", "coronal"):
            _check_canvas(arr, w, w.views.slice_views[o], letters=o != "coronal")
        x, y, ww, hh = _rect(w, w.views.volume_view.vtk, arr.shape[1])
        three_d = arr[y:y + hh, x:x + ww].astype(int)
        assert three_d.std() > 15 and (three_d.max(axis=2) > 120).sum() > 2000, "the 3D view is rendered"
        # the level labels are drawn beside the bodies on the sagittal view (amber on dark boxes)
        sag = w.views.slice_views["sagittal"]
        x, y, ww, hh = _rect(w, sag, arr.shape[1])
        assert _letter_pixels(arr[y + 40:y + hh - 40, x + 40:x + ww - 40]) > 100
    elif layout == "fluoro":
        for p in w.views.fluoro_panels.values():
            _check_canvas(arr, w, p.view)
    else:
        for v in w.views.compare_views.values():
            assert v.series_key is not None
            _check_canvas(arr, w, v)
