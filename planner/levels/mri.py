"""Levels on a sagittal MR, by the finder ``DetectionParams.mr_finder`` names.

"classical" (the default): from two marks inside named bodies, the column between and beyond them, the
discs (their count known from the names) and each body measured inside its cortical shell
(:func:`_detect_mr_classical`). "learned": the bodies from the learned body finder
(:mod:`planner.levels.mri_bodies`), named from two marks or counted from the sacrum, their pedicles measured
in the acquired slices by the classical measurement seeded from the found endplates
(:func:`_detect_mr_learned`)."""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Landmarks, Point3
from planner.levels.params import DetectionParams
from planner.levels.discs import disc_scores
from planner.levels.mri_bodies import MODEL_PATH, default_net, find_bodies, name_from_marks, name_without_marks
from planner.levels.results import LevelDetectionError, lps_tuple, VertebraFound
from planner.levels.naming import PROPOSED_ORDER, name_sequence
from planner.levels.grid import line_profile, SpineCurve, work_grid, WorkGrid, working_volume, body_frame
from planner.levels.profiles import cortex_line, dip_near, first_dip, mirror_midline, NativeSlices, surface
from planner.levels.pedicles import (
    axial_pedicle_x,
    mr_pedicle,
    mr_pedicle_native,
    posterior_wall_line,
    symmetric_pedicles,
)


def detect_mr(volume: Volume, hints: Mapping[str, np.ndarray], p: DetectionParams, transitional: Optional[str],
               modality: str, companions: Sequence[Volume] = ()
               ) -> tuple[list[VertebraFound], list[str], list[str]]:
    """(vertebrae, notes, warnings) on a sagittal MR with the finder ``p.mr_finder`` names: "classical"
    (two marks; discs along the marrow column, :func:`_detect_mr_classical`) or "learned" (the learned body
    finder; two marks or none, marks checked against the image, :func:`_detect_mr_learned`)."""
    if p.mr_finder == "learned":
        return _detect_mr_learned(volume, hints, p, transitional, modality, companions)
    if p.mr_finder != "classical":
        raise LevelDetectionError(f"unknown MRI level finder {p.mr_finder!r} (classical or learned)")
    found, notes = _detect_mr_classical(volume, hints, p, transitional, modality, companions)
    return found, notes, []


def _detect_mr_learned(volume: Volume, hints: Mapping[str, np.ndarray], p: DetectionParams, transitional: Optional[str],
               modality: str, companions: Sequence[Volume] = ()
               ) -> tuple[list[VertebraFound], list[str], list[str]]:
    """(vertebrae, notes, warnings) on a sagittal MR: the vertebral bodies found by the learned body finder
    (:mod:`planner.levels.mri_bodies`), named from two marks inside named bodies (e.g. S1 and L1, or L1
    and L5) or, without marks, counted from the sacrum as a proposal to confirm. Body landmarks come from
    the body finder (sharpened on the cortical lines where those lie close to it, see :func:`_refined`); the
    pedicles are measured in the acquired slices (:func:`_mr_measure_body`), seeded by the body's endplates
    and axis."""
    if len(hints) == 1:
        raise LevelDetectionError("on MRI the levels need two marks, e.g. inside S1 and inside L1 (one was given), "
                                  "or none for a proposal counted from the sacrum")
    seq = name_sequence(transitional)
    net_params = p.mr_bodies
    net = default_net(str(net_params.model_path or MODEL_PATH), net_params.threads)
    scan = find_bodies(volume, list(hints.values()), net=net, params=net_params,
                       max_voxels=p.max_native_voxels)
    if not scan.bodies:
        raise LevelDetectionError("no vertebral body was found in the image")
    if hints:
        names = name_from_marks(scan, dict(hints), seq, net_params, transitional)
    else:
        names = name_without_marks(scan, seq, net_params, transitional)
        scan.notes.insert(0, "levels counted from the sacrum without marks: a proposal, confirm the names")
    # a float32 copy of the region of the bodies for the measurements in the acquired slices (bounded)
    cents = np.array([b.centre_lps for b in scan.bodies])
    region = (cents.min(0) - 60.0, cents.max(0) + 60.0)
    volume = working_volume(volume, region, p.max_native_voxels)
    companions = [working_volume(c, region, p.max_native_voxels) for c in companions if _overlaps(c, region)]
    # the coarse pedicles that seed the measurement in the acquired slices are found on a working grid
    # scaled to the marrow signal of the highest and lowest bodies
    grid = work_grid(volume, p.mr_work_spacing_mm, fill=0.0, bounds_lps=region, max_voxels=p.max_work_voxels)
    solid = [b for b in scan.bodies if not b.faint]
    ratio = _mr_ratio_grid(grid, solid[-1].centre_lps, solid[0].centre_lps) if len(solid) > 1 else None
    notes: list[str] = []
    verts: list[VertebraFound] = []
    for body, name in zip(scan.bodies, names):
        if name not in PROPOSED_ORDER:
            continue
        lm = body.landmarks
        if body.partial:
            notes.append(f"{name} is cut by the edge of the image: its landmarks are of the part in view")
        peds: tuple[Optional[Point3], Optional[Point3]] = (None, None)
        if "superior_endplate_lps" in lm and "inferior_endplate_lps" in lm:
            axis = lm["superior_endplate_lps"] - lm["inferior_endplate_lps"]
            axis = axis / np.linalg.norm(axis)
            lateral = np.array([1.0, 0.0, 0.0])
            anterior = np.cross(lateral, axis)
            sup, inf = lm["superior_endplate_lps"], lm["inferior_endplate_lps"]
            coarse = None if ratio is None else _mr_refine_body(ratio, sup, inf, lateral, anterior, p, name=name,
                                                                 axis_hint=axis)
            seeds = (None, None) if coarse is None else (coarse.pedicle_left_lps, coarse.pedicle_right_lps)
            measured = _mr_measure_body(volume, sup, inf, lateral, anterior, p, name=name, axis_hint=axis,
                                        coarse_pedicles=seeds, companions=companions)
            if measured is not None:
                lm = _refined(lm, measured, net_params.refine_mm)
                if name != "S1":
                    peds = (measured.pedicle_left_lps, measured.pedicle_right_lps)
        if name == "S1":
            # S1's pedicles merge into the sacral alae: on MRI no separate pedicle is seen to measure
            notes.append("S1: the pedicles merge into the sacral alae and are not measured on MRI; place them by hand")
        landmarks = Landmarks(**{k: lps_tuple(v) for k, v in lm.items()},
                              pedicle_left_lps=peds[0], pedicle_right_lps=peds[1])
        verts.append(VertebraFound(0.0, 0.0, landmarks, name=name, sacral=name == "S1", partial=body.partial))
    return verts, scan.notes + notes, scan.warnings


