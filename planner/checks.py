"""Metrics and safety checks of the planned trajectories, recomputed live (well under 5 ms each).

:func:`evaluate_trajectory` measures one trajectory against its vertebra (:mod:`planner.trajectory`
gives the frame and the instrument path) and grades every check as ``pass``, ``warning`` or
``fail`` with a sentence for the physician, the value, the limit and the source of the limit (the
setting's source, from ../shared/domain.md). :func:`evaluate_plan` does it for every trajectory
of a plan. A failing check never blocks saving; the exports show it next to the physician's
recorded ``override_reason``.

Definitions (issue 6), with the frame u, s, l of :func:`planner.trajectory.vertebra_frame` and d
the unit direction of the straight introducer:

* ``target_depth_pct = 100 ((target - posterior_wall) . u) / |anterior_wall - posterior_wall|``
* ``midline_offset_mm = |(target - body_center) . l|``
* ``canal_margin_mm = (target - posterior_wall) . u - zone radius``
* ``medial_angle_deg``: the angle between u and d projected onto the plane normal to s
* ``cranial_angle_deg = asin(d . s)``, positive toward the superior endplate
* endplate margins: distance from the zone's edge to the plane through each endplate centre normal
  to s (``(superior - target) . s - r`` and ``(target - inferior) . s - r``)
* anterior wall margin: ``(anterior_wall - target) . u - r``

Pedicle clearance is measured in the pedicle's cross-section: the plane of the pedicle outline
(``Level.pedicle_outline_left_lps``/``right`` when drawn or measured), else, on CT, the inner
cortical outline measured automatically in the plane through the pedicle centre perpendicular to
the pedicle axis (:func:`measure_pedicle_outline_ct`), else an ellipse of the per-level pedicle
width and height settings in that plane (source ``"model"``). Where the path crosses that plane, the
instrument's cross-section (its radius, widened along the direction in which it crosses the plane
obliquely) is compared with the outline along four directions in the plane: medial (toward the
midline), lateral, upper (toward the superior endplate) and lower. Clearance is the distance from
the instrument surface to the wall (negative: the instrument is through the wall by that much; the
breach depth grades Gertzbein-Robbins A-E with ``breach_grade_limits_mm``). The isthmus is the
narrowest part of the pedicle, so one section is the critical one.

Image checks (issue 11)
    When an image of the level is loaded, :mod:`planner.safety` builds a model of bone, spinal canal
    and the owners of the bone from the image itself and measures the whole instrument path (from the
    skin through introducer, curved cannula and probe, with their diameters, every 0.5 mm) against
    it; each measurement is its own row:

    * ``canal``: the instrument's surface enters the canal (or the lateral recess): fail; the value is
      the smallest distance from the surface to the canal;
    * ``bone_corridor``: from the first contact with the treated vertebra's bone to the tip, every
      sample is in that bone; a gap fails, with where and how long;
    * ``other_bone``: before that contact the path crosses another bone: fail for another vertebra and
      the ilium (a rib or an unknown bone warns), with its name and length;
    * ``pedicle_clearance``: the instrument's surface to the edge of the bone in the pedicle, toward the
      midline, away from it, up and down, graded Gertzbein-Robbins as above; where the image cannot
      show it (no image of the level, or an image whose bone was not measured) the row is *not
      measured* and the elliptical model is only quoted as an estimate;
    * ``zone``: the ablation zone lies inside the treated body (its segmented outline on the image) and
      its distance to the canal on the image meets the canal margin.

    Every row says how it was obtained (``basis``): ``measured`` (on the image), ``from landmarks`` or
    ``not measured``. A safety row (the five above) that is not measured is ``unverified``; a
    trajectory with such a row is ``unverified`` overall (shown in amber) and, like a failure, blocks
    the exports until the physician records a reason (``override_reason``). Failing and unverified
    rows carry the parts of the path they concern (``parts``: points and a label such as
    "canal 2.1 mm") so that the views and the key images draw them in red.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from planner.levels.mri_bodies import is_sagittal_stack
from planner.levels.results import odd_heights
from planner.plan import Level, Plan, Trajectory
from planner.safety.build import spine_model
from planner.safety.model import OWNER_ILIUM, anchors_of, level_box
from planner.safety.params import SAFETY_PARAMS
from planner.safety.paths import measure_path
from planner.settings import PlanningSettings, level_setting
from planner.trajectory import (  # the canal margin's rule lives with the geometry that places targets by it
    CANAL_MARGIN_WORDS,
    IMAGE_PARAMS,
    DepthMargin,
    ImageParams,
    MARGIN_FROM_LANDMARKS,
    MARGIN_MEASURED,
    LandmarkError,
    PathError,
    TrajectoryPath,
    VertebraFrame,
    depth_and_margin,
    image_canal_margin_mm,
    is_ct,
    pedicle_axis,
    skin_entry_point,
    trajectory_path,
    vertebra_frame,
    zone_canal_margin_mm as canal_margin_mm,
)

PASS, WARNING, UNVERIFIED, FAIL = "pass", "warning", "unverified", "fail"
_ORDER = {PASS: 0, WARNING: 1, UNVERIFIED: 2, FAIL: 3}
#: How a check's value was obtained.
MEASURED, FROM_LANDMARKS, NOT_MEASURED = "measured", "from landmarks", "not measured"
#: The rows that look at the image; when one is not measured the trajectory is unverified.
SAFETY_CHECKS: tuple[str, ...] = ("canal", "bone_corridor", "other_bone", "pedicle_clearance", "zone")
#: Rounding tolerance of the comparisons (mm, %, deg): a value on its limit passes.
_TOL = 1e-6
WALLS: tuple[str, ...] = ("medial", "lateral", "upper", "lower")
GRADES: tuple[str, ...] = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class CheckParams:
    """Technical tolerances of the checks (geometry, not clinical numbers)."""

    #: A straight instrument with a bend point off its line: warn above this angle (deg).
    straight_kink_deg: float = 2.0
    #: Instruments crossing the pedicle plane almost in-plane: cap of the obliquity factor tan(angle).
    max_obliquity_tan: float = 5.0
    #: Number of vertices of the elliptical pedicle model.
    ellipse_vertices: int = 72
    #: CT outline: number of rays and their length (mm) and step (mm).
    ct_rays: int = 72
    ct_ray_length_mm: float = 14.0
    ct_ray_step_mm: float = 0.25
    #: CT outline: a cortex counts as distinct when it is this much (HU) above the pedicle centre.
    ct_cortex_contrast_hu: float = 120.0
    #: CT outline: the pedicle centre must be at least this dense (cancellous bone, not soft tissue).
    ct_cancellous_min_hu: float = 100.0
    #: CT outline: the bone ends where the value stays below ct_bone_hu for this long (mm).
    ct_gap_mm: float = 1.5
    #: CT outline: the share of rays that may fail before the outline is refused.
    ct_max_failed_rays: float = 0.3


CHECK_PARAMS = CheckParams()


# ============================================================================ results
@dataclass
class PathPart:
    """A part of a trajectory's path that a check is about (drawn in red when the check fails)."""

    label: str  # e.g. "canal 2.1 mm"
    points_lps: np.ndarray  # (N, 3) along the path's axis
    start_mm: float  # from the start of the path (the skin, or the entry)
    length_mm: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start_mm": _num(self.start_mm), "length_mm": _num(self.length_mm),
                "from_lps": _pt(self.points_lps[0]), "to_lps": _pt(self.points_lps[-1])}


@dataclass
class CheckResult:
    """One check: machine name, label, status, value, limit, a sentence and the source of the limit."""

    name: str
    label: str
    status: str
    value: Optional[float] = None
    limit: Any = None
    unit: str = ""
    reason: str = ""
    source: str = ""
    #: The physician's recorded reason for going on, shown next to a failure.
    override_reason: str = ""
    #: Gertzbein-Robbins grade for pedicle wall checks.
    grade: Optional[str] = None
    #: MEASURED (on the image), FROM_LANDMARKS or NOT_MEASURED.
    basis: str = FROM_LANDMARKS
    #: The parts of the path the check is about (failing parts, drawn in red).
    parts: list[PathPart] = field(default_factory=list)

    @property
    def blocks_export(self) -> bool:
        return self.status in (FAIL, UNVERIFIED)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": self.label, "status": self.status, "basis": self.basis,
                               "reason": self.reason, "source": self.source, "value": _num(self.value),
                               "limit": _num(self.limit), "unit": self.unit}
        if self.grade is not None:
            out["grade"] = self.grade
        if self.parts:
            out["parts"] = [p.to_dict() for p in self.parts]
        if self.blocks_export and self.override_reason:
            out["override_reason"] = self.override_reason
        return out


@dataclass
class Metric:
    name: str
    label: str
    value: Optional[float]
    unit: str = ""
    note: str = ""


