"""A command-line training *and testing* script: ``python -m impl.techniques.training_script``.

Curriculum: 002 Q62, "a complete training and testing script with command-line arguments":
``--epochs`` (int, default 10) and ``--lr`` (float, default 0.01) through ``argparse``, a
``Linear(1, 1)`` fitted to y = 2x + 3 + 0.1 noise on 100 points x ~ N(0, 1) with MSE and SGD,
one printed line per epoch. The seed has no test phase at all (catalog B34): it trains on all
100 points and reports the training loss only. Here the points are split (seeded) into train,
validation and test parts; each epoch prints the training loss and the validation loss, and after
the last epoch the model is evaluated once, in eval mode without gradients, on the test points it
never saw. Optional outputs: a log file (002 Q61's format), a TensorBoard run, the weights and a
JSON summary.

    python -m impl.techniques.training_script --epochs 3 --lr 0.1
    Epoch 1/3, Train Loss: 9.1234, Val Loss: 8.7654
    ...
    Test Loss: 6.5432

The module only defines things; ``main`` runs from the ``__main__`` guard (importing this file
trains nothing, unlike the module-level code of catalog B62).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.techniques.checkpointing import save_weights
from impl.techniques.registry import Category, register_technique
from impl.techniques.training_logging import TrainingLogger

N_POINTS = 100  # 002 Q62


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must lie in (0, 0.5), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m impl.techniques.training_script",
        description="Train a 1-D linear regression (002 Q62) and test it on held-out points.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=positive_int, default=10, help="Number of epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="Learning rate (SGD)")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data, split and init")
    parser.add_argument(
        "--holdout", type=fraction, default=0.2, help="Fraction of points for each of val and test"
    )
    parser.add_argument("--log-file", type=Path, help="Write one line per epoch here")
    parser.add_argument("--tensorboard", type=Path, help="TensorBoard run directory")
    parser.add_argument("--checkpoint", type=Path, help="Save the trained weights here")
    parser.add_argument("--metrics", type=Path, help="Write the losses here as JSON")
    return parser


def make_data(seed: int, n: int = N_POINTS) -> tuple[Tensor, Tensor]:
    """002 Q62's data from a seeded generator: x ~ N(0, 1) (n, 1), y = 2x + 3 + 0.1 noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    return x, 2 * x + 3 + 0.1 * torch.randn(n, 1, generator=g)


def split_indices(n: int, holdout: float, seed: int) -> dict[str, Tensor]:
    """A seeded permutation of range(n) cut into disjoint "train", "val" and "test" indices,
    val and test each ``round(holdout * n)`` long, at least 1, and at most (n - 1) // 2 so that
    at least one point trains (n >= 3)."""
    if n < 3:
        raise ValueError(f"need at least 3 points for train, val and test, got {n}")
    k = min(max(1, round(holdout * n)), (n - 1) // 2)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    return {"test": order[:k], "val": order[k : 2 * k], "train": order[2 * k :]}


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Mean squared error in eval mode, without building a graph."""
    model.eval()
    return F.mse_loss(model(x), y).item()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    x, y = make_data(args.seed)
    parts = split_indices(len(x), args.holdout, args.seed)
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = (
        (x[parts[k]], y[parts[k]]) for k in ("train", "val", "test")
    )
    model = nn.Linear(1, 1)  # 002 Q62's SimpleModel(1, 1) is one Linear
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    history: dict[str, list[float]] = {"train": [], "val": []}
    with TrainingLogger(log_file=args.log_file, tensorboard_dir=args.tensorboard) as log:
        for epoch in range(1, args.epochs + 1):
            model.train()
            loss = F.mse_loss(model(x_tr), y_tr)  # full batch, as the seed
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss, val_loss = loss.item(), evaluate(model, x_val, y_val)
            history["train"].append(train_loss)
            history["val"].append(val_loss)
            log.log_epoch(epoch, train=train_loss, val=val_loss)
            print(
                f"Epoch {epoch}/{args.epochs}, Train Loss: {train_loss:.4f}, "
                f"Val Loss: {val_loss:.4f}",
                flush=True,
            )
    test_loss = evaluate(model, x_te, y_te)  # once, after training: the test phase
    print(f"Test Loss: {test_loss:.4f}", flush=True)
    if args.checkpoint is not None:
        save_weights(model, args.checkpoint)
    if args.metrics is not None:
        summary = {"epochs": args.epochs, "lr": args.lr, **history, "test": test_loss}
        args.metrics.write_text(json.dumps(summary, indent=2))
    return 0


# Run as ``python -m``, this file is ``__main__``, and ``impl.techniques.training_script`` holds the
# declaration (the registry imports it under that name): declare once, from the real module.
if __name__ != "__main__":
    register_technique(
        name="cli_script",
        category=Category.CHECKPOINTING,
        curriculum="002 Q62",
        summary="argparse training script (--epochs, --lr) with a held-out test phase",
        api="argparse.ArgumentParser; python -m impl.techniques.training_script",
        bugs=("B34",),
    )


if __name__ == "__main__":
    sys.exit(main())
