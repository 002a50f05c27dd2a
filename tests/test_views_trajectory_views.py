"""The trajectory layout of the real main window: the oblique view along the introducer and the
probe's-eye view perpendicular to the path, checked numerically on a volume and trajectories of
known geometry (planes through the path, plane normal along the path, steps in mm along it, the zone
circle, the resliced pixels), following plan edits, a mouse drag of the target and undo; the layout
switch through the window's action; and the demo case's trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.plan import Landmarks, Plan, Trajectory, TrajectoryParams
from planner.views.trajectory_views import NO_TRAJECTORY_TEXT, ROTATION_STEP_DEG
from tests.views_support import key, open_window, rot_x, sagittal_volume, send_mouse, session_with, wheel

pytestmark = pytest.mark.gui

KEY = "1.2.3.50"
TILT = rot_x(10.0)                      # the vertebra leans 10 degrees about the left-right axis
BODY = np.array([0.0, -10.0, 0.0])
ENTRY = np.array([18.0, 30.0, 6.0])
TARGET = np.array([2.0, -6.0, 1.0])
ZONE_MM = 10.0


def _landmarks() -> Landmarks:
    def at(local):
        return (BODY + TILT @ np.asarray(local, dtype=float)).tolist()

    return Landmarks(body_center_lps=at((0, 0, 0)), superior_endplate_lps=at((0, 0, 14)),
                     inferior_endplate_lps=at((0, 0, -14)), posterior_wall_lps=at((0, 16, 0)),
                     anterior_wall_lps=at((0, -16, 0)), pedicle_left_lps=at((14, 24, 0)),
                     pedicle_right_lps=at((-14, 24, 0)))


def _cranial() -> np.ndarray:
    """The vertebra's superior direction made orthogonal to the (straight) trajectory."""
    s = TILT @ np.array([0.0, 0.0, 1.0])
    d = (TARGET - ENTRY) / np.linalg.norm(TARGET - ENTRY)
    s = s - d * (s @ d)
    return s / np.linalg.norm(s)


def _session(with_trajectory: bool = True):
    vol = sagittal_volume(nk=30, nj=120, ni=100, spacing=(1.0, 1.0, 2.0), desc="SAG T2", uid=KEY)
    session = session_with((KEY, vol, "T2"), plan=Plan())
    doc = session.document
    lid = doc.add_level("L4", _landmarks(), treat=True)
    tid = None
    if with_trajectory:
        tid = doc.add_trajectory(Trajectory(level_id=lid, side="left", entry_lps=ENTRY.tolist(),
                                            target_lps=TARGET.tolist(),
                                            params=TrajectoryParams(zone_diameter_mm=ZONE_MM)))
    return session, tid


@pytest.fixture
def window(qtbot):
    session, tid = _session()
    w = open_window(qtbot, session, layout="trajectory", size=(1500, 950))
    qtbot.wait(30)
    return w, session, tid


