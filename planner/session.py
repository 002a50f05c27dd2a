"""The working session: the open plan document, the loaded images and the shared cursor.

Headless: the GUI, the command line and the tests all use it. Views read images and the plan from
here and keep only display state (camera, zoom, current slice of their own).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from planner.display.results import PlanResults
from planner.document import PlanDocument
from planner.events import Signal
from planner.imaging.volume import ProjectionImage, Volume
from planner.plan import CaseInfo, SeriesRef

Image = Union[Volume, ProjectionImage]

#: The patient and study fields of CaseInfo that the first series of a case fills in.
CASE_FIELDS = ("patient_name", "patient_id", "patient_birth_date", "patient_sex", "study_instance_uid",
               "study_date", "study_description", "accession_number", "institution")


class OtherPatientError(ValueError):
    """Images of another patient were added to a session (one patient per plan); the message names
    the two patients' descriptions (never logged)."""


def _norm_name(name: str) -> str:
    return re.sub(r"[\s^,]+", " ", str(name or "")).strip().upper()


def patient_identity(info: Any) -> tuple[str, ...]:
    """What identifies the patient of an image header or a plan's CaseInfo: the patient ID, else
    name and birth date (both needed), else the Study Instance UID; () when nothing does (then the
    images count as another patient than anything already open)."""
    pid = str(getattr(info, "patient_id", "") or "").strip()
    if pid:
        return ("id", pid)
    name = _norm_name(getattr(info, "patient_name", ""))
    birth = str(getattr(info, "patient_birth_date", "") or "").strip()
    if name and birth:
        return ("name", name, birth)
    study = str(getattr(info, "study_instance_uid", "") or "").strip()
    return ("study", study) if study else ()


def same_patient(a: Any, b: Any) -> bool:
    """True when two headers (ImageInfo or CaseInfo) are of the same patient: the same study, or the
    same patient ID, or (without IDs) the same name and birth date. Empty identities never match."""
    study_a = str(getattr(a, "study_instance_uid", "") or "")
    if study_a and study_a == str(getattr(b, "study_instance_uid", "") or ""):
        return True
    ida, idb = patient_identity(a), patient_identity(b)
    if not ida or not idb or ida[0] != idb[0]:
        return False
    return ida == idb


def group_by_patient(images: Mapping[str, Image]) -> list[dict[str, Image]]:
    """Split one import into groups of one patient each, in the order they first appear. Images with
    no identifying header (research files) form one group: they were opened together."""
    groups: list[dict[str, Image]] = []
    reps: list[Any] = []
    for key, img in images.items():
        for rep, group in zip(reps, groups):
            if same_patient(rep, img.info) or (not patient_identity(rep) and not patient_identity(img.info)):
                group[key] = img
                break
        else:
            reps.append(img.info)
            groups.append({key: img})
    return groups


