"""Run the importer on many inputs in child processes and watch each one: time, peak memory (the child
and its decoder workers), uncaught exceptions, child crashes, hangs and silent drops (a file that gets
no report entry).

Child side (``python -m tests.fuzz.runner --time-limit S``): reads one path per line on stdin, imports
it with :func:`planner.imaging.load_path` and writes one JSON line per input on stdout.

Parent side (:func:`run_inputs`): feeds the inputs to a child, restarts it after a crash or a hang (the
input being processed is then reported as such), and returns one :class:`Result` per input.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    path: str
    status: str  # "ok", "exception" (uncaught in load_path), "crash" (child died), "hang" (no answer)
    seconds: float = 0.0
    rss_peak: int = 0  # the importing process, bytes
    worker_peak: int = 0  # the largest decoder worker, bytes
    loaded: int = 0
    skipped: int = 0
    silent: list[str] = field(default_factory=list)  # files without a report entry
    error: str = ""
    reasons: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return self.rss_peak + self.worker_peak


# ------------------------------------------------------------------ child
def _expected_files(path: str) -> list[str]:
    """The files a report must mention for this input (regular files only; a zip by its members)."""
    p = Path(path)
    if os.path.realpath(p).startswith(("/proc/", "/sys/")) or os.path.realpath(p) in ("/proc", "/sys"):
        return [path]  # refused as a whole
    if p.is_dir():
        return [str(Path(d) / f) for d, _dirs, files in os.walk(p) for f in files]
    return [path]


def _child(time_limit: float, header_limit: float) -> None:
    sys.path.insert(0, str(ROOT))
    from planner.imaging import load_path, workers
    from planner.imaging.limits import ImportLimits

    limits = ImportLimits(time_limit_s=time_limit, header_time_limit_s=header_limit)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the protocol stream
    for line in sys.stdin:
        path = line.rstrip("\n")
        if not path:
            continue
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
        workers.reset_stats()
        t0 = time.monotonic()
        res: dict = {"path": path, "status": "ok"}
        try:
            result = load_path(path, limits=limits)
            names = set(result.report.files)
            res["loaded"] = len(result.report.loaded_files)
            res["skipped"] = len(result.report.skipped_files)
            res["reasons"] = sorted({e.reason.split("(")[0].split(":")[0][:60] for e in result.report.skipped_files})
            silent = []
            for f in _expected_files(path):
                if f not in names and not any(n.startswith(f + "!") for n in names):
                    silent.append(f)
            res["silent"] = silent
            bad = [e.name for e in result.report.skipped_files if not e.reason.strip() or "Traceback" in e.reason]
            if bad:
                res["status"], res["error"] = "exception", f"empty or traceback reason for {bad[:3]}"
        except BaseException as exc:  # noqa: BLE001 - this is what the fuzz looks for
            res["status"] = "exception"
            res["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]
        res["seconds"] = time.monotonic() - t0
        res["rss_peak"] = _hwm()
        res["worker_peak"] = workers.STATS.max_peak_bytes
        out.write(json.dumps(res) + "\n")
        out.flush()


def _hwm() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------ parent
def run_inputs(paths: Iterable[str], *, time_limit: float = 10.0, header_limit: float = 10.0,
               grace: float = 30.0, nice: int = 0,
               on_result: Optional[Callable[[Result], None]] = None) -> list[Result]:
    """Import every path in a child process (one after the other); returns one Result per path."""
    todo = [str(p) for p in paths]
    results: list[Result] = []
    while todo:
        done = _run_child(todo, time_limit, header_limit, grace, nice, results, on_result)
        todo = todo[done:]
    return results


def _run_child(todo: list[str], time_limit: float, header_limit: float, grace: float, nice: int,
               results: list[Result], on_result: Optional[Callable[[Result], None]]) -> int:
    """Feed ``todo`` to one child until it ends or fails; returns how many inputs were handled."""
    cmd = [sys.executable, "-m", "tests.fuzz.runner", "--time-limit", str(time_limit), "--header-limit",
           str(header_limit)]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stdin is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    handled = 0
    startup = 30.0
    try:
        for path in todo:
            t0 = time.monotonic()
            try:
                proc.stdin.write(path + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                _record(results, on_result, Result(path, "crash", error="the importing process had ended"))
                return handled + 1
            deadline = t0 + time_limit + header_limit + grace + startup
            line = ""
            while not line:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    proc.kill()
                    _record(results, on_result, Result(path, "hang", seconds=time.monotonic() - t0))
                    return handled + 1
                line = proc.stdout.readline()
                if not line:  # end of stream: the child died
                    proc.wait(10)
                    _record(results, on_result, Result(path, "crash", seconds=time.monotonic() - t0,
                                                       error=f"exit code {proc.returncode}"))
                    return handled + 1
            startup = 0.0
            d = json.loads(line)
            _record(results, on_result, Result(
                d["path"], d["status"], d.get("seconds", 0.0), d.get("rss_peak", 0), d.get("worker_peak", 0),
                d.get("loaded", 0), d.get("skipped", 0), d.get("silent", []), d.get("error", ""),
                d.get("reasons", [])))
            handled += 1
        return handled
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _record(results: list[Result], on_result: Optional[Callable[[Result], None]], r: Result) -> None:
    results.append(r)
    if on_result is not None:
        on_result(r)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--header-limit", type=float, default=10.0)
    a = ap.parse_args()
    _child(a.time_limit, a.header_limit)
