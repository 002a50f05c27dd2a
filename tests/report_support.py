"""Synthetic images and plans for the document tests (report, sheet, DICOM export, de-identification).

The volume is a CT-like phantom matching tests/plan_factory.box_landmarks: box vertebral bodies
50 x 35 mm (width x depth) and 25 mm high centred at (0, 0, z), with a spinal canal behind them, on
a 1 mm grid. Patient names used here are unusual on purpose, so a scan for them cannot hit by chance.
"""

from __future__ import annotations

import numpy as np

from planner.imaging.volume import ImageInfo, ProjectionGeometry, ProjectionImage, Volume, make_ijk_to_lps
from planner.plan import (
    Comment,
    FluoroLandmark,
    Measurement,
    ModicSuggestion,
    SeriesRef,
    SignOff,
)
from tests.plan_factory import sample_plan

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
CT_SERIES_UID = "1.2.826.0.1.3680043.8.498.1002"
FLUORO_SERIES_UID = "1.2.826.0.1.3680043.8.498.1003"
FLUORO_SOP_UID = "1.2.826.0.1.3680043.8.498.1004"
FOR_UID = "1.2.826.0.1.3680043.8.498.1005"
PATIENT_FAMILY = "Zyxwortová"
PATIENT_GIVEN = "Quillane"
PATIENT_NAME = f"{PATIENT_FAMILY}^{PATIENT_GIVEN}"
PATIENT_ID = "QZ-778899-K"
BIRTH_DATE = "19630417"


def phantom_volume(series_uid: str = CT_SERIES_UID) -> Volume:
    origin = np.array([-60.0, -50.0, -110.0])
    shape_ijk = (121, 121, 141)
    ijk_to_lps = make_ijk_to_lps(origin, np.eye(3), (1.0, 1.0, 1.0))
    i = np.arange(shape_ijk[0]) + origin[0]
    j = np.arange(shape_ijk[1]) + origin[1]
    k = np.arange(shape_ijk[2]) + origin[2]
    z, y, x = np.meshgrid(k, j, i, indexing="ij")
    arr = np.full(z.shape, -80.0, dtype=np.float32)
    for zc in (0.0, -40.0, -80.0):
        body = (np.abs(x) <= 25) & (np.abs(y) <= 17.5) & (np.abs(z - zc) <= 12.5)
        arr[body] = 250.0
        shell = body & ~((np.abs(x) <= 23) & (np.abs(y) <= 15.5) & (np.abs(z - zc) <= 10.5))
        arr[shell] = 900.0
        for sx in (12.0, -12.0):  # pedicles
            ped = ((x - sx) ** 2 / 16 + (z - zc - 3) ** 2 / 36 <= 1) & (y > 17.5) & (y < 32)
            arr[ped] = 700.0
        lamina = (np.abs(x) <= 18) & (y >= 32) & (y <= 38) & (np.abs(z - zc) <= 10)
        arr[lamina] = 700.0
    info = ImageInfo(modality="CT", study_instance_uid=STUDY_UID, series_instance_uid=series_uid,
                     frame_of_reference_uid=FOR_UID, series_description="Phantom CT", patient_name=PATIENT_NAME,
                     patient_id=PATIENT_ID)
    return Volume(arr, ijk_to_lps, info)


def fluoro_image() -> ProjectionImage:
    rows, cols = 256, 256
    yy, xx = np.mgrid[0:rows, 0:cols]
    frame = (1000 + 800 * np.exp(-((xx - 128) ** 2 + (yy - 128) ** 2) / 3000.0)).astype(np.uint16)
    info = ImageInfo(modality="RF", study_instance_uid=STUDY_UID, series_instance_uid=FLUORO_SERIES_UID,
                     sop_instance_uids=[FLUORO_SOP_UID])
    return ProjectionImage(frame, ProjectionGeometry(imager_pixel_spacing=(0.3, 0.3), view_position="LAT"), info)


