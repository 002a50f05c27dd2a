"""Wrong marks on MRI reach the physician where the marks are placed (issue 10 item 4): the levels panel, driven
like a user (Mark S1 / Mark L5 / Mark L1, a click's point, Propose levels), shows the finder's warning naming the
likely correction above the list, and nothing is renamed. On the demo case and on a real scan.

Set ``BVN_KEEP_SCREENSHOTS`` to a folder to keep the screenshots (the window with the warning).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.imaging import load_path
from planner.imaging.volume import Volume
from tests.anatomy_reference import mri_case, score_levels
from tests.test_levels_panel import _panel

pytestmark = pytest.mark.gui


def _keep(widget, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BVN_KEEP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert widget.grab().save(str(path))
    assert path.stat().st_size > 1000
    return path


def _mark_and_propose(qtbot, panel, marks: dict[str, np.ndarray]) -> None:
    """Clear the marks, place each through its Mark button and a point (what a click in a view delivers),
    then press Propose levels."""
    qtbot.mouseClick(panel.clear_hints_button, Qt.MouseButton.LeftButton)
    for name, point in marks.items():
        qtbot.mouseClick(panel.hint_buttons[name], Qt.MouseButton.LeftButton)
        assert panel.pending_hint == name
        assert panel.provide_hint(tuple(float(v) for v in point))
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)


def _cases_demo(demo_study):
    v = {n: np.asarray(d["body_center_lps"], float) for n, d in demo_study.ground_truth["vertebrae"].items()}
    return v, [
        ("S1 mark on L5", {"S1": v["L5"], "L1": v["L1"]}, r"marked S1 is L5 .*move the S1 mark 1 body down"),
        ("L1 mark on T12", {"S1": v["S1"], "L1": v["T12"]}, r"marked L1 is T12.*move the L1 mark 1 body down"),
        ("L1 mark in a disc", {"S1": v["S1"], "L1": 0.5 * (v["T12"] + v["L1"])},
         r"L1 mark lies in a disc.*L1 is the body just below it; move the mark down"),
    ]


def _check(qtbot, panel, messages, session, marks, pattern):
    import re

    _mark_and_propose(qtbot, panel, marks)
    assert session.document.plan.levels == []  # nothing proposed, nothing renamed
    assert panel.warnings.isVisible()
    text = panel.warnings.text()
    assert re.search(pattern, text), text
    assert "Check the marks" in messages[-1]


def test_wrong_marks_on_the_demo_are_shown_where_the_physician_marks(qtbot, demo_study, tmp_path):
    """The demo's sagittal T1 in the main window: S1 marked on L5, L1 marked on T12 and L1 marked in the
    T12-L1 disc each show the warning with the likely correction in the levels panel; the right marks then
    give every level with no warning."""
    from planner.views.app import install_panels
    from tests.views_support import open_window, session_with

    (vol,) = [v for v in load_path(demo_study.series_dirs["T1"]).images.values() if isinstance(v, Volume)]
    session = session_with((vol.info.series_instance_uid or "t1", vol, "T1"))
    w = open_window(qtbot, session, size=(1500, 950))
    install_panels(w)
    panel = w.panels["Levels"]
    messages: list[str] = []
    panel.message.connect(messages.append)
    v, cases = _cases_demo(demo_study)
    for name, marks, pattern in cases:
        _check(qtbot, panel, messages, session, marks, pattern)
        _keep(w, "demo " + name, tmp_path)
    _mark_and_propose(qtbot, panel, {"S1": v["S1"], "L1": v["L1"]})
    assert [lv.name for lv in session.document.plan.levels] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert not any("Check the marks" in t for t in panel.warnings.text().split("<br>"))
    w.close()


@pytest.mark.parametrize("case", ["VB1_02", "VB2_04", "VB2_07"])
def test_wrong_marks_on_a_real_scan_are_shown_where_the_physician_marks(qtbot, shared_data, tmp_path, case):
    """Three real lumbar MRIs (the marks are L5 and L1: S1 is not labelled on every scan): S1 marked on L5, L1
    marked on T12 (with L5) and L1 marked in the T12-L1 disc each show the warning with the likely
    correction."""
    from tests.views_support import session_with

    folder = shared_data / "lumbar_mri_vb"
    ref = mri_case(folder, case)
    c = {n: b.centroid for n, b in ref["bodies"].items()}
    (vol,) = [v for v in load_path(folder / f"{case}_mr.nii.gz").images.values() if isinstance(v, Volume)]
    session = session_with(("mr", vol, "T2"))
    panel, messages = _panel(qtbot, session)
    cases = [
        ("S1 mark on L5", {"S1": c["L5"], "L1": c["L1"]}, r"marked S1 is L5 .*move the S1 mark 1 body down"),
        ("L1 mark on T12", {"L5": c["L5"], "L1": c["T12"]}, r"marked L1 is T12.*move the L1 mark 1 body down"),
        ("L1 mark in a disc", {"L5": c["L5"], "L1": 0.5 * (c["T12"] + c["L1"])},
         r"L1 mark lies in a disc.*L1 is the body just below it; move the mark down"),
    ]
    for name, marks, pattern in cases:
        _check(qtbot, panel, messages, session, marks, pattern)
        _keep(panel, f"{case} {name}", tmp_path)


def test_a_refused_proposal_without_marks_stays_shown_until_marks_name_the_levels(qtbot, shared_data, tmp_path):
    """A real scan whose image ends in the L5-S1 disc (VB3_11 cut so; held-out models named it one level high):
    Propose levels without marks names nothing and says why above the list, with how to mark two bodies, until
    the next proposal; marks in L5 and L1 then name every labelled body right and the refusal is gone."""
    from tests.anatomy_reference import fov_cut, score_levels
    from tests.views_support import session_with

    folder = shared_data / "lumbar_mri_vb"
    ref = mri_case(folder, "VB3_11")
    (vol,) = [v for v in load_path(folder / "VB3_11_mr.nii.gz").images.values() if isinstance(v, Volume)]
    session = session_with(("mr", fov_cut(vol, ref, "cut-disc"), "T2"))
    panel, messages = _panel(qtbot, session)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert session.document.plan.levels == []
    assert panel.warnings.isVisible()
    text = panel.warnings.text()
    assert "cannot name the levels: the body below the one that looks like the last lumbar body" in text, text
    assert "mark points inside two bodies (S1 and L1, or L5 and L1)" in text, text
    assert messages[-1].startswith("Levels not found: cannot name the levels")
    _keep(panel, "VB3_11 cut in the L5-S1 disc, no marks", tmp_path)
    c = {n: b.centroid for n, b in ref["bodies"].items()}
    _mark_and_propose(qtbot, panel, {"L5": c["L5"], "L1": c["L1"]})
    sc = score_levels(session.document.plan.levels, ref)
    assert sc["found_right"] == sc["labelled"] and not sc["misnamed"], sc
    assert "Levels not found" not in panel.warnings.text()
    qtbot.wait(50)  # the layout closes the hidden warning's space
    _keep(panel, "VB3_11 cut in the L5-S1 disc, marks L5 and L1", tmp_path)


def test_propose_levels_shows_that_it_works_and_cancel_leaves_the_plan_unchanged(qtbot, shared_data, tmp_path):
    """On a real scan the proposal takes seconds: a busy progress window says what it does (the plan cannot be
    edited meanwhile); Cancel leaves the plan without levels and says so; proposing again names the levels."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QPushButton

    from tests.views_support import session_with

    folder = shared_data / "lumbar_mri_vb"
    ref = mri_case(folder, "VB2_04")
    c = {n: b.centroid for n, b in ref["bodies"].items()}
    (vol,) = [v for v in load_path(folder / "VB2_04_mr.nii.gz").images.values() if isinstance(v, Volume)]
    session = session_with(("mr", vol, "T2"))
    panel, messages = _panel(qtbot, session)
    seen = {}

    def cancel_when_shown():
        dlg = panel.progress
        if dlg is None or not dlg.isVisible():
            QTimer.singleShot(50, cancel_when_shown)
            return
        seen.update(label=dlg.labelText(), busy=dlg.maximum() == 0, title=dlg.windowTitle())
        _keep(dlg, "VB2_04 proposing levels", tmp_path)
        qtbot.mouseClick(dlg.findChild(QPushButton), Qt.MouseButton.LeftButton)

    qtbot.mouseClick(panel.clear_hints_button, Qt.MouseButton.LeftButton)
    for name in ("L5", "L1"):
        qtbot.mouseClick(panel.hint_buttons[name], Qt.MouseButton.LeftButton)
        assert panel.provide_hint(tuple(float(v) for v in c[name]))
    QTimer.singleShot(50, cancel_when_shown)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert seen == {"label": "Finding the vertebral bodies and naming the levels...", "busy": True,
                    "title": "Propose levels"}, seen
    assert session.document.plan.levels == [] and panel.progress is None
    assert messages[-1] == "Level proposal cancelled; the plan is unchanged"
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)  # the marks are kept
    sc = score_levels(session.document.plan.levels, ref)
    assert sc["found_right"] == sc["labelled"] and not sc["misnamed"], sc
