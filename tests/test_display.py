"""The presentation tier (planner/display) without Qt: the session's results are computed once per
plan state, dropped by one rule from the plan's changes, and announced with the ids dropped."""

from __future__ import annotations

import numpy as np

from planner.display import annotations
from planner.display.results import PlanResults
from planner.document import PlanDocument
from planner.plan import Trajectory
from planner.session import Session
from planner.trajectory import trajectory_shape
from tests.plan_factory import sample_plan


def _session() -> tuple[Session, str, str]:
    plan = sample_plan()
    l4 = plan.levels[1]
    right = Trajectory(level_id=l4.id, side="right", entry_lps=(-15.0, 40.0, -40.0), target_lps=(0.0, 2.0, -40.0))
    plan.trajectories.append(right)
    s = Session(PlanDocument(plan, user="dr"))
    return s, plan.trajectories[0].id, right.id


def test_shapes_are_those_of_the_trajectory_module_and_computed_once():
    s, left, right = _session()
    res = s.results
    assert isinstance(res, PlanResults)
    plan = s.document.plan
    shape = res.shape(left)
    ref = trajectory_shape(plan, plan.trajectory(left))
    assert [i.name for i in shape.instruments] == [i.name for i in ref.instruments]
    for a, b in zip(shape.instruments, ref.instruments):
        assert np.allclose(a.points_lps, b.points_lps) and a.diameter_mm == b.diameter_mm
    assert res.shape(plan.trajectory(left)) is shape and res.shape(left) is shape
    assert res.shape_computations == 1


def test_one_rule_drops_what_a_change_makes_stale():
    s, left, right = _session()
    res, doc = s.results, s.document
    dropped: list[frozenset] = []
    res.results_changed.connect(dropped.append)
    before = {t: res.shape(t) for t in (left, right)}
    doc.set_trajectory_point(left, "target", (1.0, 3.0, -40.0))
    assert dropped[-1] == {left, right}  # the partner on the level: its report (bipedicular checks)
    assert res.shape(right) is before[right]  # but not its shape
    moved = res.shape(left)
    assert moved is not before[left] and np.allclose(moved.zone.center_lps, (1.0, 3.0, -40.0))
    level_id = doc.plan.trajectory(left).level_id
    doc.set_landmark(level_id, "posterior_wall_lps", (0.0, 18.0, -40.0))  # a level shapes every path
    assert dropped[-1] == {left, right}
    assert res.shape(right) is not before[right]
    n = res.shape_computations
    doc.undo()
    assert dropped[-1] == {left, right} and res.shape(left) is not moved
    doc.set_eligibility_notes("nothing to do with the paths")
    assert len(dropped) == 3 and res.shape_computations == n + 1


def test_a_reader_that_runs_before_the_results_heard_the_change_gets_fresh_values():
    s, left, _ = _session()
    doc = s.document
    seen = []
    first = s.results.shape(left)
    doc.changed.disconnect(s.results._on_plan_changed)
    doc.changed.connect(lambda change: seen.append(s.results.shape(left)))  # a view connected first
    doc.changed.connect(s.results._on_plan_changed)
    doc.set_trajectory_point(left, "target", (2.0, 3.0, -40.0))
    assert seen[-1] is not first and np.allclose(seen[-1].zone.center_lps, (2.0, 3.0, -40.0))


def test_removed_image_drops_its_virtual_projections():
    s, _, _ = _session()
    vp = s.results.virtual_projections
    vp._entries[("k", 1, "AP", "mean")] = (lambda: None, _DoneFuture())
    s.images["k"] = object()
    s.remove_image("k")
    assert not vp._entries


class _DoneFuture:
    def cancel(self) -> bool:
        return False


def test_annotations():
    s, left, right = _session()
    plan = s.document.plan
    assert annotations.trajectory_name(plan, plan.trajectory(left)) == "L4 left"
    assert annotations.active_trajectory(s).id == left
    s.set_active_trajectory(right)
    assert annotations.active_trajectory(s).id == right and annotations.default_level_id(s) == plan.levels[1].id
    assert annotations.level_at(plan, np.array([0.0, 0.0, -41.0])) == "L4"
    assert annotations.level_at(plan, np.array([0.0, 300.0, -41.0])) is None
    assert abs(annotations.angle_deg(np.array([[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0]])) - 90.0) < 1e-9
    assert annotations.format_person_name("DOE^Jane^Q") == "DOE, Jane Q"
    assert annotations.format_date("20240131") == "2024-01-31"


