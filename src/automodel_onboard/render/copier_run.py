"""Render a spec into a destination with Copier, all or nothing.

Copier renders into a staging folder that holds copies of the files the destination patches (its registry), so the
registry task edits the copy. Only when rendering and registration have both succeeded does the destination install
the result (:mod:`automodel_onboard.destination.journal`); any failure leaves it as it was.

The template is the package's own ``copier.yml`` and ``templates/`` (found with ``importlib.resources``). Installed
from a clone of this repository, the clone's root is used instead (its ``copier.yml`` is the same file), so Copier
records the template version and ``copier update`` can find it later.
"""

from __future__ import annotations

import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from automodel_onboard.destination import Destination
from automodel_onboard.errors import OnboardError

COPIER_FILE = "copier.yml"
Progress = Callable[[str], None]


def package_template() -> Path:
    """The template shipped inside the package."""
    return Path(str(resources.files("automodel_onboard")))


def template_root() -> Path:
    """The template to render: the repository root of a clone this package runs from, else the package itself."""
    package = package_template()
    repo = package.parents[1]
    if (repo / COPIER_FILE).resolve() == (package / COPIER_FILE).resolve() and (repo / ".git").exists():
        return repo
    return package


def require_template(root: Path) -> Path:
    """``root`` when it holds a Copier template; a folder without ``copier.yml`` is an error, never a copy."""
    if not (root / COPIER_FILE).is_file():
        raise OnboardError(
            f"{root} is not a template: it has no {COPIER_FILE}",
            where=str(root),
            fix="reinstall automodel-onboard (the package ships copier.yml and templates/), or pass a clone of its "
            "repository",
            code="no-template-root",
        )
    return root


def template_version(root: Path | None = None) -> str:
    """What ``copier`` records as the template version: ``git describe`` of a clone, else "packaged"."""
    root = root if root is not None else template_root()
    if not _is_repository(root):
        return "packaged (no git clone)"
    result = subprocess.run(
        ["git", "-C", str(root), "describe", "--tags", "--always", "--dirty"], capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def _is_repository(root: Path) -> bool:
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return result.returncode == 0 and Path(result.stdout.strip()).resolve() == root.resolve()


@dataclass(frozen=True)
class Answers:
    """The Copier answers of one onboarding (what the answers file records)."""

    model: str
    module_name: str
    kind: str
    dataset: str
    revision: str = ""
    replace: bool = False
    trust_remote_code: bool = False
    destination: str = "checkout"  # or "plugin"
    plugin_package: str = ""  # a plugin's import package

    def data(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "revision": self.revision,
            "module_name": self.module_name,
            "kind": self.kind,
            "dataset": self.dataset,
            "replace": self.replace,
            "trust_remote_code": self.trust_remote_code,
            "destination": self.destination,
            **({"plugin_package": self.plugin_package} if self.plugin_package else {}),
        }


@dataclass(frozen=True)
class Rendered:
    """What an onboarding wrote into the destination."""

    files: tuple[Path, ...]  # relative to the destination
    registry_lines: tuple[str, ...]
    replaced: tuple[str, str] | None = None
    warnings: tuple[str, ...] = field(default=())


def _quiet(_: str) -> None:
    pass


def render(
    dest: Destination,
    answers: Answers,
    spec: Mapping[str, Any],
    *,
    template: Path | None = None,
    progress: Progress = _quiet,
) -> Rendered:
    """Render ``answers`` into ``dest`` (already checked) and register the architecture.

    ``spec`` is the spec already built for ``answers`` (Copier would otherwise build it again).
    """
    import copier

    root = require_template(template if template is not None else template_root())
    with tempfile.TemporaryDirectory(prefix="automodel-onboard-") as tmp:
        stage = Path(tmp) / "checkout"
        stage.mkdir()
        dest.stage(stage)
        progress("rendering the templates")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Copier's DirtyLocalWarning when run from a work tree
            try:
                copier.run_copy(
                    str(root),
                    stage,
                    data={**answers.data(), "checked": True, "spec": dict(spec)},
                    defaults=True,
                    unsafe=True,
                    quiet=True,
                    vcs_ref="HEAD" if _is_repository(root) else None,
                )
            except OnboardError:
                raise
            except Exception as exc:  # Copier reports template and task failures as many types
                raise OnboardError(
                    f"rendering failed: {type(exc).__name__}: {_first_line(exc)}",
                    where=str(root),
                    fix="nothing was written to the destination; fix the cause above and retry",
                    code="render-failed",
                ) from exc
        patched = {stage / rel for rel in dest.patched}
        files = tuple(sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file() and p not in patched))
        added = dest.added_lines(stage)
        progress("installing the rendered files")
        dest.install(stage, files)
    return Rendered(files=files, registry_lines=added)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return text.splitlines()[0][:400]


def answers_for(spec: Mapping[str, Any], model: str, **overrides: Any) -> Answers:
    """Answers defaulted from the spec, as copier.yml defaults them."""
    from automodel_onboard.layout import recipes

    kind = overrides.get("kind") or spec["kind"]
    return Answers(
        model=model,
        revision=overrides.get("revision") or "",
        module_name=overrides.get("module_name") or spec["module_name"],
        kind=kind,
        dataset=overrides.get("dataset") or recipes.default_dataset(kind),
        replace=bool(overrides.get("replace")),
        trust_remote_code=bool(overrides.get("trust_remote_code")),
        destination=overrides.get("destination") or "checkout",
        plugin_package=overrides.get("plugin_package") or "",
    )
