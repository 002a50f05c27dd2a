"""Levels on CT without marks: the spine curve from the anterior column, discs along the straightened
column, the sacrum from its alae (the anchor of the names) and the landmarks of each body."""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Landmarks
from planner.levels.params import DetectionParams
from planner.levels.results import LevelDetectionError, body_heights, lps_tuple, neighbours_height, VertebraFound
from planner.levels.naming import PROPOSED_ORDER, name_sequence
from planner.levels.grid import line_profile, body_frame, SpineCurve, work_grid, WorkGrid, working_volume
from planner.levels.pedicles import BodyFrame, PedicleFound, ct_pedicle
from planner.levels.canal import ct_canal_outline
from planner.levels.discs import disc_scores


def detect_ct(volume: Volume, p: DetectionParams, transitional: Optional[str],
               hints: Optional[Mapping[str, np.ndarray]] = None) -> tuple[list[VertebraFound], list[str]]:
    """Levels on CT: named from the sacrum, or from marks inside named bodies when given (a mark wins
    over the sacrum; a disagreement between them is noted)."""
    grid = work_grid(volume, p.work_spacing_mm, fill=-1024.0)
    curve, low_density = _ct_curve(grid, p, float(np.max(volume.spacing)))
    s = grid.spacing
    a_col = np.arange(-10.0, 60.0 + 1e-6, s)
    img = curve.straighten(grid, a_col, np.arange(-p.slab_half_width_mm, p.slab_half_width_mm + 1e-6, s),
                           fill=-1024.0)
    discs = _find_discs(img, a_col, s, p)
    if len(discs) < 1:
        raise LevelDetectionError("no intervertebral disc was found along the spine")
    segments = _segments(discs, len(curve), s, p)
    # every segment keeps its place in the count, even when its landmarks cannot be measured
    verts, frames = [], []
    for lo_t, hi_t, cut in segments:
        got = _ct_landmarks(grid, curve, img, a_col, lo_t, hi_t, p, low_density, cut=cut)
        verts.append(VertebraFound(lo_t, hi_t, Landmarks() if got is None else got[0], partial=cut != 0))
        frames.append(None if got is None else got[1])
    if not any(v.landmarks.body_center_lps is not None for v in verts):
        raise LevelDetectionError("no vertebral body could be measured")
    # sacrum: highest segment with alae, in full view (the part in view of a body cut by the edge of the image
    # is too little to tell its alae; pure noise had made one such part a sacrum)
    sacral_idx = None
    for i in range(len(verts) - 1, -1, -1):  # verts are caudal -> cranial
        if (verts[i].landmarks.body_center_lps is not None and not verts[i].partial
                and _ct_has_alae(grid, curve, verts[i], p)):
            sacral_idx = i
            break
    width_notes = _measure_all_pedicles(volume, verts, frames, p, curve, sacral_idx)
    notes: list[str] = []
    seq = name_sequence(transitional)
    anchor = "L5" if transitional == "sacralised_L5" else "S1"
    by_sacrum = None if sacral_idx is None else (sacral_idx, seq.index(anchor))
    by_marks = _anchor_from_marks(verts, curve, hints, seq, notes) if hints else None
    if by_marks is None and by_sacrum is None:
        found = "1 vertebra was" if len(verts) == 1 else f"{len(verts)} vertebrae were"
        raise LevelDetectionError(f"the levels cannot be named: {found} found, but not the sacrum "
                                  "(S1), from which the levels are counted on CT (out of the field of view, or its "
                                  "alae too faint in low-density bone); mark one named body")
    if by_marks is not None and by_sacrum is not None:
        i_m, j_m = by_marks
        i_s, j_s = by_sacrum
        shift = (j_s + (i_s - i_m)) - j_m  # where the sacrum puts the marked body, minus the mark's name
        if shift:
            named = seq[j_m + shift] if 0 <= j_m + shift < len(seq) else "another level"
            mark, n = seq[j_m], abs(shift)
            notes.append(f"the mark named {mark} lies in the body that counts as {named} from the sacrum"
                         + (" (it has a disc and another body below it)" if mark == anchor else "")
                         + f"; the names follow the mark: check it. If the sacrum is normal, move the {mark} mark "
                         f"{n} bod{'y' if n == 1 else 'ies'} {'down' if shift < 0 else 'up'}")
    i_a, j_a = by_marks if by_marks is not None else by_sacrum
    for i, v in enumerate(verts):
        j = j_a + (i_a - i)  # cranial vertebrae have higher i -> smaller j
        v.name = seq[j] if 0 <= j < len(seq) else ""
        v.sacral = sacral_idx is not None and i <= sacral_idx
    notes += _doubtful_pedicles(verts, p)
    for v in verts:
        if v.name in PROPOSED_ORDER and v.landmarks.body_center_lps is None:
            notes.append(f"{v.name} was found but its landmarks could not be measured; place them by hand")
    found = [v for v in verts if v.name and v.landmarks.body_center_lps is not None]
    notes += [f"{verts[i].name}: {text}" for i, text in width_notes if verts[i].name in PROPOSED_ORDER]
    if transitional == "sacralised_L5":
        notes.append("L5 named as the top segment of the sacrum (sacralised L5, as chosen)")
        if not any(v.name == "S1" for v in found):
            notes.append("S1 below the sacralised L5 could not be measured; add it by hand if needed")
    if transitional == "L6":
        notes.append("six lumbar vertebrae assumed (transitional L6, as chosen)")
    for v in found:
        if v.partial:
            edge = "superior" if v.landmarks.superior_endplate_lps is None else "inferior"
            notes.append(f"{v.name} is cut by the edge of the image: its {edge} endplate is not measured, and its "
                         "centre and walls are those of the part in view; check its landmarks")
    return found[::-1], notes


