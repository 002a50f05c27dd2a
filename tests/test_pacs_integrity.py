"""What a department relies on when images come from the PACS (issue 14, issue 16 items 1 and 7), against the
session's Orthanc (tests/orthanc.py): a short series is never reported or kept as complete and resumes to
complete; an object of another patient or study is rejected; Cancel returns within 1 s with a frozen PACS;
compressed images arrive unchanged; the connection test fails when queries would; credentials never
follow a redirect to another server; UIDs from the network never become paths."""

from __future__ import annotations

import http.server
import os
import random
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from planner.imaging import pacs
from planner.imaging.pacs import PacsCancelled, PacsError, dimse
from planner.imaging.pacs.common import display_text, incomplete_folder, uid_component, valid_uid
from planner.imaging.pacs.received import Receiver
from tests.orthanc import dicomweb_node, planner_node, write_series

pytestmark = pytest.mark.pacs

#: "C-GET+getscu": the app's C-GET with DCMTK's getscu as the transfer engine for series of 2 or more images
#: (in use: BULK_MIN_INSTANCES, 40 or more), after the probe of their transfer syntax by pynetdicom.
GETSCU = "C-GET+getscu"
METHODS = ["C-GET", GETSCU, "C-MOVE", "WADO-RS"]


def node_for(orthanc, method):
    if method == "WADO-RS":
        if not orthanc.dicomweb:
            pytest.fail("the Orthanc DICOMweb plugin (Debian package orthanc-dicomweb) is not installed")
        return dicomweb_node(orthanc)
    return planner_node(orthanc, retrieve_method=method_of(method))


def method_of(method):
    """The retrieve method of a test parameter."""
    return "C-GET" if method == GETSCU else method


@pytest.fixture(autouse=True)
def _getscu_for_small_series(request, monkeypatch):
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("method") == GETSCU:
        monkeypatch.setattr(dimse, "BULK_MIN_INSTANCES", 2)
    elif callspec is not None and callspec.params.get("method") == "C-GET":
        monkeypatch.setattr(dimse, "BULK_MIN_INSTANCES", 1 << 30)  # pynetdicom only


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory):
    """One study of patient PT-INT-1: a 12-image MR series and a 3-image MR series."""
    folder = tmp_path_factory.mktemp("integrity")
    uid, big, small = generate_uid(), generate_uid(), generate_uid()
    common = dict(study_uid=uid, patient_name="INTEGRITY^IDA", patient_id="PT-INT-1", study_date="20240601",
                  accession="ACC-INT")
    made = write_series(folder / "a", 12, series_uid=big, series_number=1, **common)
    made.update(write_series(folder / "b", 3, series_uid=small, series_number=2, **common))
    for path, _px in made.values():
        orthanc.upload(path)
    return {"study": uid, "big": big, "small": small, "sops": set(made)}


def _sops(files):
    return {dcmread(str(f), stop_before_pixels=True).SOPInstanceUID for f in files}


# ------------------------------------------------------------------ completeness
@pytest.mark.parametrize("method", METHODS)
def test_a_cut_retrieve_is_incomplete_and_resumes_to_complete(orthanc, study, tmp_path, method, monkeypatch):
    node = node_for(orthanc, method)
    cut = random.Random(method).randint(1, 10)
    cancel = threading.Event()

    def progress(_f, msg):
        if msg.startswith(f"Received {cut} of"):
            cancel.set()

    folder = tmp_path / "in"
    first = pacs.retrieve(node, study["study"], dest_folder=folder, method=method_of(method), progress=progress, cancel=cancel)
    assert first.cancelled and not first.ok and first.incomplete
    have = first.received
    assert cut <= have < 15
    for uid, (got, want) in first.incomplete.items():
        assert got < want == {study["big"]: 12, study["small"]: 3}[uid]
        # nothing of a short series is where an import would look
        assert not (folder / uid).exists()
        assert len(list((incomplete_folder(folder) / uid).glob("*.dcm"))) == got
    assert set(first.incomplete) | set(first.complete) == {study["big"], study["small"]}
    assert "incomplete" in first.summary()

    asked = []
    real = Receiver.accept
    monkeypatch.setattr(Receiver, "accept", lambda self, *a: asked.append(a[3]) or real(self, *a))
    second = pacs.retrieve(node, study["study"], dest_folder=folder, method=method_of(method))
    assert second.ok, second.summary()
    assert second.complete == {study["big"]: 12, study["small"]: 3} and not second.incomplete
    assert _sops(second.files) == study["sops"]
    assert len(asked) == 15 - have  # only what was missing was fetched
    assert not incomplete_folder(folder).exists()


