"""Trajectory geometry: the vertebra's frame, suggested trajectories and the instrument path model.

Everything is in LPS millimetres. The checks (:mod:`planner.checks`), the views, the reports and the
fluoroscopy overlay (:mod:`planner.fluoro`) all draw and measure the path computed here.

Vertebra frame (issue 6, exactly)
    ``u``: unit vector from the posterior to the anterior wall midpoint;
    ``s``: unit vector from the inferior to the superior endplate centre, made orthogonal to ``u``;
    ``l = u x s``. For a patient in the usual orientation ``l`` points to the patient's *right*
    (LPS -x). Depth = ``|anterior - posterior|``; height = ``(superior - inferior) . s``; origin =
    the body centre. Endplate "planes" are the planes through the endplate centres normal to ``s``
    (only the centres are known).

Path model
    * **Introducer**: straight, from the bone entry ``entry_lps`` to the bend point ``bend_lps``;
      its unit direction is ``d``.
    * **Curved path** (``params.curved`` and a bend point): the curved cannula leaves the introducer
      tip tangent to ``d`` and bends, in the plane spanned by ``d`` and ``target - bend``, on a circle
      of the requested radius ``R = params.cannula_curve_radius_mm``; it is advanced until its tip
      points at the target, and the RF probe (straight channel) goes on along that tangent to the
      target. A preformed cannula cannot bend more tightly than its radius, so the target is
      reachable exactly when the single arc from the bend to the target (tangent to ``d`` at the
      bend, the "fitted" radius ``R_fit = |w|^2 / (2 h)`` with ``w = target - bend`` and ``h`` the
      distance of the target from the introducer line) is at least as wide: ``R_fit >= R``. When it
      is not, the path is drawn as that single fitted arc ending at the target and
      :mod:`planner.checks` fails the "cannula curve" check with both radii.
    * **Straight path** (no bend point): one straight line from the entry to the target; the
      introducer ends ``introducer_past_wall_mm`` past the posterior wall plane (through the
      posterior wall midpoint, normal to ``u``) and the probe goes on to the target. With
      ``params.curved`` off but a bend point set, the introducer ends at the bend and a straight probe
      goes from the bend to the target (the checks warn when that is not a straight line).
    * **Ablation zone**: a sphere of ``params.zone_diameter_mm`` centred on the target (active tip).

Suggestion (:func:`suggest_trajectory`)
    * Target (:func:`place_target`): on the midline (plus ``target_midline_offset_mm`` toward the
      approach side) at ``target_depth_pct`` of the AP depth in front of the posterior wall and at the
      level's target height (:func:`target_height_pct`: per level on the side of the basivertebral
      foramen, above mid-height T12-L4 and below it at L5/S1, or one fixed height). When that depth
      leaves less than the canal margin (measured from the zone edge or the zone centre,
      ``canal_margin_from``), the target is moved anteriorly until the margin holds (the margin is a
      contraindication; domain.md 4.1 notes that a 35-40% depth and the 10 mm margin can disagree),
      never past the anterior wall; the label says so and the placement explains the conflict.
      The basivertebral foramen itself is not detected on the images: the real scans at hand
      (../shared/data) carry no reference for it, so a detector could not be validated; the height
      comes from the per-level setting, never from a guess on the image.
    * Introducer direction, curved path: the pedicle axis through the pedicle centre landmark at
      the level's transverse (medial) angle and the sagittal angle from the settings
      (``pedicle_transverse_angle_deg``, ``pedicle_sagittal_angle_deg``; sagittal positive toward
      the superior endplate going anteriorly). When the curved cannula cannot reach the target from
      that axis (or the bend would lie past the midline) the direction is turned, through the
      pedicle centre, by the smallest step toward the straight pedicle-to-target line that makes the
      target reachable; the trajectory's label says so. Straight path: the pedicle-to-target line
      itself (a straight instrument must pass through both).
    * Bend: on that axis, ``introducer_past_wall_mm`` past the posterior wall plane (the curve starts
      once the posterior wall is reached, Benrud 2023).
    * Bone entry: the posterior end of the pedicle on the axis. The pedicle centre landmark marks the
      middle of the pedicle (the isthmus), so the entry is placed as far behind the pedicle centre as
      the posterior wall is in front of it. On CT (``volume`` given) the entry is then moved to the
      dorsal bone surface found on the axis behind the pedicle centre.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from planner.imaging.volume import Volume
from planner.plan import Landmarks, Level, Plan, Trajectory, TrajectoryParams
from planner.settings import PlanningSettings, level_setting

#: Landmark names as shown to the user.
_LANDMARK_WORDS = {
    "body_center_lps": "body centre",
    "superior_endplate_lps": "superior endplate centre",
    "inferior_endplate_lps": "inferior endplate centre",
    "posterior_wall_lps": "posterior wall midpoint",
    "anterior_wall_lps": "anterior wall midpoint",
    "pedicle_left_lps": "left pedicle centre",
    "pedicle_right_lps": "right pedicle centre",
}
_FRAME_LANDMARKS = ("body_center_lps", "superior_endplate_lps", "inferior_endplate_lps",
                    "posterior_wall_lps", "anterior_wall_lps")

_EPS = 1e-9


class LandmarkError(ValueError):
    """A level's landmarks are missing or degenerate; the message names the level and the landmarks."""


class PathError(ValueError):
    """A trajectory's points do not define a path (e.g. the entry and the bend coincide)."""


@dataclass(frozen=True)
class ImageParams:
    """Image-processing values used on the images (technical, not clinical)."""

    #: CT: Hounsfield value separating air from the patient (skin search).
    ct_air_hu: float = -500.0
    #: CT: Hounsfield value above which a voxel is bone (dorsal bone surface of the entry).
    ct_bone_hu: float = 200.0
    #: MR: the skin threshold is this fraction of the volume's Otsu threshold computed on log intensities
    #: (air is orders of magnitude darker than any tissue; on linear intensities Otsu splits dark muscle
    #: from fat instead, and T2-dark muscle then reads as air).
    mr_air_fraction: float = 1.0
    #: Sampling step along lines (mm).
    line_step_mm: float = 0.5
    #: Median-filter window used on line profiles against noise (mm).
    profile_median_mm: float = 2.0
    #: Tissue must continue this far inward for a crossing to count as the skin (mm).
    min_tissue_run_mm: float = 3.0
    #: Air must extend this far outside the skin (mm).
    min_air_run_mm: float = 2.0
    #: Entry on CT: searched up to this far behind the pedicle centre (mm).
    entry_search_mm: float = 40.0
    #: Entry on CT: a gap of soft tissue at least this long ends the bone (mm).
    entry_gap_mm: float = 3.0


