"""Small geometric building blocks of the demo phantom: frames, sampling targets, signed distances.

Everything is in LPS millimetres. Signed distances are negative inside a shape. For the analytic
shapes used here (superellipses, ellipsoids, capsules and their extrusions) they are first-order
estimates (implicit function divided by its gradient length): exact on the surface, accurate within a
few millimetres of it, which is what the cortical shells and partial-volume sampling need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

F = np.float32
_EPS = F(1e-6)


# ------------------------------------------------------------------ frames
def rot_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=float)


def rot_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=float)


@dataclass(frozen=True)
class Frame:
    """A rigid frame: ``origin`` in LPS and ``rot`` whose columns are the local u, v, w axes in LPS."""

    origin: np.ndarray
    rot: np.ndarray

    def to_local(self, p_lps: np.ndarray) -> np.ndarray:
        o = self.origin.astype(F)
        return (p_lps - o) @ self.rot.astype(F)

    def to_world(self, q_local: Sequence[float] | np.ndarray) -> np.ndarray:
        q = np.asarray(q_local, dtype=float)
        return self.origin + q @ self.rot.T

    def vec_to_world(self, v_local: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.asarray(v_local, dtype=float) @ self.rot.T

    def box_corners(self, lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
        """The 8 corners (LPS) of the local box [lo, hi]."""
        c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])], float)
        return self.to_world(c)


# ------------------------------------------------------------------ sampling targets
Box = tuple  # a tuple of slices (grid) or (slice(None),) (point list)


class GridTarget:
    """A regular lattice of points: voxel (i, j, k) -> ``ijk_to_lps @ [i, j, k, 1]``; arrays are (k, j, i)."""

    def __init__(self, ijk_to_lps: np.ndarray, shape_kji: Sequence[int]) -> None:
        self.ijk_to_lps = np.asarray(ijk_to_lps, dtype=float)
        self.lps_to_ijk = np.linalg.inv(self.ijk_to_lps)
        self.shape = tuple(int(n) for n in shape_kji)
        self._pts: Optional[np.ndarray] = None

    def box(self, corners_lps: Optional[np.ndarray]) -> Optional[Box]:
        """Index box (k, j, i slices) holding every lattice point inside the hull of ``corners_lps``."""
        if corners_lps is None:
            return tuple(slice(0, n) for n in self.shape)
        c = np.asarray(corners_lps, dtype=float)
        ijk = c @ self.lps_to_ijk[:3, :3].T + self.lps_to_ijk[:3, 3]
        lo = np.floor(ijk.min(axis=0)).astype(int)
        hi = np.ceil(ijk.max(axis=0)).astype(int) + 1
        out = []
        for axis_ijk, n in ((2, self.shape[0]), (1, self.shape[1]), (0, self.shape[2])):
            a, b = max(lo[axis_ijk], 0), min(hi[axis_ijk], n)
            if a >= b:
                return None
            out.append(slice(int(a), int(b)))
        return tuple(out)

    def points(self, box: Box) -> np.ndarray:
        """LPS points of a box, shape (nk, nj, ni, 3), float32 (the whole grid is computed once and kept)."""
        full = all(s.start == 0 and s.stop == n for s, n in zip(box, self.shape))
        if full:
            if self._pts is None:
                self._pts = self._compute(box)
            return self._pts
        if self._pts is not None:
            return self._pts[box]
        return self._compute(box)

    def _compute(self, box: Box) -> np.ndarray:
        m = self.ijk_to_lps
        o = (m[:3, 3] + box[0].start * m[:3, 2] + box[1].start * m[:3, 1] + box[2].start * m[:3, 0]).astype(F)
        ks = np.arange(box[0].stop - box[0].start, dtype=F)[:, None, None, None] * m[:3, 2].astype(F)
        js = np.arange(box[1].stop - box[1].start, dtype=F)[None, :, None, None] * m[:3, 1].astype(F)
        is_ = np.arange(box[2].stop - box[2].start, dtype=F)[None, None, :, None] * m[:3, 0].astype(F)
        p = np.empty((ks.shape[0], js.shape[1], is_.shape[2], 3), dtype=F)
        np.add(ks, js, out=p)
        p += is_
        p += o
        return p

    @staticmethod
    def union(a: Optional[Box], b: Optional[Box]) -> Optional[Box]:
        if a is None:
            return b
        if b is None:
            return a
        return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))

    @staticmethod
    def relative(inner: Box, outer: Box) -> Box:
        return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))

    def empty(self, dtype=np.uint8) -> np.ndarray:
        return np.zeros(self.shape, dtype=dtype)


class PointTarget:
    """An arbitrary list of LPS points (N, 3); no culling (used for queries and tests)."""

    def __init__(self, points_lps: np.ndarray) -> None:
        self.pts = np.asarray(points_lps, dtype=F).reshape(-1, 3)
        self.shape = (self.pts.shape[0],)

    def box(self, corners_lps: Optional[np.ndarray]) -> Optional[Box]:
        return (slice(0, self.shape[0]),)

    def points(self, box: Box) -> np.ndarray:
        return self.pts[box]

    union = staticmethod(GridTarget.union)
    relative = staticmethod(GridTarget.relative)

    def empty(self, dtype=np.uint8) -> np.ndarray:
        return np.zeros(self.shape, dtype=dtype)


Target = Union[GridTarget, PointTarget]


# ------------------------------------------------------------------ signed distances
def _pow_n(ax: np.ndarray, n: float) -> np.ndarray:
    if n == 2.0:
        return ax * ax
    if n == 2.5:
        return ax * ax * np.sqrt(ax)
    if n == 3.0:
        return ax * ax * ax
    return ax ** F(n)


def sd_superellipse(x: np.ndarray, y: np.ndarray, a, b, n: float) -> np.ndarray:
    """Approximate signed distance to the superellipse |x/a|^n + |y/b|^n = 1 (a, b may be arrays).

    Fast paths for n = 2, 2.5 and 3 (no fractional powers but one)."""
    ax = np.abs(x) / a + _EPS
    ay = np.abs(y) / b + _EPS
    if n == 2.0:
        rho = np.sqrt(ax * ax + ay * ay)
        gx = ax / (a * rho)
        gy = ay / (b * rho)
        return (rho - 1.0) / np.sqrt(gx * gx + gy * gy)
    px = _pow_n(ax, n)
    py = _pow_n(ay, n)
    g = px + py
    rho = g ** F(1.0 / n)
    # grad(rho) = rho^(1-n) / n * grad(g); grad(g) = n * (px/(ax a), py/(ay b))
    gx = px / (ax * a)
    gy = py / (ay * b)
    return (rho - 1.0) * g / (rho * np.sqrt(gx * gx + gy * gy))


def superellipse_rho(x: np.ndarray, y: np.ndarray, a, b, n: float) -> np.ndarray:
    ax = np.abs(x) / a
    ay = np.abs(y) / b
    if n == 2.0:
        return np.sqrt(ax * ax + ay * ay)
    return (_pow_n(ax, n) + _pow_n(ay, n)) ** F(1.0 / n)


def sd_ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, rx, ry, rz) -> np.ndarray:
    qx, qy, qz = x / rx, y / ry, z / rz
    rho = np.sqrt(qx * qx + qy * qy + qz * qz) + _EPS
    g = np.sqrt((qx / rx) ** 2 + (qy / ry) ** 2 + (qz / rz) ** 2) / rho + _EPS
    return (rho - 1.0) / g


def sd_extrude(d2: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Signed distance of a 2D shape (distance ``d2``) extruded over a slab (distance ``dz``)."""
    inside = np.minimum(np.maximum(d2, dz), 0.0)
    outside = np.sqrt(np.maximum(d2, 0.0) ** 2 + np.maximum(dz, 0.0) ** 2)
    return inside + outside


