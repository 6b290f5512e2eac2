"""The tiny test config: small, runnable by the reference, and faithful to the real structure."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import LABELS, load_config, zoo_config

from automodel_onboard.model import reference
from automodel_onboard.model.spec import build_spec

WITH_REFERENCE = sorted(
    n for n, label in LABELS.items() if label["kind"] != "unsupported" and "auto_map" not in load_config(n)
)


def _structure(spec):
    f = spec.features
    att = f.attention
    q_width = att.num_heads * att.head_dim
    out = {
        "kind": (spec.kind, spec.text_backbone),
        "grouping": att.grouping,
        "q_width_vs_hidden": (q_width > f.hidden_size) - (q_width < f.hidden_size),
        "bias": (att.qkv_bias, att.o_bias, f.mlp.bias),
        "qk_norm": att.qk_norm,
        "sliding": att.sliding_window,
        "window_set": bool(att.window),
        "layer_types": att.layer_types,
        "rope": f.rope.type,
        "partial_rotary": f.rope.partial_rotary_factor,
        "tied": f.tie_word_embeddings,
        "mlp": (f.mlp.activation, f.mlp.gated),
        "norm": f.norm.type,
        "traits": tuple(t.key for t in f.traits),
    }
    if f.moe:
        m = f.moe
        out["moe"] = (
            m.top_k < m.num_experts,
            bool(m.num_shared_experts),
            m.shared_expert_gate,
            m.score_func,
            m.correction_bias,
            m.norm_topk_prob,
            bool(m.dense_layers),
            m.moe_layers > 0,
        )
    if f.vision:
        out["vision"] = (f.vision.model_type, f.vision.projector)
    return out


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_tiny_config_is_small_runnable_and_faithful(name):
    real = build_spec(load_config(name))
    assert real.params.tiny_total is not None and real.params.tiny_total < 2_000_000

    tiny = build_spec(dict(real.to_dict()["tiny_config"]))
    # Rates the tiny config sets on purpose: dropout off (the training tests compare runs step by step) and OLMo's
    # clamp on (to be exercised); what is built for them does not depend on their values.
    switched = {"residual_dropout", "embedding_dropout", "qkv_clipping"}
    got, want = (
        {**s, "traits": tuple(t for t in s["traits"] if t not in switched)} for s in map(_structure, (tiny, real))
    )
    assert got == want

    torch.manual_seed(0)
    model = reference.instantiate_tiny(
        real.to_dict()["tiny_config"], real.model_type, real.hf["model_class"], device="cpu"
    )
    model.eval()
    ids = torch.randint(0, tiny.features.vocab_size, (2, 12))
    with torch.no_grad():
        out = model(input_ids=ids)
    assert out.logits.shape == (2, 12, tiny.features.vocab_size)
    assert torch.isfinite(out.logits).all()


def test_tiny_sliding_window_is_shorter_than_test_sequences():
    spec = build_spec(load_config("mistralai__Mistral-Nemo-Base-2407.json") | {"sliding_window": 4096})
    assert spec.tiny_config["sliding_window"] < 12


def test_tiny_keeps_one_layer_of_each_kind():
    spec = build_spec(load_config("zai-org__GLM-4.5.json"))
    tiny = build_spec(dict(spec.to_dict()["tiny_config"]))
    assert tiny.features.moe.dense_layers == (0,) and tiny.features.moe.moe_layers >= 1
    assert tiny.features.moe.top_k < tiny.features.moe.num_experts

    gemma = build_spec(load_config("google__gemma-3-12b-it.json"))
    assert set(gemma.tiny_config["text_config"]["layer_types"]) == {"sliding_attention", "full_attention"}


def test_mlp_layer_types_keep_one_dense_and_one_sparse_layer():
    """EXAONE-MoE lists each layer's MLP (``mlp_layer_types``), which its config class checks against the layer
    count: the tiny config lists its own layers, a dense one first as in the real model."""
    spec = build_spec(zoo_config("exaone_moe"))
    assert spec.features.moe.dense_layers == (0,)
    tiny = spec.tiny_config
    assert list(tiny["mlp_layer_types"]) == ["dense", "sparse"] and tiny["num_hidden_layers"] == 2
    assert len(tiny["layer_types"]) == 2
    rebuilt = build_spec(dict(spec.to_dict()["tiny_config"]))  # built by transformers' config class too
    assert rebuilt.features.moe.dense_layers == (0,)


def test_a_saved_sum_of_head_widths_follows_the_shrunken_widths():
    """DeepSeek-V3's config as save_pretrained writes it holds qk_head_dim (nope + rope), which NeMo AutoModel's own
    implementation reads: the tiny config keeps it the sum of its shrunken parts."""
    tiny = build_spec(zoo_config("deepseek_v3")).tiny_config
    assert tiny["qk_head_dim"] == tiny["qk_nope_head_dim"] + tiny["qk_rope_head_dim"] < 192


def test_multimodal_rope_sections_the_config_leaves_to_the_code_are_measured_and_written_out():
    """Qwen2-VL's config class names no ``mrope_section`` (its model's code defaults to [16, 24, 24] over 64
    frequencies): the sections are measured on the full-size RoPE, scaled into the tiny config, where the default
    would not fit the tiny head, and kept as the generated model's default."""
    spec = build_spec(zoo_config("qwen2_vl"))
    text = spec.tiny_config["text_config"]
    assert "mrope_section" not in json.dumps(zoo_config("qwen2_vl"))
    assert spec.features.rope.mrope_sections == (16, 24, 24)
    sections = text["rope_parameters"]["mrope_section"]
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    assert sum(sections) == head_dim // 2
    assert sections[0] < sections[1] == sections[2]
    assert spec.layout.attention.mrope and spec.layout.attention.mrope_default == (16, 24, 24)
    assert spec.features.code.mrope_layout == "sections"  # measured on the tiny reference, which now runs
    qwen3 = build_spec(load_config("Qwen__Qwen3-0.6B.json"))
    assert qwen3.features.rope.mrope_sections is None and not qwen3.layout.attention.mrope_default


