"""The 2D image canvas shared by the slice views and the fluoroscopy views.

Drawn with QPainter (crisp text at any device pixel ratio; no OpenGL, so ``QWidget.grab()`` works
and nothing can render after close). The image is windowed to 8 bits and drawn with the exact
affine map from image pixels to the view plane (millimetres for slices, pixels for fluoroscopy);
zoom is widget pixels per plane unit, pan is the plane point at the widget centre.

Subclasses provide the image, the model coordinates (LPS mm or image pixels) and the overlays.

Painting is layered so that a drag, which changes only the plan drawn on top, does not pay for
the picture underneath (the issue-6 frame budget, ``bench/plan_bench.py --part views``):

* the *base layer*: background, the windowed image drawn with its transform, and the overlays of
  :meth:`ImageCanvas.paint_static_overlays` (those that a drag does not move, e.g. the crosshair
  and the level labels of a slice view), rendered once into a pixmap and blitted while the display
  state (image, window/level, zoom, pan, size, pixel ratio, :meth:`ImageCanvas.static_overlays_key`)
  is unchanged;
* the overlays of :meth:`ImageCanvas.paint_overlays` and the active tool, drawn every paint;
* the *text layer*: orientation letters and corner annotations, drawn into a transparent image
  keyed by their text and blended on top (only where there is text).

Set :attr:`ImageCanvas.layer_cache` to False to paint everything directly (tests compare both).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen, QPixmap, QRegion, QTransform
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from planner.display.annotations import active_trajectory
from planner.document import PlanEditError
from planner.imaging.volume import WindowLevel
from planner.views.context import ViewContext
from planner.views.lifecycle import ModelWidget
from planner.views.render.surface import Handle, Surface, draw_label
from planner.views.tools import PointerGesture, Tool, make_tool

log = logging.getLogger(__name__)

TEXT_COLOR = QColor("#e8e8e8")
DIM_TEXT_COLOR = QColor("#9fb3c8")
LETTER_COLOR = QColor("#ffd54f")
WARN_COLOR = QColor("#ffb74d")
BACKGROUND = QColor("#000000")


def window_to_uint8(arr: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window/level to 0..255 (contiguous uint8, same shape)."""
    width = max(float(width), 1e-6)
    lo = float(center) - width / 2.0
    scale = 255.0 / width
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        # lookup table over the dtype's range: one gather instead of float arithmetic
        info = np.iinfo(arr.dtype)
        base = int(info.min)
        values = np.arange(info.min, int(info.max) + 1, dtype=np.float32)
        lut = np.clip((values - lo) * scale, 0, 255).astype(np.uint8)
        idx = arr if base == 0 else (arr.astype(np.int32) - base)
        return np.ascontiguousarray(lut[idx])
    out = np.asarray(arr, dtype=np.float32) - lo
    out *= scale
    np.clip(out, 0, 255, out=out)
    return np.ascontiguousarray(out.astype(np.uint8))


