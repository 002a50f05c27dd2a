"""The core (everything outside planner/views/) must import without Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BLOCK = r"""
import importlib, importlib.abc, sys
BLOCKED = %r
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + '.') for b in BLOCKED):
            raise ImportError(f'{name} is not allowed here (blocked: {", ".join(BLOCKED)})')
        return None
sys.meta_path.insert(0, Block())
sys.path.insert(0, %r)
failed = []
for mod in %r:
    try:
        importlib.import_module(mod)
    except Exception as exc:
        failed.append(f'{mod}: {type(exc).__name__}: {exc}')
print('\\n'.join(failed))
sys.exit(1 if failed else 0)
"""

#: Every Qt binding and the VTK-Qt bridge.
QT_PACKAGES = ("PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "vtkmodules.qt")


def blocked_import_script(blocked: tuple[str, ...], modules: list[str]) -> str:
    """A Python program that imports ``modules`` with the packages ``blocked`` made unimportable; it
    prints each module that failed and exits 1 when any did."""
    return _BLOCK % (tuple(blocked), str(ROOT), list(modules))


def _core_modules() -> list[str]:
    import planner

    mods = ["planner"]
    for info in pkgutil.walk_packages(planner.__path__, "planner."):
        if info.name.startswith("planner.views"):
            continue
        mods.append(info.name)
    return mods


def test_core_imports_without_qt():
    mods = _core_modules()
    assert "planner.plan" in mods and "planner.imaging.volume" in mods
    proc = subprocess.run([sys.executable, "-c", blocked_import_script(QT_PACKAGES, mods)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_blocker_really_blocks_qt():
    proc = subprocess.run([sys.executable, "-c", blocked_import_script(QT_PACKAGES, ["PySide6.QtWidgets"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "not allowed" in proc.stdout
