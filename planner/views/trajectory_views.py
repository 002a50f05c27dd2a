"""Views along the active trajectory (the "trajectory" layout): an oblique view along the introducer
and a probe's-eye view perpendicular to the path, both reslices of a volume.

They are :class:`planner.views.slice_view.SliceView` subclasses on a
:class:`planner.display.slice_geometry.PlaneFrame` (an arbitrary plane, resliced with VTK), so
window/level, zoom/pan, the series menu, measurements, the plan overlays (instrument cuts at their
real diameters, zone circles, draggable entry/bend/target handles) and the corner annotations are
the slice views' own. The planes come from :mod:`planner.display.trajectory_planes`.

* **Oblique** (:class:`ObliqueTrajectoryView`): the plane through the introducer axis that holds the
  vertebra's cranio-caudal direction, the introducer horizontal (entry on the right). Wheel and
  arrow keys spin the plane about the introducer (:data:`ROTATION_STEP_DEG` a step), Home returns
  to the cranio-caudal plane, End turns to the plane of the cannula's curve.
* **Probe's eye** (:class:`ProbeEyeView`): the plane perpendicular to the path at a position along
  it; wheel and arrow keys step along the path (:data:`PROBE_STEP_MM`), Home goes to the skin (or
  the bone entry when the image does not show the skin), End to the target. It shows where the
  plane cuts the instruments and the zone, and the distance to the target.

The views follow ``Session.active_trajectory`` (the plan's first trajectory when none is selected)
and the plan's changes (drags in any view, undo). While a handle is dragged in one of these views
its plane stays still (a plane that followed the point under the mouse would move under it) and
follows when the mouse is released. Views keep display state only; every edit goes through the
PlanDocument (undo).
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget

from planner.display.annotations import active_trajectory, trajectory_name
from planner.display.slice_geometry import PlaneFrame, sphere_cut
from planner.display.trajectory_planes import TrajectoryAxis
from planner.document import PlanChange
from planner.imaging.volume import Volume
from planner.plan import Trajectory
from planner.views.canvas import DIM_TEXT_COLOR, TEXT_COLOR
from planner.views.context import ViewContext
from planner.views.render import overlays2d
from planner.views.render.surface import Handle
from planner.views.slice_view import SliceView

log = logging.getLogger(__name__)

#: Rotation of the oblique plane per wheel notch or arrow key (display choice, degrees).
ROTATION_STEP_DEG = 5.0
#: Rotation per click of the oblique view's rotate buttons (degrees).
ROTATION_BUTTON_DEG = 15.0
#: Step of the probe's-eye plane along the path per wheel notch or arrow key (display choice, mm).
PROBE_STEP_MM = 1.0
#: Margin around the path shown by the oblique view's fitted camera (display choice, mm).
OBLIQUE_MARGIN_MM = 35.0
#: Width of the region around the path shown by the probe's-eye view's fitted camera (mm).
PROBE_FIELD_MM = 70.0
#: The views reslice the volume only this far around the path (mm): zooming out further shows the
#: region's edge; fewer pixels keep a reslice within a few milliseconds while the plan is dragged.
RESLICE_MARGIN_MM = 80.0
#: The resliced region's edges are rounded out to this step (mm), so that small edits of the path
#: leave the region, and an unmoved plane's picture, as they are.
RESLICE_EXTENT_STEP_MM = 20.0
#: The linked crosshair is drawn in these views only when the cursor is this close to the plane (mm).
CURSOR_NEAR_PLANE_MM = 2.0
#: Instrument cuts further than this from the path point are not drawn in the probe's eye (mm).
PROBE_CUT_RANGE_MM = 40.0

NO_TRAJECTORY_TEXT = "Plan a trajectory to see the views along it"


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / float(np.linalg.norm(v))


class TrajectoryPlaneView(SliceView):
    """A slice view whose plane is placed by the active trajectory (subclasses choose the plane)."""

    #: The plane moved (new trajectory, plan edit, rotation or position); titles and controls follow.
    plane_changed = Signal()
    kind = ""
    default_title = ""

    def __init__(self, context: ViewContext, series_key: Optional[str] = None, parent: Optional[QWidget] = None,
                 *, title: str = "") -> None:
        super().__init__(context, self.kind, None, parent,  # type: ignore[arg-type]
                         title=title or self.default_title)
        self.axis: Optional[TrajectoryAxis] = None
        self.trajectory: Optional[Trajectory] = None
        self.axis_error = ""
        self._dirty = True
        self._pending = False
        self._plane_version = 0
        self.subscribe(self.session.active_trajectory_changed, self._on_active)
        self.init_state()
        if series_key is not None:
            self.set_series(series_key)

    # ------------------------------------------------------------------ series
    @property
    def volume(self) -> Optional[Volume]:
        img = self.session.images.get(self.series_key) if self.series_key else None
        return img if isinstance(img, Volume) else None

    def set_series(self, key: Optional[str], *, keep_camera: bool = False) -> None:
        img = self.session.images.get(key) if key else None
        if not isinstance(img, Volume):
            super().set_series(None)
            return
        self.series_key = key
        self.frame = None
        self.trajectory = None
        self.window = self.default_window()
        self._dirty = True
        self.sync()
        if not keep_camera:
            self.fit()
        self.series_changed.emit(key or "")
        self.update()

    def empty_text(self) -> str:
        if self.volume is None:
            return "No series loaded for this view"
        if self.axis_error:
            return f"The trajectory's path cannot be shown: {self.axis_error}"
        return NO_TRAJECTORY_TEXT

    # ------------------------------------------------------------------ following the plan
    def sync(self) -> None:
        """Place the plane for the current plan and trajectory (when something changed)."""
        if not self._dirty or self.closed:
            return
        self._dirty = False
        vol = self.volume
        traj = active_trajectory(self.session)
        self.axis_error = ""
        if vol is None or traj is None:
            changed = self.frame is not None or self.trajectory is not None
            self.frame, self.axis, self.trajectory = None, None, None
            if changed:
                self.plane_changed.emit()
            return
        try:
            axis = self.session.results.trajectory_axis(traj, self.series_key)
        except ValueError as exc:  # coinciding points while a user drags
            self.frame, self.axis = None, None
            self.axis_error = str(exc)
            self.plane_changed.emit()
            return
        new = self.trajectory is None or self.trajectory.id != traj.id
        self.trajectory, self.axis = traj, axis
        point, right, down, ref = self.place_plane(axis)
        rel = np.vstack([axis.points_lps, axis.target_lps]) - point
        xs, ys = rel @ _unit(right), rel @ _unit(down)
        m, q = RESLICE_MARGIN_MM, RESLICE_EXTENT_STEP_MM
        extent = (q * math.floor((xs.min() - m) / q), q * math.floor((ys.min() - m) / q),
                  q * math.ceil((xs.max() + m) / q), q * math.ceil((ys.max() + m) / q))
        before = None
        if self.frame is None or self.frame.volume is not vol:
            self.frame = PlaneFrame(vol, point, right, down, ref_lps=ref, extent_mm=extent)
        else:
            f = self.frame
            before = (f.crn_to_lps.copy(), f.shape, f.ref_lps.copy())
            f.set_plane(point, right, down, ref_lps=ref, extent_mm=extent)
        f = self.frame
        if before is None or before[1] != f.shape or not np.allclose(before[0], f.crn_to_lps, rtol=0, atol=1e-9) \
                or not np.allclose(before[2], f.ref_lps, rtol=0, atol=1e-9):
            # the picture moved (a target dragged along a curved path leaves the oblique plane alone)
            self._plane_version += 1
            self._image_dirty = True
        if new and self._fitted:
            self.fit()
        self.plane_changed.emit()

    def init_state(self) -> None:
        """Subclasses set their display state here (before the first plane is placed)."""

    def place_plane(self, axis: TrajectoryAxis) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(point on the plane, screen right, screen down, reference point of plane coordinates)."""
        raise NotImplementedError

    def invalidate_plane(self) -> None:
        self._dirty = True
        self.update()

    def _handle_dragging(self) -> bool:
        return self._drag is not None and self._drag[0] == "handle"

    def _on_plan_changed(self, change: PlanChange) -> None:
        super()._on_plan_changed(change)
        if self.closed:
            return
        if self._handle_dragging():
            self._pending = True  # the plane stays still under the mouse until the release
            self.update()
            return
        self._dirty = True
        self.update()

    def _on_active(self, _tid) -> None:
        if not self.closed:
            self.invalidate_plane()

    def _on_cursor_moved(self, lps: np.ndarray) -> None:
        if not self.closed:
            self.update()

    def _on_display_changed(self) -> None:
        if not self.closed:
            self.update()

    def mouseReleaseEvent(self, ev):  # noqa: N802
        super().mouseReleaseEvent(ev)
        if self._pending and not self._handle_dragging():
            self._pending = False
            self.invalidate_plane()

    # ------------------------------------------------------------------ canvas interface
    def paintEvent(self, ev):  # noqa: N802
        self.sync()
        super().paintEvent(ev)

    def current_handles(self) -> list[Handle]:
        self.sync()
        return super().current_handles()

    def display_state_key(self) -> tuple:
        return super().display_state_key() + (self._plane_version,)

    def set_slice(self, n: int) -> None:
        pass

    def paint_overlays(self, painter: QPainter) -> list[Handle]:
        if self.frame is None:
            return []
        surface = self.surface()
        cursor = self.session.cursor_lps
        if self.cursor_linked() and abs(float(self.frame.distance_to_plane(cursor))) <= CURSOR_NEAR_PLANE_MM:
            overlays2d.paint_crosshair(painter, surface, cursor)
        # level labels only: the landmarks are edited in the slice views
        handles = overlays2d.paint_levels(painter, surface, self.frame, self.n, self.session.document.plan, False)
        handles += self.paint_plan(painter, surface)
        self.paint_extras(painter)
        return handles

    def paint_extras(self, painter: QPainter) -> None:
        pass

    def trajectory_title(self) -> str:
        t = self.trajectory
        return trajectory_name(self.session.document.plan, t) if t is not None else ""

    def plane_lines(self) -> list[str]:
        return []

    def corner_texts(self) -> dict[str, list[tuple[str, QColor]]]:
        out = super().corner_texts()
        if not out or self.frame is None:
            return out
        bl = [(text, TEXT_COLOR) for text in self.plane_lines()]
        wl = self.window
        if wl is not None:
            bl.append((f"W {wl.width:.0f}  L {wl.center:.0f}", TEXT_COLOR))
        out["bottom_left"] = bl
        br = out.get("bottom_right", [])
        if len(br) >= 2:
            br[-2] = (f"{self.title} \u2014 {self.trajectory_title()}", DIM_TEXT_COLOR)
        return out

    def hover_info(self, pos: QPointF) -> str:
        vol = self.volume
        p = self.model_point(pos)
        if vol is None or p is None:
            return ""
        val = vol.sample(p[None, :], order=0, fill=np.nan)[0]
        value = "outside" if not np.isfinite(val) else f"{float(val):g}"
        return f"LPS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm   value {value}   {self.title} {self.trajectory_title()}"

    def _path_bounds(self, margin_mm: float) -> tuple[float, float, float, float]:
        axis = self.axis
        xy = self.frame.to_plane(axis.points_lps)
        r = axis.zone_radius_mm
        x0, y0 = xy.min(axis=0) - margin_mm - r
        x1, y1 = xy.max(axis=0) + margin_mm + r
        return float(x0), float(y0), float(x1), float(y1)


