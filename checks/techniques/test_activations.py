"""Checks of ``impl.techniques.activations``: techniques ``activations`` and
``relu_module_vs_functional`` (catalog §2).

``activations`` (002 Q28, 001 Q2, 004 L236-253): Swish(beta=1) is SiLU, each GELU equals
PyTorch's, the two GELUs differ by at most 4.7e-4 on [-5, 5], a trainable beta receives a
gradient and a buffer beta does not, every analytic gradient agrees with finite differences
(float64 gradcheck); sigmoid and tanh have open ranges (B60), the Q28 table's activations have a
sensitive region and the limits the closed forms give, ReLU is dead below 0 where LeakyReLU is
not, and without an activation stacked Linear layers are one Linear. Last, the MLP built on them
(``mlp_784_256_10_act``) equals its reference made of PyTorch's layers for every activation.

``relu_module_vs_functional`` (002 Q27, 004 L353-355): nn.ReLU, F.relu and torch.relu are one
function with no state, and in-place forms exist (B28).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from checks.test_curriculum_bugs_q28_q33_q48 import Swish as CurriculumSwishQ28v2
from impl import get_spec
from impl.models.mlp import ACTIVATIONS, make_activation
from impl.techniques.activations import (
    GELU,
    RELU_STYLES,
    ReLUNet,
    Swish,
    collapse_linear_stack,
    gelu,
    swish,
)

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
def test_activations_swish_with_beta_1_is_silu(x: torch.Tensor, trainable: bool) -> None:
    swish = Swish(1.0, trainable=trainable)
    with torch.no_grad():
        torch.testing.assert_close(swish(x), F.silu(x))
        torch.testing.assert_close(swish.double()(x.double()), F.silu(x.double()), **FLOAT64)


@given(x=values, beta=betas)
def test_activations_swish_is_x_times_sigmoid_of_beta_x(x: torch.Tensor, beta: float) -> None:
    """For any beta, Swish is SiLU(beta x) / beta: the identity the reference model folds with."""
    x64, swish = x.double(), Swish(beta).double()
    b = swish.beta.item()  # beta as stored: a float32 tensor, made float64 by .double()
    with torch.no_grad():
        torch.testing.assert_close(swish(x64), F.silu(b * x64) / b, **FLOAT64)


@given(x=values)
def test_activations_tanh_gelu_matches_pytorch(x: torch.Tensor) -> None:
    torch.testing.assert_close(GELU("tanh")(x), F.gelu(x, approximate="tanh"))
    x64 = x.double()
    torch.testing.assert_close(GELU("tanh")(x64), F.gelu(x64, approximate="tanh"), **FLOAT64)


@given(x=values)
def test_activations_exact_gelu_matches_pytorch(x: torch.Tensor) -> None:
    torch.testing.assert_close(GELU()(x), F.gelu(x))
    torch.testing.assert_close(GELU("none")(x), nn.GELU()(x))
    torch.testing.assert_close(GELU()(x.double()), F.gelu(x.double()), **FLOAT64)


def test_activations_exact_and_tanh_gelu_differ_by_at_most_4_7e_4_on_minus_5_to_5() -> None:
    """Catalog: the largest difference on [-5, 5] is 4.7e-4 (at x = +-2.70), in float64."""
    x = torch.linspace(-5.0, 5.0, 1_000_001, dtype=torch.float64)
    difference = (GELU("none")(x) - GELU("tanh")(x)).abs()
    assert 0.0 < difference.max().item() < 1e-3
    assert difference.max().item() == pytest.approx(4.7e-4, rel=0.01)
    assert abs(x[difference.argmax()].item()) == pytest.approx(2.70, abs=0.01)


@given(x=st.floats(-5.0, 5.0, allow_nan=False))
def test_activations_the_two_gelus_stay_within_that_bound_at_any_point(x: float) -> None:
    t = torch.tensor([x], dtype=torch.float64)
    assert (GELU("none")(t) - GELU("tanh")(t)).abs().item() <= 4.74e-4


@given(seed=st.integers(0, 2**31 - 1), beta=betas)
def test_activations_a_trainable_beta_is_a_parameter_and_gets_its_gradient(
    seed: int, beta: float
) -> None:
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
def test_activations_a_buffer_beta_gets_no_gradient_and_is_saved(seed: int, beta: float) -> None:
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
def test_activations_gelu_gradient_matches_finite_differences(approximate: str, seed: int) -> None:
    assert torch.autograd.gradcheck(GELU(approximate), (float64_inputs(seed),))


@pytest.mark.parametrize("trainable", [False, True])
@given(seed=st.integers(0, 2**31 - 1), beta=betas)
def test_activations_swish_gradient_matches_finite_differences(
    trainable: bool, seed: int, beta: float
) -> None:
    """The input's gradient, and beta's too: beta is passed in through ``functional_call``, so
    gradcheck perturbs it (for a buffer beta this checks the derivative the buffer never gets)."""
    swish = Swish(beta, trainable=trainable).double()
    beta64 = torch.tensor(beta, dtype=torch.float64, requires_grad=True)

    def swish_of(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return functional_call(swish, {"beta": b}, (x,))

    assert torch.autograd.gradcheck(swish_of, (float64_inputs(seed), beta64))


def test_activations_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        make_activation("swishy")
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        GELU("erf")
    with pytest.raises(ValueError, match="unknown activation"):
        get_spec("mlp_784_256_10_act").config("tiny", activation="tanh")


def test_activations_every_one_has_a_tiny_and_a_full_mlp_size() -> None:
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
def test_activations_mlp_equals_its_reference_for_every_activation(
    size: str, seed: int, beta: float
) -> None:
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


# ---------------------------------------------------------------------------------------------
# The functional forms, and the seed's Swish (002 Q28 v2)


@given(x=values, beta=betas)
def test_activations_functional_swish_and_gelu_equal_their_modules(x: torch.Tensor, beta: float):
    b = torch.tensor(beta)
    torch.testing.assert_close(swish(x, b), Swish(beta)(x), rtol=0, atol=0)
    torch.testing.assert_close(swish(x, torch.tensor(1.0)), F.silu(x))
    for approximate in ("none", "tanh"):
        torch.testing.assert_close(gelu(x, approximate), F.gelu(x, approximate=approximate))
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        gelu(x, "erf")


def test_activations_an_integer_beta_is_stored_as_float_where_the_seeds_cannot_train() -> None:
    """``Swish(beta=1, trainable=True)``: the seed's ``torch.tensor(1)`` is int64, which
    ``nn.Parameter`` refuses (only floating tensors require grad); ours stores float32."""
    with pytest.raises(RuntimeError, match="floating point"):
        CurriculumSwishQ28v2(beta=1, trainable=True)  # 002 Q28 v2 as written
    ours = Swish(beta=1, trainable=True)
    assert ours.beta.dtype == torch.float32 and ours.beta.requires_grad
    assert Swish(beta=2).beta.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# 001 Q2 and 004 L236-253: ranges, limits, a sensitive region, and why a nonlinearity at all


@given(x=st.floats(-36.0, 36.0, allow_nan=False))
def test_activations_sigmoid_range_is_open_not_the_seeds_closed_0_1_b60(x: float) -> None:
    """001 Q2 says sigmoid squashes to [0, 1] and tanh to [-1, 1] (catalog B60): the ranges are
    open. No finite input reaches an end: the preimages of 0 and 1 are -inf and +inf (logit and
    atanh), and in float64 every |x| <= 36 (sigmoid) or <= 18 (tanh) stays strictly inside,
    beyond which 1 - sigmoid(x) ~ e^-x and 1 - tanh(x) ~ 2 e^-2x fall below float64's 1.1e-16
    and round. In float32 the rounding comes sooner: sigmoid(20) is exactly 1.0 (the catalog's
    figure), an artefact of the format, not a value of the function."""
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.logit(ends).tolist() == [float("-inf"), float("inf")]
    assert torch.atanh(2 * ends - 1).tolist() == [float("-inf"), float("inf")]
    t = torch.tensor(x, dtype=torch.float64)
    assert 0.0 < torch.sigmoid(t).item() < 1.0
    if abs(x) <= 18.0:
        assert -1.0 < torch.tanh(t).item() < 1.0
    assert torch.sigmoid(torch.tensor(20.0)).item() == 1.0  # float32 rounding


# The elementwise activations of 002 Q28's table (Softmax(dim=1) is not elementwise: it is a
# loss-side matter, B18/B51), with their limits at -inf and +inf from the closed forms (None:
# unbounded), and the largest slope on [-5, 5] (sigmoid's 1/4 at 0; 1 for the rest).
Q28_TABLE = {
    "ReLU": (nn.ReLU(), 0.0, None, 1.0),
    "LeakyReLU(0.01)": (nn.LeakyReLU(0.01), None, None, 1.0),
    "SiLU": (nn.SiLU(), 0.0, None, 1.0998),  # max of s + x s (1 - s), at x = 2.3994
    "Sigmoid": (nn.Sigmoid(), 0.0, 1.0, 0.25),
    "Tanh": (nn.Tanh(), -1.0, 1.0, 1.0),
    "ELU(1.0)": (nn.ELU(1.0), -1.0, None, 1.0),
    "GELU": (nn.GELU(), 0.0, None, 1.1289),  # max of Phi(x) + x phi(x), at x = sqrt(2)
    "Softplus": (nn.Softplus(), 0.0, None, 0.9933),  # sigmoid(5), the slope at the interval's end
    "Hardtanh(-1, 1)": (nn.Hardtanh(-1.0, 1.0), -1.0, 1.0, 1.0),
}


@pytest.mark.parametrize("name", list(Q28_TABLE))
def test_activations_q28_table_limits_and_sensitive_region(name: str) -> None:
    """004 L245-251: an activation has a sensitive region (a slope of order 1) and most saturate
    towards a lower and an upper limit. Here, from the closed forms: which limits exist and their
    values (f(-+1e4) within 1e-9; unbounded: |f(+-1e4)| >= 1e2), and the largest slope on
    [-5, 5] (autograd on a 1e-4 grid, to 1e-3). Only sigmoid, tanh and hardtanh have both
    limits; LeakyReLU has neither."""
    module, lower, upper, max_slope = Q28_TABLE[name]
    far = torch.tensor([-1e4, 1e4], dtype=torch.float64)
    low, high = module(far).tolist()
    for value, limit in ((low, lower), (high, upper)):
        if limit is None:
            assert abs(value) >= 1e2
        else:
            assert value == pytest.approx(limit, abs=1e-9)
    x = torch.linspace(-5, 5, 100_001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(module(x).sum(), x)
    assert slope.max().item() == pytest.approx(max_slope, abs=1e-3)


@given(x=st.floats(-50.0, -1e-3) | st.floats(1e-3, 50.0))
def test_activations_relu_is_dead_below_zero_and_leaky_relu_is_not(x: float) -> None:
    """Catalog C-relu-dead (002 Q28 table): ReLU's gradient is 0 for x < 0 (and 1 above);
    LeakyReLU's is its negative_slope, 0.01, there."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (relu_grad,) = torch.autograd.grad(F.relu(t), t)
    (leaky_grad,) = torch.autograd.grad(F.leaky_relu(t, 0.01), t)
    assert relu_grad.item() == (0.0 if x < 0 else 1.0)
    assert leaky_grad.item() == pytest.approx(0.01 if x < 0 else 1.0)


