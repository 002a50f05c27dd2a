"""The slice views of the real main window, driven with mouse and keyboard: window/level, slices,
pan/zoom/reset, the linked crosshair (checked numerically in LPS), measurements on a known geometry,
handle drags as one undo step, presets, and safe closing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from planner.imaging.volume import WindowLevel
from planner.plan import Landmarks, Level, Plan
from tests.views_support import (
    FOR_UID,
    click,
    drag,
    key,
    open_window,
    sagittal_volume,
    send_mouse,
    session_with,
    wheel,
)

pytestmark = pytest.mark.gui

T2_KEY, T1_KEY, STIR_KEY, OTHER_KEY = "1.2.3.2", "1.2.3.1", "1.2.3.3", "1.2.3.9"


def _session(plan=None):
    t2 = sagittal_volume(tilt_deg=10, nk=15, nj=140, ni=120, spacing=(0.8, 0.8, 3.5), desc="SAG T2", uid=T2_KEY,
                         header_window=WindowLevel(700, 1200, "header"))
    # same frame of reference, different grid and tilt: the crosshair must still land on the same point
    t1 = sagittal_volume(tilt_deg=4, nk=12, nj=100, ni=90, spacing=(1.1, 1.1, 4.0), desc="SAG T1", uid=T1_KEY, seed=1)
    stir = sagittal_volume(tilt_deg=10, nk=15, nj=140, ni=120, spacing=(0.8, 0.8, 3.5), desc="SAG STIR",
                           uid=STIR_KEY, seed=2)
    other = sagittal_volume(nk=10, desc="OTHER STUDY", uid=OTHER_KEY, for_uid="9.9.9")
    return session_with((T2_KEY, t2, "T2"), (T1_KEY, t1, "T1"), (STIR_KEY, stir, "STIR"), (OTHER_KEY, other, ""),
                        plan=plan)


@pytest.fixture
def window(qtbot):
    return open_window(qtbot, _session())


def _center(view):
    return (view.width() / 2.0, view.height() / 2.0)


def test_views_show_the_planning_volume_with_header_window(window):
    sag = window.views.slice_views["sagittal"]
    assert sag.series_key == T2_KEY
    assert sag.window == WindowLevel(700, 1200, "header")  # window/level from the DICOM header first
    assert sag.edge_letters()["left"].startswith("A") and sag.edge_letters()["top"].startswith("S")
    assert window.views.slice_views["axial"].edge_letters()["right"] == "L"


def test_left_drag_changes_window_level(window, qtbot):
    sag = window.views.slice_views["sagittal"]
    w0 = sag.window
    before = sag.grab().toImage()
    x, y = _center(sag)
    drag(sag, (x, y), (x + 80, y + 50), Qt.MouseButton.LeftButton)
    assert sag.window.width > w0.width      # drag right: wider window
    assert sag.window.center > w0.center    # drag down: higher level
    assert sag.window.source == "user"
    assert sag.grab().toImage() != before   # the picture changed
    # "0" restores the automatic percentile window
    key(sag, Qt.Key.Key_0)
    assert sag.window == sag.volume.auto_window()


def test_wheel_arrows_pages_home_end_move_through_slices(window):
    sag = window.views.slice_views["sagittal"]
    n0 = sag.n
    wheel(sag, _center(sag), -1)  # towards the user: next slice
    assert sag.n == n0 + 1
    wheel(sag, _center(sag), 2)
    assert sag.n == n0 - 1
    key(sag, Qt.Key.Key_Down)
    assert sag.n == n0
    key(sag, Qt.Key.Key_PageDown)
    assert sag.n == n0 + window.bindings.page_step
    key(sag, Qt.Key.Key_Home)
    assert sag.n == 0
    key(sag, Qt.Key.Key_End)
    assert sag.n == sag.frame.n_slices - 1
    key(sag, Qt.Key.Key_Down)  # clamped at the last slice
    assert sag.n == sag.frame.n_slices - 1


def test_middle_drag_pans_right_drag_and_ctrl_wheel_zoom_r_resets(window):
    ax = window.views.slice_views["axial"]
    fitted_zoom, fitted_center = ax.zoom, ax.center.copy()
    x, y = _center(ax)
    drag(ax, (x, y), (x + 40, y - 20), Qt.MouseButton.MiddleButton)
    np.testing.assert_allclose(ax.center, fitted_center - np.array([40, -20]) / ax.zoom, atol=1e-6)
    drag(ax, (x, y), (x, y - 60), Qt.MouseButton.RightButton)  # drag up: zoom in
    assert ax.zoom > fitted_zoom * 1.5
    z = ax.zoom
    wheel(ax, (x, y), 1, Qt.KeyboardModifier.ControlModifier)
    assert ax.zoom == pytest.approx(z * 1.15)
    key(ax, Qt.Key.Key_R)
    assert ax.zoom == pytest.approx(fitted_zoom)
    np.testing.assert_allclose(ax.center, fitted_center)


def test_shift_move_crosshair_moves_every_linked_view_to_the_same_lps_point(window, qtbot):
    views = window.views
    sag, ax, cor = (views.slice_views[o] for o in ("sagittal", "axial", "coronal"))
    window.set_layout("compare")
    window.set_layout("planning")
    other_view = views.compare_views["T1"]
    other_view.set_series(OTHER_KEY)  # a study in another frame of reference
    other_n = other_view.n
    pos = (sag.width() * 0.4, sag.height() * 0.35)
    send_mouse(sag, "move", pos, modifiers=Qt.KeyboardModifier.ShiftModifier)
    cursor = window.session.cursor_lps
    expected = sag.model_point(QPointF(*pos))
    np.testing.assert_allclose(cursor, expected, atol=1e-9)
    assert window.session.cursor_frame_of_reference_uid == FOR_UID
    linked = [sag, ax, cor] + [views.compare_views[r] for r in ("T2", "STIR")]
    for v in linked:
        # each linked view shows the slice through the cursor (within half a slice) ...
        d = v.frame.distance_to_slice(cursor[None], v.n)[0]
        assert abs(d) <= v.frame.slice_spacing / 2 + 1e-6, (v.title, d)
        # ... and the in-plane crosshair is exactly at the cursor's projection
        in_plane = v.frame.from_plane(v.frame.to_plane(cursor[None])[0], v.n)
        offset = in_plane - cursor
        np.testing.assert_allclose(offset, v.frame.normal * (offset @ v.frame.normal), atol=1e-6)
    assert other_view.n == other_n  # other frame of reference: not moved
    # the crosshair tool: a click sets the cursor too
    qtbot.keyClick(window, Qt.Key.Key_C)
    assert window.ctx.tool == "crosshair"
    click(ax, (ax.width() * 0.6, ax.height() * 0.5))
    np.testing.assert_allclose(window.session.cursor_lps, ax.model_point(QPointF(ax.width() * 0.6, ax.height() * 0.5)))
    assert abs(sag.frame.distance_to_slice(window.session.cursor_lps[None], sag.n)[0]) <= sag.frame.slice_spacing / 2


def _widget_pos(view, lps):
    w = view.to_widget(np.asarray(lps, dtype=float)[None])[0]
    return (float(w[0]), float(w[1]))


def test_distance_measurement_reports_the_right_length(window, qtbot):
    sag = window.views.slice_views["sagittal"]
    qtbot.keyClick(window, Qt.Key.Key_D)
    assert window.ctx.tool == "distance"
    frame, n = sag.frame, sag.n
    # two voxel centres 50 columns and 60 rows apart on a 0.8 mm grid: sqrt(40^2 + 48^2) mm
    p0 = frame.crn_to_world((30, 40, n))
    p1 = frame.crn_to_world((80, 100, n))
    expected = math.hypot(50 * 0.8, 60 * 0.8)
    click(sag, _widget_pos(sag, p0))
    click(sag, _widget_pos(sag, p1))
    ms = window.session.document.plan.measurements
    assert len(ms) == 1 and ms[0].kind == "distance" and ms[0].series_instance_uid == T2_KEY
    got = float(np.linalg.norm(np.subtract(ms[0].points_lps[1], ms[0].points_lps[0])))
    assert got == pytest.approx(expected, abs=1.5 / sag.zoom)  # mouse positions are whole pixels
    assert sag.measure_label("distance", np.asarray(ms[0].points_lps)) == f"{got:.1f} mm"
    # measured on the slice: both points lie in the displayed plane
    assert np.all(np.abs(frame.distance_to_slice(np.asarray(ms[0].points_lps), n)) < 1e-6)
    # a drag measures too, and Del deletes the selected measurement; Ctrl+Z brings it back
    drag(sag, _widget_pos(sag, frame.crn_to_world((100, 20, n))), _widget_pos(sag, frame.crn_to_world((100, 80, n))),
         Qt.MouseButton.LeftButton)
    ms = window.session.document.plan.measurements
    assert len(ms) == 2
    assert float(np.linalg.norm(np.subtract(*ms[1].points_lps))) == pytest.approx(60 * 0.8, abs=1.5 / sag.zoom)
    key(sag, Qt.Key.Key_Delete)
    assert len(window.session.document.plan.measurements) == 1
    window.actions["edit.undo"].trigger()
    assert len(window.session.document.plan.measurements) == 2


def test_angle_measurement_in_degrees(window, qtbot):
    ax = window.views.slice_views["axial"]
    window.ctx.set_tool("angle")
    frame, n = ax.frame, ax.n
    a = frame.crn_to_world((5, 20, n))
    vertex = frame.crn_to_world((5, 60, n))
    b = frame.crn_to_world((12, 60, n))
    for p in (a, vertex, b):
        click(ax, _widget_pos(ax, p))
    m = window.session.document.plan.measurements[-1]
    assert m.kind == "angle" and len(m.points_lps) == 3
    from planner.display.annotations import angle_deg

    got = angle_deg(np.asarray(m.points_lps))
    assert got == pytest.approx(90.0, abs=2.0)  # the axial grid is orthogonal
    assert ax.measure_label("angle", np.asarray(m.points_lps)) == f"{got:.1f}\u00b0"


def test_window_level_drag_on_a_landmark_windows_and_edit_drags_move_it(qtbot):
    """Issue 15 item 4: a W/L drag that starts on a landmark handle changes W/L, not the plan (the undo
    stack is unchanged); hovering the handle says what a drag would move and how; Alt+drag, or the
    crosshair/edit tool, moves it as one undo step."""
    session = _session()
    sag_frame_probe = __import__("planner.display.slice_geometry", fromlist=["SliceFrame"]).SliceFrame(
        session.images[T2_KEY], "sagittal")
    n = sag_frame_probe.n_slices // 2
    center = sag_frame_probe.crn_to_world((60, 70, n))
    session.document.add_level("L4", Landmarks(body_center_lps=tuple(center)))
    session.document.mark_saved()
    session.set_cursor(center, FOR_UID)
    w = open_window(qtbot, session)
    sag = w.views.slice_views["sagittal"]
    assert sag.n == n and w.ctx.tool == "window_level"
    sag.repaint()
    undo_before = len(session.document._undo)
    start = _widget_pos(sag, center)
    # hovering the handle: what a drag would move, and the gesture that moves it
    send_mouse(sag, "move", start)
    assert "L4 body centre" in w.statusBar().currentMessage() and "Alt+drag" in w.statusBar().currentMessage()
    assert sag.cursor().shape() != Qt.CursorShape.OpenHandCursor
    # the W/L drag from the handle windows the image and leaves the plan alone
    wl_before = sag.window
    drag(sag, start, (start[0] + 30, start[1] + 20), Qt.MouseButton.LeftButton, steps=6)
    np.testing.assert_allclose(session.document.plan.levels[0].landmarks.body_center_lps, center)
    assert len(session.document._undo) == undo_before and not session.document.is_dirty
    assert sag.window != wl_before and sag.window.width > wl_before.width
    # Alt+drag moves the landmark: six moves, one undo step
    drag(sag, start, (start[0] + 30, start[1]), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier, steps=6)
    moved = np.asarray(session.document.plan.levels[0].landmarks.body_center_lps)
    np.testing.assert_allclose(moved - center, sag.frame.ex * 30 / sag.zoom, atol=1e-6)
    assert len(session.document._undo) == undo_before + 1
    w.actions["edit.undo"].trigger()
    np.testing.assert_allclose(session.document.plan.levels[0].landmarks.body_center_lps, center)
    # the crosshair/edit tool grabs handles without a modifier
    w.actions["tool.crosshair"].trigger()
    sag.repaint()
    send_mouse(sag, "move", start)
    assert sag.cursor().shape() == Qt.CursorShape.OpenHandCursor
    assert "drag moves it" in w.statusBar().currentMessage()
    drag(sag, start, (start[0], start[1] + 25), Qt.MouseButton.LeftButton, steps=4)
    moved = np.asarray(session.document.plan.levels[0].landmarks.body_center_lps)
    np.testing.assert_allclose(moved - center, sag.frame.ey * 25 / sag.zoom, atol=1e-6)
    w.shutdown()


def test_read_only_plans_have_no_draggable_handles(qtbot):
    session = _session()
    c = session.images[T2_KEY].center_lps()
    session.document.add_level("L3", Landmarks(body_center_lps=tuple(c)))
    session.set_cursor(c, FOR_UID)
    session.document.read_only = True
    w = open_window(qtbot, session)
    sag = w.views.slice_views["sagittal"]
    sag.repaint()
    start = _widget_pos(sag, c)
    drag(sag, start, (start[0] + 25, start[1]), Qt.MouseButton.LeftButton)
    np.testing.assert_allclose(session.document.plan.levels[0].landmarks.body_center_lps, c)
    assert "read-only" in w.windowTitle()
    w.shutdown()


def test_window_level_presets_per_sequence_are_remembered(window):
    from planner.views.gui_settings import PresetStore

    sag = window.views.slice_views["sagittal"]
    sag.set_window(WindowLevel(512, 900, "user"))
    sag.save_window_preset("T2", "spine soft")
    fresh = PresetStore()  # a new settings object reads the file again
    names = [n for n, _ in fresh.presets_for(sag.volume, "T2")]
    assert "spine soft" in names and any(n.startswith("Header") for n in names) and names.count("spine soft") == 1
    wl = dict(fresh.presets_for(sag.volume, "T2"))["spine soft"]
    assert (wl.center, wl.width) == (512, 900)
    assert "spine soft" not in [n for n, _ in fresh.presets_for(sag.volume, "STIR")]


def test_annotations_detail_and_deidentified_display(window):
    sag = window.views.slice_views["sagittal"]
    texts = lambda: " | ".join(t for lines in sag.corner_texts().values() for t, _ in lines)  # noqa: E731
    full = texts()
    assert "TEST, Patient" in full and "TP-1" in full and "W 1200" in full and "Im " in full
    window.actions["view.deidentified"].trigger()
    assert "TEST" not in texts() and "TP-1" not in texts() and "De-identified" in texts()
    window.actions["view.annotation_detail"].trigger()
    assert len(texts()) < len(full)


def test_closing_is_safe_then_model_events_render_nothing(qtbot):
    session = _session(Plan(levels=[Level(name="L4")]))
    w = open_window(qtbot, session)
    vv = w.views.ensure_volume_view()
    canvases = w.views.all_canvases()
    assert w.close()
    paints = [c.image_paints for c in canvases]
    # late model events after close: no render, no error
    session.document.add_level("L5")
    session.set_cursor((1.0, 2.0, 3.0))
    session.document.undo()
    qtbot.wait(300)
    assert [c.image_paints for c in canvases] == paints
    assert vv.vtk.closed and vv.render_now() is False
    assert session.document.changed.receiver_count == 0 or all(
        getattr(s, "__self__", None) not in canvases + [vv] for s in session.document.changed._slots)


def test_dragging_a_trajectory_point_moves_it_in_the_slice_with_one_undo_step(qtbot):
    from planner.plan import Trajectory
    from planner.display.slice_geometry import SliceFrame

    session = _session()
    frame = SliceFrame(session.images[T2_KEY], "sagittal")
    n = frame.n_slices // 2
    entry, target = frame.crn_to_world((90, 60, n)), frame.crn_to_world((40, 60, n))
    lid = session.document.add_level("L4", Landmarks(body_center_lps=tuple(frame.crn_to_world((40, 62, n)))))
    tid = session.document.add_trajectory(Trajectory(level_id=lid, entry_lps=tuple(entry), target_lps=tuple(target)))
    session.set_cursor(target, FOR_UID)
    w = open_window(qtbot, session)
    sag = w.views.slice_views["sagittal"]
    assert sag.n == n
    handles = {h.key: h for h in sag.current_handles() if h.kind == "trajectory"}
    assert set(handles) == {(tid, "entry"), (tid, "target")}
    steps_before = len(session.document._undo)
    start = _widget_pos(sag, target)
    w.ctx.set_tool("crosshair")  # the edit tool grabs handles
    drag(sag, start, (start[0] - 20, start[1] + 10), Qt.MouseButton.LeftButton, steps=8)
    moved = np.asarray(session.document.plan.trajectory(tid).target_lps)
    np.testing.assert_allclose(moved - target, (sag.frame.ex * -20 + sag.frame.ey * 10) / sag.zoom, atol=1e-6)
    np.testing.assert_allclose(session.document.plan.trajectory(tid).entry_lps, entry)
    assert len(session.document._undo) == steps_before + 1
    assert "target" in session.document.undo_text.lower() or "move" in session.document.undo_text.lower()
    w.actions["edit.undo"].trigger()
    np.testing.assert_allclose(session.document.plan.trajectory(tid).target_lps, target)


def _level_labels_drawn(monkeypatch) -> list[tuple[object, str, object]]:
    """The labels the views draw from now on, as (the frame of the view painting its levels, the text, its box)."""
    from planner.views.render import overlays2d

    drawn: list[tuple[object, str, object]] = []
    painting: list[object] = [None]
    real_draw, real_levels = overlays2d.draw_label, overlays2d.paint_levels

    def spy(p, surface, pos, text, color, bold=True):
        rect = real_draw(p, surface, pos, text, color, bold)
        drawn.append((painting[0], text, rect))
        return rect

    def levels_of(p, surface, frame, n, plan, draw_handles):
        painting[0] = frame
        return real_levels(p, surface, frame, n, plan, draw_handles)

    monkeypatch.setattr(overlays2d, "paint_levels", levels_of)
    monkeypatch.setattr(overlays2d, "draw_label", spy)
    return drawn


def test_a_body_is_named_on_every_sagittal_slice_through_its_middle(qtbot, monkeypatch):
    """A level measured on its mid-sagittal line only (no pedicles: an MRI level where they do not show) is
    named on a sagittal slice 12 mm to its side, which still cuts its body (a body 32 mm deep is wider than
    that), and not on one 30 mm to its side, past its width."""
    drawn = _level_labels_drawn(monkeypatch)
    t2 = sagittal_volume(nk=50, nj=140, ni=120, spacing=(0.8, 0.8, 1.5), desc="SAG T2", uid=T2_KEY)
    session = session_with((T2_KEY, t2, "T2"))
    c = t2.center_lps()
    left = np.array([1.0, 0.0, 0.0])  # LPS +x: the patient's left, across the sagittal slices
    session.document.add_level("L1", Landmarks(
        body_center_lps=tuple(c), anterior_wall_lps=tuple(c - [0, 16, 0]), posterior_wall_lps=tuple(c + [0, 16, 0]),
        superior_endplate_lps=tuple(c + [0, 0, 13]), inferior_endplate_lps=tuple(c - [0, 0, 13])))
    w = open_window(qtbot, session)
    sag = w.views.slice_views["sagittal"]
    for offset_mm, named in ((12.0, True), (-12.0, True), (30.0, False), (1.5, True)):
        drawn.clear()
        session.set_cursor(c + offset_mm * left, FOR_UID)
        assert abs(sag.frame.distance_to_slice((c + offset_mm * left)[None], sag.n)[0]) <= 0.75 + 1e-6
        sag.repaint()
        assert any(view is sag.frame and text == "L1" for view, text, _ in drawn) is named, (offset_mm, drawn)
    w.shutdown()


def test_a_level_name_at_the_view_edge_stays_clear_of_the_orientation_letter(qtbot, monkeypatch):
    """A body at the top edge of the coronal view (T12 at the top of a lumbar series), whose name would fall on the
    "S" orientation letter in the middle of that edge, has its name drawn beside the letter."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QFontMetricsF

    drawn = _level_labels_drawn(monkeypatch)
    t2 = sagittal_volume(nk=30, nj=140, ni=120, spacing=(0.8, 0.8, 1.5), desc="SAG T2", uid=T2_KEY)
    session = session_with((T2_KEY, t2, "T2"))
    w = open_window(qtbot, session)
    cor = w.views.slice_views["coronal"]
    session.set_cursor(t2.center_lps(), FOR_UID)
    cor.repaint()
    # on the view's top edge, on this slice, where the name (drawn left of the body) meets the letter
    top = np.asarray(cor.model_point(QPointF(cor.width() / 2.0 + 57.0, 4.0)))
    up, ap = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    drawn.clear()
    session.document.add_level("T12", Landmarks(
        body_center_lps=tuple(top), anterior_wall_lps=tuple(top + 16 * ap), posterior_wall_lps=tuple(top - 16 * ap),
        superior_endplate_lps=tuple(top + 12 * up), inferior_endplate_lps=tuple(top - 12 * up)))
    cor.repaint()
    rects = [r for view, text, r in drawn if text == "T12" and view is cor.frame]
    # the letter's box (ImageCanvas._paint_letters: centred, 6 px from the edge)
    fm = QFontMetricsF(cor._letter_font)
    half = fm.horizontalAdvance("S") / 2
    letter = QRectF(cor.width() / 2 - half, 6, 2 * half, fm.height())
    assert rects and not any(r.intersects(letter) for r in rects), (rects, letter)
    w.shutdown()
