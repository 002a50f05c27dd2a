"""Eligibility checklist for basivertebral nerve ablation, built from ../shared/domain.md (1.1-1.4, 2.1).

Each criterion carries its **class**, the kind of source it comes from, and the class decides what a
criterion that is not met does to the verdict (issue 12, decided against domain.md 1.1-1.4):

=======================  =========================================================  ======================
class                    criteria                                                   not met gives
=======================  =========================================================  ======================
FDA indication           pain >= 6 months, conservative care >= 6 months, Modic     not eligible (red)
                         type 1/2 at every treated level, levels within L3-S1
                         (K153272, domain.md 1.1 [C])
device contraindication  active infection, skeletal immaturity, pregnancy,          not eligible (red),
                         electronic implants, severe cardiac/pulmonary disease,     with its source
                         ablation zone < 10 mm from the canal (Huang 2022 Table 1,
                         domain.md 1.3 [S])
clinic pages only        age under 18, scoliosis: listed as contraindications only  caution (amber), does
                         by clinic web pages (domain.md 1.3 [S]); neither the       not decide
                         510(k) nor Huang 2022 names them
trial criterion          INTRACEPT/SMART inclusion and exclusion (scores, BMI,      "outside the trial
                         litigation, ... ; domain.md 1.2 [C])                        population" (amber),
                                                                                    does not decide
payer rule               Medicare A59468 or CAM 394 (domain.md 1.4 [S]), only for   warning naming the
                         the chosen payer profile                                   payer profile (amber)
=======================  =========================================================  ======================

Decisions documented here: skeletal maturity is asked once, as the device contraindication
"skeletal immaturity" of Huang 2022 [S] (domain.md 1.1 notes it is not part of the 510(k); it is also
a trial inclusion and not covered by Medicare). Age under 18 and scoliosis come only from clinic
pages [S]; they are shown as a caution to check against the IFU, not as a contraindication that
decides. "Isolated axial pain" is the trial's wording (the 510(k) says chronic low back pain), so it
is a trial criterion; radicular pain is a trial exclusion.

The checklist is data: :func:`checklist` returns one :class:`ChecklistItem` per question or derived
check, each with its key, class, question text, kind, rule, source, tag and confidence tag ([C]/[S]/[U]
as in domain.md). Every threshold comes from :class:`planner.settings.PlanningSettings` (saved with the
plan), never from a constant here.

The physician's answers live in ``plan.eligibility.answers`` keyed by item key. Nothing derived is
stored: :func:`evaluate_eligibility` computes the per-item status, the verdict, the class that decided
it, the non-deciding flags and the warnings from the plan each time (the GUI panel, the command line
and the exports all call it).

Statuses: ``met``, ``not met``, ``unanswered`` and ``not applicable`` (payer items of a payer profile
that is not selected). Verdict: ``not eligible`` if an FDA-indication or device-contraindication item
is not met, ``incomplete`` if none is not met but some of them are unanswered, ``eligible`` otherwise.
Trial criteria, clinic-page cautions and payer rules never change the verdict; they are listed with
it. Warnings never block planning (domain.md 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

from planner.checks import CANAL_MARGIN_WORDS, TrajectoryReport, canal_margin_mm
from planner.plan import Level, Plan
from planner.settings import LEVEL_ORDER, PlanningSettings
from planner.trajectory import LandmarkError, vertebra_frame

ItemKind = Literal["yes_no", "number", "derived"]
Status = Literal["met", "not met", "unanswered", "not applicable"]
Overall = Literal["eligible", "not eligible", "incomplete"]

MET: Status = "met"
NOT_MET: Status = "not met"
UNANSWERED: Status = "unanswered"
NOT_APPLICABLE: Status = "not applicable"

#: Criterion classes (the item's ``group``), in display order.
FDA = "fda_indication"
CONTRA = "device_contraindication"
CLINIC = "clinic_pages"
TRIAL = "trial_criterion"
PAYER = "payer_rule"
GROUPS: tuple[str, ...] = (FDA, CONTRA, CLINIC, TRIAL, PAYER)

#: Colours the documents and the panel use for a class's outcome.
RED, AMBER, GREEN, GREY = "red", "amber", "green", "grey"


@dataclass(frozen=True)
class CriterionClass:
    key: str
    title: str
    #: Whether a criterion of this class that is not met decides the verdict.
    decides: bool
    #: What "not met" means for a criterion of this class.
    consequence: str
    colour: str
    #: One line on where the class comes from.
    basis: str


CLASSES: dict[str, CriterionClass] = {
    FDA: CriterionClass(FDA, "FDA indication", True, "not eligible", RED,
                        "510(k) K153272 intended use (domain.md 1.1) [C]"),
    CONTRA: CriterionClass(CONTRA, "Device contraindication", True, "contraindicated: not eligible", RED,
                           "Huang 2022 Semin Intervent Radiol Table 1, an IFU-style list read via a secondary "
                           "summary (domain.md 1.3) [S]"),
    CLINIC: CriterionClass(CLINIC, "Named by clinic pages only", False, "caution: check the IFU", AMBER,
                           "Listed as contraindications only by clinic web pages (domain.md 1.3) [S]; not in the "
                           "510(k) or Huang 2022; does not decide"),
    TRIAL: CriterionClass(TRIAL, "Trial criterion", False, "outside the trial population", AMBER,
                          "INTRACEPT/SMART inclusion and exclusion, Smuck 2021 Table 1 (domain.md 1.2) [C]; the "
                          "trials' population, not the indication; does not decide"),
    PAYER: CriterionClass(PAYER, "Payer rule", False, "payer warning", AMBER,
                          "Payer coverage rules of the chosen payer profile (domain.md 1.4) [S]; a warning, "
                          "does not decide"),
}

#: Payer profiles by name, as the warnings name them.
PAYER_NAMES = {"medicare": "Medicare A59468", "cam394": "commercial policy CAM 394", "none": "no payer profile"}

#: Where a criterion comes from (the item's ``tag``).
TAG_INDICATION = "indication (FDA 510(k))"
TAG_INCLUSION = "trial inclusion"
TAG_EXCLUSION = "trial exclusion"
TAG_CONTRA = "device contraindication"
TAG_CLINIC = "contraindication named by clinic pages"
TAG_MEDICARE = "payer: Medicare A59468"
TAG_CAM394 = "payer: CAM 394"

_SRC_FDA = "FDA 510(k) K153272 intended use; Relievant (domain.md 1.1)"
_SRC_TRIAL = "INTRACEPT RCT, Smuck 2021 RAPM Table 1 (domain.md 1.2)"
_SRC_CONTRA = "Huang 2022 Semin Intervent Radiol Table 1, via a secondary summary (domain.md 1.3)"
_SRC_CONTRA_SHORT = "Huang 2022 Table 1 [S], domain.md 1.3"
_SRC_CLINIC = "Clinic pages only: axionspine.com, h-o-m-e.org (domain.md 1.3)"
_SRC_MEDICARE = "CMS billing article A59468, via a summary site (domain.md 1.4)"
_SRC_CAM394 = "Commercial policy CAM 394 (domain.md 1.4)"


@dataclass(frozen=True)
class ChecklistItem:
    """One eligibility question or derived check."""

    key: str
    #: The criterion class (one of GROUPS).
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
    #: A short name for verdict lines ("ODI", "BMI").
    short: str = ""

    @property
    def reads(self) -> str:
        return self.answer_key or self.key

    @property
    def criterion_class(self) -> CriterionClass:
        return CLASSES[self.group]

    @property
    def name(self) -> str:
        return self.short or self.question.rstrip("?")


@dataclass
class ItemResult:
    item: ChecklistItem
    status: Status
    #: The answer as stored (None when unanswered or derived).
    answer: Any = None
    #: Why: the numbers compared, or what the plan shows.
    detail: str = ""

    @property
    def outcome(self) -> str:
        """The status in the words of the item's class: "not met" of a trial criterion reads "outside the
        trial population"."""
        if self.status == NOT_MET:
            return self.item.criterion_class.consequence
        return self.status

    @property
    def colour(self) -> str:
        if self.status == NOT_MET:
            return self.item.criterion_class.colour
        if self.status == MET:
            return GREEN
        if self.status == UNANSWERED and self.item.criterion_class.decides:
            return AMBER
        return GREY


