"""DICOMweb backend: QIDO-RS queries, WADO-RS retrieve and STOW-RS send over HTTP(S) with ``urllib``
and HTTP Basic authentication."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from pydicom.dataset import Dataset

from planner.imaging.pacs.backend import PacsBackend
from planner.imaging.pacs.common import (
    DICOMWEB,
    SERIES_RETURN_KEYS,
    CancelLike,
    MatchList,
    PacsError,
    ProgressFn,
    RetrieveResult,
    StoreResult,
    _is_cancelled,
    _report,
    _safe_component,
    _safe_url,
    _series_from,
    _study_from,
    _text,
    log,
)

PacsNode = Any  # planner.imaging.pacs.nodes.PacsNode (not imported: nodes imports this module)

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
    if not base:
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
                   progress: Optional[ProgressFn], cancel: CancelLike) -> RetrieveResult:
    series = _qido_find_series(node, study_uid, {k: "" for k in SERIES_RETURN_KEYS}, 5000)
    have = {s.series_uid for s in series}
    if not series:
        result.problems.append(f"{node.label} does not have the requested study.")
        return result
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
    return result


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
    return result


# ====================================================================== the backend
class DicomwebBackend(PacsBackend):
    protocol = DICOMWEB
    methods = ("WADO-RS",)

    @staticmethod
    def address_of(node: PacsNode) -> str:
        return _safe_url(node.dicomweb_url)

    @staticmethod
    def config_problems(node: PacsNode) -> list[str]:
        url = urllib.parse.urlparse(node.dicomweb_url or "")
        if url.scheme not in ("http", "https") or not url.netloc:
            return ["The DICOMweb URL must start with http:// or https:// and name a server."]
        return []

    def echo(self) -> float:
        t0 = time.monotonic()
        _qido(self.node, "studies", {"limit": "1"})
        return time.monotonic() - t0

    def find_studies(self, keys: dict[str, Any], max_results: int, cancel: CancelLike = None) -> MatchList:
        return _qido_find_studies(self.node, keys, max_results)

    def find_series(self, study_uid: Optional[str], keys: dict[str, Any], max_results: int) -> MatchList:
        return _qido_find_series(self.node, study_uid, keys, max_results)

    def find_series_by_uids(self, series_uids: Sequence[str]) -> MatchList:
        found = MatchList()
        for uid in series_uids:
            keys = {k: "" for k in SERIES_RETURN_KEYS}
            for s in _qido_find_series(self.node, None, dict(keys, SeriesInstanceUID=uid), 10):
                if s.series_uid == uid:
                    found.append(s)
        return found

    def retrieve(self, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
                 progress: Optional[ProgressFn], cancel: CancelLike) -> RetrieveResult:
        return _wado_retrieve(self.node, study_uid, series_uids, result, progress, cancel)

    def store(self, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
              cancel: CancelLike) -> StoreResult:
        _stow(self.node, paths, result, progress, cancel)
        return result
