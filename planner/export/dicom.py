"""DICOM export of a plan into the patient's study: the plan summary as an Encapsulated PDF, the key
images as Secondary Capture, and the plan as a Comprehensive 3D SR (:mod:`planner.export.sr`); with
``deidentify=True`` a teaching export of the plan and its images (:mod:`planner.deidentify`).

Every object goes into a new series of the plan's study. Patient and study attributes come from the
plan's case (the values the plan was made on) completed by the header of a source image of the same
study when one is available (Study ID, Study Time, Referring Physician). Without a Study Instance UID in
the plan a new study is created and the result says so.

Layout of the output folder::

    README.txt            what is in the folder (and, for teaching exports, what was removed)
    plan_summary.pdf      the plan summary (the same PDF as inside the DICOM object)
    dicom/PDF00001.dcm    Encapsulated PDF (series "BVN plan summary", modality DOC)
    dicom/SC000NN.dcm     Secondary Capture key images (series "BVN key images")
    dicom/KO00001.dcm     Key Object Selection of the key images (series "BVN key images (selection)")
    dicom/SR00001.dcm     Comprehensive 3D SR (series "BVN ablation plan (SR)")
    plan.bvnplan          teaching export only: the de-identified plan
    images/NNN/IMnnnnn.dcm  teaching export only: the de-identified source images
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from planner import APP_NAME, __version__
from planner.deidentify import Deidentifier, derived_uid
from planner.imaging.volume import ProjectionImage, Volume
from planner.plan import Plan
from planner.report.data import ReportData, build_report_data
from planner.report.keyimages import KeyImage
from planner.report.pdf import report_pdf_bytes
from planner.safefiles import temporary_folder
from planner.storage import save_plan

log = logging.getLogger(__name__)

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
MANUFACTURER = APP_NAME
#: Series numbers of the exported objects (high, to stay clear of the scanner's series).
SERIES_NUMBER = {"pdf": 9901, "sc": 9902, "sr": 9903, "ko": 9904}
#: Roles whose Frame of Reference the plan's coordinates are given in, in order of preference.
PLANNING_ROLES = ("T2", "T1", "STIR", "CT", "AX_T2")


class ExportError(RuntimeError):
    """The export cannot be made; ``str(exc)`` is a message for the user."""


@dataclass
class ExportResult:
    folder: Path
    pdf_file: Path
    pdf_dicom: Path
    key_image_files: list[Path]
    sr_file: Path
    plan_file: Optional[Path] = None
    #: the Key Object Selection document listing the key images (None when there are none)
    kos_file: Optional[Path] = None
    source_image_files: list[Path] = field(default_factory=list)
    readme: Optional[Path] = None
    notes: list[str] = field(default_factory=list)
    study_instance_uid: str = ""
    deidentified: bool = False

    @property
    def files(self) -> list[Path]:
        out = [self.pdf_file, self.pdf_dicom, *self.key_image_files, self.sr_file, *self.source_image_files]
        if self.kos_file:
            out.append(self.kos_file)
        if self.plan_file:
            out.append(self.plan_file)
        if self.readme:
            out.append(self.readme)
        return out

    @property
    def dicom_files(self) -> list[Path]:
        """The DICOM files of the export (what is sent to a PACS)."""
        return [self.pdf_dicom, *self.key_image_files, *([self.kos_file] if self.kos_file else []), self.sr_file,
                *self.source_image_files]

    def moved(self, old: Path, new: Path) -> "ExportResult":
        """This result with every path under ``old`` moved under ``new``."""

        def mv(path: Optional[Path]) -> Optional[Path]:
            if path is None:
                return None
            try:
                return new / Path(path).relative_to(old)
            except ValueError:
                return path

        return dataclasses.replace(
            self, folder=new, pdf_file=mv(self.pdf_file), pdf_dicom=mv(self.pdf_dicom),
            key_image_files=[mv(p) for p in self.key_image_files], sr_file=mv(self.sr_file),
            plan_file=mv(self.plan_file), source_image_files=[mv(p) for p in self.source_image_files],
            readme=mv(self.readme), kos_file=mv(self.kos_file))


# ------------------------------------------------------------------------------------ sources
def source_files(images: Optional[Mapping[str, Any]]) -> list[tuple[str, Path]]:
    """(series key, file) for every source file of the loaded images that still exists."""
    out = []
    for key, img in (images or {}).items():
        for f in getattr(img.info, "source_files", []) or []:
            p = Path(f)
            if p.is_file():
                out.append((key, p))
    return out


def read_headers(files: Sequence[tuple[str, Path]]) -> list[Dataset]:
    headers = []
    for _, path in files:
        try:
            headers.append(pydicom.dcmread(str(path), stop_before_pixels=True))
        except Exception as exc:  # a damaged source file must not stop the export
            log.warning("cannot read a source header: %s", type(exc).__name__)
    return headers


def source_references(headers: Sequence[Dataset], series_uid: Optional[str] = None) -> list[Dataset]:
    """Items of a Source Image / Source Instance Sequence (SOP class and instance) for the source images
    (only those of ``series_uid`` when given)."""
    items = []
    seen = set()
    for h in headers:
        if "SOPInstanceUID" not in h or "SOPClassUID" not in h:
            continue
        if series_uid and str(h.get("SeriesInstanceUID", "")) != series_uid:
            continue
        if str(h.SOPInstanceUID) in seen:
            continue
        seen.add(str(h.SOPInstanceUID))
        item = Dataset()
        item.ReferencedSOPClassUID = h.SOPClassUID
        item.ReferencedSOPInstanceUID = h.SOPInstanceUID
        items.append(item)
    return items


def planning_frame_of_reference(plan: Plan) -> str:
    refs = [r for r in plan.case.series if r.frame_of_reference_uid]
    for role in PLANNING_ROLES:
        for r in refs:
            if r.role == role:
                return r.frame_of_reference_uid
    if refs:
        return refs[0].frame_of_reference_uid
    # No frame of reference in the plan (e.g. research files): a stable one derived from the plan id.
    return derived_uid("bvn-planner-frame", plan.plan_id)


def reference_dataset(plan: Plan, headers: Sequence[Dataset], study_uid: str) -> Dataset:
    """Patient and study attributes shared by every exported object."""
    c = plan.case
    ref = Dataset()
    ref.SpecificCharacterSet = "ISO_IR 192"
    ref.PatientName = c.patient_name
    ref.PatientID = c.patient_id
    ref.PatientBirthDate = c.patient_birth_date
    ref.PatientSex = c.patient_sex if c.patient_sex in ("M", "F", "O") else ""
    ref.StudyInstanceUID = study_uid
    ref.StudyDate = c.study_date
    ref.StudyTime = ""
    ref.StudyID = ""
    ref.AccessionNumber = c.accession_number
    ref.ReferringPhysicianName = ""
    ref.StudyDescription = c.study_description
    same = next((h for h in headers if getattr(h, "StudyInstanceUID", "") == study_uid), None)
    if same is not None:
        for kw in ("StudyTime", "StudyID", "ReferringPhysicianName"):
            if kw in same:
                setattr(ref, kw, same.get(kw))
        if not c.study_date and same.get("StudyDate"):
            ref.StudyDate = same.StudyDate
    return ref


def _now() -> tuple[str, str]:
    now = datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


# ------------------------------------------------------------------------------------ objects
def encapsulated_pdf(pdf: bytes, ref: Dataset, *, series_uid: str, sop_uid: str, title: str,
                     institution: str = "", sources: Sequence[Dataset] = ()) -> FileDataset:
    """An Encapsulated PDF instance (PS3.3 A.45.1) in a new series of the reference's study; ``sources``
    (see :func:`source_references`) are the images it was made from (Source Instance Sequence)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.update(ref)
    today, now = _now()
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = SERIES_NUMBER["pdf"]
    ds.SeriesDescription = "BVN plan summary"
    ds.SeriesDate = today
    ds.SeriesTime = now
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    if institution:
        ds.InstitutionName = institution
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = today
    ds.ContentTime = now
    ds.AcquisitionDateTime = today + now
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    if sources:
        ds.SourceInstanceSequence = list(sources)
    return ds


