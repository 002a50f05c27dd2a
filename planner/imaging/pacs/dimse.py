"""DIMSE backend: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE with pynetdicom.

C-GET negotiates, for every SOP class in the study (``SOP Classes in Study`` from the C-FIND, or a
list of common imaging and export classes), a presentation context in the SCP role (role selection)
with uncompressed transfer syntaxes, and a second one with the usual lossless and lossy compressed
syntaxes, so the PACS can send a compressed image as it is stored. C-MOVE starts a local storage SCP
(``AE.start_server``) on ``PacsNode.local_port`` for the time of the retrieve; the PACS must know the
move destination AE title (``PacsNode.move_ae``, by default the calling AE title) with this
computer's address and that port.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, AllStoragePresentationContexts, build_context, build_role, evt
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from planner.imaging.pacs import dcmtk
from planner.imaging.pacs.backend import PacsBackend
from planner.imaging.pacs.common import (
    DIMSE,
    ENGINE_AUTO,
    ENGINES,
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
    CancelLike,
    MatchList,
    PacsCancelled,
    PacsError,
    ProgressFn,
    RetrieveResult,
    StoreResult,
    _int,
    _is_cancelled,
    _register_identifiers,
    _report,
    _series_from,
    _study_from,
    _text,
    log,
    pick_study,
    valid_matches,
    valid_uid,
)
from planner.imaging.pacs.received import Receiver
from planner.imaging.pacs.tls import client_tls_args, server_tls_context, tls_problem

PacsNode = Any  # planner.imaging.pacs.nodes.PacsNode (not imported: nodes imports this module)

#: Instances asked for in one C-GET/C-MOVE when a short series is resumed (UID list matching).
RESUME_CHUNK = 200
#: Smallest series fetched by getscu (below it the extra probe and process cost more than they save).
BULK_MIN_INSTANCES = 40

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
UNCOMPRESSED_SET = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian), str(ExplicitVRBigEndian)}
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


# ====================================================================== cancel
class _Guard:
    """Watches ``cancel`` for one operation (polled every 50 ms on its own thread). When it fires, every
    association the operation opened is aborted and its waiting reads are woken, so the operation returns
    within a fraction of a second whatever the PACS does (even a frozen one)."""

    POLL_S = 0.05

    def __init__(self, cancel: CancelLike) -> None:
        self.cancel = cancel
        self.fired = threading.Event()
        self._assocs: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "_Guard":
        if self.cancel is not None:
            self._thread = threading.Thread(target=self._run, name="bvn-pacs-cancel", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def is_set(self) -> bool:
        return self.fired.is_set() or _is_cancelled(self.cancel)

    def track(self, assoc: Any) -> None:
        with self._lock:
            self._assocs.append(assoc)
        if self.fired.is_set():
            _kill(assoc)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_S):
            if _is_cancelled(self.cancel):
                self.fired.set()
                with self._lock:
                    assocs = list(self._assocs)
                for assoc in assocs:
                    _kill(assoc)
                break
        # the association's own reactor thread may take a wake-up message first: repeat it until the
        # operation has ended
        while self.fired.is_set() and not self._stop.wait(self.POLL_S):
            with self._lock:
                assocs = list(self._assocs)
            for assoc in assocs:
                _wake(assoc)


def _wake(assoc: Any) -> None:
    q = getattr(getattr(assoc, "dimse", None), "msg_queue", None)
    if q is not None and q.empty():
        q.put((None, None))


def _kill(assoc: Any) -> None:
    """Abort ``assoc`` without waiting (a frozen PACS never answers), close its connection and wake
    whatever waits for its next message."""
    try:
        assoc.abort(block=False)
    except Exception:  # already gone
        pass
    sock = getattr(getattr(assoc, "dul", None), "socket", None)
    if sock is not None:
        threading.Timer(0.1, sock.close).start()  # after the A-ABORT had its chance to leave
    _wake(assoc)
    q = getattr(getattr(assoc, "dul", None), "to_user_queue", None)
    if q is not None:
        q.put(None)


_NO_GUARD = _Guard(None)


# ====================================================================== DIMSE association
@dataclass
class _AssocWatch:
    connected: bool = False
    peer_abort: bool = False
    guard: Optional[_Guard] = None

    def handlers(self) -> list:
        return [(evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_PDU_RECV, self._on_pdu)]

    def _on_open(self, event) -> None:
        self.connected = True
        _no_delay(event)
        if self.guard is not None:
            self.guard.track(event.assoc)

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
        with socket.create_connection((node.host, node.port), timeout=min(node.timeout_s, 5.0)):
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
    tls = tls_problem(node, assoc)
    if tls:
        return tls
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
    hint = "" if node.tls else " (if the PACS uses DICOM TLS on this port, turn TLS on for this node)"
    return f"{node.label} closed the connection during the association request{hint}."


def _make_ae(node: PacsNode, dimse_timeout: float) -> AE:
    ae = AE(ae_title=node.calling_ae)
    ae.connection_timeout = float(node.timeout_s)
    ae.acse_timeout = float(node.timeout_s)
    ae.dimse_timeout = float(dimse_timeout)
    ae.network_timeout = float(max(dimse_timeout, node.timeout_s))
    ae.maximum_pdu_size = int(node.max_pdu)
    return ae


def _associate_cancellable(ae: AE, node: PacsNode, roles: Sequence[Any], handlers: list, guard: _Guard) -> Any:
    """``ae.associate`` that gives up at once when the guard fires (connect included): the attempt itself
    ends by its own timeout on a helper thread, and an association it still makes is aborted."""
    tls_args = client_tls_args(node)
    if guard.cancel is None:
        return ae.associate(node.host, int(node.port), ae_title=node.ae_title, ext_neg=list(roles) or None,
                            evt_handlers=handlers, tls_args=tls_args)
    box: dict[str, Any] = {}
    done = threading.Event()

    def attempt() -> None:
        try:
            box["assoc"] = ae.associate(node.host, int(node.port), ae_title=node.ae_title,
                                        ext_neg=list(roles) or None, evt_handlers=handlers, tls_args=tls_args)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            done.set()
            if guard.is_set() and box.get("assoc") is not None:
                _kill(box["assoc"])
                ae.shutdown()

    threading.Thread(target=attempt, name="bvn-pacs-associate", daemon=True).start()
    while not done.wait(_Guard.POLL_S):
        if guard.is_set():
            raise PacsCancelled(f"Cancelled while connecting to {node.label}.")
    if "error" in box:
        raise box["error"]
    return box["assoc"]


@contextmanager
def _association(node: PacsNode, contexts: Sequence[Any], *, roles: Sequence[Any] = (),
                 handlers: Sequence[Any] = (), dimse_timeout: Optional[float] = None,
                 guard: _Guard = _NO_GUARD) -> Iterator[Any]:
    """An established association to ``node`` (released on exit) or a PacsError saying why not."""
    ae = _make_ae(node, dimse_timeout or node.timeout_s)
    for cx in contexts:
        if isinstance(cx, (str, UID)):
            ae.add_requested_context(cx, UNCOMPRESSED)
        else:
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
    watch = _AssocWatch(guard=guard)
    t0 = time.monotonic()
    assoc = None
    try:
        assoc = _associate_cancellable(ae, node, roles, watch.handlers() + list(handlers), guard)
    except PacsCancelled:
        raise
    except Exception as exc:  # bad address and the like
        log.warning("association with %s failed: %s", node.label, type(exc).__name__)
        ae.shutdown()
        if isinstance(exc, (OSError, ValueError)):
            raise PacsError(tls_problem(node, None, exc) or _connect_problem(node)) from None
        raise PacsError(f"{node.label} could not be contacted ({type(exc).__name__}: {exc}).") from None
    if not assoc.is_established:
        ae.shutdown()
        if guard.is_set():
            raise PacsCancelled(f"Cancelled while connecting to {node.label}.")
        msg = _association_problem(node, assoc, watch, time.monotonic() - t0)
        log.warning("%s", msg)
        raise PacsError(msg)
    assoc._bvn_watch = watch  # type: ignore[attr-defined]
    try:
        yield assoc
    finally:
        if guard.is_set():
            _kill(assoc)
        else:
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
def _echo(node: PacsNode, cancel: CancelLike = None) -> float:
    """C-ECHO, then a real C-FIND (study level, an unknown Study Instance UID) on a new association, so a
    PACS that answers the echo but refuses this workstation's queries fails the test with that reason."""
    t0 = time.monotonic()
    with _Guard(cancel) as guard:
        with _association(node, [Verification], guard=guard) as assoc:
            t1 = time.monotonic()
            status = assoc.send_c_echo()
            if guard.is_set():
                raise PacsCancelled(f"Cancelled while testing {node.label}.")
            if not status or "Status" not in status:
                raise PacsError(_lost(node, assoc, "C-ECHO", time.monotonic() - t1, node.timeout_s))
            if status.Status != 0x0000:
                raise PacsError(f"{node.label} answered the C-ECHO with status 0x{status.Status:04X}.")
        elapsed = time.monotonic() - t0
        probe = {"StudyInstanceUID": generate_uid(prefix="2.25."), "PatientID": ""}
        try:
            _find(node, "STUDY", probe, "C-FIND (study)", 1, guard)
        except PacsCancelled:
            raise
        except PacsError as exc:
            raise PacsError(f"{node.label} answers the C-ECHO but not a query: {exc}") from None
    log.info("C-ECHO and C-FIND to %s: ok in %.3f s", node.label, elapsed)
    return elapsed


