"""The plan as a DICOM Comprehensive 3D Structured Report (TID 1500 Measurement Report), and back.

How the plan is carried (and why)
---------------------------------
The document follows **TID 1500 "Measurement Report"** (root concept DCM 126000 "Imaging Measurement
Report", built with highdicom's ``MeasurementReport``): language, the plan's author as the person observer,
Procedure Reported SCT 879916008 "Radiofrequency ablation", and under "Imaging Measurements" one
measurement group per item of the plan's geometry, every coordinate a **SCOORD3D** in the plan's Frame of
Reference (Referenced Frame of Reference UID = the planning series' Frame of Reference UID):

* each **trajectory**: a TID 1410 group whose region is the planned path as a POLYLINE (entry, the bend when
  the path is curved, target; finding type DCM 121055 "Path"), and a TID 1411 group whose surface is the
  **ablation zone** as an ELLIPSOID around the target (finding type SCT 228793007 "Planning target
  volume"), with its diameter (SCT 81827009 "Diameter", UCUM mm) and the path length (SCT 410668003
  "Length", mm); both with the Finding Site of the level's vertebra (SCT vertebra codes) and the
  Laterality of the side (SCT 7771000 Left / 24028007 Right);
* each **landmark** of a level: a TID 1410 group with a POINT (body centre DCM 111010 "Center", pedicles
  SCT 78972004 "Pedicle of vertebra" with laterality; endplates and walls from the private scheme below);
* each **outline** (pedicles, spinal canal): a TID 1410 group with a closed POLYGON (SCT 78972004 with
  laterality, SCT 61853006 "Spinal canal structure");
* each **Modic finding** (an endplate with a Modic change): a TID 1501 group with a qualitative evaluation.

Every group has a Tracking Identifier (text) and a Tracking Unique Identifier derived from the plan and the
item, so a reader can follow the same trajectory across versions of the plan.

What no standard code names uses the private coding scheme **99BVN** (declared in the Coding Scheme
Identification Sequence); every private code is in :data:`PRIVATE_CODES` and in docs/architecture.md.

**The plan itself.** The whole plan (settings, eligibility answers, review, audit trail: much of it has no
code in any scheme) is the plan's .bvnplan JSON in one TEXT item "BVN plan (exact copy)" at the end of the
report (TID 1500 is extensible). Import (:func:`import_plan_from_sr`) reads that copy and checks it against
the SCOORD3D geometry of the report (points to float32 precision); if they disagree the SR was edited and
the import is refused with a clear message. A report without the copy is refused too: its standard content
does not hold the whole plan.

SRs written in the first format of this application (root concept 99BVN "BVN ablation plan", every field an
item of the private scheme) still open: from their JSON copy (checked against their items), or from their
items alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from planner.deidentify import derived_uid
from planner.imaging.pacs.plans import PLAN_SR_SERIES_DESCRIPTION
from planner.plan import Plan
from planner.storage import PlanFileError, plan_from_dict, plan_to_json

SCHEME = "99BVN"
SCHEME_NAME = "BVN Planner plan content"
#: Tolerance when checking SCOORD3D (float32) points against the exact copy, in mm.
FLOAT32_TOLERANCE_MM = 1e-3
CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


#: Every code of the private scheme 99BVN (code value: (meaning, where it is used)); nothing else is private.
PRIVATE_CODES: dict[str, tuple[str, str]] = {
    "plan_json": ("BVN plan (exact copy)", "TEXT item at the end of the report: the .bvnplan JSON of the plan"),
    "sup_endplate": ("Superior endplate of vertebral body", "finding type of a landmark group"),
    "inf_endplate": ("Inferior endplate of vertebral body", "finding type of a landmark group"),
    "posterior_wall": ("Posterior wall of vertebral body", "finding type of a landmark group"),
    "anterior_wall": ("Anterior wall of vertebral body", "finding type of a landmark group"),
    "modic_superior": ("Modic change at the superior endplate", "qualitative evaluation (name)"),
    "modic_inferior": ("Modic change at the inferior endplate", "qualitative evaluation (name)"),
    "modic_1": ("Modic type 1", "qualitative evaluation (value)"),
    "modic_2": ("Modic type 2", "qualitative evaluation (value)"),
    "modic_3": ("Modic type 3", "qualitative evaluation (value)"),
    "modic_1/2": ("Modic type 1/2 (mixed)", "qualitative evaluation (value)"),
    "modic_2/3": ("Modic type 2/3 (mixed)", "qualitative evaluation (value)"),
    "modic_grade_A": ("Modic grade A", "qualitative evaluation (value)"),
    "modic_grade_B": ("Modic grade B", "qualitative evaluation (value)"),
    "modic_grade_C": ("Modic grade C", "qualitative evaluation (value)"),
    "grade_superior": ("Modic grade at the superior endplate", "qualitative evaluation (name)"),
    "grade_inferior": ("Modic grade at the inferior endplate", "qualitative evaluation (name)"),
}


def private_code(value: str) -> hd.sr.CodedConcept:
    return _private(value, PRIVATE_CODES[value][0])



PLAN_COPY = "plan_json"
#: Anatomy of the levels (SNOMED CT); S1 is coded as the sacrum.
SCT_VERTEBRA = {"T11": codes.SCT.T11Vertebra, "T12": codes.SCT.T12Vertebra, "L1": codes.SCT.L1Vertebra,
                "L2": codes.SCT.L2Vertebra, "L3": codes.SCT.L3Vertebra, "L4": codes.SCT.L4Vertebra,
                "L5": codes.SCT.L5Vertebra, "S1": codes.SCT.Sacrum}
SIDE = {"left": codes.SCT.Left, "right": codes.SCT.Right}
#: Landmark field -> (finding type, laterality or None).
LANDMARK_CODES = {
    "body_center_lps": (codes.DCM.Center, None),
    "superior_endplate_lps": (private_code("sup_endplate"), None),
    "inferior_endplate_lps": (private_code("inf_endplate"), None),
    "posterior_wall_lps": (private_code("posterior_wall"), None),
    "anterior_wall_lps": (private_code("anterior_wall"), None),
    "pedicle_left_lps": (codes.SCT.PedicleOfVertebra, codes.SCT.Left),
    "pedicle_right_lps": (codes.SCT.PedicleOfVertebra, codes.SCT.Right),
}
OUTLINE_CODES = {
    "pedicle_outline_left_lps": (codes.SCT.PedicleOfVertebra, codes.SCT.Left),
    "pedicle_outline_right_lps": (codes.SCT.PedicleOfVertebra, codes.SCT.Right),
    "canal_outline_lps": (codes.SCT.SpinalCanalStructure, None),
}
MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")


class SRImportError(ValueError):
    """The SR cannot be turned into a plan; ``str(exc)`` is a message for the user."""


# ------------------------------------------------------------------------------------ export
def _site(level_name: str, laterality: Any = None) -> list[hd.sr.FindingSite]:
    code = SCT_VERTEBRA.get(level_name)
    if code is None:
        return []
    return [hd.sr.FindingSite(anatomic_location=code, laterality=laterality)]


def _tracking(plan: Plan, what: str, *parts: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=derived_uid("bvn-plan-item", plan.plan_id, *parts), identifier=what[:64])


def _path_points(traj: Any) -> np.ndarray:
    points = [traj.entry_lps] + ([traj.bend_lps] if traj.bend_lps is not None else []) + [traj.target_lps]
    return np.asarray(points, dtype=float)


def _zone_axes(traj: Any) -> np.ndarray:
    c = np.asarray(traj.target_lps, dtype=float)
    r = traj.params.zone_diameter_mm / 2.0
    return np.array([c - [r, 0, 0], c + [r, 0, 0], c - [0, r, 0], c + [0, r, 0], c - [0, 0, r], c + [0, 0, r]])


def planning_series(plan: Plan, for_uid: str) -> Optional[str]:
    """The Series Instance UID of the plan's series in the frame of reference ``for_uid`` (None: none)."""
    return next((r.series_instance_uid for r in plan.case.series
                 if r.frame_of_reference_uid == for_uid and r.series_instance_uid), None)


