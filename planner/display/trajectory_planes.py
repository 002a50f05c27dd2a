"""Planes along a trajectory for the trajectory layout (no Qt; tested directly).

:class:`TrajectoryAxis` is the path of one trajectory as the trajectory views walk it, in LPS mm:
from the skin (where the straight introducer line leaves the body, when the image shows it) through
the bone entry, along the introducer, the cannula arc and the probe, to the target. Positions along
it are arc lengths in mm with 0 at the bone entry (negative on the skin side).

* **Oblique view** (:meth:`TrajectoryAxis.oblique_basis`): the plane through the introducer axis
  (entry, direction ``d``) that contains the vertebra's cranio-caudal direction ``s`` (from the
  level's landmarks, :func:`planner.trajectory.vertebra_frame`; the patient's superior axis when the
  level has no frame), spun about ``d`` by a rotation angle. Screen right is ``-d`` (the entry on
  the right, the target to the left, as in the sagittal view where anterior is on the left) and
  screen down is ``-s`` rotated about ``d``. The whole path of a curved trajectory lies in one plane
  (introducer, arc and probe: :mod:`planner.trajectory`); :meth:`TrajectoryAxis.curve_angle_deg`
  is the rotation that shows it.
* **Probe's-eye view** (:meth:`TrajectoryAxis.probe_basis`): the plane through the path point at a
  position, perpendicular to the path there (its normal is the path's direction), seen from behind
  the instrument looking toward the target, the vertebra's superior side up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from planner.plan import Plan, Trajectory

#: Patient superior in LPS: the cranio-caudal direction when the level has no landmark frame.
SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])
#: Sampling of the cannula arc along the path (mm); display only.
PATH_STEP_MM = 0.5


def _unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.linalg.norm(v))


def _orthogonal_up(forward: np.ndarray, up_hint: np.ndarray) -> np.ndarray:
    """``up_hint`` made orthogonal to ``forward`` (another axis when they are nearly parallel)."""
    for cand in (up_hint, SUPERIOR_LPS, np.array([0.0, -1.0, 0.0]), np.array([1.0, 0.0, 0.0])):
        v = cand - forward * float(cand @ forward)
        if np.linalg.norm(v) > 1e-3:
            return _unit(v)
    raise ValueError("no direction orthogonal to the path")  # pragma: no cover (three axes tried)


@dataclass(frozen=True)
class TrajectoryAxis:
    """The walked path of one trajectory (module docstring)."""

    trajectory_id: str
    #: (N, 3) points from the start (skin or entry) to the target.
    points_lps: np.ndarray
    #: (N,) arc length of each point, 0 at the bone entry.
    positions_mm: np.ndarray
    entry_lps: np.ndarray
    target_lps: np.ndarray
    bend_lps: Optional[np.ndarray]
    #: Unit direction of the straight introducer.
    direction: np.ndarray
    #: The cranio-caudal direction (unit, superior) made orthogonal to ``direction``.
    cranial: np.ndarray
    #: Where the introducer line leaves the body (None when the image does not show it).
    skin_lps: Optional[np.ndarray]
    zone_radius_mm: float

    @property
    def start_mm(self) -> float:
        return float(self.positions_mm[0])

    @property
    def end_mm(self) -> float:
        """Position of the target (the path length from the entry)."""
        return float(self.positions_mm[-1])

    # ------------------------------------------------------------------ walking the path
    def _segment(self, s_mm: float) -> int:
        """Index i of the segment (points i, i+1) holding position ``s_mm`` (the one after a vertex)."""
        pos = self.positions_mm
        i = int(np.searchsorted(pos, s_mm, side="right")) - 1
        return int(min(max(i, 0), len(pos) - 2))

    def point_at(self, s_mm: float) -> np.ndarray:
        """The path point at position ``s_mm``; beyond the ends the path goes on straight."""
        i = self._segment(s_mm)
        a, b = self.points_lps[i], self.points_lps[i + 1]
        length = float(self.positions_mm[i + 1] - self.positions_mm[i])
        return a + (b - a) * ((s_mm - float(self.positions_mm[i])) / length)

    def tangent_at(self, s_mm: float) -> np.ndarray:
        """Unit direction of the path at position ``s_mm`` (toward the target)."""
        i = self._segment(s_mm)
        return _unit(self.points_lps[i + 1] - self.points_lps[i])

    def clamp(self, s_mm: float) -> float:
        return float(min(max(s_mm, self.start_mm), self.end_mm + self.zone_radius_mm))

    # ------------------------------------------------------------------ planes
    def oblique_basis(self, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """(screen right, screen down) of the oblique plane spun ``angle_deg`` about the introducer."""
        a = math.radians(angle_deg)
        d, c = self.direction, self.cranial
        up = math.cos(a) * c + math.sin(a) * np.cross(d, c)
        return -d, -up

    def curve_angle_deg(self) -> Optional[float]:
        """The rotation whose oblique plane holds the whole path (None for a path on one line)."""
        off = self.points_lps - self.entry_lps
        off = off - np.outer(off @ self.direction, self.direction)
        k = int(np.argmax(np.linalg.norm(off, axis=1)))
        if float(np.linalg.norm(off[k])) < 0.1:
            return None
        w = _unit(off[k])
        c, e = self.cranial, np.cross(self.direction, self.cranial)
        return math.degrees(math.atan2(float(w @ e), float(w @ c)))

    def probe_basis(self, s_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(screen right, screen down, normal) of the probe's-eye plane at ``s_mm``: the normal is
        the path direction there; the view looks along it with the superior side up."""
        t = self.tangent_at(s_mm)
        up = _orthogonal_up(t, self.cranial)
        right = np.cross(t, up)
        return right, -up, t


