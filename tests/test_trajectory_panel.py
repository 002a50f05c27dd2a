"""The trajectory panel driven like a user: suggest, edit parameters, watch metrics and checks, record
an override reason, delete, undo."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.document import PlanDocument
from planner.session import Session
from planner.trajectory import vertebra_frame
from tests.test_trajectory import POSES, plan_with

pytestmark = pytest.mark.gui


@pytest.fixture
def session():
    plan = plan_with(POSES[0], "L4")
    plan.levels[0].treat = True
    return Session(PlanDocument(plan, user="dr"))


def _panel(qtbot, session):
    from planner.views.trajectory_panel import TrajectoryPanel

    w = TrajectoryPanel(session)
    qtbot.addWidget(w)
    w.resize(560, 900)
    w.show()
    messages: list[str] = []
    w.message.connect(messages.append)
    return w, messages


def _check_rows(panel):
    role = Qt.ItemDataRole.UserRole
    return {panel.checks.item(r, 1).data(role): panel.checks.item(r, 0).data(role) for r in range(panel.checks.rowCount())}


def _metric(panel, name):
    for r in range(panel.metrics.rowCount()):
        if panel.metrics.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
            return panel.metrics.item(r, 1).text()
    raise KeyError(name)


def test_suggest_shows_metrics_and_checks(qtbot, session):
    panel, messages = _panel(qtbot, session)
    doc = session.document
    assert panel.suggest_left.isEnabled()
    qtbot.mouseClick(panel.suggest_left, Qt.MouseButton.LeftButton)
    assert len(doc.plan.trajectories) == 1
    traj = doc.plan.trajectories[0]
    assert traj.side == "left" and panel.selected_trajectory().id == traj.id
    assert session.active_trajectory == traj.id
    rows = _check_rows(panel)
    # no image is loaded: the landmark checks pass, the image checks are unverified (amber)
    assert rows["canal_margin"] == "pass"
    image_rows = ("canal", "bone_corridor", "other_bone", "pedicle_clearance", "zone")
    assert {rows[n] for n in image_rows} == {"unverified"}
    assert {v for k, v in rows.items() if k not in image_rows} == {"pass"}
    assert _metric(panel, "medial_angle_deg").startswith("20.0")
    assert _metric(panel, "canal_margin_mm").startswith("10.0")
    assert "unverified" in panel.overall.text()
    assert panel.checks.item(0, 0).foreground().color().name() == "#ffb300"
    canal_margin = [i for i in range(panel.checks.rowCount())
                    if panel.checks.item(i, 1).data(Qt.ItemDataRole.UserRole) == "canal_margin"][0]
    assert "Source:" in panel.checks.item(canal_margin, 2).toolTip()
    assert "Huang" in panel.checks.item(canal_margin, 2).toolTip()
    assert "from landmarks" in panel.checks.item(canal_margin, 2).toolTip()
    assert "L4 left" in messages[-1] and "not checked on the image" in messages[-1]
    assert "not measured on these images" in panel.override_note.text()
    # the tooltips of the parameters name their setting's source
    assert "domain.md" in panel.spins["zone_diameter_mm"].toolTip()
    doc.undo()
    assert doc.plan.trajectories == [] and panel.checks.rowCount() == 0


def test_depth_and_margin_are_shown_with_their_conflict(qtbot, session, tmp_path):
    """Issue 12: the panel shows the depth and the canal margin together, and says why the suggested
    target is deeper than the depth setting (the margin rule), or that there is no conflict."""
    panel, _ = _panel(qtbot, session)
    doc = session.document
    tid = panel.suggest("left")
    text = panel.depth_margin.text()
    assert "Depth" in text and "42%" in text and "setting 35%" in text  # 15 mm of 36 mm
    assert "canal margin" in text and "10.0 mm</b> from the ablation zone edge" in text
    assert "Canal margin measured from" in text and "zone edge" in text and "open item 9" in text
    # measured from the zone centre, a fresh suggestion keeps the depth setting and there is no conflict
    doc.set_setting("canal_margin_from", "zone_centre")
    doc.remove_trajectory(tid)
    tid = panel.suggest("left")
    text = panel.depth_margin.text()
    assert "35%" in text and "active tip (zone centre)" in text and "&#9888;" not in text
    path = tmp_path / "depth_margin.png"
    assert panel.grab().save(str(path))


def test_dragging_target_into_canal_fails_and_needs_reason(qtbot, session):
    panel, _ = _panel(qtbot, session)
    doc = session.document
    tid = panel.suggest("right")
    traj = doc.plan.trajectory(tid)
    f = vertebra_frame(doc.plan.levels[0])
    start = np.array(traj.target_lps)
    for step in np.linspace(0, 1, 6)[1:]:  # a drag: one undo step
        p = start - step * (f.wall_depth_mm(start) - 1.0) * f.u
        doc.set_trajectory_point(tid, "target", p, merge_key="drag-1")
    assert _check_rows(panel)["canal_margin"] == "fail"
    assert "FAIL" in panel.overall.text()
    assert "record the reason" in panel.override_note.text()
    assert "Export needs a reason" in panel.export_note.text() and "L4 right" in panel.export_note.text()
    assert panel.export_blockers() == ["L4 right"]
    # the physician records a reason
    panel.override.setFocus()
    qtbot.keyClicks(panel.override, "reviewed with Dr B, margin accepted")
    qtbot.keyClick(panel.override, Qt.Key.Key_Return)
    assert doc.plan.trajectory(tid).override_reason == "reviewed with Dr B, margin accepted"
    assert panel.export_blockers() == []
    assert "can be exported" in panel.export_note.text()
    assert "Override: reviewed with Dr B" in panel.checks.item(0, 2).text()
    doc.undo()  # the reason
    doc.undo()  # the drag, as one step
    assert np.allclose(doc.plan.trajectory(tid).target_lps, start)
    assert _check_rows(panel)["canal_margin"] == "pass"


def test_parameters_edit_through_document(qtbot, session):
    panel, _ = _panel(qtbot, session)
    doc = session.document
    tid = panel.suggest("left")
    spin = panel.spins["zone_diameter_mm"]
    # the editor offers what the plan accepts (TrajectoryParams: > 1 mm, <= 40 mm), no narrower range of its own
    assert (spin.minimum(), spin.maximum()) == (1.1, 40.0)
    assert panel.spins["introducer_diameter_mm"].minimum() == 0.51
    panel.activateWindow()
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=3000)
    spin.selectAll()
    qtbot.keyClicks(spin, "14")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert doc.plan.trajectory(tid).params.zone_diameter_mm == 14.0
    assert _check_rows(panel)["canal_margin"] == "fail"  # a bigger zone reaches closer to the canal
    doc.undo()  # (Edit > Undo: the spin box keeps the focus)
    assert doc.plan.trajectory(tid).params.zone_diameter_mm == 10.0
    assert spin.hasFocus() and spin.value() == 10.0  # the committed value follows the plan
    # curved off: straight path from the entry to the target (one undo step)
    assert panel.curved.isChecked()
    panel.curved.setChecked(False)
    t = doc.plan.trajectory(tid)
    assert t.bend_lps is None and not t.params.curved
    assert "cannula_curve" not in _check_rows(panel)
    assert not panel.spins["cannula_curve_radius_mm"].isEnabled()
    panel.curved.setChecked(True)
    t = doc.plan.trajectory(tid)
    assert t.bend_lps is not None and t.params.curved
    doc.undo()
    doc.undo()
    assert doc.plan.trajectory(tid).bend_lps is not None and doc.plan.trajectory(tid).params.curved


def test_bipedicular_delete_and_untreated_level(qtbot, session):
    panel, messages = _panel(qtbot, session)
    doc = session.document
    qtbot.mouseClick(panel.suggest_bi, Qt.MouseButton.LeftButton)
    assert sorted(t.side for t in doc.plan.trajectories) == ["left", "right"]
    assert _check_rows(panel)["bipedicular_spacing"] == "pass"
    doc.undo()
    assert doc.plan.trajectories == []  # one undo step for both
    doc.redo()
    panel.select(doc.plan.trajectories[0].id)
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert len(doc.plan.trajectories) == 1
    # a level not marked treat: no suggestions
    doc.set_level_fields(doc.plan.levels[0].id, treat=False)
    panel.select("", doc.plan.levels[0].id)
    assert not panel.suggest_left.isEnabled()
    assert panel.suggest("left") is None and "treat" in messages[-1]


def test_bipedicular_twice_replaces_or_refuses_and_never_duplicates(qtbot, session):
    """Issue 15 item 6: Bipedicular on a level that has trajectories asks; Yes replaces them (one undo
    step), Cancel keeps them; the level never ends with three."""
    panel, messages = _panel(qtbot, session)
    doc = session.document
    asked = []
    panel.ask_replace = lambda text: asked.append(text) or False
    first = panel.suggest_bipedicular()
    assert first is not None and not asked
    second = panel.suggest_bipedicular()  # refused
    assert second is None and len(asked) == 1 and "L4 already has 2 trajectories" in asked[0]
    assert sorted(t.id for t in doc.plan.trajectories) == sorted(first)
    assert "keeps its trajectories" in messages[-1]
    panel.ask_replace = lambda text: asked.append(text) or True
    depth = len(doc._undo)
    third = panel.suggest_bipedicular()  # replaced
    assert third is not None and len(doc.plan.trajectories) == 2
    assert {t.id for t in doc.plan.trajectories} == set(third) and sorted(t.side for t in doc.plan.trajectories) == \
        ["left", "right"]
    assert len(doc._undo) == depth + 1
    # a single-side suggestion replaces that side only
    left = panel.suggest("left")
    assert sorted(t.side for t in doc.plan.trajectories) == ["left", "right"] and left in \
        {t.id for t in doc.plan.trajectories}
    doc.undo()
    assert {t.id for t in doc.plan.trajectories} == set(third)


def test_the_list_shows_every_trajectory_with_six_rows_visible(qtbot, session):
    """The list has one row per trajectory (level, side, path, checks), treated levels without one
    have a row, and six rows fit without scrolling."""
    panel, _ = _panel(qtbot, session)
    doc = session.document
    assert panel.rows() == [(doc.plan.levels[0].id, "")]
    assert panel.tree.topLevelItem(0).text(3) == "no trajectory yet"
    left, right = panel.suggest_bipedicular()
    assert [r[1] for r in panel.rows()] == [left, right]
    item = panel.tree.topLevelItem(0)
    # no image is loaded: the image checks are unverified
    assert (item.text(0), item.text(1).split()[0], item.text(2), item.text(3)) == \
        ("L4", "left", "straight", "unverified")
    assert [panel.tree.headerItem().text(c) for c in range(4)] == ["Level", "Side", "Path", "Checks"]
    row_h = panel.tree.visualItemRect(item).height()
    assert row_h > 0 and panel.tree.viewport().height() >= 6 * row_h


def test_follows_active_trajectory_and_read_only(qtbot, session):
    panel, _ = _panel(qtbot, session)
    doc = session.document
    a = panel.suggest("left")
    b = panel.suggest("right")
    session.set_active_trajectory(a)
    assert panel.selected_trajectory().id == a
    doc.read_only = True
    panel.select(b)
    assert not panel.param_box.isEnabled() and not panel.delete_button.isEnabled()
    panel.close()
    doc.read_only = False
    doc.add_level("L5")  # no dead widget is called
    assert doc.changed.receiver_count == 1  # only the session's results listen


def test_screenshot(qtbot, session, tmp_path):
    panel, _ = _panel(qtbot, session)
    tid = panel.suggest("left")
    doc = session.document
    f = vertebra_frame(doc.plan.levels[0])
    t = np.array(doc.plan.trajectory(tid).target_lps)
    doc.set_trajectory_point(tid, "target", t - 4.0 * f.u)
    qtbot.wait(50)
    path = tmp_path / "trajectory_panel.png"
    img = panel.grab()
    assert img.save(str(path))
    image = img.toImage()
    colors = {image.pixelColor(x, y).name() for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colors) > 5
    import os
    out = os.environ.get("BVN_SCREENSHOT_DIR")
    if out:
        img.save(os.path.join(out, "trajectory_panel.png"))


def _endless_search(calls: list[str]):
    """A stand-in for suggest_checked that reports its progress and runs until cancelled (30 s at most), noting
    each call's side in ``calls``."""
    import time

    from planner.suggest import SuggestionCancelled

    def endless(plan, level, side, images, progress, cancel):
        calls.append(side)
        for i in range(1500):
            if cancel():
                raise SuggestionCancelled("cancelled")
            progress(min(i / 100, 0.99), f"{level.name} {side}: curved paths, {i} tried")
            time.sleep(0.02)
        raise AssertionError("Cancel did not stop the search")

    return endless


