"""The ``automodel-onboard`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from automodel_onboard import interrupts, kinds
from automodel_onboard.errors import ENVIRONMENT_CODES, Interrupted, OnboardError, as_onboard_error

QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
# Exit statuses (the README documents them): each failure class has its own, distinct from "tests failed".
EXIT_OK = 0
EXIT_TESTS_FAILED = 1  # the generated tests ran and some failed
EXIT_BAD_INPUT = 2  # a refusal: bad input, an unsupported model, a destination the tool will not touch
EXIT_ENVIRONMENT = 3  # the machine got in the way: permissions, disk, caches, a busy destination
EXIT_INTERNAL = 4  # a defect of this tool; the traceback goes to a log file, never the terminal
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; whatever the run had written is rolled back


def _emit_error(err: OnboardError, *, as_json: bool, out: TextIO, err_out: TextIO) -> int:
    print(f"error: {err.message}", file=err_out)
    if as_json:
        print(json.dumps(err.to_dict(), indent=2), file=out)
    return EXIT_ENVIRONMENT if err.code in ENVIRONMENT_CODES else EXIT_BAD_INPUT


def _fmt_count(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _known(value: Any) -> str:
    return "unknown (needs the inventory)" if value is None else str(value)


def _registered(spec: dict[str, Any]) -> bool:
    """Whether the installed NeMo AutoModel registers the spec's architecture already."""
    from automodel_onboard.destination.registry_patch import read_registry
    from automodel_onboard.model.naming import installed_registry

    path = installed_registry()
    try:
        return path is not None and spec["architecture"] in read_registry(path).arch_mapping
    except OnboardError:
        return False


def summary(spec: dict[str, Any]) -> str:
    """A readable account of the spec: verdict, reasons, features, sizes."""
    f = spec["features"]
    att, rope, mlp, norm = f["attention"], f["rope"], f["mlp"], f["norm"]
    kind = spec["kind"] + (f" (text backbone: {spec['text_backbone']})" if spec["text_backbone"] else "")
    lines = [
        f"{spec['architecture']}  (model_type {spec['model_type']})",
        f"  kind:          {kind}",
        "  reasons:",
        *[f"    - {r}" for r in spec["reasons"]],
        f"  module name:   {spec['module_name']}   class prefix: {spec['class_prefix']}",
    ]
    if spec["name_collision"]:
        from automodel_onboard.model import naming

        free = naming.free_name(spec["module_name"], naming.existing_model_folders())
        flags = f"--name {free}" + (" --replace" if _registered(spec) else "")
        lines.append(
            f"  note:          NeMo AutoModel already has a model folder {spec['name_collision']!r}; "
            f"onboarding into a NeMo AutoModel checkout needs `{flags}`"
        )
    if spec["custom_code"]:
        lines.append("  custom code:   yes (auto_map recorded, never imported)")
    lines += [
        f"  attention:     {att['num_heads']} heads / {att['num_kv_heads']} kv ({att['grouping']}), "
        f"head_dim {att['head_dim']}{' explicit' if att['head_dim_explicit'] else ''}, "
        f"qkv bias {_known(att['qkv_bias'])}, o bias {_known(att['o_bias'])}, q/k norm {_known(att['qk_norm'])}, "
        f"sliding window {att['sliding_window']}",
        f"  rope:          {rope['type']}, theta {rope['theta']}, rotary fraction {rope['partial_rotary_factor']}",
        f"  mlp:           {mlp['activation']}, gated {_known(mlp['gated'])}, bias {_known(mlp['bias'])}; "
        f"norm {norm['type']} eps {norm['eps']}; tied embeddings {f['tie_word_embeddings']}",
    ]
    if f["moe"]:
        m = f["moe"]
        lines.append(
            f"  experts:       {m['num_experts']} routed, top-{m['top_k']}, width {m['expert_intermediate_size']}, "
            f"shared {m['num_shared_experts']}, router {m['score_func']}"
            f"{' + correction bias' if m['correction_bias'] else ''}, dense layers {len(m['dense_layers'])}"
        )
    if f["vision"]:
        v = f["vision"]
        lines.append(
            f"  vision:        {_known(v['model_type'])} ({v['config_key']}), hidden {v['hidden_size']}, "
            f"layers {v['num_layers']}, image token {v['image_token_id']}, projector {_known(v['projector'])}"
        )
    if f["traits"]:
        lines.append("  traits beyond the plain decoder:")
        lines += [f"    - {t['description']}" for t in f["traits"]]
    if spec.get("layout") and spec["layout"]["gaps"]:
        lines.append(f"  not implemented by the {spec['kind']} template:")
        lines += [f"    - {g}" for g in spec["layout"]["gaps"]]
    p = spec["params"]
    lines.append(
        f"  parameters:    total {_fmt_count(p['total'])}"
        + (f", active {_fmt_count(p['active'])}" if p["active"] else "")
        + f"; tiny test config {_fmt_count(p['tiny_total'])}"
    )
    if spec["inventory_absent_reason"]:
        lines.append(f"  inventory:     absent: {spec['inventory_absent_reason']}")
    else:
        lines.append(f"  inventory:     {len(spec['inventory']['tensors'])} checkpoint tensors")
    return "\n".join(lines)


