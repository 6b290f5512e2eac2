"""Normalised features of an architecture, whatever each family calls them.

Features are read from the text config (resolved against the transformers config class defaults when that
class is available) and refined by the reference implementation's parameter inventory, which shows what a
config leaves implicit (Qwen2's q/k/v bias, Qwen3's q/k norm, a shared expert). Everything here is plain data
so that templates only lay it out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from automodel_onboard.errors import OnboardError
from automodel_onboard.model.fields import LIMITS, ConfigView

if TYPE_CHECKING:
    from automodel_onboard.model.behaviour import CodeFacts


@dataclass(frozen=True)
class LatentAttention:
    """Multi-head latent attention (DeepSeek-style) ranks and head splits."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_rope_head_dim: int | None
    qk_nope_head_dim: int | None
    v_head_dim: int | None


@dataclass(frozen=True)
class Attention:
    num_heads: int | None
    num_kv_heads: int | None
    head_dim: int | None
    head_dim_explicit: bool
    grouping: str | None  # "mha" | "gqa" | "mqa"
    # Facts of the reference's code rather than of the config: None (unknown) without the inventory.
    qkv_bias: bool | None
    o_bias: bool | None
    bias_attr: str | None  # config attribute that switches the projection biases; None = fixed by the architecture
    qk_norm: str | None  # "none" | "per_head" | "full"
    sliding_window: str  # layers attending through a window, as the config sets it: "none" | "all_layers" | "per_layer"
    window: int | None
    layer_types: tuple[str, ...]  # distinct per-layer attention types, in order of first use
    latent: LatentAttention | None = None
    # How the config declares windows (what the generated code must read), whether or not any is active now.
    window_declared: str = "none"  # "none" | "all_layers" (sliding_window) | "per_layer" (layer_types)


@dataclass(frozen=True)
class Rope:
    type: str
    theta: float | None
    partial_rotary_factor: float
    parameters: Mapping[str, Any] = field(default_factory=dict)
    half_tables: bool = False  # the reference's cos/sin hold one angle per rotated pair, not one per dim
    # Multimodal RoPE: rotary frequencies per (temporal, height, width) grid, the config's or the reference's default.
    mrope_sections: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Mlp:
    activation: str
    gated: bool | None  # None: unknown without the inventory
    bias: bool | None
    bias_attr: str | None
    intermediate_size: int | None
    activation_attr: str = "hidden_act"  # the config attribute holding it (Gemma 2's hidden_activation)


@dataclass(frozen=True)
class Norm:
    type: str  # "rms" | "layernorm"
    eps: float | None
    eps_attr: str | None


@dataclass(frozen=True)
class Moe:
    num_experts: int
    top_k: int | None
    expert_intermediate_size: int | None
    dense_intermediate_size: int | None
    num_shared_experts: int
    shared_expert_intermediate_size: int | None
    shared_expert_gate: bool
    score_func: str  # "softmax" | "sigmoid"
    correction_bias: bool
    norm_topk_prob: bool
    routed_scaling_factor: float
    n_group: int | None
    topk_group: int | None
    dense_layers: tuple[int, ...]
    moe_layers: int
    router_bias: bool = False  # the router's projection has a bias (a checkpoint tensor)
    expert_bias: bool = False  # the routed experts' projections have biases
    # "swiglu": act(gate) * up; "clamped_glu": GPT-OSS's gate * sigmoid(alpha * gate) * (up + 1), both clamped at
    # ``limit``; "custom": another function of the reference's code.
    expert_activation: str = "swiglu"
    activation_alpha: float | None = None
    activation_limit: float | None = None
    gate_up_interleaved: bool = False  # the reference holds its experts' gate and up rows interleaved
    # Each token is scaled by its expert's router score before the expert, not the expert's output after (Llama 4).
    input_scaled: bool = False


@dataclass(frozen=True)
class Vision:
    model_type: str | None
    hidden_size: int | None
    num_layers: int | None
    num_heads: int | None
    patch_size: int | None
    image_size: int | None
    image_token_id: int | None
    projector: str | None  # None: unknown without the inventory
    config_key: str
    tiling: str | None = None  # the field under which images are tiled at several resolutions (LLaVA-NeXT's)


@dataclass(frozen=True)
class Trait:
    """An architectural fact beyond the plain pre-norm decoder (``key``), and where the config shows it."""

    key: str
    description: str


@dataclass(frozen=True)
class Features:
    attention: Attention
    rope: Rope
    mlp: Mlp
    norm: Norm
    tie_word_embeddings: bool | None
    num_layers: int | None
    hidden_size: int | None
    vocab_size: int | None
    moe: Moe | None = None
    vision: Vision | None = None
    traits: tuple[Trait, ...] = ()  # see TRAIT_FIELDS / TRAIT_PARAMS / with_code
    code: CodeFacts | None = None  # measured by running the reference on the tiny config


# Config fields whose value (by the given test) marks an architectural trait beyond the plain decoder; each kind's
# layout says which traits it implements. Checked against the text config; each row: (trait, key, test, description).
def _set(v: Any) -> bool:
    return v not in (None, False)


