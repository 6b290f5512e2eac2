"""Render a spec into a NeMo AutoModel checkout with Copier, all or nothing.

Copier renders into a staging folder that holds a copy of the destination's ``registry.py``, so its task patches
the copy. Only when rendering and registration have both succeeded are the new files moved into the destination
(each one atomically) and the patched registry swapped in last; any failure on the way removes what was moved
and leaves the destination as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automodel_onboard import preflight
from automodel_onboard.errors import OnboardError

TEMPLATE_ROOT = Path(__file__).resolve().parents[2]
Progress = Callable[[str], None]


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

    def data(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "revision": self.revision,
            "module_name": self.module_name,
            "kind": self.kind,
            "dataset": self.dataset,
            "replace": self.replace,
            "trust_remote_code": self.trust_remote_code,
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
    dest: Path,
    answers: Answers,
    spec: Mapping[str, Any],
    *,
    template: Path = TEMPLATE_ROOT,
    progress: Progress = _quiet,
) -> Rendered:
    """Render ``answers`` into ``dest`` (already checked by :mod:`preflight`) and register the architecture.

    ``spec`` is the spec already built for ``answers`` (Copier would otherwise build it again).
    """
    import copier

    registry = preflight.registry_path(dest)
    with tempfile.TemporaryDirectory(prefix="automodel-onboard-") as tmp:
        stage = Path(tmp) / "checkout"
        staged_registry = preflight.registry_path(stage)
        staged_registry.parent.mkdir(parents=True)
        shutil.copy2(registry, staged_registry)
        progress("rendering the templates")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Copier's DirtyLocalWarning when run from a work tree
            try:
                copier.run_copy(
                    str(template),
                    stage,
                    data={**answers.data(), "checked": True, "spec": dict(spec)},
                    defaults=True,
                    unsafe=True,
                    quiet=True,
                    vcs_ref="HEAD",
                )
            except OnboardError:
                raise
            except Exception as exc:  # Copier reports template and task failures as many types
                raise OnboardError(
                    f"rendering failed: {type(exc).__name__}: {_first_line(exc)}",
                    where=str(template),
                    fix="nothing was written to the destination; fix the cause above and retry",
                    code="render-failed",
                ) from exc
        files = tuple(sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file() and p != staged_registry))
        before = registry.read_text(encoding="utf-8")
        after = staged_registry.read_text(encoding="utf-8")
        progress("installing the rendered files")
        install(stage, dest, files, staged_registry if after != before else None)
    return Rendered(files=files, registry_lines=_added_lines(before, after))


def install(stage: Path, dest: Path, files: tuple[Path, ...], registry: Path | None) -> None:
    """Move staged files into ``dest`` (none may exist), then the registry; undo everything on failure.

    A journal outside the destination records what is about to be written, so that even a process killed between
    two writes is rolled back by the next run (:func:`recover`).
    """
    journal = Journal.begin(dest, files)
    try:
        for rel in files:
            target = dest / rel
            if target.exists():
                raise OnboardError(f"{rel} appeared in the destination while rendering", where=str(target))
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_copy(stage / rel, target)
        if registry is not None:
            _atomic_copy(registry, preflight.registry_path(dest))
    except BaseException:
        journal.roll_back()
        raise
    journal.finish()


@dataclass(frozen=True)
class Journal:
    """What an install is about to create in ``dest``, and the registry as it was, kept in the user's cache."""

    path: Path
    dest: Path
    files: tuple[Path, ...]
    folders: tuple[Path, ...]  # folders that did not exist, deepest last
    registry: bytes

    @staticmethod
    def location(dest: Path) -> Path:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        digest = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:24]
        return cache / "automodel-onboard" / "journal" / f"{digest}.json"

    @classmethod
    def begin(cls, dest: Path, files: tuple[Path, ...]) -> Journal:
        folders: dict[Path, None] = {}
        for rel in files:
            for parent in reversed(rel.parents):
                if parent != Path(".") and not (dest / parent).exists():
                    folders[parent] = None
        journal = cls(
            path=cls.location(dest),
            dest=dest,
            files=files,
            folders=tuple(folders),
            registry=preflight.registry_path(dest).read_bytes(),
        )
        journal.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "dest": str(dest),
            "files": [str(f) for f in files],
            "folders": [str(f) for f in journal.folders],
            "registry": base64.b64encode(journal.registry).decode(),
        }
        _atomic_write(journal.path, json.dumps(record).encode())
        return journal

    @classmethod
    def load(cls, dest: Path) -> Journal | None:
        path = cls.location(dest)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(
            path=path,
            dest=dest,
            files=tuple(Path(f) for f in record["files"]),
            folders=tuple(Path(f) for f in record["folders"]),
            registry=base64.b64decode(record["registry"]),
        )

    def roll_back(self) -> None:
        """Remove what this install created (and any half-written temp file) and restore the registry."""
        registry = preflight.registry_path(self.dest)
        if registry.read_bytes() != self.registry:
            _atomic_write(registry, self.registry)
        for folder in {registry.parent, *(self.dest / f.parent for f in self.files)}:
            for stray in folder.glob(".*.tmp") if folder.is_dir() else ():
                stray.unlink(missing_ok=True)
        for rel in self.files:
            (self.dest / rel).unlink(missing_ok=True)
        for rel in reversed(self.folders):
            folder = self.dest / rel
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self.finish()

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def recover(dest: Path) -> bool:
    """Roll back an install that was interrupted (the process killed); True when there was one."""
    journal = Journal.load(dest)
    if journal is None:
        return False
    journal.roll_back()
    return True


def _atomic_copy(source: Path, target: Path) -> None:
    _atomic_write(target, source.read_bytes(), mode_from=source)


def _atomic_write(target: Path, data: bytes, *, mode_from: Path | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        shutil.copymode(mode_from or (target if target.exists() else tmp), tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _added_lines(before: str, after: str) -> tuple[str, ...]:
    import difflib

    return tuple(
        line[1:]
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line.startswith("+") and not line.startswith("+++")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return text.splitlines()[0][:400]


def answers_for(spec: Mapping[str, Any], model: str, **overrides: Any) -> Answers:
    """Answers defaulted from the spec, as copier.yml defaults them."""
    from automodel_onboard import recipes

    kind = overrides.get("kind") or spec["kind"]
    return Answers(
        model=model,
        revision=overrides.get("revision") or "",
        module_name=overrides.get("module_name") or spec["module_name"],
        kind=kind,
        dataset=overrides.get("dataset") or recipes.default_dataset(kind),
        replace=bool(overrides.get("replace")),
        trust_remote_code=bool(overrides.get("trust_remote_code")),
    )
