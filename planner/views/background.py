"""Running a slow call off the GUI thread: :class:`BackgroundCall` runs ``fn(progress)`` in a QThread
and delivers ``finished(result, error)`` and ``progress(fraction, message)`` on the GUI thread.

Expected failures raise an exception whose message is meant for the user (``PacsError``,
``ExportError``, ``OSError``...); anything else is logged and reported as an unexpected failure, never
as a traceback.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

log = logging.getLogger(__name__)


def user_message(exc: BaseException) -> str:
    """A message for the user from an expected exception (the PACS, export and file errors)."""
    if isinstance(exc, OSError) and not type(exc).__module__.startswith("planner"):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def _expected(exc: BaseException) -> bool:
    from planner.export import ExportError
    from planner.imaging.pacs import PacsError

    return isinstance(exc, (PacsError, ExportError, OSError))


def failure_message(exc: BaseException) -> str:
    """The message for the user about ``exc``: its own text for the expected failures, else a short
    note (the traceback goes to the log; call this inside the ``except`` block)."""
    if _expected(exc):
        return user_message(exc)
    log.exception("background operation failed unexpectedly")
    return f"The operation failed unexpectedly ({type(exc).__name__}). Please report this with the log file."


class _Worker(QObject):
    #: (result, error message or "")
    done = Signal(object, str)
    progress = Signal(float, str)

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        self._last_emit = 0.0

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn(self._progress)
        except Exception as exc:  # a bug must not kill the window
            self.done.emit(None, failure_message(exc))
            return
        self.done.emit(result, "")

    def _progress(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - self._last_emit > 0.05:  # at most about 20 updates a second
            self._last_emit = now
            self.progress.emit(float(fraction), str(message))


class BackgroundCall(QObject):
    """Runs ``fn(progress)`` in a QThread; ``finished(result, error)`` arrives on the GUI thread."""

    finished = Signal(object, str)
    progress = Signal(float, str)

    def __init__(self, fn: Callable[..., Any], parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("bvn-background")
        self._worker = _Worker(fn)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.done.connect(self._on_done)
        # QThread.quit is thread-safe: call it from the worker thread, so wait() on the GUI thread returns
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self.result: Any = None
        self.error = ""
        self.done = False

    def start(self) -> "BackgroundCall":
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, ms: int = 30000) -> bool:
        return bool(self._thread.wait(ms))

    @Slot(object, str)
    def _on_done(self, result: Any, error: str) -> None:
        self.result, self.error, self.done = result, error, True
        self.finished.emit(result, error)


class ProgressDialogOwner:
    """Mixin for the owners of one window-modal progress dialog (with Cancel) at a time."""

    progress: Any = None

    def _open_progress(self, parent: Any, title: str, label: str, on_cancel: Callable[[], None]) -> None:
        from PySide6.QtWidgets import QProgressDialog

        dlg = QProgressDialog(label, "Cancel", 0, 1000, parent)
        dlg.setWindowTitle(title)
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setMinimumDuration(300)  # short work finishes without a flashing dialog
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.canceled.connect(on_cancel)
        self.progress = dlg

    def _on_progress(self, fraction: float, message: str) -> None:
        dlg = self.progress  # (setValue of a modal dialog processes events: the work may end inside it)
        if dlg is not None:
            if message:
                dlg.setLabelText(message)
            dlg.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.reset()
            self.progress.hide()
            self.progress.deleteLater()
            self.progress = None
