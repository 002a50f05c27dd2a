"""A plan reopened where its images are not: the window names the missing series, and finds them in
a folder the user points to or retrieves exactly those series from the PACS (local Orthanc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.imaging import pacs
from planner.storage import load_plan, save_plan
from tests.orthanc import planner_node
from tests.views_support import ScriptedMissingPrompter, open_window, session_with, wait_plan_images

pytestmark = pytest.mark.gui
WAIT_MS = 120000


@pytest.fixture
def moved_plan(demo_study, tmp_path):
    """The demo plan copied elsewhere, its path hints pointing to a folder that no longer exists."""
    plan = load_plan(str(demo_study.plan_path))
    for ref in plan.case.series:
        ref.path_hint = str(tmp_path / "gone" / Path(ref.path_hint or "x").name)
    return save_plan(plan, tmp_path / "moved.bvnplan"), plan


def _open(qtbot, path, prompter):
    """The window with ``path`` opened; ``w.retrieved`` records the PACS retrieves that ended (the
    retrieve may start, and end, while the plan's images are still being looked for)."""
    w = open_window(qtbot, session_with())
    w.plan_images.prompter = prompter
    w.retrieved = []
    w.plan_images.retrieve_finished.connect(lambda n, msg: w.retrieved.append((n, msg)))
    assert w.files.open_plan(str(path))
    wait_plan_images(qtbot, w)
    return w


def test_missing_series_are_named_and_found_in_a_folder_the_user_points_to(qtbot, moved_plan, demo_study):
    path, plan = moved_plan
    prompter = ScriptedMissingPrompter(answer="ignore")
    w = _open(qtbot, path, prompter)
    qtbot.waitUntil(lambda: bool(prompter.asked), timeout=5000)
    text = prompter.asked[0]
    assert f"{len(plan.case.series)} series of this plan were not found" in text
    for ref in plan.case.series:
        assert ref.description in text
    assert w.session.document.plan.content_hash() == plan.content_hash()  # the plan itself is open, unchanged
    # the user points to the folder: every series is found by UID
    prompter.answer, prompter.folder = "folder", str(demo_study.folder)
    prompter.asked.clear()
    with qtbot.waitSignal(w.plan_images.load_finished, timeout=60000) as loaded:
        w.plan_images.offer()
    assert loaded.args[0] == len(plan.case.series) and not w.plan_images.missing()
    assert {r.series_instance_uid for r in plan.case.series} <= set(w.session.images)
    qtbot.waitUntil(lambda: w.views.slice_views["sagittal"].series_key is not None, timeout=5000)


@pytest.mark.pacs
def test_missing_series_are_retrieved_from_the_pacs(qtbot, moved_plan, demo_study, orthanc):
    path, plan = moved_plan
    orthanc.clear()
    wanted = {r.series_instance_uid for r in plan.case.series}
    for f in sorted(Path(demo_study.folder).rglob("*")):
        if f.is_file() and f.suffix.lower() in (".dcm", "") and f.name != "DICOMDIR":
            try:
                orthanc.upload(f)
            except Exception:  # not a DICOM file (ground truth, plan)
                continue
    pacs.save_nodes([planner_node(orthanc)])
    prompter = ScriptedMissingPrompter(answer="pacs")
    w = _open(qtbot, path, prompter)
    qtbot.waitUntil(lambda: bool(w.retrieved), timeout=WAIT_MS)
    assert prompter.asked
    [(found, message)] = w.retrieved
    assert found == len(plan.case.series), message
    assert "Received" in message and "still missing" not in message
    assert wanted <= set(w.session.images)
    assert not w.plan_images.missing()
    w.close()
    # reopened later: the series come from the local retrieve cache, the PACS is not asked (and is gone)
    pacs.save_nodes([])
    again_prompter = ScriptedMissingPrompter(answer="pacs")
    again = _open(qtbot, path, again_prompter)
    qtbot.waitUntil(lambda: not again.plan_images.missing(), timeout=WAIT_MS)
    assert wanted <= set(again.session.images) and not again_prompter.asked and not again.retrieved


@pytest.mark.pacs
def test_a_pacs_without_the_series_says_so_and_keeps_the_plan(qtbot, moved_plan, orthanc):
    path, plan = moved_plan
    orthanc.clear()
    pacs.save_nodes([planner_node(orthanc)])
    prompter = ScriptedMissingPrompter(answer="pacs")
    w = _open(qtbot, path, prompter)
    qtbot.waitUntil(lambda: bool(w.retrieved), timeout=WAIT_MS)
    [(found, message)] = w.retrieved
    assert found == 0 and ("does not have" in message or "failed" in message), message
    assert w.session.document.plan.content_hash() == plan.content_hash()
    assert len(w.plan_images.missing()) == len(plan.case.series)
