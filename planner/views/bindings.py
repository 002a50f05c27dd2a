"""Mouse and keyboard bindings, read from ``resources/bindings.json`` (viewer-conventions.md 1.1).

A site can switch scheme (Slicer- or MITK-style) by putting its own ``bindings.json`` in the data
folder (:func:`planner.logsafe.data_dir`); entries missing there fall back to the shipped file.
Views ask :class:`Bindings` which action a gesture means; the help dialog lists :meth:`describe`.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QKeyCombination, Qt
from PySide6.QtGui import QKeySequence

from planner.logsafe import data_dir

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
BINDINGS_FILE = RESOURCES / "bindings.json"

#: What each mouse/wheel/key action does, for the help dialog and tooltips.
ACTION_TEXT: dict[str, str] = {
    "tool": "active tool (window/level unless another tool is chosen)",
    "window_level": "window/level: drag right = wider window, drag down = higher level",
    "pan": "pan",
    "zoom": "zoom (drag up = zoom in)",
    "crosshair": "move the linked crosshair (every view of the same frame of reference follows)",
    "edit": "move the plan handle under the mouse (landmark, trajectory point, measurement), whatever the tool",
    "slice": "previous/next slice (fluoroscopy: frame)",
    "page": "move several slices at a time",
    "previous_slice": "previous slice / frame",
    "next_slice": "next slice / frame",
    "previous_page": "move back several slices",
    "next_page": "move forward several slices",
    "first_slice": "first slice / frame",
    "last_slice": "last slice / frame",
    "reset_view": "reset zoom, pan and window/level",
    "zoom_in": "zoom in",
    "zoom_out": "zoom out",
    "auto_window": "automatic window/level (percentile range)",
    "play_pause": "fluoroscopy cine: play / pause",
    "cancel": "cancel the measurement being drawn",
    "delete_measurement": "delete the selected measurement",
}

TOOL_TEXT: dict[str, str] = {
    "window_level": "Window/level: left-drag changes contrast (right = wider) and brightness (down = higher level)",
    "crosshair": "Crosshair / edit: click or drag to move the linked cursor in every view of the same frame of "
                 "reference; drag a plan handle (landmark, trajectory point, measurement) to move it",
    "distance": "Distance: click two points; the length is shown in mm and kept in the plan",
    "angle": "Angle: click three points (vertex second); the angle is shown in degrees and kept in the plan",
    "calibrate": "Calibrate fluoroscopy: draw a line over an object of known length and enter its size in mm",
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


_MOD_NAMES = (
    (Qt.KeyboardModifier.ControlModifier, "Ctrl"),
    (Qt.KeyboardModifier.ShiftModifier, "Shift"),
    (Qt.KeyboardModifier.AltModifier, "Alt"),
    (Qt.KeyboardModifier.MetaModifier, "Meta"),
)
_BUTTON_NAMES = {
    Qt.MouseButton.LeftButton: "Left",
    Qt.MouseButton.MiddleButton: "Middle",
    Qt.MouseButton.RightButton: "Right",
}


def modifier_prefix(modifiers: Qt.KeyboardModifier) -> str:
    return "".join(f"{name}+" for flag, name in _MOD_NAMES if modifiers & flag)


def _norm_key(spec: str) -> str:
    return QKeySequence(spec).toString(QKeySequence.SequenceFormat.PortableText)


class Bindings:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.mouse: dict[str, str] = dict(data.get("mouse", {}))
        self.wheel: dict[str, str] = dict(data.get("wheel", {}))
        self.page_step = max(1, int(data.get("page_step", 5)))
        self.tools: dict[str, str] = dict(data.get("tools", {}))
        self.actions: dict[str, str] = dict(data.get("actions", {}))
        self._view_keys: dict[str, str] = {}
        for action, keys in data.get("view_keys", {}).items():
            for k in [keys] if isinstance(keys, str) else keys:
                self._view_keys[_norm_key(k)] = action

    @classmethod
    def load(cls, path: Optional[Path] = None) -> "Bindings":
        base = json.loads((path or BINDINGS_FILE).read_text(encoding="utf-8"))
        site = data_dir() / "bindings.json"
        if path is None and site.is_file():
            try:
                base = _merge(base, json.loads(site.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                log.warning("ignoring the site bindings file %s: %s", site, exc)
        return cls(base)

    # ------------------------------------------------------------------ lookups
    def mouse_action(self, button: Qt.MouseButton, modifiers: Qt.KeyboardModifier) -> Optional[str]:
        name = _BUTTON_NAMES.get(button)
        if name is None:
            return None
        prefix = modifier_prefix(modifiers)
        return self.mouse.get(prefix + name) or (self.mouse.get(name) if prefix == "" else None)

    def hover_action(self, modifiers: Qt.KeyboardModifier) -> Optional[str]:
        prefix = modifier_prefix(modifiers)
        return self.mouse.get(prefix + "Move") if prefix else None

    def wheel_action(self, modifiers: Qt.KeyboardModifier) -> Optional[str]:
        return self.wheel.get(modifier_prefix(modifiers) + "Wheel")

    def key_action(self, key: int, modifiers: Qt.KeyboardModifier) -> Optional[str]:
        mods = modifiers & ~Qt.KeyboardModifier.KeypadModifier
        try:
            qkey = Qt.Key(key)
        except ValueError:
            return None
        fmt = QKeySequence.SequenceFormat.PortableText
        action = self._view_keys.get(QKeySequence(QKeyCombination(mods, qkey)).toString(fmt))
        if action is None and mods == Qt.KeyboardModifier.ShiftModifier:
            # symbols such as "+" need Shift on many keyboards
            action = self._view_keys.get(QKeySequence(QKeyCombination(qkey)).toString(fmt))
        return action

    def action_shortcut(self, name: str) -> str:
        return self.actions.get(name, "")

    def tool_shortcut(self, tool: str) -> str:
        return self.tools.get(tool, "")

    # ------------------------------------------------------------------ help
    def describe(self) -> list[tuple[str, str, str]]:
        """(category, gesture, what it does) for every mouse, wheel and view-key binding."""
        rows: list[tuple[str, str, str]] = []
        for gesture, action in self.mouse.items():
            g = gesture.replace("Left", "left-drag").replace("Middle", "middle-drag").replace("Right", "right-drag")
            g = g.replace("Move", "move the mouse")
            rows.append(("Mouse", g, ACTION_TEXT.get(action, action)))
        for gesture, action in self.wheel.items():
            rows.append(("Mouse", gesture.replace("Wheel", "wheel"), ACTION_TEXT.get(action, action)))
        rows.append(("Mouse", "double-click", "maximise the view (double-click again to restore)"))
        by_action: dict[str, list[str]] = {}
        for key, action in self._view_keys.items():
            by_action.setdefault(action, []).append(key)
        for action, keys in by_action.items():
            rows.append(("Views", " / ".join(keys), ACTION_TEXT.get(action, action)))
        for tool, key in self.tools.items():
            rows.append(("Tools", key, TOOL_TEXT.get(tool, tool)))
        return rows


@lru_cache(maxsize=1)
def default_bindings() -> Bindings:
    return Bindings.load()
