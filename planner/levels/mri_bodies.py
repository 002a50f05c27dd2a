"""Vertebral bodies on sagittal MRI from a small learned network, their landmarks and their names.

The network (``resources/models/mri_bodies.onnx``, trained by ``scripts/train_mri_bodies.py`` on the
lumbar MRI of ``../shared/data/lumbar_mri_vb``) gives, for every pixel of a sagittal plane
(:mod:`planner.levels.mri_input`), the probability of background, vertebral body, the L5 body and the S1
body. It is one ONNX graph of two compact 2D U-Nets trained alike but for their Modic-like augmentation
(subtle marrow zones; bands along the endplates as dark or bright as the darkest or brightest tissue), and
returns their union: a pixel is body when either network sees it (the first reads Modic-free bodies best,
the second keeps a body whose marrow is changed over half its height). It sees only the plane's pixels
scaled by their own percentiles: no DICOM tag and no absolute intensity is used, so T1, T2, STIR/TIRM and
water-fat images are all read the same way.

Steps (:func:`find_bodies`; the settings are :class:`planner.levels.params.MrBodiesParams`):

1. **Planes.** Sagittal planes across the spine on a 2 mm grid (:data:`~planner.levels.mri_input.GRID_MM`):
   on a sagittal acquisition the acquired slices themselves (thinned to ``plane_step_mm``), else planes
   every ``plane_step_mm``. With marks the planes cover ``half_width_mm`` either side of the marks; without
   marks a first pass over the whole width finds the spine's midline.
2. **Bodies** (:func:`split_bodies`). In each plane the discs separate the bodies' confident cores (a core
   that holds two cores of the neighbouring plane, where the disc is bridged in some planes only, is split
   by them); cores of neighbouring planes that are each other's best overlap are one body; every pixel of the
   body mask (probability above ``threshold``) joins its nearest core. Parts smaller than ``min_body_ml`` are
   dropped; the column (:func:`_keep_column`) is the chain of parts, top to bottom, with the steps and
   bends of a spine that holds the most body (and the marked bodies), without small pieces between two of
   its bodies. Below a last lumbar body, the top of
   the sacrum is outlined at the lower ``sacrum_threshold`` (:func:`_add_sacrum`).
3. **Landmarks** (:func:`edge_landmarks`): the body centre is the centroid of its part; on the sagittal
   plane through it, the walls are where the body's probability falls to 0.5 along its AP line through
   the centre, the endplate centres where it falls to 0.5 along its axis (of the two principal axes of
   its section, the one nearer the direction of the spine between its neighbours): the definition of the
   reference in ``tests/anatomy_reference.py``.
4. **Names.** From two marks (:func:`name_from_marks`): each mark names the body it lies in and the chain
   is counted from them; marks that disagree with the image (outside the bodies, in a disc, a count of
   bodies between them that does not fit their names) raise :class:`~planner.levels.results.MarkError`
   naming the likely correction (counted from the sacrum where the image shows it); marks that fit each
   other but not the sacrum keep their names with a warning. Without marks (:func:`name_without_marks`):
   the last lumbar body recognised by the network above the sacrum anchors the count, or the reason why
   the levels cannot be named is raised ("cannot name the levels: ...": among others when two neighbouring
   bodies look like it and the upper one far less surely, or when it is as large as two bodies).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.levels.grid import working_volume
from planner.levels.params import DetectionParams, MrBodiesParams
from planner.levels.results import LevelDetectionError, MarkError
from planner.levels.mri_input import (
    CLASSES,
    GRID_MM,
    PlaneGeometry,
    inside_volume,
    normalise_plane,
    plane_for_box,
    sample_plane,
)

#: The shipped model.
MODEL_PATH = Path(__file__).resolve().parents[2] / "resources" / "models" / "mri_bodies.onnx"


#: The landmarks of a body that the body finder measures (the pedicles are measured elsewhere).
BODY_LANDMARKS = ("body_center_lps", "superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps",
                  "anterior_wall_lps")


@dataclass
class Body:
    """One vertebral body found: its part of the body mask and landmarks (LPS mm)."""

    centre_lps: np.ndarray
    volume_ml: float
    #: Mean probability of the L5 and S1 classes inside the body.
    p_l5: float
    p_s1: float
    #: Cut by the top or bottom edge of the image (its centre and landmarks are of the part in view).
    partial: bool
    label: int  # index of the part in :attr:`BodyScan.parts`
    #: Outlined at the lower ``sacrum_threshold`` (the top of the sacrum, which the model sees less surely).
    faint: bool = False
    #: Cut by the side of the image (the sagittal slices end inside its width, or an oblique stack's slanted
    #: side crosses it: :func:`near_image_edge`): its mid-sagittal landmarks are whole, its left-right middle is
    #: that of the part in view.
    cut_at_side: bool = False
    #: How far (mm) the body's probability fades below its inferior endplate when that endplate was read at
    #: ``inferior_edge_threshold`` (0: read at the body's threshold).
    inferior_fade_mm: float = 0.0
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""


@dataclass
class BodyScan:
    """What the network found in a volume: the planes, the probabilities and the chain of bodies (top first)."""

    planes: list[PlaneGeometry]
    body_prob: np.ndarray  # (n_planes, rows, cols)
    parts: np.ndarray  # (n_planes, rows, cols) int32 labels of the bodies' parts
    bodies: list[Body]
    #: LPS z of the lower and the upper edge of the part of the image searched.
    z_range_lps: tuple[float, float] = (-np.inf, np.inf)
    notes: list[str] = field(default_factory=list)
    #: The image disagrees with the marks (each names the likely correction).
    warnings: list[str] = field(default_factory=list)

    @property
    def xs(self) -> np.ndarray:
        return np.array([g.x_lps for g in self.planes])

    def part_at(self, lps: np.ndarray) -> int:
        """The part label at an LPS point (0: no body), from the nearest plane."""
        k = int(np.argmin(np.abs(self.xs - lps[0])))
        if abs(self.xs[k] - lps[0]) > max(2.5, 0.75 * self._plane_step()):
            return 0
        r, c = np.round(self.planes[k].pixel_of(lps)).astype(int)
        if not (0 <= r < self.parts.shape[1] and 0 <= c < self.parts.shape[2]):
            return 0
        return int(self.parts[k, r, c])

    def body_at(self, lps: np.ndarray) -> Optional["Body"]:
        """The body of the chain that holds an LPS point, or None."""
        lab = self.part_at(np.asarray(lps, float))
        return next((b for b in self.bodies if b.label == lab), None) if lab else None

    def inside(self, body: "Body", points_lps: np.ndarray, params: Optional[MrBodiesParams] = None) -> np.ndarray:
        """True at the LPS points (..., 3) that lie inside ``body``: its own probability, interpolated across
        the planes and within them, at least the threshold it was outlined with (``sacrum_threshold`` for the
        faint top of the sacrum, else ``threshold``)."""
        p = params or MrBodiesParams()
        pts = np.asarray(points_lps, dtype=float)
        # only the points near the body's planes and rows are sampled (the rest are outside)
        k_i, r_i, c_i = np.nonzero(self.parts == body.label)
        out = np.zeros(pts.shape[:-1], dtype=bool)
        if len(k_i) == 0:
            return out
        xs = self.xs
        g = self.planes[0]
        step = self._plane_step()
        lo = np.array([xs[k_i.min()] - step, *g.lps_of(np.array([r_i.max() + 3.0, c_i.min() - 3.0]))[1:]])
        hi = np.array([xs[k_i.max()] + step, *g.lps_of(np.array([r_i.min() - 3.0, c_i.max() + 3.0]))[1:]])
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        near = np.all((pts >= lo) & (pts <= hi), axis=-1)
        if near.any():
            thr = p.sacrum_threshold if body.faint else p.threshold
            out[near] = self.body_prob_at(pts[near], self.part_prob(body.label)) >= thr
        return out

    def _plane_step(self) -> float:
        return float(np.median(np.diff(self.xs))) if len(self.planes) > 1 else GRID_MM

    def part_prob(self, part: int) -> np.ndarray:
        """The body probability of one body: its pixels and a 2-pixel rim around them in each plane."""
        own = ndimage.binary_dilation(self.parts == part, iterations=2, structure=_in_plane_cross())
        return np.where(own, self.body_prob, 0.0).astype(np.float32)

    def body_prob_at(self, lps: np.ndarray, prob: Optional[np.ndarray] = None) -> np.ndarray:
        """Body probability at LPS points (..., 3), linear across planes and within them; ``prob``: another
        array on the planes (e.g. :meth:`part_prob`)."""
        pts = np.asarray(lps, dtype=float)
        xs = self.xs
        flat = pts.reshape(-1, 3)
        out = np.zeros(len(flat))
        prob = self.body_prob if prob is None else prob
        g = self.planes[0]
        kf = np.interp(flat[:, 0], xs, np.arange(len(xs)), left=-1.0, right=-1.0)
        if len(xs) == 1:
            kf = np.where(np.abs(flat[:, 0] - xs[0]) <= GRID_MM, 0.0, -1.0)
        ok = kf >= 0
        rc = g.pixel_of(flat[ok])
        coords = np.vstack([kf[ok], rc[:, 0], rc[:, 1]])
        out[ok] = ndimage.map_coordinates(prob, coords, order=1, mode="constant", cval=0.0,
                                          prefilter=False)
        return out.reshape(pts.shape[:-1])


@functools.lru_cache(maxsize=1)
def _in_plane_cross() -> np.ndarray:
    s = np.zeros((1, 3, 3), bool)
    s[0, 1, :] = s[0, :, 1] = True
    return s


class BodyNet:
    """The ONNX network: class probabilities of sagittal planes."""

    def __init__(self, path: Path = MODEL_PATH, threads: int = 1) -> None:
        import onnxruntime as ort

        if not Path(path).is_file():
            raise LevelDetectionError(f"the MRI body model {path} is missing (it ships in resources/models)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def probabilities(self, planes: np.ndarray, batch: int = 4) -> np.ndarray:
        """(n, rows, cols) scaled planes -> (n, len(CLASSES), rows, cols) float32 probabilities."""
        out = []
        for i in range(0, len(planes), batch):
            x = np.ascontiguousarray(planes[i:i + batch, None], dtype=np.float32)
            out.append(self.session.run(None, {self.input: x})[0])
        probs = np.concatenate(out, 0)
        if probs.shape[1] != len(CLASSES):
            raise LevelDetectionError(f"the MRI body model {self.path} gives {probs.shape[1]} classes, "
                                     f"expected {len(CLASSES)}")
        return probs


def default_net(path: Optional[str] = None, threads: int = 1) -> BodyNet:
    """The network of ``path``, or of :data:`MODEL_PATH` as it is at the call (the level finder and the MRI image
    checks both load it here, so a bench that measures a held-out model swaps that one name), kept loaded."""
    return _loaded_net(str(path or MODEL_PATH), threads)


@functools.lru_cache(maxsize=2)
def _loaded_net(path: str, threads: int) -> BodyNet:
    return BodyNet(Path(path), threads)


# ------------------------------------------------------------------------------------------------ planes
def is_sagittal_stack(volume) -> bool:
    """True when the volume's slices are sagittal (their normal within about 25 deg of left-right): the planes
    the body finder reads are then the acquired slices; on another stack they are resampled across its
    slices."""
    return bool(abs(volume.slice_normal()[0]) >= 0.9)


def _sagittal_slices(volume) -> Optional[tuple[np.ndarray, float]]:
    """(LPS x of each acquired slice, slice spacing) when the volume is a sagittal stack, else None."""
    if not is_sagittal_stack(volume):
        return None
    normal = volume.slice_normal()
    ni, nj, nk = volume.shape_ijk
    centre = np.array([(ni - 1) / 2, (nj - 1) / 2, 0.0])
    xs = np.array([volume.ijk_to_world(centre + [0, 0, k])[0] for k in range(nk)])
    return xs, float(abs(volume.spacing[2] * normal[0]))


def _plane_xs(volume, lo: float, hi: float, step: float) -> np.ndarray:
    """Plane positions in [lo, hi]: acquired sagittal slices (thinned to ``step``) or a regular grid."""
    sag = _sagittal_slices(volume)
    if sag is not None:
        xs, sp = sag
        xs = np.sort(xs[(xs >= lo - 0.5 * sp) & (xs <= hi + 0.5 * sp)])
        if len(xs) == 0:
            return xs
        keep = [xs[0]]
        for x in xs[1:]:
            if x - keep[-1] >= step - 0.25 * sp:
                keep.append(x)
        return np.asarray(keep)
    n = max(1, int(math.floor((hi - lo) / step)) + 1)
    return lo + (hi - lo - (n - 1) * step) / 2 + np.arange(n) * step


def _box(volume, marks: Sequence[np.ndarray], p: MrBodiesParams) -> tuple[float, float, float, float, float, float]:
    corners = volume.corners_lps()
    lo, hi = corners.min(0), corners.max(0)
    if marks:
        m = np.asarray(marks)
        y_lo, y_hi = m[:, 1].min() - p.front_mm, m[:, 1].max() + p.back_mm
        z_lo, z_hi = m[:, 2].min() - p.reach_mm, m[:, 2].max() + p.reach_mm
        lo = np.maximum(lo, [lo[0], y_lo, z_lo])
        hi = np.minimum(hi, [hi[0], y_hi, z_hi])
    # a plane at most 480 mm square (the spine lies in it; bounded time and memory)
    for ax in (1, 2):
        if hi[ax] - lo[ax] > 480.0:
            mid = 0.5 * (hi[ax] + lo[ax])
            lo[ax], hi[ax] = mid - 240.0, mid + 240.0
    return lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]


def _run_planes(volume, net: BodyNet, xs: np.ndarray, box
                ) -> tuple[list[PlaneGeometry], np.ndarray, np.ndarray]:
    """Class probabilities on the planes at ``xs`` (n, classes, rows, cols), and where the planes lie inside the
    image (n, rows, cols)."""
    _, _, y_lo, y_hi, z_lo, z_hi = box
    lps_to_index = np.eye(4)
    lps_to_index[:3] = volume.lps_to_ijk[[2, 1, 0]]
    arr = volume.array if volume.array.dtype == np.float32 else volume.array.astype(np.float32)
    planes, imgs, inside = [], [], []
    for x in xs:
        g = plane_for_box(float(x), y_lo, y_hi, z_lo, z_hi)
        pts = g.points_lps()
        img = sample_plane(arr, lps_to_index, pts, order=1)
        valid = inside_volume(arr.shape, lps_to_index, pts)
        planes.append(g)
        imgs.append(normalise_plane(img, valid))
        inside.append(valid)
    if not planes:
        raise LevelDetectionError("the image has no sagittal plane through the spine")
    return planes, net.probabilities(np.stack(imgs)), np.stack(inside)


def near_image_edge(inside: np.ndarray, reach_mm: float, step_x: float) -> np.ndarray:
    """Where the planes (n, rows, cols) lie within ``reach_mm`` in the plane, or in the next plane across, of
    a point outside the image (``inside`` from :func:`_run_planes`): the slanted sides of an oblique stack cross
    the planes there."""
    outside = ~inside
    if not outside.any():
        return np.zeros_like(inside)
    near = ndimage.binary_dilation(outside, structure=_in_plane_cross(),
                                   iterations=max(1, int(round(reach_mm / GRID_MM))))
    if step_x <= reach_mm:
        across = np.zeros((3, 1, 1), bool)
        across[:, 0, 0] = True
        near |= ndimage.binary_dilation(outside, structure=across)
    return near


def _midline_x(volume, net: BodyNet, p: MrBodiesParams) -> float:
    """The LPS x of the spine's midline: where the planes of a first pass hold the most body."""
    box = _box(volume, [], p)
    xs = _plane_xs(volume, box[0], box[1], p.coarse_step_mm)
    _, prob, _ = _run_planes(volume, net, xs, box)
    mass = (prob[:, 1:].sum(1) > p.threshold).sum(axis=(1, 2)).astype(float)
    if mass.max() <= 0:
        raise LevelDetectionError("no vertebral body was found in the image")
    # the middle of the planes holding at least half the largest amount of body
    big = np.flatnonzero(mass >= 0.5 * mass.max())
    return float(0.5 * (xs[big.min()] + xs[big.max()]))


