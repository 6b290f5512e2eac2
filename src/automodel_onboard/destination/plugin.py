"""The out-of-tree destination: a pip-installable plugin package that NeMo AutoModel finds through entry points.

A plugin folder holds one distribution (``pyproject.toml``) with one import package under ``src/``; each onboarded
model is a subpackage of it, with its tests, recipes and docs beside it as in a checkout. NeMo AutoModel 0.7.0 reads
the entry-point group ``nemo_automodel.architectures`` when its registry is built (without importing anything) and
skips a name it already implements, so an architecture NeMo has is never declared there: replacing it is a call the
user makes (``register()`` of the model's package, NeMo's ``register_architecture(..., exist_ok=True)``).

The package-level files are rendered once, by the first onboarding (Copier skips them when they exist); each
onboarding then adds its line to the entry-point table and its row to the README's model table
(:func:`register`). Nothing is written outside the plugin folder, and the folder itself is created only by an
onboarding that succeeds.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from automodel_onboard.destination import ANSWERS_FILE, Paths, Plan, Staged, lock
from automodel_onboard.destination.checkout import dirty_files, missing_symbols
from automodel_onboard.errors import OnboardError
from automodel_onboard.files import atomic_write
from automodel_onboard.kinds import Kind
from automodel_onboard.model import naming

PYPROJECT = Path("pyproject.toml")
README = Path("README.md")
SRC = Path("src")
GROUP = "nemo_automodel.architectures"
ENTRY_TABLE = f'[project.entry-points."{GROUP}"]'
# The NeMo AutoModel releases the templates target: their API (the symbols each kind imports) is the same.
NEMO_AUTOMODEL_RANGE = ">=0.7.0,<0.8"
MODELS_BEGIN, MODELS_END = "<!-- models -->", "<!-- /models -->"  # the README's model rows go between
DISTRIBUTION = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def recorded_package(root: Path) -> str | None:
    """The import package the plugin's models record in their answers (what marks a plugin made by this tool)."""
    for answers in sorted(root.glob(f"{SRC}/*/*/{ANSWERS_FILE}")):
        try:
            data = yaml.safe_load(answers.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("destination") == "plugin" and data.get("plugin_package"):
            return naming.check_module_name(str(data["plugin_package"]), where=str(answers))
    return None


def package_for(root: Path) -> str:
    """The plugin's import package: recorded in its models' answers, else derived from the folder's name."""
    recorded = recorded_package(root) if root.is_dir() else None
    if recorded is not None:
        return recorded
    derived = re.sub(r"[^a-z0-9]+", "_", root.name.lower()).strip("_")
    if derived[:1].isdigit():
        derived = f"plugin_{derived}"
    try:
        return naming.check_module_name(derived, where="--plugin")
    except OnboardError as err:
        raise OnboardError(
            f"no Python package name follows from the plugin folder's name {root.name[:80]!r}",
            where=str(root),
            fix="name the folder with letters, digits, dashes or underscores, starting with a letter "
            "(for example my-models)",
            code="invalid-name",
        ) from err


def distribution_for(package: str) -> str:
    return package.replace("_", "-")


def plugin_paths(package: str, module_name: str, kind: Kind, org: str) -> Paths:
    folder = SRC / package / naming.check_module_name(module_name)
    tests = Path("tests", module_name)
    return Paths(
        package=folder.as_posix(),
        module=f"{package}.{module_name}",
        tests=tests.as_posix(),
        tests_depth=len(tests.parts),
        recipe_dir=Path("examples", kind.recipe_family, module_name).as_posix(),
        docs_dir=Path("docs", kind.docs_section, org).as_posix(),
        answers_file=(folder / ANSWERS_FILE).as_posix(),
        registry=PYPROJECT.as_posix(),
        plugin_package=package,
        plugin_init=(SRC / package / "__init__.py").as_posix(),
    )


def read_pyproject(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OnboardError(
            f"{path.name} of the plugin cannot be read as TOML: {exc}",
            where=str(path),
            fix="fix the file (or restore it from version control), then rerun",
            code="plugin-pyproject",
        ) from exc


def entry_points(path: Path) -> dict[str, str]:
    """The plugin's ``nemo_automodel.architectures`` entry points: architecture -> ``module:Class``."""
    project = read_pyproject(path).get("project", {})
    table = project.get("entry-points", {}).get(GROUP, {}) if isinstance(project, dict) else {}
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def nemo_root() -> Path:
    """The folder holding the installed ``nemo_automodel`` package, read (never imported) for the checks."""
    registry = naming.installed_registry()
    if registry is None:
        raise OnboardError(
            "NeMo AutoModel is not installed in this Python environment: a plugin is checked against it (its "
            "symbols, the architectures it implements) and its generated tests run on it",
            where="--plugin",
            fix=f"pip install 'nemo-automodel{NEMO_AUTOMODEL_RANGE}' into this environment, then rerun",
            code="automodel-not-installed",
        )
    return registry.parents[2]


class Plugin(Staged):
    """A plugin package folder as the destination of onboardings."""

    def __init__(self, root: Path, package: str | None = None) -> None:
        super().__init__(root)
        self.package = package or package_for(self.root)

    @property
    def patched(self) -> tuple[Path, ...]:
        """The package-level files an onboarding may edit: those an earlier one created (the first creates them).

        The package's own ``__init__.py`` is among them so that Copier, which skips it when it exists, finds it in
        the staging copy; it is installed only if changed, which it never is."""
        package_files = (PYPROJECT, README, SRC / self.package / "__init__.py")
        return tuple(rel for rel in package_files if (self.root / rel).is_file())

    @property
    def models(self) -> Path:
        return self.root / SRC / self.package

    def paths(self, module_name: str, kind: Kind, org: str) -> Paths:
        return plugin_paths(self.package, module_name, kind, org)

    def is_plugin(self) -> bool:
        return (self.root / PYPROJECT).is_file() and recorded_package(self.root) is not None

    def require(self) -> None:
        """A plugin this tool made, or a folder to make one in (absent or empty); never anyone else's folder."""
        if self.root.is_symlink() or (self.root.exists() and not self.root.is_dir()):
            raise OnboardError(
                f"{self.root} is not a folder",
                where=str(self.root),
                fix="pass --plugin a folder to create, or a plugin made by automodel-onboard",
                code="not-a-plugin",
            )
        if not self.root.exists() or not any(self.root.iterdir()):
            return
        if not self.is_plugin():
            raise OnboardError(
                f"{self.root} is neither empty nor a plugin made by automodel-onboard (it has no {PYPROJECT}, or "
                f"no model under {SRC}/ with this tool's answers)",
                where=str(self.root),
                fix="pass --plugin a new or empty folder; to onboard into a NeMo AutoModel clone use --dest",
                code="not-a-plugin",
            )
        lines = [line.strip() for line in (self.root / PYPROJECT).read_text(encoding="utf-8").splitlines()]
        if ENTRY_TABLE not in lines:
            raise _no_entry_table(self.root / PYPROJECT)

    def registered(self, architecture: str) -> tuple[str, str] | None:
        """Where the architecture resolves: this plugin's entry point, else NeMo AutoModel's own class."""
        from automodel_onboard.destination.registry_patch import read_registry

        ours = entry_points(self.root / PYPROJECT).get(architecture) if (self.root / PYPROJECT).is_file() else None
        if ours is not None:
            module, _, cls = ours.rpartition(":")
            return module, cls
        target = read_registry(nemo_root() / "nemo_automodel" / "_transformers" / "registry.py").arch_mapping
        found = target.get(architecture)
        if found is not None:
            return found[0], found[1]
        for entry in importlib.metadata.entry_points(group=GROUP):  # another installed plugin's
            owner = entry.dist.name if entry.dist is not None else ""
            if entry.name == architecture and owner.replace("_", "-") != distribution_for(self.package):
                module, _, cls = entry.value.rpartition(":")
                return module, cls
        return None

    def register(self, spec: Mapping[str, Any], module_name: str, replace: bool) -> None:
        """What the plugin task does (``copier.yml``), for an onboarding re-rendered outside Copier's tasks."""
        register(
            self.root,
            architecture=spec["architecture"],
            module_name=module_name,
            package=self.package,
            kind=spec["kind"],
            replace=replace,
        )

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
        """Refuse (OnboardError) what would fail half-way or clobber work, before anything is written."""
        self.require()
        naming.check_module_name(module_name)
        nemo = nemo_root()
        wanted = list(kind.symbols if symbols is None else symbols)
        if replace:  # the model's register() calls it
            wanted.append(("nemo_automodel._transformers.registry", "register_architecture"))
        missing = missing_symbols(nemo, wanted)
        if missing:
            raise OnboardError(
                f"the installed NeMo AutoModel lacks symbols the {kind.name} template imports: {', '.join(missing)}",
                where=str(nemo / "nemo_automodel"),
                fix=f"install a NeMo AutoModel release the templates target: pip install "
                f"'nemo-automodel{NEMO_AUTOMODEL_RANGE}'",
                code="missing-symbols",
            )
        existing = naming.folder_names(self.models)
        free = naming.free_name(module_name, existing)
        clash = naming.collision_of(module_name, existing)
        if clash is not None:
            raise OnboardError(
                f"the plugin already has a model {clash}"
                + (f" (differs from {module_name!r} only in case)" if clash != module_name else ""),
                where=str(self.models / clash),
                fix=f"to regenerate it run `automodel-onboard update --plugin {self.root} --name {clash}`; or "
                f"rerun with `--name {free}`",
                code="model-exists",
            )
        creates = self.planned(self.paths(module_name, kind, spec["org"]), module_name)
        self.require_inside((*creates, *self.patched))
        self.require_new(creates, f"--name {free}")
        architecture = spec["architecture"]
        declared = entry_points(self.root / PYPROJECT).get(architecture) if (self.root / PYPROJECT).is_file() else None
        if declared is not None:
            raise OnboardError(
                f"the plugin already declares {architecture} (entry point {declared})",
                where=str(self.root / PYPROJECT),
                fix="update that model instead, or onboard another architecture",
                code="already-registered",
            )
        current = self.registered(architecture)
        replaces = None
        if current is not None and not current[0].startswith("nemo_automodel."):
            raise OnboardError(
                f"another installed plugin already declares {architecture} ({current[0]}:{current[1]}); NeMo "
                "AutoModel would resolve it to whichever entry point it reads first",
                where=f"{GROUP} entry points",
                fix="uninstall that plugin first, or onboard another architecture",
                code="already-registered",
            )
        if current is not None:
            if not replace:
                raise OnboardError(
                    f"NeMo AutoModel already implements {architecture} ({current[0]}.{current[1]}); a plugin's entry "
                    "point cannot override it (NeMo AutoModel skips such an entry point with a warning)",
                    where=f"{GROUP} entry points",
                    fix="rerun with `--replace` to generate a plugin model that replaces it only when you call its "
                    "register() (NeMo AutoModel's register_architecture(..., exist_ok=True)), or onboard into a "
                    "NeMo AutoModel clone with --dest",
                    code="already-registered",
                )
            replaces = current
        return Plan(
            root=self.root,
            module_name=module_name,
            architecture=architecture,
            creates=creates,
            replaces=replaces,
            dirty=self.dirty(),
        )

    def require_inside(self, paths: Iterable[Path]) -> None:
        """Refuse paths that a symlinked folder would take outside the plugin (or that are symlinks themselves)."""
        root = self.root.resolve()
        for rel in paths:
            target = self.root / rel
            if target.is_symlink() or not target.resolve().is_relative_to(root):
                raise OnboardError(
                    f"{rel} is a symlink or resolves outside the plugin folder {root}",
                    where=str(target),
                    fix="replace the link with a real folder or file (or pass another --name)",
                    code="symlink-outside",
                )

    def added_lines(self, stage: Path) -> tuple[str, ...]:
        """The entry-point lines and README rows the render added (those of a new plugin's files included)."""
        before = {rel: self._staged_from.get(rel, b"").decode("utf-8", "replace") for rel in (PYPROJECT, README)}
        after = {rel: (stage / rel).read_text("utf-8") if (stage / rel).is_file() else "" for rel in before}
        entries = set(_entry_lines(after[PYPROJECT])) - set(_entry_lines(before[PYPROJECT]))
        rows = _model_rows(after[README]) - _model_rows(before[README])
        return (*sorted(entries), *sorted(rows))

    @contextlib.contextmanager
    def lock(self, notify: Callable[[str], None] | None = None) -> Iterator[None]:
        """One writer at a time, on the plugin folder (created for the lock; removed again if left empty)."""
        created = not self.root.exists()
        if created:
            self.root.mkdir(parents=True)
        try:
            with lock.held(self.root, **({"notify": notify} if notify else {})):
                yield
        finally:
            if created and self.root.is_dir() and not any(self.root.iterdir()):
                self.root.rmdir()

    def dirty(self) -> tuple[str, ...]:
        return dirty_files(self.root) if (self.root / ".git").exists() else ()


def register(
    root: Path, *, architecture: str, module_name: str, package: str, kind: str, replace: bool
) -> tuple[str, ...]:
    """Declare the model in the plugin at ``root``: its entry point (unless it replaces one of NeMo AutoModel's, which
    no entry point can) and its README row. Idempotent; returns the lines added."""
    naming.check_architecture(architecture)
    module = f"{naming.check_module_name(package)}.{naming.check_module_name(module_name)}.model"
    added: list[str] = []
    if not replace:
        line = f'{architecture} = "{module}:{architecture}"'
        added += _add_to_table(root / PYPROJECT, line, architecture, f"{module}:{architecture}")
    how = f"replaces NeMo AutoModel's once `{package}.{module_name}.register()` is called" if replace else "entry point"
    added += _add_readme_row(root / README, f"| `{module_name}` | `{architecture}` | {kind} | {how} |", module_name)
    return tuple(added)


def _no_entry_table(path: Path) -> OnboardError:
    return OnboardError(
        f"the plugin's {path.name} has no {ENTRY_TABLE} table line, where onboardings add their entry points",
        where=str(path),
        fix=f"restore the line {ENTRY_TABLE} (the table may be empty)",
        code="plugin-pyproject",
    )


def _add_to_table(path: Path, line: str, name: str, value: str) -> list[str]:
    declared = entry_points(path)
    if declared.get(name) == value:
        return []
    if name in declared:
        raise OnboardError(
            f"{path.name} already declares the entry point {name} = {declared[name]!r}",
            where=str(path),
            fix="update that model instead, or onboard another architecture",
            code="already-registered",
        )
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    try:
        start = next(i for i, text in enumerate(lines) if text.strip() == ENTRY_TABLE)
    except StopIteration:
        raise _no_entry_table(path) from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # after the table's last entry, before the blank lines that close it
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.insert(end, line + "\n")
    text = "".join(lines)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a table the user reshaped (multi-line values, say)
        raise OnboardError(
            f"adding the entry point to {path.name} would not leave valid TOML ({exc})",
            where=str(path),
            fix=f"add the line by hand at the end of {ENTRY_TABLE}: {line}",
            code="plugin-pyproject",
        ) from exc
    atomic_write(path, text.encode("utf-8"))
    return [line]


def _add_readme_row(path: Path, row: str, module_name: str) -> list[str]:
    """The row goes between the README's markers; a README without them (rewritten by its owner) is left as it is."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    if MODELS_BEGIN not in stripped or MODELS_END not in stripped:
        return []
    begin, end = stripped.index(MODELS_BEGIN), stripped.index(MODELS_END)
    if any(s.startswith(f"| `{module_name}` |") for s in stripped[begin:end]):
        return []
    lines.insert(end, row + "\n")
    atomic_write(path, "".join(lines).encode("utf-8"))
    return [row]


def _entry_lines(text: str) -> list[str]:
    """The entry lines of the plugin's entry-point table, as written."""
    lines = [line.strip() for line in text.splitlines()]
    if ENTRY_TABLE not in lines:
        return []
    found = []
    for line in lines[lines.index(ENTRY_TABLE) + 1 :]:
        if line.startswith("["):
            break
        if "=" in line and not line.startswith("#"):
            found.append(line)
    return found


def _model_rows(text: str) -> set[str]:
    lines = [line.strip() for line in text.splitlines()]
    if MODELS_BEGIN not in lines or MODELS_END not in lines:
        return set()
    return {line for line in lines[lines.index(MODELS_BEGIN) + 1 : lines.index(MODELS_END)] if line}


def entry_counts(path: Path, architecture: str) -> tuple[int, int]:
    """The architecture's entry points: in the parsed table (0 or 1), and as keys among its lines (a repeated key
    makes the file unreadable as TOML, so the text count sees what the parse cannot)."""
    keys = [line.partition("=")[0].strip() for line in _entry_lines(path.read_text(encoding="utf-8"))]
    try:
        parsed = 1 if architecture in entry_points(path) else 0
    except OnboardError:
        parsed = 0
    return parsed, keys.count(architecture)
