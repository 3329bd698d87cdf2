"""Weight-initialisation statistics (curriculum 000 §11.1, 002 Q7/Q38/Q49/Q51 v2; catalog B02).

Each law is checked three ways on a freshly initialised weight: the empirical std against the
closed form, the uniform bound, and a Kolmogorov-Smirnov test that must not reject the law.
PyTorch's own init tests use alpha = 1e-4 for a handful of draws; hypothesis tries many seeds
(200 per property in the thorough profile) and hunts for failures, so we use 1e-6: about one
false alarm in 5,000 runs of the thorough profile, while He's law tested against PyTorch's
default init still gives p-values below 1e-60.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from checks.test_curriculum_bugs_unet import DoubleConv as CurriculumDoubleConvQ49  # 002 Q49
from checks.test_curriculum_bugs_unet import SeedUNet
from impl.techniques.init import (
    InitLaw,
    deep_linear_stack,
    detection_head_init,
    fans,
    init_weights,
    kaiming_law,
    normal_init_,
    preactivation_second_moments,
    pytorch_default_law,
    unet_init_weights,
    uniform_init_,
    unit_spread,
    vit_init_patch_embedding_,
    vit_init_weights,
    xavier_law,
    zero_init_,
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
def test_init_xavier_and_init_kaiming_fans_match_torch(shape: tuple[int, ...]) -> None:
    assert fans(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_init_xavier_fans_need_a_matrix() -> None:
    with pytest.raises(ValueError, match="rank >= 2"):
        fans((5,))


@given(
    shape=weight_shapes(),
    distribution=st.sampled_from(["normal", "uniform"]),
    gain=st.sampled_from([1.0, nn.init.calculate_gain("tanh"), nn.init.calculate_gain("relu")]),
    seed=st.integers(0, 2**31 - 1),
)
def test_init_xavier_matches_its_closed_form(shape, distribution, gain, seed) -> None:
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
def test_init_kaiming_matches_its_closed_form(
    shape, distribution, mode, nonlinearity, seed
) -> None:
    torch.manual_seed(seed)
    init = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
    weight = init(torch.empty(shape), mode=mode, nonlinearity=nonlinearity)
    assert_follows(weight, kaiming_law(shape, distribution, mode, nonlinearity))


def test_init_kaiming_closed_form_by_hand() -> None:
    """Numbers worked out by hand (and quoted in the catalog), independent of the code above."""
    assert kaiming_law((1000, 1000), "normal", nonlinearity="relu").std == pytest.approx(
        0.04472, abs=1e-5
    )
    assert kaiming_law((10, 1000), "uniform", nonlinearity="relu").bound == pytest.approx(
        math.sqrt(6 / 1000)
    )
    # UNet's fan_out mode (002 Q49) counts out_channels * k * k
    assert kaiming_law((64, 3, 3, 3), "normal", "fan_out", "relu").std == pytest.approx(
        math.sqrt(2 / (64 * 9))
    )


def test_init_xavier_closed_form_by_hand() -> None:
    assert xavier_law((30, 20), "uniform").bound == pytest.approx(math.sqrt(6 / 50))


def test_init_default_claim_closed_form_by_hand() -> None:
    assert pytorch_default_law((1000, 1000)).std == pytest.approx(0.01826, abs=1e-5)
    assert pytorch_default_law((64, 64, 3, 3)).bound == pytest.approx(1 / math.sqrt(576))


@given(
    layer=st.sampled_from(["linear", "conv"]),
    width=st.integers(30, 60),
    seed=st.integers(0, 2**31 - 1),
)
def test_init_default_claim_is_uniform_one_over_sqrt_fan_in(
    layer: str, width: int, seed: int
) -> None:
    """What PyTorch does: U(+-1/sqrt(fan_in)) for the weight and (separately) the bias."""
    torch.manual_seed(seed)
    module = nn.Linear(width, 40) if layer == "linear" else nn.Conv2d(width, 32, 3)
    law = pytorch_default_law(tuple(module.weight.shape))
    assert_follows(module.weight, law)
    assert module.bias.abs().max() <= law.bound


@given(width=st.integers(8, 64), seed=st.integers(0, 2**31 - 1))
def test_init_default_claim_is_kaiming_uniform_in_name_only(width: int, seed: int) -> None:
    """Linear's default draw is exactly ``kaiming_uniform_(a=sqrt(5))`` (same RNG stream,
    bit for bit), whose leaky-ReLU gain sqrt(2/(1+5)) makes it U(+-1/sqrt(fan_in))."""
    torch.manual_seed(seed)
    layer = nn.Linear(width, 17)
    torch.manual_seed(seed)
    expected = nn.init.kaiming_uniform_(torch.empty(17, width), a=math.sqrt(5))
    assert torch.equal(layer.weight.detach(), expected)
    law = kaiming_law((17, width), "uniform", nonlinearity="leaky_relu", a=math.sqrt(5))
    assert law.bound == pytest.approx(1 / math.sqrt(width))


def curriculum_claimed_default_law(shape: tuple[int, ...]) -> InitLaw:
    """000 §11.1.2 (the last line of the explanation): "PyTorch 中，模型默認會使用 Kaiming
    初始化方法初始化權重", with Kaiming as that section calls it:
    ``nn.init.kaiming_normal_(w, mode='fan_in', nonlinearity='relu')``."""
    fan_in = fans(shape)[0]
    return InitLaw("normal", math.sqrt(2.0 / fan_in))


@given(
    layer=st.sampled_from(["linear", "conv"]),
    width=st.integers(30, 60),
    seed=st.integers(0, 2**31 - 1),
)
def test_init_default_claim_seed_kaiming_claim_is_rejected_b02(
    layer: str, width: int, seed: int
) -> None:
    """Catalog B02: the seed's claimed law is rejected by KS (p < 1e-6) on PyTorch's default
    weights, whose std is sqrt(6) = 2.45 times smaller; our law passes on the same weights."""
    torch.manual_seed(seed)
    module = nn.Linear(width, 40) if layer == "linear" else nn.Conv2d(width, 32, 3)
    shape = tuple(module.weight.shape)
    claimed, ours = curriculum_claimed_default_law(shape), pytorch_default_law(shape)
    assert ours.std / claimed.std == pytest.approx(1 / math.sqrt(6))
    w = module.weight.detach().double().flatten().numpy()
    assert stats.kstest(w, stats.norm(0, claimed.std).cdf).pvalue < KS_ALPHA
    assert_follows(module.weight, ours)


@pytest.mark.parametrize("scheme", ["xavier", "kaiming"])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_init_custom_apply_generic_init_weights(scheme: str, distribution: str) -> None:
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


# --- init_normal_uniform (000 §11.1.2; 002 Q7) ---


@given(
    mean=st.floats(-1.0, 1.0),
    std=st.floats(1e-3, 1.0),
    shape=weight_shapes(),
    seed=st.integers(0, 2**31 - 1),
)
def test_init_normal_uniform_normal_matches_mean_and_std(mean, std, shape, seed) -> None:
    """Sample mean within 6 sd of it (std/sqrt(n)); sample std within 6 sd of it
    (std/sqrt(2n) for a normal sample)."""
    torch.manual_seed(seed)
    w = nn.init.normal_(torch.empty(shape, dtype=torch.float64), mean=mean, std=std)
    n = w.numel()
    assert abs(float(w.mean()) - mean) <= 6 * std / math.sqrt(n)
    assert abs(float(w.std()) - std) <= 6 * std / math.sqrt(2 * n)


@given(
    a=st.floats(-1.0, 0.0),
    width=st.floats(1e-3, 1.0),
    shape=weight_shapes(),
    seed=st.integers(0, 2**31 - 1),
)
def test_init_normal_uniform_uniform_stays_in_a_b_with_the_right_mean(a, width, shape, seed):
    """Every value in [a, b]; sample mean within 6 sd ((b - a)/sqrt(12 n)) of (a + b)/2."""
    b = a + width
    torch.manual_seed(seed)
    w = nn.init.uniform_(torch.empty(shape, dtype=torch.float64), a=a, b=b)
    assert float(w.min()) >= a and float(w.max()) <= b
    assert abs(float(w.mean()) - (a + b) / 2) <= 6 * (b - a) / math.sqrt(12 * w.numel())


@pytest.mark.parametrize("fill", [nn.init.normal_, nn.init.uniform_, nn.init.zeros_])
def test_init_normal_uniform_fills_in_place_and_returns_the_same_tensor(fill) -> None:
    w = torch.full((4, 3), 7.0)
    returned = fill(w)
    assert returned is w and not torch.equal(w, torch.full((4, 3), 7.0))


def test_init_normal_uniform_q7_linear_bias_is_exactly_zero() -> None:
    """002 Q7's Linear(3, 2) with ``normal_(w, 0.0, 0.02)`` and ``constant_(bias, 0.0)``."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    normal_init_(layer, std=0.02)
    assert torch.equal(layer.bias, torch.zeros(2)) and layer.weight.abs().max() < 0.02 * 6
    uniform_init_(layer, a=-0.1, b=0.1)
    assert torch.equal(layer.bias, torch.zeros(2)) and layer.weight.abs().max() <= 0.1


