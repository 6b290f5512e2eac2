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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automodel_onboard.layout import dense, moe
from automodel_onboard.layout.checkpoint import LAYER, CheckpointTensor, name_pattern
from automodel_onboard.layout.common import ComparedModule, Import, merged, without
from automodel_onboard.model.fields import ALIASES

if TYPE_CHECKING:
    from automodel_onboard.model.spec import ArchSpec

NEMO_VLM_SYMBOLS: tuple[tuple[str, str], ...] = (
    *(s for s in dense.TEXT_SYMBOLS if s != ("nemo_automodel", "NeMoAutoModelForCausalLM")),
    ("nemo_automodel", "NeMoAutoModelForImageTextToText"),
    (moe.NEMO_UTILS, "cast_model_to_dtype"),
)
# Traits the VLM kind builds beyond its text kind's: multimodal RoPE (position grids per image, Qwen2-VL's).
VLM_TRAITS = frozenset({"mrope"})
# How the test images are laid out, by what the vision tower's forward takes (first match): flattened patches with
# their (t, h, w) grids (Qwen2-VL), images of their own size (Pixtral), or square images of the configured size.
PIXEL_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("grid_thw", "patches"),
    ("image_sizes", "sized"),
    ("pixel_values", "square"),
)
# The tokens one test image takes, by the config: (pixel layout, the expression). A square test image is
# ``vision.image_size`` wide, a patch-laid one a (1, side, side) grid; a class token kept adds one (see build).
IMAGE_TOKENS: tuple[tuple[str, str], ...] = (
    ("patches", "side * side // vision.spatial_merge_size**2"),
    ("sized", "(vision.image_size // vision.patch_size) ** 2"),
    ("square", "(vision.image_size // vision.patch_size) ** 2"),
)
CHANNELS = ("num_channels", "in_channels", "in_chans")
# The vision layer index in a tensor name, under the names transformers gives the layer lists.
VISION_LAYER = re.compile(r"(?:(?<=\.layers\.)|(?<=\.blocks\.)|(?<=\.layer\.))\d+(?=\.)")


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
    vision_layers: str  # expression: the vision tower's layer count
    checkpoint_prefixes: tuple[tuple[str, str], ...]  # (in the model, in the checkpoint), the text model's first
    channels: str  # expression over ``vision`` (the vision config): an image's channels
    image_tokens: str  # expression: the tokens a test image takes, by the config (``vision``, ``config``, ``side``)
    token_types: str | None  # the forward's per-token modality input (mm_token_type_ids), which its positions need
    # (sub-config, model_type) pairs the implementation was generated for: one architecture name can carry others.
    supported: tuple[tuple[str, str], ...] = ()
    computed_tables: tuple[str, ...] = ()  # the parts' modules holding computed float tables (RoPE), kept in fp32


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
    return dataclasses.replace(spec, inventory=inventory, hf=hf, layout=None)


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
                        ours + name[len(theirs) :], (), hf=(name,), layers="vision" if per_layer else "all"
                    )
                )
    return rows


def _class(ref: Any) -> type:
    import importlib

    return getattr(importlib.import_module(ref.module), ref.name)


def _is_model(ref: Any) -> bool:
    from transformers import PreTrainedModel

    return issubclass(_class(ref), PreTrainedModel)


def _vision_fields(code: Any) -> set[str]:
    import inspect

    return set(inspect.signature(_class(code.vision_config).__init__).parameters) if code.vision_config else set()


def _vision_layers(code: Any) -> str:
    attr = next((k for k in ALIASES["vision_layers"] if k in _vision_fields(code)), "num_hidden_layers")
    return f"config.vision_config.{attr}"


def _image_tokens(layout: str, spec: ArchSpec) -> str:
    tokens = dict(IMAGE_TOKENS)[layout]
    class_token = any(t.name.endswith("class_embedding") for t in spec.inventory.tensors)
    if class_token and "vision_feature_select_strategy" in dense.reference_fields(spec):
        # A CLIP-style tower's class token is among the features unless the strategy drops it ("default").
        tokens += ' + int(config.vision_feature_select_strategy == "full")'
    return tokens


