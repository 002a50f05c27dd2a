"""Cine playback of a fluoroscopy view's frames (play, pause, loop at the series' frame time).

Part of :class:`planner.views.fluoro_view.FluoroView` (a mixin: it uses the view's ``image``,
``frame_index``, ``set_frame`` and ``playing_changed``)."""

from __future__ import annotations

from PySide6.QtCore import QTimer


class CineMixin:
    def _init_cine(self) -> None:
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def play(self) -> None:
        if self.image is None or self.image.n_frames < 2 or self.closed:
            return
        interval = int(self.image.frame_time_ms or 100)
        self._timer.start(max(20, interval))
        self.playing_changed.emit(True)
        self.update()

    def stop(self) -> None:
        if self._timer.isActive():
            self._timer.stop()
            self.playing_changed.emit(False)
            self.update()

    def toggle_play(self) -> None:
        self.stop() if self.playing else self.play()

    def _advance(self) -> None:
        if self.closed or self.image is None:
            self._timer.stop()
            return
        nxt = (self.frame_index + 1) % self.image.n_frames
        self.set_frame(nxt)
