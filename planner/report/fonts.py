"""Unicode TrueType fonts for the PDF documents (names with accents, Spanish text, arrows).

DejaVu Sans is used: it covers Latin, Greek and Cyrillic and its licence allows embedding. It is
looked up in the usual system folders and, as a fallback, in the copy matplotlib ships (matplotlib
is in requirements.txt), so the documents build the same on Linux, macOS and Windows.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

#: Style -> file name of the DejaVu family.
DEJAVU_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf",
                "BI": "DejaVuSans-BoldOblique.ttf"}

_SYSTEM_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
    os.path.expanduser("~/Library/Fonts"),
    os.path.join(os.environ.get("WINDIR", "C:\\Windows"), "Fonts"),
)


class FontNotFoundError(RuntimeError):
    pass


def _candidate_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("BVN_FONT_DIR")
    if env:
        dirs.append(Path(env))
    dirs.extend(Path(d) for d in _SYSTEM_DIRS)
    import matplotlib  # a pinned requirement; imported here only for the path of its font files

    dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    return dirs


@lru_cache(maxsize=1)
def dejavu_paths() -> dict[str, Path]:
    """Style ("", "B", "I", "BI") -> path of the DejaVu Sans file; raises FontNotFoundError."""
    for folder in _candidate_dirs():
        paths = {style: folder / name for style, name in DEJAVU_FILES.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    raise FontNotFoundError("DejaVu Sans fonts not found; install fonts-dejavu-core or set BVN_FONT_DIR")


def dejavu_path(style: str = "") -> Path:
    return dejavu_paths()[style]
