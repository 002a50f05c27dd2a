"""The MRI level finder (the learned body finder) on the 21 real labelled lumbar MRIs of ../shared/data/lumbar_mri_vb (issue 10).

Every scan is labelled once per session (a module fixture: with marks at the L1 and L5 centroids, with
the marks moved 5 mm inside the bodies, and without marks) through the public API and scored against the
labels with ``tests/anatomy_reference.py`` (independent of ``planner.levels``). The thresholds are issue
10's acceptance. The shipped model was trained on these scans, so these are not held-out numbers: those
come from the cross-validation (``bench/anatomy_bench.py --mri-cv``, numbers in the README).
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.imaging import load_path
from planner.imaging.volume import Volume
from planner.levels import LevelDetectionError, MarkError, propose_levels_detailed
from tests.anatomy_reference import fov_cut, modic_banded, moved_mark, mri_case, mri_cases, score_levels

#: Issue 10 acceptance.
FOUND_SHARE, CENTRE_MEDIAN, CENTRE_P95, WALL_MEDIAN, AUTO_SHARE = 0.97, 3.0, 6.0, 2.0, 0.80


def _load(folder, name):
    (vol,) = [v for v in load_path(folder / f"{name}_mr.nii.gz").images.values() if isinstance(v, Volume)]
    return vol


@pytest.fixture(scope="module")
def runs(shared_data):
    """Per scan and mode: the score (or the error) of the level finder."""
    folder = shared_data / "lumbar_mri_vb"
    out = {}
    for name in mri_cases(folder):
        case = mri_case(folder, name)
        vol = _load(folder, name)
        code = {n: v for v, n in case["names"].items()}
        rng = np.random.default_rng(sum(map(ord, name)))
        cents = {n: case["bodies"][n].centroid for n in ("L1", "L5")}
        marks = {"centroid": cents,
                 "moved": {n: moved_mark(case["labels"], case["ijk_to_lps"], code[n], c, rng) for n, c in cents.items()},
                 "none": None}
        for mode, hints in marks.items():
            try:
                res = propose_levels_detailed(vol, hints)
                out[name, mode] = {**score_levels(res.levels, case), "error": None, "warnings": res.warnings,
                                   "notes": res.notes}
            except LevelDetectionError as exc:
                out[name, mode] = {**score_levels([], case), "error": str(exc), "warnings": [], "notes": []}
    return out


def _summary(runs, mode):
    sel = [r for (_, m), r in runs.items() if m == mode]
    labelled = sum(len(r["labelled"]) for r in sel)
    right = sum(len(r["found_right"]) for r in sel)
    misnamed = [m for r in sel for m in r["misnamed"]]
    centre = [e["centre"] for r in sel for e in r["levels"].values()]
    walls = [abs(e[k]) for r in sel for e in r["levels"].values() for k in ("posterior", "anterior")
             if e.get(k) is not None]
    return right / labelled, misnamed, np.asarray(centre), np.asarray(walls)


@pytest.mark.parametrize("mode", ["centroid", "moved"])
def test_two_marks_find_and_name_the_levels(runs, mode):
    """At least 97 % of the labelled levels T12-S1 found and none misnamed, with marks at the L1 and L5
    centroids or moved 5 mm inside the bodies."""
    share, misnamed, _, _ = _summary(runs, mode)
    errors = {n: r["error"] for (n, m), r in runs.items() if m == mode and r["error"]}
    assert share >= FOUND_SHARE, (share, errors)
    assert not misnamed


@pytest.mark.parametrize("mode", ["centroid", "moved"])
def test_two_marks_body_centres_and_walls(runs, mode):
    """Body centre within 3 mm (median) and 6 mm (95th percentile) of the label's centroid; posterior and
    anterior walls within 2 mm (median) along the body's AP line on the mid-sagittal plane."""
    _, _, centre, walls = _summary(runs, mode)
    assert np.median(centre) <= CENTRE_MEDIAN, np.median(centre)
    assert np.percentile(centre, 95) <= CENTRE_P95, np.percentile(centre, 95)
    assert np.median(walls) <= WALL_MEDIAN, np.median(walls)


def test_no_marks_every_name_right_or_a_clear_refusal(runs):
    """Without marks: every level named right on at least 80 % of the scans; on the others a clear
    "cannot name the levels" and never a wrong ladder."""
    sel = {n: r for (n, m), r in runs.items() if m == "none"}
    right = [n for n, r in sel.items() if not r["error"] and len(r["found_right"]) == len(r["labelled"])
             and not r["misnamed"]]
    assert len(right) / len(sel) >= AUTO_SHARE, {n: r["error"] or r["misnamed"] for n, r in sel.items()
                                                 if n not in right}
    for n, r in sel.items():
        assert not r["misnamed"], (n, r["misnamed"])
        if r["error"]:
            assert "cannot name the levels" in r["error"], (n, r["error"])


