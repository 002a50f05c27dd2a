"""Plans that live in the PACS (issue 14 item 5): the demo plan is exported, sent with its images to the
session's Orthanc, and opened on a "second workstation" (an empty home folder, nothing but the PACS
node): it equals the original in every field, and its images come back by UID (the second time from the
local cache, without the network). A plan SR file opens as a plan from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from planner.imaging import load_path, pacs
from planner.imaging.pacs.plans import find_plans
from tests.orthanc import planner_node

pytestmark = pytest.mark.pacs


@pytest.fixture(scope="module")
def sent(orthanc, demo_study, tmp_path_factory):
    """The demo plan exported (PDF, key images, SR) and sent to the PACS with the demo images."""
    from planner.export import export_dicom
    from planner.storage import load_plan

    node = planner_node(orthanc)
    plan = load_plan(str(demo_study.plan_path))
    images = load_path(demo_study.folder).images
    sources = sorted(p for p in Path(demo_study.folder).rglob("*.dcm"))
    stored = pacs.store(node, sources)
    assert stored.ok, stored.summary()
    result = export_dicom(plan, tmp_path_factory.mktemp("export") / "out", images, with_3d=False)
    sent = pacs.store(node, result.dicom_files)
    assert sent.ok, sent.summary()
    return plan, result


def _second_workstation(monkeypatch, tmp_path):
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("BVN_PLANNER_HOME", str(home))
    return home


def test_a_plan_opens_from_the_pacs_alone_equal_in_every_field(orthanc, sent, monkeypatch, tmp_path):
    from planner.pacs_plan import open_plan_from_pacs, plan_image_folders
    from planner.relink import find_plan_images

    plan, _result = sent
    home = _second_workstation(monkeypatch, tmp_path)
    node = planner_node(orthanc)
    [found] = find_plans(node, plan.case.study_instance_uid)
    back, sr_path = open_plan_from_pacs(node, plan.case.study_instance_uid, patient_id=plan.case.patient_id)
    assert str(sr_path).startswith(str(home))
    assert back.model_dump(mode="json") == plan.model_dump(mode="json")
    # its images: from the PACS the first time ...
    where = plan_image_folders(back, node)
    assert not where.cached and all(r.ok for r in where.results), where.message()
    relinked = find_plan_images(back, where.folders)
    assert not relinked.missing and len(relinked.images) == len(plan.case.series)
    # ... and from the local cache afterwards, with no PACS at all
    again = plan_image_folders(back, None)
    assert sorted(again.cached) == sorted(r.series_instance_uid for r in plan.case.series) and not again.results


def test_a_plan_sr_file_opens_as_the_plan(sent):
    from planner.session import Session
    from planner.views.app import open_path

    plan, result = sent
    session = Session()
    title, _others = open_path(session, str(result.sr_file))
    assert session.document.plan.model_dump(mode="json") == plan.model_dump(mode="json")
    assert "not saved" in title and session.document.path is None


def test_main_opens_a_plan_from_the_pacs_by_study_uid(orthanc, sent, monkeypatch, tmp_path):
    from planner.session import Session
    from planner.views.app import open_from_pacs

    plan, _result = sent
    _second_workstation(monkeypatch, tmp_path)
    pacs.save_nodes([planner_node(orthanc)])
    session = Session()
    title = open_from_pacs(session, "ORTHANC", plan.case.study_instance_uid)
    assert session.document.plan.model_dump(mode="json") == plan.model_dump(mode="json")
    assert set(session.images) >= {r.series_instance_uid for r in plan.case.series}
    assert "from ORTHANC" in title
    from planner.views.app import StartupError

    with pytest.raises(StartupError, match="No PACS named 'NOPE'"):
        open_from_pacs(Session(), "NOPE", plan.case.study_instance_uid)
    args = argparse.Namespace(pacs="ORTHANC", study=None, plan_series=None, review=False)
    with pytest.raises(StartupError, match="--study"):
        open_from_pacs(Session(), args.pacs, args.study)
