"""Eligibility checklist (domain.md 1.1-1.4, 2.1): every item, the overall result and every warning."""

from __future__ import annotations

import pytest

from planner.document import PlanDocument
from planner.eligibility import (
    AMBER,
    CLASSES,
    CLINIC,
    CONTRA,
    FDA,
    GREEN,
    GROUPS,
    MET,
    PAYER,
    RED,
    TRIAL,
    NOT_APPLICABLE,
    NOT_MET,
    UNANSWERED,
    answer_keys,
    checklist,
    evaluate_eligibility,
    longest_adjacent_run,
)
from planner.plan import Level, ModicSuggestion, Plan, Trajectory
from planner.settings import PlanningSettings
from planner.storage import load_plan, save_plan
from tests.plan_factory import box_landmarks

# A "good" answer for every question the physician answers (default Medicare profile).
GOOD = {
    "pain_duration_months": 14, "conservative_care_months": 8, "axial_pain": True, "skeletally_mature": True,
    "able_to_consent": True, "odi": 42, "vas": 6.5, "bdi": 10, "waddell_signs": 1, "bmi": 27.5,
    "radicular_pain": False, "prior_lumbar_surgery": False, "symptomatic_stenosis": False,
    "metabolic_bone_disease": False, "spine_fracture": False, "spinal_cancer": False, "bleeding_diathesis": False,
    "other_pain_cause": False, "disc_protrusion": False, "spondylolisthesis": False, "spondylolysis": False,
    "facet_pain": False, "compensation_litigation": False, "narcotics_addiction": False, "bedbound": False,
    "mri_contraindication": False, "device_allergy": False, "infection": False, "pregnancy": False,
    "electronic_implant": False, "cardiopulmonary": False, "age_years": 51, "scoliosis": False,
    "vertebral_injection": False, "cbt_sessions": 4,
}


def _plan(treat=("L4", "L5"), modic=None, trajectories=True) -> Plan:
    """Levels L1-S1 (box landmarks); L4 inferior and L5 superior type 1 by default."""
    plan = Plan()
    for i, name in enumerate(["L1", "L2", "L3", "L4", "L5", "S1"]):
        plan.levels.append(Level(name=name, landmarks=box_landmarks(160.0 - 40.0 * i)))
    modic = {"L4": ("none", "1"), "L5": ("1", "none")} if modic is None else modic
    for lv in plan.levels:
        sup, inf = modic.get(lv.name, ("none", "none"))
        lv.superior.modic_type, lv.inferior.modic_type = sup, inf
        lv.superior.confirmed = lv.inferior.confirmed = True
        lv.treat = lv.name in treat
    if trajectories:
        for lv in plan.levels:
            if lv.treat:
                z = lv.landmarks.body_center_lps[2]
                # target 17.5 mm in front of the posterior wall (y=17.5 -> y=0): margin 17.5 - 5 = 12.5 mm
                plan.trajectories.append(Trajectory(level_id=lv.id, entry_lps=(15, 40, z), target_lps=(0, 0, z)))
    plan.eligibility.answers = dict(GOOD)
    return plan


def _status(plan, key):
    return evaluate_eligibility(plan).item(key).status


def test_checklist_items_are_complete_and_documented():
    items = checklist()
    keys = [it.key for it in items]
    assert len(keys) == len(set(keys))
    for it in items:
        assert it.group in GROUPS and it.question and it.rule and it.source and it.tag
        assert it.kind in ("yes_no", "number", "derived")
        assert it.confidence in ("[C]", "[S]", "[U]")
        if it.kind == "yes_no":
            assert it.expected in (True, False)
        if it.kind == "number":
            assert it.op in (">=", "<=") and hasattr(PlanningSettings(), it.setting)
    tags = {it.tag for it in items}
    assert any("trial exclusion" in t for t in tags) and any("device contraindication" in t for t in tags)
    # every group has at least one item; each answerable key is covered by GOOD
    assert {it.group for it in items} == set(GROUPS)
    assert set(answer_keys()) == set(GOOD)


def test_all_good_is_eligible_without_warnings():
    res = evaluate_eligibility(_plan())
    assert res.overall == "eligible", [(r.item.key, r.status, r.detail) for r in res.items if r.status != MET]
    assert res.warnings == []
    payer = {r.item.key: r.status for r in res.items if r.item.payer == "cam394"}
    assert payer and set(payer.values()) == {NOT_APPLICABLE}