IMAGE_PARAMS = ImageParams()


# ============================================================================ vertebra frame
@dataclass(frozen=True)
class VertebraFrame:
    """The vertebra's own frame (see the module docstring); vectors are unit numpy arrays in LPS."""

    level_name: str
    origin_lps: np.ndarray
    u: np.ndarray
    s: np.ndarray
    l: np.ndarray  # noqa: E741 (the issue's name)
    depth_mm: float
    height_mm: float
    body_center_lps: np.ndarray
    posterior_wall_lps: np.ndarray
    anterior_wall_lps: np.ndarray
    superior_endplate_lps: np.ndarray
    inferior_endplate_lps: np.ndarray
    pedicle_left_lps: Optional[np.ndarray] = None
    pedicle_right_lps: Optional[np.ndarray] = None

    @property
    def rotation(self) -> np.ndarray:
        """3x3 matrix whose columns are u, s, l."""
        return np.column_stack([self.u, self.s, self.l])

    def to_local(self, points_lps: Any) -> np.ndarray:
        """(…, 3) LPS points -> (…, 3) coordinates (along u, along s, along l) relative to the origin."""
        p = np.asarray(points_lps, dtype=float) - self.origin_lps
        return p @ self.rotation

    def to_lps(self, local: Any) -> np.ndarray:
        return np.asarray(local, dtype=float) @ self.rotation.T + self.origin_lps

    def pedicle(self, side: str) -> np.ndarray:
        p = self.pedicle_left_lps if side == "left" else self.pedicle_right_lps
        if p is None:
            raise LandmarkError(f"level {self.level_name or '?'}: the {side} pedicle centre is not marked")
        return p

    def medial_direction(self, side: str) -> np.ndarray:
        """Unit vector in the l direction pointing from that side's pedicle toward the midline."""
        ped = self.pedicle_left_lps if side == "left" else self.pedicle_right_lps
        if ped is not None:
            sign = float(np.sign((self.body_center_lps - ped) @ self.l))
            if sign != 0.0:
                return sign * self.l
        # no pedicle (or on the midline): use the usual orientation (l points to the patient's right)
        return self.l.copy() if side == "left" else -self.l

    def depth_pct(self, point_lps: Any) -> float:
        """Depth of a point in front of the posterior wall in % of the AP depth."""
        return 100.0 * float((np.asarray(point_lps, float) - self.posterior_wall_lps) @ self.u) / self.depth_mm

    def wall_depth_mm(self, point_lps: Any) -> float:
        """Signed distance of a point in front of the posterior wall plane (mm)."""
        return float((np.asarray(point_lps, float) - self.posterior_wall_lps) @ self.u)


def _missing(lm: Landmarks, names: Sequence[str]) -> list[str]:
    return [n for n in names if getattr(lm, n) is None]


def vertebra_frame(landmarks: Union[Landmarks, Level], level_name: str = "") -> VertebraFrame:
    """The frame of one vertebra from its landmarks (a :class:`Level` or its :class:`Landmarks`).

    Raises :class:`LandmarkError` naming the missing landmarks, or when the walls coincide or the
    endplate line is parallel to the AP axis.
    """
    if isinstance(landmarks, Level):
        level_name = level_name or landmarks.name
        landmarks = landmarks.landmarks
    name = level_name or "?"
    missing = _missing(landmarks, _FRAME_LANDMARKS)
    if missing:
        words = ", ".join(_LANDMARK_WORDS[m] for m in missing)
        raise LandmarkError(f"level {name}: landmarks missing: {words}")
    arr = {n: np.asarray(getattr(landmarks, n), dtype=float) for n in _FRAME_LANDMARKS}
    post, ant = arr["posterior_wall_lps"], arr["anterior_wall_lps"]
    sup, inf = arr["superior_endplate_lps"], arr["inferior_endplate_lps"]
    ap = ant - post
    depth = float(np.linalg.norm(ap))
    if depth < 1.0:
        raise LandmarkError(f"level {name}: the posterior and anterior wall midpoints coincide "
                            f"({depth:.2f} mm apart)")
    u = ap / depth
    si = sup - inf
    s_vec = si - (si @ u) * u
    s_norm = float(np.linalg.norm(s_vec))
    if s_norm < 1.0:
        raise LandmarkError(f"level {name}: the endplate centres lie on the anterior-posterior line; "
                            "the superior-inferior direction is undefined")
    s = s_vec / s_norm
    l_vec = np.cross(u, s)
    peds = {}
    for side in ("left", "right"):
        v = getattr(landmarks, f"pedicle_{side}_lps")
        peds[side] = None if v is None else np.asarray(v, dtype=float)
    return VertebraFrame(level_name=level_name, origin_lps=arr["body_center_lps"], u=u, s=s, l=l_vec,
                         depth_mm=depth, height_mm=float(si @ s), body_center_lps=arr["body_center_lps"],
                         posterior_wall_lps=post, anterior_wall_lps=ant, superior_endplate_lps=sup,
                         inferior_endplate_lps=inf, pedicle_left_lps=peds["left"],
                         pedicle_right_lps=peds["right"])


# ============================================================================ canal margin
#: How the canal margin is described, per ``PlanningSettings.canal_margin_from``.
CANAL_MARGIN_WORDS = {"zone_edge": "ablation zone edge", "zone_centre": "active tip (zone centre)"}


def zone_canal_margin_mm(frame: VertebraFrame, target_lps: Any, zone_diameter_mm: float, measured_from: str) -> float:
    """Distance from the zone to the spinal canal along the vertebra's AP axis: the target's depth in
    front of the posterior wall, less the zone radius when measured from the zone edge
    (``canal_margin_from``; domain.md 4.1, open item 9)."""
    depth = frame.wall_depth_mm(target_lps)
    if measured_from == "zone_centre":
        return depth
    if measured_from == "zone_edge":
        return depth - zone_diameter_mm / 2.0
    raise ValueError(f"unknown canal margin rule {measured_from!r}")


def image_canal_margin_mm(zone_edge_to_canal_mm: float, zone_diameter_mm: float, measured_from: str) -> float:
    """The canal margin from the distance measured on the image between the zone's edge and the canal,
    by the same rule (``canal_margin_from``) as :func:`zone_canal_margin_mm`."""
    if measured_from == "zone_edge":
        return zone_edge_to_canal_mm
    if measured_from == "zone_centre":
        return zone_edge_to_canal_mm + zone_diameter_mm / 2.0
    raise ValueError(f"unknown canal margin rule {measured_from!r}")


