#!/usr/bin/env bash
# Set up effstudio in a virtual environment beside the sources, then run it or its tests.
#
#   bash packaging/bootstrap.sh run     # launch the app (a headless demo when there is no display)
#   bash packaging/bootstrap.sh test    # run the test suite and the architecture contract
#
# TORCH_SPEC chooses the PyTorch build installed before anything that depends on it
# (default: the CPU build torch==2.13.0). VENV chooses the environment's folder.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$here/.venv}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.effstudio-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  "$py" -m pip install --quiet --upgrade pip
  # torch first and pinned, so that nothing below pulls a different (CUDA) build
  "$py" -m pip install --quiet "$torch_spec"
  "$py" -m pip install --quiet -e "$here[dev]"
  touch "$stamp"
fi

cd "$here"
case "${1:-run}" in
  run)
    shift || true
    exec "$venv/bin/effstudio" "$@"
    ;;
  test)
    shift || true
    export QT_QPA_PLATFORM=offscreen
    "$venv/bin/lint-imports"
    exec "$py" -m pytest -q "$@"
    ;;
  *)
    echo "usage: bash packaging/bootstrap.sh run|test [args...]" >&2
    exit 2
    ;;
esac
