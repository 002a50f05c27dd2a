"""Command-line interface. Each sub-command lives in its own module of this package with

* ``HELP``: a one-line description,
* ``add_arguments(parser)``: its argparse arguments,
* ``run(args) -> int``: the exit code (0 success; 1 a check failed; 2 bad input, with a message).

Commands never print tracebacks for bad input; they name the file and the problem on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType
from typing import Sequence

from planner.cli import check, demo_data, export_dicom, inspect, levels, report, sheet

#: name -> module implementing it (each module imports its heavy dependencies inside ``run``)
COMMANDS: dict[str, ModuleType] = {
    "demo-data": demo_data,
    "inspect": inspect,
    "levels": levels,
    "check": check,
    "report": report,
    "sheet": sheet,
    "export-dicom": export_dicom,
}

log = logging.getLogger(__name__)


def command_help() -> str:
    lines = []
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<14}{module.HELP}")
    return "\n".join(lines)


def run_command(argv: Sequence[str]) -> int:
    name, rest = argv[0], list(argv[1:])
    module = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"main.py {name}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print("bvn-planner: cancelled", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one sentence for the user, the traceback in the log file only
        log.exception("command %s failed", name)
        print(unexpected_error_message(f"bvn-planner {name}", _input_of(args), exc), file=sys.stderr)
        return 2


def _input_of(args: argparse.Namespace) -> str:
    """The file or folder a command was working on, for its error message."""
    for attr in ("plan", "path", "paths"):
        value = getattr(args, attr, None)
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        if value:
            return str(value)
    return ""


def unexpected_error_message(prefix: str, subject: str, exc: BaseException) -> str:
    """One line naming the file and the problem, and where the details are (never a traceback)."""
    from planner.logsafe import log_file_path

    if isinstance(exc, MemoryError):
        problem = "not enough memory"
    elif isinstance(exc, RecursionError):
        problem = "the data is nested too deeply"
    else:
        text = " ".join(str(exc).split())
        problem = f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}" if text \
            else type(exc).__name__
    where = f"{subject}: " if subject else ""
    return f"{prefix}: {where}unexpected error ({problem}); the details are in {log_file_path()}"


def json_text(data: object, command: str, indent: int = 1) -> str:
    """``data`` as JSON that is always valid: a NaN or an infinity (which JSON cannot hold) becomes
    ``null``, with a warning on stderr naming where. Numpy numbers are written as plain numbers."""
    import json
    import math

    replaced: list[str] = []

    def clean(x: object, where: str) -> object:
        if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
            return x
        if isinstance(x, float) or type(x).__module__ == "numpy":
            try:
                v = x.item() if hasattr(x, "item") else x  # type: ignore[union-attr]
            except (ValueError, TypeError):
                v = x
            if isinstance(v, float) and not math.isfinite(v):
                replaced.append(where or "value")
                return None
            if isinstance(v, (bool, int, float, str)) or v is None:
                return v
            if isinstance(v, (list, tuple)):
                return [clean(y, f"{where}.{i}") for i, y in enumerate(v)]
            return str(v)
        if isinstance(x, dict):
            return {str(k): clean(v, f"{where}.{k}" if where else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(y, f"{where}.{i}" if where else str(i)) for i, y in enumerate(x)]
        if hasattr(x, "tolist"):
            return clean(x.tolist(), where)  # type: ignore[union-attr]
        return str(x)

    text = json.dumps(clean(data, ""), indent=indent, allow_nan=False)
    if replaced:
        shown = ", ".join(replaced[:5]) + (f" and {len(replaced) - 5} more" if len(replaced) > 5 else "")
        print(f"bvn-planner {command}: warning: {len(replaced)} value(s) that are not finite numbers were written "
              f"as null ({shown})", file=sys.stderr)
    return text
