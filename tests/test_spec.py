"""The architecture spec: features, names, inventory and the tiny config, on real configs."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import LABELS, SPEC_KEYS, load_config, zoo_config

from automodel_onboard.errors import OnboardError, UnsupportedModel
from automodel_onboard.model.spec import build_spec

SUPPORTED = sorted(n for n, label in LABELS.items() if label["kind"] != "unsupported")


@pytest.fixture(scope="module")
def specs():
    cache = {}

    def get(name, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = build_spec(load_config(name), existing_models=frozenset({"llama", "qwen3"}), **kwargs)
        return cache[key]

    return get


def test_spec_is_immutable_and_json_serialisable(specs):
    spec = specs("Qwen__Qwen3-0.6B.json")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = "moe"
    with pytest.raises(TypeError):
        spec.tiny_config["hidden_size"] = 1
    data = json.loads(spec.to_json())
    assert SPEC_KEYS <= set(data)


@pytest.mark.parametrize("name", sorted(n for n, label in LABELS.items() if label["kind"] == "unsupported"))
def test_unsupported_inputs_stop_at_the_spec(name):
    with pytest.raises(UnsupportedModel) as info:
        build_spec(load_config(name))
    assert info.value.code == "unsupported"
    assert "is not supported" in str(info.value)


def test_qwen3_features(specs):
    att = specs("Qwen__Qwen3-0.6B.json").features.attention
    assert (att.num_heads, att.num_kv_heads, att.head_dim, att.grouping) == (16, 8, 128, "gqa")
    assert att.head_dim_explicit
    assert att.qk_norm == "per_head"  # implied by the architecture, seen in the inventory
    assert (att.qkv_bias, att.o_bias, att.bias_attr) == (False, False, "attention_bias")


def test_qwen2_bias_is_implied_by_the_architecture(specs):
    att = specs("Qwen__Qwen2-0.5B.json").features.attention
    assert (att.qkv_bias, att.o_bias, att.bias_attr) == (True, False, None)
    # Windows are declared per layer (the generated code reads layer_types) but off: use_sliding_window is false.
    assert (att.sliding_window, att.window_declared) == ("none", "per_layer")
    assert att.head_dim == 64 and att.grouping == "gqa"


@pytest.mark.parametrize(
    ("fixture", "facts"),
    [
        ("Qwen__Qwen3-0.6B.json", {"qk_norm": None, "qkv_bias": None, "o_bias": None, "sliding_window": "none"}),
        ("Qwen__Qwen2-0.5B.json", {"qkv_bias": None, "sliding_window": "none"}),
        ("mistralai__Mistral-Nemo-Base-2407.json", {"sliding_window": "none", "qk_norm": None}),
    ],
)
def test_facts_of_the_code_are_unknown_without_the_inventory(fixture, facts):
    features = build_spec(load_config(fixture), with_inventory=False).features
    assert {k: getattr(features.attention, k) for k in facts} == facts
    assert (features.mlp.bias, features.mlp.gated) == (None, None)


def test_facts_with_the_inventory(specs):
    qwen3 = specs("Qwen__Qwen3-0.6B.json").features
    assert (qwen3.attention.qk_norm, qwen3.attention.sliding_window) == ("per_head", "none")
    assert (qwen3.mlp.bias, qwen3.mlp.gated) == (False, True)
    vision = specs("Qwen__Qwen2.5-VL-3B-Instruct.json").features.vision
    assert vision.model_type == "qwen2_5_vl_vision" and vision.projector == "inside the vision tower"
    assert (
        build_spec(load_config("Qwen__Qwen2.5-VL-3B-Instruct.json"), with_inventory=False).features.vision.model_type
        is None
    )


@pytest.mark.parametrize(
    ("changes", "sliding"),
    [
        ({"sliding_window": 4096}, "all_layers"),
        ({"sliding_window": 4096, "use_sliding_window": False}, "none"),
        ({"sliding_window": None}, "none"),
        (
            {"sliding_window": 64, "layer_types": ["sliding_attention", "full_attention"], "num_hidden_layers": 2},
            "per_layer",
        ),
        ({"sliding_window": 64, "layer_types": ["sliding_attention"] * 2, "num_hidden_layers": 2}, "all_layers"),
    ],
)
def test_sliding_window_is_what_the_config_turns_on(changes, sliding):
    config = {**load_config("meta-llama__Llama-3.2-3B.json"), **changes}
    assert build_spec(config, with_inventory=False).features.attention.sliding_window == sliding


def test_llama3_rope_and_tying(specs):
    spec = specs("meta-llama__Llama-3.2-3B.json")
    assert spec.features.rope.type == "llama3"
    assert spec.features.rope.parameters["factor"] == 32.0
    assert spec.features.rope.theta == 500000.0
    assert spec.features.tie_word_embeddings is True
    assert "lm_head.weight" not in {t.name for t in spec.inventory.tensors}  # tied: not in the checkpoint


def test_llama2_mha_derived_head_dim_and_defaults(specs):
    spec = specs("meta-llama__Llama-2-7b-hf.json")
    att = spec.features.attention
    assert (att.grouping, att.head_dim, att.head_dim_explicit) == ("mha", 128, False)
    assert spec.features.rope.theta == 10000.0
    assert spec.features.tie_word_embeddings is False
    assert "lm_head.weight" in {t.name for t in spec.inventory.tensors}


def test_mistral_nemo_explicit_head_dim(specs):
    att = specs("mistralai__Mistral-Nemo-Base-2407.json").features.attention
    assert att.head_dim == 128 and att.head_dim * att.num_heads != 5120 and att.head_dim_explicit


def test_moe_schema_qwen2_moe(specs):
    moe = specs("Qwen__Qwen2-57B-A14B.json").features.moe
    assert (moe.num_experts, moe.top_k, moe.expert_intermediate_size) == (64, 8, 2560)
    assert (moe.num_shared_experts, moe.shared_expert_intermediate_size, moe.shared_expert_gate) == (1, 20480, True)
    assert moe.norm_topk_prob is False and moe.dense_layers == ()


def test_moe_schema_glm45(specs):
    spec = specs("zai-org__GLM-4.5.json")
    moe = spec.features.moe
    assert (moe.num_experts, moe.top_k, moe.num_shared_experts) == (160, 8, 1)
    assert (moe.score_func, moe.correction_bias, moe.routed_scaling_factor) == ("sigmoid", True, 2.5)
    assert moe.dense_layers == (0, 1, 2) and moe.moe_layers == 89
    assert (moe.n_group, moe.topk_group) == (1, 1)
    assert "partial_rotary" in {t.key for t in spec.features.traits}
    assert spec.params.active < spec.params.total


def test_moe_schema_router_and_expert_biases_from_the_checkpoint(specs):
    """Biases on the router or the routed experts are read off the reference's checkpoint tensors."""
    from automodel_onboard.layout import matrix

    assert not specs("Qwen__Qwen3-235B-A22B.json").features.moe.router_bias
    base = next(c for c in matrix.MOE if c.case_id == "gpt-oss-base").config()
    moe = build_spec(base, existing_models=frozenset()).features.moe
    assert (moe.router_bias, moe.expert_bias) == (True, True)


