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
from planner.imaging.limits import ReadContext
from planner.imaging.research import (
    NeedsSimpleITK,
    ResearchHeader,
    content_key,
    decoded_bytes,
    header_for,
    read_with_simpleitk,
    volume_from_header,
)
from planner.imaging.series import SeriesGroup
from planner.imaging.sources import FileRef
from planner.imaging.volume import ImageInfo, ProjectionGeometry, ProjectionImage, matrix_problem

_CAPTURE_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
                  b"BM": "BMP"}
#: Largest capture accepted (pixels); a fluoroscopy capture is a few megapixels.
MAX_CAPTURE_PIXELS = 100_000_000
#: Largest capture file read, and frames of a multi-page capture loaded at most.
MAX_CAPTURE_BYTES = 256 * 1024 * 1024
MAX_CAPTURE_FRAMES = 10_000


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

        def reader_sitk(ctx: ReadContext) -> Any:
            vol = read_with_simpleitk(ref, fmt, why, ctx)
            vol.info.key = key
            return vol

        return SeriesGroup(key=key, kind="volume", source_format=fmt, info=info, files=[ref],
                           warnings=[f"read with SimpleITK ({why})"], transfer_syntaxes=[], study_key=key,
                           reader=reader_sitk, shape=())
    except (ValueError, IndexError, KeyError, OverflowError) as exc:
        raise SkipFile(f"damaged {fmt} header ({type(exc).__name__}: {exc})") from None
    assert isinstance(h, ResearchHeader)
    problem = matrix_problem(h.ijk_to_lps, spacing_range=True)
    if problem:
        raise SkipFile(f"the {fmt} orientation matrix is {problem}")
    if h.description:
        info.series_description = f"{name}: {h.description}" if h.description != name else name
    info.warnings = list(h.warnings)
    info.extra.update(h.extra)
    nk, nj, ni = h.shape
    if nk * nj * ni > 2_000_000_000:
        raise SkipFile(f"implausible {fmt} size {ni}x{nj}x{nk}")
    files = [ref] if h.data_ref == ref else [ref, h.data_ref]

    def reader(ctx: ReadContext) -> Any:
        return volume_from_header(h, info, ctx)

    return SeriesGroup(key=key, kind="volume", source_format=fmt, info=info, files=files, warnings=list(h.warnings),
                       shape=h.shape, ijk_to_lps=h.ijk_to_lps, transfer_syntaxes=[], study_key=key, reader=reader,
                       dtype=h.out_dtype, reader_bytes=decoded_bytes(h))


def _capture_group(ref: FileRef, fmt: str) -> SeriesGroup:
    from PIL import Image, UnidentifiedImageError

    data = ref.read_bytes(MAX_CAPTURE_BYTES + 1)
    if len(data) > MAX_CAPTURE_BYTES:
        raise SkipFile(f"{fmt} image larger than {MAX_CAPTURE_BYTES // 2 ** 20} MB")
    key = f"{fmt.lower()}-{hashlib.sha1(data).hexdigest()[:12]}"
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only (no pixel is decoded here)
            size = im.size
            bands = len(im.getbands())
            n_frames = int(getattr(im, "n_frames", 1) or 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SkipFile(f"damaged {fmt} image ({exc})") from None
    if size[0] * size[1] > MAX_CAPTURE_PIXELS or size[0] < 1 or size[1] < 1:
        raise SkipFile(f"implausible {fmt} image size {size[0]}x{size[1]}")
    n_frames = min(n_frames, MAX_CAPTURE_FRAMES)
    del data
    name = (ref.member or ref.path).replace("\\", "/").rsplit("/", 1)[-1]
    info = ImageInfo(series_description=name)
    info.key = key
    info.extra["source_format"] = fmt
    warning = "image capture without spacing or patient geometry: lengths are in pixels until it is calibrated"
    info.warnings = [warning]

    # 4 bytes per band: a 16-bit or float channel at most; the decoder's output is checked against it
    need = n_frames * size[0] * size[1] * max(bands, 1) * 4

    def reader(ctx: ReadContext) -> Any:
        return ProjectionImage(read_capture(ref, fmt, need, ctx), ProjectionGeometry(), info)

    return SeriesGroup(key=key, kind="projection", source_format=fmt, info=info, files=[ref], warnings=[warning],
                       shape=(n_frames, size[1], size[0]), transfer_syntaxes=[], study_key=key, reader=reader,
                       projection_geometry=ProjectionGeometry(), reader_bytes=need)


def read_capture(ref: FileRef, fmt: str, max_bytes: int, ctx: ReadContext) -> np.ndarray:
    """Decode a capture in a worker process (Pillow's decoders parse untrusted data), within the time limit."""
    from planner.imaging.workers import Task, run_tasks

    data = ref.read_bytes() if ref.member is not None else None
    outcomes: list[Any] = []
    run_tasks([Task(ref.name, "capture_frames", (ref.path if data is None else None, data, fmt), max_bytes)],
              time_limit_s=ctx.limits.time_limit_s, cancel=ctx.cancel, on_outcome=outcomes.append,
              memory_budget=ctx.limits.memory_budget())
    o = outcomes[0]
    if o.status == "cancelled":
        ctx.check()
    if o.status == "timeout":
        raise SkipFile(f"decoding the {fmt} image took longer than {ctx.limits.time_limit_s:.0f} s; the decoder was "
                       "stopped")
    if o.status == "crash":
        raise SkipFile(f"the {fmt} decoder crashed on this file (damaged data)")
    if o.status != "ok":
        msg = o.error.split(": ", 1)[-1] if o.error.startswith("SkipFile") else o.error
        raise SkipFile(msg if o.error.startswith("SkipFile") else f"damaged {fmt} image ({msg[:200]})")
    return o.arrays[0]


def decode_capture(data: bytes, fmt: str) -> np.ndarray:
    """Frames of a PNG/JPEG/TIFF/BMP as (n, rows, cols) grey or (n, rows, cols, 3) colour."""
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    frames = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            for i, fr in enumerate(ImageSequence.Iterator(im)):
                if i >= MAX_CAPTURE_FRAMES:
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
