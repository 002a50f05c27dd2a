"""Research formats (NIfTI, NRRD, MetaImage), image captures (PNG/JPEG), zip archives, DICOMDIR and
projection images (Pixel Spacing vs Imager Pixel Spacing)."""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import SimpleITK as sitk
import nibabel as nib
import pydicom

from planner.imaging import ProjectionImage, Volume, load_path  # noqa: E402
from planner.imaging.synthetic import write_projection, write_series  # noqa: E402

TOL_MM, TOL_DIR = 1e-3, 1e-6
FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
DICOMDIRTESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"


def _rotation() -> np.ndarray:
    a, b = np.radians(30), np.radians(-53.13)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _sitk_image(dtype=np.int16) -> "sitk.Image":
    arr = (np.random.default_rng(0).integers(0, 1000, size=(7, 9, 11))).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(tuple(_rotation().ravel()))
    return img


def _only(result):
    assert len(result.images) == 1, result.report.to_text()
    return next(iter(result.images.values()))


def assert_matches_sitk(vol: Volume, ref: "sitk.Image") -> None:
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=TOL_MM)
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=TOL_MM)
    np.testing.assert_allclose(vol.direction, np.array(ref.GetDirection()).reshape(3, 3), atol=TOL_DIR)
    ref_arr = sitk.GetArrayFromImage(ref)
    if vol.array.dtype == np.float32 and ref_arr.dtype == np.float64:
        ref_arr = ref_arr.astype(np.float32)
    np.testing.assert_array_equal(vol.array, ref_arr)


# ------------------------------------------------------------------ written by SimpleITK
@pytest.mark.parametrize("name, compress", [("a.mha", False), ("b.mha", True), ("c.mhd", False), ("d.mhd", True),
                                            ("e.nrrd", False), ("f.nrrd", True), ("g.nii", False),
                                            ("h.nii.gz", True)])
def test_research_formats_written_by_simpleitk(tmp_path, name, compress):
    img = _sitk_image()
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp_path / name))
    writer.SetUseCompression(compress)
    writer.Execute(img)
    result = load_path(tmp_path / name)
    vol = _only(result)
    assert isinstance(vol, Volume) and result.series[0].source_format in ("MetaImage", "NRRD", "NIfTI")
    assert_matches_sitk(vol, sitk.ReadImage(str(tmp_path / name)))
    # a detached header's data file is reported as part of the image, not as an unknown file
    assert not result.report.skipped_files, result.report.to_text()


# ------------------------------------------------------------------ NRRD in other spaces
def _write_nrrd(path: Path, arr: np.ndarray, space: str, dirs: np.ndarray, origin, encoding="raw", detached=False):
    """dirs: 3x3, column c = step of axis c in the named space."""
    nk, nj, ni = arr.shape
    fmt = lambda v: "(" + ",".join(f"{x:.10g}" for x in v) + ")"  # noqa: E731
    data = arr.astype("<i2").tobytes()
    if encoding == "gzip":
        data = gzip.compress(data)
    lines = ["NRRD0004", "type: short", "dimension: 3", f"space: {space}", f"sizes: {ni} {nj} {nk}",
             "space directions: " + " ".join(fmt(dirs[:, c]) for c in range(3)), "kinds: domain domain domain",
             "endian: little", f"encoding: {encoding}", f"space origin: {fmt(origin)}"]
    if detached:
        raw = path.with_suffix(".raw" if encoding == "raw" else ".raw.gz")
        raw.write_bytes(data)
        lines.append(f"data file: {raw.name}")
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_bytes(("\n".join(lines) + "\n\n").encode() + data)


@pytest.mark.parametrize("space, flips", [("right-anterior-superior", (-1, -1, 1)), ("RAS", (-1, -1, 1)),
                                          ("left-anterior-superior", (1, -1, 1)),
                                          ("left-posterior-superior", (1, 1, 1))])
@pytest.mark.parametrize("encoding, detached", [("raw", False), ("gzip", False), ("raw", True)])
def test_nrrd_orientation_is_converted_to_lps(tmp_path, space, flips, encoding, detached):
    arr = np.random.default_rng(1).integers(-500, 500, size=(5, 6, 7)).astype(np.int16)
    dirs = _rotation() * np.array([0.5, 0.75, 2.0])[None, :]
    origin = np.array([12.0, -7.5, 40.0])
    path = tmp_path / ("vol.nhdr" if detached else "vol.nrrd")
    _write_nrrd(path, arr, space, dirs, origin, encoding, detached)
    vol = _only(load_path(path))
    f = np.array(flips, dtype=float)
    expected = np.eye(4)
    expected[:3, :3] = dirs * f[:, None]
    expected[:3, 3] = origin * f
    np.testing.assert_allclose(vol.ijk_to_lps, expected, atol=1e-9)
    np.testing.assert_array_equal(vol.array, arr)
    assert_matches_sitk(vol, sitk.ReadImage(str(path)))


