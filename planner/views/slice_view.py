"""A 2D slice view of one volume: acquisition-aligned planes, radiological convention, orientation
letters on all four edges, corner annotations, the linked crosshair, and the plan drawn on top.

Reads the Session and the PlanDocument; keeps only display state (slice, zoom, pan, window/level).
Every edit (handle drags, measurements) goes through PlanDocument edit methods.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QPointF, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QInputDialog, QMenu, QWidget

from planner.display import roles
from planner.display.annotations import angle_deg, format_date, format_person_name, level_at
from planner.display.slice_geometry import Orientation, SliceFrame
from planner.document import Part, PlanChange, PlanEditError
from planner.imaging.volume import Volume, WindowLevel
from planner.plan import Measurement
from planner.views.canvas import DIM_TEXT_COLOR, TEXT_COLOR, WARN_COLOR, ImageCanvas
from planner.views.context import ViewContext
from planner.views.gui_settings import default_window, sequence_of
from planner.views.render import overlays2d
from planner.views.render.surface import Handle

log = logging.getLogger(__name__)

ORIENTATION_TITLE = {"sagittal": "Sagittal", "coronal": "Coronal", "axial": "Axial"}


def _names_anything(change: PlanChange) -> bool:
    return bool(change.levels or change.trajectories or change.measurements or change.fluoro_landmarks
                or change.lists or change.parts)


class SliceView(ImageCanvas):
    #: The displayed slice changed (the 3D view moves its plane).
    slice_changed = Signal()
    #: The shown series changed.
    series_changed = Signal(str)

    def __init__(self, context: ViewContext, orientation: Orientation, series_key: Optional[str] = None,
                 parent: Optional[QWidget] = None, *, role: str = "", title: str = "") -> None:
        super().__init__(context, parent)
        self.orientation = orientation
        #: A role this view prefers (compare layout: "T1", "T2", "STIR"); "" follows the main volume.
        self.role = role
        self.title = title or ORIENTATION_TITLE[orientation]
        self.series_key: Optional[str] = None
        #: The layout chooses the series (the main volume, or the native series of this orientation
        #: covering the crosshair) until the user picks one.
        self.auto_series = True
        self.frame: Optional[SliceFrame] = None
        self.n = 0
        self._frame_mode = context.slice_mode
        #: Incremented by plan changes that can move the static overlays (the level labels and
        #: landmarks); trajectory and measurement edits leave it (and the cached base layer) alone.
        self._static_revision = 0
        self.subscribe(self.session.cursor_moved, self._on_cursor_moved)
        self.subscribe(self.session.document.changed, self._on_plan_changed)
        self.subscribe(self.session.images_changed, self._on_images_changed)
        self.subscribe(context.display_changed, self._on_display_changed)
        self.setToolTip("")
        if series_key is not None:
            self.set_series(series_key)

    # ------------------------------------------------------------------ series
    @property
    def volume(self) -> Optional[Volume]:
        return self.frame.volume if self.frame is not None else None

    def set_series(self, key: Optional[str], *, keep_camera: bool = False) -> None:
        img = self.session.images.get(key) if key else None
        if not isinstance(img, Volume):
            self.series_key = None
            self.frame = None
            self._qimage = None
            self.update()
            return
        self.series_key = key
        self._frame_mode = self.ctx.slice_mode
        self.frame = self.session.results.slice_frame(key, self.orientation, self._frame_mode)
        cursor = self.session.cursor_lps
        if self.cursor_linked() and img.contains(cursor):
            self.n = self.frame.slice_of(cursor)
        else:
            self.n = self.frame.n_slices // 2
        self.window = self.default_window()
        self._image_dirty = True
        if not keep_camera:
            self.fit()
        self.series_changed.emit(key or "")
        self.slice_changed.emit()
        self.update()

    def choose_series(self, key: Optional[str]) -> None:
        """The user picked the series of this view (it then stays until the user picks another)."""
        self.auto_series = False
        self.set_series(key)

    def shows_series(self, series_uid: str) -> bool:
        """Measurements of this series (or of a volume in the same frame of reference) are drawn."""
        if not series_uid or series_uid == self.series_key:
            return True
        vol = self.volume
        other = self.session.images.get(series_uid)
        for_uid = vol.info.frame_of_reference_uid if vol is not None else ""
        return bool(for_uid) and isinstance(other, Volume) and other.info.frame_of_reference_uid == for_uid

    def _on_images_changed(self, key: str) -> None:
        if self.closed:
            return
        if self.series_key == key and key not in self.session.images:
            self.set_series(None)

    def _on_display_changed(self) -> None:
        if self.closed:
            return
        if self.frame is not None and self.ctx.slice_mode != self._frame_mode:
            cursor = self.session.cursor_lps
            self.set_series(self.series_key)
            if self.volume is not None and self.volume.contains(cursor):
                self.set_slice(self.frame.slice_of(cursor))

    # ------------------------------------------------------------------ canvas interface
    def has_image(self) -> bool:
        return self.frame is not None

    def current_array(self) -> Optional[np.ndarray]:
        return self.frame.image(self.n) if self.frame is not None else None

    def current_affine(self) -> np.ndarray:
        return self.frame.image_affine(self.n)

    def plane_bounds(self):
        return self.frame.plane_bounds() if self.frame is not None else (0.0, 0.0, 1.0, 1.0)

    def model_point(self, pos: QPointF) -> Optional[np.ndarray]:
        if self.frame is None:
            return None
        return self.frame.from_plane(self.widget_to_plane(pos), self.n)

    def to_widget(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        return self.plane_to_widget(self.frame.to_plane(pts))

    def requested_point(self, pos: QPointF) -> Optional[np.ndarray]:
        return self.model_point(pos)

    def auto_window(self) -> WindowLevel:
        return self.volume.auto_window() if self.volume is not None else WindowLevel(128, 256, "auto")

    def default_window(self) -> WindowLevel:
        vol = self.volume
        if vol is None:
            return WindowLevel(128, 256, "auto")
        return default_window(vol)

    def data_range(self) -> tuple[float, float]:
        if self.volume is None:
            return (0.0, 1.0)
        s = self.volume.statistics()
        return (s["min"], s["max"])

    def empty_text(self) -> str:
        if not self.session.images:
            return "No images open: File > Open folder (Ctrl+O), or drop a folder on the window"
        what = f"{self.role} " if self.role else ""
        return f"No {what}series loaded for this view"

    # ------------------------------------------------------------------ slices and cursor
    def set_slice(self, n: int) -> None:
        if self.frame is None:
            return
        n = int(min(max(n, 0), self.frame.n_slices - 1))
        if n != self.n:
            self.n = n
            self._image_dirty = True
            self.update()
            self.slice_changed.emit()

    def step(self, delta: int) -> None:
        self.set_slice(self.n + delta)

    def go_to_end(self, last: bool) -> None:
        if self.frame is not None:
            self.set_slice(self.frame.n_slices - 1 if last else 0)

    @property
    def frame_of_reference_uid(self) -> str:
        return self.volume.info.frame_of_reference_uid if self.volume is not None else ""

    def cursor_linked(self) -> bool:
        """True when the session cursor is in this view's frame of reference (or in none)."""
        cur = self.session.cursor_frame_of_reference_uid
        mine = self.frame_of_reference_uid
        return self.frame is not None and (not cur or not mine or cur == mine)

    def set_cursor_at(self, pos: QPointF) -> None:
        p = self.model_point(pos)
        if p is not None:
            self.session.set_cursor(p, self.frame_of_reference_uid)

    def _on_cursor_moved(self, lps: np.ndarray) -> None:
        if self.closed or self.frame is None:
            return
        if self.cursor_linked():
            self.set_slice(self.frame.slice_of(lps))
        self.update()

    def _on_plan_changed(self, change: PlanChange) -> None:
        if self.closed:
            return
        if change.touches(Part.LEVELS, Part.CASE, Part.SETTINGS, Part.ELIGIBILITY, Part.REVIEW,
                          Part.FLUORO_LANDMARKS, Part.FLUORO_CALIBRATIONS) or not _names_anything(change):
            self._static_revision += 1
        if not change.touches(Part.LEVELS, Part.TRAJECTORIES, Part.MEASUREMENTS, Part.CASE, Part.SETTINGS):
            return
        if self.selected_measurement and change.list_changed(Part.MEASUREMENTS):
            ids = {m.id for m in self.session.document.plan.measurements}
            if self.selected_measurement not in ids:
                self.selected_measurement = None
        self.update()

    # ------------------------------------------------------------------ measurements
    def commit_measurement(self, kind: str, points: Sequence[np.ndarray]) -> None:
        pts = [tuple(float(v) for v in p) for p in points]
        m = Measurement(kind=kind, series_instance_uid=self.series_key or "", points_lps=pts)
        try:
            mid = self.session.document.add_measurement(m)
        except PlanEditError as exc:
            self.ctx.message.emit(str(exc))
            return
        self.selected_measurement = mid
        self.ctx.message.emit(f"{kind.capitalize()}: {self.measure_label(kind, points)} (kept in the plan)")
        self.update()

    def measure_label(self, kind: str, points: Sequence[np.ndarray]) -> str:
        pts = np.asarray(points, dtype=float)
        if kind == "distance" and len(pts) >= 2:
            return f"{float(np.linalg.norm(pts[1] - pts[0])):.1f} mm"
        if kind == "angle" and len(pts) >= 3:
            return f"{angle_deg(pts):.1f}\u00b0"
        return ""

    # ------------------------------------------------------------------ painting
    def display_state_key(self) -> tuple:
        return (self.series_key, self.n, id(self.frame), self.session.active_trajectory)

    def _layered(self) -> bool:
        """The crosshair and the levels are drawn as static overlays (cached with the image) unless
        a subclass replaces :meth:`paint_overlays` (it then draws what it wants itself)."""
        return type(self).paint_overlays is SliceView.paint_overlays

    def static_overlays_key(self) -> Optional[tuple]:
        if self.frame is None or not self._layered():
            return None
        cursor = self.session.cursor_lps
        # (not the selected trajectory: the crosshair and the levels do not depend on it)
        return (self._static_revision, self.series_key, self.n, id(self.frame), self.cursor_linked(),
                None if cursor is None else tuple(float(v) for v in cursor),
                self.session.cursor_frame_of_reference_uid)

    def paint_static_overlays(self, painter: QPainter) -> list[Handle]:
        if self.frame is None or not self._layered():
            return []
        return self.paint_crosshair_and_levels(painter, self.surface(), True)

    def paint_crosshair_and_levels(self, painter: QPainter, surface, landmark_handles: bool) -> list[Handle]:
        if self.cursor_linked():
            overlays2d.paint_crosshair(painter, surface, self.session.cursor_lps)
        return overlays2d.paint_levels(painter, surface, self.frame, self.n, self.session.document.plan,
                                       landmark_handles)

    def paint_plan(self, painter: QPainter, surface) -> list[Handle]:
        """The trajectories and the measurements of this view's series (what a drag moves)."""
        plan = self.session.document.plan
        handles = overlays2d.paint_trajectories(painter, surface, self.frame, self.n, plan,
                                                self.session.results.shape, self.session.active_trajectory, True,
                                                self.session.results.report)
        shown = [m for m in plan.measurements if self.shows_series(m.series_instance_uid)]
        handles += overlays2d.paint_measurements(painter, surface, self.frame, self.n, shown,
                                                 self.selected_measurement, True)
        return handles

    def paint_overlays(self, painter: QPainter) -> list[Handle]:
        if self.frame is None:
            return []
        surface = self.surface()
        handles: list[Handle] = []
        if not self._layered():  # called by a subclass's paint_overlays: draw everything
            handles += self.paint_crosshair_and_levels(painter, surface, True)
        return handles + self.paint_plan(painter, surface)

    def apply_handle(self, handle: Handle, point: np.ndarray, merge_key: str) -> None:
        doc = self.session.document
        if handle.kind == "landmark":
            level_id, name = handle.key
            doc.set_landmark(level_id, name, point.tolist(), merge_key=merge_key)
        elif handle.kind == "trajectory":
            traj_id, which = handle.key
            doc.set_trajectory_point(traj_id, which, point.tolist(), merge_key=merge_key)
        elif handle.kind == "measurement":
            mid, idx = handle.key
            cur = [list(x) for x in doc.plan.measurement(mid).points_lps]
            cur[idx] = point.tolist()
            doc.set_measurement_points(mid, points_lps=cur, merge_key=merge_key)
        else:
            raise ValueError(f"a slice view has no {handle.kind} handles")

    def edge_letters(self) -> dict[str, str]:
        return self.frame.edge_letters() if self.frame is not None else {}

    def corner_texts(self) -> dict[str, list[tuple[str, QColor]]]:
        vol = self.volume
        if vol is None:
            return {}
        info = vol.info
        case = self.session.document.plan.case
        detail = self.ctx.annotation_detail
        tl: list[tuple[str, QColor]] = []
        if self.ctx.deidentified:
            tl.append(("De-identified display", DIM_TEXT_COLOR))
        else:
            name = format_person_name(info.patient_name or case.patient_name)
            tl.append((name, TEXT_COLOR))
            if detail:
                pid = info.patient_id or case.patient_id
                extra = " ".join(x for x in (pid, info.patient_sex or case.patient_sex) if x)
                tl.append((extra, TEXT_COLOR))
                bd = format_date(info.patient_birth_date or case.patient_birth_date)
                if bd:
                    tl.append((f"DOB {bd}", TEXT_COLOR))
        if detail:
            sd = format_date(info.study_date or case.study_date)
            if sd:
                tl.append((sd, DIM_TEXT_COLOR))
        tr: list[tuple[str, QColor]] = []
        tr.append((info.series_description or (self.role or "Series"), TEXT_COLOR))
        if detail:
            se = f"Se {info.series_number}" if info.series_number is not None else ""
            tr.append((" \u00b7 ".join(x for x in (roles.modality_text(vol), se) if x), DIM_TEXT_COLOR))
            if info.institution and not self.ctx.deidentified:
                tr.append((info.institution, DIM_TEXT_COLOR))
        frame = self.frame
        bl: list[tuple[str, QColor]] = []
        pos_mm = frame.slice_position_mm(self.n)
        bl.append((f"Im {self.n + 1}/{frame.n_slices}   Pos {pos_mm:.1f} mm", TEXT_COLOR))
        if detail:
            bl.append((f"Slice spacing {frame.slice_spacing:.2f} mm   Pixel {frame.pixel_spacing[0]:.2f}"
                       f" \u00d7 {frame.pixel_spacing[1]:.2f} mm", DIM_TEXT_COLOR))
        wl = self.window
        if wl is not None:
            bl.append((f"W {wl.width:.0f}  L {wl.center:.0f}", TEXT_COLOR))
        br: list[tuple[str, QColor]] = []
        for w in info.warnings[:2] if detail else info.warnings[:1]:
            br.append((w if len(w) < 70 else w[:67] + "...", WARN_COLOR))
        level = level_at(self.session.document.plan, self.session.cursor_lps) \
            if self.cursor_linked() and self.session.document.plan.levels else None
        if level:
            br.append((f"Level {level}", overlays2d.LEVEL_COLOR))
        mode = "acquisition" if frame.mode == "acquisition" else "patient axes"
        br.append((f"{self.title} ({mode})", DIM_TEXT_COLOR))
        mag = self.zoom * frame.pixel_spacing[0]
        br.append((f"Zoom {mag:.2f}\u00d7", TEXT_COLOR))
        return {"top_left": tl, "top_right": tr, "bottom_left": bl, "bottom_right": br}

    def hover_info(self, pos: QPointF) -> str:
        vol = self.volume
        p = self.model_point(pos)
        if vol is None or p is None:
            return ""
        ijk = np.round(vol.world_to_ijk(p)).astype(int)
        ni, nj, nk = vol.shape_ijk
        inside = 0 <= ijk[0] < ni and 0 <= ijk[1] < nj and 0 <= ijk[2] < nk
        val = f"{float(vol.array[ijk[2], ijk[1], ijk[0]]):g}" if inside else "outside"
        return f"LPS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm   value {val}   {self.title} Im {self.n + 1}/" \
               f"{self.frame.n_slices}"

    # ------------------------------------------------------------------ context menu
    def context_menu_actions(self, menu: QMenu) -> None:
        vols = self.session.volumes()
        if vols:
            sub = menu.addMenu("Show series")
            for key, vol in vols.items():
                act = sub.addAction(vol.info.series_description or key)
                act.setCheckable(True)
                act.setChecked(key == self.series_key)
                act.triggered.connect(lambda _=False, k=key: self.choose_series(k))
        if self.volume is not None:
            self.fill_window_menu(menu.addMenu(f"Window/level ({self.window_sequence()})"))

    def window_sequence(self) -> str:
        """The sequence name the window/level presets of this view's series are kept under."""
        vol = self.volume
        return sequence_of(vol, roles.role_of(self.session, self.series_key or "")) if vol is not None else ""

    def window_presets(self):
        vol = self.volume
        if vol is None:
            return []
        if self.ctx.presets is None:
            return [("Automatic", vol.auto_window())]
        return self.ctx.presets.presets_for(vol, self.window_sequence())

    def fill_window_menu(self, menu: QMenu) -> None:
        super().fill_window_menu(menu)
        if self.ctx.presets is not None and self.volume is not None:
            seq = self.window_sequence()
            menu.addSeparator()
            menu.addAction(f"Save current as a {seq} preset...", lambda: self.save_window_preset(seq))

    def save_window_preset(self, sequence: str, name: Optional[str] = None) -> None:
        if self.window is None or self.ctx.presets is None:
            return
        if name is None:
            name, ok = QInputDialog.getText(self, "Save window/level preset",
                                            f"Name of the {sequence} preset:")
            if not ok or not name.strip():
                return
        self.ctx.presets.save_preset(sequence, name.strip(), self.window)
        self.ctx.message.emit(f"Saved window/level preset '{name.strip()}' for {sequence}")
