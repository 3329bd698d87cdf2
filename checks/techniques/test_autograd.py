"""Autograd basics (002 Q5, Q10, Q70; 001 Q5; 004 L73-83) and gradient checking (002 Q91).

Expected values come from closed forms (the derivative of a polynomial by
``numpy.polynomial.polynomial.polyder``, cos for sin, the MSE gradient of a linear layer) and from
the catalog's figures (15 and 7 for Q5, 0.70711 for Q10, [4, 27] for Q70). Beside them the
seed's code and claims, reproduced: the Q5 explanation's 23 (B01), 004's "no_grad adds the
operations to the graph" (B10), and Q91's ``numerical_gradient_check`` (B14).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import polynomial as P

from impl.techniques.autograd import (
    Q5_COEFFICIENTS,
    grad_of,
    model_gradcheck,
    model_gradient_check,
    numerical_gradients,
    polynomial,
    sgd_step_,
)

SEEDS = st.integers(0, 2**31 - 1)
COEFFICIENTS = st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=7)
POINTS = st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=6)


# ---------------------------------------------------------------------------------------------
# The seed's code, as written


def curriculum_002_q5() -> tuple[float, float]:
    """002 Q5 as written: y = x**3 + 2*x**2 - 5*x + 1 at x = 2; returns (y, dy/dx)."""
    x = torch.tensor(2.0, requires_grad=True)
    y = x**3 + 2 * x**2 - 5 * x + 1
    y.backward()
    return y.item(), x.grad.item()


# 002 Q5's explanation (item 4): "dy/dx = 3x^2 + 4x - 5 = 3(2)^2 + 4(2) - 5 = 23"
CURRICULUM_002_Q5_STATED_GRADIENT = 23

# 004 L82: "PyTorch autograd 不會在 with torch.no_grad() 區塊中運作，因此會將 with 內的運算過程加到
# 運算圖中", i.e. operations inside no_grad *are* added to the graph.
CURRICULUM_004_L82_NO_GRAD_RECORDS_OPERATIONS = True


class CurriculumSimpleModelQ91(torch.nn.Module):
    """002 Q91 as written: one Linear(2, 1)."""

    def __init__(self):
        super(CurriculumSimpleModelQ91, self).__init__()  # noqa: UP008 (the seed's)
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.linear(x)


def curriculum_numerical_gradient_check(model, inputs, targets, epsilon=1e-5):
    """002 Q91 ``numerical_gradient_check`` as written."""
    inputs.requires_grad = True
    outputs = model(inputs)
    loss = torch.nn.MSELoss()(outputs, targets)

    loss.backward()
    auto_grad = inputs.grad.clone()

    num_grad = torch.zeros_like(inputs)
    for i in range(inputs.numel()):
        original_value = inputs.view(-1)[i].item()

        inputs.view(-1)[i] = original_value + epsilon
        loss_plus = torch.nn.MSELoss()(model(inputs), targets)

        inputs.view(-1)[i] = original_value - epsilon
        loss_minus = torch.nn.MSELoss()(model(inputs), targets)

        inputs.view(-1)[i] = original_value

        num_grad.view(-1)[i] = (loss_plus - loss_minus) / (2 * epsilon)

    return auto_grad, num_grad


def curriculum_numerical_gradient_check_without_the_crash(model, inputs, targets, epsilon=1e-5):
    """002 Q91's scheme with only its crash removed (the perturbation goes to a copy that does not
    require grad): float32, eps 1e-5, the input's gradient only."""
    leaf = inputs.detach().clone().requires_grad_(True)
    torch.nn.MSELoss()(model(leaf), targets).backward()
    auto_grad = leaf.grad.clone()
    point = inputs.detach().clone()
    num_grad = torch.zeros_like(point)
    with torch.no_grad():
        for i in range(point.numel()):
            original_value = point.view(-1)[i].item()
            point.view(-1)[i] = original_value + epsilon
            loss_plus = torch.nn.MSELoss()(model(point), targets)
            point.view(-1)[i] = original_value - epsilon
            loss_minus = torch.nn.MSELoss()(model(point), targets)
            point.view(-1)[i] = original_value
            num_grad.view(-1)[i] = (loss_plus - loss_minus) / (2 * epsilon)
    return auto_grad, num_grad


