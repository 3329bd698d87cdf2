"""Checks of the regularisation techniques (catalog §2 ``l1_penalty``, ``l2_weight_decay``,
``dropout``, ``batch_norm``; ``impl.techniques.regularisation`` and the hand-written BN layer of
``impl.models.batchnorm``), each beside the curriculum's own code or claim where the catalog says
it is wrong (B03-B07): the seed's version, reproduced minimally, fails the property ours passes.

Statistical checks (dropout) use seeded generators and a tolerance of 5 standard deviations of the
sampling distribution named in each docstring (binomial for zero fractions, the per-element
dropout variance x^2 p / (1 - p) for means); they are never retried.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn, optim

from impl import get_spec
from impl.models.batchnorm import BatchNorm1dScratch, BatchNormConfig
from impl.techniques.regularisation import (
    InvertedDropout,
    batch_norm,
    inverted_dropout,
    l1_penalty,
    l2_penalty,
    weight_decay_for_l2,
)

SIGMAS = 5.0  # tolerance of the statistical checks, in standard deviations

# ---------------------------------------------------------------------------------- l1_penalty


def linear(in_features: int, out_features: int, seed: int) -> nn.Linear:
    """A float64 nn.Linear with standard normal weights and bias (none within 1e-3 of 0, where
    sign(w) jumps), deterministic in ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(in_features, out_features).double()
    with torch.no_grad():
        for p in model.parameters():
            values = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            p.copy_(torch.where(values.abs() < 1e-3, torch.full_like(values, 0.5), values))
    return model


