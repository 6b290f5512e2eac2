"""The MoE kind's layout: the dense decoder with NeMo AutoModel's MoE layer in place of the MLP where the family says.

The routed experts, the router and the shared experts are NeMo AutoModel's own (``MoEConfig``, ``MoE``), so the
generated model gets grouped experts and NeMo's dispatchers; the dense layers of the family keep the dense MLP.
The checkpoint table carries the family's layout (per-expert tensors stacked, gate and up concatenated, NeMo's
``[E, in, out]`` orientation by a transpose; Mixtral's ``block_sparse_moe.*.w1/w3/w2`` renamed). The router settings
come from the spec's one MoE schema; what NeMo's layer cannot reproduce exactly is a gap.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from automodel_onboard.layout.checkpoint import CheckpointTensor, TensorTable
from automodel_onboard.layout.common import Import, without
from automodel_onboard.layout.dense import (
    IMPLEMENTED_TRAITS,
    MULTI_PROCESS_SYMBOLS,
    RECIPE_RUN_SYMBOLS,
    TENSORS,
    TEXT_SYMBOLS,
    DenseLayout,
    capabilities,
    decoder_fields,
    lora_targets,
    parallel_probe,
    pipeline_parallel,
    reference_fields,
)
from automodel_onboard.model.features import Moe
from automodel_onboard.model.fields import ALIASES

if TYPE_CHECKING:
    from automodel_onboard.model.spec import ArchSpec

MOE_CONFIG = "nemo_automodel.components.moe.config"
MOE_LAYERS = "nemo_automodel.components.moe.layers"
MOE_MIXIN = "nemo_automodel.components.moe.fsdp_mixin"
MOE_PARALLELIZER = "nemo_automodel.components.moe.parallelizer"
NEMO_UTILS = "nemo_automodel.components.models.common.utils"
# What a MoE text model adds, in any kind that holds one.
EXPERT_SYMBOLS: tuple[tuple[str, str], ...] = (
    (MOE_CONFIG, "MoEConfig"),
    (MOE_LAYERS, "MoE"),
    (MOE_MIXIN, "MoEFSDPSyncMixin"),
    (MOE_PARALLELIZER, "apply_ep"),  # the generated expert-parallel test shards the experts with it
)
NEMO_MOE_SYMBOLS: tuple[tuple[str, str], ...] = (
    *TEXT_SYMBOLS,
    *MULTI_PROCESS_SYMBOLS,
    *RECIPE_RUN_SYMBOLS,
    (NEMO_UTILS, "cast_model_to_dtype"),
    *EXPERT_SYMBOLS,
)


def _experts(prefix: str, gate: str, up: str, down: str) -> tuple[CheckpointTensor, ...]:
    """NeMo's grouped expert tensors from one per-expert naming convention of the checkpoint."""
    expert = f"{prefix}.experts.{{expert}}."
    return (
        CheckpointTensor(
            "mlp.experts.gate_and_up_projs",
            ("moe", "hidden"),
            hf=(f"{expert}{gate}.weight", f"{expert}{up}.weight"),
            split=("moe", "moe"),
            transpose=True,
        ),
        CheckpointTensor("mlp.experts.down_projs", ("hidden", "moe"), hf=(f"{expert}{down}.weight",), transpose=True),
    )


def _shared(prefix: str) -> tuple[CheckpointTensor, ...]:
    return tuple(
        CheckpointTensor(f"mlp.shared_experts.{p}.weight", shape, hf=(f"{prefix}.{p}.weight",))
        for p, shape in (
            ("gate_proj", ("shared", "hidden")),
            ("up_proj", ("shared", "hidden")),
            ("down_proj", ("hidden", "shared")),
        )
    )