def test_a_lost_series_answer_is_asked_again(orthanc, study, tmp_path, monkeypatch):
    """The series query answered short once (the 'unexpected C-FIND message' case): the study's series
    count says so, the series are asked again, and every series arrives."""
    from planner.imaging.pacs import dimse

    real = dimse._find
    calls = []

    def flaky(node, level, keys, what, max_results, guard=dimse._NO_GUARD):
        out = real(node, level, keys, what, max_results, guard)
        if level == "SERIES":
            calls.append(len(out))
            if len(calls) == 1:
                del out[0]
        return out

    monkeypatch.setattr(dimse, "_find", flaky)
    result = pacs.retrieve(planner_node(orthanc), study["study"], dest_folder=tmp_path / "x")
    assert calls[:2] == [2, 2]
    assert result.ok and set(result.complete) == {study["big"], study["small"]}


@pytest.mark.parametrize("method", ["C-GET", GETSCU, "C-MOVE"])
def test_a_series_the_pacs_sends_short_is_never_complete(orthanc, study, tmp_path, method, monkeypatch):
    dropped = []
    real = Receiver.accept

    def lossy(self, *a):  # two objects always lost on the way (acknowledged, never stored)
        if a[2] == study["big"] and (a[3] in dropped or len(dropped) < 2):
            dropped.append(a[3]) if a[3] not in dropped else None
            return True
        return real(self, *a)

    monkeypatch.setattr(Receiver, "accept", lossy)
    result = pacs.retrieve(planner_node(orthanc), study["study"], dest_folder=tmp_path / "s", method=method_of(method))
    assert result.incomplete == {study["big"]: (10, 12)} and not result.ok
    assert result.complete == {study["small"]: 3}
    assert {f.parent.name for f in result.files} == {study["small"]}


# ------------------------------------------------------------------ one patient per retrieve
@pytest.mark.parametrize("method", METHODS)
def test_an_object_of_another_patient_is_rejected_and_reported(orthanc, tmp_path, method):
    uid, series = generate_uid(), generate_uid()
    common = dict(study_uid=uid, series_uid=series, study_date="20240602", accession="ACC-MIX")
    made = write_series(tmp_path / "a", 3, patient_name="MIX^ANNA", patient_id=f"PT-MIX-A-{method}", **common)
    stranger = write_series(tmp_path / "b", 1, patient_name="MIX^BERT", patient_id=f"PT-MIX-B-{method}",
                            series_number=1, **common)
    for path, _px in list(made.values()) + list(stranger.values()):
        orthanc.upload(path)
    node = node_for(orthanc, method)
    [match] = pacs.find_studies(node, patient_id=f"PT-MIX-A-{method}")
    refused = pacs.retrieve(node, uid, dest_folder=tmp_path / "none", method=method_of(method))
    assert refused.received == 0 and "under 2 different patients" in refused.summary()
    result = pacs.retrieve(node, uid, dest_folder=tmp_path / "in", method=method_of(method), patient_id=match.patient_id)
    received = [dcmread(str(f), stop_before_pixels=True) for f in result.files]
    assert {ds.PatientID for ds in received} <= {match.patient_id}
    assert not result.ok and result.rejected >= 1, result.summary()
    assert any("another patient" in p for p in result.problems), result.problems
    assert not any(Path(f).stem in stranger for f in (tmp_path / "in").rglob("*.dcm"))


# ------------------------------------------------------------------ cancel with a frozen PACS
@pytest.fixture
def frozen(orthanc):
    """Stops the Orthanc process (SIGSTOP) on request and always lets it go on (SIGCONT) afterwards."""
    pid = orthanc.proc.pid

    def freeze():
        os.kill(pid, signal.SIGSTOP)

    yield freeze
    os.kill(pid, signal.SIGCONT)


def _cancel_after(seconds: float) -> threading.Event:
    cancel = threading.Event()
    threading.Timer(seconds, cancel.set).start()
    return cancel