def _doubtful_pedicles(verts: list[VertebraFound], p: DetectionParams) -> list[str]:
    """Pedicle landmarks that the image shows to be doubtful are cleared (to be placed by hand), with a note for
    each named level: those of a body whose height does not fit its neighbours' (``ct_body_height_ratio``: the
    spine was cut wrongly there, so the search looked in the wrong vertebra; its neighbours, which share a
    doubtful disc with it, are noted to be checked too) and both of a pair whose centres lie at heights of the
    body more than ``ct_pedicle_pair_height_mm`` apart (one is in the neighbouring vertebra)."""
    heights = body_heights(verts)
    notes = []
    miscut = set()
    for i, v in enumerate(verts):
        lm = v.landmarks
        sides = [s for s in ("left", "right") if getattr(lm, f"pedicle_{s}_lps") is not None]
        near = neighbours_height(heights, i)
        h = heights[i]
        why = None
        if h is not None and near is not None:
            lo, hi = p.ct_body_height_ratio
            if not lo <= h / near <= hi:
                miscut.add(i)
                why = (f"its body measures {h:.0f} mm between the discs found, against {near:.0f} mm for "
                       f"its neighbours (a disc may have been missed or found inside a body): check its landmarks")
                if not sides and v.name in PROPOSED_ORDER:
                    notes.append(f"{v.name}: {why}")
        if not sides:
            continue
        if why is None and len(sides) == 2 and h is not None:
            axis = np.subtract(lm.superior_endplate_lps, lm.inferior_endplate_lps) / h
            dz = abs(float(np.subtract(lm.pedicle_left_lps, lm.pedicle_right_lps) @ axis))
            if dz > p.ct_pedicle_pair_height_mm:
                why = (f"its two pedicles were found {dz:.0f} mm apart in height (one is likely in the neighbouring "
                       "vertebra)")
        if why is None:
            continue
        v.landmarks = lm.model_copy(update={f"pedicle_{s}_lps": None for s in sides})
        v.pedicle_outlines = {}
        if v.name in PROPOSED_ORDER:
            notes.append(f"{v.name}: {why}; its pedicles are not measured: place them by hand")
    for k, v in enumerate(verts):  # the discs a wrongly cut body shares with its neighbours are in doubt too
        beside = [verts[i].name for i in (k + 1, k - 1) if i in miscut and verts[i].name]
        if k in miscut or not beside or v.name not in PROPOSED_ORDER:
            continue
        notes.append(f"{v.name}: the disc{'s' if len(beside) > 1 else ''} it shares with {' and '.join(beside)}, "
                     f"whose {'heights do not fit their' if len(beside) > 1 else 'height does not fit its'} "
                     "neighbours', may be misplaced: check its landmarks")
    return notes


def _anchor_from_marks(verts: list[VertebraFound], curve: SpineCurve, hints: Mapping[str, np.ndarray],
                       seq: list[str], notes: list[str]) -> Optional[tuple[int, int]]:
    """(index of the marked segment, index of its name in ``seq``) from the marks: each mark names the
    segment between whose discs it lies (along the spine curve). Marks that disagree with the first are
    noted; None when no mark lies on a segment."""
    anchors = []
    for name, mark in hints.items():
        t = curve.nearest_t(mark)
        i = next((k for k, v in enumerate(verts) if v.t_low <= t <= v.t_high), None)
        if i is None:
            notes.append(f"the {name} mark lies beside the spine that was found; it was not used")
            continue
        anchors.append((name, i, seq.index(name)))
    if not anchors:
        return None
    name0, i0, j0 = anchors[0]
    for name, i, j in anchors[1:]:
        if j - j0 != i0 - i:
            notes.append(f"the marks {name0} and {name} disagree with the number of vertebrae between them; the "
                         f"names follow {name0}: check the marks")
    return i0, j0


def _measure_all_pedicles(volume: Volume, verts: list[VertebraFound], frames: list[Optional[BodyFrame]],
                          p: DetectionParams, curve: Optional[SpineCurve] = None, sacral_idx: Optional[int] = None
                          ) -> list[tuple[int, str]]:
    """Both pedicles and the canal outline of every body from the CT itself (a float32 copy of the region around each vertebra,
    bounded in size); a side that cannot be measured stays empty. A body whose lateral edge does not
    show (S1: the alae continue it sideways) takes the half-width measured on the nearest body above it,
    and says so. The top sacral segment (``sacral_idx``, S1) is searched in the frame of its posterior wall
    (:func:`_sacral_wall_frame`). Returns notes as (vertebra index, text)."""
    notes = []
    for i, (v, frame) in enumerate(zip(verts, frames)):
        if frame is None:
            continue
        for side in (+1, -1):
            if side in frame.half_width:
                continue
            above = next((frames[k] for k in range(i + 1, len(frames))
                          if frames[k] is not None and side in frames[k].half_width), None)
            if above is not None:
                frame.half_width[side] = above.half_width[side]
                notes.append((i, "its lateral edge does not show; the pedicle search takes the half-width of the "
                                 "body above"))
        search = frame
        if i == sacral_idx and curve is not None:
            search = _sacral_wall_frame(curve, v, frame)
        r = p.ct_pedicle_max_depth_mm + max(frame.half_width.values(), default=40.0) + frame.height
        region = working_volume(volume, (np.minimum(frame.post, search.post) - r,
                                         np.maximum(frame.post, search.post) + r), p.max_native_voxels)
        # in the vertebra's own frame (turned onto its plane of symmetry), then, for a side not found there, in
        # the spine's (a wide pedicle, L5's above all, can lose its isthmus to a turn of one or two degrees)
        tries = [search]
        if i != sacral_idx:
            tries.insert(0, turned_frame(region, search, p))
        got: dict[int, Optional[PedicleFound]] = {}
        for fr in tries:
            for side in (+1, -1):
                if side in fr.half_width and got.get(side) is None:
                    got[side] = ct_pedicle(region, fr, side, p)
            for side in (+1, -1):
                other = got.get(-side)
                if side in got and got[side] is None and other is not None:
                    # where this side's search found no isthmus, it starts again at the other's mirror image
                    mirror = other.centre_lps - 2.0 * float((other.centre_lps - fr.post) @ fr.lat) * fr.lat
                    got[side] = ct_pedicle(region, fr, side, p, start=mirror)
            if all(g is not None for g in got.values()):
                break
        for side, name in ((+1, "left"), (-1, "right")):
            found = got.get(side)
            if found is None:
                continue
            v.landmarks = v.landmarks.model_copy(update={f"pedicle_{name}_lps": lps_tuple(found.centre_lps)})
            v.pedicle_outlines[name] = found.outline_lps
        v.canal_outline = ct_canal_outline(region, frame, np.asarray(v.landmarks.body_center_lps), p)
    return list(dict.fromkeys(notes))


