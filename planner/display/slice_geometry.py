"""Slice geometry for the 2D views: which plane a view shows and how its pixels map to LPS mm.

No Qt here (numpy, and VTK only for the optional resliced mode), so it is tested directly.

A :class:`SliceFrame` maps display indices ``(c, r, n)`` (screen column to the right, screen row
down, slice number) to patient space with one 4x4 matrix ``crn_to_lps``. Two modes:

* ``"acquisition"`` (the default, viewer-conventions.md 1.5): the view shows planes of the volume's
  own axes. The volume axis closest to the view's anatomical normal is the slice axis, so the
  sagittal view of an oblique sagittal acquisition shows exactly the acquired slices. Slicing is
  plain array indexing (no interpolation, no cost); sheared (gantry-tilt) geometry stays exact
  because the display uses the full affine map.
* ``"patient"``: planes of the patient axes (true sagittal/coronal/axial), resampled with
  ``vtkImageReslice`` (or numpy; ``bench/view_bench.py`` measures both).

Screen directions follow the radiological convention (viewer-conventions.md 1.3): axial and
coronal show the patient's left on the screen's right; axial is seen from the feet with anterior
up; sagittal shows anterior on the left and superior up, as PACS viewers do.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, Optional, Sequence

import numpy as np

from planner.imaging.volume import Volume

Orientation = Literal["sagittal", "coronal", "axial"]
ORIENTATIONS: tuple[Orientation, ...] = ("sagittal", "coronal", "axial")

#: Desired screen right and screen down directions in LPS for each orientation.
SCREEN_AXES_LPS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),   # right = posterior, down = inferior
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),    # right = patient left, down = inferior
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),       # right = patient left, down = posterior
}
#: The LPS axis each orientation's slices are perpendicular to (0 = x/L, 1 = y/P, 2 = z/S).
NORMAL_LPS_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}

#: A direction component must exceed this (as a cosine) to add a second/third orientation letter.
#: 0.15 is about 8.6 degrees: a scan tilted a few degrees keeps single letters; clearly oblique
#: planes get combined letters ("AS", "PI", ...). Display choice, not a clinical number.
ORIENTATION_LETTER_THRESHOLD = 0.15

_POS_LETTERS = ("L", "P", "S")
_NEG_LETTERS = ("R", "A", "I")


def orientation_letters(direction_lps: Sequence[float], threshold: float = ORIENTATION_LETTER_THRESHOLD) -> str:
    """Letters for a direction in LPS, strongest first: (0.1, 0.99, 0) -> "P"; (0, 0.7, 0.7) -> "PS"."""
    d = np.asarray(direction_lps, dtype=float)
    n = np.linalg.norm(d)
    if n == 0:
        return ""
    d = d / n
    order = np.argsort(-np.abs(d), kind="stable")
    out = ""
    for idx, ax in enumerate(order):
        v = d[ax]
        if idx > 0 and abs(v) < threshold:
            break
        out += _POS_LETTERS[ax] if v > 0 else _NEG_LETTERS[ax]
    return out


def acquisition_axes(volume: Volume) -> dict[str, int]:
    """For each orientation, the volume index axis (0 = i, 1 = j, 2 = k) its slices cut across:
    the assignment of the three volume axes to the three anatomical normals that best matches the
    direction cosines (so every orientation gets a distinct axis even for strongly oblique scans)."""
    d = np.abs(volume.direction)  # rows: LPS axis, columns: volume axis
    best: Optional[tuple[float, tuple[int, ...]]] = None
    for perm in itertools.permutations(range(3)):
        # perm[lps_axis] = volume axis
        score = sum(d[lps, perm[lps]] for lps in range(3))
        if best is None or score > best[0] + 1e-12:
            best = (score, perm)
    assert best is not None
    perm = best[1]
    return {o: perm[NORMAL_LPS_AXIS[o]] for o in ORIENTATIONS}


def native_orientation(volume: Volume) -> Orientation:
    """The orientation of the acquired slices (the one whose slice axis is k)."""
    axes = acquisition_axes(volume)
    return next(o for o in ORIENTATIONS if axes[o] == 2)


class SliceFrame:
    """The display frame of one view of one volume (see the module docstring)."""

    def __init__(self, volume: Volume, orientation: Orientation, mode: str = "acquisition",
                 reslice_backend: str = "vtk") -> None:
        if orientation not in SCREEN_AXES_LPS:
            raise ValueError(f"unknown orientation {orientation!r}")
        self.volume = volume
        self.orientation = orientation
        self.mode = mode
        self.reslice_backend = reslice_backend
        self._vtk_reslice = None
        right, down = (np.array(v) for v in SCREEN_AXES_LPS[orientation])
        if mode == "acquisition":
            self._init_native(right, down)
        elif mode == "patient":
            self._init_resliced(right, down)
        else:
            raise ValueError(f"unknown slice mode {mode!r}")
        self._derive_axes()
        self.ref_lps = volume.center_lps()

    def _derive_axes(self) -> None:
        """Screen axes, normal and spacings from ``crn_to_lps``."""
        self.lps_to_crn = np.linalg.inv(self.crn_to_lps)
        m = self.crn_to_lps[:3, :3]
        self.ex = m[:, 0] / np.linalg.norm(m[:, 0])
        ey = m[:, 1] - self.ex * (m[:, 1] @ self.ex)
        self.ey = ey / np.linalg.norm(ey)
        self.normal = np.cross(self.ex, self.ey)
        self.pixel_spacing = (float(np.linalg.norm(m[:, 0])), float(np.linalg.norm(m[:, 1])))
        #: Distance between neighbouring slices along the plane normal (mm).
        self.slice_spacing = float(abs(m[:, 2] @ self.normal)) or 1.0

    # ------------------------------------------------------------------ construction
    def _init_native(self, right: np.ndarray, down: np.ndarray) -> None:
        vol = self.volume
        slice_axis = acquisition_axes(vol)[self.orientation]
        inplane = [a for a in range(3) if a != slice_axis]
        dirs = vol.direction
        # the in-plane volume axis closest to screen right becomes the horizontal one
        if abs(dirs[:, inplane[0]] @ right) >= abs(dirs[:, inplane[1]] @ right):
            h_axis, v_axis = inplane
        else:
            v_axis, h_axis = inplane
        h_sign = 1 if dirs[:, h_axis] @ right >= 0 else -1
        v_sign = 1 if dirs[:, v_axis] @ down >= 0 else -1
        n_ijk = vol.shape_ijk
        crn_to_ijk = np.zeros((4, 4))
        crn_to_ijk[3, 3] = 1.0
        for col, (axis, sign) in enumerate(((h_axis, h_sign), (v_axis, v_sign), (slice_axis, 1))):
            crn_to_ijk[axis, col] = sign
            if sign < 0:
                crn_to_ijk[axis, 3] = n_ijk[axis] - 1
        self.crn_to_ijk = crn_to_ijk
        self.crn_to_lps = vol.ijk_to_lps @ crn_to_ijk
        self.shape = (n_ijk[h_axis], n_ijk[v_axis], n_ijk[slice_axis])  # (cols, rows, slices)
        self._axes = (h_axis, h_sign, v_axis, v_sign, slice_axis)

    def _init_resliced(self, right: np.ndarray, down: np.ndarray) -> None:
        vol = self.volume
        normal = np.cross(right, down)
        corners = vol.corners_lps()
        px, py, pn = corners @ right, corners @ down, corners @ normal
        spacing = vol.spacing
        s = float(min(spacing))
        # slice spacing: the volume's spacing along the axis closest to the normal
        k_axis = int(np.argmax(np.abs(vol.direction.T @ normal)))
        sn = float(spacing[k_axis])
        nc = min(2048, int(math.floor((px.max() - px.min()) / s)) + 1)
        nr = min(2048, int(math.floor((py.max() - py.min()) / s)) + 1)
        ns = max(1, int(math.floor((pn.max() - pn.min()) / sn)) + 1)
        origin = right * px.min() + down * py.min() + normal * pn.min()
        m = np.eye(4)
        m[:3, 0] = right * s
        m[:3, 1] = down * s
        m[:3, 2] = normal * sn
        m[:3, 3] = origin
        self.crn_to_lps = m
        self.crn_to_ijk = vol.lps_to_ijk @ m
        self.shape = (nc, nr, ns)
        self._axes = None

    # ------------------------------------------------------------------ mapping
    @property
    def n_slices(self) -> int:
        return int(self.shape[2])

    def crn_to_world(self, crn: np.ndarray | Sequence[float]) -> np.ndarray:
        p = np.asarray(crn, dtype=float)
        return p @ self.crn_to_lps[:3, :3].T + self.crn_to_lps[:3, 3]

    def world_to_crn(self, lps: np.ndarray | Sequence[float]) -> np.ndarray:
        p = np.asarray(lps, dtype=float)
        return p @ self.lps_to_crn[:3, :3].T + self.lps_to_crn[:3, 3]

    def slice_of(self, lps: Sequence[float]) -> int:
        """The nearest slice to an LPS point, clamped to the volume."""
        n = float(self.world_to_crn(lps)[2])
        return int(min(max(round(n), 0), self.n_slices - 1))

    def plane_point(self, n: float) -> np.ndarray:
        return self.crn_to_world((0.0, 0.0, float(n)))

    def distance_to_slice(self, points_lps: np.ndarray, n: float) -> np.ndarray:
        """Signed distance (mm) of points (..., 3) from the plane of slice ``n``."""
        return (np.asarray(points_lps, dtype=float) - self.plane_point(n)) @ self.normal

    def slice_position_mm(self, n: float) -> float:
        """Position of slice ``n`` along the plane normal, as DICOM Slice Location would give it."""
        return float(self.plane_point(n) @ self.normal)

    def to_plane(self, points_lps: np.ndarray) -> np.ndarray:
        """Plane coordinates (x right, y down, mm) of points (..., 3), relative to the volume centre."""
        d = np.asarray(points_lps, dtype=float) - self.ref_lps
        return np.stack([d @ self.ex, d @ self.ey], axis=-1)

    def from_plane(self, xy: Sequence[float], n: float) -> np.ndarray:
        """The LPS point of plane coordinates ``xy`` on slice ``n``."""
        x, y = float(xy[0]), float(xy[1])
        # solve p = P(c, r, n) with (p - ref).ex = x, (p - ref).ey = y
        m = self.crn_to_lps[:3, :3]
        base = self.plane_point(n) - self.ref_lps
        a = np.array([[m[:, 0] @ self.ex, m[:, 1] @ self.ex], [m[:, 0] @ self.ey, m[:, 1] @ self.ey]])
        rhs = np.array([x - base @ self.ex, y - base @ self.ey])
        c, r = np.linalg.solve(a, rhs)
        return self.crn_to_world((c, r, float(n)))

    def image_affine(self, n: float) -> np.ndarray:
        """2x3 matrix from image pixel (c, r) of slice ``n`` to plane coordinates (x, y) in mm."""
        m = self.crn_to_lps[:3, :3]
        base = self.plane_point(n) - self.ref_lps
        return np.array([[m[:, 0] @ self.ex, m[:, 1] @ self.ex, base @ self.ex],
                         [m[:, 0] @ self.ey, m[:, 1] @ self.ey, base @ self.ey]])

    def plane_bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the whole volume projected on the view plane (mm)."""
        xy = self.to_plane(self.volume.corners_lps())
        return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())

    def edge_letters(self) -> dict[str, str]:
        """Orientation letters for the four screen edges."""
        return {"right": orientation_letters(self.ex), "left": orientation_letters(-self.ex),
                "bottom": orientation_letters(self.ey), "top": orientation_letters(-self.ey)}

    # ------------------------------------------------------------------ pixels
    def image(self, n: int) -> np.ndarray:
        """The 2D array (rows, cols) of slice ``n`` (a view of the volume array when native)."""
        n = int(min(max(n, 0), self.n_slices - 1))
        if self._axes is not None:
            return self._native_image(n)
        if self.reslice_backend == "numpy":
            return self._numpy_reslice(n)
        return self._vtk_reslice_image(n)

    def _native_image(self, n: int) -> np.ndarray:
        h_axis, h_sign, v_axis, v_sign, slice_axis = self._axes  # type: ignore[misc]
        arr = self.volume.array  # (k, j, i): array axis of volume axis a is 2 - a
        index: list = [slice(None)] * 3
        index[2 - slice_axis] = n
        img = arr[tuple(index)]
        # remaining array axes, in order: the larger volume axis first
        remaining = [a for a in (2, 1, 0) if a != slice_axis]  # volume axes in array order
        if remaining[0] != v_axis:  # want rows = v_axis
            img = img.T
        if v_sign < 0:
            img = img[::-1, :]
        if h_sign < 0:
            img = img[:, ::-1]
        return img

    def _numpy_reslice(self, n: int) -> np.ndarray:
        from scipy import ndimage

        nc, nr, _ = self.shape
        c, r = np.meshgrid(np.arange(nc, dtype=np.float32), np.arange(nr, dtype=np.float32))
        m = self.crn_to_ijk
        coords = [m[a, 0] * c + m[a, 1] * r + (m[a, 2] * n + m[a, 3]) for a in (2, 1, 0)]  # array order k, j, i
        arr = self.volume.array
        return ndimage.map_coordinates(arr, coords, order=1, mode="constant", cval=float(arr.min()),
                                       prefilter=False)

    def _vtk_reslice_image(self, n: int) -> np.ndarray:
        from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
        from vtkmodules.vtkCommonMath import vtkMatrix4x4
        from vtkmodules.vtkCommonDataModel import vtkImageData
        from vtkmodules.vtkImagingCore import vtkImageReslice

        if self._vtk_reslice is None:
            arr = np.ascontiguousarray(self.volume.array)
            data = vtkImageData()
            nk, nj, ni = arr.shape
            data.SetDimensions(ni, nj, nk)  # ijk space: origin 0, spacing 1 (geometry in the axes matrix)
            scalars = numpy_to_vtk(arr.ravel(), deep=False)
            data.GetPointData().SetScalars(scalars)
            reslice = vtkImageReslice()
            reslice.SetInputData(data)
            mat = vtkMatrix4x4()
            for i in range(4):
                for j in range(4):
                    mat.SetElement(i, j, float(self.crn_to_ijk[i, j]))
            reslice.SetResliceAxes(mat)
            reslice.SetInterpolationModeToLinear()
            reslice.SetOutputSpacing(1.0, 1.0, 1.0)
            reslice.SetOutputOrigin(0.0, 0.0, 0.0)
            reslice.SetBackgroundLevel(float(arr.min()))
            self._vtk_keep = (arr, scalars, data, mat)
            self._vtk_reslice = reslice
        nc, nr, _ = self.shape
        rs = self._vtk_reslice
        rs.SetOutputExtent(0, nc - 1, 0, nr - 1, n, n)
        rs.Update()
        out = rs.GetOutput()
        return vtk_to_numpy(out.GetPointData().GetScalars()).reshape(nr, nc)



