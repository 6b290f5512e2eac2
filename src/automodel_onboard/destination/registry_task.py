"""The Copier task that registers a rendered model in the destination's ``registry.py``.

Run with the destination checkout as the working directory::

    python -m automodel_onboard.destination.registry_task --registry nemo_automodel/_transformers/registry.py \\
        --architecture ToyForCausalLM --module nemo_automodel.components.models.toy.model \\
        [--class-name ToyForCausalLM] [--replace[=true|false]] \\
        [--config-registration "toy:nemo_automodel.components.models.toy.config:ToyConfig"]

``--replace`` takes an optional value, so copier.yml states its one task line with ``--replace={{ replace }}``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from automodel_onboard.destination import lock
from automodel_onboard.destination.registry_patch import PatchResult, patch_registry
from automodel_onboard.errors import OnboardError

_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def main(argv: Sequence[str] | None = None) -> int:
    """Patch the registry; 0 on success (changed or already there), 2 on an :class:`OnboardError`."""
    args = _parser().parse_args(argv)
    class_name = args.class_name or args.architecture
    try:
        config = parse_config_registration(args.config_registration)
        with lock.held(Path.cwd(), notify=lambda text: print(text, file=sys.stderr)):
            result = _patch(args, class_name, config)
    except OnboardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(_report(result, Path(args.registry), args.architecture, args.module, class_name, config))
    return 0


def _patch(args: argparse.Namespace, class_name: str, config: tuple[str, str, str] | None) -> PatchResult:
    return patch_registry(
        Path(args.registry),
        architecture=args.architecture,
        module=args.module,
        class_name=class_name,
        config_registration=config,
        replace=args.replace,
    )


def parse_config_registration(text: str | None) -> tuple[str, str, str] | None:
    """``"model_type:module:ConfigClass"`` as a triple; an empty string (or none) means no registration."""
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise OnboardError(
            f"--config-registration {text[:120]!r} is not model_type:module:ConfigClass",
            where="--config-registration",
            fix="pass e.g. toy:nemo_automodel.components.models.toy.config:ToyConfig, or an empty string for none",
            code="invalid-name",
        )
    return parts[0], parts[1], parts[2]


def boolean(text: str) -> bool:
    """A flag's value as Copier renders a boolean answer (``True``/``False``) or a person types it."""
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m automodel_onboard.destination.registry_task",
        description="Register an architecture (and optionally its config class) in NeMo AutoModel's registry.py.",
    )
    parser.add_argument("--registry", required=True, help="path of registry.py, relative to the checkout")
    parser.add_argument("--architecture", required=True, help="architecture name, e.g. ToyForCausalLM")
    parser.add_argument("--module", required=True, help="dotted module path of the model class")
    parser.add_argument("--class-name", default=None, help="class in --module (default: the architecture name)")
    parser.add_argument(
        "--config-registration", default="", help='"model_type:module:ConfigClass"; empty for none (the default)'
    )
    parser.add_argument(
        "--quiet",
        nargs="?",
        const=True,
        default=False,
        type=boolean,
        help="print nothing on success (automodel-onboard new reports the lines itself)",
    )
    parser.add_argument(
        "--replace",
        nargs="?",
        const=True,
        default=False,
        type=boolean,
        help="re-point an existing entry (a bare --replace means true)",
    )
    return parser


def _report(
    result: PatchResult,
    registry: Path,
    architecture: str,
    module: str,
    class_name: str,
    config: tuple[str, str, str] | None,
) -> str:
    wanted = f"{architecture} -> {module}.{class_name}"
    if config is not None:
        wanted += f" and model_type {config[0]} -> {config[1]}.{config[2]}"
    if not result.changed:
        return f"{registry.name} already has {wanted}"
    lines = [f"{registry}: registered {wanted}"]
    for label, previous in (("architecture", result.replaced), ("model_type", result.replaced_config)):
        if previous is not None:
            lines.append(f"  re-pointed the {label} entry from {previous[0]}.{previous[1]} (that module is untouched)")
    lines.extend(f"  + {line}" for line in result.added_lines)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
