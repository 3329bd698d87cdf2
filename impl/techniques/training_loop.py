"""The training step, the evaluation loop and transfer learning's choice of what trains.

Curriculum: 003 §1-4 (the six steps of a training loop; test and validation with ``eval``,
``no_grad`` and ``torch.max``), 002 Q27 (the six-step explanation), 001 Q5, Q11, Q18, 002 Q37,
004 L77-88 (gradients accumulate; ``zero_grad``, ``step``), L132-137 (``eval()`` vs ``no_grad``),
L204-210 (the standard process).

The canonical step is ``zero_grad -> forward -> loss -> backward -> step``. Each ``backward()``
*adds* into ``.grad`` (004 L77-80), so without ``zero_grad`` the gradient of the previous batch is
still there: two backward passes give twice the gradient. ``step()`` updates only parameters that
have a gradient.

Evaluation needs two independent switches (004 L132-137):

- ``model.eval()`` changes what Dropout and BatchNorm *compute* (no dropping; running statistics
  instead of the batch's). It does not stop autograd: a backward pass in eval mode computes the
  same gradients as ever. 004 L136 says eval mode "does not backpropagate" (catalog B08); it does.
- ``torch.no_grad()`` stops autograd recording (outputs have ``requires_grad=False``; no graph is
  kept, which saves memory) and changes nothing Dropout or BatchNorm compute.

So evaluation uses both; ``evaluate`` restores the model's previous mode when it is done.
Accuracy is correct / total over all samples, the mean of ``argmax(logits) == label``, on data
the model did not train on: 003 §4's test loop reads a ``test_loader`` it never defines, and §2's
labels are random, so there would be nothing above chance to measure anyway (catalog B49).

Transfer learning (001 Q11, 002 Q37): *feature extraction* freezes the pretrained backbone
(``requires_grad = False``) and trains a new head; *fine-tuning* trains everything.
``prepare_transfer`` does either and returns the parameters to give the optimizer. A frozen
backbone with BatchNorm should also stay in eval mode while the head trains (``set_transfer_mode``),
or its running statistics drift though its parameters do not (see ``impl.models.resnet_transfer``,
the registered ``resnet18_transfer``, which does this itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from impl.techniques.registry import Category, register_technique

LossFn = Callable[[Tensor, Tensor], Tensor]
TransferMode = Literal["feature_extraction", "fine_tuning"]


def train_step(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One canonical training step on one batch; returns the batch's loss (before the step).

    Curriculum: 003 §1-3, 002 Q27, 004 L77-88. Puts nothing in training mode: the caller does,
    once per epoch (``train_one_epoch``).
    """
    optimizer.zero_grad()  # 1. clear the previous batch's gradients (backward adds into .grad)
    outputs = model(inputs)  # 2. forward
    loss = loss_fn(outputs, targets)  # 3. loss
    loss.backward()  # 4. gradients of the loss, into .grad
    optimizer.step()  # 5. update the parameters that have a gradient
    return loss.item()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
) -> float:
    """``model.train()``, then one ``train_step`` per batch; returns the mean loss per *sample*.

    The curriculum (003 §2) reports ``running_loss / len(train_loader)``, the mean of the batch
    means, which over-weights a short last batch; here each batch's loss (a mean over the batch,
    as ``loss_fn`` reduces by default) is weighted by its size.
    """
    model.train()
    total, count = 0.0, 0
    for inputs, targets in loader:
        total += train_step(model, inputs, targets, loss_fn, optimizer) * len(targets)
        count += len(targets)
    return total / count


@dataclass(frozen=True)
class Evaluation:
    loss: float | None  # mean loss per sample, where a loss function was given
    accuracy: float  # correct / total, in [0, 1]
    correct: int
    total: int


