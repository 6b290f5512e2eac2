LAYER = "{layer}"
EXPERT = "{expert}"


@dataclass(frozen=True)
class CheckpointTensor:
    """One model tensor and the checkpoint tensors it is stored as, with the exact conversion between them.

    ``hf`` names the checkpoint tensors (default: the model's own name, a plain rename otherwise). Several names
    are concatenated along ``dim``, ``split`` giving each one's size there (fused q/k/v, fused gate/up); a name
    holding ``{expert}`` is one tensor per expert, stacked along a new leading dim; ``transpose`` swaps the last two
    dims of the model tensor. ``shape`` is one checkpoint tensor's shape in dimension symbols. A name holding
    ``{layer}`` repeats over the decoder layers of the set ``layers`` names (every layer, or the dense or MoE ones).
    """

    nemo: str
    shape: tuple[str, ...]
    hf: tuple[str, ...] = ()
    split: tuple[str, ...] = ()
    dim: int = 0
    transpose: bool = False
    layers: str = "all"

    @property
    def sources(self) -> tuple[str, ...]:
        return self.hf or (self.nemo,)

    @property
    def stacked(self) -> bool:
        return any(EXPERT in name for name in self.sources)

    @property
    def renames_only(self) -> bool:
        return len(self.sources) == 1 and not self.stacked and not self.transpose

    def part_shapes(self, dims: Mapping[str, int]) -> list[tuple[int, ...]]:
        """The shape of each checkpoint name (before its experts are stacked)."""
        shape = [dims[s] for s in self.shape]
        if not self.split:
            return [tuple(shape)] * len(self.sources)
        return [tuple(shape[: self.dim] + [dims[s]] + shape[self.dim + 1 :]) for s in self.split]

    def model_shape(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        parts = self.part_shapes(dims)
        shape = list(parts[0])
        shape[self.dim] = sum(p[self.dim] for p in parts)
        if self.stacked:
            shape.insert(0, dims["experts"])
        if self.transpose:
            shape[-2:] = shape[:-3:-1]
        return tuple(shape)

    def names(self, layer: int | None, experts: int) -> tuple[str, list[str]]:
        """The model name and the checkpoint names (in the order :meth:`from_checkpoint` takes them) of a layer."""
        nemo = self.nemo if layer is None else self.nemo.replace(LAYER, str(layer))
        names = []
        for template in self.sources:
            name = template if layer is None else template.replace(LAYER, str(layer))
            names += [name.replace(EXPERT, str(e)) for e in range(experts)] if EXPERT in name else [name]
        return nemo, names

    def from_checkpoint(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        per_name = len(parts) // len(self.sources)
        groups = [parts[i * per_name : (i + 1) * per_name] for i in range(len(self.sources))]
        pieces = [torch.stack(list(group)) if self.stacked else group[0] for group in groups]
        tensor = torch.cat(pieces, dim=self.dim + self.stacked) if len(pieces) > 1 else pieces[0]
        return tensor.transpose(-2, -1).contiguous() if self.transpose else tensor

    def to_checkpoint(self, tensor: torch.Tensor, dims: Mapping[str, int]) -> list[torch.Tensor]:
        """The inverse of :meth:`from_checkpoint`, bit for bit."""
        if self.transpose:
            tensor = tensor.transpose(-2, -1).contiguous()
        if len(self.sources) > 1:
            sizes = [shape[self.dim] for shape in self.part_shapes(dims)]
            pieces = [piece.contiguous() for piece in tensor.split(sizes, dim=self.dim + self.stacked)]
        else:
            pieces = [tensor]
        return [part for piece in pieces for part in (piece.unbind(0) if self.stacked else (piece,))]
