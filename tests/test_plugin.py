"""``new --plugin DIR``: an out-of-tree package NeMo AutoModel finds through its entry points.

The real installed NeMo AutoModel 0.7.0 is read for the checks and imported by the generated tests; the plugin is
installed with pip (into a temporary folder) for its tests, so its entry points are read as after ``pip install``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS

from automodel_onboard import kinds
from automodel_onboard.commands import new as onboard
from automodel_onboard.destination.plugin import GROUP, MODELS_BEGIN, MODELS_END, Plugin
from automodel_onboard.errors import OnboardError

OLMO = CONFIGS / "allenai__OLMo-1B-hf.json"
OLMOE = CONFIGS / "allenai__OLMoE-1B-7B-0125.json"
QWEN3 = CONFIGS / "Qwen__Qwen3-0.6B.json"
REPO = Path(__file__).resolve().parents[1]


def onboard_into(plugin: Path, model: Path, **kwargs) -> onboard.Report:
    return onboard.new(onboard.Request(model=str(model), dest=plugin, plugin=True, verify=False, **kwargs))


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def pyproject(plugin: Path) -> dict:
    return tomllib.loads((plugin / "pyproject.toml").read_text())


def test_a_new_plugin_is_a_package_declaring_its_architecture(tmp_path):
    plugin = tmp_path / "my-models"
    report = onboard_into(plugin, OLMO)
    assert set(tree(plugin)) == {
        "pyproject.toml",
        "README.md",
        "src/my_models/__init__.py",
        "src/my_models/olmo/__init__.py",
        "src/my_models/olmo/.copier-answers.yml",
        "src/my_models/olmo/model.py",
        "src/my_models/olmo/parallelization.py",
        "src/my_models/olmo/state_dict_adapter.py",
        "tests/olmo/test_olmo_model.py",
        "tests/olmo/test_olmo_recipe.py",
        "examples/llm_finetune/olmo/olmo_hellaswag.yaml",
        "examples/llm_finetune/olmo/olmo_hellaswag_peft.yaml",
        "docs/llm/community/olmo.mdx",
    }
    assert set(os.listdir(tmp_path)) == {"my-models"}  # nothing beside the plugin
    project = pyproject(plugin)
    assert project["project"]["name"] == "my-models"
    assert project["project"]["dependencies"] == ["nemo-automodel>=0.7.0,<0.8"]
    assert project["project"]["entry-points"][GROUP] == {"OlmoForCausalLM": "my_models.olmo.model:OlmoForCausalLM"}
    assert "automodel" not in (plugin / "pyproject.toml").read_text().replace("nemo-automodel", "").replace(
        "nemo_automodel", ""
    )  # no trace of the generator beyond the answers files
    assert report.rendered.registry_lines == (
        'OlmoForCausalLM = "my_models.olmo.model:OlmoForCausalLM"',
        "| `olmo` | `OlmoForCausalLM` | dense | entry point |",
    )
    answers = yaml.safe_load((plugin / "src/my_models/olmo/.copier-answers.yml").read_text())
    assert (answers["destination"], answers["plugin_package"], answers["module_name"]) == (
        "plugin",
        "my_models",
        "olmo",
    )
    recipe = yaml.safe_load((plugin / "examples/llm_finetune/olmo/olmo_hellaswag.yaml").read_text())
    assert recipe["model"]["_target_"] == "nemo_automodel.NeMoAutoModelForCausalLM.from_pretrained"
    docs = (plugin / "docs/llm/community/olmo.mdx").read_text()
    assert "(../../../examples/llm_finetune/olmo/olmo_hellaswag.yaml)" in docs and "github.com/NVIDIA-NeMo" not in docs


def test_a_second_model_adds_its_entry_and_row_and_keeps_the_owners_edits(tmp_path):
    plugin = tmp_path / "models"
    onboard_into(plugin, OLMO)
    readme = plugin / "README.md"
    readme.write_text(readme.read_text().replace("# models", "# models\n\nOur own words."))
    before = tree(plugin)
    onboard_into(plugin, OLMOE)
    entries = pyproject(plugin)["project"]["entry-points"][GROUP]
    assert entries == {
        "OlmoForCausalLM": "models.olmo.model:OlmoForCausalLM",
        "OlmoeForCausalLM": "models.olmoe.model:OlmoeForCausalLM",
    }
    text = readme.read_text()
    assert "Our own words." in text
    rows = text.split(MODELS_BEGIN)[1].split(MODELS_END)[0].strip().splitlines()
    assert rows == [
        "| `olmo` | `OlmoForCausalLM` | dense | entry point |",
        "| `olmoe` | `OlmoeForCausalLM` | moe | entry point |",
    ]
    after = tree(plugin)
    changed = {path for path in before if after.get(path) != before[path]}
    assert changed == {"pyproject.toml", "README.md"}  # the first model's files untouched


def test_an_architecture_nemo_automodel_implements_is_refused_with_the_reason(tmp_path):
    plugin = tmp_path / "models"
    with pytest.raises(OnboardError) as err:
        onboard_into(plugin, QWEN3)
    assert err.value.code == "already-registered"
    assert "cannot override it" in err.value.what and "nemo_automodel.components.models.qwen3" in err.value.what
    assert "--replace" in err.value.fix and "register_architecture(..., exist_ok=True)" in err.value.fix
    assert not plugin.exists()


def test_replace_is_a_register_call_the_user_makes(tmp_path):
    plugin = tmp_path / "models"
    report = onboard_into(plugin, QWEN3, replace=True, name="qwen3_x")
    assert pyproject(plugin)["project"]["entry-points"][GROUP] == {}
    assert any("register() is called" in w for w in report.warnings)
    script = (
        "from nemo_automodel._transformers.registry import ModelRegistry\n"
        "import models.qwen3_x as ours\n"
        "theirs = ModelRegistry.get_model_cls_from_model_arch('Qwen3ForCausalLM')\n"
        "assert theirs is not ours.Qwen3ForCausalLM, theirs\n"
        "ours.register()\n"
        "assert ModelRegistry.get_model_cls_from_model_arch('Qwen3ForCausalLM') is ours.Qwen3ForCausalLM\n"
        "print('replaced')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(plugin / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("replaced")


@pytest.mark.parametrize("case", ["someone-elses-folder", "a-file"])
def test_a_folder_that_is_not_a_plugin_is_left_alone(tmp_path, case):
    target = tmp_path / "target"
    if case == "a-file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        (target / "pyproject.toml").write_text('[project]\nname = "theirs"\n')
    before = tree(tmp_path)
    with pytest.raises(OnboardError) as err:
        onboard_into(target, OLMO)
    assert err.value.code == "not-a-plugin"
    assert tree(tmp_path) == before


def test_the_same_model_twice_is_refused_and_nothing_changes(tmp_path):
    plugin = tmp_path / "models"
    onboard_into(plugin, OLMO)
    before = tree(plugin)
    with pytest.raises(OnboardError) as err:
        onboard_into(plugin, OLMO)
    assert err.value.code == "model-exists" and "--name olmo_onboarded" in err.value.fix
    with pytest.raises(OnboardError) as err:
        onboard_into(plugin, OLMO, name="olmo_two")  # a free folder, but the architecture is declared
    assert err.value.code == "already-registered"
    assert tree(plugin) == before


def test_a_symlinked_folder_cannot_take_writes_outside_the_plugin(tmp_path):
    plugin, outside = tmp_path / "models", tmp_path / "outside"
    outside.mkdir()
    onboard_into(plugin, OLMO)
    (plugin / "tests" / "olmoe").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OnboardError) as err:
        onboard_into(plugin, OLMOE)
    assert err.value.code == "symlink-outside"
    assert not any(outside.iterdir())


@pytest.mark.parametrize("name", ["---", "___"])
def test_a_folder_name_without_a_package_name_is_refused(tmp_path, name):
    with pytest.raises(OnboardError) as err:
        onboard_into(tmp_path / name, OLMO)
    assert err.value.code == "invalid-name" and "no Python package name" in err.value.what
    assert not (tmp_path / name).exists()


def test_a_hostile_folder_name_becomes_an_inert_package_name(tmp_path):
    plugin = tmp_path / 'x"; import os; os.system("echo pwned") #'
    onboard_into(plugin, OLMO)
    (package,) = os.listdir(plugin / "src")
    assert package == "x_import_os_os_system_echo_pwned"
    assert pyproject(plugin)["project"]["name"] == "x-import-os-os-system-echo-pwned"
    assert (plugin / "src" / package / "olmo" / "model.py").is_file()


def test_plain_copier_copy_makes_the_same_plugin(tmp_path):
    import copier

    ours, theirs = tmp_path / "a" / "models", tmp_path / "b" / "models"
    onboard_into(ours, OLMO)
    copier.run_copy(
        str(REPO),
        theirs,
        data={"model": str(OLMO)},
        defaults=True,
        unsafe=True,
        quiet=True,
        vcs_ref="HEAD",
    )
    answers = "src/models/olmo/.copier-answers.yml"
    mine, copied = tree(ours), tree(theirs)
    assert set(mine) == set(copied)
    assert {path for path in mine if mine[path] != copied[path]} <= {answers}
    assert yaml.safe_load((theirs / answers).read_text())["destination"] == "plugin"


@pytest.mark.slow
def test_the_plugins_generated_tests_pass_through_its_entry_point(tmp_path, without_long_runs):
    """Verified as `new` verifies a plugin: pip installs it (metadata and all), the tests resolve the architecture
    through NeMo AutoModel's registry, which reads the entry point, and NeMo's recipe loads the model by it."""
    plugin = tmp_path / "models"
    report = onboard.new(onboard.Request(model=str(OLMO), dest=plugin, plugin=True))
    verdicts = {v.name: v.outcome for v in report.verification.verdicts}
    assert report.verification.passed, report.verification.output[-3000:]
    assert verdicts["test_registry_resolves_architecture"] == "passed"
    assert not list(plugin.rglob("*.egg-info")) and not (plugin / "build").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("hf_modules_cache")
def test_a_local_config_class_is_registered_when_the_architecture_resolves(tmp_path, without_long_runs):
    """A model whose reference is its checkpoint's own code: the plugin ships its config class, registered by the
    package the entry point imports; a generated test loads the checkpoint through NeMo AutoModel's auto class in a
    fresh process, without trust_remote_code, after resolving the architecture through the entry point."""
    from test_remote_code import toy_folder

    folder, _ = toy_folder(tmp_path)
    plugin = tmp_path / "models"
    report = onboard.new(onboard.Request(model=str(folder), dest=plugin, plugin=True, trust_remote_code=True))
    verdicts = {v.name: v.outcome for v in report.verification.verdicts}
    assert report.verification.passed, report.verification.output[-4000:]
    fresh = "test_the_auto_class_loads_the_checkpoint_with_the_local_config_in_a_fresh_process"
    assert verdicts[fresh] == "passed" and verdicts["test_registry_registers_the_local_config"] == "passed"
    assert pyproject(plugin)["project"]["entry-points"][GROUP] == {
        "ToyLlamaForCausalLM": "models.toy_llama.model:ToyLlamaForCausalLM"
    }
    init = (plugin / "src/models/toy_llama/__init__.py").read_text()
    assert 'AutoConfig.register("toy_llama", ToyLlamaConfig, exist_ok=True)' in init


def test_update_merges_a_template_change_into_one_plugin_model(tmp_path):
    """``update --plugin``: the model's answers drive ``copier update`` in a clone; the user's edit survives, the
    package-level files keep theirs, and the entry point is counted once."""
    from test_update import USER_FUNCTION, add_after_docstring_line, commit_all, git, release

    from automodel_onboard.commands import update
    from automodel_onboard.render import copier_ext, copier_run

    template = tmp_path / "template"
    template.mkdir()
    shutil.copy2(REPO / "copier.yml", template / "copier.yml")
    shutil.copytree(REPO / "templates", template / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    git(template, "-c", "init.defaultBranch=main", "init", "-q")
    commit_all(template, "template v0.1.0")
    git(template, "tag", "v0.1.0")
    plugin = tmp_path / "models"
    dest = Plugin(plugin, "models")
    spec = copier_ext.spec_dict(str(OLMO), "", "olmo")
    answers = copier_run.answers_for(spec, str(OLMO), destination="plugin", plugin_package="models")
    with dest.lock():
        dest.check(spec, module_name="olmo", kind=kinds.get("dense"))
        copier_run.render(dest, answers, spec, template=template)
    model = plugin / "src/models/olmo/model.py"
    model.write_text(model.read_text() + USER_FUNCTION)
    readme = plugin / "README.md"
    readme.write_text(readme.read_text() + "\nOur own words.\n")
    git(plugin, "-c", "init.defaultBranch=main", "init", "-q")
    commit_all(plugin, "plugin with olmo")
    release(template, "v0.2.0", add_after_docstring_line("Regenerated from template v0.2.0."))

    report = update.update(plugin, ["olmo"], template=template, plugin=True)

    (result,) = report.models
    text = model.read_text()
    assert "\nRegenerated from template v0.2.0.\n" in text and text.endswith(USER_FUNCTION)
    assert (result.old_commit, result.new_commit) == ("v0.1.0", "v0.2.0")
    assert set(result.files_changed) == {"src/models/olmo/model.py", "src/models/olmo/.copier-answers.yml"}
    assert result.conflicts == () and report.ok
    assert (result.registry_entries, result.registry_text_entries, result.registry_expected) == (1, 1, 1)
    assert readme.read_text().endswith("\nOur own words.\n")


@pytest.mark.parametrize("first", [True, False], ids=["new-plugin", "second-model"])
def test_a_failure_while_installing_leaves_the_plugin_as_it_was(tmp_path, monkeypatch, first):
    from automodel_onboard.destination import journal

    plugin = tmp_path / "models"
    if not first:
        onboard_into(plugin, OLMO)
    before = tree(tmp_path)
    real_copy, calls = journal._copy_in, []

    def failing_copy(source, target):
        calls.append(target)
        if len(calls) == 4:
            raise OSError("disk full")
        real_copy(source, target)

    monkeypatch.setattr(journal, "_copy_in", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        onboard_into(plugin, OLMOE)
    assert len(calls) == 4
    assert tree(tmp_path) == before
    assert plugin.exists() != first  # a plugin folder this run created is gone again


def test_a_failing_plugin_task_writes_nothing(tmp_path, monkeypatch):
    """The task refuses in the staging copy (an entry point the checks were told to overlook): nothing lands."""
    plugin = tmp_path / "models"
    onboard_into(plugin, OLMO)
    before = tree(plugin)
    from automodel_onboard.destination import plugin as destination

    monkeypatch.setattr(destination, "entry_points", lambda path: {})  # the checks overlook the declared entry
    with pytest.raises(OnboardError) as err:
        onboard_into(plugin, OLMO, name="olmo_two")
    assert err.value.code == "render-failed" and "plugin_task" in err.value.what
    assert tree(plugin) == before


KILL_AFTER = """
import os, signal, sys
from automodel_onboard.commands.cli import main
from automodel_onboard.destination import journal