class ObliqueTrajectoryView(TrajectoryPlaneView):
    """The plane through the introducer axis, spun about it by :attr:`angle_deg` (0: cranio-caudal)."""

    kind = "oblique"
    default_title = "Along the trajectory"
    rotation_changed = Signal(float)

    def init_state(self) -> None:
        #: Rotation of the plane about the introducer (degrees, 0 = cranio-caudal plane).
        self.angle_deg = 0.0

    def place_plane(self, axis: TrajectoryAxis):
        right, down = axis.oblique_basis(self.angle_deg)
        return axis.entry_lps, right, down, axis.entry_lps

    def set_rotation(self, angle_deg: float) -> None:
        a = float(angle_deg) % 360.0
        if a > 180.0:
            a -= 360.0
        if abs(a - self.angle_deg) < 1e-9:
            return
        self.angle_deg = a
        self.invalidate_plane()
        self.rotation_changed.emit(a)

    def rotate_by(self, delta_deg: float) -> None:
        self.set_rotation(self.angle_deg + delta_deg)

    def curve_angle_deg(self) -> Optional[float]:
        self.sync()
        return self.axis.curve_angle_deg() if self.axis is not None else None

    def show_curve_plane(self) -> None:
        a = self.curve_angle_deg()
        if a is None:
            self.ctx.message.emit("This path is straight: every plane about the introducer holds it")
            return
        self.set_rotation(a)

    def step(self, delta: int) -> None:
        self.rotate_by(delta * ROTATION_STEP_DEG)

    def go_to_end(self, last: bool) -> None:
        if last:
            self.show_curve_plane()
        else:
            self.set_rotation(0.0)

    def plane_bounds(self):
        if self.frame is None or self.axis is None:
            return super().plane_bounds()
        return self._path_bounds(OBLIQUE_MARGIN_MM)

    def rotation_text(self) -> str:
        a = self.angle_deg
        text = f"Rotation {a:+.0f}\u00b0 about the introducer"
        curve = self.axis.curve_angle_deg() if self.axis is not None else None
        if abs(a) < 0.5:
            text += " (cranio-caudal plane)"
        elif curve is not None and abs(((a - curve) + 180.0) % 360.0 - 180.0) < 0.5:
            text += " (plane of the curve)"
        return text

    def plane_lines(self) -> list[str]:
        lines = [self.rotation_text()]
        if self.axis is not None:
            lines.append(f"Path {self.axis.end_mm:.1f} mm from the bone entry to the target")
        lines.append(self.trajectory_title())
        return lines


