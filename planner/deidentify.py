"""De-identification for teaching exports: DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile, with the Retain Longitudinal Temporal Information with Modified Dates option.

One :class:`Deidentifier` is used for a whole export so that

* every original UID maps to the same new UID in every file and in the plan (Study, Series, SOP
  Instance, Frame of Reference and referenced UIDs), and standard UIDs (SOP classes, transfer
  syntaxes, coding schemes) are kept;
* all dates are shifted by the same number of days (the birth date is removed);
* the patient gets a pseudonym (a name and an ID) instead of empty fields, so viewers still load
  the data (viewer-conventions.md 1.12).

What is done to a DICOM dataset (:meth:`Deidentifier.dataset`):

* the attributes of the profile's table are removed (X), emptied (Z) or replaced (D/U), see
  :data:`ACTIONS`; all private tags are removed; overlays and curves are removed;
* any other person name left anywhere (also inside sequences) is emptied, any other non-standard UID
  is replaced through the map, any other date (DA, DT) is shifted;
* Patient Identity Removed = YES, De-identification Method (text and codes), Longitudinal Temporal
  Information Modified = MODIFIED.

Not done: text burned into the pixels (fluoroscopy and secondary captures often carry it) is **not**
removed; the export's README says so.

What is done to a plan (:meth:`Deidentifier.plan`): the case fields are replaced like their DICOM
counterparts, series and instance UIDs go through the same map, series descriptions and path hints are
cleared, time stamps are shifted, and every text in the plan (comments, notes, labels, override
reasons, the audit trail) is scrubbed of the patient's name parts, ID, accession number and birth
date. Staff names (authors of comments, reviewers) stay. Sign-offs that were current stay current.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import date, datetime, timedelta
from typing import Any, Callable, Optional

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from planner.plan import Plan

#: DICOM attributes of PS3.15 Table E.1-1 handled by the Basic Profile: keyword -> action.
#: X remove, Z empty, D replace with a dummy, U replace UID (consistently), S shift date (the Modified
#: Dates option), P pseudonym.
ACTIONS: dict[str, str] = {
    # patient
    "PatientName": "P", "PatientID": "P", "PatientBirthDate": "Z", "PatientBirthTime": "X", "PatientSex": "Z",
    "PatientAge": "X", "PatientSize": "X", "PatientWeight": "X", "PatientAddress": "X", "PatientBirthName": "X",
    "PatientMotherBirthName": "X", "PatientTelephoneNumbers": "X", "PatientComments": "X",
    "PatientInstitutionResidence": "X", "PatientReligiousPreference": "X", "PatientState": "X",
    "PatientTransportArrangements": "X", "PatientInsurancePlanCodeSequence": "X",
    "PatientPrimaryLanguageCodeSequence": "X", "PatientPrimaryLanguageModifierCodeSequence": "X",
    "PatientSexNeutered": "X", "OtherPatientIDs": "X", "OtherPatientIDsSequence": "X", "OtherPatientNames": "X",
    "IssuerOfPatientID": "X", "IssuerOfPatientIDQualifiersSequence": "X", "EthnicGroup": "X", "Occupation": "X",
    "MilitaryRank": "X", "BranchOfService": "X", "CountryOfResidence": "X", "RegionOfResidence": "X",
    "MedicalRecordLocator": "X", "MedicalAlerts": "X", "Allergies": "X", "AdditionalPatientHistory": "X",
    "LastMenstrualDate": "X", "PregnancyStatus": "X", "SmokingStatus": "X", "SpecialNeeds": "X",
    "ResponsiblePerson": "X", "ResponsibleOrganization": "X", "ReferencedPatientSequence": "X",
    "ReferencedPatientAliasSequence": "X", "ReferencedPatientPhotoSequence": "X",
    "ConfidentialityConstraintOnPatientDataDescription": "X", "PatientSpeciesDescription": "K",
    # visit, admission, request
    "AdmissionID": "X", "IssuerOfAdmissionID": "X", "AdmittingDate": "X", "AdmittingTime": "X",
    "AdmittingDiagnosesDescription": "X", "AdmittingDiagnosesCodeSequence": "X", "DischargeDiagnosisDescription": "X",
    "CurrentPatientLocation": "X", "VisitComments": "X", "ServiceEpisodeID": "X", "ServiceEpisodeDescription": "X",
    "IssuerOfServiceEpisodeID": "X", "InsurancePlanIdentification": "X", "ReasonForStudy": "X",
    "ReasonForTheImagingServiceRequest": "X", "RequestAttributesSequence": "X", "RequestedProcedureComments": "X",
    "RequestedProcedureDescription": "X", "RequestedProcedureID": "X", "RequestedProcedureLocation": "X",
    "RequestedContrastAgent": "X", "RequestingPhysician": "X", "RequestingService": "X",
    "ImagingServiceRequestComments": "X", "OrderCallbackPhoneNumber": "X", "OrderEnteredBy": "X",
    "OrderEntererLocation": "X", "PlacerOrderNumberImagingServiceRequest": "X",
    "FillerOrderNumberImagingServiceRequest": "X", "PreMedication": "X",
    # study
    "StudyInstanceUID": "U", "StudyID": "Z", "StudyDate": "S", "StudyTime": "K", "AccessionNumber": "Z",
    "IssuerOfAccessionNumberSequence": "X", "StudyDescription": "X", "StudyComments": "X", "StudyIDIssuer": "X",
    "ReferringPhysicianName": "Z", "ReferringPhysicianAddress": "X", "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X", "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X", "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X", "ReferencedStudySequence": "X",
    "ConsultingPhysicianName": "X", "ConsultingPhysicianIdentificationSequence": "X",
    # series, equipment, acquisition
    "SeriesInstanceUID": "U", "SeriesDescription": "X", "ProtocolName": "X", "OperatorsName": "X",
    "OperatorIdentificationSequence": "X", "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X", "PerformedLocation": "X", "PerformedStationName": "X",
    "PerformedStationAETitle": "X", "PerformedProcedureStepStartDate": "X", "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X", "PerformedProcedureStepEndTime": "X",
    "ReferencedPerformedProcedureStepSequence": "X", "ActualHumanPerformersSequence": "X",
    "HumanPerformerName": "X", "HumanPerformerOrganization": "X", "ScheduledHumanPerformersSequence": "X",
    "ScheduledPerformingPhysicianName": "X", "ScheduledPerformingPhysicianIdentificationSequence": "X",
    "ScheduledProcedureStepDescription": "X", "ScheduledProcedureStepID": "X", "ScheduledProcedureStepLocation": "X",
    "ScheduledProcedureStepStartDate": "X", "ScheduledProcedureStepStartTime": "X",
    "ScheduledProcedureStepEndDate": "X", "ScheduledProcedureStepEndTime": "X", "ScheduledStationName": "X",
    "ScheduledStationAETitle": "X", "ScheduledStudyLocation": "X", "ScheduledStudyLocationAETitle": "X",
    "ScheduledPatientInstitutionResidence": "X", "InstitutionName": "X", "InstitutionAddress": "X",
    "InstitutionCodeSequence": "X", "InstitutionalDepartmentName": "X", "InstitutionalDepartmentTypeCodeSequence": "X",
    "StationName": "X", "DeviceSerialNumber": "X", "DeviceUID": "U", "DetectorID": "X", "GantryID": "X",
    "GeneratorID": "X", "CassetteID": "X", "PlateID": "X", "SourceSerialNumber": "X", "DeviceDescription": "X",
    "ModifyingDeviceID": "X", "ModifyingDeviceManufacturer": "X", "SoftwareVersions": "X",
    "AcquisitionDeviceProcessingDescription": "X", "AcquisitionComments": "X", "AcquisitionContextSequence": "X",
    "ContributionDescription": "X", "ContributingEquipmentSequence": "X", "DateOfLastCalibration": "X",
    "TimeOfLastCalibration": "X", "DateOfLastDetectorCalibration": "X",
    # image and instance
    "SOPInstanceUID": "U", "MediaStorageSOPInstanceUID": "U", "FrameOfReferenceUID": "U",
    "ReferencedFrameOfReferenceUID": "U", "RelatedFrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U", "InstanceCreatorUID": "U", "IrradiationEventUID": "U",
    "StorageMediaFileSetUID": "U", "TransactionUID": "U", "ReferencedSOPInstanceUID": "U", "UID": "U",
    "ImageComments": "X", "FrameComments": "X", "DerivationDescription": "X", "ImagePresentationComments": "X",
    "IdentifyingComments": "X", "TextComments": "X", "TextString": "X", "OverlayComments": "X",
    "IconImageSequence": "X", "GraphicAnnotationSequence": "X", "ModifiedImageDescription": "X",
    "ContentCreatorName": "Z", "ContentCreatorIdentificationCodeSequence": "X", "ContentSequence": "X",
    "AuthorObserverSequence": "X", "ParticipantSequence": "X", "VerifyingObserverSequence": "X",
    "VerifyingObserverName": "X", "VerifyingObserverIdentificationCodeSequence": "X", "VerifyingOrganization": "X",
    "PersonName": "X", "PersonAddress": "X", "PersonTelephoneNumbers": "X", "PersonIdentificationCodeSequence": "X",
    "ReviewerName": "X", "DistributionName": "X", "DistributionAddress": "X", "CustodialOrganizationSequence": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X", "NamesOfIntendedRecipientsOfResults": "X",
    "InterpretationApproverSequence": "X", "InterpretationAuthor": "X", "InterpretationDiagnosisDescription": "X",
    "InterpretationIDIssuer": "X", "InterpretationRecorder": "X", "InterpretationText": "X",
    "InterpretationTranscriber": "X", "PhysicianApprovingInterpretation": "X", "Impressions": "X",
    "ResultsComments": "X", "ResultsDistributionListSequence": "X", "ResultsIDIssuer": "X",
    "TopicAuthor": "X", "TopicKeywords": "X", "TopicSubject": "X", "TopicTitle": "X", "Arbitrary": "X",
    "DigitalSignaturesSequence": "X", "MAC": "X", "ReferencedDigitalSignatureSequence": "X",
    "ReferencedSOPInstanceMACSequence": "X", "DataSetTrailingPadding": "X", "OriginalAttributesSequence": "X",
    "ModifiedAttributesSequence": "X", "RequestedSOPInstanceUID": "U", "TimezoneOffsetFromUTC": "X",
    "SourceApplicationEntityTitle": "X", "SendingApplicationEntityTitle": "X", "ReceivingApplicationEntityTitle": "X",
}

#: De-identification Method Code Sequence values (PS3.16 CID 7050).
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
#: De-identification Method (LO, up to 64 characters per value).
METHOD_TEXT = ["BVN Planner: DICOM PS3.15 Annex E Basic Profile",
               "Retain Longitudinal Temporal Info. Modified Dates Option",
               "Private tags removed", "UIDs replaced consistently", "Pseudonym for patient name and ID",
               "Burned-in pixel text NOT removed"]


#: Namespace of the name-based (version 5) UUIDs behind derived UIDs; a fixed project constant.
_UID_NAMESPACE = uuid.UUID("6f1c9d2e-4b7a-5c3e-9a1d-2b3c4d5e6f70")


def derived_uid(*parts: str) -> str:
    """A UUID-derived UID (2.25.<uuid>, PS3.5 B.2) that is the same for the same parts."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(0).join(parts)).int}"


