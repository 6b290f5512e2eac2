"""Checks on the destination before anything is written: every refusal says what and how to proceed.

Nothing here imports the destination's code: symbols are looked up by parsing source files, the registry by
reading its syntax tree, so a broken or heavy checkout is inspected safely and quickly.
"""

from __future__ import annotations

import ast
import functools
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel_onboard import naming
from automodel_onboard.errors import OnboardError

REGISTRY = Path("nemo_automodel", "_transformers", "registry.py")
MODELS = Path("nemo_automodel", "components", "models")


@dataclass(frozen=True)
class Destination:
    """What the checks found: the paths the onboarding will create, and what it will re-point."""

    root: Path
    module_name: str
    architecture: str
    creates: tuple[Path, ...]  # relative paths, none of which exists yet
    replaces: tuple[str, str] | None  # the (module, class) the architecture pointed to before, with --replace
    dirty: tuple[str, ...]  # files with uncommitted changes (a warning, not a refusal)


def registry_path(root: Path) -> Path:
    return root / REGISTRY


def require_checkout(root: Path) -> None:
    if not registry_path(root).is_file():
        raise OnboardError(
            f"{root} is not a NeMo AutoModel checkout ({REGISTRY} is missing)",
            where=str(root),
            fix="pass the root of a NeMo AutoModel clone with --dest, or make a scratch one with "
            "`automodel-onboard sandbox DIR`",
            code="not-a-checkout",
        )


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=256)
def _defined_names(path: Path, mtime: float) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.If):  # try/except imports of optional backends are still definitions
            names.update(_defined_in(node.body) | _defined_in(node.orelse))
        elif isinstance(node, ast.Try):
            names.update(_defined_in(node.body))
    if "__getattr__" in names:
        names.update(_lazy_exports(tree))
    return frozenset(names)


def _lazy_exports(tree: ast.Module) -> set[str]:
    """Names a module with a module-level ``__getattr__`` lists as strings in its top-level tables."""
    names: set[str] = set()
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Dict):
            items = [k for k in value.keys if k is not None]
        elif isinstance(value, (ast.List, ast.Tuple, ast.Set)):
            items = list(value.elts)
        else:
            continue
        names.update(i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str))
    return {n for n in names if n.isidentifier()}


def _defined_in(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def missing_symbols(root: Path, symbols: Iterable[tuple[str, str]]) -> list[str]:
    """``module.name`` for every required symbol the checkout does not define (without importing it)."""
    missing = []
    for module, name in symbols:
        path = module_file(root, module)
        if path is None:
            missing.append(f"{module}.{name} (no module {module})")
        elif name not in _defined_names(path, path.stat().st_mtime):
            missing.append(f"{module}.{name}")
    return missing


def dirty_files(root: Path) -> tuple[str, ...]:
    """Uncommitted changes in the destination's work tree (empty when it is not a git repository)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if result.returncode != 0:
        return ()
    return tuple(line[3:] for line in result.stdout.splitlines() if line.strip())


def planned_paths(spec: Mapping[str, Any], module_name: str, dataset: str) -> tuple[Path, ...]:
    """Every path the onboarding creates, relative to the checkout root (the registry is patched, not created)."""
    family = "vlm" if spec["kind"] == "vlm" else "llm"
    return (
        MODELS / module_name,
        Path("tests", "unit_tests", "models", module_name),
        Path("examples", f"{family}_finetune", module_name),
        Path("docs", "model-coverage", family, spec["org"], f"{module_name}.mdx"),
    )


def check_destination(
    root: Path,
    spec: Mapping[str, Any],
    *,
    module_name: str,
    dataset: str,
    symbols: Iterable[tuple[str, str]],
    replace: bool = False,
) -> Destination:
    """Refuse (OnboardError) anything that would make the onboarding fail half-way or clobber work."""
    from automodel_onboard.registry_patch import read_registry

    require_checkout(root)
    naming.check_module_name(module_name)
    missing = missing_symbols(root, symbols)
    if missing:
        raise OnboardError(
            f"the checkout lacks NeMo AutoModel symbols the {spec['kind']} template imports: {', '.join(missing)}",
            where=str(root),
            fix="the templates target nemo-automodel 0.7.0: use a checkout of that version, or one with the same API",
            code="missing-symbols",
        )
    existing = naming.existing_model_folders(root)
    clash = naming.collision_of(module_name, existing)
    if clash is not None:
        raise OnboardError(
            f"the model folder {MODELS / clash} already exists"
            + (f" (differs from {module_name!r} only in case)" if clash != module_name else ""),
            where=str(root / MODELS / clash),
            fix=f"to regenerate an onboarded model run `automodel-onboard update --dest {root} --name {clash}`; "
            "to onboard beside it pass another --name",
            code="model-exists",
        )
    creates = planned_paths(spec, module_name, dataset)
    present = [str(p) for p in creates if (root / p).exists()]
    if present:
        raise OnboardError(
            f"files the onboarding would create already exist: {', '.join(present)}",
            where=str(root),
            fix="move them away, or pass another --name",
            code="model-exists",
        )
    architecture = spec["architecture"]
    target = f"nemo_automodel.components.models.{module_name}.model"
    current = read_registry(registry_path(root)).arch_mapping.get(architecture)
    replaces = None
    if current is not None and tuple(current) != (target, architecture):
        if not replace:
            raise OnboardError(
                f"{architecture} is already registered to {current[0]}.{current[1]} "
                "(NeMo AutoModel has its own implementation)",
                where=str(registry_path(root)),
                fix="pass --replace to re-point the registry entry to the new module (the old module stays "
                "untouched, and the generated tests then compare the two), or onboard another architecture",
                code="already-registered",
            )
        replaces = (current[0], current[1])
    return Destination(
        root=root,
        module_name=module_name,
        architecture=architecture,
        creates=creates,
        replaces=replaces,
        dirty=dirty_files(root),
    )
