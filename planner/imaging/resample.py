"""Explicit resampling of a volume onto a regular, orthogonal grid (never done automatically).

Use it when the user chooses to: a gantry-tilted CT (sheared ``ijk_to_lps``), a stack with irregular
spacing (true positions in ``ImageInfo.slice_positions_lps``) or missing slices (blank slices listed
in ``ImageInfo.extra["blank_slices"]``). The output grid keeps the in-plane axes and pixel spacing,
puts k along the slice normal, covers every input voxel, and interpolates linearly between the two
real slices around each output slice (blank slices are not used as data).
"""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume


def resample_regular(volume: Volume, slice_spacing_mm: Optional[float] = None, order: int = 1) -> Volume:
    """A new Volume on a regular orthogonal grid (in-plane axes kept, k along the slice normal).

    ``slice_spacing_mm`` defaults to the median gap between the real slices along the normal.
    Voxels outside the input get the input's minimum value. Integer input stays integer (rounded).
    """
    m = volume.ijk_to_lps
    sp = volume.spacing
    r = m[:3, 0] / sp[0]
    c = m[:3, 1] / sp[1]
    nk, nj, ni = volume.array.shape
    blanks = set(volume.info.extra.get("blank_slices", []) or [])
    if volume.info.slice_positions_lps and len(volume.info.slice_positions_lps) == nk:
        P = np.asarray(volume.info.slice_positions_lps, dtype=float)
    else:
        P = m[:3, 3][None, :] + np.arange(nk)[:, None] * m[:3, 2][None, :]
    real = [k for k in range(nk) if k not in blanks]
    if abs(float(r @ c)) > 1e-6:
        return _resample_affine(volume, slice_spacing_mm, order)
    n = np.cross(r, c)
    n /= np.linalg.norm(n)
    h = P @ n
    if len(real) > 1 and h[real[-1]] < h[real[0]]:
        n, h = -n, -h
    hr = h[real]
    srt = np.argsort(hr)
    real = [real[i] for i in srt]
    hr = hr[srt]
    if slice_spacing_mm is None:
        slice_spacing_mm = float(np.median(np.diff(hr))) if len(hr) > 1 else float(sp[2])
    if slice_spacing_mm <= 0:
        raise ValueError("slice spacing must be positive")
    # in-plane extent of all slices in the (r, c) frame
    u0 = P[real] @ r
    v0 = P[real] @ c
    u_min, u_max = u0.min(), u0.max() + (ni - 1) * sp[0]
    v_min, v_max = v0.min(), v0.max() + (nj - 1) * sp[1]
    ni2 = int(np.floor((u_max - u_min) / sp[0] + 1e-6)) + 1
    nj2 = int(np.floor((v_max - v_min) / sp[1] + 1e-6)) + 1
    nk2 = int(np.floor((hr[-1] - hr[0]) / slice_spacing_mm + 1e-6)) + 1
    origin = u_min * r + v_min * c + hr[0] * n
    out_m = np.eye(4)
    out_m[:3, 0] = r * sp[0]
    out_m[:3, 1] = c * sp[1]
    out_m[:3, 2] = n * slice_spacing_mm
    out_m[:3, 3] = origin
    src = volume.array
    fill = float(src.min()) if src.size else 0.0
    is_int = src.dtype.kind in "ui"
    out = np.empty((nk2, nj2, ni2), dtype=src.dtype if is_int else np.float32)
    jj, ii = np.mgrid[0:nj2, 0:ni2].astype(float)
    for k2 in range(nk2):
        t = hr[0] + k2 * slice_spacing_mm
        idx = int(np.searchsorted(hr, t, side="right")) - 1
        idx = min(max(idx, 0), len(hr) - 1)
        if idx == len(hr) - 1 or hr[idx + 1] == hr[idx]:
            pairs = [(real[idx], 1.0)]
        else:
            w = (t - hr[idx]) / (hr[idx + 1] - hr[idx])
            pairs = [(real[idx], 1.0 - w), (real[idx + 1], w)]
        acc = np.zeros((nj2, ni2), dtype=np.float64)
        for k, w in pairs:
            if w == 0.0:
                continue
            du = (u_min - P[k] @ r) / sp[0]
            dv = (v_min - P[k] @ c) / sp[1]
            coords = np.stack([jj + dv, ii + du])
            plane = src[k] if src.dtype.kind == "f" else src[k].astype(np.float32)
            acc += w * ndimage.map_coordinates(plane, coords, order=order, mode="constant", cval=fill,
                                               prefilter=False)
        out[k2] = np.rint(acc) if is_int else acc
    return _result(volume, out, out_m, "resampled to a regular orthogonal grid")


def _resample_affine(volume: Volume, slice_spacing_mm: Optional[float], order: int) -> Volume:
    """General case (non-orthogonal in-plane axes): sample the affine volume on an orthonormal grid."""
    m = volume.ijk_to_lps
    sp = volume.spacing
    r = m[:3, 0] / sp[0]
    c = m[:3, 1] - (m[:3, 1] @ r) * r
    c /= np.linalg.norm(c)
    n = np.cross(r, c)
    if n @ m[:3, 2] < 0:
        n = -n
    basis = np.stack([r, c, n], axis=1)
    corners = volume.corners_lps() @ basis
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    step = np.array([sp[0], sp[1], slice_spacing_mm or float(abs(m[:3, 2] @ n))])
    dims = (np.floor((hi - lo) / step + 1e-6).astype(int) + 1)
    out_m = np.eye(4)
    out_m[:3, :3] = basis * step[None, :]
    out_m[:3, 3] = basis @ lo
    out = np.empty((dims[2], dims[1], dims[0]), dtype=np.float32)
    jj, ii = np.mgrid[0:dims[1], 0:dims[0]].astype(float)
    fill = float(volume.array.min()) if volume.array.size else 0.0
    for k in range(dims[2]):
        pts = out_m[:3, 3] + ii[..., None] * out_m[:3, 0] + jj[..., None] * out_m[:3, 1] + k * out_m[:3, 2]
        out[k] = volume.sample(pts, order=order, fill=fill)
    if volume.array.dtype.kind in "ui":
        out = np.rint(out).astype(volume.array.dtype)
    return _result(volume, out, out_m, "resampled to a regular orthogonal grid (affine)")


def _result(volume: Volume, out: np.ndarray, out_m: np.ndarray, note: str) -> Volume:
    info = copy.deepcopy(volume.info)
    info.key = f"{volume.info.key}-regular" if volume.info.key else ""
    info.slice_positions_lps = [tuple(float(x) for x in out_m[:3, 3] + k * out_m[:3, 2]) for k in range(out.shape[0])]
    info.extra.pop("blank_slices", None)
    info.extra["resampled"] = True
    info.extra["geometry_exact"] = True
    info.sop_instance_uids = []
    info.warnings = [w for w in info.warnings if "resample_regular" not in w] + [
        f"{note}: voxel values are interpolated, not the original pixels"]
    return Volume(out, out_m, info)
