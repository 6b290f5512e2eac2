"""Shared fixtures: the corpus of real Hub configs and small helpers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Nothing in the suite may reach the network: the Hub path is exercised through local caches only.
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "fixtures" / "configs"
LABELS: dict[str, dict[str, Any]] = json.loads((CONFIGS / "labels.json").read_text())
# The keys `classify --json` promises.
SPEC_KEYS = frozenset(
    {
        "kind",
        "text_backbone",
        "reasons",
        "architecture",
        "model_type",
        "module_name",
        "class_prefix",
        "custom_code",
        "features",
        "tiny_config",
        "inventory",
        "params",
    }
)


@pytest.fixture
def without_vlm(monkeypatch):
    """The kind registry as it is before a kind's template lands: the vlm row removed."""
    from types import MappingProxyType

    from automodel_onboard import kinds

    monkeypatch.setattr(kinds, "KINDS", MappingProxyType({k: v for k, v in kinds.KINDS.items() if k != "vlm"}))
    return kinds


def load_config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / name).read_text())


def zoo_config(model_type: str) -> dict[str, Any]:
    """What ``save_pretrained`` writes for a transformers config class's defaults, as the coverage sweep onboards
    them (configs no fixture has)."""
    from transformers import CONFIG_MAPPING

    from automodel_onboard.commands.coverage import zoo

    return {**CONFIG_MAPPING[model_type]().to_diff_dict(), "architectures": [zoo()[model_type]]}


@pytest.fixture
def config():
    return load_config


def hub_cache(root: Path, repo_id: str, config: dict[str, Any] | str, revision: str = "main") -> Path:
    """Lay out a real Hugging Face hub cache (refs, blobs, snapshots) holding one repo's config.json."""
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    repo = root / f"models--{repo_id.replace('/', '--')}"
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    blob = repo / "blobs" / hashlib.sha256(text.encode()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_text(text)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").symlink_to(os.path.relpath(blob, snapshot))
    return root


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed console entry point in a fresh interpreter (its own environment, its own imports)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "automodel_onboard.commands.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="session")
def pristine(tmp_path_factory):
    from automodel_onboard.destination.sandbox import make_sandbox

    return make_sandbox(tmp_path_factory.mktemp("pristine") / "checkout")


@pytest.fixture
def without_long_runs(monkeypatch):
    """Generated suites run in this test skip their runs of NeMo's recipe (full and PEFT) and their steps on two
    processes, most of a suite's time: the test is about something else, and tests/test_templates.py, render-all and
    the coverage sample run them. pytest reads PYTEST_ADDOPTS in the generated suite's own process."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k 'not on_the_cpu and not matches_one_process'")


@pytest.fixture
def hf_modules_cache(tmp_path_factory, monkeypatch):
    """transformers copies trusted code into its modules cache: keep that cache out of the user's home. One folder
    for the whole session: the ``transformers_modules`` package it holds is imported once per process."""
    import transformers.dynamic_module_utils as dynamic

    cache = str(tmp_path_factory.getbasetemp() / "hf_modules")
    monkeypatch.setenv("HF_MODULES_CACHE", cache)
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", cache)
    return cache


@pytest.fixture
def checkout(pristine, tmp_path):
    """A fresh copy of the scratch checkout (copying is faster than making one)."""
    dest = tmp_path / "checkout"
    subprocess.run(["cp", "-a", str(pristine), str(dest)], check=True)
    return dest


def snapshot(root: Path) -> tuple[dict[str, str], str]:
    """Every file's digest (outside .git) and git's own view of the tree."""
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return files, status


def registry_excerpt(report: str) -> str:
    """The registry lines a `new` report quotes (indented under "registry.py lines added:"), unindented."""
    after = report.split("registry.py lines added:\n")[1].splitlines()
    end = next(i for i, line in enumerate(after) if not line.startswith("    "))
    return "\n".join(line.removeprefix("    ") for line in after[:end])