@given(
    in_features=st.integers(1, 6),
    out_features=st.integers(1, 4),
    l1_lambda=st.floats(1e-4, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_l1_penalty_gradient_is_lambda_sign_w_bias_included(
    in_features: int, out_features: int, l1_lambda: float, seed: int
) -> None:
    model = linear(in_features, out_features, seed)
    penalty = l1_penalty(model.parameters(), l1_lambda)
    expected = l1_lambda * torch.linalg.vector_norm(
        nn.utils.parameters_to_vector(model.parameters()), ord=1
    )
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=0)
    penalty.backward()
    for name, p in model.named_parameters():  # weight and bias alike
        torch.testing.assert_close(p.grad, l1_lambda * torch.sign(p.detach()), msg=name)


def test_l1_penalty_training_drives_more_weights_to_zero_than_plain_training() -> None:
    """Sparse linear regression, 20 features of which 3 matter, y = x w* + noise (sd 1), n = 200.
    Full-batch SGD on the MSE, with and without L1 (lambda 0.2), from the same start. Plain
    training ends near the least-squares fit, whose 17 useless weights are about N(0, 1/200)
    (sd 0.07: P(|w| < 0.01) about 0.11); with L1 the minimiser is the least-squares fit
    soft-thresholded at lambda / 2 = 0.1 (P about 0.85 of being 0), where subgradient SGD (lr 0.01)
    oscillates within lr * lambda = 0.002 of it. Expected counts of |w| < 0.01: about 2 against 14.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 20, generator=generator, dtype=torch.float64)
    w_true = torch.zeros(20, 1, dtype=torch.float64)
    w_true[:3, 0] = torch.tensor([2.0, -2.0, 1.5])
    y = x @ w_true + torch.randn(200, 1, generator=generator, dtype=torch.float64)
    start = nn.Linear(20, 1).double()

    def train(l1_lambda: float) -> torch.Tensor:
        model = nn.Linear(20, 1).double()
        model.load_state_dict(start.state_dict())
        optimizer = optim.SGD(model.parameters(), lr=0.01)
        for _ in range(600):  # converged: the error contracts by (1 - 2 lr)^600 ~ e^-12
            loss = F.mse_loss(model(x), y)
            if l1_lambda:
                loss = loss + l1_penalty(model.parameters(), l1_lambda)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.weight.detach()[0]

    plain, sparse = train(0.0), train(0.2)
    near_zero_plain = int((plain.abs() < 0.01).sum())
    near_zero_l1 = int((sparse.abs() < 0.01).sum())
    assert near_zero_l1 >= near_zero_plain + 8, (near_zero_plain, near_zero_l1)
    assert (sparse[:3].abs() > 0.5).all()  # the weights that matter survive


def test_l1_penalty_seed_in_place_add_raises_b03() -> None:
    """000 §11.2.2's L1 snippet, as written: ``loss`` is a leaf created with requires_grad=True,
    and ``loss += l1_lambda * l1_norm`` adds to it in place, which autograd refuses. Ours adds the
    penalty to a loss computed from the model, out of place, and the gradient carries
    lambda * sign(w) on top of the data gradient."""

    def curriculum_000_l1_snippet() -> None:
        """000 §11.2.2 L81-105 (``l1_lambda = 0.001``; the loss a stand-in ``torch.tensor``)."""
        torch.manual_seed(0)
        model = nn.Linear(10, 1)
        optimizer = optim.SGD(model.parameters(), lr=0.01)
        loss = torch.tensor(0.01, requires_grad=True)
        l1_lambda = 0.001
        l1_norm = torch.tensor(0.0)
        for param in model.parameters():
            l1_norm += torch.abs(param).sum()
        loss += l1_lambda * l1_norm
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with pytest.raises(RuntimeError, match="leaf Variable that requires grad .* in-place"):
        curriculum_000_l1_snippet()

    torch.manual_seed(0)
    model = nn.Linear(10, 1).double()
    x, y = torch.randn(8, 10, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    data_loss = F.mse_loss(model(x), y)
    data_grads = torch.autograd.grad(data_loss, list(model.parameters()), retain_graph=True)
    loss = data_loss + l1_penalty(model.parameters(), 0.001)
    loss.backward()
    for p, g in zip(model.parameters(), data_grads, strict=True):
        torch.testing.assert_close(p.grad, g + 0.001 * torch.sign(p.detach()))


def test_l1_penalty_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="at least one tensor"):
        l1_penalty([], 0.1)


# ----------------------------------------------------------------------------- l2_weight_decay


def _steps(model: nn.Module, optimizer: optim.Optimizer, loss_fn, k: int) -> None:
    for _ in range(k):
        optimizer.zero_grad()
        loss_fn(model).backward()
        optimizer.step()


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    return x, torch.randn(6, 2, generator=generator, dtype=torch.float64)


@given(
    l2_lambda=st.floats(1e-4, 0.5),
    lr=st.floats(1e-3, 0.5),
    momentum=st.sampled_from([0.0, 0.9]),
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_l2_weight_decay_sgd_weight_decay_equals_the_penalty_with_half_its_strength(
    l2_lambda: float, lr: float, momentum: float, steps: int, seed: int
) -> None:
    """SGD(weight_decay=wd) follows the same trajectory as plain SGD on data loss + (wd/2)·‖w‖²,
    i.e. on data loss + l2_penalty(λ) with wd = weight_decay_for_l2(λ) = 2λ; momentum or not."""
    x, y = _data(seed)
    decayed, penalised = linear(4, 2, seed), linear(4, 2, seed)
    wd = weight_decay_for_l2(l2_lambda)
    _steps(
        decayed,
        optim.SGD(decayed.parameters(), lr=lr, momentum=momentum, weight_decay=wd),
        lambda m: F.mse_loss(m(x), y),
        steps,
    )
    _steps(
        penalised,
        optim.SGD(penalised.parameters(), lr=lr, momentum=momentum),
        lambda m: F.mse_loss(m(x), y) + l2_penalty(m.parameters(), l2_lambda),
        steps,
    )
    for a, b in zip(decayed.parameters(), penalised.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@given(
    weight_decay=st.floats(1e-4, 1.0),
    lr=st.floats(1e-3, 1.0),
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    seed=st.integers(0, 2**31 - 1),
)
def test_l2_weight_decay_one_sgd_step_with_zero_data_gradient_is_one_minus_lr_lambda_bias_too(
    weight_decay: float, lr: float, shape: tuple[int, int], seed: int
) -> None:
    """004 L369-377: every parameter, the bias included, shrinks in proportion to itself:
    a zero data gradient (a loss that depends on the model, times 0) gives w <- (1 - lr·λ) w."""
    model = linear(*shape, seed)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    x = torch.ones(1, shape[0], dtype=torch.float64)
    _steps(model, optimizer, lambda m: 0.0 * m(x).sum(), 1)
    for (name, p), w in zip(model.named_parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), (1 - lr * weight_decay) * w, msg=name)


@given(
    weight_decay=st.floats(1e-3, 0.5),
    lr=st.floats(1e-3, 0.1),
    steps=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_l2_weight_decay_adam_weight_decay_is_coupled_l2_not_adamw(
    weight_decay: float, lr: float, steps: int, seed: int
) -> None:
    """Adam(weight_decay=wd) is Adam on data loss + (wd/2)·‖w‖² (the decay goes through the
    adaptive rescaling), and so differs from AdamW(weight_decay=wd), which decays outside it."""
    x, y = _data(seed)
    models = [linear(4, 2, seed) for _ in range(3)]
    coupled, penalised, decoupled = models
    data = lambda m: F.mse_loss(m(x), y)  # noqa: E731
    _steps(coupled, optim.Adam(coupled.parameters(), lr=lr, weight_decay=weight_decay), data, steps)
    _steps(
        penalised,
        optim.Adam(penalised.parameters(), lr=lr),
        lambda m: data(m) + l2_penalty(m.parameters(), weight_decay / 2),
        steps,
    )
    _steps(
        decoupled,
        optim.AdamW(decoupled.parameters(), lr=lr, weight_decay=weight_decay),
        data,
        steps,
    )
    for a, b in zip(coupled.parameters(), penalised.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    gap = max(
        (a - b).abs().max().item()
        for a, b in zip(coupled.parameters(), decoupled.parameters(), strict=True)
    )
    assert gap > 1e-3 * lr * weight_decay  # AdamW's decay, lr·wd·|w| per step, is not Adam's


@given(
    weight_decay=st.floats(1e-3, 0.5),
    lr=st.floats(1e-3, 0.1),
    seed=st.integers(0, 2**31 - 1),
)
def test_l2_weight_decay_adamw_first_step_is_decoupled_decay_then_the_adam_step(
    weight_decay: float, lr: float, seed: int
) -> None:
    """AdamW, hand-computed for step 1 (bias-corrected moments m̂ = g, v̂ = g²):
    w1 = w0 (1 - lr·wd) - lr · g / (|g| + eps), eps = 1e-8."""
    x, y = _data(seed)
    model = linear(4, 2, seed)
    w0 = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(F.mse_loss(model(x), y), list(model.parameters()))
    optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    _steps(model, optimizer, lambda m: F.mse_loss(m(x), y), 1)
    for p, w, g in zip(model.parameters(), w0, grads, strict=True):
        expected = w * (1 - lr * weight_decay) - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-12)


def test_l2_weight_decay_seed_reading_weight_decay_is_the_l2_strength_is_off_by_two_b04() -> None:
    """000 §11.2.2's comment: ``weight_decay = 0.001  # weight_decay equals the L2 strength``.
    Read with 004 L369-377's penalty λ·Σw² (gradient 2λw), strength λ = 0.001 is not
    weight_decay = 0.001: from the same weights, one SGD step with zero data gradient shrinks by
    lr·λ under the seed's setting and by 2·lr·λ under the penalty; weight_decay_for_l2(λ) = 2λ
    matches the penalty."""
    l2_lambda, lr = 0.001, 0.01  # the seed's figures
    x = torch.ones(1, 10, dtype=torch.float64)

    def shrink(weight_decay: float, penalty: float) -> float:
        model = linear(10, 1, seed=0)
        before = model.weight.detach().clone()
        optimizer = optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
        _steps(
            model, optimizer, lambda m: 0.0 * m(x).sum() + l2_penalty(m.parameters(), penalty), 1
        )
        ratio = model.weight.detach() / before  # the same for every weight
        torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))
        return 1.0 - ratio[0, 0].item()

    seed_setting = shrink(weight_decay=l2_lambda, penalty=0.0)  # the curriculum's optimizer
    penalty = shrink(weight_decay=0.0, penalty=l2_lambda)  # 004's λ·Σw² in the loss
    ours = shrink(weight_decay=weight_decay_for_l2(l2_lambda), penalty=0.0)
    assert seed_setting == pytest.approx(lr * l2_lambda, rel=1e-9)
    assert penalty == pytest.approx(2 * lr * l2_lambda, rel=1e-9)
    assert seed_setting == pytest.approx(penalty / 2, rel=1e-9)  # off by the factor of 2
    assert ours == pytest.approx(penalty, rel=1e-9)


def test_l2_weight_decay_seed_demo_decays_nothing_b05() -> None:
    """000 §11.2.2's L2 demo, as written: the loss is a ``torch.tensor`` that does not depend on
    the model, so after backward every param.grad is None, SGD skips those parameters, and the
    weights are not decayed at all. With a loss computed from the model (even one whose data
    gradient is 0) the same optimizer decays every parameter by (1 - lr·wd)."""
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = optim.SGD(model.parameters(), lr=0.01, weight_decay=0.001)
    loss = torch.tensor(0.01, requires_grad=True)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), before, strict=True))

    ours = nn.Linear(10, 1)
    ours.load_state_dict(dict(zip(("weight", "bias"), before, strict=True)))
    optimizer = optim.SGD(ours.parameters(), lr=0.01, weight_decay=0.001)
    _steps(ours, optimizer, lambda m: 0.0 * m(torch.ones(1, 10)).sum(), 1)
    for p, w in zip(ours.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), (1 - 0.01 * 0.001) * w)
        assert not torch.equal(p.detach(), w)


# ------------------------------------------------------------------------------------- dropout

DROP_PROBABILITIES = st.sampled_from([0.1, 0.2, 0.5, 0.8])


def _torch_seeded(fn, seed: int):
    """Run ``fn`` with the global RNG seeded (torch's dropout draws from it), restoring it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _dropouts(p: float, seed: int) -> dict[str, callable]:
    """Element-wise dropout in training mode, torch's forms and ours: name -> (x -> output)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "nn.Dropout": lambda x: _torch_seeded(lambda: nn.Dropout(p).train()(x), seed),
        "F.dropout": lambda x: _torch_seeded(lambda: F.dropout(x, p, training=True), seed),
        "inverted_dropout": lambda x: inverted_dropout(x, p, generator=generator),
        "InvertedDropout": lambda x: _torch_seeded(lambda: InvertedDropout(p).train()(x), seed),
    }


@given(
    p=st.floats(0.0, 0.95),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_dropout_training_output_is_zero_or_the_input_over_one_minus_p(
    p: float, shape: list[int], seed: int
) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) + 10.0  # never 0
    for name, dropout in _dropouts(p, seed).items():
        out = dropout(x)
        assert out.shape == x.shape, name
        kept = out != 0
        torch.testing.assert_close(out[kept], x[kept] / (1 - p), rtol=1e-6, atol=0, msg=name)


@settings(max_examples=8)
@given(p=DROP_PROBABILITIES, seed=st.integers(0, 2**31 - 1))
def test_dropout_zero_fraction_is_p_within_binomial_tolerance(p: float, seed: int) -> None:
    """n = 20,000 elements, each zero with probability p: the zero fraction is within 5 binomial
    standard deviations sqrt(p (1 - p) / n) of p."""
    n = 20_000
    x = torch.ones(n)
    tolerance = SIGMAS * (p * (1 - p) / n) ** 0.5
    for name, dropout in _dropouts(p, seed).items():
        fraction = (dropout(x) == 0).double().mean().item()
        assert abs(fraction - p) < tolerance, (name, fraction, p, tolerance)


@settings(max_examples=8)
@given(p=DROP_PROBABILITIES, seed=st.integers(0, 2**31 - 1))
def test_dropout_expected_training_output_equals_the_input(p: float, seed: int) -> None:
    """The mean of R = 4,000 training outputs of a fixed x (8 values) is x, per element within
    5 sd of the mean of R draws of x·m/(1 - p), m ~ Bernoulli(1 - p): |x| sqrt(p / (1 - p) / R)."""
    r = 4_000
    x = torch.linspace(-3.0, 4.0, 8, dtype=torch.float64)
    tolerance = SIGMAS * x.abs() * (p / (1 - p) / r) ** 0.5
    for name, dropout in _dropouts(p, seed).items():
        mean = dropout(x.expand(r, 8).clone()).mean(dim=0)  # (8,)
        assert ((mean - x).abs() <= tolerance).all(), (name, mean, x)


@given(
    p=st.floats(0.0, 1.0),
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_dropout_eval_is_the_identity(p: float, shape: list[int], seed: int) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    outputs = {
        "nn.Dropout": nn.Dropout(p).eval()(x),
        "nn.Dropout2d": nn.Dropout2d(p).eval()(x) if x.dim() == 4 else x,
        "F.dropout": F.dropout(x, p, training=False),
        "inverted_dropout": inverted_dropout(x, p, training=False),
        "InvertedDropout": InvertedDropout(p).eval()(x),
        "InvertedDropout channelwise": InvertedDropout(p, channelwise=True).eval()(x),
    }
    for name, out in outputs.items():
        assert torch.equal(out, x), name


@settings(max_examples=10)
@given(p=DROP_PROBABILITIES, seed=st.integers(0, 2**31 - 1))
def test_dropout2d_zeroes_whole_channels_with_probability_p(p: float, seed: int) -> None:
    """nn.Dropout2d and ours (channelwise) on (N, C, H, W) = (50, 40, 3, 4): every (n, c) plane is
    all zero or all x / (1 - p); the fraction of zero planes among N·C = 2,000 is within 5 binomial
    sd of p. Element-wise dropout would leave almost no plane whole."""
    x = torch.rand(50, 40, 3, 4, generator=torch.Generator().manual_seed(seed)) + 1.0  # never 0
    planes = 50 * 40
    tolerance = SIGMAS * (p * (1 - p) / planes) ** 0.5
    generator = torch.Generator().manual_seed(seed)
    outputs = {
        "nn.Dropout2d": _torch_seeded(lambda: nn.Dropout2d(p).train()(x), seed),
        "ours": inverted_dropout(x, p, channelwise=True, generator=generator),
    }
    for name, out in outputs.items():
        zero_planes = (out == 0).flatten(2).all(dim=2)  # (N, C)
        kept_planes = torch.isclose(out, x / (1 - p), rtol=1e-6, atol=0).flatten(2).all(dim=2)
        assert (zero_planes | kept_planes).all(), name
        fraction = zero_planes.double().mean().item()
        assert abs(fraction - p) < tolerance, (name, fraction, p)


def test_dropout_is_the_identity_at_inference_not_a_rescaling_b06() -> None:
    """Catalog B06: 001 Q4 L129 says that at inference Dropout "does not drop neurons but scales
    all outputs" (to keep train and test expectations equal): classic dropout, eval output
    (1 - p)·x. PyTorch scales the survivors by 1 / (1 - p) in training instead, and eval is the
    identity: in eval the seed's dropout model (001 Q3, ``mlp_10_50_1_dropout``) equals the same
    weights without dropout, in training each hidden unit is 0 or doubled, and the mean training
    output is x, not the claim's (1 - p)·x."""
    torch.manual_seed(0)
    ours = get_spec("mlp_10_50_1_dropout").create("full")
    plain = get_spec("mlp_10_50_1").create("full")
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(16, 10)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), plain.eval()(x), rtol=0, atol=0)
        hidden = ours.fc1(x)
        dropped = ours.train().dropout(hidden)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2 * hidden[kept], rtol=0, atol=0)
    # 800 Bernoulli(0.5) draws: the zero fraction is within 5 binomial sd (0.088) of p = 0.5
    assert abs((1 - kept.float().mean().item()) - 0.5) < SIGMAS * (0.25 / kept.numel()) ** 0.5

    def curriculum_q4_inference(x: torch.Tensor, p: float) -> torch.Tensor:
        """001 Q4 L129's claim of what Dropout does at inference: scale all outputs (by 1 - p,
        the keep probability, so that they match the expectation of unscaled training drops)."""
        return (1 - p) * x

    p, r = 0.5, 4_000
    values = torch.linspace(1.0, 4.0, 8, dtype=torch.float64)
    layer = nn.Dropout(p)
    train_mean = _torch_seeded(lambda: layer.train()(values.expand(r, 8).clone()).mean(0), 0)
    tolerance = SIGMAS * values * (p / (1 - p) / r) ** 0.5  # sd of the mean of R draws
    assert torch.equal(layer.eval()(values), values)  # inference: identity
    assert ((train_mean - layer.eval()(values)).abs() <= tolerance).all()
    claimed = curriculum_q4_inference(values, p)
    assert ((train_mean - claimed).abs() > tolerance).all()  # the claim breaks the expectation


