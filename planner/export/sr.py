"""The plan as a DICOM Comprehensive 3D Structured Report, and back.

How the plan is carried (and why)
---------------------------------
* **Structured content.** The whole plan (all sections except the audit trail) is written as SR content
  items under one root container "BVN ablation plan", field by field, so that any SR reader sees it:

  - a point in patient space (a field ending ``_lps``) is a **SCOORD3D POINT** in the plan's Frame of
    Reference (Referenced Frame of Reference UID = the planning series' Frame of Reference UID);
  - a number is a **NUM** with a UCUM unit (``mm`` for ``*_mm``, ``%`` for ``*_pct``, ``deg``, ``min``,
    ``Cel``, else ``1``); NUM keeps the exact binary value in Floating Point Value (FD);
  - text is **TEXT**; a yes/no value is a **CODE** (SNOMED CT Yes 373066001 / No 373067005);
  - an object is a **CONTAINER** (CONTINUOUS) of its fields; a list is a CONTAINER marked SEPARATE whose
    children are named "item";
  - an empty text and a missing value are CODEs from the private scheme (``empty_text``, ``null``).

  Concept names come from the private coding scheme ``99BVN`` (declared in the Coding Scheme
  Identification Sequence): the code value is the plan's field name. Extra, derived items for other
  readers are added and ignored on import: each trajectory's **ablation zone as a SCOORD3D ELLIPSOID**,
  each endplate finding's location as a SCOORD3D POINT (the endplate landmark), and each level's
  Finding Site as a SNOMED CT vertebra code where one is defined.
* **Exact copy.** SCOORD3D stores coordinates as 32-bit floats (about 4e-6 mm at 100 mm), and the
  audit trail is not written as items. So the SR also holds the plan's JSON (the .bvnplan text) in one
  TEXT item ``plan_json``.

Import (:func:`import_plan_from_sr`) reads the JSON copy when present and checks it against the structured
items (points to float32 precision, everything else exactly); if they disagree the SR was edited and the
import is refused with a clear message. Without the copy (a system may strip long text), the plan is rebuilt
from the structured items alone; its coordinates then carry float32 precision.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from planner.imaging.pacs.plans import PLAN_SR_SERIES_DESCRIPTION
from planner.plan import Plan
from planner.storage import PlanFileError, plan_from_dict, plan_to_json

SCHEME = "99BVN"
SCHEME_NAME = "BVN Planner plan content"
ROOT_CODE = ("bvn_plan", "BVN ablation plan")
JSON_CODE = "plan_json"
NOTE_CODE = "encoding_note"
DERIVED_PREFIX = "derived_"
#: Sections carried only in the JSON copy.
JSON_ONLY = ("audit",)
#: Tolerance when checking SCOORD3D (float32) points against the exact copy, in mm.
FLOAT32_TOLERANCE_MM = 1e-3

ENCODING_NOTE = ("Structured content: every plan field as a content item named by the 99BVN scheme (code value = "
                 "field name); points as SCOORD3D in the referenced frame of reference; lists as SEPARATE "
                 "containers of 'item'. Exact copy of the plan (.bvnplan JSON) in the plan_json TEXT item; "
                 "SCOORD3D holds 32-bit floats.")

_UNITS = (("_mm", ("mm", "UCUM", "millimeter")), ("_pct", ("%", "UCUM", "percent")),
          ("_deg", ("deg", "UCUM", "degree")), ("_min", ("min", "UCUM", "minute")),
          ("_c", ("Cel", "UCUM", "degree Celsius")), ("_months", ("mo", "UCUM", "month")))
_NO_UNIT = ("1", "UCUM", "no units")

SCT_VERTEBRA = {"T11": "T11Vertebra", "T12": "T12Vertebra", "L1": "L1Vertebra", "L2": "L2Vertebra",
                "L3": "L3Vertebra", "L4": "L4Vertebra", "L5": "L5Vertebra"}


class SRImportError(ValueError):
    """The SR cannot be turned into a plan; ``str(exc)`` is a message for the user."""


def _concept(key: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=key, scheme_designator=SCHEME, meaning=key.replace("_", " ")[:64] or key)


def _unit(key: str) -> hd.sr.CodedConcept:
    for suffix, (value, scheme, meaning) in _UNITS:
        if key.endswith(suffix):
            return hd.sr.CodedConcept(value, scheme, meaning)
    return hd.sr.CodedConcept(*_NO_UNIT)


def _is_point(key: str, value: Any) -> bool:
    return (key.endswith("_lps") and isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _is_point_list(key: str, value: Any) -> bool:
    return key.endswith("_lps") and isinstance(value, list) and all(_is_point(key, v) for v in value)


CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def _point_item(name: str, point: Sequence[float], for_uid: str) -> hd.sr.Scoord3DContentItem:
    return hd.sr.Scoord3DContentItem(name=_concept(name), graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                     graphic_data=np.asarray([point], dtype=float), frame_of_reference_uid=for_uid,
                                     relationship_type=CONTAINS)


def _flag(name: str, code: str, meaning: str) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=_concept(name), value=hd.sr.CodedConcept(code, SCHEME, meaning),
                                 relationship_type=CONTAINS)


def encode_value(key: str, value: Any, for_uid: str) -> hd.sr.ContentItem:
    """One plan field as a content item (recursively for objects and lists)."""
    if value is None:
        return _flag(key, "null", "no value")
    if isinstance(value, bool):
        return hd.sr.CodeContentItem(name=_concept(key), value=codes.SCT.Yes if value else codes.SCT.No,
                                     relationship_type=CONTAINS)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} is not a finite number")
        return hd.sr.NumContentItem(name=_concept(key), value=value, unit=_unit(key), relationship_type=CONTAINS)
    if isinstance(value, str):
        if value == "":
            return _flag(key, "empty_text", "empty text")
        return hd.sr.TextContentItem(name=_concept(key), value=value, relationship_type=CONTAINS)
    if _is_point(key, value):
        return _point_item(key, value, for_uid)
    if isinstance(value, dict):
        box = hd.sr.ContainerContentItem(name=_concept(key), is_content_continuous=True, relationship_type=CONTAINS)
        if value:  # an empty container has no Content Sequence at all (an empty one is not allowed: PS3.3 C.17.3)
            box.ContentSequence = [encode_value(k, v, for_uid) for k, v in value.items()]
        return box
    if isinstance(value, (list, tuple)):
        box = hd.sr.ContainerContentItem(name=_concept(key), is_content_continuous=False,
                                         relationship_type=CONTAINS)
        item_key = "item_lps" if _is_point_list(key, list(value)) else "item"
        if value:
            box.ContentSequence = [encode_value(item_key, v, for_uid) for v in value]
        return box
    raise TypeError(f"cannot encode {key} of type {type(value).__name__}")


def _add_derived(root_items: list, plan: Plan, for_uid: str) -> None:
    """Items for other SR readers (ignored on import): zones, finding locations, finding sites."""
    by_key = {_code_value(it.ConceptNameCodeSequence[0]): it for it in root_items}
    traj_box = by_key.get("trajectories")
    if traj_box is not None:
        for item, traj in zip(traj_box.ContentSequence, plan.trajectories):
            c = np.asarray(traj.target_lps, dtype=float)
            r = traj.params.zone_diameter_mm / 2.0
            axes = np.array([c - [r, 0, 0], c + [r, 0, 0], c - [0, r, 0], c + [0, r, 0], c - [0, 0, r], c + [0, 0, r]])
            item.ContentSequence.append(hd.sr.Scoord3DContentItem(
                name=_concept(DERIVED_PREFIX + "ablation_zone"), graphic_type=hd.sr.GraphicTypeValues3D.ELLIPSOID,
                graphic_data=axes, frame_of_reference_uid=for_uid, relationship_type=CONTAINS))
    level_box = by_key.get("levels")
    if level_box is not None:
        for item, level in zip(level_box.ContentSequence, plan.levels):
            code_name = SCT_VERTEBRA.get(level.name)
            if code_name:
                item.ContentSequence.append(hd.sr.CodeContentItem(
                    name=codes.SCT.FindingSite, value=getattr(codes.SCT, code_name), relationship_type=CONTAINS))
            for sub in item.ContentSequence:
                name = _code_value(sub.ConceptNameCodeSequence[0])
                if name in ("superior", "inferior"):
                    point = getattr(level.landmarks, f"{name}_endplate_lps")
                    if point is not None:
                        sub.ContentSequence.append(_point_item(DERIVED_PREFIX + "location_lps", point, for_uid))


def plan_content_tree(plan: Plan, for_uid: str) -> hd.sr.ContainerContentItem:
    data = plan.model_dump(mode="json")
    root = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept(ROOT_CODE[0], SCHEME, ROOT_CODE[1]))
    items = [encode_value(k, v, for_uid) for k, v in data.items() if k not in JSON_ONLY]
    _add_derived(items, plan, for_uid)
    items.append(hd.sr.TextContentItem(name=_concept(NOTE_CODE), value=ENCODING_NOTE, relationship_type=CONTAINS))
    items.append(hd.sr.TextContentItem(name=_concept(JSON_CODE), value=plan_to_json(plan), relationship_type=CONTAINS))
    root.ContentSequence = items
    return root


def current_signoff(plan: Plan) -> Optional[Any]:
    """The newest sign-off that still matches the plan's content (None: not signed, or changed since)."""
    current = [s for s in plan.review.signoffs if plan.signoff_is_current(s)]
    return current[-1] if current else None


