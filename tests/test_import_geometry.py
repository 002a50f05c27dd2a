"""Acceptance: the geometry ``inspect`` reports and the voxels the importer loads agree with an
independent reader, SimpleITK (GDCM), for the real data in ../shared/data, pydicom's bundled test
series, synthetic tilted / oblique / multi-frame series and the demo case: origin and spacing to
0.001 mm, direction to 1e-6, voxel values identical.

SimpleITK's direction is row-major 3x3 whose columns are the i, j, k axes; ``inspect`` reports the
same layout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import SimpleITK as sitk
import pydicom
from pydicom.data import get_testdata_file  # noqa: E402

from planner.cli import inspect as inspect_cmd  # noqa: E402
from planner.imaging import ProjectionImage, Volume, load_path, resample_regular  # noqa: E402
from planner.imaging.synthetic import write_enhanced_mr, write_series  # noqa: E402

sitk.ProcessObject_SetGlobalWarningDisplay(False)
TOL_MM = 1e-3
TOL_DIR = 1e-6
DICOMDIRTESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"


# ------------------------------------------------------------------ helpers
def inspect_json(*paths: os.PathLike | str) -> dict:
    """Run the inspect command in-process and return its JSON."""
    buf = io.StringIO()
    args = argparse.Namespace(paths=[str(p) for p in paths], json=True, headers_only=False)
    with redirect_stdout(buf):
        rc = inspect_cmd.run(args)
    assert rc == 0, buf.getvalue()
    return json.loads(buf.getvalue())


def sitk_series(folder: Path) -> "sitk.Image":
    r = sitk.ImageSeriesReader()
    ids = r.GetGDCMSeriesIDs(str(folder))
    assert len(ids) == 1, ids
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder), ids[0]))
    return r.Execute()


def sitk_geometry(img: "sitk.Image") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(img.GetOrigin()), np.array(img.GetDirection()).reshape(3, 3), np.array(img.GetSpacing()))


def assert_values_equal(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if ours.dtype.kind == "f" and ours.dtype.itemsize == 4 and ref.dtype.itemsize == 8:
        ref = ref.astype(np.float32)  # we keep float32; SimpleITK computes the rescale in float64
    np.testing.assert_array_equal(ours, ref)


def assert_summary_matches(summary: dict, img: "sitk.Image") -> None:
    o, d, s = sitk_geometry(img)
    np.testing.assert_allclose(summary["origin"], o, atol=TOL_MM, rtol=0)
    np.testing.assert_allclose(summary["spacing"], s, atol=TOL_MM, rtol=0)
    np.testing.assert_allclose(np.array(summary["direction"]), d, atol=TOL_DIR, rtol=0)
    m = np.array(summary["ijk_to_lps"])
    np.testing.assert_allclose(m[:3, :3], d * s[None, :], atol=TOL_MM, rtol=0)
    assert list(summary["size"]) == list(img.GetSize())


def assert_volume_matches(vol: Volume, img: "sitk.Image") -> None:
    o, d, s = sitk_geometry(img)
    np.testing.assert_allclose(vol.origin, o, atol=TOL_MM, rtol=0)
    np.testing.assert_allclose(vol.spacing, s, atol=TOL_MM, rtol=0)
    np.testing.assert_allclose(vol.direction, d, atol=TOL_DIR, rtol=0)
    assert_values_equal(vol.array, sitk.GetArrayFromImage(img))


def only_volume(result) -> tuple[str, Volume]:
    vols = result.volumes()
    assert len(vols) == 1, list(result.images)
    return next(iter(vols.items()))


# ------------------------------------------------------------------ shared real data
def test_shared_ct_series_with_empty_uids(shared_data):
    folder = shared_data / "totalseg_example" / "ct_dicom"
    img = sitk_series(folder)
    out = inspect_json(folder)
    assert len(out["series"]) == 1
    s = out["series"][0]
    assert s["series_instance_uid"] == "" and s["key"].startswith("no-series-uid-")
    assert s["modality"] == "CT" and s["n_files"] == 20
    assert_summary_matches(s, img)
    result = load_path(folder)
    key, vol = only_volume(result)
    assert key == s["key"] and vol.info.key == key
    assert_volume_matches(vol, img)
    # stable key: a second import gives the same key
    assert only_volume(load_path(folder))[0] == key
    assert len(vol.info.sop_instance_uids) == 20 and vol.info.header_windows[0].center == 40


def test_shared_sagittal_mr_slice(shared_data):
    f = shared_data / "orthanc_spine_dicom" / "2022-03-08-RicSmi.dcm"
    img = sitk.ReadImage(str(f))
    out = inspect_json(f)
    assert_summary_matches(out["series"][0], img)
    _key, vol = only_volume(load_path(f))
    assert_volume_matches(vol, img)
    assert vol.info.modality == "MR" and vol.info.extra["SliceThickness"] == 5.5


def test_shared_rf_projection(shared_data):
    f = shared_data / "orthanc_spine_dicom" / "KarstenHilbertRF.dcm"
    img = sitk.ReadImage(str(f))
    result = load_path(f)
    (proj,) = result.projections().values()
    assert isinstance(proj, ProjectionImage) and proj.info.modality == "RF"
    assert_values_equal(proj.frames, sitk.GetArrayFromImage(img))
    assert proj.measurement_scale().unit_label == "px"  # no spacing tags: pixels only
    s = result.series[0]
    assert s.kind == "projection" and s.measurement_unit == "px" and s.ijk_to_lps is None


def _nifti_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.nii.gz"))


def test_shared_nifti_volumes_match_simpleitk_and_nibabel(shared_data):
    import nibabel as nib

    files = _nifti_files(shared_data)
    assert len(files) >= 10
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    for f in files:
        result = load_path(f)
        _key, vol = only_volume(result)
        img = sitk.ReadImage(str(f))
        assert_volume_matches(vol, img)
        nimg = nib.load(str(f))
        np.testing.assert_allclose(vol.ijk_to_lps, flip @ nimg.affine, atol=TOL_MM, rtol=0, err_msg=str(f))
        ref = np.asarray(nimg.dataobj)
        assert_values_equal(vol.array, np.ascontiguousarray(ref.transpose(2, 1, 0)))


# ------------------------------------------------------------------ pydicom's bundled files
SINGLE_FILES = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                "MR_small_padded.dcm", "CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm",
                "examples_overlay.dcm"]


@pytest.mark.parametrize("name", SINGLE_FILES)
def test_pydicom_single_slices(name):
    f = get_testdata_file(name, download=False)
    img = sitk.ReadImage(f)
    out = inspect_json(f)
    assert_summary_matches(out["series"][0], img)
    _key, vol = only_volume(load_path(f))
    assert_volume_matches(vol, img)


@pytest.mark.parametrize("rel", ["77654033/CT2", "98892001/CT5N"])
def test_pydicom_ct_series(rel):
    folder = DICOMDIRTESTS / rel
    img = sitk_series(folder)
    out = inspect_json(folder)
    assert len(out["series"]) == 1
    assert_summary_matches(out["series"][0], img)
    _key, vol = only_volume(load_path(folder))
    assert_volume_matches(vol, img)


@pytest.mark.parametrize("rel, n_volumes", [("98892003/MR700", 7), ("98892001/CT2N", 2), ("98892003/MR1", 3),
                                            ("98892003/MR2", 7)])
def test_pydicom_localizers_and_radial_slices_split_by_orientation(rel, n_volumes):
    """Slices of one series with different orientations (MR700: 7 radial slices; CT2N: sagittal and
    coronal localizers; MR2: three-plane localizers) become one single-slice volume each, with unique
    keys, each matching SimpleITK's reading of its file. (SimpleITK's series reader would stack them.)"""
    folder = DICOMDIRTESTS / rel
    result = load_path(folder)
    vols = result.volumes()
    assert len(vols) == n_volumes
    for key, vol in vols.items():
        uid = vol.info.series_instance_uid
        assert key == uid or key.startswith(uid + "#")
        (src,) = vol.info.source_files
        assert_volume_matches(vol, sitk.ReadImage(src))
    if rel.endswith("MR700"):
        uid = next(iter(vols.values())).info.series_instance_uid
        assert set(vols) == {uid} | {f"{uid}#{n}" for n in range(2, 8)}


@pytest.mark.parametrize("name", ["6154", "6247", "6278"])
def test_pydicom_cr_monochrome1_is_inverted_like_gdcm(name):
    (f,) = [str(p) for p in (DICOMDIRTESTS / "77654033").glob(f"CR*/{name}")]
    img = sitk.ReadImage(f)
    result = load_path(f)
    (proj,) = result.projections().values()
    assert proj.info.extra["inverted_monochrome1"] is True
    assert_values_equal(proj.frames, sitk.GetArrayFromImage(img))


def test_pydicom_rtdose_multiframe_grid_offsets():
    f = get_testdata_file("rtdose.dcm", download=False)
    img = sitk.ReadImage(f)
    _key, vol = only_volume(load_path(f))
    o, d, s = sitk_geometry(img)
    np.testing.assert_allclose(vol.origin, o, atol=TOL_MM)
    np.testing.assert_allclose(vol.spacing, s, atol=TOL_MM)
    np.testing.assert_allclose(vol.direction, d, atol=TOL_DIR)
    scaling = float(pydicom.dcmread(f, stop_before_pixels=True).DoseGridScaling)
    # we apply Dose Grid Scaling (values in Gy); GDCM leaves the stored integers
    np.testing.assert_array_equal(vol.array, (sitk.GetArrayFromImage(img) * scaling).astype(np.float32))


# ------------------------------------------------------------------ synthetic series
SYNTHETIC = {
    "axial": {},
    "oblique": {"iop": (0.866025, 0.5, 0.0, -0.171010, 0.296198, -0.939693)},
    "sagittal": {"iop": (0, 1, 0, 0, 0, -1), "modality": "MR", "rescale": (1.0, 0.0)},
    "implicit": {"transfer_syntax": "1.2.840.10008.1.2"},
    "big_endian": {"transfer_syntax": "1.2.840.10008.1.2.2"},
    "deflate": {"transfer_syntax": "1.2.840.10008.1.2.1.99"},
    "rle": {"transfer_syntax": "1.2.840.10008.1.2.5"},
    "jpeg2000": {"transfer_syntax": "1.2.840.10008.1.2.4.90"},
    "jpeg_ls": {"transfer_syntax": "1.2.840.10008.1.2.4.80"},
    "monochrome1": {"photometric": "MONOCHROME1"},
    "float_rescale": {"rescale": (0.37, -12.25)},
    "signed": {"signed": True, "rescale": (1.0, 0.0)},
    "16bit_unsigned_offset": {"bits_stored": 16, "rescale": (1.0, -1024.0)},
}


@pytest.mark.parametrize("case", sorted(SYNTHETIC))
def test_synthetic_series_match_simpleitk(tmp_path, case):
    write_series(tmp_path, **SYNTHETIC[case])
    img = sitk_series(tmp_path)
    out = inspect_json(tmp_path)
    assert_summary_matches(out["series"][0], img)
    assert out["series"][0]["warnings"] == []
    _key, vol = only_volume(load_path(tmp_path))
    assert_volume_matches(vol, img)


def test_jpeg_baseline_series(tmp_path):
    """Lossy JPEG: geometry exact; pixels within 1 of GDCM's decoder (IDCT rounding differs between
    JPEG libraries) and identical to pydicom's own decoding of each file."""
    paths = write_series(tmp_path, transfer_syntax="1.2.840.10008.1.2.4.50", bits_stored=8, rescale=(1.0, 0.0),
                         shuffle_files=False)
    img = sitk_series(tmp_path)
    out = inspect_json(tmp_path)
    assert_summary_matches(out["series"][0], img)
    _key, vol = only_volume(load_path(tmp_path))
    ref = sitk.GetArrayFromImage(img).astype(int)
    assert np.abs(vol.array.astype(int) - ref).max() <= 1
    for k, p in enumerate(paths):
        np.testing.assert_array_equal(vol.array[k], pydicom.dcmread(p).pixel_array)


