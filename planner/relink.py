"""Finding a plan's images again by their UIDs (on another workstation, days later).

A plan stores its series by Series Instance UID (``CaseInfo.series``), with file paths only as hints.
:func:`find_plan_images` scans the places given (a folder the user points to, or the path hints),
reads headers only, matches series by UID, decodes just the matching series, and says clearly which
series are missing. Series without a UID in their files (some anonymisers empty it) are matched by the
importer's stable key, which the plan stores in that case.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from planner.imaging.volume import ProjectionImage, Volume
from planner.plan import Plan, SeriesRef

log = logging.getLogger(__name__)

Image = Union[Volume, ProjectionImage]


def describe_series(ref: SeriesRef) -> str:
    parts = [p for p in (ref.role, ref.modality, ref.description) if p]
    label = " ".join(dict.fromkeys(parts)) or "series"
    return f"{label} (UID {ref.series_instance_uid})"


@dataclass
class RelinkResult:
    #: Found images by the plan's series UID.
    images: dict[str, Image] = field(default_factory=dict)
    #: The plan's series that were not found anywhere.
    missing: list[SeriesRef] = field(default_factory=list)
    #: Where each found series was read from.
    found_in: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False

    def message(self) -> str:
        """One paragraph for the user."""
        found = len(self.images)
        total = found + len(self.missing)
        if not self.missing:
            text = f"All {total} series of the plan were found." if total else "The plan lists no image series."
        else:
            text = (f"{found} of {total} series of the plan were found. Missing: "
                    + "; ".join(describe_series(r) for r in self.missing)
                    + ". Point to the folder (or PACS) that holds them to see them; the plan itself is complete.")
        if self.notes:
            text += " " + " ".join(self.notes)
        return text


def candidate_places(plan: Plan, plan_path: Optional[os.PathLike | str] = None) -> list[Path]:
    """Folders named by the plan's path hints (relative hints are taken from the plan's folder)."""
    places: list[Path] = []
    for ref in plan.case.series:
        if not ref.path_hint:
            continue
        hint = Path(ref.path_hint)
        if not hint.is_absolute() and plan_path is not None:
            hint = Path(plan_path).resolve().parent / hint
        hint = hint if hint.is_dir() else hint.parent
        if hint.exists() and hint not in places:
            places.append(hint)
    return places


def find_plan_images(plan: Plan, folders: Optional[Iterable[os.PathLike | str]] = None, *,
                     plan_path: Optional[os.PathLike | str] = None,
                     progress: Optional[Callable[[float, str], None]] = None,
                     cancel: Any = None) -> RelinkResult:
    """Find and load the plan's series. ``folders`` default to the plan's path hints."""
    from planner.imaging import load_series, scan_path

    result = RelinkResult()
    wanted = {ref.series_instance_uid: ref for ref in plan.case.series if ref.series_instance_uid}
    places = [Path(f) for f in folders] if folders else candidate_places(plan, plan_path)
    if not places and wanted:
        result.notes.append("The plan's image folders are not on this computer.")
    groups: dict[str, tuple[Any, str]] = {}
    n = max(len(places), 1)
    for i, place in enumerate(places):
        if not place.exists():
            result.notes.append(f"The folder {place} does not exist.")
            continue
        sub = None if progress is None else (lambda f, m, i=i: progress(0.5 * (i + f) / n, m))
        scanned = scan_path(place, progress=sub, cancel=cancel)
        if scanned.report.cancelled:
            result.cancelled = True
            break
        for key, group in scanned.groups.items():
            uid = group.info.series_instance_uid
            for candidate in (key, uid):
                if candidate and candidate in wanted and candidate not in groups:
                    groups[candidate] = (group, str(place))
    todo = list(groups.items())
    for j, (uid, (group, place)) in enumerate(todo):
        if result.cancelled:
            break
        if progress:
            progress(0.5 + 0.5 * j / max(len(todo), 1), f"Loading {describe_series(wanted[uid])}")
        try:
            image = load_series(group, cancel=cancel)
            if not image.info.modality and wanted[uid].modality:
                # a file without a modality tag (research NIfTI): the modality the plan was made with
                image.info.modality = wanted[uid].modality
            result.images[uid] = image
            result.found_in[uid] = place
        except Exception as exc:  # noqa: BLE001 - reported, the others still load
            if type(exc).__name__ == "ImportCancelled":
                result.cancelled = True
                break
            result.notes.append(f"{describe_series(wanted[uid])} was found in {place} but could not be read: {exc}.")
    result.missing = [ref for uid, ref in wanted.items() if uid not in result.images]
    if progress:
        progress(1.0, "Done")
    return result
