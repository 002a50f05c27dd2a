"""The plan summary as data: everything the PDF shows, built headless from the plan and the images.

``build_report_data(plan, images)`` collects the header, the eligibility verdict, the level findings
(changed endplates in a table, normal ones in one line), one page of plan per treated level (key
images, the procedure-room numbers of each trajectory: skin entry, skin-to-target depth, angles in the
patient's axes and for the C-arm, depth and canal margin, checks) and the appendix (eligibility by
class, Modic details, metrics, checks with reasons and sources, settings, review). The renderer
(:mod:`planner.report.pdf`) only lays it out. The GUI's export button and ``main.py report`` call the
same two functions, so they produce the same file. Checks and metrics are the reports of the plan's
results (:class:`planner.display.results.PlanResults`: the window passes its session's, so the PDF shows
the values the panel shows), eligibility from :func:`planner.eligibility.evaluate_eligibility`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
import math
from typing import Any, Mapping, Optional

from planner import APP_NAME, __version__
from planner.plan import EndplateFinding, Level, Plan, Trajectory
from planner.checks import TrajectoryReport, depth_margin_of
from planner.display.results import PlanResults
from planner.eligibility import EligibilityResult, evaluate_eligibility, needs_confirmation
from planner.report.keyimages import AnyImage, KeyImage, trajectory_key_images
from planner.report.render3d import add_3d_key_image, trajectory_key_image_3d
from planner.report.procedure import ProcedureNumbers, procedure_numbers, side_word
from planner.trajectory import DepthMargin
from planner.review import anchor_label, review_state, signoff_statuses
from planner.settings import PlanningSettings, tag_summary

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


#: How units are printed in the documents.
UNIT_SYMBOLS = {"deg": "°", "degC": "°C"}


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        text = f"{value:z.1f}" if abs(value) < 1000 else f"{value:z.0f}"  # z: never "-0.0"
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        text = "(" + ", ".join(f"{float(v):.1f}" for v in value) + ")"
    else:
        text = str(value)
    unit = UNIT_SYMBOLS.get(unit, unit)
    if unit == "°":
        return f"{text}°"
    return f"{text} {unit}".strip() if unit else text


@dataclass
class CheckRow:
    key: str
    name: str
    status: str
    value: str = ""
    limit: str = ""
    reason: str = ""
    source: str = ""
    #: How the value was obtained: "measured" (on the image), "from landmarks" or "not measured".
    basis: str = ""
    #: The check in the list of those passed: its name and value; the name alone for a length of path that must
    #: be none (a gap in the bone, another bone crossed), which "0.0 mm" after the name would misread.
    summary: str = ""


@dataclass
class MetricRow:
    label: str
    value: str
    note: str = ""


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
    #: The procedure-room table: skin entry, depths, angles, C-arm (label, value).
    procedure: list[Field] = field(default_factory=list)
    #: Depth and canal margin in one line, and the conflict between them when there is one.
    depth_margin: str = ""
    depth_margin_conflict: str = ""


#: Key images on a level page, in this order (kinds); the page holds at most this many.
LEVEL_PAGE_KINDS = ("sagittal", "axial", "fluoro", "virtual", "3d")
LEVEL_PAGE_MAX_IMAGES = 6


@dataclass
class LevelPage:
    """One page of plan per treated level."""

    level_id: str
    name: str
    finding: str
    trajectories: list[TrajectorySection]

    @property
    def key_images(self) -> list[KeyImage]:
        """The level's pictures, read from its trajectories when the page is laid out (the window adds the
        3D views after the rest of the data is built): the reslices of every trajectory, the C-arm (or
        virtual) and 3D views of the first, at most ``LEVEL_PAGE_MAX_IMAGES``."""
        chosen: list[KeyImage] = []
        for i, sec in enumerate(self.trajectories):
            for kind in LEVEL_PAGE_KINDS:
                if i > 0 and kind not in ("sagittal", "axial"):
                    continue  # the C-arm and 3D views of the first trajectory show the whole level
                chosen += [k for k in sec.key_images if k.kind == kind]
        return chosen[:LEVEL_PAGE_MAX_IMAGES]


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
    level_pages: list[LevelPage]
    #: Endplates without a Modic change, as one line ("T12-L3 both endplates, L4 superior").
    normal_endplates: str
    device_settings: list[SettingRow]
    all_settings: list[SettingRow]
    review: ReviewSection
    notes: list[str] = field(default_factory=list)
    images_available: bool = False


def _endplate_row(which: str, f: EndplateFinding) -> EndplateRow:
    share = f"{f.share_pct:.0f}%" if f.share_pct is not None else "-"
    if f.confirmed:
        status = "confirmed by physician"
    elif needs_confirmation(f):
        status = "suggestion, not confirmed"
    elif f.suggestion is not None:
        status = "assistant: no change"
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


def _check_rows(rep: TrajectoryReport) -> list[CheckRow]:
    rows = []
    for c in rep.checks:
        limit = c.limit
        if isinstance(limit, (list, tuple)):
            limit_text = "-".join(format_value(float(v)) for v in limit) + (f" {c.unit}" if c.unit else "")
        else:
            limit_text = format_value(limit, c.unit) if limit is not None else ""
        value = format_value(c.value, c.unit) if c.value is not None else ""
        if c.grade:
            value = f"{value} (G-R {c.grade})".strip()
        none_allowed = c.value == 0.0 and c.limit == 0.0
        rows.append(CheckRow(c.name, c.label, c.status, value, limit_text, c.reason, c.source, c.basis,
                             c.label if none_allowed else f"{c.label} {value}".strip()))
    return rows


def trajectory_description(rep: TrajectoryReport) -> str:
    """A short description of the trajectory as it is now (never the note from when it was suggested)."""
    bits = []
    if rep.path is not None:
        bits.append("curved path" if rep.path.kind == "curved" else "straight path")
    if rep.target_depth_pct is not None:
        bits.append(f"target at {rep.target_depth_pct:.0f}% depth")
    if rep.midline_offset_mm is not None:
        bits.append(f"{rep.midline_offset_mm:.1f} mm from the midline")
    return ", ".join(bits)


def _procedure_fields(n: ProcedureNumbers) -> list[Field]:
    mm = lambda v: "not measured" if v is None else f"{v:.0f} mm"  # noqa: E731
    skin = (f"{_fmt_point(tuple(n.skin_lps))} on the {n.skin_source}" if n.skin_lps is not None
            else n.skin_note)
    rows = [Field("Skin entry (back)", skin),
            Field("Skin to target", (f"{mm(n.skin_to_target_mm)} along the path (skin to bone "
                                     f"{mm(n.skin_to_entry_mm)}, bone to target {mm(n.entry_to_target_mm)})")
                  if n.skin_to_target_mm is not None else f"not measured; bone entry to target "
                                                          f"{mm(n.entry_to_target_mm)}"),
            Field("Introducer angles", f"{side_word(n.medial_deg, 'medial', 'lateral')} (axial plane), "
                                              f"{side_word(n.cranial_deg, 'cranial', 'caudal')} (sagittal plane), "
                                              "from straight back-to-front")]
    if n.ap_tilt_deg is not None:
        rows.append(Field("C-arm AP", f"tilt {side_word(n.ap_tilt_deg, 'toward the head', 'toward the feet')} "
                                      f"(superior endplate edge-on); en face on the pedicle: oblique "
                                      f"{abs(n.enface_oblique_deg or 0):.1f}° to the {n.side} side, tilt "
                                      f"{side_word(n.enface_tilt_deg, 'toward the head', 'toward the feet')}"))
        rows.append(Field("C-arm lateral", f"angle {side_word(n.lateral_tilt_deg, 'right side toward the head', 'right side toward the feet')} "
                                           f"(endplates edge-on); vertebra rotated "
                                           f"{side_word(n.rotation_deg, 'right side back', 'right side forward')}"))
    return rows


def _trajectory_section(plan: Plan, traj: Trajectory, images: Optional[Mapping[str, AnyImage]],
                        with_3d: bool, rep: TrajectoryReport) -> TrajectorySection:
    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    level_name = level.name if level else "unknown level"
    # the description is made from the plan as it is now: the note stored when the trajectory was
    # suggested (e.g. "target moved to 46% depth") may no longer be true after an edit
    description = trajectory_description(rep)
    title = f"{level_name} {traj.side}" + (f" ({description})" if description else "")
    points = [Field("Entry (bone)", _fmt_point(traj.entry_lps)),
              Field("Bend (curve start)", _fmt_point(traj.bend_lps) if traj.bend_lps else "straight path"),
              Field("Active tip (target)", _fmt_point(traj.target_lps))]
    p = traj.params
    metrics = [MetricRow(m.label, format_value(m.value, m.unit), m.note) for m in rep.metrics]
    metrics += [MetricRow("Ablation zone diameter (used)", format_value(p.zone_diameter_mm, "mm")),
                MetricRow("Path", "curved" if p.curved and traj.bend_lps is not None else "straight"),
                MetricRow("Curved cannula radius (used)", format_value(p.cannula_curve_radius_mm, "mm")),
                MetricRow("Canal margin required", format_value(p.canal_margin_mm, "mm"))]
    key_images, notes = trajectory_key_images(plan, traj, images, report=rep)
    if with_3d:
        shot, more = trajectory_key_image_3d(plan, traj, images)
        notes += more
        if shot is not None:
            add_3d_key_image(key_images, shot)
    dm: Optional[DepthMargin] = depth_margin_of(plan, traj, rep)
    checks_note = " ".join(x for x in (rep.note, f"Image checks: {rep.image_note}." if rep.image_note else "") if x)
    section = TrajectorySection(traj.id, title, level_name, traj.side, description, points, metrics, _check_rows(rep),
                                rep.overall, checks_note, traj.override_reason, key_images, notes,
                                _comments(plan, "trajectory", traj.id),
                                _procedure_fields(procedure_numbers(plan, traj, images)),
                                dm.values_line() if dm else "", dm.conflict if dm else "")
    return section


def _level_finding(level: Level) -> str:
    bits = []
    for which in ("superior", "inferior"):
        f = getattr(level, which)
        if f.modic_type != "none":
            extra = ", ".join(x for x in (f"grade {f.grade}" if f.grade else "",
                                          f"{f.share_pct:.0f}% of the endplate" if f.share_pct is not None else "",
                                          "confirmed" if f.confirmed else "not confirmed") if x)
            bits.append(f"{which} endplate Modic type {f.modic_type} ({extra})")
    return "; ".join(bits) if bits else "no Modic change recorded"


def _level_pages(plan: Plan, sections: list[TrajectorySection]) -> list[LevelPage]:
    pages = []
    for lv in plan.levels:
        secs = [s for s in sections if plan.trajectory(s.trajectory_id).level_id == lv.id]
        if lv.treat or secs:
            pages.append(LevelPage(lv.id, lv.name, _level_finding(lv), secs))
    return pages


def normal_endplates_line(plan: Plan) -> str:
    """The endplates without a Modic change, runs of whole levels collapsed: "T12-L3, S1 inferior"."""
    def normal(f: EndplateFinding) -> bool:
        return f.modic_type == "none" and not needs_confirmation(f)

    parts: list[str] = []
    run: list[str] = []
    for lv in plan.levels:
        sup, inf = normal(lv.superior), normal(lv.inferior)
        if sup and inf:
            run.append(lv.name)
            continue
        if run:
            parts.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run = []
        if sup:
            parts.append(f"{lv.name} superior")
        if inf:
            parts.append(f"{lv.name} inferior")
    if run:
        parts.append(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


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
                               tag_summary(name), str(meta.get("source", "")),  # type: ignore[union-attr]
                               name in DISPLAY_ONLY_SETTINGS, value != getattr(defaults, name)))
    return rows


def build_report_data(plan: Plan, images: Optional[Mapping[str, Any]] = None, *, with_3d: bool = True,
                      generated_at: Optional[datetime] = None,
                      reports: Optional[Mapping[str, TrajectoryReport]] = None) -> "ReportData":
    """Collect everything the plan summary shows. ``images`` maps keys (Series Instance UIDs) to loaded
    :class:`~planner.imaging.volume.Volume` / ``ProjectionImage`` objects; without images the summary
    still builds and says that the key images are unavailable. ``reports`` are the trajectories'
    checks by id, from the session's results (``session.results.reports()``); without them the plan's
    own results are made (:meth:`PlanResults.for_plan`)."""
    if reports is None:
        reports = PlanResults.for_plan(plan, images or {}).reports()
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
        traj_sections.append(_trajectory_section(plan, traj, images, with_3d, reports[traj.id]))
    level_pages = _level_pages(plan, traj_sections)
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
        patient=patient, study=study, series=series,
        eligibility=evaluate_eligibility(plan, [reports[t.id] for t in plan.trajectories]),
        levels=[_level_row(lv) for lv in plan.levels], trajectories=traj_sections, level_pages=level_pages,
        normal_endplates=normal_endplates_line(plan), device_settings=device,
        all_settings=all_settings, review=review, notes=notes, images_available=has_volume)
