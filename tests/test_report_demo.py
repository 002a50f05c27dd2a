"""The documents built from the built-in demo study (sample.bvnplan and its DICOM series), end to end
through the command line: images found by UID, report, sheet, DICOM export, SR round trip."""

from __future__ import annotations

import re

import pytest
from pypdf import PdfReader

from planner.report import PLANNING_AID_STATEMENT
from planner.report.data import format_person_name
from planner.storage import load_plan

pytestmark = pytest.mark.slow


def _text(path) -> tuple[int, str]:
    reader = PdfReader(str(path))
    return len(reader.pages), re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages))


def test_demo_documents_end_to_end(demo_study, tmp_path, capsys):
    from main import main
    from planner.export import import_plan_from_sr

    plan_path = str(demo_study.plan_path)
    images = str(demo_study.folder)
    plan = load_plan(plan_path)

    report = tmp_path / "summary.pdf"
    assert main(["report", plan_path, "-o", str(report), "--images", images]) == 0
    assert "Series not found" not in capsys.readouterr().err
    n, text = _text(report)
    assert text.count(PLANNING_AID_STATEMENT) == n and f"Page {n} of {n}" in text
    if plan.case.patient_name:
        assert format_person_name(plan.case.patient_name) in text
    assert "Key images unavailable" not in text
    for traj in plan.trajectories:
        assert f"Trajectory {plan.level(traj.level_id).name} {traj.side}" in text

    for lang in ("en", "es"):
        sheet = tmp_path / f"sheet-{lang}.pdf"
        assert main(["sheet", plan_path, "-o", str(sheet), "--lang", lang]) == 0
        _, sheet_text = _text(sheet)
        for level in (lv.name for lv in plan.levels if lv.treat):
            assert level in sheet_text

    out = tmp_path / "dicom"
    assert main(["export-dicom", plan_path, "-o", str(out), "--images", images]) == 0
    back = import_plan_from_sr(out / "dicom" / "SR00001.dcm")
    assert back.content_hash() == plan.content_hash()
    assert list((out / "dicom").glob("SC*.dcm"))
