"""Two-layer MLP classifier, the curriculum's basic training-loop model "SimpleNN".

Curriculum: 003 §2 (Linear(784, 128) -> ReLU -> Linear(128, 10), 101,770 parameters).
Dimension key: B batch, D input features, H hidden units, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape


@dataclass(frozen=True)
class MLPConfig:
    in_features: int = 784  # a flattened 28x28 image
    hidden_features: int = 128
    num_classes: int = 10


SIZES = {
    "tiny": MLPConfig(in_features=64, hidden_features=32),  # 8x8 digits, as sklearn's load_digits
    "full": MLPConfig(),
}


class MLP(nn.Module):
    """Linear -> ReLU -> Linear, returning logits.

    Shape: (B, D) -> (B, K)
    """

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.in_features = cfg.in_features
        self.fc1 = nn.Linear(cfg.in_features, cfg.hidden_features)
        self.fc2 = nn.Linear(cfg.hidden_features, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input (B, {self.in_features}), got {list(x.shape)}")
        x = torch.relu(self.fc1(x))  # (B, H)
        return self.fc2(x)  # (B, K)


def _example_inputs(cfg: MLPConfig, batch_size: int, generator: torch.Generator) -> tuple[Tensor]:
    return (torch.randn(batch_size, cfg.in_features, generator=generator),)


@register_model(
    family="mlp",
    curriculum="003 §2",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    full_params=101_770,  # catalog: measured on the curriculum's own class
)
def mlp_784_128_10(cfg: MLPConfig) -> MLP:
    """Two-layer MLP 784-128-10 with ReLU (the curriculum's SimpleNN)."""
    return MLP(cfg)
