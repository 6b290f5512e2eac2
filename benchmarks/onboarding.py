"""How long the commands a user runs take: cold (a new interpreter, imports counted, as a user pays it) and warm
(repeated in one interpreter that has run the command before).

Every run gets its own destination, prepared before its clock starts: a copy of a scratch checkout, or of one that
has the model onboarded and committed. The model comes from a local Hugging Face cache with the Hub offline.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import Sample

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "configs" / "Qwen3-0.6B.json"
HUB_ID = "Qwen/Qwen3-0.6B"
NAME = "qwen3_onboarded"
NEW = ("new", HUB_ID, "--dest", "{dest}", "--name", NAME)


@dataclass(frozen=True)
class Task:
    """One command line; ``{dest}`` is filled in per run. ``setup`` names the destination each run
    starts from: none, a scratch checkout, or one with the model onboarded."""

    name: str
    argv: tuple[str, ...]
    setup: str = "none"  # "none" | "checkout" | "onboarded"
    status: int = 0  # the exit status the run must end with
    verifies: bool = False  # runs the generated tests (minutes): fewer runs

    def command(self, dest: Path | None) -> list[str]:
        return [arg.format(dest=dest) for arg in self.argv]


TASKS = (
    Task("classify, without the inventory", ("classify", HUB_ID, "--no-inventory")),
    Task("classify, with the inventory", ("classify", HUB_ID)),
    Task("new, without the generated tests", (*NEW, "--replace", "--no-verify"), setup="checkout"),
    Task("new, with the generated tests", (*NEW, "--replace"), setup="checkout", verifies=True),
    Task("new, refused (NeMo AutoModel's own architecture, no --replace)", NEW, setup="checkout", status=2),
    Task(
        "update of an unchanged model",
        ("update", "--dest", "{dest}", "--name", NAME),
        setup="onboarded",
    ),
)


def hub_cache(root: Path, repo_id: str, config_text: str) -> Path:
    """A Hugging Face hub cache (refs, blobs, snapshots) holding one repository's config.json."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    blob = repo / "blobs" / hashlib.sha256(config_text.encode()).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_text(config_text)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(os.path.relpath(blob, snapshot))
    return root


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def cli(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "automodel_onboard.commands.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


@dataclass(frozen=True)
class Fixtures:
    """The destinations runs start from, made once: a scratch checkout, and a copy with the model onboarded."""

    work: Path
    cache: Path

    @property
    def checkout(self) -> Path:
        return self.work / "checkout"

    @property
    def onboarded(self) -> Path:
        return self.work / "onboarded"

    @property
    def template(self) -> Path:
        return self.work / "template"

    @classmethod
    def make(cls, work: Path, *, onboarded: bool = True) -> Fixtures:
        fixtures = cls(work, hub_cache(work / "hub", HUB_ID, EXAMPLE.read_text()))
        env = environment(fixtures.cache)
        check(cli(["sandbox", str(fixtures.checkout)], env), 0)
        if not onboarded:
            return fixtures
        shutil.copytree(fixtures.checkout, fixtures.onboarded, symlinks=True)
        fixtures.template.mkdir()
        shutil.copy2(ROOT / "copier.yml", fixtures.template / "copier.yml")
        shutil.copytree(
            ROOT / "templates", fixtures.template / "templates", ignore=shutil.ignore_patterns("__pycache__")
        )
        _commit_all(fixtures.template, "template")
        # Rendered from a committed copy of this working tree's template: a template with uncommitted changes records
        # a version that `update` cannot find again.
        argv = [
            sys.executable,
            "-m",
            "benchmarks.onboarding",
            "onboard",
            str(fixtures.onboarded),
            str(fixtures.template),
        ]
        check(subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT), 0)
        _commit_all(fixtures.onboarded, "onboarded")
        return fixtures

    def destination(self, task: Task, run: Path) -> Path | None:
        """A fresh copy of the destination ``task`` starts from, at ``run``."""
        if task.setup == "none":
            return None
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(self.checkout if task.setup == "checkout" else self.onboarded, run, symlinks=True)
        return run