def canal_margin_depth_needed_mm(margin_mm: float, zone_diameter_mm: float, measured_from: str) -> float:
    """The least depth of the zone centre in front of the posterior wall that keeps ``margin_mm``."""
    return margin_mm + (zone_diameter_mm / 2.0 if measured_from == "zone_edge" else 0.0)


def pedicle_axis(frame: VertebraFrame, settings: PlanningSettings, side: str,
                 transverse_deg: Optional[float] = None, sagittal_deg: Optional[float] = None) -> np.ndarray:
    """Unit direction of the pedicle axis (posterior to anterior) from the per-level transverse angle
    and the sagittal angle of the settings: ``cos(sag) (cos(tr) u + sin(tr) m) + sin(sag) s`` where
    ``m`` points toward the midline from that side."""
    tr = math.radians(level_setting(settings.pedicle_transverse_angle_deg, frame.level_name)
                      if transverse_deg is None else transverse_deg)
    sg = math.radians(settings.pedicle_sagittal_angle_deg if sagittal_deg is None else sagittal_deg)
    m = frame.medial_direction(side)
    return math.cos(sg) * (math.cos(tr) * frame.u + math.sin(tr) * m) + math.sin(sg) * frame.s


# ============================================================================ path model
def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < _EPS:
        raise PathError("zero-length direction")
    return v / n


@dataclass(frozen=True)
class Arc:
    """A circular arc starting at ``start_lps`` tangent to ``x_axis``, bending toward ``y_axis``."""

    start_lps: np.ndarray
    x_axis: np.ndarray
    y_axis: np.ndarray
    radius_mm: float
    sweep_rad: float

    @property
    def center_lps(self) -> np.ndarray:
        return self.start_lps + self.radius_mm * self.y_axis

    @property
    def length_mm(self) -> float:
        return self.radius_mm * self.sweep_rad

    def point(self, angle: float) -> np.ndarray:
        r = self.radius_mm
        return self.start_lps + r * math.sin(angle) * self.x_axis + r * (1.0 - math.cos(angle)) * self.y_axis

    def tangent(self, angle: float) -> np.ndarray:
        return math.cos(angle) * self.x_axis + math.sin(angle) * self.y_axis

    @property
    def end_lps(self) -> np.ndarray:
        return self.point(self.sweep_rad)

    @property
    def end_tangent(self) -> np.ndarray:
        return self.tangent(self.sweep_rad)

    def points(self, step_mm: float = 0.5, max_step_deg: float = 2.0) -> np.ndarray:
        n = max(2, int(math.ceil(max(self.length_mm / step_mm, math.degrees(self.sweep_rad) / max_step_deg))) + 1)
        a = np.linspace(0.0, self.sweep_rad, n)
        r = self.radius_mm
        return (self.start_lps[None, :] + (r * np.sin(a))[:, None] * self.x_axis[None, :]
                + (r * (1.0 - np.cos(a)))[:, None] * self.y_axis[None, :])


@dataclass(frozen=True)
class TrajectoryPath:
    """The instrument path of one trajectory (see the module docstring)."""

    entry_lps: np.ndarray
    target_lps: np.ndarray
    bend_lps: Optional[np.ndarray]
    #: Unit direction of the straight introducer (the issue's d).
    direction: np.ndarray
    #: "curved", "straight" (no bend point) or "straight_bend" (curved off, bend point set).
    kind: str
    #: Where the introducer ends (the bend, or the past-wall point of a straight path).
    introducer_end_lps: np.ndarray
    #: The cannula arc (curved paths with a target off the introducer line).
    arc: Optional[Arc]
    #: Start of the final straight part (the probe beyond the cannula or the introducer).
    probe_start_lps: np.ndarray
    #: Radius of the single arc from the bend to the target (inf when the target is on the line).
    fit_radius_mm: float
    #: The requested cannula radius (TrajectoryParams.cannula_curve_radius_mm).
    requested_radius_mm: float
    #: False when the curved cannula cannot reach the target from the bend (R_fit < R).
    reachable: bool
    #: Distance of the target ahead of the bend along d (negative: behind the bend).
    target_ahead_mm: float
    introducer_mm: float
    cannula_mm: float
    probe_mm: float
    introducer_diameter_mm: float
    cannula_diameter_mm: float
    probe_diameter_mm: float

    @property
    def total_mm(self) -> float:
        return self.introducer_mm + self.cannula_mm + self.probe_mm

    def lengths(self) -> dict[str, float]:
        return {"introducer_mm": self.introducer_mm, "cannula_mm": self.cannula_mm,
                "probe_mm": self.probe_mm, "total_mm": self.total_mm}

    def segments(self, step_mm: float = 0.5) -> list["InstrumentSegment"]:
        segs = [InstrumentSegment("introducer", np.vstack([self.entry_lps, self.introducer_end_lps]),
                                  self.introducer_diameter_mm)]
        if self.arc is not None:
            segs.append(InstrumentSegment("cannula", self._arc_points(step_mm), self.cannula_diameter_mm))
        if self.probe_mm > 1e-6:
            segs.append(InstrumentSegment("probe", np.vstack([self.probe_start_lps, self.target_lps]),
                                          self.probe_diameter_mm))
        return segs

    def _arc_points(self, step_mm: float) -> np.ndarray:
        assert self.arc is not None
        pts = self.arc.points(step_mm)
        if self.probe_mm <= 1e-6:
            pts[-1] = self.target_lps  # the arc ends at the target (no straight part)
        return pts

    def polyline(self, step_mm: float = 0.5) -> np.ndarray:
        """Points from the entry to the target along the path (the arc sampled every ``step_mm``)."""
        pts = [self.entry_lps[None, :], self.introducer_end_lps[None, :]]
        if self.arc is not None:
            pts.append(self._arc_points(step_mm)[1:])
        if self.probe_mm > 1e-6:
            pts.append(self.target_lps[None, :])
        out = np.vstack(pts)
        keep = np.ones(len(out), dtype=bool)
        keep[1:] = np.linalg.norm(np.diff(out, axis=0), axis=1) > 1e-9
        return out[keep]


@dataclass
class InstrumentSegment:
    """One instrument drawn as a tube: a polyline in LPS mm and its outer diameter."""

    name: str  # "introducer", "cannula", "probe"
    points_lps: np.ndarray  # (N, 3)
    diameter_mm: float

    @property
    def length_mm(self) -> float:
        if len(self.points_lps) < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(self.points_lps, axis=0), axis=1).sum())


class AblationZone(NamedTuple):
    """The ablation zone: a sphere; unpacks as ``(center_lps, radius_mm)``."""

    center_lps: np.ndarray
    radius_mm: float