_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def orientation_letter(vec_lps: Sequence[float]) -> str:
    v = np.asarray(vec_lps, dtype=float)
    i = int(np.argmax(np.abs(v)))
    return _LETTERS[i][0] if v[i] >= 0 else _LETTERS[i][1]


def key_image_orientation(key: KeyImage) -> Optional[tuple[str, str]]:
    if key.patient_orientation is not None:
        return key.patient_orientation
    if key.plane_u_lps is not None and key.plane_v_lps is not None:
        return orientation_letter(key.plane_u_lps), orientation_letter(key.plane_v_lps)
    if key.screen_axes_lps is not None:
        return orientation_letter(key.screen_axes_lps[0]), orientation_letter(key.screen_axes_lps[1])
    return None


def secondary_capture(key: KeyImage, ref: Dataset, *, series_uid: str, sop_uid: str, number: int,
                      institution: str = "", sources: Sequence[Dataset] = ()) -> Dataset:
    pixels = np.ascontiguousarray(np.asarray(key.image.convert("RGB"), dtype=np.uint8))
    orientation = key_image_orientation(key)
    sc = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        study_instance_uid=ref.StudyInstanceUID, series_instance_uid=series_uid,
        series_number=SERIES_NUMBER["sc"], sop_instance_uid=sop_uid, instance_number=number,
        manufacturer=MANUFACTURER, patient_id=ref.PatientID, patient_name=ref.PatientName,
        patient_birth_date=ref.PatientBirthDate, patient_sex=ref.PatientSex or None,
        accession_number=ref.AccessionNumber, study_id=ref.StudyID, study_date=ref.StudyDate or None,
        study_time=ref.StudyTime or None, referring_physician_name=ref.ReferringPhysicianName,
        patient_orientation=orientation or ("L", "P"), specific_character_set="ISO_IR 192")
    if orientation is None:
        sc.PatientOrientation = ""  # Type 2C: empty when not known (fluoroscopy without orientation)
    sc.ConversionType = "WSD"  # rendered on a workstation
    sc.SeriesDescription = "BVN key images"
    sc.BodyPartExamined = "LSPINE"  # the planning images are of the lumbar spine (PS3.16 CID 4031 defined term)
    sc.ImageComments = key.caption[:10240]
    sc.BurnedInAnnotation = "YES" if key.kind in ("fluoro", "3d") else "NO"
    if ref.get("StudyDescription"):
        sc.StudyDescription = ref.StudyDescription
    if institution:
        sc.InstitutionName = institution
    sc.SoftwareVersions = __version__
    if sources:  # the images the picture was rendered from
        sc.SourceImageSequence = list(sources)
        sc.DerivationDescription = f"Rendered by {APP_NAME} from the source images ({key.kind})"[:1024]
    return sc


