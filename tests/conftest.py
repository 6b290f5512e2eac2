"""Shared fixtures: the corpus of real Hub configs and small helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "fixtures" / "configs"
LABELS: dict[str, dict[str, Any]] = json.loads((CONFIGS / "labels.json").read_text())


def load_config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / name).read_text())


@pytest.fixture
def config():
    return load_config
