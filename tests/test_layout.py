"""The template-facing layout: biases, masks, head dim, the adapter table and its gaps, on real and edited specs."""

from __future__ import annotations

import copy
import importlib
import inspect

import pytest
from conftest import load_config, zoo_config

from automodel_onboard import kinds
from automodel_onboard.errors import OnboardError
from automodel_onboard.layout import checkpoint, dense
from automodel_onboard.model.reference import Tensor
from automodel_onboard.model.spec import build_spec

DENSE = (
    "Qwen__Qwen2-0.5B.json",
    "Qwen__Qwen3-0.6B.json",
    "meta-llama__Llama-2-7b-hf.json",
    "meta-llama__Llama-3.2-3B.json",
    "mistralai__Mistral-Nemo-Base-2407.json",
)


@pytest.fixture(scope="module")
def spec():
    cache = {}

    def get(name, kind="dense", **changes):
        key = (name, kind, repr(sorted(changes.items())))
        if key not in cache:
            raw = copy.deepcopy(load_config(name))
            raw.update(changes)
            cache[key] = build_spec(raw, existing_models=frozenset()).for_kind(kind).to_dict()
        return cache[key]

    return get


def test_required_symbols_exist_in_the_installed_package():
    for module, name in kinds.get("dense").symbols:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


@pytest.mark.parametrize("name", DENSE)
def test_dense_fixtures_have_no_gaps(spec, name):
    lay = spec(name)["layout"]
    assert lay["gaps"] == []
    assert lay["classes"]["causal_lm"] == spec(name)["architecture"]
    hf_names = {name for t in lay["tensors"] for name in t["hf"] or [t["nemo"]]}
    assert all(t["hf"] == [] for t in lay["tensors"]), "the dense model keeps the checkpoint's names"
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= hf_names


def test_qwen2_biases_are_fixed_by_the_architecture(spec):
    att = spec("Qwen__Qwen2-0.5B.json")["layout"]["attention"]
    assert dict(att["biases"]) == {"q_proj": "True", "k_proj": "True", "v_proj": "True", "o_proj": "False"}
    assert att["shared_bias"] is None
    assert att["sliding"] == "per_layer"
    assert att["head_dim"] == "config.hidden_size // config.num_attention_heads"


def test_llama_biases_follow_the_config_flag(spec):
    lay = spec("meta-llama__Llama-2-7b-hf.json", attention_bias=True, mlp_bias=True)["layout"]
    assert lay["attention"]["shared_bias"] == "config.attention_bias"
    assert lay["mlp"]["bias"] == "config.mlp_bias"
    assert "model.layers.{layer}.self_attn.o_proj.bias" in {t["nemo"] for t in lay["tensors"]}


def test_qwen3_has_qk_norm_and_compares_it(spec):
    lay = spec("Qwen__Qwen3-0.6B.json")["layout"]
    assert lay["attention"]["qk_norm"] is True
    assert lay["attention"]["head_dim"] == "config.head_dim"
    labels = [c["label"] for c in lay["compared_modules"]]
    assert "q_norm" in labels and "k_norm" in labels
    assert all(c["path"] == c["reference"] for c in lay["compared_modules"])
    assert "q_norm" not in [c["label"] for c in spec("meta-llama__Llama-2-7b-hf.json")["layout"]["compared_modules"]]


def test_sliding_window_only_where_the_reference_config_declares_it(spec):
    # LlamaConfig has no sliding_window: the reference ignores the key, so the generated model must too.
    assert spec("meta-llama__Llama-2-7b-hf.json", sliding_window=4096)["layout"]["attention"]["sliding"] == "none"
    assert spec("mistralai__Mistral-Nemo-Base-2407.json")["layout"]["attention"]["sliding"] == "all_layers"
    assert spec("Qwen__Qwen3-0.6B.json")["layout"]["attention"]["sliding"] == "per_layer"
    imports = dict((i["module"], i["names"]) for i in spec("meta-llama__Llama-2-7b-hf.json")["layout"]["model_imports"])
    assert imports["transformers.masking_utils"] == ["create_causal_mask"]


def test_tied_head_is_recorded(spec):
    assert spec("Qwen__Qwen3-0.6B.json")["layout"]["tied"] is True
    assert spec("meta-llama__Llama-2-7b-hf.json")["layout"]["tied"] is False


def test_checkpoint_tables_abstract_layers_and_report_gaps():
    names = [f"model.layers.{i}.{s}" for i in range(2) for s, _ in dense.TENSORS.layer_tensors[:2]]
    names += ["model.embed_tokens.weight", "model.norm.weight", "model.layers.1.extra.weight", "vision.x"]
    rows, gaps = checkpoint.match(dense.TENSORS, names, 2)
    assert [r.nemo for r in rows if "{layer}" in r.nemo] == [
        "model.layers.{layer}.input_layernorm.weight",
        "model.layers.{layer}.input_layernorm.bias",
    ]
    assert any("model.layers.1.extra.weight exists only in some layers" in g for g in gaps)
    assert any("vision.x has no counterpart" in g for g in gaps)


def test_tensors_stored_under_another_name_are_matched_as_the_models_and_renamed():
    """A checkpoint name of the alias table is matched under the model's name and its row renames; where the model's
    own name is stored too, the alias stays a tensor the template does not build."""
    layer = ["mlp.fc1.weight", "mlp.down_proj.weight", "mlp.fc2.weight", "self_attn.dense.bias"]
    names = [f"model.layers.{i}.{leaf}" for i in range(2) for leaf in layer] + ["model.final_layernorm.weight"]
    rows, gaps = checkpoint.match(dense.TENSORS, names, 2)
    assert {r.nemo: r.hf for r in rows} == {
        "model.norm.weight": ("model.final_layernorm.weight",),
        "lm_head.weight": (),
        "model.layers.{layer}.mlp.up_proj.weight": ("model.layers.{layer}.mlp.fc1.weight",),
        "model.layers.{layer}.mlp.down_proj.weight": (),
        "model.layers.{layer}.self_attn.o_proj.bias": ("model.layers.{layer}.self_attn.dense.bias",),
    }
    assert gaps == ["checkpoint tensor model.layers.{layer}.mlp.fc2.weight has no counterpart in the dense template"]
    assert all(r.operations == ("rename",) for r in rows if r.hf)


def test_a_layers_norm_names_are_read_by_the_set_it_holds():
    """GLM-4 calls its norm before the MLP post_attention_layernorm and the one after the attention
    post_self_attn_layernorm: by the set, each is read in its place (the sandwich's names), and renamed back."""
    leaves = ["input_layernorm", "post_self_attn_layernorm", "post_attention_layernorm", "post_mlp_layernorm"]
    names = [f"model.layers.{i}.{leaf}.weight" for i in range(2) for leaf in leaves]
    rows, gaps = checkpoint.match(dense.TENSORS, names, 2)
    layer = "model.layers.{layer}."
    assert gaps == []
    assert {r.nemo.removeprefix(layer): r.sources[0].removeprefix(layer) for r in rows if r.nemo.startswith(layer)} == {
        "input_layernorm.weight": "input_layernorm.weight",
        "post_attention_layernorm.weight": "post_self_attn_layernorm.weight",
        "pre_feedforward_layernorm.weight": "post_attention_layernorm.weight",
        "post_feedforward_layernorm.weight": "post_mlp_layernorm.weight",
    }
    # Llama's pair is not renamed: post_attention_layernorm stays the norm before its MLP.
    llama, _ = checkpoint.match(dense.TENSORS, [n for n in names if "post_self" not in n and "post_mlp" not in n], 2)
    assert all(r.hf == () for r in llama)


def test_moe_experts_are_gaps_reported_once_per_kind(spec):
    gaps = spec("Qwen__Qwen3-235B-A22B.json", "dense")["layout"]["gaps"]
    experts = [g for g in gaps if ".experts." in g]
    assert experts and all("experts.{n}." in g for g in experts)
    assert len(experts) == 3


