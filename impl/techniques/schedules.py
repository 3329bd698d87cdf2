"""Learning-rate schedules: closed forms, the manual way, and how to drive torch's schedulers.

Curriculum: 000 §11.5 (Step, Exponential and Cosine decay, ReduceLROnPlateau; the code is promised
for a "chapter 5.2.2" that is not among the seeds, catalog B71); 001 Q15 (StepLR, step_size=5,
gamma=0.1); 002 Q55 and Q57 (StepLR, step_size=10); 002 Q69 (ReduceLROnPlateau, patience=3);
003 §5. Catalog §2 rows ``lr_step``, ``lr_exponential``, ``lr_cosine``, ``lr_plateau``,
``lr_manual``.

The closed forms below are what each torch scheduler computes; the checks hold
``torch.optim.lr_scheduler`` to them. Epochs ``e`` count ``scheduler.step()`` calls made so far:
``lr(0)`` is the initial lr, used by the first epoch, and ``lr(e)`` is what ``get_last_lr()``
returns after the e-th ``scheduler.step()``.

The order within an epoch matters: ``optimizer.step()`` for every batch, then ``scheduler.step()``
once (``train_epochs``). Calling ``scheduler.step()`` first skips the initial lr and makes torch
warn ("Detected call of `lr_scheduler.step()` before `optimizer.step()`").

002 Q55's title promises to "adjust the learning rate manually" and its answer uses StepLR instead
(catalog B31). The manual way is to write ``group["lr"]`` in ``optimizer.param_groups``
(``set_lr``, ``scale_lr``): the next ``optimizer.step()`` uses the new value, and for plain SGD the
update ``-lr * grad`` scales with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from torch import optim
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)

from impl.techniques.registry import Category, register_technique

# ---------------------------------------------------------------------------------------------
# Closed forms (catalog §2 "verifiable property" column)


def step_lr(lr0: float, epoch: int, *, step_size: int, gamma: float) -> float:
    """StepLR: ``lr0 * gamma ** (epoch // step_size)`` (000 §11.5 "Step Decay", 001 Q15)."""
    if step_size < 1 or epoch < 0:
        raise ValueError(f"need step_size >= 1 and epoch >= 0, got {step_size}, {epoch}")
    return lr0 * gamma ** (epoch // step_size)


def exponential_lr(lr0: float, epoch: int, *, gamma: float) -> float:
    """ExponentialLR: ``lr0 * gamma ** epoch`` (000 §11.5 "Exponential Decay")."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return lr0 * gamma**epoch


def cosine_annealing_lr(lr0: float, epoch: int, *, t_max: int, eta_min: float = 0.0) -> float:
    """CosineAnnealingLR for ``0 <= epoch <= t_max``:
    ``eta_min + (lr0 - eta_min) * (1 + cos(pi * epoch / t_max)) / 2``; ``lr(t_max) == eta_min``.
    (000 §11.5 "Cosine Annealing", name only; Loshchilov & Hutter 2017 without restarts.)"""
    if not 0 <= epoch <= t_max:
        raise ValueError(f"the closed form holds for 0 <= epoch <= t_max={t_max}, got {epoch}")
    return eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


def plateau_lrs(
    metrics: Iterable[float],
    lr0: float,
    *,
    mode: Literal["min", "max"] = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: Literal["rel", "abs"] = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
    eps: float = 1e-8,
) -> list[float]:
    """ReduceLROnPlateau written out: the lr after each ``step(metric)``.

    A metric improves on the best so far only by more than the threshold (relative by default:
    ``m < best * (1 - 1e-4)`` in min mode). After ``patience`` bad epochs in a row the *next* bad
    one (the ``patience + 1``-th) multiplies the lr by ``factor`` (not below ``min_lr``; a change
    of ``eps`` or less is skipped), resets the count and starts ``cooldown`` epochs during which
    bad epochs are not counted. With a constant metric and patience 3 the lr therefore drops on
    the 5th step and every 4th after it (catalog ``lr_plateau``). Early stopping with the same
    patience stops one epoch sooner, at the patience-th bad epoch (``impl.techniques.
    early_stopping``).
    """
    best = math.inf if mode == "min" else -math.inf
    lr, bad, cooling, out = lr0, 0, 0, []
    for metric in metrics:
        if mode == "min":
            better = metric < (
                best * (1 - threshold) if threshold_mode == "rel" else best - threshold
            )
        else:
            better = metric > (
                best * (1 + threshold) if threshold_mode == "rel" else best + threshold
            )
        if better:
            best, bad = metric, 0
        else:
            bad += 1
        if cooling > 0:
            cooling, bad = cooling - 1, 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > eps:
                lr = new
            cooling, bad = cooldown, 0
        out.append(lr)
    return out


# ---------------------------------------------------------------------------------------------
# Setting the lr by hand (002 Q55's title; catalog B31)


def set_lr(optimizer: optim.Optimizer, lr: float | Sequence[float]) -> None:
    """Set the learning rate of every parameter group (one value, or one per group).

    The next ``optimizer.step()`` uses it; parameters, their grouping and the optimizer's state
    (momentum buffers, Adam's moments) are kept, unlike building a new optimizer."""
    groups = optimizer.param_groups
    lrs = [lr] * len(groups) if isinstance(lr, int | float) else list(lr)
    if len(lrs) != len(groups):
        raise ValueError(f"{len(lrs)} learning rates for {len(groups)} parameter groups")
    for group, value in zip(groups, lrs, strict=True):
        group["lr"] = float(value)


def scale_lr(optimizer: optim.Optimizer, factor: float) -> None:
    """Multiply every group's learning rate by ``factor``, keeping their ratios."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor


class ManualLR:
    """The hand-written schedule a user writes instead of a scheduler: after the epochs named in
    ``factors`` (1-based), multiply every group's lr by that factor (``{10: 0.1}``: "divide the
    lr by 10 after the 10th epoch", MultiStepLR's milestones). ``step()`` and ``get_last_lr()``
    mirror a torch scheduler's, so it drops into ``train_epochs``."""

    def __init__(self, optimizer: optim.Optimizer, factors: Mapping[int, float]):
        self.optimizer, self.factors, self.last_epoch = optimizer, dict(factors), 0

    def step(self) -> None:
        """Call once per epoch, after that epoch's ``optimizer.step()`` calls."""
        self.last_epoch += 1
        if self.last_epoch in self.factors:
            scale_lr(self.optimizer, self.factors[self.last_epoch])

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]


# ---------------------------------------------------------------------------------------------
# Driving a scheduler


def train_epochs(
    optimizer: optim.Optimizer,
    scheduler: LRScheduler | ReduceLROnPlateau | ManualLR,
    epochs: int,
    run_epoch: Callable[[], float],
) -> list[float]:
    """Run ``epochs`` epochs; return the lr each epoch trained with.

    ``run_epoch`` trains one epoch (its ``optimizer.step()`` calls) and returns the metric a
    ReduceLROnPlateau watches: the *validation* loss (002 Q69 passes the training loss while its
    prose says validation). The scheduler steps once per epoch, after the optimizer."""
    used = []
    for _ in range(epochs):
        used.append(optimizer.param_groups[0]["lr"])
        metric = run_epoch()
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(metric)
        else:
            scheduler.step()
    return used


register_technique(
    name="lr_step",
    category=Category.TRAINING,
    curriculum="001 Q15; 002 Q55, Q57; 000 §11.5; 003 §5",
    summary="StepLR: lr0·γ^⌊e/step_size⌋, stepped once per epoch after optimizer.step()",
    api="torch.optim.lr_scheduler.StepLR; get_last_lr()",
    schedulers={"StepLR(step_size=2, gamma=0.5)": lambda opt: StepLR(opt, step_size=2, gamma=0.5)},
)
register_technique(
    name="lr_exponential",
    category=Category.TRAINING,
    curriculum="001 Q15 (named); 000 §11.5",
    summary="ExponentialLR: lr0·γ^e",
    api="torch.optim.lr_scheduler.ExponentialLR",
    schedulers={"ExponentialLR(gamma=0.9)": lambda opt: ExponentialLR(opt, gamma=0.9)},
)
register_technique(
    name="lr_cosine",
    category=Category.TRAINING,
    curriculum="000 §11.5 (named only; B71)",
    summary="CosineAnnealingLR: η_min + ½(lr0−η_min)(1+cos(πt/T_max)); lr(T_max) = η_min",
    api="torch.optim.lr_scheduler.CosineAnnealingLR",
    schedulers={
        "CosineAnnealingLR(T_max=5, eta_min=1e-3)": lambda opt: CosineAnnealingLR(
            opt, T_max=5, eta_min=1e-3
        )
    },
)
register_technique(
    name="lr_plateau",
    category=Category.TRAINING,
    curriculum="002 Q69; 001 Q15; 000 §11.5",
    summary="ReduceLROnPlateau: ×factor after patience+1 epochs without a relative 1e-4 gain",
    api="torch.optim.lr_scheduler.ReduceLROnPlateau; scheduler.step(metric)",
    # ReduceLROnPlateau.step needs the metric: a generic check must call step(metric)
    schedulers={
        "ReduceLROnPlateau(factor=0.5, patience=1)": lambda opt: ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=1
        )
    },
)
register_technique(
    name="lr_manual",
    category=Category.TRAINING,
    curriculum="002 Q55 (title)",
    summary="Set lr by writing optimizer.param_groups[i]['lr']; the next step() uses it",
    api="torch.optim.Optimizer.param_groups",
    bugs=("B31",),
    schedulers={"ManualLR({1: 0.1})": lambda opt: ManualLR(opt, {1: 0.1})},
)
