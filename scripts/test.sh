#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/setup.sh | tail -n 1)"
exec "$venv/bin/python" -m pytest -q "$@"
