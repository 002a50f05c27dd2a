"""Fluoroscopy guidance: the plan drawn on AP and lateral C-arm images, and virtual projections.

Fitting the plan to a fluoroscopy image (:func:`fit_view`)
    The physician marks a few landmarks of the target vertebra on the image: on the AP view the left
    and right pedicle centres and the spinous process, on the lateral view the posterior and anterior
    wall (optionally the endplate centres and the body centre on either view). The matching 3D
    landmarks come from the plan's level (:class:`planner.plan.Landmarks`).

    Assumptions, stated for the user:

    * **Near-parallel projection around one vertebra.** The C-arm's cone is narrow over one vertebra
      (a few cm against a source distance near 1 m), so locally the image is a scaled orthographic
      projection of the vertebra. Magnification (and the detector pixel size) is absorbed in the
      fitted scale; the residual perspective error grows with the depth difference between the marked
      landmarks and the target and with their distance from the central ray (about 1-3% of that
      distance).
    * **Projection direction.** When the image's Patient Orientation names its plane (e.g. ("L", "F")
      for an AP, ("P", "F") for a lateral), the landmarks are projected onto the patient directions
      of its columns and rows: the beam runs along the patient axis, and a lordotic vertebra is seen
      as obliquely as on the C-arm image. Otherwise the view is taken to look along the vertebra's own
      axis (a true AP/lateral of that vertebra, the C-arm aligned to its endplates): AP along ``u``
      with image axes ``h`` = the patient's left (``-l``) and ``v`` = caudal (``-s``); lateral along
      ``l`` with ``h`` = posterior (``-u``) and ``v`` = caudal. The fit is a 2D similarity (scale,
      in-plane rotation, shift) from these coordinates to pixels; with four or more marks an affine
      fit also absorbs a small C-arm obliquity. A C-arm tilted out of the assumed plane cannot be seen
      from two marks: the target then shifts by its depth from the marks times the tangent of the tilt
      (about 0.4 mm per degree for a target 23 mm in front of the pedicles). A vertebra rotated about
      its axis (spinous process off the midline between the pedicles on AP) is reported, not
      corrected.
    * **Handedness** (vertebra basis only). A projection may be mirrored (PA instead of AP, a lateral
      seen from the other side). With three or more non-collinear marks the better of the plain and
      mirrored fits is chosen; otherwise the usual display is assumed (AP: patient's right on the
      viewer's left; lateral: anterior on the viewer's left; feet down) and the fit says so.

    The fit maps every LPS point near the vertebra to pixels, so the target zone (a circle, or an
    ellipse after an affine fit) and the instrument path are drawn as they should appear.

Virtual projections (:func:`virtual_projection`)
    A radiograph-like image of an MR or CT volume along the patient's AP (LPS y) or left-right
    (LPS x) axis: the mean of the attenuation (CT, ``HU + 1000``), the mean, or the maximum of the
    voxel values along the rays, on a grid aligned with LPS. The returned :class:`Projector` maps LPS
    points to pixels (parallel projection), so the plan is drawn with the same overlay code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from planner.plan import Level, Plan, Trajectory
from planner.trajectory import (
    PathError,
    VertebraFrame,
    is_ct,
    path_polyline,
    vertebra_frame,
)

#: Which 3D landmark each mark kind refers to.
MARK_LANDMARK = {
    "pedicle_left": "pedicle_left_lps",
    "pedicle_right": "pedicle_right_lps",
    "posterior_wall": "posterior_wall_lps",
    "anterior_wall": "anterior_wall_lps",
    "superior_endplate": "superior_endplate_lps",
    "inferior_endplate": "inferior_endplate_lps",
    "body_center": "body_center_lps",
}
AP_REQUIRED = ("pedicle_left", "pedicle_right")
LAT_REQUIRED = ("posterior_wall", "anterior_wall")
_LETTER = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "H": (0, 0, 1), "F": (0, 0, -1)}


@dataclass(frozen=True)
class FluoroParams:
    """Display hints of the fluoroscopy fit (technical)."""

    #: Warn when the spinous process lies this far off the midline between the pedicles on AP (mm).
    spinous_warn_mm: float = 3.0
    #: Warn when the fit's RMS residual exceeds this (mm at the vertebra).
    residual_warn_mm: float = 2.0
    #: Vertices of the zone outline.
    zone_vertices: int = 72


FLUORO_PARAMS = FluoroParams()


class FluoroFitError(ValueError):
    """The marks do not allow a fit; the message says which marks are missing."""


def view_basis(frame: VertebraFrame, view: str) -> np.ndarray:
    """2x3 matrix whose rows are the image-plane axes h and v (LPS unit vectors) of a view."""
    view = view.upper()
    if view == "AP":
        return np.vstack([-frame.l, -frame.s])
    if view in ("LAT", "LATERAL"):
        return np.vstack([-frame.u, -frame.s])
    raise ValueError(f"view must be 'AP' or 'LAT', not {view!r}")


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity (no reflection) src -> dst as a 2x3 matrix."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    # complex-number form: d = z * s + t
    zs = s0[:, 0] + 1j * s0[:, 1]
    zd = d0[:, 0] + 1j * d0[:, 1]
    den = float(np.sum(np.abs(zs) ** 2))
    if den < 1e-12:
        raise FluoroFitError("the marked landmarks coincide")
    z = complex(np.sum(np.conj(zs) * zd) / den)
    a, b = z.real, z.imag
    lin = np.array([[a, -b], [b, a]])
    return np.hstack([lin, (mu_d - lin @ mu_s)[:, None]])


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    A = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(A, dst, rcond=None)
    return sol.T


@dataclass
class ZoneEllipse:
    center_px: np.ndarray
    #: Semi-axes in pixels (major, minor) and the major axis angle from the column axis (deg).
    axes_px: tuple[float, float]
    angle_deg: float
    polygon_px: np.ndarray


@dataclass
class TrajectoryOverlay:
    """One trajectory as it should appear on the image."""

    trajectory_id: str
    side: str
    path_px: np.ndarray
    entry_px: np.ndarray
    bend_px: Optional[np.ndarray]
    target_px: np.ndarray
    zone: ZoneEllipse


@dataclass
class FluoroFit:
    """The fitted mapping from LPS (near one vertebra) to the pixels of one image."""

    view: str
    level_name: str
    method: str  # "similarity" or "affine"
    mirrored: bool
    #: 2x3 map from view coordinates (h, v in mm, relative to the body centre) to pixels (col, row).
    matrix: np.ndarray
    basis: np.ndarray
    origin_lps: np.ndarray
    residuals_px: dict[str, float] = field(default_factory=dict)
    spinous_offset_mm: Optional[float] = None
    warnings: list[str] = field(default_factory=list)
    #: "vertebra" (along the vertebra's axis), "patient" (along the axis the image orientation names)
    #: or "parallel" (a virtual projection).
    basis_kind: str = "vertebra"

    def view_coords(self, points_lps: Any) -> np.ndarray:
        p = np.asarray(points_lps, dtype=float)
        c = (p - self.origin_lps) @ self.basis.T
        if self.mirrored:
            c = c * np.array([-1.0, 1.0])
        return c

    def project(self, points_lps: Any) -> np.ndarray:
        """(..., 3) LPS -> (..., 2) pixels (col, row)."""
        c = self.view_coords(points_lps)
        return c @ self.matrix[:, :2].T + self.matrix[:, 2]

    @property
    def px_per_mm(self) -> float:
        """Mean scale at the vertebra (pixels per mm)."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def rms_px(self) -> float:
        return float(math.sqrt(np.mean(np.square(list(self.residuals_px.values()))))) if self.residuals_px else 0.0

    def zone_ellipse(self, center_lps: Any, radius_mm: float, n: int = FLUORO_PARAMS.zone_vertices) -> ZoneEllipse:
        """The projection of a sphere: a circle for a similarity, an ellipse for an affine fit."""
        lin = self.matrix[:, :2] @ np.diag([-1.0 if self.mirrored else 1.0, 1.0])
        u_, sv, _ = np.linalg.svd(lin)
        center = self.project(center_lps)
        axes = (float(sv[0] * radius_mm), float(sv[1] * radius_mm))
        ang = math.degrees(math.atan2(u_[1, 0], u_[0, 0]))
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        # the image of the sphere's outline circle in the view plane
        h, v = np.cos(t) * radius_mm, np.sin(t) * radius_mm
        poly = center[None, :] + np.column_stack([h, v]) @ lin.T
        return ZoneEllipse(center, axes, ang, poly)

    def overlay(self, plan: Optional[Plan], trajectory: Trajectory) -> TrajectoryOverlay:
        poly = path_polyline(trajectory, plan)
        path_px = self.project(poly)
        return TrajectoryOverlay(
            trajectory.id, trajectory.side, path_px, self.project(trajectory.entry_lps),
            None if trajectory.bend_lps is None else self.project(trajectory.bend_lps),
            self.project(trajectory.target_lps),
            self.zone_ellipse(trajectory.target_lps, trajectory.params.zone_diameter_mm / 2.0))


