"""Models and backend runners built once and shared: by the benchmarks, and by the parity checks.

ONNX export takes seconds, so each (model, size, device, backend) is prepared once per session,
and so is what does not depend on the batch being timed: FLOPs per batch size, and how close a
backend's outputs are to eager float32 on one fixed evaluation batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from bench.measure import count_flops
from impl import get_spec
from impl.backends import Prepared, get_backend
from impl.tasks import map_outputs
from impl.techniques.quantization import sqnr_db, state_dict_bytes, top1_agreement

# Output quality (SQNR, top-1 agreement) is measured on one fixed batch of this many samples,
# seeded apart from the inputs that calibrate and from those that are timed.
QUALITY_BATCH, QUALITY_SEED = 64, 2


def to_cpu_float(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float().cpu()


class PreparedModels:
    """Builds each model once per (name, size, device), seeded, in eval mode, and each backend
    once on top of it, from example inputs of the backend's ``example_batch`` samples (more than
    1, so that no dimension is specialised to 1)."""

    def __init__(self, workdir: Path, threads: int) -> None:
        self.workdir, self.threads = workdir, threads
        self._models: dict[tuple[str, str, str], torch.nn.Module] = {}
        self._runners: dict[tuple[str, str, str, str], Prepared] = {}
        self._flops: dict[tuple[str, str, int], int] = {}
        self._quality: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def model(self, name: str, size: str, device: str) -> torch.nn.Module:
        key = (name, size, device)
        if key not in self._models:
            torch.manual_seed(0)
            self._models[key] = get_spec(name).create(size).eval().to(device)
        return self._models[key]

    def runner(
        self, name: str, size: str, device: str, backend: str, example_batch: int | None = None
    ) -> Prepared:
        """The backend's artifact, prepared from ``example_batch`` samples (the backend's own
        number by default)."""
        batch = example_batch or get_backend(backend).example_batch
        key = (name, size, device, backend, str(batch))
        if key not in self._runners:
            spec = get_spec(name)
            example = tuple(x.to(device) for x in spec.inputs(spec.config(size), batch))
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

    def quality(self, name: str, size: str, device: str, backend: str) -> dict[str, Any]:
        """How a backend's outputs compare with eager float32 on the fixed evaluation batch, and
        its serialised size beside float32's.

        ``sqnr_db`` (20 log10 |y| / |y - y_hat|), ``top1_agreement`` (classifiers: the share of
        samples whose predicted class is unchanged), ``state_dict_bytes`` of the module it runs
        and ``float32_state_dict_bytes``, ``compression`` (their ratio), ``artifact_bytes`` (the
        exported file, where there is one).
        """
        key = (name, size, device, backend)
        if key not in self._quality:
            spec = get_spec(name)
            model = self.model(name, size, device)
            runner = self.runner(name, size, device, backend)
            inputs = tuple(
                x.to(device)
                for x in spec.inputs(spec.config(size), QUALITY_BATCH, seed=QUALITY_SEED)
            )
            with torch.inference_mode():
                reference = map_outputs(to_cpu_float, model(*inputs))
            output = map_outputs(to_cpu_float, runner(*inputs))
            float_bytes = state_dict_bytes(model)
            own_bytes = state_dict_bytes(runner.module) if runner.module is not None else None
            self._quality[key] = {
                "quality_batch": QUALITY_BATCH,
                "sqnr_db": sqnr_db(reference, output),
                "top1_agreement": (
                    top1_agreement(spec.predicted(reference), spec.predicted(output))
                    if spec.classifier
                    else None
                ),
                "state_dict_bytes": own_bytes,
                "float32_state_dict_bytes": float_bytes,
                "compression": float_bytes / own_bytes if own_bytes else None,
                "artifact_bytes": runner.artifact.stat().st_size if runner.artifact else None,
            }
        return self._quality[key]
