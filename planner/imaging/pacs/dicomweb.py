"""DICOMweb backend: QIDO-RS queries, WADO-RS retrieve and STOW-RS send over HTTP(S) (``http.client``)
with HTTP Basic authentication.

Network hygiene: a password is sent only over https (or, when the node explicitly allows it, over
plain http to a loopback address); a redirect is followed only within the same origin (scheme, host
and port), so credentials never reach another server; every reply is read in chunks with a size cap
(the node's ``max_object_mb``) and written to disk as it arrives, never held whole in memory; every
read has a timeout and Cancel closes the connection at once. Each retrieved object is checked
(patient, study, series, valid UIDs) before it is kept (:mod:`.received`).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO

from planner.imaging.pacs.backend import PacsBackend
from planner.imaging.pacs.common import (
    DICOMWEB,
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
    CancelLike,
    MatchList,
    PacsCancelled,
    PacsError,
    ProgressFn,
    RetrieveResult,
    StoreResult,
    _is_cancelled,
    _register_identifiers,
    _report,
    _safe_url,
    _series_from,
    _study_from,
    _text,
    log,
    pick_study,
    valid_matches,
    valid_uid,
)
from planner.imaging.pacs.received import Receiver
from planner.imaging.pacs.tls import client_context, describe_ssl_error

PacsNode = Any  # planner.imaging.pacs.nodes.PacsNode (not imported: nodes imports this module)

MAX_REDIRECTS = 3
#: Largest answer to a query (QIDO-RS JSON), bytes.
MAX_QUERY_BYTES = 64 << 20
CHUNK = 1 << 16


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problems(node: PacsNode) -> list[str]:
    url = urllib.parse.urlsplit(node.dicomweb_url or "")
    if url.scheme not in ("http", "https") or not url.hostname:
        return ["The DICOMweb URL must start with http:// or https:// and name a server."]
    if url.username or url.password:
        return ["Put the user name and password in their own fields, not in the DICOMweb URL."]
    if url.scheme == "http" and node.password:
        if not node.allow_http_password:
            return ["A password is only sent over https://; use an https:// URL (or, for a PACS on this computer, "
                    "allow plain http explicitly)."]
        if not _is_loopback_host(url.hostname):
            return ["A password over plain http:// is only allowed to a PACS on this computer (loopback); "
                    "use https://."]
    return []


class _Cancel:
    """Shuts down the socket of the running request when ``cancel`` fires (polled every 50 ms). It is the
    socket itself that is kept, not the connection: a response the server ends by closing (``Connection:
    close``, a streamed multipart series) is read after http.client has let go of it (``conn.sock`` is
    None), and only shutting the socket down interrupts a read blocked on a frozen server."""

    def __init__(self, cancel: CancelLike) -> None:
        self.cancel = cancel
        self.sock: Optional[socket.socket] = None
        self.fired = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "_Cancel":
        if self.cancel is not None:
            self._thread = threading.Thread(target=self._run, name="bvn-dicomweb-cancel", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def is_set(self) -> bool:
        return self.fired or _is_cancelled(self.cancel)

    def _run(self) -> None:
        # Once cancelled, every socket the request has (or opens after: a cancel that fires between two
        # requests, while the next connection is being made) is shut down at once, until the request ends;
        # a read blocked on a frozen server then returns instead of waiting for its timeout.
        while not self._stop.wait(0.05):
            if not self.fired and not _is_cancelled(self.cancel):
                continue
            self.fired = True
            sock = self.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already shut down or closed: nothing left to interrupt
                    pass


_NO_CANCEL = _Cancel(None)


class _Client:
    """HTTP(S) requests to one node: credentials, same-origin redirects, TLS, timeouts, size caps."""

    def __init__(self, node: PacsNode, cancel: _Cancel = _NO_CANCEL) -> None:
        self.node = node
        self.cancel = cancel
        self.base = urllib.parse.urlsplit(node.dicomweb_url.rstrip("/"))
        self.conn: Optional[http.client.HTTPConnection] = None

    def _origin(self, parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, (parts.hostname or "").lower(), port

    def _connect(self, parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        scheme, host, port = self._origin(parts)
        if self.conn is not None and getattr(self.conn, "_bvn_origin", None) == (scheme, host, port):
            return self.conn
        self.close()
        if self.cancel.is_set():
            raise PacsCancelled("cancelled")
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.node.timeout_s, context=client_context(self.node))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.node.timeout_s)
        conn._bvn_origin = (scheme, host, port)  # type: ignore[attr-defined]
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _headers(self, parts: urllib.parse.SplitResult, extra: Optional[dict[str, str]]) -> dict[str, str]:
        headers = {"User-Agent": "BVN-Planner", **(extra or {})}
        if self.node.username and self._origin(parts) == self._origin(self.base):
            token = base64.b64encode(f"{self.node.username}:{self.node.password}".encode("utf-8")).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    def request(self, method: str, path: str, *, params: Optional[dict[str, Any]] = None,
                headers: Optional[dict[str, str]] = None, body: Optional[bytes] = None,
                what: str = "request") -> http.client.HTTPResponse:
        """The response (status 2xx; the caller reads it); errors become PacsError naming the problem."""
        label = self.node.label
        url = f"{self.node.dicomweb_url.rstrip('/')}/{path.lstrip('/')}"
        if params:
            url += "?" + _query_string(params)
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            if self.cancel.is_set():
                raise PacsCancelled(f"Cancelled the {what} on {label}.")
            target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            for attempt in range(2):
                reused = self.conn is not None
                try:
                    conn = self._connect(parts)
                    conn.request(method, target, body=body, headers=self._headers(parts, headers))
                    self.cancel.sock = conn.sock  # connected now; the response is read from this socket
                    rsp = conn.getresponse()
                    break
                except Exception as exc:
                    self.close()
                    if self.cancel.is_set():
                        raise PacsCancelled(f"Cancelled the {what} on {label}.") from None
                    stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                    if reused and stale and attempt == 0:
                        continue  # the server closed a kept-alive connection: once more on a new one
                    raise PacsError(_network_problem(self.node, exc, what)) from None
            if rsp.status in (301, 302, 303, 307, 308):
                location = rsp.getheader("Location") or ""
                rsp.read(CHUNK)
                self.close()
                new = urllib.parse.urlsplit(urllib.parse.urljoin(url, location))
                if self._origin(new) != self._origin(parts):
                    raise PacsError(f"{label} redirected the {what} to another server ({new.hostname}); it is not "
                                    "followed, so the credentials stay with the configured server. Check the URL.")
                url = urllib.parse.urlunsplit(new)
                if rsp.status == 303:
                    method, body = "GET", None
                continue
            if 200 <= rsp.status < 300:
                return rsp
            payload = rsp.read(4096)
            self.close()
            error = _NotFound if rsp.status == 404 else PacsError
            raise error(_http_problem(self.node, rsp.status, rsp.reason, what, payload))
        raise PacsError(f"{label} redirected the {what} more than {MAX_REDIRECTS} times.")

    def read_all(self, rsp: http.client.HTTPResponse, limit: int, what: str) -> bytes:
        chunks, size = [], 0
        for chunk in self.chunks(rsp, what):
            size += len(chunk)
            if size > limit:
                self.close()
                raise PacsError(f"{self.node.label} sent more than {limit >> 20} MB for the {what}; it was stopped.")
            chunks.append(chunk)
        return b"".join(chunks)

    def chunks(self, rsp: http.client.HTTPResponse, what: str) -> Iterator[bytes]:
        while True:
            try:
                chunk = rsp.read(CHUNK)
            except Exception as exc:
                self.close()
                if self.cancel.is_set():
                    raise PacsCancelled(f"Cancelled the {what} on {self.node.label}.") from None
                raise PacsError(_network_problem(self.node, exc, what)) from None
            if self.cancel.is_set():
                self.close()
                raise PacsCancelled(f"Cancelled the {what} on {self.node.label}.")
            if not chunk:
                return
            yield chunk


def _network_problem(node: PacsNode, exc: BaseException, what: str) -> str:
    import ssl

    if isinstance(exc, ssl.SSLError):
        return describe_ssl_error(node, exc)
    if isinstance(exc, ConnectionRefusedError):
        return (f"{node.label} refused the connection (nothing is listening there; check the URL "
                "and that the PACS is running).")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"{node.label} did not answer the {what} within {node.timeout_s:g} s."
    if isinstance(exc, socket.gaierror):
        return f"{node.label} could not be reached: the host name is unknown."
    if isinstance(exc, PacsError):
        return str(exc)
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return f"{node.label} closed the connection during the {what}."
    return f"{node.label} could not be reached: {getattr(exc, 'strerror', None) or exc}."


class _NotFound(PacsError):
    """HTTP 404."""


def _http_problem(node: PacsNode, status: int, reason: str, what: str, payload: bytes) -> str:
    if status == 404 and "WADO" in what:
        return f"{node.label} does not have the requested images (HTTP 404 for the {what})."
    if status == 401:
        return f"{node.label} refused the user name or password for the {what} (HTTP 401)."
    if status == 403:
        return f"{node.label} denied access to the {what} (HTTP 403)."
    if status == 404:
        return (f"{node.label} has no DICOMweb service at this address (HTTP 404 for the {what}); "
                "check the path of the URL (often ending in /dicom-web or /dicomweb).")
    return f"{node.label} answered the {what} with HTTP {status} ({reason})."


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


def _qido(client: _Client, path: str, params: dict[str, Any]) -> list[Dataset]:
    rsp = client.request("GET", path, params=params, headers={"Accept": "application/dicom+json"},
                         what="QIDO-RS query")
    if rsp.status == 204:
        rsp.read()
        return []
    data = client.read_all(rsp, MAX_QUERY_BYTES, "QIDO-RS query")
    if not data.strip():
        return []
    try:
        items = json.loads(data.decode("utf-8"))
        return [Dataset.from_json(item) for item in items]
    except Exception:
        raise PacsError(f"{client.node.label} sent an answer to the QIDO-RS query that is not DICOM JSON.") from None


def _qido_params(keys: dict[str, Any], max_results: int) -> dict[str, Any]:
    params: dict[str, Any] = {k: str(v) for k, v in keys.items() if v not in (None, "")}
    params["limit"] = str(max_results + 1)
    # one includefield per attribute (some servers do not split a comma-separated list)
    params["includefield"] = [k for k, v in keys.items() if v in (None, "")]
    if "PatientName" in params:
        params["fuzzymatching"] = "false"
    return params


def _find_series(client: _Client, study_uid: Optional[str], keys: dict[str, Any], max_results: int) -> MatchList:
    path = f"studies/{study_uid}/series" if study_uid else "series"
    keys = {k: v for k, v in keys.items() if k != "StudyInstanceUID"}
    keys.setdefault("StudyInstanceUID", "")
    found = _qido(client, path, _qido_params(keys, max_results))
    out = MatchList(_series_from(ds, study_uid or "") for ds in found[:max_results])
    out.truncated = len(found) > max_results
    return out


def _multipart_parts(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a (small) multipart body; the retrieve streams instead (:func:`_stream_parts`)."""
    import re

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


