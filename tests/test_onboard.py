"""Destination checks and the all-or-nothing render: refusals leave the checkout byte-identical."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
from pathlib import Path

import pytest
from conftest import CONFIGS, ROOT, snapshot

from automodel_onboard import kinds
from automodel_onboard.commands import new as onboard
from automodel_onboard.commands.cli import main
from automodel_onboard.destination import journal
from automodel_onboard.destination.checkout import MODELS, Checkout, declared_capabilities, missing_symbols
from automodel_onboard.errors import OnboardError
from automodel_onboard.layout.dense import QLORA_LIMITATION
from automodel_onboard.render import copier_run
from automodel_onboard.render.filters import md

QWEN3 = ROOT / "examples" / "configs" / "Qwen3-0.6B.json"


def _request(dest: Path, **kwargs) -> onboard.Request:
    return onboard.Request(model=str(QWEN3), dest=dest, **{"name": "qwen3_gen", "verify": False, **kwargs})


def test_not_a_checkout_is_refused(tmp_path):
    with pytest.raises(OnboardError) as info:
        onboard.new(_request(tmp_path))
    assert info.value.code == "not-a-checkout"
    assert "automodel-onboard sandbox" in info.value.fix
    assert list(tmp_path.iterdir()) == []


def test_already_registered_architecture_names_the_existing_module(checkout):
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(_request(checkout))
    assert info.value.code == "already-registered"
    assert "nemo_automodel.components.models.qwen3.model.Qwen3ForCausalLM" in info.value.what
    assert "--replace" in info.value.fix
    assert snapshot(checkout) == before


@pytest.mark.parametrize(("name", "clash"), [("qwen3", "qwen3"), ("Qwen3", None), ("llama", "llama")])
def test_existing_model_folder_is_refused(checkout, name, clash):
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(_request(checkout, name=name, replace=True))
    if clash is None:  # not a valid module name at all
        assert info.value.code == "invalid-name"
    else:
        assert info.value.code == "model-exists"
        # NeMo AutoModel's own folder: not ours to update; the rerun that succeeds takes a free name and --replace.
        assert info.value.fix == f"rerun with `--name {clash}_onboarded --replace`"
    assert snapshot(checkout) == before


def test_case_only_difference_is_a_collision(checkout):
    folder = checkout / MODELS / "Toy_Model"
    folder.mkdir()
    spec = {"kind": "dense", "org": "qwen", "architecture": "ToyForCausalLM"}
    with pytest.raises(OnboardError, match="differs from 'toy_model' only in case"):
        Checkout(checkout).check(spec, module_name="toy_model", kind=kinds.get("dense"), symbols=())


def test_missing_symbols_are_named_before_anything_is_written(checkout):
    common = checkout / "nemo_automodel" / "components" / "models" / "common" / "__init__.py"
    common.write_text(common.read_text().replace("    initialize_rms_norm_module,\n", ""))
    subprocess.run(["git", "commit", "-qam", "older API"], cwd=checkout, check=True)
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(_request(checkout, replace=True))
    assert info.value.code == "missing-symbols"
    assert "nemo_automodel.components.models.common.initialize_rms_norm_module" in info.value.what
    assert snapshot(checkout) == before


def test_the_dense_symbol_table_matches_the_installed_package():
    import importlib.util

    site = Path(importlib.util.find_spec("nemo_automodel").origin).parents[1]
    assert missing_symbols(site, kinds.get("dense").symbols) == []


def test_unimplemented_features_are_refused_with_the_list(checkout, tmp_path):
    alibi = tmp_path / "config.json"
    alibi.write_text(
        json.dumps({**json.loads((CONFIGS / "mistralai__Mistral-Nemo-Base-2407.json").read_text()), "alibi": True})
    )
    with pytest.raises(OnboardError) as info:
        onboard.new(onboard.Request(model=str(alibi), dest=checkout, verify=False))
    assert info.value.code == "unsupported-features"
    assert "ALiBi position bias: alibi = True" in info.value.what
    assert "--allow-unsupported" in info.value.fix


def test_remote_code_only_models_are_refused(checkout):
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(onboard.Request(model=str(CONFIGS / "internlm__internlm2_5-7b.json"), dest=checkout))
    assert info.value.code == "remote-code"
    assert snapshot(checkout) == before


def test_dirty_work_tree_is_reported_before_rendering(checkout):
    (checkout / "notes.txt").write_text("mine")
    spec = {"kind": "dense", "org": "qwen", "architecture": "ToyForCausalLM"}
    found = Checkout(checkout).check(spec, module_name="toy", kind=kinds.get("dense"), symbols=())
    assert found.dirty == ("notes.txt",)


def test_failure_while_installing_rolls_back(checkout, monkeypatch):
    before = snapshot(checkout)
    real_copy = journal._copy_in
    calls = []

    def failing_copy(source, target):
        calls.append(target)
        if len(calls) == 3:
            raise OSError("disk full")
        real_copy(source, target)

    monkeypatch.setattr(journal, "_copy_in", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        onboard.new(_request(checkout, replace=True))
    assert len(calls) == 3
    assert snapshot(checkout) == before


def test_failing_registry_task_writes_nothing(checkout, monkeypatch):
    """The registry task refuses in the staging copy (a conflict the checks were told to overlook): nothing lands."""
    real_check = Checkout.check
    monkeypatch.setattr(Checkout, "check", lambda *a, **k: real_check(*a, **{**k, "replace": True}))
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(_request(checkout, replace=False))
    assert info.value.code == "render-failed"
    assert snapshot(checkout) == before


def test_new_renders_registers_and_reports(checkout):
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["new", str(QWEN3), "--dest", str(checkout), "--name", "qwen3_gen", "--replace", "--no-verify"],
        out=out,
        err_out=err,
    )
    text = out.getvalue()
    assert code == 0, err.getvalue()
    assert "nemo_automodel/components/models/qwen3_gen/model.py" in text
    assert '("nemo_automodel.components.models.qwen3_gen.model", "Qwen3ForCausalLM"),' in text
    assert "re-pointed from nemo_automodel.components.models.qwen3.model.Qwen3ForCausalLM" in text
    assert "rendering the templates" in err.getvalue()
    files, status = snapshot(checkout)
    changed = {line[3:] for line in status.splitlines()}
    assert changed == {
        "nemo_automodel/_transformers/registry.py",
        *(p for p in files if "qwen3_gen" in p),
    }
    answers = (checkout / MODELS / "qwen3_gen" / ".copier-answers.yml").read_text()
    assert f"model: {QWEN3}" in answers and "replace: true" in answers
    # The docs page lists both example recipes and states each feature as the layout does.
    (page,) = [checkout / p for p in files if p.endswith("/qwen3_gen.mdx")]
    docs = page.read_text()
    assert "qwen3\\_gen\\_hellaswag\\_peft.yaml" in docs and "PEFT (LoRA)" in docs
    table = [line for line in docs.splitlines() if line.startswith("| ") and " | " in line[2:]]
    assert "| Context parallelism | declared; its test needs 2 GPUs |" in table
    assert "| LoRA | verified on CPU |" in table and "| Expert parallelism | not supported |" in table
    limitations = docs.split("## Limitations\n", 1)[1].split("\n## ", 1)[0]
    assert [line for line in limitations.splitlines() if line] == [f"- {md(QLORA_LIMITATION)}"]


def test_answers_default_from_the_spec():
    spec = {"kind": "moe", "module_name": "qwen3_moe"}
    answers = copier_run.answers_for(spec, "Qwen/Qwen3-30B-A3B")
    assert (answers.module_name, answers.kind, answers.dataset, answers.replace) == (
        "qwen3_moe",
        "moe",
        "hellaswag",
        False,
    )


KILL_AFTER = """
import os, signal, sys
from pathlib import Path
from automodel_onboard.commands.cli import main
from automodel_onboard.destination import journal