def test_dropout_p_is_the_drop_probability_not_the_keep_probability_b07() -> None:
    """Catalog B07: 004 L134 says p sets the probability of *keeping* a unit. With p = 0.2 over
    20,000 elements, nn.Dropout zeroes a fraction within 5 binomial sd (0.014) of p = 0.2; a
    dropout that keeps with probability p, as 004 describes, zeroes about 0.8."""

    def curriculum_004_dropout(x: torch.Tensor, p: float, generator: torch.Generator):
        """004 L134's reading: keep each unit with probability p (rescaled by 1 / p)."""
        keep = torch.rand(x.shape, generator=generator) < p
        return x * keep / p

    p, n = 0.2, 20_000
    x = torch.ones(n)
    tolerance = SIGMAS * (p * (1 - p) / n) ** 0.5
    torch_fraction = (_torch_seeded(lambda: nn.Dropout(p).train()(x), 0) == 0).double().mean()
    seed_fraction = (curriculum_004_dropout(x, p, torch.Generator().manual_seed(0)) == 0).double()
    assert abs(torch_fraction.item() - p) < tolerance
    assert abs(seed_fraction.mean().item() - p) > tolerance  # the seed's reading fails it
    assert abs(seed_fraction.mean().item() - (1 - p)) < tolerance  # it drops 1 - p instead


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_outside_zero_one_raises_like_torch(p: float) -> None:
    message = "dropout probability has to be between 0 and 1"
    with pytest.raises(ValueError, match=message):
        nn.Dropout(p)
    with pytest.raises(ValueError, match=message):
        InvertedDropout(p)
    with pytest.raises(ValueError, match=message):
        inverted_dropout(torch.ones(3), p)


