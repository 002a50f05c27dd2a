"""DICOM export: Encapsulated PDF and Secondary Capture in the patient's study, the plan as a
Comprehensive 3D SR, and the SR imported back to an equal plan."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from planner.export import SRImportError, export_dicom, import_plan_from_sr
from planner.export.dicom import ENCAPSULATED_PDF_STORAGE, ExportError
from planner.export.sr import JSON_CODE, SCHEME
from planner.plan import Plan
from planner.storage import save_plan
from tests.report_support import (
    FLUORO_SERIES_UID,
    FOR_UID,
    PATIENT_FAMILY,
    PATIENT_GIVEN,
    STUDY_UID,
    reviewed_plan,
    rich_plan,
    write_fluoro_dicom,
    write_phantom_dicom,
)

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SR_3D = "1.2.840.10008.5.1.4.1.1.88.34"


def assert_plans_equal(a: Plan, b: Plan, tol_mm: float = 1e-6) -> None:
    """Equality of the clinical content (Plan.content_dict), floats within ``tol_mm``."""
    def walk(x, y, path):
        if isinstance(x, dict):
            assert isinstance(y, dict) and set(x) == set(y), path
            for k in x:
                walk(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, list):
            assert isinstance(y, list) and len(x) == len(y), path
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{path}[{i}]")
        elif isinstance(x, float) or isinstance(y, float):
            assert math.isclose(float(x), float(y), rel_tol=0, abs_tol=tol_mm), (path, x, y)
        else:
            assert x == y, (path, x, y)
    walk(a.content_dict(), b.content_dict(), "plan")


def odd_plan() -> Plan:
    """rich_plan() with awkward values: long decimals, negative zero, unicode, None answers, empty lists."""
    plan = rich_plan()
    t = plan.trajectories[0]
    t.entry_lps = (15.123456789012345, 40.000000001, -40.98765432109876)
    t.target_lps = (-0.0, 2.333333333333333, -39.999999999)
    plan.levels[0].pedicle_outline_left_lps = [(10.1, 20.2, 0.3), (11.4, 21.5, 0.6), (12.7, 20.8, 0.9)]
    plan.eligibility.answers["bmi"] = None
    plan.eligibility.notes = "Ü ñ — «notes» with ümlauts"
    plan.settings.zone_diameter_mm = 9.87654321
    return plan


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    vol = write_phantom_dicom(folder / "ct")
    fl = write_fluoro_dicom(folder / "rf")
    return {vol.info.series_instance_uid: vol, FLUORO_SERIES_UID: fl}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sources):
    plan = odd_plan()
    result = export_dicom(plan, tmp_path_factory.mktemp("exp") / "out", sources, with_3d=False)
    return plan, result


def test_sr_round_trip_gives_back_an_equal_plan(exported):
    plan, result = exported
    back = import_plan_from_sr(result.sr_file)
    assert_plans_equal(plan, back)
    assert back.content_hash() == plan.content_hash()  # exact, not only within tolerance
    assert [c.text for c in back.review.comments] == [c.text for c in plan.review.comments]
    assert back.signoff_is_current(back.review.signoffs[0]) == plan.signoff_is_current(plan.review.signoffs[0])


def test_sr_structured_items_alone_rebuild_the_plan(exported, tmp_path):
    """Without the JSON copy the plan is rebuilt from the SR content items (points at float32 precision)."""
    plan, result = exported
    ds = pydicom.dcmread(result.sr_file)
    ds.ContentSequence = [it for it in ds.ContentSequence
                          if it.ConceptNameCodeSequence[0].get("CodeValue") != JSON_CODE]
    stripped = tmp_path / "stripped.dcm"
    ds.save_as(stripped)
    back = import_plan_from_sr(stripped)
    assert_plans_equal(plan, back, tol_mm=1e-4)  # SCOORD3D holds 32-bit floats
    with pytest.raises(SRImportError, match="plan_json"):
        import_plan_from_sr(stripped, require_copy=True)


def _scoords(ds):
    out = []

    def walk(items, path):
        for it in items:
            name = it.ConceptNameCodeSequence[0]
            code = name.get("CodeValue") or name.get("LongCodeValue")
            if it.ValueType == "SCOORD3D":
                out.append((path + [code], it))
            if "ContentSequence" in it:
                walk(it.ContentSequence, path + [code])
    walk(ds.ContentSequence, [])
    return out


def test_sr_holds_landmarks_trajectories_zones_and_findings_as_3d_coordinates(exported):
    plan, result = exported
    ds = pydicom.dcmread(result.sr_file)
    assert ds.SOPClassUID == SR_3D and ds.Modality == "SR"
    scoords = _scoords(ds)
    assert scoords and all(it.ReferencedFrameOfReferenceUID == FOR_UID for _, it in scoords)
    points = [(tuple(path), np.asarray(it.GraphicData, dtype=float)) for path, it in scoords
              if it.GraphicType == "POINT"]
    # The trajectory points, in the order of the plan, to float32 precision.
    for i, traj in enumerate(plan.trajectories):
        for name in ("entry_lps", "bend_lps", "target_lps"):
            found = [v for p, v in points if p[0] == "trajectories" and p[-1] == name]
            assert np.allclose(found[i], getattr(traj, name), atol=1e-4)
    landmark_points = [v for p, v in points if p[0] == "levels" and "landmarks" in p]
    assert len(landmark_points) == 7 * len(plan.levels)
    zones = [it for path, it in scoords if it.GraphicType == "ELLIPSOID"]
    assert len(zones) == len(plan.trajectories)
    for zone, traj in zip(zones, plan.trajectories):
        axes = np.asarray(zone.GraphicData, dtype=float).reshape(6, 3)
        assert np.allclose(axes.mean(axis=0), traj.target_lps, atol=1e-4)
        assert np.linalg.norm(axes[1] - axes[0]) == pytest.approx(traj.params.zone_diameter_mm, abs=1e-4)
    # Findings: each endplate has its Modic type and its location (the endplate landmark).
    locations = [p for p, _ in points if p[-1] == "derived_location_lps"]
    assert len(locations) == 2 * len(plan.levels)
    text = str(ds)
    assert "36470004" in text  # SNOMED CT "L3 vertebra" as finding site
    assert any(ds2.CodingSchemeDesignator == SCHEME for ds2 in ds.CodingSchemeIdentificationSequence)


def _check_patient_study(ds, plan):
    c = plan.case
    assert str(ds.PatientName) == c.patient_name
    assert ds.PatientID == c.patient_id
    assert ds.PatientBirthDate == c.patient_birth_date
    assert ds.PatientSex == c.patient_sex
    assert ds.StudyInstanceUID == c.study_instance_uid == STUDY_UID
    assert ds.StudyDate == c.study_date
    assert ds.AccessionNumber == c.accession_number
    assert ds.StudyID == "S7781" and ds.StudyTime == "101500"  # completed from the source header


def test_encapsulated_pdf_in_the_patients_study(exported, sources):
    plan, result = exported
    ds = pydicom.dcmread(result.pdf_dicom)
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE and ds.Modality == "DOC"
    _check_patient_study(ds, plan)
    assert ds.SeriesInstanceUID not in sources and ds.SeriesInstanceUID not in {
        r.series_instance_uid for r in plan.case.series}
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    doc = bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength]
    assert doc.startswith(b"%PDF") and doc == result.pdf_file.read_bytes()
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(doc)).pages)
    assert f"{PATIENT_FAMILY}, {PATIENT_GIVEN}" in text and "PLANNING AID ONLY" in text


def test_key_images_as_secondary_capture(exported, sources):
    plan, result = exported
    sc = [pydicom.dcmread(p) for p in result.key_image_files]
    # sagittal and axial each; L4 on the C-arm image (its walls are marked), L5 on the virtual AP and lateral
    assert len(sc) == 2 * len(plan.trajectories) + 1 + 2
    series = {d.SeriesInstanceUID for d in sc}
    assert len(series) == 1
    others = {pydicom.dcmread(result.pdf_dicom).SeriesInstanceUID, pydicom.dcmread(result.sr_file).SeriesInstanceUID}
    assert series.isdisjoint(others) and series.isdisjoint(sources)
    for d in sc:
        assert d.SOPClassUID == SC_STORAGE
        _check_patient_study(d, plan)
        assert d.PhotometricInterpretation == "RGB" and d.SamplesPerPixel == 3
        assert d.pixel_array.shape[-1] == 3
    sag = [d for d in sc if "Sagittal" in d.ImageComments]
    assert sag and list(sag[0].PatientOrientation) == ["P", "F"]
    ax = [d for d in sc if "Axial" in d.ImageComments]
    assert ax and list(ax[0].PatientOrientation) == ["L", "P"]
    assert len({d.SOPInstanceUID for d in sc}) == len(sc)


def test_sr_is_in_the_study_and_references_its_evidence(exported):
    plan, result = exported
    sr = pydicom.dcmread(result.sr_file)
    _check_patient_study(sr, plan)
    refs = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
            for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert pydicom.dcmread(result.pdf_dicom).SOPInstanceUID in refs
    assert {pydicom.dcmread(p).SOPInstanceUID for p in result.key_image_files} <= refs


def test_export_without_images_and_without_study_uid(tmp_path):
    plan = rich_plan()
    plan.case.study_instance_uid = ""
    plan.case.series = []
    result = export_dicom(plan, tmp_path / "e", None, with_3d=False)
    assert result.key_image_files == []
    assert any("new study" in n for n in result.notes)
    pdf = pydicom.dcmread(result.pdf_dicom)
    sr = pydicom.dcmread(result.sr_file)
    assert pdf.StudyInstanceUID == sr.StudyInstanceUID == result.study_instance_uid
    back = import_plan_from_sr(result.sr_file)
    assert_plans_equal(plan, back)


def test_edited_or_foreign_sr_is_refused(exported, tmp_path):
    _, result = exported
    ds = pydicom.dcmread(result.sr_file)
    for path, it in _scoords(ds):
        if path[-1] == "target_lps":
            it.GraphicData = [float(v) + 5.0 for v in it.GraphicData]
            break
    edited = tmp_path / "edited.dcm"
    ds.save_as(edited)
    with pytest.raises(SRImportError, match=r"disagree at trajectories\[0\]\.target_lps"):
        import_plan_from_sr(edited)
    with pytest.raises(SRImportError, match="not a structured report"):
        import_plan_from_sr(result.pdf_dicom)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(SRImportError, match="junk.dcm"):
        import_plan_from_sr(junk)
    with pytest.raises(SRImportError, match="does not exist"):
        import_plan_from_sr(tmp_path / "missing.dcm")


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("old", encoding="utf-8")
    with pytest.raises(ExportError, match="not empty"):
        export_dicom(rich_plan(), tmp_path, None, with_3d=False)


def test_cancelled_or_failed_export_leaves_nothing_behind(tmp_path):
    from planner.export import ExportCancelled, prepare_export, write_export

    prep = prepare_export(rich_plan(), None, with_3d=False)
    seen = []
    out = tmp_path / "export"
    with pytest.raises(ExportCancelled, match="cancelled"):
        write_export(prep, out, progress=lambda f, m: seen.append(f), cancel=lambda: len(seen) >= 2)
    assert seen == [pytest.approx(1 / prep.steps), pytest.approx(2 / prep.steps)]
    assert list(tmp_path.iterdir()) == []  # neither the export folder nor the hidden work folder
    # a failure while writing (here: the SR cannot be built) also leaves nothing; the empty target stays empty
    out.mkdir()
    import planner.export.sr as sr

    def broken(*_a, **_k):
        raise OSError(28, "No space left on device")

    real = sr.build_plan_sr
    sr.build_plan_sr = broken
    try:
        with pytest.raises(OSError):
            write_export(prep, out)
    finally:
        sr.build_plan_sr = real
    assert [p.name for p in tmp_path.iterdir()] == ["export"] and list(out.iterdir()) == []
    # the same prepared export then writes normally into the (empty) folder, with progress up to 1
    seen.clear()
    result = write_export(prep, out, progress=lambda f, m: seen.append(f))
    assert result.folder == out and result.sr_file == out / "dicom" / "SR00001.dcm" and result.sr_file.is_file()
    assert all(p.is_file() and out in p.parents for p in result.files)
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_cli_export_dicom(tmp_path, capsys):
    from main import main

    plan_path = tmp_path / "p.bvnplan"
    save_plan(reviewed_plan(), plan_path)
    out = tmp_path / "export"
    assert main(["export-dicom", str(plan_path), "-o", str(out), "--no-3d"]) == 0
    assert (out / "dicom" / "SR00001.dcm").is_file() and (out / "README.txt").is_file()
    assert "SR00001.dcm" in capsys.readouterr().out
    assert main(["export-dicom", str(plan_path), "-o", str(out), "--no-3d"]) == 2
    assert "not empty" in capsys.readouterr().err
    bad = tmp_path / "bad.bvnplan"
    bad.write_text("{}", encoding="utf-8")
    assert main(["export-dicom", str(bad), "-o", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "bad.bvnplan" in err and "Traceback" not in err
    assert re.search(r"not a BVN Planner plan", err)
