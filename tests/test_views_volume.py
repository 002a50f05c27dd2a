"""The 3D view: camera buttons, presets per modality, slice planes in place, plan actors rebuilt only
for what changed, orientation marker, pixels rendered, and no render after close."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.plan import Trajectory
from tests.plan_factory import box_landmarks
from tests.views_support import FOR_UID, open_window, sagittal_volume, session_with

pytestmark = pytest.mark.gui


@pytest.fixture
def planning(qtbot):
    vol = sagittal_volume(nk=16, nj=120, ni=100, spacing=(1.0, 1.0, 4.0), desc="SAG T2", uid="1.2.3.2")
    session = session_with(("1.2.3.2", vol, "T2"))
    doc = session.document
    l4 = doc.add_level("L4", box_landmarks(0.0))
    doc.add_level("L5", box_landmarks(-40.0))
    doc.add_trajectory(Trajectory(level_id=l4, side="left", entry_lps=(15.0, 40.0, 0.0), bend_lps=(8.0, 15.0, 0.0),
                                  target_lps=(0.0, 2.0, 0.0)))
    doc.add_trajectory(Trajectory(level_id=l4, side="right", entry_lps=(-15.0, 40.0, 0.0),
                                  bend_lps=(-8.0, 15.0, 0.0), target_lps=(-1.0, 2.0, 0.0)))
    doc.mark_saved()
    w = open_window(qtbot, session)
    vv = w.views.ensure_volume_view()
    qtbot.waitUntil(lambda: vv.isVisible(), timeout=3000)
    return w, vv


def _pixels(vv):
    img = vv.frame_qimage()
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGB888)
    return np.frombuffer(img.constBits(), np.uint8)[: img.width() * img.height() * 3].reshape(img.height(), -1, 3)


def test_camera_buttons_look_from_the_named_side(planning, qtbot):
    w, vv = planning
    expected = {"AP": (0, 1, 0), "Lateral": (-1, 0, 0), "Axial": (0, 0, 1)}
    for name, direction in expected.items():
        qtbot.mouseClick(vv.buttons[name], Qt.MouseButton.LeftButton)
        np.testing.assert_allclose(vv.camera_direction(), direction, atol=1e-9)
    # radiological AP: the patient's left (+x) is on the screen's right
    qtbot.mouseClick(vv.buttons["AP"], Qt.MouseButton.LeftButton)
    cam = vv.renderer.GetActiveCamera()
    right = np.cross(vv.camera_direction(), np.asarray(cam.GetViewUp()))
    np.testing.assert_allclose(right, (1, 0, 0), atol=1e-9)
    assert vv.default_camera() == "Lateral"  # a sagittal acquisition starts in profile


def test_any_frame_starts_from_the_default_camera(planning):
    """A frame rendered outside render_now (a screenshot grab, the interactor) still starts in profile,
    not from VTK's own first-render camera (looking down from the head, zoomed in)."""
    w, vv = planning
    vv.set_camera_view("Axial", render=False)
    vv._camera_initialised = False  # as before the first frame
    assert vv.vtk.frame_image() is not None
    assert vv.current_camera == "Lateral"
    np.testing.assert_allclose(vv.camera_direction(), (-1, 0, 0), atol=1e-9)


def test_volume_rendering_presets_follow_the_modality_and_render_pixels(planning, qtbot):
    w, vv = planning
    names = [vv.preset_combo.itemText(i) for i in range(vv.preset_combo.count())]
    assert names and all(n.startswith("MR") for n in names)
    assert vv.preset_combo.currentText() == "MR: fluid (CSF, discs)"  # T2 role
    vv.ensure_volume_now()
    assert vv.has_volume and vv.render_now()
    px = _pixels(vv).astype(int)
    assert px.std() > 10 and (px.max(axis=2) > 100).sum() > 500
    vv.preset_combo.setCurrentText("MR: tissue")
    assert vv.preset_name == "MR: tissue"
    otf = vv._volume_actor.GetProperty().GetScalarOpacity()
    assert otf.GetSize() == 4
    vv.volume_check.setChecked(False)
    assert not vv._volume_actor.GetVisibility()


def test_slice_planes_follow_the_slice_views(planning, qtbot):
    w, vv = planning
    sag = w.views.slice_views["sagittal"]
    qtbot.waitUntil(lambda: "sagittal" in vv._planes, timeout=3000)
    src = vv._planes["sagittal"][1]
    before = np.asarray(src.GetOrigin())
    sag.step(3)
    after = np.asarray(vv._planes["sagittal"][1].GetOrigin())
    # the plane moved by three slices along the sagittal normal
    assert abs((after - before) @ sag.frame.normal) == pytest.approx(3 * sag.frame.slice_spacing)
    expected_origin = sag.frame.crn_to_world((-0.5, -0.5, sag.n))
    np.testing.assert_allclose(after, expected_origin, atol=1e-9)


def test_plan_actors_rebuild_only_the_changed_trajectory(planning):
    w, vv = planning
    doc = w.session.document
    pa = vv.plan_actors
    t_left, t_right = (t.id for t in doc.plan.trajectories)
    left_actors = list(pa._trajectories[t_left])
    right_actors = list(pa._trajectories[t_right])
    levels = {k: list(v) for k, v in pa._levels.items()}
    assert len(levels) == 2 and pa.actor_count() > 6
    doc.set_trajectory_point(t_right, "entry", (-16.0, 41.0, 0.0))
    assert pa._trajectories[t_left] == left_actors           # untouched: same actor objects
    assert pa._trajectories[t_right] != right_actors         # rebuilt
    assert {k: list(v) for k, v in pa._levels.items()} == levels
    # instruments are tubes of the real diameters (introducer first)
    mapper = pa._trajectories[t_left][0].GetMapper()
    tube = mapper.GetInputConnection(0, 0).GetProducer()
    traj = doc.plan.trajectory(t_left)
    assert tube.GetRadius() == pytest.approx(traj.params.introducer_diameter_mm / 2)
    doc.remove_trajectory(t_left)
    assert t_left not in pa._trajectories
    doc.undo()
    assert t_left in pa._trajectories


def test_orientation_marker_and_safe_close(planning, qtbot):
    w, vv = planning
    qtbot.waitUntil(lambda: vv._marker is not None, timeout=3000)
    assert vv._marker.GetEnabled()
    vv.shutdown()
    assert vv.vtk.closed and not vv.render_now()
    vv.request_render(0)
    w.session.document.set_trajectory_point(w.session.document.plan.trajectories[0].id, "entry", (14.0, 40.0, 0.0))
    qtbot.wait(200)  # a late model event must not reach the closed render window
    assert not vv._render_timer.isActive()
    w.session.set_cursor((1.0, 1.0, 1.0), FOR_UID)
