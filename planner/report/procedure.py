"""Numbers for the procedure room, per trajectory: where the introducer goes through the skin, how deep
the target lies from there, the introducer's angles in the patient's axes, and the C-arm angles that
square the vertebra on the image.

All geometry is LPS millimetres (x to the patient's left, y posterior, z superior). The introducer
direction ``d`` runs from the bone entry toward the bend (curved path) or the target (straight path).

* **Skin entry**: :func:`planner.trajectory.skin_entry_point` on the loaded volume that holds the entry
  (a CT first, else an MR): the first exit of the introducer line from the body, going back from the
  bone entry, on the back. Without a volume, or when the line leaves the image before the skin, the
  skin entry and the depth are "not measured" (never a number from a model).
* **Skin-to-target depth**: skin to bone entry (straight introducer line) plus the path from the bone
  entry to the target (introducer, curved cannula and probe, :class:`planner.trajectory.TrajectoryPath`).
* **Introducer angles in the patient's axes**: in the axial plane, the angle between ``d`` and the
  patient's front-to-back axis, toward the midline ("medial"); in the sagittal plane, the angle between
  ``d`` and the same axis, toward the head ("cranial", negative: caudal). The vertebra-frame angles
  are in the checks (:mod:`planner.checks`).
* **C-arm**. The beam is described going from the patient's back to the front (the way the introducer
  goes), so every angle names its direction on the patient:

  - AP with the superior endplate edge-on (a "squared" endplate): the beam tilted in the sagittal
    plane by ``atan(s_y / s_z)`` toward the head (negative: toward the feet), ``s`` the vertebra's
    superior direction;
  - AP "en face" along the pedicle axis (the introducer seen end-on): oblique by the introducer's
    medial angle to the side of the entry, tilted by its cranial angle;
  - lateral with the endplates edge-on: the vertebra's left-right axis is tilted in the coronal plane
    by ``atan(l_z / |l_x|)``; the lateral beam is angled by that much, the patient's right side toward
    the head when positive; and the vertebra's rotation in the axial plane (``atan(l_y / |l_x|)``, the
    right side toward the back when positive), by which a true lateral (one posterior wall line) and a
    true AP (the spinous process midway between the pedicles) are rotated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from planner.imaging.volume import Volume
from planner.plan import Plan, Trajectory
from planner.trajectory import (
    LandmarkError,
    PathError,
    VertebraFrame,
    is_ct,
    skin_entry_point,
    trajectory_path,
    vertebra_frame,
)


@dataclass
class ProcedureNumbers:
    level_name: str
    side: str
    skin_lps: Optional[np.ndarray]
    #: Why the skin entry is not measured ("" when it is).
    skin_note: str
    #: The volume the skin was found on, in words ("CT", "MR T2").
    skin_source: str
    skin_to_entry_mm: Optional[float]
    skin_to_target_mm: Optional[float]
    entry_to_target_mm: Optional[float]
    #: Introducer angles in the patient's axes (deg): toward the midline; toward the head.
    medial_deg: Optional[float]
    cranial_deg: Optional[float]
    #: C-arm (deg): AP tilt that puts the superior endplate edge-on (toward the head when positive).
    ap_tilt_deg: Optional[float]
    #: C-arm en face along the pedicle/introducer: oblique toward the entry side, tilt toward the head.
    enface_oblique_deg: Optional[float]
    enface_tilt_deg: Optional[float]
    #: Lateral: endplate tilt in the coronal plane (right side toward the head when positive) and the
    #: vertebra's rotation in the axial plane (right side toward the back when positive).
    lateral_tilt_deg: Optional[float]
    rotation_deg: Optional[float]


def _deg(a: float) -> float:
    return math.degrees(a)


def introducer_direction(plan: Plan, trajectory: Trajectory) -> np.ndarray:
    return trajectory_path(trajectory, plan).direction


def patient_angles(direction: np.ndarray, entry_lps: np.ndarray, midline_x: float) -> tuple[float, float]:
    """(medial, cranial) angles (deg) of an introducer direction in the patient's axes (module text)."""
    d = np.asarray(direction, dtype=float)
    forward = -d[1]  # posterior to anterior is LPS -y
    toward_mid = float(np.sign(midline_x - entry_lps[0]) or 1.0) * d[0]
    return _deg(math.atan2(toward_mid, forward)), _deg(math.atan2(d[2], forward))