# ------------------------------------------------------------------ NIfTI variants (nibabel-written)
def _nifti(tmp_path, name, data, affine, *, qform_only=False, slope=None, inter=None, big_endian=False, v2=False,
           qform_affine=None):
    cls = nib.Nifti2Image if v2 else nib.Nifti1Image
    hdr = None
    if big_endian:
        hdr = nib.Nifti1Header(endianness=">")
    img = cls(data, affine, header=hdr)
    if qform_only:
        img.set_sform(None, code=0)
        img.set_qform(affine, code=1)
    else:
        img.set_sform(affine, code=2)
        img.set_qform(qform_affine if qform_affine is not None else affine, code=1)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    path = tmp_path / name
    nib.save(img, str(path))
    return path


def _affine_ras() -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = _rotation() * np.array([1.2, 0.8, 3.0])[None, :]
    a[:3, 3] = [-30.0, 15.0, 60.0]
    return a


@pytest.mark.parametrize("variant", ["sform", "qform_only", "scaled", "big_endian", "nifti2", "4d",
                                     "sform_differs_from_qform"])
def test_nifti_variants_match_nibabel(tmp_path, variant):
    rng = np.random.default_rng(2)
    data = rng.integers(0, 3000, size=(8, 6, 5)).astype(np.int16)
    aff = _affine_ras()
    kw = {}
    if variant == "qform_only":
        kw["qform_only"] = True
    elif variant == "scaled":
        kw.update(slope=2.5, inter=-7.0)
    elif variant == "big_endian":
        kw["big_endian"] = True
    elif variant == "nifti2":
        kw["v2"] = True
    elif variant == "4d":
        data = rng.integers(0, 3000, size=(8, 6, 5, 3)).astype(np.int16)
    elif variant == "sform_differs_from_qform":
        q = aff.copy()
        q[:3, 3] += [5.0, 0.0, 0.0]
        kw["qform_affine"] = q
    path = _nifti(tmp_path, "v.nii.gz", data, aff, **kw)
    result = load_path(path)
    vol = _only(result)
    ref = nib.load(str(path))
    np.testing.assert_allclose(vol.ijk_to_lps, FLIP @ ref.affine, atol=1e-4)
    expected = np.asarray(ref.dataobj)
    if expected.ndim == 4:
        expected = expected[..., 0]
        assert any("first of 3 volumes" in w for w in vol.info.warnings)
    expected = expected.transpose(2, 1, 0)
    if variant == "scaled":
        assert vol.array.dtype == np.float32
        np.testing.assert_array_equal(vol.array, expected.astype(np.float32))
    else:
        np.testing.assert_array_equal(vol.array, expected)
    if variant == "sform_differs_from_qform":
        assert any("sform and qform disagree" in w for w in vol.info.warnings)
    if variant in ("sform", "qform_only", "big_endian", "scaled"):
        assert_matches_sitk(vol, sitk.ReadImage(str(path)))


