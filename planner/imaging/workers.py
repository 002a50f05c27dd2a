"""Decoder worker processes: every decoder that parses untrusted compressed data runs here, never in
the application process.

* One task at a time per worker; a task that runs past its time limit, or an import that is cancelled,
  kills its worker at once (SIGKILL) and a fresh one takes its place, so no decoder keeps running in
  the background ("abandoned threads") and Cancel takes effect within the polling interval (50 ms).
* A worker's data memory is capped for each task (``RLIMIT_DATA``: the decoded size the header
  declares, times a margin), so a decoder that allocates without bound fails with a memory error instead
  of exhausting the computer; its peak resident memory is reported with the result (:data:`STATS`).
* A decoder that crashes (segfault, abort) ends only its worker; the task is reported as a crash.
* Results come back as raw bytes received straight into preallocated arrays whose size was checked
  against what the header allows.

Workers are fresh interpreters (``python -m planner.imaging.decode_worker FD``) talking over a socket pair,
independent of how the application was started (no re-import of its main module); starting one takes
about half a second, so idle workers are kept for the next import and the GUI starts one at launch
(:func:`prestart`). Their stdin, stdout and stderr go to /dev/null: decoders print their complaints
there, and the import report gives the reason.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

log = logging.getLogger(__name__)

#: Worker processes used at most at once.
MAX_WORKERS = max(1, min(os.cpu_count() or 1, 8))
#: Tasks sent ahead to one worker.
DEPTH = 2
#: Seconds between two looks at the workers (also the longest a cancel waits).
POLL_S = 0.05
#: Seconds a new worker may take to start.
START_TIMEOUT_S = 60.0
#: Memory a worker may use for one task above its baseline: this many times the output, plus a fixed
#: allowance (decoders work in 32-bit integers per component and keep the compressed input).
MEMORY_MARGIN = 6
MEMORY_ALLOWANCE = 256 * 1024 * 1024

@dataclass
class Task:
    key: Any
    function: str  # a name in planner.imaging.decode_worker.FUNCTIONS
    args: tuple
    #: the arrays that come back may hold at most this many bytes (from the header)
    max_output_bytes: int


@dataclass
class Outcome:
    key: Any
    status: str  # "ok", "error", "timeout", "crash", "cancelled"
    arrays: list[np.ndarray] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: for "error": "ExceptionName: message" from the worker
    error: str = ""
    peak_bytes: int = 0
    seconds: float = 0.0


@dataclass
class Stats:
    """Totals since :func:`reset_stats` (for benchmarks): tasks run, workers killed, largest worker peak."""

    tasks: int = 0
    killed: int = 0
    crashed: int = 0
    max_peak_bytes: int = 0


STATS = Stats()
_lock = threading.Lock()
_idle: list["_Worker"] = []


def reset_stats() -> None:
    global STATS
    STATS = Stats()


# ------------------------------------------------------------------ parent side
_ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([_ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                   PYTHONDONTWRITEBYTECODE="1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "planner.imaging.decode_worker", str(child_sock.fileno())],
                pass_fds=[child_sock.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=env, close_fds=True)
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        #: tasks sent, in order; the first is running (since ``started``)
        self.inflight: deque[Task] = deque()
        self.started = 0.0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            self.conn.close()
        except OSError:
            pass


def _checkout() -> _Worker:
    with _lock:
        while _idle:
            w = _idle.pop()
            if w.alive():
                return w
            w.kill()
    return _Worker()


def _checkin(w: _Worker) -> None:
    with _lock:
        if len(_idle) < MAX_WORKERS and w.alive():
            _idle.append(w)
            return
    w.kill()


def shutdown() -> None:
    """Stop the idle workers (they also end by themselves when this process ends)."""
    with _lock:
        idle = list(_idle)
        _idle.clear()
    for w in idle:
        w.kill()


def prestart() -> None:
    """Start the fork server and one idle worker (call in the background at application start)."""
    try:
        _checkin(_checkout())
    except (OSError, RuntimeError) as exc:
        log.warning("decoder processes could not start: %s", exc)


def run_tasks(tasks: list[Task], *, time_limit_s: float, cancel: Any = None,
              on_outcome: Callable[[Outcome], None], parallel: Optional[int] = None,
              memory_budget: Optional[int] = None) -> None:
    """Run ``tasks`` on worker processes; ``on_outcome`` is called (on this thread) once for every task,
    in the order they end. Never raises for a task's failure; a cancel ends every task at once.

    Each worker gets up to :data:`DEPTH` tasks ahead (the next waits in its socket while one runs, so it
    never idles between two files); the time limit counts from the moment a task's turn comes."""
    queue = deque(tasks)
    mine: list[_Worker] = []  # the workers this call uses
    n = max(1, min(parallel or MAX_WORKERS, MAX_WORKERS))

    def cancelled() -> bool:
        try:
            return bool(cancel is not None and cancel.is_set())
        except Exception:  # noqa: BLE001 - a broken cancel object must not break the import
            return False

    def end(w: _Worker, outcome: Outcome, keep: bool) -> None:
        """The worker's current task ended; ``keep`` False kills the worker and requeues its other tasks."""
        now = time.monotonic()
        outcome.seconds = now - w.started
        STATS.tasks += 1
        STATS.max_peak_bytes = max(STATS.max_peak_bytes, outcome.peak_bytes)
        w.inflight.popleft()
        w.started = now
        if not keep:
            queue.extendleft(reversed(w.inflight))
            w.inflight.clear()
            w.kill()
            mine.remove(w)
        on_outcome(outcome)

    def pick() -> _Worker:
        idle = [w for w in mine if not w.inflight]
        if idle:
            return idle[0]
        if len(mine) < n:
            w = _checkout()
            mine.append(w)
            return w
        return min(mine, key=lambda x: len(x.inflight))

    try:
        while queue or any(w.inflight for w in mine):
            if cancelled():
                for w in [w for w in mine if w.inflight]:
                    for task in w.inflight:
                        on_outcome(Outcome(task.key, "cancelled"))
                    w.inflight.clear()
                    w.kill()
                    mine.remove(w)
                while queue:
                    on_outcome(Outcome(queue.popleft().key, "cancelled"))
                return
            while queue and (len(mine) < n or any(len(w.inflight) < DEPTH for w in mine)):
                task = queue.popleft()
                memory = MEMORY_MARGIN * task.max_output_bytes + MEMORY_ALLOWANCE
                if memory_budget is not None:
                    memory = min(memory, max(memory_budget, MEMORY_ALLOWANCE))
                try:
                    w = pick()
                    w.conn.send((task.function, task.args, memory))
                except (OSError, RuntimeError, ValueError) as exc:
                    first_line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                    on_outcome(Outcome(task.key, "error", error=f"the decoder process could not start ({first_line})"))
                    continue
                if not w.inflight:
                    w.started = time.monotonic()
                w.inflight.append(task)
            busy = {w.conn: w for w in mine if w.inflight}
            if not busy:
                continue
            from multiprocessing.connection import wait

            for r in wait(list(busy), timeout=POLL_S):  # a worker that dies makes its socket readable (EOF)
                w = busy[r]
                while w in mine and w.inflight and (not w.conn.closed) and w.conn.poll():
                    _receive(w, end)  # every answer that is there
                if w in mine and w.inflight and not w.alive():
                    _receive(w, end)  # the crash of the current task
            now = time.monotonic()
            for w in [w for w in mine if w.inflight]:
                if now - w.started > time_limit_s:
                    STATS.killed += 1
                    end(w, Outcome(w.inflight[0].key, "timeout"), keep=False)
    finally:
        for w in mine:
            if w.inflight:
                w.kill()
            else:
                _checkin(w)