def solve_arc(bend_lps: np.ndarray, direction: np.ndarray, target_lps: np.ndarray,
              radius_mm: float) -> tuple[Optional[Arc], np.ndarray, float, bool, float]:
    """Cannula arc from ``bend`` tangent to ``direction`` toward ``target`` (module docstring).

    Returns (arc or None, start of the final straight part, fitted radius, reachable, target ahead)."""
    w = target_lps - bend_lps
    a = float(w @ direction)
    h_vec = w - a * direction
    h = float(np.linalg.norm(h_vec))
    w2 = float(w @ w)
    if h < 1e-6 * max(1.0, math.sqrt(w2)):
        # target on the introducer line: no curve needed
        return None, bend_lps.copy(), math.inf, a > 0, a
    n = h_vec / h
    r_fit = w2 / (2.0 * h)
    if radius_mm <= r_fit + 1e-6 and a > 0:  # (tolerance for rounding of points on the circle)
        r = min(radius_mm, r_fit)
        dist = math.hypot(a, h - r)
        beta = math.atan2(h - r, a)
        alpha = beta + math.asin(min(1.0, r / dist))
        arc = Arc(bend_lps.copy(), direction.copy(), n, r, alpha)
        return arc, arc.end_lps, r_fit, True, a
    sweep = 2.0 * math.atan2(h, a)
    arc = Arc(bend_lps.copy(), direction.copy(), n, r_fit, sweep)
    return arc, target_lps.copy(), r_fit, False, a


def _level_of(plan: Optional[Plan], trajectory: Trajectory) -> Optional[Level]:
    if plan is None:
        return None
    try:
        return plan.level(trajectory.level_id)
    except KeyError:
        return None


def _frame_or_none(level: Optional[Level]) -> Optional[VertebraFrame]:
    if level is None:
        return None
    try:
        return vertebra_frame(level)
    except LandmarkError:
        return None


def trajectory_path(trajectory: Trajectory, plan: Optional[Plan] = None, *,
                    frame: Optional[VertebraFrame] = None,
                    past_wall_mm: Optional[float] = None) -> TrajectoryPath:
    """The path of ``trajectory``. ``plan`` (or ``frame``) is needed only to place the end of the
    introducer of a straight path past the posterior wall."""
    p = trajectory.params
    entry = np.asarray(trajectory.entry_lps, dtype=float)
    target = np.asarray(trajectory.target_lps, dtype=float)
    bend = None if trajectory.bend_lps is None else np.asarray(trajectory.bend_lps, dtype=float)
    diam = (p.introducer_diameter_mm, p.cannula_diameter_mm, p.probe_diameter_mm)
    if bend is not None:
        if float(np.linalg.norm(bend - entry)) < 1e-6:
            raise PathError("the entry and the bend point coincide; the introducer has no direction")
        d = _unit(bend - entry)
        intro = float(np.linalg.norm(bend - entry))
        if p.curved:
            arc, probe_start, r_fit, reachable, ahead = solve_arc(bend, d, target, p.cannula_curve_radius_mm)
            cannula = arc.length_mm if arc is not None else 0.0
            probe = float(np.linalg.norm(target - probe_start))
            return TrajectoryPath(entry, target, bend, d, "curved", bend, arc, probe_start, r_fit,
                                  p.cannula_curve_radius_mm, reachable, ahead, intro, cannula, probe, *diam)
        ahead = float((target - bend) @ d)
        return TrajectoryPath(entry, target, bend, d, "straight_bend", bend, None, bend, math.inf,
                              p.cannula_curve_radius_mm, True, ahead, intro, 0.0,
                              float(np.linalg.norm(target - bend)), *diam)
    if float(np.linalg.norm(target - entry)) < 1e-6:
        raise PathError("the entry and the target coincide; the path has no direction")
    d = _unit(target - entry)
    total = float(np.linalg.norm(target - entry))
    if frame is None:
        frame = _frame_or_none(_level_of(plan, trajectory))
    if past_wall_mm is None:
        past_wall_mm = (plan.settings if plan is not None else PlanningSettings()).introducer_past_wall_mm
    t_end = total
    if frame is not None:
        du = float(d @ frame.u)
        if du > 1e-6:
            t_wall = (frame.wall_depth_mm(frame.posterior_wall_lps) - frame.wall_depth_mm(entry) + past_wall_mm) / du
            t_end = min(max(t_wall, 0.0), total)
    intro_end = entry + t_end * d
    return TrajectoryPath(entry, target, None, d, "straight", intro_end, None, intro_end, math.inf,
                          p.cannula_curve_radius_mm, True, total, t_end, 0.0, total - t_end, *diam)


def instrument_segments(plan: Optional[Plan], trajectory: Trajectory, step_mm: float = 0.5) -> list[InstrumentSegment]:
    """Introducer, cannula (the arc, sampled every ``step_mm``) and probe as polylines with their
    diameters. The probe is the part beyond the cannula (or the introducer) and is left out when
    it has no length; polylines never overlap, so their lengths add up to the path length."""
    return trajectory_path(trajectory, plan).segments(step_mm)


def ablation_zone(trajectory: Trajectory) -> AblationZone:
    """The ablation zone: centre (the target, active tip) and radius in mm."""
    return AblationZone(np.asarray(trajectory.target_lps, dtype=float), trajectory.params.zone_diameter_mm / 2.0)


@dataclass
class TrajectoryShape:
    """What the views and the documents draw of a trajectory: its instruments and the ablation zone."""

    instruments: list[InstrumentSegment]
    zone: AblationZone
    #: False when the path could not be built (for example the entry on the bend point during a drag)
    #: and the instruments are straight segments entry -> bend -> target.
    from_planner: bool

    def all_points_lps(self) -> np.ndarray:
        return np.vstack([i.points_lps for i in self.instruments] + [self.zone.center_lps[None, :]])


def straight_shape(trajectory: Trajectory) -> TrajectoryShape:
    """Straight segments entry -> bend (introducer) -> target (cannula), for a trajectory without a path."""
    entry = np.asarray(trajectory.entry_lps, dtype=float)
    target = np.asarray(trajectory.target_lps, dtype=float)
    p = trajectory.params
    if trajectory.bend_lps is not None:
        bend = np.asarray(trajectory.bend_lps, dtype=float)
        instruments = [InstrumentSegment("introducer", np.vstack([entry, bend]), p.introducer_diameter_mm),
                       InstrumentSegment("cannula", np.vstack([bend, target]), p.cannula_diameter_mm)]
    else:
        instruments = [InstrumentSegment("introducer", np.vstack([entry, target]), p.introducer_diameter_mm)]
    return TrajectoryShape(instruments, ablation_zone(trajectory), False)