def _refused(spec: ArchSpec, reason: str) -> VlmLayout | None:
    """The layout of a model the template cannot build: the text kind's, with ``reason`` among its gaps."""
    text = (moe.build if spec.text_backbone == "moe" else dense.build)(spec, VLM_TRAITS)
    if text is None:
        return None
    fields = {f.name: getattr(text, f.name) for f in dataclasses.fields(text)}
    return VlmLayout(**{**fields, "gaps": (reason, *fields["gaps"])})


def build(spec: ArchSpec) -> VlmLayout | None:
    """The VLM layout of a spec, or None without a reference inventory."""
    probes = getattr(spec.inventory, "probes", None)
    code = probes.multimodal if probes is not None else None
    if spec.inventory is None or spec.hf is None:
        return None
    if code is None:
        return _refused(spec, "the reference holds no multimodal model (vision tower, projector, text) as 'model'")
    if spec.text_backbone == "moe":
        return _refused(spec, "a MoE text model: the vlm template is verified with dense text models only")
    text_spec = _text_view(spec, code)
    text = (moe.build if spec.text_backbone == "moe" else dense.build)(text_spec, VLM_TRAITS)
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
    rows += _vision_rows(spec, code)
    taken = {code.text_config.name, spec.hf["config_class"], *dataclasses.astuple(fields["classes"])}
    parts = tuple(
        Part(attr, Import(ref.module, (ref.name,)), _alias(ref.name, taken), built_from, _is_model(ref))
        for attr, ref, built_from in code.parts
    )
    inputs = dict(code.part_inputs)
    tower = inputs.get(parts[0].attribute, ()) if parts else ()
    pixel_layout = next((layout for key, layout in PIXEL_LAYOUTS if key in tower), "square")
    reference_model_alias = _alias(f"HF{code.model.name}", taken)
    import inspect

    forward = set(inspect.signature(_class(code.model).forward).parameters)
    vision = VisionLayout(
        config_class=spec.hf["config_class"],
        reference_model=Import(code.model.module, (code.model.name,)),
        reference_model_alias=reference_model_alias,
        text_attribute=code.text_attribute,
        parts=parts,
        methods=code.methods,
        state=code.state,
        image_inputs=code.image_inputs,
        pixel_layout=pixel_layout,
        vision_layers=_vision_layers(code),
        channels="vision." + next((c for c in CHANNELS if c in _vision_fields(code)), "num_channels"),
        image_tokens=_image_tokens(pixel_layout, spec),
        token_types="mm_token_type_ids" if "mm_token_type_ids" in forward else None,
        supported=tuple(
            (attr, model_type)
            for attr, ref in (("text_config", code.text_config), ("vision_config", code.vision_config))
            if ref is not None and isinstance(model_type := getattr(_class(ref), "model_type", None), str)
        ),
        checkpoint_prefixes=((in_model, in_checkpoint), *((o, t) for o, t in code.prefixes if o != in_model)),
        computed_tables=code.computed_tables,
    )
    classes = dataclasses.replace(
        fields["classes"], model=f"{spec.class_prefix}TextModel", multimodal=f"{spec.class_prefix}Model"
    )
    compared = tuple(
        ComparedModule(c.label, _moved(c.path, in_model, "lm_head."), _moved(c.reference, in_model, "lm_head."))
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
    tiling = spec.features.vision.tiling if spec.features.vision else None
    if tiling:
        gaps.append(f"images tiled at several resolutions ({tiling}): the vlm template's tests feed single images")
    if code.text_attribute != "language_model":
        gaps.append(f"a text model held as {code.text_attribute!r}: the vlm template holds it as 'language_model'")
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
        router=text.router if isinstance(text, moe.MoeLayout) else "",
        embedding=f"{in_model}embed_tokens.weight",
        text_config="config.text_config",
        capabilities=dense.CAPABILITIES,
        tensor_parallel=(),  # the text plan's paths are the causal LM's; the vision tower has none yet
        multi_process=False,
        recipe_run=False,
        reference_class=spec.hf["model_class"],
        reference_alias=f"HF{spec.hf['model_class']}",
    )
    return VlmLayout(**fields, vision=vision)