def test_gantry_tilted_ct_keeps_the_true_geometry(tmp_path):
    """A 20 degree tilted CT: the matrix is sheared so each slice lies exactly where its Image Position
    says. SimpleITK's series reader drops the tilt, so each slice is compared with SimpleITK's reading
    of that one file (position, in-plane axes and pixels)."""
    paths = write_series(tmp_path, n=10, tilt_deg=20.0, slice_gap=3.0)
    result = load_path(tmp_path)
    _key, vol = only_volume(result)
    assert any("tilt of 20.00 degrees" in w for w in vol.info.warnings)
    assert vol.info.extra["geometry_exact"] is True
    by_position = {}
    for p in paths:
        img = sitk.ReadImage(str(p))
        by_position[tuple(np.round(img.GetOrigin(), 3))] = img
    n = np.cross(vol.direction[:, 0], vol.direction[:, 1])
    k_axis = vol.ijk_to_lps[:3, 2]
    assert np.degrees(np.arccos(abs(k_axis @ n) / np.linalg.norm(k_axis))) == pytest.approx(20.0, abs=1e-3)
    for k in range(vol.array.shape[0]):
        pos = vol.ijk_to_world([0, 0, k])
        img = by_position[tuple(np.round(pos, 3))]
        o, d, s = sitk_geometry(img)
        np.testing.assert_allclose(pos, o, atol=TOL_MM)
        np.testing.assert_allclose(vol.direction[:, :2], d[:, :2], atol=TOL_DIR)
        np.testing.assert_allclose(vol.spacing[:2], s[:2], atol=TOL_MM)
        assert_values_equal(vol.array[k], sitk.GetArrayFromImage(img)[0])
        # a voxel's world position is the DICOM formula IPP + i*dr*row + j*dc*col
        np.testing.assert_allclose(vol.ijk_to_world([5, 7, k]), o + 5 * s[0] * d[:, 0] + 7 * s[1] * d[:, 1],
                                   atol=TOL_MM)
    # resampling is explicit (tests/test_import_series.py checks its values) and gives an orthogonal grid
    reg = resample_regular(vol)
    np.testing.assert_allclose(reg.direction.T @ reg.direction, np.eye(3), atol=1e-9)


