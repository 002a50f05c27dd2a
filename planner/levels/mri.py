"""Levels on a sagittal MR: the bodies found by the learned body finder, each measured in the acquired slices.

:func:`detect_mr`: the vertebral bodies come from the learned body finder (:mod:`planner.levels.mri_bodies`),
named from two marks inside named bodies (any two: S1 and L1, L1 and L5, ...) or, without marks, counted from
the sacrum as a proposal to confirm; marks that disagree with the image raise
:class:`~planner.levels.results.MarkError` naming the likely correction. Each body is then measured in the
acquired slices (:func:`_mr_measure_body`: the midsagittal plane from the vertebra's mirror symmetry, walls
and endplates on their cortical lines, seeded by the body finder's endplates and axis); a measured wall or
endplate replaces the body finder's edge where the two agree within ``MrBodiesParams.refine_mm``
(:func:`_refined`), and the pedicles are measured there too (the coarse ones of :func:`_mr_refine_body`, on a
1 mm working grid, where the acquired slices do not show them)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Landmarks, Point3
from planner.levels.params import DetectionParams, MrBodiesParams
from planner.levels.mri_bodies import default_net, find_bodies, name_from_marks, name_without_marks
from planner.levels.results import LevelDetectionError, body_heights, lps_tuple, odd_heights, VertebraFound
from planner.levels.naming import PROPOSED_ORDER, name_sequence
from planner.levels.grid import line_profile, work_grid, WorkGrid, working_volume, body_frame
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
    net = default_net(net_params.model_path, net_params.threads)
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
    # scaled to the marrow signal of the bodies
    grid = work_grid(volume, p.mr_work_spacing_mm, fill=0.0, bounds_lps=region, max_voxels=p.max_work_voxels)
    ratio = _mr_ratio_grid(grid, [b.centre_lps for b in scan.bodies if not b.faint and not b.partial])
    notes: list[str] = []
    at_side: list[str] = []
    verts: list[VertebraFound] = []
    for body, name in zip(scan.bodies, names):
        if name not in PROPOSED_ORDER:
            continue
        lm = body.landmarks
        if body.partial:
            notes.append(f"{name} is cut by the edge of the image: its landmarks are of the part in view")
        if body.inferior_fade_mm > 0.0:
            notes.append(f"{name}: the body's outline fades over {body.inferior_fade_mm:.0f} mm below it (a degenerated "
                         "disc joined to the body, or a Modic change at the endplate): its inferior endplate is "
                         "taken where the body is sure; check it on the image")
        if body.cut_at_side:
            at_side.append(name)
        peds: tuple[Optional[Point3], Optional[Point3]] = (None, None)
        if "superior_endplate_lps" in lm and "inferior_endplate_lps" in lm:
            lateral = np.array([1.0, 0.0, 0.0])
            # the body measured in the acquired slices from the body finder's endplates, then once more from
            # the endplates measured (closer to the cortical lines: the pedicles are sought from them)
            measured = None
            sup, inf = lm["superior_endplate_lps"], lm["inferior_endplate_lps"]
            axis = (sup - inf) / np.linalg.norm(sup - inf)
            for last in (False, True):
                anterior = np.cross(lateral, axis)
                coarse = None if ratio is None or not last else _mr_refine_body(
                    ratio, sup, inf, lateral, anterior, p, name=name, axis_hint=axis)
                seeds = (None, None) if coarse is None else (coarse.pedicle_left_lps, coarse.pedicle_right_lps)
                found = _mr_measure_body(volume, sup, inf, lateral, anterior, p, name=name, axis_hint=axis,
                                         coarse_pedicles=seeds, companions=companions,
                                         pedicles=last and name != "S1")
                if found is None:
                    measured = None
                    break
                measured, axis = found
                lm = _refined(lm, measured, net_params.refine_mm)
                sup, inf = lm["superior_endplate_lps"], lm["inferior_endplate_lps"]
            if name != "S1" and ratio is not None:
                if measured is None:
                    coarse = _mr_refine_body(ratio, sup, inf, lateral, anterior, p, name=name, axis_hint=axis)
                    seeds = (None, None) if coarse is None else (coarse.pedicle_left_lps, coarse.pedicle_right_lps)
                # measured in the acquired slices; where they do not show a pedicle, the one measured on the
                # 1 mm working grid (absent when neither shows it: placed by hand)
                got = (None, None) if measured is None else (measured.pedicle_left_lps, measured.pedicle_right_lps)
                peds = (got[0] if got[0] is not None else seeds[0], got[1] if got[1] is not None else seeds[1])
        if name == "S1":
            # S1's pedicles merge into the sacral alae: on MRI no separate pedicle is seen to measure
            notes.append("S1: the pedicles merge into the sacral alae and are not measured on MRI; place them by hand")
        landmarks = Landmarks(**{k: lps_tuple(v) for k, v in lm.items()},
                              pedicle_left_lps=peds[0], pedicle_right_lps=peds[1])
        verts.append(VertebraFound(0.0, 0.0, landmarks, name=name, sacral=name == "S1", partial=body.partial))
    if at_side:
        notes.append(f"the sagittal slices end inside the width of {', '.join(at_side)}: their landmarks on the "
                     f"mid-sagittal plane are whole, their left-right middle is that of the part in view (check "
                     f"it on an axial image)")
    return verts, scan.notes + notes, scan.warnings + odd_height_bodies(verts, net_params)


def odd_height_bodies(verts: Sequence[VertebraFound], p: MrBodiesParams) -> list[str]:
    """Warnings for lumbar bodies much lower (``MrBodiesParams.short_body_ratio``) or much taller
    (``tall_body_ratio``) than their neighbours: the outline of a lower one may stop at a Modic band as dark as
    the disc, or the body is collapsed; that of a taller one may run on into the next bone."""
    measured = body_heights(verts, partial=True)
    heights = [None if v.sacral or v.partial else h for v, h in zip(verts, measured)]
    # a body cut by the edge of the image or of the part searched: its height so far
    at_least = [h if v.partial and not v.sacral else None for v, h in zip(verts, measured)]
    out = []
    for i, (kind, h, near) in sorted(odd_heights(heights, at_least, p.short_body_ratio, p.tall_body_ratio).items()):
        size = f"{verts[i].name}: its body measures {'at least ' if heights[i] is None else ''}{h:.0f} mm from " \
               "endplate to endplate against"
        if kind == "short":
            out.append(f"{size} {near:.0f} mm for its neighbours: its outline may stop at a marrow change (a Modic "
                       "band as dark as the disc) or the body is collapsed; check its endplates before reading Modic "
                       "changes")
        else:
            out.append(f"{size} {near:.0f} mm for the taller of its neighbours: its outline may run on through a "
                       "disc into the next bone (the sacrum below L5); check its endplates on the image (no target "
                       "is suggested in it from this image)")
    return out


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


def _overlaps(volume: Volume, bounds_lps: tuple[np.ndarray, np.ndarray]) -> bool:
    """True if the volume's bounding box meets the LPS box."""
    corners = volume.corners_lps()
    return bool(np.all(corners.max(0) >= bounds_lps[0]) and np.all(corners.min(0) <= bounds_lps[1]))


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


