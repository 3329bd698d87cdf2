"""Losses: PyTorch's standard losses against their formulas (losses_basic), class-weighted cross
entropy (class_weighted_ce), 002 Q39's custom loss (custom_loss_mse_plus_l1) and class-balanced
sampling (imbalance_resampling); the curriculum's wrong pairings (B18, B51, B65) beside ours."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from sklearn.utils.class_weight import compute_class_weight
from torch import Tensor, nn
from torch.distributions import Categorical, kl_divergence
from torch.utils.data import DataLoader, Dataset, RandomSampler

from impl.techniques.losses import (
    MSEPlusL1Loss,
    balanced_sampler,
    cross_entropy,
    inverse_frequency_weights,
    mse_plus_l1_loss,
    nll_loss,
    undersample_indices,
)

SEEDS = st.integers(0, 2**31 - 1)
REDUCTIONS = st.sampled_from(["none", "mean", "sum"])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def labels(g: torch.Generator, n: int, k: int) -> Tensor:
    return torch.randint(0, k, (n,), generator=g)


def signs(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).double() * 2 - 1


# --------------------------------------------------------------- the curriculum's versions


def curriculum_q8_example() -> float:
    """001 Q8's example as written: CrossEntropyLoss on logits (this part of the seed is right)."""
    output = torch.tensor([[2.0, 0.5, 1.0], [0.1, 1.0, 2.1]], requires_grad=True)
    target = torch.tensor([0, 2])
    criterion = nn.CrossEntropyLoss()
    loss = criterion(output, target)
    return loss.item()


def curriculum_q8_ce_on_softmax(logits: Tensor, targets: Tensor) -> Tensor:
    """001 Q8's prose: cross entropy "suits probability outputs (after a softmax activation)"
    ("適合於概率輸出（如 softmax 激活後）"): a softmax, then nn.CrossEntropyLoss."""
    return nn.CrossEntropyLoss()(torch.softmax(logits, dim=1), targets)


def curriculum_q8_nll_on_softmax(logits: Tensor, targets: Tensor) -> Tensor:
    """001 Q8's prose: nn.NLLLoss "is used with softmax, combined with CrossEntropyLoss"
    ("與 `CrossEntropyLoss` 結合 softmax 使用"): nn.NLLLoss fed softmax output."""
    return nn.NLLLoss()(torch.softmax(logits, dim=1), targets)


class CurriculumSoftmaxHeadQ28(nn.Module):
    """002 Q28 table: nn.Softmax(dim=1) "must be used with cross entropy"
    ("必須配合交叉熵損失使用"): a classifier whose last layer is ``nn.Softmax(dim=1)``, trained
    with nn.CrossEntropyLoss. Here the layer before the softmax is the identity, so the logits
    are the input."""

    def __init__(self):
        super().__init__()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(x)


def curriculum_nll_004(out: Tensor, c: Tensor) -> Tensor:
    """004 L276-277 as written: ``NLL = -sum(log(out_i[c_i]))``, summed over the N samples, with
    ``out`` the softmax probabilities."""
    return -sum(torch.log(out[i][c[i]]) for i in range(len(c)))


