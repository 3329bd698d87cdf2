"""Inference backends, declared once: eager PyTorch, TorchScript, ONNX Runtime, int8 variants and
``torch.compile``.

A backend turns an eval-mode model into a ``Prepared`` runner. Checks compare every backend with
eager on fresh inputs; benchmarks time ``Prepared.run`` on inputs already converted by
``Prepared.convert``, so conversion cost stays out of the measurement. Each backend belongs to a
benchmark kind: float backends to ``inference``, the int8 ones to ``quantised``, and
``torch.compile`` (minutes of compiling for a large model) to the opt-in ``compile``.
Curriculum: 002 Q72-Q74 (ONNX export and onnxruntime), 002 Q73/Q86 (TorchScript), 002 Q75/Q83/Q92
(static quantisation, catalog B15); dynamic quantisation is an addition (catalog P-quant-dynamic).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from impl.registry import Cap
from impl.tasks import Output, max_abs_diff, output_tensors
from impl.techniques.quantization import quantize_dynamic_int8, quantize_static_int8, sqnr_db


@dataclass(frozen=True)
class Prepared:
    """A model made ready by one backend."""

    convert: Callable[[tuple[Tensor, ...]], Any]  # torch inputs -> what ``run`` takes
    run: Callable[[Any], Any]  # the call that benchmarks time
    to_torch: Callable[[Any], Tensor]  # ``run``'s output -> a CPU or device tensor
    artifact: Path | None = None  # the file the backend wrote, if any
    module: nn.Module | None = None  # the torch module it runs, where it is one (for its size)
    info: Mapping[str, Any] = field(default_factory=dict)  # what preparing measured, by name

    def __call__(self, *inputs: Tensor) -> Tensor:
        return self.to_torch(self.run(self.convert(inputs)))


@dataclass(frozen=True)
class Backend:
    name: str
    requires: Cap  # the capability a model must declare
    devices: tuple[str, ...]
    kind: str  # the benchmark kind that measures it (bench.cases.KINDS)
    # (eval-mode model on its device, example inputs on that device, a work dir, CPU threads)
    prepare: Callable[[nn.Module, tuple[Tensor, ...], Path, int], Prepared]
    summary: str
    rtol: float = 0.0  # parity with eager float32 that checks require and benchmarks report
    atol: float = 0.0
    # int8 backends: parity is an SQNR of at least this many dB against eager float32 instead
    min_sqnr_db: float | None = None
    # its memory comes from torch's allocator, so torch's profiler and CUDA counters see it
    torch_allocator: bool = True
    # samples in the example batch it is prepared from: an exporter needs a few, static int8
    # calibrates its activation ranges on them and needs many (32 clip a regression output)
    example_batch: int = 32
    # its artifact compiles a graph per class of input shapes (torch.compile): checks prepare it
    # from a batch they draw and draw one batch per class, not every batch (see the check)
    shape_specialised: bool = False

    def parity_ok(self, output: Output, reference: Output) -> bool:
        """Whether a backend output is close enough to eager float32: an SQNR floor for int8
        backends, ``torch.isclose`` semantics with the backend's tolerances for the others (for
        a model with several outputs, every one of them)."""
        if self.min_sqnr_db is not None:
            return sqnr_db(reference, output) >= self.min_sqnr_db
        named = output_tensors(output)
        return all(
            max_abs_diff(named[name], ref) <= self.atol + self.rtol * float(ref.float().abs().max())
            for name, ref in output_tensors(reference).items()
        )


def _torch_runner(
    forward: Callable[..., Tensor], artifact: Path | None = None, **fields: Any
) -> Prepared:
    def run(inputs: tuple[Tensor, ...]) -> Tensor:
        with torch.inference_mode():
            return forward(*inputs)

    return Prepared(
        convert=lambda inputs: inputs,
        run=run,
        to_torch=lambda out: out,
        artifact=artifact,
        **fields,
    )


def _prepare_eager(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    return _torch_runner(model, module=model)


def _prepare_quant_dynamic(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    """Linear and LSTM weights in int8, activations quantised on the fly: float in, float out."""
    quantised = quantize_dynamic_int8(model)
    return _torch_runner(quantised, module=quantised)


def _prepare_quant_static(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    """Post-training static int8 with the engine's qconfig, calibrated on the example inputs."""
    quantised = quantize_static_int8(model, [inputs])
    return _torch_runner(quantised, module=quantised)


def _prepare_compile(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    """``torch.compile`` (inductor); the first call compiles, and its time is kept apart.

    The batch dimension is compiled dynamic, as for a server taking any batch: one graph serves
    every batch from 2 up (batch 1 gets its own: torch specialises sizes 0 and 1), so the checks,
    which prepare it from 2 samples, compare the graph the benchmarks time from 32. A static
    graph of the example's batch would serve that batch alone, and the next batch would compile
    a dynamic graph anyway. Where the model's code branches on the batch, torch adds a guard and
    a graph per branch (a convolution's algorithm choice: yolov7_tiny_style's graph holds from
    16 samples up), and a model that loops over its images compiles one graph per batch size."""
    compiled = torch.compile(model)
    for x in inputs:
        torch._dynamo.maybe_mark_dynamic(x, 0)  # a hint: no error where the model specialises
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(*inputs)
    if inputs[0].is_cuda:
        torch.cuda.synchronize()
    return _torch_runner(
        compiled, module=model, info={"compile_s": round(time.perf_counter() - start, 3)}
    )


def _prepare_torchscript(
    model: nn.Module, inputs: tuple[Tensor, ...], workdir: Path, threads: int
) -> Prepared:
    """``torch.jit.script``, saved and loaded back as deployed (deprecated in torch 2.14)."""
    path = workdir / "model.torchscript.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    device = next(iter(model.parameters())).device
    loaded = torch.jit.load(str(path), map_location=device)
    return _torch_runner(loaded, artifact=path, module=loaded)


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
            "eager",
            Cap.EAGER,
            ("cpu", "cuda"),
            "inference",
            _prepare_eager,
            "PyTorch eager, inference_mode",
        ),
        # torchvision's model tests allow 1e-4 between eager and scripted outputs
        Backend(
            "torchscript",
            Cap.TORCHSCRIPT,
            ("cpu", "cuda"),
            "inference",
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
            "inference",
            _prepare_onnxruntime,
            "torch.onnx.export (dynamo) + onnxruntime CPUExecutionProvider",
            rtol=1e-3,
            atol=1e-5,
            torch_allocator=False,
        ),
        # int8 is judged by SQNR, not by a tolerance: see Backend.min_sqnr_db
        Backend(
            "quant_dynamic",
            Cap.QUANT_DYNAMIC,
            ("cpu",),
            "quantised",
            _prepare_quant_dynamic,
            "torch.ao.quantization.quantize_dynamic: int8 Linear/LSTM weights",
            min_sqnr_db=20.0,
        ),
        Backend(
            "quant_static",
            Cap.QUANT_STATIC,
            ("cpu",),
            "quantised",
            _prepare_quant_static,
            "eager post-training static int8: stubs, engine qconfig, calibrate, convert",
            min_sqnr_db=20.0,
            example_batch=256,
        ),
        # inductor reorders float sums; 1e-4 as TorchScript
        Backend(
            "compile",
            Cap.EAGER,
            ("cpu", "cuda"),
            "compile",
            _prepare_compile,
            "torch.compile (inductor), default mode, batch dimension dynamic",
            rtol=1e-4,
            atol=1e-5,
            shape_specialised=True,
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
