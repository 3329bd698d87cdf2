"""The corrected binary focal loss (curriculum 002 Q29; catalog B13) against torchvision's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import sigmoid_focal_loss as torchvision_focal_loss

from impl.techniques.focal_loss import FocalLoss, sigmoid_focal_loss


@st.composite
def logits_and_targets(draw: st.DrawFn, dtype: torch.dtype = torch.float32):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = torch.randn(shape, generator=generator, dtype=dtype) * draw(st.floats(0.1, 8.0))
    targets = torch.randint(0, 2, shape, generator=generator).to(dtype)
    return logits, targets


ALPHAS = st.one_of(st.none(), st.floats(0.0, 1.0))
GAMMAS = st.floats(0.0, 5.0)
REDUCTIONS = st.sampled_from(["none", "mean", "sum"])


@given(batch=logits_and_targets(), alpha=ALPHAS, gamma=GAMMAS, reduction=REDUCTIONS)
def test_matches_torchvision(batch, alpha, gamma, reduction) -> None:
    logits, targets = batch
    ours = sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    theirs = torchvision_focal_loss(
        logits, targets, -1 if alpha is None else alpha, gamma, reduction
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)  # torchvision's own tolerance
    torch.testing.assert_close(FocalLoss(alpha, gamma, reduction)(logits, targets), ours)


@given(batch=logits_and_targets(dtype=torch.float64), alpha=ALPHAS, gamma=st.floats(0.0, 3.0))
def test_gradcheck_in_float64(batch, alpha, gamma) -> None:
    logits, targets = batch
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: sigmoid_focal_loss(x, targets, alpha, gamma, "sum"), (logits,)
    )


@given(batch=logits_and_targets())
def test_gamma_zero_without_alpha_is_binary_cross_entropy(batch) -> None:
    logits, targets = batch
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0),
        F.binary_cross_entropy_with_logits(logits, targets),
    )


@given(gamma=st.floats(0.0, 5.0), label=st.sampled_from([0.0, 1.0]))
def test_loss_falls_as_the_true_class_gets_likelier(gamma: float, label: float) -> None:
    logits = torch.linspace(-6, 6, 49, dtype=torch.float64)
    if label == 0.0:
        logits = -logits  # so that p_t rises along the sequence for negatives too
    loss = sigmoid_focal_loss(logits, torch.full_like(logits, label), gamma=gamma, reduction="none")
    assert (loss.diff() < 0).all()


def test_rejects_mismatched_shapes_and_bad_reduction() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction must be"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), reduction="avg")  # type: ignore[arg-type]
