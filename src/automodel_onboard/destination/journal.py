"""All-or-nothing installs into a destination, under a journal kept outside it.

Staged files are moved in one by one with atomic renames, the files a destination patches (its registry) last. The
journal, written before the first move and again after each one, records what the install is about to do, each file
as it left it (content hash, inode, modification time) and the patched files' previous bytes. A failure, or a process
killed between two writes (on the next run, :func:`recover`), rolls back what that install did, and only that: a
file is removed, or a patched file restored, only while it is still exactly as the install left it. Anything changed
since (an edit, another run's file of the same name) is left alone and named.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from automodel_onboard.errors import OnboardError
from automodel_onboard.files import atomic_write


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Written:
    """A file as an install left it: a later file with the same bytes but another inode is someone else's."""

    sha256: str
    inode: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> Written:
        info = path.stat()
        return cls(_sha256(path.read_bytes()), info.st_ino, info.st_mtime_ns)

    def matches(self, path: Path) -> bool:
        try:
            return path.is_file() and Written.of(path) == self
        except OSError:
            return False


@dataclass(frozen=True)
class Recovery:
    """What rolling back an install did: removed or restored, and left alone (changed since), with how to finish."""

    undone: tuple[str, ...]
    left: tuple[tuple[str, str], ...]  # (relative path, what to do by hand)

    def summary(self) -> str:
        text = f"an earlier onboarding into this checkout was interrupted; {len(self.undone)} of its writes undone"
        if self.left:
            text += "; left alone because changed since: " + "; ".join(f"{p} ({todo})" for p, todo in self.left)
        return text


@dataclass
class Journal:
    """What an install is about to create in ``dest``, what it wrote so far, and the patched files as they were."""

    path: Path
    dest: Path
    files: tuple[Path, ...]  # relative to dest
    folders: tuple[Path, ...]  # folders that did not exist, deepest last
    patched: dict[Path, bytes]  # relative path -> previous bytes
    written: dict[Path, Written] = field(default_factory=dict)

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
        try:
            journal.path.parent.mkdir(parents=True, exist_ok=True)
            journal._save()
        except OSError as exc:
            raise OnboardError(
                f"cannot write the install journal {journal.path}: {exc.strerror or exc}",
                where=str(journal.path.parent),
                fix="set XDG_CACHE_HOME (or HOME) to a folder you may write; nothing was installed",
                code="environment",
            ) from exc
        return journal

    def _save(self) -> None:
        record = {
            "dest": str(self.dest),
            "files": [str(f) for f in self.files],
            "folders": [str(f) for f in self.folders],
            "patched": {str(rel): base64.b64encode(data).decode() for rel, data in self.patched.items()},
            "written": {str(rel): [w.sha256, w.inode, w.mtime_ns] for rel, w in self.written.items()},
        }
        atomic_write(self.path, json.dumps(record).encode())

    def wrote(self, rel: Path) -> None:
        """Record ``rel`` as this install left it (before anything else is written)."""
        self.written[rel] = Written.of(self.dest / rel)
        self._save()

    @classmethod
    def load(cls, dest: Path) -> Journal | None:
        path = cls.location(dest)
        try:
            record = json.loads(path.read_text())
            return cls(
                path=path,
                dest=dest,
                files=tuple(Path(f) for f in record["files"]),
                folders=tuple(Path(f) for f in record["folders"]),
                patched={Path(rel): base64.b64decode(data) for rel, data in record["patched"].items()},
                written={Path(rel): Written(*w) for rel, w in record.get("written", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def roll_back(self) -> Recovery:
        """Undo this install's writes that are still as it left them; name the rest. The journal is then closed."""
        undone: list[str] = []
        left: list[tuple[str, str]] = []
        for rel, before in self.patched.items():
            target = self.dest / rel
            written = self.written.get(rel)
            current = target.read_bytes() if target.is_file() else None
            if current == before or written is None:
                continue  # never replaced by this install
            if written.matches(target):
                atomic_write(target, before)
                undone.append(str(rel))
            else:
                left.append((str(rel), f"changed since; compare it with `git diff -- {rel}` and fix it by hand"))
        for rel in (*self.patched, *self.files):
            target = self.dest / rel
            for stray in target.parent.glob(f".{target.name}.*.tmp") if target.parent.is_dir() else ():
                stray.unlink(missing_ok=True)  # a half-written copy of this install's own
        for rel in self.files:
            target = self.dest / rel
            written = self.written.get(rel)
            if written is None or not (target.exists() or target.is_symlink()):
                continue
            if written.matches(target):
                target.unlink()
                undone.append(str(rel))
            else:
                left.append((str(rel), f"changed since; remove it by hand if unwanted (`rm {rel}`)"))
        for rel in reversed(self.folders):
            folder = self.dest / rel
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        self.finish()
        return Recovery(tuple(undone), tuple(left))

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def install(stage: Path, dest: Path, files: tuple[Path, ...], patched: dict[Path, bytes]) -> None:
    """Move ``files`` (relative; none may exist in ``dest``) from ``stage``, then the ``patched`` ones that changed.

    ``patched`` maps each patched file to the bytes it was staged from: one changed in ``dest`` since (an edit while
    rendering) is never overwritten. Everything this install wrote is undone on failure.
    """
    for rel, staged_from in patched.items():
        _require_unchanged(dest, rel, staged_from)
    changed = tuple(rel for rel in patched if (stage / rel).read_bytes() != patched[rel])
    journal = Journal.begin(dest, files, changed)
    try:
        for rel in files:
            target = dest / rel
            if target.exists() or target.is_symlink():
                raise OnboardError(
                    f"{rel} appeared in the destination while rendering (another run or an editor wrote it)",
                    where=str(target),
                    fix="nothing of this run was kept; check that file, then rerun",
                    code="destination-changed",
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_in(stage / rel, target)
            journal.wrote(rel)
        for rel in changed:
            _require_unchanged(dest, rel, patched[rel])
            _copy_in(stage / rel, dest / rel)
            journal.wrote(rel)
    except BaseException:
        journal.roll_back()
        raise
    journal.finish()


def _require_unchanged(dest: Path, rel: Path, staged_from: bytes) -> None:
    if (dest / rel).read_bytes() != staged_from:
        raise OnboardError(
            f"{rel} changed in the destination while rendering (an edit, or a run that did not take the lock)",
            where=str(dest / rel),
            fix="nothing of this run was kept; rerun once the file is as you want it",
            code="destination-changed",
        )


def _copy_in(source: Path, target: Path) -> None:
    atomic_write(target, source.read_bytes(), mode_from=source if not target.exists() else None)


def recover(dest: Path) -> Recovery | None:
    """Roll back an install that was interrupted (the process killed); None when there was none."""
    journal = Journal.load(dest)
    if journal is None:
        return None
    return journal.roll_back()
