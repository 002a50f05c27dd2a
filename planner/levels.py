"""Vertebral level labelling: propose every lumbar level present with its landmarks (LPS mm).

:func:`propose_levels` finds the vertebral bodies T12-S1 (and a transitional L6 or a sacralised L5
when the user says so) in a CT or MR volume and returns :class:`planner.plan.Level` objects whose
:class:`~planner.plan.Landmarks` hold, for each vertebra: body centre, superior and inferior endplate
centres, posterior and anterior wall midpoints at mid-height on the midline, and left and right
pedicle centres.

How it works (all in a working copy of the volume resampled onto an LPS-aligned grid through the
volume's own ``ijk_to_lps``; results are returned in LPS mm):

1. **Spine curve.** On CT (no click): the mid-sagittal plane is found per axial slice as the
   centre of the bone near the body's midline; in that plane a dynamic-programming track follows
   the anterior column (bright body/disc column with the dark canal behind it and the posterior
   elements behind that), and the posterior wall of the column is taken where the intensity falls
   to the canal level. On MRI the user gives two points (``hints``, e.g. inside S1 and inside L1)
   and the curve runs through the middle of the body column between and beyond them (T1: marrow
   bright between dark cortex; T2: marrow between a thin dark cortex and bright fat or fluid).
2. **Discs.** The volume is straightened along the curve (rows perpendicular to the posterior
   wall). A disc is a thin dark band crossing the column, tilted by up to
   ``DetectionParams.disc_max_tilt_deg``, with brighter bone (CT: endplates; MRI: marrow) on both
   sides; a dynamic programme picks the chain of such bands whose spacing is that of vertebrae
   (``disc_spacing_min_mm``..``disc_spacing_max_mm``).
3. **Naming.** CT: the sacrum is recognised by its alae (bone reaching more than
   ``ala_min_halfwidth_mm`` from the midline at the level of the body, where a lumbar body is
   narrower and its transverse processes arise behind the body); the highest such segment is S1
   (or L5 when ``transitional="sacralised_L5"``) and the levels are counted up from it (with an
   extra L6 when ``transitional="L6"``). MRI: the hints name the bodies they lie in.
4. **Landmarks per body.** CT: endplates where the body meets the discs on the body's AP middle,
   walls on the mid-height line, body centre between them, pedicles as the centroids of the bone
   bridges between the body and the arch on each side of the canal.

   MRI: measured in the acquired slices, never across two thick slices by rounding (sub-sample edges
   everywhere). Each click is first moved to its body's AP middle and midsagittal plane, and the
   marrow level is the most common value of the body around it (a click in a Modic zone does not
   matter). Per body: the **midsagittal plane** is the plane of mirror symmetry of the vertebra (body,
   canal, pedicles and arch; slices interpolated by cubic convolution across); **walls** at the outer
   edge of their cortical line (where the tissue beyond is brighter, else the line taken as wide
   beyond its centre as within); **endplates** at the centre of their dark line (cortex with the
   cartilage endplate, on lines parallel to the axis across the middle of the body, a straight line
   through them read at the AP middle); the **body centre** between them. **Pedicles**: in each
   parasagittal slice the pedicle is a bar of marrow between the superior and inferior notches; its
   height is the centre of the bar's edges, its sideways place at each depth the apex of the bar
   heights over neighbouring slices (a straight line over depth, the pedicle running obliquely), its
   depth (the isthmus) midway between the posterior wall line and the bar's junction with the arch;
   both sides are averaged as mirror images about the midsagittal plane. An axial series of the same
   frame of reference (``companions``) measures the sideways place in-plane where a slice passes
   through the pedicle above its transverse process. S1, whose pedicles merge into the alae, gets
   them beside the sacral canal from the typical S1 pedicle size (domain.md 5.2, a placeholder) at
   L5's measured depth, with a note to check them.

The main thresholds are documented fields of :class:`DetectionParams` (image-processing values, not
clinical ones; clinical numbers live in :mod:`planner.settings`); small sampling choices (step
sizes, search windows) are stated where they are used. Relabel helpers (:func:`shift_level_names`,
:func:`relabel_levels`) support the UI's "shift up/down" buttons.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Landmarks, Level

log = logging.getLogger(__name__)

#: Names the labeller may propose, cranial to caudal (T11 and above are not proposed).
PROPOSED_ORDER: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")
#: The naming sequence used to shift labels up and down (includes neighbours for relabelling).
SHIFT_ORDER: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1", "S2")
TRANSITIONAL = (None, "L6", "sacralised_L5")


class LevelDetectionError(ValueError):
    """The spine or its levels could not be found; the message says what is missing."""


@dataclass(frozen=True)
class DetectionParams:
    """Image-processing thresholds of the level finder (technical, not clinical)."""

    #: Spacing of the LPS-aligned working grid (mm).
    work_spacing_mm: float = 1.5
    #: CT: Hounsfield value above which a voxel counts as bone (cortex and dense trabecular bone).
    ct_bone_hu: float = 200.0
    #: CT: Hounsfield value separating the patient from the air around it.
    ct_body_hu: float = -300.0
    #: CT: typical soft-tissue value used to split body from surrounding tissue (muscle ~ 40 HU).
    ct_soft_hu: float = 40.0
    #: Half-width of the mid-sagittal slab averaged for the sagittal analysis (mm).
    slab_half_width_mm: float = 4.5
    #: Distance from the body-column track to the canal centre behind it, used by the CT track (mm).
    canal_offset_mm: float = 21.0
    #: Depth of the body column sampled in front of the posterior wall for disc detection (mm).
    column_depth_mm: tuple[float, float] = (4.0, 32.0)
    #: Largest disc tilt relative to the posterior-wall normal that the disc detector tries (deg).
    disc_max_tilt_deg: float = 20.0
    #: Allowed distance between neighbouring discs (one vertebra plus one disc) (mm).
    disc_spacing_min_mm: float = 24.0
    disc_spacing_max_mm: float = 55.0
    #: CT: a segment whose bone reaches this far from the midline at body level is sacral (alae).
    ala_min_halfwidth_mm: float = 40.0
    #: Pedicles are searched this far behind the posterior wall (mm).
    pedicle_depth_mm: tuple[float, float] = (3.0, 14.0)
    #: ... and this far from the midline (mm).
    pedicle_lateral_mm: tuple[float, float] = (5.0, 40.0)
    #: Largest sideways correction of the midline from the body's left and right edges (mm).
    max_midline_correction_mm: float = 5.0
    #: MRI: largest sideways correction of the midline from the body's left and right edges (mm).
    mr_max_midline_correction_mm: float = 3.0
    #: MRI: pedicle distances from the midline differing by more than this are averaged (mm).
    mr_pedicle_asymmetry_mm: float = 2.0
    #: MRI: S1 pedicle centre depth behind the posterior wall (no separate bone to measure) (mm).
    mr_sacral_pedicle_depth_mm: float = 6.0
    #: MRI: typical half-width of the lumbar canal, where the search for a pedicle starts (mm).
    mr_canal_half_width_mm: float = 11.0
    #: MRI: the spine is followed this far beyond each mark (two vertebrae) (mm).
    mr_extend_mm: float = 100.0
    #: MRI: spacing of the working grid (mm).
    mr_work_spacing_mm: float = 1.0
    #: MRI: signal below this ratio to marrow is cortex or ligament (dark on every sequence).
    mr_dark_ratio: float = 0.3
    #: MRI: signal above this ratio to marrow is fluid or fat, not marrow.
    mr_bright_ratio: float = 2.5
    #: MRI: ratio band around 1 counted as normal marrow when following the column.
    mr_marrow_tol: float = 0.3
    #: MRI: AP depth range of a vertebral body while following the column (mm).
    mr_body_depth_mm: tuple[float, float] = (20.0, 60.0)
    #: MRI: half-width of the column sampled for the discs around the body-centre curve (mm).
    mr_column_half_mm: float = 12.0
    #: MRI: smallest disc score (ratio units) for discs found beyond the marks.
    mr_min_disc_score: float = 0.25
    #: MRI: the endplates' tilt is read this far in front of and behind the column's middle (mm).
    mr_endplate_tilt_offset_mm: float = 7.0
    #: MRI: endplate lines closer than this belong to one disc (a body is higher) (mm).
    mr_disc_max_mm: float = 16.0
    #: MRI: a wall or endplate is the first dip of the signal below this ratio to marrow (cortical line).
    mr_wall_dip: float = 0.6
    #: MRI: signal above this ratio to marrow belongs to a run of marrow-like signal (pedicle bars); the run
    #: ends at the cortical lines around it.
    mr_run_level: float = 0.72
    #: MRI: the posterior wall line (where the pedicles start) is sought this far either side of the midline,
    #: between the pedicles (mm).
    mr_wall_line_half_span_mm: float = 7.0
    #: MRI: depths behind the wall line where a pedicle is a free bar between the notches (mm).
    mr_pedicle_core_mm: tuple[float, float] = (2.0, 9.0)
    #: MRI: a pedicle bar taller than this times its height in the core has joined the body or the arch.
    mr_pedicle_bar_jump: float = 1.35
    #: MRI: axial slices used for a pedicle's sideways place lie in this band of its half-height above its
    #: centre (above the transverse process, below its top).
    mr_axial_pedicle_band: tuple[float, float] = (0.35, 0.8)


# ------------------------------------------------------------------------------------ grid
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
              bounds_lps: Optional[tuple[np.ndarray, np.ndarray]] = None) -> WorkGrid:
    """Resample ``volume`` onto an LPS-aligned grid covering its extent, or the part of it inside
    ``bounds_lps`` (low corner, high corner), with trilinear interpolation."""
    s = float(max(0.5, min(spacing_mm, 3.0)))
    corners = volume.corners_lps()
    lo, hi = corners.min(0), corners.max(0)
    if bounds_lps is not None:
        lo = np.maximum(lo, np.asarray(bounds_lps[0], dtype=float))
        hi = np.minimum(hi, np.asarray(bounds_lps[1], dtype=float))
        if np.any(hi - lo < s):
            raise LevelDetectionError("the marked points lie outside the image")
    n = (np.floor((hi - lo) / s + 1e-6).astype(int) + 1)[::-1]  # (nz, ny, nx)
    a = volume.lps_to_ijk[:3, :3]
    b = volume.lps_to_ijk[:3, 3]
    rev = np.eye(3)[::-1]
    # input index (k, j, i) = rev @ (A @ (lo + s * (ix, jy, kz)) + b), output index (kz, jy, ix)
    matrix = rev @ a @ (s * np.eye(3)) @ rev
    offset = rev @ (a @ lo + b)
    src = volume.array
    if src.dtype.kind not in "fiu" or src.dtype == np.float64:
        src = src.astype(np.float32)
    cval = float(np.min(src)) if fill is None else fill
    out = ndimage.affine_transform(src, matrix, offset=offset, output_shape=tuple(int(v) for v in n), order=1,
                                   cval=cval, output=np.float32, prefilter=False)
    return WorkGrid(out, lo, s)


# ------------------------------------------------------------------------------------ curve
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

    def resampled(self, step_mm: float) -> "SpineCurve":
        """The same curve with points every ``step_mm`` of arclength (index = mm / step)."""
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
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


# ------------------------------------------------------------------------------------ results
@dataclass
class VertebraFound:
    """One vertebra as found: the curve indices of the discs below and above and its landmarks."""

    t_low: float
    t_high: float
    landmarks: Landmarks
    name: str = ""
    sacral: bool = False
    #: Partially in the field of view (a disc missing at the top or bottom).
    partial: bool = False


@dataclass
class LevelProposal:
    levels: list[Level]
    modality: str
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ naming helpers
def shift_level_names(names: Sequence[str], steps: int) -> list[str]:
    """Shift every name ``steps`` places (+1 = one level caudal: L4 -> L5; -1 cranial: L4 -> L3).

    Follows the usual sequence T10..T12, L1..L5, S1, S2; L6 is kept only if it is already in
    ``names`` (a transitional spine). Raises ValueError when a name would leave the sequence."""
    order = [n for n in SHIFT_ORDER if n != "L6" or "L6" in names]
    out = []
    for n in names:
        if n not in order:
            raise ValueError(f"cannot shift unknown level name {n!r}")
        i = order.index(n) + steps
        if not 0 <= i < len(order):
            raise ValueError(f"cannot shift {n} by {steps}: no level name beyond {order[0]}..{order[-1]}")
        out.append(order[i])
    return out


def relabel_levels(levels: Sequence[Level], steps: int) -> list[Level]:
    """Copies of ``levels`` with every name shifted (ids, landmarks and findings kept)."""
    names = shift_level_names([lv.name for lv in levels], steps)
    return [lv.model_copy(update={"name": n}, deep=True) for lv, n in zip(levels, names)]


def merge_proposal(existing: Sequence[Level], proposed: Sequence[Level]) -> list[Level]:
    """The proposal merged into the plan's levels: a proposed level that already exists by name keeps
    its id (so its trajectories stay), findings, flags, notes and pedicle outlines and takes the new
    landmarks; existing levels that were not proposed are kept as they are."""
    by_name = {lv.name: lv for lv in existing}
    out: list[Level] = []
    for new in proposed:
        old = by_name.pop(new.name, None)
        out.append(new.model_copy(deep=True) if old is None
                   else old.model_copy(update={"landmarks": new.landmarks.model_copy(deep=True)}, deep=True))
    out.extend(lv.model_copy(deep=True) for lv in by_name.values())
    return out


def names_from_anchor(count_above: int, anchor: str = "S1", transitional: Optional[str] = None) -> list[str]:
    """Names cranial to caudal for ``count_above`` vertebrae above an anchor, then the anchor."""
    seq = _sequence(transitional)
    i = seq.index(anchor)
    lo = i - count_above
    return [seq[j] if j >= 0 else "" for j in range(lo, i + 1)]


def _sequence(transitional: Optional[str]) -> list[str]:
    """Full caudal-ending name sequence for the chosen anatomy."""
    if transitional not in TRANSITIONAL:
        raise ValueError(f"transitional must be one of None, 'L6', 'sacralised_L5', not {transitional!r}")
    seq = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    if transitional == "L6":
        seq.append("L6")
    return seq + ["S1", "S2"]


# ------------------------------------------------------------------------------------ public API
def propose_levels(volume: Volume, hints: Optional[Mapping[str, Sequence[float]]] = None, *,
                   modality: Optional[str] = None, transitional: Optional[str] = None,
                   params: Optional[DetectionParams] = None, companions: Sequence[Volume] = ()) -> list[Level]:
    """Propose every lumbar level T12-S1 present in ``volume`` with its landmarks (LPS mm).

    ``hints`` maps level names to LPS points inside those bodies (MRI: at most two, e.g. ``{"S1": p,
    "L1": q}``; CT needs none). ``transitional`` is None, ``"L6"`` (six lumbar vertebrae) or
    ``"sacralised_L5"`` (L5 fused into the sacrum). ``companions``: other series of the same frame of
    reference (MRI: an axial stack refines the pedicles of the levels it covers; others are ignored).
    Raises :class:`LevelDetectionError`."""
    return propose_levels_detailed(volume, hints, modality=modality, transitional=transitional,
                                   params=params, companions=companions).levels


def propose_levels_detailed(volume: Volume, hints: Optional[Mapping[str, Sequence[float]]] = None, *,
                            modality: Optional[str] = None, transitional: Optional[str] = None,
                            params: Optional[DetectionParams] = None, companions: Sequence[Volume] = ()
                            ) -> LevelProposal:
    """Like :func:`propose_levels`, with the modality used and notes for the user."""
    if transitional not in TRANSITIONAL:
        raise LevelDetectionError(f"transitional must be None, 'L6' or 'sacralised_L5', not {transitional!r}")
    p = params or DetectionParams()
    mod = (modality or volume.info.modality or _guess_modality(volume)).upper()
    hints = {str(k).upper(): np.asarray(v, dtype=float) for k, v in (hints or {}).items()}
    for name, pt in hints.items():
        if name not in _sequence(transitional):
            raise LevelDetectionError(f"unknown level name in hint: {name!r}")
        if pt.shape != (3,) or not np.all(np.isfinite(pt)):
            raise LevelDetectionError(f"hint {name} must be three finite LPS coordinates")
        if not volume.contains(pt, margin_voxels=1.0):
            raise LevelDetectionError(f"hint {name} at {tuple(round(float(v), 1) for v in pt)} lies outside "
                                      "the image")
    if mod == "CT" and not hints:
        found, notes = _detect_ct(volume, p, transitional)
    else:
        for_uid = volume.info.frame_of_reference_uid
        same_frame = [c for c in companions if c is not volume and isinstance(c, Volume) and c.array.ndim == 3
                      and (not for_uid or c.info.frame_of_reference_uid == for_uid)]
        found, notes = _detect_mr(volume, hints, p, transitional, mod, companions=same_frame)
    levels = [Level(name=v.name, landmarks=v.landmarks) for v in found if v.name in PROPOSED_ORDER]
    if not levels:
        raise LevelDetectionError("no lumbar level (T12-S1) was found in the image")
    return LevelProposal(levels, mod, notes)


def labelling_volume(session: object) -> Optional[tuple[str, Volume]]:
    """The volume to label in a :class:`planner.session.Session`: the series with role CT, else the
    sagittal T1 (marrow bright, cortex and discs dark: the clearest for the bodies), else T2, else the
    active volume, else any CT-like or sagittal volume (key, volume)."""
    vols: dict[str, Volume] = session.volumes()  # type: ignore[attr-defined]
    if not vols:
        return None
    roles = {ref.series_instance_uid: ref.role for ref in session.document.plan.case.series}  # type: ignore
    for role in ("CT", "T1", "T2"):
        for key, vol in vols.items():
            if roles.get(key) == role:
                return key, vol
    active = getattr(session, "active_series", None)
    if active in vols:
        return active, vols[active]

    def rank(item: tuple[str, Volume]) -> tuple[int, int]:
        v = item[1]
        mod = (v.info.modality or "").upper()
        return (2 if mod == "CT" else 1 if abs(v.slice_normal()[0]) > 0.7 else 0), int(v.array.size)

    return max(vols.items(), key=rank)


def _guess_modality(volume: Volume) -> str:
    st = volume.statistics()
    return "CT" if st["p1"] < -500 else "MR"


# ------------------------------------------------------------------------------------ CT
def _detect_ct(volume: Volume, p: DetectionParams, transitional: Optional[str]
               ) -> tuple[list[VertebraFound], list[str]]:
    grid = work_grid(volume, p.work_spacing_mm, fill=-1024.0)
    curve = _ct_curve(grid, p)
    s = grid.spacing
    a_col = np.arange(-10.0, 60.0 + 1e-6, s)
    img = curve.straighten(grid, a_col, np.arange(-p.slab_half_width_mm, p.slab_half_width_mm + 1e-6, s),
                           fill=-1024.0)
    discs = _find_discs(img, a_col, s, p, bright_flanks=True)
    if len(discs) < 1:
        raise LevelDetectionError("no intervertebral disc was found along the spine")
    segments = _segments(discs, len(curve), s, p)
    # every segment keeps its place in the count, even when its landmarks cannot be measured
    verts = []
    for lo_t, hi_t, partial in segments:
        lm = _ct_landmarks(grid, curve, img, a_col, lo_t, hi_t, p)
        verts.append(VertebraFound(lo_t, hi_t, lm or Landmarks(), partial=partial))
    if not any(v.landmarks.body_center_lps is not None for v in verts):
        raise LevelDetectionError("no vertebral body could be measured")
    notes: list[str] = []
    # sacrum: highest segment with alae
    sacral_idx = None
    for i in range(len(verts) - 1, -1, -1):  # verts are caudal -> cranial
        if verts[i].landmarks.body_center_lps is not None and _ct_has_alae(grid, curve, verts[i], p):
            sacral_idx = i
            break
    if sacral_idx is None:
        raise LevelDetectionError("the sacrum (S1) was not found in the field of view; on CT the levels are "
                                  "counted up from S1")
    anchor = "L5" if transitional == "sacralised_L5" else "S1"
    seq = _sequence(transitional)
    ia = seq.index(anchor)
    for i, v in enumerate(verts):
        j = ia + (sacral_idx - i)  # cranial vertebrae have higher i -> smaller j
        v.name = seq[j] if 0 <= j < len(seq) else ""
        v.sacral = i <= sacral_idx
    for v in verts:
        if v.name in PROPOSED_ORDER and v.landmarks.body_center_lps is None:
            notes.append(f"{v.name} was found but its landmarks could not be measured; place them by hand")
    found = [v for v in verts if v.name and v.landmarks.body_center_lps is not None]
    if transitional == "sacralised_L5":
        notes.append("L5 named as the top segment of the sacrum (sacralised L5, as chosen)")
        if not any(v.name == "S1" for v in found):
            notes.append("S1 below the sacralised L5 could not be measured; add it by hand if needed")
    if transitional == "L6":
        notes.append("six lumbar vertebrae assumed (transitional L6, as chosen)")
    for v in found:
        if v.partial:
            notes.append(f"{v.name} is only partly in the field of view; check its landmarks")
    return found[::-1], notes


def _ct_midline(grid: WorkGrid, p: DetectionParams) -> np.ndarray:
    """x index of the mid-sagittal plane per axial row (smoothed)."""
    w = grid.array
    s = grid.spacing
    nz, ny, nx = w.shape
    xs = np.arange(nx)
    x0 = np.full(nz, np.nan)
    for kz in range(nz):
        body = w[kz] > p.ct_body_hu
        if body.sum() < 200:
            continue
        cx = ndimage.center_of_mass(body)[1]
        bone = w[kz] > p.ct_bone_hu
        c = cx
        for hw in (60.0, 40.0, 25.0):
            m = bone & (np.abs(xs - c) * s <= hw)[None, :]
            if m.sum() < 10:
                break
            c = ndimage.center_of_mass(m)[1]
        x0[kz] = c
    ok = np.isfinite(x0)
    if ok.sum() < 10:
        raise LevelDetectionError("no patient body found in the CT (is it a CT in Hounsfield units?)")
    x0 = np.interp(np.arange(nz), np.flatnonzero(ok), x0[ok])
    x0 = ndimage.median_filter(x0, size=max(3, int(40 / s)), mode="nearest")
    return ndimage.gaussian_filter1d(x0, 10 / s, mode="nearest")


def _shift_rows(a: np.ndarray, mm: float, s: float, fill: float) -> np.ndarray:
    """out[:, y] = a[:, y + mm/s] (columns are posterior-increasing y)."""
    k = int(round(mm / s))
    out = np.full_like(a, fill)
    ny = a.shape[1]
    if k > 0:
        out[:, : ny - k] = a[:, k:]
    elif k < 0:
        out[:, -k:] = a[:, : ny + k]
    else:
        out[:] = a
    return out


def _dp_track(score: np.ndarray, max_step: int, penalty: float) -> np.ndarray:
    """Column per row maximising the summed score with |step| <= max_step and a step penalty."""
    nz, ny = score.shape
    cost = score[0].copy()
    back = np.zeros((nz, ny), dtype=int)
    cols = np.arange(ny)
    for kz in range(1, nz):
        best = np.full(ny, -np.inf)
        arg = np.zeros(ny, dtype=int)
        for d in range(-max_step, max_step + 1):
            prev = np.full(ny, -np.inf)
            src = cols - d
            ok = (src >= 0) & (src < ny)
            prev[ok] = cost[src[ok]] - penalty * abs(d)
            better = prev > best
            best[better] = prev[better]
            arg[better] = src[better]
        cost = best + score[kz]
        back[kz] = arg
    path = np.zeros(nz, dtype=int)
    path[-1] = int(np.argmax(cost))
    for kz in range(nz - 1, 0, -1):
        path[kz - 1] = back[kz, path[kz]]
    return path


def _ct_curve(grid: WorkGrid, p: DetectionParams) -> SpineCurve:
    w = grid.array
    s = grid.spacing
    nz, ny, nx = w.shape
    x0 = _ct_midline(grid, p)
    half = max(1, int(round(p.slab_half_width_mm / s)))
    slab = np.zeros((nz, ny), dtype=np.float64)
    for kz in range(nz):
        xi = np.clip(np.arange(int(round(x0[kz])) - half, int(round(x0[kz])) + half + 1), 0, nx - 1)
        slab[kz] = w[kz][:, xi].mean(axis=1)
    c = np.clip(slab, -200, 600)
    column = ndimage.uniform_filter1d(c, max(3, int(20 / s)), axis=1)
    canal = ndimage.uniform_filter1d(c, max(3, int(8 / s)), axis=1)
    post = ndimage.maximum_filter(c, size=(max(3, int(20 / s)), 1))
    post = ndimage.maximum_filter1d(post, max(3, int(25 / s)), axis=1)
    behind = _shift_rows(canal, p.canal_offset_mm, s, 600.0)
    post_b = _shift_rows(post, 2 * p.canal_offset_mm, s, -200.0)
    score = np.clip(column, -100, 250) - np.clip(behind, -100, 250) + 0.5 * np.clip(post_b, -100, 500)
    score = ndimage.uniform_filter1d(score, max(3, int(10 / s)), axis=0)
    track = _dp_track(score, max_step=2, penalty=20.0)
    # posterior boundary of the column: where the intensity falls to the canal level behind the track
    sm = ndimage.gaussian_filter(slab, 0.7)
    pb = np.zeros(nz)
    lo_c = max(1, int(12 / s))
    for kz in range(nz):
        y = track[kz]
        col_v = np.median(sm[kz, max(y - lo_c, 0): y + 1])
        seg = sm[kz, y: y + int(25 / s)]
        if seg.size < 3:
            pb[kz] = y
            continue
        thr = (min(col_v, 250.0) + seg.min()) / 2
        below = np.flatnonzero(seg < thr)
        pb[kz] = y + (below[0] if below.size else 0)
    pb = ndimage.median_filter(pb, size=max(3, int(15 / s)), mode="nearest")
    pb = ndimage.gaussian_filter1d(pb, 4 / s, mode="nearest")
    kji = np.stack([np.arange(nz, dtype=float), pb, x0], axis=1)
    return SpineCurve.from_points(grid.lps_of(kji))


def _find_discs(img: np.ndarray, a_col: np.ndarray, s: float, p: DetectionParams, *, bright_flanks: bool,
                t_range: Optional[tuple[float, float]] = None) -> list[tuple[float, float]]:
    """Discs along the straightened column: list of (t index, tilt in radians), caudal to cranial."""
    n = img.shape[0]
    a0, a1 = p.column_depth_mm
    acol = np.flatnonzero((a_col >= a0) & (a_col <= a1)).astype(float)
    a_rel = a_col[acol.astype(int)] - (a0 + a1) / 2
    best = np.full(n, -np.inf)
    tilt = np.zeros(n)
    ts = np.arange(n, dtype=float)
    for th_deg in np.arange(-p.disc_max_tilt_deg, p.disc_max_tilt_deg + 1e-6, 4.0):
        off = a_rel * math.tan(math.radians(th_deg)) / s  # row offset along the line

        def line_mean(t: np.ndarray) -> np.ndarray:
            tt = t[:, None] + off[None, :]
            aa = np.broadcast_to(acol[None, :], tt.shape)
            return ndimage.map_coordinates(img, [tt.ravel(), aa.ravel()], order=1, mode="nearest").reshape(
                tt.shape).mean(axis=1)

        l0 = line_mean(ts)
        sc = np.full(n, -np.inf)
        for d_mm in (3.0, 4.5, 6.0):
            d = d_mm / s
            flank = np.minimum(line_mean(ts - d), line_mean(ts + d))
            sc = np.maximum(sc, flank - l0)
        better = sc > best
        best[better] = sc[better]
        tilt[better] = math.radians(th_deg)
    edge = int(6 / s)
    best[:edge] = -np.inf
    best[n - edge:] = -np.inf
    if t_range is not None:
        best[: max(0, int(t_range[0]))] = -np.inf
        best[int(t_range[1]) + 1:] = -np.inf
    chain = _disc_chain(best, s, p)
    return [(float(t), float(tilt[t])) for t in chain]


def _disc_chain(score: np.ndarray, s: float, p: DetectionParams) -> list[int]:
    """Best chain of disc positions (local maxima of ``score``) with vertebral spacing."""
    n = len(score)
    finite = np.isfinite(score)
    if not finite.any():
        return []
    sm = score.copy()
    sm[~finite] = -1e9
    peaks = [i for i in range(1, n - 1) if finite[i] and sm[i] >= sm[i - 1] and sm[i] >= sm[i + 1] and sm[i] > 0]
    if not peaks:
        return []
    vals = np.array([sm[i] for i in peaks])
    # a disc has to pay for itself: weak peaks join a chain only when they fit its rhythm
    base = float(np.percentile(vals, 30)) if len(vals) > 3 else 0.0
    gain = vals - base
    lo, hi = p.disc_spacing_min_mm / s, p.disc_spacing_max_mm / s
    best = gain.copy()
    prev = np.full(len(peaks), -1)
    for j in range(len(peaks)):
        for i in range(j):
            d = peaks[j] - peaks[i]
            if lo <= d <= hi and best[i] + gain[j] > best[j]:
                best[j] = best[i] + gain[j]
                prev[j] = i
    j = int(np.argmax(best))
    chain = []
    while j >= 0:
        chain.append(peaks[j])
        j = prev[j]
    return chain[::-1]


def _segments(discs: list[tuple[float, float]], n: int, s: float, p: DetectionParams
              ) -> list[tuple[float, float, bool]]:
    """Vertebra segments (t_low, t_high, partial) between discs, plus partial ones at the ends."""
    ts = [d[0] for d in discs]
    segs = [(ts[i], ts[i + 1], False) for i in range(len(ts) - 1)]
    typical = float(np.median(np.diff(ts))) if len(ts) > 1 else 35.0 / s
    top = min(n - 1.0, ts[-1] + typical)
    if top - ts[-1] > 0.5 * typical:
        segs.append((ts[-1], top, top < ts[-1] + typical - 1))
    bottom = max(0.0, ts[0] - typical)
    if ts[0] - bottom > 0.5 * typical:
        segs.insert(0, (bottom, ts[0], bottom > ts[0] - typical + 1))
    return segs


def _ct_landmarks(grid: WorkGrid, curve: SpineCurve, img: np.ndarray, a_col: np.ndarray, t_lo: float,
                  t_hi: float, p: DetectionParams) -> Optional[Landmarks]:
    """Landmarks of the body between the discs at curve rows ``t_lo`` and ``t_hi``."""
    s = grid.spacing
    body_rows = np.arange(int(math.ceil(t_lo + 0.25 * (t_hi - t_lo))), int(math.floor(t_hi - 0.25 * (t_hi - t_lo))) + 1)
    body_rows = body_rows[(body_rows >= 0) & (body_rows < img.shape[0])]
    if body_rows.size == 0:
        return None
    prof = ndimage.gaussian_filter1d(img[body_rows].mean(axis=0), 0.8)
    mu_b = float(np.median(prof[(a_col >= 6) & (a_col <= 20)]))
    thr = _ct_body_threshold(mu_b, p)
    a_ant = _wall_in_profile(prof, a_col, thr, p.ct_bone_hu, start_mm=2.0, min_mm=15.0, max_mm=60.0)
    if a_ant is None:
        return None
    sup = _endplate_point(img, a_col, curve, t_hi, a_ant / 2, s, toward=-1)
    inf = _endplate_point(img, a_col, curve, t_lo, a_ant / 2, s, toward=+1)
    t_mid = (t_lo + t_hi) / 2
    lateral = curve.frame(t_mid)[2]
    return _refine_body(grid, sup, inf, lateral, curve.frame(t_mid)[3], thr, p)


def _ct_body_threshold(mu_body: float, p: DetectionParams) -> float:
    """Halfway between the body's marrow level and soft tissue (never closer than 20 HU to soft tissue)."""
    return (max(mu_body, p.ct_soft_hu + 40.0) + p.ct_soft_hu) / 2


