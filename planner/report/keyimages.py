"""Key images for the plan summary, rendered headless from the plan and the images.

* Per trajectory, the axial plane of the vertebra through the pedicle (where the path crosses it) and
  the sagittal plane through the path (containing the introducer's direction and the vertebra's
  superior direction), resliced from the volume (``Volume.reslice``, numpy) with a bone window on CT,
  displayed in the radiological convention (viewer-conventions.md): sagittal with anterior on the
  left and superior at the top, axial with the patient's right on the left and anterior at the top.
  The instruments are projected onto the plane, the ablation zone is drawn as its cut through the
  plane, and the parts of the path where a check fails or is unverified are drawn in red with their
  label (e.g. "canal 2.1 mm"). Without a vertebra frame the planes are the patient's own, through
  the active tip.
* A 3D view (VTK offscreen, :mod:`planner.report.render3d`).
* The fluoroscopy frames the plan uses, with the landmarks and measurements marked on them.

Everything is drawn with Pillow; no Qt, no screen state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from planner import fluoro
from planner.checks import TrajectoryReport
from planner.imaging.volume import ProjectionImage, Volume, WindowLevel
from planner.plan import Plan, Trajectory
from planner.report.fonts import FontNotFoundError, dejavu_path
from planner.trajectory import LandmarkError, TrajectoryShape, is_ct, trajectory_shape, vertebra_frame

log = logging.getLogger(__name__)

AnyImage = Union[Volume, ProjectionImage]

#: Volume roles in order of preference for the key images.
VOLUME_ROLE_PREFERENCE = ("T2", "T1", "STIR", "CT", "AX_T2")

#: Instrument colours (RGB) shared by the 2D and 3D key images and the legend of the report.
INSTRUMENT_COLORS: dict[str, tuple[int, int, int]] = {
    "introducer": (64, 160, 255),
    "cannula": (40, 210, 120),
    "probe": (255, 220, 40),
}
DEFAULT_INSTRUMENT_COLOR = (230, 230, 230)
ZONE_COLOR = (255, 120, 30)
LANDMARK_COLOR = (255, 80, 200)

#: Pixel size of the 2D key images and the width of their field of view.
KEY_IMAGE_PX = 420
MIN_FOV_MM = 70.0
#: Failing parts of a path (checks that fail or are unverified).
FAILING_COLOR = (235, 30, 30)
#: The bone window used for CT key images (centre, width in HU): cortex, cancellous bone and the canal
#: are told apart (viewer-conventions: bone window).
CT_BONE_WINDOW = (400.0, 1800.0)


@dataclass
class KeyImage:
    kind: str  # "sagittal", "axial", "3d", "fluoro"
    caption: str
    image: Image.Image  # RGB
    #: Series the picture was made from (for DICOM references), if any.
    series_instance_uid: str = ""
    notes: list[str] = field(default_factory=list)
    #: For reslices: pixel (col, row) lies at plane_origin_lps + col*mm_per_px*u + row*mm_per_px*v.
    plane_origin_lps: Optional[np.ndarray] = None
    plane_u_lps: Optional[np.ndarray] = None
    plane_v_lps: Optional[np.ndarray] = None
    mm_per_px: Optional[float] = None
    #: For the 3D view: the LPS directions of the picture's columns (right) and rows (down).
    screen_axes_lps: Optional[tuple[np.ndarray, np.ndarray]] = None
    #: A few words under the picture on a level page (default: from ``kind``).
    short_caption: str = ""
    #: DICOM Patient Orientation when known otherwise (fluoroscopy header), e.g. ("P", "F").
    patient_orientation: Optional[tuple[str, str]] = None

    def lps_to_px(self, point_lps: Sequence[float]) -> np.ndarray:
        """(col, row) of an LPS point projected onto a reslice key image."""
        if self.plane_origin_lps is None or self.mm_per_px is None:
            raise ValueError(f"the {self.kind} key image is not a reslice")
        d = np.asarray(point_lps, dtype=float) - self.plane_origin_lps
        return np.array([d @ self.plane_u_lps, d @ self.plane_v_lps]) / self.mm_per_px


def instrument_color(name: str) -> tuple[int, int, int]:
    return INSTRUMENT_COLORS.get(name.lower(), DEFAULT_INSTRUMENT_COLOR)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(dejavu_path("B")), size)
    except (FontNotFoundError, OSError):
        return ImageFont.load_default()


# ------------------------------------------------------------------------------------ selection
def plan_volumes(plan: Plan, images: Optional[Mapping[str, AnyImage]]) -> list[tuple[str, Volume, str]]:
    """(key, volume, role) of the loaded volumes, the plan's preferred roles first."""
    if not images:
        return []
    roles = {ref.series_instance_uid: ref.role for ref in plan.case.series}
    found = []
    for key, img in images.items():
        if isinstance(img, Volume):
            uid = img.info.series_instance_uid or key
            found.append((key, img, roles.get(uid, roles.get(key, ""))))

    def rank(item: tuple[str, Volume, str]) -> int:
        role = item[2]
        return VOLUME_ROLE_PREFERENCE.index(role) if role in VOLUME_ROLE_PREFERENCE else len(VOLUME_ROLE_PREFERENCE)

    return sorted(found, key=rank)