def trajectory_shape(plan: Optional[Plan], trajectory: Trajectory) -> TrajectoryShape:
    """The instruments (:func:`instrument_segments`) and the zone of ``trajectory``; straight segments
    (:func:`straight_shape`) when its points do not define a path."""
    try:
        segments = instrument_segments(plan, trajectory)
    except (ValueError, ArithmeticError, KeyError):  # PathError, LandmarkError, an unknown level
        return straight_shape(trajectory)
    instruments = [InstrumentSegment(s.name, np.asarray(s.points_lps, dtype=float).reshape(-1, 3), float(s.diameter_mm))
                   for s in segments if len(s.points_lps) >= 2]
    if not instruments:
        return straight_shape(trajectory)
    return TrajectoryShape(instruments, ablation_zone(trajectory), True)


def path_polyline(trajectory: Trajectory, plan: Optional[Plan] = None, step_mm: float = 0.5) -> np.ndarray:
    """(N, 3) points from the entry to the target along the instruments."""
    return trajectory_path(trajectory, plan).polyline(step_mm)


def path_lengths(trajectory: Trajectory, plan: Optional[Plan] = None) -> dict[str, float]:
    """Lengths in mm: introducer_mm, cannula_mm, probe_mm and total_mm (entry to target)."""
    return trajectory_path(trajectory, plan).lengths()


# ============================================================================ suggestion
def _settings_of(plan_or_settings: Union[Plan, PlanningSettings, None]) -> PlanningSettings:
    if isinstance(plan_or_settings, Plan):
        return plan_or_settings.settings
    if isinstance(plan_or_settings, PlanningSettings):
        return plan_or_settings
    if plan_or_settings is None:
        return PlanningSettings()
    raise TypeError("expected a Plan or PlanningSettings")


def _resolve_level(plan_or_settings: Union[Plan, PlanningSettings, None], level: Union[Level, str]) -> Level:
    if isinstance(level, Level):
        return level
    if not isinstance(plan_or_settings, Plan):
        raise TypeError("pass a Level, or a Plan together with a level id or name")
    try:
        return plan_or_settings.level(level)
    except KeyError:
        found = plan_or_settings.level_by_name(level)
        if found is None:
            raise KeyError(f"no level with id or name {level!r}") from None
        return found


def target_height_pct(settings: PlanningSettings, level_name: str) -> tuple[float, str]:
    """The target height (% of the body height above the inferior endplate) for a level and why: the
    per-level value on the side of the basivertebral foramen (``target_height_rule`` "by_level") or the
    fixed height."""
    if settings.target_height_rule == "fixed":
        return settings.target_height_pct, "fixed target height (setting)"
    pct = level_setting(settings.target_height_pct_by_level, level_name)
    if pct > 50.0:
        side = "above mid-height, where the basivertebral foramen lies (nearer the upper rim T10-L4, Tzika 2021)"
    elif pct < 50.0:
        side = "below mid-height, where the basivertebral foramen lies (nearer the lower rim at L5, Tzika 2021)"
    else:
        side = "mid-height"
    return pct, f"{level_name or 'level'}: {pct:g}% of the body height, {side}"


@dataclass(frozen=True)
class TargetPlacement:
    """Where the default target goes and how the depth setting and the canal margin fit at this level.

    ``depth_pct`` is where the target ends (the depth setting, or deeper when the canal margin needs it);
    ``conflict`` explains, in words for the physician, when the two disagree and what was done (empty
    when the depth setting keeps the margin)."""

    target_lps: np.ndarray
    depth_setting_pct: float
    depth_pct: float
    height_pct: float
    height_basis: str
    canal_margin_mm: float
    margin_required_mm: float
    margin_from: str
    #: Least depth (mm, and % of this body's AP depth) of the zone centre that keeps the margin.
    depth_needed_mm: float
    depth_needed_pct: float
    moved: bool
    #: True when the margin and the depth window cannot both hold at this level.
    conflict_unresolvable: bool
    conflict: str

    @property
    def margin_met(self) -> bool:
        return self.canal_margin_mm >= self.margin_required_mm - 1e-6


def place_target(frame: VertebraFrame, settings: PlanningSettings, side: str = "left",
                 lateral_offset_mm: Optional[float] = None, zone_diameter_mm: Optional[float] = None,
                 canal_margin_mm: Optional[float] = None) -> TargetPlacement:
    """The default target (:func:`default_target`), moved anteriorly when the canal margin needs it
    (the margin is a contraindication; domain.md 4.1 notes that a 35-40% depth and a 10 mm margin measured
    from the zone edge disagree), never so far that the zone leaves the anterior wall."""
    zone = settings.zone_diameter_mm if zone_diameter_mm is None else zone_diameter_mm
    margin = settings.canal_margin_mm if canal_margin_mm is None else canal_margin_mm
    rule = settings.canal_margin_from
    what = CANAL_MARGIN_WORDS[rule]
    r = zone / 2.0
    target = default_target(frame, settings, side, lateral_offset_mm)
    height, basis = target_height_pct(settings, frame.level_name)
    needed = canal_margin_depth_needed_mm(margin, zone, rule)
    needed_pct = 100.0 * needed / frame.depth_mm
    depth_now = frame.wall_depth_mm(target)
    moved = False
    unresolvable = False
    conflict = ""
    lo, hi = settings.target_depth_min_pct, settings.target_depth_max_pct
    if depth_now < needed - 1e-9:
        new_depth = min(needed, frame.depth_mm - r)
        if new_depth > depth_now:
            target = target + (new_depth - depth_now) * frame.u
            moved = True
        new_pct = 100.0 * max(new_depth, depth_now) / frame.depth_mm
        why = (f"a {margin:g} mm canal margin from the {what} needs the zone centre {needed:.1f} mm in front of "
               f"the posterior wall ({needed_pct:.0f}% of this body's {frame.depth_mm:.1f} mm), deeper than the "
               f"{settings.target_depth_pct:g}% depth setting")
        if new_depth < needed - 1e-9:
            unresolvable = True
            conflict = (f"Depth and canal margin cannot both be met: {why}; the {zone:g} mm zone would leave the "
                        f"anterior wall, so the target stays at {new_pct:.0f}% and the margin is not kept.")
        elif new_pct > hi + 1e-6:
            unresolvable = True
            conflict = (f"Depth and canal margin cannot both be met: {why} and beyond the {lo:g}-{hi:g}% depth "
                        f"window; the target was moved to {new_pct:.0f}% to keep the margin (a contraindication).")
        else:
            conflict = f"Target moved to {new_pct:.0f}% depth: {why}."
    return TargetPlacement(target, settings.target_depth_pct, frame.depth_pct(target), height, basis,
                           zone_canal_margin_mm(frame, target, zone, rule), margin, rule, needed, needed_pct, moved,
                           unresolvable, conflict)