def _refined(lm: dict[str, np.ndarray], measured: Landmarks, tol_mm: float) -> dict[str, np.ndarray]:
    """The body finder's landmarks with each wall and endplate replaced by the one measured on its cortical
    line in the acquired slices where that lies within ``tol_mm`` of it (a sharper edge where the image
    shows one; the finder's edge elsewhere); the centre between them when all four were replaced."""
    out = dict(lm)
    edges = ("superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps", "anterior_wall_lps")
    taken = 0
    for k in edges:
        m = getattr(measured, k)
        if m is not None and k in lm and float(np.linalg.norm(np.asarray(m) - lm[k])) <= tol_mm:
            out[k] = np.asarray(m, float)
            taken += 1
    if taken == len(edges) and measured.body_center_lps is not None:
        out["body_center_lps"] = np.asarray(measured.body_center_lps, float)
    return out


def _detect_mr_classical(volume: Volume, hints: Mapping[str, np.ndarray], p: DetectionParams, transitional: Optional[str],
               modality: str, companions: Sequence[Volume] = ()) -> tuple[list[VertebraFound], list[str]]:
    """Levels on a sagittal MR from two marks inside named bodies (e.g. S1 and L1).

    The marks give the marrow signal and the names; the bodies between them are found along the
    spine as marrow segments separated by discs (their number is known from the names), and each
    body is measured inside its cortical shell, which is dark on every sequence."""
    if not hints:
        raise LevelDetectionError(f"on {modality or 'MR'} images the levels need two marks: a point inside "
                                  "S1 and a point inside L1")
    if len(hints) < 2:
        raise LevelDetectionError("on MRI the levels need two marks, e.g. inside S1 and inside L1 (one was given)")
    seq = name_sequence(transitional)
    ordered = sorted(hints.items(), key=lambda kv: seq.index(kv[0]))  # cranial first
    (name_hi, p_hi), (name_lo, p_lo) = ordered[0], ordered[-1]
    n_gaps = seq.index(name_lo) - seq.index(name_hi)
    if n_gaps < 1:
        raise LevelDetectionError("the two marks name the same level")
    chord = p_hi - p_lo
    length = float(np.linalg.norm(chord))
    if not (p.disc_spacing_min_mm * n_gaps * 0.8 <= length <= p.disc_spacing_max_mm * n_gaps):
        raise LevelDetectionError(f"the marks {name_hi} and {name_lo} are {length:.0f} mm apart, which does not fit "
                                  f"{n_gaps} vertebra(e) between them; check which bodies were marked")
    if chord[2] <= 0:
        raise LevelDetectionError(f"the {name_hi} mark lies below the {name_lo} mark; check which bodies were "
                                  "marked")
    c_hat = chord / length
    ext = p.mr_extend_mm
    margin = np.array([60.0, 70.0, 40.0])
    # a float32 copy of the region searched (the marks may move up to 30 mm when snapped to the body's
    # middle), bounded in size whatever the input's size
    ends = np.stack([p_lo - ext * c_hat, p_hi + ext * c_hat, p_lo, p_hi])
    region = (ends.min(0) - margin - 30.0, ends.max(0) + margin + 30.0)
    volume = working_volume(volume, region, p.max_native_voxels)
    companions = [working_volume(c, region, p.max_native_voxels) for c in companions
                  if _overlaps(c, region)]
    # a click anywhere inside the body: move it to the body's AP middle and midsagittal plane first
    p_lo, p_hi = (_snap_mark(volume, q, c_hat, p) for q in (p_lo, p_hi))
    chord = p_hi - p_lo
    length = float(np.linalg.norm(chord))
    c_hat = chord / length
    ends = np.stack([p_lo - ext * c_hat, p_hi + ext * c_hat, p_lo, p_hi])
    grid = work_grid(volume, p.mr_work_spacing_mm, fill=0.0, bounds_lps=(ends.min(0) - margin, ends.max(0) + margin),
                     max_voxels=p.max_work_voxels)
    s = grid.spacing
    ratio = _mr_ratio_grid(grid, p_lo, p_hi)
    # the curve through the body centres, refined from the chord
    ts = np.arange(0.0, length + 2 * ext + 1e-6, s)
    centre = (p_lo - ext * c_hat)[None, :] + ts[:, None] * c_hat[None, :]
    curve = SpineCurve.from_points(centre)
    for _ in range(3):
        curve = _mr_recentre(ratio, curve, np.arange(len(curve)) * s, curve.nearest_t(p_lo) * s,
                             curve.nearest_t(p_hi) * s, p).resampled(s)
    t_lo, t_hi = curve.nearest_t(p_lo) * s, curve.nearest_t(p_hi) * s
    a_col = np.arange(-45.0, 45.0 + 1e-6, s)
    x_mm = np.arange(-p.slab_half_width_mm, p.slab_half_width_mm + 1e-6, s)
    img = curve.straighten(ratio, a_col, x_mm, fill=0.0)
    dev = -np.minimum(np.abs(np.log(np.clip(img, 0.05, 20.0))), 2.0)  # 0 in marrow, negative elsewhere
    pr = p.mr_column_half_mm
    i_lo, i_hi = t_lo / s, t_hi / s
    discs = _mr_discs(dev, a_col, s, p, (-pr, pr), i_lo, i_hi, n_gaps)
    if len(discs) != n_gaps:
        raise LevelDetectionError(f"found {len(discs)} of the {n_gaps} discs between {name_hi} and {name_lo}")
    # discs beyond the marks: one above the upper mark (and the next above it), one below the lower
    above = _mr_discs(dev, a_col, s, p, (-pr, pr), discs[-1][0] + p.disc_spacing_min_mm / s, len(curve) - 1, 2,
                      exact=False)
    below = _mr_discs(dev, a_col, s, p, (-pr, pr), 0, discs[0][0] - p.disc_spacing_min_mm / s, 1, exact=False,
                      from_top=True)
    all_discs = below + discs + above
    # each disc's two endplates: the cortical lines (dark on every sequence) that bracket it
    plates = [_mr_disc_plates(ratio, curve, t, p) for t, _ in all_discs]
    i_name_lo = seq.index(name_lo)
    notes: list[str] = []
    verts: list[VertebraFound] = []
    idx_lo = len(below)  # index in all_discs of the disc just above the lower mark
    for k in range(len(all_discs) + 1):
        # segment k lies between disc k-1 and disc k; the lower marked body is segment idx_lo
        j = i_name_lo - (k - idx_lo)
        if not 0 <= j < len(seq):
            continue
        name = seq[j]
        lo_t = all_discs[k - 1][0] if k >= 1 else None
        hi_t = all_discs[k][0] if k < len(all_discs) else None
        if name not in PROPOSED_ORDER:
            continue
        lm = _mr_landmarks(ratio, curve, dev, a_col, lo_t, hi_t, s, p, name=name, volume=volume, companions=companions,
                           inf_t=plates[k - 1][1] if k >= 1 else None,
                           sup_t=plates[k][0] if k < len(all_discs) else None)
        if lm is None:
            notes.append(f"{name} was found but its landmarks could not be measured; place them by hand")
            continue
        if name == "S1":
            # S1's pedicles merge into the sacral alae: on MRI no separate pedicle is seen to measure
            lm = lm.model_copy(update={"pedicle_left_lps": None, "pedicle_right_lps": None})
            notes.append("S1: the pedicles merge into the sacral alae and are not measured on MRI; place them by hand")
        verts.append(VertebraFound(lo_t or 0.0, hi_t or 0.0, lm, name=name, partial=lo_t is None or hi_t is None))
    return verts[::-1], notes


