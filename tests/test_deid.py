"""De-identified teaching export: no patient name, ID or birth date in any byte of any file; UIDs
replaced consistently across the images, the DICOM objects and the plan; PS3.15 basic profile marks."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from pathlib import Path

import pydicom
import pytest
from pypdf import PdfReader

from planner.deidentify import Deidentifier
from planner.export import export_dicom, import_plan_from_sr
from planner.storage import load_plan
from tests.report_support import (
    ACCESSION,
    BIRTH_DATE,
    CT_SERIES_UID,
    DEVICE_SERIAL,
    FLUORO_SERIES_UID,
    FLUORO_SOP_UID,
    FOR_UID,
    INSTITUTION,
    OPERATOR,
    PATIENT_FAMILY,
    PATIENT_GIVEN,
    PATIENT_ID,
    STUDY_UID,
    reviewed_plan,
    rich_plan,
    write_fluoro_dicom,
    write_phantom_dicom,
)

#: What must not appear anywhere, in any case.
FORBIDDEN = [PATIENT_FAMILY, PATIENT_GIVEN, PATIENT_ID, BIRTH_DATE, "1963-04-17", ACCESSION, INSTITUTION,
             DEVICE_SERIAL, "Referrer", OPERATOR]
#: The family name without its accent, as some encoders write it.
FORBIDDEN_ASCII = ["Zyxwortova"]


def _pdf_texts(path: Path) -> list[str]:
    """Text of every PDF inside a file: a PDF itself or the document of an Encapsulated PDF."""
    data = path.read_bytes()
    docs = []
    if data.startswith(b"%PDF"):
        docs.append(data)
    elif path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        if "EncapsulatedDocument" in ds:
            docs.append(bytes(ds.EncapsulatedDocument))
    return [" ".join(p.extract_text() for p in PdfReader(io.BytesIO(d)).pages) for d in docs]


def leaks(folder: Path, needles=FORBIDDEN + FORBIDDEN_ASCII) -> list[str]:
    """Every (file, needle) where an identifier occurs: raw bytes (UTF-8 and Latin-1, any case) and the
    extracted text of PDFs (their streams are compressed, so raw bytes alone would miss them)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        raw = path.read_bytes().lower()
        texts = [t.lower() for t in _pdf_texts(path)]
        for needle in needles:
            forms = {needle.lower().encode("utf-8"), needle.lower().encode("latin-1", "ignore")}
            if any(f and f in raw for f in forms) or any(needle.lower() in t for t in texts):
                found.append(f"{path.relative_to(folder)}: {needle}")
    return found


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    vol = write_phantom_dicom(folder / "ct", step=8)
    fl = write_fluoro_dicom(folder / "rf")
    return {CT_SERIES_UID: vol, FLUORO_SERIES_UID: fl}


@pytest.fixture(scope="module")
def teaching(tmp_path_factory, sources):
    plan = rich_plan()
    plan.trajectories[0].override_reason = f"Discussed with {PATIENT_GIVEN} {PATIENT_FAMILY} (ID {PATIENT_ID})"
    plan.levels[2].notes = f"Patient born {BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}"
    de = Deidentifier(key="fixed-test-key")
    result = export_dicom(plan, tmp_path_factory.mktemp("deid") / "out", sources, deidentify=True, with_3d=False,
                          deidentifier=de)
    return plan, result, de


def test_scanner_finds_identifiers_in_a_normal_export(tmp_path, sources):
    """Control: the same scan finds the name, ID and birth date in an identified export."""
    export_dicom(rich_plan(), tmp_path / "id", sources, with_3d=False)
    found = leaks(tmp_path / "id")
    for needle in (PATIENT_FAMILY, PATIENT_ID, BIRTH_DATE):
        assert any(f.endswith(needle) for f in found)
    assert any(f.startswith("plan_summary.pdf") and PATIENT_GIVEN in f for f in found)  # found via PDF text


