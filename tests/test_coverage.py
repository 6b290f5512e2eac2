"""coverage: the transformers zoo as cases, the spec-only verdicts, the summary, the README table, one verified run."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from conftest import ROOT

from automodel_onboard.commands import coverage
from automodel_onboard.commands import render_all as runs
from automodel_onboard.errors import OnboardError

EXPECTED_SPECS = ROOT / "ci" / "expected-coverage-specs.json"
EXPECTED_SAMPLE = ROOT / "ci" / "expected-coverage-sample.json"
SAMPLE = ROOT / "ci" / "coverage-sample"


def row(case: str, verdict: str, kind: str = "dense", reasons: tuple[str, ...] = ()) -> runs.Row:
    return runs.Row(f"zoo/{case}", "zoo", kind, verdict, None, None, "", reasons)


def test_the_zoo_is_every_causal_lm_and_image_text_type_with_its_class():
    from transformers.models.auto import modeling_auto

    zoo = coverage.zoo()
    causal, image_text = (
        modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )
    assert set(zoo) == set(causal) | set(image_text)
    assert zoo["llama"] == "LlamaForCausalLM" and zoo["qwen3_moe"] == "Qwen3MoeForCausalLM"
    # A type in both mappings is taken as its image-text class: its default config is the multimodal one.
    assert zoo["gemma3"] == image_text["gemma3"] == "Gemma3ForConditionalGeneration"


def test_zoo_cases_write_the_config_class_defaults_with_the_mapped_class(tmp_path):
    from transformers import LlamaConfig

    cases, unbuildable = coverage.zoo_cases(tmp_path, ["llama", "qwen2_5_vl"])
    assert [(c.case_id, c.source) for c in cases] == [("zoo/llama", "zoo"), ("zoo/qwen2_5_vl", "zoo")]
    assert unbuildable == ()
    llama = json.loads(cases[0].config.read_text())
    assert llama["architectures"] == ["LlamaForCausalLM"] and llama["model_type"] == "llama"
    assert llama["hidden_size"] == LlamaConfig().hidden_size


def test_a_type_outside_the_mappings_is_refused_by_name(tmp_path):
    with pytest.raises(OnboardError, match="vit, no_such_type") as raised:
        coverage.zoo_cases(tmp_path, ["llama", "vit", "no_such_type"])
    assert raised.value.code == "unknown-model-type" and raised.value.where == "--types"


def test_a_config_class_whose_defaults_fail_is_an_unbuildable_row(tmp_path, monkeypatch):
    from transformers import CONFIG_MAPPING

    def broken():
        raise ValueError("defaults do not validate")

    monkeypatch.setitem(CONFIG_MAPPING._extra_content, "llama", broken)
    cases, unbuildable = coverage.zoo_cases(tmp_path, ["llama", "mistral"])
    assert [c.case_id for c in cases] == ["zoo/mistral"]
    assert [(r.case_id, r.verdict, r.notes) for r in unbuildable] == [
        ("zoo/llama", "unbuildable", "ValueError: defaults do not validate")
    ]


def test_spec_only_verdicts_name_the_kind_and_each_missing_feature():
    types = ["llama", "qwen3_moe", "gpt2", "mamba", "llava", "falcon", "fuyu"]
    report = coverage.coverage(types, verify=False, jobs=2)
    verdicts = {r.case_id: (r.kind, r.verdict) for r in report.rows}
    assert verdicts == {
        # Falcon derives head_dim (a read-only property): the tiny config leaves it out and the refusal names features.
        "zoo/falcon": ("dense", "refused: unsupported-features"),
        # Fuyu's text model keeps its real size in the tiny config: refused before a 9-billion-parameter CPU build.
        "zoo/fuyu": ("-", "refused: tiny-config-too-large"),
        "zoo/llama": ("dense", "renders"),
        "zoo/llava": ("vlm", "renders"),
        "zoo/mamba": ("unsupported", "refused: unsupported"),
        "zoo/gpt2": ("dense", "refused: unsupported-features"),
        "zoo/qwen3_moe": ("moe", "renders"),
    }
    (gpt2,) = [r for r in report.rows if r.case_id == "zoo/gpt2"]
    assert "dropout on the residual branches (resid_pdrop): resid_pdrop = ..." not in gpt2.reasons  # built
    assert "fused q/k/v projection in the checkpoint: parameter ..." in gpt2.reasons
    assert all(r.max_logit_diff is None and r.test_seconds is None for r in report.rows)
    only_dense = coverage.coverage(["llama", "qwen3_moe"], kind="dense", verify=False, jobs=1)
    assert [r.case_id for r in only_dense.rows] == ["zoo/llama"]


def test_the_summary_counts_verdicts_per_kind_and_ranks_missing_features_by_types():
    rows = [
        row("a", "renders"),
        row("b", "refused: unsupported-features", reasons=("no ALiBi", "checkpoint tensor x.1.w has no counterpart")),
        row("c", "refused: unsupported-features", reasons=("checkpoint tensor y.2.w has no counterpart",)),
        row("d", "refused: unsupported-features", "moe", ("checkpoint tensor z.w has no counterpart",)),
        row("e", "refused: unsupported", "unsupported", ("an encoder",)),
        runs.Row("zoo/f", "zoo", "-", "unbuildable", None, None, "ValueError: x"),
    ]
    text = coverage.summary(rows)
    assert "| kind | types | renders | refused | unbuildable |" in text
    assert "| dense | 3 | 1 | 2 | 0 |" in text and "| unsupported | 1 | 0 | 1 | 0 |" in text
    assert "| all | 6 | 1 | 4 | 1 |" in text
    assert "| refused: unsupported-features | 3 |\n| refused: unsupported | 1 |\n| unbuildable | 1 |" in text
    features = [line for line in text.splitlines() if "has no counterpart" in line or "ALiBi" in line]
    # Tensor names abstracted: one feature, counted once per type, across kinds; an unsupported kind's reasons left out.
    assert features == [
        "| checkpoint tensor ... has no counterpart | 3: b, c, d | dense, moe |",
        "| no ALiBi | 1: b | dense |",
    ]
    assert "an encoder" not in text


def test_a_type_that_rendered_and_is_refused_now_fails_the_comparison(tmp_path):
    expected = tmp_path / "expected.json"
    base = runs.Report((row("llama", "renders"), row("gpt2", "renders")), 1.0, 1, {})
    expected.write_text(json.dumps(runs.to_json(base)))
    parser = argparse.ArgumentParser()
    coverage.add_coverage_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "coverage",
            "--types",
            "llama,gpt2",
            "--no-verify",
            "--report",
            str(tmp_path / "r"),
            "--expected",
            str(expected),
        ]
    )
    out = io.StringIO()
    assert coverage.cmd_coverage(args, out, io.StringIO()) == runs.EXIT_REGRESSION
    assert "zoo/gpt2 [dense]: renders -> refused: unsupported-features" in out.getvalue()
    written = json.loads((tmp_path / "r.json").read_text())
    assert {r["case_id"]: r["verdict"] for r in written["rows"]} == {
        "zoo/llama": "renders",
        "zoo/gpt2": "refused: unsupported-features",
    }
    assert (tmp_path / "r.md").read_text().startswith("| kind | types |")


def test_the_readme_table_is_the_committed_sweeps_summary():
    """The README's coverage tables (per kind, per refusal) are what the expected spec-only sweep (which CI compares
    every run with) sums up to, under the transformers version it ran against."""
    data = json.loads(EXPECTED_SPECS.read_text())
    rows = runs.from_json(data)
    by_kind, by_refusal = coverage.summary(rows).split("\n\n")[:2]
    readme = (ROOT / "README.md").read_text()
    assert by_kind in readme and by_refusal in readme
    assert f"transformers {data['versions']['transformers']}" in readme
    assert {r.case_id.removeprefix("zoo/") for r in rows} == set(coverage.zoo())


def test_the_ci_sample_is_verified_in_the_expected_report():
    sample = SAMPLE.read_text().split()
    rows = runs.from_json(json.loads(EXPECTED_SAMPLE.read_text()))
    assert sorted(r.case_id for r in rows) == sorted(f"zoo/{t}" for t in sample)
    assert all(r.verdict == "passed" and r.max_logit_diff is not None for r in rows)


@pytest.mark.usefixtures("without_long_runs")
def test_a_verified_run_onboards_the_type_into_a_scratch_checkout_and_runs_its_tests():
    report = coverage.coverage(["qwen2", "gpt2"], jobs=2)
    verdicts = {r.case_id: r.verdict for r in report.rows}
    assert verdicts == {"zoo/qwen2": "passed", "zoo/gpt2": "refused: unsupported-features"}
    (qwen2,) = [r for r in report.rows if r.case_id == "zoo/qwen2"]
    assert qwen2.max_logit_diff is not None and 0.0 <= qwen2.max_logit_diff <= 1e-5 and qwen2.test_seconds > 0