def object_limit(node: PacsNode) -> int:
    """The largest object accepted in a WADO reply, bytes (the node's setting, MB)."""
    return int(node.max_object_mb) << 20


def _boundary(content_type: str) -> bytes:
    import re

    m = re.search(r'boundary="?([^";,]+)"?', content_type or "", re.IGNORECASE)
    if not m:
        raise PacsError("the WADO-RS answer is not multipart/related")
    return m.group(1).encode("latin-1")


def _stream_parts(client: _Client, rsp: http.client.HTTPResponse, what: str) -> Iterator[bytes]:
    """The parts of a multipart/related reply, one at a time, as they arrive: at most one part (capped by
    the node's largest object) is held in memory, never the whole reply."""
    limit = object_limit(client.node)
    delim = b"--" + _boundary(rsp.getheader("Content-Type", ""))
    buf = bytearray()
    chunks = client.chunks(rsp, what)
    state = "preamble"
    for chunk in chunks:
        buf += chunk
        while True:
            if state == "preamble":
                i = buf.find(delim)
                if i < 0:
                    del buf[:max(0, len(buf) - len(delim))]
                    break
                j = buf.find(b"\r\n", i)
                if j < 0:
                    break
                if buf[i + len(delim):i + len(delim) + 2] == b"--":
                    return
                del buf[:j + 2]
                state = "headers"
            if state == "headers":
                k = buf.find(b"\r\n\r\n")
                if k < 0:
                    if len(buf) > 65536:
                        raise PacsError(f"{client.node.label} sent a WADO-RS part with headers over 64 kB.")
                    break
                del buf[:k + 4]
                state = "body"
            if state == "body":
                end = buf.find(b"\r\n" + delim)
                if (end < 0 and len(buf) > limit + len(delim) + 2) or end > limit:
                    client.close()
                    raise PacsError(f"{client.node.label} sent more than {limit >> 20} MB for one object of the "
                                    f"{what}; it was stopped.")
                if end < 0:
                    break
                yield bytes(buf[:end])
                del buf[:end + 2]
                state = "preamble"