# The MoE layers' tensors under every checkpoint convention the template reads; the rows whose checkpoint names a
# model has are used. Names are below the layer prefix; ``mlp.*`` is the generated model's side.
MOE_ROWS: tuple[CheckpointTensor, ...] = (
    CheckpointTensor("mlp.gate.weight", ("experts", "hidden")),
    CheckpointTensor("mlp.gate.weight", ("experts", "hidden"), hf=("block_sparse_moe.gate.weight",)),
    CheckpointTensor("mlp.gate.weight", ("experts", "hidden"), hf=("block_sparse_moe.router.layer.weight",)),
    CheckpointTensor("mlp.gate.weight", ("experts", "hidden"), hf=("mlp.router.weight",)),
    CheckpointTensor("mlp.gate.bias", ("experts",)),
    CheckpointTensor("mlp.gate.bias", ("experts",), hf=("mlp.router.bias",)),
    # DeepSeek-V3's load-balancing bias: added to the scores for choosing experts only, kept in float32.
    CheckpointTensor("mlp.gate.e_score_correction_bias", ("experts",)),
    *_experts("mlp", "gate_proj", "up_proj", "down_proj"),
    *_experts("block_sparse_moe", "w1", "w3", "w2"),
    # Granite-MoE stores every expert in one tensor, gate rows above up rows: [E, 2I, H] and [E, H, I].
    CheckpointTensor(
        "mlp.experts.gate_and_up_projs",
        ("experts", "moe2", "hidden"),
        hf=("block_sparse_moe.input_linear.weight",),
        transpose=True,
    ),
    CheckpointTensor(
        "mlp.experts.down_projs",
        ("experts", "hidden", "moe"),
        hf=("block_sparse_moe.output_linear.weight",),
        transpose=True,
    ),
    # GPT-OSS stores its experts stacked as NeMo holds them ([E, in, out]; gate and up interleaved), with biases.
    CheckpointTensor("mlp.experts.gate_and_up_projs", ("experts", "hidden", "moe2"), hf=("mlp.experts.gate_up_proj",)),
    CheckpointTensor("mlp.experts.gate_up_proj_bias", ("experts", "moe2")),
    CheckpointTensor("mlp.experts.down_projs", ("experts", "moe", "hidden"), hf=("mlp.experts.down_proj",)),
    CheckpointTensor("mlp.experts.down_proj_bias", ("experts", "hidden")),
    # Llama 4: a router module, every expert in one tensor as NeMo holds them ([E, in, out], gate half first).
    CheckpointTensor("mlp.gate.weight", ("experts", "hidden"), hf=("feed_forward.router.weight",)),
    CheckpointTensor(
        "mlp.experts.gate_and_up_projs", ("experts", "hidden", "moe2"), hf=("feed_forward.experts.gate_up_proj",)
    ),
    CheckpointTensor("mlp.experts.down_projs", ("experts", "moe", "hidden"), hf=("feed_forward.experts.down_proj",)),
    *_shared("feed_forward.shared_expert"),
    *_shared("mlp.shared_expert"),  # Qwen2-MoE names its one shared expert in the singular
    *_shared("mlp.shared_experts"),
    CheckpointTensor("mlp.shared_expert_gate.weight", ("one", "hidden")),
)
DENSE_ROWS: tuple[CheckpointTensor, ...] = tuple(
    CheckpointTensor(name, shape, hf=hf)
    for name, shape in TENSORS.layer_tensors
    if name.startswith("mlp.")
    # Llama 4 names its dense layers' MLP feed_forward, as it does its MoE blocks.
    for hf in ((), (name.replace("mlp.", "feed_forward.", 1),))
)
# Traits the MoE template builds beyond the dense ones: partial rotary (GLM-4.5), attention sinks (GPT-OSS) and the
# multi-token prediction layers of a checkpoint, which it recognises and does not build (as transformers does).
MOE_TRAITS: frozenset[str] = IMPLEMENTED_TRAITS | {
    "partial_rotary",
    "multi_token_prediction",
    "attention_sinks",
    "layernorm",  # the reference's own LayerNorm class, measured and reused as the dense decoder does
    "pair_rotation",  # GLM's RoPE layout, as the dense decoder builds it
    "rope_pairs",  # Cohere's and Llama 4's (complex tables, one angle per adjacent pair), as the dense decoder does
    "nope_layer_types",
    # Llama 4's: chunked local attention, its query temperature on NoPE layers, q/k divided by their RMS, and
    # tokens scaled by their router score before their expert (one expert per token).
    "chunked_attention",
    "temperature_tuning",
    "unit_qk_norm",
    "routed_input_scale",
}
MOE_TENSORS = TensorTable(
    global_tensors=TENSORS.global_tensors,
    layer_tensors=tuple((n, s) for n, s in TENSORS.layer_tensors if not n.startswith("mlp.")),
    layer_prefix=TENSORS.layer_prefix,
    template="moe",
    always=TENSORS.always,
    groups={"dense": DENSE_ROWS, "moe": MOE_ROWS},
)

