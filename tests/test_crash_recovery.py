"""Issue 7 acceptance: the running app is killed with SIGKILL after a series of edits; reopening
recovers all of them except at most the last two seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from planner.storage import save_plan
from tests.plan_factory import sample_plan

pytestmark = [pytest.mark.gui, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

# The real application window (planner.views.app.build_window, as `main.py PLAN` builds it), with a
# timer that makes one edit every 150 ms and prints its number and time once the edit is done.
_APP = r"""
import sys, time
sys.path.insert(0, {root!r})
from types import SimpleNamespace
from PySide6.QtCore import QTimer
from planner.views.app import build_window
app, window = build_window(SimpleNamespace(path={plan!r}, demo=False, review=False, images=None, layout=None,
                                            screenshot=None))
window.show()
doc = window.session.document
level_id = doc.plan.levels[0].id
count = [0]
def edit():
    count[0] += 1
    doc.set_level_fields(level_id, notes=f"edit {{count[0]}}")
    print(count[0], time.time(), flush=True)
timer = QTimer()
timer.timeout.connect(edit)
timer.start(150)
print("ready", flush=True)
app.exec()
"""


def test_sigkill_loses_at_most_the_last_two_seconds(tmp_path, _isolated_home):
    plan_path = save_plan(sample_plan(), tmp_path / "case.bvnplan")
    env = dict(os.environ, BVN_PLANNER_HOME=str(_isolated_home), QT_QPA_PLATFORM="offscreen")
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([sys.executable, "-c", _APP.format(root=str(ROOT), plan=str(plan_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    edits: list[tuple[int, float]] = []
    try:
        deadline = time.time() + 120
        assert proc.stdout.readline().strip() == "ready"
        while len(edits) < 30 and time.time() < deadline:  # about 4.5 s of edits
            line = proc.stdout.readline()
            if not line:
                break
            n, t = line.split()
            edits.append((int(n), float(t)))
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(edits) >= 20, f"the app made only {len(edits)} edits"

    # Reopen: the start-up recovery offer of the real window, answered "recover".
    from planner.views.app import build_window
    from planner.views.file_controller import Prompter

    class Recover(Prompter):
        def ask_recover(self, orphan):
            return "recover"

    app, window = build_window(SimpleNamespace(path=None, demo=False, review=False, images=None, layout=None,
                                               screenshot=None))
    try:
        window.files.prompter = Recover(window)
        assert window.files.offer_recovery(), "no recovery was offered after the crash"
        doc = window.session.document
        recovered = int(doc.plan.levels[0].notes.split()[1])
        must_have = max(n for n, t in edits if t <= killed_at - 2.0)
        assert recovered >= must_have, (recovered, must_have, edits[-1])
        assert doc.is_dirty and doc.path == str(plan_path)  # recovered changes wait to be saved
    finally:
        window.files.document.mark_saved()
        window.close()
