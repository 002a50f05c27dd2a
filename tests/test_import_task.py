"""The Qt import task: off the GUI thread with progress and Cancel, the report dialog, and
drag-and-drop paths."""

from __future__ import annotations

import time

import pytest

import PySide6  # noqa: F401
from PySide6.QtCore import QMimeData, QTimer, QUrl  # noqa: E402
from PySide6.QtWidgets import QPushButton  # noqa: E402

from planner.imaging import ImportResult  # noqa: E402
from planner.imaging.synthetic import write_series  # noqa: E402
from planner.views.import_task import ImportTask, paths_from_mime, show_import_report  # noqa: E402

pytestmark = pytest.mark.gui


def test_import_runs_off_the_gui_thread_with_progress(qtbot, tmp_path):
    write_series(tmp_path / "ct", n=40, rows=64, cols=64)
    (tmp_path / "notes.txt").write_text("x")
    task = ImportTask(tmp_path, None, min_duration_ms=0)
    progress: list[float] = []
    task.progress.connect(lambda f, m: progress.append(f))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(5)
    with qtbot.waitSignal(task.finished, timeout=60000) as blocker:
        task.start()
        assert task.dialog is not None  # closed only from the GUI thread, after the worker is done
    timer.stop()
    result = blocker.args[0]
    assert isinstance(result, ImportResult) and not result.cancelled
    (vol,) = result.volumes().values()
    assert vol.array.shape == (40, 64, 64)
    assert progress and progress[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in progress)
    assert ticks  # the GUI event loop kept running during the import
    assert task.dialog is None  # closed when done
    assert task.wait(5000)
    assert result.report.reason(str(tmp_path / "notes.txt")).startswith("not a DICOM file")


def test_cancel_stops_promptly_and_returns_what_is_complete(qtbot, tmp_path, monkeypatch):
    write_series(tmp_path / "a", n=5, rows=16, cols=16, series_number=1)
    write_series(tmp_path / "b", n=300, rows=16, cols=16, series_number=2)
    import planner.imaging.importer as importer

    real = importer.read_dicom

    def slow(ref, *args):  # make the header scan slow enough to cancel in the middle
        time.sleep(0.004)
        return real(ref, *args)

    monkeypatch.setattr(importer, "read_dicom", slow)
    task = ImportTask(tmp_path, None, min_duration_ms=0)
    started = []

    def click_cancel(fraction, message):
        if fraction > 0.02 and not started and task.dialog is not None:
            started.append(fraction)
            task.dialog.findChild(QPushButton).click()  # the dialog's Cancel button

    task.progress.connect(click_cancel)
    with qtbot.waitSignal(task.finished, timeout=30000) as blocker:
        task.start()
    result = blocker.args[0]
    assert result.cancelled and result.report.cancelled
    assert started  # cancelled through the dialog's Cancel button signal
    assert len(result.report.files) >= 1
    not_read = [e for e in result.report.skipped_files if "cancelled" in e.reason]
    assert not_read  # files after the cancel are reported, not silently dropped
    assert task.wait(5000)


def test_cancel_during_decoding_returns_no_half_loaded_series(qtbot, tmp_path, monkeypatch):
    write_series(tmp_path, n=200, rows=32, cols=32)
    import planner.imaging.pixels as pixels

    real = pixels._decode_native

    def slow(*a, **k):
        time.sleep(0.01)
        return real(*a, **k)

    monkeypatch.setattr(pixels, "_decode_native", slow)
    task = ImportTask(tmp_path, None, show_dialog=False)
    fired = []

    def maybe_cancel(f, m):
        if "Decoding" in m and not fired:
            fired.append(time.monotonic())
            task.cancel()

    task.progress.connect(maybe_cancel)
    with qtbot.waitSignal(task.finished, timeout=30000) as blocker:
        task.start()
    done = time.monotonic()
    result = blocker.args[0]
    assert fired and done - fired[0] < 2.0  # prompt
    assert result.cancelled and not result.images
    assert any("cancelled while decoding" in n for n in result.report.notes)


def test_report_dialog_lists_files_with_reasons(qtbot, tmp_path):
    write_series(tmp_path, n=3, rows=8, cols=8)
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM")
    from planner.imaging import load_path

    result = load_path(tmp_path)
    dlg = show_import_report(None, result)
    qtbot.addWidget(dlg)
    assert dlg.skipped_only.isChecked() and dlg.table.rowCount() == 1
    assert dlg.table.item(0, 0).text().endswith("broken.dcm")
    assert dlg.table.item(0, 1).text() == "Skipped" and dlg.table.item(0, 2).text()
    dlg.skipped_only.setChecked(False)
    assert dlg.table.rowCount() == 4
    assert "1 skipped" in dlg.summary_label.text()
    dlg.copy_to_clipboard()
    from PySide6.QtGui import QGuiApplication

    assert "broken.dcm" in QGuiApplication.clipboard().text()
    dlg.close()


def test_paths_from_mime(tmp_path):
    a = tmp_path / "study"
    a.mkdir()
    b = tmp_path / "x.dcm"
    b.write_bytes(b"")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(a)), QUrl.fromLocalFile(str(b)), QUrl("https://example.org/x.dcm"),
                  QUrl.fromLocalFile(str(tmp_path / "missing"))])
    assert paths_from_mime(mime) == [a, b]
    text = QMimeData()
    text.setText(f"{a}\n\nfile://{b}\n/nonexistent/path")
    assert paths_from_mime(text) == [a, b]
    assert paths_from_mime(QMimeData()) == [] and paths_from_mime(None) == []


def test_task_survives_when_the_caller_drops_it(qtbot, tmp_path):
    import gc

    write_series(tmp_path, n=20, rows=16, cols=16)
    results = []
    task = ImportTask(tmp_path, None, show_dialog=False)
    task.finished.connect(results.append)
    task.start()
    del task
    gc.collect()
    qtbot.waitUntil(lambda: bool(results), timeout=30000)
    assert results[0].volumes()
