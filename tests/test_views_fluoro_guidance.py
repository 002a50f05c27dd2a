"""Fluoroscopy guidance in the real window with the demo case: the guided marking of a level's
landmarks on the AP and lateral C-arm images (clicked where the true projection matrices put them),
one undo step per mark, the plan drawn where planner.fluoro says and near the true projection of
the target, live updates (undo, moved trajectory, dragged mark), Esc and Del, read-only plans, and
virtual AP / lateral projections of the planning volume with the plan drawn in."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from planner import fluoro
from planner.document import PlanDocument
from planner.imaging.volume import ProjectionImage
from planner.session import Session
from planner.storage import load_plan
from planner.trajectory import vertebra_frame
from tests.views_support import click, drag, key, open_window

pytestmark = [pytest.mark.gui, pytest.mark.slow]

ROLE_OF_PANEL = {"AP": "FLUORO_AP", "LAT": "FLUORO_LAT"}


@pytest.fixture(scope="module")
def demo_images(demo_study):
    """The demo case's images, loaded once for the module (read-only; each test gets its own plan)."""
    from planner.views.app import open_demo

    s = Session()
    open_demo(s, demo_study.folder)
    return dict(s.images)


def _session(demo_study, images, *, projections: bool = True, read_only: bool = False) -> Session:
    plan = load_plan(demo_study.plan_path)
    plan.fluoro_landmarks = []  # these tests mark the C-arm images themselves (the sample plan comes marked)
    s = Session(PlanDocument(plan, user="tester", read_only=read_only))
    for k, img in images.items():
        if projections or not isinstance(img, ProjectionImage):
            s.add_image(k, img)
    return s


def _truth(demo_study, role: str):
    """The true projection LPS -> pixel (col, row) of the demo image with this role."""
    entry = next(e for e in demo_study.ground_truth["fluoroscopy"] if e["role"] == role)
    P = np.asarray(entry["projection_matrix"], float)

    def proj(x):
        h = P @ np.append(np.asarray(x, float), 1.0)
        return h[:2] / h[2]

    return entry, proj


def _landmark_lps(level, kind: str) -> np.ndarray:
    f = vertebra_frame(level)
    if kind == "spinous_process":  # on the midline, well behind the posterior wall, a little caudal
        return np.asarray(f.posterior_wall_lps) - 35.0 * f.u - 8.0 * f.s
    return np.asarray(getattr(f, f"{kind}_lps"), float)


def _widget(view, px) -> tuple[float, float]:
    w = view.to_widget(np.asarray(px, float)[None, :])[0]
    return float(w[0]), float(w[1])


def _rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def _zone_pixels(view, px, radius_px: float = 6.0) -> int:
    """Pixels of the ablation-zone colour (#ff7043) within the zone's radius (image pixels) of an image
    pixel, on the view as painted."""
    img = view.grab().toImage()
    arr = _rgb(img)
    scale = img.width() / view.width()
    x, y = (int(round(c * scale)) for c in _widget(view, px))
    r = int((radius_px * view.zoom + 6) * scale)
    patch = arr[max(0, y - r): y + r, max(0, x - r): x + r].astype(int)
    red, green, blue = patch[..., 0], patch[..., 1], patch[..., 2]
    return int(np.count_nonzero((red > 170) & (red - blue > 90) & (green < 170) & (green > 50)))


def _mark_level(qtbot, view, panel, proj, level) -> list[str]:
    """Run the guided sequence with clicks at the true projections; returns the kinds in order."""
    qtbot.mouseClick(panel.guidance.mark_button, Qt.MouseButton.LeftButton)
    assert view.marking is not None and panel.guidance.mark_button.isChecked()
    doc = view.session.document
    kinds, total = [], len(view.marking.kinds)
    while view.marking is not None:
        kind = view.marking.kind
        prompt = panel.guidance.prompt.text()
        assert f"of {level.name}" in prompt and f"({len(kinds) + 1} of {total})" in prompt
        n = len(doc.plan.fluoro_landmarks)
        click(view, _widget(view, proj(_landmark_lps(level, kind))))
        assert len(doc.plan.fluoro_landmarks) == n + 1
        assert doc.undo_text == f"Mark {kind.replace('_', ' ')} on fluoroscopy"
        kinds.append(kind)
    assert not panel.guidance.mark_button.isChecked()
    return kinds