# ---------------------------------------------------------------------------------- batch_norm
# The facts of catalog §2 ``batch_norm``, on our hand-written (B, C) layer (impl.models.batchnorm,
# 002 Q48) and our functional form over (N, C, *) (against F.batch_norm, i.e. nn.BatchNorm1d/2d/3d),
# in float64 so that each holds to rounding:
# - training: per channel, the output before the affine has mean 0 and *biased* variance
#   var / (var + eps), about 1;
# - after k training batches the running statistics equal the closed form of the momentum
#   recurrence, with the *unbiased* batch variance for running_var;
# - eval: the running-statistics formula, and a sample's output depends on that sample only (while
#   in training mode the other samples move it);
# - a training batch of one sample (one value per channel) raises ValueError, as torch does.
# Parity of the layer with nn.BatchNorm1d itself is also the registry's generated reference check.

EPS = 1e-5


@st.composite
def batches(draw: st.DrawFn, min_batch: int = 2, channels: int | None = None) -> torch.Tensor:
    """A float64 batch (B, C): each channel a normal sample with its own drawn scale and offset,
    and now and then a constant channel (variance 0, where eps alone keeps the division finite)."""
    n = draw(st.integers(min_batch, 32), label="batch size")
    c = channels or draw(st.integers(1, 8), label="channels")
    seed = draw(st.integers(0, 2**31 - 1), label="seed")
    scale = torch.tensor(draw(st.lists(st.floats(1e-3, 1e3), min_size=c, max_size=c)))
    offset = torch.tensor(draw(st.lists(st.floats(-1e3, 1e3), min_size=c, max_size=c)))
    # about one channel in eight is constant
    constant = torch.tensor(
        draw(st.lists(st.integers(0, 7).map(lambda v: v == 0), min_size=c, max_size=c))
    )
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=generator, dtype=torch.float64) * scale + offset
    return torch.where(constant, offset.double().expand(n, c), x)  # (B, C)


