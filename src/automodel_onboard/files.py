"""Writing a person's files: every write goes to a temporary sibling first and is swapped in with one rename."""

from __future__ import annotations

import io
import os
import stat
import tempfile
import tokenize
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    target: Path, data: bytes, *, mode_from: Path | None = None, check: Callable[[Path], None] | None = None
) -> None:
    """Replace (or create) ``target`` with ``data`` in one rename; on any failure ``target`` is as it was.

    The file keeps its permissions (or takes ``mode_from``'s); ``check`` may inspect the written copy and raise to
    abort. A symlinked ``target`` keeps its link: the file it points at is the one replaced.
    """
    target = target.resolve() if target.is_symlink() else target
    source = mode_from if mode_from is not None else target if target.exists() else None
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if source is not None:
            os.chmod(tmp, stat.S_IMODE(source.stat().st_mode))
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_source(path: Path) -> str:
    """A Python file's text in its declared encoding (a coding line or a BOM), as the interpreter reads it."""
    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    return data.decode(encoding, errors="replace")