def _mr_ratio_grid(grid: WorkGrid, centres_lps: Sequence[np.ndarray]) -> Optional[WorkGrid]:
    """The working grid divided by the marrow signal of the bodies (:func:`_marrow_level` around each body
    centre), interpolated along the spine between them (by height: the grid's axis 0 is LPS z); None when
    no body has marrow signal."""
    pairs = sorted((float(c[2]), _marrow_level(grid, np.asarray(c, float))) for c in centres_lps)
    pairs = [(z, m) for z, m in pairs if m > 0]
    if not pairs:
        return None
    z = grid.origin_lps[2] + np.arange(grid.shape[0]) * grid.spacing
    marrow = np.interp(z, [q[0] for q in pairs], [q[1] for q in pairs]).astype(np.float32)
    return WorkGrid((grid.array / marrow[:, None, None]).astype(np.float32), grid.origin_lps, grid.spacing)


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
    if (left is not None and right is not None and max(left, right) < p.body_max_half_width_mm
            and abs(left - right) <= 2 * p.mr_max_midline_correction_mm):
        shift = 0.5 * (left - right) * lat
        post, ant, center, sup, inf = (v + shift for v in (post, ant, center, sup, inf))
    sup_c = center + ((sup - center) @ axis) * axis
    inf_c = center + ((inf - center) @ axis) * axis
    # the pedicles are sought from the body's own half-width on each side (not measured: none)
    half = {+1: left, -1: right}
    if left is not None and right is not None and abs(left - right) <= 2 * p.mr_max_midline_correction_mm:
        half = {+1: 0.5 * (left + right), -1: 0.5 * (left + right)}
    ped_l, ped_r = (None if half[side] is None or half[side] >= p.body_max_half_width_mm else
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
                     companions: Sequence[Volume] = (), pedicles: bool = True
                     ) -> Optional[tuple[Landmarks, np.ndarray]]:
    """MRI body landmarks measured in the acquired slices: the midsagittal plane from the vertebra's mirror
    symmetry, walls and endplates at the outer edge of their cortical lines (sub-sample edges), the body
    centre between them, and (``pedicles``) the pedicles; ``sup``/``inf``: first estimates of the endplate
    centres (within 4 mm of the cortical lines). Returns the landmarks and the body's axis measured (toward
    superior, perpendicular to the mean direction of its two endplate lines in the midsagittal plane)."""
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
        if c is not None and abs(c) < p.mr_mirror_midline_max_mm:
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
    tilt = 0.5 * (plates[0][0] + plates[1][0])  # dh/da of the endplate lines
    axis_measured = (axis - tilt * ap) / float(np.linalg.norm(axis - tilt * ap))
    body = dict(body_center_lps=lps_tuple(centre), superior_endplate_lps=lps_tuple(ns.lps(x0, a_c, h_sup)),
                inferior_endplate_lps=lps_tuple(ns.lps(x0, a_c, h_inf)),
                posterior_wall_lps=lps_tuple(ns.lps(x0, -a_back, h_c)),
                anterior_wall_lps=lps_tuple(ns.lps(x0, a_front, h_c)))
    if not pedicles:
        return Landmarks(**body), axis_measured
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
            if x_ax is not None and abs(x_ax - r[0]) <= p.mr_axial_pedicle_max_shift_mm:
                r = (x_ax, r[1], r[2], {**r[3], "axial": True})
                break
        found[side] = r
    peds: dict[int, Optional[np.ndarray]] = {+1: None, -1: None}
    if len(found) == 2:
        (ul, dl, hl, _), (ur, dr, hr, _) = found[+1], found[-1]
        tol_x, tol_d, tol_h = p.mr_pedicle_pair_tolerance_mm
        if abs(abs(ul) - abs(ur)) <= tol_x and abs(dl - dr) <= tol_d and abs(hl - hr) <= tol_h:
            u, d, hh = 0.5 * (abs(ul) + abs(ur)), 0.5 * (dl + dr), 0.5 * (hl + hr)
            peds = {s: nsp.lps(s * u, -d, hh) for s in (+1, -1)}
        else:
            peds = {s: nsp.lps(found[s][0], -found[s][1], found[s][2]) for s in (+1, -1)}
    elif len(found) == 1:  # the other side was not measured: it stays empty (placed by hand)
        s, (u, d, hh, _) = next(iter(found.items()))
        peds[s] = nsp.lps(u, -d, hh)
    return (Landmarks(**body, pedicle_left_lps=None if peds[+1] is None else lps_tuple(peds[+1]),
                      pedicle_right_lps=None if peds[-1] is None else lps_tuple(peds[-1]))), axis_measured
