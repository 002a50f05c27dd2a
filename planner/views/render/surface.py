"""What a 2D overlay is drawn onto and what it gives back (no widget).

:class:`Surface` is the view as the overlay functions see it: the map from model points (LPS mm on a
slice, image pixels on a C-arm image) to widget pixels, the zoom, the size and the label fonts. The
canvases build one per paint (:meth:`planner.views.canvas.ImageCanvas.surface`).

:class:`Handle` is a draggable plan point an overlay drew: what it is (``kind`` and ``key``) and where.
The view that drew it turns a drag into the document edit (``apply_handle``); the overlays never
edit the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter

#: The box behind labels (level names, measurements, zone sizes).
LABEL_BOX = QColor(0, 0, 0, 150)


@dataclass(frozen=True)
class Surface:
    #: Model points (n, d) -> widget positions (n, 2).
    to_widget: Callable[[np.ndarray], np.ndarray]
    #: Widget pixels per model unit (mm or image pixel).
    zoom: float
    width: float
    height: float
    font: QFont
    bold_font: QFont


@dataclass
class Handle:
    """A draggable plan point drawn in a view."""

    kind: str  # "landmark", "trajectory", "measurement", "fluoro_landmark"
    key: tuple
    point: np.ndarray  # model coordinates (LPS mm or pixels)
    widget_xy: tuple[float, float]
    tooltip: str = ""

    @property
    def name(self) -> str:
        """What a drag moves, e.g. "L4 left pedicle" (the tooltip without its notes in brackets)."""
        return self.tooltip.split(" (")[0] or self.kind


def qpoint(xy) -> QPointF:
    return QPointF(float(xy[0]), float(xy[1]))


def draw_label(p: QPainter, surface: Surface, pos: QPointF, text: str, color: QColor, bold: bool = True) -> QRectF:
    """A label on a translucent dark box (measurements, level names), its left edge at ``pos``."""
    p.setFont(surface.bold_font if bold else surface.font)
    fm = p.fontMetrics()
    r = QRectF(fm.boundingRect(text)).adjusted(-4, -2, 4, 2)
    r.moveTopLeft(pos + QPointF(0, -r.height() / 2))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(LABEL_BOX)
    p.drawRoundedRect(r, 3, 3)
    p.setPen(color)
    p.drawText(r, Qt.AlignmentFlag.AlignCenter, text)
    return r
