"""Nothing lost: concurrent runs, stale journals, symlinks, huge configs, environment faults and signals.

Every case runs against a fresh scratch checkout and compares every file (and git's view) before and after.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, registry_excerpt, snapshot

from automodel_onboard.commands.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, main
from automodel_onboard.destination.checkout import MODELS, REGISTRY
from automodel_onboard.destination.registry_patch import read_registry
from automodel_onboard.errors import OnboardError

QWEN3 = ROOT / "examples" / "configs" / "Qwen3-0.6B.json"
CLI = [sys.executable, "-m", "automodel_onboard.commands.cli"]


def toy(folder: Path, letter: str, **changes) -> Path:
    """The bundled Qwen3 config under an architecture of its own (ToyAForCausalLM, ...), so runs do not collide."""
    config = {**json.loads(QWEN3.read_text()), "architectures": [f"Toy{letter.upper()}ForCausalLM"], **changes}
    path = folder / f"toy_{letter}.json"
    path.write_text(json.dumps(config))
    return path


def start_new(config: Path, dest: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "new", str(config), "--dest", str(dest), "--name", name, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err_out=err)
    return code, out.getvalue(), err.getvalue()


def model_files(dest: Path, name: str) -> set[str]:
    files, _ = snapshot(dest)
    return {path for path in files if f"/{name}/" in path or path.endswith(f"/{name}.mdx")}


def git(dest: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)


# --------------------------------------------------------------------------------------------------------------------
# One writer per checkout


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_runs_with_different_names_all_land(checkout, tmp_path, round_):
    letters = "abc"
    procs = {letter: start_new(toy(tmp_path, letter), checkout, f"toy_{letter}", "--no-verify") for letter in letters}
    results = {letter: finish(proc) for letter, proc in procs.items()}
    registry = read_registry(checkout / REGISTRY).arch_mapping
    for letter, (code, out, err) in results.items():
        assert code == 0, err
        architecture = f"Toy{letter.upper()}ForCausalLM"
        assert registry[architecture] == (f"nemo_automodel.components.models.toy_{letter}.model", architecture)
        reported = registry_excerpt(out)
        assert f'("nemo_automodel.components.models.toy_{letter}.model", "{architecture}"),' in reported
        assert reported in (checkout / REGISTRY).read_text(), reported
        assert {
            f"{MODELS}/toy_{letter}/model.py",
            f"{MODELS}/toy_{letter}/state_dict_adapter.py",
            f"tests/unit_tests/models/toy_{letter}/test_toy_{letter}_model.py",
        } <= model_files(checkout, f"toy_{letter}")
    _, status = snapshot(checkout)
    assert {line[3:].split("/")[0] for line in status.splitlines()} == {"nemo_automodel", "tests", "examples", "docs"}


def test_new_waits_for_the_run_holding_the_checkout(checkout, tmp_path):
    from automodel_onboard.destination import lock

    with lock.held(checkout):
        proc = start_new(toy(tmp_path, "a"), checkout, "toy_a", "--no-verify")
        _wait_for(proc, "waiting for it to finish")
        time.sleep(1)
        assert proc.poll() is None and not (checkout / MODELS / "toy_a").exists()
    code, _, err = finish(proc)
    assert code == 0, err
    assert read_registry(checkout / REGISTRY).arch_mapping["ToyAForCausalLM"][0].endswith("toy_a.model")


def test_concurrent_runs_with_the_same_name_leave_the_winner_whole(checkout, tmp_path):
    config = toy(tmp_path, "a")
    results = [finish(proc) for proc in [start_new(config, checkout, "toy_a", "--no-verify") for _ in range(2)]]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, EXIT_BAD_INPUT], results
    loser = next(err for code, _, err in results if code)
    assert "already exists" in loser and "Traceback" not in loser
    assert read_registry(checkout / REGISTRY).arch_mapping["ToyAForCausalLM"][0].endswith("toy_a.model")
    assert f"{MODELS}/toy_a/model.py" in model_files(checkout, "toy_a")
    assert len(model_files(checkout, "toy_a")) >= 8


# --------------------------------------------------------------------------------------------------------------------
# Stale journals: recovery undoes only what is still exactly as the interrupted run left it

KILL_AT = """
import os, signal, sys
from automodel_onboard.commands.cli import main
from automodel_onboard.destination import journal

