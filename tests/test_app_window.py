"""The main window: actions, layouts and maximise, remembered state, panels, title, undo texts,
shortcuts dialog, drag and drop import, the no-traceback error hook and the command line."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLabel, QTextBrowser

from planner.plan import Landmarks
from tests.views_support import key, open_window, sagittal_volume, send_mouse, session_with, wait_plan_images

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]


def _session():
    return session_with(("1.2.3.2", sagittal_volume(desc="SAG T2", uid="1.2.3.2"), "T2"))


def test_menus_hold_the_actions_with_tooltips(qtbot):
    w = open_window(qtbot, _session())
    menus = {a.text().replace("&", ""): a.menu() for a in w.menuBar().actions()}
    assert list(menus) == ["File", "Edit", "View", "Tools", "Plan", "Help"]
    file_menu = [a.objectName() for a in menus["File"].actions() if a.objectName()]
    for name in ("file.export_report", "file.export_sheet", "file.export_dicom", "file.export_teaching",
                 "file.pacs", "file.send_pacs"):
        assert name in file_menu and w.actions[name].isEnabled() and w.actions[name].toolTip(), name
    assert w.actions["file.export_report"].shortcut().toString() == "Ctrl+E"
    assert "edit.preferences" in [a.objectName() for a in menus["Edit"].actions()]
    guide = w.show_user_guide()
    assert "Export" in guide.findChild(QTextBrowser, "userGuide").toPlainText()
    guide.close()
    for name in ("file.open", "file.open_plan", "file.save", "file.save_as", "file.quit", "edit.undo",
                 "view.layout_planning", "tool.window_level", "tool.crosshair", "tool.distance", "tool.angle",
                 "tool.calibrate", "help.shortcuts", "help.about"):
        assert w.actions[name].toolTip(), name
    called = []
    w.bind_action("file.export_report", lambda: called.append(1))
    w.actions["file.export_report"].trigger()
    assert called == [1] and w.actions["file.export_report"].isEnabled()
    assert w.actions["edit.undo"].shortcut().toString() == "Ctrl+Z"


def test_layout_switching_with_shortcuts_and_double_click_maximise(qtbot):
    w = open_window(qtbot, _session())
    assert w.views.current == "planning"
    qtbot.keyClick(w, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert w.views.current == "fluoro" and w.actions["view.layout_fluoro"].isChecked()
    qtbot.keyClick(w, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert w.views.current == "compare"
    w.actions["view.layout_planning"].trigger()
    assert w.views.current == "planning"
    page = w.views.current_page()
    ax = w.views.slice_views["axial"]
    small = ax.width() * ax.height()
    send_mouse(ax, "double", (ax.width() / 2, ax.height() / 2), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ax.width() * ax.height() > 2 * small, timeout=2000)
    assert page.maximized is not None and [c.isVisible() for c in page.cells].count(True) == 1
    assert not w.views.slice_views["sagittal"].isVisible()
    send_mouse(ax, "double", (ax.width() / 2, ax.height() / 2), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.views.slice_views["sagittal"].isVisible(), timeout=2000)
    assert page.maximized is None and all(c.isVisible() for c in page.cells)
    # the keyboard does it for the focused view too
    w.views.slice_views["coronal"].setFocus()
    w.actions["view.maximize"].trigger()
    assert page.maximized is not None and page.maximized.content is w.views.slice_views["coronal"]
    w.actions["view.maximize"].trigger()
    assert page.maximized is None


def test_layout_and_display_state_are_remembered_between_runs(qtbot):
    w = open_window(qtbot, _session())
    w.actions["view.layout_compare"].trigger()
    w.actions["view.annotation_detail"].trigger()  # detail off
    w.actions["view.slice_patient"].trigger()
    w.resize(700, 520)  # within the offscreen platform's screen, so it is restored as is
    assert w.close()
    from planner.views.main_window import MainWindow

    w2 = MainWindow(_session())
    qtbot.addWidget(w2)
    w2.files.prompter = w.files.prompter
    assert w2.views.current == "compare"
    assert w2.ctx.annotation_detail is False and not w2.actions["view.annotation_detail"].isChecked()
    assert w2.ctx.slice_mode == "patient"
    assert (w2.width(), w2.height()) == (700, 520)
    w2.shutdown()


def test_panels_share_one_tabbed_column(qtbot):
    w = open_window(qtbot, _session())
    assert not w.actions["plan.levels"].isEnabled()
    d1 = w.add_panel("Levels", QLabel("levels"))
    d2 = w.add_panel("Review", QLabel("review"))
    qtbot.wait(50)
    assert w.dockWidgetArea(d1) == Qt.DockWidgetArea.RightDockWidgetArea
    assert d2 in w.tabifiedDockWidgets(d1)
    assert w.actions["plan.levels"].isEnabled() and w.actions["plan.review"].isEnabled()
    d2.hide()
    w.actions["plan.review"].trigger()
    assert d2.isVisible()


def test_title_shows_plan_name_dirty_marker_and_undo_texts(qtbot):
    session = _session()
    w = open_window(qtbot, session)
    assert "Untitled plan" in w.windowTitle() and not w.isWindowModified()
    assert not w.actions["edit.undo"].isEnabled()
    session.document.add_level("L4", Landmarks(body_center_lps=(0.0, 0.0, 0.0)))
    assert w.isWindowModified()
    undo_text = w.actions["edit.undo"].text()
    assert w.actions["edit.undo"].isEnabled() and undo_text == f"&Undo {session.document.undo_text}"
    assert session.document.undo_text
    w.actions["edit.undo"].trigger()
    assert not session.document.plan.levels and w.actions["edit.redo"].isEnabled()
    qtbot.keyClick(w, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert len(session.document.plan.levels) == 1


def test_shortcuts_dialog_lists_every_binding(qtbot):
    w = open_window(qtbot, _session())
    dlg = w.show_shortcuts()
    qtbot.addWidget(dlg)
    rows = dlg.rows()
    text = " | ".join(" ".join(r) for r in rows)
    for needle in ("left-drag", "middle-drag", "right-drag", "wheel", "Ctrl+wheel", "Shift+move", "double-click",
                   "PgUp", "Home", "End", "R", "Ctrl+Z", "Ctrl+Y", "Ctrl+1", "Distance", "Calibrate"):
        assert needle in text, needle
    dlg.close()


def test_dropping_a_dicom_folder_imports_it_and_the_views_show_it(qtbot, tmp_path):
    from planner.imaging.synthetic import write_series

    write_series(tmp_path / "series", n=6, rows=32, cols=40)
    w = open_window(qtbot, session_with())
    assert w.views.slice_views["sagittal"].series_key is None
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "series"))])
    with warnings.catch_warnings():  # PySide marks the QPoint constructor deprecated; it is the only one
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(w, enter)
    assert enter.isAccepted()  # the window takes dropped folders
    ev = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(w.images_imported, timeout=20000):
        QApplication.sendEvent(w, ev)
    assert len(w.session.volumes()) == 1
    qtbot.waitUntil(lambda: w.views.slice_views["sagittal"].series_key is not None, timeout=3000)
    assert w.views.slice_views["axial"].has_image()


def test_unexpected_errors_become_a_short_message_not_a_traceback(qtbot, caplog, monkeypatch):
    from planner.views.app import install_excepthook

    w = open_window(qtbot, _session())
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    install_excepthook(lambda: w)
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    assert "Unexpected error (RuntimeError)" in w.statusBar().currentMessage()
    boxes = [b for b in w.findChildren(__import__("PySide6.QtWidgets", fromlist=["QMessageBox"]).QMessageBox)
             if b.isVisible()]
    assert boxes and "Traceback" not in boxes[0].text() and "log file" in boxes[0].text()
    assert any("boom in a slot" in r.getMessage() for r in caplog.records)
    for b in boxes:
        b.close()


def test_status_bar_shows_lps_and_value_under_the_mouse(qtbot):
    w = open_window(qtbot, _session())
    sag = w.views.slice_views["sagittal"]
    pos = (sag.width() / 2 + 13, sag.height() / 2 - 7)
    send_mouse(sag, "move", pos)
    text = w.cursor_label.text()
    p = sag.model_point(QPointF(*pos))
    assert f"LPS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm" in text
    ijk = np.round(sag.volume.world_to_ijk(p)).astype(int)
    assert f"value {float(sag.volume.array[ijk[2], ijk[1], ijk[0]]):g}" in text
    key(sag, Qt.Key.Key_Down)  # slice info follows
    send_mouse(sag, "move", pos)
    assert f"Im {sag.n + 1}/" in w.cursor_label.text()


def _run_main(args, home, timeout=240):
    env = dict(__import__("os").environ, BVN_PLANNER_HOME=str(home))
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


def test_command_line_screenshot_of_a_dicom_folder(tmp_path):
    from PySide6.QtGui import QImage

    from planner.imaging.synthetic import write_series

    write_series(tmp_path / "series", n=8, rows=48, cols=64)
    shot = tmp_path / "shot.png"
    home = tmp_path / "home"
    home.mkdir()
    (home / "gui.ini").write_text("[view]\nlayout=compare\n", encoding="utf-8")
    proc = _run_main([str(tmp_path / "series"), "--screenshot", str(shot), "--size", "1000x700"], home)
    assert proc.returncode == 0, proc.stderr
    # a screenshot neither reads nor writes the user's window settings
    assert (home / "gui.ini").read_text(encoding="utf-8") == "[view]\nlayout=compare\n"
    img = QImage(str(shot))
    assert (img.width(), img.height()) == (1000, 700)
    arr = np.frombuffer(img.convertToFormat(QImage.Format.Format_Grayscale8).constBits(), np.uint8)
    assert arr.max() > 100 and arr.std() > 10


def test_command_line_refuses_bad_input_with_a_message(tmp_path):
    proc = _run_main([str(tmp_path / "missing-folder"), "--screenshot", str(tmp_path / "x.png")], tmp_path / "home")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.bvnplan"
    bad.write_text("{ not json", encoding="utf-8")
    proc = _run_main([str(bad), "--screenshot", str(tmp_path / "x.png")], tmp_path / "home")
    assert proc.returncode == 2 and "bad.bvnplan" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run_main(["--demo", "--screenshot", str(tmp_path / "x.png"), "--size", "huge"], tmp_path / "home")
    assert proc.returncode == 2 and "--size" in proc.stderr


def test_opening_a_plan_finds_its_images_by_uid(qtbot, tmp_path, demo_study):
    """The demo plan opened from the File menu path: its series are found by UID in the images folder."""
    from planner.storage import load_plan

    w = open_window(qtbot, session_with())
    assert w.files.open_plan(str(demo_study.plan_path), images_folder=str(demo_study.folder))
    wait_plan_images(qtbot, w)
    plan = load_plan(str(demo_study.plan_path))
    wanted = {r.series_instance_uid for r in plan.case.series}
    assert wanted and wanted <= set(w.session.images)
    qtbot.waitUntil(lambda: w.views.slice_views["sagittal"].series_key is not None, timeout=3000)
    t2 = next(r.series_instance_uid for r in plan.case.series if r.role == "T2")
    assert w.views.slice_views["sagittal"].series_key == t2
    assert demo_study.plan_path.name in w.windowTitle()
