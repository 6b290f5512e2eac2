"""Copier glue: Jinja filters that expose the architecture spec to ``copier.yml``.

Copier evaluates question defaults and validators as Jinja; these filters turn them into calls of the spec
builder, so every decision stays in Python. Specs are cached per process: Copier renders defaults more than
once, and ``automodel-onboard new`` renders the spec it has already built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

from automodel_onboard import layout, naming, preflight, recipes
from automodel_onboard.errors import OnboardError

_SPECS: dict[tuple[str, str, tuple[int, int] | None, bool], Any] = {}


def cached_spec(model: str, revision: str, trust_remote_code: bool) -> Any:
    """The spec of a model, built once per process for each (model, revision, file contents, trust) key."""
    key = (model, revision, _stamp(model), trust_remote_code)
    if key not in _SPECS:
        from automodel_onboard.source import load_source
        from automodel_onboard.spec import build_spec

        _SPECS[key] = build_spec(load_source(model, revision or None), trust_remote_code=trust_remote_code)
    return _SPECS[key]


def remember_spec(model: str, revision: str, trust_remote_code: bool, spec: Any) -> None:
    """A spec the caller has already built for these answers, so Copier's questions do not build it again."""
    _SPECS[(model, revision, _stamp(model), trust_remote_code)] = spec


def _stamp(model: str) -> tuple[int, int] | None:
    """A local config's size and mtime, so an edited file is never answered from the cache."""
    path = Path(model).expanduser()
    target = path / "config.json" if path.is_dir() else path
    try:
        stat = target.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def spec_dict(model: str, revision: str = "", module_name: str = "", trust_remote_code: bool = False) -> dict[str, Any]:
    """The spec as templates see it; a chosen module name replaces the derived one without rebuilding."""
    spec = cached_spec(model, revision or "", bool(trust_remote_code))
    if module_name and module_name != spec.module_name:
        spec = spec.renamed(module_name)
    return spec.to_dict()


def onboard_spec_json(model: str, revision: str = "", module_name: str = "", trust_remote_code: bool = False) -> str:
    return json.dumps(spec_dict(model, revision, module_name, trust_remote_code))


def onboard_fact(model: str, fact: str, revision: str = "") -> str:
    value = spec_dict(model, revision)[fact]
    return str(value)


def onboard_check_model(model: str, revision: str = "") -> str:
    """Empty when the model classifies; else the error message (Copier shows it and asks again)."""
    try:
        spec_dict(model, revision)
    except OnboardError as err:
        return err.message
    return ""


def onboard_check_module_name(name: str) -> str:
    try:
        naming.check_module_name(name, where="module_name")
    except OnboardError as err:
        return err.message
    return ""


def onboard_check_destination(
    dst_path: str, model: str, revision: str, module_name: str, dataset: str, replace: bool, checked: bool
) -> str:
    """Empty when the destination may receive this model; else the refusal (a plain ``copier copy`` stops there).

    ``automodel-onboard new`` has already checked the real destination (``checked``), and a folder that holds this
    model's answers file is being updated, not created.
    """
    root = Path(dst_path)
    if (
        checked
        or root.name.startswith(COPIER_SCRATCH)
        or (root / preflight.MODELS / module_name / ANSWERS_FILE).is_file()
    ):
        return ""
    try:
        spec = spec_dict(model, revision, module_name)
        preflight.check_destination(
            root,
            spec,
            module_name=module_name,
            dataset=dataset,
            symbols=layout.REQUIRED_SYMBOLS.get(spec["kind"], ()),
            replace=replace,
        )
    except OnboardError as err:
        return err.message
    return ""


def onboard_registered_elsewhere(dst_path: str, architecture: str, module_name: str) -> str:
    """``module:Class`` the destination's registry maps the architecture to, unless that is this model already."""
    from automodel_onboard.registry_patch import read_registry

    registry = preflight.registry_path(Path(dst_path))
    if not registry.is_file():
        return ""
    target = read_registry(registry).arch_mapping.get(architecture)
    if target is None or target[0] == f"nemo_automodel.components.models.{module_name}.model":
        return ""
    return f"{target[0]}:{target[1]}"


def onboard_kind_warning(model: str, revision: str, kind: str) -> str:
    detected = spec_dict(model, revision)["kind"]
    if kind != detected:
        return (
            f"warning: rendering the {kind} template although the config classifies as {detected}; "
            "the generated parity tests are expected to fail"
        )
    return ""


def onboard_config_registration(spec: dict[str, Any], module_name: str) -> str:
    """``model_type:module:ConfigClass`` when the model ships its own config class, else empty."""
    if spec.get("hf") is not None:
        return ""
    return f"{spec['model_type']}:nemo_automodel.components.models.{module_name}.config:{spec['class_prefix']}Config"


ANSWERS_FILE = ".copier-answers.yml"
# `copier update` renders the old and the new template version into scratch folders named so: not checkouts.
COPIER_SCRATCH = ("copier._main.old_copy.", "copier._main.new_copy.")


class OnboardExtension(Extension):
    """Registers the spec filters and the formatting filters the templates use."""

    def __init__(self, environment: Environment):
        super().__init__(environment)
        from automodel_onboard import jinja_ext

        environment.filters.update(
            onboard_spec_json=onboard_spec_json,
            onboard_fact=onboard_fact,
            onboard_check_model=onboard_check_model,
            onboard_check_module_name=onboard_check_module_name,
            onboard_kind_warning=onboard_kind_warning,
            onboard_check_destination=onboard_check_destination,
            onboard_registered_elsewhere=onboard_registered_elsewhere,
            onboard_config_registration=onboard_config_registration,
            onboard_default_dataset=recipes.default_dataset,
            onboard_check_dataset=recipes.check_dataset,
            onboard_dataset=recipes.dataset,
        )
        jinja_ext.register_filters(environment)
