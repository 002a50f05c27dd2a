"""Finding an opened plan's images: when series of the plan are not found by UID (another
workstation, a moved folder), the window says which ones are missing and offers to look in another
folder or to retrieve exactly those series from a PACS (off the GUI thread, with progress and
Cancel). Retrieved files are imported like any other import; the plan's series match by UID.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional, Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QProgressDialog, QWidget

from planner.views.background import BackgroundCall, ProgressDialogOwner

log = logging.getLogger(__name__)


class MissingSeriesPrompter:
    """The questions of this flow; replaced by a scripted one in tests."""

    def __init__(self, parent: QWidget) -> None:
        self.parent = parent

    def ask_missing(self, text: str, pacs_available: bool) -> str:
        """"folder", "pacs" or "ignore"."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Images not found", text, QMessageBox.StandardButton.NoButton,
                          self.parent)
        folder = box.addButton("Look in a folder\u2026", QMessageBox.ButtonRole.ActionRole)
        pacs = box.addButton("Retrieve from PACS\u2026", QMessageBox.ButtonRole.ActionRole) if pacs_available else None
        box.addButton("Continue without", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        clicked = box.clickedButton()
        return "folder" if clicked is folder else "pacs" if pacs is not None and clicked is pacs else "ignore"

    def ask_folder(self) -> Optional[str]:
        return QFileDialog.getExistingDirectory(self.parent, "Folder with the plan's images") or None

    def choose_node(self, labels: Sequence[str]) -> Optional[int]:
        if len(labels) == 1:
            return 0
        label, ok = QInputDialog.getItem(self.parent, "Retrieve from PACS", "PACS:", list(labels), 0, False)
        return list(labels).index(label) if ok and label in labels else None


def describe_missing(refs: Sequence[Any]) -> str:
    """One line per missing series: role, modality, description, number of images."""
    lines = []
    for r in refs:
        bits = [r.role or "", r.modality or "", r.description or "",
                f"({r.number_of_images} images)" if getattr(r, "number_of_images", None) else ""]
        lines.append("\u2022 " + " ".join(b for b in bits if b).strip() or f"\u2022 series {r.series_instance_uid}")
    return "\n".join(lines)


class PlanImages(ProgressDialogOwner, QObject):
    """The missing-series flow of one main window."""

    #: (series retrieved, message) after a PACS retrieve ended (also when it failed or was cancelled)
    retrieve_finished = Signal(int, str)
    #: (series found, message) after the plan's images were looked for (also when cancelled)
    load_finished = Signal(int, str)

    def __init__(self, window: Any, prompter: Optional[MissingSeriesPrompter] = None) -> None:
        super().__init__(window)
        self.window = window
        self.prompter = prompter or MissingSeriesPrompter(window)
        self.call: Optional[BackgroundCall] = None
        self.progress: Optional[QProgressDialog] = None
        self._cancel = threading.Event()

    def missing(self) -> list:
        session = self.window.session
        return [r for r in session.document.plan.case.series if r.series_instance_uid not in session.images]

    def load(self, images_folder: Optional[str] = None, *, offer_missing: bool = True) -> Optional[BackgroundCall]:
        """Look for the open plan's missing series by UID (in ``images_folder``, else the plan's path
        hints and the local PACS retrieve cache) off the GUI thread, with progress and Cancel; found series
        are added to the session. When some are still missing, :meth:`offer` says which (if
        ``offer_missing``): the PACS is asked only for what is in neither place."""
        from planner.imaging.pacs.cache import cached_series
        from planner.relink import candidate_places, find_plan_images

        if not self.missing() or self.busy():
            self._finish_load(0, "", offer_missing=False)
            return None
        doc = self.window.session.document
        plan, plan_path = doc.plan, doc.path
        if images_folder:
            folders: Optional[list] = [images_folder]
        else:
            cached = cached_series([r.series_instance_uid for r in self.missing()])
            folders = list(dict.fromkeys(candidate_places(plan, plan_path) + list(cached.values()))) or None
        self._cancel.clear()
        cancel = self._cancel
        self._open_progress(self.window, "Finding the plan's images", "Looking for the plan's series\u2026", cancel.set)
        call = BackgroundCall(lambda progress: find_plan_images(plan, folders, plan_path=plan_path, progress=progress,
                                                                cancel=cancel), self)
        call.progress.connect(self._on_progress)
        call.finished.connect(lambda result, error: self._loaded(result, error, offer_missing))
        self.call = call
        call.start()
        return call

    def _loaded(self, result: Any, error: str, offer_missing: bool) -> None:
        self._close_progress()
        if self.window._closed:
            return
        if error or result is None:
            msg = f"The plan's images could not be loaded: {error or 'no result'}"
            self.window.show_message(msg, 15000)
            self._finish_load(0, msg, offer_missing)
            return
        added = self.window.session.add_images(result.images, keep_existing=True)
        msg = "" if not result.missing and not result.notes else result.message()
        if result.cancelled:
            msg = "Looking for the plan's images was cancelled" + (f"; {msg}" if msg else "")
        if msg:
            self.window.show_message(msg, 15000)
        self._finish_load(added, msg, offer_missing and not result.cancelled)

    def _finish_load(self, added: int, msg: str, offer_missing: bool) -> None:
        self.window.place_cursor()
        self.window.views.assign_series()
        self.load_finished.emit(added, msg)
        if offer_missing and self.missing() and self.window.isVisible():
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, lambda: self.offer() if not self.window._closed else None)

    def offer(self, message: str = "") -> str:
        """Say which series are missing and act on the answer; returns it ("" when none is missing)."""
        refs = self.missing()
        if not refs:
            return ""
        from planner.imaging import pacs

        nodes = pacs.load_nodes()
        text = (f"{len(refs)} series of this plan {'was' if len(refs) == 1 else 'were'} not found:\n"
                f"{describe_missing(refs)}\n\n"
                "The plan is open; views of the missing series stay empty until their images are found. "
                + ("Look in another folder or retrieve them from the PACS?" if nodes else
                   "Look in another folder? (No PACS is configured: File > PACS query / retrieve.)"))
        if message:
            log.info("plan images: %s", message)
        answer = self.prompter.ask_missing(text, bool(nodes))
        if answer == "folder":
            folder = self.prompter.ask_folder()
            if folder:
                self.load(folder)
        elif answer == "pacs":
            self.retrieve_missing()
        return answer

    def busy(self) -> bool:
        return self.call is not None and not self.call.done

    # ------------------------------------------------------------------ a plan from the PACS
    def open_pacs_plan(self, sr_path: str, node: Any) -> Optional[BackgroundCall]:
        """Open the plan SR retrieved from ``node`` (the PACS window's "Open plan"), then its images:
        from the local retrieve cache first, the rest retrieved from the same PACS by UID."""
        from planner.export.sr import SRImportError, import_plan_from_sr

        if self.busy() or not self.window.files.maybe_discard_changes():
            return None
        try:
            plan = import_plan_from_sr(sr_path)
        except SRImportError as exc:
            self.window.show_message(str(exc), 15000)
            self.load_finished.emit(0, str(exc))
            return None
        self.window.session.document.replace_plan(plan)
        self.window.show_message(f"Opened the plan of {plan.case.patient_name or 'the study'} from the PACS "
                                 "(not saved yet)", 15000)
        return self.load_from_pacs(node)

    def load_from_pacs(self, node: Any) -> Optional[BackgroundCall]:
        from planner.pacs_plan import plan_image_folders
        from planner.relink import find_plan_images

        plan = self.window.session.document.plan
        if not self.missing() or self.busy():
            self._finish_load(0, "", offer_missing=False)
            return None
        self._cancel.clear()
        cancel = self._cancel
        self._open_progress(self.window, "The plan's images", "Looking in the local cache and the PACS\u2026",
                            cancel.set)

        def work(progress):
            where = plan_image_folders(plan, node, progress=lambda f, m: progress(0.8 * f, m), cancel=cancel)
            found = find_plan_images(plan, where.folders or None, progress=lambda f, m: progress(0.8 + 0.2 * f, m),
                                     cancel=cancel) if where.folders else None
            if found is not None and where.message():
                found.notes.append(where.message())
            return found

        call = BackgroundCall(work, self)
        call.progress.connect(self._on_progress)
        call.finished.connect(lambda result, error: self._loaded(result, error or (
            "" if result is not None else "none of the plan's series is in the cache or the PACS"), True))
        self.call = call
        call.start()
        return call

    def retrieve_missing(self) -> Optional[BackgroundCall]:
        """Retrieve the plan's missing series from a PACS, then import them."""
        from planner.imaging import pacs
        from planner.imaging.pacs.cache import new_cache_folder

        refs = self.missing()
        plan = self.window.session.document.plan
        nodes = pacs.load_nodes()
        if not refs or not nodes or self.busy():
            return None
        idx = self.prompter.choose_node([n.label for n in nodes])
        if idx is None:
            return None
        node = nodes[idx]
        study_uid = plan.case.study_instance_uid
        uids = [r.series_instance_uid for r in refs]
        folder = new_cache_folder()
        self._cancel.clear()
        cancel = self._cancel
        self._open_progress(self.window, "Retrieve from PACS", f"Retrieving {len(uids)} series from {node.label}\u2026",
                            cancel.set)

        def work(progress):
            if not study_uid:
                found = pacs.find_series_by_uid(node, uids)
                study = found[0].study_uid if found else ""
                if not study:
                    raise pacs.PacsError(f"{node.label} does not have the plan's series.")
            else:
                study = study_uid
            return pacs.retrieve(node, study, uids, dest_folder=folder, patient_id=plan.case.patient_id or None,
                             progress=progress, cancel=cancel)

        call = BackgroundCall(work, self)
        call.progress.connect(self._on_progress)
        call.finished.connect(self._retrieved)
        self.call = call
        call.start()
        return call

    def _retrieved(self, result: Any, error: str) -> None:
        self._close_progress()
        if error or result is None:
            msg = f"Retrieve from PACS failed: {error or 'no answer'}"
            self.window.show_message(msg, 15000)
            self.retrieve_finished.emit(0, msg)
            return
        summary = result.summary()
        self.window.show_message(summary, 15000)
        if result.received and not result.cancelled:
            task = self.window.import_paths([str(result.folder)], show_dialog=False)
            if task is not None:
                task.finished.connect(lambda _r: self._after_import(summary))
                return
        self.retrieve_finished.emit(0, summary)

    def _after_import(self, summary: str) -> None:
        still = self.missing()
        self.window.views.assign_series()
        self.window.place_cursor()
        msg = summary if not still else f"{summary}; still missing: {len(still)} series"
        self.window.show_message(msg, 15000)
        self.retrieve_finished.emit(len(self.window.session.document.plan.case.series) - len(still), msg)

    def shutdown(self) -> None:
        self._cancel.set()
        if self.call is not None and self.call.is_running():
            self.call.wait(5000)  # a cancelled PACS call returns within a second; a folder scan soon after
        self._close_progress()