# ---------------------------------------------------------------------------------------------
# autograd_basics


def test_autograd_basics_q5_gives_y_7_and_gradient_15() -> None:
    """Catalog figures: y(2) = 7, dy/dx(2) = 15, from the seed's own code."""
    assert curriculum_002_q5() == (7.0, 15.0)


def test_autograd_basics_seed_text_says_23_but_the_gradient_is_15_b01() -> None:
    """B01: the explanation's 3(2)^2 + 4(2) - 5 is 15; autograd (seed's code and ours) agrees."""
    _, seed_gradient = curriculum_002_q5()
    ours = grad_of(torch.tensor(2.0, dtype=torch.float64), lambda x: polynomial(x, Q5_COEFFICIENTS))
    closed_form = 3 * 2**2 + 4 * 2 - 5
    assert seed_gradient == ours.item() == closed_form == 15
    assert seed_gradient != CURRICULUM_002_Q5_STATED_GRADIENT


def test_autograd_basics_q10_sin_gradient_at_quarter_pi_is_0_70711() -> None:
    """Catalog figure: d sin/dx at π/4 = √2/2 = 0.70711 (float32, as in the seed)."""
    grad = grad_of(torch.tensor(torch.pi / 4), torch.sin)
    assert grad.item() == pytest.approx(0.70711, abs=5e-6)


@given(points=POINTS)
def test_autograd_basics_sin_gradient_is_cos(points: list[float]) -> None:
    x = torch.tensor(points, dtype=torch.float64)
    torch.testing.assert_close(grad_of(x, torch.sin), torch.cos(x), rtol=0, atol=1e-15)


def test_autograd_basics_q70_gradient_is_4_27() -> None:
    """002 Q70: y = x0² + x1³ at [2, 3] has gradient [2·2, 3·3²] = [4, 27]."""
    grad = grad_of(torch.tensor([2.0, 3.0]), lambda x: x[0] ** 2 + x[1] ** 3)
    assert grad.tolist() == [4.0, 27.0]


@given(coefficients=COEFFICIENTS, points=POINTS)
def test_autograd_basics_polynomial_matches_numpy_polyval(coefficients, points) -> None:
    x = np.array(points)
    ours = polynomial(torch.from_numpy(x), coefficients).numpy()
    np.testing.assert_allclose(ours, P.polyval(x, coefficients), rtol=1e-12, atol=1e-9)


@given(coefficients=COEFFICIENTS, points=POINTS)
def test_autograd_basics_derivative_of_random_polynomials_matches_numpy_polyder(
    coefficients, points
) -> None:
    """Catalog property: autograd equals the analytic derivative for random polynomials. The
    tolerance is float64 rounding of Horner's rule for |x| ≤ 2, |c| ≤ 5 and degree ≤ 6."""
    x = np.array(points)
    ours = grad_of(torch.from_numpy(x), lambda t: polynomial(t, coefficients)).numpy()
    np.testing.assert_allclose(ours, P.polyval(x, P.polyder(coefficients)), rtol=1e-12, atol=1e-9)


@given(coefficients=COEFFICIENTS, points=POINTS)
def test_autograd_basics_grad_of_can_be_differentiated_again(coefficients, points) -> None:
    """With ``x.requires_grad`` the derivative stays in the graph: the second derivative is
    numpy's polyder applied twice."""
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    second = grad_of(x, lambda t: grad_of(t, lambda u: polynomial(u, coefficients)))
    expected = P.polyval(np.array(points), P.polyder(coefficients, 2))
    np.testing.assert_allclose(second.detach().numpy(), expected, rtol=1e-12, atol=1e-9)


@given(seed=SEEDS, batch=st.integers(1, 6))
def test_autograd_basics_001_q5_linear_mse_gradients_match_the_closed_form(seed, batch) -> None:
    """001 Q5 (Linear(2, 1), MSELoss, loss.backward()): for mean squared error over N outputs,
    dL/dW = 2/N (Wx + b − t)ᵀ x and dL/db = 2/N Σ (Wx + b − t)."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(2, 1).double()
    x = torch.randn(batch, 2, generator=g, dtype=torch.float64)
    t = torch.randn(batch, 1, generator=g, dtype=torch.float64)
    nn.MSELoss()(model(x), t).backward()
    with torch.no_grad():
        residual = x @ model.weight.T + model.bias - t  # (N, 1)
    torch.testing.assert_close(model.weight.grad, 2 / batch * residual.T @ x)
    torch.testing.assert_close(model.bias.grad, 2 / batch * residual.sum(0))


@given(seed=SEEDS, times=st.integers(2, 4))
def test_autograd_basics_backward_accumulates_into_grad(seed: int, times: int) -> None:
    """004 L77-79: each backward() adds into .grad; k backward passes give k times the gradient."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    for _ in range(times):
        (x**3).sum().backward()
    torch.testing.assert_close(x.grad, times * 3 * x.detach() ** 2)


