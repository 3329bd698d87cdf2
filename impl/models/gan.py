"""MLP GANs for handwritten digits, curriculum 002 Q34 ("implement a GAN that generates handwritten
digits"), each a generator G and a discriminator D registered as one pair.

- ``gan_mlp_small``, 002 Q34 v1: G Linear(100, 128) -> ReLU -> Linear(128, 256) -> ReLU ->
  Linear(256, 784) -> Tanh, a flat (B, 784) image; D Linear(784, 256) -> LeakyReLU(0.2) ->
  Linear(256, 128) -> LeakyReLU(0.2) -> Linear(128, 1). G 247,440 + D 233,985 = 481,425
  parameters, the catalog's.
- ``gan_mlp_mnist``, 002 Q34 v2: G 100 -> 256 -> 512 -> 1024 -> 784 (ReLU, then Tanh), reshaped
  to (B, 1, 28, 28) as v2's ``view(-1, 1, 28, 28)``; D 784 -> 512 -> 256 -> 1 (LeakyReLU 0.2), on
  each image flattened. G 1,486,352 + D 533,505 = 2,019,857 parameters, the catalog's.

The layers are ``MLPGenerator`` and ``MLPDiscriminator`` of ``impl.techniques.generative``
(technique ``gan_training``), at the seed's indices, so a seed's state_dict loads into ours with
its ``fc.`` (v1) or ``main.`` (v2) prefix renamed ``generator.net.`` / ``discriminator.net.``.

The pair. ``forward(z)`` takes noise (B, Z) and returns ``{"fake": G(z), "logits": D(G(z))}``:
what one training step of the pair needs. The registry's checks and benchmarks train a model with
one optimiser over all its parameters and one declared loss, and a GAN is a game of two losses,
so the declared loss (``generator_loss``) is the generator's: BCE-with-logits of D(G(z)) against
the real label 1 (the targets, ``real_labels``, are ones), the non-saturating loss that the seed's
G step minimises. A registry training step therefore costs what a G step costs (G forward, D
forward, the backward through D into G) plus D's parameter gradients, which a G step does not
take (it freezes D). It is not a GAN step: with one optimiser D would learn to call fakes real.
The GAN step is ``GANTrainer.step`` (``GANPair.trainer()``: one Adam per network, lr 2e-4 as in
v2, D first on real = 1 and ``fake.detach()`` = 0, then G against the real label with D frozen),
checked on load_digits in ``checks/test_curriculum_bugs_gan.py``.

Data. The seeds train on MNIST, a download (catalog §7, D-mnist-train); here the digits are
scikit-learn's ``load_digits`` (8x8, 0..16), divided by 16 and mapped to [-1, 1] as v2's
``Normalize((0.5,), (0.5,))`` maps MNIST: at 784 pixels they are bilinearly upsampled to 28x28
(``impl.models._digits.digit_pixels``), the tiny sizes take them at 8x8 as they come
(``real_digits``). The generator's only input is noise, so the example inputs are N(0, 1) noise.

Deviations from the seed, each a fix:
- D returns a logit, scored with BCE-with-logits; the seeds end D in Sigmoid and score it with
  ``nn.BCELoss``. The two losses are equal in exact arithmetic (checked), but float32's sigmoid
  rounds a large logit to exactly 0 or 1, where ``BCELoss`` clamps the log at -100 and passes no
  gradient (checked). D's probability that an image is real is ``sigmoid(logit)`` in (0, 1)
  (``GANPair.real_probability``).
- v1 imports ``tensor`` and ``tensor.nn`` (ModuleNotFoundError) and then uses ``torch``; v2's
  ``generate_samples`` reads a global ``device`` that only ``train_gan`` defines, as a local
  (NameError). Catalog B26, both run in the checks. ``GANPair.sample`` draws on the pair's own
  device.
- D flattens each sample (``flatten(1)``) where v2 writes ``view(-1, 784)``, which would silently
  fold a wrongly shaped batch into other samples (checked); the pair checks the noise's shape.

Capabilities: TorchScript. No ONNX: two outputs, and the onnxruntime backend runs models with
one. No dynamic int8 quantisation and no CPU autocast, though both run: at initialisation G's
fakes are all close to 0, so D's logit is nearly the same number for every sample, set by D's
biases, and for some initialisations that number lies close to 0; the registry's checks score the
worst output's SQNR over 64 samples against a floor (25 dB for int8, 30 dB for bfloat16), and the
logit's error, small in absolute terms, is then large beside it. Measured on 300 initialisations
of each tiny size: int8 fell below 25 dB for 2 to 4% of them (down to 14 dB), bfloat16 below
30 dB for 0.3 to 0.7% (down to 27 dB); the fakes alone stayed above 32 dB (int8) and 46 dB
(bfloat16).
Dimension key: B batch, Z noise dims, S image side, D = S * S pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import no_gradcheck
from impl.models._digits import digit_pixels
from impl.registry import Cap, register_model
from impl.tasks import BINARY
from impl.techniques.generative import GANTrainer, MLPDiscriminator, MLPGenerator


@dataclass(frozen=True)
class GANConfig:
    noise_dim: int = 100  # Z
    generator_hidden: tuple[int, ...] = (256, 512, 1024)  # G's hidden widths (ReLU)
    discriminator_hidden: tuple[int, ...] = (512, 256)  # D's hidden widths (LeakyReLU 0.2)
    image_side: int = 28  # S: G makes S x S images in [-1, 1]
    image_shaped: bool = True  # G's output (B, 1, S, S), as v2; False: flat (B, D), as v1

    @property
    def image_dim(self) -> int:
        return self.image_side**2  # D

    @property
    def fake_shape(self) -> tuple[int, ...]:
        """One sample of G's output: (1, S, S) or (D,)."""
        return (1, self.image_side, self.image_side) if self.image_shaped else (self.image_dim,)


