"""Reference anatomy from the label maps of ../shared/data, computed independently of planner code.

Used by ``bench/anatomy_bench.py`` and ``tests/test_levels_real.py``. Everything here reads the label
maps with nibabel (RAS affine converted to LPS) and measures them with numpy/scipy; nothing comes from
``planner.levels``.

**The body frame and the mid-sagittal line** (:func:`body_reference`). For one labelled vertebral body
(a binary mask):

* ``centroid``: the mean LPS position of its voxel centres.
* ``e_lat``: the image's left-right axis (the direction across the sagittal slices; on CT the LPS x
  axis), a unit vector.
* The *mid-sagittal plane* of the body is the plane through the centroid with normal ``e_lat``. The
  body's section in that plane is taken from the voxels whose centres lie within half a voxel
  (at least 1 mm) of it.
* ``e_h`` (cranio-caudal) and ``e_ap`` (antero-posterior) are the two principal axes (PCA) of that
  section, in the plane: ``e_h`` is the one closer to the local direction of the spine (from the
  centroid of the body below to the centroid of the body above when they are labelled, else the
  image's superior axis), pointing cranially; ``e_ap`` is perpendicular to it in the plane, pointing
  anteriorly (LPS -y).
* The **mid-sagittal line** of a wall is the line through the centroid along ``e_ap``; the **anterior
  and posterior wall points** are where that line leaves the body, going anteriorly and posteriorly
  from the centroid: the first point where the trilinearly interpolated mask falls below 0.5 (sampled
  every 0.1 mm, linear between samples). The **superior and inferior endplate points** are the same
  along the line through the centroid along ``e_h``.

Errors against a found landmark are taken along these axes: wall errors along ``e_ap`` (the AP
direction, in the mid-sagittal plane), endplate errors along ``e_h``; the body-centre error is the 3D
distance to the centroid.

**Pedicle centre on CT** (:func:`pedicle_reference`): the centre of the narrowest part of the bone bridge
between body and arch, measured on the label's own geometry: the vertebra's label (body and posterior
elements together; on the TPTBox crop the vertebra instance label, on the TotalSegmentator CT the vertebra
label) is read as a continuous mask by trilinear interpolation of the binary label and cut at its 0.5
level, sampled every 0.5 mm (sub-voxel on both CTs). A *cut* is a plane; its *section* is the connected
part of the mask in that plane (a square of +-20 mm) at the cut's centre (or overlapping the previous
cut's section, when cuts are followed along an axis). A section reaching the square's border has joined a
larger mass (the body, the arch); one reaching the outermost voxel of the label map may go on beyond the
image.

1. *Start*: cuts perpendicular to ``e_ap`` behind the posterior wall point, between the heights of the
   endplate points, through the posterior elements (vertebra label minus body mask) on that side out to
   the body's half-width (measured from the centroid along ``e_lat``); the section nearest to 70 % of that
   half-width is followed from the wall backwards; the bridge runs from where the section first reaches
   30 % of its median area to where it reaches within 3 mm of the mid-sagittal plane (the lamina) or falls
   under half its largest area; the start is the area-weighted centroid of its narrowest cuts (width within
   one voxel of the smallest) over its inner 80 %. Where one side has no such bridge, the other side's start
   mirrored through the mid-sagittal plane is used (only as the place to start).
2. *Narrowest cut*: a plane across a tube has its smallest section when it is perpendicular to the tube,
   so the pedicle's axis and its isthmus are found together. From the start: the axis direction (within
   -10..50 deg medio-lateral, positive converging toward the front, and -30..30 deg cranio-caudal of
   straight back; grid of 7.5 deg, then 2.5 deg) whose perpendicular cut through the current centre has
   the smallest whole section; then cuts perpendicular to that axis every 0.5 mm within +-10 mm, the
   section followed from cut to cut, and the smallest whole section around the centre becomes the new
   centre; repeated until the centre moves less than 0.3 mm.
3. *Checks*: the smallest section must be a waist (the sections widen by a quarter, or join a larger mass,
   on both sides of it), must not touch the edge of the label map next to it (else the pedicle may be cut by
   the field of view: no reference), and the
   sections toward the body must reach the body mask (a bridge between body and arch, not a process). On
   the TPTBox crop L2's pedicles lie above the crop, and what is left of its bridge narrows to no waist.
4. *Centre*: the area-weighted mean of the centroids of the consecutive cuts within 10 % of the smallest
   area (the middle of the isthmus where it is evenly narrow).

Its robustness is measured by ``bench/anatomy_bench.py --reference-check`` (when it was written: the centre
moved at most 0.55 mm when the start was moved 2.5 mm in any of six directions, except 1.7 mm at L5 left and
1.1 mm at L4 left of example_ct, and at most 0.85 mm when samples and cuts were every 0.25 mm instead of 0.5 mm;
S1's at most 0.46 mm and 0.26 mm);
the axes converge toward the front by 8 to 26 deg (mean of both sides, from L1 to L5 on example_ct), as lumbar
pedicles do. ``tests/test_levels_real.py`` checks it on a synthetic bridge whose isthmus is known.
At S1 of example_ct the vertebra label (26, TotalSegmentator's S1) holds S1's body, pedicles and arch
and leaves the alae beside the body unlabelled, so the label's bridge narrows to a waist at the pedicle,
lateral to the canal and just behind the body's posterior-superior corner: the same definition as at the
lumbar levels, read on the label's own boundary. No reference exists where the checks fail
(``PedicleRef.why_not`` says why). Nothing here comes from
``planner``: the detector is measured against it, never the other way round.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: VerSe numbers of the lumbar MRI set (lumbar_mri_vb/README section 0).
VERSE_NAMES = {17: "T10", 18: "T11", 19: "T12", 20: "L1", 21: "L2", 22: "L3", 23: "L4", 24: "L5", 25: "L6", 26: "S1"}
#: TotalSegmentator v2 "total" vertebra labels of example_ct_vertebrae_labels.nii.gz.
TOTALSEG_NAMES = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}
#: The proposed ladder (names the level finder may return), cranial to caudal.
LADDER = ("T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")


def load_label_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(integer array indexed [i, j, k] as stored, 4x4 ijk -> LPS mm) of a NIfTI label map (nibabel)."""
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj).astype(np.int32), RAS_TO_LPS @ img.affine


def _lps_of(ijk: np.ndarray, ijk_to_lps: np.ndarray) -> np.ndarray:
    return np.asarray(ijk, float) @ ijk_to_lps[:3, :3].T + ijk_to_lps[:3, 3]


