"""The working session: the open plan document, the loaded images and the shared cursor.

Headless: the GUI, the command line and the tests all use it. Views read images and the plan from
here and keep only display state (camera, zoom, current slice of their own).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np

from planner.document import PlanDocument
from planner.events import Signal
from planner.imaging.volume import ProjectionImage, Volume

Image = Union[Volume, ProjectionImage]


class Session:
    def __init__(self, document: Optional[PlanDocument] = None) -> None:
        self.document = document or PlanDocument()
        #: Loaded images by Series Instance UID (or a generated key for research files).
        self.images: dict[str, Image] = {}
        self._cursor_lps = np.zeros(3)
        #: Frame of Reference UID the cursor was last set in ("" = not tied to one).
        self.cursor_frame_of_reference_uid = ""
        #: Emitted with the new LPS position (np.ndarray) when the linked crosshair moves.
        self.cursor_moved = Signal("Session.cursor_moved")
        #: Emitted with the series key when images are added or removed.
        self.images_changed = Signal("Session.images_changed")
        #: Emitted with the key of the series the user selected as the main one.
        self.active_series_changed = Signal("Session.active_series_changed")
        #: Emitted with the trajectory id (or None) the user selected.
        self.active_trajectory_changed = Signal("Session.active_trajectory_changed")
        self.active_series: Optional[str] = None
        self.active_trajectory: Optional[str] = None

    # ---------------------------------------------------------------- images
    def add_image(self, key: str, image: Image, *, make_active: bool = False) -> None:
        self.images[key] = image
        self.images_changed.emit(key)
        if make_active or self.active_series is None and isinstance(image, Volume):
            self.set_active_series(key)

    def add_images(self, images: Mapping[str, Image], *, keep_existing: bool = False) -> int:
        """Add several images, volumes first (so the planning views have their series as soon as
        possible); with ``keep_existing`` keys already loaded are left alone. Returns how many were added."""
        added = 0
        for key in sorted(images, key=lambda k: 0 if isinstance(images[k], Volume) else 1):
            if keep_existing and key in self.images:
                continue
            self.add_image(key, images[key])
            added += 1
        return added

    def remove_image(self, key: str) -> None:
        if self.images.pop(key, None) is not None:
            self.images_changed.emit(key)
            if self.active_series == key:
                self.set_active_series(next((k for k, v in self.images.items() if isinstance(v, Volume)), None))

    def volumes(self) -> dict[str, Volume]:
        return {k: v for k, v in self.images.items() if isinstance(v, Volume)}

    def projections(self) -> dict[str, ProjectionImage]:
        return {k: v for k, v in self.images.items() if isinstance(v, ProjectionImage)}

    def volume_by_role(self, role: str) -> Optional[Volume]:
        """The volume the plan assigns ``role`` (T1, T2, STIR, AX_T2, CT) to, if loaded."""
        for ref in self.document.plan.case.series:
            if ref.role == role and isinstance(self.images.get(ref.series_instance_uid), Volume):
                return self.images[ref.series_instance_uid]  # type: ignore[return-value]
        return None

    def set_active_series(self, key: Optional[str]) -> None:
        if key != self.active_series:
            self.active_series = key
            self.active_series_changed.emit(key)

    @property
    def active_volume(self) -> Optional[Volume]:
        img = self.images.get(self.active_series) if self.active_series else None
        return img if isinstance(img, Volume) else None

    def linked_volumes(self, key: str) -> list[str]:
        """Keys of the volumes sharing the Frame of Reference of ``key`` (the crosshair links them)."""
        img = self.images.get(key)
        if img is None or not isinstance(img, Volume):
            return []
        for_uid = img.info.frame_of_reference_uid
        return [k for k, v in self.volumes().items() if k == key or (for_uid and v.info.frame_of_reference_uid == for_uid)]

    # ---------------------------------------------------------------- cursor
    @property
    def cursor_lps(self) -> np.ndarray:
        return self._cursor_lps.copy()

    def set_cursor(self, lps: Sequence[float], frame_of_reference_uid: Optional[str] = None) -> None:
        """Move the linked cursor. ``frame_of_reference_uid`` names the frame the point was picked in
        (views of volumes in another frame of reference do not follow); None or "" means any."""
        p = np.asarray(lps, dtype=float).reshape(3)
        if not np.all(np.isfinite(p)):
            return
        for_uid = frame_of_reference_uid or ""
        if not np.allclose(p, self._cursor_lps, atol=1e-9) or for_uid != self.cursor_frame_of_reference_uid:
            self._cursor_lps = p
            self.cursor_frame_of_reference_uid = for_uid
            self.cursor_moved.emit(p.copy())

    def set_active_trajectory(self, trajectory_id: Optional[str]) -> None:
        if trajectory_id != self.active_trajectory:
            self.active_trajectory = trajectory_id
            self.active_trajectory_changed.emit(trajectory_id)
