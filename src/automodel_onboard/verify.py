"""Run an onboarded model's generated tests in its checkout and read back a verdict per test.

The tests run in a fresh interpreter with the checkout first on ``sys.path``, so they exercise the checkout's
``nemo_automodel`` (with its patched registry), never an installed copy. Nothing is left behind in the checkout:
no bytecode, no pytest cache; the JUnit report and the parity figures go to a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

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


def run_generated_tests(dest: Path, tests: Path, *, timeout: float = 3600) -> Verification:
    """Run the generated tests at ``tests`` (relative to ``dest``) in ``dest`` with this interpreter."""
    with tempfile.TemporaryDirectory(prefix="automodel-onboard-verify-") as tmp:
        junit = Path(tmp) / "junit.xml"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(dest), os.environ.get("PYTHONPATH", "")])),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HF_HUB_OFFLINE": "1",
            REPORT_ENV: tmp,
        }
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            f"--junitxml={junit}",
            "--rootdir",
            str(dest),
            str(tests),
        ]
        try:
            result = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = result.stdout + result.stderr, result.returncode
        except subprocess.TimeoutExpired as exc:
            output, code = f"timed out after {timeout:.0f} s\n{exc.stdout or ''}", 124
        verdicts = _read_junit(junit) if junit.is_file() else ()
        diff = _max_logit_diff(Path(tmp))
    return Verification(
        verdicts=verdicts,
        returncode=code,
        max_logit_diff=diff,
        first_diverging=_first_diverging(verdicts),
        output=output,
    )


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
