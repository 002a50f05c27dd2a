"""Reading the DICOM header fields the importer needs, without decoding pixels.

Two readers produce the same plain ``dict`` (attribute keyword -> Python value):

* :func:`parse_fast`: a small, bounded parser for the common case (a Part 10 file with the "DICM"
  prefix, Explicit or Implicit VR Little Endian or an encapsulated (compressed) transfer syntax).
  It walks the top-level elements, converts only the attributes listed in :data:`TAGS`, skips
  everything else by its length (sequences of undefined length are walked item by item), and
  records where the Pixel Data value starts, so native pixels can later be read straight into the
  output array. Every step moves forward by at least 8 bytes and nesting is limited, so its running
  time is bounded by the file size: a damaged file ends in :class:`HeaderError`, never in a hang.
* :func:`from_dataset`: the same fields from a pydicom ``Dataset``; used for everything the fast
  parser hands back (big endian, deflate, files without the "DICM" prefix, enhanced multi-frame
  objects whose per-frame functional groups are needed).

``tests/test_import_header.py`` checks that both readers agree on every test file.
"""

from __future__ import annotations

import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydicom import charset as _charset

#: Transfer syntaxes the fast parser reads (all little endian, not deflated).
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
NATIVE_SYNTAXES = {IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_LE}
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# kinds of conversion
_STR, _TEXT, _PN, _DS, _IS, _INT, _FLOAT, _CSM, _AT, _PRESENT = range(10)

