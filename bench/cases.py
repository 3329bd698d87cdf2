"""The benchmark matrix, generated from the model, backend and kind registries.

A *kind* is one measurement: inference latency, int8 variants, a training step, autocast against
float32, a profile, ``torch.compile``, instruction counts. One case is (kind, model, size, device,
backend, batch size, phase, precision). A kind pairs a model with the backends it measures when
the model declares what they require. A case that cannot run here is kept, with the reason in
``skip``, so that reports show it as a row: the backend or the kind does not run on that device,
the capability is a known upstream failure, or this machine lacks a feature that the model needs
for it (``ModelSpec.needs``) or that the kind needs (``Kind.needs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from impl import Cap, ModelSpec, get_spec, list_models
from impl.backends import Backend, get_backend, list_backends
from impl.machine import CUDA_BF16, VALGRIND, Feature

DEFAULT_BATCH_SIZES = (1, 32)  # latency at batch 1, throughput at 32
# autocast dtypes measured beside float32: CPU autocast is bfloat16; CUDA has float16 and bfloat16
AMP_PRECISIONS = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "float16", "bfloat16")}
PRECISION_NEEDS: dict[tuple[str, str], tuple[Feature, ...]] = {("cuda", "bfloat16"): (CUDA_BF16,)}


def _float32(device: str) -> tuple[str, ...]:
    return ("float32",)


@dataclass(frozen=True)
class Kind:
    """One measurement that every model declaring what it needs gets."""

    name: str
    summary: str
    # the backends it measures: those declaring this kind (inference, quantised, compile), or
    # eager alone (training, amp, profile time the PyTorch model itself)
    own_backends: bool = False
    phases: tuple[str, ...] = ("inference",)
    precisions: Callable[[str], tuple[str, ...]] = _float32  # device -> precisions measured
    requires: Cap | None = None  # a capability needed beyond the backend's
    default: bool = True  # measured when no kinds are named; compile and instructions are opt-in
    # case fields that tell apart the cases of one (model, size, device, backend, batch)
    variant_fields: tuple[str, ...] = ()
    # it measures throughput, so a quick run measures it at the largest selected batch only
    quick_largest_batch: bool = False
    needs: tuple[Feature, ...] = ()  # machine features it needs whatever the model (valgrind)
    # the devices it can measure on, and why only those: its cases elsewhere are skipped with that
    devices: tuple[str, ...] = ("cpu", "cuda")
    devices_why: str = ""

    def backends(self) -> list[str]:
        if not self.own_backends:
            return ["eager"]
        return [name for name in list_backends() if get_backend(name).kind == self.name]


KINDS = {
    kind.name: kind
    for kind in (
        Kind("inference", "one forward call, float32, per backend", own_backends=True),
        Kind(
            "quantised",
            "int8 variants as backends: latency, serialised size, SQNR and top-1 vs float32",
            own_backends=True,
            precisions=lambda device: ("int8",),
        ),
        Kind(
            "training",
            "one optimiser step (zero_grad, forward, loss, backward, step) on a fixed batch",
            phases=("training",),
            quick_largest_batch=True,
        ),
        Kind(
            "amp",
            "inference and training step under torch.autocast, beside float32 on the same inputs",
            phases=("inference", "training"),
            precisions=lambda device: AMP_PRECISIONS[device],
            requires=Cap.AMP,
            variant_fields=("phase", "precision"),
            quick_largest_batch=True,
        ),
        Kind(
            "profile",
            "torch.profiler over warm calls: top-k operators, peak memory, trace",
            quick_largest_batch=True,
        ),
        Kind(
            "compile",
            "torch.compile as a backend; the first call's compile time apart from steady state",
            own_backends=True,
            default=False,
        ),
        Kind(
            "instructions",
            "instructions per eager forward call, counted by valgrind's callgrind: deterministic "
            "where wall-clock time is noisy",
            needs=(VALGRIND,),
            devices=("cpu",),
            devices_why="callgrind counts the CPU's instructions and does not see GPU work",
            default=False,
        ),
    )
}
DEFAULT_KINDS = tuple(name for name, kind in KINDS.items() if kind.default)


class BenchCase(NamedTuple):
    kind: str
    model: str
    size: str
    device: str
    backend: str
    batch_size: int
    phase: str = "inference"  # "inference" (eval, no grad) or "training" (an optimiser step)
    precision: str = "float32"  # float32, an autocast dtype (bfloat16, float16), or int8
    skip: str | None = None  # why this case cannot run on this machine, if it cannot

    @property
    def id(self) -> str:
        """``kind-model.size-device-backend-bN``, plus phase and precision where a kind has both:
        ``amp-mlp_784_128_10.full-cpu-eager-b32-training-bfloat16``."""
        variant = "".join(f"-{getattr(self, f)}" for f in KINDS[self.kind].variant_fields)
        return (
            f"{self.kind}-{self.model}.{self.size}-{self.device}-{self.backend}-b{self.batch_size}"
            + variant
        )

    @property
    def group(self) -> str:
        """What pytest-benchmark compares within a group: the backends of one inference case, the
        precisions of one amp phase."""
        kind = "inference" if KINDS[self.kind].own_backends else self.kind
        phase = f" {self.phase}" if "phase" in KINDS[self.kind].variant_fields else ""
        return f"{kind} {self.model}.{self.size} {self.device}{phase} b={self.batch_size}"


class BenchConfigError(ValueError):
    """A benchmark selection that cannot run here (unknown name, CUDA without a GPU, ...)."""


def skip_reason(
    spec: ModelSpec,
    backend: Backend,
    device: str,
    kind: Kind | None = None,
    precision: str = "float32",
) -> str | None:
    """Why ``kind`` cannot measure ``spec`` with ``backend`` on ``device`` here, or None."""
    if device not in backend.devices:
        return f"backend {backend.name} runs on {', '.join(backend.devices)} only"
    if kind and device not in kind.devices:
        return f"kind {kind.name} measures on {', '.join(kind.devices)} only: {kind.devices_why}"
    caps = [backend.requires] + ([kind.requires] if kind and kind.requires else [])
    for cap in caps:
        if cap in spec.known_failures:
            return f"known failure: {spec.known_failures[cap]}"
    reasons = [spec.missing_reason(cap, device) for cap in caps]
    features = (*PRECISION_NEEDS.get((device, precision), ()), *(kind.needs if kind else ()))
    reasons += [feature.missing_reason() for feature in features if not feature.available]
    missing = [r for r in reasons if r]
    return "; ".join(dict.fromkeys(missing)) if missing else None


def default_devices() -> tuple[str, ...]:
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def check_devices(devices: Iterable[str]) -> None:
    for device in devices:
        if device not in ("cpu", "cuda"):
            raise BenchConfigError(f"unknown device {device!r}; choose cpu or cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise BenchConfigError(
                f"--device cuda requested but CUDA is not available "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False)"
            )


def _chosen_kinds(kinds: Iterable[str] | None, backends: list[str] | None) -> list[Kind]:
    """The named kinds; by default the default kinds plus those of explicitly named backends
    (``--backends compile`` alone measures compile)."""
    if kinds is None:
        names = list(DEFAULT_KINDS)
        names += [get_backend(b).kind for b in backends or () if get_backend(b).kind not in names]
    else:
        names = list(kinds)
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise BenchConfigError(f"unknown kinds {unknown}; kinds: {', '.join(KINDS)}")
    return [KINDS[name] for name in names]


def bench_cases(
    models: Iterable[str] | None = None,
    sizes: Iterable[str] | None = ("full",),
    devices: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    kinds: Iterable[str] | None = None,
    quick: bool = False,
) -> list[BenchCase]:
    """Every case of the selection, those that cannot run here with their ``skip`` reason; unknown
    names raise ``BenchConfigError`` naming them.

    ``sizes`` None means each model's default: "full". ``quick`` keeps a quick run's cost per
    model flat as models are added: each model at its ``quick_size`` where no sizes are named,
    and the throughput kinds (training, amp, profile) at the largest selected batch only; latency
    kinds keep every batch.
    """
    models = list_models() if models is None else list(models)
    devices = default_devices() if devices is None else tuple(devices)
    backends = None if backends is None else list(backends)
    batch_sizes = list(batch_sizes)
    check_devices(devices)
    try:
        specs = [get_spec(name) for name in models]
        chosen_backends = {get_backend(name).name for name in backends or list_backends()}
    except KeyError as error:
        raise BenchConfigError(str(error.args[0])) from None
    chosen_kinds = _chosen_kinds(kinds, backends)
    default_size = (lambda spec: spec.quick_size) if quick else (lambda spec: "full")
    sizes_of = {spec.name: [default_size(spec)] if sizes is None else list(sizes) for spec in specs}
    for spec in specs:
        for size in sizes_of[spec.name]:
            if size not in spec.sizes:
                raise BenchConfigError(
                    f"model {spec.name!r} has no size {size!r}; sizes: {sorted(spec.sizes)}"
                )
    if not batch_sizes or min(batch_sizes) < 1:
        raise BenchConfigError(f"batch sizes must be positive integers, got {batch_sizes}")
    return [
        BenchCase(
            kind=kind.name,
            model=spec.name,
            size=size,
            device=device,
            backend=backend.name,
            batch_size=batch_size,
            phase=phase,
            precision=precision,
            skip=skip_reason(spec, backend, device, kind, precision),
        )
        for spec in specs  # a model's cases together: the runner gives each model a worker
        for size in sizes_of[spec.name]
        for device in devices
        for kind in chosen_kinds
        for backend in map(get_backend, kind.backends())
        if backend.name in chosen_backends
        and backend.requires in spec.caps
        and (kind.requires is None or kind.requires in spec.caps)
        for batch_size in batch_sizes
        if not (quick and kind.quick_largest_batch and batch_size != max(batch_sizes))
        for phase in kind.phases
        for precision in kind.precisions(device)
    ]
