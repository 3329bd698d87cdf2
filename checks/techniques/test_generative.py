"""The VAE's reparameterisation and KL term (catalog ``vae_reparam_kl``, 002 Q44) and the GAN's
alternating updates (catalog ``gan_training``, 002 Q34 v2), on small modules made for the checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

from impl.techniques.generative import (
    GANTrainer,
    GaussianLatent,
    MLPDiscriminator,
    MLPGenerator,
    gaussian_kl,
    reparameterize,
    vae_loss,
)

SEEDS = st.integers(0, 2**31 - 1)
SHAPES = st.tuples(st.integers(1, 6), st.integers(1, 5))


def _gaussians(seed: int, shape: tuple[int, int], scale: float = 2.0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g, dtype=torch.float64) * scale for _ in range(4))


# --- vae_reparam_kl ---------------------------------------------------------------------------


@given(seed=SEEDS, shape=SHAPES)
def test_vae_reparam_kl_analytic_kl_equals_torch_distributions_kl_divergence(seed, shape) -> None:
    mu, logvar, mu_p, logvar_p = _gaussians(seed, shape)
    expected = kl_divergence(
        Normal(mu, torch.exp(0.5 * logvar)), Normal(mu_p, torch.exp(0.5 * logvar_p))
    )
    ours = gaussian_kl(mu, logvar, mu_p, logvar_p, reduction="none")
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@given(seed=SEEDS, shape=SHAPES)
def test_vae_reparam_kl_standard_prior_is_the_curriculums_closed_form(seed, shape) -> None:
    """002 Q44 v2 ``loss_function``: KLD = -0.5 * sum(1 + log_var - mu^2 - exp(log_var)), and
    the same against torch's KL from N(0, 1)."""
    mu, logvar, _, _ = _gaussians(seed, shape)
    curriculum = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    torch.testing.assert_close(gaussian_kl(mu, logvar), curriculum, rtol=1e-10, atol=1e-12)
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), prior).sum()
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected, rtol=1e-10, atol=1e-12)


@given(seed=SEEDS, shape=SHAPES)
def test_vae_reparam_kl_batchmean_is_the_sum_over_the_batch_size(seed, shape) -> None:
    mu, logvar, _, _ = _gaussians(seed, shape)
    torch.testing.assert_close(
        gaussian_kl(mu, logvar, reduction="batchmean"), gaussian_kl(mu, logvar) / shape[0]
    )


@given(seed=SEEDS, shape=SHAPES)
def test_vae_reparam_kl_is_zero_at_the_prior_and_positive_elsewhere(seed, shape) -> None:
    mu, logvar, _, _ = _gaussians(seed, shape)
    zero = torch.zeros(shape, dtype=torch.float64)
    assert gaussian_kl(zero, zero).item() == 0.0
    assert (gaussian_kl(mu, logvar, reduction="none") > 0).all()  # Gibbs: KL > 0 off the prior


@given(seed=SEEDS, shape=SHAPES)
def test_vae_reparam_kl_gradient_reaches_mu_and_logvar_through_z(seed, shape) -> None:
    """dz/dmu = 1 and dz/dlogvar = 0.5 * eps * exp(0.5 * logvar), element by element."""
    mu, logvar, eps, _ = _gaussians(seed, shape, scale=1.0)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    reparameterize(mu, logvar, eps).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * eps * torch.exp(0.5 * logvar.detach()))


def test_vae_reparam_kl_normal_sample_has_no_gradient_and_rsample_does() -> None:
    """Why the trick: ``Normal.sample`` draws under no_grad, ``rsample`` is mu + eps * sigma."""
    mu = torch.zeros(3, requires_grad=True)
    sigma = torch.ones(3, requires_grad=True)
    assert not Normal(mu, sigma).sample().requires_grad
    Normal(mu, sigma).rsample().sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(3))


@given(seed=SEEDS, logvar=st.floats(-200.0, -60.0))
def test_vae_reparam_kl_z_tends_to_mu_as_logvar_tends_to_minus_infinity(seed, logvar) -> None:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    z = reparameterize(mu, torch.full_like(mu, logvar), generator=g)
    # |z - mu| = |eps| sigma <= 10 exp(logvar / 2), since |eps| < 10 for any standard normal
    # draw in practice (P < 2e-23 per element)
    assert (z - mu).abs().max().item() <= 10 * math.exp(logvar / 2)


