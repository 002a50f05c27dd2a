"""A fluoroscopy panel: the :class:`planner.views.fluoro_view.FluoroView` with its guidance bar above
(what it shows, the level to mark, the Mark button, the instruction or fit result) and its cine
controls below (play/pause, frame slider)."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget

from planner.display.fluoro import GUIDED_MARKS, MARK_SHORT
from planner.views.context import ViewContext
from planner.views.fluoro_view import FluoroView


class GuidanceBar(QWidget):
    """Above a fluoroscopy view: what it shows (the C-arm image or a virtual projection of a volume),
    the level to mark, the Mark button, and the current instruction or fit result."""

    def __init__(self, view: FluoroView, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("guidanceBar")
        self.view = view
        self.session = view.session
        self.source_combo = QComboBox(self)
        self.source_combo.setObjectName("sourceCombo")
        self.source_combo.setToolTip("What this view shows: the C-arm image, or a virtual projection of a volume "
                                     "with the plan drawn in")
        self.source_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.level_combo = QComboBox(self)
        self.level_combo.setObjectName("levelCombo")
        self.level_combo.setToolTip("The vertebra whose landmarks you mark on this image")
        self.mark_button = QToolButton(self)
        self.mark_button.setObjectName("markButton")
        self.mark_button.setText("Mark")
        self.mark_button.setCheckable(True)
        self.prompt = QLabel(self)
        self.prompt.setObjectName("guidancePrompt")
        self.prompt.setTextFormat(Qt.TextFormat.PlainText)
        self.prompt.setMinimumWidth(40)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(4)
        lay.addWidget(self.source_combo)
        lay.addWidget(self.level_combo)
        lay.addWidget(self.mark_button)
        lay.addWidget(self.prompt, 1)
        self._syncing = False
        self._stale = False
        self._items: list = []
        self._levels: list = []
        self.source_combo.activated.connect(self._on_source_chosen)
        self.level_combo.activated.connect(self._on_level_chosen)
        self.mark_button.clicked.connect(self._on_mark_clicked)
        view.guidance_changed.connect(self.sync)
        self.sync()

    # ------------------------------------------------------------------ user actions
    def _on_source_chosen(self, idx: int) -> None:
        data = self.source_combo.itemData(idx)
        if not data:
            return
        kind, key = data
        if kind == "image":
            self.view.show_carm(user=True)
        else:
            self.view.show_virtual(key, user=True)

    def _on_level_chosen(self, idx: int) -> None:
        lid = self.level_combo.itemData(idx)
        if lid:
            self.view.set_guidance_level(lid, user=True)

    def _on_mark_clicked(self, checked: bool) -> None:
        if checked:
            self.view.start_marking()
        else:
            self.view.stop_marking(cancelled=True)
        self.sync()

    # ------------------------------------------------------------------ state
    def showEvent(self, ev):  # noqa: N802
        super().showEvent(ev)
        if self._stale:
            self.sync()

    def sync(self) -> None:
        """Follow the view; while hidden (another layout is shown) only remember to do it when shown,
        so edits elsewhere (e.g. dragging a trajectory in the planning layout) pay nothing here."""
        if self._syncing:
            return
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        self._syncing = True
        try:
            self._sync_sources()
            self._sync_levels()
            v = self.view
            can, why = v.can_mark()
            self.mark_button.setEnabled(can or v.marking is not None)
            self.mark_button.setChecked(v.marking is not None)
            lv = v.guidance_level_name()
            self.mark_button.setText(f"Mark {lv}" if lv else "Mark")
            self.mark_button.setToolTip(
                (f"Click the landmarks of {lv or 'the level'} on this image, one after the other "
                 f"({', '.join(MARK_SHORT.get(k, k) for k in GUIDED_MARKS[v.effective_view()])}); "
                 "the plan is then drawn as it should appear on the C-arm. Drag a mark to move it, "
                 "Del or the right-click menu deletes it") if can else why)
            self.level_combo.setEnabled(v.showing_carm() and self.level_combo.count() > 0)
            text, _warn = v.guidance_text()
            self.prompt.setText(text)
            self.prompt.setToolTip(text)
        finally:
            self._syncing = False

    def _sync_sources(self) -> None:
        v = self.view
        items: list[tuple[str, Any]] = []
        carm = v.carm_image
        if carm is not None:
            items.append((f"C-arm: {carm.info.series_description or 'image'}", ("image", v.series_key)))
        else:
            items.append(("C-arm image (none loaded)", None))
        for key, vol in v.virtual_sources():
            items.append((f"Virtual from {vol.info.series_description or key[-8:]}", ("virtual", key)))
        current = ("virtual", v.virtual_key) if v.virtual_key else ("image", v.series_key)
        sel = next((i for i, (_t, data) in enumerate(items) if data == current), 0)
        self.source_combo.blockSignals(True)
        if items != self._items:
            self._items = items
            self.source_combo.clear()
            for i, (text, data) in enumerate(items):
                self.source_combo.addItem(text, data)
                if data is None:
                    item = self.source_combo.model().item(i)
                    if item is not None:
                        item.setEnabled(False)
        self.source_combo.setCurrentIndex(sel)
        self.source_combo.blockSignals(False)

    def _sync_levels(self) -> None:
        plan = self.session.document.plan
        levels = [(lv.name + (" \u2605" if lv.treat else ""), lv.id) for lv in plan.levels]
        lid = self.view.guidance_level_id()
        sel = next((i for i, (_t, x) in enumerate(levels) if x == lid), -1)
        self.level_combo.blockSignals(True)
        if levels != self._levels:
            self._levels = levels
            self.level_combo.clear()
            for text, x in levels:
                self.level_combo.addItem(text, x)
        self.level_combo.setCurrentIndex(sel)
        self.level_combo.blockSignals(False)


class FluoroPanel(QWidget):
    """A fluoroscopy view with its guidance bar (source, level, Mark, instruction) and its cine
    controls (play/pause, frame slider)."""

    def __init__(self, context: ViewContext, series_key: Optional[str] = None, parent: Optional[QWidget] = None,
                 *, title: str = "Fluoroscopy") -> None:
        super().__init__(parent)
        self.view = FluoroView(context, series_key, self, title=title)
        self.guidance = GuidanceBar(self.view, self)
        self.play_button = QToolButton(self)
        self.play_button.setText("\u25b6")
        self.play_button.setToolTip("Play / pause the frames (cine). Shortcut: Space")
        self.play_button.clicked.connect(self.view.toggle_play)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setToolTip("Frame")
        self.slider.valueChanged.connect(self.view.set_frame)
        self.label = QLabel(self)
        self.label.setObjectName("frameLabel")
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.play_button)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.guidance)
        lay.addWidget(self.view, 1)
        self.controls = QWidget(self)
        self.controls.setObjectName("cineBar")
        self.controls.setLayout(bar)
        lay.addWidget(self.controls)
        self.view.frame_changed.connect(self._sync)
        self.view.playing_changed.connect(self._sync_button)
        self.view.guidance_changed.connect(self._sync)
        self._sync()

    def set_series(self, key: Optional[str]) -> None:
        self.view.set_series(key)
        self._sync()

    def _sync(self, *_):
        img = self.view.image
        n = img.n_frames if img is not None else 1
        self.controls.setVisible(n > 1)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(self.view.frame_index)
        self.slider.blockSignals(False)
        self.label.setText(f"{self.view.frame_index + 1}/{n}")
        self._sync_button()

    def _sync_button(self):
        self.play_button.setText("\u23f8" if self.view.playing else "\u25b6")
