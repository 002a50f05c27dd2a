"""Plans that live in the PACS: the plan structured reports (SR) this application exports are found
among a study's series (:func:`is_plan_series`) and retrieved like any series (:func:`fetch_plan`),
with the same completeness and patient checks. Turning the SR into a plan is
:func:`planner.export.sr.import_plan_from_sr`; :mod:`planner.pacs_plan` does both and finds the plan's
images (local cache first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydicom import dcmread

from planner.imaging.pacs.common import CancelLike, PacsError, ProgressFn, SeriesMatch

#: The Series Description of the plan SR series (written by planner.export.sr).
PLAN_SR_SERIES_DESCRIPTION = "BVN ablation plan (SR)"


def is_plan_series(series: SeriesMatch) -> bool:
    return series.modality == "SR" and series.description == PLAN_SR_SERIES_DESCRIPTION


def fetch_plan(node: Any, study_uid: str, series_uid: str, folder: Path, *, patient_id: Optional[str] = None,
               progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> Path:
    """Retrieve one plan SR series into ``folder``; the path of its newest SR (raises PacsError)."""
    from planner.imaging import pacs

    result = pacs.retrieve(node, study_uid, [series_uid], dest_folder=folder, patient_id=patient_id,
                           progress=progress, cancel=cancel)
    if result.cancelled:
        raise pacs.PacsCancelled("Retrieving the plan was cancelled.")
    if not result.files:
        raise PacsError(f"The plan could not be retrieved: {result.summary()}")

    def key(path: Path) -> tuple:
        ds = dcmread(str(path), stop_before_pixels=True)
        return (str(ds.get("ContentDate", "")), str(ds.get("ContentTime", "")), int(ds.get("InstanceNumber", 0) or 0))

    return max(result.files, key=key)


def find_plans(node: Any, study_uid: str, cancel: CancelLike = None) -> list[SeriesMatch]:
    """The plan series of a study, oldest first (by series number, then UID)."""
    from planner.imaging import pacs

    return [s for s in pacs.find_series(node, study_uid, cancel=cancel) if is_plan_series(s)]
