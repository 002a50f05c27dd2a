"""The export actions of the real main window on the demo case: the plan summary from the button is
the same document as from the command line, the patient sheet in both languages, the DICOM export
(read back: the structured report gives the plan again), a failing check without a reason blocks
every export, cancel leaves nothing, and the planning settings dialog edits the plan with undo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from tests.views_support import open_window, session_with, wait_plan_images

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]
WAIT_MS = 120000


class ScriptedExportPrompter:
    """Answers the export questions (file names, language, send to PACS) without modal dialogs."""

    def __init__(self, path=None, folder=None, lang="en", send=False):
        self.path, self.folder, self.lang, self.send = path, folder, lang, send
        self.warnings: list[tuple[str, str]] = []
        self.asked: list[str] = []

    def ask_save_file(self, title, suggestion, filters):
        self.asked.append(suggestion)
        return self.path

    def ask_folder(self, title, start):
        return self.folder

    def ask_language(self, current):
        return self.lang

    def warn(self, title, text):
        self.warnings.append((title, text))

    def offer_send(self, text):
        self.asked.append(text)
        return self.send


@pytest.fixture
def demo_window(qtbot, demo_study):
    from planner.views.app import install_panels

    w = open_window(qtbot, session_with())
    assert w.files.open_plan(str(demo_study.plan_path), images_folder=str(demo_study.folder))
    wait_plan_images(qtbot, w)
    install_panels(w)
    yield w
    w.exports.shutdown()


def _pdf_text(path: Path) -> tuple[int, str]:
    reader = PdfReader(str(path))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    # the generation time is the only thing allowed to differ between two runs
    return len(reader.pages), re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d( \w+)?", "<time>", text)


def _export(qtbot, w, action: str, prompter) -> tuple[str, str]:
    w.exports.prompter = prompter
    with qtbot.waitSignal(w.exports.finished, timeout=WAIT_MS) as done:
        w.actions[action].trigger()
    return done.args[1], done.args[2]


def test_plan_summary_button_gives_the_same_document_as_the_command_line(qtbot, demo_window, demo_study, tmp_path):
    w = demo_window
    out = tmp_path / "summary.pdf"
    path, status = _export(qtbot, w, "file.export_report", ScriptedExportPrompter(path=str(out)))
    assert (path, status) == (str(out), "ok")
    assert w.exports.progress is None and "Wrote the plan summary" in w.statusBar().currentMessage()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.pdf"]  # no temporary file left
    cli_out = tmp_path / "cli.pdf"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "report", str(demo_study.plan_path), "-o",
                           str(cli_out), "--images", str(demo_study.folder)], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=300)
    assert proc.returncode == 0, proc.stderr
    pages, text = _pdf_text(out)
    assert (pages, text) == _pdf_text(cli_out)
    plan = w.session.document.plan
    for traj in plan.trajectories:
        assert f"{plan.level(traj.level_id).name} {traj.side}" in text
    assert "planning aid" in text.lower()
    # the next export suggests the folder used last
    w.exports.prompter = ScriptedExportPrompter(path=None)
    w.actions["file.export_report"].trigger()
    assert Path(w.exports.prompter.asked[0]).parent == tmp_path


def test_patient_sheet_in_english_and_spanish(qtbot, demo_window, tmp_path):
    w = demo_window
    plan = w.session.document.plan
    family = plan.case.patient_name.split("^")[0]
    treated = sorted(lv.name for lv in plan.levels if lv.treat)
    for lang, suffix, word in (("en", ".pdf", "back pain"), ("es", ".html", "dolor")):
        out = tmp_path / f"sheet-{lang}{suffix}"
        path, status = _export(qtbot, w, "file.export_sheet", ScriptedExportPrompter(path=str(out), lang=lang))
        assert (path, status) == (str(out), "ok")
        text = _pdf_text(out)[1] if suffix == ".pdf" else re.sub(r"<[^>]+>", " ", out.read_text(encoding="utf-8"))
        assert family.lower() in text.lower() and word in text.lower()
        assert all(name in text for name in treated)
    assert "reading grade" in w.statusBar().currentMessage() or lang == "es"


def test_dicom_export_reads_back_to_the_plan_and_offers_the_pacs(qtbot, demo_window, tmp_path):
    import pydicom

    from planner.export import import_plan_from_sr

    w = demo_window
    prompter = ScriptedExportPrompter(folder=str(tmp_path), send=False)
    path, status = _export(qtbot, w, "file.export_dicom", prompter)
    assert status == "ok"
    folder = Path(path)
    assert folder.parent == tmp_path and folder.name.endswith("-dicom")
    assert "Send them to the PACS now?" in prompter.asked[-1]
    result = w.exports.last_dicom_result
    plan = w.session.document.plan
    back = import_plan_from_sr(result.sr_file)
    assert back.content_hash() == plan.content_hash()
    pdf = pydicom.dcmread(result.pdf_dicom)
    assert pdf.StudyInstanceUID == plan.case.study_instance_uid and pdf.PatientID == plan.case.patient_id
    assert len(result.key_image_files) >= 2 * len(plan.trajectories)
    # a second export into the same parent folder gets a new folder instead of failing
    path2, status2 = _export(qtbot, w, "file.export_dicom", ScriptedExportPrompter(folder=str(tmp_path)))
    assert status2 == "ok" and Path(path2) != folder
    # the teaching export holds no patient name or ID in any file
    path3, status3 = _export(qtbot, w, "file.export_teaching", ScriptedExportPrompter(folder=str(tmp_path)))
    assert status3 == "ok" and "burned into image pixels" in w.exports.prompter.warnings[-1][1]
    secrets = [plan.case.patient_name.encode(), plan.case.patient_id.encode(), plan.case.patient_birth_date.encode()]
    assert all(secrets) and b"^" in secrets[0]
    for f in Path(path3).rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(s in data for s in secrets), f


def test_failing_check_without_reason_blocks_exports_and_cancel_leaves_nothing(qtbot, demo_window, tmp_path):
    from planner.trajectory import vertebra_frame

    w = demo_window
    doc = w.session.document
    traj = doc.plan.trajectories[0]
    level = doc.plan.level(traj.level_id)
    f = vertebra_frame(level)
    target = np.asarray(traj.target_lps)
    doc.set_trajectory_point(traj.id, "target", target - (f.wall_depth_mm(target) - 1.0) * f.u)  # into the canal
    out = tmp_path / "summary.pdf"
    for action in ("file.export_report", "file.export_dicom"):
        prompter = ScriptedExportPrompter(path=str(out), folder=str(tmp_path))
        path, status = _export(qtbot, w, action, prompter)
        assert (path, status) == ("", "blocked")
        assert f"{level.name} {traj.side}" in prompter.warnings[-1][1] and "reason" in prompter.warnings[-1][1]
    assert list(tmp_path.iterdir()) == []
    assert w.docks["Trajectories"].isVisible()
    # with a recorded reason the export goes ahead and shows the failure and the reason
    doc.set_trajectory_fields(traj.id, override_reason="accepted after review with the attending")
    path, status = _export(qtbot, w, "file.export_report", ScriptedExportPrompter(path=str(out)))
    assert status == "ok"
    text = _pdf_text(out)[1]
    assert "accepted after review with the attending" in text and "FAIL" in text.upper()
    # cancel: nothing is written, the window says so
    out.unlink()
    w.exports.prompter = ScriptedExportPrompter(folder=str(tmp_path))
    with qtbot.waitSignal(w.exports.finished, timeout=WAIT_MS) as done:
        call = w.exports.export_dicom()
        assert call is not None and w.exports.busy()
        w.exports.cancel()
    assert done.args[1] == "" and "cancelled" in done.args[2]
    assert list(tmp_path.iterdir()) == []
    assert "cancelled" in w.statusBar().currentMessage()


def test_key_images_render_one_at_a_time_between_events_and_cancel_stops_them(qtbot, demo_window, tmp_path):
    """Issue 15 item 8: the 3D key images render on the GUI thread one trajectory per event-loop turn,
    with progress; the window handles events between them (a timer fires, the plan can be edited) and
    Cancel between two of them writes nothing. The summary still carries every 3D key image."""
    from PySide6.QtCore import QTimer

    w = demo_window
    exp = w.exports
    n = len(w.session.document.plan.trajectories)
    assert n >= 2
    labels, stages, ticks = [], [], []
    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(lambda: (ticks.append(exp.stage), stages.append(exp.stage) if not stages or
                                   stages[-1] != exp.stage else None))
    timer.start()
    def export_until_a_3d_key_image(path, then):
        """Export the summary to ``path``; once a 3D key image is rendering, call ``then()``."""
        exp.prompter = ScriptedExportPrompter(path=str(path))
        with qtbot.waitSignal(exp.finished, timeout=WAIT_MS) as done:
            exp.export_report()
            qtbot.waitUntil(lambda: exp.progress is not None and "3D key image of" in exp.progress.labelText(),
                            timeout=WAIT_MS)
            assert exp.stage == "render"
            then()
        return done.args

    out = tmp_path / "summary.pdf"
    args = export_until_a_3d_key_image(out, lambda: labels.append(exp.progress.labelText()))
    assert args[2] == "ok" and out.is_file()
    assert stages[:3] == ["prepare", "render", "write"]
    assert ticks.count("render") >= n  # the event loop turned between the 3D key images
    assert "(1 of" in labels[0] or "(2 of" in labels[0]
    from planner.report import build_report_data

    data = build_report_data(w.session.document.plan, w.session.images, with_3d=False)
    text = _pdf_text(out)[1]
    assert text.count("3D") >= n and all(t.title in text for t in data.trajectories)
    # Cancel between two 3D key images (the dialog's Cancel button): nothing written, the window says so
    from PySide6.QtWidgets import QPushButton

    out2 = tmp_path / "cancelled.pdf"
    args = export_until_a_3d_key_image(out2, lambda: exp.progress.findChild(QPushButton).click())
    assert args[1] == "" and "cancelled" in args[2]
    assert not out2.exists() and not exp.busy() and exp.progress is None
    timer.stop()


def test_settings_dialog_edits_the_plan_with_undo_and_names_bad_values(qtbot, demo_window):
    w = demo_window
    doc = w.session.document
    before = doc.plan.settings.canal_margin_mm
    dlg = w.show_settings()
    qtbot.waitExposed(dlg)
    row = dlg.row_of("canal_margin_mm")
    assert "Huang" in dlg.table.item(row, 4).text() or dlg.table.item(row, 4).text()
    assert dlg.table.item(row, 2).text() == "mm"
    dlg.set_text("canal_margin_mm", "-3")
    dlg.accept()
    assert "Not applied" in dlg.message.text() and "canal" in dlg.message.text().lower()
    assert doc.plan.settings.canal_margin_mm == before
    dlg.set_text("canal_margin_mm", "12")
    dlg.set_text("treatable_levels", '["L4", "L5"]')
    dlg.set_text("payer_profile", "none")
    dlg.accept()
    s = doc.plan.settings
    assert (s.canal_margin_mm, s.treatable_levels, s.payer_profile) == (12.0, ["L4", "L5"], "none")
    w.actions["edit.undo"].trigger()  # one undo step for the whole dialog
    assert doc.plan.settings.canal_margin_mm == before and doc.plan.settings.payer_profile == "medicare"
    # a read-only (review) plan shows the settings without editing
    doc.read_only = True
    ro = w.show_settings()
    assert ro.read_only and not (ro.table.item(row, 1).flags() & ro.table.item(row, 1).flags().ItemIsEditable)
    ro.close()
