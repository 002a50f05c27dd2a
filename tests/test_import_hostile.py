"""Issue 16: hostile and damaged input to the import.

* one damaged file never sinks an import (the demo folder plus a singular-geometry file: 6 series and
  a report entry for the bad file, through ``load_path``, ``main.py inspect`` and the GUI import task);
* one patient per image (a series with one slice of another patient is split, with warnings);
* budgets before work: decompression bombs, a zip bomb, a FIFO and /dev/zero end in under 10 s within
  1 GiB with a clear reason (measured in a child process: its own peak and its decoder workers');
* decoders run in worker processes killed at the time limit or on Cancel (within a second).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from planner.imaging import load_path
from planner.imaging.synthetic import write_series
from tests.fuzz import hostile as H
from tests.fuzz.runner import run_inputs

GIB = 1024 ** 3


@pytest.fixture
def demo_copy(demo_study, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo_study.folder, out)
    return out


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ("", ".dcm")
                  and p.read_bytes()[128:132] == b"DICM")


@pytest.mark.parametrize("attrs", [
    {"PixelSpacing": ["1e-300", "1e-300"]},
    {"ImageOrientationPatient": ["1e308", "0", "0", "0", "1e308", "0"]},
    {"ImagePositionPatient": ["NaN", "0", "0"]},
], ids=["spacing-1e-300", "orientation-1e308", "position-nan"])
def test_demo_folder_with_one_singular_geometry_file_imports_all_six_series(demo_copy, demo_study, attrs):
    before = load_path(demo_study.folder, load_pixels=False)
    assert len(before.groups) == 6
    src = _dicom_files(demo_copy / demo_study.series_dirs["T1"].relative_to(demo_study.folder))[3]
    bad = H.write_with_geometry(src, src.parent / "ZZ_BAD.dcm", **attrs)
    result = load_path(demo_copy)
    assert len(result.images) == 6
    entry = result.report.files[str(bad)]
    assert entry.status == "skipped" and "implausible" in entry.reason, entry.reason
    assert all(np.all(np.isfinite(v.ijk_to_lps)) for v in result.volumes().values())


def test_inspect_reports_the_bad_file_and_prints_valid_json(demo_copy, demo_study, capsys):
    from planner.cli import run_command

    src = _dicom_files(demo_copy / demo_study.series_dirs["T2"].relative_to(demo_study.folder))[0]
    bad = H.write_with_geometry(src, src.parent / "ZZ_BAD.dcm", PixelSpacing=["1e-300", "1e-300"])
    code = run_command(["inspect", str(demo_copy), "--json"])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err
    data = json.loads(out.out)  # strict JSON: no NaN or Infinity
    assert len(data["series"]) == 6
    assert any(e["file"] == str(bad) and "implausible Pixel Spacing" in e["reason"] for e in data["skipped"])


@pytest.mark.gui
def test_the_gui_import_reports_the_bad_file(qtbot, demo_copy, demo_study, tmp_path):
    from planner.views.import_task import ImportTask, show_import_report

    src = _dicom_files(demo_copy / demo_study.series_dirs["STIR"].relative_to(demo_study.folder))[0]
    bad = H.write_with_geometry(src, src.parent / "ZZ_BAD.dcm", ImageOrientationPatient=["1e308", "0", "0", "0",
                                                                                         "1e308", "0"])
    task = ImportTask(demo_copy, None, show_dialog=False)
    with qtbot.waitSignal(task.finished, timeout=120000) as blocker:
        task.start()
    result = blocker.args[0]
    assert len(result.images) == 6
    dlg = show_import_report(None, result)
    qtbot.addWidget(dlg)
    rows = {dlg.table.item(r, 0).text(): dlg.table.item(r, 2).text() for r in range(dlg.table.rowCount())}
    assert "implausible Image Orientation" in rows[str(bad)]
    dlg.grab().save(str(tmp_path / "import-report.png"))
    assert task.wait(5000)


def test_a_series_with_one_slice_of_another_patient_is_split_with_warnings(tmp_path):
    paths, foreign = H.write_series_with_foreign_slice(tmp_path / "s", n=24)
    result = load_path(tmp_path / "s")
    assert len(result.images) == 2
    small, big = sorted(result.images.values(), key=lambda v: len(v.info.source_files))
    # the other patient's slice leaves a gap, shown as a blank slice at its true position
    assert len(big.info.source_files) == 23 and big.info.patient_id == "PAT-A"
    assert len(small.info.source_files) == 1 and small.info.patient_id == "PAT-B"
    for img in (small, big):
        assert any("different patients" in w for w in img.info.warnings)
    assert result.report.files[str(foreign)].series_key == small.info.key
    assert any("different patients" in n for n in result.report.notes)
    # no patient identifier in the report (it is logged and shown in full)
    text = result.report.to_text()
    assert "PAT-A" not in text and "PAT-B" not in text


def test_a_series_split_by_frame_of_reference_is_flagged(tmp_path):
    from pydicom.uid import generate_uid

    uid, study = generate_uid(), generate_uid()
    write_series(tmp_path / "a", n=4, rows=16, cols=16, series_uid=uid, study_uid=study, for_uid=generate_uid())
    write_series(tmp_path / "b", n=4, rows=16, cols=16, series_uid=uid, study_uid=study, for_uid=generate_uid(),
                 origin=(0.0, 0.0, 100.0))
    result = load_path(tmp_path)
    assert len(result.images) == 2
    for img in result.images.values():
        assert any("frames of reference" in w for w in img.info.warnings)


@pytest.fixture(scope="module")
def hostile_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    return {
        "j2k bomb (codestream claims 30000^2)": H.write_j2k_bomb(d / "j2k_bomb.dcm", 30000),
        "j2k bomb (header claims 30000^2)": H.write_j2k_bomb(d / "j2k_bomb_hdr.dcm", 30000, header_claims=True),
        "header bomb (100 frames of 4096^2)": H.write_frames_header_bomb(d / "frames_bomb.dcm"),
        "zip bomb (DICM + 2 GiB of zeros)": H.write_zip_bomb(d / "zip_bomb.zip"),
        "fifo": H.make_fifo(d / "pipe.dcm"),
        "/dev/zero": Path("/dev/zero"),
        "folder with a fifo and a link to /dev/zero": _folder_with_specials(d / "specials"),
        "/proc/self": Path("/proc/self"),
    }


def _folder_with_specials(folder: Path) -> Path:
    folder.mkdir()
    write_series(folder, n=3, rows=16, cols=16)
    H.make_fifo(folder / "pipe")
    (folder / "zero.dcm").symlink_to("/dev/zero")
    return folder


def test_bombs_fifos_and_devices_end_quickly_within_memory_with_a_reason(hostile_inputs):
    small = [p for p in hostile_inputs.values()]
    assert all(p.stat().st_size < 3_000_000 for p in small if p.is_file() and not str(p).startswith("/dev"))
    results = run_inputs([str(p) for p in hostile_inputs.values()], time_limit=10)
    by_path = {r.path: r for r in results}
    for name, p in hostile_inputs.items():
        r = by_path[str(p)]
        assert r.status == "ok", (name, r.status, r.error)
        assert r.seconds < 10, (name, r.seconds)
        assert r.peak < GIB, (name, r.rss_peak, r.worker_peak)
        assert not r.silent, (name, r.silent)
        if name != "folder with a fifo and a link to /dev/zero":
            assert r.loaded == 0 and r.skipped >= 1, name
    reasons = {name: load_path(p, time_limit_s=10).report for name, p in hostile_inputs.items()}
    expect = {"j2k bomb (codestream claims 30000^2)": "declares a 30000x30000 image",
              "j2k bomb (header claims 30000^2)": "implausible image size",
              "header bomb (100 frames of 4096^2)": "claims 100 frames",
              "zip bomb (DICM + 2 GiB of zeros)": "larger than the limit",
              "fifo": "named pipe", "/dev/zero": "device", "/proc/self": "/proc"}
    for name, text in expect.items():
        assert any(text in e.reason for e in reasons[name].skipped_files), (name, reasons[name].to_text())
    specials = reasons["folder with a fifo and a link to /dev/zero"]
    assert len(specials.loaded_files) == 3
    assert "named pipe" in specials.reason(str(hostile_inputs["folder with a fifo and a link to /dev/zero"] / "pipe"))


def test_a_zip_member_of_zeros_under_the_size_limit_is_refused_quickly(tmp_path):
    zb = H.write_zip_bomb(tmp_path / "z.zip", gib=1)
    from planner.imaging import sources

    old = sources.MAX_ZIP_MEMBER_BYTES
    try:
        sources.MAX_ZIP_MEMBER_BYTES = 2 * GIB  # the member passes the size limit: the ratio limit catches it
        t0 = time.monotonic()
        report = load_path(zb).report
        assert time.monotonic() - t0 < 5
    finally:
        sources.MAX_ZIP_MEMBER_BYTES = old
    assert "zip bomb" in report.skipped_files[0].reason


def test_a_decoder_past_the_time_limit_is_killed_and_the_rest_loads(tmp_path):
    from planner.imaging import workers

    write_series(tmp_path, n=6, rows=256, cols=256, transfer_syntax=H.J2K_LOSSLESS)
    before = workers.STATS.killed
    t0 = time.monotonic()
    result = load_path(tmp_path, time_limit_s=0.0001)  # every decode is over the limit
    assert time.monotonic() - t0 < 20
    assert workers.STATS.killed > before
    reasons = [e.reason for e in result.report.skipped_files]
    assert reasons and all("took longer than" in r or "no image could be decoded" in r for r in reasons), reasons
    # the next import still works: killed workers were replaced
    assert len(load_path(tmp_path).images) == 1


def test_cancel_ends_decoding_in_workers_within_a_second(tmp_path):
    write_series(tmp_path, n=60, rows=512, cols=512, transfer_syntax=H.J2K_LOSSLESS)
    cancel = threading.Event()
    seen = []

    def progress(fraction, message):
        if "Decoding" in message and not seen:
            seen.append(time.monotonic())
            cancel.set()

    result = load_path(tmp_path, progress=progress, cancel=cancel)
    assert seen and time.monotonic() - seen[0] < 1.0
    assert result.cancelled and not result.images


def test_a_research_read_stops_between_chunks_on_cancel_and_at_the_time_limit(tmp_path, monkeypatch):
    from planner.imaging import research
    from planner.imaging.limits import ImportLimits, ReadContext, ReadStopped
    from planner.imaging.sources import FileRef

    nib.save(nib.Nifti1Image(np.arange(64 * 64 * 64, dtype=np.int16).reshape(64, 64, 64), np.eye(4)),
             tmp_path / "v.nii.gz")
    monkeypatch.setattr(research, "CHUNK_BYTES", 4096)
    h = research.read_nifti_header(FileRef(str(tmp_path / "v.nii.gz")))

    class CancelAfter:
        def __init__(self, n):
            self.n = n

        def is_set(self):
            self.n -= 1
            return self.n < 0

    with pytest.raises(ReadStopped) as info:
        research.read_voxels(h, ReadContext(ImportLimits(), CancelAfter(5)))
    assert info.value.cancelled
    with pytest.raises(ReadStopped, match="took longer"):
        research.read_voxels(h, ReadContext(ImportLimits(time_limit_s=1), None, time.monotonic() - 1))
    assert research.read_voxels(h, ReadContext()).shape == (64, 64, 64)


def test_an_image_over_the_memory_budget_is_refused_before_anything_is_allocated(tmp_path):
    from planner.imaging.limits import ImportLimits

    write_series(tmp_path, n=10, rows=256, cols=256)
    result = load_path(tmp_path, limits=ImportLimits(memory_bytes=1024 * 1024))
    assert not result.images
    assert any("memory budget" in e.reason for e in result.report.skipped_files)


def test_volumes_never_have_a_non_finite_matrix():
    from planner.imaging.volume import Volume

    for bad in (np.full((4, 4), np.nan), np.diag([1e-300, 1e-300, 1.0, 1.0]), np.diag([np.inf, 1, 1, 1])):
        with pytest.raises(ValueError, match="ijk_to_lps"):
            Volume(np.zeros((2, 2, 2)), bad)


def test_only_regular_files_are_read_even_when_swapped_after_listing(tmp_path, monkeypatch):
    """A file replaced by a FIFO between listing and reading is refused, never opened blocking."""
    from planner.imaging import importer

    write_series(tmp_path, n=2, rows=8, cols=8)
    victim = sorted(tmp_path.iterdir())[0]
    real = importer.list_sources

    def swap(*a, **k):
        listing = real(*a, **k)
        victim.unlink()
        os.mkfifo(victim)
        return listing

    monkeypatch.setattr(importer, "list_sources", swap)
    t0 = time.monotonic()
    result = load_path(tmp_path)
    assert time.monotonic() - t0 < 5
    assert "named pipe" in result.report.reason(str(victim))
