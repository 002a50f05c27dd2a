"""PACS node settings and query helpers (no PACS needed)."""

from __future__ import annotations

import json
import os
import stat
from datetime import date

import pytest

from planner.imaging import pacs
from planner.imaging.pacs import DICOMWEB, PacsError, PacsNode


def test_nodes_round_trip_in_the_users_data_folder(_isolated_home):
    assert pacs.load_nodes() == []
    nodes = [PacsNode(name="Main PACS", ae_title="MAINPACS", host="pacs.local", port=11112, calling_ae="BVN1",
                      retrieve_method="C-MOVE", local_port=11113),
             PacsNode(name="Cloud", protocol=DICOMWEB, dicomweb_url="https://pacs.example.org/dicom-web",
                      username="u", password="p")]
    path = pacs.save_nodes(nodes)
    assert path == _isolated_home / "pacs-nodes.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # may hold a password
    assert pacs.load_nodes() == nodes


def test_damaged_or_foreign_settings_do_not_break_loading(_isolated_home):
    path = pacs.nodes_path()
    path.write_text("{not json")
    assert pacs.load_nodes() == []
    path.write_text(json.dumps({"nodes": [{"name": "X", "ae_title": "X", "host": "h", "port": "4242",
                                           "unknown_future_field": 1}, "junk"]}))
    [node] = pacs.load_nodes()
    assert node.port == 4242 and node.calling_ae == "BVNPLANNER"


def test_configuration_problems_are_named():
    ok = PacsNode(name="P", ae_title="PACS", host="h", port=104)
    assert ok.problems() == []
    assert ok.label == "PACS P at h:104"
    bad = PacsNode(ae_title="", host="", port=70000, calling_ae="THIS-IS-TOO-LONG-AE")
    text = " ".join(bad.problems())
    assert "PACS AE title is empty" in text and "host is empty" in text and "70000" in text
    assert "calling AE title 'THIS-IS-TOO-LONG-AE' is not valid" in text
    assert "Unknown retrieve engine 'fast' (use auto or pynetdicom)" in " ".join(
        PacsNode(name="P", ae_title="PACS", host="h", retrieve_engine="fast").problems())
    web = PacsNode(name="W", protocol=DICOMWEB, dicomweb_url="pacs.example.org")
    assert "must start with http" in web.problems()[0]
    creds = PacsNode(name="W", protocol=DICOMWEB, dicomweb_url="https://user:secret@pacs.example.org/dicom-web")
    assert "secret" not in creds.label


@pytest.mark.parametrize("value, expected", [
    ("20240102", "20240102"), ("2024-01-02", "20240102"), ("20240101-20240131", "20240101-20240131"),
    ("2024-01-01-2024-01-31", "20240101-20240131"), ("-20240131", "-20240131"), ("20240101-", "20240101-"),
    (date(2024, 1, 2), "20240102"), ((date(2024, 1, 1), None), "20240101-"), (None, ""), ("", ""),
])
def test_date_range(value, expected):
    assert pacs.date_range(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "20241301", "20240131-20240101", "2024"])
def test_bad_dates_are_refused_with_a_message(value):
    with pytest.raises(PacsError, match=f"'{value}'"):
        pacs.date_range(value)


def test_name_pattern():
    assert pacs.name_pattern("SMITH") == "SMITH*"
    assert pacs.name_pattern(" Smith, John ") == "Smith^John*"
    assert pacs.name_pattern("SM?TH*") == "SM?TH*"
    assert pacs.name_pattern("") == ""


def test_multipart_parts_and_query_string():
    body = (b"--b1\r\nContent-Type: application/dicom\r\n\r\n" + b"\0" * 128 + b"DICMone\r\n"
            b"--b1\r\nContent-Type: application/dicom\r\n\r\ntwo\r\n--b1--\r\n")
    parts = pacs.dicomweb._multipart_parts('multipart/related; type="application/dicom"; boundary=b1', body)
    assert parts == [b"\0" * 128 + b"DICMone", b"two"]
    q = pacs.dicomweb._query_string({"PatientName": "SMITH^J*", "includefield": ["A", "B"], "empty": "", "x": "a b&c"})
    assert q == "PatientName=SMITH^J*&includefield=A&includefield=B&x=a%20b%26c"


# ------------------------------------------------------------------ administration
def test_passwords_never_go_into_the_node_list(_isolated_home):
    from planner.imaging.pacs import passwords

    node = PacsNode(name="Cloud", protocol=DICOMWEB, dicomweb_url="https://pacs.example.org/dicom-web",
                    username="u", password="s3cret-pw")
    path = pacs.save_nodes([node])
    assert "s3cret-pw" not in path.read_text()
    assert "system keyring" in passwords.store_name() or "private file" in passwords.store_name()
    if "private file" in passwords.store_name():  # no keyring on this machine: a 0600 file in a 0700 folder
        assert stat.S_IMODE(os.stat(passwords.secrets_path()).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(passwords.secrets_path().parent).st_mode) == 0o700
    assert pacs.load_nodes()[0].password == "s3cret-pw"
    node.password = ""
    pacs.save_nodes([node])
    assert pacs.load_nodes()[0].password == ""


