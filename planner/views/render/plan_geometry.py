"""Per-object geometry caches for the views, invalidated by ``PlanChange`` topics.

Trajectory instruments and ablation zones come from :mod:`planner.trajectory`
(``instrument_segments(plan, trajectory)`` and ``ablation_zone(trajectory)``), the same functions the
reports use, so the views and the documents draw the same instruments. When that module is missing
or cannot build a path (e.g. coinciding points while a user drags), straight segments
entry -> bend -> target with the TrajectoryParams diameters are drawn instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from planner.document import PlanChange
from planner.plan import Plan, Trajectory

log = logging.getLogger(__name__)


@dataclass
class Instrument:
    name: str  # "introducer", "cannula", "probe"
    points_lps: np.ndarray  # (n, 3)
    diameter_mm: float


@dataclass
class Zone:
    center_lps: np.ndarray
    radius_mm: float


@dataclass
class TrajectoryShape:
    instruments: list[Instrument]
    zone: Zone
    #: True when planner.trajectory built it; False for the straight fallback.
    from_planner: bool


def straight_shape(traj: Trajectory) -> TrajectoryShape:
    entry = np.asarray(traj.entry_lps, dtype=float)
    target = np.asarray(traj.target_lps, dtype=float)
    p = traj.params
    if traj.bend_lps is not None:
        bend = np.asarray(traj.bend_lps, dtype=float)
        inst = [Instrument("introducer", np.vstack([entry, bend]), p.introducer_diameter_mm),
                Instrument("cannula", np.vstack([bend, target]), p.cannula_diameter_mm)]
    else:
        inst = [Instrument("introducer", np.vstack([entry, target]), p.introducer_diameter_mm)]
    return TrajectoryShape(inst, Zone(target, p.zone_diameter_mm / 2.0), False)


def trajectory_shape(plan: Plan, traj: Trajectory) -> TrajectoryShape:
    try:
        from planner import trajectory as tmod
    except ImportError:
        return straight_shape(traj)
    try:
        segs = tmod.instrument_segments(plan, traj)
        zone = tmod.ablation_zone(traj)
        inst = [Instrument(str(s.name), np.asarray(s.points_lps, dtype=float).reshape(-1, 3), float(s.diameter_mm))
                for s in segs if len(np.asarray(s.points_lps)) >= 2]
        if not inst:
            return straight_shape(traj)
        return TrajectoryShape(inst, Zone(np.asarray(zone[0], dtype=float), float(zone[1])), True)
    except (ValueError, ArithmeticError, KeyError, AttributeError, TypeError) as exc:
        log.debug("trajectory %s drawn straight: %s", traj.id, exc)
        return straight_shape(traj)


class TrajectoryCache:
    """Trajectory id -> TrajectoryShape, recomputed only for the trajectories a change names."""

    def __init__(self) -> None:
        self._cache: dict[str, TrajectoryShape] = {}

    def invalidate(self, change: Optional[PlanChange] = None) -> set[str]:
        """Forget what ``change`` touched (everything when None); returns the ids forgotten."""
        if change is None or change.source == "load" or change.touches("settings") \
                or any(t[0] in ("trajectories", "levels", "level") for t in change.topics):
            ids = set(self._cache)
            self._cache.clear()
            return ids
        ids = {t[1] for t in change.topics if t[0] == "trajectory" and len(t) > 1}
        for i in ids:
            self._cache.pop(i, None)
        return ids

    def get(self, plan: Plan, traj: Trajectory) -> TrajectoryShape:
        shape = self._cache.get(traj.id)
        if shape is None:
            shape = trajectory_shape(plan, traj)
            self._cache[traj.id] = shape
        return shape