def test_shape_mismatch_is_a_gap():
    rows = (checkpoint.CheckpointTensor("model.norm.weight", ("hidden",)),)
    inventory = [Tensor("model.norm.weight", (7,), "float32")]
    (gap,) = checkpoint.check_shapes(inventory, rows, {"hidden": 8}, "dense")
    assert gap == "checkpoint tensor model.norm.weight has shape (7,), the dense template builds (8,) (hidden)"
    assert not checkpoint.check_shapes(inventory, rows, {"hidden": 7}, "dense")


def test_a_verdict_without_a_template_has_no_layout(without_vlm):
    spec = build_spec(load_config("Qwen__Qwen2.5-VL-3B-Instruct.json"), existing_models=frozenset())
    assert spec.kind == "vlm" and spec.layout is None
    with pytest.raises(OnboardError) as info:
        spec.for_kind("vlm")
    assert info.value.code == "no-template"


def _rows(lay):
    return {t["nemo"]: (tuple(t["hf"]), t["layers"], t["transpose"]) for t in lay["tensors"] if ".mlp." in t["nemo"]}


def test_moe_rows_map_each_family_convention_onto_nemo_grouped_experts(spec):
    prefix = "model.layers.{layer}."
    qwen2 = spec("Qwen__Qwen2-57B-A14B.json", "moe")["layout"]
    rows = _rows(qwen2)
    assert rows[prefix + "mlp.experts.gate_and_up_projs"] == (
        (prefix + "mlp.experts.{expert}.gate_proj.weight", prefix + "mlp.experts.{expert}.up_proj.weight"),
        "moe",
        True,
    )
    assert rows[prefix + "mlp.shared_experts.up_proj.weight"][0] == (prefix + "mlp.shared_expert.up_proj.weight",)
    assert prefix + "mlp.shared_expert_gate.weight" in rows and qwen2["gaps"] == []
    args = dict(qwen2["moe_args"])
    assert (args["n_shared_experts"], args["shared_expert_gate"]) == ("1", "True")
    assert args["shared_expert_inter_dim"] == "config.shared_expert_intermediate_size"
    assert args["norm_topk_prob"] == "config.norm_topk_prob"

    mixtral = spec("mistralai__Mixtral-8x22B-v0.1.json", "moe")["layout"]
    assert _rows(mixtral)[prefix + "mlp.gate.weight"][0] == (prefix + "block_sparse_moe.gate.weight",)
    args = dict(mixtral["moe_args"])
    assert (args["norm_topk_prob"], args["n_routed_experts"], args["moe_inter_dim"]) == (
        "True",  # MixtralConfig has no switch: its router always renormalises
        "config.num_local_experts",
        "config.intermediate_size",
    )
    assert [g["condition"] for g in mixtral["layer_groups"]] == ["not (True)", "True"]


def test_moe_placement_follows_the_fields_the_family_declares(spec):
    groups = spec("Qwen__Qwen3-235B-A22B.json", "moe")["layout"]["layer_groups"]
    assert groups[1] == {
        "name": "moe",
        "condition": "(i + 1) % config.decoder_sparse_step == 0 and i not in config.mlp_only_layers",
    }
    dense_layers = spec("Qwen__Qwen3-235B-A22B.json", "moe", mlp_only_layers=[0])["layout"]
    dense_rows = {t["nemo"] for t in dense_layers["tensors"] if t["layers"] == "dense"}
    assert dense_rows == {f"model.layers.{{layer}}.mlp.{p}_proj.weight" for p in ("gate", "up", "down")}


def test_llama4_text_layout(spec):
    """Llama 4 (Maverick's text model): its fused expert tensors as NeMo holds them, its router and shared expert
    renamed from ``feed_forward``, dense layers of their own width placed by ``moe_layers``, a MoE layer that scales
    each token by its score before the expert, sigmoid scores left as they are, chunked masks, no RoPE and a query
    temperature on the full-attention layers."""
    raw = load_config("meta-llama__Llama-4-Maverick-17B-128E-Instruct.json")
    text = {**raw["text_config"], "architectures": ["Llama4ForCausalLM"], "tie_word_embeddings": False}
    lay = build_spec(text).layout
    assert lay.gaps == ()
    prefix = "model.layers.{layer}."
    rows = {r.nemo: (r.sources, r.layers, r.transpose) for r in lay.tensors}
    assert rows[prefix + "mlp.experts.gate_and_up_projs"] == (
        (prefix + "feed_forward.experts.gate_up_proj",),
        "moe",
        False,
    )
    assert rows[prefix + "mlp.experts.down_projs"] == ((prefix + "feed_forward.experts.down_proj",), "moe", False)
    assert rows[prefix + "mlp.gate.weight"][0] == (prefix + "feed_forward.router.weight",)
    assert rows[prefix + "mlp.shared_experts.up_proj.weight"][0] == (
        prefix + "feed_forward.shared_expert.up_proj.weight",
    )
    assert rows[prefix + "mlp.up_proj.weight"] == ((prefix + "feed_forward.up_proj.weight",), "dense", False)
    assert [(g.name, g.condition) for g in lay.layer_groups] == [
        ("dense", "i not in config.moe_layers"),
        ("moe", "i in config.moe_layers"),
    ]
    assert lay.mlp.width == "config.intermediate_size_mlp"
    assert dict(lay.dimensions)["intermediate"] == "config.intermediate_size_mlp"
    args = dict(lay.moe_args)
    assert (args["score_func"], args["norm_topk_prob"], args["inter_dim"], args["moe_inter_dim"]) == (
        '"sigmoid_with_bias"',
        "False",
        "config.intermediate_size_mlp",
        "config.intermediate_size",
    )
    assert lay.routed_input_scaled and lay.router == "model.layers.{layer}.feed_forward.router"
    att = lay.attention
    assert att.chunked and att.per_type_masks and att.temperature and att.complex_tables and att.rope_pairs
    assert att.nope_types == ("full_attention",) and att.unit_qk_types == ()
    scout = build_spec(zoo_config("llama4_text")).layout
    assert scout.attention.unit_qk_types == ("chunked_attention",) and scout.mlp.width == "config.intermediate_size_mlp"
    more = build_spec({**text, "num_experts_per_tok": 2}).layout
    assert any("before top-k > 1 experts" in g for g in more.gaps), more.gaps


def test_qk_norms_over_all_heads_are_laid_out_as_wide_as_the_projections(spec):
    olmoe = spec("allenai__OLMoE-1B-7B-0125.json", "moe")["layout"]
    assert olmoe["gaps"] == [] and olmoe["attention"]["qk_norm_full"] is True
    shapes = {t["nemo"].rsplit(".", 2)[-2]: t["shape"] for t in olmoe["tensors"] if "_norm" in t["nemo"]}
    assert (shapes["q_norm"], shapes["k_norm"]) == (["q"], ["kv"])
    assert spec("Qwen__Qwen3-0.6B.json")["layout"]["attention"]["qk_norm_full"] is False


def test_sigmoid_routing_with_a_correction_bias_maps_onto_nemo_router(spec):
    """GLM-4.5: DeepSeek-V3's router (sigmoid scores, correction bias for choosing only, groups), float32 routing,
    partial rotary, and its multi-token prediction layer recognised and left out."""
    glm = spec("zai-org__GLM-4.5.json", "moe")["layout"]
    assert glm["gaps"] == []
    args = dict(glm["moe_args"])
    assert args["score_func"] == '"sigmoid_with_bias"' and args["softmax_before_topk"] == "False"
    assert (args["n_expert_groups"], args["n_limited_groups"]) == ("config.n_group", "config.topk_group")
    assert (args["force_e_score_correction_bias"], args["gate_bias_update_factor"]) == ("True", "1e-3")
    assert (args["route_scale"], args["router_weights_fp32"]) == ("config.routed_scaling_factor", "True")
    assert glm["router_fp32"] is True and glm["correction_bias"] is True and glm["nemo_native"] is True
    assert glm["mtp_layers"] in ("config.num_nextn_predict_layers", "config.num_mtp_layers")
    assert glm["attention"]["partial_rotary"] is True
    rows = _rows(glm)
    assert rows["model.layers.{layer}.mlp.gate.e_score_correction_bias"] == ((), "moe", False)
    assert dict(glm["capabilities"]) == {
        "supports_tp": False,
        "supports_cp": False,
        "supports_pp": False,
        "supports_ep": True,
    }
    qwen = dict(spec("Qwen__Qwen3-235B-A22B.json", "moe")["layout"]["moe_args"])
    assert (qwen["score_func"], qwen["softmax_before_topk"], qwen["n_expert_groups"]) == ('"softmax"', "True", "0")
    assert (qwen["force_e_score_correction_bias"], qwen["gate_bias_update_factor"]) == ("False", "0.0")


