"""Batch normalisation over features, written from scratch: what ``nn.BatchNorm1d`` computes on
(B, C) inputs.

Curriculum: 002 Q48 asks to "implement a Batch Normalization layer" and answers with a wrapper
around ``nn.BatchNorm1d(16)`` applied to (8, 16) (32 parameters). We write the layer itself, as
the exercise asks (catalog ``batchnorm1d_layer``: "the harness should add a hand-written BN and
compare it with nn.BatchNorm1d"). Its parameters and buffers carry ``nn.BatchNorm1d``'s names, so
the two exchange state_dicts, and the registry's ``reference`` is an ``nn.BatchNorm1d`` loaded with
ours. The facts it reproduces (catalog §2 ``batch_norm``):
- training mode normalises each channel with the batch mean and the *biased* batch variance, then
  applies the per-channel affine ``weight`` (init 1) and ``bias`` (init 0);
- it updates ``running_mean`` and ``running_var`` by an exponential moving average with momentum
  0.1 (new = 0.9 old + 0.1 batch), ``running_var`` with the *unbiased* batch variance, and counts
  ``num_batches_tracked``;
- eval mode uses the running statistics, so a sample's output depends on that sample only;
- a training batch of one sample raises ValueError, as torch does (its variance is undefined).
Deviations from ``nn.BatchNorm1d``: only (B, C) inputs (the seed's use; not (B, C, L)), always
affine and tracking running statistics, and no ``momentum=None`` cumulative average.
As a model it is a regression layer with output (B, C); its task's default random targets are
beyond two parameters per channel, so its targets are a random per-channel scale and shift of the
batch-standardised input, which the layer can fit.
Dimension key: B batch, C channels (features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_module, randn
from impl.registry import Cap, register_model
from impl.tasks import REGRESSION


@dataclass(frozen=True)
class BatchNormConfig:
    num_features: int = 16  # C
    eps: float = 1e-5  # added to the variance before the square root
    momentum: float = 0.1  # weight of the current batch in the running statistics

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")


SIZES = {
    "tiny": BatchNormConfig(),  # the seed's (8, 16) example is already tiny
    "full": BatchNormConfig(),
}


@gradcheck_module(
    lambda: BatchNorm1dScratch(BatchNormConfig(num_features=3)),
    lambda g: (randn(g, 5, 3),),
    note="training mode: through the batch mean and variance, for the input and the affine",
)
class BatchNorm1dScratch(nn.Module):
    """Per-channel batch normalisation with a learned affine and running statistics.

    Shape: (B, C) -> (B, C); training needs B >= 2
    """

    def __init__(self, cfg: BatchNormConfig) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = cfg.num_features, cfg.eps, cfg.momentum
        self.weight = nn.Parameter(torch.ones(cfg.num_features))  # (C,)
        self.bias = nn.Parameter(torch.zeros(cfg.num_features))  # (C,)
        self.register_buffer("running_mean", torch.zeros(cfg.num_features))  # (C,)
        self.register_buffer("running_var", torch.ones(cfg.num_features))  # (C,)
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input (B, {self.num_features}), got {list(x.shape)}")
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError(
                    "Expected more than 1 value per channel when training, "
                    f"got input size {list(x.shape)}"
                )
            mean = x.mean(dim=0)  # (C,)
            var = x.var(dim=0, unbiased=False)  # (C,): biased, to normalise with
            with torch.no_grad():  # the running statistics are not part of the graph
                m = self.momentum
                self.running_mean.mul_(1.0 - m).add_(mean, alpha=m)
                # (C,): the unbiased variance n / (n - 1) * var, as nn.BatchNorm1d keeps it
                self.running_var.mul_(1.0 - m).add_(var * (n / (n - 1)), alpha=m)
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean) / torch.sqrt(var + self.eps)  # (B, C)
        return x_hat * self.weight + self.bias  # (B, C)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def _example_inputs(
    cfg: BatchNormConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor]:
    return (torch.randn(batch_size, cfg.num_features, generator=generator),)


def _output_shape(cfg: BatchNormConfig, batch_size: int) -> tuple[int, int]:
    return (batch_size, cfg.num_features)


def _fittable_targets(
    cfg: BatchNormConfig, inputs: tuple[Tensor], shape: tuple[int, int], generator: torch.Generator
) -> Tensor:
    """Targets a BatchNorm layer can represent: the batch-standardised input (biased variance,
    as in training mode), scaled and shifted per channel by standard normal draws. (B, C)."""
    (x,) = inputs
    scale = torch.randn(shape[1], generator=generator)  # (C,)
    shift = torch.randn(shape[1], generator=generator)  # (C,)
    x_hat = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, unbiased=False) + cfg.eps)  # (B, C)
    return x_hat * scale.to(x) + shift.to(x)


def batchnorm1d_reference(model: BatchNorm1dScratch) -> nn.BatchNorm1d:
    """``nn.BatchNorm1d`` with our weights and running statistics loaded."""
    reference = nn.BatchNorm1d(model.num_features, eps=model.eps, momentum=model.momentum)
    reference.load_state_dict(model.state_dict())
    return reference.to(model.weight)  # our device and dtype


@register_model(
    family="normalisation",
    curriculum="002 Q48",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=_output_shape,
    task=REGRESSION,
    targets=_fittable_targets,
    # No AMP: under CPU autocast the elementwise normalisation stays in float32 (as
    # nn.BatchNorm1d's does), and the check wants a bfloat16 output. No quantisation: no Linear.
    caps={Cap.TORCHSCRIPT, Cap.ONNX},
    min_train_batch=2,
    reference=batchnorm1d_reference,
    full_params=32,  # weight and bias, 16 each; catalog: nn.BatchNorm1d(16) in the seed's wrapper
)
def batchnorm1d_scratch(cfg: BatchNormConfig) -> BatchNorm1dScratch:
    """Hand-written BatchNorm1d over (B, C) with running statistics, matching nn.BatchNorm1d."""
    return BatchNorm1dScratch(cfg)
