"""Plan objects as VTK actors (world coordinates = LPS mm), for the 3D view and the report's offscreen
3D picture alike: level labels beside the bodies, landmarks as small spheres (one actor per level),
trajectories as tubes of the real instrument diameters and the ablation zone as a translucent sphere
(:func:`trajectory_actors`, the one builder both use). :meth:`PlanActors3D.update` rebuilds only the
objects a ``PlanChange`` names. No Qt: the report imports this module headless."""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData, vtkPolyLine
from vtkmodules.vtkFiltersCore import vtkAppendPolyData, vtkTubeFilter
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderer, vtkTextActor

from planner.document import Part, PlanChange
from planner.plan import LANDMARK_NAMES, Plan, Trajectory
from planner.trajectory import TrajectoryShape

log = logging.getLogger(__name__)

INSTRUMENT_RGB = {"introducer": (0.25, 0.63, 1.0), "cannula": (0.16, 0.82, 0.47), "probe": (1.0, 0.86, 0.16)}
ZONE_RGB = (1.0, 0.44, 0.26)
ZONE_OPACITY = 0.35
#: Sides of an instrument tube and resolution of the zone sphere (display choices).
TUBE_SIDES = 18
ZONE_RESOLUTION = 32
#: Thinnest tube drawn (mm), so a thin probe stays visible.
MIN_TUBE_DIAMETER_MM = 0.2
LEVEL_RGB = (1.0, 0.88, 0.51)
LANDMARK_RGB = (0.5, 0.87, 0.92)


def tube_actor(points_lps: np.ndarray, diameter_mm: float, rgb: tuple[float, float, float],
               specular: float = 0.4) -> vtkActor:
    pts = vtkPoints()
    for p in np.asarray(points_lps, dtype=float):
        pts.InsertNextPoint(*p)
    line = vtkPolyLine()
    line.GetPointIds().SetNumberOfIds(pts.GetNumberOfPoints())
    for i in range(pts.GetNumberOfPoints()):
        line.GetPointIds().SetId(i, i)
    cells = vtkCellArray()
    cells.InsertNextCell(line)
    poly = vtkPolyData()
    poly.SetPoints(pts)
    poly.SetLines(cells)
    tube = vtkTubeFilter()
    tube.SetInputData(poly)
    tube.SetRadius(max(diameter_mm, MIN_TUBE_DIAMETER_MM) / 2.0)
    tube.SetNumberOfSides(TUBE_SIDES)
    tube.CappingOn()
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(tube.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*rgb)
    actor.GetProperty().SetSpecular(specular)
    actor.GetProperty().SetSpecularPower(20)
    return actor


def sphere_actor(center_lps, radius_mm: float, rgb, opacity: float = 1.0, resolution: int = 24) -> vtkActor:
    src = vtkSphereSource()
    src.SetCenter(*[float(v) for v in center_lps])
    src.SetRadius(float(radius_mm))
    src.SetThetaResolution(resolution)
    src.SetPhiResolution(resolution)
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(src.GetOutputPort())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*rgb)
    actor.GetProperty().SetOpacity(opacity)
    return actor


def spheres_actor(centers_lps, radius_mm: float, rgb, resolution: int = 10) -> vtkActor:
    """Several equal spheres as one actor (one draw call: a software-OpenGL frame pays per actor)."""
    append = vtkAppendPolyData()
    for c in centers_lps:
        src = vtkSphereSource()
        src.SetCenter(*[float(v) for v in c])
        src.SetRadius(float(radius_mm))
        src.SetThetaResolution(resolution)
        src.SetPhiResolution(resolution)
        src.Update()
        append.AddInputData(src.GetOutput())
    append.Update()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(append.GetOutput())
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*rgb)
    return actor


def label_actor(text: str, position_lps, rgb, font_size: int = 15) -> vtkTextActor:
    """A 2D text drawn on top of the scene at a 3D position (labels stay readable inside a volume)."""
    actor = vtkTextActor()
    actor.SetInput(text)
    coord = actor.GetPositionCoordinate()
    coord.SetCoordinateSystemToWorld()
    coord.SetValue(*[float(v) for v in position_lps])
    tp = actor.GetTextProperty()
    tp.SetColor(*rgb)
    tp.SetFontSize(font_size)
    tp.BoldOn()
    tp.ShadowOn()
    tp.SetBackgroundColor(0.0, 0.0, 0.0)
    tp.SetBackgroundOpacity(0.45)
    tp.SetJustificationToCentered()
    tp.SetVerticalJustificationToCentered()
    return actor


def trajectory_actors(shape: TrajectoryShape, instrument_rgb: Mapping[str, tuple[float, float, float]] = INSTRUMENT_RGB,
                      zone_rgb: tuple[float, float, float] = ZONE_RGB, zone_opacity: float = ZONE_OPACITY,
                      specular: float = 0.4) -> dict[str, vtkActor]:
    """The actors of one trajectory's drawn shape by part: each instrument (its name) as a tube of its
    diameter, and "zone" as the ablation-zone sphere. Colours default to the 3D view's."""
    parts: dict[str, vtkActor] = {}
    for inst in shape.instruments:
        parts[inst.name] = tube_actor(inst.points_lps, inst.diameter_mm,
                                      instrument_rgb.get(inst.name, (0.9, 0.9, 0.9)), specular)
    parts["zone"] = sphere_actor(shape.zone.center_lps, shape.zone.radius_mm, zone_rgb, zone_opacity, ZONE_RESOLUTION)
    return parts


