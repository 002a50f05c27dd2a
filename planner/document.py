"""The editable plan: every user edit, with undo/redo, change events and the audit trail.

:class:`PlanDocument` wraps a :class:`planner.plan.Plan`. Views never mutate the plan directly;
they call the typed edit methods below, which

* validate the new values (pydantic) and leave the plan unchanged when a value is refused,
* record an undo step (a snapshot of the plan before the edit; plans are a few kB). Edits that
  share a ``merge_key`` with the previous step merge into it, so a drag is one undo step:
  a view creates a fresh key when the mouse button goes down and reuses it while dragging,
* append an entry to the audit trail (who changed what, when; not undone by undo),
* emit :attr:`PlanDocument.changed` with a :class:`PlanChange` that names what changed with typed
  ids (``change.trajectories``, ``change.levels``, ...) and parts (``Part.SETTINGS in change.parts``),
  so a view updates only what it shows.

After undo/redo the plan objects are replaced by restored copies: views must look objects up by
id (``doc.plan.level(id)``) on each change instead of keeping references.
"""

from __future__ import annotations

import getpass
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from pydantic import ValidationError

from planner.events import Signal
from planner.plan import (
    LANDMARK_NAMES,
    AuditEntry,
    Comment,
    EndplateFinding,
    FluoroCalibration,
    FluoroLandmark,
    Landmarks,
    Level,
    Measurement,
    Plan,
    SignOff,
    Trajectory,
    TrajectoryParams,
    now_iso,
)
from planner.settings import LEVEL_ORDER, PlanningSettings

log = logging.getLogger(__name__)



class Part(str, Enum):
    """The parts of a plan a change can name. Items with ids (levels, trajectories, measurements, C-arm
    marks) are named one by one in :class:`PlanChange`; the others change as a whole."""

    LEVELS = "levels"
    TRAJECTORIES = "trajectories"
    MEASUREMENTS = "measurements"
    FLUORO_LANDMARKS = "fluoro_landmarks"
    CASE = "case"
    ELIGIBILITY = "eligibility"
    SETTINGS = "settings"
    REVIEW = "review"
    FLUORO_CALIBRATIONS = "fluoro_calibrations"


#: The parts whose items have ids: Part -> the PlanChange field (and Plan list) that holds them.
ITEM_PARTS = {Part.LEVELS: "levels", Part.TRAJECTORIES: "trajectories", Part.MEASUREMENTS: "measurements",
              Part.FLUORO_LANDMARKS: "fluoro_landmarks"}
#: The parts that change as a whole: Part -> the Plan fields it covers.
WHOLE_PARTS = {Part.CASE: ("case", "author"), Part.ELIGIBILITY: ("eligibility",), Part.SETTINGS: ("settings",),
               Part.REVIEW: ("review",), Part.FLUORO_CALIBRATIONS: ("fluoro_calibrations",)}


class PlanEditError(ValueError):
    """An edit was refused; the message says which value and why. The plan is unchanged."""


class ReadOnlyError(PlanEditError):
    """The plan is open read-only (review mode): only review comments and sign-off are allowed."""


