"""Generative-model techniques: the VAE's reparameterisation and KL term, and the GAN's
alternating discriminator/generator updates.

Curriculum: 002 Q44 (VAE, v1 and v2) and 002 Q34 (GAN, v1 and v2). Here are the pieces the
models use (``impl.models.vae``, ``impl.models.gan``), written so that each property the catalog
names can be checked on its own.

VAE (catalog ``vae_reparam_kl``). The encoder gives a mean ``mu`` and a log-variance ``logvar``
per latent dimension; sampling z ~ N(mu, sigma^2) directly has no gradient with respect to mu and
sigma, so the *reparameterisation trick* draws eps ~ N(0, 1) and writes

    z = mu + eps * exp(0.5 * logvar)          (sigma = exp(0.5 * logvar))

which is differentiable in mu and logvar (eps is a constant of the graph). 002 Q44 v1 draws eps
with ``torch.randn_like``, v2 with ``Normal(0, 1).sample(mu.shape)``: the same distribution.
(``Normal(mu, sigma).sample()`` would *not* do: ``sample`` runs under ``no_grad``; ``rsample`` is
the reparameterised draw.) The KL divergence of the diagonal Gaussian posterior from the N(0, I)
prior has the closed form the curriculum uses,

    KL(N(mu, sigma^2) || N(0, 1)) = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)),

a special case of the KL between two diagonal Gaussians (``gaussian_kl``), which the checks hold
to ``torch.distributions.kl_divergence``.

GAN (catalog ``gan_training``). One step updates the discriminator D, then the generator G:

- D step: BCE of D(real) against 1 and of D(fake.detach()) against 0. The ``detach`` cuts the
  graph at G's output, so the D loss's backward reaches no G parameter (their ``.grad`` stay as
  they were: None on a fresh G) and costs no backward pass through G.
- G step: BCE of D(fake) against 1 (the "non-saturating" loss of Goodfellow et al., 2014), only
  G's optimizer steps. We also switch D's ``requires_grad`` off for the G step, so its backward
  leaves D's gradients alone (the seed lets them fill up and relies on the next
  ``d_optimizer.zero_grad()``); either way D's parameters do not change in the G step.

D ends in a Sigmoid and the loss is ``nn.BCELoss`` as in the seed; G ends in Tanh, so its
samples lie in [-1, 1], the range of images normalised with mean 0.5 and std 0.5. The registered
GANs (``impl.models.gan``) leave the Sigmoid out (``MLPDiscriminator(..., logits=True)``) and
score D's logits with ``nn.BCEWithLogitsLoss`` (``GANTrainer.adam(..., logits=True)``): the same
loss in exact arithmetic (checked), but float32's sigmoid rounds a logit beyond about 17 to 1, where
``BCELoss`` then clamps the log at -100 and passes no gradient, and BCE-with-logits does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, randn
from impl.techniques.registry import Category, LossCase, register_technique

# --- VAE: reparameterisation and KL ------------------------------------------------------------


@gradcheck_function(lambda g: (randn(g, 3, 2), randn(g, 3, 2), randn(g, 3, 2)), wrt=(0, 1))
def reparameterize(
    mu: Tensor,
    logvar: Tensor,
    eps: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """z = mu + eps * exp(0.5 * logvar), eps ~ N(0, 1) (drawn here unless given).

    ``mu`` and ``logvar`` have the same shape (B, L); so has z. Passing ``eps`` makes the draw a
    deterministic function of (mu, logvar), which is what gradcheck and a unit test need.
    Curriculum: 002 Q44 v1 ``reparameterize`` (``torch.randn_like``) and v2 (``Normal(0, 1)``).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {list(mu.shape)} and logvar {list(logvar.shape)} differ in shape")
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    elif eps.shape != mu.shape:
        raise ValueError(f"eps {list(eps.shape)} must have mu's shape {list(mu.shape)}")
    std = torch.exp(0.5 * logvar)  # sigma; logvar is log sigma^2
    return mu + eps * std  # (B, L)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "batchmean":
        return loss.sum() / loss.shape[0]
    raise ValueError(f"reduction must be 'none', 'mean', 'sum' or 'batchmean', got {reduction!r}")


