"""Gradient clipping (curriculum 000 §11.6.2, 001 Q10, 002 Q68; catalog B27), including the
exploding recurrent net of 001 Q10 kept in bounds by ``clip_grad_norm_``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from impl.techniques.grad_clipping import clip_gradients, total_grad_norm
from impl.techniques.gradient_flow import large_weight_rnn

NORM_TYPES = st.sampled_from([1.0, 2.0, 3.0, math.inf])


@st.composite
def parameters_with_grads(draw: st.DrawFn) -> list[nn.Parameter]:
    """1 to 4 parameters of random shapes, seeded gradients over six orders of magnitude."""
    shapes = draw(
        st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=3), min_size=1, max_size=4)
    )
    seed = draw(st.integers(0, 2**31 - 1))
    scale = 10.0 ** draw(st.floats(-3, 3))
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = nn.Parameter(torch.zeros(shape))
        p.grad = torch.randn(shape, generator=generator) * scale
        params.append(p)
    return params


def _grads(params: list[nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad.clone() for p in params]


def test_grad_clip_norm_total_is_the_norm_of_the_concatenated_gradients() -> None:
    params = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0.0]), torch.tensor([-4.0])
    assert total_grad_norm(params, 2.0) == 5.0
    assert total_grad_norm(params, 1.0) == 7.0
    assert total_grad_norm(params, math.inf) == 4.0
    assert total_grad_norm([nn.Parameter(torch.zeros(3))]) == 0.0  # no grads at all


@given(params=parameters_with_grads(), norm_type=NORM_TYPES)
def test_grad_clip_norm_reference_norm_matches_torch(
    params: list[nn.Parameter], norm_type: float
) -> None:
    flat = torch.cat([p.grad.flatten() for p in params]).double()
    expected = torch.linalg.vector_norm(flat, norm_type)
    torch.testing.assert_close(total_grad_norm(params, norm_type), expected)
    torch.testing.assert_close(
        nn.utils.get_total_norm([p.grad for p in params], norm_type).double(),
        expected,
        rtol=1e-5,
        atol=0,
    )


@given(params=parameters_with_grads(), norm_type=NORM_TYPES, max_norm=st.floats(1e-2, 1e2))
@example(params=None, norm_type=2.0, max_norm=1.0).via("catalog: pre-clip 954.45 -> 1.0")
def test_grad_clip_norm_bounds_the_global_norm_by_one_common_factor(
    params: list[nn.Parameter] | None, norm_type: float, max_norm: float
) -> None:
    if params is None:  # the catalog's case: one big gradient
        params = [nn.Parameter(torch.zeros(4))]
        params[0].grad = torch.tensor([900.0, 300.0, 100.0, 50.0])
    before = _grads(params)
    expected_total = total_grad_norm(params, norm_type)

    returned = nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)

    # it returns the pre-clip norm
    torch.testing.assert_close(returned.double(), expected_total, rtol=1e-5, atol=0)
    assert total_grad_norm(params, norm_type) <= max_norm * (1 + 1e-5)
    factor = min(1.0, max_norm / (float(expected_total) + 1e-6))  # torch's clip coefficient
    for g_before, p in zip(before, params, strict=True):  # one factor: every direction is kept
        torch.testing.assert_close(p.grad, g_before * factor, rtol=1e-5, atol=1e-30)
    if float(expected_total) + 1e-6 <= max_norm:
        assert all(torch.equal(b, p.grad) for b, p in zip(before, params, strict=True)), (
            "no-op below"
        )


@given(params=parameters_with_grads(), max_value=st.floats(1e-3, 1e3))
def test_grad_clip_norm_value_mode_bounds_every_element(
    params: list[nn.Parameter], max_value: float
) -> None:
    before = _grads(params)
    nn.utils.clip_grad_value_(params, max_value)
    for g_before, p in zip(before, params, strict=True):
        assert p.grad.abs().max() <= max_value
        inside = g_before.abs() <= max_value
        assert torch.equal(p.grad[inside], g_before[inside])
        torch.testing.assert_close(p.grad[~inside], max_value * g_before[~inside].sign())


def curriculum_clip_000(model: nn.Module) -> None:
    """000 §11.6.2 as written: ``max_norm = 1  # 設定最大梯度值為 1`` ("the largest gradient value
    is 1") then ``torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)``."""
    max_norm = 1
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def test_grad_clip_norm_seed_max_norm_is_not_a_value_bound_b27() -> None:
    """Catalog B27: read as "the largest allowed gradient value", max_norm = 1 would leave
    gradients whose every element is below 1 untouched. ``clip_grad_norm_`` shrinks all of them
    by one factor, 1/||g||, because their global norm (here 0.9 sqrt(11) = 2.98) exceeds 1;
    bounding each element is ``clip_gradients(mode="value")``, which leaves them as they are."""
    model = nn.Linear(10, 1)  # 000 §11.6.2's model
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.9)  # every element below the "largest value" 1
    before = [p.grad.clone() for p in model.parameters()]
    curriculum_clip_000(model)
    total = 0.9 * math.sqrt(11)
    for b, p in zip(before, model.parameters(), strict=True):
        assert not torch.equal(p.grad, b)  # the value reading predicts no change
        torch.testing.assert_close(p.grad, b / total, rtol=1e-5, atol=0)
    for p, b in zip(model.parameters(), before, strict=True):
        p.grad = b.clone()
    clip_gradients(model.parameters(), mode="value", max_value=1.0)
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before, strict=True))
    assert total_grad_norm(model.parameters()) > 1.0


