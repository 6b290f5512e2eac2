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