def test_autograd_basics_zero_grad_clears_the_accumulated_gradient() -> None:
    model = nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()  # set_to_none=True by default
    assert all(p.grad is None for p in model.parameters())


def test_autograd_basics_no_grad_records_no_operations_b10() -> None:
    """B10: 004 L82 says the operations inside no_grad are added to the graph. Outside no_grad
    they are (requires_grad, a grad_fn); inside they are not."""
    w = torch.ones(3, requires_grad=True)
    recorded_outside = (w * 2).sum()
    with torch.no_grad():
        inside = (w * 2).sum()
    assert recorded_outside.requires_grad and recorded_outside.grad_fn is not None
    recorded_inside = inside.requires_grad or inside.grad_fn is not None
    assert recorded_inside is False
    assert recorded_inside != CURRICULUM_004_L82_NO_GRAD_RECORDS_OPERATIONS


def test_autograd_basics_in_place_update_of_a_leaf_is_refused_outside_no_grad() -> None:
    """004 L83: the update belongs inside no_grad; autograd refuses it elsewhere."""
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w -= 0.1 * torch.ones(3)


@given(seed=SEEDS, lr=st.floats(1e-3, 1.0))
def test_autograd_basics_sgd_step_subtracts_lr_times_grad_and_clears_it(seed, lr) -> None:
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(3, 2).double()
    model(torch.randn(4, 3, generator=g, dtype=torch.float64)).square().sum().backward()
    expected = [(p - lr * p.grad).detach() for p in model.parameters()]
    sgd_step_(model.parameters(), lr)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=0)
        assert p.grad is None


def test_autograd_basics_no_grad_does_not_switch_dropout_to_eval() -> None:
    """C-no-grad (004 L137; 001 Q18): no_grad is not eval(); a train-mode Dropout still drops.
    1,000 elements at p = 0.5 leave none dropped with probability 2**-1000."""
    torch.manual_seed(0)
    dropout = nn.Dropout(0.5).train()
    with torch.no_grad():
        out = dropout(torch.ones(1000))
    assert (out == 0).any()
    assert torch.equal(dropout.eval()(torch.ones(1000)), torch.ones(1000))


def test_autograd_basics_no_grad_does_not_stop_batchnorm_updating_running_stats() -> None:
    bn = nn.BatchNorm1d(3).train()
    with torch.no_grad():
        bn(torch.arange(12.0).reshape(4, 3))
    assert bn.num_batches_tracked.item() == 1
    assert not torch.equal(bn.running_mean, torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# gradient_check


def small_problem(seed: int, batch: int = 3, hidden: int = 4):
    """A smooth float32 model (tanh), its input and targets."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    return model, torch.randn(batch, 2, generator=g), torch.randn(batch, 1, generator=g)


def test_gradient_check_seed_in_place_write_on_a_leaf_raises_b14() -> None:
    """B14: the seed's function on its own example raises; ours, same model and input, agrees."""
    torch.manual_seed(0)
    model = CurriculumSimpleModelQ91()
    inputs = torch.tensor([[1.0, 2.0]], requires_grad=True)
    targets = torch.tensor([[3.0]])
    with pytest.raises(RuntimeError, match="view of a leaf Variable that requires grad"):
        curriculum_numerical_gradient_check(model, inputs, targets)
    analytic, numeric = model_gradient_check(model, nn.MSELoss(), inputs.detach(), targets)["input"]
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-6)


