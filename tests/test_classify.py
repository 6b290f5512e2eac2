"""Classification of the real-config corpus and of synthetic configs that probe each rule."""

from __future__ import annotations

import pytest
from conftest import LABELS, load_config

from automodel_onboard.errors import OnboardError
from automodel_onboard.model.classify import classify


@pytest.mark.parametrize("name", sorted(LABELS))
def test_corpus_matches_labels(name):
    verdict = classify(load_config(name))
    assert (verdict.kind, verdict.text_backbone) == (LABELS[name]["kind"], LABELS[name]["text_backbone"])
    assert verdict.reasons, "every verdict carries its reasons"


def _llama(**extra):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": 256,
    }
    cfg.update(extra)
    return cfg


@pytest.mark.parametrize(
    ("key", "nested"),
    [
        ("num_local_experts", None),
        ("num_experts", None),
        ("n_routed_experts", None),
        ("moe_num_experts", None),
        ("num_routed_experts", None),
        ("moe_num_experts", "ffn_config"),
    ],
)
def test_moe_recognised_under_every_convention(key, nested):
    cfg = _llama()
    if nested:
        cfg[nested] = {key: 8, "moe_top_k": 2}
    else:
        cfg.update({key: 8, "num_experts_per_tok": 2})
    verdict = classify(cfg)
    assert verdict.kind == "moe"
    assert any(key in r and "8 routed experts" in r for r in verdict.reasons)


@pytest.mark.parametrize("count", [0, 1, None])
def test_zero_or_absent_experts_mean_dense(count):
    verdict = classify(_llama(num_experts=count, num_experts_per_tok=None))
    assert verdict.kind == "dense"


def test_top_k_without_experts_is_dense_with_reason():
    verdict = classify(_llama(moe_k=2))
    assert verdict.kind == "dense"
    assert any("moe_k" in r for r in verdict.reasons)


def test_vlm_with_top_level_text_fields():
    cfg = _llama(architectures=["FooVLForConditionalGeneration"], model_type="foo_vl", vision_config={"depth": 2})
    verdict = classify(cfg)
    assert (verdict.kind, verdict.text_backbone, verdict.text_key) == ("vlm", "dense", "")


def test_vlm_with_moe_text_config():
    cfg = {
        "architectures": ["BarForConditionalGeneration"],
        "model_type": "bar",
        "vision_config": {"hidden_size": 32},
        "text_config": {"n_routed_experts": 16, "num_experts_per_tok": 2},
    }
    assert (classify(cfg).kind, classify(cfg).text_backbone) == ("vlm", "moe")


@pytest.mark.parametrize("vision_key", ["visual", "vit_config", "mm_vision_tower", "img_processor", "vision_tower"])
def test_custom_vision_names_are_never_dense(vision_key):
    # A custom-code VLM keeps its tower under its own key and calls itself ForCausalLM.
    cfg = _llama(architectures=["FancyVForCausalLM"], model_type="fancy_v")
    cfg[vision_key] = {"hidden_size": 32} if vision_key != "mm_vision_tower" else "openai/clip-vit-large-patch14"
    verdict = classify(cfg)
    assert verdict.kind == "vlm", verdict.reasons


def test_a_remote_code_vlm_whose_class_name_says_nothing_is_a_vlm_with_custom_code():
    """InternVL's InternVLChatModel: auto_map names its causal-LM class; the text model sits in llm_config."""
    cfg = {
        "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "model_type": "internvl_chat",
        "llm_config": {"model_type": "qwen2", "hidden_size": 896, "num_attention_heads": 14, "num_hidden_layers": 2},
        "vision_config": {"model_type": "intern_vit_6b", "hidden_size": 1024},
    }
    verdict = classify(cfg)
    assert (verdict.kind, verdict.text_key) == ("vlm", "llm_config")
    assert "auto_map.AutoModelForCausalLM" in verdict.reasons[0]
    cfg.pop("auto_map")
    assert classify(cfg).kind == "unsupported"


def test_vision_without_identifiable_text_model_is_refused():
    cfg = {"architectures": ["OddForConditionalGeneration"], "model_type": "odd", "visual": {"depth": 2}}
    verdict = classify(cfg)
    assert verdict.kind == "unsupported"
    assert "no text model can be identified" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (
            {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True},
            "encoder-decoder",
        ),
        ({"architectures": ["BertForMaskedLM"], "model_type": "bert", "num_attention_heads": 12}, "encoder head"),
        ({"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "num_mel_bins": 80}, "speech"),
        ({"architectures": ["Wav2Vec2ForCTC"], "model_type": "wav2vec2"}, "speech"),
        ({"architectures": ["MambaForCausalLM"], "model_type": "mamba", "state_size": 16}, "state-space"),
        (
            {
                "architectures": ["JambaForCausalLM"],
                "model_type": "jamba",
                "attn_layer_period": 8,
                "num_attention_heads": 32,
            },
            "hybrid",
        ),
        ({"architectures": ["RwkvForCausalLM"], "model_type": "rwkv", "hidden_size": 64}, "attention-free"),
        ({"architectures": ["LlamaModel"], "model_type": "llama", "num_attention_heads": 4}, "no causal-LM head"),
        ({"architectures": ["UNet2DConditionModel"], "_diffusers_version": "0.30"}, "diffusion"),
        ({"architectures": ["FooForConditionalGeneration"], "model_type": "foo"}, "not image-text-to-text"),
    ],
)
def test_unsupported_with_reason(cfg, needle):
    verdict = classify(cfg)
    assert verdict.kind == "unsupported"
    assert needle in " ".join(verdict.reasons)


@pytest.mark.parametrize(
    ("cfg", "code", "needle"),
    [
        ({"model_type": "llama"}, "no-architectures", "no 'architectures'"),
        ({"architectures": "LlamaForCausalLM"}, "invalid-value", "non-empty list"),
        ({"architectures": []}, "invalid-value", "non-empty list"),
        ({"architectures": [1]}, "invalid-value", "non-empty list"),
    ],
)
def test_invalid_architectures(cfg, code, needle):
    with pytest.raises(OnboardError) as info:
        classify(cfg)
    assert info.value.code == code
    assert needle in str(info.value)


def test_wrong_type_expert_count_is_an_error_naming_the_field():
    with pytest.raises(OnboardError) as info:
        classify(_llama(num_local_experts="eight"))
    assert info.value.code == "invalid-value"
    assert "num_local_experts must be an integer" in str(info.value)
