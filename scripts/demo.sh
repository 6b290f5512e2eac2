#!/usr/bin/env bash
# Set up the environment if needed, then run the main job on the bundled example config (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/setup.sh | tail -n 1)"
export HF_HUB_OFFLINE=1
exec "$venv/bin/automodel-onboard" classify examples/configs/Qwen3-0.6B.json "$@"
