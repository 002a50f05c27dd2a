"""The plan document: every edit is validated, undoable, redoable and emits change events."""

from __future__ import annotations

import pytest

from planner.document import EDIT_METHODS, Part, PlanChange, PlanDocument, PlanEditError, ReadOnlyError
from planner.plan import Comment, FluoroLandmark, Level, Measurement, Trajectory
from tests.plan_factory import box_landmarks, sample_plan


def _doc() -> PlanDocument:
    return PlanDocument(sample_plan(), user="tester")


def _ids(doc):
    plan = doc.plan
    return plan.levels[1].id, plan.trajectories[0].id


def _content(doc):
    return doc.plan.model_dump(mode="json", exclude={"audit", "modified"})


# One representative call per public edit method; each is checked for undo and redo.
EDITS = {
    "set_case": lambda d: d.set_case(patient_name="Roe^Richard", study_description="MR L-spine"),
    "set_author": lambda d: d.set_author("Dr Who"),
    "add_level": lambda d: d.add_level("S1", box_landmarks(-120)),
    "replace_levels": lambda d: d.replace_levels([Level(name="L5", landmarks=box_landmarks(-80))]),
    "remove_level": lambda d: d.remove_level(_ids(d)[0]),
    "rename_level": lambda d: d.rename_level(_ids(d)[0], "L6"),
    "set_landmark": lambda d: d.set_landmark(_ids(d)[0], "body_center_lps", (1.0, 2.0, 3.0)),
    "set_landmarks": lambda d: d.set_landmarks(_ids(d)[0], box_landmarks(5.0)),
    "set_endplate": lambda d: d.set_endplate(_ids(d)[0], "superior", modic_type="2", grade="B", share_pct=40.0,
                                             confirmed=True),
    "set_level_fields": lambda d: d.set_level_fields(_ids(d)[0], painful=True, notes="worst level"),
    "add_trajectory": lambda d: d.add_trajectory(Trajectory(level_id=_ids(d)[0], side="right",
                                                            entry_lps=(-15, 40, -40), target_lps=(0, 2, -40))),
    "remove_trajectory": lambda d: d.remove_trajectory(_ids(d)[1]),
    "set_trajectory_point": lambda d: d.set_trajectory_point(_ids(d)[1], "target", (0.5, 3.0, -41.0)),
    "set_trajectory_params": lambda d: d.set_trajectory_params(_ids(d)[1], zone_diameter_mm=12.0, curved=False),
    "set_trajectory_fields": lambda d: d.set_trajectory_fields(_ids(d)[1], override_reason="narrow pedicle"),
    "set_eligibility_answer": lambda d: d.set_eligibility_answer("pain_duration_months", 14.0),
    "set_eligibility_notes": lambda d: d.set_eligibility_notes("ODI from 2026-10"),
    "add_measurement": lambda d: d.add_measurement(Measurement(kind="distance", points_lps=[(0, 0, 0), (0, 0, 10)])),
    "remove_measurement": lambda d: d.remove_measurement(d.plan.measurements[0].id),
    "set_measurement_points": lambda d: (d.add_measurement(Measurement(kind="distance")),
                                         d.set_measurement_points(d.plan.measurements[0].id,
                                                                  points_lps=[(0, 0, 0), (3, 4, 0)])),
    "set_measurement_label": lambda d: (d.add_measurement(Measurement(kind="angle")),
                                        d.set_measurement_label(d.plan.measurements[0].id, "lordosis")),
    "add_fluoro_landmark": lambda d: d.add_fluoro_landmark(FluoroLandmark(sop_instance_uid="1.2", kind="posterior_wall",
                                                                          point_px=(10, 20))),
    "move_fluoro_landmark": lambda d: (d.add_fluoro_landmark(FluoroLandmark(sop_instance_uid="1.2", kind="pedicle_left",
                                                                            point_px=(1, 2))),
                                       d.move_fluoro_landmark(d.plan.fluoro_landmarks[0].id, (5, 6))),
    "remove_fluoro_landmark": lambda d: d.remove_fluoro_landmark(d.plan.fluoro_landmarks[0].id),
    "set_fluoro_calibration": lambda d: d.set_fluoro_calibration("1.2", 0.25, "30 mm marker"),
    "set_setting": lambda d: d.set_setting("target_depth_pct", 38.0),
    "set_settings": lambda d: d.set_settings({"zone_diameter_mm": 12.0}),
    "add_comment": lambda d: d.add_comment("Check the L5 pedicle", anchor_kind="level", anchor_id=_ids(d)[0]),
    "remove_comment": lambda d: d.remove_comment(d.plan.review.comments[0].id),
    "sign_off": lambda d: d.sign_off("Dr Fellow"),
}


