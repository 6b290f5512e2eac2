"""The Hugging Face reference implementation: its classes, its resolved config and its parameter inventory.

This is the only spec module that imports torch and transformers, and it does so lazily: classifying without
the inventory never loads either. The reference model is built on the ``meta`` device, so no weights are
allocated and nothing is downloaded. Remote code (``auto_map``) is imported only on request
(``--trust-remote-code``), and only from a local checkpoint folder: then that folder's own classes are the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel_onboard.errors import OnboardError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ROUTED_EXPERT = re.compile(r"\.experts\.\d+\.")
# The auto_map entries a causal LM's reference needs: (auto_map key, what it names).
REMOTE_ENTRIES = (("AutoConfig", "config"), ("AutoModelForCausalLM", "model"))


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ExpertsCode:
    """How the reference's routed experts compute, as transformers declares it on its experts module."""

    concatenated: bool  # gate and up stored [gate; up]; False: interleaved [g0, u0, g1, u1, ...]
    transposed: bool  # weights stored [in, out] rather than [out, in]
    bias: bool
    custom_gate: bool  # the class replaces transformers' act(gate) * up
    alpha: float | None  # a clamped GLU's gate slope and clamp limit (GPT-OSS's), when the class sets them
    limit: float | None


@dataclass(frozen=True)
class ClassRef:
    """A class of transformers, by the module that defines it."""

    module: str
    name: str


@dataclass(frozen=True)
class MultimodalCode:
    """The reference's multimodal model (``model``): its non-text parts and the methods that join them to the text."""

    model: ClassRef  # e.g. transformers' LlavaModel
    text_attribute: str  # the text model's attribute ("language_model")
    text_config: ClassRef
    vision_config: ClassRef | None
    # (attribute, class, the config it is built from: "config" or a sub-config such as "config.vision_config") of the
    # vision tower, the projector, ...
    parts: tuple[tuple[str, ClassRef, str], ...]
    part_inputs: tuple[tuple[str, tuple[str, ...]], ...]  # (attribute, its forward's parameter names)
    text_inputs: tuple[str, ...]  # the text model's forward's parameter names (what the multimodal model hands it)
    methods: tuple[str, ...]  # what the class itself defines (forward, get_image_features, ...), in order
    state: tuple[str, ...]  # instance attributes it starts as None (caches such as Qwen2-VL's rope_deltas)
    image_inputs: tuple[str, ...]  # get_image_features' keyword inputs after pixel_values (image_sizes, ...)
    # (prefix in the model, prefix in the checkpoint) of the text model, each part and the head: save_pretrained
    # renames whole sub-models (``model.language_model.`` <-> ``language_model.model.``, ``model.visual.`` <->
    # ``visual.``).
    prefixes: tuple[tuple[str, str], ...] = ()
    # Modules of the parts holding tables the reference computes rather than loads (a vision tower's RoPE
    # frequencies): transformers builds them in float32 whatever the dtype, so a cast must leave them.
    computed_tables: tuple[str, ...] = ()
    vision_model_type: str | None = None  # the vision config class's, which config.json may leave out
    # Parameters of the multimodal model itself (LLaVA-NeXT's image_newline): (name, each dimension as a config
    # expression, None where no config size gives it).
    own_parameters: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    # Parameters of parts that are not transformers models, held by modules other than linears, convolutions,
    # embeddings and norms (Gemma 3's projection matrix): the generated model initialises them by name.
    bare_parameters: tuple[str, ...] = ()
    # Plain attributes its __init__ sets from the config (Idefics2's ``self.image_seq_len = config.perceiver_config.
    # resampler_n_latents``), read from the class's source: (name, the expression over ``config``).
    settings: tuple[tuple[str, str], ...] = ()
    unsettled: tuple[str, ...] = ()  # plain attributes it holds that no such assignment gives
    uses_dtype: bool = False  # its methods read ``self.dtype`` (a PreTrainedModel property)
    # Each non-text part's layer count as a config expression (None where no count field gives it), for the parts
    # with lists of layers: the vision tower's, a perceiver resampler's.
    part_layers: tuple[tuple[str, str | None], ...] = ()
    # A part that is a model of the family itself (Idefics2's vision transformer): its ``_init_weights`` is the
    # family's, which also knows the other parts' own tensors (a resampler's latents).
    family_initialiser: str | None = None
    # The parts are the top-level class's own, its text part a causal LM with the head (Llama 4's): its forward, which
    # returns logits, cannot be taken over; the generated model joins images and text as it does.
    headless: bool = False
    # Where the reference holds its text model and head, in its own module paths (its modules the tests hook).
    reference_text: tuple[str, str] = ("model.language_model.", "lm_head.")
    # get_image_features applies the projector (False: the forward does, on its output, as Llama 4's).
    projects_features: bool = True
    # The parts hold complex tables (Llama 4's vision RoPE, ``freqs_ci``), which a cast to a real dtype would ruin.
    complex_buffers: bool = False


