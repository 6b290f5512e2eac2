"""``automodel-onboard coverage``: can the tool onboard each architecture the installed transformers implements?

Every model type transformers maps to a causal-LM or image-text-to-text class is a case, its config the config
class's defaults with ``architectures`` set to that class. Spec only (``--no-verify``), a case's verdict is what
``new`` decides before rendering: ``renders``, or ``refused: <code>`` with the features it lacks. Otherwise the cases
that render go through render-all's machinery (a scratch checkout each, the generated tests): ``passed`` or
``failed``, naming the first diverging layer. A config class whose defaults cannot even be built is ``unbuildable``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from automodel_onboard.commands import render_all as runs
from automodel_onboard.commands.render_all import REFUSED, Case, Report, Row
from automodel_onboard.errors import OnboardError

# transformers' auto mappings whose classes the kinds build, the multimodal one first: a type in both (Gemma 3) maps
# its multimodal config to its image-text class.
MAPPINGS = ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")
UNBUILDABLE = "unbuildable"
SOURCE = "zoo"


def zoo() -> dict[str, str]:
    """Every model type of the installed transformers with a causal-LM or image-text class: type -> class name."""
    from transformers.models.auto import modeling_auto

    found: dict[str, str] = {}
    for mapping in MAPPINGS:
        for model_type, architecture in getattr(modeling_auto, mapping).items():
            found.setdefault(model_type, architecture)
    return dict(sorted(found.items()))


def zoo_cases(folder: Path, types: Sequence[str] | None = None) -> tuple[tuple[Case, ...], tuple[Row, ...]]:
    """The cases (each type's default config written into ``folder``), and a row for each type whose config class
    cannot build its defaults."""
    from transformers import CONFIG_MAPPING

    known = zoo()
    unknown = [t for t in types or () if t not in known]
    if unknown:
        raise OnboardError(
            f"not a causal-LM or image-text model type of the installed transformers: {', '.join(unknown)}",
            where="--types",
            fix="choose model types from transformers' causal-LM and image-text-to-text mappings (coverage lists "
            "them all without --types)",
            code="unknown-model-type",
        )
    cases, unbuildable = [], []
    for model_type in types or known:
        case_id = f"{SOURCE}/{model_type}"
        try:
            # What save_pretrained writes for the defaults; JSON has no Infinity (SSM configs use it for time steps).
            config = {**CONFIG_MAPPING[model_type]().to_diff_dict(), "architectures": [known[model_type]]}
            text = json.dumps(config, indent=2, allow_nan=False)
        except Exception as exc:  # noqa: BLE001 - any failure of the defaults is the row's verdict
            unbuildable.append(Row(case_id, SOURCE, "-", UNBUILDABLE, None, None, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        path = Path(folder) / f"{model_type}.json"
        path.write_text(text + "\n")
        cases.append(Case(case_id, SOURCE, path))
    return tuple(cases), tuple(unbuildable)


def assess_case(case: Case, _pristine: Path, _work: Path) -> Row:
    """The spec-only verdict of a case (in a worker process); a bug in one case becomes its row."""
    from automodel_onboard.commands import new as onboard

    def row(kind: str, verdict: str, notes: str = "", reasons: Sequence[str] = ()) -> Row:
        # Abstracted and deduplicated: a type missing one feature in every layer lists it once (reports stay small).
        return Row(
            case.case_id,
            case.source,
            kind,
            verdict,
            None,
            None,
            notes[:200],
            tuple(dict.fromkeys(map(reason_key, reasons))),
        )

    try:
        verdict = onboard.assess(str(case.config))
    except Exception as exc:  # noqa: BLE001 - reported as the row's verdict
        return row("-", runs.FAILED, f"{type(exc).__name__}: {exc}")
    if verdict.refusal is None:
        return row(verdict.kind, runs.RENDERS)
    return row(verdict.kind, f"{REFUSED}: {verdict.refusal.code}", verdict.refusal.what, verdict.reasons)


def coverage(
    types: Sequence[str] | None = None,
    *,
    kind: str | None = None,
    verify: bool = True,
    jobs: int = 2,
    progress_to: TextIO | None = None,
) -> Report:
    """Every case spec only; with ``verify``, those that render onboarded and tested as render-all does them (each
    row printed to ``progress_to`` as it comes)."""

    def progress(total: int) -> Any:
        return None if progress_to is None else runs.progress_printer(progress_to, total)

    with tempfile.TemporaryDirectory(prefix="automodel-onboard-coverage-") as tmp:
        cases, unbuildable = zoo_cases(Path(tmp), types)
        assessed = runs.render_all(cases, jobs=jobs, progress=progress(len(cases)), runner=assess_case)
        rows = [row for row in (*assessed.rows, *unbuildable) if kind is None or row.kind == kind]
        if verify:
            rendering = {row.case_id for row in rows if row.verdict == runs.RENDERS}
            chosen = [case for case in cases if case.case_id in rendering]
            tested = runs.render_all(chosen, jobs=jobs, progress=progress(len(chosen)))
            verified = {row.case_id: row for row in tested.rows}
            rows = [verified.get(row.case_id, row) for row in rows]
    wall = assessed.wall_seconds + (tested.wall_seconds if verify else 0.0)
    return Report(tuple(sorted(rows, key=lambda r: r.case_id)), wall, jobs, assessed.versions)


def reason_key(reason: str) -> str:
    """A refusal reason with its module and tensor names (dotted) abstracted: one missing feature counts once per
    type, however many tensors show it."""
    return re.sub(r"[\w{}]+(?:\.[\w{}]+)+", "...", reason)


def summary(rows: Sequence[Row]) -> str:
    """Markdown: verdicts per kind ("-": no spec could be built), refusals by code, then the missing features of the
    kinds with a template by how many types each would unlock."""
    verdicts = sorted({_verdict_group(row.verdict) for row in rows}, key=_group_order)
    lines = ["| kind | types | " + " | ".join(verdicts) + " |", "|---|---|" + "---|" * len(verdicts)]
    for kind in sorted({row.kind for row in rows}):
        mine = Counter(_verdict_group(row.verdict) for row in rows if row.kind == kind)
        lines.append(f"| {kind} | {sum(mine.values())} | " + " | ".join(str(mine[v]) for v in verdicts) + " |")
    total = Counter(_verdict_group(row.verdict) for row in rows)
    lines.append(f"| all | {len(rows)} | " + " | ".join(str(total[v]) for v in verdicts) + " |")
    refusals = Counter(row.verdict for row in rows if row.verdict.startswith(REFUSED) or row.verdict == UNBUILDABLE)
    lines += ["", "| refusal | types |", "|---|---|"]
    lines += [f"| {verdict} | {n} |" for verdict, n in sorted(refusals.items(), key=lambda item: (-item[1], item[0]))]
    blocking: dict[str, set[str]] = {}
    kinds_of: dict[str, set[str]] = {}
    for row in rows:
        if row.verdict.startswith(REFUSED) and row.kind not in ("unsupported", "-"):
            for reason in {reason_key(r) for r in row.reasons}:
                blocking.setdefault(reason, set()).add(row.case_id.removeprefix(f"{SOURCE}/"))
                kinds_of.setdefault(reason, set()).add(row.kind)
    if blocking:
        lines += ["", "| missing feature (refused types of a kind with a template) | types | kinds |", "|---|---|---|"]
        for reason, found in sorted(blocking.items(), key=lambda item: (-len(item[1]), item[0])):
            cells = (
                reason.replace("|", "\\|"),
                f"{len(found)}: {', '.join(sorted(found))}",
                ", ".join(sorted(kinds_of[reason])),
            )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _verdict_group(verdict: str) -> str:
    return verdict.split(":", 1)[0]


def _group_order(group: str) -> int:
    order = (runs.PASSED, runs.RENDERS, runs.FAILED, REFUSED, UNBUILDABLE)
    return order.index(group) if group in order else len(order)


def write_report(report: Report, base: Path) -> tuple[Path, Path]:
    """render-all's report files, the summary above the rows in the Markdown one."""
    json_path, md_path = runs.write_report(report, base)
    md_path.write_text(summary(report.rows) + "\n" + md_path.read_text())
    return json_path, md_path


# --------------------------------------------------------------------------------------------------------------------
# Command line


def add_coverage_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "coverage", help="onboard every causal-LM and image-text architecture of the installed transformers, report"
    )
    p.add_argument("--types", help="comma-separated model types (default: every one)")
    p.add_argument("--kind", help="only the rows of this kind (dense, moe, vlm, unsupported)")
    p.add_argument("--no-verify", action="store_true", help="spec only: what would render, without running tests")
    p.add_argument("--jobs", type=int, default=2, help="cases run in parallel (processes)")
    p.add_argument("--report", default="coverage-report", help="report path without suffix: writes .md and .json")
    p.add_argument(
        "--expected", help="expected report (JSON): exit 1 when a row that rendered or passed no longer does"
    )
    p.set_defaults(func=cmd_coverage)
    return p


def cmd_coverage(args: argparse.Namespace, out: TextIO, err_out: TextIO) -> int:
    expected = runs.load_expected(Path(args.expected)) if args.expected else None
    types = [t for t in args.types.split(",") if t] if args.types else None
    print(f"coverage: {len(types or zoo())} model types, {args.jobs} jobs", file=err_out, flush=True)
    report = coverage(types, kind=args.kind, verify=not args.no_verify, jobs=args.jobs, progress_to=err_out)
    json_path, md_path = write_report(report, Path(args.report))
    print(summary(report.rows), file=out)
    print(f"report: {md_path} and {json_path} ({report.wall_seconds / 60:.1f} min)", file=out)
    if expected is None:
        return runs.EXIT_OK
    comparison = runs.compare(expected, report.rows)
    print(runs.comparison_text(comparison), file=out)
    return runs.EXIT_OK if comparison.ok else runs.EXIT_REGRESSION


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m automodel_onboard.commands.coverage [options]``: the same as ``automodel-onboard coverage``."""
    return runs.run_subcommand("coverage", add_coverage_parser, argv)


if __name__ == "__main__":  # the guard also keeps spawned workers from re-running the command
    raise SystemExit(main())
