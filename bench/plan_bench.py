#!/usr/bin/env python3
"""Planning benchmark (issue 6): how long the app needs per step while the physician drags a handle.

Each part simulates a drag of the target handle: ``--steps`` moves (default 200) through
``PlanDocument.set_trajectory_point`` with one ``merge_key`` (one undo step, as the slice views do),
and times what has to happen before the next frame can be shown. Results are medians (and p95) in
milliseconds per step, next to references measured in the same run:

* ``core``: the edit (validation, undo snapshot, change event) plus all metrics and checks of the
  dragged trajectory (:func:`planner.checks.evaluate_trajectory`) and of the whole plan
  (:func:`planner.checks.evaluate_plan`, what the panel and the exports show). References: the bare
  undo snapshot of the plan (``Plan.model_copy(deep=True)``), and the 33 ms frame budget of the
  issue (30 frames per second).

More parts (for example the full view updates) are added with :func:`register_part`::

    @register_part("views")
    def bench_views(ctx: BenchContext) -> dict: ...

Each part receives a :class:`BenchContext` (the document, the dragged trajectory, the drag path and
the step count) and returns a dict of named results in ms (see :func:`summarise`).

    python bench/plan_bench.py [--steps 200] [--part core] [--json] [--demo]

The plan is the demo study's sample plan with ``--demo`` when :mod:`planner.demo` is available,
else a synthetic plan (L4 and L5 box vertebrae, four trajectories).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

FRAME_BUDGET_MS = 33.0


@dataclass
class BenchContext:
    document: Any
    trajectory_id: str
    #: (steps, 3) LPS target positions of the drag.
    path_lps: np.ndarray
    steps: int
    images: dict = field(default_factory=dict)
    source: str = ""


PARTS: dict[str, Callable[[BenchContext], dict]] = {}


def register_part(name: str) -> Callable[[Callable[[BenchContext], dict]], Callable[[BenchContext], dict]]:
    def deco(fn: Callable[[BenchContext], dict]) -> Callable[[BenchContext], dict]:
        PARTS[name] = fn
        return fn
    return deco


def summarise(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in samples_s)
    return {"median_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))], "max_ms": ms[-1],
            "n": len(ms)}


# ------------------------------------------------------------------------------------ plans
def synthetic_plan():
    from planner.plan import Landmarks, Level, Plan
    from planner.trajectory import suggest_trajectory

    plan = Plan()
    for i, name in enumerate(("L4", "L5")):
        z = -40.0 * i
        lm = Landmarks(body_center_lps=(0, 0, z), superior_endplate_lps=(0, 0, z + 13),
                       inferior_endplate_lps=(0, 0, z - 13), posterior_wall_lps=(0, 18, z),
                       anterior_wall_lps=(0, -18, z), pedicle_left_lps=(13, 26, z + 4),
                       pedicle_right_lps=(-13, 26, z + 4))
        plan.levels.append(Level(name=name, treat=True, landmarks=lm))
    for lv in plan.levels:
        for side in ("left", "right"):
            plan.trajectories.append(suggest_trajectory(plan, lv, side))
    return plan, "synthetic L4/L5 box vertebrae, 4 trajectories"


def demo_plan():
    try:
        from planner.demo import write_demo_study  # type: ignore[attr-defined]
    except ImportError:
        return None
    from planner.storage import load_plan

    folder = Path(tempfile.mkdtemp(prefix="bvn-bench-demo-"))
    manifest = write_demo_study(folder)
    plan = load_plan(manifest.plan_path)
    if not plan.trajectories:
        return None
    return plan, f"demo study sample plan, {len(plan.trajectories)} trajectories"


def make_context(steps: int, use_demo: bool) -> BenchContext:
    from planner.document import PlanDocument
    from planner.trajectory import vertebra_frame

    made = demo_plan() if use_demo else None
    plan, source = made if made is not None else synthetic_plan()
    doc = PlanDocument(plan, user="bench")
    traj = plan.trajectories[0]
    frame = vertebra_frame(plan.level(traj.level_id))
    start = np.asarray(traj.target_lps, dtype=float)
    # a drag that sweeps the target 6 mm toward the canal and 6 mm sideways and back
    t = np.linspace(0.0, 2 * np.pi, steps)
    path = (start[None, :] - (3.0 * (1 - np.cos(t)))[:, None] * frame.u[None, :]
            + (3.0 * np.sin(t))[:, None] * frame.l[None, :])
    return BenchContext(doc, traj.id, path, steps, {}, source)


# ------------------------------------------------------------------------------------ parts
@register_part("core")
def bench_core(ctx: BenchContext) -> dict:
    from planner.checks import evaluate_plan, evaluate_trajectory

    doc = ctx.document
    key = uuid.uuid4().hex
    edit_s, traj_s, plan_s, step_s, snap_s = [], [], [], [], []
    # warm-up (imports, caches)
    evaluate_plan(doc.plan, ctx.images)
    for p in ctx.path_lps:
        t0 = time.perf_counter()
        doc.set_trajectory_point(ctx.trajectory_id, "target", p, merge_key=key)
        t1 = time.perf_counter()
        rep = evaluate_trajectory(doc.plan, ctx.trajectory_id, ctx.images)
        t2 = time.perf_counter()
        evaluate_plan(doc.plan, ctx.images)
        t3 = time.perf_counter()
        edit_s.append(t1 - t0)
        traj_s.append(t2 - t1)
        plan_s.append(t3 - t2)
        step_s.append(t3 - t0)
        assert rep.checks
    for _ in range(ctx.steps):
        t0 = time.perf_counter()
        doc.plan.model_copy(deep=True)
        snap_s.append(time.perf_counter() - t0)
    return {
        "edit (set_trajectory_point)": summarise(edit_s),
        "evaluate_trajectory (dragged one)": summarise(traj_s),
        f"evaluate_plan ({len(doc.plan.trajectories)} trajectories)": summarise(plan_s),
        "step total (edit + both evaluations)": summarise(step_s),
        "reference: plan snapshot (model_copy deep)": summarise(snap_s),
        "reference: frame budget": {"median_ms": FRAME_BUDGET_MS},
    }


# ------------------------------------------------------------------------------------ main
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="drag steps (default 200)")
    ap.add_argument("--part", action="append", choices=sorted(PARTS), help="part(s) to run (default: all)")
    ap.add_argument("--demo", action="store_true", help="use the demo study's plan when planner.demo is available")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    source = ""
    for name in args.part or list(PARTS):
        ctx = make_context(args.steps, args.demo)  # a fresh document per part
        source = ctx.source
        results[name] = PARTS[name](ctx)
    if args.json:
        print(json.dumps({"plan": source, "steps": args.steps, "results": results}, indent=2))
        return 0
    print(f"Plan: {source}; {args.steps} drag steps (one merge_key)")
    for part, rows in results.items():
        print(f"\n[{part}]")
        for label, r in rows.items():
            if "p95_ms" in r:
                print(f"  {label:<48} median {r['median_ms']:7.3f} ms   p95 {r['p95_ms']:7.3f} ms")
            else:
                print(f"  {label:<48} {r['median_ms']:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
