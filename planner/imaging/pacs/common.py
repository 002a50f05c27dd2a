"""Shared pieces of the PACS package: the error type, the result types, the matches of a query and
small helpers (dates, names, safe file names, cancel and progress). No network code here."""

from __future__ import annotations

import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from pydicom.dataset import Dataset

from planner import logsafe

log = logging.getLogger("planner.imaging.pacs")
# pynetdicom's own INFO/DEBUG lines are noise for the user's log (and carry identifiers); its warnings stay.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

ProgressFn = Callable[[float, str], None]
CancelLike = Any  # threading.Event, anything with is_set(), or a callable returning bool

DIMSE = "DIMSE"
DICOMWEB = "DICOMweb"
METHODS = ("C-GET", "C-MOVE", "WADO-RS")
#: Retrieve engines of a DIMSE node: "auto" fetches the large uncompressed series of a C-GET with DCMTK's
#: getscu (:mod:`.dcmtk`, about 2.5 times as fast as pynetdicom) and everything else with pynetdicom;
#: "pynetdicom" uses pynetdicom for everything. TLS nodes always use pynetdicom.
ENGINE_AUTO = "auto"
ENGINE_PYNETDICOM = "pynetdicom"
ENGINES = (ENGINE_AUTO, ENGINE_PYNETDICOM)

STUDY_RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                     "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "SOPClassesInStudy",
                     "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_RETURN_KEYS = ("Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances",
                      "BodyPartExamined")


class PacsError(RuntimeError):
    """A PACS operation failed; the message names the node and the problem (for the user)."""


class PacsCancelled(PacsError):
    """The user cancelled an operation that has no partial result (an echo or a query)."""


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
    #: Series Instance UID -> (received, expected) for every series that arrived short. Their files are
    #: kept apart in :attr:`incomplete_folder` (never in :attr:`folder`, which holds complete series only).
    incomplete: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Series Instance UID -> number of images, for the series that arrived complete.
    complete: dict[str, int] = field(default_factory=dict)
    #: Objects the PACS sent that belong to another patient, study or series than asked (rejected).
    rejected: int = 0
    #: The Patient ID the study was asked for ("" when the caller did not say: then the PACS must hold the
    #: study under one patient only).
    patient_id: str = ""

    @property
    def received(self) -> int:
        """Images received: those of complete series (``files``) and those of incomplete ones."""
        return len(self.files) + sum(have for have, _want in self.incomplete.values())

    @property
    def incomplete_folder(self) -> Path:
        return incomplete_folder(self.folder)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.cancelled and not self.incomplete

    def summary(self) -> str:
        got = f"{self.received} of {self.expected}" if self.expected else f"{self.received}"
        text = f"Received {got} image(s) from {self.node_label} by {self.method} in {self.seconds:.1f} s"
        if self.cancelled:
            text += " (cancelled)"
        parts = [text + "."]
        for uid, (have, want) in self.incomplete.items():
            parts.append(f"Series ...{uid[-12:]} is incomplete ({have} of {want}).")
        return " ".join(parts + self.problems)


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
    """A count from an answer; None when missing, not a number or negative."""
    try:
        value = ds.get(keyword, None)
        n = None if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if n is not None and 0 <= n < 1 << 31 else None


def _shown(ds: Dataset, keyword: str) -> str:
    return display_text(_text(ds, keyword))


def _study_from(ds: Dataset) -> StudyMatch:
    """A study match; every text is sanitised for display (control characters, length) and every count
    that is not a non-negative number is dropped (None)."""
    return StudyMatch(
        study_uid=_text(ds, "StudyInstanceUID"), patient_name=_shown(ds, "PatientName"),
        patient_id=_shown(ds, "PatientID"), patient_birth_date=_shown(ds, "PatientBirthDate")[:8],
        patient_sex=_shown(ds, "PatientSex")[:16], study_date=_shown(ds, "StudyDate")[:8],
        study_time=_shown(ds, "StudyTime")[:16], accession=_shown(ds, "AccessionNumber"),
        description=_shown(ds, "StudyDescription"),
        modalities=[display_text(m, 16) for m in _values(ds, "ModalitiesInStudy")][:32],
        sop_classes=[c for c in _values(ds, "SOPClassesInStudy") if valid_uid(c)],
        n_series=_int(ds, "NumberOfStudyRelatedSeries"), n_instances=_int(ds, "NumberOfStudyRelatedInstances"))


