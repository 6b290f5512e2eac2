"""render-all: the comparison with the expected report, the report writers, and one real run over two cases."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from conftest import CONFIGS, ROOT

from automodel_onboard import kinds
from automodel_onboard.commands import render_all as smoke
from automodel_onboard.errors import OnboardError
from automodel_onboard.layout import matrix
from automodel_onboard.model import naming


def row(case: str, verdict: str, kind: str = "dense", **extra) -> smoke.Row:
    fields = {"max_logit_diff": None, "test_seconds": None, **extra}
    return smoke.Row(case, "fixture", kind, verdict, **fields)


def report(*rows: smoke.Row) -> smoke.Report:
    return smoke.Report(tuple(rows), wall_seconds=90.0, jobs=2, versions={"nemo-automodel": "0.7.0"})


# ---------------------------------------------------------------------------------------------------------------------
# Comparison


def test_passed_to_failed_is_a_regression():
    result = smoke.compare([row("a", "passed")], [row("a", "failed")])
    assert [(c.key, c.expected, c.actual) for c in result.regressions] == [(("a", "dense"), "passed", "failed")]
    assert not result.ok


def test_passed_to_refused_is_a_regression():
    result = smoke.compare([row("a", "passed")], [row("a", "refused: unsupported-features")])
    assert len(result.regressions) == 1 and not result.ok


def test_a_missing_row_that_passed_is_a_regression():
    result = smoke.compare([row("a", "passed"), row("b", "passed")], [row("a", "passed")])
    assert [(c.key, c.actual) for c in result.regressions] == [(("b", "dense"), None)]


def test_the_same_config_under_another_kind_is_a_different_row():
    result = smoke.compare([row("a", "passed", kind="dense")], [row("a", "passed", kind="moe")])
    assert [c.key for c in result.regressions] == [("a", "dense")]
    assert [c.key for c in result.new_rows] == [("a", "moe")]


def test_refused_to_passed_is_an_improvement_and_not_a_failure():
    result = smoke.compare([row("a", "refused: no-template")], [row("a", "passed")])
    assert [c.key for c in result.improvements] == [("a", "dense")]
    assert result.regressions == () and result.ok


def test_new_rows_and_changes_between_non_passing_verdicts_do_not_fail():
    result = smoke.compare(
        [row("a", "failed"), row("gone", "refused: remote-code")],
        [row("a", "refused: unsupported-features"), row("new", "failed")],
    )
    assert result.ok
    assert [c.key[0] for c in result.new_rows] == ["new"]
    assert sorted(c.key[0] for c in result.other_changes) == ["a", "gone"]
    text = smoke.comparison_text(result)
    assert "new [dense]: (new) -> failed" in text and "gone [dense]: refused: remote-code -> (missing)" in text


def test_an_unchanged_run_says_so():
    rows = [row("a", "passed"), row("b", "refused: unsupported")]
    result = smoke.compare(rows, rows)
    assert result.ok and smoke.comparison_text(result) == "no change against the expected report"


# ---------------------------------------------------------------------------------------------------------------------
# Report writers


def test_markdown_has_one_line_per_row_under_the_documented_columns():
    text = smoke.to_markdown(
        report(
            row("Qwen__Qwen3-0.6B", "passed", max_logit_diff=1.5e-7, test_seconds=26.04),
            row("bart", "refused: unsupported", kind="unsupported", notes="encoder | decoder"),
        )
    )
    lines = text.splitlines()
    assert lines[0] == "| config | kind | verdict | max logit diff | test time (s) | notes |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[2] == "| Qwen__Qwen3-0.6B | dense | passed | 1.5e-07 | 26.0 |  |"
    assert lines[3] == "| bart | unsupported | refused: unsupported | n/a | n/a | encoder \\| decoder |"
    assert "2 rows: 1 passed, 1 refused: unsupported." in text


def test_json_report_schema_round_trips(tmp_path):
    original = report(row("a", "passed", max_logit_diff=0.0, test_seconds=3.5), row("b", "failed", notes="x"))
    json_path, md_path = smoke.write_report(original, tmp_path / "out" / "report.json")
    assert (json_path.name, md_path.name) == ("report.json", "report.md")
    data = json.loads(json_path.read_text())
    assert set(data) == {"schema", "versions", "jobs", "wall_seconds", "rows"}
    assert data["schema"] == smoke.SCHEMA
    assert set(data["rows"][0]) == {
        "case_id",
        "source",
        "kind",
        "verdict",
        "max_logit_diff",
        "test_seconds",
        "notes",
        "reasons",
    }
    assert smoke.from_json(data) == original.rows
    assert md_path.read_text() == smoke.to_markdown(original)


def test_a_report_of_another_schema_is_refused():
    with pytest.raises(OnboardError) as info:
        smoke.from_json({"schema": 99, "rows": []})
    assert info.value.code == "invalid-report"


def test_the_committed_expected_report_reads_and_covers_every_fixture():
    rows = smoke.from_json(json.loads((ROOT / "ci" / "expected-report.json").read_text()))
    fixtures = {c.case_id for c in smoke.fixture_cases(CONFIGS)}
    assert {r.case_id for r in rows if r.source == "fixture"} == fixtures
    synthetic = {f"synthetic/{s.case_id}" for s in matrix.all_cases() if s.kind in kinds.KINDS}
    assert {r.case_id for r in rows if r.source == "synthetic"} == synthetic


# ---------------------------------------------------------------------------------------------------------------------
# Cases


def test_every_case_gets_a_valid_module_name_of_its_own(tmp_path):
    cases = (*smoke.fixture_cases(CONFIGS), *smoke.synthetic_cases(tmp_path))
    names = [smoke.module_name_for(c, json.loads(c.config.read_text()).get("model_type")) for c in cases]
    for name in names:
        naming.check_module_name(name)
        assert name.endswith("_gen")
    synthetic = [n for c, n in zip(cases, names, strict=True) if c.source == "synthetic"]
    assert len(set(synthetic)) == len(synthetic)


def test_synthetic_cases_write_their_configs_and_skip_kinds_without_a_template(tmp_path):
    (case,) = smoke.synthetic_cases(tmp_path, ["llama-mqa"], offered=frozenset({"dense"}))
    assert case.case_id == "synthetic/llama-mqa"
    assert json.loads(case.config.read_text())["num_key_value_heads"] == 1
    assert smoke.synthetic_cases(tmp_path, ["llama-mqa"], offered=frozenset({"moe"})) == ()
    with pytest.raises(OnboardError, match="unknown synthetic case"):
        smoke.synthetic_cases(tmp_path, ["llama-nope"])


def test_refusals_are_rows(pristine, tmp_path):
    bart = smoke.run_case(smoke.Case("bart", "fixture", CONFIGS / "facebook__bart-large.json"), pristine, tmp_path)
    assert (bart.kind, bart.verdict, bart.max_logit_diff) == ("unsupported", "refused: unsupported", None)
    alibi = tmp_path / "alibi.json"
    alibi.write_text(
        json.dumps({**json.loads((CONFIGS / "mistralai__Mistral-Nemo-Base-2407.json").read_text()), "alibi": True})
    )
    mistral = smoke.run_case(smoke.Case("alibi", "fixture", alibi), pristine, tmp_path)
    assert (mistral.kind, mistral.verdict) == ("dense", "refused: unsupported-features")
    assert "ALiBi position bias" in mistral.notes


def test_synthetic_rows_left_out_of_the_run_are_not_compared(monkeypatch, tmp_path):
    """CI runs the synthetic matrix in the test suite and render-all over the fixtures (--synthetic none): the expected
    synthetic rows are not missing then, while a fixture row that went missing still fails."""
    synthetic = smoke.Row("synthetic/llama-mqa", "synthetic", "dense", "passed", None, None)
    assert smoke.was_asked(synthetic, None) and smoke.was_asked(synthetic, ["llama-mqa"])
    assert not smoke.was_asked(synthetic, []) and not smoke.was_asked(synthetic, ["llama-tied"])
    assert smoke.was_asked(row("a", "passed"), [])
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(smoke.to_json(report(row("a", "passed"), row("b", "passed"), synthetic))))
    parser = argparse.ArgumentParser()
    smoke.add_render_all_parser(parser.add_subparsers(dest="command"))
    codes, outputs = {}, {}
    for name, canned in {
        "fixtures": report(row("a", "passed"), row("b", "passed")),
        "one gone": report(row("a", "passed")),
    }.items():
        monkeypatch.setattr(smoke, "render_all", lambda cases, jobs, progress, canned=canned: canned)
        args = parser.parse_args(
            ["render-all", "--configs", str(tmp_path), "--synthetic", "none", "--report", str(tmp_path / "r")]
            + ["--expected", str(expected)]
        )
        out = io.StringIO()
        codes[name] = smoke.cmd_render_all(args, out, io.StringIO())
        outputs[name] = out.getvalue()
    assert codes == {"fixtures": 0, "one gone": 1}
    assert "not compared: 1 synthetic rows" in outputs["fixtures"]
    assert "b [dense]: passed -> (missing)" in outputs["one gone"]


def test_the_command_fails_on_a_regression_only(monkeypatch, tmp_path):
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(smoke.to_json(report(row("a", "passed"), row("b", "failed")))))
    outcomes = {
        "same": report(row("a", "passed"), row("b", "failed")),
        "better": report(row("a", "passed"), row("b", "passed"), row("c", "failed")),
        "worse": report(row("a", "failed"), row("b", "passed")),
    }
    parser = argparse.ArgumentParser()
    smoke.add_render_all_parser(parser.add_subparsers(dest="command"))
    codes = {}
    for name, canned in outcomes.items():
        monkeypatch.setattr(smoke, "render_all", lambda cases, jobs, progress, canned=canned: canned)
        args = parser.parse_args(
            ["render-all", "--configs", str(tmp_path), "--synthetic", "none", "--report", str(tmp_path / name)]
            + ["--expected", str(expected)]
        )
        out = io.StringIO()
        codes[name] = smoke.cmd_render_all(args, out, io.StringIO())
        assert (tmp_path / f"{name}.md").is_file() and (tmp_path / f"{name}.json").is_file()
    assert codes == {"same": 0, "better": 0, "worse": 1}
    assert "a [dense]: passed -> failed" in out.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# One real run


@pytest.mark.slow
@pytest.mark.usefixtures("without_long_runs")
def test_render_all_onboards_and_tests_a_fixture_and_a_synthetic_case(tmp_path):
    cases = (
        smoke.Case("Qwen__Qwen3-0.6B", "fixture", CONFIGS / "Qwen__Qwen3-0.6B.json"),
        *smoke.synthetic_cases(tmp_path, ["llama-attention-bias"]),
    )
    result = smoke.render_all(cases, jobs=2)
    assert [(r.case_id, r.source, r.kind, r.verdict) for r in result.rows] == [
        ("Qwen__Qwen3-0.6B", "fixture", "dense", "passed"),
        ("synthetic/llama-attention-bias", "synthetic", "dense", "passed"),
    ]
    for passed in result.rows:
        # The generated tests' own end-to-end float32 tolerance bounds what a passed row reports.
        assert passed.max_logit_diff is not None and 0.0 <= passed.max_logit_diff <= 1e-5
        assert passed.test_seconds is not None and 0.0 < passed.test_seconds < result.wall_seconds
        assert passed.notes == ""
    assert result.versions["nemo-automodel"] == "0.7.0"


def test_a_configs_folder_that_is_not_there_is_refused_not_an_empty_run(tmp_path):
    parser = argparse.ArgumentParser()
    smoke.add_render_all_parser(parser.add_subparsers(dest="command"))
    missing = tmp_path / "no-such-folder"
    args = parser.parse_args(["render-all", "--configs", str(missing), "--report", str(tmp_path / "r")])
    with pytest.raises(OnboardError, match="is not a folder") as raised:
        smoke.cmd_render_all(args, io.StringIO(), io.StringIO())
    assert raised.value.code == "no-configs" and not (tmp_path / "r.json").exists()
