"""The built-in demo case: a synthetic lumbar study written as real DICOM files.

* :func:`write_demo_study` writes the study (sagittal T1/T2/STIR, axial T2, AP and lateral
  fluoroscopy), ``ground_truth.json`` and ``sample.bvnplan`` into a folder;
* :func:`ensure_demo_case` writes it once into the user's data folder and reuses it;
* :func:`load_ground_truth` reads the ground truth of a written study.

The phantom itself is in :mod:`planner.demo.phantom`; nothing here imports Qt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from planner.demo.phantom import GENERATOR_VERSION
from planner.demo.writer import GROUND_TRUTH, DemoManifest, write_demo_study

__all__ = ["GENERATOR_VERSION", "DemoManifest", "write_demo_study", "ensure_demo_case", "load_ground_truth",
           "demo_cache_dir"]

#: Written last into a complete demo folder; its presence marks the folder as usable.
_COMPLETE = ".complete"


def demo_cache_dir() -> Path:
    """Where :func:`ensure_demo_case` keeps the demo study (per generator and application version)."""
    from planner import __version__
    from planner.logsafe import data_dir

    return data_dir() / "demo-cache" / f"v{GENERATOR_VERSION}-{__version__}"


def ensure_demo_case() -> Path:
    """The folder of the demo study, written on first use and reused afterwards.

    Safe when two processes ask at once: each writes into its own temporary folder next to the cache
    and renames it into place; the loser of the race discards its copy and uses the winner's."""
    target = demo_cache_dir()
    if (target / _COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=str(target.parent)))
    try:
        write_demo_study(tmp)
        (tmp / _COMPLETE).write_text(GENERATOR_VERSION + "\n", encoding="utf-8")
        if target.exists() and not (target / _COMPLETE).is_file():
            # an incomplete folder left by a crashed run: move it aside, then take its place
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=str(target.parent)))
            try:
                os.replace(target, stale / "old")
            except OSError:
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _COMPLETE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_ground_truth(folder: os.PathLike | str) -> dict[str, Any]:
    """The parsed ``ground_truth.json`` of a demo study folder."""
    path = Path(folder) / GROUND_TRUTH
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
