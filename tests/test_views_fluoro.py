"""Fluoroscopy views in the real window: detector-plane lengths until calibrated, the calibrate tool,
pixel-only images, angles, cine playback and frame keys."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from planner.imaging.volume import ProjectionGeometry
from tests.views_support import click, drag, key, open_window, projection, session_with

pytestmark = pytest.mark.gui


@pytest.fixture
def fluoro_window(qtbot):
    ap = projection(uid="1.2.9.1", sop="1.2.9.1.1", imager_spacing=(0.3, 0.3), n_frames=1)
    lat = projection(uid="1.2.9.2", sop="1.2.9.2.1", desc="LAT", view_position="LAT", n_frames=6,
                     orientation=("A", "F"))
    session = session_with(("1.2.9.1", ap, "FLUORO_AP"), ("1.2.9.2", lat, "FLUORO_LAT"))
    return open_window(qtbot, session, layout="fluoro")


def _px(view, col, row):
    w = view.to_widget([[col, row]])[0]
    return (float(w[0]), float(w[1]))


def test_fluoro_layout_shows_ap_and_lateral_with_letters(fluoro_window):
    panels = fluoro_window.views.fluoro_panels
    ap, lat = panels["AP"].view, panels["LAT"].view
    assert ap.series_key == "1.2.9.1" and lat.series_key == "1.2.9.2"
    assert ap.edge_letters() == {"right": "L", "left": "R", "bottom": "I", "top": "S"}
    assert lat.edge_letters()["right"] == "A" and lat.edge_letters()["left"] == "P"
    assert panels["LAT"].controls.isVisibleTo(panels["LAT"]) and not panels["AP"].controls.isVisibleTo(panels["AP"])


def test_lengths_are_at_the_detector_until_calibrated(fluoro_window, qtbot):
    ap = fluoro_window.views.fluoro_panels["AP"].view
    fluoro_window.ctx.set_tool("distance")
    click(ap, _px(ap, 40, 50))
    click(ap, _px(ap, 140, 50))  # 100 px at 0.3 mm imager spacing
    m = fluoro_window.session.document.plan.measurements[-1]
    assert m.sop_instance_uid == "1.2.9.1.1" and len(m.points_px) == 2 and not m.points_lps
    length_px = abs(m.points_px[1][0] - m.points_px[0][0])
    assert length_px == pytest.approx(100, abs=2 / ap.zoom)
    label = ap.measure_label("distance", m.points_px)
    assert label.endswith("mm at detector") and float(label.split()[0]) == pytest.approx(0.3 * length_px, abs=0.06)
    assert any("mm at detector" in t for t, _ in ap.corner_texts()["bottom_right"])

    # calibrate: a line over an object of known length (25 mm) spanning 100 px
    fluoro_window.ctx.ask_length_mm = lambda prompt: 25.0
    qtbot.keyClick(fluoro_window, Qt.Key.Key_K)
    assert fluoro_window.ctx.tool == "calibrate"
    drag(ap, _px(ap, 40, 120), _px(ap, 140, 120), Qt.MouseButton.LeftButton)
    cal = fluoro_window.session.document.plan.fluoro_calibrations
    assert len(cal) == 1 and cal[0].sop_instance_uid == "1.2.9.1.1"
    assert cal[0].mm_per_pixel == pytest.approx(0.25, rel=0.03) and "25" in cal[0].method
    label = ap.measure_label("distance", m.points_px)
    assert label.endswith("mm (calibrated)")
    assert float(label.split()[0]) == pytest.approx(cal[0].mm_per_pixel * length_px, abs=0.06)
    # the calibration is one undoable edit
    fluoro_window.actions["edit.undo"].trigger()
    assert not fluoro_window.session.document.plan.fluoro_calibrations
    assert ap.measure_label("distance", m.points_px).endswith("mm at detector")


def test_cancelled_calibration_changes_nothing(fluoro_window):
    ap = fluoro_window.views.fluoro_panels["AP"].view
    fluoro_window.ctx.ask_length_mm = lambda prompt: None
    fluoro_window.ctx.set_tool("calibrate")
    drag(ap, _px(ap, 10, 10), _px(ap, 110, 10), Qt.MouseButton.LeftButton)
    assert not fluoro_window.session.document.plan.fluoro_calibrations
    assert not fluoro_window.session.document.is_dirty


def test_images_without_spacing_measure_in_pixels(qtbot):
    img = projection(uid="1.2.9.5", sop="1.2.9.5.1")
    img.geometry = ProjectionGeometry()
    w = open_window(qtbot, session_with(("1.2.9.5", img, "FLUORO_AP")), layout="fluoro")
    ap = w.views.fluoro_panels["AP"].view
    assert ap.measure_label("distance", [[0, 0], [30, 40]]) == "50.0 px"
    assert ap.edge_letters() == {}  # no Patient Orientation: no guessed letters


def test_angle_on_fluoroscopy(fluoro_window):
    ap = fluoro_window.views.fluoro_panels["AP"].view
    fluoro_window.ctx.set_tool("angle")
    for c, r in ((40, 20), (40, 120), (140, 120)):
        click(ap, _px(ap, c, r))
    m = fluoro_window.session.document.plan.measurements[-1]
    assert m.kind == "angle"
    assert float(ap.measure_label("angle", m.points_px).rstrip("\u00b0")) == pytest.approx(90.0, abs=2.0)


def test_cine_playback_and_frame_keys(fluoro_window, qtbot):
    panel = fluoro_window.views.fluoro_panels["LAT"]
    lat = panel.view
    key(lat, Qt.Key.Key_Right)
    assert lat.frame_index == 1 and panel.slider.value() == 1
    key(lat, Qt.Key.Key_End)
    assert lat.frame_index == 5
    key(lat, Qt.Key.Key_Space)
    assert lat.playing and panel.play_button.text() == "\u23f8"
    qtbot.waitUntil(lambda: lat.frame_index not in (5,), timeout=3000)
    key(lat, Qt.Key.Key_Space)
    assert not lat.playing and panel.play_button.text() == "\u25b6"
    panel.slider.setValue(3)
    assert lat.frame_index == 3
    # a measurement belongs to its frame
    fluoro_window.ctx.set_tool("distance")
    drag(lat, _px(lat, 20, 20), _px(lat, 80, 20), Qt.MouseButton.LeftButton)
    m = fluoro_window.session.document.plan.measurements[-1]
    assert m.frame == 3 and m.sop_instance_uid == "1.2.9.2.1"