CHECK_S1 = "check that the body named S1 is the top of the sacrum"


def test_no_marks_says_to_check_s1_when_the_sacrum_below_it_is_not_in_view(runs):
    """Without marks, where the image ends less than 20 mm below the body named S1 the proposal says to check that
    it is the top of the sacrum (an image that ends in the L5-S1 disc can make L5 look like S1); where the sacrum
    shows well below it (VB1_02: about 50 mm of it), it does not."""
    notes = {n: r["notes"] for (n, m), r in runs.items() if m == "none" and not r["error"]}
    assert not any(CHECK_S1 in t for t in notes["VB1_02"]), notes["VB1_02"]
    assert any(CHECK_S1 in t for t in notes["VB3_08"]), notes["VB3_08"]  # ends in S1's lower half


@pytest.mark.parametrize("name", ["VB2_07", "VB3_08", "VB3_11"])
def test_an_image_that_ends_in_the_l5_s1_disc_is_never_named_silently(shared_data, name):
    """Scans that held-out models named one level high when cut to end in the L5-S1 disc: cut so, without marks,
    they are refused, because the whole L5 under the body that looks like the last lumbar body (L4 here) is not
    taken for the sacrum (before that rule the shipped model named VB3_11 so cut one level high, with only the
    note to check S1 to tell the physician)."""
    folder = shared_data / "lumbar_mri_vb"
    case = mri_case(folder, name)
    with pytest.raises(LevelDetectionError, match="below the one that looks like the last lumbar body is not "
                                                   "recognised as the top of the sacrum.*mark two named bodies"):
        propose_levels_detailed(fov_cut(_load(folder, name), case, "cut-disc"))


@pytest.mark.parametrize("name", ["VB1_02", "VB2_04", "VB2_07"])
def test_wrong_marks_on_real_scans_are_caught_with_the_correction(shared_data, name):
    """S1 mark on L5, L1 mark on T12 and a mark in a disc each raise a MarkError naming the likely correction."""
    folder = shared_data / "lumbar_mri_vb"
    case = mri_case(folder, name)
    vol = _load(folder, name)
    c = {n: b.centroid for n, b in case["bodies"].items()}
    with pytest.raises(MarkError, match=r"marked S1 is L5 .*move the S1 mark 1 body down"):
        propose_levels_detailed(vol, {"S1": c["L5"], "L1": c["L1"]})
    with pytest.raises(MarkError, match=r"marked L1 is T12.*move the L1 mark 1 body down"):
        propose_levels_detailed(vol, {"L1": c["T12"], "L5": c["L5"]})
    disc = 0.5 * (c["L2"] + c["L3"])
    with pytest.raises(MarkError, match=r"L3 mark lies in a disc.*L3 is the body just below it"):
        propose_levels_detailed(vol, {"L1": c["L1"], "L3": disc})


@pytest.mark.parametrize("name", ["VB2_07", "VB3_05"])
@pytest.mark.parametrize("band", ["disc50", "bright50"])
def test_modic_bands_along_the_l4_l5_disc_never_shift_the_names(shared_data, name, band):
    """The patients to be planned have Modic changes at the levels to treat: with Modic-like bands along the L4-L5
    disc (tests/anatomy_reference.py MODIC_BANDS), two marks at the L1 and L5 centres name every labelled level
    right, and without marks the proposal is right or refused, never a wrong ladder. On VB2_07 with bands at the
    disc's signal the disc bridged in the lateral planes used to join L4 and L5 into one body (L5 then not found)."""
    folder = shared_data / "lumbar_mri_vb"
    case = mri_case(folder, name)
    vol = modic_banded(_load(folder, name), case["labels"], band)
    hints = {n: case["bodies"][n].centroid for n in ("L1", "L5")}
    sc = score_levels(propose_levels_detailed(vol, hints).levels, case)
    assert not sc["misnamed"] and sc["found_right"] == sc["labelled"], sc["found_right"]
    try:
        sc = score_levels(propose_levels_detailed(vol).levels, case)
    except LevelDetectionError as exc:
        assert "cannot name the levels" in str(exc)
        return
    assert not sc["misnamed"], sc["misnamed"]


