"""How the generated code is laid out for one architecture: every template-facing decision, computed once.

The dense template renders a Llama-shaped decoder (pre-norm blocks of attention and gated MLP) whose parameter
names are the checkpoint's own. What varies between families is decided here, from the spec's features, the
reference config class and the checkpoint inventory: which projections carry biases and whether a config flag
switches them, how the head dim is read, which attention masks exist, whether q/k norms are present, and the
declarative checkpoint table of the state-dict adapter. Templates receive the result as plain data and only lay
it out; nothing here writes code text beyond short Python expressions over ``config``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NEMO_COMMON = "nemo_automodel.components.models.common"

# The NeMo AutoModel symbols each kind's rendered files import (model, adapter and tests); a destination must
# provide all of them. Keyed by kind; the MoE and VLM templates add their rows when they land.
REQUIRED_SYMBOLS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "dense": (
        ("nemo_automodel", "NeMoAutoModelForCausalLM"),
        ("nemo_automodel._transformers.model_capabilities", "query_capabilities"),
        ("nemo_automodel._transformers.registry", "ModelRegistry"),
        ("nemo_automodel.components.checkpoint.state_dict_adapter", "StateDictAdapter"),
        (NEMO_COMMON, "BackendConfig"),
        (NEMO_COMMON, "HFCheckpointingMixin"),
        (NEMO_COMMON, "compute_lm_head_logits"),
        (NEMO_COMMON, "initialize_linear_module"),
        (NEMO_COMMON, "initialize_rms_norm_module"),
        ("nemo_automodel.components.models.common.tie_word_embeddings", "TieSupport"),
        ("nemo_automodel.shared.utils", "dtype_from_str"),
    ),
}

LAYER = "{layer}"  # placeholder for the decoder-layer index in checkpoint name templates

# Dimension symbols of checkpoint tensor shapes, as Python expressions over ``config`` (and the head dim).
DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("vocab", "config.vocab_size"),
    ("hidden", "config.hidden_size"),
    ("intermediate", "config.intermediate_size"),
    ("q", "config.num_attention_heads * head_dim"),
    ("kv", "config.num_key_value_heads * head_dim"),
    ("head_dim", "head_dim"),
)

# Every tensor the dense template builds, in checkpoint names: (name template, shape in dimension symbols).
# A tensor of the reference that is not listed here has no counterpart in the generated model.
GLOBAL_TENSORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model.embed_tokens.weight", ("vocab", "hidden")),
    ("model.norm.weight", ("hidden",)),
    ("lm_head.weight", ("vocab", "hidden")),
)
LAYER_TENSORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input_layernorm.weight", ("hidden",)),
    ("self_attn.q_proj.weight", ("q", "hidden")),
    ("self_attn.q_proj.bias", ("q",)),
    ("self_attn.k_proj.weight", ("kv", "hidden")),
    ("self_attn.k_proj.bias", ("kv",)),
    ("self_attn.v_proj.weight", ("kv", "hidden")),
    ("self_attn.v_proj.bias", ("kv",)),
    ("self_attn.o_proj.weight", ("hidden", "q")),
    ("self_attn.o_proj.bias", ("hidden",)),
    ("self_attn.q_norm.weight", ("head_dim",)),
    ("self_attn.k_norm.weight", ("head_dim",)),
    ("post_attention_layernorm.weight", ("hidden",)),
    ("mlp.gate_proj.weight", ("intermediate", "hidden")),
    ("mlp.gate_proj.bias", ("intermediate",)),
    ("mlp.up_proj.weight", ("intermediate", "hidden")),
    ("mlp.up_proj.bias", ("intermediate",)),
    ("mlp.down_proj.weight", ("hidden", "intermediate")),
    ("mlp.down_proj.bias", ("hidden",)),
)
LAYER_PREFIX = "model.layers.{layer}."
LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
NUMBERED = re.compile(r"\.\d+\.")

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")

# Sliding-window layouts, by what the reference config class declares (the reference model reads exactly these):
# (feature values that may enable it, config fields it needs, layout).
SLIDING_RULES: tuple[tuple[frozenset[str], frozenset[str], str], ...] = (
    (frozenset({"per_layer"}), frozenset({"layer_types", "sliding_window"}), "per_layer"),
    (frozenset({"per_layer", "all_layers"}), frozenset({"sliding_window"}), "all_layers"),
)

# Submodules whose outputs the generated layer-equivalence test compares with the reference's, as
# (label, path under the top-level model with {layer} for each decoder layer, feature that must be present).
COMPARED_MODULES: tuple[tuple[str, str, str | None], ...] = (
    ("rotary", "model.rotary_emb", None),
    ("input_norm", "model.layers.{layer}.input_layernorm", None),
    ("q_norm", "model.layers.{layer}.self_attn.q_norm", "qk_norm"),
    ("k_norm", "model.layers.{layer}.self_attn.k_norm", "qk_norm"),
    ("attention", "model.layers.{layer}.self_attn", None),
    ("post_attention_norm", "model.layers.{layer}.post_attention_layernorm", None),
    ("mlp", "model.layers.{layer}.mlp", None),
    ("decoder_layer", "model.layers.{layer}", None),
    ("final_norm", "model.norm", None),
)


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


@dataclass(frozen=True)
class CheckpointTensor:
    """One row of the adapter's table: the checkpoint name, the model's name, and the shape in symbols."""

    hf: str
    nemo: str
    shape: tuple[str, ...]


@dataclass(frozen=True)
class AttentionLayout:
    head_dim: str  # expression over config
    biases: tuple[tuple[str, str], ...]  # (projection, bias expression) for q/k/v/o
    shared_bias: str | None  # the one expression all four use, when they agree
    qk_norm: bool
    sliding: str  # "none" | "all_layers" | "per_layer"
    dropout: str  # expression


@dataclass(frozen=True)
class MlpLayout:
    bias: str  # expression
    activation: str  # config attribute holding the activation name


@dataclass(frozen=True)
class Import:
    module: str
    names: tuple[str, ...]


# Config keys a local config class never declares: they describe the file, or PreTrainedConfig owns them.
FILE_KEYS = frozenset({"architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype"})
# Names config.py itself uses in the class body, which a field of the same name would shadow.
CONFIG_PY_NAMES = frozenset({"field", "Any"})
# RoPE keys PreTrainedConfig folds into ``rope_parameters`` (a missing rope_theta is the class's default_theta).
ROPE_KEYS = ("rope_parameters", "rope_theta", "rope_scaling")
ANNOTATIONS: tuple[tuple[type, str], ...] = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"))
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


@dataclass(frozen=True)
class DenseLayout:
    config_class: str
    reference_class: str
    reference_alias: str  # the reference class's name in generated tests (it often equals the NeMo class's)
    classes: ClassNames
    attention: AttentionLayout
    mlp: MlpLayout
    norm_eps: str  # expression
    padding_idx: str  # expression
    tied: bool  # the reference config ties lm_head to the embedding (it is then absent from the checkpoint)
    tensors: tuple[CheckpointTensor, ...]
    dimensions: tuple[tuple[str, str], ...]
    compared_modules: tuple[tuple[str, str], ...]
    model_imports: tuple[Import, ...]  # transformers
    model_nemo_imports: tuple[Import, ...]  # NeMo AutoModel (the generated adapter's import is added by the template)
    gaps: tuple[str, ...]  # what the reference has that the generated model does not implement
    local_config: LocalConfig | None = None  # set when the reference is remote code: config.py is rendered
    reference_config_alias: str | None = None  # the remote reference's config class in generated tests


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
    )


def declared_config_fields(config_class: str) -> frozenset[str]:
    """The fields a transformers config class declares (its reference model reads no others)."""
    import inspect

    import transformers

    cls = getattr(transformers, config_class)
    return frozenset(inspect.signature(cls.__init__).parameters)


def checkpoint_tables(names: Sequence[str], num_layers: int) -> tuple[tuple[CheckpointTensor, ...], tuple[str, ...]]:
    """The adapter table for the inventory's tensor names (layer indices abstracted), and the gaps found.

    Every decoder layer must hold the same tensors; a tensor without a row in GLOBAL_TENSORS / LAYER_TENSORS, or
    a layer that differs from the others, is a gap: the generated model cannot load it.
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
    layer_sets = [per_layer.get(i, set()) for i in range(num_layers)]
    common = set.intersection(*layer_sets) if layer_sets else set()
    for i, found in enumerate(layer_sets):
        for extra in sorted(found - common):
            gaps.append(f"tensor model.layers.{i}.{extra} exists only in some layers")
    known_layer = dict(LAYER_TENSORS)
    known_global = dict(GLOBAL_TENSORS)
    # Expert and other numbered sub-module indices are abstracted too, so a gap is reported once per kind.
    unknown = [f"model.layers.{LAYER}.{s}" for s in sorted(common - set(known_layer))]
    unknown += sorted(globals_ - set(known_global))
    for name in dict.fromkeys(NUMBERED.sub(".{n}.", n) for n in unknown):
        gaps.append(f"checkpoint tensor {name} has no counterpart in the dense template")
    rows = [CheckpointTensor(n, n, s) for n, s in GLOBAL_TENSORS if n in globals_ or n == "lm_head.weight"]
    rows += [CheckpointTensor(LAYER_PREFIX + n, LAYER_PREFIX + n, s) for n, s in LAYER_TENSORS if n in common]
    return tuple(rows), tuple(gaps)


