"""Small CIFAR-10 CNNs: conv-ReLU-pool stages and a two-layer classifier head.

Three curriculum models, one family:

- ``cifar_cnn_2conv``, curriculum 002 Q27 v1 (545,098 parameters at 32x32): two stages (32, 64
  channels) and a 4096-128-10 head.
- ``cnn_earlystop_224``, curriculum 000 §11.4.2 (the early-stopping example's "SimpleModel",
  12,851,562 parameters at 224x224): the same wiring as Q27 v1 (its ``nn.Flatten`` is
  ``flatten(1)`` and its two ``MaxPool2d(2)`` hold no state), with 16 and 32 channels and a
  100,352-128-10 head, so it is ``CifarCNN`` at another size and shares its state_dict keys.
- ``cifar_cnn_3conv_dropout``, curriculum 002 Q27 v2 (1,147,466 parameters at 32x32): three stages
  (32, 64, 128 channels), then Linear(2048, 512) -> ReLU -> Dropout(0.5) -> Linear(512, 10). The
  attribute names are the curriculum's, so its state_dict loads into ours.

Deviations from the curriculum: we flatten with ``flatten(1)`` (Q27 v2 writes
``view(-1, 128 * 4 * 4)``) and check the input shape, so a wrong input size fails loudly instead
of reshaping across the batch: the curriculum turns a (2, 3, 64, 64) batch into 8 rows (catalog
B36). The input size is a config field rather than hard-coded. Q27 v2's ``evaluate_model`` never
calls ``model.eval()``, so its Dropout stays on at test time (B36); that is the caller's to fix,
and our checks evaluate in eval mode. 000 §11.4.2 selects its model on the CIFAR-10 test set
(B24), a training-loop matter outside the model.
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
    image_size: int = 32  # square input; each stage's 2x2 pool halves it
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64)  # one conv stage per entry
    hidden_features: int = 128
    num_classes: int = 10

    def __post_init__(self) -> None:
        reduction = 2 ** len(self.channels)
        if self.image_size % reduction:
            raise ValueError(f"image_size must be a multiple of {reduction}, got {self.image_size}")

    @property
    def flat_features(self) -> int:
        """Features after the last pool: 64 * 8 * 8 = 4096 for Q27 v1, 128 * 4 * 4 = 2048 for v2."""
        return self.channels[-1] * (self.image_size // 2 ** len(self.channels)) ** 2


def check_image_input(x: Tensor, in_channels: int, image_size: int) -> None:
    """A wrong input size fails here, naming the expected shape, rather than in a reshape."""
    if x.dim() != 4 or list(x.shape[1:]) != [in_channels, image_size, image_size]:
        raise ValueError(
            f"expected input (B, {in_channels}, {image_size}, {image_size}), got {list(x.shape)}"
        )


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
        check_image_input(x, self.in_channels, self.image_size)
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


# 000 §11.4.2: CIFAR-10 resized to 256 and centre-cropped to 224, so fc1 sees 32 * 56 * 56
EARLYSTOP_SIZES = {
    "tiny": CNNConfig(image_size=16, channels=(4, 8), hidden_features=16),
    "small": CNNConfig(image_size=112, channels=(16, 32)),  # fc1: 32 * 28 * 28 = 25,088 -> 128
    "full": CNNConfig(image_size=224, channels=(16, 32)),  # fc1: 32 * 56 * 56 = 100,352 -> 128
}


@register_model(
    family="conv",
    curriculum="000 §11.4.2",
    sizes=EARLYSTOP_SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.QUANT_STATIC, Cap.AMP},
    full_params=12_851_562,  # catalog: measured on the curriculum's own class (fc1: 12,845,184)
    quick_size="small",  # full: 0.75 s per Adam step at batch 32 on 2 cores; small: 0.11 s
)
def cnn_earlystop_224(cfg: CNNConfig) -> CifarCNN:
    """Early-stopping example CNN: two 3x3 conv stages (16, 32) on 224x224, 100352-128-10 head."""
    return CifarCNN(cfg)


@dataclass(frozen=True)
class CNN3Config(CNNConfig):
    channels: tuple[int, ...] = (32, 64, 128)
    hidden_features: int = 512
    dropout: float = 0.5  # after fc1's ReLU


CNN3_SIZES = {
    "tiny": CNN3Config(image_size=16, channels=(4, 8, 16), hidden_features=32),
    "full": CNN3Config(),
}


class CifarCNN3(nn.Module):
    """Conv(3x3) -> ReLU -> MaxPool(2) three times, then Linear -> ReLU -> Dropout -> Linear.

    Shape: (B, C, H, W) -> (B, K), with H = W = cfg.image_size
    """

    def __init__(self, cfg: CNN3Config) -> None:
        super().__init__()
        c1, c2, c3 = cfg.channels
        self.in_channels, self.image_size = cfg.in_channels, cfg.image_size
        self.conv1 = nn.Conv2d(cfg.in_channels, c1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(cfg.flat_features, cfg.hidden_features)
        self.fc2 = nn.Linear(cfg.hidden_features, cfg.num_classes)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        check_image_input(x, self.in_channels, self.image_size)
        x = self.pool(torch.relu(self.conv1(x)))  # (B, C1, H/2, W/2)
        x = self.pool(torch.relu(self.conv2(x)))  # (B, C2, H/4, W/4)
        x = self.pool(torch.relu(self.conv3(x)))  # (B, C3, H/8, W/8)
        x = x.flatten(1)  # (B, C3 * H/8 * W/8); the curriculum's view(-1, 2048) is B36
        x = self.dropout(torch.relu(self.fc1(x)))  # (B, hidden)
        return self.fc2(x)  # (B, K)


@register_model(
    family="conv",
    curriculum="002 Q27",
    sizes=CNN3_SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.QUANT_STATIC, Cap.AMP},
    full_params=1_147_466,  # catalog: measured on the curriculum's own class (Q27 v2)
)
def cifar_cnn_3conv_dropout(cfg: CNN3Config) -> CifarCNN3:
    """CIFAR-10 CNN with three 3x3 conv stages and a 2048-512-10 head with Dropout 0.5."""
    return CifarCNN3(cfg)