@pytest.mark.parametrize("method", METHODS)
def test_cancel_returns_within_a_second_with_a_frozen_pacs(orthanc, study, tmp_path, frozen, method):
    node = node_for(orthanc, method)
    # during a query
    frozen()
    cancel = _cancel_after(0.5)
    t0 = time.monotonic()
    with pytest.raises(PacsCancelled):
        pacs.find_studies(node, patient_id="PT-INT-1", cancel=cancel)
    assert time.monotonic() - t0 - 0.5 < 1.0
    os.kill(orthanc.proc.pid, signal.SIGCONT)
    # during a retrieve: freeze after the first images arrived
    cancel = threading.Event()
    froze = []

    # getscu: when pynetdicom has brought the probe and the small series (4 images) and before getscu takes
    # the rest. Freezing at one of getscu's own files came too late on a loaded machine: the progress of
    # its files is seen after it wrote them, and it had all 11 before the 6th was seen (the retrieve then
    # ended complete, with nothing left to cancel). A frozen PACS is then met by the C-GET's last response
    # or by getscu's association, and either must be cancelled within the second.
    at = "Received 4 of" if method == GETSCU else "Received 2 of"

    def progress(_f, msg):
        if msg.startswith(at) and not froze:
            frozen()
            froze.append(time.monotonic())
            threading.Timer(0.5, cancel.set).start()

    result = pacs.retrieve(node, study["study"], dest_folder=tmp_path / "f", method=method_of(method), progress=progress,
                           cancel=cancel)
    assert froze and result.cancelled and not result.ok
    assert time.monotonic() - froze[0] - 0.5 < 1.0


# ------------------------------------------------------------------ compressed images arrive unchanged
SYNTAXES = {"explicit_le": "1.2.840.10008.1.2.1", "deflate": "1.2.840.10008.1.2.1.99", "rle": "1.2.840.10008.1.2.5", "jpeg2000": "1.2.840.10008.1.2.4.90",
            "jpeg_ls": "1.2.840.10008.1.2.4.80", "jpeg_baseline": "1.2.840.10008.1.2.4.50"}


@pytest.fixture(scope="module")
def compressed(orthanc, tmp_path_factory):
    """One study with a 4-image series in each of the five compressed syntaxes of the import tests, and one
    uncompressed 4-image series."""
    from planner.imaging.synthetic import write_series as synthetic_series

    folder = tmp_path_factory.mktemp("compressed")
    study_uid = generate_uid()
    originals = {}
    for n, (name, ts) in enumerate(sorted(SYNTAXES.items()), start=1):
        extra = {"PatientID": "PT-TS", "PatientName": "SYNTAX^TEST"}
        kw = {"bits_stored": 8, "rescale": (1.0, 0.0)} if name == "jpeg_baseline" else {}
        paths = synthetic_series(folder / name, n=4, transfer_syntax=ts, study_uid=study_uid, series_number=n,
                                 extra=extra, **kw)
        for p in paths:
            ds = dcmread(str(p))
            originals[str(ds.SOPInstanceUID)] = (ts, bytes(ds.PixelData))
            orthanc.upload(p)
    return study_uid, originals


@pytest.mark.parametrize("method", METHODS)
def test_compressed_syntaxes_arrive_unchanged(orthanc, compressed, tmp_path, method):
    study_uid, originals = compressed
    result = pacs.retrieve(node_for(orthanc, method), study_uid, dest_folder=tmp_path / "ts", method=method_of(method))
    assert result.ok, result.summary()
    got = {}
    for f in result.files:
        ds = dcmread(str(f))
        got[str(ds.SOPInstanceUID)] = (str(ds.file_meta.TransferSyntaxUID), bytes(ds.PixelData))
    assert got.keys() == originals.keys()
    for sop, (ts, pixels) in originals.items():
        assert got[sop][0] == ts, f"{sop} arrived as {got[sop][0]}, stored as {ts}"
        assert got[sop][1] == pixels


def test_getscu_carries_the_large_uncompressed_series_only(orthanc, compressed, tmp_path, monkeypatch):
    """The default C-GET hands a large series to DCMTK's getscu only when the probe saw it arrive
    uncompressed; compressed series, TLS nodes and the 'pynetdicom' engine stay with pynetdicom; a missing
    getscu is an error that names the package."""
    from planner.imaging.pacs import dcmtk

    study_uid, originals = compressed
    monkeypatch.setattr(dimse, "BULK_MIN_INSTANCES", 3)
    used, taken = [], []
    real_fetch, real_take = dcmtk.fetch_series, dcmtk._take
    monkeypatch.setattr(dcmtk, "fetch_series", lambda node, st, series, *a: used.append(series) or
                        real_fetch(node, st, series, *a))
    monkeypatch.setattr(dcmtk, "_take", lambda rec, staging, sop: taken.append(sop) or real_take(rec, staging, sop))
    result = pacs.retrieve(planner_node(orthanc), study_uid, dest_folder=tmp_path / "a")
    assert result.ok and len(result.files) == len(originals), result.summary()
    assert len(taken) == 4  # getscu delivered the whole uncompressed series (the probe's images again)
    plain = {str(dcmread(str(f), stop_before_pixels=True).SeriesInstanceUID) for f in result.files
             if str(dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID) == SYNTAXES["explicit_le"]}
    assert len(plain) == 1 and used == sorted(plain)
    used.clear()
    result = pacs.retrieve(planner_node(orthanc, retrieve_engine="pynetdicom"), study_uid, dest_folder=tmp_path / "b")
    assert result.ok and not used
    assert dcmtk.available(planner_node(orthanc, tls=True)) == "the node uses DICOM TLS"
    monkeypatch.setattr(dcmtk, "GETSCU", "getscu-not-installed")
    with pytest.raises(PacsError, match="Debian package 'dcmtk'"):
        pacs.retrieve(planner_node(orthanc), study_uid, dest_folder=tmp_path / "c")