calls = []
real = journal._copy_in

def dying_copy(source, target):
    calls.append(target)
    at = sys.argv[1]
    if (target.name == "registry.py") if at == "registry" else len(calls) == int(at):
        Path(target.parent, "." + target.name + ".half.tmp").write_bytes(source.read_bytes()[:10])
        os.kill(os.getpid(), signal.SIGKILL)
    real(source, target)

journal._copy_in = dying_copy
main(["new", sys.argv[2], "--dest", sys.argv[3], "--name", "qwen3_gen", "--replace", "--no-verify"])
"""


@pytest.mark.parametrize("kill_at", ["1", "4", "registry"])
def test_killed_between_writes_is_rolled_back_by_the_next_run(checkout, tmp_path, kill_at):
    import os
    import sys

    before = snapshot(checkout)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER, kill_at, str(QWEN3), str(checkout)], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    assert snapshot(checkout) != before, "the kill left partial files behind"
    os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
    try:
        assert journal.recover(checkout)
        assert not journal.recover(checkout), "the journal is gone once rolled back"
    finally:
        del os.environ["XDG_CACHE_HOME"]
    assert snapshot(checkout) == before


def test_verification_reads_parity_records_and_the_first_divergence(tmp_path):
    """The generated tests' own words and records, as the report reads them."""
    import json

    from automodel_onboard import verify

    for name, value in (("a", 1.5e-7), ("b", 2.5e-3), ("c", 9.0)):
        metric = "max_logit_diff" if name != "c" else "existing_logit_diff"
        (tmp_path / f"{name}.json").write_text(json.dumps({"metric": metric, "value": value}))
    assert verify._max_logit_diff(tmp_path) == 2.5e-3
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase name="test_forward_shapes" time="0.5"/>'
        '<testcase name="test_matches_reference_end_to_end[eager-full]" time="1.0"><failure message="AssertionError: '
        'hidden states diverge first at index 0 (0: embeddings, 2: after the final norm), max abs diff 5.4e-01"/>'
        '</testcase><testcase name="test_cuda" time="0"><skipped message="needs CUDA"/></testcase>'
        "</testsuite></testsuites>"
    )
    verdicts = verify._read_junit(junit)
    assert [(v.name, v.outcome) for v in verdicts] == [
        ("test_forward_shapes", "passed"),
        ("test_matches_reference_end_to_end[eager-full]", "failed"),
        ("test_cuda", "skipped"),
    ]
    assert verify._first_diverging(verdicts) == "index 0 (0: embeddings, 2: after the final norm), max abs diff 5.4e-01"


