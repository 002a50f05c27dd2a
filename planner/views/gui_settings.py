"""Where the GUI remembers display state between runs: an INI file in the data folder.

``QSettings`` with an explicit file under :func:`planner.logsafe.data_dir`, so tests (which point
``BVN_PLANNER_HOME`` at a temporary folder) never touch the user's settings.
Also the user's window/level presets per MRI sequence (viewer-conventions.md 1.6).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Optional

from PySide6.QtCore import QSettings

from planner.imaging.volume import Volume, WindowLevel
from planner.logsafe import data_dir
from planner.trajectory import is_ct

log = logging.getLogger(__name__)

#: Display windows for CT in Hounsfield units (centre, width): OHIF's soft-tissue and bone presets
#: (viewer-conventions.md 1.6, OHIF ``windowLevelPresets.js``). Display choices, not clinical numbers.
CT_WINDOWS: dict[str, WindowLevel] = {
    "CT bone": WindowLevel(480.0, 2500.0, "preset:CT bone"),
    "CT soft tissue": WindowLevel(40.0, 400.0, "preset:CT soft tissue"),
}
#: The window a CT without a window in its header opens with (spine planning reads bone).
CT_DEFAULT_WINDOW = "CT bone"


def settings_path() -> str:
    return str(data_dir() / "gui.ini")


def gui_settings() -> QSettings:
    d = data_dir()
    d.mkdir(parents=True, exist_ok=True)
    return QSettings(settings_path(), QSettings.Format.IniFormat)


def sequence_of(volume: Volume, role: str = "") -> str:
    """The sequence name presets are stored under: the plan role (T1, T2, STIR, ...) or a guess
    from the series description; "CT" for CT; "other" otherwise."""
    if role:
        return role
    info = volume.info
    if is_ct(volume):  # the modality tag, or (research files without one) the intensity range
        return "CT"
    desc = (info.series_description or "").upper()
    if "STIR" in desc:
        return "STIR"
    if re.search(r"T1", desc):
        return "T1"
    if re.search(r"T2", desc):
        return "T2"
    return "other"


class PresetStore:
    """User window/level presets per sequence, plus the built-in header and automatic entries."""

    KEY = "wl_presets"

    def __init__(self, settings: Optional[QSettings] = None) -> None:
        self.settings = settings or gui_settings()

    def user_presets(self, sequence: str) -> list[tuple[str, WindowLevel]]:
        raw = self.settings.value(f"{self.KEY}/{sequence}", "")
        try:
            items = json.loads(raw) if raw else []
        except (TypeError, ValueError):
            log.warning("ignoring unreadable window/level presets for %s", sequence)
            return []
        out = []
        for it in items if isinstance(items, list) else []:
            try:
                out.append((str(it["name"]), WindowLevel(float(it["center"]), float(it["width"]),
                                                         f"preset:{it['name']}")))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def save_preset(self, sequence: str, name: str, wl: WindowLevel) -> None:
        items = [(n, w) for n, w in self.user_presets(sequence) if n != name]
        items.append((name, wl))
        data = [{"name": n, "center": w.center, "width": w.width} for n, w in items]
        self.settings.setValue(f"{self.KEY}/{sequence}", json.dumps(data))
        self.settings.sync()

    def remove_preset(self, sequence: str, name: str) -> None:
        items = [(n, w) for n, w in self.user_presets(sequence) if n != name]
        data = [{"name": n, "center": w.center, "width": w.width} for n, w in items]
        self.settings.setValue(f"{self.KEY}/{sequence}", json.dumps(data))
        self.settings.sync()

    def presets_for(self, volume: Volume, sequence: str) -> list[tuple[str, WindowLevel]]:
        """Header windows, the CT presets (bone, soft tissue) for a CT, the automatic range, then the
        user's presets for this sequence."""
        out: list[tuple[str, WindowLevel]] = []
        for idx, w in enumerate(volume.info.header_windows):
            out.append((f"Header {idx + 1} (W {w.width:g} L {w.center:g})", WindowLevel(w.center, w.width, "header")))
        if is_ct(volume):
            out += [(f"{name} (W {w.width:g} L {w.center:g})", w) for name, w in CT_WINDOWS.items()]
        out.append(("Automatic (0.1-99.9 percentile)", volume.auto_window()))
        out.extend(self.user_presets(sequence))
        return out


def default_window(volume: Volume) -> WindowLevel:
    """The window a volume opens with: the header's first window, else the CT bone window for a CT
    (also one recognised by its intensity range), else the automatic percentile range."""
    if volume.info.header_windows:
        return volume.info.header_windows[0]
    if is_ct(volume):
        return CT_WINDOWS[CT_DEFAULT_WINDOW]
    return volume.auto_window()