@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    seed=st.integers(0, 2**31 - 1),
)
def test_activations_stacked_linear_layers_without_one_are_one_linear(sizes, seed) -> None:
    """004 L240 (catalog C-neuron-activation): with no activation between them, Linear layers
    compose to one Linear, W = W2 W1 and b = W2 b1 + b2 (here any depth); with a ReLU between
    them the function is no longer affine: g(x) + g(y) != g(x + y) + g(0) for some x, y."""
    torch.manual_seed(seed % 10_000)
    layers = [nn.Linear(a, b).double() for a, b in zip(sizes, sizes[1:], strict=False)]
    x = torch.randn(7, sizes[0], dtype=torch.float64)
    merged = collapse_linear_stack(*layers)
    with torch.no_grad():
        stacked = nn.Sequential(*layers)(x)
        torch.testing.assert_close(merged(x), stacked, rtol=1e-12, atol=1e-12)
    assert (merged.in_features, merged.out_features) == (sizes[0], sizes[-1])


def test_activations_a_relu_between_linear_layers_makes_the_network_non_affine() -> None:
    """The other half of C-neuron-activation: an affine g has g(x) + g(y) = g(x + y) + g(0) for
    every x and y; the same two layers with a ReLU between them violate it."""
    torch.manual_seed(0)
    first, second = nn.Linear(3, 8).double(), nn.Linear(8, 2).double()
    affine = nn.Sequential(first, second)
    with_relu = nn.Sequential(first, nn.ReLU(), second)
    x, y = torch.randn(2, 16, 3, dtype=torch.float64).unbind(0)
    zero = torch.zeros_like(x)
    with torch.no_grad():
        gap = {
            name: (g(x) + g(y) - g(x + y) - g(zero)).abs().max().item()
            for name, g in (("affine", affine), ("relu", with_relu))
        }
    assert gap["affine"] < 1e-12
    assert gap["relu"] > 1e-2


