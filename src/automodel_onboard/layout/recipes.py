"""Datasets the example recipe can use, as data: what a recipe YAML needs to name for each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Dataset:
    name: str
    kinds: tuple[str, ...]
    recipe: str
    target: str
    path: str
    collate_fn: str
    validation_split: str
    limit_field: str  # the dataset target's argument that caps the number of validation samples
    collate_target: bool = False  # the recipe names the collate function as a ``_target_`` to instantiate


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="hellaswag",
            kinds=("dense", "moe"),
            recipe="TrainFinetuneRecipeForNextTokenPrediction",
            target="nemo_automodel.components.datasets.llm.hellaswag.HellaSwag",
            path="rowan/hellaswag",
            collate_fn="nemo_automodel.components.datasets.utils.default_collater",
            validation_split="validation",
            limit_field="num_samples_limit",
        ),
        Dataset(
            name="cord_v2",
            kinds=("vlm",),
            recipe="FinetuneRecipeForVLM",
            target="nemo_automodel.components.datasets.vlm.datasets.make_cord_v2_dataset",
            path="naver-clova-ix/cord-v2",
            collate_fn="nemo_automodel.components.datasets.vlm.collate_fns.default_collate_fn",
            validation_split="validation",
            limit_field="limit_dataset_samples",
            collate_target=True,
        ),
    )
}


def default_dataset(kind: str) -> str:
    return next(d.name for d in DATASETS.values() if kind in d.kinds)


def check_dataset(name: str, kind: str) -> str:
    """Empty when ``name`` is a dataset for ``kind``; else a message listing the choices."""
    choices = sorted(d.name for d in DATASETS.values() if kind in d.kinds)
    if name not in choices:
        return f"dataset {name!r} is not available for {kind} models; choose one of: {', '.join(choices)}"
    return ""


def dataset(name: str) -> dict[str, Any]:
    return asdict(DATASETS[name])
