"""The pieces of the learned MRI body finder, on analytic inputs: the network's input planes, the landmarks
read from a body's probability, the splitting of the body mask into bodies, the column of bodies, and the
naming from marks and from the sacrum (with the warnings for marks that disagree with the image)."""

from __future__ import annotations

import numpy as np
import pytest

from planner.imaging.volume import Volume, make_ijk_to_lps
from planner.levels import LevelDetectionError, MarkError
from planner.levels.mri_bodies import (
    MODEL_PATH,
    Body,
    BodyNet,
    BodyScan,
    _keep_column,
    edge_landmarks,
    measure_landmarks,
    name_from_marks,
    name_without_marks,
    split_bodies,
)
from planner.levels.mri_input import DEPTH, GRID_MM, normalise_plane, plane_for_box, sample_plane
from planner.levels.naming import name_sequence
from planner.levels.params import MrBodiesParams

SEQ = name_sequence(None)


# ------------------------------------------------------------------ input planes
def test_plane_covers_the_box_in_whole_network_steps():
    g = plane_for_box(3.0, -50.0, 70.0, -200.0, 10.0)
    assert g.rows % 2 ** DEPTH == 0 and g.cols % 2 ** DEPTH == 0
    pts = g.points_lps()
    assert pts[..., 1].min() <= -50.0 and pts[..., 1].max() >= 70.0 - GRID_MM
    assert pts[..., 2].max() >= 10.0 - GRID_MM and pts[..., 2].min() <= -200.0
    assert np.all(pts[..., 0] == 3.0)
    # rows run down (superior to inferior), columns back (anterior to posterior)
    assert pts[1, 0, 2] < pts[0, 0, 2] and pts[0, 1, 1] > pts[0, 0, 1]
    rc = np.array([[3.25, 7.5], [10.0, 0.0]])
    np.testing.assert_allclose(g.pixel_of(g.lps_of(rc)), rc, atol=1e-9)


def test_plane_samples_an_oblique_volume_exactly():
    """A volume whose value is a linear function of LPS, on a tilted grid with thick slices: the plane's
    samples equal the function (trilinear interpolation is exact for a linear function)."""
    c, s = np.cos(0.2), np.sin(0.2)
    direction = np.array([[0, 0, c], [1, 0, 0], [0, -1, 0]], float) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    ijk_to_lps = make_ijk_to_lps([-20.0, -60.0, 80.0], direction, [0.8, 0.8, 4.0])
    vol = Volume(np.zeros((12, 200, 160), np.float32), ijk_to_lps)
    k, j, i = np.indices(vol.array.shape)
    lps = vol.ijk_to_world(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(vol.array.shape + (3,))
    vol.array[:] = 2.0 * lps[..., 0] - 0.5 * lps[..., 1] + 0.25 * lps[..., 2]
    g = plane_for_box(4.0, -30.0, 30.0, -20.0, 40.0)
    lps_to_index = np.eye(4)
    lps_to_index[:3] = vol.lps_to_ijk[[2, 1, 0]]
    pts = g.points_lps()
    got = sample_plane(vol.array, lps_to_index, pts)
    inside = np.array([vol.contains(p, margin_voxels=-0.01) for p in pts.reshape(-1, 3)]).reshape(got.shape)
    assert inside.mean() > 0.5
    want = 2.0 * pts[..., 0] - 0.5 * pts[..., 1] + 0.25 * pts[..., 2]
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-3)


