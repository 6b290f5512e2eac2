"""The benchmarks: their quick run end to end (every section, the real models, the plot), the measuring helpers, and
the README's figures against the recorded run. No wall-clock figure is asserted here."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import onboarding, report, scaling, speed
from benchmarks.stats import Ratio, Sample, rounds

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "benchmarks" / "results"
MIB = 2**20


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200
    )


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    result = _run("--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((out / "cpu.json").read_text())
    assert result.stdout.strip() == (out / "cpu.md").read_text().strip()
    return results, out


def _sample_ok(sample: dict, runs: int) -> None:
    assert len(sample["runs"]) == runs
    assert sample["min"] <= sample["median"] <= sample["max"]
    assert sample["min"] > 0


def test_the_quick_run_measures_every_command_cold_and_warm(quick):
    results, _ = quick
    assert set(results) == {"machine", "settings", "onboarding", "suites", "speed", "scaling"}
    assert results["settings"] == {"device": "cpu", "runs": 1, "suite_runs": 1, "speed_runs": 2, "quick": True}
    tasks = {t.name for t in onboarding.TASKS if not t.verifies}
    assert {r["task"] for r in results["onboarding"]} == tasks
    for row in results["onboarding"]:
        _sample_ok(row["cold"], 1)
        _sample_ok(row["warm"], 1)
    assert set(results["machine"]["versions"]) == {
        "automodel-onboard",
        "torch",
        "transformers",
        "nemo-automodel",
        "copier",
    }
    assert results["machine"]["versions"]["nemo-automodel"] == "0.7.0"


def test_the_quick_run_times_a_generated_suite_by_its_parts(quick):
    results, _ = quick
    (suite,) = results["suites"]
    assert (suite["kind"], suite["name"], suite["tests"], suite["outcomes"]) == (
        "dense",
        "qwen3_onboarded",
        2,
        {"passed": 2},
    )
    _sample_ok(suite["wall"], 1)
    assert set(suite["parts"]) == {"NeMo AutoModel's recipe on the CPU", "steps on two processes", "the other tests"}
    assert suite["parts"]["NeMo AutoModel's recipe on the CPU"] == suite["parts"]["steps on two processes"] == 0
    assert 0 < suite["parts"]["the other tests"] <= suite["wall"]["median"]


def test_the_three_implementations_hold_the_same_weights_and_compute_the_same(quick):
    results, _ = quick
    assert [r["family"] for r in results["speed"]] == [f.label for f in speed.CPU.families]
    for row, fam in zip(results["speed"], speed.CPU.families, strict=True):
        assert (row["device"], row["dtype"]) == ("cpu", "float32")
        cpu_backends = {"linear": "torch", "attn": "sdpa", "rms_norm": "torch", "rope_fusion": False}
        assert row["backend"] == {**cpu_backends, "experts": fam.experts or "torch", "dispatcher": "torch"}
        assert set(row["parameter_bytes"]) == set(speed.IMPLEMENTATIONS)
        # The generated model takes exactly the reference's parameter memory: the tied embedding is stored once.
        assert len(set(row["parameter_bytes"].values())) == 1, row["parameter_bytes"]
        assert row["parameter_bytes"]["transformers"] == 4 * row["parameters"]
        assert max(row["max_logit_diff"].values()) <= 1e-5, row["max_logit_diff"]
        losses = row["losses"]
        assert losses["generated"] == pytest.approx(losses["transformers"], abs=1e-5)
        assert losses["nemo"] == pytest.approx(losses["transformers"], abs=1e-5)
        assert min(row["peak_step_bytes"].values()) > 0
        for name in speed.IMPLEMENTATIONS:
            _sample_ok(row["seconds"][name], 2)
        for other, ratio in row["ratio_generated_to"].items():
            runs = zip(row["seconds"]["generated"]["runs"], row["seconds"][other]["runs"], strict=True)
            per_round = [a / b for a, b in runs]
            assert ratio == pytest.approx({"median": sum(per_round) / 2, "min": min(per_round), "max": max(per_round)})


def test_the_quick_run_grows_the_config_and_writes_the_summary_and_the_plot(quick):
    results, out = quick
    assert [(p["kind"], p["field"], p["value"], p["suite"]) for p in results["scaling"]] == [
        ("dense", "num_hidden_layers", 2, None),
        ("dense", "num_hidden_layers", 28, None),
    ]
    assert (out / "cpu.md").read_text() == report.markdown(results)
    assert _png_size(out / "speed-cpu.png") == (700, 400)


def test_an_unknown_section_is_refused():
    result = _run("--sections", "speed,warp")
    assert result.returncode == 2
    assert "unknown sections ['warp']" in result.stderr


def test_without_matplotlib_the_speed_section_is_refused_before_anything_runs(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from benchmarks.__main__ import main; "
        f"main(['--sections', 'speed', '--out', {str(tmp_path / 'out')!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    _refused_before_anything_ran(result, "draws its plot with matplotlib: pip install -e '.[bench]'", tmp_path / "out")


def _refused_before_anything_ran(result: subprocess.CompletedProcess, message: str, out: Path) -> None:
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_without_cuda_the_cuda_device_is_refused_before_anything_runs(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, on any machine
    argv = [sys.executable, "-m", "benchmarks", "--device", "cuda", "--out", str(tmp_path / "out")]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    message = "--device cuda needs a CUDA GPU that torch can use, and this machine has none"
    _refused_before_anything_ran(result, message, tmp_path / "out")


def test_on_cuda_the_families_run_with_nemos_defaults_and_the_report_names_the_backends():
    assert speed.CUDA.backend == {} and speed.CUDA.dtype == "bfloat16"
    assert [f.label for f in speed.CUDA.families] == ["llama", "qwen3", "qwen3_moe"]
    rows = [
        {"dtype": "bfloat16", "device": "cuda", "backend": {"linear": "te", "experts": experts, "rope_fusion": True}}
        for experts in ("torch", "torch_mm")
    ]
    assert report.backends(rows) == [
        "bfloat16 on the GPU; NeMo AutoModel's backends: linear te, rope_fusion True.",
        "",
    ]


def test_peak_step_bytes_is_the_most_held_at_once():
    def step():
        a = torch.ones(MIB // 4)  # 1 MiB of float32
        b = torch.ones(MIB // 2)
        del a
        c = torch.ones(MIB // 4)
        return b, c

    assert speed.peak_step_bytes(step) == 3 * MIB


def test_parameter_bytes_count_a_tied_weight_once():
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 4)
    model.head = torch.nn.Linear(4, 10, bias=False)
    assert speed.parameter_bytes(model) == 2 * 40 * 4
    model.head.weight = model.embed.weight
    assert speed.parameter_bytes(model) == 40 * 4


def test_ratios_are_taken_round_by_round_in_rotated_order():
    a, b = Sample((1.0, 3.0, 2.0)), Sample((2.0, 2.0, 2.0))
    ratio = Ratio.of(a, b)
    assert ratio.values == (0.5, 1.5, 1.0)
    assert (ratio.median, ratio.spread) == (1.0, (0.5, 1.5))
    assert ratio.at_most(0.5) and not ratio.at_most(0.49)
    with pytest.raises(ValueError, match="same rounds"):
        Ratio.of(a, Sample((1.0,)))
    assert rounds(3, ("x", "y", "z")) == [["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"]]


def test_a_grown_config_keeps_its_per_layer_fields_consistent():
    (dense, moe) = scaling.GROWTHS
    assert dense.config(256)["num_hidden_layers"] == dense.config(256)["max_window_layers"] == 256
    assert moe.config(256)["num_experts"] == 256
    assert (
        moe.config(256)["num_hidden_layers"]
        == json.loads((scaling.FIXTURES / moe.fixture).read_text())["num_hidden_layers"]
    )


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- benchmarks -->\n(.*?)<!-- /benchmarks -->", text, re.S)
    assert match, "the README has no benchmarks block"
    return match.group(1)


def test_the_readme_shows_the_recorded_run():
    recorded = json.loads((RECORDED / "cpu.json").read_text())
    assert _readme_block() == report.markdown(recorded)
    assert (RECORDED / "cpu.md").read_text() == report.markdown(recorded)
    assert "benchmarks/results/speed-cpu.png" in (ROOT / "README.md").read_text()
    assert _png_size(RECORDED / "speed-cpu.png") == (700, 400)
    assert recorded["settings"]["quick"] is False
    assert {r["family"] for r in recorded["speed"]} == {f.label for f in speed.CPU.families}
