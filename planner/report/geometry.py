"""Trajectory geometry for the documents, taken from :mod:`planner.trajectory` when it is present.

The reports draw exactly the instruments and the ablation zone that the planning views show. When
this build has no :mod:`planner.trajectory` module (it is written in parallel), a straight-segment
fallback is used: entry -> bend (introducer) and bend -> target (cannula), and a sphere of the
trajectory's zone diameter around the target; the report says so.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from planner.plan import Plan, Trajectory


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
    #: True when planner.trajectory provided the geometry; False for the straight fallback.
    from_planner: bool

    def all_points_lps(self) -> np.ndarray:
        pts = [p.points_lps for p in self.instruments] + [self.zone.center_lps[None, :]]
        return np.vstack(pts)


def _trajectory_module() -> Any:
    try:
        return importlib.import_module("planner.trajectory")
    except ImportError:
        return None


def _as_points(value: Any) -> Optional[np.ndarray]:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        return None
    return arr


def _attr(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return None


def _from_module(mod: Any, plan: Plan, traj: Trajectory) -> Optional[TrajectoryGeometry]:
    seg_fn = getattr(mod, "instrument_segments", None)
    zone_fn = getattr(mod, "ablation_zone", None)
    if seg_fn is None or zone_fn is None:
        return None
    segments = _call(seg_fn, plan, traj)
    zone = _call(zone_fn, plan, traj)
    if segments is None or zone is None:
        return None
    instruments: list[InstrumentPath] = []
    items = segments.items() if isinstance(segments, dict) else enumerate(segments)
    for key, seg in items:
        pts = None
        if not isinstance(seg, np.ndarray):
            pts = _as_points(_attr(seg, "points_lps", "points", "polyline_lps"))
        if pts is None:
            start = _attr(seg, "start_lps", "start")
            end = _attr(seg, "end_lps", "end")
            pts = _as_points([start, end]) if start is not None and end is not None else _as_points(seg)
        if pts is None:
            continue
        name = _attr(seg, "name", "kind", "instrument")
        diameter = _attr(seg, "diameter_mm", "diameter")
        instruments.append(InstrumentPath(str(name if name is not None else key), pts,
                                          float(diameter) if diameter is not None else traj.params.cannula_diameter_mm))
    center = _as_points(_attr(zone, "center_lps", "center"))
    radius = _attr(zone, "radius_mm", "radius")
    if radius is None:
        diam = _attr(zone, "diameter_mm", "diameter")
        radius = float(diam) / 2 if diam is not None else None
    if not instruments or center is None or radius is None:
        return None
    return TrajectoryGeometry(instruments, ZoneSphere(center[0], float(radius)), True)


def _call(fn: Any, plan: Plan, traj: Trajectory) -> Any:
    for args in ((plan, traj), (traj,), (traj, plan)):
        try:
            return fn(*args)
        except TypeError:
            continue
    return None


def fallback_geometry(traj: Trajectory) -> TrajectoryGeometry:
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
    """Instruments and ablation zone of ``traj`` (planner.trajectory when present, else the fallback)."""
    mod = _trajectory_module()
    if mod is not None:
        try:
            geom = _from_module(mod, plan, traj)
        except (ValueError, ArithmeticError, KeyError):
            geom = None
        if geom is not None:
            return geom
    return fallback_geometry(traj)


def path_length_mm(geom: TrajectoryGeometry) -> float:
    """Length along the instruments from the entry to the active tip (polyline lengths summed)."""
    total = 0.0
    for inst in geom.instruments:
        if len(inst.points_lps) > 1:
            total += float(np.linalg.norm(np.diff(inst.points_lps, axis=0), axis=1).sum())
    return total
