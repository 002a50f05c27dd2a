"""Per-object geometry caches for the views, invalidated by ``PlanChange`` topics.

Trajectory instruments and ablation zones come from :func:`planner.trajectory.trajectory_shape`, the
function the reports use, so the views and the documents draw the same instruments (straight
segments entry -> bend -> target when the points do not define a path, e.g. while a user drags).
"""

from __future__ import annotations

from typing import Optional

from planner.document import PlanChange
from planner.plan import Plan, Trajectory
from planner.trajectory import TrajectoryShape, trajectory_shape

__all__ = ["TrajectoryCache", "TrajectoryShape", "trajectory_shape"]


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
