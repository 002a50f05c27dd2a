"""The 3D key image: VTK offscreen rendering without Qt.

The scene is built in patient coordinates (LPS mm, a right-handed frame, so the picture is not
mirrored): on CT a bone surface extracted around the trajectory; otherwise (MRI, or no images)
schematic vertebral bodies shaped from each level's landmarks. The instruments are tubes of their
planned diameters, the ablation zone a translucent sphere, built by the 3D view's own builder
(:func:`planner.views.render.actors3d.trajectory_actors`) in the key images' colours. Levels are
labelled in the picture.

Headless: with no DISPLAY, VTK is pointed at its EGL render window (../shared/stack.md, section 3).
"""

from __future__ import annotations

import os
import logging
from typing import Mapping, Optional

import numpy as np
from PIL import Image, ImageDraw

from planner.imaging.volume import Volume
from planner.plan import Level, Plan, Trajectory
from planner.report.keyimages import INSTRUMENT_COLORS, ZONE_COLOR, AnyImage, KeyImage, _font, choose_volume
from planner.trajectory import TrajectoryShape, trajectory_shape

log = logging.getLogger(__name__)

#: Display threshold for the CT bone surface (HU). A drawing choice, not a clinical threshold.
CT_BONE_SURFACE_HU = 250.0
#: The schematic body is drawn this many times wider than it is deep (a drawing proportion; the
#: landmarks give depth and height only).
SCHEMATIC_WIDTH_TO_DEPTH = 1.4
IMAGE_PX = 560
ROI_HALF_MM = 45.0


def _prepare_environment() -> None:
    if not os.environ.get("DISPLAY") and os.name != "nt" and "darwin" not in os.sys.platform:
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _level_frame(level: Level) -> Optional[tuple[np.ndarray, np.ndarray, float, float, float]]:
    """(center, 3x3 [lateral, ap, up] axes, width, depth, height) of a schematic body, or None."""
    lm = level.landmarks
    needed = (lm.superior_endplate_lps, lm.inferior_endplate_lps, lm.posterior_wall_lps, lm.anterior_wall_lps)
    if any(p is None for p in needed):
        return None
    sup, inf, post, ant = (np.asarray(p, dtype=float) for p in needed)
    up = sup - inf
    height = float(np.linalg.norm(up))
    ap = post - ant
    depth = float(np.linalg.norm(ap))
    if height < 1e-3 or depth < 1e-3:
        return None
    up /= height
    ap = ap - up * (ap @ up)
    ap /= np.linalg.norm(ap)
    lateral = np.cross(ap, up)
    center = np.asarray(lm.body_center_lps, dtype=float) if lm.body_center_lps is not None else (sup + inf) / 2
    axes = np.stack([lateral, ap, up], axis=1)
    return center, axes, depth * SCHEMATIC_WIDTH_TO_DEPTH, depth, height


