"""Images with patient geometry: 3D volumes and 2D projection (fluoroscopy/radiography) images.

Array convention (the same as SimpleITK's ``GetArrayFromImage`` and VTK's memory order):
``Volume.array`` has shape ``(nk, nj, ni)`` = (slices, rows, columns). Voxel index
``(i, j, k)`` = (column, row, slice) maps to patient space by the 4x4 matrix ``ijk_to_lps``::

    [x, y, z, 1]^T = ijk_to_lps @ [i, j, k, 1]^T        (LPS millimetres)

For DICOM, column i runs along the first Image Orientation (Patient) vector (the row direction),
row j along the second, and k along the slice normal in the order the slices are stacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np


def make_ijk_to_lps(origin_lps: Sequence[float], direction: np.ndarray | Sequence[Sequence[float]],
                    spacing: Sequence[float]) -> np.ndarray:
    """Build ``ijk_to_lps`` from the position of voxel (0,0,0), a 3x3 matrix whose *columns* are the
    unit vectors of the i, j, k axes in LPS, and the spacing along i, j, k."""
    m = np.eye(4)
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    m[:3, :3] = d * np.asarray(spacing, dtype=float)[None, :]
    m[:3, 3] = np.asarray(origin_lps, dtype=float)
    return m


#: Plausible voxel spacing (mm), checked before any volume is built: in-plane (i, j) and between slices
#: (k; sparse stacks of a few slices far apart exist, but not beyond the length of a body).
MIN_VOXEL_MM, MAX_VOXEL_MM, MAX_SLICE_GAP_MM = 0.01, 50.0, 500.0


def matrix_problem(ijk_to_lps: np.ndarray, *, spacing_range: bool = False) -> str:
    """What is wrong with a voxel-to-patient matrix ("" when usable): not finite, singular (zero
    spacing or parallel axes), or, with ``spacing_range``, a spacing outside 0.01 to 50 mm."""
    m = np.asarray(ijk_to_lps, dtype=float)
    if not np.all(np.isfinite(m)):
        return "not finite (damaged geometry)"
    sp = np.linalg.norm(m[:3, :3], axis=0)
    det = abs(np.linalg.det(m[:3, :3]))
    if np.any(sp == 0) or det < 1e-12 or det < 1e-6 * float(np.prod(sp)):
        return "singular (zero spacing or parallel axes)"
    if spacing_range and (np.any(sp < MIN_VOXEL_MM) or np.any(sp[:2] > MAX_VOXEL_MM) or sp[2] > MAX_SLICE_GAP_MM):
        return (f"implausible: voxel spacing {', '.join(f'{x:.3g}' for x in sp)} mm (plausible: {MIN_VOXEL_MM:g} to "
                f"{MAX_VOXEL_MM:g} mm in-plane, up to {MAX_SLICE_GAP_MM:g} mm between slices)")
    return ""


#: An image without a modality tag (a research NIfTI file) is taken for CT when its intensities are
#: Hounsfield units: at least 1 % of it below AIR_HU (the air around the body), or, on a crop with
#: little air, some of it below AIR_MIN_HU and at least 1 % below FAT_HU (fat). A magnitude MR image
#: has no values that far below zero. Measured: example_ct p1 -1000 HU; the TPTBox crop (tight around
#: three vertebrae) p1 -205 HU, min -1030 HU; the 21 lumbar MRIs min >= 0, the abdominal MR
#: example_mr_sm min -47, p1 -2.
AIR_HU = -500.0
AIR_MIN_HU = -900.0
FAT_HU = -100.0


def hounsfield_like(stats: dict[str, float]) -> bool:
    """True when intensity statistics (:meth:`Volume.statistics`) read as Hounsfield units (see AIR_HU)."""
    return stats["p1"] < AIR_HU or (stats["min"] < AIR_MIN_HU and stats["p1"] < FAT_HU)


@dataclass(frozen=True)
class WindowLevel:
    center: float
    width: float
    source: str = "auto"  # "header", "auto", "preset:<name>", "user"


@dataclass
class ImageInfo:
    """DICOM identity and description shared by volumes and projection images."""

    modality: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    series_description: str = ""
    series_number: Optional[int] = None
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    institution: str = ""
    manufacturer: str = ""
    transfer_syntax: str = ""
    #: DICOM SOP Instance UIDs of the source images, in array order (slice k or frame order).
    sop_instance_uids: list[str] = field(default_factory=list)
    #: Files the image came from (hints only).
    source_files: list[str] = field(default_factory=list)
    #: Window centre/width pairs from the header.
    header_windows: list[WindowLevel] = field(default_factory=list)
    #: Geometry or decoding warnings for the user (irregular spacing, gantry tilt, ...).
    warnings: list[str] = field(default_factory=list)
    #: Any extra header values worth keeping (e.g. "ImageType", "ScanningSequence", "EchoTime").
    extra: dict[str, Any] = field(default_factory=dict)
    #: The key the importer gave the image (``ImportResult.images`` and ``Session.images``): the Series
    #: Instance UID, a stable generated key when the UID is empty, plus "#2", "#3"... when one series
    #: splits into several images.
    key: str = ""
    #: True Image Position (Patient) of every slice k, in array order (LPS mm). Equal to the k column of
    #: ``ijk_to_lps`` for a regular stack; differs when the spacing is irregular (see the warnings).
    #: Empty for projection images and research formats.
    slice_positions_lps: list[tuple[float, float, float]] = field(default_factory=list)


class Volume:
    """A 3D image: voxel array plus ``ijk_to_lps`` and its inverse."""

    def __init__(self, array: np.ndarray, ijk_to_lps: np.ndarray, info: Optional[ImageInfo] = None) -> None:
        if array.ndim != 3:
            raise ValueError(f"a volume needs a 3D array, got shape {array.shape}")
        m = np.asarray(ijk_to_lps, dtype=float)
        if m.shape != (4, 4):
            raise ValueError("ijk_to_lps must be a 4x4 matrix")
        problem = matrix_problem(m)
        if problem:
            raise ValueError(f"ijk_to_lps is {problem}")
        self.array = array
        self.ijk_to_lps = m
        self.lps_to_ijk = np.linalg.inv(m)
        self.info = info or ImageInfo()
        self._stats: Optional[dict[str, float]] = None

    # ---------------------------------------------------------------- geometry
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        nk, nj, ni = self.array.shape
        return ni, nj, nk

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit i, j, k axes in LPS (SimpleITK's direction, reshaped)."""
        return self.ijk_to_lps[:3, :3] / self.spacing[None, :]

    @property
    def origin(self) -> np.ndarray:
        """LPS position of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_lps[:3, 3].copy()

    def ijk_to_world(self, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
        """Voxel indices (…, 3) as (i, j, k) to LPS mm."""
        p = np.asarray(ijk, dtype=float)
        return p @ self.ijk_to_lps[:3, :3].T + self.ijk_to_lps[:3, 3]

    def world_to_ijk(self, lps: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS mm (…, 3) to continuous voxel indices (i, j, k)."""
        p = np.asarray(lps, dtype=float)
        return p @ self.lps_to_ijk[:3, :3].T + self.lps_to_ijk[:3, 3]

    def contains(self, lps: Sequence[float], margin_voxels: float = 0.5) -> bool:
        ijk = self.world_to_ijk(lps)
        hi = np.array(self.shape_ijk) - 1 + margin_voxels
        return bool(np.all(ijk >= -margin_voxels) and np.all(ijk <= hi))

    def center_lps(self) -> np.ndarray:
        return self.ijk_to_world((np.array(self.shape_ijk, dtype=float) - 1) / 2)

    def corners_lps(self) -> np.ndarray:
        ni, nj, nk = self.shape_ijk
        c = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], dtype=float)
        return self.ijk_to_world(c)

    def slice_normal(self) -> np.ndarray:
        return self.direction[:, 2]

    # ---------------------------------------------------------------- sampling
    def sample(self, points_lps: np.ndarray, order: int = 1, fill: float = 0.0) -> np.ndarray:
        """Interpolate voxel values at LPS points (…, 3); points outside get ``fill``."""
        pts = np.asarray(points_lps, dtype=float)
        ijk = self.world_to_ijk(pts.reshape(-1, 3))
        coords = ijk[:, ::-1].T  # array axes are (k, j, i)
        arr = self.array if self.array.dtype.kind == "f" else self.array.astype(np.float32)
        from scipy import ndimage  # imported on first use (0.3 s at start-up otherwise)

        out = ndimage.map_coordinates(arr, coords, order=order, mode="constant", cval=fill, prefilter=False)
        return out.reshape(pts.shape[:-1])

    def reslice(self, origin_lps: Sequence[float], u_lps: Sequence[float], v_lps: Sequence[float],
                size: tuple[int, int], spacing: float | tuple[float, float], order: int = 1,
                fill: float = 0.0) -> np.ndarray:
        """Sample a plane: pixel (r, c) lies at ``origin + c*su*u + r*sv*v``. Returns (rows, cols).

        ``u`` and ``v`` are unit vectors (orthonormalised here); use it for oblique and probe-aligned
        views.
        """
        u = np.asarray(u_lps, dtype=float)
        u = u / np.linalg.norm(u)
        v = np.asarray(v_lps, dtype=float)
        v = v - u * (v @ u)
        v = v / np.linalg.norm(v)
        su, sv = (spacing, spacing) if np.isscalar(spacing) else spacing  # type: ignore[misc]
        rows, cols = size
        c = np.arange(cols, dtype=float) * su
        r = np.arange(rows, dtype=float) * sv
        pts = (np.asarray(origin_lps, dtype=float)[None, None, :] + c[None, :, None] * u[None, None, :]
               + r[:, None, None] * v[None, None, :])
        return self.sample(pts, order=order, fill=fill)

    # ---------------------------------------------------------------- intensities
    def statistics(self) -> dict[str, float]:
        """Robust intensity statistics for window/level (computed once, on a subsample)."""
        if self._stats is None:
            a = self.array
            step = max(1, int(round((a.size / 2_000_000) ** (1 / 3))))
            sub = np.asarray(a[::step, ::step, ::step], dtype=np.float64).ravel()
            p = np.percentile(sub, [0.1, 1, 50, 99, 99.9]) if sub.size else np.zeros(5)
            self._stats = {
                "min": float(sub.min()) if sub.size else 0.0,
                "max": float(sub.max()) if sub.size else 0.0,
                "p0_1": float(p[0]), "p1": float(p[1]), "median": float(p[2]),
                "p99": float(p[3]), "p99_9": float(p[4]),
                "mean": float(sub.mean()) if sub.size else 0.0,
            }
        return self._stats

    def hounsfield_like(self) -> bool:
        """True when the intensities read as Hounsfield units (:func:`hounsfield_like`)."""
        return hounsfield_like(self.statistics())

    def auto_window(self) -> WindowLevel:
        """Full range minus the top and bottom 0.1% (as 3D Slicer does; viewer-conventions.md 1.6)."""
        s = self.statistics()
        lo, hi = s["p0_1"], s["p99_9"]
        if hi <= lo:
            lo, hi = s["min"], max(s["max"], s["min"] + 1)
        return WindowLevel(center=(lo + hi) / 2, width=hi - lo, source="auto")

    def default_window(self) -> WindowLevel:
        return self.info.header_windows[0] if self.info.header_windows else self.auto_window()

    def __repr__(self) -> str:  # no patient identifiers
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (f"Volume({self.info.modality or '?'}, ijk={self.shape_ijk}, spacing=({sp}) mm, "
                f"dtype={self.array.dtype})")


