"""Opening a plan that lives in the PACS: its structured report (SR) is found in the study and retrieved
(:mod:`planner.imaging.pacs.plans`), turned back into the plan (:func:`planner.export.sr.import_plan_from_sr`),
and the plan's images are found by UID, in the local retrieve cache first, then retrieved from the PACS
(with the plan's patient as the one asked for). Headless; the window and ``main.py --pacs`` use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from planner.export.sr import import_plan_from_sr
from planner.imaging.pacs import PacsError, RetrieveResult, retrieve
from planner.imaging.pacs.cache import cached_series, new_cache_folder
from planner.imaging.pacs.common import CancelLike, ProgressFn, _report
from planner.imaging.pacs.plans import fetch_plan, find_plans
from planner.plan import Plan


def open_plan_from_pacs(node: Any, study_uid: str, series_uid: Optional[str] = None, *,
                        patient_id: Optional[str] = None, cache: Optional[Path] = None,
                        progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> tuple[Plan, Path]:
    """The plan of ``study_uid`` (its newest plan series, or ``series_uid``) and the SR it came from."""
    if series_uid is None:
        plans = find_plans(node, study_uid, cancel=cancel)
        if not plans:
            raise PacsError(f"{node.label} has no plan of this application in the study.")
        series_uid = plans[-1].series_uid
    folder = new_cache_folder(cache)
    path = fetch_plan(node, study_uid, series_uid, folder, patient_id=patient_id, progress=progress, cancel=cancel)
    return import_plan_from_sr(path), path


@dataclass
class PlanImageFolders:
    #: folders holding the plan's series (cache hits and new retrieves)
    folders: list[Path] = field(default_factory=list)
    #: series found in the cache (no network)
    cached: list[str] = field(default_factory=list)
    results: list[RetrieveResult] = field(default_factory=list)

    def message(self) -> str:
        return " ".join(r.summary() for r in self.results if not r.ok)


def plan_image_folders(plan: Plan, node: Optional[Any] = None, *, cache: Optional[Path] = None,
                       progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> PlanImageFolders:
    """Where the plan's series are: the local cache first, then (with ``node``) retrieved by UID."""
    out = PlanImageFolders()
    uids = [r.series_instance_uid for r in plan.case.series if r.series_instance_uid]
    hits = cached_series(uids, cache)
    out.cached = list(hits)
    out.folders = list(dict.fromkeys(hits.values()))
    missing = [u for u in uids if u not in hits]
    if missing and node is not None:
        if not plan.case.study_instance_uid:
            raise PacsError("The plan does not record its study, so its images cannot be asked for by UID.")
        _report(progress, 0.0, f"Retrieving {len(missing)} series of the plan from {node.display_name}...")
        result = retrieve(node, plan.case.study_instance_uid, missing, dest_folder=new_cache_folder(cache),
                          patient_id=plan.case.patient_id or None, progress=progress, cancel=cancel)
        out.results.append(result)
        if result.files:
            out.folders.append(result.folder)
    return out
