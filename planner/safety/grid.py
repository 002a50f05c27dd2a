"""An LPS-aligned working grid: the part of a volume around the spine, resampled so that the image
models of :mod:`planner.safety` work on isotropic voxels whose axes are the patient's axes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume


@dataclass
class Grid:
    """``array[kz, jy, ix]`` holds the value at ``origin_lps + spacing_mm * (ix, jy, kz)``."""

    array: np.ndarray
    origin_lps: np.ndarray
    spacing_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    @property
    def high_lps(self) -> np.ndarray:
        """LPS position of the last voxel centre."""
        return self.origin_lps + self.spacing_mm * (np.array(self.shape[::-1], dtype=float) - 1.0)

    def index_of(self, points_lps: np.ndarray) -> np.ndarray:
        """LPS (..., 3) to fractional array indices (..., 3) in the order (kz, jy, ix)."""
        return ((np.asarray(points_lps, dtype=float) - self.origin_lps) / self.spacing_mm)[..., ::-1]

    def lps_of(self, kji: np.ndarray) -> np.ndarray:
        return self.origin_lps + np.asarray(kji, dtype=float)[..., ::-1] * self.spacing_mm

    def axis_lps(self, axis: int) -> np.ndarray:
        """LPS coordinate of the voxel centres along array axis 0 (z), 1 (y) or 2 (x)."""
        return self.origin_lps[2 - axis] + self.spacing_mm * np.arange(self.shape[axis])

    def like(self, array: np.ndarray) -> "Grid":
        return Grid(array, self.origin_lps, self.spacing_mm)

    def contains(self, points_lps: np.ndarray) -> np.ndarray:
        idx = self.index_of(points_lps)
        return np.all((idx >= 0) & (idx <= np.array(self.shape) - 1), axis=-1)

    def sample(self, points_lps: np.ndarray, order: int = 1, fill: float = 0.0) -> np.ndarray:
        """Values at LPS points (linear, or nearest with ``order=0``); ``fill`` outside."""
        pts = np.asarray(points_lps, dtype=float)
        idx = self.index_of(pts.reshape(-1, 3)).T
        src = self.array if self.array.dtype.kind == "f" else self.array.astype(np.float32)
        out = ndimage.map_coordinates(src, idx, order=order, mode="constant", cval=fill, prefilter=False)
        return out.reshape(pts.shape[:-1])


def resample_box(volume: Volume, low_lps: np.ndarray, high_lps: np.ndarray, spacing_mm: float,
                 fill: Optional[float] = None) -> Grid:
    """``volume`` resampled (trilinear) onto the LPS-aligned grid of ``spacing_mm`` covering the box
    from ``low_lps`` to ``high_lps`` (clipped to the volume's extent)."""
    s = float(spacing_mm)
    corners = volume.corners_lps()
    lo = np.maximum(corners.min(0), np.asarray(low_lps, dtype=float))
    hi = np.minimum(corners.max(0), np.asarray(high_lps, dtype=float))
    if np.any(hi - lo < 2 * s):
        raise ValueError("the region lies outside the image")
    lo = np.floor(lo / s) * s  # a lattice shared by all boxes, so that caches line up
    n = (np.floor((hi - lo) / s + 1e-6).astype(int) + 1)[::-1]
    a = volume.lps_to_ijk[:3, :3]
    b = volume.lps_to_ijk[:3, 3]
    rev = np.eye(3)[::-1]
    matrix = rev @ a @ (s * np.eye(3)) @ rev
    offset = rev @ (a @ lo + b)
    src = volume.array
    if src.dtype.kind not in "fiu" or src.dtype == np.float64:
        src = src.astype(np.float32)
    cval = float(volume.statistics()["min"]) if fill is None else fill
    out = ndimage.affine_transform(src, matrix, offset=offset, output_shape=tuple(int(v) for v in n), order=1,
                                   cval=cval, output=np.float32, prefilter=False)
    return Grid(out, lo, s)