#: Largest side of a resliced oblique plane (pixels): keeps a reslice within a few milliseconds.
MAX_PLANE_PIXELS = 1024


class PlaneFrame(SliceFrame):
    """One plane of any orientation through a volume (the views along a trajectory).

    The plane passes through ``point_lps`` with screen axes ``right`` and ``down`` (unit vectors in
    LPS; ``down`` is made orthogonal to ``right``); its normal is ``right x down``. The image covers
    the volume's outline projected on the plane, at ``pixel_mm`` (the volume's finest spacing by
    default), or only the part of it within ``extent_mm`` (``(right_min, down_min, right_max,
    down_max)`` in mm from ``point_lps``: a view that shows a region needs no more pixels), resampled
    like the ``"patient"`` mode (``vtkImageReslice`` or numpy). There is one
    slice (``n == 0``); ``slice_spacing`` is the sampled thickness (``pixel_mm``), which decides
    which plan objects count as cut by the plane. :meth:`set_plane` moves the plane in place and
    keeps the reslice pipeline, so following a dragged trajectory costs one reslice per paint.
    Plane coordinates are relative to ``ref_lps`` (``point_lps`` unless given).
    """

    def __init__(self, volume: Volume, point_lps: Sequence[float], right: Sequence[float],
                 down: Sequence[float], *, ref_lps: Optional[Sequence[float]] = None,
                 pixel_mm: Optional[float] = None, extent_mm: Optional[Sequence[float]] = None,
                 reslice_backend: str = "vtk") -> None:
        self.volume = volume
        self.orientation = "oblique"  # type: ignore[assignment]
        self.mode = "oblique"
        self.reslice_backend = reslice_backend
        self._vtk_reslice = None
        self._axes = None
        self.pixel_mm = float(pixel_mm) if pixel_mm else float(min(volume.spacing))
        self.set_plane(point_lps, right, down, ref_lps=ref_lps, extent_mm=extent_mm)

    def set_plane(self, point_lps: Sequence[float], right: Sequence[float], down: Sequence[float], *,
                  ref_lps: Optional[Sequence[float]] = None, extent_mm: Optional[Sequence[float]] = None) -> None:
        point = np.asarray(point_lps, dtype=float).reshape(3)
        r = np.asarray(right, dtype=float).reshape(3)
        r = r / np.linalg.norm(r)
        d = np.asarray(down, dtype=float).reshape(3)
        d = d - r * float(d @ r)
        d = d / np.linalg.norm(d)
        normal = np.cross(r, d)
        rel = self.volume.corners_lps() - point
        x0, y0, x1, y1 = float(rel.dot(r).min()), float(rel.dot(d).min()), float(rel.dot(r).max()), \
            float(rel.dot(d).max())
        if extent_mm is not None:
            ex0, ey0, ex1, ey1 = (float(v) for v in extent_mm)
            x0, y0, x1, y1 = max(x0, ex0), max(y0, ey0), min(x1, ex1), min(y1, ey1)
            if x1 <= x0 or y1 <= y0:  # the region misses the volume: one background pixel
                x1, y1 = x0, y0
        s = self.pixel_mm
        if max(x1 - x0, y1 - y0) / s >= MAX_PLANE_PIXELS:
            s = float(max(x1 - x0, y1 - y0)) / (MAX_PLANE_PIXELS - 1)
        nc = int(math.floor((x1 - x0) / s)) + 1
        nr = int(math.floor((y1 - y0) / s)) + 1
        m = np.eye(4)
        m[:3, 0] = r * s
        m[:3, 1] = d * s
        m[:3, 2] = normal * self.pixel_mm
        m[:3, 3] = point + r * x0 + d * y0
        self.crn_to_lps = m
        self.crn_to_ijk = self.volume.lps_to_ijk @ m
        self.shape = (nc, nr, 1)
        self._derive_axes()
        self.ref_lps = point.copy() if ref_lps is None else np.asarray(ref_lps, dtype=float).reshape(3).copy()
        if self._vtk_reslice is not None:
            mat = self._vtk_keep[3]
            for i in range(4):
                for j in range(4):
                    mat.SetElement(i, j, float(self.crn_to_ijk[i, j]))
            self._vtk_reslice.SetResliceAxes(mat)
            self._vtk_reslice.Modified()

    def slice_of(self, lps: Sequence[float]) -> int:
        return 0

    def distance_to_plane(self, points_lps: np.ndarray) -> np.ndarray:
        """Signed distance (mm) of points (..., 3) from the plane."""
        return self.distance_to_slice(points_lps, 0)