@dataclass
class EligibilityWarning:
    key: str
    message: str
    source: str = ""
    levels: list[str] = field(default_factory=list)
    #: The criterion class the warning belongs to ("" for warnings about the plan's findings).
    group: str = ""


@dataclass
class EligibilityResult:
    items: list[ItemResult]
    overall: Overall
    warnings: list[EligibilityWarning]
    #: The payer profile the payer rules were read for.
    payer_profile: str = "none"

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

    def not_met(self, group: str) -> list[ItemResult]:
        return [r for r in self.items if r.item.group == group and r.status == NOT_MET]

    @property
    def decided_by(self) -> list[str]:
        """The deciding classes with a criterion not met (empty unless the verdict is "not eligible")."""
        return [g for g in GROUPS if CLASSES[g].decides and self.not_met(g)]

    @property
    def flags(self) -> dict[str, list[ItemResult]]:
        """Non-deciding classes with criteria not met: trial, clinic pages, payer."""
        return {g: self.not_met(g) for g in GROUPS if not CLASSES[g].decides and self.not_met(g)}

    @property
    def colour(self) -> str:
        if self.overall == "not eligible":
            return RED
        if self.overall == "incomplete" or self.flags:
            return AMBER
        return GREEN

    def class_title(self, group: str) -> str:
        title = CLASSES[group].title
        if group == PAYER:
            title += f" ({PAYER_NAMES.get(self.payer_profile, self.payer_profile)})"
        return title

    def class_line(self, group: str) -> str:
        """What one class says, e.g. "Outside the trial population: ODI 25 points (rule >= 30)"."""
        rows = self.not_met(group)
        if not rows:
            return ""
        heads = {FDA: "FDA indication not met", CONTRA: "Device contraindication",
                 CLINIC: "Caution, named by clinic pages only (check the IFU)",
                 TRIAL: "Outside the trial population",
                 PAYER: f"Payer warning ({PAYER_NAMES.get(self.payer_profile, self.payer_profile)})"}
        line = f"{heads[group]}: " + "; ".join(_item_words(r) for r in rows)
        if group == CONTRA:
            line += f" (source: {_SRC_CONTRA_SHORT})"
        return line

    def verdict_lines(self) -> list[str]:
        """The verdict and which class decided it, then one line per class that flags without deciding."""
        if self.overall == "not eligible":
            head = ("Not eligible, decided by " + " and ".join(
                "the FDA indication" if g == FDA else f"a {CLASSES[g].title.lower()}" for g in self.decided_by)
                + ". " + ". ".join(self.class_line(g) for g in self.decided_by) + ".")
        elif self.overall == "incomplete":
            missing = [r.item.name for r in self.items
                       if r.status == UNANSWERED and r.item.criterion_class.decides]
            head = ("Incomplete: not yet answered (FDA indication or device contraindication): "
                    + ", ".join(missing) + ".")
        else:
            head = "Eligible: FDA indication met, no device contraindication."
        return [head] + [f"Not deciding: {self.class_line(g)}." for g in self.flags]

    @property
    def verdict_line(self) -> str:
        """The verdict lines as one line (for exports and logs)."""
        return " ".join(self.verdict_lines())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports and JSON exports."""
        return {
            "overall": self.overall,
            "verdict": self.verdict_line,
            "decided_by": self.decided_by,
            "colour": self.colour,
            "payer_profile": self.payer_profile,
            "items": [{"key": r.item.key, "group": r.item.group, "class": CLASSES[r.item.group].title,
                       "question": r.item.question, "status": r.status, "outcome": r.outcome,
                       "colour": r.colour, "answer": r.answer, "detail": r.detail, "rule": r.item.rule,
                       "source": r.item.source, "tag": r.item.tag, "confidence": r.item.confidence}
                      for r in self.items],
            "warnings": [{"key": w.key, "message": w.message, "source": w.source, "levels": list(w.levels),
                          "group": w.group}
                         for w in self.warnings],
        }


def _fmt(v: float) -> str:
    return f"{v:g}"


def _item_words(r: ItemResult) -> str:
    """An item not met, in a verdict line: its short name, and what was found for numbers and derived items."""
    if r.item.kind == "yes_no" or not r.detail:
        return r.item.name
    if r.item.kind == "number":
        return f"{r.item.name} {r.detail}"
    return f"{r.item.name} ({r.detail})"


def checklist(settings: Optional[PlanningSettings] = None) -> list[ChecklistItem]:
    """The checklist with question texts and rules written from ``settings`` (the plan's own)."""
    s = settings or PlanningSettings()
    treatable = ", ".join(s.treatable_levels) or "none"
    types = " or ".join(s.qualifying_modic_types) or "none"
    rng = _range_text(s.treatable_levels)
    yes = "answer: yes"
    no = "answer: no"
    margin_from = CANAL_MARGIN_WORDS[s.canal_margin_from]
    items = [
        # --- FDA indication (domain.md 1.1) ----------------------------------------------------
        ChecklistItem("pain_duration_months", FDA, "How long has the low back pain lasted?",
                      "number", f"at least {_fmt(s.min_pain_duration_months)} months", _SRC_FDA, TAG_INDICATION,
                      unit="months", op=">=", setting="min_pain_duration_months", short="pain duration"),
        ChecklistItem("conservative_care_months", FDA,
                      "How long has conservative (non-operative) care been tried without relief?",
                      "number", f"at least {_fmt(s.min_conservative_care_months)} months", _SRC_FDA,
                      TAG_INDICATION, unit="months", op=">=", setting="min_conservative_care_months",
                      short="conservative care"),
        ChecklistItem("modic_at_targets", FDA,
                      f"Does every level marked to treat show Modic type {types} at an endplate?", "derived",
                      f"each treated level has an endplate finding of type {types} (the physician's decision, not "
                      "an unconfirmed suggestion; mixed types count when they include a qualifying type; type 3 "
                      "alone does not)",
                      "FDA K153272 / K190504; Type 3 alone does not qualify (domain.md 1.1, 2.1)",
                      TAG_INDICATION, short=f"Modic type {types} at every treated level"),
        ChecklistItem("levels_in_range", FDA,
                      f"Are all levels marked to treat within {rng}?", "derived",
                      f"every treated level is one of {treatable}", _SRC_FDA, TAG_INDICATION,
                      short=f"treated levels within {rng}"),
        # --- device contraindications (Huang 2022, domain.md 1.3) -------------------------------
        ChecklistItem("infection", CONTRA,
                      "Active systemic or local infection (including spine infection)?", "yes_no", no,
                      f"{_SRC_CONTRA}; also a trial exclusion, {_SRC_TRIAL}", TAG_CONTRA, confidence="[S]",
                      expected=False, short="active infection"),
        ChecklistItem("skeletally_mature", CONTRA, "Is the patient skeletally mature?", "yes_no", yes,
                      f"{_SRC_CONTRA} (skeletal immaturity); also a trial inclusion ({_SRC_TRIAL}) and not covered "
                      "by Medicare (domain.md 1.4); not part of the 510(k) intended use (domain.md 1.1)",
                      TAG_CONTRA, confidence="[S]", expected=True, short="skeletal immaturity"),
        ChecklistItem("pregnancy", CONTRA, "Pregnant or breastfeeding?", "yes_no", no,
                      f"{_SRC_CONTRA} (pregnancy); also a trial exclusion (pregnancy or lactation)", TAG_CONTRA,
                      confidence="[S]", expected=False, short="pregnancy"),
        ChecklistItem("electronic_implant", CONTRA,
                      "Pacemaker, defibrillator or other active electronic implant?", "yes_no", no,
                      f"{_SRC_CONTRA}; also a trial exclusion (active implantable devices)", TAG_CONTRA,
                      confidence="[S]", expected=False, short="electronic implant"),
        ChecklistItem("cardiopulmonary", CONTRA, "Severe cardiac or pulmonary compromise?", "yes_no",
                      no, _SRC_CONTRA, TAG_CONTRA, confidence="[S]", expected=False,
                      short="severe cardiac or pulmonary compromise"),
        ChecklistItem("canal_margin", CONTRA,
                      f"Does every planned ablation zone stay at least {_fmt(s.canal_margin_mm)} mm from the "
                      "spinal canal?", "derived",
                      f"for each trajectory, the {margin_from} lies at least {_fmt(s.canal_margin_mm)} mm in front "
                      "of the posterior wall along the vertebra's AP axis (setting 'Canal margin measured from')",
                      _SRC_CONTRA + " and 4.1; how it is measured: open item 9", TAG_CONTRA, confidence="[S]",
                      short="ablation zone less than "
                            f"{_fmt(s.canal_margin_mm)} mm from the spinal canal"),
        # --- named by clinic pages only (domain.md 1.3 [S]) ------------------------------------
        ChecklistItem("age_years", CLINIC, "Age (years)", "number", f"at least {_fmt(s.min_age_years)}",
                      _SRC_CLINIC + "; skeletal maturity is asked as the device contraindication", TAG_CLINIC,
                      confidence="[S]", unit="years", op=">=", setting="min_age_years", short="age"),
        ChecklistItem("scoliosis", CLINIC, "Scoliosis?", "yes_no", no, _SRC_CLINIC, TAG_CLINIC,
                      confidence="[S]", expected=False, short="scoliosis"),
        # --- trial criteria (INTRACEPT, domain.md 1.2) ------------------------------------------
        ChecklistItem("axial_pain", TRIAL,
                      "Is the pain isolated axial low back pain (not radicular leg pain)?", "yes_no", yes,
                      "INTRACEPT inclusion 'isolated lumbar back pain' (domain.md 1.2); the 510(k) says chronic "
                      "low back pain (1.1)", TAG_INCLUSION, expected=True, short="isolated axial pain"),
        ChecklistItem("able_to_consent", TRIAL,
                      "Is the patient able to consent and to complete the questionnaires?", "yes_no", yes,
                      _SRC_TRIAL, TAG_INCLUSION, expected=True, short="able to consent"),
        ChecklistItem("odi", TRIAL, "Oswestry Disability Index (ODI, 0-100)", "number",
                      f"at least {_fmt(s.min_odi)}", _SRC_TRIAL, TAG_INCLUSION, unit="points", op=">=",
                      setting="min_odi", short="ODI"),
        ChecklistItem("vas", TRIAL, "Back pain VAS/NRS (0-10)", "number", f"at least {_fmt(s.min_vas)}",
                      _SRC_TRIAL + "; a case report restates NRS > 4", TAG_INCLUSION, unit="cm", op=">=",
                      setting="min_vas", short="VAS"),
        ChecklistItem("bdi", TRIAL, "Beck Depression Inventory score", "number",
                      f"at most {_fmt(s.max_bdi)}", _SRC_TRIAL, TAG_EXCLUSION, unit="points", op="<=",
                      setting="max_bdi", short="Beck Depression Inventory"),
        ChecklistItem("waddell_signs", TRIAL, "Number of positive Waddell signs (0-5)", "number",
                      f"at most {s.max_waddell_signs}", _SRC_TRIAL, TAG_EXCLUSION, unit="signs", op="<=",
                      setting="max_waddell_signs", short="Waddell signs"),
        ChecklistItem("bmi", TRIAL, "Body-mass index", "number", f"at most {_fmt(s.max_bmi)}",
                      _SRC_TRIAL, TAG_EXCLUSION, unit="kg/m2", op="<=", setting="max_bmi", short="BMI"),
        ChecklistItem("modic_outside_range", TRIAL, f"Are there Modic changes at levels outside {rng}?",
                      "derived", f"no level outside {treatable} has a Modic finding", _SRC_TRIAL, TAG_EXCLUSION,
                      short=f"Modic changes outside {rng}"),
        ChecklistItem("radicular_pain", TRIAL,
                      "Radicular pain (dermatomal pain matching nerve compression on imaging)?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="radicular pain"),
        ChecklistItem("prior_lumbar_surgery", TRIAL,
                      "Previous lumbar spine surgery? (An earlier discectomy or laminectomy more than "
                      f"{_fmt(s.prior_surgery_min_months)} months ago with resolved radicular pain counts as no.)",
                      "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="previous lumbar surgery"),
        ChecklistItem("symptomatic_stenosis", TRIAL,
                      "Symptomatic spinal stenosis (neurogenic claudication confirmed by imaging)?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="symptomatic stenosis"),
        ChecklistItem("metabolic_bone_disease", TRIAL, "Metabolic bone disease?", "yes_no", no,
                      _SRC_TRIAL + "; osteoporosis is not a labelled device contraindication [U] (1.3)",
                      TAG_EXCLUSION, expected=False, short="metabolic bone disease"),
        ChecklistItem("spine_fracture", TRIAL,
                      "History of spine fragility fracture, trauma or compression fracture?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="spine fracture"),
        ChecklistItem("spinal_cancer", TRIAL, "Spinal cancer?", "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION,
                      expected=False, short="spinal cancer"),
        ChecklistItem("bleeding_diathesis", TRIAL, "Bleeding diathesis?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False, short="bleeding diathesis"),
        ChecklistItem("other_pain_cause", TRIAL, "Radiographic evidence of another cause of the pain?",
                      "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="another cause of the pain"),
        ChecklistItem("disc_protrusion", TRIAL,
                      f"Disc extrusion or protrusion larger than {_fmt(s.max_disc_protrusion_mm)} mm?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="disc protrusion"),
        ChecklistItem("spondylolisthesis", TRIAL,
                      f"Spondylolisthesis larger than {_fmt(s.max_spondylolisthesis_mm)} mm at any level?",
                      "yes_no", no, _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="spondylolisthesis"),
        ChecklistItem("spondylolysis", TRIAL, "Spondylolysis at any level?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False, short="spondylolysis"),
        ChecklistItem("facet_pain", TRIAL,
                      "Facet arthrosis or effusion matching suspected facet pain?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False, short="facet pain"),
        ChecklistItem("compensation_litigation", TRIAL, "Compensated injury or litigation?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="compensated injury or litigation"),
        ChecklistItem("narcotics_addiction", TRIAL,
                      "Extended-release narcotics with addiction behaviours?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False, short="extended-release narcotics"),
        ChecklistItem("bedbound", TRIAL,
                      "Bedbound, or a neurological condition that prevents early mobility?", "yes_no", no,
                      _SRC_TRIAL, TAG_EXCLUSION, expected=False, short="bedbound"),
        ChecklistItem("mri_contraindication", TRIAL, "Contraindication to MRI?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False, short="MRI contraindication"),
        ChecklistItem("device_allergy", TRIAL, "Allergy to device components?", "yes_no", no, _SRC_TRIAL,
                      TAG_EXCLUSION, expected=False, short="device allergy"),
        # --- payer rules (domain.md 1.4) --------------------------------------------------------
        ChecklistItem("medicare_no_prior_ablation", PAYER,
                      "No prior ablation of any vertebral body marked to treat?", "derived",
                      "no treated level is marked as ablated before", _SRC_MEDICARE, TAG_MEDICARE, confidence="[S]",
                      payer="medicare", short="prior ablation of a treated body"),
        ChecklistItem("medicare_per_procedure", PAYER,
                      f"At most {s.max_levels_per_procedure} vertebral bodies in this procedure?", "derived",
                      f"treated levels <= {s.max_levels_per_procedure}", _SRC_MEDICARE, TAG_MEDICARE,
                      confidence="[S]", payer="medicare",
                      short=f"more than {s.max_levels_per_procedure} vertebral bodies in one procedure"),
        ChecklistItem("medicare_lifetime", PAYER,
                      f"At most {s.max_levels_lifetime} vertebral bodies treated in a lifetime?", "derived",
                      f"levels ablated before + treated now <= {s.max_levels_lifetime}", _SRC_MEDICARE, TAG_MEDICARE,
                      confidence="[S]", payer="medicare",
                      short=f"more than {s.max_levels_lifetime} vertebral bodies in a lifetime"),
        ChecklistItem("vertebral_injection", PAYER,
                      "Biologic or medicament injection into the vertebral body planned together?", "yes_no", no,
                      _SRC_MEDICARE, TAG_MEDICARE, confidence="[S]", expected=False, payer="medicare",
                      short="injection into the vertebral body"),
        ChecklistItem("cam394_pain_duration", PAYER,
                      "Low back pain for the CAM 394 minimum?", "number",
                      f"at least {_fmt(s.min_pain_duration_months_cam394)} months (answer of the pain-duration "
                      "question)", _SRC_CAM394, TAG_CAM394, confidence="[S]", unit="months", op=">=",
                      setting="min_pain_duration_months_cam394", payer="cam394", answer_key="pain_duration_months",
                      short="pain duration"),
        ChecklistItem("cbt_sessions", PAYER,
                      "Number of cognitive behavioural therapy (CBT) sessions in the conservative care", "number",
                      f"at least {s.min_cbt_sessions_cam394}", _SRC_CAM394, TAG_CAM394, confidence="[S]",
                      unit="sessions", op=">=", setting="min_cbt_sessions_cam394", payer="cam394",
                      short="CBT sessions"),
        ChecklistItem("cam394_adjacent", PAYER,
                      f"At most {s.max_adjacent_levels_cam394} adjacent vertebral bodies, all within {rng}?",
                      "derived", f"longest run of adjacent treated levels <= {s.max_adjacent_levels_cam394} and "
                      f"every treated level one of {treatable}", _SRC_CAM394, TAG_CAM394, confidence="[S]",
                      payer="cam394", short="adjacent vertebral bodies"),
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


def canal_margins_mm(plan: Plan, reports: Optional[Sequence[TrajectoryReport]] = None
                     ) -> list[tuple[str, Optional[float]]]:
    """(level and side, margin) for each trajectory (from the zone edge or the zone centre, as
    ``canal_margin_from`` says): with the trajectories' ``reports`` the margin their checks decided on
    (measured on the image when they could), else from the posterior wall landmark
    (:func:`planner.checks.canal_margin_mm`). None when the level lacks the landmarks of its frame."""
    out: list[tuple[str, Optional[float]]] = []
    s = plan.settings
    if reports is not None:
        return [(f"{r.level_name} {r.side}", r.canal_margin_mm) for r in reports]
    for t in plan.trajectories:
        try:
            lv = plan.level(t.level_id)
        except KeyError:
            continue
        label = f"{lv.name} {t.side}"
        try:
            frame = vertebra_frame(lv)
        except LandmarkError:
            out.append((label, None))
            continue
        out.append((label, canal_margin_mm(frame, t.target_lps, t.params.zone_diameter_mm, s.canal_margin_from)))
    return out


# --------------------------------------------------------------------------------- evaluation
def _treated(plan: Plan) -> list[Level]:
    return [lv for lv in plan.levels if lv.treat]


def _derived(key: str, plan: Plan, s: PlanningSettings,
             reports: Optional[Sequence[TrajectoryReport]] = None) -> tuple[Status, str]:
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
        margins = canal_margins_mm(plan, reports)
        if not margins:
            return UNANSWERED, "no trajectory planned"
        missing = [lab for lab, m in margins if m is None]
        low = [f"{lab} {m:.1f} mm" for lab, m in margins if m is not None and m < s.canal_margin_mm]
        what = f"from the {CANAL_MARGIN_WORDS[s.canal_margin_from]}"
        if low:
            return NOT_MET, f"below {_fmt(s.canal_margin_mm)} mm {what}: " + ", ".join(low)
        if missing:
            return UNANSWERED, "wall landmarks missing for " + ", ".join(missing)
        return MET, f"{what}: " + ", ".join(f"{lab} {m:.1f} mm" for lab, m in margins)
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


def evaluate_item(item: ChecklistItem, plan: Plan, settings: Optional[PlanningSettings] = None,
                  reports: Optional[Sequence[TrajectoryReport]] = None) -> ItemResult:
    s = settings or plan.settings
    if item.payer is not None and item.payer != s.payer_profile:
        return ItemResult(item, NOT_APPLICABLE, detail=f"payer profile is {s.payer_profile}")
    if item.kind == "derived":
        status, detail = _derived(item.key, plan, s, reports)
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


#: Payer warnings in words, per payer item (the detail of the item follows).
_PAYER_WARNING_TEXT = {
    "medicare_no_prior_ablation": "a repeat ablation of the same vertebral body is not covered",
    "medicare_per_procedure": "more vertebral bodies in one procedure than covered",
    "medicare_lifetime": "more vertebral bodies in a lifetime than covered",
    "vertebral_injection": "not covered together with an injection into the vertebral body",
    "cam394_pain_duration": "pain shorter than the policy's minimum",
    "cbt_sessions": "fewer CBT sessions than the policy asks",
    "cam394_adjacent": "more adjacent vertebral bodies than the policy covers",
}


def warnings_for(plan: Plan, settings: Optional[PlanningSettings] = None,
                 items: Optional[Sequence[ItemResult]] = None) -> list[EligibilityWarning]:
    """Warnings about the plan (domain.md 1.4, 2.1, 4.2, 10): findings at the treated levels, Modic
    suggestions waiting for a decision, and one warning per payer rule not met, naming the payer profile."""
    s = settings or plan.settings
    out: list[EligibilityWarning] = []
    treated = _treated(plan)
    names = [lv.name for lv in treated]
    q = s.qualifying_modic_types
    t3 = [lv.name for lv in treated if level_type3_only(lv, q)]
    if t3:
        out.append(EligibilityWarning("type3_only", f"{', '.join(t3)}: Modic type 3 only; type 3 alone does not "
                                      "qualify", "domain.md 1.1, 2.1", t3, FDA))
    results = list(items) if items is not None else [evaluate_item(it, plan, s) for it in checklist(s)]
    payer = PAYER_NAMES.get(s.payer_profile, s.payer_profile)
    for r in results:
        if r.item.group == PAYER and r.status == NOT_MET:
            levels = [lv.name for lv in treated if lv.prior_ablation] if r.item.key == "medicare_no_prior_ablation" \
                else names
            out.append(EligibilityWarning(r.item.key, f"Payer warning ({payer}): "
                                          f"{_PAYER_WARNING_TEXT.get(r.item.key, r.item.name)} ({r.detail})",
                                          r.item.source, levels, PAYER))
    if s.payer_profile == "none" and len(treated) > s.max_levels_per_procedure:
        out.append(EligibilityWarning("per_procedure", f"{len(treated)} vertebral bodies in one procedure, above "
                                      f"{s.max_levels_per_procedure} (no payer profile chosen; the Medicare "
                                      "limit)", "Medicare A59468 (domain.md 1.4, 4.2, 10)", names))
    pending = [f"{lv.name} {w}" for lv in plan.levels for w in ("superior", "inferior")
               if needs_confirmation(getattr(lv, w))]
    if pending:
        out.append(EligibilityWarning("unconfirmed_suggestion", "Modic suggestion not yet confirmed: "
                                      + ", ".join(pending), "domain.md 2.3 (suggestions need confirmation)"))
    return out


def needs_confirmation(finding: Any) -> bool:
    """An endplate waits for the physician when the assistant suggested a Modic change (or one was entered)
    and nobody confirmed it. A suggestion of "none" on an endplate recorded as "none" needs no click."""
    if finding.confirmed:
        return False
    suggested = finding.suggestion is not None and finding.suggestion.modic_type != "none"
    return suggested or (finding.suggestion is not None and finding.modic_type != "none")


def evaluate_eligibility(plan: Plan, reports: Optional[Sequence[TrajectoryReport]] = None) -> EligibilityResult:
    """Evaluate the checklist for ``plan`` with the plan's own settings. ``reports`` (the trajectories'
    checks, e.g. ``session.results.plan_report().trajectories``) give the canal margins measured on the
    images; without them the canal margin comes from the landmarks."""
    s = plan.settings
    results = [evaluate_item(item, plan, s, reports) for item in checklist(s)]
    deciding = [r for r in results if r.status != NOT_APPLICABLE and CLASSES[r.item.group].decides]
    if any(r.status == NOT_MET for r in deciding):
        overall: Overall = "not eligible"
    elif any(r.status == UNANSWERED for r in deciding):
        overall = "incomplete"
    else:
        overall = "eligible"
    return EligibilityResult(results, overall, warnings_for(plan, s, results), s.payer_profile)


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
