"""The plan summary for the procedure room (issue 12 point 4, issue 15 point 7): skin entry on the back,
skin-to-target depth, the introducer and C-arm angles in the patient's axes, the C-arm images with the
plan, one page per treated level, normal endplates in one line; on the demo and on the real CT."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pypdf import PdfReader

from planner.plan import Landmarks, Level, Plan, Trajectory
from planner.report import build_report_data, render_report_pdf
from planner.report.procedure import carm_angles, patient_angles, procedure_numbers
from planner.report.sources import find_plan_images
from planner.storage import load_plan
from planner.trajectory import vertebra_frame
from tests.report_support import ct_example_plan

#: Issue 15: the demo summary is at most this long.
MAX_DEMO_PAGES = 10


def _text(path) -> list[str]:
    return [re.sub(r"\s+", " ", p.extract_text()) for p in PdfReader(str(path)).pages]


# ------------------------------------------------------------------------------------ analytic angles
def _rotated_level(ax_deg: float, about: str) -> Level:
    """A box vertebra at the origin, rotated by ``ax_deg`` about the patient's x (sagittal tilt) or z axis."""
    a = math.radians(ax_deg)
    c, s = math.cos(a), math.sin(a)
    rot = {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
           "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])}[about]
    local = {"body_center_lps": (0, 0, 0), "posterior_wall_lps": (0, 17.5, 0), "anterior_wall_lps": (0, -17.5, 0),
             "superior_endplate_lps": (0, 0, 13), "inferior_endplate_lps": (0, 0, -13),
             "pedicle_left_lps": (12, 25, 3), "pedicle_right_lps": (-12, 25, 3)}
    return Level(name="L4", landmarks=Landmarks(**{k: tuple(rot @ np.asarray(v, float)) for k, v in local.items()}))


@pytest.mark.parametrize("tilt", [-15.0, 0.0, 12.0])
def test_carm_angles_square_the_endplate(tilt):
    """A vertebra tilted in the sagittal plane needs the AP beam tilted by the same angle; the lateral tilt
    and the rotation follow rotations about the other axes."""
    f = vertebra_frame(_rotated_level(tilt, "x"))
    ap, lat, rot = carm_angles(f)
    # the beam (back to front, tilted toward the head by ap) is perpendicular to the superior direction
    a = math.radians(ap)
    beam = np.array([0.0, -math.cos(a), math.sin(a)])
    assert abs(float(beam @ f.s)) < 1e-9 and abs(lat) < 1e-9 and abs(rot) < 1e-9
    assert abs(ap) == pytest.approx(abs(tilt), abs=1e-9)
    f = vertebra_frame(_rotated_level(7.0, "y"))
    assert abs(carm_angles(f)[1]) == pytest.approx(7.0, abs=1e-9)
    f = vertebra_frame(_rotated_level(9.0, "z"))
    assert abs(carm_angles(f)[2]) == pytest.approx(9.0, abs=1e-9)


def test_introducer_angles_in_the_patient_axes():
    # 20 deg toward the midline in the axial plane, 10 deg toward the head in the sagittal plane
    d = np.array([-math.tan(math.radians(20)), -1.0, math.tan(math.radians(10))])
    medial, cranial = patient_angles(d / np.linalg.norm(d), np.array([25.0, 40.0, 0.0]), midline_x=0.0)
    assert medial == pytest.approx(20.0) and cranial == pytest.approx(10.0)
    medial, _ = patient_angles(d / np.linalg.norm(d), np.array([-25.0, 40.0, 0.0]), midline_x=0.0)
    assert medial == pytest.approx(-20.0)  # from the right side the same direction points laterally


def test_without_images_the_skin_is_not_measured():
    plan = Plan(levels=[_rotated_level(0.0, "x")])
    plan.trajectories.append(Trajectory(level_id=plan.levels[0].id, entry_lps=(15, 40, 0), target_lps=(0, 0, 0)))
    n = procedure_numbers(plan, plan.trajectories[0], None)
    assert n.skin_lps is None and n.skin_to_target_mm is None and n.skin_note.startswith("not measured")
    assert n.entry_to_target_mm == pytest.approx(math.hypot(15, 40))


# ------------------------------------------------------------------------------------ the demo
@pytest.fixture(scope="module")
def demo_summary(demo_study, tmp_path_factory):
    plan = load_plan(demo_study.plan_path)
    images = find_plan_images(plan, None, plan_path=demo_study.plan_path).images
    data = build_report_data(plan, images)
    path = render_report_pdf(data, tmp_path_factory.mktemp("demo-summary") / "summary.pdf")
    return plan, images, data, _text(path)


def test_demo_skin_entry_matches_the_phantom(demo_study, demo_summary):
    plan, images, _, _ = demo_summary
    truth = {(t["level"], t["side"]): np.asarray(t["skin_lps"]) for t in demo_study.ground_truth["plan"]["trajectories"]}
    for traj in plan.trajectories:
        n = procedure_numbers(plan, traj, images)
        assert n.skin_lps is not None, n.skin_note
        assert np.linalg.norm(n.skin_lps - truth[(n.level_name, n.side)]) < 2.0
        assert n.skin_lps[1] > np.asarray(traj.entry_lps)[1] + 20  # behind the bone entry: on the back
        assert n.skin_to_target_mm == pytest.approx(n.skin_to_entry_mm + n.entry_to_target_mm)


def test_demo_summary_is_short_and_serves_the_procedure_room(demo_summary):
    plan, _, data, pages = demo_summary
    assert len(pages) <= MAX_DEMO_PAGES
    text = " ".join(pages)
    # one page of plan per treated level, with the procedure-room numbers
    for name in ("L4", "L5"):
        page = next(p for p in pages if f"{name}: plan for the procedure room" in p)
        for words in ("Skin entry (back)", "Skin to target", "mm along the path", "Introducer angles", "C-arm AP",
                      "C-arm lateral", f"C-arm AP, {name}", "Depth", "canal margin"):
            assert words in page, (name, words)
        assert "not measured" not in page.split("Skin to target")[0].split("Skin entry (back)")[1]
    # the C-arm images carry the plan: every level page has the fluoroscopy views
    assert all(any(k.kind == "fluoro" for k in p.key_images) for p in data.level_pages)
    # normal endplates in one line; level names in the eligibility rows, never trajectory labels
    assert "No Modic change: T12-L3, L4 superior, S1 inferior." in text
    canal = data.eligibility.item("canal_margin").detail
    assert "L4 left" in canal and "L5 right" in canal and "transpedicular" not in canal


def test_none_suggestions_need_no_confirmation(demo_study, tmp_path):
    from planner.modic import suggest_plan

    plan = load_plan(demo_study.plan_path)
    images = find_plan_images(plan, None, plan_path=demo_study.plan_path).images
    roles = {r.series_instance_uid: r.role for r in plan.case.series}
    sug = suggest_plan(plan, {roles[k]: v for k, v in images.items() if roles.get(k) in ("T1", "T2", "STIR")})
    for (level_id, which), s in sug.items():
        finding = getattr(plan.level(level_id), which)
        finding.suggestion = s
        finding.confirmed = finding.modic_type != "none"  # the physician confirmed the changes only
    data = build_report_data(plan, images, with_3d=False)
    assert not [w for w in data.eligibility.warnings if w.key == "unconfirmed_suggestion"]
    text = " ".join(_text(render_report_pdf(data, tmp_path / "s.pdf")))
    assert "No Modic change: T12-L3, L4 superior, S1 inferior." in text
    assert "suggestion, not confirmed" not in text


# ------------------------------------------------------------------------------------ the real CT
@pytest.fixture(scope="module")
def ct_summary(shared_data, tmp_path_factory):
    plan, images = ct_example_plan(shared_data / "totalseg_example" / "example_ct.nii.gz")
    data = build_report_data(plan, images)
    path = render_report_pdf(data, tmp_path_factory.mktemp("ct-summary") / "summary.pdf")
    return plan, images, data, _text(path)


def test_ct_skin_entry_is_on_the_back(ct_summary):
    """The first exit of the introducer line from the body: on the back, just outside it air, just inside
    tissue; never the arm or the table beyond."""
    plan, images, _, _ = ct_summary
    [vol] = images.values()
    for traj in plan.trajectories:
        n = procedure_numbers(plan, traj, images)
        assert n.skin_lps is not None and n.skin_source == "CT", n.skin_note
        entry = np.asarray(traj.entry_lps)
        back = (n.skin_lps - entry) / np.linalg.norm(n.skin_lps - entry)
        assert back[1] > 0.6  # going backwards along the introducer is going mostly posterior
        outside, inside = vol.sample(np.vstack([n.skin_lps + 8 * back, n.skin_lps - 8 * back]), order=1)
        assert outside < -500 < inside  # air behind the skin, tissue in front of it
        assert 80.0 < n.skin_to_target_mm < 200.0


def test_ct_summary_shows_the_procedure_numbers(ct_summary):
    plan, _, data, pages = ct_summary
    text = " ".join(pages)
    for name in ("L4", "L5"):
        page = next(p for p in pages if f"{name}: plan for the procedure room" in p)
        assert "on the CT" in page and "mm along the path" in page and "C-arm AP" in page
        assert "Virtual AP" in page and "Virtual lateral" in page  # no C-arm image: the plan on virtual views
    assert "Eligibility" in text