def _orientation_vectors(orientation: Sequence[str]) -> Optional[list[np.ndarray]]:
    """Unit LPS vectors of the column and row directions named by DICOM Patient Orientation letters
    (combined letters for obliques), or None when there are not two named directions."""
    if not orientation or len(orientation) < 2:
        return None
    vecs = []
    for code in orientation[:2]:
        v = np.zeros(3)
        for ch in str(code).upper():
            if ch in _LETTER:
                v += np.array(_LETTER[ch], dtype=float)
        if not np.any(v):
            return None
        vecs.append(v / np.linalg.norm(v))
    return vecs


def _mirrored_from_orientation(orientation: Sequence[str], basis: np.ndarray) -> Optional[bool]:
    """Is the image mirrored relative to the view basis, by DICOM Patient Orientation (col, row dirs)?"""
    vecs = _orientation_vectors(orientation)
    if vecs is None:
        return None
    m = np.array([[vecs[0] @ basis[0], vecs[0] @ basis[1]], [vecs[1] @ basis[0], vecs[1] @ basis[1]]])
    det = float(np.linalg.det(m))
    if abs(det) < 0.25:
        return None  # the image plane is not this view's plane
    return det < 0


def orientation_basis(orientation: Sequence[str]) -> Optional[np.ndarray]:
    """2x3 basis (rows: LPS directions of increasing column and row) from DICOM Patient Orientation,
    or None when the letters do not name two orthogonal directions."""
    vecs = _orientation_vectors(orientation)
    if vecs is None:
        return None
    if abs(float(vecs[0] @ vecs[1])) > 1e-6:
        return None
    return np.vstack(vecs)