def _ijk_of(lps: np.ndarray, ijk_to_lps: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(ijk_to_lps)
    return np.asarray(lps, float) @ inv[:3, :3].T + inv[:3, 3]


def sample_mask(mask: np.ndarray, ijk_to_lps: np.ndarray, pts_lps: np.ndarray) -> np.ndarray:
    """Trilinear value of a binary mask at LPS points (..., 3); 0 outside."""
    pts = np.asarray(pts_lps, float)
    ijk = _ijk_of(pts.reshape(-1, 3), ijk_to_lps)
    v = ndimage.map_coordinates(mask.astype(np.float32), ijk.T, order=1, mode="constant", cval=0.0)
    return v.reshape(pts.shape[:-1])


def label_at(labels: np.ndarray, ijk_to_lps: np.ndarray, p_lps: Sequence[float]) -> int:
    """The label of the voxel nearest to an LPS point (0 outside the map)."""
    ijk = np.round(_ijk_of(np.asarray(p_lps, float), ijk_to_lps)).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= labels.shape):
        return 0
    return int(labels[tuple(ijk)])


def _exit(mask: np.ndarray, ijk_to_lps: np.ndarray, start: np.ndarray, direction: np.ndarray,
          max_mm: float = 80.0) -> Optional[np.ndarray]:
    """Where the ray from ``start`` along ``direction`` first leaves the mask (0.5 level)."""
    t = np.arange(0.0, max_mm, 0.1)
    v = sample_mask(mask, ijk_to_lps, start[None, :] + t[:, None] * direction[None, :])
    out = np.flatnonzero(v < 0.5)
    if out.size == 0 or out[0] == 0:
        return None
    k = int(out[0])
    v0, v1 = float(v[k - 1]), float(v[k])
    f = (v0 - 0.5) / (v0 - v1) if v0 != v1 else 0.0
    return start + (t[k - 1] + f * 0.1) * direction


@dataclass
class BodyRef:
    name: str
    centroid: np.ndarray
    e_lat: np.ndarray
    e_h: np.ndarray
    e_ap: np.ndarray
    anterior_wall: Optional[np.ndarray]
    posterior_wall: Optional[np.ndarray]
    superior_endplate: Optional[np.ndarray]
    inferior_endplate: Optional[np.ndarray]


def body_reference(name: str, mask: np.ndarray, ijk_to_lps: np.ndarray, lateral_lps: Sequence[float],
                   spine_dir_lps: Optional[Sequence[float]] = None) -> BodyRef:
    """The body frame, mid-sagittal line, walls and endplates of one labelled body (module docstring)."""
    vox = np.argwhere(mask)
    pts = _lps_of(vox, ijk_to_lps)
    c = pts.mean(axis=0)
    e_lat = np.asarray(lateral_lps, float)
    e_lat = e_lat / np.linalg.norm(e_lat)
    voxel = float(np.min(np.linalg.norm(ijk_to_lps[:3, :3], axis=0)))
    slab = pts[np.abs((pts - c) @ e_lat) <= max(1.0, 0.5 * voxel + 1e-6)]
    inplane = (slab - c) - np.outer((slab - c) @ e_lat, e_lat)
    _, _, vt = np.linalg.svd(inplane, full_matrices=False)
    axes = [v - (v @ e_lat) * e_lat for v in vt[:2]]
    axes = [v / np.linalg.norm(v) for v in axes]
    sdir = np.array([0.0, 0.0, 1.0]) if spine_dir_lps is None else np.asarray(spine_dir_lps, float)
    sdir = sdir / np.linalg.norm(sdir)
    e_h = max(axes, key=lambda v: abs(v @ sdir))
    if e_h @ sdir < 0:
        e_h = -e_h
    e_ap = np.cross(e_h, e_lat)
    e_ap /= np.linalg.norm(e_ap)
    if e_ap[1] > 0:  # LPS: anterior is -y
        e_ap = -e_ap
    return BodyRef(name, c, e_lat, e_h, e_ap,
                   _exit(mask, ijk_to_lps, c, e_ap), _exit(mask, ijk_to_lps, c, -e_ap),
                   _exit(mask, ijk_to_lps, c, e_h), _exit(mask, ijk_to_lps, c, -e_h))


