"""The package as users install it: a wheel, in a fresh virtual environment, away from this repository.

The wheel is built from this tree and installed (not editable) into a new virtual environment; the heavy
dependencies (torch, transformers, NeMo AutoModel, Copier) are lent from this environment's site-packages by a path
entry, whose own ``.pth`` files (this repository's editable install among them) are not processed. Everything then
runs from a folder outside the repository, so only the installed package can answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import CONFIGS, ROOT, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this tree."""
    out = tmp_path_factory.mktemp("whl")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        cwd=out,
    )
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("automodel_onboard-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The python of a fresh virtual environment holding the wheel."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        cwd=env,
    )
    assert done.returncode == 0, done.stderr
    purelib = [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    site = Path(subprocess.check_output(purelib, text=True, cwd=env).strip())
    (site / "lent-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [str(python), "-m", "automodel_onboard.commands.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
    )


def test_the_wheel_ships_the_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "automodel_onboard/copier.yml" in names
    assert "automodel_onboard/templates/_shared/adapter/checkpoint_table.py" in names
    assert "automodel_onboard/templates/dense/{{ paths.package }}/model.py.jinja" in names
    assert not any(n.startswith(("tests/", "templates/")) for n in names)


@pytest.mark.usefixtures("without_long_runs")
def test_sandbox_and_new_run_from_the_installed_package(installed, tmp_path):
    where = subprocess.run(
        [str(installed), "-c", "import automodel_onboard, json; print(json.dumps(automodel_onboard.__file__))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    package = Path(json.loads(where.stdout)).parent
    assert package.is_relative_to(installed.parents[1]) and (package / "copier.yml").is_file(), package
    assert not package.is_relative_to(ROOT)

    made = run(installed, "sandbox", "dest", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    config = tmp_path / "qwen3.json"
    shutil.copy(CONFIGS / "Qwen__Qwen3-0.6B.json", config)
    done = run(installed, "new", str(config), "--dest", "dest", "--name", "x_gen", "--replace", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files, status = snapshot(tmp_path / "dest")
    written = {line[3:] for line in status.splitlines()}
    assert written == {
        "docs/model-coverage/llm/community/x_gen.mdx",
        "examples/llm_finetune/x_gen/x_gen_hellaswag.yaml",
        "examples/llm_finetune/x_gen/x_gen_hellaswag_peft.yaml",
        "nemo_automodel/_transformers/registry.py",
        "nemo_automodel/components/models/x_gen/.copier-answers.yml",
        "nemo_automodel/components/models/x_gen/__init__.py",
        "nemo_automodel/components/models/x_gen/model.py",
        "nemo_automodel/components/models/x_gen/parallelization.py",
        "nemo_automodel/components/models/x_gen/state_dict_adapter.py",
        "tests/unit_tests/models/x_gen/test_x_gen_model.py",
        "tests/unit_tests/models/x_gen/test_x_gen_recipe.py",
    }
    assert "generated tests: PASSED" in done.stdout
    assert "(none: already registered)" not in done.stdout
    answers = (tmp_path / "dest" / "nemo_automodel/components/models/x_gen/.copier-answers.yml").read_text()
    assert f"_src_path: {package}" in answers, "the template is the installed package's own"


def test_a_template_root_without_copier_yml_is_an_error_not_a_copy(installed, tmp_path):
    package = Path(
        subprocess.check_output(
            [str(installed), "-c", "import automodel_onboard; print(automodel_onboard.__file__)"],
            text=True,
            cwd=tmp_path,
        ).strip()
    ).parent
    (package / "copier.yml").rename(package / "copier.yml.away")
    try:
        assert run(installed, "sandbox", "dest", cwd=tmp_path).returncode == 0
        before = snapshot(tmp_path / "dest")
        refused = run(
            installed,
            "new",
            str(CONFIGS / "Qwen__Qwen3-0.6B.json"),
            "--dest",
            "dest",
            "--name",
            "x_gen",
            "--replace",
            "--no-verify",
            cwd=tmp_path,
        )
    finally:
        (package / "copier.yml.away").rename(package / "copier.yml")
    assert refused.returncode == 2
    assert "has no copier.yml" in refused.stderr and "Traceback" not in refused.stderr
    assert snapshot(tmp_path / "dest") == before


def test_render_all_from_a_wheel_asks_for_the_configs(installed, tmp_path):
    """The fixtures are not in the wheel: render-all says so instead of rendering nothing."""
    refused = run(installed, "render-all", "--synthetic", "none", cwd=tmp_path)
    assert refused.returncode == 2
    assert "no fixture configs to render" in refused.stderr and "--configs" in refused.stderr
    assert "Traceback" not in refused.stderr
