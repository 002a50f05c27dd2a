"""Clinical and planning settings: every clinical number the planner uses, with its source.

Rule (../shared/domain.md, section 10): each number is a user-visible setting with a default,
never a bare constant in code. Each field below carries its unit, its confidence tag and its
source in ``json_schema_extra``; the settings dialog and the reports show them. The values used
are saved with every plan (``Plan.settings``) so a reviewer sees which thresholds applied, and a
trajectory can override the per-trajectory ones (``TrajectoryParams``).

Confidence tags, as in domain.md: [C] confirmed in the cited source, [S] secondary source,
[U] unconfirmed (check against the Intracept IFU), "design" a product decision.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

LevelName = Literal["T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"]

#: Names of lumbar and neighbouring levels from cranial to caudal.
LEVEL_ORDER: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")


def _meta(unit: str, tag: str, source: str, label: str,
          row_tags: Optional[dict[str, str]] = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"unit": unit, "tag": tag, "source": source, "label": label}
    if row_tags is not None:
        meta["row_tags"] = dict(row_tags)
    return meta


def setting(default: Any, *, unit: str, tag: str, source: str, label: str,
            row_tags: Optional[dict[str, str]] = None, **kwargs: Any) -> Any:
    """A pydantic field that documents a clinical setting. ``row_tags`` gives a confidence tag per key of a
    per-level table whose rows do not all share the field's tag (e.g. rows set by analogy)."""
    return Field(default, json_schema_extra=_meta(unit, tag, source, label, row_tags), **kwargs)


def setting_meta(name: str) -> dict[str, Any]:
    """Unit, tag, source, label (and row_tags) of one setting."""
    field = PlanningSettings.model_fields[name]
    return dict(field.json_schema_extra or {})  # type: ignore[arg-type]


def row_tag(name: str, key: str) -> str:
    """The confidence tag of one row of a per-level setting (the field's tag unless the row has its own)."""
    meta = setting_meta(name)
    return str(meta.get("row_tags", {}).get(key, meta.get("tag", "")))


def tag_summary(name: str) -> str:
    """The field's tag, followed by the rows that carry another tag: "[C]; [U]: T12, L6"."""
    meta = setting_meta(name)
    tag = str(meta.get("tag", ""))
    others: dict[str, list[str]] = {}
    for key, t in meta.get("row_tags", {}).items():
        if t != tag:
            others.setdefault(t, []).append(key)
    return "; ".join([tag] + [f"{t}: {', '.join(keys)}" for t, keys in others.items()])