def test_enhanced_mr_multiframe_matches_simpleitk(tmp_path):
    p, _pos, _frames = write_enhanced_mr(tmp_path / "emr.dcm", n_frames=12)
    img = sitk.ReadImage(str(p))
    out = inspect_json(p)
    assert_summary_matches(out["series"][0], img)
    _key, vol = only_volume(load_path(p))
    assert_volume_matches(vol, img)
    assert vol.info.sop_instance_uids == [vol.info.sop_instance_uids[0]] * 12


def test_enhanced_mr_frames_are_sorted_by_position(tmp_path):
    """Frames stored out of order (with per-frame rescale) are placed by their Plane Position."""
    order = [3, 1, 0, 2, 4, 7, 5, 6]
    p, pos, frames = write_enhanced_mr(tmp_path / "emr.dcm", n_frames=8, frame_order=order, per_frame_rescale=True)
    _key, vol = only_volume(load_path(p))
    normal = vol.slice_normal()
    heights = np.array([vol.ijk_to_world([0, 0, k]) @ normal for k in range(8)])
    assert np.all(np.diff(heights) > 0)
    for file_index, k_sorted in enumerate(order):
        k = int(np.argmin(np.linalg.norm(np.array(vol.info.slice_positions_lps) - pos[file_index], axis=1)))
        assert k == k_sorted
        slope, inter = 1 + 0.5 * k_sorted, -10 * k_sorted
        np.testing.assert_array_equal(vol.array[k], (frames[file_index] * np.float64(slope) + inter).astype(np.float32))


