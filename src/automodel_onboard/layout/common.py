"""Layout machinery every kind shares: class names, imports, the attention and MLP decisions, a local config class.

Each function takes the spec's typed features (and the reference config's declared fields) and returns plain
frozen records the templates lay out; nothing here writes code text beyond short Python expressions over ``config``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automodel_onboard.model.features import Features, clamps_projections

NEMO_COMMON = "nemo_automodel.components.models.common"
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
# Latent attention's projections that ``attention_bias`` switches (q_proj, q_b_proj and kv_b_proj never have one).
LATENT_PROJECTIONS = ("q_a_proj", "kv_a_proj_with_mqa", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")

# Sliding-window layouts, by what the reference config class declares (the reference model reads exactly these):
# (feature values that may enable it, config fields it needs, layout).
SLIDING_RULES: tuple[tuple[frozenset[str], frozenset[str], str], ...] = (
    (frozenset({"per_layer"}), frozenset({"layer_types", "sliding_window"}), "per_layer"),
    (frozenset({"per_layer", "all_layers"}), frozenset({"sliding_window"}), "all_layers"),
)

# Config keys a local config class never declares: they describe the file, or PreTrainedConfig owns them.
FILE_KEYS = frozenset({"architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype"})
# Names config.py itself uses in the class body, which a field of the same name would shadow.
CONFIG_PY_NAMES = frozenset({"field", "Any"})
# RoPE keys PreTrainedConfig folds into ``rope_parameters`` (a missing rope_theta is the class's default_theta).
ROPE_KEYS = ("rope_parameters", "rope_theta", "rope_scaling")
ANNOTATIONS: tuple[tuple[type, str], ...] = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"))
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Import:
    module: str
    names: tuple[str, ...]


def merged(imports: tuple[Import, ...]) -> tuple[Import, ...]:
    """One statement per module (an aliased name in one of its own), ordered as ruff's isort orders them."""
    by_module: dict[str, list[str]] = {}
    for imp in imports:
        names = by_module.setdefault(imp.module, [])
        names += [n for n in imp.names if n not in names]
    out = []
    for module, names in by_module.items():
        plain = sorted((n for n in names if " as " not in n), key=_isort_key)
        statements = [(n,) for n in names if " as " in n] + ([tuple(plain)] if plain else [])
        out += [Import(module, s) for s in sorted(statements, key=lambda s: s[0].lower())]
    return tuple(out)


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest; case-insensitive within each."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name.lower()


def without(imports: tuple[Import, ...], names: frozenset[str]) -> tuple[Import, ...]:
    """The imports less ``names`` (a statement left with none is dropped)."""
    kept = (Import(i.module, tuple(n for n in i.names if n not in names)) for i in imports)
    return tuple(i for i in kept if i.names)


@dataclass(frozen=True)
class ClassNames:
    attention: str
    mlp: str
    decoder_layer: str
    rotary: str
    pretrained: str
    model: str
    causal_lm: str
    adapter: str
    multimodal: str | None = None  # an image-text model's inner model (vision tower, projector, text model)
    embedding: str = ""  # a token embedding that scales its own lookup (Gemma's)
    moe: str = ""  # NeMo's MoE layer with each token scaled by its router score before its expert (Llama 4's)


@dataclass(frozen=True)
class ComparedModule:
    """A submodule whose outputs the generated layer-equivalence test compares with the reference's."""

    label: str
    path: str  # in the generated model, ``{layer}`` for each decoder layer
    reference: str  # the same module in the reference model


@dataclass(frozen=True)
class LatentLayout:
    """Multi-head latent attention (DeepSeek-V2/V3): keys and values expanded per head from a compressed latent."""

    low_rank_q: bool  # queries through q_a_proj, q_a_layernorm and q_b_proj; else one q_proj
    interleave: str | None  # expression switching RoPE to interleaved pairs; None: the family never interleaves
    mscale: bool  # a YaRN mscale also scales the softmax (DeepSeek's attention does this)