@gradcheck_function(
    lambda g: (randn(g, 3, 2), randn(g, 3, 2), randn(g, 3, 2), randn(g, 3, 2)), reduction="sum"
)
def gaussian_kl(
    mu: Tensor,
    logvar: Tensor,
    mu_p: Tensor | None = None,
    logvar_p: Tensor | None = None,
    reduction: str = "sum",
) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(mu_p, exp(logvar_p))) per element, then reduced.

    Per element: 0.5 * (logvar_p - logvar + (exp(logvar) + (mu - mu_p)^2) / exp(logvar_p) - 1).
    With the defaults (mu_p = 0, logvar_p = 0, the VAE prior) this is the curriculum's
    -0.5 * (1 + logvar - mu^2 - exp(logvar)). The elements are independent dimensions of a
    diagonal Gaussian, so the KL of the whole distribution is their sum.

    reduction: "none" (the elementwise terms, mu's shape), "sum" (the default: the VAE loss of
    Kingma & Welling and of 002 Q44 v2 sums over latent dimensions and the batch), "batchmean"
    (sum / batch size, per-sample KL averaged over the batch) or "mean" (over all elements, as
    ``nn.MSELoss`` averages; this scales the KL by 1 / L as well, rarely what a VAE wants).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {list(mu.shape)} and logvar {list(logvar.shape)} differ in shape")
    mu_p = torch.zeros_like(mu) if mu_p is None else mu_p
    logvar_p = torch.zeros_like(logvar) if logvar_p is None else logvar_p
    kl = 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p) ** 2) / logvar_p.exp() - 1)
    return _reduce(kl, reduction)


@gradcheck_function(
    lambda g: (
        torch.sigmoid(randn(g, 3, 4)),  # reconstruction probabilities in (0, 1)
        torch.rand(3, 4, generator=g, dtype=torch.float64),  # targets in [0, 1]
        randn(g, 3, 2),
        randn(g, 3, 2),
    ),
    wrt=(0, 2, 3),
)
def vae_loss(recon: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, *, beta: float = 1.0) -> Tensor:
    """Negative ELBO: summed binary cross entropy of the reconstruction plus beta times the
    summed KL from the prior (002 Q44 v2 ``loss_function``; beta = 1 is the plain VAE).

    ``recon`` holds probabilities (a Sigmoid decoder) and ``x`` targets in [0, 1]; the BCE
    suits such data (MNIST pixels), not the seed's v1 randn inputs (catalog B55).
    """
    bce = nn.functional.binary_cross_entropy(recon, x, reduction="sum")
    return bce + beta * gaussian_kl(mu, logvar, reduction="sum")


@gradcheck_module(lambda: GaussianLatent(3, 2), lambda g: (randn(g, 4, 3),))
class GaussianLatent(nn.Module):
    """The VAE's latent layer: two Linear heads give mu and logvar; z is sampled from them with
    ``reparameterize`` in training and is the mean ``mu`` in eval mode (deterministic encoding).

    Shape: features (B, H) -> (z, mu, logvar), each (B, L)
    """

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.mu = nn.Linear(in_features, latent_dim)
        self.logvar = nn.Linear(in_features, latent_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.mu(h), self.logvar(h)  # (B, L) each
        z = reparameterize(mu, logvar) if self.training else mu  # (B, L)
        return z, mu, logvar


# --- GAN: alternating updates --------------------------------------------------------------------


def _widths(hidden: int | Sequence[int]) -> tuple[int, ...]:
    """Hidden widths: an int is two layers of that width (the checks' small networks)."""
    widths = (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)
    if not widths or min(widths) < 1:
        raise ValueError(f"hidden widths must be one or more positive ints, got {hidden!r}")
    return widths


@gradcheck_module(
    lambda: MLPGenerator(3, (5, 6), 4, out_shape=(1, 2, 2)), lambda g: (randn(g, 2, 3),)
)
class MLPGenerator(nn.Module):
    """002 Q34's generator, sizes as arguments: Linear-ReLU stacks, then Linear and Tanh.

    ``hidden`` lists the hidden widths (v1: (128, 256); v2: (256, 512, 1024)); an int is two
    layers of that width. ``out_shape`` reshapes each sample, as v2's ``view(-1, 1, 28, 28)``
    (None: flat, as v1). ``net`` holds the layers at the seed's indices (Linear at 0, 2, 4, ...),
    so a seed's ``fc``/``main`` state_dict loads under ``net``.

    Shape: noise (B, Z) -> samples (B, D) or (B, *out_shape), in [-1, 1]
    """

    def __init__(
        self,
        noise_dim: int,
        hidden: int | Sequence[int],
        out_dim: int,
        *,
        out_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if out_shape is not None and math.prod(out_shape) != out_dim:
            raise ValueError(f"out_shape {out_shape} does not hold {out_dim} values")
        self.noise_dim = noise_dim
        self.out_shape = out_shape
        sizes = (noise_dim, *_widths(hidden))
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], out_dim), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(z)  # (B, D)
        if self.out_shape is not None:
            x = x.reshape((x.shape[0],) + self.out_shape)  # (B, *out_shape)
        return x