@dataclass(frozen=True)
class Probes:
    """Facts of the reference's code that neither the config nor the tensor names show, measured on ``meta``."""

    supports_sdpa: bool  # the reference runs under transformers' SDPA attention
    rotary_width: int | None  # the last dim of its RoPE tables (half the rotated dims when it stores one per pair)
    experts: ExpertsCode | None = None
    multimodal: MultimodalCode | None = None
    # Multimodal RoPE: how many rotary frequencies follow the temporal, height and width grids, measured on the
    # full-size RoPE (a config class may leave them to its model's code: Qwen2-VL's default sections).
    mrope_sections: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Inventory:
    """Checkpoint-format tensors of the reference model (what ``save_pretrained`` writes), and counts."""

    model_class: str
    config_class: str
    tensors: tuple[Tensor, ...]
    total_params: int
    active_params: int | None
    tied: tuple[str, ...]
    probes: Probes | None = None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.tensors}


@dataclass(frozen=True)
class ReferenceClasses:
    config_class: str
    model_class: str | None
    missing_reason: str | None


def reference_classes(architecture: str, model_type: str | None) -> ReferenceClasses | None:
    """The transformers config and model classes for a config, or None when transformers has no config class."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        return None
    config_class = CONFIG_MAPPING[model_type].__name__
    if not IDENTIFIER.fullmatch(architecture):
        return ReferenceClasses(config_class, None, f"architecture {architecture!r} is not a class name")
    import transformers

    model_cls = getattr(transformers, architecture, None)
    if not _is_model_class(model_cls):
        # Hub files sometimes spell the class differently from transformers (JetMoE vs JetMoe); transformers
        # itself loads by model_type, so follow its auto mappings for the same head.
        from transformers.models.auto import modeling_auto

        table = (
            modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            if architecture.endswith(("ForConditionalGeneration", "ForImageTextToText"))
            else modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        )
        name = table.get(model_type)
        model_cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if not _is_model_class(model_cls):
        return ReferenceClasses(
            config_class, None, f"transformers {transformers.__version__} has no class {architecture}"
        )
    return ReferenceClasses(config_class, model_cls.__name__, None)


def _is_model_class(obj: Any) -> bool:
    import transformers

    return isinstance(obj, type) and issubclass(obj, transformers.PreTrainedModel)


def build_config(raw: Mapping[str, Any], model_type: str) -> Any:
    """A transformers config object from a plain dict (the reference's own validation applies)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    data = {k: v for k, v in raw.items() if k != "auto_map"}
    try:
        return CONFIG_MAPPING[model_type].from_dict(data)
    except Exception as exc:  # the reference rejects values in many ways; all are the config's fault
        raise OnboardError(
            f"transformers' {CONFIG_MAPPING[model_type].__name__} rejects this config: {exc}",
            where="config.json",
            fix="correct the field named above",
            code="config-rejected",
        ) from exc


def resolved_text_config(raw: Mapping[str, Any], model_type: str, text_key: str | None) -> dict[str, Any]:
    """The text config with the config class's defaults filled in (sparse sub-configs rely on them)."""
    config = build_config(raw, model_type)
    text = config.get_text_config() if text_key != "" else config
    resolved = text.to_dict()
    # Keep the user's spelling of a fact beside the class's when both exist, so reasons can cite the file.
    source = raw.get(text_key) if text_key else raw
    if isinstance(source, Mapping):
        for key, value in source.items():
            resolved.setdefault(key, value)
    return resolved


def _checkpoint_state(model: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Parameters and persistent buffers in checkpoint format; tied aliases dropped as save_pretrained does."""
    from transformers.core_model_loading import revert_weight_conversion

    seen: dict[int, str] = {}
    tied: list[str] = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.append(name)
        else:
            seen[id(param)] = name
    state = {k: v for k, v in model.state_dict().items() if k not in tied}
    return revert_weight_conversion(model, state), tuple(tied)


def build_inventory(raw: Mapping[str, Any], model_type: str, classes: ReferenceClasses) -> Inventory:
    """Instantiate the reference on the meta device and list its checkpoint-format tensors."""
    import transformers

    assert classes.model_class is not None
    config = build_config(raw, model_type)
    return _inventory(getattr(transformers, classes.model_class), config, classes.config_class)


def _build(model_cls: type, config: Any) -> Any:
    import torch

    try:
        with torch.device("meta"):
            return model_cls(config)
    except Exception as exc:
        raise OnboardError(
            f"the reference {model_cls.__name__} cannot be built from this config: {type(exc).__name__}: {exc}",
            where="config.json",
            fix="check the sizes in config.json against the model family's requirements",
            code="config-rejected",
        ) from exc


def _tensors(model: Any) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    state, tied = _checkpoint_state(model)
    return {
        name: Tensor(name, tuple(int(d) for d in value.shape), str(value.dtype).removeprefix("torch."))
        for name, value in state.items()
    }, tied


# Config attributes of the routed-expert count, as transformers' config classes name it.
EXPERT_COUNTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
FEW_EXPERTS = 8  # built as they are; more are built as few and the rest derived


def _with_experts(config: Any, count: int) -> Any:
    import copy

    reduced = copy.deepcopy(config)
    text = reduced.get_text_config()
    for attr in EXPERT_COUNTS:
        if isinstance(getattr(text, attr, None), int):
            setattr(text, attr, count)
    return reduced


def _expert_count(config: Any) -> tuple[int, int, int]:
    """(routed experts, top-k, expert group size): what a reduced build must keep valid."""
    text = config.get_text_config()
    experts = next((v for a in EXPERT_COUNTS if isinstance(v := getattr(text, a, None), int)), 0)
    top_k = next((v for a in ("num_experts_per_tok", "moe_top_k") if isinstance(v := getattr(text, a, None), int)), 1)
    groups = getattr(text, "n_group", None)
    return experts, top_k, groups if isinstance(groups, int) and groups > 0 else 1


def _derived_tensors(model_cls: type, config: Any) -> tuple[dict[str, Tensor], tuple[str, ...], Any] | None:
    """The checkpoint tensors of a many-expert model from two builds with few experts; None if they do not agree.

    Builds with ``a`` and ``b`` experts differ exactly in what repeats per expert: names with an expert index past
    ``a`` (written for every index) and dimensions that are ``a`` in one and ``b`` in the other (the real count).
    """
    experts, top_k, groups = _expert_count(config)
    a = groups * -(-max(top_k, 2) // groups)
    b = a + groups
    if experts <= max(FEW_EXPERTS, b):
        return None
    model = _build(model_cls, _with_experts(config, a))
    small, tied = _tensors(model)
    large, _ = _tensors(_build(model_cls, _with_experts(config, b)))
    per_expert: dict[str, Tensor] = {}  # name with "{}" at the expert index -> tensor of index 0
    for name in set(large) - set(small):
        parts = name.split(".")
        # The expert index is the number past ``a`` whose lower values name tensors of the small build.
        patterns = [
            pattern
            for i, part in enumerate(parts)
            if part.isdigit()
            and a <= int(part) < b
            and all((pattern := ".".join([*parts[:i], "{}", *parts[i + 1 :]])).format(j) in small for j in range(a))
        ]
        if len(patterns) != 1:
            return None
        per_expert[patterns[0]] = small[patterns[0].format(0)]
    derived: dict[str, Tensor] = {}
    indexed = {pattern.format(j) for pattern in per_expert for j in range(a)}
    for name, tensor in small.items():
        if name in indexed:
            continue
        other = large.get(name)
        if other is None or len(other.shape) != len(tensor.shape):
            return None
        shape = []
        for x, y in zip(tensor.shape, other.shape, strict=True):
            if (x, y) == (a, b):
                shape.append(experts)
            elif x == y:
                shape.append(x)
            else:
                return None
        derived[name] = Tensor(name, tuple(shape), tensor.dtype)
    for pattern, first in per_expert.items():
        for j in range(experts):
            name = pattern.format(j)
            derived[name] = Tensor(name, first.shape, first.dtype)
    return derived, tied, model


def _inventory(model_cls: type, config: Any, config_class: str) -> Inventory:
    found = _derived_tensors(model_cls, config)
    if found is None:
        model = _build(model_cls, config)
        state, tied = _tensors(model)
    else:
        state, tied, model = found
    tensors = tuple(state[name] for name in sorted(state))
    total = sum(_numel(t.shape) for t in tensors)
    return Inventory(
        model_class=model_cls.__name__,
        config_class=config_class,
        tensors=tensors,
        total_params=total,
        active_params=_active(tensors, total, config),
        tied=tied,
        probes=_probe(model, config, tuple(state)),
    )


def _probe(model: Any, config: Any, checkpoint_names: tuple[str, ...]) -> Probes:
    """Measure the reference built on ``meta``: nothing is computed but shapes, and nothing is allocated."""
    import torch

    width = None
    # The text model's RoPE (a vision tower can have its own).
    rotaries = [(name, m) for name, m in model.named_modules() if name.endswith("rotary_emb")]
    rotaries.sort(key=lambda item: not any(a in item[0] for a in TEXT_ATTRIBUTES))
    rotary = rotaries[0][1] if rotaries else None
    if rotary is not None:
        hidden = getattr(config.get_text_config(), "hidden_size", 8)
        x = torch.empty(1, 2, hidden, device="meta")
        try:
            cos, _ = rotary(x, torch.arange(2, device="meta")[None])
            width = int(cos.shape[-1])
        except Exception:  # a RoPE type whose tables depend on values (dynamic, longrope) is not measured
            width = None
    experts = next((m for m in model.modules() if hasattr(m, "is_concatenated") and hasattr(m, "has_bias")), None)
    code = None
    if experts is not None:
        from transformers.integrations.moe import _default_apply_gate

        alpha, limit = getattr(experts, "alpha", None), getattr(experts, "limit", None)
        code = ExpertsCode(
            concatenated=bool(experts.is_concatenated),
            transposed=bool(experts.is_transposed),
            bias=bool(experts.has_bias),
            custom_gate=getattr(type(experts), "_apply_gate", _default_apply_gate) is not _default_apply_gate,
            alpha=float(alpha) if isinstance(alpha, (int, float)) else None,
            limit=float(limit) if isinstance(limit, (int, float)) else None,
        )
    return Probes(
        supports_sdpa=bool(getattr(model, "_supports_sdpa", False)),
        rotary_width=width,
        experts=code,
        multimodal=_multimodal(model, checkpoint_names),
        mrope_sections=_mrope_sections(rotary) if rotary is not None else None,
    )


def _mrope_sections(rotary: Any) -> tuple[int, ...] | None:
    """Per position grid, the rotary frequencies that move with it alone, on the RoPE rebuilt on the CPU at full size
    (only its inverse frequencies); None when it takes one grid."""
    import torch

    try:
        with torch.device("cpu"):
            axes = grid_axes(type(rotary)(getattr(rotary, "config", None)))
    except Exception:  # a RoPE that cannot be rebuilt from its config alone
        return None
    return tuple(axes.count(axis) for axis in range(3)) if axes is not None else None


def grid_axes(rotary: Any, frequencies: int | None = None) -> list[int] | None:
    """Which position grid (temporal, height, width) each of the first ``frequencies`` rotary frequencies follows,
    measured by moving one grid's position at a time; None when the RoPE does not take three grids, or a frequency
    follows none or several."""
    import torch

    moved = []
    for axis in range(3):
        positions = torch.zeros(3, 1, 1, dtype=torch.long)
        positions[axis] = 1
        try:
            _, sin = rotary(torch.zeros(1, 1, 8), positions)
        except Exception:  # not a RoPE over three grids
            return None
        if sin.shape[:2] != (1, 1):  # three rows of one grid each: not a multimodal RoPE
            return None
        # Sines: the lowest frequencies' cosines round to 1.
        moved.append(sin[0, 0, : frequencies or sin.shape[-1] // 2] != 0)
    if not all(sum(int(m[d]) for m in moved) == 1 for d in range(len(moved[0]))):
        return None
    return [next(a for a in range(3) if moved[a][d]) for d in range(len(moved[0]))]


TEXT_ATTRIBUTES = ("language_model", "text_model")
# A headless reference's methods about its head, decoder and generation, which the generated model does not take over.
HEAD_METHODS = frozenset(
    {
        "forward",
        "get_output_embeddings",
        "set_output_embeddings",
        "get_decoder",
        "set_decoder",
        "prepare_inputs_for_generation",
    }
)
# Config fields that count a part's layers (a vision tower's, a resampler's).
LAYER_COUNTS = ("num_hidden_layers", "depth", "num_layers", "resampler_depth")
# The names transformers gives a part's list of layers (other module lists, such as Qwen3-VL's per-layer feature
# mergers, are counted by other fields).
LAYER_LISTS = ("layers", "blocks", "layer")


def _class_ref(obj: Any) -> ClassRef:
    return ClassRef(type(obj).__module__, type(obj).__name__)


def _prefix_pair(in_model: str, checkpoint_names: tuple[str, ...]) -> tuple[str, str] | None:
    """The prefixes that differ between a tensor's name in the model and in the checkpoint (same tail)."""
    parts = in_model.split(".")
    for cut in range(1, len(parts)):
        tail = ".".join(parts[cut:])
        found = [n for n in checkpoint_names if n == tail or n.endswith("." + tail)]
        if len(found) == 1:
            return ".".join(parts[:cut]) + ".", found[0][: len(found[0]) - len(tail)]
    return None


def _multimodal(model: Any, checkpoint_names: tuple[str, ...]) -> MultimodalCode | None:
    """The parts of an image-text reference's inner model, and what its class defines to join them."""
    import inspect

    import torch

    inner, root = getattr(model, "model", None), "model."
    children = dict(inner.named_children()) if inner is not None else {}
    text = next((a for a in TEXT_ATTRIBUTES if a in children), None)
    headless = False
    if text is None:  # Llama 4: the top-level class holds the parts, its text part a causal LM with the head
        children = dict(model.named_children())
        text = next(
            (a for a in TEXT_ATTRIBUTES if isinstance(getattr(children.get(a), "model", None), torch.nn.Module)), None
        )
        if text is None:
            return None
        inner, root, headless = model, "", True
    cls = type(inner)
    methods = tuple(
        k
        for k, v in vars(cls).items()
        if inspect.isfunction(v) and not k.startswith("_") and not (headless and k in HEAD_METHODS)
    )
    base = set(vars(children[text]))  # what every transformers model holds; the rest is this class's own state
    settings = _config_settings(cls)
    own_state = {k: v for k, v in vars(inner).items() if k not in base and not k.startswith("_")}
    if headless:  # the top-level class's own attributes serve its head too: those the methods taken over read
        used = "".join(_source(vars(cls)[k]) for k in methods)
        settings = tuple((k, v) for k, v in settings if f"self.{k}" in used)
        own_state = {k: v for k, v in own_state.items() if f"self.{k}" in used}
    state = tuple(k for k, v in own_state.items() if v is None and k not in dict(settings))
    plain = (bool, int, float, str)
    unsettled = tuple(k for k, v in own_state.items() if isinstance(v, plain) and k not in dict(settings))
    config = model.config
    subconfigs = {attr: getattr(config, attr) for attr in getattr(config, "sub_configs", {}) if hasattr(config, attr)}

    def built_from(part: Any) -> str:
        own = getattr(part, "config", None)
        attr = next((a for a, sub in subconfigs.items() if own is not None and own is sub), None)
        return f"config.{attr}" if attr else "config"

    parts = tuple((a, _class_ref(m), built_from(m)) for a, m in children.items() if a != text)
    vision = subconfigs.get("vision_config")
    sizes = {
        "config.text_config.hidden_size": getattr(config.get_text_config(), "hidden_size", None),
        "config.vision_config.hidden_size": getattr(vision, "hidden_size", None),
    }

    def dimensions(shape: tuple[int, ...]) -> tuple[str, ...] | None:
        found = [next((expr for expr, size in sizes.items() if size == d), None) for d in shape]
        return None if None in found else tuple(str(f) for f in found)

    own = tuple((n, dimensions(tuple(p.shape))) for n, p in inner.named_parameters(recurse=False))
    counts: dict[str, list[int]] = {}
    for attr in subconfigs:
        for field in LAYER_COUNTS:
            value = getattr(subconfigs[attr], field, None)
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and subconfigs[attr] is not config.get_text_config()
            ):
                counts.setdefault(f"config.{attr}.{field}", []).append(value)

    def layer_lists(part: Any) -> list[Any]:
        return [
            m
            for name, m in part.named_modules()
            if isinstance(m, torch.nn.ModuleList) and name.rpartition(".")[2] in LAYER_LISTS
        ]

    def layer_count(part: Any) -> str | None:
        lengths = {len(m) for m in layer_lists(part)}
        if len(lengths) != 1:
            return None
        found = [expr for expr, values in counts.items() if values == [*lengths]]
        return found[0] if len(found) == 1 else None

    family = next((k for k in type(inner).__mro__[1:] if "_init_weights" in vars(k)), None)
    generic = family is None or family.__module__ == "transformers.modeling_utils"
    initialiser = next((a for a, m in children.items() if a != text and not generic and isinstance(m, family)), None)
    part_layers = tuple((a, layer_count(m)) for a, m in children.items() if a != text and layer_lists(m))
    inputs = tuple((a, tuple(inspect.signature(m.forward).parameters)) for a, m in children.items() if a != text)
    text_model = children[text].model if headless else children[text]
    text_inputs = tuple(inspect.signature(text_model.forward).parameters)
    image_inputs: tuple[str, ...] = ()
    if "get_image_features" in vars(cls):
        parameters = list(inspect.signature(vars(cls)["get_image_features"]).parameters.values())[2:]
        image_inputs = tuple(p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD)
    prefixes = []
    # (the generated model's prefix, the reference's): the same but for a headless reference's text model, which is
    # its causal LM's ``model``.
    groups = [(f"model.{a}.", f"{root}{a}." + ("model." if headless and a == text else "")) for a in children]
    groups += [(f"model.{n}", f"{root}{n}") for n, _ in own]
    for ours, group in groups:
        name = next((n for n in model.state_dict() if n.startswith(group)), None)
        pair = _prefix_pair(name, checkpoint_names) if name is not None else None
        if pair is not None and group.startswith(pair[0]):
            prefixes.append((ours, pair[1] + group[len(pair[0]) :]))
    head = [n for n in checkpoint_names if n == "lm_head.weight" or n.endswith(".lm_head.weight")]
    lm_head = getattr(model, "lm_head", None)
    if not head and lm_head is not None:
        # Tied, the head is not saved; untied (a pipeline's checkpoint), it is saved under this name.
        from transformers.core_model_loading import revert_weight_conversion

        head = list(revert_weight_conversion(model, {"lm_head.weight": lm_head.weight}))
    if len(head) == 1:
        prefixes.append(("lm_head.", head[0].removesuffix("weight")))
    from transformers import PreTrainedModel

    covered = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    bare = tuple(
        f"{a}.{name}.{p}".replace("..", ".")
        for a, part in children.items()
        if a != text and not isinstance(part, PreTrainedModel)
        for name, module in part.named_modules()
        # A transformers norm has no reset_parameters (the generated initialisation resets those that have).
        if not isinstance(module, covered) and not hasattr(module, "reset_parameters")
        for p, _ in module.named_parameters(recurse=False)
    )
    image_source = _source(vars(cls).get("get_image_features"))
    projected = headless and any(a in image_source for a in children if a != text and a != parts[0][0])
    return MultimodalCode(
        model=_class_ref(inner),
        headless=headless,
        reference_text=(f"{text}.model.", f"{text}.lm_head.") if headless else (f"model.{text}.", "lm_head."),
        projects_features=not headless or projected,
        complex_buffers=any(b.is_complex() for a, part in children.items() if a != text for b in part.buffers()),
        bare_parameters=bare,
        text_attribute=text,
        text_config=_class_ref(config.get_text_config()),
        vision_config=_class_ref(vision) if vision is not None else None,
        vision_model_type=getattr(vision, "model_type", None) if vision is not None else None,
        own_parameters=own,
        settings=settings,
        unsettled=unsettled,
        uses_dtype="self.dtype" in _source(cls),
        part_layers=part_layers,
        family_initialiser=initialiser,
        parts=parts,
        part_inputs=inputs,
        text_inputs=text_inputs,
        methods=methods,
        state=state,
        image_inputs=image_inputs,
        prefixes=tuple(prefixes),
        computed_tables=tuple(
            sorted(
                {
                    f"{a}.{name}".strip(".").rsplit(".", 1)[-1]
                    for a, part in children.items()
                    if a != text
                    for name, module in part.named_modules()
                    if any(module._buffers[b].is_floating_point() for b in module._non_persistent_buffers_set)
                }
            )
        ),
    )


def _source(obj: Any) -> str:
    import inspect

    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _config_settings(cls: type) -> tuple[tuple[str, str], ...]:
    """``self.NAME = config.a.b`` (or ``self.config.a.b``) assignments in ``cls.__init__``: (NAME, "config.a.b")."""
    import ast
    import textwrap

    source = _source(vars(cls).get("__init__"))
    if not source:
        return ()
    found = []
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, chain, value = node.targets[0], [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        is_self = isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"
        if not is_self or not isinstance(value, ast.Name) or not chain:
            continue
        if value.id == "self" and chain[0] == "config":
            chain = chain[1:]
        elif value.id != "config":
            continue
        if chain:
            found.append((target.attr, ".".join(["config", *chain])))
    return tuple(found)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _active(tensors: tuple[Tensor, ...], total: int, config: Any) -> int | None:
    routed = [t for t in tensors if ROUTED_EXPERT.search(t.name)]
    if not routed:
        return None
    text = config.get_text_config()
    experts = next(
        (getattr(text, a) for a in ("num_local_experts", "num_experts", "n_routed_experts") if hasattr(text, a)), None
    )
    top_k = next((getattr(text, a) for a in ("num_experts_per_tok", "moe_top_k") if hasattr(text, a)), None)
    if not experts or not top_k:
        return None
    routed_total = sum(_numel(t.shape) for t in routed)
    return total - routed_total + routed_total * top_k // experts


# A tiny config's reference has thousands to a few million parameters. One with more kept a size the shrinking did not
# reach (a nested config it does not know: Fuyu's text model), and building it on the CPU could exhaust the memory.
TINY_PARAMETER_LIMIT = 50_000_000


def instantiate_tiny(tiny: Mapping[str, Any], model_type: str, model_class: str, *, device: str = "meta") -> Any:
    """The reference model for the tiny config (on ``meta`` to count, on ``cpu`` to run)."""
    import transformers

    return _build_tiny(getattr(transformers, model_class), build_config(tiny, model_type), device)


def _build_tiny(model_cls: type, config: Any, device: str) -> Any:
    import torch

    if device != "meta":
        total = sum(p.numel() for p in _build_tiny(model_cls, config, "meta").parameters())
        if total > TINY_PARAMETER_LIMIT:
            raise OnboardError(
                f"the shrunken test config still builds a {total:,}-parameter {model_cls.__name__}: a size in this "
                "config is out of reach of the shrinking (a nested config it does not know)",
                where="config.json",
                fix="this architecture cannot be onboarded until the tiny-config shrinking covers the field that "
                "sizes it; report the model type",
                code="tiny-config-too-large",
            )
    with torch.device(device):
        return model_cls(config)


@dataclass(frozen=True)
class RemoteCode:
    """The checkpoint folder's own reference classes, as ``auto_map`` names them (``module.Class``)."""

    folder: str
    config_class: str
    model_class: str


def remote_code(auto_map: Mapping[str, Any], folder: Path | None, where: str) -> RemoteCode:
    """Check that ``auto_map`` names modules in the local ``folder``; imports nothing."""
    fix = (
        "pass the local checkpoint folder that holds config.json and the modules auto_map names "
        "(e.g. a download of the model repository); this tool never downloads code"
    )
    if folder is None:
        raise OnboardError(
            "--trust-remote-code needs the checkpoint folder that holds the model's code, not a config.json or a "
            "Hub id",
            where=where,
            fix=fix,
            code="remote-code-needs-folder",
        )
    refs = {}
    for key, role in REMOTE_ENTRIES:
        ref = auto_map.get(key)
        if not isinstance(ref, str):
            raise OnboardError(
                f"auto_map has no {key} entry, so the {role} class of the remote code is unknown",
                where=f"{where}: auto_map",
                fix=f'add "{key}": "module.Class" naming the {role} class in the folder',
                code="remote-code-needs-folder",
            )
        if "--" in ref:
            raise OnboardError(
                f"auto_map.{key} {ref[:120]!r} points at code in another repository",
                where=f"{where}: auto_map.{key}",
                fix="put that repository's module beside config.json and name it as module.Class; " + fix,
                code="remote-code-needs-folder",
            )
        module, _, name = ref.partition(".")
        if not (IDENTIFIER.fullmatch(module) and IDENTIFIER.fullmatch(name)):
            raise OnboardError(
                f"auto_map.{key} {ref[:120]!r} is not of the form module.Class",
                where=f"{where}: auto_map.{key}",
                fix="name a module file of the folder and a class in it, e.g. modeling_toy.ToyForCausalLM",
                code="invalid-value",
            )
        if not (folder / f"{module}.py").is_file():
            raise OnboardError(
                f"auto_map.{key} names {module}.py, which the folder does not hold",
                where=str(folder),
                fix=fix,
                code="remote-code-needs-folder",
            )
        refs[role] = ref
    return RemoteCode(str(folder.resolve()), refs["config"], refs["model"])


def remote_classes(remote: RemoteCode) -> tuple[type, type]:
    """Import the folder's config and model classes (this runs the folder's code), as trust_remote_code does."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    loaded = []
    for ref in (remote.config_class, remote.model_class):
        try:
            loaded.append(get_class_from_dynamic_module(ref, remote.folder, local_files_only=True))
        except Exception as exc:  # the folder's code can fail in any way
            raise OnboardError(
                f"the remote code {ref} cannot be loaded: {type(exc).__name__}: {exc}",
                where=remote.folder,
                fix="fix the module (or install what it imports), then retry",
                code="remote-code-failed",
            ) from exc
    config_cls, model_cls = loaded
    if not _is_model_class(model_cls):
        raise OnboardError(
            f"{remote.model_class} is not a transformers PreTrainedModel",
            where=remote.folder,
            fix="point auto_map.AutoModelForCausalLM at the causal LM class",
            code="remote-code-failed",
        )
    return config_cls, model_cls


def remote_config(raw: Mapping[str, Any], config_cls: type) -> Any:
    data = {k: v for k, v in raw.items() if k != "auto_map"}
    try:
        return config_cls.from_dict(data)
    except Exception as exc:
        raise OnboardError(
            f"the remote {config_cls.__name__} rejects this config: {type(exc).__name__}: {exc}",
            where="config.json",
            fix="correct the field named above",
            code="config-rejected",
        ) from exc


@dataclass(frozen=True)
class RemoteReference:
    code: RemoteCode
    inventory: Inventory
    resolved: dict[str, Any]  # the config with the remote class's defaults filled in
    config_defaults: dict[str, Any]  # the remote config class's own fields and their defaults (JSON data)


def remote_reference(raw: Mapping[str, Any], remote: RemoteCode) -> RemoteReference:
    """The inventory, resolved config and config defaults of the folder's own classes."""
    from transformers import PreTrainedConfig

    config_cls, model_cls = remote_classes(remote)
    config = remote_config(raw, config_cls)
    resolved = config.to_dict()
    for key, value in raw.items():
        resolved.setdefault(key, value)
    # The class's defaults (save_pretrained writes only what differs from them); keys it does not declare keep the
    # checkpoint's values.
    defaults = config.to_dict()
    try:
        defaults.update(config_cls().to_dict())
    except Exception:  # a class without usable defaults: the checkpoint's own values stand in
        pass
    base = set(PreTrainedConfig().to_dict())
    return RemoteReference(
        code=remote,
        inventory=_inventory(model_cls, config, config_cls.__name__),
        resolved=resolved,
        config_defaults={k: v for k, v in defaults.items() if k not in base and _is_json(v)},
    )


def _is_json(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def instantiate_remote_tiny(tiny: Mapping[str, Any], remote: RemoteCode, *, device: str = "meta") -> Any:
    """The folder's reference model for the tiny config."""
    config_cls, model_cls = remote_classes(remote)
    return _build_tiny(model_cls, remote_config(tiny, config_cls), device)
