"""The level finder on every labelled real scan of ../shared/data, against the acceptance of issue 10.

One session-scoped fixture runs ``propose_levels_detailed`` once per scan and mark mode (the 21 MRIs of
``lumbar_mri_vb/`` with marks at the L1 and L5 label centroids, the same marks moved 5 mm inside the
body, and no marks; the two CTs) and scores the results with ``tests/anatomy_reference.py`` (walls and
endplates on the labelled body's mid-sagittal line, CT pedicle centres from the labels; see its
docstring). Each acceptance threshold is one test. Thresholds the MRI part has not reached yet are
marked ``xfail(strict=True)`` with the value measured when the mark was set (``bench/anatomy_bench.py``
prints the current ones), so a test turns red when it starts passing and its mark is to be removed.
Time and memory are measured by ``bench/anatomy_bench.py``, not here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from planner.imaging import load_path
from planner.levels import LevelDetectionError, propose_levels_detailed
from tests.anatomy_reference import (
    RAS_TO_LPS,
    ct_cases,
    mri_case,
    mri_cases,
    moved_mark,
    score_levels,
)

MRI_MODES = ("centroid", "moved", "none")


def _marks(case: dict, mode: str) -> dict | None:
    if mode == "none":
        return None
    code = {n: v for v, n in case["names"].items()}
    rng = np.random.default_rng(sum(map(ord, case["case"])))  # the bench's seed
    out = {}
    for name in ("L1", "L5"):
        c = case["bodies"][name].centroid
        out[name] = c if mode == "centroid" else moved_mark(case["labels"], case["ijk_to_lps"], code[name], c, rng)
    return out


def _run(volume, hints, modality=None) -> tuple[list, str | None]:
    try:
        return propose_levels_detailed(volume, hints, modality=modality).levels, None
    except LevelDetectionError as exc:
        return [], str(exc)


@pytest.fixture(scope="session")
def real_results(shared_data):
    """{("mri", case, mode) | ("ct", name, mode): score dict with "error" (the message, or None)}."""
    folder = shared_data / "lumbar_mri_vb"
    out = {}
    for name in mri_cases(folder):
        case = mri_case(folder, name)
        (_, volume), = load_path(folder / f"{name}_mr.nii.gz").images.items()
        for mode in MRI_MODES:
            levels, error = _run(volume, _marks(case, mode))
            out[("mri", name, mode)] = {**score_levels(levels, case), "error": error}
    for name, case in ct_cases(shared_data).items():
        (_, volume), = load_path(case["image"]).images.items()
        hints = {"L3": case["bodies"]["L3"].centroid} if name == "tptbox" else None
        levels, error = _run(volume, hints, modality="CT")
        out[("ct", name, "mark" if hints else "none")] = {**score_levels(levels, case), "error": error}
    return out


def _mri(results: dict, mode: str) -> list[dict]:
    return [r for (kind, _, m), r in results.items() if kind == "mri" and m == mode]


def _errors(runs: list[dict], key: str) -> np.ndarray:
    return np.abs([e[key] for r in runs for e in r["levels"].values() if e.get(key) is not None])


def test_every_mri_scan_loads_with_the_geometry_nibabel_reads(shared_data):
    """The project's NIfTI reader gives these scans (no DICOM header, left/right unknown) the same voxels
    and the same ijk -> LPS mapping as nibabel (RAS affine turned to LPS)."""
    nib = pytest.importorskip("nibabel")
    folder = shared_data / "lumbar_mri_vb"
    names = mri_cases(folder)
    assert len(names) == 21
    for name in names:
        (_, volume), = load_path(folder / f"{name}_mr.nii.gz").images.items()
        img = nib.load(str(folder / f"{name}_mr.nii.gz"))
        assert np.allclose(volume.ijk_to_lps, RAS_TO_LPS @ img.affine, atol=1e-4), name
        assert np.array_equal(volume.array, np.asarray(img.dataobj).transpose(2, 1, 0)), name
        meta = json.loads((folder / f"{name}.json").read_text())
        assert set(meta["body_centroid_lps_mm"]) == set(meta["levels_top_down"]), name


def test_every_real_scan_gets_levels_or_a_clear_message(real_results):
    for key, r in real_results.items():
        assert r["found_right"] or r["misnamed"] or r["off"] or (r["error"] and len(r["error"]) > 20), key


# ------------------------------------------------------------------------------------ MRI, two marks
def _share(runs: list[dict]) -> float:
    return sum(len(r["found_right"]) for r in runs) / sum(len(r["labelled"]) for r in runs)


@pytest.mark.xfail(strict=True, reason="measured 62 % (centroid marks) and 64 % (moved marks)")
@pytest.mark.parametrize("mode", ["centroid", "moved"])
def test_mri_two_marks_find_97_percent_of_the_levels(real_results, mode):
    assert _share(_mri(real_results, mode)) >= 0.97


@pytest.mark.xfail(strict=True, reason="measured 2 misnamed (centroid marks), 1 (moved marks)")
@pytest.mark.parametrize("mode", ["centroid", "moved"])
def test_mri_two_marks_misname_no_level(real_results, mode):
    assert sum(len(r["misnamed"]) for r in _mri(real_results, mode)) == 0


@pytest.mark.xfail(strict=True, reason="measured median 6.9 / 6.4 mm, p95 11.7 / 11.4 mm (centroid / moved)")
@pytest.mark.parametrize("mode", ["centroid", "moved"])
def test_mri_two_marks_body_centres(real_results, mode):
    e = _errors(_mri(real_results, mode), "centre")
    assert e.size and np.median(e) <= 3.0 and np.percentile(e, 95) <= 6.0


@pytest.mark.xfail(strict=True, reason="measured median posterior 15.0 / 14.4 mm, anterior 2.5 / 2.9 mm "
                                       "(centroid / moved)")
@pytest.mark.parametrize("mode", ["centroid", "moved"])
@pytest.mark.parametrize("wall", ["posterior", "anterior"])
def test_mri_two_marks_walls(real_results, mode, wall):
    e = _errors(_mri(real_results, mode), wall)
    assert e.size and np.median(e) <= 2.0


# ------------------------------------------------------------------------------------ MRI, no marks
@pytest.mark.xfail(strict=True, reason="measured 0 of 21 scans: without marks the MRI levels are not named yet")
def test_mri_without_marks_names_every_level_on_80_percent_of_the_scans(real_results):
    runs = _mri(real_results, "none")
    right = [r for r in runs if r["found_right"] and len(r["found_right"]) == len(r["labelled"]) and not r["misnamed"]]
    assert len(right) >= 0.8 * len(runs)


def test_mri_without_marks_never_gives_a_wrong_ladder(real_results):
    """A scan that cannot be named says so instead of proposing a ladder with a wrong name."""
    for r in _mri(real_results, "none"):
        assert not r["misnamed"], r["misnamed"]
        if not r["found_right"]:
            assert r["error"], r


# ------------------------------------------------------------------------------------ CT
def test_ct_levels_and_body_centres(real_results):
    r = real_results[("ct", "totalseg", "none")]
    assert r["found_right"] == r["labelled"] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    assert max(_errors([r], "centre")) <= 4.0


def test_ct_s1_pedicles_lie_in_s1(real_results):
    e = real_results[("ct", "totalseg", "none")]["levels"]["S1"]
    assert e["pedicle_left_in_label"] is True and e["pedicle_right_in_label"] is True


@pytest.mark.xfail(strict=True, reason="measured: T12 left 7.3, L3 right 6.1, L5 left 5.1, S1 7.3/12.8 mm "
                                       "(median 5.0 / 4.7 mm)")
def test_ct_pedicles_within_4_5_mm_at_every_level_of_example_ct(real_results):
    r = real_results[("ct", "totalseg", "none")]
    errs = [e[k] for e in r["levels"].values() for k in ("pedicle_left", "pedicle_right") if e.get(k) is not None]
    assert len(errs) >= 13 and max(errs) <= 4.5


@pytest.mark.xfail(strict=True, reason="measured: on the 70 mm L2-L4 crop the discs are misplaced and the marked "
                                       "L3 is named L2 (no pedicle scored)")
def test_ct_pedicles_within_3_mm_on_the_tptbox_crop(real_results):
    r = real_results[("ct", "tptbox", "mark")]
    errs = [e[k] for e in r["levels"].values() for k in ("pedicle_left", "pedicle_right") if e.get(k) is not None]
    assert r["found_right"] == ["L2", "L3", "L4"] and len(errs) == 6 and max(errs) <= 3.0
