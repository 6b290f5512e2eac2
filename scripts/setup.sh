#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the tool with its test extras.
# torch==2.13.0 goes first: it is the CPU build; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AUTOMODEL_ONBOARD_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.automodel-onboard-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q torch==2.13.0
  "$venv/bin/python" -m pip install -q -e ".[test]"
  touch "$stamp"
fi
echo "$venv"
