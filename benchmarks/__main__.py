"""Run the benchmarks: ``python -m benchmarks`` from the repository root, in the project's environment.

Sections: onboarding (each command cold and warm), suites (the generated test suite of a dense, a MoE and a VLM
model), speed (a training step of generated models against NeMo AutoModel's own and the transformers reference, with
their parameter and peak memory), scaling (onboarding and suite time as a config grows). All run by default on the
CPU; ``--device cuda`` runs the speed section on a CUDA GPU. Prints the tables and writes ``<out>/<device>.json``,
``<out>/<device>.md`` and ``<out>/speed-<device>.png``. ``--quick`` runs every section at a size that takes a minute
or two (the project's tests run it), not for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import machine, onboarding, plot, report, scaling, speed, suites

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("onboarding", "suites", "speed", "scaling")
RESULTS = ROOT / "benchmarks" / "results"


# The models the suites and speed sections onboard into one scratch checkout: NeMo AutoModel's own families (speed)
# and a VLM (suites): (fixture, module, flags of `new`).
VLM = ("mistral-community__pixtral-12b.json", "pixtral_onboarded", ())
FAMILIES = tuple(f for device in speed.DEVICES.values() for f in device.families)
MODELS = (*dict.fromkeys((f.fixture, f.module, f.onboard_flags) for f in FAMILIES), VLM)
SUITES = (("dense", "qwen3_onboarded"), ("moe", "qwen3_moe_onboarded"), ("vlm", "pixtral_onboarded"))
# The quick mode runs a dense suite's first tests only.
QUICK_SUITE = "forward_shapes or checkpoint_round_trip"


def onboarded_checkout(work: Path, models: Sequence[tuple[str, str, tuple[str, ...]]]) -> Path:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    checkout = work / "checkout"
    onboarding.check(onboarding.cli(["sandbox", str(checkout)], env), 0)
    for config, name, flags in models:
        argv = ["new", str(scaling.FIXTURES / config), "--dest", str(checkout), "--name", name, "--no-verify", *flags]
        onboarding.check(onboarding.cli(argv, env), 0)
    return checkout


def speed_section(checkout: Path, device: str, runs: int, quick: bool, work: Path) -> list[dict[str, Any]]:
    out = work / "speed.json"
    argv = [sys.executable, "-m", "benchmarks.speed", "--checkout", str(checkout), "--device", device]
    argv += ["--runs", str(runs)]
    argv += ["--out", str(out), *(["--quick"] if quick else [])]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the speed worker failed:\n{result.stderr[-4000:]}")
    return json.loads(out.read_text())


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = set(args.sections.split(","))
    results: dict[str, Any] = {
        "machine": machine.describe(args.device),
        "settings": {
            "device": args.device,
            "runs": args.runs,
            "suite_runs": args.suite_runs,
            "speed_runs": args.speed_runs,
            "quick": args.quick,
        },
    }
    if "onboarding" in chosen:
        print("onboarding ...", file=sys.stderr)
        tasks = onboarding.measure(args.runs, args.suite_runs, with_tests=not args.quick)
        results["onboarding"] = [t.to_json() for t in tasks]
    with tempfile.TemporaryDirectory() as tmp:
        if chosen & {"suites", "speed"}:
            picked = SUITES[:1] if args.quick else SUITES
            needed = {name for _, name in picked} | {f.module for f in speed.DEVICES[args.device].families}
            checkout = onboarded_checkout(Path(tmp), [m for m in MODELS if m[1] in needed])
        if "speed" in chosen:
            print("speed ...", file=sys.stderr)
            results["speed"] = speed_section(checkout, args.device, args.speed_runs, args.quick, Path(tmp))
        if "suites" in chosen:
            print("suites ...", file=sys.stderr)
            select = QUICK_SUITE if args.quick else None
            results["suites"] = [
                suites.measure(checkout, kind, name, args.suite_runs, select).to_json() for kind, name in picked
            ]
    if "scaling" in chosen:
        print("scaling ...", file=sys.stderr)
        growths = scaling.QUICK_GROWTHS if args.quick else scaling.GROWTHS
        points = scaling.measure(growths, args.runs, 0 if args.quick else args.suite_runs)
        results["scaling"] = [p.to_json() for p in points]
    return results


def write(results: dict[str, Any], out: Path) -> str:
    device = results["settings"]["device"]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report.markdown(results)
    (out / f"{device}.md").write_text(text)
    if results.get("speed"):
        plot.speed(results["speed"], results["machine"], out / f"speed-{device}.png")
    return text


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", help=f"comma-separated, of {', '.join(SECTIONS)} (default: all on the CPU, speed on CUDA)"
    )
    parser.add_argument(
        "--device", choices=sorted(speed.DEVICES), default="cpu", help="where the speed section's models run"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each onboarding command, cold and warm")
    parser.add_argument("--suite-runs", type=int, default=2, help="runs of anything that runs a generated suite")
    parser.add_argument("--speed-runs", type=int, default=9, help="interleaved rounds of training steps")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one or two runs: checks that the benchmarks work"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.sections = args.sections or ("speed" if args.device == "cuda" else ",".join(SECTIONS))
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if "speed" in args.sections.split(","):
        try:  # checked first: the plot is drawn last, after the whole run
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("the speed section draws its plot with matplotlib: pip install -e '.[bench]'")
    if args.device == "cuda" and not _cuda_available():
        parser.error("--device cuda needs a CUDA GPU that torch can use, and this machine has none")
    if args.quick:
        args.runs, args.suite_runs, args.speed_runs = 1, 1, 2
    print(write(run(args), args.out))


if __name__ == "__main__":
    main()
