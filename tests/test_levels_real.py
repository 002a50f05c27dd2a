"""The level finder on the labelled real CTs of ../shared/data, against the acceptance of issue 10; the MRI
geometry read from the 21 labelled lumbar MRIs.

One session-scoped fixture runs ``propose_levels_detailed`` once per CT (``totalseg_example`` without marks,
the TPTBox crop with a mark at its L3 label centroid) and scores the results with
``tests/anatomy_reference.py`` (walls and endplates on the labelled body's mid-sagittal line, CT pedicle
centres from the labels; see its docstring). Each acceptance threshold is one test. Thresholds not reached
yet are marked ``xfail(strict=True)`` with the value measured when the mark was set
(``bench/anatomy_bench.py`` prints the current ones), so a test turns red when it starts passing and its mark
is to be removed. The MRI levels (marks at the L1 and L5 centroids, moved 5 mm, none) are tested against the
same acceptance in ``tests/test_levels_mri_real.py``. Time and memory are measured by
``bench/anatomy_bench.py``, not here.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from planner.imaging import load_path
from planner.imaging.volume import Volume
from planner.levels import LevelDetectionError, propose_levels_detailed
from tests.anatomy_reference import (
    RAS_TO_LPS,
    body_reference,
    ct_cases,
    cut_volume_z,
    fov_cut,
    mri_cases,
    pedicle_reference,
    posed_levels,
    posed_volume,
    score_levels,
)


def _run(volume, hints, modality=None) -> tuple[list, str | None]:
    try:
        return propose_levels_detailed(volume, hints, modality=modality).levels, None
    except LevelDetectionError as exc:
        return [], str(exc)


@pytest.fixture(scope="session")
def real_results(shared_data):
    """{("ct", name, mode): score dict with "error" (the message, or None)}."""
    out = {}
    for name, case in ct_cases(shared_data).items():
        (_, volume), = load_path(case["image"]).images.items()
        hints = {"L3": case["bodies"]["L3"].centroid} if name == "tptbox" else None
        levels, error = _run(volume, hints, modality="CT")
        out[("ct", name, "mark" if hints else "none")] = {**score_levels(levels, case), "error": error}
    return out


def _errors(runs: list[dict], key: str) -> np.ndarray:
    return np.abs([e[key] for r in runs for e in r["levels"].values() if e.get(key) is not None])


def test_every_mri_scan_loads_with_the_geometry_nibabel_reads(shared_data):
    """The project's NIfTI reader gives these scans (no DICOM header, left/right unknown) the same voxels
    and the same ijk -> LPS mapping as nibabel (RAS affine turned to LPS)."""
    folder = shared_data / "lumbar_mri_vb"
    names = mri_cases(folder)
    assert len(names) == 21
    for name in names:
        (_, volume), = load_path(folder / f"{name}_mr.nii.gz").images.items()
        img = nib.load(str(folder / f"{name}_mr.nii.gz"))
        assert np.allclose(volume.ijk_to_lps, RAS_TO_LPS @ img.affine, atol=1e-4), name
        assert np.array_equal(volume.array, np.asarray(img.dataobj).transpose(2, 1, 0)), name
        meta = json.loads((folder / f"{name}.json").read_text())
        assert set(meta["body_centroid_lps_mm"]) == set(meta["levels_top_down"]), name


def test_every_real_ct_gets_levels_or_a_clear_message(real_results):
    for key, r in real_results.items():
        assert r["found_right"] or r["misnamed"] or r["off"] or (r["error"] and len(r["error"]) > 20), key


# ------------------------------------------------------------------------------------ CT
def test_ct_levels_and_body_centres(real_results):
    r = real_results[("ct", "totalseg", "none")]
    assert r["found_right"] == r["labelled"] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert max(_errors([r], "centre")) <= 4.0


def test_ct_body_walls_t12_to_l5_are_the_labelled_walls(real_results):
    """On example_ct's mid-sagittal line (bench/anatomy_bench.py), T12-L5's anterior walls lie within 2 mm of the
    labelled ones and the posterior within 3 mm (one voxel). L1's front third is fainter marrow (83-98 HU, just
    under the walk's threshold) in front of which the walk once stopped, 7 mm short of its cortex. (S1's label
    reference runs along the label's own tilted axis; on the landmarks' line the label lies within 1 mm.)"""
    levels = real_results[("ct", "totalseg", "none")]["levels"]
    walls = {n: (round(levels[n]["anterior"], 1), round(levels[n]["posterior"], 1))
             for n in ("T12", "L1", "L2", "L3", "L4", "L5")}
    assert all(abs(a) <= 2.0 and abs(p) <= 3.0 for a, p in walls.values()), walls


@pytest.fixture(scope="module")
def example_ct(shared_data):
    """(the example_ct volume, its labelled case)."""
    case = ct_cases(shared_data)["totalseg"]
    (_, volume), = load_path(case["image"]).images.items()
    return volume, case


def test_ct_that_starts_at_l2_is_named_from_its_sacrum(example_ct):
    """A lumbar CT that starts between L1 and L2 (example_ct cut there): L2-S1 named from the sacrum, centres within
    4 mm. Whether the walls are read as the cortex of fatty marrow is decided by the column's level over the rows
    where it is bone: the pelvis below the sacrum fills more of a shorter scan and once pulled that level under
    the limit, and then no body was measured."""
    volume, case = example_ct
    levels, error = _run(fov_cut(volume, case, "cut-top-l2"), None, modality="CT")
    r = score_levels(levels, case)
    assert error is None and r["found_right"] == ["L2", "L3", "L4", "L5", "S1"] and not r["misnamed"], (error, r)
    assert max(_errors([r], "centre")) <= 4.0


@pytest.mark.parametrize("below_s1_mm", [7.0, 11.0, 19.0])
def test_ct_that_ends_in_s1_is_never_named_one_body_off(example_ct, below_s1_mm):
    """example_ct ending 7-19 mm below S1's centroid: the edge of the image, where the column runs into the fill
    beyond it, is not a disc. It had outscored every real disc, pushed the disc chain off the L4-L5 disc and
    named every body one too high (7 and 11 mm: the body named L1 was T12), or put L4's and L5's centres
    outside their bodies (19 mm). Now the names are right or the finder says it cannot name them."""
    volume, case = example_ct
    z_s1 = float(case["bodies"]["S1"].centroid[2])
    levels, error = _run(cut_volume_z(volume, z_min_lps=z_s1 - below_s1_mm), None, modality="CT")
    r = score_levels(levels, case)
    assert not r["misnamed"] and not r["off"], r
    assert error is not None or r["found_right"], error


@pytest.mark.parametrize("edge", ["top", "bottom"])
def test_a_body_cut_by_the_edge_of_the_image_has_no_endplate_at_the_edge(example_ct, edge):
    """example_ct cut 5 mm past the centre of L1 (its top gone) or of L4 (its bottom gone, named from a mark in
    L3): the cut body is named, the endplate still in view is measured within 2 mm of the label's, and the
    one beyond the edge is not measured (the edge of the image had been reported as that endplate, 18 mm
    from L1's and 8 mm from L4's), and a note says so."""
    volume, case = example_ct
    z = {n: float(b.centroid[2]) for n, b in case["bodies"].items()}
    name, kept, gone = ("L1", "inferior", "superior") if edge == "top" else ("L4", "superior", "inferior")
    cut = (cut_volume_z(volume, z_max_lps=z["L1"] + 5.0) if edge == "top"
           else cut_volume_z(volume, z_min_lps=z["L4"] - 5.0))
    hints = None if edge == "top" else {"L3": case["bodies"]["L3"].centroid}
    proposal = propose_levels_detailed(cut, hints, modality="CT")
    r = score_levels(proposal.levels, case)
    assert name in r["found_right"] and not r["misnamed"], r
    assert r["levels"][name][gone] is None and abs(r["levels"][name][kept]) <= 2.0, r["levels"][name]
    level = next(lv for lv in proposal.levels if lv.name == name)
    assert getattr(level.landmarks, f"{gone}_endplate_lps") is None
    assert any(n.startswith(f"{name} is cut by the edge of the image: its {gone} endplate is not measured")
               for n in proposal.notes), proposal.notes


@pytest.mark.parametrize("mark, body, fix", [("S1", "L5", "move the S1 mark 1 body down"),
                                             ("L1", "T12", "move the L1 mark 1 body down"),
                                             ("L1", "L2", "move the L1 mark 1 body up")])
def test_a_ct_mark_on_the_wrong_body_names_the_correction(example_ct, mark, body, fix):
    """On CT the sacrum names the levels; a mark the physician sets on another body (S1 on L5, L1 on T12 or on
    L2, at the labelled body's centroid) wins, as on MRI, but never silently: a note says which body the sacrum
    counts it as and how far to move the mark if the sacrum is normal."""
    volume, case = example_ct
    proposal = propose_levels_detailed(volume, {mark: case["bodies"][body].centroid}, modality="CT")
    said = [n for n in proposal.notes if n.startswith(f"the mark named {mark} lies in the body that counts as {body}")]
    assert len(said) == 1 and said[0].endswith(f"If the sacrum is normal, {fix}"), proposal.notes
    assert ("(it has a disc and another body below it)" in said[0]) == (mark == "S1"), said


def test_ct_with_less_dense_marrow_keeps_every_level(example_ct):
    """example_ct with its trabecular bone made less dense (values between soft tissue and cortex brought 40 %
    closer to soft tissue, as in osteopenia; the cortex kept): T12-S1 still named right, L1-S1 centres within 4 mm
    (T12, at the top of the scan, 5.0 mm: 4.0 at full density). In its 3 mm voxels the cortical shell is not
    resolved, so the walls stay the threshold walls (``ct_cortex_max_voxel_mm``); following the cortex there
    measured no body at all."""
    volume, case = example_ct
    levels, error = _run(_less_dense(volume, 0.6), None, modality="CT")
    r = score_levels(levels, case)
    assert error is None and r["found_right"] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"], (error, r)
    assert not r["misnamed"]
    centre = {name: e["centre"] for name, e in r["levels"].items()}
    assert max(v for name, v in centre.items() if name != "T12") <= 4.0 and centre["T12"] <= 5.5, centre


@pytest.mark.parametrize("pose", ["turn+5", "turn+10", "tilt-5", "tilt+10", "tilt-10", "bend+10", "fine"])
def test_a_turned_or_tilted_ct_is_named_right_or_refused(example_ct, pose):
    """example_ct as a patient lying turned (about the long axis), tilted sideways or bent (5-10 degrees;
    tests/anatomy_reference.py CT_POSES), or resampled onto a clinical 0.75 x 0.75 x 1 mm grid (CT_GRIDS): every
    body named is the labelled body of that name, or the levels are
    refused with the reason and the request for a mark; never a ladder shifted by a level, and a body centre
    that lies outside its body carries a note to check it (the spine cut wrongly there). No pedicle landmark
    lies in the neighbouring vertebra (more than 10 mm from the label's pedicle): where the spine was cut
    wrongly (a body half or twice its neighbours' height) or the two pedicles of a body lie at different
    heights, they are left to be placed by hand, with a note; these poses had put one 20-37 mm off, in the
    vertebra above or below. (bench/anatomy_bench.py --pose: turned 10 degrees either way and tilted 10 degrees
    to one side the sacrum's alae are not recognised and the levels are refused.)"""
    volume, case = example_ct
    posed, back, _ = posed_volume(volume, pose)
    try:
        found = propose_levels_detailed(posed, None, modality="CT")
        levels, notes, error = found.levels, found.notes, None
    except LevelDetectionError as exc:
        levels, notes, error = [], [], str(exc)
    r = score_levels(posed_levels(levels, back), case)
    assert not r["misnamed"], (pose, r["misnamed"])
    for name in r["off"]:  # a body centre outside its body (tilted 5 degrees: L5, between L5 and S1) is flagged
        assert any(n.startswith(f"{name}:") and "check its landmarks" in n for n in notes), (name, notes)
    if levels:
        assert len(r["found_right"]) >= 6, r["found_right"]
    else:
        assert "cannot be named" in error and "mark one named body" in error, error
    far = {(n, side): round(e[f"pedicle_{side}"], 1) for n, e in r["levels"].items() for side in ("left", "right")
           if e.get(f"pedicle_{side}") is not None and e[f"pedicle_{side}"] > 10.0}
    assert not far, far
    by_name = {lv.name: lv for lv in levels}
    for note in notes:  # a pedicle pair left to the hand says so, and is empty
        if "its pedicles are not measured: place them by hand" in note:
            lm = by_name[note.split(":")[0]].landmarks
            assert lm.pedicle_left_lps is None and lm.pedicle_right_lps is None, note


def _less_dense(volume: Volume, keep: float) -> Volume:
    """The CT with its values between soft tissue (40 HU) and cortex (400 HU) brought towards soft tissue, keeping
    ``keep`` of their excess (trabecular bone losing density, as in osteopenia; the cortex kept)."""
    hu = np.asarray(volume.array, dtype=np.float32).copy()
    trabecular = (hu > 40.0) & (hu < 400.0)
    hu[trabecular] = 40.0 + keep * (hu[trabecular] - 40.0)
    return Volume(hu, volume.ijk_to_lps, volume.info)


def test_ct_with_faint_bone_asks_for_a_mark_and_names_the_levels_from_it(example_ct):
    """With the trabecular bone fainter still (0.45 of its excess over soft tissue: marrow about 80 HU) the sacrum's
    alae still join it to the ilia over enough of its height: L1-S1 named right from the sacrum. At 0.4 they no
    longer do: without a mark the levels are not named and the message says why and asks for a mark; with one mark
    in L3 the levels L2-L5 are named right with their centres within 4 mm (S1 is not measured in bone so faint)."""
    volume, case = example_ct
    levels, error = _run(_less_dense(volume, 0.45), None, modality="CT")
    r = score_levels(levels, case)
    assert error is None and not r["misnamed"] and {"L1", "L2", "L3", "L4", "L5", "S1"} <= set(r["found_right"]), r
    faint = _less_dense(volume, 0.4)
    levels, error = _run(faint, None, modality="CT")
    assert not levels and "alae too faint" in error and "mark one named body" in error, error
    levels, error = _run(faint, {"L3": case["bodies"]["L3"].centroid}, modality="CT")
    r = score_levels(levels, case)
    assert error is None and not r["misnamed"] and {"L2", "L3", "L4", "L5"} <= set(r["found_right"]), r
    assert max(r["levels"][n]["centre"] for n in ("L2", "L3", "L4", "L5")) <= 4.0


def _pedicle_errors(r: dict) -> dict[tuple[str, str], float]:
    return {(name, side): e[f"pedicle_{side}"] for name, e in r["levels"].items() for side in ("left", "right")
            if e.get(f"pedicle_{side}") is not None}


def test_ct_every_measured_pedicle_is_within_4_5_mm_on_example_ct(real_results):
    """Where a pedicle is measured on example_ct (3 mm voxels) it lies within 4.5 mm of the label's isthmus, and
    both pedicles of L1-L5 and S1 are measured."""
    errs = _pedicle_errors(real_results[("ct", "totalseg", "none")])
    assert {(n, s) for n in ("L1", "L2", "L3", "L4", "L5", "S1") for s in ("left", "right")} <= set(errs), errs
    assert max(errs.values()) <= 4.5, errs



def test_ct_lumbar_pedicles_are_sought_in_each_vertebra_s_own_turn(real_results):
    """example_ct's L1-L4 are turned 4-5 degrees about the spine's axis (their planes of mirror symmetry): sought in
    each vertebra's own frame, both pedicles lie within 2 mm of the label's isthmus (in the spine's frame L1's and
    L4's right pedicles lay 3.9 and 4.3 mm off)."""
    errs = _pedicle_errors(real_results[("ct", "totalseg", "none")])
    lumbar = {k: v for k, v in errs.items() if k[0] in ("L1", "L2", "L3", "L4")}
    assert len(lumbar) == 8 and max(lumbar.values()) <= 2.0, lumbar

@pytest.mark.xfail(strict=True, reason="measured: T12's pedicles are not measured (their section reaches the top "
                                       "edge of the image); L1-L5 within 4.3 mm, S1 within 2.5 mm")
def test_ct_pedicles_within_4_5_mm_at_every_level_of_example_ct(real_results):
    errs = _pedicle_errors(real_results[("ct", "totalseg", "none")])
    assert len(errs) == 14 and max(errs.values()) <= 4.5


def test_ct_s1_pedicles_lie_in_s1_within_4_5_mm_of_the_label_isthmus(real_results):
    """S1's pedicles on example_ct, sought in the frame of S1's posterior wall (its endplate leans forward with
    the sacral slope): both measured, inside the S1 label (TotalSegmentator's S1: body, pedicles and arch, the
    alae beside it unlabelled) and within 4.5 mm of the label's isthmus."""
    e = real_results[("ct", "totalseg", "none")]["levels"]["S1"]
    assert e["pedicle_left_in_label"] is True and e["pedicle_right_in_label"] is True, e
    assert e["pedicle_left"] <= 4.5 and e["pedicle_right"] <= 4.5, e


def test_ct_measured_pedicles_lie_in_their_own_vertebra(real_results):
    for key in (("ct", "totalseg", "none"), ("ct", "tptbox", "mark")):
        for name, e in real_results[key]["levels"].items():
            for side in ("left", "right"):
                assert e.get(f"pedicle_{side}_in_label") in (None, True), (key, name, side)


def test_ct_crop_with_a_mark_names_the_bodies_and_finds_l3_pedicles_within_3_mm(real_results):
    """The 70 mm TPTBox crop (L2-L4, 1.5 mm) with one mark at the L3 label's centroid: the bodies are named from the
    mark, none misnamed, and L3's pedicles lie within 3 mm of the label's isthmus."""
    r = real_results[("ct", "tptbox", "mark")]
    assert "L3" in r["found_right"] and not r["misnamed"] and not r["off"], r
    errs = _pedicle_errors(r)
    assert {("L3", "left"), ("L3", "right")} <= set(errs) and max(errs.values()) <= 3.0, errs


def test_ct_crop_measures_what_shows_of_l4_cut_by_its_bottom_edge(real_results):
    """The crop ends 14 mm below L4's superior endplate: L4 is named, its superior endplate and walls are
    measured (within 2 mm of the label's), its inferior endplate is not, and its right pedicle lies within 3 mm
    of the label's isthmus. (Its left pedicle's sections reach the bottom edge of the image, so it is not
    measured: a pedicle that may go on beyond the field of view is never measured.)"""
    r = real_results[("ct", "tptbox", "mark")]
    assert r["found_right"] == ["L3", "L4"] and not r["misnamed"] and not r["off"], r
    e = r["levels"]["L4"]
    assert e["inferior"] is None and abs(e["superior"]) <= 2.0, e
    assert abs(e["posterior"]) <= 2.0 and abs(e["anterior"]) <= 2.0, e
    assert e["pedicle_right"] is not None and e["pedicle_right"] <= 3.0 and e["pedicle_right_in_label"], e


@pytest.mark.xfail(strict=True, reason="measured: L4's left pedicle reaches the bottom edge of the crop (not "
                                       "measured; its right one lies 1.0 mm from the label's isthmus); only L2's "
                                       "lowest 12 mm are in the crop (not a level) and its pedicles lie above it "
                                       "(no reference: the label's pedicle is cut by the image's edge)")
def test_ct_pedicles_within_3_mm_on_the_tptbox_crop(real_results):
    r = real_results[("ct", "tptbox", "mark")]
    errs = _pedicle_errors(r)
    assert r["found_right"] == ["L2", "L3", "L4"] and len(errs) == 6 and max(errs.values()) <= 3.0


def test_ct_crop_without_marks_says_it_cannot_name_the_levels(shared_data):
    """A crop of three lumbar vertebrae has no sacrum to count from: without a mark the finder says so (and how to
    give one) instead of proposing names."""
    (_, volume), = load_path(shared_data / "tptbox_vertebra_crops" / "sample_ct" / "sub-ct_label-22_ct.nii.gz"
                             ).images.items()
    with pytest.raises(LevelDetectionError, match="sacrum.*mark one named body"):
        propose_levels_detailed(volume, modality="CT")


def test_the_pedicle_reference_finds_the_isthmus_of_a_synthetic_bridge():
    """The label reference (tests/anatomy_reference.py) on a synthetic vertebra whose pedicles are oblique tubes
    narrowest at a known point: the centre is found within 1.5 mm at 1.5 and 3 mm voxels, and a pedicle cut by the
    edge of the label map has no reference."""
    for voxel in (1.5, 3.0):
        vert, body, ijk_to_lps, truth = _synthetic_vertebra(voxel)
        ref = body_reference("X", body, ijk_to_lps, [1.0, 0.0, 0.0])
        ped = pedicle_reference(ref, body, vert, ijk_to_lps)
        for side, got in ((+1, ped.left), (-1, ped.right)):
            assert got is not None, (voxel, side, ped.why_not[side])
            assert np.linalg.norm(got - truth[side]) <= 1.5, (voxel, side, got - truth[side])
    vert, body, ijk_to_lps, truth = _synthetic_vertebra(1.5)
    k_cut = int(round((truth[+1][2] - ijk_to_lps[2, 3]) / 1.5))  # the map ends at the isthmus' height
    ref = body_reference("X", body[:, :, :k_cut], ijk_to_lps, [1.0, 0.0, 0.0])
    ped = pedicle_reference(ref, body[:, :, :k_cut], vert[:, :, :k_cut], ijk_to_lps)
    assert ped.left is None and ped.right is None


def _synthetic_vertebra(voxel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """(vertebra mask, body mask, ijk -> LPS, isthmus centre per side) on an LPS-aligned grid: an elliptic body in
    front, a bar behind it, joined on each side by a tube running 30 mm back and 5 mm out whose radius is smallest
    (3.5 mm) at 45 % of its length."""
    lo = np.array([-45.0, -45.0, -25.0])
    shape = np.ceil(np.array([90.0, 80.0, 50.0]) / voxel).astype(int)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] *= voxel
    ijk_to_lps[:3, 3] = lo
    pts = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * voxel + lo
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    body = ((x / 20) ** 2 + ((y + 20) / 15) ** 2 <= 1) & (np.abs(z) <= 12)
    vert = body | ((np.abs(x) <= 22) & (y >= 16) & (y <= 24) & (np.abs(z) <= 8))
    truth = {}
    for side in (+1, -1):
        p0, p1 = np.array([side * 14.0, -10.0, 3.0]), np.array([side * 19.0, 20.0, 3.0])
        length = float(np.linalg.norm(p1 - p0))
        d = (p1 - p0) / length
        along = (pts - p0) @ d
        across = np.linalg.norm(pts - p0 - along[..., None] * d, axis=-1)
        vert |= (along >= 0) & (along <= length) & (across <= 3.5 + 0.012 * (along - 0.45 * length) ** 2)
        truth[side] = p0 + 0.45 * length * d
    return vert, body, ijk_to_lps, truth


def test_an_upper_abdominal_mr_is_not_counted_from_the_sacrum(shared_data):
    """TotalSegmentator's example MR (axial upper abdomen, 20 slices of 3 mm across the thoraco-lumbar junction)
    without marks: no sacrum is in view, or too little of the spine above what looks like one to count from it, so
    the levels are not named and the physician is asked for two marks (an earlier body finder took its lowest
    body for S1 and named the two L5 and S1)."""
    (_, volume), = load_path(shared_data / "totalseg_example" / "example_mr_sm.nii.gz").images.items()
    refusal = ("cannot name the levels: (only 1 vertebral body is in view|the sacrum and the L5-S1 disc are not "
               "recognised)")
    with pytest.raises(LevelDetectionError, match=refusal + ".*mark two"):
        propose_levels_detailed(volume, None, modality="MR")
