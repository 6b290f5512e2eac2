"""The registry edit on the real NeMo AutoModel 0.7.0 registry.py, and the Copier task end to end in a sandbox."""

from __future__ import annotations

import ast
import difflib
import json
import keyword
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automodel_onboard.destination import registry_patch, registry_task
from automodel_onboard.destination.registry_patch import patch_registry, read_registry, unpatch_registry
from automodel_onboard.destination.sandbox import installed_package_dir, make_sandbox
from automodel_onboard.errors import OnboardError

REAL_REGISTRY = installed_package_dir() / "_transformers" / "registry.py"
TOY_MODULE = "nemo_automodel.components.models.toy_dense.model"
TOY_ARCH = "ToyDenseForCausalLM"
TOY_CONFIG = ("toy_dense", "nemo_automodel.components.models.toy_dense.config", "ToyDenseConfig")
TOY_ENTRY = f'''\
        (
            "{TOY_ARCH}",
            ("{TOY_MODULE}", "{TOY_ARCH}"),
        ),
'''
TOY_CONFIG_LINE = f'    "{TOY_CONFIG[0]}": ("{TOY_CONFIG[1]}", "{TOY_CONFIG[2]}"),\n'
DEEPSEEK_V3 = ("nemo_automodel.components.models.deepseek_v3.model", "DeepseekV3ForCausalLM")


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.py"
    shutil.copyfile(REAL_REGISTRY, path)
    return path


def changes(before: str, after: str) -> list[str]:
    """The +/- lines of a unified diff, without its headers and hunk markers."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), n=0, lineterm="")
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def patch_toy(path: Path, **kwargs) -> registry_patch.PatchResult:
    return patch_registry(path, architecture=TOY_ARCH, module=TOY_MODULE, class_name=TOY_ARCH, **kwargs)


def literal_arch_mapping(source: str) -> dict[str, tuple[str, str]]:
    """MODEL_ARCH_MAPPING evaluated independently of registry_patch, with the standard library's ast."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MODEL_ARCH_MAPPING":
            return {key: value[:2] for key, value in ast.literal_eval(node.value.args[0])}
    raise AssertionError("MODEL_ARCH_MAPPING not found")


def test_read_registry_matches_an_independent_evaluation():
    source = REAL_REGISTRY.read_text()
    registry = read_registry(REAL_REGISTRY)
    assert dict(registry.arch_mapping) == literal_arch_mapping(source)
    assert registry.arch_mapping["DeepseekV3ForCausalLM"] == DEEPSEEK_V3
    assert registry.config_registrations["bagel"] == (
        "nemo_automodel.components.models.bagel.configuration",
        "BagelConfig",
    )


@pytest.mark.parametrize("source", ["X = 1\n", "MODEL_ARCH_MAPPING = OrderedDict(\n    [\n"])
def test_unreadable_registry_is_named(tmp_path: Path, source: str):
    path = tmp_path / "registry.py"
    path.write_text(source)
    with pytest.raises(OnboardError) as caught:
        read_registry(path)
    assert caught.value.code == "registry-unreadable"
    assert str(path) in caught.value.message


def test_patch_appends_one_entry_like_its_neighbours(registry: Path):
    before = registry.read_text()
    result = patch_toy(registry)
    after = registry.read_text()

    assert result.changed and result.replaced is None
    assert result.added_lines == tuple(TOY_ENTRY.splitlines())
    assert all(line.startswith("+") for line in changes(before, after))
    # Appended as the last entry of the list, right before its closing bracket.
    end_of_list = "    ]\n)\n\n\n# Custom model_type"
    assert after == before.replace(end_of_list, TOY_ENTRY + end_of_list, 1)
    ast.parse(after)
    mapping = read_registry(registry).arch_mapping
    assert list(mapping)[-1] == TOY_ARCH and mapping[TOY_ARCH] == (TOY_MODULE, TOY_ARCH)


def test_long_target_is_split_one_item_per_line(registry: Path):
    module = "nemo_automodel.components.models.an_unusually_long_family_name_for_layout.modeling_family"
    before = registry.read_text()
    result = patch_registry(registry, architecture="LongFamilyForCausalLM", module=module, class_name="LongFamilyLM")
    assert result.added_lines == (
        "        (",
        '            "LongFamilyForCausalLM",',
        "            (",
        f'                "{module}",',
        '                "LongFamilyLM",',
        "            ),",
        "        ),",
    )
    assert all(line.startswith("+") for line in changes(before, registry.read_text()))