def test_dirty_files_are_named_before_anything_is_touched(checkout):
    (checkout / "notes.txt").write_text("mine")
    out, err = io.StringIO(), io.StringIO()
    argv = ["new", str(QWEN3), "--dest", str(checkout), "--name", "qwen3_gen", "--replace", "--no-verify"]
    assert main(argv, out=out, err_out=err) == 0
    log = err.getvalue()
    assert "uncommitted changes (notes.txt)" in log
    assert log.index("uncommitted changes") < log.index("rendering the templates")
    assert (checkout / "notes.txt").read_text() == "mine"


def test_plain_copier_copy_checks_renders_and_registers(checkout):
    """`copier copy` without this tool's wrapper: the destination checks run as a validator, then it renders."""
    import sys

    copy = [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", str(ROOT), "."]
    answers = ["-d", f"model={QWEN3}", "-d", "module_name=qwen3_gen"]
    before = snapshot(checkout)
    refused = subprocess.run([*copy, *answers], cwd=checkout, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "Qwen3ForCausalLM is already registered to nemo_automodel.components.models.qwen3.model" in refused.stderr
    assert snapshot(checkout) == before
    done = subprocess.run([*copy, *answers, "-d", "replace=true"], cwd=checkout, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (checkout / MODELS / "qwen3_gen" / "model.py").is_file()
    registry = Checkout(checkout).registry.read_text()
    assert '("nemo_automodel.components.models.qwen3_gen.model", "Qwen3ForCausalLM")' in registry
    import yaml

    answers = yaml.safe_load((checkout / MODELS / "qwen3_gen" / ".copier-answers.yml").read_text())
    assert "revision" not in answers  # a Hub revision is not asked for a local config
    assert answers["replaces"] == "nemo_automodel.components.models.qwen3.model:Qwen3ForCausalLM"  # replace=true
    assert answers["trust_remote_code"] is False  # asked: the model is a local file


def test_replace_refuses_to_take_parallelisms_away(checkout):
    """NeMo AutoModel's Qwen3-MoE declares context parallelism, which the generated MoE model does not."""
    before = snapshot(checkout)
    request = onboard.Request(
        model=str(CONFIGS / "Qwen__Qwen3-235B-A22B.json"), dest=checkout, name="moe_gen", replace=True, verify=False
    )
    with pytest.raises(OnboardError) as info:
        onboard.new(request)
    replaced = "nemo_automodel.components.models.qwen3_moe.model.Qwen3MoeForCausalLM"
    assert info.value.code == "fewer-capabilities"
    assert f"would not declare supports_cp, which {replaced} declares" in info.value.what
    assert "drop --replace" in info.value.fix and "--allow-fewer-capabilities" in info.value.fix
    assert snapshot(checkout) == before
    report = onboard.new(dataclasses.replace(request, allow_fewer_capabilities=True))
    assert f"runs of Qwen3MoeForCausalLM lose supports_cp, which {replaced} declares" in (report.warnings)


def test_replacing_qwen3_keeps_every_parallelism_it_declares(checkout):
    report = onboard.new(_request(checkout, replace=True))
    assert report.destination.replaces == ("nemo_automodel.components.models.qwen3.model", "Qwen3ForCausalLM")
    assert report.destination.fewer_capabilities == ()
    declared = declared_capabilities(checkout, "nemo_automodel.components.models.qwen3_gen.model", "Qwen3ForCausalLM")
    assert declared == {"supports_tp": True, "supports_cp": True, "supports_pp": True, "supports_ep": False}


def test_declared_capabilities_are_read_from_the_source(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text(
        "import dataclasses\n"
        "class Base:\n"
        "    @dataclasses.dataclass(frozen=True)\n"
        "    class ModelCapabilities:\n"
        "        supports_tp: bool = True\n"
        "        supports_pp: bool = False\n"
        "class Child(Base):\n"
        "    pass\n"
        "class PerConfig:\n"
        "    @classmethod\n"
        "    def get_capabilities(cls, config):\n"
        "        return None\n"
    )
    assert declared_capabilities(tmp_path, "pkg.m", "Child") == {"supports_tp": True, "supports_pp": False}
    assert declared_capabilities(tmp_path, "pkg.m", "PerConfig") is None
    assert declared_capabilities(tmp_path, "pkg.m", "Missing") is None
    assert declared_capabilities(tmp_path, "pkg.absent", "Child") is None


def test_interactive_copier_copy_asks_only_what_applies(checkout, monkeypatch):
    """A person at a terminal: the internal `replaces` and a Hub revision for a local file are never asked."""
    import copier
    import copier._main
    import yaml

    asked: list[str] = []

    def prompt(questions, answers):  # what the terminal shows; the person names the module, accepts the rest
        (question,) = questions
        if not question["when"](answers):  # questionary's own skip: the default stands, nothing is shown
            return answers
        asked.append(question["name"])
        typed = {"module_name": "qwen3_onboarded"}
        return {question["name"]: typed.get(question["name"], answers[question["name"]])}

    monkeypatch.setattr(copier._main, "unsafe_prompt", prompt)
    monkeypatch.chdir(checkout)
    copier.run_copy(
        str(ROOT), ".", data={"model": str(QWEN3), "replace": True}, unsafe=True, vcs_ref="HEAD", quiet=True
    )
    assert set(asked) == {"trust_remote_code", "module_name", "kind", "dataset"}
    answers = yaml.safe_load((checkout / MODELS / "qwen3_onboarded" / ".copier-answers.yml").read_text())
    assert answers["replaces"] == "nemo_automodel.components.models.qwen3.model:Qwen3ForCausalLM"  # computed
    assert '("nemo_automodel.components.models.qwen3_onboarded.model", "Qwen3ForCausalLM")' in (
        Checkout(checkout).registry.read_text()
    )


@pytest.mark.parametrize(("model", "kind"), [(QWEN3, "vlm"), (CONFIGS / "Qwen__Qwen2.5-VL-3B-Instruct.json", None)])
def test_a_kind_without_a_template_is_refused(checkout, model, kind, without_vlm):
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(onboard.Request(model=str(model), dest=checkout, name="x_gen", kind=kind, verify=False))
    assert info.value.code == "no-template"
    assert info.value.fix == "templates available: dense, moe"
    assert snapshot(checkout) == before


def test_overriding_the_kind_warns(checkout):
    report = onboard.new(
        onboard.Request(
            model=str(CONFIGS / "Qwen__Qwen2-57B-A14B.json"),
            dest=checkout,
            name="x_gen",
            kind="dense",
            verify=False,
            allow_unsupported=True,
        )
    )
    assert report.answers.kind == "dense"
    assert any("although the config classifies as moe" in w for w in report.warnings)
    # The docs page states what the rendered model leaves out.
    (page,) = checkout.glob("docs/**/x_gen.mdx")
    limitations = page.read_text().split("## Limitations\n", 1)[1]
    assert "- Rendered although the template does not implement it: " in limitations


FAST_NEW = """
import sys
from automodel_onboard.commands.cli import main

code = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""


def test_destination_refusals_come_before_the_reference_and_name_the_rerun_that_works(checkout):
    """Llama-3.2-3B into a checkout that has NeMo's own llama: one refusal, whose fix is the command that succeeds."""
    import re
    import sys

    llama = str(CONFIGS / "meta-llama__Llama-3.2-3B.json")
    args = [sys.executable, "-c", FAST_NEW, "new", llama, "--dest", str(checkout), "--no-verify"]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "models/llama already exists (NeMo AutoModel's own implementation)" in refused.stderr
    flags = re.search(r"rerun with `([^`]+)`", refused.stderr).group(1)
    assert flags == "--name llama_onboarded --replace"
    for partial in ("--name llama_onboarded", "--replace"):
        again = subprocess.run([*args, *partial.split()], capture_output=True, text=True, timeout=120)
        assert again.returncode == 2 and "rerun with `--name llama_onboarded --replace`" in again.stderr, again.stderr
    done = subprocess.run(
        [
            *args[:2],
            "from automodel_onboard.commands.cli import main; import sys; sys.exit(main(sys.argv[1:]))",
            *args[3:],
            *flags.split(),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_copier_line_runs_as_written_without_a_terminal(checkout, tmp_path):
    """The README's `copier copy` line, its placeholders filled in, with no terminal and the Hub id from a cache."""
    import json
    import os
    import re
    import shlex
    import sys

    from conftest import hub_cache

    readme = (ROOT / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("copier copy ")]
    args = shlex.split(line.replace("<this repository>", str(ROOT)).replace("<checkout>", "."))
    model = re.search(r"model=(\S+)", line).group(1)
    cache = hub_cache(tmp_path / "hub", model, json.loads(QWEN3.read_text()))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=checkout, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (checkout / MODELS / "qwen3_onboarded" / "model.py").is_file()


def test_readme_says_which_families_nemo_implements():
    """The README's claim about NeMo AutoModel's own implementations, against the installed registry."""
    from automodel_onboard.destination.registry_patch import read_registry
    from automodel_onboard.model.naming import installed_registry

    registered = set(read_registry(installed_registry()).arch_mapping)
    assert {"Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM"} <= registered
    assert "MistralForCausalLM" not in registered
    assert "implements Qwen2, Qwen3 and Llama already; not Mistral" in " ".join(
        (ROOT / "README.md").read_text().split()
    )


def test_replace_with_nothing_to_replace_says_so(checkout):
    report = onboard.new(
        onboard.Request(
            model=str(CONFIGS / "mistralai__Mistral-Nemo-Base-2407.json"), dest=checkout, replace=True, verify=False
        )
    )
    assert "--replace has nothing to re-point: MistralForCausalLM was not registered" in report.warnings


def test_a_dataset_the_kind_has_no_recipe_for_is_refused(checkout):
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        onboard.new(_request(checkout, replace=True, dataset="imagenet"))
    assert "dataset 'imagenet' is not available for dense models; choose one of:" in info.value.what
    assert snapshot(checkout) == before
