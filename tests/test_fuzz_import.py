"""The standing fuzz, CI sample (issue 16 item 8): 500 damaged files from ``tests/fuzz/generator.py``
(deterministic seed; truncations, flipped bytes, wrong lengths, zeroed blocks, shifts, noisy tails and
hostile header values, from real and synthetic images of every kind the importer reads) go through the
importer in a child process. None may raise, crash the process, run past the time limit + 1 s, take
1 GiB or more, or vanish from the report. ``bench/fuzz_bench.py`` runs the same with 10,000 files.
"""

from __future__ import annotations

import collections

import pytest

from tests.fuzz.generator import generate
from tests.fuzz.runner import run_inputs

N_FILES = 500
TIME_LIMIT_S = 10.0
GIB = 1024 ** 3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_500_damaged_files_no_exception_crash_hang_silent_drop_or_memory_blowup(shared_data, tmp_path):
    files = generate(tmp_path / "fuzz", N_FILES, shared=shared_data)
    assert len(files) == N_FILES
    results = run_inputs([str(p) for p in files], time_limit=TIME_LIMIT_S)
    assert len(results) == N_FILES
    status = collections.Counter(r.status for r in results)
    bad = [(r.path, r.status, r.error) for r in results if r.status != "ok"]
    assert not bad, (status, bad[:5])
    slow = [(r.path, r.seconds) for r in results if r.seconds > TIME_LIMIT_S + 1]
    assert not slow, slow[:5]
    heavy = [(r.path, r.rss_peak, r.worker_peak) for r in results if r.peak >= GIB]
    assert not heavy, heavy[:5]
    silent = [(r.path, r.silent) for r in results if r.silent]
    assert not silent, silent[:5]
    # the damage is real and varied: many files are refused, many still load
    loaded = sum(1 for r in results if r.loaded)
    skipped = sum(1 for r in results if r.skipped)
    assert loaded > 50 and skipped > 200, (loaded, skipped)