# --- init_zero_symmetry (000 §11.1.2) ---


def _symmetric_training_run(activation: str, fill: float | None, steps: int, seed: int):
    """A 5 -> 8 -> 3 MLP trained by full-batch SGD on seeded data; ``fill`` None: PyTorch's
    random init, otherwise every weight and bias set to ``fill`` (0: ``zero_init_``)."""
    g = torch.Generator().manual_seed(seed)
    act = {"sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "relu": nn.ReLU()}[activation]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), act, nn.Linear(8, 3)).double()
    if fill == 0.0:
        model.apply(zero_init_)
    elif fill is not None:
        for p in model.parameters():
            nn.init.constant_(p, fill)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    first_grad = None
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if first_grad is None:
            first_grad = model[0].weight.grad.clone()
        optimizer.step()
    return model, first_grad


@given(
    activation=st.sampled_from(["sigmoid", "tanh", "relu"]),
    fill=st.sampled_from([0.0, 0.3, -0.7]),
    steps=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=10)
def test_init_zero_symmetry_constant_init_never_breaks_symmetry(activation, fill, steps, seed):
    """Zero (or any constant) init: every hidden unit gets the same gradient at every step, so
    the hidden units' incoming weights (rows of W1) and outgoing weights (columns of W2) stay
    identical after any number of SGD steps. Identical rows go through identical float64
    arithmetic; 1e-12 allows for a reduction order that differs between rows."""
    model, first_grad = _symmetric_training_run(activation, fill, steps, seed)
    assert unit_spread(first_grad) <= 1e-12
    assert unit_spread(model[0].weight) <= 1e-12
    assert unit_spread(model[0].bias[:, None]) <= 1e-12
    assert unit_spread(model[2].weight.T) <= 1e-12


@given(activation=st.sampled_from(["sigmoid", "tanh", "relu"]), seed=st.integers(0, 2**31 - 1))
def test_init_zero_symmetry_random_init_gives_units_different_gradients(activation, seed):
    """Random (PyTorch default) init: the hidden units' gradients differ from the first step,
    and their weights stay apart after training."""
    model, first_grad = _symmetric_training_run(activation, None, 5, seed)
    assert unit_spread(first_grad) > 1e-6
    assert unit_spread(model[0].weight) > 1e-3


# --- variance propagation: init_xavier and init_kaiming (000 §11.1.2's claim) ---

DEPTH = 12
WIDTH = 256


def _log_band(depth: int, width: int, per_layer_variance: float) -> float:
    """5 standard deviations of log(q_L / q_0) for ``depth`` independent layers, each
    multiplying the second moment by a factor of relative variance ``per_layer_variance/width``
    (a chi-square with ``width`` degrees of freedom for a linear layer: 2/width; for a He
    layer followed by ReLU, E[2 relu(z)^2] = 1 and Var = 5, so 5/width). The batch average
    over inputs sharing the weights has at most this spread."""
    return 5 * math.sqrt(depth * per_layer_variance / width)


def _probe(depth: int, width: int, activation: str, init, seed: int) -> list[float]:
    torch.manual_seed(seed)
    stack = deep_linear_stack(depth, width, activation).double()
    stack.apply(init)
    x = torch.randn(64, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return preactivation_second_moments(stack, x)


def _tanh_mean_field(q0: float, gain: float, depth: int) -> list[float]:
    """Mean-field recursion for square tanh layers with weight variance gain^2/width (Poole et
    al., 2016): q_1 = gain^2 q_0, q_{l+1} = gain^2 E[tanh(sqrt(q_l) z)^2], z ~ N(0, 1), by
    80-point Gauss-Hermite quadrature (numpy, independent of torch)."""
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    qs = [q0, gain**2 * q0]
    for _ in range(depth - 1):
        qs.append(gain**2 * float((w * np.tanh(np.sqrt(qs[-1]) * z) ** 2).sum()))
    return qs


@given(
    width=st.sampled_from([128, WIDTH]),
    distribution=st.sampled_from(["normal", "uniform"]),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=5)
def test_init_xavier_keeps_variance_through_a_deep_linear_stack(width, distribution, seed):
    """Square Xavier layers: Var(w) = 1/width, so each layer keeps the second moment; after 12
    layers log(q_12/q_0) is within 5 sd (chi-square, see ``_log_band``) of 0."""
    qs = _probe(
        DEPTH,
        width,
        "identity",
        lambda m: init_weights(m, "xavier", distribution, nonlinearity="linear"),
        seed,
    )
    assert abs(math.log(qs[-1] / qs[0])) <= _log_band(DEPTH, width, 2.0)


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=5)
def test_init_xavier_tanh_gain_keeps_variance_as_mean_field_predicts(seed) -> None:
    """Xavier with gain calculate_gain('tanh') = 5/3 through 12 tanh layers: q_l follows the
    mean-field recursion (which settles at 1.18 q_0) within the linear stack's 5 sd band."""
    width = WIDTH
    qs = _probe(
        DEPTH, width, "tanh", lambda m: init_weights(m, "xavier", "normal", "fan_in", "tanh"), seed
    )
    predicted = _tanh_mean_field(qs[0], 5 / 3, DEPTH)
    assert abs(math.log(qs[-1] / predicted[-1])) <= _log_band(DEPTH, width, 2.0)
    assert 0.5 < predicted[-1] / qs[0] < 2.0  # the claim: the variance is kept


def curriculum_xavier_000(linear_layer: nn.Module) -> None:
    """000 §11.1.2 as written: ``nn.init.xavier_normal_(linear_layer.weight)`` (gain 1), with
    the claim that it keeps "每一層的輸出具有相同的方差"."""
    if isinstance(linear_layer, nn.Linear):
        nn.init.xavier_normal_(linear_layer.weight)


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=5)
def test_init_xavier_seed_default_gain_fades_through_tanh(seed) -> None:
    """The seed's call (gain 1) through 12 tanh layers: the variance fades as mean-field theory
    predicts (to about 0.03 of the input's), far outside any band of "the same variance".
    The claim holds for a linear stack, or for tanh with gain 5/3."""
    width = WIDTH
    qs = _probe(DEPTH, width, "tanh", curriculum_xavier_000, seed)
    predicted = _tanh_mean_field(qs[0], 1.0, DEPTH)
    assert abs(math.log(qs[-1] / predicted[-1])) <= _log_band(DEPTH, width, 2.0)
    assert qs[-1] / qs[0] < 0.1


