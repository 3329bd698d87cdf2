"""The batch-normalisation facts of catalog §2 ``batch_norm``, checked on our hand-written layer
(``impl.models.batchnorm``, 002 Q48), in float64 so that each fact holds to rounding:

- training mode: per channel, the output before the affine has mean 0 and *biased* variance
  var / (var + eps), about 1;
- after k training batches the running statistics equal the closed form of the momentum recurrence,
  with the *unbiased* batch variance for ``running_var``;
- eval mode: the output is the running-statistics formula, and a sample's output depends on that
  sample only (while in training mode the other samples move it);
- a training batch of one sample raises ValueError, as nn.BatchNorm1d does, and changes nothing.

Parity with nn.BatchNorm1d itself is the registry's generated ``reference`` check.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from impl.models.batchnorm import BatchNorm1dScratch, BatchNormConfig

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
def test_training_output_is_standardised_with_the_biased_variance(
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
def test_running_statistics_follow_the_momentum_recurrence_with_the_unbiased_variance(
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


def test_running_var_uses_the_unbiased_variance_not_the_biased_one() -> None:
    """One batch of two samples, 0 and 2 in every channel: biased variance 1, unbiased 2, so
    running_var = 0.9 * 1 + 0.1 * 2 = 1.1 (the biased one would leave it at 1.0)."""
    bn = layer(3).train()
    bn(torch.tensor([[0.0] * 3, [2.0] * 3], dtype=torch.float64))
    torch.testing.assert_close(bn.running_var, torch.full((3,), 1.1, dtype=torch.float64))
    torch.testing.assert_close(bn.running_mean, torch.full((3,), 0.1, dtype=torch.float64))


@given(data=st.data(), k=st.integers(0, 3), channels=st.integers(1, 8))
def test_eval_output_uses_running_statistics_and_ignores_the_other_samples(
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


def test_training_output_of_a_sample_depends_on_the_other_samples() -> None:
    """The contrast that makes the eval check meaningful: batch statistics couple the samples."""
    bn = layer(4).train()
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[1:] += 1.0
    changed[1:] *= 2.0
    with torch.no_grad():
        assert (bn(x)[0] - bn(changed)[0]).abs().max() > 0.1


@given(x=batches(min_batch=1))
def test_a_training_batch_of_one_raises_like_torch_and_changes_nothing(x: torch.Tensor) -> None:
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
def test_training_gradient_matches_finite_differences(n: int, seed: int) -> None:
    """Backpropagation through the batch mean and variance, for the input and the affine."""
    bn = layer(3, seed=seed % 1000).train()

    def normalised(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(bn, {"weight": weight, "bias": bias}, (inputs,))

    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    args = (x, bn.weight.detach(), bn.bias.detach())
    assert torch.autograd.gradcheck(normalised, tuple(a.clone().requires_grad_() for a in args))
