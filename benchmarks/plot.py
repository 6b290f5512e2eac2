"""The PNG plot of a benchmark run: each family's training-step time relative to the transformers reference."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import NAMES


def relative(result: Mapping[str, Any], name: str) -> tuple[float, float, float]:
    """Median, lowest and highest of ``name``'s step time over the reference's, round by round."""
    ratios = [
        a / b for a, b in zip(result["seconds"][name]["runs"], result["seconds"]["transformers"]["runs"], strict=True)
    ]
    return statistics.median(ratios), min(ratios), max(ratios)


def speed(results: Sequence[Mapping[str, Any]], machine: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [r["family"] for r in results]
    width = 0.8 / len(NAMES)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for i, (name, label) in enumerate(NAMES.items()):
        values = [relative(r, name) for r in results]
        medians = [v[0] for v in values]
        errors = [[v[0] - v[1] for v in values], [v[2] - v[0] for v in values]]
        xs = [x + (i - (len(NAMES) - 1) / 2) * width for x in range(len(families))]
        bars = ax.bar(xs, medians, width, yerr=errors, capsize=3, label=label)
        ax.bar_label(bars, labels=[f"{m:.2f}" for m in medians], padding=2, fontsize=8)
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(families)), [family.replace(", ", "\n") for family in families])
    ax.set_ylabel("forward+backward time / transformers'")
    device = machine["accelerator"] or f"CPU, {machine['torch_threads']} threads"
    batch = results[0]["batch"]
    ax.set_title(f"Training step, {results[0]['dtype']}, batch {batch[0]} x {batch[1]} tokens ({device})", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=len(NAMES))
    ax.set_ylim(0, max(relative(r, n)[2] for r in results for n in NAMES) * 1.35)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