def key_object_selection(key_images: Sequence[Dataset], ref: Dataset, *, series_uid: str, sop_uid: str,
                         institution: str = "", description: str = "") -> hd.ko.KeyObjectSelectionDocument:
    """A Key Object Selection document (PS3.3 A.35.4, title "Of Interest") listing the key images."""
    content = hd.ko.KeyObjectSelection(document_title=codes.DCM.OfInterest, referenced_objects=list(key_images),
                                       description=(description or "BVN plan key images")[:1024])
    ko = hd.ko.KeyObjectSelectionDocument(
        evidence=list(key_images), content=content, series_instance_uid=series_uid,
        series_number=SERIES_NUMBER["ko"], sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER,
        institution_name=institution or None)
    ko.SeriesDescription = "BVN key images (selection)"
    return ko


# ------------------------------------------------------------------------------------ de-identification
def _deid_image(img: Any, de: Deidentifier) -> Any:
    info = img.info
    new_info = dataclasses.replace(
        info, study_instance_uid=de.uid(info.study_instance_uid) if info.study_instance_uid else "",
        series_instance_uid=de.uid(info.series_instance_uid) if info.series_instance_uid else "",
        frame_of_reference_uid=de.uid(info.frame_of_reference_uid) if info.frame_of_reference_uid else "",
        sop_instance_uids=[de.uid(u) for u in info.sop_instance_uids], patient_name=de.pseudonym_name,
        patient_id=de.pseudonym_id, patient_birth_date="", patient_sex="", study_date="", study_description="",
        accession_number="", institution="", series_description="", source_files=[], extra={})
    if isinstance(img, Volume):
        return Volume(img.array, img.ijk_to_lps, new_info)
    if isinstance(img, ProjectionImage):
        return ProjectionImage(img.frames, img.geometry, new_info, img.frame_time_ms)
    return img


