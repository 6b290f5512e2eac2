"""``new --trust-remote-code``: a model whose only reference is the code in its local checkpoint folder.

The folders are written here: a Llama-shaped model under its own model_type (the standard decoder layout, so the
dense template maps it and its generated tests run against the folder's code), and an InternLM2-shaped one (fused
``wqkv``, ``w1``/``w2``/``w3``), which the dense template cannot map. Every module leaves a marker when imported,
so the tests see exactly when the folder's code runs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import load_config, snapshot

from automodel_onboard.commands import new as onboard
from automodel_onboard.commands.cli import main
from automodel_onboard.errors import OnboardError
from automodel_onboard.model.source import load_source
from automodel_onboard.model.spec import build_spec
from automodel_onboard.render import copier_ext

RUFF_RULES = ["--line-length", "120", "--select", "E,F,W,I,B,UP"]

TOY_CONFIGURATION = """
from pathlib import Path

from transformers import LlamaConfig

Path({marker!r}).write_text("ran")


class ToyLlamaConfig(LlamaConfig):
    model_type = "toy_llama"
"""

TOY_MODELING = """
from pathlib import Path

from transformers import LlamaForCausalLM, LlamaModel

from .configuration_toy import ToyLlamaConfig

Path({marker!r}).write_text("ran")


class ToyLlamaModel(LlamaModel):
    config_class = ToyLlamaConfig


class ToyLlamaForCausalLM(LlamaForCausalLM):
    config_class = ToyLlamaConfig
"""

# InternLM2's checkpoint names: fused q/k/v, w1/w2/w3 MLP, its own norm and embedding names.
INTERNLM2_CONFIGURATION = """
from transformers import PretrainedConfig