def _c_find(node: PacsNode, assoc: Any, identifier: Dataset, what: str, max_results: int,
            guard: _Guard = _NO_GUARD) -> MatchList:
    out = MatchList()
    t_last = time.monotonic()
    model = StudyRootQueryRetrieveInformationModelFind
    stopping = False
    for status, ident in assoc.send_c_find(identifier, model, msg_id=1):
        if guard.is_set():
            raise PacsCancelled(f"Cancelled the {what} on {node.label}.")
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
            if len(out) >= max_results:
                out.truncated = True
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


def _find(node: PacsNode, level: str, keys: dict[str, Any], what: str, max_results: int,
          guard: _Guard = _NO_GUARD) -> MatchList:
    """One C-FIND on its own association (so no answer of an earlier query can be mixed into it)."""
    with _association(node, [StudyRootQueryRetrieveInformationModelFind], guard=guard) as assoc:
        return _c_find(node, assoc, _find_identifier(level, **keys), what, max_results, guard)


def _find_studies(node: PacsNode, keys: dict[str, Any], max_results: int, cancel: CancelLike) -> MatchList:
    with _Guard(cancel) as guard:
        found = _find(node, "STUDY", keys, "C-FIND (study)", max_results, guard)
    studies = MatchList(_study_from(ds) for ds in found)
    studies.truncated = found.truncated
    return studies


