"""Interaction modes as strategy objects (STYLE.md 2.12): what a left-drag or click does.

The bindings decide which mouse button runs the *active tool*; these classes decide what the tool
does. Each view (slice or fluoroscopy) offers the same small interface the tools call:
``model_point(pos)``, ``to_widget(points)``, ``window``, ``set_window()``, ``set_cursor_at(pos)``,
``commit_measurement(kind, points)``, ``measure_label(kind, points)``, ``calibrate(points)``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, Callable, Optional, Protocol

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from planner.document import PlanEditError
from planner.imaging.volume import WindowLevel
from planner.views.render.overlays2d import MEASURE_COLOR
from planner.views.render.surface import Handle


class ToolView(Protocol):
    """What a tool needs of the view it works in (``planner.views.canvas.ImageCanvas`` provides it)."""

    window: Optional[WindowLevel]

    def model_point(self, pos: QPointF) -> Optional[np.ndarray]: ...

    def to_widget(self, points: np.ndarray) -> np.ndarray: ...

    def data_range(self) -> tuple[float, float]: ...

    def set_window(self, wl: WindowLevel) -> None: ...

    def set_cursor_at(self, pos: QPointF) -> None: ...

    def commit_measurement(self, kind: str, points: Any) -> None: ...

    def measure_label(self, kind: str, points: Any) -> str: ...

    def calibrate(self, points: Any) -> None: ...

    def draw_label(self, p: QPainter, pos: QPointF, text: str, color: QColor, bold: bool = True) -> QRectF: ...

    def update(self) -> None: ...


class Tool:
    name = ""
    cursor = Qt.CursorShape.ArrowCursor
    #: True while a multi-click drawing is in progress (handles are not grabbed then).
    busy = False

    def press(self, view: ToolView, pos: QPointF, modifiers: Qt.KeyboardModifier) -> None:
        pass

    def drag(self, view: ToolView, pos: QPointF) -> None:
        pass

    def release(self, view: ToolView, pos: QPointF) -> None:
        pass

    def hover(self, view: ToolView, pos: QPointF) -> None:
        pass

    def cancel(self, view: ToolView) -> None:
        self.busy = False

    def paint(self, view: ToolView, painter: QPainter) -> None:
        pass


class WindowLevelTool(Tool):
    """Drag right = wider window (less contrast), drag down = higher level (darker)."""

    name = "window_level"
    cursor = Qt.CursorShape.SizeAllCursor

    def __init__(self) -> None:
        self._start: Optional[QPointF] = None
        self._w0: Optional[WindowLevel] = None

    def press(self, view, pos, modifiers):
        self._start = QPointF(pos)
        self._w0 = view.window

    def drag(self, view, pos):
        if self._start is None or self._w0 is None:
            return
        dx = pos.x() - self._start.x()
        dy = pos.y() - self._start.y()
        w0 = self._w0
        rng = view.data_range()
        sens = max(w0.width, (rng[1] - rng[0]) * 0.02, 1e-6) / 200.0
        width = max(w0.width + dx * sens * 2.0, 1e-3)
        center = w0.center + dy * sens
        view.set_window(WindowLevel(center, width, "user"))

    def release(self, view, pos):
        self._start = None
        self._w0 = None


class CrosshairTool(Tool):
    name = "crosshair"
    cursor = Qt.CursorShape.CrossCursor

    def press(self, view, pos, modifiers):
        view.set_cursor_at(pos)

    def drag(self, view, pos):
        view.set_cursor_at(pos)


class _PointsTool(Tool):
    """Click points one by one (or drag for the first segment); commits when enough are placed."""

    needed = 2
    kind = "distance"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self) -> None:
        self.points: list[Any] = []
        self._hover: Optional[Any] = None
        self._press_pos: Optional[QPointF] = None
        self._view: Optional[ToolView] = None

    def _reset(self) -> None:
        self.points = []
        self._hover = None
        self.busy = False
        self._view = None

    def press(self, view, pos, modifiers):
        if self._view is not None and self._view is not view:
            self._reset()
        self._view = view
        p = view.model_point(pos)
        if p is None:
            return
        self._press_pos = QPointF(pos)
        self.points.append(p)
        self.busy = True
        self._hover = p
        if len(self.points) >= self.needed:
            self._finish(view)
        view.update()

    def drag(self, view, pos):
        self._hover = view.model_point(pos)
        view.update()

    def release(self, view, pos):
        # a drag from the first point places the second point where the button is released
        if self._press_pos is not None and self.busy and len(self.points) == 1:
            if (pos - self._press_pos).manhattanLength() > 6:
                p = view.model_point(pos)
                if p is not None:
                    self.points.append(p)
                    if len(self.points) >= self.needed:
                        self._finish(view)
        self._press_pos = None
        view.update()

    def hover(self, view, pos):
        if self.busy and view is self._view:
            self._hover = view.model_point(pos)
            view.update()

    def cancel(self, view):
        self._reset()
        view.update()

    def _finish(self, view) -> None:
        pts = list(self.points[: self.needed])
        self._reset()
        self.commit(view, pts)

    def commit(self, view, points) -> None:
        view.commit_measurement(self.kind, points)

    def paint(self, view, painter):
        if not self.busy or view is not self._view:
            return
        pts = list(self.points) + ([self._hover] if self._hover is not None else [])
        if len(pts) < 1:
            return
        w = view.to_widget(np.asarray(pts, dtype=float))
        pen = QPen(MEASURE_COLOR, 1.5)
        pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        for a, b in zip(w[:-1], w[1:]):
            painter.drawLine(QPointF(*a), QPointF(*b))
        for q in w:
            painter.drawEllipse(QPointF(*q), 3.0, 3.0)
        if len(pts) >= 2:
            text = view.measure_label(self.kind, pts[: self.needed]) if len(pts) >= self.needed else \
                view.measure_label("distance", pts[:2])
            if text:
                view.draw_label(painter, QPointF(*w[-1]) + QPointF(10, -10), text, MEASURE_COLOR)


class DistanceTool(_PointsTool):
    name = "distance"
    kind = "distance"
    needed = 2


class AngleTool(_PointsTool):
    name = "angle"
    kind = "angle"
    needed = 3


class CalibrateTool(_PointsTool):
    """Fluoroscopy only: a line over an object of known length, then its size in mm."""

    name = "calibrate"
    kind = "calibrate"
    needed = 2

    def commit(self, view, points) -> None:
        view.calibrate(points)


def make_tool(name: str) -> Tool:
    return {"window_level": WindowLevelTool, "crosshair": CrosshairTool, "distance": DistanceTool,
            "angle": AngleTool, "calibrate": CalibrateTool}[name]()


class HandleDrag:
    """Dragging a plan handle (landmark, trajectory point, measurement point): one undo step.
    ``apply(handle, point, merge_key)`` is the view's edit for its handles."""

    def __init__(self, handle: Handle, press_model: np.ndarray,
                 apply: Callable[[Handle, np.ndarray, str], None]) -> None:
        self.handle = handle
        self._apply = apply
        self.press_model = np.asarray(press_model, dtype=float)
        self.start_point = np.asarray(handle.point, dtype=float)
        #: A fresh merge key per mouse press: every move of this drag merges into one undo step.
        self.merge_key = f"drag-{uuid.uuid4().hex}"
        self.moved = False

    def move_to(self, model_point: np.ndarray) -> None:
        delta = np.asarray(model_point, dtype=float) - self.press_model
        if not self.moved and float(np.linalg.norm(delta)) < 1e-9:
            return
        self.moved = True
        self._apply(self.handle, self.start_point + delta, self.merge_key)