calls = []
real = journal._copy_in

def dying_copy(source, target):
    calls.append(target)
    if (target.name == "registry.py") if sys.argv[1] == "registry" else len(calls) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(source, target)

journal._copy_in = dying_copy
main(["new", sys.argv[2], "--dest", sys.argv[3], "--name", sys.argv[4], "--no-verify"])
"""


def killed_run(config: Path, dest: Path, name: str, at: str, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, at, str(config), str(dest), name], env=env, capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.fixture
def committed(checkout):
    git(checkout, "add", "-A")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base", "--allow-empty")
    return checkout


def test_stale_journal_after_a_manual_cleanup_keeps_a_later_registry_edit(committed, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    killed_run(toy(tmp_path, "a"), committed, "toy_a", "4", env)
    git(committed, "checkout", ".")
    git(committed, "clean", "-fdq")
    registry = committed / REGISTRY
    registry.write_text(registry.read_text() + "# my uncommitted edit\n")
    code, out, err = finish(start_new(toy(tmp_path, "b"), committed, "toy_b", "--no-verify", env=env))
    assert code == 0, err
    text = registry.read_text()
    assert "# my uncommitted edit" in text and "ToyBForCausalLM" in text and "ToyAForCausalLM" not in text
    assert "interrupted" in out + err


def test_stale_journal_never_touches_a_model_onboarded_since(committed, tmp_path):
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    killed_run(toy(tmp_path, "a"), committed, "toy_a", "registry", {**os.environ, **cache})
    git(committed, "clean", "-fdq")
    # The same model onboarded again by a run that kept its journal elsewhere, then committed.
    code, _, err = finish(
        start_new(
            toy(tmp_path, "a"), committed, "toy_a", "--no-verify", env={"XDG_CACHE_HOME": str(tmp_path / "elsewhere")}
        )
    )
    assert code == 0, err
    git(committed, "add", "-A")
    git(committed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy_a")
    onboarded = model_files(committed, "toy_a")
    before = {p: snapshot(committed)[0][p] for p in onboarded}
    code, out, err = finish(start_new(toy(tmp_path, "b"), committed, "toy_b", "--no-verify", env=cache))
    assert code == 0, err
    after = snapshot(committed)[0]
    assert {p: after.get(p) for p in onboarded} == before
    registry = read_registry(committed / REGISTRY).arch_mapping
    assert {"ToyAForCausalLM", "ToyBForCausalLM"} <= set(registry)
    assert "left alone because changed since" in out + err
    assert f"{MODELS}/toy_a/model.py" in out + err


def before_installing(monkeypatch, file_name: str, action) -> None:
    """Run ``action`` once, as the install is about to move in the first file called ``file_name``."""
    from automodel_onboard.destination import journal

    real, done = journal._copy_in, []

    def copy(source, target):
        if target.name == file_name and not done:
            done.append(target)
            action()
        real(source, target)

    monkeypatch.setattr(journal, "_copy_in", copy)


def test_a_run_that_fails_installing_keeps_another_runs_file(checkout, tmp_path, monkeypatch):
    """A file that appears while rendering is reported and kept; only this run's own writes are undone."""
    planted = checkout / MODELS / "toy_a" / "model.py"
    before_installing(monkeypatch, "__init__.py", lambda: planted.write_text("# another run's file\n"))
    before = snapshot(checkout)[0]
    code, _, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == EXIT_BAD_INPUT and "appeared in the destination" in err
    after = snapshot(checkout)[0]
    assert after.pop(str(planted.relative_to(checkout))) and planted.read_text() == "# another run's file\n"
    assert after == before


