"""The session's derived results (no Qt): computed once, read by every view, panel and document.

:class:`PlanResults` is owned by the :class:`planner.session.Session` (``session.results``). It holds

* per trajectory the drawn shape (:func:`planner.trajectory.trajectory_shape`: instruments and
  ablation zone), which the slice views, the trajectory views, the 3D view and the fluoroscopy
  overlays draw;
* the virtual projections of the loaded volumes (:class:`planner.display.fluoro.VirtualProjections`),
  shared by the fluoroscopy views.

One rule drops what a change makes stale (:meth:`PlanResults.stale_trajectories`): a trajectory's own
change drops that trajectory; a change of the levels or of the settings (which shape every
trajectory) or a plan opened drops them all. :attr:`PlanResults.results_changed` is then emitted with
the ids dropped, so a reader recomputes only those. The results listen to the document before any
view (the Session creates them first); a reader that runs earlier still gets fresh values, because a
revision the results have not seen drops everything.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from planner.display.fluoro import VirtualProjections
from planner.document import Part, PlanChange, PlanDocument
from planner.events import Signal
from planner.plan import Trajectory
from planner.trajectory import TrajectoryShape, trajectory_shape


class PlanResults:
    def __init__(self, document: PlanDocument, images: Mapping[str, Any]) -> None:
        self.document = document
        #: The session's loaded images (the same mapping object, never a copy).
        self.images = images
        #: Emitted with the frozenset of trajectory ids whose results were dropped (recompute them).
        self.results_changed = Signal("PlanResults.results_changed")
        self.virtual_projections = VirtualProjections()
        self._shapes: dict[str, TrajectoryShape] = {}
        self._revision = document.revision
        #: Shapes computed (tests and benchmarks count them).
        self.shape_computations = 0
        document.changed.connect(self._on_plan_changed)

    # ------------------------------------------------------------------ the rule
    def stale_trajectories(self, change: PlanChange) -> Optional[frozenset[str]]:
        """The trajectory ids whose results ``change`` makes stale; None: every trajectory."""
        if change.touches(Part.LEVELS, Part.SETTINGS):
            return None
        return change.trajectories

    def _on_plan_changed(self, change: PlanChange) -> None:
        stale = self.stale_trajectories(change)
        self._revision = self.document.revision
        if stale is None:
            dropped = frozenset(self._shapes) | {t.id for t in self.document.plan.trajectories}
            self._shapes.clear()
        else:
            dropped = stale
            for tid in stale:
                self._shapes.pop(tid, None)
        if dropped:
            self.results_changed.emit(dropped)

    def _check_revision(self) -> None:
        if self._revision != self.document.revision:  # a change not seen yet: nothing cached is trusted
            self._shapes.clear()
            self._revision = self.document.revision

    def image_changed(self, key: str) -> None:
        """An image was added, replaced or removed (the Session calls it)."""
        if key not in self.images:
            self.virtual_projections.forget(key)

    # ------------------------------------------------------------------ reading
    def shape(self, trajectory: Union[Trajectory, str]) -> TrajectoryShape:
        """The drawn shape of a trajectory of the plan (by object or id)."""
        self._check_revision()
        tid = trajectory if isinstance(trajectory, str) else trajectory.id
        shape = self._shapes.get(tid)
        if shape is None:
            plan = self.document.plan
            shape = trajectory_shape(plan, plan.trajectory(tid))
            self.shape_computations += 1
            self._shapes[tid] = shape
        return shape

    def close(self) -> None:
        """Stop listening and drop everything (the session closes)."""
        self.document.changed.disconnect(self._on_plan_changed)
        self._shapes.clear()
        self.virtual_projections.close()