def rich_plan():
    """sample_plan() with patient data, series, findings, two trajectories, review and fluoroscopy."""
    plan = sample_plan()
    c = plan.case
    c.patient_name = PATIENT_NAME
    c.patient_id = PATIENT_ID
    c.patient_birth_date = BIRTH_DATE
    c.patient_sex = "F"
    c.study_instance_uid = STUDY_UID
    c.study_date = "20240311"
    c.study_description = "LUMBAR SPINE"
    c.accession_number = "ACC-55321"
    c.institution = "Hospital Ñandú"
    c.series = [SeriesRef(series_instance_uid=CT_SERIES_UID, modality="CT", description="Phantom CT",
                          frame_of_reference_uid=FOR_UID, role="CT", number_of_images=141),
                SeriesRef(series_instance_uid=FLUORO_SERIES_UID, modality="RF", description="Lateral",
                          role="FLUORO_LAT", number_of_images=1)]
    l3, l4, l5 = plan.levels
    l4.painful = True
    l4.inferior.grade = "B"
    l4.inferior.share_pct = 35.0
    l4.inferior.confirmed = True
    l5.treat = True
    l5.painful = True
    l5.superior.modic_type = "2"
    l5.superior.grade = "A"
    l5.superior.share_pct = 20.0
    l5.superior.suggestion = ModicSuggestion(modic_type="2", grade="A", share_pct=18.0,
                                             ratios={"T1": 1.3, "T2": 1.2}, explanation="bright on T1 and T2")
    l3.notes = "Disc height preserved"
    t1 = plan.trajectories[0]
    t1.label = "primary"
    from planner.plan import Trajectory

    t2 = Trajectory(level_id=l5.id, side="right", entry_lps=(-15.0, 40.0, -80.0), bend_lps=(-8.0, 15.0, -80.0),
                    target_lps=(0.0, 4.0, -80.0),
                    override_reason="Canal margin 8 mm accepted: narrow body, discussed with the team")
    plan.trajectories.append(t2)
    plan.eligibility.answers = {"pain_duration_months": 14.0, "conservative_care_months": 9.0, "odi": 44.0,
                                "vas": 7.0, "axial_pain": True, "radicular_pain": False}
    # Lateral view of L4: posterior wall on the right, 100 px for its 35 mm depth, mid-height at row 128.
    plan.fluoro_landmarks.append(FluoroLandmark(sop_instance_uid=FLUORO_SOP_UID, level_id=l4.id,
                                                kind="posterior_wall", point_px=(170.0, 128.0)))
    plan.fluoro_landmarks.append(FluoroLandmark(sop_instance_uid=FLUORO_SOP_UID, level_id=l4.id,
                                                kind="anterior_wall", point_px=(70.0, 128.0)))
    plan.measurements.append(Measurement(kind="distance", sop_instance_uid=FLUORO_SOP_UID,
                                         points_px=[(60.0, 60.0), (160.0, 60.0)], label="AP depth"))
    plan.review.comments.append(Comment(author="Dr Reviewer", anchor_kind="trajectory", anchor_id=t1.id,
                                        text="Consider 2 mm more medial entry."))
    plan.review.comments.append(Comment(author="Fellow A", anchor_kind="level", anchor_id=l5.id,
                                        text="Type 2 change clearly visible on T1."))
    plan.review.signoffs.append(SignOff(reviewer="Dr Reviewer", content_hash=plan.content_hash()))
    return plan


def reviewed_plan():
    """rich_plan() whose every trajectory has a recorded reason for going on, as the exports require when
    the image checks cannot be measured (the documents' tests run without the plan's images)."""
    plan = rich_plan()
    for t in plan.trajectories:
        t.override_reason = t.override_reason or "Checked on the images at the workstation"
    return plan


# ------------------------------------------------------------------------------------ DICOM sources
ACCESSION = "ACC-55321"
INSTITUTION = "Hospital Ñandú"
DEVICE_SERIAL = "SN-99173-X"
OPERATOR = "Tech^Operator"


def _identified_header(ds, modality: str, series_uid: str, series_number: int) -> None:
    from pydicom.uid import ExplicitVRLittleEndian

    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "F"
    ds.PatientAge = "061Y"
    ds.OtherPatientIDs = "OLD-" + PATIENT_ID
    ds.PatientAddress = f"1 Calle {PATIENT_FAMILY}, Ciudad"
    ds.StudyInstanceUID = STUDY_UID
    ds.StudyDate = "20240311"
    ds.StudyTime = "101500"
    ds.StudyID = "S7781"
    ds.AccessionNumber = ACCESSION
    ds.ReferringPhysicianName = "Referrer^Robert"
    ds.StudyDescription = "LUMBAR SPINE"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate = "20240311"
    ds.Modality = modality
    ds.InstitutionName = INSTITUTION
    ds.StationName = "CT-ROOM-2"
    ds.DeviceSerialNumber = DEVICE_SERIAL
    ds.OperatorsName = OPERATOR
    ds.Manufacturer = "PhantomWorks"
    ds.ImageComments = f"patient {PATIENT_FAMILY} follow-up"
    ds.add_new(0x00110010, "LO", "ACME PRIVATE")
    ds.add_new(0x00111001, "LO", f"{PATIENT_FAMILY}^{PATIENT_GIVEN} {PATIENT_ID}")