def test_plane_scaling_ignores_absolute_intensities():
    """The network sees the same pixels whatever the scanner's scale and offset (no absolute intensities)."""
    rng = np.random.default_rng(0)
    img = rng.gamma(2.0, 50.0, (64, 48))
    a = normalise_plane(img)
    b = normalise_plane(img * 37.0 + 1200.0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    lo, hi = np.percentile(img, (1.0, 99.5))
    assert abs(float(np.median(a[np.abs(img - lo) < 1e-9]) if np.any(np.abs(img - lo) < 1e-9) else 0.0)) < 1e-6
    assert a.min() == 0.0 and a.max() <= 1.5
    assert np.all(normalise_plane(np.full((32, 32), 7.0)) == 0)  # no contrast, no signal


# ------------------------------------------------------------------ landmarks from a probability
def test_edge_landmarks_of_a_tilted_box():
    """A box 40 mm deep and 26 mm high, tilted 12 degrees: walls and endplates where its edges cross the
    lines through the centre, within a tenth of a millimetre."""
    c = np.array([5.0, 30.0, -100.0])
    th = np.radians(12.0)
    axis = np.array([0.0, -np.sin(th), np.cos(th)])  # top leans forward
    ant = np.cross([1.0, 0.0, 0.0], axis)

    def inside(q: np.ndarray) -> np.ndarray:
        rel = q - c
        return ((np.abs(rel @ axis) <= 13.0) & (np.abs(rel @ ant) <= 20.0) & (np.abs(rel[..., 0]) <= 20)).astype(float)

    lm = edge_landmarks(inside, c, axis)
    np.testing.assert_allclose(lm["anterior_wall_lps"], c + 20.0 * ant, atol=0.3)
    np.testing.assert_allclose(lm["posterior_wall_lps"], c - 20.0 * ant, atol=0.3)
    np.testing.assert_allclose(lm["superior_endplate_lps"], c + 13.0 * axis, atol=0.3)
    np.testing.assert_allclose(lm["inferior_endplate_lps"], c - 13.0 * axis, atol=0.3)
    # a body cut by the edge of the image: the missing edge is left out, never guessed
    cut = edge_landmarks(lambda q: inside(q) * (q[..., 2] < c[2] + 5.0), c, axis, reach_mm=4.0)
    assert "superior_endplate_lps" not in cut or np.linalg.norm(cut["superior_endplate_lps"] - c) < 5.0


# ------------------------------------------------------------------ bodies in the mask
def test_bodies_joined_by_a_blurred_disc_rim_are_split():
    prob = np.zeros((5, 80, 40), np.float32)
    prob[:, 10:30, 10:30] = 0.95  # upper body
    prob[:, 36:56, 10:30] = 0.95  # lower body
    prob[0, 30:36, 10:30] = 0.6  # a lateral plane where the disc's rim blurs into both bodies
    parts, n = split_bodies(prob, MrBodiesParams())
    assert n == 2
    assert len(np.unique(parts[parts > 0])) == 2
    assert parts[2, 20, 20] != parts[2, 45, 20]
    assert parts[0, 31, 20] == parts[2, 20, 20] and parts[0, 35, 20] == parts[2, 45, 20]


def _scan(centres: list[tuple[float, float]], p_l5: list[float], p_s1: list[float]) -> BodyScan:
    """A one-plane scan (x = 0) with a 24 x 36 mm body at each (y, z) centre, top first."""
    g = plane_for_box(0.0, -100.0, 150.0, -330.0, 60.0)
    parts = np.zeros((1, g.rows, g.cols), np.int32)
    prob = np.zeros(parts.shape, np.float32)
    bodies = []
    for lab, ((y, z), a, b) in enumerate(zip(centres, p_l5, p_s1), start=1):
        r, c = g.pixel_of(np.array([0.0, y, z]))
        r0, r1, c0, c1 = int(r - 6), int(r + 6), int(c - 9), int(c + 9)
        parts[0, r0:r1 + 1, c0:c1 + 1] = lab
        prob[0, r0:r1 + 1, c0:c1 + 1] = 0.95
        cen = g.lps_of(np.array([(r0 + r1) / 2, (c0 + c1) / 2]))
        bodies.append(Body(cen, 30.0, a, b, False, lab))
    return BodyScan([g], prob, parts, bodies)


def _two_bodies(bridged_planes: tuple[int, ...]) -> np.ndarray:
    """Seven planes of two 40 mm wide, 28 mm tall bodies 36 mm apart (2 mm pixels) with an open disc between them,
    except in ``bridged_planes``, where the disc reads as body (its lateral part, or Modic bands with the disc's
    signal beside it)."""
    prob = np.zeros((7, 90, 40), np.float32)
    prob[:, 10:24, 10:30] = 0.97  # upper body
    prob[:, 28:42, 10:30] = 0.97  # lower body
    prob[:, 24:28, 10:30] = 0.05  # the disc
    for k in bridged_planes:
        prob[k, 24:28, 10:30] = 0.9
    return prob


def test_a_disc_bridged_in_the_lateral_planes_still_separates_the_bodies():
    """Where the two bodies' cores join in the lateral planes only, the planes through the open disc split them:
    two bodies, each with its own pixels in every plane (before, the bridged planes made one body of both, or the
    halves of the spine's width became two "bodies")."""
    prob = _two_bodies((0, 1, 5, 6))
    parts, n = split_bodies(prob, MrBodiesParams())
    assert n == 2
    upper, lower = parts[3, 15, 20], parts[3, 35, 20]
    assert upper != lower and upper and lower
    for k in range(7):
        assert parts[k, 12, 20] == upper and parts[k, 22, 20] == upper, k
        assert parts[k, 30, 20] == lower and parts[k, 40, 20] == lower, k
    # without the split the bridged planes join both bodies into one part or cut the column across its width
    parts_old, _ = split_bodies(prob, MrBodiesParams(split_share=99.0))
    assert not all(parts_old[k, 12, 20] != parts_old[k, 40, 20] for k in range(7))


def test_a_body_cut_by_a_band_along_its_endplate_is_not_split():
    """A band along an endplate that breaks the body's core in the lateral planes (its pieces' centres closer
    than ``split_min_step_mm``) leaves the body whole in the planes where its core is whole: nothing is split."""
    prob = np.zeros((7, 60, 40), np.float32)
    prob[:, 10:24, 10:30] = 0.97  # one 28 mm body
    for k in (0, 1, 5, 6):
        prob[k, 15:17, 10:30] = 0.6  # the band's edge: body, but not its confident core
    parts, n = split_bodies(prob, MrBodiesParams())
    assert parts[3, 11, 20] == parts[3, 22, 20] != 0
    parts_unsplit, n_unsplit = split_bodies(prob, MrBodiesParams(split_share=99.0))
    assert n == n_unsplit and np.array_equal(parts, parts_unsplit)


def test_a_small_piece_between_two_bodies_is_not_a_body():
    """A piece of a disc or of a band outlined apart between two bodies of the column is dropped, so it never
    shifts the count; a marked one is kept (the physician said it is a body)."""
    column = COLUMN[:4] + [((COLUMN[3][0] + COLUMN[4][0]) / 2, (COLUMN[3][1] + COLUMN[4][1]) / 2)] + COLUMN[4:]

    def with_piece() -> BodyScan:
        scan = _scan(column, [0.0] * len(column), [0.0] * len(column))
        scan.bodies[4].volume_ml = 3.0  # the piece; the bodies hold 30 ml
        scan.bodies.sort(key=lambda b: -b.centre_lps[2])
        return scan

    scan = with_piece()
    _keep_column(scan, MrBodiesParams())
    assert len(scan.bodies) == len(COLUMN)
    assert not np.any(scan.parts == 5)
    scan = with_piece()
    _keep_column(scan, MrBodiesParams(), marks=[scan.bodies[4].centre_lps])
    assert len(scan.bodies) == len(COLUMN) + 1


def test_a_disc_joined_to_the_body_at_a_moderate_probability_is_not_body():
    """A degenerated disc can join the body above it at a moderate probability (0.6 here; held-out, such outlines
    put L5's inferior endplate 11-18 mm low, in the L5-S1 disc). Where the probability fades over more than
    ``inferior_fade_mm`` below the body, the inferior endplate is read at ``inferior_edge_threshold``: at the
    body's edge, 12 mm below its centre, not at the end of the disc 8 mm further down, and the fade is kept for
    the note. A short fade (a blurred edge) changes nothing."""
    p = MrBodiesParams()
    for rows, fade in ((range(7, 11), True), (range(7, 8), False)):
        scan = _scan([(0.0, -100.0)], [0.0], [0.0])
        (body,) = scan.bodies
        r, c = np.round(scan.planes[0].pixel_of(body.centre_lps)).astype(int)
        for k in rows:  # the disc below the body's last row (row 6 below its centre), 2 mm per row
            scan.parts[0, r + k, c - 9:c + 10] = body.label
            scan.body_prob[0, r + k, c - 9:c + 10] = 0.6
        measure_landmarks(scan, p)
        below = float((body.centre_lps - body.landmarks["inferior_endplate_lps"]) @ np.array([0.0, 0.0, 1.0]))
        if fade:
            assert 11.0 <= below <= 14.0 and body.inferior_fade_mm > p.inferior_fade_mm, (below, body.inferior_fade_mm)
        else:
            assert below > 14.0 and body.inferior_fade_mm == 0.0, (below, body.inferior_fade_mm)
        assert scan.inside(body, body.centre_lps - np.array([0.0, 0.0, 14.0]))  # the outline keeps the disc


#: T11 to S1 down a gently curved column, 32 mm apart; the network calls the 7th body L5 and the 8th S1.
COLUMN = [(0.0, 0.0), (-4.0, -32.0), (-7.0, -64.0), (-8.0, -96.0), (-7.0, -128.0), (-4.0, -160.0),
          (2.0, -192.0), (14.0, -222.0)]
NAMES = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
P_L5 = [0.0] * 6 + [0.9, 0.05]
P_S1 = [0.0] * 7 + [0.85]


def _centre(scan: BodyScan, name: str) -> np.ndarray:
    return scan.bodies[NAMES.index(name)].centre_lps + np.array([0.0, 2.0, -3.0])  # inside, off centre


def test_parts_off_the_column_are_dropped():
    scan = _scan(COLUMN + [(80.0, -100.0), (60.0, -230.0)], P_L5 + [0.0, 0.0], P_S1 + [0.0, 0.0])
    scan.bodies.sort(key=lambda b: -b.centre_lps[2])
    _keep_column(scan, MrBodiesParams())
    got = np.array([b.centre_lps[1:] for b in scan.bodies])
    assert got.shape == (len(COLUMN), 2)
    np.testing.assert_allclose(got, np.array(COLUMN), atol=GRID_MM)
    assert not np.any(np.isin(scan.parts, [9, 10]))


def test_names_from_two_marks_anywhere_in_the_bodies():
    for pair in (("S1", "L1"), ("L1", "L5"), ("T12", "L3")):
        scan = _scan(COLUMN, P_L5, P_S1)
        names = name_from_marks(scan, {n: _centre(scan, n) for n in pair}, SEQ)
        assert names == NAMES, pair
        assert not scan.warnings


def test_names_counted_from_the_sacrum_without_marks():
    scan = _scan(COLUMN, P_L5, P_S1)
    assert name_without_marks(scan, SEQ) == NAMES
    # a spine with six lumbar vertebrae, when the physician says so: the last mobile body is L6
    assert name_without_marks(_scan(COLUMN, P_L5, P_S1), name_sequence("L6"), transitional="L6") == [
        "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"]


@pytest.mark.parametrize("p_l5,p_s1,why", [
    ([0.0] * 8, [0.0] * 8, "sacrum"),
    ([0.0] * 3 + [0.8] + [0.0] * 2 + [0.9, 0.0], P_S1, "two bodies"),
    ([0.0] * 4 + [0.9] + [0.0] * 3, P_S1, "not neighbours"),
])
def test_no_ladder_when_the_sacrum_is_not_clear(p_l5, p_s1, why):
    with pytest.raises(LevelDetectionError, match=f"cannot name the levels.*{why}"):
        name_without_marks(_scan(COLUMN, p_l5, p_s1), SEQ)


def test_s1_mark_on_l5_is_caught_with_the_correction():
    scan = _scan(COLUMN, P_L5, P_S1)
    with pytest.raises(MarkError, match=r"4 bodies apart.*need 5.*marked S1 is L5.*disc and another body below.*"
                                        r"move the S1 mark 1 body down"):
        name_from_marks(scan, {"S1": _centre(scan, "L5"), "L1": _centre(scan, "L1")}, SEQ)


def test_l1_mark_on_t12_is_caught_with_the_correction():
    scan = _scan(COLUMN, P_L5, P_S1)
    with pytest.raises(MarkError, match=r"5 bodies apart.*need 4.*marked L1 is T12.*move the L1 mark 1 body down"):
        name_from_marks(scan, {"L1": _centre(scan, "T12"), "L5": _centre(scan, "L5")}, SEQ)


def test_a_mark_in_a_disc_is_caught_with_the_correction():
    scan = _scan(COLUMN, P_L5, P_S1)
    disc = 0.5 * (scan.bodies[NAMES.index("L2")].centre_lps + scan.bodies[NAMES.index("L3")].centre_lps)
    with pytest.raises(MarkError, match=r"L3 mark lies in a disc.*counted from the L1 mark, L3 is the body just "
                                        r"below it; move the mark down"):
        name_from_marks(scan, {"L1": _centre(scan, "L1"), "L3": disc}, SEQ)
    with pytest.raises(MarkError, match="outside the vertebral bodies outlined on this image; click inside the L3 "
                                        "body, or, if the mark is inside it, propose on another sagittal series"):
        name_from_marks(scan, {"L1": _centre(scan, "L1"), "L3": np.array([0.0, 140.0, -100.0])}, SEQ)


def test_three_marks_name_the_chain_and_the_one_that_disagrees_is_named():
    """S1, L5 and L1 marked (the panel offers the three): the chain is named from them; an L5 mark on L4 is
    caught with its correction, counted from the sacrum."""
    scan = _scan(COLUMN, P_L5, P_S1)
    marks = {n: _centre(scan, n) for n in ("S1", "L5", "L1")}
    assert name_from_marks(scan, marks, SEQ) == NAMES and not scan.warnings
    scan = _scan(COLUMN, P_L5, P_S1)
    with pytest.raises(MarkError, match=r"L1 and L5 marks are 3 bodies apart.*need 4.*marked L5 is L4.*move the L5 "
                                        r"mark 1 body down"):
        name_from_marks(scan, {"S1": _centre(scan, "S1"), "L5": _centre(scan, "L4"), "L1": _centre(scan, "L1")},
                        SEQ)


def test_marks_both_one_level_high_keep_their_names_with_a_warning():
    """S1 on L5 and L1 on T12: the count between the marks fits, but the sacrum says otherwise. The names
    follow the physician's marks (never silently renamed) and the warning names the correction."""
    scan = _scan(COLUMN, P_L5, P_S1)
    names = name_from_marks(scan, {"S1": _centre(scan, "L5"), "L1": _centre(scan, "T12")}, SEQ)
    assert names[NAMES.index("L5")] == "S1"
    assert len(scan.warnings) == 1
    w = scan.warnings[0]
    assert "marked L1 and S1 are T12 and L5" in w and "disc and another body below" in w
    assert "move both marks 1 body down" in w


# ------------------------------------------------------------------ the shipped model
def test_the_shipped_model_loads_and_gives_probabilities():
    assert MODEL_PATH.is_file() and MODEL_PATH.stat().st_size < 8 * 2**20
    net = BodyNet(MODEL_PATH)
    out = net.probabilities(np.zeros((2, 64, 48), np.float32))
    assert out.shape == (2, 4, 64, 48)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-4)


