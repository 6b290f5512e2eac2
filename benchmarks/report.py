"""The Markdown summary of a benchmark run, made from its JSON alone (so a recorded run renders the same later)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEVICES = {"cpu": "the CPU", "cuda": "the GPU"}
NAMES = {"generated": "generated", "nemo": "NeMo AutoModel's own", "transformers": "transformers"}
MIB = 2**20


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _seconds(sample: Mapping[str, Any] | None) -> str:
    if sample is None:
        return "not run"
    low, high = sample["min"], sample["max"]
    return f"{sample['median']:.2f} ({low:.2f}-{high:.2f})"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _ratio(ratio: Mapping[str, float]) -> str:
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"


def machine(m: Mapping[str, Any]) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items() if version)
    where = m["accelerator"] or f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads)"
    return [
        f"Measured on {m['date']} at commit {m['commit']}: {where}, {m['memory_gib']} GiB, Python {m['python']}; "
        f"{versions}.",
        "",
    ]


def onboarding(results: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        (r["task"], _seconds(r["cold"]), _seconds(r["warm"]), f"{len(r['cold']['runs'])} / {len(r['warm']['runs'])}")
        for r in results
    ]
    return _table(("command", "cold (s)", "warm (s)", "runs cold / warm"), rows)


def suites(results: Sequence[Mapping[str, Any]]) -> list[str]:
    parts = list(results[0]["parts"]) if results else []
    rows = []
    for r in results:
        outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(r["outcomes"].items()))
        rows.append((r["kind"], r["name"], outcomes, _seconds(r["wall"]), *(f"{r['parts'][p]:.1f}" for p in parts)))
    return _table(("kind", "model", "tests", "wall (s)", *(f"{p} (s)" for p in parts)), rows)


def backends(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dtype, the device and NeMo's backend settings the rows share; the one that differs (experts) is in each
    row's family."""
    first = results[0]
    shared = {key: value for key, value in first["backend"].items() if all(r["backend"][key] == value for r in results)}
    settings = ", ".join(f"{key} {value}" for key, value in shared.items())
    return [f"{first['dtype']} on {DEVICES[first['device']]}; NeMo AutoModel's backends: {settings}.", ""]


def speed(results: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for r in results:
        seconds = r["seconds"]
        ratios = r["ratio_generated_to"]
        rows.append(
            (
                r["family"],
                f"{r['parameters'] / 1e6:.1f}M",
                *(_seconds(seconds[name]) for name in NAMES),
                _ratio(ratios["nemo"]),
                _ratio(ratios["transformers"]),
                _yes(r["no_slower_than_nemo"]),
                _yes(r["faster_than_transformers"]),
                f"{r['max_logit_diff']['generated']:.1e} / {r['max_logit_diff']['nemo']:.1e}",
            )
        )
    header = (
        "family",
        "parameters",
        *(f"{label} (s)" for label in NAMES.values()),
        "generated / NeMo's own",
        "generated / transformers",
        "generated no slower than NeMo's own (within the spread)",
        "generated faster than transformers (median)",
        "max logit difference to transformers, generated / NeMo's own",
    )
    return backends(results) + _table(header, rows)


def memory(results: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for r in results:
        params = r["parameter_bytes"]
        same = _yes(len(set(params.values())) == 1)
        rows.append(
            (
                r["family"],
                *(f"{params[name] / MIB:.1f}" for name in NAMES),
                same,
                *(f"{r['peak_step_bytes'][name] / MIB:.1f}" for name in NAMES),
            )
        )
    header = (
        "family",
        *(f"parameters, {label} (MiB)" for label in NAMES.values()),
        "equal",
        *(f"step peak, {label} (MiB)" for label in NAMES.values()),
    )
    return _table(header, rows)


def scaling(points: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        (
            f"{p['kind']} ({p['fixture'].removesuffix('.json')})",
            f"{p['field']} = {p['value']}",
            _seconds(p["classify"]),
            _seconds(p["new"]),
            _seconds(p["suite"]),
        )
        for p in points
    ]
    header = (
        "config",
        "grown",
        "classify, with the inventory (s)",
        "new, without the tests (s)",
        "generated suite (s)",
    )
    return _table(header, rows)


SECTIONS = (
    ("onboarding", "Onboarding", onboarding),
    ("suites", "The generated test suites", suites),
    ("speed", "Training step: generated model, NeMo AutoModel's own, transformers", speed),
    ("speed", "Memory", memory),
    ("scaling", "Scaling with the config", scaling),
)


def markdown(results: Mapping[str, Any], heading: str = "####") -> str:
    """Every section the run has, each as a headed table, after a line naming the machine."""
    lines = machine(results["machine"])
    for key, title, render in SECTIONS:
        if results.get(key):
            lines += [f"{heading} {title}", "", *render(results[key])]
    return "\n".join(lines).rstrip() + "\n"
