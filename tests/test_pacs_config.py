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
