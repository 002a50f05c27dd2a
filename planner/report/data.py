"""The plan summary as data: everything the PDF shows, built headless from the plan and the images.

``build_report_data(plan, images)`` collects the header, eligibility, level findings, per-trajectory
key images, metrics, checks and override reasons, the settings used, and the review; the renderer
(:mod:`planner.report.pdf`) only lays it out. The GUI's export button and ``main.py report`` call the
same two functions, so they produce the same file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from planner import APP_NAME, __version__
from planner.plan import EndplateFinding, Level, Plan, Trajectory
from planner.eligibility import EligibilityResult, evaluate_eligibility
from planner.report.integration import (
    CheckRow,
    MetricRow,
    evaluate_trajectory,
    format_value,
)
from planner.report.keyimages import AnyImage, KeyImage, trajectory_key_images
from planner.review import anchor_label, review_state, signoff_statuses
from planner.settings import PlanningSettings

#: Printed on every page of the plan summary.
PLANNING_AID_STATEMENT = ("PLANNING AID ONLY - NOT FOR NAVIGATION. Verify every position on live imaging "
                          "during the procedure.")

#: Settings shown in the "device settings" table of the summary (the rest are in the appendix).
DEVICE_SETTINGS = (
    "zone_diameter_mm", "canal_margin_mm", "endplate_margin_mm", "pedicle_clearance_warn_mm",
    "target_depth_pct", "target_depth_min_pct", "target_depth_max_pct", "target_height_pct",
    "target_midline_offset_mm", "cannula_curve_radius_mm", "introducer_diameter_mm", "cannula_diameter_mm",
    "probe_diameter_mm", "introducer_past_wall_mm", "rf_temperature_c", "rf_duration_min",
)
DISPLAY_ONLY_SETTINGS = ("rf_temperature_c", "rf_duration_min")


def format_person_name(pn: str) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" as "Family, Given Middle"."""
    if not pn:
        return ""
    parts = [p.strip() for p in pn.split("=")[0].split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(x for x in (prefix, given, middle) if x)
    name = f"{family}, {first}" if family and first else family or first
    return f"{name} {suffix}".strip()


def format_person_name_natural(pn: str) -> str:
    """DICOM PN as "Given Middle Family" (for the patient sheet)."""
    if not pn:
        return ""
    parts = [p.strip() for p in pn.split("=")[0].split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    return " ".join(x for x in (prefix, given, middle, family, suffix) if x)


def format_dicom_date(value: str) -> str:
    v = (value or "").strip()
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return v


#: How units stored in the settings are printed.
UNIT_WORDS = {"degC": "°C", "deg": "°"}

SEX_WORDS = {"M": "male", "F": "female", "O": "other"}


@dataclass
class Field:
    label: str
    value: str


@dataclass
class EndplateRow:
    which: str  # "superior" / "inferior"
    modic_type: str
    grade: str
    share: str
    status: str  # "confirmed", "suggestion, not confirmed", "not assessed"
    suggestion: str = ""


@dataclass
class LevelRow:
    level_id: str
    name: str
    treat: bool
    painful: bool
    prior_ablation: bool
    endplates: list[EndplateRow]
    notes: str = ""
    landmarks_complete: bool = False


@dataclass
class CommentRow:
    anchor: str
    author: str
    created: str
    text: str


@dataclass
class TrajectorySection:
    trajectory_id: str
    title: str
    level_name: str
    side: str
    label: str
    points: list[Field]
    metrics: list[MetricRow]
    checks: list[CheckRow]
    overall: str
    checks_note: str
    override_reason: str
    key_images: list[KeyImage]
    image_notes: list[str]
    comments: list[CommentRow]


@dataclass
class SettingRow:
    name: str
    label: str
    value: str
    unit: str
    tag: str
    source: str
    display_only: bool = False
    changed: bool = False


@dataclass
class SignoffRow:
    reviewer: str
    role: str
    signed_at: str
    current: bool
    text: str


@dataclass
class ReviewSection:
    state: str
    signoffs: list[SignoffRow]
    comments: list[CommentRow]


@dataclass
class ReportData:
    title: str
    statement: str
    generated_at: str
    app_name: str
    app_version: str
    plan_id: str
    plan_author: str
    plan_modified: str
    patient_display_name: str
    patient: list[Field]
    study: list[Field]
    series: list[Field]
    eligibility: EligibilityResult
    levels: list[LevelRow]
    trajectories: list[TrajectorySection]
    device_settings: list[SettingRow]
    all_settings: list[SettingRow]
    review: ReviewSection
    notes: list[str] = field(default_factory=list)
    images_available: bool = False


def _endplate_row(which: str, f: EndplateFinding) -> EndplateRow:
    share = f"{f.share_pct:.0f}%" if f.share_pct is not None else "-"
    if f.confirmed:
        status = "confirmed by physician"
    elif f.suggestion is not None:
        status = "suggestion, not confirmed"
    elif f.modic_type != "none" or f.grade:
        status = "entered, not confirmed"
    else:
        status = "not assessed"
    suggestion = ""
    if f.suggestion is not None:
        s = f.suggestion
        bits = [f"type {s.modic_type}"]
        if s.grade:
            bits.append(f"grade {s.grade}")
        if s.share_pct is not None:
            bits.append(f"{s.share_pct:.0f}%")
        if s.ratios:
            bits.append(", ".join(f"{k} {v:.2f}" for k, v in sorted(s.ratios.items())))
        suggestion = "Assistant suggested " + ", ".join(bits)
        if s.explanation:
            suggestion += f" ({s.explanation})"
    modic = "none" if f.modic_type == "none" else f"Type {f.modic_type}"
    return EndplateRow(which, modic, f.grade or "-", share, status, suggestion)


def _level_row(level: Level) -> LevelRow:
    return LevelRow(level.id, level.name, level.treat, level.painful, level.prior_ablation,
                    [_endplate_row("superior", level.superior), _endplate_row("inferior", level.inferior)],
                    level.notes, level.landmarks.is_complete())


def _fmt_point(p: Optional[tuple[float, float, float]]) -> str:
    if p is None:
        return "-"
    return f"({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm"


def _comments(plan: Plan, kind: str, anchor_id: Optional[str] = None) -> list[CommentRow]:
    return [CommentRow(anchor_label(plan, c), c.author, c.created, c.text) for c in plan.review.comments
            if c.anchor_kind == kind and (anchor_id is None or c.anchor_id == anchor_id)]


def _trajectory_section(plan: Plan, traj: Trajectory, images: Optional[Mapping[str, AnyImage]],
                        with_3d: bool) -> TrajectorySection:
    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    level_name = level.name if level else "unknown level"
    title = f"{level_name} {traj.side}" + (f" ({traj.label})" if traj.label else "")
    points = [Field("Entry (bone)", _fmt_point(traj.entry_lps)),
              Field("Bend (curve start)", _fmt_point(traj.bend_lps) if traj.bend_lps else "straight path"),
              Field("Active tip (target)", _fmt_point(traj.target_lps))]
    ev = evaluate_trajectory(plan, traj, images)
    p = traj.params
    metrics = list(ev.metrics)
    metrics += [MetricRow("Ablation zone diameter (used)", format_value(p.zone_diameter_mm, "mm")),
                MetricRow("Path", "curved" if p.curved and traj.bend_lps is not None else "straight"),
                MetricRow("Curved cannula radius (used)", format_value(p.cannula_curve_radius_mm, "mm")),
                MetricRow("Canal margin required", format_value(p.canal_margin_mm, "mm"))]
    key_images, notes = trajectory_key_images(plan, traj, images, with_3d=with_3d)
    return TrajectorySection(traj.id, title, level_name, traj.side, traj.label, points, metrics, ev.checks,
                             ev.overall, ev.note, traj.override_reason, key_images, notes,
                             _comments(plan, "trajectory", traj.id))


def _settings_rows(settings: PlanningSettings) -> list[SettingRow]:
    defaults = PlanningSettings()
    rows = []
    for name, f in PlanningSettings.model_fields.items():
        meta = f.json_schema_extra or {}
        value = getattr(settings, name)
        if isinstance(value, dict):
            text = ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
        elif isinstance(value, list):
            text = ", ".join(format_value(v) for v in value)
        else:
            text = format_value(value)
        unit = UNIT_WORDS.get(str(meta.get("unit", "")), str(meta.get("unit", "")))  # type: ignore[union-attr]
        rows.append(SettingRow(name, str(meta.get("label", name)), text, unit,
                               str(meta.get("tag", "")), str(meta.get("source", "")),  # type: ignore[union-attr]
                               name in DISPLAY_ONLY_SETTINGS, value != getattr(defaults, name)))
    return rows


def build_report_data(plan: Plan, images: Optional[Mapping[str, Any]] = None, *, with_3d: bool = True,
                      generated_at: Optional[datetime] = None) -> "ReportData":
    """Collect everything the plan summary shows. ``images`` maps keys (Series Instance UIDs) to loaded
    :class:`~planner.imaging.volume.Volume` / ``ProjectionImage`` objects; without images the summary
    still builds and says that the key images are unavailable."""
    case = plan.case
    when = (generated_at or datetime.now(timezone.utc)).astimezone()
    patient = [Field("Patient", format_person_name(case.patient_name) or "-"),
               Field("Patient ID", case.patient_id or "-"),
               Field("Birth date", format_dicom_date(case.patient_birth_date) or "-"),
               Field("Sex", SEX_WORDS.get(case.patient_sex.upper(), case.patient_sex) or "-")]
    study = [Field("Study date", format_dicom_date(case.study_date) or "-"),
             Field("Study", case.study_description or "-"),
             Field("Accession", case.accession_number or "-"),
             Field("Institution", case.institution or "-"),
             Field("Study UID", case.study_instance_uid or "-")]
    series = [Field(ref.role or ref.modality or "series",
                    " ".join(x for x in (ref.modality, ref.description, f"({ref.number_of_images} images)"
                                         if ref.number_of_images else "") if x) or ref.series_instance_uid)
              for ref in case.series]
    traj_sections = []
    order = {lv.id: i for i, lv in enumerate(plan.levels)}
    for traj in sorted(plan.trajectories, key=lambda t: (order.get(t.level_id, 99), t.side)):
        traj_sections.append(_trajectory_section(plan, traj, images, with_3d))
    all_settings = _settings_rows(plan.settings)
    device = [r for name in DEVICE_SETTINGS for r in all_settings if r.name == name]
    statuses = signoff_statuses(plan)
    review = ReviewSection(
        review_state(plan),
        [SignoffRow(s.signoff.reviewer, s.signoff.role, s.signoff.signed_at, s.current, s.describe())
         for s in statuses],
        [CommentRow(anchor_label(plan, c), c.author, c.created, c.text) for c in plan.review.comments])
    has_volume = bool(images) and any(type(img).__name__ == "Volume" for img in images.values())
    notes = []
    if not has_volume:
        notes.append("Key images unavailable: the plan's images were not loaded. The 3D view shows schematic "
                     "vertebral bodies drawn from the landmarks.")
    if not plan.trajectories:
        notes.append("The plan has no trajectories yet.")
    return ReportData(
        title="BVN ablation plan summary", statement=PLANNING_AID_STATEMENT,
        generated_at=when.strftime("%Y-%m-%d %H:%M %Z").strip(), app_name=APP_NAME, app_version=__version__,
        plan_id=plan.plan_id, plan_author=plan.author, plan_modified=plan.modified,
        patient_display_name=format_person_name(case.patient_name),
        patient=patient, study=study, series=series, eligibility=evaluate_eligibility(plan),
        levels=[_level_row(lv) for lv in plan.levels], trajectories=traj_sections, device_settings=device,
        all_settings=all_settings, review=review, notes=notes, images_available=has_volume)