@given(
    distribution=st.sampled_from(["normal", "uniform"]),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=5)
def test_init_kaiming_keeps_second_moment_through_a_deep_relu_stack(distribution, seed) -> None:
    """He fan_in for ReLU: Var(w) = 2/width and ReLU halves the second moment, so q_l stays
    q_1 = 2 q_0 from layer to layer; log(q_12/q_1) within 5 sd (5/width per layer)."""
    width = WIDTH
    qs = _probe(DEPTH, width, "relu", lambda m: init_weights(m, "kaiming", distribution), seed)
    assert abs(math.log(qs[-1] / qs[1])) <= _log_band(DEPTH - 1, width, 5.0)


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=5)
def test_init_kaiming_is_needed_pytorch_default_fades_through_relu(seed) -> None:
    """PyTorch's default (Var(w) = 1/(3 width), bias Var 1/(3 width)) through ReLU layers:
    q_{l+1} = q_l / 6 + 1/(3 width), down to the bias floor; the measured q_12 is within the
    5 sd band of that recursion and 100 times below q_1."""
    width = WIDTH
    qs = _probe(DEPTH, width, "relu", lambda m: None, seed)
    predicted = [qs[0] / 3 + 1 / (3 * width)]
    for _ in range(DEPTH - 1):
        predicted.append(predicted[-1] / 6 + 1 / (3 * width))
    assert abs(math.log(qs[-1] / predicted[-1])) <= _log_band(DEPTH, width, 5.0)
    assert qs[-1] < qs[1] / 100