def fit_view(level: Level | VertebraFrame, marks_px: Mapping[str, Sequence[float]], view: Optional[str] = None, *,
             orientation: Sequence[str] = (), method: str = "auto", mirrored: Optional[bool] = None,
             basis: str = "auto", params: FluoroParams = FLUORO_PARAMS) -> FluoroFit:
    """Fit the mapping from a vertebra (its plan landmarks) to an image from marks ``kind -> (col, row)``.

    ``view`` defaults to "AP" when pedicles are marked and "LAT" when walls are. ``orientation``: the
    image's DICOM Patient Orientation (patient directions of increasing column and row, e.g.
    ("L", "F")). ``basis``: "patient" projects along the patient axis the orientation names (the
    C-arm's beam; a lordotic vertebra is then seen obliquely, as on the image), "vertebra" along the
    vertebra's own AP or left-right axis (a true AP/lateral of that vertebra); "auto" takes "patient"
    when the orientation names the image plane and "vertebra" otherwise. ``method``: "similarity",
    "affine" or "auto" (affine from four marks on)."""
    frame = level if isinstance(level, VertebraFrame) else vertebra_frame(level)
    kinds = set(marks_px)
    if view is None:
        view = "AP" if {"pedicle_left", "pedicle_right"} & kinds else "LAT"
    view = "LAT" if view.upper() in ("LAT", "LATERAL") else view.upper()
    required = AP_REQUIRED if view == "AP" else LAT_REQUIRED
    missing = [k for k in required if k not in kinds]
    if missing:
        raise FluoroFitError(f"{view} view of {frame.level_name or 'the level'}: mark the "
                             + " and ".join(k.replace("_", " ") for k in missing))
    vert_basis = view_basis(frame, view)
    img_basis = orientation_basis(orientation)
    if basis == "patient" and img_basis is None:
        raise FluoroFitError("the image's Patient Orientation does not name its plane; use the vertebra basis")
    use_patient = basis == "patient" or (basis == "auto" and img_basis is not None)
    names, src3, dst = [], [], []
    for kind, px in marks_px.items():
        attr = MARK_LANDMARK.get(kind)
        if attr is None:
            continue
        p3 = getattr(frame, attr, None)
        if p3 is None:
            if kind in required:
                raise FluoroFitError(f"level {frame.level_name}: the plan has no {kind.replace('_', ' ')} landmark")
            continue
        names.append(kind)
        src3.append(np.asarray(p3, dtype=float))
        dst.append(np.asarray(px, dtype=float))
    src3_a = np.array(src3)
    dst_a = np.array(dst)
    use_affine = method == "affine" or (method == "auto" and len(names) >= 4)
    fit_fn = _affine if use_affine else _similarity
    warnings: list[str] = []

    def fit(b: np.ndarray, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        src = ((src3_a - frame.body_center_lps) @ b.T) * np.array([-1.0 if flip else 1.0, 1.0])
        m = fit_fn(src, dst_a)
        res = np.linalg.norm(src @ m[:, :2].T + m[:, 2] - dst_a, axis=1)
        return m, res

    if use_patient:
        assert img_basis is not None
        chosen_basis, mirrored = img_basis, False
    else:
        chosen_basis = vert_basis
        if mirrored is None:
            plain = (src3_a - frame.body_center_lps) @ vert_basis.T
            spread = np.linalg.svd(plain - plain.mean(axis=0), compute_uv=False) if len(plain) >= 3 else np.zeros(2)
            if len(plain) >= 3 and spread[-1] > 2.0 and not use_affine:
                _, r0 = fit(vert_basis, False)
                _, r1 = fit(vert_basis, True)
                mirrored = bool(np.sqrt(np.mean(r1 ** 2)) < np.sqrt(np.mean(r0 ** 2)))
            else:
                guess = _mirrored_from_orientation(orientation, vert_basis)
                mirrored = bool(guess) if guess is not None else False
                if guess is None and len(plain) < 3:
                    warnings.append("handedness assumed from the usual display (no Patient Orientation and fewer "
                                    "than three marks)")
    matrix, res = fit(chosen_basis, bool(mirrored))
    result = FluoroFit(view, frame.level_name, "affine" if use_affine else "similarity", bool(mirrored), matrix,
                       chosen_basis, frame.body_center_lps.copy(), {n: float(r) for n, r in zip(names, res)}, None,
                       warnings)
    result.basis_kind = "patient" if use_patient else "vertebra"
    scale = result.px_per_mm
    if scale > 0 and result.rms_px / scale > params.residual_warn_mm:
        warnings.append(f"the marks fit the plan's landmarks only to {result.rms_px / scale:.1f} mm (RMS); check "
                        "the marks and the level")
    if view == "AP" and "spinous_process" in marks_px and scale > 0:
        sp = np.asarray(marks_px["spinous_process"], dtype=float)
        # the midline through the body centre along s, projected
        c0 = result.project(frame.body_center_lps)
        c1 = result.project(frame.body_center_lps + 10.0 * frame.s)
        axis = (c1 - c0) / np.linalg.norm(c1 - c0)
        left_px = result.project(frame.body_center_lps - frame.l) - c0  # toward the patient's left
        normal = np.array([-axis[1], axis[0]])
        if normal @ left_px < 0:
            normal = -normal
        off = float((sp - c0) @ normal) / scale
        result.spinous_offset_mm = off
        if abs(off) > params.spinous_warn_mm:
            side = "left" if off > 0 else "right"
            warnings.append(f"the spinous process is {abs(off):.1f} mm to the patient's {side} of the midline "
                            "between the pedicles: the view or the vertebra is rotated (not a true AP)")
    return result


# ======================================================================== plan on an image
@dataclass
class FluoroResult:
    fit: FluoroFit
    overlays: list[TrajectoryOverlay]


def marks_for_image(plan: Plan, sop_instance_uid: str, level_id: str, frame_index: int = 0) -> dict[str, tuple]:
    """The plan's fluoroscopy marks of one image and level, ``kind -> (col, row)``."""
    out: dict[str, tuple] = {}
    for lm in plan.fluoro_landmarks:
        if lm.sop_instance_uid == sop_instance_uid and lm.level_id == level_id and lm.frame == frame_index:
            out[lm.kind] = tuple(lm.point_px)
    return out


def plan_overlays(plan: Plan, sop_instance_uid: str, level_id: str, *, view: Optional[str] = None,
                  frame_index: int = 0, orientation: Sequence[str] = ()) -> FluoroResult:
    """Fit the level's marks on one image and project the level's trajectories and zones."""
    level = plan.level(level_id)
    marks = marks_for_image(plan, sop_instance_uid, level_id, frame_index)
    fit = fit_view(level, marks, view, orientation=orientation)
    overlays = []
    for traj in plan.trajectories_of(level_id):
        try:
            overlays.append(fit.overlay(plan, traj))
        except PathError:
            continue
    return FluoroResult(fit, overlays)


def view_of_image(image: Any) -> Optional[str]:
    """"AP" or "LAT" from a projection image's View Position (AP, PA, LAT, LL, RL), else None."""
    vp = (getattr(getattr(image, "geometry", None), "view_position", "") or "").upper()
    if vp in ("AP", "PA"):
        return "AP"
    if vp in ("LAT", "LL", "RL", "LATERAL"):
        return "LAT"
    return None


def image_overlays(plan: Plan, image: Any, level_id: str, frame_index: int = 0,
                   view: Optional[str] = None) -> FluoroResult:
    """:func:`plan_overlays` for a loaded :class:`~planner.imaging.volume.ProjectionImage`: its SOP
    Instance UID selects the marks, its View Position the view and its Patient Orientation the basis."""
    geom = getattr(image, "geometry", None)
    orientation = tuple(getattr(geom, "patient_orientation", ()) or ())
    return plan_overlays(plan, image.sop_instance_uid, level_id, view=view or view_of_image(image),
                         frame_index=frame_index, orientation=orientation)


# ======================================================================== virtual projections
@dataclass
class Projector:
    """Parallel projection of LPS onto an image: pixel (col, row) centres at
    ``origin_lps + col * col_spacing * col_dir + row * row_spacing * row_dir`` (any depth)."""

    view: str
    origin_lps: np.ndarray
    col_dir: np.ndarray
    row_dir: np.ndarray
    spacing_mm: tuple[float, float]  # (col, row)
    shape: tuple[int, int]  # (rows, cols)
    overlays: list[TrajectoryOverlay] = field(default_factory=list)

    def to_px(self, points_lps: Any) -> np.ndarray:
        p = np.asarray(points_lps, dtype=float) - self.origin_lps
        return np.stack([p @ self.col_dir / self.spacing_mm[0], p @ self.row_dir / self.spacing_mm[1]], axis=-1)

    __call__ = to_px

    def as_fit(self) -> FluoroFit:
        """The same mapping as a :class:`FluoroFit` (for the overlay code)."""
        basis = np.vstack([self.col_dir, self.row_dir])
        matrix = np.array([[1 / self.spacing_mm[0], 0, 0], [0, 1 / self.spacing_mm[1], 0]], dtype=float)
        return FluoroFit(self.view, "", "parallel", False, matrix, basis, self.origin_lps.copy())

    def plan_overlays(self, plan: Plan, trajectories: Optional[Iterable[Trajectory]] = None) -> list[TrajectoryOverlay]:
        fit = self.as_fit()
        out = []
        for t in plan.trajectories if trajectories is None else trajectories:
            try:
                out.append(fit.overlay(plan, t))
            except PathError:
                continue
        return out


def _signed_permutation(direction: np.ndarray) -> bool:
    a = np.abs(direction)
    return bool(np.all((np.abs(a - 1) < 1e-6) | (a < 1e-6)) and np.allclose(a.sum(axis=0), 1, atol=1e-6))


def virtual_projection(volume: Any, view: str = "AP", plan: Optional[Plan] = None, *, mode: str = "auto",
                       spacing_mm: Optional[float] = None, slab_center_lps: Optional[Sequence[float]] = None,
                       slab_mm: Optional[float] = None) -> tuple[np.ndarray, Projector]:
    """A radiograph-like projection of ``volume`` along the patient AP axis (``view="AP"``, rays along
    LPS y; columns toward the patient's left, rows toward the feet) or the left-right axis
    (``"LAT"``, rays along x; columns toward posterior, rows toward the feet).

    ``mode``: "drr" (CT: mean of ``max(HU + 1000, 0)``, an attenuation sum up to scale), "mean",
    "mip" (maximum), or "auto" (drr on CT, mip otherwise). ``slab_mm`` limits the rays to a slab of
    that thickness around ``slab_center_lps`` (default: the volume centre). With ``plan`` the
    projector's ``overlays`` hold every trajectory of the plan.
    Returns ``(image (rows, cols) float32, projector)``."""
    view = "LAT" if view.upper() in ("LAT", "LATERAL") else view.upper()
    if view not in ("AP", "LAT"):
        raise ValueError(f"view must be 'AP' or 'LAT', not {view!r}")
    if mode == "auto":
        mode = "drr" if is_ct(volume) else "mip"
    if mode not in ("drr", "mean", "mip"):
        raise ValueError(f"mode must be drr, mean, mip or auto, not {mode!r}")
    depth_axis = 1 if view == "AP" else 0  # LPS axis along the rays
    col_axis = 0 if view == "AP" else 1
    col_dir = np.zeros(3)
    col_dir[col_axis] = 1.0
    row_dir = np.array([0.0, 0.0, -1.0])
    corners = volume.corners_lps()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    sp_vol = volume.spacing
    step = float(spacing_mm) if spacing_mm else float(min(sp_vol))
    if slab_mm is not None:
        c = np.asarray(slab_center_lps if slab_center_lps is not None else volume.center_lps(), dtype=float)
        lo[depth_axis] = max(lo[depth_axis], c[depth_axis] - slab_mm / 2)
        hi[depth_axis] = min(hi[depth_axis], c[depth_axis] + slab_mm / 2)
    direction = volume.direction
    if _signed_permutation(direction) and spacing_mm is None and slab_mm is None:
        img, origin, spacing = _project_aligned(volume, depth_axis, col_axis, mode)
    else:
        img, origin, spacing = _project_sampled(volume, lo, hi, step, depth_axis, col_axis, mode)
    proj = Projector(view, origin, col_dir, row_dir, spacing, img.shape)
    if plan is not None:
        proj.overlays = proj.plan_overlays(plan)
    return img.astype(np.float32), proj


def _nanmean(v: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN where every value is NaN (no warning: it runs off the GUI thread, where
    ``warnings.catch_warnings`` is not safe)."""
    valid = ~np.isnan(v)
    count = valid.sum(axis=axis)
    total = np.where(valid, v, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def _reduce(values: np.ndarray, axis: int, mode: str, ct: bool) -> np.ndarray:
    """Project along ``axis``; rays that miss the volume (all NaN) stay NaN."""
    v = values.astype(np.float32, copy=False)
    if mode == "drr":
        v = np.maximum(v + (1000.0 if ct else 0.0), 0.0)  # NaN stays NaN
        return _nanmean(v, axis)
    if mode == "mean":
        return _nanmean(v, axis)
    return np.fmax.reduce(v, axis=axis)  # ignores NaN; NaN only where all are


def _project_aligned(volume: Any, depth_axis: int, col_axis: int, mode: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Volumes whose axes run along LPS axes: reduce the array directly, no resampling."""
    d = volume.direction  # columns: i, j, k axes in LPS
    arr = volume.array  # (k, j, i)
    # array axis (0=k, 1=j, 2=i) that runs along each LPS axis, and its sign
    lps_to_arr = {}
    for ijk in range(3):
        lps_axis = int(np.argmax(np.abs(d[:, ijk])))
        lps_to_arr[lps_axis] = (2 - ijk, float(np.sign(d[lps_axis, ijk])), ijk)
    red = _reduce(arr, lps_to_arr[depth_axis][0], mode, is_ct(volume))
    # remaining array axes, in order, map to the column (LPS col_axis, increasing) and row (-z) directions
    remaining = [a for a in range(3) if a != lps_to_arr[depth_axis][0]]
    col_arr, col_sign, col_ijk = lps_to_arr[col_axis]
    row_arr, row_sign, row_ijk = lps_to_arr[2]
    img = red
    # put rows first
    if remaining.index(row_arr) != 0:
        img = img.T
    if col_sign < 0:
        img = img[:, ::-1]
    if row_sign > 0:  # rows must go toward -z (feet)
        img = img[::-1, :]
    sp = volume.spacing
    # origin: the LPS position of pixel (0, 0) (any depth; use the volume's first corner along depth)
    n_ijk = volume.shape_ijk
    idx = [0.0, 0.0, 0.0]
    idx[col_ijk] = 0.0 if col_sign > 0 else n_ijk[col_ijk] - 1.0
    idx[row_ijk] = 0.0 if row_sign < 0 else n_ijk[row_ijk] - 1.0
    origin = volume.ijk_to_world(np.array(idx))
    return np.ascontiguousarray(img), origin, (float(sp[col_ijk]), float(sp[row_ijk]))


def _project_sampled(volume: Any, lo: np.ndarray, hi: np.ndarray, step: float, depth_axis: int, col_axis: int,
                     mode: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    cols = np.arange(lo[col_axis], hi[col_axis] + 1e-9, step)
    rows_z = np.arange(hi[2], lo[2] - 1e-9, -step)
    depth = np.arange(lo[depth_axis], hi[depth_axis] + 1e-9, step)
    ct = is_ct(volume)
    img = np.zeros((len(rows_z), len(cols)), dtype=np.float32)
    chunk = max(1, int(2_000_000 // max(1, len(cols) * len(depth))))
    for r0 in range(0, len(rows_z), chunk):
        zz = rows_z[r0:r0 + chunk]
        pts = np.zeros((len(zz), len(cols), len(depth), 3))
        pts[..., 2] = zz[:, None, None]
        pts[..., col_axis] = cols[None, :, None]
        pts[..., depth_axis] = depth[None, None, :]
        vals = volume.sample(pts, order=1, fill=np.nan)
        part = _reduce(vals, 2, mode, ct)  # warning-free with NaN (rays outside the volume)
        img[r0:r0 + len(zz)] = np.nan_to_num(part, nan=0.0)
    origin = np.zeros(3)
    origin[col_axis] = cols[0]
    origin[2] = rows_z[0]
    origin[depth_axis] = depth[0] if len(depth) else 0.0
    return img, origin, (step, step)