def _find_series(node: PacsNode, study_uid: Optional[str], keys: dict[str, Any], max_results: int,
                 cancel: CancelLike = None) -> MatchList:
    keys = dict(keys, StudyInstanceUID=study_uid or keys.get("StudyInstanceUID", ""))
    keys.setdefault("SeriesInstanceUID", "")
    with _Guard(cancel) as guard:
        found = _find(node, "SERIES", keys, "C-FIND (series)", max_results, guard)
    out = MatchList(_series_from(ds, study_uid or "") for ds in found)
    out.truncated = found.truncated
    return out


def _find_series_by_uids(node: PacsNode, rest: Sequence[str], cancel: CancelLike = None) -> MatchList:
    found = MatchList()
    with _Guard(cancel) as guard:
        # UID list matching (PS3.4 C.2.2.2.2), in chunks to keep each request small
        for i in range(0, len(rest), 50):
            chunk = rest[i:i + 50]
            keys = {k: "" for k in SERIES_RETURN_KEYS}
            keys.update(StudyInstanceUID="", SeriesInstanceUID="\\".join(chunk))
            for ds in _find(node, "SERIES", keys, "C-FIND (series by UID)", 10 * len(chunk), guard):
                s = _series_from(ds)
                if s.series_uid in chunk:
                    found.append(s)
    return found