class ImageCanvas(ModelWidget, QWidget):
    #: Double-click: the layout maximises this view (and restores it on the next double-click).
    maximize_requested = Signal()
    #: Zoom or pan changed (compare views follow each other).
    view_changed = Signal()
    #: Window/level changed.
    window_changed = Signal()
    #: Emitted once, after the first paint that showed an image.
    image_shown = Signal()

    smooth = True
    _collect_text_rects = False
    HANDLE_RADIUS_PX = 7.0
    #: Cache the base layer (image + static overlays) and the text layer between paints.
    layer_cache = True

    def __init__(self, context: ViewContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.ctx = context
        self.session = context.session
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.zoom = 1.0
        self.center = np.zeros(2)
        self._fitted = True
        self.window: Optional[WindowLevel] = None
        self._qimage: Optional[QImage] = None
        self._img8: Optional[np.ndarray] = None
        self._affine = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        self._image_dirty = True
        #: Incremented each time the 8-bit image is rebuilt (part of the base layer's key).
        self._image_generation = 0
        self._base_layer: Optional[QPixmap] = None
        self._base_key: Optional[tuple] = None
        self._static_handles: list[Handle] = []
        self._text_layer: Optional[QImage] = None
        self._text_key: Optional[tuple] = None
        self._text_rects: list[QRectF] = []
        self._text_region = QRegion()
        #: Times the base / text layer was rendered (tests check that a drag reuses them).
        self.base_layer_renders = 0
        self.text_layer_renders = 0
        #: What the mouse buttons do (the marking mode, handles, the active tool, pan/zoom/window).
        self.gesture = PointerGesture()
        self._wheel_accum = 0.0
        self._handles: list[Handle] = []
        self._handles_at: tuple = ()
        self._hover_handle: Optional[Handle] = None
        #: (hovered handle id, whether a drag would move it) of the last hover report
        self._hover_state: Optional[tuple] = None
        self.selected_measurement: Optional[str] = None
        self._tools: dict[str, Tool] = {}
        self.last_paint_ms = 0.0
        #: Paints of this view that showed an image (start-up time and tests read it).
        self.image_paints = 0
        self._font = QFont(self.font())
        self._font.setPointSizeF(9.0)
        self._font_bold = QFont(self._font)
        self._font_bold.setBold(True)
        self._letter_font = QFont(self._font)
        self._letter_font.setPointSizeF(12.0)
        self._letter_font.setBold(True)
        self.subscribe(context.tool_changed, self._on_tool_changed)
        self.subscribe(context.display_changed, self.update)
        self.subscribe(context.point_request_changed, self._on_point_request)
        self._on_tool_changed(context.tool)

    # ================================================================== subclass interface
    def has_image(self) -> bool:
        return False

    def current_array(self) -> Optional[np.ndarray]:
        return None

    def current_affine(self) -> np.ndarray:
        """2x3: image pixel (c, r) -> plane (x, y)."""
        return np.array([[1.0, 0, 0], [0, 1.0, 0]])

    def plane_bounds(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, 1.0, 1.0)

    def model_point(self, pos: QPointF) -> Optional[np.ndarray]:
        """Model coordinates (LPS mm or image pixels) under a widget position."""
        return None

    def to_widget(self, points: np.ndarray) -> np.ndarray:
        """Model points (n, d) -> widget positions (n, 2)."""
        return np.zeros((len(points), 2))

    def auto_window(self) -> WindowLevel:
        return WindowLevel(128, 256, "auto")

    def data_range(self) -> tuple[float, float]:
        return (0.0, 255.0)

    def step(self, delta: int) -> None:
        pass

    def go_to_end(self, last: bool) -> None:
        pass

    def corner_texts(self) -> dict[str, list[tuple[str, QColor]]]:
        return {}

    def edge_letters(self) -> dict[str, str]:
        return {}

    def paint_overlays(self, painter: QPainter) -> list[Handle]:
        """Overlays drawn on every paint, above the static ones (what a drag moves)."""
        return []

    def static_overlays_key(self) -> Optional[tuple]:
        """What :meth:`paint_static_overlays` draws depends on, besides the view geometry and the
        image (which the base layer's key holds already); None: this view has no static overlays.
        The base layer is rebuilt whenever this key changes."""
        return None

    def paint_static_overlays(self, painter: QPainter) -> list[Handle]:
        """Overlays under :meth:`paint_overlays` that change rarely; cached with the image in the
        base layer (called only when :meth:`static_overlays_key` is not None)."""
        return []

    def empty_text(self) -> str:
        return "No image"

    def set_cursor_at(self, pos: QPointF) -> None:
        pass

    def commit_measurement(self, kind: str, points: Sequence[np.ndarray]) -> None:
        pass

    def measure_label(self, kind: str, points: Sequence[np.ndarray]) -> str:
        return ""

    def calibrate(self, points: Sequence[np.ndarray]) -> None:
        self.ctx.message.emit("Calibration applies to fluoroscopy images only")

    def hover_info(self, pos: QPointF) -> str:
        return ""

    def window_presets(self) -> list[tuple[str, WindowLevel]]:
        """The window/level presets offered for this view's image (name, window)."""
        return [("Automatic (0.1-99.9 percentile)", self.auto_window())] if self.has_image() else []

    def fill_window_menu(self, menu: QMenu) -> None:
        """The window/level presets of this view as checkable menu entries (the toolbar's W/L presets
        button and the context menu)."""
        for name, wl in self.window_presets():
            act = menu.addAction(name, lambda w=wl: self.set_window(w))
            act.setCheckable(True)
            act.setChecked(self.window is not None and abs(self.window.center - wl.center) < 1e-6
                           and abs(self.window.width - wl.width) < 1e-6)

    def context_menu_actions(self, menu: QMenu) -> None:
        pass

    def apply_handle(self, handle: Handle, point: np.ndarray, merge_key: str) -> None:
        """Move the plan point a handle of this view stands for to ``point`` (model coordinates): one
        document edit; ``merge_key`` makes one drag one undo step."""
        raise NotImplementedError(f"{type(self).__name__} has no {handle.kind} handles")

    def delete_selected_measurement(self) -> None:
        mid = self.selected_measurement
        if not mid:
            return
        try:
            self.session.document.remove_measurement(mid)
        except PlanEditError as exc:
            self.ctx.message.emit(str(exc))
            return
        self.selected_measurement = None
        self.ctx.message.emit("Measurement deleted")

    # ================================================================== tools
    def active_tool(self) -> Tool:
        name = self.ctx.tool
        tool = self._tools.get(name)
        if tool is None:
            tool = self._tools[name] = make_tool(name)
        return tool

    def _on_tool_changed(self, name: str) -> None:
        for t in self._tools.values():
            if t.busy:
                t.cancel(self)
        self._hover_state = None
        self._on_point_request(self.ctx.point_request[0] if self.ctx.point_request is not None else "")

    def _on_point_request(self, prompt: str) -> None:
        """A marking mode shows the cross cursor in the views that take its click."""
        if self.closed:
            return
        marking = bool(prompt) and self.requested_point(QPointF(self.width() / 2, self.height() / 2)) is not None
        self.setCursor(Qt.CursorShape.CrossCursor if marking else self.active_tool().cursor)

    # ================================================================== window / level
    def set_window(self, wl: WindowLevel) -> None:
        if wl.width <= 0:
            return
        if self.window == wl:
            return
        self.window = wl
        self._image_dirty = True
        self.window_changed.emit()
        self.update()

    def invalidate_image(self) -> None:
        self._image_dirty = True
        self.update()

    def _ensure_image(self) -> None:
        if not self._image_dirty:
            return
        self._image_dirty = False
        arr = self.current_array()
        if arr is None:
            self._qimage = None
            self._img8 = None
            return
        if self.window is None:
            self.window = self.auto_window()
        if arr.ndim == 3:  # RGB
            u8 = np.ascontiguousarray(arr[..., :3].astype(np.uint8))
            rows, cols = u8.shape[:2]
            self._qimage = QImage(u8.data, cols, rows, 3 * cols, QImage.Format.Format_RGB888)
        else:
            u8 = window_to_uint8(arr, self.window.center, self.window.width)
            rows, cols = u8.shape
            self._qimage = QImage(u8.data, cols, rows, cols, QImage.Format.Format_Grayscale8)
        self._img8 = u8
        self._affine = self.current_affine()
        self._image_generation += 1

    def display_image_uint8(self) -> Optional[np.ndarray]:
        """The windowed 8-bit image currently shown (the 3D view textures its planes with it)."""
        self._ensure_image()
        return self._img8

    # ================================================================== camera
    def fit(self) -> None:
        x0, y0, x1, y1 = self.plane_bounds()
        w, h = max(self.width(), 1), max(self.height(), 1)
        bw, bh = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
        self.zoom = 0.96 * min(w / bw, h / bh)
        self.center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        self._fitted = True

    def reset_view(self) -> None:
        self.fit()
        self.set_window(self.default_window())
        self.view_changed.emit()
        self.update()

    def default_window(self) -> WindowLevel:
        return self.auto_window()

    def set_camera(self, zoom: float, center: Sequence[float]) -> None:
        """Zoom (widget px per plane unit) and pan (plane point at the centre); for linked views."""
        self.zoom = float(zoom)
        self.center = np.asarray(center, dtype=float).copy()
        self._fitted = False
        self.update()

    def plane_to_widget(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=float)
        return (xy - self.center) * self.zoom + np.array([self.width() / 2.0, self.height() / 2.0])

    def widget_to_plane(self, pos: QPointF) -> np.ndarray:
        p = np.array([pos.x(), pos.y()], dtype=float)
        return (p - np.array([self.width() / 2.0, self.height() / 2.0])) / self.zoom + self.center

    def zoom_about(self, factor: float, pos: Optional[QPointF] = None) -> None:
        factor = float(np.clip(factor, 0.05, 20.0))
        if pos is None:
            pos = QPointF(self.width() / 2.0, self.height() / 2.0)
        before = self.widget_to_plane(pos)
        self.zoom = float(np.clip(self.zoom * factor, 1e-3, 1e4))
        after = self.widget_to_plane(pos)
        self.center = self.center + (before - after)
        self._fitted = False
        self.view_changed.emit()
        self.update()

    def pan_by(self, dx_px: float, dy_px: float) -> None:
        self.center = self.center - np.array([dx_px, dy_px]) / self.zoom
        self._fitted = False
        self.view_changed.emit()
        self.update()

    def resizeEvent(self, ev):  # noqa: N802
        if self._fitted:
            self.fit()
        super().resizeEvent(ev)

    # ================================================================== painting
    def image_transform(self) -> QTransform:
        a = self._affine
        z = self.zoom
        w2, h2 = self.width() / 2.0, self.height() / 2.0
        cx, cy = self.center
        return QTransform(a[0, 0] * z, a[1, 0] * z, a[0, 1] * z, a[1, 1] * z,
                          (a[0, 2] - cx) * z + w2, (a[1, 2] - cy) * z + h2)

    def paintEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        import time

        t0 = time.perf_counter()
        p = QPainter(self)
        try:
            if not self.has_image():
                p.fillRect(self.rect(), BACKGROUND)
                p.setPen(DIM_TEXT_COLOR)
                p.setFont(self._font)
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.empty_text())
                self._handles = []
                return
            self._ensure_image()
            static_key = self.static_overlays_key()
            if self.layer_cache:
                p.drawPixmap(0, 0, self._current_base_layer(static_key))
                static_handles = list(self._static_handles)
            else:
                static_handles = self._paint_base(p, static_key)
            if self._qimage is not None:
                self.image_paints += 1
                if self.image_paints == 1:
                    QTimer.singleShot(0, self.image_shown.emit)
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
            try:
                self._handles = static_handles + self.paint_overlays(p)
                self._handles_at = self._handles_key()
            except Exception:  # an overlay bug must not blank the image
                log.exception("drawing the overlays failed")
                self._handles = static_handles
            self.active_tool().paint(self, p)
            self.paint_hover(p)
            if self.layer_cache and self._text_layer_cacheable():
                self._blit_text_layer(p)
            else:
                self._paint_letters(p)
                self._paint_corners(p)
            if self.hasFocus():
                pen = QPen(QColor(79, 195, 247, 110), 1)
                p.setPen(pen)
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawRect(QRectF(0.5, 0.5, self.width() - 1.0, self.height() - 1.0))
        finally:
            p.end()
            self.last_paint_ms = (time.perf_counter() - t0) * 1000.0

    # ------------------------------------------------------------------ layers
    def _paint_base(self, p: QPainter, static_key: Optional[tuple]) -> list[Handle]:
        """Background, image and static overlays; returns the static overlays' handles."""
        p.fillRect(QRectF(0, 0, self.width(), self.height()), BACKGROUND)
        if self._qimage is not None:
            p.save()
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
            p.setTransform(self.image_transform())
            img = self._qimage
            p.drawImage(QRectF(-0.5, -0.5, img.width(), img.height()), img)
            p.restore()
        if static_key is None:
            return []
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        try:
            return self.paint_static_overlays(p)
        except Exception:  # an overlay bug must not blank the image
            log.exception("drawing the static overlays failed")
            return []
        finally:
            p.restore()

    def _layer_size(self) -> tuple[int, int, float]:
        dpr = float(self.devicePixelRatioF())
        return (max(1, int(math.ceil(self.width() * dpr))), max(1, int(math.ceil(self.height() * dpr))), dpr)

    def _current_base_layer(self, static_key: Optional[tuple]) -> QPixmap:
        pw, ph, dpr = self._layer_size()
        key = (self._image_generation, id(self._qimage), self._affine.tobytes(), self.zoom,
               float(self.center[0]), float(self.center[1]), self.width(), self.height(), pw, ph, dpr,
               bool(self.smooth), static_key)
        if self._base_layer is None or key != self._base_key:
            pm = QPixmap(pw, ph)
            pm.setDevicePixelRatio(dpr)
            lp = QPainter(pm)
            try:
                self._static_handles = self._paint_base(lp, static_key)
            finally:
                lp.end()
            self._base_layer, self._base_key = pm, key
            self.base_layer_renders += 1
        return self._base_layer

    def _text_layer_cacheable(self) -> bool:
        cls = type(self)
        return (cls._paint_letters is ImageCanvas._paint_letters and cls._paint_corners is ImageCanvas._paint_corners
                and cls.draw_text is ImageCanvas.draw_text)

    def _blit_text_layer(self, p: QPainter) -> None:
        """Orientation letters and corner texts from a transparent layer keyed by their content."""
        texts = self.corner_texts()
        letters = self.edge_letters()
        pw, ph, dpr = self._layer_size()
        key = (pw, ph, dpr, self.width(), self.height(),
               tuple((c, tuple((t, col.rgba()) for t, col in lines)) for c, lines in texts.items()),
               tuple(letters.items()), self._font.key(), self._letter_font.key())
        if self._text_layer is None or key != self._text_key:
            img = QImage(pw, ph, QImage.Format.Format_ARGB32_Premultiplied)
            img.setDevicePixelRatio(dpr)
            img.fill(Qt.GlobalColor.transparent)
            lp = QPainter(img)
            self._text_rects = []
            try:
                lp.setRenderHint(QPainter.RenderHint.Antialiasing, True)
                lp.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
                self._collect_text_rects = True
                self._paint_letters(lp, letters)
                self._paint_corners(lp, texts)
            finally:
                self._collect_text_rects = False
                lp.end()
            self._text_layer, self._text_key = img, key
            region = QRegion()
            for r in self._text_rects:
                region = region.united(r.toAlignedRect())
            self._text_region = region
            self.text_layer_renders += 1
        if self._text_region.isEmpty():
            return
        # one blend clipped to the union of the text boxes (overlapping boxes must not blend twice)
        p.save()
        p.setClipRegion(self._text_region, Qt.ClipOperation.IntersectClip)
        p.drawImage(QPointF(0, 0), self._text_layer)
        p.restore()

    def draw_text(self, p: QPainter, pos: QPointF, text: str, color: QColor,
                  font: Optional[QFont] = None) -> None:
        """Text with a dark shadow, readable on any image."""
        p.setFont(font or self._font)
        if self._collect_text_rects:
            r = QRectF(p.fontMetrics().boundingRect(text)).translated(pos).adjusted(-4, -4, 5, 5)
            self._text_rects.append(r)
        p.setPen(QColor(0, 0, 0, 220))
        p.drawText(pos + QPointF(1, 1), text)
        p.setPen(color)
        p.drawText(pos, text)

    def surface(self) -> Surface:
        """This view as the overlay functions of the renderer layer see it (planner/views/render)."""
        return Surface(self.to_widget, self.zoom, float(self.width()), float(self.height()), self._font,
                       self._font_bold)

    def draw_label(self, p: QPainter, pos: QPointF, text: str, color: QColor, bold: bool = True) -> QRectF:
        """A label on a translucent dark box (measurements, level names)."""
        return draw_label(p, self.surface(), pos, text, color, bold)

    def _paint_letters(self, p: QPainter, letters: Optional[dict[str, str]] = None) -> None:
        if letters is None:
            letters = self.edge_letters()
        if not letters:
            return
        p.setFont(self._letter_font)
        fm = p.fontMetrics()
        w, h = self.width(), self.height()
        m = 6
        for edge, text in letters.items():
            if not text:
                continue
            tw = fm.horizontalAdvance(text)
            if edge == "top":
                pos = QPointF((w - tw) / 2, m + fm.ascent())
            elif edge == "bottom":
                pos = QPointF((w - tw) / 2, h - m - fm.descent())
            elif edge == "left":
                pos = QPointF(m, (h + fm.ascent() - fm.descent()) / 2)
            else:
                pos = QPointF(w - m - tw, (h + fm.ascent() - fm.descent()) / 2)
            self.draw_text(p, pos, text, LETTER_COLOR, self._letter_font)

    def _paint_corners(self, p: QPainter, texts: Optional[dict[str, list[tuple[str, QColor]]]] = None) -> None:
        if texts is None:
            texts = self.corner_texts()
        if not texts:
            return
        p.setFont(self._font)
        fm = p.fontMetrics()
        lh = fm.height()
        w, h = self.width(), self.height()
        m = 6
        # the corner texts keep clear of the orientation letters: no line beside the top or bottom letter
        # reaches it, and no corner reaches down (or up) to the letters at mid-height of the sides
        letters = self.edge_letters()
        lfm = QFontMetrics(self._letter_font)
        letter_h = lfm.height()
        gap = 8
        side_lines = max(1, int((h / 2.0 - letter_h / 2.0 - gap - m) // lh))
        # small views keep the essentials: one line per corner, and the right corners only when the
        # left and right texts fit side by side
        compact = w < 460 or h < 300
        for corner, lines in texts.items():
            lines = [ln for ln in lines if ln[0]]
            if compact and w < 300 and corner.startswith("top"):
                lines = []  # too narrow: the orientation letter needs the top edge
            if compact:
                if corner == "bottom_left":
                    lines = lines[:1] + lines[-1:] if len(lines) > 1 else lines
                elif corner.startswith("bottom"):
                    lines = lines[-1:]
                else:
                    lines = lines[:1]
                other = texts.get(corner.replace("right", "left") if corner.endswith("right") else "")
                if corner.endswith("right") and other:
                    need = max((fm.horizontalAdvance(t) for t, _ in lines), default=0) + \
                        max((fm.horizontalAdvance(t) for t, _ in other[:1] if t), default=0) + 3 * m + 30
                    if need > w:
                        lines = []
            if len(lines) > side_lines:  # keep the first and the last lines (image number, window/level)
                lines = lines[:side_lines - 1] + lines[-1:] if side_lines > 1 else lines[:1]
            top = corner.startswith("top")
            edge = "top" if top else "bottom"
            letter_w = lfm.horizontalAdvance(letters.get(edge, "")) if letters.get(edge) else 0
            beside = (w - letter_w) / 2.0 - m - gap if letter_w else w - 2 * m

            def from_edge(idx: int) -> int:  # lines between this one and the view's top or bottom edge
                return idx if top else len(lines) - 1 - idx

            # a line that does not fit beside the letter moves the corner's lines past the letter instead
            shift = 0.0
            if letter_w and any(from_edge(i) * lh < letter_h + 2 and fm.horizontalAdvance(t) > beside
                                for i, (t, _) in enumerate(lines)):
                shift = letter_h + 2
                if len(lines) >= side_lines:
                    lines = lines[:-1] if top else lines[1:]
            for idx, (text, color) in enumerate(lines):
                if top:
                    y = m + fm.ascent() + idx * lh + shift
                else:
                    y = h - m - fm.descent() - (len(lines) - 1 - idx) * lh - shift
                near_letter = not shift and from_edge(idx) * lh < letter_h + 2
                room = beside if near_letter else w - 2 * m
                text = fm.elidedText(text, Qt.TextElideMode.ElideRight, int(max(20, room)))
                tw = fm.horizontalAdvance(text)
                x = m if corner.endswith("left") else w - m - tw
                self.draw_text(p, QPointF(x, y), text, color)

    # ================================================================== mouse
    def _handles_key(self) -> tuple:
        return (self.zoom, float(self.center[0]), float(self.center[1]), self.width(), self.height(),
                self.session.document.revision, self.display_state_key())

    def display_state_key(self) -> tuple:
        """What else decides where handles are (slice, frame, series); subclasses extend it."""
        return ()

    def current_handles(self) -> list[Handle]:
        """The handles at their current widget positions (recomputed when the last paint is stale,
        e.g. before the first paint or after a resize that has not been painted yet)."""
        if self._handles_at != self._handles_key() and self.has_image():
            img = QImage(1, 1, QImage.Format.Format_ARGB32)
            p = QPainter(img)
            try:
                static = self.paint_static_overlays(p) if self.static_overlays_key() is not None else []
                self._handles = static + self.paint_overlays(p)
            except Exception:
                log.exception("computing the handles failed")
                self._handles = []
            finally:
                p.end()
            self._handles_at = self._handles_key()
        return self._handles

    def _hit_handle(self, pos: QPointF) -> Optional[Handle]:
        if self.session.document.read_only:
            return None
        self.current_handles()
        best, best_d = None, self.HANDLE_RADIUS_PX
        for h in self._handles:
            d = math.hypot(h.widget_xy[0] - pos.x(), h.widget_xy[1] - pos.y())
            if d <= best_d:
                best, best_d = h, d
        return best

    def requested_point(self, pos: QPointF) -> Optional[np.ndarray]:
        """The point a pending point request (a marking mode) takes from a click here; None when this
        view cannot give one (slice views give the LPS point)."""
        return None

    def mousePressEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        self.gesture.press(self, ev.position(), ev.button(), ev.modifiers())

    def mouseMoveEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        pos = ev.position()
        if not self.gesture.move(self, pos):
            if self.ctx.bindings.hover_action(ev.modifiers()) == "crosshair":
                self.set_cursor_at(pos)
            self.active_tool().hover(self, pos)
            self._hover(self._hit_handle(pos), ev.modifiers())
        info = self.hover_info(pos)
        if info:
            self.ctx.cursor_info.emit(info)

    @property
    def _drag(self) -> Optional[tuple[str, Any]]:
        """The gesture in progress: (kind, object) or None (see :class:`planner.views.tools.PointerGesture`)."""
        return self.gesture.drag

    def select_handle(self, handle: Optional[Handle]) -> None:
        """A left click on (or off) a handle: a measurement point selects its measurement (Del
        deletes it), a trajectory point makes its trajectory the selected one (the trajectory list and
        the other views follow). Subclasses select their own kinds."""
        if handle is None:
            return
        if handle.kind == "measurement":
            self.selected_measurement = handle.key[0]
        elif handle.kind == "trajectory":
            current = active_trajectory(self.session)  # the selected one, else the plan's first
            if current is None or current.id != handle.key[0]:
                self.session.set_active_trajectory(handle.key[0])

    def _hover(self, handle: Optional[Handle], modifiers: Qt.KeyboardModifier) -> None:
        """Hovering a handle says what a drag would move (status bar, tooltip, a ring around it) and
        how: directly with the crosshair/edit tool, else with the edit modifier."""
        grab = self.ctx.grabs_handles(modifiers)
        state = (id(handle) if handle is not None else None, grab)
        if state == self._hover_state:
            return
        self._hover_state = state
        self._hover_handle = handle
        if handle is None:
            self.setCursor(self.active_tool().cursor if self.ctx.point_request is None else Qt.CursorShape.CrossCursor)
            self.setToolTip("")
        else:
            self.setCursor(Qt.CursorShape.OpenHandCursor if grab else self.active_tool().cursor)
            how = "drag moves it" if grab else \
                f"{self.ctx.edit_gesture()} moves it (or the crosshair/edit tool, C)"
            self.setToolTip(f"{handle.tooltip}: {how}")
            self.ctx.message.emit(f"{handle.name}: {how}")
        self.update()

    def paint_hover(self, painter: QPainter) -> None:
        """A ring around the handle under the mouse (solid when a drag would move it)."""
        h = self._hover_handle
        if h is None or self.session.document.read_only:
            return
        pen = QPen(QColor(255, 255, 255, 220), 1.5)
        if self._hover_state is None or not self._hover_state[1]:
            pen.setStyle(Qt.PenStyle.DotLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(QPointF(*h.widget_xy), self.HANDLE_RADIUS_PX + 2, self.HANDLE_RADIUS_PX + 2)

    def leaveEvent(self, ev):  # noqa: N802
        if self._hover_handle is not None and not self.closed:
            self._hover(None, Qt.KeyboardModifier.NoModifier)
        super().leaveEvent(ev)

    def mouseReleaseEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        self.gesture.release(self, ev.position(), ev.button())
        self.update()

    def mouseDoubleClickEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            tool = self.active_tool()
            if tool.busy:
                tool.cancel(self)
            self.maximize_requested.emit()

    def wheelEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        action = self.ctx.bindings.wheel_action(ev.modifiers())
        dy = ev.angleDelta().y() or ev.angleDelta().x()
        self._wheel_accum += dy
        steps = int(self._wheel_accum / 120)
        if steps == 0:
            return
        self._wheel_accum -= steps * 120
        if action == "slice":
            self.step(-steps)
        elif action == "page":
            self.step(-steps * self.ctx.bindings.page_step)
        elif action == "zoom":
            self.zoom_about(1.15 ** steps, ev.position())
        ev.accept()

    def keyPressEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        action = self.ctx.bindings.key_action(ev.key(), ev.modifiers())
        step = self.ctx.bindings.page_step
        handlers = {
            "previous_slice": lambda: self.step(-1),
            "next_slice": lambda: self.step(1),
            "previous_page": lambda: self.step(-step),
            "next_page": lambda: self.step(step),
            "first_slice": lambda: self.go_to_end(False),
            "last_slice": lambda: self.go_to_end(True),
            "reset_view": self.reset_view,
            "zoom_in": lambda: self.zoom_about(1.25),
            "zoom_out": lambda: self.zoom_about(0.8),
            "auto_window": lambda: self.set_window(self.auto_window()),
            "cancel": self.cancel,
            "delete_measurement": self.delete_selected_measurement,
            "play_pause": self.toggle_play,
        }
        fn = handlers.get(action or "")
        if fn is None:
            super().keyPressEvent(ev)
            return
        fn()
        ev.accept()

    def toggle_play(self) -> None:
        pass

    def cancel(self) -> None:
        """Esc: leave a marking mode, else stop the measurement being drawn."""
        if self.ctx.point_request is not None:
            self.ctx.cancel_point_request()
            self.ctx.message.emit("Marking cancelled")
        else:
            self.active_tool().cancel(self)

    def _show_context_menu(self, pos: QPointF) -> None:
        menu = QMenu(self)
        self.context_menu_actions(menu)
        menu.addSeparator()
        menu.addAction("Reset view", self.reset_view)
        menu.addAction("Automatic window/level", lambda: self.set_window(self.auto_window()))
        menu.popup(self.mapToGlobal(pos.toPoint()))
