"""Backbone + feature pyramid + per-pixel mask head (curriculum 002 Q52 v1), corrected.

002 Q52 v1 is titled "Segment Anything" but holds three unconnected parts (catalog B72): a
"ResNet-like" backbone, a feature pyramid network and a mask head. It has no ViT image encoder,
no prompt encoder and no promptable decoder; it is a semantic segmenter, and this module is that
segmenter, assembled and corrected. The seed's parts, kept layer for layer:

- ``BackboneNetwork``: stem conv 7x7 / 2 (64) + BatchNorm + ReLU + max pool 3 / 2 (stride 4),
  then stages of (conv 3x3 + BatchNorm + ReLU): 64 -> 128 (x3), -> 256 (x4), -> 512 (x6).
- ``FeaturePyramidNetwork`` over c2, c3, c4: 1x1 laterals to 256, bilinear upsample-add from
  the top, 3x3 smoothing.
- ``MaskHead``: 3 x (conv 3x3 + ReLU), ConvTranspose2d(k2, s2) + ReLU, 1x1 to the classes.

The defect (catalog §1): the seed's stages never downsample after the stride-4 stem, so at
256x256 every c* is 64x64, the FPN's "upsampling" resizes 64x64 to 64x64 (the identity) and the
pyramid is a sum of 1x1 convolutions (checks/test_curriculum_bugs_fpn_mask.py runs it).

Ours:
- the first conv of stages 3 and 4 has stride 2, so c2, c3, c4 sit at strides 4, 8, 16 (64, 32,
  16 at 256x256), the levels of Lin et al., 2017 (https://arxiv.org/abs/1612.03144). A stride
  changes no parameter: the backbone's state_dict is the seed's, names included (checked);
- the pyramid is ``FPNTopDown`` (impl/techniques/upsampling.py) with the seed's bilinear mode:
  it smooths every level, the top one too (the seed leaves p4 unsmoothed; +590,080 at 256
  channels), as torchvision's ``FeaturePyramidNetwork`` does;
- a top-level ``FPNMaskSegmenter`` ties the parts together, which the seed never does. The head
  reads every level: p3 and p4 are resized to p2's size and summed with it (the semantic
  branch of Panoptic FPN, Kirillov et al., 2019, https://arxiv.org/abs/1901.02446, without its
  per-level convolutions), so each level's smoothing conv contributes to the mask;
- the head predicts at the **input resolution**, not at 1/2 as the seed's single deconv from
  stride 4 does: a second ConvTranspose2d(k2, s2) + ReLU (+262,400 at 256 channels), so the
  targets are the scenes' masks as drawn (``impl.models._scenes.scene_class_masks``), never
  resized. For a size that is no multiple of 4 the stride-2 convs round up and the logits are
  cropped to (H, W) from the top left, where both grids start.

Parameters: the seed's three parts hold 18,875,650 for C = 2 (the catalog's 18.9M, measured on
the seed's classes in the checks); ours 19,728,130 = 18,875,650 + 590,080 + 262,400.
Task: per-pixel logits of the 2 scene classes (rectangle, disc) as 2 binary masks, BCE with
logits (``impl.tasks.SEGMENTATION``).

Capabilities: ONNX and CPU autocast. No TorchScript: ``FPNTopDown.forward`` takes ``*features``
and iterates ``reversed`` ModuleLists with ``zip(strict=True)``, none of which torch.jit.script
compiles. No int8: quantize_dynamic converts Linear and LSTM only (there are none).
Dimension key: B batch, C channels, H height, W width, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_module, randn
from impl.models._scenes import CLASSES, draw_scenes, scene_class_masks
from impl.registry import Cap, register_model
from impl.tasks import SEGMENTATION, Shape
from impl.techniques.upsampling import FPNTopDown

STRIDE = 16  # the coarsest level's stride: c4
MIN_SIZE = 2 * STRIDE  # c4 at least 2x2, so one image still has batch statistics to train on


@dataclass(frozen=True)
class FPNMaskConfig:
    # stem, stage 2, stage 3, stage 4 channels: the seed's 64, 128, 256, 512
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    blocks: tuple[int, int, int] = (3, 4, 6)  # conv-BN-ReLU layers per stage, the seed's
    fpn_channels: int = 256  # pyramid and mask head width, the seed's
    num_classes: int = len(CLASSES) - 1  # rectangle, disc
    image_size: int = 128  # example inputs are (B, 3, image_size, image_size)
    min_image_size: int = MIN_SIZE  # the H, W the checks may draw
    max_image_size: int = 1024

    def __post_init__(self) -> None:
        if not MIN_SIZE <= self.min_image_size <= self.image_size <= self.max_image_size:
            raise ValueError(
                f"need {MIN_SIZE} <= min_image_size <= image_size <= max_image_size, got "
                f"{self.min_image_size}, {self.image_size}, {self.max_image_size}"
            )
        if min(self.blocks) < 1:
            raise ValueError(f"every stage needs a layer, got blocks {self.blocks}")


SIZES = {
    # one image size: torch.compile recompiles for each new one (the backend check draws batches)
    "tiny": FPNMaskConfig(
        widths=(8, 8, 16, 16),
        blocks=(1, 1, 1),
        fpn_channels=16,
        image_size=32,
        min_image_size=32,
        max_image_size=32,
    ),
    # the quick run's size: tiny's layers at 48x48, any H, W from 32. Emulated bfloat16 autocast
    # on this CPU costs 2-3x float32 here but 8x at widths (16, 16, 32, 32) and pyramid 32 (a
    # training step of 32 images at 64x64: 4.6 s against 0.58 s), and the quick run repeats it
    "small": FPNMaskConfig(widths=(8, 8, 16, 16), blocks=(1, 1, 1), fpn_channels=16, image_size=48),
    # the seed's widths and depths; its example is 128x128 so that the one full forward of the
    # checks stays cheap (the seed feeds 256x256; any H, W >= 32 works)
    "full": FPNMaskConfig(),
}


def check_input(x: Tensor, min_size: int = MIN_SIZE) -> None:
    """A wrong input fails here, naming the expected shape, rather than inside a conv."""
    if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[2], x.shape[3]) < min_size:
        raise ValueError(
            f"expected input (B, 3, H, W) with H, W >= {min_size}, got {list(x.shape)}"
        )


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    """The seed's layer: conv 3x3 (padding 1) -> BatchNorm2d -> ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@gradcheck_module(
    lambda: BackboneNetwork((2, 2, 3, 3), (1, 1, 1)), lambda g: (randn(g, 2, 3, 16, 16),)
)
class BackboneNetwork(nn.Module):
    """The seed's backbone with stages 3 and 4 starting with a stride-2 conv; the seed's names
    (conv1 .. conv4, ``nn.Sequential`` indices), so its state_dict loads as is.

    Shape: (B, 3, H, W) -> c1 (B, w0, H/4, W/4), c2 (B, w1, H/4, W/4), c3 (B, w2, H/8, W/8),
    c4 (B, w3, H/16, W/16), each size rounded up
    """

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...]) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.conv1 = nn.Sequential(  # stride 4
            nn.Conv2d(3, w0, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = self._make_layer(w0, w1, blocks[0], stride=1)  # stride 4
        self.conv3 = self._make_layer(w1, w2, blocks[1], stride=2)  # stride 8 (the seed's: 4)
        self.conv4 = self._make_layer(w2, w3, blocks[2], stride=2)  # stride 16 (the seed's: 4)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = conv_bn_relu(in_channels, out_channels, stride)  # the stage's one stride
        for _ in range(blocks - 1):
            layers += conv_bn_relu(out_channels, out_channels)
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c1 = self.conv1(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return c1, c2, c3, c4


@gradcheck_module(
    lambda: MaskHead(2, 2, 2), lambda g: (randn(g, 1, 2, 3, 3),), note="3x3 -> 12x12 logits"
)
class MaskHead(nn.Module):
    """The seed's head (3 x conv 3x3 + ReLU, ConvTranspose2d k2 s2 + ReLU, 1x1), with a second
    ConvTranspose2d k2 s2 + ReLU (``deconv2``) so that stride-4 features give input-resolution
    logits.

    Shape: (B, C, h, w) -> (B, K, 4h, 4w)
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None) -> None:
        super().__init__()
        c = channels or in_channels
        self.conv1 = nn.Conv2d(in_channels, c, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(c, c, kernel_size=3, padding=1)
        self.deconv = nn.ConvTranspose2d(c, c, kernel_size=2, stride=2)  # (B, C, 2h, 2w)
        self.deconv2 = nn.ConvTranspose2d(c, c, kernel_size=2, stride=2)  # (B, C, 4h, 4w)
        self.mask_pred = nn.Conv2d(c, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.deconv(x))
        x = F.relu(self.deconv2(x))
        return self.mask_pred(x)


class FPNMaskSegmenter(nn.Module):
    """Backbone (strides 4/8/16) -> FPN over c2, c3, c4 -> sum of the levels at p2's size ->
    mask head at the input resolution.

    Shape: (B, 3, H, W) -> logits (B, K, H, W), any H, W >= 32
    """

    def __init__(self, cfg: FPNMaskConfig) -> None:
        super().__init__()
        self.backbone = BackboneNetwork(cfg.widths, cfg.blocks)
        # the seed's toplayer, lateral3, lateral2 and smooth3, smooth2 (+ a smoothing conv on p4)
        self.fpn = FPNTopDown(cfg.widths[1:], cfg.fpn_channels, mode="bilinear")
        self.mask_head = MaskHead(cfg.fpn_channels, cfg.num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        """The pyramid, finest first: p2, p3, p4 (B, fpn_channels, H/4, /8, /16 rounded up)."""
        check_input(x)
        _, c2, c3, c4 = self.backbone(x)
        return self.fpn(c2, c3, c4)

    def forward(self, x: Tensor) -> Tensor:
        p2, p3, p4 = self.features(x)
        size = p2.shape[-2:]
        fused = (
            p2
            + F.interpolate(p3, size=size, mode="bilinear", align_corners=False)
            + F.interpolate(p4, size=size, mode="bilinear", align_corners=False)
        )  # (B, C, H/4, W/4)
        logits = self.mask_head(fused)  # (B, K, 4 ceil(H/4), 4 ceil(W/4))
        return logits[..., : x.shape[-2], : x.shape[-1]]  # (B, K, H, W)


def _example_inputs(
    cfg: FPNMaskConfig,
    batch_size: int,
    generator,
    height: int | None = None,
    width: int | None = None,
) -> tuple[Tensor]:
    return (draw_scenes(generator, batch_size, height or cfg.image_size, width or cfg.image_size),)


def _output_shape(
    cfg: FPNMaskConfig, batch_size: int, height: int | None = None, width: int | None = None
) -> Shape:
    return (batch_size, cfg.num_classes, height or cfg.image_size, width or cfg.image_size)


def _image_dims(cfg: FPNMaskConfig) -> dict[str, tuple[int, int]]:
    dims = (cfg.min_image_size, cfg.max_image_size)
    return {"height": dims, "width": dims}


def _scene_targets(
    cfg: FPNMaskConfig, inputs: tuple[Tensor, ...], shape: Shape, generator
) -> Tensor:
    """The rectangle and disc masks of each scene, (B, 2, H, W), decoded from the images."""
    if shape[1] != len(CLASSES) - 1:
        raise ValueError(f"the scenes have {len(CLASSES) - 1} classes, got num_classes {shape[1]}")
    return scene_class_masks(inputs[0])


@register_model(
    family="conv",
    curriculum="002 Q52",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=_output_shape,
    dynamic_dims=_image_dims,
    task=SEGMENTATION,
    targets=_scene_targets,
    caps={Cap.ONNX, Cap.AMP},
    full_params=19_728_130,  # the seed's parts: 18,875,650 (catalog 18.9M) + 590,080 + 262,400
    quick_size="small",
)
def fpn_mask_head(cfg: FPNMaskConfig) -> FPNMaskSegmenter:
    """Backbone + FPN (strides 4/8/16) + mask head: per-pixel logits of the scenes' 2 classes."""
    return FPNMaskSegmenter(cfg)
