"""``automodel-onboard render-all``: onboard every fixture config and a matrix of synthetic feature combinations, each
into a fresh scratch checkout, run the generated tests, and report a verdict per row.

A row is one config id and the kind its spec classifies as. Its verdict is ``passed`` or ``failed`` (the generated
tests), or ``refused: <code>`` when the tool declines the config (unsupported architecture or features, remote code
only, no template for its kind yet); refusals are expected rows too. With ``--expected`` the run is compared with a
committed report: a row expected to pass that does not (or is missing) is a regression and fails the run; new rows and
improvements are reported without failing it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from automodel_onboard import kinds
from automodel_onboard.errors import OnboardError
from automodel_onboard.layout.matrix import Synthetic, all_cases

FIXTURES = Path("tests", "fixtures", "configs")  # in a clone of this repository
SCHEMA = 1
PASSED, FAILED, REFUSED = "passed", "failed", "refused"
RENDERS = "renders"  # a spec-only run's verdict: refused by nothing before rendering
GOOD = frozenset({PASSED, RENDERS})
EXIT_OK, EXIT_REGRESSION = 0, 1

# --------------------------------------------------------------------------------------------------------------------
# Cases and rows


@dataclass(frozen=True)
class Case:
    case_id: str
    source: str  # "fixture" | "synthetic" | "zoo"
    config: Path  # a config.json


@dataclass(frozen=True)
class Row:
    case_id: str
    source: str
    kind: str
    verdict: str  # "passed" | "failed" | "refused: <code>" | "renders" (spec only)
    max_logit_diff: float | None
    test_seconds: float | None
    notes: str = ""
    reasons: tuple[str, ...] = ()  # a refusal's reasons, one feature each

    @property
    def key(self) -> tuple[str, str]:
        return self.case_id, self.kind


@dataclass(frozen=True)
class Report:
    rows: tuple[Row, ...]
    wall_seconds: float
    jobs: int
    versions: Mapping[str, str]


def default_configs() -> Path | None:
    """The repository's fixture configs, when this package runs from a clone of it."""
    from automodel_onboard.render.copier_run import template_root

    folder = template_root() / FIXTURES
    return folder if folder.is_dir() else None


def fixture_cases(configs: Path) -> tuple[Case, ...]:
    """Every ``*.json`` config of ``configs`` (the labels file aside), as a case named by its file stem."""
    return tuple(
        Case(path.stem, "fixture", path) for path in sorted(Path(configs).glob("*.json")) if path.name != "labels.json"
    )


def synthetic_cases(
    folder: Path, ids: Sequence[str] | None = None, offered: frozenset[str] | None = None
) -> tuple[Case, ...]:
    """The synthetic matrix (all of it, or ``ids``), written as config files into ``folder``; kinds without a
    template are left out, since every synthetic case is built to exercise one."""
    offered = frozenset(kinds.names()) if offered is None else offered
    known = {s.case_id: s for s in all_cases()}
    unknown = [i for i in ids or () if i not in known]
    if unknown:
        raise OnboardError(
            f"unknown synthetic case(s): {', '.join(unknown)}",
            where="--synthetic",
            fix=f"choose from {', '.join(known)}, 'all' or 'none'",
        )
    chosen: list[Synthetic] = [known[i] for i in ids] if ids is not None else list(all_cases())
    cases = []
    for synthetic in chosen:
        if synthetic.kind not in offered:
            continue
        path = Path(folder) / f"{synthetic.case_id}.json"
        path.write_text(json.dumps(synthetic.config(), indent=2) + "\n")
        cases.append(Case(f"synthetic/{synthetic.case_id}", "synthetic", path))
    return tuple(cases)


def module_name_for(case: Case, model_type: str | None) -> str:
    """``<model_type>_gen`` for a fixture, the case id for a synthetic case; a valid, NeMo-free package name."""
    base = case.case_id.split("/", 1)[1] if case.source == "synthetic" else (model_type or case.case_id)
    name = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_")
    name = name if name[:1].isalpha() else f"m_{name}"
    return f"{name}_gen"


# --------------------------------------------------------------------------------------------------------------------
# Running one case (in a worker process)