def _overlaps(volume: Volume, bounds_lps: tuple[np.ndarray, np.ndarray]) -> bool:
    """True if the volume's bounding box meets the LPS box."""
    corners = volume.corners_lps()
    return bool(np.all(corners.max(0) >= bounds_lps[0]) and np.all(corners.min(0) <= bounds_lps[1]))


def _snap_mark(volume: Volume, mark: np.ndarray, axis: np.ndarray, p: DetectionParams) -> np.ndarray:
    """A mark inside a vertebral body moved, at its height, to the middle between the body's front and back
    walls and onto the vertebra's midsagittal plane of symmetry (so that where the user clicks inside the
    body does not matter); the mark itself when the walls are not found."""
    lat = np.array([1.0, 0.0, 0.0]) - axis * axis[0]
    lat /= np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap[1] > 0:  # LPS: anterior is -y
        ap = -ap
    r = np.arange(-3.0, 3.0 + 1e-6, 1.5)
    ball = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    marrow = float(np.median(volume.sample(mark + ball)))
    if not marrow > 0:
        return mark
    ns = NativeSlices(volume, mark, lat, ap, axis, marrow)
    pos = np.arange(0.0, 50.0 + 1e-6, 0.25)
    out = []
    for sgn in (+1, -1):
        found = []
        for dh in (-4.0, -2.0, 0.0, 2.0, 4.0):
            for dx in (-1.5, 0.0, 1.5):
                prof = ns.sample(dx, sgn * pos, dh)
                e = cortex_line(prof[pos >= 2.0], pos[pos >= 2.0], p)
                if e is not None:
                    found.append(surface(e, "wall"))
        if len(found) < 5:
            return mark
        out.append(float(np.median(found)))
    a_front, a_back = out
    depth = a_front + a_back
    if not p.mr_body_depth_mm[0] <= depth <= p.mr_body_depth_mm[1]:
        return mark
    a_mid = 0.5 * (a_front - a_back)
    c = None
    if ns.sagittal:
        c = mirror_midline(ns, np.arange(-a_back - 25.0, a_front + 3.0 + 1e-6, 1.5), np.arange(-6.0, 6.0 + 1e-6, 1.5),
                            search_mm=8.0)
    return mark + a_mid * ap + (0.0 if c is None or abs(c) > 7.5 else c) * lat


def _marrow_level(grid: WorkGrid, mark: np.ndarray) -> float:
    """The normal marrow signal of the body around a mark: the most common value in a box of 16 x 16 x 30 mm
    around it (a Modic zone or the basivertebral veins beside the mark take up less of the body than its
    normal marrow; a median of the values next to the mark would follow them)."""
    r_xy = np.arange(-8.0, 8.0 + 1e-6, 2.0)
    r_z = np.arange(-15.0, 15.0 + 1e-6, 1.5)
    box = np.stack(np.meshgrid(r_xy, r_xy, r_z, indexing="ij"), -1).reshape(-1, 3)
    near = grid.sample(mark[None, :] + box[np.linalg.norm(box / [8.0, 8.0, 15.0], axis=1) <= 0.5])
    med = float(np.median(near))
    vals = grid.sample(mark[None, :] + box)
    if med <= 0:
        return med
    edges = np.arange(0.3, 2.0 + 1e-6, 0.02) * med
    hist, _ = np.histogram(vals, bins=edges)
    hist = ndimage.gaussian_filter1d(hist.astype(float), 2.0)
    mode = float(0.5 * (edges[int(np.argmax(hist))] + edges[int(np.argmax(hist)) + 1]))
    # near the mark the marrow is normal unless the mark lies in a Modic zone: then take the box's mode
    return med if abs(med / mode - 1.0) <= 0.15 else mode