calls = []
real = journal._copy_in

def dying_copy(source, target):
    calls.append(target)
    if (target.name == "pyproject.toml") if sys.argv[1] == "pyproject" else len(calls) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(source, target)

journal._copy_in = dying_copy
main(["new", sys.argv[2], "--plugin", sys.argv[3], "--no-verify"])
"""


@pytest.mark.parametrize("kill_at", ["2", "pyproject"])
def test_a_run_killed_between_writes_is_rolled_back_by_the_next(tmp_path, kill_at):
    plugin = tmp_path / "models"
    onboard_into(plugin, OLMO)
    before = tree(plugin)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER, kill_at, str(OLMOE), str(plugin)], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    assert tree(plugin) != before, "the kill left partial files behind"
    again = subprocess.run(
        [sys.executable, "-m", "automodel_onboard.commands.cli", "new", str(OLMOE), "--plugin", str(plugin)]
        + ["--no-verify"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "was interrupted" in again.stderr + again.stdout
    entries = pyproject(plugin)["project"]["entry-points"][GROUP]
    assert set(entries) == {"OlmoForCausalLM", "OlmoeForCausalLM"}


def test_an_architecture_another_installed_plugin_declares_is_refused(tmp_path, monkeypatch):
    """What pip leaves for another plugin: its metadata with the entry point, on the path."""
    site = tmp_path / "site"
    info = site / "other_models-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other-models\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nOlmoForCausalLM = other_models.olmo.model:OlmoForCausalLM\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(OnboardError) as err:
        onboard_into(tmp_path / "models", OLMO)
    assert err.value.code == "already-registered"
    assert "another installed plugin" in err.value.what and "other_models.olmo.model:OlmoForCausalLM" in err.value.what
    assert not (tmp_path / "models").exists()


def test_a_pyproject_without_the_entry_point_table_is_refused_untouched(tmp_path):
    plugin = tmp_path / "models"
    onboard_into(plugin, OLMO)
    path = plugin / "pyproject.toml"
    path.write_text(path.read_text().replace('[project.entry-points."nemo_automodel.architectures"]\n', ""))
    before = tree(plugin)
    with pytest.raises(OnboardError) as err:
        onboard_into(plugin, OLMOE)
    assert err.value.code == "plugin-pyproject" and "table line" in err.value.what
    assert tree(plugin) == before
