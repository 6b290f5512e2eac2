"""All-or-nothing installs into a destination, under a journal kept outside it.

Staged files are moved in one by one with atomic renames, the files a destination patches (its registry) last. The
journal, written before the first move, records what is about to be created and the patched files' previous bytes,
so a failure, or a process killed between two writes (on the next run, :func:`recover`), rolls back to exactly what
was there before.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from automodel_onboard.errors import OnboardError
from automodel_onboard.files import atomic_write


@dataclass(frozen=True)
class Journal:
    """What an install is about to create in ``dest``, and the patched files as they were."""

    path: Path
    dest: Path
    files: tuple[Path, ...]  # relative to dest
    folders: tuple[Path, ...]  # folders that did not exist, deepest last
    patched: Mapping[Path, bytes]  # relative path -> previous bytes

    @staticmethod
    def location(dest: Path) -> Path:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        digest = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:24]
        return cache / "automodel-onboard" / "journal" / f"{digest}.json"

    @classmethod
    def begin(cls, dest: Path, files: tuple[Path, ...], patched: tuple[Path, ...]) -> Journal:
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
            patched={rel: (dest / rel).read_bytes() for rel in patched},
        )
        journal.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "dest": str(dest),
            "files": [str(f) for f in files],
            "folders": [str(f) for f in journal.folders],
            "patched": {str(rel): base64.b64encode(data).decode() for rel, data in journal.patched.items()},
        }
        atomic_write(journal.path, json.dumps(record).encode())
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
            patched={Path(rel): base64.b64decode(data) for rel, data in record["patched"].items()},
        )

    def roll_back(self) -> None:
        """Remove what this install created (and any half-written temp file) and restore the patched files."""
        for rel, data in self.patched.items():
            target = self.dest / rel
            if target.read_bytes() != data:
                atomic_write(target, data)
        folders = {*(self.dest / rel.parent for rel in self.patched), *(self.dest / f.parent for f in self.files)}
        for folder in folders:
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


def install(stage: Path, dest: Path, files: tuple[Path, ...], patched: tuple[Path, ...]) -> None:
    """Move ``files`` (relative; none may exist in ``dest``) from ``stage``, then the ``patched`` ones that changed.

    Everything is undone on failure.
    """
    changed = tuple(rel for rel in patched if (stage / rel).read_bytes() != (dest / rel).read_bytes())
    journal = Journal.begin(dest, files, changed)
    try:
        for rel in files:
            target = dest / rel
            if target.exists():
                raise OnboardError(f"{rel} appeared in the destination while rendering", where=str(target))
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_in(stage / rel, target)
        for rel in changed:
            _copy_in(stage / rel, dest / rel)
    except BaseException:
        journal.roll_back()
        raise
    journal.finish()


def _copy_in(source: Path, target: Path) -> None:
    atomic_write(target, source.read_bytes(), mode_from=source if not target.exists() else None)


def recover(dest: Path) -> bool:
    """Roll back an install that was interrupted (the process killed); True when there was one."""
    journal = Journal.load(dest)
    if journal is None:
        return False
    journal.roll_back()
    return True