def measurement_groups(plan: Plan, for_uid: str) -> list:
    """The TID 1500 measurement groups of the plan's geometry and findings."""
    groups: list = []
    names = {lv.id: lv.name for lv in plan.levels}
    source = planning_series(plan, for_uid)
    for i, traj in enumerate(plan.trajectories):
        level = names.get(traj.level_id, "")
        what = f"Trajectory {traj.label or i + 1} {level} {traj.side}".replace("  ", " ")
        site = _site(level, SIDE[traj.side])
        path = _path_points(traj)
        length = float(sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(plan, what + " path", "trajectory", traj.id, "path"),
            referenced_region=hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.POLYLINE, path, for_uid),
            finding_type=codes.DCM.Path, finding_sites=site,
            measurements=[hd.sr.Measurement(name=codes.SCT.Length, value=length, unit=MM)]))
        if source is None:
            continue  # a volume surface names its source series; the plan copy holds the zone
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(plan, what + " ablation zone", "trajectory", traj.id, "zone"),
            referenced_volume_surface=hd.sr.VolumeSurface(
                hd.sr.GraphicTypeValues3D.ELLIPSOID, _zone_axes(traj), for_uid,
                source_series=hd.sr.SourceSeriesForSegmentation(source)),
            finding_type=codes.SCT.PlanningTargetVolume, finding_sites=site,
            measurements=[hd.sr.Measurement(name=codes.SCT.Diameter, value=float(traj.params.zone_diameter_mm),
                                            unit=MM)]))
    for level in plan.levels:
        for key, (finding, laterality) in LANDMARK_CODES.items():
            point = getattr(level.landmarks, key)
            if point is None:
                continue
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(plan, f"{level.name} {key[:-4].replace('_', ' ')}", "level",
                                              level.id, key),
                referenced_region=hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.POINT,
                                                      np.asarray([point], dtype=float), for_uid),
                finding_type=finding, finding_sites=_site(level.name, laterality)))
        for key, (finding, laterality) in OUTLINE_CODES.items():
            outline = getattr(level, key)
            if len(outline) < 3:
                continue  # not a polygon (the plan copy holds it)
            closed = np.asarray(list(outline) + [outline[0]], dtype=float)
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(plan, f"{level.name} {key[:-4].replace('_', ' ')}", "level",
                                              level.id, key),
                referenced_region=hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.POLYGON, closed, for_uid),
                finding_type=finding, finding_sites=_site(level.name, laterality)))
        evaluations = []
        for side in ("superior", "inferior"):
            finding = getattr(level, side)
            if finding.modic_type == "none":
                continue
            evaluations.append(hd.sr.QualitativeEvaluation(private_code(f"modic_{side}"),
                                                           private_code(f"modic_{finding.modic_type}")))
            if finding.grade is not None:
                evaluations.append(hd.sr.QualitativeEvaluation(private_code(f"grade_{side}"),
                                                               private_code(f"modic_grade_{finding.grade}")))
        if evaluations:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(plan, f"{level.name} endplate findings", "level", level.id, "modic"),
                finding_sites=_site(level.name), qualitative_evaluations=evaluations))
    return groups


