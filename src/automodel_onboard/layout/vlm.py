"""The VLM kind's layout: the family's vision tower, projector and image code around a dense or MoE text model of ours.

transformers' multimodal model of the family (``LlavaModel``, ``Qwen2_5_VLModel``, ...) computes the image features,
finds the image tokens and merges the two; what it needs is measured on the reference (``reference.MultimodalCode``).
The generated model holds the same vision tower and projector classes, built from the same configs, takes those
methods over, and puts the dense or MoE kind's text model where transformers has its own: the text layers, which
NeMo AutoModel parallelises, are this tool's, the image path is the family's own code. The checkpoint table maps the
text model through the text kind's rows and the vision tower and projector by their prefixes, tensor by tensor.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automodel_onboard.layout import dense, moe
from automodel_onboard.layout.checkpoint import LAYER, CheckpointTensor, name_pattern
from automodel_onboard.layout.common import ComparedModule, Import, merged, without
from automodel_onboard.model.reference import LAYER_LISTS

if TYPE_CHECKING:
    from automodel_onboard.model.spec import ArchSpec

NEMO_VLM_SYMBOLS: tuple[tuple[str, str], ...] = (
    *(s for s in dense.TEXT_SYMBOLS if s != ("nemo_automodel", "NeMoAutoModelForCausalLM")),
    ("nemo_automodel", "NeMoAutoModelForImageTextToText"),
    (moe.NEMO_UTILS, "cast_model_to_dtype"),
    *dense.MULTI_PROCESS_SYMBOLS,
    *dense.TENSOR_PARALLEL_SYMBOLS,
    # The pipeline test sends the images as NeMo's VLM recipe does.
    ("nemo_automodel.components.datasets.vlm.pp_media", "prepare_vlm_media_for_pp"),
    ("nemo_automodel.components.datasets.vlm.pp_media", "stage_vlm_media_for_pp"),
    *moe.EXPERT_SYMBOLS,  # a MoE text model's
    *dense.RECIPE_LOADER_SYMBOLS,
    ("nemo_automodel.recipes.vlm.finetune", "FinetuneRecipeForVLM"),
    # The recipe test checks the example's freeze settings with NeMo's own parser.
    ("nemo_automodel.components.utils.model_utils", "parse_freeze_config"),
)
# Traits the VLM kind builds beyond its text kind's, which the multimodal model completes: its position grids
# (multimodal RoPE, Qwen2-VL's sections or Qwen3-VL's interleaved ones) and its masks (a prefix or an image attending
# both ways: the text model takes the family's masks and, where none is given, its config's causality).
VLM_TRAITS = frozenset({"mrope", "mrope_interleaved", "bidirectional_attention"})
# How the test images are laid out, by what the vision tower's forward takes (first match): flattened patches with
# their (t, h, w) grids (Qwen2-VL), images of their own size (Pixtral), or square images of the configured size.
# An any-resolution config (TILED) overrides it: each image is cut into tiles of the tower's size (LLaVA-NeXT's).
PIXEL_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("grid_thw", "patches"),
    ("image_sizes", "sized"),
    ("patch_attention_mask", "stacked"),  # images stacked per sample, padded ones masked (Idefics2's)
    ("pixel_values", "square"),
)
TILED = {"image_grid_pinpoints": "tiled"}
# The tokens one test image takes, by the config: (pixel layout, the expression). A square test image is
# ``vision.image_size`` wide, a patch-laid one a (1, side, side) grid; a class token kept adds one (see build).
IMAGE_TOKENS: tuple[tuple[str, str], ...] = (
    ("patches", "side * side // vision.spatial_merge_size**2"),
    ("sized", "(vision.image_size // vision.patch_size) ** 2"),
    ("square", "(vision.image_size // vision.patch_size) ** 2"),
    # The base image, then the grid's features at the test image's resolution (``height`` x ``width``, one of the
    # config's), each row ended by the learned newline.
    ("tiled", "side**2 + (height // vision.patch_size) * (width // vision.patch_size + 1)"),
    # A perceiver resampler gives each image its fixed number of latents.
    ("stacked", "config.perceiver_config.resampler_n_latents"),
)
# The forward's per-token modality input, which a family's positions (Qwen2-VL's mm_token_type_ids) or masks (Gemma
# 3's token_type_ids: an image's tokens attend to each other both ways; PaliGemma's: the prefix does) are computed
# from, and whether the generated forward marks the image tokens in it when a caller passes none: positions need it,
# while the masks' meaning differs between families (image tokens, or a prompt prefix), so theirs stays the caller's.
TOKEN_TYPES: tuple[tuple[str, bool], ...] = (("mm_token_type_ids", True), ("token_type_ids", False))
# Config fields that fix the tokens per image whatever the tower gives (a projector pooling to them: Gemma 3's).
FIXED_IMAGE_TOKENS = ("mm_tokens_per_image",)
# A projector that merges k x k neighbouring patches into one token, by the multimodal config's field (Mistral 3's
# patch merger, Cohere 2 Vision's pixel shuffle; Qwen2-VL's merge is the vision config's, in its "patches" layout).
PATCH_MERGES = ("spatial_merge_size", "downsample_factor")
# A vision tower that shuffles its patches into fewer tokens by a ratio of each side, by the vision config's field
# (Llama 4's pixel shuffle, 0.5: a quarter of the patches).
PATCH_RATIOS = ("pixel_shuffle_ratio",)
# How the family's merge of image features into the text is checked against the prompt's image tokens: its own
# placeholder mask raises on a mismatch (LLaVA's, Qwen2-VL's); an Idefics-style ``inputs_merger`` scatters without
# checking, so the generated model wraps it with the check.
COUNT_CHECKS: tuple[tuple[str, str | None], ...] = (("get_placeholder_mask", None), ("inputs_merger", "inputs_merger"))
# Pipeline parallelism: NeMo AutoModel 0.7.0 stages each micro-batch's images on the first stage's model, split by
# its media chunker, which splits per sample only images laid out one per row (square or sized; LLaVA-NeXT's tiles
# and flattened patches it splits otherwise), and finds the text model by NeMo's names only. Later stages get no
# image grids, so multimodal RoPE positions cannot be rebuilt there.
PIPELINE_LAYOUTS = frozenset({"square", "sized"})
# The per-image input NeMo's chunker hands back as ``image_grid_hws``, by the name the family's image code takes.
GRID_INPUTS = ("image_grid_thw", "image_sizes")
# What the generated text model's forward takes: the decoder's inputs, and DeepStack's (Qwen3-VL's: the features of
# intermediate vision layers added to the first text layers' outputs at the image tokens). The family's multimodal
# model handing its text model anything else is a gap: the generated one would ignore it.
TEXT_INPUTS = frozenset(
    {
        "input_ids",
        "attention_mask",
        "position_ids",
        "past_key_values",
        "inputs_embeds",
        "use_cache",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "cache_position",
        "kwargs",
    }
)
DEEPSTACK_INPUTS = ("visual_pos_masks", "deepstack_visual_embeds")
# Methods the generated multimodal model defines itself rather than takes over.
OWN_METHODS = frozenset({"get_input_embeddings", "set_input_embeddings"})
# NeMo AutoModel's names for the sub-models, given as properties where the family names them otherwise: the family's
# code keeps its own names (which the checkpoint also uses).
NEMO_NAMES = ("vision_tower", "multi_modal_projector", "language_model")
CHANNELS = ("num_channels", "in_channels", "in_chans")
# The vision layer index in a tensor name, under the names transformers gives the layer lists.
VISION_LAYER = re.compile("(?:" + "|".join(rf"(?<=\.{name}\.)" for name in LAYER_LISTS) + r")\d+(?=\.)")


@dataclass(frozen=True)
class Part:
    """A non-text part of the multimodal model (the vision tower, the projector), as transformers builds it."""

    attribute: str
    import_: Import
    alias: str  # its name in the generated code
    config: str  # what it is built from: ``config`` or a sub-config such as ``config.vision_config``
    initialises_itself: bool  # a transformers model, with its own weight initialisation


@dataclass(frozen=True)
class VisionLayout:
    config_class: str  # the multimodal config (the model's config)
    reference_model: Import  # transformers' multimodal model of the family, whose methods the generated one uses
    reference_model_alias: str
    text_attribute: str
    parts: tuple[Part, ...]
    methods: tuple[str, ...]  # what the generated multimodal model takes over from it
    state: tuple[str, ...]  # attributes those methods keep between calls (start as None)
    image_inputs: tuple[str, ...]  # keyword inputs of get_image_features besides pixel_values
    pixel_layout: str  # see PIXEL_LAYOUTS
    # (layer set, its count as a config expression) of the parts with lists of layers: a row of such a part covers
    # the layers of its set (named after the part: "vision_tower", "connector", ...).
    layer_sets: tuple[tuple[str, str], ...]
    checkpoint_prefixes: tuple[tuple[str, str], ...]  # (in the model, in the checkpoint), the text model's first
    channels: str  # expression over ``vision`` (the vision config): an image's channels
    image_tokens: str  # expression: the tokens a test image takes, by the config (``vision``, ``config``, ``side``)
    token_types: str | None  # the forward's per-token modality input (TOKEN_TYPES), which the tests pass
    fills_token_types: bool  # the generated forward marks the image tokens in it when the caller passes none
    # (sub-config, model_type) pairs the implementation was generated for: one architecture name can carry others.
    supported: tuple[tuple[str, tuple[str, ...]], ...] = ()
    computed_tables: tuple[str, ...] = ()  # the parts' modules holding computed float tables (RoPE), kept in fp32
    # The multimodal model's own parameters (LLaVA-NeXT's image_newline): (name, its shape as config expressions).
    own_parameters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # plain attributes the family's methods read: (name, config expression)
    uses_dtype: bool = False  # the family's methods read ``self.dtype``
    checked_merge: str | None = None  # the family's merge method the generated model wraps with a token-count check
    aliases: tuple[tuple[str, str], ...] = ()  # (NeMo AutoModel's name, the family's attribute)
    # The parts without their own initialisation that the family's code initialises (through ``initialiser``, a part
    # that is a model of the family): their tensors outside linears and norms need it.
    family_initialised: tuple[str, ...] = ()
    initialiser: str | None = None
    # Parameters outside linears and resettable norms the generated initialisation starts (path under the top-level
    # model, and "normal", "zeros" or "ones": how the family's own initialisation leaves them).
    parameter_inits: tuple[tuple[str, str], ...] = ()
    pipeline: bool = False  # pipeline stages verified: the forward is stage-aware and takes NeMo's staged images
    grid_input: str | None = None  # the family's per-image input among the image inputs (GRID_INPUTS)
    deepstack: bool = False  # the text model adds intermediate vision features to its first layers' outputs
    headless: bool = False  # the reference's top-level class holds the parts: the generated forward joins them
    projects_features: bool = True  # get_image_features applies the projector (else the generated forward does)
    complex_buffers: bool = False  # the parts hold complex tables, kept as they are through dtype casts


@dataclass(frozen=True)
class VlmLayout(moe.MoeLayout):
    vision: VisionLayout | None = None


def _alias(name: str, taken: set[str]) -> str:
    alias = name if name not in taken else f"HF{name}"
    taken.add(alias)
    return alias


def _text_view(spec: ArchSpec, code: Any) -> ArchSpec:
    """The spec as the text kind sees it: the text config class, the text model's tensors under decoder names."""
    prefixes = dict(code.prefixes)
    text = prefixes.get(f"model.{code.text_attribute}.")
    head = prefixes.get("lm_head.")
    tensors = []
    for tensor in spec.inventory.tensors:
        if text is not None and tensor.name.startswith(text):
            tensors.append(dataclasses.replace(tensor, name="model." + tensor.name[len(text) :]))
        elif head is not None and tensor.name.startswith(head):
            tensors.append(dataclasses.replace(tensor, name="lm_head." + tensor.name[len(head) :]))
    inventory = dataclasses.replace(spec.inventory, tensors=tuple(tensors), config_class=code.text_config.name)
    hf = {"config_class": code.text_config.name, "model_class": spec.hf["model_class"]}
    # The text family's model type: its checkpoint renames (Mixtral's ``block_sparse_moe``) are declared under it.
    model_type = getattr(_class(code.text_config), "model_type", None) or spec.model_type
    return dataclasses.replace(spec, inventory=inventory, hf=hf, layout=None, model_type=model_type)