# ------------------------------------------------------------------------------------------------ bodies
def find_bodies(volume, marks: Sequence[Sequence[float]] = (), *, net: Optional[BodyNet] = None,
                params: Optional[MrBodiesParams] = None, max_voxels: Optional[int] = None) -> BodyScan:
    """The chain of vertebral bodies in a sagittal MR volume (top first) with their landmarks; ``marks``
    (LPS points inside bodies) centre the search, without them the midline is found first. The volume is
    read through a float32 copy of the part searched, of at most ``max_voxels`` voxels (subsampled
    beyond; see :func:`planner.levels.grid.working_volume`)."""
    p = params or MrBodiesParams()
    net = net or default_net(p.model_path, p.threads)
    marks = [np.asarray(m, dtype=float) for m in marks]
    box = _box(volume, marks, p)
    lo = np.array([box[0], box[2], box[4]])
    hi = np.array([box[1], box[3], box[5]])
    if marks:
        x_mid = float(np.mean([m[0] for m in marks]))
        lo[0], hi[0] = max(lo[0], x_mid - p.half_width_mm - 5.0), min(hi[0], x_mid + p.half_width_mm + 5.0)
    volume = working_volume(volume, (lo, hi), max_voxels or DetectionParams.max_native_voxels)
    x_mid = float(np.mean([m[0] for m in marks])) if marks else _midline_x(volume, net, p)
    xs = _plane_xs(volume, max(box[0], x_mid - p.half_width_mm), min(box[1], x_mid + p.half_width_mm),
                   p.plane_step_mm)
    planes, prob, inside = _run_planes(volume, net, xs, box)
    body_prob = prob[:, 1:].sum(1)
    parts, n = split_bodies(body_prob, p)
    step_x = float(np.median(np.diff(xs))) if len(xs) > 1 else p.plane_step_mm
    near_edge = near_image_edge(inside, p.edge_reach_mm, step_x)
    voxel_ml = step_x * GRID_MM * GRID_MM / 1000.0
    idx = np.arange(1, n + 1)
    counts = ndimage.sum_labels(np.ones_like(parts), parts, idx) if n else np.zeros(0)
    bodies: list[Body] = []
    g = planes[0]
    for lab, cnt in zip(idx, counts):
        ml = float(cnt) * voxel_ml
        if ml < p.min_body_ml:
            parts[parts == lab] = 0
            continue
        sel = parts == lab
        k_i, r_i, c_i = np.nonzero(sel)
        x = float(np.mean(xs[k_i]))
        centre = g.lps_of(np.array([r_i.mean(), c_i.mean()]))
        centre[0] = x
        touches = bool(r_i.min() == 0 or r_i.max() == parts.shape[1] - 1)
        side = (_cut_at_side(np.bincount(k_i, minlength=len(xs)), xs, box, step_x, p.side_share)
                or bool(near_edge[sel].any()))
        bodies.append(Body(centre, ml, float(prob[:, 2][sel].mean()), float(prob[:, 3][sel].mean()),
                           touches, int(lab), cut_at_side=side))
    bodies.sort(key=lambda b: -b.centre_lps[2])
    scan = BodyScan(planes, body_prob, parts.astype(np.int32), bodies, (float(box[4]), float(box[5])))
    _keep_column(scan, p, marks)
    _add_sacrum(scan, prob, p, marks)
    measure_landmarks(scan, p)
    return scan