def test_question_text_follows_settings():
    s = PlanningSettings(max_disc_protrusion_mm=4.0, treatable_levels=["L4", "L5", "S1"])
    texts = {it.key: it.question for it in checklist(s)}
    assert "4 mm" in texts["disc_protrusion"] and "L4-S1" in texts["levels_in_range"]


@pytest.mark.parametrize("key,good,bad,decides", [
    ("pain_duration_months", 6, 5.9, True), ("conservative_care_months", 6, 3, True), ("odi", 30, 29, False),
    ("vas", 4, 3.5, False), ("bdi", 24, 25, False), ("waddell_signs", 3, 4, False), ("bmi", 40, 40.5, False),
    ("age_years", 18, 17, False),
])
def test_number_items_at_their_threshold(key, good, bad, decides):
    plan = _plan()
    plan.eligibility.answers[key] = good
    assert _status(plan, key) == MET
    plan.eligibility.answers[key] = bad
    res = evaluate_eligibility(plan)
    assert res.item(key).status == NOT_MET
    assert res.overall == ("not eligible" if decides else "eligible")
    assert str(bad) in res.item(key).detail.replace(".0 ", " ")
    plan.eligibility.answers[key] = "12x"
    assert _status(plan, key) == UNANSWERED
    del plan.eligibility.answers[key]
    res = evaluate_eligibility(plan)
    assert res.item(key).status == UNANSWERED
    # only the deciding classes (FDA indication, device contraindication) leave the verdict incomplete
    assert res.overall == ("incomplete" if decides else "eligible")


def test_number_thresholds_come_from_plan_settings():
    plan = _plan()
    plan.eligibility.answers["pain_duration_months"] = 8
    assert _status(plan, "pain_duration_months") == MET
    plan.settings.min_pain_duration_months = 9
    assert _status(plan, "pain_duration_months") == NOT_MET
    plan.eligibility.answers["pain_duration_months"] = "9,5"  # decimal comma typed by a user
    assert _status(plan, "pain_duration_months") == MET


YES_NO = [k for k, v in GOOD.items() if isinstance(v, bool)]


@pytest.mark.parametrize("key", YES_NO)
def test_yes_no_items(key):
    plan = _plan()
    good = GOOD[key]
    for value, expected in ((good, MET), (not good, NOT_MET), ("yes" if good else "no", MET),
                            ("no" if good else "yes", NOT_MET), ("maybe", UNANSWERED), (None, UNANSWERED)):
        plan.eligibility.answers[key] = value
        assert _status(plan, key) == expected, (key, value)


def test_exclusions_and_contraindications_carry_their_tag():
    by_key = {it.key: it for it in checklist()}
    assert by_key["radicular_pain"].tag == "trial exclusion"
    assert by_key["cardiopulmonary"].tag == "device contraindication"
    assert by_key["pregnancy"].tag == "device contraindication" and "trial exclusion" in by_key["pregnancy"].source
    assert "domain.md 1.2" in by_key["bmi"].source and "domain.md 1.3" in by_key["scoliosis"].source


#: The class of every criterion, checked against domain.md 1.1-1.4 by hand (see the module text of
#: planner.eligibility for the decisions on skeletal maturity, age and scoliosis).
EXPECTED_CLASS = {
    FDA: {"pain_duration_months", "conservative_care_months", "modic_at_targets", "levels_in_range"},
    CONTRA: {"infection", "skeletally_mature", "pregnancy", "electronic_implant", "cardiopulmonary", "canal_margin"},
    CLINIC: {"age_years", "scoliosis"},
    PAYER: {"medicare_no_prior_ablation", "medicare_per_procedure", "medicare_lifetime", "vertebral_injection",
            "cam394_pain_duration", "cbt_sessions", "cam394_adjacent"},
}


def test_every_criterion_has_the_class_of_its_source():
    by_class: dict = {g: set() for g in GROUPS}
    for it in checklist():
        by_class[it.group].add(it.key)
    for group, keys in EXPECTED_CLASS.items():
        assert by_class[group] == keys, group
    # everything else is a trial criterion, and its source is the trial table
    for it in checklist():
        if it.group == TRIAL:
            assert "1.2" in it.source and "trial" in it.tag
        if it.group == FDA:
            assert it.confidence == "[C]" and ("1.1" in it.source)
        if it.group in (CONTRA, CLINIC, PAYER):
            assert it.confidence == "[S]"
    assert "Huang 2022" in {it.key: it for it in checklist()}["skeletally_mature"].source