def plan_report(plan: Plan, for_uid: str) -> hd.sr.MeasurementReport:
    """The TID 1500 report of the plan, with the exact plan copy as its last item."""
    author = _person_name(plan.author or "unknown")
    context = hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=author)))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.SCT.RadiofrequencyAblation,
                                     imaging_measurements=measurement_groups(plan, for_uid) or None)
    report[0].ContentSequence.append(hd.sr.TextContentItem(name=private_code(PLAN_COPY), value=plan_to_json(plan),
                                                           relationship_type=CONTAINS))
    return report


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
        evidence=list(evidence), content=plan_report(plan, for_uid), series_instance_uid=series_instance_uid,
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
IMAGING_MEASUREMENT_REPORT = (codes.DCM.ImagingMeasurementReport.value, "DCM")
#: The first format's root concept, its JSON copy and note (still read).
LEGACY_ROOT = ("bvn_plan", SCHEME)
JSON_CODE = PLAN_COPY
LEGACY_NOTE_CODE = "encoding_note"
DERIVED_PREFIX = "derived_"
#: Sections the first format carried only in the JSON copy.
JSON_ONLY = ("audit",)


def _kind(ds: Dataset) -> str:
    """'report' (this format), 'legacy' (the first format); raises SRImportError for anything else."""
    if "ContentSequence" not in ds or "ConceptNameCodeSequence" not in ds:
        raise SRImportError("it is not a structured report")
    root = ds.ConceptNameCodeSequence[0]
    name = (_code_value(root), str(root.CodingSchemeDesignator))
    if name == LEGACY_ROOT:
        return "legacy"
    if name == IMAGING_MEASUREMENT_REPORT and any(_name(it) == (PLAN_COPY, SCHEME) for it in ds.ContentSequence):
        return "report"
    raise SRImportError("it is a structured report, but not a BVN Planner plan")


