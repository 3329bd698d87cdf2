"""Variational autoencoders, curriculum 002 Q44 ("use ``torch.distributions`` to implement a VAE").

- ``vae_small``, 002 Q44 v1: encoder Linear(100, 64) -> ReLU; mu and logvar heads Linear(64, 16);
  decoder Linear(16, 64) -> ReLU -> Linear(64, 100) -> Sigmoid. 16,132 parameters.
- ``vae_mnist``, 002 Q44 v2: encoder 784 -> 400 -> 400 (ReLU); heads 400 -> 20; decoder
  20 -> 400 -> 400 -> 784 (ReLU, then Sigmoid). 973,624 parameters, the catalog's.

Both return ``(reconstruction, mu, logvar)``: the reconstruction holds Bernoulli probabilities in
[0, 1], mu and logvar the diagonal Gaussian posterior q(z | x) = N(mu, exp(logvar)). The latent
layer is ``impl.techniques.generative.GaussianLatent`` (technique ``vae_reparam_kl``):

- in training mode z = mu + eps * exp(0.5 * logvar), eps ~ N(0, 1) drawn from torch's global RNG
  at every call (``reparameterize``), so two calls differ unless the RNG is reseeded between them
  and a sample's z depends on its position in the batch (eps is drawn for the whole batch);
- in eval mode z = mu: the forward pass is deterministic and each sample's output depends on that
  sample only. The generated checks that compare outputs (shapes, batch independence, seeded
  determinism, state_dict round trip, backends) run in eval mode; those that train (a step lowers
  the loss, overfitting 8 samples, gradients reach every parameter) run in training mode, through
  the draw, and the whole-model gradcheck reseeds the RNG before each call (``module_as_function``),
  so the same eps enters every finite difference.

The loss is the negative ELBO over the whole output, the seed v2's ``loss_function``: the summed
binary cross entropy of the reconstruction against the input plus the summed analytic KL of q from
the N(0, I) prior, -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) (``vae_loss``; equal to
``torch.distributions.kl_divergence``, checked). It is computed in float32 or wider with autocast
off: PyTorch refuses ``binary_cross_entropy`` inside a CUDA autocast region, and bfloat16 would
round a sum over 784 pixels of a batch. The target is the input itself
(``impl.models._digits.reconstruction_targets``).

Deviations from the seed, each a fix:
- v1 feeds ``torch.randn`` inputs to a Sigmoid decoder (catalog B55): no reconstruction in (0, 1)
  can equal them, and the VAE's BCE refuses them ("all elements of target should be between 0
  and 1"). Our inputs lie in [0, 1]: load_digits (the offline MNIST, catalog §7) resized to 10x10
  for v1's 100 inputs and 28x28 for v2's 784, binarised per pixel as binarised MNIST is
  (``impl.models._digits``). v1's title promises ``torch.distributions`` and v1 never uses it
  (B55); the checks hold our KL to ``torch.distributions.kl_divergence`` and z to
  ``Normal(mu, sigma).rsample``'s distribution.
- v2's file builds, downloads MNIST for and trains a second VAE at module level, after its
  ``if __name__ == "__main__":`` block (catalog B62); this module only defines and registers.
- Eval mode encodes to the mean (z = mu), where the seed samples in eval mode too.

Capabilities: dynamic int8 quantisation (every Linear) and CPU autocast. No TorchScript:
``reparameterize`` takes a keyword-only ``generator``, which ``torch.jit.script`` cannot compile
("Compiled functions can't take variable number of arguments or use keyword-only arguments with
defaults"). No ONNX: three outputs, and the onnxruntime backend runs models with one.
Dimension key: B batch, S image side, D = S * S input pixels, H hidden units, L latent dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.models._digits import binarized_digit_pixels, reconstruction_targets
from impl.registry import Cap, register_model
from impl.tasks import REGRESSION
from impl.techniques.generative import GaussianLatent, vae_loss


@dataclass(frozen=True)
class VAEConfig:
    image_side: int = 28  # S: a flattened S x S image in [0, 1]
    hidden_dim: int = 400  # H
    latent_dim: int = 20  # L
    hidden_layers: int = 2  # Linear-ReLU layers of width H in the encoder, and in the decoder

    def __post_init__(self) -> None:
        if self.hidden_layers < 1:
            raise ValueError(f"hidden_layers must be >= 1, got {self.hidden_layers}")

    @property
    def input_dim(self) -> int:
        return self.image_side**2  # D


# Both tiny sizes take 784 inputs, more than vae_small's full 100: the generated check that a
# model overfits 8 samples asks the loss to fall below 5% of its start, and a VAE's cannot reach 0.
# To tell 8 samples apart, q(z | x) must carry about log 8 nats per sample, so the KL term keeps a
# floor of a few nats per sample (measured 5 to 15 after 300 Adam steps), while the untrained loss
# is about 0.69 nats per pixel: at 100 pixels the floor is 6 to 10% of the start, at 784 pixels 2%.
VAE_SMALL_SIZES = {
    "tiny": VAEConfig(image_side=28, hidden_dim=32, latent_dim=4, hidden_layers=1),
    # 002 Q44 v1: input_dim, hidden_dim, latent_dim = 100, 64, 16 (a 10x10 image)
    "full": VAEConfig(image_side=10, hidden_dim=64, latent_dim=16, hidden_layers=1),
}
VAE_MNIST_SIZES = {
    "tiny": VAEConfig(image_side=28, hidden_dim=32, latent_dim=4, hidden_layers=2),
    "full": VAEConfig(),  # 002 Q44 v2: 784 -> 400 -> 400 -> 20
}


def _relu_stack(sizes: list[int]) -> nn.Sequential:
    """Linear -> ReLU for each consecutive pair of ``sizes``."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """MLP encoder -> Gaussian latent (mu, logvar; z sampled in training, z = mu in eval) -> MLP
    decoder ending in a Sigmoid.

    Shape: (B, D) in [0, 1] -> (reconstruction (B, D) in [0, 1], mu (B, L), logvar (B, L))
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.input_dim, self.latent_dim = cfg.input_dim, cfg.latent_dim
        widths = [cfg.hidden_dim] * cfg.hidden_layers
        self.encoder = _relu_stack([cfg.input_dim, *widths])  # (B, D) -> (B, H)
        self.latent = GaussianLatent(cfg.hidden_dim, cfg.latent_dim)  # (B, H) -> 3 x (B, L)
        self.decoder = nn.Sequential(  # (B, L) -> (B, D)
            *_relu_stack([cfg.latent_dim, *widths]),
            nn.Linear(cfg.hidden_dim, cfg.input_dim),
            nn.Sigmoid(),
        )

    def decode(self, z: Tensor) -> Tensor:
        """Latent codes (N, L) -> Bernoulli probabilities (N, D); ``decode(randn(N, L))``
        generates new samples, as the seed v2's ``visualize_results`` does."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input (B, {self.input_dim}), got {list(x.shape)}")
        z, mu, logvar = self.latent(self.encoder(x))  # (B, L) each
        return self.decoder(z), mu, logvar  # (B, D), (B, L), (B, L)


def _elbo_loss(output: tuple[Tensor, Tensor, Tensor], targets: Tensor) -> Tensor:
    """Negative ELBO of a whole batch, summed (``vae_loss``), in float32 or wider, autocast off."""
    recon, mu, logvar = output
    dtype = torch.promote_types(recon.dtype, torch.float32)
    with torch.autocast(recon.device.type, enabled=False):
        return vae_loss(recon.to(dtype), targets.to(dtype), mu.to(dtype), logvar.to(dtype))


def _example_inputs(cfg: VAEConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    """Binarised load_digits images at the model's side, flattened: (B, D) in {0, 1}."""
    return (binarized_digit_pixels(cfg.image_side, batch_size, generator),)


