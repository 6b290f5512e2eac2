"""Names derived from a config, validated before they reach a path or a line of generated code."""

from __future__ import annotations

import importlib.util
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from automodel_onboard.errors import OnboardError

MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]{0,99}$")
MODEL_TYPE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ORG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HUB_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,95})/([A-Za-z0-9][A-Za-z0-9._-]{0,95})$")
HEAD_SUFFIXES = ("ForConditionalGeneration", "ForImageTextToText", "ForCausalLM", "LMHeadModel")
MODULE_PATH = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*$")
# The installed NeMo AutoModel's package of model implementations, whose folder names a new module must not take.
INSTALLED_MODELS = "nemo_automodel.components.models"


@dataclass(frozen=True)
class Names:
    module_name: str
    class_prefix: str
    architecture: str
    model_type: str
    display_name: str
    org: str
    collision: str | None  # an existing NeMo AutoModel model folder with the same (case-folded) name


def check_module_name(name: str, *, where: str = "--name") -> str:
    if not isinstance(name, str) or not MODULE_NAME.fullmatch(name):
        raise OnboardError(
            f"module name {name!r} is not a lowercase Python identifier (letters, digits, underscores; 1-63 chars)",
            where=where,
            fix="pass --name with a snake_case name such as my_model",
            code="invalid-name",
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise OnboardError(
            f"module name {name!r} is a Python keyword",
            where=where,
            fix=f"pass --name {name}_model",
            code="invalid-name",
        )
    return name


def check_architecture(arch: str) -> str:
    if not CLASS_NAME.fullmatch(arch):
        raise OnboardError(
            f"architecture {arch[:80]!r} is not a Python class name",
            where="config.json: architectures[0]",
            fix="the first entry of architectures must be a class name such as LlamaForCausalLM",
            code="invalid-name",
        )
    if keyword.iskeyword(arch):
        raise OnboardError(f"architecture {arch!r} is a Python keyword", where="config.json: architectures[0]")
    return arch


def check_model_type(model_type: object, where: str = "config.json: model_type") -> str:
    if model_type is None:
        raise OnboardError(
            "config.json has no model_type",
            where=where,
            fix='add the family identifier the checkpoint was saved with, e.g. "model_type": "llama"',
            code="no-model-type",
        )
    if not isinstance(model_type, str) or not MODEL_TYPE.fullmatch(model_type):
        raise OnboardError(
            f"model_type {str(model_type)[:80]!r} is not a valid identifier (lowercase letters, digits, _ . -)",
            where=where,
            fix="correct model_type in config.json",
            code="invalid-name",
        )
    return model_type


def module_name_for(model_type: str) -> str:
    """snake_case module name from a model_type ("qwen2.5-vl" -> "qwen2_5_vl")."""
    name = re.sub(r"[^a-z0-9_]+", "_", model_type.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"model_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name = f"{name}_model"
    return name[:63]


def class_prefix_for(architecture: str, module_name: str) -> str:
    for suffix in HEAD_SUFFIXES:
        if architecture.endswith(suffix) and len(architecture) > len(suffix):
            return architecture[: -len(suffix)]
    return "".join(part.capitalize() for part in module_name.split("_"))


def org_for(model_id: str | None, name_or_path: object) -> str:
    for candidate in (model_id, name_or_path):
        if isinstance(candidate, str) and (m := HUB_ID.fullmatch(candidate)):
            org = re.sub(r"[^a-z0-9-]+", "-", m.group(1).lower()).strip("-")
            if ORG.fullmatch(org):
                return org
    return "community"


def display_name_for(model_id: str | None, class_prefix: str) -> str:
    if model_id and (m := HUB_ID.fullmatch(model_id)):
        return m.group(2)
    return class_prefix


def free_name(module_name: str, existing: frozenset[str]) -> str:
    """A module name beside ``module_name`` that no model folder takes (``llama`` -> ``llama_onboarded``)."""
    candidates = (f"{module_name}_onboarded", *(f"{module_name}_onboarded_{i}" for i in range(2, 100)))
    return next(c for c in candidates if collision_of(c, existing) is None)


def installed_registry() -> Path | None:
    """The installed NeMo AutoModel's registry.py (found without importing the package)."""
    spec = importlib.util.find_spec(INSTALLED_MODELS.partition(".")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), "_transformers", "registry.py")
    return path if path.is_file() else None


def existing_model_folders() -> frozenset[str]:
    """Model folders of the installed NeMo AutoModel package (found without importing it)."""
    top, _, below = INSTALLED_MODELS.partition(".")
    spec = importlib.util.find_spec(top)  # the top-level package only: finding a submodule would import its parents
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    return folder_names(Path(next(iter(spec.submodule_search_locations)), *below.split(".")))


def folder_names(root: Path) -> frozenset[str]:
    """The package folders directly under ``root`` (none when it is not a folder)."""
    if not root.is_dir():
        return frozenset()
    return frozenset(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def collision_of(module_name: str, existing: frozenset[str]) -> str | None:
    folded = module_name.casefold()
    return next((e for e in sorted(existing) if e.casefold() == folded), None)


def derive_names(
    architecture: str,
    model_type: object,
    *,
    model_id: str | None,
    name_or_path: object = None,
    module_name: str | None = None,
    existing: frozenset[str] = frozenset(),
) -> Names:
    arch = check_architecture(architecture)
    mtype = check_model_type(model_type)
    module = check_module_name(module_name) if module_name is not None else module_name_for(mtype)
    prefix = class_prefix_for(arch, module)
    if not CLASS_NAME.fullmatch(prefix):
        prefix = "".join(part.capitalize() for part in module.split("_"))
    return Names(
        module_name=module,
        class_prefix=prefix,
        architecture=arch,
        model_type=mtype,
        display_name=display_name_for(model_id, prefix),
        org=org_for(model_id, name_or_path),
        collision=collision_of(module, existing),
    )