@pytest.fixture
def demo_window(qtbot, demo_study, demo_images):
    return open_window(qtbot, _session(demo_study, demo_images), layout="fluoro", size=(1500, 900))


@pytest.mark.parametrize("panel_name", ["AP", "LAT"])
def test_guided_marks_draw_the_plan_where_the_fit_says(panel_name, demo_window, demo_study, qtbot):
    w = demo_window
    panel = w.views.fluoro_panels[panel_name]
    view = panel.view
    doc = w.session.document
    plan = doc.plan
    entry, proj = _truth(demo_study, ROLE_OF_PANEL[panel_name])
    assert view.showing_carm() and view.sop_instance_uid == entry["sop_instance_uid"]
    # the level to mark: the first treated level (no active trajectory yet)
    l4 = plan.level_by_name("L4")
    assert view.guidance_level_id() == l4.id and panel.guidance.level_combo.currentData() == l4.id
    assert "Press Mark" in panel.guidance.prompt.text()

    kinds = _mark_level(qtbot, view, panel, proj, l4)
    assert tuple(kinds) == {"AP": ("pedicle_left", "pedicle_right", "spinous_process"),
                            "LAT": ("posterior_wall", "anterior_wall")}[panel_name]
    marks = fluoro.marks_for_image(plan, view.sop_instance_uid, l4.id)
    assert sorted(marks) == sorted(kinds)
    for kind, px in marks.items():  # the marks are where they were clicked (to a tiny fraction of a pixel)
        assert np.allclose(px, proj(_landmark_lps(l4, kind)), atol=1e-6)

    # the overlay: exactly what planner.fluoro computes, and near the true projection of each target
    expected = fluoro.image_overlays(plan, view.image, l4.id)
    drawing = next(d for d in view.plan_drawings() if d.level_name == "L4")
    assert not drawing.error and len(drawing.trajectories) == len(plan.trajectories_of(l4.id)) >= 1
    by_id = {t.id: t for t in plan.trajectories}
    for td, ov in zip(drawing.trajectories, expected.overlays):
        assert td.overlay.trajectory_id == ov.trajectory_id
        assert np.allclose(td.overlay.target_px, ov.target_px)
        assert np.allclose(td.overlay.zone.polygon_px, ov.zone.polygon_px)
        true_target = proj(by_id[ov.trajectory_id].target_lps)
        assert np.linalg.norm(td.overlay.target_px - true_target) < 4.0  # 0.4 mm detector pixels
        names = [name for name, _ in td.instruments]
        assert names[0] == "introducer" and len(names) >= 2  # introducer, then cannula (and probe)
        assert td.label == "L4 " + by_id[ov.trajectory_id].side
        zone_r = max(td.overlay.zone.axes_px)
        assert _zone_pixels(view, td.overlay.target_px, zone_r) > 20, "the zone is painted at the target"
    assert "plan fitted" in panel.guidance.prompt.text()

    # one undo step per mark: each undo removes exactly the last mark; the overlay goes with the fit
    target_px = drawing.trajectories[0].overlay.target_px
    for i, kind in enumerate(reversed(kinds)):
        w.actions["edit.undo"].trigger()
        left = fluoro.marks_for_image(doc.plan, view.sop_instance_uid, l4.id)  # undo replaces the plan object
        assert len(left) == len(kinds) - 1 - i and kind not in left
        d = next(d for d in view.plan_drawings() if d.level_name == "L4")
        if kind != "spinous_process":
            assert d.error and not d.trajectories
    text, warn = view.guidance_text()
    assert "Press Mark" in text and not warn
    assert _zone_pixels(view, target_px, 10.0) == 0, "no zone without the marks"
    w.actions["edit.redo"].trigger()  # one mark: the fit's reason is shown in the view instead
    text, warn = view.guidance_text()
    assert warn and "mark the" in text and text == next(d.error for d in view.plan_drawings() if d.level_name == "L4")
    assert _zone_pixels(view, target_px, 10.0) == 0


