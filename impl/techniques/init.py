"""Weight initialisation: the closed-form laws of each scheme, and the ``model.apply`` pattern.

Curriculum: 000 §11.1 (zero, normal/uniform, Xavier, Kaiming), 002 Q7, 002 Q38/Q49/Q51 v2
(``_init_weights``). Zero init never breaks the symmetry between units (``zero_init_``).
Xavier keeps the pre-activation variance of a deep linear stack, and of a tanh stack only with
``gain=calculate_gain("tanh")``: at the default gain 1 that 000 §11.1.2 uses, tanh activations
fade layer by layer. He (Kaiming) keeps it through a deep ReLU stack
(``preactivation_second_moments`` measures it).
The curriculum says PyTorch initialises with Kaiming by default (catalog B02). In name only:
Linear and Conv call ``kaiming_uniform_(a=sqrt(5))``, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
a LeCun-uniform scale with std 1/sqrt(3 fan_in), not He's sqrt(2/fan_in). ``pytorch_default_law``
states it so a check can pin it down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from impl.techniques.registry import Category, register_technique

Distribution = Literal["normal", "uniform"]
Mode = Literal["fan_in", "fan_out"]


@dataclass(frozen=True)
class InitLaw:
    """A zero-mean normal or uniform distribution, described by its standard deviation."""

    distribution: Distribution
    std: float

    @property
    def bound(self) -> float:
        """Half-width of the uniform law (std * sqrt(3)); normal laws are unbounded."""
        if self.distribution != "uniform":
            raise ValueError("a normal law has no bound")
        return self.std * math.sqrt(3.0)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or ConvNd (out, in, *kernel) weight."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a weight of rank >= 2, got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def xavier_law(shape: tuple[int, ...], distribution: Distribution, gain: float = 1.0) -> InitLaw:
    """Glorot and Bengio (2010): std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return InitLaw(distribution, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_law(
    shape: tuple[int, ...],
    distribution: Distribution,
    mode: Mode = "fan_in",
    nonlinearity: str = "leaky_relu",
    a: float = 0.0,
) -> InitLaw:
    """He et al. (2015): std = gain / sqrt(fan), gain from ``nn.init.calculate_gain``."""
    fan_in, fan_out = fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    return InitLaw(distribution, nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan))


def pytorch_default_law(shape: tuple[int, ...]) -> InitLaw:
    """What nn.Linear and nn.ConvNd weights and biases get: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in, _ = fans(shape)
    return InitLaw("uniform", 1.0 / math.sqrt(3.0 * fan_in))


def init_weights(
    module: nn.Module,
    scheme: Literal["xavier", "kaiming"] = "kaiming",
    distribution: Distribution = "normal",
    mode: Mode = "fan_in",
    nonlinearity: str = "relu",
) -> None:
    """For ``model.apply``: Xavier or Kaiming weights and zero biases on Linear and Conv layers,
    weight 1 and bias 0 on normalisation layers; other modules are left alone."""
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
        if scheme == "xavier":
            gain = nn.init.calculate_gain(nonlinearity)
            init = nn.init.xavier_normal_ if distribution == "normal" else nn.init.xavier_uniform_
            init(module.weight, gain=gain)
        elif scheme == "kaiming":
            init = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
            init(module.weight, mode=mode, nonlinearity=nonlinearity)
        else:
            raise ValueError(f"scheme must be 'xavier' or 'kaiming', got {scheme!r}")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif (
        isinstance(module, nn.LayerNorm | nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d)
        and module.weight is not None
    ):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --- random, zero and model-specific initialisation (000 §11.1.2; 002 Q7, Q38, Q49, Q51 v2) ---

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)


def normal_init_(module: nn.Module, mean: float = 0.0, std: float = 0.02) -> None:
    """For ``model.apply``: N(mean, std²) weights and zero biases on Linear and Conv layers.

    002 Q7 (``normal_(w, 0.0, 0.02)``, ``constant_(bias, 0.0)`` on Linear(3, 2)), 000 §11.1.2
    (``std=0.01``) and the Mask R-CNN heads of 002 Q51 v2 (``normal_(std=0.01)`` on every RPN
    conv and RoI-head Linear, bias 0). ``nn.init`` functions fill in place and return the tensor.
    """
    if isinstance(module, _WEIGHTED):
        nn.init.normal_(module.weight, mean=mean, std=std)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.0)


def uniform_init_(module: nn.Module, a: float = -0.1, b: float = 0.1) -> None:
    """For ``model.apply``: U(a, b) weights and zero biases on Linear and Conv layers.

    000 §11.1.2 (``uniform_(w, a=-0.1, b=0.1)``)."""
    if isinstance(module, _WEIGHTED):
        nn.init.uniform_(module.weight, a=a, b=b)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.0)


def zero_init_(module: nn.Module) -> None:
    """For ``model.apply``: all-zero weights and biases, what 000 §11.1.2 warns against.

    Every hidden unit of a layer then computes the same function, receives the same gradient and
    gets the same update, so the units stay identical forever: symmetry is never broken (with ReLU
    or tanh hidden units the hidden layer even stays at exactly zero). Any constant init does the
    same; random init is what breaks the symmetry. ``unit_spread`` measures it.
    """
    if isinstance(module, _WEIGHTED):
        nn.init.zeros_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def unit_spread(weight: torch.Tensor) -> float:
    """How far a layer's units are from being copies of one another: the largest absolute
    difference between any row of ``weight`` (one row per output unit) and the first row.
    0 means every unit has the same incoming weights (symmetric)."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    return float((rows - rows[:1]).abs().max())


