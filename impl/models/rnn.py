"""Recurrent regressors: an Elman RNN or an LSTM over a sequence, a Linear head on the last step.

Three curriculum models, one wiring (``nn.RNN`` or ``nn.LSTM``, batch first, then
``Linear(hidden, 1)`` on ``out[:, -1]``), so one class with the cell as a config field:

- ``rnn_last_step``, curriculum 001 Q10 (the gradient-clipping example, 56 parameters):
  nn.RNN(3 -> 5) on (10, 5, 3) sequences.
- ``rnn_ts_regressor``, curriculum 002 Q30 (321 parameters): nn.RNN(1 -> 16) on (8, 10, 1).
- ``lstm_forecaster``, curriculum 002 Q45 (17,217 parameters): nn.LSTM(1 -> 64) on (16, 10, 1).

Deviation from the curriculum: 001 Q10 builds its initial state as
``torch.zeros(1, x.size(0), hidden_size)`` from a module-level global ``hidden_size`` and on the
CPU in float32, so the model raises NameError where that global is absent, and RuntimeError when
its input is on another device or in another dtype (catalog B47). We pass no initial state: the
layer's default is that same zero state, of the layer's own hidden size, made on the input's
device and in its dtype. The inputs here are dense float sequences with no padding, so reading
``out[:, -1]`` is the last real step (unlike the padded token batches of catalog B37).

Capabilities: TorchScript and CPU autocast (bfloat16) work for both cells, ONNX for the LSTM.
The RNN models declare ONNX as a known failure: torch's dynamo exporter unrolls ``nn.RNN`` over
the example's length, so the exported graph fails at any other length. CPU autocast runs
``nn.LSTM`` through oneDNN, which has no bfloat16 LSTM without native bf16 (AMD EPYC with AVX2:
"could not create a primitive descriptor for the LSTM forward propagation primitive"), so the
LSTM declares that need; ``nn.RNN`` runs under autocast everywhere. Dynamic int8 quantisation
applies to the LSTM only: ``quantize_dynamic`` has no int8 version of ``nn.RNN`` and leaves it in
float32 (torch 2.14), so in the RNN models only the 6- or 17-weight head would be int8, and they
do not declare it.
Dimension key: B batch, T time steps, F features per step, H hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.machine import ONEDNN_BF16
from impl.registry import Cap, register_model
from impl.tasks import REGRESSION, scalar_shape

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM}


@dataclass(frozen=True)
class RecurrentRegressorConfig:
    cell: str = "rnn"  # "rnn" (Elman, tanh) or "lstm"
    input_size: int = 3  # F
    hidden_size: int = 5  # H
    max_len: int = 5  # longest example sequence (the layer itself takes any length)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")


RNN_LAST_STEP_SIZES = {  # 001 Q10: RNN(3 -> 5), sequences of 5 steps
    "tiny": RecurrentRegressorConfig(),
    "full": RecurrentRegressorConfig(),
}
RNN_TS_SIZES = {  # 002 Q30: RNN(1 -> 16), sequences of 10 steps
    "tiny": RecurrentRegressorConfig(input_size=1, hidden_size=16, max_len=10),
    "full": RecurrentRegressorConfig(input_size=1, hidden_size=16, max_len=10),
}
LSTM_FORECASTER_SIZES = {  # 002 Q45: LSTM(1 -> 64), sequences of 10 steps
    "tiny": RecurrentRegressorConfig(cell="lstm", input_size=1, hidden_size=16, max_len=10),
    "full": RecurrentRegressorConfig(cell="lstm", input_size=1, hidden_size=64, max_len=10),
}


class RecurrentRegressor(nn.Module):
    """RNN or LSTM (batch first, zero initial state) -> Linear on the output at the last step.

    Shape: (B, T, F) float -> (B, 1)
    """

    def __init__(self, cfg: RecurrentRegressorConfig) -> None:
        super().__init__()
        self.input_size = cfg.input_size
        self.rnn = CELLS[cfg.cell](cfg.input_size, cfg.hidden_size, batch_first=True)
        self.fc = nn.Linear(cfg.hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"expected sequences (B, T, {self.input_size}), got {list(x.shape)}")
        out, _ = self.rnn(x)  # (B, T, H); no h0: zeros of the layer's size, on x's device (B47)
        return self.fc(out[:, -1])  # (B, 1): the output at the last step


def _example_inputs(
    cfg: RecurrentRegressorConfig,
    batch_size: int,
    generator: torch.Generator,
    seq_len: int | None = None,
) -> tuple[Tensor]:
    """Standard normal sequences (B, T, F), T = seq_len or cfg.max_len, as the curriculum draws."""
    seq_len = cfg.max_len if seq_len is None else seq_len
    return (torch.randn(batch_size, seq_len, cfg.input_size, generator=generator),)


def _sequence_dims(cfg: RecurrentRegressorConfig) -> dict[str, tuple[int, int]]:
    return {"seq_len": (1, cfg.max_len)}


_COMMON = {
    "family": "recurrent",
    "example_inputs": _example_inputs,
    "output_shape": scalar_shape,
    "dynamic_dims": _sequence_dims,
    "task": REGRESSION,
}
_RNN_CAPS = {Cap.TORCHSCRIPT, Cap.ONNX, Cap.AMP}
# torch's dynamic-shape RNN decompositions for ONNX cover LSTM and GRU (pytorch/pytorch#184872)
_RNN_KNOWN_FAILURES = {
    Cap.ONNX: "torch 2.14: the dynamo exporter unrolls nn.RNN (aten.rnn_tanh) over the example's "
    "sequence length although seq_len is dynamic, so onnxruntime raises INVALID_ARGUMENT 'Invalid "
    "sequence index (1) specified for sequence of size (1)' in SequenceAt at another length"
}


@register_model(
    **_COMMON,
    curriculum="001 Q10",
    sizes=RNN_LAST_STEP_SIZES,
    caps=_RNN_CAPS,
    known_failures=_RNN_KNOWN_FAILURES,
    full_params=56,  # catalog: measured on the curriculum's own class (same layers)
)
def rnn_last_step(cfg: RecurrentRegressorConfig) -> RecurrentRegressor:
    """Elman RNN regressor on the last step, without the curriculum's global-sized CPU h0."""
    return RecurrentRegressor(cfg)


@register_model(
    **_COMMON,
    curriculum="002 Q30",
    sizes=RNN_TS_SIZES,
    caps=_RNN_CAPS,
    known_failures=_RNN_KNOWN_FAILURES,
    full_params=321,  # catalog: measured on the curriculum's own class (same layers)
)
def rnn_ts_regressor(cfg: RecurrentRegressorConfig) -> RecurrentRegressor:
    """Elman RNN time-series regressor reading the output at the last step."""
    return RecurrentRegressor(cfg)


@register_model(
    **_COMMON,
    curriculum="002 Q45",
    sizes=LSTM_FORECASTER_SIZES,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    # CPU autocast runs nn.LSTM in bfloat16, and oneDNN has no bfloat16 LSTM without native bf16
    needs={Cap.AMP: (ONEDNN_BF16,)},
    full_params=17_217,  # catalog: measured on the curriculum's own class (same layers)
)
def lstm_forecaster(cfg: RecurrentRegressorConfig) -> RecurrentRegressor:
    """LSTM time-series forecaster reading the output at the last step."""
    return RecurrentRegressor(cfg)
