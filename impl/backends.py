"""Inference backends, declared once: eager PyTorch, TorchScript and ONNX Runtime.

A backend turns an eval-mode model into a ``Prepared`` runner. Checks compare every backend with
eager on fresh inputs; benchmarks time ``Prepared.run`` on inputs already converted by
``Prepared.convert``, so conversion cost stays out of the measurement.
Curriculum: 002 Q72-Q74 (ONNX export and onnxruntime), 002 Q73/Q86 (TorchScript).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from impl.registry import Cap


@dataclass(frozen=True)
class Prepared:
    """A model made ready by one backend."""

    convert: Callable[[tuple[Tensor, ...]], Any]  # torch inputs -> what ``run`` takes
    run: Callable[[Any], Any]  # the call that benchmarks time
    to_torch: Callable[[Any], Tensor]  # ``run``'s output -> a CPU or device tensor
    artifact: Path | None = None  # the file the backend wrote, if any

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self.to_torch(self.run(self.convert(inputs)))


@dataclass(frozen=True)
class Backend:
    name: str
    requires: Cap  # the capability a model must declare
    devices: tuple[str, ...]
    # (eval-mode model on its device, example inputs on that device, a work dir, CPU threads)
    prepare: Callable[[nn.Module, tuple[Tensor, ...], Path, int], Prepared]
    summary: str
    rtol: float = 0.0  # parity with eager float32 that checks require and benchmarks report
    atol: float = 0.0

    def parity_ok(self, max_abs_diff: float, reference: Tensor) -> bool:
        """Whether a backend output is within tolerance of eager (``torch.isclose`` semantics)."""
        return max_abs_diff <= self.atol + self.rtol * float(reference.abs().max())


def _torch_runner(module: Callable[..., Tensor], artifact: Path | None = None) -> Prepared:
    def run(inputs: tuple[Tensor, ...]) -> Tensor:
        with torch.inference_mode():
            return module(*inputs)

    return Prepared(
        convert=lambda inputs: inputs, run=run, to_torch=lambda out: out, artifact=artifact
    )


def _prepare_eager(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    return _torch_runner(model)


def _prepare_torchscript(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    """``torch.jit.script``, saved and loaded back as deployed (deprecated in torch 2.14)."""
    path = workdir / "model.torchscript.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    device = next(iter(model.parameters())).device
    return _torch_runner(torch.jit.load(str(path), map_location=device), artifact=path)


def export_onnx(model: nn.Module, inputs: tuple[Tensor, ...], path: Path) -> Path:
    """Export with the dynamo exporter (torch's default since 2.9), every input dimension dynamic
    where the model allows it, so one file serves every batch size and sequence length."""
    dynamic_shapes = tuple({axis: torch.export.Dim.AUTO for axis in range(x.dim())} for x in inputs)
    torch.onnx.export(
        model, inputs, str(path), dynamo=True, dynamic_shapes=dynamic_shapes, verbose=False
    )
    return path


def _prepare_onnxruntime(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    import onnxruntime as ort

    path = export_onnx(model, inputs, workdir / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the same thread budget as torch
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def convert(torch_inputs: tuple[Tensor, ...]) -> dict[str, Any]:
        return {name: x.detach().cpu().numpy() for name, x in zip(names, torch_inputs, strict=True)}

    return Prepared(
        convert=convert,
        run=lambda feed: session.run(None, feed)[0],
        to_torch=torch.from_numpy,
        artifact=path,
    )


_BACKENDS = {
    b.name: b
    for b in (
        Backend(
            "eager", Cap.EAGER, ("cpu", "cuda"), _prepare_eager, "PyTorch eager, inference_mode"
        ),
        # torchvision's model tests allow 1e-4 between eager and scripted outputs
        Backend(
            "torchscript",
            Cap.TORCHSCRIPT,
            ("cpu", "cuda"),
            _prepare_torchscript,
            "torch.jit.script, saved and reloaded",
            rtol=1e-4,
            atol=1e-5,
        ),
        # PyTorch's ONNX tutorial: rtol 1e-3, atol 1e-5
        Backend(
            "onnxruntime",
            Cap.ONNX,
            ("cpu",),
            _prepare_onnxruntime,
            "torch.onnx.export (dynamo) + onnxruntime CPUExecutionProvider",
            rtol=1e-3,
            atol=1e-5,
        ),
    )
}


def list_backends() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _BACKENDS, n=2, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown backend {name!r}{hint} (known: {', '.join(_BACKENDS)})") from None
