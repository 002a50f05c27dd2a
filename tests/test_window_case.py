"""A real case in the real window, from an empty window to the fellow's review (issue 15 items 1-3):
the plan records its patient, study and series from the first images; saving a plan with no case
is refused; the plan reopens for review on a fresh settings folder with its images found (or offered
again, every time); another patient's images never mix into the open case; the panels come back on
every start."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.session import Session
from planner.storage import load_plan
from tests.views_support import ScriptedMissingPrompter, ScriptedPrompter, click, open_window

pytestmark = pytest.mark.gui

CT_FOLDER = "totalseg_example/ct_dicom"


class SavingPrompter(ScriptedPrompter):
    """Answers Save as with ``path`` and remembers the suggestion it was offered."""

    def __init__(self, path) -> None:
        super().__init__()
        self.path = str(path)
        self.suggestions: list[str] = []

    def ask_save_path(self, suggestion: str):
        self.suggestions.append(suggestion)
        return self.path


def _import(qtbot, w, folder) -> None:
    with qtbot.waitSignal(w.images_imported, timeout=60000):
        w.import_paths([str(folder)], show_dialog=False)


def _review_window(qtbot, monkeypatch, tmp_path, plan_path, name="review-home"):
    """``main.py PLAN --review`` on a fresh settings folder, up to the deferred start-up steps."""
    from planner.views.app import after_first_frame, build_window

    monkeypatch.setenv("BVN_PLANNER_HOME", str(tmp_path / name))
    args = SimpleNamespace(demo=False, path=str(plan_path), review=True, images=None, layout=None, screenshot=None,
                           size=None)
    _app, w = build_window(args)
    qtbot.addWidget(w)
    w.files.prompter = ScriptedPrompter()
    w.plan_images.prompter = ScriptedMissingPrompter()
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    after_first_frame(w)
    return w


def test_saving_a_plan_that_names_no_case_is_refused(qtbot, tmp_path):
    w = open_window(qtbot, Session())
    w.files.prompter = SavingPrompter(tmp_path / "empty.bvnplan")
    assert not w.files.save() and not (tmp_path / "empty.bvnplan").exists()
    assert w.files.prompter.errors and "names no patient and no images" in w.files.prompter.errors[0][1]
    assert not w.files.prompter.suggestions  # refused before asking for a name
    w.shutdown()


def test_real_ct_from_an_empty_window_is_recorded_saved_and_found_for_review(qtbot, tmp_path, monkeypatch,
                                                                              shared_data):
    """Open the real CT folder in an empty window, measure, save: the plan names the study and the series;
    a fellow reopens it with --review on a fresh settings folder and the images are found."""
    folder = shared_data / CT_FOLDER
    w = open_window(qtbot, Session(), size=(1280, 800))
    doc = w.session.document
    _import(qtbot, w, folder)
    (key,) = list(w.session.images)
    case = doc.plan.case
    assert [r.series_instance_uid for r in case.series] == [key]
    ref = case.series[0]
    assert (ref.modality, ref.description, ref.role, ref.number_of_images) == ("CT", "CT Body 3.0", "CT", 20)
    assert ref.path_hint == str(folder) and case.study_date == "20221208"
    # viewing only: closing loses nothing, so nothing is asked
    assert w.files.maybe_discard_changes()
    # plan: a distance measured in the axial view with the distance tool
    ax = w.views.slice_views["axial"]
    w.actions["tool.distance"].trigger()
    click(ax, (ax.width() * 0.4, ax.height() * 0.5))
    click(ax, (ax.width() * 0.6, ax.height() * 0.5))
    assert len(doc.plan.measurements) == 1
    target = tmp_path / "plans" / "ct-case.bvnplan"
    target.parent.mkdir()
    w.files.prompter = SavingPrompter(target)
    assert w.files.save()
    suggestion = w.files.prompter.suggestions[0]
    assert suggestion.endswith("2022-12-08.bvnplan") and "/plan.bvnplan" not in suggestion
    saved = load_plan(target)
    assert [r.series_instance_uid for r in saved.case.series] == [key]
    assert saved.case.series[0].description == "CT Body 3.0" and saved.case.study_date == "20221208"
    w.shutdown()

    r = _review_window(qtbot, monkeypatch, tmp_path, target)
    assert r.session.document.read_only and key in r.session.images
    assert r.plan_images.prompter.asked == []  # found at the stored path: nothing to offer
    assert r.review_banner.isVisible() and "read-only" in r.review_banner.text().lower()
    qtbot.waitUntil(lambda: r.views.slice_views["axial"].series_key == key, timeout=5000)
    # the next plan saved from this computer proposes the folder of the last plan opened
    assert r.files.suggest_path().startswith(str(target.parent))
    r.shutdown()


def test_demo_dicom_from_an_empty_window_to_the_fellows_review(qtbot, tmp_path, monkeypatch, demo_study):
    """The demo DICOM folder as a physician gets it: mark S1 and L1 with the default tool, propose the
    levels, treat L4, plan bipedicular (twice: the second replaces), save; the fellow reopens it read-only
    on a fresh settings folder and the summary names the patient; moved images are offered again, every
    time the plan is opened."""
    from planner.report import build_report_data
    from planner.views.app import install_panels

    cd = tmp_path / "cd"
    shutil.copytree(demo_study.dicom_folder, cd)
    truth = demo_study.ground_truth["vertebrae"]
    w = open_window(qtbot, Session(), size=(1600, 1000))
    install_panels(w)
    doc = w.session.document
    _import(qtbot, w, cd)
    case = doc.plan.case
    assert case.patient_name == "DEMO^BVN" and case.patient_id == "BVN-DEMO-0000" and case.study_instance_uid
    assert {r.role for r in case.series} >= {"T1", "T2", "STIR", "AX_T2", "FLUORO_AP", "FLUORO_LAT"}
    assert len(case.series) == len(w.session.images)

    levels = w.panels["Levels"]
    sag = w.views.slice_views["sagittal"]
    assert w.ctx.tool == "window_level"
    for name in ("S1", "L1"):
        center = np.asarray(truth[name]["body_center_lps"])
        w.session.set_cursor(center, sag.frame_of_reference_uid)  # scroll the sagittal view to the body
        qtbot.mouseClick(levels.hint_buttons[name], Qt.MouseButton.LeftButton)
        click(sag, tuple(sag.to_widget(center[None])[0]))
        assert np.linalg.norm(np.asarray(levels.hints[name]) - center) < 1.0
    qtbot.mouseClick(levels.propose_button, Qt.MouseButton.LeftButton)
    names = [lv.name for lv in doc.plan.levels]
    assert {"L1", "L4", "L5", "S1"} <= set(names)
    l4 = doc.plan.level_by_name("L4")
    levels.select(l4.id)
    levels.toggle_flag("treat")
    assert doc.plan.level(l4.id).treat

    traj = w.panels["Trajectories"]
    traj.ask_replace = lambda text: True
    traj.select("", l4.id)
    qtbot.mouseClick(traj.suggest_bi, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(traj.suggest_bi, Qt.MouseButton.LeftButton)  # again: replaces, never a third
    assert sorted(t.side for t in doc.plan.trajectories_of(l4.id)) == ["left", "right"]

    target = tmp_path / "plans" / "demo.bvnplan"
    target.parent.mkdir()
    w.files.prompter = SavingPrompter(target)
    assert w.files.save()
    assert "DEMO-BVN_L4_" in w.files.prompter.suggestions[0]
    saved = load_plan(target)
    assert saved.case.patient_name == "DEMO^BVN" and len(saved.case.series) == len(case.series)
    w.shutdown()

    r = _review_window(qtbot, monkeypatch, tmp_path, target)
    assert r.session.document.read_only and set(r.session.images) == {s.series_instance_uid for s in saved.case.series}
    data = build_report_data(r.session.document.plan, r.session.images, with_3d=False)
    assert "DEMO" in data.patient_display_name and data.images_available
    assert not r.panels["Levels"].assistant_button.isEnabled()
    assert not any(b.isEnabled() for b in r.panels["Levels"].hint_buttons.values())
    r.shutdown()

    # the CD is gone: the fellow is offered to look in a folder or the PACS, each time the plan opens
    cd.rename(tmp_path / "cd-moved")
    for attempt in range(2):
        m = _review_window(qtbot, monkeypatch, tmp_path, target, name=f"home-{attempt}")
        assert not m.session.images
        asked = m.plan_images.prompter.asked
        assert len(asked) == 1 and f"{len(saved.case.series)} series of this plan were not found" in asked[0]
        m.shutdown()


def test_another_patients_images_are_never_mixed_in(qtbot, demo_study, shared_data):
    """The TotalSegmentator CT (empty patient IDs: another patient) opened into the demo case: the
    window asks; the default answer opens it in a new window; "replace" closes the demo case; the
    series list groups the series under their patient and study."""
    from planner.views.app import install_panels, open_demo

    session = Session()
    open_demo(session, demo_study.folder)
    w = open_window(qtbot, session)
    install_panels(w)
    demo_keys = set(session.images)
    demo_case = session.document.plan.case.model_copy(deep=True)
    _import(qtbot, w, shared_data / CT_FOLDER)
    (current, other, can_replace), = w.files.prompter.other_patient_asked
    assert "DEMO BVN" in current and "no patient ID" in other and can_replace
    assert set(session.images) == demo_keys and session.document.plan.case == demo_case  # not mixed
    (new,) = w.other_windows
    qtbot.addWidget(new)
    assert len(new.session.images) == 1 and next(iter(new.session.images.values())).info.modality == "CT"
    assert new.session.document.plan.case.study_date == "20221208" and not new.session.document.plan.levels
    new.shutdown()

    tree = w.panels["Series"].tree
    assert tree.topLevelItemCount() == 1  # one patient
    patient = tree.topLevelItem(0)
    assert "DEMO BVN" in patient.text(0) and "BVN-DEMO-0000" in patient.text(0)
    study = patient.child(0)
    assert study.text(0).startswith("Study 2024-03-15")
    assert sorted(w.panels["Series"].series_keys()) == sorted(demo_keys)
    # a double-click shows a series in the views
    ax_key = next(k for k in demo_keys if "AX" in session.images[k].info.series_description.upper())
    w.show_series(ax_key)
    assert w.views.slice_views["sagittal"].series_key == ax_key

    # "replace": the demo case is closed (nothing unsaved to lose) and the CT opens here with a new plan
    w.files.prompter.other_patient = "replace"
    _import(qtbot, w, shared_data / CT_FOLDER)
    assert len(session.images) == 1 and not session.document.plan.levels
    assert session.document.plan.case.study_date == "20221208" and session.document.plan.case.patient_id == ""
    assert len(w.files.prompter.other_patient_asked) == 2
    w.shutdown()


def test_the_panels_come_back_on_every_start(qtbot):
    """Quit and start three times: the panels are there each time; a panel the user closed stays closed
    until View > Reset layout."""
    from planner.views.main_window import MainWindow
    from tests.views_support import sagittal_volume, session_with

    def start():
        w = MainWindow(session_with(("1.2.3.2", sagittal_volume(uid="1.2.3.2"), "T2")))
        qtbot.addWidget(w)
        w.files.prompter = ScriptedPrompter()
        w.resize(1280, 800)
        w.show()
        qtbot.waitExposed(w)
        w.install_panels()
        qtbot.wait(20)
        return w

    for run in range(3):
        w = start()
        assert all(not d.isHidden() for d in w.docks.values()), run
        assert w.panels["Levels"].is_shown() or w.panels["Series"].is_shown()
        assert w.dockWidgetArea(w.docks["Trajectories"]) == Qt.DockWidgetArea.RightDockWidgetArea
        if run == 2:
            w.docks["Review"].close()  # the user closes one panel before quitting
        assert w.close()
    w = start()
    assert w.docks["Review"].isHidden() and not w.docks["Levels"].isHidden()
    w.actions["view.reset_layout"].trigger()
    assert all(not d.isHidden() for d in w.docks.values())
    w.show_panel("Trajectories")
    qtbot.waitUntil(w.panels["Trajectories"].is_shown, timeout=3000)
    assert w.close()
