"""Which loaded series each view shows: the plan's series roles first, else a guess from the
series description and acquisition orientation (no Qt)."""

from __future__ import annotations

from typing import Optional

from planner.imaging.volume import Volume
from planner.session import Session, series_role
from planner.trajectory import is_ct


def guess_role(image) -> str:
    """The role a loaded series most likely has (the core's :func:`planner.session.series_role`)."""
    return series_role(image)


def modality_text(image) -> str:
    """The modality shown for a series; a CT recognised by its intensities (no modality tag, e.g.
    a NIfTI file) says so."""
    mod = image.info.modality
    if mod:
        return mod
    if isinstance(image, Volume) and is_ct(image):
        return "CT (by intensity range)"
    return "?"


def role_of(session: Session, key: str) -> str:
    for ref in session.document.plan.case.series:
        if ref.series_instance_uid == key and ref.role:
            return ref.role
    img = session.images.get(key)
    return guess_role(img) if img is not None else ""


def key_for_role(session: Session, role: str) -> Optional[str]:
    for ref in session.document.plan.case.series:
        if ref.role == role and ref.series_instance_uid in session.images:
            return ref.series_instance_uid
    for key, img in session.images.items():
        if guess_role(img) == role:
            return key
    return None


def main_volume_key(session: Session) -> Optional[str]:
    """The planning volume: the T2 (the usual spine planning sequence), else the active series,
    else CT, else any sagittal volume, else the first volume."""
    for role in ("T2", "CT"):
        k = key_for_role(session, role)
        if k is not None and isinstance(session.images.get(k), Volume):
            if role == "T2" or session.active_series is None:
                return k
    if session.active_series and isinstance(session.images.get(session.active_series), Volume):
        return session.active_series
    vols = session.volumes()
    if not vols:
        return None
    from planner.display.slice_geometry import native_orientation

    for k, v in vols.items():
        if native_orientation(v) == "sagittal":
            return k
    return next(iter(vols))


def fluoro_keys(session: Session) -> tuple[Optional[str], Optional[str]]:
    """(AP, lateral) projection image keys; unassigned projections fill the free places in order."""
    ap = key_for_role(session, "FLUORO_AP")
    lat = key_for_role(session, "FLUORO_LAT")
    rest = [k for k in session.projections() if k not in (ap, lat)]
    if ap is None and rest:
        ap = rest.pop(0)
    if lat is None and rest:
        lat = rest.pop(0)
    return ap, lat
