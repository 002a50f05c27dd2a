"""PACS connectivity: verification, query, retrieve and send (DICOM DIMSE with pynetdicom, or DICOMweb).

Headless (no Qt). Public API::

    node = PacsNode(name="ORTHANC", ae_title="ORTHANC", host="pacs.example.org", port=4242,
                    calling_ae="BVNPLANNER")
    echo(node)                                         # seconds for a C-ECHO round trip
    studies = find_studies(node, patient_id="123", study_date="20240101-20240131", modality="MR")
    series = find_series(node, studies[0].study_uid)
    found = find_series_by_uid(node, ["1.2.3", "1.2.4"])          # relink a plan's images by UID
    result = retrieve(node, study_uid, [s.series_uid for s in series], dest_folder="/cache/x",
                      method="C-GET", progress=cb, cancel=event)  # result.folder -> load_path()
    sent = store(node, ["PDF00001.dcm", "SR00001.dcm"])           # exports into the PACS

    nodes = load_nodes(); save_nodes(nodes)            # the user's configured nodes (JSON)

Layout: :mod:`.nodes` (configuration and :func:`backend_for`, the one place that chooses the protocol),
:mod:`.backend` (the interface), :mod:`.dimse` and :mod:`.dicomweb` (the two implementations),
:mod:`.common` (errors, results, helpers). The functions here never branch on the protocol.

Every failure is a :class:`PacsError` whose message names the node and the problem (connection
refused, association rejected or aborted, a timeout, a failure status), or, for a retrieve or a send
that went partly wrong, a result whose ``problems`` say what is missing. Every network call has a
timeout. ``cancel`` is anything with ``is_set()`` (a ``threading.Event``) or a callable returning
True; a cancelled retrieve returns promptly with what was complete (``cancelled=True``).

Retrieved objects are written as DICOM files with file meta (the bytes as sent, no re-encoding) to
``dest_folder/<Series Instance UID>/<SOP Instance UID>.dcm``; nothing is half-written (temporary
file and rename). Logs carry counts, node names and statuses only: never patient names, IDs or
birth dates (those found by a query are also registered with :mod:`planner.logsafe`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from planner.imaging.pacs.common import (  # noqa: F401 (public names)
    DICOMWEB,
    DIMSE,
    ENGINES,
    METHODS,
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
    CancelLike,
    MatchList,
    PacsCancelled,
    PacsError,
    ProgressFn,
    RetrieveResult,
    SeriesMatch,
    StoreResult,
    StudyMatch,
    _is_cancelled,
    _register_identifiers,
    _report,
    date_range,
    finish_retrieve,
    log,
    missing_series,
    display_text,
    name_pattern,
    valid_matches,
    valid_uid,
)
from planner.imaging.pacs.nodes import PacsNode, backend_for, load_nodes, nodes_path, save_nodes  # noqa: F401


def echo(node: PacsNode, cancel: CancelLike = None) -> float:
    """Test the node as it will be used: C-ECHO and a real C-FIND with the configured AE titles (or a
    QIDO-RS query on the study root with the configured user); each failure named. The round trip in
    seconds; raises :class:`PacsError` (:class:`PacsCancelled` when cancelled)."""
    return backend_for(node).echo(cancel)


def find_studies(node: PacsNode, patient_id: Optional[str] = None, patient_name: Optional[str] = None,
                 study_date: Any = None, accession: Optional[str] = None, modality: Optional[str] = None, *,
                 study_uid: Optional[str] = None, max_results: int = 500, cancel: CancelLike = None) -> MatchList:
    """Studies matching the criteria (empty criteria match everything, up to ``max_results``).

    ``patient_name`` matches from the start (``SMITH`` finds ``SMITH^JOHN``; ``*`` and ``?`` are wildcards);
    ``study_date`` is a date or a range (see :func:`date_range`); ``modality`` is e.g. ``MR`` or ``MR\\CT``.
    No match gives an empty list, not an error.
    """
    keys = {k: "" for k in STUDY_RETURN_KEYS}
    keys.update(StudyInstanceUID=study_uid or "", PatientID=(patient_id or "").strip(),
                PatientName=name_pattern(patient_name), StudyDate=date_range(study_date),
                AccessionNumber=(accession or "").strip(), ModalitiesInStudy=(modality or "").strip().upper())
    studies = backend_for(node).find_studies(keys, max_results, cancel)
    truncated = studies.truncated
    studies = MatchList(valid_matches(studies, "study_uid"))
    studies.truncated = truncated
    _register_identifiers(studies)
    log.info("C-FIND studies on %s: %d match(es)%s", node.label, len(studies),
             " (truncated)" if studies.truncated else "")
    return studies


def find_series(node: PacsNode, study_uid: str, *, max_results: int = 2000, cancel: CancelLike = None) -> MatchList:
    """The series of one study (empty when the PACS does not have the study)."""
    if not study_uid:
        raise PacsError("No Study Instance UID was given for the series query.")
    keys = {k: "" for k in SERIES_RETURN_KEYS}
    keys.update(StudyInstanceUID=study_uid, SeriesInstanceUID="")
    out = MatchList(valid_matches(backend_for(node).find_series(study_uid, keys, max_results, cancel), "series_uid"))
    out.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    log.info("C-FIND series on %s: %d match(es)", node.label, len(out))
    return out


def find_series_by_uid(node: PacsNode, series_uids: Sequence[str], study_uid: Optional[str] = None, *,
                       cancel: CancelLike = None) -> MatchList:
    """The series among ``series_uids`` that the PACS has (in the order asked), to relink a plan's images.

    Asks the series of ``study_uid`` first when given (a plain hierarchical query every PACS answers), then
    the UIDs still missing with a series-level query across studies. UIDs the PACS does not have are simply
    absent from the result; see :func:`missing_series`.
    """
    wanted = [u.strip() for u in series_uids if u and u.strip()]
    found: dict[str, SeriesMatch] = {}
    if not wanted:
        return MatchList()
    if study_uid:
        for s in find_series(node, study_uid, cancel=cancel):
            if s.series_uid in wanted:
                found[s.series_uid] = s
    rest = [u for u in wanted if u not in found]
    if rest:
        for s in backend_for(node).find_series_by_uids(rest, cancel):
            if s.series_uid in rest:
                found[s.series_uid] = s
    out = MatchList(found[u] for u in wanted if u in found)
    log.info("series lookup on %s: %d of %d found", node.label, len(out), len(wanted))
    return out


def retrieve(node: PacsNode, study_uid: str, series_uids: Optional[Sequence[str]] = None, *,
             dest_folder: Union[str, os.PathLike], method: Optional[str] = None, patient_id: Optional[str] = None,
             progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> RetrieveResult:
    """Retrieve a study, or some of its series, into ``dest_folder`` (C-GET, C-MOVE or WADO-RS).

    ``patient_id`` names the patient the study is asked for (as the search showed it or the plan records
    it); every object of another patient or study is rejected and reported. Without it, a study the PACS
    holds under several patients is not retrieved. A series that arrives short is reported in
    ``result.incomplete`` and kept beside ``dest_folder``, never in it; retrieving into the same folder
    again fetches only what is missing.

    Returns a :class:`RetrieveResult` (also when cancelled or partly failed: see ``problems``); raises
    :class:`PacsError` when the PACS cannot be used at all (connection, association, query refused).
    """
    backend = backend_for(node)
    method = (method or backend.default_method()).upper()
    if method not in backend.methods:
        raise PacsError(f"{node.label} cannot retrieve by '{method}' (use {' or '.join(backend.methods)}).")
    if not study_uid:
        raise PacsError("No Study Instance UID was given for the retrieve.")
    bad = [u for u in [study_uid, *(series_uids or [])] if not valid_uid(u)]
    if bad:
        raise PacsError(f"'{display_text(bad[0], 70)}' is not a valid DICOM UID; nothing was retrieved.")
    folder = Path(dest_folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PacsError(f"The folder {folder} for the retrieved images cannot be created: "
                        f"{exc.strerror or exc}.") from None
    result = RetrieveResult(node_label=node.label, folder=folder, method=method, patient_id=(patient_id or "").strip())
    t0 = time.monotonic()
    backend.retrieve(study_uid, series_uids, result, progress, cancel)
    result.seconds = time.monotonic() - t0
    return finish_retrieve(node.label, result)


def fetch_series_by_uid(node: PacsNode, series_uids: Sequence[str], dest_folder: Union[str, os.PathLike], *,
                        study_uid: Optional[str] = None, patient_id: Optional[str] = None,
                        progress: Optional[ProgressFn] = None,
                        cancel: CancelLike = None) -> tuple[list[RetrieveResult], list[str]]:
    """Find the plan's series by UID and retrieve those the PACS has; returns (results, missing UIDs)."""
    matches = find_series_by_uid(node, series_uids, study_uid, cancel=cancel)
    by_study: dict[str, list[str]] = {}
    for m in matches:
        by_study.setdefault(m.study_uid, []).append(m.series_uid)
    results = []
    for i, (study, uids) in enumerate(by_study.items()):
        if _is_cancelled(cancel):
            break
        n = len(by_study)

        def sub(f: float, msg: str, i: int = i) -> None:
            _report(progress, (i + f) / n, msg)

        results.append(retrieve(node, study, uids, dest_folder=dest_folder, patient_id=patient_id, progress=sub,
                                cancel=cancel))
    return results, missing_series(series_uids, matches)


def store(node: PacsNode, files: Sequence[Union[str, os.PathLike]], progress: Optional[ProgressFn] = None,
          cancel: CancelLike = None) -> StoreResult:
    """Send DICOM files (e.g. the exported Encapsulated PDF, Secondary Captures and SR) to the PACS.

    Returns a :class:`StoreResult` with each file sent or failed (and why); raises :class:`PacsError` when
    the PACS cannot be used at all.
    """
    backend = backend_for(node)
    result = StoreResult(node_label=node.label)
    return backend.store([Path(f) for f in files], result, progress, cancel)
