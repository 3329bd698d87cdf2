"""Vanishing and exploding gradients, skip connections (curriculum 001 Q10, H4; 000 §11.1.1,
§11.6.1; 004 L394-405; 002 Q32, Q38, Q49).

The bounds are exact inequalities of backpropagation: a sigmoid layer ``W σ(x) + b`` has a
Jacobian of norm at most ``||W||₂ / 4`` (σ' ≤ 1/4); a residual layer ``x + W σ(x) + b`` one of
smallest singular value at least ``1 - ||W||₂ / 4``. They are computed from the weights of each
generated network, in float64, so no tolerance is statistical except where a docstring says so.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from impl.techniques.gradient_flow import (
    PreActivationBlock,
    SimpleRNN,
    block_input_gradient_norms,
    deep_stack,
    large_weight_rnn,
    parameter_gradient_norms,
)

SEEDS = st.integers(0, 2**31 - 1)


def _stack(depth: int, width: int, activation: str, skip: bool, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return deep_stack(depth, width, activation, skip=skip).double()


def _inputs(batch: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=g, dtype=torch.float64)
    return x, torch.randn(batch, width, generator=g, dtype=torch.float64)


def _branch_norm_bounds(stack: nn.Sequential) -> list[float]:
    """||W_l||₂ / 4 for every block, first block first."""
    return [float(torch.linalg.matrix_norm(b.linear.weight.detach(), 2)) / 4 for b in stack[1:]]


# --- vanishing_exploding ---


@given(depth=st.integers(2, 16), width=st.integers(4, 48), seed=SEEDS)
@settings(max_examples=15)
def test_vanishing_exploding_sigmoid_layer_scales_gradient_by_at_most_w_over_4(depth, width, seed):
    """Each sigmoid block multiplies the gradient's norm by at most ||W_l||₂ / 4."""
    stack = _stack(depth, width, "sigmoid", False, seed)
    x, upstream = _inputs(3, width, seed)
    norms = block_input_gradient_norms(stack, x, upstream)
    for i, bound in enumerate(_branch_norm_bounds(stack), start=1):
        assert norms[i - 1] <= bound * norms[i] * (1 + 1e-9), (i, norms[i - 1] / norms[i], bound)


@given(seed=SEEDS)
@settings(max_examples=10)
def test_vanishing_exploding_sigmoid_stack_first_layer_gradient_decays_geometrically(seed) -> None:
    """PyTorch's default init (U(±1/sqrt(n)), ||W||₂ ≈ 2/sqrt(3) for a square layer) makes each
    sigmoid layer shrink the gradient by at least 2x, so 24 layers leave at most 2^-24 of it at
    the first layer; every consecutive ratio is at most 1/2."""
    depth, width = 24, 64
    stack = _stack(depth, width, "sigmoid", False, seed)
    norms = block_input_gradient_norms(stack, *_inputs(8, width, seed))
    ratios = [norms[i] / norms[i + 1] for i in range(depth)]
    assert max(ratios) <= 0.5
    assert norms[0] / norms[-1] <= 0.5**depth


@given(seed=SEEDS)
@settings(max_examples=5)
def test_vanishing_exploding_relu_kaiming_keeps_first_layer_gradient_order_one(seed) -> None:
    """ReLU blocks with He init (fan_in = fan_out for square layers) and zero biases: each block
    keeps the gradient's squared norm in expectation (2/n · n · 1/2). log(|g_0|²/|g_L|²) is
    within 5 sd of 0, sd sqrt(5 L / n) (a He layer and a ReLU mask: relative variance 5/n per
    layer; a batch of inputs sharing the weights spreads no more). Default-init sigmoid stacks
    of the same shape lose 2^-12 (previous check)."""
    depth, width = 12, 256
    stack = _stack(depth, width, "relu", False, seed)
    for block in stack[1:]:
        nn.init.kaiming_normal_(block.linear.weight, nonlinearity="relu")
        nn.init.zeros_(block.linear.bias)
    norms = block_input_gradient_norms(stack, *_inputs(16, width, seed))
    assert abs(math.log(norms[0] ** 2 / norms[-1] ** 2)) <= 5 * math.sqrt(5 * depth / width)