def test_a_missing_model_is_an_error_that_names_it(tmp_path):
    with pytest.raises(LevelDetectionError, match="model .*missing"):
        BodyNet(tmp_path / "none.onnx")


def test_the_finder_and_the_image_checks_load_the_model_named_at_the_call(tmp_path, monkeypatch):
    """The level finder (``MrBodiesParams.model_path`` None) and the MRI image checks load
    ``mri_bodies.MODEL_PATH`` as it is when they run, so a held-out bench that swaps it measures both with the
    same model; a path given in the parameters wins, and a missing file is named."""
    import shutil

    from planner.levels import mri_bodies

    other = tmp_path / "fold0.onnx"
    shutil.copyfile(MODEL_PATH, other)
    assert mri_bodies.default_net().path == MODEL_PATH
    monkeypatch.setattr(mri_bodies, "MODEL_PATH", other)
    assert mri_bodies.default_net().path == other
    assert mri_bodies.default_net(str(MODEL_PATH)).path == MODEL_PATH
    monkeypatch.setattr(mri_bodies, "MODEL_PATH", tmp_path / "gone.onnx")
    with pytest.raises(LevelDetectionError, match="gone.onnx is missing"):
        mri_bodies.find_bodies(Volume(np.zeros((4, 8, 8), np.float32), make_ijk_to_lps((0, 0, 0), np.eye(3),
                                                                                         (1.0, 1.0, 1.0))))


