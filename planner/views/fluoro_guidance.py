"""Fluoroscopy guidance in the fluoroscopy views: the guided marking of a vertebra's landmarks, the
plan drawn as it should appear on the C-arm, and virtual AP / lateral projections of a volume.

* **Marking** (:data:`GUIDED_MARKS`): on an AP image the physician clicks the patient's left and
  right pedicle and the spinous process, on a lateral image the posterior and the anterior wall of
  the chosen level (:func:`planner.fluoro.fit_view` needs the pedicles or the walls; the spinous
  process lets it report a rotated vertebra). Every click is one document edit.
* **Overlay** (:func:`drawings_for_image`): :func:`planner.fluoro.image_overlays` fits the marks to
  the plan's landmarks of the level and projects each of its trajectories: the instruments in their
  usual colours (introducer, cannula, probe), the ablation zone (a circle, or an ellipse after an
  affine fit) and a label. When the fit is not possible its reason is shown instead.
* **Virtual projections** (:class:`VirtualProjections`): :func:`planner.fluoro.virtual_projection`
  of a volume, computed in a worker thread and kept in a small cache, shown as a projection image
  whose plan overlay comes straight from the :class:`planner.fluoro.Projector` (no marks needed).

No plan data lives here; edits go through the PlanDocument.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QWidget

from planner import fluoro
from planner.fluoro import FluoroFit, FluoroFitError, Projector, TrajectoryOverlay
from planner.imaging.volume import ImageInfo, ProjectionGeometry, ProjectionImage
from planner.plan import Plan
from planner.trajectory import is_ct
from planner.views.render.overlays2d import DEFAULT_INSTRUMENT, ENTRY_COLOR, INSTRUMENT_COLORS, ZONE_COLOR
from planner.views.render.plan_geometry import trajectory_shape

if TYPE_CHECKING:  # pragma: no cover
    from planner.views.fluoro_view import FluoroView

log = logging.getLogger(__name__)

#: The landmarks clicked, in order, on each view (what fit_view needs, plus the spinous process on
#: AP, which lets the fit report a rotated vertebra).
GUIDED_MARKS: dict[str, tuple[str, ...]] = {
    "AP": ("pedicle_left", "pedicle_right", "spinous_process"),
    "LAT": ("posterior_wall", "anterior_wall"),
}

#: How each mark is asked for.
MARK_TEXT = {
    "pedicle_left": "the centre of the patient's left pedicle",
    "pedicle_right": "the centre of the patient's right pedicle",
    "spinous_process": "the spinous process (the tip of its teardrop)",
    "posterior_wall": "the posterior wall at mid-height",
    "anterior_wall": "the anterior wall at mid-height",
    "superior_endplate": "the centre of the superior endplate",
    "inferior_endplate": "the centre of the inferior endplate",
    "body_center": "the centre of the body",
}

#: Short names of the marks drawn beside them.
MARK_SHORT = {
    "pedicle_left": "L pedicle", "pedicle_right": "R pedicle", "spinous_process": "spinous",
    "posterior_wall": "post. wall", "anterior_wall": "ant. wall", "superior_endplate": "sup. endplate",
    "inferior_endplate": "inf. endplate", "body_center": "body centre",
}

#: Reduction along the rays of a virtual projection: CT as an attenuation sum ("drr"); MR as the mean
#: intensity (a maximum-intensity projection of a T2 is dominated by fat and fluid and hides the bodies).
VIRTUAL_MODE = {"CT": "drr", "MR": "mean"}
VIRTUAL_MODE_TEXT = {"drr": "DRR", "mean": "mean", "mip": "MIP"}


def panel_view_name(title: str) -> str:
    """"AP" or "LAT" from a fluoroscopy panel's title ("AP", "Lateral", ...)."""
    t = (title or "").strip().upper()
    return "LAT" if t.startswith("LAT") or t in ("LL", "RL") else "AP"