def spine_directions(centroids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per name, the direction from the body below to the body above (the neighbours labelled)."""
    order = [n for n in ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1") if n in centroids]
    out = {}
    for i, n in enumerate(order):
        up = centroids[order[max(0, i - 1)]]
        down = centroids[order[min(len(order) - 1, i + 1)]]
        d = up - down
        out[n] = d / np.linalg.norm(d) if np.linalg.norm(d) > 1e-6 else np.array([0.0, 0.0, 1.0])
    return out


def bodies_reference(labels: np.ndarray, ijk_to_lps: np.ndarray, names: dict[int, str],
                     lateral_lps: Sequence[float], body_mask: Optional[np.ndarray] = None) -> dict[str, BodyRef]:
    """:func:`body_reference` for every named label (restricted to ``body_mask`` when given)."""
    masks = {}
    for value, name in names.items():
        m = labels == value
        if body_mask is not None:
            m &= body_mask
        if m.sum() >= 50:
            masks[name] = m
    cents = {n: _lps_of(np.argwhere(m), ijk_to_lps).mean(axis=0) for n, m in masks.items()}
    dirs = spine_directions(cents)
    return {n: body_reference(n, m, ijk_to_lps, lateral_lps, dirs[n]) for n, m in masks.items()}


@dataclass
class PedicleRef:
    left: Optional[np.ndarray]
    right: Optional[np.ndarray]
    #: per side (+1 left, -1 right): the pedicle axis (unit, from the body toward the arch), or None
    axes: dict
    #: per side: why there is no reference (None when there is one)
    why_not: dict
    #: per side: (distance along the axis from the centre, section area mm^2) of the final cuts, for inspection
    profile: dict


#: Sampling step of the reference's cuts (mm).
_STEP = 0.5
#: Half-size of the square sampled in each cut (mm): a section reaching its border is not a pedicle's.
_WINDOW = 20.0
#: Pedicle axis angles searched, relative to the body frame (degrees): medio-lateral (positive: the axis
#: runs laterally going back, i.e. the pedicles converge toward the front) and cranio-caudal.
_ML_RANGE, _CC_RANGE = (-10.0, 50.0), (-30.0, 30.0)


def _coronal_bridge(body: BodyRef, posterior: np.ndarray, ijk_to_lps: np.ndarray, side: int, reach: float,
                    hs: np.ndarray, wall: np.ndarray, voxel_mm: float) -> Optional[np.ndarray]:
    """Stage 1, the start of the search: cuts perpendicular to ``e_ap`` through the posterior elements, the
    waist's centroid (module docstring), or None."""
    xs = np.arange(-50.0, 50.0 + 1e-6, _STEP)
    secs = []
    for d in np.arange(0.0, 35.0 + 1e-6, _STEP):
        o = wall - d * body.e_ap
        pts = o[None, None, :] + hs[:, None, None] * body.e_h[None, None, :] + xs[None, :, None] * body.e_lat[None, None, :]
        cut = sample_mask(posterior, ijk_to_lps, pts) >= 0.5
        cut &= ((side * xs > 0) & (side * xs <= reach))[None, :]
        lab, n = ndimage.label(cut)
        if n == 0:
            secs.append((d, 0.0, None, False, 0.0))
            continue
        best = None
        for k in range(1, n + 1):
            comp = lab == k
            ch, cx = ndimage.center_of_mass(comp)
            gap = abs(abs(xs[0] + cx * _STEP) - 0.7 * reach)
            if best is None or gap < best[0]:
                best = (gap, comp, ch, cx)
        _, comp, ch, cx = best
        centre = o + (hs[0] + ch * _STEP) * body.e_h + (xs[0] + cx * _STEP) * body.e_lat
        secs.append((d, float(comp.sum()) * _STEP ** 2, centre, bool(np.any(comp[:, np.abs(xs) <= 3.0])),
                     float(comp.any(axis=0).sum()) * _STEP))
    areas = np.array([s[1] for s in secs])
    if not np.any(areas > 0):
        return None
    floor = 0.3 * float(np.median(areas[areas > 0]))
    start = next(i for i, s in enumerate(secs) if s[1] >= floor)
    end = next((i for i in range(start, len(secs)) if secs[i][3]), len(secs))
    top = 0.0
    for i in range(start, end):
        if secs[i][1] < 0.5 * top:
            end = i
            break
        top = max(top, secs[i][1])
    run = [s for s in secs[start:end] if s[1] > 0]
    if len(run) < 3:
        return None
    cut_n = max(1, int(round(0.1 * len(run))))
    inner = run[cut_n: len(run) - cut_n] or run
    i_min = min(range(len(inner)), key=lambda i: (inner[i][4], inner[i][1]))
    tol = inner[i_min][4] + max(1.0, voxel_mm)
    lo = hi = i_min
    while lo > 0 and inner[lo - 1][4] <= tol:
        lo -= 1
    while hi + 1 < len(inner) and inner[hi + 1][4] <= tol:
        hi += 1
    waist = inner[lo: hi + 1]
    wts = np.array([w[1] for w in waist])
    return (np.array([w[2] for w in waist]) * wts[:, None]).sum(axis=0) / wts.sum()


def _axis_direction(body: BodyRef, side: int, ml_deg: float, cc_deg: float) -> np.ndarray:
    """Unit vector from the body toward the arch, ``ml_deg`` toward the ``side`` (+1 along ``e_lat``) and
    ``cc_deg`` cranially from straight back (``-e_ap``)."""
    ml, cc = math.radians(ml_deg), math.radians(cc_deg)
    d = (-body.e_ap * math.cos(ml) * math.cos(cc) + side * body.e_lat * math.sin(ml) * math.cos(cc)
         + body.e_h * math.sin(cc))
    return d / np.linalg.norm(d)


def _cut(vertebra: np.ndarray, ijk_to_lps: np.ndarray, centre: np.ndarray, normal: np.ndarray, e_lat: np.ndarray,
         prev: Optional[np.ndarray] = None, sample: float = _STEP) -> Optional[dict]:
    """The section of the vertebra mask in the plane through ``centre`` perpendicular to ``normal``
    (trilinear mask >= 0.5 at samples every ``sample`` mm): the connected part overlapping ``prev`` most (the previous
    cut's section), else the one holding the sample nearest to ``centre`` (within 5 mm). Its area (mm^2),
    centroid (LPS), samples (LPS), whether it reaches the square's border (``window``) and whether it
    reaches the outermost voxels of the label map (``edge``: it may go on beyond the image). None when
    there is no such section."""
    u = e_lat - (e_lat @ normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    g = np.arange(-_WINDOW, _WINDOW + 1e-6, sample)
    pts = centre[None, None, :] + g[:, None, None] * v[None, None, :] + g[None, :, None] * u[None, None, :]
    lab, n = ndimage.label(sample_mask(vertebra, ijk_to_lps, pts) >= 0.5)
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
        if dist[j] > 5.0:
            return None
        k = int(lab[rr[j], cc[j]])
    comp = lab == k
    cv, cu = ndimage.center_of_mass(comp)
    inside = pts[comp]
    ijk = _ijk_of(inside, ijk_to_lps)
    return {"area": float(comp.sum()) * sample ** 2, "mask": comp, "points": inside,
            "centroid": centre + (g[0] + cv * sample) * v + (g[0] + cu * sample) * u,
            "window": bool(comp[0].any() or comp[-1].any() or comp[:, 0].any() or comp[:, -1].any()),
            "edge": bool(np.any(ijk < 0.0) or np.any(ijk > np.array(vertebra.shape) - 1.0))}


def _narrowest_orientation(vertebra: np.ndarray, ijk_to_lps: np.ndarray, body: BodyRef, side: int,
                           centre: np.ndarray, ml0: float, cc0: float, span: float, step: float,
                           sample: float = _STEP) -> Optional[tuple[float, float]]:
    """The axis angles (within ``span`` of ``ml0``, ``cc0`` and the searched ranges) whose perpendicular cut
    through ``centre`` has the smallest section."""
    best = None
    for ml in np.arange(ml0 - span, ml0 + span + 1e-6, step):
        for cc in np.arange(cc0 - span, cc0 + span + 1e-6, step):
            if not (_ML_RANGE[0] <= ml <= _ML_RANGE[1] and _CC_RANGE[0] <= cc <= _CC_RANGE[1]):
                continue
            sec = _cut(vertebra, ijk_to_lps, centre, _axis_direction(body, side, ml, cc), body.e_lat, sample=sample)
            if sec is not None and not (sec["window"] or sec["edge"]) and (best is None or sec["area"] < best[0]):
                best = (sec["area"], float(ml), float(cc))
    return None if best is None else best[1:]


def _scan_axis(vertebra: np.ndarray, ijk_to_lps: np.ndarray, centre: np.ndarray, axis: np.ndarray,
               e_lat: np.ndarray, sample: float = _STEP) -> list[Optional[dict]]:
    """Cuts perpendicular to ``axis`` at ``centre + t * axis`` for t every ``sample`` mm within +-10 mm, the
    section followed
    from cut to cut both ways from t = 0 (it stops where it is lost or reaches the square's border or the
    image's edge)."""
    ts = np.arange(-10.0, 10.0 + 1e-6, sample)
    secs: list[Optional[dict]] = [None] * len(ts)
    i0 = len(ts) // 2
    for order in (range(i0, len(ts)), range(i0, -1, -1)):
        prev = None
        for i in order:
            sec = _cut(vertebra, ijk_to_lps, centre + ts[i] * axis, axis, e_lat, prev, sample)
            if sec is None:
                break
            secs[i], prev = sec, sec["mask"]
            if sec["window"] or sec["edge"]:
                break
    return secs


def _waist(secs: list[Optional[dict]]) -> tuple[Optional[int], Optional[tuple[int, int]], str]:
    """(index of the narrowest cut, (first, last) index of the cuts around it whose section is whole, why
    not): the smallest section of the whole ones around t = 0, when the sections widen by a quarter (or join
    a larger mass, reaching the square's border) on both sides of it."""
    def whole(i: int) -> bool:
        return secs[i] is not None and not (secs[i]["window"] or secs[i]["edge"])

    i0 = len(secs) // 2
    if not whole(i0):
        return None, None, "the pedicle is cut by the edge of the image" if secs[i0] and secs[i0]["edge"] else \
            "no bone section at the pedicle"
    lo = hi = i0
    while lo > 0 and whole(lo - 1):
        lo -= 1
    while hi + 1 < len(secs) and whole(hi + 1):
        hi += 1
    areas = np.array([secs[i]["area"] for i in range(lo, hi + 1)])
    j = int(np.argmin(areas))
    a_min = float(areas[j])

    def widens(end: int, beyond: int, part: np.ndarray) -> bool:
        joined = 0 <= beyond < len(secs) and secs[beyond] is not None and secs[beyond]["window"]
        return bool(part.max() >= 1.25 * a_min or joined)

    for sec in (secs[lo - 1] if lo > 0 else None, secs[hi + 1] if hi + 1 < len(secs) else None):
        if sec is not None and sec["edge"] and not sec["window"]:
            return None, None, "the pedicle is cut by the edge of the image"
    if not (widens(lo, lo - 1, areas[: j + 1]) and widens(hi, hi + 1, areas[j:])):
        return None, None, "the bone does not narrow to a waist here"
    return lo + j, (lo, hi), ""


def _narrowest_section(vertebra: np.ndarray, body_mask: np.ndarray, ijk_to_lps: np.ndarray, body: BodyRef,
                       side: int, start: np.ndarray, sample: float = _STEP
                       ) -> tuple[Optional[np.ndarray], Optional[np.ndarray], str, list]:
    """Stage 2 (module docstring): from ``start``, alternately the axis angles whose perpendicular cut is
    the smallest and the narrowest cut along that axis, until the centre moves less than 0.3 mm; returns
    (centre, axis, why not, profile)."""
    centre = np.asarray(start, float)
    angles = _narrowest_orientation(vertebra, ijk_to_lps, body, side, centre, 15.0, 0.0, 30.0, 7.5, sample)
    if angles is None:
        return None, None, "no bone section at the pedicle", []
    for _ in range(8):
        ml, cc = angles
        axis = _axis_direction(body, side, ml, cc)
        secs = _scan_axis(vertebra, ijk_to_lps, centre, axis, body.e_lat, sample)
        k, _, why = _waist(secs)
        if k is None:
            return None, None, why, []
        moved = float(np.linalg.norm(secs[k]["centroid"] - centre))
        centre = secs[k]["centroid"]
        coarse = _narrowest_orientation(vertebra, ijk_to_lps, body, side, centre, ml, cc, 30.0, 7.5, sample)
        if coarse is None:
            return None, None, "no bone section at the pedicle", []
        angles = _narrowest_orientation(vertebra, ijk_to_lps, body, side, centre, *coarse, 5.0, 2.5, sample) or coarse
        if moved < 0.3:
            break
    axis = _axis_direction(body, side, *angles)
    secs = _scan_axis(vertebra, ijk_to_lps, centre, axis, body.e_lat, sample)
    k, span, why = _waist(secs)
    if k is None or span is None:
        return None, None, why, []
    lo, hi = span
    # the bridge joins the body in front of its waist (else it is a process or a lamina, not a pedicle)
    front = [s for s in secs[:k] if s is not None]
    if not any(np.any(sample_mask(body_mask, ijk_to_lps, s["points"]) >= 0.5) or s["window"] for s in front):
        return None, None, "the bone bridge does not reach the body", []
    a_min = secs[k]["area"]
    a = b = k
    while a - 1 >= lo and secs[a - 1]["area"] <= 1.1 * a_min:
        a -= 1
    while b + 1 <= hi and secs[b + 1]["area"] <= 1.1 * a_min:
        b += 1
    w = np.array([secs[i]["area"] for i in range(a, b + 1)])
    cen = np.array([secs[i]["centroid"] for i in range(a, b + 1)])
    ts = np.arange(-10.0, 10.0 + 1e-6, sample)
    profile = [(float(ts[i]), s["area"]) for i, s in enumerate(secs) if s is not None]
    return (cen * w[:, None]).sum(axis=0) / w.sum(), axis, "", profile


def pedicle_reference(body: BodyRef, body_mask: np.ndarray, vertebra: np.ndarray, ijk_to_lps: np.ndarray,
                      sample: float = _STEP) -> PedicleRef:
    """The pedicle centre per side from the vertebra's label and its body mask (module docstring); ``sample``:
    the step of the narrowest-cut search's samples and cuts (mm)."""
    posterior = vertebra & ~body_mask
    if body.superior_endplate is not None and body.inferior_endplate is not None:
        top = float((body.superior_endplate - body.centroid) @ body.e_h)
        bottom = float((body.inferior_endplate - body.centroid) @ body.e_h)
    else:
        top, bottom = 12.5, -12.5
    hs = np.arange(bottom, top + 1e-6, _STEP)
    voxel_mm = float(np.max(np.linalg.norm(ijk_to_lps[:3, :3], axis=0)))
    wall = body.posterior_wall if body.posterior_wall is not None else body.centroid
    lateral_sign = np.sign(body.e_lat[0]) or 1.0  # +1 when e_lat points to the patient's left
    centres: dict[int, Optional[np.ndarray]] = {}
    axes, why, prof = {}, {}, {}
    starts = {}
    for side in (+1, -1):  # +1: patient's left
        sx = int(side * lateral_sign)
        e = _exit(body_mask, ijk_to_lps, body.centroid, sx * body.e_lat)
        reach = 20.0 if e is None else float(np.linalg.norm(e - body.centroid))
        starts[side] = _coronal_bridge(body, posterior, ijk_to_lps, sx, reach, hs, wall, voxel_mm)
    for side in (+1, -1):
        sx = int(side * lateral_sign)
        start = starts[side]
        if start is None and starts[-side] is not None:
            # the other side's first estimate mirrored through the mid-sagittal plane (only where to start)
            start = starts[-side] - 2.0 * float((starts[-side] - body.centroid) @ body.e_lat) * body.e_lat
        if start is None:
            centres[side], axes[side], why[side], prof[side] = None, None, "no bone bridge behind the body", []
            continue
        centres[side], axes[side], why[side], prof[side] = _narrowest_section(vertebra, body_mask, ijk_to_lps, body,
                                                                              sx, start, sample)
        why[side] = why[side] or None
    return PedicleRef(centres[+1], centres[-1], axes, why, prof)


# ------------------------------------------------------------------------------------ data sets
def mri_cases(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".json")] for p in folder.glob("*.json"))


