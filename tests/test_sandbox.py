"""The scratch NeMo AutoModel checkout: a committed git repository holding a copy of the installed package."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import pytest

from automodel_onboard.destination.sandbox import CHECKOUT_DIRS, installed_package_dir, is_checkout, make_sandbox
from automodel_onboard.errors import OnboardError

REGISTRY = Path("nemo_automodel", "_transformers", "registry.py")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sandbox(tmp_path_factory.mktemp("sandbox") / "Automodel")


def test_sandbox_is_a_clean_committed_repository(sandbox: Path):
    assert git(sandbox, "status", "--porcelain") == ""
    version = importlib.metadata.version("nemo-automodel")
    assert git(sandbox, "log", "--format=%an|%s") == f"automodel-onboard sandbox|NeMo AutoModel {version} sandbox\n"
    tracked = set(git(sandbox, "ls-files").splitlines())
    assert REGISTRY.as_posix() in tracked
    assert not any("__pycache__" in path or path.endswith(".pyc") for path in tracked)


def test_sandbox_has_the_checkout_folders_and_a_readme(sandbox: Path):
    for folder in CHECKOUT_DIRS:
        assert (sandbox / folder / ".gitkeep").is_file(), folder
    assert "NeMo AutoModel" in (sandbox / "README.md").read_text()
    assert is_checkout(sandbox)


def test_sandbox_package_is_a_full_independent_copy(sandbox: Path):
    installed = installed_package_dir()
    assert (sandbox / REGISTRY).read_bytes() == (installed.parent / REGISTRY).read_bytes()
    source_files = {p.relative_to(installed) for p in installed.rglob("*.py")}
    copied_files = {p.relative_to(sandbox / "nemo_automodel") for p in (sandbox / "nemo_automodel").rglob("*.py")}
    assert copied_files == source_files
    # Users edit the copy: it must not share inodes with the installed package.
    assert (sandbox / REGISTRY).stat().st_ino != (installed.parent / REGISTRY).stat().st_ino


def test_is_checkout_is_false_for_other_folders(tmp_path: Path):
    assert not is_checkout(tmp_path)
    assert not is_checkout(tmp_path / "missing")


def test_empty_existing_folder_is_accepted(tmp_path: Path):
    dest = tmp_path / "empty"
    dest.mkdir()
    assert make_sandbox(dest) == dest
    assert is_checkout(dest)


@pytest.mark.parametrize("occupant", ["file", "folder"])
def test_non_empty_destination_is_refused_and_left_alone(tmp_path: Path, occupant: str):
    dest = tmp_path / "taken"
    dest.mkdir()
    if occupant == "file":
        (dest / "notes.txt").write_text("mine\n")
    else:
        (dest / "sub").mkdir()
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))

    with pytest.raises(OnboardError) as caught:
        make_sandbox(dest)

    assert caught.value.code == "dest-not-empty"
    assert str(dest) in caught.value.message
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before


def test_a_file_as_destination_is_refused(tmp_path: Path):
    dest = tmp_path / "file.txt"
    dest.write_text("mine\n")
    with pytest.raises(OnboardError) as caught:
        make_sandbox(dest)
    assert caught.value.code == "dest-not-empty"
    assert dest.read_text() == "mine\n"


def test_a_failure_part_way_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # the package copy succeeds, `git init` cannot run
    dest = tmp_path / "new" / "Automodel"
    with pytest.raises(OnboardError) as caught:
        make_sandbox(dest)
    assert caught.value.code == "git-missing"
    assert not dest.exists()