def write_phantom_dicom(folder, step: int = 4):
    """Write the phantom CT as DICOM slices (every ``step``-th slice) with identifying headers; returns the
    Volume read back (ijk_to_lps from the headers) with source files and SOP Instance UIDs set."""
    from pathlib import Path

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vol = phantom_volume()
    arr = vol.array[::step]
    sop_uids, files = [], []
    for k in range(arr.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
        _identified_header(ds, "CT", CT_SERIES_UID, 3)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.FrameOfReferenceUID = FOR_UID
        ds.InstanceNumber = k + 1
        z = float(vol.origin[2] + k * step)
        ds.ImagePositionPatient = [float(vol.origin[0]), float(vol.origin[1]), z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = float(step)
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.PixelData = np.ascontiguousarray(arr[k].astype(np.int16)).tobytes()
        path = folder / f"CT{k:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        sop_uids.append(sop)
        files.append(str(path))
    ijk = make_ijk_to_lps(vol.origin, np.eye(3), (1.0, 1.0, float(step)))
    info = ImageInfo(modality="CT", study_instance_uid=STUDY_UID, series_instance_uid=CT_SERIES_UID,
                     frame_of_reference_uid=FOR_UID, patient_name=PATIENT_NAME, patient_id=PATIENT_ID,
                     sop_instance_uids=sop_uids, source_files=files)
    return Volume(np.ascontiguousarray(arr), ijk, info)


def write_fluoro_dicom(folder):
    """One RF frame with identifying headers, as a DICOM file; returns the ProjectionImage."""
    from pathlib import Path

    from pydicom.dataset import FileDataset, FileMetaDataset

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proj = fluoro_image()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.2"  # X-Ray Radiofluoroscopic Image Storage
    meta.MediaStorageSOPInstanceUID = FLUORO_SOP_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    _identified_header(ds, "RF", FLUORO_SERIES_UID, 4)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = FLUORO_SOP_UID
    ds.InstanceNumber = 1
    ds.ImagerPixelSpacing = [0.3, 0.3]
    ds.ViewPosition = "LAT"
    frame = proj.frames[0]
    ds.Rows, ds.Columns = frame.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(frame.astype(np.uint16)).tobytes()
    path = folder / "RF0001.dcm"
    ds.save_as(str(path), enforce_file_format=True)
    proj.info.source_files = [str(path)]
    return proj


# ------------------------------------------------------------------------------------ a plan on the real CT
def ct_example_plan(path, treat=(("L4", "left"), ("L5", "right"))):
    """Plan L4 (left) and L5 (right) on a CT volume the way a physician would with the app: the level finder
    proposes the levels (no click on CT), L4 and L5 are marked to treat, and suggest_trajectory suggests the
    trajectories on the CT (entry on the dorsal bone surface). No Modic finding is recorded (a CT does not
    show it). Returns (plan, images) with images mapping the series key to the loaded volume."""
    from planner.imaging.importer import load_path
    from planner.levels import propose_levels
    from planner.plan import CaseInfo, Plan, SeriesRef
    from planner.trajectory import suggest_trajectory

    result = load_path(path)
    if len(result.images) != 1:
        raise ValueError(f"{path}: expected one CT volume, found {len(result.images)}")
    [(key, volume)] = list(result.images.items())
    plan = Plan(levels=propose_levels(volume, modality="CT"))
    uid = volume.info.series_instance_uid or key
    plan.case = CaseInfo(patient_name="EXAMPLE^CT", patient_id="TOTALSEG-EXAMPLE",
                         series=[SeriesRef(series_instance_uid=uid, modality="CT", role="CT",
                                           description="example_ct (TotalSegmentator test data)",
                                           path_hint=str(path))])
    names = {name for name, _ in treat}
    for level in plan.levels:
        level.treat = level.name in names
    for name, side in treat:
        level = plan.level_by_name(name)
        if level is None:
            raise ValueError(f"{path}: the level finder found no {name}")
        plan.trajectories.append(suggest_trajectory(plan, level, side, volume))
    return plan, {uid: volume}
