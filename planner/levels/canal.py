"""The spinal canal per level (today: the sacral canal's half-width on MRI, used to place S1's pedicles)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from planner.levels.params import DetectionParams
from planner.levels.profiles import _NativeSlices


def _mr_sacral_canal_half_width(ns: _NativeSlices, height: float, d_line: float, p: DetectionParams
                                ) -> Optional[float]:
    """Half the interpedicular distance at S1: the widest transverse half-width of the sacral canal. Along
    lines from the midline outward at depths from 2 to 12 mm behind the wall line and heights around
    mid-height, where marrow signal starts and lasts 3 mm (the bone beside the canal); the upper quartile
    over the lines (the canal is widest at its AP middle). ``ns`` is framed on the posterior wall's
    midline point."""
    step = 0.25
    xs = np.arange(0.0, 40.0 + 1e-6, step)
    need = max(1, int(round(3.0 / step)))
    edges = []
    for side in (+1, -1):
        for d in np.arange(2.0, 12.0 + 1e-6, 2.0):
            for dh in (-0.15 * height, 0.0, 0.15 * height):
                prof = ns.sample(side * xs, -(d_line + d), dh)
                band = np.abs(prof - 1.0) < p.mr_marrow_tol
                for k in np.flatnonzero(xs >= 4.0):
                    if k + need <= len(xs) and band[k:k + need].all():
                        edges.append(float(xs[k]))
                        break
    if len(edges) < 8:
        return None
    return float(np.percentile(edges, 75))