def test_gradient_check_seed_float32_eps_1e5_is_too_imprecise_b14() -> None:
    """B14, the second half: with the crash removed, float32 central differences at eps 1e-5 miss
    the gradient by far more than gradcheck's tolerance (atol 1e-5, rtol 1e-3): float32's
    rounding of a loss near 1 is about 6e-8, divided by 2e-5 that is about 3e-3 per element.
    Ours, in float64 on the same model and data, agrees within 1e-6."""
    model, x, t = small_problem(seed=0, batch=16, hidden=8)
    x = x * 3
    auto, numeric = curriculum_numerical_gradient_check_without_the_crash(model, x, t)
    assert not torch.allclose(numeric, auto, rtol=1e-3, atol=1e-5)
    analytic, ours = model_gradient_check(model, nn.MSELoss(), x, t)["input"]
    torch.testing.assert_close(analytic, ours, rtol=1e-6, atol=1e-6)


@settings(max_examples=10)
@given(seed=SEEDS, batch=st.integers(1, 4))
def test_gradient_check_numeric_and_autograd_agree_within_1e_6(seed, batch) -> None:
    """Catalog: in float64 the numerical and autograd gradients agree within about 1e-6
    (central-difference truncation ~eps² and rounding ~1e-16/eps, with eps 1e-6)."""
    model, x, t = small_problem(seed, batch)
    for analytic, numeric in model_gradient_check(model, nn.MSELoss(), x, t).values():
        torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-6)


def test_gradient_check_covers_the_input_and_every_parameter() -> None:
    """The seed checks only the input's gradient; ours returns one pair per parameter too, each
    with its tensor's shape, and autograd's half equals the model's own backward."""
    model, x, t = small_problem(seed=1)
    result = model_gradient_check(model, nn.MSELoss(), x, t)
    assert list(result) == ["input", *(name for name, _ in model.named_parameters())]
    nn.MSELoss()(model(x), t).backward()
    for name, p in model.named_parameters():
        assert result[name][0].shape == result[name][1].shape == p.shape
        torch.testing.assert_close(result[name][0].float(), p.grad)


def test_gradient_check_leaves_the_model_and_input_untouched() -> None:
    model, x, t = small_problem(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_before = x.clone()
    model_gradient_check(model, nn.MSELoss(), x, t)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before) and not x.requires_grad


class _WrongBackwardSquare(torch.autograd.Function):
    """x² whose backward returns 2.02·x instead of 2x: a 1% error, above gradcheck's rtol 1e-3."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2.02 * x


class _WrongModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x):
        return _WrongBackwardSquare.apply(self.linear(x))


def test_gradient_check_finds_a_wrong_backward() -> None:
    torch.manual_seed(0)
    model, x, t = _WrongModel(), torch.randn(3, 2), torch.randn(3, 1)
    analytic, numeric = model_gradient_check(model, nn.MSELoss(), x, t)["linear.weight"]
    assert not torch.allclose(analytic, numeric, rtol=1e-6, atol=1e-6)
    assert model_gradcheck(model, nn.MSELoss(), x, t) is False


@settings(max_examples=5)
@given(seed=SEEDS)
def test_gradient_check_torch_gradcheck_passes_correct_models(seed: int) -> None:
    model, x, t = small_problem(seed)
    assert model_gradcheck(model, nn.MSELoss(), x, t) is True


@given(
    coefficients=COEFFICIENTS,
    points=POINTS,
    eps=st.sampled_from([1e-4, 1e-5, 1e-6]),
)
def test_gradient_check_numerical_gradients_match_the_closed_form(coefficients, points, eps):
    """Central differences of Σ p(x_i) equal p'(x_i) up to truncation and rounding. For |x| <= 2,
    |c| <= 5, degree <= 6 and at most 6 points: truncation eps²/6 · max|p'''| <= 1100 eps²;
    rounding, float64's u = 1.1e-16 times (degree + 1) times Σ|c_k||x|^k (<= 6 · 635 over all
    points), plus the rounding of x ± eps (2u|x| · |p'| <= 2u · 2 · 1605), all over eps: under
    1e-11 / eps."""
    x = torch.tensor(points, dtype=torch.float64)
    (numeric,) = numerical_gradients(lambda t: polynomial(t, coefficients).sum(), [x], eps)
    expected = P.polyval(np.array(points), P.polyder(coefficients))
    bound = 1100 * eps**2 + 1e-11 / eps
    np.testing.assert_allclose(numeric.numpy(), expected, rtol=0, atol=bound)
