"""Per-object geometry caches for the views, invalidated by ``PlanChange`` topics.

Trajectory instruments and ablation zones come from :mod:`planner.trajectory` when it is present
(``instrument_segments`` / ``ablation_zone``), otherwise straight segments entry -> bend -> target
with the TrajectoryParams diameters; :func:`planner.report.geometry.trajectory_geometry` does that
choice, so the views draw exactly what the reports draw. It is imported on first use (the report
package is heavy and not needed to show the first image).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from planner.document import PlanChange
from planner.plan import Plan, Trajectory

log = logging.getLogger(__name__)


def trajectory_geometry(plan: Plan, traj: Trajectory) -> Any:
    from planner.report.geometry import trajectory_geometry as _geom

    return _geom(plan, traj)


class TrajectoryCache:
    """Trajectory id -> TrajectoryGeometry, recomputed only for the trajectories a change names."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

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

    def get(self, plan: Plan, traj: Trajectory) -> Any:
        geom = self._cache.get(traj.id)
        if geom is None:
            try:
                geom = trajectory_geometry(plan, traj)
            except Exception:  # a geometry bug must not stop the views
                log.exception("trajectory geometry failed for %s", traj.id)
                from planner.report.geometry import fallback_geometry

                geom = fallback_geometry(traj)
            self._cache[traj.id] = geom
        return geom