def test_a_slow_suggestion_shows_its_progress_and_cancel_leaves_the_plan_unchanged(qtbot, session, monkeypatch):
    """A search that takes a while runs behind a progress dialog that says what it is doing (the window
    stays drawn, the plan cannot be edited meanwhile); its Cancel button stops it and nothing is added.
    The search is a stand-in that runs until cancelled (the real one's progress and cancel:
    tests/test_safety.py)."""

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QPushButton

    import planner.views.trajectory_panel as module

    monkeypatch.setattr(module, "suggest_checked", _endless_search([]))
    panel, messages = _panel(qtbot, session)
    seen = {}

    def press_cancel():
        dlg = panel.progress
        seen["shown"] = dlg is not None and dlg.isVisible()
        seen["label"] = dlg.labelText() if dlg is not None else ""
        qtbot.mouseClick(dlg.findChild(QPushButton), Qt.MouseButton.LeftButton)

    QTimer.singleShot(1200, press_cancel)
    assert panel.suggest("left") is None
    assert seen["shown"] and re.search(r"L4 left: curved paths, \d+ tried", seen["label"]), seen
    assert session.document.plan.trajectories == []
    assert messages[-1] == "Suggestion for L4 left cancelled; the plan is unchanged"
    assert panel.progress is None  # the dialog is gone
    # the next suggestion (the real one) works
    monkeypatch.undo()
    assert panel.suggest("left") is not None and len(session.document.plan.trajectories) == 1


