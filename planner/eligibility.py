"""Eligibility checklist for basivertebral nerve ablation, built from ../shared/domain.md (1.1-1.4, 2.1).

The checklist is data: :func:`checklist` returns one :class:`ChecklistItem` per question or derived
check, each with its key, question text, kind, rule, source, tag (where the criterion comes from:
FDA indication, trial inclusion, trial exclusion, device contraindication or payer rule) and
confidence tag ([C]/[S]/[U] as in domain.md). Every threshold comes from
:class:`planner.settings.PlanningSettings` (saved with the plan), never from a constant here.

The physician's answers live in ``plan.eligibility.answers`` keyed by item key. Nothing derived is
stored: :func:`evaluate_eligibility` computes the per-item status, the overall result and the
warnings from the plan each time (the GUI panel, the command line and the exports all call it).

Statuses: ``met``, ``not met``, ``unanswered`` and ``not applicable`` (payer items of a payer
profile that is not selected). Overall: ``not eligible`` if any applicable item is not met,
``incomplete`` if none is not met but some are unanswered, ``eligible`` otherwise. Warnings never
block planning (domain.md 10); they are listed for the physician and the exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

from planner.plan import Level, Plan
from planner.settings import LEVEL_ORDER, PlanningSettings

ItemKind = Literal["yes_no", "number", "derived"]
Status = Literal["met", "not met", "unanswered", "not applicable"]
Overall = Literal["eligible", "not eligible", "incomplete"]

MET: Status = "met"
NOT_MET: Status = "not met"
UNANSWERED: Status = "unanswered"
NOT_APPLICABLE: Status = "not applicable"

#: Panel groups, in display order.
GROUPS: tuple[str, ...] = ("indication", "trial scores", "exclusions", "contraindications", "payer limits")

#: Where a criterion comes from (the item's ``tag``).
TAG_INDICATION = "indication (FDA 510(k))"
TAG_INCLUSION = "trial inclusion"
TAG_EXCLUSION = "trial exclusion"
TAG_CONTRA = "device contraindication"
TAG_CONTRA_AND_EXCLUSION = "device contraindication; trial exclusion"
TAG_MEDICARE = "payer: Medicare A59468"
TAG_CAM394 = "payer: CAM 394"

_SRC_FDA = "FDA 510(k) K153272 intended use; Relievant (domain.md 1.1)"
_SRC_TRIAL = "INTRACEPT RCT, Smuck 2021 RAPM Table 1 (domain.md 1.2)"
_SRC_CONTRA = "Huang 2022 Semin Intervent Radiol Table 1, via a secondary summary (domain.md 1.3)"
_SRC_CLINIC = "Clinic pages: axionspine.com, h-o-m-e.org (domain.md 1.3)"
_SRC_MEDICARE = "CMS billing article A59468, via a summary site (domain.md 1.4)"
_SRC_CAM394 = "Commercial policy CAM 394 (domain.md 1.4)"


@dataclass(frozen=True)
class ChecklistItem:
    """One eligibility question or derived check."""

    key: str
    group: str
    question: str
    kind: ItemKind
    #: The rule in words, e.g. "at least 6 months" or "answer: no".
    rule: str
    source: str
    #: Where the criterion comes from (TAG_* above).
    tag: str
    #: Confidence tag as in domain.md: [C], [S], [U].
    confidence: str = "[C]"
    unit: str = ""
    #: yes_no: the answer that meets the item.
    expected: Optional[bool] = None
    #: number: comparison and the setting holding the threshold.
    op: str = ""
    setting: str = ""
    #: Payer profile the item belongs to ("medicare", "cam394"); None for every plan.
    payer: Optional[str] = None
    #: Key of the answer a number/yes-no item reads (default: its own key; payer variants share answers).
    answer_key: str = ""

    @property
    def reads(self) -> str:
        return self.answer_key or self.key


@dataclass
class ItemResult:
    item: ChecklistItem
    status: Status
    #: The answer as stored (None when unanswered or derived).
    answer: Any = None
    #: Why: the numbers compared, or what the plan shows.
    detail: str = ""


@dataclass
class EligibilityWarning:
    key: str
    message: str
    source: str = ""
    levels: list[str] = field(default_factory=list)


@dataclass
class EligibilityResult:
    items: list[ItemResult]
    overall: Overall
    warnings: list[EligibilityWarning]

    def item(self, key: str) -> ItemResult:
        for r in self.items:
            if r.item.key == key:
                return r
        raise KeyError(f"no eligibility item {key!r}")

    def by_group(self) -> dict[str, list[ItemResult]]:
        out: dict[str, list[ItemResult]] = {g: [] for g in GROUPS}
        for r in self.items:
            out.setdefault(r.item.group, []).append(r)
        return out

    def counts(self) -> dict[str, int]:
        c = {MET: 0, NOT_MET: 0, UNANSWERED: 0, NOT_APPLICABLE: 0}
        for r in self.items:
            c[r.status] += 1
        return c

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports and JSON exports."""
        return {
            "overall": self.overall,
            "items": [{"key": r.item.key, "group": r.item.group, "question": r.item.question,
                       "status": r.status, "answer": r.answer, "detail": r.detail, "rule": r.item.rule,
                       "source": r.item.source, "tag": r.item.tag, "confidence": r.item.confidence}
                      for r in self.items],
            "warnings": [{"key": w.key, "message": w.message, "source": w.source, "levels": list(w.levels)}
                         for w in self.warnings],
        }


