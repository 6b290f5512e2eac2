#!/usr/bin/env bash
# Set up the environment if needed, then run the main job on the bundled example config (no network):
# make a scratch NeMo AutoModel checkout in build/demo, onboard Qwen3 into it, and run the generated tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(scripts/setup.sh | tail -n 1)"
export HF_HUB_OFFLINE=1
rm -rf build/demo
"$venv/bin/automodel-onboard" sandbox build/demo
# NeMo AutoModel ships its own Qwen3; --replace points the registry at the onboarded module instead.
exec "$venv/bin/automodel-onboard" new examples/configs/Qwen3-0.6B.json --dest build/demo --name qwen3_onboarded --replace "$@"
