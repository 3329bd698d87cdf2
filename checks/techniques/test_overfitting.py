"""Overfitting diagnostics (curriculum 001 Q3; 004 L216-235; 000 §11.2.1, §11.4.1).

A benchmark-style experiment run once per seed (cached): a 16 -> 128 -> 128 -> 2 MLP trained
with AdamW on 64 examples whose labels are random, validated on 256 more. Each check reads one
property off the same runs; the whole file takes a few seconds.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from impl.techniques.overfitting import (
    History,
    diagnose,
    evaluate,
    fit,
    large_mlp,
    random_label_task,
)

SEEDS = [0, 1]
N_VAL = 256


@functools.cache
def _run(seed: int, regulariser: str):
    """One training run: ``regulariser`` is "none", "dropout" (p = 0.5) or "weight_decay"
    (AdamW, 1.0); the same data, initial weights and batch order for all three."""
    train, val = random_label_task(64, N_VAL, 16, 2, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = large_mlp(16, 128, 2, dropout=0.5 if regulariser == "dropout" else 0.0)
    history, best = fit(
        model,
        train,
        val,
        epochs=100,
        lr=5e-3,
        batch_size=64,
        weight_decay=1.0 if regulariser == "weight_decay" else 0.0,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    return history, best, model, train, val


@pytest.mark.parametrize("seed", SEEDS)
def test_overfitting_diagnostics_large_mlp_memorises_random_labels(seed: int) -> None:
    history = _run(seed, "none")[0]
    assert history.train_accuracy[-1] == 1.0
    assert history.train_loss[-1] < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_overfitting_diagnostics_validation_stays_at_chance_and_its_loss_rises(seed) -> None:
    """Validation accuracy within 5 binomial sd (sqrt(1/4 / 256)) of chance, 1/2; the
    validation loss ends above both chance's log 2 and its own minimum."""
    history = _run(seed, "none")[0]
    assert abs(history.val_accuracy[-1] - 0.5) <= 5 * math.sqrt(0.25 / N_VAL)
    assert history.val_loss[-1] > math.log(2)
    assert history.val_loss[-1] > 2 * history.val_loss[history.best_epoch]
    assert diagnose(history) == "overfitting"


@pytest.mark.parametrize("regulariser", ["dropout", "weight_decay"])
@pytest.mark.parametrize("seed", SEEDS)
def test_overfitting_diagnostics_regularisation_narrows_the_gap(seed, regulariser) -> None:
    """Dropout (p = 0.5) or weight decay (AdamW, 1.0): the final validation-minus-training loss
    gap is smaller than without, from the same data, initial weights and batch order."""
    assert _run(seed, regulariser)[0].gap() < _run(seed, "none")[0].gap()


@pytest.mark.parametrize("seed", SEEDS)
def test_overfitting_diagnostics_early_stopping_keeps_the_small_gap_weights(seed) -> None:
    """The weights of the best validation epoch, loaded back, give that epoch's losses, whose
    gap is a fraction of the final one."""
    history, best, model, train, val = _run(seed, "none")
    model.load_state_dict(best)
    train_loss, _ = evaluate(model, train)
    val_loss, _ = evaluate(model, val)
    assert math.isclose(val_loss, history.val_loss[history.best_epoch], rel_tol=1e-6)
    assert val_loss - train_loss < history.gap() / 10


def test_overfitting_diagnostics_diagnose_applies_004s_two_rules() -> None:
    """004 L216-229: a training loss that does not fall means too simple; a large gap means
    overfitting; both falling together is fitting."""
    flat = History(train_loss=[0.69, 0.68], val_loss=[0.69, 0.69])
    gap = History(train_loss=[0.69, 0.01], val_loss=[0.69, 2.0])
    good = History(train_loss=[0.69, 0.30], val_loss=[0.69, 0.33])
    assert diagnose(flat) == "underfitting"
    assert diagnose(gap) == "overfitting"
    assert diagnose(good) == "fitting"