#: (group, element) -> (keyword, kind). Only these top-level attributes are converted.
TAGS: dict[int, tuple[str, int]] = {
    0x00020002: ("MediaStorageSOPClassUID", _STR),
    0x00020003: ("MediaStorageSOPInstanceUID", _STR),
    0x00020010: ("TransferSyntaxUID", _STR),
    0x00080005: ("SpecificCharacterSet", _CSM),
    0x00080008: ("ImageType", _CSM),
    0x00080016: ("SOPClassUID", _STR),
    0x00080018: ("SOPInstanceUID", _STR),
    0x00080020: ("StudyDate", _STR),
    0x00080021: ("SeriesDate", _STR),
    0x00080022: ("AcquisitionDate", _STR),
    0x00080030: ("StudyTime", _STR),
    0x00080031: ("SeriesTime", _STR),
    0x00080032: ("AcquisitionTime", _STR),
    0x00080050: ("AccessionNumber", _TEXT),
    0x00080060: ("Modality", _STR),
    0x00080070: ("Manufacturer", _TEXT),
    0x00080080: ("InstitutionName", _TEXT),
    0x00081030: ("StudyDescription", _TEXT),
    0x0008103E: ("SeriesDescription", _TEXT),
    0x00081090: ("ManufacturerModelName", _TEXT),
    0x00100010: ("PatientName", _PN),
    0x00100020: ("PatientID", _TEXT),
    0x00100030: ("PatientBirthDate", _STR),
    0x00100040: ("PatientSex", _STR),
    0x00180010: ("ContrastBolusAgent", _TEXT),
    0x00180015: ("BodyPartExamined", _STR),
    0x00180020: ("ScanningSequence", _CSM),
    0x00180021: ("SequenceVariant", _CSM),
    0x00180024: ("SequenceName", _TEXT),
    0x00180050: ("SliceThickness", _DS),
    0x00180080: ("RepetitionTime", _DS),
    0x00180081: ("EchoTime", _DS),
    0x00180082: ("InversionTime", _DS),
    0x00180086: ("EchoNumbers", _IS),
    0x00180087: ("MagneticFieldStrength", _DS),
    0x00180088: ("SpacingBetweenSlices", _DS),
    0x00181030: ("ProtocolName", _TEXT),
    0x00181060: ("TriggerTime", _DS),
    0x00181063: ("FrameTime", _DS),
    0x00181110: ("DistanceSourceToDetector", _DS),
    0x00181111: ("DistanceSourceToPatient", _DS),
    0x00181114: ("EstimatedRadiographicMagnificationFactor", _DS),
    0x00181120: ("GantryDetectorTilt", _DS),
    0x00181164: ("ImagerPixelSpacing", _DS),
    0x00181510: ("PositionerPrimaryAngle", _DS),
    0x00181511: ("PositionerSecondaryAngle", _DS),
    0x00182010: ("NominalScannedPixelSpacing", _DS),
    0x00185100: ("PatientPosition", _STR),
    0x00185101: ("ViewPosition", _STR),
    0x00189087: ("DiffusionBValue", _FLOAT),
    0x0020000D: ("StudyInstanceUID", _STR),
    0x0020000E: ("SeriesInstanceUID", _STR),
    0x00200010: ("StudyID", _TEXT),
    0x00200011: ("SeriesNumber", _IS),
    0x00200012: ("AcquisitionNumber", _IS),
    0x00200013: ("InstanceNumber", _IS),
    0x00200020: ("PatientOrientation", _CSM),
    0x00200032: ("ImagePositionPatient", _DS),
    0x00200037: ("ImageOrientationPatient", _DS),
    0x00200052: ("FrameOfReferenceUID", _STR),
    0x00200100: ("TemporalPositionIdentifier", _IS),
    0x00280002: ("SamplesPerPixel", _INT),
    0x00280004: ("PhotometricInterpretation", _STR),
    0x00280006: ("PlanarConfiguration", _INT),
    0x00280008: ("NumberOfFrames", _IS),
    0x00280009: ("FrameIncrementPointer", _AT),
    0x00280010: ("Rows", _INT),
    0x00280011: ("Columns", _INT),
    0x00280030: ("PixelSpacing", _DS),
    0x00280100: ("BitsAllocated", _INT),
    0x00280101: ("BitsStored", _INT),
    0x00280102: ("HighBit", _INT),
    0x00280103: ("PixelRepresentation", _INT),
    0x00281050: ("WindowCenter", _DS),
    0x00281051: ("WindowWidth", _DS),
    0x00281052: ("RescaleIntercept", _DS),
    0x00281053: ("RescaleSlope", _DS),
    0x00281054: ("RescaleType", _STR),
    0x00281055: ("WindowCenterWidthExplanation", _TEXT),
    0x00280A02: ("PixelSpacingCalibrationType", _STR),
    0x00280A04: ("PixelSpacingCalibrationDescription", _TEXT),
    0x00283000: ("ModalityLUTSequence", _PRESENT),
    0x00041220: ("DirectoryRecordSequence", _PRESENT),
    0x20500020: ("PresentationLUTShape", _STR),
    0x3004000C: ("GridFrameOffsetVector", _DS),
    0x3004000E: ("DoseGridScaling", _DS),
    0x52009229: ("SharedFunctionalGroupsSequence", _PRESENT),
    0x52009230: ("PerFrameFunctionalGroupsSequence", _PRESENT),
}
KEYWORDS = {kw: tag for tag, (kw, _k) in TAGS.items()}

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
_LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 32
#: Elements and items walked at most in one header (a real header has a few hundred to a few hundred
#: thousand with large functional-group sequences); bounds the time a hostile file of tiny elements takes.
MAX_ELEMENTS = 2_000_000
_BIN_FMT = {b"US": "H", b"SS": "h", b"UL": "I", b"SL": "i", b"FL": "f", b"FD": "d", b"UV": "Q", b"SV": "q"}
_DEFAULT_BIN = {_INT: "H", _FLOAT: "d"}


class HeaderError(Exception):
    """The file is not a readable DICOM header (the message says why)."""


class NeedsPydicom(Exception):
    """The fast parser does not handle this file; read it with pydicom instead (not an error)."""


@dataclass
class PixelLocation:
    """Where the Pixel Data value lies in the file (fast parser only)."""

    tag: int
    offset: int  # byte offset of the value
    length: Optional[int]  # None: undefined length (encapsulated frames)
    vr: str
    #: encapsulated data: the frames present and the sizes their codestreams declare
    encapsulated: Any = None
    #: encapsulated data whose item structure is damaged: why
    problem: str = ""


def _is_vr(b: bytes) -> bool:
    return len(b) == 2 and 65 <= b[0] <= 90 and 65 <= b[1] <= 90


def _strip(raw: bytes) -> str:
    return raw.decode("latin-1").strip(" \x00")


