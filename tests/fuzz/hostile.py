"""Hostile inputs of issue 16, made on the fly (small on disk): decompression bombs, a zip bomb,
implausible geometry, a slice of another patient, named pipes and devices.

Each ``write_*`` function writes one input and returns its path. Nothing here is imported by the
application; the tests and ``bench/fuzz_bench.py`` use it.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

from pydicom.uid import generate_uid

from planner.imaging.synthetic import write_series

J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"

#: A child process that saves a large plan (1,000 measurements, about 4 MB) to ``{path}`` again and again
#: (for kills during save); format with ``root`` and ``path``. It prints "ready" before the first save.
SAVE_LOOP = r"""
import sys
sys.path.insert(0, {root!r})
from planner.plan import Measurement, Plan
from planner.storage import save_plan
plan = Plan(author="gen-0")
plan.measurements = [Measurement(kind="distance", label="x" * 200, points_lps=[(1.0, 2.0, 3.0)] * 60)
                     for _ in range(1000)]
print("ready", flush=True)
i = 0
while True:
    i += 1
    plan.author = f"gen-{{i}}"
    save_plan(plan, {path!r})
"""


def _one_j2k_slice(folder: Path, rows: int = 64, cols: int = 64) -> bytes:
    (path,) = write_series(folder, n=1, rows=rows, cols=cols, transfer_syntax=J2K_LOSSLESS)
    data = path.read_bytes()
    path.unlink()
    return data


def _patch_siz(data: bytearray, size: int) -> None:
    """Make the JPEG 2000 codestream in ``data`` claim a ``size`` x ``size`` image in one tile."""
    q = data.find(b"\xff\x4f\xff\x51")
    assert q >= 0, "no JPEG 2000 codestream"
    # SIZ after FF4F FF51: Lsiz Rsiz | Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz | Csiz
    struct.pack_into(">IIIIII", data, q + 8, size, size, 0, 0, size, size)


def _patch_dicom_us(data: bytearray, tag: tuple[int, int], value: int) -> None:
    """Set an explicit-VR US element (e.g. Rows) in a little-endian file."""
    key = struct.pack("<HH", *tag) + b"US\x02\x00"
    pos = data.find(key, 132)
    assert pos > 0, f"no {tag} element"
    struct.pack_into("<H", data, pos + 8, value)


def write_j2k_bomb(path: Path, claimed: int = 30000, header_claims: bool = False) -> Path:
    """A small JPEG 2000 DICOM file whose codestream claims ``claimed``^2 pixels (the DICOM header says
    64x64, or also ``claimed`` with ``header_claims``, clamped to 65535)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(_one_j2k_slice(path.parent / f".{path.name}.src"))
    _patch_siz(data, claimed)
    if header_claims:
        _patch_dicom_us(data, (0x0028, 0x0010), min(claimed, 65535))
        _patch_dicom_us(data, (0x0028, 0x0011), min(claimed, 65535))
    path.write_bytes(bytes(data))
    return path


def write_frames_header_bomb(path: Path, frames: int = 100, size: int = 4096) -> Path:
    """A ~1.7 kB JPEG 2000 DICOM file whose header claims ``frames`` frames of ``size``^2 pixels while the
    pixel data holds one tiny codestream (also claiming ``size``^2)."""
    import pydicom
    from pydicom.encaps import encapsulate

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.parent / f".{path.name}.src"
    src.write_bytes(_one_j2k_slice(path.parent / f".{path.name}.dir", rows=32, cols=32))
    ds = pydicom.dcmread(src)
    src.unlink()
    frame = bytearray(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1).__next__())
    _patch_siz(frame, size)
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(path, enforce_file_format=True)
    return path


def write_zip_bomb(path: Path, gib: int = 2) -> Path:
    """A ~2 MB zip whose one member is "DICM" after a 128-byte preamble and then ``gib`` GiB of zeros.
    Built from repeated, independently flushed deflate segments (a second, not minutes of compressing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 1 << 24
    n_chunks = gib * 1024 ** 3 // chunk
    zeros = bytes(chunk)
    head = b"\0" * 128 + b"DICM"
    first = head + zeros[:chunk - len(head)]
    seg_c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first_seg = seg_c.compress(first) + seg_c.flush(zlib.Z_FULL_FLUSH)
    zero_c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero_seg = zero_c.compress(zeros) + zero_c.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    crc = zlib.crc32(first)
    for _ in range(n_chunks - 1):
        crc = zlib.crc32(zeros, crc)
    usize = n_chunks * chunk
    csize = len(first_seg) + (n_chunks - 1) * len(zero_seg) + len(last)
    name = b"IM000001.dcm"
    dos_time, dos_date = 0, (2024 - 1980) << 9 | 1 << 5 | 1
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, dos_time, dos_date, crc, csize, usize, len(name), 0)
    with open(path, "wb") as fh:
        fh.write(local + name)
        fh.write(first_seg)
        for _ in range(n_chunks - 1):
            fh.write(zero_seg)
        fh.write(last)
        cd_offset = fh.tell()
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, dos_time, dos_date, crc, csize, usize,
                              len(name), 0, 0, 0, 0, 0, 0) + name
        fh.write(central)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_offset, 0))
    return path


def write_with_geometry(src: Path, path: Path, **attributes: object) -> Path:
    """A copy of a DICOM slice with other attributes (e.g. ``PixelSpacing=["1e-300", "1e-300"]``) and a new
    SOP Instance UID (so it is not a duplicate of its source)."""
    import pydicom

    ds = pydicom.dcmread(src)
    for kw, value in attributes.items():
        setattr(ds, kw, value)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def write_series_with_foreign_slice(folder: Path, n: int = 24) -> tuple[list[Path], Path]:
    """A series of ``n`` slices in which one slice carries another Patient ID (same Series UID); returns
    the files and the foreign one."""
    import pydicom

    paths = write_series(folder, n=n, rows=16, cols=16, extra={"PatientID": "PAT-A", "PatientName": "A^A"})
    foreign = sorted(paths)[n // 2]
    ds = pydicom.dcmread(foreign)
    ds.PatientID = "PAT-B"
    ds.PatientName = "B^B"
    ds.save_as(foreign, enforce_file_format=True)
    return paths, foreign


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return Path(path)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - t0