def test_overlay_follows_the_plan_and_dragged_marks(demo_window, demo_study, qtbot):
    w = demo_window
    panel = w.views.fluoro_panels["LAT"]
    view = panel.view
    doc = w.session.document
    plan = doc.plan
    _, proj = _truth(demo_study, "FLUORO_LAT")
    l4 = plan.level_by_name("L4")
    _mark_level(qtbot, view, panel, proj, l4)
    traj = plan.trajectories_of(l4.id)[0]

    # moving the target (any view, through the document) moves the drawn target with it
    new_target = np.asarray(traj.target_lps) + np.array([0.0, -4.0, 3.0])
    doc.set_trajectory_point(traj.id, "target", new_target.tolist())
    d = next(d for d in view.plan_drawings() if d.level_name == "L4")
    assert np.linalg.norm(d.trajectories[0].overlay.target_px - proj(new_target)) < 4.0
    ov = d.trajectories[0].overlay
    assert _zone_pixels(view, ov.target_px, max(ov.zone.axes_px)) > 20

    # dragging a mark with the mouse is one undo step and refits the plan
    mark = next(lm for lm in plan.fluoro_landmarks if lm.kind == "anterior_wall")
    before = np.array(mark.point_px)
    start = _widget(view, before)
    drag(view, start, (start[0] - 20, start[1] + 6), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier)
    moved = np.array(next(lm for lm in plan.fluoro_landmarks if lm.id == mark.id).point_px)
    assert np.linalg.norm(moved - before) == pytest.approx(np.hypot(20, 6) / view.zoom, rel=0.02)
    assert doc.undo_text == "Move fluoroscopy landmark"
    expected = fluoro.image_overlays(plan, view.image, l4.id).overlays[0].target_px
    d = next(d for d in view.plan_drawings() if d.level_name == "L4")
    assert np.allclose(d.trajectories[0].overlay.target_px, expected)
    w.actions["edit.undo"].trigger()
    assert np.allclose(next(lm for lm in doc.plan.fluoro_landmarks if lm.id == mark.id).point_px, before)


def test_esc_cancels_and_del_deletes_a_mark(demo_window, demo_study, qtbot):
    w = demo_window
    panel = w.views.fluoro_panels["AP"]
    view = panel.view
    doc = w.session.document
    _, proj = _truth(demo_study, "FLUORO_AP")
    l5 = doc.plan.level_by_name("L5")
    panel.guidance.level_combo.setCurrentIndex(panel.guidance.level_combo.findData(l5.id))
    panel.guidance.level_combo.activated.emit(panel.guidance.level_combo.currentIndex())
    assert view.guidance_level_name() == "L5" and panel.guidance.mark_button.text() == "Mark L5"
    qtbot.mouseClick(panel.guidance.mark_button, Qt.MouseButton.LeftButton)
    first = view.marking.kind
    click(view, _widget(view, proj(_landmark_lps(l5, first))))
    key(view, Qt.Key.Key_Escape)
    assert view.marking is None and not panel.guidance.mark_button.isChecked()
    assert [lm.kind for lm in doc.plan.fluoro_landmarks] == [first]
    # a click after Esc places nothing (the window/level tool is back)
    click(view, _widget(view, (300, 300)))
    assert len(doc.plan.fluoro_landmarks) == 1
    # marking again asks only for the missing marks
    qtbot.mouseClick(panel.guidance.mark_button, Qt.MouseButton.LeftButton)
    assert first not in view.marking.kinds and len(view.marking.kinds) == 2
    qtbot.mouseClick(panel.guidance.mark_button, Qt.MouseButton.LeftButton)  # the button stops it too
    assert view.marking is None
    # select the mark by clicking it, then Del deletes it (one undo step)
    lm = doc.plan.fluoro_landmarks[0]
    click(view, _widget(view, lm.point_px))
    assert view.selected_landmark == lm.id
    key(view, Qt.Key.Key_Delete)
    assert not doc.plan.fluoro_landmarks and doc.undo_text == "Remove fluoroscopy landmark"
    w.actions["edit.undo"].trigger()
    assert [x.id for x in doc.plan.fluoro_landmarks] == [lm.id]
    # the right-click menu on a mark deletes it too
    from PySide6.QtWidgets import QMenu

    view._menu_pos = QPointF(*_widget(view, lm.point_px))
    menu = QMenu(view)
    view.context_menu_actions(menu)
    delete = next(a for a in menu.actions() if a.text().startswith("Delete"))
    assert "L5" in delete.text()
    delete.trigger()
    assert not doc.plan.fluoro_landmarks


