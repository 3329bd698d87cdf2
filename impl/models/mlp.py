"""Two-layer MLP classifiers: the curriculum's basic "SimpleNN", and the same shape of network
with a pluggable, hand-written activation.

Curriculum:
- ``mlp_784_128_10``: 003 §2 (Linear(784, 128) -> ReLU -> Linear(128, 10), 101,770 parameters).
- ``mlp_784_256_10_act``: 002 Q28 v2 (``SimpleNet``: view(-1, 784) -> Linear(784, 256) ->
  activation -> Linear(256, 10), 203,530 parameters plus Swish's beta when it is trainable). The
  activations are the curriculum's own reference implementations, written by hand in
  ``impl.techniques.activations`` (technique ``activations``): Swish x * sigmoid(beta * x) with
  beta a buffer or a trainable parameter, and GELU, exact (erf) or tanh-approximated.
  Deviations from the seed:
  - We flatten with ``flatten(1)`` after checking the shape, where the seed's ``view(-1, 784)``
    silently turns a wrong-sized input into a different number of rows (the pattern of catalog
    B36, here in Q28).
  - Activation names follow PyTorch: "gelu" is the exact GELU (``nn.GELU()``'s default) and
    "gelu_tanh" the tanh approximation; the seed's ``GELU()`` defaults to the approximation, so
    its ``SimpleNet("gelu")`` is our "gelu_tanh". Its default, ``SimpleNet()``, is Swish with a
    trainable beta = 1: our "full".
  - The image side is a config field rather than hard-coded 784 (the tiny size takes 8x8).
Dimension key: B batch, S image side, D input features (S * S), H hidden units, K classes.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape
from impl.techniques.activations import GELU, Swish


@dataclass(frozen=True)
class MLPConfig:
    in_features: int = 784  # a flattened 28x28 image
    hidden_features: int = 128
    num_classes: int = 10


SIZES = {
    "tiny": MLPConfig(in_features=64, hidden_features=32),  # 8x8 digits, as sklearn's load_digits
    "full": MLPConfig(),
}


class MLP(nn.Module):
    """Linear -> ReLU -> Linear, returning logits.

    Shape: (B, D) -> (B, K)
    """

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        self.fc1 = nn.Linear(cfg.in_features, cfg.hidden_features)
        self.fc2 = nn.Linear(cfg.hidden_features, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input (B, {self.in_features}), got {list(x.shape)}")
        x = torch.relu(self.fc1(x))  # (B, H)
        return self.fc2(x)  # (B, K)


def _example_inputs(cfg: MLPConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    return (torch.randn(batch_size, cfg.in_features, generator=generator),)


@register_model(
    family="mlp",
    curriculum="003 §2",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    full_params=101_770,  # catalog: measured on the curriculum's own class
)
def mlp_784_128_10(cfg: MLPConfig) -> MLP:
    """Two-layer MLP 784-128-10 with ReLU (the curriculum's SimpleNN)."""
    return MLP(cfg)


# ---------------------------------------------------------------------------------------------
# 002 Q28: the MLP that plugs in the hand-written activations of impl.techniques.activations
# ---------------------------------------------------------------------------------------------


ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swish", "swish_trainable")


def make_activation(name: str, swish_beta: float = 1.0) -> nn.Module:
    """The activation module called ``name`` (one of ``ACTIVATIONS``)."""
    if name == "relu":
        return nn.ReLU()  # the seed's own choice for anything but swish and gelu
    if name in ("gelu", "gelu_tanh"):
        return GELU("tanh" if name == "gelu_tanh" else "none")
    if name in ("swish", "swish_trainable"):
        return Swish(swish_beta, trainable=name == "swish_trainable")
    raise ValueError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


@dataclass(frozen=True)
class ActivationMLPConfig:
    image_size: int = 28  # square single-channel image, S
    hidden_features: int = 256
    num_classes: int = 10
    activation: str = "swish_trainable"  # the seed's default: Swish(beta=1.0, trainable=True)
    swish_beta: float = 1.0  # the initial beta of both swish variants

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {ACTIVATIONS}")
        if self.swish_beta == 0:
            raise ValueError("swish_beta must be non-zero (beta = 0 makes Swish linear, x / 2)")

    @property
    def in_features(self) -> int:
        return self.image_size**2  # 784 at full size


_TINY = ActivationMLPConfig(image_size=8, hidden_features=32)  # 8x8 digits, as load_digits
_FULL = ActivationMLPConfig()
# "tiny" and "full" use the seed's default activation; "tiny_<name>" and "full_<name>" pick another
ACTIVATION_SIZES = {
    "tiny": _TINY,
    "full": _FULL,
    **{f"tiny_{name}": dataclasses.replace(_TINY, activation=name) for name in ACTIVATIONS},
    **{f"full_{name}": dataclasses.replace(_FULL, activation=name) for name in ACTIVATIONS},
}


class ActivationMLP(nn.Module):
    """Flatten -> Linear -> activation -> Linear, returning logits.

    Shape: (B, D) or (B, 1, S, S) -> (B, K)
    """

    def __init__(self, cfg: ActivationMLPConfig) -> None:
        super().__init__()
        self.image_size, self.in_features = cfg.image_size, cfg.in_features
        # the seed's attribute names, so its SimpleNet's state_dict loads as it is
        self.fc1 = nn.Linear(cfg.in_features, cfg.hidden_features)
        self.activation = make_activation(cfg.activation, cfg.swish_beta)
        self.fc2 = nn.Linear(cfg.hidden_features, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.dim() == 2 and x.shape[1] == self.in_features
        image = x.dim() == 4 and list(x.shape[1:]) == [1, self.image_size, self.image_size]
        if not (flat or image):
            raise ValueError(
                f"expected input (B, {self.in_features}) or "
                f"(B, 1, {self.image_size}, {self.image_size}), got {list(x.shape)}"
            )
        x = x.flatten(1)  # (B, D)
        x = self.activation(self.fc1(x))  # (B, H)
        return self.fc2(x)  # (B, K)


def _image_inputs(
    cfg: ActivationMLPConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor]:
    shape = (batch_size, 1, cfg.image_size, cfg.image_size)  # (B, 1, S, S), MNIST-like
    return (torch.randn(shape, generator=generator),)


_TORCH_ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "swish": nn.SiLU,
    "swish_trainable": nn.SiLU,
}


def activation_mlp_reference(model: ActivationMLP) -> nn.Sequential:
    """The same function from PyTorch's own layers: nn.ReLU, nn.GELU (exact or tanh) or nn.SiLU.

    Swish with beta != 1 is not a PyTorch layer, but x * sigmoid(beta * x) = SiLU(beta * x) / beta,
    so beta is folded into the Linear layers around nn.SiLU (fc1 times beta, fc2's weight over
    beta); at the seed's beta = 1 the weights are copied unchanged.
    """
    activation = model.activation
    if isinstance(activation, nn.ReLU):
        name = "relu"
    elif isinstance(activation, GELU):
        name = "gelu_tanh" if activation.approximate == "tanh" else "gelu"
    else:
        name = "swish"
    fc1, fc2 = copy.deepcopy(model.fc1), copy.deepcopy(model.fc2)
    if isinstance(activation, Swish):
        beta = activation.beta.detach()
        with torch.no_grad():
            fc1.weight.mul_(beta)
            fc1.bias.mul_(beta)
            fc2.weight.div_(beta)
    return nn.Sequential(nn.Flatten(1), fc1, _TORCH_ACTIVATIONS[name](), fc2)


@register_model(
    family="mlp",
    curriculum="002 Q28",
    sizes=ACTIVATION_SIZES,
    example_inputs=_image_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    reference=activation_mlp_reference,
    # Linear(784, 256) 200,960 + Linear(256, 10) 2,570 = 203,530 (the catalog's figure), plus the
    # trainable Swish beta of the seed's default activation; the other activations have 203,530
    full_params=203_531,
)
def mlp_784_256_10_act(cfg: ActivationMLPConfig) -> ActivationMLP:
    """MLP 784-256-10 with a hand-written activation: Swish (fixed or trainable), GELU, ReLU."""
    return ActivationMLP(cfg)