def test_a_body_much_lower_or_taller_than_its_neighbours_is_flagged():
    """L4 outlined 14 mm high between neighbours of 25 mm (its outline stopped at a dark Modic band, or
    the body is collapsed) gets a warning naming it; a 21 mm body (84 %) and S1 do not. L5 outlined 32 mm
    below a 25 mm L4 (its outline ran on into the sacrum) gets one too; 29 mm (1.16 times) does not."""
    from planner.levels.mri import odd_height_bodies
    from planner.levels.results import VertebraFound
    from planner.plan import Landmarks

    def vert(name, z, h, sacral=False, partial=False):
        return VertebraFound(0.0, 0.0, Landmarks(body_center_lps=(0.0, 0.0, z), superior_endplate_lps=(0.0, 0.0, z + h / 2),
                                                 inferior_endplate_lps=(0.0, 0.0, z - h / 2)), name=name, sacral=sacral,
                             partial=partial)

    verts = [vert("L2", 60.0, 25.0), vert("L3", 30.0, 21.0), vert("L4", 0.0, 14.0), vert("L5", -30.0, 25.0),
             vert("S1", -60.0, 10.0, sacral=True)]
    warnings = odd_height_bodies(verts, MrBodiesParams())
    assert len(warnings) == 1 and warnings[0].startswith("L4: its body measures 14 mm"), warnings
    assert "may stop at a marrow change" in warnings[0]
    for h_l5, flagged in ((32.0, True), (29.0, False)):
        verts = [vert("L3", 60.0, 25.0), vert("L4", 30.0, 25.0), vert("L5", 0.0, h_l5), vert("S1", -30.0, 20.0, True)]
        warnings = odd_height_bodies(verts, MrBodiesParams())
        assert bool(warnings) == flagged, (h_l5, warnings)
        if flagged:
            assert len(warnings) == 1 and warnings[0].startswith("L5: its body measures 32 mm"), warnings
            assert "run on through a disc into the next bone" in warnings[0]
    # L5 cut by the edge of the part searched: 32 mm in view is already too tall; 18 mm is not "short"
    for h_l5, start in ((32.0, "L5: its body measures at least 32 mm"), (18.0, None)):
        verts = [vert("L3", 60.0, 25.0), vert("L4", 30.0, 25.0), vert("L5", 0.0, h_l5, partial=True)]
        warnings = odd_height_bodies(verts, MrBodiesParams())
        assert (warnings[0].startswith(start) and len(warnings) == 1) if start else not warnings, (h_l5, warnings)


