"""What a benchmark records besides time: FLOPs per call or step, its case, and the calls around
the timed ones (device-synchronised, warm-up)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from bench.cases import AMP_PRECISIONS, PRECISION_NEEDS, BenchCase
from bench.profiling import matmul_peak_gflops
from impl import count_parameters, get_spec
from impl.machine import ONEDNN_BF16


def count_flops(model: nn.Module, inputs: tuple[Tensor, ...]) -> int:
    """FLOPs of one eager forward, by ``torch.utils.flop_counter`` (matmul, conv, attention).

    The CPU LSTM (oneDNN) and the fused Transformer-encoder inference path are single opaque ops
    the counter does not know, so we count on the decomposed path: oneDNN and the MHA fast path
    off. The arithmetic is the same; only the kernels differ. Element-wise ops are not counted.
    """
    with _counting_flops() as counter, torch.no_grad():
        model(*inputs)
    return int(counter.get_total_flops())


def count_training_flops(
    model: nn.Module,
    loss: Callable[[Tensor, Tensor], Tensor],
    inputs: tuple[Tensor, ...],
    targets: Tensor,
) -> int:
    """FLOPs of one forward and backward pass (about three forwards), counted as ``count_flops``
    does; the optimiser's element-wise update is not counted. Leaves no gradients behind."""
    with _counting_flops() as counter:
        loss(model(*inputs), targets).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


@contextmanager
def _counting_flops() -> Iterator[FlopCounterMode]:
    """A ``FlopCounterMode`` on the decomposed path (see ``count_flops``), fast paths restored."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mkldnn.flags warns about Intel-GPU TF32 on every use
            with (
                torch.backends.mkldnn.flags(enabled=False),
                FlopCounterMode(display=False) as counter,
            ):
                yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def synchronized(run: Callable[[Any], Any], device: str) -> Callable[[Any], Any]:
    """On CUDA, wait for the kernels a call launched before the timer stops; elsewhere ``run``."""
    if device != "cuda":
        return run

    def run_and_sync(inputs: Any) -> Any:
        out = run(inputs)
        torch.cuda.synchronize()
        return out

    return run_and_sync


# A CPU without native bfloat16 emulates it: its bfloat16 matmul (about 1 GFLOP/s on the 2-core
# AVX2 machine) is no peak, as autocast's convolutions, which oneDNN runs in float32 after a
# conversion, go several times faster. There, bfloat16 rows get no % of peak.
PEAK_NEEDS = {("cpu", "bfloat16"): (ONEDNN_BF16,)}


def matmul_peaks(devices: Iterable[str], threads: int) -> dict[str, dict[str, float]]:
    """This machine's matmul GFLOP/s per device and precision (float32 and the autocast dtypes),
    measured once per run: the base of every row's % of peak."""
    needs = {**PRECISION_NEEDS, **PEAK_NEEDS}
    return {
        device: {
            precision: matmul_peak_gflops(device, getattr(torch, precision), threads)
            for precision in AMP_PRECISIONS[device]
            if all(f.available for f in needs.get((device, precision), ()))
        }
        for device in devices
    }


def case_info(case: BenchCase, model: nn.Module, inputs: tuple[Tensor, ...], threads: int) -> dict:
    """What every benchmark row carries about its case, whatever its kind: the case columns, the
    model's family and curriculum item, the inputs' shapes, the parameter count, the threads."""
    spec = get_spec(case.model)
    return {
        "kind": case.kind,
        "model": case.model,
        "size": case.size,
        "family": spec.family,
        "curriculum": spec.curriculum,
        "backend": case.backend,
        "device": case.device,
        "batch_size": case.batch_size,
        "phase": case.phase,
        "precision": case.precision,
        "input_shapes": [list(x.shape) for x in inputs],
        "params": count_parameters(model),
        "threads": threads,
    }


def warm_up(benchmark, config, call: Callable[[Any], Any], argument: Any) -> None:
    """``--bench-warmup`` untimed calls before pytest-benchmark times ``call(argument)``, recorded
    as ``warmup_calls``; none when benchmarks are disabled (the body then runs once)."""
    if benchmark.disabled:
        return
    warmup = config.getoption("--bench-warmup")
    benchmark.extra_info["warmup_calls"] = warmup
    for _ in range(warmup):
        call(argument)
