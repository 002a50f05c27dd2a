"""The view layouts of the main window (viewer-conventions.md 1.9):

* ``planning``: sagittal (the main view for the spine) with axial, coronal and 3D beside it;
* ``fluoro``: AP and lateral fluoroscopy side by side;
* ``compare``: sagittal T1, T2 and STIR side by side, at the same position, with linked zoom/pan;
* ``trajectory``: the active trajectory's oblique view along the introducer (large) and its
  probe's-eye view (planner.views.trajectory_views), with sagittal and axial slice views.

Pages are built on first use (start-up builds only the one shown). Double-click on a view
maximises it within its page; double-click again restores the page.
"""

from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QSplitter, QStackedWidget, QVBoxLayout, QWidget

from planner.display import roles
from planner.display.annotations import active_trajectory
from planner.document import Part
from planner.imaging.volume import Volume
from planner.views.context import ViewContext
from planner.views.fluoro_panel import FluoroPanel
from planner.views.slice_view import SliceView
from planner.views.trajectory_views import (
    ObliquePanel,
    ObliqueTrajectoryView,
    ProbeEyeView,
    ProbePanel,
    TrajectoryViewPanel,
)

log = logging.getLogger(__name__)

LAYOUTS = ("planning", "fluoro", "compare", "trajectory")
LAYOUT_TITLES = {"planning": "Planning", "fluoro": "Fluoroscopy", "compare": "Compare T1 / T2 / STIR",
                 "trajectory": "Trajectory"}
#: Tooltips of the layout actions (menu and toolbar).
LAYOUT_TIPS = {"planning": "Sagittal with axial, coronal and 3D views",
               "fluoro": "AP and lateral fluoroscopy side by side",
               "compare": "Sagittal T1, T2 and STIR side by side at the same position",
               "trajectory": "Views along the selected trajectory: oblique along the introducer (spin it about "
                             "the introducer) and the probe's eye perpendicular to the path (step from the "
                             "skin to the target), with sagittal and axial"}