# Tiny sizes: 8x8 images, load_digits' own side (no resizing), and the full size's layer count.
GAN_SMALL_SIZES = {
    "tiny": GANConfig(
        noise_dim=16,
        generator_hidden=(32, 64),
        discriminator_hidden=(64, 32),
        image_side=8,
        image_shaped=False,
    ),
    # 002 Q34 v1: noise_dim 100, output_dim 28 * 28; G 100-128-256-784, D 784-256-128-1
    "full": GANConfig(
        generator_hidden=(128, 256), discriminator_hidden=(256, 128), image_shaped=False
    ),
}
GAN_MNIST_SIZES = {
    "tiny": GANConfig(
        noise_dim=16, generator_hidden=(32, 64, 128), discriminator_hidden=(64, 32), image_side=8
    ),
    "full": GANConfig(),  # 002 Q34 v2: G 100-256-512-1024-784 as (1, 28, 28), D 784-512-256-1
}


class GANPair(nn.Module):
    """Generator and discriminator as one module: noise -> fake images and D's logits on them.

    Shape: noise (B, Z) -> {"fake": (B, D) or (B, 1, S, S) in [-1, 1], "logits": (B, 1)}
    """

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.noise_dim = cfg.noise_dim
        out_shape = cfg.fake_shape if cfg.image_shaped else None
        # (B, Z) -> (B, D) or (B, 1, S, S)
        self.generator = MLPGenerator(
            cfg.noise_dim, cfg.generator_hidden, cfg.image_dim, out_shape=out_shape
        )
        # (B, D) or (B, 1, S, S) -> (B, 1) logits
        self.discriminator = MLPDiscriminator(cfg.image_dim, cfg.discriminator_hidden, logits=True)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        if z.dim() != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"expected noise (B, {self.noise_dim}), got {list(z.shape)}")
        fake = self.generator(z)  # (B, D) or (B, 1, S, S)
        return {"fake": fake, "logits": self.discriminator(fake)}  # logits (B, 1)

    def real_probability(self, images: Tensor) -> Tensor:
        """D's probability that each image is real: sigmoid(logit), (B, 1) in (0, 1)."""
        return torch.sigmoid(self.discriminator(images))

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` images from G, drawn without gradients on the pair's own device (the
        seed's ``generate_samples`` reads an undefined global ``device``, B26)."""
        weight = next(self.generator.parameters())
        noise = torch.randn(
            num_samples, self.noise_dim, generator=generator, device=weight.device
        ).to(weight.dtype)  # (N, Z)
        with torch.no_grad():
            return self.generator(noise)  # (N, D) or (N, 1, S, S)

    def trainer(self, lr: float = 2e-4) -> GANTrainer:
        """The seed's two optimisers, Adam(lr 2e-4) on G and on D, with BCE-with-logits: its
        ``step(real)`` is one GAN step (D on real and ``fake.detach()``, then G)."""
        return GANTrainer.adam(self.generator, self.discriminator, lr, logits=True)


@no_gradcheck("a target maker: constant real labels (ones), nothing to differentiate")
def real_labels(
    cfg: GANConfig, inputs: tuple[Tensor, ...], shape: tuple[int, ...], generator: torch.Generator
) -> Tensor:
    """The label the generator's loss asks D to give its fakes: 1 (real), shaped like D's logits
    (B, 1). The seed's ``real_label = torch.ones(batch_size, 1)``."""
    return torch.ones(shape)


@no_gradcheck("BCE-with-logits of the pair's logits; the pair is gradient-checked whole with it")
def generator_loss(output: dict[str, Tensor], targets: Tensor) -> Tensor:
    """The non-saturating generator loss, mean BCE-with-logits of D(G(z)) against the real label
    (``targets``, ones): -mean(log sigmoid(logit)). The fakes themselves are not scored."""
    return F.binary_cross_entropy_with_logits(output["logits"], targets)


def real_digits(
    side: int, count: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Real images for D: load_digits in [-1, 1] (v2's Normalize(0.5, 0.5) of [0, 1] pixels),
    resized to ``side`` x ``side`` (bilinear; 8 keeps them as they are), flattened (N, side**2)."""
    return digit_pixels(side, count=count, generator=generator) * 2 - 1


def _example_inputs(cfg: GANConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    """Noise z ~ N(0, 1), (B, Z): the seed's ``torch.randn(batch_size, noise_dim)``."""
    return (torch.randn(batch_size, cfg.noise_dim, generator=generator),)


def _output_shapes(cfg: GANConfig, batch_size: int) -> dict[str, tuple[int, ...]]:
    return {"fake": (batch_size, *cfg.fake_shape), "logits": (batch_size, 1)}


_GAN_FIELDS = dict(
    family="generative",
    curriculum="002 Q34",
    example_inputs=_example_inputs,
    output_shape=_output_shapes,
    task=BINARY,  # D's logit per sample, BCE-with-logits
    prediction="logits",
    targets=real_labels,
    loss=generator_loss,
    # no QUANT_DYNAMIC, no AMP: see the module's docstring (an untrained D's logit can lie near 0)
    caps={Cap.TORCHSCRIPT},
)


@register_model(
    sizes=GAN_SMALL_SIZES,
    # catalog: G Linear(100, 128) 12,928 + Linear(128, 256) 33,024 + Linear(256, 784) 201,488 =
    # 247,440; D Linear(784, 256) 200,960 + Linear(256, 128) 32,896 + Linear(128, 1) 129 = 233,985
    full_params=247_440 + 233_985,
    **_GAN_FIELDS,
)
def gan_mlp_small(cfg: GANConfig) -> GANPair:
    """MLP GAN pair (002 Q34 v1): G 100-128-256-784 (Tanh), D 784-256-128-1 on logits."""
    return GANPair(cfg)


@register_model(
    sizes=GAN_MNIST_SIZES,
    # catalog: G 25,856 + 131,584 + 525,312 + 803,600 = 1,486,352; D 401,920 + 131,328 + 257 =
    # 533,505
    full_params=1_486_352 + 533_505,
    **_GAN_FIELDS,
)
def gan_mlp_mnist(cfg: GANConfig) -> GANPair:
    """MLP GAN pair (002 Q34 v2): G 100-256-512-1024-784 as 1x28x28 (Tanh), D on logits."""
    return GANPair(cfg)
