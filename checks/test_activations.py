"""The hand-written activations of 002 Q28 (``impl.models.mlp``): Swish with a fixed or trainable
beta, and GELU exact (erf) or tanh-approximated. Catalog §2 ``activations``: Swish(beta=1) is SiLU,
each GELU equals PyTorch's, the two GELUs differ by at most 4.7e-4 on [-5, 5], a trainable beta
receives a gradient and a buffer beta does not; and every analytic gradient agrees with finite
differences (float64 gradcheck). Last, the model built on them equals its reference made of
PyTorch's layers for every activation, Swish's beta != 1 included.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from impl import get_spec
from impl.models.mlp import ACTIVATIONS, GELU, Swish, make_activation

# float32 inputs across the whole interesting range: the curve's bend, the tails, exact zeros
values = st.lists(st.floats(-30.0, 30.0, allow_nan=False, width=32), min_size=1, max_size=64).map(
    lambda xs: torch.tensor(xs, dtype=torch.float32)
)
# beta away from 0 (Swish is linear there) and of either sign
betas = st.floats(0.1, 5.0) | st.floats(-5.0, -0.1)


def float64_inputs(seed: int, shape=(3, 5)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=generator, dtype=torch.float64)).requires_grad_()


# float64 runs both sides to rounding, so even a slightly wrong constant shows
FLOAT64 = {"rtol": 1e-12, "atol": 1e-14}


@given(x=values, trainable=st.booleans())
def test_swish_with_beta_1_is_silu(x: torch.Tensor, trainable: bool) -> None:
    swish = Swish(1.0, trainable=trainable)
    with torch.no_grad():
        torch.testing.assert_close(swish(x), F.silu(x))
        torch.testing.assert_close(swish.double()(x.double()), F.silu(x.double()), **FLOAT64)


@given(x=values, beta=betas)
def test_swish_is_x_times_sigmoid_of_beta_x(x: torch.Tensor, beta: float) -> None:
    """For any beta, Swish is SiLU(beta x) / beta: the identity the reference model folds with."""
    x64, swish = x.double(), Swish(beta).double()
    b = swish.beta.item()  # beta as stored: a float32 tensor, made float64 by .double()
    with torch.no_grad():
        torch.testing.assert_close(swish(x64), F.silu(b * x64) / b, **FLOAT64)


@given(x=values)
def test_tanh_gelu_matches_pytorch(x: torch.Tensor) -> None:
    torch.testing.assert_close(GELU("tanh")(x), F.gelu(x, approximate="tanh"))
    x64 = x.double()
    torch.testing.assert_close(GELU("tanh")(x64), F.gelu(x64, approximate="tanh"), **FLOAT64)


@given(x=values)
def test_exact_gelu_matches_pytorch(x: torch.Tensor) -> None:
    torch.testing.assert_close(GELU()(x), F.gelu(x))
    torch.testing.assert_close(GELU("none")(x), nn.GELU()(x))
    torch.testing.assert_close(GELU()(x.double()), F.gelu(x.double()), **FLOAT64)


def test_exact_and_tanh_gelu_differ_by_at_most_4_7e_4_on_minus_5_to_5() -> None:
    """Catalog: the largest difference on [-5, 5] is 4.7e-4 (at x = +-2.70), in float64."""
    x = torch.linspace(-5.0, 5.0, 1_000_001, dtype=torch.float64)
    difference = (GELU("none")(x) - GELU("tanh")(x)).abs()
    assert 0.0 < difference.max().item() < 1e-3
    assert difference.max().item() == pytest.approx(4.7e-4, rel=0.01)
    assert abs(x[difference.argmax()].item()) == pytest.approx(2.70, abs=0.01)


@given(x=st.floats(-5.0, 5.0, allow_nan=False))
def test_the_two_gelus_stay_within_that_bound_at_any_point(x: float) -> None:
    t = torch.tensor([x], dtype=torch.float64)
    assert (GELU("none")(t) - GELU("tanh")(t)).abs().item() <= 4.74e-4


@given(seed=st.integers(0, 2**31 - 1), beta=betas)
def test_a_trainable_beta_is_a_parameter_and_gets_its_gradient(seed: int, beta: float) -> None:
    """d/d(beta) sum(x sigmoid(beta x)) = sum(x^2 sigmoid'(beta x)), sigmoid' = s (1 - s)."""
    swish = Swish(beta, trainable=True).double()
    assert [name for name, _ in swish.named_parameters()] == ["beta"]
    assert "beta" in swish.state_dict()
    x = float64_inputs(seed)
    swish(x).sum().backward()
    s = torch.sigmoid(swish.beta.detach() * x.detach())
    expected = (x.detach() ** 2 * s * (1 - s)).sum()
    assert swish.beta.grad is not None
    torch.testing.assert_close(swish.beta.grad, expected)


@given(seed=st.integers(0, 2**31 - 1), beta=betas)
def test_a_buffer_beta_gets_no_gradient_and_is_saved(seed: int, beta: float) -> None:
    swish = Swish(beta).double()
    assert list(swish.parameters()) == []
    assert [name for name, _ in swish.named_buffers()] == ["beta"]
    x = float64_inputs(seed)
    swish(x).sum().backward()
    assert not swish.beta.requires_grad and swish.beta.grad is None
    assert x.grad is not None  # the input still gets its gradient
    # the state_dict carries beta: a Swish built with another beta takes it over
    other = Swish(beta + 1.0).double()
    other.load_state_dict(swish.state_dict())
    assert other.beta.item() == pytest.approx(beta)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(seed=st.integers(0, 2**31 - 1))
def test_gelu_gradient_matches_finite_differences(approximate: str, seed: int) -> None:
    assert torch.autograd.gradcheck(GELU(approximate), (float64_inputs(seed),))


@pytest.mark.parametrize("trainable", [False, True])
@given(seed=st.integers(0, 2**31 - 1), beta=betas)
def test_swish_gradient_matches_finite_differences(trainable: bool, seed: int, beta: float) -> None:
    """The input's gradient, and beta's too: beta is passed in through ``functional_call``, so
    gradcheck perturbs it (for a buffer beta this checks the derivative the buffer never gets)."""
    swish = Swish(beta, trainable=trainable).double()
    beta64 = torch.tensor(beta, dtype=torch.float64, requires_grad=True)

    def swish_of(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return functional_call(swish, {"beta": b}, (x,))

    assert torch.autograd.gradcheck(swish_of, (float64_inputs(seed), beta64))


def test_unknown_activation_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        make_activation("swishy")
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        GELU("erf")
    with pytest.raises(ValueError, match="unknown activation"):
        get_spec("mlp_784_256_10_act").config("tiny", activation="tanh")


def test_every_activation_has_a_tiny_and_a_full_size() -> None:
    spec = get_spec("mlp_784_256_10_act")
    for name in ACTIVATIONS:
        assert spec.config(f"tiny_{name}").activation == name
        assert spec.config(f"full_{name}").activation == name
    assert spec.config("full") == spec.config("full_swish_trainable")  # the seed's default


# (size, the PyTorch activation its reference must use)
REFERENCE_LAYERS = {
    "tiny_relu": nn.ReLU,
    "tiny_gelu": nn.GELU,
    "tiny_gelu_tanh": nn.GELU,
    "tiny_swish": nn.SiLU,
    "tiny_swish_trainable": nn.SiLU,
}


@pytest.mark.parametrize("size", sorted(REFERENCE_LAYERS))
@given(seed=st.integers(0, 2**31 - 1), beta=betas)
def test_model_equals_its_reference_for_every_activation(size: str, seed: int, beta: float) -> None:
    """The registry's reference check runs the default (beta = 1) only; here every activation,
    and Swish at any beta, which the reference folds into its Linear layers around nn.SiLU."""
    spec = get_spec("mlp_784_256_10_act")
    cfg = spec.config(size, swish_beta=beta)
    torch.manual_seed(seed % 1000)
    model = spec.build(cfg).eval()
    reference = spec.reference(model).eval()
    layers = [m for m in reference.modules() if m is not reference]
    assert all(type(m).__module__.startswith("torch.nn.modules") for m in layers)
    assert any(type(m) is REFERENCE_LAYERS[size] for m in layers)
    if size == "tiny_gelu_tanh":
        assert any(getattr(m, "approximate", "") == "tanh" for m in layers)
    (x,) = spec.inputs(cfg, 4, seed=seed)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), model(x), rtol=1e-5, atol=1e-5)