class ViewCell(QWidget):
    """A frame around one view with a small title strip (what the view shows)."""

    def __init__(self, title: str, content: QWidget, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewCell")
        self.content = content
        self.title_label = QLabel(title, self)
        self.title_label.setObjectName("viewTitle")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.setSpacing(0)
        lay.addWidget(self.title_label)
        lay.addWidget(content, 1)

    def set_title(self, text: str) -> None:
        self.title_label.setText(text)


class LayoutPage(QWidget):
    def __init__(self, name: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.name = name
        self.cells: list[ViewCell] = []
        self.splitters: list[QSplitter] = []
        self.maximized: Optional[ViewCell] = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self._layout = lay

    def set_root(self, root: QWidget) -> None:
        self._layout.addWidget(root)

    def toggle_maximize(self, cell: ViewCell) -> None:
        self.set_maximized(None if self.maximized is cell else cell)

    def set_maximized(self, cell: Optional[ViewCell]) -> None:
        self.maximized = cell
        for c in self.cells:
            c.setVisible(cell is None or c is cell)
        # a splitter whose children are all hidden must hide too, or it keeps its share of space
        for sp in reversed(self.splitters):
            sp.setVisible(any(not sp.widget(i).isHidden() for i in range(sp.count())))


class ViewLayout(QStackedWidget):
    layout_changed = Signal(str)

    def __init__(self, context: ViewContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.ctx = context
        self.session = context.session
        self.pages: dict[str, LayoutPage] = {}
        self.current = ""
        self.slice_views: dict[str, SliceView] = {}      # planning: sagittal / axial / coronal
        self.compare_views: dict[str, SliceView] = {}    # compare: T1 / T2 / STIR
        self.fluoro_panels: dict[str, FluoroPanel] = {}  # fluoro: AP / LAT
        #: trajectory: "oblique" and "probe" (TrajectoryPlaneView), "sagittal" and "axial" (SliceView)
        self.trajectory_views: dict[str, SliceView] = {}
        self.trajectory_panels: dict[str, TrajectoryViewPanel] = {}
        self.volume_view = None
        self._volume_holder = None
        self._linking = False
        self._closed = False
        #: splitter name -> its state as built (View > Reset layout)
        self._default_splitters: dict[str, QByteArray] = {}
        self.session.images_changed.connect(self._on_images_changed)
        self.session.document.changed.connect(self._on_plan_changed)
        self.session.active_trajectory_changed.connect(self._on_active_trajectory)
        self.session.cursor_moved.connect(self._on_cursor_moved)

    # ------------------------------------------------------------------ pages
    def set_layout_name(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}")
        page = self.pages.get(name)
        if page is None:
            page = self._build(name)
            self.pages[name] = page
            self.addWidget(page)
            for sp in page.splitters:
                self._default_splitters[sp.objectName()] = sp.saveState()
        self.setCurrentWidget(page)
        changed = name != self.current
        self.current = name
        if changed:
            if name == "trajectory":
                self.center_on_trajectory()
            self.layout_changed.emit(name)

    def current_page(self) -> Optional[LayoutPage]:
        return self.pages.get(self.current)

    def _cell(self, page: LayoutPage, title: str, content: QWidget) -> ViewCell:
        cell = ViewCell(title, content)
        page.cells.append(cell)
        view = _canvas_of(content)
        if hasattr(view, "maximize_requested"):
            view.maximize_requested.connect(lambda c=cell, p=page: p.toggle_maximize(c))
        return cell

    def _splitter(self, page: LayoutPage, orientation: Qt.Orientation, name: str) -> QSplitter:
        sp = QSplitter(orientation)
        sp.setObjectName(f"{page.name}_{name}")
        sp.setChildrenCollapsible(False)
        sp.setHandleWidth(3)
        page.splitters.append(sp)
        return sp

    def _build(self, name: str) -> LayoutPage:
        page = LayoutPage(name)
        if name == "planning":
            main = roles.main_volume_key(self.session)
            sag = SliceView(self.ctx, "sagittal", main)
            ax = SliceView(self.ctx, "axial", self.native_series_for("axial", main))
            cor = SliceView(self.ctx, "coronal", self.native_series_for("coronal", main))
            self.slice_views = {"sagittal": sag, "axial": ax, "coronal": cor}
            # the 3D view (VTK, volume rendering) is created after the first image is on screen
            holder = QWidget()
            holder.setObjectName("volumeHolder")
            hl = QVBoxLayout(holder)
            hl.setContentsMargins(0, 0, 0, 0)
            self._volume_placeholder = QLabel("3D view starting\u2026", holder)
            self._volume_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            hl.addWidget(self._volume_placeholder)
            self._volume_holder = holder
            sag.image_shown.connect(lambda: QTimer.singleShot(0, self.ensure_volume_view))
            root = self._splitter(page, Qt.Orientation.Horizontal, "root")
            root.addWidget(self._cell(page, "Sagittal", sag))
            right = self._splitter(page, Qt.Orientation.Vertical, "right")
            right.addWidget(self._cell(page, "Axial", ax))
            bottom = self._splitter(page, Qt.Orientation.Horizontal, "bottom")
            bottom.addWidget(self._cell(page, "Coronal", cor))
            self._volume_cell = self._cell(page, "3D", holder)
            bottom.addWidget(self._volume_cell)
            right.addWidget(bottom)
            root.addWidget(right)
            root.setStretchFactor(0, 11)
            root.setStretchFactor(1, 9)
            right.setStretchFactor(0, 1)
            right.setStretchFactor(1, 1)
            root.setSizes([1100, 900])
            right.setSizes([500, 500])
            bottom.setSizes([330, 570])
            page.set_root(root)
            for v in self.slice_views.values():
                v.slice_changed.connect(lambda v=v: self._plane_changed(v))
                v.window_changed.connect(lambda v=v: self._plane_changed(v))
                v.series_changed.connect(lambda _k, v=v: self._retitle(v))
                self._retitle(v)
            if not sag.has_image():
                QTimer.singleShot(0, self.ensure_volume_view)
        elif name == "fluoro":
            ap_key, lat_key = roles.fluoro_keys(self.session)
            ap = FluoroPanel(self.ctx, ap_key, title="AP")
            lat = FluoroPanel(self.ctx, lat_key, title="Lateral")
            self.fluoro_panels = {"AP": ap, "LAT": lat}
            root = self._splitter(page, Qt.Orientation.Horizontal, "root")
            root.addWidget(self._cell(page, "AP", ap))
            root.addWidget(self._cell(page, "Lateral", lat))
            page.set_root(root)
        elif name == "compare":
            root = self._splitter(page, Qt.Orientation.Horizontal, "root")
            for role in ("T1", "T2", "STIR"):
                v = SliceView(self.ctx, "sagittal", roles.key_for_role(self.session, role), role=role,
                              title=f"Sagittal {role}")
                self.compare_views[role] = v
                root.addWidget(self._cell(page, f"Sagittal {role}", v))
                v.view_changed.connect(lambda v=v: self._link_cameras(v))
            page.set_root(root)
        elif name == "trajectory":
            self._build_trajectory(page)
        return page

    def _build_trajectory(self, page: LayoutPage) -> None:
        main = roles.main_volume_key(self.session)
        oblique = ObliqueTrajectoryView(self.ctx, main)
        probe = ProbeEyeView(self.ctx, main)
        sag = SliceView(self.ctx, "sagittal", main)
        ax = SliceView(self.ctx, "axial", main)
        self.trajectory_views = {"oblique": oblique, "probe": probe, "sagittal": sag, "axial": ax}
        self.trajectory_panels = {"oblique": ObliquePanel(oblique), "probe": ProbePanel(probe)}
        root = self._splitter(page, Qt.Orientation.Horizontal, "root")
        root.addWidget(self._cell(page, oblique.title, self.trajectory_panels["oblique"]))
        right = self._splitter(page, Qt.Orientation.Vertical, "right")
        right.addWidget(self._cell(page, probe.title, self.trajectory_panels["probe"]))
        bottom = self._splitter(page, Qt.Orientation.Horizontal, "bottom")
        bottom.addWidget(self._cell(page, "Sagittal", sag))
        bottom.addWidget(self._cell(page, "Axial", ax))
        right.addWidget(bottom)
        root.addWidget(right)
        root.setStretchFactor(0, 11)
        root.setStretchFactor(1, 9)
        root.setSizes([1100, 900])
        right.setSizes([520, 480])
        bottom.setSizes([450, 450])
        page.set_root(root)
        for v in (oblique, probe):
            v.plane_changed.connect(lambda v=v: self._retitle(v))
        for v in self.trajectory_views.values():
            v.series_changed.connect(lambda _k, v=v: self._retitle(v))
            self._retitle(v)

    def center_on_trajectory(self) -> None:
        """Put the linked cursor on the active trajectory's target (the trajectory layout's sagittal
        and axial views then cut through it)."""
        if self._closed or not self.trajectory_views:
            return
        traj = active_trajectory(self.session)
        if traj is None:
            return
        vol = self.trajectory_views["sagittal"].volume
        self.session.set_cursor(traj.target_lps, vol.info.frame_of_reference_uid if vol is not None else None)

    def _on_active_trajectory(self, _tid) -> None:
        if not self._closed and self.current == "trajectory":
            self.center_on_trajectory()

    def _retitle(self, view: SliceView) -> None:
        cell = view.parent()
        if isinstance(cell, TrajectoryViewPanel):
            cell = cell.parent()
        vol = view.volume
        if isinstance(cell, ViewCell):
            desc = vol.info.series_description if vol is not None else ""
            title = view.title
            name = view.trajectory_title() if hasattr(view, "trajectory_title") else ""
            if name:
                title = f"{title}: {name}"
            cell.set_title(f"{title}  \u2014  {desc}" if desc else title)

    def ensure_volume_view(self):
        """Create the planning layout's 3D view now if it does not exist yet; returns it."""
        if self.volume_view is not None or self._closed or "planning" not in self.pages:
            return self.volume_view
        from planner.views.volume_view import VolumeView

        vv = VolumeView(self.ctx, self._volume_holder)
        self._volume_placeholder.hide()
        self._volume_holder.layout().addWidget(vv)
        self.volume_view = vv
        page = self.pages["planning"]
        vv.maximize_requested.connect(lambda c=self._volume_cell, p=page: p.toggle_maximize(c))
        vv.set_series(roles.main_volume_key(self.session))
        for v in self.slice_views.values():
            self._plane_changed(v)
        return vv

    # ------------------------------------------------------------------ linking
    def _plane_changed(self, view: SliceView) -> None:
        if self._closed or self.volume_view is None:
            return
        self.volume_view.update_slice_plane(view)

    def _link_cameras(self, source: SliceView) -> None:
        """Compare views show the same region: copy zoom and pan (plane coordinates are relative to
        each volume's centre, so equal geometry gives equal pictures)."""
        if self._linking:
            return
        self._linking = True
        try:
            for v in self.compare_views.values():
                if v is not source and v.frame is not None:
                    v.set_camera(source.zoom, source.center)
        finally:
            self._linking = False

    # ------------------------------------------------------------------ model events
    def _on_images_changed(self, key: str) -> None:
        if self._closed:
            return
        QTimer.singleShot(0, self.assign_series)

    def _on_plan_changed(self, change) -> None:
        if self._closed:
            return
        if change.touches(Part.CASE):
            QTimer.singleShot(0, self.assign_series)

    def native_series_for(self, orientation: str, main: Optional[str]) -> Optional[str]:
        """The series a planning view of ``orientation`` shows: a series acquired in that orientation
        (e.g. the axial T2 for the axial view) in the main volume's frame of reference that covers the
        crosshair, the one of the main volume's sequence first; else the main volume, resliced."""
        vol = self.session.images.get(main) if main else None
        if not isinstance(vol, Volume) or orientation == "sagittal":
            return main
        from planner.display.slice_geometry import native_orientation

        for_uid = vol.info.frame_of_reference_uid
        if native_orientation(vol) == orientation or not for_uid:
            return main
        cursor = self.session.cursor_lps
        family = roles.role_of(self.session, main)
        best, best_rank = main, 99
        for key, other in self.session.volumes().items():
            if key == main or other.info.frame_of_reference_uid != for_uid:
                continue
            if native_orientation(other) != orientation or not other.contains(cursor):
                continue
            role = roles.role_of(self.session, key)
            rank = 0 if family and role.endswith(family) else 1
            if rank < best_rank:
                best, best_rank = key, rank
        return best

    def _on_cursor_moved(self, _lps) -> None:
        """Axial and coronal planning views follow the crosshair onto the native series covering it."""
        if self._closed or not self.slice_views:
            return
        main = roles.main_volume_key(self.session)
        for orientation in ("axial", "coronal"):
            v = self.slice_views[orientation]
            if v.auto_series:
                key = self.native_series_for(orientation, main)
                if key != v.series_key:
                    v.set_series(key)

    def show_volume(self, key: str) -> None:
        """Show a volume the user chose in the planning slice views and the 3D view."""
        for v in self.slice_views.values():
            v.auto_series = False
            v.set_series(key)
        if self.volume_view is not None:
            self.volume_view.set_series(key)

    def show_projection(self, key: str) -> None:
        """Show a projection image the user chose in the fluoroscopy layout (lateral images on the
        lateral side)."""
        img = self.session.images.get(key)
        side = "LAT" if img is not None and roles.guess_role(img) == "FLUORO_LAT" else "AP"
        panel = self.fluoro_panels.get(side)
        if panel is not None:
            panel.set_series(key)

    def assign_series(self) -> None:
        """Give views without an image the series they should show (after an import or a plan load)."""
        if self._closed:
            return
        main = roles.main_volume_key(self.session)
        for orientation, v in self.slice_views.items():
            if v.series_key is None or v.series_key not in self.session.images:
                v.auto_series = True
            if v.auto_series:
                key = self.native_series_for(orientation, main)
                if key != v.series_key:
                    v.set_series(key)
        if self.volume_view is not None and (self.volume_view.series_key not in self.session.images):
            self.volume_view.set_series(main)
        for role, v in self.compare_views.items():
            if v.series_key is None or v.series_key not in self.session.images:
                v.set_series(roles.key_for_role(self.session, role))
        for v in self.trajectory_views.values():
            if v.series_key is None or v.series_key not in self.session.images:
                v.set_series(main)
        ap_key, lat_key = roles.fluoro_keys(self.session)
        for name, key in (("AP", ap_key), ("LAT", lat_key)):
            panel = self.fluoro_panels.get(name)
            if panel is not None and (panel.view.series_key is None or panel.view.series_key not in self.session.images):
                panel.set_series(key)

    def all_canvases(self) -> list:
        out: list = list(self.slice_views.values()) + list(self.compare_views.values())
        out += [p.view for p in self.fluoro_panels.values()]
        out += list(self.trajectory_views.values())
        return out

    def focused_canvas(self):
        for c in self.all_canvases():
            if c.hasFocus():
                return c
        page = self.current_page()
        if page is not None:
            for cell in page.cells:
                v = _canvas_of(cell.content)
                if cell.isVisible() and hasattr(v, "reset_view"):
                    return v
        return None

    # ------------------------------------------------------------------ state
    def save_state(self) -> dict[str, QByteArray]:
        out = {}
        for page in self.pages.values():
            for sp in page.splitters:
                out[sp.objectName()] = sp.saveState()
        return out

    def reset_splitters(self) -> None:
        """Every built page's splitters back to the sizes they were built with."""
        for page in self.pages.values():
            for sp in page.splitters:
                default = self._default_splitters.get(sp.objectName())
                if default is not None:
                    sp.restoreState(default)

    def restore_state(self, states: dict) -> None:
        for page in self.pages.values():
            for sp in page.splitters:
                st = states.get(sp.objectName())
                if st:
                    sp.restoreState(st)

    def shutdown(self) -> None:
        """Close every view (unsubscribe, stop timers, finalise VTK) before the window goes."""
        if self._closed:
            return
        self._closed = True
        try:
            self.session.images_changed.disconnect(self._on_images_changed)
            self.session.document.changed.disconnect(self._on_plan_changed)
            self.session.active_trajectory_changed.disconnect(self._on_active_trajectory)
            self.session.cursor_moved.disconnect(self._on_cursor_moved)
        except Exception:  # pragma: no cover
            pass
        for p in self.trajectory_panels.values():
            p.shutdown()
        for c in self.all_canvases():
            c.shutdown()
        if self.volume_view is not None:
            self.volume_view.shutdown()


def _canvas_of(content: QWidget) -> QWidget:
    """The canvas inside a layout cell (fluoroscopy and trajectory panels hold theirs in ``.view``)."""
    return content.view if isinstance(content, (FluoroPanel, TrajectoryViewPanel)) else content