@dataclass(frozen=True)
class AttentionLayout:
    head_dim: str  # expression over config: the query/key head width
    biases: tuple[tuple[str, str], ...]  # (projection, bias expression) for each projection a config can bias
    shared_bias: str | None  # the one expression all of them use, when they agree
    qk_norm: bool
    sliding: str  # "none" | "all_layers" | "per_layer"
    dropout: str  # expression
    qk_norm_full: bool = False  # the q/k norms span all heads (q and kv widths), applied before the head split
    rotary_dim: str = ""  # expression: the head dims the RoPE tables cover (before a partial rotary factor)
    partial_rotary: bool = False  # only config.rope_parameters["partial_rotary_factor"] of the rotary dims rotate
    scaling: str = "self.head_dim**-0.5"  # expression: the softmax scale
    latent: LatentLayout | None = None
    sinks: bool = False  # a learned sink logit per head joins each softmax (GPT-OSS)
    mrope: bool = False  # RoPE over (temporal, height, width) position grids, one section of the dims each
    mrope_interleaved: bool = False  # those sections interleaved dim by dim (Qwen3-VL's)
    mrope_default: tuple[int, ...] = ()  # the sections where the config names none (the reference's, measured)
    half_tables: bool = False  # the RoPE tables hold one angle per rotated pair (dims i and i + D/2)
    softcap: bool = False  # scores pass through ``tanh(s / cap) * cap`` (config.attn_logit_softcapping) before the mask
    rope_per_layer_type: bool = False  # config.rope_parameters holds one RoPE per layer type (local and global)
    # expression: the attention is causal where no mask says otherwise (SDPA without a mask reads it)
    causal: str = "True"
    float32_tables: bool = False  # the RoPE tables stay float32 and q/k are rotated in float32 (OLMo 2)
    rope_pairs: bool = False  # RoPE rotates adjacent dims (0, 1), (2, 3), ... together, in float32 (Cohere)
    complex_tables: bool = False  # the reference's tables are complex, ours their cosines and sines (tests convert)
    # The same pairs rotated by the first half of cat(freqs, freqs) tables, repeated pairwise (GLM's, Helium's).
    pair_rotation: bool = False
    nope_types: tuple[str, ...] = ()  # layer types whose queries and keys are not rotated (measured)
    fused_qkv: bool = False  # one qkv_proj for q, k and v side by side, as the checkpoint stores it (Phi-3)
    clip_qkv: bool = False  # q, k and v clamped to +-config.clip_qkv where it is set (OLMo's), before any norm
    chunked: bool = False  # chunked_attention layers attend within chunks of config.attention_chunk_size tokens
    unit_qk_types: tuple[str, ...] = ()  # layer types whose q and k are divided by their RMS, with no weight (measured)
    # Queries of the unrotated layers scaled up by position (config.attn_temperature_tuning, floor_scale, attn_scale).
    temperature: bool = False
    per_type_masks: bool = False  # each layer takes the mask of its type (config.layer_types): windows or chunks


@dataclass(frozen=True)
class MlpLayout:
    bias: str  # expression
    activation: str  # config attribute holding the activation name
    fused_gate_up: bool = False  # one gate_up_proj, gate half first, as the checkpoint stores it (Phi-3)
    gated: bool = True  # False: ``down_proj(act(up_proj(x)))`` (Phi-2's fc1/fc2, StarCoder2's c_fc/c_proj)
    width: str = "config.intermediate_size"  # expression: the hidden width (Llama 4's dense layers have their own)


@dataclass(frozen=True)
class ConfigField:
    name: str
    annotation: str
    default: Any  # JSON data
    factory: bool  # a list or dict default: a dataclass field needs a factory for it


@dataclass(frozen=True)
class LocalConfig:
    """config.py's ``PreTrainedConfig`` subclass, for a model_type transformers has no config class for."""

    class_name: str
    model_type: str
    mirrors: str  # the remote config class whose fields and defaults it reproduces ("module.Class")
    default_theta: float | None
    fields: tuple[ConfigField, ...]
    imports: tuple[Import, ...]  # standard library