def _output_shapes(cfg: VAEConfig, batch_size: int) -> tuple[tuple[int, int], ...]:
    latent = (batch_size, cfg.latent_dim)
    return (batch_size, cfg.input_dim), latent, latent


_VAE_FIELDS = dict(
    family="generative",
    example_inputs=_example_inputs,
    output_shape=_output_shapes,
    task=REGRESSION,  # no task of its own: the declared loss scores the whole output
    prediction="0",  # the reconstruction, scored against the input
    targets=reconstruction_targets,
    loss=_elbo_loss,
    caps={Cap.QUANT_DYNAMIC, Cap.AMP},
)


@register_model(
    curriculum="002 Q44",
    sizes=VAE_SMALL_SIZES,
    # Linear(100, 64) 6,464 + mu and logvar Linear(64, 16) 1,040 each + Linear(16, 64) 1,088 +
    # Linear(64, 100) 6,500
    full_params=16_132,
    **_VAE_FIELDS,
)
def vae_small(cfg: VAEConfig) -> VAE:
    """VAE 100-64-16 (002 Q44 v1) on inputs in [0, 1]; z = mu in eval mode."""
    return VAE(cfg)


@register_model(
    curriculum="002 Q44",
    sizes=VAE_MNIST_SIZES,
    # catalog: measured on the seed's class. Encoder 314,000 + 160,400, heads 8,020 each,
    # decoder 8,400 + 160,400 + 314,384.
    full_params=973_624,
    **_VAE_FIELDS,
)
def vae_mnist(cfg: VAEConfig) -> VAE:
    """VAE 784-400-400-20 with ELBO = BCE(sum) + KL (002 Q44 v2); z = mu in eval mode."""
    return VAE(cfg)
