"""Binary classifiers on 10 features that return one logit per sample: a two-layer MLP, and a
deeper one with BatchNorm1d and Dropout.

Curriculum 002 Q26, both answers of the exercise:

- ``binary_mlp_small``, 002 Q26 v1: ``BinaryClassifier(input_size=10, hidden_size=16)``,
  Linear(10, 16) -> ReLU -> Linear(16, 1), 193 parameters, trained with ``nn.BCELoss`` and Adam
  lr 1e-3 on a batch (8, 10).
- ``binary_mlp_bn``, 002 Q26 v2: ``BinaryClassifier(10)`` with hidden sizes 128 and 64, an
  ``nn.Sequential`` Linear(10, 128) -> ReLU -> BatchNorm1d -> Dropout(0.3) -> Linear(128, 64) ->
  ReLU -> BatchNorm1d -> Dropout(0.2) -> Linear(64, 1), 10,113 parameters, trained with BCELoss,
  Adam lr 1e-3, batch 32, 50 epochs on random 0/1 labels (so its target accuracy is ~50%).

Deviation from the seeds: both end in ``nn.Sigmoid`` and train with ``nn.BCELoss``; ours return
the logit (the last Linear's output) and the task's loss is BCE with logits
(``F.binary_cross_entropy_with_logits``), which the seed's own table of losses (002 Q29)
recommends for its numerical stability. On a confidently wrong sample the seed's form saturates:
sigmoid(40) is 1.0 in float32, so BCELoss clamps log(1 - p) at -100 and the gradient reaching the
logit is exactly 0, where BCE with logits gives loss 40 and gradient 1 (pinned in
``checks/test_curriculum_bugs_mlp.py``). A probability is ``torch.sigmoid(logit)`` and the
seed's decision ``outputs > 0.5`` is ``logit > 0``. The Sigmoid held no parameters, so the
state_dict keys are the seed's (v1: fc1, fc2; v2: network.0, .2, .4, .6, .8) and its trained
weights load as they are.

Kept from the seed on purpose: v2 normalises after the ReLU (Linear -> ReLU -> BatchNorm1d),
where 004 L131 advises BatchNorm before the activation. Both placements are in use; it is a
placement opinion, not a bug, and changing it would change the seed's model. In training mode
BatchNorm1d needs more than one sample per batch (a batch of 1 raises ValueError:
``min_train_batch=2``); in eval mode it uses its running statistics and takes any batch.
``forward`` checks the input shape.
Dimension key: B batch, D input features, H1 and H2 hidden units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.registry import Cap, register_model
from impl.tasks import BINARY, scalar_shape


def _example_inputs(cfg, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    # standard normal features, as the seed's torch.randn(8, 10) and np.random.randn(1000, 10)
    return (torch.randn(batch_size, cfg.in_features, generator=generator),)


def _check_input(x: Tensor, in_features: int) -> None:
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"expected input (B, {in_features}), got {list(x.shape)}")


# ---------------------------------------------------------------------------------------------
# 002 Q26 v1: Linear -> ReLU -> Linear
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryMLPConfig:
    in_features: int = 10  # D
    hidden_features: int = 16  # H1


SMALL_SIZES = {"tiny": BinaryMLPConfig(), "full": BinaryMLPConfig()}


class BinaryMLP(nn.Module):
    """Linear -> ReLU -> Linear, returning one logit per sample (no Sigmoid).

    Shape: (B, D) -> (B, 1)
    """

    def __init__(self, cfg: BinaryMLPConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        # the seed's layer names, so its state_dict loads as is
        self.fc1 = nn.Linear(cfg.in_features, cfg.hidden_features)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(cfg.hidden_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_features)
        x = self.relu(self.fc1(x))  # (B, H1)
        return self.fc2(x)  # (B, 1): the logit; the seed's Sigmoid lives in the loss


@register_model(
    family="mlp",
    curriculum="002 Q26",
    sizes=SMALL_SIZES,
    example_inputs=_example_inputs,
    output_shape=scalar_shape,
    task=BINARY,
    # No static int8: it runs, but the untrained logit lands at 23 dB from float on a batch of 64
    # (calibrated on 32 samples), too near the backend's 20 dB floor (see regression_mlp.py)
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    full_params=193,  # catalog: Linear(10, 16) 176 + Linear(16, 1) 17
)
def binary_mlp_small(cfg: BinaryMLPConfig) -> BinaryMLP:
    """Binary classifier MLP 10-16-1 returning a logit (002 Q26 v1, Sigmoid moved into the loss)."""
    return BinaryMLP(cfg)


# ---------------------------------------------------------------------------------------------
# 002 Q26 v2: two Linear -> ReLU -> BatchNorm1d -> Dropout blocks, then Linear
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryBNMLPConfig:
    in_features: int = 10  # D
    hidden_features: tuple[int, int] = (128, 64)  # H1, H2
    dropout: tuple[float, float] = (0.3, 0.2)  # after each block's BatchNorm


# 10,113 parameters are already small and fast, so the checks train the seed's own configuration
BN_SIZES = {"tiny": BinaryBNMLPConfig(), "full": BinaryBNMLPConfig()}


class BinaryBNMLP(nn.Module):
    """(Linear -> ReLU -> BatchNorm1d -> Dropout) x 2 -> Linear, returning one logit per sample.

    Shape: (B, D) -> (B, 1); a training batch needs B >= 2 (batch statistics)
    """

    def __init__(self, cfg: BinaryBNMLPConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        h1, h2 = cfg.hidden_features
        p1, p2 = cfg.dropout
        # The seed's nn.Sequential less its final Sigmoid (index 12, no parameters): indices and
        # so state_dict keys are the seed's. BN after ReLU is the seed's placement, kept.
        self.network = nn.Sequential(
            nn.Linear(cfg.in_features, h1),  # 0: (B, H1)
            nn.ReLU(),
            nn.BatchNorm1d(h1),  # 2
            nn.Dropout(p1),
            nn.Linear(h1, h2),  # 4: (B, H2)
            nn.ReLU(),
            nn.BatchNorm1d(h2),  # 6
            nn.Dropout(p2),
            nn.Linear(h2, 1),  # 8: (B, 1), the logit
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_features)
        return self.network(x)  # (B, 1)


@register_model(
    family="mlp",
    curriculum="002 Q26",
    sizes=BN_SIZES,
    example_inputs=_example_inputs,
    output_shape=scalar_shape,
    task=BINARY,
    # No static int8: BatchNorm1d has no eager quantised module and, after the ReLU, cannot be
    # fused into the Linear before it, so the converted model raises NotImplementedError
    # (aten::native_batch_norm on QuantizedCPU). Dynamic int8 converts the three Linear layers.
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    min_train_batch=2,  # BatchNorm1d raises ValueError on a training batch of 1
    # Linear(10, 128) 1,408 + BN(128) 256 + Linear(128, 64) 8,256 + BN(64) 128 + Linear(64, 1)
    # 65 = 10,113; catalog: measured on the seed's own class
    full_params=10_113,
)
def binary_mlp_bn(cfg: BinaryBNMLPConfig) -> BinaryBNMLP:
    """Binary classifier MLP 10-128-64-1, BatchNorm1d after ReLU and Dropout; returns a logit."""
    return BinaryBNMLP(cfg)
