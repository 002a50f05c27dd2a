"""Fuzz: at least 2,000 damaged files (truncated, bytes flipped, wrong lengths, blocks zeroed or
shifted), made deterministically from real files, go through the importer. None may crash it or hang
it (the importer bounds each file's decoding time by design: ``time_limit_s``), and every file ends
up either loaded or skipped with a reason.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from pydicom.data import get_testdata_file  # noqa: E402

from planner.imaging import ProjectionImage, Volume, load_path  # noqa: E402
from planner.imaging.synthetic import write_enhanced_mr, write_projection, write_series  # noqa: E402

N_PER_SOURCE_DEFAULT = 130
#: per-file decoding bound used by the importer in this test (a hang would show as a skipped file)
TIME_LIMIT_S = 10.0


def _sources(shared: Path, tmp: Path) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, number of damaged copies)."""
    out: dict[str, tuple[bytes, int]] = {}

    def add(name: str, path: Path | str, n: int = N_PER_SOURCE_DEFAULT) -> None:
        out[name] = (Path(path).read_bytes(), n)

    ct = sorted((shared / "totalseg_example" / "ct_dicom").iterdir())[0]
    add("ct_j2k", ct, 60)  # 512x512 JPEG 2000: slower to decode, fewer copies
    add("mr_j2k", shared / "orthanc_spine_dicom" / "2022-03-08-RicSmi.dcm", 100)
    add("rf_native", shared / "orthanc_spine_dicom" / "KarstenHilbertRF.dcm", 120)
    add("nifti_gz", shared / "totalseg_example" / "example_mr_sm.nii.gz", 60)
    for name in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "CT_small.dcm", "rtdose.dcm",
                 "SC_rgb_rle.dcm", "JPEG2000.dcm", "image_dfl.dcm", "SC_rgb_jpeg.dcm"):
        add(name, get_testdata_file(name, download=False))
    emr, _p, _f = write_enhanced_mr(tmp / "src" / "emr.dcm", n_frames=6)
    add("enhanced_mr", emr)
    rf_cine, _a = write_projection(tmp / "src" / "cine.dcm", modality="XA", frames=3, rows=32, cols=32)
    add("xa_cine", rf_cine)
    (ser,) = write_series(tmp / "src" / "ser", n=1, rows=32, cols=32)[:1]
    add("ct_native", ser)
    from PIL import Image

    Image.fromarray(np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) % 255).convert("L").save(tmp / "src" / "c.png")
    add("png", tmp / "src" / "c.png", 40)
    return out


def _element_offsets(data: bytes) -> list[int]:
    """Offsets of plausible explicit-VR element length fields (2-byte and 4-byte)."""
    offs = []
    for i in range(132, min(len(data), 4096) - 8, 2):
        vr = data[i + 4:i + 6]
        if len(vr) == 2 and 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90:
            offs.append(i)
    return offs


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
            val = [0xFFFFFFFF, 0x7FFFFFFF, int(rng.integers(0, 2 ** 32)), 0][choice]
            struct.pack_into("<I", b, i + 8, val)
        else:
            val = [0xFFFF, 0x7FFF, int(rng.integers(0, 2 ** 16)), 1][choice]
            struct.pack_into("<H", b, i + 6, val)
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
    # kind 7: the tail replaced by noise (damaged pixel data / compressed stream)
    pos = int(rng.integers(max(0, n - 4096), n))
    return bytes(b[:pos] + rng.integers(0, 256, size=n - pos, dtype=np.uint8).tobytes())


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom and Pillow warn about the damage they meet
def test_importer_survives_2000_damaged_files(shared_data, tmp_path):
    sources = _sources(shared_data, tmp_path)
    rng = np.random.default_rng(20241124)
    fuzz_dir = tmp_path / "fuzz"
    fuzz_dir.mkdir()
    files: list[Path] = []
    for name, (data, count) in sources.items():
        suffix = ".nii.gz" if name == "nifti_gz" else ".png" if name == "png" else ".dcm"
        for i in range(count):
            p = fuzz_dir / f"{name}-{i:04d}{suffix}"
            p.write_bytes(damage(data, rng, i % 8))
            files.append(p)
    assert len(files) >= 2000
    loaded = skipped = 0
    reasons: dict[str, int] = {}
    t0 = time.monotonic()
    for p in files:
        result = load_path(p, time_limit_s=TIME_LIMIT_S)  # must not raise
        entry = result.report.files.get(str(p))
        assert entry is not None, f"{p.name} is missing from the report"
        if entry.status == "loaded":
            loaded += 1
            assert result.images, p.name
            for img in result.images.values():
                assert isinstance(img, (Volume, ProjectionImage))
                arr = img.array if isinstance(img, Volume) else img.frames
                assert arr.size > 0
        else:
            assert entry.status == "skipped" and entry.reason.strip(), p.name
            assert "Traceback" not in entry.reason
            skipped += 1
            key = entry.reason.split("(")[0].split(":")[0][:40]
            reasons[key] = reasons.get(key, 0) + 1
    elapsed = time.monotonic() - t0
    assert loaded + skipped == len(files)
    # both outcomes occur (the damage is real, and many damaged files are still readable)
    assert loaded > 200 and skipped > 200, (loaded, skipped, reasons)
    print(f"\nfuzz: {len(files)} files, {loaded} loaded, {skipped} skipped in {elapsed:.1f} s; reasons: {reasons}")
