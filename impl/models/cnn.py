"""Small CIFAR-10 CNN: two conv-ReLU-pool stages and a two-layer classifier head.

Curriculum: 002 Q27 v1 (545,098 parameters at 32x32). Deviations from the curriculum: we flatten
with ``flatten(1)`` so a wrong input size fails loudly instead of reshaping across the batch
(catalog B36), and the input size is a config field rather than hard-coded.
Dimension key: B batch, C channels, H height, W width, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape


@dataclass(frozen=True)
class CNNConfig:
    image_size: int = 32  # square input; two 2x2 pools need a multiple of 4
    in_channels: int = 3
    channels: tuple[int, int] = (32, 64)
    hidden_features: int = 128
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")

    @property
    def flat_features(self) -> int:
        return self.channels[1] * (self.image_size // 4) ** 2  # 64 * 8 * 8 = 4096 at full size


SIZES = {
    "tiny": CNNConfig(image_size=16, channels=(4, 8), hidden_features=16),
    "full": CNNConfig(),
}


class CifarCNN(nn.Module):
    """Conv(3x3) -> ReLU -> MaxPool(2) twice, then Linear -> ReLU -> Linear.

    Shape: (B, C, H, W) -> (B, K), with H = W = cfg.image_size
    """

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        c1, c2 = cfg.channels
        self.in_channels, self.image_size = cfg.in_channels, cfg.image_size
        self.conv1 = nn.Conv2d(cfg.in_channels, c1, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(cfg.flat_features, cfg.hidden_features)
        self.fc2 = nn.Linear(cfg.hidden_features, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or list(x.shape[1:]) != [
            self.in_channels,
            self.image_size,
            self.image_size,
        ]:
            raise ValueError(
                f"expected input (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {list(x.shape)}"
            )
        x = self.pool(torch.relu(self.conv1(x)))  # (B, C1, H/2, W/2)
        x = self.pool(torch.relu(self.conv2(x)))  # (B, C2, H/4, W/4)
        x = x.flatten(1)  # (B, C2 * H/4 * W/4)
        x = torch.relu(self.fc1(x))  # (B, hidden)
        return self.fc2(x)  # (B, K)


def _example_inputs(cfg: CNNConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    shape = (batch_size, cfg.in_channels, cfg.image_size, cfg.image_size)
    return (torch.randn(shape, generator=generator),)


@register_model(
    family="conv",
    curriculum="002 Q27",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.QUANT_STATIC, Cap.AMP},
    full_params=545_098,  # catalog: measured on the curriculum's own class
)
def cifar_cnn_2conv(cfg: CNNConfig) -> CifarCNN:
    """CIFAR-10 CNN with two 3x3 conv stages and a 4096-128-10 head."""
    return CifarCNN(cfg)