class ProbeEyeView(TrajectoryPlaneView):
    """The plane perpendicular to the path at :attr:`position_mm` (0 at the bone entry)."""

    kind = "probe"
    default_title = "Probe's eye"
    position_changed = Signal(float)

    def init_state(self) -> None:
        #: Distance before the target along the path: kept while the plan changes (0 = at the target).
        self.before_target_mm = 0.0
        #: Position of the plane along the path (mm from the bone entry).
        self.position_mm = 0.0

    def place_plane(self, axis: TrajectoryAxis):
        s = axis.clamp(axis.end_mm - self.before_target_mm)
        self.position_mm = s
        right, down, _normal = axis.probe_basis(s)
        point = axis.point_at(s)
        return point, right, down, point

    def set_position(self, position_mm: float) -> None:
        """Move the plane to ``position_mm`` along the path (clamped to the skin .. past the zone)."""
        self.sync()
        axis = self.axis
        if axis is None:
            return
        s = axis.clamp(float(position_mm))
        if abs(s - self.position_mm) < 1e-9 and abs((axis.end_mm - s) - self.before_target_mm) < 1e-9:
            return
        self.before_target_mm = axis.end_mm - s
        self.invalidate_plane()
        self.sync()
        self.position_changed.emit(self.position_mm)

    def step(self, delta: int) -> None:
        self.set_position(self.position_mm + delta * PROBE_STEP_MM)

    def go_to_end(self, last: bool) -> None:
        self.sync()
        if self.axis is not None:
            self.set_position(self.axis.end_mm if last else self.axis.start_mm)

    def distance_to_target_mm(self) -> Optional[float]:
        """Along the path from the plane to the target (negative past the target)."""
        return None if self.axis is None else self.axis.end_mm - self.position_mm

    def zone_cut(self) -> Optional[tuple[np.ndarray, float]]:
        """Where the plane cuts the active trajectory's ablation zone: (centre LPS, radius mm)."""
        self.sync()
        if self.frame is None or self.axis is None:
            return None
        return sphere_cut(self.axis.target_lps, self.axis.zone_radius_mm, self.frame.plane_point(0),
                          self.frame.normal)

    def instrument_cuts(self) -> list[tuple[str, np.ndarray, float]]:
        """(instrument, LPS point, diameter mm) where the plane crosses the active trajectory's
        instruments near the path point (largest first)."""
        self.sync()
        if self.frame is None or self.trajectory is None:
            return []
        geom = self.session.results.shape(self.trajectory)
        centre = self.frame.ref_lps
        out = []
        for inst in geom.instruments:
            pts = np.asarray(inst.points_lps, dtype=float)
            dist = self.frame.distance_to_plane(pts)
            for i in np.flatnonzero((dist[:-1] <= 0) & (dist[1:] >= 0) | (dist[:-1] >= 0) & (dist[1:] <= 0)):
                a, b = dist[i], dist[i + 1]
                t = 0.5 if a == b else float(a / (a - b))
                p = pts[i] + (pts[i + 1] - pts[i]) * t
                if float(np.linalg.norm(p - centre)) <= PROBE_CUT_RANGE_MM:
                    out.append((inst.name, p, float(inst.diameter_mm)))
                    break
        out.sort(key=lambda x: -x[2])
        return out

    def failing_here(self) -> list[str]:
        """Labels of the failing parts of the active trajectory's path at this plane (e.g. "canal 3.5 mm"):
        the instrument's cut is then drawn red (the labels come with the plan's overlays)."""
        self.sync()
        if self.frame is None or self.trajectory is None:
            return []
        rep = self.session.results.report(self.trajectory)
        here = self.frame.ref_lps
        return [part.label for _c, part in rep.failing_parts
                if float(np.min(np.linalg.norm(np.asarray(part.points_lps) - here, axis=1))) <= PROBE_STEP_MM]

    def paint_extras(self, p: QPainter) -> None:
        failing = self.failing_here()
        for name, point, diameter in self.instrument_cuts():
            w = self.to_widget(point[None, :])[0]
            color = QColor(overlays2d.FAILING_COLOR if failing else
                           overlays2d.INSTRUMENT_COLORS.get(name, overlays2d.DEFAULT_INSTRUMENT))
            r = max(2.5, diameter / 2.0 * self.zoom)
            fill = QColor(color)
            fill.setAlpha(120)
            p.setPen(QPen(color, 1.5))
            p.setBrush(QBrush(fill))
            p.drawEllipse(QPointF(float(w[0]), float(w[1])), r, r)
        # the path's axis: a small reticle at the centre of the plane
        c = self.to_widget(self.frame.ref_lps[None, :])[0]
        x, y = float(c[0]), float(c[1])
        p.setPen(QPen(QColor(255, 255, 255, 200), 1.0))
        p.setBrush(Qt.BrushStyle.NoBrush)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            p.drawLine(QPointF(x + 6 * dx, y + 6 * dy), QPointF(x + 12 * dx, y + 12 * dy))
        cut = self.zone_cut()
        if cut is not None:
            cw = self.to_widget(cut[0][None, :])[0]
            r = cut[1] * self.zoom
            self.draw_label(p, QPointF(float(cw[0]) + r * 0.72 + 4, float(cw[1]) - r * 0.72 - 4),
                            f"zone \u00d8 {2 * cut[1]:.1f} mm here", overlays2d.ZONE_COLOR, bold=False)

    def plane_bounds(self):
        if self.frame is None or self.axis is None:
            return super().plane_bounds()
        h = PROBE_FIELD_MM / 2.0
        return (-h, -h, h, h)

    def position_text(self) -> str:
        s = self.position_mm
        if s < -1e-6:
            return f"{-s:.1f} mm outside the bone entry (skin side)"
        return f"{s:.1f} mm along the path from the bone entry"

    def target_text(self) -> str:
        d = self.distance_to_target_mm()
        if d is None:
            return ""
        if d < -0.05:
            return f"{-d:.1f} mm past the target"
        if abs(d) <= 0.05:
            return "At the target"
        return f"{d:.1f} mm to the target"

    def plane_lines(self) -> list[str]:
        return [self.target_text(), self.position_text(), self.trajectory_title()]