@dataclass(frozen=True)
class PlanChange:
    """What one edit, undo, redo or opened plan changed (``source``: "edit", "undo", "redo", "load").

    The ids of the items that changed (added, edited or removed) are in ``levels``, ``trajectories``,
    ``measurements`` and ``fluoro_landmarks``; ``lists`` names the item lists whose membership or order
    changed; ``parts`` the parts that changed as a whole (case, eligibility, settings, review,
    calibrations). An opened plan (``source == "load"``) changes everything: :attr:`everything`."""

    action: str
    source: str = "edit"
    levels: frozenset[str] = frozenset()
    trajectories: frozenset[str] = frozenset()
    measurements: frozenset[str] = frozenset()
    fluoro_landmarks: frozenset[str] = frozenset()
    lists: frozenset[Part] = frozenset()
    parts: frozenset[Part] = frozenset()

    @property
    def everything(self) -> bool:
        """True for an opened plan: every part and item may have changed."""
        return self.source == "load"

    def ids(self, part: Part) -> frozenset[str]:
        """The ids of the items of ``part`` (levels, trajectories, ...) this change names."""
        return getattr(self, ITEM_PARTS[part])

    def touches(self, *parts: Part) -> bool:
        """True if the change concerns any of ``parts`` (an item, the list or the whole part)."""
        if self.everything:
            return True
        for part in parts:
            if part in self.parts or part in self.lists or (part in ITEM_PARTS and self.ids(part)):
                return True
        return False

    def list_changed(self, part: Part) -> bool:
        """True when items of ``part`` were added, removed or reordered (or a plan was opened)."""
        return self.everything or part in self.lists

    @staticmethod
    def of(action: str, source: str = "edit", *, levels: Iterable[str] = (), trajectories: Iterable[str] = (),
           measurements: Iterable[str] = (), fluoro_landmarks: Iterable[str] = (), lists: Iterable[Part] = (),
           parts: Iterable[Part] = ()) -> "PlanChange":
        return PlanChange(action, source, frozenset(levels), frozenset(trajectories), frozenset(measurements),
                          frozenset(fluoro_landmarks), frozenset(Part(p) for p in lists),
                          frozenset(Part(p) for p in parts))


@dataclass
class _UndoStep:
    action: str
    merge_key: Optional[str]
    before: Plan
    after: Optional[Plan] = None
    before_state: int = 0
    after_state: int = 0


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def diff_change(before: Plan, after: Plan, action: str = "", source: str = "edit") -> PlanChange:
    """What differs between two plans, as a :class:`PlanChange` (used after undo/redo and by tests)."""
    b, a = before.model_dump(mode="json"), after.model_dump(mode="json")
    ids: dict[Part, set[str]] = {}
    lists: set[Part] = set()
    for part, section in ITEM_PARTS.items():
        bi = {it["id"]: it for it in b[section]}
        ai = {it["id"]: it for it in a[section]}
        ids[part] = {item_id for item_id in bi.keys() | ai.keys() if bi.get(item_id) != ai.get(item_id)}
        if [it["id"] for it in b[section]] != [it["id"] for it in a[section]]:
            lists.add(part)
    parts = {part for part, fields in WHOLE_PARTS.items() if any(b[f] != a[f] for f in fields)}
    return PlanChange.of(action, source, levels=ids[Part.LEVELS], trajectories=ids[Part.TRAJECTORIES],
                         measurements=ids[Part.MEASUREMENTS], fluoro_landmarks=ids[Part.FLUORO_LANDMARKS],
                         lists=lists, parts=parts)