def _moved(name: str, text: str, head: str) -> str:
    """A text kind's name (``model.*``, ``lm_head.*``) under the multimodal model's text and head prefixes."""
    for ours, prefix in (("model.", text), ("lm_head.", head)):
        if name.startswith(ours):
            return prefix + name[len(ours) :]
    return name


def _vision_rows(spec: ArchSpec, code: Any) -> list[CheckpointTensor]:
    """Rename rows for every tensor of the non-text parts; a vision layer index becomes ``{layer}`` where the
    tensor is in every layer (``0 .. n-1``), else the names stay as they are."""
    text_prefixes = (f"model.{code.text_attribute}.", "lm_head.")
    rows: list[CheckpointTensor] = []
    for ours, theirs in code.prefixes:
        if ours in text_prefixes:
            continue
        names = [t.name for t in spec.inventory.tensors if t.name.startswith(theirs)]
        templates: dict[str, set[int]] = {}
        for name in names:
            match = VISION_LAYER.search(name)
            key = VISION_LAYER.sub(LAYER, name, count=1) if match else name
            templates.setdefault(key, set()).add(int(match.group()) if match else -1)
        for template, indices in sorted(templates.items()):
            per_layer = LAYER in template and len(indices) > 1 and indices == set(range(len(indices)))
            literal = [template] if per_layer or LAYER not in template else []
            literal += [] if literal else [template.replace(LAYER, str(i)) for i in sorted(indices)]
            for name in literal:
                rows.append(
                    CheckpointTensor(
                        ours + name[len(theirs) :], (), hf=(name,), layers=_part(ours) if per_layer else "all"
                    )
                )
    return rows


