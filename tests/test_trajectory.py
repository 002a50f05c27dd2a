"""Trajectory geometry: vertebra frame, path model (arc), suggestions, skin entry point.

Expected values are derived by hand in the vertebra's own frame (a box vertebra with known
landmarks), then everything is rotated and moved by random rigid transforms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.plan import Landmarks, Level, Plan, Trajectory, TrajectoryParams
from planner.settings import PlanningSettings
from planner.trajectory import (
    LandmarkError,
    PathError,
    ablation_zone,
    instrument_segments,
    path_lengths,
    path_polyline,
    skin_entry_point,
    suggest_bipedicular,
    suggest_trajectory,
    trajectory_path,
    vertebra_frame,
)

ROOT_DIR = Path(__file__).resolve().parents[1]
DEPTH, HEIGHT = 36.0, 26.0
#: Local coordinates (a along u, b along s, c along l); the patient's left is -l.
LOCAL = {
    "body_center_lps": (0.0, 0.0, 0.0),
    "posterior_wall_lps": (-DEPTH / 2, 0.0, 0.0),
    "anterior_wall_lps": (DEPTH / 2, 0.0, 0.0),
    "inferior_endplate_lps": (0.0, -HEIGHT / 2, 0.0),
    "superior_endplate_lps": (0.0, HEIGHT / 2, 0.0),
    "pedicle_left_lps": (-DEPTH / 2 - 8.0, 4.0, -13.0),
    "pedicle_right_lps": (-DEPTH / 2 - 8.0, 4.0, 13.0),
}


class Pose:
    """A rigid placement of the local (u, s, l) frame in LPS."""

    def __init__(self, rot: np.ndarray, shift: np.ndarray) -> None:
        self.rot = rot
        self.shift = shift

    def __call__(self, local) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.rot @ np.asarray(local, float) + self.shift)  # type: ignore[return-value]

    def vec(self, local) -> np.ndarray:
        return self.rot @ np.asarray(local, float)


def poses(n: int = 6, seed: int = 7) -> list[Pose]:
    # the usual patient orientation first: u = anterior (-y), s = superior (+z), l = u x s (-x, right)
    usual = np.column_stack([[0, -1, 0], [0, 0, 1], [-1, 0, 0]]).astype(float)
    out = [Pose(usual, np.array([3.0, -20.0, 140.0]))]
    rots = Rotation.random(n - 1, random_state=seed).as_matrix()
    rng = np.random.default_rng(seed)
    out += [Pose(r, rng.uniform(-200, 200, 3)) for r in rots]
    return out


POSES = poses()


def box_level(pose: Pose, name: str = "L4") -> Level:
    return Level(name=name, treat=True, landmarks=Landmarks(**{k: pose(v) for k, v in LOCAL.items()}))


def plan_with(pose: Pose, name: str = "L4") -> Plan:
    plan = Plan()
    plan.levels.append(box_level(pose, name))
    return plan


@pytest.mark.parametrize("pose", POSES)
def test_frame_axes_and_sizes(pose):
    f = vertebra_frame(box_level(pose))
    np.testing.assert_allclose(f.u, pose.vec((1, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(f.s, pose.vec((0, 1, 0)), atol=1e-12)
    np.testing.assert_allclose(f.l, pose.vec((0, 0, 1)), atol=1e-12)
    assert f.depth_mm == pytest.approx(DEPTH)
    assert f.height_mm == pytest.approx(HEIGHT)
    np.testing.assert_allclose(f.origin_lps, pose((0, 0, 0)), atol=1e-9)
    # medial direction points from each pedicle toward the midline
    np.testing.assert_allclose(f.medial_direction("left"), pose.vec((0, 0, 1)), atol=1e-12)
    np.testing.assert_allclose(f.medial_direction("right"), pose.vec((0, 0, -1)), atol=1e-12)


def test_frame_usual_orientation_l_points_right():
    f = vertebra_frame(box_level(POSES[0]))
    np.testing.assert_allclose(f.u, [0, -1, 0])
    np.testing.assert_allclose(f.s, [0, 0, 1])
    np.testing.assert_allclose(f.l, [-1, 0, 0])  # u x s: the patient's right in LPS


def test_frame_s_is_made_orthogonal_to_u():
    """A tilted endplate line: s keeps only its part orthogonal to u; height is measured along s."""
    lm = {k: v for k, v in LOCAL.items()}
    lm["superior_endplate_lps"] = (4.0, HEIGHT / 2, 0.0)
    lm["inferior_endplate_lps"] = (-2.0, -HEIGHT / 2, 0.0)
    level = Level(name="L5", landmarks=Landmarks(**lm))
    f = vertebra_frame(level)
    np.testing.assert_allclose(f.s, [0, 1, 0], atol=1e-12)
    assert f.height_mm == pytest.approx(HEIGHT)


def test_frame_missing_landmarks_named():
    level = Level(name="L3", landmarks=Landmarks(body_center_lps=(0, 0, 0), posterior_wall_lps=(0, 10, 0)))
    with pytest.raises(LandmarkError) as exc:
        vertebra_frame(level)
    msg = str(exc.value)
    assert "L3" in msg and "anterior wall" in msg and "superior endplate" in msg and "inferior endplate" in msg
    degenerate = Level(name="L3", landmarks=Landmarks(**{**{k: POSES[0](v) for k, v in LOCAL.items()},
                                                         "anterior_wall_lps": POSES[0](LOCAL["posterior_wall_lps"])}))
    with pytest.raises(LandmarkError, match="coincide"):
        vertebra_frame(degenerate)


def test_frame_side_needs_pedicle():
    lm = {k: POSES[0](v) for k, v in LOCAL.items() if k != "pedicle_right_lps"}
    level = Level(name="L4", landmarks=Landmarks(**lm))
    plan = Plan(levels=[level])
    with pytest.raises(LandmarkError, match="right pedicle"):
        suggest_trajectory(plan, level, "right")
    suggest_trajectory(plan, level, "left")  # the other side works


# ----------------------------------------------------------------------------------- arc model
def _local_d(theta_deg: float, phi_deg: float, side: str = "left") -> np.ndarray:
    th, ph = math.radians(theta_deg), math.radians(phi_deg)
    medial_c = 1.0 if side == "left" else -1.0
    return np.array([math.cos(ph) * math.cos(th), math.sin(ph), medial_c * math.cos(ph) * math.sin(th)])


def _curved_case(pose: Pose, alpha_deg: float, straight_mm: float, radius: float = 20.0):
    """A curved trajectory built in the local frame from a known arc angle and straight extension."""
    d = _local_d(22.0, 6.0)
    ped = np.array(LOCAL["pedicle_left_lps"])
    entry = ped - 12.0 * d
    bend = ped + 9.0 * d
    # bend the curve toward the midline (+c) and slightly caudally, orthogonal to d
    toward = np.array([0.0, -0.3, 1.0])
    n = toward - (toward @ d) * d
    n /= np.linalg.norm(n)
    a = math.radians(alpha_deg)
    arc_end = bend + radius * math.sin(a) * d + radius * (1 - math.cos(a)) * n
    tangent = math.cos(a) * d + math.sin(a) * n
    target = arc_end + straight_mm * tangent
    params = TrajectoryParams(cannula_curve_radius_mm=radius)
    plan = plan_with(pose)
    traj = Trajectory(level_id=plan.levels[0].id, side="left", entry_lps=pose(entry), bend_lps=pose(bend),
                      target_lps=pose(target), params=params)
    plan.trajectories.append(traj)
    expected = {"introducer": 21.0, "cannula": radius * a, "probe": straight_mm,
                "arc_end": pose(arc_end), "center": pose(bend + radius * n), "d": pose.vec(d)}
    return plan, traj, expected


@pytest.mark.parametrize("pose", POSES)
@pytest.mark.parametrize("alpha_deg,straight_mm", [(35.0, 8.0), (60.0, 0.0), (15.0, 20.0)])
def test_curved_path_lengths_and_shape(pose, alpha_deg, straight_mm):
    plan, traj, exp = _curved_case(pose, alpha_deg, straight_mm)
    path = trajectory_path(traj, plan)
    assert path.kind == "curved" and path.reachable
    assert path.introducer_mm == pytest.approx(exp["introducer"], abs=1e-6)
    assert path.cannula_mm == pytest.approx(exp["cannula"], abs=1e-6)
    assert path.probe_mm == pytest.approx(exp["probe"], abs=1e-6)
    lengths = path_lengths(traj, plan)
    assert lengths["total_mm"] == pytest.approx(exp["introducer"] + exp["cannula"] + exp["probe"], abs=1e-6)
    np.testing.assert_allclose(path.arc.end_lps, exp["arc_end"], atol=1e-6)
    np.testing.assert_allclose(path.arc.center_lps, exp["center"], atol=1e-6)
    # the sampled arc: every point on the circle, first point at the bend, fine sampling
    segs = {s.name: s for s in instrument_segments(plan, traj)}
    arc = segs["cannula"].points_lps
    np.testing.assert_allclose(np.linalg.norm(arc - exp["center"], axis=1), 20.0, atol=1e-9)
    np.testing.assert_allclose(arc[0], traj.bend_lps, atol=1e-9)
    assert np.max(np.linalg.norm(np.diff(arc, axis=0), axis=1)) <= 0.5 + 1e-9
    # tangent continuity at the bend: the first arc step is along the introducer (angle -> 0)
    step0 = (arc[1] - arc[0]) / np.linalg.norm(arc[1] - arc[0])
    half_step_angle = math.degrees(math.asin(np.linalg.norm(arc[1] - arc[0]) / (2 * 20.0)))  # chord
    assert math.degrees(math.acos(min(1.0, step0 @ exp["d"]))) == pytest.approx(half_step_angle, abs=1e-6)
    # the polyline ends at the target; the probe continues the arc's end tangent
    poly = path_polyline(traj, plan)
    np.testing.assert_allclose(poly[0], traj.entry_lps, atol=1e-9)
    np.testing.assert_allclose(poly[-1], traj.target_lps, atol=1e-9)
    if straight_mm > 0:
        probe = segs["probe"].points_lps
        pdir = (probe[1] - probe[0]) / np.linalg.norm(probe[1] - probe[0])
        np.testing.assert_allclose(pdir, path.arc.end_tangent, atol=1e-9)
        np.testing.assert_allclose(probe[0], arc[-1], atol=1e-9)
        assert segs["probe"].diameter_mm == traj.params.probe_diameter_mm
    else:
        assert "probe" not in segs
    total_poly = float(np.linalg.norm(np.diff(poly, axis=0), axis=1).sum())
    assert total_poly == pytest.approx(lengths["total_mm"], abs=0.05)  # sampled arc is a chord polyline
    assert segs["introducer"].diameter_mm == traj.params.introducer_diameter_mm
    assert segs["cannula"].diameter_mm == traj.params.cannula_diameter_mm


def test_unreachable_target_draws_fitted_arc():
    """A target needing a tighter curve than the cannula's radius: single fitted arc, not reachable."""
    plan, traj, exp = _curved_case(POSES[2], 80.0, 0.0, radius=10.0)
    traj.params.cannula_curve_radius_mm = 25.0  # stiffer cannula than the drawn curve
    path = trajectory_path(traj, plan)
    assert not path.reachable
    assert path.fit_radius_mm == pytest.approx(10.0, abs=1e-9)
    assert path.cannula_mm == pytest.approx(10.0 * math.radians(80.0), abs=1e-9)
    np.testing.assert_allclose(path.arc.end_lps, traj.target_lps, atol=1e-9)
    assert path.probe_mm == pytest.approx(0.0, abs=1e-9)


