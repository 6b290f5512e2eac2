"""The Copier task that declares a rendered model in its plugin: the entry point and the README's row.

Run with the plugin folder as the working directory::

    python -m automodel_onboard.destination.plugin_task --package my_models --architecture ToyForCausalLM \\
        --module-name toy --kind dense [--replace[=true|false]] [--quiet[=true|false]]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from automodel_onboard.destination import lock
from automodel_onboard.destination.plugin import PYPROJECT, register
from automodel_onboard.destination.registry_task import boolean
from automodel_onboard.errors import OnboardError


def main(argv: Sequence[str] | None = None) -> int:
    """Declare the model; 0 on success (added or already there), 2 on an :class:`OnboardError`."""
    args = _parser().parse_args(argv)
    try:
        with lock.held(Path.cwd(), notify=lambda text: print(text, file=sys.stderr)):
            added = register(
                Path.cwd(),
                architecture=args.architecture,
                module_name=args.module_name,
                package=args.package,
                kind=args.kind,
                replace=args.replace,
            )
    except OnboardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if not args.quiet:
        print("\n".join([f"{PYPROJECT}: declared {args.architecture}", *(f"  + {line}" for line in added)]))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m automodel_onboard.destination.plugin_task",
        description="Declare an onboarded model in its plugin package (entry point, README row).",
    )
    parser.add_argument("--package", required=True, help="the plugin's import package")
    parser.add_argument("--architecture", required=True, help="architecture name, e.g. ToyForCausalLM")
    parser.add_argument("--module-name", required=True, help="the model's subpackage")
    parser.add_argument("--kind", required=True, help="the kind rendered (dense, moe, vlm)")
    for flag, text in (
        ("--replace", "the model replaces NeMo AutoModel's own (no entry point; its register() does it)"),
        ("--quiet", "print nothing on success"),
    ):
        parser.add_argument(flag, nargs="?", const=True, default=False, type=boolean, help=text)
    return parser


if __name__ == "__main__":
    sys.exit(main())