def test_read_only_plans_allow_no_marking(qtbot, demo_study, demo_images):
    w = open_window(qtbot, _session(demo_study, demo_images, read_only=True), layout="fluoro", size=(1200, 800))
    panel = w.views.fluoro_panels["LAT"]
    view = panel.view
    assert view.showing_carm()
    assert not panel.guidance.mark_button.isEnabled()
    assert "read-only" in panel.guidance.mark_button.toolTip()
    assert not view.start_marking() and view.marking is None
    click(view, _widget(view, (380, 380)))
    assert not w.session.document.plan.fluoro_landmarks


def test_virtual_projections_show_the_plan_without_c_arm_images(qtbot, demo_study, demo_images):
    session = _session(demo_study, demo_images, projections=False)
    w = open_window(qtbot, session, layout="fluoro", size=(1300, 800))
    plan = session.document.plan
    from planner.display import roles

    main = roles.main_volume_key(session)
    for name, panel in w.views.fluoro_panels.items():
        view = panel.view
        assert view.virtual_key == main and view.carm_image is None  # virtual by default
        combo = panel.guidance.source_combo
        assert combo.currentData() == ("virtual", main)
        assert combo.model().item(0).isEnabled() is False  # no C-arm image to choose
        assert not panel.guidance.mark_button.isEnabled()
    for panel in w.views.fluoro_panels.values():
        qtbot.waitUntil(lambda p=panel: p.view.has_image(), timeout=90000)
    for name, panel in w.views.fluoro_panels.items():
        view = panel.view
        proj = view.virtual.projector
        assert proj.view == name and view.image.rows == proj.shape[0] and view.image.cols == proj.shape[1]
        assert view.image.frames[0].std() > 1.0  # an image, not a blank
        # the whole plan is drawn from the projector: every trajectory, no marks needed
        (drawing,) = view.plan_drawings()
        assert len(drawing.trajectories) == len(plan.trajectories) >= 2
        for td in drawing.trajectories:
            traj = next(t for t in plan.trajectories if t.id == td.overlay.trajectory_id)
            assert np.allclose(td.overlay.target_px, proj.to_px(traj.target_lps))
            # the pixel maps back to the target's place across the image plane (parallel projection)
            col, row = td.overlay.target_px
            back = proj.origin_lps + col * proj.spacing_mm[0] * proj.col_dir + row * proj.spacing_mm[1] * proj.row_dir
            across = [0, 2] if name == "AP" else [1, 2]
            assert np.allclose(back[across], np.asarray(traj.target_lps)[across], atol=1e-6)
            zone_r = max(td.overlay.zone.axes_px)
            assert _zone_pixels(view, td.overlay.target_px, zone_r) > 20, "the zone is drawn at the projected target"
        assert view.edge_letters() == ({"right": "L", "left": "R", "bottom": "I", "top": "S"} if name == "AP" else
                                       {"right": "P", "left": "A", "bottom": "I", "top": "S"})
        assert view.scale().unit_label == "mm"
        assert "2 trajectories drawn" in panel.guidance.prompt.text()
    # the plan moves, the drawing follows (the image is not recomputed)
    lat = w.views.fluoro_panels["LAT"].view
    image_before = lat.image
    traj = plan.trajectories[0]
    moved = np.asarray(traj.target_lps) + np.array([0.0, 0.0, 5.0])
    session.document.set_trajectory_point(traj.id, "target", moved.tolist())
    td = next(t for t in lat.plan_drawings()[0].trajectories if t.overlay.trajectory_id == traj.id)
    assert np.allclose(td.overlay.target_px, lat.virtual.projector.to_px(moved)) and lat.image is image_before