def test_config_registration_is_added_to_the_config_table(registry: Path):
    before = registry.read_text()
    result = patch_toy(registry, config_registration=TOY_CONFIG)
    after = registry.read_text()

    assert result.added_lines == tuple((TOY_ENTRY + TOY_CONFIG_LINE).splitlines())
    assert all(line.startswith("+") for line in changes(before, after))
    last_config = (
        '    "step3p7": ("nemo_automodel.components.models.step3p7.configuration_step3p7", "Step3p7Config"),\n'
    )
    assert last_config + TOY_CONFIG_LINE + "}\n" in after
    assert read_registry(registry).config_registrations[TOY_CONFIG[0]] == TOY_CONFIG[1:]


def test_second_patch_changes_nothing_and_does_not_rewrite(registry: Path):
    patch_toy(registry, config_registration=TOY_CONFIG)
    os.utime(registry, ns=(1_000_000_000, 1_000_000_000))  # an old mtime: any rewrite would move it
    data = registry.read_bytes()

    result = patch_toy(registry, config_registration=TOY_CONFIG)

    assert result == registry_patch.PatchResult(changed=False)
    assert registry.read_bytes() == data
    assert registry.stat().st_mtime_ns == 1_000_000_000


def test_conflicting_architecture_is_refused_with_the_existing_target(registry: Path):
    data = registry.read_bytes()
    with pytest.raises(OnboardError) as caught:
        patch_registry(registry, architecture="DeepseekV3ForCausalLM", module=TOY_MODULE, class_name=TOY_ARCH)
    error = caught.value
    assert error.code == "registry-conflict"
    assert DEEPSEEK_V3[0] in error.message and DEEPSEEK_V3[1] in error.message
    assert "--replace" in error.fix and "--name" in error.fix
    assert registry.read_bytes() == data


def test_conflicting_model_type_is_refused_and_nothing_is_written(registry: Path):
    data = registry.read_bytes()
    with pytest.raises(OnboardError) as caught:
        patch_toy(registry, config_registration=("bagel", TOY_CONFIG[1], "ToyDenseConfig"))
    assert caught.value.code == "registry-conflict"
    assert "BagelConfig" in caught.value.message
    assert registry.read_bytes() == data  # the architecture entry was not written either


@pytest.mark.parametrize(
    ("architecture", "old_lines", "new_lines"),
    [
        (
            "DeepseekV3ForCausalLM",
            [f'            ("{DEEPSEEK_V3[0]}", "{DEEPSEEK_V3[1]}"),'],
            [f'            ("{TOY_MODULE}", "{TOY_ARCH}"),'],
        ),
        (  # tags are kept
            "DeepseekV4ForCausalLM",
            [
                '            ("nemo_automodel.components.models.deepseek_v4.model", "DeepseekV4ForCausalLM", '
                '{"hf_parallelizer"}),'
            ],
            [f'            ("{TOY_MODULE}", "{TOY_ARCH}", {{"hf_parallelizer"}}),'],
        ),
        (  # split over lines on purpose although it fits on one: stays split
            "BagelForUnifiedMultimodal",
            [
                '                "nemo_automodel.components.models.bagel.model",',
                '                "BagelForUnifiedMultimodal",',
            ],
            [f'                "{TOY_MODULE}",', f'                "{TOY_ARCH}",'],
        ),
    ],
)
def test_replace_repoints_the_entry_in_place(registry: Path, architecture, old_lines, new_lines):
    before = registry.read_text()
    keys_before = list(read_registry(registry).arch_mapping)
    previous = read_registry(registry).arch_mapping[architecture]

    result = patch_registry(registry, architecture=architecture, module=TOY_MODULE, class_name=TOY_ARCH, replace=True)

    assert result.changed and result.replaced == previous
    assert changes(before, registry.read_text()) == [f"-{line}" for line in old_lines] + [
        f"+{line}" for line in new_lines
    ]
    mapping = read_registry(registry).arch_mapping
    assert list(mapping) == keys_before
    assert mapping[architecture] == (TOY_MODULE, TOY_ARCH)

    unpatch_registry(registry, architecture=architecture, restore=result.replaced)
    assert registry.read_text() == before


def test_replace_repoints_a_config_registration(registry: Path):
    before = registry.read_text()
    old = read_registry(registry).config_registrations["bagel"]
    result = patch_toy(registry, config_registration=("bagel", TOY_CONFIG[1], "ToyDenseConfig"), replace=True)
    assert result.replaced_config == old
    assert read_registry(registry).config_registrations["bagel"] == (TOY_CONFIG[1], "ToyDenseConfig")
    assert [line for line in changes(before, registry.read_text()) if line.startswith("-")] == [
        '-    "bagel": ("nemo_automodel.components.models.bagel.configuration", "BagelConfig"),'
    ]


