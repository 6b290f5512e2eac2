"""Training-step speed and memory of generated models beside NeMo AutoModel's own and the transformers reference.

Run as a worker by ``python -m benchmarks`` in a checkout holding the onboarded models: for each family, the three
implementations get the same weights (the reference's, saved and loaded through each one's adapter), their logits are
compared, then one forward+backward step of each is timed in interleaved rounds and its peak memory is measured, on
the CPU (float32, NeMo's CPU backends) or on a CUDA GPU (bfloat16, NeMo's backends at their defaults there).
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
from dataclasses import dataclass, field, replace
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
    # NeMo's MoE experts backend, where the device's default is not the one measured: on the CPU "torch" loops over
    # the experts (the default without CUDA), "torch_mm" runs them as one grouped GEMM.
    experts: str | None = None

    @property
    def moe(self) -> bool:
        return "num_experts" in self.shape

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
        return ("--replace", *(("--allow-fewer-capabilities",) if self.moe else ()))

    @property
    def generated_class(self) -> str:
        return f"nemo_automodel.components.models.{self.module}.model:ModelClass"


LLAMA = Family(
    "llama", "meta-llama__Llama-3.2-3B.json", DENSE, "nemo_automodel.components.models.llama.model:LlamaForCausalLM"
)
QWEN3 = Family("qwen3", "Qwen__Qwen3-0.6B.json", DENSE, "nemo_automodel.components.models.qwen3.model:Qwen3ForCausalLM")
QWEN3_MOE = Family(
    "qwen3_moe",
    "Qwen__Qwen3-235B-A22B.json",
    MOE,
    "nemo_automodel.components.models.qwen3_moe.model:Qwen3MoeForCausalLM",
    cuda_device_at_build=True,
)
# The backend settings a result records.
BACKEND_FIELDS = ("linear", "attn", "rms_norm", "rope_fusion", "experts", "dispatcher")


@dataclass(frozen=True)
class Device:
    """Where the step runs: its dtype, the NeMo backend settings fixed there (NeMo's defaults for the rest, which
    follow what the machine has: Transformer Engine, CUDA), and the families measured."""

    name: str  # torch's device type
    dtype: str
    backend: Mapping[str, object]
    families: tuple[Family, ...]

    def backend_config(self, experts: str | None) -> Any:
        from nemo_automodel.components.models.common import BackendConfig

        return BackendConfig(**self.backend, **({"experts": experts} if experts else {}))

    def synchronize(self) -> None:
        if self.name == "cuda":
            import torch

            torch.cuda.synchronize()

    def peak_step_bytes(self, step: Callable[[], object]) -> int:
        """The most bytes of tensors alive at once during ``step`` beyond those alive before it."""
        if self.name != "cuda":
            return peak_step_bytes(step)
        import torch

        self.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        self.synchronize()
        return torch.cuda.max_memory_allocated() - before


CPU = Device(
    "cpu",
    "float32",
    {"linear": "torch", "attn": "sdpa", "rms_norm": "torch", "rope_fusion": False, "dispatcher": "torch"},
    (LLAMA, QWEN3, replace(QWEN3_MOE, experts="torch"), replace(QWEN3_MOE, experts="torch_mm")),
)
CUDA = Device("cuda", "bfloat16", {}, (LLAMA, QWEN3, QWEN3_MOE))
DEVICES = {device.name: device for device in (CPU, CUDA)}


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


def build(cls: type, config: Any, checkpoint: Path, backend: Any, device: Device, answer_cuda: bool = False) -> Any:
    """``cls`` built from ``config`` on ``device`` and loaded with the checkpoint through its state-dict adapter, if
    it has one."""
    import torch
    from safetensors.torch import load_file

    dtype = getattr(torch, device.dtype)
    config.dtype = dtype  # a torch dtype, not the string saving leaves there: NeMo's own Llama needs one
    answer_cuda = answer_cuda and device.name == "cpu"
    with torch.device(device.name), _cuda_device_answered() if answer_cuda else contextlib.nullcontext():
        model = cls(config, backend=backend)
    if answer_cuda:
        _to_cpu_buffers(model)
    model = model.to(device.name, dtype)  # a buffer some constructor placed itself follows the model
    state = load_file(checkpoint / "model.safetensors", device=device.name)
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
    device: str
    dtype: str
    backend: dict[str, object]
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
            "device": self.device,
            "dtype": self.dtype,
            "backend": self.backend,
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


def measure(fam: Family, device: Device, *, runs: int, quick: bool, work: Path) -> FamilyResult:
    import torch
    import transformers

    torch.manual_seed(0)
    backend = device.backend_config(fam.experts)
    config = benchmark_config(fam, quick)
    reference = getattr(transformers, config.architectures[0])(config).to(torch.float32)
    checkpoint = work / fam.label
    reference.save_pretrained(checkpoint)
    models = {
        "generated": build(_load(fam.generated_class), config, checkpoint, backend, device),
        "nemo": build(_load(fam.nemo_class), config, checkpoint, backend, device, fam.cuda_device_at_build),
        "transformers": reference.to(device.name, getattr(torch, device.dtype)),
    }
    batch = QUICK_BATCH if quick else BATCH
    input_ids = torch.randint(
        0, config.vocab_size, (batch.size, batch.tokens), generator=torch.Generator().manual_seed(1)
    ).to(device.name)
    with torch.no_grad():
        logits = {name: _logits(model.eval()(input_ids=input_ids)).float() for name, model in models.items()}
    for model in models.values():
        model.train()
    losses = {name: training_step(model, input_ids) for name, model in models.items()}  # the warm-up step
    peaks = {
        name: device.peak_step_bytes(lambda m=model: training_step(m, input_ids)) for name, model in models.items()
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for order in rounds(runs, IMPLEMENTATIONS):
        for name in order:
            device.synchronize()
            start = time.perf_counter()
            training_step(models[name], input_ids)
            device.synchronize()
            times[name].append(time.perf_counter() - start)
    return FamilyResult(
        family=fam.label,
        experts=fam.experts,
        device=device.name,
        dtype=device.dtype,
        backend={key: getattr(backend, key) for key in BACKEND_FIELDS},
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
    parser.add_argument("--device", choices=sorted(DEVICES), default="cpu")
    parser.add_argument("--families", help="labels, ';'-separated (default: all of the device's)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.checkout.resolve()))  # the checkout's nemo_automodel, onboarded models included
    device = DEVICES[args.device]
    chosen = args.families.split(";") if args.families else [f.label for f in device.families]
    results = []
    with tempfile.TemporaryDirectory() as work:
        for label in chosen:
            fam = next(f for f in device.families if f.label == label)
            results.append(measure(fam, device, runs=args.runs, quick=args.quick, work=Path(work)).to_json())
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