def curriculum_q13_weighted_loss() -> float:
    """001 Q13's example as written: class weights [0.1, 0.9] for a 90%/10% imbalance."""
    class_weights = torch.tensor([0.1, 0.9])
    criterion = nn.CrossEntropyLoss(weight=class_weights)
    output = torch.tensor([[2.0, 0.5], [0.1, 1.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    loss = criterion(output, target)
    return loss.item()


class CurriculumCustomLossQ39(nn.Module):
    """002 Q39 as written."""

    def __init__(self):
        super(CurriculumCustomLossQ39, self).__init__()  # noqa: UP008 (the seed's)

    def forward(self, predictions, targets):
        return torch.mean((predictions - targets) ** 2 + torch.abs(predictions - targets))


class CurriculumImbalancedDatasetQ20(Dataset):
    """002 Q20 as written."""

    def __init__(self, data, labels):
        self.data = data
        self.labels = labels

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        return self.data[idx], self.labels[idx]


def curriculum_balanced_collate_fn_q20(batch):
    """002 Q20 as written: oversample every label of the batch up to the batch's largest count."""
    data, labels = zip(*batch, strict=True)
    label_counts = Counter(labels)
    max_count = max(label_counts.values())
    balanced_data, balanced_labels = [], []

    for label, count in label_counts.items():  # noqa: B007 (the seed's)
        label_data = [data[i] for i in range(len(labels)) if labels[i] == label]
        label_labels = [label] * len(label_data)
        extra = random.choices(label_data, k=max_count - len(label_data))
        balanced_data.extend(label_data + extra)
        balanced_labels.extend(label_labels + [label] * len(extra))

    return torch.stack(balanced_data), torch.tensor(balanced_labels)


# ------------------------------------------------------------------------- losses_basic


@dataclass(frozen=True)
class Formula:
    """A PyTorch loss and its textbook formula, on inputs ``make(generator, n, c)``."""

    loss: Callable[..., Tensor]
    formula: Callable[..., Tensor]
    make: Callable[[torch.Generator, int, int], tuple[Tensor, ...]]


def _regression(g, n, c):
    return randn(g, n, c, scale=2.0), randn(g, n, c)  # residuals on both sides of β and δ


def _classes(g, n, c):
    return randn(g, n, c, scale=2.0), labels(g, n, c)


def _binary_probs(g, n, c):
    return torch.sigmoid(randn(g, n, c, scale=2.0)), torch.rand(n, c, generator=g).double()


def _binary_logits(g, n, c):
    return randn(g, n, c, scale=2.0), torch.randint(0, 2, (n, c), generator=g).double()


def _rank(g, n, c):
    return randn(g, n), randn(g, n), signs(g, n)


def _log_q_and_p(g, n, c):
    return F.log_softmax(randn(g, n, c), dim=1), F.softmax(randn(g, n, c), dim=1)


def _pairs(g, n, c):
    return randn(g, n, c), randn(g, n, c), signs(g, n)


def _hinge(g, n, c):
    return randn(g, n, c, scale=2.0), signs(g, n, c)


def _triplets(g, n, c):
    return randn(g, n, c), randn(g, n, c), randn(g, n, c)


def _counts(g, n, c):
    return randn(g, n, c), torch.randint(0, 6, (n, c), generator=g).double()


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(1) / (a.square().sum(1).sqrt() * b.square().sum(1).sqrt())


def _distance(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).square().sum(1).sqrt()


def _log_sigmoid(x: Tensor) -> Tensor:
    return torch.log(1 / (1 + torch.exp(-x)))


FORMULAS: dict[str, Formula] = {
    "MSELoss": Formula(nn.MSELoss(), lambda x, y: ((x - y) ** 2).mean(), _regression),
    "L1Loss": Formula(nn.L1Loss(), lambda x, y: (x - y).abs().mean(), _regression),
    "CrossEntropyLoss": Formula(
        nn.CrossEntropyLoss(),
        lambda x, y: (torch.log(torch.exp(x).sum(1)) - x[torch.arange(len(y)), y]).mean(),
        _classes,
    ),
    "NLLLoss": Formula(
        nn.NLLLoss(),
        lambda logp, y: -logp[torch.arange(len(y)), y].mean(),
        lambda g, n, c: (F.log_softmax(randn(g, n, c), dim=1), labels(g, n, c)),
    ),
    "BCELoss": Formula(
        nn.BCELoss(),
        lambda p, y: -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean(),
        _binary_probs,
    ),
    "BCEWithLogitsLoss": Formula(
        nn.BCEWithLogitsLoss(),
        lambda x, y: -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x)).mean(),
        _binary_logits,
    ),
    "SmoothL1Loss": Formula(
        nn.SmoothL1Loss(beta=0.7),
        lambda x, y: torch.where(
            (x - y).abs() < 0.7, 0.5 * (x - y) ** 2 / 0.7, (x - y).abs() - 0.35
        ).mean(),
        _regression,
    ),
    "HuberLoss": Formula(
        nn.HuberLoss(delta=1.5),
        lambda x, y: torch.where(
            (x - y).abs() < 1.5, 0.5 * (x - y) ** 2, 1.5 * ((x - y).abs() - 0.75)
        ).mean(),
        _regression,
    ),
    "MarginRankingLoss": Formula(
        nn.MarginRankingLoss(margin=0.3),
        lambda a, b, y: torch.clamp(-y * (a - b) + 0.3, min=0).mean(),
        _rank,
    ),
    "KLDivLoss": Formula(
        nn.KLDivLoss(reduction="batchmean"),
        lambda log_q, p: (p * (torch.log(p) - log_q)).sum() / len(p),
        _log_q_and_p,
    ),
    "CosineEmbeddingLoss": Formula(
        nn.CosineEmbeddingLoss(margin=0.2),
        lambda a, b, y: torch.where(
            y > 0, 1 - _cosine(a, b), torch.clamp(_cosine(a, b) - 0.2, min=0)
        ).mean(),
        _pairs,
    ),
    "HingeEmbeddingLoss": Formula(
        nn.HingeEmbeddingLoss(margin=1.0),
        lambda x, y: torch.where(y > 0, x, torch.clamp(1.0 - x, min=0)).mean(),
        _hinge,
    ),
    "TripletMarginLoss": Formula(
        nn.TripletMarginLoss(margin=1.0),
        lambda a, p, n: torch.clamp(_distance(a, p) - _distance(a, n) + 1.0, min=0).mean(),
        _triplets,
    ),
    "MultiLabelSoftMarginLoss": Formula(
        nn.MultiLabelSoftMarginLoss(),
        lambda x, y: -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x)).mean(1).mean(),
        _binary_logits,
    ),
    "PoissonNLLLoss": Formula(
        nn.PoissonNLLLoss(log_input=True), lambda x, y: (torch.exp(x) - y * x).mean(), _counts
    ),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(2, 5))
