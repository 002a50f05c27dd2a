"""DICOM export: Encapsulated PDF and Secondary Capture in the patient's study, the plan as a
Comprehensive 3D SR, and the SR imported back to an equal plan."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from planner.export import SRImportError, export_dicom, import_plan_from_sr
from planner.export.dicom import ENCAPSULATED_PDF_STORAGE, ExportError
from planner.export.sr import PLAN_COPY, PRIVATE_CODES, SCHEME, is_plan_sr_file
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


def test_a_report_without_its_plan_copy_is_refused_and_first_format_srs_still_open(exported, tmp_path):
    """The TID 1500 content holds the plan's geometry and findings, not the whole plan: without the exact copy
    the import is refused with a message. SRs of the first format (every field an item of the private
    scheme) still open, from their copy and from their items alone (points at float32 precision)."""
    plan, result = exported
    ds = pydicom.dcmread(result.sr_file)
    ds.ContentSequence = [it for it in ds.ContentSequence
                          if it.ConceptNameCodeSequence[0].get("CodeValue") != PLAN_COPY]
    stripped = tmp_path / "stripped.dcm"
    ds.save_as(stripped)
    with pytest.raises(SRImportError, match="stripped.dcm: it is a structured report, but not a BVN Planner plan"):
        import_plan_from_sr(stripped)
    legacy = Path(__file__).parent / "data" / "sr_first_shift_format.dcm"
    old = import_plan_from_sr(legacy)
    old_ds = pydicom.dcmread(legacy)
    old_ds.ContentSequence = [it for it in old_ds.ContentSequence
                              if it.ConceptNameCodeSequence[0].get("CodeValue") != PLAN_COPY]
    old_stripped = tmp_path / "old-stripped.dcm"
    old_ds.save_as(old_stripped)
    assert_plans_equal(old, import_plan_from_sr(old_stripped), tol_mm=1e-4)
    with pytest.raises(SRImportError, match="plan_json"):
        import_plan_from_sr(old_stripped, require_copy=True)
    assert is_plan_sr_file(legacy) and is_plan_sr_file(result.sr_file) and not is_plan_sr_file(stripped)


def _groups(ds):
    """Finding type, finding site, laterality, SCOORD3D, measurements and evaluations of each measurement
    group of the TID 1500 report."""
    [measurements] = [it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "126010"]
    out = []
    for group in measurements.ContentSequence:
        g = {"finding": None, "site": None, "laterality": None, "graphic": None, "coords": None, "num": {},
             "qual": {}, "for": None}
        for it in group.ContentSequence:
            name = it.ConceptNameCodeSequence[0].get("CodeValue") or it.ConceptNameCodeSequence[0].get("URNCodeValue")
            if name == "121071":
                g["finding"] = it.ConceptCodeSequence[0].CodeValue
            elif name == "363698007":
                g["site"] = it.ConceptCodeSequence[0].CodeValue
                for mod in it.get("ContentSequence", []):
                    if mod.ConceptNameCodeSequence[0].CodeValue == "272741003":
                        g["laterality"] = mod.ConceptCodeSequence[0].CodeValue
            elif it.ValueType == "SCOORD3D":
                g["graphic"] = it.GraphicType
                g["coords"] = np.asarray(it.GraphicData, dtype=float).reshape(-1, 3)
                g["for"] = it.ReferencedFrameOfReferenceUID
            elif it.ValueType == "NUM":
                g["num"][name] = float(it.MeasuredValueSequence[0].NumericValue)
                assert it.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
            elif it.ValueType == "CODE" and name not in ("121071", "363698007"):
                g["qual"][name] = it.ConceptCodeSequence[0].CodeValue
        out.append(g)
    return out


def test_the_sr_is_a_tid_1500_measurement_report_of_the_plans_geometry(exported):
    plan, result = exported
    ds = pydicom.dcmread(result.sr_file)
    assert ds.SOPClassUID == SR_3D and ds.Modality == "SR"
    root = ds.ConceptNameCodeSequence[0]
    assert (root.CodeValue, root.CodingSchemeDesignator) == ("126000", "DCM")
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    groups = _groups(ds)
    assert {g["for"] for g in groups if g["coords"] is not None} == {FOR_UID}
    vertebra = {"L3": "36470004", "L4": "11994002", "L5": "49668003"}
    side = {"left": "7771000", "right": "24028007"}
    names = {lv.id: lv.name for lv in plan.levels}
    paths = [g for g in groups if g["finding"] == "121055"]  # DCM Path
    zones = [g for g in groups if g["finding"] == "228793007"]  # SCT Planning target volume
    assert len(paths) == len(zones) == len(plan.trajectories)
    for traj, path, zone in zip(plan.trajectories, paths, zones):
        points = [traj.entry_lps] + ([traj.bend_lps] if traj.bend_lps else []) + [traj.target_lps]
        assert path["graphic"] == "POLYLINE" and np.allclose(path["coords"], points, atol=1e-4)
        assert (path["site"], path["laterality"]) == (zone["site"], zone["laterality"]) == (
            vertebra[names[traj.level_id]], side[traj.side])
        assert zone["graphic"] == "ELLIPSOID" and np.allclose(zone["coords"].mean(axis=0), traj.target_lps, atol=1e-4)
        assert np.linalg.norm(zone["coords"][1] - zone["coords"][0]) == pytest.approx(traj.params.zone_diameter_mm,
                                                                                        abs=1e-4)
        assert zone["num"]["81827009"] == pytest.approx(traj.params.zone_diameter_mm)  # SCT Diameter, mm
    # every landmark of every level is a POINT with the vertebra as its finding site
    points = [g for g in groups if g["graphic"] == "POINT"]
    assert len(points) == 7 * len(plan.levels)
    for level in plan.levels:
        mine = [g for g in points if g["site"] == vertebra[level.name]]
        assert len(mine) == 7
        centre = next(g for g in mine if g["finding"] == "111010")  # DCM Center
        assert np.allclose(centre["coords"][0], level.landmarks.body_center_lps, atol=1e-4)
        pedicle = next(g for g in mine if g["finding"] == "78972004" and g["laterality"] == "7771000")
        assert np.allclose(pedicle["coords"][0], level.landmarks.pedicle_left_lps, atol=1e-4)
    # outlines as closed polygons; Modic findings as qualitative evaluations of their level
    outline = next(g for g in groups if g["graphic"] == "POLYGON")
    assert np.allclose(outline["coords"][:-1], plan.levels[0].pedicle_outline_left_lps, atol=1e-4)
    modic = {g["site"]: g["qual"] for g in groups if g["qual"]}
    assert modic == {"11994002": {"modic_inferior": "modic_1", "grade_inferior": "modic_grade_B"},
                     "49668003": {"modic_superior": "modic_2", "grade_superior": "modic_grade_A"}}
    # the private codes in use are all declared and documented
    used = set()

    def walk(d):
        if d.get("CodingSchemeDesignator") == SCHEME and "CodeValue" in d:
            used.add(d.CodeValue)
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
    walk(ds)
    assert used >= {"plan_json", "sup_endplate", "modic_superior", "modic_1"}
    assert all(len(code) <= 16 for code in PRIVATE_CODES)  # Code Value is SH
    documented = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert all(f"| `{code}` | {meaning} |" in documented for code, (meaning, _use) in PRIVATE_CODES.items())
    assert used <= set(PRIVATE_CODES)
    assert any(s.CodingSchemeDesignator == SCHEME for s in ds.CodingSchemeIdentificationSequence)


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
    [measurements] = [it for it in ds.ContentSequence if it.ConceptNameCodeSequence[0].CodeValue == "126010"]
    path = next(it for g in measurements.ContentSequence for it in g.ContentSequence
                if it.ValueType == "SCOORD3D" and it.GraphicType == "POLYLINE")
    path.GraphicData = [float(v) + (5.0 if i >= len(path.GraphicData) - 3 else 0.0)
                        for i, v in enumerate(path.GraphicData)]  # the target moved by 5 mm
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
