"""The dense kind's layout: a Llama-shaped decoder (pre-norm blocks of attention and a gated MLP).

The generated model keeps the checkpoint's own parameter names. What varies between families is decided here, from
the spec's typed features, the reference config class and the checkpoint inventory: which projections carry biases
and whether a config flag switches them, how the head dim is read, which attention masks exist, whether q/k norms
are present, and the checkpoint table of the state-dict adapter. Whatever the model has that this layout does not
build is a gap, and ``new`` refuses the model with the list.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automodel_onboard.layout import checkpoint
from automodel_onboard.layout.checkpoint import LAYER, CheckpointTensor, TensorTable
from automodel_onboard.layout.common import (
    NEMO_COMMON,
    AttentionLayout,
    ClassNames,
    ComparedModule,
    Import,
    LocalConfig,
    MlpLayout,
    attention_layout,
    class_names,
    declared_config_fields,
    local_config,
    merged,
    mlp_layout,
    trait_gaps,
    without,
)
from automodel_onboard.model.behaviour import EMBEDDING_DROPOUT, RESIDUAL_DROPOUT

if TYPE_CHECKING:
    from automodel_onboard.model.spec import ArchSpec

TIED_WEIGHTS = "nemo_automodel.shared.tied_weights"

# The NeMo AutoModel symbols every text kind's rendered files import (model, adapter and tests), each from the module
# that defines it in NeMo AutoModel 0.7.0; a destination must provide all of its kind's.
TEXT_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("nemo_automodel", "NeMoAutoModelForCausalLM"),
    # The LoRA test applies NeMo's LoRA as the PEFT recipe configures it.
    ("nemo_automodel.components._peft.lora", "PeftConfig"),
    ("nemo_automodel.components._peft.lora", "apply_lora_to_linear_modules"),
    ("nemo_automodel.components._peft.module_matcher", "wildcard_match"),
    ("nemo_automodel.components.checkpoint.checkpointing", "Checkpointer"),
    ("nemo_automodel.components.checkpoint.config", "CheckpointingConfig"),
    ("nemo_automodel._transformers.model_capabilities", "query_capabilities"),
    ("nemo_automodel._transformers.capabilities", "validate_for_mesh"),
    ("nemo_automodel._transformers.registry", "ModelRegistry"),
    ("nemo_automodel.components.checkpoint.state_dict_adapter", "StateDictAdapter"),
    ("nemo_automodel.components.checkpoint.stateful_wrappers", "ModelState"),
    (NEMO_COMMON, "BackendConfig"),
    (NEMO_COMMON, "HFCheckpointingMixin"),
    (NEMO_COMMON, "compute_lm_head_logits"),
    (NEMO_COMMON, "initialize_linear_module"),
    (NEMO_COMMON, "initialize_rms_norm_module"),
    (TIED_WEIGHTS, "TieSupport"),
    ("nemo_automodel.shared.utils", "dtype_from_str"),
)
# What the multi-process tests import (every kind has them).
MULTI_PROCESS_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("nemo_automodel._transformers.infrastructure", "parallelize_for_pp"),
    ("nemo_automodel.components.distributed.config", "FSDP2Config"),
    ("nemo_automodel.components.distributed.mesh", "MeshContext"),
    ("nemo_automodel.components.distributed.mesh", "ParallelismSizes"),
    ("nemo_automodel.components.distributed.model_parallelizer", "parallelize_model"),
    ("nemo_automodel.components.distributed.pipelining", "AutoPipeline"),
    ("nemo_automodel.components.distributed.tp_replicas", "synchronize_tp_replica_gradients"),
)
# What a parallelization.py imports (the kinds with a tensor-parallel plan).
TENSOR_PARALLEL_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("nemo_automodel.components.distributed", "ModelParallelizer"),
    ("nemo_automodel.components.distributed.optimized_tp_plans", "VocabParallelEmbedding"),
    ("nemo_automodel.components.distributed.parallel_styles", "ReplicatedWithGradAllReduce"),  # per-head q/k norms
)
# What the recipe-run test imports (the text kinds whose example recipe is run for real).
RECIPE_LOADER_SYMBOLS: tuple[tuple[str, str], ...] = (
    ("nemo_automodel.cli.utils", "resolve_recipe_name"),
    ("nemo_automodel.components.config._arg_parser", "parse_args_and_load_config"),
    ("nemo_automodel.components.launcher.interactive", "resolve_recipe_cls"),
)
RECIPE_RUN_SYMBOLS = (
    *RECIPE_LOADER_SYMBOLS,
    ("nemo_automodel.recipes.llm.train_ft", "TrainFinetuneRecipeForNextTokenPrediction"),
)
# What the dense kind imports: the context-parallel test and the recipe-run test besides.
NEMO_SYMBOLS: tuple[tuple[str, str], ...] = (
    *TEXT_SYMBOLS,
    *MULTI_PROCESS_SYMBOLS,
    *TENSOR_PARALLEL_SYMBOLS,
    ("nemo_automodel.components.distributed.context_parallel", "ContextParallelSharder"),
    *RECIPE_RUN_SYMBOLS,
)

# Traits (features.Trait keys) the dense template builds; every other trait of a model is a gap. The scaling
# multipliers are config fields the shared decoder reads (Granite's); partial rotary and latent attention are built by
# the shared decoder too, but only kinds with a verified family claim them.
IMPLEMENTED_TRAITS: frozenset[str] = frozenset(
    {"embedding_multiplier", "attention_multiplier", "residual_multiplier", "logits_scaling"}
)
# What the dense decoder builds besides (Gemma's habits), each verified by its generated suites: the reference's own
# RMSNorm class where it scales by 1 + weight, embeddings scaled by sqrt(hidden_size), norms around both blocks'
# outputs, soft-capped attention scores and logits, the query_pre_attn_scalar softmax scale, one RoPE per layer type.
DENSE_TRAITS: frozenset[str] = IMPLEMENTED_TRAITS | {
    "layernorm",  # where the reference's own LayerNorm class is measured and reused
    "partial_rotary",
    "parallel_block",
    "rope_pairs",
    "pair_rotation",
    "nope_layer_types",  # the layer types whose attention skips RoPE (measured), by config.layer_types
    "logit_scale",
    "fused_qkv",  # a qkv_proj / gate_up_proj checkpoint kept fused (other fused names stay tensor gaps)
    "fused_gate_up",
    "norm_offset",
    "embedding_normalizer",
    "sandwich_norms",
    "attention_softcapping",
    "logit_softcapping",
    "query_pre_attn_scalar",
    "rope_per_layer_type",
    "qkv_clipping",  # where the attention layout clamps q/k/v (a gap otherwise)
    "residual_dropout",  # where the reference applies it (measured), on each branch's output
    "embedding_dropout",
}
# Each scaling trait and the decoder layout field whose expression applies it.
SCALINGS: tuple[tuple[str, str], ...] = (
    ("embedding_multiplier", "embedding_scale"),
    ("residual_multiplier", "residual_scale"),
    ("logits_scaling", "logits_divisor"),
    ("logit_scale", "logits_multiplier"),
)

# Dimension symbols of checkpoint tensor shapes, as Python expressions over ``config`` (and the head dim).
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("vocab", "config.vocab_size"),
    ("hidden", "config.hidden_size"),
    ("intermediate", "config.intermediate_size"),
    ("q", "config.num_attention_heads * head_dim"),
    ("kv", "config.num_key_value_heads * head_dim"),
    ("qkv", "(config.num_attention_heads + 2 * config.num_key_value_heads) * head_dim"),
    ("intermediate2", "2 * config.intermediate_size"),
    ("head_dim", "head_dim"),
    ("heads", "config.num_attention_heads"),
)

# Every tensor the dense template builds, in checkpoint names (the model's are the same): (name, shape symbols).
TENSORS = TensorTable(
    global_tensors=(
        ("model.embed_tokens.weight", ("vocab", "hidden")),
        ("model.norm.weight", ("hidden",)),
        ("model.norm.bias", ("hidden",)),
        ("lm_head.weight", ("vocab", "hidden")),
        ("lm_head.bias", ("vocab",)),
    ),
    layer_tensors=(
        ("input_layernorm.weight", ("hidden",)),
        ("input_layernorm.bias", ("hidden",)),
        ("self_attn.q_proj.weight", ("q", "hidden")),
        ("self_attn.q_proj.bias", ("q",)),
        ("self_attn.qkv_proj.weight", ("qkv", "hidden")),
        ("self_attn.k_proj.weight", ("kv", "hidden")),
        ("self_attn.k_proj.bias", ("kv",)),
        ("self_attn.v_proj.weight", ("kv", "hidden")),
        ("self_attn.v_proj.bias", ("kv",)),
        ("self_attn.o_proj.weight", ("hidden", "q")),
        ("self_attn.o_proj.bias", ("hidden",)),
        ("self_attn.q_norm.weight", ("head_dim",)),
        ("self_attn.k_norm.weight", ("head_dim",)),
        ("self_attn.sinks", ("heads",)),
        ("post_attention_layernorm.weight", ("hidden",)),
        ("post_attention_layernorm.bias", ("hidden",)),
        ("pre_feedforward_layernorm.weight", ("hidden",)),
        ("post_feedforward_layernorm.weight", ("hidden",)),
        ("mlp.gate_proj.weight", ("intermediate", "hidden")),
        ("mlp.gate_up_proj.weight", ("intermediate2", "hidden")),
        ("mlp.gate_proj.bias", ("intermediate",)),
        ("mlp.up_proj.weight", ("intermediate", "hidden")),
        ("mlp.up_proj.bias", ("intermediate",)),
        ("mlp.down_proj.weight", ("hidden", "intermediate")),
        ("mlp.down_proj.bias", ("hidden",)),
    ),
    layer_prefix="model.layers.{layer}.",
    template="dense",
    always=frozenset({"lm_head.weight"}),
)

# Multi-head latent attention (DeepSeek-V2/V3) in place of the q/k/v/o rows: the tensors of its projections and
# latent norms, shaped by the latent dimension symbols below.
LATENT_ATTENTION: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("self_attn.q_proj.weight", ("q", "hidden")),
    ("self_attn.q_a_proj.weight", ("q_lora", "hidden")),
    ("self_attn.q_a_proj.bias", ("q_lora",)),
    ("self_attn.q_a_layernorm.weight", ("q_lora",)),
    ("self_attn.q_b_proj.weight", ("q", "q_lora")),
    ("self_attn.kv_a_proj_with_mqa.weight", ("kv_a", "hidden")),
    ("self_attn.kv_a_proj_with_mqa.bias", ("kv_a",)),
    ("self_attn.kv_a_layernorm.weight", ("kv_lora",)),
    ("self_attn.kv_b_proj.weight", ("kv_b", "kv_lora")),
    ("self_attn.o_proj.weight", ("hidden", "o")),
    ("self_attn.o_proj.bias", ("hidden",)),
)
LATENT_DIMENSIONS: tuple[tuple[str, str], ...] = (
    *(d for d in DIMENSIONS if d[0] not in ("kv",)),
    ("q_lora", "config.q_lora_rank"),
    ("kv_lora", "config.kv_lora_rank"),
    ("kv_a", "config.kv_lora_rank + config.qk_rope_head_dim"),
    ("kv_b", "config.num_attention_heads * (config.qk_nope_head_dim + config.v_head_dim)"),
    ("o", "config.num_attention_heads * config.v_head_dim"),
)


def with_latent_attention(table: TensorTable) -> TensorTable:
    """The table with latent attention's rows in place of the q/k/v/o projections and per-head q/k norms."""
    kept = tuple((n, s) for n, s in table.layer_tensors if not n.startswith("self_attn."))
    return dataclasses.replace(table, layer_tensors=LATENT_ATTENTION + kept)