def fold_of_cases(cv_dir: Path) -> dict[str, int]:
    """The cross-validation fold of each scan (``DIR/folds.json`` of scripts/train_mri_bodies.py): the scan is
    measured with ``DIR/fold<K>.onnx``, trained without it."""
    folds = json.loads((cv_dir / "folds.json").read_text())["folds"]
    return {c: k for k, names in enumerate(folds) for c in names}


def mri_case(folder: Path, case: str) -> dict:
    """Labels, geometry and reference bodies of one lumbar_mri_vb scan. The lateral axis is the
    direction across the sagittal slices (voxel axis k; left and right are unknown on these scans)."""
    meta = json.loads((folder / f"{case}.json").read_text())
    labels, ijk_to_lps = load_label_map(folder / f"{case}_vb.nii.gz")
    lateral = ijk_to_lps[:3, 2] / np.linalg.norm(ijk_to_lps[:3, 2])
    if lateral[0] < 0:
        lateral = -lateral
    refs = bodies_reference(labels, ijk_to_lps, VERSE_NAMES, lateral)
    return {"case": case, "meta": meta, "labels": labels, "ijk_to_lps": ijk_to_lps, "bodies": refs,
            "names": {v: n for v, n in VERSE_NAMES.items()}}


def moved_mark(labels: np.ndarray, ijk_to_lps: np.ndarray, value: int, start: np.ndarray, rng: np.random.Generator,
               distance_mm: float = 5.0, tries: int = 200) -> np.ndarray:
    """``start`` moved ``distance_mm`` in a random direction, staying inside the body labelled ``value``."""
    for _ in range(tries):
        v = rng.normal(size=3)
        p = start + distance_mm * v / np.linalg.norm(v)
        if label_at(labels, ijk_to_lps, p) == value:
            return p
    raise RuntimeError(f"no point {distance_mm} mm from the mark inside label {value}")


