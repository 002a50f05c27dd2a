"""``python main.py inspect PATH [--json]``: output, skip reasons and exit codes, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from planner.imaging.synthetic import write_series

ROOT = Path(__file__).resolve().parents[1]


def run_inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_json_lists_series_and_skip_reasons(tmp_path):
    write_series(tmp_path / "ct", n=6, rows=16, cols=16, description="lumbar ct")
    (tmp_path / "notes.txt").write_text("not an image")
    broken = tmp_path / "ct" / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")
    proc = run_inspect(str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    (s,) = out["series"]
    assert s["description"] == "lumbar ct" and s["modality"] == "CT" and s["size"] == [16, 16, 6]
    assert s["loaded"] and s["kind"] == "volume" and s["transfer_syntaxes"][0].startswith("Explicit VR Little Endian")
    m = np.array(s["ijk_to_lps"])
    assert m.shape == (4, 4) and np.allclose(m[3], [0, 0, 0, 1])
    np.testing.assert_allclose(m[:3, 3], s["origin"])
    np.testing.assert_allclose(np.linalg.norm(m[:3, :3], axis=0), s["spacing"])
    for key in ("study_instance_uid", "series_instance_uid", "frame_of_reference_uid", "warnings", "direction"):
        assert key in s
    reasons = {Path(e["file"]).name: e["reason"] for e in out["skipped"]}
    assert set(reasons) == {"notes.txt", "broken.dcm"}
    assert "not a DICOM file" in reasons["notes.txt"] and "damaged" in reasons["broken.dcm"]
    assert "Traceback" not in proc.stderr


def test_text_table_and_exit_code_2_without_images(tmp_path):
    write_series(tmp_path / "ct", n=3, rows=8, cols=8)
    proc = run_inspect(str(tmp_path / "ct"))
    assert proc.returncode == 0
    assert "Series 1: CT volume" in proc.stdout and "ijk_to_lps" in proc.stdout and "spacing (mm)" in proc.stdout
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("hello")
    proc = run_inspect(str(junk))
    assert proc.returncode == 2
    assert "no image series could be loaded" in proc.stderr and "a.txt" in proc.stdout
    assert "Traceback" not in proc.stderr
    proc = run_inspect(str(tmp_path / "does-not-exist"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr


def test_headers_only(tmp_path):
    write_series(tmp_path, n=4, rows=8, cols=8)
    proc = run_inspect(str(tmp_path), "--json", "--headers-only")
    assert proc.returncode == 0
    (s,) = json.loads(proc.stdout)["series"]
    assert s["loaded"] is False and s["size"] == [8, 8, 4]


@pytest.mark.parametrize("sub", ["orthanc_spine_dicom"])
def test_real_data_without_identifiers_in_output(shared_data, sub):
    proc = run_inspect(str(shared_data / sub), "--json")
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert {s["modality"] for s in out["series"]} == {"MR", "RF"}
    assert "Unbekannt^" not in proc.stdout  # the RF header's patient-name placeholder is not printed
