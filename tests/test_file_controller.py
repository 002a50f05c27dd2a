"""Save, save as, recent plans, unsaved-changes question, opening damaged plans, recovery offer."""

from __future__ import annotations

import json

import pytest

from planner import autosave
from planner.document import PlanDocument
from planner.recent import recent_plans
from planner.session import Session
from planner.storage import load_plan, save_plan
from tests.plan_factory import sample_plan

pytestmark = pytest.mark.gui


class ScriptedPrompter:
    def __init__(self, **answers):
        self.answers = answers
        self.errors = []
        self.asked = []

    def ask_save_changes(self, name):
        self.asked.append(("save_changes", name))
        return self.answers.get("save_changes", "cancel")

    def ask_save_path(self, suggestion):
        self.asked.append(("save_path", suggestion))
        return self.answers.get("save_path")

    def ask_open_path(self):
        return self.answers.get("open_path")

    def error(self, title, text):
        self.errors.append((title, text))

    def ask_recover(self, orphan):
        self.asked.append(("recover", orphan.describe()))
        return self.answers.get("recover", "later")


def _controller(qtbot, plan=None, **answers):
    from planner.views.file_controller import FileController

    session = Session(PlanDocument(plan or sample_plan(), user="dr"))
    prompter = ScriptedPrompter(**answers)
    ctl = FileController(session, prompter=prompter, autosave_interval_s=0.05)
    return ctl, prompter


def test_save_as_then_save_and_recent(qtbot, tmp_path):
    target = tmp_path / "case.bvnplan"
    ctl, prompter = _controller(qtbot, save_path=str(target))
    doc = ctl.document
    doc.set_author("Dr A")
    assert doc.is_dirty
    assert ctl.save()  # no path yet -> save as
    assert load_plan(target).author == "Dr A" and not doc.is_dirty
    assert recent_plans() == [str(target.resolve())]
    doc.set_author("Dr B")
    assert ctl.save()
    assert load_plan(target).author == "Dr B"
    assert [a[0] for a in prompter.asked] == ["save_path"]  # asked for a path only once


def test_close_with_unsaved_changes_asks(qtbot, tmp_path):
    ctl, prompter = _controller(qtbot, save_changes="cancel")
    ctl.document.set_author("x")
    assert not ctl.maybe_close()  # cancel keeps the window open
    prompter.answers["save_changes"] = "save"
    prompter.answers["save_path"] = str(tmp_path / "p.bvnplan")
    assert ctl.maybe_close()
    assert load_plan(tmp_path / "p.bvnplan").author == "x"


def test_failed_save_keeps_changes_and_says_why(qtbot, tmp_path):
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    ctl, prompter = _controller(qtbot, save_path=str(blocked / "p.bvnplan"))
    ctl.document.set_author("x")
    import os
    if os.geteuid() == 0:  # root ignores folder permissions: make the target a folder instead
        (blocked / "p.bvnplan").mkdir()
    assert not ctl.save()
    assert ctl.document.is_dirty and ctl.document.plan.author == "x"
    assert prompter.errors and "p.bvnplan" in prompter.errors[0][1]


def test_damaged_plan_is_refused_and_current_plan_kept(qtbot, tmp_path):
    bad = tmp_path / "bad.bvnplan"
    bad.write_text('{"format": "bvnplan", "schema_version": 1, "levels": 5}')
    ctl, prompter = _controller(qtbot)
    before = ctl.document.plan.model_dump()
    assert not ctl.open_plan(str(bad))
    assert ctl.document.plan.model_dump() == before
    assert "bad.bvnplan" in prompter.errors[0][1] and "levels" in prompter.errors[0][1]


def test_open_for_review_is_read_only(qtbot, tmp_path):
    path = save_plan(sample_plan(), tmp_path / "p.bvnplan")
    ctl, _ = _controller(qtbot)
    assert ctl.open_plan(str(path), read_only=True)
    assert ctl.document.read_only and ctl.document.path == str(path)


def test_recovery_is_offered_for_a_dead_session(qtbot, tmp_path):
    path = save_plan(sample_plan(), tmp_path / "p.bvnplan")
    plan = load_plan(path)
    plan.author = "edited before the crash"
    rec = autosave.recovery_path_for(path, plan.plan_id)
    rec.write_text(json.dumps(plan.model_dump(mode="json")))
    autosave.recovery_dir().mkdir(parents=True, exist_ok=True)
    (autosave.recovery_dir() / "session-999999-dead.json").write_text(json.dumps(
        {"pid": 2 ** 22 + 7, "host": __import__("socket").gethostname(), "recovery_path": str(rec),
         "plan_path": str(path), "updated": 0}))
    ctl, prompter = _controller(qtbot, recover="recover")
    assert ctl.offer_recovery()
    assert ctl.document.plan.author == "edited before the crash"
    assert ctl.document.is_dirty and ctl.document.path == str(path)
    assert prompter.asked[0][0] == "recover"