def turned_frame(volume: Volume, frame: BodyFrame, p: DetectionParams) -> BodyFrame:
    """``frame`` turned about its axis onto the vertebra's own plane of mirror symmetry, found in planes across
    the spine through the pedicles (body, pedicles and arch). The spine's frame takes its left-right axis
    from the image, so a patient lying turned, or a vertebra turned in a scoliotic curve, would have its
    pedicles sought askew: example_ct's own L1-L4 are turned 4-5 degrees, and example_ct turned 5 and 10
    degrees about the long axis gave these turns back within 2 degrees. The symmetry is measured as the
    correlation of the section with its mirror image about a line through the posterior wall; where it is
    weaker than ``ct_turn_min_symmetry`` (the sacrum, joined to the ilia) the frame is kept."""
    step = 2.0  # (1 mm gave the same pedicles on every CT pose of bench/anatomy_bench.py --pose)
    a = np.arange(-60.0, 35.0 + 1e-6, step)  # anterior of the wall
    x = np.arange(-65.0, 65.0 + 1e-6, step)  # toward the left
    hs = np.linspace(0.0, 0.35, 4) * frame.height  # the pedicles leave the upper part of the body
    pts = (frame.post + x[None, None, :, None] * frame.lat + a[None, :, None, None] * frame.ap
           + hs[:, None, None, None] * frame.axis)
    img = np.clip(volume.sample(pts.reshape(-1, 3)).reshape(len(hs), len(a), len(x)), -200.0, 1200.0)
    inner_a = (a >= -50.0) & (a <= 25.0)
    inner_x = np.abs(x) <= 50.0
    A, X = np.meshgrid(a[inner_a], x[inner_x], indexing="ij")
    ref = img[:, inner_a][:, :, inner_x]

    def symmetry(turn_deg: float, x0: float) -> float:
        r = math.radians(turn_deg)
        n = (math.cos(r), -math.sin(r))  # the mirror line's normal in (x, a); the line runs through (x0, 0)
        d = (X - x0) * n[0] + A * n[1]
        ia, ix = (A - 2 * d * n[1] - a[0]) / step, (X - 2 * d * n[0] - x[0]) / step
        mirrored = np.stack([ndimage.map_coordinates(plane, [ia, ix], order=1, mode="nearest") for plane in img])
        return float(np.corrcoef(ref.ravel(), mirrored.ravel())[0, 1])

    lim, off = p.ct_turn_range_deg, p.ct_turn_offset_mm
    coarse = [(symmetry(th, x0), th, x0) for th in np.arange(-lim, lim + 1e-6, 4.0)
              for x0 in np.arange(-off, off + 1e-6, 2.0)]
    _, th0, x00 = max(coarse)
    fine = [(symmetry(th, x0), th, x0) for th in np.arange(th0 - 3.0, th0 + 3.0 + 1e-6, 1.0)
            for x0 in np.arange(x00 - 1.0, x00 + 1.0 + 1e-6, 1.0) if abs(th) <= lim and abs(x0) <= off]
    best, th, x0 = max(fine)
    if not best >= p.ct_turn_min_symmetry:
        return frame
    r = math.radians(th)
    ap = math.cos(r) * frame.ap + math.sin(r) * frame.lat
    lat = math.cos(r) * frame.lat - math.sin(r) * frame.ap
    return BodyFrame(frame.post + x0 * frame.lat, frame.axis, ap, lat, frame.height, dict(frame.half_width),
                     frame.bone_thr)


def _sacral_wall_frame(curve: SpineCurve, v: VertebraFound, frame: BodyFrame) -> BodyFrame:
    """The frame in which S1's pedicles are sought: that of its posterior wall, not of its endplate.

    S1's body is wedged by the lumbosacral angle: its superior endplate faces forward as well as up (the
    sacral slope), so the endplate's axis leans forward of the posterior wall, and the pedicles leave the
    body from the upper part of that wall. Along the endplate's axis the wall's mid-height point lies at the
    body's posterior-superior corner and the pedicle search's heights and depths (from that point, across
    the body's height) miss the pedicles. The wall frame: axis along the posterior wall (the spine curve,
    which follows the posterior wall of the column, from the segment's lower to its upper disc), origin
    the wall's point at the segment's middle, lateral and anterior directions perpendicular to it; the
    height (between the endplate centres), the half-widths and the bone threshold are the body's."""
    lo, hi = curve.frame(v.t_low)[0], curve.frame(v.t_high)[0]
    post, _, lateral, anterior = curve.frame(0.5 * (v.t_low + v.t_high))
    axis = (hi - lo) / np.linalg.norm(hi - lo)
    lat = lateral - (lateral @ axis) * axis
    lat /= np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap @ anterior < 0:
        ap = -ap
    return BodyFrame(post, axis, ap, lat, frame.height, dict(frame.half_width), frame.bone_thr)


def _ct_midline(grid: WorkGrid, p: DetectionParams) -> np.ndarray:
    """x index of the mid-sagittal plane per axial row (smoothed)."""
    w = grid.array
    s = grid.spacing
    nz, ny, nx = w.shape
    xs = np.arange(nx)
    x0 = np.full(nz, np.nan)
    for kz in range(nz):
        body = w[kz] > p.ct_body_hu
        if body.sum() < 200:
            continue
        cx = ndimage.center_of_mass(body)[1]
        bone = w[kz] > p.ct_bone_hu
        c = cx
        for hw in (60.0, 40.0, 25.0):
            m = bone & (np.abs(xs - c) * s <= hw)[None, :]
            if m.sum() < 10:
                break
            c = ndimage.center_of_mass(m)[1]
        x0[kz] = c
    ok = np.isfinite(x0)
    if ok.sum() < 10:
        raise LevelDetectionError("no patient body found in the CT (is it a CT in Hounsfield units?)")
    x0 = np.interp(np.arange(nz), np.flatnonzero(ok), x0[ok])
    x0 = ndimage.median_filter(x0, size=max(3, int(40 / s)), mode="nearest")
    return ndimage.gaussian_filter1d(x0, 10 / s, mode="nearest")


def _shift_rows(a: np.ndarray, mm: float, s: float, fill: float) -> np.ndarray:
    """out[:, y] = a[:, y + mm/s] (columns are posterior-increasing y)."""
    k = int(round(mm / s))
    out = np.full_like(a, fill)
    ny = a.shape[1]
    if k > 0:
        out[:, : ny - k] = a[:, k:]
    elif k < 0:
        out[:, -k:] = a[:, : ny + k]
    else:
        out[:] = a
    return out


