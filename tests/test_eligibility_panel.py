"""The eligibility panel driven with mouse and keyboard: answers, live result, warnings, payer profile."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLineEdit

from planner.document import PlanDocument
from planner.eligibility import checklist
from planner.session import Session
from tests.test_eligibility import GOOD, _plan

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot):
    from planner.views.eligibility_panel import EligibilityPanel

    plan = _plan()
    plan.eligibility.answers = {}
    session = Session(PlanDocument(plan, user="dr"))
    w = EligibilityPanel(session)
    qtbot.addWidget(w)
    w.resize(640, 900)
    w.show()
    return w


def _choose(qtbot, combo: QComboBox, text: str) -> None:
    combo.setFocus()
    idx = combo.findText(text)
    assert idx >= 0
    combo.setCurrentIndex(idx)
    combo.activated.emit(idx)


def _type(qtbot, edit: QLineEdit, text: str) -> None:
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def test_every_item_is_shown_with_its_source(panel):
    keys = [it.key for it in checklist()]
    assert list(panel.rows) == keys
    for key, row in panel.rows.items():
        assert "Source:" in row.question.toolTip() and "Rule:" in row.question.toolTip()
    assert "trial exclusion" in panel.rows["bmi"].question.toolTip()
    assert "device contraindication" in panel.rows["cardiopulmonary"].question.toolTip()
    titles = [b.title() for b in panel.group_boxes.values()]
    assert [t.split(" \u2014 ")[0] for t in titles] == [
        "FDA indication", "Device contraindication", "Named by clinic pages only", "Trial criterion",
        "Payer rule (Medicare A59468)"]
    assert "not met: not eligible" in titles[0] and "outside the trial population; does not decide" in titles[3]
    # each row sits in the box of its class
    assert panel.rows["bmi"].question.parent() is panel.group_boxes["trial_criterion"]
    assert panel.rows["scoliosis"].question.parent() is panel.group_boxes["clinic_pages"]


def test_answering_everything_makes_the_patient_eligible(panel, qtbot):
    doc = panel.session.document
    assert "Incomplete" in panel.overall.text()
    for key, value in GOOD.items():
        row = panel.rows[key]
        if isinstance(row.editor, QComboBox):
            _choose(qtbot, row.editor, "Yes" if value else "No")
        elif isinstance(row.editor, QLineEdit):
            _type(qtbot, row.editor, str(value))
    assert doc.plan.eligibility.answers["odi"] == 42.0 and doc.plan.eligibility.answers["axial_pain"] is True
    assert "Eligible" in panel.overall.text(), [(k, r.status.text()) for k, r in panel.rows.items()]
    assert panel.warnings.text() == "No warnings."
    assert "FDA indication met" in panel.verdict.text() and "#4caf50" in panel.overall.text()
    # a trial criterion not met: still eligible, amber, "outside the trial population"
    _type(qtbot, panel.rows["vas"].editor, "3")
    assert "Eligible" in panel.overall.text() and "#ff9800" in panel.overall.text()
    assert "outside trial" in panel.rows["vas"].status.text()
    assert "Outside the trial population: VAS 3 cm" in panel.verdict.text()
    # a device contraindication decides: red
    _choose(qtbot, panel.rows["pregnancy"].editor, "Yes")
    assert "Not eligible" in panel.overall.text() and "contraindicated" in panel.rows["pregnancy"].status.text()
    assert "decided by a device contraindication" in panel.verdict.text()
    doc.undo()
    doc.undo()
    assert "Eligible" in panel.overall.text() and panel.rows["vas"].editor.text() == "6.5"
    # clearing a number makes it unanswered again
    _type(qtbot, panel.rows["odi"].editor, "")
    assert doc.plan.eligibility.answers["odi"] is None and "Eligible" in panel.overall.text()
    _type(qtbot, panel.rows["pain_duration_months"].editor, "")
    assert "Incomplete" in panel.overall.text() and "pain duration" in panel.verdict.text()


def test_warnings_follow_the_levels_live(panel, qtbot):
    doc = panel.session.document
    l3 = doc.plan.level_by_name("L3")
    doc.set_endplate(l3.id, "superior", modic_type="1", confirmed=True)
    doc.set_level_fields(l3.id, treat=True)
    assert "Payer warning (Medicare A59468)" in panel.verdict.text() and "3 treated" in panel.verdict.text()
    assert "payer warning" in panel.rows["medicare_per_procedure"].status.text()
    assert "3 treated" in panel.rows["medicare_per_procedure"].answer.text()
    doc.undo()
    assert "3 treated" not in panel.verdict.text()


def test_payer_profile_switch(panel, qtbot):
    doc = panel.session.document
    _choose(qtbot, panel.payer, "Commercial CAM 394")
    assert doc.plan.settings.payer_profile == "cam394"
    assert "n/a" in panel.rows["medicare_per_procedure"].status.text()
    assert isinstance(panel.rows["cbt_sessions"].editor, QLineEdit)
    _type(qtbot, panel.rows["pain_duration_months"].editor, "9")
    assert "payer warning" in panel.rows["cam394_pain_duration"].status.text()
    assert "CAM 394" in panel.group_boxes["payer_rule"].title()
    assert "9 months" in panel.rows["cam394_pain_duration"].answer.text()
    doc.undo()
    doc.undo()
    assert doc.plan.settings.payer_profile == "medicare" and panel.payer.currentData() == "medicare"


def test_question_texts_follow_settings(panel):
    panel.session.document.set_setting("max_disc_protrusion_mm", 4.0)
    assert "4 mm" in panel.rows["disc_protrusion"].question.text()


def test_a_typing_error_is_reported_and_not_stored(panel, qtbot):
    messages = []
    panel.message.connect(messages.append)
    _type(qtbot, panel.rows["bmi"].editor, "abc")
    assert messages == ["'abc' is not a number"]
    assert "bmi" not in panel.session.document.plan.eligibility.answers


def test_notes_and_read_only(panel, qtbot):
    _type(qtbot, panel.notes, "ODI from the intake form")
    assert panel.session.document.plan.eligibility.notes == "ODI from the intake form"
    panel.session.document.read_only = True
    panel.refresh()
    assert not panel.rows["odi"].editor.isEnabled() and not panel.payer.isEnabled()


def test_closing_is_safe(panel):
    doc = panel.session.document
    panel.close()
    doc.set_eligibility_answer("odi", 10.0)
    assert doc.changed.receiver_count == 1  # only the session's results listen
