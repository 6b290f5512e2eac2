"""The one error type the tool raises for bad input, with what went wrong, where, and how to fix it."""

from __future__ import annotations


class OnboardError(Exception):
    """A user-facing failure: bad input, an unsupported model, or a destination we refuse to touch.

    ``what`` says what is wrong, ``where`` names the file, field or path concerned, and ``fix`` says how to
    proceed. ``code`` is a short stable identifier that tests and ``--json`` output can rely on.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, code: str = "invalid-input"):
        self.what = what
        self.where = where
        self.fix = fix
        self.code = code
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what]
        if self.where:
            parts.append(f"(at {self.where})")
        text = " ".join(parts)
        if self.fix:
            text += f"\n  how to fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, str | None]:
        return {"error": self.code, "message": self.what, "where": self.where, "fix": self.fix}


class UnsupportedModel(OnboardError):
    """The input is a valid config of an architecture this tool does not onboard."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, code: str = "unsupported"):
        super().__init__(what, where=where, fix=fix, code=code)


# Codes of faults of the machine rather than of the input (exit status 3).
ENVIRONMENT_CODES = frozenset({"environment", "destination-busy", "registry-write-failed"})


class Interrupted(Exception):
    """SIGTERM, raised in the main thread so every cleanup runs as it does for Ctrl-C."""


def as_onboard_error(exc: BaseException) -> OnboardError | None:
    """An environment fault as one of our errors (what, where, how to fix); None for anything else (a defect)."""
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else None
        return OnboardError(
            f"the system refused an operation: {exc.strerror or exc}" + (f": {where}" if where else ""),
            where=str(where) if where else None,
            fix="check the permissions and free space of that path (and HF_HOME, XDG_CACHE_HOME, TMPDIR), then rerun; "
            "the destination is as it was",
            code="environment",
        )
    if isinstance(exc, MemoryError):
        return OnboardError(
            "out of memory", fix="free memory or use a machine with more, then rerun", code="environment"
        )
    return None