def _mr_ratio_grid(grid: WorkGrid, p_lo: np.ndarray, p_hi: np.ndarray) -> WorkGrid:
    """The working grid divided by the marrow signal, interpolated between the two marks."""
    s = grid.spacing
    m_lo, m_hi = _marrow_level(grid, p_lo), _marrow_level(grid, p_hi)
    if m_lo <= 0 or m_hi <= 0:
        raise LevelDetectionError("a mark lies where the image has no signal; click inside the vertebral body")
    nz, ny, nx = grid.shape
    # interpolate along the chord (projection of each grid point); done per axis-aligned plane for speed
    c = p_hi - p_lo
    L2 = float(c @ c)
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij", sparse=True)
    lps0 = grid.origin_lps
    proj = ((lps0[0] + xx * s - p_lo[0]) * c[0] + (lps0[1] + yy * s - p_lo[1]) * c[1]
            + (lps0[2] + zz * s - p_lo[2]) * c[2]) / L2
    f = np.clip(proj, -0.5, 1.5)
    marrow = m_lo + (m_hi - m_lo) * f
    return WorkGrid((grid.array / np.maximum(marrow, 1e-6)).astype(np.float32), grid.origin_lps, s)


def _mr_marrow_runs(prof: np.ndarray, pos: np.ndarray, p: DetectionParams) -> list[tuple[float, float]]:
    """Runs (start, end) along ``pos`` of marrow-like signal: between dips below ``mr_wall_dip`` (cortical
    lines; on T1 also fluid, muscle and disc) and peaks above its inverse (on T2: fluid, fat, disc)."""
    inside = (prof > p.mr_wall_dip) & (prof < 1.0 / p.mr_wall_dip)
    lab, n = ndimage.label(inside)
    return [(float(pos[lab == k][0]), float(pos[lab == k][-1])) for k in range(1, n + 1)]


def _mr_recentre(ratio: WorkGrid, curve: SpineCurve, ts: np.ndarray, t_lo: float, t_hi: float,
                 p: DetectionParams) -> SpineCurve:
    """Move the curve to the AP middle of the body column: per row, the marrow-like run (body rows) whose
    middle is nearest to the current curve, then a smooth fit anchored at the marks."""
    s = ratio.spacing
    a = np.arange(-45.0, 45.0 + 1e-6, s)
    img = curve.straighten(ratio, a, np.arange(-3.0, 3.0 + 1e-6, s), fill=0.0)
    sm = ndimage.uniform_filter1d(img, max(1, int(round(3.0 / s))), axis=0)
    mids = np.full(len(ts), np.nan)
    for i in range(len(ts)):
        row = sm[i]
        marrow = (row > 1 - p.mr_marrow_tol) & (row < 1 + p.mr_marrow_tol)
        best = None
        for a0, a1 in _mr_marrow_runs(row, a, p):
            sel = (a >= a0) & (a <= a1)
            if not (p.mr_body_depth_mm[0] <= a1 - a0 <= p.mr_body_depth_mm[1]) or marrow[sel].mean() < 0.5:
                continue
            # a body row ends in cortex (dark on every sequence) at both walls, unlike bowel or fat
            if not (_ends_in_cortex(row, a, a0, -1, p) and _ends_in_cortex(row, a, a1, +1, p)):
                continue
            mid = (a0 + a1) / 2
            if best is None or abs(mid) < abs(best):
                best = mid
        if best is not None and abs(best) <= p.mr_recentre_max_mm:
            mids[i] = best
    ok = np.isfinite(mids)
    if ok.sum() < 10:
        return curve
    # smooth fit a(t): cubic polynomial, the marks weighted as fixed points (offset 0 there)
    t_ok = ts[ok]
    a_ok = ndimage.median_filter(mids[ok], size=max(3, int(round(9.0 / s))) | 1, mode="nearest")
    w = np.ones(len(t_ok))
    t_fit = np.concatenate([t_ok, [t_lo, t_hi]])
    a_fit = np.concatenate([a_ok, [0.0, 0.0]])
    w_fit = np.concatenate([w, [len(t_ok) / 4] * 2])
    span = max(ts[-1], 1.0)
    coef = np.polynomial.polynomial.polyfit(t_fit / span, a_fit, 3, w=w_fit)
    # the fit is a correction inside the column search (bounded like the middles it fits), never an
    # extrapolation that runs off (a curve far outside the grid)
    offset = np.clip(np.polynomial.polynomial.polyval(ts / span, coef), -p.mr_recentre_max_mm, p.mr_recentre_max_mm)
    pts = curve.to_lps(np.arange(len(ts), dtype=float), offset, np.zeros(len(ts)))
    return SpineCurve.from_points(pts)


def _ends_in_cortex(row: np.ndarray, a: np.ndarray, a_end: float, outward: int, p: DetectionParams) -> bool:
    """True if a marrow run ending at ``a_end`` is closed by a cortical line: a dip below ``mr_wall_dip``
    just beyond it (T1, or next to fluid and ligament), or (a thin cortex blurred between marrow and a
    bright tissue, as fat and fluid are on T2) a dip at the run's end clearly darker than marrow and
    than the tissue beyond."""
    rel = (a - a_end) * outward
    near = row[(rel > 0) & (rel <= 2.5)]
    if near.size and near.min() < p.mr_wall_dip:
        return True
    around = row[(rel >= -3.0) & (rel <= 2.5)]
    beyond = row[(rel >= 2.5) & (rel <= 6.0)]
    if not around.size or not beyond.size:
        return False
    dip = float(around.min())
    return dip < 0.8 and dip < 0.7 * float(np.median(beyond))


