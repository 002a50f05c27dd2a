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
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from planner.imaging import dicom_header as dh
from planner.imaging.codestream import EncapsulationError, check_encapsulated
from planner.imaging.dicom_header import HeaderError, NeedsPydicom, PixelLocation, first
from planner.imaging.limits import DEFAULT_LIMITS, ImportLimits, ReadStopped
from planner.imaging.sources import FileRef

#: Modalities whose images are 2D projections or photographs (never stacked into a volume).
PROJECTION_MODALITIES = {"XA", "RF", "DX", "CR", "MG", "IO", "PX", "RG", "DF", "DS", "XC", "ES", "OP", "US", "SM",
                         "GM", "ECG"}
#: Modalities that are radiographic projections (their spacing is at the detector unless calibrated).
RADIOGRAPHIC_MODALITIES = {"XA", "RF", "DX", "CR", "MG", "IO", "PX", "RG", "DF", "DS"}


#: Largest frame accepted (pixels): above any detector or film digitiser (16k x 16k); a damaged Rows or
#: Columns value must not make the importer allocate gigabytes.
MAX_FRAME_PIXELS = 16384 * 16384
#: Plausible pixel spacing, slice spacing and slice thickness (mm): from microscopy-fine to the coarsest
#: localiser; values outside come from damaged or hostile headers and would make the geometry singular.
MIN_SPACING_MM, MAX_SPACING_MM = 0.01, 50.0
#: Largest plausible coordinate of an image position (mm): a kilometre, far outside any scanner.
MAX_POSITION_MM = 1e6
#: A deflated data set may expand to at most this many bytes (it is inflated in memory).
MAX_INFLATED_BYTES = 256 * 1024 * 1024


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
def read_dicom(ref: FileRef, limits: ImportLimits = DEFAULT_LIMITS, cancel: Any = None) -> DicomFile:
    """Scan one file's header (no pixel decoding). Raises :class:`SkipFile` with the reason, or
    :class:`NotDicom` when the file is no DICOM file at all. Bounded: the fast parser by the file's size
    and an element count, the general reader by ``limits`` (time and bytes) and ``cancel`` (it raises
    :class:`planner.imaging.limits.ReadStopped` when the import is cancelled)."""
    header: Optional[dict[str, Any]] = None
    pixel: Optional[PixelLocation] = None
    ds = None
    reason_fast = ""
    data: Optional[bytes] = None
    try:
        if ref.member is None:
            header, pixel = dh.read_fast(ref.path)
        else:
            data = ref.read_bytes()
            header, pixel = dh.parse_fast(data)
    except NeedsPydicom as exc:
        reason_fast = str(exc)
    except HeaderError as exc:
        reason_fast = f"damaged header: {exc}"
    except OSError as exc:
        raise SkipFile(f"cannot read the file ({exc.strerror or exc})") from None
    if header is None:
        if reason_fast == dh.DEFLATED_LE:
            _check_inflated_size(ref, data)
        ds = _pydicom_header(ref, reason_fast, data, limits, cancel)
        with quiet_pydicom():
            header = dh.from_dataset(ds)
        pixel = None
        for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
            if tag in ds:
                raw = ds.get_item(tag)
                length = getattr(raw, "length", None)
                if length is None and isinstance(getattr(raw, "value", None), (bytes, bytearray)):
                    length = len(raw.value)
                pixel = PixelLocation(tag, -1, None if length in (None, 0xFFFFFFFF) else int(length), "")
                break
        if pixel is None and reason_fast.startswith("damaged"):
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
            ds = _pydicom_header(ref, "functional groups", data, limits, cancel)
        f.header["_dataset"] = ds  # kept for the per-frame functional groups
    return f


def _check_inflated_size(ref: FileRef, data: Optional[bytes]) -> None:
    """A deflated data set is inflated whole by pydicom: refuse one that would expand past
    :data:`MAX_INFLATED_BYTES` (a "deflate bomb"), counting the output without keeping it."""
    try:
        buf = data if data is not None else ref.read_bytes()
    except OSError as exc:
        raise SkipFile(f"cannot read the file ({exc.strerror or exc})") from None
    try:
        pos, _ = dh._parse_elements(buf, 132, len(buf), True, {}, 0x0002, [], [0])
    except HeaderError as exc:
        raise SkipFile(f"damaged header: {exc}") from None
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    view = memoryview(buf)[pos:]
    try:
        for start in range(0, len(view), 1 << 16):
            chunk = view[start:start + (1 << 16)]
            while chunk:
                out = d.decompress(chunk, 1 << 20)
                total += len(out)
                if total > MAX_INFLATED_BYTES:
                    raise SkipFile(f"the deflated data set expands to more than {MAX_INFLATED_BYTES // 2 ** 20} MB "
                                   "(damaged or hostile file)")
                chunk = d.unconsumed_tail
    except zlib.error as exc:
        raise SkipFile(f"damaged deflated data set ({exc})") from None