# How a family places its MoE layers, by the config fields its reference config class declares: (field, the test
# a MoE layer ``i`` passes). The tests combine; a family with none of the fields has MoE layers only.
PLACEMENT: tuple[tuple[str, str], ...] = (
    ("first_k_dense_replace", "i >= config.first_k_dense_replace"),
    ("moe_layer_freq", "(i - config.first_k_dense_replace) % config.moe_layer_freq == 0"),
    ("decoder_sparse_step", "(i + 1) % config.decoder_sparse_step == 0"),
    ("mlp_only_layers", "i not in config.mlp_only_layers"),
    ("mlp_layer_types", 'config.mlp_layer_types[i] == "sparse"'),
    ("moe_layers", "i in config.moe_layers"),
)


@dataclass(frozen=True)
class LayerGroup:
    name: str
    condition: str  # a Python expression over ``config`` and the layer index ``i``


@dataclass(frozen=True)
class MoeLayout(DenseLayout):
    moe_args: tuple[tuple[str, str], ...] = ()  # MoEConfig keyword arguments as expressions over ``config``
    layer_groups: tuple[LayerGroup, ...] = ()
    experts: bool = True
    router: str = "model.layers.{layer}.mlp.gate"  # the reference's router module (its output: indices and weights)
    router_fp32: bool = False  # the reference projects and scores the router in float32
    correction_bias: bool = False  # the router has a trainable score correction bias (updated after each step)
    mtp_layers: str | None = None  # expression: checkpoint layers after the last one that the model does not build
    # Linear modules inside NeMo's MoE layer that its own ``init_weights`` leaves as allocated (0.7.0's gate).
    moe_uninitialised: tuple[str, ...] = ()
    routed_input_scaled: bool = False  # each token scaled by its router score before its expert (Llama 4's)


# What only transformers' PreTrainedModel pattern imports, its _init_weights hook included (the MoE kind's classes
# are plain modules).
TRANSFORMERS_MODEL_ONLY = frozenset(
    {"GenerationMixin", "PreTrainedModel", "can_return_tuple", "initialization as init"}
)
# NeMo's router for each family score function: (MoEConfig.score_func, the reference projects in float32).
SCORE_FUNCS: Mapping[str, tuple[str, bool]] = MappingProxyType(
    {
        "softmax": ("softmax", False),
        # DeepSeek-V3's router: sigmoid scores in float32, the correction bias and the group limit for choosing only.
        "sigmoid": ("sigmoid_with_bias", True),
    }
)
# The correction bias moves by this much per optimiser step, against each expert's load (DeepSeek-V3's speed).
GATE_BIAS_UPDATE = "1e-3"
# NeMo's expert activation for each of the reference's, by whether its gate and up rows are interleaved.
EXPERT_ACTIVATIONS: Mapping[tuple[str, bool], str] = MappingProxyType(
    {
        ("swiglu", False): "swiglu",
        ("clamped_glu", True): "quick_geglu",
        ("clamped_glu", False): "swigluoai",
    }
)


def _attr(fact: str, fields: frozenset[str]) -> str | None:
    """The config attribute that carries ``fact`` in this family (read by the generated code), if it declares one."""
    return next((f"config.{k}" for k in ALIASES.get(fact, (fact,)) if "." not in k and k in fields), None)


def _in_memory(model_type: str, checkpoint_name: str) -> str:
    """A checkpoint tensor's name in the reference model: transformers' declared renames applied."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    name = checkpoint_name
    for rule in get_checkpoint_conversion_mapping(model_type) or ():
        if type(rule).__name__ == "WeightRenaming":
            for source, target in zip(rule.source_patterns, rule.target_patterns, strict=False):
                name = re.sub(source, target, name)
    return name


def _negated(condition: str) -> str:
    """``not (condition)``, a single membership test written as ruff wants it."""
    member = re.fullmatch(r"i in (config\.\w+)", condition)
    return f"i not in {member.group(1)}" if member else f"not ({condition})"


def _routing_gaps(moe: Moe, renormalise: bool) -> list[str]:
    gaps = []
    if moe.score_func not in SCORE_FUNCS:
        gaps.append(f"{moe.score_func} router scores: the moe template routes by {' or '.join(SCORE_FUNCS)} scores")
    if moe.score_func == "softmax" and moe.correction_bias:
        gaps.append("a score correction bias on softmax scores: NeMo AutoModel's router adds it to sigmoid scores")
    if moe.score_func == "softmax" and ((moe.n_group or 1) > 1 or (moe.topk_group or 1) > 1):
        gaps.append("grouped expert routing (n_group / topk_group) on softmax scores: NeMo groups sigmoid scores")
    if moe.top_k == 1 and renormalise:
        gaps.append("top-1 routing with renormalised weights: NeMo's router leaves a single weight as scored")
    if moe.router_bias and moe.score_func != "softmax":
        gaps.append(f"a router bias with {moe.score_func} scores")
    if moe.input_scaled and (moe.top_k or 1) > 1:
        gaps.append("tokens scaled by their router scores before top-k > 1 experts: each expert needs its own input")
    return gaps


def _activation_gaps(moe: Moe, hidden_act: str) -> list[str]:
    if (moe.expert_activation, moe.gate_up_interleaved) not in EXPERT_ACTIVATIONS:
        interleaved = " (gate and up interleaved)" if moe.gate_up_interleaved else ""
        return [f"experts computing a {moe.expert_activation} activation{interleaved}: no NeMo expert activation"]
    if moe.expert_activation == "swiglu" and hidden_act != "silu":
        return [f"experts with {hidden_act}: NeMo AutoModel's experts are SwiGLU"]
    return []


def _activation_args(moe: Moe) -> tuple[tuple[str, str], ...]:
    """MoEConfig's expert activation and, for a clamped GLU, its slope and clamp as the reference sets them."""
    activation = EXPERT_ACTIVATIONS.get((moe.expert_activation, moe.gate_up_interleaved), "swiglu")
    if activation == "swiglu":
        return ()
    return (
        ("expert_activation", f'"{activation}"'),
        ("activation_alpha", repr(moe.activation_alpha)),
        ("activation_limit", repr(moe.activation_limit)),
    )


