"""What the views say about the plan (no Qt): trajectory names, measurement texts, the level under a
point, and the trajectory and level the views follow."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from planner.plan import Measurement, Plan, Trajectory

#: A point within this radius of a level's body centre (mm) is "at" that level when it lies between no
#: level's endplates (display choice for the corner text).
LEVEL_NEAR_MM = 20.0
#: A point between a level's endplates and this close to its axis (mm) is inside that level.
LEVEL_AXIS_RADIUS_MM = 40.0


def format_person_name(pn: str) -> str:
    """A DICOM person name as "FAMILY, Given Middle"."""
    parts = [p for p in str(pn).split("^") if p]
    if len(parts) >= 2:
        return f"{parts[0].upper()}, {' '.join(parts[1:])}"
    return parts[0] if parts else ""


def format_date(d: str) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else unchanged."""
    d = (d or "").strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def angle_deg(points: np.ndarray) -> float:
    """Angle at the middle point of three points (degrees)."""
    p = np.asarray(points, dtype=float)
    a, b = p[0] - p[1], p[2] - p[1]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    cos = float(np.clip(a @ b / (na * nb), -1.0, 1.0))
    return math.degrees(math.acos(cos))


def measurement_text(m: Measurement, points: np.ndarray) -> str:
    """"12.3 mm" or "45.0°" for a measurement in LPS mm ("" when it has too few points)."""
    if m.kind == "distance" and len(points) >= 2:
        return f"{float(np.linalg.norm(points[1] - points[0])):.1f} mm"
    if m.kind == "angle" and len(points) >= 3:
        return f"{angle_deg(points[:3]):.1f}\u00b0"
    return ""


def trajectory_name(plan: Plan, traj: Trajectory) -> str:
    """"L4 left" (level name and side; "?" for a level the plan does not have)."""
    try:
        level = plan.level(traj.level_id).name
    except KeyError:
        level = "?"
    return f"{level} {traj.side}"


def active_trajectory(session: Any) -> Optional[Trajectory]:
    """The trajectory the views follow: the session's selected one, else the plan's first."""
    plan = session.document.plan
    tid = session.active_trajectory
    if tid:
        try:
            return plan.trajectory(tid)
        except KeyError:
            pass
    return plan.trajectories[0] if plan.trajectories else None


def default_level_id(session: Any) -> Optional[str]:
    """The level of the selected trajectory, else the first treated level, else the first level."""
    plan = session.document.plan
    tid = getattr(session, "active_trajectory", None)
    if tid:
        for t in plan.trajectories:
            if t.id == tid:
                return t.level_id
    for lv in plan.levels:
        if lv.treat:
            return lv.id
    return plan.levels[0].id if plan.levels else None


def level_at(plan: Plan, lps: np.ndarray) -> Optional[str]:
    """The level whose body contains the point (between its endplates), else the nearest body centre
    within :data:`LEVEL_NEAR_MM`; None when there is none."""
    best, best_d = None, LEVEL_NEAR_MM
    for lv in plan.levels:
        lm = lv.landmarks
        if lm.superior_endplate_lps is not None and lm.inferior_endplate_lps is not None:
            a = np.asarray(lm.inferior_endplate_lps, dtype=float)
            b = np.asarray(lm.superior_endplate_lps, dtype=float)
            axis = b - a
            L2 = float(axis @ axis)
            if L2 > 0:
                t = float((lps - a) @ axis) / L2
                if 0.0 <= t <= 1.0:
                    radial = np.linalg.norm((lps - a) - t * axis)
                    if radial < LEVEL_AXIS_RADIUS_MM:
                        return lv.name
        if lm.body_center_lps is not None:
            d = float(np.linalg.norm(lps - np.asarray(lm.body_center_lps)))
            if d < best_d:
                best, best_d = lv.name, d
    return best