# Where a decoder layer's norms sit, by the norms its checkpoint holds (q/k norms aside): before each block (Llama),
# before and after each (Gemma 2 and 3; post_attention_layernorm then normalises the attention output), or after each
# only (OLMo 2). The two placements besides the first are the "sandwich_norms" trait's.
BLOCK_NORMS: tuple[tuple[str, frozenset[str]], ...] = (
    ("pre", frozenset({"input_layernorm", "post_attention_layernorm"})),
    (
        "sandwich",
        frozenset(
            {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"}
        ),
    ),
    ("post", frozenset({"post_attention_layernorm", "post_feedforward_layernorm"})),
    # One norm whose output feeds the attention and the MLP side by side (Cohere): the "parallel_block" trait's.
    ("parallel", frozenset({"input_layernorm"})),
)

FULL_QK_NORM = {
    f"{TENSORS.layer_prefix}self_attn.q_norm.weight": ("q",),
    f"{TENSORS.layer_prefix}self_attn.k_norm.weight": ("kv",),
}

# Compared submodules as (label, path under the top-level model with {layer} for each decoder layer, the layout
# flag that must be set); the reference names them alike.
COMPARED_MODULES: tuple[tuple[str, str, str | None], ...] = (
    ("rotary", "model.rotary_emb", None),
    ("input_norm", "model.layers.{layer}.input_layernorm", "input_layernorm"),
    ("q_norm", "model.layers.{layer}.self_attn.q_norm", "qk_norm"),
    ("k_norm", "model.layers.{layer}.self_attn.k_norm", "qk_norm"),
    ("attention", "model.layers.{layer}.self_attn", None),
    ("post_attention_norm", "model.layers.{layer}.post_attention_layernorm", "post_attention_layernorm"),
    ("pre_feedforward_norm", "model.layers.{layer}.pre_feedforward_layernorm", "pre_feedforward_layernorm"),
    ("post_feedforward_norm", "model.layers.{layer}.post_feedforward_layernorm", "post_feedforward_layernorm"),
    ("mlp", "model.layers.{layer}.mlp", None),
    ("decoder_layer", "model.layers.{layer}", None),
    ("final_norm", "model.norm", None),
)


CAPABILITIES: tuple[tuple[str, bool], ...] = (
    ("supports_tp", False),
    ("supports_cp", False),
    ("supports_pp", False),
    ("supports_ep", False),
)

# Tensor parallelism as NeMo AutoModel's own plans for Llama-shaped decoders shard it: column-wise into the heads and
# the MLP width, row-wise back out, the embedding and the head over the vocabulary. Rows: (module path, ``*`` for
# every layer; style, a constructor of the generated parallelization.py; the attention layout flag it needs).
TENSOR_PARALLEL: tuple[tuple[str, str, str | None], ...] = (
    ("model.embed_tokens", "vocab_embedding", None),
    ("model.layers.*.self_attn.q_proj", "colwise", None),
    ("model.layers.*.self_attn.k_proj", "colwise", None),
    ("model.layers.*.self_attn.v_proj", "colwise", None),
    # A rank holds whole heads, so per-head norms run unchanged; their weights see only its heads' gradients.
    ("model.layers.*.self_attn.q_norm", "replicated_grad_sum", "qk_norm"),
    ("model.layers.*.self_attn.k_norm", "replicated_grad_sum", "qk_norm"),
    ("model.layers.*.self_attn.o_proj", "rowwise", None),
    ("model.layers.*.mlp.gate_proj", "colwise", "gated"),
    ("model.layers.*.mlp.up_proj", "colwise", None),
    ("model.layers.*.mlp.down_proj", "rowwise", None),
    ("lm_head", "vocab_colwise", None),
)


def tensor_parallel(
    attention: AttentionLayout, kv_heads: int | None, mlp: MlpLayout | None = None
) -> tuple[tuple[str, str], ...]:
    """The decoder's tensor-parallel plan as (module path, style); empty where splitting heads changes the math.

    Norms across all heads, a latent shared by the heads and per-head sink logits would each need their own
    sharding; a single key/value head cannot be split at all (NeMo AutoModel refuses such a TP mesh); fused q/k/v or
    gate/up projections would be cut across their parts.
    """
    fused = attention.fused_qkv or (mlp is not None and mlp.fused_gate_up)
    if attention.qk_norm_full or attention.latent is not None or attention.sinks or (kv_heads or 0) < 2 or fused:
        return ()
    flags = {"qk_norm": attention.qk_norm, "gated": mlp is None or mlp.gated}
    return tuple((path, style) for path, style, needs in TENSOR_PARALLEL if needs is None or flags[needs])


def pipeline_parallel(spec: ArchSpec, fields: dict[str, Any]) -> bool:
    """Whether NeMo AutoModel's pipeline stages compute this model: they run their own generic forwards around the
    decoder layers, which neither scale nor drop out the embeddings, nor scale the logits, and pick each layer's mask
    by its ``attention_type`` (a window the config sets on every layer through ``sliding_window`` alone would get the
    full mask)."""
    scaled = any(
        fields.get(f)
        for f in ("embedding_scale", "embedding_dropout", "logits_divisor", "logits_softcap", "logits_multiplier")
    )
    # Their rotary module computes one table for all layers.
    scaled = scaled or fields["attention"].rope_per_layer_type
    one_window = fields["attention"].sliding == "all_layers" and spec.features.attention.sliding_window != "none"
    return not (scaled or one_window)


def context_parallel(spec: ArchSpec, attention: AttentionLayout, reference_attention: tuple[str, ...]) -> bool:
    """Whether torch's ring attention computes this model's attention: causal SDPA without sinks or a latent, and no
    layer of the config attending through a window (the ring has no mask)."""
    plain = spec.features.attention.sliding_window == "none" and not attention.sinks and attention.latent is None
    plain = plain and not attention.softcap  # the ring runs SDPA, which has no soft-capping
    return plain and "sdpa" in reference_attention


def capabilities(**verified: bool) -> tuple[tuple[str, bool], ...]:
    """ModelCapabilities with the given flags set (the rest False)."""
    return tuple((name, verified.get(name, False)) for name, _ in CAPABILITIES)


@dataclass(frozen=True)
class DenseLayout:
    config_class: str
    reference_class: str
    reference_alias: str  # the reference class's name in generated tests (it often equals the NeMo class's)
    classes: ClassNames
    attention: AttentionLayout
    mlp: MlpLayout
    norm_eps: str | None  # expression; None: the norms take no epsilon (norm_weightless)
    padding_idx: str  # expression
    tied: bool  # the reference config ties lm_head to the embedding (it is then absent from the checkpoint)
    tensors: tuple[CheckpointTensor, ...]
    probe: str  # a per-layer checkpoint tensor the generated adapter tests tamper with
    dimensions: tuple[tuple[str, str], ...]
    compared_modules: tuple[ComparedModule, ...]
    model_imports: tuple[Import, ...]  # transformers
    model_nemo_imports: tuple[Import, ...]  # NeMo AutoModel (the generated adapter's import is added by the template)
    gaps: tuple[str, ...]  # what the reference has that the generated model does not implement
    local_config: LocalConfig | None = None  # set when the reference is remote code: config.py is rendered
    reference_config_alias: str | None = None  # the remote reference's config class in generated tests
    embedding_scale: str | None = None  # expression multiplying the embeddings (Granite's embedding_multiplier)
    # Only the token lookup is scaled, by the embedding module itself: embeddings passed in are taken as given.
    embedding_lookup_only: bool = False
    residual_scale: str | None = None  # expression scaling each block's output before its residual add
    logits_divisor: str | None = None  # expression dividing the logits (Granite's logits_scaling)
    logits_softcap: str | None = None  # expression: logits pass through ``tanh(x / cap) * cap``
    logits_multiplier: str | None = None  # expression multiplying the logits (Cohere's logit_scale)
    # The config class the top-level model is built from (an image-text model's, holding the text one's).
    model_config: str = ""
    head_bias: bool = False  # the language-model head holds a bias (Phi's)
    # Expressions: the dropout rate on each residual branch's output and on the embeddings, where the reference
    # applies one (measured); the config's dropout fields, which the generated dropout test switches on.
    residual_dropout: str | None = None
    embedding_dropout: str | None = None
    dropout_fields: tuple[str, ...] = ()
    # The reference's own norm class where NeMo AutoModel's norms compute otherwise (``1 + weight``, a LayerNorm, no
    # parameters) or round otherwise on the blocks' outputs, and the value its weights start from; None: NeMo's
    # backend-aware norm.
    norm_class: str | None = None
    norm_weightless: bool = False  # the reference's norm class holds no parameters: built as cls(dim)
    norm_identity: float = 1.0
    norm_bias: bool = False  # the norms hold biases (a LayerNorm's), started at zero
    block_norms: str = "pre"  # where the decoder layer's norms sit (BLOCK_NORMS)
    mask_mapping: bool = False  # the text model takes masks per layer type from its caller (a multimodal model's)
    # The top-level classes are plain modules in NeMo AutoModel's own (MoE) model pattern, not transformers'
    # PreTrainedModel subclasses; they initialise themselves (``initialize_weights``) and do not generate.
    nemo_native: bool = False
    # The attention implementations the reference runs under (transformers'), which the parity tests compare.
    reference_attention: tuple[str, ...] = ("eager", "sdpa")
    embedding: str = "model.embed_tokens.weight"  # the input embedding's name in the model (a tied head's source)
    text_config: str = "config"  # expression: the text model's config, from the model's
    # ModelCapabilities as declared: a flag is True only where a generated test verifies it.
    capabilities: tuple[tuple[str, bool], ...] = CAPABILITIES
    # The tensor-parallel plan the generated parallelization.py lays out (module path, style); empty: none.
    tensor_parallel: tuple[tuple[str, str], ...] = ()
    # The generated suite trains a step under FSDP2 and each declared parallelism on two processes.
    multi_process: bool = False
    # The model's own forwards run pipeline stages (NeMo's MoE and VLM pattern): a stage holds some layers by index,
    # the first the embedding, the last the norm and head.
    stage_aware: bool = False
    parallel_probe: str = ""  # a layer-0 weight the multi-process tests read each rank's share of rows from
    # The generated suite runs the example recipe through NeMo AutoModel's own fine-tuning recipe (on a tiny
    # checkpoint the transformers reference writes).
    recipe_run: bool = False
    # NeMo AutoModel's LoRA targets: the text model's weight matrices in every layer, as module paths with ``*`` for
    # the layer index (the PEFT recipe's ``target_modules``).
    lora_targets: tuple[str, ...] = ()

    experts: bool = False  # the text model routes tokens to grouped experts (NeMo's MoE layer)

    # The docs page's features table, (feature, FEATURE_STATES entry), and its limitations: always computed from
    # the fields above.
    features: tuple[tuple[str, str], ...] = ()
    limitations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        caps = dict(self.capabilities)

        def on_cpu(verified: bool) -> str:
            return FEATURE_STATES[0] if verified else FEATURE_STATES[2]

        table = (
            ("FSDP2", on_cpu(self.multi_process)),
            ("Tensor parallelism", on_cpu(caps["supports_tp"])),
            ("Pipeline parallelism", on_cpu(caps["supports_pp"])),
            ("Context parallelism", FEATURE_STATES[1] if caps["supports_cp"] else FEATURE_STATES[2]),
            ("Expert parallelism", on_cpu(caps["supports_ep"])),
            ("LoRA", on_cpu(bool(self.lora_targets))),
            ("QLoRA", FEATURE_STATES[2]),  # see QLORA_LIMITATION
        )
        limitations = [f"Rendered although the template does not implement it: {gap}." for gap in self.gaps]
        if self.local_config is not None:
            limitations.append(REMOTE_CODE_LIMITATION)
        if self.experts:
            limitations.append(EXPERT_ADAPTERS_LIMITATION)
        object.__setattr__(self, "features", table)
        object.__setattr__(self, "limitations", (*limitations, QLORA_LIMITATION))


# How the docs page states a feature: proven by a generated test on CPU ranks, declared with a generated test that
# needs GPUs (skipped without them), or not offered.
FEATURE_STATES = ("verified on CPU", "declared; its test needs 2 GPUs", "not supported")


# What the docs page says beyond the features table. NeMo AutoModel 0.7.0 builds a registered implementation only
# without quantization: asked for BitsAndBytes, it falls back to the Hugging Face class (tests/test_layout.py checks
# the installed package still does).
QLORA_LIMITATION = (
    "QLoRA is not supported: when a recipe asks for BitsAndBytes quantization, NeMo AutoModel builds the Hugging Face "
    "class instead of this implementation."
)
REMOTE_CODE_LIMITATION = (
    "The reference this implementation was verified against is the checkpoint's own remote code (trust_remote_code)."
)
EXPERT_ADAPTERS_LIMITATION = (
    "LoRA adapts the routed experts too; NeMo AutoModel saves their adapters under the model's own names, not "
    "Hugging Face PEFT's."
)


def lora_targets(tensors: tuple[CheckpointTensor, ...], skip: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The modules holding a matrix in every decoder layer (linears, grouped experts), as LoRA target paths."""
    layers = TENSORS.layer_prefix
    found = []
    for row in tensors:
        if row.nemo.startswith(layers) and len(row.shape) == 2:
            module = row.nemo[len(layers) :].rpartition(".")[0]
            if module not in skip:  # a MoE router, which NeMo AutoModel's LoRA does not adapt
                found.append(f"{layers.replace('{layer}', '*')}{module}")
    return tuple(dict.fromkeys(found))


def _model_imports(
    attention: AttentionLayout, config_class: str, local: bool
) -> tuple[tuple[Import, ...], tuple[Import, ...]]:
    """model.py's transformers imports and NeMo AutoModel imports (the generated package's own modules aside)."""
    masks = (
        "create_causal_mask",
        *(("create_chunked_causal_mask",) if attention.chunked else ()),
        *(("create_sliding_window_causal_mask",) if attention.sliding != "none" else ()),
    )
    third_party = (
        *(() if local else (Import("transformers", (config_class,)),)),
        Import("transformers.activations", ("ACT2FN",)),
        Import("transformers.cache_utils", ("Cache", "DynamicCache")),
        Import("transformers.generation", ("GenerationMixin",)),
        Import("transformers.masking_utils", masks),
        Import("transformers.modeling_layers", ("GradientCheckpointingLayer",)),
        Import("transformers.modeling_outputs", ("BaseModelOutputWithPast", "CausalLMOutputWithPast")),
        Import("transformers.modeling_rope_utils", ("ROPE_INIT_FUNCTIONS", "dynamic_rope_update")),
        Import("transformers.modeling_utils", ("ALL_ATTENTION_FUNCTIONS", "PreTrainedModel")),
        Import("transformers.processing_utils", ("Unpack",)),
        Import("transformers.utils", ("TransformersKwargs", "can_return_tuple")),
    )
    nemo = (
        Import(
            NEMO_COMMON,
            (
                "BackendConfig",
                "HFCheckpointingMixin",
                "compute_lm_head_logits",
                "initialize_linear_module",
                "initialize_rms_norm_module",
            ),
        ),
        Import(TIED_WEIGHTS, ("TieSupport",)),
        Import("nemo_automodel.shared.utils", ("dtype_from_str",)),
    )
    return third_party, nemo


def build(spec: ArchSpec, also: frozenset[str] = frozenset()) -> DenseLayout | None:
    """The dense layout of a spec, or None without a reference inventory; ``also``: traits a wrapping kind builds."""
    fields = decoder_fields(spec, TENSORS, DENSE_TRAITS | also)
    if fields is None:
        return None
    heads = spec.features.attention
    # No key/value head count: one per head.
    plan = tensor_parallel(fields["attention"], heads.num_kv_heads or heads.num_heads, fields["mlp"])
    verified = capabilities(
        supports_tp=bool(plan),
        supports_pp=pipeline_parallel(spec, fields),
        supports_cp=context_parallel(spec, fields["attention"], fields["reference_attention"]),
    )
    return DenseLayout(
        **fields,
        tensor_parallel=plan,
        capabilities=verified,
        multi_process=True,
        recipe_run=spec.hf is not None,
        parallel_probe=parallel_probe(fields["tensors"]),
        lora_targets=lora_targets(fields["tensors"]),
    )


def parallel_probe(tensors: tuple[CheckpointTensor, ...]) -> str:
    """Layer 0's query projection, split by rows under FSDP2 and tensor parallelism alike; the output projection
    where latent attention has no query projection."""
    names = {t.nemo for t in tensors}
    found = (f"model.layers.{LAYER}.self_attn.{leaf}.weight" for leaf in ("q_proj", "o_proj"))
    return next((name for name in found if name in names), "").replace(LAYER, "0")


def _supports_sdpa(inventory: Any) -> bool:
    probes = getattr(inventory, "probes", None)
    return probes is None or probes.supports_sdpa


def _measured_habits(features: Any, present: set[str]) -> tuple[dict[str, Any], list[Import], list[str]]:
    """Layout fields for what running the reference showed (features.code): its norm class where it scales by
    ``1 + weight``, is a LayerNorm or has no parameters, or sits on the blocks' outputs, and its embedding scaling and
    where it sits; with their imports, and gaps where unbuildable."""
    code, fields, imports, gaps = features.code, {}, [], []
    norm = code.norm if code is not None else None
    # The reference's norm class where NeMo AutoModel's RMSNorm computes otherwise: 1 + weight, or a LayerNorm.
    # Norms on a block's output before it joins the residual stream (sandwich and post norms) are the reference's own
    # too: in bfloat16 NeMo AutoModel's RMSNorm rounds once where transformers' rounds before the weight, and there
    # that ulp lands on the residual stream, twice a layer (GLM-4's layers drifted past bfloat16's tolerance).
    own_class = "norm_offset" in present or "sandwich_norms" in present
    if norm is not None and (own_class or (reuses_norm(norm) and "layernorm" in present)):
        if not norm.uniform:
            gaps.append(f"the reference's layers hold norms of another class than its final norm ({norm.cls.name})")
        elif norm.weightless:  # no parameters: its own class, built as cls(dim)
            fields.update(norm_class=norm.cls.name, norm_weightless=True)
            imports.append(Import(norm.cls.module, (norm.cls.name,)))
        elif norm.identity not in (0.0, 1.0) or norm.bias != norm.builds_bias:
            gaps.append(f"the reference's norms ({norm.cls.name}) cannot be built as cls(dim, eps=eps)")
        elif norm.cls.module.startswith("torch.nn."):  # torch's own (nn.LayerNorm), through ``nn``
            fields.update(norm_class=f"nn.{norm.cls.name}", norm_identity=norm.identity, norm_bias=norm.bias)
        else:
            fields.update(norm_class=norm.cls.name, norm_identity=norm.identity, norm_bias=norm.bias)
            imports.append(Import(norm.cls.module, (norm.cls.name,)))
            if norm.identity == 0:  # the generated _init_weights zeroes them with transformers' initialiser
                imports.append(Import("transformers", ("initialization as init",)))
    if "embedding_normalizer" in present:
        if code is None:
            gaps.append("embedding scaling by sqrt(hidden_size) that could not be measured on the reference")
        else:
            # Where the reference scales inside its embedding module, so does the generated one.
            fields.update(
                embedding_scale="config.hidden_size**0.5", embedding_lookup_only=math.isclose(code.inputs_scale, 1.0)
            )
    return fields, imports, gaps


def _dropout_fields(code: Any, implemented: frozenset[str], fields: frozenset[str]) -> dict[str, Any]:
    """The dropouts the reference applies (measured), where the kind builds them; the test's fields besides."""
    if code is None or not code.dropout_fields or not {"residual_dropout", "embedding_dropout"} <= implemented:
        return {}
    applied = code.dropouts
    return {
        "residual_dropout": next((f"config.{f}" for f in RESIDUAL_DROPOUT if f in applied), None),
        "embedding_dropout": next((f"config.{f}" for f in EMBEDDING_DROPOUT if f in applied), None),
        "dropout_fields": (*code.dropout_fields, *(f for f in ("attention_dropout",) if f in fields)),
    }


def stored_module(path: str, rows: tuple[CheckpointTensor, ...]) -> str:
    """A model module's path in the reference, where the checkpoint stores its tensors under another name."""
    for row in rows:
        if row.renames_only and row.hf and row.nemo.rpartition(".")[0] == path:
            return row.hf[0].rpartition(".")[0]
    return path


def reuses_norm(norm: Any) -> bool:
    """The reference's norm class is reused for what NeMo AutoModel's RMSNorm does not compute: a LayerNorm, or a
    norm without parameters."""
    return norm.centred or norm.weightless


def reference_fields(spec: ArchSpec) -> frozenset[str]:
    """The fields the reference config class declares (its model reads no others)."""
    if spec.hf is not None:
        return declared_config_fields(spec.hf["config_class"])
    return frozenset(spec.remote_code["config_defaults"]) if spec.remote_code is not None else frozenset()


def decoder_fields(
    spec: ArchSpec,
    table: TensorTable,
    implemented: frozenset[str],
    groups: dict[str, tuple[int, ...]] | None = None,
    gaps: tuple[str, ...] = (),
    sizes: dict[str, int | None] | None = None,
) -> dict[str, Any] | None:
    """The decoder layout every text kind shares, as DenseLayout's fields; None without a reference inventory.

    ``table`` and ``groups`` say which tensors the kind builds (and in which layers); ``gaps`` are the kind's own,
    ``sizes`` the real sizes of its own dimension symbols (checked against the inventory's shapes).
    """
    hf, remote, inventory = spec.hf, spec.remote_code, spec.inventory
    if inventory is None or (hf is None and remote is None):
        return None
    features = spec.features
    local, config_gaps = None, ()
    if hf is not None:
        config_class, reference_class = hf["config_class"], hf["model_class"]
        fields = declared_config_fields(config_class)
    else:
        local, config_gaps = local_config(spec.class_prefix, spec.model_type, remote)
        config_class, reference_class = local.class_name, remote["model_class"].partition(".")[2]
        fields = frozenset(f.name for f in local.fields)
    names = [t.name for t in inventory.tensors]
    att = features.attention
    if att.latent is not None:
        table = with_latent_attention(table)
    rows, tensor_gaps = checkpoint.match(table, names, features.num_layers or 0, groups)
    if features.attention.qk_norm == "full":  # q/k norms over all heads: as wide as the projections
        rows = tuple(dataclasses.replace(r, shape=FULL_QK_NORM.get(r.nemo, r.shape)) for r in rows)
    prefix = table.layer_prefix
    layer0 = frozenset(r.nemo[len(prefix) :] for r in rows if r.nemo.startswith(prefix) and r.layers == "all")
    dims = {
        "vocab": features.vocab_size,
        "hidden": features.hidden_size,
        "intermediate": features.mlp.intermediate_size,
        "q": (att.num_heads or 0) * (att.head_dim or 0) or None,
        "kv": (att.num_kv_heads or 0) * (att.head_dim or 0) or None,
        "qkv": ((att.num_heads or 0) + 2 * (att.num_kv_heads or 0)) * (att.head_dim or 0) or None,
        "intermediate2": 2 * (features.mlp.intermediate_size or 0) or None,
        "head_dim": att.head_dim,
        "heads": att.num_heads,
    }
    if att.latent is not None:
        lat = att.latent
        qk_head = (lat.qk_nope_head_dim or 0) + (lat.qk_rope_head_dim or 0)
        dims.update(
            q=(att.num_heads or 0) * qk_head or None,
            head_dim=qk_head or None,
            q_lora=lat.q_lora_rank,
            kv_lora=lat.kv_lora_rank,
            kv_a=lat.kv_lora_rank + (lat.qk_rope_head_dim or 0),
            kv_b=(att.num_heads or 0) * ((lat.qk_nope_head_dim or 0) + (lat.v_head_dim or 0)) or None,
            o=(att.num_heads or 0) * (lat.v_head_dim or 0) or None,
        )
    dims.update(sizes or {})
    # What the model is comes first, then what its checkpoint shows of it.
    built = trait_gaps(features, implemented)
    if "self_attn.qkv_proj.weight" in layer0 and "self_attn.q_norm.weight" in layer0:
        built.append(f"the {table.template} template builds fused q/k/v without q/k norms")
    code_norm = features.code.norm if features.code is not None else None
    reused = code_norm is not None and reuses_norm(code_norm) and "layernorm" in implemented
    weightless = reused and code_norm.weightless  # type: ignore[union-attr]
    if (features.norm.type != "rms" and not reused) or not (features.norm.eps_attr or weightless):
        built.append(
            f"the {table.template} template builds RMSNorm with a config epsilon; this model normalises differently"
        )
    all_gaps = [*built, *gaps, *tensor_gaps, *checkpoint.check_shapes(inventory.tensors, rows, dims, table.template)]
    attention = attention_layout(features, layer0, fields, implemented)
    present = {t.key for t in features.traits} & implemented
    if "qkv_clipping" in present and "clip_qkv" in fields and not attention.clip_qkv:
        all_gaps.append("q/k/v clipping (clip_qkv) with q/k norms, fused projections or latent attention")
    scalings: dict[str, Any] = {
        name: f"config.{trait}" for trait, name in SCALINGS if trait in present and trait in fields
    }
    third_party, nemo = _model_imports(attention, config_class, local is not None)
    code = features.code
    if code is not None and code.logits_scale is not None and math.isclose(code.logits_scale, 1.0):
        # A logit scale in the config that the reference's head does not apply (Cohere 2 Vision's).
        scalings = {k: v for k, v in scalings.items() if k not in ("logits_multiplier", "logits_divisor")}
    scalings.update(_dropout_fields(code, implemented, fields))
    habits, habit_imports, habit_gaps = _measured_habits(features, present)
    scalings.update(habits)
    all_gaps += habit_gaps
    third_party = merged((*third_party, *habit_imports))
    if habits.get("norm_class") and att.latent is None:  # latent attention's own norms stay NeMo's
        nemo = without(nemo, frozenset({"initialize_rms_norm_module"}))
    if "logit_softcapping" in present and "final_logit_softcapping" in fields:
        scalings.update(logits_softcap="config.final_logit_softcapping")
    norms = frozenset(n.removesuffix(".weight") for n in layer0 if re.fullmatch(r"\w+layernorm\.weight", n))
    block_norms = next((placement for placement, names in BLOCK_NORMS if names == norms), None)
    placement_trait = {"sandwich": "sandwich_norms", "post": "sandwich_norms", "parallel": "parallel_block"}
    parallel = "parallel_block" in {t.key for t in features.traits}
    if norms and (
        block_norms is None
        or placement_trait.get(block_norms, "pre") not in implemented | {"pre"}
        or parallel != (block_norms == "parallel")
    ):
        all_gaps.append(
            f"decoder-layer norms {', '.join(sorted(norms))}: no placement the {table.template} kind builds"
        )
    flags = {"qk_norm": attention.qk_norm, **{name: name in norms for name in BLOCK_NORMS[1][1]}}
    compared = tuple(
        ComparedModule(label, path, stored_module(path, rows))
        for label, path, needs in COMPARED_MODULES
        if needs is None or flags[needs]
    )
    layer_weights = [
        r.sources[0] for r in rows if r.layers == "all" and r.nemo.startswith(prefix) and r.nemo.endswith(".weight")
    ]
    return {
        "config_class": config_class,
        "model_config": config_class,
        "reference_class": reference_class,
        "reference_alias": f"HF{reference_class}",
        "classes": class_names(spec.class_prefix, spec.architecture),
        "attention": attention,
        "mlp": mlp_layout(features, layer0),
        "norm_eps": None if weightless else f"config.{features.norm.eps_attr or 'rms_norm_eps'}",
        "padding_idx": "config.pad_token_id" if "pad_token_id" in fields else "None",
        "tied": "lm_head.weight" in inventory.tied,
        "head_bias": "lm_head.bias" in names,
        "tensors": rows,
        "probe": layer_weights[-1] if layer_weights else "",
        "dimensions": LATENT_DIMENSIONS if att.latent is not None else DIMENSIONS,
        "compared_modules": compared,
        "model_imports": third_party,
        "model_nemo_imports": nemo,
        "gaps": tuple(dict.fromkeys([*all_gaps, *config_gaps])),
        "local_config": local,
        "reference_config_alias": f"HF{remote['config_class'].partition('.')[2]}" if remote is not None else None,
        "reference_attention": ("eager", "sdpa") if _supports_sdpa(inventory) else ("eager",),
        "block_norms": block_norms or "pre",
        **scalings,
    }
