"""Regeneration with ``copier update``: template changes merge with user edits, conflicts are reported, migrations
run when their version is crossed, and the registry keeps exactly one entry."""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, ROOT

from automodel_onboard import verify
from automodel_onboard.commands import update
from automodel_onboard.destination.checkout import MODELS, TESTS, Checkout
from automodel_onboard.destination.sandbox import make_sandbox
from automodel_onboard.errors import OnboardError
from automodel_onboard.migrations import imports, tied_weights
from automodel_onboard.render import copier_ext, copier_run

NAME = "qwen3_gen"
MODEL = CONFIGS / "Qwen__Qwen3-0.6B.json"
# The template file every dense model.py is rendered from (the kind's own file only extends it).
MODEL_TEMPLATE = Path("templates", "_shared", "model.py.jinja")
MODEL_FILE = MODELS / NAME / "model.py"
ANSWERS = MODELS / NAME / ".copier-answers.yml"
OLD_TIE_IMPORT = "from nemo_automodel.components.models.common.tie_word_embeddings import TieSupport"
NEW_TIE_IMPORT = "from nemo_automodel.shared.tied_weights import TieSupport"
USER_FUNCTION = "\n\ndef user_helper() -> int:\n    return 42\n"
IDENTITY = ("-c", "user.name=automodel-onboard tests", "-c", "user.email=tests@automodel-onboard.invalid")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--no-verify", "-m", message)


def release(template: Path, version: str, edit) -> None:
    """Change the template repository with ``edit(text) -> text`` on model.py.jinja, commit and tag ``version``."""
    path = template / MODEL_TEMPLATE
    path.write_text(edit(path.read_text()))
    commit_all(template, f"template {version}")
    git(template, "tag", version)


def first_docstring_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith('"""'))