def _mr_discs(dev: np.ndarray, a_col: np.ndarray, s: float, p: DetectionParams, col: tuple[float, float],
              t_start: float, t_end: float, count: int, *, exact: bool = True, from_top: bool = False
              ) -> list[tuple[float, float]]:
    """``count`` discs between rows t_start and t_end of the straightened deviation image.

    exact: choose exactly ``count`` (the marks say how many); otherwise up to ``count`` nearest to
    t_start (or to t_end with ``from_top``), each with a clear disc signature."""
    pr = DetectionParams(**{**p.__dict__, "column_depth_mm": col})
    score = disc_scores(dev, a_col, s, pr, p.mr_disc_flanks_mm)
    n = len(score[0])
    lo_i, hi_i = max(0, int(math.ceil(t_start))), min(n - 1, int(math.floor(t_end)))
    if hi_i <= lo_i:
        return []
    sc = np.full(n, -np.inf)
    sc[lo_i:hi_i + 1] = score[0][lo_i:hi_i + 1]
    peaks = [i for i in range(lo_i + 1, hi_i) if np.isfinite(sc[i]) and sc[i] >= sc[i - 1] and sc[i] >= sc[i + 1]
             and sc[i] > 0]
    lo_d, hi_d = p.disc_spacing_min_mm / s, p.disc_spacing_max_mm / s
    if exact:
        chain = _exact_chain(peaks, sc, count, lo_d, hi_d, t_start, t_end)
    else:
        # strongest peak of its neighbourhood only (a disc's two endplates give shoulders beside it)
        half = max(1, int(round(8.0 / s)))
        strong = [i for i in peaks if sc[i] >= p.mr_min_disc_score
                  and sc[i] >= np.max(sc[max(0, i - half):i + half + 1])]
        chain = []
        last = t_end if from_top else t_start
        for i in (sorted(strong, reverse=True) if from_top else sorted(strong)):
            if len(chain) >= count:
                break
            d = (last - i) if from_top else (i - last)
            if (chain and lo_d <= d <= hi_d) or (not chain and d <= hi_d):
                chain.append(i)
                last = i
        chain.sort()
    return [(float(i), float(score[1][i])) for i in chain]


def _exact_chain(peaks: list[int], sc: np.ndarray, count: int, lo_d: float, hi_d: float, t_start: float,
                 t_end: float) -> list[int]:
    """The ``count`` peaks with the best total score whose spacing (and distance to the marks, at most
    one vertebra) is that of vertebrae."""
    if len(peaks) < count:
        return peaks
    n = len(peaks)
    best = np.full((count, n), -np.inf)
    prev = np.full((count, n), -1, dtype=int)
    for j in range(n):
        if peaks[j] - t_start <= hi_d:
            best[0, j] = sc[peaks[j]]
    for c in range(1, count):
        for j in range(n):
            for i in range(j):
                d = peaks[j] - peaks[i]
                if lo_d <= d <= hi_d and best[c - 1, i] + sc[peaks[j]] > best[c, j]:
                    best[c, j] = best[c - 1, i] + sc[peaks[j]]
                    prev[c, j] = i
    ends = [j for j in range(n) if t_end - peaks[j] <= hi_d and np.isfinite(best[count - 1, j])]
    if not ends:
        return []
    j = max(ends, key=lambda k: best[count - 1, k])
    out = []
    for c in range(count - 1, -1, -1):
        out.append(peaks[j])
        j = prev[c, j]
    return out[::-1]


def _mr_disc_plates(ratio: WorkGrid, curve: SpineCurve, t_disc: float, p: DetectionParams, a_off: float = 0.0,
                    a_half: float = 6.0) -> tuple[Optional[float], Optional[float]]:
    """Curve rows (lower, upper) of the two cortical endplate lines bracketing the disc found near row
    ``t_disc``: consecutive dark lines 2-18 mm apart with no marrow between them. A Modic zone beside
    the disc is marrow-dark on T1 or bright on T2 but never as dark as cortex, so it is not taken."""
    s = ratio.spacing
    step = s / 2
    offs = np.arange(-22.0, 22.0 + 1e-6, step)
    tt = t_disc + offs / s
    ok = (tt >= 0) & (tt <= len(curve) - 1)
    if ok.sum() < 10:
        return None, None
    offs, tt = offs[ok], tt[ok]
    prof = _mr_column_profile(ratio, curve, tt, a_off, a_half)
    win = max(2, int(round(3.0 / step)))
    lines = []
    for k in range(1, len(prof) - 1):
        if prof[k] >= 0.85 or prof[k] > prof[k - 1] or prof[k] > prof[k + 1]:
            continue
        left = prof[max(0, k - win):k].max()
        right = prof[k + 1:k + 1 + win].max()
        if prof[k] < min(0.85 * min(left, right), p.mr_wall_dip * max(1.0, 0.5 * min(left, right))):
            lines.append(k)
    # group the lines into discs: lines closer than a vertebral body is high belong to one disc (a dark
    # cleft inside the nucleus makes a third line); the disc's endplates are its outermost lines. (The
    # disc's own signal is no guide: a nucleus averaged with the annulus can match marrow.)
    groups: list[list[int]] = []
    for k in lines:
        if groups and offs[k] - offs[groups[-1][-1]] <= p.mr_disc_max_mm:
            groups[-1].append(k)
        else:
            groups.append([k])
    best = None
    for g in groups:
        if len(g) < 2 or not 2.0 <= offs[g[-1]] - offs[g[0]] <= p.mr_disc_max_mm + 2.0:
            continue
        centre = 0.5 * (offs[g[0]] + offs[g[-1]])
        if best is None or abs(centre) < abs(best[0]):
            best = (centre, g[0], g[-1])
    if best is None:
        return None, None

    def refine(k: int) -> float:
        y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
        den = y0 - 2 * y1 + y2
        return offs[k] + (0.5 * (y0 - y2) / den * step if den > 1e-12 else 0.0)

    return t_disc + refine(best[1]) / s, t_disc + refine(best[2]) / s