@pytest.mark.parametrize("name", ["VB2_05", "VB3_03"])
def test_thick_sagittal_slices_with_fine_pixels(shared_data, name):
    """A clinical sagittal stack: the 1 mm scan turned into 4 mm slices (each the mean of four) with
    0.8 mm pixels; the same levels, body centres within 3 mm (median) of the labels."""
    from scipy import ndimage

    folder = shared_data / "lumbar_mri_vb"
    case = mri_case(folder, name)
    vol = _load(folder, name)
    k = vol.array.shape[0] // 4 * 4
    thick = vol.array[:k].astype(np.float32).reshape(k // 4, 4, *vol.array.shape[1:]).mean(axis=1)
    fine = ndimage.zoom(thick, (1, 1.25, 1.25), order=1)
    m = vol.ijk_to_lps.copy()
    # zoom maps the corner pixels onto each other; a thick slice k is the mean of slices 4k..4k+3
    m[:3, 0] *= (vol.array.shape[2] - 1) / (fine.shape[2] - 1)
    m[:3, 1] *= (vol.array.shape[1] - 1) / (fine.shape[1] - 1)
    m[:3, 2] *= 4.0
    m[:3, 3] = vol.ijk_to_world([0.0, 0.0, 1.5])
    res = propose_levels_detailed(Volume(fine.astype(np.float32), m, vol.info), {n: case["bodies"][n].centroid
                                                                                  for n in ("L1", "L5")})
    score = score_levels(res.levels, case)
    assert score["found_right"] == score["labelled"] and not score["misnamed"]
    assert np.median([e["centre"] for e in score["levels"].values()]) <= CENTRE_MEDIAN


def test_no_body_is_flagged_short_and_a_tall_flag_is_a_tall_outline_on_the_real_scans(runs):
    """The warning for a body much lower than its neighbours (a Modic band as dark as the disc, or a
    collapse) does not fire on any of the 21 real scans with two marks (none has such a body). The warning for
    a body outlined much taller than its neighbours fires only where the outline is taller than the labelled
    body, by more than 2 mm over its two endplates (the outline ran on into a disc or the next bone). A body
    with no label (T12 of a scan labelled from L1) cannot be checked so; with the shipped model the flags are
    VB2_05's L1 (3.6 mm taller than its label) and VB3_08's T12, unlabelled, cut by the top of the part searched
    and 30 mm tall in view."""
    short = {k: w for k, r in runs.items() if k[1] != "none" for w in r["warnings"] if "may stop at a marrow" in w}
    assert not short, short
    for key, r in runs.items():
        if key[1] == "none":
            continue
        for w in r["warnings"]:
            name = w.split(":")[0]
            if "may run on through a disc" not in w or name not in r["labelled"]:
                continue
            e = r["levels"][name]
            taller_mm = (e["superior"] or 0.0) - (e["inferior"] or 0.0)
            assert taller_mm > 2.0, (key, w, e)


def test_bodies_cut_at_the_side_are_told_apart_from_bodies_cut_at_the_ends(runs):
    """VB1_02's sagittal slices (57 of 1 mm) end inside the width of its lower lumbar bodies (the labels
    touch the first or last slice): one note says so and that their left-right middle is that of the part
    in view, without calling their mid-sagittal landmarks partial."""
    notes = runs["VB1_02", "centroid"]["notes"]
    side = [n for n in notes if n.startswith("the sagittal slices end inside the width of")]
    assert len(side) == 1 and "L4" in side[0], notes
    assert not any("is cut by the edge of the image" in n for n in notes), notes


@pytest.mark.parametrize("name,cut", [("VB1_02", {"L4", "L5"}), ("VB2_04", set())])
def test_bodies_cut_by_the_slanted_side_of_an_oblique_stack(shared_data, name, cut):
    """A sagittal stack angled 10 degrees about the long axis, with 4 mm slices (tests/anatomy_reference.py
    MR_GRIDS): its sides cross the planes, so the outermost plane does not show where a body is cut. On the
    narrow VB1_02 (57 mm from left to right) L4 and L5 run into the slanted side and are named cut at the side
    (their left-right middle is not measured; without the rule their held-out targets lay 6-10 mm to the side);
    on the wide VB2_04 no body is."""
    from tests.anatomy_reference import regridded_volume

    folder = shared_data / "lumbar_mri_vb"
    case = mri_case(folder, name)
    vol, _, _ = regridded_volume(_load(folder, name), "oblique-turn10")
    res = propose_levels_detailed(vol, {n: case["bodies"][n].centroid for n in ("L1", "L5")})
    lead = "the sagittal slices end inside the width of "
    note = [n for n in res.notes if n.startswith(lead)]
    named = set(note[0].split(":")[0].removeprefix(lead).split(", ")) if note else set()
    assert cut <= named if cut else not note, note
