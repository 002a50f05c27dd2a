"""Modic assistant on analytic phantoms: type, grade, share, ratios, region and the stored decision.

The phantom is an axis-aligned box vertebra (40 mm wide, 35 mm deep, 25 mm high) with a 1 mm dark
cortical shell and discs above and below, imaged as T1, T2 and STIR with the relative signal of
domain.md 2.1; a Modic zone of known type, height and AP extent is painted under an endplate.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.document import PlanDocument
from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.modic import (ModicError, apply_suggestions, classify, confirm_suggestion, run_plan, suggest_level,
                           suggest_plan)
from planner.plan import Landmarks, Level, Plan
from planner.settings import PlanningSettings
from planner.storage import load_plan, save_plan

#: signal relative to normal marrow (T1, T2, STIR)
MARROW = (1.0, 1.0, 1.0)
DISC = (0.55, 1.8, 1.7)
CORTEX = (0.1, 0.1, 0.1)
SOFT = (0.6, 0.7, 0.5)
MODIC = {"1": (0.5, 1.6, 2.2), "2": (1.6, 1.15, 0.45), "3": (0.4, 0.45, 0.5)}
BASE = {"T1": 500.0, "T2": 300.0, "STIR": 150.0}

W, D, H = 40.0, 35.0, 25.0


def _landmarks(z0: float = 0.0) -> Landmarks:
    return Landmarks(body_center_lps=(0.0, 0.0, z0), superior_endplate_lps=(0.0, 0.0, z0 + H / 2),
                     inferior_endplate_lps=(0.0, 0.0, z0 - H / 2), posterior_wall_lps=(0.0, D / 2, z0),
                     anterior_wall_lps=(0.0, -D / 2, z0), pedicle_left_lps=(12.0, 25.0, z0 + 3),
                     pedicle_right_lps=(-12.0, 25.0, z0 + 3))


def phantom(zones=(), *, noise=0.03, seed=1, stir=True, for_uid="1.2.3"):
    """zones: (endplate, type, height_mm, anterior_fraction) painted under that endplate."""
    spacing = 0.8
    xs = np.arange(-30, 30 + 1e-6, spacing)
    ys = np.arange(-28, 28 + 1e-6, spacing)
    zs = np.arange(-30, 30 + 1e-6, spacing)
    Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
    body = (np.abs(X) <= W / 2) & (np.abs(Y) <= D / 2) & (np.abs(Z) <= H / 2)
    inner = (np.abs(X) <= W / 2 - 1) & (np.abs(Y) <= D / 2 - 1) & (np.abs(Z) <= H / 2 - 1)
    disc = (np.abs(X) <= W / 2) & (np.abs(Y) <= D / 2) & (np.abs(Z) > H / 2)
    rng = np.random.default_rng(seed)
    vols = {}
    for k, name in enumerate(("T1", "T2", "STIR") if stir else ("T1", "T2")):
        img = np.full(X.shape, SOFT[k])
        img[disc] = DISC[k]
        img[body] = CORTEX[k]
        img[inner] = MARROW[k]
        for which, mtype, height, ant_frac in zones:
            zc = (H / 2 - 1 - height, H / 2 - 1) if which == "superior" else (-H / 2 + 1, -H / 2 + 1 + height)
            y_lim = -D / 2 + ant_frac * D  # anterior is -y in LPS: the zone covers the front fraction
            zone = inner & (Z >= zc[0]) & (Z <= zc[1]) & (Y <= y_lim)
            img[zone] = MODIC[mtype][k]
        img = img * (1 + noise * rng.standard_normal(img.shape))
        m = make_ijk_to_lps((xs[0], ys[0], zs[0]), np.eye(3), (spacing, spacing, spacing))
        vols[name] = Volume((img * BASE[name]).astype(np.float32), m,
                            ImageInfo(modality="MR", frame_of_reference_uid=for_uid))
    return vols


def _level(lm=None) -> Level:
    return Level(name="L5", landmarks=lm or _landmarks())


def test_classify_follows_the_domain_table():
    s = PlanningSettings()
    assert classify({"T1": 0.5, "T2": 1.5, "STIR": 2.0}, s) == "1"
    assert classify({"T1": 1.5, "T2": 1.1, "STIR": 0.4}, s) == "2"
    assert classify({"T1": 1.5, "T2": 1.4}, s) == "2"  # without STIR
    assert classify({"T1": 0.5, "T2": 0.5, "STIR": 0.5}, s) == "3"
    assert classify({"T1": 1.0, "T2": 1.0, "STIR": 1.0}, s) == "none"
    assert classify({"T1": 0.5, "T2": 1.5, "STIR": 0.5}, s) == ""  # fits no type
    s2 = PlanningSettings(modic_low_ratio=0.4)
    assert classify({"T1": 0.5, "T2": 1.5, "STIR": 2.0}, s2) == ""  # thresholds are settings


#: A zone over the whole marrow under the endplate covers the inner 38 x 33 mm of the 40 x 35 mm endplate
#: (the 1 mm cortical shell is endplate area too, as in the demo's ground truth): 89.6 %.
FULL_ZONE_SHARE = 100.0 * (W - 2) * (D - 2) / (W * D)


@pytest.mark.parametrize("mtype,height,frac,grade,tolerance", [
    ("1", 9.0, 1.0, "B", 5.0),   # 9 of 25 mm = 36%
    # a zone thinner than about 5 mm reads up to 10 points low: whether a point of the endplate is changed is
    # read 3.5-5.5 mm inside the cortical line (ModicParams.contact_from_mm), and a 4 mm zone fills only
    # part of that where the blur of its edge meets the blur of the cortex
    ("2", 4.0, 1.0, "A", 10.0),   # 16%
    ("3", 8.0, 1.0, "B", 5.0),
    ("1", 16.0, 1.0, "C", 5.0),  # 64%: the zone fills the half of the body on its side
])
def test_type_and_grade(mtype, height, frac, grade, tolerance):
    res = suggest_level(_level(), phantom([("superior", mtype, height, frac)]))
    sup, inf = res["superior"], res["inferior"]
    assert sup.modic_type == mtype and sup.grade == grade, sup.explanation
    assert inf.modic_type == "none" and inf.grade is None and inf.share_pct is None, inf.explanation
    assert abs(sup.share_pct - FULL_ZONE_SHARE) <= tolerance, (sup.share_pct, FULL_ZONE_SHARE)


def test_share_of_the_endplate():
    res = suggest_level(_level(), phantom([("inferior", "2", 8.0, 0.5)]))
    inf = res["inferior"]
    assert inf.modic_type == "2"
    # the front half of the marrow: 38 x (16.5 - 1) mm of the 40 x 35 mm endplate = 42 %
    assert abs(inf.share_pct - 100.0 * (W - 2) * (D / 2 - 1) / (W * D)) <= 5, inf.share_pct
    assert res["superior"].modic_type == "none"


def test_mixed_type():
    vols = phantom([("superior", "1", 8.0, 1.0), ("superior", "2", 8.0, 0.5)])
    assert suggest_level(_level(), vols)["superior"].modic_type == "1/2"


def test_without_stir_and_small_zone_is_none():
    res = suggest_level(_level(), phantom([("superior", "1", 8.0, 1.0)], stir=False))
    assert res["superior"].modic_type == "1" and set(res["superior"].ratios) == {"T1", "T2"}
    tiny = suggest_level(_level(), phantom([("inferior", "1", 8.0, 0.05)]))["inferior"]
    assert tiny.modic_type == "none" and "below the" in tiny.explanation


def test_it_states_the_numbers_and_the_region():
    sup = suggest_level(_level(), phantom([("superior", "1", 9.0, 1.0)]))["superior"]
    assert sup.ratios["T1"] < 0.8 and sup.ratios["T2"] > 1.2 and sup.ratios["STIR"] > 1.2
    for n in ("T1", "T2", "STIR"):
        assert f"{sup.ratios[n]:.2f}" in sup.explanation
    assert "grade B" in sup.explanation and "Udby" in sup.explanation and "%" in sup.explanation
    c, h = np.asarray(sup.region_center_lps), np.asarray(sup.region_half_size_mm)
    # the region is the band just under the superior endplate (z 12.5), inside the body
    assert 3 < c[2] < 12.5 and np.all(h > 0) and c[2] + h[2] <= H / 2 + 1
    assert np.all(np.abs(c[:2]) < 5)


def test_landmarks_two_mm_off_still_give_the_right_answer():
    lm = _landmarks()
    lm = lm.model_copy(update={"superior_endplate_lps": (0.0, 0.0, H / 2 + 2.0),
                               "inferior_endplate_lps": (1.0, 0.0, -H / 2 - 2.0)})
    res = suggest_level(_level(lm), phantom([("superior", "1", 9.0, 1.0)]))
    assert res["superior"].modic_type == "1" and res["inferior"].modic_type == "none"


def test_tilted_vertebra():
    # the same phantom resampled into a grid tilted 20 degrees about x: landmarks rotate with it
    from scipy.spatial.transform import Rotation

    vols = phantom([("inferior", "1", 9.0, 1.0)])
    rot = Rotation.from_euler("x", 20, degrees=True).as_matrix()
    tilted = {}
    for k, v in vols.items():
        m = v.ijk_to_lps.copy()
        m[:3, :3] = rot @ m[:3, :3]
        m[:3, 3] = rot @ m[:3, 3]
        tilted[k] = Volume(v.array, m, v.info)
    lm = {n: tuple(rot @ np.asarray(p)) for n, p in _landmarks().model_dump().items()}
    res = suggest_level(_level(Landmarks(**lm)), tilted)
    assert res["inferior"].modic_type == "1" and res["superior"].modic_type == "none"


def test_errors():
    vols = phantom()
    with pytest.raises(ModicError, match="T2"):
        suggest_level(_level(), {"T1": vols["T1"]})
    other = dict(vols)
    other["T2"] = Volume(vols["T2"].array, vols["T2"].ijk_to_lps, ImageInfo(frame_of_reference_uid="9.9"))
    with pytest.raises(ModicError, match="frame of reference"):
        suggest_level(_level(), other)
    with pytest.raises(ModicError, match="landmarks missing"):
        suggest_level(Level(name="L4"), vols)


def test_plan_stores_suggestion_and_decision(tmp_path):
    vols = phantom([("superior", "1", 9.0, 1.0)])
    plan = Plan(levels=[_level(), Level(name="S1")])  # S1 without landmarks is skipped
    doc = PlanDocument(plan, user="t")
    sugg = suggest_plan(doc.plan, vols)
    assert set(sugg) == {(plan.levels[0].id, "superior"), (plan.levels[0].id, "inferior")}
    apply_suggestions(doc, sugg)
    lv = doc.plan.levels[0]
    assert lv.superior.suggestion.modic_type == "1"
    assert lv.superior.modic_type == "none" and not lv.superior.confirmed  # the decision is the physician's
    confirm_suggestion(doc, lv.id, "superior")
    lv = doc.plan.levels[0]
    assert lv.superior.modic_type == "1" and lv.superior.grade == "B" and lv.superior.confirmed
    # the physician changes the inferior finding against the suggestion
    doc.set_endplate(lv.id, "inferior", modic_type="2", grade="A", share_pct=20.0, confirmed=True)
    loaded = load_plan(save_plan(doc.plan, tmp_path / "m.bvnplan"))
    l0 = loaded.levels[0]
    assert l0.superior.suggestion.ratios == lv.superior.suggestion.ratios
    assert l0.inferior.modic_type == "2" and l0.inferior.suggestion.modic_type == "none"
    # one undo step per action
    doc.undo()
    doc.undo()
    assert doc.plan.levels[0].superior.modic_type == "none" and doc.plan.levels[0].superior.suggestion
    doc.undo()
    assert doc.plan.levels[0].superior.suggestion is None
    with pytest.raises(ModicError):
        confirm_suggestion(doc, lv.id, "superior")


def _axial_t2(vols, slice_mm=4.0, z_range=None):
    """An axial T2 made from the phantom's isotropic T2: slabs of ``slice_mm`` averaged (thick slices), the
    slices from ``z_range`` (mm) only when given."""
    t2 = vols["T2"]
    spacing = float(t2.ijk_to_lps[2, 2])
    n = round(slice_mm / spacing)
    arr = t2.array
    k = arr.shape[0] // n
    thick = arr[: k * n].reshape(k, n, *arr.shape[1:]).mean(axis=1)
    z0 = float(t2.ijk_to_lps[2, 3]) + spacing * (n - 1) / 2
    zs = z0 + slice_mm * np.arange(k)
    keep = np.ones(k, bool) if z_range is None else (zs >= z_range[0]) & (zs <= z_range[1])
    m = t2.ijk_to_lps.copy()
    m[2, 2] = slice_mm
    m[2, 3] = zs[keep][0]
    return Volume(np.ascontiguousarray(thick[keep]), m, t2.info)


def test_axial_t2_is_a_second_reading_of_the_share():
    vols = phantom([("superior", "1", 9.0, 0.5), ("inferior", "2", 8.0, 1.0)])
    without = suggest_level(_level(), vols)
    res = suggest_level(_level(), {**vols, "AX_T2": _axial_t2(vols)})
    sup, inf = res["superior"], res["inferior"]
    # the suggestion itself is the sagittal reading's: the axial T2 does not change it
    assert (sup.modic_type, sup.grade, sup.share_pct) == (without["superior"].modic_type,
                                                          without["superior"].grade, without["superior"].share_pct)
    assert sup.images == ["T1", "T2", "STIR", "AX_T2"] and without["superior"].images == ["T1", "T2", "STIR"]
    # type 1 is bright on T2: the axial measures the share (front half of the marrow, 42 %) and says so
    assert abs(sup.axial_share_pct - 100.0 * (W - 2) * (D / 2 - 1) / (W * D)) <= 5, sup.explanation
    assert f"shows over {sup.axial_share_pct:.0f}%" in sup.explanation and "second reading" in sup.explanation
    # type 2 is iso on T2: nothing is measured there and the reason is given, never a number
    assert inf.modic_type == "2" and inf.axial_share_pct is None
    assert "not measured (the change does not show on T2" in inf.explanation
    assert without["superior"].axial_share_pct is None and "No axial T2" in without["superior"].explanation


def test_axial_t2_that_misses_the_endplate_is_not_measured():
    vols = phantom([("superior", "1", 9.0, 1.0)])
    below = _axial_t2(vols, z_range=(-30.0, 0.0))  # the slices stop at mid-body: the superior endplate is missed
    sup = suggest_level(_level(), {**vols, "AX_T2": below})["superior"]
    assert sup.modic_type == "1" and sup.axial_share_pct is None
    assert "not measured (the axial series covers 0% of the endplate)" in sup.explanation


def test_endplates_not_read_are_named_with_the_reason():
    vols = phantom([("inferior", "1", 9.0, 1.0)])
    # no cortical line and no disc above the body: marrow signal from 8 mm above the centre upwards
    flat = {}
    for name, v in vols.items():
        arr = v.array.copy()
        z = v.ijk_to_lps[2, 3] + v.ijk_to_lps[2, 2] * np.arange(arr.shape[0])
        arr[z > 8.0] = BASE[name]
        flat[name] = Volume(arr, v.ijk_to_lps, v.info)
    plan = Plan(levels=[_level(), Level(name="S1")])
    run = run_plan(plan, flat)
    l5, s1 = plan.levels[0].id, plan.levels[1].id
    assert set(run.suggestions) == {(l5, "inferior")} and run.suggestions[(l5, "inferior")].modic_type == "1"
    assert run.not_read[(l5, "superior")] == "no cortical endplate line found near the landmark"
    assert run.not_read[(s1, "superior")].startswith("landmarks missing")
    text = run.not_read_text(plan)
    assert text.startswith("L5 superior (no cortical endplate line found") and "S1 inferior (landmarks missing" in text
    assert suggest_plan(plan, flat) == run.suggestions