def test_a_registry_edited_while_rendering_is_never_overwritten(checkout, tmp_path, monkeypatch):
    """An editor saves registry.py while the run renders: the run stops with nothing kept, the edit survives."""
    registry = checkout / REGISTRY
    before_installing(
        monkeypatch, "model.py", lambda: registry.write_text(registry.read_text() + "# saved by an editor\n")
    )
    before = snapshot(checkout)[0]
    code, _, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == EXIT_BAD_INPUT and "registry.py changed in the destination while rendering" in err
    after = snapshot(checkout)[0]
    assert registry.read_text().endswith("# saved by an editor\n") and "ToyAForCausalLM" not in registry.read_text()
    assert {p for p in after if after[p] != before.get(p)} == {str(REGISTRY)}


# --------------------------------------------------------------------------------------------------------------------
# Sizes, refused before anything is built


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"num_hidden_layers": 10**9}, "size-limit", "num_hidden_layers"),
        ({"num_hidden_layers": 10**6}, "size-limit", "num_hidden_layers"),
        ({"layer_types": ["full_attention"] * 100_000}, "invalid-value", "layer_types"),
        ({"num_experts": 10**4, "num_experts_per_tok": 2, "model_type": "qwen3_moe"}, "size-limit", "num_experts"),
        ({"num_experts": 10**6, "num_experts_per_tok": 2, "model_type": "qwen3_moe"}, "size-limit", "num_experts"),
        (
            {"num_experts": 512, "num_experts_per_tok": 2, "num_hidden_layers": 128, "model_type": "qwen3_moe"},
            "size-limit",
            "num_experts",
        ),
        ({"vocab_size": 10**12}, "size-limit", "vocab_size"),
    ],
)
def test_absurd_sizes_are_refused_by_field(tmp_path, changes, code, field):
    code_, out, err = run("classify", str(toy(tmp_path, "a", **changes)), "--json")
    assert code_ == EXIT_BAD_INPUT, err
    error = json.loads(out)
    assert error["error"] == code
    assert error["where"].endswith(field)
    assert "Traceback" not in err


MOE_FIXTURES = [
    "Qwen__Qwen3-235B-A22B.json",
    "Qwen__Qwen2-57B-A14B.json",
    "zai-org__GLM-4.5.json",
    "allenai__OLMoE-1B-7B-0125.json",
    "meta-llama__Llama-4-Maverick-17B-128E-Instruct.json",
]


@pytest.mark.parametrize("fixture", MOE_FIXTURES)
def test_inventory_from_few_experts_equals_the_full_build(config, fixture):
    """The inventory derived from two small builds names and shapes every tensor the full model has."""
    import transformers

    from automodel_onboard.model import reference

    raw = config(fixture)
    classes = reference.reference_classes(raw["architectures"][0], raw["model_type"])
    full_config = reference.build_config(raw, raw["model_type"])
    model_cls = getattr(transformers, classes.model_class)
    derived = reference._derived_tensors(model_cls, full_config)
    assert derived is not None, "built with every expert"
    full, tied = reference._tensors(reference._build(model_cls, full_config))
    assert set(derived[0]) == set(full)
    assert derived[0] == full and derived[1] == tied


# --------------------------------------------------------------------------------------------------------------------
# Our errors, never a traceback, with exit statuses apart from "tests failed"


