"""The level finder's entry points: propose the levels of a volume (CT or MR) and choose the volume of a
session to label."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from planner.imaging.volume import Volume
from planner.plan import Level
from planner.levels.params import DetectionParams
from planner.levels.results import LevelDetectionError, LevelProposal
from planner.levels.naming import PROPOSED_ORDER, name_sequence, TRANSITIONAL
from planner.levels.ct import detect_ct
from planner.levels.mri import detect_mr


def propose_levels(volume: Volume, hints: Optional[Mapping[str, Sequence[float]]] = None, *,
                   modality: Optional[str] = None, transitional: Optional[str] = None,
                   params: Optional[DetectionParams] = None, companions: Sequence[Volume] = ()) -> list[Level]:
    """Propose every lumbar level T12-S1 present in ``volume`` with its landmarks (LPS mm).

    ``hints`` maps level names to LPS points inside those bodies (MRI: two or more, e.g. ``{"S1": p, "L1":
    q}`` or ``{"L1": p, "L5": q}``, or none for a proposal counted from the sacrum; CT needs none). ``transitional`` is None, ``"L6"`` (six lumbar vertebrae) or
    ``"sacralised_L5"`` (L5 fused into the sacrum). ``companions``: other series of the same frame of
    reference (MRI: an axial stack refines the pedicles of the levels it covers; others are ignored).
    Raises :class:`LevelDetectionError`."""
    return propose_levels_detailed(volume, hints, modality=modality, transitional=transitional,
                                   params=params, companions=companions).levels


def propose_levels_detailed(volume: Volume, hints: Optional[Mapping[str, Sequence[float]]] = None, *,
                            modality: Optional[str] = None, transitional: Optional[str] = None,
                            params: Optional[DetectionParams] = None, companions: Sequence[Volume] = ()
                            ) -> LevelProposal:
    """Like :func:`propose_levels`, with the modality used and notes for the user."""
    if transitional not in TRANSITIONAL:
        raise LevelDetectionError(f"transitional must be None, 'L6' or 'sacralised_L5', not {transitional!r}")
    p = params or DetectionParams()
    mod = (modality or volume.info.modality or _guess_modality(volume)).upper()
    hints = {str(k).upper(): np.asarray(v, dtype=float) for k, v in (hints or {}).items()}
    for name, pt in hints.items():
        if name not in name_sequence(transitional):
            raise LevelDetectionError(f"unknown level name in hint: {name!r}")
        if pt.shape != (3,) or not np.all(np.isfinite(pt)):
            raise LevelDetectionError(f"hint {name} must be three finite LPS coordinates")
        if not volume.contains(pt, margin_voxels=1.0):
            raise LevelDetectionError(f"hint {name} at {tuple(round(float(v), 1) for v in pt)} lies outside "
                                      "the image")
    warnings: list[str] = []
    if mod == "CT":
        found, notes = detect_ct(volume, p, transitional, hints)
    else:
        for_uid = volume.info.frame_of_reference_uid
        same_frame = [c for c in companions if c is not volume and isinstance(c, Volume) and c.array.ndim == 3
                      and (not for_uid or c.info.frame_of_reference_uid == for_uid)]
        found, notes, warnings = detect_mr(volume, hints, p, transitional, mod, companions=same_frame)
    levels = [Level(name=v.name, landmarks=v.landmarks,
                    pedicle_outline_left_lps=v.pedicle_outlines.get("left", []),
                    pedicle_outline_right_lps=v.pedicle_outlines.get("right", []),
                    canal_outline_lps=v.canal_outline)
              for v in found if v.name in PROPOSED_ORDER]
    if not levels:
        raise LevelDetectionError("no lumbar level (T12-S1) was found in the image")
    return LevelProposal(levels, mod, notes, warnings)


def labelling_volume(session: object) -> Optional[tuple[str, Volume]]:
    """The volume to label in a :class:`planner.session.Session`: the series with role CT, else the
    sagittal T1 (marrow bright, cortex and discs dark: the clearest for the bodies), else T2, else the
    active volume, else any CT-like or sagittal volume (key, volume)."""
    vols: dict[str, Volume] = session.volumes()  # type: ignore[attr-defined]
    if not vols:
        return None
    roles = {ref.series_instance_uid: ref.role for ref in session.document.plan.case.series}  # type: ignore
    for role in ("CT", "T1", "T2"):
        for key, vol in vols.items():
            if roles.get(key) == role:
                return key, vol
    active = getattr(session, "active_series", None)
    if active in vols:
        return active, vols[active]

    def rank(item: tuple[str, Volume]) -> tuple[int, int]:
        v = item[1]
        mod = (v.info.modality or "").upper()
        return (2 if mod == "CT" else 1 if abs(v.slice_normal()[0]) > 0.7 else 0), int(v.array.size)

    return max(vols.items(), key=rank)


def _guess_modality(volume: Volume) -> str:
    return "CT" if volume.hounsfield_like() else "MR"