@dataclass
class PedicleSection:
    """A pedicle cross-section: a closed outline in the plane's own 2D coordinates."""

    center_lps: np.ndarray
    #: Unit normal of the plane (along the pedicle, posterior to anterior).
    normal: np.ndarray
    #: Unit in-plane directions toward the midline and toward the superior endplate.
    e_medial: np.ndarray
    e_upper: np.ndarray
    #: (N, 2) outline vertices as (along e_medial, along e_upper) relative to ``center_lps``.
    outline_2d: np.ndarray
    #: "outline" (drawn or stored on the level), "ct" (measured automatically) or "model".
    source: str
    note: str = ""

    def outline_lps(self) -> np.ndarray:
        o = self.outline_2d
        return self.center_lps[None, :] + o[:, :1] * self.e_medial[None, :] + o[:, 1:2] * self.e_upper[None, :]


@dataclass
class PedicleClearance:
    clearance_mm: dict[str, Optional[float]]
    breach_mm: dict[str, Optional[float]]
    grade: dict[str, Optional[str]]
    source: str
    crossing_lps: Optional[np.ndarray] = None
    instrument: str = ""
    note: str = ""


@dataclass
class TrajectoryReport:
    trajectory_id: str
    level_name: str
    side: str
    checks: list[CheckResult] = field(default_factory=list)
    path: Optional[TrajectoryPath] = None
    length_mm: Optional[float] = None
    introducer_length_mm: Optional[float] = None
    cannula_length_mm: Optional[float] = None
    probe_length_mm: Optional[float] = None
    medial_angle_deg: Optional[float] = None
    cranial_angle_deg: Optional[float] = None
    target_depth_pct: Optional[float] = None
    target_height_pct: Optional[float] = None
    midline_offset_mm: Optional[float] = None
    canal_margin_mm: Optional[float] = None
    superior_endplate_margin_mm: Optional[float] = None
    inferior_endplate_margin_mm: Optional[float] = None
    anterior_wall_margin_mm: Optional[float] = None
    bend_depth_mm: Optional[float] = None
    curve_radius_needed_mm: Optional[float] = None
    zone_diameter_mm: Optional[float] = None
    pedicle: Optional[PedicleClearance] = None
    override_reason: str = ""
    note: str = ""
    #: The instrument's axis from the skin (when found on the image) or the entry to the tip, points at
    #: most 1 mm apart; ``path_start`` says which ("skin" or "entry").
    path_lps: Optional[np.ndarray] = None
    path_start: str = ""
    #: The image the image checks were measured on (a description, no identifiers), or why none.
    image_note: str = ""

    @property
    def overall(self) -> str:
        return worst(c.status for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def unverified(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == UNVERIFIED]

    @property
    def blocking(self) -> list[CheckResult]:
        """The checks that block the exports until a reason is recorded (failing or unverified)."""
        return [c for c in self.checks if c.blocks_export]

    @property
    def needs_override(self) -> bool:
        """A check fails or is unverified and the physician has not recorded a reason for going on."""
        return bool(self.blocking) and not self.override_reason.strip()

    @property
    def failing_parts(self) -> list[tuple[CheckResult, PathPart]]:
        """The parts of the path of every failing or unverified check, for drawing."""
        return [(c, p) for c in self.checks if c.blocks_export for p in c.parts]

    @property
    def pedicle_clearance_mm(self) -> dict[str, Optional[float]]:
        if self.pedicle is None:
            return {w: None for w in WALLS}
        return dict(self.pedicle.clearance_mm)

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def metrics(self) -> list[Metric]:
        m = [
            Metric("length_mm", "Path length (entry to target)", self.length_mm, "mm"),
            Metric("introducer_length_mm", "Introducer length", self.introducer_length_mm, "mm"),
            Metric("cannula_length_mm", "Curved cannula length", self.cannula_length_mm, "mm"),
            Metric("probe_length_mm", "Probe beyond the cannula", self.probe_length_mm, "mm"),
            Metric("medial_angle_deg", "Medial angle", self.medial_angle_deg, "deg"),
            Metric("cranial_angle_deg", "Cranial angle", self.cranial_angle_deg, "deg",
                   "positive toward the superior endplate"),
            Metric("target_depth_pct", "Target depth (of AP depth, from the posterior wall)",
                   self.target_depth_pct, "%"),
            Metric("target_height_pct", "Target height (above the inferior endplate)", self.target_height_pct, "%"),
            Metric("midline_offset_mm", "Offset from the midline", self.midline_offset_mm, "mm"),
            Metric("canal_margin_mm", "Zone to spinal canal", self.canal_margin_mm, "mm"),
            Metric("superior_endplate_margin_mm", "Zone to superior endplate", self.superior_endplate_margin_mm, "mm"),
            Metric("inferior_endplate_margin_mm", "Zone to inferior endplate", self.inferior_endplate_margin_mm, "mm"),
            Metric("anterior_wall_margin_mm", "Zone to anterior wall", self.anterior_wall_margin_mm, "mm"),
        ]
        src = self.pedicle.source if self.pedicle else ""
        for w in WALLS:
            g = self.pedicle.grade.get(w) if self.pedicle else None
            m.append(Metric(f"pedicle_clearance_{w}_mm", f"Pedicle clearance, {w} wall",
                            self.pedicle_clearance_mm[w], "mm",
                            f"Gertzbein-Robbins {g}; from the {_SOURCE_WORDS.get(src, src)}" if g else ""))
        if self.curve_radius_needed_mm is not None:
            m.append(Metric("curve_radius_needed_mm", "Curve radius the path needs", self.curve_radius_needed_mm, "mm"))
        if self.bend_depth_mm is not None:
            m.append(Metric("bend_depth_mm", "Curve start in front of the posterior wall", self.bend_depth_mm, "mm"))
        return m

    def to_dict(self, level_lookup: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """The fields of ``main.py check --json`` (issue 6) plus id, overall and override_reason."""
        path = self.path
        return {
            "id": self.trajectory_id,
            "level": self.level_name,
            "side": self.side,
            "entry_lps": _pt(path.entry_lps) if path else None,
            "bend_lps": _pt(path.bend_lps) if path is not None and path.bend_lps is not None else None,
            "target_lps": _pt(path.target_lps) if path else None,
            "zone_diameter_mm": _num(self.zone_diameter_mm),
            "length_mm": _num(self.length_mm),
            "medial_angle_deg": _num(self.medial_angle_deg),
            "cranial_angle_deg": _num(self.cranial_angle_deg),
            "target_depth_pct": _num(self.target_depth_pct),
            "midline_offset_mm": _num(self.midline_offset_mm),
            "canal_margin_mm": _num(self.canal_margin_mm),
            "pedicle_clearance_mm": {w: _num(v) for w, v in self.pedicle_clearance_mm.items()},
            "pedicle_clearance_source": self.pedicle.source if self.pedicle is not None else None,
            "checks": [c.to_dict() for c in self.checks],
            "overall": self.overall,
            "override_reason": self.override_reason,
            "path_start": self.path_start or None,
            "path_lps": None if self.path_lps is None else [_pt(p) for p in self.path_lps],
            "image": self.image_note,
        }


@dataclass
class PlanReport:
    levels: list[dict[str, Any]]
    trajectories: list[TrajectoryReport]

    @property
    def overall(self) -> str:
        return worst(t.overall for t in self.trajectories) if self.trajectories else PASS

    @property
    def any_fail(self) -> bool:
        return any(t.overall == FAIL for t in self.trajectories)

    @property
    def any_unverified(self) -> bool:
        return any(t.overall == UNVERIFIED for t in self.trajectories)

    @property
    def missing_override_reasons(self) -> list[TrajectoryReport]:
        return [t for t in self.trajectories if t.needs_override]

    def trajectory(self, trajectory_id: str) -> TrajectoryReport:
        for t in self.trajectories:
            if t.trajectory_id == trajectory_id:
                return t
        raise KeyError(trajectory_id)

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "trajectories": [t.to_dict() for t in self.trajectories],
                "overall": self.overall}


def worst(statuses: Iterable[str]) -> str:
    out = PASS
    for s in statuses:
        if _ORDER.get(s, 0) > _ORDER[out]:
            out = s
    return out


def _num(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return round(f, 3) if math.isfinite(f) else None
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return v


def _pt(p: Optional[np.ndarray]) -> Optional[list[float]]:
    return None if p is None else [round(float(v), 3) for v in p]


_SOURCE_WORDS = {"image": "bone segmented on the image", "outline": "pedicle outline on the plan",
                 "ct": "pedicle outline measured on CT",
                 "model": "elliptical pedicle model (width/height settings)"}


def _src(settings: PlanningSettings, name: str) -> str:
    extra = PlanningSettings.model_fields[name].json_schema_extra or {}
    return str(extra.get("source", ""))  # type: ignore[union-attr]


# ============================================================================ pedicle
_UNIT_CIRCLE: dict[int, np.ndarray] = {}


def _circle(n: int) -> np.ndarray:
    if n not in _UNIT_CIRCLE:
        a = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
        _UNIT_CIRCLE[n] = np.column_stack([np.cos(a), np.sin(a)])
    return _UNIT_CIRCLE[n]


def _plane_axes(normal: np.ndarray, frame: VertebraFrame, side: str) -> tuple[np.ndarray, np.ndarray]:
    up = frame.s - (frame.s @ normal) * normal
    up /= np.linalg.norm(up)
    m = frame.medial_direction(side)
    med = m - (m @ normal) * normal - (m @ up) * up
    med /= np.linalg.norm(med)
    return med, up


def outline_section(outline_lps: Sequence[Sequence[float]], frame: VertebraFrame, side: str,
                    source: str = "outline") -> Optional[PedicleSection]:
    """A section from an outline polygon in LPS (its best-fit plane, normal oriented along u)."""
    pts = np.asarray(outline_lps, dtype=float)
    if pts.ndim != 2 or len(pts) < 3:
        return None
    c = pts.mean(axis=0)
    _, sv, vt = np.linalg.svd(pts - c)
    if sv[1] < 1e-6:
        return None
    n = vt[2]
    if n @ frame.u < 0:
        n = -n
    med, up = _plane_axes(n, frame, side)
    rel = pts - c
    return PedicleSection(c, n, med, up, np.column_stack([rel @ med, rel @ up]), source)


def model_section(frame: VertebraFrame, settings: PlanningSettings, side: str,
                  params: CheckParams = CHECK_PARAMS) -> PedicleSection:
    """The elliptical pedicle model: per-level width (medial-lateral) and height settings, centred
    on the pedicle centre landmark, perpendicular to the pedicle axis of the angle settings."""
    center = frame.pedicle(side)
    n = pedicle_axis(frame, settings, side)
    n = n / np.linalg.norm(n)
    med, up = _plane_axes(n, frame, side)
    w = level_setting(settings.pedicle_width_mm, frame.level_name) / 2.0
    h = level_setting(settings.pedicle_height_mm, frame.level_name) / 2.0
    outline = _circle(params.ellipse_vertices) * np.array([w, h])[None, :]
    return PedicleSection(center.copy(), n, med, up, outline, "model")


#: Measured outlines per volume (weakly keyed, so a closed image frees its entries).
_CT_CACHE: "weakref.WeakKeyDictionary[Any, dict[tuple, Optional[np.ndarray]]]" = weakref.WeakKeyDictionary()


def measure_pedicle_outline_ct(volume: Any, center_lps: np.ndarray, normal: np.ndarray, e_medial: np.ndarray,
                               e_upper: np.ndarray, image: ImageParams = IMAGE_PARAMS,
                               params: CheckParams = CHECK_PARAMS) -> Optional[np.ndarray]:
    """The inner cortical outline of a pedicle on CT, as (N, 2) points in (e_medial, e_upper).

    Rays from the pedicle centre in the plane perpendicular to the pedicle axis; along each ray the
    bone ends where the value falls below ``ct_bone_hu`` and stays below for ``ct_gap_mm`` (outer
    surface); the cortex is the highest value before that. When the cortical peak stands out from the
    (cancellous) centre by ``ct_cortex_contrast_hu`` the inner surface is where the profile first rises half-way from the
    centre value to that peak, otherwise (thin cortex not resolved) the outer surface is used. Rays
    still in bone at their end (a neighbouring bone) are filled from their neighbours. Radii are
    median-filtered around the ring; None when the centre is not bone (``ct_cancellous_min_hu``) or
    too many rays find no edge."""
    from scipy import ndimage

    key = (tuple(np.round(center_lps, 2)), tuple(np.round(normal, 4)), tuple(np.round(e_medial, 4)), image, params)
    try:
        per_volume = _CT_CACHE.setdefault(volume, {})
    except TypeError:  # not weak-referenceable: no caching
        per_volume = {}
    if key in per_volume:
        return per_volume[key]
    n_rays = params.ct_rays
    r = np.arange(0.0, params.ct_ray_length_mm + 1e-9, params.ct_ray_step_mm)
    dirs2 = _circle(n_rays)
    dirs = dirs2[:, :1] * e_medial[None, :] + dirs2[:, 1:2] * e_upper[None, :]
    pts = center_lps[None, None, :] + r[None, :, None] * dirs[:, None, :]
    vals = volume.sample(pts, order=1, fill=np.nan)
    center_val = float(np.nanmedian(vals[:, : max(1, int(1.0 / params.ct_ray_step_mm))]))
    result: Optional[np.ndarray] = None
    if np.isfinite(center_val) and center_val >= params.ct_cancellous_min_hu:
        radii = np.full(n_rays, np.nan)
        step = params.ct_ray_step_mm
        gap = max(1, int(round(params.ct_gap_mm / step)))
        for i in range(n_rays):
            prof = np.nan_to_num(vals[i], nan=-1000.0)
            bone = prof >= image.ct_bone_hu
            # the cortex: the first sample clearly denser than the (cancellous) centre
            dense = np.where(prof >= max(image.ct_bone_hu, center_val + params.ct_cortex_contrast_hu))[0]
            if len(dense) == 0:
                dense = np.where(bone & (np.arange(len(prof)) > 0))[0]
            if len(dense) == 0:
                continue
            k_in = int(dense[0])
            # the outer surface: where the value falls below ct_bone_hu and stays below for ct_gap_mm
            soft = (~bone).astype(int)
            run = np.convolve(soft, np.ones(gap, dtype=int), mode="full")[gap - 1:]
            cand = np.where((run >= gap) & (np.arange(len(prof)) > k_in))[0]
            if len(cand) == 0:
                continue  # still bone at the end of the ray (a neighbouring bone): filled from the neighbours
            k_out = int(cand[0])
            k_pk = k_in + int(np.argmax(prof[k_in:k_out]))
            peak = float(prof[k_pk])
            if peak - center_val >= params.ct_cortex_contrast_hu:
                # inner surface: the inner flank of the cortical peak, half-way from the centre value
                half = center_val + 0.5 * (peak - center_val)
                k = k_pk
                while k > 0 and prof[k - 1] >= half:
                    k -= 1
                if k == 0:
                    radii[i] = 0.0
                else:
                    v0, v1 = prof[k - 1], prof[k]
                    frac = (half - v0) / (v1 - v0) if v1 != v0 else 0.0
                    radii[i] = r[k - 1] + frac * step
            else:
                v0, v1 = prof[k_out - 1], prof[k_out]
                frac = (v0 - image.ct_bone_hu) / (v0 - v1) if v1 != v0 else 0.0
                radii[i] = r[k_out - 1] + float(np.clip(frac, 0, 1)) * step
        ok = np.isfinite(radii)
        if ok.mean() >= 1.0 - params.ct_max_failed_rays and ok.sum() >= 8:
            idx = np.arange(n_rays)
            radii = np.interp(idx, idx[ok], radii[ok], period=n_rays)
            radii = ndimage.median_filter(radii, size=5, mode="wrap")
            if np.all(radii > 0.5):
                result = dirs2 * radii[:, None]
    if len(per_volume) > 64:
        per_volume.clear()
    per_volume[key] = result
    return result


def _ct_volumes(images: Any, point_lps: np.ndarray) -> list[Any]:
    if images is None:
        return []
    if hasattr(images, "images") and isinstance(getattr(images, "images"), Mapping):
        images = images.images
    if isinstance(images, Mapping):
        items = list(images.values())
    elif hasattr(images, "array") and hasattr(images, "ijk_to_lps"):
        items = [images]
    else:
        items = list(images)
    out = []
    for v in items:
        if hasattr(v, "array") and hasattr(v, "ijk_to_lps") and getattr(v.array, "ndim", 0) == 3:
            if is_ct(v) and v.contains(point_lps, margin_voxels=0.0):
                out.append(v)
    return out


def pedicle_section(level: Level, frame: VertebraFrame, settings: PlanningSettings, side: str,
                    images: Any = None) -> PedicleSection:
    """The cross-section used for the clearance: the level's outline, else CT, else the model."""
    outline = level.pedicle_outline_left_lps if side == "left" else level.pedicle_outline_right_lps
    if outline:
        sec = outline_section(outline, frame, side)
        if sec is not None:
            return sec
    model = model_section(frame, settings, side)
    for vol in _ct_volumes(images, model.center_lps):
        measured = measure_pedicle_outline_ct(vol, model.center_lps, model.normal, model.e_medial, model.e_upper)
        if measured is not None:
            return PedicleSection(model.center_lps, model.normal, model.e_medial, model.e_upper, measured, "ct")
    if images is not None and _ct_volumes(images, model.center_lps):
        model.note = "the pedicle could not be measured on CT; the elliptical model is used"
    return model


def _axis_hits(p: np.ndarray, q: np.ndarray, axis: int) -> np.ndarray:
    """Where the polygon edges p->q (relative to the query point) cross the line through the point
    along ``axis`` (0: the horizontal line, returns x; 1: the vertical line, returns y). Each vertex
    is on one side of the line (half-open rule), so a line through a vertex counts once."""
    other = 1 - axis
    hit = (p[:, other] > 0) != (q[:, other] > 0)
    if not np.any(hit):
        return np.zeros(0)
    ph, qh = p[hit], q[hit]
    f = ph[:, other] / (ph[:, other] - qh[:, other])
    return ph[:, axis] + f * (qh[:, axis] - ph[:, axis])


def _point_in_polygon(x: np.ndarray, poly: np.ndarray) -> bool:
    p = poly - x[None, :]
    return bool(np.count_nonzero(_axis_hits(p, np.roll(p, -1, axis=0), 0) > 0) % 2)


def wall_distances(x2: np.ndarray, poly: np.ndarray) -> dict[str, float]:
    """Signed distance from a 2D point to the outline's wall along each direction (+x medial, -x
    lateral, +y upper, -y lower; positive: the wall is ahead; negative: the point is beyond it)."""
    p = poly - x2[None, :]
    q = np.roll(p, -1, axis=0)
    xs = _axis_hits(p, q, 0)
    ys = _axis_hits(p, q, 1)
    inside = bool(np.count_nonzero(xs > 0) % 2)
    out = {}
    for wall, t, axis, sign in (("medial", xs, 0, 1.0), ("lateral", -xs, 0, -1.0),
                                ("upper", ys, 1, 1.0), ("lower", -ys, 1, -1.0)):
        if inside and np.any(t > 0):
            out[wall] = float(t[t > 0].min())
        elif len(t):
            out[wall] = float(t.max())
        else:  # the line misses the outline: the outline's extent along the direction
            out[wall] = float((sign * p[:, axis]).max())
    return out


def grade_breach(breach_mm: float, limits: Sequence[float]) -> str:
    """Gertzbein-Robbins grade of a breach depth: A none, B < limits[0], C < limits[1], D < limits[2], E."""
    if breach_mm <= _TOL:
        return "A"
    for g, lim in zip(("B", "C", "D"), limits):
        if breach_mm < lim:
            return g
    return "E"


def pedicle_clearance(section: PedicleSection, path: TrajectoryPath,
                      params: CheckParams = CHECK_PARAMS) -> PedicleClearance:
    """Clearance of the instrument to each wall where the path crosses the section's plane."""
    poly = path.polyline(1.0)
    sd = (poly - section.center_lps[None, :]) @ section.normal
    cross = np.where((sd[:-1] <= 0) & (sd[1:] > 0) | (sd[:-1] >= 0) & (sd[1:] < 0))[0]
    empty = {w: None for w in WALLS}
    if len(cross) == 0:
        return PedicleClearance(dict(empty), dict(empty), dict(empty), section.source,
                                note="the path does not cross the pedicle's plane")
    best = None
    for i in cross:
        f = sd[i] / (sd[i] - sd[i + 1]) if sd[i] != sd[i + 1] else 0.0
        x = poly[i] + f * (poly[i + 1] - poly[i])
        dist = float(np.linalg.norm(x - section.center_lps))
        if best is None or dist < best[0]:
            best = (dist, i, x)
    assert best is not None
    _, i, x = best
    tangent = poly[i + 1] - poly[i]
    tangent /= np.linalg.norm(tangent)
    # which instrument is there: walk the cumulative length
    s_at = float(np.linalg.norm(np.diff(poly[: i + 1], axis=0), axis=1).sum()) + float(np.linalg.norm(x - poly[i]))
    if s_at <= path.introducer_mm + 1e-6:
        name, diam = "introducer", path.introducer_diameter_mm
    elif s_at <= path.introducer_mm + path.cannula_mm + 1e-6:
        name, diam = "cannula", path.cannula_diameter_mm
    else:
        name, diam = "probe", path.probe_diameter_mm
    r = diam / 2.0
    cos_g = abs(float(tangent @ section.normal))
    tan_g = min(math.sqrt(max(0.0, 1 - cos_g * cos_g)) / max(cos_g, 1e-9), params.max_obliquity_tan)
    p_in = tangent - (tangent @ section.normal) * section.normal
    pn = float(np.linalg.norm(p_in))
    p2 = np.array([p_in @ section.e_medial, p_in @ section.e_upper]) / pn if pn > 1e-9 else np.zeros(2)
    rel = x - section.center_lps
    x2 = np.array([rel @ section.e_medial, rel @ section.e_upper])
    walls = wall_distances(x2, section.outline_2d)
    dirs = {"medial": (1.0, 0.0), "lateral": (-1.0, 0.0), "upper": (0.0, 1.0), "lower": (0.0, -1.0)}
    clearance, breach, grade = {}, {}, {}
    for w in WALLS:
        e = np.array(dirs[w])
        r_e = r * math.sqrt(1.0 + (tan_g * float(e @ p2)) ** 2)
        c = walls[w] - r_e
        clearance[w] = c
        breach[w] = max(0.0, -c)
    return PedicleClearance(clearance, breach, grade, section.source, x, name)


# ============================================================================ evaluation
def _level_for(plan: Plan, traj: Trajectory) -> Optional[Level]:
    try:
        return plan.level(traj.level_id)
    except KeyError:
        return None


def bipedicular_pairs(plan: Plan, level_id: str) -> list[tuple[Trajectory, Trajectory]]:
    """The (left, right) bipedicular pairs of one level: each left trajectory is paired with at most
    one right one, the closest tips first (a level with extra trajectories on one side leaves those
    unpaired instead of pairing the wrong two)."""
    same = [t for t in plan.trajectories if t.level_id == level_id]
    lefts = [t for t in same if t.side == "left"]
    rights = [t for t in same if t.side == "right"]
    gaps = sorted((float(np.linalg.norm(np.subtract(a.target_lps, b.target_lps))), i, j)
                  for i, a in enumerate(lefts) for j, b in enumerate(rights))
    used_l: set[int] = set()
    used_r: set[int] = set()
    pairs = []
    for _gap, i, j in gaps:
        if i not in used_l and j not in used_r:
            used_l.add(i)
            used_r.add(j)
            pairs.append((lefts[i], rights[j]))
    return pairs


def _partner(plan: Plan, traj: Trajectory) -> Optional[Trajectory]:
    for left, right in bipedicular_pairs(plan, traj.level_id):
        if traj.id in (left.id, right.id):
            return right if traj.id == left.id else left
    return None


def evaluate_trajectory(plan: Plan, trajectory: Trajectory | str, images: Any = None) -> TrajectoryReport:
    """Metrics and checks of one trajectory (see the module docstring). ``images``: a mapping of
    loaded images (or a Session, or one Volume); CT volumes are used to measure the pedicle."""
    traj = plan.trajectory(trajectory) if isinstance(trajectory, str) else trajectory
    st = plan.settings
    level = _level_for(plan, traj)
    rep = TrajectoryReport(traj.id, level.name if level else "?", traj.side,
                           override_reason=traj.override_reason, zone_diameter_mm=traj.params.zone_diameter_mm)

    def add(c: CheckResult) -> None:
        if c.blocks_export:
            c.override_reason = traj.override_reason
        rep.checks.append(c)

    if level is None:
        add(CheckResult("landmarks", "Vertebra landmarks", FAIL,
                        reason="The trajectory belongs to a level that is not in the plan.", source=""))
        return rep
    try:
        frame = vertebra_frame(level)
    except LandmarkError as exc:
        add(CheckResult("landmarks", "Vertebra landmarks", FAIL,
                        reason=f"The metrics cannot be computed: {exc}.",
                        source="Landmarks as defined in the levels step (issue 6 definitions)"))
        try:
            rep.path = trajectory_path(traj, plan)
            rep.length_mm = rep.path.total_mm
        except PathError:
            pass
        return rep
    try:
        path = trajectory_path(traj, plan, frame=frame)
    except PathError as exc:
        add(CheckResult("path", "Path", FAIL, reason=f"The path is undefined: {exc}.", source=""))
        return rep
    rep.path = path
    target = path.target_lps
    d = path.direction
    r = traj.params.zone_diameter_mm / 2.0
    u, s, l_ = frame.u, frame.s, frame.l
    rep.length_mm = path.total_mm
    rep.introducer_length_mm = path.introducer_mm
    rep.cannula_length_mm = path.cannula_mm
    rep.probe_length_mm = path.probe_mm
    dp = d - (d @ s) * s
    dpn = float(np.linalg.norm(dp))
    rep.medial_angle_deg = math.degrees(math.acos(float(np.clip(dp @ u / dpn, -1, 1)))) if dpn > 1e-12 else 90.0
    rep.cranial_angle_deg = math.degrees(math.asin(float(np.clip(d @ s, -1, 1))))
    depth_mm = float((target - frame.posterior_wall_lps) @ u)
    rep.target_depth_pct = 100.0 * depth_mm / frame.depth_mm
    rep.target_height_pct = 100.0 * float((target - frame.inferior_endplate_lps) @ s) / frame.height_mm
    rep.midline_offset_mm = abs(float((target - frame.body_center_lps) @ l_))
    rep.canal_margin_mm = canal_margin_mm(frame, target, traj.params.zone_diameter_mm, st.canal_margin_from)
    sup_c = float((frame.superior_endplate_lps - target) @ s)
    inf_c = float((target - frame.inferior_endplate_lps) @ s)
    rep.superior_endplate_margin_mm = sup_c - r
    rep.inferior_endplate_margin_mm = inf_c - r
    ant_c = float((frame.anterior_wall_lps - target) @ u)
    rep.anterior_wall_margin_mm = ant_c - r
    if path.bend_lps is not None:
        rep.bend_depth_mm = frame.wall_depth_mm(path.bend_lps)
    if path.kind == "curved":
        rep.curve_radius_needed_mm = path.fit_radius_mm if math.isfinite(path.fit_radius_mm) else None

    # --- the image: a model of bone and canal, the path measured against it
    img = _measure_on_image(plan, level, traj, path, images)
    rep.image_note = img.note
    rep.path_lps, rep.path_start = _path_line(path, img.measurement)
    _image_rows(plan, level, frame, traj, path, img, rep, add, images)

    # --- canal margin: the zone's distance to the canal on the image, else to the posterior wall landmark
    lim = traj.params.canal_margin_mm
    what = CANAL_MARGIN_WORDS[st.canal_margin_from]
    rule = f" (measured from the {what}: setting 'Canal margin measured from')"
    m = img.measurement
    if m is not None and m.zone_canal_mm is not None:
        rep.canal_margin_mm = image_canal_margin_mm(m.zone_canal_mm, traj.params.zone_diameter_mm,
                                                    st.canal_margin_from)
        basis, where_from = MEASURED, "the spinal canal on the image"
    else:
        basis, where_from = FROM_LANDMARKS, "the posterior wall (spinal canal)"
    if rep.canal_margin_mm >= lim - _TOL:
        add(CheckResult("canal_margin", "Canal margin", PASS, rep.canal_margin_mm, lim, "mm",
                        f"The {what} is {rep.canal_margin_mm:.1f} mm from {where_from}; at least {lim:.1f} mm is "
                        f"required{rule}.", _src(st, "canal_margin_mm"), basis=basis))
    else:
        where = ("reaches into the spinal canal" if rep.canal_margin_mm < 0 else
                 f"is only {rep.canal_margin_mm:.1f} mm from {where_from}")
        add(CheckResult("canal_margin", "Canal margin", FAIL, rep.canal_margin_mm, lim, "mm",
                        f"The {what} {where}; at least {lim:.1f} mm is required{rule} (ablation is "
                        "contraindicated closer to the canal). Move the target anteriorly or reduce the zone.",
                        _src(st, "canal_margin_mm"), basis=basis))

    # --- target depth window
    lo, hi = st.target_depth_min_pct, st.target_depth_max_pct
    pct = rep.target_depth_pct
    if lo - _TOL <= pct <= hi + _TOL:
        add(CheckResult("target_depth", "Target depth", PASS, pct, [lo, hi], "%",
                        f"The target lies at {pct:.0f}% of the vertebral body's AP depth from the posterior wall, "
                        f"inside the {lo:.0f}-{hi:.0f}% window.", _src(st, "target_depth_min_pct")))
    elif 0 <= pct <= 100:
        add(CheckResult("target_depth", "Target depth", WARNING, pct, [lo, hi], "%",
                        f"The target lies at {pct:.0f}% of the AP depth from the posterior wall, outside the "
                        f"{lo:.0f}-{hi:.0f}% window where the basivertebral nerve terminus is expected.",
                        _src(st, "target_depth_min_pct")))
    else:
        add(CheckResult("target_depth", "Target depth", FAIL, pct, [lo, hi], "%",
                        f"The target lies outside the vertebral body ({pct:.0f}% of the AP depth from the posterior "
                        "wall).", _src(st, "target_depth_min_pct")))

    # --- midline offset (or bipedicular tip spacing)
    partner = _partner(plan, traj)
    max_off = st.max_midline_offset_mm
    if partner is None:
        st_ = PASS if rep.midline_offset_mm <= max_off + _TOL else WARNING
        add(CheckResult("midline_offset", "Midline offset", st_, rep.midline_offset_mm, max_off, "mm",
                        f"The target is {rep.midline_offset_mm:.1f} mm from the midline of the vertebral body "
                        + ("(within " if st_ == PASS else "(more than ") + f"{max_off:.1f} mm).",
                        _src(st, "max_midline_offset_mm")))
    else:
        pt = np.asarray(partner.target_lps, dtype=float)
        mid_off = abs(float(((target + pt) / 2 - frame.body_center_lps) @ l_))
        st_ = PASS if mid_off <= max_off + _TOL else WARNING
        add(CheckResult("midline_offset", "Midline offset (bipedicular pair)", st_, mid_off, max_off, "mm",
                        f"Bipedicular: the midpoint between the two tips is {mid_off:.1f} mm from the midline "
                        f"(this tip: {rep.midline_offset_mm:.1f} mm).", _src(st, "max_midline_offset_mm")))
        spacing = float(np.linalg.norm(target - pt))
        win = list(st.bipedicular_tip_spacing_mm) + [10.0, 20.0]
        slo, shi = float(win[0]), float(win[1])
        st_ = PASS if slo - _TOL <= spacing <= shi + _TOL else WARNING
        add(CheckResult("bipedicular_spacing", "Bipedicular tip spacing", st_, spacing, [slo, shi], "mm",
                        f"The two tips are {spacing:.1f} mm apart"
                        + (f", inside the {slo:.0f}-{shi:.0f} mm window." if st_ == PASS else
                           f", outside the {slo:.0f}-{shi:.0f} mm window (described for a multitined device)."),
                        _src(st, "bipedicular_tip_spacing_mm")))

    # --- endplates and body walls
    emin = st.endplate_margin_mm
    for name, label, margin, centre in (
            ("superior_endplate_margin", "Superior endplate margin", rep.superior_endplate_margin_mm, sup_c),
            ("inferior_endplate_margin", "Inferior endplate margin", rep.inferior_endplate_margin_mm, inf_c)):
        which = label.split()[0].lower()
        if margin >= emin - _TOL:
            add(CheckResult(name, label, PASS, margin, emin, "mm",
                            f"The ablation zone edge is {margin:.1f} mm from the {which} endplate.",
                            _src(st, "endplate_margin_mm")))
        elif centre > 0:
            add(CheckResult(name, label, WARNING, margin, emin, "mm",
                            f"The ablation zone crosses the {which} endplate by {-margin:.1f} mm"
                            if margin < 0 else f"The ablation zone edge is only {margin:.1f} mm from the {which} "
                            f"endplate (at least {emin:.1f} mm set).", _src(st, "endplate_margin_mm")))
        else:
            add(CheckResult(name, label, FAIL, margin, emin, "mm",
                            f"The target lies beyond the {which} endplate, in the disc.",
                            _src(st, "endplate_margin_mm")))
    # --- path shape
    if path.kind == "curved":
        if path.target_ahead_mm <= 0:
            add(CheckResult("cannula_curve", "Curved cannula reach", FAIL, path.target_ahead_mm, 0.0, "mm",
                            "The target is not ahead of the bend point; the curved cannula cannot reach it.",
                            _src(st, "cannula_curve_radius_mm")))
        elif path.reachable:
            need = path.fit_radius_mm
            add(CheckResult("cannula_curve", "Curved cannula reach", PASS,
                            need if math.isfinite(need) else None, path.requested_radius_mm, "mm",
                            f"The curved cannula ({path.requested_radius_mm:.0f} mm radius) reaches the target: "
                            f"{path.cannula_mm:.1f} mm of curve, then {path.probe_mm:.1f} mm straight.",
                            _src(st, "cannula_curve_radius_mm")))
        else:
            add(CheckResult("cannula_curve", "Curved cannula reach", FAIL, path.fit_radius_mm,
                            path.requested_radius_mm, "mm",
                            f"The requested curve radius of {path.requested_radius_mm:.0f} mm cannot reach the target "
                            f"from this bend point; the path needs a {path.fit_radius_mm:.1f} mm radius. Move the "
                            "bend point back or laterally, or the target.", _src(st, "cannula_curve_radius_mm")))
        bd = rep.bend_depth_mm or 0.0
        if bd >= -_TOL:
            add(CheckResult("curve_start", "Curve start", PASS, bd, 0.0, "mm",
                            f"The curve starts {bd:.1f} mm in front of the posterior wall.", _src(st, "curve_start")))
        else:
            add(CheckResult("curve_start", "Curve start", WARNING, bd, 0.0, "mm",
                            f"The curve starts {-bd:.1f} mm behind the posterior wall, inside the pedicle; the curved "
                            "stylet is usually introduced once the posterior wall is reached.",
                            _src(st, "curve_start")))
    elif path.kind == "straight_bend":
        assert path.bend_lps is not None
        v2 = path.target_lps - path.bend_lps
        n2 = float(np.linalg.norm(v2))
        kink = math.degrees(math.acos(float(np.clip(v2 @ d / n2, -1, 1)))) if n2 > 1e-9 else 0.0
        lim_k = CHECK_PARAMS.straight_kink_deg
        if kink <= lim_k:
            add(CheckResult("straight_path", "Straight path", PASS, kink, lim_k, "deg",
                            "The straight probe continues in line with the introducer.", ""))
        else:
            add(CheckResult("straight_path", "Straight path", FAIL, kink, lim_k, "deg",
                            f"A straight probe cannot turn: the target is {kink:.0f}° off the introducer's line. "
                            "Use the curved cannula or move the target.", ""))
    return rep


# ============================================================================ image checks
@dataclass
class _ImageResult:
    measurement: Optional[Any] = None  # planner.safety.paths.PathMeasurement
    model: Optional[Any] = None  # planner.safety.model.SpineModel
    volume: Optional[Any] = None
    note: str = ""


def _volumes(images: Any) -> list[tuple[str, Any]]:
    """(key, volume) of the 3D volumes in ``images`` (a mapping, a Session or one Volume)."""
    if images is None:
        return []
    if hasattr(images, "images") and isinstance(getattr(images, "images"), Mapping):
        images = images.images
    if isinstance(images, Mapping):
        items = list(images.items())
    elif hasattr(images, "array") and hasattr(images, "ijk_to_lps"):
        items = [("", images)]
    else:
        items = [(str(i), v) for i, v in enumerate(images)]
    return [(k, v) for k, v in items
            if hasattr(v, "array") and hasattr(v, "ijk_to_lps") and getattr(v.array, "ndim", 0) == 3]


#: MR roles in order of preference for the image checks: T2 shows the canal's fluid, and an axial stack
#: resolves the pedicle's medial and lateral walls (a sagittal stack blurs them over its slice thickness).
_MR_ROLES = ("AX_T2", "T2", "STIR", "T1")


def _first_by_role(plan: Plan, images: Any, keep: Any, mr_roles: Sequence[str]) -> Optional[tuple[str, Any]]:
    """(key, volume) of the first of the volumes in ``images`` for which ``keep(volume)`` holds: CT first,
    then MR by role in the order of ``mr_roles`` (other roles last); the largest among equals."""
    roles = {ref.series_instance_uid: ref.role for ref in plan.case.series}
    found = []
    for key, vol in _volumes(images):
        if not keep(vol):
            continue
        uid = getattr(getattr(vol, "info", None), "series_instance_uid", "") or key
        role = roles.get(uid, roles.get(key, ""))
        rank = 0 if is_ct(vol) else 1 + (mr_roles.index(role) if role in mr_roles else len(mr_roles))
        found.append((rank, -int(vol.array.size), key, vol))
    if not found:
        return None
    found.sort(key=lambda t: (t[0], t[1]))
    return found[0][2], found[0][3]


def choose_check_volume(plan: Plan, images: Any, points_lps: Sequence[Sequence[float]]) -> Optional[tuple[str, Any]]:
    """The volume the image checks use: one that contains every point, CT first, then MR by role
    (axial T2, T2, STIR, T1, other); the largest among equals."""
    return _first_by_role(plan, images, lambda vol: all(vol.contains(p, margin_voxels=0.0) for p in points_lps),
                          _MR_ROLES)


def body_volume_for(plan: Plan, images: Any, volume: Any) -> Any:
    """The volume on which the MRI body finder outlines the vertebral bodies for the checks on ``volume``: the
    body finder reads sagittal planes, so ``volume`` itself when it is a sagittal stack (or a CT, where the
    bodies come from the bone), else a sagittal MR stack of the same frame of reference that contains every
    level's body centre, by role (T2, STIR, T1, other; the largest among equals); ``volume`` itself when there
    is none (its planes are then resampled across its slices)."""
    if is_ct(volume) or is_sagittal_stack(volume):
        return volume
    for_uid = volume.info.frame_of_reference_uid
    if not for_uid:
        return volume
    centres = [lv.landmarks.body_center_lps for lv in plan.levels if lv.landmarks.body_center_lps is not None]

    def keep(vol: Any) -> bool:
        return (vol is not volume and not is_ct(vol) and is_sagittal_stack(vol)
                and vol.info.frame_of_reference_uid == for_uid
                and all(vol.contains(c, margin_voxels=0.0) for c in centres))

    found = _first_by_role(plan, images, keep, tuple(r for r in _MR_ROLES if not r.startswith("AX_")))
    return volume if found is None else found[1]


def _describe_volume(vol: Any) -> str:
    sp = " x ".join(f"{v:.1f}" for v in vol.spacing)
    return f"{'CT' if is_ct(vol) else 'MR'} ({sp} mm voxels)"


def _measure_on_image(plan: Plan, level: Level, traj: Trajectory, path: TrajectoryPath, images: Any) -> _ImageResult:
    chosen = choose_check_volume(plan, images, [path.entry_lps, path.target_lps])
    if chosen is None:
        why = ("no image is loaded" if not _volumes(images) else
               "no loaded image contains both the entry and the target")
        return _ImageResult(note=f"not measured on these images: {why}")
    _, vol = chosen
    anchors = [a for a in anchors_of([level])]
    if not anchors:
        return _ImageResult(volume=vol, note=f"not measured: level {level.name} has no body centre landmark")
    doubt = doubtful_level_landmarks(plan, level)
    if doubt:
        return _ImageResult(volume=vol, note=f"not measured: {doubt}")
    skin = skin_entry_point(traj, vol)
    lo, hi = level_box(anchors[0])
    start = skin if skin is not None else path.entry_lps - SAFETY_PARAMS.approach_mm * path.direction
    pts = np.vstack([path.polyline(1.0), start[None, :]])
    lo = np.minimum(lo, pts.min(axis=0) - SAFETY_PARAMS.path_box_margin_mm)
    hi = np.maximum(hi, pts.max(axis=0) + SAFETY_PARAMS.path_box_margin_mm)
    try:
        model = spine_model(vol, plan.levels, (lo, hi), body_volume=body_volume_for(plan, images, vol))
    except ValueError as exc:
        return _ImageResult(volume=vol, note=f"not measured on {_describe_volume(vol)}: {exc}")
    m = measure_path(model, level.id, path, skin, traj.params.zone_diameter_mm / 2.0)
    return _ImageResult(m, model, vol, f"measured on {_describe_volume(vol)}")


def doubtful_level_landmarks(plan: Plan, level: Level) -> str:
    """Why ``level``'s landmarks cannot bound its bone on the image ("" when nothing says so): the axis from its
    inferior to its superior endplate turned away from the spine (:func:`_turned_level_axis`), or a height that
    does not fit the levels next to it (:func:`_odd_level_height`)."""
    return _turned_level_axis(plan, level) or _odd_level_height(plan, level)


def _endplate_span(level: Level) -> Optional[np.ndarray]:
    """From the inferior to the superior endplate landmark (mm, LPS); None without both."""
    lm = level.landmarks
    if lm.superior_endplate_lps is None or lm.inferior_endplate_lps is None:
        return None
    return np.subtract(lm.superior_endplate_lps, lm.inferior_endplate_lps)


def _head_first(levels: Iterable[Level]) -> list[Level]:
    """The levels with a body centre, from the head down (LPS: +z is superior)."""
    return sorted((lv for lv in levels if lv.landmarks.body_center_lps is not None),
                  key=lambda lv: -float(lv.landmarks.body_center_lps[2]))


def _turned_level_axis(plan: Plan, level: Level) -> str:
    """The angle between ``level``'s endplate axis and the line from the body centre of the plan's level above it
    to that of the level below (itself at the ends) when larger than ``SafetyParams.level_axis_max_deg``."""
    placed = _head_first(plan.levels)
    ids = [lv.id for lv in placed]
    span = _endplate_span(level)
    if span is None or level.id not in ids or len(placed) < 2 or not np.linalg.norm(span) > 0:
        return ""
    i = ids.index(level.id)
    above, below = placed[max(i - 1, 0)], placed[min(i + 1, len(placed) - 1)]
    spine = np.subtract(above.landmarks.body_center_lps, below.landmarks.body_center_lps)
    cos = float(span @ spine / (np.linalg.norm(span) * np.linalg.norm(spine)))
    angle = math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))
    if angle <= SAFETY_PARAMS.level_axis_max_deg:
        return ""
    return (f"the axis from the inferior to the superior endplate landmark of {level.name} lies {angle:.0f} degrees "
            f"from the line through the body centres of the levels next to it in the plan: its landmarks bound its "
            "bone and body on the image, so a disc or the next vertebra may be taken for them (check its endplates)")


