"""Planning in the real main window on the demo case: the physician selects a trajectory, drags its
target handle with the mouse in the sagittal and the axial slice view, and the Trajectories panel's
metrics and checks and the 3D scene follow; dragging the target into the canal fails the canal
margin check; undo restores the plan, the panel and the 3D scene."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.checks import evaluate_trajectory
from planner.trajectory import vertebra_frame
from tests.views_support import drag, open_window

pytestmark = pytest.mark.gui


WATCHED = ("target_depth_pct", "canal_margin_mm", "midline_offset_mm", "length_mm", "medial_angle_deg")


@pytest.fixture
def planning(qtbot, demo_study):
    from planner.session import Session
    from planner.views.app import install_panels, open_demo

    session = Session()
    open_demo(session, demo_study.folder)
    w = open_window(qtbot, session, layout="planning", size=(1600, 1000))
    install_panels(w)
    w.docks["Trajectories"].raise_()
    panel = w.docks["Trajectories"].widget().widget()  # the dock holds a scroll area
    vv = w.views.ensure_volume_view()
    qtbot.wait(50)
    return w, session, panel, vv


def _metric_texts(panel) -> dict[str, str]:
    role = Qt.ItemDataRole.UserRole
    return {panel.metrics.item(r, 1).data(role): panel.metrics.item(r, 1).text()
            for r in range(panel.metrics.rowCount())}


def _check_states(panel) -> dict[str, str]:
    role = Qt.ItemDataRole.UserRole
    return {panel.checks.item(r, 1).data(role): panel.checks.item(r, 0).data(role)
            for r in range(panel.checks.rowCount())}


def _expected_texts(session, tid) -> dict[str, str]:
    """The panel's texts for the metrics planner.checks computes for the current plan."""
    from planner.views.trajectory_panel import _fmt

    rep = evaluate_trajectory(session.document.plan, tid, session.images)
    out = {}
    for m in rep.metrics:
        if m.name in WATCHED:
            out[m.name] = _fmt(m.value, {"deg": "°"}.get(m.unit, m.unit))
    return out


def _assert_panel_matches_model(panel, session, tid) -> None:
    shown = _metric_texts(panel)
    for name, text in _expected_texts(session, tid).items():
        assert shown[name] == text, name
    rep = evaluate_trajectory(session.document.plan, tid, session.images)
    assert _check_states(panel) == {c.name: c.status for c in rep.checks}


def _assert_3d_matches_model(vv, session, tid) -> None:
    """The 3D view's world coordinates are LPS mm (no actor transform): the zone sphere sits on the
    target with the zone radius, and the last instrument tube ends at the target."""
    traj = session.document.plan.trajectory(tid)
    target = np.asarray(traj.target_lps, dtype=float)
    center, radius = vv.plan_actors.zone_sphere(tid)
    np.testing.assert_allclose(center, target, atol=1e-6)
    assert radius == pytest.approx(traj.params.zone_diameter_mm / 2)
    parts = vv.plan_actors.trajectory_parts(tid)
    assert parts["zone"].GetUserMatrix() is None and parts["zone"].GetMatrix().IsIdentity()
    np.testing.assert_allclose(np.asarray(parts["zone"].GetCenter()), target, atol=0.05)  # the drawn sphere
    last = [n for n in ("introducer", "cannula", "probe") if n in parts][-1]
    np.testing.assert_allclose(vv.plan_actors.tube_axis_points(tid, last)[-1], target, atol=1e-6)


def _target_handle(view, tid):
    handles = {h.key: h for h in view.current_handles() if h.kind == "trajectory"}
    assert (tid, "target") in handles, f"the target handle is drawn in the {view.orientation} view"
    return handles[(tid, "target")]


def _drag_target(view, tid, to_lps):
    """Drag the target handle with the mouse to the in-plane point nearest ``to_lps``."""
    h = _target_handle(view, tid)
    start = h.widget_xy
    end = view.to_widget(np.asarray(to_lps, dtype=float)[None])[0]
    # Alt+drag moves a handle whatever the tool (the default window/level tool never does)
    drag(view, start, (float(end[0]), float(end[1])), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier,
         steps=6)
    return np.asarray(start), end