def _mr_landmarks(ratio: WorkGrid, curve: SpineCurve, dev: np.ndarray, a_col: np.ndarray, lo_t: Optional[float],
                  hi_t: Optional[float], s: float, p: DetectionParams, *, inf_t: Optional[float] = None,
                  sup_t: Optional[float] = None, name: str = "L4", volume: Optional[Volume] = None,
                  companions: Sequence[Volume] = ()) -> Optional[Landmarks]:
    """Landmarks of the body between the discs at rows lo_t and hi_t (None at an end of the spine: the
    endplate there is searched one typical body height away). ``inf_t``/``sup_t``: rows of the
    endplate lines when already found beside the discs."""
    if lo_t is None and hi_t is None:
        return None
    typical = 30.0 / s
    n = dev.shape[0]

    def at(t: float) -> np.ndarray:
        return curve.to_lps(np.array(t), np.array(0.0), np.array(0.0))

    if hi_t is None:
        sup = _mr_far_endplate(ratio, curve, lo_t, +1, typical, p)
    else:
        sup = at(sup_t) if sup_t is not None else _mr_endplate(ratio, curve, hi_t, toward=-1, p=p)
    if lo_t is None:
        inf = _mr_far_endplate(ratio, curve, hi_t, -1, typical, p)
    else:
        inf = at(inf_t) if inf_t is not None else _mr_endplate(ratio, curve, lo_t, toward=+1, p=p)
    if sup is None or inf is None:
        return None
    t_mid = float(np.clip(((lo_t if lo_t is not None else hi_t - typical)
                           + (hi_t if hi_t is not None else lo_t + typical)) / 2, 0, n - 1))
    frame = curve.frame(t_mid)
    # the body's axis: perpendicular to its endplates, whose tilt is read from the cortical lines in
    # front of and behind the column's middle (the curve through the body centres may cross it obliquely)
    dirs = []
    for t_disc, which, t_mid_plate in ((hi_t, 0, sup_t), (lo_t, 1, inf_t)):
        if t_disc is None:
            continue
        pts = [] if t_mid_plate is None else [curve.to_lps(np.array(t_mid_plate), np.array(0.0), np.array(0.0))]
        for a_off in (-p.mr_endplate_tilt_offset_mm, p.mr_endplate_tilt_offset_mm):
            t_pl = _mr_disc_plates(ratio, curve, t_disc, p, a_off=a_off, a_half=4.0)[which]
            if t_pl is not None:
                pts.append(curve.to_lps(np.array(t_pl), np.array(a_off), np.array(0.0)))
        if len(pts) >= 2:
            arr = np.asarray(pts)
            centred = arr - arr.mean(axis=0)
            direction = np.linalg.svd(centred)[2][0]
            ant = curve.frame(float(t_disc))[3]
            dirs.append(direction if direction @ ant >= 0 else -direction)
    axis_hint = None
    if dirs:
        d = np.mean([v / np.linalg.norm(v) for v in dirs], axis=0)
        tan = sup - inf
        ax = tan - d * (tan @ d) / (d @ d)
        if np.linalg.norm(ax) > 1e-6:
            ax /= np.linalg.norm(ax)
            # accept a tilt correction up to 25 degrees from the curve's line through the body
            if ax @ (tan / np.linalg.norm(tan)) > math.cos(math.radians(25.0)):
                axis_hint = ax
    # first estimates on the working grid (their pedicles seed the search in the acquired slices)
    lm = _mr_refine_body(ratio, sup, inf, frame[2], frame[3], p, name=name, axis_hint=axis_hint)
    if volume is None:
        return lm
    coarse = (None, None) if lm is None else (lm.pedicle_left_lps, lm.pedicle_right_lps)
    measured = _mr_measure_body(volume, sup, inf, frame[2], frame[3], p, name=name, axis_hint=axis_hint,
                                coarse_pedicles=coarse, companions=companions)
    if measured is None:
        return lm
    if measured.pedicle_left_lps is None and lm is not None:
        measured = measured.model_copy(update={"pedicle_left_lps": lm.pedicle_left_lps,
                                               "pedicle_right_lps": lm.pedicle_right_lps})
    return measured


def _mr_far_endplate(ratio: WorkGrid, curve: SpineCurve, t_disc: float, toward: int, typical: float,
                     p: DetectionParams) -> Optional[np.ndarray]:
    """The endplate at the far end of a body whose other disc is outside the search (end of the column):
    the first cortical line found beyond 60% of a typical body height."""
    s = ratio.spacing
    start = t_disc + toward * 0.6 * typical
    if not 0 <= start <= len(curve) - 1:
        return None
    prof_pts = np.arange(0.0, 0.8 * typical * s + 1e-6, s / 2)
    tt = start + toward * prof_pts / s
    if tt.min() < 0 or tt.max() > len(curve) - 1:
        return None
    prof = _mr_column_profile(ratio, curve, tt)
    k = first_dip(prof, p.mr_wall_dip)
    if k is None:
        return None
    return curve.to_lps(np.array(start + toward * k * (s / 2) / s), np.array(0.0), np.array(0.0))


def _mr_column_profile(ratio: WorkGrid, curve: SpineCurve, tt: np.ndarray, a_off: float = 0.0,
                       a_half: float = 6.0) -> np.ndarray:
    """Mean ratio along curve rows ``tt`` over a strip of the column (AP ``a_off`` +- ``a_half`` mm,
    lateral +-3 mm)."""
    s = ratio.spacing
    a = np.arange(a_off - a_half, a_off + a_half + 1e-6, s)
    xs = np.arange(-3.0, 3.0 + 1e-6, s)
    prof = np.zeros(len(tt))
    for x in xs:
        prof += ratio.sample(curve.to_lps(tt[:, None], a[None, :], x)).mean(axis=1)
    return prof / len(xs)


def _mr_endplate(ratio: WorkGrid, curve: SpineCurve, t_disc: float, toward: int, p: DetectionParams
                 ) -> Optional[np.ndarray]:
    """The endplate next to the disc at row ``t_disc``: the darkest line (the cortical endplate, dark on
    every sequence) within 14 mm from the disc toward the body, on the column's middle; without a
    clear cortical line, where the signal turns into marrow."""
    s = ratio.spacing
    steps = np.arange(0.0, 14.0 + 1e-6, s / 2)
    tt = t_disc + toward * steps / s
    if tt.min() < 0 or tt.max() > len(curve) - 1:
        return None
    prof = _mr_column_profile(ratio, curve, tt)
    k = int(np.argmin(prof))
    disc_level = float(np.median(prof[: max(2, int(round(2.0 / (s / 2))))]))
    body_level = float(prof[k:].max()) if k < len(prof) else 1.0
    if prof[k] < p.mr_wall_dip and prof[k] < 0.85 * min(disc_level, body_level):
        pos = float(steps[k])
        if 0 < k < len(prof) - 1:
            y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
            den = y0 - 2 * y1 + y2
            if den > 1e-12:
                pos += 0.5 * (y0 - y2) / den * (s / 2)
    else:
        # no cortical line: halfway between the disc signal and the marrow signal
        half = 0.5 * (disc_level + 1.0)
        cross = np.flatnonzero((prof - half) * np.sign(1.0 - disc_level) >= 0)
        if cross.size == 0 or abs(1.0 - disc_level) < p.mr_marrow_tol / 2:
            return None
        pos = float(steps[cross[0]])
    return curve.to_lps(np.array(t_disc + toward * pos / s), np.array(0.0), np.array(0.0))