def _cut_at_side(section_px: np.ndarray, xs: np.ndarray, box, step_x: float, share: float) -> bool:
    """Whether a body whose section per plane is ``section_px`` is cut by a side of the image (``box[0]`` and
    ``box[1]``: the image's left-right extent searched): its outline reaches the outermost plane on that side,
    or is still ``share`` of its largest section in the plane next to it (``MrBodiesParams.side_share``)."""
    if len(xs) < 2 or section_px.max() == 0:
        return False
    largest = float(section_px.max())
    for edge, inner, at in ((0, 1, box[0]), (len(xs) - 1, len(xs) - 2, box[1])):
        if abs(xs[edge] - at) < step_x and (section_px[edge] > 0 or section_px[inner] >= share * largest):
            return True
    return False


def measure_landmarks(scan: BodyScan, p: MrBodiesParams) -> None:
    """Each body's walls and endplate centres (:func:`edge_landmarks` on its own probability along its axis, at
    ``threshold``; the faint top of the sacrum at ``sacrum_threshold``). Where the probability fades over more
    than ``inferior_fade_mm`` below the body (a disc joined to it), the inferior endplate is read at
    ``inferior_edge_threshold`` and the fade is kept in :attr:`Body.inferior_fade_mm`."""
    for i, b in enumerate(scan.bodies):
        axis = _body_axis(scan, b, _axis_hint(scan.bodies, i), p.axis_tolerance_deg)
        own = scan.part_prob(b.label)

        def prob_at(q, own=own):
            return scan.body_prob_at(q, own)

        b.landmarks = edge_landmarks(prob_at, b.centre_lps, axis, p.sacrum_threshold if b.faint else p.threshold)
        if b.faint or "inferior_endplate_lps" not in b.landmarks:
            continue
        down = -axis / np.linalg.norm(axis)
        t = np.arange(0.0, EDGE_REACH_MM + 1e-9, EDGE_STEP_MM)
        vals = prob_at(b.centre_lps[None, :] + t[:, None] * down[None, :])
        low, sure = _fall_below(vals, t, p.threshold), _fall_below(vals, t, p.inferior_edge_threshold)
        if sure is not None and low - sure > p.inferior_fade_mm:
            b.landmarks["inferior_endplate_lps"] = b.centre_lps + sure * down
            b.inferior_fade_mm = low - sure