def _convert(raw: bytes, kind: int, vr: bytes, encodings: list[str]) -> Any:
    if kind == _PRESENT:
        return True
    if kind == _STR:
        return _strip(raw)
    if kind == _CSM:
        text = _strip(raw)
        return [p.strip(" \x00") for p in text.split("\\")] if text else []
    if kind == _TEXT or kind == _PN:
        if not raw:
            return ""
        if raw.isascii() and b"\x1b" not in raw and (not encodings or encodings[0] != "iso2022_jp"):
            return raw.decode("ascii").strip(" \x00")
        try:
            with warnings.catch_warnings():  # damaged or unknown character sets: replacement characters
                warnings.simplefilter("ignore")
                text = _charset.decode_bytes(raw, encodings or ["iso8859"],
                                             {0x5C, 0x0D, 0x0A, 0x09, 0x0C} if kind == _TEXT else {0x5E, 0x3D})
        except Exception:
            text = raw.decode("latin-1")
        return text.strip(" \x00")
    if kind == _DS or kind == _IS:
        text = _strip(raw)
        if not text:
            return None
        out = []
        for part in text.split("\\"):
            part = part.strip(" \x00")
            if not part:
                continue
            try:
                out.append(float(part) if kind == _DS else int(float(part)))
            except ValueError:
                return None
        return out
    if kind == _AT:
        n = len(raw) // 4
        if n == 0:
            return None
        vals = struct.unpack_from("<" + "HH" * n, raw, 0)
        return [(vals[2 * i] << 16) | vals[2 * i + 1] for i in range(n)]
    # binary numbers: the VR in the file wins (explicit VR), else the usual one
    fmt = _BIN_FMT.get(vr) or _DEFAULT_BIN[kind]
    size = struct.calcsize(fmt)
    n = len(raw) // size
    if n == 0:
        return None
    vals = struct.unpack_from("<" + fmt * n, raw, 0)
    return vals[0] if n == 1 else list(vals)


def _count(counter: list[int], n: int = 1) -> None:
    counter[0] += n
    if counter[0] > MAX_ELEMENTS:
        raise HeaderError(f"more than {MAX_ELEMENTS:,} elements before the pixel data (damaged or hostile file)")


def _skip_undefined(buf, pos: int, end: int, explicit: bool, depth: int, counter: list[int]) -> int:
    """Skip the items of a sequence (or UN/OB value) of undefined length; returns the position after its
    Sequence Delimitation Item."""
    if depth > _MAX_DEPTH:
        raise HeaderError("sequences nested too deeply (damaged header)")
    while True:
        _count(counter)
        if pos + 8 > end:
            raise HeaderError("a sequence runs past the end of the file")
        g, e, length = struct.unpack_from("<HHI", buf, pos)
        tag = (g << 16) | e
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise HeaderError(f"unexpected element ({g:04X},{e:04X}) inside a sequence")
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_item(buf, pos, end, explicit, depth + 1, counter)


def _skip_item(buf, pos: int, end: int, explicit: bool, depth: int, counter: list[int]) -> int:
    """Skip the elements of an item of undefined length; returns the position after its delimiter."""
    while True:
        _count(counter)
        if pos + 8 > end:
            raise HeaderError("a sequence item runs past the end of the file")
        g, e = struct.unpack_from("<HH", buf, pos)
        tag = (g << 16) | e
        if tag == _ITEM_END:
            return pos + 8
        pos, _vr, length, _hdr = _element_header(buf, pos, end, explicit)
        if length == _UNDEFINED:
            # items inside UN of undefined length are implicit VR little endian
            pos = _skip_undefined(buf, pos, end, explicit and _vr != b"UN", depth + 1, counter)
        else:
            pos += length