@dataclass
class ProjectionGeometry:
    """What the header says about a projection image's geometry (all optional)."""

    #: Patient-plane pixel spacing (row, col) in mm (DICOM PixelSpacing), if the modality calibrated it.
    pixel_spacing: Optional[tuple[float, float]] = None
    #: Detector-plane pixel spacing (row, col) in mm (DICOM ImagerPixelSpacing).
    imager_pixel_spacing: Optional[tuple[float, float]] = None
    #: EstimatedRadiographicMagnificationFactor (detector size / object size).
    magnification_factor: Optional[float] = None
    distance_source_to_detector_mm: Optional[float] = None
    distance_source_to_patient_mm: Optional[float] = None
    positioner_primary_angle_deg: Optional[float] = None
    positioner_secondary_angle_deg: Optional[float] = None
    #: "AP", "PA", "LAT", "LL", "RL" or "" (ViewPosition).
    view_position: str = ""
    #: Patient orientation of the image rows and columns, e.g. ("L", "F") (PatientOrientation).
    patient_orientation: tuple[str, ...] = ()
    #: PixelSpacingCalibrationType / description, when present.
    calibration_type: str = ""
    #: PixelSpacingCalibrationDescription, when present.
    calibration_description: str = ""
    #: NominalScannedPixelSpacing (row, col) in mm of digitised film (secondary capture), if present.
    nominal_scanned_pixel_spacing: Optional[tuple[float, float]] = None