# --- init_custom_apply: ViT (002 Q38), UNet (002 Q49), Mask R-CNN heads (002 Q51 v2) ---


class MiniViT(nn.Module):
    """The layer kinds of 002 Q38's ViT, small: patch conv, cls token, position embedding,
    one pre-LN block's Linear and LayerNorm layers, the head."""

    def __init__(self, channels: int = 3, patch: int = 4, dim: int = 48, classes: int = 10):
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 17, dim))
        self.norm1, self.qkv, self.proj = (
            nn.LayerNorm(dim),
            nn.Linear(dim, 3 * dim),
            nn.Linear(dim, dim),
        )
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def init_like_the_curriculum(self) -> None:
        vit_init_patch_embedding_(self.patch_embed)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)
        self.apply(vit_init_weights)


def _scrambled(model: nn.Module) -> nn.Module:
    """Every parameter set to 3.0, so an init that skips one shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_init_custom_apply_vit_linears_and_layernorms(seed: int) -> None:
    """After apply: every Linear bias is 0 and its weight is Xavier uniform; every LayerNorm has
    weight 1 and bias 0."""
    torch.manual_seed(seed)
    model = _scrambled(MiniViT())
    model.init_like_the_curriculum()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5
    for layer in linears:
        assert not layer.bias.any()
        assert_follows(layer.weight, xavier_law(tuple(layer.weight.shape), "uniform"))
    for norm in (model.norm1, model.norm2):
        assert torch.equal(norm.weight, torch.ones(48)) and not norm.bias.any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_init_custom_apply_vit_patch_embedding_is_initialised_through_its_2d_view(seed) -> None:
    """The patch conv is initialised in place through ``w.view(E, -1)``: Xavier with fans
    (C p p, E), not the 4-D conv's (C p p, E p p), which KS rejects; bias 0."""
    torch.manual_seed(seed)
    conv = _scrambled(nn.Conv2d(3, 48, 4, stride=4))
    vit_init_patch_embedding_(conv)
    assert_follows(conv.weight, xavier_law((48, 3 * 16), "uniform"))
    four_d = xavier_law((48, 3, 4, 4), "uniform")
    assert conv.weight.abs().max() > four_d.bound  # wider than the 4-D conv's law allows
    assert not conv.bias.any()