def build_plan_sr(plan: Plan, evidence: Sequence[Dataset], *, for_uid: str, series_instance_uid: str,
                  sop_instance_uid: str, series_number: int, manufacturer: str,
                  institution_name: Optional[str] = None) -> hd.sr.Comprehensive3DSR:
    """The SR document; patient and study come from ``evidence[0]`` (the exported PDF or key image).

    Completion Flag COMPLETE; after a sign-off that is still current, Verification Flag VERIFIED with the
    reviewer as verifying observer (else UNVERIFIED: a plan no one signed, or changed since)."""
    signoff = current_signoff(plan)
    verified = {}
    if signoff is not None:
        verified = dict(is_final=True, is_verified=True, verifying_observer_name=_person_name(signoff.reviewer),
                        verifying_organization=(institution_name or manufacturer)[:64])
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(evidence), content=plan_content_tree(plan, for_uid), series_instance_uid=series_instance_uid,
        series_number=series_number, sop_instance_uid=sop_instance_uid, instance_number=1,
        manufacturer=manufacturer, is_complete=True, is_final=bool(verified), is_verified=bool(verified),
        institution_name=institution_name or None, specific_character_set="ISO_IR 192",
        series_description=PLAN_SR_SERIES_DESCRIPTION,
        **{k: v for k, v in verified.items() if k.startswith("verifying")})
    if signoff is not None and "VerifyingObserverSequence" in sr:
        when = "".join(c for c in signoff.signed_at if c.isdigit())[:14]
        if len(when) == 14:
            sr.VerifyingObserverSequence[0].VerificationDateTime = when
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "BVN Planner"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


