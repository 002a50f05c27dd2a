"""MRI level labelling on the demo case (planner.demo): two marks, every landmark against the ground truth,
and the marks' rules (two bodies, in the right order, the count between them) on the same images.

The demo phantom is a smoke test with exact landmarks (its sagittal T1/T2/STIR are 3.5 mm slices tilted
against the patient's axes, with Modic changes at L4-S1); the level finder's numbers on real scans are in
``tests/test_levels_mri_real.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.levels import LevelDetectionError, MarkError, propose_levels, propose_levels_detailed
from planner.plan import LANDMARK_NAMES

# ------------------------------------------------------------------ the demo case (planner.demo)
DEMO_LEVELS = ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
BODY_LANDMARKS = [n for n in LANDMARK_NAMES if not n.startswith("pedicle")]


@pytest.fixture(scope="module")
def demo_images(demo_study):
    """The demo's sagittal T1, T2 and STIR and its axial T2 loaded through the importer, and its ground truth."""
    from planner.imaging import load_path
    from planner.imaging.volume import Volume

    vols = {}
    for role in ("T1", "T2", "STIR", "AX_T2"):
        images = load_path(demo_study.series_dirs[role]).images
        vols[role] = next(v for v in images.values() if isinstance(v, Volume))
    return vols, demo_study.ground_truth


def _demo_hints(gt, s1_offset=(1.0, -2.0, 2.0), l1_offset=(-1.0, 2.0, -2.0)):
    """The two clicks: a point inside S1 and a point inside L1 (not at their centres)."""
    v = gt["vertebrae"]
    return {"S1": np.asarray(v["S1"]["body_center_lps"]) + s1_offset,
            "L1": np.asarray(v["L1"]["body_center_lps"]) + l1_offset}


def _errors_to(levels, truth):
    """{(level, landmark): distance to ``truth[level][landmark]`` in mm}. Every landmark must be there,
    except S1's pedicles: on MRI they merge into the sacral alae, are not measured and are left to place
    by hand (absent, never a placement from a model)."""
    out = {}
    for lv in levels:
        for n in LANDMARK_NAMES:
            got = getattr(lv.landmarks, n)
            if lv.name == "S1" and n.startswith("pedicle"):
                assert got is None, (lv.name, n)
                continue
            assert got is not None, (lv.name, n)
            out[(lv.name, n)] = float(np.linalg.norm(np.asarray(got) - np.asarray(truth[lv.name][n])))
    return out


def _errors(levels, gt):
    """:func:`_errors_to` the demo's ground truth."""
    return _errors_to(levels, gt["vertebrae"])


@pytest.fixture(scope="module")
def demo_levels(demo_images):
    """Two clicks on the sagittal T1 of the demo case, with the case's other series (the axial T2 through
    L4/L5 refines the pedicles it covers; the sagittal T2 and STIR are not used for labelling)."""
    vols, gt = demo_images
    return propose_levels(vols["T1"], _demo_hints(gt), companions=[vols["T2"], vols["STIR"], vols["AX_T2"]])


@pytest.fixture(scope="module")
def t1_alone_other_clicks(demo_images):
    """The sagittal T1 alone, clicked elsewhere inside S1 and L1 (4-5 mm from the first clicks)."""
    vols, gt = demo_images
    return propose_levels(vols["T1"], _demo_hints(gt, (-2.0, 3.0, -3.5), (3.5, -2.0, 3.0)))


def test_demo_levels_and_landmarks(demo_levels, demo_images):
    """Acceptance: on the demo case, every landmark of every level lies within 2 mm of the ground truth."""
    _, gt = demo_images
    assert [lv.name for lv in demo_levels] == DEMO_LEVELS
    errors = _errors(demo_levels, gt)
    far = {k: round(e, 2) for k, e in errors.items() if e > 2.0}
    assert not far, far


def test_demo_t1_alone_and_other_clicks(demo_levels, t1_alone_other_clicks, demo_images):
    """The sagittal T1 by itself, clicked elsewhere in the two bodies: the same levels, every landmark still
    within 2 mm, and the bodies where the first clicks put them (within 1 mm)."""
    _, gt = demo_images
    other = t1_alone_other_clicks
    assert [lv.name for lv in other] == DEMO_LEVELS
    far = {k: round(e, 2) for k, e in _errors(other, gt).items() if e > 2.0}
    assert not far, far
    for a, b in zip(demo_levels, other):
        for n in BODY_LANDMARKS:
            assert np.linalg.norm(np.subtract(getattr(a.landmarks, n), getattr(b.landmarks, n))) < 1.0, (a.name, n)


def test_axial_stack_refines_the_pedicles_it_covers(demo_levels, t1_alone_other_clicks, demo_images):
    """Where the axial T2 covers a pedicle above its transverse process (L4 here), its in-plane resolution
    places the pedicle centre closer to the truth than the thick sagittal slices alone."""
    _, gt = demo_images
    with_axial, sagittal_only = _errors(demo_levels, gt), _errors(t1_alone_other_clicks, gt)
    for n in ("pedicle_left_lps", "pedicle_right_lps"):
        assert with_axial[("L4", n)] < sagittal_only[("L4", n)], n
        assert with_axial[("L4", n)] < 1.0, n


