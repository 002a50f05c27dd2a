"""Fluoroscopy guidance: the plan fitted to AP and lateral images from a few marks (against true
perspective C-arm projections), the zone and path overlay, and virtual projections of volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from planner.fluoro import FluoroFitError, fit_view, plan_overlays, virtual_projection
from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.plan import FluoroLandmark
from planner.trajectory import suggest_trajectory, vertebra_frame
from tests.test_trajectory import POSES, plan_with


class CArm:
    """A perspective C-arm: source, central axis, detector axes (col, row), principal point, pixel size."""

    def __init__(self, center_lps, axis, col_dir, row_dir, sod=620.0, sid=1000.0, pixel=0.2,
                 principal=(512.0, 512.0), tilt_deg=(0.0, 0.0, 0.0), offset_mm=(0.0, 0.0)):
        """``tilt_deg``: C-arm rotations about its own column axis, row axis and beam axis (roll)."""
        cam = np.column_stack([col_dir, row_dir, axis]).astype(float)
        rot = cam @ Rotation.from_euler("xyz", tilt_deg, degrees=True).as_matrix() @ cam.T
        self.axis = rot @ np.asarray(axis, float)
        self.col = rot @ np.asarray(col_dir, float)
        self.row = rot @ np.asarray(row_dir, float)
        # the central ray passes offset_mm (col, row) from the vertebra centre
        c = np.asarray(center_lps, float) + offset_mm[0] * self.col + offset_mm[1] * self.row
        self.source = c - sod * self.axis
        self.f = sid / pixel
        self.pp = np.asarray(principal, float)

    def __call__(self, pts):
        w = np.asarray(pts, float) - self.source
        z = w @ self.axis
        return self.pp + self.f * np.stack([w @ self.col / z, w @ self.row / z], axis=-1)


def _case(pose_index=0):
    plan = plan_with(POSES[pose_index], "L4")
    traj = suggest_trajectory(plan, plan.levels[0], "left")
    plan.trajectories.append(traj)
    return plan, traj, vertebra_frame(plan.levels[0])


def _marks(carm, frame, kinds):
    return {k: tuple(carm(getattr(frame, f"{k}_lps"))) for k in kinds}


@pytest.mark.parametrize("pose_index", [0, 1, 3])
def test_ap_fit_predicts_target_within_pixels(pose_index):
    plan, traj, f = _case(pose_index)
    # a true AP (beam along the vertebra's AP axis) with the image rolled 10 deg and the central ray
    # passing 7 mm from the vertebra centre
    carm = CArm(f.body_center_lps, -f.u, -f.l, -f.s, tilt_deg=(0.0, 0.0, 10.0), offset_mm=(6.0, -4.0))
    marks = _marks(carm, f, ["pedicle_left", "pedicle_right"])
    marks["spinous_process"] = tuple(carm(f.posterior_wall_lps - 30 * f.u - 18 * f.s))
    fit = fit_view(plan.levels[0], marks, "AP")
    assert fit.method == "similarity" and not fit.mirrored
    assert abs(fit.spinous_offset_mm) < 0.5  # spinous process on the midline
    target_err = np.linalg.norm(fit.project(traj.target_lps) - carm(traj.target_lps))
    # bound: the depth difference pedicle-to-target (~24 mm) over ~620 mm changes the magnification by
    # ~4%, applied to the target's distance from the central ray (~8 mm -> ~40 px): about 2 px
    assert target_err < 3.0, target_err
    ov = fit.overlay(plan, traj)
    assert np.linalg.norm(ov.target_px - carm(traj.target_lps)) < 3.0
    path_err = np.linalg.norm(ov.path_px - carm(np.array(_path(plan, traj))), axis=1)
    assert path_err.max() < 6.0  # the entry lies ~40 mm behind the vertebra centre
    # zone: a circle of the zone radius times the local magnification
    expected_r = np.linalg.norm(carm(traj.target_lps + 5.0 * f.l) - carm(traj.target_lps))
    assert ov.zone.axes_px[0] == pytest.approx(expected_r, rel=0.06)
    assert ov.zone.axes_px[0] == pytest.approx(ov.zone.axes_px[1], rel=1e-9)
    assert ov.zone.polygon_px.shape == (72, 2)


def test_out_of_plane_tilt_is_the_documented_limit():
    """Two AP marks cannot reveal a C-arm tilted out of the AP plane: the target (about 23 mm in front
    of the pedicles) then shifts by depth x tan(tilt) times the magnification, as documented."""
    plan, traj, f = _case(0)
    for tilt in (1.0, 2.0):
        carm = CArm(f.body_center_lps, -f.u, -f.l, -f.s, tilt_deg=(0.0, tilt, 0.0))
        fit = fit_view(plan.levels[0], _marks(carm, f, ["pedicle_left", "pedicle_right"]), "AP")
        err = np.linalg.norm(fit.project(traj.target_lps) - carm(traj.target_lps))
        depth = float((np.asarray(traj.target_lps) - f.pedicle_left_lps) @ f.u)
        predicted = depth * math.tan(math.radians(tilt)) * fit.px_per_mm
        assert err == pytest.approx(predicted, rel=0.25)


def test_lordotic_vertebra_on_patient_axis_c_arm():
    """A vertebra tilted 15 deg in the sagittal plane, imaged by a C-arm along the patient's AP axis:
    with the image's Patient Orientation the fit projects along that axis and stays on target; the
    'true AP of the vertebra' assumption would be off by the tilt."""
    from tests.test_trajectory import Pose

    usual = POSES[0].rot
    tilt = Rotation.from_euler("x", 15, degrees=True).as_matrix()
    pose = Pose(tilt @ usual, np.array([0.0, -20.0, 100.0]))
    plan = plan_with(pose, "L5")
    traj = suggest_trajectory(plan, plan.levels[0], "left")
    f = vertebra_frame(plan.levels[0])
    carm = CArm(f.body_center_lps, [0, 1, 0], [1, 0, 0], [0, 0, -1], offset_mm=(3.0, 5.0))
    marks = _marks(carm, f, ["pedicle_left", "pedicle_right"])
    fit = fit_view(plan.levels[0], marks, "AP", orientation=("L", "F"))
    assert fit.basis_kind == "patient"
    assert np.linalg.norm(fit.project(traj.target_lps) - carm(traj.target_lps)) < 3.0
    true_ap = fit_view(plan.levels[0], marks, "AP", basis="vertebra")
    assert np.linalg.norm(true_ap.project(traj.target_lps) - carm(traj.target_lps)) > 10.0


def test_image_overlays_reads_the_image_header():
    from planner.imaging.volume import ImageInfo as Info
    from planner.imaging.volume import ProjectionGeometry, ProjectionImage

    plan, traj, f = _case(0)
    carm = CArm(f.body_center_lps, [0, 1, 0], [1, 0, 0], [0, 0, -1])
    img = ProjectionImage(np.zeros((1024, 1024), np.uint16),
                          ProjectionGeometry(view_position="AP", patient_orientation=("L", "F")),
                          Info(modality="DX", sop_instance_uids=["9.8.7"]))
    for kind in ("pedicle_left", "pedicle_right"):
        plan.fluoro_landmarks.append(FluoroLandmark(sop_instance_uid="9.8.7", level_id=plan.levels[0].id, kind=kind,
                                                    point_px=tuple(carm(getattr(f, f"{kind}_lps")))))
    from planner.fluoro import image_overlays

    res = image_overlays(plan, img, plan.levels[0].id)
    assert res.fit.view == "AP" and res.fit.basis_kind == "patient"
    assert np.linalg.norm(res.overlays[0].target_px - carm(traj.target_lps)) < 3.0


def _path(plan, traj):
    from planner.trajectory import path_polyline
    return path_polyline(traj, plan)


@pytest.mark.parametrize("pose_index", [0, 2])
def test_lateral_fit_predicts_target_within_pixels(pose_index):
    plan, traj, f = _case(pose_index)
    carm = CArm(f.body_center_lps, f.l, -f.u, -f.s, tilt_deg=(-1.0, 2.0, -6.0), offset_mm=(-5.0, 7.0))
    marks = _marks(carm, f, ["posterior_wall", "anterior_wall"])
    fit = fit_view(plan.levels[0], marks, orientation=())
    assert fit.view == "LAT" and not fit.mirrored
    assert any("handedness assumed" in w for w in fit.warnings)
    err = np.linalg.norm(fit.project(traj.target_lps) - carm(traj.target_lps))
    assert err < 2.0, err
    # four marks: an affine fit, still on target
    marks4 = _marks(carm, f, ["posterior_wall", "anterior_wall", "superior_endplate", "inferior_endplate"])
    fit4 = fit_view(plan.levels[0], marks4, "LAT")
    assert fit4.method == "affine"
    assert np.linalg.norm(fit4.project(traj.target_lps) - carm(traj.target_lps)) < 2.0
    assert fit4.rms_px < 2.0


def test_mirrored_lateral_is_detected():
    plan, traj, f = _case(1)
    # seen from the other side: anterior on the viewer's right
    carm = CArm(f.body_center_lps, -f.l, f.u, -f.s, tilt_deg=(0.0, 1.0, 4.0))
    marks = _marks(carm, f, ["posterior_wall", "anterior_wall", "superior_endplate"])
    fit = fit_view(plan.levels[0], marks, "LAT", method="similarity")
    assert fit.mirrored
    assert np.linalg.norm(fit.project(traj.target_lps) - carm(traj.target_lps)) < 2.0
    # two marks only: the Patient Orientation decides (columns toward anterior, rows toward the feet);
    # the letters name patient axes, so use the vertebra in the usual orientation
    plan, traj, f = _case(0)
    carm = CArm(f.body_center_lps, -f.l, f.u, -f.s, tilt_deg=(0.0, 1.0, 4.0))
    two = _marks(carm, f, ["posterior_wall", "anterior_wall"])
    fit2 = fit_view(plan.levels[0], two, "LAT", orientation=("A", "F"), basis="vertebra")
    assert fit2.mirrored and not fit2.warnings
    assert np.linalg.norm(fit2.project(traj.target_lps) - carm(traj.target_lps)) < 2.0
    # by default the orientation's own axes are used (no handedness question)
    fit3 = fit_view(plan.levels[0], two, "LAT", orientation=("A", "F"))
    assert fit3.basis_kind == "patient" and not fit3.mirrored
    assert np.linalg.norm(fit3.project(traj.target_lps) - carm(traj.target_lps)) < 2.0


def test_rotated_vertebra_reported_on_ap():
    plan, traj, f = _case(0)
    carm = CArm(f.body_center_lps, -f.u, -f.l, -f.s)
    marks = _marks(carm, f, ["pedicle_left", "pedicle_right"])
    marks["spinous_process"] = tuple(carm(f.posterior_wall_lps - 30 * f.u - 18 * f.s - 6.0 * f.l))  # 6 mm left
    fit = fit_view(plan.levels[0], marks)
    assert fit.spinous_offset_mm == pytest.approx(6.0 * 1.0, abs=0.8)  # magnification differs at that depth
    assert any("rotated" in w and "left" in w for w in fit.warnings)


def test_missing_marks_are_named():
    plan, traj, f = _case(0)
    with pytest.raises(FluoroFitError, match="pedicle right"):
        fit_view(plan.levels[0], {"pedicle_left": (10, 10), "spinous_process": (5, 5)}, "AP")
    with pytest.raises(FluoroFitError, match="anterior wall"):
        fit_view(plan.levels[0], {"posterior_wall": (10, 10)}, "LAT")


def test_plan_overlays_from_plan_marks():
    plan, traj, f = _case(0)
    carm = CArm(f.body_center_lps, f.l, -f.u, -f.s)
    for kind in ("posterior_wall", "anterior_wall"):
        plan.fluoro_landmarks.append(FluoroLandmark(sop_instance_uid="1.2.3", level_id=plan.levels[0].id, kind=kind,
                                                    point_px=tuple(carm(getattr(f, f"{kind}_lps")))))
    res = plan_overlays(plan, "1.2.3", plan.levels[0].id)
    assert res.fit.view == "LAT" and len(res.overlays) == 1
    assert np.linalg.norm(res.overlays[0].target_px - carm(traj.target_lps)) < 2.0
    assert res.overlays[0].bend_px is not None


# ----------------------------------------------------------------------------- virtual projection
def _sphere_volume(direction, spacing, shape_ijk, origin, center_lps, modality="CT", radius=4.0):
    m = make_ijk_to_lps(origin, direction, spacing)
    ni, nj, nk = shape_ijk
    background = -1000.0 if modality == "CT" else 0.0
    vol = Volume(np.full((nk, nj, ni), background, np.float32), m, ImageInfo(modality=modality))
    ijk = np.indices((ni, nj, nk)).reshape(3, -1).T.astype(float)
    lps = vol.ijk_to_world(ijk)
    inside = np.linalg.norm(lps - center_lps, axis=1) <= radius
    idx = ijk[inside].astype(int)
    vol.array[idx[:, 2], idx[:, 1], idx[:, 0]] = 1000.0
    return vol


SAGITTAL = np.column_stack([[0, 1, 0], [0, 0, -1], [1, 0, 0]]).astype(float)  # i -> P, j -> F, k -> L


OBLIQUE = Rotation.from_euler("xyz", [10, -15, 20], degrees=True).as_matrix()


@pytest.mark.parametrize("direction", [np.eye(3), SAGITTAL, OBLIQUE])
@pytest.mark.parametrize("view", ["AP", "LAT"])
def test_virtual_projection_maps_lps_to_pixels(direction, view):
    center = np.array([12.0, -20.0, 35.0])
    half = np.asarray(direction) @ (np.array([1.0, 1.2, 1.5]) * (np.array([60, 50, 44]) - 1) / 2)
    vol = _sphere_volume(direction, (1.0, 1.2, 1.5), (60, 50, 44), center - half + 2.0, center)
    img, proj = virtual_projection(vol, view)
    assert img.shape == proj.shape
    w = np.clip(img - np.median(img), 0, None)
    rows, cols = np.indices(img.shape)
    centroid = np.array([(w * cols).sum(), (w * rows).sum()]) / w.sum()  # (col, row)
    assert np.linalg.norm(proj.to_px(center) - centroid) <= 0.5
    # orientation: columns toward the patient's left (AP) or posterior (LAT), rows toward the feet
    step = proj.to_px(center + np.array([1.0, 0, 0] if view == "AP" else [0, 1.0, 0])) - proj.to_px(center)
    assert step[0] > 0 and abs(step[1]) < 1e-9
    down = proj.to_px(center - np.array([0, 0, 1.0])) - proj.to_px(center)
    assert down[1] > 0 and abs(down[0]) < 1e-9


def test_virtual_projection_modes_and_plan_overlay():
    plan, traj, f = _case(0)
    center = np.asarray(traj.target_lps)
    vol = _sphere_volume(np.eye(3), (1.0, 1.0, 1.0), (60, 60, 60), center - 30.0, center, modality="MR")
    img_mip, proj = virtual_projection(vol, "AP", plan)
    assert img_mip.max() == pytest.approx(1000.0)
    img_mean, _ = virtual_projection(vol, "AP", mode="mean")
    assert 0 < img_mean.max() < 1000.0
    assert len(proj.overlays) == 1
    ov = proj.overlays[0]
    assert np.linalg.norm(ov.target_px - proj.to_px(center)) < 1e-9
    assert ov.zone.axes_px[0] == pytest.approx(5.0)  # 1 mm pixels
    ct = _sphere_volume(np.eye(3), (1.0, 1.0, 1.0), (40, 40, 40), center - 20.0, center)
    drr, _ = virtual_projection(ct, "LAT")
    assert drr.min() == pytest.approx(0.0) and drr.max() > 0  # air contributes nothing
    slab, _ = virtual_projection(ct, "LAT", slab_mm=4.0, slab_center_lps=center + [15.0, 0, 0])
    assert slab.max() == pytest.approx(0.0, abs=1e-3)  # the slab misses the sphere
    with pytest.raises(ValueError):
        virtual_projection(ct, "OBLIQUE")


# ----------------------------------------------------------------------------- demo case
def test_demo_fluoro_marks_project_target(demo_study):
    _demo_fluoro_check(demo_study)


def _demo_fluoro_check(demo):
    from planner.storage import load_plan

    plan = load_plan(demo.plan_path)
    views = {"FLUORO_AP": ("AP", ["pedicle_left", "pedicle_right"]),
             "FLUORO_LAT": ("LAT", ["posterior_wall", "anterior_wall"])}
    errors = {}
    for entry in demo.ground_truth["fluoroscopy"]:
        view, kinds = views[entry["role"]]
        P = np.asarray(entry["projection_matrix"], float)

        def proj(x):
            h = P @ np.append(np.asarray(x, float), 1.0)
            return h[:2] / h[2]

        for traj in plan.trajectories:
            level = plan.level(traj.level_id)
            f = vertebra_frame(level)
            # the physician marks the true landmark projections
            marks = {k: tuple(proj(getattr(f, f"{k}_lps"))) for k in kinds}
            fit = fit_view(level, marks, view, orientation=tuple(entry["patient_orientation"]))
            assert not fit.mirrored
            err = float(np.linalg.norm(fit.project(traj.target_lps) - proj(traj.target_lps)))
            errors[(view, level.name)] = err
            ov = fit.overlay(plan, traj)
            assert np.linalg.norm(ov.target_px - proj(traj.target_lps)) == pytest.approx(err)
    assert errors
    print("demo target errors (px):", {k: round(v, 2) for k, v in errors.items()})
    assert max(errors.values()) < 4.0, errors  # a few pixels (0.4 mm detector pixels)
