"""The level finder is bounded by its input: working copies capped in size, a curve that leaves the spine
stops with a message, and odd volumes get a message instead of an exception (planner.levels.grid/api)."""

from __future__ import annotations

import numpy as np
import pytest

from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.levels import LevelDetectionError, propose_levels_detailed
from planner.levels.grid import SpineCurve, work_grid, working_volume


def _volume(array: np.ndarray, spacing=(1.0, 1.0, 1.0), modality="MR", direction=None) -> Volume:
    return Volume(array, make_ijk_to_lps((0.0, 0.0, 0.0), np.eye(3) if direction is None else direction, spacing),
                  ImageInfo(modality=modality))


def _huge(value, dtype, shape=(2000, 1500, 1500)) -> np.ndarray:
    """A 4.5-billion-voxel array that takes no memory (a broadcast view)."""
    return np.broadcast_to(np.full(1, value, dtype), shape)


def test_work_grid_is_capped_whatever_the_input_size():
    vol = _volume(_huge(-1000, np.int16), spacing=(0.3, 0.3, 0.3), modality="CT")
    grid = work_grid(vol, 1.5, fill=-1024.0, max_voxels=2_000_000)
    assert grid.array.size <= 2_000_000
    assert grid.spacing > 1.5  # coarser, not cropped: the grid still covers the whole volume
    far_corner = grid.origin_lps + grid.spacing * (np.array(grid.shape[::-1]) - 1)
    assert np.all(far_corner >= vol.corners_lps().max(0) - grid.spacing)


def test_working_volume_is_capped_and_keeps_the_geometry():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (40, 120, 160)).astype(np.uint8)
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # sagittal slices, tilted frame
    vol = _volume(arr, spacing=(0.5, 0.5, 4.0), direction=direction)
    lo, hi = vol.corners_lps().min(0) + 5.0, vol.corners_lps().max(0) - 5.0
    small = working_volume(vol, (lo, hi), max_voxels=50_000)
    assert small.array.dtype == np.float32 and small.array.size <= 50_000
    # the slices are kept (thick-slice MRI is measured in its acquired slices); in-plane is subsampled
    assert np.isclose(small.spacing[2], 4.0) and small.spacing[0] > 0.5
    # same values at the same LPS points (its voxel centres are voxel centres of the input)
    ijk = np.array([[1, 2, 1], [3, 5, 2], [0, 0, 0]], dtype=float)
    pts = small.ijk_to_world(ijk)
    assert np.allclose(small.sample(pts, order=0), vol.sample(pts, order=0))


def test_working_volume_replaces_values_that_are_not_finite():
    arr = np.full((10, 20, 20), 5.0, np.float32)
    arr[2, 3, 4] = np.nan
    arr[3, 3, 4] = np.inf
    out = working_volume(_volume(arr))
    assert np.all(np.isfinite(out.array)) and out.array.max() == 5.0


def test_a_curve_that_leaves_the_spine_stops_with_a_message():
    pts = np.column_stack([np.zeros(200), np.zeros(200), np.linspace(0.0, 4000.0, 200)])
    curve = SpineCurve.from_points(pts)
    with pytest.raises(LevelDetectionError, match="could not be followed"):
        curve.resampled(1.0)
    assert len(SpineCurve.from_points(pts[:10]).resampled(1.0)) > 100


@pytest.mark.parametrize("case", ["huge_ct", "huge_mr", "tiny_ct", "one_slice", "nan_ct", "noise_ct", "noise_mr"])
def test_odd_volumes_get_a_message(case):
    rng = np.random.default_rng(0)
    hints = None
    if case == "huge_ct":
        vol = _volume(_huge(-1000, np.int16), spacing=(0.3, 0.3, 0.3), modality="CT")
    elif case == "huge_mr":
        vol = _volume(_huge(100, np.uint16), spacing=(0.3, 0.3, 0.3))
        hints = {"L1": (200.0, 200.0, 400.0), "L5": (200.0, 200.0, 250.0)}
    elif case == "tiny_ct":
        vol = _volume(np.zeros((3, 3, 3), np.int16), modality="CT")
    elif case == "one_slice":
        vol = _volume(np.zeros((1, 300, 300), np.int16), modality="CT")
    elif case == "nan_ct":
        vol = _volume(np.full((60, 80, 80), np.nan, np.float32), spacing=(3.0, 3.0, 3.0), modality="CT")
    elif case == "noise_ct":
        vol = _volume(rng.normal(0, 500, (100, 170, 170)).astype(np.int16), spacing=(2.0, 2.0, 2.0), modality="CT")
    else:
        sag = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]).T
        vol = _volume(rng.integers(0, 255, (60, 300, 300)).astype(np.uint8), spacing=(1.0, 1.0, 4.0), direction=sag)
        hints = {"L1": (30.0, 150.0, 250.0), "L5": (30.0, 150.0, 100.0)}
    with pytest.raises(LevelDetectionError):
        propose_levels_detailed(vol, hints)
