"""What compressed pixel data says about itself, read before any decoder runs.

* :func:`walk_fragments` lists the items of encapsulated (compressed) Pixel Data: the Basic Offset Table,
  then the fragments; bounded by the buffer and :data:`MAX_FRAGMENTS`.
* :func:`codestream_size` reads the image size a JPEG (SOF), JPEG-LS (SOF55), JPEG 2000 codestream (SIZ)
  or JP2 file (ihdr) declares, from its first bytes.
* :func:`check_encapsulated` compares both with the DICOM header: the number of frames actually present
  (each frame starts a new fragment with a codestream) and each frame's declared size must agree with
  Number of Frames, Rows and Columns, so a small file whose header or codestream claims a huge image
  (a "decompression bomb") is refused with the reason instead of being decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

#: At most this many items are walked (a real file has one or a few per frame).
MAX_FRAGMENTS = 200_000
_ITEM, _SEQ_END = 0xFFFEE000, 0xFFFEE0DD
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
#: Transfer syntaxes whose frames are JPEG, JPEG-LS or JPEG 2000 codestreams (HTJ2K included).
JPEG_FAMILY = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}
RLE_LOSSLESS = "1.2.840.10008.1.2.5"


class EncapsulationError(Exception):
    """The compressed pixel data is damaged or disagrees with the header (the message says how)."""


@dataclass(frozen=True)
class CodestreamSize:
    kind: str  # "JPEG", "JPEG-LS", "JPEG 2000"
    rows: int  # 0: not given in the header (JPEG with a DNL marker)
    cols: int
    components: int


def walk_fragments(buf, offset: int, end: int) -> list[tuple[int, int]]:
    """(value offset, length) of every item of encapsulated Pixel Data starting at ``offset`` (the first
    is the Basic Offset Table). Raises :class:`EncapsulationError` for damaged item structure."""
    items: list[tuple[int, int]] = []
    pos = offset
    while pos + 8 <= end:
        g, e, length = struct.unpack_from("<HHI", buf, pos)
        tag = (g << 16) | e
        if tag == _SEQ_END:
            return items
        if tag != _ITEM:
            raise EncapsulationError(f"unexpected element ({g:04X},{e:04X}) in the compressed pixel data")
        if length == 0xFFFFFFFF or pos + 8 + length > end:
            raise EncapsulationError("a fragment of the compressed pixel data runs past the end of the file")
        items.append((pos + 8, length))
        if len(items) > MAX_FRAGMENTS:
            raise EncapsulationError(f"more than {MAX_FRAGMENTS} fragments in the compressed pixel data")
        pos += 8 + length
    return items  # truncated: the frames present are what was found


def is_codestream_start(head: bytes) -> bool:
    """True when ``head`` starts a JPEG, JPEG-LS or JPEG 2000 codestream or a JP2 file."""
    return head[:2] in (b"\xff\xd8", b"\xff\x4f") or head[:12] == _JP2_SIGNATURE


def codestream_size(head: bytes) -> Optional[CodestreamSize]:
    """The size a compressed frame declares in its first bytes (up to 64 kB), None when ``head`` does not
    start with a JPEG, JPEG-LS, JPEG 2000 codestream or JP2 file."""
    if head[:4] == b"\xff\x4f\xff\x51":
        return _j2k_siz(head, 4)
    if head[:12] == _JP2_SIGNATURE:
        return _jp2(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_sof(head)
    return None


def _j2k_siz(b: bytes, pos: int) -> Optional[CodestreamSize]:
    # SIZ: Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4) XTsiz(4) YTsiz(4) XTOsiz(4) YTOsiz(4) Csiz(2)
    if len(b) < pos + 38:
        return None
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", b, pos + 4)
    csiz = struct.unpack_from(">H", b, pos + 36)[0]
    return CodestreamSize("JPEG 2000", max(0, ysiz - yo), max(0, xsiz - xo), csiz)


def _jp2(b: bytes) -> Optional[CodestreamSize]:
    pos = 12
    for _ in range(64):  # boxes: LBox(4) TBox(4) [XLBox(8)]
        if pos + 8 > len(b):
            return None
        lbox, tbox = struct.unpack_from(">I4s", b, pos)
        hdr = 8
        if lbox == 1 and pos + 16 <= len(b):
            lbox = struct.unpack_from(">Q", b, pos + 8)[0]
            hdr = 16
        if tbox == b"jp2h":  # super box: look inside for ihdr
            inner = pos + hdr
            if inner + 22 <= len(b) and b[inner + 4:inner + 8] == b"ihdr":
                height, width, nc = struct.unpack_from(">IIH", b, inner + 8)
                return CodestreamSize("JPEG 2000", height, width, nc)
        if tbox == b"jp2c":
            start = pos + hdr
            if b[start:start + 4] == b"\xff\x4f\xff\x51":
                return _j2k_siz(b, start + 4)
            return None
        if lbox < hdr:
            return None
        pos += lbox
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def _jpeg_sof(b: bytes) -> Optional[CodestreamSize]:
    pos = 2
    for _ in range(1000):
        while pos < len(b) and b[pos] == 0xFF and pos + 1 < len(b) and b[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(b) or b[pos] != 0xFF:
            return None
        marker = b[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack_from(">H", b, pos + 2)[0]
        if marker in _SOF:
            if pos + 10 > len(b):
                return None
            rows, cols = struct.unpack_from(">HH", b, pos + 5)
            return CodestreamSize("JPEG-LS" if marker == 0xF7 else "JPEG", rows, cols, b[pos + 9])
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


@dataclass
class EncapsulatedSummary:
    frames_present: Optional[int]  # None: cannot be counted for this transfer syntax
    sizes: list[CodestreamSize]


def summarize_encapsulated(buf, offset: int, end: int, transfer_syntax: str) -> EncapsulatedSummary:
    """The frames present in encapsulated Pixel Data and the sizes their codestreams declare."""
    items = walk_fragments(buf, offset, end)
    fragments = items[1:]  # the first item is the Basic Offset Table
    if transfer_syntax in JPEG_FAMILY:
        sizes = []
        starts = 0
        for off, length in fragments:
            if not is_codestream_start(bytes(buf[off:off + min(length, 12)])):
                continue  # the continuation of a frame split over several fragments
            starts += 1
            size = codestream_size(bytes(buf[off:off + min(length, 4096)]))
            if size is None and length > 4096:  # large application segments before the frame header
                size = codestream_size(bytes(buf[off:off + min(length, 65536)]))
            if size is not None:
                sizes.append(size)
        return EncapsulatedSummary(starts, sizes)
    if transfer_syntax == RLE_LOSSLESS:
        return EncapsulatedSummary(len(fragments), [])
    return EncapsulatedSummary(None, [])


def check_encapsulated(summary: EncapsulatedSummary, n_frames: int, rows: int, cols: int, samples: int) -> None:
    """Raise :class:`EncapsulationError` when the compressed data disagrees with the header."""
    if summary.frames_present is not None:
        if summary.frames_present == 0:
            raise EncapsulationError("the compressed pixel data holds no image")
        if summary.frames_present < n_frames:
            raise EncapsulationError(f"the header claims {n_frames} frames but the compressed pixel data holds "
                                     f"{summary.frames_present}")
    for size in summary.sizes:
        if (size.rows and size.rows != rows) or size.cols != cols:
            raise EncapsulationError(f"the {size.kind} data declares a {size.cols}x{size.rows or '?'} image but the "
                                     f"header says {cols}x{rows} (damaged or hostile file)")
        if size.components != samples:
            raise EncapsulationError(f"the {size.kind} data declares {size.components} colour components but the "
                                     f"header says {samples} sample(s) per pixel")