@pytest.mark.parametrize("answers, treat, group, colour", [
    ({"scoliosis": True}, ("L4", "L5"), CLINIC, AMBER),
    ({"age_years": 17}, ("L4", "L5"), CLINIC, AMBER),
    ({"odi": 25}, ("L4", "L5"), TRIAL, AMBER),
    ({"bmi": 41}, ("L4", "L5"), TRIAL, AMBER),
    ({"compensation_litigation": True}, ("L4", "L5"), TRIAL, AMBER),
    ({}, ("L3", "L4", "L5"), PAYER, AMBER),
])
def test_non_deciding_classes_flag_but_do_not_decide(answers, treat, group, colour):
    """Issue 12 acceptance: each case keeps the verdict "eligible", flagged amber, under its class."""
    plan = _plan(treat=treat, modic={"L3": ("1", "1"), "L4": ("none", "1"), "L5": ("1", "none")})
    plan.eligibility.answers.update(answers)
    res = evaluate_eligibility(plan)
    assert res.overall == "eligible" and res.colour == colour
    assert list(res.flags) == [group]
    [r] = res.flags[group]
    assert r.colour == colour and r.outcome == CLASSES[group].consequence
    line = res.verdict_line
    assert line.startswith("Eligible") and "Not deciding" in line
    words = {CLINIC: "clinic pages", TRIAL: "Outside the trial population", PAYER: "Payer warning (Medicare A59468)"}
    assert words[group] in line
    if group == PAYER:
        w = {x.key: x for x in res.warnings}["medicare_per_procedure"]
        assert "Medicare A59468" in w.message and w.group == PAYER
    plan.settings.payer_profile = "cam394"
    if group == PAYER:  # 3 adjacent bodies are within CAM 394's limit of 3
        assert evaluate_eligibility(plan).colour == GREEN


def test_deciding_classes_say_not_eligible_and_name_the_class():
    # FDA indication: no Modic change at a treated level (L3)
    res = evaluate_eligibility(_plan(treat=("L3", "L4")))
    assert res.overall == "not eligible" and res.colour == RED and res.decided_by == [FDA]
    assert res.verdict_line.startswith("Not eligible, decided by the FDA indication")
    assert "L3" in res.verdict_line
    assert res.item("modic_at_targets").colour == RED
    # device contraindication, with its source
    plan = _plan()
    plan.eligibility.answers["skeletally_mature"] = False
    res = evaluate_eligibility(plan)
    assert res.overall == "not eligible" and res.decided_by == [CONTRA]
    assert "skeletal immaturity" in res.verdict_line and "Huang 2022" in res.verdict_line
    # a trial flag does not hide the deciding class
    plan.eligibility.answers["bmi"] = 45
    res = evaluate_eligibility(plan)
    assert res.decided_by == [CONTRA] and list(res.flags) == [TRIAL]


def test_incomplete_names_the_missing_deciding_answers():
    plan = _plan()
    del plan.eligibility.answers["pregnancy"]
    del plan.eligibility.answers["odi"]
    res = evaluate_eligibility(plan)
    assert res.overall == "incomplete" and "pregnancy" in res.verdict_line and "ODI" not in res.verdict_line


def test_modic_at_targets():
    assert _status(_plan(), "modic_at_targets") == MET
    assert _status(_plan(treat=()), "modic_at_targets") == UNANSWERED
    # L3 has no Modic change
    assert _status(_plan(treat=("L3", "L4")), "modic_at_targets") == NOT_MET
    # mixed 2/3 qualifies, 3 alone does not
    assert _status(_plan(modic={"L4": ("none", "2/3"), "L5": ("1/2", "none")}), "modic_at_targets") == MET
    assert _status(_plan(modic={"L4": ("none", "3"), "L5": ("1", "none")}), "modic_at_targets") == NOT_MET


