"""What a model predicts and how it is scored: the output contract and the tasks.

A model's output is one tensor, a tuple of tensors or a mapping of names to tensors, each with the
batch on dim 0. A task (classification, binary, regression, language modelling) gives a model its
default loss, random targets that fit its output, and what a correct prediction is, so that the
checks and benchmarks generated from the registry work for every task alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from impl.differentiable import gradcheck_function, no_gradcheck, randn

# What a model returns: one tensor, a tuple of tensors, or a mapping of names to tensors; every
# tensor has the batch on dim 0. ``output_shape`` declares shapes with the same structure.
Output = Tensor | tuple[Tensor, ...] | Mapping[str, Tensor]
Shape = tuple[int, ...]
# Label that a per-token loss ignores: padding, and the last position of a language model's batch
IGNORE_INDEX = -100


def output_tensors(output: Output) -> dict[str, Tensor]:
    """A model's output as named tensors: ``{"": t}`` for one tensor, ``{"0": .., "1": ..}`` for a
    tuple, the mapping itself for a mapping. Checks and benchmarks treat every output alike."""
    if isinstance(output, Tensor):
        return {"": output}
    if isinstance(output, Mapping):
        return dict(output)
    return {str(i): t for i, t in enumerate(output)}


def map_outputs(fn: Callable[[Tensor], Tensor], output: Output) -> Output:
    """``fn`` applied to every tensor of an output, keeping its structure."""
    if isinstance(output, Tensor):
        return fn(output)
    if isinstance(output, Mapping):
        return {name: fn(t) for name, t in output.items()}
    return tuple(fn(t) for t in output)


def max_abs_diff(output: Output, reference: Output) -> float:
    """The largest absolute difference between two outputs of the same structure, in float32."""
    pairs = zip(output_tensors(output).values(), output_tensors(reference).values(), strict=True)
    return max(float((a.float().cpu() - b.float().cpu()).abs().max()) for a, b in pairs)


def output_shapes(shape: Shape | tuple[Shape, ...] | Mapping[str, Shape]) -> dict[str, Shape]:
    """A declared ``output_shape`` named like ``output_tensors`` names the output."""
    if isinstance(shape, Mapping):
        return {name: tuple(s) for name, s in shape.items()}
    if all(isinstance(d, int) for d in shape):
        return {"": tuple(shape)}
    return {str(i): tuple(s) for i, s in enumerate(shape)}


def class_logits_shape(cfg: Any, batch_size: int, **dims: int) -> tuple[int, int]:
    """The output shape of every classifier: logits (B, cfg.num_classes)."""
    return (batch_size, cfg.num_classes)


def scalar_shape(cfg: Any, batch_size: int, **dims: int) -> tuple[int, int]:
    """The output shape of a regression or binary head: one value per sample (B, 1)."""
    return (batch_size, 1)


@no_gradcheck("random integer class labels: a target maker, not differentiable")
def class_targets(cfg: Any, inputs: tuple[Tensor, ...], shape: Shape, generator) -> Tensor:
    """Random class labels (B,) in [0, K) for logits of shape (B, K)."""
    return torch.randint(shape[-1], shape[:-1], generator=generator)


@no_gradcheck(
    "random {0, 1} labels drawn from a generator: a target maker, nothing to differentiate"
)
def binary_targets(cfg: Any, inputs: tuple[Tensor, ...], shape: Shape, generator) -> Tensor:
    """Random {0., 1.} labels shaped like the logits."""
    return torch.randint(2, shape, generator=generator).float()


@no_gradcheck(
    "random targets drawn from a generator, independent of any input: nothing to differentiate"
)
def regression_targets(cfg: Any, inputs: tuple[Tensor, ...], shape: Shape, generator) -> Tensor:
    """Standard normal targets shaped like the output."""
    return torch.randn(shape, generator=generator)


@no_gradcheck("integer token ids in, integer labels out: a target maker, not differentiable")
def next_token_targets(cfg: Any, inputs: tuple[Tensor, ...], shape: Shape, generator) -> Tensor:
    """Teacher forcing: the label at step t is the last input's token t + 1 (for a seq2seq model
    the last input is the target sequence). Padding, and the final step, which has no next
    token, get ``IGNORE_INDEX``. Token ids (B, T) right-padded with ``cfg.pad_token`` -> (B, T)."""
    ids = inputs[-1]
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = ids[:, 1:]
    return labels.masked_fill(labels == cfg.pad_token, IGNORE_INDEX)


def _token_logits_and_labels(generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Logits (2, 3, 4) and labels (2, 3) with the last step ignored, as a language model has."""
    labels = torch.randint(0, 4, (2, 3), generator=generator)
    labels[:, -1] = IGNORE_INDEX
    return randn(generator, 2, 3, 4), labels


@gradcheck_function(_token_logits_and_labels, wrt=(0,))
def token_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross entropy over the labelled tokens: logits (B, T, V), labels (B, T)."""
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX)


@dataclass(frozen=True)
class Task:
    """What a model predicts: its loss, random targets for it, and what a correct prediction is.

    ``targets(cfg, inputs, shape, generator)`` gets the example inputs and the declared output
    shape; ``correct(prediction, targets)`` is True where a prediction is right, per target (None
    for regression, where only the loss says how close)."""

    name: str
    summary: str
    loss: Callable[[Tensor, Tensor], Tensor]
    targets: Callable[[Any, tuple[Tensor, ...], Shape, torch.Generator], Tensor]
    correct: Callable[[Tensor, Tensor], Tensor] | None = None


CLASSIFICATION = Task(
    "classification",
    "class logits (B, K); cross entropy",
    F.cross_entropy,
    class_targets,
    lambda logits, labels: logits.argmax(dim=-1) == labels,
)
BINARY = Task(
    "binary",
    "one logit per sample (B, 1); binary cross entropy with logits",
    F.binary_cross_entropy_with_logits,
    binary_targets,
    lambda logits, labels: (logits > 0) == (labels > 0.5),
)
REGRESSION = Task("regression", "real values; mean squared error", F.mse_loss, regression_targets)
LANGUAGE_MODEL = Task(
    "language_model",
    "next-token logits (B, T, V); cross entropy over real tokens, padding ignored",
    token_cross_entropy,
    next_token_targets,
    lambda logits, labels: (logits.argmax(dim=-1) == labels) | (labels == IGNORE_INDEX),
)
# Per-pixel masks: a model scores each pixel of each class as a binary question (multi-label).
# The default targets are random masks; a model with a scene generator declares its own.
SEGMENTATION = Task(
    "segmentation",
    "per-pixel logits (B, K, H, W), one binary mask per class; binary cross entropy with logits",
    F.binary_cross_entropy_with_logits,
    binary_targets,
    lambda logits, masks: (logits > 0) == (masks > 0.5),
)


def _declared_by_the_detector(*args: Any) -> Tensor:
    raise TypeError("a detection model declares its own targets and loss")


# Detectors: what they output (a grid of boxes, objectness and classes per scale, or region
# losses and padded detections) and how it is scored differ by architecture, so a detection model
# declares its targets (decoded from the synthetic scenes) and its loss; there is no default.
DETECTION = Task(
    "detection",
    "boxes, objectness and classes (grids per scale, or region losses and padded detections); "
    "the model's own targets and loss",
    _declared_by_the_detector,
    _declared_by_the_detector,
)
TASKS = {
    task.name: task
    for task in (CLASSIFICATION, BINARY, REGRESSION, LANGUAGE_MODEL, SEGMENTATION, DETECTION)
}