class PlanActors3D:
    """The plan's actors in a renderer; ``shape_of`` gives a trajectory's drawn shape (the session's
    results)."""

    def __init__(self, renderer: vtkRenderer, shape_of: Callable[[Trajectory], TrajectoryShape]) -> None:
        self.renderer = renderer
        self.shape_of = shape_of
        self._levels: dict[str, list] = {}
        self._trajectories: dict[str, list] = {}
        #: trajectory id -> {"introducer"/"cannula"/"probe"/"zone": actor} (the same actors as above)
        self._trajectory_parts: dict[str, dict[str, vtkActor]] = {}
        self.show_landmarks = True

    def _remove(self, actors: list) -> None:
        for a in actors:
            self.renderer.RemoveActor(a)

    def clear(self) -> None:
        for actors in list(self._levels.values()) + list(self._trajectories.values()):
            self._remove(actors)
        self._levels.clear()
        self._trajectories.clear()
        self._trajectory_parts.clear()

    def update(self, plan: Plan, change: Optional[PlanChange] = None) -> bool:
        """Rebuild what ``change`` touched (everything when None or on load); True if anything changed."""
        everything = change is None or change.touches(Part.SETTINGS)
        touched = False
        if everything or change.touches(Part.LEVELS):
            ids = {lv.id for lv in plan.levels}
            changed_ids = ids | set(self._levels) if everything or change.list_changed(Part.LEVELS) else \
                change.levels
            for lid in changed_ids:
                self._remove(self._levels.pop(lid, []))
                if lid in ids:
                    self._levels[lid] = self._level_actors(plan, lid)
            touched = True
            # level edits can change the curve of trajectories (planner.trajectory): rebuild them too
            everything_traj = True
        else:
            everything_traj = everything
        if everything_traj or change.touches(Part.TRAJECTORIES):
            ids = {t.id for t in plan.trajectories}
            if everything_traj or change.list_changed(Part.TRAJECTORIES):
                changed_ids = ids | set(self._trajectories)
            else:
                changed_ids = change.trajectories
            for tid in changed_ids:
                self._remove(self._trajectories.pop(tid, []))
                self._trajectory_parts.pop(tid, None)
                if tid in ids:
                    self._trajectories[tid] = self._trajectory_actors(plan, tid)
            touched = True
        return touched

    def _level_actors(self, plan: Plan, level_id: str) -> list:
        level = plan.level(level_id)
        lm = level.landmarks
        actors: list = []
        if lm.body_center_lps is not None:
            c = np.asarray(lm.body_center_lps, dtype=float)
            if lm.anterior_wall_lps is not None:
                a = np.asarray(lm.anterior_wall_lps, dtype=float)
                d = a - c
                nd = np.linalg.norm(d)
                pos = a + (d / nd * 14.0 if nd > 0 else np.array([0.0, -14.0, 0.0]))
            else:
                pos = c + np.array([0.0, -35.0, 0.0])
            actors.append(label_actor(level.name, pos, LEVEL_RGB))
        if self.show_landmarks:
            centers = [v for v in (getattr(lm, name) for name in LANDMARK_NAMES) if v is not None]
            if centers:
                actors.append(spheres_actor(centers, 1.3, LANDMARK_RGB, 10))
        for a in actors:
            self.renderer.AddActor(a)
        return actors

    def _trajectory_actors(self, plan: Plan, traj_id: str) -> list:
        traj = plan.trajectory(traj_id)
        parts = trajectory_actors(self.shape_of(traj))
        actors = list(parts.values())
        for a in actors:
            self.renderer.AddActor(a)
        self._trajectory_parts[traj_id] = parts
        return actors

    # ------------------------------------------------------------------ what is drawn (tests, reports)
    def trajectory_parts(self, traj_id: str) -> dict[str, vtkActor]:
        """The actors of one trajectory by part: instrument names and "zone" (empty if not drawn)."""
        return dict(self._trajectory_parts.get(traj_id, {}))

    def zone_sphere(self, traj_id: str) -> Optional[tuple[np.ndarray, float]]:
        """(centre LPS, radius mm) of the zone sphere drawn for a trajectory, or None."""
        actor = self._trajectory_parts.get(traj_id, {}).get("zone")
        if actor is None:
            return None
        src = actor.GetMapper().GetInputAlgorithm()
        return np.asarray(src.GetCenter(), dtype=float), float(src.GetRadius())

    def tube_axis_points(self, traj_id: str, name: str) -> Optional[np.ndarray]:
        """(n, 3) LPS points of the axis of an instrument tube as drawn, or None."""
        actor = self._trajectory_parts.get(traj_id, {}).get(name)
        if actor is None:
            return None
        tube = actor.GetMapper().GetInputAlgorithm()
        poly = tube.GetInput()
        pts = poly.GetPoints()
        return np.array([pts.GetPoint(i) for i in range(pts.GetNumberOfPoints())], dtype=float)

    def actor_count(self) -> int:
        return sum(len(v) for v in self._levels.values()) + sum(len(v) for v in self._trajectories.values())