def layer(channels: int, momentum: float = 0.1, seed: int = 0) -> BatchNorm1dScratch:
    """Our layer in float64, with a random affine so that the affine is on trial too."""
    bn = BatchNorm1dScratch(BatchNormConfig(channels, eps=EPS, momentum=momentum)).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=generator, dtype=torch.float64))
    return bn


def biased_var(x: torch.Tensor) -> torch.Tensor:
    return ((x - x.mean(dim=0)) ** 2).sum(dim=0) / x.shape[0]  # (C,)


def unbiased_var(x: torch.Tensor) -> torch.Tensor:
    return ((x - x.mean(dim=0)) ** 2).sum(dim=0) / (x.shape[0] - 1)  # (C,)


@given(x=batches(), seed=st.integers(0, 1000))
def test_batch_norm_training_output_is_standardised_with_the_biased_variance(
    x: torch.Tensor, seed: int
) -> None:
    bn = layer(x.shape[1], seed=seed).train()
    out = bn(x)
    assert out.shape == x.shape
    x_hat = (out - bn.bias) / bn.weight  # undo the affine: (B, C)
    scale = x.abs().amax(dim=0) / biased_var(x).add(EPS).sqrt()  # the size of x_hat's terms
    torch.testing.assert_close(
        x_hat.mean(dim=0), torch.zeros_like(scale), rtol=0, atol=float(1e-12 * scale.max() + 1e-12)
    )
    var = biased_var(x)
    torch.testing.assert_close(biased_var(x_hat.detach()), var / (var + EPS), rtol=1e-7, atol=1e-9)
    # so about 1 where the channel varies well beyond eps, and never above 1
    assert (biased_var(x_hat.detach()) <= 1.0 + 1e-12).all()
    wide = var > 1e-2
    torch.testing.assert_close(
        biased_var(x_hat.detach())[wide], torch.ones_like(var[wide]), rtol=0, atol=1e-3
    )


