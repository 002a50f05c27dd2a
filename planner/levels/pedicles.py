"""Pedicle centres per side: on CT the bone bridge between body and arch at its narrowest, on MRI the
marrow bar between the vertebral notches (sagittal slices, refined on an axial companion series)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.levels.params import DetectionParams
from planner.levels.results import lps_tuple
from planner.levels.grid import WorkGrid
from planner.levels.profiles import cortex_line, marrow_run, NativeSlices, parabola_apex, surface


@dataclass
class BodyFrame:
    """A vertebral body as measured, for the pedicle search: the posterior wall point on the midline
    (LPS), unit axes (``axis`` cranial, ``ap`` anterior, ``lat`` toward the patient's left), the body's
    height, its half-width to each side (+1 left, -1 right; mm from the midline at mid-height) and the
    value separating bone from soft tissue (CT: halfway between marrow and soft tissue)."""

    post: np.ndarray
    axis: np.ndarray
    ap: np.ndarray
    lat: np.ndarray
    height: float
    half_width: dict[int, float]
    bone_thr: float


@dataclass
class PedicleFound:
    """A pedicle as measured: its centre (LPS), its axis (unit, pointing into the body) and the inner
    cortical outline of its narrowest section (LPS polygon; empty when the cortex could not be traced)."""

    centre_lps: np.ndarray
    axis: np.ndarray
    outline_lps: list[tuple[float, float, float]] = field(default_factory=list)


def ct_pedicle(volume: Volume, frame: BodyFrame, side: int, p: DetectionParams,
               start: Optional[np.ndarray] = None) -> Optional[PedicleFound]:
    """The pedicle on one side (+1 left, -1 right) on CT, from the bone threshold and the bridge's shape:
    its isthmus, the narrowest section of the bone bridge between the body and the arch, cut
    perpendicular to the pedicle's axis.

    A section of bone in a cut is the connected bone (value >= ``frame.bone_thr``, gaps up to twice
    ``ct_pedicle_close_mm`` closed) at the cut's centre or overlapping the previous cut's section, taken
    with its convex hull (the cortex of a pedicle is a ring, thin and often not closed all round on
    thick slices; the hull is the area it encloses). The search:

    1. **Start** (:func:`_ct_bridge_start`): cuts perpendicular to the body's AP axis through the bone
       behind the body give a first isthmus (or ``start`` when given: the caller's mirror image of the
       other side's isthmus, where this side's search found none).
    2. **Axis and isthmus** (:func:`_ct_isthmus`): along lines through the start in every direction of a
       coarse grid (medio-lateral and cranio-caudal angles within ``ct_pedicle_axis_ml_deg`` and
       ``ct_pedicle_axis_cc_deg`` of straight back, steps of four times ``ct_pedicle_angle_step_deg``),
       cuts perpendicular to the line every millimetre within ``ct_pedicle_scan_mm`` follow the section;
       an isthmus is a section whose neighbours widen by ``ct_pedicle_widening`` (or join a larger mass,
       reaching the cut's border at ``ct_pedicle_window_mm``) on both sides. The smallest isthmus over all
       directions is the narrowest section of the bridge (a plane across a tube cuts it smallest when
       perpendicular to it). It is then refined: at its centre, the direction (within two fine steps)
       whose perpendicular cut is smallest, then the narrowest section along that direction (cuts every
       ``ct_pedicle_step_mm``), until the centre moves less than 0.3 mm.
    3. **Centre**: the area-weighted centroid of the consecutive sections within
       ``ct_pedicle_waist_tolerance`` of the smallest area (the isthmus' middle where the bridge is
       evenly narrow). The inner cortical outline is traced in that plane
       (:func:`planner.checks.measure_pedicle_outline_ct`) and stored.

    A section that reaches the edge of the image may go on beyond it: it never counts as an isthmus, so a
    pedicle cut by the field of view is not measured. None when no isthmus is found (the landmark is then
    placed by hand)."""
    from planner.checks import measure_pedicle_outline_ct

    if start is None:
        start = _ct_bridge_start(volume, frame, side, p)
        if start is None:
            return None
    found = _ct_isthmus(volume, frame, side, np.asarray(start, float), p)
    if found is None:
        return None
    centre, ped_axis = found
    up = frame.axis - (frame.axis @ ped_axis) * ped_axis
    up /= np.linalg.norm(up)
    medial = np.cross(up, ped_axis)
    if medial @ (side * frame.lat) > 0:
        medial = -medial
    ring = measure_pedicle_outline_ct(volume, centre, ped_axis, medial, up)
    if ring is None:
        return PedicleFound(centre, ped_axis)
    outline = centre[None, :] + ring[:, :1] * medial[None, :] + ring[:, 1:2] * up[None, :]
    return PedicleFound(centre, ped_axis, [lps_tuple(q) for q in outline])


def _ct_bridge_start(volume: Volume, frame: BodyFrame, side: int, p: DetectionParams) -> Optional[np.ndarray]:
    """Where the search for a pedicle's isthmus starts: the bone behind the body is cut by planes
    perpendicular to the body's AP axis, every ``ct_pedicle_step_mm`` from the posterior wall line back
    (to ``ct_pedicle_max_depth_mm``), between the body's endplate heights and out to the body's own
    half-width on that side (plus ``ct_pedicle_lateral_margin_mm``; the transverse process reaches beyond
    it). In each cut the pedicle is the bone component nearest to ``pedicle_lateral_fraction`` of that
    half-width where the bridge starts, then followed from cut to cut by overlap. The bridge runs from
    where that section, clear of the midline (within ``ct_pedicle_midline_mm``), first reaches 30 % of its
    median area to where it reaches the midline (the lamina) or falls to under half its largest area; the
    start is the area-weighted centroid of its narrowest sections (within one voxel, at least 1 mm, of
    the smallest width) over its inner 80 %. None when there is no such bridge."""
    step = p.ct_pedicle_step_mm
    voxel = float(np.max(volume.spacing))
    reach = frame.half_width[side] + p.ct_pedicle_lateral_margin_mm
    xs = np.arange(step, reach + 1e-6, step)
    hs = np.arange(-0.5 * frame.height, 0.5 * frame.height + 1e-6, step)
    depths = np.arange(0.0, p.ct_pedicle_max_depth_mm + 1e-6, step)
    lat = side * frame.lat
    pts = (frame.post[None, None, None, :] - depths[:, None, None, None] * frame.ap
           + hs[None, :, None, None] * frame.axis + xs[None, None, :, None] * lat)
    bone = volume.sample(pts, order=1, fill=-1024.0) >= frame.bone_thr
    secs = []  # (depth, area, centroid LPS, reaches the midline, width)
    prev = None
    for i, d in enumerate(depths):
        lab, n = ndimage.label(bone[i])
        if n == 0:
            secs.append((d, 0.0, None, False, 0.0))
            prev = None
            continue
        idx = np.arange(1, n + 1)
        cents = ndimage.center_of_mass(bone[i], lab, idx)
        overlap = ndimage.sum(prev, lab, idx) if prev is not None else np.zeros(n)
        if overlap.max() > 0:
            k = int(np.argmax(overlap)) + 1
        else:
            k = int(np.argmin([abs(xs[0] + c[1] * step - p.pedicle_lateral_fraction * reach) for c in cents])) + 1
        comp = lab == k
        prev = comp
        ch, cx = cents[k - 1]
        cols = np.flatnonzero(comp.any(axis=0))
        centre = frame.post - d * frame.ap + (hs[0] + ch * step) * frame.axis + (xs[0] + cx * step) * lat
        secs.append((d, float(comp.sum()) * step * step, centre, bool(xs[cols[0]] <= p.ct_pedicle_midline_mm),
                     float(len(cols)) * step))
    free = np.array([sec[1] > 0 and not sec[3] for sec in secs])
    if not free.any():
        return None
    floor = 0.3 * float(np.median([sec[1] for sec, f in zip(secs, free) if f]))
    start = next(i for i, sec in enumerate(secs) if free[i] and sec[1] >= floor)
    end = next((i for i in range(start, len(secs)) if secs[i][3]), len(secs))
    top = 0.0
    for i in range(start, end):
        if secs[i][1] < 0.5 * top:
            end = i
            break
        top = max(top, secs[i][1])
    run = [sec for sec in secs[start:end] if sec[1] > 0]
    if len(run) < 3:
        return None
    cut = max(1, int(round(0.1 * len(run))))
    inner = run[cut: len(run) - cut] or run
    i_min = min(range(len(inner)), key=lambda i: (inner[i][4], inner[i][1]))
    tol = inner[i_min][4] + max(1.0, voxel)
    lo = hi = i_min
    while lo > 0 and inner[lo - 1][4] <= tol:
        lo -= 1
    while hi + 1 < len(inner) and inner[hi + 1][4] <= tol:
        hi += 1
    waist = inner[lo: hi + 1]
    w = np.array([sec[1] for sec in waist])
    return (np.array([sec[2] for sec in waist]) * w[:, None]).sum(axis=0) / w.sum()


@dataclass
class _Section:
    """A pedicle's bone section in one cut: area (mm^2), centroid (LPS), its samples (bool mask of the cut's
    grid), and whether it reaches the cut's border (``window``: it has joined a larger mass) or the edge
    of the image (``edge``: it may go on beyond the field of view)."""

    area: float
    centroid: np.ndarray
    mask: np.ndarray
    window: bool
    edge: bool

    @property
    def whole(self) -> bool:
        return not (self.window or self.edge)


def _ct_axis(frame: BodyFrame, side: int, ml_deg: float, cc_deg: float) -> np.ndarray:
    """Unit vector from the body toward the arch: ``ml_deg`` toward the side (+1 left) and ``cc_deg``
    cranially from straight back."""
    ml, cc = math.radians(ml_deg), math.radians(cc_deg)
    d = (-frame.ap * math.cos(ml) * math.cos(cc) + side * frame.lat * math.sin(ml) * math.cos(cc)
         + frame.axis * math.sin(cc))
    return d / np.linalg.norm(d)


def _disk(radius_mm: float, step: float) -> Optional[np.ndarray]:
    r = int(round(radius_mm / step))
    if r <= 0:
        return None
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= r * r


def _ct_section(volume: Volume, centre: np.ndarray, normal: np.ndarray, frame: BodyFrame, p: DetectionParams,
                prev: Optional[np.ndarray] = None) -> Optional[_Section]:
    """The bone section (:func:`ct_pedicle`) in the plane through ``centre`` perpendicular to ``normal``
    (a square of +-``ct_pedicle_window_mm`` sampled every ``ct_pedicle_step_mm``): the component
    overlapping ``prev`` most, else the one holding the bone sample nearest to ``centre`` (within
    ``ct_pedicle_track_mm``); None when there is none."""
    step = p.ct_pedicle_step_mm
    u = frame.lat - (frame.lat @ normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    g = np.arange(-p.ct_pedicle_window_mm, p.ct_pedicle_window_mm + 1e-6, step)
    pts = centre[None, None, :] + g[:, None, None] * v[None, None, :] + g[None, :, None] * u[None, None, :]
    vals = volume.sample(pts, order=1, fill=np.nan)
    bone = np.nan_to_num(vals, nan=-1024.0) >= frame.bone_thr
    disk = _disk(p.ct_pedicle_close_mm, step)
    if disk is not None:
        r = disk.shape[0] // 2
        bone = ndimage.binary_closing(np.pad(bone, r), structure=disk)[r:-r, r:-r]
    lab, n = ndimage.label(bone)
    if n == 0:
        return None
    if prev is not None:
        overlap = ndimage.sum(prev, lab, np.arange(1, n + 1))
        if overlap.max() <= 0:
            return None
        k = int(np.argmax(overlap)) + 1
    else:
        rr, cc = np.nonzero(lab)
        dist = np.hypot(g[rr], g[cc])
        j = int(np.argmin(dist))
        if dist[j] > p.ct_pedicle_track_mm:
            return None
        k = int(lab[rr[j], cc[j]])
    raw = lab == k
    area, (cv, cu) = _hull_area_centroid(raw)
    return _Section(area * step * step, centre + (g[0] + cv * step) * v + (g[0] + cu * step) * u, raw,
                    bool(raw[0].any() or raw[-1].any() or raw[:, 0].any() or raw[:, -1].any()),
                    bool(np.isnan(vals[ndimage.binary_dilation(raw & ~np.isnan(vals))]).any()))


def _hull_area_centroid(mask: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Area (pixels) and centroid (row, col) of the convex hull of a 2D mask: the hull of its pixel centres
    grown by half a pixel all round (its area plus half a pixel times its perimeter plus a quarter-pixel
    disc; the centroid is that of the hull polygon)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(mask & ~ndimage.binary_erosion(mask)).astype(float)
    if len(pts) >= 3:
        try:
            poly = pts[ConvexHull(pts).vertices]
        except QhullError:  # all on one line: the mask is its own hull
            poly = None
        if poly is not None:
            x, y = poly[:, 0], poly[:, 1]
            xn, yn = np.roll(x, -1), np.roll(y, -1)
            cross = x * yn - xn * y
            a = 0.5 * float(cross.sum())
            perim = float(np.hypot(xn - x, yn - y).sum())
            cx = float(((x + xn) * cross).sum()) / (6.0 * a)
            cy = float(((y + yn) * cross).sum()) / (6.0 * a)
            return abs(a) + 0.5 * perim + math.pi * 0.25, (cx, cy)
    c = ndimage.center_of_mass(mask)
    return float(mask.sum()), (float(c[0]), float(c[1]))


def _ct_scan(volume: Volume, frame: BodyFrame, centre: np.ndarray, axis: np.ndarray, step: float,
             p: DetectionParams) -> tuple[np.ndarray, list[Optional[_Section]], Optional[int]]:
    """Cuts perpendicular to ``axis`` at ``centre + t * axis`` (t within ``ct_pedicle_scan_mm``, every
    ``step``), the section followed from cut to cut both ways from t = 0; the following stops where the
    section is lost, reaches the cut's border or the image's edge. Returns the positions, the sections
    and the index of t = 0 (None when its section is not whole)."""
    ts = np.arange(-p.ct_pedicle_scan_mm, p.ct_pedicle_scan_mm + 1e-6, step)
    i0 = len(ts) // 2
    secs: list[Optional[_Section]] = [None] * len(ts)
    for order in (range(i0, len(ts)), range(i0, -1, -1)):
        prev = None
        for i in order:
            sec = _ct_section(volume, centre + ts[i] * axis, axis, frame, p, prev)
            if sec is None:
                break
            secs[i], prev = sec, sec.mask
            if not sec.whole:
                break
    return ts, secs, (i0 if secs[i0] is not None and secs[i0].whole else None)  # type: ignore[union-attr]


def _ct_waist(secs: list[Optional[_Section]], i0: Optional[int], p: DetectionParams
              ) -> Optional[tuple[int, int, int]]:
    """The isthmus among the cuts of :func:`_ct_scan`: (its index, first and last index of the run of whole
    sections around the first cut ``i0``), the smallest of that run when the sections widen by
    ``ct_pedicle_widening`` (or reach the cut's border) on both sides of it; None otherwise."""
    if i0 is None:
        return None
    lo = hi = i0
    while lo > 0 and secs[lo - 1] is not None and secs[lo - 1].whole:  # type: ignore[union-attr]
        lo -= 1
    while hi + 1 < len(secs) and secs[hi + 1] is not None and secs[hi + 1].whole:  # type: ignore[union-attr]
        hi += 1
    areas = np.array([secs[k].area for k in range(lo, hi + 1)])  # type: ignore[union-attr]
    j = int(np.argmin(areas))
    need = p.ct_pedicle_widening * float(areas[j])

    def widens(part: np.ndarray, beyond: int) -> bool:
        joined = 0 <= beyond < len(secs) and secs[beyond] is not None and secs[beyond].window  # type: ignore
        return bool(part.max() >= need or joined)

    if not (widens(areas[: j + 1], lo - 1) and widens(areas[j:], hi + 1)):
        return None
    return lo + j, lo, hi


def _ct_isthmus(volume: Volume, frame: BodyFrame, side: int, start: np.ndarray, p: DetectionParams
                ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(centre, axis) of the pedicle's narrowest section (:func:`ct_pedicle`, step 2), or None."""
    coarse = 4.0 * p.ct_pedicle_angle_step_deg
    best = None
    for ml in np.arange(p.ct_pedicle_axis_ml_deg[0], p.ct_pedicle_axis_ml_deg[1] + 1e-6, coarse):
        for cc in np.arange(p.ct_pedicle_axis_cc_deg[0], p.ct_pedicle_axis_cc_deg[1] + 1e-6, coarse):
            _, secs, i0 = _ct_scan(volume, frame, start, _ct_axis(frame, side, ml, cc), 1.0, p)
            got = _ct_waist(secs, i0, p)
            if got is not None and (best is None or secs[got[0]].area < best[0]):  # type: ignore[union-attr]
                best = (secs[got[0]].area, float(ml), float(cc), secs[got[0]].centroid)  # type: ignore[union-attr]
    if best is None:
        return None
    _, ml, cc, centre = best
    for _ in range(p.ct_pedicle_max_iterations):
        ml, cc = _ct_narrowest_direction(volume, frame, side, centre, ml, cc, p)
        ts, secs, i0 = _ct_scan(volume, frame, centre, _ct_axis(frame, side, ml, cc), p.ct_pedicle_step_mm, p)
        got = _ct_waist(secs, i0, p)
        if got is None:
            return None
        moved = float(np.linalg.norm(secs[got[0]].centroid - centre))  # type: ignore[union-attr]
        centre = secs[got[0]].centroid  # type: ignore[union-attr]
        if moved < 0.3:
            break
    k, lo, hi = got
    tol = (1.0 + p.ct_pedicle_waist_tolerance) * secs[k].area  # type: ignore[union-attr]
    a = b = k
    while a - 1 >= lo and secs[a - 1].area <= tol:  # type: ignore[union-attr]
        a -= 1
    while b + 1 <= hi and secs[b + 1].area <= tol:  # type: ignore[union-attr]
        b += 1
    w = np.array([secs[i].area for i in range(a, b + 1)])  # type: ignore[union-attr]
    c = np.array([secs[i].centroid for i in range(a, b + 1)])  # type: ignore[union-attr]
    return (c * w[:, None]).sum(axis=0) / w.sum(), _ct_axis(frame, side, ml, cc)


def _ct_narrowest_direction(volume: Volume, frame: BodyFrame, side: int, centre: np.ndarray, ml0: float,
                            cc0: float, p: DetectionParams) -> tuple[float, float]:
    """The axis angles within two fine steps of (``ml0``, ``cc0``), inside the allowed ranges, whose
    perpendicular cut through ``centre`` has the smallest whole section (``ml0``, ``cc0`` when none is
    whole)."""
    fine = p.ct_pedicle_angle_step_deg
    best = None
    for ml in np.arange(ml0 - 2 * fine, ml0 + 2 * fine + 1e-6, fine):
        for cc in np.arange(cc0 - 2 * fine, cc0 + 2 * fine + 1e-6, fine):
            if not (p.ct_pedicle_axis_ml_deg[0] <= ml <= p.ct_pedicle_axis_ml_deg[1]
                    and p.ct_pedicle_axis_cc_deg[0] <= cc <= p.ct_pedicle_axis_cc_deg[1]):
                continue
            sec = _ct_section(volume, centre, _ct_axis(frame, side, ml, cc), frame, p)
            if sec is not None and sec.whole and (best is None or sec.area < best[0]):
                best = (sec.area, float(ml), float(cc))
    return (ml0, cc0) if best is None else best[1:]


def mr_pedicle(ratio: WorkGrid, post: np.ndarray, axis: np.ndarray, ap: np.ndarray, lat: np.ndarray,
                height: float, side: int, half_width: float, p: DetectionParams) -> Optional[np.ndarray]:
    """MRI pedicle centre on one side (+1 left, -1 right).

    In a coronal section (across, cranio-caudal) behind the posterior wall the pedicle is an oval of
    marrow signal inside its dark cortex, lateral to the canal and surrounded by fat, fluid or muscle.
    In each section from ``pedicle_depth_mm`` the marrow blob nearest the expected place is taken; in
    front it joins the body, behind it the lamina and transverse process, so it is smallest at the
    isthmus. The centre is the blob's innermost point (furthest from its edge), which the root of the
    transverse process does not pull sideways. Where to look first: ``pedicle_lateral_fraction`` of the
    body's own half-width on that side (``half_width``, measured); the blob found in the image decides."""
    s = ratio.spacing
    step = s / 2
    hs = np.arange(-0.5 * height, 0.7 * height + 1e-6, step)
    xs = np.arange(0.0, p.pedicle_lateral_mm[1] + 1e-6, step)
    expect = np.array([0.1 * height, p.pedicle_lateral_fraction * half_width])  # (height, lateral)
    found = []
    for d in np.arange(p.pedicle_depth_mm[0], p.pedicle_depth_mm[1] + 1e-6, 1.0):
        o = post - d * ap
        pts = o[None, None, :] + hs[:, None, None] * axis[None, None, :] + side * xs[None, :, None] * lat[None, None, :]
        band = np.abs(ratio.sample(pts) - 1.0) < p.mr_marrow_tol
        band[:, xs < p.pedicle_lateral_mm[0]] = False
        band = ndimage.binary_opening(band, structure=np.ones((3, 3), bool))
        lab, n = ndimage.label(band)
        if n == 0:
            continue
        best = None
        for comp in range(1, n + 1):
            m = lab == comp
            area = float(m.sum()) * step * step
            if not 15.0 <= area <= 700.0:
                continue
            dist = ndimage.distance_transform_edt(m)
            iy, ix = np.unravel_index(int(np.argmax(dist)), dist.shape)
            where = np.array([hs[iy], xs[ix]])
            gap = float(np.linalg.norm((where - expect) / np.array([0.3 * height, 10.0])))
            if gap < 1.5 and (best is None or gap < best[0]):
                best = (gap, area, hs[iy], xs[ix])
        if best is not None:
            found.append((best[1], d, best[2], best[3]))
    if not found:
        return None
    # the isthmus: the middle of the depths where the pedicle stands alone (joined to neither the body
    # in front nor the arch behind), among those with the smallest sections
    # follow the pedicle from section to section (its centre moves little); the longest such track is
    # the pedicle, from where it leaves the body to where it joins the arch: its middle is the isthmus
    tracks: list[list[tuple[float, float, float, float]]] = []
    for f in found:
        for tr in tracks:
            last = tr[-1]
            if f[1] - last[1] <= 2.5 and abs(f[2] - last[2]) <= 3.0 and abs(f[3] - last[3]) <= 3.0:
                tr.append(f)
                break
        else:
            tracks.append([f])
    track = max(tracks, key=len)
    mid = track[len(track) // 3: len(track) - len(track) // 3] or track
    d = float(np.median([f[1] for f in track]))
    h = float(np.median([f[2] for f in mid]))
    x = float(np.median([f[3] for f in mid]))
    return post - d * ap + h * axis + side * x * lat


def symmetric_pedicles(ped_l: Optional[np.ndarray], ped_r: Optional[np.ndarray], post: np.ndarray,
                        axis: np.ndarray, ap: np.ndarray, lat: np.ndarray, p: DetectionParams
                        ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Thick sagittal slices leave each pedicle's position uncertain by a few millimetres; the two are
    nearly mirror images, so their depth and height are averaged, and so are their distances from the
    midline when these differ by more than ``mr_pedicle_asymmetry_mm``."""
    if ped_l is None or ped_r is None:
        return ped_l, ped_r
    loc = []
    for q in (ped_l, ped_r):
        r = q - post
        loc.append(np.array([abs(r @ lat), r @ ap, r @ axis]))
    mean = 0.5 * (loc[0] + loc[1])
    out = []
    for side, here in zip((+1, -1), loc):
        x = mean[0] if abs(loc[0][0] - loc[1][0]) > p.mr_pedicle_asymmetry_mm else here[0]
        out.append(post + side * x * lat + mean[1] * ap + mean[2] * axis)
    return out[0], out[1]


def posterior_wall_line(ns: NativeSlices, height: float, p: DetectionParams) -> float:
    """Depth (mm behind ``ns.origin``, the posterior wall on the midline) of the most posterior point of the
    body's posterior surface between the pedicles (|x| <= ``mr_wall_line_half_span_mm``): the line from
    which the pedicles start (the midline wall itself may be recessed, as in a kidney-shaped body)."""
    pos = np.arange(0.0, 30.0, 0.25)
    found = []
    span = p.mr_wall_line_half_span_mm
    for x in np.linspace(-span, span, 8):
        here = []
        for dh in np.linspace(-0.12, 0.12, 5) * height:
            prof = ns.sample(x, 12.0 - pos, dh)
            e = cortex_line(prof[pos >= 3.0], pos[pos >= 3.0], p)
            if e is not None:
                here.append(surface(e, "wall") - 12.0)
        if len(here) >= 3:
            found.append(float(np.median(here)))
    if not found:
        return 0.0
    return float(np.clip(max(found), 0.0, 4.0))


def mr_pedicle_native(ns: NativeSlices, side: int, height: float, coarse: Optional[np.ndarray], d_line: float,
                       name: str, p: DetectionParams) -> Optional[tuple[float, float, float, dict]]:
    """MRI pedicle centre on one side (+1 left, -1 right) in the acquired sagittal slices, as (x, depth
    behind the wall, h) in the frame of ``ns`` (origin: the posterior wall on the midline).

    In each parasagittal slice through the pedicle it is a bar of marrow between the superior and
    inferior vertebral notches, running from the body to the posterior arch. Its height is the
    centre of the bar's top and bottom edges; its lateral place, at each depth, the apex of the bar
    heights over neighbouring slices (a parabola through the tallest and its neighbours: the slice
    through the pedicle's axis cuts the widest chord); its depth (the isthmus), the middle of the
    bar from the posterior wall line to where it joins the arch. The search starts at ``coarse`` (the
    pedicle found on the working grid); None without it (not measured: placed by hand)."""
    if not ns.sagittal or coarse is None:
        return None
    x_c, a_c, h_c = ns.local(coarse)
    d_c = -a_c
    hs = np.arange(h_c - 16.0, h_c + 16.0 + 1e-6, 0.25)
    ds = np.arange(d_line - 2.0, d_line + 18.0 + 1e-6, 0.5)
    ks = [k for k in range(ns.nk) if 3.0 <= side * float(ns.x_of(k, -d_c, h_c)) <= 40.0]
    if len(ks) < 2:
        return None
    runs = np.full((len(ks), len(ds), 2), np.nan)
    xk = np.array([[float(ns.x_of(k, -d, h_c)) for d in ds] for k in ks])
    dd_, hh_ = np.meshgrid(ds, hs, indexing="ij")
    for i, k in enumerate(ks):
        profs = ndimage.gaussian_filter1d(ns.in_slice(k, -dd_, hh_), 1.0, axis=1)
        for j in range(len(ds)):
            e = marrow_run(profs[j], hs, h_c, lo=p.mr_run_level)
            if e is not None:
                runs[i, j] = e
    H = runs[..., 1] - runs[..., 0]
    C = runs.mean(axis=-1)
    near = np.isfinite(H) & (np.abs(C - h_c) < 3.5) & (H > 3.0) & (H < 0.85 * height)
    core = (ds >= d_line + p.mr_pedicle_core_mm[0]) & (ds <= d_line + p.mr_pedicle_core_mm[1])
    if not near[:, core].any():
        return None
    h_ref = np.array([np.median(H[i, core][near[i, core]]) if near[i, core].any() else np.inf
                      for i in range(len(ks))])
    valid = near & (H <= p.mr_pedicle_bar_jump * h_ref[:, None])
    # the pedicle's height: centre of its bar in the slices with the tallest bars
    tall = np.array([np.median(H[i, core][valid[i, core]]) if valid[i, core].sum() >= 3 else 0.0
                     for i in range(len(ks))])
    if tall.max() <= 0:
        return None
    main = tall >= 0.8 * tall.max()
    h_i = float(np.median(C[main][:, core][valid[main][:, core]]))
    half_h = 0.5 * float(np.median(H[main][:, core][valid[main][:, core]]))
    # lateral place per depth: apex of the bar heights over the slices
    us, dd = [], []
    for j in range(len(ds)):
        col = np.where(valid[:, j] & (np.abs(C[:, j] - h_i) < 2.5), np.maximum(runs[:, j, 1] - h_i, 0.0), 0.0)
        if col.max() <= 0:
            continue
        order = np.argsort(xk[:, j])
        us.append(parabola_apex(xk[order, j], col[order]))
        dd.append(ds[j])
    if len(us) < 4:
        return None
    us, dd = np.asarray(us), np.asarray(dd)
    # where the pedicle joins the arch: the end of the bar in the slice through its axis
    j9 = int(np.argmin(np.abs(ds - (d_line + p.mr_pedicle_core_mm[1]))))
    u9 = float(np.median(us[np.abs(dd - ds[j9]) <= 2.0])) if np.any(np.abs(dd - ds[j9]) <= 2.0) else x_c
    im = int(np.argmin(np.abs(xk[:, j9] - u9)))
    j = j9
    if not valid[im, j]:
        return None
    while j + 1 < len(ds) and valid[im, j + 1]:
        j += 1
    d_b = float(ds[j])
    if not 7.0 <= d_b - d_line <= 20.0:
        return None
    d_i = 0.5 * (d_line + d_b)
    sel = (dd >= d_line + 1.0) & (dd <= d_b - 1.0)
    # the apex follows the pedicle from slice to slice; a jump to a transverse process beside it (where the
    # pedicle's own bar is lost in a slice) is left out
    incore = (dd >= d_line + p.mr_pedicle_core_mm[0]) & (dd <= d_line + p.mr_pedicle_core_mm[1])
    u_med = float(np.median(us[incore])) if incore.any() else float(np.median(us))
    sel &= np.abs(us - u_med) <= 2.5
    if sel.sum() >= 4:
        coef = np.polyfit(dd[sel], us[sel], 1)
        res = us[sel] - np.polyval(coef, dd[sel])
        keep = np.abs(res) <= max(0.5, 2.5 * float(np.median(np.abs(res))))
        if keep.sum() >= 4:
            coef = np.polyfit(dd[sel][keep], us[sel][keep], 1)
        u_i = float(np.polyval(coef, d_i))
    else:
        u_i = float(np.median(us))
    return u_i, d_i, h_i, {"d_b": d_b, "half_height": half_h}


def axial_pedicle_x(axial: Volume, origin: np.ndarray, lat: np.ndarray, ap: np.ndarray, axis: np.ndarray, side: int,
                     x: float, d: float, h: float, half_h: float, p: DetectionParams) -> Optional[float]:
    """The sideways place of a pedicle centre measured on an axial series that covers it: in each axial
    slice through the pedicle's upper part (``mr_axial_pedicle_band`` of its half-height above its centre,
    clear of the transverse process, which arises lower down), the middle of the pedicle's marrow between its
    medial cortex (the canal) and its lateral cortex, at depths around the centre; a straight line through
    these middles over depth (the pedicle runs obliquely) read at the centre's depth. Coordinates: ``x``
    toward the left, ``d`` mm behind ``origin`` (the posterior wall's midline point), ``h`` cranial.
    None when no slice qualifies or the pedicle is not found in it."""
    m = axial.ijk_to_lps
    normal = np.cross(m[:3, 0], m[:3, 1])
    normal /= np.linalg.norm(normal)
    n_ax = float(normal @ axis)
    if abs(n_ax) < 0.8 or half_h < 2.0:
        return None

    def h_on(k: float, xx, aa):
        plane = float(normal @ (m[:3, 3] + k * m[:3, 2])) - float(normal @ origin)
        return (plane - np.asarray(xx) * float(normal @ lat) - np.asarray(aa) * float(normal @ ap)) / n_ax

    def lps(xx, aa, hh):
        xx, aa, hh = np.broadcast_arrays(np.asarray(xx, float), np.asarray(aa, float), np.asarray(hh, float))
        return origin + xx[..., None] * lat + aa[..., None] * ap + hh[..., None] * axis

    xs = np.arange(x - 14.0, x + 14.0 + 1e-6, 0.25)
    centres, depths = [], []
    for k in range(axial.array.shape[0]):
        hk = float(h_on(k, x, -d))
        if not h + p.mr_axial_pedicle_band[0] * half_h <= hk <= h + p.mr_axial_pedicle_band[1] * half_h:
            continue
        # the body's marrow in the same slice (this series' own signal level)
        bx, ba = np.meshgrid(np.arange(-6.0, 6.0 + 1e-6, 1.5), np.arange(6.0, 16.0 + 1e-6, 1.5), indexing="ij")
        marrow = float(np.median(axial.sample(lps(bx, ba, h_on(k, bx, ba)))))
        if not marrow > 0:
            continue
        for dd in np.arange(d - 3.0, d + 3.0 + 1e-6, 0.5):
            prof = axial.sample(lps(xs, -dd, h_on(k, xs, -dd))) / marrow
            prof = ndimage.gaussian_filter1d(prof, 1.0)
            e = marrow_run(prof, xs, x, lo=p.mr_run_level, max_gap_mm=1.5)
            if e is None or not 3.0 <= e[1] - e[0] <= 25.0:
                continue
            centres.append(0.5 * (e[0] + e[1]))
            depths.append(dd)
    if len(centres) < 5:
        return None
    c, dd = np.asarray(centres), np.asarray(depths)
    med = float(np.median(c))
    keep = np.abs(c - med) <= 2.5
    if keep.sum() < 5:
        return None
    coef = np.polyfit(dd[keep], c[keep], 1)
    if abs(coef[0]) > 1.2:
        return med
    return float(np.polyval(coef, d))
