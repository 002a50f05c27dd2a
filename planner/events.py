"""A minimal, Qt-free signal/slot mechanism for the headless model.

Views connect in their constructors and disconnect when they close (see docs/architecture.md).
A slot that raises is logged and does not stop the other slots or the edit that emitted.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


class Signal:
    """A list of callables invoked in connection order by :meth:`emit`."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._slots: list[Callable[..., Any]] = []
        self._blocked = 0

    def connect(self, slot: Callable[..., Any]) -> Callable[..., Any]:
        if slot not in self._slots:
            self._slots.append(slot)
        return slot

    def disconnect(self, slot: Callable[..., Any] | None = None) -> None:
        """Disconnect ``slot`` (or every slot when ``None``); unknown slots are ignored."""
        if slot is None:
            self._slots.clear()
        elif slot in self._slots:
            self._slots.remove(slot)

    @property
    def receiver_count(self) -> int:
        return len(self._slots)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1

    def emit(self, *args: Any, **kwargs: Any) -> None:
        if self._blocked:
            return
        for slot in list(self._slots):
            try:
                slot(*args, **kwargs)
            except Exception:  # a broken view must not break the model
                log.exception("slot %r of signal %s failed", getattr(slot, "__qualname__", slot), self.name)
