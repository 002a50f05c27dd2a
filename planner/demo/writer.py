"""Writing the demo study: MR and fluoroscopy DICOM series, ground truth and a sample plan.

:func:`write_demo_study` samples the analytic :class:`planner.demo.phantom.Phantom` into

* sagittal T1, T2 and STIR series (one frame of reference, identical slice geometry, 19 slices of
  3.5 mm, 0.94 mm pixels, tilted 4 degrees about the left-right axis and 3 degrees about the
  cranio-caudal axis),
* an axial T2 stack parallel to the L4/L5 disc (24 slices of 4 mm),
* an AP and a lateral fluoroscopy image (Digital X-Ray, for presentation): true cone-beam
  projections of the phantom's attenuation, source-to-detector 1000 mm, source-to-isocentre 720 mm,

plus ``ground_truth.json`` (landmarks, Modic regions, the geometry of every series as SimpleITK
reports it, the 3x4 projection matrices LPS -> pixel) and ``sample.bvnplan``.

Everything is deterministic: fixed seeds, UIDs derived from a fixed root, fixed dates, so two runs
write byte-identical files. All patient data are made up ("DEMO^BVN"); the images are synthetic.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from scipy import ndimage, sparse

from planner import __version__
from planner.demo.geometry import F, rot_x, rot_z, unit
from planner.demo.phantom import (
    GENERATOR_VERSION, HU, LEVELS, MR_SIGNAL, TEXTURE, ModicRegion, Phantom, Tissue, Vertebra, lut,
)
from planner.settings import PlanningSettings

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

PATIENT = {
    "PatientName": "DEMO^BVN",
    "PatientID": "BVN-DEMO-0000",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAge": "054Y",
}
STUDY = {
    "StudyDate": "20240315",
    "StudyTime": "101500",
    "StudyID": "DEMO1",
    "AccessionNumber": "DEMO000001",
    "StudyDescription": "LUMBAR SPINE MRI + FLUORO (SYNTHETIC DEMO)",
    "InstitutionName": "BVN Planner demo (synthetic)",
    "ReferringPhysicianName": "",
}
DISCLAIMER = "Synthetic phantom image (BVN Planner demo case); not a patient image"

#: Linear attenuation of water at the effective energy of the projection model (1/mm, ~65 keV).
MU_WATER = 0.0195


def uid(*parts: Any) -> str:
    """A deterministic UID for the demo (pydicom's root, hash of a fixed seed and ``parts``)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["bvn-planner-demo", GENERATOR_VERSION, *[str(p) for p in parts]]))


# ------------------------------------------------------------------ geometry of the series
@dataclass
class MRSeriesSpec:
    role: str
    description: str
    series_number: int
    ijk_to_lps: np.ndarray
    shape: tuple[int, int, int]  # (nk, nj, ni)
    thickness: float
    #: acquisition parameters
    sequence: str  # T1 / T2 / STIR
    tr: float
    te: float
    ti: Optional[float]
    etl: int
    scanning_sequence: str
    sequence_variant: str
    scan_options: str
    flip_angle: float
    seed: int
    uid: str = ""
    labels_key: str = ""


def sagittal_grid(ph: Phantom) -> tuple[np.ndarray, tuple[int, int, int], float]:
    """The shared sagittal slice geometry: ijk_to_lps, (nk, nj, ni), slice thickness."""
    rot = rot_z(3.0) @ rot_x(4.0)
    i_dir = rot @ np.array([0.0, 1.0, 0.0])  # rows run posterior
    j_dir = rot @ np.array([0.0, 0.0, -1.0])  # columns run caudal
    k_dir = np.cross(i_dir, j_dir)
    n, nk, dk = 320, 19, 3.5
    sp = 300.0 / n
    center = np.array([ph.curve.x0, -20.0, 12.0])
    origin = center - (n - 1) / 2 * sp * i_dir - (n - 1) / 2 * sp * j_dir - (nk - 1) / 2 * dk * k_dir
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = i_dir * sp, j_dir * sp, k_dir * dk, origin
    return _rounded(m), (nk, n, n), dk


def axial_grid(ph: Phantom) -> tuple[np.ndarray, tuple[int, int, int], float]:
    """Axial T2 stack parallel to the L4/L5 disc, centred on it."""
    disc = next(d for d in ph.discs if d.upper.name == "L4")
    fr = disc.frame
    i_dir, j_dir, k_dir = fr.rot[:, 0], fr.rot[:, 1], fr.rot[:, 2]  # left, posterior, cranial
    n, nk, dk = 256, 24, 4.0
    sp = 200.0 / n
    center = fr.to_world([0.0, 15.0, 0.0])
    origin = center - (n - 1) / 2 * sp * i_dir - (n - 1) / 2 * sp * j_dir - (nk - 1) / 2 * dk * k_dir
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = i_dir * sp, j_dir * sp, k_dir * dk, origin
    return _rounded(m), (nk, n, n), dk


def _rounded(m: np.ndarray) -> np.ndarray:
    """Round the geometry to what the DICOM header carries (direction cosines to 8 decimals, positions
    to 4 decimals), so the written files and the ground truth describe exactly the same lattice."""
    out = m.copy()
    sp = np.linalg.norm(m[:3, :3], axis=0)
    d = m[:3, :3] / sp
    d[:, 0] = np.round(d[:, 0], 8)
    d[:, 1] = np.round(d[:, 1], 8)
    d[:, 2] = np.cross(d[:, 0], d[:, 1])
    sp = np.round(sp, 6)
    out[:3, :3] = d * sp
    out[:3, 3] = np.round(m[:3, 3], 4)
    return out


# ------------------------------------------------------------------ MR synthesis
@dataclass
class GridContext:
    """Per-grid values shared by the sequences sampled on it."""

    labels_sub: np.ndarray  # (r*nk, nj, ni) tissue labels with r sub-slices per slice
    texture: np.ndarray  # (nk, nj, ni) smooth texture at the voxel centres
    coil: np.ndarray  # (nk, nj, ni) receive-coil sensitivity

    @classmethod
    def build(cls, ph: Phantom, ijk_to_lps: np.ndarray, shape: tuple[int, int, int], sub_slices: int = 3):
        labels = ph.labels_on_grid(ijk_to_lps, shape, sub_slices=sub_slices)
        pts = _grid_points(ijk_to_lps, shape)
        tex = ph.texture_at(pts)
        # the spine coil lies under the patient's back: sensitivity falls with the depth from the back
        _, yback = ph.torso_y(pts[..., 2])
        depth = np.maximum(yback - pts[..., 1], 0.0)
        coil = (F(0.5) + F(0.72) * np.exp(-depth / F(140.0))).astype(F)
        return cls(labels, tex, coil)


def synthesize_mr(ctx: GridContext, sequence: str, seed: int) -> np.ndarray:
    """uint16 (nk, nj, ni) image of one sequence.

    Per-tissue signal (:data:`MR_SIGNAL`) with a smooth texture, averaged through the slice thickness
    (sub-slices), blurred in-plane (partial volume), shaded by the coil sensitivity, with Rician noise."""
    nk, nj, ni = ctx.texture.shape
    r = ctx.labels_sub.shape[0] // nk
    col = ("T1", "T2", "STIR").index(sequence)
    base = lut({t: v[col] for t, v in MR_SIGNAL.items()})
    tex_amp = base * lut(TEXTURE)
    lab = ctx.labels_sub.reshape(nk, r, nj, ni)
    a = base[lab].mean(axis=1, dtype=np.float32)
    b = tex_amp[lab].mean(axis=1, dtype=np.float32)
    img = a + b * ctx.texture
    img = ndimage.gaussian_filter(img, sigma=(0.0, 0.55, 0.55), mode="nearest")
    img *= ctx.coil
    scale, sigma = F(1600.0), F(14.0)
    rng = np.random.default_rng(seed)
    n1 = rng.standard_normal(img.shape, dtype=np.float32)
    n2 = rng.standard_normal(img.shape, dtype=np.float32)
    img *= scale
    img += n1 * sigma
    out = np.sqrt(img * img + (n2 * sigma) ** 2)
    return np.clip(np.rint(out), 0, 4095).astype(np.uint16)


def _grid_points(ijk_to_lps: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    nk, nj, ni = shape
    m = np.asarray(ijk_to_lps, dtype=float)
    k = np.arange(nk, dtype=np.float32)[:, None, None, None]
    j = np.arange(nj, dtype=np.float32)[None, :, None, None]
    i = np.arange(ni, dtype=np.float32)[None, None, :, None]
    return (m[:3, 3].astype(F) + k * m[:3, 2].astype(F) + j * m[:3, 1].astype(F) + i * m[:3, 0].astype(F)).astype(F)


# ------------------------------------------------------------------ fluoroscopy
@dataclass
class ProjectionSpec:
    role: str
    description: str
    series_number: int
    view_position: str
    patient_orientation: tuple[str, str]
    source_lps: np.ndarray
    detector_origin_lps: np.ndarray  # centre of pixel (row 0, column 0)
    col_axis: np.ndarray  # unit vector along increasing column index
    row_axis: np.ndarray  # unit vector along increasing row index
    rows: int
    cols: int
    pixel_spacing: float  # at the detector, mm (square pixels)
    sid: float
    sod: float
    iso_lps: np.ndarray
    primary_angle: float
    seed: int
    uid: str = ""

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.col_axis, self.row_axis)

    def matrix(self) -> np.ndarray:
        """3x4 matrix P with [c*w, r*w, w] = P @ [x, y, z, 1] (c, r: column and row pixel indices)."""
        s, d0, ec, er = self.source_lps, self.detector_origin_lps, self.col_axis, self.row_axis
        n = self.normal
        dist = float((d0 - s) @ n)
        w_row = np.append(n, -float(s @ n))
        c_row = (float((s - d0) @ ec) * w_row + dist * np.append(ec, -float(s @ ec))) / self.pixel_spacing
        r_row = (float((s - d0) @ er) * w_row + dist * np.append(er, -float(s @ er))) / self.pixel_spacing
        return np.vstack([c_row, r_row, w_row])

    def project(self, p_lps: Sequence[float]) -> np.ndarray:
        h = self.matrix() @ np.append(np.asarray(p_lps, float), 1.0)
        return h[:2] / h[2]


def projection_specs(ph: Phantom) -> list[ProjectionSpec]:
    iso = ph.by_name["L4"].frame.to_world(ph.by_name["L4"].landmarks_local()["body_center"])
    iso = np.round(iso, 3)
    sid, sod, n, px = 1000.0, 720.0, 768, 0.4
    specs = []
    for role, desc, num, view, orient, beam, col, row, angle in (
        ("FLUORO_AP", "FLUORO AP", 5, "AP", ("L", "F"), np.array([0.0, 1.0, 0.0]),
         np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0]), 0.0),
        ("FLUORO_LAT", "FLUORO LAT", 6, "LL", ("P", "F"), np.array([1.0, 0.0, 0.0]),
         np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]), 90.0),
    ):
        src = iso - sod * beam
        det_c = src + sid * beam
        d0 = det_c - (n - 1) / 2 * px * col - (n - 1) / 2 * px * row
        specs.append(ProjectionSpec(role, desc, num, view, orient, src, d0, col, row, n, n, px, sid, sod, iso,
                                    angle, seed=700 + num))
    return specs


