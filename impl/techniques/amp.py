"""Automatic mixed precision (AMP): autocast for the forward pass, GradScaler for the backward.

Curriculum: 002 Q58 and Q71; catalog §2 row ``amp``, bug B16. Both answers import
``from torch.cuda.amp import GradScaler, autocast``. That API is deprecated: each constructor gives
a FutureWarning. On a machine without CUDA, ``GradScaler()`` turns itself off (``scale(loss)``
returns the loss unchanged) and ``autocast()`` does nothing to CPU tensors, so the seed's loop
quietly trains in float32. The current API names the device:
``torch.amp.autocast(device_type, dtype=...)`` (also spelt ``torch.autocast``) and
``torch.amp.GradScaler(device_type)``.

What autocast does, op by op (https://pytorch.org/docs/stable/amp.html, "Autocast Op Reference"):

- matmul-like ops (``mm``, ``matmul``, ``addmm``, ``bmm``, ``linear``, convolutions) run in the
  autocast dtype: float16 by default on CUDA, bfloat16 on CPU. CPU autocast also works without
  native bfloat16 hardware, where oneDNN emulates it (slowly).
- ops that need range or precision, losses above all (``mse_loss``, ``cross_entropy``,
  ``nll_loss``, ``l1_loss``, ...), run in float32. On CUDA that list also has the reductions and
  the exp/log family (``sum``, ``softmax``, ``log_softmax``, ``exp``, ``layer_norm``, ...). On CPU
  those are on no list, so they run in whatever dtype their input has.
- ops given inputs of mixed dtypes (``cat``, ``stack``, ``+``) run in the widest of them.
- on CUDA, ``binary_cross_entropy`` (``nn.BCELoss``) is refused as unsafe under autocast; use
  ``binary_cross_entropy_with_logits``.

What GradScaler does (float16 only needs it: float16's smallest subnormal is 2**-24, so small
gradients round to zero; bfloat16 has float32's exponent range and needs no scaling):

- ``scaler.scale(loss)`` is ``loss * scale``, so every gradient of the backward pass is scaled too;
- ``scaler.step(optimizer)`` divides the gradients by the scale (``unscale_``). If any of them is
  inf or NaN it skips ``optimizer.step()`` entirely;
- ``scaler.update()`` multiplies the scale by ``backoff_factor`` (0.5) after a skipped step. After
  ``growth_interval`` (2000) finite steps in a row it multiplies it by ``growth_factor`` (2).
  The scale starts at ``init_scale`` (2**16).

Clip gradients only after ``scaler.unscale_(optimizer)``: clipping scaled gradients would clip
at ``max_norm * scale``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from impl.differentiable import no_gradcheck
from impl.techniques.registry import Category, register_technique

# The autocast dtype each device uses by default, as ``torch.get_autocast_dtype`` reports it.
DEFAULT_AUTOCAST_DTYPE = {"cuda": torch.float16, "cpu": torch.bfloat16}


def grad_scaler(device_type: str, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A GradScaler for autocast in ``dtype`` on ``device_type``. It is enabled for float16 only:
    bfloat16 keeps float32's exponent range, so its gradients do not underflow. A disabled
    scaler's ``scale`` returns the loss as it is and its ``step`` just calls
    ``optimizer.step()``, so one training loop serves both dtypes."""
    return torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)


@no_gradcheck("a training step: it updates the parameters in place and returns a detached loss")
def amp_train_step(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    inputs: Tensor,
    targets: Tensor,
    *,
    device_type: str = "cuda",
    dtype: torch.dtype | None = None,
    max_norm: float | None = None,
) -> Tensor:
    """One mixed-precision training step, the corrected 002 Q58/Q71 loop body; returns the loss.

    ``dtype`` defaults to the device's autocast dtype (float16 on CUDA, bfloat16 on CPU).
    ``max_norm`` clips the total gradient norm after unscaling. A step whose gradients are not
    finite is skipped and the scale backs off (GradScaler's doing).
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.amp.autocast(device_type, dtype=dtype or DEFAULT_AUTOCAST_DTYPE[device_type]):
        outputs = model(inputs)  # linear/conv/matmul layers: float16 (CUDA) or bfloat16 (CPU)
        loss = loss_fn(outputs, targets)  # losses autocast to float32
    # backward outside autocast: each backward op runs in the dtype of its forward op
    scaler.scale(loss).backward()  # loss * scale: the gradients are scaled too
    if max_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)  # unscales (unless done above); skipped if any gradient is inf/NaN
    scaler.update()  # backoff x0.5 after a skip, growth x2 after growth_interval finite steps
    return loss.detach()


register_technique(
    name="amp",
    category=Category.NUMERICS,
    curriculum="002 Q58, Q71",
    summary=(
        "autocast (matmuls in float16/bfloat16, losses in float32) with GradScaler "
        "(scale, skip on inf/NaN, backoff 0.5, growth x2 after 2000 finite steps)"
    ),
    api="torch.amp.autocast(device_type, dtype); torch.amp.GradScaler(device_type)",
    bugs=("B16",),
)
