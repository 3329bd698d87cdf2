"""Classification and regression losses written out, class weights, and class-balanced sampling.

Curriculum: 001 Q8 (MSE, CE, BCE, L1, NLL), 001 Q13 (class weights, ``WeightedRandomSampler``),
002 Q29's loss table, 002 Q39 (a custom loss), 004 L113-118 and L273-283 (LogSoftmax + NLLLoss =
CrossEntropyLoss; NLL = -Σ log p_i[c_i]).

What the curriculum gets wrong, and what these functions do instead:

- ``nn.CrossEntropyLoss`` takes **logits**, not probabilities (catalog B18, B51): it applies
  log-softmax itself, so a softmax before it is applied twice. The loss of a perfect prediction
  then cannot fall below log(1 + (K-1)/e) and a confident mistake gets almost no gradient.
  ``nn.NLLLoss`` takes **log**-probabilities (``LogSoftmax``), not softmax output: on
  probabilities it returns -mean(p_y), a negative number that is no likelihood at all.
- 004's formula NLL = -Σ_i log p_i[c_i] is a **sum**; PyTorch's losses default to the **mean**
  (catalog B65). Compare against the formula with ``reduction="sum"``.
- L1 is *less* sensitive to outliers than MSE, not more (catalog B51): the constant that minimises
  the L1 loss is the median, the one that minimises MSE is the mean.

``cross_entropy`` is the 004 pipeline (logits -> log-softmax -> pick the true class -> negate ->
reduce), with ``nn.CrossEntropyLoss``'s class weights: with weights the mean is
Σ w_{y_i} ℓ_i / Σ w_{y_i}, a weighted average, not Σ w_{y_i} ℓ_i / N (001 Q13).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import WeightedRandomSampler

from impl.differentiable import gradcheck_function, gradcheck_module, no_gradcheck, randn
from impl.techniques.registry import Category, LossCase, register_technique

Reduction = Literal["none", "mean", "sum"]


def _reduce(loss: Tensor, reduction: str, divisor: Tensor | None = None) -> Tensor:
    """Apply ``reduction`` to elementwise losses; "mean" divides the sum by ``divisor`` (the
    element count when None)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if divisor is None else loss.sum() / divisor
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _class_targets(generator: torch.Generator, n: int, k: int) -> Tensor:
    return torch.randint(0, k, (n,), generator=generator)


def _positive_weights(generator: torch.Generator, k: int) -> Tensor:
    return torch.rand(k, generator=generator, dtype=torch.float64) + 0.5


# ------------------------------------------------------------------------- losses_basic


