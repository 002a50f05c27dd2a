"""The core (everything outside planner/views/) must import without Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BLOCK_QT = r"""
import importlib, importlib.abc, sys
class BlockQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'PySide2', 'shiboken6') or name == 'vtkmodules.qt' \
                or name.startswith('vtkmodules.qt.'):
            raise ImportError(f'Qt is not allowed in the headless core: {name}')
        return None
sys.meta_path.insert(0, BlockQt())
sys.path.insert(0, %r)
failed = []
for mod in %r:
    try:
        importlib.import_module(mod)
    except Exception as exc:
        failed.append(f'{mod}: {type(exc).__name__}: {exc}')
print('\n'.join(failed))
sys.exit(1 if failed else 0)
"""


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
    proc = subprocess.run([sys.executable, "-c", _BLOCK_QT % (str(ROOT), mods)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_blocker_really_blocks_qt():
    proc = subprocess.run([sys.executable, "-c", _BLOCK_QT % (str(ROOT), ["PySide6.QtWidgets"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "not allowed" in proc.stdout