def cmd_classify(args: argparse.Namespace, out: TextIO, err_out: TextIO) -> int:
    from automodel_onboard.model.source import load_source
    from automodel_onboard.model.spec import build_spec

    source = load_source(args.model, args.revision)
    spec = build_spec(source, module_name=args.name, with_inventory=not args.no_inventory)
    data = spec.to_dict()
    if args.json:
        print(json.dumps(data, indent=2), file=out)
    else:
        print(summary(data), file=out)
    return EXIT_OK


def _progress(err_out: TextIO) -> Callable[[str], None]:
    started = time.perf_counter()

    def report(step: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {step} ...", file=err_out, flush=True)

    return report


def report_text(report: Any) -> str:
    """What ``new`` did and what to do next, in the order a user acts on it."""
    spec, answers, rendered = report.spec, report.answers, report.rendered
    dest = report.destination.root
    template = "" if answers.kind == spec["kind"] else f" ({answers.kind} template; the spec says {spec['kind']})"
    lines = [
        f"onboarded {spec['architecture']} as {report.paths.module}{template}",
        "  files written:",
        *[f"    {path}" for path in rendered.files],
        f"  {Path(report.paths.registry).name} lines added:",
        *([f"    {line}" for line in rendered.registry_lines] or ["    (none: already registered)"]),
    ]
    lines += [f"  warning: {w}" for w in report.warnings]
    result = report.verification
    # A plugin's entry points reach NeMo AutoModel by installing it (again, after each model added).
    cd = f"cd {shlex.quote(str(dest))} &&" + (" pip install -e . &&" if report.paths.plugin_package else "")
    if result is None:
        lines.append("  generated tests: not run (--no-verify)")
        next_step = f"{cd} python -m pytest {report.paths.tests}"
    else:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts().items())) or "no tests collected"
        lines.append(f"  generated tests: {'PASSED' if result.passed else 'FAILED'} ({counts})")
        lines += [
            f"    {v.outcome:<7} {v.name}" + (f": {_first_line(v.message)}" if v.outcome != "passed" else "")
            for v in result.verdicts
        ]
        if result.max_logit_diff is not None:
            lines.append(f"  max logit difference vs the transformers reference: {result.max_logit_diff:.3e}")
        if result.first_diverging:
            lines.append(f"  first diverging layer: {result.first_diverging}")
        if not result.verdicts:
            lines.append("    " + "\n    ".join(result.output.strip().splitlines()[-15:]))
        if report.log is not None:
            lines.append(f"  the generated tests' whole output: {report.log}")
        recipe = next((p for p in rendered.files if p.suffix == ".yaml" and str(p).startswith("examples/")), None)
        next_step = (
            f"{cd} automodel {recipe}  # fine-tune with the example recipe (needs a GPU)"
            if result.passed and recipe is not None
            else f"{cd} python -m pytest {report.paths.tests} -x  # then fix the first failure"
        )
    lines.append(f"  next: {next_step}")
    return "\n".join(lines)


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cmd_new(args: argparse.Namespace, out: TextIO, err_out: TextIO) -> int:
    from automodel_onboard.commands.new import Request, new

    request = Request(
        model=args.model,
        dest=Path(args.plugin or args.dest),
        plugin=args.plugin is not None,
        name=args.name,
        kind=args.kind,
        revision=args.revision,
        dataset=args.dataset,
        replace=args.replace,
        allow_fewer_capabilities=args.allow_fewer_capabilities,
        allow_unsupported=args.allow_unsupported,
        verify=not args.no_verify,
        trust_remote_code=args.trust_remote_code,
    )
    report = new(request, progress=_progress(err_out))
    print(report_text(report), file=out)
    if report.verification is not None and not report.verification.passed:
        return EXIT_TESTS_FAILED
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace, out: TextIO, err_out: TextIO) -> int:
    from automodel_onboard.destination.sandbox import make_sandbox

    path = make_sandbox(Path(args.dir))
    print(f"made a scratch NeMo AutoModel checkout in {path}", file=out)
    print(f"  next: automodel-onboard new MODEL --dest {path}", file=out)
    return EXIT_OK


