"""The import: paths -> series groups (headers only) -> images.

* :func:`scan_path` reads headers only (no pixel decoding) and builds the series groups, so a list of
  studies and series can be shown at once.
* :func:`load_series` decodes one group into a :class:`Volume` or :class:`ProjectionImage`.
* :func:`load_path` does both.

Cancelling: ``cancel`` is a ``threading.Event`` (or any object with ``is_set()``). When it is set the
import stops promptly and returns what is complete: the images fully loaded so far, with
``report.cancelled = True``; no exception is raised. A series that was being decoded when the
cancel came is not returned (a half-decoded image is never shown).

Progress: ``progress(fraction, message)`` is called at most about 20 times a second, with the
fraction rising from 0 to 1. It is called from the thread that runs the import.

Nothing here raises for bad input: every file ends up in ``report`` as loaded or skipped with a
reason. Each file's header is read and validated inside its own guard, each series is decoded inside
its own guard, and every image is checked against the memory budget (:class:`ImportLimits`) before
anything is allocated or decoded; decoders run in worker processes killed at the time limit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from planner.imaging.dicom_scan import NotDicom, SkipFile, frames_of, read_dicom
from planner.imaging.limits import DEFAULT_LIMITS, ImportLimits, ReadContext, ReadStopped
from planner.imaging.pixels import decode_into
from planner.imaging.report import ImportReport
from planner.imaging.series import SeriesGroup, build_groups
from planner.imaging.sources import FileRef, Listing, _from_zip, close_archives, is_zip, list_sources
from planner.imaging.volume import ProjectionImage, Volume
from planner.logsafe import register_identifiers

log = logging.getLogger(__name__)

Image = Union[Volume, ProjectionImage]
ProgressFn = Callable[[float, str], None]
PathLike = Union[str, "os.PathLike[str]"]


class LoadError(Exception):
    """A series could not be loaded at all (the message says why)."""


class ImportCancelled(Exception):
    """Raised by :func:`load_series` only, when it is cancelled (``load_path`` never raises it)."""


# ------------------------------------------------------------------ summaries
@dataclass
class SeriesSummary:
    """What ``inspect`` prints and the GUI lists for one image."""

    key: str
    kind: str  # "volume" or "projection"
    source_format: str
    study_key: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    modality: str
    description: str
    series_number: Optional[int]
    #: volumes: (ni, nj, nk) = (columns, rows, slices); projections: (columns, rows, frames)
    size: tuple[int, ...]
    #: volumes: mm between voxel centres along i, j, k; projections: None (see pixel_spacing)
    spacing: Optional[tuple[float, float, float]]
    #: volumes: 4x4 row-major; projections: None
    ijk_to_lps: Optional[list[list[float]]]
    origin: Optional[list[float]]
    #: 3x3 row-major, columns are the i, j, k axes in LPS (as SimpleITK's GetDirection, reshaped)
    direction: Optional[list[list[float]]]
    transfer_syntaxes: list[str]
    warnings: list[str]
    n_files: int
    n_frames: int
    geometry_exact: bool
    #: projections: Pixel Spacing and Imager Pixel Spacing (row, col) as in the header, and the unit
    #: lengths are shown in ("px", "mm at detector", "mm (calibrated)", ...)
    pixel_spacing: Optional[tuple[float, float]] = None
    imager_pixel_spacing: Optional[tuple[float, float]] = None
    measurement_unit: str = ""
    loaded: bool = False
    dtype: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("size", "spacing", "pixel_spacing", "imager_pixel_spacing"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


@dataclass
class StudySummary:
    key: str
    study_instance_uid: str
    description: str
    date: str
    modalities: list[str]
    series_keys: list[str]


def summarize(g: SeriesGroup, image: Optional[Image] = None) -> SeriesSummary:
    info = g.info
    m_img = image.ijk_to_lps if isinstance(image, Volume) else g.ijk_to_lps
    if g.kind == "volume" and m_img is not None:
        m = m_img
        sp = np.linalg.norm(m[:3, :3], axis=0)
        nk, nj, ni = image.array.shape if isinstance(image, Volume) else g.shape[:3]
        size: tuple[int, ...] = (int(ni), int(nj), int(nk))
        spacing: Optional[tuple[float, float, float]] = (float(sp[0]), float(sp[1]), float(sp[2]))
        ijk = [[float(x) for x in row] for row in m]
        origin: Optional[list[float]] = [float(x) for x in m[:3, 3]]
        direction: Optional[list[list[float]]] = [[float(x) for x in row] for row in (m[:3, :3] / sp[None, :])]
    else:
        n = g.shape[0] if g.shape else 0
        size = (int(g.shape[2]), int(g.shape[1]), int(n)) if len(g.shape) >= 3 else tuple(int(x) for x in g.shape)
        spacing, ijk, origin, direction = None, None, None, None
    geo = g.projection_geometry
    unit = ""
    if g.kind == "projection":
        probe = (image if isinstance(image, ProjectionImage)
                 else ProjectionImage(np.zeros((1, 1, 1), np.uint8), geo, info))
        unit = probe.measurement_scale().unit_label
    return SeriesSummary(
        key=g.key, kind=g.kind, source_format=g.source_format, study_key=g.study_key,
        study_instance_uid=info.study_instance_uid, series_instance_uid=info.series_instance_uid,
        frame_of_reference_uid=info.frame_of_reference_uid, sop_class_uid=str(info.extra.get("SOPClassUID", "")),
        modality=info.modality, description=info.series_description, series_number=info.series_number,
        size=size, spacing=spacing, ijk_to_lps=ijk, origin=origin, direction=direction,
        transfer_syntaxes=list(g.transfer_syntaxes), warnings=list(g.warnings), n_files=g.n_files,
        n_frames=len(g.frames) if g.frames else (g.shape[0] if g.shape else 0), geometry_exact=g.geometry_exact,
        pixel_spacing=geo.pixel_spacing if geo else None,
        imager_pixel_spacing=geo.imager_pixel_spacing if geo else None,
        measurement_unit=unit, loaded=image is not None,
        dtype=str(image.array.dtype if isinstance(image, Volume) else image.frames.dtype) if image is not None
        else (str(g.dtype) if g.dtype is not None else ""))


@dataclass
class ImportResult:
    """Images keyed by series key (see :attr:`ImageInfo.key`), their summaries, and the report."""

    images: dict[str, Image] = field(default_factory=dict)
    series: list[SeriesSummary] = field(default_factory=list)
    report: ImportReport = field(default_factory=ImportReport)
    #: the header-only groups, for :func:`load_series` (also after ``load_path``)
    groups: dict[str, SeriesGroup] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.report.cancelled

    def summary(self, key: str) -> Optional[SeriesSummary]:
        return next((s for s in self.series if s.key == key), None)

    def volumes(self) -> dict[str, Volume]:
        return {k: v for k, v in self.images.items() if isinstance(v, Volume)}

    def projections(self) -> dict[str, ProjectionImage]:
        return {k: v for k, v in self.images.items() if isinstance(v, ProjectionImage)}

    def studies(self) -> list[StudySummary]:
        """Studies with their series (several series of one study are listed under it)."""
        out: dict[str, StudySummary] = {}
        for s in self.series:
            g = self.groups.get(s.key)
            info = g.info if g is not None else None
            st = out.get(s.study_key)
            if st is None:
                st = out[s.study_key] = StudySummary(
                    key=s.study_key, study_instance_uid=s.study_instance_uid,
                    description=info.study_description if info else "", date=info.study_date if info else "",
                    modalities=[], series_keys=[])
            st.series_keys.append(s.key)
            if s.modality and s.modality not in st.modalities:
                st.modalities.append(s.modality)
        return list(out.values())


# ------------------------------------------------------------------ helpers
class _Progress:
    def __init__(self, fn: Optional[ProgressFn], lo: float = 0.0, hi: float = 1.0, interval: float = 0.05) -> None:
        self.fn, self.lo, self.hi, self.interval = fn, lo, hi, interval
        self._last = 0.0

    def __call__(self, frac: float, message: str, force: bool = False) -> None:
        if self.fn is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        try:
            self.fn(self.lo + (self.hi - self.lo) * min(max(frac, 0.0), 1.0), message)
        except Exception:  # a broken progress callback must not break the import
            log.exception("progress callback failed")

    def sub(self, lo: float, hi: float) -> "_Progress":
        p = _Progress(self.fn, self.lo + (self.hi - self.lo) * lo, self.lo + (self.hi - self.lo) * hi, self.interval)
        p._last = self._last
        return p


def _is_set(cancel: Any) -> bool:
    try:
        return bool(cancel is not None and cancel.is_set())
    except Exception:
        return False


def _as_paths(path_or_paths: Union[PathLike, Iterable[PathLike]]) -> list[str]:
    if isinstance(path_or_paths, (str, bytes)) or hasattr(path_or_paths, "__fspath__"):
        return [os.fspath(path_or_paths)]  # type: ignore[arg-type]
    return [os.fspath(p) for p in path_or_paths]  # type: ignore[union-attr]


def _limits_with(limits: Optional[ImportLimits], time_limit_s: Optional[float]) -> ImportLimits:
    lim = limits or DEFAULT_LIMITS
    return lim if time_limit_s is None else dataclasses.replace(lim, time_limit_s=float(time_limit_s))


def _open_other(ref: FileRef) -> SeriesGroup:
    from planner.imaging.formats import open_non_dicom

    return open_non_dicom(ref)


# ------------------------------------------------------------------ scan
def scan_path(path_or_paths: Union[PathLike, Iterable[PathLike]], *, progress: Optional[ProgressFn] = None,
              cancel: Any = None, limits: Optional[ImportLimits] = None) -> ImportResult:
    """Read headers only and build the series groups (no pixel decoding). Files are marked "loaded"
    in the report when they belong to a group; a later decoding failure turns them into "skipped"."""
    limits = limits or DEFAULT_LIMITS
    t0 = time.monotonic()
    prog = progress if isinstance(progress, _Progress) else _Progress(progress)
    result = ImportResult()
    report = result.report
    listing = list_sources(_as_paths(path_or_paths), lambda: _is_set(cancel))
    for name, _status, reason in listing.decided:
        report.skipped(name, reason)
    for n in listing.notes:
        report.note(n)
    frames = []
    others: list[SeriesGroup] = []
    seen_sop: dict[str, str] = {}
    file_notes: dict[str, list[str]] = {}
    total = len(listing.refs)
    prog(0.0, f"Reading {total} file headers", force=True)
    for i, ref in enumerate(listing.refs):
        if _is_set(cancel):
            report.cancelled = True
            for r in listing.refs[i:]:
                report.skipped(r.name, "not read: import cancelled")
            break
        prog(i / max(total, 1), f"Reading headers: {i} of {total} files")
        try:
            try:
                f = read_dicom(ref, limits, cancel)
            except NotDicom:
                if ref.member is None and is_zip(ref.path):  # an archive not named .zip inside a folder
                    sub = Listing([], [], [])
                    _from_zip(ref.path, sub, lambda r: sub.refs.append(r))
                    listing.refs.extend(sub.refs)
                    for name, _st, why in sub.decided:
                        report.skipped(name, why)
                    total = len(listing.refs)
                    continue
                others.append(_open_other(ref))
                continue
            fr = frames_of(f)
            sop = fr[0].sop_instance_uid
            if sop:
                if sop in seen_sop:
                    report.skipped(ref.name, f"duplicate of {seen_sop[sop]} (same SOP Instance UID)")
                    continue
                seen_sop[sop] = ref.name
            if f.notes:
                file_notes[ref.name] = f.notes
            frames.extend(fr)
        except SkipFile as exc:
            report.skipped(ref.name, str(exc))
        except ReadStopped:  # cancelled while this header was read: the loop stops at the next file
            report.skipped(ref.name, "not read: import cancelled")
        except MemoryError:
            report.skipped(ref.name, "not enough memory to read the header")
        except RecursionError:
            report.skipped(ref.name, "damaged header (nested too deeply)")
        except OSError as exc:
            report.skipped(ref.name, f"cannot read the file ({exc.strerror or exc})")
        except Exception as exc:  # noqa: BLE001 - a reason in the report, never a traceback
            log.debug("header of %s unreadable", ref.name, exc_info=True)
            report.skipped(ref.name, f"unreadable header ({type(exc).__name__}: {_short(exc)})")
    groups, refused = build_groups(frames)
    for fr, reason in refused:
        report.skipped(fr.ref.name, reason)
    groups += others
    _register(result, groups, file_notes)
    if any(w.startswith("the files of this series belong to") for g in groups for w in g.warnings):
        report.note("Some series hold files of different patients or studies; they were split into one image "
                    "per patient and study (see the series warnings).")
    # second line of defence for the logs (planner.logsafe): these values are redacted if ever logged
    register_identifiers(v for g in groups for v in (g.info.patient_name, g.info.patient_id,
                                                     g.info.patient_birth_date))
    result.report.elapsed_s = time.monotonic() - t0
    prog(1.0, f"Found {len(result.groups)} series", force=True)
    return result


def _unique_key(key: str, taken: dict[str, Any]) -> str:
    if key not in taken:
        return key
    n = 2
    while f"{key}#{n}" in taken:
        n += 1
    return f"{key}#{n}"


def _register(result: ImportResult, groups: list[SeriesGroup], file_notes: dict[str, list[str]]) -> None:
    report = result.report
    for g in groups:
        if g.key in result.groups:
            g.key = _unique_key(g.key, result.groups)
            g.info.key = g.key
        result.groups[g.key] = g
        counts: dict[str, int] = {}
        for fr in g.frames:
            counts[fr.ref.name] = counts.get(fr.ref.name, 0) + 1
        for ref in g.files:
            n = counts.get(ref.name, 0)
            desc = g.info.series_description or g.info.modality or g.source_format
            what = f"{g.kind} {g.key} ({desc})" + (f", {n} frames" if n > 1 else "")
            notes = file_notes.get(ref.name)
            if notes:
                what += "; note: " + "; ".join(notes)
            report.loaded(ref.name, g.key, what)
        for fr, reason in g.dropped:
            if fr.ref.name not in {r.name for r in g.files} and report.reason(fr.ref.name) is None:
                report.skipped(fr.ref.name, reason)
        if g.warnings:
            report.series_warnings[g.key] = list(g.warnings)
        result.series.append(summarize(g))


# ------------------------------------------------------------------ load
def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "..."


def load_series(group: SeriesGroup, *, progress: Optional[ProgressFn] = None, cancel: Any = None,
                report: Optional[ImportReport] = None, time_limit_s: Optional[float] = None,
                workers: Optional[int] = None, limits: Optional[ImportLimits] = None) -> Image:
    """Decode one group. Raises :class:`LoadError` when no pixel could be decoded (or the image is over
    the memory budget) and :class:`ImportCancelled` when cancelled. Files that fail are recorded in
    ``report`` (and in the image's warnings); their slices are shown blank."""
    lim = _limits_with(limits, time_limit_s)
    prog = progress if isinstance(progress, _Progress) else _Progress(progress)
    if group.reader is not None:
        if _is_set(cancel):
            raise ImportCancelled()
        problem = lim.check_image(group.reader_bytes, "the image")
        if problem:
            raise LoadError(problem)
        prog(0.0, f"Reading {group.files[0].name if group.files else group.key}", force=True)
        try:
            # on this thread: the reader polls Cancel and the time limit between chunks, and decoders
            # (captures, SimpleITK) run in worker processes that are killed at the limit
            img = group.reader(ReadContext.start(lim, cancel))
        except ReadStopped as exc:
            if exc.cancelled:
                raise ImportCancelled() from None
            raise LoadError(str(exc)) from None
        except SkipFile as exc:
            raise LoadError(str(exc)) from None
        except MemoryError:
            raise LoadError("not enough memory to load the image") from None
        except OSError as exc:
            raise LoadError(f"the image could not be read ({exc.strerror or exc})") from None
        except Exception as exc:  # noqa: BLE001 - a reason for this image; the import goes on
            log.debug("reading %s failed", group.key, exc_info=True)
            raise LoadError(f"the image could not be read ({type(exc).__name__}: {_short(exc)})") from None
        img.info.key = group.key
        prog(1.0, "Done", force=True)
        return img
    need = int(np.prod(group.shape, dtype=np.int64)) * np.dtype(group.dtype).itemsize
    problem = lim.check_image(need, "the image")
    if problem:
        raise LoadError(problem)
    try:
        out = np.empty(group.shape, dtype=group.dtype)
    except (MemoryError, ValueError) as exc:
        raise LoadError(f"not enough memory for {group.shape} voxels ({exc})") from None
    used = set(group.slots)
    for k in range(group.shape[0]):
        if k not in used:
            out[k] = group.fill_value
    desc = group.info.series_description or group.info.modality or group.key
    prog(0.0, f"Decoding {desc}", force=True)
    color = group.kind == "projection" and len(group.shape) == 4

    def on_done(n: int, total: int) -> None:
        prog(n / max(total, 1), f"Decoding {desc}: {n} of {total} files")

    failures = decode_into(out, group.frames, group.slots, invert_sum=group.invert_sum, color=color, cancel=cancel,
                           on_file_done=on_done, time_limit_s=lim.time_limit_s, workers=workers,
                           memory_budget=lim.memory_budget())
    if _is_set(cancel):
        raise ImportCancelled()
    info = group.info
    if failures:
        failed_names = {ref.name for ref in failures}
        bad_slots = [s for fr, s in zip(group.frames, group.slots) if fr.ref.name in failed_names]
        for s in bad_slots:
            out[s] = group.fill_value
        for ref, reason in failures.items():
            if report is not None:
                report.skipped(ref.name, reason)
        if len(bad_slots) == len(group.slots):
            first_reason = next(iter(failures.values()))
            raise LoadError(f"no image could be decoded: {first_reason}")
        msg = (f"{len(failures)} file(s) could not be decoded and are shown blank: "
               + "; ".join(f"{os.path.basename(r.name)}: {why}" for r, why in list(failures.items())[:3])
               + (" ..." if len(failures) > 3 else ""))
        group.warnings.append(msg)
        if report is not None:
            report.series_warnings.setdefault(group.key, []).append(msg)
        info.warnings = list(group.warnings)
    prog(1.0, f"Decoded {desc}", force=True)
    if group.kind == "volume":
        return Volume(out, group.ijk_to_lps, info)  # type: ignore[arg-type]
    return ProjectionImage(out, group.projection_geometry, info, frame_time_ms=group.frame_time_ms)


def load_path(path_or_paths: Union[PathLike, Iterable[PathLike]], *, progress: Optional[ProgressFn] = None,
              cancel: Any = None, load_pixels: bool = True, time_limit_s: Optional[float] = None,
              limits: Optional[ImportLimits] = None) -> ImportResult:
    """Import a folder (recursive), DICOMDIR, zip archive, DICOM file, NIfTI, MHA/MHD, NRRD, PNG or JPEG
    (or a list of them). See the module docstring for cancelling and progress. ``limits`` sets the
    budgets (memory, time; ``time_limit_s`` overrides its time limit)."""
    t0 = time.monotonic()
    lim = _limits_with(limits, time_limit_s)
    prog = _Progress(progress)
    result = scan_path(path_or_paths, progress=prog.sub(0.0, 0.15), cancel=cancel, limits=lim)
    if not load_pixels or result.report.cancelled:
        result.report.elapsed_s = time.monotonic() - t0
        return result
    report = result.report
    groups = list(result.groups.values())
    weights = [max(1, len(g.frames)) for g in groups]
    total = float(sum(weights)) or 1.0
    done = 0.0
    for g, w in zip(groups, weights):
        if _is_set(cancel):
            report.cancelled = True
            break
        sub = prog.sub(0.15 + 0.85 * done / total, 0.15 + 0.85 * (done + w) / total)
        try:
            img = load_series(g, progress=sub, cancel=cancel, report=report, limits=lim)
        except ImportCancelled:
            report.cancelled = True
            report.note(f"Import cancelled while decoding {g.key}; that series was not loaded.")
            for ref in g.files:
                e = report.files.get(ref.name)
                if e is not None and e.status == "loaded":
                    report.files[ref.name].status = "skipped"
                    report.files[ref.name].reason = "not decoded: import cancelled"
                    report.files[ref.name].series_key = None
            break
        except Exception as exc:  # noqa: BLE001 - LoadError, or a bug: this series is reported, the rest loads
            if not isinstance(exc, LoadError):
                log.error("loading series %s failed unexpectedly", g.key, exc_info=True)
                exc = LoadError(f"unexpected error ({type(exc).__name__}: {_short(exc)}); see the log file")
            for ref in g.files:
                e = report.files.get(ref.name)
                if e is not None and e.status == "loaded":
                    e.status, e.reason, e.series_key = "skipped", str(exc), None
            report.note(f"Series {g.key} was not loaded: {exc}")
            done += w
            continue
        result.images[g.key] = img
        done += w
    if report.cancelled:
        for g in groups:
            if g.key not in result.images:
                for ref in g.files:
                    e = report.files.get(ref.name)
                    if e is not None and e.status == "loaded":
                        e.status, e.reason, e.series_key = "skipped", "not decoded: import cancelled", None
    result.series = [summarize(result.groups[s.key], result.images.get(s.key)) for s in result.series]
    # every pixel is in memory now: release the zip archives this import read
    close_archives({r.path for g in groups for r in g.files if r.member is not None})
    report.elapsed_s = time.monotonic() - t0
    prog(1.0, report.summary(), force=True)
    return result
