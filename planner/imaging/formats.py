"""Files that are not DICOM: research volumes (NIfTI, NRRD, MetaImage) and image captures (PNG, JPEG,
TIFF, BMP screenshots or photos of fluoroscopy). Each becomes one :class:`SeriesGroup` whose
``reader`` loads it; the header is read at scan time so the size and geometry are known at once.

Captures are projection images with no spacing at all: lengths on them are shown in pixels until the
user calibrates them (``ProjectionImage.measurement_scale``)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np

from planner.imaging.dicom_scan import SkipFile
from planner.imaging.research import (
    NeedsSimpleITK,
    ResearchHeader,
    content_key,
    header_for,
    read_with_simpleitk,
    volume_from_header,
)
from planner.imaging.series import SeriesGroup
from planner.imaging.sources import FileRef
from planner.imaging.volume import ImageInfo, ProjectionGeometry, ProjectionImage

_CAPTURE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
                  b"BM": "BMP"}
#: Largest capture accepted (pixels); a fluoroscopy capture is a few megapixels.
MAX_CAPTURE_PIXELS = 100_000_000


def sniff(ref: FileRef, head: bytes) -> str:
    suffix = ref.suffix
    if head.startswith(b"NRRD000"):
        return "NRRD"
    if suffix in (".nii", ".nii.gz") or (len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00")) or \
            (len(head) >= 12 and head[4:8] == b"n+2\x00"):
        return "NIfTI"
    if suffix in (".mha", ".mhd"):
        return "MetaImage"
    if head[:2] == b"\x1f\x8b" and suffix.endswith(".gz"):
        return "NIfTI" if ".nii" in (ref.member or ref.path).lower() else "unknown"
    for magic, fmt in _CAPTURE_MAGIC.items():
        if head.startswith(magic):
            return fmt
    low = head[:200].lower()
    if b"objecttype" in low and b"ndims" in low:
        return "MetaImage"
    return "unknown"


def open_non_dicom(ref: FileRef) -> SeriesGroup:
    try:
        head = ref.read_bytes(540)
    except OSError as exc:
        raise SkipFile(f"cannot read the file ({exc.strerror or exc})") from None
    if not head:
        raise SkipFile("the file is empty")
    fmt = sniff(ref, head)
    if fmt in ("NIfTI", "NRRD", "MetaImage"):
        return _research_group(ref, fmt)
    if fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        return _capture_group(ref, fmt)
    if ref.suffix in (".raw", ".zraw", ".img", ".gz", ".bz2"):
        raise SkipFile("not an image header (a data file of a detached header, or unsupported)")
    raise SkipFile("not a DICOM file or a supported image format")


def _research_group(ref: FileRef, fmt: str) -> SeriesGroup:
    head = ref.read_bytes(4096)
    key = content_key(fmt.lower().replace("metaimage", "meta"), ref, head)
    name = (ref.member or ref.path).replace("\\", "/").rsplit("/", 1)[-1]
    info = ImageInfo(series_description=name)
    info.key = key
    info.extra["source_format"] = fmt
    try:
        h: Any = header_for(ref, fmt)
    except NeedsSimpleITK as exc:
        why = str(exc)

        def reader_sitk() -> Any:
            vol = read_with_simpleitk(ref, fmt, why)
            vol.info.key = key
            return vol

        return SeriesGroup(key=key, kind="volume", source_format=fmt, info=info, files=[ref],
                           warnings=[f"read with SimpleITK ({why})"], transfer_syntaxes=[], study_key=key,
                           reader=reader_sitk, shape=())
    except (ValueError, IndexError, KeyError, OverflowError) as exc:
        raise SkipFile(f"damaged {fmt} header ({type(exc).__name__}: {exc})") from None
    assert isinstance(h, ResearchHeader)
    if h.description:
        info.series_description = f"{name}: {h.description}" if h.description != name else name
    info.warnings = list(h.warnings)
    info.extra.update(h.extra)
    nk, nj, ni = h.shape
    if nk * nj * ni > 2_000_000_000:
        raise SkipFile(f"implausible {fmt} size {ni}x{nj}x{nk}")
    files = [ref] if h.data_ref == ref else [ref, h.data_ref]

    def reader() -> Any:
        return volume_from_header(h, info)

    return SeriesGroup(key=key, kind="volume", source_format=fmt, info=info, files=files, warnings=list(h.warnings),
                       shape=h.shape, ijk_to_lps=h.ijk_to_lps, transfer_syntaxes=[], study_key=key, reader=reader,
                       dtype=h.out_dtype)


def _capture_group(ref: FileRef, fmt: str) -> SeriesGroup:
    from PIL import Image, UnidentifiedImageError

    data = ref.read_bytes()
    key = f"{fmt.lower()}-{hashlib.sha1(data).hexdigest()[:12]}"
    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
            n_frames = int(getattr(im, "n_frames", 1) or 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SkipFile(f"damaged {fmt} image ({exc})") from None
    if size[0] * size[1] > MAX_CAPTURE_PIXELS or size[0] < 1 or size[1] < 1:
        raise SkipFile(f"implausible {fmt} image size {size[0]}x{size[1]}")
    name = (ref.member or ref.path).replace("\\", "/").rsplit("/", 1)[-1]
    info = ImageInfo(series_description=name)
    info.key = key
    info.extra["source_format"] = fmt
    warning = "image capture without spacing or patient geometry: lengths are in pixels until it is calibrated"
    info.warnings = [warning]

    def reader() -> Any:
        frames = decode_capture(data, fmt)
        return ProjectionImage(frames, ProjectionGeometry(), info)

    return SeriesGroup(key=key, kind="projection", source_format=fmt, info=info, files=[ref], warnings=[warning],
                       shape=(n_frames, size[1], size[0]), transfer_syntaxes=[], study_key=key, reader=reader,
                       projection_geometry=ProjectionGeometry())


def decode_capture(data: bytes, fmt: str) -> np.ndarray:
    """Frames of a PNG/JPEG/TIFF/BMP as (n, rows, cols) grey or (n, rows, cols, 3) colour."""
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    frames = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            for i, fr in enumerate(ImageSequence.Iterator(im)):
                if i >= 10000:
                    break
                fr = ImageOps.exif_transpose(fr) if fmt == "JPEG" else fr
                frames.append(_to_array(fr))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SkipFile(f"damaged {fmt} image ({exc})") from None
    if not frames:
        raise SkipFile(f"{fmt} image has no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        frames = [frames[0]]
    if any(f.ndim == 3 for f in frames):
        frames = [f if f.ndim == 3 else np.repeat(f[..., None], 3, axis=-1) for f in frames]
    return np.stack(frames)


def _to_array(im: Any) -> np.ndarray:
    mode = im.mode
    if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im)
        if mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535:
            a = a.astype(np.uint16)
        return np.ascontiguousarray(a)
    if mode == "1":
        return np.asarray(im.convert("L"))
    rgb = np.asarray(im.convert("RGB"))
    if rgb.size and np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])  # a grey picture saved as colour
    return np.ascontiguousarray(rgb)
