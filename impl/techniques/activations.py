"""Activation functions written out: Swish with a fixed or trainable beta, GELU exact or
tanh-approximated; and the three ways of applying ReLU, which are one function with no state.

Curriculum:
- ``activations``: 001 Q2 (ReLU, Sigmoid, Tanh); 002 Q28 v1 (Swish) and v2 (Swish with beta in a
  buffer or a trainable ``nn.Parameter``; GELU by tanh or erf); 002 Q28's table of PyTorch
  activations; 004 L236-253 (an activation is nonlinear, differentiable almost everywhere, has a
  sensitive region, and mostly saturates towards lower and upper limits). Catalog §2
  ``activations``, C-neuron-activation, C-relu-dead, C-sigmoid-range and B60.
- ``relu_module_vs_functional``: 002 Q27 ("which one to use in CNN design"); 004 L353-355.
  Catalog B28: the seed says ``torch.relu`` "cannot be stored in the state_dict and does not
  support inplace=True". ReLU has no state in any of its forms (``nn.ReLU``, ``F.relu``,
  ``torch.relu``), so there is nothing to store, and ``torch.relu_`` and
  ``F.relu(x, inplace=True)`` are the in-place forms. The choice is one of style: a module where
  the network is an ``nn.Sequential`` or hooks should see the layer, the function in a
  hand-written ``forward``.

Deviations from the seed (002 Q28 v2):
- Names follow PyTorch: ``GELU()`` is the exact GELU, as ``nn.GELU()``; the seed's ``GELU()``
  defaults to the tanh approximation and selects the exact one with ``approximate=None``.
- Beta is stored as a float32 tensor whatever its Python type: the seed's
  ``torch.tensor(beta)`` gives an int64 tensor for ``Swish(beta=1, trainable=True)``, which
  ``nn.Parameter`` refuses (only floating tensors can require grad).

Why activations at all: without one, stacked Linear layers are one Linear layer
(``collapse_linear_stack``; 004 L240: "repeated linear maps are still a linear map").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, randn
from impl.techniques.registry import Category, register_technique

GeluApproximation = Literal["none", "tanh"]


def _scaled(generator: torch.Generator) -> tuple[Tensor, ...]:
    """Inputs spread over the bend and the tails of an activation: 3 x N(0, 1), (3, 4)."""
    return (3 * randn(generator, 3, 4),)


@gradcheck_function(lambda g: (*_scaled(g), 1.5 + randn(g, 1).abs()))
def swish(x: Tensor, beta: Tensor) -> Tensor:
    """Swish(x) = x * sigmoid(beta * x) (Ramachandran et al., 2017); beta = 1 is ``F.silu``.

    ``beta`` is a tensor (a buffer or a parameter, usually 0-dim), so that TorchScript compiles it.

    Shape: any -> the same
    """
    return x * torch.sigmoid(beta * x)


@gradcheck_function(_scaled, approximate="none")
def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (Hendrycks and Gimpel, 2016).

    ``"none"``: exact, Phi(x) = (1 + erf(x / sqrt(2))) / 2, as ``F.gelu(x)``;
    ``"tanh"``: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as
    ``F.gelu(x, approximate="tanh")``. The two differ by at most 4.7e-4 (at x = +-2.70).
    Shape: any -> the same
    """
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))
        return 0.5 * x * (1.0 + torch.tanh(inner))
    if approximate != "none":  # no !r: TorchScript compiles this
        raise ValueError(f"approximate must be 'none' or 'tanh', got '{approximate}'")
    # sqrt(0.5) = 1 / sqrt(2), as PyTorch's kernel has it
    return x * 0.5 * (1.0 + torch.erf(x * math.sqrt(0.5)))


@gradcheck_module(lambda: Swish(beta=1.5, trainable=True), _scaled)
class Swish(nn.Module):
    """Swish(x) = x * sigmoid(beta * x); beta = 1 is SiLU (``nn.SiLU``).

    ``trainable=False`` keeps beta in a buffer: in the state_dict, moved and converted with the
    module, never trained (it gets no gradient). ``trainable=True`` makes it an ``nn.Parameter``
    that the optimiser updates. Shape: any -> the same
    """

    def __init__(self, beta: float = 1.0, trainable: bool = False) -> None:
        super().__init__()
        self.trainable = trainable
        value = torch.tensor(float(beta))  # float32 even for an int beta (the seed's int64 fails)
        if trainable:
            self.beta = nn.Parameter(value)
        else:
            self.register_buffer("beta", value)

    def forward(self, x: Tensor) -> Tensor:
        return swish(x, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta.detach().item():g}, trainable={self.trainable}"