def _dp_track(score: np.ndarray, max_step: int, penalty: float) -> np.ndarray:
    """Column per row maximising the summed score with |step| <= max_step and a step penalty."""
    nz, ny = score.shape
    cost = score[0].copy()
    back = np.zeros((nz, ny), dtype=int)
    cols = np.arange(ny)
    for kz in range(1, nz):
        best = np.full(ny, -np.inf)
        arg = np.zeros(ny, dtype=int)
        for d in range(-max_step, max_step + 1):
            prev = np.full(ny, -np.inf)
            src = cols - d
            ok = (src >= 0) & (src < ny)
            prev[ok] = cost[src[ok]] - penalty * abs(d)
            better = prev > best
            best[better] = prev[better]
            arg[better] = src[better]
        cost = best + score[kz]
        back[kz] = arg
    path = np.zeros(nz, dtype=int)
    path[-1] = int(np.argmax(cost))
    for kz in range(nz - 1, 0, -1):
        path[kz - 1] = back[kz, path[kz]]
    return path


def _ct_curve(grid: WorkGrid, p: DetectionParams, voxel_mm: float) -> tuple[SpineCurve, bool]:
    """The spine curve on CT (the posterior wall of the body column, module docstring) and whether the bodies'
    marrow is so close to soft tissue that their walls are the outer edges of the cortex
    (:func:`_cortex_regime`: the column's level over its bony rows (:func:`_column_level`) of the 12 mm in front
    of its track, the noise of the smoothed mid-sagittal slab there, and the voxel size)."""
    w = grid.array
    s = grid.spacing
    nz, ny, nx = w.shape
    x0 = _ct_midline(grid, p)
    half = max(1, int(round(p.slab_half_width_mm / s)))
    slab = np.zeros((nz, ny), dtype=np.float64)
    for kz in range(nz):
        xi = np.clip(np.arange(int(round(x0[kz])) - half, int(round(x0[kz])) + half + 1), 0, nx - 1)
        slab[kz] = w[kz][:, xi].mean(axis=1)
    c = np.clip(slab, -200, 600)
    column = ndimage.uniform_filter1d(c, max(3, int(20 / s)), axis=1)
    canal = ndimage.uniform_filter1d(c, max(3, int(8 / s)), axis=1)
    post = ndimage.maximum_filter(c, size=(max(3, int(20 / s)), 1))
    post = ndimage.maximum_filter1d(post, max(3, int(25 / s)), axis=1)
    behind = _shift_rows(canal, p.canal_offset_mm, s, 600.0)
    post_b = _shift_rows(post, 2 * p.canal_offset_mm, s, -200.0)
    score = np.clip(column, -100, 250) - np.clip(behind, -100, 250) + 0.5 * np.clip(post_b, -100, 500)
    score = ndimage.uniform_filter1d(score, max(3, int(10 / s)), axis=0)
    track = _dp_track(score, max_step=2, penalty=20.0)
    # posterior boundary of the column: where the intensity falls to the canal level behind the track
    sm = ndimage.gaussian_filter(slab, 0.7)
    pb = np.zeros(nz)
    lo_c = max(1, int(12 / s))
    col = np.array([np.median(sm[kz, max(track[kz] - lo_c, 0): track[kz] + 1]) for kz in range(nz)])
    # fatty or osteoporotic marrow (the column's typical value hardly above soft tissue, the cortex well above
    # the noise): the wall is the outer edge of the cortex, not a fall through a threshold lost in the noise
    diffs = np.concatenate([np.diff(sm[kz, max(track[kz] - lo_c, 0): track[kz] + 1]) for kz in range(nz)])
    low_density = _cortex_regime(_column_level(col, p), _noise_sd(diffs), voxel_mm, p)
    for kz in range(nz):
        y = track[kz]
        col_v = col[kz]
        seg = sm[kz, y: y + int(25 / s)]
        if seg.size < 3:
            pb[kz] = y
            continue
        thr = (min(col_v, 250.0) + seg.min()) / 2
        if low_density:
            edge = _cortex_wall(seg, np.arange(seg.size) * s, max(thr, p.ct_soft_hu), p.ct_cortex_contrast_hu,
                                min_mm=0.0, max_mm=15.0)
            if edge is not None:
                pb[kz] = y + edge / s
                continue
        below = np.flatnonzero(seg < thr)
        pb[kz] = y + (below[0] if below.size else 0)
    pb = ndimage.median_filter(pb, size=max(3, int(p.ct_wall_median_mm / s)), mode="nearest")
    pb = ndimage.gaussian_filter1d(pb, p.ct_wall_smooth_mm / s, mode="nearest")
    kji = np.stack([np.arange(nz, dtype=float), pb, x0], axis=1)
    return SpineCurve.from_points(grid.lps_of(kji)), low_density


def _find_discs(img: np.ndarray, a_col: np.ndarray, s: float, p: DetectionParams,
                t_range: Optional[tuple[float, float]] = None) -> list[tuple[float, float]]:
    """Discs along the straightened column: list of (t index, tilt in radians), caudal to cranial: the best
    chain (:func:`_disc_chain`) of disc scores (:func:`planner.levels.discs.disc_scores`, bright endplates on
    both sides at ``ct_disc_flanks_mm``)."""
    best, tilt = disc_scores(img, a_col, s, p, p.ct_disc_flanks_mm)
    # the band and its flanks stay inside the image: where the column runs out of the field of view, the fill
    # beyond it reads as a disc darker than any (example_ct cut halfway down S1: its edge outscored every disc
    # and pushed the chain off by one body)
    a0, a1 = p.column_depth_mm
    column = img[:, (a_col >= a0) & (a_col <= a1)].mean(axis=1)
    outside = ndimage.binary_dilation(column < _data_edge_level(p), iterations=int(math.ceil(
        max(p.ct_disc_flanks_mm) / s)) + 1)
    best[outside] = -np.inf
    if t_range is not None:
        best[: max(0, int(t_range[0]))] = -np.inf
        best[int(t_range[1]) + 1:] = -np.inf
    chain = _disc_chain(best, s, p)
    return [(float(t), float(tilt[t])) for t in chain]


