"""Repeated timings and what is reported of them: median and spread, and ratios taken run by run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """Repeated measurements of one thing: seconds, or ratios of seconds."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.values), max(self.values)

    def to_json(self) -> dict[str, object]:
        low, high = self.spread
        return {"median": self.median, "min": low, "max": high, "runs": list(self.values)}


@dataclass(frozen=True)
class Ratio(Sample):
    """``a / b`` of runs measured side by side, round by round: a slow moment of the machine, which slows both,
    cancels out."""

    @classmethod
    def of(cls, a: Sample, b: Sample) -> Ratio:
        if len(a.values) != len(b.values):
            raise ValueError("a ratio is taken of runs measured in the same rounds")
        return cls(tuple(x / y for x, y in zip(a.values, b.values, strict=True)))

    def at_most(self, bound: float) -> bool:
        """Whether the ratio is ``bound`` or below within the run's spread."""
        return self.spread[0] <= bound

    def to_json(self) -> dict[str, object]:
        return {key: value for key, value in super().to_json().items() if key != "runs"}  # the runs are beside it


def rounds(count: int, names: Sequence[str]) -> list[list[str]]:
    """The order of each round of interleaved runs: rotated, so that no one always runs first or last."""
    return [[names[(r + i) % len(names)] for i in range(len(names))] for r in range(count)]
