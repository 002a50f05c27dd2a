"""The built-in demo case (planner.demo): real DICOM that pydicom and SimpleITK read, geometry equal to
the ground truth, Modic signal behaviour measured in the images, landmarks in the intended tissue,
fluoroscopy projection matrices that land on bone, deterministic output, a sample plan that loads.

The study is written once per session by the ``demo_study`` fixture (tests/conftest.py)."""

from __future__ import annotations

import filecmp
import json
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from planner.demo import ensure_demo_case, load_ground_truth
from planner.demo.phantom import BONE_TISSUES, Phantom, Tissue
from planner.demo.writer import DemoManifest, ProjectionSpec, write_demo_study
from planner.settings import PlanningSettings
from planner.storage import load_plan

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture(scope="module")
def gt(demo_study: DemoManifest) -> dict:
    return load_ground_truth(demo_study.folder)


def _series(gt: dict, role: str) -> dict:
    return next(s for s in gt["series"] if s["role"] == role)


def _read_sitk(folder: Path) -> tuple[str, sitk.Image]:
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    assert len(ids) == 1, ids
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ids[0]))
    return ids[0], reader.Execute()


@pytest.fixture(scope="module")
def mr(demo_study: DemoManifest, gt: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """role -> (array (k, j, i) as SimpleITK reads it, ijk_to_lps built from SimpleITK's geometry)."""
    out = {}
    for role in ("T1", "T2", "STIR", "AX_T2"):
        _, img = _read_sitk(demo_study.folder / _series(gt, role)["folder"])
        m = np.eye(4)
        m[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
        m[:3, 3] = img.GetOrigin()
        out[role] = (sitk.GetArrayFromImage(img).astype(np.float64), m)
    return out


def _sample(vol: tuple[np.ndarray, np.ndarray], points_lps) -> np.ndarray:
    """Trilinear samples of an image at LPS points."""
    arr, m = vol
    p = np.atleast_2d(np.asarray(points_lps, dtype=float))
    ijk = (np.linalg.inv(m) @ np.c_[p, np.ones(len(p))].T)[:3]
    return ndimage.map_coordinates(arr, ijk[::-1], order=1, mode="nearest")


def _around(center, axes, half=1.5, n=3) -> np.ndarray:
    """A small n^3 cloud of points around ``center`` along the given unit axes."""
    c = np.asarray(center, dtype=float)
    t = np.linspace(-half, half, n)
    return np.array([c + a * axes[0] + b * axes[1] + g * axes[2] for a in t for b in t for g in t])


# ------------------------------------------------------------------ files and headers
def test_every_file_is_valid_dicom_of_one_fake_patient_and_study(demo_study, gt):
    files = sorted(demo_study.dicom_folder.rglob("*.dcm"))
    assert len(files) == sum(s["number_of_files"] for s in gt["series"]) == 19 * 3 + 24 + 2
    studies, patients = set(), set()
    for f in files:
        ds = pydicom.dcmread(f)  # raises on a missing preamble / file meta
        assert ds.preamble == b"\0" * 128
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SOPClassUID in (MR_STORAGE, DX_STORAGE)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        assert ds.pixel_array.max() <= 4095 and ds.BitsStored == 12
        studies.add(ds.StudyInstanceUID)
        patients.add((str(ds.PatientName), ds.PatientID))
    assert studies == {gt["study_instance_uid"]}
    assert patients == {("DEMO^BVN", "BVN-DEMO-0000")}


def test_mr_headers_describe_the_acquisitions(demo_study, gt):
    for role, desc, seq in (("T1", "SAG T1", "SE"), ("T2", "SAG T2", "SE"), ("STIR", "SAG STIR", "IR"),
                            ("AX_T2", "AX T2 L4-5", "SE")):
        s = _series(gt, role)
        ds = pydicom.dcmread(next((demo_study.folder / s["folder"]).glob("*.dcm")))
        assert ds.SOPClassUID == MR_STORAGE and ds.Modality == "MR"
        assert ds.SeriesDescription == desc and ds.SeriesInstanceUID == s["series_instance_uid"]
        assert seq in ds.ScanningSequence
        assert float(ds.RepetitionTime) > float(ds.EchoTime) > 0
        assert ("InversionTime" in ds) == (role == "STIR")
        assert float(ds.WindowWidth) > 0
        assert float(ds.SliceThickness) == pytest.approx(3.5 if role != "AX_T2" else 4.0)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(s["spacing"][2], abs=1e-4)
    te = {r: float(pydicom.dcmread(next((demo_study.folder / _series(gt, r)["folder"]).glob("*.dcm"))).EchoTime)
          for r in ("T1", "T2")}
    assert te["T1"] < 20 < te["T2"]  # T1: short TE; T2: long TE


def test_fluoroscopy_headers_carry_the_projection_geometry(demo_study, gt):
    for fl in gt["fluoroscopy"]:
        s = _series(gt, fl["role"])
        ds = pydicom.dcmread(next((demo_study.folder / s["folder"]).glob("*.dcm")))
        g = fl["geometry"]
        assert ds.SOPClassUID == DX_STORAGE and ds.Modality == "DX"
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert [float(v) for v in ds.ImagerPixelSpacing] == [g["detector_pixel_spacing_mm"]] * 2
        assert float(ds.DistanceSourceToDetector) == pytest.approx(1000.0)
        assert 700 <= float(ds.DistanceSourceToPatient) <= 750
        assert float(ds.EstimatedRadiographicMagnificationFactor) == pytest.approx(
            float(ds.DistanceSourceToDetector) / float(ds.DistanceSourceToPatient), rel=1e-5)
        assert ds.ViewPosition == fl["view_position"] and list(ds.PatientOrientation) == fl["patient_orientation"]
        assert "PixelSpacing" not in ds  # detector spacing only: lengths are "mm at detector"
    assert {fl["view_position"] for fl in gt["fluoroscopy"]} == {"AP", "LL"}


def test_the_importer_reads_the_study(demo_study, gt):
    from planner.imaging.importer import load_path
    from planner.imaging.volume import ProjectionImage

    result = load_path(demo_study.dicom_folder)
    assert set(result.images) == {s["series_instance_uid"] for s in gt["series"]}
    for fl in gt["fluoroscopy"]:
        img = result.images[fl["series_instance_uid"]]
        assert isinstance(img, ProjectionImage)
        assert img.measurement_scale().unit_label == "mm (magnification corrected)"


# ------------------------------------------------------------------ geometry against SimpleITK
def test_simpleitk_geometry_equals_the_ground_truth(demo_study, gt):
    for s in gt["series"]:
        series_id, img = _read_sitk(demo_study.folder / s["folder"])
        assert series_id == s["series_instance_uid"]
        assert list(img.GetSize()) == s["size"]
        np.testing.assert_allclose(img.GetSpacing(), s["spacing"], atol=1e-4)
        np.testing.assert_allclose(img.GetOrigin(), s["origin"], atol=1e-4)
        np.testing.assert_allclose(img.GetDirection(), s["direction"], atol=1e-4)


def test_sagittal_series_share_frame_and_slices_and_are_tilted(demo_study, gt):
    geo = {}
    for role in ("T1", "T2", "STIR"):
        s = _series(gt, role)
        headers = [pydicom.dcmread(f, stop_before_pixels=True)
                   for f in sorted((demo_study.folder / s["folder"]).glob("*.dcm"))]
        assert {h.FrameOfReferenceUID for h in headers} == {gt["frame_of_reference_uid"]}
        geo[role] = [(tuple(h.ImagePositionPatient), tuple(h.ImageOrientationPatient), tuple(h.PixelSpacing))
                     for h in headers]
    assert geo["T1"] == geo["T2"] == geo["STIR"]
    assert 15 <= len(geo["T1"]) <= 19
    d = np.array(_series(gt, "T1")["direction"]).reshape(3, 3)  # columns: row, column, slice directions
    normal = d[:, 2]
    assert abs(normal[0]) > 0.99  # sagittal
    # tilted off every scanner axis: the in-plane axes and the normal are not aligned with L, P or S
    for col in range(3):
        assert np.sort(np.abs(d[:, col]))[-2] > np.sin(np.radians(2.0)), d
    # both pedicles of every lumbar level lie inside the slab
    thick = len(geo["T1"]) * _series(gt, "T1")["spacing"][2]
    center = np.array(_series(gt, "T1")["origin"]) + d @ (np.array(_series(gt, "T1")["spacing"])
                                                         * (np.array(_series(gt, "T1")["size"]) - 1) / 2)
    for name in gt["levels"]:
        for side in ("left", "right"):
            p = np.array(gt["vertebrae"][name][f"pedicle_{side}_lps"])
            assert abs((p - center) @ normal) < thick / 2 - 1.0, (name, side)


def test_axial_stack_is_parallel_to_the_l4_l5_disc(gt):
    s = _series(gt, "AX_T2")
    normal = np.array(s["direction"]).reshape(3, 3)[:, 2]
    v = gt["vertebrae"]
    disc_axis = np.array(v["L4"]["inferior_endplate_lps"]) - np.array(v["L5"]["superior_endplate_lps"])
    disc_axis /= np.linalg.norm(disc_axis)
    assert np.degrees(np.arccos(abs(normal @ disc_axis))) < 3.0
    assert abs(normal[2]) < np.cos(np.radians(10.0))  # angled, not a plain axial
    disc = next(d for d in gt["discs"] if d["name"] == "L4/L5")
    origin = np.array(s["origin"])
    along = (np.array(disc["center_lps"]) - origin) @ normal
    assert 0.3 * s["size"][2] * s["spacing"][2] < along < 0.7 * s["size"][2] * s["spacing"][2]
    assert 20 <= s["size"][2] <= 30 and s["spacing"][2] == pytest.approx(4.0, abs=1e-4)


# ------------------------------------------------------------------ tissue and signal
def test_landmarks_lie_in_the_intended_tissue(gt):
    ph = Phantom()
    bone = [int(t) for t in BONE_TISSUES]
    for name in gt["levels"]:
        v = gt["vertebrae"][name]
        lab = lambda key: int(ph.labels_at(np.array([v[key]]))[0])  # noqa: E731
        assert lab("body_center_lps") == Tissue.MARROW, name
        assert lab("pedicle_left_lps") in bone and lab("pedicle_right_lps") in bone, name
        assert lab("canal_csf_lps") == Tissue.CSF, name
        c = np.array(v["body_center_lps"])
        for key in ("superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps", "anterior_wall_lps"):
            p = np.array(v[key])
            u = (p - c) / np.linalg.norm(p - c)
            inside, outside = ph.labels_at(np.array([p - 0.6 * u, p + 0.8 * u]))
            assert inside in bone, (name, key, Tissue(int(inside)).name)
            assert outside not in bone, (name, key, Tissue(int(outside)).name)
        # the canal lies behind the posterior wall
        axis_pa = np.array(v["anterior_wall_lps"]) - np.array(v["posterior_wall_lps"])
        assert (np.array(v["canal_csf_lps"]) - np.array(v["posterior_wall_lps"])) @ axis_pa < 0


def test_body_and_pedicle_sizes_are_anatomical(gt):
    v = gt["vertebrae"]
    lumbar = ["L1", "L2", "L3", "L4", "L5"]
    for name in lumbar:
        assert 40 <= v[name]["body_width_endplate_mm"] <= 50
        assert 32 <= v[name]["body_depth_endplate_mm"] <= 38
        assert 24 <= v[name]["body_height_rim_mm"] <= 28
    heights = [v[n]["body_height_rim_mm"] for n in ["T12"] + lumbar]
    assert heights == sorted(heights)  # growing caudally
    set_angles = PlanningSettings().pedicle_transverse_angle_deg
    assert {n: v[n]["pedicle_transverse_angle_deg"] for n in ("L3", "L4", "L5", "S1")} == \
        {"L3": 15.0, "L4": 20.0, "L5": 30.0, "S1": 39.0}
    for name in lumbar + ["S1"]:
        to_anterior = np.array(v[name]["anterior_wall_lps"]) - np.array(v[name]["posterior_wall_lps"])
        to_anterior /= np.linalg.norm(to_anterior)
        for side, medial in (("left", -1), ("right", 1)):
            ax = np.array(v[name][f"pedicle_axis_{side}"])
            # each pedicle axis runs anteriorly and medially at the level's transverse angle
            assert np.degrees(np.arccos(ax @ to_anterior)) == pytest.approx(set_angles[name], abs=0.5)
            assert np.sign(ax[0]) == medial
    assert 14 <= v["L5"]["pedicle_width_mm"] <= 18 and v["L5"]["pedicle_height_mm"] < v["L1"]["pedicle_height_mm"]
    for d in gt["discs"]:
        assert 8.0 <= d["height_mm"] <= 13.0, d


def _frame(gt, name):
    f = gt["vertebrae"][name]["frame"]
    return np.array(f["left"]), np.array(f["posterior"]), np.array(f["cranial"])


def test_modic_regions_have_the_signal_of_their_type(gt, mr):
    settings_low, settings_high = 0.8, 1.2
    for m in gt["modic"]:
        axes = _frame(gt, m["level"])
        band = _around(m["band_point_lps"], axes, half=1.5)
        ref = _around(m["reference_marrow_lps"], axes, half=1.5)
        r = {seq: _sample(mr[seq], band).mean() / _sample(mr[seq], ref).mean() for seq in ("T1", "T2", "STIR")}
        if m["modic_type"] == "1":  # T1 low, T2 high, STIR high (domain.md 2.1)
            assert r["T1"] < settings_low and r["T2"] > settings_high and r["STIR"] > settings_high, (m, r)
        else:  # type 2: T1 high, T2 iso to slightly high, STIR low
            assert r["T1"] > settings_high - 0.05 and r["STIR"] < settings_low and 0.95 < r["T2"] < 1.5, (m, r)
        assert m["grade"] == "B" and m["share_pct"] > 50


def test_normal_endplates_show_no_modic_signal(gt, mr):
    for name, which in (("L2", "inferior"), ("L3", "superior"), ("L3", "inferior"), ("L4", "superior")):
        v = gt["vertebrae"][name]
        axes = _frame(gt, name)
        ep = np.array(v[f"{which}_endplate_lps"])
        into = np.array(v["body_center_lps"]) - ep
        band = _around(ep + 3.5 * into / np.linalg.norm(into), axes, half=1.5)
        ref = _around(v["normal_marrow_lps"], axes, half=1.5)
        for seq in ("T1", "T2", "STIR"):
            ratio = _sample(mr[seq], band).mean() / _sample(mr[seq], ref).mean()
            assert 0.85 < ratio < 1.15, (name, which, seq, ratio)


def test_csf_disc_and_fat_follow_their_sequences(gt, mr):
    v = gt["vertebrae"]["L3"]
    axes = _frame(gt, "L3")
    csf = _around(v["canal_csf_lps"], axes, half=1.0)
    marrow = _around(v["body_center_lps"], axes, half=2.0)
    nucleus = _around(next(d for d in gt["discs"] if d["name"] == "L2/L3")["center_lps"], axes, half=1.0)
    s = {seq: {k: _sample(mr[seq], pts).mean() for k, pts in (("csf", csf), ("marrow", marrow), ("nuc", nucleus))}
         for seq in ("T1", "T2", "STIR")}
    assert s["T1"]["csf"] < 0.5 * s["T1"]["marrow"]  # CSF dark on T1, marrow bright
    assert s["T2"]["csf"] > 1.8 * s["T2"]["marrow"] and s["STIR"]["csf"] > 3 * s["STIR"]["marrow"]
    assert s["T2"]["nuc"] > 1.5 * s["T2"]["marrow"]  # hydrated nucleus bright on T2
    assert s["STIR"]["marrow"] < 0.4 * s["T1"]["marrow"]  # fat-suppressed marrow


# ------------------------------------------------------------------ fluoroscopy
def _spec(fl: dict) -> ProjectionSpec:
    g = fl["geometry"]
    return ProjectionSpec(fl["role"], "", 0, fl["view_position"], tuple(fl["patient_orientation"]),
                          np.array(g["source_lps"]), np.array(g["detector_origin_lps"]),
                          np.array(g["detector_column_axis"]), np.array(g["detector_row_axis"]),
                          g["rows"], g["columns"], g["detector_pixel_spacing_mm"],
                          g["distance_source_to_detector_mm"], g["distance_source_to_isocenter_mm"],
                          np.array(g["isocenter_lps"]), 0.0, 0)


def test_projection_matrix_matches_the_ray_geometry(gt):
    for fl in gt["fluoroscopy"]:
        P = np.array(fl["projection_matrix"])
        g = fl["geometry"]
        src = np.array(g["source_lps"])
        for name in gt["levels"]:
            x = np.array(gt["vertebrae"][name]["body_center_lps"])
            h = P @ np.append(x, 1.0)
            col, row = h[:2] / h[2]
            det = (np.array(g["detector_origin_lps"]) + col * g["detector_pixel_spacing_mm"] * np.array(
                g["detector_column_axis"]) + row * g["detector_pixel_spacing_mm"] * np.array(g["detector_row_axis"]))
            ray = (det - src) / np.linalg.norm(det - src)
            # the point lies on the ray from the source through that pixel
            assert np.linalg.norm(np.cross(x - src, ray)) < 1e-6
        iso = P @ np.append(g["isocenter_lps"], 1.0)
        np.testing.assert_allclose(iso[:2] / iso[2], [(g["columns"] - 1) / 2, (g["rows"] - 1) / 2], atol=1e-6)


def test_projected_vertebral_bodies_lie_on_bone(demo_study, gt):
    for fl in gt["fluoroscopy"]:
        s = _series(gt, fl["role"])
        img = pydicom.dcmread(next((demo_study.folder / s["folder"]).glob("*.dcm"))).pixel_array.astype(float)
        P = np.array(fl["projection_matrix"])

        def at(p, r=3):
            h = P @ np.append(p, 1.0)
            c, rr = np.rint(h[:2] / h[2]).astype(int)
            return img[rr - r:rr + r + 1, c - r:c + r + 1].mean(), (c, rr)

        checked = 0
        # on the lateral view the iliac wings overlap L4-S1 (the crest is at the L4/L5 level)
        names = ("L1", "L2", "L3", "L4", "L5") if fl["view_position"] == "AP" else ("T12", "L1", "L2", "L3")
        for name in names:
            v = gt["vertebrae"][name]
            val, (c, r) = at(np.array(v["body_center_lps"]))
            if not (10 <= c < img.shape[1] - 10 and 10 <= r < img.shape[0] - 10):
                continue
            left, post, cran = _frame(gt, name)
            c0 = np.array(v["body_center_lps"])
            if fl["view_position"] == "AP":  # soft tissue just beside the body, below the transverse processes
                refs = [c0 + side * (v["body_width_mm"] / 2 + 8.0) * left - 0.3 * v["body_height_rim_mm"] * cran
                        for side in (-1, 1)]
            else:  # lateral: soft tissue just in front of the body
                refs = [np.array(v["anterior_wall_lps"]) - 8.0 * post]
            for ref in refs:
                assert val > at(ref)[0], (fl["role"], name)
            checked += 1
        assert checked >= 3


# ------------------------------------------------------------------ plan, determinism, cache, CLI
def test_sample_plan_loads_with_the_true_landmarks_and_findings(demo_study, gt):
    from planner.eligibility import evaluate_eligibility
    from planner.plan import LANDMARK_NAMES

    plan = load_plan(demo_study.plan_path)
    assert [lv.name for lv in plan.levels] == gt["levels"]
    for lv in plan.levels:
        for key in LANDMARK_NAMES:
            np.testing.assert_allclose(getattr(lv.landmarks, key), gt["vertebrae"][lv.name][key], atol=1e-6)
    findings = {(lv.name, ep): getattr(lv, ep) for lv in plan.levels for ep in ("superior", "inferior")}
    for m in gt["modic"]:
        f = findings.pop((m["level"], m["endplate"]))
        assert (f.modic_type, f.grade, f.confirmed) == (m["modic_type"], m["grade"], True)
    assert all(f.modic_type == "none" for f in findings.values())
    assert [lv.name for lv in plan.levels if lv.treat] == ["L4", "L5"]
    assert {(plan.level(t.level_id).name, t.side) for t in plan.trajectories} == {("L4", "left"), ("L5", "right")}
    assert {r.role: r.series_instance_uid for r in plan.case.series} == \
        {s["role"]: s["series_instance_uid"] for s in gt["series"]}
    assert plan.case.study_instance_uid == gt["study_instance_uid"]
    assert evaluate_eligibility(plan).overall == "eligible"
    ph = Phantom()
    for t in plan.trajectories:
        lv = plan.level(t.level_id)
        assert ph.labels_at(np.array([t.target_lps]))[0] in (Tissue.MARROW, Tissue.MODIC1, Tissue.MODIC2)
        # on the midline, as finely as the sagittal slices resolve it: the body's sides are seen in slices
        # 3.5 mm apart, so its middle is known to half of that
        half_slice = 0.5 * max(s["slice_thickness_mm"] for s in gt["series"] if s["role"] in ("T1", "T2"))
        assert abs(t.target_lps[0] - gt["vertebrae"][lv.name]["body_center_lps"][0]) <= half_slice
    for t in gt["plan"]["trajectories"]:  # the introducer line reaches the skin of the back
        assert ph.labels_at(np.array([t["skin_lps"]]))[0] == Tissue.SKIN
        assert 40.0 < np.linalg.norm(np.subtract(t["skin_lps"], t["entry_lps"])) < 120.0


@pytest.mark.slow
def test_output_is_byte_identical_across_runs(demo_study, tmp_path):
    again = write_demo_study(tmp_path / "again")
    ours = sorted(p.relative_to(demo_study.folder) for p in demo_study.folder.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(again.folder) for p in again.folder.rglob("*") if p.is_file())
    assert ours == theirs
    _, mismatch, errors = filecmp.cmpfiles(demo_study.folder, again.folder, [str(p) for p in ours], shallow=False)
    assert mismatch == [] and errors == []


def rot_small() -> np.ndarray:
    """A rotation of a few degrees about an oblique axis."""
    from planner.demo.geometry import rot_x, rot_y, rot_z

    return rot_z(7.0) @ rot_y(-5.0) @ rot_x(4.0)


def test_labels_on_a_grid_equal_labels_at_its_points():
    from planner.imaging.volume import make_ijk_to_lps

    ph = Phantom()
    fr = ph.by_name["L4"].frame
    m = make_ijk_to_lps(fr.to_world([-30.0, -45.0, -30.0]), fr.rot @ rot_small(), (1.7, 1.9, 2.3))
    grid = ph.labels_on_grid(m, (30, 40, 35))
    k, j, i = np.mgrid[0:30, 0:40, 0:35]
    pts = (m @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)]))[:3].T
    np.testing.assert_array_equal(grid.ravel(), ph.labels_at(pts))
    assert {Tissue.CORTEX, Tissue.MARROW, Tissue.CSF, Tissue.ANNULUS, Tissue.EPIDURAL_FAT} <= set(np.unique(grid))


def test_ensure_demo_case_writes_once_and_survives_a_race(monkeypatch):
    import planner.demo as demo

    calls = []

    def fake_write(folder):
        calls.append(folder)
        Path(folder, "ground_truth.json").write_text(json.dumps({"ok": True}))

    monkeypatch.setattr(demo, "write_demo_study", fake_write)
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_demo_case())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    folder = results[0]
    assert load_ground_truth(folder) == {"ok": True}
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no temp folders left
    n = len(calls)
    assert ensure_demo_case() == folder and len(calls) == n  # reused, not written again


def test_demo_data_command(monkeypatch, tmp_path, demo_study, capsys):
    import planner.demo as demo
    from planner.cli import run_command

    written = []
    monkeypatch.setattr(demo, "write_demo_study", lambda out: written.append(Path(out)) or demo_study)
    assert run_command(["demo-data", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert written == [tmp_path / "new"] and "SAG STIR" in out and "sample.bvnplan" in out
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert run_command(["demo-data", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert run_command(["demo-data", str(tmp_path / "afile")]) == 2
    assert "not a folder" in capsys.readouterr().err