@settings(max_examples=10)
def test_losses_basic_matches_its_formula(name: str, seed: int, n: int, c: int) -> None:
    """Catalog §2 losses_basic: every loss of 001 Q8 and 002 Q29's table equals its textbook
    formula on random float64 inputs (TripletMarginLoss adds eps=1e-6 inside its distances,
    hence atol 1e-5)."""
    case = FORMULAS[name]
    inputs = case.make(gen(seed), n, c)
    torch.testing.assert_close(case.loss(*inputs), case.formula(*inputs), rtol=1e-7, atol=1e-5)


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(2, 5), extra=st.integers(0, 2))
def test_losses_basic_cross_entropy_is_nll_of_log_softmax(seed, n, c, extra) -> None:
    """004 L113-118: LogSoftmax + NLLLoss = CrossEntropyLoss, on (N, C) and (N, C, d1, ...)."""
    g = gen(seed)
    dims = (3,) * extra
    logits, targets = randn(g, n, c, *dims, scale=3.0), torch.randint(0, c, (n, *dims), generator=g)
    expected = nn.CrossEntropyLoss()(logits, targets)
    torch.testing.assert_close(nn.NLLLoss()(nn.LogSoftmax(dim=1)(logits), targets), expected)
    torch.testing.assert_close(nll_loss(F.log_softmax(logits, dim=1), targets), expected)
    torch.testing.assert_close(cross_entropy(logits, targets), expected)


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(2, 5), reduction=REDUCTIONS)
def test_losses_basic_ours_equal_torch_for_every_reduction(seed, n, c, reduction) -> None:
    g = gen(seed)
    logits, targets = randn(g, n, c, scale=3.0), labels(g, n, c)
    torch.testing.assert_close(
        cross_entropy(logits, targets, reduction=reduction),
        F.cross_entropy(logits, targets, reduction=reduction),
    )
    log_probs = F.log_softmax(logits, dim=1)
    torch.testing.assert_close(
        nll_loss(log_probs, targets, reduction=reduction),
        F.nll_loss(log_probs, targets, reduction=reduction),
    )


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(1, 5))
def test_losses_basic_bce_with_logits_is_bce_of_sigmoid(seed, n, c) -> None:
    x, y = _binary_logits(gen(seed), n, c)
    torch.testing.assert_close(
        nn.BCEWithLogitsLoss()(x, y), nn.BCELoss()(torch.sigmoid(x), y), rtol=1e-7, atol=1e-12
    )


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(1, 5))
def test_losses_basic_huber_delta_1_is_smooth_l1_beta_1(seed, n, c) -> None:
    x, y = _regression(gen(seed), n, c)
    torch.testing.assert_close(nn.HuberLoss(delta=1.0)(x, y), nn.SmoothL1Loss(beta=1.0)(x, y))


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(2, 5))
def test_losses_basic_kl_div_takes_log_probabilities(seed, n, c) -> None:
    """KLDivLoss(input, target) is KL(target ‖ input) with the input as *log*-probabilities:
    batchmean equals torch.distributions.kl_divergence; the probabilities themselves give a
    different number (one that can even be negative)."""
    log_q, p = _log_q_and_p(gen(seed), n, c)
    expected = kl_divergence(Categorical(probs=p), Categorical(logits=log_q)).mean()
    kl = nn.KLDivLoss(reduction="batchmean")
    torch.testing.assert_close(kl(log_q, p), expected)
    assert not torch.isclose(kl(log_q.exp(), p), expected)