# ------------------------------------------------------------------ captures
def test_png_and_jpeg_captures_are_pixels_only(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 255, size=(40, 50)).astype(np.uint8)
    grey16 = rng.integers(0, 65535, size=(40, 50)).astype(np.uint16)
    colour = rng.integers(0, 255, size=(40, 50, 3)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(tmp_path / "grey_as_rgb.png")
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray(grey).save(tmp_path / "shot.jpg", quality=95)
    result = load_path(tmp_path)
    by_name = {img.info.series_description: img for img in result.images.values()}
    assert set(by_name) == {"grey.png", "grey16.png", "grey_as_rgb.png", "colour.png", "shot.jpg"}
    for img in by_name.values():
        assert isinstance(img, ProjectionImage)
        assert img.measurement_scale().unit_label == "px" and img.measurement_scale().mm_per_pixel is None
    np.testing.assert_array_equal(by_name["grey.png"].frames[0], grey)
    np.testing.assert_array_equal(by_name["grey16.png"].frames[0], grey16)
    np.testing.assert_array_equal(by_name["grey_as_rgb.png"].frames[0], grey)
    np.testing.assert_array_equal(by_name["colour.png"].frames[0], colour)
    assert by_name["shot.jpg"].frames.shape == (1, 40, 50)
    assert np.abs(by_name["shot.jpg"].frames[0].astype(int) - grey).mean() < 8
    # keys depend on content only: the same picture elsewhere gets the same key
    shutil.copy(tmp_path / "grey.png", tmp_path / "copy.png")
    again = load_path(tmp_path / "copy.png")
    assert set(again.images) <= set(result.images)


# ------------------------------------------------------------------ zip
def test_zip_archive_loads_like_the_folder(tmp_path):
    write_series(tmp_path / "study" / "ct", n=6, rows=16, cols=16)
    img = _sitk_image()
    sitk.WriteImage(img, str(tmp_path / "study" / "vol.nii.gz"))
    (tmp_path / "study" / "readme.txt").write_text("not an image")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tmp_path / "study").rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tmp_path))
    folder = load_path(tmp_path / "study")
    zipped = load_path(archive)
    assert sorted(zipped.images) == sorted(folder.images)
    for key, a in folder.images.items():
        b = zipped.images[key]
        np.testing.assert_array_equal(a.array, b.array)
        np.testing.assert_allclose(a.ijk_to_lps, b.ijk_to_lps)
    names = {e.name for e in zipped.report.skipped_files}
    assert names == {f"{archive}!study/readme.txt"}
    assert all(e.name.startswith(f"{archive}!") for e in zipped.report.loaded_files)


