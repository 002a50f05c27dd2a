"""The spinal canal per level: its outline at the body's mid-height on CT (from the bone ring around it).
(On MRI the canal is not measured yet: the safety model's canal segmentation is to fill it.)"""

from __future__ import annotations

import numpy as np

from scipy import ndimage

from planner.imaging.volume import Volume
from planner.levels.params import DetectionParams
from planner.levels.pedicles import BodyFrame
from planner.levels.results import lps_tuple


def ct_canal_outline(volume: Volume, frame: BodyFrame, centre_lps: np.ndarray, p: DetectionParams
                     ) -> list[tuple[float, float, float]]:
    """The spinal canal's outline on CT in a plane perpendicular to the body's axis at (or, within a
    quarter of the body's height, nearest to) its mid-height: a closed polygon (LPS) where rays from the
    canal's middle first meet bone.

    The canal's middle: along the midline behind the posterior wall, halfway between the wall's bone and
    the next bone behind it (the lamina or spinous process) within ``ct_canal_max_depth_mm``. The plane is,
    among those within ``ct_canal_height_fraction`` of the body's height from mid-height, the one where the
    most rays (below) meet bone: where the bone ring is most nearly closed (nearest to mid-height among
    equals). From there
    ``ct_canal_rays`` rays in the plane stop at the first sample above ``frame.bone_thr``, and those toward
    the front at the posterior wall's back surface (found on the midline); a ray that meets no bone
    within ``ct_canal_max_depth_mm`` (it leaves through a foramen, between the pedicles above and below
    the plane) takes the radius interpolated from its neighbours around the ring, no radius exceeds 1.5
    times the median radius (a ray slipping through a gap), and a running median of five rays smooths
    the ring. Empty when the
    middle is not found or fewer than half the rays meet bone."""
    step = p.ct_pedicle_step_mm
    wall = centre_lps + ((frame.post - centre_lps) @ frame.ap) * frame.ap  # the wall point at mid-height
    depth = np.arange(0.0, p.ct_canal_max_depth_mm + 1e-6, step)
    n = p.ct_canal_rays
    ang = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    dirs = np.cos(ang)[:, None] * frame.lat[None, :] + np.sin(ang)[:, None] * frame.ap[None, :]
    toward = dirs @ frame.ap
    best = None
    # the plane (within ct_canal_height_fraction of the body's height from mid-height) where the bone ring
    # round the canal is most nearly closed, the nearest to mid-height among equals (at mid-height the plane
    # may pass between two laminae, or below an open sacral arch)
    half = p.ct_canal_height_fraction * frame.height
    for dh in sorted(np.arange(-half, half + 1e-6, 1.0), key=abs):
        mid_h = wall + dh * frame.axis
        line = volume.sample(mid_h[None, :] - depth[:, None] * frame.ap[None, :], order=1, fill=-1024.0)
        soft = np.flatnonzero(line < frame.bone_thr)
        if soft.size == 0:
            continue
        front = int(soft[0])  # the first sample behind the wall's bone
        behind = np.flatnonzero(line[front:] >= frame.bone_thr)
        if not behind.size:
            continue
        seed = mid_h - 0.5 * (depth[front] + depth[front + int(behind[0])]) * frame.ap
        front_gap = 0.5 * (depth[front + int(behind[0])] - depth[front])  # seed to the wall's back
        vals = volume.sample(seed[None, None, :] + depth[None, :, None] * dirs[:, None, :], order=1, fill=-1024.0)
        radii = np.full(n, np.nan)
        for i in range(n):
            hit = np.flatnonzero(vals[i] >= frame.bone_thr)
            if hit.size and hit[0] > 0:
                k = int(hit[0])
                v0, v1 = vals[i, k - 1], vals[i, k]
                radii[i] = depth[k - 1] + step * float(np.clip((frame.bone_thr - v0) / (v1 - v0), 0.0, 1.0))
        # the canal's front is the posterior wall: a ray toward it stops there even where the thin cortex
        # does not reach the bone threshold (it would run on into the body)
        wall_r = np.where(toward > 1e-6, front_gap / np.maximum(toward, 1e-6), np.inf)
        radii = np.where(np.isfinite(radii), np.minimum(radii, wall_r),
                         np.where(np.isfinite(wall_r), wall_r, np.nan))
        closed = int(np.isfinite(radii).sum())
        if best is None or closed > best[0]:
            best = (closed, seed, radii)
    if best is None:
        return []
    _, seed, radii = best
    ok = np.isfinite(radii)
    if ok.sum() < n / 2:
        return []
    idx = np.arange(n)
    radii = np.interp(idx, idx[ok], radii[ok], period=n)
    # a ray that slips through a gap in the ring (a foramen) is a spike: no radius beyond 1.5 times the
    # median, then a running median around the ring
    radii = np.minimum(radii, 1.5 * float(np.median(radii)))
    radii = ndimage.median_filter(radii, size=5, mode="wrap")
    return [lps_tuple(seed + rr * d) for rr, d in zip(radii, dirs)]
