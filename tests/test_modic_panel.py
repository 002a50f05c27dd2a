"""The axial T2 reading where the product shows Modic suggestions (the levels panel), driven in the real
widget: measured and labelled as a second reading, or "not measured" with the reason; never a number
that was not measured."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from planner.document import PlanDocument
from planner.plan import Level, Plan, SeriesRef
from planner.session import Session
from tests.test_levels_panel import _panel
from tests.test_modic import _axial_t2, _landmarks, phantom

pytestmark = pytest.mark.gui


def _session(zones):
    vols = phantom(zones)
    vols["AX_T2"] = _axial_t2(vols)
    session = Session(PlanDocument(Plan(levels=[Level(name="L5", landmarks=_landmarks())]), user="dr"))
    refs = []
    for role, vol in vols.items():
        uid = f"1.2.{len(refs) + 1}"
        session.add_image(uid, vol)
        refs.append(SeriesRef(series_instance_uid=uid, role=role, modality="MR"))
    session.document.set_case(series=refs)
    return session


def test_panel_shows_the_axial_reading_measured_or_not(qtbot, tmp_path):
    session = _session([("superior", "1", 9.0, 0.5), ("inferior", "2", 8.0, 1.0)])
    panel, messages = _panel(qtbot, session)
    panel.resize(520, 1100)  # the whole explanation in the screenshot
    qtbot.mouseClick(panel.assistant_button, Qt.MouseButton.LeftButton)
    assert "suggested Modic change" in messages[-1], messages
    l5 = session.document.plan.level_by_name("L5")
    sup = l5.superior.suggestion
    assert sup.modic_type == "1" and sup.axial_share_pct is not None and "AX_T2" in sup.images
    panel.select(l5.id, "superior")
    html = panel.suggestion.text()
    assert "Axial T2 (second reading, measured" in html and f"shows over {sup.axial_share_pct:.0f}%" in html
    label = panel.suggestion
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))  # laid out: all of it shows
    path = tmp_path / "modic_axial.png"
    assert panel.grab().save(str(path)) and path.stat().st_size > 1000
    if os.environ.get("BVN_KEEP_SCREENSHOT"):
        panel.grab().save(os.environ["BVN_KEEP_SCREENSHOT"])
    panel.select(l5.id, "inferior")
    html = panel.suggestion.text()
    assert l5.inferior.suggestion.modic_type == "2" and l5.inferior.suggestion.axial_share_pct is None
    assert "Axial T2 (second reading): not measured (the change does not show on T2" in html
