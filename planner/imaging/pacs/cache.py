"""The local retrieve cache: one private folder (0700) per retrieve under :func:`cache_root`, each with
one sub-folder per Series Instance UID. Patient data must not pile up: :func:`clean_cache` removes
retrieves older than the retention period and then the oldest ones until the cache is under its size
limit (both are settings; see :class:`CacheSettings`)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional

from planner.imaging.pacs.common import incomplete_folder, log, valid_uid
from planner.imaging.pacs.received import private_folder
from planner.logsafe import data_dir
from planner.safefiles import atomic_write_text


@dataclass
class CacheSettings:
    #: Days a retrieve is kept (0: until the size limit needs the room).
    retention_days: float = 14.0
    #: Largest size of the cache (GB); the oldest retrieves go first.
    max_gb: float = 20.0

    @classmethod
    def load(cls) -> "CacheSettings":
        try:
            data = json.loads(settings_path().read_text(encoding="utf-8"))
            return cls(retention_days=float(data.get("retention_days", cls.retention_days)),
                       max_gb=float(data.get("max_gb", cls.max_gb)))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError, AttributeError):
            log.warning("the retrieve cache settings are unreadable; using the defaults")
            return cls()

    def save(self) -> Path:
        atomic_write_text(settings_path(), json.dumps(asdict(self), indent=1))
        return settings_path()


def settings_path() -> Path:
    return data_dir() / "pacs-cache.json"


def cache_root() -> Path:
    """Where retrieved studies are kept (shown in the PACS window)."""
    return data_dir() / "pacs-cache"


def new_cache_folder(root: Optional[Path] = None) -> Path:
    base = private_folder(Path(root) if root is not None else cache_root())
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    n = 0
    while True:
        folder = base / (stamp if n == 0 else f"{stamp}-{n}")
        if not folder.exists() and not incomplete_folder(folder).exists():
            return folder
        n += 1


def cached_series(series_uids: Iterable[str], root: Optional[Path] = None) -> dict[str, Path]:
    """Series already in the cache (complete ones only): UID -> folder, newest retrieve first."""
    base = Path(root) if root is not None else cache_root()
    out: dict[str, Path] = {}
    if not base.is_dir():
        return out
    retrieves = sorted((p for p in base.iterdir() if p.is_dir() and not p.name.endswith(".incomplete")),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    for uid in series_uids:
        if not valid_uid(uid):
            continue
        for r in retrieves:
            folder = r / uid
            if folder.is_dir() and any(folder.glob("*.dcm")):
                out[uid] = folder
                break
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cache_size(root: Optional[Path] = None) -> int:
    base = Path(root) if root is not None else cache_root()
    return _size(base) if base.is_dir() else 0


def clean_cache(settings: Optional[CacheSettings] = None, root: Optional[Path] = None, *,
                keep: Iterable[Path] = (), now: Optional[float] = None) -> list[Path]:
    """Remove expired retrieves, then the oldest until the cache fits its limit; returns what was removed.
    ``keep`` (e.g. the folders open in the window) is never removed."""
    settings = settings or CacheSettings.load()
    base = Path(root) if root is not None else cache_root()
    if not base.is_dir():
        return []
    now = time.time() if now is None else now
    keep_set = {Path(k).resolve() for k in keep}
    entries = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    removed: list[Path] = []
    for p in entries:
        if p.resolve() in keep_set:
            continue
        if settings.retention_days > 0 and now - p.stat().st_mtime > settings.retention_days * 86400:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    limit = int(settings.max_gb * (1 << 30))
    rest = [p for p in entries if p not in removed]
    sizes = {p: _size(p) for p in rest}
    total = sum(sizes.values())
    for p in rest:
        if total <= limit:
            break
        if p.resolve() in keep_set:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
        total -= sizes[p]
    if removed:
        log.info("retrieve cache: %d old retrieve(s) removed", len(removed))
    return removed