def default_level_id(session: Any) -> Optional[str]:
    """The level of the active trajectory, else the first treated level, else the first level."""
    plan = session.document.plan
    tid = getattr(session, "active_trajectory", None)
    if tid:
        for t in plan.trajectories:
            if t.id == tid:
                return t.level_id
    for lv in plan.levels:
        if lv.treat:
            return lv.id
    return plan.levels[0].id if plan.levels else None


def _image_side(kind: str, orientation: Sequence[str]) -> str:
    """Where a left/right pedicle lies on the image, from the columns' patient direction."""
    side = {"pedicle_left": "L", "pedicle_right": "R"}.get(kind)
    if side is None:
        return ""
    col = str(orientation[0]).upper() if orientation else ""
    if "L" in col or "R" in col:
        right = side in col  # columns grow toward this side: it lies on the image's right
        return " (image right)" if right else " (image left)"
    return " (image right, usual display)" if side == "L" else " (image left, usual display)"


def mark_prompt(kind: str, level_name: str, index: int, total: int, orientation: Sequence[str] = ()) -> str:
    what = MARK_TEXT.get(kind, kind.replace("_", " "))
    return f"Click {what} of {level_name}{_image_side(kind, orientation)} ({index + 1} of {total}) \u00b7 Esc cancels"


@dataclass
class MarkSequence:
    """A guided marking in progress on one image."""

    level_id: str
    level_name: str
    kinds: tuple[str, ...]
    index: int = 0

    @property
    def kind(self) -> str:
        return self.kinds[self.index]

    @property
    def done(self) -> bool:
        return self.index >= len(self.kinds)


# ====================================================================== overlay geometry
@dataclass
class TrajectoryDrawing:
    label: str
    overlay: TrajectoryOverlay
    #: (instrument name, (n, 2) pixels) along the path.
    instruments: list[tuple[str, np.ndarray]]


@dataclass
class PlanDrawing:
    """What is drawn of one level on one image (or of the whole plan on a virtual projection)."""

    level_name: str
    trajectories: list[TrajectoryDrawing] = field(default_factory=list)
    #: The reason nothing is drawn (the FluoroFitError message), else "".
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    fit: Optional[FluoroFit] = None
    n_marks: int = 0


def _trajectory_label(plan: Plan, traj) -> str:
    try:
        name = plan.level(traj.level_id).name
    except KeyError:
        name = "?"
    return f"{name} {traj.side}"


def _drawings(plan: Plan, fit: FluoroFit, overlays: list[TrajectoryOverlay]) -> list[TrajectoryDrawing]:
    by_id = {t.id: t for t in plan.trajectories}
    out = []
    for ov in overlays:
        traj = by_id.get(ov.trajectory_id)
        if traj is None:
            continue
        shape = trajectory_shape(plan, traj)
        inst = [(i.name, fit.project(i.points_lps)) for i in shape.instruments]
        out.append(TrajectoryDrawing(_trajectory_label(plan, traj), ov, inst))
    return out


def drawings_for_image(plan: Plan, image: ProjectionImage, level_ids: Sequence[str], frame_index: int = 0,
                       view: Optional[str] = None) -> list[PlanDrawing]:
    """The plan of each level fitted to its marks on ``image`` (errors as text, never raised)."""
    out = []
    for lid in level_ids:
        try:
            level = plan.level(lid)
        except KeyError:
            continue
        n_marks = len(fluoro.marks_for_image(plan, image.sop_instance_uid, lid, frame_index))
        try:
            res = fluoro.image_overlays(plan, image, lid, frame_index=frame_index, view=view)
        except (FluoroFitError, ValueError, np.linalg.LinAlgError) as exc:
            out.append(PlanDrawing(level.name, error=str(exc), n_marks=n_marks))
            continue
        d = PlanDrawing(level.name, _drawings(plan, res.fit, res.overlays), warnings=list(res.fit.warnings),
                        fit=res.fit, n_marks=n_marks)
        if not d.trajectories:
            d.error = f"{level.name} has no trajectory to draw"
        out.append(d)
    return out


