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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from planner import __version__
from planner.settings import PlanningSettings

#: Version of the .bvnplan schema written by this build. Bump it with a migration in
#: planner.storage.MIGRATIONS whenever a saved field changes meaning or is renamed.
SCHEMA_VERSION = 1
FILE_FORMAT = "bvnplan"


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


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
    model_config = ConfigDict(validate_assignment=True, extra="forbid")


class SeriesRef(_Model):
    """An image series used by the plan, found again by its UIDs."""

    series_instance_uid: str
    modality: str = ""
    description: str = ""
    frame_of_reference_uid: str = ""
    #: What the plan uses it for: "T1", "T2", "STIR", "AX_T2", "CT", "FLUORO_AP", "FLUORO_LAT", "" (other).
    role: str = ""
    number_of_images: int = Field(0, ge=0)
    #: Where it was last found; only a hint (the plan may be opened on another workstation).
    path_hint: str = ""


class CaseInfo(_Model):
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    institution: str = ""
    series: list[SeriesRef] = Field(default_factory=list)


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
    ratios: dict[str, float] = Field(default_factory=dict)
    #: Region used: centre and half-sizes in LPS mm, and which series.
    region_center_lps: Optional[Point3] = None
    region_half_size_mm: Optional[Point3] = None
    explanation: str = ""


class EndplateFinding(_Model):
    modic_type: ModicType = "none"
    grade: Optional[ModicGrade] = None
    #: Share of the endplate area involved, in percent.
    share_pct: Optional[float] = Field(None, ge=0, le=100)
    suggestion: Optional[ModicSuggestion] = None
    #: True once the physician has confirmed or changed the finding.
    confirmed: bool = False


class Level(_Model):
    id: str = Field(default_factory=new_id)
    name: str
    landmarks: Landmarks = Field(default_factory=Landmarks)
    superior: EndplateFinding = Field(default_factory=EndplateFinding)
    inferior: EndplateFinding = Field(default_factory=EndplateFinding)
    painful: bool = False
    treat: bool = False
    prior_ablation: bool = False
    notes: str = ""
    #: Optional pedicle outlines per side (a closed polygon in LPS mm, roughly perpendicular to the
    #: pedicle axis), measured on CT or drawn on MRI.
    pedicle_outline_left_lps: list[Point3] = Field(default_factory=list)
    pedicle_outline_right_lps: list[Point3] = Field(default_factory=list)
    #: Optional spinal canal outline at the level's mid-height (a closed polygon in LPS mm, in the plane
    #: perpendicular to the body's axis), measured on the image; empty when not measured.
    canal_outline_lps: list[Point3] = Field(default_factory=list)


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
    id: str = Field(default_factory=new_id)
    level_id: str
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
    label: str = ""


class FluoroLandmark(_Model):
    """A point marked on a fluoroscopy image (pixel coordinates of that image)."""

    id: str = Field(default_factory=new_id)
    sop_instance_uid: str
    frame: int = Field(0, ge=0)
    level_id: str = ""
    #: e.g. "posterior_wall", "anterior_wall", "pedicle_left", "pedicle_right", "spinous_process"
    kind: str
    point_px: Point2


class Measurement(_Model):
    """A distance (2 points) or angle (3 points, vertex in the middle) drawn on an image."""

    id: str = Field(default_factory=new_id)
    kind: Literal["distance", "angle"]
    series_instance_uid: str = ""
    #: For volume images: points in LPS mm.
    points_lps: list[Point3] = Field(default_factory=list)
    #: For projection images (fluoroscopy): points in pixels of the given instance/frame.
    sop_instance_uid: str = ""
    frame: int = Field(0, ge=0)
    points_px: list[Point2] = Field(default_factory=list)
    label: str = ""


class FluoroCalibration(_Model):
    """A user calibration of one projection image: millimetres per pixel at the anatomy."""

    sop_instance_uid: str
    mm_per_pixel: float = Field(gt=0)
    #: How it was made, e.g. "known length 30 mm (marker ball)" or "L4 AP depth from MRI".
    method: str = ""


class Eligibility(_Model):
    """Answers to the eligibility checklist (keys defined in planner.eligibility)."""

    answers: dict[str, Optional[bool | float | str]] = Field(default_factory=dict)
    notes: str = ""


class Comment(_Model):
    id: str = Field(default_factory=new_id)
    author: str
    created: str = Field(default_factory=now_iso)
    anchor_kind: Literal["plan", "level", "trajectory"] = "plan"
    anchor_id: str = ""
    text: str


class SignOff(_Model):
    reviewer: str
    signed_at: str = Field(default_factory=now_iso)
    role: str = "reviewer"
    #: sha256 of the plan content (see Plan.content_hash) at the time of signing.
    content_hash: str


class Review(_Model):
    comments: list[Comment] = Field(default_factory=list)
    signoffs: list[SignOff] = Field(default_factory=list)


class AuditEntry(_Model):
    at: str = Field(default_factory=now_iso)
    user: str = ""
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
    app_version: str = __version__
    plan_id: str = Field(default_factory=new_id)
    created: str = Field(default_factory=now_iso)
    modified: str = Field(default_factory=now_iso)
    author: str = ""
    case: CaseInfo = Field(default_factory=CaseInfo)
    levels: list[Level] = Field(default_factory=list)
    trajectories: list[Trajectory] = Field(default_factory=list)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    measurements: list[Measurement] = Field(default_factory=list)
    fluoro_landmarks: list[FluoroLandmark] = Field(default_factory=list)
    fluoro_calibrations: list[FluoroCalibration] = Field(default_factory=list)
    settings: PlanningSettings = Field(default_factory=PlanningSettings)
    review: Review = Field(default_factory=Review)
    audit: list[AuditEntry] = Field(default_factory=list)

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
