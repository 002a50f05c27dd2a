"""The main window: menus and toolbar with the planned actions, the view layouts, dock panels,
status bar, drag and drop, and remembered window state.

It owns no plan data: it shows the :class:`planner.session.Session` and sends edits to its
PlanDocument. Actions whose feature is not built yet are present but disabled, with a tooltip
saying what they will do; :meth:`MainWindow.bind_action` enables one and connects it. The export
actions live in :mod:`planner.views.export_actions`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

from PySide6.QtCore import QPoint, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from planner import APP_NAME, __version__
from planner.plan import Plan
from planner.session import Session, case_is_empty, describe_patient, group_by_patient
from planner.views.bindings import TOOL_TEXT, Bindings, default_bindings
from planner.views.context import TOOLS, ViewContext
from planner.views.gui_settings import PresetStore, gui_settings
from planner.views.layouts import LAYOUT_TIPS, LAYOUT_TITLES, LAYOUTS, ViewLayout
from planner.views.panel import PlanPanel

log = logging.getLogger(__name__)

TOOL_TITLES = {"window_level": "Window/level", "crosshair": "Crosshair / edit", "distance": "Measure distance",
               "angle": "Measure angle", "calibrate": "Calibrate fluoroscopy"}

#: File and Edit actions implemented by the export controller and the settings dialog: text and tooltip.
EXPORT_ACTIONS = {
    "file.export_report": ("Export plan &summary (PDF)...",
                           "Write the plan summary PDF: levels, findings, trajectories with key images, checks, "
                           "review (the same file as 'main.py report')"),
    "file.export_sheet": ("Export patient &sheet...",
                          "Write the plain-language patient explanation sheet (PDF or HTML, English or Spanish)"),
    "file.export_dicom": ("Export to &DICOM...",
                          "Write the plan as DICOM for the PACS: Encapsulated PDF, key images (Secondary Capture) "
                          "and the plan as a structured report"),
    "file.export_teaching": ("Export de-identified &teaching copy...",
                             "Write plan and images de-identified (DICOM PS3.15 basic profile) for teaching"),
    "file.pacs": ("&PACS query / retrieve...", "Search a PACS and retrieve series into the planner"),
    "file.send_pacs": ("Send last DICOM export to PACS...", "Send the files of the last DICOM export to a PACS"),
    "edit.preferences": ("Planning &settings...",
                         "The clinical thresholds of this plan with their sources (saved with the plan)"),
}
#: Plan menu entries that show a dock panel of the same name once a helper adds it (add_panel).
PANEL_ACTIONS = {"plan.series": "Series", "plan.levels": "Levels", "plan.trajectories": "Trajectories",
                 "plan.eligibility": "Eligibility", "plan.review": "Review"}
PANEL_TIPS = {"Series": "Show the series list: the loaded series grouped by patient and study",
              "Levels": "Show the levels panel: vertebral levels, landmarks and endplate (Modic) findings",
              "Trajectories": "Show the trajectory planning panel",
              "Eligibility": "Show the eligibility checklist",
              "Review": "Show the review panel: comments, sign-off and the audit trail"}
#: The dock panels in their tab order. Their docks exist from the start (the panels fill them after the
#: first image is on screen), so the remembered window state always finds them.
PANEL_NAMES = tuple(PANEL_ACTIONS.values())
#: Version of the saved dock layout; a state saved by an older layout is ignored (defaults instead).
WINDOW_STATE_VERSION = 2


class ShortcutsDialog(QDialog):
    """Every binding: mouse, wheel, view keys, tools and menu shortcuts."""

    def __init__(self, bindings: Bindings, actions: dict[str, QAction], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        rows = list(bindings.describe())
        for name, act in sorted(actions.items()):
            seq = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if seq and not name.startswith("tool."):
                rows.append(("Menus", seq, act.text().replace("&", "").rstrip(".")))
        self.table = QTableWidget(len(rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Where", "Shortcut", "What it does"])
        for r, (cat, key, text) in enumerate(rows):
            for c, val in enumerate((cat, key, text)):
                item = QTableWidgetItem(val)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.resizeColumnsToContents()
        note = QLabel(f"Bindings come from {bindings.data.get('scheme', '')} scheme in resources/bindings.json; "
                      "a site can override them with bindings.json in the data folder.", self)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(note)
        lay.addWidget(buttons)
        self.resize(760, 560)

    def rows(self) -> list[tuple[str, str, str]]:
        return [tuple(self.table.item(r, c).text() for c in range(3)) for r in range(self.table.rowCount())]


class MainWindow(QMainWindow):
    #: Emitted with the ImportResult after an import from the window finished.
    images_imported = Signal(object)

    def __init__(self, session: Optional[Session] = None, *, bindings: Optional[Bindings] = None,
                 settings: Optional[QSettings] = None, restore_state: bool = True,
                 initial_layout: Optional[str] = None) -> None:
        """``restore_state``: read the remembered window state (panels, docks, splitters, layout) at
        start and write it at close; False for screenshots, benches and scripts, which never touch
        the user's settings."""
        super().__init__()
        self.persist_state = restore_state
        self.session = session or Session()
        self.bindings = bindings or default_bindings()
        self.settings = settings or gui_settings()
        self.ctx = ViewContext(self.session, self.bindings, self)
        self.ctx.presets = PresetStore(self.settings)
        self.actions: dict[str, QAction] = {}
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}  # the panel widget of each dock
        self._closed = False
        self._import_tasks: list = []
        #: Windows opened from this one for other patients' images (kept alive while open).
        self.other_windows: list["MainWindow"] = []
        #: Images of other patients found at start-up (asked about once the window is up).
        self.pending_other_patients: list[dict] = []
        self.title_hint = ""
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(False)
        self.views = ViewLayout(self.ctx, self)
        #: Shown above the views while the plan is open read-only (review).
        self.review_banner = QLabel(
            "<b>Read-only review</b>: you can read everything, comment and sign off (Review panel); "
            "the plan itself cannot be changed.", self)
        self.review_banner.setObjectName("reviewBanner")
        self.review_banner.setStyleSheet("QLabel#reviewBanner { background: #5d4200; color: #ffe8a3; "
                                         "padding: 4px 8px; }")
        central = QWidget(self)
        central_lay = QVBoxLayout(central)
        central_lay.setContentsMargins(0, 0, 0, 0)
        central_lay.setSpacing(0)
        central_lay.addWidget(self.review_banner)
        central_lay.addWidget(self.views, 1)
        self.setCentralWidget(central)

        from planner.views.file_controller import FileController

        self.files = FileController(self.session, self, on_plan_loaded=self.find_plan_images)
        self.files.status.connect(self.show_message)
        self.files.plan_opened.connect(lambda _p: self._update_title())

        from planner.views.export_actions import ExportController

        self.exports = ExportController(self)
        from planner.views.plan_images import PlanImages

        self.plan_images = PlanImages(self)
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_statusbar()
        self._build_docks()
        doc = self.session.document
        self._doc_slots = [(doc.dirty_changed, self._on_dirty), (doc.undo_changed, self._update_undo),
                           (doc.changed, self._on_doc_changed), (self.session.cursor_moved, self._on_cursor)]
        for sig, slot in self._doc_slots:
            sig.connect(slot)
        self.ctx.message.connect(self.show_message)
        self.ctx.cursor_info.connect(self.cursor_label.setText)
        self.views.layout_changed.connect(self._on_layout_changed)

        self.resize(1600, 1000)
        saved_layout = None
        if restore_state:
            saved_layout = self._restore_settings()
        reviewer = self.settings.value("review/name", "", type=str) if restore_state else ""
        if reviewer:  # the name this user reviews under (comments, sign-off, audit trail)
            self.session.document.user = reviewer
        layout = initial_layout or self._layout_showing_images(saved_layout or "planning")
        self.place_cursor()
        self.set_layout(layout if layout in LAYOUTS else "planning")
        self._update_title()
        self._update_undo()

    # ================================================================== actions
    def _act(self, name: str, text: str, slot: Optional[Callable] = None, *, tip: str = "",
             shortcut: str = "", checkable: bool = False) -> QAction:
        act = QAction(text, self)
        act.setObjectName(name)
        seq = shortcut or self.bindings.action_shortcut(name)
        if seq:
            act.setShortcut(QKeySequence(seq))
        if tip:
            act.setToolTip(tip + (f" ({act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})"
                                  if seq else ""))
            act.setStatusTip(tip)
        act.setCheckable(checkable)
        if slot is not None:
            act.triggered.connect(slot)
        self.actions[name] = act
        self.addAction(act)  # shortcuts work even when the menu bar is hidden
        return act

    def _build_actions(self) -> None:
        a = self._act
        a("file.open", "&Open folder...", self.open_folder_dialog,
          tip="Open a DICOM folder, CD/DVD (DICOMDIR) or folder of research images")
        a("file.open_file", "Open &file...", self.open_file_dialog,
          tip="Open a DICOM file, zip archive, DICOMDIR or NIfTI/NRRD/MetaImage file")
        a("file.open_plan", "Open &plan...", lambda: self.files.open_plan(),
          tip="Open a saved plan (.bvnplan); its images are found by their DICOM UIDs")
        a("file.save", "&Save plan", lambda: self.files.save(), tip="Save the plan (atomic: a crash never damages the file)")
        a("file.save_as", "Save plan &as...", lambda: self.files.save_as(), tip="Save the plan under a new name")
        a("file.quit", "&Quit", self.close, tip="Quit (asks about unsaved changes)")
        ex = self.exports
        slots = {"file.export_report": lambda: ex.export_report(), "file.export_sheet": lambda: ex.export_sheet(),
                 "file.export_dicom": lambda: ex.export_dicom(),
                 "file.export_teaching": lambda: ex.export_dicom(deidentify=True),
                 "file.pacs": lambda: ex.open_pacs(), "file.send_pacs": lambda: ex.send_last_export(),
                 "edit.preferences": self.show_settings}
        for name, (text, tip) in EXPORT_ACTIONS.items():
            a(name, text, slots[name], tip=tip)
        a("edit.undo", "&Undo", self._undo, tip="Undo the last plan edit")
        a("edit.redo", "&Redo", self._redo, tip="Redo the last undone plan edit")
        self.layout_group = QActionGroup(self)
        for idx, name in enumerate(LAYOUTS):
            act = a(f"view.layout_{name}", f"{LAYOUT_TITLES[name]} layout",
                    lambda _=False, n=name: self.set_layout(n), checkable=True,
                    tip=LAYOUT_TIPS.get(name, ""))
            self.layout_group.addAction(act)
        a("view.maximize", "&Maximise / restore view", self.toggle_maximize_focused,
          tip="Maximise the view with the keyboard focus, or restore the layout (also: double-click a view)")
        a("view.reset", "&Reset views", self.reset_views, tip="Reset zoom, pan and window/level of the views")
        a("view.reset_layout", "Reset &layout", self.reset_layout,
          tip="Show every panel in the tabbed column on the right and give the views their default sizes")
        act = a("view.annotation_detail", "&Detailed annotations", self.ctx.set_annotation_detail, checkable=True,
                tip="Show all corner annotations (patient, study, series, slice, spacing) or only the essentials")
        act.setChecked(self.ctx.annotation_detail)
        act = a("view.deidentified", "De-&identified display", self.ctx.set_deidentified, checkable=True,
                tip="Hide patient name, ID and birth date in the views (for teaching screenshots)")
        act.setChecked(self.ctx.deidentified)
        self.slice_mode_group = QActionGroup(self)
        for mode, text, tip in (("acquisition", "Slices along the acquisition", "Planes of the volume's own axes "
                                 "(as acquired; lumbar MRI is often oblique)"),
                                ("patient", "Slices along the patient axes", "True sagittal, coronal and axial "
                                 "planes, resampled")):
            act = a(f"view.slice_{mode}", text, lambda _=False, m=mode: self.ctx.set_slice_mode(m),
                    checkable=True, tip=tip)
            act.setChecked(self.ctx.slice_mode == mode)
            self.slice_mode_group.addAction(act)
        self.tool_group = QActionGroup(self)
        for tool in TOOLS:
            act = a(f"tool.{tool}", TOOL_TITLES[tool], lambda _=False, t=tool: self.ctx.set_tool(t),
                    checkable=True, shortcut=self.bindings.tool_shortcut(tool), tip=TOOL_TEXT[tool])
            act.setChecked(tool == self.ctx.tool)
            self.tool_group.addAction(act)
        self.ctx.tool_changed.connect(lambda t: self.actions[f"tool.{t}"].setChecked(True))
        a("tool.auto_window", "Automatic window/level", self.auto_window_focused,
          tip="Window/level from the 0.1-99.9 percentile range of the focused view's series")
        for key, panel in PANEL_ACTIONS.items():
            act = a(key, panel, lambda _=False, p=panel: self.show_panel(p), tip=PANEL_TIPS[panel])
            act.setEnabled(False)
        a("help.guide", "&User guide", self.show_user_guide, tip="The user guide: a case from import to export")
        a("help.shortcuts", "&Keyboard and mouse shortcuts", self.show_shortcuts,
          tip="List every mouse and keyboard binding")
        a("help.about", f"&About {APP_NAME}", self.show_about, tip="Version and licence information")

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for n in ("file.open", "file.open_file", "file.open_plan"):
            m.addAction(self.actions[n])
        self.recent_menu = m.addMenu("Open &recent plan")
        self.recent_menu.setToolTipsVisible(True)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        m.addAction(self.actions["file.save"])
        m.addAction(self.actions["file.save_as"])
        m.addSeparator()
        for n in ("file.export_report", "file.export_sheet", "file.export_dicom", "file.export_teaching"):
            m.addAction(self.actions[n])
        m.addSeparator()
        m.addAction(self.actions["file.pacs"])
        m.addAction(self.actions["file.send_pacs"])
        m.addSeparator()
        m.addAction(self.actions["file.quit"])
        m = mb.addMenu("&Edit")
        m.addAction(self.actions["edit.undo"])
        m.addAction(self.actions["edit.redo"])
        m.addSeparator()
        m.addAction(self.actions["edit.preferences"])
        m = mb.addMenu("&View")
        for name in LAYOUTS:
            m.addAction(self.actions[f"view.layout_{name}"])
        m.addSeparator()
        m.addAction(self.actions["view.maximize"])
        m.addAction(self.actions["view.reset"])
        m.addSeparator()
        m.addAction(self.actions["view.annotation_detail"])
        m.addAction(self.actions["view.deidentified"])
        m.addSeparator()
        m.addAction(self.actions["view.slice_acquisition"])
        m.addAction(self.actions["view.slice_patient"])
        self.panels_menu = m.addMenu("&Panels")
        m.addAction(self.actions["view.reset_layout"])
        m = mb.addMenu("&Tools")
        for tool in TOOLS:
            m.addAction(self.actions[f"tool.{tool}"])
        m.addSeparator()
        m.addAction(self.actions["tool.auto_window"])
        m = mb.addMenu("&Plan")
        for key in PANEL_ACTIONS:
            m.addAction(self.actions[key])
        m = mb.addMenu("&Help")
        m.addAction(self.actions["help.guide"])
        m.addAction(self.actions["help.shortcuts"])
        m.addAction(self.actions["help.about"])
        for menu in mb.findChildren(type(self.recent_menu)):
            menu.setToolTipsVisible(True)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Main toolbar", self)
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        for n in ("file.open", "file.open_plan", "file.save"):
            tb.addAction(self.actions[n])
        tb.addSeparator()
        tb.addAction(self.actions["edit.undo"])
        tb.addAction(self.actions["edit.redo"])
        tb.addSeparator()
        for name in LAYOUTS:
            tb.addAction(self.actions[f"view.layout_{name}"])
        tb.addSeparator()
        for tool in TOOLS:
            tb.addAction(self.actions[f"tool.{tool}"])
        self.wl_menu = QMenu("Window/level presets", self)
        self.wl_menu.setToolTipsVisible(True)
        self.wl_menu.aboutToShow.connect(self._fill_wl_menu)
        self.wl_button = QToolButton(self)
        self.wl_button.setObjectName("wlPresets")
        self.wl_button.setText("W/L presets")
        self.wl_button.setToolTip("Window/level presets of the focused view: header windows, CT bone and soft "
                                  "tissue, automatic, and your presets per sequence")
        self.wl_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.wl_button.setMenu(self.wl_menu)
        tb.addWidget(self.wl_button)
        tb.addSeparator()
        tb.addAction(self.actions["view.reset"])
        self.toolbar = tb
        short = {"file.open": "Open", "file.open_plan": "Open plan", "file.save": "Save", "edit.undo": "Undo",
                 "edit.redo": "Redo", "view.layout_planning": "Planning", "view.layout_fluoro": "Fluoro",
                 "view.layout_compare": "Compare", "view.layout_trajectory": "Trajectory", "tool.window_level": "W/L", "tool.crosshair": "Crosshair/edit",
                 "tool.distance": "Distance", "tool.angle": "Angle", "tool.calibrate": "Calibrate",
                 "view.reset": "Reset"}
        for name, text in short.items():
            self.actions[name].setIconText(text)

    def _fill_wl_menu(self) -> None:
        self.wl_menu.clear()
        view = self.views.focused_canvas()
        if view is None or not view.has_image():
            act = self.wl_menu.addAction("(click a view with an image first)")
            act.setEnabled(False)
            return
        title = self.wl_menu.addAction(f"For the {getattr(view, 'title', 'focused')} view")
        title.setEnabled(False)
        view.fill_window_menu(self.wl_menu)

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.cursor_label = QLabel("", self)
        self.cursor_label.setObjectName("cursorInfo")
        self.cursor_label.setToolTip("Under the mouse: position (LPS, mm), value, view and slice")
        self.crosshair_label = QLabel("", self)
        self.crosshair_label.setObjectName("crosshairInfo")
        self.crosshair_label.setToolTip("Linked crosshair position (LPS, mm)")
        #: What a left-drag on a plan handle does now, or the marking mode waiting for a click.
        self.gesture_label = QLabel("", self)
        self.gesture_label.setObjectName("gestureInfo")
        self.gesture_label.setToolTip("How plan handles (landmarks, trajectory points, measurements) are moved; "
                                      "a marking mode waits for a click here")
        sb.addPermanentWidget(self.gesture_label)
        sb.addPermanentWidget(self.cursor_label)
        sb.addPermanentWidget(self.crosshair_label)
        self.ctx.tool_changed.connect(lambda _t: self._update_gesture_label())
        self.ctx.point_request_changed.connect(lambda _p: self._update_gesture_label())
        self._update_gesture_label()

    def _update_gesture_label(self) -> None:
        req = self.ctx.point_request
        if req is not None:
            self.gesture_label.setText(f"<b style='color:#ffd54f'>{req[0]}</b> (Esc cancels)")
            self.show_message(f"{req[0]} (Esc cancels)", 0)
        elif self.session.document.read_only:
            self.gesture_label.setText("Read-only: plan handles stay where they are")
        elif self.ctx.tool == "crosshair":
            self.gesture_label.setText("Drag a handle to move it")
        else:
            self.gesture_label.setText(f"{self.ctx.edit_gesture()} moves a landmark or trajectory point")

    def bind_action(self, name: str, slot: Callable, *, text: Optional[str] = None, tip: Optional[str] = None) -> QAction:
        """Enable a planned action and connect it (used by the features that implement them)."""
        act = self.actions[name]
        try:
            act.triggered.disconnect()
        except (RuntimeError, TypeError):
            pass
        act.triggered.connect(slot)
        if text:
            act.setText(text)
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        act.setEnabled(True)
        return act

    # ================================================================== panels
    def _build_docks(self) -> None:
        """One tabbed column of docks on the right, one per panel, each holding a placeholder until its
        panel is added; the default arrangement is kept for View > Reset layout."""
        first = None
        for name in PANEL_NAMES:
            dock = QDockWidget(name, self)
            dock.setObjectName(f"dock_{name}")
            # a tall panel scrolls instead of forcing a minimum window height (small screens, screenshots)
            scroll = QScrollArea(dock)
            scroll.setObjectName(f"scroll_{name}")
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            placeholder = QLabel(f"The {name.lower()} panel is starting\u2026", scroll)
            placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
            scroll.setWidget(placeholder)
            dock.setWidget(scroll)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                             | QDockWidget.DockWidgetFeature.DockWidgetClosable
                             | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            if first is None:
                first = dock
            else:
                self.tabifyDockWidget(first, dock)
            self.docks[name] = dock
            self.panels_menu.addAction(dock.toggleViewAction())
        self._raise_default_dock()
        # the views keep most of the width: the panel column starts at about a quarter of it
        self.resizeDocks([first], [max(300, int(self.width() * 0.26))], Qt.Orientation.Horizontal)
        self._default_window_state = self.saveState(WINDOW_STATE_VERSION)

    def _raise_default_dock(self) -> None:
        self.docks["Levels"].raise_()

    def add_panel(self, name: str, widget: QWidget) -> QDockWidget:
        """Put a panel into its dock (the tabbed column on the right). Returns the QDockWidget."""
        dock = self.docks.get(name)
        if dock is None:
            raise KeyError(f"no dock for a panel named {name!r}; the panels are {', '.join(PANEL_NAMES)}")
        scroll = dock.widget()
        old = scroll.takeWidget()
        if old is not None:
            old.deleteLater()
        scroll.setWidget(widget)
        # as wide as the panel needs (only the height scrolls)
        scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self.panels[name] = widget
        for key, panel in PANEL_ACTIONS.items():
            if panel == name:
                self.actions[key].setEnabled(True)
        if isinstance(widget, PlanPanel):
            widget.message.connect(self.show_message)
            # a raised tab: the panel catches up on the changes it skipped while hidden
            dock.visibilityChanged.connect(lambda shown, w=widget: QTimer.singleShot(0, w.refresh_if_stale)
                                           if shown else None)
        return dock

    def reset_layout(self) -> None:
        """View > Reset layout: every panel back in the tabbed column, the default view layout and
        splitter positions."""
        self.restoreState(self._default_window_state, WINDOW_STATE_VERSION)
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self._raise_default_dock()
        self.resizeDocks([self.docks[PANEL_NAMES[0]]], [max(300, int(self.width() * 0.26))],
                         Qt.Orientation.Horizontal)
        self._saved_splitters = {}
        self.views.reset_splitters()
        self.set_layout("planning")
        self.show_message("Layout reset: all panels shown, default view sizes")

    def show_panel(self, name: str) -> None:
        dock = self.docks.get(name)
        if dock is not None:
            dock.show()
            dock.raise_()

    # ================================================================== layouts and views
    def set_layout(self, name: str) -> None:
        self.views.set_layout_name(name)
        self.views.restore_state(getattr(self, "_saved_splitters", {}))

    def _on_layout_changed(self, name: str) -> None:
        self.actions[f"view.layout_{name}"].setChecked(True)
        self.show_message(f"{LAYOUT_TITLES[name]} layout")

    def toggle_maximize_focused(self) -> None:
        page = self.views.current_page()
        if page is None:
            return
        if page.maximized is not None:
            page.set_maximized(None)
            return
        canvas = self.views.focused_canvas()
        for cell in page.cells:
            content = cell.content
            if content is canvas or getattr(content, "view", None) is canvas:
                page.set_maximized(cell)
                return

    def reset_views(self) -> None:
        for c in self.views.all_canvases():
            if c.isVisible():
                c.reset_view()
        vv = self.views.volume_view
        if vv is not None and vv.isVisible():
            vv.set_camera_view(vv.default_camera())

    def auto_window_focused(self) -> None:
        c = self.views.focused_canvas()
        if c is not None:
            c.set_window(c.auto_window())

    # ================================================================== document
    def _undo(self) -> None:
        if self.session.document.undo():
            self.show_message(f"Undone: {self.session.document.redo_text}")

    def _redo(self) -> None:
        if self.session.document.redo():
            self.show_message(f"Redone: {self.session.document.undo_text}")

    def _update_undo(self) -> None:
        doc = self.session.document
        u, r = self.actions["edit.undo"], self.actions["edit.redo"]
        u.setEnabled(doc.can_undo)
        r.setEnabled(doc.can_redo)
        u.setText(f"&Undo {doc.undo_text}" if doc.can_undo else "&Undo")
        r.setText(f"&Redo {doc.redo_text}" if doc.can_redo else "&Redo")

    def _on_dirty(self, _dirty: bool = False) -> None:
        self._update_title()

    def _on_doc_changed(self, change) -> None:
        if change.source == "load":
            self._update_title()
            self._update_gesture_label()
            self._cursor_placed = False  # a newly opened plan starts at its treated level
            self.place_cursor()

    def place_cursor(self) -> None:
        """Start where the work is: the crosshair goes to the first level marked for treatment (else
        the centre of the planning volume) unless it already lies inside that volume."""
        from planner.display import roles

        key = roles.main_volume_key(self.session)
        vol = self.session.images.get(key) if key else None
        if vol is None:
            return
        first = not getattr(self, "_cursor_placed", False)
        self._cursor_placed = True
        cursor = self.session.cursor_lps
        never_set = not cursor.any() and not self.session.cursor_frame_of_reference_uid
        if vol.contains(cursor) and not (first and never_set):
            return
        target = vol.center_lps()
        for lv in self.session.document.plan.levels:
            c = lv.landmarks.body_center_lps
            if lv.treat and c is not None and vol.contains(c):
                target = c
                break
        self.session.set_cursor(target, vol.info.frame_of_reference_uid)

    def _update_title(self) -> None:
        doc = self.session.document
        if doc.path:
            name = Path(doc.path).name
        else:
            name = self.title_hint or "Untitled plan"
        ro = " (read-only review)" if doc.read_only else ""
        self.setWindowTitle(f"{name}[*]{ro} \u2014 {APP_NAME}")
        self.setWindowModified(doc.is_dirty)
        self.review_banner.setVisible(doc.read_only)

    def _on_cursor(self, lps) -> None:
        self.crosshair_label.setText(f"Crosshair LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm")

    def show_message(self, text: str, ms: int = 6000) -> None:
        if not self._closed:
            self.statusBar().showMessage(text, ms)

    # ================================================================== images
    def add_images(self, images: dict) -> int:
        """Add images of this window's patient to the session (recorded in the plan's case) and give
        the views their series. Returns how many were added."""
        n = self.session.add_images(images)
        self.place_cursor()
        self.views.assign_series()
        layout = self._layout_showing_images(self.views.current)
        if layout != self.views.current:
            self.set_layout(layout)
        return n

    def _layout_showing_images(self, layout: str) -> str:
        """``layout``, unless it would show none of the open images: fluoroscopy (RF/XA) alone opens in
        the fluoroscopy layout, not in four empty slice views."""
        if layout != "fluoro" and self.session.projections() and not self.session.volumes():
            return "fluoro"
        return layout

    def receive_images(self, images: dict) -> list[str]:
        """Images from an import: those of this window's patient are added; for each other patient
        the user chooses to open them in a new window (the default), to replace this case, or not to
        open them (one patient per plan, never mixed silently). Returns the keys added here."""
        mine: dict = {}
        others: list[dict] = []
        open_now = bool(self.session.images) or not case_is_empty(self.session.document.plan.case)
        for group in group_by_patient(images):
            if open_now:
                belongs = not any(self.session.is_other_patient(k, img) for k, img in group.items())
            else:  # an empty window takes the first patient of the import
                belongs = not mine
            if belongs:
                mine.update(group)
            else:
                others.append(group)
        if mine:
            self.add_images(mine)
        for group in others:
            self.offer_other_patient(group)
        return list(mine)

    def offer_other_patient(self, group: dict) -> str:
        """Ask what to do with images of another patient; returns the answer."""
        ref = self.session.patient_reference()
        other = next(iter(group.values())).info
        can_replace = not self.session.document.read_only
        answer = self.files.prompter.ask_other_patient(describe_patient(ref) if ref is not None else "",
                                                       describe_patient(other), can_replace)
        if answer == "window":
            self.open_in_new_window(group)
        elif answer == "replace" and can_replace:
            self.replace_case(group)
        else:
            self.show_message(f"Not opened: {len(group)} series of another patient", 10000)
        return answer

    def open_in_new_window(self, images: dict) -> "MainWindow":
        """A new main window with its own empty plan for ``images`` (another patient)."""
        win = MainWindow(Session(), restore_state=False, initial_layout="planning")
        win.persist_state = self.persist_state
        win.files.prompter = self.files.prompter
        win.resize(self.size())
        win.move(self.pos() + QPoint(40, 40))
        win.add_images(images)
        self.other_windows.append(win)
        win.destroyed.connect(lambda _=None, w=win: self.other_windows.remove(w) if w in self.other_windows else None)
        win.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        win.show()
        QTimer.singleShot(0, win.install_panels)
        win.show_message(f"Opened {len(images)} series of {describe_patient(next(iter(images.values())).info)}")
        return win

    def replace_case(self, images: dict) -> bool:
        """Close the open plan (asking about unsaved changes) and its images; open ``images`` with a new
        plan. Returns False when the user kept the open plan."""
        if not self.files.maybe_discard_changes():
            return False
        self.files.autosave.discard()
        self.session.document.replace_plan(Plan(), read_only=False, path=None)
        for key in list(self.session.images):
            self.session.remove_image(key)
        self._cursor_placed = False
        self.title_hint = ""
        self.add_images(images)
        self._update_title()
        self.show_message(f"Opened {len(images)} series of another patient in place of the previous case")
        return True

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder or CD")
        if path:
            self.import_paths([path])

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open images", "", "Images (*.dcm *.zip DICOMDIR *.nii *.nii.gz *.nrrd *.mha *.mhd);;All files (*)")
        if path:
            self.import_paths([path])

    def import_paths(self, paths: Sequence[str | Path], *, show_dialog: bool = True):
        """Open dropped or chosen paths: a .bvnplan opens as the plan; anything else is imported
        off the GUI thread. Returns the ImportTask (or None)."""
        paths = [Path(p) for p in paths]
        plans = [p for p in paths if p.suffix.lower() == ".bvnplan"]
        if plans:
            self.files.open_plan(str(plans[0]))
            paths = [p for p in paths if p not in plans]
        if not paths:
            return None
        from planner.views.import_task import ImportTask

        task = ImportTask([str(p) for p in paths], self, show_dialog=show_dialog)
        task.finished.connect(lambda result, t=task: self._on_import_done(t, result))
        self._import_tasks.append(task)
        task.start()
        self.show_message(f"Reading {', '.join(p.name for p in paths)}...")
        return task

    def _on_import_done(self, task, result) -> None:
        if task in self._import_tasks:
            self._import_tasks.remove(task)
        if self._closed:
            return
        added = self.receive_images(result.images)
        rep = result.report
        if added:
            names = ", ".join(self.session.images[k].info.series_description or k for k in added[:3])
            self.show_message(f"Loaded {len(added)} image series ({names}{', ...' if len(added) > 3 else ''})"
                              + (" (cancelled)" if rep.cancelled else "") + "; the Series panel lists them")
            self.show_panel("Series")
        elif not result.images:
            self.show_message("No images were loaded" + (" (cancelled)" if rep.cancelled else ""))
        if rep.skipped_files or rep.notes or rep.series_warnings:
            from planner.views.import_task import show_import_report

            show_import_report(self, result)
        self.images_imported.emit(result)

    def find_plan_images(self, images_folder: Optional[str]) -> None:
        """After a plan opens: images of another patient than the plan are closed (one patient per
        plan); the plan's series are loaded by UID (``images_folder``, else the path hints) in the
        background; then the window says which series are missing and offers another folder or the PACS."""
        for key, img in list(self.session.images.items()):
            if self.session.is_other_patient(key, img):
                self.session.remove_image(key)
        self.plan_images.load(images_folder)

    def install_panels(self) -> list[str]:
        """Fill the docks with the side panels (after the first image is on screen: start-up stays
        short) and wire them to the views. Returns the names of the panels added."""
        from planner.views.eligibility_panel import EligibilityPanel
        from planner.views.levels_panel import LevelsPanel
        from planner.views.review_panel import ReviewPanel
        from planner.views.series_panel import SeriesPanel
        from planner.views.trajectory_panel import TrajectoryPanel

        added = []
        for name, cls in (("Series", SeriesPanel), ("Levels", LevelsPanel), ("Trajectories", TrajectoryPanel),
                          ("Eligibility", EligibilityPanel), ("Review", ReviewPanel)):
            if name in self.panels or self._closed:
                continue
            self.add_panel(name, cls(self.session))
            added.append(name)
        if "Series" in added:
            series = self.panels["Series"]
            series.series_activated.connect(self.show_series)
            series.set_deidentified(self.ctx.deidentified)
            self.ctx.display_changed.connect(lambda: series.set_deidentified(self.ctx.deidentified))
        if "Trajectories" in added:
            self.panels["Trajectories"].trajectory_selected.connect(self.show_trajectory)
        if "Review" in added:
            self.panels["Review"].reviewer_changed.connect(self._remember_reviewer)
        if "Levels" in added:
            levels = self.panels["Levels"]
            levels.hint_requested.connect(lambda name: self.ctx.request_point(
                f"Click inside {name} in a slice view", levels.provide_hint, levels.cancel_hint))
            levels.hint_cancelled.connect(self.ctx.cancel_point_request)
        return added

    def show_trajectory(self, trajectory_id: str) -> None:
        """A trajectory chosen in the list: the crosshair goes to its target, so every view shows it."""
        if not trajectory_id:
            return
        try:
            traj = self.session.document.plan.trajectory(trajectory_id)
        except KeyError:
            return
        from planner.display import roles

        key = roles.main_volume_key(self.session)
        vol = self.session.images.get(key) if key else None
        self.session.set_cursor(traj.target_lps, vol.info.frame_of_reference_uid if vol is not None else None)

    def _remember_reviewer(self, name: str) -> None:
        if self.persist_state:
            self.settings.setValue("review/name", name)
            self.settings.sync()

    def show_series(self, key: str) -> None:
        """Show a series in the views: a volume in the planning slice views, a projection in the
        fluoroscopy layout."""
        img = self.session.images.get(key)
        if img is None:
            return
        if key in self.session.volumes():
            if self.views.current not in ("planning", "compare"):
                self.set_layout("planning")
            self.views.show_volume(key)
        else:
            self.set_layout("fluoro")
            self.views.show_projection(key)
        self.show_message(f"Showing {img.info.series_description or key}")

    # ================================================================== drag and drop
    def dragEnterEvent(self, event):  # noqa: N802
        from planner.views.import_task import paths_from_mime

        if paths_from_mime(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        from planner.views.import_task import paths_from_mime

        paths = paths_from_mime(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    # ================================================================== help
    def show_settings(self):
        """Edit > Planning settings (non-modal; OK applies the values as one undoable edit)."""
        from planner.views.settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.session.document, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        return dlg

    def show_shortcuts(self) -> ShortcutsDialog:
        dlg = ShortcutsDialog(self.bindings, self.actions, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        return dlg

    def show_user_guide(self) -> QDialog:
        """docs/user-guide.md in a window (non-modal)."""
        from PySide6.QtWidgets import QTextBrowser

        guide = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
        dlg = QDialog(self)
        dlg.setWindowTitle(f"{APP_NAME} user guide")
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.resize(900, 800)
        lay = QVBoxLayout(dlg)
        browser = QTextBrowser(dlg)
        browser.setObjectName("userGuide")
        browser.setOpenExternalLinks(True)
        try:
            browser.setMarkdown(guide.read_text(encoding="utf-8"))
        except OSError as exc:
            browser.setPlainText(f"The user guide {guide} could not be read: {exc.strerror or exc}.")
        lay.addWidget(browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dlg)
        buttons.rejected.connect(dlg.close)
        lay.addWidget(buttons)
        dlg.show()
        return dlg

    def show_about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<b>{APP_NAME}</b> {__version__}<br>"
                          "Planning of basivertebral nerve ablation on lumbar spine MRI, CT and fluoroscopy.<br><br>"
                          "A planning aid, not a navigation system. Every clinical threshold is a setting with "
                          "its source.")

    # ================================================================== settings
    def _restore_settings(self) -> Optional[str]:
        s = self.settings
        geo = s.value("window/geometry")
        if geo:
            self.restoreGeometry(geo)
        st = s.value("window/state")
        if st and not self.restoreState(st, WINDOW_STATE_VERSION):
            log.info("the remembered panel layout is from an older version; using the default layout")
        splitters = {}
        s.beginGroup("splitters")
        for key in s.childKeys():
            splitters[key] = s.value(key)
        s.endGroup()
        self._saved_splitters = splitters
        detail = s.value("view/annotation_detail")
        if detail is not None:
            on = str(detail).lower() in ("true", "1")
            self.ctx.set_annotation_detail(on)
            self.actions["view.annotation_detail"].setChecked(on)
        mode = s.value("view/slice_mode")
        if mode in ("acquisition", "patient"):
            self.ctx.set_slice_mode(mode)
            self.actions[f"view.slice_{mode}"].setChecked(True)
        layout = s.value("view/layout")
        return str(layout) if layout else None

    def save_settings(self) -> None:
        """Remember the window state (not for screenshots and scripts: see ``restore_state``)."""
        if not self.persist_state:
            return
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(WINDOW_STATE_VERSION))
        s.setValue("view/layout", self.views.current)
        s.setValue("view/annotation_detail", self.ctx.annotation_detail)
        s.setValue("view/slice_mode", self.ctx.slice_mode)
        s.beginGroup("splitters")
        saved = dict(getattr(self, "_saved_splitters", {}))
        saved.update(self.views.save_state())
        for key, val in saved.items():
            s.setValue(key, val)
        s.endGroup()
        s.sync()

    # ================================================================== close
    def closeEvent(self, event):  # noqa: N802
        if self._closed:
            event.accept()
            return
        if not self.files.maybe_close():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Save display state, then close every view before anything else (crash rules)."""
        if self._closed:
            return
        try:
            self.save_settings()
        except Exception:
            log.exception("could not save the window state")
        self._closed = True
        for part in (self.exports, self.plan_images):
            try:
                part.shutdown()
            except Exception:
                log.exception("shutdown of %s failed", type(part).__name__)
        for task in list(self._import_tasks):
            task.cancel()
            task.wait(5000)
        for sig, slot in self._doc_slots:
            sig.disconnect(slot)
        for panel in self.panels.values():
            if isinstance(panel, PlanPanel):
                panel.shutdown()
        self.views.shutdown()

    def grab_with_vtk(self):
        from planner.views.vtk_setup import grab_with_vtk

        return grab_with_vtk(self)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = self.files.recent()
        if not items:
            act = self.recent_menu.addAction("(no recent plans)")
            act.setEnabled(False)
            return
        for p in items:
            act = self.recent_menu.addAction(Path(p).name, lambda p=p: self.files.open_plan(p))
            act.setToolTip(p)
