"""SGD, SGD with momentum, Adam, AdamW and RMSprop: one update step of each, written out.

Curriculum: 001 Q12 (``optim.Adam(model.parameters(), lr=0.001)``, 10 epochs on linear_2_1),
001 Q11 (``SGD(momentum=0.9)``), 003 §5 (momentum), 004 L84-88 (``zero_grad``, ``step``), 001 H5
(which optimizer to choose). The curriculum uses ``torch.optim``; these functions are the updates
``torch.optim`` performs, one parameter tensor at a time, in PyTorch's conventions (which are not
always the textbook's), so that a user can see what ``step()`` does and the checks can hold
``torch.optim`` to hand-computed numbers:

- SGD: ``w <- w - lr * g``.
- SGD with momentum, PyTorch's convention (Sutskever et al.): ``v <- mu * v + g`` (the first step
  sets ``v = g``), ``w <- w - lr * v``. The textbook's ``v <- mu * v + lr * g`` gives the same
  steps only while ``lr`` is constant.
- Adam (Kingma and Ba): ``m <- b1 m + (1 - b1) g``, ``s <- b2 s + (1 - b2) g^2``, then
  ``w <- w - lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)``. From zero state the first step
  is ``lr * g / (|g| + eps)``: about ``lr * sign(g)`` whatever the gradient's size.
  ``weight_decay`` in ``Adam`` is an L2 term added to the gradient (it passes through the adaptive
  scaling); ``AdamW`` decays the weights directly, ``w <- w (1 - lr * wd)``, before the update.
- RMSprop (uncentred, no momentum): ``s <- a s + (1 - a) g^2``, ``w <- w - lr g / (sqrt(s) + eps)``.
  PyTorch's default ``alpha = 0.99`` makes the first step ``lr g / (0.1 |g| + eps)``, about
  ``10 lr`` per parameter.

``optimizer.zero_grad()`` sets every gradient to None (``set_to_none=True`` is the default since
PyTorch 2.0) and ``step()`` skips a parameter whose gradient is None: its value, and its state
(momentum buffer, Adam moments), are left alone. ``make_optimizer`` builds the ``torch.optim``
optimizer for a name, with the curriculum's hyperparameters as defaults.

These functions compute the new values without touching their inputs; under ``torch.no_grad`` (as
``step()`` runs) or not. Outside ``no_grad`` they are differentiable in the parameter, the gradient
and the state, which is what "differentiable optimizers" (meta-learning) rely on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, randn
from impl.techniques.registry import Category, register_technique

OptimizerName = Literal["sgd", "momentum", "adam", "adamw", "rmsprop"]
OPTIMIZER_NAMES: tuple[OptimizerName, ...] = ("sgd", "momentum", "adam", "adamw", "rmsprop")


def _two_gradcheck_tensors(generator: torch.Generator) -> tuple[Tensor, ...]:
    return randn(generator, 3, 2), randn(generator, 3, 2)


def _positive(generator: torch.Generator, *shape: int) -> Tensor:
    """Second moments are positive; keep them away from 0, where sqrt has no derivative."""
    return randn(generator, *shape).abs() + 0.5


@gradcheck_function(
    lambda g: (*_two_gradcheck_tensors(g), randn(g, 3, 2)), lr=0.1, momentum=0.9, weight_decay=0.01
)
def sgd_update(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None = None,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
    """One ``torch.optim.SGD`` step (dampening 0, no Nesterov): ``(new_param, new_buffer)``.

    ``weight_decay`` adds ``wd * w`` to the gradient (L2, SGD's convention; l2_weight_decay).
    Momentum: ``v <- mu v + g`` (``v = g`` on the first step, ``momentum_buffer=None``),
    ``w <- w - lr v``. Without momentum the buffer returned is None, as ``SGD`` keeps none.
    """
    if weight_decay:
        grad = grad + weight_decay * param
    if momentum:
        grad = grad.clone() if momentum_buffer is None else momentum * momentum_buffer + grad
        return param - lr * grad, grad
    return param - lr * grad, None


@gradcheck_function(
    lambda g: (*_two_gradcheck_tensors(g), randn(g, 3, 2), _positive(g, 3, 2)),
    step=3,
    lr=0.1,
    weight_decay=0.01,
)
def adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    step: int,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One ``torch.optim.Adam`` (or, with ``decoupled_weight_decay``, ``AdamW``) step.

    ``step`` counts from 1 (the first update); ``exp_avg`` and ``exp_avg_sq`` start as zeros.
    Returns ``(new_param, new_exp_avg, new_exp_avg_sq)``.
    """
    if step < 1:
        raise ValueError(f"step counts updates from 1, got {step}")
    beta1, beta2 = betas
    if decoupled_weight_decay:
        param = param * (1 - lr * weight_decay)  # AdamW: decay the weight itself
    elif weight_decay:
        grad = grad + weight_decay * param  # Adam: L2 in the gradient, scaled adaptively below
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = (exp_avg_sq / bias_correction2).sqrt() + eps
    return param - lr * (exp_avg / bias_correction1) / denom, exp_avg, exp_avg_sq


@gradcheck_function(lambda g: (*_two_gradcheck_tensors(g), _positive(g, 3, 2)), lr=0.01)
def rmsprop_update(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """One ``torch.optim.RMSprop`` step (uncentred, no momentum, no weight decay).

    ``square_avg`` starts as zeros. Returns ``(new_param, new_square_avg)``.
    """
    square_avg = alpha * square_avg + (1 - alpha) * grad * grad
    return param - lr * grad / (square_avg.sqrt() + eps), square_avg


def make_optimizer(
    name: OptimizerName,
    params: Iterable[nn.Parameter] | Iterable[dict],
    lr: float | None = None,
    **kwargs: float,
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer called ``name``, the parameter iterable first (004 L84-88).

    Default learning rates are the curriculum's: SGD 0.01 (003 §2), momentum 0.9 with lr 0.001
    (001 Q11), Adam 0.001 (001 Q12), and PyTorch's own for AdamW (0.001) and RMSprop (0.01).
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01 if lr is None else lr, **kwargs)
    if name == "momentum":
        kwargs.setdefault("momentum", 0.9)
        return torch.optim.SGD(params, lr=1e-3 if lr is None else lr, **kwargs)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3 if lr is None else lr, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3 if lr is None else lr, **kwargs)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=1e-2 if lr is None else lr, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZER_NAMES)}")


register_technique(
    name="optimizers",
    category=Category.TRAINING,
    curriculum="001 Q11, Q12, H5; 003 §5; 004 L84-88",
    summary="SGD, momentum (v <- mu v + g), Adam, AdamW and RMSprop steps as torch.optim takes "
    "them; zero_grad sets None and step skips a None grad",
    api="torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop",
)