@gradcheck_module(
    lambda: GELU("tanh"), _scaled, note="tanh form; the function gelu is checked exact"
)
class GELU(nn.Module):
    """Module form of ``gelu``: exact (``approximate="none"``, as ``nn.GELU()``) or the tanh
    approximation. Shape: any -> the same"""

    def __init__(self, approximate: GeluApproximation = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


def collapse_linear_stack(*layers: nn.Linear) -> nn.Linear:
    """The one Linear layer equal to ``layers`` applied in order with no activation between:
    W = W_n ... W_2 W_1, b = W_n (... (W_2 b_1 + b_2) ...) + b_n. Why a network needs a
    nonlinearity (004 L240; catalog C-neuron-activation)."""
    if not layers:
        raise ValueError("collapse_linear_stack needs at least one layer")
    with torch.no_grad():
        weight, bias = layers[0].weight.clone(), _bias(layers[0])
        for layer in layers[1:]:
            if layer.in_features != weight.shape[0]:
                raise ValueError(f"{layer} cannot follow a layer with {weight.shape[0]} outputs")
            weight, bias = layer.weight @ weight, layer.weight @ bias + _bias(layer)
        merged = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        merged.weight.copy_(weight)
        merged.bias.copy_(bias)
    return merged


def _bias(layer: nn.Linear) -> Tensor:
    if layer.bias is None:
        return torch.zeros(layer.out_features, dtype=layer.weight.dtype)
    return layer.bias.detach().clone()


# ---------------------------------------------------------------------------------------------
# relu_module_vs_functional: nn.ReLU, F.relu and torch.relu are one stateless function
# ---------------------------------------------------------------------------------------------

ReluStyle = Literal["module", "functional", "torch"]
RELU_STYLES: tuple[ReluStyle, ...] = ("module", "functional", "torch")


@gradcheck_module(
    lambda: ReLUNet(4, 5, 3, relu="functional"),
    lambda g: (randn(g, 2, 4),),
    note="away from 0 (ReLU's kink) almost surely, at gradcheck's eps 1e-6",
)
class ReLUNet(nn.Module):
    """Linear -> ReLU -> Linear with the ReLU applied in one of the three ways 002 Q27 compares:
    an ``nn.ReLU`` attribute (``relu="module"``), ``F.relu`` or ``torch.relu`` in ``forward``.
    All three compute the same function and have the same state_dict (fc1 and fc2 only):
    ReLU holds no state in any form. ``inplace=True`` uses ``nn.ReLU(inplace=True)``,
    ``F.relu(inplace=True)`` or ``torch.relu_``, overwriting fc1's output (not the input).

    Shape: (B, D) -> (B, K)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        relu: ReluStyle = "module",
        inplace: bool = False,
    ) -> None:
        super().__init__()
        if relu not in RELU_STYLES:
            raise ValueError(f"relu must be one of {RELU_STYLES}, got {relu!r}")
        self.style, self.inplace = relu, inplace
        self.fc1 = nn.Linear(in_features, hidden_features)
        if relu == "module":
            self.relu = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)  # (B, H)
        if self.style == "module":
            h = self.relu(h)
        elif self.style == "functional":
            h = F.relu(h, inplace=self.inplace)
        else:
            h = torch.relu_(h) if self.inplace else torch.relu(h)
        return self.fc2(h)  # (B, K)


register_technique(
    name="activations",
    category=Category.MODULE,
    curriculum="001 Q2; 002 Q28 v1, v2 and its table; 004 L236-253",
    summary="Swish(beta) with beta a buffer or a trainable Parameter, GELU exact and tanh, "
    "held to SiLU/GELU; range, saturation and the Linear-stack collapse",
    api="torch.nn.functional.silu, torch.nn.functional.gelu(approximate=...), torch.erf, "
    "nn.Module.register_buffer vs nn.Parameter",
    also_in=("impl.models.mlp",),
    bugs=("B60",),
)

register_technique(
    name="relu_module_vs_functional",
    category=Category.MODULE,
    curriculum="002 Q27; 004 L353-355",
    summary="nn.ReLU, F.relu and torch.relu: one function, no parameters, no state_dict "
    "entries; in-place forms exist",
    api="torch.nn.ReLU, torch.nn.functional.relu(inplace=...), torch.relu, torch.relu_",
    bugs=("B28",),
)
