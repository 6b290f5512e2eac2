"""How long an onboarded model's generated test suite takes, and where the time goes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import Sample

# The parts of a suite, by the words its test names hold (the generated tests name what they run).
PARTS = (
    ("NeMo AutoModel's recipe on the CPU", "on_the_cpu"),
    ("steps on two processes", "one_process"),
)
OTHER = "the other tests"


@dataclass(frozen=True)
class Suite:
    kind: str
    name: str  # the onboarded model's module
    tests: int
    outcomes: dict[str, int]
    wall: Sample
    parts: dict[str, float]  # median seconds of each part, from pytest's own durations

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "name": self.name,
            "tests": self.tests,
            "outcomes": self.outcomes,
            "wall": self.wall.to_json(),
            "parts": self.parts,
        }


def part_of(test: str) -> str:
    return next((part for part, words in PARTS if words in test), OTHER)


@contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure(checkout: Path, kind: str, name: str, runs: int, select: str | None = None) -> Suite:
    """Run the model's generated tests ``runs`` times; ``select`` is a pytest ``-k`` expression (the quick mode)."""
    from automodel_onboard.verify import run_generated_tests

    tests = Path("tests") / "unit_tests" / "models" / name
    walls, parts = [], {part: [] for part in (*(p for p, _ in PARTS), OTHER)}
    verification = None
    with _env({"PYTEST_ADDOPTS": f"-k '{select}'"} if select else {}):
        for _ in range(runs):
            start = time.perf_counter()
            verification = run_generated_tests(checkout, tests)
            walls.append(time.perf_counter() - start)
            if not verification.passed:
                failed = [v.name for v in verification.verdicts if v.outcome not in ("passed", "skipped")]
                raise RuntimeError(f"{name}'s generated tests failed: {failed}\n{verification.output[-3000:]}")
            seconds = dict.fromkeys(parts, 0.0)
            for verdict in verification.verdicts:
                seconds[part_of(verdict.name)] += verdict.seconds
            for part, value in seconds.items():
                parts[part].append(value)
    assert verification is not None
    return Suite(
        kind=kind,
        name=name,
        tests=len(verification.verdicts),
        outcomes=verification.counts(),
        wall=Sample(tuple(walls)),
        parts={part: Sample(tuple(values)).median for part, values in parts.items()},
    )
