"""Eligibility panel: the checklist of planner.eligibility, grouped by criterion class, with the live
verdict and warnings.

A standalone QWidget on a :class:`planner.session.Session`. The groups are the criterion classes (FDA
indication, device contraindication, named by clinic pages only, trial criterion, payer rule); each
group's title says what a criterion of that class does when it is not met. Answers are edited in place
(yes/no combos, number fields) and stored through ``PlanDocument.set_eligibility_answer`` (undoable);
the payer profile through ``set_setting``. Derived items (Modic at the targets, level range, canal
margin, payer counts) are read from the plan. Each item's rule, source, tag and confidence are in its
tooltip. The verdict line (which class decided it, and the flags that do not decide) and the warnings
are recomputed on every ``document.changed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from planner.document import PlanChange, PlanEditError
from planner.eligibility import (
    AMBER,
    CLASSES,
    GREEN,
    GREY,
    GROUPS,
    MET,
    NOT_APPLICABLE,
    NOT_MET,
    PAYER,
    RED,
    UNANSWERED,
    ChecklistItem,
    EligibilityResult,
    checklist,
    evaluate_eligibility,
    parse_number,
    parse_yes_no,
)
from planner.session import Session
from planner.views.panel import PlanPanel

#: Screen colours of the eligibility colours (planner.eligibility RED/AMBER/GREEN/GREY).
COLOURS = {RED: "#e53935", AMBER: "#ff9800", GREEN: "#4caf50", GREY: "#9aa4ad"}
#: Short words for the statuses of items that are not "not met" (a "not met" item shows its class's outcome).
STATUS_WORDS = {MET: "met", UNANSWERED: "unanswered", NOT_APPLICABLE: "n/a"}
#: Short outcome words for an item that is not met, per class.
NOT_MET_WORDS = {"fda_indication": "not met", "device_contraindication": "contraindicated",
                 "clinic_pages": "caution", "trial_criterion": "outside trial", "payer_rule": "payer warning"}


def group_title(group: str, payer_profile: str = "") -> str:
    """The group box title: the class and what "not met" means for it."""
    cls = CLASSES[group]
    title = cls.title
    if group == PAYER and payer_profile:
        from planner.eligibility import PAYER_NAMES

        title += f" ({PAYER_NAMES.get(payer_profile, payer_profile)})"
    effect = f"not met: {cls.consequence}" if cls.decides else f"{cls.consequence}; does not decide"
    return f"{title} \u2014 {effect}"
PAYER_CHOICES = (("Medicare (A59468)", "medicare"), ("Commercial CAM 394", "cam394"), ("No payer rules", "none"))


@dataclass
class _Row:
    item: ChecklistItem
    question: QLabel
    editor: Optional[QWidget]
    answer: QLabel
    status: QLabel


def item_tooltip(item: ChecklistItem) -> str:
    return (f"<b>{item.question}</b><br>Rule: {item.rule}<br>Source: {item.source}<br>"
            f"Kind: {item.tag} {item.confidence}")


class EligibilityPanel(PlanPanel):
    """The eligibility checklist with answers, per-item status, overall result and warnings."""

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self._updating = False
        self.overall = QLabel()
        self.overall.setObjectName("eligibilityOverall")
        self.counts = QLabel()
        self.verdict = QLabel()
        self.verdict.setObjectName("eligibilityVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.payer = QComboBox()
        for text, value in PAYER_CHOICES:
            self.payer.addItem(text, value)
        self.payer.setToolTip("Payer rules to check (domain.md 1.4): Medicare A59468 or the CAM 394 commercial "
                              "policy; warnings never block planning")
        self.payer.activated.connect(self._payer_changed)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.body)
        self.notes = QLineEdit()
        self.notes.setPlaceholderText("Notes on eligibility (sources of the scores, dates)")
        self.notes.setToolTip("Saved when you press Enter or leave the field")
        self.notes.editingFinished.connect(self._notes_done)

        head = QHBoxLayout()
        head.addWidget(self.overall)
        head.addStretch(1)
        head.addWidget(QLabel("Payer:"))
        head.addWidget(self.payer)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(self.verdict)
        lay.addWidget(self.counts)
        lay.addWidget(self.warnings)
        lay.addWidget(self.scroll, 1)
        lay.addWidget(self.notes)

        #: key -> row widgets (question, answer editor or None, answer text, status)
        self.rows: dict[str, _Row] = {}
        self.group_boxes: dict[str, QGroupBox] = {}
        self._settings_key: Any = None
        self.subscribe(session.document.changed, self._on_changed)
        # the canal margins come from the trajectories' checks, which change when the images do
        self.subscribe(session.results.results_changed, self._on_results)
        self.refresh()

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        plan = self.document.plan
        while self.body_layout.count():
            w = self.body_layout.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.rows.clear()
        self.group_boxes.clear()
        grids: dict[str, QGridLayout] = {}
        for g in GROUPS:
            box = QGroupBox(group_title(g, plan.settings.payer_profile))
            box.setToolTip(CLASSES[g].basis)
            grid = QGridLayout(box)
            grid.setColumnStretch(0, 1)
            grid.setHorizontalSpacing(8)
            self.body_layout.addWidget(box)
            self.group_boxes[g] = box
            grids[g] = grid
        self.body_layout.addStretch(1)
        for item in checklist(plan.settings):
            grid = grids[item.group]
            r = grid.rowCount()
            question = QLabel(item.question)
            question.setWordWrap(True)
            question.setToolTip(item_tooltip(item))
            question.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            editor: Optional[QWidget] = None
            if item.kind == "yes_no" and item.answer_key == "":
                combo = QComboBox()
                combo.addItem("not answered", None)
                combo.addItem("Yes", True)
                combo.addItem("No", False)
                combo.setToolTip(item_tooltip(item))
                combo.activated.connect(lambda i, c=combo, k=item.key: self.set_answer(k, c.itemData(i)))
                editor = combo
            elif item.kind == "number" and item.answer_key == "":
                edit = QLineEdit()
                edit.setPlaceholderText(item.unit or "number")
                edit.setToolTip(item_tooltip(item))
                edit.editingFinished.connect(lambda e=edit, k=item.key: self._number_done(k, e))
                editor = edit
            answer = QLabel()
            answer.setWordWrap(True)
            status = QLabel()
            status.setToolTip(item_tooltip(item))
            status.setMinimumWidth(80)
            grid.addWidget(question, r, 0)
            if editor is not None:
                editor.setFixedWidth(120)
                grid.addWidget(editor, r, 1)
            else:
                answer.setFixedWidth(120)
                grid.addWidget(answer, r, 1)
            grid.addWidget(status, r, 2)
            self.rows[item.key] = _Row(item, question, editor, answer, status)
        self._settings_key = plan.settings.model_dump_json()

    # ------------------------------------------------------------------ model -> view
    def _on_changed(self, change: PlanChange) -> None:
        self.refresh_when_visible()  # a hidden tab waits until shown (keeps drags in the views fast)

    def _on_results(self, ids: frozenset) -> None:
        self.refresh_when_visible()

    def refresh(self) -> None:
        if self.closed:
            return
        plan = self.document.plan
        self._updating = True
        try:
            if self._settings_key != plan.settings.model_dump_json():
                self._build()
            result = self.result()
            for r in result.items:
                row = self.rows[r.item.key]
                text = NOT_MET_WORDS[r.item.group] if r.status == NOT_MET else STATUS_WORDS[r.status]
                color = COLOURS[r.colour]
                row.status.setText(f"<span style='color:{color}'>{text}</span>")
                tip = item_tooltip(r.item) + (f"<br>Now: {r.detail}" if r.detail else "")
                row.status.setToolTip(tip)
                row.question.setEnabled(r.status != NOT_APPLICABLE)
                raw = plan.eligibility.answers.get(r.item.key)
                editor = row.editor
                if isinstance(editor, QComboBox):
                    v = parse_yes_no(raw)
                    editor.setCurrentIndex(0 if v is None else 1 if v else 2)
                elif isinstance(editor, QLineEdit):
                    if not (editor.hasFocus() and editor.isModified()):  # never overwrite what is being typed
                        num = parse_number(raw)
                        editor.setText("" if num is None else f"{num:g}")
                else:
                    row.answer.setText(r.detail)
                    row.answer.setToolTip(tip)
            color = COLOURS[result.colour]
            self.overall.setText(f"<b style='color:{color}; font-size:14pt'>{result.overall.capitalize()}</b>")
            c = result.counts()
            lines = result.verdict_lines()
            self.verdict.setText(f"<span style='color:{color}'>{escape(lines[0])}</span>" + "".join(
                f"<br><span style='color:{COLOURS[AMBER]}'>&#9679; {escape(x)}</span>" for x in lines[1:]))
            self.counts.setText(f"{c[MET]} met, {c[NOT_MET]} not met, {c[UNANSWERED]} unanswered"
                                + (f", {c[NOT_APPLICABLE]} not applicable" if c[NOT_APPLICABLE] else ""))
            # payer rules not met are in the verdict lines already
            shown = [w for w in result.warnings if w.group != PAYER]
            if shown:
                self.warnings.setText("<br>".join(f"<span style='color:#ff9800'>&#9888; {escape(w.message)}</span> "
                                                  f"<small>({escape(w.source)})</small>" for w in shown))
            else:
                self.warnings.setText("No warnings.")
            self.payer.setCurrentIndex(max(0, self.payer.findData(plan.settings.payer_profile)))
            if not (self.notes.hasFocus() and self.notes.isModified()):
                self.notes.setText(plan.eligibility.notes)
            self.setEnabled(True)
            read_only = self.document.read_only
            for row in self.rows.values():
                if row.editor is not None:
                    row.editor.setEnabled(not read_only)
            self.payer.setEnabled(not read_only)
            self.notes.setReadOnly(read_only)
        finally:
            self._updating = False

    def result(self) -> EligibilityResult:
        return evaluate_eligibility(self.document.plan, self.session.results.plan_report().trajectories)

    # ------------------------------------------------------------------ view -> model
    def set_answer(self, key: str, value: Any) -> bool:
        if self._updating:
            return False
        if self.document.plan.eligibility.answers.get(key) == value:
            return True
        try:
            self.document.set_eligibility_answer(key, value)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            return False
        return True

    def _number_done(self, key: str, edit: QLineEdit) -> None:
        edit.setModified(False)
        text = edit.text().strip()
        value = None if not text else parse_number(text)
        if text and value is None:
            self.message.emit(f"{text!r} is not a number")
            return
        self.set_answer(key, value)

    def _payer_changed(self, index: int) -> None:
        value = self.payer.itemData(index)
        if value != self.document.plan.settings.payer_profile:
            try:
                self.document.set_setting("payer_profile", value)
            except PlanEditError as exc:
                self.message.emit(str(exc))

    def _notes_done(self) -> None:
        self.notes.setModified(False)
        if self.notes.text() != self.document.plan.eligibility.notes:
            try:
                self.document.set_eligibility_notes(self.notes.text())
            except PlanEditError as exc:
                self.message.emit(str(exc))