def test_switching_between_c_arm_and_virtual(demo_window, qtbot):
    w = demo_window
    panel = w.views.fluoro_panels["AP"]
    view = panel.view
    combo = panel.guidance.source_combo
    carm = view.carm_image
    assert combo.currentData() == ("image", view.series_key) and carm is not None
    idx = next(i for i in range(combo.count()) if (combo.itemData(i) or ("",))[0] == "virtual")
    combo.setCurrentIndex(idx)
    combo.activated.emit(idx)
    assert view.showing_virtual() and not view.showing_carm()
    qtbot.waitUntil(view.has_image, timeout=90000)
    assert view.image is not carm and view.image.sop_instance_uid == ""
    # no marking and no kept measurements on a virtual projection
    assert not panel.guidance.mark_button.isEnabled()
    w.ctx.set_tool("distance")
    click(view, (100, 100))
    click(view, (200, 140))
    assert not w.session.document.plan.measurements
    w.ctx.set_tool("window_level")
    # back to the C-arm image, then to the virtual one again: cached, shown at once
    combo.activated.emit(0)
    assert view.image is carm and view.showing_carm() and panel.guidance.mark_button.isEnabled()
    combo.activated.emit(idx)
    assert view.has_image() and view.showing_virtual()


def test_screenshots_of_the_guidance(qtbot, demo_study, demo_images, tmp_path):
    """The fluoro layout with marks and overlays on the C-arm images, and with virtual projections."""
    session = _session(demo_study, demo_images)
    w = open_window(qtbot, session, layout="fluoro", size=(1600, 1000))
    plan = session.document.plan
    l4 = plan.level_by_name("L4")
    for name, panel in w.views.fluoro_panels.items():
        _, proj = _truth(demo_study, ROLE_OF_PANEL[name])
        _mark_level(qtbot, panel.view, panel, proj, l4)
        target = fluoro.image_overlays(plan, panel.view.image, l4.id).overlays[0].target_px
        panel.view.set_camera(2.6 * panel.view.zoom, target)
    qtbot.wait(50)
    img = w.grab()
    out = tmp_path / "fluoro-guidance.png"
    assert img.save(str(out)) and out.stat().st_size > 20000
    for name, panel in w.views.fluoro_panels.items():
        ov = next(d for d in panel.view.plan_drawings() if d.level_name == "L4").trajectories[0].overlay
        assert _zone_pixels(panel.view, ov.target_px, max(ov.zone.axes_px)) > 60
    for panel in w.views.fluoro_panels.values():
        combo = panel.guidance.source_combo
        combo.activated.emit(next(i for i in range(combo.count()) if (combo.itemData(i) or ("",))[0] == "virtual"))
    for panel in w.views.fluoro_panels.values():
        qtbot.waitUntil(lambda p=panel: p.view.has_image(), timeout=90000)
    qtbot.wait(50)
    out = tmp_path / "fluoro-virtual.png"
    assert w.grab().save(str(out)) and out.stat().st_size > 20000


def test_virtual_views_follow_the_planning_volume_while_a_study_arrives(qtbot, demo_study, demo_images):
    from planner.display import roles

    session = Session(PlanDocument(load_plan(demo_study.plan_path), user="tester"))
    w = open_window(qtbot, session, layout="fluoro", size=(1000, 700))
    panels = w.views.fluoro_panels
    assert all(p.view.virtual_key is None and not p.view.has_image() for p in panels.values())
    by_role = {ref.role: ref.series_instance_uid for ref in session.document.plan.case.series}
    session.add_image(by_role["T1"], demo_images[by_role["T1"]])  # the first series imported
    assert all(p.view.virtual_key == by_role["T1"] for p in panels.values())
    session.add_image(by_role["T2"], demo_images[by_role["T2"]])  # the planning sequence arrives
    assert roles.main_volume_key(session) == by_role["T2"]
    assert all(p.view.virtual_key == by_role["T2"] for p in panels.values())
    # a C-arm image arriving takes its panel over (the user chose nothing)
    session.add_image(by_role["FLUORO_LAT"], demo_images[by_role["FLUORO_LAT"]])
    qtbot.waitUntil(lambda: panels["LAT"].view.showing_carm(), timeout=3000)
    assert panels["AP"].view.virtual_key == by_role["T2"]
