"""The working grid (an LPS-aligned resampled copy of a volume) and the spine curve with its frames,
along which the volume is straightened."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.levels.results import LevelDetectionError

@dataclass
class WorkGrid:
    """An LPS-aligned resampled copy of a volume: ``array[kz, jy, ix]`` at
    ``origin_lps + spacing * (ix, jy, kz)``."""

    array: np.ndarray
    origin_lps: np.ndarray
    spacing: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    def index_of(self, lps: np.ndarray) -> np.ndarray:
        """LPS (..., 3) to fractional array indices (..., 3) as (kz, jy, ix)."""
        return ((np.asarray(lps, dtype=float) - self.origin_lps) / self.spacing)[..., ::-1]

    def lps_of(self, kji: np.ndarray) -> np.ndarray:
        return self.origin_lps + np.asarray(kji, dtype=float)[..., ::-1] * self.spacing

    def sample(self, lps: np.ndarray, fill: float = 0.0) -> np.ndarray:
        pts = np.asarray(lps, dtype=float)
        idx = self.index_of(pts.reshape(-1, 3)).T
        out = ndimage.map_coordinates(self.array, idx, order=1, mode="constant", cval=fill)
        return out.reshape(pts.shape[:-1])



def work_grid(volume: Volume, spacing_mm: float, fill: Optional[float] = None,
              bounds_lps: Optional[tuple[np.ndarray, np.ndarray]] = None) -> WorkGrid:
    """Resample ``volume`` onto an LPS-aligned grid covering its extent, or the part of it inside
    ``bounds_lps`` (low corner, high corner), with trilinear interpolation."""
    s = float(max(0.5, min(spacing_mm, 3.0)))
    corners = volume.corners_lps()
    lo, hi = corners.min(0), corners.max(0)
    if bounds_lps is not None:
        lo = np.maximum(lo, np.asarray(bounds_lps[0], dtype=float))
        hi = np.minimum(hi, np.asarray(bounds_lps[1], dtype=float))
        if np.any(hi - lo < s):
            raise LevelDetectionError("the marked points lie outside the image")
    n = (np.floor((hi - lo) / s + 1e-6).astype(int) + 1)[::-1]  # (nz, ny, nx)
    a = volume.lps_to_ijk[:3, :3]
    b = volume.lps_to_ijk[:3, 3]
    rev = np.eye(3)[::-1]
    # input index (k, j, i) = rev @ (A @ (lo + s * (ix, jy, kz)) + b), output index (kz, jy, ix)
    matrix = rev @ a @ (s * np.eye(3)) @ rev
    offset = rev @ (a @ lo + b)
    src = volume.array
    if src.dtype.kind not in "fiu" or src.dtype == np.float64:
        src = src.astype(np.float32)
    cval = float(np.min(src)) if fill is None else fill
    out = ndimage.affine_transform(src, matrix, offset=offset, output_shape=tuple(int(v) for v in n), order=1,
                                   cval=cval, output=np.float32, prefilter=False)
    return WorkGrid(out, lo, s)



@dataclass
class SpineCurve:
    """The posterior wall of the anterior column, one point per working-grid row, with frames.

    ``points`` (n, 3) LPS; ``tangent`` toward superior; ``lateral`` toward the patient's left;
    ``anterior`` perpendicular to both, toward the front. Index t runs caudal to cranial.
    """

    points: np.ndarray
    tangent: np.ndarray
    lateral: np.ndarray
    anterior: np.ndarray

    @classmethod
    def from_points(cls, pts: np.ndarray) -> "SpineCurve":
        pts = np.asarray(pts, dtype=float)
        tan = np.gradient(pts, axis=0)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True) + 1e-12
        lat = np.array([1.0, 0.0, 0.0])[None, :] - tan * tan[:, :1]
        lat /= np.linalg.norm(lat, axis=1, keepdims=True) + 1e-12
        ant = np.cross(lat, tan)  # L x S = -P = anterior
        ant /= np.linalg.norm(ant, axis=1, keepdims=True) + 1e-12
        return cls(pts, tan, lat, ant)

    def __len__(self) -> int:
        return len(self.points)

    def resampled(self, step_mm: float) -> "SpineCurve":
        """The same curve with points every ``step_mm`` of arclength (index = mm / step)."""
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        new = np.arange(0.0, arc[-1] + 1e-9, step_mm)
        pts = np.stack([np.interp(new, arc, self.points[:, k]) for k in range(3)], axis=1)
        return SpineCurve.from_points(pts)

    def nearest_t(self, point_lps: np.ndarray) -> float:
        """Index of the curve point nearest to ``point_lps``."""
        d = np.linalg.norm(self.points - np.asarray(point_lps, dtype=float)[None, :], axis=1)
        return float(np.argmin(d))

    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Interpolated (point, tangent, lateral, anterior) at fractional index t."""
        t = float(np.clip(t, 0, len(self) - 1))
        i0 = int(math.floor(t))
        i1 = min(i0 + 1, len(self) - 1)
        f = t - i0

        def lerp(a: np.ndarray) -> np.ndarray:
            return a[i0] * (1 - f) + a[i1] * f

        p, tg, lt, an = lerp(self.points), lerp(self.tangent), lerp(self.lateral), lerp(self.anterior)
        return p, tg / np.linalg.norm(tg), lt / np.linalg.norm(lt), an / np.linalg.norm(an)

    def to_lps(self, t: np.ndarray, a_mm: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
        """Points at curve index t, a mm anterior and x mm to the left (broadcast arrays)."""
        t, a_mm, x_mm = np.broadcast_arrays(np.asarray(t, float), np.asarray(a_mm, float),
                                            np.asarray(x_mm, float))
        tc = np.clip(t, 0, len(self) - 1)
        i0 = np.floor(tc).astype(int)
        i1 = np.minimum(i0 + 1, len(self) - 1)
        f = (tc - i0)[..., None]

        def lerp(arr: np.ndarray) -> np.ndarray:
            return arr[i0] * (1 - f) + arr[i1] * f

        return lerp(self.points) + a_mm[..., None] * lerp(self.anterior) + x_mm[..., None] * lerp(self.lateral)

    def straighten(self, grid: WorkGrid, a_mm: np.ndarray, x_mm: Sequence[float] = (0.0,),
                   fill: float = 0.0) -> np.ndarray:
        """Image S[t, a] averaged over the lateral offsets ``x_mm``."""
        t = np.arange(len(self), dtype=float)[:, None]
        acc = np.zeros((len(self), len(a_mm)), dtype=np.float64)
        for x in x_mm:
            acc += grid.sample(self.to_lps(t, np.asarray(a_mm)[None, :], x), fill=fill)
        return acc / len(x_mm)



def _line_profile(grid: WorkGrid, origin: np.ndarray, direction: np.ndarray, across: Sequence[np.ndarray],
                  pos_mm: np.ndarray, half_widths: Sequence[float], fill: float) -> np.ndarray:
    """Mean profile along ``origin + pos * direction`` over a small box spanned by ``across``."""
    s = grid.spacing
    offsets = [np.zeros(3)]
    for vec, hw in zip(across, half_widths):
        steps = np.arange(-hw, hw + 1e-6, s)
        offsets = [o + k * vec for o in offsets for k in steps]
    pts = origin[None, :] + pos_mm[:, None] * direction[None, :]
    acc = np.zeros(len(pos_mm))
    for o in offsets:
        acc += grid.sample(pts + o[None, :], fill=fill)
    return acc / len(offsets)



def _as_float32(volume: Volume) -> Volume:
    """The volume with a float32 array (sampled many times; converted once)."""
    if volume.array.dtype == np.float32:
        return volume
    return Volume(volume.array.astype(np.float32), volume.ijk_to_lps, volume.info)