def _odd_level_height(plan: Plan, level: Level) -> str:
    """Why ``level``'s landmarks cannot bound its bone on the image: their height does not fit the plan's levels
    next to it (``SafetyParams.level_height_ratio``); "" when it does or cannot be compared."""
    # the sacrum's segment has no disc below it (its inferior endplate landmark is the fused S1-S2 junction):
    # it is neither compared nor a reference (VB3_06's S1 landmarks span 6 mm, against L5's 27 mm)
    placed = [lv for lv in _head_first(plan.levels) if not lv.name.startswith("S")]
    ids = [lv.id for lv in placed]
    if level.id not in ids:
        return ""
    spans = [_endplate_span(lv) for lv in placed]
    heights = [None if sp is None else float(np.linalg.norm(sp)) for sp in spans]
    short, tall = SAFETY_PARAMS.level_height_ratio
    flag = odd_heights(heights, [None] * len(heights), short, tall).get(ids.index(level.id))
    if flag is None:
        return ""
    kind, h, near = flag
    return (f"the landmarks of {level.name} span {h:.0f} mm between its endplates, against {near:.0f} mm for "
            f"{'the levels' if kind == 'short' else 'the taller level'} next to it in the plan: they bound its bone "
            "and body on the image, so a disc or the next vertebra may be taken for them (check its endplates)")