#: Fields of view cut from a labelled scan (the image only; the labels stay whole): where the cut lies, from the
#: label centroids of L1, L2, L4 and L5 (``sp``: the L4-L5 step along z). ``None`` keeps that side.
FOV_CUTS = {
    "cut-disc": lambda z, sp: (z["L5"] - 0.62 * sp, None),  # the image ends in the L5-S1 disc
    "cut-mid-s1": lambda z, sp: (z["L5"] - 1.0 * sp, None),  # ... halfway down S1
    "cut-below-s1": lambda z, sp: (z["L5"] - 1.5 * sp, None),  # ... just below S1
    "cut-top-l2": lambda z, sp: (None, 0.5 * (z["L1"] + z["L2"])),  # the image starts between L1 and L2
}


def fov_cut(volume, case: dict, cut: str):
    """``volume`` cut as :data:`FOV_CUTS` names it, from the labelled bodies of ``case``."""
    z = {n: float(case["bodies"][n].centroid[2]) for n in ("L1", "L2", "L4", "L5")}
    z_min, z_max = FOV_CUTS[cut](z, z["L4"] - z["L5"])
    return cut_volume_z(volume, z_min, z_max)


def cut_volume_z(volume, z_min_lps: Optional[float] = None, z_max_lps: Optional[float] = None):
    """The volume without its slices below ``z_min_lps`` and above ``z_max_lps`` (LPS z; the slices across the
    voxel axis that runs most along z): a scan with a shorter field of view."""
    from planner.imaging.volume import Volume

    m = volume.ijk_to_lps
    axis = int(np.argmax(np.abs(m[2, :3])))  # the ijk axis along z
    z = m[2, 3] + m[2, axis] * np.arange(volume.shape_ijk[axis])
    keep = np.flatnonzero((z >= (-np.inf if z_min_lps is None else z_min_lps))
                          & (z <= (np.inf if z_max_lps is None else z_max_lps)))
    cut = m.copy()
    cut[:3, 3] += m[:3, axis] * keep[0]
    index = [slice(None)] * 3
    index[2 - axis] = slice(keep[0], keep[-1] + 1)  # the array is (k, j, i)
    return Volume(np.ascontiguousarray(volume.array[tuple(index)]), cut, volume.info)


#: Poses of a CT that a real population shows and the labelled scans do not (example_ct lies straight and
#: still): the patient turned about the spine's long axis (``turn``: LPS z, a rotated patient or a
#: rotated scoliotic spine), tilted sideways (``tilt``: about LPS y, a coronal curve) or bent forward or
#: back (``bend``: about LPS x, another lordosis or a tilted gantry), by the degrees named; image noise
#: (``noise``: Gaussian, HU standard deviation, as in a low-dose scan); and thick slices (``slices``: the
#: slices averaged over and resampled to this thickness in mm, as an abdominal CT reconstructed at 5 mm).
#: Each is (axis, degrees, noise, slice thickness; 0 keeps that).
CT_POSES = {
    "turn+5": ((0, 0, 1), 5.0, 0.0, 0.0), "turn-5": ((0, 0, 1), -5.0, 0.0, 0.0),
    "turn+10": ((0, 0, 1), 10.0, 0.0, 0.0), "turn-10": ((0, 0, 1), -10.0, 0.0, 0.0),
    "tilt+5": ((0, 1, 0), 5.0, 0.0, 0.0), "tilt-5": ((0, 1, 0), -5.0, 0.0, 0.0),
    "tilt+10": ((0, 1, 0), 10.0, 0.0, 0.0), "tilt-10": ((0, 1, 0), -10.0, 0.0, 0.0),
    "bend+10": ((1, 0, 0), 10.0, 0.0, 0.0), "bend-10": ((1, 0, 0), -10.0, 0.0, 0.0),
    "noise20": ((0, 0, 1), 0.0, 20.0, 0.0), "noise40": ((0, 0, 1), 0.0, 40.0, 0.0),
    "slices5": ((0, 0, 1), 0.0, 0.0, 5.0),
}

#: A CT grid the labelled scans (3 mm) do not show: example_ct resampled (linearly; a label map by nearest voxel)
#: onto a grid of the same extent with pixels of the first size and slices of the second (mm), as a clinical
#: lumbar CT reconstructed at 0.75 mm pixels and 1 mm slices (about 490 x 400 x 340 voxels). The anatomy does
#: not move: only the sampling, the size and so the time and memory of every step change.
CT_GRIDS = {"fine": (0.75, 1.0)}