def _series_from(ds: Dataset, study_uid: str = "") -> SeriesMatch:
    return SeriesMatch(
        study_uid=_text(ds, "StudyInstanceUID") or study_uid, series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_shown(ds, "Modality")[:16], description=_shown(ds, "SeriesDescription"),
        series_number=_int(ds, "SeriesNumber"), n_instances=_int(ds, "NumberOfSeriesRelatedInstances"),
        body_part=_shown(ds, "BodyPartExamined"))


def valid_matches(matches: Iterable[Any], *uid_fields: str) -> list:
    """The matches whose UIDs are valid (others are dropped with a log line: never shown, never a path)."""
    out, dropped = [], 0
    for m in matches:
        if all(valid_uid(getattr(m, f)) for f in uid_fields):
            out.append(m)
        else:
            dropped += 1
    if dropped:
        log.warning("%d query answer(s) with an invalid UID were ignored", dropped)
    return out


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


_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def valid_uid(uid: Any) -> bool:
    """True for a DICOM UID (PS3.5 9.1: digits and dots, no leading zeros, at most 64 characters)."""
    return isinstance(uid, str) and 0 < len(uid) <= 64 and bool(_UID.match(uid))


def uid_component(uid: Any, what: str = "UID") -> str:
    """``uid`` as a file or folder name; raises PacsError when it is not a valid UID (so ``..``, ``/`` or
    any other text from the network never becomes a path)."""
    if not valid_uid(uid):
        shown = display_text(str(uid), 40)
        raise PacsError(f"The PACS sent an invalid {what} '{shown}'; it is not used as a file name.")
    return str(uid)


def incomplete_folder(folder: Path) -> Path:
    """Where the series of a retrieve into ``folder`` that arrived short are kept (beside it, so an import
    of ``folder`` never takes them in)."""
    folder = Path(folder)
    return folder.with_name(folder.name + ".incomplete")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Longest text from a query answer that is shown (characters).
DISPLAY_MAX = 128


def display_text(value: Any, limit: int = DISPLAY_MAX) -> str:
    """A value from a PACS answer made safe to show: control characters removed, whitespace folded,
    at most ``limit`` characters (with an ellipsis)."""
    text = _CONTROL.sub("", str(value if value is not None else ""))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"



def missing_series(series_uids, matches) -> list[str]:
    have = {m.series_uid for m in matches}
    return [u for u in series_uids if u and u not in have]


def finish_retrieve(label: str, result: "RetrieveResult") -> "RetrieveResult":
    if not result.cancelled:
        if result.failed:
            result.problems.append(f"{label} could not send {result.failed} image(s).")
        if result.expected and result.received < result.expected and not result.problems and not result.incomplete:
            result.problems.append(f"{label} sent {result.received} of {result.expected} image(s).")
        elif not result.expected and not result.received and not result.problems:
            result.problems.append(f"{label} sent no images.")
    log.info("retrieve from %s by %s: %d of %d image(s), %d failed, cancelled=%s, %.2f s", label,
             result.method, result.received, result.expected, result.failed, result.cancelled, result.seconds)
    return result


def pick_study(label: str, matches: list, study_uid: str, result: "RetrieveResult") -> Optional["StudyMatch"]:
    """The match of ``study_uid`` for the patient asked for (``result.patient_id``); None with a problem
    when the PACS does not have it, or holds the same study under several patients and no patient was
    named."""
    same = [m for m in matches if m.study_uid == study_uid]
    if result.patient_id:
        same = [m for m in same if m.patient_id == result.patient_id]
        if not same and any(m.study_uid == study_uid for m in matches):
            result.problems.append(f"{label} holds the requested study under another patient only; nothing was "
                                   "retrieved.")
            return None
    if not same:
        result.problems.append(f"{label} does not have the requested study.")
        return None
    if len({m.patient_id for m in same}) > 1:
        result.problems.append(f"{label} holds the requested study under {len({m.patient_id for m in same})} "
                               "different patients; nothing was retrieved (choose the study from a search).")
        return None
    return same[0]