def _add_sacrum(scan: BodyScan, prob: np.ndarray, p: MrBodiesParams, marks: Sequence[np.ndarray]) -> None:
    """The top of the sacrum (S1) below the last lumbar body when the column ends there: the model
    outlines S1 less surely than the lumbar bodies (few training scans label it), so S1 is the part of the
    body probability above ``sacrum_threshold`` just below that body (the part holding a mark, else the
    largest one a vertebra's step away), outside the other bodies."""
    bodies = scan.bodies
    if not bodies:
        return
    last = bodies[-1]
    whole = 0.5 * float(np.median([b.volume_ml for b in bodies]))
    if not (last.p_l5 >= p.name_confidence and last.volume_ml >= whole):
        return
    others = ndimage.binary_dilation(scan.parts > 0, iterations=1, structure=_in_plane_cross())
    faint = (scan.body_prob > p.sacrum_threshold) & ~others
    below = np.zeros_like(faint)
    g = scan.planes[0]
    rows = np.arange(faint.shape[1])
    row_of_last = float(g.pixel_of(last.centre_lps)[0])
    below[:, rows > row_of_last, :] = True
    lab, n = ndimage.label(faint & below)
    if n == 0:
        return
    xs = scan.xs
    step_x = float(np.median(np.diff(xs))) if len(xs) > 1 else p.plane_step_mm
    counts = ndimage.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1))
    marked = set()
    for m in marks:
        k = int(np.argmin(np.abs(xs - m[0])))
        r, c = np.round(g.pixel_of(m)).astype(int)
        if 0 <= r < lab.shape[1] and 0 <= c < lab.shape[2] and lab[k, r, c]:
            marked.add(int(lab[k, r, c]))
    best, best_key = 0, None
    for i in range(1, n + 1):
        ml = float(counts[i - 1]) * step_x * GRID_MM * GRID_MM / 1000.0
        if ml < p.min_body_ml:
            continue
        k_i, r_i, c_i = np.nonzero(lab == i)
        centre = g.lps_of(np.array([r_i.mean(), c_i.mean()]))
        centre[0] = float(np.mean(xs[k_i]))
        d = float(np.linalg.norm(centre - last.centre_lps))
        if not (p.step_mm[0] <= d <= p.step_mm[1]) and i not in marked:
            continue
        key = (i in marked, ml)
        if best_key is None or key > best_key:
            best, best_key = i, key
    if not best:
        return
    sel = lab == best
    new_label = int(scan.parts.max()) + 1
    scan.parts[sel] = new_label
    k_i, r_i, c_i = np.nonzero(sel)
    centre = g.lps_of(np.array([r_i.mean(), c_i.mean()]))
    centre[0] = float(np.mean(xs[k_i]))
    ml = float(sel.sum()) * step_x * GRID_MM * GRID_MM / 1000.0
    touches = bool(r_i.max() == sel.shape[1] - 1)
    bodies.append(Body(centre, ml, float(prob[:, 2][sel].mean()), float(prob[:, 3][sel].mean()), touches, new_label,
                       faint=True))
    scan.notes.append("S1 is outlined with less certainty than the lumbar bodies (the model has seen few labelled "
                      "sacra): check its landmarks")