README_TEXT = """BVN Planner export ({kind})
Made {when} by {app} {version}.

plan_summary.pdf      plan summary (planning aid, not for navigation)
dicom/PDF00001.dcm    the same summary as a DICOM Encapsulated PDF (series "BVN plan summary")
dicom/SC*.dcm         key images as DICOM Secondary Capture (series "BVN key images"), {n_sc} image(s)
dicom/KO00001.dcm     a Key Object Selection document listing the key images (when there are key images)
dicom/SR00001.dcm     the plan as a DICOM Comprehensive 3D Structured Report (series "BVN ablation plan (SR)");
                      BVN Planner imports it back to the same plan (landmarks, trajectories, findings as 3D
                      coordinates in the planning frame of reference, plus an exact JSON copy of the plan)
{extra}"""

DEID_README = """plan.bvnplan          the de-identified plan (open it with BVN Planner; point it to the images/ folder)
images/               the de-identified source images ({n_src} file(s))

De-identification: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile, with the Retain
Longitudinal Temporal Information with Modified Dates Option. Patient name and ID are replaced by the
pseudonym {pseudonym} / {pseudonym_id}; the birth date, sex, institution, device serial numbers, staff names
in the images, descriptions and comments are removed; private tags are removed; all dates are shifted by the
same number of days; every UID is replaced by a new one, the same original UID always by the same new UID in
every file and in the plan. Comment authors and reviewers in the plan are staff and are kept.

IMPORTANT: text burned into the pixels of the images (fluoroscopy frames and screenshots often carry the
patient's name or the date) is NOT removed. Look at every image before sharing this folder.
"""


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a folder for the export")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"the folder {out} is not empty; choose a new or empty folder for the export")


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


@dataclass
class PreparedExport:
    """Everything a DICOM export writes, gathered in the first phase (:func:`prepare_export`): the plan
    (de-identified for a teaching export), its images, the source headers and the plan summary with its
    key images (rendered here, so this phase runs where VTK may render: the GUI thread)."""

    plan: Plan
    images: Optional[Mapping[str, Any]]
    files: list[tuple[str, Path]]
    headers: list[Dataset]
    report: ReportData
    study_uid: str
    deidentifier: Optional[Deidentifier] = None
    notes: list[str] = field(default_factory=list)

    @property
    def deidentified(self) -> bool:
        return self.deidentifier is not None

    @property
    def steps(self) -> int:
        """How many files :func:`write_export` writes (for progress)."""
        n = 3 + sum(len(t.key_images) for t in self.report.trajectories)
        return n + (len(self.files) if self.deidentifier is not None else 0)


class ExportCancelled(ExportError):
    """The user cancelled the export; nothing was left in the output folder."""


