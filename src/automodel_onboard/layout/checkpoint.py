"""The checkpoint table: how each model tensor is stored in the Hugging Face checkpoint format, as named records.

A kind's layout lists its tensors as :class:`CheckpointTensor` rows; the generated state-dict adapter holds the same
rows and converts with them (``templates/_shared/adapter/checkpoint_table.py`` is that code, included verbatim), and
the generated tests read both sides' names from them. One row covers every operation real checkpoints need, each
with its exact reverse: a rename (the checkpoint name, prefix changes included, differs from the model's),
per-expert tensors <-> one stacked tensor (``{expert}`` in a checkpoint name), split <-> concatenated (several
checkpoint names, ``split`` wide along ``dim``) and a transpose of the last two dims.

Here the table is data: it is matched against the reference's inventory to find what a template cannot load.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from automodel_onboard.model.features import tensor_aliases

LAYER = "{layer}"  # placeholder for the decoder-layer index in name templates
EXPERT = "{expert}"  # placeholder for the routed-expert index in checkpoint name templates
LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
NUMBERED = re.compile(r"\.\d+\.")
NUMBERED_EXPERT = re.compile(r"(?<=experts\.)\d+(?=\.)")


@dataclass(frozen=True)
class CheckpointTensor:
    """One model tensor (``nemo``) and the checkpoint tensors it is stored as; see the module docstring."""

    nemo: str
    shape: tuple[str, ...]  # one checkpoint tensor's shape, in dimension symbols
    hf: tuple[str, ...] = ()  # checkpoint names; empty: the model's own name
    split: tuple[str, ...] = ()  # with several names: each one's size along ``dim``
    dim: int = 0
    transpose: bool = False
    layers: str = "all"  # the decoder layers a {layer} row covers: "all", or a group such as "dense" / "moe"

    @property
    def sources(self) -> tuple[str, ...]:
        return self.hf or (self.nemo,)

    @property
    def renames_only(self) -> bool:
        return len(self.sources) == 1 and EXPERT not in self.sources[0] and not self.transpose

    @property
    def operations(self) -> tuple[str, ...]:
        """The operations this row applies from checkpoint to model, by name (for reports and docs)."""
        ops = ["rename"] if self.sources != (self.nemo,) else []
        ops += ["stack"] if any(EXPERT in s for s in self.sources) else []
        ops += ["concat"] if len(self.sources) > 1 else []
        ops += ["transpose"] if self.transpose else []
        return tuple(ops)


@dataclass(frozen=True)
class TensorTable:
    """A kind's tensors in checkpoint names: (name, shape symbols) for globals and for one decoder layer."""

    global_tensors: tuple[tuple[str, tuple[str, ...]], ...]
    layer_tensors: tuple[tuple[str, tuple[str, ...]], ...]
    layer_prefix: str  # checkpoint prefix of decoder layer ``{layer}``
    template: str  # the kind's name, for gap messages
    always: frozenset[str] = frozenset()  # global tensors built even when the checkpoint omits them (a tied head)
    # What only some layers hold (a MoE family's dense and MoE layers): per group, rows named below the layer prefix.
    groups: Mapping[str, tuple[CheckpointTensor, ...]] = field(default_factory=dict)

    def rows(self, present_globals: Iterable[str], present_layer: Iterable[str]) -> tuple[CheckpointTensor, ...]:
        """The rows of the tensors present (checkpoint and model names alike)."""
        globals_, layer = set(present_globals), set(present_layer)
        rows = [CheckpointTensor(n, s) for n, s in self.global_tensors if n in globals_ or n in self.always]
        rows += [CheckpointTensor(self.layer_prefix + n, s) for n, s in self.layer_tensors if n in layer]
        return tuple(rows)

    def group_rows(self, group: str, present: set[str]) -> tuple[list[CheckpointTensor], set[str]]:
        """The group's rows whose checkpoint names are all present (layer prefix added), and the names they use."""
        names = {NUMBERED_EXPERT.sub(EXPERT, n) for n in present}
        rows, used = [], set()
        for row in self.groups.get(group, ()):
            if all(source in names for source in row.sources):
                rows.append(
                    dataclasses.replace(
                        row,
                        nemo=self.layer_prefix + row.nemo,
                        hf=tuple(self.layer_prefix + s for s in row.hf),
                        layers=group,
                    )
                )
                used.update(row.sources)
        return rows, used


