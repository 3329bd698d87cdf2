"""A plugin of models that go wrong on purpose, to check that a benchmark run survives them.

Not imported by the checks themselves: the end-to-end checks load it into ``torchgauge run`` with
``--plugin misbehaving_models``, beside built-in models, and expect one row per case with the right
status. Each model is a correct MLP until its forward misbehaves.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl import Cap, register_model
from impl.machine import Feature


@dataclass(frozen=True)
class Config:
    in_features: int = 8
    num_classes: int = 3


SIZES = {"tiny": Config(), "full": Config()}
PARAMS = 8 * 3 + 3


def _inputs(cfg: Config, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    return (torch.randn(batch_size, cfg.in_features, generator=generator),)


def _shape(cfg: Config, batch_size: int) -> tuple[int, int]:
    return (batch_size, cfg.num_classes)


class Misbehaving(nn.Module):
    def __init__(self, cfg: Config, behaviour: str) -> None:
        super().__init__()
        self.fc, self.behaviour = nn.Linear(cfg.in_features, cfg.num_classes), behaviour

    def forward(self, x: Tensor) -> Tensor:
        if self.behaviour == "raise":
            raise RuntimeError("forward failed on purpose")
        if self.behaviour == "sleep":
            time.sleep(3600)
        if self.behaviour == "abort":
            os.abort()
        return self.fc(x)


COMMON = {"family": "plugin", "sizes": SIZES, "example_inputs": _inputs, "output_shape": _shape}

# a feature no machine has, so its cases are skipped wherever the checks run
TELEPORTER = Feature(
    name="teleporter",
    device="cpu",
    description="a device that does not exist",
    probe=lambda: False,
    reported=lambda: "no teleporter found",
)


@register_model(**COMMON, full_params=PARAMS)
def raises_in_forward(cfg: Config) -> nn.Module:
    """Raises RuntimeError in forward."""
    return Misbehaving(cfg, "raise")


@register_model(**COMMON, full_params=PARAMS)
def sleeps_in_forward(cfg: Config) -> nn.Module:
    """Sleeps for an hour in forward."""
    return Misbehaving(cfg, "sleep")


@register_model(**COMMON, full_params=PARAMS)
def aborts_in_forward(cfg: Config) -> nn.Module:
    """Calls os.abort() in forward, killing its process with SIGABRT."""
    return Misbehaving(cfg, "abort")


@register_model(
    **COMMON, caps={Cap.TORCHSCRIPT}, needs={Cap.TORCHSCRIPT: (TELEPORTER,)}, full_params=PARAMS
)
def needs_a_teleporter(cfg: Config) -> nn.Module:
    """Behaves, but its TorchScript capability needs a feature no machine has."""
    return Misbehaving(cfg, "behave")