def split_bodies(body_prob: np.ndarray, p: MrBodiesParams) -> tuple[np.ndarray, int]:
    """The body mask (probability above ``threshold``) split into bodies (labels 1..n).

    In each plane the discs separate the bodies: the parts of the mask's confident core (probability
    above ``seed_threshold``, eroded by ``seed_erosion_px``) are the bodies' sections. Sections of
    neighbouring planes belong to one body when each is the other's best overlap (a tilted disc or a
    scoliotic column makes a section touch the next body on the next plane too; across planes the parts
    of the mask itself would join them). Every pixel of the mask then joins its nearest section, preferring
    its own plane. A section that holds two sections of a neighbouring plane (a disc bridged in some planes only) is
    split by them first (:func:`_split_joined_sections`)."""
    mask = body_prob > p.threshold
    core = body_prob > p.seed_threshold
    if p.seed_erosion_px > 0:
        st = np.zeros((1, 3, 3), bool)
        st[0] = ndimage.generate_binary_structure(2, 1)
        core = ndimage.binary_erosion(core, structure=st, iterations=p.seed_erosion_px)
    sections = np.zeros(mask.shape, np.int32)
    total = 0
    for k in range(mask.shape[0]):
        lab, n = ndimage.label(core[k])
        sections[k] = np.where(lab > 0, lab + total, 0)
        total += n
    if total == 0:
        return np.zeros(mask.shape, np.int32), 0
    total = _split_joined_sections(sections, total, p.split_share, p.split_min_step_mm / GRID_MM)
    parent = np.arange(total + 1)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    area = np.bincount(sections.ravel(), minlength=total + 1)
    for k in range(mask.shape[0] - 1):
        a, b = sections[k].ravel(), sections[k + 1].ravel()
        both = (a > 0) & (b > 0)
        if not both.any():
            continue
        pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
        iou = inter / (area[pairs[0]] + area[pairs[1]] - inter)
        best_a = {}
        best_b = {}
        for (ia, ib), v in zip(pairs.T, iou):
            if v > best_a.get(ia, (0, -1.0))[1]:
                best_a[ia] = (ib, v)
            if v > best_b.get(ib, (0, -1.0))[1]:
                best_b[ib] = (ia, v)
        for ia, (ib, v) in best_a.items():
            if best_b[ib][0] == ia and v >= p.link_iou:
                parent[root(int(ib))] = root(int(ia))
    roots = np.array([root(i) for i in range(total + 1)])
    _, seeds_of = np.unique(roots, return_inverse=True)  # 0 stays 0 (root of 0 is 0, the smallest)
    seeds = seeds_of[sections]
    n = int(seeds.max())
    _, (ik, ir, ic) = ndimage.distance_transform_edt(seeds == 0, sampling=(4.0, 1.0, 1.0), return_indices=True)
    parts = np.where(mask, seeds[ik, ir, ic], 0).astype(np.int32)
    return parts, n


def _split_joined_sections(sections: np.ndarray, total: int, share: float, min_step_px: float) -> int:
    """Split, in place, the sections of a plane that hold two or more sections of a neighbouring plane: where a disc
    is bridged in some planes (its lateral part, or a Modic band beside it with the disc's own signal) the two
    bodies' cores join there, while the planes through the open disc keep them apart. A section is split when at
    least two sections of the neighbouring plane, each of at least ``share`` of its area and with centres at least
    ``min_step_px`` apart (a body whose core a marrow band cuts in two has its pieces' centres closer), lie at least
    half inside it; each of its pixels goes to the nearest of them. Splits carry on from plane to plane (sweeps
    both ways until nothing changes). Returns the new number of sections."""
    n_planes = sections.shape[0]
    area = np.bincount(sections.ravel(), minlength=total + 1).astype(np.int64)
    changed = True
    sweeps = 0
    while changed and sweeps < 2 * n_planes:
        changed = False
        sweeps += 1
        pairs = ([(k, k - 1) for k in range(1, n_planes)] if sweeps % 2 else
                 [(k, k + 1) for k in range(n_planes - 2, -1, -1)])
        for k, ref in pairs:
            own, other = sections[k], sections[ref]
            both = (own > 0) & (other > 0)
            if not both.any():
                continue
            key, inter = np.unique(np.stack([own[both], other[both]]), axis=1, return_counts=True)
            for s in np.unique(key[0]):
                sel = key[0] == s
                held = [int(t) for t, v in zip(key[1][sel], inter[sel])
                        if v >= 0.5 * area[t] and area[t] >= share * area[s]]
                if len(held) < 2:
                    continue
                centres = np.array([np.argwhere(other == t).mean(0) for t in held])
                far = np.linalg.norm(centres[:, None] - centres[None], axis=-1) >= min_step_px
                if not far.any():
                    continue
                ref_lab = np.where(np.isin(other, held), other, 0)
                _, (ir, ic) = ndimage.distance_transform_edt(ref_lab == 0, return_indices=True)
                nearest = ref_lab[ir, ic]
                piece = own == s
                for t in held:
                    total += 1
                    own[piece & (nearest == t)] = total
                area = np.bincount(sections.ravel(), minlength=total + 1).astype(np.int64)
                changed = True
    used = np.flatnonzero(area[1:]) + 1  # the split sections' old numbers are gone: number the rest 1..n again
    renumber = np.zeros(total + 1, sections.dtype)
    renumber[used] = np.arange(1, len(used) + 1)
    sections[...] = renumber[sections]
    return len(used)


def _keep_column(scan: BodyScan, p: MrBodiesParams, marks: Sequence[np.ndarray] = ()) -> None:
    """Keep the column of bodies: the chain of parts, top to bottom, whose steps from centre to centre are
    those of vertebrae (``step_mm``) and bend by at most ``max_bend_deg`` from one step to the next, holding
    the most body volume (the marked bodies must be in it). Parts off that chain (posterior elements,
    bowel, the sacrum below S1) are dropped, and so are small pieces inside it (:func:`_without_fragments`)."""
    bodies = scan.bodies  # sorted top first
    n = len(bodies)
    if n <= 1:
        return
    marked = {scan.part_at(m) for m in marks} - {0}
    bonus = [b.volume_ml + (1e4 if b.label in marked else 0.0) for b in bodies]
    cent = np.array([b.centre_lps for b in bodies])
    lo, hi = p.step_mm
    ok = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(i + 1, n):
            d = float(np.linalg.norm(cent[j] - cent[i]))
            ok[i, j] = lo <= d <= hi and cent[j][2] < cent[i][2]
    cos_bend = math.cos(math.radians(p.max_bend_deg))
    # best[i][j]: best chain ending with the step i -> j; start[j]: a chain of body j alone
    best = np.full((n, n), -np.inf)
    prev = np.full((n, n), -1, int)
    for j in range(n):
        for i in range(j):
            if not ok[i, j]:
                continue
            best[i, j] = bonus[i] + bonus[j]
            dij = (cent[j] - cent[i]) / np.linalg.norm(cent[j] - cent[i])
            for h in range(i):
                if not np.isfinite(best[h, i]):
                    continue
                dhi = (cent[i] - cent[h]) / np.linalg.norm(cent[i] - cent[h])
                if dhi @ dij >= cos_bend and best[h, i] + bonus[j] > best[i, j]:
                    best[i, j] = best[h, i] + bonus[j]
                    prev[i, j] = h
    single = int(np.argmax(bonus))
    if not np.isfinite(best).any() or best.max() < bonus[single]:
        keep = [single]
    else:
        i, j = np.unravel_index(int(np.argmax(best)), best.shape)
        keep = [j, i]
        while prev[i, j] >= 0:
            i, j = prev[i, j], i
            keep.append(i)
        keep = keep[::-1]
    keep = _without_fragments(keep, bodies, ok, marked, p.min_inner_share)
    kept = {bodies[k].label for k in keep}
    for b in bodies:
        if b.label not in kept:
            scan.parts[scan.parts == b.label] = 0
    scan.bodies = [bodies[k] for k in keep]


