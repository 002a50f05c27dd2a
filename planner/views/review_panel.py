"""Review panel: comments anchored to the plan, a level or a trajectory; sign-off; the audit trail.

Works in read-only (review) mode: PlanDocument allows comments and sign-off there. The panel shows
whether the latest sign-off is still current (the plan's content hash is unchanged since signing).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from planner.document import PlanChange, PlanEditError
from planner.review import AUDIT_COLUMNS, anchor_label, audit_to_csv, audit_to_json, review_state, signoff_statuses
from planner.session import Session
from planner.views.panel import PlanPanel

_STATE_STYLE = {
    "not reviewed": ("Not reviewed", "#9aa4ad"),
    "signed off": ("Signed off", "#4caf50"),
    "sign-off out of date": ("Sign-off out of date", "#ff9800"),
}


class AuditDialog(QDialog):
    """The audit trail as a table, with export to CSV or JSON."""

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Audit trail")
        self.resize(760, 480)
        self.session = session
        plan = session.document.plan
        self.table = QTableWidget(len(plan.audit), len(AUDIT_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(["When (UTC)", "Who", "What", "Details"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        for r, e in enumerate(plan.audit):
            for c, value in enumerate((e.at, e.user, e.action, e.detail)):
                self.table.setItem(r, c, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        export = QPushButton("Export…")
        export.setToolTip("Save the audit trail as CSV or JSON")
        export.clicked.connect(self._export)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.addButton(export, QDialogButtonBox.ButtonRole.ActionRole)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"{len(plan.audit)} recorded changes, oldest first."))
        lay.addWidget(self.table)
        lay.addWidget(buttons)

    def _export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export audit trail", "audit.csv", "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export_to(path)

    def export_to(self, path: str) -> None:
        plan = self.session.document.plan
        text = audit_to_json(plan) if path.lower().endswith(".json") else audit_to_csv(plan)
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            QMessageBox.warning(self, "Export audit trail", f"Could not write {Path(path).name}: {exc.strerror}")


class ReviewPanel(PlanPanel):
    """Comments, sign-off and audit trail of the open plan. One reviewer identity (the document's
    user) signs the comments, the sign-off and the audit trail."""

    #: The reviewer's name was changed (the window remembers it).
    reviewer_changed = Signal(str)

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session

        self.identity = QLabel()
        self.identity.setObjectName("reviewerIdentity")
        self.identity.setToolTip("The name your comments, your sign-off and the audit trail carry")
        self.identity_button = QPushButton("Change name\u2026")
        self.identity_button.setToolTip("Set the name you review under (remembered on this computer)")
        self.identity_button.clicked.connect(self._identity_clicked)

        self.state_label = QLabel()
        self.state_label.setObjectName("reviewState")
        self.signoffs = QLabel()
        self.signoffs.setWordWrap(True)
        self.signoffs.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Comment", "By", "When"])
        self.tree.setRootIsDecorated(True)
        self.tree.setToolTip("Review comments, grouped by what they refer to")
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

        self.anchor = QComboBox()
        self.anchor.setToolTip("Attach the comment to the whole plan, a level or a trajectory")
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText("Write a comment (Ctrl+Enter to add)")
        self.text.setMaximumHeight(70)
        self.add_button = QPushButton("Add comment")
        self.add_button.setToolTip("Add the comment to the plan (allowed in review mode); Ctrl+Enter")
        self.add_button.clicked.connect(self._add_clicked)
        QShortcut(QKeySequence("Ctrl+Return"), self.text, activated=self._add_clicked)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected comment (undoable)")
        self.delete_button.clicked.connect(self._delete_clicked)
        self.sign_button = QPushButton("Sign off…")
        self.sign_button.setToolTip("Sign the plan as it is now. Any later change marks the sign-off out of date.")
        self.sign_button.clicked.connect(self._sign_clicked)
        self.audit_button = QPushButton("Audit trail…")
        self.audit_button.setToolTip("Who changed what, and when; exportable")
        self.audit_button.clicked.connect(self.show_audit)

        form = QFormLayout()
        form.addRow("About", self.anchor)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.delete_button)
        row.addStretch(1)
        row2 = QHBoxLayout()
        row2.addWidget(self.sign_button)
        row2.addWidget(self.audit_button)
        row2.addStretch(1)
        who = QHBoxLayout()
        who.addWidget(self.identity, 1)
        who.addWidget(self.identity_button)
        lay = QVBoxLayout(self)
        lay.addLayout(who)
        lay.addWidget(self.state_label)
        lay.addWidget(self.signoffs)
        lay.addLayout(row2)
        lay.addWidget(self.tree, 1)
        lay.addLayout(form)
        lay.addWidget(self.text)
        lay.addLayout(row)

        self.subscribe(session.document.changed, self._on_changed)
        self.refresh()

    # ------------------------------------------------------------------ model -> view
    def _on_changed(self, change: PlanChange) -> None:
        self.refresh_when_visible()  # a hidden tab waits until shown (keeps drags in the views fast)

    def refresh(self) -> None:
        plan = self.session.document.plan
        self.identity.setText(f"Reviewing as <b>{escape(self.session.document.user)}</b>")
        state = review_state(plan)
        text, color = _STATE_STYLE[state]
        self.state_label.setText(f"<b style='color:{color}'>{text}</b>")
        self.signoffs.setText("<br>".join(s.describe() for s in signoff_statuses(plan)) or "No sign-off yet.")

        current = self.anchor.currentData()
        self.anchor.blockSignals(True)
        self.anchor.clear()
        self.anchor.addItem("Whole plan", ("plan", ""))
        for lv in plan.levels:
            self.anchor.addItem(f"Level {lv.name}", ("level", lv.id))
        for t in plan.trajectories:
            lv = next((x for x in plan.levels if x.id == t.level_id), None)
            self.anchor.addItem(f"Trajectory {lv.name if lv else '?'} {t.side}", ("trajectory", t.id))
        idx = self.anchor.findData(current) if current else 0
        self.anchor.setCurrentIndex(max(idx, 0))
        self.anchor.blockSignals(False)

        self.tree.clear()
        groups: dict[str, QTreeWidgetItem] = {}
        for c in plan.review.comments:
            label = anchor_label(plan, c)
            parent = groups.get(label)
            if parent is None:
                parent = QTreeWidgetItem([label])
                parent.setFirstColumnSpanned(True)
                self.tree.addTopLevelItem(parent)
                groups[label] = parent
            item = QTreeWidgetItem([c.text, c.author, c.created.replace("T", " ")[:16]])
            item.setData(0, Qt.ItemDataRole.UserRole, c.id)
            item.setToolTip(0, c.text)
            parent.addChild(item)
        self.tree.expandAll()

    # ------------------------------------------------------------------ view -> model
    def add_comment(self, text: str, anchor_kind: str = "plan", anchor_id: str = "") -> bool:
        try:
            self.session.document.add_comment(text, anchor_kind=anchor_kind, anchor_id=anchor_id)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            return False
        return True

    def _add_clicked(self) -> None:
        kind, anchor_id = self.anchor.currentData() or ("plan", "")
        if self.add_comment(self.text.toPlainText(), kind, anchor_id):
            self.text.clear()

    def _delete_clicked(self) -> None:
        item = self.tree.currentItem()
        comment_id = item.data(0, Qt.ItemDataRole.UserRole) if item else None
        if comment_id:
            try:
                self.session.document.remove_comment(comment_id)
            except PlanEditError as exc:
                self.message.emit(str(exc))

    def set_reviewer(self, name: str) -> bool:
        """The name comments, sign-off and audit entries carry from now on."""
        name = name.strip()
        if not name:
            self.message.emit("A reviewer name is required")
            return False
        self.session.document.user = name
        self.refresh()
        self.reviewer_changed.emit(name)
        return True

    def _identity_clicked(self) -> None:
        name, ok = QInputDialog.getText(self, "Reviewer", "Your name (comments, sign-off, audit trail):",
                                        QLineEdit.EchoMode.Normal, self.session.document.user)
        if ok:
            self.set_reviewer(name)

    def sign_off(self, role: str = "reviewer") -> bool:
        """Sign the plan as the reviewer shown in the panel (the comments' author)."""
        reviewer = self.session.document.user
        try:
            self.session.document.sign_off(reviewer, role=role)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            return False
        self.message.emit(f"Signed off by {reviewer}")
        return True

    def _sign_clicked(self) -> None:
        answer = QMessageBox.question(
            self, "Sign off", f"Sign the plan as it is now, as {self.session.document.user}?\n\n"
            "(Change name\u2026 sets another name.) Any later change marks the sign-off out of date.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes)
        if answer == QMessageBox.StandardButton.Yes:
            self.sign_off()

    def show_audit(self) -> AuditDialog:
        dlg = AuditDialog(self.session, self)
        dlg.show()
        return dlg

