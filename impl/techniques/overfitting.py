"""Overfitting diagnostics: watch the train/validation gap, and what regularisation does to it.

Curriculum: 001 Q3; 004 L216-235; 000 §11.2.1, §11.4.1. The rules of 004 L216-229: if the
training loss does not fall, the model is too simple (underfitting); if the training loss falls
and the validation loss does not follow, the gap between them is overfitting. The sharpest
demonstration (Zhang et al., 2017, https://arxiv.org/abs/1611.03530): labels drawn at random
carry no signal, yet a large enough MLP drives its training loss to zero by memorising them,
while its validation loss rises above chance, log(classes). Dropout and weight decay slow the
memorisation, and early stopping keeps the weights from before it, so each narrows the gap.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.techniques.registry import Category, register_technique


@dataclass(frozen=True)
class Split:
    x: Tensor  # (n, features)
    y: Tensor  # (n,) int64 class labels


def random_label_task(
    n_train: int, n_val: int, features: int, classes: int, generator: torch.Generator
) -> tuple[Split, Split]:
    """Gaussian inputs with labels drawn uniformly at random, independent of the inputs: nothing
    generalises, so the best possible validation loss is log(classes) and accuracy 1/classes."""
    x = torch.randn(n_train + n_val, features, generator=generator)
    y = torch.randint(0, classes, (n_train + n_val,), generator=generator)
    return Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])


def large_mlp(features: int, width: int, classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Two hidden ReLU layers of ``width`` units, Dropout after each (001 Q3 places it after the
    activation)."""
    return nn.Sequential(
        nn.Linear(features, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, classes),
    )


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def gap(self, epoch: int = -1) -> float:
        """Validation loss minus training loss at ``epoch`` (the last by default)."""
        return self.val_loss[epoch] - self.train_loss[epoch]

    @property
    def best_epoch(self) -> int:
        """The epoch of the lowest validation loss (what early stopping keeps)."""
        return min(range(len(self.val_loss)), key=self.val_loss.__getitem__)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode (Dropout off)."""
    model.eval()
    logits = model(split.x)
    return F.cross_entropy(logits, split.y).item(), (
        logits.argmax(1) == split.y
    ).float().mean().item()


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    *,
    epochs: int,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    generator: torch.Generator,
) -> tuple[History, dict[str, Tensor]]:
    """Mini-batch AdamW; record train and validation loss and accuracy after every epoch (both
    measured in eval mode, so they are comparable). Returns the history and the weights of the
    best validation epoch (early stopping's choice)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history, best, best_loss = History(), copy.deepcopy(model.state_dict()), math.inf
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train.y), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
            optimizer.step()
        for split, losses, accuracies in (
            (train, history.train_loss, history.train_accuracy),
            (val, history.val_loss, history.val_accuracy),
        ):
            loss, accuracy = evaluate(model, split)
            losses.append(loss)
            accuracies.append(accuracy)
        if history.val_loss[-1] < best_loss:
            best_loss, best = history.val_loss[-1], copy.deepcopy(model.state_dict())
    return history, best


def diagnose(
    history: History, *, fell_by: float = 0.1, gap_above: float = 0.1
) -> Literal["underfitting", "overfitting", "fitting"]:
    """004 L216-229's two rules: a training loss that has not fallen by ``fell_by`` (relative)
    means the model is too simple; a validation loss above the training loss by more than
    ``gap_above`` (relative to the training loss at the start) means overfitting."""
    start = history.train_loss[0]
    if history.train_loss[-1] > (1 - fell_by) * start:
        return "underfitting"
    if history.gap() > gap_above * start:
        return "overfitting"
    return "fitting"


register_technique(
    name="overfitting_diagnostics",
    category=Category.TRAINING,
    curriculum="001 Q3; 004 L216-235; 000 §11.2.1, §11.4.1",
    summary="a large MLP memorises random labels; dropout, weight decay, early stopping narrow it",
    api="torch.nn.Dropout, torch.optim.AdamW(weight_decay=...), model.eval()",
)
