"""Repeated timings and what is reported of them: median and spread, and ratios taken run by run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """Seconds of repeated runs of one thing."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)

    def to_json(self) -> dict[str, object]:
        low, high = self.spread
        return {"median": self.median, "min": low, "max": high, "runs": list(self.seconds)}


@dataclass(frozen=True)
class Ratio:
    """``a / b`` of runs measured side by side: the ratio of each round, so that a slow moment of the machine, which
    slows both, cancels out."""

    per_round: tuple[float, ...]

    @classmethod
    def of(cls, a: Sample, b: Sample) -> Ratio:
        if len(a.seconds) != len(b.seconds):
            raise ValueError("a ratio is taken of runs measured in the same rounds")
        return cls(tuple(x / y for x, y in zip(a.seconds, b.seconds, strict=True)))

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.per_round), max(self.per_round)

    def at_most(self, bound: float) -> bool:
        """Whether the ratio is ``bound`` or below within the run's spread."""
        return self.spread[0] <= bound

    def to_json(self) -> dict[str, object]:
        low, high = self.spread
        return {"median": self.median, "min": low, "max": high}


def rounds(count: int, names: Sequence[str]) -> list[list[str]]:
    """The order of each round of interleaved runs: rotated, so that no one always runs first or last."""
    return [[names[(r + i) % len(names)] for i in range(len(names))] for r in range(count)]
