"""The smaller things a physician notices (issue 15 item 9), in the real window: an RF-only file opens
where it is shown; a NIfTI CT without a modality tag reads as CT (windows, 3D presets, said in the
window); the W/L presets button with the CT presets; the 3D toolbar is never clipped at 1280x800;
corner texts keep clear of the orientation letters; selecting a trajectory in a view selects it in the
list."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter

from planner.session import Session
from tests.views_support import click, open_window

pytestmark = pytest.mark.gui


def _import(qtbot, w, path) -> None:
    with qtbot.waitSignal(w.images_imported, timeout=60000):
        w.import_paths([str(path)], show_dialog=False)


def test_a_fluoroscopy_only_file_opens_in_the_fluoroscopy_layout(qtbot, shared_data):
    w = open_window(qtbot, Session(), size=(1280, 800))
    assert w.views.current == "planning"
    _import(qtbot, w, shared_data / "orthanc_spine_dicom" / "KarstenHilbertRF.dcm")
    assert w.views.current == "fluoro" and w.actions["view.layout_fluoro"].isChecked()
    assert w.views.fluoro_panels["AP"].view.has_image()
    w.shutdown()


def test_a_nifti_ct_without_modality_reads_as_ct(qtbot, shared_data):
    """No modality tag: the intensity range (air at about -1000) makes it a CT: CT bone window, CT 3D
    presets and CT window presets, and the window says why."""
    from planner.views.app import install_panels

    w = open_window(qtbot, Session(), size=(1280, 800))
    install_panels(w)
    _import(qtbot, w, shared_data / "totalseg_example" / "example_ct_sm.nii.gz")
    (key,) = list(w.session.images)
    assert w.session.images[key].info.modality == ""
    sag = w.views.slice_views["sagittal"]
    assert (sag.window.center, sag.window.width) == (480.0, 2500.0)  # the CT bone window
    assert "CT (by intensity range)" in [t for t, _ in sag.corner_texts()["top_right"][1:2]][0]
    row = w.panels["Series"].tree.topLevelItem(0).child(0).child(0)
    assert row.text(1) == "CT (by intensity range)" and "air" in row.toolTip(1)
    assert w.session.document.plan.case.series[0].role == "CT"
    vv = w.views.ensure_volume_view()
    assert [vv.preset_combo.itemText(i) for i in range(vv.preset_combo.count())] == ["CT: bone", "CT: soft tissue"]
    # the W/L presets button of the toolbar: the focused view's presets, CT bone and soft tissue among them
    sag.setFocus()
    w._fill_wl_menu()
    names = [a.text() for a in w.wl_menu.actions()]
    assert any(n.startswith("CT soft tissue (W 400 L 40)") for n in names)
    soft = next(a for a in w.wl_menu.actions() if a.text().startswith("CT soft tissue"))
    soft.trigger()
    assert (sag.window.center, sag.window.width) == (40.0, 400.0)
    w.shutdown()


def test_the_3d_toolbar_is_never_clipped(qtbot, demo_study):
    from planner.views.app import install_panels, open_demo

    session = Session()
    open_demo(session, demo_study.folder)
    for size in ((1280, 800), (1600, 1000)):
        w = open_window(qtbot, session, size=size)
        install_panels(w)
        vv = w.views.ensure_volume_view()
        qtbot.waitUntil(vv.isVisible, timeout=5000)
        qtbot.wait(50)
        bar = vv.toolbar
        for wd in [*vv.buttons.values(), vv.volume_check, vv.slices_check, vv.preset_combo]:
            assert wd.isVisible() and wd.width() >= wd.sizeHint().width(), (size, wd)
            geo = wd.geometry()
            assert geo.right() <= bar.width() and geo.bottom() <= bar.height(), (size, wd)
        w.shutdown()


def _text_boxes(view):
    """(letter boxes, corner text boxes) as the view draws them."""
    letters, corners = [], []
    img = QImage(max(1, view.width()), max(1, view.height()), QImage.Format.Format_ARGB32)
    p = QPainter(img)

    def record(painter, pos, text, color, font=None):
        painter.setFont(font or view._font)
        box = QRectF(painter.fontMetrics().boundingRect(text)).translated(pos)
        (letters if font is view._letter_font else corners).append((text, box))

    view.draw_text = record
    try:
        view._paint_letters(p)
        view._paint_corners(p)
    finally:
        p.end()
        del view.draw_text
    return letters, corners


def test_corner_texts_keep_clear_of_the_orientation_letters(qtbot, demo_study):
    from planner.views.app import install_panels, open_demo

    session = Session()
    open_demo(session, demo_study.folder)
    for size in ((1280, 800), (1600, 1000), (1000, 700)):
        w = open_window(qtbot, session, size=size)
        install_panels(w)
        qtbot.wait(50)
        checked = 0
        for view in w.views.slice_views.values():
            letters, corners = _text_boxes(view)
            assert letters and corners
            for lt, lbox in letters:
                for ct, cbox in corners:
                    assert not lbox.intersects(cbox), (size, view.title, lt, ct)
            checked += 1
        assert checked == 3
        w.shutdown()


def test_a_trajectory_selected_in_a_view_is_selected_in_the_list(qtbot, demo_study):
    from planner.views.app import install_panels, open_demo

    session = Session()
    open_demo(session, demo_study.folder)
    w = open_window(qtbot, session, size=(1600, 1000))
    install_panels(w)
    panel = w.panels["Trajectories"]
    plan = session.document.plan
    assert len(panel.rows()) >= len(plan.trajectories) >= 2
    first, second = plan.trajectories[0], plan.trajectories[1]
    panel.select(first.id)  # chosen in the list: the views go to its target
    assert session.active_trajectory == first.id
    np.testing.assert_allclose(session.cursor_lps, first.target_lps)
    # a click on the other trajectory's target handle in the sagittal view (any tool) selects it
    sag = w.views.slice_views["sagittal"]
    session.set_cursor(second.target_lps, sag.frame_of_reference_uid)
    sag.repaint()
    h = next(h for h in sag.current_handles() if h.kind == "trajectory" and h.key == (second.id, "target"))
    before = np.asarray(second.target_lps)
    cursor = session.cursor_lps
    click(sag, h.widget_xy)
    assert session.active_trajectory == second.id and panel.selected_trajectory().id == second.id
    np.testing.assert_allclose(session.cursor_lps, cursor)  # a click in a view does not move the views
    np.testing.assert_allclose(session.document.plan.trajectory(second.id).target_lps, before)  # not moved
    w.shutdown()