def _receive(w: _Worker, end: Callable[[_Worker, Outcome, bool], None]) -> None:
    from multiprocessing import BufferTooShort

    task = w.inflight[0]
    try:
        if not w.conn.poll():
            raise EOFError  # the process ended without an answer
        msg = w.conn.recv()
    except (EOFError, OSError):
        STATS.crashed += 1
        end(w, Outcome(task.key, "crash"), False)
        return
    status, peak = msg[0], int(msg[-1])
    if status != "ok":
        end(w, Outcome(task.key, "error", error=str(msg[1]), peak_bytes=peak), True)
        return
    specs, meta = msg[1], msg[2]
    total = sum(math.prod(shape) * np.dtype(dt).itemsize for dt, shape in specs)
    if total > task.max_output_bytes:
        end(w, Outcome(task.key, "error", peak_bytes=peak,
                       error=f"the decoder produced {total} bytes, more than the header allows "
                             f"({task.max_output_bytes})"), False)
        return
    arrays = []
    try:
        for dt, shape in specs:
            a = np.empty(shape, dtype=np.dtype(dt))
            if a.nbytes:
                w.conn.recv_bytes_into(memoryview(a).cast("B"))
            else:
                w.conn.recv_bytes()
            arrays.append(a)
    except (EOFError, OSError, ValueError, BufferTooShort) as exc:
        STATS.crashed += 1
        end(w, Outcome(task.key, "crash", error=str(exc), peak_bytes=peak), False)
        return
    end(w, Outcome(task.key, "ok", arrays=arrays, meta=dict(meta), peak_bytes=peak), True)