def _instance_uids(node: PacsNode, study_uid: str, series_uid: str, guard: _Guard) -> list[str]:
    keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid, "SOPInstanceUID": ""}
    found = _find(node, "IMAGE", keys, "C-FIND (images)", 100000, guard)
    return [u for u in (_text(ds, "SOPInstanceUID") for ds in found) if valid_uid(u)]


# ====================================================================== retrieve (C-GET / C-MOVE)
_CHECKED_TAGS = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


def _store_handler(receiver: Receiver, guard: _Guard,
                   syntaxes: Optional[dict[str, set[str]]] = None) -> Callable[[Any], int]:
    """The C-STORE handler of a retrieve (C-GET on the same association, C-MOVE on the local SCP).
    ``syntaxes`` (when given) collects the transfer syntaxes each series arrived in."""

    def handle(event) -> int:
        if guard.is_set():
            return 0xA700  # refuse further objects once cancelled (out of resources)
        try:
            data = event.encoded_dataset(include_meta=True)  # the bytes as sent, with file meta
            ds = dcmread(DicomBytesIO(data), stop_before_pixels=True, specific_tags=_CHECKED_TAGS)
        except Exception as exc:  # undecodable: refuse it, counted as failed by the PACS
            log.warning("a received object could not be decoded: %s", type(exc).__name__)
            return 0xC000
        sop = str(event.request.AffectedSOPInstanceUID or _text(ds, "SOPInstanceUID"))
        series = _text(ds, "SeriesInstanceUID")
        ok = receiver.accept(_text(ds, "PatientID"), _text(ds, "StudyInstanceUID"), series, sop, data)
        if ok and syntaxes is not None:
            syntaxes.setdefault(series, set()).add(str(event.context.transfer_syntax))
        return 0x0000 if ok else 0xC000

    return handle