@given(
    data=st.data(),
    k=st.integers(1, 5),
    momentum=st.floats(0.0, 1.0),
    channels=st.integers(1, 8),
)
def test_batch_norm_running_statistics_follow_the_momentum_recurrence_unbiased(
    data: st.DataObject, k: int, momentum: float, channels: int
) -> None:
    """running_k = (1 - m)^k running_0 + sum_i m (1 - m)^(k - i) stat_i, with running_mean_0 = 0,
    running_var_0 = 1, stat_i the batch mean and the batch's unbiased variance."""
    bn = layer(channels, momentum=momentum).train()
    xs = [data.draw(batches(channels=channels), label=f"batch {i}") for i in range(k)]
    for x in xs:
        bn(x)
    m = momentum
    expected_mean = sum(m * (1 - m) ** (k - i) * x.mean(dim=0) for i, x in enumerate(xs, 1))
    expected_var = (1 - m) ** k + sum(
        m * (1 - m) ** (k - i) * unbiased_var(x) for i, x in enumerate(xs, 1)
    )
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-9, atol=1e-9)
    assert bn.num_batches_tracked.item() == k
    assert not bn.running_mean.requires_grad and not bn.running_var.requires_grad


def test_batch_norm_running_var_uses_the_unbiased_variance_not_the_biased_one() -> None:
    """One batch of two samples, 0 and 2 in every channel: biased variance 1, unbiased 2, so
    running_var = 0.9 * 1 + 0.1 * 2 = 1.1 (the biased one would leave it at 1.0)."""
    bn = layer(3).train()
    bn(torch.tensor([[0.0] * 3, [2.0] * 3], dtype=torch.float64))
    torch.testing.assert_close(bn.running_var, torch.full((3,), 1.1, dtype=torch.float64))
    torch.testing.assert_close(bn.running_mean, torch.full((3,), 0.1, dtype=torch.float64))