def default_target(frame: VertebraFrame, settings: PlanningSettings, side: str = "left",
                   lateral_offset_mm: Optional[float] = None) -> np.ndarray:
    """The default target before the canal margin is applied (:func:`place_target` applies it):
    ``target_depth_pct`` of the AP depth in front of the posterior wall, at the level's target height
    (:func:`target_height_pct`) above the inferior endplate, on the midline plane (through the body
    centre, normal to l) moved ``lateral_offset_mm`` (default ``target_midline_offset_mm``) toward the
    approach side."""
    off = settings.target_midline_offset_mm if lateral_offset_mm is None else lateral_offset_mm
    post = frame.posterior_wall_lps
    depth = settings.target_depth_pct / 100.0 * frame.depth_mm
    c = frame.body_center_lps
    height, _ = target_height_pct(settings, frame.level_name)
    along_u = float((post - c) @ frame.u) + depth
    along_s = float((frame.inferior_endplate_lps - c) @ frame.s) + height / 100.0 * frame.height_mm
    toward_side = -frame.medial_direction(side)
    return c + along_u * frame.u + along_s * frame.s + off * toward_side


def _bend_on_axis(frame: VertebraFrame, pedicle: np.ndarray, d: np.ndarray,
                  past_wall_mm: float) -> Optional[np.ndarray]:
    du = float(d @ frame.u)
    if du < 1e-3:
        return None
    t = (frame.wall_depth_mm(frame.posterior_wall_lps) + past_wall_mm - frame.wall_depth_mm(pedicle)) / du
    # never behind the pedicle centre: where the isthmus lies in front of the wall's midline point (a short
    # pedicle joining a body with a concave back, as at L5) the bend is the introducer's tip past it
    t = max(t, past_wall_mm / du)
    return pedicle + t * d


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    dot = float(np.clip(a @ b, -1.0, 1.0))
    om = math.acos(dot)
    if om < 1e-9:
        return a.copy()
    return (math.sin((1 - t) * om) * a + math.sin(t * om) * b) / math.sin(om)


def _curved_ok(frame: VertebraFrame, pedicle: np.ndarray, d: np.ndarray, target: np.ndarray,
               radius: float, past_wall_mm: float, side: str) -> bool:
    bend = _bend_on_axis(frame, pedicle, d, past_wall_mm)
    if bend is None:
        return False
    m = frame.medial_direction(side)
    # the bend must stay on the approach side of the midline
    if float((bend - frame.body_center_lps) @ m) > 0.0:
        return False
    _, _, r_fit, reachable, ahead = solve_arc(bend, d, target, radius)
    return reachable and ahead > 0 and r_fit >= radius * (1 + 1e-9)


def find_bone_entry(volume: Any, pedicle_lps: np.ndarray, direction: np.ndarray,
                    params: ImageParams = IMAGE_PARAMS) -> Optional[np.ndarray]:
    """CT only: the dorsal bone surface on the line through the pedicle centre (going against
    ``direction``): the last bone sample before a soft-tissue gap of ``entry_gap_mm``."""
    if not is_ct(volume):
        return None
    step = params.line_step_mm
    t = np.arange(0.0, params.entry_search_mm + 1e-9, step)
    pts = pedicle_lps[None, :] - t[:, None] * direction[None, :]
    vals = volume.sample(pts, order=1, fill=np.nan)
    bone = np.nan_to_num(vals, nan=-1000.0) >= params.ct_bone_hu
    if not bone[0]:
        return None
    gap = max(1, int(round(params.entry_gap_mm / step)))
    last = 0
    run = 0
    for i in range(1, len(t)):
        if bone[i]:
            last, run = i, 0
        else:
            run += 1
            if run >= gap:
                break
    if last == 0:
        return None
    # sub-sample position of the bone edge
    v0, v1 = vals[last], vals[last + 1] if last + 1 < len(vals) else vals[last]
    frac = 0.0
    if np.isfinite(v1) and v0 != v1:
        frac = float(np.clip((v0 - params.ct_bone_hu) / (v0 - v1), 0.0, 1.0))
    return pedicle_lps - (t[last] + frac * step) * direction