@given(
    scale=st.floats(0.5, 1.5),
    steps=st.integers(2, 30),
    seed=SEEDS,
)
@settings(max_examples=20)
def test_vanishing_exploding_rnn_gradient_scales_as_w_hh_to_the_time_steps(scale, steps, seed):
    """A ReLU RNN with W_hh = s I in its positive (linear) regime: the gradient reaching the
    first input is exactly s^(T-1) times the one at the last input (exploding for s > 1,
    vanishing for s < 1), whatever the data."""
    torch.manual_seed(seed)
    model = large_weight_rnn(3, 5, 1, scale).double()
    x = torch.randn(4, steps, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x.abs().requires_grad_(True)
    model(x).sum().backward()
    ratio = float(x.grad[:, 0].norm() / x.grad[:, -1].norm())
    s = float(model.rnn.weight_hh_l0[0, 0].detach())  # the scale as stored (float32 first)
    assert math.isclose(ratio, s ** (steps - 1), rel_tol=1e-9)


def test_vanishing_exploding_parameter_gradient_norms_name_every_parameter() -> None:
    torch.manual_seed(0)
    model = SimpleRNN(3, 5, 1)
    model(torch.randn(2, 4, 3)).pow(2).sum().backward()
    norms = parameter_gradient_norms(model)
    assert set(norms) == {name for name, _ in model.named_parameters()}
    assert all(v > 0 for v in norms.values())
    expected = {
        n: float(p.grad.flatten().dot(p.grad.flatten()).sqrt()) for n, p in model.named_parameters()
    }
    assert all(math.isclose(norms[n], expected[n], rel_tol=1e-6) for n in norms)


# --- skip_connections ---


@given(
    width=st.integers(1, 32),
    batch=st.integers(1, 8),
    activation=st.sampled_from(["sigmoid", "tanh", "relu"]),
    seed=SEEDS,
)
def test_skip_connections_identity_when_the_branch_is_zero(width, batch, activation, seed):
    """004 L403 (identity mapping): with a zero branch the residual block returns its input
    bit for bit; the plain block returns zeros."""
    residual = PreActivationBlock(width, activation, skip=True)
    plain = PreActivationBlock(width, activation, skip=False)
    for block in (residual, plain):
        nn.init.zeros_(block.linear.weight)
        nn.init.zeros_(block.linear.bias)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(residual(x), x)
    assert not plain(x).any()


@given(depth=st.integers(2, 16), width=st.integers(4, 48), seed=SEEDS)
@settings(max_examples=15)
def test_skip_connections_residual_block_keeps_at_least_one_minus_w_over_4(depth, width, seed):
    """Each residual sigmoid block keeps at least (1 - ||W_l||₂/4) of the gradient's norm (the
    identity path), where the plain block keeps at most ||W_l||₂/4."""
    stack = _stack(depth, width, "sigmoid", True, seed)
    norms = block_input_gradient_norms(stack, *_inputs(3, width, seed))
    for i, bound in enumerate(_branch_norm_bounds(stack), start=1):
        assert bound < 1
        assert norms[i - 1] >= (1 - bound) * norms[i] * (1 - 1e-9)


@given(seed=SEEDS)
@settings(max_examples=10)
def test_skip_connections_first_layer_gradient_much_larger_than_without(seed) -> None:
    """004 L398-405's experiment: the same 20 sigmoid layers (same weights, input and upstream
    gradient, batch 1) with and without skips. The first layer's weight gradient is at least
    ∏ (1 - b_l) / b_l times larger with skips (b_l = ||W_l||₂/4, from the bounds above), which
    for PyTorch's default init exceeds 10^6."""
    depth, width = 20, 64
    plain = _stack(depth, width, "sigmoid", False, seed)
    residual = _stack(depth, width, "sigmoid", True, seed)
    residual.load_state_dict(plain.state_dict())
    x, upstream = _inputs(1, width, seed)
    grads = []
    for stack in (plain, residual):
        stack(x).backward(upstream)
        grads.append(float(stack[0].weight.grad.norm()))
    bound = math.prod((1 - b) / b for b in _branch_norm_bounds(plain))
    assert grads[1] / grads[0] >= bound * (1 - 1e-9)
    assert grads[1] / grads[0] > 1e6


@given(
    channels=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    size=st.integers(1, 6),
    seed=SEEDS,
)
def test_skip_connections_unet_concat_passes_the_skip_and_its_gradient_unchanged(
    channels, size, seed
) -> None:
    """002 Q49's ``torch.cat([x2, x1], dim=1)``: the skip tensor x2 is the first channels of
    the result, and the gradient reaching x2 is exactly the upstream gradient's slice."""
    g = torch.Generator().manual_seed(seed)
    c2, c1 = channels
    x2 = torch.randn(2, c2, size, size, generator=g, requires_grad=True)
    x1 = torch.randn(2, c1, size, size, generator=g, requires_grad=True)
    y = torch.cat([x2, x1], dim=1)
    upstream = torch.randn(y.shape, generator=g)
    y.backward(upstream)
    assert torch.equal(y[:, :c2], x2)
    assert torch.equal(x2.grad, upstream[:, :c2]) and torch.equal(x1.grad, upstream[:, c2:])
