"""The calls that benchmark kinds time besides a backend's forward: an optimiser step, and either
one under ``torch.autocast``.

A training step is what a training loop repeats: ``zero_grad``, forward, the model's declared
loss, backward, ``step``, on one fixed batch, so that its time is the model's and not the data
pipeline's. Under autocast float16 the loss is scaled with ``torch.amp.GradScaler`` (float16
gradients underflow without it); bfloat16 has float32's range and needs no scaler. Modern API
only: ``torch.autocast`` and ``torch.amp.GradScaler``, never the ``torch.cuda.amp`` aliases.
Curriculum: 002 Q58 and Q71 (AMP), catalog P-amp-bench.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: str, precision: str) -> AbstractContextManager:
    """``torch.autocast`` to ``precision`` on ``device``; no autocast for float32."""
    if precision == "float32":
        return nullcontext()
    return torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[precision])


def autocast_forward(model: nn.Module, device: str, precision: str) -> Callable[..., Tensor]:
    """An inference call of ``model`` in ``precision``: inference mode, autocast where asked."""

    def forward(inputs: tuple[Tensor, ...]) -> Tensor:
        with torch.inference_mode(), autocast(device, precision):
            return model(*inputs)

    return forward


class TrainingStep:
    """One optimiser step of ``model`` on a fixed batch; call it to take a step.

    Adam (lr 1e-3), as most of the curriculum's training loops. ``losses`` keeps each step's loss
    as a tensor (reading it as a float would synchronise a GPU on every step).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[[Tensor, Tensor], Tensor],
        inputs: tuple[Tensor, ...],
        targets: Tensor,
        *,
        device: str,
        precision: str = "float32",
        lr: float = 1e-3,
    ) -> None:
        self.model, self.loss, self.inputs, self.targets = model.train(), loss, inputs, targets
        self.device, self.precision = device, precision
        # the trainable parameters: a frozen backbone is not the optimiser's (transfer learning)
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        self.scaler = torch.amp.GradScaler(device, enabled=precision == "float16")
        self.losses: list[Tensor] = []

    def __call__(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self.loss(self.model(*self.inputs), self.targets)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # skipped by the scaler if a gradient is inf or NaN
        self.scaler.update()
        self.losses.append(loss.detach())
        return self.losses[-1]

    @property
    def steps(self) -> int:
        return len(self.losses)

    def parameters_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())


def loss_after_steps(
    build: Callable[[], nn.Module],
    loss: Callable[[Tensor, Tensor], Tensor],
    inputs: tuple[Tensor, ...],
    targets: Tensor,
    *,
    device: str,
    precision: str,
    steps: int,
) -> float:
    """The loss at step ``steps`` + 1 of a freshly built model trained in ``precision``; NaN if
    training diverged. The same ``build`` and batch give float32 and autocast the same start."""
    step = TrainingStep(build(), loss, inputs, targets, device=device, precision=precision)
    for _ in range(steps):
        step()
    last = float(step())
    return last if math.isfinite(last) else math.nan