def _commit_all(repo: Path, message: str) -> None:
    if not (repo / ".git").exists():
        subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", str(repo)], check=True)
    for args in (
        ["add", "-A"],
        ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", message],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def check(result: subprocess.CompletedProcess, status: int) -> None:
    if result.returncode != status:
        raise RuntimeError(
            f"{' '.join(result.args[3:])} exited {result.returncode}, not {status}:\n{result.stdout}\n{result.stderr}"
        )


def cold(task: Task, fixtures: Fixtures, runs: int) -> Sample:
    seconds = []
    for _ in range(runs):
        dest = fixtures.destination(task, fixtures.work / "run")
        start = time.perf_counter()
        result = cli(task.command(dest), environment(fixtures.cache))
        seconds.append(time.perf_counter() - start)
        check(result, task.status)
    return Sample(tuple(seconds))


def warm(tasks: Sequence[Task], fixtures: Fixtures, runs: Mapping[str, int]) -> dict[str, Sample]:
    """Each task run once untimed, then ``runs[task]`` times, all in one new interpreter."""
    spec = {"work": str(fixtures.work), "cache": str(fixtures.cache), "tasks": [t.name for t in tasks], "runs": runs}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.onboarding", "warm", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=environment(fixtures.cache),
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the warm runs failed:\n{result.stderr[-4000:]}")
    return {name: Sample(tuple(seconds)) for name, seconds in json.loads(result.stdout.splitlines()[-1]).items()}


def _warm_worker(spec: Mapping) -> dict[str, list[float]]:
    from automodel_onboard.commands.cli import main

    fixtures = Fixtures(Path(spec["work"]), Path(spec["cache"]))
    seconds: dict[str, list[float]] = {}
    for task in (t for t in TASKS if t.name in spec["tasks"]):
        seconds[task.name] = []
        for run in range(spec["runs"][task.name] + 1):
            dest = fixtures.destination(task, fixtures.work / "run")
            start = time.perf_counter()
            status = main(task.command(dest), out=io.StringIO(), err_out=io.StringIO())
            elapsed = time.perf_counter() - start
            if status != task.status:
                raise RuntimeError(f"{task.name}: exited {status}, not {task.status}")
            if run:  # the first run pays the imports and fills the caches
                seconds[task.name].append(elapsed)
    return seconds


@dataclass(frozen=True)
class TaskResult:
    task: Task
    cold: Sample
    warm: Sample

    def to_json(self) -> dict[str, object]:
        return {"task": self.task.name, "cold": self.cold.to_json(), "warm": self.warm.to_json()}


def measure(runs: int, suite_runs: int, *, with_tests: bool = True) -> list[TaskResult]:
    tasks = [t for t in TASKS if with_tests or not t.verifies]
    counts = {t.name: suite_runs if t.verifies else runs for t in tasks}
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = Fixtures.make(Path(tmp), onboarded=any(t.setup == "onboarded" for t in tasks))
        colds = {t.name: cold(t, fixtures, counts[t.name]) for t in tasks}
        warms = warm(tasks, fixtures, counts)
    return [TaskResult(t, colds[t.name], warms[t.name]) for t in tasks]


def _onboard(dest: Path, template: Path) -> None:
    from automodel_onboard.destination.checkout import Checkout
    from automodel_onboard.render import copier_ext, copier_run

    spec = copier_ext.spec_dict(HUB_ID, "", NAME)
    answers = copier_run.answers_for(spec, HUB_ID, module_name=NAME, replace=True)
    copier_run.render(Checkout(dest), answers, spec, template=template)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the steps that run in an interpreter of their own")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("warm", help="the warm runs").add_argument("spec")
    onboard = steps.add_parser("onboard", help="the destination `update` starts from")
    onboard.add_argument("dest", type=Path)
    onboard.add_argument("template", type=Path)
    args = parser.parse_args()
    if args.step == "warm":
        print(json.dumps(_warm_worker(json.loads(args.spec))))
    else:
        _onboard(args.dest, args.template)