def test_latent_attention_replaces_the_qkv_rows(spec):
    """DeepSeek-V3's multi-head latent attention: its projections and latent norms, shaped by their own symbols."""
    from automodel_onboard.layout import matrix

    base = next(c for c in matrix.MOE if c.case_id == "deepseek-v3-base").config()
    lay = build_spec(base, existing_models=frozenset()).layout
    assert lay.gaps == ()
    assert lay.attention.latent.low_rank_q and lay.attention.latent.interleave == "config.rope_interleave"
    assert lay.attention.head_dim == "config.qk_nope_head_dim + config.qk_rope_head_dim"
    assert lay.attention.rotary_dim == "config.qk_rope_head_dim"
    attention = {
        r.nemo.removeprefix("model.layers.{layer}.self_attn."): r.shape for r in lay.tensors if "attn" in r.nemo
    }
    assert attention == {
        "q_a_proj.weight": ("q_lora", "hidden"),
        "q_a_layernorm.weight": ("q_lora",),
        "q_b_proj.weight": ("q", "q_lora"),
        "kv_a_proj_with_mqa.weight": ("kv_a", "hidden"),
        "kv_a_layernorm.weight": ("kv_lora",),
        "kv_b_proj.weight": ("kv_b", "kv_lora"),
        "o_proj.weight": ("hidden", "o"),
    }
    assert {"q_lora", "kv_lora", "kv_a", "kv_b", "o"} <= dict(lay.dimensions).keys()
    full_rank = build_spec({**base, "q_lora_rank": None}, existing_models=frozenset()).layout
    assert not full_rank.attention.latent.low_rank_q
    assert any(r.nemo.endswith("self_attn.q_proj.weight") for r in full_rank.tensors)


def test_granite_moe_stacked_experts_renamed_router_and_multipliers(spec):
    granite = spec("ibm-granite__granite-3.1-3b-a800m-instruct.json", "moe")["layout"]
    assert granite["gaps"] == []
    rows = _rows(granite)
    prefix = "model.layers.{layer}."
    assert rows[prefix + "mlp.gate.weight"][0] == (prefix + "block_sparse_moe.router.layer.weight",)
    assert rows[prefix + "mlp.experts.gate_and_up_projs"] == (
        (prefix + "block_sparse_moe.input_linear.weight",),
        "moe",
        True,
    )
    assert rows[prefix + "mlp.experts.down_projs"] == ((prefix + "block_sparse_moe.output_linear.weight",), "moe", True)
    # The reference's modules, by transformers' declared renames of the checkpoint names.
    assert granite["router"] == prefix + "block_sparse_moe.router"
    (mlp,) = [c for c in granite["compared_modules"] if c["label"] == "mlp"]
    assert (mlp["path"], mlp["reference"]) == (prefix + "mlp", prefix + "block_sparse_moe")
    assert (granite["embedding_scale"], granite["residual_scale"], granite["logits_divisor"]) == (
        "config.embedding_multiplier",
        "config.residual_multiplier",
        "config.logits_scaling",
    )
    assert granite["attention"]["scaling"] == "config.attention_multiplier"
    plain = spec("Qwen__Qwen3-235B-A22B.json", "moe")["layout"]
    assert (plain["embedding_scale"], plain["residual_scale"], plain["logits_divisor"]) == (None, None, None)
    assert plain["attention"]["scaling"] == "self.head_dim**-0.5"


def test_gpt_oss_sinks_half_tables_biased_router_and_clamped_glu_experts():
    """What GPT-OSS's code shows only when measured (its RoPE table width, its experts' activation and layout, no
    SDPA) and what its checkpoint shows (sinks, biases, stacked experts) lay out onto NeMo's MoE layer."""
    from automodel_onboard.layout import matrix

    base = next(c for c in matrix.MOE if c.case_id == "gpt-oss-base").config()
    spec = build_spec(base, existing_models=frozenset())
    moe, lay = spec.features.moe, spec.layout
    assert (moe.expert_activation, moe.gate_up_interleaved) == ("clamped_glu", True)
    assert (moe.activation_alpha, moe.activation_limit) == (1.702, 7.0)
    assert spec.features.rope.half_tables and lay.gaps == ()
    assert lay.attention.sinks and lay.attention.half_tables and lay.reference_attention == ("eager",)
    args = dict(lay.moe_args)
    assert (args["expert_activation"], args["activation_alpha"], args["activation_limit"]) == (
        '"quick_geglu"',
        "1.702",
        "7.0",
    )
    assert (args["router_bias"], args["expert_bias"]) == ("True", "True")
    rows = {r.nemo.removeprefix("model.layers.{layer}."): (r.sources, r.transpose) for r in lay.tensors}
    prefix = "model.layers.{layer}."
    assert rows["mlp.gate.bias"] == ((prefix + "mlp.router.bias",), False)
    assert rows["mlp.experts.gate_and_up_projs"] == ((prefix + "mlp.experts.gate_up_proj",), False)
    assert rows["mlp.experts.down_proj_bias"] == ((prefix + "mlp.experts.down_proj_bias",), False)
    assert rows["self_attn.sinks"] == ((prefix + "self_attn.sinks",), False)
    assert lay.router == prefix + "mlp.router"
    llama = build_spec(matrix.LLAMA_BASE, existing_models=frozenset())
    assert not llama.features.rope.half_tables and llama.layout.reference_attention == ("eager", "sdpa")


@pytest.mark.parametrize(
    ("name", "changes", "needle"),
    [
        ("Qwen__Qwen3-235B-A22B.json", {"n_group": 4, "topk_group": 2}, "grouped expert routing"),
        ("Qwen__Qwen3-235B-A22B.json", {"scoring_func": "sqrtsoftplus"}, "sqrtsoftplus router scores"),
        ("mistralai__Mixtral-8x22B-v0.1.json", {"num_experts_per_tok": 1}, "top-1 routing with renormalised"),
        ("Qwen__Qwen3-235B-A22B.json", {"hidden_act": "gelu"}, "experts with gelu"),
        (
            "Qwen__Qwen3-235B-A22B.json",
            {"topk_method": "noaux_tc", "scoring_func": "softmax"},
            "a score correction bias on softmax scores",
        ),
        ("jetmoe__jetmoe-8b.json", {}, "mixture of attention heads"),
        ("databricks__dbrx-base.json", {}, "fused q/k/v projection"),
    ],
)
def test_what_nemo_moe_cannot_reproduce_is_a_gap(spec, name, changes, needle):
    gaps = spec(name, "moe", **changes)["layout"]["gaps"]
    assert any(needle in g for g in gaps), gaps


def test_traits_a_kind_does_not_implement_are_its_gaps(spec):
    """Facts stay in the features; the dense layout turns the traits it does not build into gaps."""
    alibi = spec("meta-llama__Llama-2-7b-hf.json", alibi=True)
    assert "alibi" in {t["key"] for t in alibi["features"]["traits"]}
    assert alibi["layout"]["gaps"] == ["ALiBi position bias: alibi = True"]