class CurriculumUNetInitQ49(nn.Module):
    """002 Q49 ``UNet``, reduced to a down path, a transposed-conv up path and ``OutConv``, with
    its ``self.apply(self._init_weights)`` as written."""

    def __init__(self, n_channels=3, n_classes=2):
        super().__init__()
        self.inc = CurriculumDoubleConvQ49(n_channels, 16)
        self.down1 = CurriculumDoubleConvQ49(16, 32)
        self.up = nn.ConvTranspose2d(32, 16, kernel_size=2, stride=2)
        self.outc = nn.Conv2d(16, n_classes, kernel_size=1)
        self.apply(self._init_weights)

    _init_weights = SeedUNet._init_weights  # the seed's, as written there


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_init_custom_apply_unet_convs_and_batchnorms(seed: int) -> None:
    """UNet: every Conv2d follows He normal in fan_out mode (std sqrt(2/(out k k))), conv biases
    are 0, BatchNorm2d is 1/0. ``ConvTranspose2d`` is not a Conv2d subclass, so it is left
    alone (at PyTorch's default in the seed)."""
    torch.manual_seed(seed)
    model = _scrambled(CurriculumUNetInitQ49())
    model.apply(unet_init_weights)
    for conv in model.modules():
        if type(conv) is nn.Conv2d:
            assert_follows(
                conv.weight, kaiming_law(tuple(conv.weight.shape), "normal", "fan_out", "relu")
            )
            assert conv.bias is None or not conv.bias.any()
        elif isinstance(conv, nn.BatchNorm2d):
            assert torch.equal(conv.weight, torch.ones_like(conv.weight)) and not conv.bias.any()
    assert torch.equal(model.up.weight, torch.full_like(model.up.weight, 3.0))