def cranial_direction(plan: Optional[Plan], trajectory: Trajectory) -> np.ndarray:
    """The vertebra's superior direction ``s`` (patient superior when its landmarks are missing)."""
    from planner.trajectory import LandmarkError, vertebra_frame

    if plan is not None:
        try:
            return vertebra_frame(plan.level(trajectory.level_id)).s
        except (KeyError, LandmarkError):
            pass
    return SUPERIOR_LPS.copy()


def trajectory_axis(plan: Optional[Plan], trajectory: Trajectory, skin_lps: Optional[np.ndarray] = None,
                    step_mm: float = PATH_STEP_MM) -> TrajectoryAxis:
    """The walked path of ``trajectory``; raises :class:`planner.trajectory.PathError` (a ValueError)
    when the path has no direction (coinciding points)."""
    from planner.trajectory import trajectory_path

    path = trajectory_path(trajectory, plan)
    pts = path.polyline(step_mm)
    d = path.direction
    entry_idx = 0
    if skin_lps is not None:
        skin = np.asarray(skin_lps, dtype=float)
        if float((path.entry_lps - skin) @ d) > 1e-6:
            pts = np.vstack([skin[None, :], pts])
            entry_idx = 1
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    pos = np.concatenate([[0.0], np.cumsum(seg)])
    pos = pos - pos[entry_idx]
    cranial = _orthogonal_up(d, cranial_direction(plan, trajectory))
    return TrajectoryAxis(
        trajectory_id=trajectory.id, points_lps=pts, positions_mm=pos, entry_lps=path.entry_lps.copy(),
        target_lps=path.target_lps.copy(), bend_lps=None if path.bend_lps is None else path.bend_lps.copy(),
        direction=d.copy(), cranial=cranial, skin_lps=None if entry_idx == 0 else pts[0].copy(),
        zone_radius_mm=float(trajectory.params.zone_diameter_mm) / 2.0)


def skin_key(trajectory: Trajectory) -> tuple:
    """What the skin point depends on: the entry and the introducer direction's defining point."""
    other = trajectory.bend_lps if trajectory.bend_lps is not None else trajectory.target_lps
    return (tuple(trajectory.entry_lps), tuple(other))


def find_skin(trajectory: Trajectory, volume: Any) -> Optional[np.ndarray]:
    """Where the introducer line leaves the body in ``volume`` (None when not shown or not found)."""
    from planner.trajectory import skin_entry_point

    try:
        return skin_entry_point(trajectory, volume)
    except (ValueError, ArithmeticError):
        return None