def test_unconfirmed_none_suggestion_needs_no_confirmation():
    plan = _plan(modic={})
    for lv in plan.levels:
        lv.superior.confirmed = lv.inferior.confirmed = False
        lv.superior.suggestion = ModicSuggestion(modic_type="none")
    w = _warnings(plan)
    assert "unconfirmed_suggestion" not in w
    plan.level_by_name("L5").superior.suggestion = ModicSuggestion(modic_type="1", grade="B", share_pct=60)
    assert _warnings(plan)["unconfirmed_suggestion"].message.endswith("L5 superior")


def test_unconfirmed_suggestion_does_not_count():
    plan = _plan(modic={})  # no decided finding
    for lv in plan.levels:
        lv.superior.confirmed = lv.inferior.confirmed = False
    plan.level_by_name("L4").inferior.suggestion = ModicSuggestion(modic_type="1", grade="B", share_pct=60)
    res = evaluate_eligibility(plan)
    assert res.item("modic_at_targets").status == NOT_MET
    w = {x.key: x for x in res.warnings}
    assert "unconfirmed_suggestion" in w and "L4 inferior" in w["unconfirmed_suggestion"].message


def test_levels_in_range_and_modic_outside_range():
    assert _status(_plan(), "levels_in_range") == MET
    plan = _plan(treat=("L2", "L4"), modic={"L2": ("1", "none"), "L4": ("none", "1")})
    res = evaluate_eligibility(plan)
    assert res.item("levels_in_range").status == NOT_MET and "L2" in res.item("levels_in_range").detail
    assert res.item("modic_outside_range").status == NOT_MET
    assert "L2 superior type 1" in res.item("modic_outside_range").detail
    empty = Plan()
    assert evaluate_eligibility(empty).item("modic_outside_range").status == UNANSWERED


def test_canal_margin_item():
    plan = _plan()
    assert _status(plan, "canal_margin") == MET
    t = plan.trajectories[0]
    z = t.target_lps[2]
    t.target_lps = (0.0, 10.0, z)  # 7.5 mm in front of the posterior wall: margin 2.5 mm
    res = evaluate_eligibility(plan)
    assert res.item("canal_margin").status == NOT_MET and "2.5 mm" in res.item("canal_margin").detail
    assert "L4 left" in res.item("canal_margin").detail  # level names, never trajectory labels
    assert res.overall == "not eligible" and res.decided_by == [CONTRA]
    # measured from the zone centre (domain.md open item 9): 7.5 mm, still short of 10 mm
    plan.settings.canal_margin_from = "zone_centre"
    res = evaluate_eligibility(plan)
    assert "7.5 mm" in res.item("canal_margin").detail and "active tip" in res.item("canal_margin").detail
    t.target_lps = (0.0, 6.5, z)  # 11 mm in front of the wall: enough from the centre, not from the edge
    assert _status(plan, "canal_margin") == MET
    plan.settings.canal_margin_from = "zone_edge"
    assert _status(plan, "canal_margin") == NOT_MET
    assert _status(_plan(trajectories=False), "canal_margin") == UNANSWERED


def _warnings(plan):
    return {w.key: w for w in evaluate_eligibility(plan).warnings}


def test_warning_type3_only():
    w = _warnings(_plan(modic={"L4": ("none", "3"), "L5": ("2/3", "none")}))
    assert "type3_only" in w and w["type3_only"].levels == ["L4"]


def test_outside_range_decides():
    res = evaluate_eligibility(_plan(treat=("L2",), modic={"L2": ("1", "none")}))
    assert res.overall == "not eligible" and res.decided_by == [FDA] and "L2" in res.verdict_line


def test_warning_per_procedure_and_item():
    plan = _plan(treat=("L3", "L4", "L5"), modic={"L3": ("1", "1"), "L4": ("1", "1"), "L5": ("1", "none")})
    w = _warnings(plan)
    assert "medicare_per_procedure" in w and "3 treated" in w["medicare_per_procedure"].message
    assert _status(plan, "medicare_per_procedure") == NOT_MET
    plan.settings.max_levels_per_procedure = 3
    assert "medicare_per_procedure" not in _warnings(plan) and _status(plan, "medicare_per_procedure") == MET