def test_moe_schema_dbrx_nested_names(specs):
    moe = specs("databricks__dbrx-base.json").features.moe
    assert (moe.num_experts, moe.top_k, moe.expert_intermediate_size) == (16, 4, 10752)


def test_moe_llama4_interleaved_dense_layers(specs):
    spec = specs("meta-llama__Llama-4-Maverick-17B-128E-Instruct.json")
    moe = spec.features.moe
    assert moe.num_shared_experts == 1  # implied by the architecture, seen in the inventory
    assert moe.dense_layers == tuple(range(0, 48, 2))
    assert moe.dense_intermediate_size == 16384 and moe.expert_intermediate_size == 8192


@pytest.mark.parametrize(
    ("kinds", "dense"),
    [(["dense", "dense"], (0, 1)), (["dense", "sparse"], (0,)), (["sparse", "sparse"], ())],
)
def test_moe_placement_by_mlp_layer_types(kinds, dense):
    cfg = {**load_config("Qwen__Qwen3-235B-A22B.json"), "num_hidden_layers": 2, "mlp_layer_types": kinds}
    assert build_spec(cfg, with_inventory=False).features.moe.dense_layers == dense


def test_mlp_layer_types_beyond_dense_and_sparse_are_a_trait():
    """DeepSeek-V4 lists hash-routed MoE layers ("hash_moe"): a trait no kind builds, so a named gap."""
    cfg = {**load_config("Qwen__Qwen3-235B-A22B.json"), "num_hidden_layers": 2, "mlp_layer_types": ["hash_moe", "moe"]}
    spec = build_spec(cfg, with_inventory=False)
    (trait,) = [t for t in spec.features.traits if t.key == "mlp_layer_types"]
    assert trait.description == "MLP layers of other types than dense and sparse: mlp_layer_types = ['hash_moe', 'moe']"
    cfg["mlp_layer_types"] = ["dense", 1]
    with pytest.raises(OnboardError) as info:
        build_spec(cfg, with_inventory=False)
    assert "mlp_layer_types must be a list of strings" in str(info.value)
    assert info.value.code == "invalid-value" and "mlp_layer_types" in info.value.where


