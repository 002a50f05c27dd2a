"""Finding a plan's images for the documents: by Series Instance UID, in a folder the user names
(``--images``) or at the plan's path hints (``CaseInfo.series[].path_hint``).

Reading is done by :func:`planner.imaging.load_path`; this module only matches what it returns to
the plan's series and says which are missing.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from planner.imaging.volume import ProjectionImage, Volume
from planner.plan import Plan

log = logging.getLogger(__name__)


@dataclass
class FoundImages:
    images: dict[str, Any] = field(default_factory=dict)  # series UID -> Volume | ProjectionImage
    missing: list[str] = field(default_factory=list)  # descriptions of plan series not found
    notes: list[str] = field(default_factory=list)


def _flatten(result: Any) -> Iterable[Any]:
    if result is None:
        return []
    if isinstance(result, (Volume, ProjectionImage)):
        return [result]
    if isinstance(result, dict):
        return list(result.values())
    for attr in ("images", "volumes", "series"):
        inner = getattr(result, attr, None)
        if inner is not None and not callable(inner):
            return _flatten(inner)
    try:
        out = []
        for item in result:
            out.extend(_flatten(item) if not isinstance(item, (Volume, ProjectionImage)) else [item])
        return out
    except TypeError:
        return []


def _loader() -> Any:
    try:
        mod = importlib.import_module("planner.imaging")
    except ImportError:
        return None
    return getattr(mod, "load_path", None)


def find_plan_images(plan: Plan, folder: Optional[os.PathLike | str] = None,
                     plan_path: Optional[os.PathLike | str] = None) -> FoundImages:
    """Load the plan's series from ``folder`` (or the path hints when no folder is given; relative hints
    are taken from the folder of ``plan_path``)."""
    found = FoundImages()
    load = _loader()
    wanted = {ref.series_instance_uid: ref for ref in plan.case.series if ref.series_instance_uid}
    if load is None:
        found.notes.append("Image loading is not available in this build; documents are built without images.")
        found.missing = [f"{r.role or r.modality} {r.description}".strip() for r in wanted.values()]
        return found
    places: list[Path] = []
    if folder is not None:
        places.append(Path(folder))
    else:
        for ref in wanted.values():
            if ref.path_hint:
                hint = Path(ref.path_hint)
                if not hint.is_absolute() and plan_path is not None:
                    hint = Path(plan_path).resolve().parent / hint
                hint = hint if hint.is_dir() else hint.parent
                if hint.exists() and hint not in places:
                    places.append(hint)
    for place in places:
        if not place.exists():
            found.notes.append(f"Image folder {place} does not exist.")
            continue
        try:
            loaded = load(place)
        except Exception as exc:  # a damaged image must not stop the documents
            found.notes.append(f"Images in {place} could not be read: {exc}")
            continue
        for img in _flatten(loaded):
            uid = img.info.series_instance_uid
            if uid and (uid in wanted or not wanted) and uid not in found.images:
                found.images[uid] = img
    for uid, ref in wanted.items():
        if uid not in found.images:
            found.missing.append(f"{ref.role or ref.modality} {ref.description}".strip() or uid)
    if found.missing:
        found.notes.append("Series not found: " + ", ".join(found.missing) + ".")
    return found
