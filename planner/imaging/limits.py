"""The budgets of an import: memory, time and bytes (technical parameters, not clinical settings).

Every image's decoded size is known from its header before any pixel is decoded (DICOM Rows, Columns,
Samples per Pixel, Bits Allocated and the number of frames actually present in the file; the size
written inside each compressed frame must agree), and it is checked against :meth:`ImportLimits.memory_budget`
before anything is allocated or any decoder runs. Decoders run in worker processes that are killed at
:attr:`ImportLimits.time_limit_s` (or when the import is cancelled) and whose memory is capped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


def physical_memory() -> Optional[int]:
    """The computer's memory in bytes, None where unknown."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory() -> Optional[int]:
    """Memory available for new allocations in bytes (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class ImportLimits:
    """Budgets of one import. The defaults suit a planning workstation; tests and benchmarks pass others."""

    #: Largest decoded image accepted, as a fraction of the computer's memory (one image; an import
    #: holds several, each checked against the memory then available too).
    memory_fraction: float = 0.5
    #: The same as an absolute number of bytes (used instead of the fraction when set).
    memory_bytes: Optional[int] = None
    #: Seconds one file may take to decode; the worker process decoding it is killed after that.
    time_limit_s: float = 60.0
    #: Seconds and bytes one file's header may take with the general DICOM reader (the fast header
    #: parser is bounded by the file size and an element count).
    header_time_limit_s: float = 10.0
    header_max_bytes: int = 16 * 1024 * 1024

    def memory_budget(self) -> int:
        """Bytes one decoded image may take."""
        if self.memory_bytes is not None:
            return int(self.memory_bytes)
        total = physical_memory() or 8 * 1024 ** 3
        return int(total * self.memory_fraction)

    def check_image(self, need_bytes: int, what: str) -> Optional[str]:
        """Why an image of ``need_bytes`` is not loaded (over the budget or the free memory), or None."""
        budget = self.memory_budget()
        if need_bytes > budget:
            return (f"{what} needs {need_bytes / 2 ** 30:.2f} GiB decoded, more than the import's memory budget "
                    f"of {budget / 2 ** 30:.2f} GiB")
        avail = available_memory()
        if avail is not None and need_bytes > 0.8 * avail:
            return (f"{what} needs {need_bytes / 2 ** 30:.2f} GiB but only {avail / 2 ** 30:.2f} GiB of memory "
                    "is free")
        return None


DEFAULT_LIMITS = ImportLimits()


class ReadStopped(Exception):
    """A read stopped by :meth:`ReadContext.check`: ``cancelled`` or over its time limit."""

    def __init__(self, reason: str, cancelled: bool) -> None:
        super().__init__(reason)
        self.cancelled = cancelled


@dataclass
class ReadContext:
    """What a long read polls between chunks: the import's cancel event and its deadline."""

    limits: ImportLimits = DEFAULT_LIMITS
    cancel: object = None
    deadline: float = float("inf")

    @classmethod
    def start(cls, limits: ImportLimits, cancel: object = None) -> "ReadContext":
        import time

        return cls(limits, cancel, time.monotonic() + limits.time_limit_s)

    def check(self) -> None:
        import time

        is_set = getattr(self.cancel, "is_set", None)
        if is_set is not None and is_set():
            raise ReadStopped("cancelled", True)
        if time.monotonic() > self.deadline:
            raise ReadStopped(f"reading took longer than {self.limits.time_limit_s:.0f} s (damaged or unsupported "
                              "data, or a stalled drive)", False)