# ---------------------------------------------------------------------- panels with controls
class TrajectoryViewPanel(QWidget):
    """A trajectory view with a thin control strip below it (the layout's cell holds the panel;
    ``.view`` is the canvas, as for the fluoroscopy panels)."""

    def __init__(self, view: TrajectoryPlaneView, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.view = view
        self.bar = QWidget(self)
        self.bar.setObjectName("trajectoryViewBar")
        self._bar = QHBoxLayout(self.bar)
        self._bar.setContentsMargins(4, 1, 4, 1)
        self._bar.setSpacing(3)
        self.label = QLabel(self.bar)
        self.label.setObjectName("trajectoryViewLabel")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(view, 1)
        lay.addWidget(self.bar)
        view.plane_changed.connect(self.refresh)

    def button(self, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton(self.bar)
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        b.clicked.connect(lambda _=False: slot())
        self._bar.addWidget(b)
        return b

    def refresh(self) -> None:
        pass

    def shutdown(self) -> None:
        try:
            self.view.plane_changed.disconnect(self.refresh)
        except (RuntimeError, TypeError):  # pragma: no cover
            pass
        self.view.shutdown()


class ObliquePanel(TrajectoryViewPanel):
    def __init__(self, view: ObliqueTrajectoryView, parent: Optional[QWidget] = None) -> None:
        super().__init__(view, parent)
        step = ROTATION_BUTTON_DEG
        self.rotate_back = self.button(f"\u21ba {step:.0f}\u00b0", "Spin the plane about the introducer "
                                       f"(wheel or arrow keys in the view: {ROTATION_STEP_DEG:.0f}\u00b0)",
                                       lambda: view.rotate_by(-step))
        self.rotate_on = self.button(f"\u21bb {step:.0f}\u00b0", "Spin the plane about the introducer "
                                     f"(wheel or arrow keys in the view: {ROTATION_STEP_DEG:.0f}\u00b0)",
                                     lambda: view.rotate_by(step))
        self.cranio_caudal = self.button("Cranio-caudal", "The plane of the introducer and the vertebra's "
                                         "cranio-caudal axis (Home)", lambda: view.set_rotation(0.0))
        self.curve = self.button("Curve plane", "The plane that holds the whole curved path (End)",
                                 view.show_curve_plane)
        self._bar.addWidget(self.label, 1)
        view.rotation_changed.connect(lambda _a: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        v: ObliqueTrajectoryView = self.view  # type: ignore[assignment]
        self.label.setText(v.rotation_text() if v.axis is not None else "")
        has = v.axis is not None
        for b in (self.rotate_back, self.rotate_on, self.cranio_caudal):
            b.setEnabled(has)
        self.curve.setEnabled(has and v.axis.curve_angle_deg() is not None)


class ProbePanel(TrajectoryViewPanel):
    #: Slider resolution (mm per step).
    SLIDER_MM = 0.5

    def __init__(self, view: ProbeEyeView, parent: Optional[QWidget] = None) -> None:
        super().__init__(view, parent)
        self.to_start = self.button("Skin", "Go to the skin (or the bone entry when the image does not show "
                                    "the skin) (Home)", lambda: view.go_to_end(False))
        self.slider = QSlider(Qt.Orientation.Horizontal, self.bar)
        self.slider.setToolTip("Position of the plane along the path (wheel or arrow keys in the view: "
                               f"{PROBE_STEP_MM:.0f} mm)")
        self.slider.valueChanged.connect(self._slider_moved)
        self._bar.addWidget(self.slider, 1)
        self.to_target = self.button("Target", "Go to the target (End)", lambda: view.go_to_end(True))
        self._bar.addWidget(self.label)
        self._updating = False
        view.position_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def _slider_moved(self, value: int) -> None:
        if not self._updating:
            self.view.set_position(value * self.SLIDER_MM)

    def refresh(self) -> None:
        v: ProbeEyeView = self.view  # type: ignore[assignment]
        axis = v.axis
        self._updating = True
        try:
            for w in (self.slider, self.to_start, self.to_target):
                w.setEnabled(axis is not None)
            if axis is None:
                self.label.setText("")
                return
            self.to_start.setText("Skin" if axis.skin_lps is not None else "Entry")
            # slider steps inside the path's range (rounding must not add a step past either end)
            lo = int(math.ceil(axis.start_mm / self.SLIDER_MM - 1e-6))
            hi = int(math.floor(axis.clamp(math.inf) / self.SLIDER_MM + 1e-6))
            self.slider.setRange(lo, hi)
            self.slider.setValue(int(round(v.position_mm / self.SLIDER_MM)))
            self.label.setText(v.target_text())
        finally:
            self._updating = False
