"""Weight-initialisation statistics (curriculum 000 §11.1, 002 Q38/Q49; catalog B02).

Each law is checked three ways on a freshly initialised weight: the empirical std against the
closed form, the uniform bound, and a Kolmogorov-Smirnov test that must not reject the law.
PyTorch's own init tests use alpha = 1e-4 for a handful of draws; hypothesis tries many seeds
(200 per property in the thorough profile) and hunts for failures, so we use 1e-6: about one
false alarm in 5,000 runs of the thorough profile, while He's law tested against PyTorch's
default init still gives p-values below 1e-60.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from impl.techniques.init import (
    InitLaw,
    fans,
    init_weights,
    kaiming_law,
    pytorch_default_law,
    xavier_law,
)

KS_ALPHA = 1e-6


@st.composite
def weight_shapes(draw: st.DrawFn) -> tuple[int, ...]:
    """Linear (out, in) or Conv2d (out, in, k, k) shapes with at least 900 elements."""
    if draw(st.booleans()):
        return (draw(st.integers(30, 64)), draw(st.integers(30, 64)))
    k = draw(st.sampled_from([1, 3, 5]))
    out_channels = draw(st.integers(16, 32))
    min_in = max(4, math.ceil(900 / (out_channels * k * k)))
    return (out_channels, draw(st.integers(min_in, min_in + 24)), k, k)


def assert_follows(weight: torch.Tensor, law: InitLaw) -> None:
    w = weight.detach().double().flatten().numpy()
    n = w.size
    # the sample std of n draws is within 6 standard errors (uniform has the smaller error)
    assert abs(w.std() - law.std) <= 6 * law.std / math.sqrt(2 * n), (w.std(), law.std)
    if law.distribution == "uniform":
        assert abs(w).max() <= law.bound
        reference = stats.uniform(loc=-law.bound, scale=2 * law.bound)
    else:
        reference = stats.norm(loc=0.0, scale=law.std)
    assert stats.kstest(w, reference.cdf).pvalue > KS_ALPHA


@given(shape=weight_shapes())
def test_fans_match_torch(shape: tuple[int, ...]) -> None:
    assert fans(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_a_matrix() -> None:
    with pytest.raises(ValueError, match="rank >= 2"):
        fans((5,))


@given(
    shape=weight_shapes(),
    distribution=st.sampled_from(["normal", "uniform"]),
    gain=st.sampled_from([1.0, nn.init.calculate_gain("tanh"), nn.init.calculate_gain("relu")]),
    seed=st.integers(0, 2**31 - 1),
)
def test_xavier_matches_its_closed_form(shape, distribution, gain, seed) -> None:
    torch.manual_seed(seed)
    init = nn.init.xavier_normal_ if distribution == "normal" else nn.init.xavier_uniform_
    assert_follows(init(torch.empty(shape), gain=gain), xavier_law(shape, distribution, gain))


@given(
    shape=weight_shapes(),
    distribution=st.sampled_from(["normal", "uniform"]),
    mode=st.sampled_from(["fan_in", "fan_out"]),
    nonlinearity=st.sampled_from(["relu", "leaky_relu", "tanh", "linear"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_kaiming_matches_its_closed_form(shape, distribution, mode, nonlinearity, seed) -> None:
    torch.manual_seed(seed)
    init = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
    weight = init(torch.empty(shape), mode=mode, nonlinearity=nonlinearity)
    assert_follows(weight, kaiming_law(shape, distribution, mode, nonlinearity))


def test_closed_forms_by_hand() -> None:
    """Numbers worked out by hand (and quoted in the catalog), independent of the code above."""
    assert kaiming_law((1000, 1000), "normal", nonlinearity="relu").std == pytest.approx(
        0.04472, abs=1e-5
    )
    assert kaiming_law((10, 1000), "uniform", nonlinearity="relu").bound == pytest.approx(
        math.sqrt(6 / 1000)
    )
    assert xavier_law((30, 20), "uniform").bound == pytest.approx(math.sqrt(6 / 50))
    assert pytorch_default_law((1000, 1000)).std == pytest.approx(0.01826, abs=1e-5)
    assert pytorch_default_law((64, 64, 3, 3)).bound == pytest.approx(1 / math.sqrt(576))


@given(
    layer=st.sampled_from(["linear", "conv"]),
    width=st.integers(30, 60),
    seed=st.integers(0, 2**31 - 1),
)
def test_pytorch_default_init_is_uniform_one_over_sqrt_fan_in(
    layer: str, width: int, seed: int
) -> None:
    """Catalog B02: the default is kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)), for the
    weight and (separately) the bias. It is not He initialisation for ReLU."""
    torch.manual_seed(seed)
    module = nn.Linear(width, 40) if layer == "linear" else nn.Conv2d(width, 32, 3)
    law = pytorch_default_law(tuple(module.weight.shape))
    assert_follows(module.weight, law)
    assert module.bias.abs().max() <= law.bound
    he = kaiming_law(tuple(module.weight.shape), "normal", nonlinearity="relu")
    assert law.std / he.std == pytest.approx(1 / math.sqrt(6))  # 2.45x smaller than He
    w = module.weight.detach().double().flatten().numpy()
    assert stats.kstest(w, stats.norm(0, he.std).cdf).pvalue < KS_ALPHA, "He's law must be rejected"


@pytest.mark.parametrize("scheme", ["xavier", "kaiming"])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_init_weights_via_apply(scheme: str, distribution: str) -> None:
    """The curriculum's ``model.apply(_init_weights)`` pattern: laws on weights, zero biases,
    unit LayerNorm; modules it does not know keep their parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(16, 32, 3), nn.Flatten(), nn.Linear(60, 50), nn.LayerNorm(50), nn.Embedding(10, 4)
    )
    with torch.no_grad():
        model[3].weight.fill_(3.0)
    embedding_before = model[4].weight.clone()
    model.apply(lambda m: init_weights(m, scheme, distribution, nonlinearity="relu"))
    for layer in (model[0], model[2]):
        shape = tuple(layer.weight.shape)
        if scheme == "xavier":
            law = xavier_law(shape, distribution, nn.init.calculate_gain("relu"))
        else:
            law = kaiming_law(shape, distribution, nonlinearity="relu")
        assert_follows(layer.weight, law)
        assert not layer.bias.any()
    assert torch.equal(model[3].weight, torch.ones(50)) and not model[3].bias.any()
    assert torch.equal(model[4].weight, embedding_before)
    with pytest.raises(ValueError, match="scheme must be"):
        init_weights(nn.Linear(2, 2), "orthogonal")  # type: ignore[arg-type]
