"""The guided marking of a level's landmarks on a C-arm image, and the marks and measurements drawn
on it as draggable handles (:mod:`planner.display.fluoro` holds the sequence and the texts). Every
click is one plan edit. Part of :class:`planner.views.fluoro_view.FluoroView` (a mixin)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from planner import fluoro
from planner.display import fluoro as guidance
from planner.display.annotations import default_level_id
from planner.document import PlanEditError
from planner.plan import FluoroLandmark
from planner.views.render.overlays2d import LANDMARK_COLOR, paint_measurement_shape
from planner.views.render.surface import Handle


class MarkingMixin:
    def effective_view(self) -> str:
        """"AP" or "LAT": the C-arm image's View Position when it has one, else this view's role."""
        v = fluoro.view_of_image(self.carm_image) if self.carm_image is not None else None
        return v or self.view_name

    def guidance_level_id(self) -> Optional[str]:
        levels = {lv.id for lv in self.session.document.plan.levels}
        if self._level_id in levels:
            return self._level_id
        self._level_id = default_level_id(self.session)
        return self._level_id

    def guidance_level_name(self) -> str:
        lid = self.guidance_level_id()
        try:
            return self.session.document.plan.level(lid).name if lid else ""
        except KeyError:
            return ""

    def set_guidance_level(self, level_id: str, *, user: bool = False) -> None:
        if level_id == self._level_id:
            return
        if self.marking is not None:
            self.stop_marking(cancelled=True)
        self._level_id = level_id
        self._level_chosen = self._level_chosen or user
        self.update()
        self.guidance_changed.emit()

    def can_mark(self) -> tuple[bool, str]:
        """Whether landmarks can be marked now, and why not."""
        if self.session.document.read_only:
            return False, "The plan is open read-only (review): no marks can be added"
        if not self.showing_carm():
            return False, "Marks go on a C-arm image: choose it as the source of this view"
        if self.guidance_level_id() is None:
            return False, "The plan has no levels yet: find the levels first"
        return True, ""

    def marks_here(self, level_id: Optional[str] = None) -> list[FluoroLandmark]:
        """The plan's marks on the image and frame shown (of one level, when given)."""
        if not self.showing_carm():
            return []
        sop = self.sop_instance_uid
        return [lm for lm in self.session.document.plan.fluoro_landmarks
                if lm.sop_instance_uid == sop and lm.frame == self.frame_index
                and (level_id is None or lm.level_id == level_id)]

    def start_marking(self) -> bool:
        """Begin the guided marking of the chosen level on this image: the marks it lacks, else all
        of them again (a click replaces a mark of the same kind)."""
        ok, why = self.can_mark()
        if not ok:
            self.ctx.message.emit(why)
            self.guidance_changed.emit()
            return False
        self.stop()
        lid = self.guidance_level_id()
        assert lid is not None
        kinds = guidance.GUIDED_MARKS[self.effective_view()]
        have = {lm.kind for lm in self.marks_here(lid)}
        todo = tuple(k for k in kinds if k not in have) or kinds
        self.marking = guidance.MarkSequence(lid, self.guidance_level_name(), todo)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setFocus(Qt.FocusReason.OtherFocusReason)
        self.ctx.message.emit(self._mark_prompt())
        self.update()
        self.guidance_changed.emit()
        return True

    def stop_marking(self, cancelled: bool = False) -> None:
        if self.marking is None:
            return
        seq = self.marking
        self.marking = None
        self.setCursor(self.active_tool().cursor)
        if cancelled:
            self.ctx.message.emit(f"Marking of {seq.level_name} stopped ({seq.index} of {len(seq.kinds)} placed)")
        self.update()
        self.guidance_changed.emit()

    def _mark_prompt(self) -> str:
        seq = self.marking
        if seq is None or seq.done:
            return ""
        po = self.carm_image.geometry.patient_orientation if self.carm_image is not None else ()
        return guidance.mark_prompt(seq.kind, seq.level_name, seq.index, len(seq.kinds), po)

    def place_mark(self, point_px: Sequence[float]) -> bool:
        """Place the mark the guided sequence asks for at an image pixel (col, row); one undo step."""
        seq = self.marking
        if seq is None or seq.done or self.carm_image is None:
            return False
        col, row = float(point_px[0]), float(point_px[1])
        if not (-0.5 <= col <= self.carm_image.cols - 0.5 and -0.5 <= row <= self.carm_image.rows - 0.5):
            self.ctx.message.emit("Click inside the image")
            return False
        doc = self.session.document
        existing = next((lm for lm in self.marks_here(seq.level_id) if lm.kind == seq.kind), None)
        try:
            if existing is not None:
                doc.move_fluoro_landmark(existing.id, [col, row])
            else:
                doc.add_fluoro_landmark(FluoroLandmark(sop_instance_uid=self.sop_instance_uid, frame=self.frame_index,
                                                       level_id=seq.level_id, kind=seq.kind, point_px=(col, row)))
        except (PlanEditError, KeyError) as exc:
            self.ctx.message.emit(str(exc))
            self.stop_marking()
            return False
        seq.index += 1
        if seq.done:
            self.stop_marking()
            text, _ = self.guidance_text()
            self.ctx.message.emit(text)
        else:
            self.ctx.message.emit(self._mark_prompt())
            self.update()
            self.guidance_changed.emit()
        return True

    def delete_landmark(self, landmark_id: str) -> None:
        try:
            self.session.document.remove_fluoro_landmark(landmark_id)
        except (PlanEditError, KeyError) as exc:
            self.ctx.message.emit(str(exc))
            return
        if self.selected_landmark == landmark_id:
            self.selected_landmark = None
        self.ctx.message.emit("Mark deleted (Ctrl+Z undoes)")

    def delete_selected_measurement(self) -> None:
        if self.selected_landmark is not None:
            self.delete_landmark(self.selected_landmark)
            return
        super().delete_selected_measurement()


    def _paint_marks(self, painter: QPainter) -> list[Handle]:
        handles: list[Handle] = []
        doc = self.session.document
        sop = self.sop_instance_uid
        for m in doc.plan.measurements:
            if not m.points_px or m.sop_instance_uid != sop or \
                    (self.image.n_frames > 1 and m.frame != self.frame_index):
                continue
            pts = np.asarray(m.points_px, dtype=float)
            pts_w = self.to_widget(pts)
            paint_measurement_shape(painter, self.surface(), pts_w, m.kind, self.measure_label(m.kind, pts),
                                    m.id == self.selected_measurement)
            for idx in range(len(pts)):
                handles.append(Handle("measurement", (m.id, idx), pts[idx],
                                      (float(pts_w[idx][0]), float(pts_w[idx][1])),
                                      f"{m.kind} measurement point (Del deletes the measurement)"))
        levels = {lv.id: lv.name for lv in doc.plan.levels}
        current = self.guidance_level_id()
        shown = [lm for lm in doc.plan.fluoro_landmarks
                 if lm.sop_instance_uid == sop and (self.image.n_frames == 1 or lm.frame == self.frame_index)]
        centres: dict[str, np.ndarray] = {}
        for lid_ in {lm.level_id for lm in shown}:
            centres[lid_] = np.mean([lm.point_px for lm in shown if lm.level_id == lid_], axis=0)
        painter.setFont(self._font)
        fm = painter.fontMetrics()
        for lm in shown:
            pt = np.asarray(lm.point_px, dtype=float)
            w = self.to_widget(pt[None, :])[0]
            selected = lm.id == self.selected_landmark
            color = QColor(LANDMARK_COLOR)
            if lm.level_id != current:
                color.setAlpha(120)
            painter.setPen(QPen(QColor(0, 0, 0, 200), 3.5))
            painter.drawLine(QPointF(w[0] - 6, w[1]), QPointF(w[0] + 6, w[1]))
            painter.drawLine(QPointF(w[0], w[1] - 6), QPointF(w[0], w[1] + 6))
            painter.setPen(QPen(color, 2.5 if selected else 1.5))
            painter.drawLine(QPointF(w[0] - 6, w[1]), QPointF(w[0] + 6, w[1]))
            painter.drawLine(QPointF(w[0], w[1] - 6), QPointF(w[0], w[1] + 6))
            name = guidance.MARK_SHORT.get(lm.kind, lm.kind.replace("_", " "))
            level_name = levels.get(lm.level_id, "")
            text = name if lm.level_id == current or not level_name else f"{level_name} {name}"
            # the label away from the level's other marks: outward to the side, below a middle mark
            dx = float((pt - centres[lm.level_id])[0]) * self.zoom
            tw = fm.horizontalAdvance(text) + 8
            if abs(dx) < 12:
                pos = QPointF(w[0] - tw / 2, w[1] + 18)
            elif dx < 0:
                pos = QPointF(w[0] - 10 - tw, w[1] - 8)
            else:
                pos = QPointF(w[0] + 10, w[1] - 8)
            self.draw_label(painter, pos, text, color, selected)
            full = f"{level_name} {name}" if level_name else name
            lid = lm.id
            handles.append(Handle("fluoro_landmark", (lid,), pt, (float(w[0]), float(w[1])),
                                  f"{full} mark (Del or right-click deletes)"))
        return handles

    def apply_handle(self, handle: Handle, point: np.ndarray, merge_key: str) -> None:
        doc = self.session.document
        if handle.kind == "measurement":
            mid, idx = handle.key
            cur = [list(x) for x in doc.plan.measurement(mid).points_px]
            cur[idx] = [float(point[0]), float(point[1])]
            doc.set_measurement_points(mid, points_px=cur, merge_key=merge_key)
        elif handle.kind == "fluoro_landmark":
            doc.move_fluoro_landmark(handle.key[0], [float(point[0]), float(point[1])], merge_key=merge_key)
        else:
            raise ValueError(f"a fluoroscopy view has no {handle.kind} handles")

