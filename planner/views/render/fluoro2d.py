"""The plan drawn on a fluoroscopy image with QPainter (:class:`planner.display.fluoro.PlanDrawing`:
instruments, zone, target and entry marks, labels) and the message banner of the fluoroscopy views."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPolygonF

from planner.display.fluoro import PlanDrawing
from planner.views.render.overlays2d import DEFAULT_INSTRUMENT, ENTRY_COLOR, INSTRUMENT_COLORS, ZONE_COLOR
from planner.views.render.surface import Surface, draw_label, qpoint


def _polygon(pts_w: np.ndarray) -> QPolygonF:
    return QPolygonF([QPointF(float(x), float(y)) for x, y in pts_w])


def paint_plan_drawing(p: QPainter, surface: Surface, drawing: PlanDrawing) -> None:
    """Instruments (dark outline under the colour), the zone (filled, outlined), target and entry marks,
    and a label per trajectory. Polylines and polygons are drawn in one call each (few painter calls
    per paint)."""
    to_widget = surface.to_widget
    fill = QColor(ZONE_COLOR)
    fill.setAlpha(60)
    for td in drawing.trajectories:
        ov = td.overlay
        p.setBrush(QBrush(fill))
        p.setPen(QPen(ZONE_COLOR, 1.8))
        p.drawPolygon(_polygon(to_widget(ov.zone.polygon_px)))
        p.setBrush(Qt.BrushStyle.NoBrush)
        outline = QPen(QColor(0, 0, 0, 170), 4.5)
        outline.setCapStyle(Qt.PenCapStyle.RoundCap)
        for name, pts in td.instruments:
            if len(pts) < 2:
                continue
            poly = _polygon(to_widget(pts))
            p.setPen(outline)
            p.drawPolyline(poly)
            pen = QPen(INSTRUMENT_COLORS.get(name, DEFAULT_INSTRUMENT), 2.2)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            p.setPen(pen)
            p.drawPolyline(poly)
        t = to_widget(ov.target_px[None, :])[0]
        cross = [QLineF(qpoint(t - (5, 0)), qpoint(t + (5, 0))), QLineF(qpoint(t - (0, 5)), qpoint(t + (0, 5)))]
        p.setPen(QPen(QColor(0, 0, 0, 200), 3.0))
        p.drawLines(cross)
        p.setPen(QPen(ZONE_COLOR, 1.4))
        p.drawLines(cross)
        e = to_widget(ov.entry_px[None, :])[0]
        box = QRectF(e[0] - 3.5, e[1] - 3.5, 7, 7)
        p.setPen(QPen(QColor(0, 0, 0, 200), 3.0))
        p.drawRect(box)
        p.setPen(QPen(ENTRY_COLOR, 1.4))
        p.drawRect(box)
        if ov.bend_px is not None:
            b = to_widget(ov.bend_px[None, :])[0]
            p.drawEllipse(qpoint(b), 3.0, 3.0)
        radius_w = max(ov.zone.axes_px) * surface.zoom
        draw_label(p, surface, qpoint(t + (radius_w + 6, -radius_w * 0.6)), td.label, ZONE_COLOR)


def paint_banner(p: QPainter, surface: Surface, lines: list[tuple[str, QColor]]) -> None:
    """Messages on a dark box at the bottom centre of the view (above the orientation letter)."""
    if not lines:
        return
    p.setFont(surface.bold_font)
    fm = p.fontMetrics()
    w, h = surface.width, surface.height
    max_w = int(max(60, w - 40))
    texts = [(fm.elidedText(t, Qt.TextElideMode.ElideRight, max_w), c) for t, c in lines]
    tw = max(fm.horizontalAdvance(t) for t, _ in texts) + 12
    lh = fm.height() + 2
    box = QRectF((w - tw) / 2, h - 44 - lh * len(texts), tw, lh * len(texts) + 6)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(0, 0, 0, 170))
    p.drawRoundedRect(box, 4, 4)
    for i, (t, c) in enumerate(texts):
        p.setPen(c)
        p.drawText(QRectF(box.left(), box.top() + 3 + i * lh, box.width(), lh), Qt.AlignmentFlag.AlignCenter, t)
