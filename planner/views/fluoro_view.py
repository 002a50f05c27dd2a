"""Fluoroscopy (projection image) view: frames with cine playback, window/level, zoom/pan, and the
measurement tools with honest units.

Lengths use :meth:`ProjectionImage.measurement_scale` with the plan's calibration of the image:
"mm at detector" until the user calibrates against an object of known length (viewer-conventions.md
1.7), "px" when the image has no spacing at all. Model coordinates are image pixels (col, row).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget

from planner.document import PlanChange, PlanEditError
from planner.imaging.volume import MeasurementScale, ProjectionImage, WindowLevel
from planner.plan import Measurement
from planner.views.canvas import DIM_TEXT_COLOR, TEXT_COLOR, WARN_COLOR, Handle, ImageCanvas
from planner.views.context import ViewContext
from planner.views.render.overlays2d import LANDMARK_COLOR, paint_measurement_shape
from planner.views.slice_view import format_person_name
from planner.views.tools import angle_deg

log = logging.getLogger(__name__)

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H", "S": "I", "I": "S"}
_DISPLAY = {"H": "S", "F": "I"}


def _letters(code: str, opposite: bool = False) -> str:
    out = ""
    for ch in code.upper():
        if ch not in _OPPOSITE:
            continue
        c = _OPPOSITE[ch] if opposite else ch
        out += _DISPLAY.get(c, c)
    return out


class FluoroView(ImageCanvas):
    frame_changed = Signal(int)
    playing_changed = Signal(bool)

    def __init__(self, context: ViewContext, series_key: Optional[str] = None, parent: Optional[QWidget] = None,
                 *, title: str = "Fluoroscopy") -> None:
        super().__init__(context, parent)
        self.title = title
        self.series_key: Optional[str] = None
        self.image: Optional[ProjectionImage] = None
        self.frame_index = 0
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        self.subscribe(self.session.document.changed, self._on_plan_changed)
        self.subscribe(self.session.images_changed, self._on_images_changed)
        if series_key is not None:
            self.set_series(series_key)

    # ------------------------------------------------------------------ series and frames
    def set_series(self, key: Optional[str]) -> None:
        img = self.session.images.get(key) if key else None
        self.stop()
        if not isinstance(img, ProjectionImage):
            self.series_key, self.image = None, None
            self.update()
            return
        self.series_key, self.image = key, img
        self.frame_index = 0
        self.window = img.default_window()
        self._image_dirty = True
        self.fit()
        self.frame_changed.emit(0)
        self.update()

    def _on_images_changed(self, key: str) -> None:
        if not self.closed and key == self.series_key and key not in self.session.images:
            self.set_series(None)

    @property
    def sop_instance_uid(self) -> str:
        return self.image.sop_instance_uid if self.image is not None else ""

    def set_frame(self, idx: int) -> None:
        if self.image is None:
            return
        idx = int(min(max(idx, 0), self.image.n_frames - 1))
        if idx != self.frame_index:
            self.frame_index = idx
            self._image_dirty = True
            self.update()
            self.frame_changed.emit(idx)

    def step(self, delta: int) -> None:
        self.set_frame(self.frame_index + delta)

    def go_to_end(self, last: bool) -> None:
        if self.image is not None:
            self.set_frame(self.image.n_frames - 1 if last else 0)

    # ------------------------------------------------------------------ cine
    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def play(self) -> None:
        if self.image is None or self.image.n_frames < 2 or self.closed:
            return
        interval = int(self.image.frame_time_ms or 100)
        self._timer.start(max(20, interval))
        self.playing_changed.emit(True)
        self.update()

    def stop(self) -> None:
        if self._timer.isActive():
            self._timer.stop()
            self.playing_changed.emit(False)
            self.update()

    def toggle_play(self) -> None:
        self.stop() if self.playing else self.play()

    def _advance(self) -> None:
        if self.closed or self.image is None:
            self._timer.stop()
            return
        nxt = (self.frame_index + 1) % self.image.n_frames
        self.set_frame(nxt)

    def shutdown(self) -> None:
        self._timer.stop()
        super().shutdown()

    # ------------------------------------------------------------------ canvas interface
    def has_image(self) -> bool:
        return self.image is not None

    def current_array(self) -> Optional[np.ndarray]:
        return self.image.frames[self.frame_index] if self.image is not None else None

    def plane_bounds(self):
        if self.image is None:
            return (0.0, 0.0, 1.0, 1.0)
        return (-0.5, -0.5, self.image.cols - 0.5, self.image.rows - 0.5)

    def model_point(self, pos: QPointF) -> Optional[np.ndarray]:
        if self.image is None:
            return None
        return self.widget_to_plane(pos)

    def to_widget(self, points: np.ndarray) -> np.ndarray:
        return self.plane_to_widget(np.asarray(points, dtype=float).reshape(-1, 2))

    def auto_window(self) -> WindowLevel:
        if self.image is None:
            return WindowLevel(128, 256, "auto")
        a = np.asarray(self.image.frames[self.frame_index], dtype=np.float64)
        lo, hi = np.percentile(a, [0.1, 99.9])
        return WindowLevel((lo + hi) / 2, max(hi - lo, 1.0), "auto")

    def default_window(self) -> WindowLevel:
        return self.image.default_window() if self.image is not None else WindowLevel(128, 256, "auto")

    def data_range(self) -> tuple[float, float]:
        if self.image is None:
            return (0.0, 1.0)
        f = self.image.frames
        return (float(f.min()), float(f.max()))

    def empty_text(self) -> str:
        return f"No {self.title.lower()} image loaded"

    # ------------------------------------------------------------------ measurement scale
    def calibration_mm_per_pixel(self) -> Optional[float]:
        sop = self.sop_instance_uid
        for c in self.session.document.plan.fluoro_calibrations:
            if c.sop_instance_uid == sop:
                return c.mm_per_pixel
        return None

    def scale(self) -> MeasurementScale:
        if self.image is None:
            return MeasurementScale(None, "px")
        return self.image.measurement_scale(self.calibration_mm_per_pixel())

    def measure_label(self, kind: str, points: Sequence[np.ndarray]) -> str:
        pts = np.asarray(points, dtype=float)
        sc = self.scale()
        if kind in ("distance", "calibrate") and len(pts) >= 2:
            return f"{sc.length(pts[0], pts[1]):.1f} {sc.unit_label}"
        if kind == "angle" and len(pts) >= 3:
            if sc.mm_per_pixel is not None:
                sr, scol = sc.mm_per_pixel
                pts = pts * np.array([scol, sr])
            return f"{angle_deg(np.c_[pts, np.zeros(len(pts))]):.1f}\u00b0"
        return ""

    def commit_measurement(self, kind: str, points: Sequence[np.ndarray]) -> None:
        if self.image is None:
            return
        pts = [(float(p[0]), float(p[1])) for p in points]
        m = Measurement(kind=kind, series_instance_uid=self.series_key or "", sop_instance_uid=self.sop_instance_uid,
                        frame=self.frame_index, points_px=pts)
        try:
            mid = self.session.document.add_measurement(m)
        except PlanEditError as exc:
            self.ctx.message.emit(str(exc))
            return
        self.selected_measurement = mid
        self.ctx.message.emit(f"{kind.capitalize()}: {self.measure_label(kind, points)} (kept in the plan)")

    def calibrate(self, points: Sequence[np.ndarray]) -> None:
        if self.image is None:
            return
        p0, p1 = (np.asarray(p, dtype=float) for p in points[:2])
        length_px = float(np.hypot(*(p1 - p0)))
        if length_px < 2:
            self.ctx.message.emit("Calibration line too short: draw over the whole object")
            return
        known = self.ctx.ask_length_mm(f"Known length of the object under the line ({length_px:.0f} px), in mm:")
        if not known:
            self.ctx.message.emit("Calibration cancelled")
            return
        mm_per_px = float(known) / length_px
        try:
            self.session.document.set_fluoro_calibration(self.sop_instance_uid, mm_per_px,
                                                         method=f"known length {known:g} mm")
        except PlanEditError as exc:
            self.ctx.message.emit(str(exc))
            return
        self.ctx.message.emit(f"Calibrated: {mm_per_px:.4f} mm per pixel (known length {known:g} mm)")

    def _on_plan_changed(self, change: PlanChange) -> None:
        if self.closed:
            return
        if change.touches("measurement") or change.touches("measurements") or change.touches("fluoro_calibration") \
                or change.touches("fluoro_landmark") or change.touches("fluoro_landmarks") or change.source == "load":
            self.update()

    # ------------------------------------------------------------------ painting
    def display_state_key(self) -> tuple:
        return (self.series_key, self.frame_index)

    def paint_overlays(self, painter: QPainter) -> list[Handle]:
        if self.image is None:
            return []
        handles: list[Handle] = []
        doc = self.session.document
        sop = self.sop_instance_uid
        for m in doc.plan.measurements:
            if not m.points_px or m.sop_instance_uid != sop or (self.image.n_frames > 1 and m.frame != self.frame_index):
                continue
            pts = np.asarray(m.points_px, dtype=float)
            pts_w = self.to_widget(pts)
            paint_measurement_shape(self, painter, pts_w, m.kind, self.measure_label(m.kind, pts),
                                    m.id == self.selected_measurement)
            for idx in range(len(pts)):
                mid = m.id

                def apply(point, key, mid=mid, idx=idx):
                    cur = [list(x) for x in doc.plan.measurement(mid).points_px]
                    cur[idx] = [float(point[0]), float(point[1])]
                    doc.set_measurement_points(mid, points_px=cur, merge_key=key)

                handles.append(Handle("measurement", (m.id, idx), pts[idx], (float(pts_w[idx][0]), float(pts_w[idx][1])),
                                      apply, f"{m.kind} measurement point (Del deletes the measurement)"))
        for lm in doc.plan.fluoro_landmarks:
            if lm.sop_instance_uid != sop or (self.image.n_frames > 1 and lm.frame != self.frame_index):
                continue
            pt = np.asarray(lm.point_px, dtype=float)
            w = self.to_widget(pt[None, :])[0]
            painter.setPen(QPen(LANDMARK_COLOR, 1.5))
            painter.drawLine(QPointF(w[0] - 6, w[1]), QPointF(w[0] + 6, w[1]))
            painter.drawLine(QPointF(w[0], w[1] - 6), QPointF(w[0], w[1] + 6))
            self.draw_label(painter, QPointF(w[0] + 8, w[1] - 8), lm.kind.replace("_", " "), LANDMARK_COLOR, False)
            lid = lm.id
            handles.append(Handle("fluoro_landmark", (lid,), pt, (float(w[0]), float(w[1])),
                                  lambda point, key, lid=lid: doc.move_fluoro_landmark(lid, [float(point[0]), float(point[1])],
                                                                                       merge_key=key),
                                  lm.kind.replace("_", " ")))
        return handles

    def edge_letters(self) -> dict[str, str]:
        po = self.image.geometry.patient_orientation if self.image is not None else ()
        if len(po) < 2:
            return {}
        return {"right": _letters(po[0]), "left": _letters(po[0], True),
                "bottom": _letters(po[1]), "top": _letters(po[1], True)}

    def corner_texts(self) -> dict[str, list[tuple[str, QColor]]]:
        img = self.image
        if img is None:
            return {}
        info = img.info
        detail = self.ctx.annotation_detail
        case = self.session.document.plan.case
        tl = [("De-identified display", DIM_TEXT_COLOR)] if self.ctx.deidentified else \
            [(format_person_name(info.patient_name or case.patient_name), TEXT_COLOR)]
        if detail and not self.ctx.deidentified and (info.patient_id or case.patient_id):
            tl.append((info.patient_id or case.patient_id, TEXT_COLOR))
        tr = [(info.series_description or self.title, TEXT_COLOR)]
        if detail:
            g = img.geometry
            bits = [info.modality, g.view_position]
            if g.positioner_primary_angle_deg is not None:
                bits.append(f"{g.positioner_primary_angle_deg:+.0f}\u00b0")
            tr.append((" \u00b7 ".join(b for b in bits if b), DIM_TEXT_COLOR))
        bl = [(f"Frame {self.frame_index + 1}/{img.n_frames}" + ("  \u25b6" if self.playing else ""), TEXT_COLOR)]
        if self.window is not None:
            bl.append((f"W {self.window.width:.0f}  L {self.window.center:.0f}", TEXT_COLOR))
        sc = self.scale()
        unit_color = WARN_COLOR if sc.unit_label in ("mm at detector", "px") else TEXT_COLOR
        br = [(f"Lengths: {sc.unit_label}", unit_color), (f"Zoom {self.zoom:.2f}\u00d7", TEXT_COLOR)]
        return {"top_left": tl, "top_right": tr, "bottom_left": bl, "bottom_right": br}

    def hover_info(self, pos: QPointF) -> str:
        p = self.model_point(pos)
        if p is None or self.image is None:
            return ""
        c, r = int(round(p[0])), int(round(p[1]))
        inside = 0 <= c < self.image.cols and 0 <= r < self.image.rows
        val = self.image.frames[self.frame_index][r, c] if inside else None
        v = "outside" if val is None else (f"{float(val):g}" if np.ndim(val) == 0 else str(tuple(int(x) for x in val)))
        return f"{self.title}: pixel ({p[0]:.1f}, {p[1]:.1f})   value {v}   frame {self.frame_index + 1}/{self.image.n_frames}"


class FluoroPanel(QWidget):
    """A fluoroscopy view with its cine controls (play/pause, frame slider)."""

    def __init__(self, context: ViewContext, series_key: Optional[str] = None, parent: Optional[QWidget] = None,
                 *, title: str = "Fluoroscopy") -> None:
        super().__init__(parent)
        self.view = FluoroView(context, series_key, self, title=title)
        self.play_button = QToolButton(self)
        self.play_button.setText("\u25b6")
        self.play_button.setToolTip("Play / pause the frames (cine). Shortcut: Space")
        self.play_button.clicked.connect(self.view.toggle_play)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setToolTip("Frame")
        self.slider.valueChanged.connect(self.view.set_frame)
        self.label = QLabel(self)
        self.label.setObjectName("frameLabel")
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.play_button)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.view, 1)
        self.controls = QWidget(self)
        self.controls.setObjectName("cineBar")
        self.controls.setLayout(bar)
        lay.addWidget(self.controls)
        self.view.frame_changed.connect(self._sync)
        self.view.playing_changed.connect(self._sync_button)
        self._sync()

    def set_series(self, key: Optional[str]) -> None:
        self.view.set_series(key)
        self._sync()

    def _sync(self, *_):
        img = self.view.image
        n = img.n_frames if img is not None else 1
        self.controls.setVisible(n > 1)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(self.view.frame_index)
        self.slider.blockSignals(False)
        self.label.setText(f"{self.view.frame_index + 1}/{n}")
        self._sync_button()

    def _sync_button(self):
        self.play_button.setText("\u23f8" if self.view.playing else "\u25b6")