def test_vae_reparam_kl_samples_have_mean_mu_and_variance_exp_logvar() -> None:
    """n = 40,000 draws at each of 3 (mu, logvar) pairs. Tolerances, 5 sd of the sampling
    distribution: the mean's sd is sigma / sqrt(n); the sample variance's sd is
    sigma^2 sqrt(2 / (n - 1)) (normal data)."""
    n = 40_000
    mu = torch.tensor([0.0, 1.5, -3.0], dtype=torch.float64)
    logvar = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = reparameterize(mu.expand(n, 3), logvar.expand(n, 3), generator=g)  # (n, 3)
    sigma2 = logvar.exp()
    assert ((z.mean(0) - mu).abs() <= 5 * sigma2.sqrt() / math.sqrt(n)).all()
    assert ((z.var(0) - sigma2).abs() <= 5 * sigma2 * math.sqrt(2 / (n - 1))).all()


def test_vae_reparam_kl_gaussian_latent_samples_in_training_and_returns_mu_in_eval() -> None:
    torch.manual_seed(0)
    latent = GaussianLatent(6, 3)
    h = torch.randn(4, 6)
    z, mu, logvar = latent(h)
    assert z.shape == mu.shape == logvar.shape == (4, 3)
    assert not torch.equal(z, mu)
    latent.eval()
    z, mu, _ = latent(h)
    assert torch.equal(z, mu)


@given(seed=SEEDS, beta=st.floats(0.0, 4.0))
def test_vae_reparam_kl_vae_loss_is_summed_bce_plus_beta_kl(seed, beta) -> None:
    g = torch.Generator().manual_seed(seed)
    recon = torch.rand(4, 6, generator=g, dtype=torch.float64).clamp(0.01, 0.99)
    x = torch.rand(4, 6, generator=g, dtype=torch.float64)
    mu, logvar = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    bce = -(x * recon.log() + (1 - x) * (1 - recon).log()).sum()  # closed form
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(vae_loss(recon, x, mu, logvar, beta=beta), bce + beta * kl)


def test_vae_reparam_kl_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="reduction must be"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg")


# --- gan_training -------------------------------------------------------------------------------

NOISE, HIDDEN, DATA = 4, 16, 6


def _gan(seed: int = 0) -> GANTrainer:
    """002 Q34 v2's networks, small, with its optimizers (Adam, lr 2e-4)."""
    torch.manual_seed(seed)
    return GANTrainer.adam(MLPGenerator(NOISE, HIDDEN, DATA), MLPDiscriminator(DATA, HIDDEN))


def _batch(seed: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, DATA, generator=g) * 2 - 1, torch.randn(n, NOISE, generator=g)


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@given(seed=SEEDS)
@settings(max_examples=10)
def test_gan_training_discriminator_step_leaves_generator_grads_none(seed) -> None:
    gan = _gan(seed)
    real, noise = _batch(seed)
    gan.discriminator_step(real, gan.generator(noise))
    assert all(p.grad is None for p in gan.generator.parameters())
    assert all(p.grad is not None for p in gan.discriminator.parameters())


def test_gan_training_discriminator_step_without_detach_would_reach_the_generator() -> None:
    """What the detach prevents: the same D loss on the undetached fakes fills G's grads."""
    gan = _gan()
    real, noise = _batch(0)
    fake = gan.generator(noise)
    loss = gan.criterion(gan.discriminator(real), torch.ones(8, 1)) + gan.criterion(
        gan.discriminator(fake), torch.zeros(8, 1)
    )
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gan.generator.parameters())


@given(seed=SEEDS)
@settings(max_examples=10)
def test_gan_training_discriminator_step_changes_d_and_not_g(seed) -> None:
    gan = _gan(seed)
    real, noise = _batch(seed)
    g_before, d_before = _params(gan.generator), _params(gan.discriminator)
    gan.discriminator_step(real, gan.generator(noise))
    assert _equal(_params(gan.generator), g_before)
    assert all(
        not torch.equal(a, b) for a, b in zip(_params(gan.discriminator), d_before, strict=True)
    )


