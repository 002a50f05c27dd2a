"""One DICOM file -> the 2D images (frames) it holds, with everything the series builder needs.

A single-frame file gives one :class:`DicomFrame`; an enhanced multi-frame file (Enhanced MR/CT,
per-frame functional groups) gives one per frame with that frame's own position, orientation,
spacing and rescale; a legacy multi-frame file gives its frames with positions from the Grid
Frame Offset Vector (RT Dose) or Spacing Between Slices.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from planner.imaging import dicom_header as dh
from planner.imaging.dicom_header import HeaderError, NeedsPydicom, PixelLocation, first
from planner.imaging.sources import FileRef

#: Modalities whose images are 2D projections or photographs (never stacked into a volume).
PROJECTION_MODALITIES = {"XA", "RF", "DX", "CR", "MG", "IO", "PX", "RG", "DF", "DS", "XC", "ES", "OP", "US", "SM",
                         "GM", "ECG"}
#: Modalities that are radiographic projections (their spacing is at the detector unless calibrated).
RADIOGRAPHIC_MODALITIES = {"XA", "RF", "DX", "CR", "MG", "IO", "PX", "RG", "DF", "DS"}


#: Largest frame accepted (pixels): above any detector or film digitiser (16k x 16k); a damaged Rows or
#: Columns value must not make the importer allocate gigabytes.
MAX_FRAME_PIXELS = 16384 * 16384


class SkipFile(Exception):
    """The file is not loaded; the message is the reason shown in the import report."""


def _uid_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return f"{name} ({uid})" if name != uid else uid
    except Exception:
        return uid


def syntax_name(uid: str) -> str:
    """Transfer syntax name with its UID, e.g. "JPEG 2000 Image Compression (Lossless Only) (1.2...90)"."""
    return _uid_name(uid) if uid else "unknown transfer syntax"


@dataclass(eq=False)
class DicomFile:
    """A scanned DICOM file: header fields, pixel location and how its pixels are decoded."""

    ref: FileRef
    header: dict[str, Any]
    pixel: Optional[PixelLocation]
    transfer_syntax: str
    #: "native": read the bytes at ``pixel.offset`` straight into the output; "pydicom": decode with pydicom
    decode: str
    n_frames: int = 1
    notes: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        v = self.header.get(key)
        return default if v is None else v


@dataclass(eq=False)
class DicomFrame:
    """One 2D image: a single-frame file or one frame of a multi-frame file."""

    file: DicomFile
    frame: Optional[int]  # index in the file (None for a single-frame file)
    rows: int
    cols: int
    position: Optional[np.ndarray] = None  # LPS of the first transmitted pixel's centre
    orientation: Optional[np.ndarray] = None  # 6 direction cosines (row direction, column direction)
    pixel_spacing: Optional[tuple[float, float]] = None  # (between rows, between columns) mm
    slice_thickness: Optional[float] = None
    spacing_between_slices: Optional[float] = None
    slope: float = 1.0
    intercept: float = 0.0
    windows: list[tuple[float, float]] = field(default_factory=list)
    sop_instance_uid: str = ""
    instance_number: Optional[int] = None
    #: attributes that may tell apart images at the same position (echo, time point, ...)
    split: dict[str, Any] = field(default_factory=dict)
    derived_position: bool = False

    @property
    def ref(self) -> FileRef:
        return self.file.ref

    @property
    def is_volume_slice(self) -> bool:
        return self.position is not None and self.orientation is not None and self.pixel_spacing is not None


# ------------------------------------------------------------------ reading a header
def read_dicom(ref: FileRef) -> DicomFile:
    """Scan one file's header (no pixel decoding). Raises :class:`SkipFile` with the reason, or
    :class:`NotDicom` when the file is no DICOM file at all."""
    header: Optional[dict[str, Any]] = None
    pixel: Optional[PixelLocation] = None
    ds = None
    reason_fast = ""
    try:
        if ref.member is None:
            header, pixel = dh.read_fast(ref.path)
        else:
            header, pixel = dh.parse_fast(ref.read_bytes())
    except NeedsPydicom as exc:
        reason_fast = str(exc)
    except HeaderError as exc:
        reason_fast = f"damaged header: {exc}"
    except OSError as exc:
        raise SkipFile(f"cannot read the file ({exc.strerror or exc})") from None
    if header is None:
        ds = _pydicom_header(ref, reason_fast)
        with quiet_pydicom():
            header = dh.from_dataset(ds)
        pixel = None
        if "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            pixel = PixelLocation(0x7FE00010, -1, None, "")
        elif reason_fast.startswith("damaged"):
            raise SkipFile(reason_fast)
    ts = str(header.get("TransferSyntaxUID") or "")
    sop_class = str(header.get("SOPClassUID") or header.get("MediaStorageSOPClassUID") or "")
    if sop_class == dh.DICOMDIR_SOP_CLASS or header.get("DirectoryRecordSequence"):
        raise SkipFile("DICOMDIR index (not an image)")
    decode = "pydicom"
    if pixel is not None and pixel.offset >= 0 and pixel.length is not None and ts in (
            dh.IMPLICIT_VR_LE, dh.EXPLICIT_VR_LE) and pixel.tag == 0x7FE00010:
        decode = "native"
    f = DicomFile(ref, header, pixel, ts, decode)
    if header.get("_vr_mismatch"):
        f.notes.append("the file's meta information names the wrong VR encoding")
    if header.get("PerFrameFunctionalGroupsSequence") or header.get("SharedFunctionalGroupsSequence"):
        if ds is None:
            ds = _pydicom_header(ref, "functional groups")
        f.header["_dataset"] = ds  # kept for the per-frame functional groups
    return f


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """No warnings (and no value-validation log lines, which may quote header values such as names)
    while pydicom reads damaged or unusual headers; the import report gives the reasons instead."""
    from pydicom import config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with config.disable_value_validation():
            yield


class NotDicom(Exception):
    """Not a DICOM file (the caller then tries the other formats)."""


def _pydicom_header(ref: FileRef, why: str) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if ref.member is None:
        with open(ref.path, "rb") as fh:
            head = fh.read(132)
    else:
        head = ref.read_bytes(132)
    has_prefix = len(head) >= 132 and head[128:132] == b"DICM"
    if not has_prefix and not dh.looks_like_raw_dataset(head):
        raise NotDicom(why)
    src: Any = ref.path if ref.member is None else io.BytesIO(ref.read_bytes())
    try:
        with quiet_pydicom():
            return dh.read_with_pydicom(src, force=not has_prefix)
    except InvalidDicomError as exc:
        raise SkipFile(f"not a valid DICOM file ({exc})") from None
    except (MemoryError, RecursionError):
        raise SkipFile("damaged DICOM header (implausible element lengths)") from None
    except Exception as exc:
        detail = f"{why}; " if why.startswith("damaged") else ""
        raise SkipFile(f"damaged DICOM header ({detail}{type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------ frames
def _floats(v: Any, n: int) -> Optional[np.ndarray]:
    if not isinstance(v, list) or len(v) < n:
        return None
    vals = v[:n]
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in vals):
        return None
    return np.array(vals, dtype=float)


def _orientation(v: Any) -> Optional[np.ndarray]:
    a = _floats(v, 6)
    if a is None:
        return None
    r0, r1, r2, c0, c1, c2 = (float(x) for x in a)  # plain floats: this runs once per file
    nr = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
    nc = math.sqrt(c0 * c0 + c1 * c1 + c2 * c2)
    if nr < 1e-3 or nc < 1e-3:
        return None
    x, y, z = r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0
    if math.sqrt(x * x + y * y + z * z) / (nr * nc) < 1e-3:  # parallel: no plane
        return None
    return a


def _spacing(v: Any) -> Optional[tuple[float, float]]:
    a = _floats(v, 2)
    if a is None or np.any(a <= 0):
        return None
    return float(a[0]), float(a[1])


def _pos_float(v: Any) -> Optional[float]:
    x = first(v)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) and x > 0 else None


def _windows(centers: Any, widths: Any) -> list[tuple[float, float]]:
    if not isinstance(centers, list) or not isinstance(widths, list):
        return []
    out = []
    for c, w in zip(centers, widths):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if np.isfinite(c) and np.isfinite(w) and w > 0:
            out.append((c, w))
    return out


def _rescale(h: dict[str, Any]) -> tuple[float, float]:
    slope = first(h.get("RescaleSlope"), 1.0)
    inter = first(h.get("RescaleIntercept"), 0.0)
    try:
        slope, inter = float(slope), float(inter)
    except (TypeError, ValueError):
        return 1.0, 0.0
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    dose = first(h.get("DoseGridScaling"))
    if dose is not None and str(h.get("Modality")) == "RTDOSE":
        try:
            d = float(dose)
            if np.isfinite(d) and d > 0:
                slope *= d
        except (TypeError, ValueError):
            pass
    return slope, inter


def _common_split(h: dict[str, Any]) -> dict[str, Any]:
    return {
        "EchoNumbers": first(h.get("EchoNumbers")),
        "TemporalPositionIdentifier": first(h.get("TemporalPositionIdentifier")),
        "DiffusionBValue": first(h.get("DiffusionBValue")),
        "TriggerTime": first(h.get("TriggerTime")),
        "AcquisitionNumber": first(h.get("AcquisitionNumber")),
        "ImageType": "\\".join(h.get("ImageType") or []),
        "EchoTime": first(h.get("EchoTime")),
    }


def check_image_attributes(f: DicomFile) -> tuple[int, int]:
    """(rows, cols), or :class:`SkipFile` with the reason the file holds no usable image."""
    h = f.header
    if f.pixel is None:
        sop = str(h.get("SOPClassUID") or h.get("MediaStorageSOPClassUID") or "")
        what = _uid_name(sop) if sop else (h.get("Modality") or "no SOP class given")
        raise SkipFile(f"no image data ({what})")
    rows, cols = h.get("Rows"), h.get("Columns")
    if not isinstance(rows, int) or not isinstance(cols, int) or rows <= 0 or cols <= 0:
        raise SkipFile("image size (Rows/Columns) missing or invalid")
    ba = h.get("BitsAllocated")
    if ba not in (1, 8, 16, 32, 64):
        raise SkipFile(f"unsupported Bits Allocated ({ba})")
    spp = h.get("SamplesPerPixel", 1)
    if spp not in (1, 3, None):
        raise SkipFile(f"unsupported Samples per Pixel ({spp})")
    if rows * cols > MAX_FRAME_PIXELS:
        raise SkipFile(f"implausible image size {cols}x{rows} (damaged header?)")
    return rows, cols


def frames_of(f: DicomFile) -> list[DicomFrame]:
    """The 2D images of a scanned file. Raises :class:`SkipFile` when it holds none."""
    rows, cols = check_image_attributes(f)
    h = f.header
    nf_raw = first(h.get("NumberOfFrames"), 1)
    try:
        nf = int(nf_raw)
    except (TypeError, ValueError):
        nf = 1
    if nf < 1:
        nf = 1
    if nf > 100000:
        raise SkipFile(f"implausible Number of Frames ({nf_raw})")
    f.n_frames = nf
    _check_native_length(f, rows, cols, nf)
    if nf > 1 and f.pixel is not None and f.pixel.length is None:
        try:
            size = f.ref.size()
        except OSError:
            size = None
        if size is not None and nf * 8 > size:  # every encapsulated frame needs at least an item header
            raise SkipFile(f"implausible Number of Frames ({nf}) for a {size}-byte file")
    if h.get("ModalityLUTSequence"):
        _inspect_modality_lut(f)
    ds = h.get("_dataset")
    if ds is not None:
        return _enhanced_frames(f, ds, rows, cols, nf)
    base = DicomFrame(
        file=f, frame=None, rows=rows, cols=cols,
        position=_floats(h.get("ImagePositionPatient"), 3),
        orientation=_orientation(h.get("ImageOrientationPatient")),
        pixel_spacing=_spacing(h.get("PixelSpacing")),
        slice_thickness=_pos_float(h.get("SliceThickness")),
        spacing_between_slices=_pos_float(h.get("SpacingBetweenSlices")),
        windows=_windows(h.get("WindowCenter"), h.get("WindowWidth")),
        sop_instance_uid=str(h.get("SOPInstanceUID") or h.get("MediaStorageSOPInstanceUID") or ""),
        instance_number=first(h.get("InstanceNumber")),
        split=_common_split(h),
    )
    base.slope, base.intercept = _rescale(h)
    if nf == 1:
        return [base]
    return _legacy_multiframe(f, base, nf)


def _check_native_length(f: DicomFile, rows: int, cols: int, nf: int) -> None:
    if f.decode != "native" or f.pixel is None or f.pixel.length is None:
        return
    h = f.header
    ba = int(h.get("BitsAllocated"))
    spp = int(h.get("SamplesPerPixel") or 1)
    if str(h.get("PhotometricInterpretation") or "").startswith("YBR_FULL_422"):
        spp = 2  # chroma subsampled: 2 samples per pixel on average
    need_bits = rows * cols * spp * nf * ba
    need = (need_bits + 7) // 8
    if f.pixel.length < need:
        raise SkipFile(f"pixel data too short: {f.pixel.length} bytes for {nf} frame(s) of {cols}x{rows} "
                       f"({need} bytes expected)")
    try:
        size = f.ref.size()
    except OSError:
        size = None
    if size is not None and f.pixel.offset + need > size:
        raise SkipFile(f"file truncated: pixel data needs {need} bytes but only {max(0, size - f.pixel.offset)} "
                       "are present")
    if ba == 1 or spp != 1 or ba == 64:
        f.decode = "pydicom"


def _inspect_modality_lut(f: DicomFile) -> None:
    """Drop an identity Modality LUT (common on XA/RF) so the stored type is kept; otherwise note the
    LUT's output bits (its entries are unsigned) for choosing the output type."""
    ds = f.header.get("_dataset")
    try:
        if ds is None:
            ds = _pydicom_header(f.ref, "modality LUT")
        item = ds.ModalityLUTSequence[0]
        desc = [int(x) for x in item.LUTDescriptor]
        data = item.LUTData
        values = np.asarray(list(data) if not isinstance(data, (bytes, bytearray)) else
                            np.frombuffer(data, dtype="<u2" if desc[2] > 8 else "u1"))
    except Exception:
        f.header["ModalityLUTSequence"] = None
        f.notes.append("damaged Modality LUT ignored")
        return
    n, first_value, bits = (desc[0] or 65536), desc[1], desc[2]
    h = f.header
    ba = int(h.get("BitsAllocated") or 16)
    if h.get("PixelRepresentation") != 1 and first_value == 0 and values.size == n and \
            n >= 2 ** min(int(h.get("BitsStored") or ba), 16) and np.array_equal(values, np.arange(n)):
        h["ModalityLUTSequence"] = None  # identity: nothing to apply
        return
    h["_modality_lut_bits"] = bits