def test_site_nodes_with_user_overrides(_isolated_home, tmp_path, monkeypatch):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"nodes": [{"name": "Main PACS", "ae_title": "MAIN", "host": "pacs.hospital",
                                           "port": 104, "calling_ae": "SITEAE"}]}))
    monkeypatch.setenv("BVN_PACS_SITE_NODES", str(site))
    [main] = pacs.load_nodes()
    assert (main.origin, main.host, main.calling_ae) == ("site", "pacs.hospital", "SITEAE")
    main.calling_ae = "MYDESK"  # this workstation's own AE title
    mine = PacsNode(name="Mine", ae_title="X", host="h")
    pacs.save_nodes([main, mine])
    saved = json.loads(pacs.nodes_path().read_text())["nodes"]
    assert saved[0] == {"name": "Main PACS", "calling_ae": "MYDESK"}  # only what the user changed
    # the administrator moves the PACS: the user's override of the AE title stays, the new host applies
    site.write_text(json.dumps({"nodes": [{"name": "Main PACS", "ae_title": "MAIN", "host": "new.hospital",
                                           "port": 11112, "calling_ae": "SITEAE"}]}))
    main2, mine2 = pacs.load_nodes()
    assert (main2.host, main2.port, main2.calling_ae) == ("new.hospital", 11112, "MYDESK")
    assert mine2 == mine and mine2.origin == "user"


def test_the_send_queue_survives_a_restart_and_retries(_isolated_home, tmp_path):
    from planner.imaging.pacs import send_queue

    f = tmp_path / "a.dcm"
    f.write_bytes(b"not really dicom")
    down = PacsNode(name="Down", ae_title="X", host="127.0.0.1", port=1, timeout_s=1.0)
    job = send_queue.enqueue(down, [f])
    f.unlink()  # the export folder may go away: the queue has its own copy
    assert stat.S_IMODE(os.stat(job.folder).st_mode) == 0o700
    lines = send_queue.process([down], now=1e12)
    assert "stay in the send queue" in lines[0]
    [again] = send_queue.load_jobs()  # read from disk, as after a restart
    assert again.id == job.id and again.attempts == 1 and again.next_try > 1e12 and again.last_error
    assert send_queue.process([down], now=1e12) == []  # not due yet
    assert "No PACS named 'Down'" in send_queue.process([], now=2e12)[0]


def test_cache_retention_and_size_limit(_isolated_home, tmp_path):
    from planner.imaging.pacs.cache import CacheSettings, cache_root, clean_cache, new_cache_folder

    old = new_cache_folder()
    (old / "1.2.3").mkdir(parents=True)
    (old / "1.2.3" / "x.dcm").write_bytes(b"x" * 1000)
    os.utime(old, (0, 0))
    new = new_cache_folder()
    (new / "1.2.4").mkdir(parents=True)
    (new / "1.2.4" / "y.dcm").write_bytes(b"y" * 1000)
    assert old.parent == cache_root() and stat.S_IMODE(os.stat(cache_root()).st_mode) == 0o700
    assert clean_cache(CacheSettings(retention_days=14, max_gb=1)) == [old]
    assert clean_cache(CacheSettings(retention_days=0, max_gb=500 / (1 << 30)), keep=[new]) == []
    assert clean_cache(CacheSettings(retention_days=0, max_gb=500 / (1 << 30))) == [new]


@pytest.mark.parametrize("chunk", [1, 7, 64, 100000])
def test_streamed_multipart_parts_whatever_the_chunking(chunk):
    from planner.imaging.pacs import dicomweb

    parts = [b"\0" * 128 + b"DICM" + bytes(range(256)) * 3, b"\r\n--not-the-boundary\r\n", b""]
    body = b"preamble\r\n" + b"".join(b"--bnd\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                                      for p in parts) + b"--bnd--\r\n"

    class Rsp:
        def getheader(self, name, default=""):
            return 'multipart/related; type="application/dicom"; boundary=bnd'

    class Client:
        node = PacsNode(max_object_mb=1)

        def chunks(self, rsp, what):
            for i in range(0, len(body), chunk):
                yield body[i:i + chunk]

    assert list(dicomweb._stream_parts(Client(), Rsp(), "WADO-RS retrieve")) == parts
    assert dicomweb._multipart_parts(Rsp().getheader(""), body) == parts


def test_the_send_queue_command(_isolated_home, tmp_path, capsys):
    from planner.cli import run_command
    from planner.imaging.pacs import send_queue

    assert run_command(["pacs-queue"]) == 0 and "empty" in capsys.readouterr().out
    f = tmp_path / "a.dcm"
    f.write_bytes(b"x")
    send_queue.enqueue(PacsNode(name="Gone", ae_title="X", host="h"), [f])
    assert run_command(["pacs-queue", "--send", "--all"]) == 1
    out = capsys.readouterr().out
    assert "No PACS named 'Gone'" in out and "Gone: 1 file(s), 1 attempt(s)" in out
