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

* ``views``: the real main window offscreen on the demo case (planning layout, Trajectories panel
  shown, 3D view with its volume): per step the edit (its synchronous listeners included: the
  Trajectories panel refresh, the 3D actors of the trajectory, the view caches), then a forced
  paint of the window with every visible slice view marked dirty (:func:`paint_window`; each view
  is checked to have painted once; the slice views blit their cached image layer and draw the plan
  over it, see :mod:`planner.views.canvas`), then the 3D render (``VolumeView.render_now``, in its drag
  mode from the second step on), then the rest of the event queue. Each part and the total are
  timed; the total also in CPU time of this process (all its threads), which other programs on a
  shared machine change less than the wall time. References in the same run: the same paint without an edit, the same paint with the
  views' layer cache off (everything drawn directly), a full-quality 3D render
  (what the view draws once the drag stops), and the 33 ms budget. The views part always uses the
  demo case (its images are needed).

More parts are added with :func:`register_part`::

    @register_part("views")
    def bench_views(ctx: BenchContext) -> dict: ...

Each part receives a :class:`BenchContext` (the document, the dragged trajectory, the drag path and
the step count) and returns a dict of named results in ms (see :func:`summarise`).

    python bench/plan_bench.py [--steps 200] [--part core|views] [--json] [--demo]

The plan is the demo study's sample plan with ``--demo``, else a synthetic plan (L4 and L5 box vertebrae, four trajectories).
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
    from planner.demo import write_demo_study
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


def paint_window(app, views) -> None:
    """Mark the slice views dirty and paint the window now, as the event loop would: one backing
    store sync paints every dirty widget (the slice views and whatever the edit changed, such as the
    panel's tables). ``QWidget.repaint()`` per view would paint the views that the edit had already
    marked dirty twice (its first call syncs the whole window)."""
    from PySide6.QtCore import QEvent

    for v in views:
        v.update()
    app.sendPostedEvents(None, QEvent.Type.UpdateRequest.value)


def level_name(plan, traj) -> str:
    try:
        return plan.level(traj.level_id).name
    except KeyError:
        return "?"


