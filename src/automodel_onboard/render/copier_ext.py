"""Copier glue: the Jinja filters ``copier.yml`` and the templates call, each a thin view of the spec or the kinds.

Copier evaluates question defaults and validators as Jinja; these filters turn them into calls of the spec (built
once per process, :func:`automodel_onboard.model.spec.cached_spec`), the kind registry and the destination, so every
decision stays in Python. Filter names are part of every released ``copier.yml`` and stay as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

from automodel_onboard import destination, kinds
from automodel_onboard.destination.checkout import MODELS_PACKAGE, config_registration, model_paths
from automodel_onboard.destination.plugin import NEMO_AUTOMODEL_RANGE, package_for, plugin_paths
from automodel_onboard.errors import OnboardError
from automodel_onboard.layout import recipes
from automodel_onboard.model import naming
from automodel_onboard.model.spec import cached_spec

# `copier update` renders the old and the new template version into scratch folders named so: not checkouts.
COPIER_SCRATCH = ("copier._main.old_copy.", "copier._main.new_copy.")


def spec_dict(
    model: str, revision: str = "", module_name: str = "", trust_remote_code: bool = False, kind: str = ""
) -> dict[str, Any]:
    """The spec as templates see it: renamed to a chosen module name, laid out by a chosen kind."""
    spec = cached_spec(model, revision or "", bool(trust_remote_code))
    if module_name and module_name != spec.module_name:
        spec = spec.renamed(module_name)
    if kind and kind in kinds.KINDS:
        spec = spec.for_kind(kind)
    return spec.to_dict()


def onboard_spec_json(
    model: str, revision: str = "", module_name: str = "", trust_remote_code: bool = False, kind: str = ""
) -> str:
    return json.dumps(spec_dict(model, revision, module_name, trust_remote_code, kind))


def onboard_fact(model: str, fact: str, revision: str = "") -> str:
    return str(spec_dict(model, revision)[fact])


def onboard_check_model(model: str, revision: str = "") -> str:
    """Empty when the model classifies; else the error message (Copier shows it and asks again)."""
    try:
        spec_dict(model, revision)
    except OnboardError as err:
        return err.message
    return ""


def onboard_is_local(model: str) -> bool:
    """Whether the model answer is a local file or folder (a Hub revision does not apply to it)."""
    return bool(model) and "\x00" not in model and Path(model).expanduser().exists()


def onboard_check_module_name(name: str) -> str:
    try:
        naming.check_module_name(name, where="module_name")
    except OnboardError as err:
        return err.message
    return ""


def onboard_kinds(_: Any = None) -> str:
    """The kinds that have a template, as the YAML list Copier reads ``choices`` from."""
    return json.dumps(list(kinds.names()))


def onboard_kind(name: str) -> dict[str, str]:
    """What the templates read about their kind: auto class, recipe family, docs section."""
    return kinds.get(name, where="kind").template_data()


def onboard_paths(
    module_name: str, kind: str, org: str, destination_kind: str = destination.CHECKOUT, plugin_package: str = ""
) -> str:
    """Where the destination puts this model's files (JSON, for the computed ``paths`` answer)."""
    found = kinds.get(kind, where="kind")
    if destination_kind == destination.PLUGIN:
        return json.dumps(plugin_paths(plugin_package, module_name, found, org).data())
    return json.dumps(model_paths(module_name, found, org).data())


def onboard_destination_kind(dst_path: str) -> str:
    """``checkout`` for a NeMo AutoModel checkout (and Copier's scratch renders of one), else ``plugin``."""
    root = Path(dst_path)
    return destination.CHECKOUT if root.name.startswith(COPIER_SCRATCH) else destination.kind_of(root)


def onboard_plugin_package(dst_path: str) -> str:
    """The plugin's import package: recorded in its pyproject, else derived from the folder's name ("" if none)."""
    try:
        return package_for(Path(dst_path))
    except OnboardError:
        return ""


def onboard_check_destination(
    dst_path: str,
    model: str,
    revision: str,
    module_name: str,
    dataset: str,
    replace: bool,
    checked: bool,
    kind: str = "",
    allow_fewer_capabilities: bool = False,
    destination_kind: str = destination.CHECKOUT,
    plugin_package: str = "",
) -> str:
    """Empty when the destination may receive this model; else the refusal (a plain ``copier copy`` stops there).

    ``automodel-onboard new`` has already checked the real destination (``checked``), and a folder that holds this
    model's answers file is being updated, not created.
    """
    root = Path(dst_path)
    if checked or root.name.startswith(COPIER_SCRATCH):
        return ""
    try:
        dest = destination.at(root, destination_kind, plugin_package)
        if dest.is_onboarded(module_name):
            return ""
        spec = spec_dict(model, revision, module_name, kind=kind)
        dest.check(
            spec,
            module_name=module_name,
            kind=kinds.get(kind or spec["kind"]),
            replace=replace,
            allow_fewer_capabilities=allow_fewer_capabilities,
        )
    except OnboardError as err:
        return err.message
    return ""


def onboard_registered_elsewhere(
    dst_path: str,
    architecture: str,
    module_name: str,
    destination_kind: str = destination.CHECKOUT,
    replace: bool = True,
) -> str:
    """``module:Class`` the architecture resolves to before this onboarding, unless that is this model already.

    In a checkout that is its registry's entry; for a plugin replacing one, NeMo AutoModel's own class.
    """
    root = Path(dst_path)
    plugin = destination_kind == destination.PLUGIN
    if (plugin and not replace) or (not plugin and destination.kind_of(root) != destination.CHECKOUT):
        return ""
    try:
        target = destination.at(root, destination_kind).registered(architecture)
    except OnboardError:
        return ""
    if target is None or (not plugin and target[0] == f"{MODELS_PACKAGE}.{module_name}.model"):
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
    entry = config_registration(spec, module_name)
    return ":".join(entry) if entry is not None else ""


class OnboardExtension(Extension):
    """Registers the spec filters and the formatting filters the templates use."""

    def __init__(self, environment: Environment):
        super().__init__(environment)
        from automodel_onboard.render import filters

        environment.filters.update(
            onboard_spec_json=onboard_spec_json,
            onboard_fact=onboard_fact,
            onboard_check_model=onboard_check_model,
            onboard_check_module_name=onboard_check_module_name,
            onboard_is_local=onboard_is_local,
            onboard_kind_warning=onboard_kind_warning,
            onboard_check_destination=onboard_check_destination,
            onboard_registered_elsewhere=onboard_registered_elsewhere,
            onboard_config_registration=onboard_config_registration,
            onboard_kinds=onboard_kinds,
            onboard_kind=onboard_kind,
            onboard_paths=onboard_paths,
            onboard_destination_kind=onboard_destination_kind,
            onboard_plugin_package=onboard_plugin_package,
            onboard_nemo_range=lambda _=None: NEMO_AUTOMODEL_RANGE,
            onboard_default_dataset=recipes.default_dataset,
            onboard_check_dataset=recipes.check_dataset,
            onboard_dataset=recipes.dataset,
        )
        filters.register_filters(environment)