def json_copy(ds: Dataset) -> Optional[str]:
    for item in ds.ContentSequence:
        if _name(item) == (JSON_CODE, SCHEME) and item.ValueType == "TEXT":
            return str(item.TextValue)
    return None


def _tracking_uid(group: Dataset) -> str:
    for item in group.get("ContentSequence", []):
        if item.ValueType == "UIDREF" and _name(item) == ("112040", "DCM"):
            return str(item.UID)
    return ""


def _scoord(group: Dataset) -> Optional[tuple[np.ndarray, str]]:
    for item in group.get("ContentSequence", []):
        if item.ValueType == "SCOORD3D":
            return (np.asarray([float(v) for v in item.GraphicData], dtype=float).reshape(-1, 3),
                    str(item.ReferencedFrameOfReferenceUID))
    return None


def report_geometry(ds: Dataset) -> tuple[dict[str, np.ndarray], str]:
    """Tracking UID -> the SCOORD3D coordinates of each measurement group of the report, and the frame of
    reference they are in ("" when there are none)."""
    out: dict[str, np.ndarray] = {}
    for_uid = ""
    for item in ds.ContentSequence:
        if item.ValueType == "CONTAINER" and _name(item) == ("126010", "DCM"):  # Imaging Measurements
            for group in item.get("ContentSequence", []):
                uid, found = _tracking_uid(group), _scoord(group)
                if uid and found is not None:
                    out[uid], for_uid = found
    return out, for_uid


def _expected_geometry(plan: Plan, for_uid: str) -> list[tuple[str, str, np.ndarray]]:
    """(tracking UID, field path, coordinates) of the plan's points as the report must hold them."""
    out: list[tuple[str, str, np.ndarray]] = []
    for i, traj in enumerate(plan.trajectories):
        uid = derived_uid("bvn-plan-item", plan.plan_id, "trajectory", traj.id, "path")
        names = ["entry_lps"] + (["bend_lps"] if traj.bend_lps is not None else []) + ["target_lps"]
        for j, name in enumerate(names):
            out.append((uid, f"trajectories[{i}].{name}", _path_points(traj)[j:j + 1]))
        if planning_series(plan, for_uid) is not None:
            out.append((derived_uid("bvn-plan-item", plan.plan_id, "trajectory", traj.id, "zone"),
                        f"trajectories[{i}].params.zone_diameter_mm", _zone_axes(traj)))
    for i, level in enumerate(plan.levels):
        for key in LANDMARK_CODES:
            point = getattr(level.landmarks, key)
            if point is not None:
                out.append((derived_uid("bvn-plan-item", plan.plan_id, "level", level.id, key),
                            f"levels[{i}].landmarks.{key}", np.asarray([point], dtype=float)))
    return out


def _geometry_problems(ds: Dataset, plan: Plan) -> list[str]:
    found, for_uid = report_geometry(ds)
    problems: list[str] = []
    for uid, path, coords in _expected_geometry(plan, for_uid):
        have = found.get(uid)
        if have is None:
            problems.append(path)
            continue
        if path.startswith("trajectories") and not path.endswith("zone_diameter_mm"):
            j = {"entry_lps": 0, "bend_lps": 1}.get(path.rsplit(".", 1)[1], len(have) - 1)
            have = have[j:j + 1] if j < len(have) else None
        if have is None or have.shape != coords.shape or np.abs(have - coords).max() > FLOAT32_TOLERANCE_MM:
            problems.append(path)
    return problems


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


