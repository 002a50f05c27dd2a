"""``python main.py pacs-queue [--send] [--all]``: the exports waiting in the PACS send queue.

Lists each waiting job (PACS, files, attempts, next try, last error). ``--send`` sends the jobs that are
due (``--all``: every job, due or not), for example from a scheduled task when the PACS was down.

Exit codes: 0 nothing waits any more (or only listed); 1 some jobs still wait after ``--send``.
"""

from __future__ import annotations

import argparse
import time

HELP = "list, or send (--send), the exports waiting in the PACS send queue"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--send", action="store_true", help="send the jobs that are due")
    parser.add_argument("--all", action="store_true", help="with --send: every job, due or not")


def run(args: argparse.Namespace) -> int:
    from planner.imaging.pacs import load_nodes, send_queue

    if args.send:
        for line in send_queue.process(load_nodes(), now=float("inf") if args.all else None):
            print(line)
    jobs = send_queue.load_jobs()
    if not jobs:
        print("The PACS send queue is empty.")
        return 0
    now = time.time()
    for job in jobs:
        wait = max(0.0, job.next_try - now)
        print(f"{job.node_name}: {len(job.files)} file(s), {job.attempts} attempt(s), next try in {wait / 60:.0f} min"
              + (f"; last error: {job.last_error}" if job.last_error else ""))
    return 1 if args.send else 0
