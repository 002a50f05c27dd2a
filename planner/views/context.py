"""Display state shared by every view of one main window (not plan data).

The active tool, the annotation detail level, the de-identified display, the slice alignment mode,
the bindings, and callbacks the views use to ask the user something (replaced in tests).
"""

from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtCore import QObject, Signal

from planner.session import Session
from planner.views.bindings import Bindings, default_bindings

TOOLS = ("window_level", "crosshair", "distance", "angle", "calibrate")


class ViewContext(QObject):
    tool_changed = Signal(str)
    #: Emitted when annotation detail, de-identification or slice mode change (views repaint).
    display_changed = Signal()
    #: Emitted with a status-bar message.
    message = Signal(str)
    #: Emitted with (text) for the permanent "under the cursor" field of the status bar.
    cursor_info = Signal(str)

    def __init__(self, session: Session, bindings: Optional[Bindings] = None, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.session = session
        self.bindings = bindings or default_bindings()
        self.tool = "window_level"
        self.annotation_detail = True
        self.deidentified = False
        self.slice_mode = "acquisition"
        #: Asks for a known length in mm (calibration); returns None when cancelled. Tests replace it.
        self.ask_length_mm: Callable[[str], Optional[float]] = _ask_length_dialog
        #: Window/level presets store (planner.views.wl_presets.PresetStore), set by the main window.
        self.presets = None

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        if tool != self.tool:
            self.tool = tool
            self.tool_changed.emit(tool)

    def set_annotation_detail(self, on: bool) -> None:
        if on != self.annotation_detail:
            self.annotation_detail = on
            self.display_changed.emit()

    def set_deidentified(self, on: bool) -> None:
        if on != self.deidentified:
            self.deidentified = on
            self.display_changed.emit()

    def set_slice_mode(self, mode: str) -> None:
        if mode not in ("acquisition", "patient"):
            raise ValueError(f"unknown slice mode {mode!r}")
        if mode != self.slice_mode:
            self.slice_mode = mode
            self.display_changed.emit()


def _ask_length_dialog(prompt: str) -> Optional[float]:
    from PySide6.QtWidgets import QApplication, QInputDialog

    value, ok = QInputDialog.getDouble(QApplication.activeWindow(), "Calibrate fluoroscopy", prompt,
                                       10.0, 0.1, 500.0, 1)
    return float(value) if ok and value > 0 else None