def _disc_chain(score: np.ndarray, s: float, p: DetectionParams) -> list[int]:
    """Best chain of disc positions (local maxima of ``score``) with vertebral spacing."""
    n = len(score)
    finite = np.isfinite(score)
    if not finite.any():
        return []
    sm = score.copy()
    sm[~finite] = -1e9
    peaks = [i for i in range(1, n - 1) if finite[i] and sm[i] >= sm[i - 1] and sm[i] >= sm[i + 1] and sm[i] > 0]
    if not peaks:
        return []
    vals = np.array([sm[i] for i in peaks])
    # a disc has to pay for itself: weak peaks join a chain only when they fit its rhythm
    base = float(np.percentile(vals, 30)) if len(vals) > 3 else 0.0
    gain = vals - base
    lo, hi = p.disc_spacing_min_mm / s, p.disc_spacing_max_mm / s
    best = gain.copy()
    prev = np.full(len(peaks), -1)
    for j in range(len(peaks)):
        for i in range(j):
            d = peaks[j] - peaks[i]
            if lo <= d <= hi and best[i] + gain[j] > best[j]:
                best[j] = best[i] + gain[j]
                prev[j] = i
    j = int(np.argmax(best))
    chain = []
    while j >= 0:
        chain.append(peaks[j])
        j = prev[j]
    return chain[::-1]


def _segments(discs: list[tuple[float, float]], n: int, s: float, p: DetectionParams
              ) -> list[tuple[float, float, int]]:
    """Vertebra segments (t_low, t_high, cut) between discs, plus one at each end: ``cut`` is +1 where the
    segment's top is the edge of the image rather than a disc a vertebra's spacing away, -1 where its
    bottom is, 0 otherwise."""
    ts = [d[0] for d in discs]
    segs = [(ts[i], ts[i + 1], 0) for i in range(len(ts) - 1)]
    typical = float(np.median(np.diff(ts))) if len(ts) > 1 else 35.0 / s
    top = min(n - 1.0, ts[-1] + typical)
    if top - ts[-1] > 0.5 * typical:
        segs.append((ts[-1], top, +1 if top < ts[-1] + typical - 1 else 0))
    bottom = max(0.0, ts[0] - typical)
    if ts[0] - bottom > 0.5 * typical:
        segs.insert(0, (bottom, ts[0], -1 if bottom > ts[0] - typical + 1 else 0))
    return segs


def _ct_landmarks(grid: WorkGrid, curve: SpineCurve, img: np.ndarray, a_col: np.ndarray, t_lo: float,
                  t_hi: float, p: DetectionParams, low_density: bool = False, cut: int = 0
                  ) -> Optional[tuple[Landmarks, Optional[BodyFrame]]]:
    """Landmarks of the body between the discs at curve rows ``t_lo`` and ``t_hi``, and its frame. A body cut
    by the edge of the image (``cut`` +1 at its top, -1 at its bottom; see :func:`_segments`) has no endplate
    there: its walls, centre and frame are those of the part in view, and that endplate is not measured."""
    s = grid.spacing
    mu_b = _marrow_level(img, a_col, t_lo, t_hi)
    if mu_b is None:
        return None
    body_rows = np.arange(int(math.ceil(t_lo + 0.25 * (t_hi - t_lo))), int(math.floor(t_hi - 0.25 * (t_hi - t_lo))) + 1)
    body_rows = body_rows[(body_rows >= 0) & (body_rows < img.shape[0])]
    prof = ndimage.gaussian_filter1d(img[body_rows].mean(axis=0), 0.8)
    thr = _ct_body_threshold(mu_b, p)
    cortex_only = low_density
    a_ant = _wall_in_profile(prof, a_col, thr, p.ct_bone_hu, start_mm=2.0, min_mm=15.0, max_mm=60.0,
                             cortex_contrast=p.ct_cortex_contrast_hu, cortex_only=cortex_only,
                             bridge=_wall_bridge(thr, p))
    if a_ant is None:
        return None
    sup = (_data_edge(img, a_col, curve, t_hi, a_ant / 2, s, -1, p) if cut > 0 else
           _endplate_point(img, a_col, curve, t_hi, a_ant / 2, s, toward=-1))
    inf = (_data_edge(img, a_col, curve, t_lo, a_ant / 2, s, +1, p) if cut < 0 else
           _endplate_point(img, a_col, curve, t_lo, a_ant / 2, s, toward=+1))
    t_mid = (t_lo + t_hi) / 2
    lateral = curve.frame(t_mid)[2]
    got = _refine_body(grid, sup, inf, lateral, curve.frame(t_mid)[3], thr, p, cortex_only=cortex_only)
    if got is None or not cut:
        return got
    lm, frame = got
    return lm.model_copy(update={"superior_endplate_lps" if cut > 0 else "inferior_endplate_lps": None}), frame


def _column_level(col: np.ndarray, p: DetectionParams) -> float:
    """The column's typical value from its per-row values ``col``: the median over the rows where it is denser
    than soft tissue (``ct_soft_hu``), i.e. where the track runs in the bones and discs; the rows below the
    sacrum, where it runs in the pelvis's soft tissue, would pull the median down by the share of the image
    they fill (example_ct cut to start at L2 read 95 HU over all rows, 126 HU over these, the whole scan 123 HU).
    The median over every row when none is denser than soft tissue."""
    bony = col >= p.ct_soft_hu
    return float(np.median(col[bony] if bony.any() else col))


def _cortex_regime(marrow: float, noise_sd: float, voxel_mm: float, p: DetectionParams) -> bool:
    """The walls are the cortex's outer edges when the marrow (``marrow``) lies less than
    ``ct_cortex_contrast_hu`` above soft tissue, that contrast is at least twice the image's noise (an image
    of noise has no cortex to follow) and the voxels (largest spacing ``voxel_mm``) are fine enough to show the
    cortex (``ct_cortex_max_voxel_mm``)."""
    return (marrow - p.ct_soft_hu < p.ct_cortex_contrast_hu and 2.0 * noise_sd < p.ct_cortex_contrast_hu
            and voxel_mm <= p.ct_cortex_max_voxel_mm)


