"""Facts of the reference's code that neither the config nor the parameter names show, measured by running it.

Gemma's embeddings are multiplied by ``sqrt(hidden_size)`` and its RMSNorm scales by ``1 + weight``: both live only
in the modeling code. Rather than knowing families by name, the reference built from the tiny config is run on the
CPU in float32 and what it does is measured: the factor between the token lookup and the first decoder layer's
input (for token ids and for given embeddings), and what the text model's norm returns with its weight at zero.
Nothing here is taken from a family's name, so a new family with the same habits is recognised too.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automodel_onboard.model.reference import EXPERT_COUNTS, TEXT_ATTRIBUTES, ClassRef, grid_axes


@dataclass(frozen=True)
class NormCode:
    """The text model's norm class: ``normalised * (offset + weight)``, starting from ``identity`` weights; the input
    is normalised by its root mean square, or (``centred``) by its variance about the mean, as a LayerNorm does."""

    cls: ClassRef
    offset: float
    identity: float | None  # None: a fresh norm (built as ``cls(dim, eps=eps)``) does not start from one value
    uniform: bool  # every norm of the text model's layers is of this class
    centred: bool = False
    bias: bool = False  # it holds a bias
    builds_bias: bool = False  # a fresh one (``cls(dim, eps=eps)``) holds one
    # No parameters at all (OLMo's LayerNorm): built as ``cls(dim)``, its epsilon being the class's own.
    weightless: bool = False


@dataclass(frozen=True)
class CodeFacts:
    """What the reference computes, measured on the tiny config."""

    embedding_scale: float  # token ids: the lookup's output times this is what the first layer receives
    inputs_scale: float  # embeddings passed in (``inputs_embeds``): the same factor
    norm: NormCode | None  # None: no RMSNorm-like final norm with a weight
    zero_parameters: tuple[str, ...] = ()  # parameters the reference's initialisation leaves all zero
    one_parameters: tuple[str, ...] = ()  # and all one (a transformers norm's weight)
    # The RoPE tables stay float32 for bfloat16 activations (OLMo 2's), and the rotation with them; None: not measured.
    float32_tables: bool | None = None
    # The RoPE tables repeat each angle for adjacent dims (0, 1), (2, 3), ... (Cohere's), not for dims i and i + D/2.
    rope_pairs: bool | None = None
    # The RoPE module returns complex tables, one unit number per adjacent dim pair (Llama 4's ``freqs_cis``).
    complex_tables: bool = False
    # The rotation pairs adjacent dims although the tables are cat(freqs, freqs): it repeats the first half's angles
    # pairwise (GLM's, Helium's, ERNIE 4.5's apply_rotary_pos_emb).
    pair_rotation: bool | None = None
    # The layer types whose attention applies no RoPE (Cohere 2's and EXAONE 4's full-attention layers), where every
    # layer of those types and no other skips it; None: not measured, or no layer type accounts for the layers.
    nope_types: tuple[str, ...] | None = None
    # Multimodal RoPE: the frequencies follow the (temporal, height, width) grids by contiguous sections (Qwen2-VL's)
    # or interleaved dim by dim (Qwen3-VL's); None: not multimodal, or neither layout.
    mrope_layout: str | None = None
    # The top-level logits over the head applied to the final hidden state: 1.0 where the model's head scales nothing
    # (Cohere 2 Vision ignores its text config's logit_scale); None: not measured, or not a scalar factor.
    logits_scale: float | None = None
    # The layer types whose queries and keys are divided by their root mean square with no weight (Llama 4's L2 norm
    # on its rotated layers): measured as attention that doubling the q and k projections does not change.
    unit_qk_types: tuple[str, ...] | None = None
    # What the routed experts receive over the tokens, with the router's weights at zero: 1.0 where the tokens reach
    # them as they are (the router weights their outputs), the top expert's score where each token is scaled by it
    # before its expert (Llama 4's 0.5, a sigmoid of zero); None: not measured.
    routed_input_scale: float | None = None
    # The text config's dropout fields (residual branches, embeddings) it declares, and those the reference applies:
    # each measured alone at 0.5 in training mode (Phi-3 declares embd_pdrop and applies none).
    dropout_fields: tuple[str, ...] = ()
    dropouts: tuple[str, ...] = ()


SAMPLE_IDS = ((3, 5, 7, 11, 13, 17),)
# Dropout fields by where their dropout sits: on each residual branch's output, on the embeddings.
RESIDUAL_DROPOUT = ("resid_pdrop", "residual_dropout")
EMBEDDING_DROPOUT = ("embd_pdrop", "embedding_dropout")
FINAL_NORM = re.compile(r"(^|_)(norm|layernorm|layer_norm|ln_f)$")


def measure(model: Any) -> CodeFacts | None:
    """Run the tiny reference (built on the CPU) and read off its embedding scaling and its norms' offset; None
    where the text model cannot be found or run alone."""
    import torch

    text = _text_model(model)
    if text is None:
        return None
    model.eval()
    with torch.no_grad():
        lookup = text.get_input_embeddings()
        ids = torch.tensor(SAMPLE_IDS, dtype=torch.long)
        raw = torch.nn.functional.embedding(ids, lookup.weight)
        try:
            from_ids = _first_layer_input(text, input_ids=ids)
            from_embeds = _first_layer_input(text, inputs_embeds=raw)
        except Exception:  # a text model that needs more than token ids (multimodal positions): not measured
            return None
        pairs = _rope_pairs(text)  # pair tables (Cohere's) rule out the pair rotation of half-laid ones
        return CodeFacts(
            embedding_scale=_factor(from_ids, raw),
            inputs_scale=_factor(from_embeds, raw),
            norm=_norm(text),
            zero_parameters=tuple(n for n, p in model.named_parameters() if p.numel() and not p.any()),
            one_parameters=tuple(n for n, p in model.named_parameters() if p.numel() and bool((p == 1).all())),
            float32_tables=_float32_tables(text),
            rope_pairs=pairs,
            complex_tables=_complex_tables(text),
            pair_rotation=_pair_rotation(text) if pairs is False else None,
            nope_types=_by_layer_type(text, _unrotated),
            unit_qk_types=_by_layer_type(text, _unit_qk),
            mrope_layout=_mrope_layout(text),
            logits_scale=_logits_scale(model, ids),
            routed_input_scale=_routed_input_scale(text),
            **_dropouts(model),
        )


def _dropouts(model: Any) -> dict[str, tuple[str, ...]]:
    """The dropout fields the text config declares, and those whose dropout changes the text model's output in
    training mode when set alone to 0.5 (attention dropout off)."""
    import torch

    declared = tuple(f for f in (*RESIDUAL_DROPOUT, *EMBEDDING_DROPOUT) if hasattr(model.config.get_text_config(), f))
    applied = []
    ids = torch.tensor(SAMPLE_IDS, dtype=torch.long)
    for field in declared:
        config = copy.deepcopy(model.config)
        text_config = config.get_text_config()
        for name in declared:
            setattr(text_config, name, 0.5 if name == field else 0.0)
        if hasattr(text_config, "attention_dropout"):
            text_config.attention_dropout = 0.0
        try:
            text = _text_model(type(model)(config))
            outs = [
                text.train(training)(input_ids=ids, use_cache=False).last_hidden_state for training in (False, True)
            ]
        except Exception:  # a model its config rebuilt cannot build, or a text model needing more than token ids
            continue
        if not torch.equal(*outs):
            applied.append(field)
    return {"dropout_fields": declared, "dropouts": tuple(applied)}


def _logits_scale(model: Any, ids: Any) -> float | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    try:
        out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
        factor = _factor(out.logits, head(out.hidden_states[-1]))
    except Exception:  # a model whose forward needs more than token ids: not measured
        return None
    return None if math.isnan(factor) else factor


def _text_model(model: Any) -> Any:
    """The decoder stack: a module with ``layers``, a final norm and input embeddings (the text one first)."""
    import torch.nn as nn

    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, "layers", None), nn.ModuleList)
        and final_norm(module) is not None
        and hasattr(module, "get_input_embeddings")
    ]
    found.sort(key=lambda item: (not any(a in item[0] for a in TEXT_ATTRIBUTES), len(item[0])))
    return found[0][1] if found else None


def final_norm(text: Any) -> Any:
    """The decoder stack's final norm: ``norm``, or the one child named after a norm (Phi's ``final_layernorm``)."""
    import torch.nn as nn

    norm = getattr(text, "norm", None)
    if isinstance(norm, nn.Module):
        return norm
    named = [m for n, m in text.named_children() if FINAL_NORM.search(n) and not isinstance(m, nn.ModuleList)]
    return named[0] if len(named) == 1 else None


def _first_layer_input(text: Any, **inputs: Any) -> Any:
    captured: list[Any] = []

    def hook(_module: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])

    handle = text.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        text(**inputs, use_cache=False)
    finally:
        handle.remove()
    return captured[0]


def _factor(seen: Any, raw: Any) -> float:
    """The scalar ``c`` with ``seen == c * raw``, or NaN when the first layer receives something else."""
    import torch

    if seen.shape != raw.shape:  # a widened residual stream (several copies of the hidden state, HY-V4's)
        return math.nan
    c = float((seen * raw).sum() / (raw * raw).sum())
    return c if torch.allclose(seen, raw * c, rtol=1e-5, atol=1e-6) else math.nan


def _norm(text: Any) -> NormCode | None:
    import torch

    norm = final_norm(text)
    weight = getattr(norm, "weight", None)
    if not any(True for _ in norm.parameters()):
        return _weightless_norm(text, norm)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        return None
    eps = next((float(getattr(norm, a)) for a in ("eps", "variance_epsilon") if hasattr(norm, a)), None)
    if eps is None:
        return None
    probe = copy.deepcopy(norm)
    if getattr(probe, "bias", None) is not None:
        probe.bias.zero_()
    x = torch.randn(2, weight.shape[0], generator=torch.Generator().manual_seed(0))
    centred_x = x - x.mean(-1, keepdim=True)
    bases = {
        False: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),  # RMSNorm
        True: centred_x * torch.rsqrt(centred_x.pow(2).mean(-1, keepdim=True) + eps),  # LayerNorm
    }
    outs = []
    for value in (0.0, 1.0):
        probe.weight.fill_(value)
        outs.append(probe(x))
    # normalised * (offset + weight): at weight 0 and 1, offset and offset + 1 times the normalised input.
    found = [
        (centred, offset)
        for centred, base in bases.items()
        for offset in (0.0, 1.0)
        if all(
            torch.allclose(out, (offset + w) * base, rtol=1e-5, atol=1e-6) for w, out in zip((0, 1), outs, strict=True)
        )
    ]
    if not found:
        return None
    centred, offset = found[0]
    cls = type(norm)
    try:
        fresh = cls(weight.shape[0], eps=eps)
        identity = float(fresh.weight[0]) if bool((fresh.weight == fresh.weight[0]).all()) else None
        builds_bias = getattr(fresh, "bias", None) is not None
    except Exception:  # a constructor of another shape: the generated code cannot build it the same way
        identity, builds_bias = None, False
    return NormCode(
        cls=ClassRef(cls.__module__, cls.__name__),
        offset=offset,
        centred=centred,
        bias=getattr(norm, "bias", None) is not None,
        builds_bias=builds_bias,
        identity=identity,
        uniform=_uniform(text, cls),
    )


def _uniform(text: Any, cls: type) -> bool:
    """Every norm of the first decoder layer is of the final norm's class."""
    layer_norms = [m for name, m in text.layers[0].named_modules() if name.endswith(("norm", "layernorm"))]
    return all(type(m) is cls for m in layer_norms)