def test_deeply_nested_json_and_bad_mrope_sections_are_our_errors(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' * 1000 + "1" + "}" * 1000)
    code, _, err = run("classify", str(deep))
    assert code == EXIT_BAD_INPUT and "nested too deeply" in err
    rope = {"rope_type": "default", "mrope_section": [0, 0, 0]}
    code, out, err = run("classify", str(toy(tmp_path, "a", rope_scaling=rope)), "--json")
    assert code == EXIT_BAD_INPUT and json.loads(out)["error"] == "invalid-value"
    assert "mrope_section" in err


def test_registry_that_is_not_python_is_refused_untouched(checkout, tmp_path):
    registry = checkout / REGISTRY
    registry.write_text(registry.read_text() + "\ndef broken(:\n")
    before = snapshot(checkout)
    code, out, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == EXIT_BAD_INPUT, err
    assert "not valid Python" in err and "Traceback" not in err
    assert snapshot(checkout) == before


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8-sig"])
def test_registry_in_another_valid_encoding_is_patched_in_it(checkout, tmp_path, encoding):
    registry = checkout / REGISTRY
    text = registry.read_text()
    if encoding == "latin-1":
        text = "# -*- coding: latin-1 -*-\n# Gr\u00fc\u00dfe\n" + text.encode("latin-1", "replace").decode("latin-1")
    registry.write_bytes(text.encode(encoding))
    code, out, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == 0, err
    data = registry.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    patched = data.decode(encoding)
    assert patched.startswith(text.removeprefix("\ufeff")[:40])
    assert read_registry(registry).arch_mapping["ToyAForCausalLM"][0].endswith("toy_a.model")


def test_unwritable_destination_is_an_environment_fault(checkout, tmp_path, monkeypatch):
    """A write the system refuses inside the checkout (as on a read-only folder): exit 3, nothing kept."""
    import automodel_onboard.files as files

    real = os.replace

    def refusing(src, dst, *args, **kwargs):
        if str(checkout) in str(dst):
            raise PermissionError(13, "Permission denied", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(files.os, "replace", refusing)
    before = snapshot(checkout)
    code, _, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == EXIT_ENVIRONMENT, err
    assert "Permission denied" in err and "Traceback" not in err
    monkeypatch.setattr(files.os, "replace", real)
    assert snapshot(checkout) == before


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"HF_HOME": "{file}"}, ["classify", "Qwen/Qwen3-0.6B", "--no-inventory"]),
        ({"XDG_CACHE_HOME": "/dev/null"}, ["new", "{toy}", "--dest", "{dest}", "--name", "toy_a", "--no-verify"]),
    ],
)
def test_unusable_caches_are_environment_faults(checkout, tmp_path, env, args):
    afile = tmp_path / "a-file"
    afile.write_text("")
    fill = {"file": str(afile), "toy": str(toy(tmp_path, "a")), "dest": str(checkout)}
    before = snapshot(checkout)
    proc = subprocess.run(
        [*CLI, *(a.format(**fill) for a in args)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **{k: v.format(**fill) for k, v in env.items()}},
        timeout=600,
    )
    assert proc.returncode == EXIT_ENVIRONMENT, proc.stderr
    assert "error: " in proc.stderr and "how to fix" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(checkout) == before


def test_dangling_symlink_at_the_model_folder_is_refused(checkout, tmp_path):
    (checkout / MODELS / "toy_a").symlink_to(tmp_path / "nowhere")
    before = snapshot(checkout)
    code, out, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == EXIT_BAD_INPUT and "symlink" in err and "Traceback" not in err
    assert snapshot(checkout) == before and not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------------------------------------------------
# Symlinks


@pytest.mark.parametrize("linked", ["docs/model-coverage/llm", str(MODELS)])
def test_a_folder_linked_outside_the_checkout_is_refused_before_writing(checkout, tmp_path, linked):
    outside = tmp_path / "outside"
    (checkout / linked).rename(outside)
    (checkout / linked).symlink_to(outside)
    listing = sorted(p.name for p in outside.rglob("*"))
    code, out, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == EXIT_BAD_INPUT, err
    assert "outside the checkout" in err
    assert sorted(p.name for p in outside.rglob("*")) == listing


def test_a_symlinked_registry_is_patched_through_its_link(checkout, tmp_path):
    registry = checkout / REGISTRY
    real = registry.with_name("registry_impl.py")
    registry.rename(real)
    registry.symlink_to(real.name)
    code, _, err = run("new", str(toy(tmp_path, "a")), "--dest", str(checkout), "--name", "toy_a", "--no-verify")
    assert code == 0, err
    assert registry.is_symlink() and os.readlink(registry) == real.name
    assert "ToyAForCausalLM" in real.read_text()


