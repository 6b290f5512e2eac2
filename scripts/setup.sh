#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the tool with its test and benchmark extras; prints
# its path last.
#
# torch==2.13.0 goes first, as a CPU build: an unpinned torch, or PyPI's default wheel on Linux, is a CUDA build of
# several GB. Where the configured package index already offers the CPU build (a local wheel), it is taken from there;
# otherwise from PyTorch's CPU index. AUTOMODEL_ONBOARD_TORCH=cuda installs PyPI's default (CUDA) build instead;
# AUTOMODEL_ONBOARD_TORCH_INDEX names another index for the CPU build. With --torch-only, only torch is installed (the
# fresh environment a plugin package is tested in, ci/plugin.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AUTOMODEL_ONBOARD_VENV:-.venv}"
say() { echo "setup: $*" >&2; }
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.automodel-onboard-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  if [ "${1:-}" = "--torch-only" ]; then
    say "installing torch 2.13.0 alone"
  else
    say "installing torch 2.13.0 and automodel-onboard with its test and benchmark extras (NeMo AutoModel 0.7.0,"
    say "transformers, copier, matplotlib, ...): a few minutes on a fresh machine, about 2.6 GB on disk with the CPU"
    say "build of torch"
  fi
  pip=("$venv/bin/python" -m pip)
  "${pip[@]}" install -q --upgrade pip
  torch=(torch==2.13.0)
  if "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    torch=()  # already there (a rerun after the project's requirements changed)
  elif [ "${AUTOMODEL_ONBOARD_TORCH:-cpu}" = "cpu" ]; then
    offered="$("${pip[@]}" install --dry-run --quiet --report - "${torch[@]}" 2>/dev/null | grep -o '"version": "2.13.0[^"]*"' | head -n 1 || true)"
    if [[ "$offered" != *"+cpu"* ]]; then
      index="${AUTOMODEL_ONBOARD_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
      say "the package index offers no CPU build of torch; taking it from $index"
      torch+=(--index-url "$index")
    fi
  fi
  if [ "${#torch[@]}" -gt 0 ]; then
    "${pip[@]}" install -q "${torch[@]}"
  fi
  if [ "${1:-}" = "--torch-only" ]; then
    echo "$venv"
    exit 0
  fi
  "${pip[@]}" install -q -e ".[test,bench]"
  touch "$stamp"
  say "done"
fi
echo "$venv"
