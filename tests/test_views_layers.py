"""The slice views' cached layers (issue 6 frame budget): a handle drag repaints the plan over a
cached picture of the image, crosshair and levels, and what the physician sees is the same as a
direct paint; any change of what the cached layers show (slice, window, landmarks, cursor) is
shown at once."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from planner.imaging.volume import WindowLevel
from planner.plan import Landmarks, Trajectory
from planner.display.slice_geometry import SliceFrame
from tests.views_support import FOR_UID, drag, open_window, sagittal_volume, session_with

pytestmark = pytest.mark.gui

T2_KEY = "1.2.3.2"


def _pixels(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return a[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].astype(int)


def _cached_and_direct(view) -> tuple[np.ndarray, np.ndarray]:
    view.layer_cache = True
    cached = _pixels(view.grab().toImage())
    view.layer_cache = False
    try:
        direct = _pixels(view.grab().toImage())
    finally:
        view.layer_cache = True
    return cached, direct


def _assert_same_picture(view) -> None:
    cached, direct = _cached_and_direct(view)
    assert cached.shape == direct.shape
    diff = np.abs(cached - direct).max(axis=2)
    # text blended from its own layer may round one grey level differently; nothing else differs
    assert diff.max() <= 2, f"{view.orientation}: {int((diff > 2).sum())} pixels differ"


@pytest.fixture
def planned(qtbot):
    t2 = sagittal_volume(tilt_deg=10, nk=15, nj=140, ni=120, spacing=(0.8, 0.8, 3.5), desc="SAG T2", uid=T2_KEY,
                         header_window=WindowLevel(700, 1200, "header"))
    session = session_with((T2_KEY, t2, "T2"))
    frame = SliceFrame(t2, "sagittal")
    n = frame.n_slices // 2
    entry, target = frame.crn_to_world((90, 60, n)), frame.crn_to_world((40, 60, n))
    lid = session.document.add_level("L4", Landmarks(
        body_center_lps=tuple(frame.crn_to_world((40, 62, n))),
        anterior_wall_lps=tuple(frame.crn_to_world((20, 62, n))),
        posterior_wall_lps=tuple(frame.crn_to_world((60, 62, n)))))
    tid = session.document.add_trajectory(Trajectory(level_id=lid, entry_lps=tuple(entry), target_lps=tuple(target)))
    session.set_cursor(target, FOR_UID)
    w = open_window(qtbot, session)
    qtbot.wait(50)
    return w, session, lid, tid


def _widget_pos(view, lps) -> tuple[float, float]:
    x, y = view.to_widget(np.asarray(lps, dtype=float)[None, :])[0]
    return float(x), float(y)


def test_cached_paint_shows_the_same_picture_as_a_direct_paint(planned):
    w, session, lid, tid = planned
    views = [v for v in w.views.slice_views.values() if v.isVisible()]
    assert views
    for v in views:
        _assert_same_picture(v)


def test_a_trajectory_drag_reuses_the_image_layer_and_still_shows_the_move(planned, qtbot):
    w, session, lid, tid = planned
    sag = w.views.slice_views["sagittal"]
    target = np.asarray(session.document.plan.trajectory(tid).target_lps)
    sag.grab()
    renders, paints = sag.base_layer_renders, sag.image_paints
    before = _pixels(sag.grab().toImage())
    start = _widget_pos(sag, target)
    w.ctx.set_tool("crosshair")  # the edit tool grabs handles
    drag(sag, start, (start[0] - 25, start[1] + 12), Qt.MouseButton.LeftButton, steps=6)
    qtbot.wait(20)
    after = _pixels(sag.grab().toImage())
    assert not np.allclose(session.document.plan.trajectory(tid).target_lps, target)  # the drag edited the plan
    assert sag.image_paints > paints + 1                # repainted during the drag
    assert sag.base_layer_renders == renders            # ... over the cached image layer
    assert np.abs(after - before).max() > 50            # the trajectory is drawn where it went
    _assert_same_picture(sag)


def test_what_the_cached_layers_show_is_redrawn_when_it_changes(planned, qtbot):
    w, session, lid, tid = planned
    sag = w.views.slice_views["sagittal"]
    sag.grab()
    # a landmark edit moves the level label and the landmark rings (drawn in the cached layer)
    renders = sag.base_layer_renders
    lm = session.document.plan.level(lid).landmarks
    moved = np.asarray(lm.anterior_wall_lps) + sag.frame.ey * 6.0
    session.document.set_landmark(lid, "anterior_wall_lps", moved.tolist())
    sag.grab()
    assert sag.base_layer_renders == renders + 1
    _assert_same_picture(sag)
    # undo too
    session.document.undo()
    sag.grab()
    assert sag.base_layer_renders == renders + 2
    _assert_same_picture(sag)
    # window/level, slice and crosshair
    for change in (lambda: sag.set_window(WindowLevel(300, 500, "user")),
                   lambda: sag.set_slice(sag.n + 1),
                   lambda: session.set_cursor(session.cursor_lps + sag.frame.ex * 5.0, FOR_UID)):
        renders = sag.base_layer_renders
        change()
        sag.grab()
        assert sag.base_layer_renders == renders + 1
        _assert_same_picture(sag)
    # the corner texts follow the window (their own cached layer)
    texts = sag.text_layer_renders
    sag.set_window(WindowLevel(310, 520, "user"))
    sag.grab()
    assert sag.text_layer_renders == texts + 1
    _assert_same_picture(sag)
