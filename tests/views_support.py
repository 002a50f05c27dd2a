"""Synthetic images with exactly known geometry for the view tests (no patient data)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from planner.document import PlanDocument
from planner.imaging.volume import ImageInfo, ProjectionGeometry, ProjectionImage, Volume, WindowLevel, make_ijk_to_lps
from planner.plan import Plan, SeriesRef
from planner.session import Session

FOR_UID = "1.2.826.0.1.3680043.10.999.1"


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def sagittal_volume(*, nk: int = 16, nj: int = 120, ni: int = 100, spacing=(1.0, 1.0, 4.0), tilt_deg: float = 0.0,
                    desc: str = "SAG T2", uid: str = "1.2.3.100", for_uid: str = FOR_UID, seed: int = 0,
                    header_window: Optional[WindowLevel] = None, dtype=np.int16) -> Volume:
    """A sagittal stack: columns (i) run anterior -> posterior, rows (j) superior -> inferior, slices
    (k) right -> left; optionally tilted about the patient's left-right axis by ``tilt_deg``.
    Pixel values: bright blocks ("bodies") every 30 mm plus a ramp, so windowing is visible."""
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: i=P, j=I, k=L
    direction = rot_x(tilt_deg) @ direction
    size = np.array([ni, nj, nk], dtype=float)
    center = np.zeros(3)
    origin = center - direction @ ((size - 1) / 2 * np.asarray(spacing, dtype=float))
    m = make_ijk_to_lps(origin, direction, spacing)
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[0:nk, 0:nj, 0:ni]
    arr = 100 + 2 * i + rng.integers(0, 30, size=(nk, nj, ni))
    arr = arr + 600 * (((j // 30) % 2 == 0) & (i > 20) & (i < 60))
    arr = arr + 300 * (np.abs(k - nk // 2) <= 1) * (i > 70)
    info = ImageInfo(modality="MR", series_instance_uid=uid, frame_of_reference_uid=for_uid,
                     series_description=desc, series_number=3, patient_name="Test^Patient", patient_id="TP-1",
                     study_date="20240102", key=uid)
    if header_window is not None:
        info.header_windows.append(header_window)
    return Volume(arr.astype(dtype), m, info)


def projection(*, rows: int = 200, cols: int = 240, n_frames: int = 1, imager_spacing=(0.3, 0.3),
               uid: str = "1.2.3.900", sop: str = "1.2.3.900.1", desc: str = "AP", view_position: str = "AP",
               orientation=("L", "F")) -> ProjectionImage:
    r, c = np.mgrid[0:rows, 0:cols]
    frames = np.stack([(500 + 3 * c + 200 * ((r // 40) % 2) + 40 * f).astype(np.uint16) for f in range(n_frames)])
    geo = ProjectionGeometry(imager_pixel_spacing=imager_spacing, view_position=view_position,
                             patient_orientation=tuple(orientation))
    info = ImageInfo(modality="RF", series_instance_uid=uid, series_description=desc, sop_instance_uids=[sop], key=uid)
    return ProjectionImage(frames, geo, info, frame_time_ms=100.0)


def session_with(*images: tuple[str, object, str], plan: Optional[Plan] = None) -> Session:
    """A Session holding ``(key, image, role)`` triples, with the roles recorded in the plan."""
    plan = plan or Plan()
    plan.case.series = [SeriesRef(series_instance_uid=key, role=role, modality=img.info.modality)
                        for key, img, role in images if role]
    session = Session(PlanDocument(plan, user="tester"))
    for key, img, _role in images:
        session.add_image(key, img)
    return session


# ---------------------------------------------------------------------- driving widgets
def send_mouse(widget, kind: str, pos, button=None, modifiers=None, buttons=None) -> None:
    """Send a real QMouseEvent (press/move/release/double) with modifiers, as a user's mouse would."""
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    types = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease, "double": QEvent.Type.MouseButtonDblClick}
    button = button if button is not None else Qt.MouseButton.NoButton
    modifiers = modifiers if modifiers is not None else Qt.KeyboardModifier.NoModifier
    if buttons is None:
        buttons = button if kind in ("press", "double") else Qt.MouseButton.NoButton
    p = QPointF(*pos) if not isinstance(pos, QPointF) else pos
    ev = QMouseEvent(types[kind], p, widget.mapToGlobal(p), button if kind != "move" else Qt.MouseButton.NoButton,
                     buttons, modifiers)
    QApplication.sendEvent(widget, ev)