#: An MRI pose the labelled scans (1 mm, resampled by their source) do not show: a clinical sagittal stack, its
#: slices (the volume's k axis, left-right on these scans) averaged over and resampled to 4 mm, as a sagittal T2
#: acquired with 4 mm slices (``bench/anatomy_bench.py --pose --mri-cv``, ``bench/safety_bench.py --mri
#: --mri-pose slices4``). Same form as :data:`CT_POSES`.
MR_POSES = {"slices4": ((0, 0, 1), 0.0, 0.0, 4.0)}

#: Oblique sagittal acquisitions, which the labelled scans (on the scanner's axes) do not show: the anatomy stays
#: and the grid turns. Each scan resampled onto a grid of the same size and centre whose axes are turned about an
#: LPS axis (z: a sagittal stack angled about the long axis; y: tilted in the coronal plane along a scoliotic
#: curve) by the degrees named, with slices of the thickness named, as a sagittal T2 angled on the scout:
#: (axis, degrees, slice thickness in mm).
MR_GRIDS = {"oblique-turn10": ((0, 0, 1), 10.0, 4.0), "oblique-turn20": ((0, 0, 1), 20.0, 4.0),
            "oblique-tilt10": ((0, 1, 0), 10.0, 4.0)}


def _unmoved(p_lps):
    """The map of a point between a volume and its resampling on another grid, where the anatomy does not move."""
    return None if p_lps is None else np.asarray(p_lps, float)


def regridded_volume(volume, name: str, order: int = 1, fill: float = 0.0):
    """``volume`` resampled onto the oblique grid that :data:`MR_GRIDS` names (linear, or nearest for ``order`` 0;
    a thick slice is the mean of four sub-slices across it, except for a label map). The anatomy does not move,
    so the maps between the two are the identity: ``(regridded, back, forward)`` as :func:`posed_volume`."""
    from scipy.spatial.transform import Rotation

    from planner.imaging.volume import Volume

    axis, deg, slice_mm = MR_GRIDS[name]
    m = volume.ijk_to_lps
    rot = Rotation.from_rotvec(np.radians(deg) * np.asarray(axis, float)).as_matrix()
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    shape = np.array(volume.array.shape[::-1])  # (i, j, k)
    centre = m[:3, :3] @ ((shape - 1) / 2.0) + m[:3, 3]
    new_shape = shape.copy()
    new_shape[2] = max(1, int(shape[2] * spacing[2] / slice_mm))
    new_spacing = spacing.copy()
    new_spacing[2] = slice_mm
    grid = np.eye(4)
    grid[:3, :3] = rot @ (m[:3, :3] / spacing) * new_spacing
    grid[:3, 3] = centre - grid[:3, :3] @ ((new_shape - 1) / 2.0)
    to_original = np.linalg.inv(m) @ grid
    kk, jj, ii = np.meshgrid(*(np.arange(n) for n in new_shape[::-1]), indexing="ij")
    arr = np.asarray(volume.array, np.float32)
    offsets = (np.arange(4) - 1.5) / 4.0 if order != 0 else np.zeros(1)
    out = np.zeros(kk.shape, np.float32)
    for dk in offsets:
        ijk = np.stack([ii, jj, kk + dk, np.ones_like(ii)], axis=-1).reshape(-1, 4) @ to_original.T
        out += ndimage.map_coordinates(arr, [ijk[:, 2], ijk[:, 1], ijk[:, 0]], order=order,
                                       cval=fill).reshape(kk.shape)
    out /= len(offsets)
    regridded = Volume(np.ascontiguousarray(np.rint(out).astype(volume.array.dtype)), grid, volume.info)
    return regridded, _unmoved, _unmoved


def posed_volume(volume, pose: str, order: int = 1, fill: float = -1024.0):
    """``volume`` with its content turned as :data:`CT_POSES` (or :data:`MR_POSES`; for :data:`MR_GRIDS` see
    :func:`regridded_volume`) names it (about the volume's centre, on the same grid; ``order`` 0 for a label map,
    which is never noised or averaged), noise added (seeded) or its slices made thicker (averaged over the new
    thickness, then resampled; the grid's slice spacing changes), with the maps of a point from the posed image
    back to the original and from the original to the posed image: ``(posed, back, forward)``, each
    ``f(p_lps) -> p_lps``."""
    from scipy.spatial.transform import Rotation

    from planner.imaging.volume import Volume

    if pose in MR_GRIDS:
        return regridded_volume(volume, pose, order, fill)
    if pose in CT_GRIDS:
        return finer_volume(volume, *CT_GRIDS[pose], order=order)
    axis, deg, noise, slice_mm = {**CT_POSES, **MR_POSES}[pose]
    rot = Rotation.from_rotvec(np.radians(deg) * np.asarray(axis, float)).as_matrix()
    m = volume.ijk_to_lps.copy()
    centre = m[:3, :3] @ ((np.array(volume.array.shape[::-1]) - 1) / 2.0) + m[:3, 3]
    arr = volume.array
    if deg:
        # posed(p) = original(rot^T (p - centre) + centre), as a map of (k, j, i) indices
        to_orig = np.eye(4)
        to_orig[:3, :3] = rot.T
        to_orig[:3, 3] = centre - rot.T @ centre
        swap = np.eye(4)
        swap[:3, :3] = np.eye(3)[::-1]
        kji = swap @ np.linalg.inv(m) @ to_orig @ m @ swap
        arr = ndimage.affine_transform(arr.astype(np.float32), kji[:3, :3], kji[:3, 3], order=order, cval=fill)
    if noise and order != 0:
        arr = arr + np.random.default_rng(0).normal(0.0, noise, arr.shape)
    if slice_mm:
        step = float(np.linalg.norm(m[:3, 2]))  # the slice spacing (k axis)
        # a label map is resampled, not averaged
        thick = (np.asarray(arr, np.float32) if order == 0 else
                 ndimage.uniform_filter1d(np.asarray(arr, np.float32), max(1, int(round(slice_mm / step))), axis=0))
        n = int(np.floor((arr.shape[0] - 1) * step / slice_mm)) + 1
        arr = ndimage.map_coordinates(thick, np.meshgrid(np.arange(n) * slice_mm / step, np.arange(arr.shape[1]),
                                                         np.arange(arr.shape[2]), indexing="ij"), order=order)
        m[:3, 2] *= slice_mm / step
    posed = Volume(np.ascontiguousarray(np.rint(arr).astype(volume.array.dtype)), m, volume.info)

    def back(p_lps):
        return None if p_lps is None else rot.T @ (np.asarray(p_lps, float) - centre) + centre

    def forward(p_lps):
        return rot @ (np.asarray(p_lps, float) - centre) + centre

    return posed, back, forward


