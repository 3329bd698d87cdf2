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

Reduction = Literal["none", "mean", "sum"]


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


class FocalLoss(nn.Module):
    """Module form of ``sigmoid_focal_loss``, a drop-in for ``nn.BCEWithLogitsLoss``."""

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, reduction: Reduction = "mean"
    ):
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, self.reduction)