def test_demo_levels_on_the_t2_alone(demo_images):
    """Labelling works on the sagittal T2 by itself (discs bright in the middle, fat and fluid bright):
    every level named, body landmarks within 2 mm; pedicle centres within 3 mm (the thick slices leave
    their sideways place less certain on T2, where their outline against fat is less sharp)."""
    vols, gt = demo_images
    levels = propose_levels(vols["T2"], _demo_hints(gt))
    assert [lv.name for lv in levels] == DEMO_LEVELS
    errors = _errors(levels, gt)
    far = {k: round(e, 2) for k, e in errors.items() if e > (3.0 if k[1].startswith("pedicle") else 2.0)}
    assert not far, far


def test_demo_modic_assistant_types_every_endplate(demo_levels, demo_images):
    from planner.modic import suggest_plan
    from planner.plan import Plan

    vols, gt = demo_images
    plan = Plan(levels=[lv.model_copy(deep=True) for lv in demo_levels])
    sugg = suggest_plan(plan, vols)
    expected = {(m["level"], m["endplate"]): m["modic_type"] for m in gt["modic"]}
    assert len(expected) == 4
    by_name = {lv.id: lv.name for lv in plan.levels}
    got = {(by_name[lid], which): s for (lid, which), s in sugg.items()}
    assert len(got) == 2 * len(DEMO_LEVELS)
    for key, s in got.items():
        assert s.modic_type == expected.get(key, "none"), (key, s.explanation)
        # it states the numbers it used: a ratio per sequence, the region, and the explanation
        assert set(s.ratios) == {"T1", "T2", "STIR"} and s.region_center_lps is not None
        for seq, r in s.ratios.items():
            assert f"{seq} {r:.2f}" in s.explanation
        if s.modic_type != "none":
            assert s.grade in ("A", "B", "C") and 0 < s.share_pct <= 100
            assert f"grade {s.grade}" in s.explanation
    t1 = got[("L4", "inferior")]
    assert t1.ratios["T1"] < 0.8 and t1.ratios["T2"] > 1.2 and t1.ratios["STIR"] > 1.2
    t2 = got[("S1", "superior")]
    assert t2.ratios["T1"] > 1.2 and t2.ratios["STIR"] < 0.8


# ------------------------------------------------------------------ the marks' rules, on the demo
def test_mri_marks_must_name_two_bodies_in_order(demo_images):
    vols, gt = demo_images
    v = gt["vertebrae"]
    with pytest.raises(LevelDetectionError, match="two marks"):
        propose_levels(vols["T1"], {"S1": v["S1"]["body_center_lps"]})
    with pytest.raises(MarkError, match="lies below"):
        propose_levels(vols["T1"], {"S1": v["L1"]["body_center_lps"], "L1": v["S1"]["body_center_lps"]})


def test_mri_marks_that_do_not_fit_the_count_are_refused(demo_images):
    vols, gt = demo_images
    v = gt["vertebrae"]
    # S1 and "L4" marked five bodies apart: the count does not fit the names
    with pytest.raises(MarkError, match="apart"):
        propose_levels(vols["T1"], {"S1": v["S1"]["body_center_lps"], "L4": v["L1"]["body_center_lps"]})


def test_mri_transitional_l6_with_marks(demo_images):
    """A spine with six lumbar vertebrae, when the user says so: S1 marked, and the body that is L2 there (the
    demo's fifth body above S1); every body above the mark is named one step higher."""
    vols, gt = demo_images
    v = gt["vertebrae"]
    res = propose_levels_detailed(vols["T1"], {"S1": v["S1"]["body_center_lps"], "L2": v["L1"]["body_center_lps"]},
                                  transitional="L6")
    assert [lv.name for lv in res.levels] == ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"]
    got = {lv.name: np.asarray(lv.landmarks.body_center_lps) for lv in res.levels}
    assert np.linalg.norm(got["L6"] - v["L5"]["body_center_lps"]) < 2.0
    assert np.linalg.norm(got["L2"] - v["L1"]["body_center_lps"]) < 2.0


def test_mri_without_marks_a_proposal_counted_from_the_sacrum(demo_images):
    """No marks: the levels counted from the sacrum, said to be a proposal to confirm."""
    vols, gt = demo_images
    res = propose_levels_detailed(vols["T1"])
    assert [lv.name for lv in res.levels] == DEMO_LEVELS
    assert any("counted from the sacrum" in n for n in res.notes)
    for lv in res.levels:
        assert np.linalg.norm(np.subtract(lv.landmarks.body_center_lps,
                                          gt["vertebrae"][lv.name]["body_center_lps"])) < 2.0, lv.name