# ------------------------------------------------------------------------------------ import
def _code_value(seq_item: Dataset) -> str:
    for kw in ("CodeValue", "LongCodeValue", "URNCodeValue"):
        if kw in seq_item:
            return str(seq_item.get(kw))
    return ""


def _name(item: Dataset) -> tuple[str, str]:
    c = item.ConceptNameCodeSequence[0]
    return _code_value(c), str(c.CodingSchemeDesignator)


def decode_item(item: Dataset) -> Any:
    vt = item.ValueType
    if vt == "CONTAINER":
        children = [c for c in item.get("ContentSequence", []) if _name(c)[1] == SCHEME
                    and not _name(c)[0].startswith(DERIVED_PREFIX)]
        if item.get("ContinuityOfContent", "CONTINUOUS") == "SEPARATE":
            return [decode_item(c) for c in children]
        return {_name(c)[0]: decode_item(c) for c in children}
    if vt == "NUM":
        mv = item.MeasuredValueSequence[0]
        if "FloatingPointValue" in mv:
            return float(mv.FloatingPointValue)
        num = float(mv.NumericValue)
        return int(num) if num.is_integer() else num
    if vt == "TEXT":
        return str(item.TextValue)
    if vt == "CODE":
        c = item.ConceptCodeSequence[0]
        value, scheme = _code_value(c), str(c.CodingSchemeDesignator)
        if scheme == "SCT" and value in (codes.SCT.Yes.value, codes.SCT.No.value):
            return value == codes.SCT.Yes.value
        if scheme == SCHEME and value == "null":
            return None
        if scheme == SCHEME and value == "empty_text":
            return ""
        raise SRImportError(f"unexpected coded value {value} ({scheme})")
    if vt == "SCOORD3D":
        data = [float(v) for v in item.GraphicData]
        return data if len(data) == 3 else [data[i:i + 3] for i in range(0, len(data), 3)]
    raise SRImportError(f"unexpected content item of type {vt}")


COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _root(ds: Dataset) -> Dataset:
    if "ContentSequence" not in ds or "ConceptNameCodeSequence" not in ds:
        raise SRImportError("it is not a structured report")
    root = ds.ConceptNameCodeSequence[0]
    if (_code_value(root), str(root.CodingSchemeDesignator)) != (ROOT_CODE[0], SCHEME):
        raise SRImportError("it is a structured report, but not a BVN Planner plan")
    return ds


