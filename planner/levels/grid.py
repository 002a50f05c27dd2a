"""The working grid (an LPS-aligned resampled copy of a volume) and the spine curve with its frames,
along which the volume is straightened."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.levels.params import DetectionParams
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
              bounds_lps: Optional[tuple[np.ndarray, np.ndarray]] = None,
              max_voxels: int = DetectionParams.max_work_voxels) -> WorkGrid:
    """Resample ``volume`` onto an LPS-aligned grid covering its extent, or the part of it inside
    ``bounds_lps`` (low corner, high corner), with trilinear interpolation.

    The grid holds at most ``max_voxels`` voxels: a region that would need more at ``spacing_mm`` is
    resampled more coarsely (so the memory used is bounded whatever the input's size)."""
    s = float(max(0.5, min(spacing_mm, 3.0)))
    corners = volume.corners_lps()
    lo, hi = corners.min(0), corners.max(0)
    if bounds_lps is not None:
        lo = np.maximum(lo, np.asarray(bounds_lps[0], dtype=float))
        hi = np.minimum(hi, np.asarray(bounds_lps[1], dtype=float))
        if np.any(hi - lo < s):
            raise LevelDetectionError("the marked points lie outside the image")
    extent = np.maximum(hi - lo, 0.0)
    if float(np.prod(extent / s + 1.0)) > max_voxels:
        # the smallest spacing whose grid fits (the +1 per axis makes this a slight overestimate)
        s = float((np.prod(extent) / max_voxels) ** (1.0 / 3.0)) * 1.05
        while float(np.prod(np.floor(extent / s) + 1.0)) > max_voxels:
            s *= 1.05
    n = (np.floor(extent / s + 1e-6).astype(int) + 1)[::-1]  # (nz, ny, nx)
    a = volume.lps_to_ijk[:3, :3]
    b = volume.lps_to_ijk[:3, 3]
    rev = np.eye(3)[::-1]
    # input index (k, j, i) = rev @ (A @ (lo + s * (ix, jy, kz)) + b), output index (kz, jy, ix)
    matrix = rev @ a @ (s * np.eye(3)) @ rev
    offset = rev @ (a @ lo + b)
    src = volume.array
    if src.dtype.kind not in "fiu":
        src = src.astype(np.float32)
    cval = _finite_min(src) if fill is None else fill
    out = ndimage.affine_transform(src, matrix, offset=offset, output_shape=tuple(int(v) for v in n), order=1,
                                   cval=cval, output=np.float32, prefilter=False)
    if out.dtype.kind == "f":
        np.nan_to_num(out, copy=False, nan=cval, posinf=cval, neginf=cval)
    return WorkGrid(out, lo, s)


def _finite_min(a: np.ndarray) -> float:
    """The smallest finite value of ``a`` (0 when none), read slice by slice (no full-size temporary)."""
    best = math.inf
    for plane in a:
        finite = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane
        if finite.size:
            best = min(best, float(finite.min()))
    return 0.0 if best == math.inf else best


def working_volume(volume: Volume, bounds_lps: Optional[tuple[np.ndarray, np.ndarray]] = None,
                   max_voxels: int = DetectionParams.max_native_voxels) -> Volume:
    """A float32 copy of the part of ``volume`` inside ``bounds_lps`` (low and high LPS corners; the
    whole volume when None), in its own voxel grid (the acquired slices are kept), with non-finite
    values replaced by the smallest finite one.

    The copy holds at most ``max_voxels`` voxels: a larger part is subsampled, every n-th voxel along
    the axis with the finest effective spacing first (in-plane before across slices), and its
    ``ijk_to_lps`` says so. Raises :class:`LevelDetectionError` when the box misses the image."""
    shape_ijk = np.array(volume.shape_ijk)
    lo_i = np.zeros(3, int)
    hi_i = shape_ijk - 1
    if bounds_lps is not None:
        lo, hi = (np.asarray(b, dtype=float) for b in bounds_lps)
        box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        ijk = volume.world_to_ijk(box)
        lo_i = np.maximum(np.floor(ijk.min(0)).astype(int) - 1, 0)
        hi_i = np.minimum(np.ceil(ijk.max(0)).astype(int) + 1, shape_ijk - 1)
        if np.any(hi_i < lo_i):
            raise LevelDetectionError("the marked points lie outside the image")
    step = np.ones(3, int)
    spacing = volume.spacing
    count = (hi_i - lo_i) // step + 1
    while float(np.prod(count)) > max_voxels:
        ax = int(np.argmin(spacing * step + 1e9 * (count <= 2)))
        step[ax] += 1
        count = (hi_i - lo_i) // step + 1
    sub = volume.array[lo_i[2]:hi_i[2] + 1:step[2], lo_i[1]:hi_i[1] + 1:step[1], lo_i[0]:hi_i[0] + 1:step[0]]
    arr = np.array(sub, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        np.nan_to_num(arr, copy=False, nan=_finite_min(arr), posinf=_finite_min(arr), neginf=_finite_min(arr))
    m = volume.ijk_to_lps.copy()
    m[:3, 3] = volume.ijk_to_world(lo_i.astype(float))
    m[:3, :3] = volume.ijk_to_lps[:3, :3] * step[None, :]
    return Volume(arr, m, volume.info)


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

    def resampled(self, step_mm: float, max_mm: float = DetectionParams.max_curve_mm) -> "SpineCurve":
        """The same curve with points every ``step_mm`` of arclength (index = mm / step). Raises
        :class:`LevelDetectionError` when the curve is longer than ``max_mm`` (it has left the spine)."""
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        if not arc[-1] <= max_mm:
            raise LevelDetectionError(f"the spine could not be followed (the traced curve is {arc[-1]:.0f} mm "
                                      "long); check the marks")
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


def line_profile(grid: WorkGrid, origin: np.ndarray, direction: np.ndarray, across: Sequence[np.ndarray],
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


def body_frame(sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray, anterior_hint: np.ndarray,
               axis_hint: Optional[np.ndarray] = None
               ) -> Optional[tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]]:
    """A body's frame from first estimates of its endplate centres: (axis toward superior, height, lateral,
    anterior, mid-point between the endplates), ``axis_hint`` overriding the direction sup - inf; None when
    the endplates are less than 5 mm apart."""
    axis = sup - inf
    if axis_hint is not None:
        axis = axis_hint * float(axis @ axis_hint)
    height = float(np.linalg.norm(axis))
    if height < 5:
        return None
    axis = axis / height
    lat = lateral - axis * (lateral @ axis)
    lat = lat / np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap @ anterior_hint < 0:
        ap = -ap
    return axis, height, lat, ap, 0.5 * (sup + inf)
