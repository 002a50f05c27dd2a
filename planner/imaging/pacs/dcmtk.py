"""Bulk C-GET with DCMTK's ``getscu`` (Debian package ``dcmtk``): the transfer engine for the large,
uncompressed series of a DIMSE retrieve (see :func:`planner.imaging.pacs.dimse._retrieve` for when it is
used). pynetdicom spends about 100 microseconds of Python per PDU; a 300-image CT arrives in some 10,000
PDUs, so pynetdicom takes about three times as long as ``getscu`` for the same series (bench/pacs_bench.py).

``getscu`` writes each object as it was sent (``+B``, bit-preserving, with file meta) into a private
staging folder; its log (:data:`LOG_CONFIG`) names every object once its file is written, and each such
file is handed to the :class:`~planner.imaging.pacs.received.Receiver` at once, which checks patient,
study, series and UIDs (from a partial parse of the file, :func:`header_of`) before it moves the file
into place, exactly as for the objects pynetdicom receives. Cancel kills the process (the PACS sees the
connection close); a file getscu did not report as stored is never used. TLS nodes never come here.
"""

from __future__ import annotations

import os
import re
import struct
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
#: Tags read from each received file for the checks (all up to (0020,000E)).
_LAST_CHECKED_TAG = 0x0020000E
#: Bytes read first for the checks.
HEADER_PREFIX = 16384

#: getscu's log (oflog/log4cplus configuration): only the line written after each object is stored (its SOP
#: Instance UID), the final sub-operation counts and errors, one event per line on stdout. The full debug log
#: is about 70 lines per object and slows the transfer by a third.
LOG_CONFIG = """\
log4cplus.rootLogger = DEBUG, out
log4cplus.appender.out = log4cplus::ConsoleAppender
log4cplus.appender.out.ImmediateFlush = true
log4cplus.appender.out.layout = log4cplus::PatternLayout
log4cplus.appender.out.layout.ConversionPattern = %p: %m%n
log4cplus.appender.out.filters.1 = log4cplus::spi::StringMatchFilter
log4cplus.appender.out.filters.1.StringToMatch = SOP Instance UID:{sp}
log4cplus.appender.out.filters.1.AcceptOnMatch = true
log4cplus.appender.out.filters.2 = log4cplus::spi::StringMatchFilter
log4cplus.appender.out.filters.2.StringToMatch = Number of
log4cplus.appender.out.filters.2.AcceptOnMatch = true
log4cplus.appender.out.filters.3 = log4cplus::spi::LogLevelRangeFilter
log4cplus.appender.out.filters.3.LogLevelMin = ERROR
log4cplus.appender.out.filters.3.LogLevelMax = FATAL
log4cplus.appender.out.filters.3.AcceptOnMatch = true
log4cplus.appender.out.filters.4 = log4cplus::spi::DenyAllFilter
""".format(sp=" ")
#: "Stored instance to disk: ... SOP Instance UID: <uid>" (DcmSCU, after the file is written and before the
#: C-STORE response is sent).
_STORED = re.compile(r"^DEBUG:\s+SOP Instance UID: (\S+)")
_FINAL = re.compile(r"^INFO:\s+Number of (Completed|Failed|Warning) Suboperations\s*: (\d+)")
_ERROR = re.compile(r"^(?:ERROR|FATAL): (.*)")


def getscu_path() -> str:
    """The getscu executable; raises PacsError naming the package when it is missing."""
    path = shutil.which(GETSCU)
    if not path:
        raise PacsError("DCMTK's getscu is missing: install the Debian package 'dcmtk' (scripts/_setup.sh does), "
                        "or set the node's retrieve engine to 'pynetdicom'.")
    return path


