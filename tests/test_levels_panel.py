"""The levels panel driven with mouse and keyboard: propose, relabel, flags, findings, assistant, hints."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from planner.document import PlanDocument
from planner.plan import Level, Plan, SeriesRef
from planner.session import Session
from tests.test_modic import _landmarks, phantom

pytestmark = pytest.mark.gui


def _panel(qtbot, session):
    from planner.views.levels_panel import LevelsPanel

    w = LevelsPanel(session)
    qtbot.addWidget(w)
    w.resize(520, 760)
    w.show()
    messages: list[str] = []
    w.message.connect(messages.append)
    return w, messages


@pytest.fixture
def modic_session():
    """One vertebra (L5) with landmarks, T1/T2/STIR phantoms with type 1 under the superior endplate."""
    vols = phantom([("superior", "1", 9.0, 1.0)])
    plan = Plan(levels=[Level(name="L4", landmarks=_landmarks(60.0)), Level(name="L5", landmarks=_landmarks())])
    session = Session(PlanDocument(plan, user="dr"))
    refs = []
    for role, vol in vols.items():
        uid = f"1.2.{len(refs) + 1}"
        session.add_image(uid, vol)
        refs.append(SeriesRef(series_instance_uid=uid, role=role, modality="MR"))
    session.document.set_case(series=refs)
    return session


def _item_texts(panel):
    out = []
    for i in range(panel.tree.topLevelItemCount()):
        top = panel.tree.topLevelItem(i)
        out.append(top.text(0))
    return out


def test_propose_levels_on_the_real_ct(qtbot, shared_data):
    from tests.test_levels_ct import _sitk_volume

    path = shared_data / "totalseg_example" / "example_ct.nii.gz"
    session = Session(PlanDocument(Plan(), user="dr"))
    session.add_image("ct", _sitk_volume(path))
    panel, messages = _panel(qtbot, session)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    names = [lv.name for lv in session.document.plan.levels]
    assert names == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"], messages
    assert _item_texts(panel) == names and "Proposed 7 levels" in messages[-1]
    assert session.document.undo_text == "Propose levels"
    # relabel: every name one level down, then back up (each one undo step)
    qtbot.mouseClick(panel.down_button, Qt.MouseButton.LeftButton)
    assert [lv.name for lv in session.document.plan.levels] == ["L1", "L2", "L3", "L4", "L5", "S1", "S2"]
    qtbot.mouseClick(panel.up_button, Qt.MouseButton.LeftButton)
    assert [lv.name for lv in session.document.plan.levels] == names
    # proposing again keeps the findings of existing levels
    l4 = session.document.plan.level_by_name("L4")
    session.document.set_endplate(l4.id, "inferior", modic_type="1", confirmed=True)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    again = session.document.plan.level_by_name("L4")
    assert again.id == l4.id and again.inferior.modic_type == "1"
    panel.close()


def test_mri_without_marks_asks_for_them(qtbot):
    vols = phantom()
    session = Session(PlanDocument(Plan(), user="dr"))
    session.add_image("t2", vols["T2"])
    panel, messages = _panel(qtbot, session)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert session.document.plan.levels == []
    assert messages and "mark points inside two bodies (S1 and L1, or L5 and L1)" in messages[-1]


def test_a_ct_crop_without_the_sacrum_is_named_from_a_mark_in_another_body(qtbot, shared_data):
    """The TPTBox crop shows L2-L4 only: without a mark the panel says it cannot name the levels; "Mark other",
    then L3 and a click inside L3's body, names them from it, and L4, which the crop cuts, says so."""
    import json

    from tests.test_levels_ct import _sitk_volume

    crop = shared_data / "tptbox_vertebra_crops" / "sample_ct"
    session = Session(PlanDocument(Plan(), user="dr"))
    session.add_image("ct", _sitk_volume(crop / "sub-ct_label-22_ct.nii.gz"))
    panel, messages = _panel(qtbot, session)
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert session.document.plan.levels == [] and "mark one named body" in panel.warnings.text()
    panel.other_mark_actions["L3"].trigger()
    assert panel.pending_hint == "L3" and "Click inside L3" in panel.hint_label.text()
    l3 = json.loads((crop / "vertebra_centroids.json").read_text())["levels"]["L3"]["centroid_LPS_mm"]
    assert panel.provide_hint(l3) and set(panel.hints) == {"L3"}
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    assert [lv.name for lv in session.document.plan.levels] == ["L3", "L4"]
    assert "L4 is cut by the edge of the image: its inferior endplate is not measured" in panel.warnings.text()
    assert session.document.plan.level_by_name("L4").landmarks.inferior_endplate_lps is None
    panel.close()


