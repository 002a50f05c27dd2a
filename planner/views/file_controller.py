"""Plan file actions for the main window: open, save, save as, recent plans, the unsaved-changes
question on close, autosave and the crash-recovery offer at start-up.

The dialogs go through :class:`Prompter` so tests can answer them without modal windows. Nothing is
ever lost: a failed save keeps the plan open and dirty (and its autosave recovery file) and says why.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from planner.autosave import AutosaveController, OrphanedRecovery, find_orphaned_recoveries
from planner.recent import add_recent_plan, recent_plans
from planner.plan import Plan
from planner.session import Session, case_is_empty
from planner.settings import PlanningSettings
from planner.storage import PLAN_SUFFIX, PlanFileError, load_plan, save_plan

log = logging.getLogger(__name__)
PLAN_FILTER = f"BVN plans (*{PLAN_SUFFIX});;All files (*)"


def plan_has_work(plan: Plan) -> bool:
    """True when the plan holds something a user made (levels, trajectories, measurements, answers,
    fluoroscopy marks, review, changed settings), beyond the record of its images."""
    return bool(plan.levels or plan.trajectories or plan.measurements or plan.fluoro_landmarks
                or plan.fluoro_calibrations or plan.eligibility.answers or plan.eligibility.notes
                or plan.review.comments or plan.review.signoffs or plan.author
                or plan.settings != PlanningSettings())


def suggested_stem(plan: Plan) -> str:
    """A file name (no suffix) for a plan: patient name, treated levels and study date, e.g.
    ``DOE-JANE_L4-L5_2024-01-02``; "bvn-plan" parts when the plan names none of them."""
    case = plan.case
    name = case.patient_name.replace("^", "-").strip("-") or case.patient_id or "bvn-plan"
    treated = [lv.name for lv in plan.levels if lv.treat]
    date = case.study_date
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    parts = [name] + (["-".join(treated)] if treated else []) + ([date] if date else [])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-._") or "bvn-plan"


class Prompter:
    """The questions the file actions ask; replaced by a scripted one in tests."""

    def __init__(self, parent: Optional[QWidget]) -> None:
        self.parent = parent

    def ask_save_changes(self, name: str) -> str:
        """Returns "save", "discard" or "cancel"."""
        box = QMessageBox(self.parent)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Unsaved changes")
        box.setText(f"Save the changes to {name} before closing?")
        box.setInformativeText("If you don't save, your changes since the last save will be lost.")
        box.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                               | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(QMessageBox.StandardButton(answer), "cancel")

    def ask_save_path(self, suggestion: str) -> Optional[str]:
        path, _ = QFileDialog.getSaveFileName(self.parent, "Save plan", suggestion, PLAN_FILTER)
        if path and not path.endswith(PLAN_SUFFIX):
            path += PLAN_SUFFIX
        return path or None

    def ask_open_path(self) -> Optional[str]:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open plan", "", PLAN_FILTER)
        return path or None

    def error(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)

    def ask_other_patient(self, current: str, other: str, can_replace: bool) -> str:
        """Images of another patient were opened. Returns "window" (open them in a new window, the
        default), "replace" (close this plan and open them here) or "cancel"."""
        box = QMessageBox(self.parent)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Another patient")
        box.setText("These images are of another patient. One plan holds one patient.")
        box.setInformativeText(f"Open now: {current}\nNew images: {other}")
        window = box.addButton("Open in a new window", QMessageBox.ButtonRole.AcceptRole)
        replace = box.addButton("Replace this case", QMessageBox.ButtonRole.DestructiveRole) if can_replace else None
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(window)
        box.exec()
        clicked = box.clickedButton()
        return "window" if clicked is window else "replace" if replace is not None and clicked is replace else "cancel"

    def ask_recover(self, orphan: OrphanedRecovery) -> str:
        """Returns "recover", "discard" or "later"."""
        box = QMessageBox(self.parent)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Recover unsaved changes")
        box.setText(f"BVN Planner did not close normally. Recover {orphan.describe()}?")
        box.setInformativeText("Recovered changes open as unsaved; save them to keep them.")
        recover = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(recover)
        box.exec()
        clicked = box.clickedButton()
        return "recover" if clicked is recover else "discard" if clicked is discard else "later"


class FileController(QObject):
    #: Emitted with a status-bar message.
    status = Signal(str)
    #: Emitted after a plan was opened or recovered (path or "").
    plan_opened = Signal(str)
    #: Emitted when the recent-plans list changed.
    recent_changed = Signal()

    def __init__(self, session: Session, parent: Optional[QWidget] = None, prompter: Optional[Prompter] = None,
                 autosave_interval_s: float = 1.0,
                 on_plan_loaded: Optional[Callable[[Optional[str]], None]] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.prompter = prompter or Prompter(parent)
        #: Called after a plan is opened, with the images folder the user gave (or None), so the
        #: window can find the plan's images by UID.
        self.on_plan_loaded = on_plan_loaded
        self.autosave = AutosaveController(session.document, self._schedule, interval_s=autosave_interval_s)

    @staticmethod
    def _schedule(delay_s: float, fn: Callable[[], None]) -> None:
        QTimer.singleShot(int(delay_s * 1000), fn)

    @property
    def document(self):
        return self.session.document

    def display_name(self) -> str:
        return Path(self.document.path).name if self.document.path else "Untitled plan"

    # ------------------------------------------------------------------ save
    def save(self) -> bool:
        # (a reviewer's comments and sign-off are saved into the plan; the clinical content is unchanged)
        if not self._has_case():
            return False
        if not self.document.path:
            return self.save_as()
        return self._save_to(self.document.path)

    def save_as(self, path: Optional[str] = None) -> bool:
        if not self._has_case():
            return False
        if path is None:
            suggestion = self.document.path or self.suggest_path()
            path = self.prompter.ask_save_path(suggestion)
            if not path:
                return False
        return self._save_to(path)

    def _has_case(self) -> bool:
        """A plan is saved only when it names its case (patient, study or series); says why not."""
        if not case_is_empty(self.document.plan.case):
            return True
        self.prompter.error("Save plan", "This plan names no patient and no images, so it was not saved.\n\n"
                                         "Open the patient's images first (File > Open folder); the plan "
                                         "then records the patient, the study and the series it uses.")
        return False

    def suggest_path(self) -> str:
        """Where Save as starts: the folder of the last plan saved or opened (else the images' folder,
        else the home folder), and a name from the patient, the treated levels and the study date."""
        plan = self.document.plan
        case = plan.case
        name = suggested_stem(plan) + PLAN_SUFFIX
        for p in self.recent():
            if Path(p).parent.is_dir():
                return str(Path(p).parent / name)
        for ref in case.series:
            hint = Path(ref.path_hint) if ref.path_hint else None
            if hint is not None and hint.parent.is_dir():
                return str(hint.parent / name)
        return str(Path.home() / name)

    def _save_to(self, path: str) -> bool:
        try:
            save_plan(self.document.plan, path)
        except OSError as exc:
            self.prompter.error("Save plan", f"Could not save {Path(path).name}: {exc.strerror or exc}.\n\n"
                                             "The plan is still open with all your changes; an autosaved copy "
                                             "is kept. Try another folder.")
            return False
        old_path = self.document.path
        self.document.path = str(path)
        self.document.mark_saved()
        if old_path != self.document.path:
            self.autosave.discard()
        add_recent_plan(path)
        self.recent_changed.emit()
        self.status.emit(f"Saved {Path(path).name}")
        return True

    # ------------------------------------------------------------------ open
    def open_plan(self, path: Optional[str] = None, *, read_only: bool = False,
                  images_folder: Optional[str] = None) -> bool:
        if path is None:
            path = self.prompter.ask_open_path()
            if not path:
                return False
        if not self.maybe_discard_changes():
            return False
        try:
            plan = load_plan(path)
        except PlanFileError as exc:
            self.prompter.error("Open plan", str(exc) + "\n\nNothing was changed.")
            return False
        self.document.replace_plan(plan, read_only=read_only, path=str(path))
        add_recent_plan(path)
        self.recent_changed.emit()
        mode = " for review (read-only)" if read_only else ""
        self.status.emit(f"Opened {Path(path).name}{mode}")
        self.plan_opened.emit(str(path))
        if self.on_plan_loaded:
            self.on_plan_loaded(images_folder)
        return True

    def recent(self) -> list[str]:
        return recent_plans()

    # ------------------------------------------------------------------ close
    def maybe_discard_changes(self) -> bool:
        """Ask about unsaved changes; True when it is fine to drop the current plan. A plan never
        saved whose only content is the record of the opened images loses nothing: no question."""
        if not self.document.is_dirty:
            return True
        if not self.document.path and not plan_has_work(self.document.plan):
            return True
        answer = self.prompter.ask_save_changes(self.display_name())
        if answer == "save":
            return self.save()
        return answer == "discard"

    def maybe_close(self) -> bool:
        """For the window's closeEvent: True when the window may close."""
        if not self.maybe_discard_changes():
            return False
        self.autosave.close()
        return True

    # ------------------------------------------------------------------ recovery
    def offer_recovery(self) -> bool:
        """At start-up: offer each orphaned recovery file; True when one was recovered."""
        for orphan in find_orphaned_recoveries():
            answer = self.prompter.ask_recover(orphan)
            if answer == "discard":
                orphan.discard()
            elif answer == "recover":
                try:
                    plan = orphan.load()
                except PlanFileError as exc:
                    self.prompter.error("Recover plan", f"{exc}\n\nThe damaged recovery file was kept at "
                                                        f"{orphan.recovery_path}.")
                    continue
                self.document.replace_plan(plan, read_only=False, path=orphan.plan_path, dirty=True)
                orphan.discard()
                self.autosave.flush()  # this session now owns the recovered changes
                self.status.emit(f"Recovered {orphan.describe()}; save to keep the changes")
                self.plan_opened.emit(orphan.plan_path or "")
                if self.on_plan_loaded:
                    self.on_plan_loaded(None)
                return True
        return False
