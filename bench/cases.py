"""The benchmark matrix, generated from the model and backend registries.

One case is (model, size, device, backend, batch size). A backend is paired with a model if the
model declares the capability the backend requires. A case that cannot run here is kept, with the
reason in ``skip``, so that reports show it as a row: the backend does not run on that device,
the capability is a known upstream failure, or this machine lacks a feature it needs
(``ModelSpec.needs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from impl import ModelSpec, get_spec, list_models
from impl.backends import Backend, get_backend, list_backends

DEFAULT_BATCH_SIZES = (1, 32)  # latency at batch 1, throughput at 32


class BenchCase(NamedTuple):
    model: str
    size: str
    device: str
    backend: str
    batch_size: int
    skip: str | None = None  # why this case cannot run on this machine, if it cannot

    @property
    def id(self) -> str:
        return f"{self.model}.{self.size}-{self.device}-{self.backend}-b{self.batch_size}"

    @property
    def group(self) -> str:
        """Backends of one model, size, device and batch size are compared within a group."""
        return f"{self.model}.{self.size} {self.device} b={self.batch_size}"


def split_names(value: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``; empty or None -> None (meaning: the default selection)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


class BenchConfigError(ValueError):
    """A benchmark selection that cannot run here (unknown name, CUDA without a GPU, ...)."""


def skip_reason(spec: ModelSpec, backend: Backend, device: str) -> str | None:
    """Why ``backend`` cannot run ``spec`` on ``device`` here, or None if it can."""
    if device not in backend.devices:
        return f"backend {backend.name} runs on {', '.join(backend.devices)} only"
    if backend.requires in spec.known_failures:
        return f"known failure: {spec.known_failures[backend.requires]}"
    return spec.missing_reason(backend.requires, device)


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


def bench_cases(
    models: Iterable[str] | None = None,
    sizes: Iterable[str] = ("full",),
    devices: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
) -> list[BenchCase]:
    """Every case of the selection, those that cannot run here with their ``skip`` reason; unknown
    names raise ``BenchConfigError`` naming them."""
    models = list_models() if models is None else list(models)
    devices = default_devices() if devices is None else tuple(devices)
    backends = list_backends() if backends is None else list(backends)
    batch_sizes = list(batch_sizes)
    check_devices(devices)
    try:
        specs = [get_spec(name) for name in models]
        chosen = [get_backend(name) for name in backends]
    except KeyError as error:
        raise BenchConfigError(str(error.args[0])) from None
    for spec in specs:
        for size in sizes:
            if size not in spec.sizes:
                raise BenchConfigError(
                    f"model {spec.name!r} has no size {size!r}; sizes: {sorted(spec.sizes)}"
                )
    if not batch_sizes or min(batch_sizes) < 1:
        raise BenchConfigError(f"batch sizes must be positive integers, got {batch_sizes}")
    return [
        BenchCase(
            spec.name, size, device, backend.name, batch_size, skip_reason(spec, backend, device)
        )
        for spec in specs
        for size in sizes
        for device in devices
        for backend in chosen
        if backend.requires in spec.caps
        for batch_size in batch_sizes
    ]