def test_no_identifier_in_any_byte_of_any_file(teaching):
    _, result, _ = teaching
    files = [p for p in result.folder.rglob("*") if p.is_file()]
    assert len(files) == len(result.files) >= 10
    assert result.source_image_files and result.plan_file is not None
    assert leaks(result.folder) == []


def test_pseudonym_and_profile_marks(teaching):
    _, result, de = teaching
    for path in result.folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == de.pseudonym_name and ds.PatientID == de.pseudonym_id
        assert ds.get("PatientBirthDate", "") == ""
        if path.parent.name != "dicom":  # the de-identified source images
            assert ds.PatientIdentityRemoved == "YES"
            assert "PS3.15 Annex E Basic Profile" in " ".join(ds.DeidentificationMethod)
            assert "Burned-in pixel text NOT removed" in ds.DeidentificationMethod
            assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
            assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
            for kw in ("InstitutionName", "DeviceSerialNumber", "OperatorsName", "OtherPatientIDs",
                       "PatientAddress", "ImageComments", "StationName", "PatientAge"):
                assert kw not in ds, kw
            assert not any(elem.tag.is_private for elem in ds.iterall())
            assert ds.Manufacturer == "PhantomWorks"  # not identifying: kept
            assert ds.pixel_array.size > 0
    plan = load_plan(result.plan_file)
    assert plan.case.patient_name == de.pseudonym_name and plan.case.patient_id == de.pseudonym_id
    assert plan.case.patient_birth_date == "" and plan.case.institution == "" and plan.case.accession_number == ""
    assert [c.author for c in plan.review.comments] == ["Dr Reviewer", "Fellow A"]  # staff names stay
    assert "[removed]" in plan.trajectories[0].override_reason
    readme = result.readme.read_text(encoding="utf-8")
    assert "burned into the pixels" in readme and "NOT removed" in readme


def _uids(ds) -> set[str]:
    return {str(e.value) for e in ds.iterall() if e.VR == "UI" and e.value and not isinstance(e.value, list)}


def test_uids_replaced_consistently(teaching, sources):
    plan_orig, result, de = teaching
    originals = {STUDY_UID, CT_SERIES_UID, FLUORO_SERIES_UID, FLUORO_SOP_UID, FOR_UID}
    originals |= set(sources[CT_SERIES_UID].info.sop_instance_uids)
    exported = [pydicom.dcmread(p) for p in result.folder.rglob("*.dcm")]
    for ds in exported:
        assert _uids(ds).isdisjoint(originals)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for needle_uid in originals:  # not in any byte of any file (plan, PDFs, README included), as a whole UID: a new
        # random UID under the same root can begin with the same digits (...498.1002 in ...498.10027048...)
        whole = re.compile(rb"(?<![0-9.])" + re.escape(needle_uid.encode()) + rb"(?![0-9.])")
        for path in result.folder.rglob("*"):
            if path.is_file():
                assert not whole.search(path.read_bytes()), (path.name, needle_uid)
    plan = load_plan(result.plan_file)
    study = {ds.StudyInstanceUID for ds in exported}
    assert study == {plan.case.study_instance_uid} == {de.uid(STUDY_UID)}
    ct = [ds for ds in exported if ds.get("Modality") == "CT"]
    ref_ct = next(r for r in plan.case.series if r.role == "CT")
    assert {ds.SeriesInstanceUID for ds in ct} == {ref_ct.series_instance_uid}
    assert {ds.FrameOfReferenceUID for ds in ct} == {ref_ct.frame_of_reference_uid} == {de.uid(FOR_UID)}
    rf = [ds for ds in exported if ds.get("Modality") == "RF"]
    assert len(rf) == 1 and plan.fluoro_landmarks[0].sop_instance_uid == rf[0].SOPInstanceUID
    assert plan.measurements[0].sop_instance_uid == rf[0].SOPInstanceUID
    # The SR's coordinates refer to the new frame of reference; it imports back to the exported plan.
    sr = pydicom.dcmread(result.sr_file)
    fors = {str(e.value) for e in sr.iterall() if e.keyword == "ReferencedFrameOfReferenceUID"}
    assert fors == {de.uid(FOR_UID)}
    back = import_plan_from_sr(result.sr_file)
    assert back.content_hash() == plan.content_hash()
    # The SR's evidence lists the de-identified source images by their new UIDs.
    refs = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
            for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert {ds.SOPInstanceUID for ds in ct} <= refs