def suggest_trajectory(plan_or_settings: Union[Plan, PlanningSettings, None], level: Union[Level, str], side: str,
                       volume: Any = None, *, curved: Optional[bool] = None,
                       lateral_offset_mm: Optional[float] = None) -> Trajectory:
    """A suggested trajectory for ``level`` from ``side`` ("left" or "right"); see the module
    docstring for the rules. Returns a new :class:`Trajectory` (not added to any plan)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    settings = _settings_of(plan_or_settings)
    lv = _resolve_level(plan_or_settings, level)
    frame = vertebra_frame(lv)
    pedicle = frame.pedicle(side)
    params = TrajectoryParams.from_settings(settings)
    if curved is not None:
        params.curved = curved
    # the zone keeps the canal margin (a contraindication) even when the configured depth is shallower
    # (domain.md 4.1): place_target moves the target anteriorly, never out of the anterior wall
    placed = place_target(frame, settings, side, lateral_offset_mm, params.zone_diameter_mm,
                          params.canal_margin_mm)
    target = placed.target_lps
    past = settings.introducer_past_wall_mm
    label = (f"target moved to {placed.depth_pct:.0f}% depth to keep the {params.canal_margin_mm:g} mm canal "
             "margin" if placed.moved else "")
    if float((target - pedicle) @ frame.u) <= 0:
        raise LandmarkError(f"level {lv.name}: the {side} pedicle centre is not behind the target; check the "
                            "pedicle and wall landmarks")
    d_direct = _unit(target - pedicle)
    bend: Optional[np.ndarray] = None
    if params.curved:
        d_axis = _unit(pedicle_axis(frame, settings, side))
        d = d_axis
        if not _curved_ok(frame, pedicle, d_axis, target, params.cannula_curve_radius_mm, past, side):
            d = d_direct
            for t in np.linspace(0.0, 1.0, 101)[1:]:
                cand = _unit(_slerp(d_axis, d_direct, float(t)))
                if _curved_ok(frame, pedicle, cand, target, params.cannula_curve_radius_mm, past, side):
                    d = cand
                    break
            change = math.degrees(math.acos(float(np.clip(d @ d_axis, -1, 1))))
            label = "; ".join(x for x in (label, f"axis turned {change:.0f}° from the pedicle-angle setting so "
                                                 "the curve reaches the target") if x)
        bend = _bend_on_axis(frame, pedicle, d, past)
        if bend is None or float((target - bend) @ d) <= 0:
            bend = None  # fall back to a straight path
            params.curved = False
            d = d_direct
            label = "; ".join(x for x in (label, "straight: the curved cannula cannot reach the target "
                                                 "from this pedicle") if x)
    else:
        d = d_direct
    # bone entry: mirrored from the posterior wall crossing about the pedicle centre
    du = float(d @ frame.u)
    back = (frame.wall_depth_mm(frame.posterior_wall_lps) - frame.wall_depth_mm(pedicle)) / max(du, 1e-3)
    back = max(back, 5.0)
    entry = pedicle - back * d
    if volume is not None:
        found = find_bone_entry(volume, pedicle, d)
        if found is not None:
            entry = found
    return Trajectory(level_id=lv.id, side=side, entry_lps=tuple(float(v) for v in entry),  # type: ignore[arg-type]
                      bend_lps=None if bend is None else tuple(float(v) for v in bend),  # type: ignore[arg-type]
                      target_lps=tuple(float(v) for v in target), params=params, label=label)  # type: ignore[arg-type]


def suggest_bipedicular(plan_or_settings: Union[Plan, PlanningSettings, None], level: Union[Level, str],
                        volume: Any = None, *, curved: bool = False) -> tuple[Trajectory, Trajectory]:
    """Left and right trajectories whose tips lie half the bipedicular tip spacing (the middle of the
    ``bipedicular_tip_spacing_mm`` window) on either side of the midline target. Straight by default,
    as in the bipedicular technique (two straight transpedicular electrodes, domain.md 4)."""
    settings = _settings_of(plan_or_settings)
    lo, hi = (list(settings.bipedicular_tip_spacing_mm) + [10.0, 20.0])[:2]
    half = (float(lo) + float(hi)) / 4.0
    left = suggest_trajectory(plan_or_settings, level, "left", volume, curved=curved,
                              lateral_offset_mm=settings.target_midline_offset_mm + half)
    right = suggest_trajectory(plan_or_settings, level, "right", volume, curved=curved,
                               lateral_offset_mm=-settings.target_midline_offset_mm + half)
    return left, right


# ============================================================================ images
def is_ct(volume: Any) -> bool:
    info = getattr(volume, "info", None)
    modality = (getattr(info, "modality", "") or "").upper()
    if modality:
        return modality == "CT"
    return isinstance(volume, Volume) and volume.hounsfield_like()


#: Otsu thresholds per volume (weakly keyed).
_OTSU_CACHE: "weakref.WeakKeyDictionary[Any, tuple[Any, float]]" = weakref.WeakKeyDictionary()


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    lo, hi = np.percentile(v, [0.5, 99.5])
    if hi <= lo:
        return float(lo)
    hist, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m0 / w0
        mu1 = (mt - m0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between)
    return float(centers[int(np.argmax(between))])


def air_threshold(volume: Any, params: ImageParams = IMAGE_PARAMS) -> float:
    """Value separating air/background from the patient: fixed HU on CT, on MR a fraction of the Otsu
    threshold of the volume's log intensities (computed once per volume)."""
    if is_ct(volume):
        return params.ct_air_hu
    cached = _OTSU_CACHE.get(volume)
    if cached is not None and cached[0] is volume.array:
        return params.mr_air_fraction * cached[1]
    a = volume.array
    step = max(1, int(round((a.size / 1_000_000) ** (1 / 3))))
    sub = np.asarray(a[::step, ::step, ::step], dtype=np.float64)
    floor = float(np.nanmin(sub))
    otsu = float(np.expm1(otsu_threshold(np.log1p(sub - floor)))) + floor
    _OTSU_CACHE[volume] = (volume.array, otsu)
    return params.mr_air_fraction * otsu


