"""Reading and writing .bvnplan files: versioned JSON, atomic saves, clear errors, migrations.

A .bvnplan file is UTF-8 JSON holding the whole :class:`planner.plan.Plan`, with ``format``,
``schema_version``, ``units`` ("mm") and ``coordinate_frame`` ("LPS") at the top level.

* Saving writes a temporary file in the same folder, flushes and fsyncs it, then renames it over
  the target (atomic on POSIX and Windows), so a crash during a save never damages the previous
  file.
* Loading refuses damaged files and files from a newer schema with a :class:`PlanFileError` whose
  message names the file and the problem; nothing is changed in the application.
* Older schema versions are upgraded step by step by the functions in :data:`MIGRATIONS`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from planner.plan import FILE_FORMAT, SCHEMA_VERSION, Plan

PLAN_SUFFIX = ".bvnplan"
#: Refuse absurdly large files instead of reading them into memory (a plan is a few kB to MB).
MAX_PLAN_BYTES = 256 * 1024 * 1024


class PlanFileError(Exception):
    """A plan file cannot be read; ``str(exc)`` is a message for the user."""

    def __init__(self, path: os.PathLike | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"Cannot open plan file {Path(path).name}: {problem}")


#: Migrations from schema version N to N + 1, each a function on the raw JSON dict.
#: Add one (and a test in tests/test_storage.py) whenever SCHEMA_VERSION is bumped.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False)


def save_plan(plan: Plan, path: os.PathLike | str) -> Path:
    """Write ``plan`` to ``path`` atomically; returns the final path."""
    target = Path(path)
    text = plan_to_json(plan)
    atomic_write_text(target, text)
    return target


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file, fsync and rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_plan(path: os.PathLike | str) -> Plan:
    """Read a plan file; raises :class:`PlanFileError` with a clear message on any problem."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise PlanFileError(p, "the file does not exist") from None
    except OSError as exc:
        raise PlanFileError(p, f"the file cannot be read ({exc.strerror})") from None
    if size > MAX_PLAN_BYTES:
        raise PlanFileError(p, f"the file is {size / 1e6:.0f} MB, far larger than any plan; it is not a plan file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PlanFileError(p, f"the file cannot be read ({exc.strerror})") from None
    return plan_from_bytes(raw, p)


def plan_from_bytes(raw: bytes, path: os.PathLike | str = "plan") -> Plan:
    if not raw.strip():
        raise PlanFileError(path, "the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(path, f"the file is not UTF-8 text (bad byte at position {exc.start}); "
                                  "it is damaged or not a plan file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(path, f"the file is damaged: invalid JSON at line {exc.lineno}, column {exc.colno} "
                                  f"({exc.msg})") from None
    except RecursionError:
        raise PlanFileError(path, "the file is damaged: JSON nested too deeply") from None
    return plan_from_dict(data, path)


def plan_from_dict(data: Any, path: os.PathLike | str = "plan") -> Plan:
    if not isinstance(data, dict):
        raise PlanFileError(path, "the file does not contain a plan (expected a JSON object)")
    if data.get("format") != FILE_FORMAT:
        raise PlanFileError(path, f"the file is not a BVN Planner plan (format is {data.get('format')!r}, "
                                  f"expected {FILE_FORMAT!r})")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PlanFileError(path, f"the plan has no valid schema_version (found {version!r})")
    if version > SCHEMA_VERSION:
        raise PlanFileError(path, f"the plan was saved by a newer BVN Planner (schema version {version}); this "
                                  f"version reads schema versions up to {SCHEMA_VERSION}. Please update the "
                                  "application to open it")
    if data.get("units", "mm") != "mm" or data.get("coordinate_frame", "LPS") != "LPS":
        raise PlanFileError(path, f"the plan uses units {data.get('units')!r} and frame "
                                  f"{data.get('coordinate_frame')!r}; only millimetres in LPS are supported")
    data = migrate(dict(data), path)
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:6]:
            loc = ".".join(str(x) for x in err.get("loc", ()))
            problems.append(f"{loc}: {err.get('msg')}")
        more = exc.error_count() - len(problems)
        suffix = f" (and {more} more problems)" if more > 0 else ""
        raise PlanFileError(path, "the plan content is invalid: " + "; ".join(problems) + suffix) from None


def migrate(data: dict[str, Any], path: os.PathLike | str = "plan") -> dict[str, Any]:
    """Upgrade a raw plan dict from its schema version to :data:`SCHEMA_VERSION`."""
    version = int(data["schema_version"])
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise PlanFileError(path, f"no migration from schema version {version}")
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data
