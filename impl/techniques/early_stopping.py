"""Early stopping on a held-out validation loss, keeping the best weights.

Curriculum: 000 §11.4.2 (patience 10, ``==``, saves the best state_dict); 001 Q17 (patience 3,
``>=``); 002 Q54 (patience 5); 002 Q65 (patience 3, simulated losses); 001 H6. Catalog §2
``early_stopping``; bugs B24, B48, B56.

The curriculum's counters all mean the same (catalog): an epoch improves only if its validation
loss is strictly below the best so far (no min_delta unless asked for), an improvement resets the
counter, and training stops at the **patience-th consecutive** epoch without one. On a loss
sequence with its minimum at epoch k (1-based) it stops at epoch k + patience, or runs to the end;
on a strictly falling sequence it never stops. The weights to keep are epoch k's.

What the curriculum gets wrong, and this module does not:

- 000 §11.4.2 validates on CIFAR-10's *test* split, so the test set picks the model (B24, data
  leakage; 004 L406-409 says to hold out a validation split). ``split_train_val`` holds one out of
  the training data, and ``fit_with_early_stopping`` never sees the test set.
- 001 Q17 feeds the *training* loss to the counter (B48); full-batch gradient descent on it falls
  every epoch, so it never stops, whatever the held-out loss does. Its prose also promises a
  threshold the code lacks: ``EarlyStopping(min_delta=...)``.
- 002 Q65's simulated validation loss ``0.05 * (20 - epoch)`` falls strictly, so its demonstration
  never triggers (B56).

Unlike ``ReduceLROnPlateau`` (``impl.techniques.schedules``), which acts on the patience+1-th bad
epoch and needs a relative gain of 1e-4, early stopping acts on the patience-th and counts any
strict gain.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, random_split

from impl.techniques.registry import Category, register_technique


class EarlyStopping:
    """Call ``step(val_loss, model)`` once per epoch; it returns True when training should stop.

    ``best_state`` is a deep copy of the best epoch's ``state_dict`` (``state_dict()`` alone
    returns the live tensors, which the next optimizer step overwrites); ``path``, if given, also
    receives it with ``torch.save`` as 000 §11.4.2 does. A NaN loss never improves."""

    def __init__(self, patience: int, *, min_delta: float = 0.0, path: str | Path | None = None):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience, self.min_delta, self.path = patience, min_delta, path
        self.best = math.inf
        self.best_epoch: int | None = None  # 1-based
        self.best_state: dict[str, Any] | None = None
        self.epoch = 0
        self.bad_epochs = 0
        self.stopped_epoch: int | None = None

    def step(self, val_loss: float, model: nn.Module | None = None) -> bool:
        self.epoch += 1
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = float(val_loss), self.epoch, 0
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
                if self.path is not None:
                    torch.save(self.best_state, self.path)
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.stopped_epoch = self.epoch
            return True
        return False

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model``."""
        if self.best_state is None:
            raise RuntimeError("no epoch has improved yet (or step() was never given the model)")
        model.load_state_dict(self.best_state)


def split_train_val(
    dataset: Dataset, val_fraction: float, generator: torch.Generator
) -> tuple[Subset, Subset]:
    """Hold out ``val_fraction`` of ``dataset`` (at least one example each side) for validation:
    disjoint index sets covering the dataset (004 L406-409), drawn with ``generator``."""
    n = len(dataset)  # type: ignore[arg-type]
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    train, val = random_split(dataset, [n - n_val, n_val], generator=generator)
    return train, val


@dataclass
class FitResult:
    train_losses: list[float] = field(default_factory=list)  # per-example mean, one per epoch
    val_losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based; its weights are in the model on return
    stopped_epoch: int | None = None  # None: ran every epoch


def mean_loss(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> float:
    """Per-example mean loss over ``loader`` in eval mode without autograd (a mean ``loss_fn``
    weighted by batch size: a smaller last batch counts for what it holds)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in loader:
            total += loss_fn(model(inputs), targets).item() * len(targets)
            count += len(targets)
    return total / count


def fit_with_early_stopping(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    max_epochs: int,
    patience: int,
    min_delta: float = 0.0,
) -> FitResult:
    """Train until the validation loss has not improved for ``patience`` epochs, then load the
    best epoch's weights. ``val_loader`` must hold a validation split (``split_train_val``), never
    the test set (B24)."""
    stopper = EarlyStopping(patience, min_delta=min_delta)
    result = FitResult()
    for _ in range(max_epochs):
        model.train()
        total, count = 0.0, 0
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(targets)
            count += len(targets)
        result.train_losses.append(total / count)
        result.val_losses.append(mean_loss(model, val_loader, loss_fn))
        if stopper.step(result.val_losses[-1], model):
            break
    stopper.restore_best(model)
    result.best_epoch, result.stopped_epoch = stopper.best_epoch, stopper.stopped_epoch
    return result


register_technique(
    name="early_stopping",
    category=Category.TRAINING,
    curriculum="000 §11.4.2; 001 Q17, H6; 002 Q54, Q65",
    summary="Stop at the patience-th epoch without a strict val-loss gain; keep the best weights",
    api="hand-written counter; copy.deepcopy(model.state_dict()); torch.utils.data.random_split",
    bugs=("B24", "B48", "B56"),
)
