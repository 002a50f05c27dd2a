"""The one VTK bootstrap module of the GUI (STYLE.md 2.12, ../shared/stack.md sections 4 and 6).

* Selects PySide6 for ``vtkmodules.qt`` before ``QVTKRenderWindowInteractor`` is imported.
* Imports only the ``vtkmodules`` the views need (``import vtk`` loads everything and is slower).
* :class:`VtkWidget`: the Qt widget for a VTK render window. Under ``QT_QPA_PLATFORM=offscreen`` it
  gets a render window that ignores Qt's fake window id and renders offscreen (the stock widget
  renders black there and still exits 0). Under Xvfb or a real display it is the ordinary widget.
* Crash rules: every render path checks :attr:`VtkWidget.closed`; ``closeEvent`` sets it, runs the
  registered close callbacks (views unsubscribe from the model there), then calls ``Finalize()``.
  ``Render()`` is never called after close; a late model event cannot reach a dead render window.
* :func:`grab_with_vtk`: a window grab that contains the VTK pictures (``QWidget.grab()`` never
  does, because the VTK widget paints on screen): grab the Qt widgets, read every visible VTK
  frame with ``vtkWindowToImageFilter`` (back buffer), flip it and paint it over its widget.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Optional

import vtkmodules.qt

vtkmodules.qt.PyQtImpl = "PySide6"
if sys.platform == "darwin":  # pragma: no cover - macOS only (STYLE.md 2.12)
    vtkmodules.qt.QVTKRWIBase = "QOpenGLWidget"

# Register the OpenGL and interaction factories (render windows, mappers, interactor styles).
import vtkmodules.vtkInteractionStyle  # noqa: E402,F401
import vtkmodules.vtkRenderingFreeType  # noqa: E402,F401  (text actors)
import vtkmodules.vtkRenderingOpenGL2  # noqa: E402,F401
import numpy as np  # noqa: E402
from PySide6.QtCore import QPoint, QRect, Qt  # noqa: E402
from PySide6.QtGui import QImage, QPainter  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor  # noqa: E402
from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkWindowToImageFilter  # noqa: E402

log = logging.getLogger(__name__)


def load_volume_rendering() -> None:
    """Register the volume-rendering OpenGL classes; imported lazily (about 0.1 s) when the 3D view
    first shows a volume, so start-up does not pay for it."""
    import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401


def is_offscreen_platform() -> bool:
    app = QApplication.instance()
    name = app.platformName() if app is not None else os.environ.get("QT_QPA_PLATFORM", "")
    return name == "offscreen"


class _OffscreenRenderWindow(vtkRenderWindow):
    """A render window that ignores Qt's (fake) window id and renders offscreen (stack.md 4)."""

    def SetWindowInfo(self, info):  # noqa: N802 - VTK naming
        pass


class VtkWidget(QVTKRenderWindowInteractor):
    """A ``QVTKRenderWindowInteractor`` that works offscreen and follows the crash rules."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        kw = {}
        if is_offscreen_platform():
            rw = _OffscreenRenderWindow()
            rw.SetOffScreenRendering(True)
            kw["rw"] = rw
        super().__init__(parent, **kw)
        self.closed = False
        self._close_callbacks: list[Callable[[], None]] = []
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        #: Multisampling costs a lot with software OpenGL; FXAA on the renderer is cheaper.
        self.GetRenderWindow().SetMultiSamples(0)

    # --------------------------------------------------------------- safe rendering
    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the widget closes, before the render window is finalised."""
        self._close_callbacks.append(callback)

    def render_now(self) -> bool:
        """Render synchronously unless closed or not yet shown; True when a frame was drawn."""
        if self.closed or not self.isVisible():
            return False
        try:
            self.GetRenderWindow().Render()
        except Exception:  # pragma: no cover - GL driver trouble must not kill the window
            log.exception("VTK render failed")
            return False
        return True

    def paintEvent(self, ev):  # noqa: N802 - Qt naming
        if self.closed:
            return
        super().paintEvent(ev)

    def resizeEvent(self, ev):  # noqa: N802
        if self.closed:
            return
        super().resizeEvent(ev)

    def Render(self):  # noqa: N802 - the interactor's request: a Qt update, never after close
        if not self.closed:
            self.update()

    def closeEvent(self, ev):  # noqa: N802
        self.shutdown()
        ev.accept()

    def shutdown(self) -> None:
        """Close flag first, then callbacks (unsubscribe, stop timers), then ``Finalize()``."""
        if self.closed:
            return
        self.closed = True
        for cb in self._close_callbacks:
            try:
                cb()
            except Exception:
                log.exception("VTK widget close callback failed")
        self._close_callbacks.clear()
        try:
            self._Timer.stop()
            self.Finalize()
        except Exception:  # pragma: no cover
            log.exception("finalising the render window failed")

    # --------------------------------------------------------------- frame capture
    def frame_image(self) -> Optional[QImage]:
        """The current VTK frame as a QImage (top row first), or None when closed or hidden."""
        if self.closed or not self.isVisible():
            return None
        rw = self.GetRenderWindow()
        rw.Render()
        w2i = vtkWindowToImageFilter()
        w2i.SetInput(rw)
        w2i.SetInputBufferTypeToRGB()
        w2i.ReadFrontBufferOff()
        w2i.ShouldRerenderOff()
        w2i.Update()
        img = w2i.GetOutput()
        w, h, _ = img.GetDimensions()
        if w <= 0 or h <= 0:
            return None
        arr = vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)
        arr = np.ascontiguousarray(arr[::-1, :, :3])  # VTK's origin is bottom-left
        qimg = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        return qimg.copy()


def vtk_widgets(root: QWidget) -> list[VtkWidget]:
    return [w for w in root.findChildren(QVTKRenderWindowInteractor) if isinstance(w, VtkWidget)]


def grab_with_vtk(window: QWidget) -> QImage:
    """Grab ``window`` as a QImage with every visible VTK picture composited in (stack.md 4.2)."""
    pm = window.grab()
    out = pm.toImage().convertToFormat(QImage.Format.Format_ARGB32)
    out.setDevicePixelRatio(pm.devicePixelRatio())
    painter = QPainter(out)
    try:
        for w in vtk_widgets(window):
            if not w.isVisible() or w.closed or w.window() is not window.window():
                continue
            frame = w.frame_image()
            if frame is None:
                continue
            top_left = w.mapTo(window, QPoint(0, 0))
            painter.drawImage(QRect(top_left, w.size()), frame)
    finally:
        painter.end()
    return out