def test_warning_lifetime_counts_prior_ablations():
    plan = _plan()
    plan.level_by_name("L1").prior_ablation = True
    plan.level_by_name("L2").prior_ablation = True
    assert "medicare_lifetime" not in _warnings(plan)  # 2 before + 2 now = 4
    assert _status(plan, "medicare_lifetime") == MET
    plan.level_by_name("L3").prior_ablation = True
    w = _warnings(plan)
    assert "= 5" in w["medicare_lifetime"].message and "Medicare" in w["medicare_lifetime"].message
    assert _status(plan, "medicare_lifetime") == NOT_MET


def test_warning_prior_ablation_of_same_body():
    plan = _plan()
    plan.level_by_name("L5").prior_ablation = True
    w = _warnings(plan)
    assert w["medicare_no_prior_ablation"].levels == ["L5"]
    assert _status(plan, "medicare_no_prior_ablation") == NOT_MET


def test_warning_adjacent_levels_only_under_cam394():
    treat = ("L3", "L4", "L5", "S1")
    modic = {n: ("1", "1") for n in treat}
    plan = _plan(treat=treat, modic=modic)
    assert "cam394_adjacent" not in _warnings(plan)
    assert _status(plan, "cam394_adjacent") == NOT_APPLICABLE
    plan.settings.payer_profile = "cam394"
    w = _warnings(plan)
    assert "CAM 394" in w["cam394_adjacent"].message and "L3-L4-L5-S1" in w["cam394_adjacent"].message
    assert _status(plan, "cam394_adjacent") == NOT_MET
    assert _status(plan, "medicare_per_procedure") == NOT_APPLICABLE
    plan.level_by_name("L4").treat = False  # L3 | L5-S1: longest run 2
    assert "cam394_adjacent" not in _warnings(plan)
    assert _status(plan, "cam394_adjacent") == MET


def test_adjacency_follows_the_patients_levels():
    plan = _plan()
    assert longest_adjacent_run(plan, ["L5", "S1"]) == ["L5", "S1"]
    plan.levels.insert(5, Level(name="L6"))
    assert longest_adjacent_run(plan, ["L5", "S1"]) == ["L5"]  # L6 lies between them
    assert longest_adjacent_run(plan, ["L5", "L6", "S1", "L3"]) == ["L5", "L6", "S1"]


def test_cam394_items_share_the_pain_answer():
    plan = _plan()
    plan.settings.payer_profile = "cam394"
    plan.eligibility.answers["pain_duration_months"] = 9
    res = evaluate_eligibility(plan)
    assert res.item("pain_duration_months").status == MET
    assert res.item("cam394_pain_duration").status == NOT_MET and res.overall == "eligible"
    assert "CAM 394" in res.verdict_line
    plan.eligibility.answers["pain_duration_months"] = 12
    plan.eligibility.answers["cbt_sessions"] = 2
    assert _status(plan, "cam394_pain_duration") == MET and _status(plan, "cbt_sessions") == NOT_MET
    assert _status(plan, "vertebral_injection") == NOT_APPLICABLE


def test_payer_none_skips_payer_items():
    plan = _plan(treat=("L3", "L4", "L5"), modic={"L3": ("1", "1"), "L4": ("1", "1"), "L5": ("1", "none")})
    plan.settings.payer_profile = "none"
    res = evaluate_eligibility(plan)
    assert all(r.status == NOT_APPLICABLE for r in res.items if r.item.group == PAYER)
    assert res.overall == "eligible"
    assert "per_procedure" in {w.key for w in res.warnings}  # warnings stay: the physician decides


def test_to_dict_is_plain_data():
    import json

    d = evaluate_eligibility(_plan()).to_dict()
    json.dumps(d)
    assert d["overall"] == "eligible" and len(d["items"]) == len(checklist())


def test_answers_round_trip_and_undo(tmp_path):
    doc = PlanDocument(_plan(), user="t")
    doc.set_eligibility_answer("odi", 12.0)
    assert evaluate_eligibility(doc.plan).item("odi").status == NOT_MET
    doc.set_eligibility_answer("radicular_pain", True)
    path = save_plan(doc.plan, tmp_path / "p.bvnplan")
    loaded = load_plan(path)
    assert loaded.eligibility.answers["odi"] == 12.0 and loaded.eligibility.answers["radicular_pain"] is True
    assert evaluate_eligibility(loaded).to_dict() == evaluate_eligibility(doc.plan).to_dict()
    doc.undo()
    doc.undo()
    assert evaluate_eligibility(doc.plan).overall == "eligible"