def test_hint_from_a_point_and_never_from_the_crosshair(qtbot, modic_session):
    panel, messages = _panel(qtbot, modic_session)
    requested, cancelled = [], []
    panel.hint_requested.connect(requested.append)
    panel.hint_cancelled.connect(lambda: cancelled.append(1))
    qtbot.mouseClick(panel.hint_buttons["S1"], Qt.MouseButton.LeftButton)
    assert panel.pending_hint == "S1" and requested == ["S1"] and "Click inside S1" in panel.hint_label.text()
    assert panel.provide_hint((1.0, 2.0, 3.0))
    assert panel.hints == {"S1": (1.0, 2.0, 3.0)} and panel.pending_hint is None and cancelled == [1]
    # moving the crosshair (Shift+move, or a layout placing it) never sets a hint
    panel.request_hint("L1")
    modic_session.set_cursor((4.0, 5.0, 6.0))
    assert "L1" not in panel.hints and panel.pending_hint == "L1"
    qtbot.keyClick(panel.tree, Qt.Key.Key_Escape)
    assert panel.pending_hint is None and cancelled == [1, 1]
    assert not panel.provide_hint((0.0, 0.0, 0.0))
    qtbot.mouseClick(panel.clear_hints_button, Qt.MouseButton.LeftButton)
    assert panel.hints == {}


def test_mark_s1_and_l1_take_the_next_click_with_the_default_tool(qtbot, tmp_path):
    """Issue 15 item 4: in the window, "Mark S1" then a left click in the sagittal view with the default
    window/level tool sets the mark (and does not window); Esc in a view cancels a mark."""
    from planner.views.app import install_panels
    from tests.views_support import click, key, open_window, sagittal_volume, session_with

    session = session_with(("1.2.3.2", sagittal_volume(desc="SAG T2", uid="1.2.3.2"), "T2"))
    w = open_window(qtbot, session)
    install_panels(w)
    panel = w.panels["Levels"]
    sag = w.views.slice_views["sagittal"]
    assert w.ctx.tool == "window_level"
    wl = sag.window
    qtbot.mouseClick(panel.hint_buttons["S1"], Qt.MouseButton.LeftButton)
    assert "Click inside S1" in w.gesture_label.text() and "Click inside S1" in w.statusBar().currentMessage()
    assert sag.cursor().shape() == Qt.CursorShape.CrossCursor
    pos = (sag.width() * 0.5, sag.height() * 0.7)
    click(sag, pos)
    expected = sag.model_point(__import__("PySide6.QtCore", fromlist=["QPointF"]).QPointF(*pos))
    assert panel.hints["S1"] == pytest.approx(tuple(expected)) and panel.pending_hint is None
    assert sag.window == wl and w.ctx.point_request is None
    assert not panel.hint_buttons["S1"].isChecked()
    qtbot.mouseClick(panel.hint_buttons["L1"], Qt.MouseButton.LeftButton)
    key(sag, Qt.Key.Key_Escape)
    assert panel.pending_hint is None and w.ctx.point_request is None and "L1" not in panel.hints
    click(sag, pos)  # the tool is back: a click marks nothing
    assert set(panel.hints) == {"S1"}
    w.shutdown()


def test_keyboard_entry_while_scrolling(qtbot, modic_session):
    panel, _ = _panel(qtbot, modic_session)
    doc = modic_session.document
    panel.tree.setFocus()
    l4, l5 = doc.plan.levels
    panel.select(l4.id)
    qtbot.keyClick(panel.tree, Qt.Key.Key_Down)  # first endplate of L4
    assert panel.selected_endplate() == (l4.id, "superior")
    qtbot.keyClick(panel.tree, Qt.Key.Key_Down)
    assert panel.selected_endplate() == (l4.id, "inferior")
    qtbot.keyClick(panel.tree, Qt.Key.Key_1)
    qtbot.keyClick(panel.tree, Qt.Key.Key_B)
    f = doc.plan.level(l4.id).inferior
    assert f.modic_type == "1" and f.grade == "B" and f.confirmed
    qtbot.keyClick(panel.tree, Qt.Key.Key_P)
    qtbot.keyClick(panel.tree, Qt.Key.Key_T)
    assert doc.plan.level(l4.id).painful and doc.plan.level(l4.id).treat
    qtbot.keyClick(panel.tree, Qt.Key.Key_Down)  # on to L5 superior
    assert panel.selected_endplate() == (l5.id, "superior")
    qtbot.keyClick(panel.tree, Qt.Key.Key_4)
    assert doc.plan.level(l5.id).superior.modic_type == "1/2"
    qtbot.keyClick(panel.tree, Qt.Key.Key_0)
    f = doc.plan.level(l5.id).superior
    assert f.modic_type == "none" and f.grade is None
    qtbot.keyClick(panel.tree, Qt.Key.Key_Up)
    assert panel.selected_endplate() == (l4.id, "inferior")
    assert "treat" in panel.tree.topLevelItem(0).text(0)
    # every key press was one undo step
    for _ in range(6):
        doc.undo()
    assert doc.plan.level(l4.id).inferior.modic_type == "none" and not doc.plan.level(l4.id).painful
    assert "0 none" in panel.tree.toolTip() and "A/B/C grade" in panel.tree.toolTip()