def test_the_tiny_tower_is_deep_enough_for_the_feature_layers_taken():
    """VipLLaVA's projector takes the tower's hidden states at -2, -5, -8, -11 and 6: the tiny tower keeps ten layers
    (eleven hidden states, the embeddings' first), so every index exists."""
    spec = build_spec(zoo_config("vipllava"))
    tiny = spec.tiny_config
    assert list(tiny["vision_feature_layers"]) == [-2, -5, -8, -11, 6]
    assert tiny["vision_config"]["num_hidden_layers"] == 10
    llava = build_spec(load_config("llava-hf__llava-v1.6-mistral-7b-hf.json")).tiny_config
    assert llava["vision_config"]["num_hidden_layers"] == 2  # -2 needs one layer: the tiny default stands


def test_a_vision_width_equal_to_the_text_models_follows_it():
    """Qwen2-VL's vision hidden_size is its projection into the text model: in the tiny config it follows the text
    model's width, while the tower's own widths (embed_dim) shrink to the tiny vision size."""
    from automodel_onboard.layout import matrix

    base = next(c for c in matrix.VLM if c.case_id == "qwen2-vl-base").config()
    tiny = build_spec(base, existing_models=frozenset()).tiny_config
    assert tiny["vision_config"]["hidden_size"] == tiny["hidden_size"] != base["vision_config"]["hidden_size"]
    assert tiny["vision_config"]["embed_dim"] < base["vision_config"]["embed_dim"]
    pixtral = build_spec(load_config("mistral-community__pixtral-12b.json"), existing_models=frozenset()).tiny_config
    assert pixtral["vision_config"]["hidden_size"] != pixtral["text_config"]["hidden_size"]


def test_any_resolution_grids_shrink_with_the_tile():
    """LLaVA-NeXT's resolutions are whole tiles of the tower's image size: the tiny grid has the same tile counts at
    the tiny image size, the config's order kept."""
    base = load_config("llava-hf__llava-v1.6-mistral-7b-hf.json")
    tiny = build_spec(base, existing_models=frozenset()).tiny_config
    size = tiny["vision_config"]["image_size"]
    assert size < base["vision_config"]["image_size"]
    want = [[h // 336 * size, w // 336 * size] for h, w in base["image_grid_pinpoints"]]
    assert [list(p) for p in tiny["image_grid_pinpoints"]] == want
    odd = build_spec(base | {"image_grid_pinpoints": [[384, 768], [768, 384]]}, existing_models=frozenset())
    assert [list(p) for p in odd.tiny_config["image_grid_pinpoints"]] == [[size, 2 * size], [2 * size, size]]


def test_deepstack_layers_stay_within_the_tiny_tower():
    """Qwen3-VL's DeepStack takes features after the listed vision layers, one merger each: the tiny tower lists its
    first layers, as many as the real one lists, and is deep enough to hold them."""
    from automodel_onboard.layout import matrix

    base = next(c for c in matrix.VLM if c.case_id == "qwen3-vl-deepstack").config()
    vision = build_spec(base, existing_models=frozenset()).tiny_config["vision_config"]
    assert list(vision["deepstack_visual_indexes"]) == [0, 1, 2]
    assert vision["depth"] == 3 < base["vision_config"]["depth"]


def test_llama4_per_layer_lists_follow_the_kept_layers():
    """Llama 4's RoPE switch per layer (``no_rope_layers``, which a Hub config may leave to its class to derive from
    ``no_rope_layer_interval``) is kept at the layers the tiny config keeps, so its unrotated layer is built; the
    chunk and the query temperature's floor are shorter than the tests' sequences; ``moe_layers`` lists only kept
    layers."""
    spec = build_spec(load_config("meta-llama__Llama-4-Maverick-17B-128E-Instruct.json"))
    text = spec.tiny_config["text_config"]
    assert list(text["layer_types"]) == ["chunked_attention", "full_attention"]
    assert list(text["no_rope_layers"]) == [1, 0]
    assert text["attention_chunk_size"] == 4 and text["floor_scale"] == 4
    # The tower's MLP after its pixel shuffle takes the shuffled patches: hidden / ratio**2 wide.
    vision = spec.tiny_config["vision_config"]
    assert vision["intermediate_size"] == vision["hidden_size"] * 4 and vision["pixel_shuffle_ratio"] == 0.5
    zoo = build_spec(zoo_config("llama4_text"))
    assert list(zoo.tiny_config["no_rope_layers"]) == [1, 0] and list(zoo.tiny_config["moe_layers"]) == [0, 1]
    assert zoo.tiny_config["num_hidden_layers"] == 2


def test_dropout_rates_are_zero_in_the_tiny_config():
    """Phi-2 drops out its residual branches at 0.1: the tiny config keeps no dropout, so the training tests compare
    runs step by step; the real config's rate is left to the config."""
    real = load_config("microsoft__phi-2.json")
    tiny = build_spec(real).tiny_config
    assert real["resid_pdrop"] == 0.1
    assert {k: tiny[k] for k in ("resid_pdrop", "embd_pdrop", "attention_dropout")} == dict.fromkeys(
        ("resid_pdrop", "embd_pdrop", "attention_dropout"), 0.0
    )