def test_damaged_zip_is_reported(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    result = load_path(bad)
    assert not result.images and "damaged zip" in result.report.reason(str(bad))


# ------------------------------------------------------------------ DICOMDIR
@pytest.fixture()
def cd_copy(tmp_path) -> Path:
    dst = tmp_path / "cd"
    shutil.copytree(DICOMDIRTESTS, dst)
    for extra in dst.glob("DICOMDIR-*"):
        extra.unlink()
    shutil.rmtree(dst / "TINY_ALPHA")
    return dst


def _folder_scan_keys(root: Path) -> set[str]:
    keys: set[str] = set()
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        keys |= set(load_path(sub).images)
    return keys


def test_dicomdir_is_read_and_matches_a_folder_scan(cd_copy):
    via_dicomdir = load_path(cd_copy / "DICOMDIR")
    via_folder = load_path(cd_copy)  # a folder with a DICOMDIR uses it too
    expected = _folder_scan_keys(cd_copy)
    assert set(via_dicomdir.images) == expected == set(via_folder.images)
    assert "DICOMDIR index" in via_dicomdir.report.reason(str(cd_copy / "DICOMDIR"))
    assert not via_dicomdir.report.notes
    studies = via_dicomdir.studies()
    assert len(studies) >= 3 and sum(len(s.series_keys) for s in studies) == len(expected)


def test_dicomdir_on_a_lower_case_copy_of_a_cd(cd_copy):
    for p in sorted(cd_copy.rglob("*"), key=lambda q: -len(q.parts)):
        if p.name != "DICOMDIR" and p.name != p.name.lower():
            p.rename(p.with_name(p.name.lower()))
    result = load_path(cd_copy / "DICOMDIR")
    assert result.images and not result.report.notes


def test_dicomdir_with_a_missing_file_and_a_damaged_dicomdir(cd_copy):
    victim = next((cd_copy / "77654033" / "CT2").iterdir())
    victim.unlink()
    result = load_path(cd_copy / "DICOMDIR")
    assert result.images
    assert any("were not found" in n for n in result.report.notes)
    assert result.report.reason(str(victim)) == "listed in the DICOMDIR but not found"
    (cd_copy / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    fallback = load_path(cd_copy)
    assert fallback.images and any("scanned instead" in n for n in fallback.report.notes)


# ------------------------------------------------------------------ projection images
def _proj(tmp_path, name, **kw) -> ProjectionImage:
    p, _arr = write_projection(tmp_path / name, **kw)
    return _only(load_path(p))


def test_projection_spacing_kinds_are_kept_apart(tmp_path):
    det = _proj(tmp_path, "det.dcm", modality="RF", imager_spacing=(0.3, 0.3))
    g = det.geometry
    assert g.imager_pixel_spacing == (0.3, 0.3) and g.pixel_spacing is None
    assert g.distance_source_to_detector_mm == 1000 and g.distance_source_to_patient_mm == 750
    assert g.view_position == "AP" and g.patient_orientation == ("L", "F")
    assert det.measurement_scale().unit_label == "mm at detector"
    assert any("at the detector" in w for w in det.info.warnings)

    mag = _proj(tmp_path, "mag.dcm", modality="DX", imager_spacing=(0.3, 0.3), magnification=1.2, primary=-30,
                secondary=15, view="LAT")
    assert mag.geometry.magnification_factor == 1.2 and mag.geometry.positioner_primary_angle_deg == -30
    assert mag.geometry.positioner_secondary_angle_deg == 15 and mag.geometry.view_position == "LAT"
    scale = mag.measurement_scale()
    assert scale.unit_label == "mm (magnification corrected)"
    assert scale.mm_per_pixel == pytest.approx((0.25, 0.25))

    same = _proj(tmp_path, "same.dcm", modality="DX", imager_spacing=(0.2, 0.2), pixel_spacing=(0.2, 0.2))
    assert same.measurement_scale().unit_label == "mm at detector"  # equal spacings, no calibration type

    cal = _proj(tmp_path, "cal.dcm", modality="DX", imager_spacing=(0.2, 0.2), pixel_spacing=(0.16, 0.16),
                calibration_type="GEOMETRY")
    assert cal.geometry.calibration_type == "GEOMETRY"
    assert cal.measurement_scale().unit_label == "mm (calibrated)"
    assert cal.measurement_scale().mm_per_pixel == (0.16, 0.16)

    xa_ps_only = _proj(tmp_path, "xa.dcm", modality="XA", imager_spacing=None, pixel_spacing=(0.4, 0.4))
    assert xa_ps_only.measurement_scale().unit_label == "mm at detector"

    none = _proj(tmp_path, "none.dcm", modality="RF", imager_spacing=None)
    assert none.measurement_scale().unit_label == "px"


def test_projection_pixels_match_simpleitk_and_cine_frames(tmp_path):
    p, arr = write_projection(tmp_path / "cine.dcm", modality="XA", frames=5, rows=32, cols=40)
    img = _only(load_path(p))
    assert img.n_frames == 5 and img.frame_time_ms == pytest.approx(66.7)
    np.testing.assert_array_equal(img.frames, sitk.GetArrayFromImage(sitk.ReadImage(str(p))))
    np.testing.assert_array_equal(img.frames, arr)
    p, arr = write_projection(tmp_path / "dx.dcm", modality="DX", photometric="MONOCHROME1", bits=12)
    img = _only(load_path(p))
    np.testing.assert_array_equal(img.frames[0], 4095 - arr[0])  # inverted so that higher is brighter
    np.testing.assert_array_equal(img.frames, sitk.GetArrayFromImage(sitk.ReadImage(str(p))))


def test_a_file_without_a_modality_is_ct_when_its_values_are_hounsfield_units(shared_data):
    """Research files carry no modality: air (1 % below -500) makes a CT; so does a crop held tight around
    the spine with some air and 1 % fat below -100 (the TPTBox crop, p1 -205 HU, was taken for an MRI and its
    image checks ran as on MRI); an MR image, even one with a few values below zero, stays MR."""
    from planner.imaging.volume import ImageInfo
    from planner.trajectory import is_ct

    rng = np.random.default_rng(0)

    def vol(values):
        return Volume(np.asarray(values, dtype=np.float32).reshape(10, 10, -1), np.eye(4), ImageInfo())

    soft = rng.normal(40.0, 20.0, 1000)
    assert is_ct(vol(np.where(np.arange(1000) < 30, -1000.0, soft)))          # 3 % air
    crop = np.where(np.arange(1000) < 20, -120.0, soft)                         # 2 % fat ...
    assert not is_ct(vol(crop))                                                  # ... no air: not sure
    crop[0] = -1000.0                                                            # ... and one voxel of air
    assert is_ct(vol(crop))
    mr = rng.uniform(0.0, 900.0, 1000)
    mr[:5] = -47.0                                                               # ringing of a resampled MR
    assert not is_ct(vol(mr))
    assert not is_ct(Volume(np.full((10, 10, 10), -1000.0, np.float32), np.eye(4), ImageInfo(modality="MR")))
    tpt = load_path(shared_data / "tptbox_vertebra_crops" / "sample_ct" / "sub-ct_label-22_ct.nii.gz")
    assert is_ct(next(iter(tpt.images.values())))
    for mr_file in (shared_data / "totalseg_example" / "example_mr_sm.nii.gz",
                    shared_data / "lumbar_mri_vb" / "VB2_04_mr.nii.gz"):
        assert not is_ct(next(iter(load_path(mr_file).images.values()))), mr_file.name