def drawing_for_projector(plan: Plan, projector: Projector) -> PlanDrawing:
    """Every trajectory of the plan on a virtual projection (no marks: the projection is exact)."""
    fit = projector.as_fit()
    return PlanDrawing("", _drawings(plan, fit, projector.plan_overlays(plan)), fit=fit)


def _qp(xy) -> QPointF:
    return QPointF(float(xy[0]), float(xy[1]))


def _polygon(pts_w: np.ndarray) -> QPolygonF:
    return QPolygonF([QPointF(float(x), float(y)) for x, y in pts_w])


def paint_plan_drawing(view: "FluoroView", p: QPainter, drawing: PlanDrawing) -> None:
    """Instruments (dark outline under the colour), the zone (filled, outlined), target and entry marks,
    and a label per trajectory. Polylines and polygons are drawn in one call each (few painter calls
    per paint)."""
    fill = QColor(ZONE_COLOR)
    fill.setAlpha(60)
    for td in drawing.trajectories:
        ov = td.overlay
        p.setBrush(QBrush(fill))
        p.setPen(QPen(ZONE_COLOR, 1.8))
        p.drawPolygon(_polygon(view.to_widget(ov.zone.polygon_px)))
        p.setBrush(Qt.BrushStyle.NoBrush)
        outline = QPen(QColor(0, 0, 0, 170), 4.5)
        outline.setCapStyle(Qt.PenCapStyle.RoundCap)
        for name, pts in td.instruments:
            if len(pts) < 2:
                continue
            poly = _polygon(view.to_widget(pts))
            p.setPen(outline)
            p.drawPolyline(poly)
            pen = QPen(INSTRUMENT_COLORS.get(name, DEFAULT_INSTRUMENT), 2.2)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            p.setPen(pen)
            p.drawPolyline(poly)
        t = view.to_widget(ov.target_px[None, :])[0]
        cross = [QLineF(_qp(t - (5, 0)), _qp(t + (5, 0))), QLineF(_qp(t - (0, 5)), _qp(t + (0, 5)))]
        p.setPen(QPen(QColor(0, 0, 0, 200), 3.0))
        p.drawLines(cross)
        p.setPen(QPen(ZONE_COLOR, 1.4))
        p.drawLines(cross)
        e = view.to_widget(ov.entry_px[None, :])[0]
        box = QRectF(e[0] - 3.5, e[1] - 3.5, 7, 7)
        p.setPen(QPen(QColor(0, 0, 0, 200), 3.0))
        p.drawRect(box)
        p.setPen(QPen(ENTRY_COLOR, 1.4))
        p.drawRect(box)
        if ov.bend_px is not None:
            b = view.to_widget(ov.bend_px[None, :])[0]
            p.drawEllipse(_qp(b), 3.0, 3.0)
        radius_w = max(ov.zone.axes_px) * view.zoom
        view.draw_label(p, _qp(t + (radius_w + 6, -radius_w * 0.6)), td.label, ZONE_COLOR)


# ====================================================================== virtual projections
@dataclass
class VirtualResult:
    image: ProjectionImage
    projector: Projector
    mode: str


def virtual_mode_for(volume: Any) -> str:
    return VIRTUAL_MODE["CT"] if is_ct(volume) else VIRTUAL_MODE["MR"]


