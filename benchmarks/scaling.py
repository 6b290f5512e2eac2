"""What grows with the model and what does not: onboarding time and the generated suite's time as a config grows.

The inventory builds the reference on the ``meta`` device and the generated tests use a tiny config of the same
layout, so neither should grow much with the layers or the experts of the config a user brings.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import onboarding, suites
from benchmarks.stats import Sample

FIXTURES = onboarding.ROOT / "tests" / "fixtures" / "configs"


@dataclass(frozen=True)
class Growth:
    """A fixture config grown along one field."""

    kind: str
    fixture: str
    field: str
    values: tuple[int, ...]
    name: str  # the onboarded module

    def config(self, value: int) -> dict[str, object]:
        raw = json.loads((FIXTURES / self.fixture).read_text())
        raw[self.field] = value
        if self.field == "num_hidden_layers":
            raw["max_window_layers"] = value
        return raw


GROWTHS = (
    Growth("dense", "Qwen__Qwen3-0.6B.json", "num_hidden_layers", (2, 28, 256), "qwen3_onboarded"),
    Growth("moe", "Qwen__Qwen3-235B-A22B.json", "num_experts", (16, 128, 256), "qwen3_moe_onboarded"),
)
QUICK_GROWTHS = (Growth("dense", "Qwen__Qwen3-0.6B.json", "num_hidden_layers", (2, 28), "qwen3_onboarded"),)


@dataclass(frozen=True)
class Point:
    growth: Growth
    value: int
    classify: Sample
    new: Sample
    suite: Sample | None

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.growth.kind,
            "fixture": self.growth.fixture,
            "field": self.growth.field,
            "value": self.value,
            "classify": self.classify.to_json(),
            "new": self.new.to_json(),
            "suite": self.suite.to_json() if self.suite else None,
        }


def measure(growths: Sequence[Growth], runs: int, suite_runs: int) -> list[Point]:
    """Each value of each growth: ``classify`` with the inventory and ``new`` without the tests, cold; the generated
    suite at the smallest and the largest value only (minutes each)."""
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = onboarding.Fixtures.make(Path(tmp), onboarded=False)
        for growth in growths:
            for value in growth.values:
                config = Path(tmp) / f"{growth.kind}-{value}.json"
                config.write_text(json.dumps(growth.config(value)))
                classify = onboarding.Task("classify", ("classify", str(config)))
                new = onboarding.Task(
                    "new",
                    ("new", str(config), "--dest", "{dest}", "--name", growth.name, "--replace", "--no-verify")
                    + (("--allow-fewer-capabilities",) if growth.kind == "moe" else ()),
                    setup="checkout",
                )
                timed_new = onboarding.cold(new, fixtures, runs)  # leaves the last run's destination in place
                suite = None
                if suite_runs and value in (growth.values[0], growth.values[-1]):
                    suite = suites.measure(fixtures.work / "run", growth.kind, growth.name, suite_runs).wall
                points.append(Point(growth, value, onboarding.cold(classify, fixtures, runs), timed_new, suite))
    return points
