#!/usr/bin/env python3
"""BVN Planner entry point: the desktop application and the command line.

    python main.py                      start the application
    python main.py PATH                 open a DICOM folder, DICOMDIR, zip, image file, .bvnplan plan or plan SR
    python main.py --pacs NODE --study UID   open the plan stored in the PACS (its images: cache, then PACS)
    python main.py --demo               open the built-in demo case
    python main.py --demo --screenshot shot.png   render the main window to a PNG and exit
    python main.py COMMAND ...          run a command (see --help)
"""

from __future__ import annotations

import argparse
import sys


class _GuiParser(argparse.ArgumentParser):
    """The list of commands is built only when help is shown (it imports every command module)."""

    def format_help(self) -> str:
        from planner.cli import command_help

        self.epilog = "commands (python main.py COMMAND --help for details):\n" + command_help()
        return super().format_help()


def _gui_parser() -> argparse.ArgumentParser:
    from planner import APP_NAME, __version__

    p = _GuiParser(
        prog="main.py", description=f"{APP_NAME} {__version__}: plan basivertebral nerve ablation.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", help="DICOM folder, DICOMDIR, zip, image file, .bvnplan plan or plan SR (.dcm) to open")
    p.add_argument("--demo", action="store_true", help="open the built-in demo case")
    p.add_argument("--review", action="store_true", help="open the plan read-only, for review")
    p.add_argument("--images", metavar="FOLDER", help="folder where the plan's images are found")
    p.add_argument("--pacs", metavar="NODE", help="open a plan stored in this PACS (a configured node's name); "
                   "with --study (and --plan-series to choose one of several plans)")
    p.add_argument("--study", metavar="UID", help="Study Instance UID of the plan to open from --pacs")
    p.add_argument("--plan-series", metavar="UID", help="Series Instance UID of the plan SR (default: the newest)")
    p.add_argument("--layout", choices=["planning", "fluoro", "compare", "trajectory"], help="layout to start with")
    p.add_argument("--screenshot", metavar="FILE.png", help="render the window to FILE.png and exit")
    p.add_argument("--size", default="1600x1000", help="window size for --screenshot (default 1600x1000)")
    p.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from planner.logsafe import setup_logging

    setup_logging()
    from planner.safefiles import remove_stale_temporaries

    remove_stale_temporaries()  # what saves or exports killed half-way left behind (cheap: one folder listing)
    from planner.cli import COMMANDS, run_command

    if argv and argv[0] in COMMANDS:
        return run_command(argv)
    args = _gui_parser().parse_args(argv)
    from planner.views.app import run_gui

    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
