"""Shared fixtures. Chooses a Qt platform before Qt is imported (../shared/stack.md, section 5)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

def pytest_configure(config):
    """With ``BVN_XVFB_PER_WORKER=1`` (scripts/run_tests.sh, the GUI run shared out over pytest-xdist
    workers): each worker starts a virtual X server of its own and shows its windows there, so that
    windows of two workers never take each other's keyboard focus. Runs before any QApplication exists."""
    if not (os.environ.get("BVN_XVFB_PER_WORKER") and hasattr(config, "workerinput")):
        return
    import atexit
    import subprocess

    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten",
                               "tcp"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        raise RuntimeError("Xvfb did not start for this pytest-xdist worker (no display number on -displayfd)")
    os.environ["DISPLAY"] = f":{number}"

    def stop() -> None:
        server.terminate()
        server.wait(timeout=10)

    atexit.register(stop)


#: Real test images (never copied into the project); see ../shared/data/README.md.
SHARED_DATA = Path(os.environ.get("BVN_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep settings, logs, recovery files and caches of each test out of the user's home."""
    home = tmp_path_factory.mktemp("bvn-home")
    monkeypatch.setenv("BVN_PLANNER_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared real test data is not at {SHARED_DATA}: clone the project beside ../shared "
                    "or set BVN_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory):
    """The built-in demo study (planner.demo), written once per test session.

    Returns the :class:`planner.demo.DemoManifest`: ``.folder`` (the output folder), ``.ground_truth``
    (the parsed ground_truth.json), ``.plan_path`` (sample.bvnplan) and ``.series_dirs`` (role -> folder,
    roles T1, T2, STIR, AX_T2, FLUORO_AP, FLUORO_LAT). Treat it as read-only: it is shared by all tests.
    """
    from planner.demo import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("demo-study"))


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """The local Orthanc test PACS (tests/orthanc.py), started once per test session on free ports;
    the PACS tests are skipped with the reason when Orthanc is not installed."""
    from tests.orthanc import orthanc_available, start_orthanc

    reason = orthanc_available()
    if reason:
        pytest.skip(reason)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()