def test_reports_are_computed_once_per_edit_and_partners_follow():
    s, left, right = _session()
    res, doc = s.results, s.document
    from planner.checks import evaluate_trajectory

    first = res.reports()
    assert set(first) == {left, right} and res.report_computations == 2
    assert res.report(left) is first[left]  # kept
    ref = evaluate_trajectory(doc.plan, doc.plan.trajectory(left), s.images)
    assert res.report(left).to_dict() == ref.to_dict()
    doc.set_trajectory_point(left, "target", (1.0, 3.0, -40.0))
    res.reports()
    res.reports()
    assert res.report_computations == 4  # the moved one and its partner on the level, once each
    doc.set_eligibility_notes("no path changed")
    res.reports()
    assert res.report_computations == 4
    doc.remove_trajectory(right)
    assert set(res.reports()) == {left} and res.report_computations == 5
    plan_report = res.plan_report()
    assert [t.trajectory_id for t in plan_report.trajectories] == [left]


def test_field_ranges_are_the_plan_model_s():
    import pytest
    from pydantic import ValidationError

    from planner.display.fields import field_range
    from planner.plan import TrajectoryParams

    assert field_range(TrajectoryParams, "zone_diameter_mm", 1) == (1.1, 40.0)  # gt=1, le=40
    assert field_range(TrajectoryParams, "introducer_diameter_mm", 2) == (0.51, 8.0)  # gt=0.5
    assert field_range(TrajectoryParams, "canal_margin_mm", 1) == (0.0, 40.0)  # ge=0
    for name, dec in (("zone_diameter_mm", 1), ("introducer_diameter_mm", 2), ("probe_diameter_mm", 2),
                      ("cannula_curve_radius_mm", 1)):
        lo, hi = field_range(TrajectoryParams, name, dec)
        TrajectoryParams(**{name: lo})
        TrajectoryParams(**{name: hi})  # both ends are accepted by the model
        with pytest.raises(ValidationError):
            TrajectoryParams(**{name: round(lo - 10 ** -dec, dec)})
        with pytest.raises(ValidationError):
            TrajectoryParams(**{name: hi + 10 ** -dec})


def test_trajectory_axis_is_kept_per_volume_until_the_trajectory_changes():
    from tests.views_support import sagittal_volume

    s, left, right = _session()
    s.add_image("vol", sagittal_volume(nk=24, nj=200, ni=160))
    res = s.results
    a = res.trajectory_axis(left, "vol")
    assert res.trajectory_axis(left, "vol") is a
    b = res.trajectory_axis(right, "vol")
    s.document.set_trajectory_point(left, "target", (1.0, 3.0, -40.0))
    assert res.trajectory_axis(right, "vol") is b  # the other trajectory's path is unchanged
    moved = res.trajectory_axis(left, "vol")
    assert moved is not a and np.allclose(moved.target_lps, (1.0, 3.0, -40.0))
    s.remove_image("vol")
    assert not res._axes and not res._skins


def test_slice_geometry_is_shared_per_volume_and_orientation():
    from tests.views_support import sagittal_volume

    s, _, _ = _session()
    s.add_image("vol", sagittal_volume())
    res = s.results
    f = res.slice_frame("vol", "axial")
    assert res.slice_frame("vol", "axial") is f and res.slice_frame("vol", "axial", "patient") is not f
    assert f.volume is s.images["vol"] and f.orientation == "axial"
    s.add_image("vol", sagittal_volume(seed=1))  # replaced under the same key
    assert res.slice_frame("vol", "axial") is not f


def test_fluoro_drawings_are_kept_until_a_change_that_can_move_them():
    from tests.views_support import projection

    s, left, _ = _session()
    res, doc = s.results, s.document
    img = projection()
    level_ids = [doc.plan.levels[1].id]
    first = res.fluoro_drawings(img, level_ids)
    assert first[0].error  # no marks on this image: the reason, not a drawing
    assert res.fluoro_drawings(img, level_ids) is first
    doc.set_eligibility_notes("does not move the plan on the C-arm image")
    assert res.fluoro_drawings(img, level_ids) is first
    doc.set_trajectory_point(left, "target", (1.0, 3.0, -40.0))
    assert res.fluoro_drawings(img, level_ids) is not first
