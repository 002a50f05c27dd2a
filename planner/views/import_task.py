"""Image import for the main window: off the GUI thread, with a progress dialog and Cancel; the
import report dialog; and the drag-and-drop helper.

Use from the main window::

    task = ImportTask(paths, parent=self)          # paths: folders, DICOMDIR, zip, image files
    task.finished.connect(self._on_import_done)    # receives the ImportResult (also when cancelled)
    task.start()

    def _on_import_done(self, result):
        for key, image in result.images.items():
            self.session.add_image(key, image)
        if result.report.skipped_files or result.report.notes or result.report.series_warnings:
            show_import_report(self, result)

Drag and drop (in the main window)::

    self.setAcceptDrops(True)
    def dragEnterEvent(self, event):
        if paths_from_mime(event.mimeData()):
            event.acceptProposedAction()
    def dropEvent(self, event):
        paths = paths_from_mime(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)     # e.g. the ImportTask code above

The worker calls :func:`planner.imaging.load_path`; progress reaches the dialog through a queued
signal (at most about 20 updates a second), so the window stays responsive. Cancel sets a
``threading.Event``; the import stops promptly and the result holds what was complete.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from PySide6.QtCore import QObject, Qt, QThread, QUrl, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressDialog,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from planner.imaging import ImportReport, ImportResult, load_path

log = logging.getLogger(__name__)


class _Worker(QObject):
    progress = Signal(float, str)
    done = Signal(object)

    def __init__(self, paths: list[str], cancel: threading.Event, load_pixels: bool) -> None:
        super().__init__()
        self.paths = paths
        self.cancel = cancel
        self.load_pixels = load_pixels

    @Slot()
    def run(self) -> None:
        try:
            result = load_path(self.paths, progress=self._progress, cancel=self.cancel, load_pixels=self.load_pixels)
        except Exception as exc:  # a bug must not kill the window: report it like a skipped import
            log.exception("import failed")
            result = ImportResult()
            result.report.note(f"The import failed unexpectedly ({type(exc).__name__}: {exc}). "
                               "Please report this with the log file.")
            result.report.cancelled = self.cancel.is_set()
        self.done.emit(result)

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.emit(float(fraction), str(message))


_RUNNING: set["ImportTask"] = set()


class ImportTask(QObject):
    """Runs :func:`load_path` in a QThread with a QProgressDialog (Cancel) and emits ``finished``
    with the :class:`ImportResult` (also after Cancel, holding what was complete)."""

    #: the ImportResult
    finished = Signal(object)
    #: (fraction 0..1, message)
    progress = Signal(float, str)

    def __init__(self, paths: Union[str, Path, Sequence[Union[str, Path]]], parent: Optional[QWidget] = None, *,
                 load_pixels: bool = True, show_dialog: bool = True, min_duration_ms: int = 400) -> None:
        super().__init__(parent)
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [str(p) for p in paths]
        self._load_pixels = load_pixels
        self.cancel_event = threading.Event()
        self.result: Optional[ImportResult] = None
        self._parent_widget = parent
        self._thread: Optional[QThread] = None
        self._worker: Optional[_Worker] = None
        self.dialog: Optional[QProgressDialog] = None
        if show_dialog:
            dlg = QProgressDialog("Reading images...", "Cancel", 0, 1000, parent)
            dlg.setWindowTitle("Importing images")
            dlg.setWindowModality(Qt.WindowModality.WindowModal)
            dlg.setMinimumDuration(min_duration_ms)
            dlg.setAutoClose(False)
            dlg.setAutoReset(False)
            dlg.setValue(0)
            dlg.canceled.connect(self.cancel)
            self.dialog = dlg

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("an ImportTask runs once")
        thread = QThread()
        thread.setObjectName("bvn-import")
        worker = _Worker(self.paths, self.cancel_event, self._load_pixels)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_done)
        # direct: the worker thread ends its own event loop at once (a queued quit would wait for the
        # GUI thread, and wait() called from the GUI thread would then block until its timeout)
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(worker.deleteLater)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        _RUNNING.add(self)  # kept alive until its thread has ended, even if the caller drops its reference
        thread.start()

    def cancel(self) -> None:
        """Ask the import to stop; ``finished`` follows promptly with what was complete."""
        self.cancel_event.set()
        if self.dialog is not None:
            self.dialog.setLabelText("Cancelling...")

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def wait(self, ms: int = 30000) -> bool:
        """Block until the worker thread ends (for tests and shutdown)."""
        return True if self._thread is None else bool(self._thread.wait(ms))

    # ---------------------------------------------------------------- slots (GUI thread)
    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.emit(fraction, message)
        if self.dialog is not None and not self.cancel_event.is_set():
            self.dialog.setLabelText(message)
            self.dialog.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._thread is not None:
            self._thread.wait(5000)  # "finished" comes just before the thread really ends
        _RUNNING.discard(self)

    @Slot(object)
    def _on_done(self, result: ImportResult) -> None:
        self.result = result
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self.cancel)
            self.dialog.reset()
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
        self.finished.emit(result)


# ------------------------------------------------------------------ report dialog
class ImportReportDialog(QDialog):
    """The import report: summary, notes, per-series warnings and every file with its status and reason."""

    def __init__(self, report: ImportReport, parent: Optional[QWidget] = None,
                 series_names: Optional[dict[str, str]] = None) -> None:
        super().__init__(parent)
        self.report = report
        names = series_names or {}
        self.setWindowTitle("Import report")
        self.resize(900, 520)
        layout = QVBoxLayout(self)
        self.summary_label = QLabel(report.summary())
        self.summary_label.setObjectName("importSummary")
        f = self.summary_label.font()
        f.setBold(True)
        self.summary_label.setFont(f)
        layout.addWidget(self.summary_label)
        lines = [f"Note: {n}" for n in report.notes]
        for key, ws in report.series_warnings.items():
            lines += [f"Warning ({names.get(key, key)}): {w}" for w in ws]
        self.messages = QPlainTextEdit("\n".join(lines))
        self.messages.setReadOnly(True)
        self.messages.setMaximumHeight(120)
        self.messages.setVisible(bool(lines))
        layout.addWidget(self.messages)
        self.skipped_only = QCheckBox("Show skipped files only")
        self.skipped_only.setChecked(bool(report.skipped_files))
        self.skipped_only.toggled.connect(self._fill)
        layout.addWidget(self.skipped_only)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["File", "Status", "Reason / loaded into"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        hdr = self.table.horizontalHeader()
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        hdr.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        hdr.setStretchLastSection(True)
        self.table.setColumnWidth(0, 380)
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy report")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self._fill()

    def _fill(self) -> None:
        entries = self.report.skipped_files if self.skipped_only.isChecked() else list(self.report.files.values())
        self.table.setRowCount(len(entries))
        for row, e in enumerate(entries):
            status = "Skipped" if e.status == "skipped" else "Loaded"
            for col, text in enumerate((e.name, status, e.reason)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if col == 1 and e.status == "skipped":
                    item.setForeground(Qt.GlobalColor.darkRed)
                self.table.setItem(row, col, item)

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setText(self.report.to_text(max_files=100000))


def show_import_report(parent: Optional[QWidget], report_or_result: Union[ImportReport, ImportResult], *,
                       modal: bool = False) -> ImportReportDialog:
    """Show the import report (loaded/skipped files with reasons). Returns the dialog; with
    ``modal=True`` it runs until closed."""
    names: dict[str, str] = {}
    if isinstance(report_or_result, ImportResult):
        report = report_or_result.report
        names = {s.key: " ".join(x for x in (s.modality, f'"{s.description}"' if s.description else "") if x) or s.key
                 for s in report_or_result.series}
    else:
        report = report_or_result
    dlg = ImportReportDialog(report, parent, names)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, not modal)
    if modal:
        dlg.exec()
    else:
        dlg.show()
    return dlg


# ------------------------------------------------------------------ drag and drop
def paths_from_mime(mime_data: Any) -> list[Path]:
    """Existing local files and folders named by dropped data (file URLs, or plain text with one path per
    line). Non-local URLs and paths that do not exist are ignored; the order is kept, duplicates removed."""
    out: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = str(p)
        if key not in seen and p.exists():
            seen.add(key)
            out.append(p)

    if mime_data is None:
        return out
    urls: Iterable[QUrl] = mime_data.urls() if mime_data.hasUrls() else []
    for url in urls:
        if url.isLocalFile():
            local = url.toLocalFile()
            if local:
                add(Path(local))
    if not out and mime_data.hasText():
        for line in mime_data.text().splitlines():
            line = line.strip().strip('"')
            if not line:
                continue
            if line.startswith("file:"):
                url = QUrl(line)
                if url.isLocalFile():
                    add(Path(url.toLocalFile()))
            else:
                add(Path(line).expanduser())
    return out