BAD_NAMES = [
    ("architecture", 'Toy"ForCausalLM'),
    ("architecture", "Toy\nForCausalLM"),
    ("architecture", "ToyForCausalLM\n"),
    ("architecture", "toyForCausalLM"),
    ("architecture", "None"),
    ("architecture", "../ToyForCausalLM"),
    ("architecture", ""),
    ("class_name", 'X"), ("os", "system'),
    ("class_name", "True"),
    ("module", "../etc/passwd"),
    ("module", "nemo_automodel..toy"),
    ("module", "nemo_automodel.components.models.class.model"),
    ("module", "Nemo_automodel.toy"),
    ("module", "nemo-automodel.toy"),
    ("module", 'nemo_automodel.toy"'),
    ("module", "nemo_automodel.toy\n"),
    ("model_type", "Toy"),
    ("model_type", "-toy"),
    ("model_type", 'toy"'),
    ("model_type", "toy\n"),
    ("model_type", "toy dense"),
]


@pytest.mark.parametrize(("field", "value"), BAD_NAMES)
def test_invalid_names_are_rejected_before_the_file_is_touched(registry: Path, field: str, value: str):
    data = registry.read_bytes()
    names = {"architecture": TOY_ARCH, "module": TOY_MODULE, "class_name": TOY_ARCH, "model_type": TOY_CONFIG[0]}
    names[field] = value
    with pytest.raises(OnboardError) as caught:
        patch_registry(
            registry,
            architecture=names["architecture"],
            module=names["module"],
            class_name=names["class_name"],
            config_registration=(names["model_type"], TOY_CONFIG[1], TOY_CONFIG[2]),
        )
    assert caught.value.code == "invalid-name"
    assert registry.read_bytes() == data
    assert sorted(p.name for p in registry.parent.iterdir()) == ["registry.py"]


def _disk_full(*_args, **_kwargs):
    raise OSError(28, "No space left on device")


def _reads_back_empty(_path):
    return registry_patch.Registry(arch_mapping={}, config_registrations={})


@pytest.mark.parametrize(
    ("owner", "name", "replacement", "code"),
    [
        (os, "replace", _disk_full, "registry-write-failed"),
        (registry_patch, "read_registry", _reads_back_empty, "registry-verify-failed"),  # the re-parse of the temp file
    ],
)
def test_a_failed_write_leaves_the_file_and_no_temp_file(registry, monkeypatch, owner, name, replacement, code):
    data = registry.read_bytes()
    monkeypatch.setattr(owner, name, replacement)
    with pytest.raises(OnboardError) as caught:
        patch_toy(registry, config_registration=TOY_CONFIG)
    assert caught.value.code == code
    assert registry.read_bytes() == data
    assert sorted(p.name for p in registry.parent.iterdir()) == ["registry.py"]


def test_file_mode_is_preserved(registry: Path):
    registry.chmod(0o640)
    patch_toy(registry)
    assert stat.S_IMODE(registry.stat().st_mode) == 0o640


def test_unpatch_restores_the_original_bytes(registry: Path):
    data = registry.read_bytes()
    patch_toy(registry, config_registration=TOY_CONFIG)
    result = unpatch_registry(registry, architecture=TOY_ARCH, config_model_type=TOY_CONFIG[0])
    assert result.changed
    assert registry.read_bytes() == data
    assert unpatch_registry(registry, architecture=TOY_ARCH).changed is False


def test_comment_on_the_last_line_stays_on_its_line(tmp_path: Path):
    path = tmp_path / "registry.py"
    source = textwrap.dedent(
        """\
        MODEL_ARCH_MAPPING = OrderedDict(
            [
                (
                    "AForCausalLM",
                    ("a.model", "AForCausalLM"),
                ),  # keep me here
            ]
        )
        _CUSTOM_CONFIG_REGISTRATIONS: Dict[str, Tuple[str, str]] = {}
        """
    )
    path.write_text(source)
    patch_toy(path, config_registration=TOY_CONFIG)
    after = path.read_text()
    assert "        ),  # keep me here\n" + TOY_ENTRY + "    ]\n" in after
    assert after.endswith("{\n" + TOY_CONFIG_LINE + "}\n")
    # An empty table has to open up; that is the one line changed.
    removed = [line for line in changes(source, after) if line.startswith("-")]
    assert removed == ["-_CUSTOM_CONFIG_REGISTRATIONS: Dict[str, Tuple[str, str]] = {}"]
    unpatch_registry(path, architecture=TOY_ARCH, config_model_type=TOY_CONFIG[0])
    assert path.read_text() == source