def _not_one(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v != 1


def _below_one(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v < 1


def _above_zero(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _true(v: Any) -> bool:
    return v is True


def _positive(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


# Each layer's MLP as newer configs list them (``mlp_layer_types``): the kinds the templates build; others
# (DeepSeek-V4's hash-routed "hash_moe") are a trait no kind implements.
MLP_LAYER_TYPES = ("dense", "sparse")


def _other_mlp_types(value: Any) -> bool:
    return isinstance(value, list) and any(kind not in MLP_LAYER_TYPES for kind in value)


TRAIT_FIELDS: tuple[tuple[str, str, Any, str], ...] = (
    ("logit_softcapping", "final_logit_softcapping", _set, "final logit soft-capping"),
    ("attention_softcapping", "attn_logit_softcapping", _set, "attention logit soft-capping"),
    ("embedding_multiplier", "embedding_multiplier", _not_one, "embedding scaling (embedding_multiplier)"),
    ("embedding_normalizer", "scale_embedding", _true, "embedding scaling by sqrt(hidden_size) (scale_embedding)"),
    ("attention_multiplier", "attention_multiplier", _set, "custom attention scaling (attention_multiplier)"),
    ("query_pre_attn_scalar", "query_pre_attn_scalar", _set, "custom attention scaling (query_pre_attn_scalar)"),
    ("residual_multiplier", "residual_multiplier", _not_one, "residual scaling (residual_multiplier)"),
    ("logits_scaling", "logits_scaling", _not_one, "logit scaling (logits_scaling)"),
    ("logit_scale", "logit_scale", _not_one, "logit scaling (logit_scale)"),
    ("partial_rotary", "partial_rotary_factor", _below_one, "partial rotary embeddings (partial_rotary_factor)"),
    ("partial_rotary", "rotary_pct", _below_one, "partial rotary embeddings (rotary_pct)"),
    ("parallel_block", "use_parallel_residual", _true, "parallel attention/MLP block (use_parallel_residual)"),
    ("parallel_block", "parallel_attn", _true, "parallel attention/MLP block (parallel_attn)"),
    ("qkv_clipping", "clip_qkv", _set, "q/k/v clipping (clip_qkv)"),
    ("qkv_clipping", "attn_config.clip_qkv", _set, "q/k/v clipping (attn_config.clip_qkv)"),
    ("alibi", "alibi", _true, "ALiBi position bias"),
    ("alibi", "use_alibi", _true, "ALiBi position bias"),
    ("chunked_attention", "attention_chunk_size", _set, "chunked local attention (attention_chunk_size)"),
    ("nope_layers", "no_rope_layers", _set, "layers without rotary embeddings (no_rope_layers)"),
    ("temperature_tuning", "attn_temperature_tuning", _true, "query temperature by position on NoPE layers"),
    ("multi_token_prediction", "num_nextn_predict_layers", _positive, "multi-token prediction layers"),
    ("multi_token_prediction", "num_mtp_layers", _positive, "multi-token prediction layers"),
    ("attention_sinks", "attention_sink_size", _set, "attention sinks"),
    ("bidirectional_attention", "use_bidirectional_attention", _true, "bidirectional attention"),
    ("residual_dropout", "resid_pdrop", _above_zero, "dropout on the residual branches (resid_pdrop)"),
    ("embedding_dropout", "embd_pdrop", _above_zero, "dropout on the embeddings (embd_pdrop)"),
    ("residual_dropout", "residual_dropout", _above_zero, "dropout on the residual branches (residual_dropout)"),
    ("embedding_dropout", "embedding_dropout", _above_zero, "dropout on the embeddings (embedding_dropout)"),
    ("mlp_layer_types", "mlp_layer_types", _other_mlp_types, "MLP layers of other types than dense and sparse"),
)
POSITION_EMBEDDINGS = ("absolute", "learned", "alibi")

# Parameter names (per text decoder layer) that each mark a trait: (trait, pattern, description).
TRAIT_PARAMS: tuple[tuple[str, str, str], ...] = (
    ("sandwich_norms", r"(pre|post)_feedforward_layernorm", "extra sandwich norms around the MLP"),
    ("post_attention_norm", r"post_(self_)?attn(ention)?_layernorm$|post_attention_norm", "extra post-attention norm"),
    # Phi-3's fused names, which the dense kind keeps fused, and the other families' fused or non-gated layouts.
    ("fused_qkv", r"qkv_proj\.", "fused q/k/v projection (qkv_proj) in the checkpoint"),
    ("fused_gate_up", r"gate_up_proj\.", "fused gate/up projection (gate_up_proj) in the checkpoint"),
    ("fused_qkv_layout", r"(query_key_value|Wqkv|c_attn|wqkv)\.", "fused q/k/v projection in the checkpoint"),
    ("mlp_layout", r"w13\.", "fused gate/up projection (w13) in the checkpoint"),
    ("attention_sinks", r"\.sinks$", "attention sinks"),
    ("attention_experts", r"self_attention\.experts\.", "mixture of attention heads (attention experts)"),
)


# Other names checkpoints store the decoder's modules under, and the name each is read as (NeMo AutoModel's, the
# Llama-shaped one): (checkpoint module, module), below a decoder layer or at the top. A module's weight and bias follow
# it. Phi's fc1/fc2 and dense, StarCoder2's c_fc/c_proj, GPT-NeoX's dense_h_to_4h/dense_4h_to_h: each a non-gated MLP's
# up and down projection or the attention's output projection.
MODULE_ALIASES: tuple[tuple[str, str], ...] = (
    ("mlp.fc1", "mlp.up_proj"),
    ("mlp.fc2", "mlp.down_proj"),
    ("mlp.c_fc", "mlp.up_proj"),
    ("mlp.c_proj", "mlp.down_proj"),
    ("mlp.dense_h_to_4h", "mlp.up_proj"),
    ("mlp.dense_4h_to_h", "mlp.down_proj"),
    ("self_attn.dense", "self_attn.o_proj"),
    ("model.final_layernorm", "model.norm"),
)


# A decoder layer's norms by the names a family gives their places, told apart by the set a layer holds: each set's
# names in the four places the decoder builds (before and after the attention, before and after the MLP). GLM-4's
# post_attention_layernorm sits before the MLP, so a name alone cannot say where its norm sits.
NORM_NAMES: tuple[tuple[frozenset[str], Mapping[str, str]], ...] = (
    (  # GLM-4
        frozenset({"input_layernorm", "post_self_attn_layernorm", "post_attention_layernorm", "post_mlp_layernorm"}),
        {
            "post_self_attn_layernorm": "post_attention_layernorm",
            "post_attention_layernorm": "pre_feedforward_layernorm",
            "post_mlp_layernorm": "post_feedforward_layernorm",
        },
    ),
    (  # HyperCLOVA X with its post norms
        frozenset({"input_layernorm", "post_norm1", "post_attention_layernorm", "post_norm2"}),
        {
            "post_norm1": "post_attention_layernorm",
            "post_attention_layernorm": "pre_feedforward_layernorm",
            "post_norm2": "post_feedforward_layernorm",
        },
    ),
    (  # VaultGemma
        frozenset({"input_layernorm", "pre_feedforward_layernorm"}),
        {"pre_feedforward_layernorm": "post_attention_layernorm"},
    ),
    (  # Apertus
        frozenset({"attention_layernorm", "feedforward_layernorm"}),
        {"attention_layernorm": "input_layernorm", "feedforward_layernorm": "post_attention_layernorm"},
    ),
)


def tensor_aliases(names: Iterable[str]) -> dict[str, str]:
    """Each of ``names`` (layer-relative or top-level tensor names) stored under an alias, mapped to the name it is
    read as; an alias whose own name is also present is not renamed (two tensors cannot become one)."""
    present = set(names)
    found = {}
    for name in present:
        for alias, module in MODULE_ALIASES:
            if name.startswith(alias + ".") and name.count(".") == alias.count(".") + 1:
                canonical = module + name[len(alias) :]
                if canonical not in present:
                    found[name] = canonical
    norms = {n.partition(".")[0] for n in present if n.count(".") == 1 and "norm" in n.partition(".")[0]}
    places = next((renames for held, renames in NORM_NAMES if held == norms), {})
    for name in present:
        module, _, leaf = name.partition(".")
        if module in places and name.count(".") == 1:
            found[name] = f"{places[module]}.{leaf}"
    return found


# Router and routed-expert biases, by their checkpoint names (per-expert or stacked).
ROUTER_BIAS = re.compile(r"\.(?:gate|router)(?:\.layer)?\.bias$")
EXPERT_BIAS = re.compile(r"\.experts\.(?:\d+\.\w+\.bias|\w+_bias|bias)$")


def _grouping(heads: int | None, kv: int | None) -> str | None:
    if heads is None or kv is None:
        return None
    if kv == heads:
        return "mha"
    if kv == 1:
        return "mqa"
    return "gqa"


def attention_features(
    text: ConfigView, layer0: Mapping[str, tuple[int, ...]] | None, declared: Mapping[str, Any] | None = None
) -> Attention:
    hidden = text.int_("hidden_size", minimum=1)
    heads = text.int_("num_heads", minimum=1)
    kv = text.int_("num_kv_heads", minimum=1)
    if heads is None and kv is not None:
        # JetMoE-style configs give only the KV heads; transformers derives the rest (kv * top_k).
        top_k = text.int_("top_k", minimum=1)
        heads = kv * top_k if top_k else kv
    kv = kv if kv is not None else heads
    head_dim = text.int_("head_dim", minimum=1)
    if heads is not None and kv is not None and heads % kv:
        raise OnboardError(
            f"{heads} attention heads cannot be shared evenly by {kv} key/value heads",
            where=text.where("num_key_value_heads"),
            fix="num_attention_heads must be a multiple of num_key_value_heads",
            code="invalid-value",
        )
    if head_dim is None and hidden is not None and heads:
        if hidden % heads:
            raise OnboardError(
                f"hidden_size {hidden} is not divisible by {heads} attention heads and no head_dim is given",
                where=text.where("hidden_size"),
                fix="set head_dim explicitly or correct hidden_size / num_attention_heads",
                code="invalid-value",
            )
        head_dim = hidden // heads
    bias_found = text.find("attention_bias")
    bias_value = bool(text.bool_("attention_bias")) if bias_found and isinstance(bias_found.value, bool) else False
    qkv_bias = o_bias = bias_value
    bias_attr = bias_found.key[len(text.prefix) :] if bias_found else None
    if bias_attr is not None and "." in bias_attr:
        bias_attr = None  # nested under a sub-config, so not a flag the model code can read directly
    qkv_bias = o_bias = qk_norm = None
    if layer0 is not None:
        qkv_bias = "self_attn.q_proj.bias" in layer0
        o_bias = "self_attn.o_proj.bias" in layer0
        if qkv_bias != o_bias or qkv_bias != bias_value:
            bias_attr = None  # the biases are fixed by the architecture, not by the config flag
        qk_norm = _qk_norm_from_params(layer0, head_dim)
    layer_types = text.names("layer_types", fix='use names such as "full_attention" / "sliding_attention"')
    window = text.int_("sliding_window", minimum=0)
    declared = "per_layer" if text.has("layer_types") else "all_layers" if text.has("sliding_window") else "none"
    windowed = [t for t in layer_types or () if "sliding" in t or "local" in t]
    if layer_types:
        sliding = "none" if not windowed else "all_layers" if len(windowed) == len(layer_types) else "per_layer"
    else:
        sliding = "all_layers" if window and text.raw("use_sliding_window") is not False else "none"
    distinct = tuple(dict.fromkeys(layer_types or ()))
    latent = None
    kv_rank = text.int_("kv_lora_rank", minimum=1)
    if kv_rank:
        latent = LatentAttention(
            q_lora_rank=text.int_("q_lora_rank", minimum=1),
            kv_lora_rank=kv_rank,
            qk_rope_head_dim=text.int_("qk_rope_head_dim", minimum=1),
            qk_nope_head_dim=text.int_("qk_nope_head_dim", minimum=0),
            v_head_dim=text.int_("v_head_dim", minimum=1),
        )
    # Explicit means the file states it (so the model code must read it) or it differs from hidden / heads.
    stated = declared is not None and any(k in declared for k in ("head_dim", "kv_channels", "attention_head_dim"))
    differs = head_dim is not None and heads is not None and hidden is not None and head_dim * heads != hidden
    return Attention(
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        head_dim_explicit=stated or differs,
        grouping=_grouping(heads, kv),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        bias_attr=bias_attr,
        qk_norm=qk_norm,
        sliding_window=sliding,
        window=window,
        layer_types=distinct,
        latent=latent,
        window_declared=declared,
    )


def _qk_norm_from_params(layer0: Mapping[str, tuple[int, ...]], head_dim: int | None) -> str:
    for name, shape in layer0.items():
        if re.search(r"self_attn\.(q_norm|q_layernorm|query_layernorm)\.weight$", name):
            if shape and head_dim is not None and shape[-1] != head_dim:
                return "full"
            return "per_head"
    return "none"


def rope_features(
    text: ConfigView, rotary_width: int | None = None, rotated: int | None = None, probes: Any = None
) -> Rope:
    """RoPE type and parameters; ``rotary_width`` (the reference's table width) against ``rotated`` (the dims it
    rotates) says whether the reference keeps one angle per pair; the probes' multimodal sections where the config
    names none."""
    params = text.get("rope_scaling")
    if params is not None and not isinstance(params, Mapping):
        raise OnboardError(
            f"{text.find('rope_scaling').key} must be an object or null",  # type: ignore[union-attr]
            where=text.where("rope_scaling"),
            fix='use e.g. {"rope_type": "linear", "factor": 2.0}',
            code="invalid-value",
        )
    params = dict(params or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    if not isinstance(rope_type, str):
        raise OnboardError(
            "rope_type must be a string", where=text.where("rope_scaling"), fix="correct it", code="invalid-value"
        )
    theta = text.float_("rope_theta", positive=True)
    if theta is None and isinstance(params.get("rope_theta"), (int, float)):
        theta = float(params["rope_theta"])
    partial = text.float_("partial_rotary_factor", positive=True)
    if partial is None and isinstance(params.get("partial_rotary_factor"), (int, float)):
        partial = float(params["partial_rotary_factor"])
    extra = {k: v for k, v in params.items() if k not in ("rope_type", "type", "rope_theta", "partial_rotary_factor")}
    half = rotary_width is not None and rotated is not None and 2 * rotary_width == int(rotated * (partial or 1.0))
    sections = extra.get("mrope_section")
    if not isinstance(sections, list):
        sections = getattr(probes, "mrope_sections", None)
    return Rope(
        type=rope_type,
        theta=theta,
        partial_rotary_factor=partial or 1.0,
        parameters=extra,
        half_tables=half,
        mrope_sections=tuple(sections) if sections else None,
    )


def mlp_features(text: ConfigView, layer0: Mapping[str, tuple[int, ...]] | None) -> Mlp:
    act = text.str_("hidden_act") or "silu"
    # The attribute the reference reads it from (Gemma 2's hidden_activation); a nested one is not readable as such.
    found = text.find("hidden_act")
    key = found.key[len(text.prefix) :] if found is not None else "hidden_act"
    act_attr = key if "." not in key else "hidden_act"
    bias_found = text.find("mlp_bias")
    declared = bool(text.bool_("mlp_bias")) if bias_found else False
    bias_attr = "mlp_bias" if bias_found else None
    bias: bool | None = None  # the reference's code decides: unknown without the inventory
    gated: bool | None = None
    if layer0 is not None:
        bias, gated = declared, True
        # The router (mlp.gate) and the experts are not the dense MLP's projections.
        mlp_keys = [
            k
            for k in layer0
            if k.startswith("mlp.")
            and ".experts." not in k
            and "shared" not in k
            and not k.startswith(("mlp.gate.", "mlp.router."))
        ]
        if mlp_keys:
            gated = any(re.search(r"gate_(up_)?proj", k) for k in mlp_keys)
            inv_bias = any(k.endswith(".bias") for k in mlp_keys)
            if inv_bias != bias:
                bias, bias_attr = inv_bias, None
    return Mlp(
        activation=act,
        gated=gated,
        bias=bias,
        bias_attr=bias_attr,
        intermediate_size=text.int_("intermediate_size"),
        activation_attr=act_attr,
    )


def norm_features(text: ConfigView, layer0: Mapping[str, tuple[int, ...]] | None) -> Norm:
    rms = text.find("rms_norm_eps")
    if rms is not None:
        return Norm("rms", text.float_("rms_norm_eps", positive=True), rms.key.rsplit(".", 1)[-1])
    ln = text.find("layer_norm_eps")
    if ln is not None:
        return Norm("layernorm", text.float_("layer_norm_eps", positive=True), ln.key.rsplit(".", 1)[-1])
    if layer0 and not any(re.search(r"norm|ln", k) for k in layer0):
        return Norm("layernorm", None, None)  # OLMo-style LayerNorm without weights
    return Norm("rms", None, None)


def _dense_layers(text: ConfigView, num_layers: int) -> tuple[int, ...]:
    """Indices of layers with a dense MLP, from the layer-placement fields every MoE family uses."""
    first_k = text.int_("first_k_dense_replace") or 0
    freq = text.int_("moe_layer_freq", minimum=1) or 1
    step = text.int_("decoder_sparse_step", minimum=1) or text.int_("interleave_moe_layer_step", minimum=1) or 1
    only = text.get("mlp_only_layers") or []
    if not isinstance(only, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in only):
        raise OnboardError(
            "mlp_only_layers must be a list of layer indices",
            where=text.where("mlp_only_layers"),
            fix="use integers",
            code="invalid-value",
        )
    kinds = text.names("mlp_layer_types", fix='use "dense" and "sparse", one per layer')
    listed = text.get("moe_layers")  # the MoE layers' indices, where the config lists them (Llama 4's)
    if listed is not None and not (
        isinstance(listed, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in listed)
    ):
        raise OnboardError(
            "moe_layers must be a list of layer indices",
            where=text.where("moe_layers"),
            fix="use integers",
            code="invalid-value",
        )
    dense = []
    for i in range(num_layers):
        is_moe = i >= first_k and (i - first_k) % freq == 0 and (i + 1) % step == 0 and i not in only
        is_moe = is_moe and (kinds is None or i >= len(kinds) or kinds[i] == "sparse")
        is_moe = is_moe and (listed is None or i in listed)
        if not is_moe:
            dense.append(i)
    return tuple(dense)


def _expert_code(code: Any) -> dict[str, Any]:
    """The experts' activation and gate/up layout, from the reference's probed experts module."""
    if code is None:
        return {}
    activation = "swiglu"
    if code.custom_gate:
        activation = "clamped_glu" if code.alpha is not None and code.limit is not None else "custom"
    return {
        "expert_activation": activation,
        "activation_alpha": code.alpha,
        "activation_limit": code.limit,
        "gate_up_interleaved": not code.concatenated,
    }


# Expert MLPs in all (layers x routed experts): the checkpoint lists three tensors of each. DeepSeek-V3 has 15k,
# Kimi K2 23k.
MAX_EXPERT_LAYERS = 1 << 15


def check_sizes(text: ConfigView, vision: ConfigView | None = None) -> None:
    """Refuse sizes past :data:`LIMITS` and per-layer lists at odds with the layer count, before anything is built."""
    vision_facts = {"vision_layers", "vision_heads", "hidden_size", "intermediate_size"}
    for fact in LIMITS:
        if not fact.startswith("vision_"):  # the vision facts share aliases (num_hidden_layers) with the text ones
            text.check_limit(fact)
        if vision is not None and fact in vision_facts:
            vision.check_limit(fact)
    layers, experts = text.find("num_layers"), text.find("num_experts")
    counts = [f.value for f in (layers, experts) if f is not None and isinstance(f.value, int)]
    if len(counts) == 2 and counts[0] * counts[1] > MAX_EXPERT_LAYERS:
        raise OnboardError(
            f"{counts[0]} layers of {counts[1]} experts ({layers.key}, {experts.key}) are beyond any model this "  # type: ignore[union-attr]
            f"tool builds (at most {MAX_EXPERT_LAYERS} expert MLPs in all)",
            where=f"{text.source}: {experts.key}",  # type: ignore[union-attr]
            fix="correct the values in config.json",
            code="size-limit",
        )
    for key in ("layer_types", "mlp_layer_types", "mlp_only_layers"):
        value = text.raw(key)
        if (
            layers is not None
            and isinstance(layers.value, int)
            and isinstance(value, list)
            and len(value) > layers.value
        ):
            raise OnboardError(
                f"{key} has {len(value)} entries for {layers.value} layers ({layers.key})",
                where=text.where(key),
                fix=f"give {key} at most one entry per layer",
                code="invalid-value",
            )
    rope = text.find("rope_scaling")
    section = rope.value.get("mrope_section") if rope is not None and isinstance(rope.value, Mapping) else None
    if section is not None and not (
        isinstance(section, list) and section and all(isinstance(s, int) and 0 < s <= 4096 for s in section)
    ):
        raise OnboardError(
            f"mrope_section must be a list of positive integers (rotary dims per axis), got {str(section)[:80]}",
            where=f"{text.source}: {rope.key}.mrope_section",  # type: ignore[union-attr]
            fix="correct it (Qwen2-VL's is [16, 24, 24])",
            code="invalid-value",
        )


def moe_features(
    text: ConfigView, layer0: Mapping[str, tuple[int, ...]] | None, names: Sequence[str], probes: Any = None
) -> Moe:
    experts = text.int_("num_experts", minimum=0) or 0
    top_k = text.int_("top_k", minimum=1)
    if top_k is not None and top_k > experts:
        raise OnboardError(
            f"top-k {top_k} is larger than the {experts} routed experts",
            where=text.where(text.find("top_k").key),  # type: ignore[union-attr]
            fix="num_experts_per_tok must not exceed the expert count",
            code="invalid-value",
        )
    num_layers = text.int_("num_layers", minimum=1) or 0
    moe_inter = text.int_("moe_intermediate_size", minimum=1)
    inter = text.int_("intermediate_size", minimum=1)
    dense_inter = text.int_("dense_intermediate_size", minimum=1)
    if moe_inter is None:
        # Families without a separate expert width (Mixtral, OLMoE, JetMoE, Granite) use intermediate_size.
        expert_inter, dense_inter = inter, dense_inter
    else:
        expert_inter, dense_inter = moe_inter, dense_inter or inter
    shared_n = text.int_("num_shared_experts", minimum=0) or 0
    shared_size = text.int_("shared_expert_intermediate_size", minimum=1)
    if shared_size and not shared_n:
        shared_n = 1
    shared_gate = any("shared_expert_gate" in n for n in names) if names else bool(shared_size)
    if names and not shared_n and any(re.search(r"\.shared_experts?\.", n) for n in names):
        shared_n = 1
    score = (text.str_("score_func") or "softmax").lower()
    correction = text.get("topk_method") == "noaux_tc" or any("e_score_correction_bias" in n for n in names)
    if correction and text.find("score_func") is None:
        score = "sigmoid"
    scaling = text.float_("routed_scaling_factor") or 1.0
    layer_names = [n for n in names if re.search(r"(?:^|\.)layers\.\d+\.", n)]
    return Moe(
        num_experts=experts,
        top_k=top_k,
        expert_intermediate_size=expert_inter,
        dense_intermediate_size=dense_inter,
        num_shared_experts=shared_n,
        shared_expert_intermediate_size=shared_size or (expert_inter * shared_n if shared_n and expert_inter else None),
        shared_expert_gate=shared_gate,
        score_func=score,
        correction_bias=correction,
        norm_topk_prob=bool(text.get("norm_topk_prob", False)),
        routed_scaling_factor=scaling,
        n_group=text.int_("n_group", minimum=1),
        topk_group=text.int_("topk_group", minimum=1),
        dense_layers=_dense_layers(text, num_layers),
        moe_layers=num_layers - len(_dense_layers(text, num_layers)),
        router_bias=any(ROUTER_BIAS.search(n) for n in layer_names),
        expert_bias=any(EXPERT_BIAS.search(n) for n in layer_names),
        **_expert_code(probes.experts if probes is not None else None),
    )


# Fields that tile each image at several resolutions (any-resolution images), the more specific first: LLaVA-OneVision
# caps the tile count (vision_aspect_ratio) on top of LLaVA-NeXT's grid (image_grid_pinpoints).
TILING_FIELDS = ("vision_aspect_ratio", "image_grid_pinpoints")


def vision_features(raw: Mapping[str, Any], vision_key: str, probes: Any = None) -> Vision:
    node = raw.get(vision_key)
    view = ConfigView(node if isinstance(node, Mapping) else {}, f"{vision_key}.")
    top = ConfigView(raw)
    multimodal = probes.multimodal if probes is not None else None
    projector: str | None = None  # unknown unless the config or the reference's parts show it
    if "perceiver_config" in raw:
        projector = "perceiver resampler"
    elif raw.get("projector_hidden_act") or raw.get("multi_modal_projector_bias") is not None:
        projector = "mlp"
    elif multimodal is not None:
        projector = next((attr for attr, _, _ in multimodal.parts if "projector" in attr), "inside the vision tower")
    model_type = view.raw("model_type")
    if not isinstance(model_type, str):
        model_type = multimodal.vision_model_type if multimodal is not None else None
    return Vision(
        model_type=model_type,
        hidden_size=view.int_("hidden_size", minimum=1),
        num_layers=view.int_("vision_layers", minimum=1),
        num_heads=view.int_("vision_heads", minimum=1),
        patch_size=view.int_("patch_size", minimum=1),
        image_size=view.int_("image_size", minimum=1),
        image_token_id=top.int_("image_token_id", minimum=0),
        projector=projector,
        config_key=vision_key,
        tiling=next((k for k in TILING_FIELDS if raw.get(k)), None),
    )


def traits(text: ConfigView, layer0: Mapping[str, tuple[int, ...]] | None, norm: Norm, rope: Rope) -> tuple[Trait, ...]:
    """What the config and the reference's parameters show beyond the plain pre-norm decoder, each once."""
    found: list[Trait] = []
    for key, field_name, test, description in TRAIT_FIELDS:
        value = text.raw(field_name)
        if value is not None and test(value):
            found.append(Trait(key, f"{description}: {text.path(field_name)} = {value!r}"))
    pos = text.raw("position_embedding_type")
    if isinstance(pos, str) and pos in POSITION_EMBEDDINGS:
        found.append(
            Trait("absolute_positions", f"{pos} position embeddings: {text.path('position_embedding_type')} = {pos!r}")
        )
    if norm.type == "layernorm":
        where = f" ({norm.eps_attr})" if norm.eps_attr else " (no norm weights)"
        found.append(Trait("layernorm", "LayerNorm instead of RMSNorm" + where))
    # transformers folds an "mrope" type into its default type and keeps only the sections.
    ropes = [r for r in (text.get("rope_scaling"), text.raw("rope_parameters")) if isinstance(r, Mapping)]
    if any((r.get("rope_type") or r.get("type")) == "mrope" or "mrope_section" in r for r in ropes):
        found.append(Trait("mrope", "multimodal RoPE sections (mrope)"))
    elif rope.mrope_sections:
        found.append(Trait("mrope", f"multimodal RoPE sections {list(rope.mrope_sections)} (the reference's default)"))
    per_type = text.raw("rope_parameters")
    layer_types = text.get("layer_types")
    if isinstance(per_type, Mapping) and isinstance(layer_types, list) and set(layer_types) <= set(per_type):
        found.append(Trait("rope_per_layer_type", f"one RoPE per layer type: {text.path('rope_parameters')}"))
    if layer0 is not None:
        for name in layer0:
            for key, pattern, description in TRAIT_PARAMS:
                if re.search(pattern, name):
                    found.append(Trait(key, f"{description}: parameter layers.0.{name}"))
        if not any(k.startswith("post_attention_layernorm.") for k in layer0) and any(
            k.startswith("input_layernorm.") for k in layer0
        ):
            found.append(Trait("parallel_block", "parallel attention/MLP block (one norm per layer)"))
    return tuple(dict.fromkeys(found))


def extract(
    raw: Mapping[str, Any],
    text: ConfigView,
    *,
    kind: str,
    vision_key: str | None,
    inventory: Mapping[str, tuple[int, ...]] | None = None,
    declared: Mapping[str, Any] | None = None,
    probes: Any = None,
) -> Features:
    """Build the features of a supported verdict; ``inventory`` maps checkpoint names to shapes when known, and
    ``probes`` (reference.Probes) holds what was measured on the reference's code."""
    layer0 = None
    names: list[str] = []
    if inventory is not None:
        names = list(inventory)
        layer0 = {}
        for name, shape in inventory.items():
            if re.search(r"vision|visual|vit\.|perceiver|resampler|image|mm_projector|multi_modal", name):
                continue
            m = re.search(r"(?:^|\.)(?:layers|blocks|h|layer)\.0\.(.+)$", name)
            if m:
                layer0[m.group(1)] = tuple(shape)
        renamed = tensor_aliases(layer0)  # read under the names the decoder's modules have
        layer0 = {renamed.get(name, name): shape for name, shape in layer0.items()}
    attention = attention_features(text, layer0, declared if declared is not None else text.data)
    norm = norm_features(text, layer0)
    tie = text.get("tie_word_embeddings")
    if tie is None:
        tie = raw.get("tie_word_embeddings")
    if tie is not None and not isinstance(tie, bool):
        raise OnboardError(
            "tie_word_embeddings must be true or false",
            where=text.where("tie_word_embeddings"),
            fix="correct it",
            code="invalid-value",
        )
    is_moe = kind == "moe" or (kind == "vlm" and text.int_("num_experts", minimum=0) not in (None, 0, 1))
    for fact in ("vocab_size", "num_layers", "hidden_size"):
        text.int_(fact, minimum=1)
    rope = rope_features(
        text,
        probes.rotary_width if probes is not None else None,
        attention.latent.qk_rope_head_dim if attention.latent is not None else attention.head_dim,
        probes,
    )
    return Features(
        attention=attention,
        rope=rope,
        mlp=mlp_features(text, layer0),
        norm=norm,
        tie_word_embeddings=tie,
        num_layers=text.int_("num_layers", minimum=1),
        hidden_size=text.int_("hidden_size", minimum=1),
        vocab_size=text.int_("vocab_size", minimum=1),
        moe=moe_features(text, layer0, names, probes) if is_moe else None,
        vision=vision_features(raw, vision_key, probes) if kind == "vlm" and vision_key else None,
        traits=traits(text, layer0, norm, rope),
    )


def clamps_projections(features: Features) -> bool:
    """Whether q/k/v clipping can sit on the projections as built: separate q, k and v, no q/k norms (OLMoE clamps
    after its norms), no latent attention."""
    att = features.attention
    fused = {t.key for t in features.traits} & {"fused_qkv", "fused_qkv_layout"}
    return att.qk_norm in (None, "none") and not fused and att.latent is None


def with_code(features: Features, code: CodeFacts | None, tiny_text: Mapping[str, Any]) -> Features:
    """The features with what running the reference showed (``code``, measured on ``tiny_text``) as traits."""
    if code is None:
        return features
    found: list[Trait] = []
    norm = code.norm
    if norm is not None and norm.offset:
        found.append(Trait("norm_offset", f"RMSNorm scaling by (1 + weight) (measured on {norm.cls.name})"))
    if norm is not None and norm.centred:  # whatever the config's epsilon is called (PhiMoE's rms_norm_eps)
        found.append(Trait("layernorm", f"LayerNorm instead of RMSNorm (measured on {norm.cls.name})"))
    scale = code.embedding_scale
    hidden = tiny_text.get("hidden_size")
    multiplier = tiny_text.get("embedding_multiplier")
    if math.isnan(scale) or math.isnan(code.inputs_scale):
        found.append(Trait("embedding_scale", "the first layer receives more than the scaled token embeddings"))
    elif isinstance(hidden, int) and math.isclose(scale, hidden**0.5, rel_tol=1e-5) and scale != 1:
        where = "the token lookup" if math.isclose(code.inputs_scale, 1.0) else "the embeddings"
        found.append(Trait("embedding_normalizer", f"{where} scaled by sqrt(hidden_size) (measured)"))
    elif not math.isclose(scale, 1.0) and not (
        isinstance(multiplier, (int, float)) and math.isclose(scale, multiplier, rel_tol=1e-5)
    ):
        found.append(Trait("embedding_scale", f"embeddings scaled by {scale:g} by no config field (measured)"))
    if code.rope_pairs:
        found.append(Trait("rope_pairs", "RoPE over adjacent dim pairs (measured on the reference's tables)"))
    if code.nope_types:
        found.append(Trait("nope_layer_types", f"no RoPE on {', '.join(code.nope_types)} layers (measured)"))
    if code.pair_rotation:
        found.append(
            Trait("pair_rotation", "RoPE over adjacent dim pairs by the tables' first half (measured on its rotation)")
        )
    if code.mrope_layout == "interleaved":
        found.append(Trait("mrope_interleaved", "multimodal RoPE interleaving the grids dim by dim (measured)"))
    if code.unit_qk_types:
        found.append(
            Trait(
                "unit_qk_norm", f"q and k divided by their root mean square on {', '.join(code.unit_qk_types)} layers"
            )
        )
    moe = features.moe
    if moe is not None and code.routed_input_scale is not None and not math.isclose(code.routed_input_scale, 1.0):
        found.append(Trait("routed_input_scale", "each token scaled by its router score before its expert (measured)"))
        moe = replace(moe, input_scaled=True, norm_topk_prob=False, score_func=_input_score(code, tiny_text))
    known = {t.key for t in features.traits}
    # Layers without RoPE that the config lists are measured by layer type: the measurement places them.
    explained = {"nope_layers"} if code.nope_types is not None else set()
    kept = tuple(t for t in features.traits if t.key not in explained)
    extra = tuple(t for t in found if t.key not in known)
    return replace(features, code=code, moe=moe, traits=kept + extra)


def _input_score(code: CodeFacts, tiny_text: Mapping[str, Any]) -> str:
    """The score function that gives each routed token the measured scale with the router's weights at zero: a
    sigmoid's 0.5, or a softmax's share over the experts."""
    scale = code.routed_input_scale or 0.0
    experts = ConfigView(tiny_text).int_("num_experts", minimum=0) or 0
    if math.isclose(scale, 0.5):
        return "sigmoid"
    return "softmax" if experts and math.isclose(scale, 1 / experts) else "measured"