def test_level_flags_notes_and_delete_with_the_mouse(qtbot, modic_session):
    panel, _ = _panel(qtbot, modic_session)
    doc = modic_session.document
    l5 = doc.plan.levels[1]
    panel.select(l5.id)
    qtbot.mouseClick(panel.prior, Qt.MouseButton.LeftButton)
    assert doc.plan.level(l5.id).prior_ablation
    panel.notes.setFocus()
    qtbot.keyClicks(panel.notes, "worst on the MRI")
    qtbot.keyClick(panel.notes, Qt.Key.Key_Return)
    assert doc.plan.level(l5.id).notes == "worst on the MRI"
    panel.select(l5.id)
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert [lv.name for lv in doc.plan.levels] == ["L4"] and _item_texts(panel) == ["L4"]
    doc.undo()
    assert [lv.name for lv in doc.plan.levels] == ["L4", "L5"] and len(_item_texts(panel)) == 2


def test_modic_assistant_suggest_then_confirm_or_change(qtbot, modic_session):
    panel, messages = _panel(qtbot, modic_session)
    doc = modic_session.document
    qtbot.mouseClick(panel.assistant_button, Qt.MouseButton.LeftButton)
    assert "suggested Modic change" in messages[-1], messages
    l5 = doc.plan.level_by_name("L5")
    assert l5.superior.suggestion.modic_type == "1" and l5.superior.modic_type == "none"
    panel.select(l5.id, "superior")
    html = panel.suggestion.text()
    assert "Suggested: type 1" in html and "T1 0." in html and "Region" in html
    assert "to confirm" in panel.tree.topLevelItem(1).child(0).text(4)
    qtbot.mouseClick(panel.confirm_button, Qt.MouseButton.LeftButton)
    l5 = doc.plan.level_by_name("L5")
    assert l5.superior.modic_type == "1" and l5.superior.grade == "B" and l5.superior.confirmed
    assert "Confirmed" in panel.status.text()
    # change the inferior finding against the suggestion with the combo
    panel.select(l5.id, "inferior")
    panel.type_combo.setCurrentIndex(2)
    panel.type_combo.activated.emit(2)
    l5 = doc.plan.level_by_name("L5")
    assert l5.inferior.modic_type == "2" and l5.inferior.suggestion.modic_type == "none"
    doc.undo()
    doc.undo()
    assert doc.plan.level_by_name("L5").superior.modic_type == "none"


def test_assistant_needs_t1_and_t2(qtbot):
    session = Session(PlanDocument(Plan(levels=[Level(name="L5", landmarks=_landmarks())]), user="dr"))
    panel, messages = _panel(qtbot, session)
    qtbot.mouseClick(panel.assistant_button, Qt.MouseButton.LeftButton)
    assert "needs a T1" in messages[-1]


def test_closing_is_safe(qtbot, modic_session):
    panel, _ = _panel(qtbot, modic_session)
    panel.close()
    modic_session.document.add_level("S1")  # a late model event reaches no dead widget
    modic_session.set_cursor((1.0, 1.0, 1.0))
    assert modic_session.document.changed.receiver_count == 1  # only the session's results listen


def test_screenshot(qtbot, modic_session, tmp_path):
    panel, _ = _panel(qtbot, modic_session)
    panel.run_assistant()
    panel.select(modic_session.document.plan.levels[1].id, "superior")
    path = tmp_path / "levels_panel.png"
    assert panel.grab().save(str(path))
    assert path.stat().st_size > 1000
    img = panel.grab().toImage()
    assert img.width() > 300 and img.height() > 500
    colors = {img.pixelColor(x, y).name() for x in range(0, img.width(), 25) for y in range(0, img.height(), 25)}
    assert len(colors) > 3
    np.testing.assert_equal(True, True)


