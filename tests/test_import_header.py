"""The fast header parser agrees with pydicom on every test file, records the true pixel data offset,
and hands back (rather than misreads) the files it does not handle."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

import pydicom
from pydicom.data import get_testdata_file  # noqa: E402

from planner.imaging import dicom_header as dh  # noqa: E402


def _files(shared: Path | None) -> list[str]:
    # pydicom's bundled files, found locally (get_testdata_files would try to download more)
    files = [str(p) for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file()]
    if shared is not None:
        files += [str(p) for p in shared.rglob("*") if p.is_file() and (p.suffix == ".dcm" or "ct_dicom" in str(p))]
    return sorted(files)


def test_fast_parser_matches_pydicom_on_all_test_files(shared_data):
    fast = checked_offsets = 0
    for f in _files(shared_data):
        try:
            hdr, pix = dh.read_fast(f)
        except (dh.NeedsPydicom, dh.HeaderError):
            continue
        fast += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f, force=True, defer_size=4096)
            ref = dh.from_dataset(ds)
        for key in (set(hdr) | set(ref)) - {k for k in hdr if k.startswith("_")}:
            a, b = hdr.get(key), ref.get(key)
            if a in (None, "", []) and b in (None, "", []):
                continue
            assert a == b, (os.path.basename(f), key, a, b)
        if pix is not None and "PixelData" in ds:
            elem = ds.get_item("PixelData", keep_deferred=True)
            if getattr(elem, "value_tell", None) is not None:
                checked_offsets += 1
                assert elem.value_tell == pix.offset, os.path.basename(f)
    assert fast >= 150  # the fast path handles most files
    assert checked_offsets >= 50


def test_fast_parser_hands_back_big_endian_deflate_and_raw_files():
    for name in ("MR_small_bigendian.dcm", "image_dfl.dcm", "no_meta.dcm"):
        f = get_testdata_file(name, download=False)
        with pytest.raises(dh.NeedsPydicom):
            dh.read_fast(f)


def test_damaged_lengths_raise_header_error_not_hang():
    f = get_testdata_file("MR_small.dcm", download=False)
    data = bytearray(Path(f).read_bytes())
    # an element length pointing far past the end of the file
    pos = data.index(b"\x08\x00\x60\x00")  # (0008,0060) Modality, explicit VR: tag, VR, 2-byte length
    data[pos + 6:pos + 8] = b"\xff\xff"
    with pytest.raises(dh.HeaderError):
        dh.parse_fast(bytes(data[:pos + 200]))
    # an undefined-length sequence that never ends
    meta_end, _ = dh._parse_elements(bytes(data), 132, len(data), True, {}, 0x0002, [], [0])
    bad = bytes(data[:meta_end]) + b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + \
        b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" * 3
    with pytest.raises(dh.HeaderError):
        dh.parse_fast(bad)


def test_a_header_of_millions_of_tiny_elements_ends_quickly():
    """A hostile file of 3 million empty elements (24 MB) is refused in about a second, not walked for minutes."""
    import time

    f = get_testdata_file("MR_small.dcm", download=False)
    data = bytearray(Path(f).read_bytes())
    meta_end, _ = dh._parse_elements(bytes(data), 132, len(data), True, {}, 0x0002, [], [0])
    bad = bytes(data[:meta_end]) + b"\x09\x00\x10\x00LO\x00\x00" * 3_000_000
    t0 = time.monotonic()
    with pytest.raises(dh.HeaderError, match="elements"):
        dh.parse_fast(bad)
    assert time.monotonic() - t0 < 10
