"""The checkpoint table's operations, as the generated adapters run them: every one reverses bit for bit.

The code under test is ``templates/_shared/adapter/checkpoint_table.py``, the block every generated
``state_dict_adapter.py`` includes verbatim; it is loaded here on its own and driven over random shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from automodel_onboard.layout import checkpoint
from automodel_onboard.render.copier_run import package_template

BLOCK = package_template() / "templates" / "_shared" / "adapter" / "checkpoint_table.py"


def load_block() -> dict:
    namespace = {"dataclass": dataclass, "Mapping": Mapping, "Sequence": Sequence, "torch": torch}
    exec(compile(BLOCK.read_text(), str(BLOCK), "exec"), namespace)  # noqa: S102 - this project's own template code
    return namespace


RUNTIME = load_block()
Row = RUNTIME["CheckpointTensor"]


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits, so NaNs and signed zeros compare exactly."""
    return tensor.contiguous().view(torch.int32)


def random_float(shape: Sequence[int], seed: int) -> torch.Tensor:
    # Random 32-bit patterns: every float32 value, NaNs and infinities included.
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**31), 2**31 - 1, tuple(shape), generator=generator, dtype=torch.int32).view(torch.float32)


@st.composite
def cases(draw):
    """A row with a random mix of operations, the dimension sizes it needs, and a layer index."""
    ndim = draw(st.integers(1, 3))
    symbols = [f"d{i}" for i in range(ndim)]
    dims = {s: draw(st.integers(1, 4)) for s in symbols}
    stacked = draw(st.booleans())
    parts = draw(st.integers(1, 3))
    dim = draw(st.integers(0, ndim - 1))
    split = ()
    if parts > 1:
        split = tuple(f"s{i}" for i in range(parts))
        dims.update({s: draw(st.integers(1, 4)) for s in split})
    transpose = draw(st.booleans()) and ndim + stacked >= 2
    expert = ".experts.{expert}" if stacked else ""
    renamed = draw(st.booleans())
    prefix = "language_model.model" if renamed else "model"
    sources = tuple(f"{prefix}.layers.{{layer}}.mlp{expert}.w{i}.weight" for i in range(parts))
    hf = sources if (renamed or stacked or parts > 1) else ()
    if stacked:
        dims["experts"] = draw(st.integers(1, 4))
    row = Row("model.layers.{layer}.mlp.fused.weight", tuple(symbols), hf=hf, split=split, dim=dim, transpose=transpose)
    return row, dims, draw(st.integers(0, 5))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(cases(), st.integers(0, 2**31 - 1))