def _legacy_multiframe(f: DicomFile, base: DicomFrame, nf: int) -> list[DicomFrame]:
    h = f.header
    out = []
    offsets = None
    fip = h.get("FrameIncrementPointer") or []
    gfov = h.get("GridFrameOffsetVector")
    if isinstance(gfov, list) and len(gfov) >= nf and (0x3004000C in fip or not fip):
        offsets = np.asarray(gfov[:nf], dtype=float)
    normal = None
    if base.orientation is not None:
        r, c = base.orientation[:3], base.orientation[3:]
        normal = np.cross(r / np.linalg.norm(r), c / np.linalg.norm(c))
        normal /= np.linalg.norm(normal)
    derived = False
    if offsets is not None and base.position is not None and normal is not None:
        # "absolute" offsets (first offset = z of the Image Position) are allowed for axial images only
        if offsets[0] != 0 and abs(offsets[0] - base.position[2]) < 1e-3 and abs(normal[2]) > 0.9999:
            offsets = offsets - offsets[0]
    elif base.position is not None and normal is not None and base.pixel_spacing is not None and \
            str(h.get("Modality")) not in PROJECTION_MODALITIES:
        step = base.spacing_between_slices or base.slice_thickness
        if step:
            offsets = np.arange(nf, dtype=float) * step
            derived = True
    for i in range(nf):
        fr = DicomFrame(**{**base.__dict__, "frame": i, "split": dict(base.split)})
        if offsets is not None and base.position is not None and normal is not None:
            fr.position = base.position + offsets[i] * normal
            fr.derived_position = derived
        else:
            fr.position = None  # cine / projection frames: no per-frame geometry
        fr.sop_instance_uid = base.sop_instance_uid
        out.append(fr)
    return out


