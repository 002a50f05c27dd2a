"""The list of recently opened plans, kept in the user's data folder (JSON, newest first)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from planner.logsafe import data_dir
from planner.storage import atomic_write_text

log = logging.getLogger(__name__)
MAX_RECENT = 10


def _path() -> Path:
    return data_dir() / "recent-plans.json"


def recent_plans() -> list[str]:
    """Recent plan paths that still exist, newest first."""
    try:
        items = json.loads(_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("the recent-plans list is unreadable; starting a new one")
        return []
    if not isinstance(items, list):
        return []
    return [p for p in items if isinstance(p, str) and Path(p).is_file()][:MAX_RECENT]


def add_recent_plan(path: str) -> list[str]:
    p = str(Path(path).resolve())
    items = [p] + [x for x in recent_plans() if x != p]
    items = items[:MAX_RECENT]
    try:
        atomic_write_text(_path(), json.dumps(items, indent=1))
    except OSError as exc:
        log.warning("could not update the recent-plans list: %s", exc.strerror)
    return items