def test_to_checkpoint_reverses_from_checkpoint_bit_for_bit(case, seed):
    row, dims, layer = case
    _, names = row.names(layer, dims.get("experts", 0))
    shapes = row.part_shapes(dims)
    per_name = len(names) // len(shapes)
    parts = [random_float(shape, seed + i) for i, shape in enumerate(s for s in shapes for _ in range(per_name))]
    model = row.from_checkpoint(parts)
    assert tuple(model.shape) == row.model_shape(dims)
    back = row.to_checkpoint(model, dims)
    assert len(back) == len(parts) == len(names)
    for got, want in zip(back, parts, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert torch.equal(bits(got), bits(want))
        assert got.is_contiguous()


@settings(max_examples=300, derandomize=True, deadline=None)
@given(cases(), st.integers(0, 2**31 - 1))
def test_from_checkpoint_reverses_to_checkpoint_bit_for_bit(case, seed):
    row, dims, _ = case
    model = random_float(row.model_shape(dims), seed)
    back = row.from_checkpoint(row.to_checkpoint(model, dims))
    assert back.shape == model.shape
    assert torch.equal(bits(back), bits(model))


def test_each_operation_alone():
    dims = {"a": 2, "b": 3, "q": 4, "kv": 2, "experts": 3}
    x = torch.arange(6.0).reshape(2, 3)
    rename = Row("model.x.weight", ("a", "b"), hf=("transformer.x.weight",))
    assert rename.names(None, 0) == ("model.x.weight", ["transformer.x.weight"])
    assert torch.equal(rename.from_checkpoint([x]), x)

    stack = Row("model.layers.{layer}.experts.w", ("a", "b"), hf=("model.layers.{layer}.experts.{expert}.w",))
    assert stack.names(1, 3)[1] == [f"model.layers.1.experts.{e}.w" for e in range(3)]
    assert stack.from_checkpoint([x, x + 1, x + 2]).shape == (3, 2, 3)
    assert stack.model_shape(dims) == (3, 2, 3)

    concat = Row("qkv", ("q", "b"), hf=("q", "k", "v"), split=("q", "kv", "kv"))
    parts = [torch.full((n, 3), float(i)) for i, n in enumerate((4, 2, 2))]
    fused = concat.from_checkpoint(parts)
    assert fused.shape == (8, 3) and concat.model_shape(dims) == (8, 3)
    assert [p.shape[0] for p in concat.to_checkpoint(fused, dims)] == [4, 2, 2]

    transpose = Row("w", ("a", "b"), transpose=True)
    assert torch.equal(transpose.from_checkpoint([x]), x.T)
    assert transpose.model_shape(dims) == (3, 2)


def test_runtime_and_layout_records_have_the_same_fields():
    """The layout's rows are rendered as the runtime's constructor calls: the fields must be the same."""
    ours = [(f.name, f.default) for f in dataclasses.fields(checkpoint.CheckpointTensor)]
    theirs = [(f.name, f.default) for f in dataclasses.fields(Row)]
    assert ours == theirs


@pytest.mark.parametrize(
    ("row", "operations"),
    [
        (checkpoint.CheckpointTensor("a", ("x",)), ()),
        (checkpoint.CheckpointTensor("a", ("x",), hf=("b",)), ("rename",)),
        (checkpoint.CheckpointTensor("a", ("x",), hf=("a.{expert}",)), ("rename", "stack")),
        (checkpoint.CheckpointTensor("a", ("x", "y"), hf=("g", "u"), split=("x", "x")), ("rename", "concat")),
        (checkpoint.CheckpointTensor("a", ("x", "y"), transpose=True), ("transpose",)),
    ],
)
def test_operations_are_named(row, operations):
    assert row.operations == operations


def test_block_is_plain_python_for_the_template_engine():
    """It is included into a Jinja template, so it must hold nothing Jinja would interpret."""
    text = BLOCK.read_text()
    assert not any(token in text for token in ("{{", "{%", "{#")), Path(BLOCK).name


# Real MoE checkpoint layouts, as transformers' save_pretrained writes them, mapped by rows onto NeMo AutoModel's
# own MoE layer: (family, config class, model class, config overrides, rows as (nemo, shape, hf, split, transpose)).
L0 = "model.layers.0."
MOE_LAYOUTS = {
    "qwen3_moe (per-expert gate/up/down)": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        {"moe_intermediate_size": 8, "num_experts": 4, "norm_topk_prob": True},
        (
            ("gate.weight", ("experts", "hidden"), (L0 + "mlp.gate.weight",), (), False),
            (
                "experts.gate_and_up_projs",
                ("moe", "hidden"),
                (L0 + "mlp.experts.{expert}.gate_proj.weight", L0 + "mlp.experts.{expert}.up_proj.weight"),
                ("moe", "moe"),
                True,
            ),
            ("experts.down_projs", ("hidden", "moe"), (L0 + "mlp.experts.{expert}.down_proj.weight",), (), True),
        ),
    ),
    "mixtral (renamed block_sparse_moe w1/w3/w2)": (
        "MixtralConfig",
        "MixtralForCausalLM",
        {"intermediate_size": 8, "num_local_experts": 4},
        (
            ("gate.weight", ("experts", "hidden"), (L0 + "block_sparse_moe.gate.weight",), (), False),
            (
                "experts.gate_and_up_projs",
                ("moe", "hidden"),
                (
                    L0 + "block_sparse_moe.experts.{expert}.w1.weight",
                    L0 + "block_sparse_moe.experts.{expert}.w3.weight",
                ),
                ("moe", "moe"),
                True,
            ),
            ("experts.down_projs", ("hidden", "moe"), (L0 + "block_sparse_moe.experts.{expert}.w2.weight",), (), True),
        ),
    ),
    "granitemoe (fused, stacked on disk)": (
        "GraniteMoeConfig",
        "GraniteMoeForCausalLM",
        {"intermediate_size": 8, "num_local_experts": 4},
        (
            ("gate.weight", ("experts", "hidden"), (L0 + "block_sparse_moe.router.layer.weight",), (), False),
            (
                "experts.gate_and_up_projs",
                ("experts", "moe2", "hidden"),
                (L0 + "block_sparse_moe.input_linear.weight",),
                (),
                True,
            ),
            (
                "experts.down_projs",
                ("experts", "hidden", "moe"),
                (L0 + "block_sparse_moe.output_linear.weight",),
                (),
                True,
            ),
        ),
    ),
}