def drag(widget, start, end, button, modifiers=None, steps: int = 5) -> None:
    send_mouse(widget, "press", start, button, modifiers)
    for t in range(1, steps + 1):
        p = (start[0] + (end[0] - start[0]) * t / steps, start[1] + (end[1] - start[1]) * t / steps)
        send_mouse(widget, "move", p, None, modifiers, buttons=button)
    send_mouse(widget, "release", end, button, modifiers)


def click(widget, pos, button=None, modifiers=None) -> None:
    from PySide6.QtCore import Qt

    button = button or Qt.MouseButton.LeftButton
    send_mouse(widget, "press", pos, button, modifiers)
    send_mouse(widget, "release", pos, button, modifiers)


def wheel(widget, pos, steps: int, modifiers=None) -> None:
    """``steps`` > 0 rolls the wheel away from the user (forward), < 0 towards the user."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    modifiers = modifiers if modifiers is not None else Qt.KeyboardModifier.NoModifier
    p = QPointF(*pos)
    ev = QWheelEvent(p, widget.mapToGlobal(p), QPoint(0, 0), QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                     modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def key(widget, qt_key, modifiers=None) -> None:
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    modifiers = modifiers if modifiers is not None else Qt.KeyboardModifier.NoModifier
    QApplication.sendEvent(widget, QKeyEvent(QEvent.Type.KeyPress, qt_key, modifiers))
    QApplication.sendEvent(widget, QKeyEvent(QEvent.Type.KeyRelease, qt_key, modifiers))


class ScriptedPrompter:
    """Answers the file controller's questions without modal dialogs (tests)."""

    def __init__(self, save_changes: str = "discard") -> None:
        self.save_changes = save_changes
        self.errors: list[tuple[str, str]] = []

    def ask_save_changes(self, name: str) -> str:
        return self.save_changes

    def ask_save_path(self, suggestion: str):
        return None

    def ask_open_path(self):
        return None

    def error(self, title: str, text: str) -> None:
        self.errors.append((title, text))

    def ask_recover(self, orphan) -> str:
        return "later"

    #: The answer to "these images are of another patient" (the dialog's default: a new window).
    other_patient = "window"

    def ask_other_patient(self, current: str, other: str, can_replace: bool) -> str:
        self.__dict__.setdefault("other_patient_asked", []).append((current, other, can_replace))
        return self.other_patient


class ScriptedMissingPrompter:
    """Answers the missing-series question (default: continue without); records what was asked."""

    def __init__(self, answer: str = "ignore", folder=None, node: int = 0) -> None:
        self.answer, self.folder, self.node = answer, folder, node
        self.asked: list[str] = []

    def ask_missing(self, text: str, pacs_available: bool) -> str:
        self.asked.append(text)
        return self.answer

    def ask_folder(self):
        return self.folder

    def choose_node(self, labels):
        return self.node


def wait_plan_images(qtbot, w, timeout: int = 60000) -> None:
    """Wait until the window has finished looking for an opened plan's images (a background task)."""
    qtbot.waitUntil(lambda: not w.plan_images.busy(), timeout=timeout)


def open_window(qtbot, session, layout: str = "planning", size=(1400, 900)):
    """The real main window on ``session``, shown, with scripted answers to its questions."""
    from planner.views.main_window import MainWindow

    w = MainWindow(session, initial_layout=layout)
    w.files.prompter = ScriptedPrompter()
    w.plan_images.prompter = ScriptedMissingPrompter()
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()  # keyboard shortcuts go to the active window
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    return w
