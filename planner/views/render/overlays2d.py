"""Plan objects drawn on a slice view with QPainter: level labels, landmarks, trajectories (their
cut through the slice at the real instrument diameters, plus the whole path projected thin and
dashed; the parts of a path where a check fails or is unverified in red with their label; a failing
zone red), ablation-zone circles, measurements, and the linked crosshair.

The functions take what they draw as arguments: the :class:`~planner.views.render.surface.Surface`
(mapping, zoom, fonts), the slice (``frame`` and slice index ``n``, a
:class:`planner.display.slice_geometry.SliceFrame` or ``PlaneFrame``) and the plan objects. Each
returns the draggable :class:`~planner.views.render.surface.Handle` objects it drew; the view turns a
drag into the edit.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen

from planner.checks import FAIL, TrajectoryReport
from planner.display.annotations import measurement_text, trajectory_name
from planner.display.slice_geometry import sphere_cut
from planner.plan import LANDMARK_NAMES, Level, Measurement, Plan, Trajectory
from planner.trajectory import LandmarkError, TrajectoryShape, vertebra_frame
from planner.views.render.surface import Handle, Surface, draw_label, qpoint

CROSSHAIR_COLOR = QColor(79, 195, 247, 200)
LEVEL_COLOR = QColor("#ffe082")
#: Within this many of their line heights of the view's top or bottom edge, level names are moved aside from the
#: orientation letter in the middle of it (a body at the edge of the view had its name drawn over the "S").
EDGE_LETTER_CLEARANCE = 2.8
LANDMARK_COLOR = QColor(128, 222, 234, 200)
ZONE_COLOR = QColor("#ff7043")
ENTRY_COLOR = QColor("#ffffff")
INSTRUMENT_COLORS = {
    "introducer": QColor(64, 160, 255),
    "cannula": QColor(40, 210, 120),
    "probe": QColor(255, 220, 40),
}
DEFAULT_INSTRUMENT = QColor(230, 230, 230)
#: Failing parts of a path (a check that fails or is unverified) and a failing zone: red, with the label.
FAILING_COLOR = QColor(235, 40, 40)
MEASURE_COLOR = QColor("#c6ff00")

LANDMARK_TEXT = {
    "body_center_lps": "body centre", "superior_endplate_lps": "superior endplate",
    "inferior_endplate_lps": "inferior endplate", "posterior_wall_lps": "posterior wall",
    "anterior_wall_lps": "anterior wall", "pedicle_left_lps": "left pedicle", "pedicle_right_lps": "right pedicle",
}


_qp = qpoint


#: Spacing of the points along an instrument's axis where its cut through a slice is tested (mm).
CUT_STEP_MM = 0.5
#: The thin dashed projection of a trajectory's whole path is drawn only in slices that pass within
#: this distance of the path (display choice: the L5 path must not seem to cross an axial L4 slice).
PATH_PROJECTION_RANGE_MM = 20.0


def _dense_axis(inst) -> np.ndarray:
    """The instrument's axis resampled every CUT_STEP_MM (cached on the cached instrument: the
    trajectory caches rebuild it when the trajectory changes)."""
    dense = getattr(inst, "_dense_axis", None)
    if dense is None:
        pts = np.asarray(inst.points_lps, dtype=float).reshape(-1, 3)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        counts = np.maximum(1, np.ceil(seg / CUT_STEP_MM).astype(int))
        parts = [pts[:1]]
        for a, b, k in zip(pts[:-1], pts[1:], counts):
            t = (np.arange(1, k + 1) / k)[:, None]
            parts.append(a + (b - a) * t)
        dense = np.vstack(parts)
        try:
            inst._dense_axis = dense
        except AttributeError:  # a frozen or slotted instrument: recompute next time
            pass
    return dense


def runs_near_plane(dense_lps: np.ndarray, plane_point: np.ndarray, normal: np.ndarray,
                    half_width_mm: float) -> list[np.ndarray]:
    """Runs of consecutive points of ``dense_lps`` within ``half_width_mm`` of a plane (each (m, 3),
    m >= 2): where a tube of that radius cuts the slice (same result as
    :func:`planner.display.slice_geometry.polyline_runs_near_plane`, vectorised)."""
    if len(dense_lps) < 2:
        return []
    inside = np.abs((dense_lps - plane_point) @ normal) <= half_width_mm
    if not inside.any():
        return []
    edges = np.diff(np.concatenate(([0], inside.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    runs = []
    for a, b in zip(starts, stops):
        run = dense_lps[a:b]
        runs.append(run if len(run) >= 2 else np.vstack([run, run]))
    return runs


def handle_tolerance_mm(frame: Any) -> float:
    """Points this close to the slice plane are drawn (and draggable) on it."""
    return max(frame.slice_spacing / 2.0, 1.5)


def paint_crosshair(p: QPainter, surface: Surface, cursor_lps: np.ndarray) -> None:
    """The linked crosshair through ``cursor_lps``, with a gap around the point."""
    c = surface.to_widget(np.asarray(cursor_lps, dtype=float)[None, :])[0]
    w, h = surface.width, surface.height
    gap = 12.0
    pen = QPen(CROSSHAIR_COLOR, 1.0)
    p.setPen(pen)
    x, y = float(c[0]), float(c[1])
    if -1 <= x <= w + 1:
        p.drawLine(QPointF(x, 0), QPointF(x, max(0.0, y - gap)))
        p.drawLine(QPointF(x, min(float(h), y + gap)), QPointF(x, h))
    if -1 <= y <= h + 1:
        p.drawLine(QPointF(0, y), QPointF(max(0.0, x - gap), y))
        p.drawLine(QPointF(min(float(w), x + gap), y), QPointF(w, y))


def level_reach_mm(level: Level, normal: np.ndarray) -> float:
    """How far from the level's body centre, along a slice's ``normal``, the slice still passes through the
    vertebra: the farthest landmark along ``normal`` plus a margin; across the spine (a sagittal slice) at
    least half the body's AP depth, since a lumbar or lower thoracic body is wider than it is deep (so a body
    whose pedicles are not measured is still named on every sagittal slice through its middle)."""
    lm = level.landmarks
    c = lm.body_center_lps
    if c is None:
        return 10.0
    c = np.asarray(c)
    normal = np.asarray(normal, dtype=float)
    ext = 0.0
    for name in LANDMARK_NAMES:
        v = getattr(lm, name)
        if v is not None:
            ext = max(ext, abs(float((np.asarray(v) - c) @ normal)))
    try:
        body = vertebra_frame(lm)
    except LandmarkError:  # walls or endplates not placed: the landmarks alone
        body = None
    if body is not None:
        ext = max(ext, 0.5 * body.depth_mm * abs(float(normal @ body.l)))
    return max(ext + 5.0, 10.0)


def paint_levels(p: QPainter, surface: Surface, frame: Any, n: int, plan: Plan, draw_handles: bool) -> list[Handle]:
    """Level names beside the bodies the slice passes through, and the landmarks near the slice
    (handles when ``draw_handles``)."""
    to_widget = surface.to_widget
    pp = frame.plane_point(n)
    tol = handle_tolerance_mm(frame)
    handles: list[Handle] = []
    for level in plan.levels:
        lm = level.landmarks
        center = lm.body_center_lps
        if center is not None:
            c = np.asarray(center, dtype=float)
            if abs(float((c - pp) @ frame.normal)) <= level_reach_mm(level, frame.normal):
                cw = to_widget(c[None, :])[0]
                anchor = cw
                direction = np.array([-1.0, 0.0])
                if lm.anterior_wall_lps is not None:
                    aw = to_widget(np.asarray(lm.anterior_wall_lps, dtype=float)[None, :])[0]
                    d = aw - cw
                    if np.linalg.norm(d) > 4:
                        direction = d / np.linalg.norm(d)
                        anchor = aw
                    else:
                        anchor = cw + direction * 30
                else:
                    anchor = cw + direction * 30
                text = level.name + (" \u2605" if level.treat else "")
                p.setFont(surface.bold_font)
                tw = p.fontMetrics().horizontalAdvance(text) + 8
                pos = anchor + direction * 12
                x = pos[0] - tw if direction[0] < -0.3 else (pos[0] - tw / 2 if abs(direction[0]) <= 0.3 else pos[0])
                y = pos[1] + (-8 if direction[1] < -0.3 else (8 if direction[1] > 0.3 else 0))
                # beside the orientation letter when it would cover it (the middle of the top and bottom edges)
                line = p.fontMetrics().height()
                clear = EDGE_LETTER_CLEARANCE * line
                left_of_letter = surface.width / 2 - line
                near_edge = y < clear or y > surface.height - clear
                if near_edge and x < surface.width / 2 + line and x + tw > left_of_letter:
                    x = left_of_letter - tw
                draw_label(p, surface, QPointF(x, y), text, LEVEL_COLOR)
        if not draw_handles:
            continue
        names = [name for name in LANDMARK_NAMES if getattr(lm, name) is not None]
        if not names:
            continue
        pts = np.asarray([getattr(lm, name) for name in names], dtype=float)
        near = np.abs((pts - pp) @ frame.normal) <= tol
        if not near.any():
            continue
        names = [nm for nm, ok in zip(names, near) if ok]
        pts = pts[near]
        pts_w = to_widget(pts)
        shadow = QPen(QColor(0, 0, 0, 160), 2.5)
        ring = QPen(LANDMARK_COLOR, 1.2)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for name, pt, w in zip(names, pts, pts_w):
            p.setPen(shadow)
            p.drawEllipse(_qp(w), 3.0, 3.0)
            p.setPen(ring)
            p.drawEllipse(_qp(w), 3.0, 3.0)
            handles.append(Handle("landmark", (level.id, name), pt, (float(w[0]), float(w[1])),
                                  f"{level.name} {LANDMARK_TEXT.get(name, name)}"))
    return handles


def paint_trajectories(p: QPainter, surface: Surface, frame: Any, n: int, plan: Plan,
                       shape_of: Callable[[Trajectory], TrajectoryShape], active_id: Optional[str],
                       draw_handles: bool,
                       report_of: Optional[Callable[[Trajectory], TrajectoryReport]] = None) -> list[Handle]:
    """Each trajectory's instruments where they cut the slice (at their real diameters), the whole path
    projected thin and dashed in slices near it, the ablation zone's cut, and the entry/bend/target
    handles near the slice. ``shape_of`` gives the drawn shape of a trajectory and ``report_of`` its
    checks (the session's results): the parts of the path where a check fails or is unverified are
    drawn red with their label, and the zone red when the zone check fails."""
    to_widget, zoom = surface.to_widget, surface.zoom
    pp = frame.plane_point(n)
    half_slab = frame.slice_spacing / 2.0
    tol = handle_tolerance_mm(frame)
    handles: list[Handle] = []
    for traj in plan.trajectories:
        geom = shape_of(traj)
        rep = report_of(traj) if report_of is not None else None
        # the ablation zone's cut through this slice (red when the zone check fails)
        cut = sphere_cut(geom.zone.center_lps, geom.zone.radius_mm, pp, frame.normal)
        if cut is not None:
            zone_bad = rep is not None and any(c.name == "zone" and c.status == FAIL for c in rep.checks)
            zcolor = FAILING_COLOR if zone_bad else ZONE_COLOR
            cw = to_widget(cut[0][None, :])[0]
            r = cut[1] * zoom
            fill = QColor(zcolor)
            fill.setAlpha(55)
            p.setBrush(QBrush(fill))
            p.setPen(QPen(zcolor, 2.5 if zone_bad else 1.5))
            p.drawEllipse(_qp(cw), r, r)
        near = min(float(np.min(np.abs((_dense_axis(inst) - pp) @ frame.normal)))
                   for inst in geom.instruments) <= PATH_PROJECTION_RANGE_MM if geom.instruments else False
        is_active = traj.id == active_id
        for inst in geom.instruments:
            color = INSTRUMENT_COLORS.get(inst.name, DEFAULT_INSTRUMENT)
            if near:
                # the whole path, projected: thin and dashed (a little stronger for the active one)
                pts_w = to_widget(inst.points_lps)
                faint = QColor(color)
                faint.setAlpha(220 if is_active else 150)
                pen = QPen(faint, 1.6 if is_active else 1.0)
                pen.setStyle(Qt.PenStyle.DashLine)
                p.setPen(pen)
                p.setBrush(Qt.BrushStyle.NoBrush)
                path = QPainterPath(_qp(pts_w[0]))
                for q in pts_w[1:]:
                    path.lineTo(_qp(q))
                p.drawPath(path)
            # where the tube cuts the slice: the real diameter
            radius = inst.diameter_mm / 2.0
            for run in runs_near_plane(_dense_axis(inst), pp, frame.normal, radius + half_slab):
                rw = to_widget(run)
                width = max(2.0, inst.diameter_mm * zoom)
                pen = QPen(color, width)
                pen.setCapStyle(Qt.PenCapStyle.FlatCap)
                pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
                p.setPen(pen)
                path = QPainterPath(_qp(rw[0]))
                for q in rw[1:]:
                    path.lineTo(_qp(q))
                p.drawPath(path)
        if rep is not None:
            paint_failing_parts(p, surface, rep, traj.params.introducer_diameter_mm, pp, frame.normal, half_slab,
                                near)
        if not draw_handles:
            continue
        for which in ("entry", "bend", "target"):
            v = getattr(traj, f"{which}_lps")
            if v is None:
                continue
            pt = np.asarray(v, dtype=float)
            if abs(float((pt - pp) @ frame.normal)) > tol:
                continue
            w = to_widget(pt[None, :])[0]
            size = 5.0 if is_active else 4.0
            p.setPen(QPen(QColor(0, 0, 0, 220), 3.0))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(w[0] - size, w[1] - size, 2 * size, 2 * size))
            p.setPen(QPen(ENTRY_COLOR if which != "target" else ZONE_COLOR, 1.5))
            p.drawRect(QRectF(w[0] - size, w[1] - size, 2 * size, 2 * size))
            handles.append(Handle("trajectory", (traj.id, which), pt, (float(w[0]), float(w[1])),
                                  f"{traj.label or trajectory_name(plan, traj)} {which} point"))
    return handles


def paint_failing_parts(p: QPainter, surface: Surface, rep: TrajectoryReport, diameter_mm: float,
                        plane_point: np.ndarray, normal: np.ndarray, half_slab: float, near: bool) -> None:
    """The parts of a path where a check fails or is unverified (``rep.failing_parts``): thick red where
    they cut the slice, thin dashed red projected when the path is near it, each labelled once (e.g.
    "canal 3.5 mm"), the labels of one path stacked so that they do not overlap."""
    to_widget, zoom = surface.to_widget, surface.zoom
    placed: list[QRectF] = []
    for _check, part in rep.failing_parts:
        pts = np.asarray(part.points_lps, dtype=float)
        if len(pts) == 1:
            pts = np.vstack([pts, pts])
        label_at = None
        if near:
            pw = to_widget(pts)
            pen = QPen(FAILING_COLOR, 2.0)
            pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            path = QPainterPath(_qp(pw[0]))
            for q in pw[1:]:
                path.lineTo(_qp(q))
            p.drawPath(path)
            label_at = pw[len(pw) // 2]
        for run in runs_near_plane(pts, plane_point, normal, diameter_mm / 2.0 + half_slab):
            rw = to_widget(run)
            pen = QPen(FAILING_COLOR, max(3.0, (diameter_mm + 1.0) * zoom))
            pen.setCapStyle(Qt.PenCapStyle.FlatCap)
            p.setPen(pen)
            path = QPainterPath(_qp(rw[0]))
            for q in rw[1:]:
                path.lineTo(_qp(q))
            p.drawPath(path)
            label_at = rw[len(rw) // 2]
        if label_at is not None:
            pos = QPointF(float(label_at[0]) + 8, float(label_at[1]) - 8)
            while any(abs(r.center().y() - pos.y()) < r.height() and abs(r.left() - pos.x()) < r.width()
                      for r in placed):
                pos += QPointF(0, 16)  # below the labels already drawn for this path
            placed.append(draw_label(p, surface, pos, part.label, FAILING_COLOR, bold=True))


def paint_measurement_shape(p: QPainter, surface: Surface, pts_w: np.ndarray, kind: str, text: str,
                            selected: bool) -> None:
    """A distance (with end ticks) or an angle, already in widget pixels, and its text."""
    color = QColor(MEASURE_COLOR)
    pen = QPen(color, 2.0 if selected else 1.5)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    for a, b in zip(pts_w[:-1], pts_w[1:]):
        p.drawLine(_qp(a), _qp(b))
    if kind == "distance" and len(pts_w) >= 2:
        d = pts_w[1] - pts_w[0]
        L = float(np.hypot(*d))
        if L > 0:
            nrm = np.array([-d[1], d[0]]) / L * 5
            for q in pts_w[:2]:
                p.drawLine(_qp(q - nrm), _qp(q + nrm))
    for q in pts_w:
        p.drawEllipse(_qp(q), 2.5, 2.5)
    if text:
        anchor = pts_w[1] if kind == "angle" and len(pts_w) >= 3 else pts_w[:2].mean(axis=0)
        draw_label(p, surface, _qp(anchor + np.array([10.0, -10.0])), text, color)


def paint_measurements(p: QPainter, surface: Surface, frame: Any, n: int, measurements: Sequence[Measurement],
                       selected_id: Optional[str], draw_handles: bool) -> list[Handle]:
    """The LPS measurements lying in the slice (the view chooses which series' measurements it shows)."""
    pp = frame.plane_point(n)
    tol = frame.slice_spacing / 2.0 + 0.5
    handles: list[Handle] = []
    for m in measurements:
        if not m.points_lps:
            continue
        pts = np.asarray(m.points_lps, dtype=float)
        if np.any(np.abs((pts - pp) @ frame.normal) > tol):
            continue
        pts_w = surface.to_widget(pts)
        paint_measurement_shape(p, surface, pts_w, m.kind, measurement_text(m, pts), m.id == selected_id)
        if draw_handles:
            for idx in range(len(pts)):
                handles.append(Handle("measurement", (m.id, idx), pts[idx],
                                      (float(pts_w[idx][0]), float(pts_w[idx][1])),
                                      f"{m.kind} measurement point (Del deletes the measurement)"))
    return handles