def _path_line(path: TrajectoryPath, m: Any) -> tuple[np.ndarray, str]:
    """The instrument's axis, points at most 1 mm apart: from the skin when it was found on the image,
    else from the entry."""
    if m is not None and m.samples.from_skin:
        return m.samples.centre_lps.copy(), "skin"
    if m is not None:
        return m.samples.centre_lps[m.samples.entry_index:].copy(), "entry"
    poly = path.polyline(0.5)
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(math.ceil(s[-1] / 0.5)) + 1)
    ss = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(ss, s, poly[:, k]) for k in range(3)]), "entry"


def _part(m: Any, run: Any, label: str) -> PathPart:
    return PathPart(label, m.samples.centre_lps[run.i0:run.i1 + 1].copy(), run.start_mm, run.length_mm)


def _from_entry(m: Any, i: int) -> float:
    """Distance of sample ``i`` past the plan's entry point (negative: before it), mm."""
    return float(m.samples.s_mm[i] - m.samples.s_mm[m.samples.entry_index])


def _where(m: Any, run: Any) -> str:
    d = _from_entry(m, run.i0)
    return f"{d:.1f} mm past the entry" if d >= 0 else f"{-d:.1f} mm before the entry"


def _not_measured(name: str, label: str, why: str, source: str = "", value: Optional[float] = None,
                  unit: str = "mm") -> CheckResult:
    return CheckResult(name, label, UNVERIFIED, value, None, unit, f"Not measured on these images: {why}.", source,
                       basis=NOT_MEASURED)


