"""How long the checked suggestions take on the real MRIs, and how many image models they build.

On each scan of ``../shared/data/lumbar_mri_vb`` the levels are found from marks at the L1 and L5
centroids, then each of ``--levels`` (default L4, L5) gets a suggestion from the left and one from the
right (:func:`planner.suggest.suggest_checked`, alternatives included: what the panel's Suggest buttons
and ``main.py plan`` do). Per scan the script prints the wall time, the number of image models built
(:func:`planner.safety.build.spine_model` cache misses) and the time spent building them.

The reference, measured in the same run on the same scans, is the suggestion whose search models only the
level's region (:func:`planner.safety.model.level_box`, as before ``approach_box``): the checks of each
path it finds then build their own model back to where the path begins. Both must suggest the same
trajectories; the script says so or lists the differences.

Run: ``.venv/bin/python bench/suggest_bench.py [--cases VB2_04,VB3_11] [--levels L4,L5]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner import suggest as suggest_module  # noqa: E402
from planner.cli.levels import choose_volume, load_volumes  # noqa: E402
from planner.levels import LevelDetectionError, propose_levels_detailed  # noqa: E402
from planner.plan import Plan  # noqa: E402
from planner.safety import build  # noqa: E402
from planner.safety.model import level_box  # noqa: E402
from tests.anatomy_reference import mri_case, mri_cases  # noqa: E402


class _Counter:
    """Counts and times the image models built (the cache misses of spine_model)."""

    def __init__(self) -> None:
        self.n, self.seconds = 0, 0.0
        self._real = build._build

    def __call__(self, *args):
        t0 = time.perf_counter()
        try:
            return self._real(*args)
        finally:
            self.n += 1
            self.seconds += time.perf_counter() - t0


def _run(case: str, folder: Path, levels: list[str], counter: _Counter) -> tuple[float, list]:
    ref = mri_case(folder, case)
    marks = {n: tuple(float(v) for v in ref["bodies"][n].centroid) for n in ("L1", "L5")}
    volumes = load_volumes(folder / f"{case}_mr.nii.gz")
    _, volume = choose_volume(volumes, None)
    try:
        found = propose_levels_detailed(volume, marks)
    except LevelDetectionError as exc:
        return 0.0, [("levels", str(exc))]
    plan = Plan(levels=list(found.levels))
    counter.n, counter.seconds = 0, 0.0
    out = []
    t0 = time.perf_counter()
    for name in levels:
        level = plan.level_by_name(name)
        if level is None:
            out.append((name, "not found"))
            continue
        for side in ("left", "right"):
            sg = suggest_module.suggest_checked(plan, level, side, dict(volumes))
            tr = sg.trajectory
            out.append((name, side, sg.status, None if tr is None else
                        tuple(round(v, 2) for v in (*tr.entry_lps, *tr.target_lps))))
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "lumbar_mri_vb")
    ap.add_argument("--cases", help="these scans only (comma-separated)")
    ap.add_argument("--levels", default="L4,L5", help="levels to suggest for (comma-separated)")
    args = ap.parse_args(argv)
    cases = args.cases.split(",") if args.cases else mri_cases(args.data)
    levels = [n.strip().upper() for n in args.levels.split(",") if n.strip()]
    counter = _Counter()
    build._build = counter
    shipped = suggest_module.approach_box
    total = {"approach_box": [0.0, 0, 0.0], "level_box": [0.0, 0, 0.0]}
    differ = []
    print(f"{'scan':<8} {'approach_box: s, models (s)':>30} {'reference level_box: s, models (s)':>38}")
    for case in cases:
        row = {}
        for mode in ("approach_box", "level_box"):
            build._CACHE.clear()
            suggest_module.approach_box = shipped if mode == "approach_box" else (lambda vol, a, p: level_box(a, p))
            seconds, result = _run(case, args.data, levels, counter)
            row[mode] = (seconds, counter.n, counter.seconds, result)
            for i, v in enumerate((seconds, counter.n, counter.seconds)):
                total[mode][i] += v
        suggest_module.approach_box = shipped
        if row["approach_box"][3] != row["level_box"][3]:
            differ.append(case)
        a, b = row["approach_box"], row["level_box"]
        print(f"{case:<8} {a[0]:>14.1f} s {a[1]:>4d} ({a[2]:4.1f} s) {b[0]:>20.1f} s {b[1]:>4d} ({b[2]:4.1f} s)")
    a, b = total["approach_box"], total["level_box"]
    print(f"{'total':<8} {a[0]:>14.1f} s {a[1]:>4d} ({a[2]:4.1f} s) {b[0]:>20.1f} s {b[1]:>4d} ({b[2]:4.1f} s)")
    print("same trajectories in both" if not differ else f"different trajectories: {', '.join(differ)}")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
