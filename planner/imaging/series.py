"""Series building: DICOM frames -> groups that each become one Volume or ProjectionImage.

Rules (docs/architecture.md, data flow step 1):

* Frames are grouped by Series Instance UID (a stable generated key when it is empty or missing),
  Frame of Reference, image orientation (within 1e-4), image size, pixel spacing and pixel format.
* One patient per image: files of one Series Instance UID that disagree on Patient ID or Study
  Instance UID are split into one image per patient and study (the largest keeps the series' key),
  and every part carries a warning; a series split by Frame of Reference is flagged the same way.
* The geometry is validated before a volume is built: a stack whose ``ijk_to_lps`` is not finite, is
  singular or has a voxel spacing outside 0.01 to 50 mm is refused, each of its files reported with the
  reason (the other series still load).
* A volume's slices are sorted by their position along the slice normal (Image Position (Patient)
  projected on row x column direction), never by Instance Number.
* Several images at one position (echoes, time points, b-values) are split into separate groups by
  the first attribute that separates them; if none does, the first image at each position is kept
  and the others are reported.
* The geometry is kept exactly as the slices lie:
  - equal gaps: ``ijk_to_lps`` k column = (last position - first position) / (n - 1);
  - gantry tilt: the k column is not along the normal, so the matrix is sheared (exactly as the
    slices lie; :func:`planner.imaging.resample.resample_regular` makes an orthogonal grid on request);
  - missing slices (gaps that are whole multiples of the smallest gap): blank slices are inserted at
    the missing positions so every real slice keeps its true place;
  - irregular gaps: the average spacing is used and a warning gives the largest position error;
    the true positions are kept in ``ImageInfo.slice_positions_lps``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from planner.imaging.dicom_header import first
from planner.imaging.dicom_scan import PROJECTION_MODALITIES, DicomFrame, syntax_name
from planner.imaging.sources import FileRef
from planner.imaging.volume import ImageInfo, ProjectionGeometry, WindowLevel, matrix_problem

#: Orientations closer than this (max difference of the direction cosines) are the same.
ORIENTATION_TOL = 1e-4
#: Two gaps are "equal" (or a whole multiple) when they differ by less than this fraction of the gap.
GAP_REL_TOL = 0.01
#: Slices closer than this along the normal are at the same position (mm).
SAME_POSITION_MM = 1e-3
#: Total sideways drift of the slice origins over the stack below which the stack is not sheared (mm).
#: 10 micrometres: far below any voxel size; keeps rounding noise in Image Position from shearing.
SHEAR_TOL_MM = 0.01
#: Largest distance between a slice's true position and the grid above which the geometry is flagged
#: as approximate (mm).
POSITION_TOL_MM = 0.01
#: Tilt angles below this are not worth a warning (degrees); the matrix is still exact.
TILT_WARN_DEG = 0.1
#: Attributes tried, in order, to tell apart several images at one slice position.
SPLIT_ATTRIBUTES = ("EchoNumbers", "EchoTime", "TemporalPositionIdentifier", "DiffusionBValue", "StackID",
                    "TriggerTime", "AcquisitionNumber", "ImageType")


@dataclass
class SeriesGroup:
    """One future image: what is known before any pixel is decoded."""

    key: str
    kind: str  # "volume" | "projection"
    source_format: str  # "DICOM", "NIfTI", "NRRD", "MetaImage", "PNG", "JPEG", ...
    info: ImageInfo
    files: list[FileRef] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: array shape: (nk, nj, ni) for volumes, (frames, rows, cols[, 3]) for projections
    shape: tuple[int, ...] = ()
    ijk_to_lps: Optional[np.ndarray] = None
    geometry_exact: bool = True
    transfer_syntaxes: list[str] = field(default_factory=list)
    study_key: str = ""
    # DICOM specifics
    frames: list[DicomFrame] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    dtype: Any = None
    #: MONOCHROME1: stored value v is shown as (invert_sum - v) so higher is brighter
    invert_sum: Optional[float] = None
    fill_value: float = 0.0
    projection_geometry: Optional[ProjectionGeometry] = None
    frame_time_ms: Optional[float] = None
    #: research formats and captures: reads the whole image; polls the ReadContext (Cancel, time limit)
    reader: Optional[Callable[[Any], Any]] = None
    #: research formats and captures: memory the reader needs (checked against the budget first)
    reader_bytes: int = 0
    #: frames left out (same position as another image) -> reason
    dropped: list[tuple[DicomFrame, str]] = field(default_factory=list)

    @property
    def n_files(self) -> int:
        return len({r for r in self.files})

    def spacing(self) -> Optional[tuple[float, ...]]:
        if self.ijk_to_lps is not None:
            return tuple(float(x) for x in np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0))
        g = self.projection_geometry
        if g is not None and (g.pixel_spacing or g.imager_pixel_spacing):
            return tuple(g.pixel_spacing or g.imager_pixel_spacing)  # type: ignore[arg-type]
        return None


# ------------------------------------------------------------------ keys
def _hash(parts: list[Any]) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:12]


def series_base_key(h: dict[str, Any]) -> str:
    """The Series Instance UID, or a stable key made from the series' identifying attributes when the
    UID is empty or missing (the same files give the same key in every import)."""
    uid = str(h.get("SeriesInstanceUID") or "").strip()
    if uid:
        return uid
    return "no-series-uid-" + _hash([h.get("StudyInstanceUID"), h.get("FrameOfReferenceUID"), h.get("Modality"),
                                     first(h.get("SeriesNumber")), h.get("SeriesDescription"), h.get("SeriesDate"),
                                     h.get("SeriesTime"), h.get("StudyDate"), h.get("StudyTime"),
                                     h.get("ProtocolName"), h.get("Manufacturer")])


def study_key_of(h: dict[str, Any]) -> str:
    uid = str(h.get("StudyInstanceUID") or "").strip()
    if uid:
        return uid
    return "no-study-uid-" + _hash([h.get("PatientID"), h.get("PatientName"), h.get("StudyDate"), h.get("StudyTime"),
                                    h.get("AccessionNumber"), h.get("StudyDescription"), h.get("StudyID")])


# ------------------------------------------------------------------ info
def image_info(h: dict[str, Any], key: str) -> ImageInfo:
    """ImageInfo from a header dict (identity and description; no per-slice lists yet)."""
    sn = first(h.get("SeriesNumber"))
    info = ImageInfo(
        modality=str(h.get("Modality") or ""),
        study_instance_uid=str(h.get("StudyInstanceUID") or ""),
        series_instance_uid=str(h.get("SeriesInstanceUID") or ""),
        frame_of_reference_uid=str(h.get("FrameOfReferenceUID") or ""),
        series_description=str(h.get("SeriesDescription") or ""),
        series_number=int(sn) if isinstance(sn, int) else None,
        patient_name=str(h.get("PatientName") or ""),
        patient_id=str(h.get("PatientID") or ""),
        patient_birth_date=str(h.get("PatientBirthDate") or ""),
        patient_sex=str(h.get("PatientSex") or ""),
        study_date=str(h.get("StudyDate") or ""),
        study_description=str(h.get("StudyDescription") or ""),
        accession_number=str(h.get("AccessionNumber") or ""),
        institution=str(h.get("InstitutionName") or ""),
        manufacturer=str(h.get("Manufacturer") or ""),
        transfer_syntax=str(h.get("TransferSyntaxUID") or ""),
    )
    info.key = key
    extra = info.extra
    for kw in ("SOPClassUID", "ImageType", "ScanningSequence", "SequenceVariant", "SequenceName", "ProtocolName",
               "BodyPartExamined", "PatientPosition", "ContrastBolusAgent", "ManufacturerModelName", "StudyTime",
               "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "StudyID",
               "PhotometricInterpretation", "RescaleType"):
        v = h.get(kw)
        if v not in (None, "", []):
            extra[kw] = v
    for kw in ("EchoTime", "RepetitionTime", "InversionTime", "MagneticFieldStrength", "SliceThickness",
               "SpacingBetweenSlices", "GantryDetectorTilt", "EchoNumbers"):
        v = first(h.get(kw))
        if v is not None:
            extra[kw] = v
    return info


def _header_windows(windows: list[tuple[float, float]], h: dict[str, Any]) -> list[WindowLevel]:
    return [WindowLevel(c, w, "header") for c, w in windows]


# ------------------------------------------------------------------ pixel format
def plan_dtype(frames: list[DicomFrame], h: dict[str, Any]
               ) -> tuple[np.dtype, tuple[float, float], tuple[float, float]]:
    """Output dtype after rescale, the stored value range and the rescaled range.

    Integer slopes and intercepts keep an integer type just wide enough for the rescaled range of the
    Bits Stored (as GDCM/SimpleITK do); anything else is float32 (computed in float64, then rounded
    once to float32)."""
    ba = int(h.get("BitsAllocated") or 16)
    bs = h.get("BitsStored")
    bs = int(bs) if isinstance(bs, int) and 0 < bs <= ba else ba
    signed = h.get("PixelRepresentation") == 1
    if signed:
        lo, hi = -(2 ** (bs - 1)), 2 ** (bs - 1) - 1
    else:
        lo, hi = 0, 2 ** bs - 1
    stored = (float(lo), float(hi))
    if ba == 1:
        return np.dtype(np.uint8), (0.0, 1.0), (0.0, 1.0)
    if h.get("ModalityLUTSequence"):
        bits = int(h.get("_modality_lut_bits") or 16)
        return np.dtype(np.uint8 if bits <= 8 else np.uint16), stored, (0.0, float(2 ** min(bits, 16) - 1))
    slopes = {f.slope for f in frames} or {1.0}
    inters = {f.intercept for f in frames} or {0.0}
    out_lo, out_hi = np.inf, -np.inf
    for s in slopes:
        for it in inters:
            a, b = lo * s + it, hi * s + it
            out_lo, out_hi = min(out_lo, a, b), max(out_hi, a, b)
    integral = all(float(s).is_integer() for s in slopes) and all(float(i).is_integer() for i in inters)
    if integral and ba <= 32:
        for dt in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
            info = np.iinfo(dt)
            if info.min <= out_lo and out_hi <= info.max:
                return np.dtype(dt), stored, (float(out_lo), float(out_hi))
        return np.dtype(np.float64), stored, (float(out_lo), float(out_hi))
    return np.dtype(np.float32), stored, (float(out_lo), float(out_hi))


# ------------------------------------------------------------------ grouping
def _orientation_key(f: DicomFrame) -> tuple:
    h = f.file.header
    ps = f.pixel_spacing or (0.0, 0.0)
    return (str(h.get("FrameOfReferenceUID") or ""), f.rows, f.cols, round(ps[0], 4), round(ps[1], 4),
            str(h.get("PhotometricInterpretation") or ""), h.get("SamplesPerPixel") or 1, h.get("BitsAllocated"))


def _is_volume_frame(f: DicomFrame) -> bool:
    h = f.file.header
    mod = str(h.get("Modality") or "")
    if mod in PROJECTION_MODALITIES:
        return False
    if (h.get("SamplesPerPixel") or 1) != 1 or h.get("BitsAllocated") == 1:
        return False
    pi = str(h.get("PhotometricInterpretation") or "MONOCHROME2")
    if pi not in ("MONOCHROME1", "MONOCHROME2"):
        return False
    return f.is_volume_slice


class GeometryError(Exception):
    """A stack whose geometry cannot make a volume (the message is the reason for its files)."""


def _identity(f: DicomFrame) -> tuple[str, str]:
    h = f.file.header
    return str(h.get("PatientID") or "").strip(), str(h.get("StudyInstanceUID") or "").strip()


def _split_by_identity(base: str, fs: list[DicomFrame]) -> list[tuple[str, list[DicomFrame], list[str]]]:
    """(key, frames, warnings) per patient and study within one Series Instance UID."""
    by_id: dict[tuple[str, str], list[DicomFrame]] = defaultdict(list)
    for f in fs:
        by_id[_identity(f)].append(f)
    if len(by_id) == 1:
        return [(base, fs, [])]
    ordered = sorted(by_id.values(), key=lambda m: (-len({x.ref for x in m}), min(x.ref.name for x in m)))
    ids = list(by_id)
    what = [w for w, i in (("Patient ID", 0), ("Study Instance UID", 1)) if len({k[i] for k in ids}) > 1]
    n_files = [len({x.ref for x in m}) for m in ordered]
    out = []
    for n, members in enumerate(ordered):
        warning = (f"the files of this series belong to {len(ordered)} different patients or studies "
                   f"({' and '.join(what)} differ; {' + '.join(str(k) for k in n_files)} files): they were split "
                   f"into one image each, this one has {n_files[n]} file(s); make sure it is the right patient")
        out.append((base if n == 0 else f"{base}#patient{n + 1}", members, [warning]))
    return out


def build_groups(frames: list[DicomFrame]) -> tuple[list[SeriesGroup], list[tuple[DicomFrame, str]]]:
    """Group frames into volumes and projection images. Keys are unique; see the module docstring.
    Returns the groups and the frames refused (with the reason) because their stack's geometry is
    implausible."""
    by_base: dict[str, list[DicomFrame]] = defaultdict(list)
    for f in frames:
        by_base[series_base_key(f.file.header)].append(f)
    groups: list[SeriesGroup] = []
    refused: list[tuple[DicomFrame, str]] = []
    for series_key, all_frames in by_base.items():
        for base, fs, id_warnings in _split_by_identity(series_key, all_frames):
            _build_series(base, fs, id_warnings, groups, refused)
    return groups, refused


def _build_series(base: str, fs: list[DicomFrame], id_warnings: list[str], groups: list[SeriesGroup],
                  refused: list[tuple[DicomFrame, str]]) -> None:
    parts: list[tuple[str, list[DicomFrame]]] = []
    vol = [f for f in fs if _is_volume_frame(f)]
    proj = [f for f in fs if not _is_volume_frame(f)]
    # volume frames: by frame of reference / size / spacing, then orientation within tolerance
    clusters: list[tuple[tuple, np.ndarray, list[DicomFrame]]] = []
    for f in vol:
        k = _orientation_key(f)
        for ck, co, members in clusters:
            if ck == k and np.max(np.abs(co - f.orientation)) <= ORIENTATION_TOL:  # type: ignore[operator]
                members.append(f)
                break
        else:
            clusters.append((k, f.orientation, [f]))  # type: ignore[arg-type]
    for _k, _o, members in clusters:
        for sub in _split_same_position(members):
            parts.append(("volume", sub))
    # projection frames: one image per file (a multi-frame file is one cine image)
    per_file: dict[FileRef, list[DicomFrame]] = defaultdict(list)
    for f in proj:
        per_file[f.ref].append(f)
    for _ref, members in per_file.items():
        parts.append(("projection", members))
    parts.sort(key=_part_order)
    n_frames_of_ref = len({ck[0] for ck, _o, _m in clusters})
    for n, (kind, members) in enumerate(parts):
        key = base if n == 0 else f"{base}#{n + 1}"
        if kind == "volume":
            try:
                g = make_volume_group(key, members)
            except GeometryError as exc:
                refused += [(m, str(exc)) for m in members]
                continue
            if n_frames_of_ref > 1:
                g.warnings.append(f"the series holds images in {n_frames_of_ref} frames of reference: split into "
                                  "separate images (their coordinates are not comparable)")
        else:
            g = make_projection_group(key, members)
        for w in id_warnings:
            g.warnings.insert(0, w)
        g.info.warnings = g.warnings
        groups.append(g)


def _part_order(part: tuple[str, list[DicomFrame]]) -> tuple:
    kind, members = part
    inst = [m.instance_number for m in members if isinstance(m.instance_number, int)]
    return (0 if kind == "volume" else 1, -len(members), min(inst) if inst else 0, min(m.ref.name for m in members),
            min((m.frame or 0) for m in members))


def _heights(members: list[DicomFrame]) -> np.ndarray:
    o = members[0].orientation
    r, c = o[:3] / np.linalg.norm(o[:3]), o[3:] / np.linalg.norm(o[3:])  # type: ignore[index]
    n = np.cross(r, c)
    n /= np.linalg.norm(n)
    return np.array([m.position @ n for m in members])  # type: ignore[operator]


def _has_duplicates(h: np.ndarray) -> bool:
    if len(h) < 2:
        return False
    s = np.sort(h)
    return bool(np.any(np.diff(s) < SAME_POSITION_MM))


def _split_same_position(members: list[DicomFrame]) -> list[list[DicomFrame]]:
    h = _heights(members)
    if not _has_duplicates(h):
        return [members]
    for attr in SPLIT_ATTRIBUTES:
        values = [m.split.get(attr) for m in members]
        distinct = list(dict.fromkeys(values))
        if len(distinct) < 2:
            continue
        subs = [[m for m, v in zip(members, values) if v == d] for d in distinct]
        if all(not _has_duplicates(_heights(s)) for s in subs):
            for s in subs:
                s[0].split["_split_by"] = attr
            return subs
    # no attribute separates them: keep the first image at each position
    order = sorted(range(len(members)), key=lambda i: (h[i], members[i].instance_number or 0, members[i].ref.name,
                                                        members[i].frame or 0))
    kept: list[DicomFrame] = []
    dropped: list[tuple[DicomFrame, str]] = []
    last_h = None
    last_kept: Optional[DicomFrame] = None
    for i in order:
        if last_h is not None and abs(h[i] - last_h) < SAME_POSITION_MM:
            dropped.append((members[i], f"same slice position as {last_kept.ref.name if last_kept else '?'} "
                                        "(duplicate image left out)"))
            continue
        kept.append(members[i])
        last_h, last_kept = h[i], members[i]
    kept[0].split["_dropped"] = dropped
    return [kept]


# ------------------------------------------------------------------ volume geometry
@dataclass
class StackGeometry:
    order: list[int]  # indices into the frames, sorted along the normal
    slots: list[int]  # slot (k index) of each sorted frame
    n_slots: int
    ijk_to_lps: np.ndarray
    positions: np.ndarray  # (n_slots, 3) true or interpolated slice origins
    warnings: list[str]
    exact: bool
    tilt_deg: float = 0.0


def stack_geometry(positions: np.ndarray, orientation: np.ndarray, pixel_spacing: tuple[float, float],
                   single_slice_spacing: float = 1.0, tiebreak: Optional[list[Any]] = None) -> StackGeometry:
    """Geometry of a stack of parallel slices (positions (n, 3) in any order; orientation 6 cosines;
    pixel_spacing (row spacing, column spacing) as in DICOM)."""
    r = orientation[:3] / np.linalg.norm(orientation[:3])
    c = orientation[3:] / np.linalg.norm(orientation[3:])
    n = np.cross(r, c)
    n /= np.linalg.norm(n)
    P = np.asarray(positions, dtype=float)
    h = P @ n
    keys = tiebreak if tiebreak is not None else [0] * len(P)
    order = sorted(range(len(P)), key=lambda i: (h[i], keys[i] if keys[i] is not None else 0))
    Ps, hs = P[order], h[order]
    warnings: list[str] = []
    m = np.eye(4)
    m[:3, 0] = r * pixel_spacing[1]  # i runs along the row direction; spacing between columns
    m[:3, 1] = c * pixel_spacing[0]  # j runs along the column direction; spacing between rows
    if len(P) == 1:
        m[:3, 2] = n * single_slice_spacing
        m[:3, 3] = Ps[0]
        return StackGeometry(order, [0], 1, m, Ps.copy(), warnings, True)
    gaps = np.diff(hs)
    base = float(gaps.min())
    mult = gaps / base
    mround = np.maximum(1, np.round(mult))
    multiples_ok = bool(np.all(np.abs(gaps - mround * base) <= GAP_REL_TOL * base * mround))
    n_missing = int(np.sum(mround - 1)) if multiples_ok else 0
    if multiples_ok and (n_missing == 0 or n_missing <= len(P)):
        slots = [0] + [int(x) for x in np.cumsum(mround)]
    else:
        slots = list(range(len(P)))
        multiples_ok = False
    n_slots = slots[-1] + 1
    step = (Ps[-1] - Ps[0]) / (n_slots - 1)
    along = float(step @ n)
    lateral = step - along * n
    drift = float(np.linalg.norm(lateral)) * (n_slots - 1)
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(lateral), along)))
    if drift < SHEAR_TOL_MM:
        step = n * along
        tilt = 0.0
    m[:3, 2] = step
    m[:3, 3] = Ps[0]
    grid = Ps[0][None, :] + np.asarray(slots, dtype=float)[:, None] * step[None, :]
    resid = np.linalg.norm(Ps - grid, axis=1)
    max_resid = float(resid.max())
    exact = max_resid <= POSITION_TOL_MM
    if n_missing:
        where = [f"{hs[i]:.2f} and {hs[i + 1]:.2f}" for i in np.nonzero(mround > 1)[0][:5]]
        warnings.append(f"{n_missing} slice(s) missing (between {'; '.join(where)} mm along the slice normal); "
                        f"blank slices were inserted so every slice keeps its true position")
    if not multiples_ok:
        warnings.append(f"irregular slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm; the volume uses "
                        f"the average spacing {np.linalg.norm(step):.3f} mm, so slices are up to {max_resid:.3f} mm "
                        "from their true position (use resample_regular for an exact grid)")
    elif not exact:
        warnings.append(f"slice positions deviate from a regular grid by up to {max_resid:.3f} mm")
    if tilt >= TILT_WARN_DEG:
        warnings.append(f"gantry/slice tilt of {tilt:.2f} degrees: the slices are sheared along the stack; the volume "
                        "keeps the true geometry (sheared ijk_to_lps); resample_regular gives an orthogonal grid")
    positions_out = Ps[0][None, :] + np.arange(n_slots)[:, None] * step[None, :]
    positions_out[np.asarray(slots)] = Ps
    return StackGeometry(order, slots, n_slots, m, positions_out, warnings, exact, tilt)


def make_volume_group(key: str, members: list[DicomFrame]) -> SeriesGroup:
    dropped = members[0].split.pop("_dropped", [])
    split_by = members[0].split.pop("_split_by", None)
    f0 = members[0]
    h0 = f0.file.header
    # one slice: Spacing Between Slices, else 1 mm (as GDCM/SimpleITK); Slice Thickness stays in info.extra
    single = f0.spacing_between_slices or 1.0
    tiebreak = [(m.instance_number if isinstance(m.instance_number, int) else 0, m.ref.name, m.frame or 0)
                for m in members]
    with np.errstate(all="ignore"):
        geo = stack_geometry(np.array([m.position for m in members]), f0.orientation,  # type: ignore[arg-type]
                             f0.pixel_spacing, single, tiebreak)  # type: ignore[arg-type]
    problem = matrix_problem(geo.ijk_to_lps, spacing_range=True)
    if problem:
        raise GeometryError(f"the slices of this stack give a voxel-to-patient matrix that is {problem}: "
                            "damaged geometry, not loaded")
    frames = [members[i] for i in geo.order]
    mid = frames[len(frames) // 2]
    info = image_info(mid.file.header, key)
    info.header_windows = _header_windows(mid.windows, mid.file.header)
    uids = [""] * geo.n_slots
    srcs = [""] * geo.n_slots
    for fr, s in zip(frames, geo.slots):
        uids[s] = fr.sop_instance_uid
        srcs[s] = fr.ref.name
    info.sop_instance_uids = uids
    info.source_files = list(dict.fromkeys(s for s in srcs if s))
    info.slice_positions_lps = [tuple(float(x) for x in p) for p in geo.positions]
    warnings = list(geo.warnings)
    if split_by:
        info.extra["split_by"] = split_by
        warnings.append(f"the series holds several images per position; split by {split_by} "
                        f"(this group: {split_by} = {frames[0].split.get(split_by)})")
    if dropped:
        warnings.append(f"{len(dropped)} image(s) at an already used slice position were left out")
    if any(fr.derived_position for fr in frames):
        warnings.append("frame positions were derived from the Spacing Between Slices (the file gives only the "
                        "first position)")
    if geo.tilt_deg:
        info.extra["tilt_deg"] = geo.tilt_deg
    info.extra["geometry_exact"] = geo.exact
    blanks = sorted(set(range(geo.n_slots)) - set(geo.slots))
    if blanks:
        info.extra["blank_slices"] = blanks
    dtype, stored, out_range = plan_dtype(frames, h0)
    pi = str(h0.get("PhotometricInterpretation") or "")
    invert = None
    if pi == "MONOCHROME1":
        invert = out_range[0] + out_range[1]
        info.extra["inverted_monochrome1"] = True
        info.header_windows = [WindowLevel(invert - w.center, w.width, w.source) for w in info.header_windows]
    ts = sorted({fr.file.transfer_syntax for fr in frames})
    info.transfer_syntax = ts[0] if len(ts) == 1 else ",".join(ts)
    g = SeriesGroup(
        key=key, kind="volume", source_format="DICOM", info=info,
        files=list(dict.fromkeys(fr.ref for fr in frames)), warnings=warnings,
        shape=(geo.n_slots, f0.rows, f0.cols), ijk_to_lps=geo.ijk_to_lps, geometry_exact=geo.exact,
        transfer_syntaxes=[syntax_name(t) for t in ts], study_key=study_key_of(h0), frames=frames, slots=geo.slots,
        dtype=dtype, invert_sum=invert, fill_value=out_range[0] if invert is None else invert - out_range[0],
        dropped=dropped)
    info.warnings = warnings
    return g


# ------------------------------------------------------------------ projections
def _pair(v: Any) -> Optional[tuple[float, float]]:
    """A (row, column) spacing in the plausible range (0.01 to 50 mm), else None."""
    if isinstance(v, list) and len(v) >= 2:
        try:
            a, b = float(v[0]), float(v[1])
        except (TypeError, ValueError):
            return None
        if np.isfinite(a) and np.isfinite(b) and 0.01 <= a <= 50 and 0.01 <= b <= 50:
            return a, b
    return None


def _opt(v: Any) -> Optional[float]:
    x = first(v)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def projection_geometry(h: dict[str, Any]) -> ProjectionGeometry:
    """ProjectionGeometry from the header, keeping Pixel Spacing and Imager Pixel Spacing apart."""
    mag = _opt(h.get("EstimatedRadiographicMagnificationFactor"))
    return ProjectionGeometry(
        pixel_spacing=_pair(h.get("PixelSpacing")),
        imager_pixel_spacing=_pair(h.get("ImagerPixelSpacing")),
        magnification_factor=mag if mag and mag > 0 else None,
        distance_source_to_detector_mm=_opt(h.get("DistanceSourceToDetector")),
        distance_source_to_patient_mm=_opt(h.get("DistanceSourceToPatient")),
        positioner_primary_angle_deg=_opt(h.get("PositionerPrimaryAngle")),
        positioner_secondary_angle_deg=_opt(h.get("PositionerSecondaryAngle")),
        view_position=str(h.get("ViewPosition") or ""),
        patient_orientation=tuple(h.get("PatientOrientation") or ()),
        calibration_type=str(h.get("PixelSpacingCalibrationType") or ""),
        calibration_description=str(h.get("PixelSpacingCalibrationDescription") or ""),
        nominal_scanned_pixel_spacing=_pair(h.get("NominalScannedPixelSpacing")),
    )


def make_projection_group(key: str, members: list[DicomFrame]) -> SeriesGroup:
    members = sorted(members, key=lambda m: (m.frame or 0))
    f0 = members[0]
    h = f0.file.header
    info = image_info(h, key)
    info.header_windows = _header_windows(f0.windows, h)
    info.sop_instance_uids = [f0.sop_instance_uid] if f0.sop_instance_uid else []
    info.source_files = [f0.ref.name]
    geo = projection_geometry(h)
    spp = h.get("SamplesPerPixel") or 1
    pi = str(h.get("PhotometricInterpretation") or "")
    color = spp == 3 or pi.startswith("PALETTE")
    shape: tuple[int, ...] = (len(members), f0.rows, f0.cols, 3) if color else (len(members), f0.rows, f0.cols)
    warnings: list[str] = []
    if geo.imager_pixel_spacing and not geo.calibration_type and not geo.magnification_factor:
        warnings.append("spacing is at the detector (Imager Pixel Spacing): lengths are shown as 'mm at detector' "
                        "until the image is calibrated")
    elif not geo.pixel_spacing and not geo.imager_pixel_spacing:
        warnings.append("no pixel spacing in the header: lengths can only be shown in pixels until the image is "
                        "calibrated")
    if f0.is_volume_slice is False and str(h.get("Modality") or "") in ("CT", "MR", "PT") and not color:
        warnings.append("the image has no complete patient geometry (position, orientation or pixel spacing "
                        "missing): shown as a 2D image without patient coordinates")
    if color:
        ba = int(h.get("BitsAllocated") or 8)
        dtype = np.dtype(np.uint8 if ba <= 8 else np.uint16 if ba <= 16 else np.uint32)
        out_range, invert = (0.0, float(np.iinfo(dtype).max)), None
    else:
        dtype, _stored, out_range = plan_dtype(members, h)
        invert = out_range[0] + out_range[1] if pi == "MONOCHROME1" else None
    if invert is not None:
        info.extra["inverted_monochrome1"] = True
        info.header_windows = [WindowLevel(invert - w.center, w.width, w.source) for w in info.header_windows]
    ft = _opt(h.get("FrameTime"))
    info.warnings = warnings
    info.transfer_syntax = f0.file.transfer_syntax
    return SeriesGroup(
        key=key, kind="projection", source_format="DICOM", info=info, files=[f0.ref], warnings=warnings,
        shape=shape, transfer_syntaxes=[syntax_name(f0.file.transfer_syntax)], study_key=study_key_of(h),
        frames=members, slots=list(range(len(members))), dtype=dtype, invert_sum=invert,
        fill_value=out_range[0], projection_geometry=geo, frame_time_ms=ft)
