"""Gradient clipping by global norm or by value, with the norm computed the way PyTorch defines it.

Curriculum: 000 §11.6.2, 001 Q10, 002 Q68, 003 §5. The curriculum calls ``max_norm`` "the largest
allowed gradient value" (catalog B27). It is not: ``clip_grad_norm_`` bounds the norm of *all*
gradients taken together as one vector, and scales every gradient by the same factor.
Bounding each element is ``clip_grad_value_``; ``clip_gradients`` makes the choice explicit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn

from impl.techniques.registry import Category, register_technique


def total_grad_norm(parameters: Iterable[nn.Parameter], norm_type: float = 2.0) -> Tensor:
    """The norm of all gradients concatenated into one vector (what ``clip_grad_norm_`` returns).

    Written out as the reference: the p-norm of the per-parameter p-norms equals the p-norm of the
    concatenation; for p = inf both are the largest absolute element. Parameters without a
    gradient are skipped. Returns a float64 scalar.
    """
    grads = [p.grad.detach().double() for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0, dtype=torch.float64)
    per_param = torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads])
    return torch.linalg.vector_norm(per_param, norm_type)


def clip_gradients(
    parameters: Iterable[nn.Parameter],
    *,
    mode: Literal["norm", "value"],
    max_norm: float | None = None,
    max_value: float | None = None,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = True,
) -> Tensor:
    """Clip in place, after ``backward()``, before ``optimizer.step()``; return the pre-clip norm.

    mode="norm": scale all gradients by min(1, max_norm / total_norm) (``clip_grad_norm_``).
    mode="value": clamp every element to [-max_value, max_value] (``clip_grad_value_``).
    A non-finite total norm raises ``RuntimeError`` unless ``error_if_nonfinite`` is False.
    """
    params = [p for p in parameters if p.grad is not None]
    if mode == "norm":
        if max_norm is None or max_norm <= 0:
            raise ValueError(f"mode='norm' needs max_norm > 0, got {max_norm}")
        return nn.utils.clip_grad_norm_(
            params, max_norm, norm_type=norm_type, error_if_nonfinite=error_if_nonfinite
        )
    if mode == "value":
        if max_value is None or max_value <= 0:
            raise ValueError(f"mode='value' needs max_value > 0, got {max_value}")
        before = nn.utils.get_total_norm([p.grad for p in params], norm_type, error_if_nonfinite)
        nn.utils.clip_grad_value_(params, max_value)
        return before
    raise ValueError(f"mode must be 'norm' or 'value', got {mode!r}")


register_technique(
    name="grad_clip_norm",
    category=Category.NUMERICS,
    curriculum="000 §11.6.2; 001 Q10, H4; 002 Q68; 003 §5",
    summary="clip_grad_norm_ scales all grads by one factor so their global norm ≤ max_norm",
    api="torch.nn.utils.clip_grad_norm_, torch.nn.utils.clip_grad_value_",
    bugs=("B27",),
)