def finer_volume(volume, pixel_mm: float, slice_mm: float, order: int = 1):
    """``volume`` resampled onto a grid of the same corners with about ``pixel_mm`` between the voxels of its i
    and j axes and ``slice_mm`` along k (:data:`CT_GRIDS`); linear, or nearest for ``order`` 0. Returns
    ``(volume, back, forward)`` like :func:`posed_volume`: the anatomy does not move, so both maps are the
    identity."""
    from planner.imaging.volume import Volume

    m = volume.ijk_to_lps.copy()
    step = np.linalg.norm(m[:3, :3], axis=0)  # i, j, k spacing
    n_kji = np.array(volume.array.shape)
    want = np.array([slice_mm, pixel_mm, pixel_mm])  # k, j, i
    n_new = np.floor((n_kji - 1) * step[::-1] / want).astype(int) + 1
    src = [np.arange(n) * w / st for n, w, st in zip(n_new, want, step[::-1])]  # new index -> old index, per axis
    arr = np.empty(tuple(n_new), dtype=np.float32)
    for k in range(n_new[0]):  # a slice at a time: the whole grid at once would hold several float copies
        kk, jj, ii = np.meshgrid([src[0][k]], src[1], src[2], indexing="ij")
        arr[k] = ndimage.map_coordinates(volume.array, [kk, jj, ii], order=order, mode="nearest")[0]
    m[:3, :3] = m[:3, :3] / step * want[::-1]
    fine = Volume(np.ascontiguousarray(np.rint(arr).astype(volume.array.dtype)), m, volume.info)
    return fine, _unmoved, _unmoved


#: Modic-like marrow bands put into a labelled MRI (``--modic``): the patients to be planned have Modic changes at
#: the levels to treat, the labelled scans have none. Kissing bands along the L4-L5 disc (the commonest level): L4's
#: inferior and L5's superior part of the body, ``share`` of its height in each column, with the cortical endplate
#: line (``MODIC_CORTEX_MM``) and 30 % of the marrow's own texture kept. ``disc``: the disc's own signal (type 1:
#: dark on T1, bright on T2, like the disc); ``bright``: 1.8 times the marrow (type 2 on T1 and T2: fat).
MODIC_BANDS = {"disc30": (0.3, "disc"), "disc50": (0.5, "disc"), "bright50": (0.5, "bright")}
MODIC_CORTEX_MM = 2.0


def modic_banded(volume, labels: np.ndarray, band: str, upper: str = "L4", lower: str = "L5"):
    """``volume`` (a lumbar_mri_vb scan, its labels indexed [i, j, k] on the same grid, axis i head to feet) with
    the Modic-like bands :data:`MODIC_BANDS` names along the disc between ``upper`` and ``lower``."""
    from planner.imaging.volume import Volume

    share, signal = MODIC_BANDS[band]
    code = {n: v for v, n in VERSE_NAMES.items()}
    up, lo = labels == code[upper], labels == code[lower]
    if not (up.any() and lo.any()):
        raise ValueError(f"{upper} or {lower} is not labelled")
    arr = np.transpose(volume.array, (2, 1, 0)).astype(np.float32)  # [i, j, k] like the labels
    if arr.shape != labels.shape:
        raise ValueError("the labels are not on the image's grid")
    rows = np.arange(labels.shape[0])[:, None, None]
    # per column (j, k): each body's highest and lowest row
    (up_top, up_bottom), (lo_top, lo_bottom) = (
        (np.where(b, rows, labels.shape[0]).min(0), np.where(b, rows, -1).max(0)) for b in (up, lo))
    # the disc: unlabelled voxels between the two bodies, in the columns both cover
    disc = (up.any(0) & lo.any(0))[None] & (rows > up_bottom[None]) & (rows < lo_top[None]) & (labels == 0)
    marrow = float(np.median(arr[up | lo]))
    level = float(np.median(arr[disc])) if signal == "disc" else min(float(arr.max()), 1.8 * marrow)
    step = float(np.linalg.norm(volume.ijk_to_lps[:3, 0]))  # voxel size along i (head to feet)
    cortex = MODIC_CORTEX_MM / step
    rng = np.random.default_rng(0)
    for body, is_upper, top, bottom in ((up, True, up_top, up_bottom), (lo, False, lo_top, lo_bottom)):
        height = (bottom - top + 1).astype(float)
        if is_upper:  # the upper body's inferior part
            sel = body & (rows > (bottom - share * height)[None]) & (rows <= (bottom - cortex)[None])
        else:
            sel = body & (rows < (top + share * height)[None]) & (rows >= (top + cortex)[None])
        arr[sel] = level + 0.3 * (arr[sel] - marrow) + rng.normal(0.0, 0.05 * abs(level) + 1.0, int(sel.sum()))
    info = np.iinfo(volume.array.dtype) if np.issubdtype(volume.array.dtype, np.integer) else None
    if info is not None:
        arr = np.clip(np.rint(arr), info.min, info.max)
    return Volume(np.ascontiguousarray(np.transpose(arr, (2, 1, 0)).astype(volume.array.dtype)), volume.ijk_to_lps,
                  volume.info)


def posed_levels(levels: Sequence, back) -> list:
    """Levels found on a posed image with their landmarks mapped back to the original image (for
    :func:`score_levels` against the original labels)."""
    out = []
    for lv in levels:
        lm = lv.landmarks
        moved = {n: (None if getattr(lm, n) is None else tuple(float(c) for c in back(getattr(lm, n))))
                 for n in type(lm).model_fields}
        out.append(lv.model_copy(update={"landmarks": lm.model_copy(update=moved)}))
    return out


def ct_cases(shared: Path) -> dict[str, dict]:
    """The labelled CTs: image path, labels, reference bodies and pedicles.

    ``totalseg``: example_ct (3 mm), vertebra labels with the body mask (bodies = label and mask,
    posterior elements = label without mask). ``tptbox``: the L2-L4 crop (1.5 mm), bodies = labels 49/50,
    posterior elements for the pedicles = the arch label 41 (pedicles and laminae)."""
    out = {}
    t = shared / "totalseg_example"
    lab, a = load_label_map(t / "example_ct_vertebrae_labels.nii.gz")
    body, _ = load_label_map(t / "example_ct_vertebrae_body_ivd.nii.gz")
    out["totalseg"] = _ct_case(t / "example_ct.nii.gz", lab, a, TOTALSEG_NAMES, body == 1)
    d = shared / "tptbox_vertebra_crops" / "sample_ct"
    vert, a = load_label_map(d / "sub-ct_seg-vert_label-22_msk.nii.gz")
    sub, _ = load_label_map(d / "sub-ct_seg-subreg_label-22_msk.nii.gz")
    out["tptbox"] = _ct_case(d / "sub-ct_label-22_ct.nii.gz", vert, a, VERSE_NAMES, np.isin(sub, (49, 50)))
    return out


