"""The review panel driven as a fellow would: comment, sign off, see it go out of date, audit trail."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import Qt

from planner.document import PlanDocument
from planner.session import Session
from tests.plan_factory import sample_plan

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot):
    from planner.views.review_panel import ReviewPanel

    session = Session(PlanDocument(sample_plan(), user="fellow", read_only=True))
    w = ReviewPanel(session)
    qtbot.addWidget(w)
    w.show()
    return w


def test_comment_anchored_to_a_trajectory(panel, qtbot):
    idx = panel.anchor.findText("Trajectory L4 left")
    assert idx > 0
    panel.anchor.setCurrentIndex(idx)
    qtbot.keyClicks(panel.text, "Entry looks lateral")
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    c = panel.session.document.plan.review.comments[-1]
    assert c.text == "Entry looks lateral"
    assert c.anchor_kind == "trajectory" and c.anchor_id == panel.session.document.plan.trajectories[0].id
    top = panel.tree.topLevelItem(0)
    assert top.text(0) == "Trajectory L4 left" and top.child(0).text(0) == "Entry looks lateral"
    assert panel.text.toPlainText() == ""


def test_empty_comment_is_refused_with_a_message(panel, qtbot):
    messages = []
    panel.message.connect(messages.append)
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    assert messages and "empty" in messages[0]
    assert panel.session.document.plan.review.comments == []


def test_signoff_then_change_shows_out_of_date(qtbot):
    from planner.views.review_panel import ReviewPanel

    session = Session(PlanDocument(sample_plan(), user="attending"))
    w = ReviewPanel(session)
    qtbot.addWidget(w)
    assert "Not reviewed" in w.state_label.text()
    assert "Reviewing as <b>attending</b>" in w.identity.text()
    changed = []
    w.reviewer_changed.connect(changed.append)
    assert w.set_reviewer("Dr Fellow") and changed == ["Dr Fellow"]
    assert w.add_comment("Entry point fine")
    assert w.sign_off()
    assert "Signed off" in w.state_label.text()
    review = session.document.plan.review
    # one identity: the comment author is the sign-off name (and the audit user)
    assert review.comments[-1].author == review.signoffs[-1].reviewer == "Dr Fellow"
    assert session.document.plan.audit[-1].user == "Dr Fellow"
    assert not w.set_reviewer("  ")
    tid = session.document.plan.trajectories[0].id
    session.document.set_trajectory_point(tid, "target", (0.0, 4.0, -40.0))
    assert "out of date" in w.state_label.text()
    assert "OUT OF DATE" in w.signoffs.text()


def test_audit_dialog_lists_and_exports(panel, qtbot, tmp_path):
    panel.add_comment("first")
    dlg = panel.show_audit()
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 1
    assert dlg.table.item(0, 2).text() == "Add review comment"
    out = tmp_path / "audit.csv"
    dlg.export_to(str(out))
    rows = list(csv.reader(out.open()))
    assert rows[1][1] == "fellow" and rows[1][2] == "Add review comment"


def test_closed_panel_ignores_model_changes(qtbot):
    from planner.views.review_panel import ReviewPanel

    session = Session(PlanDocument(sample_plan(), user="a"))
    w = ReviewPanel(session)
    qtbot.addWidget(w)
    connected = session.document.changed.receiver_count
    w.close()
    assert session.document.changed.receiver_count == connected - 1
    session.document.add_comment("after close")
    assert w.tree.topLevelItemCount() == 0


def test_panels_in_hidden_tabs_refresh_when_shown(qtbot):
    """While the physician drags in the views, panels in hidden tabs wait; shown, they are current."""
    from planner.views.app import install_panels
    from tests.views_support import open_window, session_with

    w = open_window(qtbot, session_with())
    install_panels(w)
    w.show_panel("Levels")
    review, eligibility = w.panels["Review"], w.panels["Eligibility"]
    assert not review.is_shown() and not eligibility.is_shown()
    w.session.document.sign_off("Dr Fellow")
    assert review.signoffs.text() == "No sign-off yet."  # not refreshed while hidden
    w.show_panel("Review")
    qtbot.waitUntil(review.is_shown, timeout=3000)
    assert "Dr Fellow" in review.signoffs.text()
    w.show_panel("Eligibility")
    qtbot.waitUntil(eligibility.is_shown, timeout=3000)
    assert not getattr(eligibility, "_stale", False)
