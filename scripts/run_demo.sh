#!/usr/bin/env bash
# Sets everything up (see scripts/_setup.sh) and starts BVN Planner on the built-in demo case.
# Without a display (no DISPLAY or WAYLAND_DISPLAY), it renders the window offscreen, saves
# demo-screenshot.png and says so, instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
bvn_setup
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec .venv/bin/python main.py --demo "$@"
fi
echo "No display found: rendering the demo window offscreen to demo-screenshot.png"
QT_QPA_PLATFORM=offscreen VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow \
  exec .venv/bin/python main.py --demo --screenshot demo-screenshot.png "$@"
