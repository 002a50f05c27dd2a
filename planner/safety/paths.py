"""Measurements of an instrument path against the image model (:class:`planner.safety.model.SpineModel`).

The path is sampled every ``path_step_mm`` (0.5 mm) from the skin (where the introducer's line
leaves the body on the image; else ``approach_mm`` behind the entry) through the introducer, the
curved cannula and the probe to the active tip, with each instrument's radius. The instrument's
surface is a ring of ``surface_points`` points around each axis sample. What is measured:

* **canal**: the smallest distance from the instrument's surface to the canal (negative: inside it by
  that much) and the parts of the path whose surface is inside;
* **bone corridor**: from the first sample in the treated vertebra's bone to the tip, the runs of axis
  samples that are not in it (gaps: where and how long);
* **other bone**: before that first contact, the runs in the bone of anything else (another vertebra,
  the ilium, a rib), with its name and length. On CT a joint crossed behind the pedicle (a dark line
  between two dense bones along the path, :func:`joint_crossings`) separates two bones even where the
  voxels are too coarse to separate them in 3D: the bone before it is the articular process of the
  vertebra above, and the contact with the treated vertebra starts after it. Where no joint shows (a
  facet joint at 3 mm), bone behind the posterior wall that the owners give to the treated vertebra by
  less than their uncertainty (:meth:`SpineModel.owner_margin_mm` below twice
  ``owner_uncertain_voxels`` source voxels) at the start of the contact counts as the nearest other
  vertebra's ("its articular process or the joint between them") and the contact starts after it;
* **pedicle clearance**: from ``clearance_skip_mm`` past the first contact to the posterior wall, the
  distance from the instrument's surface to the edge of the treated vertebra's bone toward the midline,
  away from it, up and down, in the instrument's cross-section (the narrowest part counts);
* **zone**: how far the ablation zone (a sphere at the tip) stays inside the treated vertebra's body,
  and its distance to the canal.

Runs shorter than ``min_run_mm`` are sampling noise and are not reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from planner.safety.model import OWNER_NONE, SpineModel
from planner.safety.params import SAFETY_PARAMS, SafetyParams
from planner.trajectory import TrajectoryPath

WALLS = ("medial", "lateral", "upper", "lower")


@dataclass
class PathSamples:
    """Axis samples of a path from the skin (or ``approach_mm`` behind the entry) to the tip."""

    s_mm: np.ndarray  # (N,) arc length from the first sample
    centre_lps: np.ndarray  # (N, 3)
    tangent: np.ndarray  # (N, 3) unit
    radius_mm: np.ndarray  # (N,)
    instrument: np.ndarray  # (N,) "approach" (the introducer's line outside the bone entry), "introducer", ...
    #: Index of the first sample at or after the plan's entry point.
    entry_index: int
    #: True when the start is the skin found on the image.
    from_skin: bool

    def points_between(self, i0: int, i1: int) -> np.ndarray:
        """Axis points of samples i0..i1 (inclusive)."""
        return self.centre_lps[i0:i1 + 1]


@dataclass
class Run:
    """A part of the path: samples ``i0``..``i1`` (inclusive), from ``start_mm`` for ``length_mm``."""

    i0: int
    i1: int
    start_mm: float
    length_mm: float
    what: str = ""
    code: int = 0
    #: Deepest value in the run (canal: how far inside, mm).
    depth_mm: float = 0.0


@dataclass
class PathMeasurement:
    samples: PathSamples
    level_code: int
    canal_min_mm: Optional[float] = None
    canal_runs: list[Run] = field(default_factory=list)
    first_contact: Optional[int] = None
    gaps: list[Run] = field(default_factory=list)
    others: list[Run] = field(default_factory=list)
    clearance_mm: dict[str, Optional[float]] = field(default_factory=dict)
    clearance_at: Optional[np.ndarray] = None
    zone_inside_mm: Optional[float] = None
    zone_canal_mm: Optional[float] = None
    #: Joints crossed behind the pedicle (CT): dark lines between two dense bones.
    joints: list[Run] = field(default_factory=list)
    #: The zone's centre is in the treated vertebra's body.
    target_in_body: bool = False


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    out = []
    i = 0
    n = len(flags)
    while i < n:
        if flags[i]:
            j = i
            while j + 1 < n and flags[j + 1]:
                j += 1
            out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


def _resample(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return points[:1], np.zeros(1)
    n = max(2, int(np.ceil(s[-1] / step)) + 1)
    ss = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(ss, s, points[:, k]) for k in range(3)]), ss


def sample_path(path: TrajectoryPath, skin_lps: Optional[np.ndarray],
                params: SafetyParams = SAFETY_PARAMS) -> PathSamples:
    """Samples of ``path`` (see :class:`PathSamples`); ``skin_lps`` where the introducer's line leaves
    the body, if found."""
    step = params.path_step_mm
    d = path.direction
    start = skin_lps if skin_lps is not None else path.entry_lps - params.approach_mm * d
    back = float((path.entry_lps - start) @ d)
    pieces: list[tuple[str, np.ndarray, float]] = []
    if back > 1e-6:
        pieces.append(("approach", np.vstack([path.entry_lps - back * d, path.entry_lps]),
                       path.introducer_diameter_mm / 2))
    for seg in path.segments(step):
        if len(seg.points_lps) >= 2:
            pieces.append((seg.name, np.asarray(seg.points_lps, dtype=float), seg.diameter_mm / 2))
    centres, ss, radii, names, tangents = [], [], [], [], []
    offset = 0.0
    entry_index = 0
    for name, pts, r in pieces:
        p, s = _resample(pts, step)
        if centres:
            p, s = p[1:], s[1:]
        if name != "approach" and entry_index == 0:
            entry_index = sum(len(c) for c in centres)
        t = np.gradient(p, axis=0) if len(p) > 1 else np.tile(d, (len(p), 1))
        nrm = np.linalg.norm(t, axis=1, keepdims=True)
        t = np.where(nrm > 1e-9, t / np.maximum(nrm, 1e-12), d)
        centres.append(p)
        ss.append(s + offset)
        radii.append(np.full(len(p), r))
        names += [name] * len(p)
        tangents.append(t)
        offset += float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
    return PathSamples(np.concatenate(ss), np.vstack(centres), np.vstack(tangents), np.concatenate(radii),
                       np.asarray(names), entry_index, skin_lps is not None)


def _ring(samples: PathSamples, n: int) -> np.ndarray:
    """(N, n, 3) points on the instrument's surface around each axis sample."""
    t = samples.tangent
    ref = np.where(np.abs(t[:, 2:3]) < 0.9, np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]]))
    e1 = np.cross(t, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(t, e1)
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = samples.radius_mm[:, None, None]
    return samples.centre_lps[:, None, :] + r * (np.cos(a)[None, :, None] * e1[:, None, :]
                                                  + np.sin(a)[None, :, None] * e2[:, None, :])


def _run(samples: PathSamples, i0: int, i1: int, **kw) -> Run:
    s = samples.s_mm
    step = float(s[1] - s[0]) if len(s) > 1 else 0.0
    return Run(i0, i1, float(s[i0]), float(s[i1] - s[i0]) + step, **kw)


def joint_crossings(model: SpineModel, pts: np.ndarray, params: SafetyParams = SAFETY_PARAMS) -> np.ndarray:
    """CT: samples of a path that cross a joint or a thin gap between two dense bones: darker than
    ``joint_max_hu`` and at least ``joint_depth_hu`` darker than the densest sample within
    ``joint_flank_mm`` on *both* sides, which are at least ``joint_flank_hu`` (two cortices facing each
    other, as across a facet joint)."""
    v = model.grid.sample(pts)
    w = max(1, int(round(params.joint_flank_mm / params.path_step_mm)))
    n = len(v)
    before = np.full(n, -np.inf)
    after = np.full(n, -np.inf)
    for i in range(n):
        if i > 0:
            before[i] = float(np.max(v[max(0, i - w):i]))
        if i + 1 < n:
            after[i] = float(np.max(v[i + 1:i + 1 + w]))
    flank = np.minimum(before, after)
    return (flank >= params.joint_flank_hu) & (v <= flank - params.joint_depth_hu) & (v <= params.joint_max_hu)


def measure_path(model: SpineModel, level_id: str, path: TrajectoryPath, skin_lps: Optional[np.ndarray],
                 zone_radius_mm: float, params: SafetyParams = SAFETY_PARAMS) -> PathMeasurement:
    """Everything :mod:`planner.checks` needs from the image about one path (module docstring)."""
    samples = sample_path(path, skin_lps, params)
    code = model.owner_index(level_id)
    out = PathMeasurement(samples, code)
    pts = samples.centre_lps
    covered = model.covers(pts)
    min_n = max(1, int(round(params.min_run_mm / params.path_step_mm)))

    # --- canal
    if "canal" in model.measured:
        ring = _ring(samples, params.surface_points)
        centre_d = model.canal_distance_mm(pts)
        surface_d = centre_d - samples.radius_mm
        ring_in = model.inside(model.canal, ring.reshape(-1, 3)).reshape(ring.shape[:2]).any(axis=1)
        inside = (surface_d < 0) | ring_in
        out.canal_min_mm = float(np.min(np.where(covered, surface_d, np.inf)))
        for i0, i1 in _runs(inside & covered):
            if i1 - i0 + 1 >= min_n:
                out.canal_runs.append(_run(samples, i0, i1, what="canal",
                                           depth_mm=float(-np.min(surface_d[i0:i1 + 1]))))
    if code == OWNER_NONE:
        return out

    # --- bone: the treated vertebra's and the others'
    mine = model.inside(model.solid_mask(code), pts)
    owners = model.lookup(model.owner, pts)
    bone = model.inside(model.bone, pts)
    anchor = model.anchors[code - 1]
    depth = (pts - anchor.posterior_wall_lps) @ anchor.u
    hits = np.nonzero(mine)[0]
    joint_owner: dict[int, int] = {}
    unsure_owner: dict[int, int] = {}
    valleys = np.zeros(len(pts), dtype=bool)
    if len(hits):
        first = int(hits[0])
        if model.modality == "CT":
            # dark lines between two dense bones: behind the pedicle a joint (the bone before it is the
            # articular process of the vertebra above, even where the voxels are too coarse to separate
            # the two bones in 3D), elsewhere a thin gap (the path leaves the bone and re-enters it)
            valleys = joint_crossings(model, pts, params) & (np.arange(len(pts)) >= first)
            runs = _runs(valleys & (depth <= -params.joint_min_depth_mm))
            if runs:
                j0, j1 = runs[-1]
                out.joints = [_run(samples, a0, a1, what="joint") for a0, a1 in runs]
                for i in range(first, j1 + 1):
                    joint_owner[i] = owners[i]
                valleys[first:j1 + 1] = False
                after = np.nonzero(mine[j1 + 1:])[0]
                first = j1 + 1 + int(after[0]) if len(after) else len(pts)
        margins = model.owner_margin_mm(code)
        if margins is not None and first < len(pts):
            # bone the owners give to this vertebra by less than their uncertainty (a joint the voxels
            # do not resolve): the first contact counts after it, the bone before it may be the
            # neighbour's articular process
            limit = 2.0 * params.owner_uncertain_voxels * model.source_spacing_mm
            margin = model.lookup(margins[0], pts)
            near = model.lookup(margins[1], pts)
            unsure = mine & (margin < limit) & (depth <= -params.joint_min_depth_mm) & (near > 0)
            j1 = first - 1
            while j1 + 1 < len(pts) and unsure[j1 + 1]:
                j1 += 1
            if j1 - first + 1 >= min_n:
                for i in range(first, j1 + 1):
                    unsure_owner[i] = int(near[i])
                after = np.nonzero(mine[j1 + 1:])[0]
                first = j1 + 1 + int(after[0]) if len(after) else len(pts)
        if first < len(pts):
            out.first_contact = first
            for i0, i1 in _runs(~mine[first:] | valleys[first:]):
                i0, i1 = i0 + first, i1 + first
                if i1 - i0 + 1 >= min_n or valleys[i0:i1 + 1].any():
                    out.gaps.append(_run(samples, i0, i1, what="gap"))
        before = np.arange(len(pts)) < first
    else:
        before = np.ones(len(pts), dtype=bool)
    foreign = before & bone & (owners != OWNER_NONE) & \
        ((owners != code) | np.isin(np.arange(len(pts)), list(joint_owner) + list(unsure_owner)))
    for i0, i1 in _runs(foreign):
        if i1 - i0 + 1 < min_n:
            continue
        mid = pts[(i0 + i1) // 2]
        unsure_codes = [unsure_owner[i] for i in range(i0, i1 + 1) if i in unsure_owner]
        if unsure_codes and not any(i in joint_owner for i in range(i0, i1 + 1)):
            # bone that the image does not separate from a neighbour: its articular process, or the
            # joint between the two
            codes, counts = np.unique(unsure_codes, return_counts=True)
            c = int(codes[np.argmax(counts)])
            what = (f"{model.part_name(c, mid)} or the joint between {model.owner_name(c)} and {anchor.name} "
                    f"(not separated on this image)")
        elif any(i in joint_owner for i in range(i0, i1 + 1)):
            # separated from the treated vertebra by a joint behind its pedicle: the inferior articular
            # process of the vertebra above (the facet joint lies between it and this vertebra's own
            # superior articular process)
            above = model.neighbour_above(code)
            what = (f"{above} inferior articular process (a facet joint is crossed)" if above else
                    f"an articular process of the vertebra above {anchor.name} (a facet joint is crossed)")
            c = model.owner_index_by_name(above) if above else code
        else:
            codes, counts = np.unique(owners[i0:i1 + 1][foreign[i0:i1 + 1]], return_counts=True)
            c = int(codes[np.argmax(counts)])
            what = model.part_name(c, mid) if c > 0 else model.owner_name(c)
        out.others.append(_run(samples, i0, i1, what=what, code=c if c != 0 else -3))

    # --- pedicle clearance
    if out.first_contact is not None:
        a = model.anchors[code - 1]
        s0 = samples.s_mm[out.first_contact] + params.clearance_skip_mm
        depth = (pts - a.posterior_wall_lps) @ a.u
        window = (samples.s_mm >= s0) & (depth <= 0.0) & (np.arange(len(pts)) > out.first_contact)
        idx = np.nonzero(window)[0]
        if len(idx):
            out.clearance_mm, out.clearance_at = _clearance(model, code, samples, idx, a, params)

    # --- zone
    target = path.target_lps
    body_d = float(model.body_distance_mm(code, target[None, :])[0])
    out.target_in_body = body_d < 0
    out.zone_inside_mm = -body_d - zone_radius_mm
    if "canal" in model.measured:
        out.zone_canal_mm = float(model.canal_distance_mm(target[None, :])[0]) - zone_radius_mm
    return out


def _clearance(model: SpineModel, code: int, samples: PathSamples, idx: np.ndarray, anchor,
               params: SafetyParams) -> tuple[dict[str, Optional[float]], Optional[np.ndarray]]:
    """Per wall: the smallest distance from the instrument's surface to the edge of the vertebra's bone
    in the cross-section, over the samples ``idx``."""
    mask = model.solid_mask(code)
    t = samples.tangent[idx]
    c = samples.centre_lps[idx]
    mid = anchor.body_center_lps
    up = anchor.s[None, :] - (t @ anchor.s)[:, None] * t
    up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-9)
    toward = mid[None, :] - c
    med = toward - np.sum(toward * t, axis=1, keepdims=True) * t - np.sum(toward * up, axis=1, keepdims=True) * up
    med /= np.maximum(np.linalg.norm(med, axis=1, keepdims=True), 1e-9)
    dirs = {"medial": med, "lateral": -med, "upper": up, "lower": -up}
    r = np.arange(0.0, params.clearance_ray_mm + 1e-9, params.clearance_ray_step_mm)
    out: dict[str, Optional[float]] = {}
    best_at: Optional[np.ndarray] = None
    best = np.inf
    for w, e in dirs.items():
        rays = c[:, None, :] + r[None, :, None] * e[:, None, :]
        ins = model.inside(mask, rays.reshape(-1, 3)).reshape(rays.shape[:2])
        # distance to the first sample outside the bone (0 when the axis itself is outside)
        outside = ~ins
        first_out = np.where(outside.any(axis=1), np.argmax(outside, axis=1), len(r) - 1)
        edge = r[first_out]
        if model.modality == "CT":
            edge = _half_max_edges(model.grid.sample(rays.reshape(-1, 3)).reshape(rays.shape[:2]), r, first_out, edge,
                                   params)
        dist = edge - samples.radius_mm[idx]
        j = int(np.argmin(dist))
        out[w] = float(dist[j])
        if dist[j] < best:
            best = float(dist[j])
            best_at = c[j]
    return out, best_at


def _half_max_edges(profiles: np.ndarray, r: np.ndarray, first_out: np.ndarray, edge: np.ndarray,
                    params: SafetyParams) -> np.ndarray:
    """CT: the bone's edge on each ray where the profile falls half-way from the cortex (the densest
    sample up to ``edge_window_mm`` before the mask's edge) to the soft tissue beyond it (the least dense
    sample up to ``edge_window_mm`` after it): a fixed threshold puts the edge of a dense cortex too far
    out by about a voxel (the clearance would look larger than it is)."""
    out = edge.copy()
    w = max(1, int(round(params.edge_window_mm / params.clearance_ray_step_mm)))
    for i, k in enumerate(first_out):
        if k <= 0 or k >= len(r) - 1:
            continue
        a = profiles[i, max(0, k - w):k + 1]
        b = profiles[i, k:k + w + 1]
        j = int(np.argmax(a)) + max(0, k - w)
        half = 0.5 * (float(profiles[i, j]) + float(np.min(b)))
        below = np.nonzero(profiles[i, j:] < half)[0]
        if len(below) == 0:
            continue
        q = j + int(below[0])
        v0, v1 = float(profiles[i, q - 1]), float(profiles[i, q])
        frac = (v0 - half) / (v0 - v1) if v0 != v1 else 0.0
        out[i] = min(edge[i], r[q - 1] + float(np.clip(frac, 0.0, 1.0)) * (r[q] - r[q - 1]))
    return out


def path_points(samples: PathSamples, i0: int, i1: int) -> np.ndarray:
    return samples.centre_lps[i0:i1 + 1]


__all__ = ["PathSamples", "PathMeasurement", "Run", "sample_path", "measure_path", "path_points", "WALLS"]