def test_dragging_the_target_updates_panel_and_3d_and_undo_restores(planning, qtbot):
    w, session, panel, vv = planning
    doc = session.document
    plan = doc.plan
    traj = next(t for t in plan.trajectories if plan.level(t.level_id).name == "L4")
    tid = traj.id
    panel.select(tid)
    assert session.active_trajectory == tid
    target0 = np.asarray(traj.target_lps, dtype=float)
    vol = session.images[w.views.slice_views["sagittal"].series_key]
    session.set_cursor(target0, vol.info.frame_of_reference_uid)  # the views cut through the target
    qtbot.wait(20)
    metrics0 = _metric_texts(panel)
    checks0 = _check_states(panel)
    assert set(checks0.values()) == {"pass"}, "the demo plan's suggested trajectory passes every check"
    _assert_panel_matches_model(panel, session, tid)
    _assert_3d_matches_model(vv, session, tid)
    frame = vertebra_frame(plan.level(traj.level_id))
    undo_steps = len(doc._undo)

    # 1. sagittal: 4 mm deeper (anterior) and 2 mm up, by mouse
    sag = w.views.slice_views["sagittal"]
    start, end = _drag_target(sag, tid, target0 + 4.0 * frame.u + 2.0 * frame.s)
    target1 = np.asarray(doc.plan.trajectory(tid).target_lps, dtype=float)
    expected = target0 + (sag.frame.ex * (end[0] - start[0]) + sag.frame.ey * (end[1] - start[1])) / sag.zoom
    np.testing.assert_allclose(target1, expected, atol=1e-6)
    assert frame.wall_depth_mm(target1) > frame.wall_depth_mm(target0) + 3.0
    assert len(doc._undo) == undo_steps + 1, "one drag, one undo step"
    metrics1 = _metric_texts(panel)
    assert metrics1["target_depth_pct"] != metrics0["target_depth_pct"]
    assert metrics1["canal_margin_mm"] != metrics0["canal_margin_mm"]
    _assert_panel_matches_model(panel, session, tid)
    _assert_3d_matches_model(vv, session, tid)
    assert vv.interactive, "the 3D view drew the drag in its fast mode"
    qtbot.waitUntil(lambda: not vv.interactive, timeout=3000)  # full quality once the drag stops

    # 2. axial: 3 mm toward the patient's left, in the axial slice through the new target
    session.set_cursor(target1, vol.info.frame_of_reference_uid)
    ax = w.views.slice_views["axial"]
    qtbot.wait(20)
    _drag_target(ax, tid, target1 + 3.0 * frame.l)
    target2 = np.asarray(doc.plan.trajectory(tid).target_lps, dtype=float)
    assert float((target2 - target1) @ ax.frame.normal) == pytest.approx(0.0, abs=1e-6)  # moved in the slice
    assert np.linalg.norm(target2 - target1) > 2.0
    assert _metric_texts(panel)["midline_offset_mm"] != metrics1["midline_offset_mm"]
    _assert_panel_matches_model(panel, session, tid)
    _assert_3d_matches_model(vv, session, tid)

    # 3. sagittal again: into the canal, 1 mm in front of the posterior wall -> the margin check fails
    session.set_cursor(target2, vol.info.frame_of_reference_uid)
    qtbot.wait(20)
    _drag_target(sag, tid, target2 - (frame.wall_depth_mm(target2) - 1.0) * frame.u)
    target3 = np.asarray(doc.plan.trajectory(tid).target_lps, dtype=float)
    assert frame.wall_depth_mm(target3) < 2.5
    assert _check_states(panel)["canal_margin"] == "fail"
    assert "FAIL" in panel.overall.text()
    _assert_panel_matches_model(panel, session, tid)
    _assert_3d_matches_model(vv, session, tid)
    assert len(doc._undo) == undo_steps + 3

    # undo the three drags: plan, panel and 3D scene as before
    for _ in range(3):
        w.actions["edit.undo"].trigger()
    np.testing.assert_allclose(doc.plan.trajectory(tid).target_lps, target0, atol=1e-9)
    assert _metric_texts(panel) == metrics0
    assert _check_states(panel) == checks0
    _assert_3d_matches_model(vv, session, tid)


def test_one_edit_computes_the_checks_once_and_everyone_reads_them(planning, qtbot, monkeypatch):
    """A drag step in the real window: the checks of the moved trajectory (and of its partners on the
    level) are computed once, by the session's results, whatever the slice views, the 3D view, the
    panel and the export buttons do with them; the panel shows those very reports."""
    import planner.display.results as results_mod

    w, session, panel, vv = planning
    doc = session.document
    plan = doc.plan
    traj = next(t for t in plan.trajectories if plan.level(t.level_id).name == "L4")
    panel.select(traj.id)
    session.results.reports()  # everything computed for the plan as it is
    calls: list[str] = []
    real = results_mod.evaluate_trajectory

    def counting(plan_, trajectory, images=None):
        calls.append(trajectory.id if hasattr(trajectory, "id") else trajectory)
        return real(plan_, trajectory, images)

    monkeypatch.setattr(results_mod, "evaluate_trajectory", counting)
    target = np.asarray(traj.target_lps, dtype=float) + np.array([0.0, -1.0, 0.5])
    doc.set_trajectory_point(traj.id, "target", target.tolist(), merge_key="drag-count")
    w.repaint()
    qtbot.wait(50)
    for view in w.views.slice_views.values():
        view.repaint()
    vv.render_now()
    w.exports.blockers()
    session.results.plan_report()
    # the plan summary as the export button builds it (a snapshot of the plan, the session's reports)
    from planner.report import build_report_data

    data = build_report_data(doc.plan.model_copy(deep=True), session.images, with_3d=False,
                             reports=session.results.reports())
    partners = sorted(t.id for t in doc.plan.trajectories if t.level_id == traj.level_id)
    assert sorted(calls) == partners, "each affected trajectory's checks once per edit"
    assert panel.report is session.results.report(traj.id), "the panel shows the session's report"
    _assert_panel_matches_model(panel, session, traj.id)
    section = next(t for t in data.trajectories if t.trajectory_id == traj.id)
    assert {r.key: r.status for r in section.checks} == _check_states(panel), "the PDF shows the panel's checks"
    from planner.report.data import format_value

    metrics = panel.report.metrics
    assert [(r.label, r.value) for r in section.metrics[:len(metrics)]] == \
        [(m.label, format_value(m.value, m.unit)) for m in metrics], "the PDF's metrics are the panel's report's"