def class_names(prefix: str, architecture: str) -> ClassNames:
    return ClassNames(
        attention=f"{prefix}Attention",
        mlp=f"{prefix}MLP",
        decoder_layer=f"{prefix}DecoderLayer",
        rotary=f"{prefix}RotaryEmbedding",
        pretrained=f"{prefix}PreTrainedModel",
        model=f"{prefix}Model",
        causal_lm=architecture,
        adapter=f"{prefix}StateDictAdapter",
        embedding=f"{prefix}ScaledWordEmbedding",
        moe=f"{prefix}MoE",
    )


def declared_config_fields(config_class: str) -> frozenset[str]:
    """The fields a transformers config class declares (its reference model reads no others)."""
    import inspect

    import transformers

    cls = getattr(transformers, config_class)
    return frozenset(inspect.signature(cls.__init__).parameters)


def _flag(attr: str | None, present: Sequence[bool]) -> Callable[[bool], str]:
    """A bias expression: the config flag when it switches every projection alike, else the fixed literal."""
    uniform = len(set(present)) == 1
    return lambda value: f"config.{attr}" if attr and uniform else repr(value)


# The config fields of Llama 4's query temperature, which the generated attention reads.
TEMPERATURE_FIELDS = frozenset({"attn_temperature_tuning", "floor_scale", "attn_scale"})


def attention_layout(
    features: Features, layer0: frozenset[str], fields: frozenset[str], implemented: frozenset[str]
) -> AttentionLayout:
    """The attention block's decisions; ``implemented`` are the traits the kind builds (partial rotary, scaling)."""
    att = features.attention
    projections = LATENT_PROJECTIONS if att.latent is not None else ATTENTION_PROJECTIONS
    present = [f"self_attn.{p}.bias" in layer0 for p in projections]
    bias_expr = _flag(att.bias_attr, present)
    sliding = "none"
    for enabling, needed, layout in SLIDING_RULES:
        if att.window_declared in enabling and needed <= fields:
            sliding = layout
            break
    biases = tuple((p, bias_expr(b)) for p, b in zip(projections, present, strict=True))
    traits = {t.key for t in features.traits} & implemented
    code = features.code
    nope_types = (code.nope_types or ()) if code is not None and "nope_layer_types" in traits else ()
    chunked = "chunked_attention" in traits and {"attention_chunk_size", "layer_types"} <= fields
    head_dim = "config.head_dim" if att.head_dim_explicit else "config.hidden_size // config.num_attention_heads"
    rotary_dim, scaling, latent = head_dim, "self.head_dim**-0.5", None
    if att.latent is not None:
        # The query/key heads are the unrotated and the rotated part side by side; only the latter is rotated.
        head_dim, rotary_dim = "config.qk_nope_head_dim + config.qk_rope_head_dim", "config.qk_rope_head_dim"
        latent = LatentLayout(
            low_rank_q="self_attn.q_a_proj.weight" in layer0,
            interleave="config.rope_interleave" if "rope_interleave" in fields else None,
            mscale=True,
        )
    elif "attention_multiplier" in traits and "attention_multiplier" in fields:
        scaling = "config.attention_multiplier"
    elif "query_pre_attn_scalar" in traits and "query_pre_attn_scalar" in fields:
        scaling = "config.query_pre_attn_scalar**-0.5"
    return AttentionLayout(
        head_dim=head_dim,
        biases=biases,
        shared_bias=biases[0][1] if len({e for _, e in biases}) == 1 else None,
        qk_norm="self_attn.q_norm.weight" in layer0,
        sliding=sliding,
        dropout="config.attention_dropout" if "attention_dropout" in fields else "0.0",
        qk_norm_full="self_attn.q_norm.weight" in layer0 and att.qk_norm == "full",
        rotary_dim=rotary_dim,
        partial_rotary="partial_rotary" in traits,
        scaling=scaling,
        latent=latent,
        sinks="attention_sinks" in traits and "self_attn.sinks" in layer0,
        mrope="mrope" in traits,
        mrope_interleaved="mrope_interleaved" in traits,
        mrope_default=(features.rope.mrope_sections or ()) if "mrope" in traits else (),
        half_tables=features.rope.half_tables,
        softcap="attention_softcapping" in traits and "attn_logit_softcapping" in fields,
        rope_per_layer_type="rope_per_layer_type" in traits and sliding == "per_layer",
        float32_tables=bool(features.code is not None and features.code.float32_tables),
        rope_pairs="rope_pairs" in traits,
        complex_tables=code is not None and code.complex_tables,
        pair_rotation="pair_rotation" in traits,
        nope_types=nope_types,
        fused_qkv="self_attn.qkv_proj.weight" in layer0,
        clip_qkv="clip_qkv" in fields and clamps_projections(features),
        chunked=chunked,
        per_type_masks=sliding == "per_layer" or chunked,
        unit_qk_types=(code.unit_qk_types or ()) if code is not None and "unit_qk_norm" in traits else (),
        temperature="temperature_tuning" in traits and bool(nope_types) and TEMPERATURE_FIELDS <= fields,
        causal=(
            "not config.use_bidirectional_attention"
            if "bidirectional_attention" in traits and "use_bidirectional_attention" in fields
            else "True"
        ),
    )


