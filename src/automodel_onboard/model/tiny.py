"""A tiny test config derived from the real one.

The tiny config keeps what decides the code path (head grouping, an explicit head_dim that differs from
hidden/heads, biases, norms, RoPE type, tied embeddings, one layer of each attention type and of each
dense/MoE kind, top-k below the expert count, shared experts, a small vision tower) and shrinks every size so
the reference model has well under 2M parameters. Sizes are written back under the key the real config used,
so sub-config layouts (DBRX's ``attn_config``/``ffn_config``, nested ``text_config``) are preserved.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

from automodel_onboard.model.features import Features, clamps_projections
from automodel_onboard.model.fields import ALIASES, ConfigView

TINY_VOCAB = 256
TINY_HEAD_DIM = 16
TINY_ROPE_HEAD_DIM = 8  # latent attention: the rotated part of each query/key head
TINY_INTERMEDIATE = 128
TINY_EXPERT_INTERMEDIATE = 32
TINY_EXPERTS = 4
TINY_WINDOW = 4  # smaller than the generated tests' sequences, so sliding-window masking is exercised
# Position lengths that the generated tests' sequences pass, so what they switch on is exercised: the attention chunk
# (chunked local attention) and the query temperature's floor (Llama 4's, scaling queries on its NoPE layers).
TINY_LENGTHS = ("attention_chunk_size", "floor_scale")
# Soft caps (``tanh(x / cap) * cap``) low enough that the tiny model's attention scores and logits reach the curve of
# the tanh; at the real caps they stay in its linear part and a missing cap would pass the parity tests.
# Rows: (trait, config key, tiny cap); set wherever the trait is, a class default included.
TINY_SOFTCAPS = (
    ("attention_softcapping", "attn_logit_softcapping", 0.05),
    ("logit_softcapping", "final_logit_softcapping", 1.0),
)
# A logit multiplier (Cohere's logit_scale, 1/16) raised to at least this: at 1/16 a random tiny model's loss moves too
# little in the ten steps of the recipe run; at 1/4 a missing multiplier still changes the logits fourfold.
TINY_MIN_LOGIT_SCALE = 0.25
# q/k/v clipping (OLMo's clip_qkv) low enough that the tiny model's projections reach it: at a real limit (8) they
# would not, and a missing clamp would pass. Set where the clamp is built (features.clamps_projections).
TINY_CLIP_QKV = 0.5
# Dropout rates set to zero: the training tests compare runs step by step (ranks against one process, a resumed run
# against an unbroken one); the generated dropout test switches them on itself.
TINY_NO_DROPOUT = ("resid_pdrop", "embd_pdrop", "residual_dropout", "embedding_dropout", "attention_dropout")
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "vision_layers": 2, "vision_heads": 2}
VISION_WIDTH = re.compile(r"(_dim|_size|hidden_size)$(?<!image_size)(?<!patch_size)")
# The multimodal config's choice of the tower's hidden states the projector takes (one index, or several).
FEATURE_LAYERS = ("vision_feature_layer", "vision_feature_layers")
DROP_KEYS = ("_name_or_path", "auto_map", "transformers_version", "quantization_config", "torch_dtype", "dtype")


def _set(node: dict[str, Any], fact: str, value: Any, *, force: bool = True) -> None:
    """Write ``value`` under the alias the config already uses for ``fact`` (else the canonical key)."""
    for key in ALIASES[fact]:
        parent: Any = node
        parts = key.split(".")
        for part in parts[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and parent.get(parts[-1]) is not None:
            parent[parts[-1]] = value
            return
    if force:
        node[ALIASES[fact][0]] = value


def _heads(features: Features) -> tuple[int, int]:
    grouping = features.attention.grouping
    heads, kv = features.attention.num_heads or 4, features.attention.num_kv_heads or 4
    if grouping == "mqa":
        return 4, 1
    if grouping == "gqa":
        group = heads // kv
        return 2 * min(group, 8), 2
    return 4, 4


def _hidden(features: Features, heads: int) -> int:
    att = features.attention
    q_width = heads * TINY_HEAD_DIM
    real_hidden, real_heads, real_dim = features.hidden_size, att.num_heads, att.head_dim
    if not (real_hidden and real_heads and real_dim) or real_heads * real_dim == real_hidden:
        return q_width
    # Keep the real ratio of attention width to hidden size, on a multiple of 8, and never equal to it.
    ratio = real_heads * real_dim / real_hidden
    hidden = max(16, int(round(q_width / ratio / 8)) * 8)
    if ratio > 1 and hidden >= q_width:
        hidden = q_width - 8
    elif ratio < 1 and hidden <= q_width:
        hidden = q_width + 8
    return hidden


def _remap_token_ids(node: dict[str, Any], vocab: int, mapping: dict[int, int]) -> None:
    for key, value in list(node.items()):
        if key.endswith(("_token_id", "_token_index", "_token_ids")):
            if isinstance(value, int) and not isinstance(value, bool):
                node[key] = _remap_id(value, vocab, mapping)
            elif isinstance(value, list):
                node[key] = [_remap_id(v, vocab, mapping) if isinstance(v, int) else v for v in value]


def _remap_id(value: int, vocab: int, mapping: dict[int, int]) -> int:
    if 0 <= value < vocab:
        return value
    if value not in mapping:
        mapping[value] = vocab - 1 - len(mapping)
    return mapping[value]


def _rescale_rope(params: dict[str, Any], rotary_dim: int, mrope_sections: tuple[int, ...] | None) -> None:
    """Per-frequency RoPE lists are sized by the head dim: resize them to the tiny one (multimodal sections the
    reference's code defaults to written out, since its default would not fit)."""
    half = rotary_dim // 2
    if mrope_sections and "mrope_section" not in params:
        params["mrope_section"] = list(mrope_sections)
    for key in ("long_factor", "short_factor"):
        if isinstance(params.get(key), list) and params[key]:
            values = params[key]
            params[key] = [values[int(i * len(values) / half)] for i in range(half)]
    section = params.get("mrope_section")
    if isinstance(section, list) and section and all(isinstance(s, int) for s in section):
        total = sum(section)
        scaled = [max(1, s * half // total) for s in section]
        scaled[-1] += half - sum(scaled)
        params["mrope_section"] = scaled


def _shrink_text(node: dict[str, Any], features: Features, resolved: Mapping[str, Any]) -> int:
    heads, kv = _heads(features)
    hidden = _hidden(features, heads)
    att = features.attention
    _set(node, "hidden_size", hidden)
    _set(node, "num_heads", heads)
    _set(node, "num_kv_heads", kv)
    # Always explicit: class defaults such as Gemma's head_dim 256 would otherwise bloat the tiny model.
    _set(node, "head_dim", TINY_HEAD_DIM)
    _set(node, "vocab_size", TINY_VOCAB)
    _set(node, "intermediate_size", TINY_INTERMEDIATE)
    if att.latent is not None:
        for fact, value in (
            ("kv_lora_rank", 16),
            ("q_lora_rank", 24),
            ("qk_rope_head_dim", TINY_ROPE_HEAD_DIM),
            ("qk_nope_head_dim", 8),
            ("v_head_dim", 16),
        ):
            _set(node, fact, value, force=fact != "q_lora_rank" or att.latent.q_lora_rank is not None)
        # Latent attention's config classes read head_dim as the rotated width of a query/key head.
        _set(node, "head_dim", TINY_ROPE_HEAD_DIM)
        parts = [node.get(k) for k in ("qk_nope_head_dim", "qk_rope_head_dim")]
        if "qk_head_dim" in node and all(isinstance(p, int) for p in parts):
            node["qk_head_dim"] = sum(parts)  # what save_pretrained writes of the sum its config class computes
    if att.window is not None and att.window > 0:
        _set(node, "sliding_window", TINY_WINDOW)
    for key in TINY_LENGTHS:  # a class default included (Maverick's file leaves floor_scale to its class)
        value = node.get(key, resolved.get(key))
        if isinstance(value, int) and not isinstance(value, bool) and value > TINY_WINDOW:
            node[key] = TINY_WINDOW
    num_layers = 2
    if att.layer_types:
        real_types = node.get("layer_types") or resolved.get("layer_types")
        node["layer_types"] = list(att.layer_types) + [att.layer_types[-1]] * max(0, 2 - len(att.layer_types))
        num_layers = len(node["layer_types"])
        if isinstance(real_types, list):
            _keep_layers(node, resolved, [real_types.index(t) for t in node["layer_types"]], len(real_types))
    if isinstance(node.get("max_window_layers"), int):
        node["max_window_layers"] = min(node["max_window_layers"], num_layers // 2 or 1)
    if features.moe is not None:
        num_layers = max(num_layers, _shrink_moe(node, features))
        for key in ("layer_types", "mlp_layer_types", *PER_LAYER):  # one entry per layer, first uses kept in order
            if isinstance(node.get(key), list):
                node[key] = (node[key] * num_layers)[:num_layers]
        if isinstance(node.get("moe_layers"), list):  # the MoE layers' indices, among those kept
            node["moe_layers"] = [i for i in node["moe_layers"] if isinstance(i, int) and i < num_layers]
    _set(node, "num_layers", num_layers)
    traits = {t.key for t in features.traits}
    for trait, key, cap in TINY_SOFTCAPS:
        if trait in traits:
            node[key] = cap
    if "clip_qkv" in node and clamps_projections(features):
        node["clip_qkv"] = TINY_CLIP_QKV
    for key in TINY_NO_DROPOUT:
        if isinstance(node.get(key), (int, float)) and not isinstance(node[key], bool):
            node[key] = 0.0
    scale = node.get("logit_scale")
    if "logit_scale" in traits and isinstance(scale, (int, float)) and abs(scale) < TINY_MIN_LOGIT_SCALE:
        node["logit_scale"] = TINY_MIN_LOGIT_SCALE
    rope = node.get("rope_scaling") or node.get("rope_parameters")
    if isinstance(rope, dict):
        partial = features.rope.partial_rotary_factor
        _rescale_rope(rope, int(TINY_HEAD_DIM * partial), features.rope.mrope_sections)
    return hidden


# Per-layer lists beside ``layer_types`` that transformers reads by layer index (Llama 4's RoPE switch per layer).
PER_LAYER = ("no_rope_layers",)


def _keep_layers(node: dict[str, Any], resolved: Mapping[str, Any], indices: list[int], real_layers: int) -> None:
    """The per-layer lists at the real layers the tiny config keeps (one of each layer type, first uses), a list the
    config class derives (from Llama 4's ``no_rope_layer_interval``) written out."""
    for key in PER_LAYER:
        values = node.get(key, resolved.get(key))
        if isinstance(values, list) and len(values) == real_layers:
            node[key] = [values[i] for i in indices]


def _shrink_moe(node: dict[str, Any], features: Features) -> int:
    moe = features.moe
    assert moe is not None
    view = ConfigView(node)
    _set(node, "num_experts", TINY_EXPERTS)
    _set(node, "top_k", max(1, min(moe.top_k or 1, TINY_EXPERTS // 2)))
    if view.find("moe_intermediate_size") is not None:
        _set(node, "moe_intermediate_size", TINY_EXPERT_INTERMEDIATE)
    else:
        _set(node, "intermediate_size", TINY_EXPERT_INTERMEDIATE)
    if view.find("dense_intermediate_size") is not None:
        _set(node, "dense_intermediate_size", TINY_INTERMEDIATE)
    if view.find("shared_expert_intermediate_size") is not None:
        _set(node, "shared_expert_intermediate_size", TINY_EXPERT_INTERMEDIATE)
    if view.find("num_shared_experts") is not None and moe.num_shared_experts:
        _set(node, "num_shared_experts", 1)
    if moe.n_group and moe.n_group > 1:
        _set(node, "n_group", 2)
        _set(node, "topk_group", 1)
    elif moe.n_group:
        _set(node, "n_group", 1)
        _set(node, "topk_group", 1)
    # One dense and one MoE layer when the real model has both, using the family's own placement fields.
    has_dense = bool(moe.dense_layers)
    layers = 2
    for fact in ("first_k_dense_replace",):
        if view.find(fact) is not None:
            _set(node, fact, 1 if has_dense else 0)
    for fact in ("moe_layer_freq", "decoder_sparse_step", "interleave_moe_layer_step"):
        found = view.find(fact)
        if found is not None and isinstance(found.value, int) and found.value > 1:
            _set(node, fact, 2)
    if isinstance(node.get("mlp_only_layers"), list) and node["mlp_only_layers"]:
        node["mlp_only_layers"] = [0]
    if has_dense and view.find("first_k_dense_replace") is not None and view.find("moe_layer_freq") is not None:
        layers = 3
    kinds = node.get("mlp_layer_types")
    if isinstance(kinds, list) and kinds:  # each type once, in order of first use (a dense one first, as counted)
        firsts = list(dict.fromkeys(kinds))
        node["mlp_layer_types"] = (firsts + firsts[-1:] * layers)[:layers]
    return layers


def _shrink_vision(node: dict[str, Any], text_hidden: int, real_text_hidden: int | None) -> None:
    # A width equal to the text model's is the projection into it (Qwen2-VL's vision hidden_size): it follows.
    projections = {k for k, v in node.items() if real_text_hidden and v == real_text_hidden and VISION_WIDTH.search(k)}
    # Every size is written, under the family's key or the usual one: class defaults are full-size towers.
    for fact, value in TINY_VISION.items():
        _set(node, fact, value)
    patch = node.get("patch_size") if isinstance(node.get("patch_size"), int) else 14
    node.setdefault("patch_size", patch)
    node["image_size"] = patch * 4
    if "head_dim" in node:
        node["head_dim"] = TINY_VISION["hidden_size"] // TINY_VISION["vision_heads"]
    # Projector and output widths go by many names; every large one is shrunk together so they stay equal.
    for key, value in list(node.items()):
        if key in projections or key in ("out_hidden_size", "projection_dim"):
            node[key] = text_hidden
        elif isinstance(value, int) and not isinstance(value, bool) and value > 64 and VISION_WIDTH.search(key):
            node[key] = TINY_VISION["hidden_size"]
    ratio = node.get("pixel_shuffle_ratio")
    if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 < ratio < 1:
        # The shuffled patches are hidden / ratio**2 wide, which the tower's MLP after the shuffle takes as
        # intermediate_size (Llama 4's).
        node["intermediate_size"] = int(TINY_VISION["hidden_size"] / ratio**2)
    if "fullatt_block_indexes" in node:
        node["fullatt_block_indexes"] = [TINY_VISION["vision_layers"] - 1]
    deepstack = node.get("deepstack_visual_indexes")
    if isinstance(deepstack, (list, tuple)) and deepstack:
        # Each listed layer's features feed a merger of their own: the first layers, as many as the real tower's,
        # so the mergers the checkpoint holds are all built and used.
        node["deepstack_visual_indexes"] = list(range(len(deepstack)))
        _set(node, "vision_layers", max(TINY_VISION["vision_layers"], len(deepstack)))
    if "num_image_tokens" in node:
        node["num_image_tokens"] = 16


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shrink_tiles(tiny: dict[str, Any], image_size: Any) -> None:
    """Any-resolution grids (``image_grid_pinpoints``) in tiles of the tiny image size: each resolution is a whole
    number of tiles of the real tower's size, which is their greatest common divisor."""
    grid = tiny.get("image_grid_pinpoints")
    sizes = (
        [v for pair in grid for v in pair]
        if isinstance(grid, (list, tuple)) and all(isinstance(p, (list, tuple)) for p in grid)
        else []
    )
    if not isinstance(image_size, int) or not sizes or not all(isinstance(v, int) and v > 0 for v in sizes):
        return
    tile = math.gcd(*sizes)
    tiny["image_grid_pinpoints"] = [[v // tile * image_size for v in pair] for pair in grid]


def tiny_config(
    raw: Mapping[str, Any],
    features: Features,
    *,
    text_key: str,
    vision_key: str | None,
    resolved: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The tiny config as a JSON-able dict in the same layout as ``raw``; ``resolved``: the text config with its
    class's defaults, where per-layer lists the class derives are read."""
    tiny = copy.deepcopy(dict(raw))
    for key in DROP_KEYS:
        tiny.pop(key, None)
    text = tiny if not text_key else tiny.setdefault(text_key, {})
    for key in DROP_KEYS:
        text.pop(key, None)
    hidden = _shrink_text(text, features, resolved or {})
    mapping: dict[int, int] = {}
    _remap_token_ids(text, TINY_VOCAB, mapping)
    if text is not tiny:
        _remap_token_ids(tiny, TINY_VOCAB, mapping)
        if "vocab_size" in tiny:
            tiny["vocab_size"] = TINY_VOCAB
        if "hidden_size" in tiny:
            tiny["hidden_size"] = hidden
    if vision_key and isinstance(tiny.get(vision_key), dict):
        vision = tiny[vision_key]
        for key in DROP_KEYS:
            vision.pop(key, None)
        _shrink_vision(vision, hidden, features.hidden_size)
        # The hidden states the projector takes must exist in the tiny tower (VipLLaVA's five, down to the 11th from
        # the end): index -k needs k - 1 layers, index i needs i.
        indices = [i for key in FEATURE_LAYERS for i in _as_list(tiny.get(key)) if _is_index(i)]
        depth = max((-i - 1 if i < 0 else i for i in indices), default=0)
        layers = ConfigView(vision).get("vision_layers")
        if isinstance(layers, int) and depth > layers:
            _set(vision, "vision_layers", depth)
        if "projection_dim" in tiny:
            tiny["projection_dim"] = hidden
        if "mm_tokens_per_image" in tiny:
            tiny["mm_tokens_per_image"] = 4
        _shrink_tiles(tiny, vision.get("image_size"))
    if isinstance(tiny.get("perceiver_config"), dict):
        tiny["perceiver_config"].update(
            {
                "resampler_n_latents": 4,
                "resampler_depth": 1,
                "resampler_n_heads": 2,
                "resampler_head_dim": 16,
                "num_key_value_heads": 1,
            }
        )
        tiny["perceiver_config"].pop("torch_dtype", None)
    tiny["dtype"] = "float32"
    return tiny


def without_derived(tiny: dict[str, Any], text_key: str) -> dict[str, Any]:
    """``tiny`` without the fields its config classes compute (Falcon's head_dim), which they refuse as fields."""
    text = tiny.get(text_key) if text_key else tiny
    for node in (tiny, text) if isinstance(text, dict) else (tiny,):
        for key in _derived_keys(node.get("model_type")) & node.keys():
            del node[key]
    return tiny


def _derived_keys(model_type: Any) -> set[str]:
    """The read-only properties of the config class of ``model_type`` (none for a type transformers lacks)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        return set()
    cls = CONFIG_MAPPING[model_type]
    return {
        name for name in dir(cls) if isinstance(getattr(cls, name, None), property) and getattr(cls, name).fset is None
    }
