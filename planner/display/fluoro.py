"""The Qt-free half of the fluoroscopy guidance (the widgets are in ``planner/views/fluoro_*.py``).

* **Marking** (:data:`GUIDED_MARKS`, :class:`MarkSequence`): on an AP image the physician clicks the
  patient's left and right pedicle and the spinous process, on a lateral image the posterior and the
  anterior wall of the chosen level (:func:`planner.fluoro.fit_view` needs the pedicles or the walls;
  the spinous process lets it report a rotated vertebra). Every click is one document edit.
* **Overlay** (:func:`drawings_for_image`): :func:`planner.fluoro.image_overlays` fits the marks to
  the plan's landmarks of the level and projects each of its trajectories: the instruments (introducer,
  cannula, probe), the ablation zone (a circle, or an ellipse after an affine fit) and a label. When
  the fit is not possible its reason is given instead.
* **Virtual projections** (:class:`VirtualProjections`): :func:`planner.fluoro.virtual_projection`
  of a volume, computed in a worker thread and kept in a small cache (one per session:
  ``PlanResults.virtual_projections``), shown as a projection image whose plan overlay comes straight
  from the :class:`planner.fluoro.Projector` (no marks needed).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from planner import fluoro
from planner.display.annotations import trajectory_name
from planner.fluoro import FluoroFit, FluoroFitError, Projector, TrajectoryOverlay
from planner.imaging.volume import ImageInfo, ProjectionGeometry, ProjectionImage
from planner.plan import Plan, Trajectory
from planner.trajectory import TrajectoryShape, is_ct

log = logging.getLogger(__name__)

#: The landmarks clicked, in order, on each view (what fit_view needs, plus the spinous process on
#: AP, which lets the fit report a rotated vertebra).
GUIDED_MARKS: dict[str, tuple[str, ...]] = {
    "AP": ("pedicle_left", "pedicle_right", "spinous_process"),
    "LAT": ("posterior_wall", "anterior_wall"),
}

#: How each mark is asked for.
MARK_TEXT = {
    "pedicle_left": "the centre of the patient's left pedicle",
    "pedicle_right": "the centre of the patient's right pedicle",
    "spinous_process": "the spinous process (the tip of its teardrop)",
    "posterior_wall": "the posterior wall at mid-height",
    "anterior_wall": "the anterior wall at mid-height",
    "superior_endplate": "the centre of the superior endplate",
    "inferior_endplate": "the centre of the inferior endplate",
    "body_center": "the centre of the body",
}

#: Short names of the marks drawn beside them.
MARK_SHORT = {
    "pedicle_left": "L pedicle", "pedicle_right": "R pedicle", "spinous_process": "spinous",
    "posterior_wall": "post. wall", "anterior_wall": "ant. wall", "superior_endplate": "sup. endplate",
    "inferior_endplate": "inf. endplate", "body_center": "body centre",
}

#: Reduction along the rays of a virtual projection: CT as an attenuation sum ("drr"); MR as the mean
#: intensity (a maximum-intensity projection of a T2 is dominated by fat and fluid and hides the bodies).
VIRTUAL_MODE = {"CT": "drr", "MR": "mean"}
VIRTUAL_MODE_TEXT = {"drr": "DRR", "mean": "mean", "mip": "MIP"}


def panel_view_name(title: str) -> str:
    """"AP" or "LAT" from a fluoroscopy panel's title ("AP", "Lateral", ...)."""
    t = (title or "").strip().upper()
    return "LAT" if t.startswith("LAT") or t in ("LL", "RL") else "AP"


def _image_side(kind: str, orientation: Sequence[str]) -> str:
    """Where a left/right pedicle lies on the image, from the columns' patient direction."""
    side = {"pedicle_left": "L", "pedicle_right": "R"}.get(kind)
    if side is None:
        return ""
    col = str(orientation[0]).upper() if orientation else ""
    if "L" in col or "R" in col:
        right = side in col  # columns grow toward this side: it lies on the image's right
        return " (image right)" if right else " (image left)"
    return " (image right, usual display)" if side == "L" else " (image left, usual display)"


def mark_prompt(kind: str, level_name: str, index: int, total: int, orientation: Sequence[str] = ()) -> str:
    what = MARK_TEXT.get(kind, kind.replace("_", " "))
    return f"Click {what} of {level_name}{_image_side(kind, orientation)} ({index + 1} of {total}) \u00b7 Esc cancels"


@dataclass
class MarkSequence:
    """A guided marking in progress on one image."""

    level_id: str
    level_name: str
    kinds: tuple[str, ...]
    index: int = 0

    @property
    def kind(self) -> str:
        return self.kinds[self.index]

    @property
    def done(self) -> bool:
        return self.index >= len(self.kinds)


# ====================================================================== overlay geometry
@dataclass
class TrajectoryDrawing:
    label: str
    overlay: TrajectoryOverlay
    #: (instrument name, (n, 2) pixels) along the path.
    instruments: list[tuple[str, np.ndarray]]


@dataclass
class PlanDrawing:
    """What is drawn of one level on one image (or of the whole plan on a virtual projection)."""

    level_name: str
    trajectories: list[TrajectoryDrawing] = field(default_factory=list)
    #: The reason nothing is drawn (the FluoroFitError message), else "".
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    fit: Optional[FluoroFit] = None
    n_marks: int = 0


