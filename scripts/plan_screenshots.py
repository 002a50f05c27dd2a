#!/usr/bin/env python3
"""Screenshot of the planned demo case (issue 6): the planning layout with the crosshair on the L4
target and then on the L5 target, so that the sagittal, axial and coronal views cut the instruments
and the ablation zone, and the 3D view shows the tubes and the zones. The two window pictures are
stacked into one PNG (L4 on top, L5 below).

    python scripts/plan_screenshots.py [--out docs/screenshot-planned-L4-L5.png] [--size 1600x1000]
                                       [--scale 0.75] [--levels L4,L5]

Runs offscreen when no display is set. Exit status 0 when the picture was written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


#: 3D camera of the screenshot: from the patient's left, a little from behind and above (LPS), so
#: that the tubes are seen along their length. The slice planes are hidden in the 3D picture (the
#: mid-sagittal plane would hide the right-sided trajectories); the slice views show the cuts.
CAMERA_FROM_LPS = (1.0, 0.45, 0.35)
#: Half the width of the 3D picture around the planned targets (mm).
CAMERA_HALF_WIDTH_MM = 55.0


def frame_plan_in_3d(vv, session) -> None:
    """Point the 3D camera at the middle of the planned targets, close enough to see the tubes."""
    import numpy as np

    plan = session.document.plan
    if not plan.trajectories:
        return
    pts = np.array([p for t in plan.trajectories for p in (t.entry_lps, t.target_lps)], dtype=float)
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    direction = np.asarray(CAMERA_FROM_LPS, dtype=float)
    direction /= np.linalg.norm(direction)
    cam = vv.renderer.GetActiveCamera()
    dist = CAMERA_HALF_WIDTH_MM / np.tan(np.radians(cam.GetViewAngle() / 2))
    cam.SetFocalPoint(*centre)
    cam.SetPosition(*(centre + direction * dist))
    cam.SetViewUp(0.0, 0.0, 1.0)
    vv.renderer.ResetCameraClippingRange()
    vv.slices_check.setChecked(False)


def grab_at_target(app, window, session, traj_id: str):
    """Make ``traj_id`` the active trajectory, put the crosshair on its target, render, grab."""
    import numpy as np

    from planner.views.app import settle

    traj = session.document.plan.trajectory(traj_id)
    panel = window.docks["Trajectories"].widget().widget() if "Trajectories" in window.docks else None
    if panel is not None:
        window.docks["Trajectories"].raise_()
        panel.select(traj_id)
    else:
        session.set_active_trajectory(traj_id)
    key = window.views.slice_views["sagittal"].series_key
    for_uid = session.images[key].info.frame_of_reference_uid if key else ""
    session.set_cursor(np.asarray(traj.target_lps, dtype=float), for_uid)
    settle(app, 300)
    vv = window.views.ensure_volume_view()
    if vv is not None and vv.isVisible():
        vv.ensure_volume_now()
        vv.end_drag_mode()
        frame_plan_in_3d(vv, session)
        vv.render_now()
    settle(app, 200)
    return window.grab_with_vtk()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot-planned-L4-L5.png"))
    ap.add_argument("--size", default="1600x1000", help="window size, WIDTHxHEIGHT")
    ap.add_argument("--scale", type=float, default=0.75, help="scale of each window picture in the output")
    ap.add_argument("--levels", default="L4,L5", help="levels whose (first) trajectory target is shown")
    args = ap.parse_args(argv)

    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QImage, QPainter

    from planner.session import Session
    from planner.views.app import _parse_size, create_application, install_panels, open_demo, settle
    from planner.views.main_window import MainWindow

    width, height = _parse_size(args.size)
    app = create_application()
    session = Session()
    open_demo(session)
    window = MainWindow(session, initial_layout="planning", restore_state=False)
    window.title_hint = "Demo case (not saved)"
    try:
        install_panels(window)
        window.resize(width, height)
        window.show()
        settle(app, 400)
        plan = session.document.plan
        wanted = [n.strip() for n in args.levels.split(",") if n.strip()]
        shots = []
        for name in wanted:
            trajs = [t for t in plan.trajectories if plan.level(t.level_id).name == name]
            if not trajs:
                print(f"no trajectory planned at {name}", file=sys.stderr)
                return 1
            img = grab_at_target(app, window, session, trajs[0].id)
            if img.isNull():
                print("the window could not be grabbed", file=sys.stderr)
                return 1
            shots.append(img.scaledToWidth(int(img.width() * args.scale), Qt.TransformationMode.SmoothTransformation))
        out = QImage(max(s.width() for s in shots), sum(s.height() for s in shots), QImage.Format.Format_RGB32)
        out.fill(0)
        p = QPainter(out)
        y = 0
        for s in shots:
            p.drawImage(QPoint(0, y), s)
            y += s.height()
        p.end()
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not out.save(str(path)):
            print(f"could not write {path}", file=sys.stderr)
            return 1
        print(f"screenshot saved: {path} ({out.width()}x{out.height()}; levels {', '.join(wanted)})")
        return 0
    finally:
        window.shutdown()
        window.close()


if __name__ == "__main__":
    sys.exit(main())