class _HeaderBudget(Exception):
    pass


class _BoundedReader:
    """A file for pydicom that ends the read (``_HeaderBudget``) past a byte count or a deadline, so a
    damaged header cannot keep the general reader busy without end."""

    def __init__(self, fh: Any, max_bytes: int, deadline: float, name: Optional[str], cancel: Any = None) -> None:
        self._fh, self._left, self._deadline, self._cancel = fh, max_bytes, deadline, cancel
        if name:
            self.name = name

    @property
    def closed(self) -> bool:
        return bool(self._fh.closed)

    def read(self, n: int = -1) -> bytes:
        if self._cancel is not None and self._cancel.is_set():
            raise ReadStopped("cancelled", True)
        if time.monotonic() > self._deadline:
            raise _HeaderBudget("reading the header took too long")
        if n is None or n < 0 or n > self._left:
            n = self._left + 1
        data = self._fh.read(n)
        self._left -= len(data)
        if self._left < 0:
            raise _HeaderBudget("the header is implausibly large")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _reopen(path: str, mode: str = "rb") -> Any:
    """How pydicom reopens a file for a deferred value: regular files only."""
    from planner.safefiles import open_regular

    return open_regular(path)


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


def _pydicom_header(ref: FileRef, why: str, data: Optional[bytes] = None,
                    limits: ImportLimits = DEFAULT_LIMITS, cancel: Any = None) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        fh: Any = ref.open() if data is None else io.BytesIO(data)
    except OSError as exc:
        raise SkipFile(f"cannot read the file ({exc.strerror or exc})") from None
    try:
        head = fh.read(140)
        fh.seek(0)
        has_prefix = len(head) >= 132 and head[128:132] == b"DICM"
        if not has_prefix and not dh.looks_like_raw_dataset(head):
            raise NotDicom(why)
        if has_prefix and head[132:140] == b"\0" * 8:
            raise SkipFile("no DICOM data elements after the DICM prefix (zeros): damaged or not a DICOM file")
        src = _BoundedReader(fh, limits.header_max_bytes, time.monotonic() + limits.header_time_limit_s,
                             ref.path if ref.member is None else None, cancel)
        try:
            with quiet_pydicom():
                # a deflated data set is inflated in memory (size checked before): nothing can be deferred
                ds = pydicom.dcmread(src, force=not has_prefix, defer_size=None if why == dh.DEFLATED_LE else 4096)
        except ReadStopped:
            raise
        except _HeaderBudget as exc:
            raise SkipFile(f"damaged DICOM header ({exc}; limits: {limits.header_max_bytes // 2 ** 20} MB, "
                           f"{limits.header_time_limit_s:.0f} s)") from None
        except InvalidDicomError as exc:
            raise SkipFile(f"not a valid DICOM file ({exc})") from None
        except (MemoryError, RecursionError):
            raise SkipFile("damaged DICOM header (implausible element lengths)") from None
        except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on damaged data: a reason
            detail = f"{why}; " if why.startswith("damaged") else ""
            raise SkipFile(f"damaged DICOM header ({detail}{type(exc).__name__}: {exc})") from None
    except BaseException:
        fh.close()
        raise
    if ref.member is None:
        fh.close()
        ds.buffer = None
        ds.fileobj_type = _reopen  # deferred values are read again from the regular file only
    else:
        ds.buffer = fh  # the member's bytes, kept for deferred values (no budget applies to those reads)
    return ds


# ------------------------------------------------------------------ frames
def _floats(v: Any, n: int) -> Optional[np.ndarray]:
    if not isinstance(v, list) or len(v) < n:
        return None
    vals = v[:n]
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in vals):
        return None
    return np.array(vals, dtype=float)


