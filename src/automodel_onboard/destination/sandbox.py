"""A scratch NeMo AutoModel checkout: the installed package copied into a fresh git repository.

The wheel ships the package only, so the folders a real checkout has for tests, recipes and docs are created empty.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from automodel_onboard.destination.checkout import REGISTRY, TESTS
from automodel_onboard.errors import OnboardError

PACKAGE = "nemo_automodel"
DISTRIBUTION = "nemo-automodel"
CHECKOUT_DIRS = (
    TESTS.as_posix(),
    "examples/llm_finetune",
    "examples/vlm_finetune",
    "docs/model-coverage/llm",
    "docs/model-coverage/vlm",
)
GIT_USER = "automodel-onboard sandbox"
GIT_EMAIL = "sandbox@automodel-onboard.invalid"
GITIGNORE = "__pycache__/\n*.pyc\n"  # so imports and test runs in the sandbox keep `git status` clean


def is_checkout(path: Path) -> bool:
    """Whether ``path`` looks like a NeMo AutoModel checkout (it has ``nemo_automodel/_transformers/registry.py``)."""
    return (Path(path) / REGISTRY).is_file()


def installed_package_dir() -> Path:
    """The folder of the installed ``nemo_automodel`` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise OnboardError(
            f"the {PACKAGE} package is not installed in this Python environment",
            where=f"python {sys.executable}",
            fix=f"pip install {DISTRIBUTION}==0.7.0, or pass an existing NeMo AutoModel checkout as destination",
            code="automodel-not-installed",
        )
    return Path(locations[0])


def make_sandbox(dest: Path) -> Path:
    """Create a committed scratch checkout of the installed NeMo AutoModel at ``dest`` (new or empty) and return it."""
    dest = Path(dest)
    _require_empty(dest)
    source = installed_package_dir()
    version = importlib.metadata.version(DISTRIBUTION)
    existed = dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, dest / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for folder in CHECKOUT_DIRS:
            (dest / folder).mkdir(parents=True)
            (dest / folder / ".gitkeep").touch()
        (dest / "README.md").write_text(_readme(version))
        (dest / ".gitignore").write_text(GITIGNORE)
        _commit_all(dest, f"NeMo AutoModel {version} sandbox")
    except BaseException as exc:
        _discard(dest, keep_folder=existed)
        if isinstance(exc, (OSError, subprocess.CalledProcessError)):
            raise _failed(dest, exc) from exc
        raise
    return dest


def _require_empty(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OnboardError(
            f"{dest} already exists and is not an empty folder; a sandbox is only made in a new or empty one",
            where=str(dest),
            fix="pick a path that does not exist yet, or empty that folder first",
            code="dest-not-empty",
        )


def _readme(version: str) -> str:
    return (
        f"# NeMo AutoModel {version} sandbox\n\n"
        f"A scratch NeMo AutoModel checkout made by automodel-onboard: the installed `{PACKAGE}` {version} package\n"
        "copied into a fresh git repository, plus the empty `tests/`, `examples/` and `docs/` folders of a real\n"
        "checkout. Onboard a model here to try the generated code and tests; `git diff` shows what was added.\n"
    )


def _commit_all(dest: Path, message: str) -> None:
    _git(dest, "-c", "init.defaultBranch=main", "init", "-q")
    _git(dest, "config", "user.name", GIT_USER)
    _git(dest, "config", "user.email", GIT_EMAIL)
    _git(dest, "config", "commit.gpgsign", "false")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "--no-verify", "-m", message)


def _git(cwd: Path, *args: str) -> None:
    # GIT_* variables (set when running inside a git hook, say) would point git at another repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise OnboardError(
            "git is not installed or not on PATH", where=str(cwd), fix="install git and rerun", code="git-missing"
        ) from exc


def _failed(dest: Path, exc: OSError | subprocess.CalledProcessError) -> OnboardError:
    detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
    return OnboardError(
        f"could not create the sandbox: {detail}; nothing was left behind",
        where=str(dest),
        fix="check that the destination is writable and that git works, then rerun",
        code="sandbox-failed",
    )


def _discard(dest: Path, *, keep_folder: bool) -> None:
    """Remove what a failed :func:`make_sandbox` wrote: the folder it created, or the contents of the one given."""
    if not keep_folder:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir() if dest.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
