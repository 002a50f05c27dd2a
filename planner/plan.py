"""The plan document: the single source of truth that every view and export reads.

Typed pydantic models, validated on load and on every assignment. Geometry is in DICOM patient
coordinates (LPS, millimetres); point fields end in ``_lps``. Images are referenced by DICOM UIDs,
with file paths only as hints (``SeriesRef.path_hint``).

Editing goes through :class:`planner.document.PlanDocument`, which adds undo/redo, change events
and the audit trail; storage is in :mod:`planner.storage`.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from planner import __version__
from planner.settings import PlanningSettings

#: Version of the .bvnplan schema written by this build. Bump it with a migration in
#: planner.storage.MIGRATIONS whenever a saved field changes meaning or is renamed.
SCHEMA_VERSION = 1
FILE_FORMAT = "bvnplan"


# --- limits -------------------------------------------------------------------------------------
# Far above any real plan, low enough that a damaged or hostile file cannot make loading, the checks
# or the documents slow (docs/architecture.md, "Limits of a plan"). A file beyond them is refused at
# load with a message naming the field; an edit beyond them is refused like any invalid edit.
#: Names, IDs, UIDs, dates, labels, roles, kinds (DICOM allows 64 characters for most of them).
MAX_SHORT_TEXT = 256
#: Every other text: notes, comments, override reasons, explanations, audit details.
MAX_TEXT = 10_000
#: File path hints.
MAX_PATH_TEXT = 4096
MAX_SERIES = 200
MAX_LEVELS = 30
#: Trajectories in one plan (a procedure treats at most a few levels, one or two per side).
MAX_TRAJECTORIES = 64
MAX_MEASUREMENTS = 1000
MAX_FLUORO_LANDMARKS = 1000
MAX_FLUORO_CALIBRATIONS = 200
#: Points of one outline or measurement.
MAX_POINTS = 1000
MAX_COMMENTS = 1000
MAX_SIGNOFFS = 100
MAX_AUDIT_ENTRIES = 200_000
#: Entries of a free-form dictionary (eligibility answers, Modic ratios).
MAX_DICT_ENTRIES = 200
#: Frame numbers and image counts.
MAX_INDEX = 1_000_000
#: Largest coordinate accepted (LPS mm or pixels): a kilometre, far outside any image.
MAX_COORD = 1e6

#: The limits above by name (for the documentation and the tests).
PLAN_LIMITS: dict[str, float] = {k: v for k, v in dict(globals()).items() if k.startswith("MAX_")}


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) > MAX_COORD:
        raise ValueError(f"must lie within +-{MAX_COORD:g}")
    return value


Short = Annotated[str, StringConstraints(max_length=MAX_SHORT_TEXT)]
PathText = Annotated[str, StringConstraints(max_length=MAX_PATH_TEXT)]
Coord = Annotated[float, AfterValidator(_finite)]
#: A point in patient space: (x, y, z) in LPS millimetres.
Point3 = tuple[Coord, Coord, Coord]
#: A point on a 2D image: (column, row) in pixels.
Point2 = tuple[Coord, Coord]

ModicType = Literal["none", "1", "2", "3", "1/2", "2/3"]
ModicGrade = Literal["A", "B", "C"]
Side = Literal["left", "right"]


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Model(BaseModel):
    # allow_inf_nan=False: every float field refuses NaN and infinities ("Input should be a finite
    # number"); str_max_length: no text longer than MAX_TEXT anywhere (shorter limits per field below)
    model_config = ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False,
                              str_max_length=MAX_TEXT)


class SeriesRef(_Model):
    """An image series used by the plan, found again by its UIDs."""

    series_instance_uid: Short
    modality: Short = ""
    description: Short = ""
    frame_of_reference_uid: Short = ""
    #: What the plan uses it for: "T1", "T2", "STIR", "AX_T2", "CT", "FLUORO_AP", "FLUORO_LAT", "" (other).
    role: Short = ""
    number_of_images: int = Field(0, ge=0, le=MAX_INDEX)
    #: Where it was last found; only a hint (the plan may be opened on another workstation).
    path_hint: PathText = ""


class CaseInfo(_Model):
    patient_name: Short = ""
    patient_id: Short = ""
    patient_birth_date: Short = ""
    patient_sex: Short = ""
    study_instance_uid: Short = ""
    study_date: Short = ""
    study_description: Short = ""
    accession_number: Short = ""
    institution: Short = ""
    series: list[SeriesRef] = Field(default_factory=list, max_length=MAX_SERIES)


LANDMARK_NAMES: tuple[str, ...] = (
    "body_center_lps",
    "superior_endplate_lps",
    "inferior_endplate_lps",
    "posterior_wall_lps",
    "anterior_wall_lps",
    "pedicle_left_lps",
    "pedicle_right_lps",
)


class Landmarks(_Model):
    """Per-vertebra landmarks in LPS mm. Walls are the midpoints at mid-height on the midline."""

    body_center_lps: Optional[Point3] = None
    superior_endplate_lps: Optional[Point3] = None
    inferior_endplate_lps: Optional[Point3] = None
    posterior_wall_lps: Optional[Point3] = None
    anterior_wall_lps: Optional[Point3] = None
    pedicle_left_lps: Optional[Point3] = None
    pedicle_right_lps: Optional[Point3] = None

    def is_complete(self) -> bool:
        return all(getattr(self, n) is not None for n in LANDMARK_NAMES)


class ModicSuggestion(_Model):
    """What the Modic assistant measured and proposed for one endplate."""

    modic_type: ModicType = "none"
    grade: Optional[ModicGrade] = None
    share_pct: Optional[float] = Field(None, ge=0, le=100)
    #: Measured signal ratios, e.g. {"T1": 0.55, "T2": 1.4, "STIR": 1.9} (endplate zone / normal marrow).
    ratios: dict[Short, float] = Field(default_factory=dict, max_length=MAX_DICT_ENTRIES)
    #: Region used: centre and half-sizes in LPS mm, and which series.
    region_center_lps: Optional[Point3] = None
    region_half_size_mm: Optional[Point3] = None
    explanation: str = ""
    #: The series roles read: the sagittal "T1", "T2" (and "STIR") of the suggestion, "AX_T2" when an axial
    #: T2 was read as a second reading.
    images: list[Short] = Field(default_factory=list, max_length=8)
    #: The changed share read on the axial T2 (second reading; None when not read), in percent.
    axial_share_pct: Optional[float] = Field(None, ge=0, le=100)


class EndplateFinding(_Model):
    modic_type: ModicType = "none"
    grade: Optional[ModicGrade] = None
    #: Share of the endplate area involved, in percent.
    share_pct: Optional[float] = Field(None, ge=0, le=100)
    suggestion: Optional[ModicSuggestion] = None
    #: True once the physician has confirmed or changed the finding.
    confirmed: bool = False


class Level(_Model):
    id: Short = Field(default_factory=new_id)
    name: Short
    landmarks: Landmarks = Field(default_factory=Landmarks)
    superior: EndplateFinding = Field(default_factory=EndplateFinding)
    inferior: EndplateFinding = Field(default_factory=EndplateFinding)
    painful: bool = False
    treat: bool = False
    prior_ablation: bool = False
    notes: str = ""
    #: Optional pedicle outlines per side (a closed polygon in LPS mm, roughly perpendicular to the
    #: pedicle axis), measured on CT or drawn on MRI.
    pedicle_outline_left_lps: list[Point3] = Field(default_factory=list, max_length=MAX_POINTS)
    pedicle_outline_right_lps: list[Point3] = Field(default_factory=list, max_length=MAX_POINTS)
    #: Optional spinal canal outline at the level's mid-height (a closed polygon in LPS mm, in the plane
    #: perpendicular to the body's axis), measured on the image; empty when not measured.
    canal_outline_lps: list[Point3] = Field(default_factory=list, max_length=MAX_POINTS)


class TrajectoryParams(_Model):
    """Per-trajectory values; defaults come from PlanningSettings when the trajectory is created."""

    zone_diameter_mm: float = Field(10.0, gt=1, le=40)
    curved: bool = True
    cannula_curve_radius_mm: float = Field(20.0, gt=3, le=200)
    introducer_diameter_mm: float = Field(4.2, gt=0.5, le=8)
    cannula_diameter_mm: float = Field(2.8, gt=0.5, le=8)
    probe_diameter_mm: float = Field(1.6, gt=0.3, le=6)
    canal_margin_mm: float = Field(10.0, ge=0, le=40)

    @classmethod
    def from_settings(cls, settings: PlanningSettings) -> "TrajectoryParams":
        return cls(
            zone_diameter_mm=settings.zone_diameter_mm,
            cannula_curve_radius_mm=settings.cannula_curve_radius_mm,
            introducer_diameter_mm=settings.introducer_diameter_mm,
            cannula_diameter_mm=settings.cannula_diameter_mm,
            probe_diameter_mm=settings.probe_diameter_mm,
            canal_margin_mm=settings.canal_margin_mm,
        )


class Trajectory(_Model):
    id: Short = Field(default_factory=new_id)
    level_id: Short
    side: Side = "left"
    #: Bone entry on the pedicle.
    entry_lps: Point3
    #: End of the straight introducer, where the curved cannula starts; None for a straight path.
    bend_lps: Optional[Point3] = None
    #: Active tip: centre of the ablation zone.
    target_lps: Point3
    params: TrajectoryParams = Field(default_factory=TrajectoryParams)
    #: The physician's recorded reason for going on despite a failing check.
    override_reason: str = ""
    label: Short = ""


class FluoroLandmark(_Model):
    """A point marked on a fluoroscopy image (pixel coordinates of that image)."""

    id: Short = Field(default_factory=new_id)
    sop_instance_uid: Short
    frame: int = Field(0, ge=0, le=MAX_INDEX)
    level_id: Short = ""
    #: e.g. "posterior_wall", "anterior_wall", "pedicle_left", "pedicle_right", "spinous_process"
    kind: Short
    point_px: Point2


class Measurement(_Model):
    """A distance (2 points) or angle (3 points, vertex in the middle) drawn on an image."""

    id: Short = Field(default_factory=new_id)
    kind: Literal["distance", "angle"]
    series_instance_uid: Short = ""
    #: For volume images: points in LPS mm.
    points_lps: list[Point3] = Field(default_factory=list, max_length=MAX_POINTS)
    #: For projection images (fluoroscopy): points in pixels of the given instance/frame.
    sop_instance_uid: Short = ""
    frame: int = Field(0, ge=0, le=MAX_INDEX)
    points_px: list[Point2] = Field(default_factory=list, max_length=MAX_POINTS)
    label: Short = ""


class FluoroCalibration(_Model):
    """A user calibration of one projection image: millimetres per pixel at the anatomy."""

    sop_instance_uid: Short
    mm_per_pixel: float = Field(gt=0, le=MAX_COORD)
    #: How it was made, e.g. "known length 30 mm (marker ball)" or "L4 AP depth from MRI".
    method: str = ""


class Eligibility(_Model):
    """Answers to the eligibility checklist (keys defined in planner.eligibility)."""

    answers: dict[Short, Optional[bool | float | str]] = Field(default_factory=dict, max_length=MAX_DICT_ENTRIES)
    notes: str = ""


class Comment(_Model):
    id: Short = Field(default_factory=new_id)
    author: Short
    created: Short = Field(default_factory=now_iso)
    anchor_kind: Literal["plan", "level", "trajectory"] = "plan"
    anchor_id: Short = ""
    text: str


class SignOff(_Model):
    reviewer: Short
    signed_at: Short = Field(default_factory=now_iso)
    role: Short = "reviewer"
    #: sha256 of the plan content (see Plan.content_hash) at the time of signing.
    content_hash: Short


class Review(_Model):
    comments: list[Comment] = Field(default_factory=list, max_length=MAX_COMMENTS)
    signoffs: list[SignOff] = Field(default_factory=list, max_length=MAX_SIGNOFFS)


class AuditEntry(_Model):
    at: Short = Field(default_factory=now_iso)
    user: Short = ""
    action: str
    detail: str = ""


#: Top-level sections that make up the clinical content (hashed for sign-off, diffed for events).
CONTENT_SECTIONS: tuple[str, ...] = (
    "case", "levels", "trajectories", "eligibility", "measurements", "fluoro_landmarks",
    "fluoro_calibrations", "settings",
)


class Plan(_Model):
    """A BVN ablation plan for one patient study."""

    format: Literal["bvnplan"] = FILE_FORMAT
    schema_version: int = SCHEMA_VERSION
    units: Literal["mm"] = "mm"
    coordinate_frame: Literal["LPS"] = "LPS"
    app_version: Short = __version__
    plan_id: Short = Field(default_factory=new_id)
    created: Short = Field(default_factory=now_iso)
    modified: Short = Field(default_factory=now_iso)
    author: Short = ""
    case: CaseInfo = Field(default_factory=CaseInfo)
    levels: list[Level] = Field(default_factory=list, max_length=MAX_LEVELS)
    trajectories: list[Trajectory] = Field(default_factory=list, max_length=MAX_TRAJECTORIES)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    measurements: list[Measurement] = Field(default_factory=list, max_length=MAX_MEASUREMENTS)
    fluoro_landmarks: list[FluoroLandmark] = Field(default_factory=list, max_length=MAX_FLUORO_LANDMARKS)
    fluoro_calibrations: list[FluoroCalibration] = Field(default_factory=list, max_length=MAX_FLUORO_CALIBRATIONS)
    settings: PlanningSettings = Field(default_factory=PlanningSettings)
    review: Review = Field(default_factory=Review)
    audit: list[AuditEntry] = Field(default_factory=list, max_length=MAX_AUDIT_ENTRIES)

    # --- lookups ------------------------------------------------------------------------------
    def level(self, level_id: str) -> Level:
        for lv in self.levels:
            if lv.id == level_id:
                return lv
        raise KeyError(f"no level with id {level_id!r}")

    def level_by_name(self, name: str) -> Optional[Level]:
        return next((lv for lv in self.levels if lv.name == name), None)

    def trajectory(self, trajectory_id: str) -> Trajectory:
        for t in self.trajectories:
            if t.id == trajectory_id:
                return t
        raise KeyError(f"no trajectory with id {trajectory_id!r}")

    def measurement(self, measurement_id: str) -> Measurement:
        for m in self.measurements:
            if m.id == measurement_id:
                return m
        raise KeyError(f"no measurement with id {measurement_id!r}")

    def trajectories_of(self, level_id: str) -> list[Trajectory]:
        return [t for t in self.trajectories if t.level_id == level_id]

    # --- content hash for review sign-off -----------------------------------------------------
    def content_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return {k: data[k] for k in CONTENT_SECTIONS}

    def content_hash(self) -> str:
        """sha256 of the clinical content (not the review, audit trail or timestamps)."""
        blob = json.dumps(self.content_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def signoff_is_current(self, signoff: SignOff) -> bool:
        return signoff.content_hash == self.content_hash()
