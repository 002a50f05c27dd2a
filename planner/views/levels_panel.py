"""Levels panel: propose and relabel the vertebral levels, flag them, and record the endplate findings.

A standalone QWidget on a :class:`planner.session.Session`; it owns no data. Every change goes
through :class:`planner.document.PlanDocument` edit methods (undoable) and the panel redraws on
``document.changed``.

Hint clicks (MRI: inside two bodies, S1 and L1 or L5 and L1; none for a proposal counted from the sacrum)
--------------------------------------------------------------------------------------------------------
``panel.request_hint("S1")`` (or the "Mark S1" button) puts the panel in hint mode and emits
:attr:`LevelsPanel.hint_requested` with the level name. The main window then arms a marking mode
in the slice views (``ViewContext.request_point``): the next left click, whatever the tool, calls
``panel.provide_hint(point_lps)``. Moving the crosshair never sets a hint.

``panel.cancel_hint()`` (or Esc in the panel or a view) leaves hint mode and emits
:attr:`hint_cancelled`. :attr:`hint_changed` is emitted with the current hints after each change,
e.g. for drawing them in the views.

Keyboard (the list has the focus; shown in its tooltip)
-------------------------------------------------------
Up/Down move between endplates; 0 none, 1, 2, 3 the Modic type, 4 mixed 1/2, 5 mixed 2/3;
A, B, C the grade; P painful; T treat; Enter accepts the assistant's suggestion; Esc cancels a hint.
"""

from __future__ import annotations

from html import escape
from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from planner.document import Part, PlanChange, PlanEditError
from planner.levels import landmark_label, not_measured
from planner.plan import Level, ModicSuggestion
from planner.session import Session
from planner.views.background import ProgressDialogOwner
from planner.views.panel import PlanPanel

MODIC_TYPES = ("none", "1", "2", "3", "1/2", "2/3")
GRADES = ("", "A", "B", "C")
TYPE_KEYS = {Qt.Key.Key_0: "none", Qt.Key.Key_1: "1", Qt.Key.Key_2: "2", Qt.Key.Key_3: "3", Qt.Key.Key_4: "1/2",
             Qt.Key.Key_5: "2/3"}
GRADE_KEYS = {Qt.Key.Key_A: "A", Qt.Key.Key_B: "B", Qt.Key.Key_C: "C"}
KEY_HELP = ("Keys: Up/Down next endplate; 0 none, 1/2/3 Modic type, 4 mixed 1/2, 5 mixed 2/3; "
            "A/B/C grade; P painful; T treat; Enter accept the suggestion")
TRANSITIONAL_CHOICES = (("Usual anatomy (L1-L5)", None), ("Transitional L6 (six lumbar)", "L6"),
                        ("Sacralised L5", "sacralised_L5"))
#: The bodies a mark can name on MRI: two of them (S1 and L1, or L5 and L1 when S1 is out of view).
HINT_NAMES = ("S1", "L5", "L1")
#: The other bodies a mark can name, from the "Mark other" menu: a CT or MRI that shows none of the above (a few
#: vertebrae only, e.g. L2-L4) is named from a mark in any body it shows.
OTHER_HINT_NAMES = ("T12", "L2", "L3", "L4")


def _type_label(t: str) -> str:
    return "none" if t == "none" else f"type {t}"


def _suggestion_html(sug: Optional[ModicSuggestion]) -> str:
    if sug is None:
        return "<i>No suggestion yet (run the Modic assistant).</i>"
    ratios = ", ".join(f"{k} {v:.2f}" for k, v in sug.ratios.items())
    region = ""
    if sug.region_center_lps is not None and sug.region_half_size_mm is not None:
        c = ", ".join(f"{v:.1f}" for v in sug.region_center_lps)
        h = ", ".join(f"{v:.1f}" for v in sug.region_half_size_mm)
        region = f"<br>Region: centre ({c}) mm, half-size ({h}) mm (LPS)"
    grade = f", grade {sug.grade}" if sug.grade else ""
    share = f", {sug.share_pct:.0f}% of the endplate" if sug.share_pct is not None else ""
    return (f"<b>Suggested: {_type_label(sug.modic_type)}{grade}{share}</b><br>Ratios to normal marrow: {ratios}"
            f"{region}<br><small>{escape(sug.explanation)}</small>")


