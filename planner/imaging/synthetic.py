"""Writing small synthetic DICOM series with exactly known geometry (tests and benchmarks).

Not patient data: names and IDs are fixed placeholders. The pixel values depend on (slice, row,
column) so that any mix-up of slice order, transposition or flip changes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
XRF_IMAGE = "1.2.840.10008.5.1.4.1.1.12.2"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def pattern(k: int, rows: int, cols: int, bits: int = 12, signed: bool = False, seed: int = 0) -> np.ndarray:
    """A deterministic slice: smooth ramps plus slice-dependent noise within ``bits`` bits."""
    rng = np.random.default_rng(seed * 100003 + k)
    j, i = np.mgrid[0:rows, 0:cols]
    top = 2 ** bits - 1
    a = (i * 7 + j * 3 + k * 101) % (top // 2) + rng.integers(0, top // 2, size=(rows, cols))
    if signed:
        a = a - (top + 1) // 2
        return a.astype(np.int16 if bits > 8 else np.int8)
    return a.astype(np.uint16 if bits > 8 else np.uint8)


def _base_dataset(sop_class: str, modality: str, ts: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Synthetic^Test"
    ds.PatientID = "SYNTH-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Manufacturer = "BVN Planner synthetic"
    return ds


def _set_pixels(ds: Any, arr: np.ndarray, ts: str, bits_stored: int) -> None:
    from pydicom.uid import UID

    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    uid = UID(ts)
    if uid.is_compressed:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        ds.PixelData = arr.tobytes()
        if ts in ("1.2.840.10008.1.2.4.50",):
            _jpeg_baseline(ds, arr)
        else:
            ds.compress(uid, arr, generate_instance_uid=False)
    else:
        ds.PixelData = arr.astype(arr.dtype.newbyteorder(">" if ts == "1.2.840.10008.1.2.2" else "<")).tobytes()
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"


def _jpeg_baseline(ds: Any, arr: np.ndarray) -> None:
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate

    frames = arr if arr.ndim == 3 else arr[None]
    out = []
    for fr in frames:
        buf = io.BytesIO()
        Image.fromarray(fr.astype(np.uint8)).save(buf, format="JPEG", quality=95)
        out.append(buf.getvalue())
    ds.PixelData = encapsulate(out)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.LossyImageCompression = "01"


def write_series(outdir: str | os.PathLike[str], *, n: int = 12, rows: int = 32, cols: int = 40,
                 pixel_spacing: tuple[float, float] = (0.8, 0.7), slice_gap: float = 2.5,
                 iop: Sequence[float] = (1, 0, 0, 0, 1, 0), origin: Sequence[float] = (-12.0, -20.0, 30.0),
                 positions: Optional[np.ndarray] = None, tilt_deg: float = 0.0, modality: str = "CT",
                 transfer_syntax: str = "1.2.840.10008.1.2.1", rescale: tuple[float, float] = (1.0, -1024.0),
                 bits_stored: int = 12, signed: bool = False, photometric: str = "MONOCHROME2",
                 series_uid: Optional[str] = None, study_uid: Optional[str] = None, for_uid: Optional[str] = None,
                 description: str = "synthetic", series_number: int = 1, seed: int = 0,
                 pixels: Optional[Callable[[int], np.ndarray]] = None, shuffle_files: bool = True,
                 header: Optional[Any] = None, windows: Sequence[tuple[float, float]] = ((40.0, 400.0),),
                 extra: Optional[dict[str, Any]] = None) -> list[Path]:
    """Write a stack of single-frame slices; returns the file paths (written in shuffled order of
    instance number so readers cannot rely on file names). ``tilt_deg`` shears the stack along the
    column direction, as a gantry tilt does. ``header`` (a pydicom Dataset) supplies extra attributes
    copied into every file (e.g. a real scanner header)."""
    import copy

    from pydicom.uid import generate_uid

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    iop = np.asarray(iop, dtype=float)
    r, c = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(r, c)
    if positions is None:
        ks = np.arange(n)
        shear = np.tan(np.radians(tilt_deg)) * slice_gap
        positions = np.asarray(origin, float)[None, :] + ks[:, None] * (slice_gap * normal + shear * c)[None, :]
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    for_uid = for_uid or generate_uid()
    sop_class = {"CT": CT_IMAGE, "MR": MR_IMAGE}.get(modality, CT_IMAGE)
    order = np.random.default_rng(seed + 7).permutation(len(positions)) if shuffle_files else np.arange(len(positions))
    paths = []
    for idx in order:
        k = int(idx)
        ds = _base_dataset(sop_class, modality, transfer_syntax)
        if header is not None:
            for elem in header:
                if elem.tag.group in (0x0002, 0x7FE0) or elem.keyword in ("SOPInstanceUID", "PixelData"):
                    continue
                ds[elem.tag] = copy.deepcopy(elem)
            ds.SOPClassUID = sop_class
            ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.FrameOfReferenceUID = for_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{x:.6f}" for x in positions[k]]
        ds.ImageOrientationPatient = [f"{x:.6f}" for x in iop]
        ds.PixelSpacing = [f"{pixel_spacing[0]:.6f}", f"{pixel_spacing[1]:.6f}"]
        ds.SliceThickness = f"{slice_gap:.6f}"
        ds.PhotometricInterpretation = photometric
        if tilt_deg:
            ds.GantryDetectorTilt = f"{tilt_deg:.3f}"
        if rescale is not None:
            ds.RescaleSlope = f"{rescale[0]:g}"
            ds.RescaleIntercept = f"{rescale[1]:g}"
        if windows:
            ds.WindowCenter = [f"{w[0]:g}" for w in windows]
            ds.WindowWidth = [f"{w[1]:g}" for w in windows]
        for kw, v in (extra or {}).items():
            setattr(ds, kw, v)
        arr = pixels(k) if pixels is not None else pattern(k, rows, cols, bits_stored, signed, seed)
        _set_pixels(ds, arr, transfer_syntax, bits_stored)
        p = out / f"IM{len(paths):05d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def write_enhanced_mr(path: str | os.PathLike[str], *, n_frames: int = 10, rows: int = 24, cols: int = 20,
                      pixel_spacing: tuple[float, float] = (0.9, 1.1), slice_gap: float = 3.0,
                      iop: Sequence[float] = (0, 1, 0, 0, 0, -1), origin: Sequence[float] = (-20.0, -30.0, 40.0),
                      frame_order: Optional[Sequence[int]] = None, rescale: tuple[float, float] = (1.0, 0.0),
                      per_frame_rescale: bool = False, seed: int = 3, transfer_syntax: str = "1.2.840.10008.1.2.1",
                      echoes: int = 1, second_orientation: Optional[Sequence[float]] = None
                      ) -> tuple[Path, np.ndarray, np.ndarray]:
    """Write an Enhanced MR multi-frame file (per-frame Plane Position, shared orientation and pixel
    measures). Returns (path, positions of the frames in file order, frames in file order).
    ``frame_order`` permutes the slices in the file (the reader must sort them by position).
    ``echoes`` > 1 repeats every position once per echo (Effective Echo Time differs).
    ``second_orientation`` adds a second stack of ``n_frames`` frames with that orientation (per-frame
    Plane Orientation, as in a multi-plane localizer)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq
    from pydicom.uid import generate_uid

    iop = np.asarray(iop, dtype=float)
    r, c = iop[:3], iop[3:]
    normal = np.cross(r, c)
    pos_sorted = np.asarray(origin, float)[None, :] + np.arange(n_frames)[:, None] * slice_gap * normal[None, :]
    order = list(frame_order) if frame_order is not None else list(range(n_frames))
    ds = _base_dataset(ENHANCED_MR, "MR", transfer_syntax)
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesDescription = "synthetic enhanced MR"
    ds.SeriesNumber = 5
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ContentDate, ds.ContentTime = "20240101", "120000"
    ds.AcquisitionDateTime = "20240101120000"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = n_frames * echoes
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    pm.SliceThickness = f"{slice_gap:g}"
    pm.SpacingBetweenSlices = f"{slice_gap:g}"
    shared.PixelMeasuresSequence = Seq([pm])
    po = Dataset()
    po.ImageOrientationPatient = [f"{x:g}" for x in iop]
    shared.PlaneOrientationSequence = Seq([po])
    if not per_frame_rescale:
        pv = Dataset()
        pv.RescaleSlope, pv.RescaleIntercept, pv.RescaleType = f"{rescale[0]:g}", f"{rescale[1]:g}", "US"
        shared.PixelValueTransformationSequence = Seq([pv])
    if second_orientation is not None:
        del shared.PlaneOrientationSequence
        ds.NumberOfFrames = n_frames * echoes * 2
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    per = []
    frames = []
    positions = []
    stacks = [(iop, pos_sorted)]
    if second_orientation is not None:
        iop2 = np.asarray(second_orientation, dtype=float)
        n2 = np.cross(iop2[:3], iop2[3:])
        pos2 = np.asarray(origin, float)[None, :] + np.arange(n_frames)[:, None] * slice_gap * n2[None, :]
        stacks.append((iop2, pos2))
    for (stack_iop, stack_pos), e in [(st, e) for st in stacks for e in range(echoes)]:
        for k in order:
            item = Dataset()
            pp = Dataset()
            pp.ImagePositionPatient = [f"{x:.6f}" for x in stack_pos[k]]
            item.PlanePositionSequence = Seq([pp])
            if second_orientation is not None:
                po_k = Dataset()
                po_k.ImageOrientationPatient = [f"{x:g}" for x in stack_iop]
                item.PlaneOrientationSequence = Seq([po_k])
            fc = Dataset()
            fc.StackID = "1"
            fc.InStackPositionNumber = k + 1
            fc.TemporalPositionIndex = 1
            fc.DimensionIndexValues = [e + 1, k + 1]
            item.FrameContentSequence = Seq([fc])
            if echoes > 1:
                me = Dataset()
                me.EffectiveEchoTime = 10.0 * (e + 1)
                item.MREchoSequence = Seq([me])
            if per_frame_rescale:
                pv = Dataset()
                pv.RescaleSlope, pv.RescaleIntercept, pv.RescaleType = f"{1 + 0.5 * k:g}", f"{-10 * k:g}", "US"
                item.PixelValueTransformationSequence = Seq([pv])
            per.append(item)
            frames.append(pattern(k + 100 * e, rows, cols, 12, False, seed))
            positions.append(stack_pos[k])
    ds.PerFrameFunctionalGroupsSequence = Seq(per)
    arr = np.stack(frames)
    _set_pixels(ds, arr, transfer_syntax, 12)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(p, enforce_file_format=True)
    return p, np.asarray(positions), arr


