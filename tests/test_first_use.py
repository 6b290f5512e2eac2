"""What a newcomer meets: the report of `new`, its progress, `--version`, the set-up script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, load_config, registry_excerpt

from automodel_onboard.destination.checkout import REGISTRY

QWEN3 = ROOT / "examples" / "configs" / "Qwen3-0.6B.json"
CLI = [sys.executable, "-m", "automodel_onboard.commands.cli"]


@pytest.mark.usefixtures("without_long_runs")
def test_the_report_of_a_verified_onboarding(checkout, tmp_path):
    config = tmp_path / "toy.json"
    config.write_text(json.dumps({**json.loads(QWEN3.read_text()), "architectures": ["ToyForCausalLM"]}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [*CLI, "new", str(config), "--dest", str(checkout), "--name", "toy"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out, err = done.stdout, done.stderr
    # Progress: each generated test's verdict as it finishes, on stderr.
    assert re.search(r"\] +passed +test_forward_shapes", err), err
    assert "Failed to load" not in err and "Traceback" not in err
    # The registry excerpt is the entry as it stands in registry.py, printed once.
    excerpt = registry_excerpt(out)
    assert '"ToyForCausalLM",' in excerpt and excerpt.rstrip().endswith("),")
    assert excerpt in (checkout / REGISTRY).read_text()
    assert out.count('("nemo_automodel.components.models.toy.model", "ToyForCausalLM")') == 1
    assert "template; the spec says" not in out  # said only when --kind overrides the verdict
    answers = (checkout / "nemo_automodel/components/models/toy/.copier-answers.yml").read_text()
    assert "replaces:" not in answers and "revision:" not in answers  # questions that did not apply
    # The next step is a command to run, and the whole test output is in the log the report names.
    (next_line,) = [line for line in out.splitlines() if line.startswith("  next: ")]
    assert next_line.startswith(f"  next: cd {checkout} && automodel examples/llm_finetune/toy/toy_hellaswag.yaml")
    log = Path(re.search(r"whole output: (\S+)", out).group(1))
    assert log.is_relative_to(tmp_path / "cache") and "test_forward_shapes PASSED" in log.read_text()


def test_version_names_the_tool_and_the_templates():
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert re.fullmatch(r"automodel-onboard 0\.1\.0 \(templates \S+\)\n", done.stdout), done.stdout
    assert head.stdout.strip()[:7] in done.stdout


def test_setup_takes_a_cpu_build_of_torch_and_says_what_it_installs():
    """The set-up script: CPU torch by default (the local index, else PyTorch's CPU index), CUDA on request."""
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert "AUTOMODEL_ONBOARD_TORCH:-cpu" in script and "download.pytorch.org/whl/cpu" in script
    assert "about 2.6 GB on disk" in script and "about 2.6 GB on disk" in (ROOT / "README.md").read_text()
    import torch

    assert torch.__version__ == "2.13.0+cpu"  # what the script installed for this suite


def _setup_with(tmp_path: Path, offered: str, **env: str) -> list[str]:
    """Runs setup.sh against a stand-in interpreter that records each pip command (nothing is installed).

    ``offered``: the torch build the package index's dry run reports.
    """
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    python = venv / "bin" / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = "-c" ]; then exit 1; fi\n'  # torch is not installed yet
        f'echo "$*" >> {log}\n'
        'case "$*" in *--dry-run*) echo \'{"install": [{"metadata": {"version": "' + offered + "\"}}]}' ;; esac\n"
    )
    python.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMODEL_ONBOARD_")}
    done = subprocess.run(
        [str(ROOT / "scripts" / "setup.sh")],
        capture_output=True,
        text=True,
        env={**clean, "AUTOMODEL_ONBOARD_VENV": str(venv), **env},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(venv)
    return [line for line in log.read_text().splitlines() if "--dry-run" not in line and "--upgrade pip" not in line]


def test_setup_takes_torch_from_the_cpu_index_when_the_package_index_offers_a_cuda_build(tmp_path):
    assert _setup_with(tmp_path, "2.13.0") == [
        "-m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
        "-m pip install -q -e .[test,bench]",
    ]


def test_setup_keeps_the_package_index_when_it_offers_the_cpu_build(tmp_path):
    assert _setup_with(tmp_path, "2.13.0+cpu") == [
        "-m pip install -q torch==2.13.0",
        "-m pip install -q -e .[test,bench]",
    ]


def test_setup_overrides_cuda_and_another_cpu_index(tmp_path):
    cuda = _setup_with(tmp_path / "cuda", "2.13.0", AUTOMODEL_ONBOARD_TORCH="cuda")
    assert cuda == ["-m pip install -q torch==2.13.0", "-m pip install -q -e .[test,bench]"]
    mirror = _setup_with(tmp_path / "mirror", "2.13.0", AUTOMODEL_ONBOARD_TORCH_INDEX="https://mirror.example/cpu")
    assert mirror[0] == "-m pip install -q torch==2.13.0 --index-url https://mirror.example/cpu"


def test_the_demo_script_onboards_the_bundled_example_and_passes():
    """The README's first quick-start command, as a newcomer runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "GIT_"))}
    done = subprocess.run([str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "onboarded Qwen3ForCausalLM as nemo_automodel.components.models.qwen3_onboarded" in done.stdout
    assert re.search(r"generated tests: PASSED \(\d+ passed, 2 skipped\)", done.stdout), done.stdout[-2000:]
    assert "max logit difference vs the transformers reference: 0.000e+00" in done.stdout
    assert (ROOT / "build" / "demo" / "nemo_automodel" / "components" / "models" / "qwen3_onboarded").is_dir()


QUIRK_CONFIGURATION = """
from transformers import LlamaConfig


class QuirkConfig(LlamaConfig):
    model_type = "quirk"
"""
# A habit of the code that neither the config nor the parameters show: every MLP runs tanh, whatever hidden_act says.
QUIRK_MODELING = """
import torch
from transformers import LlamaForCausalLM

from .configuration_quirk import QuirkConfig


class QuirkForCausalLM(LlamaForCausalLM):
    config_class = QuirkConfig

    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            layer.mlp.act_fn = torch.nn.Tanh()
"""


@pytest.mark.usefixtures("without_long_runs")
def test_failing_generated_tests_exit_1_and_name_the_divergence(checkout, tmp_path):
    """What running the reference does not measure is left to the parity tests: they fail, and `new` says where."""
    folder = tmp_path / "quirk"
    folder.mkdir()
    (folder / "configuration_quirk.py").write_text(QUIRK_CONFIGURATION.lstrip())
    (folder / "modeling_quirk.py").write_text(QUIRK_MODELING.lstrip())
    config = {
        **load_config("meta-llama__Llama-3.2-3B.json"),
        "model_type": "quirk",
        "architectures": ["QuirkForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_quirk.QuirkConfig",
            "AutoModelForCausalLM": "modeling_quirk.QuirkForCausalLM",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
    }
    done = subprocess.run(
        [*CLI, "new", str(folder), "--dest", str(checkout), "--name", "quirk_gen", "--trust-remote-code"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "generated tests: FAILED" in done.stdout
    # The embeddings agree; the first decoder layer (its MLP) does not.
    assert "first diverging layer: index 1 (0: embeddings" in done.stdout
    assert f"next: cd {checkout} && python -m pytest tests/unit_tests/models/quirk_gen -x" in done.stdout