def _standard_uid(value: str) -> bool:
    """True for UIDs defined by the standard (SOP classes, transfer syntaxes, coding schemes...)."""
    return UID(value).name != value or value.startswith("1.2.840.10008.")


class Deidentifier:
    """Consistent replacements for one export."""

    def __init__(self, *, key: Optional[str] = None, date_shift_days: Optional[int] = None,
                 pseudonym_name: Optional[str] = None, pseudonym_id: Optional[str] = None) -> None:
        self.key = key or secrets.token_hex(16)
        digest = hashlib.sha256(self.key.encode()).hexdigest()
        #: Days added to every date (negative: into the past).
        self.date_shift_days = date_shift_days if date_shift_days is not None else -(365 + int(digest[:6], 16) % 3650)
        tag = digest[6:12].upper()
        self.pseudonym_name = pseudonym_name or f"Teaching^Case {tag}"
        self.pseudonym_id = pseudonym_id or f"BVN-{tag}"
        self.uid_map: dict[str, str] = {}
        #: Identifying strings to scrub from free text: original name parts, IDs, dates.
        self.identifiers: set[str] = set()

    # ------------------------------------------------------------------ replacements
    def uid(self, original: str) -> str:
        original = str(original).strip()
        if not original or _standard_uid(original):
            return original
        if original not in self.uid_map:
            self.uid_map[original] = derived_uid(self.key, original)
        return self.uid_map[original]

    def shift_date(self, value: str) -> str:
        """Shift a DICOM DA (YYYYMMDD) or the date part of a DT; other values are emptied."""
        v = str(value).strip()
        if not v:
            return v
        m = re.match(r"^(\d{4})-?(\d{2})-?(\d{2})(.*)$", v)
        if not m:
            return ""
        try:
            d = date(int(m.group(1)), int(m.group(2)), int(m.group(3))) + timedelta(days=self.date_shift_days)
        except ValueError:
            return ""
        dashed = "-" in v[:8]
        return (d.isoformat() if dashed else d.strftime("%Y%m%d")) + m.group(4)

    def shift_iso(self, stamp: str) -> str:
        """Shift an ISO 8601 time stamp (the plan's created/modified/comment times)."""
        try:
            dt = datetime.fromisoformat(stamp)
        except (TypeError, ValueError):
            return self.shift_date(stamp) if stamp else stamp
        return (dt + timedelta(days=self.date_shift_days)).isoformat(timespec="seconds")

    def remember(self, *values: str) -> None:
        """Identifying strings (names, IDs, dates) to scrub from free text."""
        for v in values:
            v = str(v or "").strip()
            if not v:
                continue
            parts = [v] + [p for p in re.split(r"[\^=,\s]+", v) if p]
            for p in parts:
                if len(p) >= 3 and p.lower() not in ("dr", "mr", "mrs", "ms", "the", "and"):
                    self.identifiers.add(p)
            if re.fullmatch(r"\d{8}", v):
                self.identifiers.add(f"{v[:4]}-{v[4:6]}-{v[6:]}")
                self.identifiers.add(f"{v[6:]}.{v[4:6]}.{v[:4]}")
                self.identifiers.add(f"{v[6:]}/{v[4:6]}/{v[:4]}")
                self.identifiers.add(f"{v[4:6]}/{v[6:]}/{v[:4]}")

    def scrub(self, text: str) -> str:
        for ident in sorted(self.identifiers, key=len, reverse=True):
            text = re.sub(re.escape(ident), "[removed]", text, flags=re.IGNORECASE)
        return text

    def remember_dataset(self, ds: Dataset) -> None:
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "OtherPatientIDs",
                   "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName"):
            value = ds.get(kw)
            if value in (None, ""):
                continue
            for v in (list(value) if isinstance(value, MultiValue) else [value]):
                self.remember(str(v))

    # ------------------------------------------------------------------ DICOM
    def dataset(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and its file meta); returns it."""
        self.remember_dataset(ds)
        ds.remove_private_tags()
        for tag in [t for t in ds.keys() if t_is_curve_or_overlay(t)]:
            del ds[tag]
        self._walk(ds, top=True)
        ds.PatientName = self.pseudonym_name
        ds.PatientID = self.pseudonym_id
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD_TEXT
        codes = []
        for value, meaning in METHOD_CODES:
            c = Dataset()
            c.CodeValue = value
            c.CodingSchemeDesignator = "DCM"
            c.CodeMeaning = meaning
            codes.append(c)
        ds.DeidentificationMethodCodeSequence = codes
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "MediaStorageSOPInstanceUID" in meta:
                meta.MediaStorageSOPInstanceUID = self.uid(meta.MediaStorageSOPInstanceUID)
            for kw in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                       "ReceivingApplicationEntityTitle", "PrivateInformation", "PrivateInformationCreatorUID"):
                if kw in meta:
                    del meta[kw]
        return ds

    def _walk(self, ds: Dataset, top: bool = False) -> None:
        for elem in list(ds):
            kw = elem.keyword
            action = ACTIONS.get(kw)
            if action == "X":
                del ds[elem.tag]
                continue
            if action == "Z":
                elem.value = "" if elem.VR != "SQ" else DicomSequence([])
                continue
            if action == "P":
                continue  # set after the walk
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item)
                continue
            if action == "U" or elem.VR == "UI":
                if elem.VM > 1:
                    elem.value = [self.uid(v) for v in elem.value]
                elif elem.value:
                    elem.value = self.uid(elem.value)
                continue
            if action == "S" or elem.VR in ("DA", "DT"):
                if elem.VM > 1:
                    elem.value = [self.shift_date(v) for v in elem.value]
                elif elem.value:
                    elem.value = self.shift_date(elem.value)
                continue
            if elem.VR == "PN":
                elem.value = ""
                continue
            if elem.VR in ("LO", "SH", "ST", "LT", "UT", "UC") and isinstance(elem.value, str) and self.identifiers:
                elem.value = self.scrub(elem.value)

    # ------------------------------------------------------------------ plan
    def plan(self, plan: Plan) -> Plan:
        """A de-identified copy of ``plan`` (the original is not changed)."""
        c = plan.case
        self.remember(c.patient_name, c.patient_id, c.patient_birth_date, c.accession_number)
        signed_current = [plan.signoff_is_current(s) for s in plan.review.signoffs]
        out = plan.model_copy(deep=True)
        oc = out.case
        oc.patient_name = self.pseudonym_name
        oc.patient_id = self.pseudonym_id
        oc.patient_birth_date = ""
        oc.patient_sex = ""
        oc.study_instance_uid = self.uid(c.study_instance_uid) if c.study_instance_uid else ""
        oc.study_date = self.shift_date(c.study_date)
        oc.study_description = ""
        oc.accession_number = ""
        oc.institution = ""
        for ref in oc.series:
            ref.series_instance_uid = self.uid(ref.series_instance_uid)
            ref.frame_of_reference_uid = self.uid(ref.frame_of_reference_uid) if ref.frame_of_reference_uid else ""
            ref.description = ""
            ref.path_hint = ""
        for m in out.measurements:
            m.series_instance_uid = self.uid(m.series_instance_uid) if m.series_instance_uid else ""
            m.sop_instance_uid = self.uid(m.sop_instance_uid) if m.sop_instance_uid else ""
        for lm in out.fluoro_landmarks:
            lm.sop_instance_uid = self.uid(lm.sop_instance_uid)
        for cal in out.fluoro_calibrations:
            cal.sop_instance_uid = self.uid(cal.sop_instance_uid)
        out.created = self.shift_iso(out.created)
        out.modified = self.shift_iso(out.modified)
        for cm in out.review.comments:
            cm.created = self.shift_iso(cm.created)
        for s in out.review.signoffs:
            s.signed_at = self.shift_iso(s.signed_at)
        for a in out.audit:
            a.at = self.shift_iso(a.at)
        data = _map_strings(out.model_dump(mode="json"), self.scrub, skip=_SCRUB_SKIP)
        clean = Plan.model_validate(data)
        digest = clean.content_hash()
        for s, was_current in zip(clean.review.signoffs, signed_current):
            if was_current:
                s.content_hash = digest
        return clean


#: Plan fields never scrubbed (identifiers and machine values).
_SCRUB_SKIP = {"format", "units", "coordinate_frame", "plan_id", "id", "level_id", "anchor_id", "content_hash",
               "series_instance_uid", "sop_instance_uid", "frame_of_reference_uid", "study_instance_uid",
               "patient_name", "patient_id"}


def _map_strings(value: Any, fn: Callable[[str], str], skip: set[str], key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _map_strings(v, fn, skip, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn, skip, key) for v in value]
    if isinstance(value, str) and key not in skip:
        return fn(value)
    return value


def t_is_curve_or_overlay(tag: Any) -> bool:
    """Curve data (50xx) and overlays (60xx) are removed by the profile."""
    return (tag.group & 0xFF00) in (0x5000, 0x6000)