def write_projection(path: str | os.PathLike[str], *, modality: str = "RF", rows: int = 48, cols: int = 64,
                     frames: int = 1, imager_spacing: Optional[tuple[float, float]] = (0.3, 0.3),
                     pixel_spacing: Optional[tuple[float, float]] = None, magnification: Optional[float] = None,
                     calibration_type: str = "", photometric: str = "MONOCHROME2", bits: int = 8,
                     sid: Optional[float] = 1000.0, sod: Optional[float] = 750.0, primary: float = 0.0,
                     secondary: float = 0.0, view: str = "AP", transfer_syntax: str = "1.2.840.10008.1.2.1",
                     seed: int = 11) -> tuple[Path, np.ndarray]:
    """Write an RF/XA/DX projection image; returns (path, stored frames)."""
    from pydicom.uid import generate_uid

    sop = {"RF": XRF_IMAGE, "XA": XA_IMAGE, "DX": DX_IMAGE, "CR": "1.2.840.10008.5.1.4.1.1.1"}.get(modality, XRF_IMAGE)
    ds = _base_dataset(sop, modality, transfer_syntax)
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesNumber = 7
    ds.InstanceNumber = 1
    ds.SeriesDescription = f"synthetic {modality}"
    ds.PhotometricInterpretation = photometric
    if imager_spacing:
        ds.ImagerPixelSpacing = [f"{imager_spacing[0]:g}", f"{imager_spacing[1]:g}"]
    if pixel_spacing:
        ds.PixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    if magnification:
        ds.EstimatedRadiographicMagnificationFactor = f"{magnification:g}"
    if calibration_type:
        ds.PixelSpacingCalibrationType = calibration_type
    if sid:
        ds.DistanceSourceToDetector = f"{sid:g}"
    if sod:
        ds.DistanceSourceToPatient = f"{sod:g}"
    ds.PositionerPrimaryAngle = f"{primary:g}"
    ds.PositionerSecondaryAngle = f"{secondary:g}"
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"]
    arr = np.stack([pattern(f, rows, cols, bits, False, seed) for f in range(frames)])
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = "66.7"
        ds.FrameIncrementPointer = 0x00181063
    _set_pixels(ds, arr if frames > 1 else arr[0], transfer_syntax, bits)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(p, enforce_file_format=True)
    return p, arr