def test_qkv_clipping_is_built_where_the_reference_clamps_before_any_norm(spec):
    """OLMo's clip_qkv clamps each projection (the tiny config sets it low enough to bite); with q/k norms the clamp
    would sit after them (OLMoE's), which the shared attention does not build."""
    olmo = spec("allenai__OLMo-1B-hf.json", clip_qkv=8.0)
    assert olmo["layout"]["gaps"] == [] and olmo["layout"]["attention"]["clip_qkv"] is True
    assert olmo["tiny_config"]["clip_qkv"] == 0.5
    olmoe = spec("allenai__OLMoE-1B-7B-0125.json", "dense", clip_qkv=8.0)["layout"]
    assert olmoe["attention"]["clip_qkv"] is False
    assert "q/k/v clipping (clip_qkv) with q/k norms, fused projections or latent attention" in olmoe["gaps"]
    assert "clip_qkv" not in spec("allenai__OLMoE-1B-7B-0125.json", "moe")["tiny_config"] or (
        spec("allenai__OLMoE-1B-7B-0125.json", "moe")["tiny_config"]["clip_qkv"] is None
    )


def test_vlm_layout_takes_the_familys_parts_and_image_code_around_the_text_kind(spec):
    """Pixtral-12B (LLaVA with a Pixtral tower): transformers' tower and projector classes, LlavaModel's methods,
    the text kind's rows under the checkpoint's text prefixes, and the tower's rows per vision layer."""
    lay = spec("mistral-community__pixtral-12b.json", "vlm")["layout"]
    vision = lay["vision"]
    assert lay["gaps"] == [] and lay["nemo_native"] is True
    assert (lay["config_class"], vision["config_class"]) == ("MistralConfig", "LlavaConfig")
    assert [(p["attribute"], p["alias"], p["config"], p["initialises_itself"]) for p in vision["parts"]] == [
        ("vision_tower", "PixtralVisionModel", "config.vision_config", True),
        ("multi_modal_projector", "LlavaMultiModalProjector", "config", False),
    ]
    assert vision["reference_model_alias"] == "HFLlavaModel"
    assert vision["methods"] == ["get_image_features", "get_placeholder_mask", "forward"]
    assert (vision["pixel_layout"], vision["image_inputs"][-1]) == ("sized", "image_sizes")
    assert vision["checkpoint_prefixes"][0] == ["model.language_model.", "language_model.model."]
    rows = {r["nemo"]: (r["hf"], r["layers"]) for r in lay["tensors"]}
    assert rows["lm_head.weight"] == (["language_model.lm_head.weight"], "all")
    assert rows["model.language_model.layers.{layer}.self_attn.q_proj.weight"] == (
        ["language_model.model.layers.{layer}.self_attn.q_proj.weight"],
        "all",
    )
    assert rows["model.vision_tower.transformer.layers.{layer}.feed_forward.up_proj.weight"] == (
        ["vision_tower.transformer.layers.{layer}.feed_forward.up_proj.weight"],
        "vision_tower",
    )
    assert vision["layer_sets"] == [["vision_tower", "config.vision_config.num_hidden_layers"]]
    assert lay["embedding"] == "model.language_model.embed_tokens.weight"
    assert lay["classes"]["model"] == "LlavaTextModel" and lay["classes"]["multimodal"] == "LlavaModel"


def test_vlm_layout_of_qwen2_5_vl_positions_its_tokens_on_three_grids(spec):
    lay = spec("Qwen__Qwen2.5-VL-3B-Instruct.json", "vlm")["layout"]
    vision = lay["vision"]
    assert lay["gaps"] == [] and lay["attention"]["mrope"] is True
    assert [p["attribute"] for p in vision["parts"]] == ["visual"]
    assert (vision["pixel_layout"], vision["token_types"], vision["state"]) == (
        "patches",
        "mm_token_type_ids",
        ["rope_deltas"],
    )
    assert vision["checkpoint_prefixes"] == [
        ["model.language_model.", "model."],
        ["model.visual.", "visual."],
        ["lm_head.", "lm_head."],  # tied here, so not saved; the name an untied one is saved under
    ]
    assert vision["layer_sets"] == [["visual", "config.vision_config.depth"]]
    assert vision["channels"] == "vision.in_channels"
    assert vision["image_tokens"] == "side * side // vision.spatial_merge_size**2"


def test_qwen3_vl_interleaves_its_rope_grids_and_stacks_vision_features():
    """Qwen3-VL: the interleaved multimodal RoPE measured on the reference (no config field says it), DeepStack from
    the inputs its text model takes, the tower's blocks counted by ``depth`` (its DeepStack mergers are rows of their
    own), no pipeline stages."""
    from automodel_onboard.layout import matrix

    (case,) = [c for c in matrix.VLM if c.case_id == "qwen3-vl-deepstack"]
    config = case.config()
    lay = build_spec(config, existing_models=frozenset()).layout
    assert lay.gaps == ()
    assert (lay.attention.mrope, lay.attention.mrope_interleaved, lay.vision.deepstack) == (True, True, True)
    assert lay.vision.layer_sets == (("visual", "config.vision_config.depth"),)
    assert {r.nemo for r in lay.tensors if "deepstack_merger_list.2." in r.nemo} >= {
        "model.visual.deepstack_merger_list.2.linear_fc1.weight"
    }
    assert not dict(lay.capabilities)["supports_pp"]
    sectioned = {**config, "text_config": {**config["text_config"], "rope_scaling": {"mrope_section": [24, 20, 20]}}}
    # The flag is not what decides: the family's code interleaves whatever the config says.
    assert build_spec(sectioned, existing_models=frozenset()).layout.attention.mrope_interleaved


def test_a_text_model_input_the_generated_one_would_ignore_is_a_gap(monkeypatch):
    """A multimodal model handing its text model an input the generated text model does not take is refused with
    its name (DeepStack's two inputs are taken only together)."""
    import dataclasses

    from automodel_onboard.layout import matrix, vlm

    (case,) = [c for c in matrix.VLM if c.case_id == "qwen3-vl-deepstack"]
    spec = build_spec(case.config(), existing_models=frozenset())
    code = spec.inventory.probes.multimodal
    half = dataclasses.replace(code, text_inputs=("input_ids", "visual_pos_masks", "kwargs"))
    probes = dataclasses.replace(spec.inventory.probes, multimodal=half)
    changed = dataclasses.replace(spec, inventory=dataclasses.replace(spec.inventory, probes=probes))
    gaps = vlm.build(changed).gaps
    assert "the family's text model takes inputs the generated one does not: visual_pos_masks" in gaps


def test_a_clip_class_token_counts_among_the_image_tokens_when_kept():
    from automodel_onboard.layout import matrix

    lay = build_spec(matrix.LLAVA_BASE, existing_models=frozenset()).layout
    assert lay.gaps == ()
    assert lay.vision.image_tokens.endswith('+ int(config.vision_feature_select_strategy == "full")')


def test_a_moe_text_model_behind_the_vision_tower_is_the_moe_kinds():
    """LLaVA with Mixtral's text model: NeMo's MoE layer under the text model's place, the text family's checkpoint
    renames (``block_sparse_moe``) found under its own model type, expert parallelism declared, TP not."""
    from automodel_onboard.layout import matrix

    (case,) = [c for c in matrix.VLM if c.case_id == "llava-mixtral-text"]
    lay = build_spec(case.config(), existing_models=frozenset()).layout
    assert lay.gaps == () and lay.experts and lay.moe_args
    assert lay.router == "model.language_model.layers.{layer}.mlp.gate"
    assert dict(lay.capabilities) == {
        "supports_tp": False,
        "supports_cp": False,
        "supports_pp": False,
        "supports_ep": True,
    }
    mlp = {c.label: c.reference for c in lay.compared_modules}["mlp"]
    assert mlp == "model.language_model.layers.{layer}.mlp"
    rows = {r.nemo: (r.sources, r.layers) for r in lay.tensors}
    assert rows["model.language_model.layers.{layer}.mlp.experts.gate_and_up_projs"] == (
        (
            "language_model.model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight",
            "language_model.model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight",
        ),
        "moe",
    )