class InternLM2Config(PretrainedConfig):
    model_type = "internlm2"

    def __init__(self, vocab_size=103168, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=None, rms_norm_eps=1e-6, bias=True, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.rms_norm_eps = rms_norm_eps
        self.bias = bias
        super().__init__(**kwargs)
"""

INTERNLM2_MODELING = """
import torch.nn as nn
from transformers import PreTrainedModel

from .configuration_internlm2 import InternLM2Config


class InternLM2Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        head_dim = hidden // heads
        self.attention = nn.Module()
        self.attention.wqkv = nn.Linear(hidden, (heads + 2 * kv) * head_dim, bias=config.bias)
        self.attention.wo = nn.Linear(heads * head_dim, hidden, bias=config.bias)
        self.feed_forward = nn.Module()
        self.feed_forward.w1 = nn.Linear(hidden, config.intermediate_size, bias=False)
        self.feed_forward.w3 = nn.Linear(hidden, config.intermediate_size, bias=False)
        self.feed_forward.w2 = nn.Linear(config.intermediate_size, hidden, bias=False)
        self.attention_norm = nn.RMSNorm(hidden, eps=config.rms_norm_eps)
        self.ffn_norm = nn.RMSNorm(hidden, eps=config.rms_norm_eps)


class InternLM2ForCausalLM(PreTrainedModel):
    config_class = InternLM2Config

    def __init__(self, config):
        super().__init__(config)
        self.model = nn.Module()
        self.model.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.model.layers = nn.ModuleList(InternLM2Layer(config) for _ in range(config.num_hidden_layers))
        self.model.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
"""


@pytest.fixture(autouse=True)
def modules_cache(hf_modules_cache):
    return hf_modules_cache


def _folder(root: Path, config: dict, modules: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in modules.items():
        (root / f"{name}.py").write_text(text.lstrip())
    (root / "config.json").write_text(json.dumps(config, indent=2))
    return root


def toy_folder(root: Path) -> tuple[Path, Path]:
    """A checkpoint folder (``root/toy``) whose model is Llama 3.2 under model_type toy_llama, and its import marker."""
    marker = root / "imported.marker"
    config = {
        **load_config("meta-llama__Llama-3.2-3B.json"),
        "model_type": "toy_llama",
        "architectures": ["ToyLlamaForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_toy.ToyLlamaConfig",
            "AutoModelForCausalLM": "modeling_toy.ToyLlamaForCausalLM",
        },
    }
    modules = {
        "configuration_toy": TOY_CONFIGURATION.format(marker=str(marker)),
        "modeling_toy": TOY_MODELING.format(marker=str(marker)),
    }
    return _folder(root / "toy", config, modules), marker


@pytest.fixture
def toy(tmp_path) -> tuple[Path, Path]:
    return toy_folder(tmp_path)


def test_without_the_flag_the_code_is_refused_unrun(checkout, toy):
    folder, marker = toy
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(onboard.Request(model=str(folder), dest=checkout))
    assert info.value.code == "remote-code"
    assert "--trust-remote-code" in info.value.fix
    assert snapshot(checkout) == before
    assert not marker.exists()


def test_the_flag_needs_the_checkpoint_folder(checkout, toy):
    folder, marker = toy
    out, err = io.StringIO(), io.StringIO()
    argv = ["new", str(folder / "config.json"), "--dest", str(checkout), "--trust-remote-code"]
    assert main(argv, out=out, err_out=err) == 2
    assert "--trust-remote-code needs the checkpoint folder" in err.getvalue()
    assert "never downloads code" in err.getvalue()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("auto_map", "says"),
    [
        ({"AutoConfig": "configuration_toy.ToyLlamaConfig"}, "no AutoModelForCausalLM entry"),
        (
            {"AutoConfig": "org/repo--configuration_toy.ToyLlamaConfig", "AutoModelForCausalLM": "modeling_toy.X"},
            "points at code in another repository",
        ),
        ({"AutoConfig": "configuration_toy.ToyLlamaConfig", "AutoModelForCausalLM": "elsewhere.X"}, "elsewhere.py"),
    ],
)
def test_auto_map_must_name_modules_in_the_folder(toy, auto_map, says):
    folder, marker = toy
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    with pytest.raises(OnboardError, match=says) as info:
        build_spec(load_source(str(folder)), trust_remote_code=True)
    assert info.value.code == "remote-code-needs-folder"
    assert not marker.exists()


def test_fused_remote_layout_is_refused_naming_the_tensors(checkout, tmp_path):
    modules = {"configuration_internlm2": INTERNLM2_CONFIGURATION, "modeling_internlm2": INTERNLM2_MODELING}
    folder = _folder(tmp_path / "internlm2", load_config("internlm__internlm2_5-7b.json"), modules)
    spec = build_spec(load_source(str(folder)), trust_remote_code=True).to_dict()
    assert spec["remote_code"]["model_class"] == "modeling_internlm2.InternLM2ForCausalLM"
    assert spec["params"]["total"] > 7e9
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(onboard.Request(model=str(folder), dest=checkout, trust_remote_code=True))
    assert info.value.code == "unsupported-features"
    for name in (
        "model.layers.{layer}.attention.wqkv.weight",
        "model.layers.{layer}.feed_forward.w1.weight",
        "model.layers.{layer}.feed_forward.w2.weight",
        "model.layers.{layer}.feed_forward.w3.weight",
        "model.tok_embeddings.weight",
        "output.weight",
    ):
        assert f"checkpoint tensor {name} has no counterpart" in info.value.what
    assert snapshot(checkout) == before


def test_trusted_folder_is_onboarded_and_its_tests_run_the_folders_code(checkout, toy):
    folder, marker = toy
    report = onboard.new(onboard.Request(model=str(folder), dest=checkout, trust_remote_code=True))
    assert marker.exists()  # the reference really is the folder's code
    spec = report.spec
    assert spec["remote_code"]["folder"] == str(folder.resolve())
    assert spec["layout"]["gaps"] == []
    assert report.verification is not None
    outcomes = {v.name: v.outcome for v in report.verification.verdicts}
    assert report.verification.passed, report.verification.output[-6000:]
    assert outcomes["test_local_config_reads_like_the_reference_config"] == "passed"
    assert outcomes["test_registry_registers_the_local_config"] == "passed"
    assert report.verification.max_logit_diff is not None and report.verification.max_logit_diff <= 1e-5

    package = checkout / "nemo_automodel" / "components" / "models" / "toy_llama"
    assert Path("nemo_automodel/components/models/toy_llama/config.py") in report.rendered.files
    assert '"toy_llama": ("nemo_automodel.components.models.toy_llama.config", "ToyLlamaConfig")' in "\n".join(
        report.rendered.registry_lines
    )
    model_py = (package / "model.py").read_text()
    assert "from nemo_automodel.components.models.toy_llama.config import ToyLlamaConfig" in model_py
    assert "from transformers import ToyLlamaConfig" not in model_py
    config_py = (package / "config.py").read_text()
    assert 'model_type = "toy_llama"' in config_py and "default_theta = 10000.0" in config_py
    test_py = next((checkout / "tests" / "unit_tests" / "models" / "toy_llama").glob("test_*_model.py")).read_text()
    assert f"REMOTE_CODE_FOLDER = {str(folder.resolve())!r}" in test_py.replace('"', "'")

    # `copier update` rebuilds the spec from the recorded answers: the flag is among them, so the layout is the same.
    answers = yaml.safe_load((package / ".copier-answers.yml").read_text())
    assert answers["trust_remote_code"] is True and "revision" not in answers  # a local folder has no revision
    again = copier_ext.spec_dict(answers["model"], "", answers["module_name"], True)
    assert again["layout"] == spec["layout"]

    targets = [str(package), str(checkout / "tests" / "unit_tests" / "models" / "toy_llama")]
    ruff = [sys.executable, "-m", "ruff"]
    check = subprocess.run([*ruff, "check", *RUFF_RULES, *targets], capture_output=True, text=True, cwd=checkout)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [*ruff, "format", "--check", "--line-length", "120", *targets], capture_output=True, text=True, cwd=checkout
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_local_config_fields_are_decided_from_the_remote_defaults():
    from automodel_onboard.layout.common import local_config

    defaults = {
        "hidden_size": 64,
        "eos_token_id": [1, 2],
        "pad_token_id": None,
        "rope_theta": 500000,
        "rope_scaling": None,
        "auto_map": {"AutoConfig": "configuration_toy.ToyConfig"},
        "field": 2,
        "not-a-name": 1,
    }
    remote = {"config_class": "configuration_toy.ToyConfig", "config_defaults": defaults}
    config, gaps = local_config("Toy", "toy", remote)
    fields = {f.name: f for f in config.fields}
    assert list(fields) == ["eos_token_id", "hidden_size", "pad_token_id", "rope_parameters"]
    assert (fields["eos_token_id"].annotation, fields["eos_token_id"].factory) == ("list", True)
    assert (fields["pad_token_id"].annotation, fields["rope_parameters"].default) == ("Any", None)
    assert (config.class_name, config.model_type, config.default_theta) == ("ToyConfig", "toy", 500000.0)
    assert [i.module for i in config.imports] == ["dataclasses", "typing"]
    assert gaps == (
        "config key 'field' cannot be a field of the local config class",
        "config key 'not-a-name' cannot be a field of the local config class",
    )