def legacy_plan_dict(ds: Dataset) -> dict[str, Any]:
    """The plan as a dict from the field-by-field items of a first-format SR (no JSON copy)."""
    root = ds
    out = {}
    for item in root.ContentSequence:
        key, scheme = _name(item)
        if scheme != SCHEME or key in (JSON_CODE, LEGACY_NOTE_CODE) or key.startswith(DERIVED_PREFIX):
            continue
        out[key] = decode_item(item)
    return out


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


def _read(p: Path) -> Dataset:
    try:
        return pydicom.dcmread(str(p))
    except FileNotFoundError:
        raise SRImportError(f"Cannot import {p.name}: the file does not exist") from None
    except Exception as exc:  # pydicom raises several types for damaged files
        raise SRImportError(f"Cannot import {p.name}: not a readable DICOM file ({exc})") from None


def _from_json(p: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SRImportError(f"Cannot import {p.name}: the plan copy is damaged ({exc.msg})") from None
    if not isinstance(data, dict):
        raise SRImportError(f"Cannot import {p.name}: the plan copy is not a plan")
    return data


def _edited(p: Path, problems: list[str]) -> SRImportError:
    return SRImportError(f"Cannot import {p.name}: the structured content and the plan copy disagree at "
                         f"{', '.join(problems[:5])}; the SR may have been edited")


def import_plan_from_sr(path: os.PathLike | str, *, require_copy: bool = False) -> Plan:
    """Read a plan SR written by :func:`build_plan_sr` (or by the first format); raises
    :class:`SRImportError` with a clear message. ``require_copy``: refuse a first-format SR without its
    exact copy (a report of this format always needs it)."""
    p = Path(path)
    ds = _read(p)
    try:
        kind = _kind(ds)
        text = json_copy(ds)
        if kind == "report":
            data = _from_json(p, text or "")
            plan = plan_from_dict(data, p)
            problems = _geometry_problems(ds, plan)
            if problems:
                raise _edited(p, problems)
            return plan
        structured = legacy_plan_dict(ds)
    except SRImportError as exc:
        raise SRImportError(exc.args[0] if str(exc).startswith("Cannot import") else
                            f"Cannot import {p.name}: {exc}") from None
    except PlanFileError as exc:
        raise SRImportError(str(exc)) from None
    except (AttributeError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise SRImportError(f"Cannot import {p.name}: the SR content is damaged ({exc})") from None
    if text is None:
        if require_copy:
            raise SRImportError(f"Cannot import {p.name}: the exact plan copy (plan_json) is missing")
        data = structured
    else:
        exact = _from_json(p, text)
        problems: list[str] = []
        _compare(structured, {k: v for k, v in exact.items() if k not in JSON_ONLY}, "", problems)
        if problems:
            raise _edited(p, problems)
        data = exact
    try:
        return plan_from_dict(data, p)
    except PlanFileError as exc:
        raise SRImportError(str(exc)) from None


def _person_name(text: str) -> str:
    """A name as a DICOM Person Name (no backslash or control characters, 64 per component)."""
    clean = "".join(c for c in (text or "unknown") if c.isprintable() and c not in "\\=").strip() or "unknown"
    if "^" not in clean:
        return clean[:64] + "^"  # one free-text name: the family name component (trailing caret: PS3.5 6.2.1.2)
    return "^".join(part[:64] for part in clean.split("^")[:5])


def is_plan_sr_file(path: os.PathLike | str) -> bool:
    """True for a DICOM file that is a plan SR of this application (either format)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if fh.read(132)[128:132] != b"DICM":
                return False
        ds = pydicom.dcmread(str(p), stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "ConceptNameCodeSequence", "ContentSequence"])
        _kind(ds)
        return True
    except SRImportError:
        return False
    except (OSError, AttributeError, IndexError, KeyError, ValueError, TypeError):
        return False
    except pydicom.errors.InvalidDicomError:
        return False