class _Version(argparse.Action):
    """``--version``, computed only when asked (it runs git on the template clone)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from importlib import metadata

        from automodel_onboard.render.copier_run import template_version

        print(f"automodel-onboard {metadata.version('automodel-onboard')} (templates {template_version()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automodel-onboard",
        description="Onboard a Hugging Face architecture into NeMo AutoModel.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the tool's and the templates' versions")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("classify", help="classify a model and print its architecture spec")
    p.add_argument("model", help="Hub id (org/name[@revision]), a config.json, or a checkpoint folder")
    p.add_argument("--revision", help="Hub branch, tag or commit")
    p.add_argument("--name", help="module name to use instead of the one derived from model_type")
    p.add_argument("--json", action="store_true", help="print the spec (or the error) as JSON")
    p.add_argument(
        "--no-inventory",
        action="store_true",
        help="skip the reference inventory (no torch/transformers import; faster, less complete)",
    )
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("new", help="onboard a model into a NeMo AutoModel checkout and run its generated tests")
    p.add_argument("model", help="Hub id (org/name[@revision]), a config.json, or a checkpoint folder")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dest", help="root of the NeMo AutoModel checkout")
    where.add_argument(
        "--plugin", help="folder of an out-of-tree plugin package (created when absent or empty, else added to)"
    )
    p.add_argument("--name", help="module name (default: derived from model_type)")
    p.add_argument("--kind", choices=kinds.names(), help="template to render (default: the spec's kind)")
    p.add_argument("--revision", help="Hub branch, tag or commit")
    p.add_argument("--dataset", help="dataset of the example recipe")
    p.add_argument("--replace", action="store_true", help="re-point an architecture NeMo already registers")
    p.add_argument(
        "--allow-fewer-capabilities",
        action="store_true",
        help="with --replace: accept a generated model that declares fewer parallelisms than the class it replaces",
    )
    p.add_argument(
        "--allow-unsupported", action="store_true", help="render even with features the template does not implement"
    )
    p.add_argument("--no-verify", action="store_true", help="do not run the generated tests")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="for a model transformers does not implement: run the auto_map code of the local checkpoint folder "
        "MODEL as the reference (never downloaded)",
    )
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("sandbox", help="make a scratch NeMo AutoModel checkout from the installed package")
    p.add_argument("dir", help="folder to create (must be empty or absent)")
    p.set_defaults(func=cmd_sandbox)

    from automodel_onboard.commands.coverage import add_coverage_parser
    from automodel_onboard.commands.render_all import add_render_all_parser
    from automodel_onboard.commands.update import add_update_parser

    add_update_parser(sub)
    add_render_all_parser(sub)
    add_coverage_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err_out: TextIO | None = None) -> int:
    out = out or sys.stdout
    err_out = err_out or sys.stderr
    # Packages that transformers probes on import log failures of optional CUDA kernels; they say nothing about
    # the user's model and would bury the tool's own messages.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    as_json = getattr(args, "json", False)
    try:
        with interrupts.as_exceptions() as received:
            code = args.func(args, out, err_out)
            received.raise_if_received()  # one a library swallowed still ends the run as interrupted
            return code
    except (KeyboardInterrupt, Interrupted) as exc:
        name = "SIGTERM" if isinstance(exc, Interrupted) else "Ctrl-C"
        print(f"interrupted ({name}); an install under way was rolled back, a finished one stays", file=err_out)
        return EXIT_INTERRUPTED
    except OnboardError as err:
        return _emit_error(err, as_json=as_json, out=out, err_out=err_out)
    except Exception as exc:  # never a traceback: environment faults are ours to name, the rest a defect to report
        err = as_onboard_error(exc)
        return _emit_error(err, as_json=as_json, out=out, err_out=err_out) if err else _internal(exc, err_out)


def _internal(exc: BaseException, err_out: TextIO) -> int:
    log = interrupts.log_traceback(exc)
    print(
        f"error: internal error: {type(exc).__name__}: {_first_line(str(exc))}\n"
        f"  how to fix: this is a defect of automodel-onboard; please report it with the traceback in {log}",
        file=err_out,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