# ---------------------------------------------------------------------- cuts of plan objects
def polyline_runs_near_plane(points_lps: np.ndarray, plane_point: np.ndarray, normal: np.ndarray,
                             half_width_mm: float, step_mm: float = 0.5) -> list[np.ndarray]:
    """Parts of a polyline within ``half_width_mm`` of a plane, as LPS runs (each (m, 3), m >= 2).

    Used for a tube of radius r seen in a slice: the tube cuts the slice where its axis is within
    r (plus half the slice thickness) of the plane."""
    pts = np.asarray(points_lps, dtype=float).reshape(-1, 3)
    if len(pts) < 2:
        return []
    dense = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        seg = np.linalg.norm(b - a)
        k = max(1, int(math.ceil(seg / step_mm)))
        t = np.linspace(0, 1, k + 1)[1:, None]
        dense.extend(a + (b - a) * t)
    dense_arr = np.asarray(dense)
    d = (dense_arr - plane_point) @ normal
    inside = np.abs(d) <= half_width_mm
    runs: list[np.ndarray] = []
    start = None
    for idx, flag in enumerate(inside):
        if flag and start is None:
            start = idx
        if (not flag or idx == len(inside) - 1) and start is not None:
            stop = idx + 1 if flag else idx
            if stop - start >= 1:
                run = dense_arr[start:stop]
                runs.append(run if len(run) >= 2 else np.vstack([run, run]))
            start = None
    return runs


def sphere_cut(center_lps: Sequence[float], radius_mm: float, plane_point: np.ndarray,
               normal: np.ndarray) -> Optional[tuple[np.ndarray, float]]:
    """The circle where a sphere meets a plane: (centre in LPS, radius mm), or None."""
    c = np.asarray(center_lps, dtype=float)
    d = float((c - plane_point) @ normal)
    if abs(d) >= radius_mm:
        return None
    return c - d * normal, math.sqrt(radius_mm ** 2 - d ** 2)
