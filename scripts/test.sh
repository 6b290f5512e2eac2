#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite. Extra arguments go to pytest.
#
# The suite runs on one pytest worker per core (up to 4): most of its time is subprocesses that import torch on one
# core. A test file stays on one worker (--dist loadfile), so a checkout a file renders once for its tests is
# rendered once.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/setup.sh | tail -n 1)"
exec "$venv/bin/python" -m pytest -q --numprocesses auto --maxprocesses 4 --dist loadfile "$@"