CTC_LENGTHS = st.lists(st.tuples(st.integers(1, 8), st.integers(1, 3)), min_size=1, max_size=4)


def _ctc_batch(seed: int, lengths: list[tuple[int, int]], classes: int = 5):
    """(T=8, N, C) log-probabilities, targets (N, 3) in 1..C-1 (0 is the blank), and lengths; each
    target is no longer than half its input, so that every alignment exists."""
    g = gen(seed)
    log_probs = F.log_softmax(randn(g, 8, len(lengths), classes), dim=2)
    targets = torch.randint(1, classes, (len(lengths), 3), generator=g)
    input_lengths = torch.tensor([max(t, 2 * s) for t, s in lengths])
    target_lengths = torch.tensor([s for _, s in lengths])
    return log_probs, targets, input_lengths, target_lengths


@given(seed=SEEDS, lengths=CTC_LENGTHS)
def test_losses_basic_ctc_runs_on_variable_lengths(seed, lengths) -> None:
    """CTCLoss on a batch of different input and target lengths: each sample's loss is finite and
    equals that sample alone, cropped to its lengths (what lies beyond them is never read)."""
    log_probs, targets, input_lengths, target_lengths = _ctc_batch(seed, lengths)
    batch = nn.CTCLoss(reduction="none")(log_probs, targets, input_lengths, target_lengths)
    assert torch.isfinite(batch).all()
    for i, (t, s) in enumerate(zip(input_lengths.tolist(), target_lengths.tolist(), strict=True)):
        alone = nn.CTCLoss(reduction="none")(
            log_probs[:t, i : i + 1], targets[i : i + 1, :s], torch.tensor([t]), torch.tensor([s])
        )
        torch.testing.assert_close(batch[i : i + 1], alone)


@given(seed=SEEDS, lengths=CTC_LENGTHS)
def test_losses_basic_ctc_mean_divides_by_target_lengths(seed, lengths) -> None:
    """CTCLoss's documented "mean": each loss divided by its target length, then the batch mean."""
    log_probs, targets, input_lengths, target_lengths = _ctc_batch(seed, lengths)
    none = nn.CTCLoss(reduction="none")(log_probs, targets, input_lengths, target_lengths)
    torch.testing.assert_close(
        nn.CTCLoss()(log_probs, targets, input_lengths, target_lengths),
        (none / target_lengths).mean(),
    )


@given(seed=SEEDS, label=st.integers(1, 4))
def test_losses_basic_ctc_is_the_sum_over_alignments(seed, label) -> None:
    """Two frames, a one-symbol target a: the alignments are (a, a), (a, -), (-, a), so
    CTC = -log(p0[a] p1[a] + p0[a] p1[-] + p0[-] p1[a])."""
    log_probs = F.log_softmax(randn(gen(seed), 2, 1, 5), dim=2)
    p0, p1 = log_probs[0, 0].exp(), log_probs[1, 0].exp()
    expected = -torch.log(p0[label] * p1[label] + p0[label] * p1[0] + p0[0] * p1[label])
    loss = nn.CTCLoss(reduction="sum")(
        log_probs, torch.tensor([[label]]), torch.tensor([2]), torch.tensor([1])
    )
    torch.testing.assert_close(loss, expected)


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(1, 5), extra=st.floats(0.0, 3.0))
def test_losses_basic_triplet_is_zero_when_the_margin_is_met(seed, n, c, extra) -> None:
    """TripletMarginLoss is 0 whenever d(a, n) ≥ d(a, p) + margin (+ 1e-3, above its eps)."""
    g = gen(seed)
    anchor, positive = randn(g, n, c), randn(g, n, c)
    direction = F.normalize(randn(g, n, c), dim=1)
    reach = _distance(anchor, positive) + 1.0 + 1e-3 + extra
    negative = anchor + direction * reach.unsqueeze(1)
    assert nn.TripletMarginLoss(margin=1.0)(anchor, positive, negative).item() == 0.0


def test_losses_basic_q8_example_is_0_42421() -> None:
    """001 Q8's example: 0.42421 (the catalog's figure); ours gives the same."""
    assert curriculum_q8_example() == pytest.approx(0.42421, abs=5e-6)
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.1, 1.0, 2.1]])
    assert cross_entropy(logits, torch.tensor([0, 2])).item() == pytest.approx(0.42421, abs=5e-6)