def run_case(case: Case, pristine: Path, work: Path) -> Row:
    """Onboard ``case`` into a copy of the ``pristine`` checkout under ``work`` and run its generated tests."""
    from automodel_onboard.commands import new as onboard
    from automodel_onboard.model.spec import cached_spec

    def row(kind: str, verdict: str, diff: float | None = None, seconds: float | None = None, notes: str = "") -> Row:
        return Row(case.case_id, case.source, kind, verdict, diff, seconds, notes[:200])

    try:
        spec = cached_spec(onboard.model_argument(str(case.config)))
    except OnboardError as err:
        return row(
            "unsupported" if err.code.startswith("unsupported") else "-", f"{REFUSED}: {err.code}", notes=err.what
        )
    dest = Path(work) / re.sub(r"[^A-Za-z0-9_.-]+", "_", case.case_id)
    subprocess.run(["cp", "-a", str(pristine), str(dest)], check=True)
    request = onboard.Request(
        model=str(case.config),
        dest=dest,
        name=module_name_for(case, spec.model_type),
        replace=True,
        allow_fewer_capabilities=True,  # every family is rendered and tested, whatever NeMo's own declares
        verify=False,
    )
    try:
        report = onboard.new(request)
        return _verified(row, spec.kind, dest, Path(report.paths.tests))
    except OnboardError as err:
        return row(spec.kind, f"{REFUSED}: {err.code}", notes=err.what)
    finally:
        shutil.rmtree(dest, ignore_errors=True)  # a checkout per case: about 30 MB and thousands of files


def _verified(row: Callable[..., Row], kind: str, dest: Path, tests: Path) -> Row:
    from automodel_onboard import verify

    started = time.perf_counter()
    result = verify.run_generated_tests(dest, tests)
    seconds = time.perf_counter() - started
    if result.passed and result.verdicts:
        return row(kind, PASSED, result.max_logit_diff, seconds)
    failing = [v for v in result.verdicts if v.outcome in ("failed", "error")]
    if result.first_diverging:
        notes = f"{len(failing)} tests failed; hidden states diverge first at {result.first_diverging}"
    elif failing:
        notes = f"{failing[0].name}: {failing[0].message.splitlines()[0] if failing[0].message else ''}"
    else:
        notes = ""
    notes = notes or (result.output.strip().splitlines() or ["no tests collected"])[-1]
    return row(kind, FAILED, result.max_logit_diff, seconds, notes)


def _run_case_safely(case: Case, pristine: Path, work: Path) -> Row:
    # A bug in one case must not lose the others' rows: it becomes a failed row naming the exception.
    try:
        return run_case(case, pristine, work)
    except Exception as exc:  # noqa: BLE001 - reported as the row's verdict
        return Row(case.case_id, case.source, "-", FAILED, None, None, f"{type(exc).__name__}: {exc}"[:200])


# --------------------------------------------------------------------------------------------------------------------
# Running them all


def render_all(
    cases: Sequence[Case],
    *,
    jobs: int = 2,
    progress: Callable[[Row], None] | None = None,
    runner: Callable[[Case, Path, Path], Row] | None = None,
) -> Report:
    """Run every case, ``jobs`` at a time, each in a fresh copy of one scratch checkout (``runner``: a picklable
    function of the case, the pristine checkout and a work folder; by default onboarding and the generated tests)."""
    runner = runner or _run_case_safely
    from automodel_onboard.destination.sandbox import make_sandbox

    started = time.perf_counter()
    rows: list[Row] = []
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every config is a local file; nothing may reach the network
    with tempfile.TemporaryDirectory(prefix="automodel-onboard-render-all-") as tmp:
        pristine = make_sandbox(Path(tmp) / "pristine")
        work = Path(tmp) / "cases"
        work.mkdir()
        # spawn: the workers import torch themselves; forking a parent that may hold torch threads is unsafe.
        context = multiprocessing.get_context("spawn")
        pool_options = {"max_workers": max(1, jobs), "mp_context": context, "initializer": _quiet_stdout}
        with concurrent.futures.ProcessPoolExecutor(**pool_options) as pool:
            futures = [pool.submit(runner, case, pristine, work) for case in cases]
            for future in concurrent.futures.as_completed(futures):
                rows.append(future.result())
                if progress is not None:
                    progress(rows[-1])
    return Report(tuple(sorted(rows, key=_order)), time.perf_counter() - started, jobs, _versions())


def _quiet_stdout() -> None:
    # Copier's tasks print to the worker's stdout, interleaved across workers; the rows carry what matters.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _order(row: Row) -> tuple[int, str, str]:
    return ({"fixture": 0, "synthetic": 1}.get(row.source, 2), row.case_id.lower(), row.kind)


