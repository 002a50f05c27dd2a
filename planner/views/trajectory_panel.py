"""Trajectory panel: trajectories per level, suggestions, per-trajectory parameters, live metrics and
checks, and the override reason.

A standalone QWidget on a :class:`planner.session.Session`. It shows the model and sends edits to it:

* suggestions (left, right, bipedicular) for levels marked *treat*, searched by
  :func:`planner.suggest.suggest_checked` so that they pass the image checks (or a message says why
  none does and what is proposed instead), added with ``PlanDocument.add_trajectory``;
* per-trajectory parameters (zone diameter, curved or straight, curve radius, instrument diameters,
  canal margin) through ``set_trajectory_params`` (each field's setting and source in its tooltip);
* the metrics and checks of :func:`planner.checks.evaluate_trajectory` (with the session's images:
  the image checks measure the path on them), read from the session's results
  (``session.results.report``, the values the views and the documents show), coloured by status
  (unverified in amber), with the reason, how it was obtained and the source in tooltips;
* the physician's override reason through ``set_trajectory_fields``: required before export when a
  check fails or is unverified, and the panel says so.

Every edit is undoable; the panel refreshes on ``document.changed`` and follows
``Session.active_trajectory`` (and sets it when the user selects a trajectory). While a handle is
dragged only the reports of the moved trajectory and its partner on the same level are recomputed
(each once per edit, by the session's results), and the tables are updated in place (a drag stays within the frame budget).
"""

from __future__ import annotations

import html
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
        QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from planner.checks import FAIL, PASS, UNVERIFIED, WARNING, TrajectoryReport, depth_margin_of
from planner.display.fields import field_range
from planner.document import Part, PlanChange, PlanEditError
from planner.plan import Level, Trajectory, TrajectoryParams
from planner.session import Session
from planner.settings import PlanningSettings
from planner.trajectory import (
    LandmarkError,
    PathError,
    trajectory_path,
)
from planner.suggest import SuggestionCancelled, suggest_bipedicular_checked, suggest_checked
from planner.views.background import ProgressDialogOwner
from planner.views.panel import PlanPanel

STATUS_COLOR = {PASS: "#4caf50", WARNING: "#ff9800", UNVERIFIED: "#ffb300", FAIL: "#e53935"}
STATUS_WORD = {PASS: "pass", WARNING: "warning", UNVERIFIED: "unverified", FAIL: "FAIL"}

#: Editable numeric parameters: field -> (label, unit, decimals, minimum, maximum, step).
#: The numeric trajectory parameters: (label, unit, decimals, step). Their ranges are the plan model's
#: (:class:`planner.plan.TrajectoryParams`, read by :func:`planner.display.fields.field_range`).
NUMERIC_PARAMS: dict[str, tuple[str, str, int, float]] = {
    "zone_diameter_mm": ("Zone diameter", "mm", 1, 0.5),
    "cannula_curve_radius_mm": ("Curve radius", "mm", 1, 1.0),
    "introducer_diameter_mm": ("Introducer diameter", "mm", 2, 0.1),
    "cannula_diameter_mm": ("Cannula diameter", "mm", 2, 0.1),
    "probe_diameter_mm": ("Probe diameter", "mm", 2, 0.1),
    "canal_margin_mm": ("Canal margin (minimum)", "mm", 1, 0.5),
}


def setting_tooltip(name: str) -> str:
    """Tooltip of a per-trajectory parameter: its setting, default, tag and source."""
    field = PlanningSettings.model_fields.get(name)
    if field is None:
        return ""
    extra = field.json_schema_extra or {}
    default = PlanningSettings().__getattribute__(name)
    get = extra.get  # type: ignore[union-attr]
    return (f"<b>{get('label', name)}</b> (default {default} {get('unit', '')}, {get('tag', '')})<br>"
            f"Source: {get('source', '')}")


def _fmt(value: Optional[float], unit: str) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:z.1f} {unit}".strip()  # z: never "-0.0"