def _weightless_norm(text: Any, norm: Any) -> NormCode | None:
    """A norm without parameters (OLMo's LayerNorm): centred or not, and whether ``cls(dim)`` builds the same one;
    None where it normalises otherwise or cannot be built so."""
    import torch

    dim = text.get_input_embeddings().weight.shape[-1]
    x = torch.randn(2, dim, generator=torch.Generator().manual_seed(0))
    out = norm(x)
    centred_x = x - x.mean(-1, keepdim=True)
    # At unit scale the norm's epsilon (1e-5 or less) moves the output by at most its size, relatively.
    bases = {
        False: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)),
        True: centred_x * torch.rsqrt(centred_x.pow(2).mean(-1, keepdim=True)),
    }
    found = [centred for centred, base in bases.items() if torch.allclose(out, base, rtol=1e-4, atol=1e-5)]
    if not found:
        return None
    cls = type(norm)
    try:
        fresh = cls(dim)
        rebuilt = not any(True for _ in fresh.parameters()) and torch.equal(fresh(x), out)
    except Exception:  # a constructor of another shape
        rebuilt = False
    if not rebuilt:
        return None
    return NormCode(
        cls=ClassRef(cls.__module__, cls.__name__),
        offset=0.0,
        identity=None,
        uniform=_uniform(text, cls),
        centred=found[0],
        weightless=True,
    )