def vit_init_patch_embedding_(conv: nn.Conv2d) -> None:
    """ViT/MAE (002 Q38): initialise the patch-embedding conv like the Linear it is, Xavier
    uniform on the weight viewed as (embed_dim, in_channels·p·p), in place through the view.

    Its fans are (in·p·p, embed_dim), so the std is sqrt(2 / (in·p·p + embed_dim)): larger than
    ``xavier_uniform_`` on the 4-D conv weight, whose fan_out counts embed_dim·p·p.
    """
    w = conv.weight.data
    nn.init.xavier_uniform_(w.view([w.shape[0], -1]))  # (embed_dim, in·p·p), shares storage
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def vit_init_weights(module: nn.Module) -> None:
    """ViT's ``_init_weights`` (002 Q38, Q52 v2), for ``model.apply``: Xavier-uniform Linear
    weights with zero biases; LayerNorm weight 1 and bias 0. Convs are left to
    ``vit_init_patch_embedding_``."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.0)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(module.weight, 1.0)


def unet_init_weights(module: nn.Module) -> None:
    """UNet's ``_init_weights`` (002 Q49), for ``model.apply``: He-normal conv weights in fan_out
    mode for ReLU (std sqrt(2 / (out_channels·k·k))), zero conv biases; BatchNorm2d weight 1,
    bias 0 (the ResNet convention, also ``impl.models.resnet_transfer``)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.0)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1.0)
        nn.init.constant_(module.bias, 0.0)


def detection_head_init(module: nn.Module) -> None:
    """Mask R-CNN's RPN and RoI heads (002 Q51 v2), for ``model.apply``: N(0, 0.01²) weights and
    zero biases on every Conv2d and Linear (the seed loops over ``self.modules()``; ``apply``
    visits the same modules)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        normal_init_(module, std=0.01)


# --- variance propagation (000 §11.1.2: Xavier "keeps each layer's output variance the same") ---


def deep_linear_stack(
    depth: int, width: int, activation: Literal["tanh", "relu", "identity"]
) -> nn.Sequential:
    """``depth`` square Linear(width, width) layers, each followed by ``activation`` except the
    last. Initialise it with ``stack.apply(...)``; ``preactivation_second_moments`` probes it."""
    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "identity": nn.Identity}[activation]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(act())
    return nn.Sequential(*layers)


@torch.no_grad()
def preactivation_second_moments(stack: nn.Sequential, x: torch.Tensor) -> list[float]:
    """The mean square of each Linear's output (the pre-activations) as ``x`` (batch, width)
    passes through ``stack``: the quantity Xavier and He keep constant from layer to layer.
    The first entry is the input's own mean square."""
    moments = [float(x.double().pow(2).mean())]
    for layer in stack:
        x = layer(x)
        if isinstance(layer, nn.Linear):
            moments.append(float(x.double().pow(2).mean()))
    return moments


register_technique(
    name="init_normal_uniform",
    category=Category.INIT,
    curriculum="000 §11.1.2; 002 Q7",
    summary="N(mean, std²) or U(a, b) weights and constant-0 biases, filled in place",
    api="torch.nn.init.normal_, torch.nn.init.uniform_, torch.nn.init.constant_",
)
register_technique(
    name="init_zero_symmetry",
    category=Category.INIT,
    curriculum="000 §11.1.2",
    summary="all-zero (or constant) weights give every hidden unit the same gradient forever",
    api="torch.nn.init.zeros_; torch.autograd; torch.optim.SGD",
)
register_technique(
    name="init_xavier",
    category=Category.INIT,
    curriculum="000 §11.1.2; 002 Q38, Q52 v2",
    summary="Glorot: std gain·sqrt(2/(fan_in+fan_out)); keeps variance through linear/tanh stacks",
    api="torch.nn.init.xavier_normal_, torch.nn.init.xavier_uniform_",
)
register_technique(
    name="init_kaiming",
    category=Category.INIT,
    curriculum="000 §11.1.2; 002 Q49",
    summary="He: std gain/sqrt(fan); keeps the second moment through a deep ReLU stack",
    api="torch.nn.init.kaiming_normal_, torch.nn.init.kaiming_uniform_",
)
register_technique(
    name="init_default_claim",
    category=Category.INIT,
    curriculum="000 §11.1 (end of the explanation)",
    summary="PyTorch's default Linear/Conv init is U(±1/sqrt(fan_in)), not He's sqrt(2/fan_in)",
    api="torch.nn.Linear.reset_parameters (kaiming_uniform_(a=sqrt(5)))",
    bugs=("B02",),
)
register_technique(
    name="init_custom_apply",
    category=Category.INIT,
    curriculum="002 Q38, Q49, Q51 v2, Q52 v2",
    summary="model.apply(_init_weights): isinstance dispatch of the ViT, UNet and Mask R-CNN inits",
    api="torch.nn.Module.apply",
)
