"""Migration: NeMo AutoModel symbols imported from the modules that define them.

NeMo AutoModel moved ``TieSupport`` into ``nemo_automodel.shared.tied_weights``; the old home,
``nemo_automodel.components.models.common.tie_word_embeddings``, only re-imports it, and v0.1.0 models import it from
there. ``HFCheckpointingMixin`` is exported by ``nemo_automodel.components.models.common``, the import the templates
use, while NeMo AutoModel's own models (and code copied from them) name ``common.hf_checkpointing_mixin``. The
templates import both from the first module (since template v0.2.0); this migration moves the same imports in an
onboarded model's files (its package and its tests), wherever they are, so user edits elsewhere survive the update.

Run by every ``copier update`` after the merge (``_migrations`` in copier.yml), in the destination checkout::

    python -m automodel_onboard.migrations.tied_weights --module-name NAME [--root DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from automodel_onboard.migrations.imports import FileResult, Move, rewrite_files

NAME = "imports"  # how its messages name it

MOVES: tuple[Move, ...] = (
    Move(
        "TieSupport",
        "nemo_automodel.components.models.common.tie_word_embeddings",
        "nemo_automodel.shared.tied_weights",
    ),
    Move(
        "HFCheckpointingMixin",
        "nemo_automodel.components.models.common.hf_checkpointing_mixin",
        "nemo_automodel.components.models.common",
    ),
)

# The folders of one onboarded model, relative to the checkout (every generated Python file lives under them).
MODEL_FOLDERS: tuple[str, ...] = ("nemo_automodel/components/models/{name}", "tests/unit_tests/models/{name}")


def model_files(root: Path, module_name: str) -> tuple[Path, ...]:
    """The Python files of one onboarded model in the checkout at ``root``."""
    folders = (root / pattern.format(name=module_name) for pattern in MODEL_FOLDERS)
    return tuple(sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*.py") if p.is_file()))


def migrate(root: Path, module_name: str) -> tuple[FileResult, ...]:
    return rewrite_files(model_files(root, module_name), MOVES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m automodel_onboard.migrations.tied_weights", description=__doc__)
    parser.add_argument("--module-name", required=True, help="the onboarded model's package name")
    parser.add_argument("--root", default=".", help="the NeMo AutoModel checkout (default: the working directory)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    for result in migrate(root, args.module_name):
        where = result.path.relative_to(root)
        if result.skipped:
            # Not an error: the update reports the conflict; the migration can be rerun once it is resolved.
            print(f"migration {NAME}: skipped {where}: {result.skipped}; rerun after resolving it", file=sys.stderr)
        elif result.changed:
            print(f"migration {NAME}: moved NeMo AutoModel imports in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
