"""Lengths and calibration on a fluoroscopy view (viewer-conventions.md 1.7).

Lengths use :meth:`ProjectionImage.measurement_scale` with the plan's calibration of the image:
"mm at detector" until the user calibrates against an object of known length, "px" when the image has
no spacing at all. Measurements and calibrations are plan edits (undo). Part of
:class:`planner.views.fluoro_view.FluoroView` (a mixin)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from planner.display.annotations import angle_deg
from planner.document import PlanEditError
from planner.imaging.volume import MeasurementScale
from planner.plan import Measurement


class MeasuringMixin:
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
        if not self.showing_carm():
            self.ctx.message.emit("Measurements are kept on C-arm images and slices, not on a virtual projection")
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
        if not self.showing_carm():
            self.ctx.message.emit("A virtual projection is in patient mm already; calibrate C-arm images only")
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