def test_dates_shifted_by_one_offset(teaching):
    plan_orig, result, de = teaching
    shift = timedelta(days=de.date_shift_days)
    expected = (date(2024, 3, 11) + shift).strftime("%Y%m%d")
    images = [pydicom.dcmread(p) for p in result.source_image_files]
    assert {ds.StudyDate for ds in images} == {expected} and {ds.SeriesDate for ds in images} == {expected}
    assert load_plan(result.plan_file).case.study_date == expected
    assert de.date_shift_days <= -365


def test_signoff_current_before_stays_current(teaching):
    plan_orig, result, _ = teaching
    plan = load_plan(result.plan_file)
    # rich_plan was signed before the test changed it, so that sign-off is out of date in both.
    assert plan.signoff_is_current(plan.review.signoffs[0]) == plan_orig.signoff_is_current(
        plan_orig.review.signoffs[0])
    fresh = rich_plan()
    assert fresh.signoff_is_current(fresh.review.signoffs[0])
    clean = Deidentifier(key="k").plan(fresh)
    assert clean.signoff_is_current(clean.review.signoffs[0])
    assert fresh.case.patient_name != clean.case.patient_name  # the original is untouched


def test_deidentifier_units():
    de = Deidentifier(key="abc", date_shift_days=-10)
    a = de.uid("1.2.3.4.5")
    assert a == de.uid("1.2.3.4.5") != de.uid("1.2.3.4.6")
    assert a.startswith("2.25.") and len(a) <= 64
    assert Deidentifier(key="abc").uid("1.2.3.4.5") == a  # reproducible for one export key
    assert Deidentifier(key="xyz").uid("1.2.3.4.5") != a
    for standard in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"):
        assert de.uid(standard) == standard
    assert de.shift_date("20240311") == "20240301"
    assert de.shift_date("2024-03-11") == "2024-03-01"
    assert de.shift_date("20240311101500.000") == "20240301101500.000"
    assert de.shift_date("garbage") == ""
    de.remember("Doe^Jane", "19650412")
    assert de.scrub("Jane DOE born 1965-04-12 or 12/04/1965") == "[removed] [removed] born [removed] or [removed]"


def test_cli_deidentify(tmp_path, sources):
    from main import main
    from planner.storage import save_plan

    plan_path = tmp_path / "p.bvnplan"
    save_plan(reviewed_plan(), plan_path)
    out = tmp_path / "teach"
    assert main(["export-dicom", str(plan_path), "-o", str(out), "--deidentify", "--pseudonym", "Case^Seven",
                 "--no-3d"]) == 0
    assert leaks(out) == []
    plan = load_plan(out / "plan.bvnplan")
    assert plan.case.patient_name == "Case^Seven"
    assert re.match(r"BVN-[0-9A-F]{6}$", plan.case.patient_id)


def test_teaching_export_reopens_with_its_own_images(teaching):
    """The de-identified plan finds the de-identified images by their new UIDs (images/ folder)."""
    from planner.report import build_report_data
    from planner.report.sources import find_plan_images

    _, result, _ = teaching
    plan = load_plan(result.plan_file)
    found = find_plan_images(plan, result.folder / "images")
    assert found.missing == []
    assert set(found.images) == {r.series_instance_uid for r in plan.case.series}
    data = build_report_data(plan, found.images, with_3d=False)
    assert data.images_available
    kinds = [k.kind for s in data.trajectories for k in s.key_images]
    assert kinds.count("sagittal") == len(plan.trajectories) and "fluoro" in kinds
