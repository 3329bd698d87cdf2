"""Hyperparameter search (grid and random) and K-fold cross-validation, with a fresh model for
every combination and every fold.

Curriculum: 002 Q67 (``sklearn.model_selection.ParameterGrid({'lr': [0.001, 0.01],
'batch_size': [16, 32]})``), 001 Q9 (random search with ``random.choice``; Bayesian optimisation
and cross-validation in prose), 001 H5, 002 Q59 (``KFold(n_splits=5)``, no shuffle, a new
``nn.Linear(1, 1)`` per fold, SGD 0.01, 20 epochs).

A search compares combinations, so each must be trained from the same starting point and scored
on held-out data. 002 Q67 builds its optimizer over one ``model`` defined before the loop: every
combination goes on training the weights the previous one left, although its text says the model
is re-initialised for each, and nothing is scored, so the "search" selects nothing (catalog
B33). Here ``fit_and_score`` builds a new model for each combination, from the same seed, and
returns its validation loss; ``grid_search`` and ``random_search`` return every trial and the
best one.

K-fold cross-validation (``KFold.split``): the validation folds partition the samples (disjoint,
covering, sizes n // k or n // k + 1, contiguous blocks without shuffling), each fold trains on
the rest, and each fold gets a new model: weights trained on one fold's training set must not
leak into the next fold's. 002 Q59 does this right.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import KFold, ParameterGrid
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from impl.techniques.registry import Category, register_technique
from impl.techniques.training_loop import train_one_epoch

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Trial:
    params: dict[str, Any]
    score: float  # the validation loss (lower is better) or whatever ``evaluate`` returned


@dataclass(frozen=True)
class SearchResult:
    trials: tuple[Trial, ...]  # in the order they ran
    best: Trial


def _result(trials: list[Trial], *, maximize: bool) -> SearchResult:
    if not trials:
        raise ValueError("a search needs at least one combination")
    pick = max if maximize else min
    return SearchResult(tuple(trials), pick(trials, key=lambda t: t.score))


def grid_search(
    param_grid: Mapping[str, Sequence[Any]],
    evaluate: Callable[[dict[str, Any]], float],
    *,
    maximize: bool = False,
) -> SearchResult:
    """Score every combination of ``param_grid`` (its Cartesian product, ``ParameterGrid``'s
    order) with ``evaluate(params)``, which must train a *new* model (``fit_and_score``)."""
    trials = [Trial(dict(p), float(evaluate(dict(p)))) for p in ParameterGrid(dict(param_grid))]
    return _result(trials, maximize=maximize)


def random_combinations(
    space: Mapping[str, Sequence[Any]], n_trials: int, seed: int
) -> Iterator[dict[str, Any]]:
    """``n_trials`` combinations, each value drawn with ``random.choice`` as 001 Q9 does, from a
    ``random.Random(seed)`` of its own: the same seed gives the same combinations, and the
    global ``random`` state is neither used nor changed."""
    rng = random.Random(seed)
    for _ in range(n_trials):
        yield {key: rng.choice(list(values)) for key, values in sorted(space.items())}


def random_search(
    space: Mapping[str, Sequence[Any]],
    evaluate: Callable[[dict[str, Any]], float],
    *,
    n_trials: int,
    seed: int,
    maximize: bool = False,
) -> SearchResult:
    """Score ``n_trials`` random combinations of ``space`` (``random_combinations``)."""
    trials = [Trial(p, float(evaluate(p))) for p in random_combinations(space, n_trials, seed)]
    return _result(trials, maximize=maximize)


def validation_loss(model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn) -> float:
    """The mean loss on held-out data, in eval mode and under no_grad (003 §4)."""
    model.eval()
    with torch.no_grad():
        return loss_fn(model(inputs), targets).item()


def fit_and_score(
    params: Mapping[str, Any],
    *,
    make_model: Callable[[Mapping[str, Any]], nn.Module],
    train: TensorDataset,
    val: tuple[Tensor, Tensor],
    loss_fn: LossFn,
    epochs: int,
    seed: int = 0,
) -> float:
    """Train a new model for ``params`` and return its validation loss (002 Q67, corrected).

    ``make_model(params)`` runs after ``torch.manual_seed(seed)``, so every combination starts
    from the same weights (for the same architecture) and differs only by its hyperparameters;
    the loader shuffles with its own generator, seeded alike. ``params`` must hold ``lr`` and
    ``batch_size`` (Q67's grid); the optimizer is SGD, as there.
    """
    torch.manual_seed(seed)
    model = make_model(params)  # a new model: nothing carries over from another combination
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"])
    loader = DataLoader(
        train,
        batch_size=params["batch_size"],
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    for _ in range(epochs):
        train_one_epoch(model, loader, loss_fn, optimizer)
    return validation_loss(model, *val, loss_fn)


def kfold_splits(
    n_samples: int, n_splits: int = 5, *, shuffle: bool = False, seed: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's ``KFold(n_splits, shuffle, random_state=seed).split``: (train, val) index
    arrays per fold. The validation folds partition range(n_samples)."""
    kfold = KFold(n_splits=n_splits, shuffle=shuffle, random_state=seed if shuffle else None)
    return list(kfold.split(np.arange(n_samples)))


def fit_full_batch(
    model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: LossFn, *, lr: float, epochs: int
) -> None:
    """002 Q59's training: ``epochs`` full-batch SGD steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(inputs), targets).backward()
        optimizer.step()


def kfold_cross_validate(
    inputs: Tensor,
    targets: Tensor,
    *,
    make_model: Callable[[], nn.Module],
    fit: Callable[[nn.Module, Tensor, Tensor], object],
    loss_fn: LossFn,
    n_splits: int = 5,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[float]:
    """The validation loss of each fold: a new model per fold (``make_model()``), fitted with
    ``fit(model, train_inputs, train_targets)`` on the other folds, scored on its own.

    Curriculum: 002 Q59. Initialisation draws on torch's global RNG, as there: seed it first for
    reproducible scores.
    """
    scores = []
    for train_idx, val_idx in kfold_splits(len(inputs), n_splits, shuffle=shuffle, seed=seed):
        model = make_model()  # re-initialised for every fold: no weights leak between folds
        fit(model, inputs[train_idx], targets[train_idx])
        scores.append(validation_loss(model, inputs[val_idx], targets[val_idx], loss_fn))
    return scores


register_technique(
    name="hparam_search",
    category=Category.TRAINING,
    curriculum="002 Q67; 001 Q9, H5",
    summary="grid (ParameterGrid) and seeded random search; a new model per combination, each "
    "scored on validation data and the best returned",
    api="sklearn.model_selection.ParameterGrid, random.Random.choice",
    bugs=("B33",),
)

register_technique(
    name="kfold_cv",
    category=Category.TRAINING,
    curriculum="002 Q59; 001 Q9",
    summary="KFold.split: disjoint validation folds covering every sample; a new model per fold",
    api="sklearn.model_selection.KFold.split",
)