def test_straight_path_introducer_ends_past_posterior_wall():
    pose = POSES[3]
    plan = plan_with(pose)
    d = _local_d(20.0, -4.0)
    ped = np.array(LOCAL["pedicle_left_lps"])
    entry, target = ped - 10 * d, ped + 30 * d
    traj = Trajectory(level_id=plan.levels[0].id, side="left", entry_lps=pose(entry), target_lps=pose(target),
                      params=TrajectoryParams(curved=False))
    path = trajectory_path(traj, plan)
    assert path.kind == "straight" and path.bend_lps is None
    # posterior wall plane at a = -18; the introducer stops introducer_past_wall_mm (2 mm) in front of it
    t_wall = ((-DEPTH / 2 + 2.0) - entry[0]) / d[0]
    assert path.introducer_mm == pytest.approx(t_wall, abs=1e-9)
    assert path.total_mm == pytest.approx(40.0, abs=1e-9)
    names = [s.name for s in instrument_segments(plan, traj)]
    assert names == ["introducer", "probe"]


def test_entry_equal_bend_is_a_clear_error():
    plan = plan_with(POSES[0])
    traj = Trajectory(level_id=plan.levels[0].id, entry_lps=(1, 2, 3), bend_lps=(1, 2, 3), target_lps=(0, 0, 0))
    with pytest.raises(PathError, match="coincide"):
        trajectory_path(traj, plan)