_IMAGE_SOURCE = ("Measured on the image along the instrument's surface every 0.5 mm (issue 11); the bone, canal "
                 "and other bones are segmented from the image, the landmarks only place the search")


def _image_rows(plan: Plan, level: Level, frame: VertebraFrame, traj: Trajectory, path: TrajectoryPath,
                img: _ImageResult, rep: TrajectoryReport, add: Any, images: Any) -> None:
    """The five image rows (module docstring), measured or not measured."""
    st = plan.settings
    m = img.measurement
    model = img.model
    name = level.name
    why = img.note.removeprefix("not measured on these images: ").removeprefix("not measured: ")
    measured = model.measured if model is not None else set()
    code = m.level_code if m is not None else 0
    if m is not None and code == 0:
        measured = set()
        why = f"level {name} was not found on the image"
    warn = st.pedicle_clearance_warn_mm

    # --- canal
    if m is not None and "canal" in measured and m.canal_min_mm is not None:
        if m.canal_runs:
            deepest = max(r.depth_mm for r in m.canal_runs)
            first = m.canal_runs[0]
            add(CheckResult("canal", "Path clear of the spinal canal", FAIL, m.canal_min_mm, 0.0, "mm",
                            f"The instrument enters the spinal canal or the lateral recess ({_where(m, first)}, "
                            f"{sum(r.length_mm for r in m.canal_runs):.1f} mm of path, up to {deepest:.1f} mm deep).",
                            _IMAGE_SOURCE, basis=MEASURED,
                            parts=[_part(m, r, f"canal {r.length_mm:.1f} mm") for r in m.canal_runs]))
        else:
            status = PASS if m.canal_min_mm >= warn - _TOL else WARNING
            add(CheckResult("canal", "Path clear of the spinal canal", status, m.canal_min_mm, 0.0, "mm",
                            f"The instrument's surface stays {m.canal_min_mm:.1f} mm or more from the spinal canal "
                            "on the image" + ("." if status == PASS else f" (less than {warn:.1f} mm)."),
                            _IMAGE_SOURCE, basis=MEASURED))
    else:
        add(_not_measured("canal", "Path clear of the spinal canal",
                          why if m is None or code == 0 else "the spinal canal was not found on this image",
                          _IMAGE_SOURCE))

    bone_ok = m is not None and {"bone", "owners"} <= measured
    # --- bone corridor
    if bone_ok:
        if m.first_contact is None:
            i0 = m.samples.entry_index
            whole = PathPart(f"outside {name} bone", m.samples.centre_lps[i0:].copy(), float(m.samples.s_mm[i0]),
                             float(m.samples.s_mm[-1] - m.samples.s_mm[i0]))
            add(CheckResult("bone_corridor", "Path in the vertebra's bone", FAIL, None, 0.0, "mm",
                            f"The path never meets the bone of {name} on the image.", _IMAGE_SOURCE, basis=MEASURED,
                            parts=[whole]))
        elif m.gaps:
            total = sum(g.length_mm for g in m.gaps)
            words = "; ".join(f"{g.length_mm:.1f} mm from {_where(m, g)}" for g in m.gaps)
            add(CheckResult("bone_corridor", "Path in the vertebra's bone", FAIL, total, 0.0, "mm",
                            f"After it first meets the bone of {name}, the path leaves it: {words} (a gap: the "
                            "cortex is left or a foramen or the canal is crossed).", _IMAGE_SOURCE, basis=MEASURED,
                            parts=[_part(m, g, f"gap {g.length_mm:.1f} mm") for g in m.gaps]))
        else:
            inside = float(m.samples.s_mm[-1] - m.samples.s_mm[m.first_contact])
            add(CheckResult("bone_corridor", "Path in the vertebra's bone", PASS, 0.0, 0.0, "mm",
                            f"From its first contact with the bone of {name} ({_where(m, _Point(m.first_contact))}) "
                            f"to the tip, the path stays in that bone ({inside:.1f} mm).", _IMAGE_SOURCE,
                            basis=MEASURED))
    else:
        add(_not_measured("bone_corridor", "Path in the vertebra's bone", why, _IMAGE_SOURCE))

    # --- other bones before the entry
    if bone_ok:
        start_words = "the skin" if m.samples.from_skin else f"{-_from_entry(m, 0):.0f} mm behind the entry"
        bad = [r for r in m.others if r.code > 0 or r.code == OWNER_ILIUM]
        if m.others:
            words = "; ".join(f"{r.what} {r.length_mm:.1f} mm ({_where(m, r)})" for r in m.others)
            status = FAIL if bad else WARNING
            add(CheckResult("other_bone", "No other bone on the way", status,
                            sum(r.length_mm for r in m.others), 0.0, "mm",
                            f"Between {start_words} and the bone of {name} the path crosses {words}.",
                            _IMAGE_SOURCE, basis=MEASURED,
                            parts=[_part(m, r, f"{r.what} {r.length_mm:.1f} mm") for r in m.others]))
        else:
            add(CheckResult("other_bone", "No other bone on the way", PASS, 0.0, 0.0, "mm",
                            f"Between {start_words} and the bone of {name} the path crosses no other bone "
                            "(ilium, another vertebra's articular or transverse process, rib).", _IMAGE_SOURCE,
                            basis=MEASURED))
    else:
        add(_not_measured("other_bone", "No other bone on the way", why, _IMAGE_SOURCE))

    # --- pedicle clearance
    _pedicle_row(plan, level, frame, traj, path, img, rep, add, bone_ok, why, images)

    # --- zone inside the body, and its distance to the canal
    zone_src = ("The zone must lie inside the treated vertebral body (anterior breaches threaten vessels and viscera, "
                "domain.md 5.3); " + _src(st, "canal_margin_mm"))
    r = traj.params.zone_diameter_mm / 2.0
    if bone_ok and m.zone_inside_mm is not None:
        lim = traj.params.canal_margin_mm
        canal_txt = ""
        canal_bad = False
        if m.zone_canal_mm is not None:
            margin = image_canal_margin_mm(m.zone_canal_mm, traj.params.zone_diameter_mm, st.canal_margin_from)
            canal_bad = margin < lim - _TOL
            canal_txt = (f" Its {CANAL_MARGIN_WORDS[st.canal_margin_from]} is {margin:.1f} mm from the spinal canal "
                         f"on the image ({'less than' if canal_bad else 'at least'} the {lim:.1f} mm canal margin).")
        else:
            canal_txt = " Its distance to the canal is not measured on this image (see the canal margin row)."
        if not m.target_in_body:
            status, text = FAIL, f"The target lies outside the body of {name} on the image."
        elif m.zone_inside_mm < -_TOL:
            status, text = FAIL, (f"The ablation zone ({r * 2:.0f} mm) reaches {-m.zone_inside_mm:.1f} mm out of the "
                                  f"body of {name} on the image (its segmented outline).")
        else:
            status, text = PASS, (f"The ablation zone ({r * 2:.0f} mm) lies inside the body of {name} on the image, "
                                  f"{m.zone_inside_mm:.1f} mm from its outline.")
        if canal_bad:
            status = FAIL
        add(CheckResult("zone", "Zone inside the body", status, m.zone_inside_mm, 0.0, "mm", text + canal_txt,
                        zone_src, basis=MEASURED))
    else:
        est = (f" From the landmarks (an estimate that does not decide the check) the zone edge stays "
               f"{rep.anterior_wall_margin_mm:.1f} mm behind the anterior wall." if rep.anterior_wall_margin_mm is not None
               else "")
        c = _not_measured("zone", "Zone inside the body", why, zone_src)
        c.reason += est
        add(c)


