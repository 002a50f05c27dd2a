"""The PACS dialogs driven with pytest-qt against the local Orthanc: configure a node and test it,
search, list series, retrieve the ticked series off the GUI thread (progress, cancel), errors shown
as messages, and sending exports."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from PySide6.QtCore import Qt

from planner.imaging import pacs
from tests.orthanc import free_port, planner_node, write_series

pytestmark = [pytest.mark.gui, pytest.mark.pacs]

WAIT_MS = 90000  # above the node's retrieve timeout, so a failure shows the dialog's message


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory):
    """One study with a 4-slice MR series and a 12-slice MR series, uploaded through REST."""
    orthanc.clear()
    folder = tmp_path_factory.mktemp("dlg-src")
    uid, small, big = generate_uid(), generate_uid(), generate_uid()
    common = dict(study_uid=uid, patient_name="DIALOG^CAROL", patient_id="PT-0100", study_date="20240510",
                  accession="ACC-100")
    made = write_series(folder / "a", 4, series_uid=small, series_number=1, description="T1 SAG", **common)
    made_big = write_series(folder / "b", 12, series_uid=big, series_number=2, description="T2 SAG", **common)
    for path, _px in list(made.values()) + list(made_big.values()):
        orthanc.upload(path)
    return {"study": uid, "small": small, "big": big, "pixels": {**made, **made_big}}


@pytest.fixture
def dialog(qtbot, tmp_path):
    from planner.views.pacs_dialog import PacsDialog

    def make():
        dlg = PacsDialog(cache_folder=tmp_path / "cache")
        qtbot.addWidget(dlg)
        dlg.show()
        qtbot.waitExposed(dlg)
        return dlg

    return make


def _search(qtbot, dlg, **fields):
    for name, text in fields.items():
        getattr(dlg, name).setText(text)
    with qtbot.waitSignal(dlg.searched, timeout=WAIT_MS) as found:
        qtbot.mouseClick(dlg.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dlg.busy(), timeout=WAIT_MS)  # one study: its series are listed at once
    return found.args[0]


def test_configure_a_node_and_test_the_connection(qtbot, orthanc, dialog):
    dlg = dialog()
    assert "No PACS is configured" in dlg.message.text()
    assert not dlg.search_button.isEnabled()
    editor = dlg.node_editor
    dlg.tabs.setCurrentWidget(editor)
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    for widget, text in ((editor.name_edit, "Test Orthanc"), (editor.ae_edit, orthanc.aet),
                         (editor.host_edit, "127.0.0.1"), (editor.calling_edit, orthanc.planner_aet)):
        widget.selectAll()
        qtbot.keyClicks(widget, text)
    editor.port_spin.setValue(orthanc.dicom_port)
    with qtbot.waitSignal(editor.tested, timeout=WAIT_MS) as tested:
        qtbot.mouseClick(editor.test_button, Qt.MouseButton.LeftButton)
    assert tested.args[2] == ""
    assert editor.status.text().startswith(f"PACS Test Orthanc at 127.0.0.1:{orthanc.dicom_port} answered in")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    [saved] = pacs.load_nodes()
    assert (saved.name, saved.ae_title, saved.port, saved.calling_ae) == ("Test Orthanc", orthanc.aet,
                                                                          orthanc.dicom_port, orthanc.planner_aet)
    # the search tab now offers it
    assert dlg.node_combo.currentText() == "Test Orthanc" and dlg.search_button.isEnabled()
    # a wrong port: the message names the node and the problem
    port = free_port()
    editor.port_spin.setValue(port)
    with qtbot.waitSignal(editor.tested, timeout=WAIT_MS):
        qtbot.mouseClick(editor.test_button, Qt.MouseButton.LeftButton)
    assert editor.status.text().startswith(f"PACS Test Orthanc at 127.0.0.1:{port} refused the connection")
    # an invalid AE title is not saved
    editor.calling_edit.selectAll()
    qtbot.keyClicks(editor.calling_edit, "BAD\\AE")
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    assert "Not saved" in editor.status.text() and "'BAD\\AE' is not valid" in editor.status.text()
    assert pacs.load_nodes()[0].port == orthanc.dicom_port


def test_search_list_series_and_retrieve_the_ticked_ones(qtbot, orthanc, study, dialog, tmp_path):
    pacs.save_nodes([planner_node(orthanc)])
    dlg = dialog()
    with qtbot.waitSignal(dlg.series_listed, timeout=WAIT_MS) as listed:
        assert _search(qtbot, dlg, patient_id_edit="PT-0100") == 1
    assert dlg.study_table.rowCount() == 1
    assert dlg.study_table.item(0, 0).text() == "DIALOG, CAROL" and dlg.study_table.item(0, 3).text() == "2024-05-10"
    assert listed.args[0] == 2 and dlg.series_table.item(1, 3).text() == "T2 SAG"
    assert dlg.retrieve_button.isEnabled()
    dlg.set_series_checked(study["big"], False)
    assert [s.series_uid for s in dlg.checked_series()] == [study["small"]]
    got = []
    dlg.retrieved.connect(got.append)
    qtbot.mouseClick(dlg.retrieve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dlg.busy(), timeout=WAIT_MS)
    assert len(got) == 1, dlg.message.text()  # on failure, say what the dialog told the user
    folder = Path(got[0])
    assert folder.parent == tmp_path / "cache"
    files = sorted(folder.rglob("*.dcm"))
    assert len(files) == 4 and {dcmread(str(f)).SeriesInstanceUID for f in files} == {study["small"]}
    assert dlg.progress.value() == 1000 and dlg.message.text().startswith("Received 4 of 4 image(s)")
    assert dlg.search_button.isEnabled() and not dlg.cancel_button.isEnabled()
    # the next retrieve goes to a new folder, so importing it brings only what was asked for
    with qtbot.waitSignal(dlg.retrieved, timeout=WAIT_MS) as again:
        dlg.retrieve()
    assert Path(again.args[0]) != folder


def test_search_filters_and_empty_results(qtbot, orthanc, study, dialog):
    pacs.save_nodes([planner_node(orthanc)])
    dlg = dialog()
    assert _search(qtbot, dlg, patient_name_edit="dialog", date_edit="20240501-20240531") == 1
    assert _search(qtbot, dlg, patient_name_edit="", date_edit="", patient_id_edit="nobody") == 0
    assert dlg.message.text() == "No study matches the search."
    dlg.date_edit.setText("last tuesday")
    qtbot.mouseClick(dlg.search_button, Qt.MouseButton.LeftButton)
    assert "'last tuesday' is not a date" in dlg.message.text()
    dlg.date_preset.setCurrentIndex(2)  # last 7 days
    assert len(dlg.date_edit.text()) == 17


def test_cancel_a_retrieve(qtbot, orthanc, study, dialog, monkeypatch):
    pacs.save_nodes([planner_node(orthanc)])
    real_accept = pacs.received.Receiver.accept

    def slow_accept(self, *args):  # a slow network: 0.1 s per image, so Cancel comes mid-way
        time.sleep(0.1)
        return real_accept(self, *args)

    monkeypatch.setattr(pacs.received.Receiver, "accept", slow_accept)
    dlg = dialog()
    with qtbot.waitSignal(dlg.series_listed, timeout=WAIT_MS):
        _search(qtbot, dlg, patient_id_edit="PT-0100")
    dlg.set_series_checked(study["small"], False)
    emitted = []
    dlg.retrieved.connect(emitted.append)
    with qtbot.waitSignal(dlg.retrieve_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(dlg.retrieve_button, Qt.MouseButton.LeftButton)
        assert dlg.cancel_button.isEnabled() and not dlg.search_button.isEnabled()
        qtbot.waitUntil(lambda: dlg.progress.value() > 0, timeout=WAIT_MS)
        qtbot.mouseClick(dlg.cancel_button, Qt.MouseButton.LeftButton)
    result = finished.args[0]
    assert result.cancelled and result.received < 12
    assert "(cancelled)" in dlg.message.text() and not emitted  # nothing is imported after a cancel


def test_errors_are_messages_not_tracebacks(qtbot, orthanc, dialog):
    pacs.save_nodes([planner_node(orthanc, calling_ae="STRANGER")])
    dlg = dialog()
    assert _search(qtbot, dlg, patient_id_edit="PT-0100") == 0
    text = dlg.message.text()
    assert text.startswith(f"PACS ORTHANC at 127.0.0.1:{orthanc.dicom_port} aborted the association")
    assert "Traceback" not in text and "c62828" in dlg.message.styleSheet()
    assert dlg.search_button.isEnabled()


def test_closing_while_a_query_waits_is_safe(qtbot, orthanc, dialog):
    """A PACS that accepts connections and never answers: closing waits for the (short) timeout, no crash."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []
    threading.Thread(target=lambda: conns.append(srv.accept()[0]), daemon=True).start()
    try:
        pacs.save_nodes([planner_node(orthanc, port=srv.getsockname()[1], timeout_s=1.0)])
        dlg = dialog()
        dlg.patient_id_edit.setText("x")
        call = dlg.search()
        assert call is not None and dlg.busy()
        dlg.close()
        assert call.done or not call.is_running()
    finally:
        srv.close()
        for c in conns:
            c.close()


