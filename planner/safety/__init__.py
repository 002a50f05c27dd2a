"""The image safety model: bone, spinal canal and other bones measured on the images (issue 11).

* :mod:`planner.safety.model` and :mod:`planner.safety.build`: :func:`spine_model` builds a
  :class:`SpineModel` (bone, canal, who owns
  each piece of bone) of the part of a volume around a plan's levels, cached per volume;
* :mod:`planner.safety.ct` and :mod:`planner.safety.mr`: the segmentation on CT (Hounsfield
  thresholds, enclosure by the vertebral ring) and on MRI (marrow and fluid relative to the image);
* :mod:`planner.safety.paths`: an instrument path measured against the model (canal distance, bone
  corridor and its gaps, other bones, pedicle clearance, the ablation zone);
* :func:`canal_outline_lps`: the canal's outline of one level, for the levels package.

Everything comes from the image; the plan's landmarks only place the search (the canal's search
region, one seed per vertebral body to name the bone). :mod:`planner.checks` turns the measurements
into check rows; :mod:`planner.suggest` searches for a path that passes them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Level
from planner.safety.build import spine_model
from planner.safety.model import SpineModel, anchors_of, level_box
from planner.safety.params import SAFETY_PARAMS, SafetyParams

__all__ = ["SpineModel", "spine_model", "canal_outline_lps", "SAFETY_PARAMS", "SafetyParams"]


def canal_outline_lps(volume: Volume, level: Level, levels: Optional[Sequence[Level]] = None, *,
                      n_points: int = 72, params: SafetyParams = SAFETY_PARAMS
                      ) -> Optional[list[tuple[float, float, float]]]:
    """The spinal canal's outline at ``level`` on ``volume``, measured on the image, or None.

    CT: the space enclosed by the vertebral ring (body, pedicles, laminae), lateral recesses included;
    MRI: the bright fluid of the thecal sac (T2, STIR, water images; None on a T1 image). The outline is
    a closed polygon of ``n_points`` points (LPS mm, counter-clockwise seen from above) in the level's
    axial plane (normal to its superior direction) through the middle of its pedicle centre landmarks
    (through the body centre when no pedicle is marked); each point is where a ray from the canal's
    centre in that plane leaves the canal. The landmarks of ``level`` (and of ``levels``, the plan's
    other levels, used to name the bone) only place the plane and the search region: the outline comes
    from the image. None when the level has no usable landmarks, lies outside the image, or no canal is
    found there.
    """
    anchors = anchors_of([level])
    if not anchors or anchors[0].frame is None:
        return None
    a = anchors[0]
    try:
        model = spine_model(volume, list(levels) if levels else [level], level_box(a, params), params)
    except ValueError:
        return None
    if "canal" not in model.measured:
        return None
    f = a.frame
    peds = [p for p in (f.pedicle_left_lps, f.pedicle_right_lps) if p is not None]
    centre = np.mean(peds, axis=0) if peds else f.body_center_lps
    e1 = f.l - (f.l @ f.s) * f.s
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(f.s, e1)  # posterior-ward (-u) in the usual orientation
    if e2 @ f.u > 0:
        e2 = -e2
    # where the plane crosses the posterior wall: the search starts behind it, on the midline
    c0 = centre + float((f.body_center_lps - centre) @ e1) * e1
    c0 = c0 + float((f.posterior_wall_lps - c0) @ e2) * e2
    step = 0.25
    g = np.arange(-params.canal_search_lateral_mm, params.canal_search_lateral_mm + 1e-9, step)
    h = np.arange(-params.canal_search_front_mm, params.canal_search_back_mm + 1e-9, step)
    gg, hh = np.meshgrid(g, h)
    plane = c0 + gg[..., None] * e1 + hh[..., None] * e2
    inside = model.inside(model.canal, plane.reshape(-1, 3)).reshape(gg.shape)
    lab, n = ndimage.label(inside)
    if n == 0:
        return None
    # the piece nearest the midline just behind the wall
    coms = ndimage.center_of_mass(inside, lab, range(1, n + 1))
    j0 = int(np.argmin([abs(g[int(round(cx))]) + abs(h[int(round(cy))]) for cy, cx in coms])) + 1
    piece = lab == j0
    cy, cx = coms[j0 - 1]
    cg, ch = float(np.interp(cx, np.arange(len(g)), g)), float(np.interp(cy, np.arange(len(h)), h))
    angles = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
    radii = np.arange(0.0, 2 * max(g[-1], h[-1]), step / 2)
    out = []
    for t in angles:
        xs = (cg + radii * np.cos(t) - g[0]) / step
        ys = (ch + radii * np.sin(t) - h[0]) / step
        ok = (xs >= 0) & (xs <= len(g) - 1) & (ys >= 0) & (ys <= len(h) - 1)
        vals = np.zeros(len(radii), dtype=bool)
        vals[ok] = piece[np.rint(ys[ok]).astype(int), np.rint(xs[ok]).astype(int)]
        outside = np.nonzero(~vals)[0]
        k = int(outside[0]) if len(outside) else len(radii)
        r = radii[max(k - 1, 0)]
        p = c0 + (cg + r * np.cos(t)) * e1 + (ch + r * np.sin(t)) * e2
        out.append(tuple(float(v) for v in p))
    return out