def _same_init(seed_init, our_init, model: nn.Module) -> None:
    """The seed's init and ours, each on a scrambled copy of ``model`` from the same RNG
    state, give the same tensors bit for bit."""
    theirs, ours = _scrambled(copy.deepcopy(model)), _scrambled(copy.deepcopy(model))
    torch.manual_seed(7)
    seed_init(theirs)
    torch.manual_seed(7)
    ours.apply(our_init)
    for (name, p), (_, q) in zip(theirs.named_parameters(), ours.named_parameters(), strict=True):
        assert torch.equal(p, q), name


def test_init_custom_apply_unet_matches_the_seed_bit_for_bit() -> None:
    torch.manual_seed(0)
    _same_init(lambda m: m.apply(m._init_weights), unet_init_weights, CurriculumUNetInitQ49())


class CurriculumRPNQ51(nn.Module):
    """002 Q51 v2 ``RPN.__init__`` as written (the init loop over ``self.modules()``)."""

    def __init__(self, in_channels=256, anchor_num=9):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 256, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True)
        )
        self.cls_layer = nn.Conv2d(256, anchor_num, kernel_size=1)
        self.reg_layer = nn.Conv2d(256, anchor_num * 4, kernel_size=1)
        self._seed_init()

    def _seed_init(self):  # the seed's loop, verbatim, as a method so a check can replay it
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)


class CurriculumRoIHeadsQ51(nn.Module):
    """002 Q51 v2 ``RoIHeads.__init__`` as written, without its RoIAlign (no parameters)."""

    def __init__(self, num_classes=21, in_channels=256, roi_size=7):
        super().__init__()
        roi_size = roi_size * roi_size * in_channels
        self.fc = nn.Sequential(
            nn.Linear(roi_size, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )
        self.cls_score = nn.Linear(1024, num_classes)
        self.bbox_pred = nn.Linear(1024, num_classes * 4)
        self._seed_init()

    def _seed_init(self):  # the seed's loop, verbatim, as a method so a check can replay it
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)


HEADS = [(CurriculumRPNQ51, {"in_channels": 16}), (CurriculumRoIHeadsQ51, {"in_channels": 4})]


@pytest.mark.parametrize(("head", "kwargs"), HEADS)
def test_init_custom_apply_detection_heads_are_normal_001_with_zero_bias(head, kwargs) -> None:
    """``model.apply(detection_head_init)``: every Conv2d/Linear weight has mean within 6 sd
    (0.01/sqrt(n)) of 0 and std within 6 sd (0.01/sqrt(2n), normal sample) of 0.01; every
    bias is exactly 0."""
    torch.manual_seed(0)
    model = _scrambled(head(**kwargs))
    model.apply(detection_head_init)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(layers) in (3, 4)
    for layer in layers:
        w = layer.weight.detach().double()
        n = w.numel()
        assert abs(float(w.mean())) <= 6 * 0.01 / math.sqrt(n)
        assert abs(float(w.std()) - 0.01) <= 6 * 0.01 / math.sqrt(2 * n)
        assert not layer.bias.any()


@pytest.mark.parametrize(("head", "kwargs"), HEADS)
def test_init_custom_apply_detection_heads_match_the_seed_loop_bit_for_bit(head, kwargs) -> None:
    """``apply`` visits modules children first, ``modules()`` parent first, but the leaves come
    in the same order, so ``apply`` and the seed's loop draw the same numbers."""
    torch.manual_seed(0)
    _same_init(lambda m: m._seed_init(), detection_head_init, head(**kwargs))