class _LevelTree(QTreeWidget):
    """The level list; forwards the quick-entry keys to the panel."""

    def __init__(self, panel: "LevelsPanel") -> None:
        super().__init__()
        self._panel = panel

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt naming)
        if not self._panel.handle_key(event.key(), event.modifiers()):
            super().keyPressEvent(event)


class LevelsPanel(ProgressDialogOwner, PlanPanel):
    """Vertebral levels, their flags and endplate findings, with the proposal and the Modic assistant."""

    #: Hint mode started for a level name; slice views may arm a click and call provide_hint().
    hint_requested = Signal(str)
    #: Hint mode ended (a point was given, or it was cancelled).
    hint_cancelled = Signal()
    #: The hints changed: dict name -> (x, y, z) LPS.
    hint_changed = Signal(dict)
    #: The user selected a level (id) or an endplate (id, "superior"/"inferior"); views may jump there.
    selection_changed = Signal(str, str)

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self._updating = False
        self.hints: dict[str, tuple[float, float, float]] = {}
        self.pending_hint: Optional[str] = None
        self._selection: tuple[str, str] = ("", "")

        # --- proposal row
        self.propose_button = QPushButton("Propose levels")
        self.propose_button.setToolTip("Find the levels T12-S1 and their landmarks on the labelling image: no click "
                                       "on CT; on MRI mark points inside two bodies first (S1 and L1, or L5 and L1), or none "
                                       "for a proposal counted from the sacrum")
        self.propose_button.clicked.connect(self.propose)
        self.anatomy = QComboBox()
        for text, value in TRANSITIONAL_CHOICES:
            self.anatomy.addItem(text, value)
        self.anatomy.setToolTip("Say so when the spine is transitional: six lumbar vertebrae (L6) or a sacralised L5")
        self.hint_buttons: dict[str, QPushButton] = {}
        hint_row = QHBoxLayout()
        for name in HINT_NAMES:
            b = QPushButton(f"Mark {name}")
            b.setCheckable(True)
            b.setToolTip(f"Then click inside the {name} body in a slice view (MRI; on CT where the sacrum is "
                         "out of view; Esc cancels)")
            b.clicked.connect(lambda checked, n=name: self.request_hint(n) if checked else self.cancel_hint())
            self.hint_buttons[name] = b
            hint_row.addWidget(b)
        self.other_mark_button = QPushButton("Mark other")
        self.other_mark_button.setToolTip("Mark another body (T12, L2, L3 or L4), then click inside it in a slice "
                                          "view: for an image that shows neither S1, L5 nor L1 (Esc cancels)")
        menu = QMenu(self.other_mark_button)
        self.other_mark_actions = {n: menu.addAction(f"Mark {n}") for n in OTHER_HINT_NAMES}
        for n, action in self.other_mark_actions.items():
            action.triggered.connect(lambda _checked=False, n=n: self.request_hint(n))
        self.other_mark_button.setMenu(menu)
        hint_row.addWidget(self.other_mark_button)
        self.clear_hints_button = QPushButton("Clear marks")
        self.clear_hints_button.setToolTip("Forget the marks")
        self.clear_hints_button.clicked.connect(self.clear_hints)
        hint_row.addWidget(self.clear_hints_button)
        hint_row.addStretch(1)
        self.hint_label = QLabel()
        self.hint_label.setWordWrap(True)

        # --- the list
        self.tree = _LevelTree(self)
        self.tree.setColumnCount(5)
        self.tree.setHeaderLabels(["Level / endplate", "Modic", "Grade", "Share", "Assistant"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.tree.setToolTip(KEY_HELP)
        self.tree.currentItemChanged.connect(self._current_changed)

        self.up_button = QPushButton("Names up")
        self.up_button.setToolTip("Rename every level one step cranial (L5 becomes L4, S1 becomes L5)")
        self.up_button.clicked.connect(lambda: self.shift_names(-1))
        self.down_button = QPushButton("Names down")
        self.down_button.setToolTip("Rename every level one step caudal (L4 becomes L5, L5 becomes S1)")
        self.down_button.clicked.connect(lambda: self.shift_names(+1))
        self.delete_button = QPushButton("Delete level")
        self.delete_button.setToolTip("Remove the selected level and its trajectories (undoable)")
        self.delete_button.clicked.connect(self.delete_selected)

        # --- level details
        self.painful = QCheckBox("Painful")
        self.painful.setToolTip("The patient's pain is attributed to this level (key P)")
        self.treat = QCheckBox("Treat")
        self.treat.setToolTip("Plan an ablation of this vertebral body (key T)")
        self.prior = QCheckBox("Ablated before")
        self.prior.setToolTip("This vertebral body was ablated in an earlier procedure (payer lifetime limit)")
        for box, name in ((self.painful, "painful"), (self.treat, "treat"), (self.prior, "prior_ablation")):
            box.toggled.connect(lambda on, n=name: self._set_level_field(n, on))
        self.notes = QLineEdit()
        self.notes.setPlaceholderText("Notes on this level")
        self.notes.setToolTip("Free notes on the level (saved when you press Enter or leave the field)")
        self.notes.editingFinished.connect(self._notes_done)
        level_box = QGroupBox("Level")
        lf = QVBoxLayout(level_box)
        flags = QHBoxLayout()
        for w in (self.painful, self.treat, self.prior):
            flags.addWidget(w)
        flags.addStretch(1)
        lf.addLayout(flags)
        lf.addWidget(self.notes)
        self.missing = QLabel()
        self.missing.setWordWrap(True)
        self.missing.setVisible(False)
        lf.addWidget(self.missing)
        self.level_box = level_box

        # --- endplate details
        self.type_combo = QComboBox()
        for t in MODIC_TYPES:
            self.type_combo.addItem(_type_label(t), t)
        self.type_combo.setToolTip("Modic type of this endplate (keys 0-5)")
        self.type_combo.activated.connect(lambda i: self.set_finding(modic_type=self.type_combo.itemData(i)))
        self.grade_combo = QComboBox()
        for g in GRADES:
            self.grade_combo.addItem(g or "-", g or None)
        self.grade_combo.setToolTip("Extent grade by height: A < 25%, B 25-50%, C > 50% of the body height "
                                    "(Udby 2022; cut-offs in the settings) (keys A/B/C)")
        self.grade_combo.activated.connect(lambda i: self.set_finding(grade=self.grade_combo.itemData(i)))
        self.share = QDoubleSpinBox()
        self.share.setRange(0, 100)
        self.share.setDecimals(0)
        self.share.setSuffix(" %")
        self.share.setToolTip("Share of the endplate area involved")
        self.share.editingFinished.connect(lambda: self.set_finding(share_pct=float(self.share.value())))
        self.suggestion = QLabel()
        self.suggestion.setWordWrap(True)
        self.suggestion.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.confirm_button = QPushButton("Confirm suggestion")
        self.confirm_button.setToolTip("Accept the assistant's type, grade and share as your finding (Enter)")
        self.confirm_button.clicked.connect(self.confirm_selected)
        self.assistant_button = QPushButton("Run Modic assistant")
        self.assistant_button.setToolTip("Measure T1/T2/STIR signal next to each endplate and suggest type and grade; "
                                         "needs T1 and T2 in one frame of reference. You confirm or change it. "
                                         "It runs by itself after 'Propose levels' only when 'Automated Modic "
                                         "suggestion' is on in the settings (off by default).")
        self.assistant_button.clicked.connect(self.run_assistant)
        self.status = QLabel()
        ep_box = QGroupBox("Endplate")
        ef = QFormLayout(ep_box)
        ef.addRow("Modic type", self.type_combo)
        ef.addRow("Grade", self.grade_combo)
        ef.addRow("Share", self.share)
        ef.addRow(self.status)
        ef.addRow(self.suggestion)
        eb = QHBoxLayout()
        eb.addWidget(self.confirm_button)
        eb.addStretch(1)
        ef.addRow(eb)
        self.endplate_box = ep_box

        top = QHBoxLayout()
        top.addWidget(self.propose_button)
        top.addWidget(self.anatomy, 1)
        rel = QHBoxLayout()
        rel.addWidget(self.up_button)
        rel.addWidget(self.down_button)
        rel.addWidget(self.delete_button)
        rel.addStretch(1)
        rel.addWidget(self.assistant_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(hint_row)
        lay.addWidget(self.hint_label)
        self.warnings = QLabel()
        self.warnings.setObjectName("levelWarnings")
        self.warnings.setWordWrap(True)
        self.warnings.setTextFormat(Qt.TextFormat.RichText)
        self.warnings.setVisible(False)
        lay.addWidget(self.warnings)
        lay.addWidget(self.tree, 1)
        lay.addLayout(rel)
        lay.addWidget(level_box)
        lay.addWidget(ep_box)

        self.subscribe(session.document.changed, self._on_changed)
        self.refresh()

    # ------------------------------------------------------------------ helpers
    def selected_level(self) -> Optional[Level]:
        lid = self._selection[0]
        if not lid:
            return None
        try:
            return self.document.plan.level(lid)
        except KeyError:
            return None

    def selected_endplate(self) -> Optional[tuple[str, str]]:
        lid, which = self._selection
        return (lid, which) if lid and which else None

    def select(self, level_id: str, which: str = "") -> None:
        """Select a level (``which`` empty) or one of its endplates in the list."""
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top.data(0, Qt.ItemDataRole.UserRole) != (level_id, ""):
                continue
            item = top
            for k in range(top.childCount()):
                if top.child(k).data(0, Qt.ItemDataRole.UserRole) == (level_id, which):
                    item = top.child(k)
            self.tree.setCurrentItem(item)
            return

    # ------------------------------------------------------------------ model -> view
    def _on_changed(self, change: PlanChange) -> None:
        if self.closed:
            return
        if change.touches(Part.LEVELS, Part.SETTINGS):
            self.refresh()

    def refresh(self) -> None:
        if self.closed:
            return
        self._updating = True
        try:
            plan = self.document.plan
            keep = self._selection
            self.tree.clear()
            for lv in plan.levels:
                flags = [f for f, on in (("painful", lv.painful), ("treat", lv.treat),
                                         ("ablated before", lv.prior_ablation)) if on]
                missing = ", ".join(landmark_label(n) for n in not_measured(lv.landmarks))
                top = QTreeWidgetItem([lv.name + (f"  ({', '.join(flags)})" if flags else ""), "", "", "",
                                       f"not measured: {missing}; place by hand" if missing else ""])
                top.setData(0, Qt.ItemDataRole.UserRole, (lv.id, ""))
                top.setToolTip(0, lv.notes or KEY_HELP)
                if missing:
                    top.setToolTip(4, f"{lv.name}: {missing} could not be measured on the image; place by hand")
                if lv.treat:
                    font = top.font(0)
                    font.setBold(True)
                    top.setFont(0, font)
                self.tree.addTopLevelItem(top)
                for which in ("superior", "inferior"):
                    f = getattr(lv, which)
                    sug = f.suggestion
                    sug_text = ""
                    if sug is not None:
                        sug_text = _type_label(sug.modic_type) + (f" {sug.grade}" if sug.grade else "")
                        sug_text += "  (confirmed)" if f.confirmed else "  (to confirm)"
                    elif f.confirmed:
                        sug_text = "set by the physician"
                    child = QTreeWidgetItem([f"{which} endplate", _type_label(f.modic_type), f.grade or "",
                                             "" if f.share_pct is None else f"{f.share_pct:.0f}%", sug_text])
                    child.setData(0, Qt.ItemDataRole.UserRole, (lv.id, which))
                    child.setToolTip(4, sug.explanation if sug is not None else "")
                    top.addChild(child)
            self.tree.expandAll()
            for c in range(4):
                self.tree.resizeColumnToContents(c)
            self._selection = ("", "")
            if keep[0]:
                self.select(*keep)
            if not self._selection[0] and self.tree.topLevelItemCount():
                self.tree.setCurrentItem(self.tree.topLevelItem(0))
            self._update_details()
            self._update_hint_label()
            has_levels = bool(plan.levels)
            ro = self.document.read_only
            for b in (self.up_button, self.down_button, self.delete_button):
                b.setEnabled(has_levels and not ro)
            # review (read-only): nothing here may change the plan
            for b in (self.propose_button, self.assistant_button, self.clear_hints_button,
                      *self.hint_buttons.values(), self.other_mark_button):
                b.setEnabled(not ro)
            self.anatomy.setEnabled(not ro)
            if ro and self.pending_hint:
                self.cancel_hint()
        finally:
            self._updating = False

    def _current_changed(self, current: Optional[QTreeWidgetItem], _previous=None) -> None:
        data = current.data(0, Qt.ItemDataRole.UserRole) if current is not None else None
        self._selection = tuple(data) if data else ("", "")  # type: ignore[assignment]
        if not self._updating:
            self._update_details()
            self.selection_changed.emit(*self._selection)

    def _update_details(self) -> None:
        lv = self.selected_level()
        self.level_box.setEnabled(lv is not None and not self.document.read_only)
        was = self._updating
        self._updating = True
        try:
            for box, name in ((self.painful, "painful"), (self.treat, "treat"), (self.prior, "prior_ablation")):
                box.blockSignals(True)
                box.setChecked(bool(lv and getattr(lv, name)))
                box.blockSignals(False)
            if not (self.notes.hasFocus() and self.notes.isModified()):  # never overwrite what is being typed
                self.notes.setText(lv.notes if lv else "")
            missing = [] if lv is None else [landmark_label(n) for n in not_measured(lv.landmarks)]
            self.missing.setText(f"Not measured on the image: {', '.join(missing)}. Place by hand." if missing else "")
            self.missing.setVisible(bool(missing))
            ep = self.selected_endplate()
            self.endplate_box.setEnabled(ep is not None and not self.document.read_only)
            if lv is not None and ep is not None:
                f = getattr(lv, ep[1])
                self.endplate_box.setTitle(f"{lv.name} {ep[1]} endplate")
                self.type_combo.setCurrentIndex(MODIC_TYPES.index(f.modic_type))
                self.grade_combo.setCurrentIndex(GRADES.index(f.grade or ""))
                self.share.blockSignals(True)
                self.share.setValue(f.share_pct or 0.0)
                self.share.blockSignals(False)
                self.suggestion.setText(_suggestion_html(f.suggestion))
                self.confirm_button.setEnabled(f.suggestion is not None)
                self.status.setText("Confirmed by the physician" if f.confirmed else
                                    ("Suggestion waiting for confirmation" if f.suggestion else "Not reviewed"))
            else:
                self.endplate_box.setTitle("Endplate")
                self.suggestion.setText("")
                self.status.setText("")
                self.confirm_button.setEnabled(False)
        finally:
            self._updating = was

    # ------------------------------------------------------------------ view -> model: levels
    def propose(self) -> bool:
        """Run the level proposal on the labelling image and merge it into the plan (one undo step)."""
        from planner.levels import (LevelDetectionError, MarkError, labelling_volume,
                                    merge_proposal, propose_levels_detailed)

        chosen = labelling_volume(self.session)
        if chosen is None:
            self.message.emit("Load a CT or a sagittal MRI first")
            return False
        if self.busy:
            self.message.emit("The levels or the Modic findings are being read: wait, or cancel")
            return False
        key, volume = chosen
        others = [v for k, v in self.session.volumes().items() if k != key]  # e.g. an axial stack
        hints, transitional = dict(self.hints) or None, self.anatomy.currentData()
        try:
            result, cancelled = self.run_modal(
                self.window(), "Propose levels", "Finding the vertebral bodies and naming the levels...",
                lambda _progress, _cancel: propose_levels_detailed(volume, hints, transitional=transitional,
                                                                   companions=others))
        except MarkError as exc:
            # shown where the physician marks, until the next proposal
            self.show_warnings([f"Check the marks: {exc}"])
            self.message.emit(f"Check the marks: {exc}")
            return False
        except LevelDetectionError as exc:
            text = str(exc)
            if not self.hints and (volume.info.modality or "").upper() != "CT":
                text += ". On MRI, mark points inside two bodies (S1 and L1, or L5 and L1) and propose again."
            # shown above the list until the next proposal (the status bar's message passes), in place of the last
            # proposal's warnings
            self.show_warnings([f"Levels not found: {text}"])
            self.message.emit(f"Levels not found: {text}")
            return False
        if cancelled:
            self.message.emit("Level proposal cancelled; the plan is unchanged")
            return False
        merged = merge_proposal(self.document.plan.levels, result.levels)
        if not self._edit(self.document.replace_levels, merged, "Propose levels"):
            return False
        self.show_warnings(result.warnings + result.notes)
        names = ", ".join(lv.name for lv in result.levels)
        self.message.emit("".join(f"{w}. " for w in result.warnings)
                          + f"Proposed {len(result.levels)} levels ({names}) on {result.modality}"
                          + ("; " + "; ".join(result.notes) if result.notes else ""))
        if self.document.plan.settings.modic_assistant_enabled:
            from planner.modic import volumes_for

            vols = volumes_for(self.session)
            if "T1" in vols and "T2" in vols:
                self.run_assistant()
        return True

    def show_warnings(self, notes: Sequence[str]) -> None:
        """The level finder's warnings for the last proposal (wrong or doubtful marks, landmarks to check),
        shown above the list until the next proposal; hidden when there are none."""
        self.warnings.setText("<br>".join(f"&#9888; {escape(n)}" for n in notes))
        self.warnings.setVisible(bool(notes))

    def shift_names(self, steps: int) -> bool:
        """Rename every level ``steps`` places (+1 caudal, -1 cranial), one undo step."""
        from planner.levels import relabel_levels

        levels = self.document.plan.levels
        try:
            new = relabel_levels(levels, steps)
        except ValueError as exc:
            self.message.emit(str(exc))
            return False
        return self._edit(self.document.replace_levels, new, "Shift level names " + ("down" if steps > 0 else "up"))

    def delete_selected(self) -> bool:
        lv = self.selected_level()
        if lv is None:
            return False
        return self._edit(self.document.remove_level, lv.id)

    def _set_level_field(self, name: str, value: bool) -> None:
        lv = self.selected_level()
        if lv is None or self._updating:
            return
        if getattr(lv, name) != value:
            self._edit(self.document.set_level_fields, lv.id, **{name: value})

    def _notes_done(self) -> None:
        self.notes.setModified(False)
        lv = self.selected_level()
        if lv is not None and self.notes.text() != lv.notes:
            self._edit(self.document.set_level_fields, lv.id, notes=self.notes.text())

    def toggle_flag(self, name: str) -> bool:
        lv = self.selected_level()
        if lv is None:
            return False
        return self._edit(self.document.set_level_fields, lv.id, **{name: not getattr(lv, name)})

    # ------------------------------------------------------------------ view -> model: endplates
    def set_finding(self, **fields) -> bool:
        """Set the physician's finding on the selected endplate (marks it confirmed)."""
        ep = self.selected_endplate()
        if ep is None or self._updating:
            return False
        if fields.get("modic_type") == "none":
            fields.update(grade=None, share_pct=None)
        return self._edit(self.document.set_endplate, ep[0], ep[1], confirmed=True, **fields)

    def confirm_selected(self) -> bool:
        from planner.modic import ModicError, confirm_suggestion

        ep = self.selected_endplate()
        if ep is None:
            return False
        try:
            confirm_suggestion(self.document, *ep)
        except (ModicError, PlanEditError) as exc:
            self.message.emit(str(exc))
            return False
        return True

    def run_assistant(self) -> bool:
        """Suggest type, grade and share for every endplate (one undo step); decisions stay as they are."""
        from planner.modic import ModicError, apply_suggestions, run_plan, volumes_for

        if self.busy:
            self.message.emit("The levels or the Modic findings are being read: wait, or cancel")
            return False
        vols = volumes_for(self.session)
        plan = self.document.plan
        try:
            run, cancelled = self.run_modal(self.window(), "Modic assistant", "Reading the endplates on the images...",
                                            lambda _progress, _cancel: run_plan(plan, vols))
        except ModicError as exc:
            self.message.emit(f"Modic assistant: {exc}")
            return False
        if cancelled:
            self.message.emit("Modic assistant cancelled; the plan is unchanged")
            return False
        suggestions = run.suggestions
        if not suggestions:
            self.message.emit("Modic assistant: no level with complete landmarks inside the T1/T2 images")
            return False
        try:
            apply_suggestions(self.document, suggestions)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            return False
        found = sum(1 for s in suggestions.values() if s.modic_type != "none")
        not_read = run.not_read_text(self.document.plan)
        self.message.emit(f"Modic assistant: {len(suggestions)} endplates measured, {found} with a suggested "
                          "Modic change; confirm or change each one"
                          + (f". Not read (decide from the images): {not_read}" if not_read else ""))
        return True

    # ------------------------------------------------------------------ keyboard
    def handle_key(self, key: int, modifiers=Qt.KeyboardModifier.NoModifier) -> bool:
        """Quick entry while the list has the focus; returns True when the key was used."""
        if modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return False
        if key == Qt.Key.Key_Escape and self.pending_hint:
            self.cancel_hint()
            return True
        if key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            return self.move_endplate(-1 if key == Qt.Key.Key_Up else +1)
        if key in TYPE_KEYS:
            return self.set_finding(modic_type=TYPE_KEYS[key]) if self.selected_endplate() else False
        if key in GRADE_KEYS:
            return self.set_finding(grade=GRADE_KEYS[key]) if self.selected_endplate() else False
        if key == Qt.Key.Key_P:
            return self.toggle_flag("painful")
        if key == Qt.Key.Key_T:
            return self.toggle_flag("treat")
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return self.confirm_selected()
        return False

    def endplate_order(self) -> list[tuple[str, str]]:
        return [(lv.id, which) for lv in self.document.plan.levels for which in ("superior", "inferior")]

    def move_endplate(self, step: int) -> bool:
        order = self.endplate_order()
        if not order:
            return False
        lid, which = self._selection
        if (lid, which) in order:
            i = order.index((lid, which)) + step
        elif lid:
            i = next((k for k, (l2, _) in enumerate(order) if l2 == lid), 0) + (0 if step > 0 else -1)
        else:
            i = 0
        i = max(0, min(len(order) - 1, i))
        self.select(*order[i])
        return True

    # ------------------------------------------------------------------ hints
    def request_hint(self, name: str) -> None:
        """Enter hint mode for ``name``; the next provided point (or crosshair move) becomes that hint."""
        self.pending_hint = name
        for n, b in self.hint_buttons.items():
            b.blockSignals(True)
            b.setChecked(n == name)
            b.blockSignals(False)
        self._update_hint_label()
        self.hint_requested.emit(name)

    def provide_hint(self, point_lps: Sequence[float]) -> bool:
        """Deliver the clicked point (LPS mm) for the pending hint. Returns False when none is pending."""
        if not self.pending_hint:
            return False
        p = np.asarray(point_lps, dtype=float).reshape(3)
        if not np.all(np.isfinite(p)):
            return False
        self.hints[self.pending_hint] = (float(p[0]), float(p[1]), float(p[2]))
        self.message.emit(f"{self.pending_hint} marked at ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm")
        self.cancel_hint()
        self.hint_changed.emit(dict(self.hints))
        return True

    def cancel_hint(self) -> None:
        was = self.pending_hint
        self.pending_hint = None
        for b in self.hint_buttons.values():
            b.blockSignals(True)
            b.setChecked(False)
            b.blockSignals(False)
        self._update_hint_label()
        if was:
            self.hint_cancelled.emit()

    def clear_hints(self) -> None:
        self.hints.clear()
        self.cancel_hint()
        self.hint_changed.emit({})

    def _update_hint_label(self) -> None:
        parts = [f"{n} at ({', '.join(f'{v:.0f}' for v in p)})" for n, p in self.hints.items()]
        text = ("Marks: " + "; ".join(parts) if parts else
                "No marks (CT needs none unless the sacrum is out of view; MRI: mark two bodies, e.g. S1 and L1, "
                "or propose without marks)")
        if self.pending_hint:
            text = f"<b>Click inside {self.pending_hint} in a slice view</b> (Esc cancels). " + text
        self.hint_label.setText(text)



__all__ = ["LevelsPanel", "KEY_HELP"]

if __name__ == "__main__":  # pragma: no cover - manual look
    import sys

    app = QApplication(sys.argv)
    w = LevelsPanel(Session())
    w.show()
    app.exec()
