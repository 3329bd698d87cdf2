"""Weight initialisation: the closed-form laws of each scheme, and the ``model.apply`` pattern.

Curriculum: 000 §11.1 (zero, normal/uniform, Xavier, Kaiming), 002 Q38/Q49 (``_init_weights``).
The curriculum says PyTorch initialises with Kaiming by default (catalog B02). In name only:
Linear and Conv call ``kaiming_uniform_(a=sqrt(5))``, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
a LeCun-uniform scale with std 1/sqrt(3 fan_in), not He's sqrt(2/fan_in). ``pytorch_default_law``
states it so a check can pin it down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import nn

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