@given(data=st.data(), k=st.integers(0, 3), channels=st.integers(1, 8))
def test_batch_norm_eval_uses_running_statistics_and_ignores_the_other_samples(
    data: st.DataObject, k: int, channels: int
) -> None:
    bn = layer(channels).train()
    for i in range(k):  # move the running statistics off their initial values
        bn(data.draw(batches(channels=channels), label=f"training batch {i}"))
    bn.eval()
    x = data.draw(batches(channels=channels), label="eval batch")
    others = data.draw(batches(min_batch=x.shape[0], channels=channels), label="other samples")
    i = data.draw(st.integers(0, x.shape[0] - 1), label="sample")
    mixed = others[: x.shape[0]].clone()
    mixed[i] = x[i]
    tracked = bn.num_batches_tracked.item()
    with torch.no_grad():
        out = bn(x)
        expected = (x - bn.running_mean) / (bn.running_var + EPS).sqrt() * bn.weight + bn.bias
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn(mixed)[i], out[i], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn(x[i : i + 1])[0], out[i], rtol=1e-12, atol=1e-12)
    assert bn.num_batches_tracked.item() == tracked  # eval leaves the statistics alone


def test_batch_norm_training_output_of_a_sample_depends_on_the_other_samples() -> None:
    """The contrast that makes the eval check meaningful: batch statistics couple the samples."""
    bn = layer(4).train()
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[1:] += 1.0
    changed[1:] *= 2.0
    with torch.no_grad():
        assert (bn(x)[0] - bn(changed)[0]).abs().max() > 0.1


@given(x=batches(min_batch=1))
def test_batch_norm_a_training_batch_of_one_raises_like_torch_and_changes_nothing(
    x: torch.Tensor,
) -> None:
    bn = layer(x.shape[1]).train()
    before = {name: t.clone() for name, t in bn.state_dict().items()}
    one = x[:1]
    message = r"^Expected more than 1 value per channel when training, got input size"
    with pytest.raises(ValueError, match=message):
        torch.nn.BatchNorm1d(x.shape[1]).double().train()(one)  # torch's own wording
    with pytest.raises(ValueError, match=message):
        bn(one)
    for name, t in bn.state_dict().items():
        assert torch.equal(t, before[name]), name
    with torch.no_grad():
        assert bn.eval()(one).shape == one.shape  # eval takes a single sample


