"""Ending cleanly on every exit path: signals as exceptions, one temporary folder per run, tracebacks to a log.

Every temporary file of a run (staging copies, Copier's template clones, the verification's reports) lives in one
folder named after the process, removed when the run ends however it ends; a run killed outright (SIGKILL) leaves it,
and the next run removes the folders of processes that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from automodel_onboard.errors import Interrupted

RUN_PREFIX = "automodel-onboard-run-"


class Signals(list):
    """The signals a run received (names). A library may swallow the exception a signal raised (a bare ``except``
    in an import), so the run checks this record too before it reports success."""

    def handler(self, signum: int, frame: object) -> None:
        self.append(signal.Signals(signum).name)
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signal.Signals(signum).name)

    def raise_if_received(self) -> None:
        if self:
            raise KeyboardInterrupt if self[0] == "SIGINT" else Interrupted(self[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(base: Path) -> None:
    """Remove the run folders of this user's processes that are gone (killed before they could clean up)."""
    for folder in base.glob(f"{RUN_PREFIX}*"):
        pid = folder.name.removeprefix(RUN_PREFIX).split("-", 1)[0]
        try:
            mine = folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def as_exceptions() -> Iterator[Signals]:
    """SIGTERM raises :class:`Interrupted` and Ctrl-C KeyboardInterrupt, each recorded in the yielded list as well;
    temporary files go in a run folder."""
    main = threading.current_thread() is threading.main_thread()
    received = Signals()
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, received.handler) for signum in handled} if main else {}
    base = Path(tempfile.gettempdir())
    saved = tempfile.tempdir
    run = None
    try:
        with contextlib.suppress(OSError):
            sweep(base)
            run = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=base))
        if run is not None:
            tempfile.tempdir = str(run)
        yield received
    finally:
        tempfile.tempdir = saved
        if run is not None:
            shutil.rmtree(run, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def write_log(prefix: str, text: str) -> Path:
    """Write ``text`` to a log file of its own (the user cache, else the temp directory) and return its path."""
    for folder in (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "automodel-onboard" / "logs",
        Path(tempfile.gettempdir()),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    return Path("(no writable folder for the log)")


def log_traceback(exc: BaseException) -> Path:
    """Write ``exc``'s traceback to a log file of its own and return the path."""
    return write_log("error", "".join(traceback.format_exception(exc)))