def _tables(rotary: Any, x: Any, positions: Any) -> tuple[Any, Any]:
    """The rotary module's (cos, sin) tables; complex ones (Llama 4's ``freqs_cis``, one angle per adjacent pair of
    dims) as the pair-laid cosines and sines they rotate by."""
    import inspect

    kwargs = {}
    if "layer_type" in inspect.signature(rotary.forward).parameters:  # one RoPE per layer type (OLMo 3's): the first
        kwargs["layer_type"] = rotary.config.layer_types[0]
    out = rotary(x, positions, **kwargs)
    if getattr(out, "is_complex", lambda: False)():
        return out.real.repeat_interleave(2, dim=-1), out.imag.repeat_interleave(2, dim=-1)
    cos, sin = out
    return cos, sin


def _complex_tables(text: Any) -> bool:
    import torch

    rotary = getattr(text, "rotary_emb", None)
    try:
        out = rotary(torch.zeros(1, 2, 8), torch.arange(2)[None]) if rotary is not None else None
    except Exception:  # a RoPE per layer type, or one of position grids: not complex
        return False
    return isinstance(out, torch.Tensor) and out.is_complex()


def _float32_tables(text: Any) -> bool | None:
    """Whether the text model's RoPE hands bfloat16 activations float32 tables."""
    import torch

    rotary = getattr(text, "rotary_emb", None)
    if rotary is None:
        return None
    x = torch.zeros(1, 2, 8, dtype=torch.bfloat16)
    try:
        cos, _ = _tables(rotary, x, torch.arange(2)[None])
    except Exception:  # a RoPE per layer type, or one of position grids: not measured
        return None
    return cos.dtype == torch.float32


