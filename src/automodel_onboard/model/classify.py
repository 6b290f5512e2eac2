"""The architecture verdict: dense, MoE, VLM (with its text backbone) or unsupported, with the reasons.

The rules read what the fields mean (heads, experts, sub-configs, the model head named by the architecture),
never which model a file is. They are kept as tables so a new convention is one line, not a new branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from automodel_onboard.errors import OnboardError
from automodel_onboard.model.fields import ConfigView

Kind = Literal["dense", "moe", "vlm", "unsupported"]
Backbone = Literal["dense", "moe"]

CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel")
IMAGE_TEXT_HEADS = ("ForConditionalGeneration", "ForImageTextToText")
ENCODER_HEADS = (
    "ForMaskedLM",
    "ForSequenceClassification",
    "ForTokenClassification",
    "ForQuestionAnswering",
    "ForMultipleChoice",
    "ForPreTraining",
    "ForNextSentencePrediction",
)
SPEECH_HEADS = (
    "ForSpeechSeq2Seq",
    "ForCTC",
    "ForAudioClassification",
    "ForXVector",
    "ForTextToSpeech",
    "ForTextToWaveform",
)

# (category, keys whose presence with a truthy value decides it, what to tell the user).
MARKER_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("diffusion", ("_diffusers_version", "_class_name"), "a diffusion pipeline component, not a language model"),
    (
        "speech",
        ("audio_config", "speech_config", "audio_encoder_config", "num_mel_bins", "feat_extract_norm"),
        "a speech/audio model",
    ),
    (
        "encoder-decoder",
        ("is_encoder_decoder", "encoder_layers", "num_decoder_layers", "decoder_layers", "encoder_config"),
        "an encoder-decoder model, not a decoder-only causal LM",
    ),
)
SSM_KEYS = (
    "state_size",
    "ssm_state_size",
    "mamba_d_state",
    "d_state",
    "mamba_d_conv",
    "conv_kernel",
    "ssm_cfg",
    "time_step_rank",
    "mamba_expand",
    "mamba_headdim",
    "n_mamba_heads",
    "mamba_n_heads",
    "layers_block_type",
    "hybrid_layer_ids",
    "hybrid_override_pattern",
    "attn_layer_period",
)
# Where a vision encoder lives: the standard sub-config, and the names custom-code VLMs use.
VISION_KEYS = (
    "vision_config",
    "vision_tower_config",
    "vision_encoder_config",
    "vision_model_config",
    "vit_config",
    "visual",
    "img_processor",
    "image_encoder_config",
    "mm_vision_tower",
    "vision_tower",
)
TEXT_KEYS = ("text_config", "llm_config", "language_config", "language_model_config", "text_model_config")
TEXT_SIZE_FACTS = ("hidden_size", "num_layers", "num_heads")


@dataclass(frozen=True)
class Verdict:
    """What the config is, why, and where its text (and vision) parts live."""

    kind: Kind
    text_backbone: Backbone | None
    reasons: tuple[str, ...]
    architecture: str
    text_key: str | None = None  # sub-config holding the text model ("" = top level)
    vision_key: str | None = None

    @property
    def supported(self) -> bool:
        return self.kind != "unsupported"


def architecture_of(raw: Mapping[str, Any]) -> str:
    """The first architecture string, validated; every later step keys on it."""
    archs = raw.get("architectures")
    if archs is None:
        raise OnboardError(
            "config.json has no 'architectures' list, so the model class cannot be known",
            where="config.json: architectures",
            fix='add the class name the checkpoint was saved with, e.g. "architectures": ["LlamaForCausalLM"]',
            code="no-architectures",
        )
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise OnboardError(
            f"'architectures' must be a non-empty list of class names, got {type(archs).__name__}",
            where="config.json: architectures",
            fix='write it as a JSON list of strings, e.g. ["LlamaForCausalLM"]',
            code="invalid-value",
        )
    return archs[0]


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _head(arch: str, heads: tuple[str, ...]) -> str | None:
    return next((h for h in heads if arch.endswith(h)), None)


def _unsupported(arch: str, *reasons: str) -> Verdict:
    return Verdict("unsupported", None, tuple(reasons), arch)


def _markers(view: ConfigView, keys: tuple[str, ...]) -> list[str]:
    return [view.path(k) for k in keys if _truthy(view.raw(k))]


def text_backbone(view: ConfigView) -> tuple[Backbone, str]:
    """Dense or MoE for a text (sub-)config, with the deciding field."""
    experts = view.find("num_experts")
    top_k = view.find("top_k")
    if experts is not None:
        count = view.int_("num_experts")
        if count is not None and count > 1:
            return "moe", f"{experts.key} = {count} routed experts"
        return "dense", f"{experts.key} = {experts.value}: no routed experts, so the MLP is dense"
    if top_k is not None:
        return "dense", f"{top_k.key} is set but no expert count is given: treated as dense"
    return "dense", "no expert fields (num_local_experts, num_experts, n_routed_experts, ...): dense MLP"


def _has_text_sizes(view: ConfigView) -> bool:
    return all(view.find(f) is not None for f in TEXT_SIZE_FACTS)


def _has_attention(view: ConfigView) -> bool:
    return any(view.find(f) is not None for f in ("num_heads", "num_kv_heads", "head_dim")) or view.has("attn_config")


def classify(raw: Mapping[str, Any]) -> Verdict:
    """Classify a config dict; only reads it."""
    arch = architecture_of(raw)
    top = ConfigView(raw)
    model_type = raw.get("model_type")
    arch_reason = f"architectures[0] = {arch!r}"

    for category, keys, meaning in MARKER_RULES:
        found = _markers(top, keys)
        if found:
            return _unsupported(arch, f"{', '.join(found)} present: {meaning} ({category})")
    if head := _head(arch, SPEECH_HEADS):
        return _unsupported(arch, f"{arch_reason} ends with {head}: a speech/audio model")
    if head := _head(arch, ENCODER_HEADS):
        return _unsupported(
            arch,
            f"{arch_reason} ends with {head}: a bidirectional encoder head, not a causal LM "
            "(decoder-looking fields such as hidden_size or rope settings do not make it one)",
        )

    vision = next((k for k in VISION_KEYS if _truthy(raw.get(k))), None)
    causal = _head(arch, CAUSAL_HEADS)
    image_text = _head(arch, IMAGE_TEXT_HEADS)
    if vision is not None:
        return _classify_vlm(raw, arch, vision, causal or image_text)
    if image_text:
        return _unsupported(
            arch,
            f"{arch_reason} ends with {image_text} but the config has no vision encoder "
            f"({', '.join(VISION_KEYS[:3])}, ...): a conditional-generation model that is not image-text-to-text",
        )
    if not causal:
        return _unsupported(
            arch,
            f"{arch_reason} has no causal-LM head (expected a name ending in ForCausalLM or LMHeadModel): "
            "a base model or another task head cannot be fine-tuned as a causal LM",
        )
    ssm = _markers(top, SSM_KEYS)
    if ssm:
        if _has_attention(top):
            return _unsupported(
                arch, f"{', '.join(ssm)} present alongside attention heads: a hybrid SSM/attention model"
            )
        return _unsupported(arch, f"{', '.join(ssm)} present: a state-space (SSM) model without attention")
    if not _has_attention(top):
        return _unsupported(
            arch, "no attention fields (num_attention_heads, num_key_value_heads, head_dim): an attention-free model"
        )
    backbone, why = text_backbone(top)
    reasons = (f"{arch_reason} ends with {causal}: causal LM head", f"model_type = {model_type!r}", why)
    return Verdict(backbone, None, reasons, arch, text_key="")


# auto_map entries that make a remote-code model one that generates text (its class name need not say so).
AUTO_MAP_HEADS = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")


def _classify_vlm(raw: Mapping[str, Any], arch: str, vision: str, head: str | None) -> Verdict:
    top = ConfigView(raw)
    auto_map = raw.get("auto_map")
    remote = next((k for k in AUTO_MAP_HEADS if isinstance(auto_map, Mapping) and k in auto_map), None)
    if head is None and remote is not None:
        head = f"a remote-code class that auto_map.{remote} names"
    if head is None:
        return _unsupported(
            arch,
            f"{vision} present but architectures[0] = {arch!r} has no text-generation head "
            "(ForConditionalGeneration, ForImageTextToText or ForCausalLM)",
        )
    text_key = next((k for k in TEXT_KEYS if isinstance(raw.get(k), Mapping)), None)
    if text_key is not None:
        text = top.sub(text_key)
        where = f"{text_key} holds the text model"
    elif _has_text_sizes(top):
        text, text_key = top, ""
        where = "text-model fields (hidden_size, num_hidden_layers, num_attention_heads) sit at the top level"
    else:
        return _unsupported(
            arch,
            f"{vision} shows a vision encoder, but no text model can be identified "
            f"(no {', '.join(TEXT_KEYS[:3])}, ... and no top-level hidden_size/num_hidden_layers/num_attention_heads): "
            "refusing to treat it as a text-only model",
        )
    assert text is not None
    ssm = _markers(text, SSM_KEYS)
    if ssm:
        return _unsupported(arch, f"{', '.join(ssm)} in the text model: an SSM/hybrid language backbone")
    backbone, why = text_backbone(text)
    generates = f"is {head}" if remote is not None and not _head(arch, IMAGE_TEXT_HEADS + CAUSAL_HEADS) else None
    reasons = (
        f"architectures[0] = {arch!r} {generates or f'ends with {head}'}: generates text",
        f"{vision} present: vision encoder",
        where,
        f"text backbone: {why}",
    )
    return Verdict("vlm", backbone, reasons, arch, text_key=text_key, vision_key=vision)
