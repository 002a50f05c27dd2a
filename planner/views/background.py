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

from PySide6.QtCore import QEventLoop, QObject, Qt, QThread, QTimer, Signal, Slot

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


#: A progress dialog shows when the work has taken this long (ms): short work finishes without a flashing dialog.
PROGRESS_SHOWN_AFTER_MS = 300


class ProgressDialogOwner:
    """Mixin for the owners of one window-modal progress dialog (with Cancel) at a time."""

    progress: Any = None

    @property
    def busy(self) -> bool:
        """True while a progress dialog's work runs (:meth:`run_modal` waits in a local event loop, where a
        timer or a queued event could ask for more work: the owner refuses it)."""
        return self.progress is not None

    def _open_progress(self, parent: Any, title: str, label: str, on_cancel: Callable[[], None]) -> None:
        from PySide6.QtWidgets import QProgressDialog

        dlg = QProgressDialog(label, "Cancel", 0, 1000, parent)
        dlg.setWindowTitle(title)
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setMinimumDuration(PROGRESS_SHOWN_AFTER_MS)  # short work finishes without a flashing dialog
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

    def run_modal(self, parent: Any, title: str, label: str, work: Callable[..., Any],
                  stopped_by: tuple[type[BaseException], ...] = ()) -> tuple[Any, bool]:
        """``work(progress, cancel)`` run off the GUI thread while the GUI thread waits in a local event loop
        (the windows stay drawn), behind a progress dialog modal to every window (shown after 0.3 s, before
        which no user input is taken; nothing can be edited meanwhile), with Cancel.

        ``progress(fraction, message)`` moves the bar (a work that never calls it shows a busy bar);
        ``cancel()`` turns True after Cancel, and a work that cannot stop midway ends on its own. Returns
        ``(result, cancelled)``, ``(None, True)`` after Cancel whatever the work returned; raises what the
        work raised, except ``stopped_by`` (how it stops for Cancel) after Cancel. For short work (seconds)
        that reads, and does not change, what the user could otherwise edit."""
        stop = [False]
        outcome: list[tuple[Any, Optional[BaseException]]] = []

        def run(progress: Callable[[float, str], None]) -> None:
            try:
                outcome.append((work(progress, lambda: stop[0]), None))
            except Exception as exc:  # handed back to the GUI thread and raised there
                outcome.append((None, exc))

        def cancel() -> None:
            stop[0] = True
            if self.progress is not None:
                self.progress.setLabelText("Cancelling...")

        def moved(fraction: float, message: str) -> None:
            if self.progress is not None and self.progress.maximum() == 0:
                self.progress.setRange(0, 1000)  # the first news ends the busy bar
            if not stop[0]:
                self._on_progress(fraction, message)

        self._open_progress(parent, title, label, cancel)
        self.progress.setWindowModality(Qt.WindowModality.ApplicationModal)  # (a panel may float on its own)
        self.progress.setRange(0, 0)  # busy until the work says how far it is
        self.progress.setValue(0)  # (starts the clock that shows the dialog after its minimum duration)
        call = BackgroundCall(run)
        call.progress.connect(moved)
        loop = QEventLoop()
        call.finished.connect(lambda *_: loop.quit())
        call.start()
        if not call.done:
            # until the dialog shows (and blocks the windows), no click or key reaches them: a second click on
            # the button that started the work waits until it is done
            QTimer.singleShot(PROGRESS_SHOWN_AFTER_MS, loop.quit)
            loop.exec(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        if not call.done:
            self.progress.show()
            loop.exec()
        call.wait()
        self._close_progress()
        result, error = outcome[0]
        if stop[0]:
            if error is not None and not isinstance(error, stopped_by):
                raise error
            return None, True
        if error is not None:
            raise error
        return result, False
