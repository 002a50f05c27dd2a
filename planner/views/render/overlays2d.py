"""Plan objects drawn on a slice view with QPainter: level labels, landmarks, trajectories (their
cut through the slice at the real instrument diameters, plus the whole path projected thin and
dashed), ablation-zone circles, measurements, and the linked crosshair.

Each function returns the draggable :class:`planner.views.canvas.Handle` objects it drew.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen

from planner.plan import LANDMARK_NAMES, Level, Measurement, Trajectory
from planner.views.canvas import Handle
from planner.views.render.slice_geometry import sphere_cut
from planner.views.tools import MEASURE_COLOR, angle_deg

if TYPE_CHECKING:  # pragma: no cover
    from planner.views.slice_view import SliceView

CROSSHAIR_COLOR = QColor(79, 195, 247, 200)
LEVEL_COLOR = QColor("#ffe082")
LANDMARK_COLOR = QColor(128, 222, 234, 200)
ZONE_COLOR = QColor("#ff7043")
ENTRY_COLOR = QColor("#ffffff")
INSTRUMENT_COLORS = {
    "introducer": QColor(64, 160, 255),
    "cannula": QColor(40, 210, 120),
    "probe": QColor(255, 220, 40),
}
DEFAULT_INSTRUMENT = QColor(230, 230, 230)

LANDMARK_TEXT = {
    "body_center_lps": "body centre", "superior_endplate_lps": "superior endplate",
    "inferior_endplate_lps": "inferior endplate", "posterior_wall_lps": "posterior wall",
    "anterior_wall_lps": "anterior wall", "pedicle_left_lps": "left pedicle", "pedicle_right_lps": "right pedicle",
}


def _qp(xy) -> QPointF:
    return QPointF(float(xy[0]), float(xy[1]))


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
    :func:`planner.views.render.slice_geometry.polyline_runs_near_plane`, vectorised)."""
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


def handle_tolerance_mm(view: "SliceView") -> float:
    """Points this close to the slice plane are drawn (and draggable) on it."""
    return max(view.frame.slice_spacing / 2.0, 1.5)


def paint_crosshair(view: "SliceView", p: QPainter) -> None:
    if not view.cursor_linked():
        return
    c = view.to_widget(view.session.cursor_lps[None, :])[0]
    w, h = view.width(), view.height()
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


def _level_extent_mm(level: Level, normal: np.ndarray) -> float:
    lm = level.landmarks
    c = lm.body_center_lps
    if c is None:
        return 10.0
    c = np.asarray(c)
    ext = 0.0
    for name in LANDMARK_NAMES:
        v = getattr(lm, name)
        if v is not None:
            ext = max(ext, abs(float((np.asarray(v) - c) @ normal)))
    return max(ext + 5.0, 10.0)


def paint_levels(view: "SliceView", p: QPainter, draw_handles: bool) -> list[Handle]:
    frame, n = view.frame, view.n
    plan = view.session.document.plan
    pp = frame.plane_point(n)
    tol = handle_tolerance_mm(view)
    handles: list[Handle] = []
    doc = view.session.document
    for level in plan.levels:
        lm = level.landmarks
        center = lm.body_center_lps
        if center is not None:
            c = np.asarray(center, dtype=float)
            if abs(float((c - pp) @ frame.normal)) <= _level_extent_mm(level, frame.normal):
                cw = view.to_widget(c[None, :])[0]
                anchor = cw
                direction = np.array([-1.0, 0.0])
                if lm.anterior_wall_lps is not None:
                    aw = view.to_widget(np.asarray(lm.anterior_wall_lps, dtype=float)[None, :])[0]
                    d = aw - cw
                    if np.linalg.norm(d) > 4:
                        direction = d / np.linalg.norm(d)
                        anchor = aw
                    else:
                        anchor = cw + direction * 30
                else:
                    anchor = cw + direction * 30
                text = level.name + (" \u2605" if level.treat else "")
                p.setFont(view._font_bold)
                tw = p.fontMetrics().horizontalAdvance(text) + 8
                pos = anchor + direction * 12
                x = pos[0] - tw if direction[0] < -0.3 else (pos[0] - tw / 2 if abs(direction[0]) <= 0.3 else pos[0])
                y = pos[1] + (-8 if direction[1] < -0.3 else (8 if direction[1] > 0.3 else 0))
                view.draw_label(p, QPointF(x, y), text, LEVEL_COLOR)
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
        pts_w = view.to_widget(pts)
        shadow = QPen(QColor(0, 0, 0, 160), 2.5)
        ring = QPen(LANDMARK_COLOR, 1.2)
        p.setBrush(Qt.BrushStyle.NoBrush)
        for name, pt, w in zip(names, pts, pts_w):
            p.setPen(shadow)
            p.drawEllipse(_qp(w), 3.0, 3.0)
            p.setPen(ring)
            p.drawEllipse(_qp(w), 3.0, 3.0)
            lid, lname = level.id, name
            handles.append(Handle(
                "landmark", (lid, lname), pt, (float(w[0]), float(w[1])),
                lambda point, key, lid=lid, lname=lname: doc.set_landmark(lid, lname, point.tolist(), merge_key=key),
                f"{level.name} {LANDMARK_TEXT.get(name, name)}"))
    return handles


