"""Series building rules: sorting by position, missing slices, irregular spacing, duplicates, keys,
studies, explicit resampling, and one broken file in a hundred."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pydicom
import SimpleITK as sitk

from planner.imaging import Volume, load_path, resample_regular, scan_path  # noqa: E402
from planner.imaging.series import stack_geometry  # noqa: E402
from planner.imaging.synthetic import pattern, write_series  # noqa: E402

ROWS, COLS = 16, 20
PS = (0.8, 0.7)  # (row spacing, column spacing)


def _positions(heights, origin=(-10.0, -20.0, 5.0), lateral=None):
    heights = np.asarray(heights, dtype=float)
    P = np.zeros((len(heights), 3))
    P[:] = origin
    P[:, 2] += heights
    if lateral is not None:
        P[:, 1] += np.asarray(lateral, dtype=float)
    return P


def _linear_pixels(P, coeff=(3.0, -2.0, 5.0), offset=900.0):
    """Pixel values that are a linear function of the LPS position of each pixel (axial slices)."""
    def pix(k):
        j, i = np.mgrid[0:ROWS, 0:COLS]
        x = P[k, 0] + i * PS[1]
        y = P[k, 1] + j * PS[0]
        z = P[k, 2] + 0 * i
        return np.rint(coeff[0] * x + coeff[1] * y + coeff[2] * z + offset).astype(np.uint16)
    return pix


def _linear_value(p_lps, coeff=(3.0, -2.0, 5.0), offset=900.0):
    return coeff[0] * p_lps[..., 0] + coeff[1] * p_lps[..., 1] + coeff[2] * p_lps[..., 2] + offset


def _only_volume(result) -> Volume:
    vols = list(result.volumes().values())
    assert len(vols) == 1, result.report.to_text()
    return vols[0]


def test_slices_sorted_by_position_not_instance_number(tmp_path):
    paths = write_series(tmp_path, n=8, rows=ROWS, cols=COLS, rescale=(1, 0))
    # reverse the instance numbers: a reader sorting by them would flip the stack
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.InstanceNumber = 100 - int(ds.InstanceNumber)
        ds.save_as(p)
    vol = _only_volume(load_path(tmp_path))
    z = [vol.ijk_to_world([0, 0, k])[2] for k in range(8)]
    assert np.all(np.diff(z) > 0)
    for k in range(8):
        np.testing.assert_array_equal(vol.array[k], pattern(k, ROWS, COLS, 12))


def test_missing_slices_are_inserted_blank_so_positions_stay_true(tmp_path):
    heights = [0, 2, 4, 6, 10, 12, 18, 20]  # 8 and 14, 16 missing
    P = _positions(heights)
    write_series(tmp_path, positions=P, rows=ROWS, cols=COLS, pixel_spacing=PS, rescale=(1, -1024))
    result = load_path(tmp_path)
    vol = _only_volume(result)
    assert vol.array.shape[0] == 11
    np.testing.assert_allclose(vol.spacing[2], 2.0, atol=1e-6)
    assert vol.info.extra["blank_slices"] == [4, 7, 8]
    assert any("3 slice(s) missing" in w for w in vol.info.warnings)
    assert vol.info.extra["geometry_exact"] is True
    # every real slice is exactly where its file says, with its own pixels
    for k_file, h in enumerate(heights):
        k = int(round(h / 2))
        np.testing.assert_allclose(vol.ijk_to_world([0, 0, k]), P[k_file], atol=1e-6)
        np.testing.assert_array_equal(vol.array[k], pattern(k_file, ROWS, COLS, 12).astype(np.int32) - 1024)
    assert np.all(vol.array[4] == -1024) and vol.info.sop_instance_uids[4] == ""
    # resample_regular interpolates across the gap from the real neighbours (not from the blank)
    reg = resample_regular(vol)
    assert reg.array.shape[0] == 11
    expect = 0.5 * (vol.array[3].astype(float) + vol.array[5].astype(float))
    np.testing.assert_allclose(reg.array[4], np.rint(expect), atol=1)


def test_irregular_spacing_is_reported_and_resampling_restores_exact_positions(tmp_path):
    heights = [0.0, 2.0, 4.0, 7.3, 9.3, 11.3, 12.9]
    P = _positions(heights)
    write_series(tmp_path, positions=P, rows=ROWS, cols=COLS, pixel_spacing=PS, rescale=(1, 0),
                 pixels=_linear_pixels(P), bits_stored=16)
    result = load_path(tmp_path)
    vol = _only_volume(result)
    assert vol.info.extra["geometry_exact"] is False
    warning = next(w for w in vol.info.warnings if "irregular slice spacing" in w)
    assert "1.600" in warning and "3.300" in warning
    np.testing.assert_allclose(np.array(vol.info.slice_positions_lps), P, atol=1e-6)
    summary = result.series[0]
    assert summary.geometry_exact is False and summary.warnings
    reg = resample_regular(vol)
    assert reg.info.extra["geometry_exact"] is True
    # values on the regular grid equal the linear field (linear interpolation is exact for it)
    nk, nj, ni = reg.array.shape
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    pts = reg.ijk_to_world(np.stack([ii, jj, kk], axis=-1).reshape(-1, 3)).reshape(nk, nj, ni, 3)
    np.testing.assert_allclose(reg.array.astype(float), _linear_value(pts), atol=1.01)


def test_tilted_stack_resampled_values_follow_the_true_geometry(tmp_path):
    gap, tilt = 2.0, 25.0
    heights = np.arange(9) * gap
    lateral = heights * np.tan(np.radians(tilt))
    P = _positions(heights, lateral=lateral)
    write_series(tmp_path, positions=P, rows=ROWS, cols=COLS, pixel_spacing=PS, rescale=(1, 0),
                 pixels=_linear_pixels(P), bits_stored=16)
    vol = _only_volume(load_path(tmp_path))
    assert vol.info.extra["tilt_deg"] == pytest.approx(tilt, abs=1e-3)
    # the sheared matrix places every voxel where the linear field says
    nk, nj, ni = vol.array.shape
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    pts = vol.ijk_to_world(np.stack([ii, jj, kk], axis=-1).reshape(-1, 3)).reshape(nk, nj, ni, 3)
    np.testing.assert_allclose(vol.array.astype(float), _linear_value(pts), atol=0.51)
    reg = resample_regular(vol)
    nk, nj, ni = reg.array.shape
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    pts = reg.ijk_to_world(np.stack([ii, jj, kk], axis=-1).reshape(-1, 3)).reshape(nk, nj, ni, 3)
    # output voxels well inside the sheared input (one voxel margin in-plane) reproduce the field
    src = vol.world_to_ijk(pts)
    n_k, n_j, n_i = vol.array.shape
    core = ((src[..., 0] >= 1) & (src[..., 0] <= n_i - 2) & (src[..., 1] >= 1) & (src[..., 1] <= n_j - 2)
            & (src[..., 2] >= -1e-6) & (src[..., 2] <= n_k - 1 + 1e-6))
    assert core.sum() > 0.3 * core.size
    diff = np.abs(reg.array.astype(float) - _linear_value(pts))
    assert diff[core].max() <= 1.01


def test_duplicate_positions_without_distinguishing_attribute_keep_one_and_report(tmp_path):
    P = _positions([0, 3, 6, 9])
    uid, study, frame = (pydicom.uid.generate_uid() for _ in range(3))
    a = write_series(tmp_path / "a", positions=P, rows=ROWS, cols=COLS, series_uid=uid, study_uid=study,
                     for_uid=frame, seed=1)
    b = write_series(tmp_path / "b", positions=P[:2], rows=ROWS, cols=COLS, series_uid=uid, study_uid=study,
                     for_uid=frame, seed=2)
    result = load_path(tmp_path)
    vol = _only_volume(result)
    assert vol.array.shape[0] == 4
    assert any("left out" in w for w in vol.info.warnings)
    skipped = {e.name for e in result.report.skipped_files}
    assert len(skipped) == 2 and all("same slice position" in result.report.reason(n) for n in skipped)
    assert skipped <= {str(p) for p in a + b}


def test_same_file_twice_is_reported_as_duplicate(tmp_path):
    paths = write_series(tmp_path / "s", n=3, rows=ROWS, cols=COLS)
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(paths[0].read_bytes())
    result = load_path(tmp_path)
    assert _only_volume(result).array.shape[0] == 3
    # whichever of the two identical files is read second is reported as a duplicate of the first
    reasons = [result.report.reason(str(copy)), result.report.reason(str(paths[0]))]
    dup = [r for r in reasons if r.startswith("duplicate of")]
    assert len(dup) == 1 and (str(copy) in dup[0] or str(paths[0]) in dup[0])


def test_series_of_one_study_are_listed_under_it_and_keys_are_stable(tmp_path):
    study = pydicom.uid.generate_uid()
    for n, (iop, desc) in enumerate([((1, 0, 0, 0, 1, 0), "ax"), ((0, 1, 0, 0, 0, -1), "sag"),
                                      ((1, 0, 0, 0, 0, -1), "cor")]):
        write_series(tmp_path / desc, n=4, rows=ROWS, cols=COLS, iop=iop, study_uid=study, description=desc,
                     series_number=n + 1)
    # two series without any UIDs in another study folder
    for n in (7, 8):
        paths = write_series(tmp_path / f"nouid{n}", n=3, rows=ROWS, cols=COLS, series_number=n)
        for p in paths:
            ds = pydicom.dcmread(p)
            del ds.SeriesInstanceUID
            ds.StudyInstanceUID = ""
            ds.save_as(p)
    result = load_path(tmp_path)
    studies = {s.key: s for s in result.studies()}
    assert len(result.volumes()) == 5
    assert len(studies[study].series_keys) == 3 and studies[study].modalities == ["CT"]
    nouid_keys = [k for k in result.images if k.startswith("no-series-uid-")]
    assert len(nouid_keys) == 2
    again = scan_path(tmp_path)
    assert sorted(again.groups) == sorted(result.images)


def test_scan_path_reads_no_pixels_and_load_series_decodes_one(tmp_path, monkeypatch):
    write_series(tmp_path, n=5, rows=ROWS, cols=COLS)
    import planner.imaging.pixels as pixels

    calls = []
    real = pixels.decode_into
    monkeypatch.setattr(pixels, "decode_into", lambda *a, **k: calls.append(1) or real(*a, **k))
    scanned = scan_path(tmp_path)
    assert not scanned.images and not calls
    (summary,) = scanned.series
    assert summary.size == (COLS, ROWS, 5) and summary.ijk_to_lps is not None and not summary.loaded
    from planner.imaging import load_series
    import planner.imaging.importer as importer

    monkeypatch.setattr(importer, "decode_into", pixels.decode_into)
    vol = load_series(scanned.groups[summary.key])
    assert isinstance(vol, Volume) and vol.array.shape == (5, ROWS, COLS) and calls


def test_one_broken_file_in_a_hundred(tmp_path):
    """A folder where 1 file in 100 is broken loads the other 99 and names the failed file and why."""
    paths = write_series(tmp_path, n=100, rows=ROWS, cols=COLS, shuffle_files=False)
    broken = paths[37]
    data = broken.read_bytes()
    broken.write_bytes(data[:-200])  # pixel data cut short
    result = load_path(tmp_path)
    vol = _only_volume(result)
    rep = result.report
    assert len(rep.loaded_files) == 99 and [e.name for e in rep.skipped_files] == [str(broken)]
    assert "truncated" in rep.reason(str(broken)) or "too short" in rep.reason(str(broken))
    # the slice is shown blank at its true place; the others are exact
    assert vol.array.shape[0] == 100 and vol.info.extra["blank_slices"] == [37]
    assert any("missing" in w for w in vol.info.warnings)


def test_undecodable_compressed_file_becomes_a_blank_slice_with_reason(tmp_path):
    paths = write_series(tmp_path, n=10, rows=ROWS, cols=COLS, transfer_syntax="1.2.840.10008.1.2.5",
                         shuffle_files=False)
    ds = pydicom.dcmread(paths[4])
    frag = bytearray(ds.PixelData)
    frag[-40:] = b"\x00" * 40  # destroy the end of the RLE stream, headers intact
    ds.PixelData = bytes(frag)
    ds.save_as(paths[4])
    result = load_path(tmp_path)
    vol = _only_volume(result)
    reason = result.report.reason(str(paths[4]))
    assert result.report.files[str(paths[4])].status == "skipped" and "RLE Lossless" in reason
    assert any("could not be decoded" in w for w in vol.info.warnings)
    assert np.all(vol.array[4] == vol.array.min()) or np.all(vol.array[4] == -1024)


def test_stack_geometry_single_slice_uses_spacing_between_slices():
    g = stack_geometry(np.array([[1.0, 2.0, 3.0]]), np.array([1, 0, 0, 0, 1, 0.0]), (0.5, 0.6), 4.0)
    np.testing.assert_allclose(g.ijk_to_lps[:3, :3], np.diag([0.6, 0.5, 4.0]))
    np.testing.assert_allclose(g.ijk_to_lps[:3, 3], [1, 2, 3])


def test_missing_decoder_is_reported_with_the_transfer_syntax_name(tmp_path, monkeypatch):
    write_series(tmp_path, n=3, rows=ROWS, cols=COLS, transfer_syntax="1.2.840.10008.1.2.4.80")
    import pydicom.pixels.decoders.base as base

    monkeypatch.setattr(base.Decoder, "is_available", property(lambda self: False))
    result = load_path(tmp_path)
    assert not result.images
    reasons = {e.reason for e in result.report.skipped_files}
    assert any("JPEG-LS Lossless Image Compression" in r and "1.2.840.10008.1.2.4.80" in r for r in reasons), reasons


def test_nothing_raises_for_a_missing_path(tmp_path):
    result = load_path(tmp_path / "nope")
    assert not result.images and result.report.reason(str(tmp_path / "nope")) == "not found"


def test_file_paths_are_reported_as_given(tmp_path):
    p = write_series(tmp_path, n=2, rows=ROWS, cols=COLS)[0]
    result = load_path(Path(p))
    assert result.report.files[str(p)].status == "loaded"


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"])
def test_compressed_series_decode_in_worker_processes_as_simpleitk_does(tmp_path, ts):
    """Compressed pixel data is decoded in worker processes (never in the application process); the
    result is the same as SimpleITK's."""
    from planner.imaging import workers

    write_series(tmp_path, n=5, rows=64, cols=64, transfer_syntax=ts)
    before = workers.STATS.tasks
    vol = _only_volume(load_path(tmp_path))
    assert workers.STATS.tasks - before == 5
    ref = sitk.ImageSeriesReader()
    ref.SetFileNames(ref.GetGDCMSeriesFileNames(str(tmp_path)))
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(ref.Execute()))
