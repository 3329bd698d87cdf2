"""What a benchmark records besides time: FLOPs per call, and a device-synchronised call."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, inputs: tuple[Tensor, ...]) -> int:
    """FLOPs of one eager forward, by ``torch.utils.flop_counter`` (matmul, conv, attention).

    The CPU LSTM (oneDNN) and the fused Transformer-encoder inference path are single opaque ops
    the counter does not know, so we count on the decomposed path: oneDNN and the MHA fast path
    off. The arithmetic is the same; only the kernels differ. Element-wise ops are not counted.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mkldnn.flags warns about Intel-GPU TF32 on every use
            with (
                torch.no_grad(),
                torch.backends.mkldnn.flags(enabled=False),
                FlopCounterMode(display=False) as counter,
            ):
                model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def synchronized(run: Callable[[Any], Any], device: str) -> Callable[[Any], Any]:
    """On CUDA, wait for the kernels a call launched before the timer stops; elsewhere ``run``."""
    if device != "cuda":
        return run

    def run_and_sync(inputs: Any) -> Any:
        out = run(inputs)
        torch.cuda.synchronize()
        return out

    return run_and_sync