def header_of(path: Path) -> tuple[str, str, str, str]:
    """(Patient ID, Study UID, Series UID, SOP Instance UID) from the start of a DICOM file with file meta.

    A partial parse of the raw bytes (:func:`_scan_prefix`: a plain walk over the first elements of a little
    endian data set, about 20 times as fast as pydicom's parser) and pydicom's ``read_partial`` for anything
    the walk does not take (sequences of undefined length, big endian or deflated data sets, text outside
    ASCII, headers longer than :data:`HEADER_PREFIX`); nothing after Series Instance UID is read."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_PREFIX)
        found = _scan_prefix(head)
        if found is not None:
            return found
        fh.seek(0)
        ds = read_partial(fh, stop_when=_past_checked_tags)
    return (str(ds.get("PatientID", "") or "").strip(), str(ds.get("StudyInstanceUID", "") or ""),
            str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""))


#: VRs with a 4-byte length in explicit VR encoding (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_WANTED_TAGS = {0x00100020: 0, 0x0020000D: 1, 0x0020000E: 2, 0x00080018: 3}
_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_EXPLICIT_LE = {_IMPLICIT_LE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # implicit, big endian, deflate


def _scan_prefix(head: bytes) -> Optional[tuple[str, str, str, str]]:
    """The four checked values from the raw bytes, or None when the walk cannot be sure (the caller then
    uses pydicom)."""
    if len(head) < 144 or head[128:132] != b"DICM":
        return None
    pos, syntax = 132, ""
    while pos + 8 <= len(head):  # file meta: explicit VR little endian, group 0002
        group, elem = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            break
        vr = head[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length, pos = struct.unpack_from("<I", head, pos + 8)[0], pos + 12
        else:
            length, pos = struct.unpack_from("<H", head, pos + 6)[0], pos + 8
        if length == 0xFFFFFFFF or pos + length > len(head):
            return None
        if elem == 0x0010:
            syntax = head[pos:pos + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos += length
    if not syntax or (syntax in _NOT_EXPLICIT_LE and syntax != _IMPLICIT_LE):
        return None
    implicit = syntax == _IMPLICIT_LE
    values: list[Optional[bytes]] = [None, None, None, None]
    while pos + 8 <= len(head):
        group, elem = struct.unpack_from("<HH", head, pos)
        tag = group << 16 | elem
        if tag > _LAST_CHECKED_TAG:
            break
        if implicit:
            length, pos = struct.unpack_from("<I", head, pos + 4)[0], pos + 8
        else:
            vr = head[pos + 4:pos + 6]
            if not vr.isalpha() or not vr.isupper():
                return None
            if vr in _LONG_VRS:
                length, pos = struct.unpack_from("<I", head, pos + 8)[0], pos + 12
            else:
                length, pos = struct.unpack_from("<H", head, pos + 6)[0], pos + 8
        if length == 0xFFFFFFFF or pos + length > len(head):
            return None  # a sequence or item of undefined length, or past the prefix
        if tag in _WANTED_TAGS:
            values[_WANTED_TAGS[tag]] = head[pos:pos + length]
        pos += length
    else:
        return None  # the prefix ended before Series Instance UID
    out = []
    for raw in values:
        text = (raw or b"").rstrip(b"\0 ")
        if not text.isascii():
            return None  # a Patient ID in another character set: pydicom decodes it
        out.append(text.decode("ascii").strip())
    return out[0], out[1], out[2], out[3]


def _past_checked_tags(tag: Any, _vr: Any, _length: Any) -> bool:
    return tag > _LAST_CHECKED_TAG


def _command(node: Any, study_uid: str, series_uid: str, staging: Path) -> list[str]:
    pdu = GETSCU_MAX_PDU if not node.max_pdu else max(4096, min(int(node.max_pdu), GETSCU_MAX_PDU))
    timeout = str(max(1, int(round(node.timeout_s))))
    log_config = staging / ".getscu-log.cfg"
    log_config.write_text(LOG_CONFIG, encoding="ascii")
    return [getscu_path(), "-lc", str(log_config), "-S", "-aet", node.calling_ae, "-aec", node.ae_title,
            "-to", timeout, "-ta", timeout, "-td", str(max(1, int(round(node.retrieve_timeout_s)))),
            "-pdu", str(pdu), "+B", "-od", str(staging),
            "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study_uid}",
            "-k", f"SeriesInstanceUID={series_uid}", node.host, str(int(node.port))]


def fetch_series(node: Any, study_uid: str, series_uid: str, receiver: Any, result: RetrieveResult,
                 staging: Path, guard: Any) -> bool:
    """One series by ``getscu`` into ``receiver``; False when getscu failed before or during the transfer
    (what arrived is kept; the caller fetches the rest another way). Completed and warning sub-operations go
    to ``result``; failed ones do not (the caller asks for every missing instance again, and the series'
    count decides whether it is complete)."""
    staging.mkdir(mode=0o700)
    cmd = _command(node, study_uid, series_uid, staging)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TCP_NODELAY": "1"}, umask=0o077, text=True, errors="replace",
                            bufsize=1)
    finals: dict[str, int] = {}
    errors: list[str] = []
    reported = [0]

    def read_log() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if (m := _STORED.match(line)) is not None:
                reported[0] += 1
                if not guard.is_set():
                    _take(receiver, staging, m.group(1))
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
    result.warnings += finals.get("Warning", 0)
    if guard.is_set():
        return True
    if finals.get("Completed", 0) and not reported[0]:
        log.warning("getscu stored %d object(s) but its log named none (another DCMTK version?); they are "
                    "fetched again by pynetdicom", finals["Completed"])
        return False
    if proc.returncode != 0 or finals.get("Failed", 0) or (errors and not finals):
        log.warning("getscu for %s ended with code %s, %d failed sub-operation(s): %s", node.label,
                    proc.returncode, finals.get("Failed", 0), errors[-1] if errors else "no message")
        return False
    return True


def _take(receiver: Any, staging: Path, sop: str) -> None:
    """Hand the file getscu wrote for ``sop`` to the receiver (which checks it and moves it into place)."""
    if not valid_uid(sop):
        receiver.reject("an invalid UID")
        return
    path = staging / sop
    try:
        patient_id, study_uid, series_uid, sop_uid = header_of(path)
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