def test_a_patch_merging_projector_and_its_transformers_norm_are_laid_out():
    """Mistral 3: the projector merges 2 x 2 patches into a token (the multimodal config's spatial_merge_size), its
    RMSNorm (transformers', no reset_parameters) starts at one as the reference's, and an untied head is saved under
    the checkpoint name transformers reverts it to."""
    lay = build_spec(zoo_config("mistral3"), existing_models=frozenset()).layout
    assert lay.gaps == ()
    assert lay.vision.image_tokens == "(vision.image_size // vision.patch_size // config.spatial_merge_size) ** 2"
    assert ("model.multi_modal_projector.norm.weight", "ones") in lay.vision.parameter_inits
    assert ("lm_head.", "language_model.lm_head.") in lay.vision.checkpoint_prefixes


def test_a_logit_scale_the_head_does_not_apply_is_left_out():
    """Cohere 2 Vision's text config carries Cohere's logit_scale, which its image-text head never applies (measured:
    the logits are the head of the final hidden state), and pixel-shuffles 2 x 2 patches into a token; Cohere's own
    head applies its scale."""
    lay = build_spec(zoo_config("cohere2_vision"), existing_models=frozenset()).layout
    assert lay.gaps == () and lay.logits_multiplier is None
    assert lay.vision.image_tokens == "(vision.image_size // vision.patch_size // config.downsample_factor) ** 2"
    cohere = build_spec(zoo_config("cohere"), existing_models=frozenset())
    assert cohere.features.code.logits_scale == pytest.approx(cohere.tiny_config["logit_scale"])
    assert cohere.layout.logits_multiplier == "config.logit_scale"


def test_a_layer_norm_behind_an_rms_epsilon_is_measured_and_reused():
    """PhiMoE's config names its epsilon rms_norm_eps, but its norms are LayerNorms with biases: measured on the
    reference, reused by the MoE kind, their biases rows of the checkpoint table."""
    lay = build_spec(zoo_config("phimoe"), existing_models=frozenset()).layout
    assert lay.norm_class == "nn.LayerNorm" and lay.norm_bias
    assert "model.layers.{layer}.input_layernorm.bias" in {r.nemo for r in lay.tensors}


@pytest.mark.parametrize(
    ("model_type", "needle"),
    [
        # BLIP's text decoder is a BERT model beside its vision model: no text model the kinds build.
        ("blip", "the reference holds no multimodal model (vision tower, projector, text) as 'model'"),
        ("llava_onevision", "images tiled at several resolutions (vision_aspect_ratio)"),
    ],
)
def test_what_the_vlm_template_cannot_reproduce_is_a_gap(model_type, needle):
    gaps = build_spec(zoo_config(model_type)).layout.gaps
    assert any(needle in g for g in gaps), gaps


def test_llama4_holds_its_parts_at_the_top_level():
    """Llama 4's reference has no inner multimodal model: its vision model, projector and a causal LM (text model and
    head) are the top-level class's. The generated model holds them as NeMo's VLMs do, takes over its image methods
    but not its forward (which ends in the head), projects the tower's output itself as that forward does, keeps the
    tower's complex RoPE table through casts, and maps the text model from ``language_model.model.*``."""
    lay = build_spec(load_config("meta-llama__Llama-4-Maverick-17B-128E-Instruct.json")).layout
    vision = lay.vision
    assert lay.gaps == () and lay.experts and lay.routed_input_scaled
    assert vision.headless and not vision.projects_features and vision.complex_buffers
    assert vision.methods == ("get_image_features", "get_placeholder_mask")
    assert [p.attribute for p in vision.parts] == ["vision_model", "multi_modal_projector"]
    assert dict(vision.checkpoint_prefixes) == {
        "model.language_model.": "language_model.model.",
        "model.vision_model.": "vision_model.",
        "model.multi_modal_projector.": "multi_modal_projector.",
        "lm_head.": "language_model.lm_head.",
    }
    assert vision.image_tokens == "int((vision.image_size // vision.patch_size * vision.pixel_shuffle_ratio) ** 2)"
    assert vision.settings == () and vision.aliases == (("vision_tower", "vision_model"),)
    rows = {r.nemo: r.sources for r in lay.tensors}
    assert rows["model.language_model.layers.{layer}.mlp.gate.weight"] == (
        "language_model.model.layers.{layer}.feed_forward.router.weight",
    )
    assert rows["lm_head.weight"] == ("language_model.lm_head.weight",)
    assert rows["model.multi_modal_projector.linear_1.weight"] == ("multi_modal_projector.linear_1.weight",)
    # The reference's own module paths, which the tests hook.
    assert lay.router == "language_model.model.layers.{layer}.feed_forward.router"
    compared = {c.label: c.reference for c in lay.compared_modules}
    assert compared["attention"] == "language_model.model.layers.{layer}.self_attn"


def test_any_resolution_tiles_and_the_learned_newline_are_laid_out(spec):
    """LLaVA-NeXT: images tiled by image_grid_pinpoints; the row newline the multimodal model holds itself is built
    with a config-derived shape and mapped to its checkpoint name like any tensor."""
    lay = spec("llava-hf__llava-v1.6-mistral-7b-hf.json", "vlm")["layout"]
    assert lay["gaps"] == []
    vision = lay["vision"]
    assert vision["pixel_layout"] == "tiled"
    assert [[n, list(s)] for n, s in vision["own_parameters"]] == [
        ["image_newline", ["config.text_config.hidden_size"]]
    ]
    assert ("model.image_newline", "image_newline") in {tuple(p) for p in vision["checkpoint_prefixes"]}
    assert {(r["nemo"], tuple(r["hf"])) for r in lay["tensors"] if "newline" in r["nemo"]} == {
        ("model.image_newline", ("image_newline",))
    }
    assert "feature_select_strategy" not in vision["image_tokens"]  # the grid has no place for a class token


def test_a_family_naming_its_parts_otherwise_keeps_its_names(spec):
    """Idefics2: the family's own attribute names (its code and checkpoint use them), NeMo AutoModel's as aliases;
    what its __init__ sets from the config; a perceiver's latents per image; its unchecked merge wrapped; the
    resampler's layers counted by their own config field; its latents initialised by the family's code."""
    lay = spec("HuggingFaceM4__idefics2-8b.json", "vlm")["layout"]
    assert lay["gaps"] == []
    vision = lay["vision"]
    assert {tuple(a) for a in vision["aliases"]} == {
        ("vision_tower", "vision_model"),
        ("multi_modal_projector", "connector"),
        ("language_model", "text_model"),
    }
    assert {tuple(a) for a in vision["settings"]} >= {
        ("image_seq_len", "config.perceiver_config.resampler_n_latents"),
        ("image_token_id", "config.image_token_id"),
    }
    assert vision["pixel_layout"] == "stacked"
    assert vision["image_tokens"] == "config.perceiver_config.resampler_n_latents"
    assert vision["checked_merge"] == "inputs_merger" and "inputs_merger" not in vision["methods"]
    assert {"get_input_embeddings", "set_input_embeddings"}.isdisjoint(vision["methods"])
    assert {tuple(a) for a in vision["layer_sets"]} == {
        ("vision_model", "config.vision_config.num_hidden_layers"),
        ("connector", "config.perceiver_config.resampler_depth"),
    }
    assert {r["layers"] for r in lay["tensors"] if "perceiver_resampler.layers" in r["nemo"]} == {"connector"}
    assert (list(vision["family_initialised"]), vision["initialiser"]) == (["connector"], "vision_model")
    assert list(dict(vision["supported"])["vision_config"]) == ["idefics2_vision", "idefics2"]
    llava = spec("mistral-community__pixtral-12b.json", "vlm")["layout"]["vision"]
    assert (list(llava["aliases"]), llava["checked_merge"], list(llava["family_initialised"])) == ([], None, [])