def _noise_sd(differences: np.ndarray) -> float:
    """The image noise's standard deviation from differences of neighbouring samples (robust: their median
    absolute deviation, scaled for a Gaussian and for the difference of two samples)."""
    d = np.asarray(differences, dtype=float).ravel()
    if d.size == 0:
        return float("inf")
    return float(np.median(np.abs(d - np.median(d)))) / 0.6745 / math.sqrt(2.0)


def _marrow_level(img: np.ndarray, a_col: np.ndarray, t_lo: float, t_hi: float) -> Optional[float]:
    """The marrow level of the body between the discs at rows ``t_lo`` and ``t_hi`` of the straightened column:
    the median, over its middle half in height, of the mean profile between 6 and 20 mm in front of the
    posterior wall."""
    rows = np.arange(int(math.ceil(t_lo + 0.25 * (t_hi - t_lo))), int(math.floor(t_hi - 0.25 * (t_hi - t_lo))) + 1)
    rows = rows[(rows >= 0) & (rows < img.shape[0])]
    if rows.size == 0:
        return None
    prof = ndimage.gaussian_filter1d(img[rows].mean(axis=0), 0.8)
    return float(np.median(prof[(a_col >= 6) & (a_col <= 20)]))


def _wall_bridge(thr: float, p: DetectionParams) -> tuple[float, float]:
    """The ``bridge`` of :func:`_wall_in_profile` for the body threshold ``thr`` (``ct_wall_bridge_*``)."""
    return p.ct_wall_bridge_mm, thr - p.ct_wall_bridge_dip * (thr - p.ct_soft_hu)


def _ct_body_threshold(mu_body: float, p: DetectionParams) -> float:
    """Halfway between the body's marrow level and soft tissue (never closer than 20 HU to soft tissue)."""
    return (max(mu_body, p.ct_soft_hu + 40.0) + p.ct_soft_hu) / 2


def _wall_in_profile(prof: np.ndarray, pos_mm: np.ndarray, thr: float, bone_hu: float, *, start_mm: float,
                     min_mm: float, max_mm: float, max_gap_mm: float = 2.0,
                     cortex_contrast: Optional[float] = None, cortex_only: bool = False,
                     bridge: Optional[tuple[float, float]] = None) -> Optional[float]:
    """Outer edge of the body along a profile that starts inside it (positions increasing outward).

    Walks out while the value stays above ``thr`` (gaps up to ``max_gap_mm``: the basivertebral
    venous channel just inside the posterior wall is darker than marrow); if the run goes on more than
    6 mm beyond the last cortical peak and is bright there (a contrast-filled vessel against the body: a
    median at least ``cortex_contrast`` above ``thr``), stops at that peak's outer half-maximum instead. A
    dimmer run beyond a dense peak is the body's own fainter marrow (example_ct's L1 turned by 5 degrees:
    206 HU behind, 92-126 HU in front; stopping at the peak read the wall 10 mm short).

    With ``cortex_only`` (marrow known to be too close to soft tissue for the walk: fatty, osteoporotic bone) the
    wall is the outer edge of the cortex (:func:`_cortex_wall`) instead of the walk's end.

    ``bridge`` (most mm, lowest value), with ``cortex_contrast``: a walk that ended on marrow fainter than ``thr``
    goes on to the outer edge of a cortical line at most that far beyond it, when the profile between never falls
    below the lowest value (marrow, not the soft tissue around the body)."""
    vessel_hu = -np.inf if cortex_contrast is None else thr + cortex_contrast
    found = None if cortex_only else _walk_wall(prof, pos_mm, thr, bone_hu, start_mm=start_mm, min_mm=min_mm,
                                                max_mm=max_mm, max_gap_mm=max_gap_mm, vessel_hu=vessel_hu)
    if found is None and cortex_contrast is not None and cortex_only:
        found = _cortex_wall(prof, pos_mm, thr, cortex_contrast, min_mm=min_mm, max_mm=max_mm)
    if found is not None and bridge is not None and cortex_contrast is not None and found < max_mm:
        found = _bridged_wall(prof, pos_mm, found, thr, cortex_contrast, reach_mm=min(bridge[0], max_mm - found),
                              floor=bridge[1])
    return found


def _bridged_wall(prof: np.ndarray, pos_mm: np.ndarray, edge_mm: float, thr: float, contrast: float, *,
                  reach_mm: float, floor: float) -> float:
    """The bridge of :func:`_wall_in_profile`: the outer edge of the first cortical line within ``reach_mm``
    beyond ``edge_mm`` that the profile reaches without falling below ``floor``; else ``edge_mm``."""
    ahead = np.flatnonzero((pos_mm > edge_mm) & (pos_mm <= edge_mm + reach_mm))
    if ahead.size == 0:
        return edge_mm
    low = ahead[prof[ahead] < floor]
    end = int(low[0]) if low.size else int(ahead[-1]) + 1
    if end <= ahead[0]:
        return edge_mm
    peaks = [i for i in range(int(ahead[0]), min(end, len(prof) - 1))
             if prof[i] >= thr + contrast and prof[i] >= prof[i - 1] and prof[i] >= prof[i + 1]]
    if not peaks:
        return edge_mm
    pk = peaks[0]
    wall = _cortex_wall(prof, pos_mm, thr, contrast, min_mm=float(pos_mm[pk]), max_mm=float(pos_mm[pk]))
    return edge_mm if wall is None else wall


def _cortex_wall(prof: np.ndarray, pos_mm: np.ndarray, thr: float, contrast: float, *, min_mm: float,
                 max_mm: float) -> Optional[float]:
    """The outer edge of the outermost cortical line between ``min_mm`` and ``max_mm``: a local maximum at
    least ``contrast`` above ``thr`` after which the profile falls below ``thr`` within 4 mm; the edge is
    where it falls through halfway between the peak and ``thr`` (sub-sample). None when there is none."""
    step = float(abs(pos_mm[1] - pos_mm[0])) if len(pos_mm) > 1 else 1.0
    reach = max(1, int(round(4.0 / step)))
    for i in range(len(prof) - 2, 0, -1):
        if not (min_mm <= pos_mm[i] <= max_mm and prof[i] >= thr + contrast
                and prof[i] >= prof[i - 1] and prof[i] >= prof[i + 1]):
            continue
        after = prof[i + 1: i + 1 + reach]
        if not np.any(after < thr):
            continue
        half = 0.5 * (prof[i] + thr)
        k = i
        while k + 1 < len(prof) and prof[k + 1] >= half:
            k += 1
        if k + 1 >= len(prof):
            return None
        v0, v1 = prof[k], prof[k + 1]
        return float(pos_mm[k] + step * (v0 - half) / (v0 - v1)) if v0 != v1 else float(pos_mm[k])
    return None


