"""The base of the side panels (levels, trajectories, eligibility, review): the ``message`` signal the
main window shows in its status bar, edits that turn a refused edit into that message, and refreshes
that wait while the panel is a hidden tab (so drags in the views stay fast)."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget

from planner.document import PlanEditError
from planner.views.lifecycle import ModelWidget


class PlanPanel(ModelWidget, QWidget):
    """Subclasses set ``self.session``, subscribe to the model with ``self.subscribe`` and implement
    ``refresh()`` (the life cycle: :class:`planner.views.lifecycle.ModelWidget`)."""

    #: A short message for the status bar (for example why an edit was refused).
    message = Signal(str)

    @property
    def document(self):
        return self.session.document

    def _edit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run an edit method of the document; a refused edit becomes a message. True when applied."""
        try:
            fn(*args, **kwargs)
        except PlanEditError as exc:
            self.message.emit(str(exc))
            return False
        return True

    def refresh(self) -> None:
        raise NotImplementedError

    def is_shown(self) -> bool:
        """True when the panel is on screen: visible and not behind another tab (a dock in a
        background tab stays "visible" but has nothing on screen)."""
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def refresh_when_visible(self) -> None:
        """Refresh now, or when shown if the panel is a hidden tab of a visible window."""
        if self.closed:
            return
        if self.window().isVisible() and not self.is_shown():
            self._stale = True
            return
        self.refresh()

    def refresh_if_stale(self) -> None:
        """Catch up on the changes that arrived while the panel was hidden (its tab was raised)."""
        if getattr(self, "_stale", False) and not self.closed:
            self._stale = False
            self.refresh()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().showEvent(event)
        self.refresh_if_stale()