def make_virtual(volume: Any, view: str, mode: str) -> VirtualResult:
    """Compute a virtual projection and wrap it as a projection image (pixel spacing in patient mm:
    a parallel projection has no magnification)."""
    img, proj = fluoro.virtual_projection(volume, view, None, mode=mode)
    src = volume.info
    desc = f"Virtual {'AP' if view == 'AP' else 'lateral'} ({VIRTUAL_MODE_TEXT.get(mode, mode)}) from " \
           f"{src.series_description or 'the volume'}"
    info = ImageInfo(modality=src.modality, study_instance_uid=src.study_instance_uid,
                     frame_of_reference_uid=src.frame_of_reference_uid, series_description=desc,
                     patient_name=src.patient_name, patient_id=src.patient_id, study_date=src.study_date)
    orientation = ("L", "F") if view == "AP" else ("P", "F")
    geom = ProjectionGeometry(pixel_spacing=(float(proj.spacing_mm[1]), float(proj.spacing_mm[0])),
                              view_position=view, patient_orientation=orientation)
    return VirtualResult(ProjectionImage(img, geom, info), proj, mode)


class VirtualProjections:
    """Virtual projections computed in one worker thread, the last few kept (switching is instant).

    Keyed by the image key, the volume object, the view and the mode; a replaced volume (same key)
    is computed again."""

    KEEP = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[Any, Future]] = OrderedDict()
        self._executor: Optional[ThreadPoolExecutor] = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bvn-virtual-projection")
        return self._executor

    def request(self, key: str, volume: Any, view: str, mode: str) -> Future:
        """The (possibly running or finished) computation of one projection."""
        ck = (key, id(volume), view, mode)
        with self._lock:
            entry = self._entries.get(ck)
            if entry is not None and entry[0]() is volume and not entry[1].cancelled():
                self._entries.move_to_end(ck)
                return entry[1]
            fut = self._pool().submit(make_virtual, volume, view, mode)
            self._entries[ck] = (weakref.ref(volume), fut)
            while len(self._entries) > self.KEEP:
                _, (_, old) = self._entries.popitem(last=False)
                old.cancel()
            return fut

    def clear(self) -> None:
        with self._lock:
            for _, fut in self._entries.values():
                fut.cancel()
            self._entries.clear()


#: The application's virtual projections (shared by every fluoroscopy view).
VIRTUAL_PROJECTIONS = VirtualProjections()


