#!/usr/bin/env python3
"""Standing fuzz of the import (issue 16 item 8): generates N damaged files (``tests/fuzz/generator.py``,
deterministic seed) plus the hostile inputs of the issue (decompression bombs, a zip bomb, a FIFO,
/dev/zero, /proc/self), imports each with :func:`planner.imaging.load_path` in child processes
(``tests/fuzz/runner.py``; ``--jobs`` of them, batches of ``--batch`` files each) and prints:

* uncaught exceptions (``load_path`` raised, or a report entry with an empty or traceback reason);
* crashes (a child process died) and hangs (no answer within time limit + header limit + 30 s);
* files over the time limit + 1 s, files whose import peaked at 1 GiB or more (the importing process
  plus its largest decoder worker), silent drops (a file without a report entry);
* time and peak-memory distributions and the most common skip reasons.

The reference for "fast enough" is the time limit itself (per file); the run takes a few minutes for
10,000 files on one core. Run it with ``nice`` on a shared machine::

    nice -n 10 .venv/bin/python bench/fuzz_bench.py            # 10,000 files
    .venv/bin/python bench/fuzz_bench.py -n 500 --jobs 2       # the CI sample, faster

Exit code 1 when any of the counts above is not zero.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1024 ** 3


def _hostile(folder: Path) -> list[Path]:
    from planner.imaging.synthetic import write_series
    from tests.fuzz import hostile as H

    specials = folder / "specials"
    specials.mkdir()
    write_series(specials, n=3, rows=16, cols=16)
    H.make_fifo(specials / "pipe")
    (specials / "zero.dcm").symlink_to("/dev/zero")
    return [H.write_j2k_bomb(folder / "j2k_bomb.dcm"), H.write_j2k_bomb(folder / "j2k_bomb_hdr.dcm", header_claims=True),
            H.write_frames_header_bomb(folder / "frames_bomb.dcm"), H.write_zip_bomb(folder / "zip_bomb.zip"),
            H.make_fifo(folder / "pipe.dcm"), Path("/dev/zero"), Path("/proc/self"), specials]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="damaged files to generate (default 10,000)")
    ap.add_argument("--seed", type=int, default=20241124)
    ap.add_argument("--time-limit", type=float, default=10.0, help="per-file decoding limit in seconds")
    ap.add_argument("--jobs", type=int, default=1, help="child processes at once (default 1)")
    ap.add_argument("--batch", type=int, default=500, help="files per child process")
    ap.add_argument("--keep", metavar="DIR", help="write the files into DIR and keep them")
    args = ap.parse_args()

    from tests.fuzz.generator import generate
    from tests.fuzz.runner import Result, run_inputs

    shared = ROOT.parent / "shared" / "data"
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bvn-fuzz-"))
    t0 = time.monotonic()
    files = generate(work / "damaged", args.n, seed=args.seed, shared=shared if shared.is_dir() else None)
    hostile_dir = work / "hostile"
    if hostile_dir.exists():
        shutil.rmtree(hostile_dir)
    hostile_dir.mkdir(parents=True)
    inputs = [str(p) for p in files] + [str(p) for p in _hostile(hostile_dir)]
    t_gen = time.monotonic() - t0
    print(f"generated {len(files)} damaged files + {len(inputs) - len(files)} hostile inputs in {t_gen:.1f} s "
          f"({'real and synthetic' if shared.is_dir() else 'synthetic only: ../shared/data not found'} sources)")

    results: list[Result] = []
    lock = threading.Lock()
    batches = [inputs[i:i + args.batch] for i in range(0, len(inputs), args.batch)]
    progress = {"done": 0}

    def worker() -> None:
        while True:
            with lock:
                if not batches:
                    return
                batch = batches.pop(0)
            out = run_inputs(batch, time_limit=args.time_limit)
            with lock:
                results.extend(out)
                progress["done"] += len(out)
                print(f"  {progress['done']} / {len(inputs)} inputs ({time.monotonic() - t1:.0f} s)", flush=True)

    t1 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t1

    status = collections.Counter(r.status for r in results)
    over_time = [r for r in results if r.status == "ok" and r.seconds > args.time_limit + 1]
    over_mem = [r for r in results if r.peak >= GIB]
    silent = [r for r in results if r.silent]
    secs = sorted(r.seconds for r in results)
    peaks = sorted(r.peak for r in results)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    print(f"\nimported {len(results)} inputs in {elapsed:.0f} s with {args.jobs} child process(es) "
          f"(generation {t_gen:.0f} s; total {time.monotonic() - t0:.0f} s)")
    print(f"  loaded something: {sum(1 for r in results if r.loaded)}; skipped something: "
          f"{sum(1 for r in results if r.skipped)}")
    print(f"  time per input: median {pct(secs, 0.5) * 1000:.0f} ms, 99th percentile {pct(secs, 0.99):.2f} s, "
          f"max {secs[-1] if secs else 0:.2f} s (limit {args.time_limit:.0f} s + 1 s)")
    print(f"  peak memory (importer + largest decoder worker): median {pct(peaks, 0.5) / 2 ** 20:.0f} MiB, "
          f"max {peaks[-1] / 2 ** 20 if peaks else 0:.0f} MiB (limit 1024 MiB)")
    print(f"  uncaught exceptions:   {status.get('exception', 0)}")
    print(f"  crashes (child died):  {status.get('crash', 0)}")
    print(f"  hangs (no answer):     {status.get('hang', 0)}")
    print(f"  over time limit + 1 s: {len(over_time)}")
    print(f"  at or over 1 GiB:      {len(over_mem)}")
    print(f"  silent drops:          {len(silent)}")
    for r in [r for r in results if r.status != "ok"][:10] + over_time[:5] + over_mem[:5] + silent[:5]:
        print(f"    {r.path}: {r.status} {r.seconds:.1f} s {r.peak / 2 ** 20:.0f} MiB {r.error[:200]} {r.silent[:3]}")
    reasons = collections.Counter(x for r in results for x in r.reasons)
    print("  most common skip reasons:")
    for reason, n in reasons.most_common(15):
        print(f"    {n:6d}  {reason}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    bad = status.get("exception", 0) + status.get("crash", 0) + status.get("hang", 0) + len(over_time) + \
        len(over_mem) + len(silent)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
