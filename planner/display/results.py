"""The session's derived results (no Qt): computed once, read by every view, panel and document.

:class:`PlanResults` is owned by the :class:`planner.session.Session` (``session.results``). It holds

* per trajectory the drawn shape (:func:`planner.trajectory.trajectory_shape`: instruments and
  ablation zone), which the slice views, the trajectory views, the 3D view and the fluoroscopy
  overlays draw;
* per trajectory the metrics and checks (:func:`planner.checks.evaluate_trajectory` with the session's
  images, so a CT measures the pedicle), which the trajectory panel, the export buttons and the
  documents show (:meth:`PlanResults.report`, :meth:`PlanResults.plan_report`);
* per volume and orientation the slice geometry of the slice views
  (:class:`planner.display.slice_geometry.SliceFrame`, shared by every view showing that volume so);
* per trajectory and volume the walked path of the trajectory views
  (:func:`planner.display.trajectory_planes.trajectory_axis`, with the skin point found on that volume);
* per fluoroscopy image (and frame, levels and view) the plan fitted to the C-arm marks and drawn as
  it should appear (:func:`planner.display.fluoro.drawings_for_image`), and the plan on each virtual
  projection (:func:`planner.display.fluoro.drawing_for_projector`); any change of the plan but its
  eligibility, review or measurements drops them;
* the virtual projections of the loaded volumes (:class:`planner.display.fluoro.VirtualProjections`),
  shared by the fluoroscopy views.

One rule drops what a change makes stale (:meth:`PlanResults.stale`): a trajectory's own change drops
its shape, and its report and those of the trajectories on its level (the bipedicular checks look at
the partner); a change of the levels or of the settings (which shape and check every trajectory) or a
plan opened drops them all; a change of the case (the series' roles choose the image the checks
measure on) or of the loaded images drops every report. :attr:`PlanResults.results_changed` is then emitted with
the ids dropped, so a reader recomputes only those. The results listen to the document before any
view (the Session creates them first); a reader that runs earlier still gets fresh values, because a
revision the results have not seen drops everything.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from planner.checks import PlanReport, TrajectoryReport, evaluate_trajectory, level_summary
from planner.display.fluoro import PlanDrawing, VirtualProjections, drawing_for_projector, drawings_for_image
from planner.display.slice_geometry import SliceFrame
from planner.display.trajectory_planes import TrajectoryAxis, find_skin, skin_key, trajectory_axis
from planner.document import Part, PlanChange, PlanDocument
from planner.events import Signal
from planner.plan import Plan, Trajectory
from planner.trajectory import TrajectoryShape, trajectory_shape


class PlanResults:
    #: Skin points kept (each is a search along a line through a volume; a drag makes a new one per step
    #: only when the entry or the introducer's direction moves).
    SKINS_KEPT = 64

    def __init__(self, document: PlanDocument, images: Mapping[str, Any]) -> None:
        self.document = document
        #: The session's loaded images (the same mapping object, never a copy).
        self.images = images
        #: Emitted with the frozenset of trajectory ids whose results were dropped (recompute them).
        self.results_changed = Signal("PlanResults.results_changed")
        self.virtual_projections = VirtualProjections()
        self._shapes: dict[str, TrajectoryShape] = {}
        self._reports: dict[str, TrajectoryReport] = {}
        #: (trajectory id, volume key) -> the walked path; (volume key, skin key) -> the skin point
        self._axes: dict[tuple[str, str], TrajectoryAxis] = {}
        self._skins: dict[tuple, Any] = {}
        #: fluoroscopy drawings: key -> (the image or projector they are of, the drawings)
        self._drawings: dict[tuple, tuple[Any, Any]] = {}
        #: (volume key, orientation, mode) -> slice geometry
        self._frames: dict[tuple[str, str, str], SliceFrame] = {}
        #: trajectory id -> its level id, for the reports kept (a removed trajectory's partners)
        self._report_levels: dict[str, str] = {}
        self._revision = document.revision
        #: Shapes and reports computed (tests and benchmarks count them).
        self.shape_computations = 0
        self.report_computations = 0
        document.changed.connect(self._on_plan_changed)

    @classmethod
    def for_plan(cls, plan: Plan, images: Mapping[str, Any]) -> "PlanResults":
        """The results of a plan opened on its own (a command, a document built without the window):
        a read-only document of ``plan`` with ``images``."""
        return cls(PlanDocument(plan, read_only=True), images)

    # ------------------------------------------------------------------ the rule
    def stale(self, change: PlanChange) -> tuple[Optional[frozenset[str]], Optional[frozenset[str]]]:
        """(shape ids, report ids) that ``change`` makes stale; None: every trajectory's."""
        if change.touches(Part.LEVELS, Part.SETTINGS):
            return None, None
        shapes = change.trajectories
        if change.touches(Part.CASE):
            return shapes, None
        levels = set()
        plan = self.document.plan
        for tid in change.trajectories:
            level_id = self._report_levels.get(tid)
            if level_id is None:
                try:
                    level_id = plan.trajectory(tid).level_id
                except KeyError:  # removed, its level unknown here: its partners are unknown too
                    return shapes, None
            levels.add(level_id)
        partners = {tid for tid, lid in self._report_levels.items() if lid in levels}
        partners |= {t.id for t in plan.trajectories if t.level_id in levels}
        return shapes, frozenset(change.trajectories | partners)

    def _on_plan_changed(self, change: PlanChange) -> None:
        if change.touches(*(p for p in Part if p not in (Part.ELIGIBILITY, Part.REVIEW, Part.MEASUREMENTS))):
            self._drawings.clear()
        shapes, reports = self.stale(change)
        self._revision = self.document.revision
        dropped = self._drop(shapes, reports)
        if dropped:
            self.results_changed.emit(dropped)

    def _drop(self, shapes: Optional[frozenset[str]], reports: Optional[frozenset[str]]) -> frozenset[str]:
        """Forget stale results (None: all); returns the trajectory ids whose results are gone or changed."""
        current = {t.id for t in self.document.plan.trajectories}
        shape_ids = (set(self._shapes) | current) if shapes is None else set(shapes)
        report_ids = (set(self._reports) | current) if reports is None else set(reports)
        for tid in shape_ids:
            self._shapes.pop(tid, None)
        for key in [k for k in self._axes if k[0] in shape_ids]:
            del self._axes[key]
        for tid in report_ids:
            self._reports.pop(tid, None)
            self._report_levels.pop(tid, None)
        return frozenset(shape_ids | report_ids)

    def _check_revision(self) -> None:
        if self._revision != self.document.revision:  # a change not seen yet: nothing cached is trusted
            self._shapes.clear()
            self._reports.clear()
            self._report_levels.clear()
            self._axes.clear()
            self._drawings.clear()
            self._revision = self.document.revision

    def image_changed(self, key: str) -> None:
        """An image was added, replaced or removed (the Session calls it): every report may measure on
        other images now."""
        if key not in self.images:
            self.virtual_projections.forget(key)
        for k in [k for k in self._axes if k[1] == key]:
            del self._axes[k]
        for k in [k for k in self._skins if k[0] == key]:
            del self._skins[k]
        for k in [k for k in self._frames if k[0] == key]:
            del self._frames[k]
        self._drawings.clear()
        dropped = self._drop(frozenset(), None)
        if dropped:
            self.results_changed.emit(dropped)

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

    def slice_frame(self, volume_key: str, orientation: str, mode: str = "acquisition") -> SliceFrame:
        """The slice geometry of the loaded volume ``volume_key`` in ``orientation`` ("sagittal",
        "coronal", "axial"; ``mode`` "acquisition" or "patient"), shared by the views that show it."""
        key = (volume_key, orientation, mode)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = SliceFrame(self.images[volume_key], orientation, mode=mode)
        return frame

    def fluoro_drawings(self, image: Any, level_ids: Sequence[str], frame_index: int = 0,
                        view: Optional[str] = None) -> list[PlanDrawing]:
        """The plan of each level fitted to its marks on a C-arm image (a ProjectionImage) and drawn as
        it should appear there (errors as text)."""
        self._check_revision()
        key = ("image", id(image), frame_index, tuple(level_ids), view)
        hit = self._drawings.get(key)
        if hit is None or hit[0] is not image:
            plan = self.document.plan
            hit = self._drawings[key] = (image, drawings_for_image(plan, image, level_ids, self.shape, frame_index,
                                                                   view))
        return hit[1]

    def projector_drawing(self, projector: Any) -> PlanDrawing:
        """Every trajectory of the plan on a virtual projection (:class:`planner.fluoro.Projector`)."""
        self._check_revision()
        key = ("virtual", id(projector))
        hit = self._drawings.get(key)
        if hit is None or hit[0] is not projector:
            hit = self._drawings[key] = (projector, drawing_for_projector(self.document.plan, projector, self.shape))
        return hit[1]

    def trajectory_axis(self, trajectory: Union[Trajectory, str], volume_key: str) -> TrajectoryAxis:
        """The walked path of a trajectory as the trajectory views show it on the volume ``volume_key``
        (from the skin when the volume shows it); raises ValueError when the path has no direction."""
        self._check_revision()
        tid = trajectory if isinstance(trajectory, str) else trajectory.id
        axis = self._axes.get((tid, volume_key))
        if axis is None:
            plan = self.document.plan
            traj = plan.trajectory(tid)
            skin_at = (volume_key, skin_key(traj))
            if skin_at not in self._skins:
                if len(self._skins) > self.SKINS_KEPT:
                    self._skins.clear()
                self._skins[skin_at] = find_skin(traj, self.images[volume_key])
            axis = trajectory_axis(plan, traj, self._skins[skin_at])
            self._axes[(tid, volume_key)] = axis
        return axis

    def report(self, trajectory: Union[Trajectory, str]) -> TrajectoryReport:
        """The metrics and checks of a trajectory of the plan, with the session's images."""
        self._check_revision()
        tid = trajectory if isinstance(trajectory, str) else trajectory.id
        rep = self._reports.get(tid)
        if rep is None:
            plan = self.document.plan
            traj = plan.trajectory(tid)
            rep = evaluate_trajectory(plan, traj, self.images)
            self.report_computations += 1
            self._reports[tid] = rep
            self._report_levels[tid] = traj.level_id
        return rep

    def reports(self) -> dict[str, TrajectoryReport]:
        """Every trajectory's report, by id (in the plan's order)."""
        return {t.id: self.report(t.id) for t in self.document.plan.trajectories}

    def plan_report(self) -> PlanReport:
        """Every level (its landmarks) and every trajectory (metrics and checks), as
        :func:`planner.checks.evaluate_plan` gives them, from the reports kept here."""
        plan = self.document.plan
        order = {lv.id: i for i, lv in enumerate(plan.levels)}
        trajs = sorted(plan.trajectories, key=lambda t: (order.get(t.level_id, 1_000), t.side))
        return PlanReport([level_summary(lv) for lv in plan.levels], [self.report(t.id) for t in trajs])

    def close(self) -> None:
        """Stop listening and drop everything (the session closes)."""
        self.document.changed.disconnect(self._on_plan_changed)
        self._shapes.clear()
        self._reports.clear()
        self._axes.clear()
        self._skins.clear()
        self._frames.clear()
        self._drawings.clear()
        self.virtual_projections.close()