def _storage_contexts(sop_classes: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """Presentation contexts (SCP role) for C-GET, within the 127 a request can hold next to the Q/R model.

    Each SOP class gets one context with the uncompressed syntaxes (the fallback every PACS can make)
    and then one context per compressed syntax, so the PACS picks the context of the syntax the image is
    stored in and sends it unconverted (one context listing all compressed syntaxes lets the PACS accept
    just one of them, and it then cannot send the others)."""
    classes = list(dict.fromkeys(str(c) for c in sop_classes if c))[:MAX_CONTEXTS - 1]
    budget = MAX_CONTEXTS - 1 - len(classes)
    contexts: list[Any] = [build_context(uid, UNCOMPRESSED) for uid in classes]
    for uid in classes:
        for ts in COMPRESSED:
            if budget <= 0:
                break
            contexts.append(build_context(uid, [ts]))
            budget -= 1
    roles = [build_role(uid, scp_role=True) for uid in classes]
    return contexts, roles


def _retrieve_identifier(study_uid: str, series_uid: str, sop_uids: Optional[Sequence[str]] = None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if sop_uids else "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    if sop_uids:
        ds.SOPInstanceUID = list(sop_uids)
    return ds


def _run_retrieve(node: PacsNode, assoc: Any, method: str, model: str, study_uid: str,
                  requests: list[tuple[str, Optional[list[str]]]], result: RetrieveResult, guard: _Guard,
                  first_only: Optional[dict[str, set[str]]] = None) -> None:
    """One C-GET or C-MOVE per (series, instance list or None for the whole series). With ``first_only``
    (the syntaxes collected by the store handler) each request is cancelled (C-CANCEL) once its series
    delivered an object: a probe of the transfer syntax the PACS sends the series in."""
    for n, (series_uid, sop_uids) in enumerate(requests, start=1):
        if guard.is_set():
            result.cancelled = True
            break
        ident = _retrieve_identifier(study_uid, series_uid, sop_uids)
        if method == "C-GET":
            responses = assoc.send_c_get(ident, model, msg_id=n)
        else:
            responses = assoc.send_c_move(ident, node.destination_ae, model, msg_id=n)
        t_last = time.monotonic()
        last_counts = (0, 0, 0)
        probe_cancelled = False
        for status, _ident in responses:
            if guard.is_set():
                result.cancelled = True
                break
            if first_only is not None and not probe_cancelled and first_only.get(series_uid):
                probe_cancelled = True
                assoc.send_c_cancel(n, query_model=model)
            if not status or "Status" not in status:
                result.problems.append(_lost(node, assoc, method, time.monotonic() - t_last,
                                             node.retrieve_timeout_s))
                break
            t_last = time.monotonic()
            code = int(status.Status)
            counts = (_int(status, "NumberOfCompletedSuboperations") or 0,
                      _int(status, "NumberOfFailedSuboperations") or 0,
                      _int(status, "NumberOfWarningSuboperations") or 0)
            if code in (0xFF00, 0xFF01):
                last_counts = counts
                continue
            last_counts = counts if any(counts) or code == 0x0000 else last_counts
            if code == 0xFE00:
                result.cancelled = result.cancelled or not probe_cancelled
            elif code in (0x0000, 0xB000):
                pass  # B000: some sub-operations failed, counted below
            else:
                problem = _status_problem(node, method, code, _RETRIEVE_STATUS, _text(status, "ErrorComment"))
                if method == "C-MOVE" and code != 0xA801 and not any(counts):
                    problem += (f" Check that the PACS knows the move destination '{node.destination_ae}' with "
                                f"this computer's address and port {node.local_port}, or use C-GET.")
                result.problems.append(problem)
        if first_only is None:  # a probe's counts are not those of the retrieve
            result.completed += last_counts[0]
            result.failed += last_counts[1]
            result.warnings += last_counts[2]
        if result.cancelled or (result.problems and not assoc.is_established):
            break


def _missing_requests(node: PacsNode, study_uid: str, series_uids: Sequence[str], receiver: Receiver,
                      guard: _Guard) -> list[tuple[str, Optional[list[str]]]]:
    """The retrieve requests for what ``receiver`` lacks: a whole series when it has none of it, else the
    missing instances (from an image-level query) in chunks."""
    requests: list[tuple[str, Optional[list[str]]]] = []
    for uid in series_uids:
        have = receiver.have(uid)
        if not have:
            requests.append((uid, None))
            continue
        todo = [u for u in _instance_uids(node, study_uid, uid, guard) if u not in have]
        for i in range(0, len(todo), RESUME_CHUNK):
            requests.append((uid, todo[i:i + RESUME_CHUNK]))
    return requests


def _bulk_series(node: PacsNode, requests: list[tuple[str, Optional[list[str]]]],
                 counts: dict[str, Optional[int]]) -> list[str]:
    """The whole-series requests worth DCMTK's getscu (see :mod:`.dcmtk`): C-GET on a node whose engine is
    ``auto`` and that does not use TLS, series of at least :data:`BULK_MIN_INSTANCES` images."""
    if node.retrieve_engine != ENGINE_AUTO or dcmtk.available(node) is not None:
        return []
    out = [uid for uid, sops in requests if sops is None and (counts.get(uid) or 0) >= BULK_MIN_INSTANCES]
    if out:
        dcmtk.getscu_path()  # a missing DCMTK is an error that names itself, never a silent slow path
    return out


def _study_and_series(node: PacsNode, study_uid: str, guard: _Guard,
                      result: RetrieveResult) -> tuple[Optional[Any], list[Any]]:
    """The study and its series, each from its own C-FIND on its own association (the two at the same time);
    when the study's series count and the series listed disagree, the series are asked once more."""
    keys = {k: "" for k in STUDY_RETURN_KEYS}
    keys["StudyInstanceUID"] = study_uid
    series_keys = {k: "" for k in SERIES_RETURN_KEYS}
    series_keys.update(StudyInstanceUID=study_uid, SeriesInstanceUID="")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bvn-pacs-series") as pool:
        first = pool.submit(_find, node, "SERIES", series_keys, "C-FIND (series)", 5000, guard)
        matches = [_study_from(ds) for ds in _find(node, "STUDY", keys, "C-FIND (study)", 50, guard)]
        study = pick_study(node.label, matches, study_uid, result)
        first_found = first.result()
    if study is None:
        return None, []
    series: list[Any] = []
    for attempt in range(2):
        found = first_found if attempt == 0 else _find(node, "SERIES", series_keys, "C-FIND (series)", 5000, guard)
        series = valid_matches((_series_from(ds, study_uid) for ds in found), "series_uid")
        series = [s for s in series if s.study_uid == study_uid]
        if study.n_series is None or len({s.series_uid for s in series}) == study.n_series:
            break
    if study.n_series is not None and len({s.series_uid for s in series}) != study.n_series:
        result.problems.append(f"{node.label} lists {len(series)} series for a study it says has "
                               f"{study.n_series}; the study may be incomplete on the PACS.")
    return study, series


def _retrieve(node: PacsNode, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
              progress: Optional[ProgressFn], cancel: CancelLike) -> RetrieveResult:
    """Retrieve series by series; every series is compared with the number of instances the PACS promised
    (a short one is kept apart, see :mod:`.received`); what an earlier short retrieve into the same folder
    left is kept and only the missing instances are asked for."""
    method, folder = result.method, result.folder
    with _Guard(cancel) as guard:
        try:
            _report(progress, 0.0, f"Asking {node.display_name} for the study...")
            study, series_found = _study_and_series(node, study_uid, guard, result)
            if study is None:
                return result
            _register_identifiers([study])
            counts = {s.series_uid: s.n_instances for s in series_found}
            if series_uids:
                missing = [u for u in series_uids if u not in counts]
                if missing:
                    result.problems.append(f"{node.label} does not have {len(missing)} of the {len(series_uids)} "
                                           "requested series.")
                wanted = [u for u in series_uids if u in counts]
            else:
                wanted = list(counts)
            if not wanted:
                if not series_uids:
                    result.problems.append(f"{node.label} lists no series for the study.")
                return result
            total = sum(counts[u] or 0 for u in wanted)

            def on_file(n: int) -> None:
                _report(progress, n / total if total else 0.0,
                        f"Received {n} of {total} image(s)" if total else f"Received {n} image(s)")

            receiver = Receiver(folder, study_uid, wanted, patient_id=study.patient_id if study.patient_id else None,
                                on_file=on_file)
            requests = _missing_requests(node, study_uid, wanted, receiver, guard)
            syntaxes: dict[str, set[str]] = {}
            handler = _store_handler(receiver, guard, syntaxes)
            if method == "C-GET":
                classes = study.sop_classes or COMMON_STORAGE_CLASSES
                contexts, roles = _storage_contexts(classes)
                model = StudyRootQueryRetrieveInformationModelGet

                def pynetdicom_get(reqs: list, first_only: Optional[dict] = None) -> None:
                    with _association(node, [model] + contexts, roles=roles, handlers=[(evt.EVT_C_STORE, handler)],
                                      dimse_timeout=node.retrieve_timeout_s, guard=guard) as assoc:
                        _run_retrieve(node, assoc, method, model, study_uid, reqs, result, guard, first_only)

                bulk = _bulk_series(node, requests, counts)
                if bulk:
                    # the transfer syntax of each: getscu offers uncompressed syntaxes only, so a compressed
                    # series stays with pynetdicom (one context per compressed syntax: it arrives unchanged)
                    pynetdicom_get([(u, None) for u in bulk], first_only=syntaxes)
                    bulk = [u for u in bulk if syntaxes.get(u) and syntaxes[u] <= UNCOMPRESSED_SET
                            and len(receiver.have(u)) < (counts[u] or 0)]
                rest = [r for r in requests if r[0] not in bulk
                        and not (r[1] is None and counts[r[0]] and len(receiver.have(r[0])) >= counts[r[0]])]
                if rest and not guard.is_set():
                    pynetdicom_get(rest)
                for uid in bulk:
                    if guard.is_set():
                        break
                    dcmtk.fetch_series(node, study_uid, uid, receiver, result,
                                       dcmtk.staging_folder(folder, uid), guard)
                # what getscu did not deliver (a failure, an object it could not take): the missing instances
                short = [u for u in bulk if len(receiver.have(u)) < (counts[u] or 0)]
                missing = _missing_requests(node, study_uid, short, receiver, guard) if short and not guard.is_set() \
                    else []
                if missing and not guard.is_set():
                    pynetdicom_get(missing)
                if guard.is_set():
                    result.cancelled = True
            elif requests:
                _move(node, study_uid, requests, result, handler, guard)
            # second count: the series that look short are asked again (the PACS may still be receiving)
            short = [u for u in wanted if counts[u] is not None and len(receiver.have(u)) < counts[u]]
            if short and not guard.is_set():
                check = RetrieveResult(node.label, folder, method, patient_id=study.patient_id)
                again = {s.series_uid: s.n_instances for s in _study_and_series(node, study_uid, guard, check)[1]}
                for u in short:
                    if again.get(u) is not None and again[u] != counts[u]:
                        result.problems.append(f"{node.label} changed the number of images of a series during the "
                                               f"retrieve ({counts[u]}, then {again[u]}).")
                        counts[u] = max(counts[u] or 0, again[u])
        except PacsCancelled:
            result.cancelled = True
            return result
        if guard.is_set():
            result.cancelled = True
        receiver.finish(result, {u: counts[u] for u in wanted}, node.label)
    return result


def _move(node: PacsNode, study_uid: str, requests: list, result: RetrieveResult, handler: Callable,
          guard: _Guard) -> None:
    """C-MOVE to a storage SCP started here for the time of the retrieve, listening on
    ``node.local_bind`` (loopback by default) and ``node.local_port``."""
    model = StudyRootQueryRetrieveInformationModelMove
    scp = AE(ae_title=node.destination_ae)
    scp.supported_contexts = [build_context(cx.abstract_syntax, ALL_SYNTAXES) for cx in AllStoragePresentationContexts]
    scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = float(node.retrieve_timeout_s)
    scp.maximum_pdu_size = int(node.max_pdu)
    server = None
    deadline = time.monotonic() + 1.5  # a cancelled retrieve's server may still be closing (0.5 s poll)
    while server is None:
        try:
            server = scp.start_server((node.local_bind, int(node.local_port)), block=False,
                                      ssl_context=server_tls_context(node),
                                      evt_handlers=[(evt.EVT_C_STORE, handler), (evt.EVT_CONN_OPEN, _no_delay)])
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.EADDRINUSE and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            scp.shutdown()
            raise PacsError(f"Cannot receive images from {node.label} by C-MOVE: the local port {node.local_port} "
                            f"on {node.local_bind or 'every interface'} cannot be opened ({exc.strerror or exc}); "
                            "close the program using it or choose another port or interface (and tell the "
                            "PACS).") from None
    try:
        with _association(node, [model], dimse_timeout=node.retrieve_timeout_s, guard=guard) as assoc:
            _run_retrieve(node, assoc, "C-MOVE", model, study_uid, requests, result, guard)
    finally:
        if guard.is_set():
            for a in server.active_associations:
                _kill(a)
            # the server's accept loop notices a shutdown within 0.5 s: not worth waiting for after a cancel
            threading.Thread(target=lambda: (server.shutdown(), scp.shutdown()), daemon=True).start()
        else:
            server.shutdown()
            scp.shutdown()


# ====================================================================== store (C-STORE)
_STORE_WARN = {0xB000: "coercion of data elements", 0xB007: "data set does not match the SOP class",
               0xB006: "elements discarded"}
_STORE_FAIL = {0xA700: "the PACS is out of resources", 0xA900: "the data set does not match the SOP class",
               0xC000: "the PACS cannot understand it", 0x0122: "the PACS does not accept this kind of object",
               0x0124: "the PACS does not allow this workstation to store", 0x0117: "invalid SOP Instance UID"}


def _store(node: PacsNode, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
           cancel: CancelLike) -> StoreResult:
    with _Guard(cancel) as guard:
        try:
            return _store_guarded(node, paths, result, progress, guard)
        except PacsCancelled:
            result.cancelled = True
            return result


def _store_guarded(node: PacsNode, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
                   guard: _Guard) -> StoreResult:
    t0 = time.monotonic()
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
        with _association(node, contexts, guard=guard) as assoc:
            accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
            for path, sop, ts in batch_items:
                if guard.is_set():
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
                if guard.is_set():
                    result.cancelled = True
                    break
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
                    why = _STORE_FAIL.get(code) or ("the PACS could not store it" if 0xC000 <= code <= 0xCFFF
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



# ====================================================================== the backend
class DimseBackend(PacsBackend):
    protocol = DIMSE
    methods = ("C-GET", "C-MOVE")

    @staticmethod
    def address_of(node: PacsNode) -> str:
        return f"{node.host}:{node.port}"

    @staticmethod
    def config_problems(node: PacsNode) -> list[str]:
        out: list[str] = []
        for what, value in (("PACS AE title", node.ae_title), ("calling AE title", node.calling_ae),
                            ("move destination AE title", node.move_ae)):
            if what != "move destination AE title" and not value.strip():
                out.append(f"The {what} is empty.")
            elif value and (len(value) > 16 or "\\" in value or not value.isascii()
                            or any(ord(c) < 32 for c in value)):
                out.append(f"The {what} '{value}' is not valid (at most 16 ASCII characters, no backslash).")
        if not node.host.strip():
            out.append("The host is empty.")
        if not (1 <= int(node.port) <= 65535):
            out.append(f"The port {node.port} is not between 1 and 65535.")
        if node.retrieve_method == "C-MOVE" and not (1 <= int(node.local_port) <= 65535):
            out.append(f"The local port {node.local_port} for C-MOVE is not between 1 and 65535.")
        if node.retrieve_engine not in ENGINES:
            out.append(f"Unknown retrieve engine '{node.retrieve_engine}' (use {' or '.join(ENGINES)}).")
        if node.retrieve_method not in DimseBackend.methods:
            out.append(f"Unknown retrieve method '{node.retrieve_method}' (use C-GET or C-MOVE).")
        return out

    def default_method(self) -> str:
        return self.node.retrieve_method

    def echo(self, cancel: CancelLike = None) -> float:
        return _echo(self.node, cancel)

    def find_studies(self, keys: dict[str, Any], max_results: int, cancel: CancelLike = None) -> MatchList:
        return _find_studies(self.node, keys, max_results, cancel)

    def find_series(self, study_uid: Optional[str], keys: dict[str, Any], max_results: int,
                    cancel: CancelLike = None) -> MatchList:
        return _find_series(self.node, study_uid, keys, max_results, cancel)

    def find_series_by_uids(self, series_uids: Sequence[str], cancel: CancelLike = None) -> MatchList:
        return _find_series_by_uids(self.node, list(series_uids), cancel)

    def retrieve(self, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
                 progress: Optional[ProgressFn], cancel: CancelLike) -> RetrieveResult:
        return _retrieve(self.node, study_uid, series_uids, result, progress, cancel)

    def store(self, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
              cancel: CancelLike) -> StoreResult:
        return _store(self.node, paths, result, progress, cancel)