def test_multi_echo_enhanced_mr_splits_into_one_volume_per_echo(tmp_path):
    p, _pos, _frames = write_enhanced_mr(tmp_path / "emr.dcm", n_frames=6, echoes=2)
    result = load_path(p)
    vols = result.volumes()
    assert len(vols) == 2
    keys = sorted(vols)
    assert keys[1] == keys[0] + "#2"
    assert all(v.array.shape == (6, 24, 20) for v in vols.values())
    assert {v.info.extra["split_by"] for v in vols.values()} == {"EchoTime"}


# ------------------------------------------------------------------ demo case
def test_demo_study_matches_simpleitk(tmp_path):
    from planner.demo import write_demo_study

    write_demo_study(tmp_path)
    result = load_path(tmp_path)
    assert result.volumes(), result.report.to_text()
    reader = sitk.ImageSeriesReader()
    compared: set[str] = set()
    folders = sorted({p.parent for p in tmp_path.rglob("*") if p.is_file()})
    for folder in folders:
        for series_id in reader.GetGDCMSeriesIDs(str(folder)):
            files = reader.GetGDCMSeriesFileNames(str(folder), series_id)
            img = sitk.ReadImage(files[0]) if len(files) == 1 else None
            if img is None:
                reader.SetFileNames(files)
                img = reader.Execute()
            image = result.images.get(series_id)
            assert image is not None, (series_id, list(result.images))
            if isinstance(image, Volume):
                assert_volume_matches(image, img)
                assert_summary_matches(result.summary(series_id).to_dict(), img)
            else:
                assert_values_equal(image.frames, sitk.GetArrayFromImage(img))
            compared.add(series_id)
    # every image of the demo study was compared (none is left unchecked)
    assert compared == set(result.images), (compared, set(result.images))


def test_enhanced_mr_with_per_frame_orientations_splits_into_stacks(tmp_path):
    """A multi-frame file whose frames carry their own Plane Orientation (a two-plane localizer) gives one
    volume per orientation, each placed exactly by its per-frame positions."""
    sag = (0, 1, 0, 0, 0, -1)
    ax = (1, 0, 0, 0, 1, 0)
    p, pos, frames = write_enhanced_mr(tmp_path / "loc.dcm", n_frames=4, iop=sag, second_orientation=ax)
    result = load_path(p)
    vols = result.volumes()
    assert len(vols) == 2
    by_normal = {tuple(np.round(np.cross(v.direction[:, 0], v.direction[:, 1]), 6)): v for v in vols.values()}
    for iop, first in ((sag, 0), (ax, 4)):
        normal = tuple(np.round(np.cross(iop[:3], iop[3:]), 6) + 0.0)
        vol = by_normal[normal]
        np.testing.assert_allclose(vol.direction[:, 0], iop[:3], atol=TOL_DIR)
        np.testing.assert_allclose(vol.direction[:, 1], iop[3:], atol=TOL_DIR)
        for k in range(4):
            np.testing.assert_allclose(vol.ijk_to_world([0, 0, k]), pos[first + k], atol=TOL_MM)
            np.testing.assert_array_equal(vol.array[k], frames[first + k])
