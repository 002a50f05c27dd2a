"""One life cycle for every widget that shows the model (panels, image canvases, the 3D view).

``subscribe(signal, slot)`` connects a slot to a model signal (:class:`planner.events.Signal`) or a Qt
signal and remembers it; ``shutdown()`` disconnects everything once, sets ``closed`` and then runs the
widget's own :meth:`ModelWidget.on_shutdown` (stop timers, finalise VTK); ``closeEvent`` calls
``shutdown()``. The main window calls ``shutdown()`` on each when it closes; a slot that arrives late
checks ``closed`` first (STYLE.md 2.4: views connect in their constructor, disconnect on close).

Mixed in before the Qt class: ``class SeriesPanel(ModelWidget, QWidget)``.
"""

from __future__ import annotations

from typing import Any, Callable


class ModelWidget:
    #: True once :meth:`shutdown` ran: slots do nothing, nothing renders.
    closed: bool = False

    def subscribe(self, signal: Any, slot: Callable[..., Any]) -> None:
        """Connect ``slot`` to ``signal`` until :meth:`shutdown`."""
        signal.connect(slot)
        self.__dict__.setdefault("_subscriptions", []).append((signal, slot))

    def shutdown(self) -> None:
        """Disconnect from the model (once), then :meth:`on_shutdown`."""
        if self.closed:
            return
        self.closed = True
        for signal, slot in reversed(self.__dict__.pop("_subscriptions", [])):
            try:
                signal.disconnect(slot)
            except RuntimeError:  # a Qt signal whose C++ object Qt has deleted already: nothing to disconnect
                pass
        self.on_shutdown()

    def on_shutdown(self) -> None:
        """What the widget stops besides its subscriptions (timers, render windows); runs once."""

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt naming)
        self.shutdown()
        super().closeEvent(event)  # type: ignore[misc]