def test_pair_rotation_is_measured_on_the_familys_rotation(specs):
    """Helium, ERNIE 4.5 and GLM keep cat(freqs, freqs) tables but rotate adjacent dim pairs by the first half: measured
    on their own apply_rotary_pos_emb, laid out for the decoder; Llama's halves and Cohere-style pair tables are not
    it."""
    for model_type in ("helium", "ernie4_5", "glm"):
        spec = build_spec(zoo_config(model_type))
        assert spec.features.code.pair_rotation is True, model_type
        assert spec.layout.attention.pair_rotation and not spec.layout.attention.rope_pairs, model_type
    assert specs("meta-llama__Llama-3.2-3B.json").features.code.pair_rotation is False
    cohere = build_spec(zoo_config("cohere"))
    assert cohere.features.code.rope_pairs is True and cohere.features.code.pair_rotation is None


def test_layer_types_without_rope_are_measured():
    """Cohere 2 rotates no queries or keys on its full-attention layers, which no config field says: measured by
    swapping the RoPE tables for the identity, laid out by layer type; families that rotate everywhere have none."""
    spec = build_spec(zoo_config("cohere2"))
    assert spec.features.code.nope_types == ("full_attention",)
    assert spec.layout.attention.nope_types == ("full_attention",)
    gemma2 = build_spec(zoo_config("gemma2"))
    assert gemma2.features.code.nope_types == () and gemma2.layout.attention.nope_types == ()


def test_llama4_text_habits_are_measured():
    """Llama 4: complex RoPE tables (one angle per adjacent dim pair), no RoPE on its full-attention layers, q and k
    divided by their root mean square with no weight on the others, and each token scaled by its router's sigmoid
    score before its one expert (the experts receive half of each token with the router at zero); none of it in a
    config field."""
    spec = build_spec(zoo_config("llama4_text"))
    code = spec.features.code
    assert code.complex_tables is True and code.rope_pairs is True and code.float32_tables is True
    assert code.nope_types == ("full_attention",) and code.unit_qk_types == ("chunked_attention",)
    assert code.routed_input_scale == pytest.approx(0.5)
    moe = spec.features.moe
    assert moe.input_scaled and moe.score_func == "sigmoid" and not moe.norm_topk_prob
    keys = {t.key for t in spec.features.traits}
    assert {"routed_input_scale", "unit_qk_norm", "nope_layer_types", "rope_pairs"} <= keys
    assert "nope_layers" not in keys  # the config's list is placed by the measurement
    assert not spec.layout.gaps
    maverick = build_spec(load_config("meta-llama__Llama-4-Maverick-17B-128E-Instruct.json"))
    assert maverick.features.code.unit_qk_types == ()  # use_qk_norm false
    assert maverick.features.moe.dense_layers == tuple(range(0, 48, 2))
    mixtral = build_spec(load_config("mistralai__Mixtral-8x22B-v0.1.json"))
    assert mixtral.features.code.routed_input_scale == pytest.approx(1.0)
    assert mixtral.features.code.unit_qk_types is None and not mixtral.features.moe.input_scaled


def test_moe_layers_must_be_indices():
    """Checked before any config class reads it (transformers' own check refuses it too, when it is built)."""
    cfg = {**zoo_config("llama4_text"), "moe_layers": [0, "one"]}
    with pytest.raises(OnboardError) as info:
        build_spec(cfg, with_inventory=False)
    assert info.value.code == "invalid-value" and "moe_layers must be a list of layer indices" in str(info.value)
    with pytest.raises(OnboardError) as info:
        build_spec(cfg)
    assert info.value.code == "config-rejected" and "moe_layers" in str(info.value)


def test_a_widened_residual_stream_is_no_embedding_scale():
    """HY-V4's first layer receives several copies of the hidden state: measured as more than the embeddings."""
    spec = build_spec(zoo_config("hy_v4"))
    assert "the first layer receives more than the scaled token embeddings" in {
        t.description for t in spec.features.traits
    }


def test_moe_checkpoint_format_is_per_expert(specs):
    names = {t.name for t in specs("Qwen__Qwen3-235B-A22B.json").inventory.tensors}
    assert "model.layers.0.mlp.experts.127.gate_proj.weight" in names
    assert "model.layers.0.mlp.experts.0.down_proj.weight" in names
    assert not any(n.endswith("experts.gate_up_proj") for n in names)  # the in-memory fused layout