@given(seed=SEEDS)
@settings(max_examples=10)
def test_gan_training_generator_step_changes_g_only_and_leaves_d_grads_alone(seed) -> None:
    gan = _gan(seed)
    real, noise = _batch(seed)
    gan.discriminator_step(real, gan.generator(noise))
    g_before, d_before = _params(gan.generator), _params(gan.discriminator)
    d_grads = [p.grad.clone() for p in gan.discriminator.parameters()]
    gan.generator_step(gan.generator(noise))
    assert _equal(_params(gan.discriminator), d_before)
    assert _equal([p.grad for p in gan.discriminator.parameters()], d_grads)
    assert all(p.requires_grad for p in gan.discriminator.parameters())  # unfrozen again
    assert all(not torch.equal(a, b) for a, b in zip(_params(gan.generator), g_before, strict=True))


@given(seed=SEEDS, scale=st.floats(0.0, 1e4))
def test_gan_training_outputs_lie_in_the_documented_ranges(seed, scale) -> None:
    """G's Tanh: [-1, 1]; D's Sigmoid: [0, 1] (closed: float32 rounds far logits to 0 or 1)."""
    gan = _gan(seed % 1000)
    real, noise = _batch(seed)
    with torch.no_grad():
        fake = gan.generator(noise * scale)
        d = gan.discriminator(torch.cat([real, fake]) * scale)
    assert fake.shape == (8, DATA) and d.shape == (16, 1)
    assert fake.abs().max() <= 1.0
    assert ((d >= 0) & (d <= 1)).all()


def test_gan_training_discriminator_loss_is_the_bce_closed_form() -> None:
    gan = _gan()
    real, noise = _batch(0)
    fake = gan.generator(noise)
    with torch.no_grad():
        p_real, p_fake = gan.discriminator(real), gan.discriminator(fake)
    expected = -p_real.log().mean() - (1 - p_fake).log().mean()
    torch.testing.assert_close(gan.discriminator_step(real, fake), expected)


def test_gan_training_generator_loss_is_the_non_saturating_closed_form() -> None:
    gan = _gan()
    _, noise = _batch(0)
    fake = gan.generator(noise)
    with torch.no_grad():
        expected = -gan.discriminator(fake).log().mean()
    torch.testing.assert_close(gan.generator_step(fake), expected)


def curriculum_q34_v2_inner_step(generator, discriminator, g_optimizer, d_optimizer, real_images):
    """002 Q34 v2 ``train_gan``: the body of its batch loop as written (device moves dropped,
    noise_dim 100 made the generator's)."""
    criterion = nn.BCELoss()
    batch_size = real_images.size(0)
    real_label = torch.ones(batch_size, 1)
    fake_label = torch.zeros(batch_size, 1)
    d_output_real = discriminator(real_images)
    d_loss_real = criterion(d_output_real, real_label)
    noise = torch.randn(batch_size, generator.noise_dim)
    fake_images = generator(noise)
    d_output_fake = discriminator(fake_images.detach())
    d_loss_fake = criterion(d_output_fake, fake_label)
    d_loss = d_loss_real + d_loss_fake
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_output = discriminator(fake_images)
    g_loss = criterion(g_output, real_label)
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return d_loss, g_loss


def test_gan_training_step_updates_both_networks_as_the_curriculums_loop_does() -> None:
    """Three steps of ours and of 002 Q34 v2's loop, same init and noise: identical parameters
    (our frozen-D G step changes which grads D holds, not what any optimizer does)."""
    ours, theirs = _gan(3), _gan(3)
    for step in range(3):
        real, _ = _batch(step)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step)
            ours.step(real)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step)
            curriculum_q34_v2_inner_step(
                theirs.generator, theirs.discriminator, theirs.opt_g, theirs.opt_d, real
            )
    assert _equal(_params(ours.generator), _params(theirs.generator))
    assert _equal(_params(ours.discriminator), _params(theirs.discriminator))


def test_gan_training_discriminator_learns_to_separate_real_from_fixed_fakes() -> None:
    """Twenty D steps against a fixed G: D(real) rises above D(fake) (a D that cannot learn,
    e.g. with its labels swapped, fails)."""
    torch.manual_seed(1)
    gan = GANTrainer.adam(MLPGenerator(NOISE, HIDDEN, DATA), MLPDiscriminator(DATA, HIDDEN), 1e-2)
    real, noise = _batch(1, n=32)
    real = real * 0.2 + 0.5  # a distribution G's initial output (about 0) is far from
    fake = gan.generator(noise).detach()
    for _ in range(20):
        gan.discriminator_step(real, fake)
    with torch.no_grad():
        assert gan.discriminator(real).mean() > 0.5 > gan.discriminator(fake).mean()
    assert F.binary_cross_entropy(gan.discriminator(real), torch.ones(32, 1)) < math.log(2)