def add_after_docstring_line(addition: str):
    return lambda text: text.replace(first_docstring_line(text), first_docstring_line(text) + "\n" + addition, 1)


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """This project's copier.yml and templates as a template repository tagged v0.1.0."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    shutil.copy2(ROOT / "copier.yml", repo / "copier.yml")
    shutil.copytree(ROOT / "templates", repo / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    commit_all(repo, "template v0.1.0")
    git(repo, "tag", "v0.1.0")
    return repo


@pytest.fixture(scope="module")
def onboarded(template_repo, tmp_path_factory) -> Path:
    """A scratch checkout with Qwen3 onboarded from v0.1.0 as qwen3_gen (re-pointing the registry), committed."""
    dest = make_sandbox(tmp_path_factory.mktemp("onboarded") / "checkout")
    spec = copier_ext.spec_dict(str(MODEL), "", NAME)
    answers = copier_run.answers_for(spec, str(MODEL), module_name=NAME, replace=True)
    copier_run.render(Checkout(dest), answers, spec, template=template_repo)
    commit_all(dest, "onboard qwen3_gen")
    return dest


@pytest.fixture
def project(onboarded, template_repo, tmp_path) -> tuple[Path, Path]:
    """Fresh copies of the onboarded checkout and of the template repository, for one test to change."""
    checkout, template = tmp_path / "checkout", tmp_path / "template"
    subprocess.run(["cp", "-a", str(onboarded), str(checkout)], check=True)
    subprocess.run(["cp", "-a", str(template_repo), str(template)], check=True)
    return checkout, template


@pytest.mark.slow
@pytest.mark.usefixtures("without_long_runs")
def test_template_change_and_user_edit_both_survive(project):
    checkout, template = project
    model = checkout / MODEL_FILE
    model.write_text(model.read_text() + USER_FUNCTION)
    commit_all(checkout, "user edit")
    registry_before = Checkout(checkout).registry.read_bytes()
    release(template, "v0.2.0", add_after_docstring_line("Regenerated from template v0.2.0."))

    report = update.update(checkout, [NAME], template=template)

    (result,) = report.models
    text = model.read_text()
    assert "\nRegenerated from template v0.2.0.\n" in text
    assert text.endswith(USER_FUNCTION)
    assert (result.old_commit, result.new_commit) == ("v0.1.0", "v0.2.0")
    assert yaml.safe_load((checkout / ANSWERS).read_text())["_commit"] == "v0.2.0"
    assert str(MODEL_FILE) in result.files_changed and str(ANSWERS) in result.files_changed
    assert result.conflicts == () and report.ok
    assert (result.registry_entries, result.registry_text_entries) == (1, 1)
    assert Checkout(checkout).registry.read_bytes() == registry_before
    verification = verify.run_generated_tests(checkout, TESTS / NAME)
    assert verification.verdicts and verification.passed, verification.output[-3000:]


@pytest.mark.slow
def test_conflicting_edit_is_reported_with_inline_markers(project):
    checkout, template = project
    model = checkout / MODEL_FILE
    line = first_docstring_line(model.read_text())
    model.write_text(model.read_text().replace(line, line + " Edited by the user.", 1))
    commit_all(checkout, "user edit on the docstring's first line")
    release(template, "v0.2.0", lambda t: t.replace(first_docstring_line(t), first_docstring_line(t) + " (v0.2.0)", 1))
    before = snapshot(checkout)

    out = io.StringIO()
    assert update.cmd_update(_args(checkout, template), out, io.StringIO()) == 1  # conflicts: exit 1

    assert [line.strip() for line in out.getvalue().splitlines() if "CONFLICT" in line] == [f"CONFLICT {MODEL_FILE}"]
    text = model.read_text()
    assert "<<<<<<< before updating" in text and ">>>>>>> after updating" in text
    assert line + " Edited by the user." in text and line + " (v0.2.0)" in text
    after = snapshot(checkout)
    changed = {path for path in after if after[path] != before.get(path)} | (before.keys() - after.keys())
    assert changed == {str(MODEL_FILE), str(ANSWERS)}


def _args(checkout: Path, template: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    update.add_update_parser(parser.add_subparsers())
    return parser.parse_args(["update", "--dest", str(checkout), "--name", NAME, "--template", str(template)])


@pytest.fixture
def untagged(tmp_path) -> tuple[Path, Path]:
    """A template repository without tags (a plain clone of main) and a checkout onboarded from it, committed."""
    repo = tmp_path / "template"
    repo.mkdir()
    shutil.copy2(ROOT / "copier.yml", repo / "copier.yml")
    shutil.copytree(ROOT / "templates", repo / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "-c", "init.defaultBranch=main", "init", "-q")
    commit_all(repo, "template")
    dest = make_sandbox(tmp_path / "checkout")
    spec = copier_ext.spec_dict(str(MODEL), "", NAME)
    answers = copier_run.answers_for(spec, str(MODEL), module_name=NAME, replace=True)
    copier_run.render(Checkout(dest), answers, spec, template=repo)
    commit_all(dest, "onboard qwen3_gen")
    return dest, repo


@pytest.mark.slow
def test_migration_runs_on_an_update_from_a_clone_without_tags(untagged):
    """No tags anywhere: the update reports commits, and the import migration rewrites the old imports."""
    checkout, template = untagged
    first = yaml.safe_load((checkout / ANSWERS).read_text())["_commit"]
    head = git(template, "rev-parse", "--short", "HEAD").strip()
    assert first == head  # git describe without tags: the commit
    user_test = checkout / "tests" / "unit_tests" / "models" / NAME / "test_user.py"
    user_code = f"{OLD_TIE_IMPORT}\n\n\ndef test_user_policy():\n    assert TieSupport.BOTH.value == 'both'\n"
    user_test.write_text(user_code)
    commit_all(checkout, "user test importing TieSupport from its old home")
    path = template / MODEL_TEMPLATE
    path.write_text(add_after_docstring_line("A template change.")(path.read_text()))
    commit_all(template, "template change")

    (result,) = update.update(checkout, [NAME], template=template).models

    later = yaml.safe_load((checkout / ANSWERS).read_text())["_commit"]
    assert (result.old_commit, result.new_commit) == (first, later) and first != later
    assert later == git(template, "rev-parse", "--short", "HEAD").strip()
    assert user_test.read_text() == user_code.replace(OLD_TIE_IMPORT, NEW_TIE_IMPORT)
    for file in tied_weights.model_files(checkout, NAME):
        assert OLD_TIE_IMPORT not in file.read_text(), file
    assert "A template change." in (checkout / MODEL_FILE).read_text()
    commit_all(checkout, "after the update")
    before = snapshot(checkout)
    path.write_text(add_after_docstring_line("Another change.")(path.read_text()))
    commit_all(template, "another template change")
    update.update(checkout, [NAME], template=template)  # the migration again: nothing left to rewrite
    changed = {p for p, digest in snapshot(checkout).items() if before.get(p) != digest}
    assert changed == {str(MODEL_FILE), str(ANSWERS)}


def test_dirty_destination_is_refused(project):
    checkout, template = project
    release(template, "v0.2.0", add_after_docstring_line("Regenerated from template v0.2.0."))
    (checkout / "notes.txt").write_text("uncommitted")
    before = snapshot(checkout)
    with pytest.raises(OnboardError) as info:
        update.update(checkout, [NAME], template=template)
    assert info.value.code == "dirty-destination"
    assert "notes.txt" in info.value.what
    assert "commit or stash" in info.value.fix
    assert snapshot(checkout) == before


def test_a_checkout_outside_git_is_refused(project):
    checkout, _ = project
    shutil.rmtree(checkout / ".git")
    with pytest.raises(OnboardError) as info:
        update.update(checkout, [NAME])
    assert info.value.code == "not-a-git-repo"


def test_unknown_model_names_the_onboarded_ones(project):
    checkout, _ = project
    with pytest.raises(OnboardError) as info:
        update.update(checkout, ["llama"])
    assert info.value.code == "not-onboarded"
    assert NAME in info.value.fix


def test_the_command_line_takes_a_name_or_all():
    parser = argparse.ArgumentParser()
    update.add_update_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["update", "--dest", "d", "--name", "a", "--name", "b", "--vcs-ref", "v0.2.0"])
    assert (args.name, args.all, args.vcs_ref, args.func) == (["a", "b"], False, "v0.2.0", update.cmd_update)
    assert parser.parse_args(["update", "--dest", "d", "--all"]).all
    with pytest.raises(SystemExit):
        parser.parse_args(["update", "--dest", "d", "--all", "--name", "a"])


def test_copier_yml_runs_the_migration_on_every_update_after_the_merge():
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    (migration,) = [m for m in config["_migrations"] if "automodel_onboard.migrations.tied_weights" in m["command"]]
    assert "version" not in migration  # templates are versioned by commit: a clone of main has no tags
    assert "'after'" in migration["when"]


def test_registry_text_count_sees_a_repeated_key(tmp_path):
    registry = tmp_path / "registry.py"
    registry.write_text(
        "from collections import OrderedDict\n\n"
        "MODEL_ARCH_MAPPING = OrderedDict(\n    [\n"
        '        ("ToyForCausalLM", ("a.model", "ToyForCausalLM")),\n'
        '        ("OtherForCausalLM", ("b.model", "ToyForCausalLM")),\n'
        '        (\n            "ToyForCausalLM",\n            ("c.model", "ToyForCausalLM"),\n        ),\n'
        "    ]\n)\n"
    )
    assert update.registry_counts(registry, "ToyForCausalLM") == (1, 2)
    assert update.registry_counts(registry, "OtherForCausalLM") == (1, 1)
    assert update.registry_counts(registry, "MissingForCausalLM") == (0, 0)


# ---------------------------------------------------------------------------------------------------------------------
# The import-moving engine of the migrations

OLD_HOME = "nemo_automodel.components.models.common.tie_word_embeddings"


def test_moved_name_leaves_a_shared_import_and_lands_in_sorted_position():
    source = (
        "import torch\n\n"
        "from nemo_automodel.components.models.common import BackendConfig\n"
        f"from {OLD_HOME} import TieSupport as TS, tie_policy\n"
        "from nemo_automodel.shared.utils import dtype_from_str\n\n\n"
        "def user_code():\n    return TS, tie_policy\n"
    )
    out = imports.rewrite_source(source, tied_weights.MOVES)
    assert out == (
        "import torch\n\n"
        "from nemo_automodel.components.models.common import BackendConfig\n"
        f"from {OLD_HOME} import tie_policy\n"
        "from nemo_automodel.shared.tied_weights import TieSupport as TS\n"
        "from nemo_automodel.shared.utils import dtype_from_str\n\n\n"
        "def user_code():\n    return TS, tie_policy\n"
    )
    assert imports.rewrite_source(out, tied_weights.MOVES) == out


def test_moved_name_joins_an_existing_exploded_import_inside_a_function():
    source = (
        "def test_user():\n"
        "    from nemo_automodel.components.models.common import (\n"
        "        BackendConfig,\n"
        "        compute_lm_head_logits,\n"
        "    )\n"
        "    from nemo_automodel.components.models.common.hf_checkpointing_mixin import HFCheckpointingMixin\n"
        "    return BackendConfig, HFCheckpointingMixin\n"
    )
    out = imports.rewrite_source(source, tied_weights.MOVES)
    assert out == (
        "def test_user():\n"
        "    from nemo_automodel.components.models.common import (\n"
        "        BackendConfig,\n"
        "        HFCheckpointingMixin,\n"
        "        compute_lm_head_logits,\n"
        "    )\n"
        "    return BackendConfig, HFCheckpointingMixin\n"
    )


def test_files_that_do_not_parse_are_skipped_untouched(tmp_path):
    conflicted = tmp_path / "model.py"
    text = f"<<<<<<< before updating\n{OLD_TIE_IMPORT}\n=======\n{NEW_TIE_IMPORT}\n>>>>>>> after updating\n"
    conflicted.write_text(text)
    clean = tmp_path / "other.py"
    clean.write_text(f"{OLD_TIE_IMPORT}\n")
    results = imports.rewrite_files([conflicted, clean], tied_weights.MOVES)
    assert [(r.changed, bool(r.skipped)) for r in results] == [(False, True), (True, False)]
    assert conflicted.read_text() == text
    assert clean.read_text() == f"{NEW_TIE_IMPORT}\n"


def test_plain_copier_update_works_as_documented(project):
    """`copier update -a <answers>` without this tool's wrapper: Copier's own merge, our migration, one entry."""
    checkout, template = project
    model = checkout / MODEL_FILE
    model.write_text(model.read_text() + USER_FUNCTION)
    commit_all(checkout, "user edit")
    registry_before = Checkout(checkout).registry.read_bytes()
    answers = checkout / ANSWERS
    answers.write_text(
        answers.read_text().replace(
            f"_src_path: {yaml.safe_load(answers.read_text())['_src_path']}", f"_src_path: {template}"
        )
    )
    commit_all(checkout, "point the answers at the copied template")
    release(template, "v0.2.0", add_after_docstring_line("Regenerated from template v0.2.0."))
    result = subprocess.run(
        [sys.executable, "-m", "copier", "update", "--trust", "--defaults", "-a", str(ANSWERS)],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = model.read_text()
    assert "\nRegenerated from template v0.2.0.\n" in text and text.endswith(USER_FUNCTION)
    assert NEW_TIE_IMPORT in text and OLD_TIE_IMPORT not in text
    assert yaml.safe_load(answers.read_text())["_commit"] == "v0.2.0"
    assert Checkout(checkout).registry.read_bytes() == registry_before
