"""focal_loss: the corrected binary focal loss (curriculum 002 Q29; catalog B13) against
torchvision's, and the curriculum's version beside it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import sigmoid_focal_loss as torchvision_focal_loss

from impl.techniques.focal_loss import FocalLoss, sigmoid_focal_loss


class CurriculumFocalLossQ29(nn.Module):
    """002 Q29 v1 as written (v2 is empty): the weight uses p, the probability of the positive
    class, where the paper uses p_t, and a constant alpha where it uses alpha_t."""

    def __init__(self, gamma=2, alpha=0.25):
        super(CurriculumFocalLossQ29, self).__init__()  # noqa: UP008 (the seed's)
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits, targets):
        bce_loss = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        probs = torch.sigmoid(logits)
        focal_weight = self.alpha * (1 - probs) ** self.gamma
        return (focal_weight * bce_loss).mean()


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
def test_focal_loss_matches_torchvision(batch, alpha, gamma, reduction) -> None:
    logits, targets = batch
    ours = sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    theirs = torchvision_focal_loss(
        logits, targets, -1 if alpha is None else alpha, gamma, reduction
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)  # torchvision's own tolerance
    torch.testing.assert_close(FocalLoss(alpha, gamma, reduction)(logits, targets), ours)


@given(batch=logits_and_targets(dtype=torch.float64), alpha=ALPHAS, gamma=st.floats(0.0, 3.0))
@settings(max_examples=10)  # the generated gradcheck covers the default alpha and gamma too
def test_focal_loss_gradcheck_in_float64(batch, alpha, gamma) -> None:
    logits, targets = batch
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: sigmoid_focal_loss(x, targets, alpha, gamma, "sum"), (logits,)
    )


@given(batch=logits_and_targets())
def test_focal_loss_gamma_zero_without_alpha_is_binary_cross_entropy(batch) -> None:
    logits, targets = batch
    torch.testing.assert_close(
        sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0),
        F.binary_cross_entropy_with_logits(logits, targets),
    )


@given(gamma=st.floats(0.0, 5.0), label=st.sampled_from([0.0, 1.0]))
def test_focal_loss_falls_as_the_true_class_gets_likelier(gamma: float, label: float) -> None:
    logits = torch.linspace(-6, 6, 49, dtype=torch.float64)
    if label == 0.0:
        logits = -logits  # so that p_t rises along the sequence for negatives too
    loss = sigmoid_focal_loss(logits, torch.full_like(logits, label), gamma=gamma, reduction="none")
    assert (loss.diff() < 0).all()


def test_focal_loss_rejects_mismatched_shapes_and_bad_reduction() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction must be"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), reduction="avg")  # type: ignore[arg-type]


def test_focal_loss_seed_ignores_hard_negatives_b13() -> None:
    """Catalog B13, figures from the catalog: a confidently wrong negative (logit 5, label 0) costs
    5.6e-5 in the curriculum and 3.70 in the paper's loss; an easy negative (logit -5) 1.7e-3 and
    2.3e-7: the curriculum's weighting is upside down for negatives."""
    seed = CurriculumFocalLossQ29()
    hard, easy, negative = torch.tensor([5.0]), torch.tensor([-5.0]), torch.tensor([0.0])
    assert seed(hard, negative).item() == pytest.approx(5.6e-5, rel=0.02)
    assert sigmoid_focal_loss(hard, negative).item() == pytest.approx(3.70, rel=0.01)
    assert seed(easy, negative).item() == pytest.approx(1.7e-3, rel=0.03)
    assert sigmoid_focal_loss(easy, negative).item() == pytest.approx(2.3e-7, rel=0.05)


@given(logit=st.floats(-8.0, 8.0), gamma=st.floats(0.0, 5.0), alpha=st.floats(0.0, 1.0))
def test_focal_loss_seed_agrees_on_positives_b13(logit: float, gamma: float, alpha: float) -> None:
    """For y = 1, p_t = p and alpha_t = alpha, so the seed's bug is confined to the negatives:
    the seed and torchvision agree on every positive."""
    x, positive = torch.tensor([logit]), torch.tensor([1.0])
    torch.testing.assert_close(
        CurriculumFocalLossQ29(gamma, alpha)(x, positive),
        torchvision_focal_loss(x, positive, alpha, gamma, "mean"),
    )


def test_focal_loss_seed_example_differs_from_the_paper_b13() -> None:
    """002 Q29's own example (logits [0.5, -0.5, 1.5, -1.5], labels [1, 0, 1, 0]): the seed prints
    0.02454, the paper's loss (torchvision's, and ours) is 0.01857 (catalog figures)."""
    logits = torch.tensor([0.5, -0.5, 1.5, -1.5])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert CurriculumFocalLossQ29()(logits, targets).item() == pytest.approx(0.02454, abs=5e-6)
    assert torchvision_focal_loss(logits, targets, reduction="mean").item() == pytest.approx(
        0.01857, abs=5e-6
    )
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(0.01857, abs=5e-6)
