"""PACS connectivity: verification, query, retrieve and send (DICOM DIMSE with pynetdicom, or DICOMweb).

Headless (no Qt). Public API::

    node = PacsNode(name="ORTHANC", ae_title="ORTHANC", host="pacs.example.org", port=4242,
                    calling_ae="BVNPLANNER")
    echo(node)                                         # seconds for a C-ECHO round trip
    studies = find_studies(node, patient_id="123", study_date="20240101-20240131", modality="MR")
    series = find_series(node, studies[0].study_uid)
    found = find_series_by_uid(node, ["1.2.3", "1.2.4"])          # relink a plan's images by UID
    result = retrieve(node, study_uid, [s.series_uid for s in series], dest_folder="/cache/x",
                      method="C-GET", progress=cb, cancel=event)  # result.folder -> load_path()
    sent = store(node, ["PDF00001.dcm", "SR00001.dcm"])           # exports into the PACS

    nodes = load_nodes(); save_nodes(nodes)            # the user's configured nodes (JSON)

Every failure is a :class:`PacsError` whose message names the node and the problem (connection
refused, association rejected or aborted, a timeout, a failure status), or, for a retrieve or a send
that went partly wrong, a result whose ``problems`` say what is missing. Every network call has a
timeout. ``cancel`` is anything with ``is_set()`` (a ``threading.Event``) or a callable returning
True; a cancelled retrieve returns promptly with what was complete (``cancelled=True``).

Retrieved objects are written as DICOM files with file meta (the bytes as sent, no re-encoding) to
``dest_folder/<Series Instance UID>/<SOP Instance UID>.dcm``; nothing is half-written (temporary
file and rename). Logs carry counts, node names and statuses only: never patient names, IDs or
birth dates (those found by a query are also registered with :mod:`planner.logsafe`).

C-GET negotiates, for every SOP class in the study (``SOP Classes in Study`` from the C-FIND, or a
list of common imaging and export classes), a presentation context in the SCP role (role selection)
with uncompressed transfer syntaxes, and a second one with the usual lossless and lossy compressed
syntaxes, so the PACS can send a compressed image as it is stored. C-MOVE starts a local storage SCP
(``AE.start_server``) on ``PacsNode.local_port`` for the time of the retrieve; the PACS must know the
move destination AE title (``PacsNode.move_ae``, by default the calling AE title) with this
computer's address and that port. Optional DICOMweb (QIDO-RS, WADO-RS, STOW-RS) uses ``urllib``
with HTTP Basic authentication.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    UID,
)
from pynetdicom import AE, AllStoragePresentationContexts, build_context, build_role, evt
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from planner import logsafe
from planner.logsafe import data_dir

log = logging.getLogger(__name__)
# pynetdicom's own INFO/DEBUG lines are noise for the user's log; its warnings and errors stay.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

ProgressFn = Callable[[float, str], None]
CancelLike = Any  # threading.Event, anything with is_set(), or a callable returning bool

DIMSE = "DIMSE"
DICOMWEB = "DICOMweb"
METHODS = ("C-GET", "C-MOVE", "WADO-RS")

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
COMPRESSED = [JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless, JPEG2000, JPEGBaseline8Bit,
              JPEGExtended12Bit, JPEGLSNearLossless, DeflatedExplicitVRLittleEndian]
#: Transfer syntaxes the C-MOVE storage SCP accepts (uncompressed, big endian, every common compression).
ALL_SYNTAXES = list(dict.fromkeys(UNCOMPRESSED + [ExplicitVRBigEndian] + COMPRESSED + [
    UID("1.2.840.10008.1.2.4.51"), UID("1.2.840.10008.1.2.4.57"), UID("1.2.840.10008.1.2.4.201"),
    UID("1.2.840.10008.1.2.4.202"), UID("1.2.840.10008.1.2.4.203"), UID("1.2.840.10008.1.2.1.99"),
]))
#: Storage SOP classes requested for a C-GET when the PACS does not report the study's classes.
COMMON_STORAGE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.2",        # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",      # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.2.2",      # Legacy Converted Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",        # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",      # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",      # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",      # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.12.1",     # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.1.1",   # Enhanced XA Image
    "1.2.840.10008.5.1.4.1.1.12.2",     # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.12.2.1",   # Enhanced XRF Image
    "1.2.840.10008.5.1.4.1.1.13.1.1",   # X-Ray 3D Angiographic Image
    "1.2.840.10008.5.1.4.1.1.1",        # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",      # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",    # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.7",        # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",      # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",      # Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",      # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.104.1",    # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.88.11",    # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",    # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",    # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",    # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.59",    # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.11.1",     # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.20",       # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",      # PET Image
    "1.2.840.10008.5.1.4.1.1.6.1",      # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",      # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.66.4",     # Segmentation
]
MAX_CONTEXTS = 128  # DICOM PS3.8: presentation context IDs are odd numbers 1..255


class PacsError(RuntimeError):
    """A PACS operation failed; the message names the node and the problem (for the user)."""


# ====================================================================== node configuration
@dataclass
class PacsNode:
    """A PACS (or any DICOM Q/R SCP) the planner talks to."""

    #: Shown to the user; by default the called AE title.
    name: str = ""
    #: The PACS's AE title (called AE).
    ae_title: str = ""
    host: str = ""
    port: int = 104
    #: This workstation's AE title (calling AE), which the PACS must know.
    calling_ae: str = "BVNPLANNER"
    #: "C-GET", "C-MOVE" or "WADO-RS" (DICOMweb).
    retrieve_method: str = "C-GET"
    #: C-MOVE destination AE title (empty: the calling AE title); the PACS must know it with this
    #: computer's address and :attr:`local_port`.
    move_ae: str = ""
    #: Port of the local storage SCP started for a C-MOVE.
    local_port: int = 11113
    #: Seconds allowed for connecting, for the association and for each answer of an echo, query or send.
    timeout_s: float = 10.0
    #: Longest wait (seconds) between two messages of a retrieve.
    retrieve_timeout_s: float = 60.0
    #: "DIMSE" (C-FIND/C-GET/C-MOVE/C-STORE) or "DICOMweb" (QIDO-RS/WADO-RS/STOW-RS).
    protocol: str = DIMSE
    #: DICOMweb base URL, e.g. ``https://pacs.example.org/dicom-web``.
    dicomweb_url: str = ""
    username: str = ""
    password: str = ""

    # ------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.name or self.ae_title or self.host or "(unnamed)"

    @property
    def label(self) -> str:
        """``PACS ORTHANC at 127.0.0.1:4242`` (or the DICOMweb URL), for messages."""
        if self.protocol == DICOMWEB:
            return f"PACS {self.display_name} at {_safe_url(self.dicomweb_url)}"
        return f"PACS {self.display_name} at {self.host}:{self.port}"

    @property
    def destination_ae(self) -> str:
        return self.move_ae or self.calling_ae

    def problems(self) -> list[str]:
        """What is wrong with the configuration (empty when it can be used)."""
        out: list[str] = []
        if self.protocol not in (DIMSE, DICOMWEB):
            out.append(f"Unknown protocol '{self.protocol}' (use DIMSE or DICOMweb).")
        if self.protocol == DICOMWEB:
            url = urllib.parse.urlparse(self.dicomweb_url or "")
            if url.scheme not in ("http", "https") or not url.netloc:
                out.append("The DICOMweb URL must start with http:// or https:// and name a server.")
            return out
        for what, value in (("PACS AE title", self.ae_title), ("calling AE title", self.calling_ae),
                            ("move destination AE title", self.move_ae)):
            if what != "move destination AE title" and not value.strip():
                out.append(f"The {what} is empty.")
            elif value and (len(value) > 16 or "\\" in value or not value.isascii()
                            or any(ord(c) < 32 for c in value)):
                out.append(f"The {what} '{value}' is not valid (at most 16 ASCII characters, no backslash).")
        if not self.host.strip():
            out.append("The host is empty.")
        if not (1 <= int(self.port) <= 65535):
            out.append(f"The port {self.port} is not between 1 and 65535.")
        if self.retrieve_method == "C-MOVE" and not (1 <= int(self.local_port) <= 65535):
            out.append(f"The local port {self.local_port} for C-MOVE is not between 1 and 65535.")
        if self.retrieve_method not in ("C-GET", "C-MOVE"):
            out.append(f"Unknown retrieve method '{self.retrieve_method}' (use C-GET or C-MOVE).")
        if self.timeout_s <= 0 or self.retrieve_timeout_s <= 0:
            out.append("Timeouts must be positive.")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PacsNode":
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in (data or {}).items():
            if key not in known:
                continue
            default = getattr(cls(), key)
            try:
                kwargs[key] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                continue
        return cls(**kwargs)


def nodes_path() -> Path:
    return data_dir() / "pacs-nodes.json"


def load_nodes() -> list[PacsNode]:
    """The user's configured PACS nodes (an empty list when none or the file is unreadable)."""
    try:
        data = json.loads(nodes_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("the PACS node list %s is unreadable; starting an empty one", nodes_path())
        return []
    items = data.get("nodes", []) if isinstance(data, dict) else []
    return [PacsNode.from_dict(d) for d in items if isinstance(d, dict)]


def save_nodes(nodes: Sequence[PacsNode]) -> Path:
    """Save the nodes (JSON, readable by the user only since it may hold a DICOMweb password)."""
    from planner.storage import atomic_write_text

    path = nodes_path()
    atomic_write_text(path, json.dumps({"version": 1, "nodes": [n.to_dict() for n in nodes]}, indent=1))
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass
    return path


# ====================================================================== results
@dataclass
class StudyMatch:
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    description: str = ""
    modalities: list[str] = field(default_factory=list)
    sop_classes: list[str] = field(default_factory=list)
    n_series: Optional[int] = None
    n_instances: Optional[int] = None


@dataclass
class SeriesMatch:
    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    series_number: Optional[int] = None
    n_instances: Optional[int] = None
    body_part: str = ""


class MatchList(list):
    """A list of matches; ``truncated`` is True when the PACS had more than the limit asked for."""

    truncated: bool = False


@dataclass
class RetrieveResult:
    node_label: str
    folder: Path
    method: str
    files: list[Path] = field(default_factory=list)
    #: Number of images the PACS said it had (0 when unknown).
    expected: int = 0
    completed: int = 0
    failed: int = 0
    warnings: int = 0
    cancelled: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def received(self) -> int:
        return len(self.files)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.cancelled

    def summary(self) -> str:
        got = f"{self.received} of {self.expected}" if self.expected else f"{self.received}"
        text = f"Received {got} image(s) from {self.node_label} by {self.method} in {self.seconds:.1f} s"
        if self.cancelled:
            text += " (cancelled)"
        return text + "." + "".join(" " + p for p in self.problems)


@dataclass
class StoreResult:
    node_label: str
    sent: list[Path] = field(default_factory=list)
    #: (file, warning) for files the PACS stored with a warning status.
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    #: (file, reason) for files not stored.
    failed: list[tuple[Path, str]] = field(default_factory=list)
    cancelled: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems and not self.cancelled

    def summary(self) -> str:
        text = f"Sent {len(self.sent)} file(s) to {self.node_label}"
        if self.failed:
            text += f"; {len(self.failed)} failed"
        if self.cancelled:
            text += " (cancelled)"
        lines = [text + "."] + self.problems + [f"{p.name}: {why}" for p, why in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"... and {len(self.failed) - 20} more.")
        return "\n".join(lines)


# ====================================================================== small helpers
def _is_cancelled(cancel: CancelLike) -> bool:
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    if callable(is_set):
        return bool(is_set())
    return bool(cancel()) if callable(cancel) else False


def _report(progress: Optional[ProgressFn], fraction: float, message: str) -> None:
    if progress is not None:
        try:
            progress(min(max(float(fraction), 0.0), 1.0), message)
        except Exception:  # a broken progress callback must not break the transfer
            log.exception("progress callback failed")


def _safe_url(url: str) -> str:
    """The URL without any user:password part."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value if str(v)]
    return [s for s in str(value).split("\\") if s]


def _int(ds: Dataset, keyword: str) -> Optional[int]:
    try:
        value = ds.get(keyword, None)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _study_from(ds: Dataset) -> StudyMatch:
    return StudyMatch(
        study_uid=_text(ds, "StudyInstanceUID"), patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"), patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"), study_date=_text(ds, "StudyDate"), study_time=_text(ds, "StudyTime"),
        accession=_text(ds, "AccessionNumber"), description=_text(ds, "StudyDescription"),
        modalities=_values(ds, "ModalitiesInStudy"), sop_classes=_values(ds, "SOPClassesInStudy"),
        n_series=_int(ds, "NumberOfStudyRelatedSeries"), n_instances=_int(ds, "NumberOfStudyRelatedInstances"))


def _series_from(ds: Dataset, study_uid: str = "") -> SeriesMatch:
    return SeriesMatch(
        study_uid=_text(ds, "StudyInstanceUID") or study_uid, series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"), description=_text(ds, "SeriesDescription"),
        series_number=_int(ds, "SeriesNumber"), n_instances=_int(ds, "NumberOfSeriesRelatedInstances"),
        body_part=_text(ds, "BodyPartExamined"))


def _register_identifiers(studies: Iterable[StudyMatch]) -> None:
    values: list[str] = []
    for s in studies:
        values += [s.patient_name, s.patient_id, s.patient_birth_date]
    if any(values):
        logsafe.register_identifiers(values)


_DATE = re.compile(r"^\d{8}$")


def _dicom_date(value: Union[str, date, datetime]) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    text = str(value).strip()
    compact = text.replace("-", "").replace(".", "").replace("/", "") if len(text) == 10 else text
    if not _DATE.match(compact):
        raise PacsError(f"'{text}' is not a date; use YYYYMMDD or YYYY-MM-DD.")
    try:
        datetime.strptime(compact, "%Y%m%d")
    except ValueError:
        raise PacsError(f"'{text}' is not a valid date.") from None
    return compact


def date_range(value: Union[None, str, date, tuple]) -> str:
    """A DICOM date or date range for a query: ``20240101``, ``20240101-20240131``, ``-20240131``,
    ``20240101-``; also accepts ``date`` objects, ``YYYY-MM-DD`` and a ``(start, end)`` tuple (None: open)."""
    if value is None or value == "":
        return ""
    if isinstance(value, tuple):
        start, end = (list(value) + [None, None])[:2]
        return f"{_dicom_date(start) if start else ''}-{_dicom_date(end) if end else ''}"
    if isinstance(value, (date, datetime)):
        return _dicom_date(value)
    text = str(value).strip().replace(" ", "")
    # split on the range dash: YYYYMMDD-YYYYMMDD or YYYY-MM-DD-YYYY-MM-DD or open ranges
    m = re.match(r"^(\d{4}-?\d{2}-?\d{2})?(?:(-)(\d{4}-?\d{2}-?\d{2})?)?$", text)
    if not m or not (m.group(1) or m.group(3)):
        raise PacsError(f"'{value}' is not a date or date range; use YYYYMMDD or YYYYMMDD-YYYYMMDD.")
    start = _dicom_date(m.group(1).replace("-", "")) if m.group(1) else ""
    end = _dicom_date(m.group(3).replace("-", "")) if m.group(3) else ""
    if m.group(2):
        if start and end and end < start:
            raise PacsError(f"The date range '{value}' ends before it starts.")
        return f"{start}-{end}"
    return start


def name_pattern(text: Optional[str]) -> str:
    """A Patient's Name matching pattern: ``SMITH`` becomes ``SMITH*``; ``Smith, John`` becomes ``Smith^John*``."""
    t = (text or "").strip()
    if not t:
        return ""
    t = re.sub(r"\s*,\s*", "^", t)
    if "*" not in t and "?" not in t:
        t += "*"
    return t


def _safe_component(uid: str) -> str:
    cleaned = re.sub(r"[^0-9A-Za-z._-]", "_", uid or "")[:128]
    return cleaned or uuid.uuid4().hex


# ====================================================================== DIMSE association
@dataclass
class _AssocWatch:
    connected: bool = False
    peer_abort: bool = False

    def handlers(self) -> list:
        return [(evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_PDU_RECV, self._on_pdu)]

    def _on_open(self, event) -> None:
        self.connected = True
        _no_delay(event)

    def _on_pdu(self, event) -> None:
        if isinstance(event.pdu, A_ABORT_RQ):
            self.peer_abort = True


def _no_delay(event) -> None:
    """Send small PDUs at once (TCP_NODELAY): without it each C-STORE waits for delayed ACKs (about 40 ms)."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def _connect_problem(node: PacsNode) -> str:
    """Why a TCP connection to the node fails (asked only after pynetdicom could not connect)."""
    try:
        socket.getaddrinfo(node.host, node.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"{node.label} could not be reached: the host name '{node.host}' is unknown."
    try:
        with socket.create_connection((node.host, node.port), timeout=node.timeout_s):
            pass
    except ConnectionRefusedError:
        return (f"{node.label} refused the connection: nothing is listening on port {node.port} "
                "(check the host, the port and that the PACS is running).")
    except (socket.timeout, TimeoutError):
        return (f"{node.label} did not answer the connection within {node.timeout_s:g} s "
                "(check the host, the port and the firewall).")
    except OSError as exc:
        return f"{node.label} could not be reached: {exc.strerror or exc}."
    return f"{node.label} could not be reached (the connection failed; it works now, please try again)."


def _association_problem(node: PacsNode, assoc: Any, watch: _AssocWatch, elapsed: float) -> str:
    if assoc is None or not watch.connected:
        return _connect_problem(node)
    if assoc.is_rejected:
        prim = getattr(assoc.acceptor, "primitive", None)
        reason = (getattr(prim, "reason_str", "") or "no reason given") if prim is not None else "no reason given"
        reason = reason[0].lower() + reason[1:] if reason else reason
        hint = ""
        low = reason.lower()
        if "called ae" in low:
            hint = f" (is '{node.ae_title}' the PACS's AE title?)"
        elif "calling ae" in low:
            hint = f" (the PACS does not know this workstation's AE title '{node.calling_ae}')"
        transient = " for now" if prim is not None and getattr(prim, "result", 1) == 2 else ""
        return f"{node.label} refused the association{transient}: {reason}{hint}."
    prim = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    if prim is not None and getattr(prim, "result", None) == 0 and not assoc.accepted_contexts:
        return (f"{node.label} accepted the association but none of the requested services "
                "(it may not support them for this AE title).")
    if watch.peer_abort:
        return (f"{node.label} aborted the association request (it may not accept the calling AE title "
                f"'{node.calling_ae}' from this computer).")
    if elapsed >= 0.9 * node.timeout_s:
        return f"{node.label} did not answer the association request within {node.timeout_s:g} s."
    return f"{node.label} closed the connection during the association request."


def _make_ae(node: PacsNode, dimse_timeout: float) -> AE:
    ae = AE(ae_title=node.calling_ae)
    ae.connection_timeout = float(node.timeout_s)
    ae.acse_timeout = float(node.timeout_s)
    ae.dimse_timeout = float(dimse_timeout)
    ae.network_timeout = float(max(dimse_timeout, node.timeout_s))
    return ae


@contextmanager
def _association(node: PacsNode, contexts: Sequence[Any], *, roles: Sequence[Any] = (),
                 handlers: Sequence[Any] = (), dimse_timeout: Optional[float] = None) -> Iterator[Any]:
    """An established association to ``node`` (released on exit) or a PacsError saying why not."""
    if node.protocol != DIMSE:
        raise PacsError(f"{node.label} is configured for DICOMweb, not DIMSE.")
    problems = node.problems()
    if problems:
        raise PacsError(f"{node.label} is not configured correctly: " + " ".join(problems))
    ae = _make_ae(node, dimse_timeout or node.timeout_s)
    for cx in contexts:
        if isinstance(cx, (str, UID)):
            ae.add_requested_context(cx, UNCOMPRESSED)
        else:
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
    watch = _AssocWatch()
    t0 = time.monotonic()
    assoc = None
    try:
        assoc = ae.associate(node.host, int(node.port), ae_title=node.ae_title, ext_neg=list(roles) or None,
                             evt_handlers=watch.handlers() + list(handlers))
    except Exception as exc:  # bad address and the like
        log.warning("association with %s failed: %s", node.label, type(exc).__name__)
        ae.shutdown()
        if isinstance(exc, (OSError, ValueError)):
            raise PacsError(_connect_problem(node)) from None
        raise PacsError(f"{node.label} could not be contacted ({type(exc).__name__}: {exc}).") from None
    if not assoc.is_established:
        msg = _association_problem(node, assoc, watch, time.monotonic() - t0)
        log.warning("%s", msg)
        ae.shutdown()
        raise PacsError(msg)
    assoc._bvn_watch = watch  # type: ignore[attr-defined]
    try:
        yield assoc
    finally:
        try:
            if assoc.is_established:
                assoc.release()
        except Exception:
            assoc.abort()
        ae.shutdown()


def _lost(node: PacsNode, assoc: Any, what: str, elapsed: float, timeout: float) -> str:
    """The message when an operation got no (valid) answer."""
    watch: _AssocWatch = getattr(assoc, "_bvn_watch", _AssocWatch())
    if watch.peer_abort:
        verb = ("query" if "FIND" in what else "send images" if "STORE" in what
                else "retrieve images" if ("GET" in what or "MOVE" in what) else "do this")
        return (f"{node.label} aborted the association during the {what}: it may not know this workstation "
                f"(calling AE title '{node.calling_ae}' at this computer's address) or may not allow it to {verb}.")
    if elapsed >= 0.9 * timeout:
        return f"{node.label} did not answer the {what} within {timeout:g} s."
    return f"{node.label} closed the connection during the {what}."


_FIND_STATUS = {
    0xA700: "is out of resources",
    0xA900: "says the query does not match the information model",
    0xFE00: "cancelled the query",
    0x0122: "does not support this kind of query",
    0x0124: "does not allow this query",
}
_RETRIEVE_STATUS = {
    0xA701: "is out of resources (it could not work out the number of matches)",
    0xA702: "is out of resources (it could not start sending the images)",
    0xA801: None,  # move destination unknown: message built below
    0xA900: "says the request does not match the information model",
    0xAA00: "has none of the requested frames",
    0x0122: "does not support this kind of retrieve",
    0x0124: "does not allow this retrieve",
}


def _status_problem(node: PacsNode, what: str, status: int, table: dict[int, Optional[str]],
                    comment: str = "") -> str:
    text = table.get(status)
    if status == 0xA801:
        return (f"{node.label} does not know the move destination '{node.destination_ae}' (ask the PACS "
                f"administrator to add this AE title with this computer's address and port {node.local_port}, "
                "or use C-GET).")
    if text is None:
        if 0xC000 <= status <= 0xCFFF:
            text = "could not process the request"
        elif 0xA700 <= status <= 0xA7FF:
            text = "is out of resources"
        else:
            text = "answered with an error"
    extra = f": {comment}" if comment else ""
    return f"{node.label} {text} during the {what} (status 0x{status:04X}){extra}."


# ====================================================================== echo and query
def echo(node: PacsNode) -> float:
    """Verify the connection (C-ECHO, or a minimal QIDO-RS query for DICOMweb); the round trip in seconds."""
    t0 = time.monotonic()
    if node.protocol == DICOMWEB:
        _qido(node, "studies", {"limit": "1"})
        return time.monotonic() - t0
    with _association(node, [Verification]) as assoc:
        t1 = time.monotonic()
        status = assoc.send_c_echo()
        if not status or "Status" not in status:
            raise PacsError(_lost(node, assoc, "C-ECHO", time.monotonic() - t1, node.timeout_s))
        if status.Status != 0x0000:
            raise PacsError(f"{node.label} answered the C-ECHO with status 0x{status.Status:04X}.")
    elapsed = time.monotonic() - t0
    log.info("C-ECHO to %s: ok in %.3f s", node.label, elapsed)
    return elapsed


def _c_find(node: PacsNode, assoc: Any, identifier: Dataset, what: str, max_results: int,
            cancel: CancelLike = None) -> MatchList:
    out = MatchList()
    t_last = time.monotonic()
    model = StudyRootQueryRetrieveInformationModelFind
    stopping = False
    for status, ident in assoc.send_c_find(identifier, model, msg_id=1):
        if not status or "Status" not in status:
            if stopping:
                break  # the PACS ignored the C-CANCEL; keep what we have
            raise PacsError(_lost(node, assoc, what, time.monotonic() - t_last, node.timeout_s))
        t_last = time.monotonic()
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            if stopping:
                continue  # drain until the final response
            if ident is not None:
                out.append(ident)
            if len(out) >= max_results or _is_cancelled(cancel):
                out.truncated = len(out) >= max_results
                stopping = True
                try:
                    assoc.send_c_cancel(1, query_model=model)
                except Exception:
                    pass
        elif code == 0x0000 or (code == 0xFE00 and stopping):
            break
        else:
            raise PacsError(_status_problem(node, what, code, _FIND_STATUS, _text(status, "ErrorComment")))
    return out


def _find_identifier(level: str, **values: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    nonascii = False
    for key, value in values.items():
        setattr(ds, key, value if value is not None else "")
        if isinstance(value, str) and not value.isascii():
            nonascii = True
    if nonascii:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


STUDY_RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                     "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "SOPClassesInStudy",
                     "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_RETURN_KEYS = ("Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances",
                      "BodyPartExamined")


def find_studies(node: PacsNode, patient_id: Optional[str] = None, patient_name: Optional[str] = None,
                 study_date: Any = None, accession: Optional[str] = None, modality: Optional[str] = None, *,
                 study_uid: Optional[str] = None, max_results: int = 500, cancel: CancelLike = None) -> MatchList:
    """Studies matching the criteria (empty criteria match everything, up to ``max_results``).

    ``patient_name`` matches from the start (``SMITH`` finds ``SMITH^JOHN``; ``*`` and ``?`` are wildcards);
    ``study_date`` is a date or a range (see :func:`date_range`); ``modality`` is e.g. ``MR`` or ``MR\\CT``.
    No match gives an empty list, not an error.
    """
    keys = {k: "" for k in STUDY_RETURN_KEYS}
    keys.update(StudyInstanceUID=study_uid or "", PatientID=(patient_id or "").strip(),
                PatientName=name_pattern(patient_name), StudyDate=date_range(study_date),
                AccessionNumber=(accession or "").strip(), ModalitiesInStudy=(modality or "").strip().upper())
    if node.protocol == DICOMWEB:
        studies = _qido_find_studies(node, keys, max_results)
    else:
        with _association(node, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
            found = _c_find(node, assoc, _find_identifier("STUDY", **keys), "C-FIND (study)", max_results, cancel)
        studies = MatchList(_study_from(ds) for ds in found)
        studies.truncated = found.truncated
    truncated = studies.truncated
    studies = MatchList(s for s in studies if s.study_uid)
    studies.truncated = truncated
    _register_identifiers(studies)
    log.info("C-FIND studies on %s: %d match(es)%s", node.label, len(studies),
             " (truncated)" if studies.truncated else "")
    return studies


def find_series(node: PacsNode, study_uid: str, *, max_results: int = 2000) -> MatchList:
    """The series of one study (empty when the PACS does not have the study)."""
    if not study_uid:
        raise PacsError("No Study Instance UID was given for the series query.")
    keys = {k: "" for k in SERIES_RETURN_KEYS}
    keys.update(StudyInstanceUID=study_uid, SeriesInstanceUID="")
    if node.protocol == DICOMWEB:
        out = _qido_find_series(node, study_uid, keys, max_results)
    else:
        with _association(node, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
            found = _c_find(node, assoc, _find_identifier("SERIES", **keys), "C-FIND (series)", max_results)
        out = MatchList(_series_from(ds, study_uid) for ds in found)
        out.truncated = found.truncated
    out.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    log.info("C-FIND series on %s: %d match(es)", node.label, len(out))
    return out


def find_series_by_uid(node: PacsNode, series_uids: Sequence[str], study_uid: Optional[str] = None) -> MatchList:
    """The series among ``series_uids`` that the PACS has (in the order asked), to relink a plan's images.

    Asks the series of ``study_uid`` first when given (a plain hierarchical query every PACS answers), then
    the UIDs still missing with a series-level query across studies. UIDs the PACS does not have are simply
    absent from the result; see :func:`missing_series`.
    """
    wanted = [u.strip() for u in series_uids if u and u.strip()]
    found: dict[str, SeriesMatch] = {}
    if not wanted:
        return MatchList()
    if study_uid:
        for s in find_series(node, study_uid):
            if s.series_uid in wanted:
                found[s.series_uid] = s
    rest = [u for u in wanted if u not in found]
    if rest:
        if node.protocol == DICOMWEB:
            for uid in rest:
                keys = {k: "" for k in SERIES_RETURN_KEYS}
                for s in _qido_find_series(node, None, dict(keys, SeriesInstanceUID=uid), 10):
                    if s.series_uid == uid:
                        found[uid] = s
        else:
            with _association(node, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
                # UID list matching (PS3.4 C.2.2.2.2), in chunks to keep each request small
                for i in range(0, len(rest), 50):
                    chunk = rest[i:i + 50]
                    keys = {k: "" for k in SERIES_RETURN_KEYS}
                    keys.update(StudyInstanceUID="", SeriesInstanceUID="\\".join(chunk))
                    for ds in _c_find(node, assoc, _find_identifier("SERIES", **keys), "C-FIND (series by UID)",
                                      10 * len(chunk)):
                        s = _series_from(ds)
                        if s.series_uid in chunk:
                            found[s.series_uid] = s
    out = MatchList(found[u] for u in wanted if u in found)
    log.info("series lookup on %s: %d of %d found", node.label, len(out), len(wanted))
    return out


def missing_series(series_uids: Sequence[str], matches: Sequence[SeriesMatch]) -> list[str]:
    have = {m.series_uid for m in matches}
    return [u for u in series_uids if u and u not in have]


# ====================================================================== receiving (C-GET / C-MOVE SCP)
class _Receiver:
    """Writes received C-STORE objects to disk; shared by C-GET (same association) and C-MOVE (local SCP)."""

    def __init__(self, folder: Path, study_uid: str, series_uids: Optional[Sequence[str]], cancel: CancelLike,
                 on_file: Callable[[], None]) -> None:
        self.folder = folder
        self.study_uid = study_uid
        self.series_uids = set(series_uids) if series_uids else None
        self.cancel = cancel
        self.on_file = on_file
        self.files: list[Path] = []
        self.refused = 0
        self.write_errors: list[str] = []
        self.lock = threading.Lock()

    def handle_store(self, event) -> int:
        try:
            if _is_cancelled(self.cancel):
                return 0xA700  # refuse further objects once cancelled (out of resources)
            ds = event.dataset
            study = _text(ds, "StudyInstanceUID")
            series = _text(ds, "SeriesInstanceUID")
            if study != self.study_uid or (self.series_uids is not None and series not in self.series_uids):
                with self.lock:
                    self.refused += 1
                return 0xC000  # not asked for (a C-MOVE SCP must not take in strangers' objects)
            sop = str(event.request.AffectedSOPInstanceUID or _text(ds, "SOPInstanceUID"))
            target_dir = self.folder / _safe_component(series)
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{_safe_component(sop)}.dcm"
            tmp = target_dir / f".{target.name}.{uuid.uuid4().hex[:8]}.part"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(event.encoded_dataset(include_meta=True))
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink(missing_ok=True)
            with self.lock:
                self.files.append(target)
            self.on_file()
            return 0x0000
        except OSError as exc:
            with self.lock:
                self.write_errors.append(exc.strerror or str(exc))
            return 0xA700
        except Exception as exc:
            log.warning("a received object could not be stored: %s", type(exc).__name__)
            with self.lock:
                self.write_errors.append(type(exc).__name__)
            return 0xC000


class _CancelWatch:
    """Polls ``cancel`` while a retrieve runs; on cancel it sends C-CANCEL, then aborts if the PACS goes on."""

    def __init__(self, cancel: CancelLike, assoc: Any, model: str, grace_s: float = 2.0) -> None:
        self.cancel = cancel
        self.assoc = assoc
        self.model = model
        self.grace_s = grace_s
        self.msg_id = 1
        self.fired = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "_CancelWatch":
        if self.cancel is not None:
            self._thread = threading.Thread(target=self._run, name="bvn-pacs-cancel", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if _is_cancelled(self.cancel):
                self.fired = True
                try:
                    if self.assoc.is_established:
                        self.assoc.send_c_cancel(self.msg_id, query_model=self.model)
                except Exception:
                    pass
                if not self._stop.wait(self.grace_s):
                    try:
                        self.assoc.abort()
                    except Exception:
                        pass
                return


def _storage_contexts(sop_classes: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """Presentation contexts (SCP role) for C-GET: uncompressed and compressed per SOP class, within 128."""
    classes = list(dict.fromkeys(str(c) for c in sop_classes if c))
    budget = MAX_CONTEXTS - 1
    contexts: list[Any] = []
    for uid in classes[:budget]:
        contexts.append(build_context(uid, UNCOMPRESSED))
    for uid in classes:
        if len(contexts) >= budget:
            break
        contexts.append(build_context(uid, COMPRESSED))
    roles = [build_role(uid, scp_role=True) for uid in classes[:budget]]
    return contexts, roles


def _retrieve_identifier(study_uid: str, series_uid: Optional[str]) -> Dataset:
    ds = Dataset()
    if series_uid:
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
    else:
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_uid
    return ds


def _run_retrieve(node: PacsNode, assoc: Any, method: str, model: str, study_uid: str,
                  series_uids: Optional[Sequence[str]], result: RetrieveResult, receiver: _Receiver,
                  progress: Optional[ProgressFn], cancel: CancelLike, expected_each: dict[str, int]) -> None:
    targets: list[Optional[str]] = list(series_uids) if series_uids else [None]
    with _CancelWatch(cancel, assoc, model) as watch:
        for n, series_uid in enumerate(targets, start=1):
            if _is_cancelled(cancel):
                result.cancelled = True
                break
            watch.msg_id = n
            ident = _retrieve_identifier(study_uid, series_uid)
            if method == "C-GET":
                responses = assoc.send_c_get(ident, model, msg_id=n)
            else:
                responses = assoc.send_c_move(ident, node.destination_ae, model, msg_id=n)
            t_last = time.monotonic()
            last_counts = (0, 0, 0)
            for status, _ident in responses:
                if not status or "Status" not in status:
                    if watch.fired or _is_cancelled(cancel):
                        result.cancelled = True
                    else:
                        result.problems.append(_lost(node, assoc, method, time.monotonic() - t_last,
                                                     node.retrieve_timeout_s))
                    break
                t_last = time.monotonic()
                code = int(status.Status)
                counts = (_int(status, "NumberOfCompletedSuboperations") or 0,
                          _int(status, "NumberOfFailedSuboperations") or 0,
                          _int(status, "NumberOfWarningSuboperations") or 0)
                remaining = _int(status, "NumberOfRemainingSuboperations")
                if code in (0xFF00, 0xFF01):
                    last_counts = counts
                    if remaining is not None and series_uid is not None:
                        total = sum(counts) + remaining
                        expected_each[series_uid] = max(expected_each.get(series_uid, 0), total)
                    continue
                last_counts = counts if any(counts) or code == 0x0000 else last_counts
                if code == 0xFE00:
                    result.cancelled = True
                elif code == 0x0000:
                    pass
                elif code in (0xB000,):
                    pass  # some sub-operations failed: counted below
                elif watch.fired or _is_cancelled(cancel):
                    result.cancelled = True  # the PACS reports the refused rest as failed
                else:
                    problem = _status_problem(node, method, code, _RETRIEVE_STATUS, _text(status, "ErrorComment"))
                    if method == "C-MOVE" and code != 0xA801 and not any(counts):
                        problem += (f" Check that the PACS knows the move destination '{node.destination_ae}' with "
                                    f"this computer's address and port {node.local_port}, or use C-GET.")
                    result.problems.append(problem)
            result.completed += last_counts[0]
            result.failed += last_counts[1]
            result.warnings += last_counts[2]
            if result.cancelled or (result.problems and not assoc.is_established):
                break
        if watch.fired:
            result.cancelled = True


def retrieve(node: PacsNode, study_uid: str, series_uids: Optional[Sequence[str]] = None, *,
             dest_folder: Union[str, os.PathLike], method: Optional[str] = None,
             progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> RetrieveResult:
    """Retrieve a study, or some of its series, into ``dest_folder`` (C-GET, C-MOVE or WADO-RS).

    Returns a :class:`RetrieveResult` (also when cancelled or partly failed: see ``problems``); raises
    :class:`PacsError` when the PACS cannot be used at all (connection, association, query refused).
    """
    method = (method or ("WADO-RS" if node.protocol == DICOMWEB else node.retrieve_method)).upper()
    if method not in METHODS:
        raise PacsError(f"Unknown retrieve method '{method}' (use C-GET, C-MOVE or WADO-RS).")
    if not study_uid:
        raise PacsError("No Study Instance UID was given for the retrieve.")
    folder = Path(dest_folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PacsError(f"The folder {folder} for the retrieved images cannot be created: "
                        f"{exc.strerror or exc}.") from None
    result = RetrieveResult(node_label=node.label, folder=folder, method=method)
    t0 = time.monotonic()
    if method == "WADO-RS":
        _wado_retrieve(node, study_uid, series_uids, result, progress, cancel)
        result.seconds = time.monotonic() - t0
        return _finish_retrieve(node, result)

    # what to expect (counts for progress and completeness; SOP classes for C-GET)
    _report(progress, 0.0, f"Asking {node.display_name} for the study...")
    with _association(node, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
        keys = {k: "" for k in STUDY_RETURN_KEYS}
        keys["StudyInstanceUID"] = study_uid
        studies = _c_find(node, assoc, _find_identifier("STUDY", **keys), "C-FIND (study)", 5)
        series_keys = {k: "" for k in SERIES_RETURN_KEYS}
        series_keys.update(StudyInstanceUID=study_uid, SeriesInstanceUID="")
        series_found = [_series_from(ds, study_uid) for ds in
                        _c_find(node, assoc, _find_identifier("SERIES", **series_keys), "C-FIND (series)", 5000)]
    if not studies:
        result.problems.append(f"{node.label} does not have the requested study.")
        result.seconds = time.monotonic() - t0
        return result
    _register_identifiers([_study_from(studies[0])])
    counts = {s.series_uid: s.n_instances or 0 for s in series_found}
    if series_uids:
        missing = [u for u in series_uids if u not in counts]
        if missing:
            result.problems.append(f"{node.label} does not have {len(missing)} of the {len(series_uids)} "
                                   "requested series.")
        wanted = [u for u in series_uids if u in counts]
        if not wanted:
            result.seconds = time.monotonic() - t0
            return result
    else:
        # series by series: one series the PACS cannot send does not stop the others (and progress is finer);
        # the whole study at once only when the PACS lists no series
        wanted = [s.series_uid for s in series_found if s.series_uid] or None
    result.expected = sum(counts[u] for u in (wanted or counts))

    def on_file() -> None:
        n = len(receiver.files)
        total = result.expected
        _report(progress, n / total if total else 0.0,
                f"Received {n} of {total} image(s)" if total else f"Received {n} image(s)")

    receiver = _Receiver(folder, study_uid, wanted, cancel, on_file)
    expected_each = {u: counts.get(u, 0) for u in (wanted or [])}
    if method == "C-GET":
        classes = _values(studies[0], "SOPClassesInStudy") or COMMON_STORAGE_CLASSES
        contexts, roles = _storage_contexts(classes)
        model = StudyRootQueryRetrieveInformationModelGet
        with _association(node, [model] + contexts, roles=roles,
                          handlers=[(evt.EVT_C_STORE, receiver.handle_store)],
                          dimse_timeout=node.retrieve_timeout_s) as assoc:
            _run_retrieve(node, assoc, method, model, study_uid, wanted, result, receiver, progress, cancel,
                          expected_each)
    else:
        model = StudyRootQueryRetrieveInformationModelMove
        scp = AE(ae_title=node.destination_ae)
        scp.supported_contexts = [build_context(cx.abstract_syntax, ALL_SYNTAXES)
                                  for cx in AllStoragePresentationContexts]
        scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = float(node.retrieve_timeout_s)
        bind = "127.0.0.1" if _is_loopback(node.host) else ""
        try:
            server = scp.start_server((bind, int(node.local_port)), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, receiver.handle_store),
                                                    (evt.EVT_CONN_OPEN, _no_delay)])
        except OSError as exc:
            scp.shutdown()
            raise PacsError(f"Cannot receive images from {node.label} by C-MOVE: the local port {node.local_port} "
                            f"cannot be opened ({exc.strerror or exc}); close the program using it or choose "
                            "another port (and tell the PACS).") from None
        try:
            with _association(node, [model], dimse_timeout=node.retrieve_timeout_s) as assoc:
                _run_retrieve(node, assoc, method, model, study_uid, wanted, result, receiver, progress, cancel,
                              expected_each)
        finally:
            server.shutdown()
            scp.shutdown()
    result.files = sorted(receiver.files)
    if receiver.write_errors:
        result.problems.append(f"{len(receiver.write_errors)} image(s) could not be written to {folder}: "
                               f"{receiver.write_errors[0]}.")
    if receiver.refused:
        result.problems.append(f"{receiver.refused} object(s) that were not asked for were refused.")
    result.expected = max(result.expected, sum(expected_each.values()))
    result.seconds = time.monotonic() - t0
    return _finish_retrieve(node, result)


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(i[4][0].startswith("127.") or i[4][0] == "::1" for i in infos)


def _finish_retrieve(node: PacsNode, result: RetrieveResult) -> RetrieveResult:
    if not result.cancelled:
        if result.failed:
            result.problems.append(f"{node.label} could not send {result.failed} image(s).")
        if result.expected and result.received < result.expected and not result.problems:
            result.problems.append(f"{node.label} sent {result.received} of {result.expected} image(s).")
        elif not result.expected and not result.received and not result.problems:
            result.problems.append(f"{node.label} sent no images.")
    log.info("retrieve from %s by %s: %d of %d image(s), %d failed, cancelled=%s, %.2f s", node.label,
             result.method, result.received, result.expected, result.failed, result.cancelled, result.seconds)
    return result


def fetch_series_by_uid(node: PacsNode, series_uids: Sequence[str], dest_folder: Union[str, os.PathLike], *,
                        study_uid: Optional[str] = None, progress: Optional[ProgressFn] = None,
                        cancel: CancelLike = None) -> tuple[list[RetrieveResult], list[str]]:
    """Find the plan's series by UID and retrieve those the PACS has; returns (results, missing UIDs)."""
    matches = find_series_by_uid(node, series_uids, study_uid)
    by_study: dict[str, list[str]] = {}
    for m in matches:
        by_study.setdefault(m.study_uid, []).append(m.series_uid)
    results = []
    for i, (study, uids) in enumerate(by_study.items()):
        if _is_cancelled(cancel):
            break
        n = len(by_study)

        def sub(f: float, msg: str, i: int = i) -> None:
            _report(progress, (i + f) / n, msg)

        results.append(retrieve(node, study, uids, dest_folder=dest_folder, progress=sub, cancel=cancel))
    return results, missing_series(series_uids, matches)


# ====================================================================== store (C-STORE)
_STORE_WARN = {0xB000: "coercion of data elements", 0xB007: "data set does not match the SOP class",
               0xB006: "elements discarded"}
_STORE_FAIL = {0xA700: "the PACS is out of resources", 0xA900: "the data set does not match the SOP class",
               0xC000: "the PACS cannot understand it", 0x0122: "the PACS does not accept this kind of object",
               0x0124: "the PACS does not allow this workstation to store", 0x0117: "invalid SOP Instance UID"}


def store(node: PacsNode, files: Sequence[Union[str, os.PathLike]], progress: Optional[ProgressFn] = None,
          cancel: CancelLike = None) -> StoreResult:
    """Send DICOM files (e.g. the exported Encapsulated PDF, Secondary Captures and SR) to the PACS.

    Returns a :class:`StoreResult` with each file sent or failed (and why); raises :class:`PacsError` when
    the PACS cannot be used at all.
    """
    paths = [Path(f) for f in files]
    result = StoreResult(node_label=node.label)
    t0 = time.monotonic()
    if node.protocol == DICOMWEB:
        _stow(node, paths, result, progress, cancel)
        result.seconds = time.monotonic() - t0
        return result
    # read headers: SOP class and transfer syntax decide the presentation contexts
    items: list[tuple[Path, str, str]] = []
    for p in paths:
        try:
            ds = dcmread(str(p), stop_before_pixels=True)
            sop_class = str(ds.SOPClassUID)
            ts = str(ds.file_meta.TransferSyntaxUID)
            items.append((p, sop_class, ts))
        except Exception as exc:
            result.failed.append((p, f"not a readable DICOM file ({type(exc).__name__})"))
    if not items:
        result.seconds = time.monotonic() - t0
        return result
    # contexts: (SOP class, uncompressed) or (SOP class, its compressed syntax); batches of <= 128
    wanted: dict[tuple[str, str], list[str]] = {}
    for _p, sop, ts in items:
        if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            wanted.setdefault((sop, "u"), [str(x) for x in UNCOMPRESSED])
        else:
            wanted.setdefault((sop, ts), [ts])
    keys = list(wanted)
    batches = [keys[i:i + MAX_CONTEXTS] for i in range(0, len(keys), MAX_CONTEXTS)]
    done = 0
    for batch in batches:
        members = set(batch)
        batch_items = [it for it in items
                       if ((it[1], "u") if it[2] in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
                           else (it[1], it[2])) in members]
        contexts = [build_context(sop, wanted[(sop, key)]) for sop, key in batch]
        with _association(node, contexts) as assoc:
            accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
            for path, sop, ts in batch_items:
                if _is_cancelled(cancel):
                    result.cancelled = True
                    break
                done += 1
                _report(progress, (done - 1) / len(items), f"Sending {path.name} ({done} of {len(items)})")
                if not any(a[0] == sop and (a[1] == ts or (ts in UNCOMPRESSED and a[1] in UNCOMPRESSED))
                           for a in accepted):
                    result.failed.append((path, f"{node.label} does not accept this kind of object "
                                                f"(SOP class {sop}, transfer syntax {ts})"))
                    continue
                try:
                    ds = dcmread(str(path))
                except Exception as exc:
                    result.failed.append((path, f"not a readable DICOM file ({type(exc).__name__})"))
                    continue
                t1 = time.monotonic()
                try:
                    status = assoc.send_c_store(ds)
                except Exception as exc:  # e.g. no context after all
                    result.failed.append((path, f"could not be sent ({type(exc).__name__}: {exc})"))
                    continue
                if not status or "Status" not in status:
                    msg = _lost(node, assoc, "C-STORE", time.monotonic() - t1, node.timeout_s)
                    result.failed.append((path, msg))
                    result.problems.append(msg)
                    break
                code = int(status.Status)
                if code == 0x0000:
                    result.sent.append(path)
                elif code in _STORE_WARN or 0xB000 <= code <= 0xBFFF:
                    result.sent.append(path)
                    result.warnings.append((path, _STORE_WARN.get(code, f"warning 0x{code:04X}")))
                else:
                    why = _STORE_FAIL.get(code) or (f"the PACS could not store it" if 0xC000 <= code <= 0xCFFF
                                                    else "the PACS refused it")
                    comment = _text(status, "ErrorComment")
                    result.failed.append((path, f"{why} (status 0x{code:04X}{': ' + comment if comment else ''})"))
        if result.cancelled or result.problems:
            break
    sent_or_failed = {p for p in result.sent} | {p for p, _ in result.failed}
    if result.problems or result.cancelled:
        for p, _s, _t in items:
            if p not in sent_or_failed and not result.cancelled:
                result.failed.append((p, "not sent (the association ended)"))
    _report(progress, 1.0, f"Sent {len(result.sent)} of {len(paths)} file(s)")
    result.seconds = time.monotonic() - t0
    log.info("C-STORE to %s: %d sent, %d failed, %d warning(s), cancelled=%s", node.label, len(result.sent),
             len(result.failed), len(result.warnings), result.cancelled)
    return result


# ====================================================================== DICOMweb
def _auth_header(node: PacsNode) -> dict[str, str]:
    if not node.username:
        return {}
    token = base64.b64encode(f"{node.username}:{node.password}".encode("utf-8")).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _query_string(params: dict[str, Any]) -> str:
    """``a=1&b=x&b=y`` with wildcards and DICOM separators left as they are: some servers (Orthanc's
    DICOMweb plugin 1.7) do not percent-decode query values, so ``*`` must not become ``%2A``."""
    items: list[str] = []
    for key, value in params.items():
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v in (None, ""):
                continue
            items.append(f"{urllib.parse.quote(str(key), safe='')}={urllib.parse.quote(str(v), safe='*?^,.-_:')}")
    return "&".join(items)


def _http(node: PacsNode, method: str, path: str, *, params: Optional[dict[str, Any]] = None,
          headers: Optional[dict[str, str]] = None, body: Optional[bytes] = None,
          what: str = "request") -> tuple[int, Any, bytes]:
    base = (node.dicomweb_url or "").rstrip("/")
    if node.protocol != DICOMWEB or not base:
        raise PacsError(f"{node.label} has no DICOMweb URL.")
    url = f"{base}/{path.lstrip('/')}"
    if params:
        url += "?" + _query_string(params)
    req = urllib.request.Request(url, data=body, method=method, headers={**_auth_header(node), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=node.timeout_s) as rsp:
            return rsp.status, rsp.headers, rsp.read()
    except urllib.error.HTTPError as exc:
        try:
            payload = exc.read()
        except Exception:
            payload = b""
        if exc.code in (200, 202, 204):
            return exc.code, exc.headers, payload
        if exc.code == 401:
            raise PacsError(f"{node.label} refused the user name or password for the {what} (HTTP 401).") from None
        if exc.code == 403:
            raise PacsError(f"{node.label} denied access to the {what} (HTTP 403).") from None
        if exc.code == 404:
            return 404, exc.headers, payload
        if exc.code == 409 and what.startswith("STOW"):
            return 409, exc.headers, payload
        raise PacsError(f"{node.label} answered the {what} with HTTP {exc.code} ({exc.reason}).") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise PacsError(f"{node.label} refused the connection (nothing is listening there; check the URL "
                            "and that the PACS is running).") from None
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise PacsError(f"{node.label} did not answer the {what} within {node.timeout_s:g} s.") from None
        if isinstance(reason, socket.gaierror):
            raise PacsError(f"{node.label} could not be reached: the host name is unknown.") from None
        raise PacsError(f"{node.label} could not be reached: {getattr(reason, 'strerror', None) or reason}.") \
            from None
    except (socket.timeout, TimeoutError):
        raise PacsError(f"{node.label} did not answer the {what} within {node.timeout_s:g} s.") from None
    except OSError as exc:
        raise PacsError(f"{node.label} could not be reached: {exc.strerror or exc}.") from None


def _qido(node: PacsNode, path: str, params: dict[str, Any]) -> list[Dataset]:
    status, _headers, data = _http(node, "GET", path, params=params, headers={"Accept": "application/dicom+json"},
                                   what="QIDO-RS query")
    if status in (204, 404) or not data.strip():
        return []
    try:
        items = json.loads(data.decode("utf-8"))
        return [Dataset.from_json(item) for item in items]
    except Exception:
        raise PacsError(f"{node.label} sent an answer to the QIDO-RS query that is not DICOM JSON.") from None


def _qido_params(keys: dict[str, Any], max_results: int) -> dict[str, Any]:
    params: dict[str, Any] = {k: str(v) for k, v in keys.items() if v not in (None, "")}
    params["limit"] = str(max_results + 1)
    # one includefield per attribute (some servers do not split a comma-separated list)
    params["includefield"] = [k for k, v in keys.items() if v in (None, "")]
    if "PatientName" in params:
        params["fuzzymatching"] = "false"
    return params


def _qido_find_studies(node: PacsNode, keys: dict[str, Any], max_results: int) -> MatchList:
    found = _qido(node, "studies", _qido_params(keys, max_results))
    out = MatchList(_study_from(ds) for ds in found[:max_results])
    out.truncated = len(found) > max_results
    return out


def _qido_find_series(node: PacsNode, study_uid: Optional[str], keys: dict[str, Any], max_results: int) -> MatchList:
    path = f"studies/{study_uid}/series" if study_uid else "series"
    keys = {k: v for k, v in keys.items() if k != "StudyInstanceUID"}
    keys.setdefault("StudyInstanceUID", "")
    found = _qido(node, path, _qido_params(keys, max_results))
    out = MatchList(_series_from(ds, study_uid or "") for ds in found[:max_results])
    out.truncated = len(found) > max_results
    return out


def _multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    m = re.search(r'boundary="?([^";,]+)"?', content_type or "", re.IGNORECASE)
    if not m:
        return [body] if body[128:132] == b"DICM" else []
    delim = b"--" + m.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        _head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        parts.append(payload)
    return parts


def _wado_retrieve(node: PacsNode, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
                   progress: Optional[ProgressFn], cancel: CancelLike) -> None:
    series = _qido_find_series(node, study_uid, {k: "" for k in SERIES_RETURN_KEYS}, 5000)
    have = {s.series_uid for s in series}
    if not series:
        result.problems.append(f"{node.label} does not have the requested study.")
        return
    wanted = [u for u in series_uids if u in have] if series_uids else [s.series_uid for s in series]
    if series_uids and len(wanted) < len(series_uids):
        result.problems.append(f"{node.label} does not have {len(series_uids) - len(wanted)} of the "
                               f"{len(series_uids)} requested series.")
    instances: list[tuple[str, str]] = []
    for s_uid in wanted:
        for ds in _qido(node, f"studies/{study_uid}/series/{s_uid}/instances", {"includefield": "SOPInstanceUID"}):
            sop = _text(ds, "SOPInstanceUID")
            if sop:
                instances.append((s_uid, sop))
    result.expected = len(instances)
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    for n, (s_uid, sop) in enumerate(instances, start=1):
        if _is_cancelled(cancel):
            result.cancelled = True
            break
        try:
            status, headers, body = _http(node, "GET", f"studies/{study_uid}/series/{s_uid}/instances/{sop}",
                                          headers={"Accept": accept}, what="WADO-RS retrieve")
        except PacsError as exc:
            result.failed += 1
            result.problems.append(str(exc))
            break
        parts = _multipart_parts(headers.get("Content-Type", ""), body) if status == 200 else []
        if not parts:
            result.failed += 1
            continue
        target_dir = result.folder / _safe_component(s_uid)
        target_dir.mkdir(parents=True, exist_ok=True)
        for k, part in enumerate(parts):
            name = _safe_component(sop) + (f"_{k}" if k else "") + ".dcm"
            tmp = target_dir / f".{name}.part"
            tmp.write_bytes(part)
            os.replace(tmp, target_dir / name)
            result.files.append(target_dir / name)
        result.completed += 1
        _report(progress, n / len(instances), f"Received {n} of {len(instances)} image(s)")


def _stow(node: PacsNode, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
          cancel: CancelLike) -> None:
    for n, path in enumerate(paths, start=1):
        if _is_cancelled(cancel):
            result.cancelled = True
            break
        _report(progress, (n - 1) / len(paths), f"Sending {path.name} ({n} of {len(paths)})")
        try:
            data = path.read_bytes()
            if data[128:132] != b"DICM":
                result.failed.append((path, "not a DICOM file with file meta"))
                continue
        except OSError as exc:
            result.failed.append((path, f"cannot be read ({exc.strerror or exc})"))
            continue
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode("ascii") + data + \
            f"\r\n--{boundary}--\r\n".encode("ascii")
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        try:
            status, _h, payload = _http(node, "POST", "studies", body=body, what="STOW-RS send",
                                        headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
        except PacsError as exc:
            result.failed.append((path, str(exc)))
            result.problems.append(str(exc))
            break
        failed_reason = ""
        try:
            answer = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            failed_seq = (answer.get("00081198") or {}).get("Value") or []
            if failed_seq:
                reason = ((failed_seq[0].get("00081197") or {}).get("Value") or [0])[0]
                failed_reason = f"the PACS refused it (failure reason 0x{int(reason):04X})"
        except (ValueError, AttributeError, TypeError):
            pass
        if status in (200, 202) and not failed_reason:
            result.sent.append(path)
        else:
            result.failed.append((path, failed_reason or f"the PACS refused it (HTTP {status})"))
    _report(progress, 1.0, f"Sent {len(result.sent)} of {len(paths)} file(s)")
    log.info("STOW-RS to %s: %d sent, %d failed", node.label, len(result.sent), len(result.failed))