def prepare_export(plan: Plan, images: Optional[Mapping[str, Any]] = None, *, deidentify: bool = False,
                   with_3d: bool = True, deidentifier: Optional[Deidentifier] = None,
                   report: Optional[ReportData] = None,
                   reports: Optional[Mapping[str, Any]] = None) -> PreparedExport:
    """First phase of :func:`export_dicom`: read the source headers, de-identify (teaching export) and
    build the plan summary with its key images (``reports``: the trajectories' checks from the
    session's results, see :func:`planner.report.data.build_report_data`). Writes nothing."""
    notes: list[str] = []
    files = source_files(images)
    headers = read_headers(files)
    de: Optional[Deidentifier] = None
    if deidentify:
        if report is not None:
            raise ValueError("a teaching export builds its own report from the de-identified plan")
        de = deidentifier or Deidentifier()
        for h in headers:
            de.remember_dataset(h)
        plan = de.plan(plan)
        images = {de.uid(k) if k else k: _deid_image(img, de) for k, img in (images or {}).items()}
        headers = [de.dataset(h) for h in headers]
    study_uid = plan.case.study_instance_uid
    if not study_uid:
        study_uid = generate_uid()
        notes.append("The plan has no Study Instance UID; the export starts a new study.")
    data = report or build_report_data(plan, images, with_3d=with_3d, reports=reports)
    return PreparedExport(plan, images, files, headers, data, study_uid, de, notes)