def test_a_second_request_while_a_suggestion_is_searched_starts_no_second_search(qtbot, session, monkeypatch):
    """While a search runs behind its progress window the panel refuses a second one (Suggest left, Bipedicular),
    before the window shows and after, and says why; the first search goes on until its Cancel."""

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QPushButton

    import planner.views.trajectory_panel as module

    calls: list[str] = []
    monkeypatch.setattr(module, "suggest_checked", _endless_search(calls))
    panel, messages = _panel(qtbot, session)
    refused = []

    def ask_again():
        refused.append((panel.suggest("left"), panel.suggest_bipedicular(), messages[-1]))

    def cancel_when_shown():
        dlg = panel.progress
        if dlg is None or not dlg.isVisible():
            QTimer.singleShot(50, cancel_when_shown)
            return
        ask_again()
        qtbot.mouseClick(dlg.findChild(QPushButton), Qt.MouseButton.LeftButton)

    QTimer.singleShot(100, ask_again)  # before the progress window shows
    QTimer.singleShot(150, cancel_when_shown)
    qtbot.mouseClick(panel.suggest_left, Qt.MouseButton.LeftButton)
    assert calls == ["left"], calls
    assert [r[:2] for r in refused] == [(None, None), (None, None)], refused
    assert all(r[2] == "A suggestion is being searched: wait for it, or cancel it" for r in refused), refused
    assert session.document.plan.trajectories == []
    assert messages[-1] == "Suggestion for L4 left cancelled; the plan is unchanged"