@gradcheck_function(
    lambda g: (randn(g, 5, 3), _class_targets(g, 5, 3), _positive_weights(g, 3)), wrt=(0, 2)
)
def nll_loss(
    log_probs: Tensor,
    targets: Tensor,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Negative log-likelihood of the true classes, as ``F.nll_loss`` computes it.

    log_probs (N, C) or (N, C, d1, ...), *log*-probabilities (``log_softmax`` output); targets
    (N,) or (N, d1, ...), class indices. Elementwise ℓ_i = -w_{y_i} log_probs[i, y_i]; "sum" is
    004 L276's NLL = -Σ log p_i[c_i]; "mean" divides by Σ w_{y_i} (N without weights), which is
    PyTorch's default (catalog B65).
    """
    if log_probs.dim() < 2 or targets.shape != log_probs.shape[:1] + log_probs.shape[2:]:
        raise ValueError(
            f"log_probs {list(log_probs.shape)} must be (N, C, ...) and targets "
            f"{list(targets.shape)} (N, ...)"
        )
    # (N, C, *d) -> (N, *d): the log-probability of each sample's true class
    picked = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    if weight is None:
        return _reduce(-picked, reduction)
    w = weight[targets]  # (N, *d): each sample's class weight
    return _reduce(-w * picked, reduction, divisor=w.sum())


@gradcheck_function(
    lambda g: (randn(g, 5, 3), _class_targets(g, 5, 3), _positive_weights(g, 3)), wrt=(0, 2)
)
def cross_entropy(
    logits: Tensor,
    targets: Tensor,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross entropy of **logits** (N, C, ...) against class indices (N, ...): ``nll_loss`` of
    ``log_softmax(logits, dim=1)``, equal to ``F.cross_entropy`` and ``nn.CrossEntropyLoss``.

    Feed it the last Linear layer's output. A softmax in front of it is applied twice (B18, B51).
    ``weight`` (C,): class weights, see ``nll_loss`` for what the mean divides by.
    """
    return nll_loss(F.log_softmax(logits, dim=1), targets, weight, reduction)


# -------------------------------------------------------------------- class_weighted_ce


@no_gradcheck("integer class labels in, weights derived from counts out: nothing to differentiate")
def inverse_frequency_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Class weights n / (K · count_c), float32 (K,): scikit-learn's ``class_weight="balanced"``.

    Every class then carries the same total weight (n / K) in a weighted loss's sum, so a class
    with 10% of the samples counts as much as one with 90% (001 Q13's intent; its own weights
    [0.1, 0.9] are these up to a factor). A class absent from ``labels`` raises ValueError: its
    weight would be infinite.
    """
    counts = torch.bincount(labels.flatten(), minlength=num_classes)
    if len(counts) > num_classes:
        raise ValueError(f"labels reach {len(counts) - 1}, beyond num_classes={num_classes}")
    if (counts == 0).any():
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"classes {missing} have no samples; their weight would be infinite")
    return (labels.numel() / (num_classes * counts.double())).float()


# ------------------------------------------------------------- custom_loss_mse_plus_l1


@gradcheck_function(lambda g: (randn(g, 6), randn(g, 6)))
def mse_plus_l1_loss(predictions: Tensor, targets: Tensor, reduction: Reduction = "mean") -> Tensor:
    """(p - t)² + |p - t| per element, then reduced: 002 Q39's ``CustomLoss`` with a reduction.

    The mean equals ``F.mse_loss(p, t) + F.l1_loss(p, t)``; its gradient w.r.t. p is
    2(p - t)/n + sign(p - t)/n (at p = t the |.| kink has subgradient 0, as ``torch.abs``).
    """
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {list(predictions.shape)} and targets {list(targets.shape)} differ"
        )
    diff = predictions - targets
    return _reduce(diff.square() + diff.abs(), reduction)


@gradcheck_module(lambda: MSEPlusL1Loss(), lambda g: (randn(g, 2, 3), randn(g, 2, 3)))
class MSEPlusL1Loss(nn.Module):
    """Module form of ``mse_plus_l1_loss`` (002 Q39: "a custom loss used in a model")."""

    def __init__(self, reduction: Reduction = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, predictions: Tensor, targets: Tensor) -> Tensor:
        return mse_plus_l1_loss(predictions, targets, self.reduction)


# ----------------------------------------------------------------- imbalance_resampling


def balanced_sampler(
    labels: Tensor, num_samples: int | None = None, *, generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """Oversampling: draw dataset indices with replacement, each with weight 1 / count(its class),
    so that every class is drawn with probability 1/K (001 Q13's ``WeightedRandomSampler``).

    Pass it to ``DataLoader(dataset, sampler=..., batch_size=...)`` (not with ``shuffle=True``).
    ``num_samples`` defaults to the dataset's size: an epoch of the same length, in which the
    minority classes repeat and the majority classes are partly left out.
    """
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()  # (N,): a class's weights sum to 1, for every class
    return WeightedRandomSampler(
        weights, num_samples or len(labels), replacement=True, generator=generator
    )


@no_gradcheck("integer labels in, integer indices out: nothing to differentiate")
def undersample_indices(labels: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Undersampling: indices of min_count random samples of every class (without replacement),
    sorted, for ``torch.utils.data.Subset``. Balanced, but the majority classes lose data."""
    counts = torch.bincount(labels)
    present = counts.nonzero().flatten()
    keep = int(counts[present].min())
    chosen = []
    for c in present.tolist():
        members = (labels == c).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


# ----------------------------------------------------------------------- registrations


def _classification_case(loss, *, log_probs: bool = False, weighted: bool = False):
    def make(generator: torch.Generator):
        logits = randn(generator, 6, 4)
        inputs = F.log_softmax(logits, dim=1) if log_probs else logits
        targets = _class_targets(generator, 6, 4)
        if not weighted:
            return loss, (inputs, targets)
        return loss, (inputs, targets, _positive_weights(generator, 4))

    return make


def _pairwise_case(loss, *, probabilities: bool = False, binary: bool = False):
    """``loss(input, target)`` of one shape (3, 4): regression, or binary with {0, 1} targets."""

    def make(generator: torch.Generator):
        x = randn(generator, 3, 4)
        if probabilities:
            x = torch.sigmoid(x)
        y = (
            torch.randint(0, 2, (3, 4), generator=generator).double()
            if binary
            else randn(generator, 3, 4)
        )
        return loss, (x, y)

    return make


def _target_shape(inputs) -> tuple[int, ...]:
    """The shape of reduction="none": the targets' (the batch for classes, every element else)."""
    return tuple(inputs[1].shape)


def _summed_target_weights(inputs) -> float:
    _, targets, weight = inputs
    return float(weight[targets].sum())


register_technique(
    name="losses_basic",
    category=Category.LOSS,
    curriculum="001 Q8; 002 Q28-Q29 tables; 004 L113-118, L273-283",
    summary="PyTorch's standard losses against their formulas; CE takes logits, NLL log-probs",
    api="torch.nn.<Name>Loss, torch.nn.functional.cross_entropy/nll_loss",
    bugs=("B18", "B51", "B65"),
    losses=(
        LossCase(
            name="cross_entropy",
            make=_classification_case(cross_entropy),
            elementwise_shape=_target_shape,
        ),
        LossCase(
            name="nll_loss",
            make=_classification_case(nll_loss, log_probs=True),
            elementwise_shape=_target_shape,
        ),
        LossCase(
            name="F.cross_entropy",
            make=_classification_case(F.cross_entropy),
            elementwise_shape=_target_shape,
        ),
        LossCase(
            name="F.nll_loss",
            make=_classification_case(F.nll_loss, log_probs=True),
            elementwise_shape=_target_shape,
        ),
        LossCase(
            name="F.mse_loss", make=_pairwise_case(F.mse_loss), elementwise_shape=_target_shape
        ),
        LossCase(name="F.l1_loss", make=_pairwise_case(F.l1_loss), elementwise_shape=_target_shape),
        LossCase(
            name="F.smooth_l1_loss",
            make=_pairwise_case(F.smooth_l1_loss),
            elementwise_shape=_target_shape,
        ),
        LossCase(
            name="F.huber_loss", make=_pairwise_case(F.huber_loss), elementwise_shape=_target_shape
        ),
        LossCase(
            name="F.binary_cross_entropy",
            make=_pairwise_case(F.binary_cross_entropy, probabilities=True, binary=True),
            elementwise_shape=_target_shape,
        ),
        LossCase(
            name="F.binary_cross_entropy_with_logits",
            make=_pairwise_case(F.binary_cross_entropy_with_logits, binary=True),
            elementwise_shape=_target_shape,
        ),
    ),
)

register_technique(
    name="class_weighted_ce",
    category=Category.LOSS,
    curriculum="001 Q13",
    summary="class-weighted cross entropy; the mean is Σ w_y ℓ / Σ w_y, a weighted average",
    api="torch.nn.CrossEntropyLoss(weight=); sklearn.utils.class_weight.compute_class_weight",
    losses=(
        LossCase(
            name="cross_entropy(weight=)",
            make=_classification_case(cross_entropy, weighted=True),
            elementwise_shape=_target_shape,
            mean_divisor=_summed_target_weights,
        ),
        LossCase(
            name="F.cross_entropy(weight=)",
            make=_classification_case(F.cross_entropy, weighted=True),
            elementwise_shape=_target_shape,
            mean_divisor=_summed_target_weights,
        ),
    ),
)

register_technique(
    name="custom_loss_mse_plus_l1",
    category=Category.LOSS,
    curriculum="002 Q39",
    summary="a custom nn.Module loss mean((p-t)² + |p-t|) = MSE + L1, with its gradient",
    api="torch.nn.functional.mse_loss + torch.nn.functional.l1_loss; torch.autograd",
    losses=(
        LossCase(
            name="mse_plus_l1_loss",
            make=_pairwise_case(mse_plus_l1_loss),
            elementwise_shape=_target_shape,
        ),
    ),
)

register_technique(
    name="imbalance_resampling",
    category=Category.LOSS,
    curriculum="001 Q13; 002 Q20",
    summary="WeightedRandomSampler with weights 1/class_count draws near-uniform classes",
    api="torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True)",
)
