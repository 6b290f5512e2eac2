"""The ``classify`` command as a user runs it: output, exit status, JSON errors, and what it imports."""

from __future__ import annotations

import io
import json

import pytest
from conftest import CONFIGS, ROOT, SPEC_KEYS, run_cli

from automodel_onboard.commands.cli import main

EXAMPLE = ROOT / "examples" / "configs" / "Qwen3-0.6B.json"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err_out=err)
    return code, out.getvalue(), err.getvalue()


def test_summary_of_the_bundled_example():
    code, out, err = _run("classify", str(EXAMPLE))
    assert (code, err) == (0, "")
    assert "Qwen3ForCausalLM  (model_type qwen3)" in out
    assert "kind:          dense" in out
    assert "16 heads / 8 kv (gqa), head_dim 128 explicit" in out
    assert "parameters:    total 596.05M; tiny test config 45.28K" in out


def test_json_has_the_documented_keys():
    code, out, _ = _run("classify", str(CONFIGS / "Qwen__Qwen2-57B-A14B.json"), "--json")
    spec = json.loads(out)
    assert code == 0
    assert SPEC_KEYS <= set(spec)
    assert spec["kind"] == "moe"
    assert spec["params"]["active"] < spec["params"]["total"]


@pytest.mark.parametrize("as_json", [False, True])
def test_unsupported_exits_2_with_the_reason_on_stderr(as_json):
    argv = ["classify", str(CONFIGS / "facebook__bart-large.json"), "--no-inventory"] + (["--json"] if as_json else [])
    code, out, err = _run(*argv)
    assert code == 2
    assert "is not supported" in err and "encoder-decoder" in err
    if as_json:
        assert json.loads(out)["error"] == "unsupported"
    else:
        assert out == ""


def test_invalid_input_exits_2(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(
        '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": -4, "num_attention_heads": 4}'
    )
    code, out, err = _run("classify", str(bad), "--json", "--no-inventory")
    assert code == 2
    assert json.loads(out)["error"] == "invalid-value"
    assert "hidden_size must be at least 1, got -4" in err


def test_classify_without_inventory_never_imports_torch():
    probe = (
        "import sys, io; from automodel_onboard.commands.cli import main; "
        f"code = main(['classify', {str(EXAMPLE)!r}, '--no-inventory'], out=io.StringIO()); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules); "
        "print(code, heavy)"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0 []"


def test_console_script_entry_point():
    result = run_cli("classify", str(EXAMPLE), "--no-inventory")
    assert result.returncode == 0, result.stderr
    assert "inventory:     absent: not computed (--no-inventory)" in result.stdout
