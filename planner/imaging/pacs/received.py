"""Receiving retrieved objects, for every backend: each object is checked against what was asked for
(patient, study, series, valid UIDs) before it is written, written privately (folders 0700, files 0600,
temporary name and rename), counted per series, and at the end every series is compared with the count
the PACS promised. A series that arrived short is moved beside the retrieve folder
(:func:`~planner.imaging.pacs.common.incomplete_folder`), so an import of the folder never takes it in
as if it were the series; a later retrieve into the same folder resumes it (only the missing instances).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from planner.imaging.pacs.common import (
    PacsError,
    RetrieveResult,
    incomplete_folder,
    log,
    uid_component,
    valid_uid,
)

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by this user only."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    os.chmod(path, FOLDER_MODE)
    return path


def write_private(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` (mode 0600) through an unpredictable temporary name and a rename.
    Unlike :func:`planner.safefiles.atomic_write_bytes` there is no fsync and no journal entry per file: a
    retrieve writes hundreds of images that the PACS still holds (a crash costs a retry, not data)."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


class Receiver:
    """Takes in the objects of one retrieve (thread-safe: C-MOVE delivers on the SCP's threads)."""

    def __init__(self, folder: Path, study_uid: str, series_uids: Iterable[str], *, patient_id: Optional[str],
                 on_file: Optional[Callable[[int], None]] = None) -> None:
        self.folder = private_folder(folder)
        self.study_uid = study_uid
        self.series_uids = set(series_uids)
        #: the Patient ID of the study (from the query); None when the PACS did not say
        self.patient_id = patient_id
        self.on_file = on_file
        self.files: dict[str, dict[str, Path]] = {u: {} for u in self.series_uids}
        self.rejected: list[str] = []
        self.write_errors: list[str] = []
        self.lock = threading.Lock()
        #: series folders made (private) during this retrieve
        self._made: set[Path] = set()
        self._resume()

    # ------------------------------------------------------------ resume
    def _resume(self) -> None:
        """Take back what an earlier (short) retrieve into this folder left, so only the rest is fetched."""
        aside = incomplete_folder(self.folder)
        for uid in self.series_uids:
            src = aside / uid
            dst = self.folder / uid
            if src.is_dir() and not dst.exists():
                os.replace(src, dst)
            if dst.is_dir():
                for f in dst.glob("*.dcm"):
                    sop = f.stem
                    if valid_uid(sop) and f.is_file():
                        self.files[uid][sop] = f
        if aside.is_dir() and not any(aside.iterdir()):
            aside.rmdir()

    def have(self, series_uid: str) -> set[str]:
        with self.lock:
            return set(self.files.get(series_uid, {}))

    @property
    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.files.values())

    # ------------------------------------------------------------ objects
    def check(self, patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """Why the object must be rejected ("" when it is what was asked for)."""
        if study_uid != self.study_uid:
            return "another study"
        if self.patient_id is not None and patient_id != self.patient_id:
            return "another patient"
        if series_uid not in self.series_uids:
            return "a series not asked for"
        if not valid_uid(series_uid) or not valid_uid(sop_uid):
            return "an invalid UID"
        return ""

    def reject(self, why: str) -> None:
        with self.lock:
            self.rejected.append(why)
        log.warning("a retrieved object was rejected: it belongs to %s", why)

    def accept(self, patient_id: str, study_uid: str, series_uid: str, sop_uid: str, data: Union[bytes, Path]) -> bool:
        """Take one object: the DICOM file bytes with file meta, or a file a transfer engine wrote into a
        private staging folder on the same file system (moved into place); False when it was rejected or
        failed (a rejected staged file is left where it is, for the engine to remove)."""
        why = self.check(patient_id, study_uid, series_uid, sop_uid)
        if why:
            self.reject(why)
            return False
        try:
            folder = self.folder / uid_component(series_uid, "Series Instance UID")
            if folder not in self._made:
                private_folder(folder)
                self._made.add(folder)
            target = folder / f"{uid_component(sop_uid, 'SOP Instance UID')}.dcm"
            if isinstance(data, Path):
                if os.stat(data).st_mode & 0o077:
                    os.chmod(data, FILE_MODE)
                os.replace(data, target)
            else:
                write_private(target, data)
        except (OSError, PacsError) as exc:
            with self.lock:
                self.write_errors.append(getattr(exc, "strerror", None) or str(exc))
            return False
        with self.lock:
            self.files[series_uid][sop_uid] = target
            n = sum(len(v) for v in self.files.values())
        if self.on_file is not None:
            self.on_file(n)
        return True

    # ------------------------------------------------------------ the end
    def finish(self, result: RetrieveResult, expected: dict[str, Optional[int]], label: str) -> None:
        """Fill ``result`` (files, per-series outcome, problems); move short series aside.

        ``expected`` is the number of instances the PACS promised for each series (None: unknown, then a
        series is complete when the PACS reported no failure and sent at least one image)."""
        result.files = []
        for uid in sorted(self.series_uids):
            have = len(self.files[uid])
            want = expected.get(uid)
            short = have == 0 or (want is not None and have < want) or (want is None and result.cancelled)
            if short and have:
                aside = private_folder(incomplete_folder(self.folder))
                dst = aside / uid
                if dst.exists():
                    shutil.rmtree(dst)
                os.replace(self.folder / uid, dst)
                self.files[uid] = {sop: dst / p.name for sop, p in self.files[uid].items()}
            if short:
                result.incomplete[uid] = (have, want if want is not None else have)
            else:
                result.complete[uid] = have
                result.files += sorted(self.files[uid].values())
        result.expected = sum((w or 0) for w in expected.values())
        result.rejected = len(self.rejected)
        if self.rejected:
            kinds = sorted(set(self.rejected))
            result.problems.append(f"{label} sent {len(self.rejected)} object(s) of {' and '.join(kinds)}; "
                                   "they were rejected and not saved.")
        if self.write_errors:
            result.problems.append(f"{len(self.write_errors)} image(s) could not be written to {self.folder}: "
                                   f"{self.write_errors[0]}.")