names = st.from_regex(r"[A-Z][a-z0-9]{0,12}(For[A-Z][a-z]{2,8})?", fullmatch=True)
modules = st.from_regex(r"nemo_automodel\.components\.models\.[a-z][a-z0-9_]{0,60}\.model", fullmatch=True).filter(
    lambda m: not any(keyword.iskeyword(part) for part in m.split("."))
)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(architecture=names.map(lambda n: f"Zz{n}"), module=modules, class_name=names)
def test_any_valid_entry_adds_lines_only_and_rolls_back_exactly(architecture, module, class_name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "registry.py"
        shutil.copyfile(REAL_REGISTRY, path)
        before = path.read_text()
        patch_registry(path, architecture=architecture, module=module, class_name=class_name)
        after = path.read_text()
        assert all(line.startswith("+") and len(line) <= 121 for line in changes(before, after))
        assert read_registry(path).arch_mapping[architecture] == (module, class_name)
        unpatch_registry(path, architecture=architecture)
        assert path.read_text() == before


# --------------------------------------------------------------------------------------------------------------------
# The Copier task, in a sandbox checkout, and NeMo AutoModel's own registry resolving the new class

TOY_MODEL_SOURCE = '''\
"""A trivial dense model, enough for the registry to resolve."""

import torch
from torch import nn


class ToyDenseForCausalLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden_states)


ModelClass = ToyDenseForCausalLM
'''

RESOLVE = """\
import inspect, json
import nemo_automodel
from nemo_automodel._transformers.registry import ModelRegistry
from transformers import LlamaConfig

config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
cls = ModelRegistry.resolve_custom_model_cls("ToyDenseForCausalLM", config)
model = cls(config)
print(json.dumps({
    "package": nemo_automodel.__file__,
    "module": cls.__module__,
    "name": cls.__name__,
    "file": inspect.getfile(cls),
    "out": list(model(__import__("torch").zeros(1, 16)).shape),
}))
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_sandbox(tmp_path_factory.mktemp("e2e") / "Automodel")
    toy = root / "nemo_automodel" / "components" / "models" / "toy_dense"
    toy.mkdir()
    (toy / "__init__.py").write_text("")
    (toy / "model.py").write_text(TOY_MODEL_SOURCE)
    return root


def run_task(sandbox: Path, monkeypatch: pytest.MonkeyPatch, *args: str, architecture: str = TOY_ARCH) -> int:
    monkeypatch.chdir(sandbox)
    argv = ["--registry", "nemo_automodel/_transformers/registry.py", "--architecture", architecture]
    return registry_task.main([*argv, "--module", TOY_MODULE, *args])


def test_task_registers_and_nemo_automodel_resolves_the_class(sandbox: Path, monkeypatch, capsys):
    assert run_task(sandbox, monkeypatch, "--config-registration", "") == 0
    printed = capsys.readouterr().out
    assert f'"{TOY_ARCH}",' in printed and f'("{TOY_MODULE}", "{TOY_ARCH}"),' in printed

    assert run_task(sandbox, monkeypatch) == 0
    assert capsys.readouterr().out.startswith(f"registry.py already has {TOY_ARCH}")

    env = {**os.environ, "PYTHONPATH": str(sandbox), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE], cwd=sandbox, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(resolved["package"]).resolve().is_relative_to(sandbox.resolve())
    assert resolved["module"] == TOY_MODULE and resolved["name"] == TOY_ARCH
    assert (
        Path(resolved["file"]).resolve() == (sandbox / "nemo_automodel/components/models/toy_dense/model.py").resolve()
    )
    assert resolved["out"] == [1, 64]


def test_task_reports_a_conflict_and_replaces_on_request(sandbox: Path, monkeypatch, capsys):
    registry = sandbox / "nemo_automodel" / "_transformers" / "registry.py"
    data = registry.read_bytes()
    argv = ["--class-name", TOY_ARCH]

    assert run_task(sandbox, monkeypatch, *argv, architecture="DeepseekV3ForCausalLM") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and DEEPSEEK_V3[0] in err and "--replace" in err
    assert registry.read_bytes() == data

    assert run_task(sandbox, monkeypatch, *argv, "--replace=False", architecture="DeepseekV3ForCausalLM") == 2
    assert registry.read_bytes() == data
    capsys.readouterr()
    assert run_task(sandbox, monkeypatch, *argv, "--replace=True", architecture="DeepseekV3ForCausalLM") == 0
    assert f"re-pointed the architecture entry from {DEEPSEEK_V3[0]}.{DEEPSEEK_V3[1]}" in capsys.readouterr().out
    assert read_registry(registry).arch_mapping["DeepseekV3ForCausalLM"] == (TOY_MODULE, TOY_ARCH)
    unpatch_registry(registry, architecture="DeepseekV3ForCausalLM", restore=DEEPSEEK_V3)
    assert registry.read_bytes() == data


@pytest.mark.parametrize("value", ["toy_dense:nemo_automodel.x", "a:b:c:d", ":b:C"])
def test_task_rejects_a_malformed_config_registration(sandbox: Path, monkeypatch, capsys, value: str):
    assert run_task(sandbox, monkeypatch, "--config-registration", value) == 2
    assert "model_type:module:ConfigClass" in capsys.readouterr().err