def test_activations_collapse_linear_stack_refuses_layers_that_do_not_chain() -> None:
    with pytest.raises(ValueError, match="cannot follow"):
        collapse_linear_stack(nn.Linear(3, 4), nn.Linear(5, 2))
    with pytest.raises(ValueError, match="at least one"):
        collapse_linear_stack()


# ---------------------------------------------------------------------------------------------
# relu_module_vs_functional: 002 Q27's "which one to use in CNN design" (B28)


class CurriculumQ27ReLUModule(nn.Module):
    """002 Q27's recommended form (``nn.ReLU()`` defined in ``__init__``), minimal."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc(x))


class CurriculumQ27TorchRelu(nn.Module):
    """002 Q27's "avoid" form: ``torch.relu`` in ``forward``, which the seed says "cannot be
    stored in the state_dict and does not support inplace=True"."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x))


@given(x=values)
def test_relu_module_vs_functional_all_forms_are_numerically_identical(x: torch.Tensor) -> None:
    """nn.ReLU, F.relu and torch.relu, and their in-place forms, give the same values, bit for
    bit (the inputs include exact zeros and both signs of large values)."""
    expected = torch.where(x > 0, x, torch.zeros_like(x))  # max(x, 0) from its definition
    results = {
        "nn.ReLU": nn.ReLU()(x),
        "F.relu": F.relu(x),
        "torch.relu": torch.relu(x),
        "nn.ReLU(inplace=True)": nn.ReLU(inplace=True)(x.clone()),
        "F.relu(inplace=True)": F.relu(x.clone(), inplace=True),
        "torch.relu_": torch.relu_(x.clone()),
    }
    for name, result in results.items():
        torch.testing.assert_close(result, expected, rtol=0, atol=0, msg=name)