def _views(w):
    v = w.views.trajectory_views
    v["oblique"].sync()
    v["probe"].sync()
    return v["oblique"], v["probe"]


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def test_oblique_plane_holds_the_trajectory_and_the_cranio_caudal_axis(window):
    w, session, tid = window
    obl, _probe = _views(w)
    f = obl.frame
    length = float(np.linalg.norm(TARGET - ENTRY))
    dist = f.distance_to_plane(np.vstack([ENTRY, TARGET]))
    assert np.all(np.abs(dist) < 0.01)
    # the introducer is horizontal: the entry at the plane origin, the target L mm to its left
    np.testing.assert_allclose(f.to_plane(np.vstack([ENTRY, TARGET])), [[0.0, 0.0], [-length, 0.0]], atol=0.01)
    # screen down is the vertebra's inferior direction (from its landmarks, tilted 10 degrees)
    np.testing.assert_allclose(f.ey, -_cranial(), atol=1e-9)
    np.testing.assert_allclose(f.ex, -_unit(TARGET - ENTRY), atol=1e-9)
    letters = obl.edge_letters()
    assert letters["top"].startswith("S") and len(letters["right"]) >= 2  # combined letters for oblique
    # the resliced pixels are the volume's values at the plane's points
    img = f.image(0)
    rows, cols = img.shape
    for c, r in ((cols // 3, rows // 2), (cols // 2, rows // 3), (2 * cols // 3, 2 * rows // 3)):
        lps = f.crn_to_world((c, r, 0))
        assert float(img[r, c]) == pytest.approx(float(obl.volume.sample(lps[None])[0]), abs=1.0)
    assert obl.has_image() and obl.trajectory_title() == "L4 left"
    assert "L4 left" in obl.parent().parent().title_label.text()


def test_oblique_plane_spins_about_the_introducer_with_wheel_keys_and_buttons(window, qtbot):
    w, session, tid = window
    obl, _probe = _views(w)
    n0 = obl.frame.normal.copy()
    obl.setFocus()
    key(obl, Qt.Key.Key_Down)                     # next "slice": one rotation step
    obl.sync()
    assert obl.angle_deg == pytest.approx(ROTATION_STEP_DEG)
    wheel(obl, (obl.width() / 2, obl.height() / 2), -2)
    obl.sync()
    assert obl.angle_deg == pytest.approx(3 * ROTATION_STEP_DEG)
    f = obl.frame
    assert np.all(np.abs(f.distance_to_plane(np.vstack([ENTRY, TARGET]))) < 0.01)
    turned = math.degrees(math.acos(float(np.clip(abs(f.normal @ n0), -1, 1))))
    assert turned == pytest.approx(3 * ROTATION_STEP_DEG, abs=1e-6)
    panel = w.views.trajectory_panels["oblique"]
    qtbot.mouseClick(panel.cranio_caudal, Qt.MouseButton.LeftButton)
    obl.sync()
    assert obl.angle_deg == 0.0
    np.testing.assert_allclose(obl.frame.normal, n0, atol=1e-9)
    assert "cranio-caudal" in panel.label.text()
    assert not panel.curve.isEnabled()            # a straight path: every plane about it holds it


def test_probe_eye_plane_is_normal_to_the_path_and_steps_along_it(window):
    w, session, tid = window
    _obl, probe = _views(w)
    d = _unit(TARGET - ENTRY)
    length = float(np.linalg.norm(TARGET - ENTRY))
    f = probe.frame
    np.testing.assert_allclose(f.normal, d, atol=1e-9)
    assert probe.position_mm == pytest.approx(length)   # starts at the target
    assert abs(float(f.distance_to_plane(TARGET))) < 1e-9
    center, radius = probe.zone_cut()
    np.testing.assert_allclose(center, TARGET, atol=1e-9)
    assert radius == pytest.approx(ZONE_MM / 2)           # through the zone's centre
    assert probe.target_text() == "At the target"
    probe.setFocus()
    for _ in range(3):
        key(probe, Qt.Key.Key_Up)                          # previous: 1 mm back toward the entry
    wheel(probe, (probe.width() / 2, probe.height() / 2), 1)   # wheel away from the user: 1 mm back
    probe.sync()
    assert probe.position_mm == pytest.approx(length - 4.0)
    assert probe.distance_to_target_mm() == pytest.approx(4.0)
    np.testing.assert_allclose(probe.frame.plane_point(0) @ d, (TARGET - 4.0 * d) @ d, atol=1e-9)
    assert abs(float(probe.frame.distance_to_plane(TARGET - 4.0 * d))) < 1e-9
    assert probe.zone_cut()[1] == pytest.approx(math.sqrt((ZONE_MM / 2) ** 2 - 16.0))
    assert probe.target_text() == "4.0 mm to the target"
    # the plane cuts the instrument at the centre, with its diameter
    cuts = probe.instrument_cuts()
    assert cuts and np.linalg.norm(cuts[0][1] - (TARGET - 4.0 * d)) < 0.01
    key(probe, Qt.Key.Key_Home)                            # the skin is not in this image: the entry
    probe.sync()
    assert probe.position_mm == pytest.approx(0.0)
    assert abs(float(probe.frame.distance_to_plane(ENTRY))) < 1e-9
    assert probe.zone_cut() is None
    key(probe, Qt.Key.Key_End)
    probe.sync()
    assert probe.position_mm == pytest.approx(length)


def test_views_follow_plan_edits_a_mouse_drag_and_undo(window, qtbot):
    w, session, tid = window
    doc = session.document
    obl, probe = _views(w)
    probe.step(-2)                                          # 2 mm before the target
    moved = TARGET + np.array([-3.0, -2.0, 4.0])
    doc.set_trajectory_point(tid, "target", moved.tolist())
    qtbot.wait(20)
    obl.sync()
    probe.sync()
    d = _unit(moved - ENTRY)
    assert np.all(np.abs(obl.frame.distance_to_plane(np.vstack([ENTRY, moved]))) < 0.01)
    np.testing.assert_allclose(probe.frame.normal, d, atol=1e-9)
    assert probe.distance_to_target_mm() == pytest.approx(2.0)  # the same distance before the new target
    assert doc.undo()
    qtbot.wait(20)
    obl.sync()
    probe.sync()
    assert np.all(np.abs(obl.frame.distance_to_plane(np.vstack([ENTRY, TARGET]))) < 0.01)
    np.testing.assert_allclose(probe.frame.normal, _unit(TARGET - ENTRY), atol=1e-9)
    # drag the target handle in the oblique view with the mouse, 6 mm toward the top of the screen
    handles = {h.key: h for h in obl.current_handles() if h.kind == "trajectory"}
    h = handles[(tid, "target")]
    frame_before = obl.frame.crn_to_lps.copy()
    goal = TARGET - 6.0 * obl.frame.ey                      # up on the screen: superior
    end = obl.to_widget(goal[None])[0]
    undo_depth = len(doc._undo)
    start = np.asarray(h.widget_xy, dtype=float)
    w.ctx.set_tool("crosshair")  # the edit tool grabs handles
    left = Qt.MouseButton.LeftButton
    send_mouse(obl, "press", tuple(start), left)
    for t in (0.25, 0.5):
        send_mouse(obl, "move", tuple(start + (end - start) * t), None, buttons=left)
    obl.sync()
    # while the mouse holds the point, the plane under it stays still (the plan has already changed)
    assert np.linalg.norm(np.asarray(doc.plan.trajectory(tid).target_lps) - TARGET) > 2.0
    np.testing.assert_allclose(obl.frame.crn_to_lps, frame_before)
    for t in (0.75, 1.0):
        send_mouse(obl, "move", tuple(start + (end - start) * t), None, buttons=left)
    send_mouse(obl, "release", (float(end[0]), float(end[1])), left)
    new_target = np.asarray(doc.plan.trajectory(tid).target_lps)
    assert np.linalg.norm(new_target - goal) < 0.5           # where the mouse let go, in the plane
    assert len(doc._undo) == undo_depth + 1                  # one undo step for the whole drag
    obl.sync()
    assert not np.allclose(obl.frame.crn_to_lps, frame_before)  # the plane followed after the release
    assert np.all(np.abs(obl.frame.distance_to_plane(np.vstack([ENTRY, new_target]))) < 0.01)
    probe.sync()
    np.testing.assert_allclose(probe.frame.normal, _unit(new_target - ENTRY), atol=1e-9)
    assert doc.undo()
    obl.sync()
    np.testing.assert_allclose(obl.frame.to_plane(TARGET[None])[0],
                               [-np.linalg.norm(TARGET - ENTRY), 0.0], atol=0.01)


def test_curved_path_lies_in_the_curve_plane(window, qtbot):
    w, session, tid = window
    doc = session.document
    d = _unit(TARGET - ENTRY)
    bend = ENTRY + 22.0 * d
    # a target off the introducer line, toward the patient's right: the cannula curves to it
    target = bend + 12.0 * d + np.array([-6.0, 0.0, 0.0])
    doc.set_trajectory_point(tid, "bend", bend.tolist())
    doc.set_trajectory_point(tid, "target", target.tolist())
    obl, probe = _views(w)
    qtbot.mouseClick(w.views.trajectory_panels["oblique"].curve, Qt.MouseButton.LeftButton)
    obl.sync()
    f = obl.frame
    assert np.all(np.abs(f.distance_to_plane(np.vstack([ENTRY, bend, target]))) < 0.01)
    assert np.all(np.abs(f.distance_to_plane(obl.axis.points_lps)) < 0.01)   # the whole arc
    assert "plane of the curve" in obl.rotation_text()
    # the probe's eye at the target looks along the last part of the path (the probe), not the introducer
    last = _unit(obl.axis.points_lps[-1] - obl.axis.points_lps[-2])
    np.testing.assert_allclose(probe.frame.normal, last, atol=1e-6)
    assert probe.zone_cut()[1] == pytest.approx(ZONE_MM / 2)


def test_layout_action_and_no_trajectory_message(qtbot):
    session, _ = _session(with_trajectory=False)
    w = open_window(qtbot, session, layout="planning")
    w.actions["view.layout_trajectory"].trigger()
    qtbot.wait(30)
    assert w.views.current == "trajectory" and w.actions["view.layout_trajectory"].isChecked()
    obl, probe = _views(w)
    assert obl.isVisible() and probe.isVisible()
    assert w.views.trajectory_views["sagittal"].isVisible() and w.views.trajectory_views["axial"].isVisible()
    # double-click maximises the oblique view within the page (its control strip stays with it)
    page = w.views.current_page()
    send_mouse(obl, "double", (obl.width() / 2, obl.height() / 2), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not probe.isVisible(), timeout=2000)
    assert page.maximized is not None and page.maximized.content is w.views.trajectory_panels["oblique"]
    assert w.views.trajectory_panels["oblique"].bar.isVisible()
    send_mouse(obl, "double", (obl.width() / 2, obl.height() / 2), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(probe.isVisible, timeout=2000)
    for v in (obl, probe):
        assert not v.has_image() and v.empty_text() == NO_TRAJECTORY_TEXT
    assert obl in w.views.all_canvases()
    # planning a trajectory fills the views (the document's change, no selection needed)
    lid = session.document.plan.levels[0].id
    tid = session.document.add_trajectory(Trajectory(level_id=lid, side="left", entry_lps=ENTRY.tolist(),
                                                     target_lps=TARGET.tolist()))
    qtbot.waitUntil(lambda: obl.has_image() and probe.has_image(), timeout=3000)
    assert obl.trajectory.id == tid
    img = obl.grab().toImage()
    assert not img.isNull()
    w.actions["view.layout_planning"].trigger()
    assert w.views.current == "planning"


@pytest.mark.slow
def test_demo_case_views_follow_the_selected_trajectory(qtbot, demo_study, tmp_path):
    from planner.session import Session
    from planner.views.app import open_demo

    session = Session()
    open_demo(session, demo_study.folder)
    w = open_window(qtbot, session, layout="trajectory", size=(1600, 1000))
    plan = session.document.plan
    names = {t.id: f"{plan.level(t.level_id).name} {t.side}" for t in plan.trajectories}
    obl, probe = _views(w)
    for tid, name in names.items():
        session.set_active_trajectory(tid)
        qtbot.wait(30)
        obl.sync()
        probe.sync()
        t = plan.trajectory(tid)
        assert obl.trajectory_title() == name == probe.trajectory_title()
        assert abs(float(obl.frame.distance_to_plane(np.asarray(t.entry_lps)))) < 0.01
        assert abs(float(probe.frame.distance_to_plane(np.asarray(t.target_lps)))) < 1e-6
        assert probe.zone_cut()[1] == pytest.approx(t.params.zone_diameter_mm / 2)
        # the cursor goes to the target: the layout's sagittal and axial views cut through it
        np.testing.assert_allclose(session.cursor_lps, t.target_lps, atol=1e-9)
        assert name in obl.parent().parent().title_label.text()
    img = w.grab().toImage()
    assert img.save(str(tmp_path / "trajectory-layout.png"))


def test_probe_eye_starts_at_the_skin_when_the_image_shows_it(qtbot, monkeypatch):
    d = _unit(TARGET - ENTRY)
    skin = ENTRY - 30.0 * d
    monkeypatch.setattr("planner.display.results.find_skin", lambda traj, vol: skin.copy())
    session, tid = _session()
    w = open_window(qtbot, session, layout="trajectory")
    _obl, probe = _views(w)
    assert probe.axis.start_mm == pytest.approx(-30.0)
    panel = w.views.trajectory_panels["probe"]
    assert panel.to_start.text() == "Skin"
    qtbot.mouseClick(panel.to_start, Qt.MouseButton.LeftButton)
    probe.sync()
    assert probe.position_mm == pytest.approx(-30.0)
    assert abs(float(probe.frame.distance_to_plane(skin))) < 1e-9
    np.testing.assert_allclose(probe.frame.normal, d, atol=1e-9)
    assert probe.position_text() == "30.0 mm outside the bone entry (skin side)"
    assert panel.slider.value() == panel.slider.minimum()
    # the slider moves the plane along the path (0.5 mm a step)
    panel.slider.setValue(int(round(10.0 / panel.SLIDER_MM)))
    probe.sync()
    assert probe.position_mm == pytest.approx(10.0)
    assert abs(float(probe.frame.distance_to_plane(ENTRY + 10.0 * d))) < 1e-9