# ====================================================================== the guidance bar
class GuidanceBar(QWidget):
    """Above a fluoroscopy view: what it shows (the C-arm image or a virtual projection of a volume),
    the level to mark, the Mark button, and the current instruction or fit result."""

    def __init__(self, view: "FluoroView", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("guidanceBar")
        self.view = view
        self.session = view.session
        self.source_combo = QComboBox(self)
        self.source_combo.setObjectName("sourceCombo")
        self.source_combo.setToolTip("What this view shows: the C-arm image, or a virtual projection of a volume "
                                     "with the plan drawn in")
        self.source_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.level_combo = QComboBox(self)
        self.level_combo.setObjectName("levelCombo")
        self.level_combo.setToolTip("The vertebra whose landmarks you mark on this image")
        self.mark_button = QToolButton(self)
        self.mark_button.setObjectName("markButton")
        self.mark_button.setText("Mark")
        self.mark_button.setCheckable(True)
        self.prompt = QLabel(self)
        self.prompt.setObjectName("guidancePrompt")
        self.prompt.setTextFormat(Qt.TextFormat.PlainText)
        self.prompt.setMinimumWidth(40)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(4)
        lay.addWidget(self.source_combo)
        lay.addWidget(self.level_combo)
        lay.addWidget(self.mark_button)
        lay.addWidget(self.prompt, 1)
        self._syncing = False
        self._stale = False
        self._items: list = []
        self._levels: list = []
        self.source_combo.activated.connect(self._on_source_chosen)
        self.level_combo.activated.connect(self._on_level_chosen)
        self.mark_button.clicked.connect(self._on_mark_clicked)
        view.guidance_changed.connect(self.sync)
        self.sync()

    # ------------------------------------------------------------------ user actions
    def _on_source_chosen(self, idx: int) -> None:
        data = self.source_combo.itemData(idx)
        if not data:
            return
        kind, key = data
        if kind == "image":
            self.view.show_carm(user=True)
        else:
            self.view.show_virtual(key, user=True)

    def _on_level_chosen(self, idx: int) -> None:
        lid = self.level_combo.itemData(idx)
        if lid:
            self.view.set_guidance_level(lid, user=True)

    def _on_mark_clicked(self, checked: bool) -> None:
        if checked:
            self.view.start_marking()
        else:
            self.view.stop_marking(cancelled=True)
        self.sync()

    # ------------------------------------------------------------------ state
    def showEvent(self, ev):  # noqa: N802
        super().showEvent(ev)
        if self._stale:
            self.sync()

    def sync(self) -> None:
        """Follow the view; while hidden (another layout is shown) only remember to do it when shown,
        so edits elsewhere (e.g. dragging a trajectory in the planning layout) pay nothing here."""
        if self._syncing:
            return
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        self._syncing = True
        try:
            self._sync_sources()
            self._sync_levels()
            v = self.view
            can, why = v.can_mark()
            self.mark_button.setEnabled(can or v.marking is not None)
            self.mark_button.setChecked(v.marking is not None)
            lv = v.guidance_level_name()
            self.mark_button.setText(f"Mark {lv}" if lv else "Mark")
            self.mark_button.setToolTip(
                (f"Click the landmarks of {lv or 'the level'} on this image, one after the other "
                 f"({', '.join(MARK_SHORT.get(k, k) for k in GUIDED_MARKS[v.effective_view()])}); "
                 "the plan is then drawn as it should appear on the C-arm. Drag a mark to move it, "
                 "Del or the right-click menu deletes it") if can else why)
            self.level_combo.setEnabled(v.showing_carm() and self.level_combo.count() > 0)
            text, _warn = v.guidance_text()
            self.prompt.setText(text)
            self.prompt.setToolTip(text)
        finally:
            self._syncing = False

    def _sync_sources(self) -> None:
        v = self.view
        items: list[tuple[str, Any]] = []
        carm = v.carm_image
        if carm is not None:
            items.append((f"C-arm: {carm.info.series_description or 'image'}", ("image", v.series_key)))
        else:
            items.append(("C-arm image (none loaded)", None))
        for key, vol in v.virtual_sources():
            items.append((f"Virtual from {vol.info.series_description or key[-8:]}", ("virtual", key)))
        current = ("virtual", v.virtual_key) if v.virtual_key else ("image", v.series_key)
        sel = next((i for i, (_t, data) in enumerate(items) if data == current), 0)
        self.source_combo.blockSignals(True)
        if items != self._items:
            self._items = items
            self.source_combo.clear()
            for i, (text, data) in enumerate(items):
                self.source_combo.addItem(text, data)
                if data is None:
                    item = self.source_combo.model().item(i)
                    if item is not None:
                        item.setEnabled(False)
        self.source_combo.setCurrentIndex(sel)
        self.source_combo.blockSignals(False)

    def _sync_levels(self) -> None:
        plan = self.session.document.plan
        levels = [(lv.name + (" \u2605" if lv.treat else ""), lv.id) for lv in plan.levels]
        lid = self.view.guidance_level_id()
        sel = next((i for i, (_t, x) in enumerate(levels) if x == lid), -1)
        self.level_combo.blockSignals(True)
        if levels != self._levels:
            self._levels = levels
            self.level_combo.clear()
            for text, x in levels:
                self.level_combo.addItem(text, x)
        self.level_combo.setCurrentIndex(sel)
        self.level_combo.blockSignals(False)


def paint_banner(view: "FluoroView", p: QPainter, lines: list[tuple[str, QColor]]) -> None:
    """Messages on a dark box at the bottom centre of the view (above the orientation letter)."""
    if not lines:
        return
    p.setFont(view._font_bold)
    fm = p.fontMetrics()
    w, h = view.width(), view.height()
    max_w = max(60, w - 40)
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
