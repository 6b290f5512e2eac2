"""Time ``automodel-onboard classify`` with and without the reference inventory, in fresh interpreters.

Each run is a new process, so import costs (torch, transformers) are counted the way a user pays them.
Prints a Markdown table; the README records its figures. Usage:

    .venv/bin/python benchmarks/classify_time.py [--runs 5] [CONFIG ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = (
    ROOT / "examples" / "configs" / "Qwen3-0.6B.json",
    ROOT / "tests" / "fixtures" / "configs" / "Qwen__Qwen3-235B-A22B.json",
    ROOT / "tests" / "fixtures" / "configs" / "meta-llama__Llama-4-Maverick-17B-128E-Instruct.json",
)
PROBE = (
    "import sys, io; from automodel_onboard.commands.cli import main; "
    "code = main(sys.argv[1:], out=io.StringIO()); "
    "print('torch' in sys.modules); sys.exit(code)"
)


def _time(args: list[str]) -> tuple[float, bool]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stdout.strip().endswith("True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, default=list(DEFAULT_CONFIGS))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| config | without inventory (s) | torch imported | with inventory (s) | torch imported |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        row = [config.name]
        for extra in (["--no-inventory"], []):
            times, imported = [], False
            for _ in range(args.runs):
                seconds, imported = _time(["classify", str(config), *extra])
                times.append(seconds)
            row += [f"{statistics.median(times):.2f}", "yes" if imported else "no"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