@register_part("views")
def bench_views(ctx: BenchContext) -> dict:
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from planner.demo import ensure_demo_case
    from planner.session import Session
    from planner.trajectory import vertebra_frame
    from planner.views.app import create_application, install_panels, open_demo, settle
    from planner.views.main_window import MainWindow

    app = create_application()
    session = Session()
    open_demo(session, ensure_demo_case())
    window = MainWindow(session, initial_layout="planning", restore_state=False)
    install_panels(window)
    window.resize(1600, 1000)
    window.show()
    settle(app, 400)
    vv = window.views.ensure_volume_view()
    vv.ensure_volume_now()
    settle(app, 200)
    doc = session.document
    plan = doc.plan
    traj = plan.trajectories[0]
    panel = window.docks["Trajectories"].widget().widget()  # the dock holds a scroll area
    window.docks["Trajectories"].raise_()
    panel.select(traj.id)
    main = session.images[window.views.slice_views["sagittal"].series_key]
    session.set_cursor(np.asarray(traj.target_lps, dtype=float), main.info.frame_of_reference_uid)
    settle(app, 300)
    views = [v for v in window.views.slice_views.values() if v.isVisible()]
    assert vv.isVisible() and panel.isVisible() and len(views) == 3, "the planning layout is not shown"

    # the panel's share of the edit: time its listener where the document calls it
    panel_s: list[float] = []
    slots = doc.changed._slots
    idx = slots.index(panel._on_changed)

    def timed_panel(change, _slot=slots[idx]):
        t0 = time.perf_counter()
        _slot(change)
        panel_s.append(time.perf_counter() - t0)

    slots[idx] = timed_panel
    # the same kind of drag as the core part, around this plan's first trajectory
    frame = vertebra_frame(plan.level(traj.level_id))
    start = np.asarray(traj.target_lps, dtype=float)
    t = np.linspace(0.0, 2 * np.pi, ctx.steps)
    path = (start[None, :] - (3.0 * (1 - np.cos(t)))[:, None] * frame.u[None, :]
            + (3.0 * np.sin(t))[:, None] * frame.l[None, :])
    key = uuid.uuid4().hex
    edit_s, paint_s, render_s, events_s, total_s, cpu_s = [], [], [], [], [], []
    per_view: dict[str, list[float]] = {v.orientation: [] for v in views}
    drag_mode = 0
    for p in path:
        c0 = time.process_time()
        t0 = time.perf_counter()
        doc.set_trajectory_point(traj.id, "target", p, merge_key=key)
        t1 = time.perf_counter()
        painted = [v.image_paints for v in views]
        paint_window(app, views)
        t2 = time.perf_counter()
        for v, n in zip(views, painted):
            assert v.image_paints == n + 1, f"the {v.orientation} view was not painted once"
            per_view[v.orientation].append(v.last_paint_ms / 1000.0)
        drag_mode += bool(getattr(vv, "interactive", False))
        vv.render_now()
        t3 = time.perf_counter()
        app.processEvents()
        t4 = time.perf_counter()
        cpu_s.append(time.process_time() - c0)
        edit_s.append(t1 - t0)
        paint_s.append(t2 - t1)
        render_s.append(t3 - t2)
        events_s.append(t4 - t3)
        total_s.append(t4 - t0)
    slots[idx] = panel._on_changed
    # references: the same paint and a full-quality 3D render (as after the drag), without an edit
    settle(app, 700)
    bare_paint, bare_render = [], []
    for _ in range(max(10, min(ctx.steps, 30))):
        t0 = time.perf_counter()
        paint_window(app, views)
        t1 = time.perf_counter()
        vv.render_now()
        bare_paint.append(t1 - t0)
        bare_render.append(time.perf_counter() - t1)
    # and the same paint with every layer drawn directly (no cached image/text layers)
    direct_paint = []
    for v in views:
        v.layer_cache = False
    for _ in range(max(10, min(ctx.steps, 30))):
        t0 = time.perf_counter()
        paint_window(app, views)
        direct_paint.append(time.perf_counter() - t0)
    for v in views:
        v.layer_cache = True
    sizes = ", ".join(f"{v.orientation} {v.width()}x{v.height()}" for v in views)
    note = (f"window 1600x1000 offscreen; {sizes}; 3D {vv.vtk.width()}x{vv.vtk.height()}; "
            f"3D in drag mode at {drag_mode} of {len(path)} steps")
    ctx.source = (f"demo case sample plan in the real window ({len(plan.trajectories)} trajectories, "
                  f"{level_name(plan, traj)} {traj.side} target dragged)")
    window.shutdown()
    window.close()
    app.processEvents()
    return {
        "edit incl. listeners (set_trajectory_point)": summarise(edit_s),
        "  of which the Trajectories panel": summarise(panel_s),
        f"paint: {len(views)} slice views + dirty panel": summarise(paint_s),
        **{f"  {o} view (its paintEvent)": summarise(ts) for o, ts in per_view.items()},
        "3D render (VolumeView.render_now)": summarise(render_s),
        "remaining events": summarise(events_s),
        "ALL VIEWS UPDATED (total per step)": summarise(total_s),
        "  the same in CPU time of this process": summarise(cpu_s),
        "reference: same paint without an edit": summarise(bare_paint),
        "reference: same paint, layers not cached": summarise(direct_paint),
        "reference: 3D render at full quality": summarise(bare_render),
        "reference: frame budget": {"median_ms": FRAME_BUDGET_MS},
        "_note": {"text": note},
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
        results[name] = PARTS[name](ctx)
        source = ctx.source
    if args.json:
        print(json.dumps({"plan": source, "steps": args.steps, "results": results}, indent=2))
        return 0
    print(f"Plan: {source}; {args.steps} drag steps (one merge_key)")
    for part, rows in results.items():
        print(f"\n[{part}]")
        for label, r in rows.items():
            if "text" in r:
                print(f"  ({r['text']})")
            elif "p95_ms" in r:
                print(f"  {label:<48} median {r['median_ms']:7.3f} ms   p95 {r['p95_ms']:7.3f} ms")
            else:
                print(f"  {label:<48} {r['median_ms']:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
