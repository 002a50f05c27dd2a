"""The exported DICOM objects pass dciodvfy (Debian's dicom3tools, installed by scripts/_setup.sh) with no
error: the Encapsulated PDF, the Secondary Capture key images, the Key Object Selection and the plan SR;
the key images and the PDF reference their source images, the Key Object Selection lists every key image,
and the SR is COMPLETE, VERIFIED by the reviewer after a current sign-off and UNVERIFIED without one."""

from __future__ import annotations

import shutil
import subprocess

import pydicom
import pytest

from planner.export import export_dicom, import_plan_from_sr
from planner.imaging import load_path
from planner.plan import SignOff
from planner.storage import load_plan

DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def exported(demo_study, tmp_path_factory):
    plan = load_plan(str(demo_study.plan_path))
    plan.review.signoffs.append(SignOff(reviewer="Fellow^Fiona", content_hash=plan.content_hash()))
    images = load_path(demo_study.folder).images
    return plan, images, export_dicom(plan, tmp_path_factory.mktemp("conf") / "out", images, with_3d=False)


def _errors(path) -> list[str]:
    assert DCIODVFY, "dciodvfy is missing: install the Debian package dicom3tools (scripts/_setup.sh does)"
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_every_exported_object_passes_dciodvfy(exported):
    _plan, _images, result = exported
    assert result.kos_file is not None and result.key_image_files
    for path in [result.pdf_dicom, result.key_image_files[0], result.key_image_files[-1], result.kos_file,
                 result.sr_file]:
        assert _errors(path) == [], path.name


def test_key_images_and_pdf_reference_their_sources(exported):
    plan, images, result = exported
    source_uids = {uid for img in images.values() for uid in img.info.sop_instance_uids}
    pdf = pydicom.dcmread(str(result.pdf_dicom))
    assert {str(i.ReferencedSOPInstanceUID) for i in pdf.SourceInstanceSequence} == source_uids
    referenced = set()
    for f in result.key_image_files:
        sc = pydicom.dcmread(str(f), stop_before_pixels=True)
        if "SourceImageSequence" in sc:
            refs = {str(i.ReferencedSOPInstanceUID) for i in sc.SourceImageSequence}
            assert refs <= source_uids and refs
            referenced |= refs
    assert referenced  # at least the reslices name their series
    ko = pydicom.dcmread(str(result.kos_file))
    listed = {str(i.ReferencedSOPInstanceUID) for s in ko.CurrentRequestedProcedureEvidenceSequence
              for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    keys = {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in result.key_image_files}
    assert listed == keys
    assert ko.StudyInstanceUID == pdf.StudyInstanceUID == plan.case.study_instance_uid


def test_the_sr_is_verified_after_a_current_sign_off_only(exported, tmp_path):
    plan, _images, result = exported
    sr = pydicom.dcmread(str(result.sr_file))
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Fellow^Fiona"
    assert import_plan_from_sr(result.sr_file).model_dump(mode="json") == plan.model_dump(mode="json")
    changed = plan.model_copy(deep=True)
    changed.case.study_description = "changed after the sign-off"
    again = export_dicom(changed, tmp_path / "again", None, with_3d=False)
    sr2 = pydicom.dcmread(str(again.sr_file))
    assert (sr2.CompletionFlag, sr2.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert _errors(again.sr_file) == []