def _wall_in_profile(prof: np.ndarray, pos_mm: np.ndarray, thr: float, bone_hu: float, *, start_mm: float,
                     min_mm: float, max_mm: float, max_gap_mm: float = 2.0) -> Optional[float]:
    """Outer edge of the body along a profile that starts inside it (positions increasing outward).

    Walks out while the value stays above ``thr`` (gaps up to ``max_gap_mm``: the basivertebral
    venous channel just inside the posterior wall is darker than marrow); if the run goes on more than
    6 mm beyond the last cortical peak (a contrast-filled vessel against the body), stops at that
    peak's outer half-maximum instead."""
    step = float(abs(pos_mm[1] - pos_mm[0])) if len(pos_mm) > 1 else 1.0
    inside = prof > thr
    last_in = None
    gap = 0.0
    # start from the brightest point near the start (surely inside the body)
    near = np.flatnonzero((pos_mm >= start_mm) & (pos_mm <= start_mm + 15.0))
    if near.size == 0 or not inside[near].any():
        return None
    i0 = near[int(np.argmax(prof[near]))]
    for i in np.flatnonzero(pos_mm >= pos_mm[i0]):
        if pos_mm[i] > max_mm + 10:
            break
        if inside[i]:
            last_in = i
            gap = 0.0
        else:
            gap += step
            if gap > max_gap_mm and last_in is not None:
                break
    if last_in is None:
        return None
    peaks = [i for i in range(1, last_in + 1) if min_mm <= pos_mm[i] <= max_mm and prof[i] >= bone_hu
             and prof[i] >= prof[i - 1] and prof[i] >= prof[min(i + 1, len(prof) - 1)]]
    i_end = last_in
    if peaks and (pos_mm[last_in] - pos_mm[peaks[-1]]) > 6.0:
        pk = peaks[-1]
        i_end = pk
        while i_end + 1 < len(prof) and prof[i_end + 1] > 0.5 * (prof[pk] + thr):
            i_end += 1
    # sub-voxel: interpolate where the profile crosses thr after i_end
    edge = float(pos_mm[i_end])
    if i_end + 1 < len(prof) and prof[i_end] != prof[i_end + 1] and prof[i_end + 1] < thr <= prof[i_end]:
        edge += step * (prof[i_end] - thr) / (prof[i_end] - prof[i_end + 1])
    if edge < min_mm:
        return None
    return min(edge, max_mm)