def carm_angles(frame: VertebraFrame) -> tuple[float, float, float]:
    """(AP tilt, lateral tilt, axial rotation) in degrees for the vertebra (module text)."""
    s, l_right = frame.s, frame.l
    if l_right[0] > 0:  # l points to the patient's right (LPS -x) in the usual orientation
        l_right = -l_right
    ap = _deg(math.atan2(s[1], s[2]))
    lat = _deg(math.atan2(l_right[2], abs(l_right[0])))
    rot = _deg(math.atan2(l_right[1], abs(l_right[0])))
    return ap, lat, rot


def skin_volumes(plan: Plan, images: Optional[Mapping[str, Any]], point_lps: np.ndarray) -> list[tuple[str, Volume]]:
    """The loaded volumes that hold ``point_lps``, a CT first, then the MR volumes with the largest field of
    view (each named by the plan's role for it)."""
    if not images:
        return []
    roles = {ref.series_instance_uid: ref.role for ref in plan.case.series}
    found = [(k, v) for k, v in images.items() if isinstance(v, Volume) and v.contains(point_lps)]
    found.sort(key=lambda kv: (0 if is_ct(kv[1]) else 1, -float(np.prod(np.ptp(kv[1].corners_lps(), axis=0)))))
    out = []
    for key, vol in found:
        role = roles.get(vol.info.series_instance_uid) or roles.get(key) or ""
        out.append(("CT" if is_ct(vol) else f"MR {role}".strip(), vol))
    return out


def procedure_numbers(plan: Plan, trajectory: Trajectory, images: Optional[Mapping[str, Any]] = None
                      ) -> ProcedureNumbers:
    level = next((lv for lv in plan.levels if lv.id == trajectory.level_id), None)
    name = level.name if level is not None else "?"
    out = ProcedureNumbers(name, trajectory.side, None, "", "", None, None, None, None, None, None, None, None,
                           None, None)
    try:
        path = trajectory_path(trajectory, plan)
    except PathError as exc:
        out.skin_note = f"not measured: the path is undefined ({exc})"
        return out
    entry = path.entry_lps
    out.entry_to_target_mm = path.total_mm
    frame: Optional[VertebraFrame] = None
    if level is not None:
        try:
            frame = vertebra_frame(level)
        except LandmarkError:
            frame = None
    midline_x = float(frame.body_center_lps[0]) if frame is not None else float(path.target_lps[0])
    out.medial_deg, out.cranial_deg = patient_angles(path.direction, entry, midline_x)
    out.enface_oblique_deg, out.enface_tilt_deg = out.medial_deg, out.cranial_deg
    if frame is not None:
        out.ap_tilt_deg, out.lateral_tilt_deg, out.rotation_deg = carm_angles(frame)
    found = skin_volumes(plan, images, entry)
    if not found:
        out.skin_note = "not measured: no loaded image holds the bone entry"
        return out
    for name, vol in found:
        skin = skin_entry_point(trajectory, vol)
        if skin is not None:
            out.skin_source = name
            break
    else:
        out.skin_note = ("not measured: the introducer line leaves the image before the skin ("
                         + ", ".join(n for n, _ in found) + ")")
        return out
    out.skin_lps = skin
    out.skin_to_entry_mm = float(np.linalg.norm(entry - skin))
    out.skin_to_target_mm = out.skin_to_entry_mm + path.total_mm
    return out


def side_word(degrees: Optional[float], positive: str, negative: str) -> str:
    """ "12.0° toward the head" / "3.5° toward the feet" / "-" """
    if degrees is None or not math.isfinite(degrees):
        return "-"
    if abs(degrees) < 0.5:
        return "0°"
    return f"{abs(degrees):.1f}° {positive if degrees >= 0 else negative}"
