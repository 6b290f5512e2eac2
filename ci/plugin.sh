#!/usr/bin/env bash
# A plugin package with one model of each kind, installed into a fresh virtual environment with pip as a user would
# (NeMo AutoModel comes in as its dependency; this tool is not installed there), and its generated tests run there.
# Usage: ci/plugin.sh TOOL_VENV [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
tool="$1"
work="${2:-$(mktemp -d)}"
plugin="$work/ci-models"
configs=tests/fixtures/configs
for config in allenai__OLMo-1B-hf allenai__OLMoE-1B-7B-0125 mistral-community__pixtral-12b; do
  HF_HUB_OFFLINE=1 "$tool/bin/automodel-onboard" new "$configs/$config.json" --plugin "$plugin" --no-verify >/dev/null
done
fresh="$(AUTOMODEL_ONBOARD_VENV="$work/fresh" scripts/setup.sh --torch-only | tail -n 1)"
"$fresh/bin/python" -m pip install -q -e "$plugin[test]"
if "$fresh/bin/python" -c "import automodel_onboard" 2>/dev/null; then
  echo "the fresh environment has automodel_onboard installed; it must not" >&2
  exit 1
fi
cd "$plugin"
HF_HUB_OFFLINE=1 "$fresh/bin/python" -m pytest -q -p no:cacheprovider tests