def _line_profile(grid: WorkGrid, origin: np.ndarray, direction: np.ndarray, across: Sequence[np.ndarray],
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


def _refine_body(grid: WorkGrid, sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray, anterior_hint: np.ndarray,
                 thr: float, p: DetectionParams, *, fill: float = -1024.0, bone: Optional[float] = None,
                 pedicle_thr: Optional[float] = None) -> Optional[Landmarks]:
    """Walls on the mid-height line, body centre, endplates moved onto the body's AP middle, pedicles.

    ``grid`` holds CT values (``thr`` between marrow and soft tissue, ``bone`` the cortex level) or,
    for MRI, a marrow-likeness map that is positive inside marrow (``thr`` 0, ``bone`` None -> no
    cortex-peak logic)."""
    bone_v = p.ct_bone_hu if bone is None else bone
    axis = sup - inf
    height = float(np.linalg.norm(axis))
    if height < 5:
        return None
    axis /= height
    lat = lateral - axis * (lateral @ axis)
    lat /= np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap @ anterior_hint < 0:
        ap = -ap
    mid = 0.5 * (sup + inf)
    pos = np.arange(0.0, 70.0 + 1e-6, grid.spacing / 2)
    hw = (p.slab_half_width_mm, min(3.0, 0.15 * height))
    fwd = _line_profile(grid, mid, ap, (lat, axis), pos, hw, fill)
    back = _line_profile(grid, mid, -ap, (lat, axis), pos, hw, fill)
    a_front = _wall_in_profile(fwd, pos, thr, bone_v, start_mm=0.0, min_mm=5.0, max_mm=50.0)
    # behind the body lies the canal (CSF, fat): split halfway between the marrow and the canal level
    marrow = float(np.median(np.concatenate([fwd[pos <= 8], back[pos <= 8]])))
    canal = float(np.percentile(back[pos <= 40], 10))
    thr_back = min(thr, 0.5 * (marrow + canal)) if marrow > canal else thr
    a_back = _wall_in_profile(back, pos, thr_back, 1e9, start_mm=0.0, min_mm=2.0, max_mm=40.0, max_gap_mm=6.0)
    if a_front is None or a_back is None:
        return None
    post = mid - a_back * ap
    ant = mid + a_front * ap
    center = 0.5 * (post + ant)
    # centre the midline on the body: its left and right edges at mid-height and mid-depth
    hw_lr = (min(4.0, 0.2 * (a_front + a_back)), min(3.0, 0.15 * height))
    left = _wall_in_profile(_line_profile(grid, center, lat, (ap, axis), pos, hw_lr, fill), pos, thr, bone_v,
                            start_mm=0.0, min_mm=8.0, max_mm=40.0, max_gap_mm=6.0)
    right = _wall_in_profile(_line_profile(grid, center, -lat, (ap, axis), pos, hw_lr, fill), pos, thr, bone_v,
                             start_mm=0.0, min_mm=8.0, max_mm=40.0, max_gap_mm=6.0)
    if (left is not None and right is not None and max(left, right) < 38.0
            and abs(left - right) <= 2 * p.max_midline_correction_mm):
        shift = 0.5 * (left - right) * lat
        mid, post, ant, center, sup, inf = (v + shift for v in (mid, post, ant, center, sup, inf))
    sup_c = center + ((sup - center) @ axis) * axis
    inf_c = center + ((inf - center) @ axis) * axis
    ped_thr = max(0.75 * bone_v, thr) if pedicle_thr is None else pedicle_thr
    ped_l, ped_r = _pedicles(grid, post, axis, ap, lat, height, p, thr=ped_thr, fill=fill)
    return Landmarks(body_center_lps=_pt(center), superior_endplate_lps=_pt(sup_c), inferior_endplate_lps=_pt(inf_c),
                     posterior_wall_lps=_pt(post), anterior_wall_lps=_pt(ant),
                     pedicle_left_lps=None if ped_l is None else _pt(ped_l),
                     pedicle_right_lps=None if ped_r is None else _pt(ped_r))


def _pt(v: np.ndarray) -> tuple[float, float, float]:
    return (round(float(v[0]), 3), round(float(v[1]), 3), round(float(v[2]), 3))


def _endplate_point(img: np.ndarray, a_col: np.ndarray, curve: SpineCurve, t_disc: float, a_mid: float,
                    s: float, toward: int) -> np.ndarray:
    """Endplate next to the disc at ``t_disc``: from the disc centre toward the body (``toward`` = +1
    upward, -1 downward) to where the column profile at ``a_mid`` rises halfway to the body level."""
    ia = int(np.argmin(np.abs(a_col - a_mid)))
    cols = slice(max(ia - int(4 / s), 0), ia + int(4 / s) + 1)
    prof = img[:, cols].mean(axis=1)
    n = len(prof)
    t0 = int(round(t_disc))
    steps = np.arange(0, int(15 / s))
    idx = np.clip(t0 + toward * steps, 0, n - 1)
    vals = ndimage.gaussian_filter1d(prof, 0.8)[idx]
    lo = vals[: max(2, int(2 / s))].min()
    hi = np.percentile(vals, 80)
    half = (lo + hi) / 2
    k = int(np.argmax(vals >= half)) if np.any(vals >= half) else 0
    if k > 0:
        v0, v1 = vals[k - 1], vals[k]
        frac = (half - v0) / (v1 - v0) if v1 != v0 else 0.0
        t = t0 + toward * (k - 1 + frac)
    else:
        t = float(t0)
    return curve.to_lps(np.array(t), np.array(a_mid), np.array(0.0))


def _pedicles(grid: WorkGrid, post: np.ndarray, axis: np.ndarray, ap: np.ndarray, lat: np.ndarray,
              height: float, p: DetectionParams, thr: float, fill: float
              ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Centroids of the bone (CT) or marrow (MR) bridge on each side of the canal behind the posterior
    wall midpoint ``post``, taken at the depth where that bridge is narrowest (the isthmus)."""
    s = grid.spacing
    h = np.arange(-0.45 * height, 0.5 * height + 1e-6, s)
    x = np.arange(-p.pedicle_lateral_mm[1], p.pedicle_lateral_mm[1] + 1e-6, s)
    out: list[Optional[np.ndarray]] = []
    planes = []
    for d in np.arange(p.pedicle_depth_mm[0], p.pedicle_depth_mm[1] + 1e-6, s):
        o = post - d * ap
        pts = o[None, None, :] + h[:, None, None] * axis[None, None, :] + x[None, :, None] * lat[None, None, :]
        planes.append((d, grid.sample(pts, fill=fill)))
    for side in (+1, -1):
        cands = []
        for d, plane in planes:
            mask = (plane > thr) & (side * x >= p.pedicle_lateral_mm[0])[None, :]
            lab, n = ndimage.label(mask)
            if n == 0:
                continue
            sizes = ndimage.sum(mask, lab, range(1, n + 1))
            k = int(np.argmax(sizes)) + 1
            comp = lab == k
            area = float(comp.sum()) * s * s
            if area < 20:
                continue
            ch, cx = ndimage.center_of_mass(comp)
            cands.append((area, d, h[0] + ch * s, x[0] + cx * s))
        if not cands:
            out.append(None)
            continue
        areas = np.array([c[0] for c in cands])
        ok = areas >= 0.5 * np.median(areas)
        good = [c for c, k in zip(cands, ok) if k]
        amin = min(c[0] for c in good)
        # the isthmus: the depths whose section is within 15% of the smallest; take their middle one
        near_min = [c for c in good if c[0] <= 1.15 * amin]
        area, d, hh, xx = near_min[len(near_min) // 2]
        out.append(post - d * ap + hh * axis + xx * lat)
    return out[0], out[1]


def _ct_has_alae(grid: WorkGrid, curve: SpineCurve, v: VertebraFound, p: DetectionParams) -> bool:
    """True if bone connected to the body reaches beyond ``ala_min_halfwidth_mm`` on both sides in front of
    the posterior wall (sacral alae). Lumbar transverse processes arise behind the wall and are ignored."""
    s = grid.spacing
    lm = v.landmarks
    depth = float(np.linalg.norm(np.subtract(lm.anterior_wall_lps, lm.posterior_wall_lps)))
    t = np.arange(v.t_low + 0.3 * (v.t_high - v.t_low), v.t_high - 0.3 * (v.t_high - v.t_low) + 1e-6, 1.0)
    a = np.arange(0.0, depth + 15.0 + 1e-6, s)
    x = np.arange(-100.0, 100.0 + 1e-6, s)
    planes = grid.sample(curve.to_lps(t[:, None, None], a[None, :, None], x[None, None, :]), fill=-1024.0)
    core = planes[:, (a >= 0.3 * depth) & (a <= 0.7 * depth)][:, :, np.abs(x) <= 8]
    thr = max(0.5 * (float(np.median(core)) + p.ct_soft_hu), p.ct_soft_hu + 50.0)
    seed = (np.abs(x) <= 8)[None, :] & ((a >= 0.3 * depth) & (a <= 0.7 * depth))[:, None]
    st = np.ones((max(3, int(3 / s) + 1),) * 2, bool)
    reach = []
    for plane in planes:
        mask = ndimage.binary_closing(plane > thr, structure=st)
        lab, _ = ndimage.label(mask)
        ids = set(np.unique(lab[seed]).tolist()) - {0}
        if not ids:
            reach.append(0.0)
            continue
        comp = np.isin(lab, list(ids))
        dense = comp & (plane > p.ct_bone_hu)
        cols = np.flatnonzero(dense.any(axis=0))
        xs = x[cols]
        left = xs[xs > 0].max() if np.any(xs > 0) else 0.0
        right = -xs[xs < 0].min() if np.any(xs < 0) else 0.0
        reach.append(min(left, right))
    return bool(np.median(reach) >= p.ala_min_halfwidth_mm)


# ------------------------------------------------------------------------------------ MRI
def _detect_mr(volume: Volume, hints: Mapping[str, np.ndarray], p: DetectionParams, transitional: Optional[str],
               modality: str, companions: Sequence[Volume] = ()) -> tuple[list[VertebraFound], list[str]]:
    """Levels on a sagittal MR from two marks inside named bodies (e.g. S1 and L1).

    The marks give the marrow signal and the names; the bodies between them are found along the
    spine as marrow segments separated by discs (their number is known from the names), and each
    body is measured inside its cortical shell, which is dark on every sequence."""
    if not hints:
        raise LevelDetectionError(f"on {modality or 'MR'} images the levels need two marks: a point inside "
                                  "S1 and a point inside L1")
    if len(hints) < 2:
        raise LevelDetectionError("on MRI the levels need two marks, e.g. inside S1 and inside L1 (one was given)")
    seq = _sequence(transitional)
    ordered = sorted(hints.items(), key=lambda kv: seq.index(kv[0]))  # cranial first
    (name_hi, p_hi), (name_lo, p_lo) = ordered[0], ordered[-1]
    n_gaps = seq.index(name_lo) - seq.index(name_hi)
    if n_gaps < 1:
        raise LevelDetectionError("the two marks name the same level")
    chord = p_hi - p_lo
    length = float(np.linalg.norm(chord))
    if not (p.disc_spacing_min_mm * n_gaps * 0.8 <= length <= p.disc_spacing_max_mm * n_gaps):
        raise LevelDetectionError(f"the marks {name_hi} and {name_lo} are {length:.0f} mm apart, which does not fit "
                                  f"{n_gaps} vertebra(e) between them; check which bodies were marked")
    if chord[2] <= 0:
        raise LevelDetectionError(f"the {name_hi} mark lies below the {name_lo} mark; check which bodies were "
                                  "marked")
    c_hat = chord / length
    volume = _as_float32(volume)
    companions = [_as_float32(c) for c in companions]
    # a click anywhere inside the body: move it to the body's AP middle and midsagittal plane first
    p_lo, p_hi = (_snap_mark(volume, q, c_hat, p) for q in (p_lo, p_hi))
    chord = p_hi - p_lo
    length = float(np.linalg.norm(chord))
    c_hat = chord / length
    ext = p.mr_extend_mm
    margin = np.array([60.0, 70.0, 40.0])
    ends = np.stack([p_lo - ext * c_hat, p_hi + ext * c_hat, p_lo, p_hi])
    grid = work_grid(volume, p.mr_work_spacing_mm, fill=0.0, bounds_lps=(ends.min(0) - margin, ends.max(0) + margin))
    s = grid.spacing
    ratio = _mr_ratio_grid(grid, p_lo, p_hi)
    # the curve through the body centres, refined from the chord
    ts = np.arange(0.0, length + 2 * ext + 1e-6, s)
    centre = (p_lo - ext * c_hat)[None, :] + ts[:, None] * c_hat[None, :]
    curve = SpineCurve.from_points(centre)
    for _ in range(3):
        curve = _mr_recentre(ratio, curve, np.arange(len(curve)) * s, curve.nearest_t(p_lo) * s,
                             curve.nearest_t(p_hi) * s, p).resampled(s)
    t_lo, t_hi = curve.nearest_t(p_lo) * s, curve.nearest_t(p_hi) * s
    a_col = np.arange(-45.0, 45.0 + 1e-6, s)
    x_mm = np.arange(-p.slab_half_width_mm, p.slab_half_width_mm + 1e-6, s)
    img = curve.straighten(ratio, a_col, x_mm, fill=0.0)
    dev = -np.minimum(np.abs(np.log(np.clip(img, 0.05, 20.0))), 2.0)  # 0 in marrow, negative elsewhere
    pr = p.mr_column_half_mm
    i_lo, i_hi = t_lo / s, t_hi / s
    discs = _mr_discs(dev, a_col, s, p, (-pr, pr), i_lo, i_hi, n_gaps)
    if len(discs) != n_gaps:
        raise LevelDetectionError(f"found {len(discs)} of the {n_gaps} discs between {name_hi} and {name_lo}")
    # discs beyond the marks: one above the upper mark (and the next above it), one below the lower
    above = _mr_discs(dev, a_col, s, p, (-pr, pr), discs[-1][0] + p.disc_spacing_min_mm / s, len(curve) - 1, 2,
                      exact=False)
    below = _mr_discs(dev, a_col, s, p, (-pr, pr), 0, discs[0][0] - p.disc_spacing_min_mm / s, 1, exact=False,
                      from_top=True)
    all_discs = below + discs + above
    # each disc's two endplates: the cortical lines (dark on every sequence) that bracket it
    plates = [_mr_disc_plates(ratio, curve, t, p) for t, _ in all_discs]
    i_name_lo = seq.index(name_lo)
    notes: list[str] = []
    verts: list[VertebraFound] = []
    idx_lo = len(below)  # index in all_discs of the disc just above the lower mark
    for k in range(len(all_discs) + 1):
        # segment k lies between disc k-1 and disc k; the lower marked body is segment idx_lo
        j = i_name_lo - (k - idx_lo)
        if not 0 <= j < len(seq):
            continue
        name = seq[j]
        lo_t = all_discs[k - 1][0] if k >= 1 else None
        hi_t = all_discs[k][0] if k < len(all_discs) else None
        if name not in PROPOSED_ORDER:
            continue
        lm = _mr_landmarks(ratio, curve, dev, a_col, lo_t, hi_t, s, p, name=name, volume=volume, companions=companions,
                           inf_t=plates[k - 1][1] if k >= 1 else None,
                           sup_t=plates[k][0] if k < len(all_discs) else None)
        if lm is None:
            notes.append(f"{name} was found but its landmarks could not be measured; place them by hand")
            continue
        verts.append(VertebraFound(lo_t or 0.0, hi_t or 0.0, lm, name=name, partial=lo_t is None or hi_t is None))
    _sacral_pedicle_depth_from_l5(verts, notes)
    return verts[::-1], notes


def _pedicle_depth(lm: Landmarks) -> Optional[float]:
    """Mean depth of the pedicle centres behind the posterior wall midpoint, along the body's AP line."""
    if lm.pedicle_left_lps is None or lm.pedicle_right_lps is None:
        return None
    post, ant = np.asarray(lm.posterior_wall_lps), np.asarray(lm.anterior_wall_lps)
    ap = (ant - post) / max(1e-6, float(np.linalg.norm(ant - post)))
    return float(np.mean([(post - np.asarray(q)) @ ap for q in (lm.pedicle_left_lps, lm.pedicle_right_lps)]))


def _sacral_pedicle_depth_from_l5(verts: list[VertebraFound], notes: list[str]) -> None:
    """S1's pedicles show no separate bone and are placed from the sacral canal (see _mr_measure_body); their
    depth behind the posterior wall is taken from L5's measured pedicles when these were found."""
    by_name = {v.name: v for v in verts}
    s1, l5 = by_name.get("S1"), by_name.get("L5")
    if s1 is None or s1.landmarks.pedicle_left_lps is None:
        return
    notes.append("S1 pedicles placed beside the sacral canal from the typical S1 pedicle size (no separate pedicle "
                 "bone is seen); check them")
    if l5 is None:
        return
    d5, d1 = _pedicle_depth(l5.landmarks), _pedicle_depth(s1.landmarks)
    if d5 is None or d1 is None or not 2.0 <= d5 <= 14.0:
        return
    lm = s1.landmarks
    post, ant = np.asarray(lm.posterior_wall_lps), np.asarray(lm.anterior_wall_lps)
    ap = (ant - post) / float(np.linalg.norm(ant - post))
    shift = (d1 - d5) * ap
    s1.landmarks = lm.model_copy(update={"pedicle_left_lps": _pt(np.asarray(lm.pedicle_left_lps) + shift),
                                         "pedicle_right_lps": _pt(np.asarray(lm.pedicle_right_lps) + shift)})


def _as_float32(volume: Volume) -> Volume:
    """The volume with a float32 array (sampled many times; converted once)."""
    if volume.array.dtype == np.float32:
        return volume
    return Volume(volume.array.astype(np.float32), volume.ijk_to_lps, volume.info)


def _snap_mark(volume: Volume, mark: np.ndarray, axis: np.ndarray, p: DetectionParams) -> np.ndarray:
    """A mark inside a vertebral body moved, at its height, to the middle between the body's front and back
    walls and onto the vertebra's midsagittal plane of symmetry (so that where the user clicks inside the
    body does not matter); the mark itself when the walls are not found."""
    lat = np.array([1.0, 0.0, 0.0]) - axis * axis[0]
    lat /= np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap[1] > 0:  # LPS: anterior is -y
        ap = -ap
    r = np.arange(-3.0, 3.0 + 1e-6, 1.5)
    ball = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    marrow = float(np.median(volume.sample(mark + ball)))
    if not marrow > 0:
        return mark
    ns = _NativeSlices(volume, mark, lat, ap, axis, marrow)
    pos = np.arange(0.0, 50.0 + 1e-6, 0.25)
    out = []
    for sgn in (+1, -1):
        found = []
        for dh in (-4.0, -2.0, 0.0, 2.0, 4.0):
            for dx in (-1.5, 0.0, 1.5):
                prof = ns.sample(dx, sgn * pos, dh)
                e = _cortex_line(prof[pos >= 2.0], pos[pos >= 2.0], p)
                if e is not None:
                    found.append(_surface(e, "wall"))
        if len(found) < 5:
            return mark
        out.append(float(np.median(found)))
    a_front, a_back = out
    depth = a_front + a_back
    if not p.mr_body_depth_mm[0] <= depth <= p.mr_body_depth_mm[1]:
        return mark
    a_mid = 0.5 * (a_front - a_back)
    c = None
    if ns.sagittal:
        c = _mirror_midline(ns, np.arange(-a_back - 25.0, a_front + 3.0 + 1e-6, 1.5), np.arange(-6.0, 6.0 + 1e-6, 1.5),
                            search_mm=8.0)
    return mark + a_mid * ap + (0.0 if c is None or abs(c) > 7.5 else c) * lat


def _marrow_level(grid: WorkGrid, mark: np.ndarray) -> float:
    """The normal marrow signal of the body around a mark: the most common value in a box of 16 x 16 x 30 mm
    around it (a Modic zone or the basivertebral veins beside the mark take up less of the body than its
    normal marrow; a median of the values next to the mark would follow them)."""
    r_xy = np.arange(-8.0, 8.0 + 1e-6, 2.0)
    r_z = np.arange(-15.0, 15.0 + 1e-6, 1.5)
    box = np.stack(np.meshgrid(r_xy, r_xy, r_z, indexing="ij"), -1).reshape(-1, 3)
    near = grid.sample(mark[None, :] + box[np.linalg.norm(box / [8.0, 8.0, 15.0], axis=1) <= 0.5])
    med = float(np.median(near))
    vals = grid.sample(mark[None, :] + box)
    if med <= 0:
        return med
    edges = np.arange(0.3, 2.0 + 1e-6, 0.02) * med
    hist, _ = np.histogram(vals, bins=edges)
    hist = ndimage.gaussian_filter1d(hist.astype(float), 2.0)
    mode = float(0.5 * (edges[int(np.argmax(hist))] + edges[int(np.argmax(hist)) + 1]))
    # near the mark the marrow is normal unless the mark lies in a Modic zone: then take the box's mode
    return med if abs(med / mode - 1.0) <= 0.15 else mode


def _mr_ratio_grid(grid: WorkGrid, p_lo: np.ndarray, p_hi: np.ndarray) -> WorkGrid:
    """The working grid divided by the marrow signal, interpolated between the two marks."""
    s = grid.spacing
    m_lo, m_hi = _marrow_level(grid, p_lo), _marrow_level(grid, p_hi)
    if m_lo <= 0 or m_hi <= 0:
        raise LevelDetectionError("a mark lies where the image has no signal; click inside the vertebral body")
    nz, ny, nx = grid.shape
    # interpolate along the chord (projection of each grid point); done per axis-aligned plane for speed
    c = p_hi - p_lo
    L2 = float(c @ c)
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij", sparse=True)
    lps0 = grid.origin_lps
    proj = ((lps0[0] + xx * s - p_lo[0]) * c[0] + (lps0[1] + yy * s - p_lo[1]) * c[1]
            + (lps0[2] + zz * s - p_lo[2]) * c[2]) / L2
    f = np.clip(proj, -0.5, 1.5)
    marrow = m_lo + (m_hi - m_lo) * f
    return WorkGrid((grid.array / np.maximum(marrow, 1e-6)).astype(np.float32), grid.origin_lps, s)


def _mr_marrow_runs(prof: np.ndarray, pos: np.ndarray, p: DetectionParams) -> list[tuple[float, float]]:
    """Runs (start, end) along ``pos`` of marrow-like signal: between dips below ``mr_wall_dip`` (cortical
    lines; on T1 also fluid, muscle and disc) and peaks above its inverse (on T2: fluid, fat, disc)."""
    inside = (prof > p.mr_wall_dip) & (prof < 1.0 / p.mr_wall_dip)
    lab, n = ndimage.label(inside)
    return [(float(pos[lab == k][0]), float(pos[lab == k][-1])) for k in range(1, n + 1)]


def _mr_recentre(ratio: WorkGrid, curve: SpineCurve, ts: np.ndarray, t_lo: float, t_hi: float,
                 p: DetectionParams) -> SpineCurve:
    """Move the curve to the AP middle of the body column: per row, the marrow-like run (body rows) whose
    middle is nearest to the current curve, then a smooth fit anchored at the marks."""
    s = ratio.spacing
    a = np.arange(-45.0, 45.0 + 1e-6, s)
    img = curve.straighten(ratio, a, np.arange(-3.0, 3.0 + 1e-6, s), fill=0.0)
    sm = ndimage.uniform_filter1d(img, max(1, int(round(3.0 / s))), axis=0)
    mids = np.full(len(ts), np.nan)
    for i in range(len(ts)):
        row = sm[i]
        marrow = (row > 1 - p.mr_marrow_tol) & (row < 1 + p.mr_marrow_tol)
        best = None
        for a0, a1 in _mr_marrow_runs(row, a, p):
            sel = (a >= a0) & (a <= a1)
            if not (p.mr_body_depth_mm[0] <= a1 - a0 <= p.mr_body_depth_mm[1]) or marrow[sel].mean() < 0.5:
                continue
            # a body row ends in cortex (dark on every sequence) at both walls, unlike bowel or fat
            if not (_ends_in_cortex(row, a, a0, -1, p) and _ends_in_cortex(row, a, a1, +1, p)):
                continue
            mid = (a0 + a1) / 2
            if best is None or abs(mid) < abs(best):
                best = mid
        if best is not None and abs(best) <= 30:
            mids[i] = best
    ok = np.isfinite(mids)
    if ok.sum() < 10:
        return curve
    # smooth fit a(t): cubic polynomial, the marks weighted as fixed points (offset 0 there)
    t_ok = ts[ok]
    a_ok = ndimage.median_filter(mids[ok], size=max(3, int(round(9.0 / s))) | 1, mode="nearest")
    w = np.ones(len(t_ok))
    t_fit = np.concatenate([t_ok, [t_lo, t_hi]])
    a_fit = np.concatenate([a_ok, [0.0, 0.0]])
    w_fit = np.concatenate([w, [len(t_ok) / 4] * 2])
    span = max(ts[-1], 1.0)
    coef = np.polynomial.polynomial.polyfit(t_fit / span, a_fit, 3, w=w_fit)
    offset = np.polynomial.polynomial.polyval(ts / span, coef)
    pts = curve.to_lps(np.arange(len(ts), dtype=float), offset, np.zeros(len(ts)))
    return SpineCurve.from_points(pts)


def _ends_in_cortex(row: np.ndarray, a: np.ndarray, a_end: float, outward: int, p: DetectionParams) -> bool:
    """True if a marrow run ending at ``a_end`` is closed by a cortical line: a dip below ``mr_wall_dip``
    just beyond it (T1, or next to fluid and ligament), or (a thin cortex blurred between marrow and a
    bright tissue, as fat and fluid are on T2) a dip at the run's end clearly darker than marrow and
    than the tissue beyond."""
    rel = (a - a_end) * outward
    near = row[(rel > 0) & (rel <= 2.5)]
    if near.size and near.min() < p.mr_wall_dip:
        return True
    around = row[(rel >= -3.0) & (rel <= 2.5)]
    beyond = row[(rel >= 2.5) & (rel <= 6.0)]
    if not around.size or not beyond.size:
        return False
    dip = float(around.min())
    return dip < 0.8 and dip < 0.7 * float(np.median(beyond))


def _mr_discs(dev: np.ndarray, a_col: np.ndarray, s: float, p: DetectionParams, col: tuple[float, float],
              t_start: float, t_end: float, count: int, *, exact: bool = True, from_top: bool = False
              ) -> list[tuple[float, float]]:
    """``count`` discs between rows t_start and t_end of the straightened deviation image.

    exact: choose exactly ``count`` (the marks say how many); otherwise up to ``count`` nearest to
    t_start (or to t_end with ``from_top``), each with a clear disc signature."""
    pr = DetectionParams(**{**p.__dict__, "column_depth_mm": col})
    score = _disc_scores(dev, a_col, s, pr)
    n = len(score[0])
    lo_i, hi_i = max(0, int(math.ceil(t_start))), min(n - 1, int(math.floor(t_end)))
    if hi_i <= lo_i:
        return []
    sc = np.full(n, -np.inf)
    sc[lo_i:hi_i + 1] = score[0][lo_i:hi_i + 1]
    peaks = [i for i in range(lo_i + 1, hi_i) if np.isfinite(sc[i]) and sc[i] >= sc[i - 1] and sc[i] >= sc[i + 1]
             and sc[i] > 0]
    lo_d, hi_d = p.disc_spacing_min_mm / s, p.disc_spacing_max_mm / s
    if exact:
        chain = _exact_chain(peaks, sc, count, lo_d, hi_d, t_start, t_end)
    else:
        # strongest peak of its neighbourhood only (a disc's two endplates give shoulders beside it)
        half = max(1, int(round(8.0 / s)))
        strong = [i for i in peaks if sc[i] >= p.mr_min_disc_score
                  and sc[i] >= np.max(sc[max(0, i - half):i + half + 1])]
        chain = []
        last = t_end if from_top else t_start
        for i in (sorted(strong, reverse=True) if from_top else sorted(strong)):
            if len(chain) >= count:
                break
            d = (last - i) if from_top else (i - last)
            if (chain and lo_d <= d <= hi_d) or (not chain and d <= hi_d):
                chain.append(i)
                last = i
        chain.sort()
    return [(float(i), float(score[1][i])) for i in chain]


def _exact_chain(peaks: list[int], sc: np.ndarray, count: int, lo_d: float, hi_d: float, t_start: float,
                 t_end: float) -> list[int]:
    """The ``count`` peaks with the best total score whose spacing (and distance to the marks, at most
    one vertebra) is that of vertebrae."""
    if len(peaks) < count:
        return peaks
    n = len(peaks)
    best = np.full((count, n), -np.inf)
    prev = np.full((count, n), -1, dtype=int)
    for j in range(n):
        if peaks[j] - t_start <= hi_d:
            best[0, j] = sc[peaks[j]]
    for c in range(1, count):
        for j in range(n):
            for i in range(j):
                d = peaks[j] - peaks[i]
                if lo_d <= d <= hi_d and best[c - 1, i] + sc[peaks[j]] > best[c, j]:
                    best[c, j] = best[c - 1, i] + sc[peaks[j]]
                    prev[c, j] = i
    ends = [j for j in range(n) if t_end - peaks[j] <= hi_d and np.isfinite(best[count - 1, j])]
    if not ends:
        return []
    j = max(ends, key=lambda k: best[count - 1, k])
    out = []
    for c in range(count - 1, -1, -1):
        out.append(peaks[j])
        j = prev[c, j]
    return out[::-1]


def _disc_scores(img: np.ndarray, a_col: np.ndarray, s: float, p: DetectionParams) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how much a thin band (tilted up to ``disc_max_tilt_deg``) is darker than both sides, and
    the tilt (radians) that fits best."""
    n = img.shape[0]
    a0, a1 = p.column_depth_mm
    acol = np.flatnonzero((a_col >= a0) & (a_col <= a1)).astype(float)
    a_rel = a_col[acol.astype(int)] - (a0 + a1) / 2
    best = np.full(n, -np.inf)
    tilt = np.zeros(n)
    ts = np.arange(n, dtype=float)
    for th_deg in np.arange(-p.disc_max_tilt_deg, p.disc_max_tilt_deg + 1e-6, 4.0):
        off = a_rel * math.tan(math.radians(th_deg)) / s

        def line_mean(t: np.ndarray) -> np.ndarray:
            tt = t[:, None] + off[None, :]
            aa = np.broadcast_to(acol[None, :], tt.shape)
            return ndimage.map_coordinates(img, [tt.ravel(), aa.ravel()], order=1, mode="nearest").reshape(
                tt.shape).mean(axis=1)

        l0 = line_mean(ts)
        sc = np.full(n, -np.inf)
        for d_mm in (3.0, 4.5, 6.0, 8.0):
            d = d_mm / s
            flank = np.minimum(line_mean(ts - d), line_mean(ts + d))
            sc = np.maximum(sc, flank - l0)
        better = sc > best
        best[better] = sc[better]
        tilt[better] = math.radians(th_deg)
    edge = int(6 / s)
    best[:edge] = -np.inf
    best[n - edge:] = -np.inf
    return best, tilt


def _mr_disc_plates(ratio: WorkGrid, curve: SpineCurve, t_disc: float, p: DetectionParams, a_off: float = 0.0,
                    a_half: float = 6.0) -> tuple[Optional[float], Optional[float]]:
    """Curve rows (lower, upper) of the two cortical endplate lines bracketing the disc found near row
    ``t_disc``: consecutive dark lines 2-18 mm apart with no marrow between them. A Modic zone beside
    the disc is marrow-dark on T1 or bright on T2 but never as dark as cortex, so it is not taken."""
    s = ratio.spacing
    step = s / 2
    offs = np.arange(-22.0, 22.0 + 1e-6, step)
    tt = t_disc + offs / s
    ok = (tt >= 0) & (tt <= len(curve) - 1)
    if ok.sum() < 10:
        return None, None
    offs, tt = offs[ok], tt[ok]
    prof = _mr_column_profile(ratio, curve, tt, a_off, a_half)
    win = max(2, int(round(3.0 / step)))
    lines = []
    for k in range(1, len(prof) - 1):
        if prof[k] >= 0.85 or prof[k] > prof[k - 1] or prof[k] > prof[k + 1]:
            continue
        left = prof[max(0, k - win):k].max()
        right = prof[k + 1:k + 1 + win].max()
        if prof[k] < min(0.85 * min(left, right), p.mr_wall_dip * max(1.0, 0.5 * min(left, right))):
            lines.append(k)
    # group the lines into discs: lines closer than a vertebral body is high belong to one disc (a dark
    # cleft inside the nucleus makes a third line); the disc's endplates are its outermost lines. (The
    # disc's own signal is no guide: a nucleus averaged with the annulus can match marrow.)
    groups: list[list[int]] = []
    for k in lines:
        if groups and offs[k] - offs[groups[-1][-1]] <= p.mr_disc_max_mm:
            groups[-1].append(k)
        else:
            groups.append([k])
    best = None
    for g in groups:
        if len(g) < 2 or not 2.0 <= offs[g[-1]] - offs[g[0]] <= p.mr_disc_max_mm + 2.0:
            continue
        centre = 0.5 * (offs[g[0]] + offs[g[-1]])
        if best is None or abs(centre) < abs(best[0]):
            best = (centre, g[0], g[-1])
    if best is None:
        return None, None

    def refine(k: int) -> float:
        y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
        den = y0 - 2 * y1 + y2
        return offs[k] + (0.5 * (y0 - y2) / den * step if den > 1e-12 else 0.0)

    return t_disc + refine(best[1]) / s, t_disc + refine(best[2]) / s


def _mr_landmarks(ratio: WorkGrid, curve: SpineCurve, dev: np.ndarray, a_col: np.ndarray, lo_t: Optional[float],
                  hi_t: Optional[float], s: float, p: DetectionParams, *, inf_t: Optional[float] = None,
                  sup_t: Optional[float] = None, name: str = "L4", volume: Optional[Volume] = None,
                  companions: Sequence[Volume] = ()) -> Optional[Landmarks]:
    """Landmarks of the body between the discs at rows lo_t and hi_t (None at an end of the spine: the
    endplate there is searched one typical body height away). ``inf_t``/``sup_t``: rows of the
    endplate lines when already found beside the discs."""
    if lo_t is None and hi_t is None:
        return None
    typical = 30.0 / s
    n = dev.shape[0]

    def at(t: float) -> np.ndarray:
        return curve.to_lps(np.array(t), np.array(0.0), np.array(0.0))

    if hi_t is None:
        sup = _mr_far_endplate(ratio, curve, lo_t, +1, typical, p)
    else:
        sup = at(sup_t) if sup_t is not None else _mr_endplate(ratio, curve, hi_t, toward=-1, p=p)
    if lo_t is None:
        inf = _mr_far_endplate(ratio, curve, hi_t, -1, typical, p)
    else:
        inf = at(inf_t) if inf_t is not None else _mr_endplate(ratio, curve, lo_t, toward=+1, p=p)
    if sup is None or inf is None:
        return None
    t_mid = float(np.clip(((lo_t if lo_t is not None else hi_t - typical)
                           + (hi_t if hi_t is not None else lo_t + typical)) / 2, 0, n - 1))
    frame = curve.frame(t_mid)
    # the body's axis: perpendicular to its endplates, whose tilt is read from the cortical lines in
    # front of and behind the column's middle (the curve through the body centres may cross it obliquely)
    dirs = []
    for t_disc, which, t_mid_plate in ((hi_t, 0, sup_t), (lo_t, 1, inf_t)):
        if t_disc is None:
            continue
        pts = [] if t_mid_plate is None else [curve.to_lps(np.array(t_mid_plate), np.array(0.0), np.array(0.0))]
        for a_off in (-p.mr_endplate_tilt_offset_mm, p.mr_endplate_tilt_offset_mm):
            t_pl = _mr_disc_plates(ratio, curve, t_disc, p, a_off=a_off, a_half=4.0)[which]
            if t_pl is not None:
                pts.append(curve.to_lps(np.array(t_pl), np.array(a_off), np.array(0.0)))
        if len(pts) >= 2:
            arr = np.asarray(pts)
            centred = arr - arr.mean(axis=0)
            direction = np.linalg.svd(centred)[2][0]
            ant = curve.frame(float(t_disc))[3]
            dirs.append(direction if direction @ ant >= 0 else -direction)
    axis_hint = None
    if dirs:
        d = np.mean([v / np.linalg.norm(v) for v in dirs], axis=0)
        tan = sup - inf
        ax = tan - d * (tan @ d) / (d @ d)
        if np.linalg.norm(ax) > 1e-6:
            ax /= np.linalg.norm(ax)
            # accept a tilt correction up to 25 degrees from the curve's line through the body
            if ax @ (tan / np.linalg.norm(tan)) > math.cos(math.radians(25.0)):
                axis_hint = ax
    # first estimates on the working grid (their pedicles seed the search in the acquired slices)
    lm = _mr_refine_body(ratio, sup, inf, frame[2], frame[3], p, name=name, axis_hint=axis_hint)
    if volume is None:
        return lm
    coarse = (None, None) if lm is None else (lm.pedicle_left_lps, lm.pedicle_right_lps)
    measured = _mr_measure_body(volume, sup, inf, frame[2], frame[3], p, name=name, axis_hint=axis_hint,
                                coarse_pedicles=coarse, companions=companions)
    if measured is None:
        return lm
    if measured.pedicle_left_lps is None and lm is not None:
        measured = measured.model_copy(update={"pedicle_left_lps": lm.pedicle_left_lps,
                                               "pedicle_right_lps": lm.pedicle_right_lps})
    return measured


def _mr_far_endplate(ratio: WorkGrid, curve: SpineCurve, t_disc: float, toward: int, typical: float,
                     p: DetectionParams) -> Optional[np.ndarray]:
    """The endplate at the far end of a body whose other disc is outside the search (end of the column):
    the first cortical line found beyond 60% of a typical body height."""
    s = ratio.spacing
    start = t_disc + toward * 0.6 * typical
    if not 0 <= start <= len(curve) - 1:
        return None
    prof_pts = np.arange(0.0, 0.8 * typical * s + 1e-6, s / 2)
    tt = start + toward * prof_pts / s
    if tt.min() < 0 or tt.max() > len(curve) - 1:
        return None
    prof = _mr_column_profile(ratio, curve, tt)
    k = _first_dip(prof, p.mr_wall_dip)
    if k is None:
        return None
    return curve.to_lps(np.array(start + toward * k * (s / 2) / s), np.array(0.0), np.array(0.0))


def _mr_column_profile(ratio: WorkGrid, curve: SpineCurve, tt: np.ndarray, a_off: float = 0.0,
                       a_half: float = 6.0) -> np.ndarray:
    """Mean ratio along curve rows ``tt`` over a strip of the column (AP ``a_off`` +- ``a_half`` mm,
    lateral +-3 mm)."""
    s = ratio.spacing
    a = np.arange(a_off - a_half, a_off + a_half + 1e-6, s)
    xs = np.arange(-3.0, 3.0 + 1e-6, s)
    prof = np.zeros(len(tt))
    for x in xs:
        prof += ratio.sample(curve.to_lps(tt[:, None], a[None, :], x)).mean(axis=1)
    return prof / len(xs)


def _first_dip(prof: np.ndarray, level: float, window: int = 4) -> Optional[float]:
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


def _mr_endplate(ratio: WorkGrid, curve: SpineCurve, t_disc: float, toward: int, p: DetectionParams
                 ) -> Optional[np.ndarray]:
    """The endplate next to the disc at row ``t_disc``: the darkest line (the cortical endplate, dark on
    every sequence) within 14 mm from the disc toward the body, on the column's middle; without a
    clear cortical line, where the signal turns into marrow."""
    s = ratio.spacing
    steps = np.arange(0.0, 14.0 + 1e-6, s / 2)
    tt = t_disc + toward * steps / s
    if tt.min() < 0 or tt.max() > len(curve) - 1:
        return None
    prof = _mr_column_profile(ratio, curve, tt)
    k = int(np.argmin(prof))
    disc_level = float(np.median(prof[: max(2, int(round(2.0 / (s / 2))))]))
    body_level = float(prof[k:].max()) if k < len(prof) else 1.0
    if prof[k] < p.mr_wall_dip and prof[k] < 0.85 * min(disc_level, body_level):
        pos = float(steps[k])
        if 0 < k < len(prof) - 1:
            y0, y1, y2 = prof[k - 1], prof[k], prof[k + 1]
            den = y0 - 2 * y1 + y2
            if den > 1e-12:
                pos += 0.5 * (y0 - y2) / den * (s / 2)
    else:
        # no cortical line: halfway between the disc signal and the marrow signal
        half = 0.5 * (disc_level + 1.0)
        cross = np.flatnonzero((prof - half) * np.sign(1.0 - disc_level) >= 0)
        if cross.size == 0 or abs(1.0 - disc_level) < p.mr_marrow_tol / 2:
            return None
        pos = float(steps[cross[0]])
    return curve.to_lps(np.array(t_disc + toward * pos / s), np.array(0.0), np.array(0.0))


def _mr_refine_body(ratio: WorkGrid, sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray,
                    anterior_hint: np.ndarray, p: DetectionParams, name: str = "L4",
                    axis_hint: Optional[np.ndarray] = None) -> Optional[Landmarks]:
    """MRI walls at the cortical lines on the mid-height line, centre, endplates on the AP middle, pedicles.
    ``axis_hint``: the body's axis when known from the endplates' tilt (else the line sup - inf)."""
    axis = sup - inf
    if axis_hint is not None:
        axis = axis_hint * float(axis @ axis_hint)
    height = float(np.linalg.norm(axis))
    if height < 5:
        return None
    axis /= height
    lat = lateral - axis * (lateral @ axis)
    lat /= np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap @ anterior_hint < 0:
        ap = -ap
    mid = 0.5 * (sup + inf)
    step = ratio.spacing / 2
    pos = np.arange(0.0, 45.0 + 1e-6, step)
    hw = (p.slab_half_width_mm, min(3.0, 0.15 * height))

    def wall(direction: np.ndarray, across: tuple[np.ndarray, np.ndarray], widths: tuple[float, float],
             start: float) -> Optional[float]:
        """The cortical line: the first dip on each of a few parallel lines, then their median (a line
        through the basivertebral veins, bright on T2, or a missed dip does not move the result)."""
        found = []
        for o1 in np.linspace(-widths[0], widths[0], 5):
            for o2 in np.linspace(-widths[1], widths[1], 3):
                origin = mid_pt + o1 * across[0] + o2 * across[1]
                prof = ratio.sample(origin[None, :] + pos[:, None] * direction[None, :])
                k = _first_dip(prof[pos >= start], p.mr_wall_dip)
                if k is not None:
                    found.append(start + k * step)
        if len(found) < 4:
            return None
        return float(np.median(found))

    mid_pt = mid
    a_front = wall(ap, (lat, axis), hw, 3.0)
    a_back = wall(-ap, (lat, axis), hw, 3.0)
    if a_front is None or a_back is None:
        return None
    post = mid - a_back * ap
    ant = mid + a_front * ap
    center = 0.5 * (post + ant)
    mid_pt = center
    # left and right edges where the signal falls fastest (sagittal slices are thick across: no sharp line)
    hw_lr = (min(4.0, 0.2 * (a_front + a_back)), min(3.0, 0.15 * height))

    def side_edge(direction: np.ndarray) -> Optional[float]:
        """Where the marrow ends sideways (leaves the marrow band for good), halfway through the blur."""
        prof = _line_profile(ratio, center, direction, (ap, axis), pos, hw_lr, 0.0)
        out = np.abs(prof - 1.0) >= p.mr_marrow_tol
        need = max(1, int(round(3.0 / step)))
        for k in np.flatnonzero((pos >= 8.0) & (pos <= 40.0)):
            if out[k:k + need].all() and k + need <= len(prof):
                return float(pos[k]) - step / 2
        return None

    left = side_edge(lat)
    right = side_edge(-lat)
    # a genuine sideways offset moves both edges the same amount; very unequal edges (the sacral alae,
    # a neighbouring structure of marrow-like signal) leave the midline as it is
    if (left is not None and right is not None and max(left, right) < 38.0
            and abs(left - right) <= 2 * p.mr_max_midline_correction_mm):
        shift = 0.5 * (left - right) * lat
        post, ant, center, sup, inf = (v + shift for v in (post, ant, center, sup, inf))
    sup_c = center + ((sup - center) @ axis) * axis
    inf_c = center + ((inf - center) @ axis) * axis
    ped_l, ped_r = (_mr_pedicle(ratio, post, axis, ap, lat, height, side, name, p) for side in (+1, -1))
    if name == "S1" and not _mirror_images(ped_l, ped_r, post, axis, ap, lat, 3.0):
        # no pair of separate pedicles: they merge into the sacral alae
        ped_l, ped_r = (_mr_sacral_pedicle(ratio, post, axis, ap, lat, height, side, p) for side in (+1, -1))
    ped_l, ped_r = _symmetric_pedicles(ped_l, ped_r, post, axis, ap, lat, p)
    return Landmarks(body_center_lps=_pt(center), superior_endplate_lps=_pt(sup_c), inferior_endplate_lps=_pt(inf_c),
                     posterior_wall_lps=_pt(post), anterior_wall_lps=_pt(ant),
                     pedicle_left_lps=None if ped_l is None else _pt(ped_l),
                     pedicle_right_lps=None if ped_r is None else _pt(ped_r))


def _mr_pedicle(ratio: WorkGrid, post: np.ndarray, axis: np.ndarray, ap: np.ndarray, lat: np.ndarray,
                height: float, side: int, name: str, p: DetectionParams) -> Optional[np.ndarray]:
    """MRI pedicle centre on one side (+1 left, -1 right).

    In a coronal section (across, cranio-caudal) behind the posterior wall the pedicle is an oval of
    marrow signal inside its dark cortex, lateral to the canal and surrounded by fat, fluid or muscle.
    In each section from ``pedicle_depth_mm`` the marrow blob nearest the expected place is taken; in
    front it joins the body, behind it the lamina and transverse process, so it is smallest at the
    isthmus. The centre is the blob's innermost point (furthest from its edge), which the root of the
    transverse process does not pull sideways."""
    from planner.settings import PlanningSettings, level_setting

    defaults = PlanningSettings()
    # where to look first: beside a typical canal, half the level's pedicle-width placeholder further out
    # (domain.md 5.1, 5.2 placeholders); the blob found in the image decides the position
    half_w = 0.5 * level_setting(defaults.pedicle_width_mm, name) / max(
        0.5, math.cos(math.radians(level_setting(defaults.pedicle_transverse_angle_deg, name))))
    s = ratio.spacing
    step = s / 2
    hs = np.arange(-0.5 * height, 0.7 * height + 1e-6, step)
    xs = np.arange(0.0, p.pedicle_lateral_mm[1] + 1e-6, step)
    expect = np.array([0.1 * height, p.mr_canal_half_width_mm + half_w])  # (height, lateral)
    found = []
    for d in np.arange(p.pedicle_depth_mm[0], p.pedicle_depth_mm[1] + 1e-6, 1.0):
        o = post - d * ap
        pts = o[None, None, :] + hs[:, None, None] * axis[None, None, :] + side * xs[None, :, None] * lat[None, None, :]
        band = np.abs(ratio.sample(pts) - 1.0) < p.mr_marrow_tol
        band[:, xs < p.pedicle_lateral_mm[0]] = False
        band = ndimage.binary_opening(band, structure=np.ones((3, 3), bool))
        lab, n = ndimage.label(band)
        if n == 0:
            continue
        best = None
        for comp in range(1, n + 1):
            m = lab == comp
            area = float(m.sum()) * step * step
            if not 15.0 <= area <= 700.0:
                continue
            dist = ndimage.distance_transform_edt(m)
            iy, ix = np.unravel_index(int(np.argmax(dist)), dist.shape)
            where = np.array([hs[iy], xs[ix]])
            gap = float(np.linalg.norm((where - expect) / np.array([0.3 * height, 10.0])))
            if gap < 1.5 and (best is None or gap < best[0]):
                best = (gap, area, hs[iy], xs[ix])
        if best is not None:
            found.append((best[1], d, best[2], best[3]))
    if not found:
        return None
    # the isthmus: the middle of the depths where the pedicle stands alone (joined to neither the body
    # in front nor the arch behind), among those with the smallest sections
    # follow the pedicle from section to section (its centre moves little); the longest such track is
    # the pedicle, from where it leaves the body to where it joins the arch: its middle is the isthmus
    tracks: list[list[tuple[float, float, float, float]]] = []
    for f in found:
        for tr in tracks:
            last = tr[-1]
            if f[1] - last[1] <= 2.5 and abs(f[2] - last[2]) <= 3.0 and abs(f[3] - last[3]) <= 3.0:
                tr.append(f)
                break
        else:
            tracks.append([f])
    track = max(tracks, key=len)
    mid = track[len(track) // 3: len(track) - len(track) // 3] or track
    d = float(np.median([f[1] for f in track]))
    h = float(np.median([f[2] for f in mid]))
    x = float(np.median([f[3] for f in mid]))
    return post - d * ap + h * axis + side * x * lat


def _mirror_images(ped_l: Optional[np.ndarray], ped_r: Optional[np.ndarray], post: np.ndarray, axis: np.ndarray,
                   ap: np.ndarray, lat: np.ndarray, tol_mm: float) -> bool:
    """True if both pedicles were found and are mirror images within ``tol_mm`` in each direction."""
    if ped_l is None or ped_r is None:
        return False
    a, b = ped_l - post, ped_r - post
    return (abs(abs(a @ lat) - abs(b @ lat)) <= tol_mm and abs(a @ ap - b @ ap) <= tol_mm
            and abs(a @ axis - b @ axis) <= tol_mm)


def _symmetric_pedicles(ped_l: Optional[np.ndarray], ped_r: Optional[np.ndarray], post: np.ndarray,
                        axis: np.ndarray, ap: np.ndarray, lat: np.ndarray, p: DetectionParams
                        ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Thick sagittal slices leave each pedicle's position uncertain by a few millimetres; the two are
    nearly mirror images, so their depth and height are averaged, and so are their distances from the
    midline when these differ by more than ``mr_pedicle_asymmetry_mm``."""
    if ped_l is None or ped_r is None:
        return ped_l, ped_r
    loc = []
    for q in (ped_l, ped_r):
        r = q - post
        loc.append(np.array([abs(r @ lat), r @ ap, r @ axis]))
    mean = 0.5 * (loc[0] + loc[1])
    out = []
    for side, here in zip((+1, -1), loc):
        x = mean[0] if abs(loc[0][0] - loc[1][0]) > p.mr_pedicle_asymmetry_mm else here[0]
        out.append(post + side * x * lat + mean[1] * ap + mean[2] * axis)
    return out[0], out[1]


def _mr_sacral_pedicle(ratio: WorkGrid, post: np.ndarray, axis: np.ndarray, ap: np.ndarray, lat: np.ndarray,
                       height: float, side: int, p: DetectionParams) -> Optional[np.ndarray]:
    """S1: the pedicles merge into the sacral alae and stand out as no separate bone on MRI. The centre is
    placed beside the measured edge of the sacral canal, half the S1 pedicle-width placeholder further
    out (domain.md 5.2), ``mr_sacral_pedicle_depth_mm`` behind the posterior wall at mid-height.
    A placement from the anatomy, to be checked (and dragged) by the physician."""
    from planner.settings import PlanningSettings, level_setting

    defaults = PlanningSettings()
    half_w = 0.5 * level_setting(defaults.pedicle_width_mm, "S1") / max(
        0.5, math.cos(math.radians(level_setting(defaults.pedicle_transverse_angle_deg, "S1"))))
    s = ratio.spacing
    step = s / 2
    xs = np.arange(0.0, 40.0 + 1e-6, step)
    edges = []
    for d in (4.0, 6.0, 8.0):
        for h in (-0.15 * height, 0.0, 0.15 * height):
            o = post - d * ap + h * axis
            prof = ratio.sample(o[None, :] + side * xs[:, None] * lat[None, :])
            band = np.abs(prof - 1.0) < p.mr_marrow_tol
            need = max(1, int(round(3.0 / step)))
            for k in np.flatnonzero(xs >= 4.0):
                if k + need <= len(xs) and band[k:k + need].all():
                    edges.append(float(xs[k]))
                    break
    if len(edges) < 3:
        return None
    x = float(np.median(edges)) + half_w
    return post - p.mr_sacral_pedicle_depth_mm * ap + side * x * lat


# ------------------------------------------------------------------------------------ MRI: native slices
class _NativeSlices:
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


def _mirror_midline(ns: _NativeSlices, a: np.ndarray, h: np.ndarray, search_mm: float = 5.0,
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


def _cortex_line(prof: np.ndarray, pos: np.ndarray, p: DetectionParams, dip_index: Optional[float] = None
                 ) -> Optional[tuple[float, float, Optional[float]]]:
    """The first cortical line along a profile that starts in marrow (positions ``pos`` increasing
    outward, ratio to marrow): (inner edge, centre, outer edge) in mm. The edges are where the signal is
    halfway between the line's minimum and the level on that side (sub-sample, linear); the outer edge
    is None when the tissue beyond is not brighter than the line (a dark ligament or annulus).
    ``dip_index``: the line's (fractional) sample index when already known."""
    k = _first_dip(prof, p.mr_wall_dip) if dip_index is None else dip_index
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


def _dip_near(prof: np.ndarray, pos: np.ndarray, expected: float, tol_mm: float, level: float) -> Optional[float]:
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


def _surface(edges: tuple[float, float, Optional[float]], kind: str) -> float:
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


def _mr_measure_body(volume: Volume, sup: np.ndarray, inf: np.ndarray, lateral: np.ndarray,
                     anterior_hint: np.ndarray, p: DetectionParams, name: str = "L4",
                     axis_hint: Optional[np.ndarray] = None,
                     coarse_pedicles: tuple[Optional[np.ndarray], Optional[np.ndarray]] = (None, None),
                     companions: Sequence[Volume] = ()) -> Optional[Landmarks]:
    """MRI body landmarks measured in the acquired slices: the midsagittal plane from the vertebra's mirror
    symmetry, walls and endplates at the outer edge of their cortical lines (sub-sample edges), the body
    centre between them; ``sup``/``inf``: first estimates of the endplate centres (from the discs)."""
    axis = sup - inf
    if axis_hint is not None:
        axis = axis_hint * float(axis @ axis_hint)
    height = float(np.linalg.norm(axis))
    if height < 5:
        return None
    axis = axis / height
    lat = lateral - axis * (lateral @ axis)
    lat /= np.linalg.norm(lat)
    ap = np.cross(lat, axis)
    if ap @ anterior_hint < 0:
        ap = -ap
    mid = 0.5 * (sup + inf)
    box = np.stack(np.meshgrid(np.linspace(-6, 6, 5), np.linspace(-6, 6, 5), np.linspace(-0.2, 0.2, 5) * height,
                               indexing="ij"), -1).reshape(-1, 3)
    marrow = float(np.median(volume.sample(mid + box[:, :1] * lat + box[:, 1:2] * ap + box[:, 2:] * axis)))
    if not marrow > 0:
        return None
    ns = _NativeSlices(volume, mid, lat, ap, axis, marrow)
    step = 0.25
    pos = np.arange(0.0, 45.0 + 1e-6, step)

    def walls(x0: float, h0: float) -> Optional[tuple[float, float]]:
        out = []
        for sgn in (+1, -1):
            found = []
            for dh in np.linspace(-0.15, 0.15, 5) * height:
                for dx in (-1.5, 0.0, 1.5):
                    prof = ns.sample(x0 + dx, sgn * pos, h0 + dh)
                    e = _cortex_line(prof[pos >= 3.0], pos[pos >= 3.0], p)
                    if e is not None:
                        found.append(_surface(e, "wall"))
            if len(found) < 5:
                return None
            out.append(float(np.median(found)))
        return out[0], out[1]

    w = walls(0.0, 0.0)
    if w is None:
        return None
    a_front, a_back = w
    x0 = 0.0
    if ns.sagittal:
        c = _mirror_midline(ns, np.arange(-a_back - 25.0, a_front + 3.0 + 1e-6, 1.5),
                            np.arange(-0.4 * height, 0.4 * height + 1e-6, 1.5))
        if c is not None and abs(c) < 4.5:
            x0 = c
    # endplates: the cortical line nearest the first estimate, on lines parallel to the axis across the middle
    # of the body's depth; a straight line through them, read at the AP middle
    a_mid = 0.5 * (a_front - a_back)
    plates = []
    for sgn, ref in ((+1, sup), (-1, inf)):
        expected = float((ref - mid) @ axis) * sgn
        pts = []
        for da in np.linspace(-0.25, 0.25, 7) * (a_front + a_back):
            for dx in (-1.5, 0.0, 1.5):
                prof = ns.sample(x0 + dx, a_mid + da, sgn * pos)
                k = _dip_near(prof, pos, expected, 4.0, p.mr_wall_dip)
                if k is None:
                    continue
                e = _cortex_line(prof, pos, p, dip_index=k)
                if e is not None:
                    pts.append((da, sgn * _surface(e, "endplate")))
        if len(pts) < 6:
            return None
        arr = np.asarray(pts)
        # robust line fit h = c0 + c1 * da (median of residuals clipping)
        coef = np.polyfit(arr[:, 0], arr[:, 1], 1)
        res = arr[:, 1] - np.polyval(coef, arr[:, 0])
        keep = np.abs(res) <= max(0.75, 2.5 * float(np.median(np.abs(res))))
        if keep.sum() >= 4:
            coef = np.polyfit(arr[keep, 0], arr[keep, 1], 1)
        plates.append(coef)
    a_c = a_mid
    for _ in range(2):
        h_sup, h_inf = (float(np.polyval(c, a_c - a_mid)) for c in plates)
        h_c = 0.5 * (h_sup + h_inf)
        w = walls(x0, h_c)
        if w is not None:
            a_front, a_back = w
        a_c = 0.5 * (a_front - a_back)
    h_sup, h_inf = (float(np.polyval(c, a_c - a_mid)) for c in plates)
    h_c = 0.5 * (h_sup + h_inf)
    centre = ns.lps(x0, a_c, h_c)
    # pedicles, in a frame on the posterior wall's midline point
    nsp = _NativeSlices(volume, ns.lps(x0, -a_back, h_c), lat, ap, axis, marrow)
    d_line = _posterior_wall_line(nsp, height, p)
    found = {}
    if name == "S1":
        # S1: the pedicles merge into the sacral alae and show as no separate bone; they are placed beside
        # the measured sacral canal, half the S1 pedicle width (domain.md 5.2, a placeholder) further out
        # along the S1 transverse angle, at mid-height, ``mr_sacral_pedicle_depth_mm`` behind the wall line
        # (_detect_mr moves them to the depth measured at L5 when L5's pedicles were found)
        from planner.settings import PlanningSettings, level_setting

        half_canal = _mr_sacral_canal_half_width(nsp, height, d_line, p)
        if half_canal is not None:
            defaults = PlanningSettings()
            half_w = 0.5 * level_setting(defaults.pedicle_width_mm, "S1") / max(
                0.5, math.cos(math.radians(level_setting(defaults.pedicle_transverse_angle_deg, "S1"))))
            for side in (+1, -1):
                found[side] = (side * (half_canal + half_w), d_line + p.mr_sacral_pedicle_depth_mm, 0.0, {})
        coarse_pedicles = (None, None)
    for side, coarse in zip((+1, -1), coarse_pedicles):
        if name == "S1":
            break
        r = _mr_pedicle_native(nsp, side, height, None if coarse is None else np.asarray(coarse, float), d_line,
                               name, p)
        if r is None:
            continue
        # an axial series through the pedicle measures its sideways place in-plane (finer than thick sagittal
        # slices can)
        for ax in companions:
            if not ax.contains(nsp.lps(r[0], -r[1], r[2]), margin_voxels=-0.5):
                continue
            x_ax = _axial_pedicle_x(ax, nsp.origin, lat, ap, axis, side, r[0], r[1], r[2], r[3]["half_height"], p)
            if x_ax is not None and abs(x_ax - r[0]) <= 3.0:
                r = (x_ax, r[1], r[2], {**r[3], "axial": True})
                break
        found[side] = r
    peds: dict[int, Optional[np.ndarray]] = {+1: None, -1: None}
    if len(found) == 2:
        (ul, dl, hl, _), (ur, dr, hr, _) = found[+1], found[-1]
        if abs(abs(ul) - abs(ur)) <= 4.0 and abs(dl - dr) <= 4.0 and abs(hl - hr) <= 3.0:
            u, d, hh = 0.5 * (abs(ul) + abs(ur)), 0.5 * (dl + dr), 0.5 * (hl + hr)
            peds = {s: nsp.lps(s * u, -d, hh) for s in (+1, -1)}
        else:
            peds = {s: nsp.lps(found[s][0], -found[s][1], found[s][2]) for s in (+1, -1)}
    elif len(found) == 1:
        s, (u, d, hh, _) = next(iter(found.items()))
        peds = {s: nsp.lps(u, -d, hh), -s: nsp.lps(-u, -d, hh)}
    return Landmarks(body_center_lps=_pt(centre), superior_endplate_lps=_pt(ns.lps(x0, a_c, h_sup)),
                     inferior_endplate_lps=_pt(ns.lps(x0, a_c, h_inf)),
                     posterior_wall_lps=_pt(ns.lps(x0, -a_back, h_c)),
                     anterior_wall_lps=_pt(ns.lps(x0, a_front, h_c)),
                     pedicle_left_lps=None if peds[+1] is None else _pt(peds[+1]),
                     pedicle_right_lps=None if peds[-1] is None else _pt(peds[-1]))


def _marrow_run(prof: np.ndarray, pos: np.ndarray, pos0: float, lo: float = DetectionParams.mr_run_level,
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


def _parabola_apex(xs: np.ndarray, ys: np.ndarray) -> float:
    """x of the largest of ``ys`` refined with a parabola through it and its neighbours (xs sorted)."""
    i = int(np.argmax(ys))
    if 0 < i < len(ys) - 1:
        y0, y1, y2 = ys[i - 1], ys[i], ys[i + 1]
        den = y0 - 2 * y1 + y2
        if den < -1e-9:
            off = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
            return float(xs[i] + off * ((xs[i + 1] - xs[i]) if off >= 0 else (xs[i] - xs[i - 1])))
    return float(xs[i])


def _posterior_wall_line(ns: _NativeSlices, height: float, p: DetectionParams) -> float:
    """Depth (mm behind ``ns.origin``, the posterior wall on the midline) of the most posterior point of the
    body's posterior surface between the pedicles (|x| <= ``mr_wall_line_half_span_mm``): the line from
    which the pedicles start (the midline wall itself may be recessed, as in a kidney-shaped body)."""
    pos = np.arange(0.0, 30.0, 0.25)
    found = []
    span = p.mr_wall_line_half_span_mm
    for x in np.linspace(-span, span, 8):
        here = []
        for dh in np.linspace(-0.12, 0.12, 5) * height:
            prof = ns.sample(x, 12.0 - pos, dh)
            e = _cortex_line(prof[pos >= 3.0], pos[pos >= 3.0], p)
            if e is not None:
                here.append(_surface(e, "wall") - 12.0)
        if len(here) >= 3:
            found.append(float(np.median(here)))
    if not found:
        return 0.0
    return float(np.clip(max(found), 0.0, 4.0))


def _mr_pedicle_native(ns: _NativeSlices, side: int, height: float, coarse: Optional[np.ndarray], d_line: float,
                       name: str, p: DetectionParams) -> Optional[tuple[float, float, float, dict]]:
    """MRI pedicle centre on one side (+1 left, -1 right) in the acquired sagittal slices, as (x, depth
    behind the wall, h) in the frame of ``ns`` (origin: the posterior wall on the midline).

    In each parasagittal slice through the pedicle it is a bar of marrow between the superior and
    inferior vertebral notches, running from the body to the posterior arch. Its height is the
    centre of the bar's top and bottom edges; its lateral place, at each depth, the apex of the bar
    heights over neighbouring slices (a parabola through the tallest and its neighbours: the slice
    through the pedicle's axis cuts the widest chord); its depth (the isthmus), the middle of the
    bar from the posterior wall line to where it joins the arch."""
    from planner.settings import PlanningSettings, level_setting

    if not ns.sagittal:
        return None
    if coarse is not None:
        x_c, a_c, h_c = ns.local(coarse)
        d_c = -a_c
    else:
        defaults = PlanningSettings()
        half_w = 0.5 * level_setting(defaults.pedicle_width_mm, name) / max(
            0.5, math.cos(math.radians(level_setting(defaults.pedicle_transverse_angle_deg, name))))
        x_c, d_c, h_c = side * (p.mr_canal_half_width_mm + half_w), d_line + 6.0, 0.1 * height
    hs = np.arange(h_c - 16.0, h_c + 16.0 + 1e-6, 0.25)
    ds = np.arange(d_line - 2.0, d_line + 18.0 + 1e-6, 0.5)
    ks = [k for k in range(ns.nk) if 3.0 <= side * float(ns.x_of(k, -d_c, h_c)) <= 40.0]
    if len(ks) < 2:
        return None
    runs = np.full((len(ks), len(ds), 2), np.nan)
    xk = np.array([[float(ns.x_of(k, -d, h_c)) for d in ds] for k in ks])
    dd_, hh_ = np.meshgrid(ds, hs, indexing="ij")
    for i, k in enumerate(ks):
        profs = ndimage.gaussian_filter1d(ns.in_slice(k, -dd_, hh_), 1.0, axis=1)
        for j in range(len(ds)):
            e = _marrow_run(profs[j], hs, h_c, lo=p.mr_run_level)
            if e is not None:
                runs[i, j] = e
    H = runs[..., 1] - runs[..., 0]
    C = runs.mean(axis=-1)
    near = np.isfinite(H) & (np.abs(C - h_c) < 3.5) & (H > 3.0) & (H < 0.85 * height)
    core = (ds >= d_line + p.mr_pedicle_core_mm[0]) & (ds <= d_line + p.mr_pedicle_core_mm[1])
    if not near[:, core].any():
        return None
    h_ref = np.array([np.median(H[i, core][near[i, core]]) if near[i, core].any() else np.inf
                      for i in range(len(ks))])
    valid = near & (H <= p.mr_pedicle_bar_jump * h_ref[:, None])
    # the pedicle's height: centre of its bar in the slices with the tallest bars
    tall = np.array([np.median(H[i, core][valid[i, core]]) if valid[i, core].sum() >= 3 else 0.0
                     for i in range(len(ks))])
    if tall.max() <= 0:
        return None
    main = tall >= 0.8 * tall.max()
    h_i = float(np.median(C[main][:, core][valid[main][:, core]]))
    half_h = 0.5 * float(np.median(H[main][:, core][valid[main][:, core]]))
    # lateral place per depth: apex of the bar heights over the slices
    us, dd = [], []
    for j in range(len(ds)):
        col = np.where(valid[:, j] & (np.abs(C[:, j] - h_i) < 2.5), np.maximum(runs[:, j, 1] - h_i, 0.0), 0.0)
        if col.max() <= 0:
            continue
        order = np.argsort(xk[:, j])
        us.append(_parabola_apex(xk[order, j], col[order]))
        dd.append(ds[j])
    if len(us) < 4:
        return None
    us, dd = np.asarray(us), np.asarray(dd)
    # where the pedicle joins the arch: the end of the bar in the slice through its axis
    j9 = int(np.argmin(np.abs(ds - (d_line + p.mr_pedicle_core_mm[1]))))
    u9 = float(np.median(us[np.abs(dd - ds[j9]) <= 2.0])) if np.any(np.abs(dd - ds[j9]) <= 2.0) else x_c
    im = int(np.argmin(np.abs(xk[:, j9] - u9)))
    j = j9
    if not valid[im, j]:
        return None
    while j + 1 < len(ds) and valid[im, j + 1]:
        j += 1
    d_b = float(ds[j])
    if not 7.0 <= d_b - d_line <= 20.0:
        return None
    d_i = 0.5 * (d_line + d_b)
    sel = (dd >= d_line + 1.0) & (dd <= d_b - 1.0)
    # the apex follows the pedicle from slice to slice; a jump to a transverse process beside it (where the
    # pedicle's own bar is lost in a slice) is left out
    incore = (dd >= d_line + p.mr_pedicle_core_mm[0]) & (dd <= d_line + p.mr_pedicle_core_mm[1])
    u_med = float(np.median(us[incore])) if incore.any() else float(np.median(us))
    sel &= np.abs(us - u_med) <= 2.5
    if sel.sum() >= 4:
        coef = np.polyfit(dd[sel], us[sel], 1)
        res = us[sel] - np.polyval(coef, dd[sel])
        keep = np.abs(res) <= max(0.5, 2.5 * float(np.median(np.abs(res))))
        if keep.sum() >= 4:
            coef = np.polyfit(dd[sel][keep], us[sel][keep], 1)
        u_i = float(np.polyval(coef, d_i))
    else:
        u_i = float(np.median(us))
    return u_i, d_i, h_i, {"d_b": d_b, "half_height": half_h}


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


def _axial_pedicle_x(axial: Volume, origin: np.ndarray, lat: np.ndarray, ap: np.ndarray, axis: np.ndarray, side: int,
                     x: float, d: float, h: float, half_h: float, p: DetectionParams) -> Optional[float]:
    """The sideways place of a pedicle centre measured on an axial series that covers it: in each axial
    slice through the pedicle's upper part (``mr_axial_pedicle_band`` of its half-height above its centre,
    clear of the transverse process, which arises lower down), the middle of the pedicle's marrow between its
    medial cortex (the canal) and its lateral cortex, at depths around the centre; a straight line through
    these middles over depth (the pedicle runs obliquely) read at the centre's depth. Coordinates: ``x``
    toward the left, ``d`` mm behind ``origin`` (the posterior wall's midline point), ``h`` cranial.
    None when no slice qualifies or the pedicle is not found in it."""
    m = axial.ijk_to_lps
    normal = np.cross(m[:3, 0], m[:3, 1])
    normal /= np.linalg.norm(normal)
    n_ax = float(normal @ axis)
    if abs(n_ax) < 0.8 or half_h < 2.0:
        return None

    def h_on(k: float, xx, aa):
        plane = float(normal @ (m[:3, 3] + k * m[:3, 2])) - float(normal @ origin)
        return (plane - np.asarray(xx) * float(normal @ lat) - np.asarray(aa) * float(normal @ ap)) / n_ax

    def lps(xx, aa, hh):
        xx, aa, hh = np.broadcast_arrays(np.asarray(xx, float), np.asarray(aa, float), np.asarray(hh, float))
        return origin + xx[..., None] * lat + aa[..., None] * ap + hh[..., None] * axis

    xs = np.arange(x - 14.0, x + 14.0 + 1e-6, 0.25)
    centres, depths = [], []
    for k in range(axial.array.shape[0]):
        hk = float(h_on(k, x, -d))
        if not h + p.mr_axial_pedicle_band[0] * half_h <= hk <= h + p.mr_axial_pedicle_band[1] * half_h:
            continue
        # the body's marrow in the same slice (this series' own signal level)
        bx, ba = np.meshgrid(np.arange(-6.0, 6.0 + 1e-6, 1.5), np.arange(6.0, 16.0 + 1e-6, 1.5), indexing="ij")
        marrow = float(np.median(axial.sample(lps(bx, ba, h_on(k, bx, ba)))))
        if not marrow > 0:
            continue
        for dd in np.arange(d - 3.0, d + 3.0 + 1e-6, 0.5):
            prof = axial.sample(lps(xs, -dd, h_on(k, xs, -dd))) / marrow
            prof = ndimage.gaussian_filter1d(prof, 1.0)
            e = _marrow_run(prof, xs, x, lo=p.mr_run_level, max_gap_mm=1.5)
            if e is None or not 3.0 <= e[1] - e[0] <= 25.0:
                continue
            centres.append(0.5 * (e[0] + e[1]))
            depths.append(dd)
    if len(centres) < 5:
        return None
    c, dd = np.asarray(centres), np.asarray(depths)
    med = float(np.median(c))
    keep = np.abs(c - med) <= 2.5
    if keep.sum() < 5:
        return None
    coef = np.polyfit(dd[keep], c[keep], 1)
    if abs(coef[0]) > 1.2:
        return med
    return float(np.polyval(coef, d))