def paint_trajectories(view: "SliceView", p: QPainter, draw_handles: bool) -> list[Handle]:
    frame, n = view.frame, view.n
    plan = view.session.document.plan
    pp = frame.plane_point(n)
    half_slab = frame.slice_spacing / 2.0
    tol = handle_tolerance_mm(view)
    handles: list[Handle] = []
    doc = view.session.document
    active = view.session.active_trajectory
    for traj in plan.trajectories:
        geom = view.trajectory_cache.get(plan, traj)
        # the ablation zone's cut through this slice
        cut = sphere_cut(geom.zone.center_lps, geom.zone.radius_mm, pp, frame.normal)
        if cut is not None:
            cw = view.to_widget(cut[0][None, :])[0]
            r = cut[1] * view.zoom
            fill = QColor(ZONE_COLOR)
            fill.setAlpha(55)
            p.setBrush(QBrush(fill))
            p.setPen(QPen(ZONE_COLOR, 1.5))
            p.drawEllipse(_qp(cw), r, r)
        near = min(float(np.min(np.abs((_dense_axis(inst) - pp) @ frame.normal)))
                   for inst in geom.instruments) <= PATH_PROJECTION_RANGE_MM if geom.instruments else False
        is_active = traj.id == active
        for inst in geom.instruments:
            color = INSTRUMENT_COLORS.get(inst.name, DEFAULT_INSTRUMENT)
            if near:
                # the whole path, projected: thin and dashed (a little stronger for the active one)
                pts_w = view.to_widget(inst.points_lps)
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
                rw = view.to_widget(run)
                width = max(2.0, inst.diameter_mm * view.zoom)
                pen = QPen(color, width)
                pen.setCapStyle(Qt.PenCapStyle.FlatCap)
                pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
                p.setPen(pen)
                path = QPainterPath(_qp(rw[0]))
                for q in rw[1:]:
                    path.lineTo(_qp(q))
                p.drawPath(path)
        if not draw_handles:
            continue
        for which in ("entry", "bend", "target"):
            v = getattr(traj, f"{which}_lps")
            if v is None:
                continue
            pt = np.asarray(v, dtype=float)
            if abs(float((pt - pp) @ frame.normal)) > tol:
                continue
            w = view.to_widget(pt[None, :])[0]
            size = 5.0 if traj.id == active else 4.0
            p.setPen(QPen(QColor(0, 0, 0, 220), 3.0))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(w[0] - size, w[1] - size, 2 * size, 2 * size))
            p.setPen(QPen(ENTRY_COLOR if which != "target" else ZONE_COLOR, 1.5))
            p.drawRect(QRectF(w[0] - size, w[1] - size, 2 * size, 2 * size))
            tid, wh = traj.id, which
            handles.append(Handle(
                "trajectory", (tid, wh), pt, (float(w[0]), float(w[1])),
                lambda point, key, tid=tid, wh=wh: doc.set_trajectory_point(tid, wh, point.tolist(), merge_key=key),
                f"{_traj_name(view, traj)} {which} point"))
    return handles


def _traj_name(view: "SliceView", traj: Trajectory) -> str:
    try:
        level = view.session.document.plan.level(traj.level_id).name
    except KeyError:
        level = "?"
    return traj.label or f"{level} {traj.side}"


def measurement_text(m: Measurement, points: np.ndarray) -> str:
    if m.kind == "distance" and len(points) >= 2:
        return f"{float(np.linalg.norm(points[1] - points[0])):.1f} mm"
    if m.kind == "angle" and len(points) >= 3:
        return f"{angle_deg(points[:3]):.1f}\u00b0"
    return ""


def paint_measurement_shape(view, p: QPainter, pts_w: np.ndarray, kind: str, text: str, selected: bool) -> None:
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
        view.draw_label(p, _qp(anchor + np.array([10.0, -10.0])), text, color)


def paint_measurements(view: "SliceView", p: QPainter, draw_handles: bool) -> list[Handle]:
    frame, n = view.frame, view.n
    plan = view.session.document.plan
    pp = frame.plane_point(n)
    tol = frame.slice_spacing / 2.0 + 0.5
    handles: list[Handle] = []
    doc = view.session.document
    for m in plan.measurements:
        if not m.points_lps or not view.shows_series(m.series_instance_uid):
            continue
        pts = np.asarray(m.points_lps, dtype=float)
        if np.any(np.abs((pts - pp) @ frame.normal) > tol):
            continue
        pts_w = view.to_widget(pts)
        paint_measurement_shape(view, p, pts_w, m.kind, measurement_text(m, pts), m.id == view.selected_measurement)
        if draw_handles:
            for idx in range(len(pts)):
                mid = m.id

                def apply(point, key, mid=mid, idx=idx):
                    cur = [list(x) for x in doc.plan.measurement(mid).points_lps]
                    cur[idx] = point.tolist()
                    doc.set_measurement_points(mid, points_lps=cur, merge_key=key)

                handles.append(Handle("measurement", (m.id, idx), pts[idx],
                                      (float(pts_w[idx][0]), float(pts_w[idx][1])), apply,
                                      f"{m.kind} measurement point (Del deletes the measurement)"))
    return handles


def level_at(plan, lps: np.ndarray) -> Optional[str]:
    """The level whose body contains the point (between its endplates), else the nearest body centre
    within 20 mm; None when there is none."""
    best, best_d = None, 20.0
    for lv in plan.levels:
        lm = lv.landmarks
        if lm.superior_endplate_lps is not None and lm.inferior_endplate_lps is not None:
            a = np.asarray(lm.inferior_endplate_lps, dtype=float)
            b = np.asarray(lm.superior_endplate_lps, dtype=float)
            axis = b - a
            L2 = float(axis @ axis)
            if L2 > 0:
                t = float((lps - a) @ axis) / L2
                if 0.0 <= t <= 1.0:
                    radial = np.linalg.norm((lps - a) - t * axis)
                    if radial < 40.0:
                        return lv.name
        if lm.body_center_lps is not None:
            d = float(np.linalg.norm(lps - np.asarray(lm.body_center_lps)))
            if d < best_d:
                best, best_d = lv.name, d
    return best