# Plans prepared before the edit under test (the preparation is not part of the checked step).
SETUP = {
    "remove_measurement": lambda p: p.measurements.append(Measurement(kind="distance")),
    "remove_fluoro_landmark": lambda p: p.fluoro_landmarks.append(
        FluoroLandmark(sop_instance_uid="1.2", kind="x", point_px=(1, 2))),
    "remove_comment": lambda p: p.review.comments.append(Comment(author="x", text="typo")),
}


def test_every_edit_method_has_an_undo_test():
    assert set(EDITS) == set(EDIT_METHODS)


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edit_undo_redo(name):
    plan = sample_plan()
    SETUP.get(name, lambda p: None)(plan)
    doc = PlanDocument(plan, user="tester")
    original = _content(doc)
    events: list[PlanChange] = []
    doc.changed.connect(events.append)
    EDITS[name](doc)
    edited = _content(doc)
    assert edited != original, f"{name} changed nothing"
    assert events and events[-1].source == "edit"
    assert doc.is_dirty
    while doc.can_undo:
        doc.undo()
    assert _content(doc) == original
    assert not doc.is_dirty
    while doc.can_redo:
        doc.redo()
    assert _content(doc) == edited
    assert doc.is_dirty


def test_drag_merges_into_one_undo_step():
    doc = _doc()
    tid = doc.plan.trajectories[0].id
    start = doc.plan.trajectory(tid).target_lps
    for i in range(30):
        doc.set_trajectory_point(tid, "target", (0.1 * i, 2.0, -40.0), merge_key="drag-1")
    assert doc.plan.trajectory(tid).target_lps == pytest.approx((2.9, 2.0, -40.0))
    assert doc.undo_text == "Move target point"
    doc.undo()
    assert doc.plan.trajectory(tid).target_lps == start
    assert not doc.can_undo
    # a new drag (new key) is a new step
    doc.redo()
    doc.set_trajectory_point(tid, "target", (9, 9, -40), merge_key="drag-2")
    doc.undo()
    assert doc.plan.trajectory(tid).target_lps == pytest.approx((2.9, 2.0, -40.0))


def test_invalid_value_is_refused_and_changes_nothing():
    doc = _doc()
    lid, tid = _ids(doc)
    before = _content(doc)
    with pytest.raises(PlanEditError, match="finite"):
        doc.set_trajectory_point(tid, "target", (float("nan"), 0, 0))
    with pytest.raises(PlanEditError, match="modic_type"):
        doc.set_endplate(lid, "superior", modic_type="4")
    with pytest.raises(PlanEditError, match="zone_diameter_mm"):
        doc.set_trajectory_params(tid, zone_diameter_mm=-3)
    with pytest.raises(PlanEditError, match="already exists"):
        doc.add_level("L4")
    with pytest.raises(PlanEditError, match="no level"):
        doc.set_landmark("nope", "body_center_lps", (0, 0, 0))
    assert _content(doc) == before
    assert not doc.can_undo and not doc.is_dirty


def test_events_name_what_changed():
    doc = _doc()
    lid, tid = _ids(doc)
    events: list[PlanChange] = []
    doc.changed.connect(events.append)
    doc.set_trajectory_point(tid, "entry", (16, 40, -40))
    ev = events[-1]
    assert ev.trajectories == {tid} and not ev.levels and not ev.lists and not ev.parts
    assert ev.touches(Part.TRAJECTORIES) and not ev.touches(Part.LEVELS, Part.SETTINGS)
    assert not ev.list_changed(Part.TRAJECTORIES)
    doc.set_landmark(lid, "posterior_wall_lps", (0, 18, -40))
    assert events[-1].levels == {lid} and not events[-1].trajectories
    doc.undo()
    assert events[-1].source == "undo" and events[-1].levels == {lid}
    assert not events[-1].touches(Part.TRAJECTORIES)
    doc.set_setting("canal_margin_mm", 3.0)
    assert events[-1].parts == {Part.SETTINGS} and events[-1].touches(Part.SETTINGS)
    doc.replace_plan(doc.plan.model_copy(deep=True))
    assert events[-1].everything and events[-1].touches(Part.REVIEW) and events[-1].list_changed(Part.LEVELS)