# --- gan_training with logits (the registered GANs, impl/models/gan.py) ---------------------------


def _logit_pair(seed: int) -> tuple[GANTrainer, GANTrainer]:
    """Two trainers over the same float64 weights: D returning logits with BCEWithLogitsLoss, and
    the seed's D ending in Sigmoid with BCELoss (same layer indices, so the state_dict loads)."""
    torch.manual_seed(seed)
    g_logits, d_logits = (
        MLPGenerator(NOISE, (8, 12), DATA),
        MLPDiscriminator(DATA, (12, 8), logits=True),
    )
    g_sigmoid, d_sigmoid = MLPGenerator(NOISE, (8, 12), DATA), MLPDiscriminator(DATA, (12, 8))
    g_sigmoid.load_state_dict(g_logits.state_dict())
    d_sigmoid.load_state_dict(d_logits.state_dict())
    nets = (g_logits, d_logits, g_sigmoid, d_sigmoid)
    for net in nets:
        net.double()
    return (
        GANTrainer.adam(g_logits, d_logits, logits=True),
        GANTrainer.adam(g_sigmoid, d_sigmoid),
    )


@given(seed=SEEDS)
@settings(max_examples=10)
def test_gan_training_logits_with_bce_with_logits_step_as_sigmoid_with_bceloss_does(seed) -> None:
    """Three alternating steps (float64, same noise): the logit D scored with BCEWithLogitsLoss
    reports the seed's losses and moves both networks as the Sigmoid D with BCELoss does."""
    logits, sigmoid = _logit_pair(seed % 1000)
    assert isinstance(logits.criterion, nn.BCEWithLogitsLoss)
    assert isinstance(sigmoid.criterion, nn.BCELoss)
    for step in range(3):
        real, _ = _batch(seed + step)
        real = real.double()
        losses = []
        for trainer in (logits, sigmoid):
            losses.append(trainer.step(real, generator=torch.Generator().manual_seed(step)))
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-12)
    for a, b in (
        (logits.generator, sigmoid.generator),
        (logits.discriminator, sigmoid.discriminator),
    ):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("logit", [40.0, 120.0])
def test_gan_training_bceloss_on_a_saturated_sigmoid_passes_no_gradient_and_logits_do(
    logit: float,
) -> None:
    """The D step's fake term where D is sure a fake is real: float32's sigmoid rounds the logit
    to exactly 1, so BCELoss against 0 clamps log(0) at -100 (loss 100 whatever the logit) and
    its gradient is 0: D cannot learn from that fake. BCE-with-logits gives the exact loss (the
    logit itself, to float32 rounding) and gradient sigmoid(logit) - 0 = 1."""
    x = torch.tensor([[logit]], requires_grad=True)
    p = torch.sigmoid(x)
    assert p.item() == 1.0
    clamped = nn.BCELoss()(p, torch.zeros(1, 1))
    clamped.backward()
    assert clamped.item() == 100.0 and x.grad.item() == 0.0
    x.grad = None
    exact = nn.BCEWithLogitsLoss()(x, torch.zeros(1, 1))
    exact.backward()
    torch.testing.assert_close(exact, torch.tensor(logit))
    assert x.grad.item() == 1.0


def test_gan_training_networks_take_hidden_widths_and_an_output_shape() -> None:
    """002 Q34 v1 (G 128-256, D 256-128, flat) and v2 (G 256-512-1024 as (1, 28, 28), D 512-256):
    the layer counts and shapes; D flattens an image batch per sample."""
    torch.manual_seed(0)
    g = MLPGenerator(100, (256, 512, 1024), 784, out_shape=(1, 28, 28))
    d = MLPDiscriminator(784, (512, 256), logits=True)
    linears = [m for m in g.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (100, 256),
        (256, 512),
        (512, 1024),
        (1024, 784),
    ]
    assert not any(isinstance(m, nn.Sigmoid) for m in d.net)
    z = torch.randn(3, 100)
    images = g(z)
    assert images.shape == (3, 1, 28, 28)
    torch.testing.assert_close(d(images), d(images.flatten(1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not hold 784 values"):
        MLPGenerator(100, 128, 784, out_shape=(1, 27, 28))
    with pytest.raises(ValueError, match="hidden widths"):
        MLPDiscriminator(784, ())
