"""Issue 16 item 6: temporary files with unpredictable, exclusive names that never follow a planted
symlink; leftovers of killed writers removed at the next start; crash-recovery records that survive
PID reuse; reads that refuse FIFOs, devices and /proc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner import safefiles
from planner.autosave import find_orphaned_recoveries, recovery_dir
from planner.safefiles import (
    TEMP_SUFFIX,
    FileTooLarge,
    NotAFile,
    ProcessIdentity,
    atomic_write_bytes,
    read_regular,
    remove_stale_temporaries,
    temporary_beside,
    temporary_folder,
)
from planner.storage import save_plan
from tests.plan_factory import sample_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def predictable_names(monkeypatch):
    """The next temporary names, known in advance (as an attacker would guess them)."""
    names = iter(["0" * 16, "1" * 16, "2" * 16, "3" * 16, "4" * 16])
    monkeypatch.setattr(safefiles.secrets, "token_hex", lambda n: next(names))


def _plant(folder: Path, target_name: str, victim: Path, token: str = "0" * 16, suffix: str = "") -> Path:
    link = folder / f".{target_name}.{token}{TEMP_SUFFIX}{suffix}"
    link.symlink_to(victim)
    return link


@pytest.mark.parametrize("writer", ["plan", "pdf", "sheet_html", "temporary_beside"])
def test_a_symlink_planted_at_the_temporary_name_is_never_followed(tmp_path, predictable_names, writer):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    name = {"plan": "case.bvnplan", "pdf": "summary.pdf", "sheet_html": "sheet.html",
            "temporary_beside": "export.pdf"}[writer]
    link = _plant(out, name, victim, suffix=".pdf" if writer == "temporary_beside" else "")
    target = out / name
    if writer == "plan":
        save_plan(sample_plan(), target)
    elif writer == "pdf":
        from fpdf import FPDF

        from planner.report.pdf import write_pdf_atomic

        pdf = FPDF()
        pdf.add_page()
        write_pdf_atomic(pdf, target)
    elif writer == "sheet_html":
        from planner.report.sheet import build_sheet_data
        from planner.report.sheet_render import render_sheet_html

        render_sheet_html(build_sheet_data(sample_plan(), "en"), target)
    else:
        with temporary_beside(target) as tmp:
            tmp.write_bytes(b"%PDF-1.4 test")
    assert victim.read_text() == "precious"  # never written through the link
    assert link.is_symlink()  # and the planted link itself is left alone
    assert target.is_file() and not target.is_symlink() and target.stat().st_size > 0


def test_a_symlink_at_the_target_name_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "plan.bvnplan"
    target.symlink_to(victim)
    save_plan(sample_plan(), target)
    assert victim.read_text() == "precious"
    assert not target.is_symlink()


def test_temporary_names_are_unpredictable_and_private(tmp_path, monkeypatch):
    seen = []
    real_open = os.open

    def spy(path, flags, mode=0o777, **kw):
        if str(path).endswith(TEMP_SUFFIX):
            seen.append((Path(path).name, flags, mode))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(safefiles.os, "open", spy)
    for _ in range(3):
        atomic_write_bytes(tmp_path / "a.pdf", b"x")
    names = [n for n, _f, _m in seen]
    assert len(set(names)) == 3
    for _name, flags, mode in seen:
        assert flags & os.O_EXCL and flags & os.O_CREAT and flags & os.O_NOFOLLOW and mode == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf"]


def test_a_failed_export_folder_is_removed(tmp_path):
    with pytest.raises(RuntimeError):
        with temporary_folder(tmp_path / "export") as work:
            (work / "dicom").mkdir()
            (work / "dicom" / "a.dcm").write_bytes(b"x")
            raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []


_KILLED_WRITER = r"""
import sys, time
sys.path.insert(0, {root!r})
from planner.safefiles import temporary_folder, atomic_write_bytes
from pathlib import Path
out = Path({out!r})
with temporary_folder(out / "export") as work:
    (work / "a.dcm").write_bytes(b"x" * 1000)
    fd = __import__("planner.safefiles", fromlist=["x"])._create_exclusive(out / "plan.bvnplan")
    print("ready", flush=True)
    time.sleep(60)