def _fetch_series(client: _Client, study_uid: str, series_uid: str) -> Iterator[bytes]:
    """A whole series by WADO-RS in one request, streamed part by part."""
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    rsp = client.request("GET", f"studies/{study_uid}/series/{series_uid}", headers={"Accept": accept},
                         what="WADO-RS retrieve")
    return _stream_parts(client, rsp, "WADO-RS retrieve")


def _fetch_instance(client: _Client, study_uid: str, series_uid: str, sop_uid: str) -> list[bytes]:
    """One instance by WADO-RS (multipart/related), read with the node's size cap."""
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    rsp = client.request("GET", f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
                         headers={"Accept": accept}, what="WADO-RS retrieve")
    body = client.read_all(rsp, object_limit(client.node), "WADO-RS retrieve")
    return _multipart_parts(rsp.getheader("Content-Type", ""), body)


def _header_of(data: bytes) -> Optional[Dataset]:
    try:
        return dcmread(DicomBytesIO(data), stop_before_pixels=True)
    except Exception:
        return None


def _wado_retrieve(client: _Client, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
                   progress: Optional[ProgressFn]) -> RetrieveResult:
    node = client.node
    matches = [_study_from(ds) for ds in _qido(
        client, "studies", _qido_params(dict({k: "" for k in STUDY_RETURN_KEYS}, StudyInstanceUID=study_uid), 50))]
    study = pick_study(node.label, matches, study_uid, result)
    if study is None:
        return result
    _register_identifiers([study])
    series = valid_matches(_find_series(client, study_uid, {k: "" for k in SERIES_RETURN_KEYS}, 5000), "series_uid")
    have = {s.series_uid: s.n_instances for s in series}
    wanted = [u for u in series_uids if u in have] if series_uids else list(have)
    if series_uids and len(wanted) < len(series_uids):
        result.problems.append(f"{node.label} does not have {len(series_uids) - len(wanted)} of the "
                               f"{len(series_uids)} requested series.")
    if not wanted:
        return result
    listed: dict[str, list[str]] = {}
    for s_uid in wanted:
        found = _qido(client, f"studies/{study_uid}/series/{s_uid}/instances", {"includefield": "SOPInstanceUID"})
        listed[s_uid] = [u for u in (_text(ds, "SOPInstanceUID") for ds in found) if valid_uid(u)]
    # the promise: the larger of the series count and the instances listed
    expected = {u: max(len(listed[u]), have[u] or 0) for u in wanted}
    total = sum(expected.values())

    def on_file(n: int) -> None:
        _report(progress, n / total if total else 0.0, f"Received {n} of {total} image(s)")

    receiver = Receiver(result.folder, study_uid, wanted, patient_id=study.patient_id or None, on_file=on_file)
    try:
        _wado_fetch(client, study_uid, wanted, listed, receiver, result)
    except PacsCancelled:
        result.cancelled = True
    receiver.finish(result, expected, node.label)
    return result