class PointerGesture:
    """What a mouse press, the moves and the release do in an image canvas (the canvas only forwards its
    events): a pending marking mode takes a left click; else the bindings choose the action; with the
    tool (or the edit gesture) on a handle the handle is dragged (one undo step) when the tool or the
    modifier grabs handles, else the active tool runs; the other buttons pan, zoom, window or move the
    crosshair; a right click without a drag opens the context menu.

    The canvas provides ``ctx``, ``zoom``, ``active_tool()``, ``_hit_handle(pos)``, ``select_handle()``,
    ``model_point()``, ``apply_handle()``, ``requested_point()``, ``set_cursor_at()``, ``pan_by()``,
    ``zoom_about()`` and ``_show_context_menu()``."""

    def __init__(self) -> None:
        #: (kind, object) of the gesture in progress: "taken", "handle", "tool", "crosshair", "pan", "zoom".
        self.drag: Optional[tuple[str, Any]] = None
        self._press_pos: Optional[QPointF] = None
        self._last: Optional[QPointF] = None

    def press(self, view: Any, pos: QPointF, button: Qt.MouseButton, modifiers: Qt.KeyboardModifier) -> None:
        self._press_pos = QPointF(pos)
        self.drag = None
        ctx = view.ctx
        if button == Qt.MouseButton.LeftButton and ctx.point_request is not None:
            point = view.requested_point(pos)
            if point is not None:  # a marking mode takes the click, whatever the tool
                self.drag = ("taken", None)
                ctx.deliver_point(point)
                return
        action = ctx.bindings.mouse_action(button, modifiers)
        if action in ("tool", "edit"):
            tool = view.active_tool()
            handle = None if tool.busy else view._hit_handle(pos)
            if not tool.busy:
                view.select_handle(handle)  # a click selects (for Del) whatever the tool; only edits drag
            if handle is not None and ctx.grabs_handles(modifiers):
                model = view.model_point(pos)
                if model is not None:
                    self.drag = ("handle", HandleDrag(handle, model, view.apply_handle))
                    return
            if action == "edit":
                return  # the edit gesture off a handle does nothing
            tool.press(view, pos, modifiers)
            self.drag = ("tool", tool)
        elif action == "crosshair":
            view.set_cursor_at(pos)
            self.drag = ("crosshair", None)
        elif action in ("pan", "zoom"):
            self.drag = (action, None)
            self._last = QPointF(pos)
        elif action == "window_level":
            tool = make_tool("window_level")
            tool.press(view, pos, modifiers)
            self.drag = ("tool", tool)

    def move(self, view: Any, pos: QPointF) -> bool:
        """Follow a move with a button down; False when no gesture is in progress (a hover)."""
        if self.drag is None:
            return False
        kind, obj = self.drag
        if kind == "tool":
            obj.drag(view, pos)
        elif kind == "handle":
            model = view.model_point(pos)
            if model is not None:
                try:
                    obj.move_to(model)
                except PlanEditError as exc:
                    view.ctx.message.emit(str(exc))
                    self.drag = None
        elif kind == "crosshair":
            view.set_cursor_at(pos)
        elif kind == "pan":
            view.pan_by(pos.x() - self._last.x(), pos.y() - self._last.y())
            self._last = QPointF(pos)
        elif kind == "zoom":
            view.zoom_about(math.exp(-(pos.y() - self._last.y()) * 0.01), self._press_pos)
            self._last = QPointF(pos)
        return True

    def release(self, view: Any, pos: QPointF, button: Qt.MouseButton) -> None:
        drag, self.drag = self.drag, None
        if drag is not None:
            kind, obj = drag
            if kind == "tool":
                obj.release(view, pos)
            elif kind == "handle" and obj.moved:
                view.ctx.message.emit(f"Moved {obj.handle.tooltip or 'point'} (Ctrl+Z undoes)")
            elif kind == "zoom" and button == Qt.MouseButton.RightButton and self._press_pos is not None \
                    and (pos - self._press_pos).manhattanLength() < 4:
                view._show_context_menu(pos)
        elif button == Qt.MouseButton.RightButton:
            view._show_context_menu(pos)
