# Shared set-up for scripts/run_demo.sh and scripts/run_tests.sh. Source it from the project root.
# Installs what is missing and nothing else, so it is safe to run any number of times:
#   1. Debian packages (when root; otherwise prints the exact apt command),
#   2. a virtual environment in .venv,
#   3. the pinned pip packages of requirements.txt (skipped when unchanged since the last install).
set -euo pipefail

APT_PKGS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libegl-mesa0 libgl1-mesa-dri fonts-dejavu-core poppler-utils orthanc orthanc-dicomweb dcmtk dicom3tools openssl"

bvn_setup() {
  local missing=""
  if command -v dpkg-query >/dev/null 2>&1; then
    for p in $APT_PKGS; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
  fi
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Debian packages:$missing"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "setup: these Debian packages are missing:$missing"
      echo "setup: install them with:  sudo apt-get install -y --no-install-recommends$missing"
    fi
  fi

  local py="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating the virtual environment .venv"
    "$py" -m venv .venv
  fi
  local stamp=".venv/.requirements-stamp"
  local want
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing pinned Python packages (requirements.txt)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
      | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import PySide6, vtkmodules, pydicom, numpy, scipy, pydantic, fpdf" \
      || { echo "setup: the Python packages did not install; see the messages above"; return 1; }
    echo "$want" > "$stamp"
  fi
}
