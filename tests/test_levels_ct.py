"""Level labelling on the real CT (TotalSegmentator example, ../shared/data).

The reference for each level is computed here, independently of planner code: the centroid of the
voxels that are both in the level's label and in the vertebral-body mask, converted from the NIfTI's
RAS affine (nibabel) to LPS.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.levels import DetectionParams, LevelDetectionError, not_measured, propose_levels, propose_levels_detailed
from planner.plan import LANDMARK_NAMES

#: TotalSegmentator v2 "total" labels in example_ct_vertebrae_labels.nii.gz (../shared/data/README.md)
TS_LABELS = {"S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31, "T12": 32}


def _sitk_volume(path, modality="CT") -> Volume:
    img = sitk.ReadImage(str(path))
    direction = np.array(img.GetDirection()).reshape(3, 3)
    return Volume(sitk.GetArrayFromImage(img), make_ijk_to_lps(img.GetOrigin(), direction, img.GetSpacing()),
                  ImageInfo(modality=modality))


@pytest.fixture(scope="module")
def ct_case(shared_data):
    return shared_data / "totalseg_example"


@pytest.fixture(scope="module")
def ct_reference(ct_case):
    lab_img = nib.load(str(ct_case / "example_ct_vertebrae_labels.nii.gz"))
    labels = np.asarray(lab_img.dataobj).astype(int)
    body = np.asarray(nib.load(str(ct_case / "example_ct_vertebrae_body_ivd.nii.gz")).dataobj).astype(int) == 1
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    ref = {}
    for name, code in TS_LABELS.items():
        vox = np.argwhere((labels == code) & body)
        assert len(vox) > 100, name
        ras = nib.affines.apply_affine(lab_img.affine, vox.mean(axis=0))
        ref[name] = ras_to_lps @ ras
    return ref


@pytest.fixture(scope="module")
def ct_volume(ct_case):
    return _sitk_volume(ct_case / "example_ct.nii.gz")


@pytest.fixture(scope="module")
def ct_levels(ct_volume):
    return propose_levels(ct_volume)


def test_real_ct_names_every_level(ct_levels):
    assert [lv.name for lv in ct_levels] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]


def test_real_ct_body_centres_within_5_mm(ct_levels, ct_reference):
    errors = {}
    for lv in ct_levels:
        errors[lv.name] = float(np.linalg.norm(np.asarray(lv.landmarks.body_center_lps) - ct_reference[lv.name]))
    assert max(errors.values()) <= 5.0, errors


def test_real_ct_landmarks_are_anatomically_consistent(ct_levels):
    """Every body landmark is measured and consistent; the pedicles are measured at L1-L5 (T12's reach the top
    edge of this image and S1's merge into the alae: they are absent, "not measured", never guessed) and, where
    measured, lie behind the posterior wall on their own side."""
    for lv in ct_levels:
        lm = lv.landmarks
        assert set(not_measured(lm)) <= {"pedicle_left_lps", "pedicle_right_lps"}, lv.name
        if lv.name in ("L1", "L2", "L3", "L4", "L5"):
            assert lm.is_complete(), lv.name
        c, sup, inf = (np.asarray(getattr(lm, n)) for n in LANDMARK_NAMES[:3])
        post, ant = np.asarray(lm.posterior_wall_lps), np.asarray(lm.anterior_wall_lps)
        height = np.linalg.norm(sup - inf)
        depth = np.linalg.norm(ant - post)
        assert 15 <= height <= 40 and 20 <= depth <= 55, (lv.name, height, depth)
        assert sup[2] > inf[2]  # LPS z is superior
        assert post[1] > ant[1]  # LPS y is posterior
        # centre between the walls and between the endplates
        assert np.linalg.norm(c - (post + ant) / 2) < 1.0
        assert abs((c - (sup + inf) / 2) @ ((sup - inf) / height)) < 1.0
        # pedicles: behind the front of the posterior wall, one on each side (LPS x is the patient's left)
        u_ap = (ant - post) / depth
        for side, sign in (("left", 1), ("right", -1)):
            ped = getattr(lm, f"pedicle_{side}_lps")
            if ped is not None:
                assert sign * (ped[0] - c[0]) > 5, (lv.name, side)
                assert (np.asarray(ped) - post) @ u_ap < 0.25 * depth, (lv.name, side)
    zs = [lv.landmarks.body_center_lps[2] for lv in ct_levels]
    assert zs == sorted(zs, reverse=True)


def test_orientation_of_the_voxel_grid_does_not_matter(ct_volume, ct_levels):
    # the same CT stored with permuted array axes (and the matching ijk_to_lps) gives the same landmarks
    arr = np.ascontiguousarray(ct_volume.array.transpose(1, 2, 0))
    perm = np.zeros((4, 4))
    perm[0, 1] = perm[1, 2] = perm[2, 0] = perm[3, 3] = 1
    vol2 = Volume(arr, ct_volume.ijk_to_lps @ perm, ImageInfo(modality="CT"))
    again = propose_levels(vol2)
    assert [lv.name for lv in again] == [lv.name for lv in ct_levels]
    for a, b in zip(again, ct_levels):
        for n in LANDMARK_NAMES:
            pa, pb = getattr(a.landmarks, n), getattr(b.landmarks, n)
            assert (pa is None) == (pb is None), (a.name, n)
            if pa is not None:
                assert np.allclose(pa, pb, atol=0.5), (a.name, n)


def test_transitional_anatomy_when_the_user_says_so(ct_volume, ct_levels):
    l6 = propose_levels_detailed(ct_volume, transitional="L6")
    assert [lv.name for lv in l6.levels] == ["L1", "L2", "L3", "L4", "L5", "L6", "S1"]
    assert any("L6" in n for n in l6.notes)
    # the bodies are the same, only the names move
    assert np.allclose(l6.levels[-2].landmarks.body_center_lps, ct_levels[-2].landmarks.body_center_lps)
    sac = propose_levels_detailed(ct_volume, transitional="sacralised_L5")
    assert [lv.name for lv in sac.levels][-1] == "L5"
    assert np.allclose(sac.levels[-1].landmarks.body_center_lps, ct_levels[-1].landmarks.body_center_lps)


def test_ct_without_sacrum_gives_a_clear_error(ct_case):
    vol = _sitk_volume(ct_case / "example_ct_sm.nii.gz")
    with pytest.raises(LevelDetectionError, match="sacrum"):
        propose_levels(vol)


def test_bad_arguments_are_refused(ct_volume):
    with pytest.raises(LevelDetectionError, match="transitional"):
        propose_levels(ct_volume, transitional="L7")
    with pytest.raises(LevelDetectionError, match="outside"):
        propose_levels(ct_volume, {"S1": (9999.0, 0.0, 0.0)})
    with pytest.raises(LevelDetectionError, match="unknown level"):
        propose_levels(ct_volume, {"X9": (0.0, 0.0, 0.0)})


def test_proposed_levels_round_trip_and_undo(ct_levels, tmp_path):
    from planner.document import PlanDocument
    from planner.levels import merge_proposal
    from planner.plan import Plan
    from planner.storage import load_plan, save_plan

    doc = PlanDocument(Plan(), user="t")
    doc.replace_levels(merge_proposal(doc.plan.levels, ct_levels), "Propose levels")
    l4 = doc.plan.level_by_name("L4")
    doc.set_endplate(l4.id, "inferior", modic_type="1", grade="B", share_pct=60.0, confirmed=True)
    doc.set_level_fields(l4.id, painful=True, treat=True, notes="worst")
    loaded = load_plan(save_plan(doc.plan, tmp_path / "levels.bvnplan"))
    assert loaded.model_dump(exclude={"audit", "modified"}) == doc.plan.model_dump(exclude={"audit", "modified"})
    assert loaded.level_by_name("L4").landmarks == l4.landmarks
    assert loaded.level_by_name("L4").canal_outline_lps == l4.canal_outline_lps != []
    l3 = doc.plan.level_by_name("L3")
    assert loaded.level_by_name("L3").pedicle_outline_left_lps == l3.pedicle_outline_left_lps != []
    # a new proposal keeps the findings of the levels it finds again
    merged = merge_proposal(doc.plan.levels, ct_levels)
    again = next(lv for lv in merged if lv.name == "L4")
    assert again.id == l4.id and again.inferior.modic_type == "1" and again.treat
    doc.undo()
    doc.undo()
    doc.undo()
    assert doc.plan.levels == []


def test_pedicles_lie_in_their_own_vertebra(ct_case, ct_levels):
    """Every measured pedicle landmark lies inside its own vertebra's label (none in a neighbour's)."""
    img = nib.load(str(ct_case / "example_ct_vertebrae_labels.nii.gz"))
    labels = np.asarray(img.dataobj).astype(int)
    lps_to_ijk = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine)
    measured = 0
    for lv in ct_levels:
        for side in ("left", "right"):
            p = getattr(lv.landmarks, f"pedicle_{side}_lps")
            if p is None:
                continue
            measured += 1
            ijk = np.round(lps_to_ijk[:3, :3] @ np.asarray(p) + lps_to_ijk[:3, 3]).astype(int)
            assert labels[tuple(ijk)] == TS_LABELS[lv.name], (lv.name, side)
    assert measured >= 10


def test_the_measured_pedicle_outline_is_stored_around_the_centre(ct_levels):
    traced = sum(bool(lv.pedicle_outline_left_lps) + bool(lv.pedicle_outline_right_lps) for lv in ct_levels)
    assert traced >= 6
    for lv in ct_levels:
        for side in ("left", "right"):
            ring = np.asarray(getattr(lv, f"pedicle_outline_{side}_lps"))
            if getattr(lv.landmarks, f"pedicle_{side}_lps") is None:
                assert ring.size == 0, (lv.name, side)  # no outline without a measured pedicle
                continue
            if ring.size == 0:
                continue  # the inner cortex could not be traced (a dark centre on thick slices): no outline
            centre = np.asarray(getattr(lv.landmarks, f"pedicle_{side}_lps"))
            assert ring.shape[0] >= 8, (lv.name, side)
            # traced in the plane of the narrowest section, around its centre (the centre is the bone section's
            # centroid, the outline the inner edge of its cortex: close, not equal)
            assert np.linalg.norm(ring.mean(axis=0) - centre) < 1.5
            # a plane section (perpendicular to the pedicle axis) a few millimetres across
            sv = np.linalg.svd(ring - ring.mean(axis=0), compute_uv=False)
            assert sv[2] < 0.01 * sv[0]
            radii = np.linalg.norm(ring - centre, axis=1)
            assert 1.0 <= np.median(radii) <= 12.0, (lv.name, side, np.median(radii))


@pytest.mark.parametrize("name", ["T12", "L1", "L2", "L3", "L4", "L5",
                                  pytest.param("S1", marks=pytest.mark.xfail(
                                      strict=True, reason="this map's S1 label has no posterior arch in the "
                                                          "outline's plane (the sacral arch belongs to the "
                                                          "unlabelled sacrum), so its 'ring' is open behind; "
                                                          "measured: 61 % of the vertices inside it, the outline "
                                                          "inside the bone ring on the image"))])
def test_canal_outline_lies_inside_the_vertebral_ring(ct_case, ct_levels, name):
    """At every level the canal outline is measured, lies inside the ring of its vertebra (the convex hull
    of the vertebra label's section in the outline's plane, within one 3 mm voxel) and encloses no bone
    of the label at its centre. The ring comes from the label map (nibabel), not from planner code."""
    from scipy.spatial import Delaunay

    img = nib.load(str(ct_case / "example_ct_vertebrae_labels.nii.gz"))
    labels = np.asarray(img.dataobj).astype(int)
    lps_to_ijk = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine)

    def label_at(pts):
        ijk = np.round(pts @ lps_to_ijk[:3, :3].T + lps_to_ijk[:3, 3]).astype(int)
        ijk = np.clip(ijk, 0, np.array(labels.shape) - 1)
        return labels[ijk[..., 0], ijk[..., 1], ijk[..., 2]]

    lv = next(lv for lv in ct_levels if lv.name == name)
    ring = np.asarray(lv.canal_outline_lps)
    assert len(ring) >= 8, lv.name
    c = ring.mean(axis=0)
    _, _, vt = np.linalg.svd(ring - c)
    u, v = vt[0], vt[1]
    g = np.arange(-50.0, 50.0 + 1e-6, 0.5)
    plane = c + g[None, :, None] * u + g[:, None, None] * v
    bone = label_at(plane) == TS_LABELS[lv.name]
    uv = np.column_stack([np.broadcast_to(g[None, :], bone.shape)[bone], np.broadcast_to(g[:, None], bone.shape)[bone]])
    hull = Delaunay(uv)
    rel = np.column_stack([(ring - c) @ u, (ring - c) @ v])
    pulled = rel - 3.0 * rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-9)
    assert np.all(hull.find_simplex(pulled) >= 0), lv.name
    assert label_at(c) != TS_LABELS[lv.name], lv.name


def test_s1_pedicles_are_sought_in_the_frame_of_its_posterior_wall():
    """S1's endplate leans forward with the sacral slope; its pedicle search takes the posterior wall's frame: the
    axis along the wall (the spine curve between the segment's discs), the origin on the wall at the segment's
    middle, the lateral and anterior axes perpendicular to it, and the body's own height, half-widths and bone
    threshold."""
    from planner.levels.ct import _sacral_wall_frame
    from planner.levels.grid import SpineCurve
    from planner.levels.pedicles import BodyFrame
    from planner.levels.results import VertebraFound
    from planner.plan import Landmarks

    wall = np.array([0.0, 0.5, -0.8]) / np.linalg.norm([0.0, 0.5, -0.8])  # caudal and backward along the wall
    pts = np.array([[0.0, -90.0, 240.0]]) + np.arange(40)[:, None] * 1.5 * wall[None, :]
    curve = SpineCurve.from_points(pts[::-1])  # index increasing cranially, as the finder's curve
    tilted = np.array([0.0, -0.79, 0.61])  # the endplate's axis, leaning forward
    body = BodyFrame(np.array([0.0, -95.0, 225.0]), tilted, np.array([0.0, -0.61, -0.79]),
                     np.array([1.0, 0.0, 0.0]), 22.8, {+1: 27.0, -1: 26.0}, 150.0)
    v = VertebraFound(10.0, 30.0, Landmarks())
    got = _sacral_wall_frame(curve, v, body)
    assert np.allclose(got.axis, -wall, atol=1e-6)
    assert np.allclose(got.post, curve.frame(20.0)[0], atol=1e-6)
    assert abs(got.lat @ got.axis) < 1e-9 and abs(got.ap @ got.axis) < 1e-9 and abs(got.ap @ got.lat) < 1e-9
    assert got.ap[1] < 0  # anterior (LPS -y)
    assert got.lat[0] > 0.99  # toward the patient's left
    assert (got.height, got.half_width, got.bone_thr) == (22.8, {+1: 27.0, -1: 26.0}, 150.0)


def test_the_column_level_does_not_depend_on_how_much_pelvis_is_in_view():
    """The marrow level that decides how CT walls are read is taken over the rows where the column is bone or
    disc: rows below the sacrum, where the track runs in the pelvis's soft tissue, do not pull it down however
    many of them a scan holds (a shorter scan of the same spine holds a larger share of them)."""
    from planner.levels.ct import _column_level

    p = DetectionParams()
    spine = np.concatenate([np.full(60, 150.0), np.full(20, 90.0)])  # bodies and discs
    for pelvis_rows in (0, 40, 120):
        col = np.concatenate([spine, np.linspace(-60.0, 30.0, pelvis_rows)])
        assert _column_level(col, p) == pytest.approx(150.0)
    assert _column_level(np.full(10, 20.0), p) == pytest.approx(20.0)  # all soft tissue: its own median


def _column(heights_mm, pedicle_heights=None):
    """Vertebrae stacked along +z (caudal first) with the given body heights and 3 mm discs; pedicles 15 mm
    behind the wall and 18 mm to each side, at mid-height or at the given heights above the inferior endplate
    (left, right) per body."""
    from planner.levels.results import VertebraFound
    from planner.plan import Landmarks

    out, z = [], 0.0
    for i, h in enumerate(heights_mm):
        hl, hr = (h / 2, h / 2) if pedicle_heights is None or pedicle_heights[i] is None else pedicle_heights[i]
        lm = Landmarks(body_center_lps=(0.0, -20.0, z + h / 2), superior_endplate_lps=(0.0, -20.0, z + h),
                       inferior_endplate_lps=(0.0, -20.0, z), posterior_wall_lps=(0.0, 0.0, z + h / 2),
                       anterior_wall_lps=(0.0, -40.0, z + h / 2), pedicle_left_lps=(18.0, 15.0, z + hl),
                       pedicle_right_lps=(-18.0, 15.0, z + hr))
        v = VertebraFound(float(i), float(i + 1), lm, name=["S1", "L5", "L4", "L3", "L2"][i])
        v.pedicle_outlines = {"left": [(18.0, 15.0, z)], "right": [(-18.0, 15.0, z)]}
        out.append(v)
        z += h + 3.0
    return out


def test_pedicles_of_a_body_cut_wrongly_or_at_two_heights_are_left_to_the_hand():
    """A body twice (or half) its neighbours' height was cut wrongly along the spine: its pedicles are cleared
    with a note, and its neighbours are told to check the disc they share with it. A pair whose centres lie
    more than 12 mm apart in height is cleared too; pairs within it and well-cut bodies keep theirs."""
    from planner.levels.ct import _doubtful_pedicles

    p = DetectionParams()
    verts = _column([24.0, 28.0, 52.0, 28.0, 27.0])
    notes = _doubtful_pedicles(verts, p)
    by = {v.name: v for v in verts}
    assert by["L4"].landmarks.pedicle_left_lps is None and by["L4"].landmarks.pedicle_right_lps is None
    assert by["L4"].pedicle_outlines == {}
    assert any(n.startswith("L4: its body measures 52 mm") and "place them by hand" in n for n in notes), notes
    assert any(n.startswith("L5: the disc it shares with L4") for n in notes), notes
    assert any(n.startswith("L3: the disc it shares with L4") for n in notes), notes
    for name in ("S1", "L5", "L3", "L2"):
        assert by[name].landmarks.pedicle_left_lps is not None, name

    verts = _column([24.0, 28.0, 28.0, 28.0, 27.0], [None, None, (14.0, 27.0), (10.0, 20.0), None])
    notes = _doubtful_pedicles(verts, p)
    by = {v.name: v for v in verts}
    assert by["L4"].landmarks.pedicle_left_lps is None and by["L4"].landmarks.pedicle_right_lps is None  # 13 mm
    assert by["L3"].landmarks.pedicle_left_lps is not None  # 10 mm apart: kept
    assert notes == ["L4: its two pedicles were found 13 mm apart in height (one is likely in the neighbouring "
                     "vertebra); its pedicles are not measured: place them by hand"]


@pytest.mark.parametrize("turn_deg", [-12.0, -5.0, 0.0, 7.0])
def test_a_vertebra_s_turn_is_found_from_its_mirror_symmetry(turn_deg):
    """A synthetic vertebra in HU (a body, two pedicles, an arch; symmetric about LPS x = 0) whose spine frame is
    turned by ``turn_deg`` about the long axis: the frame comes back onto the vertebra's plane of symmetry within
    1.5 degrees and 1 mm; a frame on a vertebra without a plane of symmetry is kept."""
    import math

    from planner.levels.ct import turned_frame
    from planner.levels.pedicles import BodyFrame
    from tests.test_levels_real import _synthetic_vertebra

    vert, _, ijk_to_lps, _ = _synthetic_vertebra(1.0)
    hu = np.where(vert, 700.0, 20.0).astype(np.float32).transpose(2, 1, 0)  # (k, j, i)
    volume = Volume(hu, ijk_to_lps, ImageInfo(modality="CT"))
    r = math.radians(turn_deg)
    lat = np.array([math.cos(r), math.sin(r), 0.0])  # the patient's left, turned
    ap = np.array([math.sin(r), -math.cos(r), 0.0])  # anterior (LPS -y), turned with it
    post = np.array([0.0, -5.0, 0.0])  # the body's posterior wall on the midline
    frame = BodyFrame(post, np.array([0.0, 0.0, 1.0]), ap, lat, 24.0, {1: 20.0, -1: 20.0}, 300.0)
    got = turned_frame(volume, frame, DetectionParams())
    assert math.degrees(math.acos(min(1.0, float(got.lat @ [1.0, 0.0, 0.0])))) <= 1.5, got.lat
    assert abs(float(got.ap @ [0.0, -1.0, 0.0]) - 1.0) < 1e-3 and abs(got.post[0]) <= 1.0, (got.ap, got.post)
    lopsided = Volume(np.where(np.indices(hu.shape)[2] < 30, hu, 20.0).astype(np.float32), ijk_to_lps,
                      ImageInfo(modality="CT"))  # only what lies at LPS x < -15 mm (the patient's right) kept
    assert turned_frame(lopsided, frame, DetectionParams()) is frame


# ------------------------------------------------------------------ a wall walk across faint marrow
def _profile(values_hu: list[float], step_mm: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A wall profile from the body's middle outward, one value per ``step_mm``."""
    return np.asarray(values_hu, float), np.arange(len(values_hu)) * step_mm


def _front_wall(prof: np.ndarray, pos: np.ndarray, thr: float = 86.0) -> float:
    from planner.levels.ct import _wall_bridge, _wall_in_profile

    p = DetectionParams()
    return _wall_in_profile(prof, pos, thr, p.ct_bone_hu, start_mm=0.0, min_mm=5.0, max_mm=50.0,
                            cortex_contrast=p.ct_cortex_contrast_hu, bridge=_wall_bridge(thr, p))


def test_the_front_wall_walk_crosses_marrow_a_little_fainter_than_its_threshold_to_the_cortex():
    """example_ct's L1 (3 mm voxels): its front third reads 83-98 HU against a threshold of 86 HU, and its
    anterior cortex (157 HU) lies 6 mm beyond where the walk ended; the wall is that cortex's outer edge (there the
    walk alone read the wall 7 mm short of the labelled one)."""
    prof, pos = _profile([151, 172, 170, 168, 175, 173, 135, 98, 85, 83, 122, 157, 110, 39, -21, -56, -41, -25])
    wall = _front_wall(prof, pos)
    # the cortex peaks at 16.5 mm and falls through halfway to the threshold (121.5 HU) between 16.5 and 18 mm
    assert 16.5 < wall < 18.0, wall


def test_the_front_wall_walk_does_not_cross_soft_tissue_or_run_into_a_vessel():
    """What lies in front of the body is not bridged: muscle or blood (40-60 HU) before a bright line (a calcified
    aortic wall), or a contrast-filled vessel wider than a cortex."""
    body = [151, 172, 170, 168, 175, 173, 160, 150, 140]
    plain, pos = _profile(body + [60, 20, 10, 10, 10, 10, 10, 10, 10, 10])
    edge = _front_wall(plain, pos)
    assert 12.0 < edge < 13.5, edge
    # soft tissue (55 HU) between the body and a thin bright line: the wall stays at the body
    calcified, pos = _profile(body + [60, 55, 55, 170, 60, 40, 40, 40, 40, 40])
    assert _front_wall(calcified, pos) == pytest.approx(edge, abs=0.3)
    # marrow-like values up to a wide bright vessel (no fall below the threshold within 4 mm): no cortex to reach
    vessel, pos = _profile(body + [80, 82, 180, 200, 210, 210, 205, 200, 200, 190])
    assert _front_wall(vessel, pos) < 14.0


def test_the_front_wall_walk_goes_past_dense_marrow_to_a_fainter_front_but_stops_at_a_bright_vessel():
    """example_ct turned by 5 degrees, L1: dense marrow behind (206 HU, above the cortex level), 92-126 HU in front
    up to the cortex. The walk reaches the front (it once stopped at the dense marrow as if a contrast-filled
    vessel ran on beyond it, 10 mm short of the label). A run beyond a cortex that is as bright as contrast (a
    venous-phase aorta against the body, 180 HU) still ends the wall at the cortex."""
    turned, pos = _profile([133, 153, 170, 190, 206, 206, 179, 147, 111, 92, 111, 126, 117, 84, 34, 0, -3, 2, 15, 27])
    # 117 HU at 18 mm, 84 HU at 19.5 mm: the threshold (90 HU) is crossed at 19.2 mm
    assert _front_wall(turned, pos, thr=90.0) == pytest.approx(19.2, abs=0.2)
    body = [151, 172, 170, 168, 175, 173, 160, 150, 140]
    vessel, pos = _profile(body + [300, 250] + [180] * 8 + [60, 40, 40])
    assert _front_wall(vessel, pos, thr=90.0) == pytest.approx(15.0, abs=0.2)
