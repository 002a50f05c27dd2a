"""The input of the MRI vertebral-body network: sagittal planes on a fixed grid, intensities scaled per plane.

Shared by the application (:mod:`planner.levels.mri`) and the training script
(``scripts/train_mri_bodies.py``) so that both feed the network exactly the same pixels. Depends on numpy
and scipy only.

A *plane* is a sagittal section of the patient (LPS x constant) sampled on a square grid of
``GRID_MM``: rows run from superior to inferior (``-z``), columns from anterior to posterior (``+y``).
Thick acquired slices are handled by averaging the volume over a slab across the plane (``slab_mm``).
Intensities are scaled per plane by its own percentiles (no absolute values, no DICOM tags).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: In-plane spacing of the network's input (mm).
GRID_MM = 2.0
#: The network halves the resolution this many times: plane sizes are multiples of 2**DEPTH.
DEPTH = 4
#: Output classes of the network, in channel order.
CLASSES = ("background", "body", "L5", "S1")
#: Percentiles of a plane mapped to 0 and 1.
PERCENTILES = (1.0, 99.5)


@dataclass(frozen=True)
class PlaneGeometry:
    """Where a plane's pixels lie: pixel (r, c) of the plane at LPS x = ``x_lps`` is at
    ``y = y0 + c * spacing`` and ``z = z0 - r * spacing``."""

    x_lps: float
    y0: float
    z0: float
    rows: int
    cols: int
    spacing: float = GRID_MM

    def points_lps(self, dx: float = 0.0) -> np.ndarray:
        """(rows, cols, 3) LPS points of the pixels, ``dx`` mm off the plane."""
        r = np.arange(self.rows, dtype=float)
        c = np.arange(self.cols, dtype=float)
        pts = np.empty((self.rows, self.cols, 3))
        pts[..., 0] = self.x_lps + dx
        pts[..., 1] = self.y0 + c[None, :] * self.spacing
        pts[..., 2] = self.z0 - r[:, None] * self.spacing
        return pts

    def pixel_of(self, lps: np.ndarray) -> np.ndarray:
        """LPS (..., 3) to fractional (row, col) (..., 2)."""
        p = np.asarray(lps, dtype=float)
        return np.stack([(self.z0 - p[..., 2]) / self.spacing, (p[..., 1] - self.y0) / self.spacing], -1)

    def lps_of(self, rc: np.ndarray) -> np.ndarray:
        """Fractional (row, col) (..., 2) to LPS (..., 3) on the plane."""
        rc = np.asarray(rc, dtype=float)
        out = np.empty(rc.shape[:-1] + (3,))
        out[..., 0] = self.x_lps
        out[..., 1] = self.y0 + rc[..., 1] * self.spacing
        out[..., 2] = self.z0 - rc[..., 0] * self.spacing
        return out


def plane_for_box(x_lps: float, y_lo: float, y_hi: float, z_lo: float, z_hi: float,
                  spacing: float = GRID_MM) -> PlaneGeometry:
    """The plane covering y in [y_lo, y_hi] and z in [z_lo, z_hi], its size rounded up to a multiple of
    ``2**DEPTH`` pixels (grown evenly on both sides)."""
    m = 2 ** DEPTH
    rows = int(np.ceil((z_hi - z_lo) / spacing / m) * m)
    cols = int(np.ceil((y_hi - y_lo) / spacing / m) * m)
    z0 = 0.5 * (z_hi + z_lo) + 0.5 * (rows - 1) * spacing
    y0 = 0.5 * (y_hi + y_lo) - 0.5 * (cols - 1) * spacing
    return PlaneGeometry(float(x_lps), float(y0), float(z0), max(rows, m), max(cols, m), spacing)


def sample_plane(array: np.ndarray, lps_to_index: np.ndarray, points_lps: np.ndarray, order: int = 1,
                 fill: float = 0.0) -> np.ndarray:
    """Values of ``array`` at LPS points (..., 3); ``lps_to_index`` is the 4x4 map from LPS to the array's
    indices in the array's own axis order (for a :class:`planner.imaging.volume.Volume`, (k, j, i))."""
    pts = np.asarray(points_lps, dtype=float)
    idx = pts.reshape(-1, 3) @ lps_to_index[:3, :3].T + lps_to_index[:3, 3]
    src = array if array.dtype == np.float32 or order == 0 else array.astype(np.float32)
    out = ndimage.map_coordinates(src, idx.T, order=order, mode="constant", cval=fill, prefilter=False)
    return out.reshape(pts.shape[:-1])


def inside_volume(shape: tuple[int, ...], lps_to_index: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
    """True where LPS points (..., 3) fall inside an array of ``shape`` (within half a voxel of its edge)."""
    pts = np.asarray(points_lps, dtype=float)
    idx = pts.reshape(-1, 3) @ lps_to_index[:3, :3].T + lps_to_index[:3, 3]
    ok = np.all((idx >= -0.5) & (idx <= np.asarray(shape, float) - 0.5), axis=1)
    return ok.reshape(pts.shape[:-1])


def slab_offsets(slab_mm: float, step_mm: float = 1.0) -> np.ndarray:
    """Offsets across the plane (mm) averaged for a slab ``slab_mm`` thick (one offset when thin)."""
    if slab_mm <= step_mm:
        return np.zeros(1)
    n = int(np.ceil(slab_mm / step_mm))
    return (np.arange(n) - (n - 1) / 2) * (slab_mm / n)


def normalise_plane(img: np.ndarray, valid: np.ndarray | None = None,
                    percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """The plane scaled so that its ``percentiles`` (of the pixels inside the image, ``valid``) are 0 and 1,
    clipped to [0, 1.5] (float32). A plane without contrast is all zeros."""
    vals = img[valid] if valid is not None else img.ravel()
    if vals.size < 16:
        return np.zeros(img.shape, np.float32)
    lo, hi = np.percentile(vals, percentiles)
    if not hi > lo:
        return np.zeros(img.shape, np.float32)
    out = (img.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    out = np.clip(out, 0.0, 1.5)
    if valid is not None:
        out[~valid] = 0.0
    return out.astype(np.float32)