def test_a_refused_suggestion_says_why_beside_the_level_until_a_path_is_added(qtbot, session, monkeypatch):
    """When a suggestion finds no path, the reason stays in the panel (the level's row reads "no path
    suggested", its tooltip and the note under the list give the whole reason), not only in the status bar,
    which cuts it to its width and clears it; moving a landmark of the level, or a path added there, clears
    it."""
    import planner.views.trajectory_panel as module
    from planner.suggest import Suggestion

    why = ("Cannot suggest a curved path from the left for L4 that passes the image checks: no target: no target "
           "in the 30-50% depth window keeps the zone inside the body of L4 on the image and the 10 mm canal "
           "margin on the image (the nearest target that does lies at 56% depth).")
    monkeypatch.setattr(module, "suggest_checked", lambda *a, **k: Suggestion(None, None, "none", why))
    panel, messages = _panel(qtbot, session)
    level = session.document.plan.levels[0]
    assert panel.suggest("left") is None
    assert messages[-1] == why
    row = panel.tree.topLevelItem(0)
    assert row.text(3) == "no path suggested" and row.toolTip(3) == why
    assert "lies at 56% depth" in panel.depth_margin.text() and panel.depth_margin.isVisible()
    assert "L4</b>: no path suggested" in panel.overall.text()
    # the landmarks move: the reason may no longer hold
    centre = np.asarray(level.landmarks.body_center_lps) + [0.0, 0.0, 1.0]
    session.document.set_landmark(level.id, "body_center_lps", centre)
    panel.refresh()
    assert panel.tree.topLevelItem(0).text(3) == "no trajectory yet" and "56%" not in panel.depth_margin.text()
    # refused again, then a path is added
    assert panel.suggest("left") is None and panel.tree.topLevelItem(0).text(3) == "no path suggested"
    monkeypatch.undo()
    assert panel.suggest("left") is not None
    assert all(panel.tree.topLevelItem(i).text(3) not in ("no path suggested", "no trajectory yet")
               for i in range(panel.tree.topLevelItemCount()))
    assert "56%" not in panel.depth_margin.text()


def test_without_a_trajectory_the_parameters_show_the_plan_s_defaults(qtbot, session):
    """With no trajectory selected the (disabled) parameter box shows what a new path gets from the plan's
    settings, titled so, not the spin boxes' lower limits (a 1.1 mm zone, a 0 mm canal margin); selecting a path
    shows its own values."""
    panel, _ = _panel(qtbot, session)
    st = session.document.plan.settings
    assert not panel.param_box.isEnabled() and "defaults for a new path" in panel.param_box.title()
    assert panel.spins["zone_diameter_mm"].value() == pytest.approx(st.zone_diameter_mm)
    assert panel.spins["canal_margin_mm"].value() == pytest.approx(st.canal_margin_mm)
    assert panel.spins["introducer_diameter_mm"].value() == pytest.approx(st.introducer_diameter_mm)
    tid = panel.suggest("left")
    session.document.set_trajectory_params(tid, zone_diameter_mm=8.0)
    panel.refresh()
    assert panel.param_box.isEnabled() and panel.param_box.title() == "Parameters: L4 left"
    assert panel.spins["zone_diameter_mm"].value() == pytest.approx(8.0)