def count_correct(logits: Tensor, labels: Tensor) -> int:
    """How many rows of ``logits`` (B, K) have their largest value at ``labels`` (B,).

    ``torch.max(outputs, 1)`` of 003 §4 returns (values, indices); the indices are the argmax.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (B, K) and labels (B,), got {list(logits.shape)}, "
            f"{list(labels.shape)}"
        )
    _, predicted = torch.max(logits, 1)  # (B, K) -> (B,)
    return int((predicted == labels).sum().item())


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    loss_fn: LossFn | None = None,
) -> Evaluation:
    """Accuracy (and mean loss) of a classifier over ``loader``: eval mode, under ``no_grad``.

    Curriculum: 003 §4, 001 Q18, 002 Q26 v2, Q27 v2, Q54. The model's previous training mode is
    restored afterwards, so a training loop can validate between epochs without changing it.
    """
    was_training = model.training
    model.eval()  # Dropout off, BatchNorm on its running statistics
    correct = total = 0
    loss_total = 0.0
    try:
        with torch.no_grad():  # no graph: outputs have requires_grad=False
            for inputs, labels in loader:
                outputs = model(inputs)  # (B, K)
                correct += count_correct(outputs, labels)
                total += len(labels)
                if loss_fn is not None:
                    loss_total += loss_fn(outputs, labels).item() * len(labels)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate needs at least one sample")
    return Evaluation(
        loss=loss_total / total if loss_fn is not None else None,
        accuracy=correct / total,
        correct=correct,
        total=total,
    )


def prepare_transfer(
    model: nn.Module,
    num_classes: int,
    *,
    mode: TransferMode = "feature_extraction",
    head: str = "fc",
) -> list[nn.Parameter]:
    """Replace ``model.<head>`` (a Linear) by a new ``Linear(in_features, num_classes)`` and
    return the parameters to optimise: the head's alone (feature extraction; every other
    parameter gets ``requires_grad=False``) or all of them (fine-tuning).

    Curriculum: 001 Q11 (``param.requires_grad = False`` for all, ``model.fc = nn.Linear(num_ftrs,
    2)``, ``optim.SGD(model.fc.parameters(), lr=0.001, momentum=0.9)``), 002 Q37.
    """
    old = getattr(model, head)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"model.{head} must be an nn.Linear, got {type(old).__name__}")
    if mode not in ("feature_extraction", "fine_tuning"):
        raise ValueError(f"mode must be 'feature_extraction' or 'fine_tuning', got {mode!r}")
    model.requires_grad_(mode == "fine_tuning")
    setattr(model, head, nn.Linear(old.in_features, num_classes))  # new, trainable
    return [p for p in model.parameters() if p.requires_grad]


def set_transfer_mode(
    model: nn.Module, *, training: bool, mode: TransferMode, head: str = "fc"
) -> nn.Module:
    """``model.train(training)``, except that in feature extraction the frozen backbone stays in
    eval mode (its BatchNorm running statistics stay put; only the head is in training mode)."""
    model.train(training)
    if mode == "feature_extraction":
        model.eval()
        getattr(model, head).train(training)
    return model


register_technique(
    name="train_step_canonical",
    category=Category.TRAINING,
    curriculum="003 §1-3; 002 Q27; 001 Q5; 004 L77-88, L204-210",
    summary="zero_grad -> forward -> loss -> backward -> step; backward accumulates into .grad",
    api="optimizer.zero_grad(), loss.backward(), optimizer.step()",
)

register_technique(
    name="eval_protocol",
    category=Category.TRAINING,
    curriculum="003 §4; 001 Q18; 002 Q26 v2, Q27 v2, Q54; 004 L132-137",
    summary="model.eval() and torch.no_grad() together; accuracy = correct / total; eval() still "
    "backpropagates (B08)",
    api="nn.Module.eval(), torch.no_grad(), torch.max(outputs, 1)",
    bugs=("B08", "B49"),
)

register_technique(
    name="transfer_learning",
    category=Category.TRAINING,
    curriculum="001 Q11; 002 Q37",
    summary="feature extraction (frozen backbone, new head; backbone kept in eval) vs "
    "fine-tuning (everything trains)",
    api="param.requires_grad = False; replace model.fc; optimizer over the head's parameters",
    also_in=("impl.models.resnet_transfer",),
)