@gradcheck_module(lambda: MLPDiscriminator(4, (5, 3), logits=True), lambda g: (randn(g, 3, 2, 2),))
class MLPDiscriminator(nn.Module):
    """002 Q34's discriminator, sizes as arguments: Linear-LeakyReLU(0.2) stacks, then Linear
    and (unless ``logits``) Sigmoid: the probability that the input is real.

    ``hidden`` lists the hidden widths (v1: (256, 128); v2: (512, 256)); an int is two layers of
    that width. Each sample is flattened first (v2's ``view(-1, 784)``, without its reshaping
    across the batch). With ``logits=True`` the Sigmoid is left out: the output is the logit,
    scored with ``BCEWithLogitsLoss``, and ``sigmoid(logit)`` is the seed's probability.

    Shape: samples (B, D) or (B, ...) with D values each -> probabilities (B, 1) in [0, 1] (in
    (0, 1) in exact arithmetic; float32's sigmoid rounds to 0 or 1 beyond |logit| of about 17 and
    104), or logits (B, 1)
    """

    def __init__(self, in_dim: int, hidden: int | Sequence[int], *, logits: bool = False) -> None:
        super().__init__()
        self.in_dim = in_dim
        sizes = (in_dim, *_widths(hidden))
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(sizes[-1], 1))
        if not logits:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))  # (B, D) -> (B, 1)


@dataclass
class GANTrainer:
    """A generator, a discriminator, one Adam optimizer each (002 Q34 v2: lr 2e-4) and BCE:
    ``nn.BCELoss`` for a discriminator ending in Sigmoid (the seed's), ``nn.BCEWithLogitsLoss``
    for one that returns logits (``adam(..., logits=True)``; the models of ``impl.models.gan``)."""

    generator: nn.Module
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    criterion: nn.Module

    @classmethod
    def adam(
        cls,
        generator: nn.Module,
        discriminator: nn.Module,
        lr: float = 2e-4,
        *,
        logits: bool = False,
    ) -> GANTrainer:
        return cls(
            generator,
            discriminator,
            torch.optim.Adam(generator.parameters(), lr=lr),
            torch.optim.Adam(discriminator.parameters(), lr=lr),
            nn.BCEWithLogitsLoss() if logits else nn.BCELoss(),
        )

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """BCE of D(real) against 1 plus BCE of D(fake.detach()) against 0 (no step taken)."""
        ones = torch.ones(real.shape[0], 1, dtype=real.dtype, device=real.device)  # (B, 1)
        zeros = torch.zeros(fake.shape[0], 1, dtype=fake.dtype, device=fake.device)  # (B, 1)
        return self.criterion(self.discriminator(real), ones) + self.criterion(
            self.discriminator(fake.detach()), zeros
        )

    def generator_loss(self, fake: Tensor) -> Tensor:
        """BCE of D(fake) against 1, the non-saturating generator loss (no step taken)."""
        ones = torch.ones(fake.shape[0], 1, dtype=fake.dtype, device=fake.device)  # (B, 1)
        return self.criterion(self.discriminator(fake), ones)

    def discriminator_step(self, real: Tensor, fake: Tensor) -> Tensor:
        """One D update: real -> 1, fake -> 0. ``fake.detach()``: G gets no gradient. Returns
        the loss before the update."""
        loss = self.discriminator_loss(real, fake)
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        return loss.detach()

    def generator_step(self, fake: Tensor) -> Tensor:
        """One G update: D(fake) -> 1 (non-saturating loss); D is frozen, only G's optimizer
        steps. Returns the loss before the update."""
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        self.discriminator.requires_grad_(False)
        try:
            loss = self.generator_loss(fake)
            self.opt_g.zero_grad()
            loss.backward()
            self.opt_g.step()
        finally:
            for p, flag in zip(self.discriminator.parameters(), flags, strict=True):
                p.requires_grad_(flag)
        return loss.detach()

    def step(
        self, real: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """One alternating step on a batch of real samples (B, ...); returns (d_loss, g_loss),
        each before its update.

        One batch of noise (B, Z) makes the fakes used by both updates, as in the seed (its G
        step reuses ``fake_images`` from the D step, now scored by the updated D).
        """
        noise_dim = self.generator.noise_dim
        noise = torch.randn(
            real.shape[0], noise_dim, generator=generator, dtype=real.dtype, device=real.device
        )  # (B, Z)
        fake = self.generator(noise)  # (B, ...), real's shape
        d_loss = self.discriminator_step(real, fake)
        g_loss = self.generator_step(fake)
        return d_loss, g_loss


def _kl_case(generator: torch.Generator):
    mu = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    return gaussian_kl, (mu, logvar)


register_technique(
    name="vae_reparam_kl",
    category=Category.MODULE,
    curriculum="002 Q44 v1 and v2",
    summary="z = mu + eps*exp(logvar/2) (gradient reaches mu and logvar); analytic Gaussian KL",
    api="torch.randn_like; torch.distributions.Normal.rsample; torch.distributions.kl_divergence",
    losses=(
        LossCase(
            name="gaussian_kl",
            make=_kl_case,
            elementwise_shape=lambda inputs: tuple(inputs[0].shape),
        ),
    ),
)
register_technique(
    name="gan_training",
    category=Category.MODULE,
    curriculum="002 Q34 v2",
    summary="alternating D/G steps: D on real=1/fake.detach()=0, G against real labels; two Adams",
    api="torch.nn.BCELoss, torch.nn.BCEWithLogitsLoss; torch.Tensor.detach; torch.optim.Adam "
    "(one per network)",
    also_in=("impl.models.gan",),
)
