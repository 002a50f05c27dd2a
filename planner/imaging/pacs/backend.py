"""The one interface every PACS protocol implements (DIMSE in :mod:`.dimse`, DICOMweb in :mod:`.dicomweb`).

A backend is made for one node by :func:`planner.imaging.pacs.nodes.backend_for` (the only place that
looks at ``node.protocol``); the public functions of :mod:`planner.imaging.pacs` call it and never ask
which protocol they talk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional, Sequence

from planner.imaging.pacs.common import CancelLike, MatchList, ProgressFn, RetrieveResult, StoreResult


class PacsBackend(ABC):
    """Echo, query, retrieve and send for one node. Every method raises :class:`PacsError` with a message
    naming the node and the problem when the PACS cannot be used at all."""

    #: the protocol name (``DIMSE`` or ``DICOMweb``)
    protocol: str = ""
    #: retrieve methods this backend offers
    methods: tuple[str, ...] = ()

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def label(self) -> str:
        return f"PACS {self.node.display_name} at {self.address()}"

    # ------------------------------------------------------------ configuration
    @staticmethod
    @abstractmethod
    def address_of(node: Any) -> str:
        """Where the node is (host:port or the URL without credentials), for messages."""

    def address(self) -> str:
        return self.address_of(self.node)

    @staticmethod
    @abstractmethod
    def config_problems(node: Any) -> list[str]:
        """What is wrong with the protocol-specific part of the node's settings."""

    def default_method(self) -> str:
        return self.methods[0]

    # ------------------------------------------------------------ operations
    @abstractmethod
    def echo(self, cancel: CancelLike = None) -> float:
        """Verify the connection and that this workstation may query; the round trip in seconds."""

    @abstractmethod
    def find_studies(self, keys: dict[str, Any], max_results: int, cancel: CancelLike = None) -> MatchList:
        """Study-level matches (:class:`StudyMatch`) for the attribute ``keys`` (empty value: return it)."""

    @abstractmethod
    def find_series(self, study_uid: Optional[str], keys: dict[str, Any], max_results: int,
                    cancel: CancelLike = None) -> MatchList:
        """Series-level matches (:class:`SeriesMatch`) of one study (or across studies when None)."""

    @abstractmethod
    def find_series_by_uids(self, series_uids: Sequence[str], cancel: CancelLike = None) -> MatchList:
        """The series among ``series_uids`` that the node has, in any study."""

    @abstractmethod
    def retrieve(self, study_uid: str, series_uids: Optional[Sequence[str]], result: RetrieveResult,
                 progress: Optional[ProgressFn], cancel: CancelLike) -> RetrieveResult:
        """Fetch the study (or the listed series) into ``result.folder``; fills and returns ``result``."""

    @abstractmethod
    def store(self, paths: Sequence[Path], result: StoreResult, progress: Optional[ProgressFn],
              cancel: CancelLike) -> StoreResult:
        """Send DICOM files; fills and returns ``result``."""