def _present(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0


def _plain(v: Any, n: int) -> Optional[list[float]]:
    """The first ``n`` values as finite floats, or None (plain Python: this runs for every file)."""
    if not isinstance(v, list) or len(v) < n:
        return None
    vals = v[:n]
    for x in vals:
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            return None
    return [float(x) for x in vals]


def geometry_problem(ipp: Any, iop: Any, ps: Any) -> Optional[str]:
    """Why the geometry a slice's header gives is implausible (None when it is plausible or absent).
    Checked before any volume is built: such a slice would make ``ijk_to_lps`` singular or not finite."""
    if _present(ipp):
        a = _plain(ipp, 3)
        if a is None or max(abs(x) for x in a) > MAX_POSITION_MM:
            return f"implausible Image Position (Patient) {_show(ipp)}"
    if _present(iop):
        a = _plain(iop, 6)
        if a is None:
            return f"implausible Image Orientation (Patient) {_show(iop)}"
        if max(abs(x) for x in a) > 2:
            return f"implausible Image Orientation (Patient) {_show(iop)} (direction cosines are at most 1)"
        r0, r1, r2, c0, c1, c2 = a
        nr, nc = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2), math.sqrt(c0 * c0 + c1 * c1 + c2 * c2)
        if not (0.5 < nr < 2 and 0.5 < nc < 2):
            return f"implausible Image Orientation (Patient) {_show(iop)} (not unit vectors)"
        if abs(r0 * c0 + r1 * c1 + r2 * c2) / (nr * nc) > 0.1:
            return (f"implausible Image Orientation (Patient) {_show(iop)} (the row and column directions are not "
                    "perpendicular)")
    if _present(ps):
        a = _plain(ps, 2)
        if a is None or min(a) < MIN_SPACING_MM or max(a) > MAX_SPACING_MM:
            return (f"implausible Pixel Spacing {_show(ps)} mm (plausible: {MIN_SPACING_MM:g} to "
                    f"{MAX_SPACING_MM:g} mm)")
    return None


def _show(v: Any) -> str:
    text = "\\".join(f"{x:g}" if isinstance(x, float) else str(x) for x in (v[:6] if isinstance(v, list) else [v]))
    return text[:80]


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
    a = _plain(v, 2)
    if a is None or min(a) < MIN_SPACING_MM or max(a) > MAX_SPACING_MM:
        return None
    return a[0], a[1]


def _pos_float(v: Any) -> Optional[float]:
    """A slice spacing or thickness in the plausible range, else None (ignored)."""
    x = first(v)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) and MIN_SPACING_MM <= x <= MAX_SPACING_MM else None


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
    _check_encapsulated(f, rows, cols, nf)
    if str(h.get("Modality") or "") not in PROJECTION_MODALITIES:
        problem = geometry_problem(h.get("ImagePositionPatient"), h.get("ImageOrientationPatient"),
                                   h.get("PixelSpacing"))
        if problem:
            raise SkipFile(problem)
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


def _check_encapsulated(f: DicomFile, rows: int, cols: int, nf: int) -> None:
    """Compressed pixel data: the frames present and each frame's declared size must agree with the
    header before any decoder runs (a small file claiming a huge image is refused here)."""
    pix = f.pixel
    if pix is None or pix.length is not None or pix.offset < 0:
        return
    if pix.problem:
        raise SkipFile(f"damaged compressed pixel data: {pix.problem}")
    if pix.encapsulated is not None:
        try:
            check_encapsulated(pix.encapsulated, nf, rows, cols, int(f.header.get("SamplesPerPixel") or 1))
        except EncapsulationError as exc:
            raise SkipFile(str(exc)) from None



def _check_native_length(f: DicomFile, rows: int, cols: int, nf: int) -> None:
    """Native pixel data must hold every frame the header claims (files read by pydicom included, whose
    Pixel Data length is known): the decoded size is never more than the bytes present allow."""
    if f.pixel is None or f.pixel.length is None:
        return
    if f.decode != "native" and f.pixel.offset >= 0:
        return  # a native syntax read by pydicom for another reason (1-bit, colour): checked below too
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
    if f.pixel.offset < 0:
        return  # read by pydicom (big endian, deflated, no DICM prefix): the element length was checked
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
        if str(h.get("Modality") or "") not in PROJECTION_MODALITIES:
            problem = geometry_problem(ipp if ipp is not None else h.get("ImagePositionPatient"),
                                       iop if iop is not None else h.get("ImageOrientationPatient"),
                                       ps if ps is not None else h.get("PixelSpacing"))
            if problem:
                raise SkipFile(f"frame {i + 1}: {problem}")
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
