"""Small regression MLPs with one output: Linear -> ReLU -> Linear (optionally with Dropout), and a
three-layer MLP with a skip connection.

Four curriculum models, two classes:

- ``mlp_10_50_1``, curriculum 001 Q1 (also Q2): ``SimpleNet``, Linear(10, 50) -> ReLU ->
  Linear(50, 1), 601 parameters. The seed gives no task; its single output is scored here as a
  regression (MSE).
- ``mlp_10_50_1_dropout``, curriculum 001 Q3 (also Q4): the same net with
  ``nn.Dropout(p=0.5)`` placed between fc1 and the ReLU (fc1 -> Dropout -> ReLU -> fc2), 601
  parameters. 004 L125-128 says to put Dropout after the activation instead; for ReLU the two
  orders are the same function under the same mask (catalog C-dropout-relu-commute): with m in
  {0, 1} and s = 1 / (1 - p) > 0, relu(m * x * s) = m * relu(x) * s, because ReLU is positively
  homogeneous and relu(0) = 0. So we keep the seed's order (and its layer names: its state_dict
  loads as is); ``checks/test_curriculum_bugs_mlp.py`` pins the equality. 001 Q4 also says
  that at inference Dropout "scales all outputs": in PyTorch survivors are scaled by 1 / (1 - p)
  during training and eval is the identity (catalog B06), which is what ``nn.Dropout`` does here.
- ``mlp_2_h_1``, curriculum 001 Q9: the random-search demo's ``SimpleNet(hidden_size)``,
  Linear(2, h) -> ReLU -> Linear(h, 1) with h drawn from {10, 50, 100}: sizes "h10", "h50" and
  "h100" (41 / 201 / 401 parameters), "full" = "h100" (the largest of the seed's choices) and
  "tiny" = "h10". The seed draws lr and batch size too, but never trains; those are training
  settings, not the model's.
- ``skip_mlp``, curriculum 002 Q32: ``CustomModel(10, 20, 1)``: skip = fc1(x); x = fc2(relu(skip));
  x = x + skip; fc3(x), 661 parameters. The skip carries fc1's pre-activation output, as the seed
  writes it (a design choice, not a bug: the sum is still a residual around relu -> fc2). The
  seed's v2 answer is empty.

The three SimpleNets are one class (``RegressionMLP``) whose input width, hidden width and dropout
are config fields. Deviations from the seeds: ``forward`` checks the input shape (``nn.Linear``
would broadcast over extra leading dimensions), and a model without dropout holds
``nn.Identity`` in its place (no parameters, so the state_dict keys are the seed's: fc1, fc2).
The full sizes are already tiny, so "tiny" equals "full" except for ``mlp_2_h_1``,
whose "tiny" is "h10" (it overfits 8 random targets in 300 Adam steps; no wider hidden needed).
Dimension key: B batch, D input features, H hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.registry import Cap, register_model
from impl.tasks import REGRESSION, scalar_shape


@dataclass(frozen=True)
class RegressionMLPConfig:
    in_features: int = 10  # D
    hidden_features: int = 50  # H
    dropout: float = 0.0  # between fc1 and the ReLU, as 001 Q3 places it; 0 = none

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class RegressionMLP(nn.Module):
    """Linear -> [Dropout] -> ReLU -> Linear to one output.

    Shape: (B, D) -> (B, 1)
    """

    def __init__(self, cfg: RegressionMLPConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        self.fc1 = nn.Linear(cfg.in_features, cfg.hidden_features)
        # Dropout before ReLU, as the seed: the same function as after it (C-dropout-relu-commute)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(cfg.hidden_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input (B, {self.in_features}), got {list(x.shape)}")
        x = self.relu(self.dropout(self.fc1(x)))  # (B, H)
        return self.fc2(x)  # (B, 1)


def _example_inputs(cfg, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    return (torch.randn(batch_size, cfg.in_features, generator=generator),)


# On a batch of 64, dynamic int8 stays 33-36 dB and bfloat16 autocast 43-50 dB from float. Static
# int8 is not declared: it runs (Linear and ReLU quantise), but the one output of these untrained
# nets, a small difference of 7-bit hidden activations, lands at 19-23 dB (calibrated on 32
# samples) and 27-31 dB (on 256), at or near the backend's 20 dB floor, not reliably above it.
_COMMON = {
    "family": "mlp",
    "example_inputs": _example_inputs,
    "task": REGRESSION,
    "caps": {Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
}

SIZES = {"tiny": RegressionMLPConfig(), "full": RegressionMLPConfig()}


@register_model(
    **_COMMON,
    curriculum="001 Q1",
    sizes=SIZES,
    output_shape=scalar_shape,
    full_params=601,  # catalog: Linear(10, 50) 550 + Linear(50, 1) 51
)
def mlp_10_50_1(cfg: RegressionMLPConfig) -> RegressionMLP:
    """Regression MLP 10-50-1 with ReLU (001's SimpleNet)."""
    return RegressionMLP(cfg)


DROPOUT_SIZES = {
    "tiny": RegressionMLPConfig(dropout=0.5),
    "full": RegressionMLPConfig(dropout=0.5),
}


@register_model(
    **_COMMON,
    curriculum="001 Q3",
    sizes=DROPOUT_SIZES,
    output_shape=scalar_shape,
    full_params=601,  # catalog: as mlp_10_50_1; Dropout holds no parameters
)
def mlp_10_50_1_dropout(cfg: RegressionMLPConfig) -> RegressionMLP:
    """Regression MLP 10-50-1 with Dropout(0.5) before the ReLU (001's SimpleNet with Dropout)."""
    return RegressionMLP(cfg)


HIDDEN_SIZES = {
    f"h{h}": RegressionMLPConfig(in_features=2, hidden_features=h) for h in (10, 50, 100)
}
HIDDEN_SIZES = {
    "tiny": HIDDEN_SIZES["h10"],  # 41 parameters; fits 8 random targets in 300 Adam steps
    **HIDDEN_SIZES,
    "full": HIDDEN_SIZES["h100"],  # the largest of the seed's random-search choices
}


@register_model(
    **_COMMON,
    curriculum="001 Q9",
    sizes=HIDDEN_SIZES,
    output_shape=scalar_shape,
    full_params=401,  # catalog: h = 100: Linear(2, 100) 300 + Linear(100, 1) 101
)
def mlp_2_h_1(cfg: RegressionMLPConfig) -> RegressionMLP:
    """Regression MLP 2-h-1 with ReLU, h a config field (001 Q9's random-search SimpleNet)."""
    return RegressionMLP(cfg)


# ---------------------------------------------------------------------------------------------
# 002 Q32: three Linear layers with a skip connection around relu -> fc2
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkipMLPConfig:
    in_features: int = 10  # D
    hidden_features: int = 20  # H
    out_features: int = 1


class SkipMLP(nn.Module):
    """skip = fc1(x); fc3(fc2(relu(skip)) + skip): a residual around ReLU -> fc2.

    Shape: (B, D) -> (B, out_features)
    """

    def __init__(self, cfg: SkipMLPConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        # the seed's layer names, so its state_dict loads as is
        self.fc1 = nn.Linear(cfg.in_features, cfg.hidden_features)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(cfg.hidden_features, cfg.hidden_features)
        self.fc3 = nn.Linear(cfg.hidden_features, cfg.out_features)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input (B, {self.in_features}), got {list(x.shape)}")
        skip = self.fc1(x)  # (B, H), before the activation, as the seed
        x = self.fc2(self.relu(skip)) + skip  # (B, H)
        return self.fc3(x)  # (B, out_features)


def _skip_output_shape(cfg: SkipMLPConfig, batch_size: int) -> tuple[int, int]:
    return (batch_size, cfg.out_features)


SKIP_SIZES = {"tiny": SkipMLPConfig(), "full": SkipMLPConfig()}


@register_model(
    **_COMMON,
    curriculum="002 Q32",
    sizes=SKIP_SIZES,
    output_shape=_skip_output_shape,
    # Linear(10, 20) 220 + Linear(20, 20) 420 + Linear(20, 1) 21; catalog: the seed's own class
    full_params=661,
)
def skip_mlp(cfg: SkipMLPConfig) -> SkipMLP:
    """MLP 10-20-20-1 with a skip connection from fc1's output past relu -> fc2 (002 Q32)."""
    return SkipMLP(cfg)
