"""Regularisation: L1 and L2 weight penalties, weight decay, dropout and batch normalisation.

Curriculum: 000 §11.2.2 (L1, L2, Dropout code), 000 §11.3 (BatchNorm2d), 001 Q3/Q4 (Dropout),
004 L125-136 (Dropout/BatchNorm placement, train vs eval), 004 L364-393 (weight penalties, weight
decay, Dropout and BatchNorm rationale), 002 Q48 (a BatchNorm layer). What the curriculum gets
wrong, and what the functions here do instead (catalog §5):

- B03: 000's L1 snippet writes ``loss = torch.tensor(0.01, requires_grad=True)`` and then
  ``loss += l1_lambda * l1_norm``: an in-place add on a leaf that requires grad, which raises
  RuntimeError. The penalty is *added* to a loss computed from the model, out of place:
  ``loss = data_loss + l1_penalty(model.parameters(), l1_lambda)``.
- B04: 000 says "weight_decay equals the L2 strength". ``torch.optim.SGD(weight_decay=wd)`` adds
  ``wd * w`` to each gradient, which is the gradient of the penalty ``(wd / 2) * ||w||^2``; 004's
  penalty ``lambda * sum(w^2)`` (gradient ``2 * lambda * w``) needs ``weight_decay = 2 * lambda``
  (``weight_decay_for_l2``). ``torch.optim.Adam(weight_decay=...)`` is that same *coupled* L2
  (added to the gradient, then rescaled by Adam's second moment), not decoupled weight decay:
  that is ``torch.optim.AdamW``, which shrinks ``w`` by ``lr * wd * w`` outside the adaptive step.
  Every parameter is decayed, the bias included, as 004 says.
- B05: 000's L2 demo backpropagates a loss that does not depend on the model, so every
  ``param.grad`` stays None, SGD skips those parameters, and nothing is decayed at all.
- B06: 001 Q4 says that at inference Dropout "scales all outputs". PyTorch uses inverted dropout:
  in training each element is zeroed with probability p and the survivors are multiplied by
  1 / (1 - p), so the expected output equals the input; at inference Dropout is the identity.
- B07: 004 L134 says p is the probability of *keeping* a unit; in PyTorch p is the probability of
  dropping it.

Batch normalisation (``batch_norm`` below, for any (N, C, *) input, and the layer
``impl.models.batchnorm.BatchNorm1dScratch`` for (B, C)) normalises each channel by its batch mean
and *biased* batch variance in training, updates running statistics by an exponential moving
average with the *unbiased* batch variance, and uses the running statistics in eval, where a
sample's output depends on that sample alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, no_gradcheck, randn
from impl.techniques.registry import Category, register_technique


def _tensors(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


@gradcheck_function(
    lambda g: (randn(g, 3, 4),),
    l1_lambda=0.1,
    note="|w| is not differentiable at 0; standard normal weights are never within the "
    "finite-difference step of it",
)
def l1_penalty(parameters: Tensor | Iterable[Tensor], l1_lambda: float) -> Tensor:
    """``l1_lambda * sum(|w|)`` over every element of every tensor (the bias included), a scalar
    to *add* to the data loss: ``loss = criterion(model(x), y) + l1_penalty(model.parameters(),
    1e-3)``. Its gradient is ``l1_lambda * sign(w)`` away from 0. Over training it drives more
    weights to (about) zero than plain training does.

    Curriculum: 000 §11.2.2 (catalog B03: the seed adds it in place to a leaf and crashes);
    004 L369-377.
    """
    tensors = _tensors(parameters)
    if not tensors:
        raise ValueError("l1_penalty needs at least one tensor")
    return l1_lambda * sum(p.abs().sum() for p in tensors)  # () scalar


@gradcheck_function(lambda g: (randn(g, 3, 4),), l2_lambda=0.1)
def l2_penalty(parameters: Tensor | Iterable[Tensor], l2_lambda: float) -> Tensor:
    """``l2_lambda * sum(w^2)`` over every element of every tensor (004 L369-377's convention:
    its gradient is ``2 * l2_lambda * w``). A scalar to add to the data loss. SGD's
    ``weight_decay=wd`` is the penalty ``(wd / 2) * ||w||^2``: use ``weight_decay_for_l2`` to get
    the same update from the optimizer (catalog B04).
    """
    tensors = _tensors(parameters)
    if not tensors:
        raise ValueError("l2_penalty needs at least one tensor")
    return l2_lambda * sum(p.pow(2).sum() for p in tensors)  # () scalar


def weight_decay_for_l2(l2_lambda: float) -> float:
    """The ``weight_decay`` of ``torch.optim.SGD`` (or Adam's coupled L2) whose update equals
    adding ``l2_penalty(params, l2_lambda)`` = ``l2_lambda * sum(w^2)`` to the loss: ``2 *
    l2_lambda``, since the optimizer adds ``weight_decay * w`` to the gradient (catalog B04: the
    curriculum's "weight_decay equals the L2 strength" is off by this factor of 2)."""
    if l2_lambda < 0:
        raise ValueError(f"l2_lambda must be >= 0, got {l2_lambda}")
    return 2.0 * l2_lambda


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


@no_gradcheck(
    "it draws a new random mask on every call; gradchecked through InvertedDropout, whose "
    "check reseeds the RNG before each call"
)
def inverted_dropout(
    x: Tensor,
    p: float = 0.5,
    *,
    training: bool = True,
    channelwise: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Inverted dropout, written out: what ``nn.Dropout`` (``channelwise=False``) and
    ``nn.Dropout2d``/``nn.Dropout3d`` (``channelwise=True``, on (N, C, *) inputs) compute.

    ``p`` is the probability of *dropping* an element (catalog B07: not of keeping it). In training
    each element (or each whole (n, c) channel) is zeroed with probability p and the survivors are
    multiplied by 1 / (1 - p), so E[output] = x; in eval (``training=False``) it is the identity,
    with no rescaling at inference (catalog B06). Put it after the activation (004 L125-128; for
    ReLU either order is the same function under the same mask).

    Shape: x (N, C, *) -> the same; the mask is (N, C, 1, ...) when channelwise, else x's shape.
    """
    _check_p(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0  # every element dropped; keeps the graph, as F.dropout does
    if channelwise:
        if x.dim() < 2:
            raise ValueError(f"channelwise dropout needs (N, C, *) input, got {list(x.shape)}")
        mask_shape = (*x.shape[:2], *([1] * (x.dim() - 2)))  # (N, C, 1, ...): whole channels
    else:
        mask_shape = tuple(x.shape)
    keep = torch.rand(mask_shape, generator=generator, device=x.device) >= p  # P(keep) = 1 - p
    return x * keep.to(x.dtype) / (1.0 - p)  # survivors scaled by 1 / (1 - p)


@gradcheck_module(
    lambda: InvertedDropout(0.5),
    lambda g: (randn(g, 4, 5),),
    note="the check reseeds the RNG before each call, so every call draws the same mask",
)
class InvertedDropout(nn.Module):
    """Module form of ``inverted_dropout``: a drop-in for ``nn.Dropout(p)`` or, with
    ``channelwise=True``, ``nn.Dropout2d(p)``/``nn.Dropout3d(p)``. Follows ``self.training``, so
    ``model.eval()`` turns it into the identity. Draws from the global RNG, as torch's do."""

    def __init__(self, p: float = 0.5, *, channelwise: bool = False) -> None:
        super().__init__()
        _check_p(p)
        self.p, self.channelwise = p, channelwise

    def forward(self, x: Tensor) -> Tensor:
        return inverted_dropout(x, self.p, training=self.training, channelwise=self.channelwise)

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}"


@gradcheck_function(
    lambda g: (
        randn(g, 4, 3, 2),
        torch.zeros(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
        randn(g, 3),
        randn(g, 3),
    ),
    wrt=(0, 3, 4),
    training=True,
    note="training mode: through the batch mean and variance; the running statistics are "
    "buffers, not differentiated",
)
def batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation of an (N, C, *) input over every dimension but the channel, written out:
    what ``F.batch_norm`` (``nn.BatchNorm1d/2d/3d``) computes.

    Training: each channel is normalised with its batch mean and *biased* batch variance (so the
    output before the affine has mean 0 and variance var / (var + eps), about 1), and the running
    statistics, when given, are updated in place: ``running = (1 - momentum) * running +
    momentum * batch_stat``, with the *unbiased* batch variance for ``running_var``. A channel
    with a single value per batch raises ValueError, as torch does. Eval: the running statistics
    normalise, so a sample's output depends on that sample only. Then ``* weight + bias`` per
    channel. The output shape is the input's.

    Curriculum: 000 §11.3 (BatchNorm2d on (1, 16, 32, 32)); 004 L129-136, L383-393; 002 Q48 (the
    (B, C) layer: ``impl.models.batchnorm``).
    """
    if x.dim() < 2:
        raise ValueError(f"batch_norm needs (N, C, *) input, got {list(x.shape)}")
    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]  # every dimension but C
    stat_shape = (1, channels, *([1] * (x.dim() - 2)))  # (1, C, 1, ...) broadcasts over x
    if training:
        n = x.numel() // channels  # values per channel
        if n < 2:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input size {list(x.shape)}"
            )
        mean = x.mean(dim=dims)  # (C,)
        var = x.var(dim=dims, unbiased=False)  # (C,): biased, to normalise with
        if running_mean is not None and running_var is not None:
            with torch.no_grad():  # the running statistics are not part of the graph
                running_mean.mul_(1.0 - momentum).add_(mean, alpha=momentum)
                running_var.mul_(1.0 - momentum).add_(var * (n / (n - 1)), alpha=momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("eval-mode batch_norm needs running_mean and running_var")
        mean, var = running_mean, running_var
    x_hat = (x - mean.reshape(stat_shape)) / torch.sqrt(var.reshape(stat_shape) + eps)  # (N, C, *)
    if weight is not None:
        x_hat = x_hat * weight.reshape(stat_shape)
    if bias is not None:
        x_hat = x_hat + bias.reshape(stat_shape)
    return x_hat  # (N, C, *)


register_technique(
    name="l1_penalty",
    category=Category.REGULARISATION,
    curriculum="000 §11.2.2; 004 L369-377",
    summary="L1 penalty λ·Σ|w| added to the data loss out of place (bias included); "
    "gradient λ·sign(w), sparser weights",
    api="torch.Tensor.abs().sum() added to the loss; torch.autograd",
    bugs=("B03",),
)
register_technique(
    name="l2_weight_decay",
    category=Category.REGULARISATION,
    curriculum="000 §11.2.2; 004 L369-377; 001 Q3; 002 Q43 v2",
    summary="SGD weight_decay=wd is the penalty (wd/2)·‖w‖², bias decayed; Adam's is coupled L2, "
    "AdamW's decoupled",
    api="torch.optim.SGD/Adam(weight_decay=...), torch.optim.AdamW",
    bugs=("B04", "B05"),
)
register_technique(
    name="dropout",
    category=Category.REGULARISATION,
    curriculum="000 §11.2.2; 001 Q3, Q4; 004 L125-134, L378-382",
    summary="inverted dropout: p is the drop probability, survivors ×1/(1−p) in training, "
    "identity in eval; Dropout2d drops whole channels",
    api="torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.functional.dropout",
    bugs=("B06", "B07"),
)
register_technique(
    name="batch_norm",
    category=Category.REGULARISATION,
    curriculum="000 §11.3; 004 L129-136, L383-393; 002 Q48",
    summary="per-channel batch statistics (biased variance) in training, running statistics "
    "(unbiased, momentum 0.1) in eval",
    api="torch.nn.BatchNorm1d/2d/3d, torch.nn.functional.batch_norm",
    also_in=("impl.models.batchnorm",),
)