def test_grad_clip_norm_q68_call_before_backward_does_nothing() -> None:
    """002 Q68 calls ``clip_grad_norm_`` once before the loop, before any backward: with no
    gradients it returns a zero norm and leaves every ``.grad`` None."""
    model = nn.Linear(4, 2)
    assert float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)) == 0.0
    assert all(p.grad is None for p in model.parameters())


def curriculum_training_loop_001_q10(model: nn.Module, inputs, target, *, clip: bool):
    """001 Q10's loop as written (SGD lr 0.01, MSELoss, 10 epochs, ``clip_grad_norm_(max_norm=
    1.0)`` after backward), with ``clip`` to leave the clipping out. Returns the loss of each
    epoch and the L2 distance every step moved the parameters."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = nn.MSELoss()
    losses, moves = [], []
    for _epoch in range(10):
        optimizer.zero_grad()
        output = model(inputs)
        loss = criterion(output, target)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        optimizer.step()
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        losses.append(loss.item())
        moves.append(float((after - before).norm()))
    return losses, moves


def _exploding_rnn_run(seed: int, clip: bool):
    torch.manual_seed(seed)
    model = large_weight_rnn(3, 5, 1, scale=2.0)  # 001 Q10's sizes, W_hh = 2 I
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(10, 20, 3, generator=g).abs()  # batch 10, 20 steps (the seed: 5)
    target = torch.randn(10, 1, generator=g)
    return curriculum_training_loop_001_q10(model, inputs, target, clip=clip)


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=10)
def test_grad_clip_norm_bounds_the_exploding_rnn_of_001_q10(seed: int) -> None:
    """With W_hh = 2 I the gradient is about 2^19 times its one-step size. Clipped to
    max_norm = 1, every SGD step moves the parameters by at most lr * max_norm = 0.01 (so ten
    epochs by at most 0.1) and every loss is finite; unclipped, the first step alone moves them
    by more than 1000 times that bound."""
    losses, moves = _exploding_rnn_run(seed, clip=True)
    assert max(moves) <= 0.01 * (1 + 1e-5)
    assert all(math.isfinite(v) for v in losses)
    _, moves = _exploding_rnn_run(seed, clip=False)
    assert moves[0] > 1000 * 0.01


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_grad_clip_norm_non_finite_gradients_are_reported(bad: float) -> None:
    p = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_gradients([p], mode="norm", max_norm=1.0)  # our default is to raise
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_gradients([p], mode="value", max_value=1.0)
    returned = clip_gradients([p], mode="norm", max_norm=1.0, error_if_nonfinite=False)
    assert not torch.isfinite(returned)


@given(params=parameters_with_grads(), norm_type=NORM_TYPES, limit=st.floats(1e-2, 1e2))
def test_grad_clip_norm_clip_gradients_dispatches_to_torch(
    params: list[nn.Parameter], norm_type: float, limit: float
) -> None:
    twins = [nn.Parameter(torch.zeros_like(p)) for p in params]
    for twin, p in zip(twins, params, strict=True):
        twin.grad = p.grad.clone()
    ours = clip_gradients(params, mode="norm", max_norm=limit, norm_type=norm_type)
    theirs = nn.utils.clip_grad_norm_(twins, limit, norm_type=norm_type)
    assert torch.equal(ours, theirs)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(params, twins, strict=True))
    pre = clip_gradients(params, mode="value", max_value=limit, norm_type=norm_type)
    torch.testing.assert_close(pre.double(), total_grad_norm(twins, norm_type), rtol=1e-5, atol=0)
    assert all(p.grad.abs().max() <= limit for p in params)


def test_grad_clip_norm_clip_gradients_rejects_bad_arguments() -> None:
    p = nn.Parameter(torch.zeros(1))
    p.grad = torch.ones(1)
    with pytest.raises(ValueError, match="needs max_norm > 0"):
        clip_gradients([p], mode="norm")
    with pytest.raises(ValueError, match="needs max_value > 0"):
        clip_gradients([p], mode="value", max_value=0)
    with pytest.raises(ValueError, match="mode must be"):
        clip_gradients([p], mode="global", max_norm=1.0)  # type: ignore[arg-type]
