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
    except Exception as exc:  # last resort: a message, never a traceback
        log.exception("command %s failed", name)
        print(f"bvn-planner {name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