def _ct_case(image: Path, labels: np.ndarray, ijk_to_lps: np.ndarray, names: dict[int, str], body: np.ndarray
             ) -> dict:
    present = {v: n for v, n in names.items() if np.count_nonzero((labels == v) & body) >= 50}
    bodies = bodies_reference(labels, ijk_to_lps, present, [1.0, 0.0, 0.0], body_mask=body)
    pedicles = {n: pedicle_reference(bodies[n], (labels == v) & body, labels == v, ijk_to_lps)
                for v, n in present.items() if n in bodies}
    return {"image": image, "labels": labels, "ijk_to_lps": ijk_to_lps, "bodies": bodies, "pedicles": pedicles,
            "names": present, "body_mask": body}


# ------------------------------------------------------------------------------------ scoring
def _arr(p) -> Optional[np.ndarray]:
    return None if p is None else np.asarray(p, float)


def score_levels(levels: Sequence, case: dict) -> dict:
    """Compare proposed levels (``planner.plan.Level``-like: ``name`` and ``landmarks``) with a case's labels.

    A level is *right* when its body centre lies in the labelled body of the same name, *misnamed* when
    it lies in another labelled body, *off* when in none. Errors (mm) are given for the right ones:
    ``centre`` (3D), ``posterior``/``anterior`` (along ``e_ap``, signed, + anterior), ``superior``/``inferior``
    (along ``e_h``, signed, + cranial) and, where the case has pedicle references, ``pedicle_left/right``
    (3D) and whether each pedicle lies inside its own vertebra's label (``pedicle_in_label``), and how many
    of its two pedicles were measured (``pedicles_measured``)."""
    code_of = {n: v for v, n in case["names"].items()}
    labelled = [n for n in LADDER if n in case["bodies"]]
    per_level = {}
    right, misnamed, off = [], [], []
    for lv in levels:
        lm = lv.landmarks
        c = _arr(lm.body_center_lps)
        if c is None:
            continue
        got = label_at(case["labels"], case["ijk_to_lps"], c)
        got_name = case["names"].get(got)
        if got_name == lv.name:
            right.append(lv.name)
        elif got_name is not None:
            misnamed.append(f"{lv.name} (is {got_name})")
            continue
        else:
            off.append(lv.name)
            continue
        ref = case["bodies"][lv.name]
        e = {"centre": float(np.linalg.norm(c - ref.centroid)),
             "pedicles_measured": sum(getattr(lm, f"pedicle_{s}_lps") is not None for s in ("left", "right"))}
        for key, found, want, axis in (("posterior", lm.posterior_wall_lps, ref.posterior_wall, ref.e_ap),
                                       ("anterior", lm.anterior_wall_lps, ref.anterior_wall, ref.e_ap),
                                       ("superior", lm.superior_endplate_lps, ref.superior_endplate, ref.e_h),
                                       ("inferior", lm.inferior_endplate_lps, ref.inferior_endplate, ref.e_h)):
            f = _arr(found)
            e[key] = None if f is None or want is None else float((f - want) @ axis)
        peds = case.get("pedicles", {}).get(lv.name)
        if peds is not None:
            for side in ("left", "right"):
                f, want = _arr(getattr(lm, f"pedicle_{side}_lps")), getattr(peds, side)
                e[f"pedicle_{side}"] = None if f is None or want is None else float(np.linalg.norm(f - want))
                e[f"pedicle_{side}_in_label"] = (None if f is None else
                                                 label_at(case["labels"], case["ijk_to_lps"], f) == code_of[lv.name])
        per_level[lv.name] = e
    found_right = [n for n in labelled if n in right]
    return {"labelled": labelled, "found_right": found_right, "misnamed": misnamed, "off": off,
            "levels": per_level}


# ============================================================================ paths against the labels
def label_volume(path: Path, like):
    """A label NIfTI as a :class:`planner.imaging.volume.Volume` in the LPS geometry of the image ``like``
    (read with nibabel, an independent reader; RAS to LPS)."""
    import nibabel as nib

    from planner.imaging.volume import Volume

    img = nib.load(str(path))
    m = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    vol = Volume(np.ascontiguousarray(np.transpose(np.asarray(img.dataobj), (2, 1, 0))).astype(np.int16), m)
    assert np.allclose(vol.ijk_to_lps, like.ijk_to_lps, atol=1e-3), "label and image grids differ"
    return vol


def first_contact(values: np.ndarray, voxel_samples: float) -> Optional[int]:
    """Index of the first contact with a vertebra label along ``values`` (label per sample, 0 outside): the
    start of the first run at least ``voxel_samples`` long, or of a shorter run before it that is not a
    clipped corner of that run's label (see :func:`label_gaps`). None when no run is that long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], values, [0]])) != 0)
    runs = [(int(a), int(b - a), values[a]) for a, b in zip(edges[:-1], edges[1:]) if values[a] > 0]
    longer = [r for r in runs if r[1] >= voxel_samples]
    if not longer:
        return None
    before = [r for r in runs if r[0] < longer[0][0]]
    for k, (start, n, value) in enumerate(before):
        after = before[k + 1][0] if k + 1 < len(before) else longer[0][0]  # where the next run in a label begins
        if value != longer[0][2] or after - (start + n) > voxel_samples:
            return start
    return longer[0][0]


def label_gaps(labels, path_lps: np.ndarray, step: float = 0.5) -> list[tuple[float, float]]:
    """(start from the first contact, length) in mm of the runs outside every vertebra label between the
    first contact with a vertebra label and the end of ``path_lps`` (the tip), sampled every ``step`` mm
    (nearest-voxel labels). A run inside a label shorter than one label voxel, of the same vertebra as the
    first longer run after it and less than a label voxel before the next run in a label, is not the first
    contact: it is the path clipping the corner of that vertebra's label voxel on its way to its bone (on
    example_ct's 3 mm labels such clips hold fat and soft tissue, -82 to 91 HU). A short run of another
    vertebra (a clipped articular process of the level above) or one followed by more than a voxel outside
    the labels is the first contact. A gap of a single sample is the labels' own voxel edge, not a gap."""
    seg = np.linalg.norm(np.diff(path_lps, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    ss = np.arange(0.0, s[-1] + 1e-9, step)
    pts = np.column_stack([np.interp(ss, s, path_lps[:, k]) for k in range(3)])
    values = labels.sample(pts, order=0)
    first = first_contact(values, float(np.max(labels.spacing)) / step)
    if first is None:
        return [(0.0, len(pts) * step)]
    outside = np.concatenate([[0], (values[first:] <= 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(outside) != 0)
    gaps = [(float(a * step), float((b - a) * step)) for a, b in zip(edges[::2], edges[1::2])]
    return [g for g in gaps if g[1] > 1.0]
