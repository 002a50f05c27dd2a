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

from planner.cli import check, demo_data, export_dicom, inspect, levels, pacs_queue, plan, report, sheet

#: name -> module implementing it (each module imports its heavy dependencies inside ``run``)
COMMANDS: dict[str, ModuleType] = {
    "demo-data": demo_data,
    "inspect": inspect,
    "levels": levels,
    "plan": plan,
    "check": check,
    "report": report,
    "sheet": sheet,
    "export-dicom": export_dicom,
    "pacs-queue": pacs_queue,
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
        log.error("command %s failed", name, exc_info=True, extra={"console": False})
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

