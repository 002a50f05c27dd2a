"""Trajectory geometry for the documents, from :mod:`planner.trajectory`, so the reports draw exactly
the instruments and the ablation zone that the planning views show.

A trajectory whose points do not define a path (:class:`planner.trajectory.PathError`, e.g. the entry
on the bend point) is drawn as straight segments entry -> bend -> target with a sphere of the zone
diameter around the target, and ``from_planner`` is False so the report can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.plan import Plan, Trajectory
from planner.trajectory import PathError, ablation_zone, instrument_segments


@dataclass
class InstrumentPath:
    """One instrument drawn as a polyline in LPS mm."""

    name: str  # "introducer", "cannula", "probe", ...
    points_lps: np.ndarray  # (n, 3)
    diameter_mm: float


@dataclass
class ZoneSphere:
    center_lps: np.ndarray
    radius_mm: float


@dataclass
class TrajectoryGeometry:
    instruments: list[InstrumentPath]
    zone: ZoneSphere
    #: True when planner.trajectory built the path; False for the straight drawing of a broken path.
    from_planner: bool

    def all_points_lps(self) -> np.ndarray:
        pts = [p.points_lps for p in self.instruments] + [self.zone.center_lps[None, :]]
        return np.vstack(pts)


def fallback_geometry(traj: Trajectory) -> TrajectoryGeometry:
    """Straight segments entry -> bend -> target (for a trajectory without a valid path)."""
    entry = np.asarray(traj.entry_lps, dtype=float)
    target = np.asarray(traj.target_lps, dtype=float)
    p = traj.params
    if traj.bend_lps is not None:
        bend = np.asarray(traj.bend_lps, dtype=float)
        instruments = [InstrumentPath("introducer", np.vstack([entry, bend]), p.introducer_diameter_mm),
                       InstrumentPath("cannula", np.vstack([bend, target]), p.cannula_diameter_mm)]
    else:
        instruments = [InstrumentPath("introducer", np.vstack([entry, target]), p.introducer_diameter_mm)]
    return TrajectoryGeometry(instruments, ZoneSphere(target, p.zone_diameter_mm / 2.0), False)


def trajectory_geometry(plan: Plan, traj: Trajectory) -> TrajectoryGeometry:
    """Instruments and ablation zone of ``traj`` (see the module text)."""
    try:
        segments = instrument_segments(plan, traj)
    except PathError:
        return fallback_geometry(traj)
    instruments = [InstrumentPath(s.name, np.asarray(s.points_lps, dtype=float).reshape(-1, 3), float(s.diameter_mm))
                   for s in segments if len(s.points_lps) >= 2]
    if not instruments:
        return fallback_geometry(traj)
    zone = ablation_zone(traj)
    return TrajectoryGeometry(instruments, ZoneSphere(np.asarray(zone.center_lps, dtype=float), float(zone.radius_mm)),
                              True)


def path_length_mm(geom: TrajectoryGeometry) -> float:
    """Length along the instruments from the entry to the active tip (polyline lengths summed)."""
    total = 0.0
    for inst in geom.instruments:
        if len(inst.points_lps) > 1:
            total += float(np.linalg.norm(np.diff(inst.points_lps, axis=0), axis=1).sum())
    return total