def describe_patient(info: Any) -> str:
    """A short description of a header's patient and study for questions to the user (not for logs)."""
    name = str(getattr(info, "patient_name", "") or "").replace("^", " ").strip()
    bits = [name or "no patient name", f"ID {info.patient_id}" if getattr(info, "patient_id", "") else "no patient ID"]
    date = str(getattr(info, "study_date", "") or "")
    if date:
        bits.append(f"study of {date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else f"study of {date}")
    desc = str(getattr(info, "study_description", "") or "")
    if desc:
        bits.append(desc)
    return ", ".join(bits)


def series_role(image: Image) -> str:
    """The plan role a series most likely has, from its modality, description and slice direction:
    T1, T2, STIR, AX_T1, AX_T2, CT, FLUORO_AP, FLUORO_LAT, or "" when unclear."""
    if isinstance(image, ProjectionImage):
        vp = (image.geometry.view_position or "").upper()
        if vp in ("AP", "PA"):
            return "FLUORO_AP"
        if vp in ("LAT", "LL", "RL", "LATERAL"):
            return "FLUORO_LAT"
        desc = (image.info.series_description or "").upper()
        if re.search(r"\bLAT", desc):
            return "FLUORO_LAT"
        if re.search(r"\b(AP|PA)\b", desc):
            return "FLUORO_AP"
        return ""
    from planner.trajectory import is_ct

    if is_ct(image):
        return "CT"
    desc = (image.info.series_description or "").upper()
    axial = int(np.argmax(np.abs(image.slice_normal()))) == 2  # slices across the patient's long axis
    if "STIR" in desc:
        return "STIR"
    if "T1" in desc:
        return "AX_T1" if axial else "T1"
    if "T2" in desc:
        return "AX_T2" if axial else "T2"
    return ""


def series_ref(key: str, image: Image, role: str = "") -> SeriesRef:
    """The plan's record of a loaded series: UIDs, description, role, size and where it was found."""
    info = image.info
    n = len(info.sop_instance_uids) or (image.n_frames if isinstance(image, ProjectionImage) else image.shape_ijk[2])
    folders = sorted({os.path.dirname(os.path.abspath(f)) for f in info.source_files if f})
    hint = os.path.commonpath(folders) if folders else ""
    return SeriesRef(series_instance_uid=key, modality=info.modality, description=info.series_description,
                     frame_of_reference_uid=info.frame_of_reference_uid, role=role or series_role(image),
                     number_of_images=int(n), path_hint=hint)


def case_is_empty(case: CaseInfo) -> bool:
    """True when a plan names neither a patient nor a study nor any series (such a plan is not saved)."""
    return not (case.series or patient_identity(case) or case.patient_name)


class Session:
    def __init__(self, document: Optional[PlanDocument] = None) -> None:
        self.document = document or PlanDocument()
        #: Loaded images by Series Instance UID (or a generated key for research files).
        self.images: dict[str, Image] = {}
        #: What the views and documents show, derived once (created first, so it hears each plan change
        #: before any view does).
        self.results = PlanResults(self.document, self.images)
        self._cursor_lps = np.zeros(3)
        #: Frame of Reference UID the cursor was last set in ("" = not tied to one).
        self.cursor_frame_of_reference_uid = ""
        #: Emitted with the new LPS position (np.ndarray) when the linked crosshair moves.
        self.cursor_moved = Signal("Session.cursor_moved")
        #: Emitted with the series key when images are added or removed.
        self.images_changed = Signal("Session.images_changed")
        self.images_changed.connect(self.results.image_changed)
        #: Emitted with the key of the series the user selected as the main one.
        self.active_series_changed = Signal("Session.active_series_changed")
        #: Emitted with the trajectory id (or None) the user selected.
        self.active_trajectory_changed = Signal("Session.active_trajectory_changed")
        self.active_series: Optional[str] = None
        self.active_trajectory: Optional[str] = None
        # the first plan edit records the case of the loaded images when nothing recorded it yet
        self.document.case_fields = self.case_fields

    # ---------------------------------------------------------------- images
    def add_image(self, key: str, image: Image, *, make_active: bool = False) -> None:
        self.images[key] = image
        self.images_changed.emit(key)
        if make_active or self.active_series is None and isinstance(image, Volume):
            self.set_active_series(key)

    def add_images(self, images: Mapping[str, Image], *, keep_existing: bool = False) -> int:
        """Add several images of the session's patient, volumes first (so the planning views have their
        series as soon as possible), then record them in the plan's case (:meth:`record_case`); with
        ``keep_existing`` keys already loaded are left alone. Returns how many were added.

        One patient per plan: raises :class:`OtherPatientError` (adding nothing) when an image is of
        another patient than the plan's case and the loaded images (split an import first with
        :func:`group_by_patient` and :meth:`is_other_patient`)."""
        case_keys = {r.series_instance_uid for r in self.document.plan.case.series}
        new = {k: v for k, v in images.items() if k not in self.images and k not in case_keys}
        if any(self.is_other_patient(k, img) for k, img in new.items()) or len(group_by_patient(new)) > 1:
            ref = self.patient_reference()
            raise OtherPatientError(
                "These images are of another patient than the open plan"
                + (f" ({describe_patient(ref)})" if ref is not None else "") + "; one plan holds one patient.")
        added = []
        for key in sorted(images, key=lambda k: 0 if isinstance(images[k], Volume) else 1):
            if keep_existing and key in self.images:
                continue
            self.add_image(key, images[key])
            added.append(key)
        if added:
            self.record_case(added)
        return len(added)

    # ---------------------------------------------------------------- the case (one patient per plan)
    def patient_reference(self) -> Optional[Any]:
        """What the session's patient is compared with: the plan's case once it names a patient or
        series, else the first loaded image's header; None when nothing is open."""
        case = self.document.plan.case
        if not case_is_empty(case):
            return case
        first = next(iter(self.images.values()), None)
        return first.info if first is not None else None

    def is_other_patient(self, key: str, image: Image) -> bool:
        """True when ``image`` would mix another patient into this session's plan (the plan's own
        series never count as another patient)."""
        if any(r.series_instance_uid == key for r in self.document.plan.case.series):
            return False
        ref = self.patient_reference()
        return ref is not None and not same_patient(ref, image.info)

    def case_fields(self, keys: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """The CaseInfo fields that record the loaded images ``keys`` (all when None) in the plan: every
        series not yet in the case, and the patient and study of the first one when the case names no
        patient yet. {} when there is nothing to record."""
        case = self.document.plan.case
        known = {r.series_instance_uid for r in case.series}
        keys = [k for k in (keys if keys is not None else list(self.images)) if k in self.images and k not in known]
        if not keys:
            return {}
        fields: dict[str, Any] = {"series": list(case.series) + [series_ref(k, self.images[k]) for k in keys]}
        if not patient_identity(case) and not case.patient_name:
            first = self.images[keys[0]].info
            fields.update({name: getattr(first, name) for name in CASE_FIELDS if getattr(first, name, "")})
        return fields

    def record_case(self, keys: Optional[Sequence[str]] = None) -> bool:
        """Record the loaded images ``keys`` (all when None) in the plan's case through
        ``PlanDocument.set_case`` (see :meth:`case_fields`): one undo step; nothing in a read-only plan.
        Returns True when the case changed. (The first plan edit records them too when the case has
        no series: ``PlanDocument.case_fields``.)"""
        if self.document.read_only:
            return False
        fields = self.case_fields(keys)
        if not fields:
            return False
        self.document.set_case(**fields)
        return True

    def remove_image(self, key: str) -> None:
        if self.images.pop(key, None) is not None:
            self.images_changed.emit(key)
            if self.active_series == key:
                self.set_active_series(next((k for k, v in self.images.items() if isinstance(v, Volume)), None))

    def volumes(self) -> dict[str, Volume]:
        return {k: v for k, v in self.images.items() if isinstance(v, Volume)}

    def projections(self) -> dict[str, ProjectionImage]:
        return {k: v for k, v in self.images.items() if isinstance(v, ProjectionImage)}

    def volume_by_role(self, role: str) -> Optional[Volume]:
        """The volume the plan assigns ``role`` (T1, T2, STIR, AX_T2, CT) to, if loaded."""
        for ref in self.document.plan.case.series:
            if ref.role == role and isinstance(self.images.get(ref.series_instance_uid), Volume):
                return self.images[ref.series_instance_uid]  # type: ignore[return-value]
        return None

    def set_active_series(self, key: Optional[str]) -> None:
        if key != self.active_series:
            self.active_series = key
            self.active_series_changed.emit(key)

    @property
    def active_volume(self) -> Optional[Volume]:
        img = self.images.get(self.active_series) if self.active_series else None
        return img if isinstance(img, Volume) else None

    def linked_volumes(self, key: str) -> list[str]:
        """Keys of the volumes sharing the Frame of Reference of ``key`` (the crosshair links them)."""
        img = self.images.get(key)
        if img is None or not isinstance(img, Volume):
            return []
        for_uid = img.info.frame_of_reference_uid
        return [k for k, v in self.volumes().items() if k == key or (for_uid and v.info.frame_of_reference_uid == for_uid)]

    # ---------------------------------------------------------------- cursor
    @property
    def cursor_lps(self) -> np.ndarray:
        return self._cursor_lps.copy()

    def set_cursor(self, lps: Sequence[float], frame_of_reference_uid: Optional[str] = None) -> None:
        """Move the linked cursor. ``frame_of_reference_uid`` names the frame the point was picked in
        (views of volumes in another frame of reference do not follow); None or "" means any."""
        p = np.asarray(lps, dtype=float).reshape(3)
        if not np.all(np.isfinite(p)):
            return
        for_uid = frame_of_reference_uid or ""
        if not np.allclose(p, self._cursor_lps, atol=1e-9) or for_uid != self.cursor_frame_of_reference_uid:
            self._cursor_lps = p
            self.cursor_frame_of_reference_uid = for_uid
            self.cursor_moved.emit(p.copy())

    def set_active_trajectory(self, trajectory_id: Optional[str]) -> None:
        if trajectory_id != self.active_trajectory:
            self.active_trajectory = trajectory_id
            self.active_trajectory_changed.emit(trajectory_id)
