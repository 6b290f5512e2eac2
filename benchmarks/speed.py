"""Training-step speed and memory of generated models beside NeMo AutoModel's own and the transformers reference.

Run as a worker by ``python -m benchmarks`` in a checkout holding the onboarded models: for each family, the three
implementations get the same weights (the reference's, saved and loaded through each one's adapter), their logits are
compared, then one forward+backward step of each is timed in interleaved rounds and its peak memory is profiled.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import Ratio, Sample, rounds

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "configs"
IMPLEMENTATIONS = ("generated", "nemo", "transformers")

DENSE = {
    "hidden_size": 512,
    "intermediate_size": 1792,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 8192,
}
MOE = {**DENSE, "num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 256, "decoder_sparse_step": 1}
# The size of the tests of this benchmark: the same code paths in a second.
QUICK = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 256,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
}


@dataclass(frozen=True)
class Batch:
    size: int
    tokens: int


BATCH = Batch(2, 512)
QUICK_BATCH = Batch(2, 32)


@dataclass(frozen=True)
class Family:
    """A family NeMo AutoModel 0.7.0 implements itself: its fixture config, the size it is benchmarked at, where its
    onboarded and NeMo's own classes live."""

    name: str
    fixture: str
    shape: Mapping[str, int]
    nemo_class: str  # module:Class
    # NeMo's own class builds some buffers on the current CUDA device; on the CPU it is built with that device
    # answered and the buffers moved (the rotary table's device, read at each step).
    cuda_device_at_build: bool = False
    # NeMo's MoE experts backend on the CPU: "torch" loops over the experts (the default without CUDA), "torch_mm"
    # runs them as one grouped GEMM. None for a dense family.
    experts: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.experts is None else f"{self.name}, {self.experts} experts"

    @property
    def module(self) -> str:
        return f"{self.name}_onboarded"

    @property
    def onboard_flags(self) -> tuple[str, ...]:
        """``new``'s flags for onboarding it beside NeMo's own: NeMo's Qwen3-MoE declares context parallelism, which
        the generated MoE does not."""
        return ("--replace", *(("--allow-fewer-capabilities",) if self.experts else ()))

    @property
    def generated_class(self) -> str:
        return f"nemo_automodel.components.models.{self.module}.model:ModelClass"


QWEN3_MOE = "nemo_automodel.components.models.qwen3_moe.model:Qwen3MoeForCausalLM"
FAMILIES = (
    Family(
        "llama", "meta-llama__Llama-3.2-3B.json", DENSE, "nemo_automodel.components.models.llama.model:LlamaForCausalLM"
    ),
    Family("qwen3", "Qwen__Qwen3-0.6B.json", DENSE, "nemo_automodel.components.models.qwen3.model:Qwen3ForCausalLM"),
    Family("qwen3_moe", "Qwen__Qwen3-235B-A22B.json", MOE, QWEN3_MOE, cuda_device_at_build=True, experts="torch"),
    Family("qwen3_moe", "Qwen__Qwen3-235B-A22B.json", MOE, QWEN3_MOE, cuda_device_at_build=True, experts="torch_mm"),
)


def family(label: str) -> Family:
    return next(f for f in FAMILIES if f.label == label)


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def benchmark_config(fam: Family, quick: bool) -> Any:
    """The fixture's config at the benchmark's size, in float32, with transformers' SDPA attention."""
    from transformers import CONFIG_MAPPING

    raw = json.loads((FIXTURES / fam.fixture).read_text())
    shape = {k: v for k, v in QUICK.items() if k in fam.shape} if quick else dict(fam.shape)
    raw.update(shape, use_cache=False, mlp_only_layers=[])
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # the vocabulary may shrink past them
        if isinstance(raw.get(key), int) and raw[key] >= raw["vocab_size"]:
            raw[key] = None
    raw.pop("torch_dtype", None)
    config = CONFIG_MAPPING[raw.pop("model_type")](**raw)
    config._attn_implementation = "sdpa"
    return config


def cpu_backend(experts: str = "torch") -> Any:
    from nemo_automodel.components.models.common import BackendConfig

    return BackendConfig(
        linear="torch", attn="sdpa", rms_norm="torch", rope_fusion=False, experts=experts, dispatcher="torch"
    )


@contextlib.contextmanager
def _cuda_device_answered() -> Iterator[None]:
    import torch

    saved = torch.cuda.current_device
    torch.cuda.current_device = lambda: 0
    try:
        yield
    finally:
        torch.cuda.current_device = saved


def _to_cpu_buffers(model: Any) -> None:
    import torch

    for module in model.modules():
        device = getattr(module, "device", None)
        if isinstance(device, torch.device) and device.type == "cuda":
            module.device = torch.device("cpu")