def _fmt(v: float) -> str:
    return f"{v:g}"


def checklist(settings: Optional[PlanningSettings] = None) -> list[ChecklistItem]:
    """The checklist with question texts and rules written from ``settings`` (the plan's own)."""
    s = settings or PlanningSettings()
    treatable = ", ".join(s.treatable_levels) or "none"
    types = " or ".join(s.qualifying_modic_types) or "none"
    rng = _range_text(s.treatable_levels)
    yes = "answer: yes"
    no = "answer: no"
    items = [
        # --- indication -----------------------------------------------------------------------
        ChecklistItem("pain_duration_months", "indication", "How long has the low back pain lasted?",
                      "number", f"at least {_fmt(s.min_pain_duration_months)} months", _SRC_FDA, TAG_INDICATION,
                      unit="months", op=">=", setting="min_pain_duration_months"),
        ChecklistItem("conservative_care_months", "indication",
                      "How long has conservative (non-operative) care been tried without relief?",
                      "number", f"at least {_fmt(s.min_conservative_care_months)} months", _SRC_FDA,
                      TAG_INDICATION, unit="months", op=">=", setting="min_conservative_care_months"),
        ChecklistItem("axial_pain", "indication",
                      "Is the pain isolated axial low back pain (not radicular leg pain)?", "yes_no", yes,
                      "FDA K153272 (chronic low back pain) and INTRACEPT inclusion 'isolated lumbar back pain' "
                      "(domain.md 1.1, 1.2)", TAG_INDICATION, expected=True),
        ChecklistItem("modic_at_targets", "indication",
                      f"Does every level marked to treat show Modic type {types} at an endplate?", "derived",
                      f"each treated level has an endplate finding of type {types} (the physician's decision, not "
                      "an unconfirmed suggestion; mixed types count when they include a qualifying type; type 3 "
                      "alone does not)",
                      "FDA K153272 / K190504; Type 3 alone does not qualify (domain.md 1.1, 2.1)",
                      TAG_INDICATION),
        ChecklistItem("levels_in_range", "indication",
                      f"Are all levels marked to treat within {rng}?", "derived",
                      f"every treated level is one of {treatable}", _SRC_FDA, TAG_INDICATION),
        ChecklistItem("skeletally_mature", "indication", "Is the patient skeletally mature?", "yes_no", yes,
                      f"{_SRC_TRIAL}; skeletal immaturity is a device contraindication (1.3) and not covered by "
                      "Medicare (1.4)", f"{TAG_INCLUSION}; {TAG_CONTRA}", expected=True),
        ChecklistItem("able_to_consent", "indication",
                      "Is the patient able to consent and to complete the questionnaires?", "yes_no", yes,
                      _SRC_TRIAL, TAG_INCLUSION, expected=True),
        # --- trial scores ---------------------------------------------------------------------
        ChecklistItem("odi", "trial scores", "Oswestry Disability Index (ODI, 0-100)", "number",
                      f"at least {_fmt(s.min_odi)}", _SRC_TRIAL, TAG_INCLUSION, unit="points", op=">=",
                      setting="min_odi"),
        ChecklistItem("vas", "trial scores", "Back pain VAS/NRS (0-10)", "number", f"at least {_fmt(s.min_vas)}",
                      _SRC_TRIAL + "; a case report restates NRS > 4", TAG_INCLUSION, unit="cm", op=">=",
                      setting="min_vas"),
        ChecklistItem("bdi", "trial scores", "Beck Depression Inventory score", "number",
                      f"at most {_fmt(s.max_bdi)}", _SRC_TRIAL, TAG_EXCLUSION, unit="points", op="<=",
                      setting="max_bdi"),
        ChecklistItem("waddell_signs", "trial scores", "Number of positive Waddell signs (0-5)", "number",
                      f"at most {s.max_waddell_signs}", _SRC_TRIAL, TAG_EXCLUSION, unit="signs", op="<=",
                      setting="max_waddell_signs"),
        ChecklistItem("bmi", "trial scores", "Body-mass index", "number", f"at most {_fmt(s.max_bmi)}",
                      _SRC_TRIAL, TAG_EXCLUSION, unit="kg/m2", op="<=", setting="max_bmi"),
        # --- exclusions (trial, domain.md 1.2) ------------------------------------------------
        ChecklistItem("modic_outside_range", "exclusions", f"Are there Modic changes at levels outside {rng}?",
                      "derived", f"no level outside {treatable} has a Modic finding", _SRC_TRIAL, TAG_EXCLUSION),
        ChecklistItem("radicular_pain", "exclusions",
                      "Radicular pain (dermatomal pain matching nerve compression on imaging)?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("prior_lumbar_surgery", "exclusions",
                      "Previous lumbar spine surgery? (An earlier discectomy or laminectomy more than "
                      f"{_fmt(s.prior_surgery_min_months)} months ago with resolved radicular pain counts as no.)",
                      "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("symptomatic_stenosis", "exclusions",
                      "Symptomatic spinal stenosis (neurogenic claudication confirmed by imaging)?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("metabolic_bone_disease", "exclusions", "Metabolic bone disease?", "yes_no", no,
                      _SRC_TRIAL + "; osteoporosis is not a labelled device contraindication [U] (1.3)",
                      TAG_EXCLUSION, expected=False),
        ChecklistItem("spine_fracture", "exclusions",
                      "History of spine fragility fracture, trauma or compression fracture?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("spinal_cancer", "exclusions", "Spinal cancer?", "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION,
                      expected=False),
        ChecklistItem("bleeding_diathesis", "exclusions", "Bleeding diathesis?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False),
        ChecklistItem("other_pain_cause", "exclusions", "Radiographic evidence of another cause of the pain?",
                      "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("disc_protrusion", "exclusions",
                      f"Disc extrusion or protrusion larger than {_fmt(s.max_disc_protrusion_mm)} mm?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("spondylolisthesis", "exclusions",
                      f"Spondylolisthesis larger than {_fmt(s.max_spondylolisthesis_mm)} mm at any level?",
                      "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("spondylolysis", "exclusions", "Spondylolysis at any level?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False),
        ChecklistItem("facet_pain", "exclusions",
                      "Facet arthrosis or effusion matching suspected facet pain?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False),
        ChecklistItem("compensation_litigation", "exclusions", "Compensated injury or litigation?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("narcotics_addiction", "exclusions",
                      "Extended-release narcotics with addiction behaviours?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False),
        ChecklistItem("bedbound", "exclusions",
                      "Bedbound, or a neurological condition that prevents early mobility?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False),
        ChecklistItem("mri_contraindication", "exclusions", "Contraindication to MRI?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False),
        ChecklistItem("device_allergy", "exclusions", "Allergy to device components?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False),
        # --- contraindications (device, domain.md 1.3) ----------------------------------------
        ChecklistItem("infection", "contraindications",
                      "Active systemic or local infection (including spine infection)?", "yes_no", no,
                      f"{_SRC_CONTRA}; {_SRC_TRIAL}", TAG_CONTRA_AND_EXCLUSION, confidence="[S]", expected=False),
        ChecklistItem("pregnancy", "contraindications", "Pregnant or breastfeeding?", "yes_no", no,
                      f"{_SRC_CONTRA} (pregnancy); {_SRC_TRIAL} (pregnancy or lactation)", TAG_CONTRA_AND_EXCLUSION,
                      confidence="[S]", expected=False),
        ChecklistItem("electronic_implant", "contraindications",
                      "Pacemaker, defibrillator or other active electronic implant?", "yes_no", no,
                      f"{_SRC_CONTRA}; {_SRC_TRIAL} (active implantable devices)", TAG_CONTRA_AND_EXCLUSION,
                      confidence="[S]", expected=False),
        ChecklistItem("cardiopulmonary", "contraindications", "Severe cardiac or pulmonary compromise?", "yes_no",
                      no, _SRC_CONTRA, TAG_CONTRA, confidence="[S]", expected=False),
        ChecklistItem("age_years", "contraindications", "Age (years)", "number", f"at least {_fmt(s.min_age_years)}",
                      _SRC_CLINIC, TAG_CONTRA, confidence="[S]", unit="years", op=">=", setting="min_age_years"),
        ChecklistItem("scoliosis", "contraindications", "Scoliosis?", "yes_no", no, _SRC_CLINIC, TAG_CONTRA,
                      confidence="[S]", expected=False),
        ChecklistItem("canal_margin", "contraindications",
                      f"Does every planned ablation zone stay at least {_fmt(s.canal_margin_mm)} mm from the "
                      "spinal canal?", "derived",
                      f"for each trajectory, (target - posterior wall) along the AP axis minus the zone radius "
                      f">= {_fmt(s.canal_margin_mm)} mm", _SRC_CONTRA + " and 4.1", TAG_CONTRA, confidence="[S]"),
        # --- payer limits (domain.md 1.4) -----------------------------------------------------
        ChecklistItem("medicare_no_prior_ablation", "payer limits",
                      "No prior ablation of any vertebral body marked to treat?", "derived",
                      "no treated level is marked as ablated before", _SRC_MEDICARE, TAG_MEDICARE, confidence="[S]",
                      payer="medicare"),
        ChecklistItem("medicare_per_procedure", "payer limits",
                      f"At most {s.max_levels_per_procedure} vertebral bodies in this procedure?", "derived",
                      f"treated levels <= {s.max_levels_per_procedure}", _SRC_MEDICARE, TAG_MEDICARE,
                      confidence="[S]", payer="medicare"),
        ChecklistItem("medicare_lifetime", "payer limits",
                      f"At most {s.max_levels_lifetime} vertebral bodies treated in a lifetime?", "derived",
                      f"levels ablated before + treated now <= {s.max_levels_lifetime}", _SRC_MEDICARE, TAG_MEDICARE,
                      confidence="[S]", payer="medicare"),
        ChecklistItem("vertebral_injection", "payer limits",
                      "Biologic or medicament injection into the vertebral body planned together?", "yes_no", no,
                      _SRC_MEDICARE, TAG_MEDICARE, confidence="[S]", expected=False, payer="medicare"),
        ChecklistItem("cam394_pain_duration", "payer limits",
                      "Low back pain for the CAM 394 minimum?", "number",
                      f"at least {_fmt(s.min_pain_duration_months_cam394)} months (answer of the pain-duration "
                      "question)", _SRC_CAM394, TAG_CAM394, confidence="[S]", unit="months", op=">=",
                      setting="min_pain_duration_months_cam394", payer="cam394", answer_key="pain_duration_months"),
        ChecklistItem("cbt_sessions", "payer limits",
                      "Number of cognitive behavioural therapy (CBT) sessions in the conservative care", "number",
                      f"at least {s.min_cbt_sessions_cam394}", _SRC_CAM394, TAG_CAM394, confidence="[S]",
                      unit="sessions", op=">=", setting="min_cbt_sessions_cam394", payer="cam394"),
        ChecklistItem("cam394_adjacent", "payer limits",
                      f"At most {s.max_adjacent_levels_cam394} adjacent vertebral bodies, all within {rng}?",
                      "derived", f"longest run of adjacent treated levels <= {s.max_adjacent_levels_cam394} and "
                      f"every treated level one of {treatable}", _SRC_CAM394, TAG_CAM394, confidence="[S]",
                      payer="cam394"),
    ]
    return items


def _range_text(levels: Sequence[str]) -> str:
    if not levels:
        return "the treatable levels"
    order = [n for n in LEVEL_ORDER if n in levels]
    return f"{order[0]}-{order[-1]}" if len(order) > 1 else order[0]


# --------------------------------------------------------------------------------- answers
def parse_yes_no(value: Any) -> Optional[bool]:
    """True/False from a stored answer (bool, or text yes/no/true/false/1/0); None if not an answer."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        t = value.strip().lower()
        if t in ("yes", "y", "true", "1"):
            return True
        if t in ("no", "n", "false", "0"):
            return False
    return None


def parse_number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", "."))
        except ValueError:
            return None
    return None


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}


# --------------------------------------------------------------------------------- level helpers
def modic_components(modic_type: str) -> set[str]:
    """The pure types in a (possibly mixed) Modic type: "1/2" -> {"1", "2"}, "none" -> set()."""
    if not modic_type or modic_type == "none":
        return set()
    return set(modic_type.split("/"))


def level_qualifies(level: Level, qualifying: Sequence[str]) -> bool:
    """True if an endplate of the level shows a qualifying type (alone or in a mixed type)."""
    q = set(qualifying)
    return any(modic_components(f.modic_type) & q for f in (level.superior, level.inferior))


def level_type3_only(level: Level, qualifying: Sequence[str]) -> bool:
    types = modic_components(level.superior.modic_type) | modic_components(level.inferior.modic_type)
    return "3" in types and not (types & set(qualifying))


def anatomical_order(plan: Plan) -> list[str]:
    """Level names from cranial to caudal; L6 only when the plan has one (a transitional spine)."""
    names = {lv.name for lv in plan.levels}
    return [n for n in LEVEL_ORDER if n != "L6" or "L6" in names]


def longest_adjacent_run(plan: Plan, names: Sequence[str]) -> list[str]:
    """The longest run of anatomically consecutive names among ``names``."""
    order = anatomical_order(plan)
    idx = sorted(order.index(n) for n in set(names) if n in order)
    best: list[int] = []
    run: list[int] = []
    for i in idx:
        run = run + [i] if run and i == run[-1] + 1 else [i]
        if len(run) > len(best):
            best = list(run)
    return [order[i] for i in best]


def canal_margins_mm(plan: Plan) -> list[tuple[str, Optional[float]]]:
    """(trajectory label, margin) for each trajectory: the distance along the vertebra's posterior-to-
    anterior axis from the posterior wall to the target, minus the zone radius (the definition of
    issue 6's ``canal_margin_mm``). None when the level lacks wall landmarks."""
    import numpy as np

    out: list[tuple[str, Optional[float]]] = []
    for t in plan.trajectories:
        try:
            lv = plan.level(t.level_id)
        except KeyError:
            continue
        label = t.label or f"{lv.name} {t.side}"
        lm = lv.landmarks
        if lm.posterior_wall_lps is None or lm.anterior_wall_lps is None:
            out.append((label, None))
            continue
        post = np.asarray(lm.posterior_wall_lps)
        u = np.asarray(lm.anterior_wall_lps) - post
        n = float(np.linalg.norm(u))
        if n < 1e-6:
            out.append((label, None))
            continue
        depth = float((np.asarray(t.target_lps) - post) @ (u / n))
        out.append((label, depth - t.params.zone_diameter_mm / 2))
    return out


# --------------------------------------------------------------------------------- evaluation
def _treated(plan: Plan) -> list[Level]:
    return [lv for lv in plan.levels if lv.treat]


def _derived(key: str, plan: Plan, s: PlanningSettings) -> tuple[Status, str]:
    treated = _treated(plan)
    names = [lv.name for lv in treated]
    if key == "modic_at_targets":
        if not treated:
            return UNANSWERED, "no level is marked to treat"
        bad = [lv.name for lv in treated if not level_qualifies(lv, s.qualifying_modic_types)]
        if bad:
            return NOT_MET, f"no type {' or '.join(s.qualifying_modic_types)} finding at {', '.join(bad)}"
        return MET, f"qualifying Modic finding at {', '.join(names)}"
    if key == "levels_in_range":
        if not treated:
            return UNANSWERED, "no level is marked to treat"
        out = [n for n in names if n not in s.treatable_levels]
        if out:
            return NOT_MET, f"{', '.join(out)} outside {', '.join(s.treatable_levels)}"
        return MET, f"treated: {', '.join(names)}"
    if key == "modic_outside_range":
        if not plan.levels:
            return UNANSWERED, "no levels labelled"
        found = [f"{lv.name} {which} type {getattr(lv, which).modic_type}" for lv in plan.levels
                 if lv.name not in s.treatable_levels for which in ("superior", "inferior")
                 if getattr(lv, which).modic_type != "none"]
        if found:
            return NOT_MET, "; ".join(found)
        return MET, "no Modic finding outside " + _range_text(s.treatable_levels)
    if key == "canal_margin":
        margins = canal_margins_mm(plan)
        if not margins:
            return UNANSWERED, "no trajectory planned"
        missing = [lab for lab, m in margins if m is None]
        low = [f"{lab} {m:.1f} mm" for lab, m in margins if m is not None and m < s.canal_margin_mm]
        if low:
            return NOT_MET, "below the margin: " + ", ".join(low)
        if missing:
            return UNANSWERED, "wall landmarks missing for " + ", ".join(missing)
        return MET, ", ".join(f"{lab} {m:.1f} mm" for lab, m in margins)
    if key == "medicare_no_prior_ablation":
        if not treated:
            return UNANSWERED, "no level is marked to treat"
        again = [lv.name for lv in treated if lv.prior_ablation]
        return (NOT_MET, f"ablated before: {', '.join(again)}") if again else (MET, "none ablated before")
    if key == "medicare_per_procedure":
        if not treated:
            return UNANSWERED, "no level is marked to treat"
        n = len(treated)
        return (MET if n <= s.max_levels_per_procedure else NOT_MET), f"{n} treated ({', '.join(names)})"
    if key == "medicare_lifetime":
        if not treated:
            return UNANSWERED, "no level is marked to treat"
        total, prior = lifetime_count(plan)
        return ((MET if total <= s.max_levels_lifetime else NOT_MET),
                f"{prior} ablated before + {len(treated)} now = {total}")
    if key == "cam394_adjacent":
        if not treated:
            return UNANSWERED, "no level is marked to treat"
        run = longest_adjacent_run(plan, names)
        out = [n for n in names if n not in s.treatable_levels]
        if out:
            return NOT_MET, f"{', '.join(out)} outside {_range_text(s.treatable_levels)}"
        ok = len(run) <= s.max_adjacent_levels_cam394
        return (MET if ok else NOT_MET), f"longest adjacent run: {'-'.join(run)} ({len(run)})"
    raise KeyError(f"no derived rule for {key!r}")


def lifetime_count(plan: Plan) -> tuple[int, int]:
    """(total, prior): vertebral bodies ablated before (levels marked prior_ablation) plus those treated now."""
    prior = sum(1 for lv in plan.levels if lv.prior_ablation)
    return prior + len(_treated(plan)), prior


def evaluate_item(item: ChecklistItem, plan: Plan, settings: Optional[PlanningSettings] = None) -> ItemResult:
    s = settings or plan.settings
    if item.payer is not None and item.payer != s.payer_profile:
        return ItemResult(item, NOT_APPLICABLE, detail=f"payer profile is {s.payer_profile}")
    if item.kind == "derived":
        status, detail = _derived(item.key, plan, s)
        return ItemResult(item, status, None, detail)
    raw = plan.eligibility.answers.get(item.reads)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return ItemResult(item, UNANSWERED, None, "not answered")
    if item.kind == "yes_no":
        v = parse_yes_no(raw)
        if v is None:
            return ItemResult(item, UNANSWERED, raw, f"answer {raw!r} is not yes or no")
        ok = v == item.expected
        return ItemResult(item, MET if ok else NOT_MET, raw, "yes" if v else "no")
    num = parse_number(raw)
    if num is None:
        return ItemResult(item, UNANSWERED, raw, f"answer {raw!r} is not a number")
    threshold = float(getattr(s, item.setting))
    ok = _OPS[item.op](num, threshold)
    unit = f" {item.unit}" if item.unit else ""
    return ItemResult(item, MET if ok else NOT_MET, raw, f"{_fmt(num)}{unit} (rule {item.op} {_fmt(threshold)})")


def warnings_for(plan: Plan, settings: Optional[PlanningSettings] = None) -> list[EligibilityWarning]:
    """Warnings about the levels marked to treat (domain.md 1.4, 2.1, 4.2, 10)."""
    s = settings or plan.settings
    out: list[EligibilityWarning] = []
    treated = _treated(plan)
    names = [lv.name for lv in treated]
    q = s.qualifying_modic_types
    t3 = [lv.name for lv in treated if level_type3_only(lv, q)]
    if t3:
        out.append(EligibilityWarning("type3_only", f"{', '.join(t3)}: Modic type 3 only; type 3 alone does not "
                                      "qualify", "domain.md 1.1, 2.1", t3))
    outside = [n for n in names if n not in s.treatable_levels]
    if outside:
        out.append(EligibilityWarning("outside_range", f"{', '.join(outside)} marked to treat is outside "
                                      f"{_range_text(s.treatable_levels)}", "FDA K153272 (domain.md 1.1)", outside))
    if len(treated) > s.max_levels_per_procedure:
        out.append(EligibilityWarning("per_procedure", f"{len(treated)} vertebral bodies in one procedure, above "
                                      f"{s.max_levels_per_procedure}", "Medicare A59468 (domain.md 1.4, 4.2)", names))
    total, prior = lifetime_count(plan)
    if treated and total > s.max_levels_lifetime:
        out.append(EligibilityWarning("lifetime", f"{total} vertebral bodies in a lifetime ({prior} before, "
                                      f"{len(treated)} now), above {s.max_levels_lifetime}",
                                      "Medicare A59468 (domain.md 1.4)", names))
    if s.payer_profile == "cam394":
        run = longest_adjacent_run(plan, names)
        if len(run) > s.max_adjacent_levels_cam394:
            out.append(EligibilityWarning("adjacent_cam394", f"{len(run)} adjacent vertebral bodies ({'-'.join(run)}), "
                                          f"above {s.max_adjacent_levels_cam394} under CAM 394",
                                          "CAM 394 (domain.md 1.4)", run))
    again = [lv.name for lv in treated if lv.prior_ablation]
    if again:
        out.append(EligibilityWarning("prior_ablation", f"{', '.join(again)} was ablated before; a repeat ablation "
                                      "of the same body is not covered", "Medicare A59468 (domain.md 1.4)", again))
    pending = [f"{lv.name} {w}" for lv in plan.levels for w in ("superior", "inferior")
               if getattr(lv, w).suggestion is not None and not getattr(lv, w).confirmed]
    if pending:
        out.append(EligibilityWarning("unconfirmed_suggestion", "Modic suggestion not yet confirmed: "
                                      + ", ".join(pending), "domain.md 2.3 (suggestions need confirmation)"))
    return out


def evaluate_eligibility(plan: Plan) -> EligibilityResult:
    """Evaluate the checklist for ``plan`` with the plan's own settings."""
    s = plan.settings
    results = [evaluate_item(item, plan, s) for item in checklist(s)]
    applicable = [r for r in results if r.status != NOT_APPLICABLE]
    if any(r.status == NOT_MET for r in applicable):
        overall: Overall = "not eligible"
    elif any(r.status == UNANSWERED for r in applicable):
        overall = "incomplete"
    else:
        overall = "eligible"
    return EligibilityResult(results, overall, warnings_for(plan, s))


def item_by_key(key: str, settings: Optional[PlanningSettings] = None) -> ChecklistItem:
    for it in checklist(settings):
        if it.key == key:
            return it
    raise KeyError(f"no eligibility item {key!r}")


#: Keys of the items the physician answers (not derived), for forms and validation.
def answer_keys(settings: Optional[PlanningSettings] = None) -> list[str]:
    seen: list[str] = []
    for it in checklist(settings):
        if it.kind != "derived" and it.reads not in seen:
            seen.append(it.reads)
    return seen