ShapeOf = Callable[[Trajectory], TrajectoryShape]


def _drawings(plan: Plan, fit: FluoroFit, overlays: list[TrajectoryOverlay], shape_of: ShapeOf) -> list[TrajectoryDrawing]:
    by_id = {t.id: t for t in plan.trajectories}
    out = []
    for ov in overlays:
        traj = by_id.get(ov.trajectory_id)
        if traj is None:
            continue
        shape = shape_of(traj)
        inst = [(i.name, fit.project(i.points_lps)) for i in shape.instruments]
        out.append(TrajectoryDrawing(trajectory_name(plan, traj), ov, inst))
    return out


def drawings_for_image(plan: Plan, image: ProjectionImage, level_ids: Sequence[str], shape_of: ShapeOf,
                       frame_index: int = 0, view: Optional[str] = None) -> list[PlanDrawing]:
    """The plan of each level fitted to its marks on ``image`` (errors as text, never raised);
    ``shape_of`` gives each trajectory's drawn shape (the session's results)."""
    out = []
    for lid in level_ids:
        try:
            level = plan.level(lid)
        except KeyError:
            continue
        n_marks = len(fluoro.marks_for_image(plan, image.sop_instance_uid, lid, frame_index))
        try:
            res = fluoro.image_overlays(plan, image, lid, frame_index=frame_index, view=view)
        except (FluoroFitError, ValueError, np.linalg.LinAlgError) as exc:
            out.append(PlanDrawing(level.name, error=str(exc), n_marks=n_marks))
            continue
        d = PlanDrawing(level.name, _drawings(plan, res.fit, res.overlays, shape_of), warnings=list(res.fit.warnings),
                        fit=res.fit, n_marks=n_marks)
        if not d.trajectories:
            d.error = f"{level.name} has no trajectory to draw"
        out.append(d)
    return out


def drawing_for_projector(plan: Plan, projector: Projector, shape_of: ShapeOf) -> PlanDrawing:
    """Every trajectory of the plan on a virtual projection (no marks: the projection is exact)."""
    fit = projector.as_fit()
    return PlanDrawing("", _drawings(plan, fit, projector.plan_overlays(plan), shape_of), fit=fit)


# ====================================================================== virtual projections
@dataclass
class VirtualResult:
    image: ProjectionImage
    projector: Projector
    mode: str


def virtual_mode_for(volume: Any) -> str:
    return VIRTUAL_MODE["CT"] if is_ct(volume) else VIRTUAL_MODE["MR"]


def make_virtual(volume: Any, view: str, mode: str) -> VirtualResult:
    """Compute a virtual projection and wrap it as a projection image (pixel spacing in patient mm:
    a parallel projection has no magnification)."""
    img, proj = fluoro.virtual_projection(volume, view, None, mode=mode)
    src = volume.info
    desc = f"Virtual {'AP' if view == 'AP' else 'lateral'} ({VIRTUAL_MODE_TEXT.get(mode, mode)}) from " \
           f"{src.series_description or 'the volume'}"
    info = ImageInfo(modality=src.modality, study_instance_uid=src.study_instance_uid,
                     frame_of_reference_uid=src.frame_of_reference_uid, series_description=desc,
                     patient_name=src.patient_name, patient_id=src.patient_id, study_date=src.study_date)
    orientation = ("L", "F") if view == "AP" else ("P", "F")
    geom = ProjectionGeometry(pixel_spacing=(float(proj.spacing_mm[1]), float(proj.spacing_mm[0])),
                              view_position=view, patient_orientation=orientation)
    return VirtualResult(ProjectionImage(img, geom, info), proj, mode)


class VirtualProjections:
    """Virtual projections computed in one worker thread, the last few kept (switching is instant).

    Keyed by the image key, the volume object, the view and the mode; a replaced volume (same key)
    is computed again."""

    KEEP = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[Any, Future]] = OrderedDict()
        self._executor: Optional[ThreadPoolExecutor] = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bvn-virtual-projection")
        return self._executor

    def request(self, key: str, volume: Any, view: str, mode: str) -> Future:
        """The (possibly running or finished) computation of one projection."""
        ck = (key, id(volume), view, mode)
        with self._lock:
            entry = self._entries.get(ck)
            if entry is not None and entry[0]() is volume and not entry[1].cancelled():
                self._entries.move_to_end(ck)
                return entry[1]
            fut = self._pool().submit(make_virtual, volume, view, mode)
            self._entries[ck] = (weakref.ref(volume), fut)
            while len(self._entries) > self.KEEP:
                _, (_, old) = self._entries.popitem(last=False)
                old.cancel()
            return fut

    def clear(self) -> None:
        with self._lock:
            for _, fut in self._entries.values():
                fut.cancel()
            self._entries.clear()

    def forget(self, key: str) -> None:
        """Drop the projections of the image ``key`` (it was removed)."""
        with self._lock:
            for ck in [ck for ck in self._entries if ck[0] == key]:
                self._entries.pop(ck)[1].cancel()

    def close(self) -> None:
        """Drop everything and stop the worker (a computation running finishes in the background)."""
        self.clear()
        with self._lock:
            pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