def choose_volume(plan: Plan, images: Optional[Mapping[str, AnyImage]],
                  near_lps: Optional[Sequence[float]] = None,
                  first_roles: Sequence[str] = ()) -> Optional[tuple[str, Volume, str]]:
    """The preferred volume that contains ``near_lps`` (any volume if none does); volumes with one of
    ``first_roles`` come first (e.g. the axial series for the axial reslice)."""
    vols = plan_volumes(plan, images)
    if not vols:
        return None
    if near_lps is not None and first_roles:
        for item in vols:
            if item[2] in first_roles and item[1].contains(near_lps):
                return item
    if near_lps is not None:
        for item in vols:
            if item[2] != "AX_T2" and item[1].contains(near_lps):
                return item
        for item in vols:
            if item[1].contains(near_lps):
                return item
    return vols[0]


def plan_projections(plan: Plan, images: Optional[Mapping[str, AnyImage]]) -> list[tuple[str, ProjectionImage]]:
    if not images:
        return []
    return [(k, img) for k, img in images.items() if isinstance(img, ProjectionImage)]


# ------------------------------------------------------------------------------------ helpers
def window_to_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    width = max(float(width), 1e-6)
    lo = center - width / 2.0
    out = (np.asarray(values, dtype=np.float64) - lo) / width
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class PlaneSpec:
    name: str
    u_lps: np.ndarray  # screen x direction
    v_lps: np.ndarray  # screen y direction (down)
    labels: tuple[str, str, str, str]  # left, right, top, bottom orientation letters
    #: A point the plane passes through (default: the active tip).
    through_lps: Optional[np.ndarray] = None
    caption: str = ""
    #: A few words for the picture on a level page.
    short_caption: str = ""


SAGITTAL = PlaneSpec("sagittal", np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]), ("A", "P", "S", "I"),
                     short_caption="Sagittal reslice through the tip")
AXIAL = PlaneSpec("axial", np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), ("R", "L", "A", "P"),
                  short_caption="Axial reslice through the tip")

_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # LPS axes: -x R / +x L, -y A / +y P, -z I / +z S


def orientation_letters(u_lps: np.ndarray, v_lps: np.ndarray) -> tuple[str, str, str, str]:
    """Orientation letters (left, right, top, bottom) of a picture whose columns run along ``u`` and
    rows along ``v``: the patient directions nearest to -u, +u, -v, +v."""
    def letter(d: np.ndarray) -> str:
        k = int(np.argmax(np.abs(d)))
        return _LETTERS[k][1] if d[k] > 0 else _LETTERS[k][0]

    return letter(-u_lps), letter(u_lps), letter(-v_lps), letter(v_lps)


def trajectory_planes(plan: Plan, traj: Trajectory, report: Optional[TrajectoryReport] = None) -> list[PlaneSpec]:
    """The axial plane of the vertebra through the pedicle and the sagittal plane through the path; the
    patient's own axial and sagittal planes through the tip when the vertebra's frame is unknown."""
    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    try:
        frame = vertebra_frame(level) if level is not None else None
    except LandmarkError:
        frame = None
    target = np.asarray(traj.target_lps, dtype=float)
    if frame is None:
        return [SAGITTAL, AXIAL]
    s_up = frame.s
    # axial: the vertebra's transverse plane; screen x toward the patient's left, y posterior
    ux = np.array([1.0, 0.0, 0.0]) - s_up[0] * s_up
    if np.linalg.norm(ux) < 0.3:
        ux = -frame.l - (-frame.l @ s_up) * s_up
    ux /= np.linalg.norm(ux)
    vy = np.cross(s_up, ux)
    if vy[1] < 0:
        vy = -vy
    through = None
    if report is not None and report.pedicle is not None and report.pedicle.crossing_lps is not None:
        through = np.asarray(report.pedicle.crossing_lps, dtype=float)
    if through is None:
        ped = frame.pedicle_left_lps if traj.side == "left" else frame.pedicle_right_lps
        through = ped if ped is not None else np.asarray(traj.entry_lps, dtype=float)
    axial = PlaneSpec("axial", ux, vy, orientation_letters(ux, vy), through,
                      "Axial plane of the vertebra through the pedicle", "Axial plane through the pedicle")
    # sagittal through the path: contains the introducer's direction and the superior direction
    entry = np.asarray(traj.entry_lps, dtype=float)
    aim = (np.asarray(traj.bend_lps, dtype=float) if traj.bend_lps is not None else target) - entry
    d = aim - (aim @ s_up) * s_up
    if np.linalg.norm(d) < 1e-6:
        d = frame.u.copy()
    d /= np.linalg.norm(d)
    if d[1] < 0:  # screen x toward posterior: anterior on the left
        d = -d
    sag = PlaneSpec("sagittal", d, -s_up, orientation_letters(d, -s_up), entry,
                    "Sagittal plane through the path (the introducer's direction and the vertebra's long axis)",
                    "Sagittal plane along the path")
    return [sag, axial]


