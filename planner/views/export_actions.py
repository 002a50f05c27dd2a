"""The export actions of the main window: plan summary (PDF), patient sheet (PDF or HTML, English or
Spanish), DICOM export for the PACS (with an offer to send it), the de-identified teaching export,
and the PACS query/retrieve window.

Every export is built from the plan document and the loaded images with the same functions the
command line uses (``report``, ``sheet``, ``export-dicom``), so the button and the command give the
same file. The window never freezes: an export runs in three stages behind one progress dialog with
Cancel, on a snapshot of the plan taken when it starts:

1. *prepare* (background thread): checks, metrics, the reslice and fluoroscopy key images, the source
   headers (``build_report_data`` / ``prepare_export`` without the 3D views);
2. *3D key images* (GUI thread, where VTK renders): one trajectory per event-loop turn, so the window
   repaints and Cancel answers between them (``render3d.trajectory_key_image_3d``);
3. *write* (background thread): the PDF pages or DICOM files.

Files are written under a temporary name and renamed at the end, so a cancelled or failed export never
leaves a half-written file, and an existing file is replaced only by a complete one.

A plan with a failing check and no recorded reason is not exported: the message names the
trajectories and the Trajectories panel opens where the reason is recorded.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QProgressDialog, QWidget

from planner.safefiles import temporary_beside
from planner.views.background import BackgroundCall, ProgressDialogOwner

log = logging.getLogger(__name__)

SHEET_LANGUAGES = {"en": "English", "es": "Espa\u00f1ol (Spanish)"}


class ExportPrompter:
    """The questions the export actions ask; replaced by a scripted one in tests."""

    def __init__(self, parent: QWidget) -> None:
        self.parent = parent

    def ask_save_file(self, title: str, suggestion: str, filters: str) -> Optional[str]:
        path, _ = QFileDialog.getSaveFileName(self.parent, title, suggestion, filters)
        return path or None

    def ask_folder(self, title: str, start: str) -> Optional[str]:
        path = QFileDialog.getExistingDirectory(self.parent, title, start)
        return path or None

    def ask_language(self, current: str) -> Optional[str]:
        names = list(SHEET_LANGUAGES.values())
        codes = list(SHEET_LANGUAGES)
        name, ok = QInputDialog.getItem(self.parent, "Patient sheet", "Language of the sheet:", names,
                                        codes.index(current) if current in codes else 0, False)
        return codes[names.index(name)] if ok and name in names else None

    def warn(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)

    def offer_send(self, text: str) -> bool:
        answer = QMessageBox.question(self.parent, "DICOM export", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes


@dataclass
class Prepared:
    """What the prepare stage hands on: the ``payload`` the write stage needs, and the plan summary
    whose 3D key images the GUI thread still renders (None when the export has none), drawn from
    ``plan`` and ``images`` (the snapshot; de-identified for the teaching export)."""

    payload: Any
    report: Any = None
    plan: Any = None
    images: Optional[dict] = None


#: Milliseconds the event loop gets between two 3D key images (timers and repaints run in them).
RENDER_PAUSE_MS = 15
#: Share of the progress bar of each stage (prepare, 3D key images, write).
STAGE_SPAN = {"prepare": (0.0, 0.45), "render": (0.45, 0.8), "write": (0.8, 1.0)}


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "plan"


def _replace_atomically(write: Callable[[Path], Any], target: Path) -> Path:
    """Run ``write(tmp)`` for an exclusive, journaled temporary file beside ``target``, then rename it to
    ``target`` (:func:`planner.safefiles.temporary_beside`)."""
    with temporary_beside(target) as tmp:
        write(tmp)
    return target


class ExportController(ProgressDialogOwner, QObject):
    """Export actions of one main window (see the module text)."""

    #: (kind, output path or "" when nothing was written, message) after each export attempt
    finished = Signal(str, str, str)

    def __init__(self, window: Any, prompter: Optional[ExportPrompter] = None) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.prompter = prompter or ExportPrompter(window)
        self.call: Optional[BackgroundCall] = None
        self.progress: Optional[QProgressDialog] = None
        self._cancel = threading.Event()
        #: The stage of the running export ("prepare", "render", "write") or "".
        self.stage = ""
        #: Trajectory sections whose 3D key image is still to render (render stage).
        self._to_render: list = []
        self.last_dicom_result: Any = None
        self.pacs_dialog: Any = None

    # ------------------------------------------------------------------ helpers
    @property
    def plan(self):
        return self.session.document.plan

    def busy(self) -> bool:
        return bool(self.stage)

    def _images(self) -> dict:
        return dict(self.session.images)

    def _default_dir(self) -> str:
        last = self.window.settings.value("export/last_dir", "", type=str)
        if last and Path(last).is_dir():
            return last
        path = self.session.document.path
        return str(Path(path).parent) if path else str(Path.home())

    def _stem(self) -> str:
        path = self.session.document.path
        return _safe_stem(Path(path).stem) if path else "bvn-plan"

    def _remember_dir(self, path: Path) -> None:
        self.window.settings.setValue("export/last_dir", str(path.parent if path.suffix else path))

    def blockers(self) -> list[str]:
        """Trajectories ("L4 left") with a failing check and no recorded reason."""
        return [f"{r.level_name} {r.side}" for r in self.session.results.plan_report().missing_override_reasons]

    def _can_export(self, what: str) -> bool:
        if self.busy():
            self.window.show_message("An export is already running")
            return False
        blocked = self.blockers()
        if blocked:
            self.prompter.warn(
                what, f"The {what.lower()} was not written: {', '.join(blocked)} "
                f"{'has' if len(blocked) == 1 else 'have'} a failing check without a recorded reason.\n\n"
                "Move the trajectory, or record why you go ahead in the Trajectories panel; the export then "
                "shows the failure and your reason.")
            if hasattr(self.window, "show_panel"):
                self.window.show_panel("Trajectories")
            self.finished.emit(what, "", "blocked")
            return False
        return True

    def _run(self, kind: str, label: str, prepare: Callable[[Callable[[float, str], None]], Prepared],
             write: Callable[[Any, Callable[[float, str], None]], Any],
             on_done: Callable[[Any], str]) -> Optional[BackgroundCall]:
        """Run an export's stages (see the module text) behind one progress dialog with Cancel:
        ``prepare(progress)`` and ``write(payload, progress)`` in the background, the 3D key images of
        the prepared report on the GUI thread in between; ``on_done(result)`` returns the path to report.
        Returns the background call of the prepare stage."""
        self._cancel.clear()
        self._open_progress(self.window, kind, label, self.cancel)
        self.stage = "prepare"
        call = self._background("prepare", prepare)
        call.finished.connect(lambda prepared, error: self._prepared(kind, prepared, error, write, on_done))
        return call

    def _background(self, stage: str, fn: Callable[[Callable[[float, str], None]], Any]) -> BackgroundCall:
        lo, hi = STAGE_SPAN[stage]

        def work(report: Callable[[float, str], None]) -> Any:
            from planner.export.dicom import ExportCancelled

            def progress(fraction: float, message: str) -> None:
                if self._cancel.is_set():
                    raise ExportCancelled("The export was cancelled; nothing was written.")
                report(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)  # to the GUI thread

            return fn(progress)

        call = BackgroundCall(work, self)
        call.progress.connect(self._on_progress)
        self.call = call
        call.start()
        return call

    def _prepared(self, kind: str, prepared: Optional[Prepared], error: str, write, on_done) -> None:
        if self._stopped(kind, error or ("" if prepared is not None else "no result")):
            return
        self.stage = "render"
        self._to_render = list(prepared.report.trajectories) if prepared.report is not None else []
        self._render_total = max(1, len(self._to_render))
        QTimer.singleShot(RENDER_PAUSE_MS, lambda: self._render_next(kind, prepared, write, on_done))

    def _render_next(self, kind: str, prepared: Prepared, write, on_done) -> None:
        """Render one trajectory's 3D key image, then give the event loop a turn (the window repaints,
        Cancel answers) before the next; the write stage starts after the last."""
        from planner.report.render3d import add_3d_key_image, trajectory_key_image_3d

        if self.window._closed or self._stopped(kind, ""):
            return
        if self._to_render:
            section = self._to_render.pop(0)
            done = self._render_total - len(self._to_render)
            lo, hi = STAGE_SPAN["render"]
            self._on_progress(lo + (hi - lo) * (done - 0.5) / self._render_total,
                              f"3D key image of {section.title} ({done} of {self._render_total})\u2026")
            traj = prepared.plan.trajectory(section.trajectory_id)
            shot, notes = trajectory_key_image_3d(prepared.plan, traj, prepared.images)
            if shot is not None:
                add_3d_key_image(section.key_images, shot)
            section.image_notes += [n for n in notes if n not in section.image_notes]
            QTimer.singleShot(RENDER_PAUSE_MS, lambda: self._render_next(kind, prepared, write, on_done))
            return
        self.stage = "write"
        call = self._background("write", lambda progress: write(prepared.payload, progress))
        call.finished.connect(lambda result, error: self._done(kind, result, error, on_done))

    def _stopped(self, kind: str, error: str) -> bool:
        """End the export when it was cancelled or failed (says so); False when it goes on."""
        if self._cancel.is_set():
            self._finish()
            msg = f"{kind}: cancelled; nothing was written"
            self.window.show_message(msg)
            self.finished.emit(kind, "", msg)
            return True
        if error:
            self._finish()
            self.prompter.warn(kind, f"The {kind.lower()} could not be written: {error}")
            self.finished.emit(kind, "", error)
            return True
        return False

    def _finish(self) -> None:
        self.stage = ""
        self._to_render = []
        self._close_progress()

    def cancel(self) -> None:
        if self.busy():
            self._cancel.set()
            if self.progress is not None:
                self.progress.setLabelText("Cancelling\u2026")

    def _done(self, kind: str, result: Any, error: str, on_done: Callable[[Any], str]) -> None:
        if self._stopped(kind, error if error or result is not None else "no result"):
            return
        self._finish()
        try:
            path = on_done(result)
        except Exception as exc:  # reporting must not lose the export
            log.exception("export follow-up failed")
            self.finished.emit(kind, "", type(exc).__name__)
            return
        self.finished.emit(kind, path, "ok")

    # ------------------------------------------------------------------ plan summary
    def export_report(self, path: Optional[str] = None) -> Optional[BackgroundCall]:
        kind = "Plan summary"
        if not self._can_export(kind):
            return None
        if path is None:
            path = self.prompter.ask_save_file("Export plan summary (PDF)",
                                               str(Path(self._default_dir()) / f"{self._stem()}-summary.pdf"),
                                               "PDF files (*.pdf)")
        if not path:
            return None
        target = Path(path)
        if target.suffix.lower() != ".pdf":
            target = target.with_suffix(".pdf")
        plan, images = self.plan.model_copy(deep=True), self._images()
        reports = self.session.results.reports()  # the checks the panel shows, for this very plan

        def prepare(progress) -> Prepared:
            from planner.report import build_report_data

            progress(0.05, "Checks, metrics and the reslice key images\u2026")
            data = build_report_data(plan, images, with_3d=False, reports=reports)
            return Prepared(data, data, plan, images)

        def write(data, progress):
            from planner.report import render_report_pdf

            progress(0.1, f"Writing {target.name}\u2026")
            _replace_atomically(lambda tmp: render_report_pdf(data, tmp), target)
            progress(1.0, f"Wrote {target.name}")
            return target, data

        def done(result) -> str:
            out, data = result
            self._remember_dir(out)
            n = sum(len(t.key_images) for t in data.trajectories)
            self.window.show_message(f"Wrote the plan summary {out} ({len(data.trajectories)} trajectories, "
                                     f"{n} key images)", 10000)
            return str(out)

        return self._run(kind, f"Writing the plan summary {target.name}\u2026", prepare, write, done)

    # ------------------------------------------------------------------ patient sheet
    def export_sheet(self, path: Optional[str] = None, lang: Optional[str] = None) -> Optional[BackgroundCall]:
        kind = "Patient sheet"
        if self.busy():
            self.window.show_message("An export is already running")
            return None
        if lang is None:
            lang = self.prompter.ask_language(self.window.settings.value("export/sheet_lang", "en", type=str))
            if lang is None:
                return None
        if path is None:
            path = self.prompter.ask_save_file(
                "Export patient sheet", str(Path(self._default_dir()) / f"{self._stem()}-patient-sheet-{lang}.pdf"),
                "PDF files (*.pdf);;Web page (*.html)")
        if not path:
            return None
        target = Path(path)
        if target.suffix.lower() not in (".pdf", ".html", ".htm"):
            target = target.with_suffix(".pdf")
        plan = self.plan.model_copy(deep=True)

        def prepare(progress) -> Prepared:
            from planner.report.sheet import ClinicInfo, build_sheet_data

            progress(0.1, "Composing the sheet\u2026")
            return Prepared(build_sheet_data(plan, lang, ClinicInfo.load(None)))

        def write(data, progress):
            from planner.report.sheet import measure_readability, running_text
            from planner.report.sheet_render import render_sheet

            progress(0.1, f"Writing {target.name}\u2026")
            _replace_atomically(lambda tmp: render_sheet(data, tmp), target)
            grade = None
            if lang == "en":
                try:
                    grade = measure_readability(running_text(data), lang).flesch_kincaid_grade
                except (LookupError, OSError):
                    grade = None
            progress(1.0, f"Wrote {target.name}")
            return target, grade

        def done(result) -> str:
            out, grade = result
            self._remember_dir(out)
            self.window.settings.setValue("export/sheet_lang", lang)
            extra = f", reading grade {grade:.1f}" if grade is not None else ""
            self.window.show_message(f"Wrote the patient sheet {out} ({SHEET_LANGUAGES[lang]}{extra})", 10000)
            if grade is not None and grade > plan.settings.sheet_max_grade:
                self.prompter.warn(kind, f"The sheet reads at grade {grade:.1f}, above the "
                                         f"{plan.settings.sheet_max_grade:g} set in the settings.")
            return str(out)

        return self._run(kind, f"Writing the patient sheet {target.name}\u2026", prepare, write, done)

    # ------------------------------------------------------------------ DICOM
    def export_dicom(self, folder: Optional[str] = None, *, deidentify: bool = False,
                     offer_send: bool = True) -> Optional[BackgroundCall]:
        kind = "Teaching export" if deidentify else "DICOM export"
        if not self._can_export(kind):
            return None
        if folder is None:
            parent = self.prompter.ask_folder(
                f"{kind}: choose where to create the export folder", self._default_dir())
            if not parent:
                return None
            name = f"{self._stem()}-{'teaching' if deidentify else 'dicom'}"
            out = Path(parent) / name
            n = 1
            while out.exists() and any(out.iterdir()):
                n += 1
                out = Path(parent) / f"{name}-{n}"
        else:
            out = Path(folder)
        plan, images = self.plan.model_copy(deep=True), self._images()
        reports = self.session.results.reports()  # the checks the panel shows, for this very plan

        def prepare(progress) -> Prepared:
            from planner.export import prepare_export

            progress(0.05, "Reading the source headers; checks, metrics and the reslice key images\u2026")
            prep = prepare_export(plan, images, deidentify=deidentify, with_3d=False, reports=reports)
            # the 3D key images come from the exported (for teaching: de-identified) plan and images
            return Prepared(prep, prep.report, prep.plan, dict(prep.images or {}))

        def work(prep, progress):
            from planner.export import write_export

            return write_export(prep, out, progress=progress)

        def done(result) -> str:
            self.last_dicom_result = result
            self._remember_dir(Path(result.folder))
            what = "de-identified teaching export" if deidentify else "DICOM export"
            self.window.show_message(f"Wrote the {what} to {result.folder} ({len(result.files)} files)", 10000)
            if deidentify:
                self.prompter.warn(kind, "The teaching export is written. Text burned into image pixels "
                                         "(names or dates on fluoroscopy frames) is not removed: look at every "
                                         f"image before sharing the folder:\n{result.folder}")
            elif offer_send and self.prompter.offer_send(
                    f"The plan summary, {len(result.key_image_files)} key images and the plan (structured "
                    f"report) were written to\n{result.folder}\n\nSend them to the PACS now?"):
                self.send_last_export()
            return str(result.folder)

        return self._run(kind, f"Writing the {kind.lower()}\u2026", prepare, work, done)

    def send_last_export(self) -> Any:
        """Send the DICOM files of the last export to a PACS (asks which one)."""
        result = self.last_dicom_result
        if result is None:
            self.prompter.warn("Send to PACS", "Export the plan to DICOM first (File > Export to DICOM).")
            return None
        from planner.views.pacs_dialog import send_to_pacs

        return send_to_pacs(self.window, [str(p) for p in result.dicom_files])

    # ------------------------------------------------------------------ PACS query / retrieve
    def open_pacs(self) -> Any:
        """The PACS window (non-modal): retrieved series are imported into the session."""
        from planner.views.pacs_dialog import PacsDialog

        dlg = self.pacs_dialog
        if dlg is None:
            dlg = PacsDialog(self.window)
            dlg.retrieved.connect(lambda folder: self.window.import_paths([folder]))
            dlg.plan_retrieved.connect(lambda path, node, _study: self.window.plan_images.open_pacs_plan(path, node))
            dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
            self.pacs_dialog = dlg
        dlg.show()
        dlg.raise_()
        return dlg

    def shutdown(self) -> None:
        self.cancel()
        if self.call is not None and self.call.is_running():
            self.call.wait(30000)
        self._close_progress()
        if self.pacs_dialog is not None:
            try:
                self.pacs_dialog.shutdown(5000)
            except RuntimeError:
                pass
