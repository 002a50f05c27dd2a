"""The case of a plan and the one-patient-per-plan rule, headless (planner.session): who counts as the
same patient, how an import is split by patient, what the plan records from its first series (or its
first edit), and that images of another patient are refused."""

from __future__ import annotations

import numpy as np
import pytest

from planner.document import PlanDocument
from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.plan import Landmarks, Plan, SeriesRef
from planner.session import (
    OtherPatientError,
    Session,
    case_is_empty,
    group_by_patient,
    patient_identity,
    same_patient,
    series_role,
)

SAGITTAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: i=P, j=I, k=L
AXIAL = np.eye(3)  # i=L, j=P, k=S


def vol(key, *, pid="", name="", birth="", study="", desc="SAG T2", modality="MR", direction=SAGITTAL,
        values=(0, 100)) -> Volume:
    arr = np.linspace(values[0], values[1], 4 * 5 * 6).reshape(4, 5, 6).astype(np.int16)
    info = ImageInfo(modality=modality, series_instance_uid=key, study_instance_uid=study, patient_id=pid,
                     patient_name=name, patient_birth_date=birth, series_description=desc, study_date="20240102",
                     source_files=[f"/cd/{key}/1.dcm", f"/cd/{key}/2.dcm"], sop_instance_uids=["1", "2", "3", "4"],
                     key=key)
    return Volume(arr, make_ijk_to_lps((0, 0, 0), direction, (1, 1, 1)), info)


def test_identity_is_the_id_else_name_and_birth_date_else_the_study():
    a = vol("a", pid="P1", name="DOE^JANE", birth="19600101")
    assert patient_identity(a.info) == ("id", "P1")
    assert same_patient(a.info, vol("b", pid="P1", name="DOE^J").info)  # the ID decides
    assert not same_patient(a.info, vol("c", pid="P2", name="DOE^JANE", birth="19600101").info)
    # no IDs: name and birth date, spelled alike
    assert same_patient(vol("d", name="Doe^Jane", birth="19600101").info, vol("e", name="DOE JANE", birth="19600101").info)
    assert not same_patient(vol("d", name="DOE^JANE").info, vol("e", name="DOE^JANE").info)  # no birth date
    # the same study is the same patient; a study with empty IDs is another patient than anything
    assert same_patient(vol("f", study="1.2.3").info, vol("g", pid="X", study="1.2.3").info)
    empty = vol("h").info
    assert patient_identity(empty) == () and not same_patient(empty, vol("i").info)
    assert not same_patient(a.info, empty)


def test_an_import_is_split_by_patient_and_unidentified_files_stay_together():
    images = {"a": vol("a", pid="P1"), "n1": vol("n1"), "b": vol("b", pid="P2"), "a2": vol("a2", pid="P1"),
              "n2": vol("n2")}
    groups = group_by_patient(images)
    assert [sorted(g) for g in groups] == [["a", "a2"], ["n1", "n2"], ["b"]]


def test_the_first_series_records_the_case_and_later_ones_are_added():
    s = Session(PlanDocument(Plan(), user="dr"))
    assert case_is_empty(s.document.plan.case)
    s.add_images({"t2": vol("t2", pid="P1", name="DOE^JANE", study="1.2.9")})
    case = s.document.plan.case
    assert (case.patient_id, case.patient_name, case.study_instance_uid, case.study_date) == \
        ("P1", "DOE^JANE", "1.2.9", "20240102")
    ref = case.series[0]
    assert (ref.series_instance_uid, ref.role, ref.description, ref.number_of_images, ref.path_hint) == \
        ("t2", "T2", "SAG T2", 4, "/cd/t2")
    assert s.document.undo_text == "Edit case details"
    s.add_images({"ax": vol("ax", pid="P1", desc="AX T2", direction=AXIAL)})  # same patient, another study
    assert [r.series_instance_uid for r in s.document.plan.case.series] == ["t2", "ax"]
    assert s.document.plan.case.series[1].role == "AX_T2" and s.document.plan.case.study_instance_uid == "1.2.9"


def test_images_of_another_patient_are_refused_and_nothing_is_added():
    s = Session(PlanDocument(Plan(), user="dr"))
    s.add_images({"t2": vol("t2", pid="P1")})
    with pytest.raises(OtherPatientError, match="another patient"):
        s.add_images({"ct": vol("ct", pid="P2", modality="CT")})
    with pytest.raises(OtherPatientError):
        s.add_images({"nifti": vol("nifti")})  # no identity at all: another patient
    assert list(s.images) == ["t2"] and len(s.document.plan.case.series) == 1
    # one import holding two patients is refused as a whole, even by an empty session
    empty = Session(PlanDocument(Plan(), user="dr"))
    with pytest.raises(OtherPatientError):
        empty.add_images({"a": vol("a", pid="P1"), "b": vol("b", pid="P2")})
    assert not empty.images
    # the plan's own series always belong to it (a plan reopened, its images found again)
    plan = Plan()
    plan.case.patient_id = "P1"
    plan.case.series = [SeriesRef(series_instance_uid="old", role="T2")]
    reopened = Session(PlanDocument(plan, user="dr", read_only=True))
    assert reopened.add_images({"old": vol("old")}) == 1 and not reopened.document.is_dirty


def test_the_first_edit_records_the_case_in_the_same_undo_step():
    s = Session(PlanDocument(Plan(), user="dr"))
    s.add_image("t2", vol("t2", pid="P1"))  # one image added directly: nothing recorded yet
    assert not s.document.plan.case.series
    s.document.add_level("L4", Landmarks(body_center_lps=(0.0, 0.0, 0.0)))
    assert [r.series_instance_uid for r in s.document.plan.case.series] == ["t2"]
    assert s.document.plan.case.patient_id == "P1" and len(s.document._undo) == 1
    s.document.undo()
    assert not s.document.plan.levels and not s.document.plan.case.series


def test_series_roles_from_modality_values_description_and_direction():
    assert series_role(vol("a", desc="SAG T1 TSE")) == "T1"
    assert series_role(vol("b", desc="AX T2", direction=AXIAL)) == "AX_T2"
    assert series_role(vol("c", desc="STIR")) == "STIR"
    assert series_role(vol("d", modality="CT", desc="Body")) == "CT"
    # no modality tag (research file): air at about -1000 makes it a CT
    assert series_role(vol("e", modality="", desc="", values=(-1024, 1500))) == "CT"
    assert series_role(vol("f", modality="", desc="", values=(0, 255))) == ""