def _versions() -> dict[str, str]:
    import importlib.metadata

    names = ("automodel-onboard", "nemo-automodel", "transformers", "torch", "copier")
    return {n: _version(importlib.metadata, n) for n in names}


def _version(metadata: Any, name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# --------------------------------------------------------------------------------------------------------------------
# Reports


MARKDOWN_COLUMNS = ("config", "kind", "verdict", "max logit diff", "test time (s)", "notes")


def to_json(report: Report) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "versions": dict(report.versions),
        "jobs": report.jobs,
        "wall_seconds": round(report.wall_seconds, 1),
        "rows": [asdict(row) for row in report.rows],
    }


def from_json(data: Mapping[str, Any]) -> tuple[Row, ...]:
    if data.get("schema") != SCHEMA:
        raise OnboardError(
            f"report schema {data.get('schema')!r} is not {SCHEMA}",
            where="--expected",
            fix="regenerate the expected report with this version: render-all --report ci/expected-report",
            code="invalid-report",
        )
    return tuple(Row(**{**row, "reasons": tuple(row.get("reasons", ()))}) for row in data["rows"])


def to_markdown(report: Report) -> str:
    lines = [
        "| " + " | ".join(MARKDOWN_COLUMNS) + " |",
        "|" + "|".join("---" for _ in MARKDOWN_COLUMNS) + "|",
    ]
    for row in report.rows:
        cells = (
            row.case_id,
            row.kind,
            row.verdict,
            "n/a" if row.max_logit_diff is None else f"{row.max_logit_diff:.1e}",
            "n/a" if row.test_seconds is None else f"{row.test_seconds:.1f}",
            row.notes.replace("|", "\\|").replace("\n", " "),
        )
        lines.append("| " + " | ".join(cells) + " |")
    counts = _counts(report.rows)
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    lines += [
        "",
        f"{len(report.rows)} rows: {summary}. Wall time {report.wall_seconds / 60:.1f} min with {report.jobs} jobs "
        f"({', '.join(f'{k} {v}' for k, v in report.versions.items())}).",
    ]
    return "\n".join(lines) + "\n"


