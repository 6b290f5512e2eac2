"""The in-tree destination: a NeMo AutoModel checkout, which owns every path an onboarding writes and the registry.

An onboarded model's files go where NeMo AutoModel keeps its own (``Paths``); the architecture is registered by
patching ``nemo_automodel/_transformers/registry.py``. The checks run before anything is written and every refusal
says what and how to proceed. Nothing here imports the destination's code: symbols are looked up by parsing source
files, the registry by reading its syntax tree, so a broken or heavy checkout is inspected safely and quickly.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from automodel_onboard.destination import ANSWERS_FILE, Paths, Plan, Staged, lock
from automodel_onboard.errors import OnboardError
from automodel_onboard.files import read_source
from automodel_onboard.kinds import Kind
from automodel_onboard.model import naming

REGISTRY = Path("nemo_automodel", "_transformers", "registry.py")
MODELS = Path("nemo_automodel", "components", "models")
MODELS_PACKAGE = ".".join(MODELS.parts)
TESTS = Path("tests", "unit_tests", "models")


def model_paths(module_name: str, kind: Kind, org: str) -> Paths:
    package = MODELS / naming.check_module_name(module_name)
    return Paths(
        package=package.as_posix(),
        module=".".join(package.parts),
        tests=(TESTS / module_name).as_posix(),
        tests_depth=len((TESTS / module_name).parts),
        recipe_dir=Path("examples", kind.recipe_family, module_name).as_posix(),
        docs_dir=Path("docs", "model-coverage", kind.docs_section, org).as_posix(),
        answers_file=(package / ANSWERS_FILE).as_posix(),
        registry=REGISTRY.as_posix(),
    )


class Checkout(Staged):
    """A NeMo AutoModel checkout as the destination of onboardings."""

    patched = (REGISTRY,)  # the files an install edits rather than creates (installed last)

    @property
    def registry(self) -> Path:
        return self.root / REGISTRY

    @property
    def models(self) -> Path:
        return self.root / MODELS

    @staticmethod
    def paths(module_name: str, kind: Kind, org: str) -> Paths:
        return model_paths(module_name, kind, org)

    def require(self) -> None:
        if not self.registry.is_file():
            raise OnboardError(
                f"{self.root} is not a NeMo AutoModel checkout ({REGISTRY} is missing)",
                where=str(self.root),
                fix="pass the root of a NeMo AutoModel clone with --dest, or make a scratch one with "
                "`automodel-onboard sandbox DIR`",
                code="not-a-checkout",
            )

    def existing_models(self) -> frozenset[str]:
        return naming.folder_names(self.models)

    def registered(self, architecture: str) -> tuple[str, str] | None:
        """The (module, class) the registry maps ``architecture`` to, if any."""
        from automodel_onboard.destination.registry_patch import read_registry

        target = read_registry(self.registry).arch_mapping.get(architecture)
        return None if target is None else (target[0], target[1])

    def register(self, spec: Mapping[str, Any], module_name: str, replace: bool) -> None:
        """What the registry task does (``copier.yml``), for an onboarding re-rendered outside Copier's tasks."""
        from automodel_onboard.destination.registry_patch import patch_registry

        patch_registry(
            self.registry,
            architecture=spec["architecture"],
            module=f"{MODELS_PACKAGE}.{module_name}.model",
            class_name=spec["architecture"],
            config_registration=config_registration(spec, module_name),
            replace=replace,
        )

    def added_lines(self, stage: Path) -> tuple[str, ...]:
        from automodel_onboard.destination.registry_patch import new_lines

        return tuple(
            line
            for rel in self.patched
            for line in new_lines(self._staged_from[rel].decode("utf-8", "replace"), read_source(stage / rel))
        )

    def lock(self, notify: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """One writer at a time: held from the first check to the last write of ``new``, ``update`` and the task."""
        return lock.held(self.root, **({"notify": notify} if notify else {}))

    def require_inside(self, paths: Iterable[Path]) -> None:
        """Refuse paths that a symlinked folder would take outside the checkout (or that are symlinks themselves)."""
        root = self.root.resolve()
        for rel in paths:
            target = self.root / rel
            if target.is_symlink() and rel not in self.patched:
                raise OnboardError(
                    f"{rel} is a symlink; the onboarding only creates regular files and folders",
                    where=str(target),
                    fix="remove the link (or pass another --name)",
                    code="symlink-outside",
                )
            resolved = target.resolve()
            if not resolved.is_relative_to(root):
                raise OnboardError(
                    f"{rel} resolves to {resolved}, outside the checkout {root} (a symlinked folder on the way)",
                    where=str(target),
                    fix="replace the symlinked folder with a real one, or onboard into a checkout without such links",
                    code="symlink-outside",
                )

    def dirty(self) -> tuple[str, ...]:
        return dirty_files(self.root)

    def check(
        self,
        spec: Mapping[str, Any],
        *,
        module_name: str,
        kind: Kind,
        replace: bool = False,
        allow_fewer_capabilities: bool = False,
        symbols: Iterable[tuple[str, str]] | None = None,
    ) -> Plan:
        """Refuse (OnboardError) anything that would make the onboarding fail half-way or clobber work."""
        self.require()
        naming.check_module_name(module_name)
        missing = missing_symbols(self.root, kind.symbols if symbols is None else symbols)
        if missing:
            raise OnboardError(
                f"the checkout lacks NeMo AutoModel symbols the {kind.name} template imports: {', '.join(missing)}",
                where=str(self.root),
                fix="the templates target nemo-automodel 0.7.0: use a checkout of that version, or one with the same "
                "API",
                code="missing-symbols",
            )
        architecture = spec["architecture"]
        current = self.registered(architecture)
        elsewhere = current is not None and current != (f"{MODELS_PACKAGE}.{module_name}.model", architecture)
        # The one rerun that gets past every check below: a free name, and --replace where it will be needed.
        free = naming.free_name(module_name, self.existing_models())
        beside = f"--name {free}" + (
            " --replace" if current not in (None, (f"{MODELS_PACKAGE}.{free}.model", architecture)) else ""
        )
        clash = naming.collision_of(module_name, self.existing_models())
        if clash is not None:
            fix = f"rerun with `{beside}`"
            if self.is_onboarded(clash):
                fix = f"to regenerate it run `automodel-onboard update --dest {self.root} --name {clash}`; or {fix}"
            raise OnboardError(
                f"the model folder {MODELS / clash} already exists"
                + (f" (differs from {module_name!r} only in case)" if clash != module_name else "")
                + ("" if self.is_onboarded(clash) else " (NeMo AutoModel's own implementation)"),
                where=str(self.models / clash),
                fix=fix,
                code="model-exists",
            )
        creates = self.planned(model_paths(module_name, kind, spec["org"]), module_name)
        self.require_inside((*creates, *self.patched))
        self.require_new(creates, beside)
        replaces, fewer = None, ()
        if elsewhere:
            if not replace:
                raise OnboardError(
                    f"{architecture} is already registered to {current[0]}.{current[1]} "
                    "(NeMo AutoModel has its own implementation)",
                    where=str(self.registry),
                    fix=f"rerun with `--name {module_name} --replace` to re-point the registry entry to the new "
                    "module (the old module stays untouched, and the generated tests then compare the two), or "
                    "onboard another architecture",
                    code="already-registered",
                )
            replaces = current
            ours = dict((spec.get("layout") or {}).get("capabilities") or ())  # known once the layout is
            theirs = declared_capabilities(self.root, *current) if ours else {}
            fewer = tuple(name for name, value in (theirs or {}).items() if value and not ours.get(name, False))
            if (fewer or theirs is None) and not allow_fewer_capabilities:
                replaced = f"{current[0]}.{current[1]}"
                raise OnboardError(
                    f"the generated {architecture} would not declare {' and '.join(fewer)}, which {replaced} "
                    "declares (the generated model declares only what its generated tests prove)"
                    if fewer
                    else f"{replaced} declares its capabilities per config or outside its module, so --replace "
                    "cannot tell whether it would take parallelisms away",
                    where=str(module_file(self.root, current[0]) or self.registry),
                    fix="keep NeMo AutoModel's implementation registered (drop --replace), or accept the loss with "
                    "`--allow-fewer-capabilities` (copier: -d allow_fewer_capabilities=true)",
                    code="fewer-capabilities",
                )
        return Plan(
            root=self.root,
            module_name=module_name,
            architecture=architecture,
            creates=creates,
            replaces=replaces,
            dirty=self.dirty(),
            fewer_capabilities=fewer,
        )


def config_registration(spec: Mapping[str, Any], module_name: str) -> tuple[str, str, str] | None:
    """The registry's custom-config entry (model_type, module, class) when the model ships its own config class."""
    if spec.get("hf") is not None:
        return None
    return spec["model_type"], f"{MODELS_PACKAGE}.{module_name}.config", f"{spec['class_prefix']}Config"


def declared_capabilities(root: Path, module: str, cls: str) -> dict[str, bool] | None:
    """The capability flags a class of the checkout declares in its nested ``ModelCapabilities`` (its own or a base
    class's in the same module), read from the source; None where they are declared per config or not found."""
    path = module_file(root, module)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return None
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    seen: set[str] = set()
    pending = [cls]
    while pending:
        node = classes.get(name := pending.pop(0))
        if node is None or name in seen:
            continue
        seen.add(name)
        members = {m.name: m for m in node.body if isinstance(m, ast.ClassDef | ast.FunctionDef)}
        if "get_capabilities" in members:
            return None
        if isinstance(declared := members.get("ModelCapabilities"), ast.ClassDef):
            return {
                f.target.id: f.value.value
                for f in declared.body
                if isinstance(f, ast.AnnAssign)
                and isinstance(f.target, ast.Name)
                and isinstance(f.value, ast.Constant)
                and isinstance(f.value.value, bool)
            }
        pending += [b.id for b in node.bases if isinstance(b, ast.Name)]
    return None


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=256)
def _defined_names(path: Path, mtime: float) -> frozenset[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as exc:
        line = f" (line {exc.lineno}: {exc.msg})" if isinstance(exc, SyntaxError) else f" ({exc})"
        raise OnboardError(
            f"{path.name} in the checkout is not valid Python{line}",
            where=str(path),
            fix=f"fix or restore that file (`git checkout -- {path}`), then rerun",
            code="unreadable-source",
        ) from exc
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
