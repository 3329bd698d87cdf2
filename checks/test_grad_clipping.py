"""Gradient clipping (curriculum 000 §11.6.2, 001 Q10, 002 Q68; catalog B27)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

from impl.techniques.grad_clipping import clip_gradients, total_grad_norm

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


def test_total_grad_norm_is_the_norm_of_the_concatenated_gradients() -> None:
    params = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0.0]), torch.tensor([-4.0])
    assert total_grad_norm(params, 2.0) == 5.0
    assert total_grad_norm(params, 1.0) == 7.0
    assert total_grad_norm(params, math.inf) == 4.0
    assert total_grad_norm([nn.Parameter(torch.zeros(3))]) == 0.0  # no grads at all


@given(params=parameters_with_grads(), norm_type=NORM_TYPES)
def test_reference_norm_matches_torch(params: list[nn.Parameter], norm_type: float) -> None:
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
def test_clip_grad_norm_bounds_the_global_norm_by_one_common_factor(
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
def test_clip_grad_value_bounds_every_element(params: list[nn.Parameter], max_value: float) -> None:
    before = _grads(params)
    nn.utils.clip_grad_value_(params, max_value)
    for g_before, p in zip(before, params, strict=True):
        assert p.grad.abs().max() <= max_value
        inside = g_before.abs() <= max_value
        assert torch.equal(p.grad[inside], g_before[inside])
        torch.testing.assert_close(p.grad[~inside], max_value * g_before[~inside].sign())


def test_norm_clipping_is_not_value_clipping() -> None:
    """Catalog B27: max_norm is not 'the largest allowed gradient value'. Norm clipping shrinks
    every element by one factor (small ones too); value clipping only touches the large ones."""
    by_norm, by_value = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    by_norm.grad, by_value.grad = torch.tensor([3.0, 0.5]), torch.tensor([3.0, 0.5])
    nn.utils.clip_grad_norm_([by_norm], max_norm=1.0)
    nn.utils.clip_grad_value_([by_value], clip_value=1.0)
    torch.testing.assert_close(
        by_norm.grad, torch.tensor([3.0, 0.5]) / math.hypot(3.0, 0.5), rtol=1e-5, atol=0
    )
    assert torch.equal(by_value.grad, torch.tensor([1.0, 0.5]))


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_gradients_are_reported(bad: float) -> None:
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
def test_clip_gradients_dispatches_to_torch(
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


def test_clip_gradients_rejects_bad_arguments() -> None:
    p = nn.Parameter(torch.zeros(1))
    p.grad = torch.ones(1)
    with pytest.raises(ValueError, match="needs max_norm > 0"):
        clip_gradients([p], mode="norm")
    with pytest.raises(ValueError, match="needs max_value > 0"):
        clip_gradients([p], mode="value", max_value=0)
    with pytest.raises(ValueError, match="mode must be"):
        clip_gradients([p], mode="global", max_norm=1.0)  # type: ignore[arg-type]