@dataclass
class _Point:
    """A one-sample run (for :func:`_where`)."""

    i0: int


def _pedicle_row(plan: Plan, level: Level, frame: VertebraFrame, traj: Trajectory, path: TrajectoryPath,
                 img: _ImageResult, rep: TrajectoryReport, add: Any, bone_ok: bool, why: str, images: Any) -> None:
    """The pedicle clearance: on the image model; else from an outline drawn on the plan or measured on
    a CT around the pedicle landmark (:func:`pedicle_section`); else not measured, with the elliptical
    model quoted as an estimate."""
    st = plan.settings
    side = traj.side
    label = "Pedicle clearance"
    m = img.measurement
    if bone_ok and m.clearance_mm:
        clearance = dict(m.clearance_mm)
        at = m.clearance_at
        instrument = str(m.samples.instrument[int(np.argmin(np.linalg.norm(m.samples.centre_lps - at, axis=1)))]) \
            if at is not None else "instrument"
        instrument = "introducer" if instrument == "approach" else instrument
        pc = PedicleClearance(clearance, {w: max(0.0, -float(c)) for w, c in clearance.items() if c is not None},
                              {}, "image", at, instrument)
        words = "on the image"
        basis = MEASURED
    elif bone_ok and m.first_contact is None:
        add(CheckResult("pedicle_clearance", label, FAIL, None, st.pedicle_clearance_warn_mm, "mm",
                        f"The path does not enter the bone of the {side} pedicle on the image.", _IMAGE_SOURCE,
                        basis=MEASURED))
        return
    elif bone_ok:
        add(CheckResult("pedicle_clearance", label, WARNING, None, st.pedicle_clearance_warn_mm, "mm",
                        f"The path meets the bone of {level.name} only in front of the posterior wall (an "
                        "extrapedicular path): there is no pedicle to clear.", _IMAGE_SOURCE, basis=MEASURED))
        return
    else:
        section = None
        outline = level.pedicle_outline_left_lps if side == "left" else level.pedicle_outline_right_lps
        try:
            section = pedicle_section(level, frame, st, side, images)
        except LandmarkError as exc:
            add(_not_measured("pedicle_clearance", label, f"{why}; no model estimate either ({exc})",
                              _src(st, "pedicle_clearance_warn_mm")))
            return
        pc = pedicle_clearance(section, path)
        if section.source == "model" or pc.crossing_lps is None:
            rep.pedicle = pc if section.source != "model" else None
            est = ""
            if pc.crossing_lps is not None:
                est = (" Estimate from the average pedicle model (per-level width and height settings; it does not "
                       "decide the check): " + ", ".join(f"{w} {pc.clearance_mm[w]:.1f} mm" for w in WALLS) + ".")
            c = _not_measured("pedicle_clearance", label, why, _src(st, "pedicle_clearance_warn_mm"))
            c.reason += est
            add(c)
            return
        clearance = dict(pc.clearance_mm)
        words = "from the " + _SOURCE_WORDS.get(section.source, section.source)
        basis = MEASURED
        if outline:
            words += " (drawn on the plan)"
    rep.pedicle = pc
    limits = st.breach_grade_limits_mm
    worst_status, grades, texts = PASS, {}, []
    for w in WALLS:
        c = clearance.get(w)
        if c is None:
            continue
        g = grade_breach(max(0.0, -c), limits)
        grades[w] = g
        fail_from = (st.breach_fail_grade_medial_inferior if w in ("medial", "lower")
                     else st.breach_fail_grade_lateral_superior)
        if g == "A" and c >= st.pedicle_clearance_warn_mm - _TOL:
            status = PASS
            texts.append(f"{w} {c:.1f} mm")
        elif g == "A":
            status = WARNING
            texts.append(f"{w} only {c:.1f} mm")
        else:
            status = FAIL if GRADES.index(g) >= GRADES.index(fail_from) else WARNING
            texts.append(f"{w} wall breached by {-c:.1f} mm (Gertzbein-Robbins {g})")
        worst_status = worst([worst_status, status])
    pc.grade = grades
    cmin = min(v for v in clearance.values() if v is not None)
    wmin = min((w for w in WALLS if clearance.get(w) is not None), key=lambda w: clearance[w])
    gmax = max(grades.values(), key=GRADES.index) if grades else None
    parts = []
    if worst_status == FAIL and m is not None and pc.crossing_lps is not None:
        near = np.nonzero(np.linalg.norm(m.samples.centre_lps - pc.crossing_lps, axis=1) <= 2.0)[0]
        if len(near):
            i0, i1 = int(near[0]), int(near[-1])
            parts = [PathPart(f"pedicle {wmin} {-cmin:.1f} mm", m.samples.centre_lps[i0:i1 + 1].copy(),
                              float(m.samples.s_mm[i0]), float(m.samples.s_mm[i1] - m.samples.s_mm[i0]))]
    fail_src = (_src(st, "pedicle_clearance_warn_mm") + "; " + _src(st, "breach_grade_limits_mm") + "; "
                + _src(st, "breach_fail_grade_medial_inferior") + "; " + _src(st, "breach_fail_grade_lateral_superior"))
    add(CheckResult("pedicle_clearance", label, worst_status, cmin, st.pedicle_clearance_warn_mm, "mm",
                    f"The {pc.instrument} in the {side} pedicle, {words}: " + "; ".join(texts)
                    + f" (narrowest: {wmin}).", fail_src, grade=gmax, basis=basis, parts=parts))


