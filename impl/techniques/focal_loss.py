"""Binary focal loss (Lin et al., 2017, https://arxiv.org/abs/1708.02002), written out.

Curriculum: 002 Q29 v1. The curriculum weights every example by alpha * (1 - p)^gamma, with p the
predicted probability of the *positive* class, whatever the label (catalog B13). For negatives
that is backwards: a confidently wrong negative (logit 5, label 0) gets almost no loss. The paper
uses p_t, the probability of the *true* class, and alpha_t:

    p_t = p y + (1 - p)(1 - y),  alpha_t = alpha y + (1 - alpha)(1 - y)
    FL = -alpha_t (1 - p_t)^gamma log(p_t)

This matches ``torchvision.ops.sigmoid_focal_loss``, which the checks compare against.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, randn
from impl.techniques.registry import Category, LossCase, register_technique

Reduction = Literal["none", "mean", "sum"]


def _binary_targets(generator: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator).double()


@gradcheck_function(lambda g: (randn(g, 6), _binary_targets(g, 6)), wrt=(0,))
def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Focal loss of logits against {0, 1} (or soft) targets; alpha=None: unweighted."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {list(logits.shape)} and targets {list(targets.shape)} differ in shape"
        )
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_t), stable
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


@gradcheck_module(
    lambda: FocalLoss(alpha=0.25, gamma=2.0),
    lambda g: (randn(g, 2, 3), _binary_targets(g, 2, 3)),
    wrt=(0,),
)
class FocalLoss(nn.Module):
    """Module form of ``sigmoid_focal_loss``, a drop-in for ``nn.BCEWithLogitsLoss``."""

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, reduction: Reduction = "mean"
    ):
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, self.reduction)


register_technique(
    name="focal_loss",
    category=Category.LOSS,
    curriculum="002 Q29 v1",
    summary="binary focal loss α_t (1 - p_t)^γ CE with p_t the true class's probability",
    api="torchvision.ops.sigmoid_focal_loss",
    bugs=("B13",),
    losses=(
        LossCase(
            name="sigmoid_focal_loss",
            make=lambda g: (sigmoid_focal_loss, (randn(g, 3, 4), _binary_targets(g, 3, 4))),
            elementwise_shape=lambda inputs: tuple(inputs[1].shape),
        ),
    ),
)
