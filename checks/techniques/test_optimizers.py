"""Optimizers (catalog §2 ``optimizers``): torch.optim's SGD, momentum, Adam, AdamW and RMSprop
steps against closed forms and against our written-out updates; zero_grad and None gradients;
every optimizer lowers a convex quadratic. Curriculum: 001 Q11, Q12, H5; 003 §5; 004 L84-88."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from impl.techniques.optimizers import (
    OPTIMIZER_NAMES,
    adam_update,
    make_optimizer,
    rmsprop_update,
    sgd_update,
)

SEEDS = st.integers(0, 2**31 - 1)
SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
LRS = st.floats(1e-4, 1.0)
# float64 updates done in a different order (torch fuses a*b+c) differ by a few ulps
TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def _tensors(seed: int, shape: tuple[int, ...], n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(n)]


def _torch_steps(optimizer_cls, w0: torch.Tensor, grads: list[torch.Tensor], **kwargs):
    """Run ``optimizer_cls`` on a parameter starting at ``w0`` with the given gradients."""
    param = nn.Parameter(w0.clone())
    optimizer = optimizer_cls([param], **kwargs)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    return param.detach(), optimizer


@given(seed=SEEDS, shape=SHAPES, lr=LRS)
def test_optimizers_sgd_step_is_w_minus_lr_g(seed, shape, lr) -> None:
    """Catalog: one SGD step is w <- w - lr g; torch.optim.SGD and ours both give it."""
    w, g = _tensors(seed, shape, 2)
    expected = w - lr * g  # the closed form
    theirs, _ = _torch_steps(torch.optim.SGD, w, [g], lr=lr)
    ours, buffer = sgd_update(w, g, lr=lr)
    torch.testing.assert_close(theirs, expected, **TIGHT)
    torch.testing.assert_close(ours, expected, **TIGHT)
    assert buffer is None


@given(seed=SEEDS, lr=LRS, momentum=st.floats(0.05, 0.99), steps=st.integers(1, 8), shape=SHAPES)
def test_optimizers_momentum_under_a_constant_gradient_follows_the_closed_form(
    seed, lr, momentum, steps, shape
) -> None:
    """PyTorch's momentum, v <- mu v + g with v_1 = g, under a constant gradient g gives
    v_j = g (1 - mu^j) / (1 - mu), so w_k = w_0 - lr g sum_{j<=k} (1 - mu^j) / (1 - mu)."""
    w, g = _tensors(seed, shape, 2)
    total = sum((1 - momentum**j) / (1 - momentum) for j in range(1, steps + 1))
    expected = w - lr * g * total
    theirs, _ = _torch_steps(torch.optim.SGD, w, [g] * steps, lr=lr, momentum=momentum)
    ours, buffer = w, None
    for _ in range(steps):
        ours, buffer = sgd_update(ours, g, buffer, lr=lr, momentum=momentum)
    torch.testing.assert_close(theirs, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(buffer, g * (1 - momentum**steps) / (1 - momentum))


@given(
    seed=SEEDS,
    lr=LRS,
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.5]),
    steps=st.integers(1, 6),
)
def test_optimizers_sgd_matches_torch_on_varying_gradients(
    seed, lr, momentum, weight_decay, steps
) -> None:
    """Our SGD update, with momentum and L2 weight decay, equals torch.optim.SGD step by step."""
    w, *grads = _tensors(seed, (3, 2), 1 + steps)
    theirs, optimizer = _torch_steps(
        torch.optim.SGD, w, grads, lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    ours, buffer = w, None
    for g in grads:
        ours, buffer = sgd_update(
            ours, g, buffer, lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    if momentum:
        (state,) = optimizer.state.values()
        torch.testing.assert_close(buffer, state["momentum_buffer"], rtol=1e-10, atol=1e-10)


@given(
    seed=SEEDS,
    lr=LRS,
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]),
    shape=SHAPES,
)
def test_optimizers_adam_first_step_is_about_lr_times_sign_g(seed, lr, scale, shape) -> None:
    """Catalog: from zero state, Adam's first step is m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps)
    times lr: within lr eps / |g| of lr sign(g), whatever the gradient's scale (1e-6 to 1e6)."""
    w, g = _tensors(seed, shape, 2)
    g = g * scale
    eps = 1e-8
    theirs, _ = _torch_steps(torch.optim.Adam, w, [g], lr=lr, eps=eps)
    step = w - theirs
    torch.testing.assert_close(step, lr * g / (g.abs() + eps), rtol=1e-9, atol=1e-15)
    rounding = 4e-16 * (1 + w.abs())  # a few ulps of w, from step = w - (w - step)
    assert ((step - lr * g.sign()).abs() <= lr * eps / g.abs() + rounding).all()
    ours, _, _ = adam_update(w, g, torch.zeros_like(w), torch.zeros_like(w), step=1, lr=lr)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@given(
    seed=SEEDS,
    lr=st.floats(1e-4, 0.1),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    weight_decay=st.sampled_from([0.0, 1e-2, 0.3]),
    decoupled=st.booleans(),
    steps=st.integers(1, 6),
)
def test_optimizers_adam_and_adamw_match_torch_step_by_step(
    seed, lr, beta1, beta2, weight_decay, decoupled, steps
) -> None:
    """Our Adam update equals torch.optim.Adam (L2 weight decay in the gradient) and, with
    decoupled weight decay, torch.optim.AdamW; parameters and both moments, every step."""
    w, *grads = _tensors(seed, (4,), 1 + steps)
    optimizer_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    theirs, optimizer = _torch_steps(
        optimizer_cls, w, grads, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay
    )
    ours, m, v = w, torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        ours, m, v = adam_update(
            ours,
            g,
            m,
            v,
            step=t,
            lr=lr,
            betas=(beta1, beta2),
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled,
        )
    (state,) = optimizer.state.values()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(m, state["exp_avg"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v, state["exp_avg_sq"], rtol=1e-10, atol=1e-12)


@given(seed=SEEDS, lr=LRS, alpha=st.floats(0.5, 0.999), steps=st.integers(1, 6))
def test_optimizers_rmsprop_matches_its_closed_form_and_torch(seed, lr, alpha, steps) -> None:
    """RMSprop's first step is lr g / (sqrt(1 - alpha) |g| + eps) (about 10 lr at PyTorch's
    alpha 0.99); later steps, ours against torch.optim.RMSprop."""
    w, *grads = _tensors(seed, (5,), 1 + steps)
    eps = 1e-8
    first, _ = _torch_steps(torch.optim.RMSprop, w, grads[:1], lr=lr, alpha=alpha, eps=eps)
    expected = w - lr * grads[0] / ((1 - alpha) ** 0.5 * grads[0].abs() + eps)
    torch.testing.assert_close(first, expected, **TIGHT)
    theirs, optimizer = _torch_steps(torch.optim.RMSprop, w, grads, lr=lr, alpha=alpha, eps=eps)
    ours, square_avg = w, torch.zeros_like(w)
    for g in grads:
        ours, square_avg = rmsprop_update(ours, g, square_avg, lr=lr, alpha=alpha, eps=eps)
    (state,) = optimizer.state.values()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(square_avg, state["square_avg"], rtol=1e-10, atol=1e-12)


def _two_parameter_step(name: str, *, set_to_none: bool) -> tuple[nn.Parameter, dict, dict]:
    """Step ``name`` once on a and b, zero the grads, then step with a gradient for a only.
    Returns b, b's state before the second step and after it."""
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    optimizer = make_optimizer(name, [a, b], lr=0.1)
    (a.square().sum() + b.square().sum()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert a.grad is None and b.grad is None
    else:
        assert torch.equal(b.grad, torch.zeros(3))
    state_before = {k: v.clone() for k, v in optimizer.state[b].items()}
    b_before = b.detach().clone()
    a.square().sum().backward()  # b takes no part: its grad stays None (or zero)
    optimizer.step()
    return b, {"value": b_before, **state_before}, {"value": b.detach(), **optimizer.state[b]}


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_optimizers_zero_grad_sets_none_and_step_skips_a_none_grad(name) -> None:
    """Catalog: ``zero_grad()`` sets grads to None (``set_to_none=True``, the default) and
    ``step()`` skips a parameter whose grad is None: its value and its state (momentum buffer,
    moments, step count) stay bit-identical."""
    b, before, after = _two_parameter_step(name, set_to_none=True)
    assert b.grad is None
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("name", ["momentum", "adam", "adamw", "rmsprop"])
def test_optimizers_a_zero_grad_is_not_a_skipped_one(name) -> None:
    """The contrast: with ``zero_grad(set_to_none=False)`` the grad is a zero tensor, not None,
    and a stateful optimizer still updates it: momentum and Adam's first moment carry the value
    on, RMSprop's running square decays. Why None matters for frozen or unused parameters."""
    b, before, after = _two_parameter_step(name, set_to_none=False)
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed == ({"square_avg", "step"} if name == "rmsprop" else set(before)), changed


def _convex_quadratic(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric positive definite A with eigenvalues in [0.5, 2] and a minimiser w*."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))
    eigenvalues = 0.5 + 1.5 * torch.rand(6, generator=generator, dtype=torch.float64)
    return q @ torch.diag(eigenvalues) @ q.T, torch.randn(
        6, generator=generator, dtype=torch.float64
    )


# learning rates well inside each method's stable range for eigenvalues <= 2 (SGD: lr < 2/L = 1)
CONVEX_LRS = {"sgd": 0.1, "momentum": 0.05, "adam": 0.05, "adamw": 0.05, "rmsprop": 0.01}


@settings(max_examples=10)
@given(name=st.sampled_from(OPTIMIZER_NAMES), seed=SEEDS)
def test_optimizers_each_lowers_a_convex_quadratic(name, seed) -> None:
    """Catalog: on a convex quadratic f(w) = (w - w*)^T A (w - w*) / 2, 50 steps of each
    optimizer (from make_optimizer, small lr) end with a lower loss than they started."""
    a, w_star = _convex_quadratic(seed)
    w = nn.Parameter(w_star + 3.0)

    def loss() -> torch.Tensor:
        d = w - w_star
        return d @ a @ d / 2

    start = loss().item()
    optimizer = make_optimizer(name, [w], lr=CONVEX_LRS[name])
    for _ in range(50):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < start


def test_optimizers_make_optimizer_builds_the_curriculum_optimizers() -> None:
    """make_optimizer names the torch.optim classes the curriculum uses, with its defaults:
    SGD lr 0.01 (003 §2), momentum 0.9 (001 Q11), Adam lr 0.001 (001 Q12)."""
    p = [nn.Parameter(torch.zeros(1))]
    built = {name: make_optimizer(name, p) for name in OPTIMIZER_NAMES}
    assert {n: type(o) for n, o in built.items()} == {
        "sgd": torch.optim.SGD,
        "momentum": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
    }
    assert built["sgd"].defaults["lr"] == 0.01 and built["sgd"].defaults["momentum"] == 0
    assert built["momentum"].defaults["momentum"] == 0.9
    assert built["adam"].defaults["lr"] == 0.001
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adagrad", p)  # type: ignore[arg-type]


class CurriculumSimpleNetQ12(nn.Module):
    """001 Q12 as written: ``fc1 = nn.Linear(2, 1)``."""

    def __init__(self):
        super(CurriculumSimpleNetQ12, self).__init__()  # noqa: UP008 (the seed's)
        self.fc1 = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc1(x)


def test_optimizers_curriculum_q12_adam_loop_lowers_the_loss_every_epoch() -> None:
    """001 Q12 (``optim.Adam(lr=0.001)``, MSE, 10 epochs on its two points) lowers the loss at
    every epoch: Adam's steps have size about lr, small enough for this quadratic."""
    torch.manual_seed(0)
    model = CurriculumSimpleNetQ12()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    criterion = nn.MSELoss()
    input = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[2.0], [3.0]])
    losses = []
    for _epoch in range(10):
        optimizer.zero_grad()
        output = model(input)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