def match(
    table: TensorTable,
    names: Sequence[str],
    num_layers: int,
    groups: Mapping[str, Sequence[int]] | None = None,
) -> tuple[tuple[CheckpointTensor, ...], list[str]]:
    """The rows for the inventory's tensor names (layer and expert indices abstracted), and the gaps found.

    Every decoder layer must hold the same tensors, except that the layers of each of ``groups`` (the dense and the
    MoE layers of a MoE family) share theirs; a tensor without a row, or a layer that differs from its peers, is a
    gap: the generated model cannot load it.
    """
    gaps: list[str] = []
    per_layer: dict[int, set[str]] = {}
    globals_: set[str] = set()
    for name in names:
        m = LAYER_NAME.match(name)
        if m:
            per_layer.setdefault(int(m.group(1)), set()).add(m.group(2))
        else:
            globals_.add(name)
    # Tensors stored under another name (Phi's mlp.fc1) are matched under the model's and renamed by their rows.
    read_as = tensor_aliases({*globals_, *(n for leaves in per_layer.values() for n in leaves)})
    stored = {new: old for old, new in read_as.items()}
    globals_ = {read_as.get(n, n) for n in globals_}
    per_layer = {i: {read_as.get(n, n) for n in leaves} for i, leaves in per_layer.items()}
    layer_sets = [per_layer.get(i, set()) for i in range(num_layers)]
    common = set.intersection(*layer_sets) if layer_sets else set()
    rows = [_stored_as(row, stored, table.layer_prefix) for row in table.rows(globals_, common)]
    explained = {n for n, _ in table.layer_tensors}
    unknown_layer: set[str] = set()
    grouped: set[int] = set()
    for group, indices in (groups or {}).items():
        members = [layer_sets[i] for i in indices if i < num_layers]
        shared = set.intersection(*members) if members else set()
        for i in indices:
            for extra in sorted(layer_sets[i] - shared) if i < num_layers else ():
                gaps.append(f"tensor model.layers.{i}.{extra} exists only in some {group} layers")
        found, used = table.group_rows(group, shared)
        rows += found
        explained |= used
        unknown_layer |= shared
        grouped.update(indices)
    for i, found_names in enumerate(layer_sets):
        for extra in sorted(found_names - common) if i not in grouped else ():
            gaps.append(f"tensor model.layers.{i}.{extra} exists only in some layers")
    unknown_layer |= common
    unknown = [
        f"model.layers.{LAYER}.{s}" for s in sorted(unknown_layer) if NUMBERED_EXPERT.sub(EXPERT, s) not in explained
    ]
    unknown += sorted(globals_ - {n for n, _ in table.global_tensors})
    # Expert and other numbered sub-module indices are abstracted too, so a gap is reported once per kind.
    for name in dict.fromkeys(NUMBERED.sub(".{n}.", n) for n in unknown):
        gaps.append(f"checkpoint tensor {name} has no counterpart in the {table.template} template")
    return tuple(rows), gaps


def _stored_as(row: CheckpointTensor, stored: Mapping[str, str], prefix: str) -> CheckpointTensor:
    """The row, renamed where its tensor is stored under an alias."""
    own = row.nemo[len(prefix) :] if row.nemo.startswith(prefix) else row.nemo
    if own not in stored:
        return row
    return dataclasses.replace(row, hf=(row.nemo[: len(row.nemo) - len(own)] + stored[own],))


def check_shapes(
    inventory: Sequence[Any], rows: Sequence[CheckpointTensor], dims: Mapping[str, int | None], template: str
) -> list[str]:
    """Gaps where an inventory shape differs from a row's symbolic shape evaluated on the real config."""
    patterns = [
        (name_pattern(source), shape)
        for row in rows
        for source, shape in zip(row.sources, part_shapes(row), strict=True)
    ]
    gaps = []
    for tensor in inventory:
        for pattern, shape in patterns:
            if pattern.match(tensor.name):
                want = tuple(dims.get(s) for s in shape)
                if None not in want and tuple(tensor.shape) != want:
                    gaps.append(
                        f"checkpoint tensor {tensor.name} has shape {tuple(tensor.shape)}, the {template} "
                        f"template builds {want} ({' x '.join(shape)})"
                    )
                break
    return gaps


def part_shapes(row: CheckpointTensor) -> list[tuple[str, ...]]:
    """Each checkpoint name's shape in symbols (``split`` replaces the symbol along ``dim``)."""
    if not row.split:
        return [row.shape] * len(row.sources)
    return [(*row.shape[: row.dim], size, *row.shape[row.dim + 1 :]) for size in row.split]


def name_pattern(template: str) -> re.Pattern[str]:
    """The checkpoint names a row's name template stands for (any layer, any expert)."""
    escaped = re.escape(template).replace(re.escape(LAYER), r"\d+").replace(re.escape(EXPERT), r"\d+")
    return re.compile(escaped + "$")
