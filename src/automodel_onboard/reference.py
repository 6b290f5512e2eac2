"""The Hugging Face reference implementation: its classes, its resolved config and its parameter inventory.

This is the only spec module that imports torch and transformers, and it does so lazily: classifying without
the inventory never loads either. The reference model is built on the ``meta`` device, so no weights are
allocated and nothing is downloaded; remote code (``auto_map``) is never imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automodel_onboard.errors import OnboardError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ROUTED_EXPERT = re.compile(r"\.experts\.\d+\.")


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Inventory:
    """Checkpoint-format tensors of the reference model (what ``save_pretrained`` writes), and counts."""

    model_class: str
    config_class: str
    tensors: tuple[Tensor, ...]
    total_params: int
    active_params: int | None
    tied: tuple[str, ...]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.tensors}


@dataclass(frozen=True)
class ReferenceClasses:
    config_class: str
    model_class: str | None
    missing_reason: str | None


def reference_classes(architecture: str, model_type: str | None) -> ReferenceClasses | None:
    """The transformers config and model classes for a config, or None when transformers has no config class."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        return None
    config_class = CONFIG_MAPPING[model_type].__name__
    if not IDENTIFIER.fullmatch(architecture):
        return ReferenceClasses(config_class, None, f"architecture {architecture!r} is not a class name")
    import transformers

    model_cls = getattr(transformers, architecture, None)
    if not _is_model_class(model_cls):
        # Hub files sometimes spell the class differently from transformers (JetMoE vs JetMoe); transformers
        # itself loads by model_type, so follow its auto mappings for the same head.
        from transformers.models.auto import modeling_auto

        table = (
            modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            if architecture.endswith(("ForConditionalGeneration", "ForImageTextToText"))
            else modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        )
        name = table.get(model_type)
        model_cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if not _is_model_class(model_cls):
        return ReferenceClasses(
            config_class, None, f"transformers {transformers.__version__} has no class {architecture}"
        )
    return ReferenceClasses(config_class, model_cls.__name__, None)


def _is_model_class(obj: Any) -> bool:
    import transformers

    return isinstance(obj, type) and issubclass(obj, transformers.PreTrainedModel)


def build_config(raw: Mapping[str, Any], model_type: str) -> Any:
    """A transformers config object from a plain dict (the reference's own validation applies)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    data = {k: v for k, v in raw.items() if k != "auto_map"}
    try:
        return CONFIG_MAPPING[model_type].from_dict(data)
    except Exception as exc:  # the reference rejects values in many ways; all are the config's fault
        raise OnboardError(
            f"transformers' {CONFIG_MAPPING[model_type].__name__} rejects this config: {exc}",
            where="config.json",
            fix="correct the field named above",
            code="config-rejected",
        ) from exc


def resolved_text_config(raw: Mapping[str, Any], model_type: str, text_key: str | None) -> dict[str, Any]:
    """The text config with the config class's defaults filled in (sparse sub-configs rely on them)."""
    config = build_config(raw, model_type)
    text = config.get_text_config() if text_key != "" else config
    resolved = text.to_dict()
    # Keep the user's spelling of a fact beside the class's when both exist, so reasons can cite the file.
    source = raw.get(text_key) if text_key else raw
    if isinstance(source, Mapping):
        for key, value in source.items():
            resolved.setdefault(key, value)
    return resolved


def _checkpoint_state(model: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Parameters and persistent buffers in checkpoint format; tied aliases dropped as save_pretrained does."""
    from transformers.core_model_loading import revert_weight_conversion

    seen: dict[int, str] = {}
    tied: list[str] = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.append(name)
        else:
            seen[id(param)] = name
    state = {k: v for k, v in model.state_dict().items() if k not in tied}
    return revert_weight_conversion(model, state), tuple(tied)


def build_inventory(raw: Mapping[str, Any], model_type: str, classes: ReferenceClasses) -> Inventory:
    """Instantiate the reference on the meta device and list its checkpoint-format tensors."""
    import torch
    import transformers

    assert classes.model_class is not None
    config = build_config(raw, model_type)
    model_cls = getattr(transformers, classes.model_class)
    try:
        with torch.device("meta"):
            model = model_cls(config)
    except Exception as exc:
        raise OnboardError(
            f"the reference {classes.model_class} cannot be built from this config: {type(exc).__name__}: {exc}",
            where="config.json",
            fix="check the sizes in config.json against the model family's requirements",
            code="config-rejected",
        ) from exc
    state, tied = _checkpoint_state(model)
    tensors = tuple(
        Tensor(name, tuple(int(d) for d in value.shape), str(value.dtype).removeprefix("torch."))
        for name, value in sorted(state.items())
    )
    total = sum(_numel(t.shape) for t in tensors)
    return Inventory(
        model_class=classes.model_class,
        config_class=classes.config_class,
        tensors=tensors,
        total_params=total,
        active_params=_active(tensors, total, config),
        tied=tied,
    )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _active(tensors: tuple[Tensor, ...], total: int, config: Any) -> int | None:
    routed = [t for t in tensors if ROUTED_EXPERT.search(t.name)]
    if not routed:
        return None
    text = config.get_text_config()
    experts = next(
        (getattr(text, a) for a in ("num_local_experts", "num_experts", "n_routed_experts") if hasattr(text, a)), None
    )
    top_k = next((getattr(text, a) for a in ("num_experts_per_tok", "moe_top_k") if hasattr(text, a)), None)
    if not experts or not top_k:
        return None
    routed_total = sum(_numel(t.shape) for t in routed)
    return total - routed_total + routed_total * top_k // experts


def instantiate_tiny(tiny: Mapping[str, Any], model_type: str, model_class: str, *, device: str = "meta") -> Any:
    """The reference model for the tiny config (on ``meta`` to count, on ``cpu`` to run)."""
    import torch
    import transformers

    config = build_config(tiny, model_type)
    with torch.device(device):
        return getattr(transformers, model_class)(config)