@given(k=st.integers(2, 10), margin=st.floats(20.0, 50.0), true_class=st.integers(0, 9))
def test_losses_basic_seed_softmax_before_cross_entropy_cannot_reach_zero_b18(
    k: int, margin: float, true_class: int
) -> None:
    """Catalog B18: CrossEntropyLoss applies log-softmax itself, so a softmax before it is applied
    twice. A confident correct prediction (true logit ahead by ≥ 20) should cost ~0: ours costs
    < 1e-6; the seed's pairing costs its floor log(1 + (K - 1)/e) (its input is in [0, 1], so the
    best it can be is one-hot), 0.55 for K = 3."""
    y = torch.tensor([true_class % k])
    logits = torch.zeros(1, k, dtype=torch.float64)
    logits[0, y] = margin
    assert cross_entropy(logits, y).item() < 1e-6
    assert curriculum_q8_ce_on_softmax(logits, y).item() == pytest.approx(
        math.log(1 + (k - 1) / math.e), rel=1e-6
    )


@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(2, 5))
def test_losses_basic_seed_nll_on_softmax_is_negative_b18(seed, n, c) -> None:
    """Catalog B18: NLLLoss takes log-probabilities. Fed softmax output (the seed's prose) it
    returns -mean(p_y), in [-1, 0): not a likelihood, and it cannot be negative. Fed
    log-softmax it is the cross entropy, ≥ 0."""
    logits, targets = _classes(gen(seed), n, c)
    seed_loss = curriculum_q8_nll_on_softmax(logits, targets)
    assert -1.0 <= seed_loss.item() < 0.0
    ours = nll_loss(F.log_softmax(logits, dim=1), targets)
    assert ours.item() >= 0.0
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets))


@given(k=st.integers(2, 6), margin=st.floats(8.0, 30.0))
def test_losses_basic_seed_softmax_layer_starves_confident_mistakes_b51(k, margin) -> None:
    """Catalog B51 (002 Q28's table): nn.Softmax must not end a model trained with
    CrossEntropyLoss. On a confident mistake (a wrong logit ahead by ≥ 8) the gradient w.r.t.
    the logits should be large (softmax - onehot, norm ≥ 1 - p_true): ours is ≥ 0.99; through
    the seed's softmax layer it is < 1e-2, so the mistake is barely corrected."""
    target = torch.tensor([0])
    logits = torch.zeros(1, k, dtype=torch.float64)
    logits[0, 1] = margin  # confidently class 1; the truth is class 0

    def grad_norm(loss: Callable[[Tensor], Tensor]) -> float:
        x = logits.clone().requires_grad_(True)
        loss(x).backward()
        return float(x.grad.norm())

    assert grad_norm(lambda x: cross_entropy(x, target)) >= 0.99
    seed_model, criterion = CurriculumSoftmaxHeadQ28(), nn.CrossEntropyLoss()
    assert grad_norm(lambda x: criterion(seed_model(x), target)) < 1e-2


@given(
    seed=SEEDS,
    n=st.integers(5, 20),
    outlier=st.floats(50.0, 1e4),
)
@settings(max_examples=10)
def test_losses_basic_l1_is_more_robust_to_outliers_than_mse_b51(seed, n, outlier) -> None:
    """Catalog B51: 002 Q29's table says L1Loss is "sensitive to outliers" (對異常值敏感). It is
    the other way round. Fit one constant to n values in [-1, 1] plus one outlier (≥ 50, so
    the mean, (Σx + outlier)/(n + 1), lies above 1 for n ≤ 20): the constant minimising
    nn.L1Loss (scipy's bounded minimiser) stays within the clean data; nn.MSELoss's leaves it."""
    clean = torch.rand(n, generator=gen(seed), dtype=torch.float64) * 2 - 1
    data = torch.cat([clean, torch.tensor([outlier], dtype=torch.float64)])

    def fitted(loss: nn.Module) -> float:
        result = optimize.minimize_scalar(
            lambda c: loss(torch.full_like(data, c), data).item(),
            bounds=(-2.0, outlier + 1),
            method="bounded",
            options={"xatol": 1e-6},
        )
        return result.x

    low, high = clean.min().item(), clean.max().item()
    assert low - 1e-3 <= fitted(nn.L1Loss()) <= high + 1e-3
    assert fitted(nn.MSELoss()) > high + 1e-3


