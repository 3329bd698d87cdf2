"""Models and backend runners built once and shared: by the benchmarks, and by the parity checks.

ONNX export takes seconds, so each (model, size, device, backend) is prepared once per session.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from bench.measure import count_flops
from impl import get_spec
from impl.backends import Prepared, get_backend


class PreparedModels:
    """Builds each model once per (name, size, device), seeded, in eval mode, and each backend
    once on top of it, from example inputs of batch 2 (so no dimension is specialised to 1)."""

    def __init__(self, workdir: Path, threads: int) -> None:
        self.workdir, self.threads = workdir, threads
        self._models: dict[tuple[str, str, str], torch.nn.Module] = {}
        self._runners: dict[tuple[str, str, str, str], Prepared] = {}
        self._flops: dict[tuple[str, str, int], int] = {}

    def model(self, name: str, size: str, device: str) -> torch.nn.Module:
        key = (name, size, device)
        if key not in self._models:
            torch.manual_seed(0)
            self._models[key] = get_spec(name).create(size).eval().to(device)
        return self._models[key]

    def runner(self, name: str, size: str, device: str, backend: str) -> Prepared:
        key = (name, size, device, backend)
        if key not in self._runners:
            spec = get_spec(name)
            example = tuple(x.to(device) for x in spec.inputs(spec.config(size), 2))
            out = self.workdir / "-".join(key)
            out.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter progress and TorchScript deprecation
                self._runners[key] = get_backend(backend).prepare(
                    self.model(name, size, device), example, out, self.threads
                )
        return self._runners[key]

    def flops(self, name: str, size: str, device: str, inputs: tuple[torch.Tensor, ...]) -> int:
        """FLOPs per call depend on the model and the batch, not on the backend: count once."""
        key = (name, size, inputs[0].shape[0])
        if key not in self._flops:
            self._flops[key] = count_flops(self.model(name, size, device), inputs)
        return self._flops[key]
