"""The MoE kind's layout: the dense decoder with NeMo AutoModel's MoE layer in place of the MLP where the family says.

The routed experts, the router and the shared experts are NeMo AutoModel's own (``MoEConfig``, ``MoE``), so the
generated model gets grouped experts and NeMo's dispatchers; the dense layers of the family keep the dense MLP.
The checkpoint table carries the family's layout (per-expert tensors stacked, gate and up concatenated, NeMo's
``[E, in, out]`` orientation by a transpose; Mixtral's ``block_sparse_moe.*.w1/w3/w2`` renamed). The router settings
come from the spec's one MoE schema; what NeMo's layer cannot reproduce exactly is a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from automodel_onboard.layout.checkpoint import CheckpointTensor, TensorTable
from automodel_onboard.layout.common import Import
from automodel_onboard.layout.dense import (
    IMPLEMENTED_TRAITS,
    NEMO_SYMBOLS,
    TENSORS,
    DenseLayout,
    decoder_fields,
    reference_fields,
)
from automodel_onboard.model.fields import ALIASES

if TYPE_CHECKING:
    from automodel_onboard.model.spec import ArchSpec

MOE_CONFIG = "nemo_automodel.components.moe.config"
MOE_LAYERS = "nemo_automodel.components.moe.layers"
MOE_MIXIN = "nemo_automodel.components.moe.fsdp_mixin"
NEMO_MOE_SYMBOLS: tuple[tuple[str, str], ...] = (
    *NEMO_SYMBOLS,
    (MOE_CONFIG, "MoEConfig"),
    (MOE_LAYERS, "MoE"),
    (MOE_MIXIN, "MoEFSDPSyncMixin"),
)


def _experts(prefix: str, gate: str, up: str, down: str) -> tuple[CheckpointTensor, ...]:
    """NeMo's grouped expert tensors from one expert naming convention of the checkpoint."""
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
    *_experts("mlp", "gate_proj", "up_proj", "down_proj"),
    *_experts("block_sparse_moe", "w1", "w3", "w2"),
    *_shared("mlp.shared_expert"),  # Qwen2-MoE names its one shared expert in the singular
    *_shared("mlp.shared_experts"),
    CheckpointTensor("mlp.shared_expert_gate.weight", ("one", "hidden")),
)
DENSE_ROWS: tuple[CheckpointTensor, ...] = tuple(
    CheckpointTensor(name, shape) for name, shape in TENSORS.layer_tensors if name.startswith("mlp.")
)
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


def _attr(fact: str, fields: frozenset[str]) -> str | None:
    """The config attribute that carries ``fact`` in this family (read by the generated code), if it declares one."""
    return next((f"config.{k}" for k in ALIASES.get(fact, (fact,)) if "." not in k and k in fields), None)


def build(spec: ArchSpec) -> MoeLayout | None:
    """The MoE layout of a spec, or None without a reference inventory."""
    moe, att = spec.features.moe, spec.features.attention
    if moe is None:
        fields = decoder_fields(spec, MOE_TENSORS, IMPLEMENTED_TRAITS, gaps=("the config has no routed experts",))
        return None if fields is None else MoeLayout(**fields)
    declared = reference_fields(spec)
    gaps = []
    if att.latent is not None:
        gaps.append("multi-head latent attention (kv_lora_rank): the moe template builds standard attention")
    if moe.score_func != "softmax" or moe.correction_bias:
        gaps.append(f"{moe.score_func} routing with a score correction bias: the moe template routes by softmax")
    if (moe.n_group or 1) > 1 or (moe.topk_group or 1) > 1:
        gaps.append("grouped expert routing (n_group / topk_group)")
    if spec.features.mlp.activation != "silu":
        gaps.append(f"experts with {spec.features.mlp.activation}: NeMo AutoModel's experts are SwiGLU")
    moe_layers = tuple(i for i in range(spec.features.num_layers or 0) if i not in moe.dense_layers)
    groups = {"dense": moe.dense_layers, "moe": moe_layers}
    sizes = {
        "experts": moe.num_experts,
        "moe": moe.expert_intermediate_size,
        "shared": moe.shared_expert_intermediate_size,
    }
    fields = decoder_fields(spec, MOE_TENSORS, IMPLEMENTED_TRAITS, groups, tuple(gaps), sizes)
    if fields is None:
        return None
    names = {r.nemo for r in fields["tensors"]}
    layer = MOE_TENSORS.layer_prefix
    shared = f"{layer}mlp.shared_experts.gate_proj.weight" in names
    dense_width = _attr("intermediate_size", declared) or "config.intermediate_size"
    moe_width = _attr("moe_intermediate_size", declared) or dense_width
    experts = _attr("num_experts", declared) or repr(moe.num_experts)
    shared_count = _attr("num_shared_experts", declared) or repr(int(shared))
    shared_width = _attr("shared_expert_intermediate_size", declared)
    condition = " and ".join(test for key, test in PLACEMENT if key in declared) or "True"
    args = (
        ("dim", "config.hidden_size"),
        ("inter_dim", dense_width),
        ("moe_inter_dim", moe_width),
        ("n_routed_experts", experts),
        ("n_shared_experts", shared_count),
        ("n_activated_experts", _attr("top_k", declared) or repr(moe.top_k)),
        ("n_expert_groups", "0"),
        ("n_limited_groups", "0"),
        ("train_gate", "True"),
        ("gate_bias_update_factor", "0.0"),
        ("aux_loss_coeff", "config.router_aux_loss_coef" if "router_aux_loss_coef" in declared else "0.0"),
        ("score_func", '"softmax"'),
        ("softmax_before_topk", "True"),
        # Routers without a norm_topk_prob switch (Mixtral's) always renormalise their top-k weights.
        ("norm_topk_prob", _attr("norm_topk_prob", declared) or "True"),
        ("route_scale", _attr("routed_scaling_factor", declared) or "1.0"),
        ("shared_expert_gate", repr(f"{layer}mlp.shared_expert_gate.weight" in names)),
        ("shared_expert_inter_dim", (shared_width or "None") if shared else "None"),
        ("dtype", "_config_dtype(config)"),
    )
    fields["model_nemo_imports"] = (
        *fields["model_nemo_imports"],
        Import(MOE_CONFIG, ("MoEConfig",)),
        Import(MOE_MIXIN, ("MoEFSDPSyncMixin",)),
        Import(MOE_LAYERS, ("MoE",)),
    )
    fields["dimensions"] = (
        *fields["dimensions"],
        ("experts", experts),
        ("moe", moe_width),
        ("shared", shared_width or f"{shared_count} * {moe_width}"),
        ("one", "1"),
    )
    return MoeLayout(
        **fields,
        moe_args=args,
        layer_groups=(LayerGroup("dense", f"not ({condition})"), LayerGroup("moe", condition)),
    )
