"""One writer per destination: an advisory lock on the destination folder itself.

``new``, ``update`` and the registry task hold it from their first read of the destination to their last write, so
two runs into one checkout take turns instead of overwriting each other's registry entry. The lock is the kernel's
(``flock`` on the folder), so a run killed by any signal releases it, and nothing is written into the checkout.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from automodel_onboard.errors import OnboardError

WAIT_SECONDS = 1800.0  # a whole onboarding of a large MoE model, rendering and install, fits well within this
POLL_SECONDS = 0.2


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def held(root: Path, *, notify: Callable[[str], None] = _quiet, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the destination's lock; waits (saying so once) while another run holds it, refuses after ``wait``."""
    try:
        handle = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OnboardError(
            f"cannot open the destination {root}: {exc.strerror}",
            where=str(root),
            fix="check that the folder exists and that you may read it",
            code="environment",
        ) from exc
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                raise OnboardError(
                    f"another automodel-onboard run has been writing to {root} for over {wait:.0f} s",
                    where=str(root),
                    fix="wait for it to finish (or stop it), then rerun this command",
                    code="destination-busy",
                )
            if not told:
                notify(f"another automodel-onboard run is writing to {root}; waiting for it to finish")
                told = True
            time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(handle)  # releases the lock
