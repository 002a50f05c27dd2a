"""Display state shared by every view of one main window (not plan data).

The active tool, the annotation detail level, the de-identified display, the slice alignment mode,
the bindings, and callbacks the views use to ask the user something (replaced in tests).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

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
    #: Emitted with the prompt of a point request ("" when none is pending any more).
    point_request_changed = Signal(str)

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
        #: Window/level presets store (planner.views.gui_settings.PresetStore), set by the main window.
        self.presets = None
        #: A pending point request: (prompt, deliver(point_lps), on_cancel) or None.
        self.point_request: Optional[tuple[str, Callable[[Any], Any], Optional[Callable[[], Any]]]] = None

    # ------------------------------------------------------------------ marking a point
    def request_point(self, prompt: str, deliver: Callable[[Any], Any],
                      on_cancel: Optional[Callable[[], Any]] = None) -> None:
        """A marking mode (e.g. "Mark S1"): the next left click in a slice view, whatever the tool,
        delivers its LPS point to ``deliver`` instead of doing what the tool does; Esc cancels."""
        self.point_request = (prompt, deliver, on_cancel)
        self.point_request_changed.emit(prompt)

    def cancel_point_request(self) -> None:
        req = self.point_request
        if req is None:
            return
        self.point_request = None
        self.point_request_changed.emit("")
        if req[2] is not None:
            req[2]()

    def deliver_point(self, point_lps: Any) -> bool:
        """Give a clicked point to the pending request; False when none is pending."""
        req = self.point_request
        if req is None:
            return False
        self.point_request = None
        self.point_request_changed.emit("")
        req[1](point_lps)
        return True

    # ------------------------------------------------------------------ handles
    def grabs_handles(self, modifiers: Any = None) -> bool:
        """Whether a left-drag on a plan handle moves it: with the crosshair/edit tool, or with the
        edit modifier (bindings: ``"Alt+Left": "edit"``) whatever the tool. Window/level and the
        measurement tools never move a landmark by accident."""
        if self.tool == "crosshair":
            return True
        from PySide6.QtCore import Qt

        return modifiers is not None and self.bindings.mouse_action(Qt.MouseButton.LeftButton, modifiers) == "edit"

    def edit_gesture(self) -> str:
        """How to move a handle with any tool, for the status bar: e.g. "Alt+drag"."""
        for gesture, action in self.bindings.mouse.items():
            if action == "edit":
                return gesture.replace("Left", "drag")
        return "the crosshair/edit tool"

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
