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
* **Body**: the marrow of the level, bounded by the body seen from its middle (:func:`star_body`: rays
  stop where the signal leaves the marrow band, each ray no longer than its neighbours' median), so
  that marrow-like soft tissue beyond a thin cortex is not taken for the body.
* **Canal** (the thecal sac and its fluid): measured only where the fluid is bright (T2, STIR, water
  images): in the canal search region behind each level, voxels at least ``mr_fluid_ratio`` times the
  marrow level, in pieces of at least ``canal_min_piece_mm3``, bridged along the spine. On a T1 image
  (fluid darker than marrow) the canal is not measured, and the checks that need it say so.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

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


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    rho = np.sqrt(1.0 - z * z)
    return np.column_stack([rho * np.cos(phi), rho * np.sin(phi), z])


def star_body(grid: Grid, ratio: np.ndarray, centre_lps: np.ndarray, params: SafetyParams) -> np.ndarray:
    """The vertebral body as seen from its middle: along rays from ``centre_lps`` the marrow goes on
    until the signal leaves the marrow band for ``mr_body_stop_mm`` (the dark cortex and endplates, or
    a bright disc); each ray's length is the median of its neighbours' (a ray slipping through a gap in
    a thin cortex is cut back), and the body is every voxel within its direction's length."""
    from scipy.spatial import cKDTree

    dirs = _sphere_directions(params.mr_body_rays)
    step = 0.5
    r = np.arange(0.0, params.mr_body_reach_mm + 1e-9, step)
    pts = centre_lps[None, None, :] + r[None, :, None] * dirs[:, None, :]
    vals = grid.like(ratio).sample(pts.reshape(-1, 3), fill=0.0).reshape(pts.shape[:2])
    lo, hi = params.mr_marrow_band
    out = (vals < lo) | (vals > hi)
    n_stop = max(1, int(round(params.mr_body_stop_mm / step)))
    run = np.zeros_like(out, dtype=np.int32)
    for k in range(len(r) - 1, -1, -1):  # out-of-band run length from each sample outward
        run[:, k] = np.where(out[:, k], 1 + (run[:, k + 1] if k + 1 < len(r) else 0), 0)
    stop = np.where((run >= n_stop).any(axis=1), np.argmax(run >= n_stop, axis=1), len(r) - 1)
    radii = r[stop]
    tree = cKDTree(dirs)
    _, nb = tree.query(dirs, k=params.mr_body_neighbours)
    radii = np.median(radii[nb], axis=1)
    # voxelize: each voxel's direction from the centre and its distance
    reach = float(radii.max())
    lo_i = np.floor(grid.index_of(centre_lps - reach)).astype(int)
    hi_i = np.ceil(grid.index_of(centre_lps + reach)).astype(int)
    a = np.minimum(lo_i, hi_i).clip(0, np.array(grid.shape) - 1)
    b = np.maximum(lo_i, hi_i).clip(0, np.array(grid.shape) - 1) + 1
    out_mask = np.zeros(grid.shape, dtype=bool)
    idx = np.stack(np.meshgrid(*(np.arange(a[k], b[k]) for k in range(3)), indexing="ij"), axis=-1).reshape(-1, 3)
    rel = grid.lps_of(idx) - centre_lps
    dist = np.linalg.norm(rel, axis=1)
    _, j = tree.query(rel / np.maximum(dist, 1e-9)[:, None])
    ins = dist <= radii[j]
    sel = idx[ins]
    out_mask[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    return out_mask


def build_mr_model(grid: Grid, anchors: Sequence, params: SafetyParams):
    """The :class:`planner.safety.model.SpineModel` of an MR working grid (module docstring)."""

    s = grid.spacing_mm
    value = ndimage.gaussian_filter(grid.array.astype(np.float32), params.smooth_mm / s)
    notes: list[str] = []
    seeds = _seed_regions(grid, anchors, params)
    levels = np.full(len(anchors), np.nan)
    for i, region in enumerate(seeds):
        v = value[region]
        if v.size >= 10:
            levels[i] = float(np.median(v))
    empty = np.zeros(grid.shape, dtype=bool)
    owner = np.zeros(grid.shape, dtype=np.int16)
    if not np.any(np.isfinite(levels) & (levels > 0)):
        notes.append("no vertebral body of the plan lies in this MR image")
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
    for i, region in enumerate(seeds):
        if good[i]:
            markers[region & band & (markers == 0)] = i + 1
    # bone: the band connected to a body through marrow at least a few voxels thick (an opening cuts the
    # thin webs of partial-volume voxels between fat and muscle that share the marrow's intensity),
    # grown back by the opening's radius inside the band
    r = max(1, int(round(params.mr_open_mm / s)))
    ball = np.sum((np.indices((2 * r + 1,) * 3) - r) ** 2, axis=0) <= r * r
    core = ndimage.binary_opening(band, structure=ball)
    lab, _ = ndimage.label(core)
    keep = np.zeros(lab.max() + 1, dtype=bool)
    keep[np.unique(lab[(markers > 0) & core])] = True
    keep[0] = False
    bone = ndimage.binary_dilation(keep[lab], structure=ball) & band
    fillable = ratio >= lo * params.mr_hole_fraction
    max_px = int(params.bone_hole_max_mm2 / s ** 2)
    bone = bone | (fill_plane_holes(bone, 2, max_px, fillable) & fill_plane_holes(bone, 1, max_px, fillable))
    bone = fill_small_holes(bone, int(params.bone_hole_max_mm3 / s ** 3), fillable)
    owner_lab = geodesic_voronoi(bone, markers, np.ones(grid.shape, dtype=np.float32), s, params.mr_max_reach_mm)
    bone &= owner_lab != 0  # marrow beyond the reach of any body is not a vertebra's
    owner = owner_lab.astype(np.int16)
    owner[bone & (owner_lab == 0)] = OWNER_OTHER
    measured = {"bone", "owners"}
    # the bodies seen from their middle (bounds the body's outline where marrow-like soft tissue
    # touches a thin cortex)
    body_limits = {}
    for i, region in enumerate(seeds):
        pts = region & band
        if good[i] and pts.any():
            centre = grid.lps_of(np.argwhere(pts).mean(axis=0))
            body_limits[i + 1] = star_body(grid, ratio, centre, params)
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
    model.body_limits = body_limits
    return model
