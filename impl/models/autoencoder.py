"""MLP autoencoder for compressing images, curriculum 002 Q42 (its only code is the v2 answer).

Encoder Linear(784, 512) -> ReLU -> Linear(512, 256) -> ReLU -> Linear(256, 128) -> ReLU (the
seed puts a ReLU after the code layer too, so the code is non-negative); decoder
Linear(128, 256) -> ReLU -> Linear(256, 512) -> ReLU -> Linear(512, 784) -> Sigmoid, so the
reconstruction lies in [0, 1], the range of MNIST pixels after ``ToTensor()``. ``forward`` returns
``(code, reconstruction)`` as the seed's does, and the loss is the seed's: the mean squared error
of the reconstruction against the input itself (task regression, the target is the input, see
``impl.models._digits.reconstruction_targets``). 1,132,944 parameters at full size, the catalog's.

Deviations from the seed, each a fix:
- The seed trains on MNIST, downloaded; the machines here are offline, so the data is
  scikit-learn's ``load_digits`` (catalog §7), divided by 16 into [0, 1] and resized to the
  model's side (``impl.models._digits``). The example inputs are those digits binarised per pixel.
- The seed's file, after its ``if __name__ == "__main__":`` block, builds, downloads MNIST for and
  trains a second autoencoder at module level, so importing it trains (catalog B62). This module
  only defines and registers; ``checks/test_curriculum_bugs_generative.py`` checks both.
- The input's shape is checked: a (B, 1, 28, 28) image must be flattened by the caller, as the
  seed's loop does with ``view(B, -1)``.

Capabilities: TorchScript, dynamic int8 quantisation (every Linear) and CPU autocast. No ONNX:
the model returns two tensors and the onnxruntime backend runs models with one output.
Dimension key: B batch, S image side, D = S * S input pixels, H1 and H2 hidden units, C code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.models._digits import binarized_digit_pixels, reconstruction_targets
from impl.registry import Cap, register_model
from impl.tasks import REGRESSION


@dataclass(frozen=True)
class AutoencoderConfig:
    image_side: int = 28  # S: a flattened S x S image in [0, 1] (MNIST: 28)
    hidden: tuple[int, int] = (512, 256)  # H1, H2: the encoder's widths, mirrored by the decoder
    code_dim: int = 128  # C: the seed's encoding_dim

    @property
    def input_dim(self) -> int:
        return self.image_side**2  # D, 784 at full size


SIZES = {
    "tiny": AutoencoderConfig(image_side=8, hidden=(32, 16), code_dim=8),  # load_digits' 8x8
    "full": AutoencoderConfig(),  # 002 Q42: 784-512-256-128
}


class Autoencoder(nn.Module):
    """The seed's ``Autoencoder``: ReLU MLP encoder to a non-negative code, Sigmoid decoder.

    Shape: (B, D) in [0, 1] -> (code (B, C) >= 0, reconstruction (B, D) in [0, 1])
    """

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.input_dim = cfg.input_dim
        h1, h2 = cfg.hidden
        # the seed's attribute names and layer order, so its state_dict loads as it is
        self.encoder = nn.Sequential(
            nn.Linear(cfg.input_dim, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, cfg.code_dim),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(cfg.code_dim, h2),
            nn.ReLU(),
            nn.Linear(h2, h1),
            nn.ReLU(),
            nn.Linear(h1, cfg.input_dim),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input (B, {self.input_dim}), got {list(x.shape)}")
        code = self.encoder(x)  # (B, C)
        return code, self.decoder(code)  # (B, C), (B, D)


def _example_inputs(
    cfg: AutoencoderConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor]:
    """Binarised load_digits images at the model's side, flattened: (B, D) in {0, 1}."""
    return (binarized_digit_pixels(cfg.image_side, batch_size, generator),)


def _output_shapes(
    cfg: AutoencoderConfig, batch_size: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    return (batch_size, cfg.code_dim), (batch_size, cfg.input_dim)


@register_model(
    family="generative",
    curriculum="002 Q42",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=_output_shapes,
    task=REGRESSION,
    prediction="1",  # the reconstruction: MSE against the input, the seed's nn.MSELoss
    targets=reconstruction_targets,
    caps={Cap.TORCHSCRIPT, Cap.QUANT_DYNAMIC, Cap.AMP},
    # catalog: measured on the seed's class. Encoder 401,920 + 131,328 + 32,896, decoder
    # 33,024 + 131,584 + 402,192.
    full_params=1_132_944,
)
def autoencoder_mlp(cfg: AutoencoderConfig) -> Autoencoder:
    """MLP autoencoder 784-512-256-128 (ReLU code) and back to 784 with a Sigmoid output."""
    return Autoencoder(cfg)
