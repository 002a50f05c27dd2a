"""The image checks in the real window (pytest-qt, demo case with its MRI): a zone moved 30 mm from the
midline at L5 fails "Zone inside the body" in the panel and blocks the exports (issue 15 item 6); a
path through the spinal canal is drawn red with its label in the slice views and the probe's-eye view
(issue 11 item 6). Screenshots are written next to the test's temporary files."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.trajectory import vertebra_frame
from tests.views_support import open_window, session_with, wait_plan_images

pytestmark = pytest.mark.gui


@pytest.fixture
def demo_window(qtbot, demo_study):
    from planner.views.app import install_panels

    w = open_window(qtbot, session_with(), size=(1600, 1000))
    assert w.files.open_plan(str(demo_study.plan_path), images_folder=str(demo_study.folder))
    wait_plan_images(qtbot, w)
    install_panels(w)
    yield w
    w.exports.shutdown()


def _rows(panel):
    role = Qt.ItemDataRole.UserRole
    return {panel.checks.item(r, 1).data(role): panel.checks.item(r, 0).data(role)
            for r in range(panel.checks.rowCount())}


def _red_pixels(widget) -> int:
    img = widget.grab().toImage()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8).reshape(img.height(), img.bytesPerLine())
    arr = arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)
    b, g, r = arr[..., 0].astype(int), arr[..., 1].astype(int), arr[..., 2].astype(int)
    return int(np.count_nonzero((r > 200) & (g < 80) & (b < 80)))


def test_demo_plan_passes_and_a_zone_30mm_from_the_midline_fails(qtbot, demo_window, tmp_path):
    w = demo_window
    doc = w.session.document
    panel = w.panels["Trajectories"]
    for traj in doc.plan.trajectories:
        panel.select(traj.id)
        rows = _rows(panel)
        assert rows["zone"] == "pass" and rows["canal"] == "pass", rows
        assert panel.report.overall in ("pass", "warning")
    assert panel.export_blockers() == []
    l5 = doc.plan.level_by_name("L5")
    traj = next(t for t in doc.plan.trajectories if t.level_id == l5.id)
    f = vertebra_frame(l5)
    target = np.asarray(traj.target_lps, dtype=float)
    # 30 mm from the midline toward the approach side (the body of L5 is about 24 mm wide each side)
    toward = -f.medial_direction(traj.side)
    moved = target - float((target - f.body_center_lps) @ f.l) * f.l + 30.0 * toward
    doc.set_trajectory_point(traj.id, "target", moved.tolist())
    panel.select(traj.id)
    rows = _rows(panel)
    assert rows["zone"] == "fail"
    zone = panel.report.check("zone")
    assert zone.basis == "measured" and ("out of the body" in zone.reason or "outside the body" in zone.reason)
    assert panel.export_blockers() == [f"L5 {traj.side}"]
    w.session.set_cursor(moved)
    qtbot.wait(200)
    assert w.grab().save(str(tmp_path / "zone-30mm.png"))


def test_a_path_through_the_canal_is_red_in_the_views(qtbot, demo_window, tmp_path):
    w = demo_window
    doc = w.session.document
    l4 = doc.plan.level_by_name("L4")
    traj = next(t for t in doc.plan.trajectories if t.level_id == l4.id)
    f = vertebra_frame(l4)
    target = np.asarray(traj.target_lps, dtype=float)
    w.session.set_cursor(target)
    qtbot.wait(200)
    views = list(w.views.slice_views.values())
    before = sum(_red_pixels(v) for v in views)
    # straight from behind on the midline: the introducer crosses the spinal canal
    doc.set_trajectory_params(traj.id, curved=False)
    doc.set_trajectory_point(traj.id, "bend", None)
    doc.set_trajectory_point(traj.id, "entry", (target - 45.0 * f.u + (f.body_center_lps - target) @ f.l * f.l).tolist())
    doc.set_trajectory_point(traj.id, "target", (target + (f.body_center_lps - target) @ f.l * f.l).tolist())
    panel = w.panels["Trajectories"]
    panel.select(traj.id)
    canal = panel.report.check("canal")
    assert canal.status == "fail" and canal.parts and canal.parts[0].label.startswith("canal ")
    w.session.set_cursor(canal.parts[0].points_lps[len(canal.parts[0].points_lps) // 2])
    qtbot.wait(300)
    after = sum(_red_pixels(v) for v in views)
    assert after > before + 50
    assert w.grab().save(str(tmp_path / "canal-red.png"))
    # the probe's-eye view at the canal: the instrument's cut red, with the label
    w.actions["view.layout_trajectory"].trigger()
    probe = w.views.trajectory_views["probe"]
    probe.sync()
    mid = canal.parts[0].points_lps[len(canal.parts[0].points_lps) // 2]
    s = probe.axis.start_mm + float(np.linalg.norm(mid - probe.axis.point_at(probe.axis.start_mm)))
    probe.set_position(s)
    qtbot.wait(200)
    assert any(label.startswith("canal ") for label in probe.failing_here())
    assert _red_pixels(probe) > 20
    assert w.grab().save(str(tmp_path / "probe-canal.png"))