def structured_plan_dict(ds: Dataset) -> dict[str, Any]:
    """The plan as a dict, from the structured items only (no JSON copy)."""
    root = _root(ds)
    out = {}
    for item in root.ContentSequence:
        key, scheme = _name(item)
        if scheme != SCHEME or key in (JSON_CODE, NOTE_CODE) or key.startswith(DERIVED_PREFIX):
            continue
        out[key] = decode_item(item)
    return out


def json_copy(ds: Dataset) -> Optional[str]:
    for item in _root(ds).ContentSequence:
        if _name(item) == (JSON_CODE, SCHEME) and item.ValueType == "TEXT":
            return str(item.TextValue)
    return None


def _compare(structured: Any, exact: Any, path: str, problems: list[str], is_point: bool = False) -> None:
    if len(problems) > 5:
        return
    if isinstance(exact, dict):
        if not isinstance(structured, dict) or set(structured) != set(exact):
            problems.append(path or "plan")
            return
        for k in exact:
            _compare(structured[k], exact[k], f"{path}.{k}" if path else k, problems, k.endswith("_lps"))
        return
    if isinstance(exact, list):
        if not isinstance(structured, list) or len(structured) != len(exact):
            problems.append(path)
            return
        for i, (s, e) in enumerate(zip(structured, exact)):
            _compare(s, e, f"{path}[{i}]", problems, is_point)
        return
    if isinstance(exact, (int, float)) and not isinstance(exact, bool) and isinstance(structured, (int, float)) \
            and not isinstance(structured, bool):
        tol = FLOAT32_TOLERANCE_MM if is_point else 1e-9 * max(1.0, abs(exact))
        if abs(float(structured) - float(exact)) > tol:
            problems.append(path)
        return
    if structured != exact:
        problems.append(path)


def import_plan_from_sr(path: os.PathLike | str, *, require_copy: bool = False) -> Plan:
    """Read a plan SR written by :func:`build_plan_sr`; raises :class:`SRImportError` with a clear message."""
    p = Path(path)
    try:
        ds = pydicom.dcmread(str(p))
    except FileNotFoundError:
        raise SRImportError(f"Cannot import {p.name}: the file does not exist") from None
    except Exception as exc:  # pydicom raises several types for damaged files
        raise SRImportError(f"Cannot import {p.name}: not a readable DICOM file ({exc})") from None
    try:
        structured = structured_plan_dict(ds)
        text = json_copy(ds)
    except SRImportError as exc:
        raise SRImportError(f"Cannot import {p.name}: {exc}") from None
    except (AttributeError, KeyError, IndexError, ValueError) as exc:
        raise SRImportError(f"Cannot import {p.name}: the SR content is damaged ({exc})") from None
    if text is None:
        if require_copy:
            raise SRImportError(f"Cannot import {p.name}: the exact plan copy (plan_json) is missing")
        data = structured
    else:
        try:
            exact = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SRImportError(f"Cannot import {p.name}: the plan copy is damaged ({exc.msg})") from None
        problems: list[str] = []
        _compare(structured, {k: v for k, v in exact.items() if k not in JSON_ONLY}, "", problems)
        if problems:
            raise SRImportError(f"Cannot import {p.name}: the structured content and the plan copy disagree at "
                                f"{', '.join(problems[:5])}; the SR may have been edited")
        data = exact
    try:
        return plan_from_dict(data, p)
    except PlanFileError as exc:
        raise SRImportError(str(exc)) from None


def _person_name(text: str) -> str:
    """A reviewer's name as a DICOM Person Name (no backslash or control characters, 64 per component)."""
    clean = "".join(c for c in (text or "unknown") if c.isprintable() and c not in "\\=").strip() or "unknown"
    if "^" not in clean:
        return clean[:64] + "^"  # one free-text name: the family name component (trailing caret: PS3.5 6.2.1.2)
    return "^".join(part[:64] for part in clean.split("^")[:5])


def is_plan_sr_file(path: os.PathLike | str) -> bool:
    """True for a DICOM file that is a plan SR of this application (read from its header only)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if fh.read(132)[128:132] != b"DICM":
                return False
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["SOPClassUID", "ConceptNameCodeSequence"])
        root = ds.ConceptNameCodeSequence[0]
        return (_code_value(root), str(root.CodingSchemeDesignator)) == (ROOT_CODE[0], SCHEME)
    except (OSError, AttributeError, IndexError, KeyError, ValueError, TypeError):
        return False
    except pydicom.errors.InvalidDicomError:
        return False