def level_summary(level: Level) -> dict[str, Any]:
    lm = level.landmarks
    out: dict[str, Any] = {"name": level.name}
    for n in ("body_center_lps", "superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps",
              "anterior_wall_lps", "pedicle_left_lps", "pedicle_right_lps"):
        v = getattr(lm, n)
        out[n] = None if v is None else [round(float(x), 3) for x in v]
    return out


def depth_margin_of(plan: Plan, trajectory: Trajectory, report: "TrajectoryReport") -> Optional[DepthMargin]:
    """Depth and canal margin of ``trajectory`` with the margin its checks decided on (measured on the
    image when they could): what the trajectory panel and the documents show beside the checks."""
    check = next((c for c in report.checks if c.name == "canal_margin"), None)
    if check is None or report.canal_margin_mm is None:
        return depth_and_margin(plan, trajectory)
    basis = MARGIN_MEASURED if check.basis == MEASURED else MARGIN_FROM_LANDMARKS
    return depth_and_margin(plan, trajectory, report.canal_margin_mm, basis)


def evaluate_plan(plan: Plan, images: Any = None) -> PlanReport:
    """Every level (its landmarks) and every trajectory (metrics and checks) of ``plan``."""
    levels = [level_summary(lv) for lv in plan.levels]
    order = {lv.id: i for i, lv in enumerate(plan.levels)}
    trajs = sorted(plan.trajectories, key=lambda t: (order.get(t.level_id, 1_000), t.side))
    return PlanReport(levels, [evaluate_trajectory(plan, t, images) for t in trajs])
