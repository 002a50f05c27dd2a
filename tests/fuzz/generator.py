"""Deterministic damaged files for the standing fuzz (``tests/test_fuzz_import.py``, ``bench/fuzz_bench.py``).

Sources are real and synthetic images of every kind the importer reads (JPEG 2000 CT and MR from
../shared/data, a native RF image, NIfTI, pydicom's test files in every transfer syntax, an enhanced
multi-frame MR, an XA cine, a PNG capture). :func:`generate` cycles through them and applies one
damage per file, chosen by the file's number, with a random generator seeded by ``seed``: the same
arguments always give byte-identical files.

Damages: truncation anywhere or in the header, bytes flipped anywhere or in the header, a wrong element
length, a zeroed block, bytes inserted or removed, a noisy tail (damaged compressed data), and hostile
header values (huge Rows/Columns/Number of Frames, implausible spacing, position and orientation, a
compressed frame that claims a huge image).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Optional

import numpy as np

#: Number of damage kinds (``kind = index % N_KINDS``).
N_KINDS = 11

# (name, share): how many damaged copies per round of the cycle
_SHARES = {"ct_j2k": 3, "mr_j2k": 5, "rf_native": 6, "nifti_gz": 3, "MR_small.dcm": 3, "MR_small_implicit.dcm": 2,
           "MR_small_bigendian.dcm": 2, "MR_small_RLE.dcm": 2, "MR_small_jpeg_ls_lossless.dcm": 2,
           "MR_small_jp2klossless.dcm": 2, "CT_small.dcm": 2, "rtdose.dcm": 2, "SC_rgb_rle.dcm": 2,
           "JPEG2000.dcm": 2, "image_dfl.dcm": 2, "SC_rgb_jpeg.dcm": 2, "enhanced_mr": 3, "xa_cine": 3,
           "ct_native": 4, "png": 2}


def sources(shared: Optional[Path], scratch: Path) -> dict[str, bytes]:
    """name -> bytes of every source file (the real ones only when ``shared`` exists)."""
    from pydicom.data import get_testdata_file

    from planner.imaging.synthetic import write_enhanced_mr, write_projection, write_series

    out: dict[str, bytes] = {}
    if shared is not None and shared.is_dir():
        ct = sorted((shared / "totalseg_example" / "ct_dicom").iterdir())[0]
        out["ct_j2k"] = ct.read_bytes()
        out["mr_j2k"] = (shared / "orthanc_spine_dicom" / "2022-03-08-RicSmi.dcm").read_bytes()
        out["rf_native"] = (shared / "orthanc_spine_dicom" / "KarstenHilbertRF.dcm").read_bytes()
        out["nifti_gz"] = (shared / "totalseg_example" / "example_mr_sm.nii.gz").read_bytes()
    for name in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "CT_small.dcm", "rtdose.dcm",
                 "SC_rgb_rle.dcm", "JPEG2000.dcm", "image_dfl.dcm", "SC_rgb_jpeg.dcm"):
        out[name] = Path(get_testdata_file(name, download=False)).read_bytes()
    src = scratch / "src"
    emr, _p, _f = write_enhanced_mr(src / "emr.dcm", n_frames=6)
    out["enhanced_mr"] = Path(emr).read_bytes()
    cine, _a = write_projection(src / "cine.dcm", modality="XA", frames=3, rows=32, cols=32)
    out["xa_cine"] = Path(cine).read_bytes()
    (ser,) = write_series(src / "ser", n=1, rows=32, cols=32)[:1]
    out["ct_native"] = Path(ser).read_bytes()
    from PIL import Image

    Image.fromarray((np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) % 255).astype(np.uint8)).save(src / "c.png")
    out["png"] = (src / "c.png").read_bytes()
    return out


def _element_offsets(data: bytes) -> list[int]:
    """Offsets of plausible explicit-VR element headers in the first 4 kB."""
    offs = []
    for i in range(132, min(len(data), 4096) - 8, 2):
        vr = data[i + 4:i + 6]
        if len(vr) == 2 and 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90:
            offs.append(i)
    return offs


_HOSTILE_TAGS = {  # explicit VR little-endian (group, element) of values worth making implausible
    (0x0028, 0x0010): "US", (0x0028, 0x0011): "US", (0x0028, 0x0008): "IS", (0x0028, 0x0030): "DS",
    (0x0020, 0x0032): "DS", (0x0020, 0x0037): "DS", (0x0018, 0x0088): "DS", (0x0018, 0x0050): "DS",
}
_HOSTILE_TEXT = [b"1e-300\\1e-300", b"1e308\\0\\0\\0\\1e308\\0", b"NaN\\NaN\\NaN", b"-inf\\inf", b"0\\0",
                 b"99999", b"4294967295", b"1e30\\1e30\\1e30"]


def _hostile_value(data: bytes, rng: np.random.Generator) -> bytes:
    """A header value made implausible (huge sizes, frames, spacings, positions, orientations)."""
    b = bytearray(data)
    found = []
    for i in range(132, min(len(b), 65536) - 8, 2):
        g, e = struct.unpack_from("<HH", b, i)
        vr = _HOSTILE_TAGS.get((g, e))
        if vr is not None and bytes(b[i + 4:i + 6]) == vr.encode():
            found.append((i, vr))
    if not found:
        return _j2k_size(data, rng)
    i, vr = found[int(rng.integers(0, len(found)))]
    length = struct.unpack_from("<H", b, i + 6)[0]
    if vr == "US":
        struct.pack_into("<H", b, i + 8, int(rng.choice([0, 1, 16384, 30000, 65535])))
        return bytes(b)
    text = _HOSTILE_TEXT[int(rng.integers(0, len(_HOSTILE_TEXT)))]
    text = text + b" " * (len(text) % 2)
    return bytes(b[:i + 6] + struct.pack("<H", len(text)) + text + b[i + 8 + length:])


def _j2k_size(data: bytes, rng: np.random.Generator) -> bytes:
    """A compressed frame whose own header claims another (often huge) image size."""
    b = bytearray(data)
    q = b.find(b"\xff\x4f\xff\x51")
    if q >= 0:
        size = int(rng.choice([1, 4096, 30000, 60000, 2 ** 31]))
        struct.pack_into(">II", b, q + 8, size % 2 ** 32, size % 2 ** 32)
        return bytes(b)
    m = re.search(rb"\xff[\xc0\xc1\xc3\xf7]", bytes(b[:65536]))
    if m is not None and m.start() + 9 <= len(b):
        struct.pack_into(">HH", b, m.start() + 5, int(rng.integers(0, 65536)), int(rng.integers(0, 65536)))
        return bytes(b)
    return damage(data, rng, 2)


def damage(data: bytes, rng: np.random.Generator, kind: int) -> bytes:
    b = bytearray(data)
    n = len(b)
    if kind == 0:  # truncated anywhere
        return bytes(b[: int(rng.integers(0, n))])
    if kind == 1:  # truncated in the header
        return bytes(b[: int(rng.integers(0, min(n, 2048)))])
    if kind == 2:  # a few random bytes flipped anywhere
        for pos in rng.integers(0, n, size=int(rng.integers(1, 12))):
            b[pos] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == 3:  # bytes flipped in the header
        for pos in rng.integers(0, min(n, 1500), size=int(rng.integers(1, 6))):
            b[pos] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == 4:  # a wrong element length
        offs = _element_offsets(data)
        if not offs:
            return damage(data, rng, 2)
        i = int(offs[int(rng.integers(0, len(offs)))])
        long_vr = bytes(b[i + 4:i + 6]) in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF", b"UC", b"UR")
        choice = int(rng.integers(0, 4))
        if long_vr:
            struct.pack_into("<I", b, i + 8, [0xFFFFFFFF, 0x7FFFFFFF, int(rng.integers(0, 2 ** 32)), 0][choice])
        else:
            struct.pack_into("<H", b, i + 6, [0xFFFF, 0x7FFF, int(rng.integers(0, 2 ** 16)), 1][choice])
        return bytes(b)
    if kind == 5:  # a block zeroed
        start = int(rng.integers(0, n))
        b[start:start + int(rng.integers(1, 4096))] = b"\0" * len(b[start:start + 4096])
        return bytes(b[:n])
    if kind == 6:  # bytes inserted or removed (everything after shifts)
        pos = int(rng.integers(0, n))
        k = int(rng.integers(1, 9))
        if rng.integers(0, 2):
            return bytes(b[:pos] + rng.integers(0, 256, size=k, dtype=np.uint8).tobytes() + b[pos:])
        return bytes(b[:pos] + b[pos + k:])
    if kind == 7:  # the tail replaced by noise (damaged pixel data / compressed stream)
        pos = int(rng.integers(max(0, n - 4096), n))
        return bytes(b[:pos] + rng.integers(0, 256, size=n - pos, dtype=np.uint8).tobytes())
    if kind in (8, 9):  # an implausible header value
        return _hostile_value(data, rng)
    return _j2k_size(data, rng)  # kind 10: a compressed frame claiming another size


def generate(out_dir: Path, n: int, *, seed: int = 20241124, shared: Optional[Path] = None,
             scratch: Optional[Path] = None) -> list[Path]:
    """Write ``n`` damaged files into ``out_dir`` (deterministic for a seed); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    srcs = sources(shared, scratch or out_dir / ".sources")
    cycle = [name for name, share in _SHARES.items() if name in srcs for _ in range(share)]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        name = cycle[i % len(cycle)]
        suffix = ".nii.gz" if name == "nifti_gz" else ".png" if name == "png" else ".dcm"
        p = out_dir / f"{i:05d}-{name.replace('.dcm', '')}{suffix}"
        p.write_bytes(damage(srcs[name], rng, (i // len(cycle) + i) % N_KINDS))
        paths.append(p)
    return paths
