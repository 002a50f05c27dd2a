"""Command-line interface. Each sub-command lives in its own module of this package with

* ``HELP``: a one-line description,
* ``add_arguments(parser)``: its argparse arguments,
* ``run(args) -> int``: the exit code (0 success; 1 a check failed; 2 bad input, with a message).

Commands never print tracebacks for bad input; they name the file and the problem on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

#: name -> module implementing it
COMMANDS: dict[str, str] = {
    "demo-data": "planner.cli.demo_data",
    "inspect": "planner.cli.inspect",
    "levels": "planner.cli.levels",
    "check": "planner.cli.check",
    "report": "planner.cli.report",
    "sheet": "planner.cli.sheet",
    "export-dicom": "planner.cli.export_dicom",
}

log = logging.getLogger(__name__)


def command_help() -> str:
    lines = []
    for name, mod in COMMANDS.items():
        try:
            text = importlib.import_module(mod).HELP
        except ImportError:
            text = "(not available in this build)"
        lines.append(f"  {name:<14}{text}")
    return "\n".join(lines)


def run_command(argv: Sequence[str]) -> int:
    name, rest = argv[0], list(argv[1:])
    try:
        module = importlib.import_module(COMMANDS[name])
    except ImportError as exc:
        print(f"bvn-planner: the '{name}' command is not available in this build ({exc})", file=sys.stderr)
        return 2
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