def _wado_fetch(client: _Client, study_uid: str, wanted: list[str], listed: dict[str, list[str]], receiver: Receiver,
                result: RetrieveResult) -> None:
    """Each series in one streamed request; a series resumed after a short retrieve (or one the server will
    not send as a whole) instance by instance, only the missing ones."""
    for s_uid in wanted:
        try:
            if not receiver.have(s_uid) and _whole_series(client, study_uid, s_uid, receiver, result):
                continue
            present = receiver.have(s_uid)
            for sop in listed[s_uid]:
                if sop in present:
                    continue
                if client.cancel.is_set():
                    raise PacsCancelled("cancelled")
                parts = _fetch_instance(client, study_uid, s_uid, sop)
                if not parts:
                    result.failed += 1
                for part in parts:
                    _take(part, receiver, result)
        except PacsCancelled:
            raise
        except PacsError as exc:
            result.problems.append(str(exc))
            break


def _whole_series(client: _Client, study_uid: str, series_uid: str, receiver: Receiver,
                  result: RetrieveResult) -> bool:
    """The series in one request; False when the server answers 404 for the series as a whole (some do,
    e.g. for one UID held under two patients), so it is asked instance by instance."""
    try:
        for part in _fetch_series(client, study_uid, series_uid):
            _take(part, receiver, result)
    except _NotFound:
        return False
    return True