def _walk_wall(prof: np.ndarray, pos_mm: np.ndarray, thr: float, bone_hu: float, *, start_mm: float,
               min_mm: float, max_mm: float, max_gap_mm: float, vessel_hu: float) -> Optional[float]:
    """The threshold walk of :func:`_wall_in_profile` (``vessel_hu``: the least median of a run beyond the last
    cortical peak that is taken for a vessel)."""
    step = float(abs(pos_mm[1] - pos_mm[0])) if len(pos_mm) > 1 else 1.0
    inside = prof > thr
    last_in = None
    gap = 0.0
    # start from the brightest point near the start (surely inside the body)
    near = np.flatnonzero((pos_mm >= start_mm) & (pos_mm <= start_mm + 15.0))
    if near.size == 0 or not inside[near].any():
        return None
    i0 = near[int(np.argmax(prof[near]))]
    for i in np.flatnonzero(pos_mm >= pos_mm[i0]):
        if pos_mm[i] > max_mm + 10:
            break
        if inside[i]:
            last_in = i
            gap = 0.0
        else:
            gap += step
            if gap > max_gap_mm and last_in is not None:
                break
    if last_in is None:
        return None
    peaks = [i for i in range(1, last_in + 1) if min_mm <= pos_mm[i] <= max_mm and prof[i] >= bone_hu
             and prof[i] >= prof[i - 1] and prof[i] >= prof[min(i + 1, len(prof) - 1)]]
    i_end = last_in
    if peaks and (pos_mm[last_in] - pos_mm[peaks[-1]]) > 6.0:
        pk = peaks[-1]
        k = pk
        while k + 1 < len(prof) and prof[k + 1] > 0.5 * (prof[pk] + thr):
            k += 1
        if k < last_in and float(np.median(prof[k + 1: last_in + 1])) >= vessel_hu:
            i_end = k
    # sub-voxel: interpolate where the profile crosses thr after i_end
    edge = float(pos_mm[i_end])
    if i_end + 1 < len(prof) and prof[i_end] != prof[i_end + 1] and prof[i_end + 1] < thr <= prof[i_end]:
        edge += step * (prof[i_end] - thr) / (prof[i_end] - prof[i_end + 1])
    if edge < min_mm:
        return None
    return min(edge, max_mm)


def _refine_body(grid: WorkGrid, sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray, anterior_hint: np.ndarray,
                 thr: float, p: DetectionParams, *, fill: float = -1024.0, bone: Optional[float] = None,
                 pedicle_thr: Optional[float] = None, cortex_only: bool = False
                 ) -> Optional[tuple[Landmarks, Optional[BodyFrame]]]:
    """Walls on the mid-height line, body centre, endplates moved onto the body's AP middle, and the body's
    frame for the pedicle search (its half-width only on the sides whose edge was found).

    ``grid`` holds CT values (``thr`` between marrow and soft tissue, ``bone`` the cortex level) or,
    for MRI, a marrow-likeness map that is positive inside marrow (``thr`` 0, ``bone`` None -> no
    cortex-peak logic)."""
    bone_v = p.ct_bone_hu if bone is None else bone
    contrast = p.ct_cortex_contrast_hu if bone is None else None
    frame = body_frame(sup, inf, lateral, anterior_hint)
    if frame is None:
        return None
    axis, height, lat, ap, mid = frame
    pos = np.arange(0.0, 70.0 + 1e-6, grid.spacing / 2)
    hw = (p.slab_half_width_mm, min(3.0, 0.15 * height))
    fwd = line_profile(grid, mid, ap, (lat, axis), pos, hw, fill)
    back = line_profile(grid, mid, -ap, (lat, axis), pos, hw, fill)
    bridge = _wall_bridge(thr, p) if contrast is not None else None
    a_front = _wall_in_profile(fwd, pos, thr, bone_v, start_mm=0.0, min_mm=5.0, max_mm=50.0, cortex_contrast=contrast,
                               cortex_only=cortex_only, bridge=bridge)
    # behind the body lies the canal (CSF, fat): split halfway between the marrow and the canal level
    marrow = float(np.median(np.concatenate([fwd[pos <= 8], back[pos <= 8]])))
    canal = float(np.percentile(back[pos <= 40], 10))
    thr_back = min(thr, 0.5 * (marrow + canal)) if marrow > canal else thr
    a_back = _wall_in_profile(back, pos, thr_back, 1e9, start_mm=0.0, min_mm=2.0, max_mm=40.0, max_gap_mm=6.0,
                              cortex_contrast=contrast, cortex_only=cortex_only)
    if a_front is None or a_back is None:
        return None
    post = mid - a_back * ap
    ant = mid + a_front * ap
    center = 0.5 * (post + ant)
    # centre the midline on the body: its left and right edges at mid-height and mid-depth
    hw_lr = (min(4.0, 0.2 * (a_front + a_back)), min(3.0, 0.15 * height))
    left = _wall_in_profile(line_profile(grid, center, lat, (ap, axis), pos, hw_lr, fill), pos, thr, bone_v,
                            start_mm=0.0, min_mm=8.0, max_mm=40.0, max_gap_mm=6.0, cortex_contrast=contrast,
                            cortex_only=cortex_only, bridge=bridge)
    right = _wall_in_profile(line_profile(grid, center, -lat, (ap, axis), pos, hw_lr, fill), pos, thr, bone_v,
                             start_mm=0.0, min_mm=8.0, max_mm=40.0, max_gap_mm=6.0, cortex_contrast=contrast,
                            cortex_only=cortex_only, bridge=bridge)
    # an edge at the end of the profile was not found (the sacral alae continue the body sideways)
    half = {+1: left if left is not None and left < p.body_max_half_width_mm else None,
            -1: right if right is not None and right < p.body_max_half_width_mm else None}
    if (left is not None and right is not None and max(left, right) < p.body_max_half_width_mm
            and abs(left - right) <= 2 * p.max_midline_correction_mm):
        shift = 0.5 * (left - right) * lat
        mid, post, ant, center, sup, inf = (v + shift for v in (mid, post, ant, center, sup, inf))
        half = {+1: 0.5 * (left + right), -1: 0.5 * (left + right)}
    sup_c = center + ((sup - center) @ axis) * axis
    inf_c = center + ((inf - center) @ axis) * axis
    lm = Landmarks(body_center_lps=lps_tuple(center), superior_endplate_lps=lps_tuple(sup_c), inferior_endplate_lps=lps_tuple(inf_c),
                   posterior_wall_lps=lps_tuple(post), anterior_wall_lps=lps_tuple(ant))
    frame = BodyFrame(post, axis, ap, lat, height, {k: float(v) for k, v in half.items() if v is not None},
                      max(0.75 * bone_v, thr) if pedicle_thr is None else pedicle_thr)
    return lm, frame


