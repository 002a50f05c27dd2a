"""Autosave to a recovery file and crash recovery (headless part; the SIGKILL test drives the app)."""

from __future__ import annotations

import json
import os

from planner import autosave
from planner.autosave import AutosaveController, find_orphaned_recoveries, recovery_path_for
from planner.document import PlanDocument
from planner.storage import load_plan, save_plan
from tests.plan_factory import sample_plan


class FakeScheduler:
    def __init__(self):
        self.calls = []

    def __call__(self, delay, fn):
        self.calls.append((delay, fn))

    def run_all(self):
        calls, self.calls = self.calls, []
        for _, fn in calls:
            fn()


def _doc_on_disk(tmp_path):
    path = save_plan(sample_plan(), tmp_path / "case.bvnplan")
    doc = PlanDocument(load_plan(path), user="dr")
    doc.path = str(path)
    return doc, path


def test_changes_are_written_beside_the_plan_and_throttled(tmp_path):
    doc, path = _doc_on_disk(tmp_path)
    sched = FakeScheduler()
    ctl = AutosaveController(doc, sched, interval_s=1.0)
    lid = doc.plan.levels[0].id
    for i in range(5):
        doc.set_level_fields(lid, notes=f"note {i}")
    assert len(sched.calls) == 1 and sched.calls[0][0] == 1.0  # one pending write, not reset by edits
    sched.run_all()
    rec = recovery_path_for(path, doc.plan.plan_id)
    assert rec.parent == path.parent and rec.name.startswith(".case.bvnplan")
    assert load_plan(rec).level(lid).notes == "note 4"
    assert load_plan(path).level(lid).notes == ""  # the plan file itself is untouched
    # after the write, a new edit schedules a new write
    doc.set_level_fields(lid, notes="later")
    assert len(sched.calls) == 1
    sched.run_all()
    assert load_plan(rec).level(lid).notes == "later"
    ctl.close()
    assert not rec.exists()


def test_saving_removes_the_recovery_file(tmp_path):
    doc, path = _doc_on_disk(tmp_path)
    sched = FakeScheduler()
    ctl = AutosaveController(doc, sched)
    doc.set_author("Dr B")
    sched.run_all()
    assert ctl.recovery_path.exists()
    save_plan(doc.plan, path)
    doc.mark_saved()
    assert not ctl.recovery_path.exists()
    assert find_orphaned_recoveries() == []


def test_unsaved_plan_recovers_from_the_data_folder():
    doc = PlanDocument(sample_plan(), user="dr")
    sched = FakeScheduler()
    ctl = AutosaveController(doc, sched)
    doc.set_author("Dr C")
    sched.run_all()
    assert ctl.recovery_path.parent == autosave.recovery_dir()
    assert ctl.recovery_path.exists()


def test_orphaned_recovery_found_after_a_crash(tmp_path, monkeypatch):
    doc, path = _doc_on_disk(tmp_path)
    sched = FakeScheduler()
    ctl = AutosaveController(doc, sched)
    lid = doc.plan.levels[0].id
    doc.set_level_fields(lid, painful=True)
    sched.run_all()
    # This process is alive, so nothing is orphaned yet.
    assert find_orphaned_recoveries() == []
    # Pretend the session belonged to a process that died.
    record = next(autosave.recovery_dir().glob("session-*.json"))
    info = json.loads(record.read_text())
    info["pid"] = 2 ** 22 + 12345  # no such process
    record.write_text(json.dumps(info))
    orphans = find_orphaned_recoveries()
    assert len(orphans) == 1
    assert orphans[0].plan_path == str(path)
    assert "case.bvnplan" in orphans[0].describe()
    assert orphans[0].load().level(lid).painful is True
    orphans[0].discard()
    assert find_orphaned_recoveries() == []
    ctl._closed = True


def test_autosave_failure_is_reported_not_raised(tmp_path, monkeypatch):
    doc, path = _doc_on_disk(tmp_path)
    sched = FakeScheduler()
    ctl = AutosaveController(doc, sched)

    def fail(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autosave, "atomic_write_text", fail)
    doc.set_author("x")
    sched.run_all()
    assert ctl.last_error and "No space left" in ctl.last_error
    assert os.path.exists(path)