# ------------------------------------------------------------------ an honest connection test
def test_connection_test_fails_when_queries_are_refused(orthanc):
    with pytest.raises(PacsError, match="answers the C-ECHO but not a query") as exc:
        pacs.echo(planner_node(orthanc, calling_ae="STRANGER"))
    assert "'STRANGER'" in str(exc.value)


def test_connection_test_names_a_wrong_dicomweb_path(orthanc):
    node = dicomweb_node(orthanc, dicomweb_url=orthanc.base_url + "/not-dicom-web")
    with pytest.raises(PacsError, match="has no DICOMweb service at this address .HTTP 404"):
        pacs.echo(node)


# ------------------------------------------------------------------ network hygiene
class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []
    location = ""

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).seen.append((self.server.server_address[1], self.headers.get("Authorization")))
        if type(self).location and self.server.server_address[1] == type(self).redirecting_port:
            self.send_response(302)
            self.send_header("Location", type(self).location)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        body = b"[]"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def two_servers():
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    _Recorder.seen = []
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_the_password_never_follows_a_redirect_to_another_server(two_servers):
    a, b = two_servers
    _Recorder.redirecting_port = a
    _Recorder.location = f"http://127.0.0.1:{b}/dicom-web/studies"
    node = pacs.PacsNode(name="WEB", protocol=pacs.DICOMWEB, dicomweb_url=f"http://127.0.0.1:{a}/dicom-web",
                         username="u", password="secret", allow_http_password=True)
    with pytest.raises(PacsError, match="redirected the QIDO-RS query to another server"):
        pacs.find_studies(node)
    assert [port for port, _auth in _Recorder.seen] == [a]  # the other server never got a request
    # a redirect within the same server is followed, with the credentials
    _Recorder.seen = []
    _Recorder.location = f"http://127.0.0.1:{a}/elsewhere"
    _Recorder.redirecting_port = -1
    assert pacs.find_studies(node) == []
    assert _Recorder.seen and all(auth for _port, auth in _Recorder.seen)


def test_a_password_needs_https_unless_allowed_for_loopback():
    web = pacs.PacsNode(name="W", protocol=pacs.DICOMWEB, dicomweb_url="http://pacs.example.org/dicom-web",
                        username="u", password="p")
    assert "only sent over https" in " ".join(web.problems())
    web.allow_http_password = True
    assert "only allowed to a PACS on this computer" in " ".join(web.problems())
    web.dicomweb_url = "http://127.0.0.1:8042/dicom-web"
    assert web.problems() == []
    web.dicomweb_url = "https://pacs.example.org/dicom-web"
    web.allow_http_password = False
    assert web.problems() == []
    with pytest.raises(PacsError, match="only sent over https"):
        pacs.echo(pacs.PacsNode(name="W", protocol=pacs.DICOMWEB, dicomweb_url="http://h/dicom-web",
                                username="u", password="p"))


@pytest.mark.parametrize("bad", ["..", "../../etc", "1.2/../3", "1.02.3", "", "1." * 40 + "1", "1.2.3\x00"])
def test_invalid_uids_never_become_paths(tmp_path, bad):
    assert not valid_uid(bad)
    with pytest.raises(PacsError, match="invalid"):
        uid_component(bad)
    with pytest.raises(PacsError, match="not a valid DICOM UID"):
        pacs.retrieve(pacs.PacsNode(name="P", ae_title="P", host="h"), "1.2.3", [bad], dest_folder=tmp_path / "x")
    receiver = Receiver(tmp_path / "r", "1.2.3", [bad], patient_id=None)
    assert not receiver.accept("", "1.2.3", bad, "1.2.3.4", b"x")
    assert not receiver.accept("", "1.2.3", bad, bad, b"x")
    assert list(tmp_path.rglob("*.dcm")) == [] and not (tmp_path.parent / "etc").exists()