@given(seed=SEEDS, n=st.integers(2, 8), c=st.integers(2, 5))
def test_losses_basic_seed_nll_sum_is_not_the_default_mean_b65(seed, n, c) -> None:
    """Catalog B65: 004's NLL = -Σ log out_i[c_i] is a sum; nn.NLLLoss() defaults to the mean,
    so it is the seed's value divided by N, and only reduction="sum" matches the formula."""
    logits, targets = _classes(gen(seed), n, c)
    out = torch.softmax(logits, dim=1)
    seed_nll = curriculum_nll_004(out, targets)
    default = nn.NLLLoss()(torch.log(out), targets)
    assert not torch.isclose(default, seed_nll)
    torch.testing.assert_close(default, seed_nll / n)
    torch.testing.assert_close(nn.NLLLoss(reduction="sum")(torch.log(out), targets), seed_nll)
    torch.testing.assert_close(nll_loss(torch.log(out), targets, reduction="sum"), seed_nll)


def test_losses_basic_rejects_bad_shapes_and_reductions() -> None:
    with pytest.raises(ValueError, match="must be"):
        nll_loss(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction must be"):
        cross_entropy(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), reduction="avg")  # type: ignore[arg-type]


# -------------------------------------------------------------------- class_weighted_ce


@st.composite
def weighted_batches(draw: st.DrawFn):
    g = gen(draw(SEEDS))
    n, c = draw(st.integers(1, 8)), draw(st.integers(2, 5))
    weight = torch.rand(c, generator=g, dtype=torch.float64) * 2 + 0.05
    return randn(g, n, c, scale=3.0), labels(g, n, c), weight


@given(batch=weighted_batches(), reduction=REDUCTIONS)
def test_class_weighted_ce_matches_torch(batch, reduction) -> None:
    logits, targets, weight = batch
    torch.testing.assert_close(
        cross_entropy(logits, targets, weight, reduction),
        nn.CrossEntropyLoss(weight=weight, reduction=reduction)(logits, targets),
    )


@given(batch=weighted_batches())
def test_class_weighted_ce_mean_is_the_weighted_average_of_sample_losses(batch) -> None:
    """Mean reduction = Σ w_{y_i} ℓ_i / Σ w_{y_i}, with ℓ_i = log Σ_j e^{x_ij} - x_{i y_i}: a
    weighted average, not Σ w ℓ / N."""
    logits, targets, weight = batch
    per_sample = torch.log(torch.exp(logits).sum(1)) - logits[torch.arange(len(targets)), targets]
    w = weight[targets]
    expected = (w * per_sample).sum() / w.sum()
    torch.testing.assert_close(nn.CrossEntropyLoss(weight=weight)(logits, targets), expected)
    torch.testing.assert_close(cross_entropy(logits, targets, weight), expected)


def test_class_weighted_ce_seed_example_is_0_32718() -> None:
    """001 Q13's example: 0.32718 from nn.CrossEntropyLoss(weight=[0.1, 0.9]), and the same from
    the weighted average of the two per-sample losses (the catalog's "both ways")."""
    assert curriculum_q13_weighted_loss() == pytest.approx(0.32718, abs=5e-6)
    logits, targets = torch.tensor([[2.0, 0.5], [0.1, 1.0]]), torch.tensor([0, 1])
    weight = torch.tensor([0.1, 0.9])
    per_sample = F.cross_entropy(logits, targets, reduction="none")
    by_hand = (weight[targets] * per_sample).sum() / weight[targets].sum()
    assert by_hand.item() == pytest.approx(0.32718, abs=5e-6)
    assert cross_entropy(logits, targets, weight).item() == pytest.approx(0.32718, abs=5e-6)


@given(batch=weighted_batches(), reduction=REDUCTIONS)
def test_class_weighted_ce_unit_weights_are_plain_cross_entropy(batch, reduction) -> None:
    logits, targets, weight = batch
    ones = torch.ones_like(weight)
    plain = F.cross_entropy(logits, targets, reduction=reduction)
    torch.testing.assert_close(
        nn.CrossEntropyLoss(weight=ones, reduction=reduction)(logits, targets), plain
    )
    torch.testing.assert_close(cross_entropy(logits, targets, ones, reduction), plain)


@given(batch=weighted_batches(), scale=st.floats(0.01, 100.0))
def test_class_weighted_ce_mean_ignores_the_scale_of_the_weights(batch, scale) -> None:
    """The mean divides by Σ w_y, so w and s·w give the same mean (the sum scales by s):
    001 Q13's [0.1, 0.9] and [1, 9] train alike."""
    logits, targets, weight = batch
    torch.testing.assert_close(
        cross_entropy(logits, targets, weight * scale), cross_entropy(logits, targets, weight)
    )
    torch.testing.assert_close(
        cross_entropy(logits, targets, weight * scale, "sum"),
        cross_entropy(logits, targets, weight, "sum") * scale,
    )


