"""The kind registry is the one list of kinds: templates, CLI, copier.yml and render-all all read it."""

from __future__ import annotations

import pytest
import yaml
from jinja2 import Environment

from automodel_onboard import kinds
from automodel_onboard.commands import render_all
from automodel_onboard.commands.cli import build_parser
from automodel_onboard.errors import OnboardError
from automodel_onboard.layout import matrix
from automodel_onboard.render.copier_ext import OnboardExtension
from automodel_onboard.render.copier_run import package_template

TEMPLATES = package_template() / "templates"


def test_every_kind_has_its_template_and_every_template_a_kind():
    folders = {p.name for p in TEMPLATES.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert {k.template for k in kinds.KINDS.values()} == folders
    for kind in kinds.KINDS.values():
        assert (TEMPLATES / kind.template / "{{ paths.package }}" / "model.py.jinja").is_file(), kind.name


def test_a_verdict_without_a_template_is_refused_with_the_choices(without_vlm):
    with pytest.raises(OnboardError) as info:
        without_vlm.get("vlm")
    assert info.value.code == "no-template"
    assert info.value.what == "the vlm template is not available yet"
    assert info.value.fix == "templates available: dense, moe"


def test_every_verdict_of_the_classifier_has_a_template():
    assert set(kinds.names()) == {"dense", "moe", "vlm"}


def test_the_cli_offers_exactly_the_registered_kinds():
    new = build_parser()._subparsers._group_actions[0].choices["new"]
    (kind,) = [a for a in new._actions if a.dest == "kind"]
    assert tuple(kind.choices) == kinds.names()


def test_copier_yml_offers_exactly_the_registered_kinds():
    question = yaml.safe_load((package_template() / "copier.yml").read_text())["kind"]
    rendered = Environment(extensions=[OnboardExtension]).from_string(question["choices"]).render()
    assert tuple(yaml.safe_load(rendered)) == kinds.names()


def test_render_all_runs_synthetic_cases_of_registered_kinds_only(tmp_path, monkeypatch, without_vlm):
    extra = matrix.Synthetic("vlm-case", "vlm", matrix.LLAMA_BASE)
    monkeypatch.setitem(matrix.CASES, "vlm", (extra,))
    cases = render_all.synthetic_cases(tmp_path)
    offered = [s for kind in kinds.names() for s in matrix.CASES[kind]]
    assert {c.case_id for c in cases} == {f"synthetic/{s.case_id}" for s in offered}


def test_kinds_give_templates_their_nemo_terms():
    data = kinds.get("dense").template_data()
    assert data["auto_class"] == "NeMoAutoModelForCausalLM"
    assert (data["recipe_family"], data["docs_section"]) == ("llm_finetune", "llm")
