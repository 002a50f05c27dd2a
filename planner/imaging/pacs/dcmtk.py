"""Bulk C-GET with DCMTK's ``getscu`` (Debian package ``dcmtk``): the transfer engine for the large,
uncompressed series of a DIMSE retrieve (see :func:`planner.imaging.pacs.dimse._retrieve` for when it is
used). pynetdicom spends about 100 microseconds of Python per PDU; a 300-image CT arrives in some 10,000
PDUs, so pynetdicom takes about three times as long as ``getscu`` for the same series (bench/pacs_bench.py).

``getscu`` writes each object as it was sent (``+B``, bit-preserving, with file meta) into a private
staging folder; its debug log names every object whose C-STORE it answered with Success, and each such
file is handed to the :class:`~planner.imaging.pacs.received.Receiver` at once, which checks patient,
study, series and UIDs (from a partial parse of the file, :func:`header_of`) before it moves the file
into place, exactly as for the objects pynetdicom receives. Cancel kills the process (the PACS sees the
connection close); a file whose C-STORE was not answered is never used. TLS nodes never come here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial

from planner.imaging.pacs.common import PacsError, RetrieveResult, log, valid_uid

#: The DCMTK tool (Debian package dcmtk, installed by scripts/_setup.sh).
GETSCU = "getscu"
#: Largest PDU getscu accepts (its ``--max-pdu`` range is 4096..131072).
GETSCU_MAX_PDU = 131072
#: Tags read from each received file for the checks (all before (0020,000E) + 1).
_LAST_CHECKED_TAG = 0x0020000E

_RSP = re.compile(r"^D: Message Type\s*: C-STORE RSP")
_SOP = re.compile(r"^D: Affected SOP Instance UID\s*: (\S+)")
_STATUS = re.compile(r"^D: DIMSE Status\s*: 0x([0-9a-fA-F]{4})")
_FINAL = re.compile(r"^I:\s+Number of (Completed|Failed|Warning) Suboperations\s*: (\d+)")
_ERROR = re.compile(r"^[EF]: (.*)")
_WANTED = ("D: Message Type", "D: Affected SOP Instance UID", "D: DIMSE Status", "I:   Number of", "E:", "F:")


def getscu_path() -> str:
    """The getscu executable; raises PacsError naming the package when it is missing."""
    path = shutil.which(GETSCU)
    if not path:
        raise PacsError("DCMTK's getscu is missing: install the Debian package 'dcmtk' (scripts/_setup.sh does), "
                        "or set the node's retrieve engine to 'pynetdicom'.")
    return path


def header_of(path: Path) -> tuple[str, str, str, str, str]:
    """(Patient ID, Study UID, Series UID, SOP Instance UID, transfer syntax) from the start of a DICOM
    file with file meta (a partial parse: nothing after Series Instance UID is read)."""
    with open(path, "rb") as fh:
        ds = read_partial(fh, stop_when=lambda tag, _vr, _length: tag > _LAST_CHECKED_TAG)
    return (str(ds.get("PatientID", "") or "").strip(), str(ds.get("StudyInstanceUID", "") or ""),
            str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""),
            str(ds.file_meta.get("TransferSyntaxUID", "")))


def _command(node: Any, study_uid: str, series_uid: str, staging: Path) -> list[str]:
    pdu = GETSCU_MAX_PDU if not node.max_pdu else max(4096, min(int(node.max_pdu), GETSCU_MAX_PDU))
    timeout = str(max(1, int(round(node.timeout_s))))
    return [getscu_path(), "-d", "-S", "-aet", node.calling_ae, "-aec", node.ae_title,
            "-to", timeout, "-ta", timeout, "-td", str(max(1, int(round(node.retrieve_timeout_s)))),
            "-pdu", str(pdu), "+B", "-od", str(staging),
            "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study_uid}",
            "-k", f"SeriesInstanceUID={series_uid}", node.host, str(int(node.port))]


def fetch_series(node: Any, study_uid: str, series_uid: str, receiver: Any, result: RetrieveResult,
                 staging: Path, guard: Any) -> bool:
    """One series by ``getscu`` into ``receiver``; False when getscu failed before or during the transfer
    (what arrived is kept; the caller fetches the rest another way). Sub-operation counts go to ``result``."""
    staging.mkdir(mode=0o700)
    cmd = _command(node, study_uid, series_uid, staging)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TCP_NODELAY": "1"}, umask=0o077, text=True, errors="replace",
                            bufsize=1)
    finals: dict[str, int] = {}
    errors: list[str] = []

    def read_log() -> None:
        in_rsp, sop = False, ""
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith(_WANTED):  # about 70 debug lines per object; most are skipped here
                continue
            if line.startswith("D: Message Type"):
                in_rsp, sop = _RSP.match(line) is not None, ""
            elif in_rsp and line.startswith("D: Affected SOP Instance UID"):
                m = _SOP.match(line)
                sop = m.group(1) if m else ""
            elif in_rsp and line.startswith("D: DIMSE Status"):
                in_rsp = False
                m = _STATUS.match(line)
                if m and int(m.group(1), 16) == 0 and not guard.is_set():
                    _take(receiver, staging, sop)
            elif (m := _FINAL.match(line)) is not None:
                finals[m.group(1)] = int(m.group(2))
            elif (m := _ERROR.match(line)) is not None:
                errors.append(m.group(1).strip())

    reader = threading.Thread(target=read_log, name="bvn-getscu-log", daemon=True)
    reader.start()
    try:
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                if guard.is_set():
                    proc.kill()  # a frozen PACS never answers an A-RELEASE: the connection is simply closed
                    proc.wait()
                    break
        reader.join(5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(staging, ignore_errors=True)  # files not handed over: unanswered or rejected
    result.completed += finals.get("Completed", 0)
    result.failed += finals.get("Failed", 0)
    result.warnings += finals.get("Warning", 0)
    if guard.is_set():
        return True
    if proc.returncode != 0 or (errors and not finals):
        log.warning("getscu for %s ended with code %s: %s", node.label, proc.returncode,
                    errors[-1] if errors else "no message")
        return False
    return True


def _take(receiver: Any, staging: Path, sop: str) -> None:
    """Hand the file getscu wrote for ``sop`` to the receiver (which checks it and moves it into place)."""
    if not valid_uid(sop):
        receiver.reject("an invalid UID")
        return
    path = staging / sop
    try:
        patient_id, study_uid, series_uid, sop_uid, _ts = header_of(path)
    except (OSError, ValueError, AttributeError, EOFError, InvalidDicomError) as exc:
        log.warning("a file written by getscu could not be read: %s", type(exc).__name__)
        receiver.reject("an unreadable object")
        return
    if sop_uid != sop:
        receiver.reject("an object whose SOP Instance UID differs from its C-STORE request")
        return
    if sop_uid in receiver.have(series_uid):
        return  # the probe of the series' transfer syntax brought it already (the staged copy is removed)
    receiver.accept(patient_id, study_uid, series_uid, sop_uid, path)


def staging_folder(folder: Path, series_uid: str) -> Path:
    """A fresh private folder beside the retrieve folder for getscu's files (never imported)."""
    return folder.with_name(f".{folder.name}.getscu-{series_uid[-16:]}-{os.getpid()}-{time.monotonic_ns()}")


def available(node: Any) -> Optional[str]:
    """Why the DCMTK engine cannot serve ``node`` (None when it can)."""
    if node.tls:
        return "the node uses DICOM TLS"
    return None