def _class(ref: Any) -> type:
    import importlib

    return getattr(importlib.import_module(ref.module), ref.name)


def _parameter_inits(spec: ArchSpec, code: Any, family_initialised: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The multimodal model's own parameters, then the bare ones of its parts (those the family's initialiser does
    not reach), each started as the reference starts it: all zero, or drawn."""
    facts = spec.features.code
    starts = {"zeros": facts.zero_parameters, "ones": facts.one_parameters} if facts is not None else {}
    names = [n for n, shape in code.own_parameters if shape is not None]
    names += [n for n in code.bare_parameters if n.split(".", 1)[0] not in family_initialised]
    return tuple(
        (f"model.{n}", next((how for how, found in starts.items() if f"model.{n}" in found), "normal")) for n in names
    )


def _is_model(ref: Any) -> bool:
    from transformers import PreTrainedModel

    return issubclass(_class(ref), PreTrainedModel)


def _vision_fields(code: Any) -> set[str]:
    import inspect

    return set(inspect.signature(_class(code.vision_config).__init__).parameters) if code.vision_config else set()


def _part(prefix: str) -> str:
    """The part a model prefix names: ``model.connector.`` -> ``connector``."""
    return prefix.removeprefix("model.").split(".")[0]


def _supported(spec: ArchSpec, code: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(sub-config, the model types naming its class): the class's own and the one config.json gives, which older
    checkpoints spell otherwise (Idefics2's vision config says "idefics2" for ``idefics2_vision``)."""
    found = []
    for attr, ref in (("text_config", code.text_config), ("vision_config", code.vision_config)):
        own = getattr(_class(ref), "model_type", None) if ref is not None else None
        if not isinstance(own, str):
            continue
        sub = spec.tiny_config.get(attr)
        given = sub.get("model_type") if isinstance(sub, Mapping) else None
        found.append((attr, tuple(dict.fromkeys([own, *([given] if isinstance(given, str) and given else [])]))))
    return tuple(found)