def write_export(prep: PreparedExport, outdir: os.PathLike | str, *,
                 progress: Optional[Callable[[float, str], None]] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> ExportResult:
    """Second phase of :func:`export_dicom`: write the files of ``prep`` into ``outdir`` (new or empty).

    The files are written into a hidden folder beside ``outdir`` that is renamed at the end, so a
    cancelled or failed export (:class:`ExportCancelled`, :class:`ExportError`, OSError) leaves no
    half-written export behind. Safe to run off the GUI thread (no rendering here). ``progress(fraction,
    message)`` is called after each file; ``cancel()`` is polled between files."""
    out = Path(outdir)
    _check_folder(out)
    # a private folder with an unpredictable name, listed in the temporaries journal so that one left by
    # a killed export is removed at the next start (planner.safefiles)
    with temporary_folder(out) as work:
        result = _write_export(prep, work, progress, cancel)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        work.rename(out)
    return result.moved(work, out)


def _write_export(prep: PreparedExport, out: Path, progress: Optional[Callable[[float, str], None]],
                  cancel: Optional[Callable[[], bool]]) -> ExportResult:
    plan, headers, data, de = prep.plan, prep.headers, prep.report, prep.deidentifier
    notes = list(prep.notes)
    total = max(1, prep.steps)
    done = 0

    def step(message: str) -> None:
        nonlocal done
        if cancel is not None and cancel():
            raise ExportCancelled("The export was cancelled; nothing was written.")
        done += 1
        if progress is not None:
            progress(min(done / total, 1.0), message)

    ref = reference_dataset(plan, headers, prep.study_uid)
    institution = plan.case.institution
    step("Writing the plan summary (PDF)")
    pdf = report_pdf_bytes(data)
    dicom_dir = out / "dicom"
    pdf_file = out / "plan_summary.pdf"
    pdf_file.write_bytes(pdf)
    pdf_ds = encapsulated_pdf(pdf, ref, series_uid=generate_uid(), sop_uid=generate_uid(),
                              title=f"{data.title}", institution=institution, sources=source_references(headers))
    step("Writing the Encapsulated PDF")
    pdf_path = _write(pdf_ds, dicom_dir / "PDF00001.dcm")
    sc_series = generate_uid()
    sc_paths: list[Path] = []
    sc_dss: list[Dataset] = []
    number = 0
    for section in data.trajectories:
        for key in section.key_images:
            number += 1
            step(f"Writing key image {number}")
            sc = secondary_capture(key, ref, series_uid=sc_series, sop_uid=generate_uid(), number=number,
                                   institution=institution,
                                   sources=source_references(headers, key.series_instance_uid or None)
                                   if key.series_instance_uid else [])
            sc.ImageComments = f"{section.title}: {key.caption}"[:10240]
            sc_dss.append(sc)
            sc_paths.append(_write(sc, dicom_dir / f"SC{number:05d}.dcm"))
    kos_path: Optional[Path] = None
    if not sc_paths:
        notes.append("No key images were rendered; the export has no Secondary Capture series.")
    else:
        kos = key_object_selection(sc_dss, ref, series_uid=generate_uid(), sop_uid=generate_uid(),
                                   institution=institution)
        kos_path = _write(kos, dicom_dir / "KO00001.dcm")
    from planner.export.sr import build_plan_sr

    step("Writing the structured report (the plan)")
    sr = build_plan_sr(plan, [pdf_ds, *sc_dss, *[h for h in headers if "SOPInstanceUID" in h]],
                       for_uid=planning_frame_of_reference(plan), series_instance_uid=generate_uid(),
                       sop_instance_uid=generate_uid(), series_number=SERIES_NUMBER["sr"], manufacturer=MANUFACTURER,
                       institution_name=institution or None)
    sr_path = _write(sr, dicom_dir / "SR00001.dcm")
    result = ExportResult(out, pdf_file, pdf_path, sc_paths, sr_path, notes=notes + list(data.notes),
                          study_instance_uid=prep.study_uid, deidentified=de is not None, kos_file=kos_path)
    extra = ""
    if de is not None:
        result.plan_file = save_plan(plan, out / "plan.bvnplan")
        series_dirs: dict[str, int] = {}
        for (key, path), counter in zip(prep.files, range(1, len(prep.files) + 1)):
            step(f"De-identifying source image {counter} of {len(prep.files)}")
            try:
                full = pydicom.dcmread(str(path))
            except Exception as exc:
                notes.append(f"A source image could not be read and was left out ({type(exc).__name__}).")
                continue
            de.dataset(full)
            folder = series_dirs.setdefault(key, len(series_dirs) + 1)
            result.source_image_files.append(_write(full, out / "images" / f"{folder:03d}" / f"IM{counter:05d}.dcm"))
        extra = DEID_README.format(n_src=len(result.source_image_files), pseudonym=de.pseudonym_name,
                                   pseudonym_id=de.pseudonym_id)
        result.notes.append("Text burned into image pixels is not removed by de-identification.")
    readme = out / "README.txt"
    readme.write_text(README_TEXT.format(kind="de-identified teaching export" if de else "for the patient's record",
                                         when=datetime.now().strftime("%Y-%m-%d %H:%M"), app=APP_NAME,
                                         version=__version__, n_sc=len(sc_paths), extra=extra), encoding="utf-8")
    result.readme = readme
    return result


def export_dicom(plan: Plan, outdir: os.PathLike | str, images: Optional[Mapping[str, Any]] = None, *,
                 deidentify: bool = False, with_3d: bool = True, deidentifier: Optional[Deidentifier] = None,
                 report: Optional[ReportData] = None, reports: Optional[Mapping[str, Any]] = None,
                 progress: Optional[Callable[[float, str], None]] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> ExportResult:
    """Write the plan summary (Encapsulated PDF), key images (SC) and the plan (SR) to ``outdir``.

    With ``deidentify=True`` the plan, the source images and everything built from them are de-identified
    with one :class:`~planner.deidentify.Deidentifier` (consistent UIDs, shifted dates, a pseudonym);
    ``report`` must then be None (it is rebuilt from the de-identified plan). The two phases
    (:func:`prepare_export`, :func:`write_export`) can also be run separately, as the app does.
    """
    _check_folder(Path(outdir))
    prep = prepare_export(plan, images, deidentify=deidentify, with_3d=with_3d, deidentifier=deidentifier,
                          report=report, reports=reports)
    return write_export(prep, outdir, progress=progress, cancel=cancel)
