"""int8 post-training quantisation, static and dynamic, and the measures used to judge it.

Curriculum: 002 Q75, Q83, Q92 (eager-mode static quantisation); catalog ``static_quantization``,
B15, B17, P-quant-static. The curriculum's recipe sets a qconfig, prepares, calibrates and
converts, but never adds QuantStub/DeQuantStub, so the converted ``quantized.Linear`` is fed a
float tensor and raises NotImplementedError (catalog B15); ``quantize_static_int8`` is the
corrected recipe. Q92 then divides ``torch.save``'s return value, None, by 1024 (B17):
``state_dict_bytes`` measures the serialised size it meant to compare.

Dynamic quantisation (``quantize_dynamic_int8``) is not in the curriculum; it is an addition
(catalog P-quant-dynamic) because a harness that measures quantised size and speed needs both
kinds, and it is the one that suits Linear- and LSTM-only models.

Both use ``torch.ao.quantization``, deprecated since torch 2.13 in favour of torchao (B15b), as
it is still the only eager-mode path that calibrates Conv2d and Linear and converts them to int8
CPU kernels: torchao 0.18's ``quantize_`` has no int8 convolution, and its static config takes a
hand-set activation scale rather than calibrating.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.ao.quantization import (
    DeQuantStub,
    QuantStub,
    convert,
    get_default_qconfig,
    prepare,
    quantize_dynamic,
)

from impl.differentiable import no_gradcheck
from impl.tasks import Output, output_tensors
from impl.techniques.registry import Category, register_technique


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every Linear and LSTM replaced by its int8 dynamic
    version: weights stored as qint8, activations quantised on the fly per batch, so it needs no
    calibration and takes and returns float tensors. ``model`` itself is left untouched."""
    quantized = copy.deepcopy(model).eval()
    return quantize_dynamic(quantized, {nn.Linear, nn.LSTM}, dtype=torch.qint8, inplace=True)


@no_gradcheck("a quantisation wrapper: int8 kernels after convert have no autograd")
class QuantStubbed(nn.Module):
    """QuantStub -> ``model`` -> DeQuantStub, the fix for catalog B15.

    Before conversion both stubs are identities (the QuantStub's observer records the input
    range); ``convert`` turns them into Quantize and DeQuantize, so the converted model takes a
    float tensor, runs the quantised layers on quint8 activations and returns a float tensor.
    One stub means one float input: the models with static quantisation take a single tensor.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.model = model
        self.dequant = DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(self.model(self.quant(x)))


def quantize_static_int8(
    model: nn.Module, calibration: Iterable[tuple[Tensor, ...]], engine: str | None = None
) -> nn.Module:
    """Eager-mode post-training static int8 quantisation of a copy of ``model``.

    The corrected curriculum recipe: wrap in ``QuantStubbed``, eval, set the engine's default
    qconfig, ``prepare`` (inserts observers), run every calibration batch so the observers see
    the activation ranges, ``convert`` (swaps Conv2d/Linear for quantised modules). ``engine``
    picks the qconfig, default the engine in effect (``torch.backends.quantized.engine``); it
    does not switch the engine the kernels run on. Returns a module that takes the same float
    input as ``model`` and returns float output. An empty ``calibration`` raises ValueError.
    """
    stubbed = QuantStubbed(copy.deepcopy(model)).eval()
    stubbed.qconfig = get_default_qconfig(engine or torch.backends.quantized.engine)
    prepare(stubbed, inplace=True)
    if _calibrate(stubbed, calibration) == 0:
        raise ValueError("calibration is empty: static quantisation needs at least one batch")
    return convert(stubbed, inplace=True)


def _calibrate(prepared: nn.Module, calibration: Iterable[tuple[Tensor, ...]]) -> int:
    """Run every batch through the observers of ``prepared``; return how many batches ran."""
    batches = 0
    with torch.inference_mode():
        for batch in calibration:
            prepared(*batch)
            batches += 1
    return batches


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes that ``torch.save(model.state_dict(), ...)`` writes: the size 002 Q92 compares.

    ``torch.save`` returns None (catalog B17), so the size is taken from an in-memory buffer.
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def sqnr_db(reference: Output, approx: Output) -> float:
    """Signal-to-quantisation-noise ratio 20 log10(|x| / |x - x_hat|) in dB; +inf when equal.
    For a model with several outputs (``impl.tasks.output_tensors``), the worst of them.

    The measure of PyTorch's quantisation tests and torchao (verification.md, P-q): 20 dB is a
    10% relative L2 error, 40 dB 1%. Computed in float64, so it also takes bfloat16 or float16
    output (autocast). ``torch.ao.ns.fx.utils.compute_sqnr`` computes the same formula but
    returns None for any dtype other than float32, and a tensor rather than a number.
    """
    if not isinstance(reference, Tensor):
        named = output_tensors(approx)
        return min(sqnr_db(r, named[name]) for name, r in output_tensors(reference).items())
    if reference.shape != approx.shape:
        raise ValueError(f"shapes differ: {list(reference.shape)} vs {list(approx.shape)}")
    reference, approx = reference.double(), approx.double()
    noise = torch.linalg.vector_norm(reference - approx)
    if noise == 0:
        return math.inf
    return float(20 * torch.log10(torch.linalg.vector_norm(reference) / noise))


def top1_agreement(reference_logits: Tensor, approx_logits: Tensor) -> float:
    """Fraction of rows whose argmax over the last dim is the same in both: (..., K) -> [0, 1].

    How often quantisation changes a classifier's prediction, without needing labels.
    """
    if reference_logits.shape != approx_logits.shape:
        raise ValueError(
            f"shapes differ: {list(reference_logits.shape)} vs {list(approx_logits.shape)}"
        )
    same = reference_logits.argmax(dim=-1) == approx_logits.argmax(dim=-1)  # (...,)
    return float(same.double().mean())


register_technique(
    name="static_quantization",
    category=Category.DEPLOYMENT,
    curriculum="002 Q75, Q83, Q92",
    summary="eager post-training static int8: QuantStub/DeQuantStub, eval, calibrate, convert",
    api="torch.ao.quantization.prepare / convert with get_default_qconfig",
    bugs=("B15", "B17"),
)
