"""Bone and spinal canal on CT, from Hounsfield thresholds, enclosure and connectivity.

Dense bone (cortex, endplates, pedicles, posterior elements) is above ``ct_dense_hu``. Cancellous
bone is often not (osteoporotic bodies lie at 60-150 HU, like discs and muscle), so bone is
recognised by being *enclosed*: from a voxel, rays of ``enclosure_ray_mm`` in the 8 directions of a
plane meet dense bone in at least ``enclosure_min_rays`` of them. The inside of a vertebral body is
enclosed in the sagittal and the coronal planes (walls and endplates all round); the spinal canal
is enclosed only in the axial plane (by the vertebral ring: body, pedicles, laminae), because it is
open along the spine; a disc is enclosed in none (its rim is soft tissue); a foramen is enclosed
sagittally (pedicles above and below) but not coronally (open to the side and to the canal). So:

* bone = dense, or enclosed sagittally and coronally and at least ``ct_cancellous_hu``, or enclosed
  in any plane and at least ``ct_cancellous_sure_hu``; then the small holes that bone encloses in
  both a sagittal and a coronal slice, or in 3D, are filled where at least ``ct_cancellous_hu``;
* canal = enclosed axially and not bone, in the search region behind each level's body (the
  landmarks only say where to look), pieces of at least ``canal_min_piece_mm3``, bridged along the
  spine across the levels where the ring is open (discs and foramina).

The lateral recess is part of the canal: it lies inside the ring. Everything is computed on an
LPS-aligned working grid (:class:`planner.safety.grid.Grid`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.safety.grid import Grid
from planner.safety.params import SAFETY_PARAMS, SafetyParams

#: The 8 in-plane directions of each anatomical plane, as (dz, dy, dx) array steps.
_AXIAL = ((0, 0, 1), (0, 0, -1), (0, 1, 0), (0, -1, 0), (0, 1, 1), (0, 1, -1), (0, -1, 1), (0, -1, -1))
_SAGITTAL = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (1, 1, 0), (1, -1, 0), (-1, 1, 0), (-1, -1, 0))
_CORONAL = ((1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, 0, -1), (1, 0, 1), (1, 0, -1), (-1, 0, 1), (-1, 0, -1))


def _shifted(mask: np.ndarray, step: Sequence[int]) -> np.ndarray:
    """``out[v] = mask[v + step]`` (False beyond the array)."""
    out = np.zeros_like(mask)
    src: list[slice] = []
    dst: list[slice] = []
    for k in step:
        if k > 0:
            src.append(slice(k, None))
            dst.append(slice(0, -k))
        elif k < 0:
            src.append(slice(0, k))
            dst.append(slice(-k, None))
        else:
            src.append(slice(None))
            dst.append(slice(None))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def ray_hits(mask: np.ndarray, step: Sequence[int], n_steps: int) -> np.ndarray:
    """True where a ray from the voxel along ``step`` meets ``mask`` within ``n_steps`` steps."""
    hit = _shifted(mask, step)
    reach = 1
    while reach < n_steps:
        k = min(reach, n_steps - reach)
        hit |= _shifted(hit, [k * s for s in step])
        reach += k
    return hit


def enclosure_counts(dense: np.ndarray, spacing_mm: float, ray_mm: float) -> dict[str, np.ndarray]:
    """Per plane ("axial", "sagittal", "coronal"): how many of its 8 rays of ``ray_mm`` meet ``dense``."""
    cache: dict[tuple[int, ...], np.ndarray] = {}
    out = {}
    for name, dirs in (("axial", _AXIAL), ("sagittal", _SAGITTAL), ("coronal", _CORONAL)):
        count = np.zeros(dense.shape, dtype=np.uint8)
        for d in dirs:
            if d not in cache:
                length = ray_mm / (spacing_mm * float(np.linalg.norm(d)))
                cache[d] = ray_hits(dense, d, max(1, int(round(length))))
            count += cache[d]
        out[name] = count
    return out


def fill_small_holes(mask: np.ndarray, max_voxels: int, allowed: Optional[np.ndarray] = None) -> np.ndarray:
    """``mask`` with its enclosed holes (3D, face-connected background) of at most ``max_voxels`` filled
    (only where ``allowed``, when given)."""
    holes = ~mask
    lab, n = ndimage.label(holes)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    border = np.unique(np.concatenate([lab[0].ravel(), lab[-1].ravel(), lab[:, 0].ravel(), lab[:, -1].ravel(),
                                       lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
    small = sizes <= max_voxels
    small[0] = False
    small[border] = False
    filled = small[lab]
    return mask | (filled if allowed is None else filled & allowed)


def fill_plane_holes(mask: np.ndarray, axis: int, max_voxels: int, allowed: np.ndarray) -> np.ndarray:
    """The holes of ``mask`` in each slice normal to ``axis`` with at most ``max_voxels`` voxels, where
    ``allowed``."""
    out = np.zeros_like(mask)
    for i in range(mask.shape[axis]):
        sl = [slice(None)] * 3
        sl[axis] = i  # type: ignore[call-overload]
        m = mask[tuple(sl)]
        holes = ndimage.binary_fill_holes(m) & ~m
        if not holes.any():
            continue
        lab, n = ndimage.label(holes)
        sizes = np.bincount(lab.ravel())
        keep = sizes <= max_voxels
        keep[0] = False
        out[tuple(sl)] = keep[lab]
    return out & allowed


def segment_bone_ct(grid: Grid, params: SafetyParams = SAFETY_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """(bone, enclosed_axially_not_bone) masks of a CT working grid (values in HU)."""
    s = grid.spacing_mm
    hu = ndimage.gaussian_filter(grid.array.astype(np.float32), params.smooth_mm / s)
    dense = hu >= params.ct_dense_hu
    enc = enclosure_counts(dense, s, params.enclosure_ray_mm)
    k = params.enclosure_min_rays
    axial = enc["axial"] >= k
    sagittal = enc["sagittal"] >= k
    coronal = enc["coronal"] >= k
    bone = dense | (sagittal & coronal & (hu >= params.ct_cancellous_hu)) | \
        ((axial | sagittal | coronal) & (hu >= params.ct_cancellous_sure_hu))
    # holes left in the cancellous bone (fatty islands, veins, a wall the rays missed): enclosed by
    # bone in a sagittal and in a coronal slice (a foramen is enclosed only sagittally) and not soft tissue
    max_px = int(params.bone_hole_max_mm2 / s ** 2)
    dense_enough = hu >= params.ct_cancellous_hu
    bone = bone | (fill_plane_holes(bone, 2, max_px, dense_enough) & fill_plane_holes(bone, 1, max_px, dense_enough))
    bone = fill_small_holes(bone, int(params.bone_hole_max_mm3 / s ** 3), dense_enough)
    return bone, axial & ~bone