def _mr_refine_body(ratio: WorkGrid, sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray,
                    anterior_hint: np.ndarray, p: DetectionParams, name: str = "L4",
                    axis_hint: Optional[np.ndarray] = None) -> Optional[Landmarks]:
    """MRI walls at the cortical lines on the mid-height line, centre, endplates on the AP middle, pedicles.
    ``axis_hint``: the body's axis when known from the endplates' tilt (else the line sup - inf)."""
    frame = body_frame(sup, inf, lateral, anterior_hint, axis_hint)
    if frame is None:
        return None
    axis, height, lat, ap, mid = frame
    step = ratio.spacing / 2
    pos = np.arange(0.0, 45.0 + 1e-6, step)
    hw = (p.slab_half_width_mm, min(3.0, 0.15 * height))

    def wall(direction: np.ndarray, across: tuple[np.ndarray, np.ndarray], widths: tuple[float, float],
             start: float) -> Optional[float]:
        """The cortical line: the first dip on each of a few parallel lines, then their median (a line
        through the basivertebral veins, bright on T2, or a missed dip does not move the result)."""
        found = []
        for o1 in np.linspace(-widths[0], widths[0], 5):
            for o2 in np.linspace(-widths[1], widths[1], 3):
                origin = mid_pt + o1 * across[0] + o2 * across[1]
                prof = ratio.sample(origin[None, :] + pos[:, None] * direction[None, :])
                k = first_dip(prof[pos >= start], p.mr_wall_dip)
                if k is not None:
                    found.append(start + k * step)
        if len(found) < 4:
            return None
        return float(np.median(found))

    mid_pt = mid
    a_front = wall(ap, (lat, axis), hw, 3.0)
    a_back = wall(-ap, (lat, axis), hw, 3.0)
    if a_front is None or a_back is None:
        return None
    post = mid - a_back * ap
    ant = mid + a_front * ap
    center = 0.5 * (post + ant)
    mid_pt = center
    # left and right edges where the signal falls fastest (sagittal slices are thick across: no sharp line)
    hw_lr = (min(4.0, 0.2 * (a_front + a_back)), min(3.0, 0.15 * height))

    def side_edge(direction: np.ndarray) -> Optional[float]:
        """Where the marrow ends sideways (leaves the marrow band for good), halfway through the blur."""
        prof = line_profile(ratio, center, direction, (ap, axis), pos, hw_lr, 0.0)
        out = np.abs(prof - 1.0) >= p.mr_marrow_tol
        need = max(1, int(round(3.0 / step)))
        for k in np.flatnonzero((pos >= 8.0) & (pos <= 40.0)):
            if out[k:k + need].all() and k + need <= len(prof):
                return float(pos[k]) - step / 2
        return None

    left = side_edge(lat)
    right = side_edge(-lat)
    # a genuine sideways offset moves both edges the same amount; very unequal edges (the sacral alae,
    # a neighbouring structure of marrow-like signal) leave the midline as it is
    if (left is not None and right is not None and max(left, right) < 38.0
            and abs(left - right) <= 2 * p.mr_max_midline_correction_mm):
        shift = 0.5 * (left - right) * lat
        post, ant, center, sup, inf = (v + shift for v in (post, ant, center, sup, inf))
    sup_c = center + ((sup - center) @ axis) * axis
    inf_c = center + ((inf - center) @ axis) * axis
    # the pedicles are sought from the body's own half-width on each side (not measured: none)
    half = {+1: left, -1: right}
    if left is not None and right is not None and abs(left - right) <= 2 * p.mr_max_midline_correction_mm:
        half = {+1: 0.5 * (left + right), -1: 0.5 * (left + right)}
    ped_l, ped_r = (None if half[side] is None or half[side] >= 38.0 else
                    mr_pedicle(ratio, post, axis, ap, lat, height, side, half[side], p) for side in (+1, -1))
    ped_l, ped_r = symmetric_pedicles(ped_l, ped_r, post, axis, ap, lat, p)
    return Landmarks(body_center_lps=lps_tuple(center), superior_endplate_lps=lps_tuple(sup_c), inferior_endplate_lps=lps_tuple(inf_c),
                     posterior_wall_lps=lps_tuple(post), anterior_wall_lps=lps_tuple(ant),
                     pedicle_left_lps=None if ped_l is None else lps_tuple(ped_l),
                     pedicle_right_lps=None if ped_r is None else lps_tuple(ped_r))