@pytest.mark.parametrize("enabled", [False, True])
def test_assistant_runs_after_proposal_only_when_the_setting_is_on(qtbot, modic_session, monkeypatch, enabled):
    import planner.levels as levels_mod

    doc = modic_session.document
    proposal = levels_mod.LevelProposal([lv.model_copy(deep=True) for lv in doc.plan.levels], "MR")
    monkeypatch.setattr(levels_mod, "propose_levels_detailed", lambda *a, **k: proposal)
    doc.set_setting("modic_assistant_enabled", enabled)
    panel, messages = _panel(qtbot, modic_session)
    panel.hints = {"S1": (0.0, 0.0, 0.0), "L1": (0.0, 0.0, 100.0)}
    assert panel.propose()
    has_suggestion = doc.plan.level_by_name("L5").superior.suggestion is not None
    assert has_suggestion is enabled
    assert doc.plan.level_by_name("L5").superior.modic_type == "none"  # never decided for the physician


def test_warnings_and_landmarks_to_place_by_hand_are_shown(qtbot, modic_session, monkeypatch, tmp_path):
    """After a proposal the finder's warnings stand above the list, and a level whose landmark could not be
    measured says which one to place by hand (nothing is filled in from a model)."""
    import planner.levels as levels_mod

    doc = modic_session.document
    levels = [lv.model_copy(deep=True) for lv in doc.plan.levels]
    levels[0] = levels[0].model_copy(update={"landmarks": levels[0].landmarks.model_copy(
        update={"pedicle_right_lps": None})})
    proposal = levels_mod.LevelProposal(levels, "MR", ["the mark named S1 lies in L5 (a disc and a body lie "
                                                       "below it); the likely correction is L5"])
    monkeypatch.setattr(levels_mod, "propose_levels_detailed", lambda *a, **k: proposal)
    panel, messages = _panel(qtbot, modic_session)
    assert not panel.warnings.isVisible()
    assert panel.propose()
    assert panel.warnings.isVisible() and "likely correction is L5" in panel.warnings.text()
    top = panel.tree.topLevelItem(0)
    assert top.text(4) == "not measured: pedicle right; place by hand"
    assert all(panel.tree.topLevelItem(i).text(4) == "" for i in range(1, panel.tree.topLevelItemCount()))
    assert doc.plan.levels[0].landmarks.pedicle_right_lps is None
    panel.select(doc.plan.levels[0].id)
    assert panel.missing.isVisible() and panel.missing.text() == ("Not measured on the image: pedicle right. "
                                                                  "Place by hand.")
    panel.select(doc.plan.levels[1].id)
    assert not panel.missing.isVisible()
    panel.select(doc.plan.levels[0].id)
    path = tmp_path / "levels_panel_warnings.png"
    assert panel.grab().save(str(path))
    import os
    if os.environ.get("BVN_KEEP_SCREENSHOT"):
        panel.grab().save(os.environ["BVN_KEEP_SCREENSHOT"])
    # the next proposal without warnings clears them
    monkeypatch.setattr(levels_mod, "propose_levels_detailed",
                        lambda *a, **k: levels_mod.LevelProposal(levels, "MR", []))
    assert panel.propose()
    assert not panel.warnings.isVisible()


@pytest.mark.parametrize("name", ["VB1_02", "VB1_15"])
def test_levels_proposed_in_the_panel_on_a_real_mri(qtbot, shared_data, name, tmp_path):
    """A physician with a real sagittal MRI marks S1 and L1 and proposes: every level L1-S1 is named right,
    the body centres of L1-L5 lie a median 3 mm or less from the labels' and none more than 6 mm (issue
    10's median and 95th-percentile limits); marking is off in review mode."""
    from planner.imaging import load_path
    from planner.imaging.volume import Volume
    from tests.anatomy_reference import mri_case

    folder = shared_data / "lumbar_mri_vb"
    case = mri_case(folder, name)
    (vol,) = [v for v in load_path(folder / f"{name}_mr.nii.gz").images.values() if isinstance(v, Volume)]
    session = Session(PlanDocument(Plan(), user="dr"))
    session.add_image("mr", vol)
    panel, messages = _panel(qtbot, session)
    panel.hints = {n: tuple(case["bodies"][n].centroid) for n in ("S1", "L1")}
    qtbot.mouseClick(panel.propose_button, Qt.MouseButton.LeftButton)
    found = {lv.name: lv for lv in session.document.plan.levels}
    assert {"L1", "L2", "L3", "L4", "L5", "S1"} <= set(found), messages
    errs = {n: float(np.linalg.norm(np.subtract(found[n].landmarks.body_center_lps, case["bodies"][n].centroid)))
            for n in ("L1", "L2", "L3", "L4", "L5")}
    assert np.median(list(errs.values())) <= 3.0 and max(errs.values()) <= 6.0, errs
    panel.grab().save(str(tmp_path / f"levels-learned-{name}.png"))
    session.document.read_only = True
    panel.refresh()
    assert not panel.propose_button.isEnabled()
    assert not any(b.isEnabled() for b in panel.hint_buttons.values())
    panel.close()
