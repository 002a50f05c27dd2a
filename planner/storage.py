"""Reading and writing .bvnplan files: versioned JSON, atomic saves, clear errors, migrations.

A .bvnplan file is UTF-8 JSON holding the whole :class:`planner.plan.Plan`, with ``format``,
``schema_version``, ``units`` ("mm") and ``coordinate_frame`` ("LPS") at the top level.

* Saving writes a temporary file in the same folder, flushes and fsyncs it, then renames it over
  the target (atomic on POSIX and Windows), so a crash during a save never damages the previous
  file. The temporary name is unpredictable and created exclusively (never through a planted
  symlink), and one left by a killed save is removed at the next start (:mod:`planner.safefiles`).
* Loading reads only regular files (never a FIFO, a device or ``/proc``) of at most
  :data:`MAX_PLAN_BYTES`; numbers must be finite and strings and lists stay within the limits of
  :mod:`planner.plan` (``PLAN_LIMITS``), so what opens can always be saved.
* Loading refuses damaged files and files from a newer schema with a :class:`PlanFileError` whose
  message names the file and the problem; nothing is changed in the application.
* Older schema versions are upgraded step by step by the functions in :data:`MIGRATIONS`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from planner.plan import FILE_FORMAT, SCHEMA_VERSION, Plan
from planner.safefiles import FileTooLarge, NotAFile, read_regular
from planner.safefiles import atomic_write_text as _atomic_write_text

PLAN_SUFFIX = ".bvnplan"
#: Refuse absurdly large files instead of reading them into memory (a plan is a few kB; a long audit
#: trail at its limit stays under 20 MB).
MAX_PLAN_BYTES = 32 * 1024 * 1024


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


def atomic_write_text(target: os.PathLike | str, text: str) -> None:
    """Write ``text`` to ``target`` through an exclusive temporary file, fsync and rename
    (:func:`planner.safefiles.atomic_write_text`)."""
    _atomic_write_text(target, text)


def load_plan(path: os.PathLike | str) -> Plan:
    """Read a plan file; raises :class:`PlanFileError` with a clear message on any problem."""
    p = Path(path)
    try:
        raw = read_regular(p, MAX_PLAN_BYTES)
    except FileNotFoundError:
        raise PlanFileError(p, "the file does not exist") from None
    except FileTooLarge as exc:
        raise PlanFileError(p, f"{exc.strerror}; no plan is that large, so it is not a plan file") from None
    except NotAFile as exc:
        raise PlanFileError(p, f"it is {exc.strerror}") from None
    except OSError as exc:
        raise PlanFileError(p, f"the file cannot be read ({exc.strerror or exc})") from None
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
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (Python's conversion limit)
        raise PlanFileError(path, f"the file is damaged: {_first_sentence(exc)}") from None
    return plan_from_dict(data, path)


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().split(";")[0].split("\n")[0]
    return text[:200] or type(exc).__name__


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
        problems = validation_problems(exc)
        shown = problems[:6]
        more = len(problems) - len(shown)
        suffix = f" (and {more} more problems)" if more > 0 else ""
        raise PlanFileError(path, "the plan content is invalid: " + "; ".join(shown) + suffix) from None


#: Names pydantic appends to an error location for the branches of a union ("answers.odi.float").
_BRANCH_TAGS = {"bool", "float", "int", "str", "constrained-str", "none", "nullable", "list", "dict", "tuple"}


def validation_problems(exc: ValidationError) -> list[str]:
    """"field.path: problem" for each invalid field; the branches of a union (a value that may be a
    yes/no, a number or a text) are reported once, with the most telling problem."""
    by_loc: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err.get("loc", ()))
        if loc and isinstance(loc[-1], str) and (loc[-1] in _BRANCH_TAGS or loc[-1].startswith("function-")):
            loc = loc[:-1]
        key = ".".join(str(x) for x in loc) or "plan"
        by_loc.setdefault(key, []).append(str(err.get("msg")))
    out = []
    for key, msgs in by_loc.items():
        finite = [m for m in msgs if "finite" in m]
        out.append(f"{key}: {(finite or msgs)[0]}")
    return out


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
