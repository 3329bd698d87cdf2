"""Offline stand-in for MNIST (catalog §7, D-mnist-train): scikit-learn's ``load_digits``.

1797 handwritten digits, 8x8 pixels with values 0..16, shipped inside scikit-learn (no download).
Divided by 16 they lie in [0, 1], the range of MNIST after ``transforms.ToTensor()`` that the
curriculum's autoencoder and VAEs (002 Q42, Q44) train on; bilinear resizing to the model's side
(10x10 for the 100-input VAE, 28x28 for the 784-input models) keeps them in [0, 1], since every
resized pixel is a convex combination of original ones.

``digit_pixels`` gives those grey levels (the training data of the checks' training steps);
``binarized_digit_pixels`` draws each pixel from Bernoulli(grey level), "dynamically binarised"
digits as binarised MNIST is for VAEs: values in {0, 1}, so a reconstruction can be exact (the
summed BCE of a grey target never reaches 0), and each draw is new data, so two batches never
coincide by picking the same images. The models' example inputs are binarised.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from impl.differentiable import no_gradcheck

DIGIT_SIDE = 8  # load_digits images are 8x8
NUM_DIGITS = 1797


@functools.cache
def _digit_images() -> Tensor:
    """Every load_digits image, (1797, 8, 8) float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().images).float() / 16.0  # (N, 8, 8)


def digit_pixels(
    side: int,
    *,
    count: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """load_digits images resized to ``side`` x ``side`` and flattened: (N, side * side) in
    [0, 1]. All 1797 in order, or ``count`` of them drawn with replacement by ``generator``."""
    images = _digit_images()
    if count is not None:
        images = images[torch.randint(NUM_DIGITS, (count,), generator=generator)]
    if side != DIGIT_SIDE:
        images = F.interpolate(
            images.unsqueeze(1), size=(side, side), mode="bilinear", align_corners=False
        ).squeeze(1)  # (N, side, side)
    return images.flatten(1).clamp(0.0, 1.0)  # (N, side * side); clamp: float rounding only


def binarized_digit_pixels(side: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` random digits at ``side`` x ``side``, each pixel drawn from Bernoulli(its grey
    level): (count, side * side) with values in {0, 1}."""
    grey = digit_pixels(side, count=count, generator=generator)
    return torch.bernoulli(grey, generator=generator)


@no_gradcheck("a target maker: the input itself, detached, is what a reconstruction is scored on")
def reconstruction_targets(
    cfg: Any, inputs: tuple[Tensor, ...], shape: tuple[int, ...], generator: torch.Generator
) -> Tensor:
    """The target of an autoencoder or a VAE: its own (first) input, (B, D), as a constant."""
    (x,) = inputs
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"the reconstruction {list(shape)} and the input {list(x.shape)} differ")
    return x.detach().clone()
