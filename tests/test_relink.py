"""A plan reopened elsewhere finds its images by UID and names the series that are missing."""

from __future__ import annotations

import shutil

from planner.relink import find_plan_images
from planner.storage import load_plan


def test_all_series_found_in_a_moved_folder(demo_study, tmp_path):
    moved = tmp_path / "copied-from-cd"
    shutil.copytree(demo_study.folder / "DICOM", moved)
    plan = load_plan(demo_study.plan_path)
    for ref in plan.case.series:  # hints point to a workstation that is not this one
        ref.path_hint = "/mnt/other-workstation/" + ref.path_hint
    steps = []
    res = find_plan_images(plan, [moved], progress=lambda f, m: steps.append(f))
    assert not res.missing, res.message()
    assert set(res.images) == {r.series_instance_uid for r in plan.case.series}
    assert "All" in res.message()
    assert steps and steps[-1] == 1.0
    t1 = next(r for r in plan.case.series if r.role == "T1")
    assert res.images[t1.series_instance_uid].info.series_instance_uid == t1.series_instance_uid


def test_missing_series_are_named(demo_study, tmp_path):
    plan = load_plan(demo_study.plan_path)
    partial = tmp_path / "partial"
    stir = demo_study.series_dirs["STIR"]
    shutil.copytree(demo_study.folder / "DICOM", partial, ignore=lambda d, names: names if d == str(stir) else [])
    res = find_plan_images(plan, [partial])
    stir_ref = next(r for r in plan.case.series if r.role == "STIR")
    assert [r.series_instance_uid for r in res.missing] == [stir_ref.series_instance_uid]
    msg = res.message()
    assert "Missing: STIR" in msg and stir_ref.series_instance_uid in msg
    assert len(res.images) == len(plan.case.series) - 1


def test_nonexistent_folder_is_reported(demo_study, tmp_path):
    plan = load_plan(demo_study.plan_path)
    res = find_plan_images(plan, [tmp_path / "nowhere"])
    assert len(res.missing) == len(plan.case.series)
    assert "does not exist" in res.message()


def test_a_file_without_a_modality_is_read_back_as_the_plan_recorded_it(tmp_path):
    """``plan --modality CT`` on a NIfTI file records CT for the series; reopened for ``check`` or a report, the
    file (no modality tag, values that do not read as Hounsfield units) is a CT again, not the guess's MR;
    without a recorded modality it stays as the file reads."""
    import nibabel as nib
    import numpy as np

    from planner.imaging import load_path
    from planner.plan import CaseInfo, Plan, SeriesRef

    path = tmp_path / "no-tag.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(0, 900, (20, 20, 20)).astype(np.int16), np.eye(4)),
             str(path))
    (key, image), = load_path(path).images.items()
    assert image.info.modality == ""
    plan = Plan(case=CaseInfo(series=[SeriesRef(series_instance_uid=key, modality="CT", path_hint=str(path))]))
    res = find_plan_images(plan, [path])
    assert not res.missing, res.message()
    assert res.images[key].info.modality == "CT"
    plan.case.series[0].modality = ""
    assert find_plan_images(plan, [path]).images[key].info.modality == ""