def _fg(groups: list[Any], seq: str, attr: str) -> Any:
    """First value of ``attr`` inside the functional group ``seq`` (per-frame item first, then shared)."""
    for g in groups:
        if g is None:
            continue
        try:
            s = g.get(seq)
            if s is None or len(s) == 0:
                continue
            item = s[0]
            if attr in item:
                return item[attr].value
        except Exception:
            continue
    return None


def _as_list(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        try:
            return [float(x) for x in v]
        except (TypeError, ValueError):
            return None
    try:
        return [float(v)]
    except (TypeError, ValueError):
        return None


def _enhanced_frames(f: DicomFile, ds: Any, rows: int, cols: int, nf: int) -> list[DicomFrame]:
    h = f.header
    try:
        shared_seq = ds.get("SharedFunctionalGroupsSequence")
        shared = shared_seq[0] if shared_seq is not None and len(shared_seq) else None
        per = ds.get("PerFrameFunctionalGroupsSequence")
        per_list = list(per) if per is not None else []
    except Exception as exc:
        raise SkipFile(f"damaged functional group sequences ({type(exc).__name__}: {exc})") from None
    top_slope, top_inter = _rescale(h)
    out = []
    for i in range(nf):
        pf = per_list[i] if i < len(per_list) else None
        groups = [pf, shared]
        ipp = _as_list(_fg(groups, "PlanePositionSequence", "ImagePositionPatient"))
        iop = _as_list(_fg(groups, "PlaneOrientationSequence", "ImageOrientationPatient"))
        ps = _as_list(_fg(groups, "PixelMeasuresSequence", "PixelSpacing"))
        st = _as_list(_fg(groups, "PixelMeasuresSequence", "SliceThickness"))
        sbs = _as_list(_fg(groups, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        slope = _as_list(_fg(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        inter = _as_list(_fg(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        wc = _as_list(_fg(groups, "FrameVOILUTSequence", "WindowCenter"))
        ww = _as_list(_fg(groups, "FrameVOILUTSequence", "WindowWidth"))
        fr = DicomFrame(
            file=f, frame=i, rows=rows, cols=cols,
            position=_floats(ipp if ipp is not None else h.get("ImagePositionPatient"), 3),
            orientation=_orientation(iop if iop is not None else h.get("ImageOrientationPatient")),
            pixel_spacing=_spacing(ps if ps is not None else h.get("PixelSpacing")),
            slice_thickness=_pos_float(st if st is not None else h.get("SliceThickness")),
            spacing_between_slices=_pos_float(sbs if sbs is not None else h.get("SpacingBetweenSlices")),
            windows=_windows(wc if wc is not None else h.get("WindowCenter"),
                             ww if ww is not None else h.get("WindowWidth")),
            sop_instance_uid=str(h.get("SOPInstanceUID") or ""),
            instance_number=first(h.get("InstanceNumber")),
            split=_common_split(h),
        )
        s = first(slope)
        it = first(inter)
        fr.slope = float(s) if s is not None and np.isfinite(s) and s != 0 else top_slope
        fr.intercept = float(it) if it is not None and np.isfinite(it) else top_inter
        stack = _fg(groups, "FrameContentSequence", "StackID")
        temporal = _fg(groups, "FrameContentSequence", "TemporalPositionIndex")
        echo = _fg(groups, "MREchoSequence", "EffectiveEchoTime")
        bval = _fg(groups, "MRDiffusionSequence", "DiffusionBValue")
        fr.split.update({"StackID": str(stack) if stack is not None else None,
                         "TemporalPositionIdentifier": temporal if temporal is not None
                         else fr.split.get("TemporalPositionIdentifier"),
                         "EchoTime": echo if echo is not None else fr.split.get("EchoTime"),
                         "DiffusionBValue": bval if bval is not None else fr.split.get("DiffusionBValue")})
        out.append(fr)
    return out
