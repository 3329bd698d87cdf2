"""Late-fusion classifier with two inputs: image features and text features, each projected by a
Linear layer, concatenated, then classified.

Curriculum: 002 Q33 (``MultiInputModel(img_feature_size=128, text_feature_size=64, hidden_size=32,
num_classes=5)``, 6,533 parameters; the v2 answer is empty). The layers and their names are the
seed's, so its state_dict loads as it is. There is no nonlinearity anywhere, so the whole model is
an affine function of its two inputs (declared ``affine=True`` and checked): the two projections
and the classifier could be folded into one Linear(128 + 64, 5). We keep the seed's wiring, since
it is the curriculum's example of fusion by ``torch.cat``. The only addition: both inputs are
checked (rank, feature size, and equal batch sizes) before use. The fusion itself is the
technique ``multimodal_fusion`` (``impl.techniques.fusion.concat_fusion``).
Dimension key: B batch, I image features, T text features, H hidden units per branch, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape
from impl.techniques.fusion import concat_fusion


@dataclass(frozen=True)
class FusionConfig:
    image_features: int = 128  # I: a precomputed image embedding
    text_features: int = 64  # T: a precomputed text embedding
    hidden_features: int = 32  # H: each branch's projection
    num_classes: int = 5


SIZES = {
    "tiny": FusionConfig(image_features=32, text_features=16, hidden_features=8),
    "full": FusionConfig(),
}


class MultiInputFusion(nn.Module):
    """Linear(image), Linear(text) -> concatenate -> Linear, returning logits. Affine.

    Shape: image (B, I), text (B, T) -> (B, K)
    """

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.image_features, self.text_features = cfg.image_features, cfg.text_features
        self.img_fc = nn.Linear(cfg.image_features, cfg.hidden_features)
        self.text_fc = nn.Linear(cfg.text_features, cfg.hidden_features)
        self.classifier = nn.Linear(2 * cfg.hidden_features, cfg.num_classes)

    def forward(self, image: Tensor, text: Tensor) -> Tensor:
        if image.dim() != 2 or image.shape[1] != self.image_features:
            raise ValueError(
                f"expected image features (B, {self.image_features}), got {list(image.shape)}"
            )
        if (
            text.dim() != 2
            or text.shape[1] != self.text_features
            or text.shape[0] != image.shape[0]
        ):
            raise ValueError(
                f"expected text features (B, {self.text_features}) with the image's "
                f"B = {image.shape[0]}, got {list(text.shape)}"
            )
        combined = concat_fusion(self.img_fc(image), self.text_fc(text))  # (B, 2H)
        return self.classifier(combined)  # (B, K)


def _example_inputs(
    cfg: FusionConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    image = torch.randn(batch_size, cfg.image_features, generator=generator)  # (B, I)
    text = torch.randn(batch_size, cfg.text_features, generator=generator)  # (B, T)
    return image, text


@register_model(
    family="mlp",
    curriculum="002 Q33",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    affine=True,
    full_params=6_533,  # catalog: measured on the curriculum's own class
)
def multi_input_fusion(cfg: FusionConfig) -> MultiInputFusion:
    """Image + text late fusion by concatenation (affine: no nonlinearity)."""
    return MultiInputFusion(cfg)