def test_removing_a_level_names_the_trajectories_it_removes():
    doc = _doc()
    lid, tid = _ids(doc)
    events: list[PlanChange] = []
    doc.changed.connect(events.append)
    doc.remove_level(lid)
    ev = events[-1]
    assert ev.levels == {lid} and ev.trajectories == {tid}
    assert ev.list_changed(Part.LEVELS) and ev.list_changed(Part.TRAJECTORIES)
    doc.undo()  # the undo's change (from the plans' difference) names the same items
    assert (events[-1].levels, events[-1].trajectories) == (ev.levels, ev.trajectories)
    assert events[-1].lists == {Part.LEVELS, Part.TRAJECTORIES}
    all_levels = {lv.id for lv in doc.plan.levels}
    all_trajectories = {t.id for t in doc.plan.trajectories}
    doc.replace_levels([], action="Clear levels")
    assert events[-1].levels == all_levels and events[-1].trajectories == all_trajectories


def test_diff_change_matches_each_edit():
    """For every edit of a scripted session, the undo's change names the items the edit named."""
    doc = _doc()
    lid, tid = _ids(doc)
    events: list[PlanChange] = []
    doc.changed.connect(events.append)
    edits = [lambda: doc.set_trajectory_params(tid, zone_diameter_mm=8.0),
             lambda: doc.add_measurement({"kind": "distance", "points_lps": [(0, 0, 0), (1, 0, 0)]}),
             lambda: doc.set_eligibility_notes("note"),
             lambda: doc.set_level_fields(lid, painful=True)]
    for edit in edits:
        edit()
        done = events[-1]
        doc.undo()
        undone = events[-1]
        for field in ("levels", "trajectories", "measurements", "fluoro_landmarks", "parts"):
            assert getattr(undone, field) == getattr(done, field), (done.action, field)
        doc.redo()


def test_audit_trail_records_user_actions_and_survives_undo():
    doc = _doc()
    lid, _ = _ids(doc)
    doc.set_level_fields(lid, painful=True)
    doc.undo()
    actions = [a.action for a in doc.plan.audit]
    assert actions[-2:] == ["Edit level painful", "Undo: Edit level painful"]
    assert all(a.user == "tester" for a in doc.plan.audit)


def test_read_only_allows_only_review():
    doc = PlanDocument(sample_plan(), user="fellow", read_only=True)
    lid, tid = _ids(doc)
    with pytest.raises(ReadOnlyError):
        doc.set_trajectory_point(tid, "target", (0, 0, 0))
    doc.add_comment("Nice margin", anchor_kind="trajectory", anchor_id=tid)
    so = doc.sign_off("Dr Fellow")
    assert doc.plan.signoff_is_current(so)


def test_signoff_goes_out_of_date_after_a_content_change():
    doc = _doc()
    lid, tid = _ids(doc)
    so = doc.sign_off("Dr Reviewer")
    doc.add_comment("comment after signing")  # review activity does not invalidate
    assert doc.plan.signoff_is_current(so)
    doc.set_trajectory_point(tid, "target", (0, 3, -40))
    assert not doc.plan.signoff_is_current(so)
    doc.undo()
    assert doc.plan.signoff_is_current(so)


def test_slot_errors_do_not_break_edits(caplog):
    doc = _doc()
    lid, _ = _ids(doc)

    def broken(_change):
        raise RuntimeError("view bug")

    seen = []
    doc.changed.connect(broken)
    doc.changed.connect(seen.append)
    doc.set_level_fields(lid, notes="x")
    assert doc.plan.level(lid).notes == "x" and seen
    assert "view bug" in caplog.text