def test_mixtral_checkpoint_names(specs):
    names = {t.name for t in specs("mistralai__Mixtral-8x22B-v0.1.json").inventory.tensors}
    assert "model.layers.0.block_sparse_moe.experts.7.w1.weight" in names
    assert "model.layers.0.block_sparse_moe.gate.weight" in names


def test_parameter_counts(specs):
    spec = specs("Qwen__Qwen3-235B-A22B.json")
    assert 234e9 < spec.params.total < 236e9
    assert 21e9 < spec.params.active < 23e9
    dense = specs("meta-llama__Llama-2-7b-hf.json")
    assert 6.7e9 < dense.params.total < 6.8e9 and dense.params.active is None


def test_vlm_features(specs):
    spec = specs("llava-hf__llava-v1.6-mistral-7b-hf.json")
    vision = spec.features.vision
    assert (spec.kind, spec.text_backbone) == ("vlm", "dense")
    assert (vision.model_type, vision.hidden_size, vision.num_layers) == ("clip_vision_model", 1024, 24)
    assert vision.image_token_id == 32000 and vision.projector == "mlp"
    # Sparse text_config: sizes come from the Mistral defaults.
    assert spec.features.hidden_size == 4096 and spec.features.attention.num_heads == 32


def test_vlm_top_level_text(specs):
    spec = specs("Qwen__Qwen2.5-VL-3B-Instruct.json")
    assert spec.text_key == "" and spec.features.vision.num_layers == 32
    assert spec.features.vision.image_token_id == 151655


@pytest.mark.parametrize(
    ("name", "key", "needle"),
    [
        ("google__gemma-3-12b-it.json", "sandwich_norms", "sandwich norms"),
        ("ibm-granite__granite-3.1-3b-a800m-instruct.json", "embedding_multiplier", "embedding scaling"),
        ("ibm-granite__granite-3.1-3b-a800m-instruct.json", "residual_multiplier", "residual scaling"),
        ("zai-org__GLM-4.5.json", "multi_token_prediction", "multi-token prediction"),
        ("jetmoe__jetmoe-8b.json", "attention_experts", "mixture of attention heads"),
        ("microsoft__phi-2.json", "partial_rotary", "partial rotary"),
        ("microsoft__phi-2.json", "layernorm", "LayerNorm"),
        ("microsoft__phi-2.json", "parallel_block", "parallel attention/MLP"),
        ("stabilityai__stablelm-2-1_6b.json", "layernorm", "LayerNorm"),
        ("allenai__OLMo-1B-hf.json", "layernorm", "LayerNorm"),
        ("databricks__dbrx-base.json", "fused_qkv_layout", "fused q/k/v"),
        ("Qwen__Qwen2.5-VL-3B-Instruct.json", "mrope", "mrope"),
    ],
)
def test_traits_are_detected_with_where_the_config_shows_them(specs, name, key, needle):
    traits = specs(name).features.traits
    assert any(t.key == key and needle in t.description for t in traits), traits


@pytest.mark.parametrize("name", ["meta-llama__Llama-3.2-3B.json", "Qwen__Qwen3-0.6B.json", "Qwen__Qwen2-0.5B.json"])
def test_plain_dense_families_have_no_traits(specs, name):
    assert specs(name).features.traits == ()


def test_custom_code_is_recorded_not_run(specs):
    spec = specs("internlm__internlm2_5-7b.json")
    assert spec.custom_code is True
    assert spec.auto_map["AutoConfig"] == "configuration_internlm2.InternLM2Config"
    assert spec.inventory is None and "remote code" in spec.inventory_absent_reason
    assert spec.kind == "dense"


def test_names_and_collisions(specs):
    spec = specs("Qwen__Qwen3-0.6B.json")
    assert (spec.module_name, spec.class_prefix, spec.architecture) == ("qwen3", "Qwen3", "Qwen3ForCausalLM")
    assert spec.name_collision == "qwen3"
    assert specs("Qwen__Qwen2.5-VL-3B-Instruct.json").module_name == "qwen2_5_vl"
    renamed = build_spec(
        load_config("Qwen__Qwen3-0.6B.json"), module_name="my_qwen", existing_models=frozenset({"qwen3"})
    )
    assert renamed.module_name == "my_qwen" and renamed.name_collision is None
    upper = build_spec(load_config("Qwen__Qwen3-0.6B.json"), module_name="llama", existing_models=frozenset({"Llama"}))
    assert upper.name_collision == "Llama"  # differs only in case