def _interp_matrix(f: np.ndarray, n_src: int) -> sparse.csr_matrix:
    """Sparse (len(f) x n_src) linear-interpolation weights sampling positions ``f`` (source indices)."""
    i0 = np.floor(f).astype(np.int64)
    t = (f - i0).astype(np.float32)
    rows = np.arange(len(f))
    data, r_idx, c_idx = [], [], []
    for off, w in ((0, 1.0 - t), (1, t)):
        idx = i0 + off
        ok = (idx >= 0) & (idx < n_src)
        data.append(w[ok])
        r_idx.append(rows[ok])
        c_idx.append(idx[ok])
    return sparse.csr_matrix((np.concatenate(data), (np.concatenate(r_idx), np.concatenate(c_idx))),
                             shape=(len(f), n_src), dtype=np.float32)


def project_volume(mu: np.ndarray, origin: np.ndarray, spacing: float, spec: ProjectionSpec,
                   slab: int = 2) -> np.ndarray:
    """Line integrals of ``mu`` along the cone-beam rays of ``spec``.

    ``mu`` is an LPS-aligned volume (array (z, y, x), voxel (0, 0, 0) at ``origin``, isotropic
    ``spacing``); the central ray and the detector axes must follow the volume axes (AP and lateral
    views). The integral is a sum over slabs of ``slab`` planes normal to the central ray: each slab's
    sum is sampled bilinearly where every ray crosses the slab's middle plane (exact perspective at
    that plane; within a 2.5 mm slab the rays' spread is below 0.2 mm), times the path length through
    the slab from the ray's obliquity."""
    beam = unit(spec.normal)
    axis = int(np.argmax(np.abs(beam)))
    if abs(abs(beam[axis]) - 1.0) > 1e-9:
        raise ValueError("the projection needs a beam along a volume axis")
    ax_r = int(np.argmax(np.abs(spec.row_axis)))
    ax_c = int(np.argmax(np.abs(spec.col_axis)))
    if len({axis, ax_r, ax_c}) != 3:
        raise ValueError("the detector axes must follow the volume axes")
    arr = {0: 2, 1: 1, 2: 0}  # LPS axis -> array axis of (z, y, x)
    vol = np.moveaxis(mu, (arr[axis], arr[ax_r], arr[ax_c]), (0, 1, 2))  # (planes, row-axis, col-axis)
    n_planes = vol.shape[0] - vol.shape[0] % slab
    slabs = vol[:n_planes].reshape(n_planes // slab, slab, vol.shape[1], vol.shape[2]).sum(axis=1, dtype=np.float32)
    s = spec.source_lps
    rows, cols = spec.rows, spec.cols
    det_r = spec.detector_origin_lps[ax_r] + np.arange(rows) * spec.pixel_spacing * spec.row_axis[ax_r]
    det_c = spec.detector_origin_lps[ax_c] + np.arange(cols) * spec.pixel_spacing * spec.col_axis[ax_c]
    det_plane = float(spec.detector_origin_lps[axis])
    plane_pos = origin[axis] + (np.arange(slabs.shape[0]) * slab + (slab - 1) / 2.0) * spacing
    lam = (plane_pos - s[axis]) / (det_plane - s[axis])
    n_r_src, n_c_src = slabs.shape[1], slabs.shape[2]
    out = np.zeros((cols, rows), dtype=np.float32)
    a_cat: list[np.ndarray] = []
    w_cat: list[sparse.csr_matrix] = []

    def flush() -> None:
        if a_cat:
            w_all = sparse.hstack(w_cat, format="csr")
            out[...] += w_all @ np.concatenate(a_cat, axis=0)
            a_cat.clear()
            w_cat.clear()

    for p in range(slabs.shape[0]):
        plane = slabs[p]
        if lam[p] <= 0 or not plane.any():
            continue
        fr_ = (s[ax_r] + lam[p] * (det_r - s[ax_r]) - origin[ax_r]) / spacing
        fc_ = (s[ax_c] + lam[p] * (det_c - s[ax_c]) - origin[ax_c]) / spacing
        wr = _interp_matrix(fr_, n_r_src)
        a_cat.append(np.ascontiguousarray((wr @ plane).T))  # (n_c_src, rows)
        w_cat.append(_interp_matrix(fc_, n_c_src))  # (cols, n_c_src)
        if len(a_cat) >= 48:
            flush()
    flush()
    # path length per plane along each ray: spacing / cos(angle to the central ray)
    ray = (spec.detector_origin_lps[None, None, :]
           + np.arange(rows)[:, None, None] * spec.pixel_spacing * spec.row_axis
           + np.arange(cols)[None, :, None] * spec.pixel_spacing * spec.col_axis) - s
    cos = np.abs(ray[..., axis]) / np.linalg.norm(ray, axis=-1)
    return out.T.astype(np.float64) * spacing / cos


def attenuation_volumes(ph: Phantom) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(mu, origin, spacing) volumes whose line integrals add up to the phantom's attenuation: the soft
    tissues on a 4 mm grid, and the bones' excess over water (anti-aliased cortex and marrow) on a
    2.5 mm grid for the iliac wings and a 1.25 mm grid for the spine."""
    mu_soft = lut({t: MU_WATER * (1.0 + HU[t] / 1000.0) for t in Tissue})
    mu_cortex = MU_WATER * HU[Tissue.CORTEX] / 1000.0
    mu_marrow = MU_WATER * HU[Tissue.MARROW] / 1000.0
    iso = ph.by_name["L4"].frame.origin
    x0 = ph.curve.x0
    out = []
    for lo, n, sp, kind in (
        ((x0 - 184.0, iso[1] - 200.0, iso[2] - 200.0), (93, 100, 101), 4.0, "soft"),
        ((x0 - 150.0, iso[1] - 125.0, iso[2] - 175.0), (121, 105, 141), 2.5, "pelvis"),
        ((x0 - 66.0, iso[1] - 70.0, iso[2] - 175.0), (106, 165, 281), 1.25, "spine"),
    ):
        m = np.eye(4)
        m[:3, :3] *= sp
        m[:3, 3] = lo
        shape = (n[2], n[1], n[0])
        if kind == "soft":
            mu = ndimage.gaussian_filter(mu_soft[ph.labels_on_grid(m, shape, bones=False)], 0.8)
        else:
            mu = ph.bone_density_on_grid(m, shape, (kind,), mu_cortex, mu_marrow, edge_mm=sp)
        out.append((mu, np.asarray(lo, float), sp))
    return out


def render_fluoro(spec: ProjectionSpec, volumes: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """A 12-bit fluoroscopy frame (MONOCHROME2: more attenuation = brighter)."""
    line = np.zeros((spec.rows, spec.cols))
    for mu, origin, sp in volumes:
        line += project_volume(mu, origin, sp, spec)
    # quantum noise on the transmitted intensity, then the log image
    rng = np.random.default_rng(spec.seed)
    n0 = 1.5e5
    counts = n0 * np.exp(-line)
    counts = counts + rng.standard_normal(counts.shape) * np.sqrt(counts)
    att = -np.log(np.maximum(counts, 1.0) / n0)
    att = ndimage.gaussian_filter(att, 0.8)
    # image processing as on a fluoroscopy system: dynamic-range compression and edge enhancement
    low = _smooth_large(att, 64.0)
    att = 0.5 * low + 1.2 * (att - low) + 0.5 * (att - ndimage.gaussian_filter(att, 6.0))
    img = 300.0 + (att - 0.5) * 900.0
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def _smooth_large(img: np.ndarray, sigma: float, factor: int = 8) -> np.ndarray:
    """A wide Gaussian blur computed on a downsampled copy (the result is smooth anyway)."""
    h, w = img.shape
    small = img[: h - h % factor, : w - w % factor].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma / factor, mode="nearest")
    zy = np.clip((np.arange(h) + 0.5) / factor - 0.5, 0, small.shape[0] - 1)
    zx = np.clip((np.arange(w) + 0.5) / factor - 0.5, 0, small.shape[1] - 1)
    yy, xx = np.meshgrid(zy, zx, indexing="ij")
    return ndimage.map_coordinates(small, [yy, xx], order=1)


# ------------------------------------------------------------------ DICOM
def _file_meta(sop_class: str, sop_uid: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LE
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "BVN_DEMO_" + GENERATOR_VERSION
    return meta


def _common(ds, study_uid: str, series_uid: str, modality: str, number: int, description: str, time: str) -> None:
    for k, v in PATIENT.items():
        setattr(ds, k, v)
    for k, v in STUDY.items():
        setattr(ds, k, v)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.ProtocolName = description
    ds.SeriesDate = STUDY["StudyDate"]
    ds.SeriesTime = time
    ds.ContentDate = STUDY["StudyDate"]
    ds.ContentTime = time
    ds.AcquisitionDate = STUDY["StudyDate"]
    ds.AcquisitionTime = time
    ds.Manufacturer = "BVN Planner"
    ds.ManufacturerModelName = "Synthetic lumbar phantom"
    ds.SoftwareVersions = f"bvn-planner {__version__} demo {GENERATOR_VERSION}"
    ds.BodyPartExamined = "LSPINE"
    ds.ImageComments = DISCLAIMER
    ds.PatientIdentityRemoved = "NO"
    ds.BurnedInAnnotation = "NO"


def _pixels(ds, arr: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()


def _ds_str(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


class _SeriesEncoder:
    """Writes many instances that share most elements: the shared elements are encoded once."""

    def __init__(self, template) -> None:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element

        self._fixed: list[tuple[int, bytes]] = []
        for elem in template:
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_data_element(fp, elem)
            self._fixed.append((int(elem.tag), fp.getvalue()))

    def write(self, path: Path, sop_class: str, sop_uid: str, variable) -> None:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element, write_file_meta_info

        chunks = list(self._fixed)
        for elem in variable:
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_data_element(fp, elem)
            chunks.append((int(elem.tag), fp.getvalue()))
        chunks.sort(key=lambda c: c[0])
        meta = DicomBytesIO()
        meta.is_little_endian, meta.is_implicit_VR = True, False
        write_file_meta_info(meta, _file_meta(sop_class, sop_uid), enforce_standard=True)
        with open(path, "wb") as fh:
            fh.write(b"\0" * 128 + b"DICM")
            fh.write(meta.getvalue())
            for _, data in chunks:
                fh.write(data)


def write_mr_series(folder: Path, spec: MRSeriesSpec, image: np.ndarray, study_uid: str, for_uid: str) -> list[str]:
    from pydicom.dataset import Dataset

    folder.mkdir(parents=True, exist_ok=True)
    m = spec.ijk_to_lps
    sp = np.linalg.norm(m[:3, :3], axis=0)
    row_dir, col_dir, normal = m[:3, 0] / sp[0], m[:3, 1] / sp[1], m[:3, 2] / sp[2]
    iop = [_ds_str(v, 8) for v in list(row_dir) + list(col_dir)]
    lo, hi = np.percentile(image, [1.0, 99.7])
    wc, ww = int(round((lo + hi) / 2)), int(round(hi - lo))
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MR_IMAGE_STORAGE
    _common(ds, study_uid, spec.uid, "MR", spec.series_number, spec.description, f"10{20 + spec.series_number:02d}00")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = iop
    ds.PixelSpacing = [_ds_str(sp[1], 6), _ds_str(sp[0], 6)]
    ds.SliceThickness = _ds_str(spec.thickness, 4)
    ds.SpacingBetweenSlices = _ds_str(sp[2], 6)
    ds.ScanningSequence = spec.scanning_sequence.split("\\")
    ds.SequenceVariant = spec.sequence_variant.split("\\")
    ds.ScanOptions = spec.scan_options.split("\\") if spec.scan_options else ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = f"*tse2d1_{spec.etl}"
    ds.RepetitionTime = _ds_str(spec.tr, 2)
    ds.EchoTime = _ds_str(spec.te, 2)
    if spec.ti is not None:
        ds.InversionTime = _ds_str(spec.ti, 2)
    ds.EchoTrainLength = spec.etl
    ds.NumberOfAverages = "2"
    ds.ImagingFrequency = "63.8976"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.MagneticFieldStrength = "1.5"
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "190"
    ds.FlipAngle = _ds_str(spec.flip_angle, 1)
    ds.ReceiveCoilName = "SPINE"
    ds.InPlanePhaseEncodingDirection = "COL" if spec.role != "AX_T2" else "ROW"
    ds.WindowCenter = str(wc)
    ds.WindowWidth = str(max(ww, 1))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(image.shape[1]), int(image.shape[2])
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    encoder = _SeriesEncoder(ds)
    names = []
    for k in range(image.shape[0]):
        sop = uid("sop", spec.role, k)
        var = Dataset()
        var.SOPInstanceUID = sop
        var.InstanceNumber = k + 1
        pos = m[:3, 3] + k * m[:3, 2]
        var.ImagePositionPatient = [_ds_str(v, 4) for v in pos]
        var.SliceLocation = _ds_str(float(pos @ normal), 4)
        var.PixelData = np.ascontiguousarray(image[k], dtype="<u2").tobytes()
        var["PixelData"].VR = "OW"
        name = f"IM{k + 1:04d}.dcm"
        encoder.write(folder / name, MR_IMAGE_STORAGE, sop, var)
        names.append(name)
    return names


def write_dx(folder: Path, spec: ProjectionSpec, image: np.ndarray, study_uid: str) -> str:
    from pydicom.dataset import Dataset

    folder.mkdir(parents=True, exist_ok=True)
    sop = uid("sop", spec.role, 0)
    ds = Dataset()
    ds.file_meta = _file_meta(DX_PRESENTATION_STORAGE, sop)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_PRESENTATION_STORAGE
    ds.SOPInstanceUID = sop
    _common(ds, study_uid, spec.uid, "DX", spec.series_number, spec.description, f"11{spec.series_number:02d}00")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.InstanceNumber = 1
    ds.PatientOrientation = list(spec.patient_orientation)
    ds.ViewPosition = spec.view_position
    ds.ImageLaterality = "U"
    region = Dataset()
    region.CodeValue = "122496007"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Lumbar spine"
    ds.AnatomicRegionSequence = [region]
    ds.AcquisitionContextSequence = []
    ds.ImagerPixelSpacing = [_ds_str(spec.pixel_spacing, 6)] * 2
    ds.DistanceSourceToDetector = _ds_str(spec.sid, 3)
    ds.DistanceSourceToPatient = _ds_str(spec.sod, 3)
    ds.EstimatedRadiographicMagnificationFactor = _ds_str(spec.sid / spec.sod, 6)
    ds.PositionerType = "CARM"
    ds.PositionerPrimaryAngle = _ds_str(spec.primary_angle, 1)
    ds.PositionerSecondaryAngle = "0"
    ds.DetectorType = "SCINTILLATOR"
    ds.KVP = "85"
    ds.XRayTubeCurrent = 3
    ds.ExposureTime = 100
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    lo, hi = np.percentile(image, [0.5, 99.5])
    ds.WindowCenter = str(int(round((lo + hi) / 2)))
    ds.WindowWidth = str(max(int(round(hi - lo)), 1))
    _pixels(ds, image)
    name = "IM0001.dcm"
    ds.save_as(folder / name, enforce_file_format=True)
    return name


# ------------------------------------------------------------------ ground truth and plan
ROLES = ("T1", "T2", "STIR", "AX_T2", "FLUORO_AP", "FLUORO_LAT")
SERIES_DIRS = {"T1": "01_SAG_T1", "T2": "02_SAG_T2", "STIR": "03_SAG_STIR", "AX_T2": "04_AX_T2",
               "FLUORO_AP": "05_FLUORO_AP", "FLUORO_LAT": "06_FLUORO_LAT"}
DICOM_DIR = "DICOM"
GROUND_TRUTH = "ground_truth.json"
SAMPLE_PLAN = "sample.bvnplan"
#: A fixed time stamp for everything the demo writes (byte-identical output).
DEMO_TIME = "2024-03-15T10:30:00+00:00"


@dataclass
class DemoManifest:
    """What :func:`write_demo_study` wrote."""

    folder: Path
    dicom_folder: Path
    series_dirs: dict[str, Path]
    ground_truth_path: Path
    plan_path: Path
    ground_truth: dict[str, Any] = field(repr=False, default_factory=dict)
    files: list[Path] = field(repr=False, default_factory=list)

    def summary(self) -> str:
        lines = [f"Demo study written to {self.folder}"]
        for s in self.ground_truth.get("series", []):
            lines.append(f"  {s['role']:<11} {s['description']:<11} {s['number_of_files']:>3} file(s)  "
                         f"{'x'.join(str(v) for v in s['size'])}  {s['folder']}")
        lines.append(f"  ground truth: {self.ground_truth_path.name}")
        lines.append(f"  sample plan:  {self.plan_path.name}")
        return "\n".join(lines)


def _r(v: Any, nd: int = 6) -> Any:
    if isinstance(v, np.ndarray):
        return [_r(x, nd) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_r(x, nd) for x in v]
    if isinstance(v, (float, np.floating)):
        x = round(float(v), nd)
        return 0.0 if x == 0 else x
    if isinstance(v, np.integer):
        return int(v)
    return v


def _grade(height_pct: float, settings: PlanningSettings) -> str:
    if height_pct < settings.modic_grade_a_max_pct:
        return "A"
    return "B" if height_pct <= settings.modic_grade_b_max_pct else "C"


def normal_marrow_local(ph: Phantom, vt: Vertebra) -> np.ndarray:
    """A point of normal marrow on the midline at mid-depth: the middle of the height that no Modic band
    of this vertebra reaches (vertebra frame)."""
    lm = vt.landmarks_local()
    lo, hi = lm["inferior_endplate"][2], lm["superior_endplate"][2]
    for m in ph.modic:
        if m.vertebra is vt:
            if m.sign > 0:
                hi -= m.spec.max_height_mm
            else:
                lo += m.spec.max_height_mm
    return np.array([0.0, lm["body_center"][1], 0.5 * (lo + hi)])


def _modic_truth(ph: Phantom, m: ModicRegion, settings: PlanningSettings) -> dict[str, Any]:
    vt = m.vertebra
    fr = vt.frame
    lm = vt.landmarks_local()
    # endplate area: the body section at the endplate, sampled on a 0.25 mm lattice
    us = np.arange(-vt.a - 1, vt.a + 1, 0.25, dtype=np.float32)
    vs = np.arange(-2 * vt.b - 1, 1.0, 0.25, dtype=np.float32)
    uu, vv = np.meshgrid(us, vs)
    w_end = m.sign * (vt.h / 2 - vt.c - 0.3)  # just inside the (concave) endplate everywhere
    q = np.stack([uu, vv, np.full_like(uu, w_end)], axis=-1)
    inside = vt.body_sdf_local(q) < 0
    hmap = m.height_map(uu, vv)
    involved = inside & (hmap > 1.2 + 1.0)  # the band reaches beyond the cortical endplate
    share = 100.0 * float(involved.sum()) / float(inside.sum())
    max_h = float(hmap[inside].max())
    height_pct = 100.0 * max_h / vt.h
    ep = lm["superior_endplate" if m.sign > 0 else "inferior_endplate"]
    normal_in = fr.vec_to_world([0.0, 0.0, -m.sign])
    uc, vc = 0.0, -vt.b + m.spec.offset_v_mm
    surf = float(vt.endplate_surface(np.array([uc], F), np.array([vc], F))[0])
    band_pt = fr.to_world([uc, vc, m.sign * (surf - 3.5)])
    return {
        "level": vt.name,
        "endplate": m.spec.endplate,
        "modic_type": m.spec.modic_type,
        "grade": _grade(height_pct, settings),
        "share_pct": _r(share, 1),
        "max_height_mm": _r(max_h, 2),
        "height_pct_of_body": _r(height_pct, 1),
        "endplate_center_lps": _r(fr.to_world(ep), 4),
        "normal_into_body": _r(normal_in, 6),
        "band_point_lps": _r(band_pt, 4),
        "reference_marrow_lps": _r(fr.to_world(normal_marrow_local(ph, vt)), 4),
        "footprint": {"center_uv_mm": [uc, _r(vc, 3)],
                      "semi_axes_mm": [_r(vt.a * m.spec.footprint[0], 3), _r(vt.b * m.spec.footprint[1], 3)],
                      "frame": "vertebra frame (u left, v posterior, w cranial; origin on the posterior wall "
                               "line at mid-height)"},
        "signal": {"T1": "low" if m.spec.modic_type == "1" else "high",
                   "T2": "high" if m.spec.modic_type == "1" else "iso to slightly high",
                   "STIR": "high" if m.spec.modic_type == "1" else "low"},
    }


def _vertebra_truth(ph: Phantom, vt: Vertebra) -> dict[str, Any]:
    fr = vt.frame
    lm = vt.landmarks_local()
    bvf = ph.bvf_local(vt)
    sp = vt.spec
    d = {f"{k}_lps": _r(fr.to_world(lm[k]), 4) for k in ("body_center", "superior_endplate", "inferior_endplate",
                                                          "posterior_wall", "anterior_wall", "pedicle_left",
                                                          "pedicle_right")}
    canal_v = 7.5 - 0.75 * 6.0  # anterior CSF, in front of the cord and the roots
    u_c, v_c, s_c = ph.curve.coords(fr.to_world(lm["body_center"])[None].astype(F))
    d.update({
        "body_height_mm": _r(lm["superior_endplate"][2] - lm["inferior_endplate"][2], 3),
        "body_height_rim_mm": sp.height,
        "body_depth_mm": _r(lm["posterior_wall"][1] - lm["anterior_wall"][1], 3),
        "body_depth_endplate_mm": sp.depth,
        "body_width_mm": _r(2 * lm["half_width_mid"][0], 3),
        "body_width_endplate_mm": sp.width,
        "body_shape": "oval (convex posterior wall)" if sp.kidney_mm == 0 else "kidney (concave posterior wall)",
        "pedicle_width_mm": _r(sp.pedicle_width, 3),
        "pedicle_height_mm": _r(sp.pedicle_height, 3),
        "pedicle_transverse_angle_deg": _r(math.degrees(vt.alpha), 3),
        "pedicle_axis_left": _r(fr.vec_to_world(vt.pedicle_axis_local(1)), 6),
        "pedicle_axis_right": _r(fr.vec_to_world(vt.pedicle_axis_local(-1)), 6),
        "canal_width_mm": sp.canal_width,
        "normal_marrow_lps": _r(fr.to_world(normal_marrow_local(ph, vt)), 4),
        "canal_anterior_lps": d["posterior_wall_lps"],
        "canal_csf_lps": _r(ph.curve.world(0.0, canal_v, float(s_c[0])), 4),
        "basivertebral_foramen_lps": _r(fr.to_world(bvf["foramen"]), 4),
        "basivertebral_terminus_lps": _r(fr.to_world(bvf["terminus"]), 4),
        "frame": {"origin_lps": _r(fr.origin, 4), "left": _r(fr.rot[:, 0], 6), "posterior": _r(fr.rot[:, 1], 6),
                  "cranial": _r(fr.rot[:, 2], 6)},
    })
    return d


def _landmarks_for_plan(vt_truth: dict[str, Any]):
    from planner.plan import LANDMARK_NAMES, Landmarks

    return Landmarks(**{n: tuple(vt_truth[n]) for n in LANDMARK_NAMES})


def _skin_point(ph: Phantom, traj) -> Optional[list[float]]:
    """Where the introducer line, continued backwards from the bone entry, leaves the body (LPS)."""
    entry = np.asarray(traj.entry_lps, dtype=float)
    ahead = np.asarray(traj.bend_lps if traj.bend_lps is not None else traj.target_lps, dtype=float)
    back = unit(entry - ahead)
    t = np.arange(0.0, 250.0, 0.1)
    lab = ph.labels_at(entry[None, :] + t[:, None] * back[None, :])
    air = np.nonzero(lab == int(Tissue.AIR))[0]
    if len(air) == 0:
        return None
    return _r(entry + t[max(int(air[0]) - 1, 0)] * back, 3)


#: The label of a demo trajectory whose target the demo placed inside the depth window but past the
#: suggestion's MRI depth margin (:func:`build_plan`).
DEMO_PAST_MARGIN_LABEL = "target placed by hand inside the 30-50 % depth window, past the suggestion's MRI margin"


def build_plan(ph: Phantom, truth: dict[str, Any], images: Optional[dict[str, Any]] = None):
    """The sample plan: case, levels with true landmarks, Modic findings, L4 and L5 to treat, eligibility
    answers and one trajectory per treated level (left for L4, right for L5). With the written ``images``
    the trajectories are the checked suggestions (:func:`planner.suggest.suggest_checked`: they pass the
    image checks on the demo's own images), else the landmark suggestions."""
    from planner.plan import AuditEntry, CaseInfo, Eligibility, EndplateFinding, Level, Plan, SeriesRef
    from planner.suggest import SEARCH_PARAMS, suggest_checked
    from planner.trajectory import suggest_trajectory

    settings = ph.settings
    series = [SeriesRef(series_instance_uid=s["series_instance_uid"], modality=s["modality"],
                        description=s["description"],
                        frame_of_reference_uid=truth["frame_of_reference_uid"] if s["modality"] == "MR" else "",
                        role=s["role"], number_of_images=s["number_of_files"], path_hint=s["folder"])
              for s in truth["series"]]
    case = CaseInfo(patient_name=PATIENT["PatientName"], patient_id=PATIENT["PatientID"],
                    patient_birth_date=PATIENT["PatientBirthDate"], patient_sex=PATIENT["PatientSex"],
                    study_instance_uid=truth["study_instance_uid"], study_date=STUDY["StudyDate"],
                    study_description=STUDY["StudyDescription"], accession_number=STUDY["AccessionNumber"],
                    institution=STUDY["InstitutionName"], series=series)
    findings = {(m["level"], m["endplate"]): m for m in truth["modic"]}
    levels = []
    for name in LEVELS:
        vt_truth = truth["vertebrae"][name]
        lv = Level(id=f"demo-{name}", name=name, landmarks=_landmarks_for_plan(vt_truth),
                   painful=name in ("L4", "L5"), treat=name in ("L4", "L5"))
        for ep in ("superior", "inferior"):
            m = findings.get((name, ep))
            if m is not None:
                setattr(lv, ep, EndplateFinding(modic_type=m["modic_type"], grade=m["grade"],
                                                share_pct=m["share_pct"], confirmed=True))
        if name in ("L4", "L5"):
            lv.notes = "Demo: Modic changes at the L4/L5 (type 1) and L5/S1 (type 2) endplates."
        levels.append(lv)
    plan = Plan(plan_id="bvn-demo-plan", created=DEMO_TIME, modified=DEMO_TIME, author="BVN Planner demo",
                case=case, levels=levels, settings=settings)
    plan.eligibility = Eligibility(answers={
        "pain_duration_months": 18.0, "conservative_care_months": 12.0, "axial_pain": True,
        "radicular_pain": False, "odi": 42.0, "vas": 7.0, "skeletally_mature": True, "able_to_consent": True,
        "age_years": 54.0, "bmi": 27.0, "bdi": 9.0, "waddell_signs": 0.0,
        "prior_lumbar_surgery": False, "spine_fracture": False, "spinal_cancer": False, "infection": False,
        "pregnancy": False, "metabolic_bone_disease": False, "spondylolisthesis": False,
        "disc_protrusion": False, "electronic_implant": False, "symptomatic_stenosis": False,
        "bleeding_diathesis": False, "other_pain_cause": False, "spondylolysis": False, "facet_pain": False,
        "compensation_litigation": False, "narcotics_addiction": False, "bedbound": False,
        "mri_contraindication": False, "device_allergy": False, "cardiopulmonary": False, "scoliosis": False,
        "vertebral_injection": False,
    }, notes="Demo answers for a synthetic patient.")
    plan.fluoro_landmarks.extend(_fluoro_marks(plan, truth, ("L4", "L5")))
    method = "planner.suggest.suggest_checked" if images else "planner.trajectory.suggest_trajectory"
    for name, side in (("L4", "left"), ("L5", "right")):
        if images:
            sg = suggest_checked(plan, name, side, images, alternatives=False)
            if sg.trajectory is None:
                # what the physician does when the suggestion's MRI margin leaves no target: the demo's L4 is
                # 32.6 mm deep, where the canal margin needs the target at 46 % of it and the suggestion keeps
                # it 1.5 mm inside the 30-50 % window (SearchParams.mr_depth_margin_mm): placed by hand inside
                # the window, checked alike, and labelled so
                sg = suggest_checked(plan, name, side, images, alternatives=False,
                                     search=replace(SEARCH_PARAMS, mr_depth_margin_mm=0.0))
                if sg.trajectory is None:
                    raise RuntimeError(f"the demo's {name} {side} trajectory: {sg.message}")
                sg.trajectory.label = DEMO_PAST_MARGIN_LABEL
            traj = sg.trajectory
        else:
            traj = suggest_trajectory(plan, plan.level_by_name(name), side)
        traj.id = f"demo-{name}-{side}"
        traj.label = traj.label or f"{name} {side} transpedicular"
        plan.trajectories.append(traj)
    plan.audit.append(AuditEntry(at=DEMO_TIME, user="demo", action="Demo plan created",
                                 detail="synthetic demo case written by planner.demo"))
    return plan, method


def _fluoro_marks(plan, truth: dict[str, Any], level_names: Sequence[str]) -> list:
    """The marks a physician places on the C-arm images to draw the plan there (planner.fluoro): on the AP
    image the pedicle centres, on the lateral image the wall midpoints, of each treated level; placed
    where the ground-truth projection matrix puts the true landmarks."""
    from planner.fluoro import AP_REQUIRED, LAT_REQUIRED, MARK_LANDMARK
    from planner.plan import FluoroLandmark

    marks = []
    for f in truth["fluoroscopy"]:
        matrix = np.asarray(f["projection_matrix"], dtype=float)
        kinds = AP_REQUIRED if f["view_position"] == "AP" else LAT_REQUIRED
        for name in level_names:
            level = plan.level_by_name(name)
            for kind in kinds:
                x = matrix @ np.r_[np.asarray(getattr(level.landmarks, MARK_LANDMARK[kind]), dtype=float), 1.0]
                marks.append(FluoroLandmark(id=f"demo-{name}-{f['view_position']}-{kind}".replace("_", "-"),
                                            sop_instance_uid=f["sop_instance_uid"], level_id=level.id, kind=kind,
                                            point_px=(round(float(x[0] / x[2]), 2), round(float(x[1] / x[2]), 2))))
    return marks


def write_demo_study(outdir: os.PathLike | str, settings: Optional[PlanningSettings] = None) -> DemoManifest:
    """Write the demo study into ``outdir`` (created if needed) and return what was written.

    Layout: ``DICOM/01_SAG_T1 .. 06_FLUORO_LAT/IM*.dcm``, ``ground_truth.json``, ``sample.bvnplan``."""
    from planner.storage import atomic_write_text, save_plan

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ph = Phantom(settings)
    study_uid = uid("study")
    for_uid = uid("frame-of-reference")
    dicom = out / DICOM_DIR
    files: list[Path] = []
    series_truth: list[dict[str, Any]] = []

    # --- MR: one label evaluation for the three sagittal series
    sag_m, sag_shape, sag_dk = sagittal_grid(ph)
    ax_m, ax_shape, ax_dk = axial_grid(ph)
    mr_specs = [
        MRSeriesSpec("T1", "SAG T1", 1, sag_m, sag_shape, sag_dk, "T1", 550.0, 10.0, None, 3, "SE", "SK\\SP",
                     "", 90.0, seed=101),
        MRSeriesSpec("T2", "SAG T2", 2, sag_m, sag_shape, sag_dk, "T2", 3500.0, 100.0, None, 17, "SE", "SK\\SP",
                     "", 150.0, seed=102),
        MRSeriesSpec("STIR", "SAG STIR", 3, sag_m, sag_shape, sag_dk, "STIR", 4200.0, 40.0, 150.0, 11,
                     "SE\\IR", "SK\\SP\\MP", "IR", 150.0, seed=103),
        MRSeriesSpec("AX_T2", "AX T2 L4-5", 4, ax_m, ax_shape, ax_dk, "T2", 4000.0, 105.0, None, 17, "SE",
                     "SK\\SP", "", 150.0, seed=104),
    ]
    grids = {"sag": GridContext.build(ph, sag_m, sag_shape), "ax": GridContext.build(ph, ax_m, ax_shape)}
    for spec in mr_specs:
        spec.uid = uid("series", spec.role)
        img = synthesize_mr(grids["ax" if spec.role == "AX_T2" else "sag"], spec.sequence, spec.seed)
        folder = dicom / SERIES_DIRS[spec.role]
        names = write_mr_series(folder, spec, img, study_uid, for_uid)
        files += [folder / n for n in names]
        sp = np.linalg.norm(spec.ijk_to_lps[:3, :3], axis=0)
        direction = spec.ijk_to_lps[:3, :3] / sp
        series_truth.append({
            "role": spec.role, "description": spec.description, "modality": "MR",
            "series_instance_uid": spec.uid, "series_number": spec.series_number,
            "folder": f"{DICOM_DIR}/{SERIES_DIRS[spec.role]}", "number_of_files": len(names),
            "sop_instance_uids": [uid("sop", spec.role, k) for k in range(len(names))],
            "size": [spec.shape[2], spec.shape[1], spec.shape[0]],
            "spacing": _r(sp, 6),
            "origin": _r(spec.ijk_to_lps[:3, 3], 4),
            "direction": _r(direction.reshape(-1), 8),
            "ijk_to_lps": _r(spec.ijk_to_lps, 6),
            "slice_thickness_mm": spec.thickness,
            "repetition_time_ms": spec.tr, "echo_time_ms": spec.te, "inversion_time_ms": spec.ti,
        })

    # --- fluoroscopy
    volumes = attenuation_volumes(ph)
    fluoro_truth = []
    for spec in projection_specs(ph):
        spec.uid = uid("series", spec.role)
        img = render_fluoro(spec, volumes)
        folder = dicom / SERIES_DIRS[spec.role]
        name = write_dx(folder, spec, img, study_uid)
        files.append(folder / name)
        series_truth.append({
            "role": spec.role, "description": spec.description, "modality": "DX",
            "series_instance_uid": spec.uid, "series_number": spec.series_number,
            "folder": f"{DICOM_DIR}/{SERIES_DIRS[spec.role]}", "number_of_files": 1,
            "sop_instance_uids": [uid("sop", spec.role, 0)],
            "size": [spec.cols, spec.rows, 1],
            "spacing": [spec.pixel_spacing, spec.pixel_spacing, 1.0],
            "origin": [0.0, 0.0, 0.0],
            "direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        })
        fluoro_truth.append({
            "role": spec.role, "series_instance_uid": spec.uid, "sop_instance_uid": uid("sop", spec.role, 0),
            "view_position": spec.view_position, "patient_orientation": list(spec.patient_orientation),
            "projection_matrix": _r(spec.matrix(), 9),
            "pixel_convention": "P @ [x, y, z, 1] = w * [column, row, 1]; (0, 0) is the centre of the first "
                                "pixel; rows and columns as stored",
            "geometry": {
                "source_lps": _r(spec.source_lps, 4),
                "detector_origin_lps": _r(spec.detector_origin_lps, 4),
                "detector_column_axis": _r(spec.col_axis, 6),
                "detector_row_axis": _r(spec.row_axis, 6),
                "detector_pixel_spacing_mm": spec.pixel_spacing,
                "rows": spec.rows, "columns": spec.cols,
                "distance_source_to_detector_mm": spec.sid,
                "distance_source_to_isocenter_mm": spec.sod,
                "isocenter_lps": _r(spec.iso_lps, 4),
                "magnification_at_isocenter": _r(spec.sid / spec.sod, 6),
            },
        })

    vert_truth = {vt.name: _vertebra_truth(ph, vt) for vt in ph.vertebrae if vt.name in LEVELS}
    discs = []
    for d in ph.discs:
        if d.upper.name not in LEVELS:
            continue
        lu, ll = vert_truth[d.upper.name], vert_truth[d.lower.name]
        a, b = np.array(lu["inferior_endplate_lps"]), np.array(ll["superior_endplate_lps"])
        discs.append({"name": f"{d.upper.name}/{d.lower.name}", "center_lps": _r((a + b) / 2, 4),
                      "height_mm": _r(float(np.linalg.norm(a - b)), 3),
                      "nucleus": {Tissue.NUCLEUS: "normal", Tissue.NUCLEUS_MILD: "mildly degenerated",
                                  Tissue.NUCLEUS_DARK: "degenerated (dark)"}[d.nucleus],
                      "posterior_bulge_mm": d.bulge})
    truth: dict[str, Any] = {
        "generator": "planner.demo", "generator_version": GENERATOR_VERSION, "app_version": __version__,
        "coordinate_frame": "LPS", "units": "mm",
        "note": "Synthetic phantom; all patient data are made up. Landmarks follow planner.plan.Landmarks "
                "(walls: midline midpoints at mid-height; endplates: centres of the endplate surfaces; pedicles: "
                "centres at the isthmus). The fluoroscopy projection matrices map points of the MR frame of "
                "reference (same LPS patient space) to pixels.",
        "patient": {"name": PATIENT["PatientName"], "id": PATIENT["PatientID"],
                    "birth_date": PATIENT["PatientBirthDate"], "sex": PATIENT["PatientSex"]},
        "study_instance_uid": study_uid,
        "frame_of_reference_uid": for_uid,
        "levels": list(LEVELS),
        "vertebrae": vert_truth,
        "discs": discs,
        "modic": [_modic_truth(ph, m, ph.settings) for m in ph.modic],
        "series": series_truth,
        "fluoroscopy": fluoro_truth,
        "tissues": {t.name: int(t) for t in Tissue},
    }
    from planner.imaging import load_path

    plan, method = build_plan(ph, truth, {k: v for k, v in load_path(dicom).images.items()})
    truth["plan"] = {"path": SAMPLE_PLAN, "trajectory_method": method,
                     "treated_levels": ["L4", "L5"],
                     "trajectories": [{"level": plan.level(t.level_id).name, "side": t.side,
                                       "entry_lps": list(t.entry_lps),
                                       "bend_lps": None if t.bend_lps is None else list(t.bend_lps),
                                       "target_lps": list(t.target_lps),
                                       "skin_lps": _skin_point(ph, t)} for t in plan.trajectories]}
    gt_path = out / GROUND_TRUTH
    atomic_write_text(gt_path, json.dumps(truth, indent=1, sort_keys=True, allow_nan=False) + "\n")
    plan_path = save_plan(plan, out / SAMPLE_PLAN)
    files += [gt_path, plan_path]
    return DemoManifest(folder=out, dicom_folder=dicom,
                        series_dirs={r: dicom / SERIES_DIRS[r] for r in ROLES},
                        ground_truth_path=gt_path, plan_path=plan_path, ground_truth=truth, files=files)
