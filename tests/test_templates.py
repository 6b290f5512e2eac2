"""End to end: render every kind's template for real and synthetic configs and run the generated tests.

Each onboarding goes into a scratch NeMo AutoModel checkout (the installed package in a fresh git repository).
Models with different architectures share a checkout and one pytest run, since every run pays the torch and
transformers imports; the generated suites must pass in full, and the rendered tree must be ruff clean.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, load_config

from automodel_onboard import kinds
from automodel_onboard.layout import matrix

copier = pytest.importorskip("copier")

RUFF = [sys.executable, "-m", "ruff"]
RUFF_RULES = ["--line-length", "120", "--select", "E,F,W,I,B,UP"]
# Real families, by module name, in four checkouts ("c" holds the MoE kind, "d" the VLM kind): one per kind whose
# NeMo recipe runs here, and those whose layout no synthetic case has (Llama 2's module name sorts before NeMo's own
# ``models.common`` in the generated imports; Gemma scales its embeddings; GLM-4.5 routes by sigmoid scores with a
# correction bias and shared experts; Gemma 3's vision tower and Qwen2.5-VL's multimodal RoPE). Every fixture family's
# suite, these included, runs in render-all, which CI runs after this suite.
FIXTURES = {
    "a": {
        "qwen3_gen": "Qwen__Qwen3-0.6B.json",
        "base_llama2_gen": "meta-llama__Llama-2-7b-hf.json",
    },
    "b": {"gemma_gen": "google__gemma-7b.json"},
    "c": {
        "qwen3_moe_gen": "Qwen__Qwen3-235B-A22B.json",
        "glm45_gen": "zai-org__GLM-4.5.json",
    },
    "d": {
        "qwen25_vl_gen": "Qwen__Qwen2.5-VL-3B-Instruct.json",
        "gemma3_vl_gen": "google__gemma-3-12b-it.json",
    },
}
KINDS = {"a": "dense", "b": "dense", "c": "moe", "d": "vlm"}


def _synthetic(case: matrix.Synthetic) -> tuple[str, dict]:
    """A matrix case under an architecture of its own ("llama-mqa" -> LlamaMqaForCausalLM), its head kept."""
    config = copy.deepcopy(case.config())
    head = "ForConditionalGeneration" if case.kind == "vlm" else "ForCausalLM"
    config["architectures"] = ["".join(p.capitalize() for p in case.case_id.split("-")) + head]
    return case.case_id.replace("-", "_") + "_gen", config


# (module name, config) per checkout: the real dense families and the whole dense synthetic matrix, split in two.
SYNTHETIC = [_synthetic(case) for case in matrix.CASES["dense"]]
SPLIT = {
    "a": SYNTHETIC[:7],
    "b": SYNTHETIC[7:],
    "c": [_synthetic(case) for case in matrix.CASES["moe"]],
    "d": [_synthetic(case) for case in matrix.CASES["vlm"]],
}
CHECKOUTS: dict[str, tuple[tuple[str, dict], ...]] = {
    key: (*((name, load_config(file)) for name, file in FIXTURES[key].items()), *SPLIT[key]) for key in FIXTURES
}


# The models whose real run of NeMo's recipe the template tests keep: one real dense family, and GPT-OSS's shape
# (sink logits, clamped GLU experts), which no fixture has. The others' are deselected here to keep CI's time: the
# other synthetic variants vary the layout the model suites compare, and every real family's run is in render-all
# over the fixtures, which CI runs too (a failed run fails its row there).
RECIPE_RUNS = frozenset({"qwen3_gen", "gpt_oss_base_gen"})


RECIPE_RUN_TESTS = (
    "test_the_example_recipe_fine_tunes_the_model_on_the_cpu",
    "test_the_peft_recipe_trains_the_adapters_alone_on_the_cpu",
)


def deselected_recipe_runs(key: str) -> list[str]:
    """The recipe runs of a checkout's models that are not kept here."""
    return [
        f"tests/unit_tests/models/{name}/test_{name}_recipe.py::{test}"
        for name, _ in CHECKOUTS[key]
        if name not in RECIPE_RUNS
        for test in RECIPE_RUN_TESTS
    ]


def make_checkout(dest: Path) -> Path:
    from automodel_onboard.destination.sandbox import make_sandbox

    return make_sandbox(dest)


