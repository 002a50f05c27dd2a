"""Slice-view geometry against independent references: scipy sampling of the volume (Volume.sample),
analytic planes, and the radiological display convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.imaging.volume import Volume, make_ijk_to_lps
from planner.display.slice_geometry import (
    SliceFrame,
    acquisition_axes,
    native_orientation,
    orientation_letters,
    polyline_runs_near_plane,
    sphere_cut,
)
from tests.views_support import rot_x, sagittal_volume


def _axial_volume(tilt_deg: float = 0.0) -> Volume:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 1000, size=(9, 30, 40)).astype(np.int16)
    direction = rot_x(tilt_deg)  # columns: i ~ L, j ~ P, k ~ S
    return Volume(arr, make_ijk_to_lps((-20.0, -15.0, 30.0), direction, (0.7, 0.9, 3.0)))


def _oblique_volume() -> Volume:
    """Strongly oblique (25 deg about two axes) and with a non-cubic grid."""
    a, b = math.radians(25), math.radians(18)
    rz = np.array([[math.cos(b), -math.sin(b), 0], [math.sin(b), math.cos(b), 0], [0, 0, 1]])
    direction = rz @ rot_x(25) @ np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 4000, size=(11, 37, 29)).astype(np.uint16)
    assert abs(a) > 0
    return Volume(arr, make_ijk_to_lps((5.0, -7.0, 12.0), direction, (0.8, 1.1, 3.5)))


@pytest.mark.parametrize("make", [lambda: sagittal_volume(tilt_deg=0), lambda: sagittal_volume(tilt_deg=9),
                                  _axial_volume, lambda: _axial_volume(14), _oblique_volume])
@pytest.mark.parametrize("orientation", ["sagittal", "coronal", "axial"])
def test_native_pixels_are_the_voxels_at_their_lps_position(make, orientation):
    vol = make()
    frame = SliceFrame(vol, orientation)
    rng = np.random.default_rng(1)
    for n in (0, frame.n_slices // 2, frame.n_slices - 1):
        img = frame.image(n)
        assert img.shape == (frame.shape[1], frame.shape[0])
        cs = rng.integers(0, frame.shape[0], 25)
        rs = rng.integers(0, frame.shape[1], 25)
        lps = frame.crn_to_world(np.c_[cs, rs, np.full(25, n)])
        # independent reference: the volume's own inverse geometry; every displayed pixel centre is a
        # voxel centre, and the pixel holds that voxel's value
        ijk = vol.world_to_ijk(lps)
        np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-6)
        i, j, k = np.round(ijk).astype(int).T
        np.testing.assert_array_equal(img[rs, cs], vol.array[k, j, i])
        # scipy's interpolation agrees away from the border (where it treats the edge as outside)
        inner = np.all((ijk > 0.5) & (ijk < np.array(vol.shape_ijk) - 1.5), axis=1)
        np.testing.assert_array_equal(img[rs, cs][inner].astype(float), vol.sample(lps[inner], order=0))
        # and the affine image map agrees with the plane projection of those points
        xy = frame.to_plane(lps)
        a = frame.image_affine(n)
        np.testing.assert_allclose(np.c_[cs, rs, np.ones(25)] @ a.T, xy, atol=1e-9)


@pytest.mark.parametrize("tilt", [0.0, 7.0, 20.0])
def test_radiological_screen_directions(tilt):
    vol = sagittal_volume(tilt_deg=tilt)
    lim = math.cos(math.radians(tilt)) - 1e-9
    sag = SliceFrame(vol, "sagittal")
    assert sag.ex @ np.array([0, 1, 0]) >= lim        # posterior on the right: anterior on the left
    assert sag.ey @ np.array([0, 0, -1]) >= lim       # superior at the top
    ax = SliceFrame(vol, "axial")
    assert ax.ex @ np.array([1, 0, 0]) > 0.99         # patient's left on the screen's right
    assert ax.ey @ np.array([0, 1, 0]) >= lim - 1e-9  # anterior at the top (seen from the feet)
    cor = SliceFrame(vol, "coronal")
    assert cor.ex @ np.array([1, 0, 0]) > 0.99
    assert cor.ey @ np.array([0, 0, -1]) >= lim - 1e-9


def test_acquisition_aligned_sagittal_shows_the_acquired_slices():
    vol = sagittal_volume(tilt_deg=12)
    assert native_orientation(vol) == "sagittal"
    frame = SliceFrame(vol, "sagittal")
    assert frame.n_slices == vol.shape_ijk[2]
    # each displayed slice is exactly one acquired slice: every pixel has the same k
    k = vol.world_to_ijk(frame.crn_to_world(np.c_[np.arange(10), np.arange(10), np.full(10, 5)]))[:, 2]
    np.testing.assert_allclose(k, 5, atol=1e-9)
    # the plane normal is the acquisition's slice normal, and the screen axes are the image's rows and
    # columns, turned by the 12 degree tilt (not the patient axes)
    assert abs(frame.normal @ vol.slice_normal()) > 1 - 1e-9
    assert frame.ex @ vol.direction[:, 0] == pytest.approx(1.0)
    assert frame.ex @ np.array([0.0, 1.0, 0.0]) == pytest.approx(math.cos(math.radians(12)))


def test_acquisition_axes_are_a_permutation_even_when_strongly_oblique():
    for vol in (sagittal_volume(tilt_deg=44), _oblique_volume(), _axial_volume(40)):
        axes = acquisition_axes(vol)
        assert sorted(axes.values()) == [0, 1, 2]


def test_letters_for_oblique_and_straight_directions():
    assert orientation_letters((1, 0, 0)) == "L"
    assert orientation_letters((-1, 0, 0)) == "R"
    assert orientation_letters((0, -1, 0)) == "A"
    assert orientation_letters((0, 0, -1)) == "I"
    assert orientation_letters((0.05, 0.99, 0.0)) == "P"
    s = math.sin(math.radians(30))
    c = math.cos(math.radians(30))
    assert orientation_letters((0, -c, s)) == "AS"
    assert orientation_letters((0, s, -c)) == "IP"
    assert orientation_letters((0.6, 0.6, 0.53)) in ("LPS", "PLS")


def test_edge_letters_of_a_tilted_sagittal_view_are_combined_and_opposite():
    frame = SliceFrame(sagittal_volume(tilt_deg=20), "sagittal")
    e = frame.edge_letters()
    opposite = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
    assert e["left"][0] == "A" and e["right"][0] == "P" and e["top"][0] == "S" and e["bottom"][0] == "I"
    assert len(e["top"]) == 2  # 20 degrees: a second letter
    assert "".join(opposite[ch] for ch in e["left"]) == e["right"]
    assert "".join(opposite[ch] for ch in e["top"]) == e["bottom"]


@pytest.mark.parametrize("backend", ["vtk", "numpy"])
def test_patient_axis_reslice_matches_scipy_sampling(backend):
    vol = sagittal_volume(tilt_deg=10, nk=12, nj=60, ni=50, spacing=(1.0, 1.0, 3.0), dtype=np.float32)
    frame = SliceFrame(vol, "axial", mode="patient", reslice_backend=backend)
    np.testing.assert_allclose(frame.ex, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(frame.ey, [0, 1, 0], atol=1e-12)
    n = frame.n_slices // 2
    img = frame.image(n)
    rows, cols = np.mgrid[0:frame.shape[1], 0:frame.shape[0]]
    lps = frame.crn_to_world(np.c_[cols.ravel(), rows.ravel(), np.full(rows.size, n)])
    inside = np.array([vol.contains(p, margin_voxels=-1.0) for p in lps])
    ref = vol.sample(lps[inside], order=1)
    np.testing.assert_allclose(img.ravel()[inside], ref, rtol=1e-4, atol=1e-2)


def test_slice_of_and_from_plane_round_trip():
    vol = _oblique_volume()
    frame = SliceFrame(vol, "coronal")
    p = vol.center_lps() + np.array([3.0, -2.0, 5.0])
    n = frame.slice_of(p)
    q = frame.from_plane(frame.to_plane(p[None])[0], n)
    # q is p moved onto slice n along the slice axis: same plane coordinates
    np.testing.assert_allclose(frame.to_plane(q[None])[0], frame.to_plane(p[None])[0], atol=1e-9)
    assert abs(frame.distance_to_slice(q[None], n)[0]) < 1e-9
    assert abs(frame.distance_to_slice(p[None], n)[0]) <= frame.slice_spacing / 2 + 1e-9


def test_sphere_cut_and_tube_runs():
    normal = np.array([0.0, 0.0, 1.0])
    cut = sphere_cut((1.0, 2.0, 3.0), 5.0, np.zeros(3), normal)
    assert cut is not None
    np.testing.assert_allclose(cut[0], [1, 2, 0])
    assert cut[1] == pytest.approx(4.0)
    assert sphere_cut((0, 0, 6.0), 5.0, np.zeros(3), normal) is None
    # a line from z=-10 to z=10 crosses the plane z=0: the part within 2 mm is about 4 mm long
    runs = polyline_runs_near_plane(np.array([[0, 0, -10.0], [0, 0, 10.0]]), np.zeros(3), normal, 2.0, step_mm=0.1)
    assert len(runs) == 1
    assert np.ptp(runs[0][:, 2]) == pytest.approx(4.0, abs=0.15)
    assert polyline_runs_near_plane(np.array([[0, 0, 5.0], [0, 1, 5.0]]), np.zeros(3), normal, 2.0) == []