def render_trajectory_3d(plan: Plan, traj: Trajectory, volume: Optional[Volume] = None,
                         geom: Optional[TrajectoryShape] = None, size_px: int = IMAGE_PX) -> KeyImage:
    _prepare_environment()
    import vtkmodules.vtkInteractionStyle  # noqa: F401  (registers factories)
    import vtkmodules.vtkRenderingFreeType  # noqa: F401
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkCommonTransforms import vtkTransform
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D, vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
    from vtkmodules.vtkFiltersGeneral import vtkTransformFilter
    from vtkmodules.vtkFiltersSources import vtkCylinderSource, vtkSphereSource
    from vtkmodules.vtkRenderingCore import (
        vtkActor,
        vtkPolyDataMapper,
        vtkRenderer,
        vtkRenderWindow,
        vtkWindowToImageFilter,
    )

    from planner.views.render.actors3d import trajectory_actors

    geom = geom or trajectory_shape(plan, traj)
    renderer = vtkRenderer()
    renderer.SetBackground(0.12, 0.13, 0.16)
    renderer.SetBackground2(0.30, 0.32, 0.38)
    renderer.GradientBackgroundOn()
    target = np.asarray(traj.target_lps, dtype=float)

    def add_polydata(poly_port, color, opacity=1.0, specular=0.2):
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(poly_port)
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetColor(*[c / 255.0 for c in color])
        prop.SetOpacity(opacity)
        prop.SetSpecular(specular)
        prop.SetSpecularPower(20)
        renderer.AddActor(actor)
        return actor

    keep: list = []  # hold VTK objects until rendering is done
    surface_kind = "schematic vertebral bodies from the landmarks"
    used_ct = False
    if volume is not None and volume.info.modality.upper() == "CT":
        ijk = volume.world_to_ijk(target)
        half = np.ceil(ROI_HALF_MM / volume.spacing).astype(int)
        lo = np.maximum(np.floor(ijk).astype(int) - half, 0)
        hi = np.minimum(np.ceil(ijk).astype(int) + half + 1, np.array(volume.shape_ijk))
        if np.all(hi - lo > 2):
            sub = np.ascontiguousarray(volume.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]], dtype=np.float32)
            image = vtkImageData()
            image.SetDimensions(int(sub.shape[2]), int(sub.shape[1]), int(sub.shape[0]))
            image.GetPointData().SetScalars(numpy_to_vtk(sub.ravel(), deep=True))
            fe = vtkFlyingEdges3D()
            fe.SetInputData(image)
            fe.SetValue(0, CT_BONE_SURFACE_HU)
            smooth = vtkWindowedSincPolyDataFilter()
            smooth.SetInputConnection(fe.GetOutputPort())
            smooth.SetNumberOfIterations(12)
            smooth.SetPassBand(0.08)
            m = vtkMatrix4x4()
            shift = np.eye(4)
            shift[:3, 3] = lo
            full = volume.ijk_to_lps @ shift
            for r in range(4):
                for c in range(4):
                    m.SetElement(r, c, float(full[r, c]))
            tf = vtkTransform()
            tf.SetMatrix(m)
            tpf = vtkTransformFilter()
            tpf.SetInputConnection(smooth.GetOutputPort())
            tpf.SetTransform(tf)
            normals = vtkPolyDataNormals()
            normals.SetInputConnection(tpf.GetOutputPort())
            normals.Update()
            if normals.GetOutput().GetNumberOfPoints() > 0:
                add_polydata(normals.GetOutputPort(), (235, 225, 205), 0.55)
                keep += [image, fe, smooth, tf, tpf, normals]
                surface_kind = f"CT bone surface ({CT_BONE_SURFACE_HU:g} HU)"
                used_ct = True

    labels: list[tuple[str, np.ndarray]] = []
    if not used_ct:
        for level in plan.levels:
            frame = _level_frame(level)
            if frame is None:
                continue
            center, axes, width, depth, height = frame
            if np.linalg.norm(center - target) > 140:
                continue
            cyl = vtkCylinderSource()
            cyl.SetResolution(48)
            cyl.SetRadius(0.5)
            cyl.SetHeight(1.0)
            m = vtkMatrix4x4()
            # cylinder local axes: x lateral, y along the cylinder (up), z = x cross y (antero-posterior),
            # so the matrix keeps a positive determinant and the surface normals point outwards
            z_axis = np.cross(axes[:, 0], axes[:, 2])
            local = np.stack([axes[:, 0] * width, axes[:, 2] * height, z_axis * depth], axis=1)
            for r in range(3):
                for c in range(3):
                    m.SetElement(r, c, float(local[r, c]))
                m.SetElement(r, 3, float(center[r]))
            tf = vtkTransform()
            tf.SetMatrix(m)
            tpf = vtkTransformFilter()
            tpf.SetInputConnection(cyl.GetOutputPort())
            tpf.SetTransform(tf)
            body_normals = vtkPolyDataNormals()
            body_normals.SetInputConnection(tpf.GetOutputPort())
            body_normals.SetFeatureAngle(60.0)
            treated = level.treat or level.id == traj.level_id
            color = (236, 214, 170) if treated else (200, 200, 205)
            add_polydata(body_normals.GetOutputPort(), color, 0.45 if level.id == traj.level_id else 0.3)
            keep += [cyl, tf, tpf, body_normals]
            toward_camera = 1.0 if traj.side == "left" else -1.0  # axes[:, 0] points to the patient's left
            labels.append((level.name, center + axes[:, 0] * (width / 2 + 8) * toward_camera))
            for side in ("left", "right"):
                p = getattr(level.landmarks, f"pedicle_{side}_lps")
                if p is not None:
                    s = vtkSphereSource()
                    s.SetCenter(*map(float, p))
                    s.SetRadius(3.0)
                    add_polydata(s.GetOutputPort(), (190, 190, 200), 0.6)
                    keep.append(s)
    else:
        for level in plan.levels:
            if level.landmarks.body_center_lps is not None:
                c = np.asarray(level.landmarks.body_center_lps, dtype=float)
                if np.linalg.norm(c - target) < 80:
                    labels.append((level.name, c))

    rgb = {name: tuple(c / 255.0 for c in color) for name, color in INSTRUMENT_COLORS.items()}
    for actor in trajectory_actors(geom, rgb, tuple(c / 255.0 for c in ZONE_COLOR), 0.45, 0.5).values():
        actor.GetMapper().ScalarVisibilityOff()
        renderer.AddActor(actor)
    tip = vtkSphereSource()
    tip.SetCenter(*map(float, target))
    tip.SetRadius(1.2)
    add_polydata(tip.GetOutputPort(), (255, 40, 40), 1.0)
    keep.append(tip)

    # Camera: from behind, on the side of the approach and a little above.
    side_sign = 1.0 if traj.side == "left" else -1.0  # +x is the patient's left in LPS
    direction = np.array([0.9 * side_sign, 1.0, 0.45])
    direction /= np.linalg.norm(direction)
    camera = renderer.GetActiveCamera()
    camera.SetFocalPoint(*map(float, target))
    camera.SetPosition(*map(float, target + direction * 260.0))
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.SetViewAngle(26.0)
    renderer.ResetCameraClippingRange()

    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(4)
    window.SetSize(size_px, size_px)
    window.AddRenderer(renderer)
    try:
        window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.ReadFrontBufferOff()
        grab.Update()
        out = grab.GetOutput()
        w, h, _ = out.GetDimensions()
        arr = vtk_to_numpy(out.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]
        label_px = []
        for text, p in labels:
            renderer.SetWorldPoint(float(p[0]), float(p[1]), float(p[2]), 1.0)
            renderer.WorldToDisplay()
            x, y, _z = renderer.GetDisplayPoint()
            label_px.append((text, x, h - y))
    finally:
        window.Finalize()
    if arr.std() < 1.0:
        raise RuntimeError("offscreen rendering produced an empty picture")
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="RGB")
    draw = ImageDraw.Draw(img)
    font = _font(max(13, size_px // 30))
    for text, x, y in label_px:
        if 0 <= x < w and 0 <= y < h:
            draw.text((x, y), text, fill=(255, 255, 255), font=font, anchor="mm", stroke_width=2,
                      stroke_fill=(0, 0, 0))
    small = _font(max(11, size_px // 40))
    view = "left" if traj.side == "left" else "right"
    draw.text((8, h - 8), f"View from behind, {view} side, slightly above", fill=(230, 230, 230), font=small,
              anchor="lb")
    level = next((lv for lv in plan.levels if lv.id == traj.level_id), None)
    caption = (f"3D view ({level.name if level else '?'} {traj.side}): {surface_kind}, instruments and ablation "
               f"zone")
    view_dir = -direction  # from the camera to the target
    right = np.cross(view_dir, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    down = -np.cross(right, view_dir)
    return KeyImage("3d", caption, img, volume.info.series_instance_uid if volume is not None else "",
                    screen_axes_lps=(right, down / np.linalg.norm(down)))


def trajectory_key_image_3d(plan: Plan, traj: Trajectory, images: Optional[Mapping[str, AnyImage]],
                            geom: Optional[TrajectoryShape] = None) -> tuple[Optional[KeyImage], list[str]]:
    """The 3D key image of one trajectory and a note when this computer cannot render it offscreen (no
    OpenGL: the rendering libraries do not load, or the picture comes back empty); any other error is
    a bug and propagates. VTK renders it offscreen, so the app calls this on the GUI thread (one
    trajectory at a time, between events)."""
    chosen = choose_volume(plan, images, traj.target_lps)
    try:
        return render_trajectory_3d(plan, traj, chosen[1] if chosen else None, geom), []
    except (RuntimeError, ImportError, OSError) as exc:  # no offscreen OpenGL here: the report says so
        log.warning("3D key image failed: %s", exc)
        return None, ["3D view unavailable: offscreen rendering failed on this computer."]


def add_3d_key_image(key_images: list[KeyImage], shot: KeyImage) -> None:
    """Put the 3D key image in its place among a trajectory's key images: after the reslices, before
    the fluoroscopy images (C-arm or virtual)."""
    at = next((i for i, k in enumerate(key_images) if k.kind in ("fluoro", "virtual")), len(key_images))
    key_images.insert(at, shot)