def check_shapes(
    inventory: Sequence[Mapping[str, Any]], rows: Sequence[CheckpointTensor], dims: Mapping[str, int | None]
) -> tuple[str, ...]:
    """Gaps where an inventory shape differs from the table's symbolic shape evaluated on the real config."""
    patterns = [(re.compile(re.escape(r.hf).replace(re.escape(LAYER), r"\d+") + "$"), r) for r in rows]
    gaps = []
    for tensor in inventory:
        for pattern, row in patterns:
            if pattern.match(tensor["name"]):
                want = tuple(dims.get(s) for s in row.shape)
                if None not in want and tuple(tensor["shape"]) != want:
                    gaps.append(
                        f"checkpoint tensor {tensor['name']} has shape {tuple(tensor['shape'])}, the dense "
                        f"template builds {want} ({' x '.join(row.shape)})"
                    )
                break
    return tuple(gaps)


def _flag(attr: str | None, present: Sequence[bool]) -> Callable[[bool], str]:
    """A bias expression: the config flag when it switches every projection alike, else the fixed literal."""
    uniform = len(set(present)) == 1
    return lambda value: f"config.{attr}" if attr and uniform else repr(value)


def attention_layout(features: Mapping[str, Any], layer0: frozenset[str], fields: frozenset[str]) -> AttentionLayout:
    att = features["attention"]
    present = [f"self_attn.{p}.bias" in layer0 for p in ATTENTION_PROJECTIONS]
    bias_expr = _flag(att.get("bias_attr"), present)
    sliding = "none"
    for enabling, needed, layout in SLIDING_RULES:
        if att["sliding_window"] in enabling and needed <= fields:
            sliding = layout
            break
    biases = tuple((p, bias_expr(b)) for p, b in zip(ATTENTION_PROJECTIONS, present, strict=True))
    return AttentionLayout(
        head_dim="config.head_dim" if att["head_dim_explicit"] else "config.hidden_size // config.num_attention_heads",
        biases=biases,
        shared_bias=biases[0][1] if len({e for _, e in biases}) == 1 else None,
        qk_norm="self_attn.q_norm.weight" in layer0,
        sliding=sliding,
        dropout="config.attention_dropout" if "attention_dropout" in fields else "0.0",
    )