@pytest.mark.parametrize("family", list(MOE_LAYOUTS))
def test_rows_carry_real_moe_checkpoints_into_nemo_grouped_experts_and_back(family, tmp_path):
    """A saved checkpoint's experts, converted by the rows, load into NeMo AutoModel's MoE layer, which then computes
    what the reference's sparse block computes; converting back gives the saved tensors bit for bit."""
    import transformers
    from nemo_automodel.components.models.common import BackendConfig
    from nemo_automodel.components.moe.config import MoEConfig
    from nemo_automodel.components.moe.layers import MoE
    from safetensors.torch import load_file

    config_name, model_name, overrides, table = MOE_LAYOUTS[family]
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}
    config = getattr(transformers, config_name)(vocab_size=64, num_experts_per_tok=2, **sizes, **overrides)
    torch.manual_seed(0)
    reference = getattr(transformers, model_name)(config).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    reference.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    dims = {"experts": 4, "hidden": 16, "moe": 8, "moe2": 16}
    rows = [Row(nemo, shape, hf=hf, split=split, transpose=transpose) for nemo, shape, hf, split, transpose in table]
    state = {row.nemo: row.from_checkpoint([saved[n] for n in row.names(None, dims["experts"])[1]]) for row in rows}

    moe_config = MoEConfig(
        dim=16,
        inter_dim=32,
        moe_inter_dim=8,
        n_routed_experts=4,
        n_shared_experts=0,
        n_activated_experts=2,
        n_expert_groups=0,
        n_limited_groups=0,
        train_gate=True,
        gate_bias_update_factor=0.0,
        aux_loss_coeff=0.0,
        score_func="softmax",
        softmax_before_topk=True,
        route_scale=1.0,
        norm_topk_prob=True,  # each of these routers renormalises its top-k weights
        dtype=torch.float32,
    )
    backend = BackendConfig(attn="sdpa", linear="torch", rms_norm="torch", experts="torch", dispatcher="torch")
    layer = MoE(moe_config, backend)
    assert set(layer.state_dict()) == set(state)
    layer.load_state_dict(state, strict=True)
    decoder_layer = reference.model.layers[0]
    block = decoder_layer.mlp if hasattr(decoder_layer, "mlp") else decoder_layer.block_sparse_moe
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), torch._dynamo.config.patch(disable=True):  # NeMo compiles its activations on first use
        want = block(x)
        got = layer(x)
    want = want[0] if isinstance(want, tuple) else want
    assert (got - want).abs().max().item() <= 1e-5

    back = {
        n: t
        for row in rows
        for n, t in zip(row.names(None, 4)[1], row.to_checkpoint(state[row.nemo], dims), strict=True)
    }
    assert set(back) <= set(saved)
    for name, tensor in back.items():
        assert torch.equal(bits(tensor), bits(saved[name])), name