def mlp_layout(features: Features, layer0: frozenset[str]) -> MlpLayout:
    fused = "mlp.gate_up_proj.weight" in layer0
    # From the first layer's MLP (a MoE family's dense layers hold theirs apart from the layers in common).
    gated = fused or features.mlp.gated is not False
    present = [f"mlp.{p}.bias" in layer0 for p in MLP_PROJECTIONS if gated or p != "gate_proj"]
    bias_attr = features.mlp.bias_attr
    uniform = len(set(present)) == 1
    return MlpLayout(
        bias=f"config.{bias_attr}" if bias_attr and uniform else repr(any(present)),
        activation=features.mlp.activation_attr,
        fused_gate_up=fused,
        gated=gated,
    )


def local_config(class_prefix: str, model_type: str, remote: Mapping[str, Any]) -> tuple[LocalConfig, tuple[str, ...]]:
    """The local config class mirroring the remote one, and the gaps (keys that cannot be Python fields)."""
    from transformers import PreTrainedConfig

    # What the base class owns, by its non-None members: NeMo AutoModel sets ``PretrainedConfig.pad_token_id = None``
    # on import, which must not turn a model's own field into a base-class one.
    base = {name for name in dir(PreTrainedConfig) if getattr(PreTrainedConfig, name, None) is not None}
    owned = FILE_KEYS | base | set(ROPE_KEYS)
    fields, gaps = [], []
    defaults = remote["config_defaults"]
    for name, default in sorted(defaults.items()):
        if name in owned:
            continue
        if not IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or name.startswith("_") or name in CONFIG_PY_NAMES:
            gaps.append(f"config key {name!r} cannot be a field of the local config class")
            continue
        fields.append(ConfigField(name, _annotation(default), default, isinstance(default, (list, tuple, Mapping))))
    rope = defaults.get("rope_parameters")
    theta = rope.get("rope_theta") if isinstance(rope, Mapping) else defaults.get("rope_theta")
    if any(key in defaults for key in ROPE_KEYS):
        fields.append(ConfigField("rope_parameters", "dict | None", None, False))
    imports = [Import("dataclasses", ("field",))] if any(f.factory for f in fields) else []
    if any(f.annotation == "Any" for f in fields):
        imports.append(Import("typing", ("Any",)))
    config = LocalConfig(
        class_name=f"{class_prefix}Config",
        model_type=model_type,
        mirrors=remote["config_class"],
        default_theta=float(theta) if isinstance(theta, (int, float)) and not isinstance(theta, bool) else None,
        fields=tuple(fields),
        imports=tuple(imports),
    )
    return config, tuple(gaps)


def _annotation(value: Any) -> str:
    """The field's type as its default shows it (annotations are not enforced; they document)."""
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "dict"
    return next((a for t, a in ANNOTATIONS if type(value) is t), "Any")


def trait_gaps(features: Features, implemented: frozenset[str]) -> list[str]:
    """The traits of the model that a kind's templates do not implement, as gap messages (one per trait)."""
    gaps: dict[str, str] = {}
    for trait in features.traits:
        if trait.key not in implemented:
            gaps.setdefault(trait.key, trait.description)
    return list(gaps.values())