def test_relu_module_vs_functional_relu_has_no_parameters_buffers_or_state() -> None:
    relu = nn.ReLU()
    assert list(relu.parameters()) == [] and list(relu.buffers()) == []
    assert relu.state_dict() == {}


@pytest.mark.parametrize("inplace", [False, True])
@given(seed=st.integers(0, 2**31 - 1))
def test_relu_module_vs_functional_the_three_nets_share_state_dict_outputs_and_gradients(
    inplace: bool, seed: int
) -> None:
    """``ReLUNet`` in its three styles: one state_dict (fc1 and fc2 only, loadable across styles
    with strict=True), the same outputs and the same parameter gradients, bit for bit."""
    torch.manual_seed(seed % 10_000)
    nets = {style: ReLUNet(4, 6, 3, relu=style, inplace=inplace) for style in RELU_STYLES}
    reference = nets["module"].state_dict()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(seed))
    outputs, grads = {}, {}
    for style, net in nets.items():
        assert list(net.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        net.load_state_dict(reference, strict=True)
        out = net(x)
        out.square().sum().backward()
        outputs[style] = out.detach()
        grads[style] = [p.grad for p in net.parameters()]
    for style in RELU_STYLES[1:]:
        torch.testing.assert_close(outputs[style], outputs["module"], rtol=0, atol=0)
        for g, g_ref in zip(grads[style], grads["module"], strict=True):
            torch.testing.assert_close(g, g_ref, rtol=0, atol=0)


def test_relu_module_vs_functional_seed_claims_torch_relu_loses_state_b28() -> None:
    """Catalog B28: the seed's recommended nn.ReLU model and its "avoid" torch.relu model have the
    same state_dict keys (the Linear's only): there is no ReLU state to store in either. A
    checkpoint of one loads into the other with strict=True and gives the same outputs."""
    torch.manual_seed(0)
    recommended, avoided = CurriculumQ27ReLUModule(), CurriculumQ27TorchRelu()
    assert list(recommended.state_dict()) == list(avoided.state_dict()) == ["fc.weight", "fc.bias"]
    avoided.load_state_dict(recommended.state_dict(), strict=True)
    x = torch.randn(8, 4)
    with torch.no_grad():
        torch.testing.assert_close(avoided(x), recommended(x), rtol=0, atol=0)


def test_relu_module_vs_functional_seed_claims_no_inplace_b28_but_torch_relu_underscore_is() -> (
    None
):
    """Catalog B28: "does not support inplace=True". ``torch.relu_(x)`` and
    ``F.relu(x, inplace=True)`` overwrite x's own storage (same data pointer, x changed) and
    backpropagate like the out-of-place form when x is an intermediate result."""
    for relu_in_place in (torch.relu_, lambda t: F.relu(t, inplace=True)):
        x = torch.tensor([-2.0, -0.5, 0.0, 1.5])
        pointer = x.data_ptr()
        out = relu_in_place(x)
        assert out.data_ptr() == pointer
        assert x.tolist() == [0.0, 0.0, 0.0, 1.5]
        w = torch.tensor([-1.0, 2.0, 3.0, 4.0], requires_grad=True)
        relu_in_place(w * 2).sum().backward()
        assert w.grad.tolist() == [0.0, 2.0, 2.0, 2.0]


def test_relu_module_vs_functional_a_reused_relu_module_is_seen_twice_by_hooks() -> None:
    """004 L355: reusing one stateless module is correct but can mislead analysis tools: a
    forward hook on a shared nn.ReLU fires once per use, so a per-layer profiler or activation
    logger sees one "layer" twice; separate objects keep one call per layer."""
    shared = nn.ReLU()
    net = nn.Sequential(nn.Linear(3, 3), shared, nn.Linear(3, 3), shared)
    calls: list[int] = []
    shared.register_forward_hook(lambda module, args, out: calls.append(id(module)))
    net(torch.randn(2, 3))
    assert calls == [id(shared), id(shared)]
    separate = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU())
    seen: list[int] = []
    for m in separate:
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda module, args, out: seen.append(id(module)))
    separate(torch.randn(2, 3))
    assert len(set(seen)) == 2


def test_relu_module_vs_functional_relunet_rejects_an_unknown_style() -> None:
    with pytest.raises(ValueError, match="relu must be one of"):
        ReLUNet(2, 2, 2, relu="lambda")  # type: ignore[arg-type]