def test_ablation_zone_center_and_radius():
    traj = Trajectory(level_id="x", entry_lps=(0, 50, 0), target_lps=(1, 2, 3),
                      params=TrajectoryParams(zone_diameter_mm=12.0))
    center, radius = ablation_zone(traj)
    np.testing.assert_allclose(center, [1, 2, 3])
    assert radius == 6.0
    assert ablation_zone(traj).radius_mm == 6.0


# ------------------------------------------------------------------------------------ suggestion
@pytest.mark.parametrize("pose", POSES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_suggestion_follows_settings(pose, side):
    plan = plan_with(pose, "L4")
    st = plan.settings
    traj = suggest_trajectory(plan, plan.levels[0].id, side)
    f = vertebra_frame(plan.levels[0])
    loc = lambda p: f.to_local(p)  # noqa: E731
    t = loc(traj.target_lps)
    # depth: 35% of 36 mm = 12.6 mm leaves 7.6 mm canal margin < 10 mm: moved to 15 mm (the margin holds)
    assert t[0] == pytest.approx(-DEPTH / 2 + st.canal_margin_mm + st.zone_diameter_mm / 2, abs=1e-9)
    assert "canal margin" in traj.label
    # height: L4 foramen nearer the upper rim (setting, 60% of the body height above the inferior endplate)
    assert t[1] == pytest.approx((st.target_height_pct_by_level["L4"] / 100 - 0.5) * HEIGHT, abs=1e-9)
    assert t[1] > 0
    assert t[2] == pytest.approx(0.0, abs=1e-9)  # midline
    # bend: on the pedicle axis at the L4 angles (20 deg medial, 0 sagittal), 2 mm past the posterior wall
    ped = loc(getattr(plan.levels[0].landmarks, f"pedicle_{side}_lps"))
    b = loc(traj.bend_lps)
    assert b[0] == pytest.approx(-DEPTH / 2 + st.introducer_past_wall_mm, abs=1e-9)
    d = (b - ped) / np.linalg.norm(b - ped)
    medial_c = 1.0 if side == "left" else -1.0
    np.testing.assert_allclose(d, [math.cos(math.radians(20)), 0.0, medial_c * math.sin(math.radians(20))], atol=1e-9)
    # entry on the same axis, as far behind the pedicle centre as the bend's wall crossing is in front
    e = loc(traj.entry_lps)
    np.testing.assert_allclose((ped - e) / np.linalg.norm(ped - e), d, atol=1e-9)
    assert np.linalg.norm(ped - e) == pytest.approx(8.0 / d[0], abs=1e-9)
    assert traj.params.curved and traj.side == side
    assert trajectory_path(traj, plan).reachable


@pytest.mark.parametrize("name, above", [("L3", True), ("L4", True), ("L5", False), ("S1", False)])
def test_target_height_on_the_side_of_the_foramen(name, above):
    """domain.md 3 (Tzika 2021): foramina nearer the upper rim T10-L4, nearer the lower rim at L5."""
    plan = plan_with(POSES[2], name)
    f = vertebra_frame(plan.levels[0])
    t = f.to_local(suggest_trajectory(plan, plan.levels[0], "left").target_lps)
    assert (t[1] > 1.0) if above else (t[1] < -1.0)
    plan.settings.target_height_rule = "fixed"  # the mid-height rule of domain.md 10
    t = f.to_local(suggest_trajectory(plan, plan.levels[0], "left").target_lps)
    assert t[1] == pytest.approx(0.0, abs=1e-9)


def test_target_placement_explains_the_depth_and_margin_conflict():
    from planner.trajectory import place_target

    plan = plan_with(POSES[0], "L4")
    st = plan.settings
    f = vertebra_frame(plan.levels[0])
    # from the zone edge: 10 + 5 = 15 mm = 42% of 36 mm, deeper than 40%, inside the 30-50% window
    p = place_target(f, st)
    assert p.moved and not p.conflict_unresolvable and p.margin_met
    assert p.depth_needed_mm == pytest.approx(15.0) and p.depth_pct == pytest.approx(100 * 15 / DEPTH)
    assert "zone edge" in p.conflict and "42%" in p.conflict and f"{st.target_depth_pct:g}% depth setting" in p.conflict
    # from the zone centre: 10 mm < 35% of 36 mm = 12.6 mm, no conflict, the target stays at the setting
    st.canal_margin_from = "zone_centre"
    p = place_target(f, st)
    assert not p.moved and p.conflict == "" and p.depth_pct == pytest.approx(st.target_depth_pct)
    assert p.canal_margin_mm == pytest.approx(st.target_depth_pct / 100 * DEPTH)
    # a 20 mm margin from the edge needs 25 mm = 69%: beyond the window, both cannot be met
    st.canal_margin_from = "zone_edge"
    p = place_target(f, st, canal_margin_mm=20.0)
    assert p.conflict_unresolvable and "cannot both be met" in p.conflict and "30-50%" in p.conflict
    assert p.margin_met  # the margin (a contraindication) wins over the depth window
    # a 30 mm margin does not fit inside a 36 mm body with a 10 mm zone
    p = place_target(f, st, canal_margin_mm=30.0)
    assert p.conflict_unresolvable and not p.margin_met and "anterior wall" in p.conflict


def test_the_depth_and_margin_conflict_is_not_claimed_where_the_image_margin_holds():
    """The rule on the landmarks (a 10 mm margin from the zone edge needs the zone centre 15 mm = 42% in front of
    the posterior wall) against a target at the 35% setting: with the margin from the landmarks (7.6 mm) the
    panel says the two cannot both hold; with 11.7 mm measured on the image (the canal lies further behind the
    wall landmark: example_ct's L1) that sentence would contradict the two numbers beside it, and is left out.
    A margin measured on the image that falls short keeps it."""
    from planner.trajectory import MARGIN_MEASURED, depth_and_margin

    plan = plan_with(POSES[0], "L4")
    plan.settings.canal_margin_from = "zone_centre"  # no conflict: the target stays at the 35% setting
    traj = suggest_trajectory(plan, plan.levels[0], "left")
    plan.settings.canal_margin_from = "zone_edge"
    on_landmarks = depth_and_margin(plan, traj)
    assert on_landmarks.depth_pct == pytest.approx(35.0, abs=0.5) and not on_landmarks.margin_met
    assert "cannot both hold" in on_landmarks.conflict and "42%" in on_landmarks.conflict
    on_image = depth_and_margin(plan, traj, canal_margin_mm=11.7, margin_basis=MARGIN_MEASURED)
    assert on_image.margin_met and on_image.conflict == ""
    assert "35%" in on_image.values_line() and "11.7 mm" in on_image.values_line()
    short = depth_and_margin(plan, traj, canal_margin_mm=8.0, margin_basis=MARGIN_MEASURED)
    assert not short.margin_met and "cannot both hold" in short.conflict


def test_suggestion_turns_axis_when_cannula_cannot_reach():
    pose = POSES[1]
    plan = plan_with(pose, "L4")
    plan.settings.cannula_curve_radius_mm = 60.0  # a stiff curve cannot turn 20 deg to the midline here
    traj = suggest_trajectory(plan, plan.levels[0], "left")
    path = trajectory_path(traj, plan)
    assert path.reachable
    assert "axis turned" in traj.label
    assert traj.params.cannula_curve_radius_mm == 60.0


def test_suggestion_straight_uses_pedicle_to_target_line():
    plan = plan_with(POSES[4], "L5")
    traj = suggest_trajectory(plan, "L5", "right", curved=False)
    assert traj.bend_lps is None and not traj.params.curved
    ped = np.array(plan.levels[0].landmarks.pedicle_right_lps)
    e, t = np.array(traj.entry_lps), np.array(traj.target_lps)
    # the pedicle centre lies on the entry-target line
    dist = np.linalg.norm(np.cross(t - e, ped - e)) / np.linalg.norm(t - e)
    assert dist == pytest.approx(0.0, abs=1e-9)


def test_bipedicular_tips_spaced_by_setting():
    pose = POSES[5]
    plan = plan_with(pose, "L5")
    plan.settings.bipedicular_tip_spacing_mm = [12.0, 18.0]
    left, right = suggest_bipedicular(plan, "L5")
    assert (left.side, right.side) == ("left", "right")
    f = vertebra_frame(plan.levels[0])
    tl, tr = f.to_local(left.target_lps), f.to_local(right.target_lps)
    assert np.linalg.norm(np.array(left.target_lps) - np.array(right.target_lps)) == pytest.approx(15.0, abs=1e-9)
    assert tl[2] == pytest.approx(-7.5, abs=1e-9)  # left tip on the patient's left (-l)
    assert tr[2] == pytest.approx(7.5, abs=1e-9)
    assert left.bend_lps is None and right.bend_lps is None  # straight electrodes by default


def test_suggestion_accepts_settings_and_level():
    level = box_level(POSES[0], "L3")
    traj = suggest_trajectory(PlanningSettings(), level, "left")
    assert traj.level_id == level.id
    with pytest.raises(ValueError, match="side"):
        suggest_trajectory(PlanningSettings(), level, "middle")


def test_suggestion_entry_on_ct_bone_surface():
    """On CT the entry moves to the dorsal bone surface on the axis behind the pedicle centre."""
    pose = POSES[0]
    plan = plan_with(pose)
    level = plan.levels[0]
    # CT volume, 0.5 mm voxels, axis-aligned LPS; bone (400 HU) in a slab of posterior elements
    n = 160
    origin = np.array(pose((0, 0, 0))) - 40.0
    vol = Volume(np.full((n, n, n), 30.0, dtype=np.float32), make_ijk_to_lps(origin, np.eye(3), (0.5, 0.5, 0.5)),
                 ImageInfo(modality="CT"))
    traj0 = suggest_trajectory(plan, level, "left")
    ped = np.array(level.landmarks.pedicle_left_lps)
    d = (np.array(traj0.bend_lps) - ped) / np.linalg.norm(np.array(traj0.bend_lps) - ped)
    # bone from the pedicle centre to 11 mm behind it along the axis (a thick cylinder around the axis)
    ijk = np.stack(np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 3)
    lps = vol.ijk_to_world(ijk.astype(float))
    rel = lps - ped
    t = -(rel @ d)
    radial = np.linalg.norm(rel + t[:, None] * d, axis=1)
    bone = (t >= -15) & (t <= 11.0) & (radial < 6.0)
    arr = vol.array
    arr[ijk[bone, 2], ijk[bone, 1], ijk[bone, 0]] = 400.0
    traj = suggest_trajectory(plan, level, "left", volume=vol)
    e = np.array(traj.entry_lps)
    assert np.linalg.norm(e - (ped - 11.0 * d)) < 0.6
    mr = Volume(vol.array, vol.ijk_to_lps, ImageInfo(modality="MR"))
    assert np.allclose(suggest_trajectory(plan, level, "left", volume=mr).entry_lps, traj0.entry_lps)


# ------------------------------------------------------------------------------------ skin entry
def _body_volume(modality: str, seed: int = 3) -> tuple[Volume, float]:
    """An elliptic-cylinder body (semi-axes 140 x 100 mm in x/y) along z, 2 mm voxels."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = 180, 140, 20
    sp = 2.0
    origin = np.array([-(nx - 1) * sp / 2, -(ny - 1) * sp / 2, -20.0])
    x = origin[0] + np.arange(nx) * sp
    y = origin[1] + np.arange(ny) * sp
    X, Y = np.meshgrid(x, y)  # (ny, nx)
    inside = (X / 140.0) ** 2 + (Y / 100.0) ** 2 <= 1.0
    if modality == "CT":
        img = np.where(inside, 40.0, -1000.0) + rng.normal(0, 25, inside.shape)
    else:
        img = np.where(inside, 400.0, 0.0)
        img = np.abs(img + rng.normal(0, 30, inside.shape) + 1j * rng.normal(0, 30, inside.shape))
        # isolated noise spikes in the background
        spikes = rng.random(inside.shape) < 0.01
        img[spikes & ~inside] = 500.0
    arr = np.repeat(img[None, :, :], nz, axis=0).astype(np.float32)
    vol = Volume(arr, make_ijk_to_lps(origin, np.eye(3), (sp, sp, sp)), ImageInfo(modality=modality))
    return vol, sp


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_skin_entry_point_on_noisy_body(modality):
    vol, _ = _body_volume(modality)
    # a posterior-oblique line: entry inside the body, pointing anteriorly and medially
    entry = np.array([30.0, 40.0, 0.0])
    d = np.array([-0.4, -1.0, 0.0])
    d /= np.linalg.norm(d)
    traj = Trajectory(level_id="x", entry_lps=tuple(entry), target_lps=tuple(entry + 40 * d))
    skin = skin_entry_point(traj, vol)
    assert skin is not None
    # analytic: entry - t d on the ellipse (x/140)^2 + (y/100)^2 = 1
    a = (d[0] / 140) ** 2 + (d[1] / 100) ** 2
    b = -2 * (entry[0] * d[0] / 140 ** 2 + entry[1] * d[1] / 100 ** 2)
    c = (entry[0] / 140) ** 2 + (entry[1] / 100) ** 2 - 1
    t = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    expected = entry - t * d
    assert np.linalg.norm(skin - expected) < 2.0  # within one voxel (2 mm) of the true (voxelised) surface


def test_skin_entry_point_none_when_body_leaves_the_image():
    vol, _ = _body_volume("CT")
    vol.array[:] = 40.0  # tissue to the edge of the field of view
    traj = Trajectory(level_id="x", entry_lps=(0, 40, 0), target_lps=(0, 0, 0))
    assert skin_entry_point(traj, vol) is None


def test_skin_entry_point_is_remembered_per_line_and_follows_the_line_and_the_image():
    """A target drag leaves the introducer line alone: the same skin point (found once); another entry
    or new voxels give the skin point of the new line or image."""
    vol, _ = _body_volume("CT")
    traj = Trajectory(level_id="x", entry_lps=(30.0, 40.0, 0.0), target_lps=(14.0, 0.0, 0.0))
    first = skin_entry_point(traj, vol)
    first[:] = 0.0  # the caller's copy: the remembered point stays intact
    traj.target_lps = (18.0, 10.0, 0.0)  # on the same line from the entry
    again = skin_entry_point(traj, vol)
    assert again is not None and abs(again[1] - 40.0) > 30.0
    traj.entry_lps = (0.0, 40.0, 0.0)
    traj.target_lps = (0.0, 0.0, 0.0)
    straight_back = skin_entry_point(traj, vol)
    assert straight_back[1] == pytest.approx(100.0, abs=2.0)  # the back of the body on x = 0
    vol.array = np.full_like(vol.array, 40.0)  # new voxels: tissue to the edge of the field of view
    assert skin_entry_point(traj, vol) is None