@st.composite
def label_vectors(draw: st.DrawFn, min_per_class: int = 1):
    counts = draw(st.lists(st.integers(min_per_class, 60), min_size=2, max_size=5))
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(counts)])
    return y[torch.randperm(len(y), generator=gen(draw(SEEDS)))], len(counts)


@given(data=label_vectors())
def test_class_weighted_ce_inverse_frequency_weights_match_sklearn_balanced(data) -> None:
    y, k = data
    expected = compute_class_weight("balanced", classes=np.arange(k), y=y.numpy())
    torch.testing.assert_close(
        inverse_frequency_weights(y, k), torch.tensor(expected, dtype=torch.float32)
    )


@given(data=label_vectors())
def test_class_weighted_ce_balanced_weights_give_every_class_equal_total_weight(data) -> None:
    """With w_c = n / (K count_c), every class contributes n / K to Σ_i w_{y_i}."""
    y, k = data
    totals = torch.zeros(k, dtype=torch.float64).index_add_(
        0, y, inverse_frequency_weights(y, k)[y].double()
    )
    torch.testing.assert_close(totals, torch.full((k,), len(y) / k, dtype=torch.float64))


def test_class_weighted_ce_inverse_frequency_weights_reject_a_missing_class() -> None:
    with pytest.raises(ValueError, match=r"classes \[1\] have no samples"):
        inverse_frequency_weights(torch.tensor([0, 0, 2]), 3)
    with pytest.raises(ValueError, match="beyond num_classes"):
        inverse_frequency_weights(torch.tensor([0, 1, 2]), 2)


# ------------------------------------------------------------- custom_loss_mse_plus_l1


@st.composite
def prediction_pairs(draw: st.DrawFn):
    g = gen(draw(SEEDS))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    return randn(g, *shape, scale=2.0), randn(g, *shape)


def test_custom_loss_mse_plus_l1_seed_example_is_1_58333() -> None:
    """002 Q39's example: 1.58333 for p = [2, 3, 4], t = [2.5, 2, 5] (catalog figure)."""
    p, t = torch.tensor([2.0, 3.0, 4.0]), torch.tensor([2.5, 2.0, 5.0])
    assert CurriculumCustomLossQ39()(p, t).item() == pytest.approx(1.58333, abs=5e-6)
    assert MSEPlusL1Loss()(p, t).item() == pytest.approx(1.58333, abs=5e-6)


@given(batch=prediction_pairs(), reduction=REDUCTIONS)
def test_custom_loss_mse_plus_l1_equals_torch_mse_plus_l1(batch, reduction) -> None:
    p, t = batch
    torch.testing.assert_close(
        mse_plus_l1_loss(p, t, reduction),
        F.mse_loss(p, t, reduction=reduction) + F.l1_loss(p, t, reduction=reduction),
    )


@given(batch=prediction_pairs())
def test_custom_loss_mse_plus_l1_matches_the_seed(batch) -> None:
    """The seed's CustomLoss is right: ours (mean) equals it."""
    p, t = batch
    torch.testing.assert_close(MSEPlusL1Loss()(p, t), CurriculumCustomLossQ39()(p, t))


@given(batch=prediction_pairs(), same=st.booleans())
def test_custom_loss_mse_plus_l1_is_zero_exactly_when_predictions_equal_targets(
    batch, same
) -> None:
    p, t = batch
    if same:
        assert mse_plus_l1_loss(t.clone(), t).item() == 0.0
    else:
        assert (p != t).any()  # continuous draws: equal with probability 0
        assert mse_plus_l1_loss(p, t).item() > 0.0


@given(batch=prediction_pairs())
def test_custom_loss_mse_plus_l1_gradient_is_2_diff_plus_sign_over_n(batch) -> None:
    p, t = batch
    p.requires_grad_(True)
    mse_plus_l1_loss(p, t).backward()
    diff = p.detach() - t
    torch.testing.assert_close(p.grad, (2 * diff + torch.sign(diff)) / diff.numel())


# ----------------------------------------------------------------- imbalance_resampling

# 001 Q13's 90/10 imbalance, with a third, rarer class
IMBALANCED = torch.cat([torch.zeros(900), torch.ones(80), torch.full((20,), 2)]).long()
CHI_SQUARE_ALPHA = 1e-3


def _drawn_classes(sampler) -> Tensor:
    return torch.bincount(IMBALANCED[torch.tensor(list(sampler))], minlength=3)