class PlanningSettings(BaseModel):
    """Defaults from domain.md section 10, each with its source. Saved with every plan."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", ser_json_inf_nan="strings",
                              allow_inf_nan=False)  # a plan with NaN/Inf in a setting is refused at load

    # --- Eligibility (domain.md 1.1, 1.2, 1.4) --------------------------------------------------
    treatable_levels: list[str] = setting(
        ["L3", "L4", "L5", "S1"], unit="levels", tag="[C]", label="Treatable levels",
        source="FDA 510(k) K153272 intended use: BVN of L3 to S1 (domain.md 1.1)")
    qualifying_modic_types: list[str] = setting(
        ["1", "2"], unit="Modic type", tag="[C]", label="Qualifying Modic types",
        source="K153272 / K190504: Type 1 or Type 2 Modic changes; Type 3 alone does not qualify (domain.md 1.1, 2.1)")
    min_pain_duration_months: float = setting(
        6.0, unit="months", tag="[C]", label="Minimum pain duration", ge=0, le=240,
        source="K153272: chronic low back pain of at least 6 months (domain.md 1.1); 12 months under CAM 394 [S] (1.4)")
    min_conservative_care_months: float = setting(
        6.0, unit="months", tag="[C]", label="Minimum conservative care", ge=0, le=240,
        source="K153272: not responded to at least 6 months of conservative care (domain.md 1.1)")
    min_odi: float = setting(
        30.0, unit="points (0-100)", tag="[C]", label="Trial-style ODI flag", ge=0, le=100,
        source="INTRACEPT inclusion ODI >= 30/100, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    min_vas: float = setting(
        4.0, unit="cm (0-10)", tag="[C]", label="Trial-style VAS/NRS flag", ge=0, le=10,
        source="INTRACEPT inclusion VAS >= 4/10 cm, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    max_levels_per_procedure: int = setting(
        2, unit="vertebral bodies", tag="[S]", label="Levels per procedure (warn above)", ge=1, le=10,
        source="CMS billing article A59468: at most 2 levels per procedure (domain.md 1.4)")
    max_levels_lifetime: int = setting(
        4, unit="vertebral bodies", tag="[S]", label="Levels per lifetime (warn above)", ge=1, le=20,
        source="CMS billing article A59468: lifetime maximum of 4 treated vertebral bodies (domain.md 1.4)")
    payer_profile: Literal["medicare", "cam394", "none"] = setting(
        "medicare", unit="", tag="[S]", label="Payer profile",
        source="Medicare A59468 or commercial policy CAM 394 (domain.md 1.4)")
    max_adjacent_levels_cam394: int = setting(
        3, unit="vertebral bodies", tag="[S]", label="Adjacent levels under CAM 394 (warn above)", ge=1, le=10,
        source="CAM 394 policy: at most three adjacent vertebral bodies L3-S1 (domain.md 1.4)")
    min_pain_duration_months_cam394: float = setting(
        12.0, unit="months", tag="[S]", label="Minimum pain duration under CAM 394", ge=0, le=240,
        source="Commercial policy CAM 394: chronic low back pain of at least 12 months (domain.md 1.4)")
    min_cbt_sessions_cam394: int = setting(
        3, unit="sessions", tag="[S]", label="Minimum CBT sessions under CAM 394", ge=0, le=50,
        source="CAM 394: 6 months of structured conservative care including >= 3 CBT sessions (domain.md 1.4)")
    prior_surgery_min_months: float = setting(
        6.0, unit="months", tag="[C]", label="Earlier discectomy/laminectomy allowed after", ge=0, le=240,
        source="INTRACEPT exclusion: earlier discectomy or laminectomy allowed if > 6 months before and radicular "
               "pain resolved, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    max_disc_protrusion_mm: float = setting(
        5.0, unit="mm", tag="[C]", label="Disc extrusion/protrusion (exclusion above)", ge=0, le=30,
        source="INTRACEPT exclusion: disc extrusion or protrusion > 5 mm, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    max_spondylolisthesis_mm: float = setting(
        2.0, unit="mm", tag="[C]", label="Spondylolisthesis (exclusion above)", ge=0, le=30,
        source="INTRACEPT exclusion: spondylolisthesis > 2 mm at any level, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    max_bdi: float = setting(
        24.0, unit="points", tag="[C]", label="Beck Depression Inventory (exclusion above)", ge=0, le=63,
        source="INTRACEPT exclusion: Beck Depression Inventory > 24, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    max_waddell_signs: int = setting(
        3, unit="signs", tag="[C]", label="Waddell signs (exclusion above)", ge=0, le=5,
        source="INTRACEPT exclusion: > 3 Waddell signs, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    max_bmi: float = setting(
        40.0, unit="kg/m2", tag="[C]", label="Body-mass index (exclusion above)", ge=10, le=80,
        source="INTRACEPT exclusion: BMI > 40, Smuck 2021 RAPM Table 1 (domain.md 1.2)")
    min_age_years: float = setting(
        18.0, unit="years", tag="[S]", label="Minimum age", ge=0, le=100,
        source="Clinic pages list age under 18 as a contraindication (axionspine.com; domain.md 1.3)")

    # --- Modic grading (domain.md 2.2) ----------------------------------------------------------
    modic_grade_a_max_pct: float = setting(
        25.0, unit="% of body height", tag="[C]", label="Modic grade A below", gt=0, lt=100,
        source="Udby et al., J Orthop Res 2022;40(2):301: grade A <25% of vertebral body height (domain.md 2.2)")
    modic_grade_b_max_pct: float = setting(
        50.0, unit="% of body height", tag="[C]", label="Modic grade B up to", gt=0, lt=100,
        source="Udby et al. 2022: grade B 25-50%, grade C >50% of vertebral body height (domain.md 2.2)")
    modic_assistant_enabled: bool = setting(
        False, unit="", tag="design", label="Automated Modic suggestion",
        source="Off by default; when on, a suggestion the physician confirms (domain.md 2.3, 10)")
    modic_low_ratio: float = setting(
        0.80, unit="ratio to normal marrow", tag="design", label="Modic assistant: low signal below", gt=0, lt=1,
        source="Design threshold applying the signal table of domain.md 2.1 (T1/T2/STIR low vs normal marrow); "
               "not from a source")
    modic_high_ratio: float = setting(
        1.20, unit="ratio to normal marrow", tag="design", label="Modic assistant: high signal above", gt=1, lt=5,
        source="Design threshold applying the signal table of domain.md 2.1 (T1/T2/STIR high vs normal marrow); "
               "not from a source")
    modic_min_share_pct: float = setting(
        10.0, unit="% of the endplate", tag="design", label="Modic assistant: minimum share to report",
        ge=0, le=100,
        source="Design threshold: an abnormal zone covering less of the endplate is reported as none "
               "(applies the signal table of domain.md 2.1); not from a source")
    modic_mixed_min_pct: float = setting(
        25.0, unit="% of the abnormal endplate area", tag="design", label="Modic assistant: mixed type from",
        gt=0, le=50,
        source="Design threshold: an endplate is suggested as a mixed type (1/2, 2/3) when each type covers at "
               "least this share of its abnormal area; mixed types are transitional (domain.md 2.1); not from a "
               "source")
    modic_band_majority_pct: float = setting(
        50.0, unit="% of the band's height", tag="design", label="Modic assistant: abnormal column from",
        gt=0, le=100,
        source="Design threshold: a point of the endplate counts as abnormal when at least this share of the "
               "marrow band under it reads as a Modic type (domain.md 2.1 signal table); not from a source")
    modic_band_mm: float = setting(
        6.0, unit="mm", tag="design", label="Modic assistant: band measured next to the endplate", gt=0, le=20,
        source="Design choice: subchondral marrow band used to compare with the central marrow (domain.md 2.1 "
               "signal table, 2.2 height grading); not from a source")

    # --- Target (domain.md 3, 10) ---------------------------------------------------------------
    target_midline_offset_mm: float = setting(
        0.0, unit="mm", tag="[S]", label="Target offset from the midline", ge=-20, le=20,
        source="On the AP view the probe is placed at the midline of the vertebral body (domain.md 3)")
    target_depth_pct: float = setting(
        35.0, unit="% of AP depth from the posterior wall", tag="[U]", label="Target depth", ge=5, le=95,
        source="Often quoted 30-50% of AP depth from the posterior wall; FDA: terminus of the basivertebral "
               "foramen; ASNR: posterior one-half to one-third; a default of about 35-40% fits both (domain.md 3, "
               "10). 35%, the lower end: the basivertebral canal reaches 12-21.8% of the AP depth (Tzika 2021 "
               "[C]), and a 10 mm zone centred at 35% of a 33-36 mm body reaches back to about 20%, the "
               "terminus; at 40% it stops short of it")
    target_depth_min_pct: float = setting(
        30.0, unit="% of AP depth", tag="[U]", label="Target depth window, lower end", ge=0, le=100,
        source="Acceptable window 30-50% of AP depth (domain.md 3, 10)")
    target_depth_max_pct: float = setting(
        50.0, unit="% of AP depth", tag="[U]", label="Target depth window, upper end", ge=0, le=100,
        source="Acceptable window 30-50% of AP depth; ASNR: posterior half (domain.md 3, 10)")
    target_height_rule: Literal["by_level", "fixed"] = setting(
        "by_level", unit="", tag="design", label="Target height rule",
        source="by_level: the per-level height below, on the side of the basivertebral foramen (Tzika 2021 [C], "
               "domain.md 3); fixed: the same height at every level (target_height_pct, mid-height [U], "
               "domain.md 10)")
    target_height_pct: float = setting(
        50.0, unit="% of body height from the inferior endplate", tag="[U]", label="Target height (fixed rule)",
        ge=5, le=95,
        source="Mid-height of the vertebral body (domain.md 10); used when the target height rule is 'fixed'")
    target_height_pct_by_level: dict[str, float] = setting(
        {"T12": 60.0, "L1": 60.0, "L2": 60.0, "L3": 60.0, "L4": 60.0, "L5": 40.0, "L6": 40.0, "S1": 40.0},
        unit="% of body height from the inferior endplate", tag="design",
        label="Target height per level (by_level rule)",
        source="Side of mid-height [C]: basivertebral foramina lie nearer the upper rim from T10 to L4 and nearer "
               "the lower rim at L5 (Tzika 2021, 1,561 vertebrae; domain.md 3), nearer the upper endplate on MRI "
               "(Wang 2023 [C]). How far from mid-height (10% of the body height) is a design value, not from a "
               "source. S1 and L6 follow L5 by analogy [U]",
        row_tags={"T12": "design", "L1": "design", "L2": "design", "L3": "design", "L4": "design", "L5": "design",
                  "L6": "[U]", "S1": "[U]"})
    max_midline_offset_mm: float = setting(
        5.0, unit="mm", tag="design", label="Midline offset (warn above)", ge=0, le=30,
        source="Design tolerance around the midline target (domain.md 3: midline on AP [S])")

    # --- Ablation zone and margins (domain.md 4, 4.1) -------------------------------------------
    zone_diameter_mm: float = setting(
        10.0, unit="mm", tag="[U]", label="Ablation zone diameter", gt=1, le=40,
        source="Sphere about 10 mm centred on the active tip; ASNR: lesion often under 1 cm [C] (domain.md 4)")
    canal_margin_mm: float = setting(
        10.0, unit="mm", tag="[S]", label="Minimum zone-to-canal margin", ge=0, le=40,
        source="Contraindicated when the ablation zone is <10 mm from the spinal canal, Huang 2022 Semin "
               "Intervent Radiol (domain.md 1.3, 4.1); measured as the canal margin rule says")
    canal_margin_from: Literal["zone_edge", "zone_centre"] = setting(
        "zone_edge", unit="", tag="[U]", label="Canal margin measured from",
        source="The source does not say whether the 10 mm are measured from the zone's edge or from the active "
               "tip (zone centre) (domain.md 4.1, open item 9). zone_edge is the conservative reading; with a "
               "10 mm zone it needs the zone centre at least 15 mm in front of the posterior wall, deeper than a "
               "35-40% depth default on most bodies (domain.md 4.1 derived arithmetic)")
    endplate_margin_mm: float = setting(
        0.0, unit="mm", tag="[U]", label="Minimum zone-to-endplate margin", ge=-10, le=20,
        source="Warn if the zone crosses an endplate (0 mm); no sourced value (domain.md 4.1, 10)")

    # --- Pedicle (domain.md 5) ------------------------------------------------------------------
    pedicle_clearance_warn_mm: float = setting(
        2.0, unit="mm", tag="[C]", label="Pedicle wall clearance (warn below)", ge=0, le=10,
        source="Gertzbein-Robbins B/C limit at 2 mm; a medial breach >2 mm is significant (domain.md 5.3)")
    breach_grade_limits_mm: list[float] = setting(
        [2.0, 4.0, 6.0], unit="mm", tag="[C]", label="Gertzbein-Robbins grade limits (B/C, C/D, D/E)",
        source="Gertzbein-Robbins 1990 Spine 15:11, modern A-E form: A none, B <2, C 2-4, D 4-6, E >=6 mm "
               "(domain.md 5.3)")
    breach_fail_grade_medial_inferior: Literal["B", "C", "D", "E"] = setting(
        "C", unit="Gertzbein-Robbins grade", tag="[C]", label="Medial/inferior wall breach: fail from grade",
        source="A medial breach over 2 mm (grade C) counts as significant; grades A and B are acceptable; medial "
               "and inferior walls weighted highest (domain.md 5.3, 10)")
    breach_fail_grade_lateral_superior: Literal["B", "C", "D", "E"] = setting(
        "D", unit="Gertzbein-Robbins grade", tag="design", label="Lateral/superior wall breach: fail from grade",
        source="Design: these walls are weighted lower (pedicle-to-neural distances are larger above and lateral, "
               "Lien 2007 [C]); breaches over 4 mm were linked to neurological deficit, Gertzbein [C] "
               "(domain.md 5.2, 5.3)")
    pedicle_transverse_angle_deg: dict[str, float] = setting(
        {"T12": 10.0, "L1": 12.0, "L2": 10.0, "L3": 15.0, "L4": 20.0, "L5": 30.0, "L6": 30.0, "S1": 39.0},
        unit="deg", tag="[C]", label="Transverse (medial) pedicle angle per level",
        source="L1 12, L5 30, S1 39 deg: Orthobullets; L2-L4 lumbar number x 5 deg: Dickman 1992 J Neurosurg "
               "77:860; T12 and L6 by analogy [U] (domain.md 5.1, 10)",
        row_tags={"T12": "[U]", "L1": "[C]", "L2": "[C]", "L3": "[C]", "L4": "[C]", "L5": "[C]", "L6": "[U]",
                  "S1": "[C]"})
    pedicle_sagittal_angle_deg: float = setting(
        0.0, unit="deg from the superior endplate", tag="[U]", label="Sagittal pedicle angle", ge=-20, le=20,
        source="Lumbar pedicle axis roughly parallel to the superior endplate, about 0-10 deg (domain.md 5.2)")
    s1_pedicle_sagittal_reference: Literal["promontory", "superior_endplate"] = setting(
        "promontory", unit="", tag="[C]", label="S1: sagittal pedicle angle measured from",
        source="promontory: at S1 the sagittal angle is counted from the line from the pedicles to the sacral "
               "promontory (the anterior-superior corner of S1's body), where the S1 screw is aimed on the lateral "
               "view (AO technique, domain.md 4 'S1 access'); S1's superior endplate faces forward with the sacral "
               "slope, so the lumbar rule (parallel to the superior endplate, domain.md 5.2 [U]) points the path "
               "down into the canal and the S1 foramen. superior_endplate: the lumbar rule at S1 too")
    suggestion_transverse_range_deg: float = setting(
        12.0, unit="deg", tag="design", label="Suggestion: transverse angle searched around the setting", ge=0,
        le=30,
        source="Design: the per-level transverse angles are averages (L1 12 deg, L5 30 deg, S1 39 deg; the Dickman rule "
               "differs by 5-10 deg; stenosis makes the pedicles more sagittal, domain.md 5.1); the suggestion searches "
               "this far to either side for a path that passes the image checks")
    suggestion_sagittal_range_deg: float = setting(
        8.0, unit="deg", tag="design", label="Suggestion: sagittal angle searched around the setting", ge=0, le=20,
        source="Design: the lumbar pedicle axis lies about 0-10 deg from the superior endplate (domain.md 5.2); the "
               "suggestion searches this far to either side")
    pedicle_width_mm: dict[str, float] = setting(
        {"T12": 7.8, "L1": 8.7, "L2": 8.9, "L3": 10.3, "L4": 12.9, "L5": 18.0, "L6": 18.0, "S1": 19.0},
        unit="mm", tag="[U]", label="Pedicle width placeholders (replaced by measurement)",
        source="Zindrick 1987 Spine 12:160, recalled values (domain.md 5.2); always measure on the images")
    pedicle_height_mm: dict[str, float] = setting(
        {"T12": 15.0, "L1": 15.4, "L2": 15.0, "L3": 14.9, "L4": 14.8, "L5": 14.0, "L6": 14.0, "S1": 20.0},
        unit="mm", tag="[U]", label="Pedicle height placeholders (replaced by measurement)",
        source="Zindrick 1987 Spine 12:160, recalled values (domain.md 5.2); always measure on the images")

    # --- Instruments (domain.md 4, open item 4) -------------------------------------------------
    curve_start: Literal["posterior_wall"] = setting(
        "posterior_wall", unit="", tag="[C]", label="Curve start of the curved path",
        source="Curved stylet introduced once the posterior vertebral wall is reached on the lateral view, "
               "Benrud 2023 Interv Pain Med 2(3):100270 (domain.md 3)")
    introducer_past_wall_mm: float = setting(
        2.0, unit="mm", tag="design", label="Introducer tip past the posterior wall", ge=0, le=15,
        source="Design default: the introducer stops just past the posterior wall (domain.md 3, Benrud 2023)")
    cannula_curve_radius_mm: float = setting(
        20.0, unit="mm", tag="[U]", label="Curved cannula radius", gt=3, le=200,
        source="Not confirmed: curved-cannula radius is an open item (domain.md 9, item 4); design placeholder")
    introducer_diameter_mm: float = setting(
        4.2, unit="mm", tag="[U]", label="Introducer outer diameter", gt=0.5, le=8,
        source="Introducer gauge is an open item (domain.md 9, item 4); 8 G placeholder, check the IFU")
    cannula_diameter_mm: float = setting(
        2.8, unit="mm", tag="[U]", label="Curved cannula outer diameter", gt=0.5, le=8,
        source="Open item (domain.md 9, item 4); placeholder, check the IFU")
    probe_diameter_mm: float = setting(
        1.6, unit="mm", tag="[U]", label="RF probe diameter", gt=0.3, le=6,
        source="Open item (domain.md 9, item 4); placeholder, check the IFU")
    bipedicular_tip_spacing_mm: list[float] = setting(
        [10.0, 20.0], unit="mm", tag="[C]", label="Bipedicular tip spacing window",
        source="10-20 mm between tips, for the multitined device only, Sayed 2024 Med Devices 17:323 (domain.md 3)")
    rf_temperature_c: float = setting(
        85.0, unit="degC", tag="[U]", label="RF set point (display only)", ge=30, le=120,
        source="SMART/INTRACEPT protocol value widely quoted, not confirmed (domain.md 4, 9 item 1)")
    rf_duration_min: float = setting(
        15.0, unit="min", tag="[U]", label="RF duration (display only)", ge=1, le=60,
        source="SMART/INTRACEPT protocol value widely quoted, not confirmed (domain.md 4, 9 item 1)")

    procedure_duration_min: list[float] = setting(
        [60.0, 90.0], unit="min", tag="[S]", label="Procedure duration (patient sheet)",
        source="Outpatient; about 60-90 min, clinic and patient pages (domain.md 4 Logistics [S]; 7 typical sheet "
               "content: about an hour)")

    # --- Display and documents ------------------------------------------------------------------
    fluoro_distances: Literal["detector_mm_unless_calibrated"] = setting(
        "detector_mm_unless_calibrated", unit="", tag="design", label="Fluoroscopy distances",
        source="Shown as mm at the detector unless calibrated (viewer-conventions.md 1.7; domain.md 10)")
    sheet_max_grade: float = setting(
        8.0, unit="grade", tag="[C]", label="Patient sheet reading grade (warn above)", ge=3, le=16,
        source="NIH Clear Communication 6th-8th grade; AMA 6th grade (domain.md 7)")
    sheet_target_grade: float = setting(
        6.0, unit="grade", tag="[C]", label="Patient sheet reading grade (aim)", ge=3, le=16,
        source="AMA health-literacy manual: 6th grade (domain.md 7)")

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One row per setting: name, label, default, unit, tag, source (for dialogs and reports)."""
        rows = []
        defaults = cls()
        for name, field in cls.model_fields.items():
            extra = dict(field.json_schema_extra or {})  # type: ignore[arg-type]
            extra["tag"] = tag_summary(name)
            rows.append({"name": name, "default": getattr(defaults, name), **extra})
        return rows


def level_setting(mapping: dict[str, float], level_name: str, fallback_level: str = "L4") -> float:
    """Per-level lookup with a documented fallback for unusual names (e.g. a transitional L6)."""
    if level_name in mapping:
        return float(mapping[level_name])
    return float(mapping.get(fallback_level, next(iter(mapping.values()))))