"""


def test_leftovers_of_a_killed_process_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "work"
    out.mkdir()
    (out / f".unrelated.{'a' * 16}{TEMP_SUFFIX}").write_text("not journaled: never touched")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER.format(root=str(ROOT), out=str(out))],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        left = sorted(p.name for p in out.iterdir())
        assert len(left) == 3  # the export folder, the plan's temporary, the unrelated file
        assert remove_stale_temporaries() == []  # the writer is still running: nothing is touched
    finally:
        proc.kill()
        proc.wait(10)
    removed = remove_stale_temporaries()
    assert len(removed) == 2
    assert [p.name for p in out.iterdir()] == [f".unrelated.{'a' * 16}{TEMP_SUFFIX}"]
    assert list(safefiles.temporaries_dir().glob("*.log")) == [] or all(
        p.name.startswith(ProcessIdentity.current().slug()) for p in safefiles.temporaries_dir().glob("*.log"))


def test_the_main_entry_point_cleans_up_at_start(tmp_path, _isolated_home):
    out = tmp_path / "w"
    out.mkdir()
    leftover = out / f".plan.bvnplan.{'b' * 16}{TEMP_SUFFIX}"
    leftover.write_text("{}")
    journal = safefiles.temporaries_dir()
    journal.mkdir(parents=True, exist_ok=True)
    ident = ProcessIdentity.current()
    dead = ProcessIdentity(ident.host, ident.boot_id, ident.pid, "1")  # our PID, another start time: ended
    (journal / f"{dead.slug()}.log").write_text(f"+{leftover}\n")
    env = dict(os.environ, BVN_PLANNER_HOME=str(_isolated_home))
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), "inspect", str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert not leftover.exists()


# ------------------------------------------------------------------ crash recovery and PID reuse
def _record(pid: int, start_time: str, boot: str, recovery: Path) -> Path:
    folder = recovery_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rec = folder / f"session-{pid}-test.json"
    ident = ProcessIdentity.current()
    rec.write_text(json.dumps({"host": ident.host, "boot_id": boot, "pid": pid, "start_time": start_time,
                               "recovery_path": str(recovery), "plan_path": None, "updated": time.time()}))
    return rec


def test_recovery_is_offered_when_the_pid_now_belongs_to_another_process(tmp_path):
    recovery = tmp_path / ".case.bvnplan.recovery"
    save_plan(sample_plan(), recovery)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = ProcessIdentity.current()
        real_start = safefiles.process_start_time(other.pid)
        assert real_start
        rec = _record(other.pid, real_start, ident.boot_id, recovery)
        assert find_orphaned_recoveries() == []  # that process is alive: its session is running
        rec.unlink()
        # the crashed session's PID was reused by `other` (different start time): offered
        _record(other.pid, str(int(real_start) - 1000), ident.boot_id, recovery)
        found = find_orphaned_recoveries()
        assert [o.recovery_path for o in found] == [recovery]
        for o in found:
            o.record_path.unlink()
        # written before a reboot: offered whatever runs under that PID now
        _record(other.pid, real_start, "another-boot-id", recovery)
        assert [o.recovery_path for o in find_orphaned_recoveries()] == [recovery]
    finally:
        other.kill()
        other.wait(10)


# ------------------------------------------------------------------ reading
def test_reads_refuse_fifos_devices_and_proc_at_once(tmp_path):
    fifo = tmp_path / "pipe.bvnplan"
    os.mkfifo(fifo)
    link = tmp_path / "zero.bvnplan"
    link.symlink_to("/dev/zero")
    t0 = time.monotonic()
    for path, what in ((fifo, "named pipe"), (link, "device"), (Path("/proc/self/status"), "/proc"),
                       (tmp_path, "folder")):
        with pytest.raises(NotAFile, match=what):
            read_regular(path, 1000)
    assert time.monotonic() - t0 < 2
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(FileTooLarge):
        read_regular(big, 1000)
    assert read_regular(big, 2000) == b"x" * 2000


# ------------------------------------------------------------------ logs (issue 16 item 5)
def test_tracebacks_go_to_the_log_file_redacted_and_never_to_the_console():
    import io
    import logging

    from planner.logsafe import ConsoleFormatter, RedactingFilter, register_identifiers

    register_identifiers(["Hostile^Patientname", "PID-778899"])
    console_stream, file_stream = io.StringIO(), io.StringIO()
    console = logging.StreamHandler(console_stream)
    console.setFormatter(ConsoleFormatter("%(levelname)s %(name)s: %(message)s"))
    console.addFilter(RedactingFilter())
    to_file = logging.StreamHandler(file_stream)
    to_file.setFormatter(logging.Formatter("%(message)s"))
    to_file.addFilter(RedactingFilter())
    log = logging.getLogger("bvn-test-logsafe")
    log.propagate = False
    log.addHandler(console)
    log.addHandler(to_file)
    try:
        try:
            raise ValueError("cannot read the plan of Hostile^Patientname (PID-778899)")
        except ValueError:
            log.exception("command failed")
    finally:
        log.removeHandler(console)
        log.removeHandler(to_file)
    shown, logged = console_stream.getvalue(), file_stream.getvalue()
    assert shown.strip() == "ERROR bvn-test-logsafe: command failed"
    assert "Traceback" in logged and "ValueError" in logged
    assert "Patientname" not in logged and "778899" not in logged and "[redacted]" in logged


def test_an_unexpected_command_error_is_one_sentence_naming_the_file(monkeypatch, capsys, tmp_path):
    from planner import cli

    plan = tmp_path / "case.bvnplan"
    plan.write_text("{}")

    def boom(args):
        raise RuntimeError("something deep\nbroke")

    import planner.cli.check as check

    monkeypatch.setattr(check, "run", boom)
    code = cli.run_command(["check", str(plan)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(plan) in err and "RuntimeError: something deep broke" in err
    assert "Traceback" not in err and "log" in err


def test_console_log_goes_to_the_current_stderr_and_not_twice_for_a_reported_failure(monkeypatch):
    """The console handler writes to whatever sys.stderr is now (a closed earlier stream would print
    'Logging error' and a traceback), and a failure the command already told the user about in one
    sentence (extra console=False) reaches only the log file."""
    import io
    import logging

    from planner.logsafe import ConsoleHandler

    handler = ConsoleHandler()
    log = logging.getLogger("bvn-test-console")
    log.propagate = False
    log.addHandler(handler)
    try:
        first, second = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stderr", first)
        log.warning("one")
        first.close()
        monkeypatch.setattr("sys.stderr", second)
        log.warning("two")
        log.error("reported already", exc_info=True, extra={"console": False})
    finally:
        log.removeHandler(handler)
    assert second.getvalue() == "two\n"