def _column_walk(img: np.ndarray, a_col: np.ndarray, t_start: float, a_mid: float, s: float, toward: int
                 ) -> tuple[int, np.ndarray]:
    """(the start row, the smoothed column profile at depth ``a_mid`` (+-4 mm) read from it over 15 mm toward
    ``toward``: +1 upward, -1 downward; held at the image's end rows)."""
    ia = int(np.argmin(np.abs(a_col - a_mid)))
    prof = img[:, max(ia - int(4 / s), 0): ia + int(4 / s) + 1].mean(axis=1)
    t0 = int(round(t_start))
    idx = np.clip(t0 + toward * np.arange(0, int(15 / s)), 0, len(prof) - 1)
    return t0, ndimage.gaussian_filter1d(prof, 0.8)[idx]


def _endplate_point(img: np.ndarray, a_col: np.ndarray, curve: SpineCurve, t_disc: float, a_mid: float,
                    s: float, toward: int) -> np.ndarray:
    """Endplate next to the disc at ``t_disc``: from the disc centre toward the body (``toward`` = +1
    upward, -1 downward) to where the column profile at ``a_mid`` rises halfway to the body level."""
    t0, vals = _column_walk(img, a_col, t_disc, a_mid, s, toward)
    lo = vals[: max(2, int(2 / s))].min()
    hi = np.percentile(vals, 80)
    half = (lo + hi) / 2
    k = int(np.argmax(vals >= half)) if np.any(vals >= half) else 0
    if k > 0:
        v0, v1 = vals[k - 1], vals[k]
        frac = (half - v0) / (v1 - v0) if v1 != v0 else 0.0
        t = t0 + toward * (k - 1 + frac)
    else:
        t = float(t0)
    return curve.to_lps(np.array(t), np.array(a_mid), np.array(0.0))


def _data_edge_level(p: DetectionParams, fill: float = -1024.0) -> float:
    """The value halfway from the fill outside the image to soft tissue: a column whose band reads below it has
    left the image. Bone, discs and soft tissue read far above it; a disc full of gas (the vacuum phenomenon,
    -500 to -900 HU where the gas is) could come near it across the whole band, and would then be missed
    like the edge: the body spanning it gets the note that its height does not fit its neighbours'."""
    return 0.5 * (fill + p.ct_soft_hu)


def _data_edge(img: np.ndarray, a_col: np.ndarray, curve: SpineCurve, t_edge: float, a_mid: float, s: float,
               toward: int, p: DetectionParams, fill: float = -1024.0) -> np.ndarray:
    """Where the image ends along the column at ``a_mid``: from the curve row ``t_edge`` at the end of the
    image toward the body (``toward`` +1 upward, -1 downward), the first row whose value is at least halfway
    from the fill outside the image to soft tissue (``ct_soft_hu``). A body cut by the edge of the image ends
    there, not at an endplate."""
    t0, vals = _column_walk(img, a_col, t_edge, a_mid, s, toward)
    inside = vals >= _data_edge_level(p, fill)
    k = int(np.argmax(inside)) if inside.any() else 0
    return curve.to_lps(np.array(float(t0 + toward * k)), np.array(a_mid), np.array(0.0))


def _ct_has_alae(grid: WorkGrid, curve: SpineCurve, v: VertebraFound, p: DetectionParams) -> bool:
    """True if bone connected to the body reaches beyond ``ala_min_halfwidth_mm`` on both sides in front of
    the posterior wall (sacral alae) in planes across the spine covering at least ``ala_min_run_mm`` of the
    middle 40 % of its height. Lumbar transverse processes arise behind the wall and are ignored."""
    s = grid.spacing
    lm = v.landmarks
    depth = float(np.linalg.norm(np.subtract(lm.anterior_wall_lps, lm.posterior_wall_lps)))
    t = np.arange(v.t_low + 0.3 * (v.t_high - v.t_low), v.t_high - 0.3 * (v.t_high - v.t_low) + 1e-6, 1.0)
    a = np.arange(0.0, depth + 15.0 + 1e-6, s)
    x = np.arange(-100.0, 100.0 + 1e-6, s)
    planes = grid.sample(curve.to_lps(t[:, None, None], a[None, :, None], x[None, None, :]), fill=-1024.0)
    core = planes[:, (a >= 0.3 * depth) & (a <= 0.7 * depth)][:, :, np.abs(x) <= 8]
    thr = max(0.5 * (float(np.median(core)) + p.ct_soft_hu), p.ct_soft_hu + 50.0)
    seed = (np.abs(x) <= 8)[None, :] & ((a >= 0.3 * depth) & (a <= 0.7 * depth))[:, None]
    st = np.ones((max(3, int(3 / s) + 1),) * 2, bool)
    reach = []
    for plane in planes:
        mask = ndimage.binary_closing(plane > thr, structure=st)
        lab, _ = ndimage.label(mask)
        ids = set(np.unique(lab[seed]).tolist()) - {0}
        if not ids:
            reach.append(0.0)
            continue
        comp = np.isin(lab, list(ids))
        dense = comp & (plane > p.ct_bone_hu)
        cols = np.flatnonzero(dense.any(axis=0))
        xs = x[cols]
        left = xs[xs > 0].max() if np.any(xs > 0) else 0.0
        right = -xs[xs < 0].min() if np.any(xs < 0) else 0.0
        reach.append(min(left, right))
    return bool(np.count_nonzero(np.asarray(reach) >= p.ala_min_halfwidth_mm) * s >= p.ala_min_run_mm)
