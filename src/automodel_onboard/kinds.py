"""The kind registry: every template this tool can render, and what each one needs, in one table.

A kind is offered (CLI choices, ``copier.yml`` choices, render-all's kind list) exactly when it has a row here, and a
row names its template folder, so a kind without a template cannot be offered. A verdict of the classifier without
a row is refused with the ``no-template`` code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from automodel_onboard.errors import OnboardError
from automodel_onboard.layout import dense, moe, vlm

if TYPE_CHECKING:
    from automodel_onboard.model.spec import ArchSpec


@dataclass(frozen=True)
class Kind:
    """One renderable kind: its templates, its layout, and what its generated files are in NeMo AutoModel's terms."""

    name: str
    template: str  # folder under templates/
    build_layout: Callable[[ArchSpec], Any]  # the layout of a spec, or None without a reference inventory
    symbols: tuple[tuple[str, str], ...]  # the NeMo AutoModel (module, name) pairs its rendered files import
    auto_class: str  # the nemo_automodel class whose from_pretrained loads the model in the recipe
    recipe_family: str  # examples/<recipe_family>/ (NeMo AutoModel's recipe schema for the task)
    docs_section: str  # docs/model-coverage/<docs_section>/
    docs_slug: str  # the docs site's section slug
    task: str  # the task the docs page names
    guide: str  # the fine-tuning guide the docs page links

    def template_data(self) -> dict[str, str]:
        """What templates read about their kind (layout aside)."""
        return {
            "name": self.name,
            "auto_class": self.auto_class,
            "recipe_family": self.recipe_family,
            "docs_section": self.docs_section,
            "docs_slug": self.docs_slug,
            "task": self.task,
            "guide": self.guide,
        }


# What a causal LM is in NeMo AutoModel's terms: its auto class, recipe family and docs section.
CAUSAL_LM: Mapping[str, str] = MappingProxyType(
    {
        "auto_class": "NeMoAutoModelForCausalLM",
        "recipe_family": "llm_finetune",
        "docs_section": "llm",
        "docs_slug": "large-language-models",
        "task": "Text Generation",
        "guide": "LLM Fine-Tuning Guide",
    }
)

# What an image-text model is in NeMo AutoModel's terms.
IMAGE_TEXT: Mapping[str, str] = MappingProxyType(
    {
        "auto_class": "NeMoAutoModelForImageTextToText",
        "recipe_family": "vlm_finetune",
        "docs_section": "vlm",
        "docs_slug": "vision-language-models",
        "task": "Image-Text-to-Text",
        "guide": "VLM Fine-Tuning Guide",
    }
)

KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            Kind(name="dense", template="dense", build_layout=dense.build, symbols=dense.NEMO_SYMBOLS, **CAUSAL_LM),
            Kind(name="moe", template="moe", build_layout=moe.build, symbols=moe.NEMO_MOE_SYMBOLS, **CAUSAL_LM),
            Kind(name="vlm", template="vlm", build_layout=vlm.build, symbols=vlm.NEMO_VLM_SYMBOLS, **IMAGE_TEXT),
        )
    }
)


def names() -> tuple[str, ...]:
    """The kinds that can be rendered, in table order."""
    return tuple(KINDS)


def get(name: str, *, where: str = "--kind") -> Kind:
    """The kind's row; an OnboardError (``no-template``) for a verdict or choice without one."""
    kind = KINDS.get(name)
    if kind is None:
        raise OnboardError(
            f"the {name} template is not available yet",
            where=where,
            fix=f"templates available: {', '.join(names())}",
            code="no-template",
        )
    return kind
