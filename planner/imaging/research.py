"""Research volume formats: NIfTI-1/-2 (.nii, .nii.gz), NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd).

Each reader parses the header itself (so SimpleITK and nibabel stay independent references in the
tests), converts the orientation to LPS and reads the voxels straight into the output array (gzip
streams are decompressed into it, no intermediate copy). Features these readers do not handle
(bzip2 NRRD, MetaImage file lists, ...) fall back to SimpleITK when the file is on disk.

Orientation rules:

* NIfTI stores RAS+ world coordinates: ``ijk_to_lps = diag(-1, -1, 1, 1) @ affine``; the affine is the
  sform when its code is > 0, else the qform when its code is > 0 (as nibabel), else the voxel sizes
  alone (with a warning). Spatial units in metres or micrometres are converted to mm.
* NRRD: ``space directions`` (one column per axis) and ``space origin`` in the named ``space``;
  right-anterior-superior and left-anterior-superior are converted to LPS by flipping axes.
* MetaImage coordinates are LPS (ITK); ``TransformMatrix`` lists the direction of each axis in turn.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Optional

import numpy as np

from planner.imaging.dicom_scan import SkipFile
from planner.imaging.limits import ReadContext
from planner.imaging.sources import FileRef
from planner.imaging.volume import ImageInfo, Volume

#: Voxels are read (and decompressed) in chunks of this many bytes, with a look at Cancel and the time
#: limit between two chunks.
CHUNK_BYTES = 16 * 1024 * 1024
#: Largest text (ASCII-encoded) voxel data read (parsing text takes ~20 times its size in memory).
MAX_TEXT_VOXEL_BYTES = 32 * 1024 * 1024

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class NeedsSimpleITK(Exception):
    """A feature of the file this reader does not handle; SimpleITK may."""


@dataclass
class ResearchHeader:
    fmt: str  # "NIfTI", "NRRD", "MetaImage"
    shape: tuple[int, int, int]  # (nk, nj, ni)
    dtype: np.dtype  # stored dtype (byte order included)
    out_dtype: np.dtype
    ijk_to_lps: np.ndarray
    data_ref: FileRef
    data_offset: int  # byte offset of the voxels in the (decompressed) data stream; -1: from the end
    encoding: str  # "raw", "gzip", "zlib", "bzip2", "ascii"
    slope: float = 1.0
    intercept: float = 0.0
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def content_key(prefix: str, ref: FileRef, head: bytes) -> str:
    """A stable key from the header bytes and size (the same file gives the same key anywhere)."""
    try:
        size = ref.size()
    except OSError:
        size = 0
    return f"{prefix}-{hashlib.sha1(head + str(size).encode()).hexdigest()[:12]}"


# ------------------------------------------------------------------ NIfTI
_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                 1280: "u8"}


def _open_stream(ref: FileRef, gz: bool) -> BinaryIO:
    raw: BinaryIO = ref.open()
    return gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[return-value]


def _quat_to_matrix(b: float, c: float, d: float) -> np.ndarray:
    w2 = 1.0 - (b * b + c * c + d * d)
    if w2 < 0:
        a = 0.0
        n = np.sqrt(b * b + c * c + d * d)
        b, c, d = b / n, c / n, d / n
    else:
        a = np.sqrt(w2)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])


def read_nifti_header(ref: FileRef) -> ResearchHeader:
    gz = ref.suffix == ".nii.gz" or ref.read_bytes(2) == b"\x1f\x8b"
    try:
        with _open_stream(ref, gz) as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise SkipFile(f"damaged NIfTI file ({exc})") from None
    if len(head) < 348:
        raise SkipFile("NIfTI header truncated")
    for bo in "<>":
        n1 = struct.unpack_from(bo + "i", head, 0)[0]
        if n1 in (348, 540):
            break
    else:
        raise SkipFile("not a NIfTI file (header size is neither 348 nor 540)")
    warnings: list[str] = []
    if n1 == 348:
        magic = head[344:348]
        if magic not in (b"n+1\x00", b"ni1\x00"):
            raise SkipFile("NIfTI-1 magic missing (Analyze 7.5 files are not supported)")
        if magic == b"ni1\x00":
            raise NeedsSimpleITK("detached NIfTI (.hdr/.img) pair")
        dim = struct.unpack_from(bo + "8h", head, 40)
        datatype = struct.unpack_from(bo + "h", head, 70)[0]
        pixdim = struct.unpack_from(bo + "8f", head, 76)
        vox_offset = int(struct.unpack_from(bo + "f", head, 108)[0])
        slope, inter = struct.unpack_from(bo + "2f", head, 112)
        units = head[123]
        descrip = head[148:228]
        qcode, scode = struct.unpack_from(bo + "2h", head, 252)
        qb, qc, qd, qx, qy, qz = struct.unpack_from(bo + "6f", head, 256)
        srow = np.array(struct.unpack_from(bo + "12f", head, 280), dtype=float).reshape(3, 4)
    else:
        if len(head) < 540:
            raise SkipFile("NIfTI-2 header truncated")
        datatype = struct.unpack_from(bo + "h", head, 12)[0]
        dim = struct.unpack_from(bo + "8q", head, 16)
        pixdim = struct.unpack_from(bo + "8d", head, 104)
        vox_offset = int(struct.unpack_from(bo + "q", head, 168)[0])
        slope, inter = struct.unpack_from(bo + "2d", head, 176)
        descrip = head[240:320]
        qcode, scode = struct.unpack_from(bo + "2i", head, 344)
        qb, qc, qd, qx, qy, qz = struct.unpack_from(bo + "6d", head, 352)
        srow = np.array(struct.unpack_from(bo + "12d", head, 400), dtype=float).reshape(3, 4)
        units = struct.unpack_from(bo + "i", head, 500)[0] & 0xFF
    nd = int(dim[0])
    if nd < 1 or nd > 7:
        raise SkipFile(f"NIfTI header has an invalid number of dimensions ({nd})")
    sizes = [int(x) for x in dim[1:nd + 1]] + [1] * (3 - min(nd, 3))
    if any(s < 1 for s in sizes):
        raise SkipFile(f"NIfTI header has an invalid size {sizes}")
    extra_vols = int(np.prod(sizes[3:])) if len(sizes) > 3 else 1
    if extra_vols > 1:
        warnings.append(f"{nd}D NIfTI: only the first of {extra_vols} volumes was loaded")
    ni, nj, nk = sizes[:3]
    code = _NIFTI_DTYPES.get(int(datatype))
    if code is None:
        raise SkipFile(f"unsupported NIfTI data type {datatype} (colour or complex voxels)")
    dtype = np.dtype(bo + code)
    zooms = np.array([abs(x) if x else 1.0 for x in pixdim[1:4]], dtype=float)
    if scode > 0:
        aff = np.eye(4)
        aff[:3] = srow
        if qcode > 0:
            q = _qform(qb, qc, qd, qx, qy, qz, pixdim, zooms)
            if np.max(np.abs(q - aff)) > 1e-3:
                warnings.append("the NIfTI sform and qform disagree; the sform was used (as nibabel does)")
    elif qcode > 0:
        aff = _qform(qb, qc, qd, qx, qy, qz, pixdim, zooms)
    else:
        aff = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
        aff[:3, 3] = -aff[:3, :3] @ ((np.array([ni, nj, nk]) - 1) / 2.0)
        warnings.append("the NIfTI header has no orientation (qform and sform codes are 0): a default "
                        "orientation was assumed; do not rely on left/right")
    unit_scale = {1: 1000.0, 2: 1.0, 3: 0.001}.get(units & 0x07, 1.0)
    if unit_scale != 1.0:
        aff[:3, :] *= unit_scale
        warnings.append(f"spatial units converted to mm (x{unit_scale:g})")
    ijk_to_lps = _RAS_TO_LPS @ aff
    if abs(np.linalg.det(ijk_to_lps[:3, :3])) < 1e-12:
        raise SkipFile("the NIfTI orientation matrix is singular")
    if not np.isfinite(slope) or slope == 0:
        slope, inter = 1.0, 0.0
    if not np.isfinite(inter):
        inter = 0.0
    scaled = (slope, inter) != (1.0, 0.0)
    out_dtype = np.dtype(np.float32) if scaled or dtype.kind == "f" else dtype.newbyteorder("=")
    if dtype.kind == "f" and dtype.itemsize == 8 and not scaled:
        out_dtype = np.dtype(np.float64)
    h = ResearchHeader("NIfTI", (nk, nj, ni), dtype, out_dtype, ijk_to_lps, ref, vox_offset,
                       "gzip" if gz else "raw", float(slope), float(inter),
                       descrip.split(b"\x00")[0].decode("latin-1", "replace").strip(), warnings)
    if vox_offset < n1:
        raise SkipFile(f"NIfTI voxel offset {vox_offset} lies inside the header")
    h.extra.update({"qform_code": int(qcode), "sform_code": int(scode)})
    return h


def _qform(b: float, c: float, d: float, x: float, y: float, z: float, pixdim: Any, zooms: np.ndarray) -> np.ndarray:
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    r = _quat_to_matrix(b, c, d)
    z3 = zooms.copy()
    z3[2] *= qfac
    aff = np.eye(4)
    aff[:3, :3] = r * z3[None, :]
    aff[:3, 3] = (x, y, z)
    return aff


# ------------------------------------------------------------------ NRRD
_NRRD_TYPES = {
    "int8": "i1", "signed char": "i1", "int8_t": "i1",
    "uchar": "u1", "unsigned char": "u1", "uint8": "u1", "uint8_t": "u1",
    "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2", "int16": "i2", "int16_t": "i2",
    "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2", "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4",
    "longlong": "i8", "long long": "i8", "long long int": "i8", "signed long long": "i8",
    "signed long long int": "i8", "int64": "i8", "int64_t": "i8",
    "ulonglong": "u8", "unsigned long long": "u8", "unsigned long long int": "u8", "uint64": "u8", "uint64_t": "u8",
    "float": "f4", "double": "f8",
}
# flips that turn each NRRD space into LPS
_NRRD_SPACES = {
    "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1),
    "left-anterior-superior": (1, -1, 1), "las": (1, -1, 1),
    "left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
}


def _vec(text: str) -> Optional[np.ndarray]:
    text = text.strip()
    if text == "none":
        return None
    m = re.fullmatch(r"\(([^)]*)\)", text)
    if not m:
        raise SkipFile(f"NRRD vector not understood: {text[:40]!r}")
    try:
        return np.array([float(x) for x in m.group(1).split(",")], dtype=float)
    except ValueError:
        raise SkipFile(f"NRRD vector not understood: {text[:40]!r}") from None


def read_nrrd_header(ref: FileRef) -> ResearchHeader:
    data = ref.read_bytes(65536)
    if not data.startswith(b"NRRD000"):
        raise SkipFile("not a NRRD file (no NRRD000x magic)")
    end = data.find(b"\n\n")
    end_r = data.find(b"\r\n\r\n")
    if end < 0 and end_r < 0:
        if ref.suffix == ".nhdr":
            end = len(data)
        else:
            raise SkipFile("NRRD header not terminated (or longer than 64 kB)")
    if end_r >= 0 and (end < 0 or end_r < end):
        hlen = end_r + 4
    else:
        hlen = end + 2 if end < len(data) else len(data)
    fields: dict[str, str] = {}
    for line in data[:hlen].decode("latin-1").splitlines()[1:]:
        if not line or line.startswith("#") or ":=" in line:  # comments and key/value pairs
            continue
        if ": " in line:
            k, v = line.split(": ", 1)
            fields[k.strip().lower()] = v.strip()
    try:
        dim = int(fields["dimension"])
        sizes = [int(x) for x in fields["sizes"].split()]
        tname = fields["type"].lower()
    except (KeyError, ValueError):
        raise SkipFile("NRRD header lacks dimension, sizes or type") from None
    if tname not in _NRRD_TYPES:
        raise SkipFile(f"unsupported NRRD type {tname!r}")
    if dim != len(sizes) or dim < 2 or any(s < 1 for s in sizes):
        raise SkipFile("NRRD sizes do not match the dimension")
    code = _NRRD_TYPES[tname]
    endian = fields.get("endian", "little").lower()
    bo = ">" if endian == "big" else "<"
    dtype = np.dtype(bo + code) if np.dtype(code).itemsize > 1 else np.dtype(code)
    encoding = fields.get("encoding", "raw").lower()
    enc = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2", "ascii": "ascii",
           "text": "ascii", "txt": "ascii"}.get(encoding)
    if enc is None:
        raise NeedsSimpleITK(f"NRRD encoding {encoding!r}")
    warnings: list[str] = []
    kinds = fields.get("kinds", "").split()
    dirs_text = fields.get("space directions")
    spatial_axes = list(range(dim))
    directions: list[Optional[np.ndarray]] = []
    if dirs_text:
        directions = [_vec(t) for t in re.findall(r"\([^)]*\)|none", dirs_text)]
        if len(directions) != dim:
            raise SkipFile("NRRD space directions do not match the dimension")
        spatial_axes = [i for i, d in enumerate(directions) if d is not None]
    if len(spatial_axes) != 3 and not (len(spatial_axes) == 2 and dim == 2):
        if dim == 4 and len(spatial_axes) == 3:
            pass
        else:
            raise NeedsSimpleITK(f"NRRD with {dim} axes ({len(spatial_axes)} spatial)")
    non_spatial = [i for i in range(dim) if i not in spatial_axes]
    if non_spatial and any(n != 0 and n != dim - 1 for n in non_spatial):
        raise NeedsSimpleITK("NRRD with a non-spatial axis in the middle")
    space = fields.get("space", "").lower()
    flips = _NRRD_SPACES.get(space)
    m = np.eye(4)
    if dirs_text:
        vecs = [directions[i] for i in spatial_axes]
        if flips is None:
            flips = (1, 1, 1)
            warnings.append(f"NRRD space {space or '(none)'!r} taken as LPS")
        f = np.array(flips, dtype=float)
        for c, v in enumerate(vecs):
            v3 = np.zeros(3)
            v3[:len(v)] = v[:3]  # type: ignore[index]
            m[:3, c] = v3 * f
        origin = fields.get("space origin")
        if origin:
            o = _vec(origin)
            if o is None or len(o) < 3:
                raise SkipFile("NRRD space origin not understood")
            m[:3, 3] = o[:3] * f
    else:
        sp = fields.get("spacings")
        vals = [float(x) for x in sp.split()] if sp else [1.0] * dim
        for c, ax in enumerate(spatial_axes[:3]):
            v = vals[ax] if ax < len(vals) and np.isfinite(vals[ax]) else 1.0
            m[c, c] = v
        warnings.append("the NRRD header has no space directions: axes taken as L, P, S with the given spacings")
    if len(spatial_axes) == 2:
        m[2, 2] = 1.0
    spatial_sizes = [sizes[i] for i in spatial_axes] + [1] * (3 - len(spatial_axes))
    if non_spatial:
        n_extra = int(np.prod([sizes[i] for i in non_spatial]))
        if n_extra > 1:
            if non_spatial == [0]:
                raise NeedsSimpleITK("NRRD with vector voxels")
            warnings.append(f"only the first of {n_extra} volumes was loaded ({' '.join(kinds)})")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise SkipFile("the NRRD space directions are singular")
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file:
        if data_file.upper().startswith("LIST") or "%" in data_file:
            raise NeedsSimpleITK("NRRD data file list")
        data_ref = ref.sibling(data_file)
        offset = 0
    else:
        data_ref, offset = ref, hlen
    skip = int(fields.get("byte skip", "0") or 0)
    if skip == -1:
        if enc != "raw":
            raise SkipFile("NRRD byte skip -1 is only allowed for raw data")
        offset = -1
    else:
        if data_file:
            offset = skip
        elif skip:
            if enc == "raw":
                offset += skip
            else:
                raise NeedsSimpleITK("byte skip in compressed attached data")
    if int(fields.get("line skip", "0") or 0):
        raise NeedsSimpleITK("NRRD line skip")
    out_dtype = dtype.newbyteorder("=")
    h = ResearchHeader("NRRD", (spatial_sizes[2], spatial_sizes[1], spatial_sizes[0]), dtype, out_dtype, m, data_ref,
                       offset, enc, 1.0, 0.0, fields.get("content", ""), warnings)
    h.extra["space"] = space
    return h


# ------------------------------------------------------------------ MetaImage
_MET_TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
              "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
              "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


def read_meta_header(ref: FileRef) -> ResearchHeader:
    data = ref.read_bytes(65536)
    fields: dict[str, str] = {}
    pos = 0
    hlen = None
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            nl = len(data)
        line = data[pos:nl].decode("latin-1").strip()
        pos = nl + 1
        if not line:
            continue
        if "=" not in line:
            raise SkipFile("not a MetaImage header (a line without '=')")
        k, v = line.split("=", 1)
        k = k.strip()
        fields[k.lower()] = v.strip()
        if k.lower() == "elementdatafile":
            hlen = pos
            break
    if hlen is None:
        raise SkipFile("MetaImage header without ElementDataFile (or longer than 64 kB)")
    try:
        nd = int(fields.get("ndims", "3"))
        sizes = [int(x) for x in fields["dimsize"].split()]
        etype = fields["elementtype"].upper()
    except (KeyError, ValueError):
        raise SkipFile("MetaImage header lacks DimSize or ElementType") from None
    if etype not in _MET_TYPES:
        raise SkipFile(f"unsupported MetaImage element type {etype}")
    if int(fields.get("elementnumberofchannels", "1")) != 1:
        raise NeedsSimpleITK("MetaImage with several channels")
    if nd not in (2, 3, 4) or len(sizes) != nd or any(s < 1 for s in sizes):
        raise SkipFile("MetaImage DimSize does not match NDims")
    warnings: list[str] = []
    if nd == 4 and sizes[3] > 1:
        warnings.append(f"4D MetaImage: only the first of {sizes[3]} volumes was loaded")
    msb = fields.get("binarydatabyteordermsb", fields.get("elementbyteordermsb", "False")).lower() == "true"
    code = _MET_TYPES[etype]
    dtype = np.dtype((">" if msb else "<") + code) if np.dtype(code).itemsize > 1 else np.dtype(code)

    def floats(key_names: tuple[str, ...], n: int, default: list[float]) -> list[float]:
        for k in key_names:
            if k in fields:
                try:
                    vals = [float(x) for x in fields[k].split()]
                except ValueError:
                    raise SkipFile(f"MetaImage {k} not understood") from None
                if len(vals) >= n:
                    return vals[:n]
        return default

    d3 = min(nd, 3)
    spacing = floats(("elementspacing", "elementsize"), d3, [1.0] * d3)
    origin = floats(("offset", "position", "origin"), d3, [0.0] * d3)
    tm = floats(("transformmatrix", "rotation", "orientation"), d3 * d3, list(np.eye(d3).ravel()))
    m = np.eye(4)
    for axis in range(d3):
        m[:d3, axis] = np.array(tm[axis * d3:(axis + 1) * d3]) * spacing[axis]
    m[:d3, 3] = origin
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise SkipFile("the MetaImage transform is singular")
    datafile = fields["elementdatafile"]
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if datafile.upper() == "LOCAL":
        data_ref, offset = ref, hlen
    elif datafile.upper().startswith("LIST") or "%" in datafile:
        raise NeedsSimpleITK("MetaImage file list")
    else:
        data_ref = ref.sibling(datafile)
        offset = int(fields.get("headersize", "0") or 0)
        if offset == -1 and compressed:
            raise SkipFile("MetaImage HeaderSize -1 with compressed data")
    sz3 = sizes[:3] + [1] * (3 - min(nd, 3))
    h = ResearchHeader("MetaImage", (sz3[2], sz3[1], sz3[0]), dtype, dtype.newbyteorder("="), m, data_ref, offset,
                       "zlib" if compressed else "raw", warnings=warnings)
    h.extra["AnatomicalOrientation"] = fields.get("anatomicalorientation", "")
    return h


# ------------------------------------------------------------------ voxels
def decoded_bytes(h: ResearchHeader) -> int:
    """Memory the voxels take while read: the stored array, plus the output when the type changes."""
    count = int(np.prod(h.shape, dtype=np.int64))
    extra = count * h.out_dtype.itemsize if h.out_dtype != h.dtype.newbyteorder("=") else 0
    return count * h.dtype.itemsize + extra


def read_voxels(h: ResearchHeader, ctx: Optional[ReadContext] = None) -> np.ndarray:
    """The voxels as (nk, nj, ni) in ``h.out_dtype`` (rescaled for NIfTI slope/intercept). Read in chunks;
    ``ctx.check()`` (Cancel, time limit) runs between two chunks."""
    ctx = ctx or ReadContext()
    nk, nj, ni = h.shape
    count = nk * nj * ni
    nbytes = count * h.dtype.itemsize
    ref = h.data_ref
    if not ref.exists():
        raise SkipFile(f"the data file {ref.name} named in the header is missing")
    raw = np.empty(h.shape, dtype=h.dtype)
    if h.encoding == "ascii":
        text = ref.read_bytes(max(h.data_offset, 0) + MAX_TEXT_VOXEL_BYTES + 1)[max(h.data_offset, 0):]
        if len(text) > MAX_TEXT_VOXEL_BYTES:
            raise SkipFile(f"{h.fmt} text voxel data larger than {MAX_TEXT_VOXEL_BYTES // 2 ** 20} MB")
        ctx.check()
        vals = np.array(text.split()[:count], dtype=np.float64)
        if vals.size < count:
            raise SkipFile(f"{h.fmt} data truncated ({vals.size} of {count} values)")
        raw[...] = vals.reshape(h.shape).astype(h.dtype)
    elif h.encoding == "raw":
        with ref.open() as fh:
            if h.data_offset == -1:  # data at the end of the file
                fh.seek(0, io.SEEK_END)
                fh.seek(max(fh.tell() - nbytes, 0))
            else:
                fh.seek(h.data_offset)
            n = _readinto_full(fh, memoryview(raw).cast("B"), ctx)
        if n != nbytes:
            raise SkipFile(f"{h.fmt} voxel data truncated ({n} of {nbytes} bytes)")
    else:
        with ref.open() as fh:
            try:
                if h.fmt == "NIfTI":
                    stream: Any = gzip.GzipFile(fileobj=fh, mode="rb")
                    stream.seek(h.data_offset)
                else:
                    fh.seek(max(h.data_offset, 0))
                    if h.encoding == "gzip":
                        stream = gzip.GzipFile(fileobj=fh, mode="rb")
                    elif h.encoding == "bzip2":
                        stream = bz2.BZ2File(fh, mode="rb")
                    else:
                        stream = _ZlibReader(fh)
                n = _readinto_full(stream, memoryview(raw).cast("B"), ctx)
            except (OSError, EOFError, zlib.error, ValueError) as exc:
                raise SkipFile(f"{h.fmt} compressed voxel data damaged ({exc})") from None
        if n != nbytes:
            raise SkipFile(f"{h.fmt} voxel data truncated ({n} of {nbytes} bytes)")
    if h.dtype.byteorder == ">" or (h.dtype.byteorder == "<" and np.little_endian is False):
        raw = raw.byteswap().view(raw.dtype.newbyteorder("="))
    if h.slope != 1.0 or h.intercept != 0.0:
        out = np.empty(h.shape, dtype=np.float32)
        for k in range(nk):  # slice by slice: float64 arithmetic without a full float64 copy
            if k % 64 == 0:
                ctx.check()
            t = raw[k].astype(np.float64)
            t *= h.slope
            t += h.intercept
            out[k] = t
        return out
    if raw.dtype != h.out_dtype:
        return raw.astype(h.out_dtype)
    return raw


def _readinto_full(stream: Any, mv: memoryview, ctx: ReadContext) -> int:
    n = 0
    while n < len(mv):
        ctx.check()
        got = stream.readinto(mv[n:n + CHUNK_BYTES])
        if not got:
            break
        n += got
    return n


class _ZlibReader:
    """Minimal readinto() over a zlib stream (MetaImage CompressedData)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.d, self.buf = fh, zlib.decompressobj(), b""

    def readinto(self, mv: memoryview) -> int:
        while len(self.buf) < len(mv):
            chunk = self.fh.read(1 << 20)
            if not chunk:
                self.buf += self.d.flush()
                break
            self.buf += self.d.decompress(chunk)
        n = min(len(mv), len(self.buf))
        mv[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def read_with_simpleitk(ref: FileRef, fmt: str, why: str, ctx: Optional[ReadContext] = None) -> Volume:
    """Read a research file SimpleITK handles (and our readers do not) in a worker process, within the
    time limit and the memory budget."""
    if ref.member is not None:
        raise SkipFile(f"{fmt} feature not supported inside a zip archive ({why})")
    from planner.imaging.volume import matrix_problem
    from planner.imaging.workers import Task, run_tasks

    ctx = ctx or ReadContext()
    budget = ctx.limits.memory_budget()
    outcomes: list[Any] = []
    run_tasks([Task(ref.name, "simpleitk_volume", (ref.path,), budget + 128)],
              time_limit_s=ctx.limits.time_limit_s, cancel=ctx.cancel, on_outcome=outcomes.append,
              memory_budget=budget)
    o = outcomes[0]
    if o.status == "cancelled":
        ctx.check()
    if o.status != "ok":
        detail = {"timeout": f"it took longer than {ctx.limits.time_limit_s:.0f} s", "crash": "the reader crashed"}.get(
            o.status, o.error[:160])
        raise SkipFile(f"{fmt} file could not be read ({why}; SimpleITK: {detail})")
    arr, m = o.arrays
    problem = matrix_problem(m, spacing_range=True)
    if problem:
        raise SkipFile(f"{fmt} file has an orientation matrix that is {problem}")
    info = ImageInfo(series_description=ref.name.rsplit("/", 1)[-1])
    info.extra["source_format"] = fmt
    info.warnings.append(f"read with SimpleITK ({why})")
    return Volume(arr, m, info)


def header_for(ref: FileRef, fmt: str) -> ResearchHeader:
    if fmt == "NIfTI":
        return read_nifti_header(ref)
    if fmt == "NRRD":
        return read_nrrd_header(ref)
    return read_meta_header(ref)


def volume_from_header(h: ResearchHeader, info: ImageInfo, ctx: Optional[ReadContext] = None) -> Volume:
    arr = read_voxels(h, ctx)
    return Volume(arr, h.ijk_to_lps, info)
