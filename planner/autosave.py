"""Autosave and crash recovery.

While a plan is open, every change is written (throttled: at most :attr:`AutosaveController.interval_s`
after the first unsaved change, never held back by further edits) to a *recovery file* beside the plan
(``.<name>.bvnplan.recovery``), or, for a plan never saved, in the user's data folder. A small
*session record* (``<data>/recovery/session-<pid>-<id>.json``) says which recovery file belongs to which
running process: host, boot id, PID and the process's start time (:class:`planner.safefiles.ProcessIdentity`),
so a PID that now belongs to another process, or a reboot, never hides a crashed session. A clean close
or a save removes the recovery file; after a crash the record and the recovery file remain, and the
next start offers to recover them (:func:`find_orphaned_recoveries`, which also removes temporary
files that killed saves left behind).

Writes are atomic (planner.storage.atomic_write_text), so a crash during an autosave leaves the previous
recovery file intact. The scheduling is injected (a Qt timer in the GUI, a fake clock in tests), so this
module stays free of Qt and threads.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from planner.document import PlanChange, PlanDocument
from planner.logsafe import data_dir
from planner.safefiles import ProcessIdentity, read_regular, remove_stale_temporaries
from planner.storage import PlanFileError, atomic_write_text, load_plan, plan_to_json

log = logging.getLogger(__name__)

RECOVERY_SUFFIX = ".recovery"


def recovery_dir() -> Path:
    return data_dir() / "recovery"


def recovery_path_for(plan_path: Optional[os.PathLike | str], plan_id: str) -> Path:
    """Where the recovery file of a plan lives: beside the plan, or in the data folder if unsaved."""
    if plan_path:
        p = Path(plan_path)
        return p.with_name(f".{p.name}{RECOVERY_SUFFIX}")
    return recovery_dir() / f"unsaved-{plan_id}.bvnplan{RECOVERY_SUFFIX}"


@dataclass
class OrphanedRecovery:
    """A recovery file left by a session that did not close cleanly."""

    record_path: Path
    recovery_path: Path
    plan_path: Optional[str]
    updated: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.updated))
        name = Path(self.plan_path).name if self.plan_path else "an unsaved plan"
        return f"{name} (changes autosaved at {when})"

    def load(self):
        return load_plan(self.recovery_path)

    def discard(self) -> None:
        for p in (self.recovery_path, self.record_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


#: A session record is a few hundred bytes.
_MAX_RECORD_BYTES = 64 * 1024


def find_orphaned_recoveries() -> list[OrphanedRecovery]:
    """Recovery files of sessions that ended without closing (crash, kill, power loss). Also removes
    the temporary files that saves killed half-way left behind (:func:`planner.safefiles.remove_stale_temporaries`)."""
    remove_stale_temporaries()
    out: list[OrphanedRecovery] = []
    folder = recovery_dir()
    if not folder.is_dir():
        return out
    me = ProcessIdentity.current()
    for rec in sorted(folder.glob("session-*.json")):
        try:
            info = json.loads(read_regular(rec, _MAX_RECORD_BYTES).decode("utf-8"))
            writer = ProcessIdentity.from_dict(info)
            recovery = Path(info["recovery_path"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring unreadable recovery record %s", rec.name)
            continue
        if writer == me or (writer.host == me.host and writer.pid == me.pid):
            continue  # this session's own record
        if writer.may_be_running():
            continue  # still running (or on another computer that shares this folder)
        if not recovery.is_file():
            try:
                rec.unlink()
            except OSError:
                pass
            continue
        out.append(OrphanedRecovery(rec, recovery, info.get("plan_path"), float(info.get("updated", 0))))
    return out


class AutosaveController:
    """Writes a document's unsaved changes to its recovery file, throttled.

    ``schedule(delay_s, callback)`` must call ``callback`` once after ``delay_s`` seconds on the thread
    that owns the document (the GUI uses ``QTimer.singleShot``).
    """

    def __init__(self, document: PlanDocument, schedule: Callable[[float, Callable[[], None]], None],
                 interval_s: float = 1.0) -> None:
        self.document = document
        self.schedule = schedule
        self.interval_s = interval_s
        self._pending = False
        self._session_id = uuid.uuid4().hex[:8]
        self._record = recovery_dir() / f"session-{os.getpid()}-{self._session_id}.json"
        self._written_revision: Optional[int] = None
        self._recovery_path: Optional[Path] = None
        self.last_error: Optional[str] = None
        self._closed = False
        document.changed.connect(self._on_changed)
        document.dirty_changed.connect(self._on_dirty_changed)

    # -------------------------------------------------------------------- wiring
    @property
    def recovery_path(self) -> Path:
        return recovery_path_for(self.document.path, self.document.plan.plan_id)

    def _on_changed(self, change: PlanChange) -> None:
        if self._closed:
            return
        if change.source == "load":
            self.discard()
            return
        if self.document.is_dirty and not self._pending:
            self._pending = True
            self.schedule(self.interval_s, self._tick)

    def _on_dirty_changed(self, dirty: bool) -> None:
        if not dirty:
            self.discard()  # saved (or undone back to the saved state)

    def _tick(self) -> None:
        self._pending = False
        if self._closed:
            return
        self.flush()

    # -------------------------------------------------------------------- actions
    def flush(self) -> bool:
        """Write the recovery file now if there are unsaved changes. Returns True if written."""
        doc = self.document
        if not doc.is_dirty or self._written_revision == doc.revision:
            return False
        target = self.recovery_path
        try:
            if self._recovery_path is not None and self._recovery_path != target:
                self._remove(self._recovery_path)  # the plan was saved under another name
            atomic_write_text(target, plan_to_json(doc.plan))
            self._recovery_path = target
            self._write_record(target)
            self._written_revision = doc.revision
            self.last_error = None
            return True
        except OSError as exc:
            # Never interrupt the user for an autosave failure; report it in the status bar.
            self.last_error = f"Autosave failed: {exc.strerror or exc}"
            log.warning("autosave failed: %s", exc.strerror or exc)
            return False
        except ValueError as exc:  # a value JSON cannot hold (the plan model refuses them; a bug if seen)
            self.last_error = f"Autosave failed: the plan holds a value that cannot be saved ({exc})"
            log.error("autosave failed: %s", exc)
            return False

    def _write_record(self, target: Path) -> None:
        info = {**ProcessIdentity.current().to_dict(), "recovery_path": str(target),
                "plan_path": self.document.path, "updated": time.time()}
        atomic_write_text(self._record, json.dumps(info))

    def discard(self) -> None:
        """Remove this session's recovery file and record (after a save, a clean close or opening a plan)."""
        if self._recovery_path is not None:
            self._remove(self._recovery_path)
            self._recovery_path = None
        self._remove(self._record)
        self._written_revision = None

    def close(self) -> None:
        """Clean shutdown: the user saved or chose to discard changes."""
        self.discard()
        self._closed = True
        self.document.changed.disconnect(self._on_changed)
        self.document.dirty_changed.disconnect(self._on_dirty_changed)

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path.name, exc.strerror)


__all__ = ["AutosaveController", "OrphanedRecovery", "find_orphaned_recoveries", "recovery_path_for",
           "PlanFileError"]
