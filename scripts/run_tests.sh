#!/usr/bin/env bash
# Sets everything up (see scripts/_setup.sh) and runs the whole test suite headless:
#   1. every test with Qt's offscreen platform (VTK renders through EGL), the test files shared out over
#      the cores (pytest-xdist, one file per worker at a time, at most 4 workers),
#   2. the GUI tests again on virtual X servers (Xvfb), when xvfb-run is available, shared out over the same
#      workers, each with an X server of its own (windows of two processes on one X server without a window
#      manager would take each other's keyboard focus).
# Extra arguments go to pytest and run the offscreen part in one process, e.g.  bash scripts/run_tests.sh -k plan
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
bvn_setup

export PYTHONDONTWRITEBYTECODE=1
parallel=()
if [ $# -eq 0 ]; then
  workers="$(nproc)"
  if [ "$workers" -gt 4 ]; then workers=4; fi
  if [ "$workers" -gt 1 ]; then parallel=(-n "$workers" --dist loadfile); fi
fi
echo "== tests (offscreen${parallel:+, ${workers} workers}) =="
env -u DISPLAY QT_QPA_PLATFORM=offscreen VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow \
  .venv/bin/python -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@"

if [ $# -eq 0 ]; then
  if command -v xvfb-run >/dev/null 2>&1; then
    echo "== GUI tests (Xvfb${parallel:+, ${workers} workers, one X server each}) =="
    # xvfb-run's server is the display of a serial run; shared out, each worker starts its own
    # (tests/conftest.py pytest_configure), so that their windows never take each other's focus
    env -u QT_QPA_PLATFORM -u VTK_DEFAULT_OPENGL_WINDOW BVN_XVFB_PER_WORKER=1 \
      xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -q -p no:cacheprovider -m gui \
      "${parallel[@]}"
  else
    echo "== GUI tests (Xvfb) skipped: xvfb-run is not installed =="
  fi
fi