def build(
    cls: type, config: Any, checkpoint: Path, *, experts: str = "torch", cuda_device_at_build: bool = False
) -> Any:
    """``cls`` built from ``config`` and loaded with the checkpoint through its state-dict adapter, if it has one."""
    import torch
    from safetensors.torch import load_file

    config.dtype = torch.float32  # a torch dtype, not the string saving leaves there: NeMo's own Llama needs one
    with _cuda_device_answered() if cuda_device_at_build else contextlib.nullcontext():
        model = cls(config, backend=cpu_backend(experts))
    if cuda_device_at_build:
        _to_cpu_buffers(model)
    model = model.to(torch.float32)
    state = load_file(checkpoint / "model.safetensors")
    adapter = getattr(model, "state_dict_adapter", None)
    if adapter is not None:
        state = adapter.from_hf(state, model_state_dict=model.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"{cls.__name__}: missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    return model


def parameter_bytes(model: Any) -> int:
    """Bytes the parameters take: a storage shared by tied weights counts once."""
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
    return sum(storages.values())


def _logits(output: Any) -> Any:
    return output.logits if hasattr(output, "logits") else output


def training_step(model: Any, input_ids: Any) -> float:
    """One forward and backward pass of the causal-LM loss; the gradients are dropped after."""
    import torch.nn.functional as F

    logits = _logits(model(input_ids=input_ids))
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)
    return float(loss.detach())


def peak_step_bytes(step: Callable[[], object]) -> int:
    """The most bytes of tensors alive at once during ``step`` beyond those alive before it, from the profiler's
    record of every allocation and free."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    alive = peak = 0
    for event in events:
        alive += event.nbytes()
        peak = max(peak, alive)
    return peak


@dataclass
class FamilyResult:
    family: str
    experts: str | None
    shape: dict[str, int]
    batch: Batch
    parameters: int
    parameter_bytes: dict[str, int]
    max_logit_diff: dict[str, float]
    losses: dict[str, float]
    peak_step_bytes: dict[str, int]
    seconds: dict[str, Sample] = field(default_factory=dict)

    def ratios(self) -> dict[str, Ratio]:
        gen = self.seconds["generated"]
        return {other: Ratio.of(gen, self.seconds[other]) for other in IMPLEMENTATIONS[1:]}

    def to_json(self) -> dict[str, Any]:
        ratios = self.ratios()
        return {
            "family": self.family,
            "experts": self.experts,
            "shape": self.shape,
            "batch": [self.batch.size, self.batch.tokens],
            "parameters": self.parameters,
            "parameter_bytes": self.parameter_bytes,
            "max_logit_diff": self.max_logit_diff,
            "losses": self.losses,
            "peak_step_bytes": self.peak_step_bytes,
            "seconds": {name: sample.to_json() for name, sample in self.seconds.items()},
            "ratio_generated_to": {name: ratio.to_json() for name, ratio in ratios.items()},
            "no_slower_than_nemo": ratios["nemo"].at_most(1.0),
            "faster_than_transformers": ratios["transformers"].median < 1.0,
        }


def measure(fam: Family, *, runs: int, quick: bool, work: Path) -> FamilyResult:
    import torch
    import transformers

    torch.manual_seed(0)
    experts = fam.experts or "torch"
    config = benchmark_config(fam, quick)
    reference = getattr(transformers, config.architectures[0])(config).to(torch.float32)
    checkpoint = work / fam.label
    reference.save_pretrained(checkpoint)
    models = {
        "generated": build(_load(fam.generated_class), config, checkpoint, experts=experts),
        "nemo": build(
            _load(fam.nemo_class), config, checkpoint, experts=experts, cuda_device_at_build=fam.cuda_device_at_build
        ),
        "transformers": reference,
    }
    batch = QUICK_BATCH if quick else BATCH
    input_ids = torch.randint(
        0, config.vocab_size, (batch.size, batch.tokens), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        logits = {name: _logits(model.eval()(input_ids=input_ids)).float() for name, model in models.items()}
    for model in models.values():
        model.train()
    losses = {name: training_step(model, input_ids) for name, model in models.items()}  # the warm-up step
    peaks = {name: peak_step_bytes(lambda m=model: training_step(m, input_ids)) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for order in rounds(runs, IMPLEMENTATIONS):
        for name in order:
            start = time.perf_counter()
            training_step(models[name], input_ids)
            times[name].append(time.perf_counter() - start)
    return FamilyResult(
        family=fam.label,
        experts=fam.experts,
        shape={k: getattr(config, k) for k in fam.shape if hasattr(config, k)},
        batch=batch,
        parameters=sum(p.numel() for p in reference.parameters()),  # a tied weight is listed once
        parameter_bytes={name: parameter_bytes(model) for name, model in models.items()},
        max_logit_diff={
            name: float((logits[name] - logits["transformers"]).abs().max()) for name in IMPLEMENTATIONS[:2]
        },
        losses=losses,
        peak_step_bytes=peaks,
        seconds={name: Sample(tuple(seconds)) for name, seconds in times.items()},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, required=True)
    parser.add_argument("--families", default=";".join(f.label for f in FAMILIES), help="labels, ';'-separated")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.checkout.resolve()))  # the checkout's nemo_automodel, onboarded models included
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.families.split(";"):
            results.append(measure(family(name), runs=args.runs, quick=args.quick, work=Path(work)).to_json())
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
