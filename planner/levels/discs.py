"""Intervertebral discs along the straightened body column (CT; on MRI the body finder separates the bodies): a
disc is a thin band crossing the column, tilted by up to ``DetectionParams.disc_max_tilt_deg``, darker than the
bone (the endplates) on both sides of it."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from planner.levels.params import DetectionParams


def disc_scores(img: np.ndarray, a_col: np.ndarray, spacing: float, p: DetectionParams,
                flanks_mm: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per row t of ``img`` (the straightened column: rows along the spine every ``spacing`` mm, columns at the
    depths ``a_col`` in front of its posterior wall): how much a band through the column
    (``column_depth_mm``), tilted by the best of the tilts tried (every 4 deg up to ``disc_max_tilt_deg``), is
    darker than the darker of the two parallel bands ``flanks_mm`` above and below it (the best of them), and
    that tilt (radians). Rows within 6 mm of the ends score -inf (no flank on one side)."""
    n = img.shape[0]
    a0, a1 = p.column_depth_mm
    acol = np.flatnonzero((a_col >= a0) & (a_col <= a1)).astype(float)
    a_rel = a_col[acol.astype(int)] - (a0 + a1) / 2
    best = np.full(n, -np.inf)
    tilt = np.zeros(n)
    ts = np.arange(n, dtype=float)
    for th_deg in np.arange(-p.disc_max_tilt_deg, p.disc_max_tilt_deg + 1e-6, 4.0):
        off = a_rel * math.tan(math.radians(th_deg)) / spacing  # row offset along the band

        def band_mean(t: np.ndarray) -> np.ndarray:
            tt = t[:, None] + off[None, :]
            aa = np.broadcast_to(acol[None, :], tt.shape)
            return ndimage.map_coordinates(img, [tt.ravel(), aa.ravel()], order=1, mode="nearest").reshape(
                tt.shape).mean(axis=1)

        centre = band_mean(ts)
        sc = np.full(n, -np.inf)
        for d_mm in flanks_mm:
            d = d_mm / spacing
            sc = np.maximum(sc, np.minimum(band_mean(ts - d), band_mean(ts + d)) - centre)
        better = sc > best
        best[better] = sc[better]
        tilt[better] = math.radians(th_deg)
    edge = int(6 / spacing)
    best[:edge] = -np.inf
    best[n - edge:] = -np.inf
    return best, tilt