def _rope_pairs(text: Any) -> bool | None:
    """Whether the RoPE tables hold each angle for a pair of adjacent dims (measured at position 1, where the angles
    of a table's first half all differ)."""
    import torch

    rotary = getattr(text, "rotary_emb", None)
    if rotary is None:
        return None
    try:
        cos, _ = _tables(rotary, torch.zeros(1, 2, 8), torch.arange(2)[None])
    except Exception:  # a RoPE per layer type, or one of position grids: not measured
        return None
    row = cos[0, 1]
    if row.numel() < 4 or row.numel() % 2:
        return None
    return bool(torch.equal(row[0::2], row[1::2])) and not torch.equal(row[0], row[2])


def _pair_rotation(text: Any) -> bool | None:
    """Whether the family's ``apply_rotary_pos_emb`` turns dim 0 towards dim 1 (not D/2) with half-laid tables:
    measured by rotating a unit vector at position 1, where the first angle is one radian."""
    import sys

    import torch

    rotary = getattr(text, "rotary_emb", None)
    layers = getattr(text, "layers", None)
    attention = getattr(layers[0], "self_attn", None) if layers else None
    apply = getattr(sys.modules.get(type(attention).__module__), "apply_rotary_pos_emb", None)
    if rotary is None or apply is None:
        return None
    try:
        cos, sin = rotary(torch.zeros(1, 2, 8), torch.arange(2)[None])
        q = torch.zeros(1, 1, 2, cos.shape[-1])
        q[..., 1, 0] = 1.0
        turned, _ = apply(q, q, cos, sin)
    except Exception:  # another signature, or tables of another shape: not measured
        return None
    moved = turned[0, 0, 1]
    if moved.numel() < 4 or not torch.isfinite(moved).all():
        return None
    return bool(moved[1].abs() > 1e-3 and moved[moved.numel() // 2].abs() < 1e-6)


def _unrotated(attention: Any, x: Any, tables: Any) -> bool:
    """The attention's output does not change when the RoPE tables are replaced by the identity rotation."""
    import torch

    identity = (
        torch.ones_like(tables)
        if getattr(tables, "is_complex", lambda: False)()
        else (torch.ones_like(tables[0]), torch.zeros_like(tables[1]))
    )
    outputs = [attention(x, position_embeddings=pe, attention_mask=None)[0] for pe in (tables, identity)]
    return bool(torch.equal(*outputs))


def _unit_qk(attention: Any, x: Any, tables: Any) -> bool:
    """The attention's output does not change when its q and k projections are doubled, having no norm weights."""
    import torch

    projections = [getattr(attention, name, None) for name in ("q_proj", "k_proj")]
    if any(p is None for p in projections) or any(n.endswith("norm.weight") for n, _ in attention.named_parameters()):
        return False
    before = attention(x, position_embeddings=tables, attention_mask=None)[0]
    probe = copy.deepcopy(attention)
    for name in ("q_proj", "k_proj"):
        for parameter in getattr(probe, name).parameters():
            parameter.data.mul_(2.0)
    after = probe(x, position_embeddings=tables, attention_mask=None)[0]
    return bool(torch.allclose(before, after, rtol=1e-4, atol=1e-5))


def _by_layer_type(text: Any, test: Any) -> tuple[str, ...] | None:
    """The layer types whose attention passes ``test``, where they are exactly the layers that do (none: empty)."""
    import torch

    rotary = getattr(text, "rotary_emb", None)
    types = getattr(getattr(text, "config", None), "layer_types", None)
    layers = getattr(text, "layers", None)
    if rotary is None or not isinstance(types, (list, tuple)) or layers is None or len(types) != len(layers):
        return None
    x = torch.randn(1, 4, text.config.hidden_size, generator=torch.Generator().manual_seed(0))
    try:
        tables = rotary(x, torch.arange(4)[None])
        passed = [test(layer.self_attn, x, tables) for layer in layers]
    except Exception:  # a RoPE per layer type, or an attention taking other inputs: not measured
        return None
    found = {t for t, ok in zip(types, passed, strict=True) if ok}
    if any(ok != (t in found) for t, ok in zip(types, passed, strict=True)):
        return None
    return tuple(sorted(found))


def _routed_input_scale(text: Any) -> float | None:
    """See :attr:`CodeFacts.routed_input_scale`: the first MoE block run with its router zeroed."""
    import torch

    experts_count = next(
        (v for a in EXPERT_COUNTS if isinstance(v := getattr(text.config, a, None), int)),
        None,
    )
    block = next((m for m in text.layers.modules() if isinstance(getattr(m, "experts", None), torch.nn.Module)), None)
    router = next(
        (
            name
            for name, m in (block.named_children() if block is not None else ())
            if name != "experts"
            and isinstance(getattr(m, "weight", None), torch.Tensor)
            and m.weight.dim() == 2
            and m.weight.shape[0] == experts_count
        ),
        None,
    )
    if router is None:
        return None
    probe = copy.deepcopy(block)
    for parameter in getattr(probe, router).parameters():
        parameter.data.zero_()
    seen: list[Any] = []

    def hook(_module: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        seen.append(args[0] if args else kwargs.get("hidden_states"))

    x = torch.randn(1, 3, text.config.hidden_size, generator=torch.Generator().manual_seed(0))
    handle = probe.experts.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        probe(x)
    except Exception:  # a block taking other inputs: not measured
        return None
    finally:
        handle.remove()
    if not seen or not isinstance(seen[0], torch.Tensor) or seen[0].shape[-1] != x.shape[-1]:
        return None
    tokens = x.reshape(-1, x.shape[-1])
    if seen[0].numel() % tokens.numel():
        return None
    received = seen[0].reshape(-1, *tokens.shape)  # [copies, tokens, hidden]: each token once per expert, or once
    factors = (received * tokens).sum(-1) / (tokens * tokens).sum(-1)
    if not torch.allclose(received, factors[..., None] * tokens, rtol=1e-5, atol=1e-6):
        return None
    return float(factors.max())


# How multimodal RoPE assigns the rotary frequencies to the (temporal, height, width) grids, given the config's
# sections: by contiguous sections, or dim by dim in turn (height and width on dims 1 and 2 modulo 3, up to three
# times their section; temporal elsewhere).
MROPE_LAYOUTS: dict[str, Any] = {
    "sections": lambda sections: [axis for axis, size in enumerate(sections) for _ in range(size)],
    "interleaved": lambda sections: [d % 3 if d % 3 and d < 3 * sections[d % 3] else 0 for d in range(sum(sections))],
}


def _mrope_layout(text: Any) -> str | None:
    """Which grid each rotary frequency follows, measured by moving one grid's position at a time."""
    rotary = getattr(text, "rotary_emb", None)
    rope = getattr(getattr(text, "config", None), "rope_parameters", None) or {}
    sections = rope.get("mrope_section") if isinstance(rope, Mapping) else None
    if rotary is None or not isinstance(sections, (list, tuple)):
        return None
    axes = grid_axes(rotary, sum(sections))
    if axes is None:
        return None
    return next((name for name, layout in MROPE_LAYOUTS.items() if layout(list(sections)) == axes), None)
