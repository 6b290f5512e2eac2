"""Reading a Hugging Face config through the many names families give the same fact.

Each fact the spec needs is declared once in :data:`ALIASES` as the ordered list of keys that carry it
(dotted for nested sub-configs, e.g. DBRX's ``ffn_config.moe_num_experts``). :class:`ConfigView` reads a
fact through that table, validates its type, and remembers where it was found so that reasons and errors
can name the exact field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automodel_onboard.errors import OnboardError

ALIASES: Mapping[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "d_model", "n_embd", "model_dim", "dim"),
    "num_layers": ("num_hidden_layers", "n_layers", "num_layers", "n_layer"),
    "num_heads": ("num_attention_heads", "n_heads", "n_head", "num_heads"),
    "num_kv_heads": (
        "num_key_value_heads",
        "attn_config.kv_n_heads",
        "num_kv_heads",
        "n_kv_heads",
        "multi_query_group_num",
        "num_query_groups",
    ),
    "head_dim": ("head_dim", "kv_channels", "attention_head_dim"),
    "intermediate_size": ("intermediate_size", "ffn_config.ffn_hidden_size", "ffn_hidden_size", "n_inner", "ffn_dim"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "max_positions": ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length"),
    "hidden_act": ("hidden_act", "activation_function", "hidden_activation", "ffn_act_fn"),
    "rms_norm_eps": ("rms_norm_eps", "rms_norm_epsilon"),
    "layer_norm_eps": ("layer_norm_eps", "layer_norm_epsilon", "norm_eps", "layernorm_epsilon", "norm_epsilon"),
    "tie_word_embeddings": ("tie_word_embeddings",),
    "rope_theta": ("rope_theta", "attn_config.rope_theta", "rotary_emb_base", "rope_base"),
    "rope_scaling": ("rope_parameters", "rope_scaling"),
    "partial_rotary_factor": ("partial_rotary_factor", "rotary_pct"),
    "sliding_window": ("sliding_window",),
    "layer_types": ("layer_types",),
    "attention_bias": ("attention_bias", "use_qkv_bias", "qkv_bias", "bias", "add_bias_linear", "add_qkv_bias"),
    "mlp_bias": ("mlp_bias",),
    "qk_norm": ("use_qk_norm", "qk_layernorm", "qk_norm"),
    # Mixture of Experts: the routed-expert count and top-k under every convention in use. A bare ``top_k``
    # is a sampling default in older files, so it is deliberately not an alias.
    "num_experts": (
        "num_local_experts",
        "num_experts",
        "n_routed_experts",
        "moe_num_experts",
        "ffn_config.moe_num_experts",
        "num_routed_experts",
        "n_experts",
        "moe_num_routed_experts",
    ),
    "top_k": (
        "num_experts_per_tok",
        "moe_top_k",
        "ffn_config.moe_top_k",
        "moe_k",
        "num_selected_experts",
        "experts_per_token",
        "moe_router_topk",
    ),
    "moe_intermediate_size": ("moe_intermediate_size", "expert_intermediate_size", "moe_ffn_hidden_size"),
    "dense_intermediate_size": ("intermediate_size_mlp", "dense_intermediate_size"),
    "num_shared_experts": ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts"),
    "shared_expert_intermediate_size": ("shared_expert_intermediate_size", "moe_shared_expert_intermediate_size"),
    "score_func": ("scoring_func", "router_score_function", "moe_router_score_function"),
    "topk_method": ("topk_method",),
    "norm_topk_prob": ("norm_topk_prob", "moe_renormalize", "renormalize"),
    "routed_scaling_factor": ("routed_scaling_factor",),
    "n_group": ("n_group", "moe_n_group"),
    "topk_group": ("topk_group", "moe_topk_group"),
    "first_k_dense_replace": ("first_k_dense_replace", "moe_layer_start_index"),
    "moe_layer_freq": ("moe_layer_freq",),
    "decoder_sparse_step": ("decoder_sparse_step",),
    "interleave_moe_layer_step": ("interleave_moe_layer_step",),
    "mlp_only_layers": ("mlp_only_layers",),
    "mlp_layer_types": ("mlp_layer_types",),
    "moe_layers": ("moe_layers",),
    "mtp_layers": ("num_nextn_predict_layers", "num_mtp_layers"),
    # Latent (MLA) attention.
    "q_lora_rank": ("q_lora_rank",),
    "kv_lora_rank": ("kv_lora_rank",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "v_head_dim": ("v_head_dim",),
    # Vision towers.
    "image_size": ("image_size", "img_size"),
    "patch_size": ("patch_size", "spatial_patch_size"),
    "vision_layers": ("num_hidden_layers", "depth", "num_layers"),
    "vision_heads": ("num_attention_heads", "num_heads"),
    "image_token_id": ("image_token_id", "image_token_index", "image_token"),
}

# Upper bounds far past every released model, checked before anything is built: a size beyond one is a typo or an
# attack, and would only make the reference inventory hang or exhaust memory.
LIMITS: Mapping[str, int] = {
    "num_layers": 1024,
    "num_experts": 4096,
    "top_k": 4096,
    "num_shared_experts": 256,
    "mtp_layers": 64,
    "hidden_size": 1 << 17,
    "num_heads": 4096,
    "num_kv_heads": 4096,
    "head_dim": 4096,
    "intermediate_size": 1 << 20,
    "moe_intermediate_size": 1 << 20,
    "dense_intermediate_size": 1 << 20,
    "shared_expert_intermediate_size": 1 << 20,
    "vocab_size": 1 << 23,
    "vision_layers": 512,
    "vision_heads": 4096,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


@dataclass(frozen=True)
class Found:
    """A value read from the config and the dotted path it came from."""

    key: str
    value: Any


class ConfigView:
    """A read-only view of one (sub-)config, addressed by alias; ``prefix`` names it in messages."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "", source: str = "config.json"):
        self.data = data
        self.prefix = prefix
        self.source = source

    def where(self, key: str) -> str:
        return f"{self.source}: {self.prefix}{key}"

    def path(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def raw(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def has(self, dotted: str) -> bool:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True

    def find(self, fact: str) -> Found | None:
        """The first alias of ``fact`` present with a non-null value."""
        for key in ALIASES[fact]:
            value = self.raw(key)
            if value is not None:
                return Found(self.path(key), value)
        return None

    def get(self, fact: str, default: Any = None) -> Any:
        found = self.find(fact)
        return default if found is None else found.value

    def sub(self, key: str) -> ConfigView | None:
        value = self.data.get(key)
        if isinstance(value, Mapping):
            return ConfigView(value, f"{self.prefix}{key}.", self.source)
        return None

    # Typed accessors: a present value of the wrong type is an error naming the field, never a silent default.
    def int_(self, fact: str, *, minimum: int = 0) -> int | None:
        found = self.find(fact)
        if found is None:
            return None
        if not _is_int(found.value):
            raise OnboardError(
                f"{found.key} must be an integer, got {type(found.value).__name__} {_short(found.value)}",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="invalid-value",
            )
        if found.value < minimum:
            raise OnboardError(
                f"{found.key} must be at least {minimum}, got {found.value}",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="invalid-value",
            )
        self.check_limit(fact)
        return found.value

    def names(self, fact: str, *, fix: str) -> list[str] | None:
        """A list of names (one per layer, say), or None where the config has none."""
        found = self.find(fact)
        if found is None:
            return None
        if not (isinstance(found.value, list) and all(isinstance(v, str) for v in found.value)):
            raise OnboardError(
                f"{found.key} must be a list of strings, got {_short(found.value)}",
                where=f"{self.source}: {found.key}",
                fix=fix,
                code="invalid-value",
            )
        return found.value

    def check_limit(self, fact: str) -> None:
        """Refuse an integer ``fact`` past its :data:`LIMITS` entry (a type error is left to the typed reads)."""
        found, limit = self.find(fact), LIMITS.get(fact)
        if found is not None and limit is not None and _is_int(found.value) and found.value > limit:
            raise OnboardError(
                f"{found.key} = {found.value} is beyond any model this tool builds (at most {limit})",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="size-limit",
            )

    def float_(self, fact: str, *, positive: bool = False) -> float | None:
        found = self.find(fact)
        if found is None:
            return None
        if not _is_number(found.value):
            raise OnboardError(
                f"{found.key} must be a finite number, got {type(found.value).__name__} {_short(found.value)}",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="invalid-value",
            )
        if positive and found.value <= 0:
            raise OnboardError(
                f"{found.key} must be positive, got {found.value}",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="invalid-value",
            )
        return float(found.value)

    def bool_(self, fact: str) -> bool | None:
        found = self.find(fact)
        if found is None:
            return None
        if not isinstance(found.value, bool):
            raise OnboardError(
                f"{found.key} must be true or false, got {type(found.value).__name__} {_short(found.value)}",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="invalid-value",
            )
        return found.value

    def str_(self, fact: str) -> str | None:
        found = self.find(fact)
        if found is None:
            return None
        if not isinstance(found.value, str):
            raise OnboardError(
                f"{found.key} must be a string, got {type(found.value).__name__} {_short(found.value)}",
                where=f"{self.source}: {found.key}",
                fix="correct the value in config.json",
                code="invalid-value",
            )
        return found.value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
