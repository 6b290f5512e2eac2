"""Run an onboarded model's generated tests in its destination and read back a verdict per test.

The tests run in a fresh interpreter with the checkout first on ``sys.path``, so they exercise the checkout's
``nemo_automodel`` (with its patched registry), never an installed copy. A plugin is installed first, with pip and
without its dependencies, into a temporary folder put on ``sys.path`` after its ``src/``: its code is imported from the
plugin folder and NeMo AutoModel reads its entry points as after ``pip install``. Nothing is left behind in the
destination: no bytecode, no pytest cache, no build folder; the JUnit report and the parity figures go to a temporary
folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from automodel_onboard.errors import OnboardError

REPORT_ENV = "AUTOMODEL_ONBOARD_REPORT_DIR"
# The generated parity tests say where the hidden states first part from the reference, in these words.
DIVERGING = re.compile(r"diverges? first at ([^\n]+)", re.IGNORECASE)


@dataclass(frozen=True)
class TestVerdict:
    name: str
    outcome: str  # "passed" | "failed" | "error" | "skipped"
    message: str
    seconds: float


@dataclass(frozen=True)
class Verification:
    verdicts: tuple[TestVerdict, ...]
    returncode: int
    max_logit_diff: float | None
    first_diverging: str | None
    output: str  # pytest's own output, for a log

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and all(v.outcome in ("passed", "skipped") for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for verdict in self.verdicts:
            counts[verdict.outcome] = counts.get(verdict.outcome, 0) + 1
        return counts


# A test's verdict in pytest's verbose output: "path::name PASSED [ 5%]".
VERDICT_LINE = re.compile(r"::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def _quiet(_: str) -> None:
    pass


def run_generated_tests(
    dest: Path,
    tests: Path,
    *,
    timeout: float = 3600,
    progress: Callable[[str], None] = _quiet,
    plugin: bool = False,
) -> Verification:
    """Run the generated tests at ``tests`` (relative to ``dest``) in ``dest`` with this interpreter.

    ``progress`` hears each test's verdict as it finishes.
    """

    def on_line(line: str) -> None:
        found = VERDICT_LINE.search(line)
        if found:
            progress(f"  {found.group(2).lower():<7} {found.group(1)}")

    with tempfile.TemporaryDirectory(prefix="automodel-onboard-verify-") as tmp:
        junit = Path(tmp) / "junit.xml"
        path = [str(dest)]
        if plugin:
            progress("installing the plugin's metadata (entry points) into a temporary folder")
            path = [str(dest / "src"), install_metadata(dest, Path(tmp) / "installed")]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [*path, os.environ.get("PYTHONPATH", "")])),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HF_HUB_OFFLINE": "1",
            REPORT_ENV: tmp,
            "TMPDIR": tmp,  # whatever the tests write goes with this folder, whichever way the run ends
        }
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            f"--junitxml={junit}",
            f"--basetemp={Path(tmp) / 'basetemp'}",
            "--rootdir",
            str(dest),
            str(tests),
        ]
        output, code = _run_in_own_group(cmd, cwd=dest, env=env, timeout=timeout, on_line=on_line)
        verdicts = _read_junit(junit) if junit.is_file() else ()
        diff = _max_logit_diff(Path(tmp))
    return Verification(
        verdicts=verdicts,
        returncode=code,
        max_logit_diff=diff,
        first_diverging=_first_diverging(verdicts),
        output=output,
    )


def install_metadata(plugin: Path, target: Path) -> str:
    """``pip install`` the plugin without dependencies into ``target`` (built from a copy: nothing lands in it)."""
    with tempfile.TemporaryDirectory(prefix="automodel-onboard-build-") as build:
        source = Path(build) / plugin.name
        shutil.copytree(plugin, source, ignore=shutil.ignore_patterns(".git", "__pycache__", "build", "*.egg-info"))
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)]
        isolated = importlib.util.find_spec("setuptools") is None  # else build with it, needing no download
        result = subprocess.run(
            cmd + ([] if isolated else ["--no-build-isolation"]), capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        raise OnboardError(
            f"pip could not install the plugin to run its tests: {(result.stderr or result.stdout).strip()[-400:]}",
            where=str(plugin / "pyproject.toml"),
            fix="check the plugin's pyproject.toml; the plugin's files are written, rerun its tests with "
            "`pip install -e . && pytest tests` there",
            code="plugin-install",
        )
    return str(target)


def _run_in_own_group(
    cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float, on_line: Callable[[str], None]
) -> tuple[str, int]:
    """Run ``cmd`` in a process group of its own, killed whole (its workers too) if this run ends first.

    Its output is read as it comes, each line passed to ``on_line``.
    """
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            on_line(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Whichever way it ends (Ctrl-C included): workers the tests left behind would hold the output open.
        _kill_group(proc)
        proc.wait()
    reader.join(timeout=10)
    output = "".join(lines)
    return (f"timed out after {timeout:.0f} s\n{output}", 124) if timed_out else (output, proc.returncode)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_junit(path: Path) -> tuple[TestVerdict, ...]:
    verdicts = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (node.get("message") or node.text or "").strip()
                break
        verdicts.append(
            TestVerdict(
                name=case.get("name", "?"),
                outcome=outcome,
                message=message,
                seconds=float(case.get("time") or 0.0),
            )
        )
    return tuple(verdicts)


def _max_logit_diff(folder: Path) -> float | None:
    values = []
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("metric") != "max_logit_diff":
            continue
        value = data.get("value")
        if isinstance(value, (int, float)):
            values.append(float(value))
    return max(values) if values else None


def _first_diverging(verdicts: tuple[TestVerdict, ...]) -> str | None:
    for verdict in verdicts:
        if verdict.outcome in ("failed", "error") and (m := DIVERGING.search(verdict.message)):
            return m.group(1).strip()
    return None