def _image_tokens(layout: str, spec: ArchSpec, vision_fields: set[str]) -> str:
    fixed = next((f for f in FIXED_IMAGE_TOKENS if f in dense.reference_fields(spec)), None)
    if fixed is not None:
        return f"config.{fixed}"
    tokens = dict(IMAGE_TOKENS)[layout]
    merge = next((f for f in PATCH_MERGES if f in dense.reference_fields(spec)), None)
    if merge is not None and layout in ("sized", "square"):
        tokens = f"(vision.image_size // vision.patch_size // config.{merge}) ** 2"
    ratio = next((f for f in PATCH_RATIOS if f in vision_fields), None)
    if ratio is not None and layout == "square":
        tokens = f"int((vision.image_size // vision.patch_size * vision.{ratio}) ** 2)"
    class_token = any(t.name.endswith("class_embedding") for t in spec.inventory.tensors)
    if class_token and "vision_feature_select_strategy" in dense.reference_fields(spec) and layout != "tiled":
        # A CLIP-style tower's class token is among the features unless the strategy drops it ("default"); tiled
        # families lay features out on the patch grid, which has no place for it.
        tokens += ' + int(config.vision_feature_select_strategy == "full")'
    return tokens


def _refused(spec: ArchSpec, reason: str) -> VlmLayout | None:
    """The layout of a model the template cannot build: the text kind's, with ``reason`` among its gaps."""
    text = _text_layout(spec)
    if text is None:
        return None
    fields = {f.name: getattr(text, f.name) for f in dataclasses.fields(text)}
    return VlmLayout(**{**fields, "gaps": (reason, *fields["gaps"])})