def _counts(rows: Sequence[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
    return dict(sorted(counts.items()))


def write_report(report: Report, base: Path) -> tuple[Path, Path]:
    """``<base>.json`` and ``<base>.md`` (a ``.json`` / ``.md`` suffix on ``base`` is dropped)."""
    base = Path(base)
    if base.suffix in (".json", ".md"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(to_json(report), indent=2) + "\n")
    md_path.write_text(to_markdown(report))
    return json_path, md_path


# --------------------------------------------------------------------------------------------------------------------
# Comparison with the expected report


@dataclass(frozen=True)
class Change:
    key: tuple[str, str]
    expected: str | None  # None: a new row
    actual: str | None  # None: the row is missing


@dataclass(frozen=True)
class Comparison:
    regressions: tuple[Change, ...]  # expected to pass, and not passing (or missing)
    improvements: tuple[Change, ...]  # now passing, not expected to
    new_rows: tuple[Change, ...]
    other_changes: tuple[Change, ...]  # verdict changed between non-passing verdicts

    @property
    def ok(self) -> bool:
        return not self.regressions


def compare(expected: Sequence[Row], actual: Sequence[Row]) -> Comparison:
    want = {r.key: r.verdict for r in expected}
    got = {r.key: r.verdict for r in actual}
    buckets: dict[str, list[Change]] = {"regressions": [], "improvements": [], "new_rows": [], "other_changes": []}
    for key in sorted(want.keys() | got.keys()):
        before, now = want.get(key), got.get(key)
        if before == now:
            continue
        buckets[_classify(before, now)].append(Change(key, before, now))
    return Comparison(**{name: tuple(changes) for name, changes in buckets.items()})


def was_asked(row: Row, synthetic_ids: Sequence[str] | None) -> bool:
    """Whether a run asked for an expected row: every fixture (a missing one is a regression), and the synthetic
    cases ``--synthetic`` names (None: all of them)."""
    if row.source != "synthetic" or synthetic_ids is None:
        return True
    return row.case_id.removeprefix("synthetic/") in synthetic_ids


def _classify(before: str | None, now: str | None) -> str:
    if before is None:
        return "new_rows"
    if before in GOOD:
        return "regressions"
    if now in GOOD:
        return "improvements"
    return "other_changes"


def comparison_text(comparison: Comparison) -> str:
    sections = (
        ("REGRESSIONS (expected to pass)", comparison.regressions),
        ("improvements", comparison.improvements),
        ("new rows", comparison.new_rows),
        ("other verdict changes", comparison.other_changes),
    )
    lines = []
    for title, changes in sections:
        if changes:
            lines.append(f"{title}:")
            lines += [
                f"  {case} [{kind}]: {c.expected or '(new)'} -> {c.actual or '(missing)'}"
                for c in changes
                for case, kind in [c.key]
            ]
    return "\n".join(lines) or "no change against the expected report"


# --------------------------------------------------------------------------------------------------------------------
# Command line


def add_render_all_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "render-all", help="onboard every fixture config and the synthetic matrix, run the generated tests, report"
    )
    p.add_argument(
        "--configs", help="folder of config.json fixtures (*.json); default: tests/fixtures/configs of this repository"
    )
    p.add_argument(
        "--synthetic", default="all", help="synthetic cases: 'all', 'none', or a comma-separated list of case ids"
    )
    p.add_argument("--report", default="render-all-report", help="report path without suffix: writes .md and .json")
    p.add_argument("--jobs", type=int, default=2, help="cases run in parallel (processes)")
    p.add_argument("--expected", help="expected report (JSON): exit 1 when a row expected to pass does not")
    p.set_defaults(func=cmd_render_all)
    return p


def cmd_render_all(args: argparse.Namespace, out: TextIO, err_out: TextIO) -> int:
    expected = load_expected(Path(args.expected)) if args.expected else None
    configs = Path(args.configs) if args.configs else default_configs()
    if configs is None:
        raise OnboardError(
            "no fixture configs to render: this installation is not a clone of the repository",
            where="--configs",
            fix="pass --configs with a folder of config.json files",
            code="no-configs",
        )
    if not configs.is_dir():
        raise OnboardError(
            f"{configs} is not a folder",
            where="--configs",
            fix="pass --configs with a folder of config.json files",
            code="no-configs",
        )
    with tempfile.TemporaryDirectory(prefix="automodel-onboard-synthetic-") as tmp:
        ids = None if args.synthetic == "all" else [] if args.synthetic == "none" else args.synthetic.split(",")
        cases = (*fixture_cases(configs), *synthetic_cases(Path(tmp), ids))
        print(f"render-all: {len(cases)} cases, {args.jobs} jobs", file=err_out, flush=True)
        report = render_all(cases, jobs=args.jobs, progress=progress_printer(err_out, len(cases)))
    json_path, md_path = write_report(report, Path(args.report))
    print(to_markdown(report), file=out)
    print(f"report: {md_path} and {json_path} ({report.wall_seconds / 60:.1f} min)", file=out)
    if expected is None:
        return EXIT_OK
    asked = [r for r in expected if was_asked(r, ids)]
    comparison = compare(asked, report.rows)
    print(comparison_text(comparison), file=out)
    if len(asked) < len(expected):
        print(f"not compared: {len(expected) - len(asked)} synthetic rows --synthetic left out", file=out)
    return EXIT_OK if comparison.ok else EXIT_REGRESSION


def load_expected(path: Path) -> tuple[Row, ...]:
    try:
        return from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OnboardError(
            f"cannot read the expected report: {exc}",
            where=str(path),
            fix="pass the JSON file a render-all run wrote (ci/expected-report.json)",
            code="invalid-report",
        ) from exc


def progress_printer(err_out: TextIO, total: int) -> Callable[[Row], None]:
    done = [0]

    def report(row: Row) -> None:
        done[0] += 1
        print(f"[{done[0]}/{total}] {row.case_id} [{row.kind}]: {row.verdict}", file=err_out, flush=True)

    return report


def run_subcommand(name: str, add_parser: Callable[[Any], argparse.ArgumentParser], argv: Sequence[str] | None) -> int:
    """``python -m`` entry of a subcommand: its parser alone, its errors printed as the CLI prints them."""
    import sys

    parser = argparse.ArgumentParser(prog=f"python -m automodel_onboard.commands.{name.replace('-', '_')}")
    add_parser(parser.add_subparsers(dest="command")).prog = parser.prog
    args = parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args, sys.stdout, sys.stderr)
    except OnboardError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m automodel_onboard.commands.render_all [options]``: the same as ``automodel-onboard render-all``."""
    return run_subcommand("render-all", add_render_all_parser, argv)


if __name__ == "__main__":  # the guard also keeps spawned workers from re-running the command
    raise SystemExit(main())