def build(spec: ArchSpec, also: frozenset[str] = frozenset()) -> MoeLayout | None:
    """The MoE layout of a spec, or None without a reference inventory; ``also``: traits a wrapping kind builds."""
    moe = spec.features.moe
    if moe is None:
        fields = decoder_fields(spec, MOE_TENSORS, MOE_TRAITS | also, gaps=("the config has no routed experts",))
        return None if fields is None else MoeLayout(**fields)
    declared = reference_fields(spec)
    # Routers without a norm_topk_prob switch (Mixtral's, Granite's) always renormalise their top-k weights.
    renormalise = _attr("norm_topk_prob", declared) or "True"
    if moe.input_scaled:  # the measured scale is the score itself (a single weight of 1 would leave tokens as they are)
        renormalise = "False"
    gaps = _routing_gaps(moe, moe.norm_topk_prob if renormalise != "True" else True)
    gaps += _activation_gaps(moe, spec.features.mlp.activation)
    moe_layers = tuple(i for i in range(spec.features.num_layers or 0) if i not in moe.dense_layers)
    groups = {"dense": moe.dense_layers, "moe": moe_layers}
    sizes = {
        "experts": moe.num_experts,
        "moe": moe.expert_intermediate_size,
        "moe2": 2 * (moe.expert_intermediate_size or 0) or None,
        "shared": moe.shared_expert_intermediate_size,
    }
    if _attr("dense_intermediate_size", declared):
        sizes.update(intermediate=moe.dense_intermediate_size, intermediate2=2 * (moe.dense_intermediate_size or 0))
    fields = decoder_fields(spec, MOE_TENSORS, MOE_TRAITS | also, groups, tuple(gaps), sizes)
    if fields is None:
        return None
    rows = fields["tensors"]
    names = {r.nemo for r in rows}
    layer = MOE_TENSORS.layer_prefix
    shared = f"{layer}mlp.shared_experts.gate_proj.weight" in names
    correction = f"{layer}mlp.gate.e_score_correction_bias" in names
    score_func, router_fp32 = SCORE_FUNCS.get(moe.score_func, SCORE_FUNCS["softmax"])
    # Llama 4's dense layers have a width of their own (intermediate_size_mlp), its experts intermediate_size.
    expert_width = _attr("intermediate_size", declared) or "config.intermediate_size"
    dense_width = _attr("dense_intermediate_size", declared) or expert_width
    moe_width = _attr("moe_intermediate_size", declared) or expert_width
    experts = _attr("num_experts", declared) or repr(moe.num_experts)
    shared_count = _attr("num_shared_experts", declared) or repr(int(shared))
    shared_width = _attr("shared_expert_intermediate_size", declared)
    condition = " and ".join(test for key, test in PLACEMENT if key in declared) or "True"
    grouped = score_func == "sigmoid_with_bias"
    args = (
        ("dim", "config.hidden_size"),
        ("inter_dim", dense_width),
        ("moe_inter_dim", moe_width),
        ("n_routed_experts", experts),
        ("n_shared_experts", shared_count),
        ("n_activated_experts", _attr("top_k", declared) or repr(moe.top_k)),
        ("n_expert_groups", (_attr("n_group", declared) or "1") if grouped else "0"),
        ("n_limited_groups", (_attr("topk_group", declared) or "1") if grouped else "0"),
        ("train_gate", "True"),
        ("gate_bias_update_factor", GATE_BIAS_UPDATE if correction else "0.0"),
        ("force_e_score_correction_bias", repr(correction)),
        ("aux_loss_coeff", "config.router_aux_loss_coef" if "router_aux_loss_coef" in declared else "0.0"),
        ("score_func", repr(score_func).replace("'", '"')),
        ("softmax_before_topk", repr(score_func == "softmax")),
        ("norm_topk_prob", renormalise),
        ("route_scale", _attr("routed_scaling_factor", declared) or "1.0"),
        ("router_weights_fp32", repr(router_fp32)),
        ("router_bias", repr(f"{layer}mlp.gate.bias" in names)),
        ("expert_bias", repr(f"{layer}mlp.experts.down_proj_bias" in names)),
        *_activation_args(moe),
        # The router weight scales the activation between the projections, NeMo's own order: weighting after the down
        # projection (the reference's order, equal up to rounding) keeps a float32 output row per token and expert,
        # about a tenth of a CPU training step.
        ("apply_router_weight_after_down", "False"),
        ("shared_expert_gate", repr(f"{layer}mlp.shared_expert_gate.weight" in names)),
        ("shared_expert_inter_dim", (shared_width or "None") if shared else "None"),
        ("dtype", "_config_dtype(config)"),
    )
    fields["moe_uninitialised"] = ("shared_expert_gate",) if f"{layer}mlp.shared_expert_gate.weight" in names else ()
    # NeMo's pattern: plain modules, its own weight init and dtype cast, the loss from transformers' function.
    fields["model_imports"] = (
        *without(fields["model_imports"], TRANSFORMERS_MODEL_ONLY),
        Import("transformers.loss.loss_utils", ("ForCausalLMLoss",)),
        *((Import("torch.distributed.device_mesh", ("DeviceMesh",)),) if moe.input_scaled else ()),
    )
    fields["model_nemo_imports"] = (
        *fields["model_nemo_imports"],
        Import(NEMO_UTILS, ("cast_model_to_dtype",)),
        Import(MOE_CONFIG, ("MoEConfig",)),
        Import(MOE_MIXIN, ("MoEFSDPSyncMixin",)),
        Import(MOE_LAYERS, ("MoE",)),
    )
    if dense_width != expert_width:
        fields["mlp"] = dataclasses.replace(fields["mlp"], width=dense_width)
    widths = {"intermediate": dense_width, "intermediate2": f"2 * {dense_width}"}
    fields["dimensions"] = (
        *((symbol, widths.get(symbol, expr)) for symbol, expr in fields["dimensions"]),
        ("experts", experts),
        ("moe", moe_width),
        ("moe2", f"2 * {moe_width}"),
        ("shared", shared_width or f"{shared_count} * {moe_width}"),
        ("one", "1"),
    )
    # The reference's router and MoE block modules (the tests hook them), where its checkpoint has a router row.
    router = MoeLayout.router
    for row in rows:
        if row.nemo == f"{layer}mlp.gate.weight":
            router = _in_memory(spec.model_type, row.sources[0]).removesuffix(".weight")
            block = router.rpartition(".")[0]
            fields["compared_modules"] = tuple(
                dataclasses.replace(c, reference=block) if c.label == "mlp" else c for c in fields["compared_modules"]
            )
    mtp = "multi_token_prediction" in {t.key for t in spec.features.traits}
    # Expert parallelism is NeMo's MoE layer's, and the generated suite runs it. Pipeline stages run the model's own
    # forward, as NeMo's MoE models run theirs; not with extra MTP layers past the decoder's, which NeMo's
    # splitter would count among them.
    pipeline = pipeline_parallel(spec, fields) and not mtp
    return MoeLayout(
        **fields,
        moe_args=args,
        layer_groups=(LayerGroup("dense", _negated(condition)), LayerGroup("moe", condition)),
        router=router,
        router_fp32=router_fp32,
        routed_input_scaled=moe.input_scaled,
        correction_bias=correction,
        mtp_layers=_attr("mtp_layers", declared) if mtp else None,
        nemo_native=True,
        capabilities=capabilities(supports_ep=True, supports_pp=pipeline),
        multi_process=True,
        stage_aware=pipeline,
        parallel_probe=parallel_probe(fields["tensors"]),
        lora_targets=lora_targets(fields["tensors"], skip=frozenset({"mlp.gate"})),
        recipe_run=spec.hf is not None,
    )