@dataclass(frozen=True)
class MeasurementScale:
    """How to turn pixel distances into a length the user can read, and how to label it."""

    #: (row, col) mm per pixel, or None when only pixels can be shown.
    mm_per_pixel: Optional[tuple[float, float]]
    #: "px", "mm at detector", "mm (calibrated)", "mm (magnification corrected)", "mm"
    unit_label: str

    def length(self, p0: Sequence[float], p1: Sequence[float]) -> float:
        """Length between two (col, row) pixel points in this scale's unit."""
        d = np.asarray(p1, dtype=float) - np.asarray(p0, dtype=float)
        if self.mm_per_pixel is None:
            return float(np.hypot(d[0], d[1]))
        sr, sc = self.mm_per_pixel
        return float(np.hypot(d[0] * sc, d[1] * sr))


#: Projection radiography modalities: their Pixel Spacing is at the detector unless calibrated.
RADIOGRAPHIC_MODALITIES = frozenset({"XA", "RF", "DX", "CR", "MG", "IO", "PX", "RG", "DF", "DS"})


class ProjectionImage:
    """A 2D projection image (XA, RF, DX, CR, secondary capture): frames plus geometry.

    Detector-plane spacing is never reported as patient millimetres: :meth:`measurement_scale`
    gives "mm at detector" unless a calibration or a magnification factor applies.
    """

    def __init__(self, frames: np.ndarray, geometry: Optional[ProjectionGeometry] = None,
                 info: Optional[ImageInfo] = None, frame_time_ms: Optional[float] = None) -> None:
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim not in (3, 4):
            raise ValueError(f"projection frames must be (n, rows, cols[, 3]), got {frames.shape}")
        self.frames = frames
        self.geometry = geometry or ProjectionGeometry()
        self.info = info or ImageInfo()
        self.frame_time_ms = frame_time_ms
        self._window: Optional[WindowLevel] = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def rows(self) -> int:
        return int(self.frames.shape[1])

    @property
    def cols(self) -> int:
        return int(self.frames.shape[2])

    @property
    def is_color(self) -> bool:
        return self.frames.ndim == 4

    @property
    def sop_instance_uid(self) -> str:
        return self.info.sop_instance_uids[0] if self.info.sop_instance_uids else ""

    def measurement_scale(self, calibration_mm_per_pixel: Optional[float] = None) -> MeasurementScale:
        g = self.geometry
        if calibration_mm_per_pixel:
            return MeasurementScale((calibration_mm_per_pixel, calibration_mm_per_pixel), "mm (calibrated)")
        if g.pixel_spacing and g.calibration_type:
            # PixelSpacingCalibrationType (GEOMETRY or FIDUCIAL): the modality calibrated Pixel Spacing
            return MeasurementScale(tuple(g.pixel_spacing), "mm (calibrated)")  # type: ignore[arg-type]
        if g.pixel_spacing and g.imager_pixel_spacing is None and self.info.modality not in RADIOGRAPHIC_MODALITIES:
            return MeasurementScale(tuple(g.pixel_spacing), "mm")  # type: ignore[arg-type]
        # Radiographic projections: Pixel Spacing without a calibration type (alone, or equal to Imager
        # Pixel Spacing) is still the detector-plane spacing; it is never shown as patient mm.
        if g.imager_pixel_spacing and g.magnification_factor and g.magnification_factor > 0:
            m = g.magnification_factor
            return MeasurementScale((g.imager_pixel_spacing[0] / m, g.imager_pixel_spacing[1] / m),
                                    "mm (magnification corrected)")
        if g.imager_pixel_spacing:
            return MeasurementScale(tuple(g.imager_pixel_spacing), "mm at detector")  # type: ignore[arg-type]
        if g.pixel_spacing:
            return MeasurementScale(tuple(g.pixel_spacing), "mm at detector")  # type: ignore[arg-type]
        return MeasurementScale(None, "px")

    def default_window(self) -> WindowLevel:
        if self.info.header_windows:
            return self.info.header_windows[0]
        if self._window is None:
            a = np.asarray(self.frames[0], dtype=np.float64)
            lo, hi = np.percentile(a, [0.1, 99.9]) if a.size else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1
            self._window = WindowLevel((lo + hi) / 2, hi - lo, "auto")
        return self._window

    def __repr__(self) -> str:
        return (f"ProjectionImage({self.info.modality or '?'}, frames={self.n_frames}, "
                f"{self.rows}x{self.cols})")