# --------------------------------------------------------------------------------------------------------------------
# Only regular files are configs; the Hub's size is checked before the body is fetched


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_only_regular_files_are_read_as_configs(tmp_path, kind):
    path = Path("/dev/zero") if kind == "device" else tmp_path / "fifo"
    if kind == "fifo":
        os.mkfifo(path)
    proc = subprocess.run([*CLI, "classify", str(path), "--no-inventory"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_BAD_INPUT
    assert "not a regular file" in proc.stderr


def test_a_huge_config_on_the_hub_is_refused_before_download(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    from automodel_onboard.model import source

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **_: SimpleNamespace(size=300 << 20))

    def no_download(*args, **kwargs):
        raise AssertionError("the body was fetched")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(OnboardError) as info:
        source.load_source("someone/huge")
    assert info.value.code == "config-too-large"
    assert str(300 << 20) in info.value.what
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------------------------
# Signals: a clean one-line ending, no orphans, no temporary folders


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 300) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, seen
        line = proc.stderr.readline()
        assert line or proc.poll() is None, seen
        seen += line
    return seen


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_sigterm_during_verification_ends_cleanly_without_orphans(checkout, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = start_new(toy(tmp_path, "a"), checkout, "toy_a", env={"TMPDIR": str(temp)})
    _wait_for(proc, "passed  test_")  # the suite is under way: a verdict has been reported
    deadline = time.monotonic() + 120
    while not _processes_mentioning(str(checkout)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(checkout)), "the generated tests never started"
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == EXIT_INTERRUPTED, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    time.sleep(1)
    assert _processes_mentioning(str(checkout)) == []
    assert list(temp.iterdir()) == []


def test_ctrl_c_ends_with_one_line(checkout, tmp_path):
    proc = start_new(toy(tmp_path, "a"), checkout, "toy_a", "--no-verify")
    _wait_for(proc, "reading the config")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == EXIT_INTERRUPTED
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err


def test_a_killed_runs_temporary_folder_is_swept_by_the_next_run(checkout, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = start_new(toy(tmp_path, "a"), checkout, "toy_a", "--no-verify", env={"TMPDIR": str(temp)})
    _wait_for(proc, "rendering the templates")
    left = list(temp.iterdir())
    proc.kill()
    proc.wait()
    assert [p.name.startswith(f"automodel-onboard-run-{proc.pid}-") for p in left] == [True]
    subprocess.run(
        [*CLI, "classify", str(QWEN3), "--no-inventory"],
        env={**os.environ, "TMPDIR": str(temp)},
        check=True,
        capture_output=True,
    )
    assert list(temp.iterdir()) == []


def test_an_oversized_local_config_is_refused_unparsed(tmp_path):
    big = tmp_path / "config.json"
    big.write_text('{"pad": "' + "x" * (5 << 20) + '"}')
    code, out, err = run("classify", str(big), "--json", "--no-inventory")
    assert code == EXIT_BAD_INPUT and json.loads(out)["error"] == "config-too-large"


def test_the_registry_task_waits_for_the_lock_of_its_checkout(checkout):
    """Copier's task, run in a checkout another run holds, waits, then registers (one writer at a time)."""
    from automodel_onboard.destination import lock

    task = [
        sys.executable,
        "-m",
        "automodel_onboard.destination.registry_task",
        "--registry",
        str(REGISTRY),
        "--architecture",
        "ToyAForCausalLM",
        "--module",
        "nemo_automodel.components.models.toy_a.model",
    ]
    with lock.held(checkout):
        proc = subprocess.Popen(task, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert proc.poll() is None, "the task did not wait"
        assert "ToyAForCausalLM" not in (checkout / REGISTRY).read_text()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "waiting for it to finish" in err
    assert read_registry(checkout / REGISTRY).arch_mapping["ToyAForCausalLM"][0].endswith("toy_a.model")


def test_a_defect_is_one_line_and_a_log(monkeypatch, tmp_path):
    from automodel_onboard.commands import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def broken(*args):
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "cmd_classify", broken)
    code, _, err = run("classify", str(QWEN3))
    assert code == cli.EXIT_INTERNAL
    assert err.startswith("error: internal error: ValueError: a bug") and "Traceback" not in err
    log = Path(err.split("traceback in ")[1].strip())
    assert log.parent == tmp_path / "automodel-onboard" / "logs" and "ValueError: a bug" in log.read_text()