def _element_header(buf, pos: int, end: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """(value offset, VR, length, header size) of the element at ``pos``."""
    if explicit:
        if pos + 8 > end:
            raise HeaderError("the header ends in the middle of an element")
        vr = bytes(buf[pos + 4:pos + 6])
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise HeaderError("the header ends in the middle of an element")
            return pos + 12, vr, struct.unpack_from("<I", buf, pos + 8)[0], 12
        if not _is_vr(vr):
            raise HeaderError(f"invalid value representation {vr!r} at byte {pos}")
        return pos + 8, vr, struct.unpack_from("<H", buf, pos + 6)[0], 8
    if pos + 8 > end:
        raise HeaderError("the header ends in the middle of an element")
    return pos + 8, b"", struct.unpack_from("<I", buf, pos + 4)[0], 8


_S_TAG = struct.Struct("<HH")
_S_EXPLICIT = struct.Struct("<HH2sH")
_S_IMPLICIT = struct.Struct("<HHI")
_S_U32 = struct.Struct("<I")
#: every value representation of PS3.5 (an element with anything else means a damaged header)
_VRS = frozenset(x.encode() for x in (
    "AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV").split())


def _parse_elements(buf, pos: int, end: int, explicit: bool, out: dict[str, Any],
                    stop_group: Optional[int], encodings: list[str],
                    counter: list[int]) -> tuple[int, Optional[PixelLocation]]:
    """Walk the elements from ``pos``; convert those in :data:`TAGS`; stop at the pixel data (or at the
    end of ``stop_group``). The hot loop of the header scan, so element headers are decoded inline."""
    tags = TAGS
    long_vrs = _LONG_VRS
    n = 0
    while pos + 8 <= end:
        n += 1
        if n > 4096:
            _count(counter, n)
            n = 0
        if explicit:
            g, e, vr, length = _S_EXPLICIT.unpack_from(buf, pos)
            if stop_group is not None and g != stop_group:
                return pos, None
            if vr in long_vrs:
                if pos + 12 > end:
                    raise HeaderError("the header ends in the middle of an element")
                length = _S_U32.unpack_from(buf, pos + 8)[0]
                vpos = pos + 12
            elif vr in _VRS:
                vpos = pos + 8
            else:
                raise HeaderError(f"invalid value representation {vr!r} at byte {pos}")
        else:
            g, e, length = _S_IMPLICIT.unpack_from(buf, pos)
            if stop_group is not None and g != stop_group:
                return pos, None
            vr = b""
            vpos = pos + 8
        tag = (g << 16) | e
        if tag in _PIXEL_TAGS:
            return pos, PixelLocation(tag, vpos, None if length == _UNDEFINED else length,
                                      vr.decode("ascii", "replace"))
        if length == _UNDEFINED:
            spec = tags.get(tag)
            if spec is not None and spec[1] == _PRESENT:
                out[spec[0]] = True
            pos = _skip_undefined(buf, vpos, end, explicit and vr != b"UN", 0, counter)
            continue
        nxt = vpos + length
        if nxt > end:
            raise HeaderError(f"element ({g:04X},{e:04X}) is longer ({length} bytes) than the rest of the file "
                              "(truncated?)")
        spec = tags.get(tag)
        if spec is not None:
            kw, kind = spec
            try:
                out[kw] = _convert(buf[vpos:nxt], kind, vr, encodings)
            except Exception:
                out[kw] = None
            if kw == "SpecificCharacterSet":
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        encodings[:] = _charset.convert_encodings(out[kw] or None)
                except Exception:
                    encodings[:] = ["iso8859"]
        pos = nxt
    return pos, None


def parse_fast(buf) -> tuple[dict[str, Any], Optional[PixelLocation]]:
    """Parse a Part 10 file held in ``buf`` (bytes or mmap). Raises :class:`NeedsPydicom` when another
    reader must be used and :class:`HeaderError` for a damaged header. Functional group sequences are
    only noted as present (the caller reads them with pydicom)."""
    end = len(buf)
    if end < 132 or bytes(buf[128:132]) != b"DICM":
        raise NeedsPydicom("no DICM prefix")
    out: dict[str, Any] = {}
    encodings: list[str] = []
    counter = [0]
    pos, _ = _parse_elements(buf, 132, end, True, out, 0x0002, encodings, counter)
    ts = out.get("TransferSyntaxUID") or ""
    if not ts:
        raise NeedsPydicom("no transfer syntax")
    if ts in (EXPLICIT_VR_BE, DEFLATED_LE):
        raise NeedsPydicom(ts)
    explicit = ts != IMPLICIT_VR_LE
    # files whose meta information says one VR encoding but which use the other (pydicom copes too)
    if pos + 6 <= end:
        looks_explicit = _is_vr(bytes(buf[pos + 4:pos + 6]))
        if looks_explicit != explicit:
            explicit = looks_explicit
            out["_vr_mismatch"] = True
    encodings.append("iso8859")
    _pos, pixel = _parse_elements(buf, pos, end, explicit, out, None, encodings, counter)
    out["_explicit"] = explicit
    if pixel is not None and pixel.length is None:
        from planner.imaging.codestream import EncapsulationError, summarize_encapsulated

        try:
            pixel.encapsulated = summarize_encapsulated(buf, pixel.offset, end, ts)
        except EncapsulationError as exc:
            pixel.problem = str(exc)
    return out, pixel


def read_fast(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Optional[PixelLocation]]:
    """:func:`parse_fast` on a file, memory-mapped so skipped values are never read. Only regular files
    are opened (:class:`planner.safefiles.NotAFile`, an ``OSError``, otherwise)."""
    from planner.safefiles import open_regular

    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise HeaderError("the file is empty")
        if size < 132:
            raise NeedsPydicom("too short for a DICM prefix")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return parse_fast(mm)


# ------------------------------------------------------------------ pydicom datasets
def _value_from_element(elem, kind: int) -> Any:
    v = elem.value
    if kind == _PRESENT:
        return True
    if v is None or (isinstance(v, (str, bytes, list)) and len(v) == 0 and kind not in (_CSM,)):
        if kind in (_STR, _TEXT, _PN):
            return ""
        if kind == _CSM:
            return []
        return None
    if isinstance(v, bytes):  # an element pydicom could not convert (e.g. UN)
        vr = elem.VR.encode() if isinstance(elem.VR, str) else b""
        return _convert(v, kind, vr, ["iso8859"])
    multi = isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue"
    seq = list(v) if multi else [v]
    if kind == _STR:
        return str(seq[0]).strip(" \x00") if len(seq) == 1 else "\\".join(str(x) for x in seq)
    if kind in (_TEXT, _PN):
        return "\\".join(str(x) for x in seq).strip(" \x00")
    if kind == _CSM:
        vals = [str(x).strip(" \x00") for x in seq]
        return [] if all(v == "" for v in vals) else vals
    if kind == _DS:
        return [float(x) for x in seq]
    if kind == _IS:
        return [int(float(x)) for x in seq]
    if kind == _AT:
        return [int(x) for x in seq]
    if kind == _INT:
        vals = [int(x) for x in seq]
        return vals[0] if len(vals) == 1 else vals
    vals = [float(x) for x in seq]
    return vals[0] if len(vals) == 1 else vals


def from_dataset(ds, *, include_meta: bool = True) -> dict[str, Any]:
    """The :data:`TAGS` attributes of a pydicom dataset, converted like :func:`parse_fast` does."""
    out: dict[str, Any] = {}
    sources = [ds]
    meta = getattr(ds, "file_meta", None)
    if include_meta and meta is not None:
        sources.insert(0, meta)
    for src in sources:
        for tag, (kw, kind) in TAGS.items():
            if kw in out:
                continue
            try:
                elem = src.get(tag)
            except Exception:
                continue
            if elem is None:
                continue
            try:
                out[kw] = _value_from_element(elem, kind)
            except Exception:
                out[kw] = None
    return out


def looks_like_raw_dataset(head: bytes) -> bool:
    """True for a DICOM data set without the 128-byte preamble and "DICM" (old ACR-NEMA style files):
    the first element is a group 0002 or 0008 element with a plausible VR or length."""
    if len(head) < 8:
        return False
    g, e = struct.unpack_from("<HH", head, 0)
    if g not in (0x0002, 0x0008):
        return False
    if _is_vr(head[4:6]):
        return True
    length = struct.unpack_from("<I", head, 4)[0]
    return length < 1024


def first(value: Any, default: Any = None) -> Any:
    """The first value of a multi-valued attribute (or the value itself)."""
    if isinstance(value, list):
        return value[0] if value else default
    return default if value is None else value


Converter = Callable[[Any], Any]