def mlp_layout(features: Mapping[str, Any], layer0: frozenset[str]) -> MlpLayout:
    present = [f"mlp.{p}.bias" in layer0 for p in MLP_PROJECTIONS]
    bias_attr = features["mlp"].get("bias_attr")
    uniform = len(set(present)) == 1
    return MlpLayout(
        bias=f"config.{bias_attr}" if bias_attr and uniform else repr(any(present)),
        activation="hidden_act",
    )


def local_config(spec: Mapping[str, Any], remote: Mapping[str, Any]) -> tuple[LocalConfig, tuple[str, ...]]:
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
        class_name=f"{spec['class_prefix']}Config",
        model_type=spec["model_type"],
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


def _model_imports(
    attention: AttentionLayout, config_class: str, local: bool
) -> tuple[tuple[Import, ...], tuple[Import, ...]]:
    """model.py's transformers imports and NeMo AutoModel imports (the generated package's own modules aside)."""
    masks = ("create_causal_mask",) + (("create_sliding_window_causal_mask",) if attention.sliding != "none" else ())
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
        Import("nemo_automodel.components.models.common.tie_word_embeddings", ("TieSupport",)),
        Import("nemo_automodel.shared.utils", ("dtype_from_str",)),
    )
    return third_party, nemo


def dense_layout(spec: Mapping[str, Any]) -> DenseLayout | None:
    """The dense layout of a spec (as ``ArchSpec.to_dict()`` gives it), or None without a reference inventory."""
    hf, remote, inventory = spec.get("hf"), spec.get("remote_code"), spec.get("inventory")
    if inventory is None or (hf is None and remote is None):
        return None
    features = spec["features"]
    local, config_gaps = None, ()
    if hf is not None:
        config_class, reference_class = hf["config_class"], hf["model_class"]
        fields = declared_config_fields(config_class)
    else:
        local, config_gaps = local_config(spec, remote)
        config_class, reference_class = local.class_name, remote["model_class"].partition(".")[2]
        fields = frozenset(f.name for f in local.fields)
    tensors = inventory["tensors"]
    num_layers = features["num_layers"] or 0
    rows, gaps = checkpoint_tables([t["name"] for t in tensors], num_layers)
    layer0 = frozenset(r.hf[len(LAYER_PREFIX) :] for r in rows if r.hf.startswith(LAYER_PREFIX))
    att = features["attention"]
    dims = {
        "vocab": features["vocab_size"],
        "hidden": features["hidden_size"],
        "intermediate": features["mlp"]["intermediate_size"],
        "q": (att["num_heads"] or 0) * (att["head_dim"] or 0) or None,
        "kv": (att["num_kv_heads"] or 0) * (att["head_dim"] or 0) or None,
        "head_dim": att["head_dim"],
    }
    gaps = [*gaps, *check_shapes(tensors, rows, dims), *config_gaps]
    attention = attention_layout(features, layer0, fields)
    if features["norm"]["type"] != "rms" or not features["norm"]["eps_attr"]:
        gaps.append("the dense template builds RMSNorm with a config epsilon; this model normalises differently")
    if not features["mlp"]["gated"]:
        gaps.append("the dense template builds a gated MLP (gate_proj, up_proj, down_proj)")
    gaps += [f"not implemented: {u}" for u in features.get("unsupported", ())]
    names = class_names(spec["class_prefix"], spec["architecture"])
    third_party, nemo = _model_imports(attention, config_class, local is not None)
    compared = tuple(
        (label, path)
        for label, path, needs in COMPARED_MODULES
        if needs is None or (needs == "qk_norm" and attention.qk_norm)
    )
    return DenseLayout(
        config_class=config_class,
        reference_class=reference_class,
        reference_alias=f"HF{reference_class}",
        classes=names,
        attention=attention,
        mlp=mlp_layout(features, layer0),
        norm_eps=f"config.{features['norm']['eps_attr'] or 'rms_norm_eps'}",
        padding_idx="config.pad_token_id" if "pad_token_id" in fields else "None",
        tied="lm_head.weight" in inventory.get("tied", ()),
        tensors=rows,
        dimensions=DIMENSIONS,
        compared_modules=compared,
        model_imports=third_party,
        model_nemo_imports=nemo,
        gaps=tuple(dict.fromkeys(gaps)),
        local_config=local,
        reference_config_alias=f"HF{remote['config_class'].partition('.')[2]}" if remote is not None else None,
    )
