"""The architecture spec: every decision about a model, computed once, immutable and JSON-serialisable.

``build_spec`` runs source data through classification, features, names, the tiny config and (optionally)
the reference inventory: transformers' classes, or, with ``trust_remote_code``, the classes a local checkpoint
folder's ``auto_map`` names. Templates receive ``ArchSpec.to_dict()`` and only lay it out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from automodel_onboard.errors import OnboardError, UnsupportedModel
from automodel_onboard.model import classify as classify_mod
from automodel_onboard.model import features as features_mod
from automodel_onboard.model import naming
from automodel_onboard.model.fields import ConfigView
from automodel_onboard.model.tiny import tiny_config, without_derived

if TYPE_CHECKING:
    from automodel_onboard.model.source import ConfigSource

SPEC_VERSION = 1


@dataclass(frozen=True)
class Params:
    total: int | None
    active: int | None
    tiny_total: int | None


@dataclass(frozen=True)
class ArchSpec:
    kind: str
    text_backbone: str | None
    reasons: tuple[str, ...]
    architecture: str
    model_type: str
    module_name: str
    class_prefix: str
    display_name: str
    org: str
    model_id: str | None
    revision: str | None
    custom_code: bool
    auto_map: Mapping[str, Any] | None
    text_key: str
    features: features_mod.Features
    tiny_config: Mapping[str, Any]
    hf: Mapping[str, str] | None  # {"config_class", "model_class"} importable from transformers
    inventory: Any  # reference.Inventory | None (kept untyped so this module never imports torch)
    inventory_absent_reason: str | None
    params: Params
    name_collision: str | None
    version: int = SPEC_VERSION
    # The template-facing decisions of the spec's kind (kinds.Kind.build_layout): None without an inventory or
    # without a template for the kind.
    layout: Any = None
    # With trust_remote_code, the folder's own reference: {"folder", "config_class", "model_class" ("module.Class"),
    # "config_defaults"} (the generated config.py and tests are built from it); None otherwise.
    remote_code: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    def renamed(self, module_name: str, existing: frozenset[str] | None = None) -> ArchSpec:
        """The same spec under another module name (validated, collision re-checked)."""
        name = naming.check_module_name(module_name)
        taken = naming.existing_model_folders() if existing is None else existing
        return dataclasses.replace(self, module_name=name, name_collision=naming.collision_of(name, taken))

    def for_kind(self, kind: str) -> ArchSpec:
        """The same facts laid out by another kind's template (``--kind``); OnboardError when it has none."""
        from automodel_onboard import kinds

        if kind == self.kind and self.layout is not None:
            return self
        where = "config.json" if kind == self.kind else "--kind"
        return dataclasses.replace(self, layout=kinds.get(kind, where=where).build_layout(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def plain(value: Any) -> Any:
    """Dataclasses, mappings and sequences as JSON-like dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _check_object(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise OnboardError(
            f"the config must be a JSON object, got {type(raw).__name__}",
            where=where,
            fix="pass a Hugging Face config.json",
            code="not-an-object",
        )
    return raw


def build_spec(
    source: ConfigSource | Mapping[str, Any],
    *,
    module_name: str | None = None,
    with_inventory: bool = True,
    existing_models: frozenset[str] | None = None,
    trust_remote_code: bool = False,
) -> ArchSpec:
    """Classify and describe a config; raises UnsupportedModel (with the reasons) or OnboardError.

    ``trust_remote_code`` lets a model that transformers does not implement use the code of its checkpoint
    folder (``auto_map``) as the reference: that code is imported and run.
    """
    folder = None
    if isinstance(source, Mapping):
        raw, model_id, revision, where = source, None, None, "config.json"
    else:
        raw, model_id, revision, where = source.config, source.model_id, source.revision, str(source.config_path)
        folder = source.folder
    raw = _check_object(raw, where)
    verdict = classify_mod.classify(raw)
    if not verdict.supported:
        raise UnsupportedModel(
            f"{verdict.architecture[:100]!r} is not supported: " + "; ".join(verdict.reasons),
            where=where,
            fix="this tool onboards decoder-only causal LMs, MoE causal LMs and image-text-to-text models",
        )
    names = naming.derive_names(
        verdict.architecture,
        raw.get("model_type"),
        model_id=model_id,
        name_or_path=raw.get("_name_or_path"),
        module_name=module_name,
        existing=naming.existing_model_folders() if existing_models is None else existing_models,
    )
    auto_map = raw.get("auto_map")
    if auto_map is not None and not isinstance(auto_map, Mapping):
        raise OnboardError("auto_map must be an object", where=f"{where}: auto_map", code="invalid-value")
    text_key = verdict.text_key or ""
    if text_key:
        text_model_type = raw[text_key].get("model_type")
        if text_model_type is not None:
            naming.check_model_type(text_model_type, where=f"{where}: {text_key}.model_type")

    text_raw = raw if not text_key else raw[text_key]
    prefix = f"{text_key}." if text_key else ""
    vision_raw = raw.get(verdict.vision_key) if verdict.vision_key else None
    features_mod.check_sizes(
        ConfigView(text_raw, prefix, where),
        ConfigView(vision_raw, f"{verdict.vision_key}.", where) if isinstance(vision_raw, Mapping) else None,
    )
    classes = inventory = absent = remote = None
    resolved: Mapping[str, Any] | None = None
    if with_inventory:
        from automodel_onboard.model import reference

        classes = reference.reference_classes(names.architecture, names.model_type)
        if classes is None and trust_remote_code and auto_map is not None:
            remote = reference.remote_reference(raw, reference.remote_code(auto_map, folder, where))
            inventory = remote.inventory
            resolved = remote.resolved if not text_key else None  # sub-configs of remote code are not resolved
        elif classes is None:
            absent = f"transformers has no config class for model_type {names.model_type!r}" + (
                ": the only implementation is remote code (auto_map), which is never executed" if auto_map else ""
            )
        else:
            resolved = reference.resolved_text_config(raw, names.model_type, text_key)
            if classes.model_class is None:
                absent = classes.missing_reason
            else:
                inventory = reference.build_inventory(raw, names.model_type, classes)
    else:
        absent = "not computed (--no-inventory)"

    text_view = ConfigView(resolved if resolved is not None else text_raw, prefix, where)
    feats = features_mod.extract(
        raw,
        text_view,
        kind=verdict.kind,
        vision_key=verdict.vision_key,
        inventory=inventory.shapes() if inventory is not None else None,
        declared=text_raw,
        probes=inventory.probes if inventory is not None else None,
    )
    if resolved is not None:
        _require_sizes(feats, where, prefix)
    tiny = tiny_config(raw, feats, text_key=text_key, vision_key=verdict.vision_key, resolved=resolved)
    tiny_total = None
    if inventory is not None:
        import torch

        from automodel_onboard.model import behaviour, reference

        tiny = without_derived(tiny, text_key)  # needs transformers' config classes, loaded with the inventory

        # Built on the CPU and run: what the code does beyond its config and parameters is measured. Its random
        # initialisation draws from a forked generator, leaving the caller's random state as it was.
        with torch.random.fork_rng(devices=[]):
            if remote is not None:
                model = reference.instantiate_remote_tiny(tiny, remote.code, device="cpu")
            else:
                model = reference.instantiate_tiny(tiny, names.model_type, inventory.model_class, device="cpu")
            code = behaviour.measure(model)
        tiny_total = sum(p.numel() for p in model.parameters())
        feats = features_mod.with_code(feats, code, tiny[text_key] if text_key else tiny)

    spec = ArchSpec(
        kind=verdict.kind,
        text_backbone=verdict.text_backbone,
        reasons=verdict.reasons,
        architecture=names.architecture,
        model_type=names.model_type,
        module_name=names.module_name,
        class_prefix=names.class_prefix,
        display_name=names.display_name,
        org=names.org,
        model_id=model_id,
        revision=revision,
        custom_code=auto_map is not None,
        auto_map=_freeze(auto_map) if auto_map is not None else None,
        text_key=text_key,
        features=feats,
        tiny_config=_freeze(tiny),
        hf=(
            MappingProxyType({"config_class": classes.config_class, "model_class": classes.model_class})
            if classes is not None and classes.model_class is not None
            else None
        ),
        inventory=inventory,
        inventory_absent_reason=absent,
        params=Params(
            total=inventory.total_params if inventory else None,
            active=inventory.active_params if inventory else None,
            tiny_total=tiny_total,
        ),
        name_collision=names.collision,
        remote_code=(
            _freeze({**dataclasses.asdict(remote.code), "config_defaults": remote.config_defaults})
            if remote is not None
            else None
        ),
    )
    from automodel_onboard import kinds

    kind = kinds.KINDS.get(spec.kind)
    return dataclasses.replace(spec, layout=kind.build_layout(spec)) if kind is not None else spec


def _require_sizes(feats: features_mod.Features, where: str, prefix: str) -> None:
    for label, value in (
        ("hidden_size", feats.hidden_size),
        ("num_hidden_layers", feats.num_layers),
        ("vocab_size", feats.vocab_size),
        ("num_attention_heads", feats.attention.num_heads),
    ):
        if value is None:
            raise OnboardError(
                f"the text model's {label} is missing and has no default",
                where=f"{where}: {prefix}{label}",
                fix=f"add {prefix}{label} to config.json",
                code="missing-field",
            )


# Specs built in this process, by (model, revision, file stamp, trust): Copier evaluates question defaults more than
# once, and `automodel-onboard new` renders the spec it has already built.
_SPECS: dict[tuple[str, str, tuple[int, int] | None, bool], ArchSpec] = {}


def cached_spec(model: str, revision: str = "", trust_remote_code: bool = False) -> ArchSpec:
    """The spec of a model argument, built once per process for each (model, revision, file contents, trust) key."""
    key = (model, revision, _stamp(model), trust_remote_code)
    if key not in _SPECS:
        from automodel_onboard.model.source import load_source

        _SPECS[key] = build_spec(load_source(model, revision or None), trust_remote_code=trust_remote_code)
    return _SPECS[key]


def remember_spec(model: str, revision: str, trust_remote_code: bool, spec: ArchSpec) -> None:
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


def load_spec(path: Path) -> dict[str, Any]:
    """A spec previously written with ``to_json`` (plain data, as templates see it)."""
    return json.loads(path.read_text(encoding="utf-8"))
