"""Bone and spinal canal on MRI, from the image's own intensities (no sequence tags, no absolute values).

* **Marrow level**: the median intensity in the middle of each level's body (an ellipsoid well inside
  the walls around the body centre landmark); a voxel is compared with the level nearest to it.
* **Bone** (marrow: bodies and pedicles) = voxels whose smoothed intensity lies within
  ``mr_marrow_band`` of that marrow level, connected to a body; the cortex is dark in every sequence
  and closes the bone off from fat, muscle and fluid, which lie outside the band in T1, T2, STIR and
  water images. Holes (a Modic zone, a vein) enclosed in a sagittal and a coronal slice, or in 3D, are
  filled. Thin cortical
  bone without marrow (laminae, articular processes) does not show: on MRI the other-bone check sees
  only bone with marrow (the ilium, bodies and pedicles), and it says so.
* **Body** (the zone's body, the target's mid-sagittal plane and AP depth): the level's vertebral body as the
  body model outlines it (:mod:`planner.levels.mri_bodies`, the network the level finder uses; the body that
  holds the level's body centre landmark), Modic changes included: a band of marrow darker or brighter than
  the rest is still the body. Its voxels are bone of that level. A level whose centre landmark lies in no
  body the model outlines has no body on this image (the checks and suggestions that need it say so).
* **Canal** (the thecal sac and its fluid): measured only where the fluid is bright (T2, STIR, water
  images): in the canal search region behind each level, voxels at least ``mr_fluid_ratio`` times the
  marrow level, in pieces of at least ``canal_min_piece_mm3``, bridged along the spine. On a T1 image
  (fluid darker than marrow) the canal is not measured, and the checks that need it say so.
"""

from __future__ import annotations

import weakref
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.levels.mri_bodies import BodyScan, find_bodies
from planner.levels.params import MrBodiesParams
from planner.levels.results import odd_heights

from planner.safety.ct import fill_plane_holes, fill_small_holes
from planner.safety.grid import Grid
from planner.safety.model import (
    OWNER_OTHER,
    SpineModel,
    bridge_along,
    keep_pieces,
    nearest_anchor,
    canal_search_region,
    geodesic_voronoi,
)
from planner.safety.params import SafetyParams


def _seed_regions(grid: Grid, anchors: Sequence, params: SafetyParams) -> list[np.ndarray]:
    """Per anchor: the ellipsoid in the middle of its body (empty when the frame is unknown or outside)."""
    s = grid.spacing_mm
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    pos = [grid.origin_lps[0] + xx * s, grid.origin_lps[1] + yy * s, grid.origin_lps[2] + zz * s]
    out = []
    for a in anchors:
        rel = [pos[k] - a.body_center_lps[k] for k in range(3)]
        if a.frame is not None:
            ru = params.seed_body_fraction * a.frame.depth_mm / 2
            rs = params.seed_body_fraction * a.frame.height_mm / 2
        else:
            ru = rs = params.seed_radius_mm
        q = (sum(rel[k] * a.u[k] for k in range(3)) / ru) ** 2 + (sum(rel[k] * a.s[k] for k in range(3)) / rs) ** 2 \
            + (sum(rel[k] * a.l[k] for k in range(3)) / ru) ** 2
        out.append(np.broadcast_to(q <= 1.0, grid.shape))
    return out


_SCANS: "weakref.WeakKeyDictionary[Volume, list[tuple[tuple, BodyScan]]]" = weakref.WeakKeyDictionary()


def level_bodies(volume: Volume, anchors: Sequence) -> BodyScan:
    """The bodies the body model outlines in ``volume`` around the levels' body centres (the centres are its
    marks), kept per volume (weakly) for the next model built on the same levels."""
    marks = [np.asarray(a.body_center_lps, float) for a in anchors]
    key = tuple(tuple(np.round(m, 1)) for m in marks)
    entries = _SCANS.setdefault(volume, [])
    for k, scan in entries:
        if k == key:
            return scan
    scan = find_bodies(volume, marks)
    entries.append((key, scan))
    if len(entries) > 4:
        del entries[0]
    return scan


