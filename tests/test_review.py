"""Review state, comments by anchor and the audit trail export."""

from __future__ import annotations

import csv
import io
import json

from planner.document import PlanDocument
from planner.review import anchor_label, audit_to_csv, audit_to_json, comments_for, review_state
from tests.plan_factory import sample_plan


def test_review_state_follows_content_changes():
    doc = PlanDocument(sample_plan(), user="attending")
    assert review_state(doc.plan) == "not reviewed"
    tid = doc.plan.trajectories[0].id
    doc.sign_off("Dr Fellow")
    assert review_state(doc.plan) == "signed off"
    doc.set_trajectory_point(tid, "target", (1, 2, -40))
    assert review_state(doc.plan) == "sign-off out of date"


def test_comments_are_anchored_and_labelled():
    doc = PlanDocument(sample_plan(), user="fellow", read_only=True)
    lv = doc.plan.levels[1]
    tid = doc.plan.trajectories[0].id
    doc.add_comment("Why left?", anchor_kind="trajectory", anchor_id=tid)
    doc.add_comment("Modic 1 confirmed", anchor_kind="level", anchor_id=lv.id)
    assert [c.text for c in comments_for(doc.plan, "level", lv.id)] == ["Modic 1 confirmed"]
    labels = {anchor_label(doc.plan, c) for c in doc.plan.review.comments}
    assert labels == {"Trajectory L4 left", "Level L4"}


def test_audit_trail_exports_who_what_when():
    doc = PlanDocument(sample_plan(), user="dr.smith")
    doc.set_level_fields(doc.plan.levels[0].id, painful=True)
    doc.set_setting("target_depth_pct", 35.0)
    rows = list(csv.reader(io.StringIO(audit_to_csv(doc.plan))))
    assert rows[0] == ["at", "user", "action", "detail"]
    assert [r[2] for r in rows[1:]] == ["Edit level painful", "Change setting target_depth_pct"]
    assert all(r[1] == "dr.smith" and r[0] for r in rows[1:])
    assert json.loads(audit_to_json(doc.plan))[1]["detail"] == "target_depth_pct=35.0"
