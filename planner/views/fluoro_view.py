"""Fluoroscopy (projection image) view: what it shows (the C-arm image or a virtual projection of a
volume), its frames, window/level, zoom/pan, the plan drawn on it, and the mouse. Model coordinates
are image pixels (col, row).

The view's other rooms are mixins in their own modules: cine playback (:mod:`planner.views.fluoro_cine`),
lengths and calibration (:mod:`planner.views.fluoro_measure`), the guided marking and the marks drawn
as handles (:mod:`planner.views.fluoro_marking`).

Guidance (:mod:`planner.display.fluoro`, drawn by :mod:`planner.views.render.fluoro2d`; the bar is in
:mod:`planner.views.fluoro_panel`): the physician marks a level's landmarks in a guided
sequence (Mark button of the panel's bar; each click is one undoable edit), and the level's
trajectories are drawn as they should appear on the C-arm. A view can instead show a virtual AP or
lateral projection of a volume (computed off the GUI thread) with the plan drawn in; it does so by
default when it has no C-arm image.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QMenu, QWidget

from planner.display import fluoro as guidance
from planner.display import roles
from planner.display.annotations import default_level_id, format_person_name
from planner.document import Part, PlanChange
from planner.imaging.volume import ProjectionImage, Volume, WindowLevel
from planner.views.canvas import DIM_TEXT_COLOR, TEXT_COLOR, WARN_COLOR, ImageCanvas
from planner.views.context import ViewContext
from planner.views.fluoro_cine import CineMixin
from planner.views.fluoro_marking import MarkingMixin
from planner.views.fluoro_measure import MeasuringMixin
from planner.views.render.fluoro2d import paint_banner, paint_plan_drawing
from planner.views.render.surface import Handle

log = logging.getLogger(__name__)

#: Plan changes that can change what the guidance draws.
_REDRAW_PARTS = (Part.MEASUREMENTS, Part.FLUORO_CALIBRATIONS, Part.FLUORO_LANDMARKS, Part.TRAJECTORIES, Part.LEVELS,
                 Part.SETTINGS, Part.CASE)

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H", "S": "I", "I": "S"}
_DISPLAY = {"H": "S", "F": "I"}


def _letters(code: str, opposite: bool = False) -> str:
    out = ""
    for ch in code.upper():
        if ch not in _OPPOSITE:
            continue
        c = _OPPOSITE[ch] if opposite else ch
        out += _DISPLAY.get(c, c)
    return out


class FluoroView(CineMixin, MeasuringMixin, MarkingMixin, ImageCanvas):
    frame_changed = Signal(int)
    playing_changed = Signal(bool)
    #: The source, the guidance level, the marking state or the fit changed (the bar follows).
    guidance_changed = Signal()

    #: How often a pending virtual projection is looked at (ms).
    VIRTUAL_POLL_MS = 40

    def __init__(self, context: ViewContext, series_key: Optional[str] = None, parent: Optional[QWidget] = None,
                 *, title: str = "Fluoroscopy", view_name: Optional[str] = None) -> None:
        super().__init__(context, parent)
        self.title = title
        #: "AP" or "LAT": what this view is for (marks asked, virtual projection direction).
        self.view_name = view_name or guidance.panel_view_name(title)
        #: The C-arm image's key and image (kept while a virtual projection is shown).
        self.series_key: Optional[str] = None
        self.carm_image: Optional[ProjectionImage] = None
        #: What is drawn: the C-arm image or the virtual projection.
        self.image: Optional[ProjectionImage] = None
        self.frame_index = 0
        #: The volume key of the virtual projection shown (None: the C-arm image is shown).
        self.virtual_key: Optional[str] = None
        self.virtual: Optional[guidance.VirtualResult] = None
        self.virtual_error = ""
        self._virtual_future = None
        self._virtual_mode = ""
        self._source_chosen = False  # the user picked the source: image arrivals do not switch it
        self._level_id: Optional[str] = None
        self._level_chosen = False
        self.marking: Optional[guidance.MarkSequence] = None
        self.selected_landmark: Optional[str] = None
        self._swallow_release = False
        self._menu_pos: Optional[QPointF] = None
        self._init_cine()
        self._virtual_timer = QTimer(self)
        self._virtual_timer.setInterval(self.VIRTUAL_POLL_MS)
        self._virtual_timer.timeout.connect(self._poll_virtual)
        self.subscribe(self.session.document.changed, self._on_plan_changed)
        self.subscribe(self.session.images_changed, self._on_images_changed)
        self.subscribe(self.session.active_trajectory_changed, self._on_active_trajectory)
        self.set_series(series_key)

    # ------------------------------------------------------------------ series and frames
    def set_series(self, key: Optional[str]) -> None:
        """The C-arm image of this view (None: none). Without one the view shows a virtual projection
        of the main volume; a C-arm image arriving replaces it unless the user chose the virtual one."""
        img = self.session.images.get(key) if key else None
        self.stop()
        if not isinstance(img, ProjectionImage):
            self.series_key, self.carm_image = None, None
            if self.marking is not None:
                self.stop_marking(cancelled=True)
            if self.virtual_key is None or self.virtual_key not in self.session.images:
                self.virtual_key = None
                self._show(None)
                self._auto_virtual()
            self.guidance_changed.emit()
            return
        self.series_key, self.carm_image = key, img
        if self.virtual_key is None or not self._source_chosen:
            self.show_carm()
        self.guidance_changed.emit()

    def _show(self, img: Optional[ProjectionImage]) -> None:
        self.image = img
        self.frame_index = 0
        self.window = img.default_window() if img is not None else None
        self._image_dirty = True
        self.fit()
        self.frame_changed.emit(0)
        self.update()

    def show_carm(self, *, user: bool = False) -> None:
        """Show the C-arm image (when there is one)."""
        if user:
            self._source_chosen = True
        if self.carm_image is None:
            return
        self._cancel_virtual()
        self.virtual_key, self.virtual, self.virtual_error = None, None, ""
        if self.image is not self.carm_image:
            self._show(self.carm_image)
        self.guidance_changed.emit()

    def virtual_sources(self) -> list[tuple[str, Volume]]:
        """The volumes a virtual projection can be made of, the planning volume first."""
        vols = dict(self.session.volumes())
        main = roles.main_volume_key(self.session)
        keys = ([main] if main in vols else []) + [k for k in vols if k != main]
        return [(k, vols[k]) for k in keys]

    def _auto_virtual(self) -> None:
        if self.closed or self.carm_image is not None or self.virtual_key is not None:
            return
        main = roles.main_volume_key(self.session)
        if main is not None and isinstance(self.session.images.get(main), Volume):
            self.show_virtual(main)

    def show_virtual(self, volume_key: str, *, user: bool = False, mode: Optional[str] = None) -> None:
        """Show a virtual projection of a volume along this view's direction (computed in a worker;
        the view says "computing" until it is there)."""
        vol = self.session.images.get(volume_key)
        if not isinstance(vol, Volume) or self.closed:
            return
        if user:
            self._source_chosen = True
        if self.marking is not None:
            self.stop_marking(cancelled=True)
        self.stop()
        mode = mode or guidance.virtual_mode_for(vol)
        self._cancel_virtual()
        self.virtual_key, self.virtual, self.virtual_error = volume_key, None, ""
        self._virtual_mode = mode
        self._show(None)
        self._virtual_future = self.session.results.virtual_projections.request(volume_key, vol, self.view_name, mode)
        self._poll_virtual()
        if self._virtual_future is not None:
            self._virtual_timer.start()
        self.guidance_changed.emit()

    def _cancel_virtual(self) -> None:
        """Stop waiting; a computation not started yet is dropped (another view asking for it again
        gets a new one)."""
        self._virtual_timer.stop()
        if self._virtual_future is not None:
            self._virtual_future.cancel()
        self._virtual_future = None

    def _poll_virtual(self) -> None:
        fut = self._virtual_future
        if self.closed or fut is None:
            self._virtual_timer.stop()
            return
        if not fut.done():
            return
        self._virtual_timer.stop()
        self._virtual_future = None
        vol = self.session.images.get(self.virtual_key or "")
        if fut.cancelled():  # dropped by another view that stopped waiting for the same projection
            if isinstance(vol, Volume):
                self._virtual_future = self.session.results.virtual_projections.request(self.virtual_key, vol, self.view_name,
                                                                            self._virtual_mode)
                self._virtual_timer.start()
            return
        try:
            result = fut.result()
        except Exception as exc:  # a bad volume: say so in the view, never a traceback dialog
            log.warning("virtual projection failed: %s", exc)
            self.virtual_error = f"The virtual projection could not be made: {exc}"
            self.update()
            self.guidance_changed.emit()
            return
        self.virtual = result
        self._show(result.image)
        self.guidance_changed.emit()

    @property
    def virtual_pending(self) -> bool:
        return self._virtual_future is not None

    def showing_carm(self) -> bool:
        return self.image is not None and self.image is self.carm_image

    def showing_virtual(self) -> bool:
        return self.virtual_key is not None

    def _on_images_changed(self, key: str) -> None:
        if self.closed:
            return
        if key == self.series_key and key not in self.session.images:
            self.set_series(None)
        elif key == self.virtual_key and key not in self.session.images:
            self._cancel_virtual()
            self.virtual_key, self.virtual = None, None
            if self.carm_image is not None:
                self.show_carm()
            else:
                self._show(None)
                self._auto_virtual()
            self.guidance_changed.emit()
        elif self.carm_image is None and not self._source_chosen:
            # no C-arm image and no choice made: follow the planning volume (it can change while a study
            # is imported series by series)
            main = roles.main_volume_key(self.session)
            if main is not None and main != self.virtual_key:
                self.virtual_key = None
                self._auto_virtual()

    @property
    def sop_instance_uid(self) -> str:
        return self.image.sop_instance_uid if self.image is not None else ""

    def set_frame(self, idx: int) -> None:
        if self.image is None:
            return
        if self.marking is not None and idx != self.frame_index:
            self.stop_marking(cancelled=True)
        idx = int(min(max(idx, 0), self.image.n_frames - 1))
        if idx != self.frame_index:
            self.frame_index = idx
            self._image_dirty = True
            self.update()
            self.frame_changed.emit(idx)

    def step(self, delta: int) -> None:
        self.set_frame(self.frame_index + delta)

    def go_to_end(self, last: bool) -> None:
        if self.image is not None:
            self.set_frame(self.image.n_frames - 1 if last else 0)


    def on_shutdown(self) -> None:
        self._timer.stop()
        self._cancel_virtual()

    # ------------------------------------------------------------------ canvas interface
    def has_image(self) -> bool:
        return self.image is not None

    def current_array(self) -> Optional[np.ndarray]:
        return self.image.frames[self.frame_index] if self.image is not None else None

    def plane_bounds(self):
        if self.image is None:
            return (0.0, 0.0, 1.0, 1.0)
        return (-0.5, -0.5, self.image.cols - 0.5, self.image.rows - 0.5)

    def model_point(self, pos: QPointF) -> Optional[np.ndarray]:
        if self.image is None:
            return None
        return self.widget_to_plane(pos)

    def to_widget(self, points: np.ndarray) -> np.ndarray:
        return self.plane_to_widget(np.asarray(points, dtype=float).reshape(-1, 2))

    def auto_window(self) -> WindowLevel:
        if self.image is None:
            return WindowLevel(128, 256, "auto")
        a = np.asarray(self.image.frames[self.frame_index], dtype=np.float64)
        lo, hi = np.percentile(a, [0.1, 99.9])
        return WindowLevel((lo + hi) / 2, max(hi - lo, 1.0), "auto")

    def default_window(self) -> WindowLevel:
        return self.image.default_window() if self.image is not None else WindowLevel(128, 256, "auto")

    def data_range(self) -> tuple[float, float]:
        if self.image is None:
            return (0.0, 1.0)
        f = self.image.frames
        return (float(f.min()), float(f.max()))

    def empty_text(self) -> str:
        if self.virtual_error:
            return self.virtual_error
        if self.virtual_key is not None:
            vol = self.session.images.get(self.virtual_key)
            desc = vol.info.series_description if vol is not None else ""
            name = "AP" if self.view_name == "AP" else "lateral"
            return f"Computing the virtual {name} projection" + (f" of {desc}" if desc else "") + "\u2026"
        return f"No {self.title.lower()} image loaded"

    def _on_plan_changed(self, change: PlanChange) -> None:
        if self.closed:
            return
        if change.source == "load":
            self._level_chosen = False
            if self.marking is not None:
                self.stop_marking(cancelled=True)
        if change.touches(*_REDRAW_PARTS):
            if self._level_id is not None and self._level_id not in {lv.id for lv in self.session.document.plan.levels}:
                self._level_id, self._level_chosen = None, False
            if self.selected_landmark is not None and \
                    all(lm.id != self.selected_landmark for lm in self.session.document.plan.fluoro_landmarks):
                self.selected_landmark = None
            self.update()
            self.guidance_changed.emit()

    def _on_active_trajectory(self, _tid) -> None:
        if not self.closed and self.marking is None:
            lid = default_level_id(self.session)
            if lid is not None and lid != self._level_id:
                self._level_id, self._level_chosen = lid, False
                self.update()
                self.guidance_changed.emit()

    # ------------------------------------------------------------------ guidance: what is drawn
    def plan_drawings(self) -> list[guidance.PlanDrawing]:
        """The plan on the image shown: the session's results for this image, frame and levels."""
        if self.image is None:
            return []
        results = self.session.results
        if self.showing_virtual():
            return [results.projector_drawing(self.virtual.projector)] if self.virtual else []
        plan = self.session.document.plan
        lid = self.guidance_level_id()
        marked = {lm.level_id for lm in self.marks_here()}
        ids = [lv.id for lv in plan.levels if lv.id == lid or lv.id in marked]
        return results.fluoro_drawings(self.image, ids, self.frame_index, self.effective_view())

    def guidance_text(self) -> tuple[str, bool]:
        """The instruction or fit result for the bar and the view, and whether it is a warning."""
        if self.marking is not None:
            return self._mark_prompt(), False
        if self.virtual_error:
            return self.virtual_error, True
        if self.showing_virtual():
            if self.virtual is None:
                return "Computing the virtual projection\u2026", False
            n = sum(len(d.trajectories) for d in self.plan_drawings())
            return (f"Virtual projection (parallel, mm): {n} trajector{'y' if n == 1 else 'ies'} drawn"
                    if n else "Virtual projection: the plan has no trajectory to draw"), False
        if not self.showing_carm():
            return "", False
        lid = self.guidance_level_id()
        drawing = next((d for d in self.plan_drawings() if d.level_name == self.guidance_level_name()), None)
        if lid is None or drawing is None:
            return "", False
        if drawing.error:
            if not drawing.n_marks:
                ok, why = self.can_mark()
                hint = f"Press Mark to place the {drawing.level_name} landmarks and see the plan"
                return (hint if ok else why), False
            return drawing.error, True
        fit = drawing.fit
        assert fit is not None
        scale = fit.px_per_mm
        # with the minimum of marks a similarity fits exactly: a residual says something from three marks on
        rms = f", RMS {fit.rms_px / scale:.1f} mm" if scale > 0 and len(fit.residuals_px) > 2 else ""
        text = f"{drawing.level_name}: plan fitted to {drawing.n_marks} marks ({fit.method}{rms})"
        if drawing.warnings:
            return text + "; " + "; ".join(drawing.warnings), True
        return text, False

    # ------------------------------------------------------------------ painting
    def display_state_key(self) -> tuple:
        return (self.series_key, self.virtual_key, id(self.image), self.frame_index)

    def paint_overlays(self, painter: QPainter) -> list[Handle]:
        if self.image is None:
            return []
        handles: list[Handle] = []
        banner: list[tuple[str, QColor]] = []
        for d in self.plan_drawings():
            if d.error:
                if d.n_marks and d.level_name != self.guidance_level_name():
                    banner.append((d.error, WARN_COLOR))
                continue
            paint_plan_drawing(painter, self.surface(), d)
        if self.showing_carm():
            handles = self._paint_marks(painter)
        text, warn = self.guidance_text()
        if text and (self.marking is not None or warn or self.showing_virtual() and self.virtual is not None
                     and "no trajectory" in text):
            banner.insert(0, (text, WARN_COLOR if warn else TEXT_COLOR))
        paint_banner(painter, self.surface(), banner)
        return handles

    # ------------------------------------------------------------------ mouse and keys
    def mousePressEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        self._swallow_release = False
        if self.marking is not None and \
                self.ctx.bindings.mouse_action(ev.button(), ev.modifiers()) == "tool":
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            p = self.model_point(ev.position())
            if p is not None:
                self.place_mark(p)
            self._swallow_release = True
            ev.accept()
            return
        super().mousePressEvent(ev)

    def select_handle(self, handle) -> None:
        super().select_handle(handle)
        selected = handle.key[0] if handle is not None and handle.kind == "fluoro_landmark" else None
        if selected != self.selected_landmark:
            self.selected_landmark = selected
            self.update()

    def mouseReleaseEvent(self, ev):  # noqa: N802
        if self._swallow_release:
            self._swallow_release = False
            ev.accept()
            return
        super().mouseReleaseEvent(ev)

    def keyPressEvent(self, ev):  # noqa: N802
        if not self.closed and self.marking is not None and \
                self.ctx.bindings.key_action(ev.key(), ev.modifiers()) == "cancel":
            self.stop_marking(cancelled=True)
            ev.accept()
            return
        super().keyPressEvent(ev)

    def _show_context_menu(self, pos: QPointF) -> None:
        self._menu_pos = QPointF(pos)
        super()._show_context_menu(pos)

    def context_menu_actions(self, menu: QMenu) -> None:
        if self.showing_carm():
            h = self._hit_handle(self._menu_pos) if self._menu_pos is not None else None
            if h is not None and h.kind == "fluoro_landmark":
                lid = h.key[0]
                menu.addAction(f"Delete {h.tooltip.split(' mark')[0]} mark", lambda: self.delete_landmark(lid))
            ok, _ = self.can_mark()
            if ok:
                menu.addAction(f"Mark the {self.guidance_level_name()} landmarks\u2026", self.start_marking)
        if self.showing_virtual() and self.virtual is not None:
            other = "mip" if self.virtual.mode != "mip" else guidance.virtual_mode_for(
                self.session.images[self.virtual_key])
            menu.addAction(f"Virtual projection: {guidance.VIRTUAL_MODE_TEXT.get(other, other)}",
                           lambda: self.show_virtual(self.virtual_key, user=True, mode=other))

    def edge_letters(self) -> dict[str, str]:
        po = self.image.geometry.patient_orientation if self.image is not None else ()
        if len(po) < 2:
            return {}
        return {"right": _letters(po[0]), "left": _letters(po[0], True),
                "bottom": _letters(po[1]), "top": _letters(po[1], True)}

    def corner_texts(self) -> dict[str, list[tuple[str, QColor]]]:
        img = self.image
        if img is None:
            return {}
        info = img.info
        detail = self.ctx.annotation_detail
        case = self.session.document.plan.case
        tl = [("De-identified display", DIM_TEXT_COLOR)] if self.ctx.deidentified else \
            [(format_person_name(info.patient_name or case.patient_name), TEXT_COLOR)]
        if detail and not self.ctx.deidentified and (info.patient_id or case.patient_id):
            tl.append((info.patient_id or case.patient_id, TEXT_COLOR))
        tr = [(info.series_description or self.title, TEXT_COLOR)]
        if detail:
            g = img.geometry
            bits = [info.modality, g.view_position]
            if g.positioner_primary_angle_deg is not None:
                bits.append(f"{g.positioner_primary_angle_deg:+.0f}\u00b0")
            tr.append((" \u00b7 ".join(b for b in bits if b), DIM_TEXT_COLOR))
        bl = [(f"Frame {self.frame_index + 1}/{img.n_frames}" + ("  \u25b6" if self.playing else ""), TEXT_COLOR)]
        if self.window is not None:
            bl.append((f"W {self.window.width:.0f}  L {self.window.center:.0f}", TEXT_COLOR))
        sc = self.scale()
        unit_color = WARN_COLOR if sc.unit_label in ("mm at detector", "px") else TEXT_COLOR
        br = [(f"Lengths: {sc.unit_label}", unit_color), (f"Zoom {self.zoom:.2f}\u00d7", TEXT_COLOR)]
        return {"top_left": tl, "top_right": tr, "bottom_left": bl, "bottom_right": br}

    def hover_info(self, pos: QPointF) -> str:
        p = self.model_point(pos)
        if p is None or self.image is None:
            return ""
        c, r = int(round(p[0])), int(round(p[1]))
        inside = 0 <= c < self.image.cols and 0 <= r < self.image.rows
        val = self.image.frames[self.frame_index][r, c] if inside else None
        v = "outside" if val is None else (f"{float(val):g}" if np.ndim(val) == 0 else str(tuple(int(x) for x in val)))
        return (f"{self.title}: pixel ({p[0]:.1f}, {p[1]:.1f})   value {v}   "
                f"frame {self.frame_index + 1}/{self.image.n_frames}")
