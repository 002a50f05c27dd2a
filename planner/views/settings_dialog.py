"""Edit > Preferences: the planning settings of the open plan, each with its unit, confidence tag and
source (planner.settings), editable, validated, and applied as one undoable plan edit.

The settings are saved with the plan, so a reviewer sees which thresholds applied; per-trajectory
values (zone size, margins...) are changed in the Trajectories panel. A read-only (review) plan shows
the settings without editing.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Optional

from pydantic import ValidationError
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from planner.settings import PlanningSettings

COLUMNS = ("Setting", "Value", "Unit", "Tag", "Source")
TAG_TEXT = {"[C]": "confirmed in the cited source", "[S]": "secondary source",
            "[U]": "unconfirmed: check against the device instructions for use", "design": "a product decision"}


def _choices(name: str) -> Optional[list[str]]:
    """The allowed values of a Literal or bool setting, else None."""
    ann = PlanningSettings.model_fields[name].annotation
    if ann is bool:
        return ["yes", "no"]
    if typing.get_origin(ann) is typing.Literal:
        return [str(v) for v in typing.get_args(ann)]
    return None


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_value(name: str, text: str) -> Any:
    """The value typed for setting ``name`` (validated later by the settings model)."""
    ann = PlanningSettings.model_fields[name].annotation
    text = text.strip()
    if ann is bool:
        return text.lower() in ("yes", "true", "1", "on")
    origin = typing.get_origin(ann)
    if origin in (list, dict):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("write it as in the table, for example [\"L3\", \"L4\"] or {\"L4\": 12.5}") from None
    return text


class SettingsDialog(QDialog):
    """The planning settings of ``document``'s plan (see the module text)."""

    def __init__(self, document: Any, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.document = document
        self.read_only = bool(document.read_only)
        self.setWindowTitle("Planning settings" + (" (read-only review)" if self.read_only else ""))
        self.resize(1100, 640)
        self.rows = PlanningSettings.describe()
        lay = QVBoxLayout(self)
        intro = QLabel("Every clinical number the planner uses, with its source. The values are saved with this "
                       "plan; per-trajectory values are changed in the Trajectories panel. Tags: [C] confirmed in "
                       "the cited source, [S] secondary source, [U] unconfirmed, design: a product decision.", self)
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter settings (name, unit or source)\u2026")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._filter)
        lay.addWidget(self.filter_edit)
        t = self.table = QTableWidget(len(self.rows), len(COLUMNS), self)
        t.setHorizontalHeaderLabels(COLUMNS)
        t.verticalHeader().setVisible(False)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setWordWrap(True)
        hh = t.horizontalHeader()
        for col, mode in enumerate((QHeaderView.ResizeMode.ResizeToContents, QHeaderView.ResizeMode.Interactive,
                                    QHeaderView.ResizeMode.ResizeToContents,
                                    QHeaderView.ResizeMode.ResizeToContents, QHeaderView.ResizeMode.Stretch)):
            hh.setSectionResizeMode(col, mode)
        t.setColumnWidth(1, 200)
        self.combos: dict[str, QComboBox] = {}
        current = document.plan.settings
        for row, info in enumerate(self.rows):
            name = info["name"]
            label = QTableWidgetItem(info.get("label") or name)
            label.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            label.setToolTip(f"{name}\nDefault: {format_value(info['default'])}")
            t.setItem(row, 0, label)
            value = format_value(getattr(current, name))
            choices = _choices(name)
            if choices is not None:
                combo = QComboBox(t)
                combo.addItems(choices)
                combo.setCurrentText(value)
                combo.setEnabled(not self.read_only)
                self.combos[name] = combo
                t.setCellWidget(row, 1, combo)
            item = QTableWidgetItem(value)
            flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
            if not self.read_only and choices is None:
                flags |= Qt.ItemFlag.ItemIsEditable
            item.setFlags(flags)
            item.setToolTip("Double-click to edit" if flags & Qt.ItemFlag.ItemIsEditable else "")
            t.setItem(row, 1, item)
            for col, text, tip in ((2, info.get("unit", ""), ""), (3, info.get("tag", ""), TAG_TEXT.get(info.get("tag", ""), "")),
                                   (4, info.get("source", ""), info.get("source", ""))):
                it = QTableWidgetItem(text)
                it.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                it.setToolTip(tip)
                t.setItem(row, col, it)
        t.resizeRowsToContents()
        lay.addWidget(t, 1)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        lay.addWidget(self.message)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close if self.read_only else
                                   QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        defaults = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        if defaults is not None:
            defaults.setToolTip("Put every value back to its default (applied with OK)")
            defaults.clicked.connect(self.restore_defaults)
        self.buttons = buttons
        lay.addWidget(buttons)

    # ------------------------------------------------------------------ values
    def row_of(self, name: str) -> int:
        return next(i for i, r in enumerate(self.rows) if r["name"] == name)

    def set_text(self, name: str, text: str) -> None:
        """Type ``text`` as the value of ``name`` (as the user does in the table)."""
        if name in self.combos:
            self.combos[name].setCurrentText(text)
        else:
            self.table.item(self.row_of(name), 1).setText(text)

    def text_of(self, name: str) -> str:
        if name in self.combos:
            return self.combos[name].currentText()
        return self.table.item(self.row_of(name), 1).text()

    def restore_defaults(self) -> None:
        for info in self.rows:
            self.set_text(info["name"], format_value(info["default"]))
        self.message.setText("Defaults restored; OK applies them to this plan.")

    def edited_settings(self) -> PlanningSettings:
        """The settings as typed; raises ValueError naming the setting and the problem."""
        current = self.document.plan.settings
        values = current.model_dump()
        for info in self.rows:
            name = info["name"]
            text = self.text_of(name)
            if text == format_value(getattr(current, name)):
                continue
            label = info.get("label") or name
            try:
                values[name] = parse_value(name, text)
            except ValueError as exc:
                raise ValueError(f"{label}: '{text}' is not valid: {exc}") from None
        try:
            return PlanningSettings.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                name = str(err["loc"][0]) if err.get("loc") else ""
                label = next((r.get("label") or name for r in self.rows if r["name"] == name), name)
                problems.append(f"{label}: {err['msg']}")
            raise ValueError("; ".join(problems)) from None

    def accept(self) -> None:
        if self.read_only:
            super().accept()
            return
        try:
            new = self.edited_settings()
        except ValueError as exc:
            self.message.setText(f"Not applied. {exc}")
            self.message.setStyleSheet("color: #e57373;")
            return
        if new != self.document.plan.settings:
            self.document.set_settings(new)
        super().accept()

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        for row, info in enumerate(self.rows):
            hay = " ".join(str(info.get(k, "")) for k in ("name", "label", "unit", "source", "tag")).lower()
            self.table.setRowHidden(row, not all(w in hay for w in words))
