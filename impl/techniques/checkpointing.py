"""Checkpointing: saving and loading weights, training state, the best model, versions, and data.

Curriculum: 001 Q19; 002 Q19, Q40, Q64, Q87; 000 §11.4. The curriculum's recipe is right and is
what we use: ``torch.save(model.state_dict(), path)``, then
``model.load_state_dict(torch.load(path))`` into a freshly built model of the same class, then
``model.eval()`` before inference. A state_dict is a dict of tensors, so it round-trips bit for
bit, and the reloaded model gives identical outputs.

``torch.load`` defaults to ``weights_only=True`` since PyTorch 2.6: it unpickles tensors, dicts,
lists, numbers and strings, and refuses any other object, because unpickling an arbitrary object
runs arbitrary code. So 002 Q19's ``torch.save(mnist_train, ...)``, which pickles a whole
``Dataset``, can be saved but not loaded back (``UnpicklingError``, catalog B21). Save the data as
tensors (``save_tensors``), or pass ``weights_only=False`` for files you trust.

A full training checkpoint (to resume, 000 §11.4) also holds the optimizer's state_dict (Adam's
moments, step counts), the epoch and plain metadata; all of it is allowed under
``weights_only=True``. Resuming from it continues exactly as an uninterrupted run.

``load_state_dict(..., strict=True)`` (the default) raises on missing or unexpected keys: a
different architecture does not load silently. ``strict=False`` loads the keys that match and
reports the rest; a key present in both with a different *shape* raises either way. 002 Q40 loads
into a ``SimpleFeedForward`` that is defined nowhere, while its ``model`` (from Q38) is a ViT whose
state_dict would not fit one anyway (catalog B32).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from impl.techniques.registry import Category, register_technique

PathLike = str | os.PathLike[str]


def save_weights(model: nn.Module, path: PathLike) -> None:
    """``torch.save(model.state_dict(), path)`` (002 Q64): the weights and buffers only."""
    torch.save(model.state_dict(), path)


def load_weights(model: nn.Module, path: PathLike, *, strict: bool = True) -> nn.Module:
    """Load a state_dict saved by ``save_weights`` into ``model`` (built with the same class and
    sizes) and switch it to eval mode; ``weights_only=True`` and CPU tensors, whatever the saving
    device. Returns the model."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=strict)
    return model.eval()


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int = 0,
    scheduler: Any | None = None,
    **metadata: Any,
) -> None:
    """Everything needed to resume training: model, optimizer (and scheduler) state_dicts, the
    number of epochs done and ``metadata`` (plain values: numbers, strings, lists, dicts; the
    file must stay loadable with ``weights_only=True``)."""
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "epoch": epoch,
            "metadata": metadata,
        },
        path,
    )


def load_checkpoint(
    path: PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore what ``save_checkpoint`` wrote into ``model`` (and ``optimizer``, ``scheduler``);
    returns the checkpoint dict (its "epoch" and "metadata"). The model's train/eval mode is left
    to the caller: resuming training wants ``train()``, inference ``eval()``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"], strict=strict)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    return checkpoint


class BestModelCheckpoint:
    """Save the model's weights whenever the monitored value improves (000 §11.4: keep the best
    validation model, not the last). ``mode="min"`` for a loss, ``"max"`` for an accuracy; an
    improvement must beat the best so far by more than ``min_delta``."""

    def __init__(self, path: PathLike, *, mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.path = Path(path)
        self.mode, self.min_delta = mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value: float, model: nn.Module, epoch: int) -> bool:
        """Record one epoch's value; save and return True if it is the best so far."""
        if not self.improved(value):
            return False
        self.best, self.best_epoch = value, epoch
        save_weights(model, self.path)
        return True


def versioned_path(directory: PathLike, stem: str = "model", suffix: str = ".pth") -> Path:
    """The next free ``{stem}_v{n}{suffix}`` in ``directory`` (002 Q87's naming, v1 first), so a
    new version never overwrites an old one."""
    directory = Path(directory)
    taken = {
        int(p.name[len(stem) + 2 : -len(suffix)])
        for p in directory.glob(f"{stem}_v*{suffix}")
        if p.name[len(stem) + 2 : -len(suffix)].isdigit()
    }
    version = 1
    while version in taken:
        version += 1
    return directory / f"{stem}_v{version}{suffix}"


def save_tensors(path: PathLike, **tensors: Tensor) -> None:
    """Save named tensors (a dataset's ``data`` and ``targets``, say) as a plain dict: loadable
    with ``weights_only=True``, unlike a pickled ``Dataset`` object (002 Q19, catalog B21)."""
    for name, value in tensors.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} is a {type(value).__name__}, not a Tensor")
    torch.save(dict(tensors), path)


def load_tensors(path: PathLike) -> dict[str, Tensor]:
    """Load what ``save_tensors`` wrote, with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True)


register_technique(
    name="checkpointing",
    category=Category.CHECKPOINTING,
    curriculum="001 Q19; 002 Q19, Q40, Q64, Q87; 000 §11.4",
    summary="state_dict save/load (bit-exact), resumable checkpoints, best model, versions, data",
    api="torch.save(model.state_dict()); torch.load(weights_only=True); load_state_dict(strict)",
    bugs=("B21", "B32"),
)
