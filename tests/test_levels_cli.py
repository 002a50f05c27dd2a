"""``python main.py levels PATH --json``: output in LPS mm and clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import run_command
from planner.cli.levels import parse_hint
from planner.plan import LANDMARK_NAMES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ct_path(shared_data):
    return shared_data / "totalseg_example" / "example_ct.nii.gz"


def test_json_output_on_the_real_ct(ct_path, capsys):
    assert run_command(["levels", str(ct_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frame"] == "LPS" and out["units"] == "mm" and out["modality"] == "CT"
    assert [lv["name"] for lv in out["levels"]] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    for lv in out["levels"]:
        for n in LANDMARK_NAMES:
            if n in lv["not_measured"]:
                assert lv[n] is None and n.startswith("pedicle_"), (lv["name"], n)  # never guessed
            else:
                assert len(lv[n]) == 3 and all(isinstance(v, float) for v in lv[n]), (lv["name"], n)
        if lv["name"] in ("L1", "L2", "L3", "L4", "L5"):
            assert lv["not_measured"] == [], lv["name"]
        assert len(lv["canal_outline_lps"]) >= 8, lv["name"]
    assert len(out["levels"][3]["pedicle_outline_left_lps"]) >= 8  # L3
    # S1 lies low in the pelvis of this CT (z of its labelled centroid is 217.5 mm)
    s1 = out["levels"][-1]["body_center_lps"]
    assert abs(s1[2] - 217.5) < 5


def test_text_output_and_transitional(ct_path, capsys):
    assert run_command(["levels", str(ct_path), "--transitional", "L6"]) == 0
    text = capsys.readouterr().out
    assert "L6" in text and "T12" not in text and "warning: six lumbar vertebrae assumed" in text


def test_command_runs_through_main(ct_path):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "levels", str(ct_path), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["levels"][0]["name"] == "T12"


@pytest.mark.parametrize("args,message", [
    (["levels", "/no/such/file.nii.gz"], "no such file"),
    (["levels", "{ct}", "--hint", "S1=1,2"], "three coordinates"),
    (["levels", "{ct}", "--hint", "S1=a,b,c"], "must be numbers"),
    (["levels", "{ct}", "--hint", "nothing"], "NAME=x,y,z"),
    (["levels", "{ct}", "--hint", "S1=9999,0,0"], "outside the image"),
    (["levels", "{ct}", "--series", "1.2.3"], "not found"),
])
def test_bad_input_exits_2_with_a_message(ct_path, capsys, args, message):
    args = [a.replace("{ct}", str(ct_path)) for a in args]
    assert run_command(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really a nifti")
    assert run_command(["levels", str(bad)]) == 2
    assert "broken.nii.gz" in capsys.readouterr().err


def test_no_levels_found_exits_1(shared_data, capsys):
    small = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    assert run_command(["levels", str(small)]) == 1
    assert "sacrum" in capsys.readouterr().err


def test_parse_hint():
    assert parse_hint("s1=1, -2.5,3e1") == ("S1", (1.0, -2.5, 30.0))


def test_folder_without_images_names_the_skipped_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image", encoding="utf-8")
    assert run_command(["levels", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no 3D image series found" in err and "notes.txt" in err and "Traceback" not in err


def test_skip_summary_reads_the_import_report():
    """ImportReport.skipped_files is a property (a list); a report offering it as a method works too."""
    from types import SimpleNamespace

    from planner.cli.levels import _skips_of
    from planner.imaging.report import ImportReport

    report = ImportReport()
    report.skipped("a.dcm", "no pixel data")
    report.skipped("b.dcm", "truncated file")
    text = _skips_of(SimpleNamespace(report=report))
    assert "2 skipped" in text and "a.dcm: no pixel data" in text and "b.dcm: truncated file" in text

    entries = report.skipped_files
    as_method = SimpleNamespace(summary=lambda: "", skipped_files=lambda: entries)
    assert "a.dcm: no pixel data" in _skips_of(SimpleNamespace(report=as_method))
    assert _skips_of(SimpleNamespace(report=None)) == ""
    assert _skips_of(SimpleNamespace(report=SimpleNamespace(summary="x", skipped_files=3))) == " (x)"


def test_mri_levels_from_two_hints_on_the_demo_t1(demo_study, capsys):
    v = demo_study.ground_truth["vertebrae"]
    hints = [f"--hint={n}=" + ",".join(f"{c:.2f}" for c in v[n]["body_center_lps"]) for n in ("S1", "L1")]
    assert run_command(["levels", str(demo_study.series_dirs["T1"]), "--json", *hints]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["modality"] == "MR"
    assert [lv["name"] for lv in out["levels"]] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    for lv in out["levels"]:
        for n in LANDMARK_NAMES:
            if lv["name"] == "S1" and n.startswith("pedicle"):  # not measured on MRI: placed by hand
                assert lv[n] is None and n in lv["not_measured"]
                continue
            assert len(lv[n]) == 3, (lv["name"], n)
        got, ref = lv["body_center_lps"], v[lv["name"]]["body_center_lps"]
        assert sum((a - b) ** 2 for a, b in zip(got, ref)) ** 0.5 < 2.0, lv["name"]


def test_landmarks_not_measured_say_place_by_hand(ct_path, capsys, monkeypatch):
    """A landmark the finder could not measure is null in the JSON and 'not measured, place by hand' in
    the text, and the notes are printed as warnings."""
    import planner.levels as levels_mod
    from planner.plan import Landmarks, Level

    lm = Landmarks(body_center_lps=(1.0, 2.0, 3.0), superior_endplate_lps=(1.0, 2.0, 15.0),
                   inferior_endplate_lps=(1.0, 2.0, -9.0), posterior_wall_lps=(1.0, 18.0, 3.0),
                   anterior_wall_lps=(1.0, -14.0, 3.0), pedicle_left_lps=(15.0, 24.0, 6.0))
    proposal = levels_mod.LevelProposal([Level(name="L4", landmarks=lm)], "MR",
                                        ["the L5 mark lies in a disc; check it"])
    monkeypatch.setattr(levels_mod, "propose_levels_detailed", lambda *a, **k: proposal)
    assert run_command(["levels", str(ct_path)]) == 0
    text = capsys.readouterr().out
    assert "pedicle right: not measured, place by hand" in text
    assert "pedicle left: not measured" not in text
    assert "warning: the L5 mark lies in a disc; check it" in text
    assert run_command(["levels", str(ct_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    level = out["levels"][0]
    assert level["pedicle_right_lps"] is None and level["not_measured"] == ["pedicle_right_lps"]
    assert out["notes"] == ["the L5 mark lies in a disc; check it"]


def test_mri_marks_that_disagree_with_the_image_exit_1_naming_the_correction(shared_data, capsys):
    """On a real scan: an S1 mark on L5 ends with exit 1 and the likely correction."""
    import json as _json

    folder = shared_data / "lumbar_mri_vb"
    cents = _json.loads((folder / "VB1_02.json").read_text())["body_centroid_lps_mm"]
    hints = ["--hint=S1=" + ",".join(f"{c:.2f}" for c in cents["L5"]),
             "--hint=L1=" + ",".join(f"{c:.2f}" for c in cents["L1"])]
    assert run_command(["levels", str(folder / "VB1_02_mr.nii.gz"), *hints]) == 1
    err = capsys.readouterr().err
    assert "check the marks" in err and "move the S1 mark 1 body down" in err