def _text_layout(spec: ArchSpec) -> Any:
    """The text model's layout, as its kind builds it."""
    if spec.text_backbone == "moe":
        return moe.build(spec, VLM_TRAITS)
    return dense.build(spec, VLM_TRAITS)


def build(spec: ArchSpec) -> VlmLayout | None:
    """The VLM layout of a spec, or None without a reference inventory."""
    probes = getattr(spec.inventory, "probes", None)
    code = probes.multimodal if probes is not None else None
    if spec.inventory is None or spec.hf is None:
        return None
    if code is None:
        return _refused(spec, "the reference holds no multimodal model (vision tower, projector, text) as 'model'")
    text_spec = _text_view(spec, code)
    text = _text_layout(text_spec)
    if text is None:
        return None
    fields = {f.name: getattr(text, f.name) for f in dataclasses.fields(text)}
    in_model = f"model.{code.text_attribute}."
    by_model = dict(code.prefixes)
    in_checkpoint, head = by_model.get(in_model, "model."), by_model.get("lm_head.", "lm_head.")
    rows = [
        dataclasses.replace(
            r,
            nemo=_moved(r.nemo, in_model, "lm_head."),
            hf=tuple(_moved(source, in_checkpoint, head) for source in r.sources),
        )
        for r in fields["tensors"]
    ]
    vision_rows = _vision_rows(spec, code)
    rows += vision_rows
    taken = {code.text_config.name, spec.hf["config_class"], *dataclasses.astuple(fields["classes"])}
    # One alias per class: two parts of one class (Video-LLaVA's video and image towers) share it.
    part_aliases = {ref: _alias(ref.name, taken) for ref in dict.fromkeys(ref for _, ref, _ in code.parts)}
    parts = tuple(
        Part(attr, Import(ref.module, (ref.name,)), part_aliases[ref], built_from, _is_model(ref))
        for attr, ref, built_from in code.parts
    )
    inputs = dict(code.part_inputs)
    tower = inputs.get(parts[0].attribute, ()) if parts else ()
    tiling = spec.features.vision.tiling if spec.features.vision else None
    pixel_layout = TILED.get(tiling or "") or next((layout for key, layout in PIXEL_LAYOUTS if key in tower), "square")
    reference_model_alias = _alias(f"HF{code.model.name}", taken)
    import inspect

    forward = set(inspect.signature(_class(code.model).forward).parameters)
    checks = [(method, wrapped) for method, wrapped in COUNT_CHECKS if method in code.methods]
    checked_merge = checks[0][1] if checks else None
    family_names = (
        parts[0].attribute if parts else "",
        parts[1].attribute if len(parts) > 1 else "",
        code.text_attribute,
    )
    aliases = tuple((nemo, attr) for nemo, attr in zip(NEMO_NAMES, family_names, strict=True) if attr and nemo != attr)
    deepstack = all(name in code.text_inputs for name in DEEPSTACK_INPUTS)
    pipeline = (
        dict(fields["capabilities"]).get("supports_pp", False)
        and pixel_layout in PIPELINE_LAYOUTS
        and code.text_attribute == "language_model"
        # NeMo's splitter keeps the first stage's parts by its own names: a part the family names otherwise (LightOn
        # OCR's vision_projection) would be dropped there.
        and not aliases
        and not fields["attention"].mrope
        and not isinstance(text, moe.MoeLayout)
        and not deepstack  # the intermediate vision features are not staged
    )
    family_initialised = tuple(p.attribute for p in parts if not p.initialises_itself and code.family_initialiser)
    token_types, fills_token_types = next(((n, fills) for n, fills in TOKEN_TYPES if n in forward), (None, False))
    vision = VisionLayout(
        config_class=spec.hf["config_class"],
        reference_model=Import(code.model.module, (code.model.name,)),
        reference_model_alias=reference_model_alias,
        text_attribute=code.text_attribute,
        parts=parts,
        methods=tuple(m for m in code.methods if m not in OWN_METHODS and m != checked_merge),
        state=code.state,
        image_inputs=code.image_inputs,
        pixel_layout=pixel_layout,
        layer_sets=tuple((part, count) for part, count in code.part_layers if count is not None),
        channels="vision." + next((c for c in CHANNELS if c in _vision_fields(code)), "num_channels"),
        image_tokens=_image_tokens(pixel_layout, spec, _vision_fields(code)),
        token_types=token_types,
        fills_token_types=fills_token_types,
        supported=_supported(spec, code),
        checkpoint_prefixes=((in_model, in_checkpoint), *((o, t) for o, t in code.prefixes if o != in_model)),
        computed_tables=code.computed_tables,
        own_parameters=tuple((name, shape) for name, shape in code.own_parameters if shape is not None),
        settings=code.settings,
        uses_dtype=code.uses_dtype,
        checked_merge=checked_merge,
        aliases=aliases,
        pipeline=pipeline,
        grid_input=next((name for name in GRID_INPUTS if name in code.image_inputs), None),
        deepstack=deepstack,
        headless=code.headless,
        projects_features=code.projects_features,
        complex_buffers=code.complex_buffers,
        family_initialised=family_initialised,
        parameter_inits=_parameter_inits(spec, code, family_initialised),
        initialiser=code.family_initialiser,
    )
    classes = dataclasses.replace(
        fields["classes"], model=f"{spec.class_prefix}TextModel", multimodal=f"{spec.class_prefix}Model"
    )
    theirs = code.reference_text
    compared = tuple(
        ComparedModule(c.label, _moved(c.path, in_model, "lm_head."), _moved(c.reference, *theirs))
        for c in fields["compared_modules"]
    )
    # The parts' classes, transformers' multimodal model (its methods), the model's config; plain modules here.
    model_imports = (
        *without(fields["model_imports"], moe.TRANSFORMERS_MODEL_ONLY),
        Import("transformers", (spec.hf["config_class"],)),
        Import("transformers.loss.loss_utils", ("ForCausalLMLoss",)),
        *(p.import_ for p in parts),
        Import(code.model.module, (f"{code.model.name} as {reference_model_alias}",)),
    )
    nemo_imports = (*fields["model_nemo_imports"], Import(moe.NEMO_UTILS, ("cast_model_to_dtype",)))
    gaps = list(fields["gaps"])
    patterns = [name_pattern(source) for r in rows for source in r.sources]
    uncovered = [t.name for t in spec.inventory.tensors if not any(p.match(t.name) for p in patterns)]
    for name in dict.fromkeys(VISION_LAYER.sub(LAYER, n) for n in uncovered):
        gaps.append(f"checkpoint tensor {name} belongs to no sub-model the vlm template builds")
    if tiling and tiling not in TILED:
        gaps.append(
            f"images tiled at several resolutions ({tiling}): the vlm template tiles by image_grid_pinpoints only"
        )
    counted = {part for part, count in code.part_layers if count is not None}
    for part in sorted({r.layers for r in vision_rows if r.layers != "all" and r.layers not in counted}):
        gaps.append(f"the layers of {part}: no config field counts them")
    for name, shape in code.own_parameters:
        if shape is None:
            gaps.append(f"parameter {name} of the multimodal model has a shape no config size gives")
    for name in code.unsettled:
        gaps.append(f"attribute {name} of the multimodal model is set by code other than a config field")
    if not checks:
        gaps.append("the family's merge of image features has no image-token count to check against the prompt")
    handled = TEXT_INPUTS | (set(DEEPSTACK_INPUTS) if deepstack else set())
    unknown = [name for name in code.text_inputs if name not in handled]
    if unknown:
        gaps.append(f"the family's text model takes inputs the generated one does not: {', '.join(unknown)}")
    towers = [p.attribute for p in parts if p.initialises_itself]
    if len(towers) > 1:  # the parts are laid out as one tower and its projector (NeMo AutoModel's names)
        gaps.append(f"several vision towers ({', '.join(towers)}): the vlm template builds one and its projector")
    if pixel_layout == "stacked" and "perceiver_config" not in spec.tiny_config:
        gaps.append("stacked images without a perceiver resampler: the tokens per image are not derived")
    # The text model's plan under its place in the multimodal model; the vision tower and projector stay whole on
    # every rank (each computes the same image features).
    plan = (
        ()
        if isinstance(text, moe.MoeLayout)
        else tuple((_moved(p, in_model, "lm_head."), s) for p, s in text.tensor_parallel)
    )
    fields.update(
        tensors=tuple(rows),
        classes=classes,
        compared_modules=compared,
        probe=_moved(fields["probe"], in_checkpoint, head),
        model_imports=merged(model_imports),
        model_nemo_imports=merged(nemo_imports),
        gaps=tuple(gaps),
        nemo_native=True,
        experts=isinstance(text, moe.MoeLayout),
        router=_moved(text.router, *theirs) if isinstance(text, moe.MoeLayout) else "",
        embedding=f"{in_model}embed_tokens.weight",
        text_config="config.text_config",
        # Expert parallelism is NeMo's MoE layer's, and the generated suite runs it.
        capabilities=dense.capabilities(
            supports_tp=bool(plan), supports_pp=pipeline, supports_ep=isinstance(text, moe.MoeLayout)
        ),
        tensor_parallel=plan,
        multi_process=True,
        stage_aware=pipeline,
        parallel_probe=_moved(fields["parallel_probe"], in_model, "lm_head."),
        lora_targets=tuple(_moved(t, in_model, "lm_head.") for t in fields["lora_targets"]),
        recipe_run=spec.hf is not None,
        mask_mapping=fields["attention"].sliding == "per_layer",
        reference_class=spec.hf["model_class"],
        reference_alias=f"HF{spec.hf['model_class']}",
        model_config=spec.hf["config_class"],
    )
    return VlmLayout(**fields, vision=vision)