def test_query_answers_are_sanitised_for_display():
    from pydicom.dataset import Dataset

    from planner.imaging.pacs.common import _study_from

    import warnings

    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    with warnings.catch_warnings():  # pydicom warns about the over-long name: that is the point here
        warnings.simplefilter("ignore", UserWarning)
        ds.PatientName = "EVIL\x1b[31m^NAME" + "X" * 1_000_000
    ds.StudyDescription = "line\nbreak\ttab\x07"
    ds.NumberOfStudyRelatedInstances = "-5"
    ds.NumberOfStudyRelatedSeries = "3"
    s = _study_from(ds)
    assert len(s.patient_name) <= 128 and "\x1b" not in s.patient_name and s.patient_name.startswith("EVIL[31m^NAME")
    assert s.description == "line break tab"
    assert s.n_instances is None and s.n_series == 3
    assert display_text("a\x00b", 10) == "ab"


def test_retrieved_files_are_private(orthanc, study, tmp_path):
    result = pacs.retrieve(planner_node(orthanc), study["study"], [study["small"]], dest_folder=tmp_path / "p")
    assert result.ok
    assert stat.S_IMODE(os.stat(result.folder).st_mode) == 0o700
    for f in result.files:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(f.parent).st_mode) == 0o700


def test_the_move_receiver_listens_on_loopback_by_default(orthanc, study, tmp_path, monkeypatch):
    from pynetdicom import AE

    bound = []
    real = AE.start_server

    def spy(self, address, *a, **k):
        bound.append(address)
        return real(self, address, *a, **k)

    monkeypatch.setattr(AE, "start_server", spy)
    node = planner_node(orthanc, retrieve_method="C-MOVE")
    assert node.local_bind == pacs.PacsNode().local_bind == "127.0.0.1"
    assert pacs.retrieve(node, study["study"], [study["small"]], dest_folder=tmp_path / "m").ok
    assert bound == [("127.0.0.1", node.local_port)]


def test_a_wado_reply_over_the_size_cap_is_stopped(orthanc, study, tmp_path, monkeypatch):
    """The cap (the node's largest object) is applied while the reply streams in; here a cap of 1 kB."""
    import planner.imaging.pacs.dicomweb as web

    monkeypatch.setattr(web, "object_limit", lambda node: 1024)
    result = pacs.retrieve(dicomweb_node(orthanc), study["study"], [study["small"]], dest_folder=tmp_path / "cap")
    assert not result.ok and result.incomplete == {study["small"]: (0, 3)}
    assert any("sent more than 0 MB for one object of the WADO-RS retrieve; it was stopped" in p
               for p in result.problems), result.problems


@pytest.mark.parametrize("method", ["C-GET", "WADO-RS"])
def test_cancel_of_a_send_returns_within_a_second_with_a_frozen_pacs(orthanc, tmp_path, frozen, method):
    made = write_series(tmp_path / "send", 2, study_uid=generate_uid(), series_uid=generate_uid(),
                        patient_name="SEND^FROZEN", patient_id="PT-SEND", study_date="20240603", accession="ACC-S")
    node = node_for(orthanc, method)
    frozen()
    cancel = _cancel_after(0.5)
    t0 = time.monotonic()
    result = pacs.store(node, [p for p, _ in made.values()], cancel=cancel)
    assert result.cancelled and not result.ok
    assert time.monotonic() - t0 - 0.5 < 1.0


@pytest.mark.filterwarnings("ignore:Expected explicit VR")  # some bundled files declare the wrong VR encoding
def test_the_raw_header_scan_agrees_with_pydicom():
    """The checked values (patient, study, series, instance) read from the raw bytes of the files getscu
    writes equal pydicom's partial parse, for every bundled pydicom test file the scan takes; the others
    are read by pydicom (header_of)."""
    import pydicom
    from pydicom.filereader import read_partial

    from planner.imaging.pacs import dcmtk

    taken = 0
    for path in sorted((Path(pydicom.__file__).parent / "data" / "test_files").rglob("*.dcm")):
        try:
            with open(path, "rb") as fh:
                ds = read_partial(fh, stop_when=dcmtk._past_checked_tags)
        except Exception:  # files pydicom itself cannot read are not what a PACS sends
            continue
        expected = (str(ds.get("PatientID", "") or "").strip(), str(ds.get("StudyInstanceUID", "") or ""),
                    str(ds.get("SeriesInstanceUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""))
        scanned = dcmtk._scan_prefix(path.read_bytes()[:dcmtk.HEADER_PREFIX])
        assert scanned in (None, expected), path.name
        taken += scanned is not None
        assert dcmtk.header_of(path) == expected, path.name
    assert taken >= 30
