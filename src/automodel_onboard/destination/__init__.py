"""Destinations: where rendered files go and how the architecture is registered.

A destination owns every path an onboarding writes (``Paths``, which the template tree names) and the registration
step; :class:`Destination` is what the pipeline asks of one. The in-tree NeMo AutoModel checkout
(:class:`automodel_onboard.destination.checkout.Checkout`) and an out-of-tree plugin package
(:class:`automodel_onboard.destination.plugin.Plugin`) are the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from automodel_onboard.kinds import Kind


@dataclass(frozen=True)
class Paths:
    """Where one onboarded model's files go, relative to the checkout root (templates see these as ``paths``)."""

    package: str  # the model's package folder
    module: str  # the same package, dotted
    tests: str  # its generated tests
    tests_depth: int  # folders from the checkout root down to a test file's folder
    recipe_dir: str  # its example recipe
    docs_dir: str  # its docs page
    answers_file: str  # Copier's answers of the onboarding
    registry: str  # the file that registers the architecture: NeMo AutoModel's registry, or the plugin's pyproject
    plugin_package: str = ""  # a plugin's import package (empty in a checkout)
    plugin_init: str = ""  # a plugin package's own __init__.py, rendered by its first onboarding

    def data(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """What the checks found: the paths the onboarding will create, and what it will re-point."""

    root: Path
    module_name: str
    architecture: str
    creates: tuple[Path, ...]  # relative paths, none of which exists yet
    replaces: tuple[str, str] | None  # the (module, class) the architecture pointed to before, with --replace
    dirty: tuple[str, ...]  # files with uncommitted changes (a warning, not a refusal)
    fewer_capabilities: tuple[str, ...] = ()  # what the replaced class declares and ours does not (when allowed)


ANSWERS_FILE = ".copier-answers.yml"  # each model's Copier answers, in its package


class Staged:
    """What both destinations share: the paths an onboarding creates, staged beside the files it edits (``patched``)
    and installed all or nothing under a journal; each model's answers file in its package under ``models``."""

    root: Path
    models: Path
    patched: tuple[Path, ...]

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._staged_from: dict[Path, bytes] = {}

    @staticmethod
    def planned(paths: Paths, module_name: str) -> tuple[Path, ...]:
        """Every path the onboarding creates, relative to the root (the patched files are edited, not created)."""
        return (
            Path(paths.package),
            Path(paths.tests),
            Path(paths.recipe_dir),
            Path(paths.docs_dir, f"{module_name}.mdx"),
        )

    def require_new(self, creates: Iterable[Path], rerun: str) -> None:
        """Refuse when any path the onboarding would create exists already (a dangling link counts)."""
        present = [str(p) for p in creates if (self.root / p).exists() or (self.root / p).is_symlink()]
        if present:
            from automodel_onboard.errors import OnboardError

            raise OnboardError(
                f"files the onboarding would create already exist: {', '.join(present)}",
                where=str(self.root),
                fix=f"move them away, or rerun with `{rerun}`",
                code="model-exists",
            )

    def answers_files(self) -> tuple[Path, ...]:
        """The answers file of every model onboarded with this tool, relative to the root."""
        return tuple(p.relative_to(self.root) for p in sorted(self.models.glob(f"*/{ANSWERS_FILE}")))

    def is_onboarded(self, module_name: str) -> bool:
        return (self.models / module_name / ANSWERS_FILE).is_file()

    def stage(self, folder: Path) -> None:
        """Make ``folder`` a staging copy for Copier to render into: the files an install patches, as they are."""
        self._staged_from = {}
        for rel in self.patched:
            data = (self.root / rel).read_bytes()
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
            self._staged_from[rel] = data

    def install(self, stage: Path, files: tuple[Path, ...]) -> None:
        from automodel_onboard.destination import journal

        self.require_inside(files)
        journal.install(stage, self.root, files, dict(self._staged_from))

    def recover(self) -> Any:
        from automodel_onboard.destination import journal

        return journal.recover(self.root) if self.root.is_dir() else None

    def require_inside(self, paths: Iterable[Path]) -> None:
        raise NotImplementedError


class Destination(Protocol):
    """What rendering, installing, updating and verifying need from a destination."""

    root: Path
    patched: tuple[Path, ...]  # the files an install edits rather than creates (installed last)

    def paths(self, module_name: str, kind: Kind, org: str) -> Paths: ...

    def require(self) -> None: ...

    def check(
        self,
        spec: Mapping[str, Any],
        *,
        module_name: str,
        kind: Kind,
        replace: bool = False,
        symbols: Iterable[tuple[str, str]] | None = None,
    ) -> Plan: ...

    def stage(self, folder: Path) -> None: ...

    def install(self, stage: Path, files: tuple[Path, ...]) -> None: ...

    def added_lines(self, stage: Path) -> tuple[str, ...]: ...  # the registration lines a render added in ``stage``

    def recover(self) -> Any: ...  # journal.Recovery | None

    def lock(self, notify: Any = None) -> AbstractContextManager[None]: ...

    def registered(self, architecture: str) -> tuple[str, str] | None: ...

    def register(self, spec: Mapping[str, Any], module_name: str, replace: bool) -> None: ...

    def answers_files(self) -> tuple[Path, ...]: ...

    def is_onboarded(self, module_name: str) -> bool: ...

    def dirty(self) -> tuple[str, ...]: ...


CHECKOUT, PLUGIN = "checkout", "plugin"  # the two destinations, as the ``destination`` answer names them


def at(root: Path, kind: str = CHECKOUT, package: str | None = None) -> Destination:
    """The destination of ``kind`` at ``root`` (a plugin's import package read from it unless given)."""
    from automodel_onboard.destination.checkout import Checkout
    from automodel_onboard.destination.plugin import Plugin

    return Plugin(root, package or None) if kind == PLUGIN else Checkout(root)


def kind_of(root: Path) -> str:
    """The destination a folder is: a NeMo AutoModel checkout, else a plugin (made before, or to make there)."""
    from automodel_onboard.destination.checkout import REGISTRY

    return CHECKOUT if (Path(root) / REGISTRY).is_file() else PLUGIN