def _mr_measure_body(volume: Volume, sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray,
                     anterior_hint: np.ndarray, p: DetectionParams, name: str = "L4",
                     axis_hint: Optional[np.ndarray] = None,
                     coarse_pedicles: tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None),
                     companions: Sequence[Volume] = ()) -> Optional[Landmarks]:
    """MRI body landmarks measured in the acquired slices: the midsagittal plane from the vertebra's mirror
    symmetry, walls and endplates at the outer edge of their cortical lines (sub-sample edges), the body
    centre between them; ``sup``/``inf``: first estimates of the endplate centres (from the discs)."""
    frame = body_frame(sup, inf, lateral, anterior_hint, axis_hint)
    if frame is None:
        return None
    axis, height, lat, ap, mid = frame
    box = np.stack(np.meshgrid(np.linspace(-6, 6, 5), np.linspace(-6, 6, 5), np.linspace(-0.2, 0.2, 5) * height,
                               indexing="ij"), -1).reshape(-1, 3)
    marrow = float(np.median(volume.sample(mid + box[:, :1] * lat + box[:, 1:2] * ap + box[:, 2:] * axis)))
    if not marrow > 0:
        return None
    ns = NativeSlices(volume, mid, lat, ap, axis, marrow)
    step = 0.25
    pos = np.arange(0.0, 45.0 + 1e-6, step)

    def walls(x0: float, h0: float) -> Optional[tuple[float, float]]:
        out = []
        for sgn in (+1, -1):
            found = []
            for dh in np.linspace(-0.15, 0.15, 5) * height:
                for dx in (-1.5, 0.0, 1.5):
                    prof = ns.sample(x0 + dx, sgn * pos, h0 + dh)
                    e = cortex_line(prof[pos >= 3.0], pos[pos >= 3.0], p)
                    if e is not None:
                        found.append(surface(e, "wall"))
            if len(found) < 5:
                return None
            out.append(float(np.median(found)))
        return out[0], out[1]

    w = walls(0.0, 0.0)
    if w is None:
        return None
    a_front, a_back = w
    x0 = 0.0
    if ns.sagittal:
        c = mirror_midline(ns, np.arange(-a_back - 25.0, a_front + 3.0 + 1e-6, 1.5),
                            np.arange(-0.4 * height, 0.4 * height + 1e-6, 1.5))
        if c is not None and abs(c) < 4.5:
            x0 = c
    # endplates: the cortical line nearest the first estimate, on lines parallel to the axis across the middle
    # of the body's depth; a straight line through them, read at the AP middle
    a_mid = 0.5 * (a_front - a_back)
    plates = []
    for sgn, ref in ((+1, sup), (-1, inf)):
        expected = float((ref - mid) @ axis) * sgn
        pts = []
        for da in np.linspace(-0.25, 0.25, 7) * (a_front + a_back):
            for dx in (-1.5, 0.0, 1.5):
                prof = ns.sample(x0 + dx, a_mid + da, sgn * pos)
                k = dip_near(prof, pos, expected, 4.0, p.mr_wall_dip)
                if k is None:
                    continue
                e = cortex_line(prof, pos, p, dip_index=k)
                if e is not None:
                    pts.append((da, sgn * surface(e, "endplate")))
        if len(pts) < 6:
            return None
        arr = np.asarray(pts)
        # robust line fit h = c0 + c1 * da (median of residuals clipping)
        coef = np.polyfit(arr[:, 0], arr[:, 1], 1)
        res = arr[:, 1] - np.polyval(coef, arr[:, 0])
        keep = np.abs(res) <= max(0.75, 2.5 * float(np.median(np.abs(res))))
        if keep.sum() >= 4:
            coef = np.polyfit(arr[keep, 0], arr[keep, 1], 1)
        plates.append(coef)
    a_c = a_mid
    for _ in range(2):
        h_sup, h_inf = (float(np.polyval(c, a_c - a_mid)) for c in plates)
        h_c = 0.5 * (h_sup + h_inf)
        w = walls(x0, h_c)
        if w is not None:
            a_front, a_back = w
        a_c = 0.5 * (a_front - a_back)
    h_sup, h_inf = (float(np.polyval(c, a_c - a_mid)) for c in plates)
    h_c = 0.5 * (h_sup + h_inf)
    centre = ns.lps(x0, a_c, h_c)
    # pedicles, in a frame on the posterior wall's midline point
    nsp = NativeSlices(volume, ns.lps(x0, -a_back, h_c), lat, ap, axis, marrow)
    d_line = posterior_wall_line(nsp, height, p)
    found = {}
    for side, coarse in zip((+1, -1), coarse_pedicles):
        r = mr_pedicle_native(nsp, side, height, None if coarse is None else np.asarray(coarse, float), d_line,
                               name, p)
        if r is None:
            continue
        # an axial series through the pedicle measures its sideways place in-plane (finer than thick sagittal
        # slices can)
        for ax in companions:
            if not ax.contains(nsp.lps(r[0], -r[1], r[2]), margin_voxels=-0.5):
                continue
            x_ax = axial_pedicle_x(ax, nsp.origin, lat, ap, axis, side, r[0], r[1], r[2], r[3]["half_height"], p)
            if x_ax is not None and abs(x_ax - r[0]) <= 3.0:
                r = (x_ax, r[1], r[2], {**r[3], "axial": True})
                break
        found[side] = r
    peds: dict[int, Optional[np.ndarray]] = {+1: None, -1: None}
    if len(found) == 2:
        (ul, dl, hl, _), (ur, dr, hr, _) = found[+1], found[-1]
        if abs(abs(ul) - abs(ur)) <= 4.0 and abs(dl - dr) <= 4.0 and abs(hl - hr) <= 3.0:
            u, d, hh = 0.5 * (abs(ul) + abs(ur)), 0.5 * (dl + dr), 0.5 * (hl + hr)
            peds = {s: nsp.lps(s * u, -d, hh) for s in (+1, -1)}
        else:
            peds = {s: nsp.lps(found[s][0], -found[s][1], found[s][2]) for s in (+1, -1)}
    elif len(found) == 1:  # the other side was not measured: it stays empty (placed by hand)
        s, (u, d, hh, _) = next(iter(found.items()))
        peds[s] = nsp.lps(u, -d, hh)
    return Landmarks(body_center_lps=lps_tuple(centre), superior_endplate_lps=lps_tuple(ns.lps(x0, a_c, h_sup)),
                     inferior_endplate_lps=lps_tuple(ns.lps(x0, a_c, h_inf)),
                     posterior_wall_lps=lps_tuple(ns.lps(x0, -a_back, h_c)),
                     anterior_wall_lps=lps_tuple(ns.lps(x0, a_front, h_c)),
                     pedicle_left_lps=None if peds[+1] is None else lps_tuple(peds[+1]),
                     pedicle_right_lps=None if peds[-1] is None else lps_tuple(peds[-1]))