def build_mr_model(grid: Grid, anchors: Sequence, params: SafetyParams, bodies: Optional[BodyScan] = None):
    """The :class:`planner.safety.model.SpineModel` of an MR working grid (module docstring); ``bodies``: the
    body model's outlines in the volume the grid was taken from (:func:`level_bodies`)."""

    s = grid.spacing_mm
    value = ndimage.gaussian_filter(grid.array.astype(np.float32), params.smooth_mm / s)
    notes: list[str] = []
    # each level's body as the body model outlines it
    pts = None
    body_of: dict[int, np.ndarray] = {}
    cut_at_side: set[int] = set()
    for i, a in enumerate(anchors):
        body = None if bodies is None else bodies.body_at(a.body_center_lps)
        if body is None:
            notes.append(f"{a.name}: no vertebral body is outlined at its body centre landmark on this MR image")
            continue
        if body.cut_at_side:
            cut_at_side.add(i + 1)
            notes.append(f"{a.name}: the sagittal slices end inside the width of its body, so its left-right middle "
                         "is not measured on this MR image")
        if pts is None:
            pts = grid.lps_of(np.indices(grid.shape).reshape(3, -1).T)
        mask = bodies.inside(body, pts).reshape(grid.shape)  # type: ignore[union-attr]
        if mask.any():
            body_of[i + 1] = mask
    taller = taller_outlines(anchors, bodies, MrBodiesParams())
    for code, ratio in taller.items():
        notes.append(f"{anchors[code - 1].name}: its body's outline on this MR image is {ratio:.2f} times as tall as "
                     "the taller of its lumbar neighbours (it may run on through a disc into the next bone)")
    seeds = _seed_regions(grid, anchors, params)
    levels = np.full(len(anchors), np.nan)
    for i, region in enumerate(seeds):
        if i + 1 in body_of:
            v = value[region & body_of[i + 1]]
            if v.size >= 10:
                levels[i] = float(np.median(v))
    empty = np.zeros(grid.shape, dtype=bool)
    owner = np.zeros(grid.shape, dtype=np.int16)
    if not np.any(np.isfinite(levels) & (levels > 0)):
        notes.append("no vertebral body of the plan is outlined on this MR image")
        return SpineModel(grid, "MR", empty, empty.copy(), owner, list(anchors), set(), notes)
    # each voxel is compared with the marrow of the level nearest to it along the spine
    good = np.isfinite(levels) & (levels > 0)
    fill = float(np.median(levels[good]))
    levels = np.where(good, levels, fill)
    marrow = levels[nearest_anchor(grid, anchors)].astype(np.float32)
    ratio = value / marrow
    lo, hi = params.mr_marrow_band
    band = (ratio >= lo) & (ratio <= hi)
    markers = np.zeros(grid.shape, dtype=np.int16)
    for code, mask in body_of.items():
        markers[mask & (markers == 0)] = code
    # bone: the band connected to a body through marrow at least a few voxels thick (an opening cuts the
    # thin webs of partial-volume voxels between fat and muscle that share the marrow's intensity),
    # grown back by the opening's radius inside the band; the bodies themselves whatever their signal
    r = max(1, int(round(params.mr_open_mm / s)))
    ball = np.sum((np.indices((2 * r + 1,) * 3) - r) ** 2, axis=0) <= r * r
    core = ndimage.binary_opening(band, structure=ball)
    lab, _ = ndimage.label(core | (markers > 0))
    keep = np.zeros(lab.max() + 1, dtype=bool)
    keep[np.unique(lab[markers > 0])] = True
    keep[0] = False
    bone = (ndimage.binary_dilation(keep[lab], structure=ball) & band) | (markers > 0)
    fillable = ratio >= lo * params.mr_hole_fraction
    max_px = int(params.bone_hole_max_mm2 / s ** 2)
    bone = bone | (fill_plane_holes(bone, 2, max_px, fillable) & fill_plane_holes(bone, 1, max_px, fillable))
    bone = fill_small_holes(bone, int(params.bone_hole_max_mm3 / s ** 3), fillable)
    owner_lab = geodesic_voronoi(bone, markers, np.ones(grid.shape, dtype=np.float32), s, params.mr_max_reach_mm)
    bone &= owner_lab != 0  # marrow beyond the reach of any body is not a vertebra's
    owner = owner_lab.astype(np.int16)
    owner[bone & (owner_lab == 0)] = OWNER_OTHER
    measured = {"bone", "owners"}
    # canal: bright fluid behind the bodies (T2-like images only)
    region = canal_search_region(grid, anchors, params)
    canal = empty.copy()
    if region.any():
        bright = region & (ratio >= params.mr_fluid_ratio) & ~bone
        share = float(bright.sum()) / float(region.sum())
        if share >= params.mr_fluid_min_share:
            canal = keep_pieces(bright, int(params.canal_min_piece_mm3 / s ** 3))
            canal = bridge_along(canal, region & ~bone & (ratio >= 1.0), int(round(params.canal_bridge_mm / s)))
    if canal.any():
        measured.add("canal")
    else:
        notes.append("the spinal canal's fluid is not bright on this MR image (a T1-weighted image?): the canal "
                     "is not measured on it")
    model = SpineModel(grid, "MR", bone, canal, owner, list(anchors), measured, notes)
    model.bodies = body_of
    model.cut_at_side = cut_at_side
    model.taller_than_neighbours = taller
    return model


def taller_outlines(anchors: Sequence, bodies: Optional[BodyScan], p: MrBodiesParams) -> dict[int, float]:
    """Owner code -> height ratio of the lumbar levels whose body outline (superior to inferior endplate of
    the body finder) is taller than ``p.tall_body_ratio`` times the taller of its lumbar neighbours
    (``MrBodiesParams.tall_body_ratio``): the outline may run on through a disc into the next bone."""
    heights: list[Optional[float]] = []
    at_least: list[Optional[float]] = []  # bodies cut by the edge of the image or of the part searched
    for a in anchors:
        body = None if bodies is None or a.name == "S1" else bodies.body_at(a.body_center_lps)
        lm = {} if body is None else body.landmarks
        h = None
        if "superior_endplate_lps" in lm and "inferior_endplate_lps" in lm:
            h = float(np.linalg.norm(lm["superior_endplate_lps"] - lm["inferior_endplate_lps"]))
        partial = body is not None and body.partial
        heights.append(None if partial else h)
        at_least.append(h if partial else None)
    flags = odd_heights(heights, at_least, p.short_body_ratio, p.tall_body_ratio)
    return {i + 1: h / near for i, (kind, h, near) in flags.items() if kind == "tall"}
