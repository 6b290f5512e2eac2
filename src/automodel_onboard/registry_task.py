"""The Copier task that registers a rendered model in the destination's ``registry.py``.

Run with the destination checkout as the working directory::

    python -m automodel_onboard.registry_task --registry nemo_automodel/_transformers/registry.py \\
        --architecture ToyForCausalLM --module nemo_automodel.components.models.toy.model \\
        [--class-name ToyForCausalLM] [--replace] \\
        [--config-registration "toy:nemo_automodel.components.models.toy.config:ToyConfig"]

``AUTOMODEL_ONBOARD_REPLACE=1`` in the environment means ``--replace``, so the task line in copier.yml stays fixed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from automodel_onboard.errors import OnboardError
from automodel_onboard.registry_patch import PatchResult, patch_registry

REPLACE_ENV = "AUTOMODEL_ONBOARD_REPLACE"
_TRUE = frozenset({"1", "true", "yes", "on"})


def main(argv: Sequence[str] | None = None) -> int:
    """Patch the registry; 0 on success (changed or already there), 2 on an :class:`OnboardError`."""
    args = _parser().parse_args(argv)
    class_name = args.class_name or args.architecture
    try:
        config = parse_config_registration(args.config_registration)
        result = patch_registry(
            Path(args.registry),
            architecture=args.architecture,
            module=args.module,
            class_name=class_name,
            config_registration=config,
            replace=args.replace or replace_from_env(os.environ),
        )
    except OnboardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(_report(result, Path(args.registry), args.architecture, args.module, class_name, config))
    return 0


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


def replace_from_env(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for --replace."""
    return environ.get(REPLACE_ENV, "").strip().lower() in _TRUE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m automodel_onboard.registry_task",
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
        "--replace", action="store_true", help=f"re-point an existing entry (also: {REPLACE_ENV}=1 in the environment)"
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