class PlanDocument:
    """An open plan with undo/redo, change events, dirty state and audit trail."""

    #: Maximum number of undo steps kept.
    UNDO_LIMIT = 200

    def __init__(self, plan: Optional[Plan] = None, *, user: str = "", read_only: bool = False) -> None:
        self._plan = plan if plan is not None else Plan()
        self.user = user or _default_user()
        self.read_only = read_only
        self.path: Optional[str] = None
        self.changed = Signal("PlanDocument.changed")
        #: Emitted with the new dirty flag when it flips.
        self.dirty_changed = Signal("PlanDocument.dirty_changed")
        #: Emitted when undo/redo availability or texts change.
        self.undo_changed = Signal("PlanDocument.undo_changed")
        self._undo: list[_UndoStep] = []
        self._redo: list[_UndoStep] = []
        self._state = 0
        self._state_counter = 0
        self._saved_state = 0
        self._in_edit = False
        #: Set by the Session: returns the CaseInfo fields that record the loaded images ({} when none).
        #: The first edit of a plan whose case has no series records them in the same undo step.
        self.case_fields: Optional[Callable[[], dict[str, Any]]] = None

    # ------------------------------------------------------------------ state
    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def is_dirty(self) -> bool:
        return self._state != self._saved_state

    @property
    def revision(self) -> int:
        """Changes whenever the content changes (edit, undo, redo, load); for autosave and caches."""
        return self._state

    def mark_saved(self) -> None:
        was = self.is_dirty
        self._saved_state = self._state
        if was:
            self.dirty_changed.emit(False)

    def replace_plan(self, plan: Plan, *, read_only: Optional[bool] = None, path: Optional[str] = None,
                     dirty: bool = False) -> None:
        """Open another plan in this document: clears undo history; views reload everything."""
        self._plan = plan
        if read_only is not None:
            self.read_only = read_only
        self.path = path
        self._undo.clear()
        self._redo.clear()
        self._state = self._next_state()
        self._saved_state = -1 if dirty else self._state
        self.changed.emit(PlanChange("Open plan", "load"))
        self.undo_changed.emit()
        self.dirty_changed.emit(self.is_dirty)

    def _next_state(self) -> int:
        self._state_counter += 1
        return self._state_counter

    # ------------------------------------------------------------------ undo / redo
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].action if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].action if self._redo else ""

    def undo(self) -> bool:
        if not self._undo:
            return False
        step = self._undo.pop()
        step.after = self._plan
        step.after_state = self._state
        self._restore(step.before, step.before_state, f"Undo: {step.action}", "undo")
        self._redo.append(step)
        self.undo_changed.emit()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        step = self._redo.pop()
        assert step.after is not None
        current = self._plan
        self._restore(step.after, step.after_state, f"Redo: {step.action}", "redo")
        step.before = current
        self._undo.append(step)
        self.undo_changed.emit()
        return True

    def _restore(self, snapshot: Plan, state: int, action: str, source: str) -> None:
        was_dirty = self.is_dirty
        before = self._plan
        restored = snapshot.model_copy(deep=True)
        restored.audit = before.audit
        self._plan = restored
        self._state = state
        self._audit(action)
        self.changed.emit(diff_change(before, restored, action, source))
        if was_dirty != self.is_dirty:
            self.dirty_changed.emit(self.is_dirty)

    # ------------------------------------------------------------------ edit core
    @contextmanager
    def edit(self, action: str, *, levels: Iterable[str] = (), trajectories: Iterable[str] = (),
             measurements: Iterable[str] = (), fluoro_landmarks: Iterable[str] = (), lists: Iterable[Part] = (),
             parts: Iterable[Part] = (), merge_key: Optional[str] = None, review: bool = False,
             detail: str = "") -> Iterator[Plan]:
        """Run one user edit on the live plan; on any error the plan is restored and
        :class:`PlanEditError` is raised. Nested edits join the outer one. The keyword arguments name
        what the edit changes (see :class:`PlanChange`): they are emitted with :attr:`changed`."""
        if self._in_edit:
            yield self._plan
            return
        if self.read_only and not review:
            raise ReadOnlyError(f"{action}: the plan is open read-only (review mode)")
        was_dirty = self.is_dirty
        snapshot = self._plan.model_copy(deep=True)
        self._in_edit = True
        try:
            yield self._plan
            if not review and self.case_fields is not None and not self._plan.case.series:
                fields = self.case_fields()
                for name, value in fields.items():
                    setattr(self._plan.case, name, value)
                if fields:
                    parts = [*parts, Part.CASE]
        except ValidationError as exc:
            self._rollback(snapshot)
            raise PlanEditError(f"{action}: {_format_validation_error(exc)}") from None
        except (KeyError, ValueError, TypeError) as exc:
            self._rollback(snapshot)
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise PlanEditError(f"{action}: {msg}") from None
        except BaseException:
            self._rollback(snapshot)
            raise
        finally:
            self._in_edit = False
        self._plan.modified = now_iso()
        top = self._undo[-1] if self._undo else None
        merged = (merge_key is not None and top is not None and top.merge_key == merge_key
                  and not self._redo and top.after_state == self._state)
        new_state = self._next_state()
        if merged:
            assert top is not None
            top.after_state = new_state
            self._touch_last_audit()
        else:
            snapshot.audit = []
            self._undo.append(_UndoStep(action, merge_key, snapshot, None, self._state, new_state))
            del self._undo[: -self.UNDO_LIMIT]
            self._audit(action, detail)
        self._redo.clear()
        self._state = new_state
        self.changed.emit(PlanChange.of(action, "edit", levels=levels, trajectories=trajectories,
                                        measurements=measurements, fluoro_landmarks=fluoro_landmarks, lists=lists,
                                        parts=parts))
        self.undo_changed.emit()
        if not was_dirty:
            self.dirty_changed.emit(True)

    def _rollback(self, snapshot: Plan) -> None:
        snapshot.audit = self._plan.audit
        self._plan = snapshot

    def _audit(self, action: str, detail: str = "") -> None:
        self._plan.audit.append(AuditEntry(user=self.user, action=action, detail=detail))

    def _touch_last_audit(self) -> None:
        if self._plan.audit:
            self._plan.audit[-1].at = now_iso()

    # ------------------------------------------------------------------ case
    def set_case(self, **fields: Any) -> None:
        """Set case fields (patient_name, study_instance_uid, series, ...)."""
        with self.edit("Edit case details", parts=[Part.CASE], detail=", ".join(sorted(fields))) as plan:
            for name, value in fields.items():
                if name not in type(plan.case).model_fields:
                    raise ValueError(f"unknown case field {name!r}")
                setattr(plan.case, name, value)

    def set_author(self, author: str) -> None:
        with self.edit("Set plan author", parts=[Part.CASE]) as plan:
            plan.author = author

    # ------------------------------------------------------------------ levels
    def add_level(self, name: str, landmarks: Optional[Landmarks | dict] = None, **fields: Any) -> str:
        level = Level(name=name, landmarks=landmarks or Landmarks(), **fields)
        with self.edit(f"Add level {name}", levels=[level.id], lists=[Part.LEVELS]) as plan:
            if plan.level_by_name(name) is not None:
                raise ValueError(f"a level named {name} already exists")
            plan.levels.append(level)
            self._sort_levels(plan)
        return level.id

    def replace_levels(self, levels: Sequence[Level | dict], action: str = "Label levels") -> None:
        """Replace all levels at once (e.g. accepting the automatic labelling): one undo step.
        Trajectories of levels that no longer exist are removed."""
        new = [lv if isinstance(lv, Level) else Level.model_validate(lv) for lv in levels]
        names = [lv.name for lv in new]
        if len(set(names)) != len(names):
            raise PlanEditError(f"{action}: duplicate level names {names}")
        ids = {lv.id for lv in new} | {lv.id for lv in self._plan.levels}
        kept = {lv.id for lv in new}
        dropped = [t.id for t in self._plan.trajectories if t.level_id not in kept]
        with self.edit(action, levels=ids, trajectories=dropped, lists=[Part.LEVELS, Part.TRAJECTORIES]) as plan:
            plan.levels = new
            self._sort_levels(plan)
            keep = {lv.id for lv in new}
            plan.trajectories = [t for t in plan.trajectories if t.level_id in keep]

    def remove_level(self, level_id: str) -> None:
        dropped = [t.id for t in self._plan.trajectories if t.level_id == level_id]
        with self.edit("Remove level", levels=[level_id], trajectories=dropped,
                       lists=[Part.LEVELS, Part.TRAJECTORIES] if dropped else [Part.LEVELS]) as plan:
            level = plan.level(level_id)
            plan.levels.remove(level)
            plan.trajectories = [t for t in plan.trajectories if t.level_id != level_id]
            plan.review.comments = [c for c in plan.review.comments
                                    if not (c.anchor_kind == "level" and c.anchor_id == level_id)]

    def rename_level(self, level_id: str, name: str) -> None:
        with self.edit(f"Rename level to {name}", levels=[level_id], lists=[Part.LEVELS]) as plan:
            other = plan.level_by_name(name)
            if other is not None and other.id != level_id:
                raise ValueError(f"a level named {name} already exists")
            plan.level(level_id).name = name
            self._sort_levels(plan)

    def set_landmark(self, level_id: str, landmark: str, point_lps: Optional[Sequence[float]],
                     *, merge_key: Optional[str] = None) -> None:
        if landmark not in LANDMARK_NAMES:
            raise PlanEditError(f"unknown landmark {landmark!r}; expected one of {', '.join(LANDMARK_NAMES)}")
        value = None if point_lps is None else tuple(float(v) for v in point_lps)
        with self.edit(f"Move {landmark.removesuffix('_lps').replace('_', ' ')}", levels=[level_id],
                       merge_key=merge_key) as plan:
            setattr(plan.level(level_id).landmarks, landmark, value)

    def set_landmarks(self, level_id: str, landmarks: Landmarks | dict, action: str = "Set landmarks") -> None:
        lm = landmarks if isinstance(landmarks, Landmarks) else Landmarks.model_validate(landmarks)
        with self.edit(action, levels=[level_id]) as plan:
            plan.level(level_id).landmarks = lm

    def set_endplate(self, level_id: str, which: str, **fields: Any) -> None:
        """Set the finding of the ``superior`` or ``inferior`` endplate (modic_type, grade, share_pct,
        suggestion, confirmed)."""
        if which not in ("superior", "inferior"):
            raise PlanEditError(f"endplate must be 'superior' or 'inferior', not {which!r}")
        with self.edit(f"Edit {which} endplate finding", levels=[level_id],
                       detail=", ".join(f"{k}={v}" for k, v in fields.items() if k != "suggestion")) as plan:
            finding: EndplateFinding = getattr(plan.level(level_id), which)
            for name, value in fields.items():
                if name not in EndplateFinding.model_fields:
                    raise ValueError(f"unknown endplate field {name!r}")
                setattr(finding, name, value)

    def set_level_fields(self, level_id: str, **fields: Any) -> None:
        """Set painful, treat, prior_ablation, notes or pedicle outlines of a level."""
        allowed = {"painful", "treat", "prior_ablation", "notes", "pedicle_outline_left_lps",
                   "pedicle_outline_right_lps"}
        with self.edit("Edit level " + ", ".join(sorted(fields)), levels=[level_id]) as plan:
            level = plan.level(level_id)
            for name, value in fields.items():
                if name not in allowed:
                    raise ValueError(f"field {name!r} of a level cannot be set this way")
                setattr(level, name, value)

    @staticmethod
    def _sort_levels(plan: Plan) -> None:
        order = {n: i for i, n in enumerate(LEVEL_ORDER)}
        plan.levels.sort(key=lambda lv: order.get(lv.name, len(order)))

    # ------------------------------------------------------------------ trajectories
    def add_trajectory(self, trajectory: Trajectory | dict) -> str:
        traj = trajectory if isinstance(trajectory, Trajectory) else Trajectory.model_validate(trajectory)
        with self.edit("Add trajectory", trajectories=[traj.id], lists=[Part.TRAJECTORIES]) as plan:
            plan.level(traj.level_id)  # must exist
            plan.trajectories.append(traj)
        return traj.id

    def remove_trajectory(self, trajectory_id: str) -> None:
        with self.edit("Remove trajectory", trajectories=[trajectory_id], lists=[Part.TRAJECTORIES]) as plan:
            plan.trajectories.remove(plan.trajectory(trajectory_id))
            plan.review.comments = [c for c in plan.review.comments
                                    if not (c.anchor_kind == "trajectory" and c.anchor_id == trajectory_id)]

    def set_trajectory_point(self, trajectory_id: str, which: str, point_lps: Optional[Sequence[float]],
                             *, merge_key: Optional[str] = None) -> None:
        """Move the ``entry``, ``bend`` or ``target`` point (bend may be None for a straight path)."""
        if which not in ("entry", "bend", "target"):
            raise PlanEditError(f"trajectory point must be entry, bend or target, not {which!r}")
        if point_lps is None and which != "bend":
            raise PlanEditError(f"the {which} point cannot be removed")
        value = None if point_lps is None else tuple(float(v) for v in point_lps)
        with self.edit(f"Move {which} point", trajectories=[trajectory_id], merge_key=merge_key) as plan:
            setattr(plan.trajectory(trajectory_id), f"{which}_lps", value)

    def set_trajectory_params(self, trajectory_id: str, **params: Any) -> None:
        with self.edit("Edit trajectory settings", trajectories=[trajectory_id],
                       detail=", ".join(f"{k}={v}" for k, v in params.items())) as plan:
            traj = plan.trajectory(trajectory_id)
            for name, value in params.items():
                if name not in TrajectoryParams.model_fields:
                    raise ValueError(f"unknown trajectory setting {name!r}")
                setattr(traj.params, name, value)

    def set_trajectory_fields(self, trajectory_id: str, **fields: Any) -> None:
        """Set side, label or override_reason."""
        allowed = {"side", "label", "override_reason"}
        with self.edit("Edit trajectory " + ", ".join(sorted(fields)), trajectories=[trajectory_id]) as plan:
            traj = plan.trajectory(trajectory_id)
            for name, value in fields.items():
                if name not in allowed:
                    raise ValueError(f"field {name!r} of a trajectory cannot be set this way")
                setattr(traj, name, value)

    # ------------------------------------------------------------------ eligibility
    def set_eligibility_answer(self, key: str, value: Optional[bool | float | str]) -> None:
        with self.edit(f"Answer eligibility item {key}", parts=[Part.ELIGIBILITY], detail=f"{key}={value}") as plan:
            answers = dict(plan.eligibility.answers)
            answers[key] = value
            plan.eligibility.answers = answers

    def set_eligibility_notes(self, notes: str) -> None:
        with self.edit("Edit eligibility notes", parts=[Part.ELIGIBILITY]) as plan:
            plan.eligibility.notes = notes

    # ------------------------------------------------------------------ measurements
    def add_measurement(self, measurement: Measurement | dict) -> str:
        m = measurement if isinstance(measurement, Measurement) else Measurement.model_validate(measurement)
        with self.edit(f"Add {m.kind} measurement", measurements=[m.id], lists=[Part.MEASUREMENTS]) as plan:
            plan.measurements.append(m)
        return m.id

    def remove_measurement(self, measurement_id: str) -> None:
        with self.edit("Remove measurement", measurements=[measurement_id], lists=[Part.MEASUREMENTS]) as plan:
            plan.measurements.remove(plan.measurement(measurement_id))

    def set_measurement_points(self, measurement_id: str, *, points_lps: Optional[Sequence] = None,
                               points_px: Optional[Sequence] = None, merge_key: Optional[str] = None) -> None:
        with self.edit("Move measurement point", measurements=[measurement_id], merge_key=merge_key) as plan:
            m = plan.measurement(measurement_id)
            if points_lps is not None:
                m.points_lps = [tuple(p) for p in points_lps]
            if points_px is not None:
                m.points_px = [tuple(p) for p in points_px]

    def set_measurement_label(self, measurement_id: str, label: str) -> None:
        with self.edit("Rename measurement", measurements=[measurement_id]) as plan:
            plan.measurement(measurement_id).label = label

    # ------------------------------------------------------------------ fluoroscopy
    def add_fluoro_landmark(self, landmark: FluoroLandmark | dict) -> str:
        lm = landmark if isinstance(landmark, FluoroLandmark) else FluoroLandmark.model_validate(landmark)
        with self.edit(f"Mark {lm.kind.replace('_', ' ')} on fluoroscopy",
                       fluoro_landmarks=[lm.id], lists=[Part.FLUORO_LANDMARKS]) as plan:
            plan.fluoro_landmarks.append(lm)
        return lm.id

    def move_fluoro_landmark(self, landmark_id: str, point_px: Sequence[float], *,
                             merge_key: Optional[str] = None) -> None:
        with self.edit("Move fluoroscopy landmark", fluoro_landmarks=[landmark_id], merge_key=merge_key) as plan:
            lm = next((x for x in plan.fluoro_landmarks if x.id == landmark_id), None)
            if lm is None:
                raise KeyError(f"no fluoroscopy landmark with id {landmark_id!r}")
            lm.point_px = tuple(float(v) for v in point_px)

    def remove_fluoro_landmark(self, landmark_id: str) -> None:
        with self.edit("Remove fluoroscopy landmark",
                       fluoro_landmarks=[landmark_id], lists=[Part.FLUORO_LANDMARKS]) as plan:
            before = len(plan.fluoro_landmarks)
            plan.fluoro_landmarks = [x for x in plan.fluoro_landmarks if x.id != landmark_id]
            if len(plan.fluoro_landmarks) == before:
                raise KeyError(f"no fluoroscopy landmark with id {landmark_id!r}")

    def set_fluoro_calibration(self, sop_instance_uid: str, mm_per_pixel: Optional[float], method: str = "") -> None:
        """Calibrate one projection image (None removes the calibration)."""
        with self.edit("Calibrate fluoroscopy image" if mm_per_pixel else "Remove fluoroscopy calibration",
                       parts=[Part.FLUORO_CALIBRATIONS], detail=method) as plan:
            cals = [c for c in plan.fluoro_calibrations if c.sop_instance_uid != sop_instance_uid]
            if mm_per_pixel is not None:
                cals.append(FluoroCalibration(sop_instance_uid=sop_instance_uid, mm_per_pixel=mm_per_pixel,
                                              method=method))
            plan.fluoro_calibrations = cals

    # ------------------------------------------------------------------ settings
    def set_setting(self, name: str, value: Any) -> None:
        if name not in PlanningSettings.model_fields:
            raise PlanEditError(f"unknown setting {name!r}")
        with self.edit(f"Change setting {name}", parts=[Part.SETTINGS], detail=f"{name}={value}") as plan:
            setattr(plan.settings, name, value)

    def set_settings(self, settings: PlanningSettings | dict) -> None:
        s = settings if isinstance(settings, PlanningSettings) else PlanningSettings.model_validate(settings)
        with self.edit("Change settings", parts=[Part.SETTINGS]) as plan:
            plan.settings = s

    # ------------------------------------------------------------------ review (allowed read-only)
    def add_comment(self, text: str, *, anchor_kind: str = "plan", anchor_id: str = "",
                    author: Optional[str] = None) -> str:
        if not text.strip():
            raise PlanEditError("Add comment: the comment is empty")
        comment = Comment(author=author or self.user, text=text, anchor_kind=anchor_kind, anchor_id=anchor_id)
        with self.edit("Add review comment", parts=[Part.REVIEW], review=True) as plan:
            if anchor_kind == "level":
                plan.level(anchor_id)
            elif anchor_kind == "trajectory":
                plan.trajectory(anchor_id)
            plan.review.comments.append(comment)
        return comment.id

    def remove_comment(self, comment_id: str) -> None:
        with self.edit("Remove review comment", parts=[Part.REVIEW], review=True) as plan:
            before = len(plan.review.comments)
            plan.review.comments = [c for c in plan.review.comments if c.id != comment_id]
            if len(plan.review.comments) == before:
                raise KeyError(f"no comment with id {comment_id!r}")

    def sign_off(self, reviewer: Optional[str] = None, role: str = "reviewer") -> SignOff:
        """Sign the plan as it is now; any later content change makes the sign-off out of date."""
        name = (reviewer or self.user).strip()
        if not name:
            raise PlanEditError("Sign off: a reviewer name is required")
        signoff = SignOff(reviewer=name, role=role, content_hash=self._plan.content_hash())
        with self.edit(f"Sign off as {role}", parts=[Part.REVIEW], review=True, detail=name) as plan:
            plan.review.signoffs.append(signoff)
        return signoff

    # ------------------------------------------------------------------ helpers for views
    def subscribe(self, slot: Callable[[PlanChange], None]) -> Callable[[], None]:
        """Connect ``slot`` to :attr:`changed`; returns a function that disconnects it."""
        self.changed.connect(slot)
        return lambda: self.changed.disconnect(slot)


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "user"


#: Public edit methods (each must be covered by undo/redo tests).
EDIT_METHODS: tuple[str, ...] = (
    "set_case", "set_author", "add_level", "replace_levels", "remove_level", "rename_level",
    "set_landmark", "set_landmarks", "set_endplate", "set_level_fields", "add_trajectory",
    "remove_trajectory", "set_trajectory_point", "set_trajectory_params", "set_trajectory_fields",
    "set_eligibility_answer", "set_eligibility_notes", "add_measurement", "remove_measurement",
    "set_measurement_points", "set_measurement_label", "add_fluoro_landmark", "move_fluoro_landmark",
    "remove_fluoro_landmark", "set_fluoro_calibration", "set_setting", "set_settings", "add_comment",
    "remove_comment", "sign_off",
)