@given(data=label_vectors())
def test_imbalance_resampling_sampler_weights_are_inverse_class_counts(data) -> None:
    y, k = data
    sampler = balanced_sampler(y)
    counts = torch.bincount(y).double()
    torch.testing.assert_close(sampler.weights, 1.0 / counts[y])
    assert sampler.replacement and sampler.num_samples == len(y)


def test_imbalance_resampling_chi_square_accepts_uniform_classes() -> None:
    """30,000 draws from 900/80/20 labels: the class counts fit the uniform distribution.
    Under uniformity the statistic is χ²(2); the check fails at p < 1e-3 (a false alarm rate of
    1e-3, for this fixed seed decided once, never retried)."""
    sampler = balanced_sampler(IMBALANCED, 30_000, generator=gen(0))
    counts = _drawn_classes(sampler)
    assert stats.chisquare(counts.numpy()).pvalue > CHI_SQUARE_ALPHA


def test_imbalance_resampling_without_weights_the_classes_stay_imbalanced() -> None:
    """The same chi-square test has the power to see imbalance: uniform sampling over samples
    (RandomSampler with replacement) keeps 90/8/2 and is rejected with p < 1e-12."""
    sampler = RandomSampler(IMBALANCED, replacement=True, num_samples=30_000, generator=gen(0))
    assert stats.chisquare(_drawn_classes(sampler).numpy()).pvalue < 1e-12


@given(data=label_vectors(), seed=SEEDS)
def test_imbalance_resampling_class_frequencies_within_binomial_tolerance(data, seed) -> None:
    """Each class's frequency among 4,000 draws is Binomial(4000, 1/K)/4000: within 5 sd,
    sqrt(p(1 - p)/n) with p = 1/K, of 1/K (a two-sided miss has probability 5.7e-7 per class)."""
    y, k = data
    n = 4000
    drawn = torch.tensor(list(balanced_sampler(y, n, generator=gen(seed))))
    freq = torch.bincount(y[drawn], minlength=k).double() / n
    sd = math.sqrt((1 / k) * (1 - 1 / k) / n)
    assert ((freq - 1 / k).abs() <= 5 * sd).all(), freq


def test_imbalance_resampling_loader_yields_balanced_batches() -> None:
    """Used as 001 Q13 intends: ``DataLoader(dataset, sampler=balanced_sampler(labels))``; an
    epoch has the dataset's length and its classes fit uniformity (the chi-square test above)."""
    dataset = torch.utils.data.TensorDataset(torch.arange(len(IMBALANCED)), IMBALANCED)
    loader = DataLoader(
        dataset, batch_size=100, sampler=balanced_sampler(IMBALANCED, generator=gen(1))
    )
    seen = torch.cat([batch_labels for _, batch_labels in loader])
    assert len(seen) == len(IMBALANCED)
    assert stats.chisquare(torch.bincount(seen).numpy()).pvalue > CHI_SQUARE_ALPHA


@given(data=label_vectors(), seed=SEEDS)
def test_imbalance_resampling_undersample_keeps_the_minority_count_of_every_class(
    data, seed
) -> None:
    y, k = data
    kept = undersample_indices(y, generator=gen(seed))
    assert len(kept.unique()) == len(kept)  # no sample twice
    assert ((kept >= 0) & (kept < len(y))).all()
    counts = torch.bincount(y[kept], minlength=k)
    assert (counts == torch.bincount(y).min()).all()


def test_imbalance_resampling_seed_collate_balances_each_batch_not_the_dataset() -> None:
    """002 Q20's collate_fn (catalog D-balanced-collate): the first batch [0,0,1,1,1] becomes
    3 + 3 samples, the second [2]*5 stays 5: batches change size, every original sample is kept,
    and class 2 never meets the others, so the data set as a whole is not balanced."""
    random.seed(0)
    data = [torch.tensor([i]) for i in range(10)]
    labels_ = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    dataset = CurriculumImbalancedDatasetQ20(data, labels_)
    loader = DataLoader(dataset, batch_size=5, collate_fn=curriculum_balanced_collate_fn_q20)
    batches = list(loader)
    assert [Counter(b_labels.tolist()) for _, b_labels in batches] == [{0: 3, 1: 3}, {2: 5}]
    assert [len(b_labels) for _, b_labels in batches] == [6, 5]
    assert set(range(10)) <= {int(x) for b_data, _ in batches for x in b_data.flatten()}
    total = Counter(label for _, b_labels in batches for label in b_labels.tolist())
    assert total == {0: 3, 1: 3, 2: 5}  # the epoch is still 3/3/5, not uniform
