#!/usr/bin/env bash
# Run any command inside the project's virtual environment (.venv), creating or
# updating it first from pyproject.toml + constraints.txt when they changed.
#   ./dev.sh kedro run        ./dev.sh pytest        ./dev.sh kedro viz
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
# Only the dependency lists matter (not e.g. the pytest settings in pyproject.toml).
deps=$(sed -n '/^dependencies = \[/,/^\[project.scripts\]/p' pyproject.toml)
stamp=".venv/.installed-$(printf '%s\n' "$deps" | cat - constraints.txt | sha1sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "dev.sh: installing the project into .venv (first run or dependencies changed)..." >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# shellcheck disable=SC1091
source .venv/bin/activate
export KERAS_BACKEND=tensorflow
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true MLFLOW_ENABLE_ASYNC_LOGGING=false
if [ $# -eq 0 ]; then exec bash; fi
exec "$@"