def _take(part: bytes, receiver: Receiver, result: RetrieveResult) -> None:
    ds = _header_of(part)
    if ds is None:
        result.failed += 1
        return
    if receiver.accept(_text(ds, "PatientID"), _text(ds, "StudyInstanceUID"), _text(ds, "SeriesInstanceUID"),
                       _text(ds, "SOPInstanceUID"), part):
        result.completed += 1


def _stow(client: _Client, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn]) -> None:
    node = client.node
    for n, path in enumerate(paths, start=1):
        if client.cancel.is_set():
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
            rsp = client.request("POST", "studies", body=body, what="STOW-RS send",
                                 headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
            status, payload = rsp.status, client.read_all(rsp, MAX_QUERY_BYTES, "STOW-RS send")
        except PacsCancelled:
            result.cancelled = True
            break
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


# ====================================================================== the backend
class DicomwebBackend(PacsBackend):
    protocol = DICOMWEB
    methods = ("WADO-RS",)

    @staticmethod
    def address_of(node: PacsNode) -> str:
        return _safe_url(node.dicomweb_url)

    @staticmethod
    def config_problems(node: PacsNode) -> list[str]:
        return url_problems(node)

    def _run(self, cancel: CancelLike, fn: Any) -> Any:
        with _Cancel(cancel) as guard:
            client = _Client(self.node, guard)
            try:
                return fn(client)
            finally:
                client.close()

    def echo(self, cancel: CancelLike = None) -> float:
        """A QIDO-RS query on the study root with the configured identity (a wrong path is HTTP 404: an
        error here, not an empty answer)."""
        t0 = time.monotonic()
        self._run(cancel, lambda c: _qido(c, "studies", {"limit": "1", "includefield": "StudyInstanceUID"}))
        return time.monotonic() - t0

    def find_studies(self, keys: dict[str, Any], max_results: int, cancel: CancelLike = None) -> MatchList:
        def run(c: _Client) -> MatchList:
            found = _qido(c, "studies", _qido_params(keys, max_results))
            out = MatchList(_study_from(ds) for ds in found[:max_results])
            out.truncated = len(found) > max_results
            return out

        return self._run(cancel, run)

    def find_series(self, study_uid: Optional[str], keys: dict[str, Any], max_results: int,
                    cancel: CancelLike = None) -> MatchList:
        return self._run(cancel, lambda c: _find_series(c, study_uid, keys, max_results))

    def find_series_by_uids(self, series_uids: Sequence[str], cancel: CancelLike = None) -> MatchList:
        def run(c: _Client) -> MatchList:
            found = MatchList()
            for uid in series_uids:
                keys = {k: "" for k in SERIES_RETURN_KEYS}
                for s in _find_series(c, None, dict(keys, SeriesInstanceUID=uid), 10):
                    if s.series_uid == uid:
                        found.append(s)
            return found

        return self._run(cancel, run)

    def retrieve(self, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
                 progress: Optional[ProgressFn], cancel: CancelLike) -> RetrieveResult:
        try:
            return self._run(cancel, lambda c: _wado_retrieve(c, study_uid, series_uids, result, progress))
        except PacsCancelled:
            result.cancelled = True
            return result

    def store(self, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
              cancel: CancelLike) -> StoreResult:
        self._run(cancel, lambda c: _stow(c, paths, result, progress))
        return result
