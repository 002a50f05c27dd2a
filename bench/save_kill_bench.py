#!/usr/bin/env python3
"""Kills during save (issue 16 item 6): a child process saves a large plan (1,000 measurements,
about 4 MB) again and again and is killed with SIGKILL at a different moment each time (``--kills``,
default 150). After every kill the plan must load (the old or a complete new version). The temporary
files the killed saves left are counted before and after "the next start" (``main.py --version``,
which runs the start-up clean-up), in the same run.

    .venv/bin/python bench/save_kill_bench.py [--kills 150]

Exit code 1 when a plan failed to load or a temporary file survived the next start.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=150)
    args = ap.parse_args()
    from planner.plan import Plan
    from planner.safefiles import TEMP_SUFFIX
    from tests.fuzz.hostile import SAVE_LOOP
    from planner.storage import PlanFileError, load_plan, save_plan

    with tempfile.TemporaryDirectory(prefix="bvn-kill-") as tmp:
        home = Path(tmp) / "home"
        folder = Path(tmp) / "plans"
        folder.mkdir()
        env = dict(os.environ, BVN_PLANNER_HOME=str(home))
        os.environ["BVN_PLANNER_HOME"] = str(home)
        path = folder / "case.bvnplan"
        save_plan(Plan(author="initial"), path)
        script = SAVE_LOOP.format(root=str(ROOT), path=str(path))
        failures = 0
        t0 = time.monotonic()
        for k in range(args.kills):
            proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(0.05 + (k % 37) * 0.013)  # land at different points of the write
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            try:
                load_plan(path)
            except PlanFileError as exc:
                failures += 1
                print(f"  kill {k + 1}: the plan does not load: {exc}")
        left = [p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        size = sum(p.stat().st_size for p in left)
        t_kills = time.monotonic() - t0
        t1 = time.monotonic()
        res = subprocess.run([sys.executable, str(ROOT / "main.py"), "--version"], env=env, capture_output=True,
                             text=True, timeout=120)
        t_start = time.monotonic() - t1
        after = [p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        print(f"{args.kills} kills during save in {t_kills:.0f} s; the plan loaded after every kill: "
              f"{'yes' if not failures else f'NO ({failures} failures)'}")
        print(f"temporary copies left by the killed saves: {len(left)} ({size / 1e6:.1f} MB)")
        print(f"after the next start (main.py --version, {t_start:.1f} s, exit {res.returncode}): {len(after)} left")
        return 1 if failures or after else 0


if __name__ == "__main__":
    sys.exit(main())