def _runs(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """(start, stop, value) runs of a boolean array."""
    mask = np.asarray(mask, dtype=bool)
    if len(mask) == 0:
        return []
    bounds = np.concatenate(([0], np.flatnonzero(mask[1:] != mask[:-1]) + 1, [len(mask)]))
    return [(int(a), int(b), bool(mask[a])) for a, b in zip(bounds[:-1], bounds[1:])]


#: Skin points per volume and introducer line: dragging the target or the bend of a curved path leaves
#: the line from the entry unchanged, so the checks of each drag step find it here (weakly keyed).
_SKIN_CACHE: "weakref.WeakKeyDictionary[Any, tuple[Any, dict[tuple, Optional[np.ndarray]]]]" = \
    weakref.WeakKeyDictionary()
_SKIN_CACHE_SIZE = 256


def skin_entry_point(trajectory: Trajectory, volume: Any, *, max_distance_mm: float = 300.0,
                     params: ImageParams = IMAGE_PARAMS) -> Optional[np.ndarray]:
    """Where the straight introducer line, extended backwards from the entry, leaves the body: the skin
    of the back where the introducer goes in.

    The volume is sampled along the line (``line_step_mm``), median-filtered against noise, and
    classified as tissue or air (:func:`air_threshold`). Going out from the bone entry, the skin is the
    first tissue-to-air transition whose air extends at least ``min_air_run_mm`` (short tissue runs are
    noise in air, short air runs noise in tissue). The line may go on through the air and meet another
    body part (an arm beside the trunk on a supine CT, the table): that is never the entry, so the
    first exit is taken, not the last. None when the line does not leave the body inside the image
    (or the entry itself lies in air)."""
    path = trajectory_path(trajectory)
    key = (path.entry_lps.tobytes(), path.direction.tobytes(), float(max_distance_mm), params)
    cached = _SKIN_CACHE.get(volume)
    if cached is None or cached[0] is not volume.array or len(cached[1]) >= _SKIN_CACHE_SIZE:
        cached = (volume.array, {})
        _SKIN_CACHE[volume] = cached
    if key not in cached[1]:
        cached[1][key] = _skin_on_line(volume, path.entry_lps, path.direction, max_distance_mm, params)
    found = cached[1][key]
    return None if found is None else found.copy()


def _skin_on_line(volume: Any, entry: np.ndarray, d: np.ndarray, max_distance_mm: float,
                  params: ImageParams) -> Optional[np.ndarray]:
    from scipy import ndimage

    step = params.line_step_mm
    t = np.arange(0.0, max_distance_mm + 1e-9, step)
    pts = entry[None, :] - t[:, None] * d[None, :]
    vals = volume.sample(pts, order=1, fill=np.nan)
    inside = np.isfinite(vals)
    if not inside[0]:
        return None
    # keep the part of the line inside the image (from the entry outward)
    stop = int(np.argmin(inside)) if not inside.all() else len(vals)
    vals = vals[:stop]
    t = t[:stop]
    if len(vals) < 3:
        return None
    # linear interpolation spreads a one-voxel noise spike over two voxels: the median window spans
    # four voxels so such spikes vanish while step edges (the skin) stay where they are
    voxel = float(np.max(volume.spacing)) if hasattr(volume, "spacing") else step
    win = max(1, int(round(max(params.profile_median_mm, 4.0 * voxel) / step)) | 1)
    smooth = ndimage.median_filter(vals, size=win, mode="nearest")
    thr = air_threshold(volume, params)
    tissue = smooth >= thr
    need_tissue = max(1, int(round(max(params.min_tissue_run_mm, 2.0 * voxel) / step)))
    need_air = max(1, int(round(params.min_air_run_mm / step)))
    # clean the classification: short tissue runs are noise in air, short air runs inside tissue
    # are noise (or tiny gas pockets) in the body
    for j, (a, b, val) in enumerate(_runs(tissue)):
        if val and b - a < need_tissue:
            tissue[a:b] = False
    runs = _runs(tissue)
    for j, (a, b, val) in enumerate(runs):
        if not val and b - a < need_air and 0 < j < len(runs) - 1:
            tissue[a:b] = True
    runs = _runs(tissue)
    if len(runs) < 2 or not runs[0][2]:
        return None  # the entry lies in air, or the line never leaves the body inside the image
    i0 = runs[0][1] - 1  # last sample of the first tissue run from the entry; i0 + 1 is air
    v0, v1 = smooth[i0], smooth[i0 + 1]
    frac = float(np.clip((v0 - thr) / (v0 - v1), 0.0, 1.0)) if v0 != v1 else 0.0
    return entry - (t[i0] + frac * step) * d


# ============================================================================ depth and margin, in words
#: :attr:`DepthMargin.margin_basis` of a canal margin measured on the image, and of one from the landmarks.
MARGIN_MEASURED = "measured on the image"
MARGIN_FROM_LANDMARKS = "from the landmarks"


@dataclass(frozen=True)
class DepthMargin:
    """The target's depth and canal margin as they are, and what the settings ask, with the conflict
    between the two explained when the depth setting and the margin cannot both be met at this level."""

    depth_pct: float
    depth_setting_pct: float
    depth_window_pct: tuple[float, float]
    canal_margin_mm: float
    margin_required_mm: float
    margin_from: str
    conflict: str
    #: How the canal margin was obtained: MARGIN_MEASURED or MARGIN_FROM_LANDMARKS.
    margin_basis: str = MARGIN_FROM_LANDMARKS

    @property
    def margin_met(self) -> bool:
        return self.canal_margin_mm >= self.margin_required_mm - 1e-6

    @property
    def depth_in_window(self) -> bool:
        lo, hi = self.depth_window_pct
        return lo - 1e-6 <= self.depth_pct <= hi + 1e-6

    def values_line(self) -> str:
        lo, hi = self.depth_window_pct
        return (f"Depth {self.depth_pct:.0f}% of the AP depth (setting {self.depth_setting_pct:g}%, window "
                f"{lo:g}-{hi:g}%); canal margin {self.canal_margin_mm:.1f} mm from the "
                f"{CANAL_MARGIN_WORDS[self.margin_from]}, {self.margin_basis} (at least {self.margin_required_mm:g} mm)")


def depth_and_margin(plan: Plan, trajectory: Trajectory, canal_margin_mm: Optional[float] = None,
                     margin_basis: str = MARGIN_FROM_LANDMARKS) -> Optional[DepthMargin]:
    """Depth and canal margin of ``trajectory`` and, for its level, whether the depth setting and the
    canal margin (with the trajectory's zone and margin) can both be met; None without a frame.

    ``canal_margin_mm`` is the margin the checks found (measured on the image when they could,
    :func:`planner.checks.depth_margin_of`), so every document shows the number the checks decided on;
    without it the margin comes from the posterior wall landmark. The conflict states the level's rule
    (where the margin puts the zone centre on the landmarks against the depth setting), not what a
    suggestion did to this trajectory); it is left out where the margin measured on the image holds at a target
    shallower than that rule asks for, since the image, not the rule, decided the canal-margin check."""
    level = _level_of(plan, trajectory)
    frame = _frame_or_none(level)
    if frame is None:
        return None
    st = plan.settings
    p = trajectory.params
    placed = place_target(frame, st, trajectory.side, zone_diameter_mm=p.zone_diameter_mm,
                          canal_margin_mm=p.canal_margin_mm)
    target = np.asarray(trajectory.target_lps, dtype=float)
    if canal_margin_mm is None:
        canal_margin_mm = zone_canal_margin_mm(frame, target, p.zone_diameter_mm, st.canal_margin_from)
    conflict = ""
    depth_pct = frame.depth_pct(target)
    # the margin measured on the image holds at a target shallower than the landmarks' rule asks for: the canal
    # lies further behind the posterior wall landmark than the rule assumes, and "cannot both hold" would
    # contradict the two numbers shown beside it (example_ct L1 right: 35% and 11.7 mm on the image)
    kept_on_image = (margin_basis == MARGIN_MEASURED and canal_margin_mm >= p.canal_margin_mm - 1e-6
                     and depth_pct < placed.depth_needed_pct - 1e-6)
    if placed.conflict and not kept_on_image:
        lo, hi = st.target_depth_min_pct, st.target_depth_max_pct
        if placed.depth_needed_mm > frame.depth_mm - p.zone_diameter_mm / 2.0 + 1e-9:
            consequence = f" the {p.zone_diameter_mm:g} mm zone cannot keep it inside this body"
        elif placed.depth_needed_pct > hi + 1e-6:
            consequence = f" beyond the {lo:g}-{hi:g}% depth window"
        else:
            consequence = ""
        conflict = (f"At {frame.level_name}: the {st.target_depth_pct:g}% depth setting and a {p.canal_margin_mm:g} mm "
                    f"canal margin from the {CANAL_MARGIN_WORDS[st.canal_margin_from]} cannot both hold: the margin "
                    f"needs the zone centre {placed.depth_needed_mm:.1f} mm in front of the posterior wall "
                    f"({placed.depth_needed_pct:.0f}% of this body's {frame.depth_mm:.1f} mm on the landmarks)"
                    + (f",{consequence}" if consequence else "") + ". Rule: the setting 'Canal margin measured "
                    "from' (zone edge or zone centre; the source does not say which, domain.md open item 9).")
    return DepthMargin(depth_pct, st.target_depth_pct, (st.target_depth_min_pct, st.target_depth_max_pct),
                       canal_margin_mm, p.canal_margin_mm, st.canal_margin_from, conflict, margin_basis)