@pytest.mark.parametrize("bad", ["class", "My-Model", "1abc", "a/b", "../x", "", "x" * 80, "match"])
def test_invalid_module_names(bad):
    with pytest.raises(OnboardError) as info:
        build_spec(load_config("Qwen__Qwen3-0.6B.json"), module_name=bad, with_inventory=False)
    assert info.value.code == "invalid-name"


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"hidden_size": -5}, "hidden_size must be at least 1"),
        ({"num_attention_heads": 14, "num_key_value_heads": 4}, "cannot be shared evenly"),
        ({"hidden_size": 1000, "num_attention_heads": 3, "num_key_value_heads": 3}, "not divisible"),
        ({"num_hidden_layers": "28"}, "num_hidden_layers must be an integer"),
        ({"rms_norm_eps": "small"}, "rms_norm_eps must be a finite number"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
        ({"rope_scaling": [1, 2]}, "must be an object"),
        ({"model_type": "Bad Type!"}, "model_type"),
        ({"model_type": None}, "no model_type"),
        ({"architectures": ["Bad-NameForCausalLM"]}, "not a Python class name"),
    ],
)
def test_impossible_values_are_reported(patch, needle):
    cfg = load_config("meta-llama__Llama-2-7b-hf.json")
    cfg.pop("head_dim", None)
    cfg.update(patch)
    with pytest.raises(OnboardError) as info:
        build_spec(cfg, with_inventory=False)
    assert needle in str(info.value)
    assert info.value.where


def test_classify_without_inventory_matches_labels():
    for name in SUPPORTED:
        spec = build_spec(load_config(name), with_inventory=False)
        assert (spec.kind, spec.text_backbone) == (LABELS[name]["kind"], LABELS[name]["text_backbone"])
        assert spec.inventory is None and spec.inventory_absent_reason


def test_code_only_habits_are_measured_on_the_reference(specs):
    """Gemma's sqrt(hidden) embedding scaling and ``1 + weight`` norms show in neither config nor parameters: running
    the tiny reference finds both, and where the scaling sits (the lookup only, not embeddings passed in)."""
    gemma = specs("google__gemma-7b.json")
    code = gemma.features.code
    hidden = gemma.tiny_config["hidden_size"]
    assert code.embedding_scale == pytest.approx(hidden**0.5, rel=1e-6) and code.inputs_scale == pytest.approx(1.0)
    assert (code.norm.cls.module, code.norm.cls.name) == ("transformers.models.gemma.modeling_gemma", "GemmaRMSNorm")
    assert (code.norm.offset, code.norm.identity, code.norm.uniform) == (1.0, 0.0, True)
    assert {t.key for t in gemma.features.traits} == {"norm_offset", "embedding_normalizer"}
    llama = specs("meta-llama__Llama-3.2-3B.json").features.code
    assert (llama.embedding_scale, llama.inputs_scale) == (pytest.approx(1.0), pytest.approx(1.0))
    assert (llama.norm.offset, llama.norm.identity) == (0.0, 1.0)


def test_a_scaling_by_no_config_field_is_a_trait_of_its_own():
    from automodel_onboard.model import features
    from automodel_onboard.model.behaviour import CodeFacts

    base = build_spec(load_config("meta-llama__Llama-3.2-3B.json")).features
    odd = features.with_code(base, CodeFacts(embedding_scale=3.0, inputs_scale=3.0, norm=None), {"hidden_size": 64})
    assert [(t.key, t.description) for t in odd.traits] == [
        ("embedding_scale", "embeddings scaled by 3 by no config field (measured)")
    ]
    lost = features.with_code(base, CodeFacts(float("nan"), 1.0, None), {"hidden_size": 64})
    assert [t.key for t in lost.traits] == ["embedding_scale"]


def test_measuring_the_reference_leaves_the_callers_random_state_alone():
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_spec(load_config("google__gemma-7b.json"))
    assert torch.equal(torch.get_rng_state(), before)


def test_a_norm_without_parameters_is_measured_as_what_it_computes():
    """OLMo's LayerNorm has no weight, bias or epsilon field: run on the reference, it subtracts the mean (a
    LayerNorm), and cls(dim) builds the same one."""
    norm = build_spec(load_config("allenai__OLMo-1B-hf.json")).features.code.norm
    assert (norm.cls.name, norm.centred, norm.weightless, norm.uniform) == ("OlmoLayerNorm", True, True, True)
    assert (norm.offset, norm.identity, norm.bias) == (0.0, None, False)
