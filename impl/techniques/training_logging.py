"""Training logs: one log-file line per epoch, TensorBoard scalars, and loss-curve plots.

Curriculum: 002 Q61 (``logging.basicConfig(filename="training.log", level=logging.INFO,
format="%(asctime)s - %(levelname)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S")`` and one
``logging.info(f"Epoch {epoch+1}: Train Loss: ..., Val Loss: ...")`` per epoch), 002 Q56 and
000 §11.4 (matplotlib loss curves), 001 Q7 and 002 Q90 (``SummaryWriter``,
``add_scalar("Loss/Train", value, epoch)``, ``add_graph``).

We keep the curriculum's file format and message, with one change of mechanism:
``logging.basicConfig`` configures the *root* logger and does nothing at all when the root logger
already has a handler (documented; Jupyter, pytest and many libraries install one), so the seed's
code can silently write no file. ``file_logger`` gives a named logger its own ``FileHandler``
instead, and does not propagate to the root.

``TrainingLogger`` writes each epoch's metrics to both: the log line
``Epoch 3: Train Loss: 0.1234, Val Loss: 0.2345`` and the TensorBoard scalars ``Loss/train``,
``Loss/val`` at step = epoch. The event file is what ``tensorboard --logdir`` reads; the checks
read it back with tensorboard's own ``EventAccumulator``.

``plot_loss_curves`` draws with matplotlib's object API on an Agg canvas, which needs no display
and leaves pyplot's global state alone (002 Q56 calls ``plt.show()``, which does nothing without
a display).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from impl.techniques.registry import Category, register_technique

LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"  # 002 Q61
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # 002 Q61

PathLike = str | os.PathLike[str]


def file_logger(
    path: PathLike, name: str = "torchgauge.training", level: int = logging.INFO
) -> logging.Logger:
    """A logger writing to ``path`` in 002 Q61's format, whatever the root logger has.

    A second call with the same ``name`` replaces the previous file handler (closing it), so a
    re-run writes to the new file only.
    """
    logger = logging.getLogger(name)
    close_logger(logger)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the root's handlers (a console, pytest's capture) do not repeat it
    return logger


def close_logger(logger: logging.Logger) -> None:
    """Flush, close and remove the logger's handlers."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def epoch_message(epoch: int, metrics: Mapping[str, float]) -> str:
    """``Epoch 3: Train Loss: 0.1234, Val Loss: 0.2345`` for metrics {"train": .., "val": ..}
    (002 Q61's message; epochs count from 1 as there)."""
    parts = [f"{name.capitalize()} Loss: {value:.4f}" for name, value in metrics.items()]
    return f"Epoch {epoch}: " + ", ".join(parts)


class TrainingLogger:
    """Per-epoch metrics to a log file (one line per epoch) and/or a TensorBoard run directory
    (one scalar series ``Loss/<name>`` per metric), and kept in ``history`` for plots.

    Use as a context manager, or call ``close()``: the event file is complete only once the
    writer is flushed.
    """

    def __init__(
        self,
        *,
        log_file: PathLike | None = None,
        tensorboard_dir: PathLike | None = None,
        name: str = "torchgauge.training",
    ) -> None:
        self.logger = None if log_file is None else file_logger(log_file, name)
        self.writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only if used

            self.writer = SummaryWriter(str(tensorboard_dir))
        self.history: dict[str, list[float]] = {}

    def log_epoch(self, epoch: int, **metrics: float) -> str:
        """Record one epoch (``epoch`` from 1); returns the log line's message."""
        message = epoch_message(epoch, metrics)
        if self.logger is not None:
            self.logger.info(message)
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(float(value))
            if self.writer is not None:
                self.writer.add_scalar(f"Loss/{name}", float(value), epoch)
        return message

    def add_graph(self, model: Any, example_input: Any) -> None:
        """The model's graph for TensorBoard's Graphs tab (002 Q90), traced on one input."""
        if self.writer is None:
            raise RuntimeError("add_graph needs a tensorboard_dir")
        self.writer.add_graph(model, example_input)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # flushes the event file
        if self.logger is not None:
            close_logger(self.logger)

    def __enter__(self) -> TrainingLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plot_loss_curves(
    history: Mapping[str, Sequence[float]], path: PathLike, *, title: str = "Loss"
) -> Path:
    """Draw each series against epochs 1..n to a PNG with the Agg backend; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in history.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", label=name)
    axes.set(xlabel="epoch", ylabel="loss", title=title)
    axes.legend()
    figure.savefig(path, format="png")
    return Path(path)


register_technique(
    name="training_logging",
    category=Category.CHECKPOINTING,
    curriculum="002 Q61, Q56, Q90; 001 Q7; 000 §11.4",
    summary="one log line per epoch (Q61's format), TensorBoard scalars, Agg loss-curve PNGs",
    api="logging.FileHandler; torch.utils.tensorboard.SummaryWriter.add_scalar; matplotlib Agg",
)