def test_no_ladder_when_the_last_lumbar_body_has_nothing_below_it():
    """Without marks, a body that looks like L5 with no body below it may be the top of the sacrum itself
    (held-out, a fold model named VB3_12 one level high this way): the levels are not named."""
    p_l5 = [0.0] * 7 + [0.9]  # the lowest body (S1 here) looks like L5, nothing looks like S1
    with pytest.raises(LevelDetectionError, match="cannot name the levels: no sacrum is found below"):
        name_without_marks(_scan(COLUMN, p_l5, [0.0] * 8), SEQ)


def test_no_ladder_when_the_body_under_the_last_lumbar_body_is_whole_and_not_sacral():
    """Without marks, a body seen whole below the one that looks like L5, which the network does not take for the
    sacrum, is not named S1 (held-out, an image ending in the L5-S1 disc made L4 look like L5 above a whole L5 that
    way); the same body cut by the image's lower edge, or recognised as the sacrum, still anchors the count."""
    p_l5 = [0.0] * 6 + [0.9, 0.6]  # the body below looks more like a lumbar body than like the sacrum
    with pytest.raises(LevelDetectionError, match="not recognised as the top of the sacrum.*mark two named bodies"):
        name_without_marks(_scan(COLUMN, p_l5, [0.0] * 7 + [0.3]), SEQ)
    cut = _scan(COLUMN, p_l5, [0.0] * 7 + [0.3])
    cut.bodies[-1].partial = True  # cut by the image's lower edge: too little of it to judge
    assert name_without_marks(cut, SEQ) == NAMES
    assert name_without_marks(_scan(COLUMN, p_l5, [0.0] * 7 + [0.6]), SEQ) == NAMES


def test_the_slanted_side_of_an_oblique_stack_is_found_in_the_planes():
    """Where a plane leaves the image (an oblique stack's side crossing it), the points within the reach in the
    plane, and in the next plane across, are near the image's edge; planes wholly inside the image have none."""
    from planner.levels.mri_bodies import near_image_edge

    inside = np.ones((5, 20, 20), bool)
    assert not near_image_edge(inside, 4.0, 2.5).any()
    inside[2, :, 15:] = False  # plane 2 leaves the image past column 14
    near = near_image_edge(inside, 4.0, 2.5)
    assert near[2, :, 13:].all() and not near[2, :, :13].any()  # 4 mm = 2 pixels of 2 mm in the plane
    assert near[1, :, 15:].all() and near[3, :, 15:].all() and not near[1, :, :15].any()
    assert not near[0].any() and not near[4].any()
    # planes farther apart than the reach: only within the plane
    assert not near_image_edge(inside, 4.0, 5.0)[1].any()