def test_config_settings_are_read_from_the_reference_source():
    from automodel_onboard.model.reference import _config_settings

    class Toy:
        def __init__(self, config):
            self.config = config
            self.latents = config.perceiver_config.resampler_n_latents
            self.token = self.config.image_token_id
            self.fixed = 3
            self.other = config.get_text_config()
            self.pair = (config.a, config.b)

    assert _config_settings(Toy) == (
        ("latents", "config.perceiver_config.resampler_n_latents"),
        ("token", "config.image_token_id"),
    )


def test_a_capped_tile_count_is_a_gap(spec):
    """LLaVA-OneVision's vision_aspect_ratio caps the tiles on top of the grid: not built, and named."""
    gaps = spec("llava-hf__llava-v1.6-mistral-7b-hf.json", "vlm", vision_aspect_ratio="anyres_max_9")["layout"]["gaps"]
    assert any("images tiled at several resolutions (vision_aspect_ratio)" in g for g in gaps), gaps


def _declared(layout) -> set[str]:
    return {name for name, value in layout["capabilities"] if value}


def test_dense_parallelisms_follow_what_the_model_computes(spec):
    """Qwen3: per-head q/k norms in the tensor-parallel plan, and every parallelism NeMo's own Qwen3 declares."""
    qwen3 = spec("Qwen__Qwen3-0.6B.json")["layout"]
    assert _declared(qwen3) == {"supports_tp", "supports_cp", "supports_pp"}
    plan = dict(qwen3["tensor_parallel"])
    assert plan["model.layers.*.self_attn.q_norm"] == plan["model.layers.*.self_attn.k_norm"] == "replicated_grad_sum"
    assert (plan["model.embed_tokens"], plan["lm_head"]) == ("vocab_embedding", "vocab_colwise")
    assert {plan[f"model.layers.*.self_attn.{p}_proj"] for p in "qkv"} == {"colwise"}
    assert plan["model.layers.*.self_attn.o_proj"] == plan["model.layers.*.mlp.down_proj"] == "rowwise"
    llama = spec("meta-llama__Llama-2-7b-hf.json")["layout"]
    assert not any("norm" in path for path, _ in llama["tensor_parallel"])  # no q/k norms to replicate
    assert qwen3["multi_process"] and llama["multi_process"]


def test_one_key_value_head_cannot_be_split_over_ranks(spec):
    mqa = spec("meta-llama__Llama-2-7b-hf.json", num_key_value_heads=1)["layout"]
    assert mqa["tensor_parallel"] == [] and "supports_tp" not in _declared(mqa)


def test_a_window_in_the_config_rules_out_ring_attention(spec):
    windowed = spec("mistralai__Mistral-Nemo-Base-2407.json", sliding_window=64)["layout"]
    assert "supports_cp" not in _declared(windowed)
    assert {"supports_cp", "supports_pp"} <= _declared(spec("mistralai__Mistral-Nemo-Base-2407.json")["layout"])


def test_scaled_embeddings_or_logits_rule_out_nemo_pipeline_stages():
    from automodel_onboard.layout import matrix

    (granite,) = [c for c in matrix.DENSE if c.case_id == "granite-multipliers"]
    layout = build_spec(granite.config(), existing_models=frozenset()).for_kind("dense").to_dict()["layout"]
    assert layout["embedding_scale"] and layout["logits_divisor"]
    assert _declared(layout) == {"supports_tp", "supports_cp"}


def test_moe_runs_pipeline_stages_in_its_own_forward(spec):
    """The MoE kind: FSDP2 and pipeline stages tested across processes, the stages in the model's own stage-aware
    forward (as NeMo's MoE models run theirs); no stages with MTP layers past the decoder's (GLM-4.5)."""
    moe = spec("Qwen__Qwen3-235B-A22B.json", kind="moe")["layout"]
    assert _declared(moe) == {"supports_ep", "supports_pp"} and moe["tensor_parallel"] == []
    assert moe["multi_process"] and moe["stage_aware"]
    glm = spec("zai-org__GLM-4.5.json", kind="moe")["layout"]
    assert _declared(glm) == {"supports_ep"} and glm["multi_process"] and not glm["stage_aware"]


@pytest.mark.parametrize(
    ("name", "pipeline"),
    [
        ("mistral-community__pixtral-12b.json", True),  # sized images, one per row, NeMo's text-model name
        ("Qwen__Qwen2.5-VL-3B-Instruct.json", False),  # multimodal RoPE: later stages cannot rebuild the positions
        ("llava-hf__llava-v1.6-mistral-7b-hf.json", False),  # tiles NeMo's media chunker splits wrongly
        ("HuggingFaceM4__idefics2-8b.json", False),  # text_model: NeMo's splitter looks for language_model first
    ],
)
def test_vlm_pipeline_stages_only_where_nemo_can_stage_the_images(spec, name, pipeline):
    """Tensor parallelism shards the text model under its place in the multimodal model; pipeline stages only where
    NeMo's VLM path carries the images."""
    vlm = spec(name, kind="vlm")["layout"]
    assert vlm["stage_aware"] is pipeline
    text = f"model.{vlm['vision']['text_attribute']}."
    plan = dict(vlm["tensor_parallel"])
    assert (
        vlm["multi_process"] and plan[text + "embed_tokens"] == "vocab_embedding" and plan["lm_head"] == "vocab_colwise"
    )
    assert all(path == "lm_head" or path.startswith(text) for path in plan)
    assert _declared(vlm) == ({"supports_tp", "supports_pp"} if pipeline else {"supports_tp"})
    assert vlm["vision"]["pipeline"] is pipeline
    assert vlm["vision"]["grid_input"] == {"mistral-community__pixtral-12b.json": "image_sizes"}.get(
        name, "image_grid_thw" if "Qwen" in name else ("image_sizes" if "llava" in name else None)
    )


def test_a_part_named_otherwise_rules_out_nemo_pipeline_stages():
    """LightOn OCR's projector is its ``vision_projection`` (NeMo's ``multi_modal_projector`` is an alias of it), which
    NeMo's pipeline splitter would drop from the first stage: no pipeline stages; Mistral 3's NeMo-named parts stage."""
    lighton = build_spec(zoo_config("lighton_ocr")).layout
    assert ("multi_modal_projector", "vision_projection") in lighton.vision.aliases
    assert not lighton.vision.pipeline and not lighton.stage_aware
    mistral3 = build_spec(zoo_config("mistral3")).layout
    assert mistral3.vision.aliases == () and mistral3.vision.pipeline


def test_a_window_on_every_layer_rules_out_nemo_pipeline_stages(spec):
    """NeMo's stage forward picks each layer's mask by its attention_type; Mistral's one window has none."""
    windowed = spec("mistralai__Mistral-Nemo-Base-2407.json", sliding_window=64)["layout"]
    assert windowed["attention"]["sliding"] == "all_layers"
    assert _declared(windowed) == {"supports_tp"}
    per_layer = spec("Qwen__Qwen2-0.5B.json")["layout"]
    assert per_layer["attention"]["sliding"] == "per_layer" and "supports_pp" in _declared(per_layer)


def _case(case_id: str) -> dict:
    from automodel_onboard.layout import matrix

    (case,) = [c for c in matrix.DENSE if c.case_id == case_id]
    return build_spec(case.config(), existing_models=frozenset()).to_dict()


def test_gemma_habits_are_laid_out_from_what_the_reference_showed(spec):
    """Gemma: the reference's own norm class (imported, started at zero) and the lookup scaled by sqrt(hidden)."""
    gemma = spec("google__gemma-7b.json")["layout"]
    assert gemma["gaps"] == []
    assert (gemma["norm_class"], gemma["norm_identity"]) == ("GemmaRMSNorm", 0.0)
    assert gemma["embedding_lookup_only"] is True
    assert gemma["embedding_scale"] == "config.hidden_size**0.5"
    assert {"module": "transformers.models.gemma.modeling_gemma", "names": ["GemmaRMSNorm"]} in gemma["model_imports"]
    assert all("initialize_rms_norm_module" not in i["names"] for i in gemma["model_nemo_imports"])
    # NeMo's stage forwards do not scale the embeddings.
    assert _declared(gemma) == {"supports_tp", "supports_cp"}


