"""The 3D view: volume rendering (MR and CT presets), the slice planes of the 2D views in place,
level labels, trajectories and ablation zones, an orientation marker, and AP / lateral / axial
camera buttons.

Rendering is on demand: model and slice changes schedule one render a little later (so scrolling a
slice view never waits for the volume renderer), and the volume itself is set up only after the
window is on screen. While the physician drags a handle (plan edits in quick succession, or with a
mouse button held) the view is in *drag mode*: it renders at most every ``DRAG_RENDER_DELAY_MS``
without the volume rendering, anti-aliasing and order-independent transparency (the instruments, the zone and the textured slice
planes still move live; a full volume frame costs about 0.2 s with software OpenGL), and one
full-quality frame follows ``DRAG_SETTLE_MS`` after the last edit. Crash rules (stack.md 6) are kept by :class:`planner.views.vtk_setup.VtkWidget`.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkFiltersSources import vtkPlaneSource
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkTexture

from planner.document import PlanChange
from planner.imaging.volume import Volume
from planner.trajectory import is_ct
from planner.views.context import ViewContext
from planner.views.lifecycle import ModelWidget
from planner.views.render.actors3d import PlanActors3D
from planner.views.vtk_setup import VtkWidget

log = logging.getLogger(__name__)

#: Volume-rendering presets: name -> (modality family, opacity points as (percentile or HU, opacity),
#: colour points as (value, r, g, b)). MR values are percentiles of the volume's intensities (MR has
#: no absolute scale); CT values are Hounsfield units.
PRESETS: dict[str, dict] = {
    "MR: tissue": {"family": "MR", "kind": "percentile",
                   "opacity": [(60, 0.0), (85, 0.03), (97, 0.18), (99.9, 0.4)],
                   "color": [(55, 0.35, 0.25, 0.2), (80, 0.85, 0.7, 0.55), (99.9, 1.0, 0.97, 0.9)]},
    "MR: fluid (CSF, discs)": {"family": "MR", "kind": "percentile",
                               "opacity": [(90, 0.0), (97, 0.25), (99.9, 0.8)],
                               "color": [(90, 0.3, 0.5, 0.9), (99.9, 0.8, 0.95, 1.0)]},
    "CT: bone": {"family": "CT", "kind": "value",
                 "opacity": [(150, 0.0), (300, 0.15), (700, 0.55), (1500, 0.85)],
                 "color": [(150, 0.55, 0.35, 0.25), (400, 0.95, 0.85, 0.7), (1500, 1.0, 1.0, 0.95)]},
    "CT: soft tissue": {"family": "CT", "kind": "value",
                        "opacity": [(-200, 0.0), (0, 0.05), (100, 0.2), (300, 0.5)],
                        "color": [(-200, 0.6, 0.3, 0.25), (60, 0.9, 0.6, 0.5), (300, 1.0, 0.95, 0.9)]},
}

CAMERA_VIEWS = {
    # name: (direction from the focal point to the camera, view up), LPS
    "AP": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),        # from the front: patient's left on screen right
    "Lateral": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),    # from the left: anterior on screen left
    "Axial": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),    # from the feet, anterior up (radiological)
}


def _volume_image_data(vol: Volume) -> tuple[vtkImageData, np.ndarray, np.ndarray]:
    """vtkImageData with the voxel spacing, plus the rigid user matrix placing it in LPS.
    A left-handed direction matrix is made right-handed by flipping k (VTK's ray caster expects it)."""
    arr = vol.array
    direction = vol.direction.copy()
    origin = vol.origin.copy()
    spacing = vol.spacing.copy()
    if np.linalg.det(direction) < 0:
        arr = arr[::-1]
        origin = origin + direction[:, 2] * spacing[2] * (arr.shape[0] - 1)
        direction[:, 2] = -direction[:, 2]
    arr = np.ascontiguousarray(arr)
    data = vtkImageData()
    nk, nj, ni = arr.shape
    data.SetDimensions(ni, nj, nk)
    data.SetSpacing(*[float(s) for s in spacing])
    data.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_to_vtk(arr.ravel(), deep=False)
    data.GetPointData().SetScalars(scalars)
    m = np.eye(4)
    m[:3, :3] = direction
    m[:3, 3] = origin
    data._keep = (arr, scalars)  # keep the numpy buffer alive as long as the VTK object
    return data, m, arr


def _vtk_matrix(m: np.ndarray) -> vtkMatrix4x4:
    out = vtkMatrix4x4()
    for i in range(4):
        for j in range(4):
            out.SetElement(i, j, float(m[i, j]))
    return out


def merged_marker_actor(cube) -> vtkActor:
    """The parts of an annotated cube (cube, six letters, their edges) as one actor coloured per
    cell: the same picture in one draw call instead of eight (each costs with software OpenGL)."""
    from vtkmodules.vtkCommonCore import vtkUnsignedCharArray
    from vtkmodules.vtkCommonDataModel import vtkPolyData
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkAppendPolyData
    from vtkmodules.vtkFiltersGeneral import vtkTransformFilter
    from vtkmodules.vtkRenderingCore import vtkPropCollection

    parts = vtkPropCollection()
    cube.GetActors(parts)
    append = vtkAppendPolyData()
    for i in range(parts.GetNumberOfItems()):
        part = parts.GetItemAsObject(i)
        if not part.GetVisibility() or part.GetMapper() is None:
            continue
        part.GetMapper().Update()
        poly = vtkPolyData()
        poly.DeepCopy(part.GetMapper().GetInput())
        xf = vtkTransform()
        xf.SetMatrix(part.GetMatrix())
        move = vtkTransformFilter()
        move.SetInputData(poly)
        move.SetTransform(xf)
        move.Update()
        out = vtkPolyData()
        out.DeepCopy(move.GetOutput())
        out.GetPointData().SetNormals(None)
        rgb = [int(round(255 * c)) for c in part.GetProperty().GetColor()]
        colors = vtkUnsignedCharArray()
        colors.SetNumberOfComponents(3)
        colors.SetName("rgb")
        for _ in range(out.GetNumberOfCells()):
            colors.InsertNextTuple3(*rgb)
        out.GetCellData().SetScalars(colors)
        append.AddInputData(out)
    append.Update()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(append.GetOutput())
    mapper.SetScalarModeToUseCellData()
    mapper.SetColorModeToDirectScalars()
    actor = vtkActor()
    actor.SetMapper(mapper)
    return actor


class VolumeView(ModelWidget, QWidget):
    #: Emitted after each 3D render with its duration in ms.
    rendered = Signal(float)
    #: Double-click in the 3D picture: the layout maximises the view.
    maximize_requested = Signal()

    RENDER_DELAY_MS = 120
    #: Plan edits closer together than this belong to one drag (drag mode).
    DRAG_GAP_MS = 250
    #: Longest wait for a frame during a drag (renders are throttled, never postponed).
    DRAG_RENDER_DELAY_MS = 15
    #: The full-quality frame comes this long after the last edit of a drag.
    DRAG_SETTLE_MS = 300

    def __init__(self, context: ViewContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.ctx = context
        self.session = context.session
        self.series_key: Optional[str] = None
        self._volume_actor = None
        self._volume_for: Optional[str] = None
        self._volume_pending = False
        self.preset_name = ""
        self.last_render_ms = 0.0
        self._planes: dict[str, tuple] = {}

        # ---- toolbar: camera buttons, what is shown, the rendering preset; on two rows when the cell
        # is too narrow for one (no label is ever clipped)
        self.buttons: dict[str, QToolButton] = {}
        tips = {"AP": "Camera: anterior-posterior view (from the front, patient's left on the right)",
                "Lateral": "Camera: lateral view (from the patient's left, anterior on the left)",
                "Axial": "Camera: axial view from the feet (radiological)"}
        for name in CAMERA_VIEWS:
            b = QToolButton(self)
            b.setText(name)
            b.setToolTip(tips[name])
            b.clicked.connect(lambda _=False, n=name: self.set_camera_view(n))
            self.buttons[name] = b
        self.volume_check = QToolButton(self)
        self.volume_check.setText("Volume")
        self.volume_check.setCheckable(True)
        self.volume_check.setChecked(True)
        self.volume_check.setToolTip("Show the volume rendering (rendered on demand; slow with software OpenGL)")
        self.volume_check.toggled.connect(self._on_volume_toggled)
        self.slices_check = QToolButton(self)
        self.slices_check.setText("Slices")
        self.slices_check.setCheckable(True)
        self.slices_check.setChecked(True)
        self.slices_check.setToolTip("Show the planes of the 2D views in place")
        self.slices_check.toggled.connect(self._on_slices_toggled)
        self.preset_combo = QComboBox(self)
        self.preset_combo.setToolTip("Volume rendering preset (MR presets use the volume's intensity percentiles; "
                                     "CT presets Hounsfield units)")
        self.preset_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset_combo.currentTextChanged.connect(self._on_preset_chosen)
        self.toolbar = QWidget(self)
        self.toolbar.setObjectName("viewBar")
        self._bar = QVBoxLayout(self.toolbar)
        self._bar.setContentsMargins(4, 2, 4, 2)
        self._bar.setSpacing(2)
        self._bar_lines: list[QHBoxLayout] = []
        for _ in range(3):
            line = QHBoxLayout()
            line.setSpacing(3)
            self._bar.addLayout(line)
            self._bar_lines.append(line)
        self._bar_rows = 0
        self._arrange_toolbar(1)
        self.toolbar.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

        # ---- VTK
        self.vtk = VtkWidget(self)
        self.vtk.on_close(self._on_vtk_close)
        self.vtk.installEventFilter(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.toolbar)
        lay.addWidget(self.vtk, 1)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.02, 0.03, 0.05)
        self.renderer.SetBackground2(0.10, 0.13, 0.18)
        self.renderer.GradientBackgroundOn()
        self.renderer.UseFXAAOn()
        rw = self.vtk.GetRenderWindow()
        rw.AddRenderer(self.renderer)
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera

        self._style = vtkInteractorStyleTrackballCamera()
        self.vtk.SetInteractorStyle(self._style)
        self._marker = None
        self.plan_actors = PlanActors3D(self.renderer, self.session.results.shape)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self.render_now)
        self._camera_initialised = False
        # every frame, also one rendered outside render_now (a screenshot grab, the interactor), starts
        # from the default camera: VTK's own first-render reset would look down from the head, zoomed in
        rw.AddObserver("StartEvent", self._before_render)
        #: True while a drag is in progress (volume and FXAA off until the drag settles).
        self.interactive = False
        self._last_edit_t = -1e9
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.timeout.connect(self.end_drag_mode)

        self.subscribe(self.session.document.changed, self._on_plan_changed)
        self.subscribe(self.session.images_changed, self._on_images_changed)
        self.plan_actors.update(self.session.document.plan)

    # ------------------------------------------------------------------ life cycle
    def _on_vtk_close(self) -> None:
        """The VTK widget closed on its own (its window went away): this view closes with it."""
        self.shutdown()

    def on_shutdown(self) -> None:
        """Stop the timers and close the VTK widget (Finalize); nothing renders afterwards."""
        self._render_timer.stop()
        self._settle_timer.stop()
        self.vtk.shutdown()

    def eventFilter(self, obj, ev):  # noqa: N802
        if obj is self.vtk and ev.type() == QEvent.Type.MouseButtonDblClick:
            self.maximize_requested.emit()
            return True
        return False

    def showEvent(self, ev):  # noqa: N802
        super().showEvent(ev)
        if self._marker is None and not self.closed:
            QTimer.singleShot(0, self._install_marker)
        if self._volume_pending:
            QTimer.singleShot(50, self._build_volume)
        self.request_render()

    # ------------------------------------------------------------------ rendering on demand
    def request_render(self, delay_ms: Optional[int] = None) -> None:
        if self.closed:
            return
        self._render_timer.start(self.RENDER_DELAY_MS if delay_ms is None else delay_ms)

    def render_now(self) -> bool:
        if self.closed or not self.isVisible():
            return False
        self._render_timer.stop()  # a pending request is served by this frame
        if not self._camera_initialised:
            self.reset_camera()
        t0 = time.perf_counter()
        ok = self.vtk.render_now()
        t1 = time.perf_counter()
        self.last_render_ms = (t1 - t0) * 1000.0
        if self._last_edit_t >= t0 - self.DRAG_GAP_MS / 1000.0:
            # this frame showed a recent edit: the gap to the next edit of a drag counts from here
            # (a slow frame must not make the next mouse move look like a new, separate edit)
            self._last_edit_t = t1
        if ok:
            self.rendered.emit(self.last_render_ms)
        return ok

    # ------------------------------------------------------------------ drag mode
    def begin_drag_mode(self) -> None:
        """Cheap frames while a handle is dragged: no volume rendering, no FXAA."""
        if self.closed:
            return
        if not self.interactive:
            self.interactive = True
            if self._volume_actor is not None:
                self._volume_actor.SetVisibility(False)
            self.renderer.UseFXAAOff()
            # the translucent zones blended directly, not through the order-independent
            # transparency pass (extra buffers: a third of a drag frame with software OpenGL)
            self.renderer.UseOITOff()
        self._settle_timer.start(self.DRAG_SETTLE_MS)

    def end_drag_mode(self) -> None:
        """Back to full quality (volume, FXAA) and render one frame."""
        self._settle_timer.stop()
        if not self.interactive or self.closed:
            self.interactive = False
            return
        self.interactive = False
        if self._volume_actor is not None:
            self._volume_actor.SetVisibility(self.volume_check.isChecked())
        self.renderer.UseFXAAOn()
        self.renderer.UseOITOn()
        self.request_render(0)

    def _note_edit(self) -> None:
        """A plan edit changed the scene: drag mode when edits come in quick succession or a mouse
        button is held; a frame is scheduled either way."""
        now = time.perf_counter()
        held = QApplication.mouseButtons() != Qt.MouseButton.NoButton
        dragging = held or (now - self._last_edit_t) * 1000.0 < self.DRAG_GAP_MS
        self._last_edit_t = now
        if not dragging:
            self.request_render()
            return
        self.begin_drag_mode()
        if not self._render_timer.isActive():
            self._render_timer.start(self.DRAG_RENDER_DELAY_MS)

    def _install_marker(self) -> None:
        if self.closed or self._marker is not None:
            return
        from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
        from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

        cube = vtkAnnotatedCubeActor()
        for face, text in (("XPlus", "L"), ("XMinus", "R"), ("YPlus", "P"), ("YMinus", "A"), ("ZPlus", "S"),
                           ("ZMinus", "I")):
            getattr(cube, f"Set{face}FaceText")(text)
        cube.SetFaceTextScale(0.65)
        cube.GetCubeProperty().SetColor(0.22, 0.27, 0.33)
        cube.GetTextEdgesProperty().SetColor(0.6, 0.6, 0.6)
        for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty(), cube.GetYPlusFaceProperty(),
                     cube.GetYMinusFaceProperty(), cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
            prop.SetColor(1.0, 0.84, 0.31)
        marker = vtkOrientationMarkerWidget()
        marker.SetOrientationMarker(merged_marker_actor(cube))
        marker.SetInteractor(self.vtk._Iren)
        marker.SetViewport(0.0, 0.0, 0.16, 0.16)
        marker.SetEnabled(1)
        marker.InteractiveOff()
        self._marker = marker
        self.request_render(0)

    # ------------------------------------------------------------------ camera
    def default_camera(self) -> str:
        """Lateral for sagittal acquisitions (the spine's profile), AP otherwise."""
        vol = self.session.images.get(self.series_key) if self.series_key else None
        if isinstance(vol, Volume):
            from planner.display.slice_geometry import native_orientation

            if native_orientation(vol) == "sagittal":
                return "Lateral"
        return "AP"

    def _before_render(self, *_args) -> None:
        if not self._camera_initialised and not self.closed:
            self.reset_camera()

    def reset_camera(self) -> None:
        self.renderer.ResetCamera()
        self.set_camera_view(self.default_camera(), render=False)
        self._camera_initialised = True

    def set_camera_view(self, name: str, render: bool = True) -> None:
        direction, up = (np.asarray(v, dtype=float) for v in CAMERA_VIEWS[name])
        cam = self.renderer.GetActiveCamera()
        bounds = self._content_bounds()
        if bounds is None:
            self.renderer.ResetCamera()
            fp = np.asarray(cam.GetFocalPoint())
            radius = 100.0
        else:
            lo, hi = bounds
            fp = (lo + hi) / 2
            radius = max(float(np.linalg.norm(hi - lo)) / 2, 10.0)
        dist = radius / np.sin(np.radians(cam.GetViewAngle() / 2)) * 0.9
        cam.SetFocalPoint(*fp)
        cam.SetPosition(*(fp + direction * dist))
        cam.SetViewUp(*up)
        self.renderer.ResetCameraClippingRange()
        self._camera_initialised = True
        self.current_camera = name
        if render:
            self.request_render(0)

    def _content_bounds(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        vol = self.session.images.get(self.series_key) if self.series_key else None
        if isinstance(vol, Volume):
            c = vol.corners_lps()
            return c.min(axis=0), c.max(axis=0)
        return None

    def camera_direction(self) -> np.ndarray:
        cam = self.renderer.GetActiveCamera()
        d = np.asarray(cam.GetFocalPoint()) - np.asarray(cam.GetPosition())
        return d / np.linalg.norm(d)

    # ------------------------------------------------------------------ volume
    def set_series(self, key: Optional[str]) -> None:
        if key == self.series_key:
            return
        self.series_key = key
        vol = self.session.images.get(key) if key else None
        self._fill_presets(vol if isinstance(vol, Volume) else None)
        if self._volume_actor is not None:
            self.renderer.RemoveVolume(self._volume_actor)
            self._volume_actor = None
        self._volume_pending = isinstance(vol, Volume) and self.volume_check.isChecked()
        self._camera_initialised = False
        if self._volume_pending and self.isVisible():
            QTimer.singleShot(50, self._build_volume)
        self.request_render()

    def _toolbar_widgets(self) -> list[QWidget]:
        return [*self.buttons.values(), self.volume_check, self.slices_check, self.preset_combo]

    def _toolbar_rows(self) -> list[list[QWidget]]:
        cams = list(self.buttons.values())
        toggles = [self.volume_check, self.slices_check]
        return [[*cams, *toggles, self.preset_combo]], [[*cams, *toggles], [self.preset_combo]], \
            [cams, toggles, [self.preset_combo]]

    def toolbar_width(self, rows: int) -> int:
        """Width the toolbar needs on ``rows`` rows (1: everything; 2: the preset on its own row;
        3: cameras, toggles and preset on a row each)."""
        sp = self._bar_lines[0].spacing()
        m = self._bar.contentsMargins()
        widest = max(sum(wd.sizeHint().width() for wd in row) + sp * (len(row) - 1) + (12 if len(row) > 3 else 0)
                     for row in self._toolbar_rows()[rows - 1])
        return widest + m.left() + m.right()

    def _arrange_toolbar(self, rows: int) -> None:
        if rows == self._bar_rows:
            return
        self._bar_rows = rows
        for line in self._bar_lines:
            while line.count():
                line.takeAt(0)
        for line, row in zip(self._bar_lines, self._toolbar_rows()[rows - 1]):
            for wd in row:
                wd.setMinimumWidth(0)
                wd.setMinimumWidth(wd.sizeHint().width())  # never squeezed below its label
                line.addWidget(wd)
                if wd is self.buttons["Axial"] and len(row) > 3:
                    line.addSpacing(12)  # cameras apart from the toggles
            line.addStretch(1)
        self.toolbar.setFixedHeight(self._bar.sizeHint().height())

    def resizeEvent(self, ev):  # noqa: N802
        self._arrange_toolbar(self._rows_for_width(ev.size().width()))
        super().resizeEvent(ev)

    def _rows_for_width(self, width: int) -> int:
        return next((r for r in (1, 2) if width >= self.toolbar_width(r)), 3)

    def _fill_presets(self, vol: Optional[Volume]) -> None:
        # CT by its modality tag, or (research files without one) by its intensity range
        family = "CT" if vol is not None and is_ct(vol) else "MR"
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        for name, p in PRESETS.items():
            if p["family"] == family:
                self.preset_combo.addItem(name)
        if vol is not None and family == "MR":
            # fluid-sensitive sequences (T2, STIR) show the canal and discs best
            from planner.display.roles import role_of

            role = role_of(self.session, self.series_key or "")
            if role in ("T2", "STIR", "AX_T2") or "T2" in (vol.info.series_description or "").upper():
                self.preset_combo.setCurrentText("MR: fluid (CSF, discs)")
        self.preset_combo.blockSignals(False)
        self.preset_name = self.preset_combo.currentText()
        self.preset_combo.setMinimumWidth(0)
        self._bar_rows = 0  # the preset names changed: arrange again
        self._arrange_toolbar(self._rows_for_width(self.width()))

    def _build_volume(self) -> None:
        """Set up volume rendering (deferred until the window is shown; about 0.1 s plus upload)."""
        if self.closed or not self._volume_pending:
            return
        vol = self.session.images.get(self.series_key) if self.series_key else None
        self._volume_pending = False
        if not isinstance(vol, Volume):
            return
        from planner.views.vtk_setup import load_volume_rendering

        load_volume_rendering()
        from vtkmodules.vtkRenderingCore import vtkColorTransferFunction, vtkVolume, vtkVolumeProperty
        from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
        from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

        data, m, _ = _volume_image_data(vol)
        mapper = vtkSmartVolumeMapper()
        mapper.SetInputData(data)
        mapper.SetBlendModeToComposite()
        mapper.SetInteractiveUpdateRate(8.0)
        mapper.AutoAdjustSampleDistancesOn()
        prop = vtkVolumeProperty()
        prop.SetInterpolationTypeToLinear()
        prop.ShadeOn()
        prop.SetAmbient(0.3)
        prop.SetDiffuse(0.7)
        prop.SetSpecular(0.2)
        prop.SetScalarOpacity(vtkPiecewiseFunction())
        prop.SetColor(vtkColorTransferFunction())
        actor = vtkVolume()
        actor.SetMapper(mapper)
        actor.SetProperty(prop)
        actor.SetUserMatrix(_vtk_matrix(m))
        self._volume_actor = actor
        self._volume_data = data
        self._apply_preset(self.preset_combo.currentText() or next(iter(PRESETS)))
        actor.SetVisibility(not self.interactive)
        self.renderer.AddVolume(actor)
        self._volume_for = self.series_key
        self.request_render(0)

    @property
    def has_volume(self) -> bool:
        return self._volume_actor is not None

    def ensure_volume_now(self) -> None:
        """Build the volume immediately (screenshots and tests)."""
        if self._volume_pending:
            self._build_volume()

    def _apply_preset(self, name: str) -> None:
        if self._volume_actor is None or name not in PRESETS:
            return
        vol = self.session.images.get(self.series_key)
        p = PRESETS[name]
        prop = self._volume_actor.GetProperty()
        otf = prop.GetScalarOpacity()
        ctf = prop.GetRGBTransferFunction()
        otf.RemoveAllPoints()
        ctf.RemoveAllPoints()
        if p["kind"] == "percentile" and isinstance(vol, Volume):
            a = vol.array
            step = max(1, int(round((a.size / 1_000_000) ** (1 / 3))))
            sub = np.asarray(a[::step, ::step, ::step], dtype=np.float32).ravel()
            qs = sorted({q for q, *_ in p["opacity"]} | {q for q, *_ in p["color"]})
            vals = dict(zip(qs, np.percentile(sub, qs)))

            def val(q):
                return float(vals[q])
        else:
            def val(q):
                return float(q)
        last = None
        for q, o in p["opacity"]:
            v = val(q)
            if last is not None and v <= last:
                v = last + 1e-3
            otf.AddPoint(v, o)
            last = v
        last = None
        for q, r, g, b in p["color"]:
            v = val(q)
            if last is not None and v <= last:
                v = last + 1e-3
            ctf.AddRGBPoint(v, r, g, b)
            last = v
        self.preset_name = name
        self.request_render()

    def _on_preset_chosen(self, name: str) -> None:
        if name:
            self._apply_preset(name)

    def _on_volume_toggled(self, on: bool) -> None:
        if self._volume_actor is not None:
            self._volume_actor.SetVisibility(on and not self.interactive)
        elif on and self.series_key:
            self._volume_pending = True
            QTimer.singleShot(0, self._build_volume)
        self.request_render(0)

    def _on_slices_toggled(self, on: bool) -> None:
        for actor, *_ in self._planes.values():
            actor.SetVisibility(on)
        self.request_render(0)

    # ------------------------------------------------------------------ slice planes
    def update_slice_plane(self, view) -> None:
        """Show ``view``'s current slice (a SliceView) as a textured plane, in place."""
        if self.closed:
            return
        frame = getattr(view, "frame", None)
        key = view.orientation
        if frame is None or view.volume is None:
            if key in self._planes:
                self.renderer.RemoveActor(self._planes.pop(key)[0])
            return
        img8 = view.display_image_uint8()
        if img8 is None:
            return
        nc, nr, _ = frame.shape
        n = view.n
        c0 = frame.crn_to_world((-0.5, -0.5, n))
        c1 = frame.crn_to_world((nc - 0.5, -0.5, n))
        c2 = frame.crn_to_world((-0.5, nr - 0.5, n))
        entry = self._planes.get(key)
        if entry is None:
            src = vtkPlaneSource()
            tex = vtkTexture()
            tex.InterpolateOn()
            mapper = vtkPolyDataMapper()
            mapper.SetInputConnection(src.GetOutputPort())
            actor = vtkActor()
            actor.SetMapper(mapper)
            actor.SetTexture(tex)
            actor.GetProperty().LightingOff()
            actor.SetVisibility(self.slices_check.isChecked())
            self.renderer.AddActor(actor)
            entry = (actor, src, tex, None)
        actor, src, tex, _ = entry
        src.SetOrigin(*c0)
        src.SetPoint1(*c1)
        src.SetPoint2(*c2)
        src.Update()
        data = vtkImageData()
        rows, cols = img8.shape
        data.SetDimensions(cols, rows, 1)
        buf = np.ascontiguousarray(img8)
        scalars = numpy_to_vtk(buf.ravel(), deep=True)
        data.GetPointData().SetScalars(scalars)
        tex.SetInputData(data)
        self._planes[key] = (actor, src, tex, data)
        self.request_render(250)

    # ------------------------------------------------------------------ model events
    def _on_plan_changed(self, change: PlanChange) -> None:
        if self.closed:
            return
        if self.plan_actors.update(self.session.document.plan, change):
            self._note_edit()

    def _on_images_changed(self, key: str) -> None:
        if self.closed:
            return
        if key == self.series_key and key not in self.session.images:
            self.set_series(None)

    def visible_prop_count(self) -> int:
        return self.renderer.VisibleActorCount() + self.renderer.VisibleVolumeCount()

    def frame_qimage(self):
        return self.vtk.frame_image()


__all__ = ["VolumeView", "PRESETS", "CAMERA_VIEWS"]