def render(dest: Path, config_path: Path, module_name: str) -> None:
    copier.run_copy(
        str(ROOT),
        str(dest),
        # Every family replaces NeMo AutoModel's own where there is one, whatever that declares (the suite covers
        # rendering; the refusal of fewer capabilities is tested in test_onboard).
        data={"model": str(config_path), "module_name": module_name, "replace": True, "allow_fewer_capabilities": True},
        defaults=True,
        unsafe=True,
        quiet=True,
    )


@pytest.fixture(scope="module")
def checkouts(tmp_path_factory) -> dict[str, Path]:
    """Every checkout, rendered (registry patched by the Copier task)."""
    made = {}
    for key, models in CHECKOUTS.items():
        dest = make_checkout(tmp_path_factory.mktemp(f"checkout_{key}") / "automodel")
        configs = tmp_path_factory.mktemp(f"configs_{key}")
        for module_name, config in models:
            path = configs / f"{module_name}.json"
            path.write_text(json.dumps(config))
            render(dest, path, module_name)
        made[key] = dest
    return made


def test_generated_suites_pass(checkouts, tmp_path):
    """All generated tests pass; the checkouts run in parallel, one pytest process each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    runs = {}
    for key, dest in checkouts.items():
        report = tmp_path / key
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit_tests/models"]
        cmd += [arg for test in deselected_recipe_runs(key) for arg in ("--deselect", test)]
        run_env = {**env, "PYTHONPATH": str(dest), "AUTOMODEL_ONBOARD_REPORT_DIR": str(report)}
        runs[key] = subprocess.Popen(cmd, cwd=dest, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # A guard against a hung suite (a stuck collective), not a speed limit: the four share the machine's cores.
    outputs = {key: proc.communicate(timeout=2700)[0].decode() for key, proc in runs.items()}
    for key, proc in runs.items():
        assert proc.returncode == 0, f"checkout {key}:\n{outputs[key][-8000:]}"
        assert " failed" not in outputs[key] and " passed" in outputs[key], outputs[key][-2000:]
    worst: dict[str, float] = {}
    for entry in tmp_path.glob("*/*__max_logit_diff__*.json"):
        data = json.loads(entry.read_text())
        worst[data["module"]] = max(worst.get(data["module"], 0.0), data["value"])
    expected = {name for models in CHECKOUTS.values() for name, _ in models}
    assert set(worst) == expected
    print("max logit diff per model:", json.dumps(worst, sort_keys=True))


def test_rendered_tree_is_ruff_clean(checkouts):
    for key, dest in checkouts.items():
        targets = [str(d) for name, _ in CHECKOUTS[key] for d in _generated_dirs(dest, name)]
        check = subprocess.run([*RUFF, "check", *RUFF_RULES, *targets], capture_output=True, text=True, cwd=dest)
        assert check.returncode == 0, check.stdout + check.stderr
        fmt = [*RUFF, "format", "--check", "--line-length", "120", *targets]
        formatted = subprocess.run(fmt, capture_output=True, text=True, cwd=dest)
        assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def _generated_dirs(dest: Path, module_name: str) -> list[Path]:
    return [
        dest / "nemo_automodel" / "components" / "models" / module_name,
        dest / "tests" / "unit_tests" / "models" / module_name,
    ]


def test_nemo_imports_are_declared(checkouts):
    """Every ``from nemo_automodel... import X`` in the rendered files is in their kind's symbols, and back."""
    for kind in sorted(set(KINDS.values())):
        _check_declared(kind, {key: dest for key, dest in checkouts.items() if KINDS[key] == kind})


def _check_declared(kind: str, checkouts: dict[str, Path]) -> None:
    declared = set(kinds.get(kind).symbols)
    used: set[tuple[str, str]] = set()
    for key, dest in checkouts.items():
        for module_name, _ in CHECKOUTS[key]:
            own = f"nemo_automodel.components.models.{module_name}"
            for folder in _generated_dirs(dest, module_name):
                for path in folder.rglob("*.py"):
                    for node in ast.walk(ast.parse(path.read_text())):
                        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nemo_automodel"):
                            if node.module == own or node.module.startswith(own + "."):
                                continue
                            used.update((node.module, alias.name) for alias in node.names)
    assert used <= declared, f"{kind}: imported but not declared: {sorted(used - declared)}"
    assert declared <= used, f"{kind}: declared but never imported: {sorted(declared - used)}"