def _without_fragments(keep: list[int], bodies: Sequence[Body], ok: np.ndarray, marked: set[int],
                       share: float) -> list[int]:
    """The chain ``keep`` (indices into ``bodies``, top first) without its unmarked inner parts of less than
    ``share`` of the chain's median volume whose neighbours make a vertebral step without them (``ok``): a piece of
    a disc or of a Modic band outlined apart is not a body, and counted as one it would shift every name past it."""
    changed = True
    while changed and len(keep) > 2:
        changed = False
        median = float(np.median([bodies[k].volume_ml for k in keep]))
        for pos in range(1, len(keep) - 1):
            k = keep[pos]
            if (bodies[k].label not in marked and bodies[k].volume_ml < share * median
                    and ok[keep[pos - 1], keep[pos + 1]]):
                keep = keep[:pos] + keep[pos + 1:]
                changed = True
                break
    return keep


def _dist_to_line(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    n = float(np.linalg.norm(d))
    if n < 1e-6:
        return float(np.linalg.norm(q - a))
    return float(np.linalg.norm(np.cross(q - a, d / n)))


def _axis_hint(bodies: Sequence[Body], i: int) -> np.ndarray:
    """The body's axis (toward superior) in its sagittal plane: the direction between its neighbours."""
    up = bodies[i - 1].centre_lps if i > 0 else bodies[i].centre_lps
    down = bodies[i + 1].centre_lps if i + 1 < len(bodies) else bodies[i].centre_lps
    return axis_from_centres(up, down)


def _body_axis(scan: BodyScan, body: Body, spine_dir: np.ndarray, tolerance_deg: float) -> np.ndarray:
    """The body's own axis (toward superior): of the two principal axes of its section on the plane nearest
    its centre, the one closer to the direction of the spine there; the spine's direction itself when that
    axis turns more than ``tolerance_deg`` away from it (a section cut short by a marrow change as dark as
    the disc has principal axes of its own)."""
    k = int(np.argmin(np.abs(scan.xs - body.centre_lps[0])))
    r, c = np.nonzero(scan.parts[k] == body.label)
    if len(r) < 10:
        return spine_dir
    pts = scan.planes[k].lps_of(np.stack([r, c], 1).astype(float))[:, 1:]  # (y, z)
    _, _, vt = np.linalg.svd(pts - pts.mean(0), full_matrices=False)
    d2 = spine_dir[1:]
    best = max(vt, key=lambda v: abs(float(v @ d2)))
    axis = np.array([0.0, best[0], best[1]])
    axis = axis if axis @ spine_dir >= 0 else -axis
    cos = float(axis @ spine_dir) / max(float(np.linalg.norm(spine_dir)), 1e-9)
    return axis if cos >= math.cos(math.radians(tolerance_deg)) else spine_dir


def axis_from_centres(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Unit vector toward superior in the sagittal plane (x = 0) from a lower to an upper point; straight up
    when they coincide."""
    d = np.asarray(upper, float) - np.asarray(lower, float)
    d[0] = 0.0
    n = float(np.linalg.norm(d))
    if n < 1e-6 or d[2] <= 0:
        return np.array([0.0, 0.0, 1.0])
    return d / n


#: How far from a body's centre :func:`edge_landmarks` looks for its edges, and its sampling step (mm).
EDGE_REACH_MM, EDGE_STEP_MM = 45.0, 0.25


def _fall_below(vals: np.ndarray, t: np.ndarray, level: float) -> Optional[float]:
    """Where the values sampled at distances ``t`` (from 0) first fall below ``level``, interpolated between
    samples; None when they never do or start below it."""
    below = np.flatnonzero(vals < level)
    if len(below) == 0 or below[0] == 0:
        return None
    k = int(below[0])
    v0, v1 = float(vals[k - 1]), float(vals[k])
    f = (v0 - level) / (v0 - v1) if v0 != v1 else 0.0
    return float(t[k - 1] + f * (t[k] - t[k - 1]))


def edge_landmarks(prob_at: Callable[[np.ndarray], np.ndarray], centre_lps: np.ndarray, axis_lps: np.ndarray,
                   threshold: float = 0.5, reach_mm: float = EDGE_REACH_MM, step_mm: float = EDGE_STEP_MM
                   ) -> dict[str, np.ndarray]:
    """Landmarks of a body from a function giving its probability (or 0/1 label) at LPS points.

    On the sagittal plane through ``centre_lps``: walls where the value falls below ``threshold`` going
    anterior and posterior from the centre along the line perpendicular to ``axis_lps`` (the mid-height
    line), endplate centres where it falls below it going up and down along the axis. Edges are
    interpolated between samples. Missing edges (the body runs out of the image) are left out."""
    c = np.asarray(centre_lps, float)
    axis = np.asarray(axis_lps, float)
    axis = axis / np.linalg.norm(axis)
    ant = np.cross(np.array([1.0, 0.0, 0.0]), axis)  # L x S = -P: anterior
    ant /= np.linalg.norm(ant)
    t = np.arange(0.0, reach_mm + 1e-9, step_mm)
    out = {"body_center_lps": c}
    for name, d in (("anterior_wall_lps", ant), ("posterior_wall_lps", -ant), ("superior_endplate_lps", axis),
                    ("inferior_endplate_lps", -axis)):
        edge = _fall_below(prob_at(c[None, :] + t[:, None] * d[None, :]), t, threshold)
        if edge is not None:
            out[name] = c + edge * d
    return out


# ------------------------------------------------------------------------------------------------ names
def _gaps(bodies: Sequence[Body], p: MrBodiesParams) -> list[int]:
    """Indices i where the step from body i to body i+1 is too long: a body between them was not found."""
    return [i for i in range(len(bodies) - 1)
            if np.linalg.norm(bodies[i].centre_lps - bodies[i + 1].centre_lps) > p.step_mm[1]]


def last_mobile_name(transitional: Optional[str]) -> str:
    """The name of the last mobile lumbar body (the network's "L5" class): L6 in a spine with six lumbar
    vertebrae, L4 when L5 is fused into the sacrum, else L5."""
    return {"L6": "L6", "sacralised_L5": "L4"}.get(transitional or "", "L5")


def sacral_anchor(scan: BodyScan, p: MrBodiesParams, transitional: Optional[str] = None) -> tuple[int, str]:
    """(chain index, name) of the last mobile lumbar body as recognised by the network from the sacrum
    below it (the network's L5 class). Raises :class:`LevelDetectionError` with the reason when the image
    does not show it clearly."""
    bodies = scan.bodies
    last_mobile = last_mobile_name(transitional)
    median_ml = float(np.median([b.volume_ml for b in bodies])) if bodies else 0.0
    # a part much smaller than the bodies (the top of the sacrum, a body cut by the edge) names nothing
    whole = 0.5 * median_ml
    looks = [i for i, b in enumerate(bodies) if b.p_l5 >= p.name_doubt and b.volume_ml >= whole]
    sure = [i for i in looks if bodies[i].p_l5 >= p.name_confidence]
    s1 = [i for i, b in enumerate(bodies) if b.p_s1 >= p.name_confidence]
    if looks:
        if not sure:
            raise LevelDetectionError("cannot name the levels: the last lumbar body is not recognised surely")
        if len(looks) == 2 and looks[1] == looks[0] + 1:
            # the top of the sacrum can look like a last lumbar body (the model saw few labelled sacra): of two
            # neighbours that both look like it, the upper one is the last lumbar body, unless the network is far
            # less sure of it than of the lower one (then the lower one may be L5 and the upper one L4 under a
            # marrow change along their disc)
            upper, lower = bodies[looks[0]], bodies[looks[1]]
            if upper.p_l5 < p.two_l5_min_ratio * lower.p_l5:
                raise LevelDetectionError("cannot name the levels: two neighbouring bodies look like the last lumbar "
                                          "body, the lower one more surely (a marrow change along their disc can make "
                                          "L4 look like it, and the top of the sacrum can look like L5)")
            looks = looks[:1]
        if len(looks) > 1:
            raise LevelDetectionError("cannot name the levels: two bodies look like the last lumbar body")
        i5 = looks[0]
        if bodies[i5].volume_ml > p.anchor_max_volume_ratio * median_ml:
            raise LevelDetectionError("cannot name the levels: the body that looks like the last lumbar body is as "
                                      "large as two bodies (it may hold the last lumbar body and the top of the "
                                      "sacrum, or two lumbar bodies, joined)")
        if i5 == len(bodies) - 1:
            # nothing below it: the top of the sacrum itself can look like the last lumbar body (held-out, the
            # model named VB3_12 one level high this way), so without the sacrum in view nothing is named
            raise LevelDetectionError("cannot name the levels: no sacrum is found below the body that looks like "
                                      "the last lumbar body (it may be the top of the sacrum itself)")
        if s1 and s1[0] != i5 + 1:
            raise LevelDetectionError("cannot name the levels: the last lumbar body and the sacrum found are not "
                                      "neighbours")
        under = bodies[i5 + 1]
        if not under.partial and under.p_s1 < p.name_confidence:
            # all of the body below is in view, yet the network does not take it for the sacrum. Held-out, an
            # image ending in the L5-S1 disc made L4 look like the last lumbar body this way, with a whole L5 below
            # it (mean S1 probability 0.00-0.33), while every top of the sacrum seen whole had 0.57-0.96
            # (bench/anatomy_bench.py --fov --mri-cv; a top of the sacrum cut by the image's lower edge may read
            # lower, and is not judged)
            raise LevelDetectionError("cannot name the levels: the body below the one that looks like the last "
                                      "lumbar body is not recognised as the top of the sacrum, though all of it is "
                                      "in view (an image that ends in the L5-S1 disc can make L4 look like the last "
                                      "lumbar body); mark two named bodies instead")
        return i5, last_mobile
    if s1:
        if s1[0] == 0:
            raise LevelDetectionError("cannot name the levels: no lumbar body above the sacrum")
        return s1[0] - 1, last_mobile
    raise LevelDetectionError("cannot name the levels: the sacrum and the L5-S1 disc are not recognised in the image "
                             "(out of view or unclear); mark two named bodies instead")


def image_below_mm(scan: BodyScan, body: Body) -> float:
    """How far the image searched goes on below the lowest point of ``body`` (mm; 0 when the body is cut by
    the image's lower edge)."""
    rows = np.nonzero(scan.parts == body.label)[1]
    lowest_z = scan.planes[0].z0 - float(rows.max()) * scan.planes[0].spacing
    return max(0.0, lowest_z - scan.z_range_lps[0])


def _name_chain(scan: BodyScan, anchor: int, anchor_name: str, seq: Sequence[str], p: MrBodiesParams,
                stop_at_gaps: bool) -> list[str]:
    """Names of the chain counted from the body at ``anchor`` (''; beyond the sequence or a gap)."""
    names = []
    gaps = _gaps(scan.bodies, p)
    j0 = seq.index(anchor_name)
    for i in range(len(scan.bodies)):
        j = j0 + (i - anchor)
        crosses = any(min(i, anchor) <= g < max(i, anchor) for g in gaps)
        names.append(seq[j] if 0 <= j < len(seq) and not (stop_at_gaps and crosses) else "")
    return names


def name_without_marks(scan: BodyScan, seq: Sequence[str], p: Optional[MrBodiesParams] = None,
                       transitional: Optional[str] = None) -> list[str]:
    """Names of the chain counted from the sacrum (see :func:`sacral_anchor`); bodies past a missed body are
    left unnamed with a note. Raises :class:`LevelDetectionError` ("cannot name the levels: ...")."""
    p = p or MrBodiesParams()
    anchor, name = sacral_anchor(scan, p, transitional)
    if anchor + 1 < p.count_min_above_s1:
        raise LevelDetectionError(
            f"cannot name the levels: only {anchor + 1} vertebral {'body is' if anchor == 0 else 'bodies are'} in view "
            f"above the body that looks like the sacrum, too little of the spine to count from it; mark two named "
            "bodies instead")
    names = _name_chain(scan, anchor, name, seq, p, stop_at_gaps=True)
    if anchor + 1 < len(scan.bodies):
        below = image_below_mm(scan, scan.bodies[anchor + 1])
        if below < p.sacrum_view_mm:
            scan.notes.append(
                f"check that the body named {names[anchor + 1] or 'S1'} is the top of the sacrum: the image ends "
                f"{below:.0f} mm below it, so the sacrum under it is hardly in view, and an image that ends in the "
                "L5-S1 disc can make L5 look like S1 (the names would then be one level high)")
    if _gaps(scan.bodies, p):
        scan.notes.append("a body seems to be missing in the chain (a long step between two bodies): the bodies "
                          "beyond it are not named")
    return names


def _where_is(scan: BodyScan, point: np.ndarray, p: MrBodiesParams) -> tuple[str, int]:
    """('body', chain index) when the point lies in a body; ('disc', index of the body above) between two
    bodies; ('outside', -1) otherwise."""
    lab = scan.part_at(point)
    for i, b in enumerate(scan.bodies):
        if b.label == lab and lab:
            return "body", i
    bodies = scan.bodies
    for i in range(len(bodies) - 1):
        a, b = bodies[i].centre_lps, bodies[i + 1].centre_lps
        d = b - a
        t = float((point - a) @ d / (d @ d))
        if 0.2 < t < 0.8 and _dist_to_line(point, a, b) < 15.0:
            return "disc", i
    return "outside", -1


def name_from_marks(scan: BodyScan, marks: dict[str, np.ndarray], seq: Sequence[str],
                    p: Optional[MrBodiesParams] = None, transitional: Optional[str] = None) -> list[str]:
    """Names of the chain from two (or more) marks inside named bodies. Raises :class:`MarkError` when the
    marks do not fit the image (the message names the likely correction); adds a warning to ``scan.warnings``
    when the sacrum counts the marked bodies differently from their names."""
    p = p or MrBodiesParams()
    if len(marks) < 2:
        raise LevelDetectionError("on MRI the levels need two marks, e.g. inside S1 and inside L1 (one was given)")
    ordered = sorted(marks.items(), key=lambda kv: seq.index(kv[0]))  # cranial first
    where = {name: _where_is(scan, pt, p) for name, pt in ordered}
    in_body = [(n, i) for n, (kind, i) in where.items() if kind == "body"]
    for name, (kind, i) in where.items():
        if kind == "body":
            continue
        if kind == "disc":
            hint = ""
            if in_body:  # counted from the first mark that lies in a body
                other, io = in_body[0]
                up = seq.index(other) + (i - io)
                if 0 <= up < len(seq) and seq[up] == name:
                    hint = f": counted from the {other} mark, {name} is the body just above it; move the mark up into it"
                elif 0 <= up + 1 < len(seq) and seq[up + 1] == name:
                    hint = f": counted from the {other} mark, {name} is the body just below it; move the mark down into it"
            raise MarkError(f"the {name} mark lies in a disc, not inside a vertebral body{hint or '; move it into the ' + name + ' body'}")
        raise MarkError(f"the {name} mark lies outside the vertebral bodies outlined on this image; click inside "
                        f"the {name} body, or, if the mark is inside it, propose on another sagittal series (a body "
                        "whose marrow signal is changed on this one, e.g. by Modic changes, may not be outlined)")
    for (n1, _), (n2, _) in zip(ordered, ordered[1:]):
        if where[n1][1] == where[n2][1]:
            raise MarkError(f"the {n1} and {n2} marks lie in the same body; mark two different bodies")
        if where[n1][1] > where[n2][1]:
            raise MarkError(f"the {n1} mark lies below the {n2} mark; check which bodies were marked")
    name_hi, name_lo = ordered[0][0], ordered[-1][0]
    i_hi, i_lo = where[name_hi][1], where[name_lo][1]
    if any(i_hi <= g < i_lo for g in _gaps(scan.bodies, p)):
        raise LevelDetectionError(f"a body between the {name_hi} and {name_lo} marks was not found; check the image "
                                 "or place the levels by hand")
    img_names: Optional[list[str]] = None
    try:
        anchor, a_name = sacral_anchor(scan, p, transitional)
        img_names = _name_chain(scan, anchor, a_name, seq, p, stop_at_gaps=True)
    except LevelDetectionError:
        pass
    for (n1, _), (n2, _) in zip(ordered, ordered[1:]):
        i1, i2 = where[n1][1], where[n2][1]
        have, need = i2 - i1, seq.index(n2) - seq.index(n1)
        if have == need:
            continue
        fix = ""
        if img_names is not None:
            wrong = [(n, i) for n, i in ((n1, i1), (n2, i2)) if img_names[i] and img_names[i] != n]
            if len(wrong) == 1:
                n, i = wrong[0]
                steps = seq.index(n) - seq.index(img_names[i])
                where_to = f"{abs(steps)} bod{'y' if abs(steps) == 1 else 'ies'} {'down' if steps > 0 else 'up'}"
                fix = (f". Counted from the sacrum, the body marked {n} is {img_names[i]}"
                       + (" (it has a disc and another body below it)" if n == seq[-2] or n == "S1" else "")
                       + f": move the {n} mark {where_to}")
        raise MarkError(f"the {n1} and {n2} marks are {have} bod{'y' if have == 1 else 'ies'} apart in the "
                        f"image, but their names need {need}{fix or '; one of the marks is probably on the wrong body'}")
    names = _name_chain(scan, i_lo, name_lo, seq, p, stop_at_gaps=False)
    if img_names is not None and img_names[i_lo] and img_names[i_lo] != name_lo:
        shift = seq.index(name_lo) - seq.index(img_names[i_lo])
        scan.warnings.append(
            f"Check the marks: counted from the sacrum, the bodies marked {name_hi} and {name_lo} are "
            f"{img_names[i_hi] or '?'} and {img_names[i_lo]}"
            + (f" (the body marked {name_lo} has a disc and another body below it)" if name_lo == "S1" else "")
            + f"; if the sacrum is normal, move {'both marks' if len(marks) == 2 else 'every mark'} "
            f"{abs(shift)} bod{'y' if abs(shift) == 1 else 'ies'} {'down' if shift > 0 else 'up'}")
    return names