def test_gemma2_sandwich_norms_soft_caps_and_query_scale():
    layout = _case("gemma2-softcaps-sandwich")
    lay, tiny = layout["layout"], layout["tiny_config"]
    assert lay["gaps"] == [] and lay["block_norms"] == "sandwich"
    assert lay["attention"]["softcap"] is True and lay["logits_softcap"] == "config.final_logit_softcapping"
    assert lay["attention"]["scaling"] == "config.query_pre_attn_scalar**-0.5"
    assert lay["mlp"]["activation"] == "hidden_activation"
    labels = {c["label"] for c in lay["compared_modules"]}
    assert {"pre_feedforward_norm", "post_feedforward_norm"} <= labels
    # Caps the tiny model's scores reach; ring attention runs SDPA, which has no caps; the stages cap no logits.
    assert (tiny["attn_logit_softcapping"], tiny["final_logit_softcapping"]) == (0.05, 1.0)
    assert _declared(lay) == {"supports_tp"}


def test_gemma3_one_rope_per_layer_type():
    lay = _case("gemma3-local-global-rope")["layout"]
    assert lay["gaps"] == [] and lay["attention"]["rope_per_layer_type"] is True and lay["attention"]["qk_norm"]
    assert lay["attention"]["softcap"] is False and lay["logits_softcap"] is None
    assert _declared(lay) == {"supports_tp"}


def test_gemma_text_models_behind_a_vision_tower(spec):
    """Gemma 3: the family's masks (an image's tokens attend both ways) reach the text model per layer type, the
    projector pools to mm_tokens_per_image and its bare projection and norm start at zero as the family's do;
    PaliGemma: a prefix attending both ways, the text model's causality read from its config."""
    gemma3 = spec("google__gemma-3-12b-it.json", "vlm")["layout"]
    assert gemma3["gaps"] == [] and gemma3["mask_mapping"] is True and gemma3["embedding_lookup_only"] is True
    vision = gemma3["vision"]
    assert vision["image_tokens"] == "config.mm_tokens_per_image"
    assert (vision["token_types"], vision["fills_token_types"]) == ("token_type_ids", False)
    assert vision["parameter_inits"] == [
        ["model.multi_modal_projector.mm_input_projection_weight", "zeros"],
        ["model.multi_modal_projector.mm_soft_emb_norm.weight", "zeros"],  # Gemma's norms scale by 1 + weight
    ]
    paligemma = spec("google__paligemma-3b-pt-224.json", "vlm")["layout"]
    assert paligemma["gaps"] == [] and paligemma["attention"]["causal"] == "not config.use_bidirectional_attention"
    qwen = spec("Qwen__Qwen2.5-VL-3B-Instruct.json", "vlm")["layout"]["vision"]
    assert (qwen["token_types"], qwen["fills_token_types"]) == ("mm_token_type_ids", True)
    llava_next = spec("llava-hf__llava-v1.6-mistral-7b-hf.json", "vlm")["layout"]["vision"]
    assert llava_next["parameter_inits"] == [["model.image_newline", "normal"]]


def test_olmo2_norms_after_the_blocks_and_float32_rope_tables():
    """OLMo 2: no input norm, norms after the attention and the MLP, q/k norms over all heads; its RoPE hands bfloat16
    activations float32 tables (measured), and the generated rotation keeps them."""
    spec = _case("olmo2-post-norms")
    lay = spec["layout"]
    assert lay["gaps"] == [] and lay["block_norms"] == "post"
    assert lay["attention"]["qk_norm_full"] is True and lay["attention"]["float32_tables"] is True
    labels = {c["label"] for c in lay["compared_modules"]}
    assert "input_norm" not in labels and {"post_attention_norm", "post_feedforward_norm"} <= labels
    assert spec["features"]["code"]["float32_tables"] is True
    # Norms on the blocks' outputs are the reference's class (bfloat16 rounds as the reference does); a pre-norm
    # Llama keeps NeMo AutoModel's backend-aware norm.
    assert lay["norm_class"] == "Olmo2RMSNorm"
    llama = _case("llama-base")
    assert llama["layout"]["block_norms"] == "pre" and llama["layout"]["attention"]["float32_tables"] is False
    assert llama["layout"]["norm_class"] is None


def test_float32_tables_are_measured_on_a_rope_per_layer_type():
    """OLMo 3's RoPE takes the layer type and hands back float32 tables whatever the activations (measured with its
    first layer type); the generated RoPE per layer type keeps them float32. Gemma 3's casts to the activations'."""
    olmo3 = build_spec(zoo_config("olmo3")).layout.attention
    assert olmo3.rope_per_layer_type and olmo3.float32_tables
    gemma3 = build_spec(zoo_config("gemma3_text")).layout.attention
    assert gemma3.rope_per_layer_type and not gemma3.float32_tables


def test_cohere_layernorm_parallel_block_rope_pairs_and_logit_scale():
    """Cohere: its LayerNorm (no bias) measured and reused, attention and MLP side by side on one norm, RoPE over
    adjacent pairs (measured on its tables), logits times logit_scale (raised to 1/4 in the tiny config)."""
    spec = _case("cohere-parallel-layernorm")
    lay, code = spec["layout"], spec["features"]["code"]
    assert lay["gaps"] == [] and lay["block_norms"] == "parallel"
    assert (code["norm"]["centred"], code["norm"]["offset"], code["rope_pairs"]) == (True, 0.0, True)
    assert (lay["norm_class"], lay["norm_identity"], lay["norm_eps"]) == (
        "CohereLayerNorm",
        1.0,
        "config.layer_norm_eps",
    )
    assert lay["attention"]["rope_pairs"] is True and lay["logits_multiplier"] == "config.logit_scale"
    assert spec["tiny_config"]["logit_scale"] == 0.25
    assert {c["label"] for c in lay["compared_modules"]} >= {"input_norm", "attention", "mlp"}
    assert "post_attention_norm" not in {c["label"] for c in lay["compared_modules"]}
    # NeMo's stage forwards do not scale the logits.
    assert "supports_pp" not in _declared(lay)


def test_a_parallel_block_with_two_norms_is_refused(spec):
    """GPT-NeoX-style use_parallel_residual keeps two norms: not the one-norm parallel placement, so a gap."""
    gaps = spec("meta-llama__Llama-3.2-3B.json", use_parallel_residual=True)["layout"]["gaps"]
    assert any("no placement the dense kind builds" in g for g in gaps), gaps


def test_stablelm_layernorm_with_biases_and_partial_rotary(spec):
    """StableLM 2: torch's LayerNorm with its biases (mapped like any tensor, started at zero), a quarter of each head
    rotated."""
    lay = spec("stabilityai__stablelm-2-1_6b.json")["layout"]
    assert lay["gaps"] == []
    assert (lay["norm_class"], lay["norm_identity"], lay["norm_bias"]) == ("nn.LayerNorm", 1.0, True)
    assert lay["attention"]["partial_rotary"] is True
    names = {r["nemo"] for r in lay["tensors"]}
    assert {"model.norm.bias", "model.layers.{layer}.input_layernorm.bias"} <= names
    assert all("torch.nn" not in i["module"] for i in lay["model_imports"])


