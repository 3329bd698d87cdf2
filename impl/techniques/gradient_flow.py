"""Vanishing and exploding gradients, and the skip connections that keep gradients flowing.

Curriculum: 000 §11.1.1, §11.6.1; 001 Q10, H4; 004 L394-405 (deep stacks, skip connections,
identity mapping); 002 Q32, Q38 (pre-LN residual ``x = x + f(x)``), Q49 (UNet's concatenated
skips, ``torch.cat([x2, x1], dim=1)``).

Backpropagation multiplies one Jacobian per layer. Through a sigmoid layer ``W σ(x) + b`` the
Jacobian's norm is at most ``||W||₂ · max σ' = ||W||₂ / 4``, so in a deep sigmoid stack the
gradient reaching the first layer shrinks at least geometrically with depth (vanishing). In a
recurrent net the same ``W_hh`` is multiplied once per time step: with ``W_hh = s·I`` in the
linear (ReLU-positive) regime, the gradient that reaches the first input is exactly ``s^(T-1)``
times the one at the last input, exploding for ``s > 1`` and vanishing for ``s < 1``.
A skip connection ``x + f(x)`` has Jacobian ``I + J_f``: the identity path carries the gradient
past every layer, so the first layer keeps a gradient of order one (at least ``∏ (1 - ||J_f||)``).
``clip_grad_norm_`` (``impl.techniques.grad_clipping``) bounds what an exploding gradient can do
to one update.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_module, randn
from impl.techniques.registry import Category, register_technique

Activation = Literal["sigmoid", "tanh", "relu"]
_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


@gradcheck_module(lambda: PreActivationBlock(3, "sigmoid", skip=True), lambda g: (randn(g, 2, 3),))
class PreActivationBlock(nn.Module):
    """``W act(x) + b``, plus ``x`` itself when ``skip`` (a residual block, 004 L398-405).

    The same layer with and without the identity path, so a stack of these compares the two
    with everything else equal. With a zero branch (``W = 0, b = 0``) the residual block is the
    identity: the input passes unchanged (identity mapping).
    """

    def __init__(self, width: int, activation: Activation, *, skip: bool):
        super().__init__()
        self.act = _ACTIVATIONS[activation]()
        self.linear = nn.Linear(width, width)
        self.skip = skip

    def forward(self, x: Tensor) -> Tensor:  # (batch, width) -> (batch, width)
        branch = self.linear(self.act(x))
        return x + branch if self.skip else branch


def deep_stack(
    depth: int, width: int, activation: Activation, *, skip: bool, in_features: int | None = None
) -> nn.Sequential:
    """``Linear(in_features, width)`` (the first layer) then ``depth`` ``PreActivationBlock``s:
    a plain deep net (``skip=False``) or a residual one (``skip=True``), PyTorch's default init."""
    first = nn.Linear(in_features or width, width)
    return nn.Sequential(
        first, *(PreActivationBlock(width, activation, skip=skip) for _ in range(depth))
    )


def block_input_gradient_norms(stack: nn.Sequential, x: Tensor, upstream: Tensor) -> list[float]:
    """Backpropagate ``upstream`` (the gradient of the loss with respect to the stack's output,
    same shape) and return the norm of the gradient at the output of each module, first module
    first: entry 0 is the gradient at the first layer's output, the last entry is ``upstream``'s
    own norm. The per-layer diagnostic of vanishing (falling toward entry 0) or exploding."""
    outputs = []
    h = x
    for module in stack:
        h = module(h)
        h.retain_grad()
        outputs.append(h)
    h.backward(upstream)
    return [float(o.grad.norm()) for o in outputs]


def parameter_gradient_norms(model: nn.Module) -> dict[str, float]:
    """After ``backward()``: the L2 norm of every parameter's gradient, by name (what one logs,
    e.g. to TensorBoard, to watch for vanishing or exploding gradients)."""
    return {
        name: float(p.grad.norm()) for name, p in model.named_parameters() if p.grad is not None
    }


@gradcheck_module(lambda: SimpleRNN(2, 3, 1), lambda g: (randn(g, 2, 4, 2),))
class SimpleRNN(nn.Module):
    """001 Q10's ``SimpleRNN`` (RNN, then a Linear on the last time step), with the initial state
    left to ``nn.RNN`` (zeros on the input's device and dtype; the seed builds it from a global
    ``hidden_size`` on the CPU, catalog B47). ``nonlinearity="relu"`` gives the recurrence whose
    gradient explodes geometrically with large recurrent weights."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
    ):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True, nonlinearity=nonlinearity)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor) -> Tensor:  # (batch, time, input) -> (batch, output)
        out, _ = self.rnn(x)  # (batch, time, hidden)
        return self.fc(out[:, -1, :])


def large_weight_rnn(
    input_size: int, hidden_size: int, output_size: int, scale: float
) -> SimpleRNN:
    """A ReLU ``SimpleRNN`` with ``W_hh = scale · I`` and non-negative input weights and biases
    (|default|), so every hidden pre-activation stays positive for non-negative inputs: the
    recurrence is linear, ``h_t = scale h_(t-1) + W_ih x_t + b``, and gradients scale by
    ``scale`` per time step exactly."""
    model = SimpleRNN(input_size, hidden_size, output_size, nonlinearity="relu")
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(scale * torch.eye(hidden_size))
        for p in (model.rnn.weight_ih_l0, model.rnn.bias_ih_l0, model.rnn.bias_hh_l0):
            p.abs_()
    return model


register_technique(
    name="vanishing_exploding",
    category=Category.NUMERICS,
    curriculum="001 Q10, H4; 000 §11.1.1, §11.6.1; 004 L398-405",
    summary="a sigmoid layer scales the gradient by ≤ ||W||/4; He+ReLU keeps it; W_hh=sI gives s^T",
    api="torch.Tensor.retain_grad, torch.nn.RNN, torch.linalg.matrix_norm",
)
register_technique(
    name="skip_connections",
    category=Category.NUMERICS,
    curriculum="002 Q32, Q38, Q49; 004 L394-405",
    summary="x + f(x) keeps the first layer's gradient O(1) where the plain stack's vanishes",
    api="x + f(x); torch.cat([x2, x1], dim=1)",
)