def test_send_to_pacs_dialog(qtbot, orthanc, tmp_path):
    from planner.views.pacs_dialog import SendToPacsDialog

    pacs.save_nodes([planner_node(orthanc)])
    study = generate_uid()
    made = write_series(tmp_path / "exp", 2, study_uid=study, series_uid=generate_uid(), patient_name="SEND^DAN",
                        patient_id="PT-0200", study_date="20240601", accession="ACC-200")
    dlg = SendToPacsDialog([p for p, _ in made.values()])
    qtbot.addWidget(dlg)
    dlg.show()
    with qtbot.waitSignal(dlg.sent, timeout=WAIT_MS) as sent:
        qtbot.mouseClick(dlg.send_button, Qt.MouseButton.LeftButton)
    assert sent.args[0].ok and len(sent.args[0].sent) == 2
    assert dlg.message.text().startswith("Sent 2 file(s) to PACS ORTHANC")
    assert dlg.cancel_button.text() == "Close" and not dlg.send_button.isEnabled()
    assert [s.n_instances for s in pacs.find_studies(planner_node(orthanc), study_uid=study)] == [2]


def test_send_to_pacs_without_a_configured_node(qtbot, monkeypatch, tmp_path):
    from planner.views import pacs_dialog

    shown = []
    monkeypatch.setattr(pacs_dialog.QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    assert pacs_dialog.send_to_pacs(None, [tmp_path / "x.dcm"]) is None
    assert "No PACS is configured" in shown[0]


def test_a_short_series_is_offered_as_incomplete_and_retry_completes_it(qtbot, orthanc, study, dialog, monkeypatch,
                                                                         tmp_path):
    from planner.imaging.pacs.received import Receiver

    pacs.save_nodes([planner_node(orthanc)])
    dlg = dialog()
    with qtbot.waitSignal(dlg.series_listed, timeout=WAIT_MS):
        _search(qtbot, dlg, patient_id_edit="PT-0100")
    real = Receiver.accept
    lost = []

    def lossy(self, *a):  # the network loses two images of the 12-image series
        if a[2] == study["big"] and len(lost) < 2:
            lost.append(a[3])
            return True
        return real(self, *a)

    monkeypatch.setattr(Receiver, "accept", lossy)
    imported = []
    dlg.retrieved.connect(imported.append)
    with qtbot.waitSignal(dlg.retrieve_finished, timeout=WAIT_MS) as first:
        qtbot.mouseClick(dlg.retrieve_button, Qt.MouseButton.LeftButton)
    result = first.args[0]
    assert result.incomplete == {study["big"]: (10, 12)}
    assert dlg.incomplete_box.isVisible() and "T2 SAG (10 of 12)" in dlg.incomplete_label.text()
    # only the complete series is handed to the import
    assert [Path(f) for f in imported] == [result.folder]
    assert {p.name for p in result.folder.iterdir()} == {study["small"]}
    dlg.grab().save(str(tmp_path / "pacs-incomplete.png"))
    monkeypatch.setattr(Receiver, "accept", real)
    with qtbot.waitSignal(dlg.retrieve_finished, timeout=WAIT_MS) as second:
        qtbot.mouseClick(dlg.retry_button, Qt.MouseButton.LeftButton)
    assert second.args[0].ok and second.args[0].complete == {study["big"]: 12}
    assert not dlg.incomplete_box.isVisible()
    assert len(list((result.folder / study["big"]).glob("*.dcm"))) == 12


def test_the_plans_of_a_study_are_listed_and_one_opens(qtbot, orthanc, study, dialog, tmp_path):
    from pydicom import dcmread as read

    from planner.export.dicom import encapsulated_pdf, reference_dataset
    from planner.export.sr import build_plan_sr, import_plan_from_sr
    from tests.report_support import rich_plan

    plan = rich_plan()
    plan.case.study_instance_uid = study["study"]
    plan.case.patient_id = "PT-0100"
    plan.case.patient_name = "DIALOG^CAROL"
    ref = reference_dataset(plan, [], study["study"])
    pdf = encapsulated_pdf(b"%PDF-1.4\n%%EOF\n", ref, series_uid=generate_uid(), sop_uid=generate_uid(), title="x")
    sr = build_plan_sr(plan, [pdf], for_uid=generate_uid(), series_instance_uid=generate_uid(),
                       sop_instance_uid=generate_uid(), series_number=9903, manufacturer="BVN Planner")
    sr.save_as(str(tmp_path / "sr.dcm"), enforce_file_format=True)
    assert pacs.store(planner_node(orthanc), [tmp_path / "sr.dcm"]).ok
    pacs.save_nodes([planner_node(orthanc)])
    dlg = dialog()
    with qtbot.waitSignal(dlg.plans_listed, timeout=WAIT_MS) as listed:
        _search(qtbot, dlg, patient_id_edit="PT-0100")
    assert listed.args[0] == 1 and dlg.plan_list.count() == 1 and dlg.open_plan_button.isEnabled()
    dlg.grab().save(str(tmp_path / "pacs-plans.png"))
    with qtbot.waitSignal(dlg.plan_retrieved, timeout=WAIT_MS) as opened:
        qtbot.mouseClick(dlg.open_plan_button, Qt.MouseButton.LeftButton)
    path = Path(opened.args[0])
    assert read(str(path)).SOPInstanceUID == sr.SOPInstanceUID
    assert import_plan_from_sr(path).model_dump(mode="json") == plan.model_dump(mode="json")
    # the study's plan series is listed as a plan, and its series is still a series of the study
    assert any(s.modality == "SR" for s in dlg.series)


def test_closing_during_a_retrieve_from_a_frozen_pacs_does_not_block(qtbot, orthanc, study, dialog):
    import os
    import signal

    pacs.save_nodes([planner_node(orthanc)])
    dlg = dialog()
    with qtbot.waitSignal(dlg.series_listed, timeout=WAIT_MS):
        _search(qtbot, dlg, patient_id_edit="PT-0100")
    os.kill(orthanc.proc.pid, signal.SIGSTOP)
    try:
        call = dlg.retrieve()
        assert call is not None
        qtbot.wait(300)
        t0 = time.monotonic()
        dlg.close()
        assert time.monotonic() - t0 < 1.6 and call.done or not call.is_running()
    finally:
        os.kill(orthanc.proc.pid, signal.SIGCONT)


def test_node_settings_for_an_administrator(qtbot, orthanc, dialog, tmp_path):
    from planner.imaging.pacs.cache import CacheSettings, cache_root

    pacs.save_nodes([planner_node(orthanc)])
    dlg = dialog()
    editor = dlg.node_editor
    dlg.tabs.setCurrentWidget(editor)
    assert editor.cache_label.text() == str(cache_root())
    assert "Passwords are kept in" in editor.password_store_label.text()
    editor.retrieve_timeout_spin.setValue(120.0)
    editor.pdu_spin.setValue(131072)
    editor.engine_combo.setCurrentText("pynetdicom")
    editor.tls_check.setChecked(True)
    editor.ca_edit.setText(str(tmp_path / "missing-ca.pem"))
    editor._form_changed()
    editor.retention_spin.setValue(3.0)
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    assert "Not saved" in editor.status.text() and "missing-ca.pem does not exist" in editor.status.text()
    editor.ca_edit.setText("")
    editor._form_changed()
    qtbot.mouseClick(editor.save_button, Qt.MouseButton.LeftButton)
    [saved] = pacs.load_nodes()
    assert (saved.retrieve_timeout_s, saved.max_pdu, saved.retrieve_engine, saved.tls) == (120.0, 131072, "pynetdicom",
                                                                                          True)
    assert CacheSettings.load().retention_days == 3.0
    dlg.resize(1100, 900)
    dlg.grab().save(str(tmp_path / "pacs-nodes.png"))
