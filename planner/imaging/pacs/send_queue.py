"""A send queue kept on disk, so exports reach the PACS even when it is down now or the program is closed:
:func:`enqueue` copies the files into a private queue folder (0700; the export folder may be moved or
deleted afterwards) and records the job; :func:`process` sends what is due, removes what arrived, and keeps
what failed with the reason and a later retry time (backing off up to an hour). The queue survives a
restart: it is read again from disk."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from planner.imaging.pacs.common import CancelLike, PacsError, _is_cancelled, log
from planner.imaging.pacs.received import private_folder, write_private
from planner.logsafe import data_dir
from planner.safefiles import atomic_write_text

#: Seconds before the first retry; doubled after each failure, at most MAX_DELAY_S.
FIRST_DELAY_S = 60.0
MAX_DELAY_S = 3600.0


@dataclass
class SendJob:
    id: str
    node_name: str
    files: list[str]
    added: float = field(default_factory=time.time)
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""

    @property
    def folder(self) -> Path:
        return queue_root() / self.id


def queue_root() -> Path:
    return data_dir() / "pacs-send-queue"


def _index() -> Path:
    return queue_root() / "queue.json"


def load_jobs() -> list[SendJob]:
    try:
        data = json.loads(_index().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("the PACS send queue %s is unreadable; it is kept aside and a new one started", _index())
        os.replace(_index(), _index().with_suffix(f".damaged-{int(time.time())}"))
        return []
    jobs = []
    for d in data.get("jobs", []) if isinstance(data, dict) else []:
        try:
            jobs.append(SendJob(**d))
        except TypeError:
            log.warning("a damaged entry of the PACS send queue was dropped")
    return jobs


def _save(jobs: Sequence[SendJob]) -> None:
    private_folder(queue_root())
    atomic_write_text(_index(), json.dumps({"version": 1, "jobs": [asdict(j) for j in jobs]}, indent=1))


def enqueue(node: Any, files: Sequence[Union[str, os.PathLike]]) -> SendJob:
    """Put a copy of ``files`` in the queue for ``node`` (by its name); returns the job."""
    job = SendJob(id=uuid.uuid4().hex, node_name=node.display_name, files=[])
    private_folder(job.folder)
    for i, f in enumerate(files):
        src = Path(f)
        dst = job.folder / f"{i:05d}_{src.name}"
        write_private(dst, src.read_bytes())
        job.files.append(dst.name)
    jobs = load_jobs()
    jobs.append(job)
    _save(jobs)
    return job


def record(job: SendJob, result: Any, *, now: Optional[float] = None) -> str:
    """Update the queue after an attempt at ``job`` (``result``: a StoreResult, or a PacsError): a job that
    arrived leaves the queue; otherwise what arrived is dropped from it and the rest waits for a retry.
    Returns a line for the user."""
    now = time.time() if now is None else now
    if not isinstance(result, PacsError) and result.ok:
        shutil.rmtree(job.folder, ignore_errors=True)
        _save([j for j in load_jobs() if j.id != job.id])
        return f"Sent {len(job.files)} file(s) to {job.node_name}."
    sent = set() if isinstance(result, PacsError) else {p.name for p in result.sent}
    why = str(result) if isinstance(result, PacsError) else result.summary()
    for name in sent:  # what arrived is not sent again
        (job.folder / name).unlink(missing_ok=True)
    job.files = [f for f in job.files if f not in sent]
    job.attempts += 1
    delay = min(FIRST_DELAY_S * 2 ** (job.attempts - 1), MAX_DELAY_S)
    job.next_try = now + delay
    job.last_error = why.splitlines()[0] if why else "failed"
    _save([job if j.id == job.id else j for j in load_jobs()])
    return (f"{len(job.files)} file(s) for {job.node_name} stay in the send queue (retry in {delay / 60:.0f} min): "
            f"{job.last_error}")


def send(job: SendJob, node: Any, *, progress: Optional[Callable[[float, str], None]] = None,
         cancel: CancelLike = None) -> Any:
    """One attempt at ``job``: the StoreResult (or the PacsError), already recorded in the queue."""
    result = _attempt(node, job, progress, cancel)
    record(job, result)
    return result


def process(nodes: Sequence[Any], *, now: Optional[float] = None,
            progress: Optional[Callable[[float, str], None]] = None, cancel: CancelLike = None) -> list[str]:
    """Send the jobs that are due; returns one line per job tried."""
    now = time.time() if now is None else now
    by_name = {n.display_name: n for n in nodes}
    lines: list[str] = []
    for job in load_jobs():
        if job.next_try > now or _is_cancelled(cancel):
            continue
        node = by_name.get(job.node_name)
        if node is None:
            lines.append(record(job, PacsError(f"No PACS named '{job.node_name}' is configured any more."), now=now))
            continue
        lines.append(record(job, _attempt(node, job, progress, cancel), now=now))
    return lines


def _attempt(node: Any, job: SendJob, progress: Any, cancel: CancelLike) -> Any:
    from planner.imaging import pacs

    try:
        return pacs.store(node, [job.folder / f for f in job.files], progress=progress, cancel=cancel)
    except PacsError as exc:
        return exc