def test_phi3_fused_checkpoint_projections_stay_fused():
    """Phi-3: qkv_proj and gate_up_proj are kept as the checkpoint stores them (a rename-free row each, shaped by the
    config), split inside the forward; tensor parallelism would cut across their parts, so it is not declared."""
    lay = _case("phi3-fused-longrope")["layout"]
    assert lay["gaps"] == [] and lay["attention"]["fused_qkv"] is True and lay["mlp"]["fused_gate_up"] is True
    rows = {r["nemo"]: r for r in lay["tensors"]}
    assert rows["model.layers.{layer}.self_attn.qkv_proj.weight"]["shape"] == ["qkv", "hidden"]
    assert rows["model.layers.{layer}.mlp.gate_up_proj.weight"]["shape"] == ["intermediate2", "hidden"]
    assert not any(".q_proj." in name or ".gate_proj." in name for name in rows)
    assert lay["tensor_parallel"] == [] and "supports_tp" not in _declared(lay)


def test_dropout_is_built_where_the_reference_applies_it():
    """Phi-3 declares resid_pdrop and embd_pdrop and applies only the first (measured): the layout drops out the
    residual branches alone, and the dropout test switches on every declared rate, attention's included."""
    from automodel_onboard.layout import matrix

    spec = build_spec({**matrix.PHI3_BASE, "resid_pdrop": 0.1, "embd_pdrop": 0.1}, existing_models=frozenset())
    code, lay = spec.features.code, spec.layout
    assert (code.dropout_fields, code.dropouts) == (("resid_pdrop", "embd_pdrop"), ("resid_pdrop",))
    assert lay.gaps == ()
    assert (lay.residual_dropout, lay.embedding_dropout) == ("config.resid_pdrop", None)
    assert lay.dropout_fields == ("resid_pdrop", "embd_pdrop", "attention_dropout")
    assert {t.key for t in spec.features.traits} >= {"residual_dropout", "embedding_dropout"}
    # Pipeline stages run their own forward around the layers, which would not drop out Phi-2's embeddings.
    phi2 = build_spec(load_config("microsoft__phi-2.json"), existing_models=frozenset()).layout
    assert phi2.embedding_dropout == "config.embd_pdrop" and dict(phi2.capabilities)["supports_pp"] is False


def test_phi2_non_gated_mlp_and_its_own_names_are_read_under_the_decoders(spec):
    """Phi-2: fc1/fc2, the attention's dense and final_layernorm are the checkpoint's names for a non-gated MLP's
    up/down projections, the output projection and the final norm; the model keeps NeMo AutoModel's names and each
    row renames, the head has a bias, and the plan shards no gate projection."""
    lay = spec("microsoft__phi-2.json")["layout"]
    assert lay["gaps"] == [] and lay["mlp"]["gated"] is False and lay["head_bias"] is True
    renamed = {r["nemo"]: r["hf"] for r in lay["tensors"] if r["hf"]}
    layer = "model.layers.{layer}."
    assert renamed == {
        **{layer + f"mlp.up_proj.{leaf}": [layer + f"mlp.fc1.{leaf}"] for leaf in ("weight", "bias")},
        **{layer + f"mlp.down_proj.{leaf}": [layer + f"mlp.fc2.{leaf}"] for leaf in ("weight", "bias")},
        **{layer + f"self_attn.o_proj.{leaf}": [layer + f"self_attn.dense.{leaf}"] for leaf in ("weight", "bias")},
        **{f"model.norm.{leaf}": [f"model.final_layernorm.{leaf}"] for leaf in ("weight", "bias")},
    }
    assert "lm_head.bias" in {r["nemo"] for r in lay["tensors"]}
    assert {path for path, _ in lay["tensor_parallel"]} >= {"model.layers.*.mlp.up_proj", "lm_head"}
    assert not any("gate_proj" in path for path, _ in lay["tensor_parallel"])
    compared = {c["label"]: c["reference"] for c in lay["compared_modules"]}
    assert compared["final_norm"] == "model.final_layernorm" and compared["mlp"] == "model.layers.{layer}.mlp"
    assert (lay["block_norms"], lay["norm_class"], lay["residual_dropout"]) == (
        "parallel",
        "nn.LayerNorm",
        "config.resid_pdrop",
    )


def test_olmo_weightless_layernorm_is_its_own_class_built_without_an_epsilon(spec):
    """OLMo's norms hold no parameters and no epsilon field: the reference's class, measured as a LayerNorm, built as
    cls(dim) with the epsilon it keeps itself."""
    lay = spec("allenai__OLMo-1B-hf.json")["layout"]
    assert lay["gaps"] == []
    assert (lay["norm_class"], lay["norm_weightless"], lay["norm_eps"]) == ("OlmoLayerNorm", True, None)
    assert {"module": "transformers.models.olmo.modeling_olmo", "names": ["OlmoLayerNorm"]} in lay["model_imports"]
    assert not any("norm" in r["nemo"] for r in lay["tensors"])


def test_lora_targets_are_every_weight_matrix_of_the_text_layers(spec):
    """The PEFT recipe's targets: each layer's linears (a MoE layer's grouped experts as one module, its router not),
    under the text model's place in an image-text model; nothing outside the decoder layers."""
    dense = spec("Qwen__Qwen3-0.6B.json", "dense")["layout"]["lora_targets"]
    projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    assert dense == [f"model.layers.*.{p}" for p in [*projections, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]]
    moe = spec("Qwen__Qwen3-235B-A22B.json", "moe")["layout"]["lora_targets"]
    assert moe == [f"model.layers.*.{p}" for p in [*projections, "mlp.experts"]]
    vlm = spec("mistral-community__pixtral-12b.json", "vlm")["layout"]["lora_targets"]
    assert vlm == [t.replace("model.", "model.language_model.", 1) for t in dense]


def test_the_docs_features_follow_the_capabilities_and_the_tests(spec):
    """Verified on the CPU where a generated test runs there, declared where its test needs GPUs (context
    parallelism), not supported otherwise."""
    dense = dict(map(tuple, spec("Qwen__Qwen3-0.6B.json", "dense")["layout"]["features"]))
    assert dense == {
        "FSDP2": "verified on CPU",
        "Tensor parallelism": "verified on CPU",
        "Pipeline parallelism": "verified on CPU",
        "Context parallelism": "declared; its test needs 2 GPUs",
        "Expert parallelism": "not supported",
        "LoRA": "verified on CPU",
        "QLoRA": "not supported",
    }
    moe = dict(map(tuple, spec("Qwen__Qwen3-235B-A22B.json", "moe")["layout"]["features"]))
    assert (moe["Tensor parallelism"], moe["Expert parallelism"]) == ("not supported", "verified on CPU")


def test_the_docs_limitations_name_the_gaps_rendered_anyway_expert_adapters_and_qlora(spec):
    assert spec("Qwen__Qwen3-0.6B.json")["layout"]["limitations"] == [dense.QLORA_LIMITATION]
    moe = spec("Qwen__Qwen3-235B-A22B.json", "moe")["layout"]["limitations"]
    assert moe == [dense.EXPERT_ADAPTERS_LIMITATION, dense.QLORA_LIMITATION]
    refused = spec("meta-llama__Llama-2-7b-hf.json", alibi=True)["layout"]
    assert refused["gaps"], "ALiBi is refused: the dense template does not build it"
    rendered_anyway = [f"Rendered although the template does not implement it: {gap}." for gap in refused["gaps"]]
    assert refused["limitations"] == [*rendered_anyway, dense.QLORA_LIMITATION]


def test_nemo_automodel_still_builds_the_hugging_face_class_under_bitsandbytes():
    """The QLoRA limitation the docs state, read from the installed NeMo AutoModel: where a registered implementation
    exists and quantization is asked for, its model init falls through to the Hugging Face class."""
    from nemo_automodel._transformers import model_init

    source = inspect.getsource(getattr(model_init, "__init_model"))
    custom = source.split("model_cls = _resolve_custom_model_cls_for_config(hf_config)", 1)[1]
    branch = custom.split("if model_cls is not None:", 1)[1].lstrip()
    assert branch.startswith("if quantization_config is not None:"), branch[:300]
    assert "do not support BnB quantization" in branch.split("else:", 1)[0]
