"""The axial T2 reading where the product shows Modic suggestions (the levels panel), driven in the real
widget: measured and labelled as a second reading, or "not measured" with the reason; never a number
that was not measured."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from planner.plan import SeriesRef
from tests.test_levels_panel import _panel, modic_session  # noqa: F401 (a fixture)
from tests.test_modic import FULL_ZONE_SHARE, _axial_t2

pytestmark = pytest.mark.gui


def test_panel_shows_the_axial_reading_measured_or_not(qtbot, modic_session):  # noqa: F811
    session = modic_session  # type 1 under all of L5's superior endplate; L4 lies outside the images
    axial = _axial_t2({"T2": session.volume_by_role("T2")})
    session.add_image("1.2.99", axial)
    session.document.set_case(series=[*session.document.plan.case.series,
                                      SeriesRef(series_instance_uid="1.2.99", role="AX_T2", modality="MR")])
    panel, messages = _panel(qtbot, session)
    panel.resize(520, 1100)  # the whole explanation in the screenshot
    qtbot.mouseClick(panel.assistant_button, Qt.MouseButton.LeftButton)
    assert "suggested Modic change" in messages[-1], messages
    assert messages[-1].endswith("Not read (decide from the images): L4 superior (L4 lies outside the T1 series); "
                                 "L4 inferior (L4 lies outside the T1 series)"), messages
    l5 = session.document.plan.level_by_name("L5")
    sup = l5.superior.suggestion
    assert sup.modic_type == "1" and "AX_T2" in sup.images
    assert abs(sup.axial_share_pct - FULL_ZONE_SHARE) <= 5, sup.explanation
    panel.select(l5.id, "superior")
    label = panel.suggestion
    assert "Axial T2 (second reading, measured" in label.text()
    assert f"shows over {sup.axial_share_pct:.0f}%" in label.text()
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))  # laid out: all of it shows
    if os.environ.get("BVN_KEEP_SCREENSHOT"):
        panel.grab().save(os.environ["BVN_KEEP_SCREENSHOT"])
    panel.select(l5.id, "inferior")
    assert l5.inferior.suggestion.modic_type == "none" and l5.inferior.suggestion.axial_share_pct is None
    assert "Axial T2 (second reading): not measured (no change found on the sagittal images)" in label.text()