class TrajectoryPanel(ProgressDialogOwner, PlanPanel):
    """Trajectories per level with suggestions, parameters, metrics, checks and override reasons."""

    #: Extra width of the metrics' value column, so that longer values during a drag still fit.
    METRIC_VALUE_SLACK_PX = 28
    #: Rows of the trajectory list visible without scrolling.
    LIST_ROWS = 6
    #: The user selected a trajectory in the list (id, or "" for none); not emitted when the list only
    #: follows a selection made elsewhere (a click on a handle in a view).
    trajectory_selected = Signal(str)

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self._updating = False
        self._following = False
        self._selected: str = ""
        self._selected_level: str = ""
        #: Level id -> why the last suggestion for it found no path, and the level's landmarks then (shown
        #: with the level's row until a trajectory is added there or the landmarks move; the status bar's
        #: message is short-lived and cut to its width).
        self._refused: dict[str, tuple[str, dict]] = {}
        self.report: Optional[TrajectoryReport] = None
        #: The plan revision whose change this panel has handled (results dropped at another revision
        #: come with a plan change the panel handles itself).
        self._seen_revision = session.document.revision

        # --- the list: every trajectory of the case, and the treated levels that have none yet
        self.tree = QTreeWidget()
        self.tree.setObjectName("trajectoryList")
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Level", "Side", "Path", "Checks"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.tree.setToolTip("Every trajectory of the plan (level, side, path, checks) and the levels marked "
                             "'treat' without one; select a row to see its metrics and to follow it in the views")
        self.tree.currentItemChanged.connect(self._current_changed)
        row_h = self.tree.fontMetrics().height() + 8
        header_h = self.tree.header().sizeHint().height()
        self.tree.setMinimumHeight(header_h + self.LIST_ROWS * row_h + 2 * self.tree.frameWidth() + 4)
        #: Asks whether to replace a level's trajectories by a new suggestion (tests replace it).
        self.ask_replace = self._ask_replace_dialog

        self.suggest_left = QPushButton("Suggest left")
        self.suggest_left.setToolTip("Add a suggested trajectory through the left pedicle of the selected level "
                                     "(pedicle angle settings, curved cannula, target at the configured depth)")
        self.suggest_left.clicked.connect(lambda: self.suggest("left"))
        self.suggest_right = QPushButton("Suggest right")
        self.suggest_right.setToolTip("Add a suggested trajectory through the right pedicle of the selected level")
        self.suggest_right.clicked.connect(lambda: self.suggest("right"))
        self.suggest_bi = QPushButton("Bipedicular")
        self.suggest_bi.setToolTip("Add a left and a right straight trajectory with tips spaced by the "
                                   "bipedicular tip spacing setting (" + setting_tooltip("bipedicular_tip_spacing_mm")
                                   + ")")
        self.suggest_bi.clicked.connect(self.suggest_bipedicular)
        self.delete_button = QPushButton("Delete trajectory")
        self.delete_button.setToolTip("Remove the selected trajectory (undoable)")
        self.delete_button.clicked.connect(self.delete_selected)
        buttons = QHBoxLayout()
        for b in (self.suggest_left, self.suggest_right, self.suggest_bi):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)

        # --- parameters
        self.param_box = QGroupBox("Parameters")
        form = QFormLayout(self.param_box)
        self.curved = QCheckBox("Curved cannula")
        self.curved.setToolTip("Curved cannula from the bend point (on), or one straight path from the entry to "
                               "the target (off)<br>" + setting_tooltip("curve_start"))
        self.curved.toggled.connect(self._curved_toggled)
        form.addRow(self.curved)
        self.spins: dict[str, QDoubleSpinBox] = {}
        for name, (label, unit, dec, step) in NUMERIC_PARAMS.items():
            sp = QDoubleSpinBox()
            sp.setRange(*field_range(TrajectoryParams, name, dec))
            sp.setDecimals(dec)
            sp.setSingleStep(step)
            sp.setSuffix(f" {unit}")
            sp.setKeyboardTracking(False)
            sp.setToolTip(setting_tooltip(name))
            sp.editingFinished.connect(lambda n=name: self._param_done(n))
            form.addRow(label, sp)
            form.labelForField(sp).setToolTip(setting_tooltip(name))
            self.spins[name] = sp

        # --- metrics and checks
        self.metrics = QTableWidget(0, 2)
        self.metrics.setHorizontalHeaderLabels(["Metric", "Value"])
        self.metrics.verticalHeader().setVisible(False)
        self.metrics.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        # sized when the rows change, not at every value change: ResizeToContents re-measures every
        # cell on each update, which made a drag repaint the table in about 30 ms
        self.metrics.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        self.metrics.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.checks = QTableWidget(0, 3)
        self.checks.setHorizontalHeaderLabels(["Status", "Check", "Reason"])
        self.checks.verticalHeader().setVisible(False)
        self.checks.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.checks.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.checks.setWordWrap(True)
        self.overall = QLabel()
        self.overall.setObjectName("trajectoryOverall")
        # depth and canal margin side by side, with the conflict between them explained (issue 12)
        self.depth_margin = QLabel()
        self.depth_margin.setObjectName("trajectoryDepthMargin")
        self.depth_margin.setWordWrap(True)
        self.depth_margin.setToolTip(setting_tooltip("canal_margin_from") + "<br><br>"
                                     + setting_tooltip("target_depth_pct"))

        # --- override reason
        self.override = QLineEdit()
        self.override.setPlaceholderText("Reason for going on despite a failing check")
        self.override.setToolTip("Recorded in the plan and printed next to each failing check in the exports; "
                                 "required before export when a check fails (saved on Enter or leaving the field)")
        self.override.editingFinished.connect(self._override_done)
        self.override_note = QLabel()
        self.override_note.setWordWrap(True)
        self.export_note = QLabel()
        self.export_note.setWordWrap(True)

        details = QWidget()
        dl = QVBoxLayout(details)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.overall)
        dl.addWidget(self.depth_margin)
        dl.addWidget(self.param_box)
        dl.addWidget(QLabel("Metrics"))
        dl.addWidget(self.metrics, 2)
        dl.addWidget(QLabel("Checks"))
        dl.addWidget(self.checks, 3)
        ov = QHBoxLayout()
        ov.addWidget(QLabel("Override reason:"))
        ov.addWidget(self.override, 1)
        dl.addLayout(ov)
        dl.addWidget(self.override_note)
        self.details = details

        lay = QVBoxLayout(self)
        lay.addWidget(self.tree)
        lay.addLayout(buttons)
        lay.addWidget(details, 1)
        lay.addWidget(self.export_note)

        self.subscribe(session.document.changed, self._on_changed)
        self.subscribe(session.active_trajectory_changed, self._on_active)
        self.subscribe(session.results.results_changed, self._on_results)
        self.refresh()

    # ------------------------------------------------------------------ helpers
    def selected_trajectory(self) -> Optional[Trajectory]:
        if not self._selected:
            return None
        try:
            return self.document.plan.trajectory(self._selected)
        except KeyError:
            return None

    def selected_level(self) -> Optional[Level]:
        traj = self.selected_trajectory()
        lid = traj.level_id if traj is not None else self._selected_level
        if not lid:
            return None
        try:
            return self.document.plan.level(lid)
        except KeyError:
            return None

    def rows(self) -> list[tuple[str, str]]:
        """(level id, trajectory id or "") of the list's rows, in order."""
        return [self.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) for i in range(self.tree.topLevelItemCount())]

    def select(self, trajectory_id: str = "", level_id: str = "") -> None:
        """Select a trajectory's row (or, with no ``trajectory_id``, the first row of ``level_id``)."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            lid, tid = item.data(0, Qt.ItemDataRole.UserRole)
            if (trajectory_id and tid == trajectory_id) or (not trajectory_id and lid == level_id):
                if self.tree.currentItem() is item and not self._updating:
                    # already shown (the first row after a load): the session follows anyway
                    self._current_changed(item)
                else:
                    self.tree.setCurrentItem(item)
                return

    def images(self) -> dict[str, Any]:
        return dict(self.session.images)

    def report_for(self, traj: Trajectory) -> TrajectoryReport:
        """The metrics and checks of ``traj``: the session's results (computed once per plan state)."""
        return self.session.results.report(traj.id)

    def export_blockers(self) -> list[str]:
        """Names ("L4 left") of trajectories with a failing check and no recorded reason."""
        plan = self.document.plan
        out = []
        for t in plan.trajectories:
            rep = self.report_for(t)
            if rep.needs_override:
                out.append(f"{rep.level_name} {t.side}")
        return out

    # ------------------------------------------------------------------ model -> view
    def _on_changed(self, change: PlanChange) -> None:
        if self.closed:
            return
        self._seen_revision = self.document.revision
        if change.list_changed(Part.TRAJECTORIES) or change.touches(Part.LEVELS, Part.SETTINGS):
            self.refresh()
        elif change.touches(Part.TRAJECTORIES):
            self._refresh_items()
            self._update_details()
            self._update_export_note()

    def _on_results(self, ids: frozenset) -> None:
        """Results dropped without a plan change (the loaded images changed): show the new ones."""
        if not self.closed and self.document.revision == self._seen_revision:
            self.refresh_when_visible()

    def _on_active(self, trajectory_id: Optional[str]) -> None:
        if self.closed or (trajectory_id or "") == self._selected:
            return
        if trajectory_id:
            self._following = True
            try:
                self.select(trajectory_id)
            finally:
                self._following = False

    def refresh(self) -> None:
        if self.closed:
            return
        self._updating = True
        try:
            plan = self.document.plan
            keep_t, keep_l = self._selected, self._selected_level
            self.tree.clear()
            bold = QFont(self.tree.font())
            bold.setBold(True)
            for lv in plan.levels:
                trajs = sorted(plan.trajectories_of(lv.id), key=lambda x: x.side)
                level_text = lv.name + ("" if lv.treat else " (not treated)")
                for t in trajs:
                    item = QTreeWidgetItem([level_text, t.side + ("  *" if t.label else ""), "", ""])
                    item.setData(0, Qt.ItemDataRole.UserRole, (lv.id, t.id))
                    item.setToolTip(1, f"Suggestion note: {t.label}" if t.label else "")
                    if lv.treat:
                        item.setFont(0, bold)
                    self.tree.addTopLevelItem(item)
                if trajs or (lv.id in self._refused and self._refused[lv.id][1] != lv.landmarks.model_dump()):
                    self._refused.pop(lv.id, None)
                if lv.treat and not trajs:
                    refused = self._refused.get(lv.id, ("", {}))[0]
                    item = QTreeWidgetItem([level_text, "\u2014", "", "no path suggested" if refused else
                                            "no trajectory yet"])
                    item.setData(0, Qt.ItemDataRole.UserRole, (lv.id, ""))
                    item.setToolTip(3, refused or "Choose Suggest left, Suggest right or Bipedicular")
                    if refused:
                        item.setForeground(3, QBrush(QColor(STATUS_COLOR[WARNING])))
                    item.setFont(0, bold)
                    self.tree.addTopLevelItem(item)
            self._refresh_items()
            for c in (0, 1, 2):
                self.tree.resizeColumnToContents(c)
            self._selected, self._selected_level = "", ""
            if keep_t:
                self.select(keep_t)
            if not self._selected and keep_l:
                self.select("", keep_l)
            if not self._selected and not self._selected_level and self.tree.topLevelItemCount():
                self.tree.setCurrentItem(self.tree.topLevelItem(0))
        finally:
            self._updating = False
        self._update_details()
        self._update_export_note()

    def _refresh_items(self) -> None:
        plan = self.document.plan
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            tid = item.data(0, Qt.ItemDataRole.UserRole)[1]
            if not tid:
                continue
            try:
                t = plan.trajectory(tid)
            except KeyError:
                continue
            rep = self.report_for(t)
            item.setText(2, "curved" if t.params.curved and t.bend_lps is not None else "straight")
            item.setText(3, STATUS_WORD[rep.overall] + ("  (reason recorded)" if rep.blocking and
                                                        t.override_reason.strip() else ""))
            item.setForeground(3, QBrush(QColor(STATUS_COLOR[rep.overall])))

    def _current_changed(self, current: Optional[QTreeWidgetItem], _previous=None) -> None:
        data = current.data(0, Qt.ItemDataRole.UserRole) if current is not None else None
        lid, tid = data if data else ("", "")
        self._selected, self._selected_level = tid, lid
        if self._updating:
            return
        self._update_details()
        self.session.set_active_trajectory(tid or None)
        if not self._following:
            self.trajectory_selected.emit(tid)

    def _show_params(self, params: TrajectoryParams, has_bend: bool) -> None:
        """The parameter box's values (``has_bend``: the path has a bend point, so the curve applies)."""
        self.curved.blockSignals(True)
        self.curved.setChecked(params.curved and has_bend)
        self.curved.blockSignals(False)
        for name, sp in self.spins.items():
            # not over what the physician is typing (a committed value shows the plan's: an undo)
            if not (sp.hasFocus() and sp.lineEdit().isModified()):
                sp.blockSignals(True)
                sp.setValue(float(getattr(params, name)))
                sp.blockSignals(False)
        self.spins["cannula_curve_radius_mm"].setEnabled(bool(params.curved and has_bend))

    def _update_details(self) -> None:
        traj = self.selected_trajectory()
        level = self.selected_level()
        ro = self.document.read_only
        can_suggest = level is not None and level.treat and not ro
        for b in (self.suggest_left, self.suggest_right, self.suggest_bi):
            b.setEnabled(bool(can_suggest))
        self.delete_button.setEnabled(traj is not None and not ro)
        self.param_box.setEnabled(traj is not None and not ro)
        self.override.setEnabled(traj is not None and not ro)
        was = self._updating
        self._updating = True
        try:
            if traj is None:
                self.report = None
                # the values a new path gets (Edit > Planning settings), not the spin boxes' lower limits
                self.param_box.setTitle("Parameters: the plan's defaults for a new path")
                self._show_params(TrajectoryParams.from_settings(self.document.plan.settings), True)
                self.metrics.setRowCount(0)
                self.checks.setRowCount(0)
                refused = self._refused.get(level.id, ("", {}))[0] if level is not None and level.treat else ""
                self.overall.setText(f"<b>{level.name}</b>: no path suggested" if refused else
                                     "Select a trajectory" if level is None or level.treat else
                                     f"{level.name} is not marked 'treat' in the levels step")
                self.override_note.setText("")
                self.depth_margin.setText(
                    f"<span style='color:{STATUS_COLOR[WARNING]}'>&#9888; {html.escape(refused)}</span>"
                    if refused else "")
                if not self.override.hasFocus():
                    self.override.setText("")
                return
            self.report = rep = self.report_for(traj)
            self.param_box.setTitle(f"Parameters: {rep.level_name} {traj.side}")
            self._show_params(traj.params, traj.bend_lps is not None)
            color = STATUS_COLOR[rep.overall]
            self.overall.setText(f"<b>{rep.level_name} {traj.side}</b>: checks "
                                 f"<span style='color:{color}'><b>{STATUS_WORD[rep.overall]}</b></span>")
            self._fill_depth_margin(traj, rep)
            self._fill_metrics(rep)
            self._fill_checks(rep)
            if not (self.override.hasFocus() and self.override.isModified()):
                self.override.setText(traj.override_reason)
            if rep.needs_override:
                what = "A check fails" if rep.failed else "A safety check is not measured on these images"
                self.override_note.setText(f"<span style='color:{STATUS_COLOR[FAIL]}'>{what}: record the "
                                           "reason for going on before exporting the plan.</span>")
            elif rep.blocking:
                self.override_note.setText("Failing or unverified checks; your reason is recorded and printed with "
                                           "them.")
            else:
                self.override_note.setText("")
        finally:
            self._updating = was

    @staticmethod
    def _item(table: QTableWidget, row: int, col: int) -> QTableWidgetItem:
        """The table's item at (row, col), created when missing (items are reused between updates:
        a drag refreshes the tables at every mouse move)."""
        it = table.item(row, col)
        if it is None:
            it = QTableWidgetItem()
            table.setItem(row, col, it)
        return it

    def _fill_depth_margin(self, traj: Trajectory, rep: TrajectoryReport) -> None:
        dm = depth_margin_of(self.document.plan, traj, rep)
        if dm is None:
            self.depth_margin.setText("")
            return
        depth_c = STATUS_COLOR[PASS if dm.depth_in_window else WARNING]
        margin_c = STATUS_COLOR[PASS if dm.margin_met else FAIL]
        lo, hi = dm.depth_window_pct
        from planner.checks import CANAL_MARGIN_WORDS

        text = (f"Depth <b style='color:{depth_c}'>{dm.depth_pct:.0f}%</b> of the AP depth (setting "
                f"{dm.depth_setting_pct:g}%, window {lo:g}-{hi:g}%) &middot; canal margin "
                f"<b style='color:{margin_c}'>{dm.canal_margin_mm:.1f} mm</b> from the "
                f"{CANAL_MARGIN_WORDS[dm.margin_from]}, {dm.margin_basis} (at least {dm.margin_required_mm:g} mm)")
        if dm.conflict:
            text += f"<br><span style='color:{STATUS_COLOR[WARNING]}'>&#9888; {dm.conflict}</span>"
        self.depth_margin.setText(text)

    def _fill_metrics(self, rep: TrajectoryReport) -> None:
        rows = [m for m in rep.metrics if m.value is not None or m.name.startswith("pedicle")]
        resize = self.metrics.rowCount() != len(rows)
        self.metrics.setRowCount(len(rows))
        for i, m in enumerate(rows):
            label = self._item(self.metrics, i, 0)
            value = self._item(self.metrics, i, 1)
            grade = ""
            if m.name.startswith("pedicle_clearance") and rep.pedicle is not None:
                g = rep.pedicle.grade.get(m.name.split("_")[2])
                grade = f"  (grade {g})" if g else ""
            text = _fmt(m.value, {"deg": "°"}.get(m.unit, m.unit)) + grade
            if label.data(Qt.ItemDataRole.UserRole) != m.name:
                label.setText(m.label)
                label.setData(Qt.ItemDataRole.UserRole, m.name)
                value.setData(Qt.ItemDataRole.UserRole, m.name)
                label.setToolTip(m.note or "")
                resize = True
            if value.text() != text:
                value.setText(text)
            if value.toolTip() != (m.note or ""):
                value.setToolTip(m.note or "")
                label.setToolTip(m.note or "")
        if resize:
            self.metrics.resizeRowsToContents()
            self.metrics.resizeColumnToContents(1)
            self.metrics.setColumnWidth(1, self.metrics.columnWidth(1) + self.METRIC_VALUE_SLACK_PX)

    def _fill_checks(self, rep: TrajectoryReport) -> None:
        resize = self.checks.rowCount() != len(rep.checks)
        self.checks.setRowCount(len(rep.checks))
        bold = QFont()
        bold.setBold(True)
        role = Qt.ItemDataRole.UserRole
        for i, c in enumerate(rep.checks):
            status = self._item(self.checks, i, 0)
            name = self._item(self.checks, i, 1)
            reason = self._item(self.checks, i, 2)
            if status.data(role) != c.status:
                status.setText(STATUS_WORD[c.status])
                status.setForeground(QBrush(QColor(STATUS_COLOR[c.status])))
                status.setFont(bold)
                status.setData(role, c.status)
                resize = True
            label = c.label + (f" ({c.grade})" if c.grade else "")
            if name.data(role) != c.name or name.text() != label:
                name.setText(label)
                name.setData(role, c.name)
                resize = True
            reason_text = c.reason
            if c.blocks_export and c.override_reason:
                reason_text += f"  Override: {c.override_reason}"
            if reason.text() != reason_text:
                reason.setText(reason_text)
            tip = f"{c.reason}<br><i>How:</i> {c.basis}<br><i>Source:</i> {c.source or 'geometry'}"
            if reason.toolTip() != tip:
                for it in (status, name, reason):
                    it.setToolTip(tip)
        if resize:
            self.checks.resizeColumnToContents(0)
            self.checks.resizeColumnToContents(1)
            self.checks.resizeRowsToContents()

    def _update_export_note(self) -> None:
        blockers = self.export_blockers()
        if blockers:
            self.export_note.setText(f"<span style='color:{STATUS_COLOR[FAIL]}'><b>Export needs a reason:</b> "
                                     f"{', '.join(blockers)} " + ("has" if len(blockers) == 1 else "have")
                                     + " a failing check without a recorded override reason.</span>")
        elif self.document.plan.trajectories:
            self.export_note.setText("Every failing check has a recorded reason; the plan can be exported.")
        else:
            self.export_note.setText("")

    # ------------------------------------------------------------------ view -> model
    @staticmethod
    def _describe(trajs: list[Trajectory]) -> str:
        return ", ".join(f"{t.side} ({'curved' if t.params.curved and t.bend_lps is not None else 'straight'})"
                         for t in sorted(trajs, key=lambda x: x.side))

    def _ask_replace_dialog(self, text: str) -> bool:
        answer = QMessageBox.question(self, "Replace trajectories", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _add_replacing(self, level: Level, new: list[Trajectory], replaced: list[Trajectory], what: str) -> bool:
        """Add ``new`` trajectories to ``level``; when the level already has ``replaced`` ones, ask first
        and replace them in the same undo step (never a silent duplicate). True when applied."""
        if replaced and not self.ask_replace(
                f"{level.name} already has {len(replaced)} trajector{'y' if len(replaced) == 1 else 'ies'}: "
                f"{self._describe(replaced)}.\n\nReplace {'it' if len(replaced) == 1 else 'them'} with {what}? "
                "(Ctrl+Z undoes it.)"):
            self.message.emit(f"{what.capitalize()} not added: {level.name} keeps its trajectories")
            return False
        action = f"{'Replace with' if replaced else 'Add'} {what}"
        try:
            with self.document.edit(action, trajectories=[t.id for t in new + replaced], lists=[Part.TRAJECTORIES]):
                for t in replaced:
                    self.document.remove_trajectory(t.id)
                for t in new:
                    self.document.add_trajectory(t)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            return False
        return True

    def suggest(self, side: str) -> Optional[str]:
        """Add a suggested trajectory on ``side`` for the selected (treated) level, replacing (after
        asking) the level's trajectory on that side; returns its id."""
        level = self.selected_level()
        if level is None or not level.treat:
            self.message.emit("Select a level marked 'treat' first")
            return None
        if self.busy:
            self.message.emit("A suggestion is being searched: wait for it, or cancel it")
            return None
        plan = self.document.plan
        images = self.images()
        try:
            sg, cancelled = self._searched(
                f"Suggest {level.name} {side}",
                lambda progress, cancel: suggest_checked(plan, level, side, images, progress=progress, cancel=cancel))
        except (LandmarkError, PathError, ValueError) as exc:
            self.message.emit(f"No suggestion for {level.name} {side}: {exc}")
            return None
        if cancelled:
            self.message.emit(f"Suggestion for {level.name} {side} cancelled; the plan is unchanged")
            return None
        if sg.trajectory is None:
            self._show_refusal(level, sg.message)
            return None
        traj = sg.trajectory
        same_side = [t for t in plan.trajectories_of(level.id) if t.side == side]
        if not self._add_replacing(level, [traj], same_side, f"a suggested {level.name} {side} trajectory"):
            return None
        self.select(traj.id)
        self.message.emit(sg.message)
        return traj.id

    def _show_refusal(self, level: Level, text: str) -> None:
        """A suggestion found no path: the reason in the status bar, and with the level's row and under it
        (the row reads "no path suggested") until a trajectory is added at that level."""
        self._refused[level.id] = (text, level.landmarks.model_dump())
        self.message.emit(text)
        self.refresh()
        if not list(self.document.plan.trajectories_of(level.id)):
            self.select("", level.id)

    def _searched(self, title: str, work: Any) -> tuple[Any, bool]:
        """``work(progress, cancel)`` behind the modal progress dialog (:meth:`run_modal`: the plan cannot be
        edited while the search reads it): ``(result, cancelled)``."""
        return self.run_modal(self.window(), title, f"{title}: reading the image...", work,
                              stopped_by=(SuggestionCancelled,))

    def suggest_bipedicular(self) -> Optional[tuple[str, str]]:
        """A left and a right trajectory for the selected level; the level's existing trajectories are
        replaced (after asking), so a level never holds two bipedicular sets."""
        level = self.selected_level()
        if level is None or not level.treat:
            self.message.emit("Select a level marked 'treat' first")
            return None
        if self.busy:
            self.message.emit("A suggestion is being searched: wait for it, or cancel it")
            return None
        plan = self.document.plan
        images = self.images()
        try:
            pair, cancelled = self._searched(
                f"Bipedicular pair at {level.name}",
                lambda progress, cancel: suggest_bipedicular_checked(plan, level, images, progress=progress,
                                                                     cancel=cancel))
        except (LandmarkError, PathError, ValueError) as exc:
            self.message.emit(f"No bipedicular suggestion for {level.name}: {exc}")
            return None
        if cancelled:
            self.message.emit(f"Bipedicular suggestion for {level.name} cancelled; the plan is unchanged")
            return None
        sg_left, sg_right = pair
        if sg_left.trajectory is None or sg_right.trajectory is None:
            missing = sg_left if sg_left.trajectory is None else sg_right
            self._show_refusal(level, f"No bipedicular pair for {level.name}: {missing.message} Try a unipedicular "
                                      "suggestion (Suggest left or right).")
            return None
        left, right = sg_left.trajectory, sg_right.trajectory
        existing = list(self.document.plan.trajectories_of(level.id))
        if not self._add_replacing(level, [left, right], existing, f"a bipedicular pair at {level.name}"):
            return None
        self.select(left.id)
        self.message.emit(f"Bipedicular pair at {level.name}")
        return left.id, right.id

    def delete_selected(self) -> bool:
        traj = self.selected_trajectory()
        if traj is None:
            return False
        level_id = traj.level_id
        ok = self._edit(self.document.remove_trajectory, traj.id)
        if ok:
            self.select("", level_id)
        return ok

    def set_param(self, name: str, value: Any) -> bool:
        traj = self.selected_trajectory()
        if traj is None:
            return False
        if getattr(traj.params, name) == value:
            return True
        return self._edit(self.document.set_trajectory_params, traj.id, **{name: value})

    def _param_done(self, name: str) -> None:
        if self._updating:
            return
        self.set_param(name, float(self.spins[name].value()))

    def _curved_toggled(self, on: bool) -> None:
        if not self._updating:
            self.set_curved(on)

    def set_curved(self, on: bool) -> bool:
        """Curved on: the bend goes where the straight line passes the posterior wall (the curve start
        setting); off: the bend is removed and the path runs straight to the target. One undo step."""
        traj = self.selected_trajectory()
        if traj is None:
            return False
        plan = self.document.plan
        try:
            with self.document.edit("Curved cannula " + ("on" if on else "off"), trajectories=[traj.id]):
                if on:
                    bend = traj.bend_lps
                    if bend is None:
                        path = trajectory_path(traj, plan)
                        bend = tuple(float(v) for v in path.introducer_end_lps)
                        if np.linalg.norm(np.asarray(bend) - np.asarray(traj.target_lps)) < 1e-6:
                            raise ValueError("the straight path does not reach past the posterior wall")
                    self.document.set_trajectory_params(traj.id, curved=True)
                    self.document.set_trajectory_point(traj.id, "bend", bend)
                else:
                    self.document.set_trajectory_params(traj.id, curved=False)
                    self.document.set_trajectory_point(traj.id, "bend", None)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            self._update_details()
            return False
        return True

    def _override_done(self) -> None:
        self.override.setModified(False)
        self.set_override_reason(self.override.text())

    def set_override_reason(self, text: str) -> bool:
        traj = self.selected_trajectory()
        if traj is None or text == traj.override_reason:
            return False
        return self._edit(self.document.set_trajectory_fields, traj.id, override_reason=text)



__all__ = ["TrajectoryPanel", "setting_tooltip", "NUMERIC_PARAMS"]