def _view_box(geom: TrajectoryShape, extra_lps: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    pts = np.vstack([geom.all_points_lps()] + [np.atleast_2d(p) for p in extra_lps])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    center = (lo + hi) / 2.0
    extent = float(np.max(hi - lo)) + 2 * geom.zone.radius_mm + 20.0
    return center, max(MIN_FOV_MM, extent)


def _to_px(points_lps: np.ndarray, origin_lps: np.ndarray, spec: PlaneSpec, mm_per_px: float) -> np.ndarray:
    d = np.atleast_2d(points_lps) - origin_lps[None, :]
    return np.stack([d @ spec.u_lps, d @ spec.v_lps], axis=1) / mm_per_px


def _draw_orientation(draw: ImageDraw.ImageDraw, size: int, labels: tuple[str, str, str, str]) -> None:
    font = _font(max(12, size // 28))
    left, right, top, bottom = labels
    pad = 6
    for text, xy, anchor in ((left, (pad, size / 2), "lm"), (right, (size - pad, size / 2), "rm"),
                             (top, (size / 2, pad), "mt"), (bottom, (size / 2, size - pad), "mb")):
        draw.text(xy, text, fill=(255, 255, 0), font=font, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))


def _draw_scale_bar(draw: ImageDraw.ImageDraw, size: int, mm_per_px: float, length_mm: float = 10.0,
                    unit: str = "mm") -> None:
    length_px = length_mm / mm_per_px
    x1, y = size - 14, size - 26
    x0 = x1 - length_px
    draw.line([(x0, y), (x1, y)], fill=(255, 255, 255), width=3)
    draw.line([(x0, y - 5), (x0, y + 5)], fill=(255, 255, 255), width=2)
    draw.line([(x1, y - 5), (x1, y + 5)], fill=(255, 255, 255), width=2)
    draw.text(((x0 + x1) / 2, y - 6), f"{length_mm:g} {unit}", fill=(255, 255, 255), font=_font(max(11, size // 34)),
              anchor="mb", stroke_width=2, stroke_fill=(0, 0, 0))


def _draw_marker(draw: ImageDraw.ImageDraw, xy: np.ndarray, color: tuple[int, int, int], r: float = 4.0) -> None:
    x, y = float(xy[0]), float(xy[1])
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0), fill=color, width=1)


# ------------------------------------------------------------------------------------ reslices
def key_window(volume: Volume) -> WindowLevel:
    """The window of a key image: the bone window on CT, the volume's default elsewhere."""
    if is_ct(volume):
        return WindowLevel(center=CT_BONE_WINDOW[0], width=CT_BONE_WINDOW[1], source="bone")
    return volume.default_window()


def render_plane(volume: Volume, plan: Plan, traj: Trajectory, spec: PlaneSpec,
                 geom: Optional[TrajectoryShape] = None, size_px: int = KEY_IMAGE_PX,
                 report: Optional[TrajectoryReport] = None) -> KeyImage:
    """A reslice through ``spec.through_lps`` (default the active tip), with the instruments projected,
    the zone cut drawn and the failing parts of ``report`` drawn in red with their labels."""
    geom = geom or trajectory_shape(plan, traj)
    target = np.asarray(traj.target_lps, dtype=float)
    through = target if spec.through_lps is None else np.asarray(spec.through_lps, dtype=float)
    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    extra = []
    if level is not None:
        for name in ("posterior_wall_lps", "anterior_wall_lps", "superior_endplate_lps", "inferior_endplate_lps"):
            p = getattr(level.landmarks, name)
            if p is not None:
                extra.append(np.asarray(p, dtype=float))
    center, fov = _view_box(geom, extra)
    # The plane passes through the chosen point; centre the view on the box projected into the plane.
    normal = np.cross(spec.u_lps, spec.v_lps)
    normal /= np.linalg.norm(normal)
    center = center - normal * float((center - through) @ normal)
    mm_per_px = fov / size_px
    origin = center - spec.u_lps * fov / 2.0 - spec.v_lps * fov / 2.0
    values = volume.reslice(origin, spec.u_lps, spec.v_lps, (size_px, size_px), mm_per_px,
                            fill=volume.statistics()["min"])
    wl = key_window(volume)
    gray = window_to_uint8(values, wl.center, wl.width)
    img = Image.fromarray(gray, mode="L").convert("RGB")

    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    odraw = ImageDraw.Draw(overlay)
    # Zone: the sphere cut by the plane (a circle of radius sqrt(R^2 - d^2)).
    zc = geom.zone.center_lps
    d = float((zc - origin) @ normal)
    r = geom.zone.radius_mm
    zone_failed = report is not None and any(c.name == "zone" and c.blocks_export for c in report.checks)
    zcol = FAILING_COLOR if zone_failed else ZONE_COLOR
    if abs(d) < r:
        rc = np.sqrt(r * r - d * d) / mm_per_px
        c = _to_px(zc, origin, spec, mm_per_px)[0]
        odraw.ellipse([c[0] - rc, c[1] - rc, c[0] + rc, c[1] + rc], fill=zcol + (90,), outline=zcol + (255,), width=2)
    img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(img)
    for inst in geom.instruments:
        px = _to_px(inst.points_lps, origin, spec, mm_per_px)
        width = max(2, int(round(inst.diameter_mm / mm_per_px / 2)))
        draw.line([tuple(p) for p in px], fill=instrument_color(inst.name), width=width, joint="curve")
    parts = report.failing_parts if report is not None else []
    if parts:
        _draw_failing_parts(draw, parts, origin, spec, mm_per_px, geom, size_px)
    _draw_marker(draw, _to_px(np.asarray(traj.entry_lps), origin, spec, mm_per_px)[0], (255, 255, 255))
    if traj.bend_lps is not None:
        _draw_marker(draw, _to_px(np.asarray(traj.bend_lps), origin, spec, mm_per_px)[0], (200, 200, 200), 3)
    _draw_marker(draw, _to_px(target, origin, spec, mm_per_px)[0], (255, 40, 40), 4)
    _draw_orientation(draw, size_px, spec.labels)
    _draw_scale_bar(draw, size_px, mm_per_px)
    level_name = level.name if level else "?"
    what = spec.caption or f"{spec.name.capitalize()} reslice through the active tip"
    window = f"; bone window (C {wl.center:.0f}, W {wl.width:.0f} HU)" if wl.source == "bone" else ""
    red = "; failing or unverified parts of the path in red" if parts else ""
    caption = (f"{what} ({level_name} {traj.side}); instruments projected onto the plane; zone cut by the "
               f"plane{red}{window}")
    return KeyImage(spec.name, caption, img, volume.info.series_instance_uid, plane_origin_lps=origin,
                    plane_u_lps=spec.u_lps.copy(), plane_v_lps=spec.v_lps.copy(), mm_per_px=mm_per_px,
                    short_caption=spec.short_caption)


def _draw_failing_parts(draw: ImageDraw.ImageDraw, parts: list, origin: np.ndarray, spec: PlaneSpec,
                        mm_per_px: float, geom: TrajectoryShape, size_px: int) -> None:
    """The parts of the path where a check fails, in red over the instruments, each with its label."""
    font = _font(max(11, size_px // 34))
    width = max(3, int(round(max((i.diameter_mm for i in geom.instruments), default=2.0) / mm_per_px / 2)) + 2)
    placed: list[tuple[float, float]] = []
    for _check, part in parts:
        px = _to_px(part.points_lps, origin, spec, mm_per_px)
        if len(px) == 1:
            px = np.vstack([px, px + 0.5])
        draw.line([tuple(p) for p in px], fill=FAILING_COLOR, width=width, joint="curve")
        mid = px[len(px) // 2]
        x, y = float(mid[0]) + 10, float(mid[1]) - 10
        while any(abs(y - py) < 14 and abs(x - qx) < 120 for qx, py in placed):
            y += 15
        placed.append((x, y))
        x = min(max(x, 4.0), size_px - 4.0)
        y = min(max(y, 4.0), size_px - 16.0)
        draw.text((x, y), part.label, fill=FAILING_COLOR, font=font, stroke_width=2, stroke_fill=(0, 0, 0))


# ------------------------------------------------------------------------------------ fluoroscopy
def _fluoro_overlays(plan: Plan, sop_uid: str, level_id: str, frame_index: int,
                     proj: ProjectionImage) -> tuple[list, list[str]]:
    """The level's trajectories and zones projected onto the image by :mod:`planner.fluoro` (fitted to
    the marked landmarks); ([], [reason]) when the marks do not allow it."""
    vp = proj.geometry.view_position.upper()
    view = "AP" if vp in ("AP", "PA") else "LAT" if vp in ("LAT", "LATERAL", "LL", "RL") else None
    try:
        if sop_uid == proj.sop_instance_uid:
            result = fluoro.image_overlays(plan, proj, level_id, frame_index=frame_index, view=view)
        else:
            result = fluoro.plan_overlays(plan, sop_uid, level_id, view=view, frame_index=frame_index,
                                          orientation=tuple(proj.geometry.patient_orientation))
    except (ValueError, KeyError) as exc:
        return [], [f"The plan is not drawn on this fluoroscopy image: {exc}."]
    return result.overlays, [f"Fluoroscopy fit: {w}." for w in result.fit.warnings]


def render_fluoro(plan: Plan, key: str, proj: ProjectionImage, size_px: int = KEY_IMAGE_PX,
                  level_id: Optional[str] = None, trajectory_id: Optional[str] = None) -> Optional[KeyImage]:
    """A frame of a fluoroscopy image with the plan's landmarks (of ``level_id`` and those tied to no
    level, or all when ``level_id`` is None) and measurements drawn on it, and, when the landmarks of
    the level are marked, the level's trajectories and ablation zones projected onto it
    (:func:`planner.fluoro.plan_overlays`); ``trajectory_id`` is drawn highlighted."""
    uids = set(proj.info.sop_instance_uids) or {key}
    landmarks = [lm for lm in plan.fluoro_landmarks if lm.sop_instance_uid in uids
                 and (level_id is None or lm.level_id in ("", level_id))]
    measurements = [m for m in plan.measurements if m.sop_instance_uid in uids and m.points_px]
    frame_index = landmarks[0].frame if landmarks else 0
    frame_index = min(frame_index, proj.n_frames - 1)
    frame = np.asarray(proj.frames[frame_index])
    if proj.is_color:
        img = Image.fromarray(frame.astype(np.uint8), mode="RGB")
    else:
        wl = proj.default_window()
        img = Image.fromarray(window_to_uint8(frame, wl.center, wl.width), mode="L").convert("RGB")
    scale = size_px / max(proj.rows, proj.cols)
    img = img.resize((max(1, int(round(proj.cols * scale))), max(1, int(round(proj.rows * scale)))),
                     Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(img)
    font = _font(max(11, size_px // 36))
    names = {lv.id: lv.name for lv in plan.levels}
    for lm in landmarks:
        p = np.asarray(lm.point_px) * scale
        _draw_marker(draw, p, LANDMARK_COLOR, 4)
        label = " ".join(x for x in (names.get(lm.level_id, ""), lm.kind.replace("_", " ")) if x)
        draw.text((p[0] + 6, p[1] - 6), label, fill=LANDMARK_COLOR, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    cal = next((c.mm_per_pixel for c in plan.fluoro_calibrations if c.sop_instance_uid in uids), None)
    scale_info = proj.measurement_scale(cal)
    for m in measurements:
        pts = [tuple(np.asarray(p) * scale) for p in m.points_px]
        draw.line(pts, fill=(0, 255, 255), width=2)
        if m.kind == "distance" and len(m.points_px) == 2:
            length = scale_info.length(m.points_px[0], m.points_px[1])
            mid = np.mean(np.asarray(pts), axis=0)
            draw.text((mid[0] + 6, mid[1]), f"{length:.1f} {scale_info.unit_label}", fill=(0, 255, 255), font=font,
                      stroke_width=2, stroke_fill=(0, 0, 0))
    notes = ["Text burned into the fluoroscopy pixels is shown as acquired."]
    drawn = False
    if level_id is not None:
        sop_uid = landmarks[0].sop_instance_uid if landmarks else proj.sop_instance_uid
        overlays, fit_notes = _fluoro_overlays(plan, sop_uid, level_id, frame_index, proj)
        notes += fit_notes
        if overlays:
            layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
            ldraw = ImageDraw.Draw(layer)
            for ov in overlays:
                ldraw.polygon([tuple(p) for p in np.asarray(ov.zone.polygon_px) * scale], fill=ZONE_COLOR + (80,),
                              outline=ZONE_COLOR + (255,))
            img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
            draw = ImageDraw.Draw(img)
            for ov in sorted(overlays, key=lambda o: o.trajectory_id == trajectory_id):
                current = trajectory_id is None or ov.trajectory_id == trajectory_id
                pts = [tuple(p) for p in np.asarray(ov.path_px) * scale]
                draw.line(pts, fill=instrument_color("cannula") if current else (150, 150, 150),
                          width=3 if current else 2, joint="curve")
                _draw_marker(draw, np.asarray(ov.entry_px) * scale, (255, 255, 255), 3)
                _draw_marker(draw, np.asarray(ov.target_px) * scale, (255, 40, 40), 4 if current else 3)
            drawn = True
    view = proj.geometry.view_position or "fluoroscopy"
    what = "plan projected from the marked landmarks, landmarks" if drawn else "landmarks"
    caption = (f"Fluoroscopy ({view}), frame {frame_index + 1} of {proj.n_frames}: {what} and measurements "
               f"({scale_info.unit_label})")
    po = tuple(x[:1] for x in proj.geometry.patient_orientation if x)
    return KeyImage("fluoro", caption, img, proj.info.series_instance_uid, notes,
                    patient_orientation=po if len(po) == 2 else None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ all key images
def trajectory_key_images(plan: Plan, traj: Trajectory, images: Optional[Mapping[str, AnyImage]],
                          *, report: Optional[TrajectoryReport] = None) -> tuple[list[KeyImage], list[str]]:
    """The 2D key images of one trajectory (reslices, fluoroscopy) and notes on what could not be
    rendered. ``report`` (the trajectory's checks) places the axial plane at the pedicle and marks the
    failing parts. The 3D picture is :func:`planner.report.render3d.trajectory_key_image_3d`."""
    notes: list[str] = []
    out: list[KeyImage] = []
    geom = trajectory_shape(plan, traj)
    chosen = choose_volume(plan, images, traj.target_lps)
    if chosen is None:
        notes.append("Key images unavailable: the plan's images were not loaded (give --images FOLDER).")
    else:
        _, volume, _ = chosen
        if not volume.contains(traj.target_lps):
            notes.append("The active tip lies outside the loaded volume; the reslices show the nearest region.")
        for spec in trajectory_planes(plan, traj, report):
            # the axial reslice comes from the axial series when it covers the target
            vol = volume
            if spec.name == "axial":
                ax = choose_volume(plan, images, traj.target_lps, first_roles=("AX_T2",))
                vol = ax[1] if ax is not None else volume
            try:
                out.append(render_plane(vol, plan, traj, spec, geom, report=report))
            except (ValueError, MemoryError) as exc:
                notes.append(f"{spec.name.capitalize()} reslice could not be rendered: {exc}")
    fluoro, fluoro_notes = fluoro_key_images(plan, images, traj)
    out += fluoro
    notes += [n for n in fluoro_notes if n not in notes]
    if not geom.from_planner:
        notes.append("Instrument shapes are drawn as straight segments "
                     "(the trajectory's points do not define a path).")
    return out, notes


# ------------------------------------------------------------------------------------ fluoroscopy, level view
#: Fluoroscopy key images: the crop around the level holds at least this share of the image's larger side.
FLUORO_MIN_CROP = 0.32
#: ... and this margin around the plan and the level's marks (share of the box).
FLUORO_CROP_MARGIN = 0.6
#: Virtual projections: rays through a slab this thick around the target (mm), so that the vertebra is
#: not hidden behind the bowel or the iliac wings.
VIRTUAL_SLAB_MM = 90.0
#: Orientation letters (left, right, top, bottom) of the virtual views (planner.fluoro.virtual_projection).
VIRTUAL_LABELS = {"AP": ("R", "L", "H", "F"), "LAT": ("A", "P", "H", "F")}


def _draw_overlays(img: Image.Image, overlays: Sequence, scale: float, offset: np.ndarray,
                   trajectory_id: Optional[str]) -> Image.Image:
    """The plan on a picture: zones, then paths, entries and targets (the current trajectory highlighted)."""
    def px(points: Any) -> list[tuple[float, float]]:
        return [tuple(p) for p in (np.atleast_2d(np.asarray(points, dtype=float)) - offset) * scale]

    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ldraw = ImageDraw.Draw(layer)
    for ov in overlays:
        ldraw.polygon(px(ov.zone.polygon_px), fill=ZONE_COLOR + (90,), outline=ZONE_COLOR + (255,))
    img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    draw = ImageDraw.Draw(img)
    for ov in sorted(overlays, key=lambda o: o.trajectory_id == trajectory_id):
        current = trajectory_id is None or ov.trajectory_id == trajectory_id
        draw.line(px(ov.path_px), fill=instrument_color("cannula") if current else (150, 150, 150),
                  width=3 if current else 2, joint="curve")
        _draw_marker(draw, np.asarray(px(ov.entry_px)[0]), (255, 255, 255), 4)
        _draw_marker(draw, np.asarray(px(ov.target_px)[0]), (255, 40, 40), 5 if current else 3)
    return img


def _crop_box(points_px: np.ndarray, shape_rc: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square box (x0, y0, x1, y1) around the points, with a margin, inside the image."""
    rows, cols = shape_rc
    lo, hi = points_px.min(axis=0), points_px.max(axis=0)
    side = max(float(np.max(hi - lo)) * (1 + FLUORO_CROP_MARGIN), FLUORO_MIN_CROP * max(rows, cols))
    side = min(side, float(max(rows, cols)))
    c = (lo + hi) / 2
    x0 = int(round(np.clip(c[0] - side / 2, 0, max(0, cols - side))))
    y0 = int(round(np.clip(c[1] - side / 2, 0, max(0, rows - side))))
    return x0, y0, int(round(min(cols, x0 + side))), int(round(min(rows, y0 + side)))


def _gray(values: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.5) -> Image.Image:
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    lo, hi = (np.percentile(finite, [lo_pct, hi_pct]) if finite.size else (0.0, 1.0))
    return Image.fromarray(window_to_uint8(np.nan_to_num(v, nan=lo), (lo + hi) / 2, max(hi - lo, 1e-6)), mode="L")


def _level_fluoro_real(plan: Plan, key: str, proj: ProjectionImage, traj: Trajectory,
                       size_px: int) -> tuple[Optional[KeyImage], list[str]]:
    """One C-arm image with the level's plan drawn (from the physician's marks), cropped around the level."""
    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    uids = set(proj.info.sop_instance_uids) or {key}
    marks = [lm for lm in plan.fluoro_landmarks if lm.sop_instance_uid in uids and lm.level_id == traj.level_id]
    view = proj.geometry.view_position or "fluoroscopy"
    if not marks:
        return None, [f"The plan is not drawn on the {view} C-arm image: the landmarks of "
                      f"{level.name if level else 'this level'} are not marked on it."]
    frame_index = min(marks[0].frame, proj.n_frames - 1)
    overlays, notes = _fluoro_overlays(plan, marks[0].sop_instance_uid, traj.level_id, frame_index, proj)
    if not overlays:
        return None, notes
    frame = np.asarray(proj.frames[frame_index])
    if proj.is_color:
        full = Image.fromarray(frame.astype(np.uint8), mode="RGB")
    else:
        wl = proj.default_window()
        full = Image.fromarray(window_to_uint8(frame, wl.center, wl.width), mode="L").convert("RGB")
    pts = np.vstack([np.asarray(m.point_px, dtype=float)[None, :] for m in marks]
                    + [np.atleast_2d(ov.path_px) for ov in overlays] + [np.atleast_2d(ov.zone.polygon_px)
                                                                       for ov in overlays])
    x0, y0, x1, y1 = _crop_box(pts, (proj.rows, proj.cols))
    scale = size_px / max(1, x1 - x0)
    img = full.crop((x0, y0, x1, y1)).resize((size_px, max(1, int(round((y1 - y0) * scale)))),
                                             Image.Resampling.LANCZOS)
    img = _draw_overlays(img, overlays, scale, np.array([x0, y0], dtype=float), traj.id)
    draw = ImageDraw.Draw(img)
    for m in marks:
        _draw_marker(draw, (np.asarray(m.point_px, dtype=float) - [x0, y0]) * scale, LANDMARK_COLOR, 3)
    po = tuple(x[:1] for x in proj.geometry.patient_orientation if x)
    if len(po) == 2:
        opposite = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
        _draw_orientation(draw, img.width, (opposite.get(po[0], "?"), po[0], opposite.get(po[1], "?"), po[1]))
    name = level.name if level else "?"
    caption = (f"C-arm {view}, {name}: the plan drawn from the marked landmarks (pink); path green, entry white, "
               "target red, zone orange")
    return KeyImage("fluoro", caption, img, proj.info.series_instance_uid, notes,
                    patient_orientation=po if len(po) == 2 else None), notes  # type: ignore[arg-type]


def _level_fluoro_virtual(plan: Plan, volume: Volume, view: str, traj: Trajectory,
                          size_px: int) -> Optional[KeyImage]:
    """A virtual AP or lateral projection of the planning volume with the level's plan, cropped around it."""
    from planner import fluoro

    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    image, projector = fluoro.virtual_projection(volume, view, slab_center_lps=traj.target_lps,
                                                 slab_mm=VIRTUAL_SLAB_MM)
    same_level = [t for t in plan.trajectories if t.level_id == traj.level_id]
    overlays = projector.plan_overlays(plan, same_level)
    if not overlays:
        return None
    pts = np.vstack([np.atleast_2d(ov.path_px) for ov in overlays] + [np.atleast_2d(ov.zone.polygon_px)
                                                                    for ov in overlays])
    # the whole vertebral body in the box: its landmarks too
    if level is not None:
        lm = [getattr(level.landmarks, n) for n in ("superior_endplate_lps", "inferior_endplate_lps",
                                                    "anterior_wall_lps", "posterior_wall_lps")]
        lm = [p for p in lm if p is not None]
        if lm:
            pts = np.vstack([pts, projector.to_px(np.asarray(lm, dtype=float))])
    rows, cols = image.shape
    # square pixels: the projector's spacing may differ along columns and rows
    sx, sy = projector.spacing_mm
    x0, y0, x1, y1 = _crop_box(pts * [1.0, sy / sx], (int(rows * sy / sx), cols))
    values = Image.fromarray(np.asarray(image, dtype=np.float32), mode="F")
    if abs(sy - sx) > 1e-6:
        values = values.resize((cols, max(1, int(round(rows * sy / sx)))), Image.Resampling.BILINEAR)
    # the grey scale of the crop (the vertebra), not of the whole projection
    gray = _gray(np.asarray(values.crop((x0, y0, x1, y1))))
    scale = size_px / max(1, x1 - x0)
    img = gray.convert("RGB").resize((size_px, max(1, int(round((y1 - y0) * scale)))), Image.Resampling.LANCZOS)
    ovs = [_scaled_overlay(ov, [1.0, sy / sx]) for ov in overlays]
    img = _draw_overlays(img, ovs, scale, np.array([x0, y0], dtype=float), traj.id)
    draw = ImageDraw.Draw(img)
    _draw_orientation(draw, img.width, VIRTUAL_LABELS[projector.view])
    _draw_scale_bar(draw, img.width, sx / scale)
    kind = "CT" if is_ct(volume) else "MR"
    caption = (f"Virtual {'AP' if projector.view == 'AP' else 'lateral'} projection of the {kind} "
               f"({level.name if level else '?'}; not a C-arm image; {VIRTUAL_SLAB_MM:g} mm slab): path green, entry "
               "white, target red, zone orange")
    # DICOM Patient Orientation of the picture: columns toward the patient's left (AP) or back (lateral),
    # rows toward the feet
    po = ("L", "F") if projector.view == "AP" else ("P", "F")
    return KeyImage("virtual", caption, img, volume.info.series_instance_uid, patient_orientation=po)


def _scaled_overlay(ov: Any, factor: Sequence[float]) -> Any:
    from dataclasses import replace

    f = np.asarray(factor, dtype=float)
    zone = replace(ov.zone, polygon_px=np.asarray(ov.zone.polygon_px) * f)
    return replace(ov, path_px=np.asarray(ov.path_px) * f, entry_px=np.asarray(ov.entry_px) * f,
                   target_px=np.asarray(ov.target_px) * f, zone=zone)


def fluoro_key_images(plan: Plan, images: Optional[Mapping[str, AnyImage]], traj: Trajectory,
                      size_px: int = KEY_IMAGE_PX) -> tuple[list[KeyImage], list[str]]:
    """The procedure-room fluoroscopy key images of one trajectory, cropped around its level, with the plan
    drawn (paths, entries, targets, zones of the level's trajectories; this one highlighted):

    * each C-arm image on which the level's landmarks are marked (:mod:`planner.fluoro` fits the plan to
      the marks);
    * when no C-arm image shows the plan, a virtual AP and a virtual lateral projection of the planning
      volume (CT first), clearly labelled as not a C-arm image.

    Returns the images and notes on what could not be drawn."""
    out: list[KeyImage] = []
    notes: list[str] = []
    for key, proj in plan_projections(plan, images):
        try:
            img, why = _level_fluoro_real(plan, key, proj, traj, size_px)
        except (ValueError, MemoryError) as exc:
            notes.append(f"Fluoroscopy image could not be rendered: {exc}")
            continue
        notes += why
        if img is not None:
            out.append(img)
    if out:
        return out, notes
    vols = plan_volumes(plan, images)
    vols.sort(key=lambda v: 0 if is_ct(v[1]) else 1)
    holding = [v for v in vols if v[1].contains(traj.target_lps)]
    if not holding:
        return out, notes
    volume = holding[0][1]
    for view in ("AP", "LAT"):
        try:
            img = _level_fluoro_virtual(plan, volume, view, traj, size_px)
        except (ValueError, MemoryError) as exc:
            notes.append(f"Virtual {view} projection could not be rendered: {exc}")
            continue
        if img is not None:
            out.append(img)
    if out:
        notes.append("No C-arm image shows the plan; virtual projections of the planning volume are shown instead.")
    return out, notes