@given(n=st.integers(2, 6), seed=st.integers(0, 2**31 - 1))
def test_batch_norm_training_gradient_matches_finite_differences(n: int, seed: int) -> None:
    """Backpropagation through the batch mean and variance, for the input and the affine."""
    bn = layer(3, seed=seed % 1000).train()

    def normalised(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(bn, {"weight": weight, "bias": bias}, (inputs,))

    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    args = (x, bn.weight.detach(), bn.bias.detach())
    assert torch.autograd.gradcheck(normalised, tuple(a.clone().requires_grad_() for a in args))


@given(
    spatial=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    n=st.integers(1, 5),
    channels=st.integers(1, 4),
    momentum=st.floats(0.0, 1.0),
    training=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_batch_norm_functional_matches_torch_for_1d_2d_3d_inputs(
    spatial: list[int], n: int, channels: int, momentum: float, training: bool, seed: int
) -> None:
    """Our ``batch_norm`` over (N, C, *) against ``F.batch_norm`` (what nn.BatchNorm1d/2d/3d
    call): the same output (shape = input shape), the same running statistics afterwards, and the
    same ValueError where a training channel has a single value."""
    generator = torch.Generator().manual_seed(seed)
    shape = (n, channels, *spatial)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + 1
    weight = torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5
    bias = torch.randn(channels, generator=generator, dtype=torch.float64)
    stats = [
        torch.randn(channels, generator=generator, dtype=torch.float64),
        torch.rand(channels, generator=generator, dtype=torch.float64) + 0.5,
    ]
    ours_stats, torch_stats = [t.clone() for t in stats], [t.clone() for t in stats]
    kwargs = {"momentum": momentum, "eps": EPS}
    if training and x.numel() // channels < 2:
        message = "Expected more than 1 value per channel when training"
        with pytest.raises(ValueError, match=message):
            F.batch_norm(x, *torch_stats, weight, bias, training=True, **kwargs)
        with pytest.raises(ValueError, match=message):
            batch_norm(x, *ours_stats, weight, bias, training=True, **kwargs)
        return
    ours = batch_norm(x, *ours_stats, weight, bias, training=training, **kwargs)
    theirs = F.batch_norm(x, *torch_stats, weight, bias, training=training, **kwargs)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    for a, b in zip(ours_stats, torch_stats, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_batch_norm_torch_2d_on_the_seed_input_standardises_each_channel() -> None:
    """000 §11.3.2's example, nn.BatchNorm2d(16) on randn(1, 16, 32, 32): the output shape is the
    input's; per channel, over the 1·32·32 = 1,024 values, the output has mean 0 and biased
    variance var / (var + eps); running_var becomes 0.9 + 0.1 · the unbiased variance, and
    running_mean 0.1 · the mean. Our functional form agrees on the same input."""
    layer = nn.BatchNorm2d(num_features=16).double()
    x = torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = layer(x)
    assert out.shape == x.shape == (1, 16, 32, 32)
    per_channel = x.transpose(0, 1).reshape(16, -1)  # (C, N·H·W)
    out_channel = out.detach().transpose(0, 1).reshape(16, -1)
    var = per_channel.var(dim=1, unbiased=False)
    torch.testing.assert_close(out_channel.mean(dim=1), torch.zeros(16, dtype=torch.float64))
    torch.testing.assert_close(out_channel.var(dim=1, unbiased=False), var / (var + EPS))
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * per_channel.var(dim=1))
    torch.testing.assert_close(layer.running_mean, 0.1 * per_channel.mean(dim=1))
    running = [torch.zeros(16, dtype=torch.float64), torch.ones(16, dtype=torch.float64)]
    ours = batch_norm(x, *running, training=True)
    torch.testing.assert_close(ours, out.detach())
    torch.testing.assert_close(running[1], layer.running_var)


@given(data=st.data(), spatial=st.lists(st.integers(1, 3), min_size=1, max_size=2))
def test_batch_norm_functional_eval_output_of_a_sample_ignores_the_other_samples(
    data: st.DataObject, spatial: list[int]
) -> None:
    """Eval mode on (N, C, *): sample i's output is the same in any batch, and alone."""
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    generator = torch.Generator().manual_seed(seed)
    n = data.draw(st.integers(2, 6), label="batch")
    shape = (n, 3, *spatial)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    others = torch.randn(shape, generator=generator, dtype=torch.float64) * 5
    i = data.draw(st.integers(0, n - 1), label="sample")
    others[i] = x[i]
    stats = (
        torch.randn(3, dtype=torch.float64, generator=generator),
        torch.rand(3, dtype=torch.float64, generator=generator) + 0.5,
    )
    out = batch_norm(x, *stats, training=False)
    torch.testing.assert_close(batch_norm(others, *stats, training=False)[i], out[i])
    torch.testing.assert_close(batch_norm(x[i : i + 1], *stats, training=False)[0], out[i])
    # while in training mode, the other samples move it
    assert not torch.allclose(
        batch_norm(others, None, None, training=True)[i],
        batch_norm(x, None, None, training=True)[i],
    )
