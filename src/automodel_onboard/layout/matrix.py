"""The synthetic feature matrix: per kind, a real-shaped base config and one feature change per case.

Each case exercises one decision of its kind's layout (biases, grouping, head dim, tying, RoPE types, sliding
windows). render-all onboards every case into its own scratch checkout; the template tests render them all too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LLAMA_BASE: Mapping[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "vocab_size": 32000,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}
MISTRAL_BASE: Mapping[str, Any] = {
    **{k: v for k, v in LLAMA_BASE.items() if k not in ("attention_bias", "mlp_bias")},
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "sliding_window": 4096,
}
QWEN2_BASE: Mapping[str, Any] = {
    **{k: v for k, v in LLAMA_BASE.items() if k not in ("attention_bias", "mlp_bias")},
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "use_sliding_window": True,
    "sliding_window": 4096,
    "max_window_layers": 8,
    "layer_types": ["full_attention"] * 8 + ["sliding_attention"] * 8,
}

# Granite 3's dense shape: the Llama decoder with four config multipliers (embeddings, attention, residuals, logits).
GRANITE_BASE: Mapping[str, Any] = {
    **{k: v for k, v in LLAMA_BASE.items() if k not in ("mlp_bias",)},
    "architectures": ["GraniteForCausalLM"],
    "model_type": "granite",
    "embedding_multiplier": 12.0,
    "attention_multiplier": 0.0078125,
    "residual_multiplier": 0.22,
    "logits_scaling": 8.0,
    "tie_word_embeddings": True,
}

# Gemma 2's shape: (1 + weight) norms and sqrt(hidden) embedding scaling (only in its code), sandwich norms around
# both blocks, soft-capped attention scores and logits, the query_pre_attn_scalar softmax scale, local and global
# layers alternating, gelu-tanh under the name hidden_activation.
GEMMA2_BASE: Mapping[str, Any] = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "vocab_size": 256000,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "torch_dtype": "bfloat16",
}
# Gemma 3's text model: Gemma 2's decoder with per-head q/k norms, no soft caps, five local layers to one global and
# one RoPE per layer type (a local base, and a linearly scaled global one).
GEMMA3_TEXT_BASE: Mapping[str, Any] = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "vocab_size": 262208,
    "torch_dtype": "bfloat16",
}

# OLMo 2's shape: norms after the attention and the MLP only (no input norm), q/k norms over all heads.
OLMO2_BASE: Mapping[str, Any] = {
    "architectures": ["Olmo2ForCausalLM"],
    "model_type": "olmo2",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 500000.0,
    "vocab_size": 100352,
    "attention_bias": False,
    "tie_word_embeddings": False,
    "pad_token_id": 1,
    "bos_token_id": None,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

# Cohere's Command R shape: a LayerNorm without bias (its own class), attention and MLP side by side on one norm,
# RoPE over adjacent dim pairs, logits multiplied by logit_scale, tied.
COHERE_BASE: Mapping[str, Any] = {
    "architectures": ["CohereForCausalLM"],
    "model_type": "cohere",
    "hidden_size": 8192,
    "intermediate_size": 22528,
    "num_hidden_layers": 40,
    "num_attention_heads": 64,
    "num_key_value_heads": 64,
    "hidden_act": "silu",
    "layer_norm_eps": 1e-5,
    "logit_scale": 0.0625,
    "rope_theta": 8000000.0,
    "max_position_embeddings": 8192,
    "use_qk_norm": False,
    "vocab_size": 256000,
    "pad_token_id": 0,
    "bos_token_id": 5,
    "eos_token_id": 255001,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}

# Phi-3's shape: fused qkv_proj and gate_up_proj checkpoint tensors (kept fused), LongRoPE (short and long factors
# over the rotated pairs), one sliding window.
PHI3_BASE: Mapping[str, Any] = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096,
    "rope_scaling": {
        "type": "longrope",
        "short_factor": [1.0 + 0.01 * i for i in range(48)],
        "long_factor": [1.0 + 0.1 * i for i in range(48)],
    },
    "sliding_window": 262144,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attention_dropout": 0.0,
    "vocab_size": 32064,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "pad_token_id": 32000,
    "torch_dtype": "bfloat16",
}


@dataclass(frozen=True)
class Synthetic:
    case_id: str
    kind: str
    base: Mapping[str, Any]
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {**self.base, **self.overrides}


DENSE: tuple[Synthetic, ...] = (
    Synthetic("llama-base", "dense", LLAMA_BASE),
    Synthetic("llama-attention-bias", "dense", LLAMA_BASE, {"attention_bias": True}),
    Synthetic("llama-mlp-bias", "dense", LLAMA_BASE, {"mlp_bias": True}),
    Synthetic("llama-mqa", "dense", LLAMA_BASE, {"num_key_value_heads": 1}),
    Synthetic("llama-mha", "dense", LLAMA_BASE, {"num_key_value_heads": 16}),
    Synthetic("llama-head-dim-explicit", "dense", LLAMA_BASE, {"head_dim": 64}),
    Synthetic("llama-tied", "dense", LLAMA_BASE, {"tie_word_embeddings": True}),
    Synthetic("llama-rope-linear", "dense", LLAMA_BASE, {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    Synthetic("llama-rope-dynamic", "dense", LLAMA_BASE, {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
    Synthetic(
        "llama-rope-yarn",
        "dense",
        LLAMA_BASE,
        {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}},
    ),
    Synthetic(
        "llama-rope-llama3",
        "dense",
        LLAMA_BASE,
        {
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 2048,
            }
        },
    ),
    Synthetic("mistral-sliding-all-layers", "dense", MISTRAL_BASE),
    Synthetic("qwen2-layer-types-mixed", "dense", QWEN2_BASE),
    Synthetic("granite-multipliers", "dense", GRANITE_BASE),
    Synthetic("gemma2-softcaps-sandwich", "dense", GEMMA2_BASE),
    Synthetic("gemma3-local-global-rope", "dense", GEMMA3_TEXT_BASE),
    Synthetic("olmo2-post-norms", "dense", OLMO2_BASE),
    Synthetic("cohere-parallel-layernorm", "dense", COHERE_BASE),
    Synthetic("phi3-fused-longrope", "dense", PHI3_BASE),
)

QWEN3_MOE_BASE: Mapping[str, Any] = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "router_aux_loss_coef": 0.001,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "vocab_size": 151936,
    "attention_bias": False,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
QWEN2_MOE_BASE: Mapping[str, Any] = {
    **{k: v for k, v in QWEN3_MOE_BASE.items() if k not in ("head_dim", "attention_bias")},
    "architectures": ["Qwen2MoeForCausalLM"],
    "model_type": "qwen2_moe",
    "num_attention_heads": 16,
    "norm_topk_prob": False,
    "shared_expert_intermediate_size": 5632,
}
MIXTRAL_BASE: Mapping[str, Any] = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "router_aux_loss_coef": 0.02,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

# DeepSeek-V3's shape (its config.json, sizes as published): latent attention with low-rank queries, YaRN with
# mscale, sigmoid routing with a correction bias over expert groups, a shared expert, dense first layers, one
# multi-token prediction layer.
DEEPSEEK_V3_BASE: Mapping[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 8,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "num_nextn_predict_layers": 1,
    "hidden_act": "silu",
    "max_position_embeddings": 163840,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000,
    "rope_scaling": {
        "type": "yarn",
        "factor": 40,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
    },
    "attention_bias": False,
    "vocab_size": 129280,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

# GPT-OSS's shape (gpt-oss-20b's config.json without its quantization block): attention sinks and biases, sliding
# and full attention layers alternating, YaRN with one angle per rotated pair, a router with a bias, and stacked
# experts with biases computing a clamped GLU on interleaved gate and up rows.
GPT_OSS_BASE: Mapping[str, Any] = {
    "architectures": ["GptOssForCausalLM"],
    "model_type": "gpt_oss",
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_hidden_layers": 24,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_local_experts": 32,
    "num_experts_per_tok": 4,
    "experts_per_token": 4,
    "router_aux_loss_coef": 0.9,
    "output_router_logits": False,
    "swiglu_limit": 7.0,
    "attention_bias": True,
    "attention_dropout": 0.0,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 12,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "initial_context_length": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 150000,
    "rope_scaling": {
        "rope_type": "yarn",
        "factor": 32.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "truncate": False,
        "original_max_position_embeddings": 4096,
    },
    "vocab_size": 201088,
    "pad_token_id": 199999,
    "eos_token_id": 200002,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

# Llama 4 Scout's text model (its text_config as a Llama4ForCausalLM): one expert per token, each token scaled by its
# router's sigmoid score before the expert, a shared expert, chunked local attention with every fourth layer unrotated
# (NoPE, whose queries are scaled up with the position), q and k divided by their RMS on the rotated layers, llama3
# RoPE over adjacent dim pairs from complex tables.
LLAMA4_TEXT_BASE: Mapping[str, Any] = {
    "architectures": ["Llama4ForCausalLM"],
    "model_type": "llama4_text",
    "hidden_size": 5120,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "num_hidden_layers": 48,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 10485760,
    "rms_norm_eps": 1e-5,
    "num_local_experts": 16,
    "num_experts_per_tok": 1,
    "interleave_moe_layer_step": 1,
    "use_qk_norm": True,
    "attention_chunk_size": 8192,
    "attn_temperature_tuning": True,
    "floor_scale": 8192,
    "attn_scale": 0.1,
    "router_aux_loss_coef": 0.001,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
    },
    "attention_bias": False,
    "vocab_size": 202048,
    "bos_token_id": 200000,
    "eos_token_id": [200001, 200007, 200008],
    "pad_token_id": 200018,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

MOE: tuple[Synthetic, ...] = (
    Synthetic("qwen3-moe-base", "moe", QWEN3_MOE_BASE),
    Synthetic("qwen3-moe-no-topk-norm", "moe", QWEN3_MOE_BASE, {"norm_topk_prob": False}),
    Synthetic("qwen3-moe-dense-first-layer", "moe", QWEN3_MOE_BASE, {"mlp_only_layers": [0]}),
    Synthetic("qwen3-moe-sparse-step", "moe", QWEN3_MOE_BASE, {"decoder_sparse_step": 2}),
    Synthetic("qwen3-moe-tied", "moe", QWEN3_MOE_BASE, {"tie_word_embeddings": True}),
    Synthetic("qwen2-moe-shared-expert", "moe", QWEN2_MOE_BASE),
    Synthetic("mixtral-base", "moe", MIXTRAL_BASE),
    Synthetic("deepseek-v3-base", "moe", DEEPSEEK_V3_BASE),
    # Queries through one projection (no q_lora_rank), as DeepSeek-V2-Lite lays them out.
    Synthetic("deepseek-v3-full-rank-queries", "moe", DEEPSEEK_V3_BASE, {"q_lora_rank": None}),
    # RoPE pairs rotated in place of halves, no YaRN: the softmax scale is plain.
    Synthetic("deepseek-v3-rope-halves", "moe", DEEPSEEK_V3_BASE, {"rope_interleave": False, "rope_scaling": None}),
    # Sigmoid routing over one group, no renormalisation, no scaling.
    Synthetic(
        "deepseek-v3-ungrouped",
        "moe",
        DEEPSEEK_V3_BASE,
        {"n_group": 1, "topk_group": 1, "norm_topk_prob": False, "routed_scaling_factor": 1.0},
    ),
    Synthetic("gpt-oss-base", "moe", GPT_OSS_BASE),
    Synthetic("llama4-text-base", "moe", LLAMA4_TEXT_BASE),
    # Maverick's: dense layers (their own width, intermediate_size_mlp) between the MoE ones, no q/k division.
    Synthetic(
        "llama4-text-interleaved", "moe", LLAMA4_TEXT_BASE, {"interleave_moe_layer_step": 2, "use_qk_norm": False}
    ),
)

# LLaVA 1.5's shape (llava-1.5-7b-hf's config.json): a CLIP tower whose second-to-last layer, class token dropped,
# goes through a two-layer projector into a Llama text model (its sizes the LlamaConfig defaults).
LLAVA_BASE: Mapping[str, Any] = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "ignore_index": -100,
    "image_token_index": 32000,
    "pad_token_id": 32001,
    "projector_hidden_act": "gelu",
    "text_config": {
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "rms_norm_eps": 1e-05,
        "torch_dtype": "float16",
        "vocab_size": 32064,
    },
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "vision_config": {
        "hidden_size": 1024,
        "image_size": 336,
        "intermediate_size": 4096,
        "model_type": "clip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "patch_size": 14,
        "projection_dim": 768,
        "vocab_size": 32000,
    },
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "vocab_size": 32064,
}

# Qwen2-VL's shape (Qwen2-VL-2B-Instruct's config.json): text fields at the top level with multimodal RoPE, a vision
# tower whose hidden_size is its projection into the text model.
QWEN2_VL_BASE: Mapping[str, Any] = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "model_type": "qwen2_vl",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 32768,
    "sliding_window": 32768,
    "use_sliding_window": False,
    "max_window_layers": 28,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 1536,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "torch_dtype": "bfloat16",
}

# Qwen3-VL's shape (Qwen3-VL-2B-Instruct's config.json): multimodal RoPE interleaving the grids dim by dim, DeepStack
# (three intermediate vision layers' features added to the first text layers at the image tokens), Qwen3 text.
QWEN3_VL_BASE: Mapping[str, Any] = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "model_type": "qwen3_vl",
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": True,
    "text_config": {
        "model_type": "qwen3_vl_text",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "dtype": "bfloat16",
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 6144,
        "max_position_embeddings": 262144,
        "num_attention_heads": 16,
        "num_hidden_layers": 28,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        "rope_theta": 5000000,
        "tie_word_embeddings": True,
        "use_cache": True,
        "vocab_size": 151936,
    },
    "vision_config": {
        "model_type": "qwen3_vl",
        "deepstack_visual_indexes": [5, 11, 17],
        "depth": 24,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 1024,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 4096,
        "num_heads": 16,
        "num_position_embeddings": 2304,
        "out_hidden_size": 2048,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}

VLM: tuple[Synthetic, ...] = (
    Synthetic("llava-base", "vlm", LLAVA_BASE),
    # The class token kept among the image features ("full"), the last layer's features.
    Synthetic(
        "llava-full-features", "vlm", LLAVA_BASE, {"vision_feature_select_strategy": "full", "vision_feature_layer": -1}
    ),
    Synthetic("qwen2-vl-base", "vlm", QWEN2_VL_BASE),
    Synthetic("qwen3-vl-deepstack", "vlm", QWEN3_VL_BASE),
    # A MoE text model behind the vision tower: LLaVA's tower and projector with Mixtral's text model (its checkpoint
    # names renamed by transformers, its experts stored one by one).
    Synthetic(
        "llava-mixtral-text",
        "vlm",
        LLAVA_BASE,
        {
            "text_config": dict(MIXTRAL_BASE),
            "vocab_size": MIXTRAL_BASE["vocab_size"],
            "image_token_index": 31999,
            "pad_token_id": 31998,
        },
    ),
    # LLaVA-NeXT's any-resolution tiling with a learned row newline (llava-v1.6-vicuna-7b-hf's shape): the first
    # resolution taller than wide, so the tests tile the other way round from the Mistral fixture.
    Synthetic(
        "llava-next-tiled",
        "vlm",
        LLAVA_BASE,
        {
            "architectures": ["LlavaNextForConditionalGeneration"],
            "model_type": "llava_next",
            "image_grid_pinpoints": [[672, 336], [336, 672], [672, 672], [1008, 336], [336, 1008]],
            "use_image_newline_parameter": True,
        },
    ),
)

# Every synthetic case, per kind.
CASES: Mapping[str, tuple[Synthetic, ...]] = {"dense": DENSE, "moe": MOE, "vlm": VLM}


def all_cases() -> tuple[Synthetic, ...]:
    return tuple(case for cases in CASES.values() for case in cases)
