"""The spine as seen on one image: bone, spinal canal and who owns each piece of bone.

:class:`SpineModel` holds them for the part of a volume around some levels of a plan, with the
helpers both segmentations share (the canal's search region and pieces, the owners of the bone);
:func:`planner.safety.build.spine_model` builds it: on CT from Hounsfield thresholds
(:mod:`planner.safety.ct`), on MRI from the signal of marrow and fluid relative to the image itself
(:mod:`planner.safety.mr`). The plan's landmarks are used
only to say *where* to look (the search region of the canal, one seed point per vertebral body to
name the bone, the mid-sagittal plane that separates the spine from the ilium and the ribs); the
outlines come from the image. The model answers the questions of the safety checks along a path:
is a point in bone, whose bone is it, how far is it from the canal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from planner.imaging.volume import Volume
from planner.plan import Level
from planner.safety.ct import enclosure_counts
from planner.safety.grid import Grid
from planner.safety.params import SAFETY_PARAMS, SafetyParams
from planner.trajectory import LandmarkError, VertebraFrame, vertebra_frame

log = logging.getLogger(__name__)

#: Owner codes of bone that belongs to no level of the plan.
OWNER_NONE = 0
OWNER_ILIUM = -1
OWNER_RIB = -2
OWNER_OTHER = -3
#: Levels whose neighbourhood holds the iliac crest (lateral bone at or below them is ilium).
_PELVIC_LEVELS = ("L4", "L5", "L6", "S1", "S2")


@dataclass(frozen=True)
class Anchor:
    """Where a level of the plan is, from its landmarks: only used to place searches and seeds."""

    level_id: str
    name: str
    body_center_lps: np.ndarray
    #: Unit vectors: anterior (u), superior (s) and lateral (l, to the patient's right) of the level;
    #: the patient's axes when the level's frame cannot be built.
    u: np.ndarray
    s: np.ndarray
    l: np.ndarray  # noqa: E741
    posterior_wall_lps: np.ndarray
    height_mm: float
    frame: Optional[VertebraFrame] = None

    @staticmethod
    def of(level: Level) -> Optional["Anchor"]:
        lm = level.landmarks
        if lm.body_center_lps is None:
            return None
        c = np.asarray(lm.body_center_lps, dtype=float)
        try:
            f = vertebra_frame(level)
        except LandmarkError:
            u, s, l_ = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([-1.0, 0.0, 0.0])
            post = np.asarray(lm.posterior_wall_lps, dtype=float) if lm.posterior_wall_lps is not None \
                else c + 17.0 * np.array([0.0, 1.0, 0.0])
            return Anchor(level.id, level.name, c, u, s, l_, post, 26.0, None)
        return Anchor(level.id, level.name, c, f.u, f.s, f.l, f.posterior_wall_lps, f.height_mm, f)


def anchors_of(levels: Sequence[Level]) -> list[Anchor]:
    return [a for a in (Anchor.of(lv) for lv in levels) if a is not None]


@dataclass
class SpineModel:
    """Bone, canal and owners of the bone on an LPS-aligned grid (see the module docstring)."""

    grid: Grid
    modality: str  # "CT" or "MR"
    #: Bone of any kind (cortex and cancellous); on MRI the marrow and its cortex.
    bone: np.ndarray
    #: The spinal canal (CT: inside the vertebral ring, lateral recesses included; MRI: the thecal sac).
    canal: np.ndarray
    #: Per voxel: 0 no bone; k > 0 the k-th anchor's vertebra (``anchors[k - 1]``); OWNER_ILIUM,
    #: OWNER_RIB, OWNER_OTHER for bone that is not a vertebra of the plan.
    owner: np.ndarray
    anchors: list[Anchor]
    #: What was measured on this image: "bone", "canal", "owners".
    measured: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    _trees: dict[Any, Optional[cKDTree]] = field(default_factory=dict, repr=False)
    _masks: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)
    _floats: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    #: CT: the seeds and step costs the owners were found with (:func:`assign_owners`), for
    #: :meth:`owner_margin_mm`; None on MRI.
    owner_markers: Optional[np.ndarray] = field(default=None, repr=False)
    owner_weight: Optional[np.ndarray] = field(default=None, repr=False)
    #: The largest voxel size of the image the model was built from (mm): what the image can resolve.
    source_spacing_mm: float = 0.0
    _margins: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    #: MRI, per owner code: the vertebral body as the body model outlines it (the body of that level on MRI;
    #: a level without an entry has no body on the image). Empty on CT, where the body is the vertebra's bone
    #: in front of its posterior wall.
    bodies: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    #: MRI: the owner codes whose body the image cuts at its side (the sagittal slices end inside its width):
    #: the outline holds only the part in view, so the body's left-right middle is not measured.
    cut_at_side: set[int] = field(default_factory=set)
    #: MRI: owner code -> height ratio of the levels whose body outline is much taller than its lumbar neighbours
    #: (``MrBodiesParams.tall_body_ratio``): it may run on into the next bone, so its middle is not the body's.
    taller_than_neighbours: dict[int, float] = field(default_factory=dict)

    # ---------------------------------------------------------------- lookups
    def owner_index(self, level_id: str) -> int:
        for i, a in enumerate(self.anchors):
            if a.level_id == level_id:
                return i + 1
        return OWNER_NONE

    def owner_index_by_name(self, name: str) -> int:
        for i, a in enumerate(self.anchors):
            if a.name == name:
                return i + 1
        return OWNER_NONE

    def neighbour_above(self, code: int) -> str:
        """The name of the level of the plan just above the ``code``-th level's (along its superior
        direction), or ""."""
        a = self.anchors[code - 1]
        above = [(float((b.body_center_lps - a.body_center_lps) @ a.s), b.name) for b in self.anchors
                 if b.level_id != a.level_id and float((b.body_center_lps - a.body_center_lps) @ a.s) > 10.0]
        return min(above)[1] if above else ""

    def owner_name(self, code: int) -> str:
        if code > 0:
            return self.anchors[code - 1].name
        return {OWNER_ILIUM: "ilium", OWNER_RIB: "rib", OWNER_OTHER: "another bone"}.get(code, "soft tissue")

    def lookup(self, mask: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
        """Nearest-voxel values of ``mask`` at LPS points (False / 0 outside the grid)."""
        pts = np.asarray(points_lps, dtype=float)
        idx = np.rint(self.grid.index_of(pts.reshape(-1, 3))).astype(int)
        ok = np.all((idx >= 0) & (idx < np.array(mask.shape)), axis=1)
        out = np.zeros(len(idx), dtype=mask.dtype)
        i = idx[ok]
        out[ok] = mask[i[:, 0], i[:, 1], i[:, 2]]
        return out.reshape(pts.shape[:-1])

    def _as_float(self, mask: np.ndarray) -> np.ndarray:
        entry = self._floats.get(id(mask))
        if entry is None or entry[0] is not mask:
            entry = (mask, mask.astype(np.float32))
            self._floats[id(mask)] = entry
        return entry[1]

    def inside(self, mask: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
        """Sub-voxel membership: trilinear interpolation of the mask, at least one half."""
        pts = np.asarray(points_lps, dtype=float)
        idx = self.grid.index_of(pts.reshape(-1, 3)).T
        v = ndimage.map_coordinates(self._as_float(mask), idx, order=1, mode="constant", cval=0.0,
                                    prefilter=False)
        return (v >= 0.5).reshape(pts.shape[:-1])

    def covers(self, points_lps: np.ndarray) -> np.ndarray:
        return self.grid.contains(points_lps)

    def _boundary_tree(self, key: Any, mask: np.ndarray) -> Optional[cKDTree]:
        """KD-tree of the voxel centres of ``mask`` that touch its outside (its surface)."""
        if key not in self._trees:
            surface = mask & ~ndimage.binary_erosion(mask, border_value=1)
            pts = np.argwhere(surface)
            self._trees[key] = cKDTree(self.grid.lps_of(pts)) if len(pts) else None
        return self._trees[key]

    #: Distances beyond this are not needed exactly (they are reported as infinite) (mm).
    far_mm: float = 40.0

    def distance_to(self, key: Any, mask: np.ndarray, points_lps: np.ndarray) -> np.ndarray:
        """Signed distance (mm) from points to the surface of ``mask``: positive outside, negative
        inside; +inf when the mask is empty or the surface is farther than ``far_mm``. The surface lies
        half a voxel outside the surface voxels' centres."""
        pts = np.asarray(points_lps, dtype=float).reshape(-1, 3)
        tree = self._boundary_tree(key, mask)
        if tree is None:
            return np.full(len(pts), np.inf)
        d, _ = tree.query(pts, distance_upper_bound=self.far_mm)
        half = 0.5 * self.grid.spacing_mm
        ins = self.inside(mask, pts)
        return np.where(ins, -(d + half), np.maximum(d - half, 0.0))

    def canal_distance_mm(self, points_lps: np.ndarray) -> np.ndarray:
        return self.distance_to("canal", self.canal, points_lps)

    def vertebra_mask(self, code: int) -> np.ndarray:
        key = ("vertebra", code)
        if key not in self._masks:
            self._masks[key] = self.owner == code
        return self._masks[key]

    def has_body(self, code: int) -> bool:
        """True when the ``code``-th level's body was found on the image (on MRI: outlined by the body model)."""
        return bool(self._body_region(code).any())

    def _body_region(self, code: int) -> np.ndarray:
        """The ``code``-th vertebra's body: on MRI as the body model outlines it, on CT its bone in front of its
        posterior wall plane."""
        key = ("body_region", code)
        if key not in self._masks and self.modality == "MR":
            self._masks[key] = self.bodies.get(code, np.zeros(self.owner.shape, dtype=bool))
        if key not in self._masks:
            a = self.anchors[code - 1]
            vert = self.vertebra_mask(code)
            depth = _along(self._box_lps((slice(None),) * 3), a.posterior_wall_lps, a.u)
            self._masks[key] = self._ct_grown_body(code, vert & (depth >= -1.0))
        return self._masks[key]

    def _box_lps(self, box: tuple[slice, ...]) -> list[np.ndarray]:
        """The L, P and S coordinates (mm) of the voxels of ``box`` (sparse, broadcastable)."""
        z, y, x = (self.grid.axis_lps(axis)[b] for axis, b in enumerate(box))
        return [x[None, None, :], y[None, :, None], z[:, None, None]]

    def _own_slab(self, a: Anchor, p: list[np.ndarray], margin_mm: float) -> np.ndarray:
        """Per voxel of coordinates ``p`` (:meth:`_box_lps`): nearer to ``a``'s body centre along the spine than
        to any other level's (as :func:`nearest_anchor`) and within half ``a``'s body height and ``margin_mm``
        of it."""
        mine = np.abs(_along(p, a.body_center_lps, a.s))
        out = mine <= 0.5 * a.height_mm + margin_mm
        for b in self.anchors:
            if b.level_id != a.level_id:
                out &= mine <= np.abs(_along(p, b.body_center_lps, b.s))
        return out

    def _ct_grown_body(self, code: int, owned: np.ndarray) -> np.ndarray:
        """CT: the body's bone ``owned`` (the vertebra's bone in front of its posterior wall plane) and the
        inside of the body it encloses with a fainter shell (``ct_body_shell_hu``): where a faint cortex
        (low-dose, thick slices) leaves the marrow behind it out of the bone, the body still reaches its
        wall. Only what touches ``owned``, is not another vertebra's, an ilium's or a rib's bone, lies in
        front of the posterior wall plane and no farther than the landmarks' AP depth and
        ``body_front_margin_mm``, and in the level's own slab along the spine (nearer to its body centre
        than to another level's, within half its height and that margin): the landmarks bound the search,
        the outline is the image's."""
        a = self.anchors[code - 1]
        if a.frame is None or not owned.any():
            return owned
        p = SAFETY_PARAMS
        sp = self.grid.spacing_mm
        r = int(round(p.body_grow_mm / sp))
        box = ndimage.find_objects(owned.astype(np.int8))[0]
        box = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, n in zip(box, owned.shape))
        hu = ndimage.gaussian_filter(self.grid.array[box].astype(np.float32), p.smooth_mm / sp)
        enc = enclosure_counts(hu >= p.ct_body_shell_hu, sp, p.enclosure_ray_mm)
        k = p.enclosure_min_rays
        lps = self._box_lps(box)
        depth = _along(lps, a.posterior_wall_lps, a.u)
        owner = self.owner[box]
        inside = ((enc["sagittal"] >= k) & (enc["coronal"] >= k) & (hu >= p.ct_cancellous_hu)
                  & (depth >= -1.0) & (depth <= a.frame.depth_mm + p.body_front_margin_mm)
                  & ((owner == code) | (owner == OWNER_NONE) | (owner == OWNER_OTHER))
                  & self._own_slab(a, lps, p.body_front_margin_mm))
        here = owned[box]
        labels, _ = ndimage.label(inside | here)
        keep = np.unique(labels[here])
        out = owned.copy()
        out[box] |= np.isin(labels, keep[keep > 0])
        return out

    def _filled(self, mask: np.ndarray, closing_mm: float) -> np.ndarray:
        """``mask`` with its holes filled in 3D and in every axial, coronal and sagittal slice, after a
        closing that bridges gaps up to twice ``closing_mm`` (none when 0)."""
        if not mask.any():
            return mask
        r = int(round(closing_mm / self.grid.spacing_mm))
        box = ndimage.find_objects(mask.astype(np.int8))[0]
        box = tuple(slice(max(0, b.start - r), b.stop + r) for b in box)
        sub = mask[box]
        if r > 0:
            ball = np.sum((np.indices((2 * r + 1,) * 3) - r) ** 2, axis=0) <= r * r
            sub = ndimage.binary_closing(sub, structure=ball, border_value=0) | sub
        sub = ndimage.binary_fill_holes(sub)
        for axis in range(3):
            sub |= np.stack([ndimage.binary_fill_holes(x) for x in np.moveaxis(sub, axis, 0)], axis=axis)
        out = mask.copy()
        out[box] = sub
        return out

    def body_mask(self, code: int) -> np.ndarray:
        """The outline of the ``code``-th anchor's vertebral body (for the zone): its bone in front of the
        posterior wall plane with the holes inside filled (fatty marrow, veins, the basivertebral
        foramen), also where its cortex shows gaps narrower than twice ``body_closing_mm``."""
        key = ("body", code)
        if key not in self._masks:
            self._masks[key] = self._filled(self._body_region(code), SAFETY_PARAMS.body_closing_mm)
        return self._masks[key]

    def solid_mask(self, code: int) -> np.ndarray:
        """The vertebra's bone with the holes inside its body filled (for the path: inside the body counts
        as bone even where the cancellous bone is faint; no closing, so a gap in the cortex that the path
        crosses stays a gap)."""
        key = ("solid", code)
        if key not in self._masks:
            self._masks[key] = self.vertebra_mask(code) | self._filled(self._body_region(code), 0.0)
        return self._masks[key]

    def body_distance_mm(self, code: int, points_lps: np.ndarray) -> np.ndarray:
        return self.distance_to(("body", code), self.body_mask(code), points_lps)

    def bone_distance_mm(self, code: int, points_lps: np.ndarray) -> np.ndarray:
        return self.distance_to(("vertebra", code), self.vertebra_mask(code), points_lps)

    def owner_margin_mm(self, code: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """CT: how sure the ``code``-th vertebra's ownership of each voxel is. Returns (margin, other):
        per voxel of the bone, the geodesic distance (the owners' step cost, mm) to the nearest seed of
        another vertebra of the plan minus that to this vertebra's seeds, and that other vertebra's code
        (+inf and 0 where none is reachable, and off the bone). Where a joint is too thin for the voxels
        the boundary between two vertebrae is drawn half-way between their seeds, and a margin of 2 x mm
        means that moving the boundary by x mm would give the voxel to the other vertebra. None on MRI."""
        if self.owner_markers is None or self.owner_weight is None:
            return None
        if code not in self._margins:
            from scipy.sparse import csgraph

            _, graph = geodesic_graph(self.bone, self.owner_weight, self.grid.spacing_mm)
            flat = self.owner_markers[self.bone]
            mine = np.nonzero(flat == code)[0]
            others = np.nonzero((flat > 0) & (flat <= len(self.anchors)) & (flat != code))[0]
            margin = np.full(self.grid.shape, np.inf, dtype=np.float32)
            other = np.zeros(self.grid.shape, dtype=np.int16)
            if len(mine) and len(others):
                d_mine = csgraph.dijkstra(graph, directed=False, indices=mine, min_only=True)
                d_other, _, src = csgraph.dijkstra(graph, directed=False, indices=others, min_only=True,
                                                   return_predecessors=True)
                ok = np.isfinite(d_other) & np.isfinite(d_mine) & (src >= 0)
                diff = np.full(len(flat), np.inf)
                diff[ok] = d_other[ok] - d_mine[ok]
                margin[self.bone] = diff
                codes = np.zeros(len(flat), dtype=np.int16)
                codes[ok] = flat[src[ok]]
                other[self.bone] = codes
            self._margins[code] = (margin, other)
        return self._margins[code]

    def part_name(self, code: int, point_lps: np.ndarray) -> str:
        """Which part of the ``code``-th vertebra a point is in, from its place in the level's frame."""
        if code <= 0:
            return self.owner_name(code)
        a = self.anchors[code - 1]
        p = np.asarray(point_lps, dtype=float)
        depth = float((p - a.posterior_wall_lps) @ a.u)
        lat = abs(float((p - a.body_center_lps) @ a.l))
        up = float((p - a.body_center_lps) @ a.s)
        if depth >= -1.0:
            part = "body"
        elif lat > 30.0:
            part = "transverse process"
        elif lat < 8.0 and depth < -15.0:
            part = "lamina or spinous process"
        elif up > 0.2 * a.height_mm and depth < -8.0:
            part = "superior articular process"
        elif up < -0.2 * a.height_mm and depth < -8.0:
            part = "inferior articular process"
        else:
            part = "pedicle"
        return f"{a.name} {part}"


# ============================================================================ building
def _along(p: list[np.ndarray], origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Signed distance (mm) along ``direction`` from the plane through ``origin``, at coordinates ``p``
    (sparse L, P, S arrays, :meth:`SpineModel._box_lps`)."""
    return sum((p[i] - origin[i]) * direction[i] for i in range(3))


def level_box(anchor: Anchor, params: SafetyParams = SAFETY_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """The LPS box modelled around one level (see :class:`SafetyParams`)."""
    c = anchor.body_center_lps
    pts = []
    for a in (-params.region_front_mm - 25.0, params.region_back_mm):
        for b in (-params.region_height_mm, params.region_height_mm):
            for w in (-params.region_lateral_mm, params.region_lateral_mm):
                pts.append(c - a * anchor.u + b * anchor.s + w * anchor.l)
    pts_a = np.asarray(pts)
    return pts_a.min(0), pts_a.max(0)


def _mid_plane_distance(grid: Grid, anchors: Sequence[Anchor]) -> np.ndarray:
    """Per voxel: distance (mm) from the mid-sagittal plane of the nearest level along the spine."""
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    p = [grid.origin_lps[0] + xx * grid.spacing_mm, grid.origin_lps[1] + yy * grid.spacing_mm,
         grid.origin_lps[2] + zz * grid.spacing_mm]
    best = np.full(grid.shape, np.inf, dtype=np.float32)
    best_h = np.full(grid.shape, np.inf, dtype=np.float32)
    for a in anchors:
        h = np.abs(sum((p[i] - a.body_center_lps[i]) * a.s[i] for i in range(3)))
        lat = np.abs(sum((p[i] - a.body_center_lps[i]) * a.l[i] for i in range(3)))
        h = np.broadcast_to(h, grid.shape)
        lat = np.broadcast_to(lat, grid.shape)
        closer = h < best_h
        best = np.where(closer, lat, best)
        best_h = np.where(closer, h, best_h)
    return best


def nearest_anchor(grid: Grid, anchors: Sequence[Anchor]) -> np.ndarray:
    """Per voxel: index (0-based) of the level nearest along the spine."""
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    p = [grid.origin_lps[0] + xx * grid.spacing_mm, grid.origin_lps[1] + yy * grid.spacing_mm,
         grid.origin_lps[2] + zz * grid.spacing_mm]
    best_h = np.full(grid.shape, np.inf, dtype=np.float32)
    which = np.zeros(grid.shape, dtype=np.int16)
    for i, a in enumerate(anchors):
        h = np.broadcast_to(np.abs(sum((p[k] - a.body_center_lps[k]) * a.s[k] for k in range(3))), grid.shape)
        closer = h < best_h
        which = np.where(closer, i, which)
        best_h = np.where(closer, h, best_h)
    return which


def canal_search_region(grid: Grid, anchors: Sequence[Anchor], params: SafetyParams = SAFETY_PARAMS) -> np.ndarray:
    """Where the canal is looked for: behind each level's posterior wall, near its mid-sagittal plane,
    between the levels' heights (the landmarks place the search, the image gives the outline)."""
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    p = [grid.origin_lps[0] + xx * grid.spacing_mm, grid.origin_lps[1] + yy * grid.spacing_mm,
         grid.origin_lps[2] + zz * grid.spacing_mm]
    which = nearest_anchor(grid, anchors)
    out = np.zeros(grid.shape, dtype=bool)
    for i, a in enumerate(anchors):
        depth = sum((p[k] - a.posterior_wall_lps[k]) * a.u[k] for k in range(3))
        lat = np.abs(sum((p[k] - a.body_center_lps[k]) * a.l[k] for k in range(3)))
        region = (depth <= params.canal_search_front_mm) & (depth >= -params.canal_search_back_mm) & \
                 (lat <= params.canal_search_lateral_mm)
        out |= region & (which == i)
    return out


def keep_pieces(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[lab]


def bridge_along(mask: np.ndarray, allowed: np.ndarray, n_voxels: int) -> np.ndarray:
    """Close ``mask`` along array axis 0 (the spine, superior) over gaps of up to ``n_voxels``,
    only where ``allowed``."""
    if n_voxels < 2:
        return mask
    structure = np.zeros((2 * (n_voxels // 2) + 1, 1, 1), dtype=bool)
    structure[:, 0, 0] = True
    pad = n_voxels // 2 + 1
    padded = np.pad(mask, ((pad, pad), (0, 0), (0, 0)))
    closed = ndimage.binary_closing(padded, structure=structure)[pad:-pad]
    return mask | (closed & allowed)


def segment_canal(grid: Grid, enclosed: np.ndarray, bone: np.ndarray, anchors: Sequence[Anchor],
                  params: SafetyParams = SAFETY_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """The canal from the voxels the bone encloses in the axial plane (see :mod:`planner.safety.ct`),
    and the bony ring around each piece of it as seeds of the level it belongs to (0 elsewhere; the
    level whose body is nearest along the spine, numbered as the owners)."""
    s = grid.spacing_mm
    region = canal_search_region(grid, anchors, params)
    lab, n = ndimage.label(enclosed & region)
    rings = np.zeros(grid.shape, dtype=np.int16)
    if n == 0:
        return np.zeros(grid.shape, dtype=bool), rings
    sizes = np.bincount(lab.ravel())
    keep = sizes >= int(params.canal_min_piece_mm3 / s ** 3)
    keep[0] = False
    pieces = keep[lab]
    centres = ndimage.center_of_mass(np.ones(grid.shape), lab, index=np.arange(1, n + 1))
    grow = max(1, int(round(params.ring_seed_mm / s)))
    slab = params.ring_seed_slab_mm
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    pos = [grid.origin_lps[0] + xx * s, grid.origin_lps[1] + yy * s, grid.origin_lps[2] + zz * s]
    for k in np.nonzero(keep)[0]:
        c = grid.lps_of(np.asarray(centres[k - 1]))
        heights = [abs(float((c - a.body_center_lps) @ a.s)) for a in anchors]
        i = int(np.argmin(heights))
        a = anchors[i]
        piece = lab == k
        box = ndimage.find_objects(piece.astype(np.int8))[0]
        box = tuple(slice(max(0, b.start - grow - 1), b.stop + grow + 1) for b in box)
        near = ndimage.binary_dilation(piece[box], iterations=grow) & bone[box]
        sub = [pos[0][:, :, box[2]], pos[1][:, box[1], :], pos[2][box[0], :, :]]
        height = sum((sub[d] - c[d]) * a.s[d] for d in range(3))
        seeds = near & (np.abs(height) <= slab)
        view = rings[box]
        view[seeds & (view == 0)] = i + 1
    canal = bridge_along(pieces, region & ~bone, int(round(params.canal_bridge_mm / s)))
    return canal, rings


def assign_owners(grid: Grid, bone: np.ndarray, value: np.ndarray, anchors: Sequence[Anchor],
                  params: SafetyParams = SAFETY_PARAMS, extra_seeds: Optional[np.ndarray] = None
                  ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Which vertebra (or ilium, rib) each bone voxel belongs to: a seeded watershed over the bone in
    which a boundary runs where the bone is least dense (joints, the sacro-iliac joint), seeds at
    the levels' body centres and in bone far from the spine's mid-sagittal plane. Returns (owner,
    notes, markers, weight): the seeds (owner codes 1.. of the levels, 1000 ilium, 1001 rib) and the
    cost per mm of a step through each voxel, for :meth:`SpineModel.owner_margin_mm`."""
    notes: list[str] = []
    s = grid.spacing_mm
    markers = np.zeros(grid.shape, dtype=np.int16)
    r = params.seed_radius_mm
    zz, yy, xx = np.indices(grid.shape, sparse=True)
    pos = [grid.origin_lps[0] + xx * s, grid.origin_lps[1] + yy * s, grid.origin_lps[2] + zz * s]
    bone_pts: Optional[cKDTree] = None
    for i, a in enumerate(anchors):
        c = a.body_center_lps
        if not grid.contains(c):
            continue
        rel = [pos[k] - c[k] for k in range(3)]
        if a.frame is not None:
            # the middle of the body: an ellipsoid well inside the walls and endplates
            f = a.frame
            ru, rs = params.seed_body_fraction * f.depth_mm / 2, params.seed_body_fraction * f.height_mm / 2
            q = (sum(rel[k] * a.u[k] for k in range(3)) / ru) ** 2 + \
                (sum(rel[k] * a.s[k] for k in range(3)) / rs) ** 2 + (sum(rel[k] * a.l[k] for k in range(3)) / ru) ** 2
            ball = (q <= 1.0) & bone
        else:
            ball = (sum(v ** 2 for v in rel) <= r * r) & bone
        if not ball.any():
            if bone_pts is None:
                bone_pts = cKDTree(grid.lps_of(np.argwhere(bone))) if bone.any() else None
            if bone_pts is None:
                continue
            dist, j = bone_pts.query(c)
            if dist > params.seed_max_offset_mm:
                notes.append(f"{a.name}: the body centre landmark is {dist:.0f} mm from bone on this image")
                continue
            cc = bone_pts.data[j]
            ball = (sum((pos[k] - cc[k]) ** 2 for k in range(3)) <= r * r) & bone
        markers[ball & (markers == 0)] = i + 1
    if extra_seeds is not None:
        markers = np.where((markers == 0) & bone, extra_seeds, markers).astype(np.int16)
    if anchors:
        lateral = _mid_plane_distance(grid, anchors)
        far = bone & (lateral >= params.lateral_bone_mm) & (markers == 0)
        if far.any():
            which = nearest_anchor(grid, anchors)
            pelvic = np.array([a.name.upper() in _PELVIC_LEVELS for a in anchors])
            is_pelvic = pelvic[which]
            markers[far & is_pelvic] = 1000
            markers[far & ~is_pelvic] = 1001
    owner = np.zeros(grid.shape, dtype=np.int16)
    if not markers.any():
        owner[bone] = OWNER_OTHER
        return owner, notes
    # a narrow dark valley in the bone (a black top-hat: the joint space between two cortices) makes a
    # step expensive, so that the boundary between two vertebrae runs through their joints and not
    # through the faint cancellous bone where a pedicle joins its body
    rad = max(1, int(round(params.joint_width_mm / s)))
    offsets = np.indices((2 * rad + 1,) * 3) - rad
    ball = np.sum(offsets ** 2, axis=0) <= rad * rad
    smooth = ndimage.gaussian_filter(value, params.joint_smooth_mm / s)
    valley = np.clip(ndimage.grey_closing(smooth, footprint=ball) - smooth, 0.0, None)
    weight = 1.0 + valley / params.joint_valley_hu
    labels = geodesic_voronoi(bone, markers, weight, s)
    owner = labels.astype(np.int16)
    owner[owner == 1000] = OWNER_ILIUM
    owner[owner == 1001] = OWNER_RIB
    owner[bone & (labels == 0)] = OWNER_OTHER
    return owner, notes, markers, weight


_NEIGHBOURS = [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) > (0, 0, 0)]


def geodesic_voronoi(mask: np.ndarray, markers: np.ndarray, weight: np.ndarray, spacing_mm: float,
                     max_mm: float = np.inf) -> np.ndarray:
    """Per voxel of ``mask``: the marker value of the nearest marker along paths inside ``mask``
    (26-connected steps of their length times the mean ``weight`` of their two voxels); 0 where no
    marker is reachable within ``max_mm``."""
    from scipy.sparse import csgraph

    out = np.zeros(mask.shape, dtype=markers.dtype)
    if not mask.any():
        return out
    index, graph = geodesic_graph(mask, weight, spacing_mm)
    seeds = index[mask & (markers != 0)]
    if len(seeds) == 0:
        return out
    dist, _, sources = csgraph.dijkstra(graph, directed=False, indices=seeds, min_only=True,
                                        return_predecessors=True, limit=max_mm)
    flat_markers = markers[mask]
    lab = np.zeros(len(dist), dtype=markers.dtype)
    ok = (sources >= 0) & np.isfinite(dist)
    lab[ok] = flat_markers[sources[ok]]
    out[mask] = lab
    return out


def geodesic_graph(mask: np.ndarray, weight: np.ndarray, spacing_mm: float) -> tuple[np.ndarray, Any]:
    """(index, graph): the voxels of ``mask`` numbered (-1 elsewhere) and the sparse graph of their
    26-connected steps (length times the mean ``weight`` of the two voxels)."""
    from scipy import sparse

    n = int(mask.sum())
    index = np.full(mask.shape, -1, dtype=np.int64)
    index[mask] = np.arange(n)
    w_flat = weight[mask].astype(np.float64)
    rows, cols, vals = [], [], []
    nz, ny, nx = mask.shape
    for dz, dy, dx in _NEIGHBOURS:
        a = index[max(0, -dz):nz - max(0, dz), max(0, -dy):ny - max(0, dy), max(0, -dx):nx - max(0, dx)]
        b = index[max(0, dz):nz + min(0, dz), max(0, dy):ny + min(0, dy), max(0, dx):nx + min(0, dx)]
        ok = (a >= 0) & (b >= 0)
        ia, ib = a[ok], b[ok]
        rows.append(ia)
        cols.append(ib)
        vals.append(spacing_mm * float(np.sqrt(dz * dz + dy * dy + dx * dx)) * 0.5 * (w_flat[ia] + w_flat[ib]))
    graph = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return index, graph


def grid_volume(model: SpineModel, mask: np.ndarray) -> Volume:
    """A mask of the model as a :class:`Volume` (for views and tests)."""
    g = model.grid
    m = np.diag([g.spacing_mm, g.spacing_mm, g.spacing_mm, 1.0])
    m[:3, 3] = g.origin_lps
    return Volume(mask.astype(np.uint8), m)


__all__ = ["Anchor", "SpineModel", "segment_canal", "assign_owners", "canal_search_region",
           "level_box", "anchors_of", "grid_volume", "OWNER_NONE", "OWNER_ILIUM", "OWNER_RIB", "OWNER_OTHER"]