def seg_dist2(px: np.ndarray, py: np.ndarray, a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Distance from 2D points to the segment a-b."""
    ax, ay = float(a[0]), float(a[1])
    dx, dy = float(b[0]) - ax, float(b[1]) - ay
    L2 = dx * dx + dy * dy
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / L2, 0.0, 1.0)
    ex = px - (ax + t * dx)
    ey = py - (ay + t * dy)
    return np.sqrt(ex * ex + ey * ey)


def sd_capsule(p: np.ndarray, a: Sequence[float], b: Sequence[float], r) -> np.ndarray:
    """Signed distance to the capsule of radius r around segment a-b (p: (..., 3)); r may be a pair
    (radius at a, radius at b) for a tapered capsule (approximate distance)."""
    a = np.asarray(a, dtype=F)
    d = np.asarray(b, dtype=F) - a
    L2 = float(d @ d)
    q = p - a
    t = np.clip((q @ d) / L2, 0.0, 1.0)
    e = q - t[..., None] * d
    if isinstance(r, (tuple, list)):
        r = F(r[0]) + (F(r[1]) - F(r[0])) * t
    return np.sqrt(np.einsum("...i,...i->...", e, e)) - r


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def aabb_corners(lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """The 8 corners of the axis-aligned LPS box [lo, hi]."""
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def sd_round_box(x: np.ndarray, y: np.ndarray, hx: float, hy: float, r: float) -> np.ndarray:
    """Signed distance to a 2D box of half sizes (hx, hy) with corners rounded by r."""
    qx = np.abs(x) - F(hx - r)
    qy = np.abs(y) - F(hy - r)
    out = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2) + np.minimum(np.maximum(qx, qy), 0.0)
    return out - F(r)
