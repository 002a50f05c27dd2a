"""MRI primitives shared by body and pedicle measurement: a vertebra's frame sampled in the acquired
(thick) slices, its mirror-symmetry midline, and the cortical lines and marrow runs along profiles."""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.levels.params import DetectionParams


class NativeSlices:
    """An MR volume seen from one vertebra's frame, sampled in its own (thick) slices.

    Points are given as (x, a, h): ``x`` mm toward the patient's left, ``a`` mm anterior and ``h`` mm
    cranial along the body's axis, from ``origin``; values are divided by ``marrow`` (the body's normal
    marrow signal). :meth:`in_slice` samples on the centre plane of one acquired slice, so the
    thick-slice signal is never mixed with the neighbouring slice; :meth:`sample` interpolates across
    slices (trilinear). ``sagittal`` is True when the slices are roughly parallel to the midsagittal
    plane (the only case where :meth:`x_of` and :meth:`in_slice` are meaningful)."""

    def __init__(self, volume: Volume, origin: np.ndarray, lat: np.ndarray, ant: np.ndarray, axis: np.ndarray,
                 marrow: float) -> None:
        self.volume = volume
        self.origin, self.lat, self.ant, self.axis = origin, lat, ant, axis
        self.marrow = float(marrow)
        m = volume.ijk_to_lps
        normal = np.cross(m[:3, 0], m[:3, 1])
        normal /= np.linalg.norm(normal)
        self.normal = normal
        nl = float(normal @ lat)
        self.sagittal = abs(nl) > 0.7
        nl = nl if abs(nl) > 1e-6 else 1e-6
        self.k_step = float(normal @ m[:3, 2]) / nl
        self.k0 = float(normal @ m[:3, 3] - normal @ origin) / nl
        self.ga = float(normal @ ant) / nl
        self.gh = float(normal @ axis) / nl
        self.nk = int(volume.array.shape[0])
        self.thickness = abs(self.k_step)

    def lps(self, x, a, h) -> np.ndarray:
        x, a, h = np.broadcast_arrays(np.asarray(x, float), np.asarray(a, float), np.asarray(h, float))
        return (self.origin + x[..., None] * self.lat + a[..., None] * self.ant + h[..., None] * self.axis)

    def local(self, p_lps: np.ndarray) -> np.ndarray:
        """(x, a, h) of LPS points (..., 3)."""
        r = np.asarray(p_lps, float) - self.origin
        return np.stack([r @ self.lat, r @ self.ant, r @ self.axis], axis=-1)

    def sample(self, x, a, h) -> np.ndarray:
        return self.volume.sample(self.lps(x, a, h)) / self.marrow

    def x_of(self, k, a, h) -> np.ndarray:
        """Lateral position of the centre plane of slice ``k`` at (a, h)."""
        return self.k0 + np.asarray(k, float) * self.k_step - np.asarray(a, float) * self.ga \
            - np.asarray(h, float) * self.gh

    def in_slice(self, k: int, a, h) -> np.ndarray:
        return self.sample(self.x_of(k, a, h), a, h)

    def slice_grid(self, a: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Values of every slice on the (a, h) lattice: array (nk, len(a), len(h))."""
        aa, hh = np.meshgrid(a, h, indexing="ij")
        return np.stack([self.in_slice(k, aa, hh) for k in range(self.nk)])

    def across(self, grid: np.ndarray, a: np.ndarray, h: np.ndarray, x: np.ndarray, cubic: bool = False
               ) -> np.ndarray:
        """Values at lateral offsets ``x`` (array (..., len(a), len(h)) or broadcastable) interpolated
        between the slices of ``grid`` (from :meth:`slice_grid`): linearly, or with cubic convolution
        (Keys, a = -0.5) through four slices; NaN outside the slices."""
        aa, hh = np.meshgrid(a, h, indexing="ij")
        base = self.k0 - aa * self.ga - hh * self.gh
        s = (np.asarray(x, float) - base) / self.k_step
        i0 = np.floor(s).astype(int)
        f = s - i0
        ia = np.arange(len(a))[:, None]
        ih = np.arange(len(h))[None, :]
        nk = self.nk
        if cubic:
            ok = (i0 >= 1) & (i0 <= nk - 3)
            i0 = np.clip(i0, 1, nk - 3)
            f2, f3 = f * f, f * f * f
            w = (-0.5 * f3 + f2 - 0.5 * f, 1.5 * f3 - 2.5 * f2 + 1.0,
                 -1.5 * f3 + 2.0 * f2 + 0.5 * f, 0.5 * f3 - 0.5 * f2)
            v = sum(wj * grid[i0 + j - 1, ia, ih] for j, wj in enumerate(w))
        else:
            ok = (i0 >= 0) & (i0 <= nk - 2)
            i0 = np.clip(i0, 0, nk - 2)
            v = grid[i0, ia, ih] * (1 - f) + grid[i0 + 1, ia, ih] * f
        return np.where(ok, v, np.nan)


def mirror_midline(ns: NativeSlices, a: np.ndarray, h: np.ndarray, search_mm: float = 5.0,
                    reach_mm: float = 30.0) -> Optional[float]:
    """Lateral offset of the midsagittal plane of symmetry of the vertebra: the offset ``c`` that makes the
    image at ``c + x`` most like the image at ``c - x`` over the (a, h) lattice (both sides of the body,
    the canal, pedicles and posterior elements; a vertebra is close to mirror-symmetric). The slices are
    interpolated linearly across, and the best ``c`` is refined with a parabola. None when too few
    slices cover both sides."""
    if not ns.sagittal or ns.nk < 5:
        return None
    grid = np.clip(ns.slice_grid(a, h), 0.0, 3.0)
    cs = np.arange(-search_mm, search_mm + 1e-6, 0.25)
    xs = np.arange(0.75, reach_mm + 1e-6, 1.5)
    shape = (len(cs), len(xs), len(a), len(h))
    plus = np.broadcast_to((cs[:, None] + xs[None, :])[:, :, None, None], shape)
    minus = np.broadcast_to((cs[:, None] - xs[None, :])[:, :, None, None], shape)
    d = ns.across(grid, a, h, plus, cubic=True) - ns.across(grid, a, h, minus, cubic=True)
    ok = np.isfinite(d)
    cnt = ok.sum(axis=(1, 2, 3))
    tot = np.where(ok, d * d, 0.0).sum(axis=(1, 2, 3))
    err = np.where(cnt > 0.3 * len(xs) * len(a) * len(h), tot / np.maximum(cnt, 1), np.inf)
    if not np.isfinite(err).any():
        return None
    i = int(np.argmin(err))
    c = float(cs[i])
    if 0 < i < len(cs) - 1 and np.isfinite(err[i - 1]) and np.isfinite(err[i + 1]):
        den = err[i - 1] - 2 * err[i] + err[i + 1]
        if den > 1e-12:
            c += 0.5 * (err[i - 1] - err[i + 1]) / den * (cs[1] - cs[0])
    return c


def first_dip(prof: np.ndarray, level: float, window: int = 4) -> Optional[float]:
    """Index (fractional) of the cortical line: the lowest sample within ``window`` samples after the
    profile first falls below ``level`` (a dark ligament or fluid beyond it is not taken), refined
    with a parabola through its neighbours."""
    # below ``level``, or (thin cortex blurred on T2, between bright neighbours) clearly below the
    # signal just before it: a drop of more than 0.25 (ratio to marrow) to under 0.85
    run_max = np.maximum.accumulate(prof)
    # maximum of the last 7 samples (this one and the 6 before)
    recent = ndimage.maximum_filter1d(prof, size=7, origin=3, mode="nearest")
    below = np.flatnonzero((prof < level) | ((prof < 0.85) & (recent - prof > 0.25) & (run_max > 0.9)))
    if below.size == 0:
        return None
    k0 = int(below[0])
    k1 = min(len(prof) - 1, k0 + window)
    k = k0 + int(np.argmin(prof[k0:k1 + 1]))
    km = float(k)
    if 0 < k < len(prof) - 1:
        y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
        den = y0 - 2 * y1 + y2
        if den > 1e-12:
            km = k + float(np.clip(0.5 * (y0 - y2) / den, -1.0, 1.0))
    return km


def cortex_line(prof: np.ndarray, pos: np.ndarray, p: DetectionParams, dip_index: Optional[float] = None
                 ) -> Optional[tuple[float, float, Optional[float]]]:
    """The first cortical line along a profile that starts in marrow (positions ``pos`` increasing
    outward, ratio to marrow): (inner edge, centre, outer edge) in mm. The edges are where the signal is
    halfway between the line's minimum and the level on that side (sub-sample, linear); the outer edge
    is None when the tissue beyond is not brighter than the line (a dark ligament or annulus).
    ``dip_index``: the line's (fractional) sample index when already known."""
    k = first_dip(prof, p.mr_wall_dip) if dip_index is None else dip_index
    if k is None:
        return None
    step = float(pos[1] - pos[0])
    kc = int(round(k))
    n = len(prof)
    centre = float(np.interp(k, np.arange(n), pos))
    dip = float(prof[kc])
    lo = max(0, kc - int(round(5.0 / step)))
    hi = max(lo + 1, kc - int(round(1.5 / step)))
    inner_level = float(np.median(prof[lo:hi])) if hi > lo else float(prof[0])
    half = 0.5 * (inner_level + dip)
    j = kc
    while j > 0 and prof[j - 1] < half:
        j -= 1
    if j == 0:
        return None
    a, b = prof[j - 1], prof[j]
    inner = float(pos[j - 1] + step * (a - half) / (a - b)) if a != b else float(pos[j])
    far = prof[kc + 1: min(n, kc + 1 + int(round(3.0 / step)))]
    outer = None
    if far.size and far.max() - dip > 0.15:
        top = float(far.max())
        half_o = 0.5 * (dip + top)
        j = kc
        while j + 1 < n and prof[j + 1] < half_o:
            j += 1
        if j + 1 < n:
            a, b = prof[j], prof[j + 1]
            outer = float(pos[j] + step * (half_o - a) / (b - a)) if a != b else float(pos[j])
    return inner, centre, outer


def dip_near(prof: np.ndarray, pos: np.ndarray, expected: float, tol_mm: float, level: float) -> Optional[float]:
    """Fractional index of the darkest local minimum below ``level`` within ``tol_mm`` of ``expected``
    (parabola-refined), or None."""
    n = len(prof)
    cand = [k for k in range(1, n - 1) if prof[k] <= prof[k - 1] and prof[k] <= prof[k + 1] and prof[k] < level
            and abs(pos[k] - expected) <= tol_mm]
    if not cand:
        return None
    k = min(cand, key=lambda j: prof[j])
    y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
    den = y0 - 2 * y1 + y2
    return k + (float(np.clip(0.5 * (y0 - y2) / den, -1.0, 1.0)) if den > 1e-12 else 0.0)


def surface(edges: tuple[float, float, Optional[float]], kind: str) -> float:
    """The bone surface from a cortical line's (inner edge, centre, outer edge) (distances outward).

    A wall (``kind`` "wall"): the outer edge of the line where the tissue beyond is brighter than it
    (fat, fluid, muscle); beside a dark ligament or fluid the line's far edge is not seen and the line
    is taken as wide beyond its centre as it is within. An endplate ("endplate"): the centre of the dark
    line, which on MRI is the cortical bone together with the cartilage endplate and the innermost
    annulus; the bone surface lies between them."""
    inner, centre, outer = edges
    if kind == "endplate":
        return centre
    return outer if outer is not None else 2 * centre - inner


def marrow_run(prof: np.ndarray, pos: np.ndarray, pos0: float, lo: float = DetectionParams.mr_run_level,
                search_mm: float = 3.0,
                max_gap_mm: float = 2.0) -> Optional[tuple[float, float]]:
    """(low, high) edges of the run of marrow-like signal (ratio above ``lo``) containing ``pos0`` (or
    nearest to it within ``max_gap_mm``) along a profile: each edge where the signal is halfway
    between the run's level and the darkest point of the cortical line beyond it (sub-sample). None
    when no such run is closed by dark lines on both ends inside the profile."""
    inside = prof > lo
    lab, n = ndimage.label(inside)
    if n == 0:
        return None
    best = None
    for c in range(1, n + 1):
        idx = np.flatnonzero(lab == c)
        gap = 0.0 if pos[idx[0]] <= pos0 <= pos[idx[-1]] else min(abs(pos[idx[0]] - pos0), abs(pos[idx[-1]] - pos0))
        if best is None or gap < best[0]:
            best = (gap, idx)
    if best[0] > max_gap_mm:
        return None
    idx = best[1]
    if idx[0] == 0 or idx[-1] == len(prof) - 1:
        return None
    plateau = float(np.median(np.minimum(prof[idx], 1.3)))
    step = float(pos[1] - pos[0])
    nsr = int(round(search_mm / step))
    out = []
    for end, direction in ((int(idx[0]), -1), (int(idx[-1]), +1)):
        seg = end + direction * np.arange(0, nsr + 1)
        seg = seg[(seg >= 0) & (seg < len(prof))]
        j = int(seg[int(np.argmin(prof[seg]))])
        level = 0.5 * (plateau + float(prof[j]))
        k = end
        while k != j and prof[k + direction] >= level:
            k += direction
        if k == j:
            out.append(float(pos[j]))
            continue
        a, b = prof[k], prof[k + direction]
        out.append(float(pos[k] + direction * step * (a - level) / (a - b)))
    return out[0], out[1]


def parabola_apex(xs: np.ndarray, ys: np.ndarray) -> float:
    """x of the largest of ``ys`` refined with a parabola through it and its neighbours (xs sorted)."""
    i = int(np.argmax(ys))
    if 0 < i < len(ys) - 1:
        y0, y1, y2 = ys[i - 1], ys[i], ys[i + 1]
        den = y0 - 2 * y1 + y2
        if den < -1e-9:
            off = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
            return float(xs[i] + off * ((xs[i + 1] - xs[i]) if off >= 0 else (xs[i] - xs[i - 1])))
    return float(xs[i])
