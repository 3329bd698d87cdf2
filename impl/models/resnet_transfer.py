"""Transfer learning with torchvision's ResNet-18: a frozen backbone and a new linear head.

Curriculum: 001 Q11 (K = 2) and 002 Q37 (K = 10): ``models.resnet18(pretrained=True)``, every
parameter ``requires_grad = False``, then ``model.fc = nn.Linear(512, K)``, the only layer that
trains. 11,181,642 parameters for K = 10, of which the head's 5,130 train.

Deviations from the curriculum:

- Weights: ``pretrained=True`` has been deprecated since torchvision 0.13 (catalog B42) and
  downloads ImageNet weights. The config field ``weights`` is None (random initialisation, the
  default: checks and benchmarks never download) or the name of a ``ResNet18_Weights`` member
  (``"IMAGENET1K_V1"``, ``"DEFAULT"``), which builds ``resnet18(weights=ResNet18_Weights[name])``
  and then replaces the head. torchvision reads such weights from the torch hub cache,
  ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``, and downloads only where
  that file is missing.
- Frozen means frozen in every sense. ``requires_grad = False`` stops the optimiser, but in
  training mode the backbone's BatchNorm layers would still update their running statistics on
  every batch, so the curriculum's "frozen" backbone drifts (not in the catalog; shown in
  checks/test_curriculum_bugs_cnn.py). Our ``train()`` keeps the whole backbone in eval mode and
  puts only the head in training mode, so a training step leaves the backbone's state_dict,
  parameters and buffers alike, bit-identical. It also means any batch size trains, even 1.
- Sizes: "full" is torchvision's own ``resnet18`` at 224x224. "tiny" is torchvision's ``ResNet``
  class, ``BasicBlock`` and ``_make_layer`` with one block per stage and a stem 8 channels wide
  instead of 64 (``NarrowResNet``): torchvision's ResNet hard-codes widths 64-512, and its
  smallest variant, ResNet(BasicBlock, [1, 1, 1, 1]), has 4.9M parameters.

The backbone is torchvision's own, so its forward and state_dict keys (under ``resnet.``) are
torchvision's. ResNet ends in global average pooling, so it takes any input size; ``image_size``
only sets the example inputs. Static int8 quantisation is not declared: torchvision's BasicBlock
adds its skip with ``out += identity``, which has no quantised kernel (NotImplementedError,
``aten::add.out`` on QuantizedCPU); dynamic quantisation converts the head, the only Linear.
Dimension key: B batch, C channels (3, RGB), H height, W width, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from impl.differentiable import gradcheck_module, randn
from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape

RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET18_WIDTH = 64


@dataclass(frozen=True)
class ResNetTransferConfig:
    num_classes: int = 10  # 002 Q37; 001 Q11 has 2
    image_size: int = 224  # example inputs are (B, 3, image_size, image_size)
    width: int = RESNET18_WIDTH  # channels of the stem and layer1; layers 2-4 double it each
    blocks: tuple[int, int, int, int] = RESNET18_BLOCKS  # BasicBlocks per stage
    weights: str | None = None  # a ResNet18_Weights member name, e.g. "IMAGENET1K_V1"

    def __post_init__(self) -> None:
        if self.weights is None:
            return
        if self.weights not in ResNet18_Weights.__members__:
            raise ValueError(
                f"weights must be None or one of {sorted(ResNet18_Weights.__members__)}, "
                f"got {self.weights!r}"
            )
        if (self.width, self.blocks) != (RESNET18_WIDTH, RESNET18_BLOCKS):
            raise ValueError("pretrained weights exist only for ResNet-18 (width 64, blocks 2)")


SIZES = {
    "tiny": ResNetTransferConfig(image_size=32, width=8, blocks=(1, 1, 1, 1)),
    # ResNet-18 itself on 64x64 inputs (Tiny ImageNet's size): the quick run's, because CPU
    # autocast without native bf16 emulates bfloat16 convolutions at about 6 s per forward of 32
    # samples at 112x112, which alone took 3 minutes of a quick run
    "small": ResNetTransferConfig(image_size=64),
    "full": ResNetTransferConfig(),
}


def _narrow_resnet_for_gradcheck() -> NarrowResNet:
    """Width 1, one block per stage, two classes; only the stem's BatchNorm (``bn1``) and the head
    train. Their gradients flow back through every layer after the stem convolution (every block's
    convolutions, BatchNorms, ReLUs, skip additions and downsampling, the pooling and the head),
    in 20 elements. All 1,458 parameters and the input (about 2,000 elements, two forward passes
    each) take tens of seconds in exact mode."""
    model = NarrowResNet((1, 1, 1, 1), width=1, num_classes=2)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(("bn1.", "fc.")))
    return model


@gradcheck_module(
    _narrow_resnet_for_gradcheck,
    lambda g: (randn(g, 3, 3, 8, 8),),  # 8x8: 4x4 after the stem, 1x1 from layer2 on; batch 3
    wrt=(),  # the input is not checked (576 elements); bn1 and the head are
    note="bn1 and fc only: their gradients traverse every layer after the stem convolution",
)
class NarrowResNet(ResNet):
    """torchvision's ResNet with BasicBlocks and stage widths w, 2w, 4w, 8w instead of 64-512.

    ``ResNet.__init__`` hard-codes the widths; this sets up the same layers at width ``w`` with
    torchvision's ``_make_layer`` and initialisation, and keeps torchvision's ``forward``.
    """

    def __init__(self, blocks: tuple[int, int, int, int], width: int, num_classes: int) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, blocks[0])
        self.layer2 = self._make_layer(BasicBlock, 2 * width, blocks[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, blocks[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():  # as ResNet.__init__
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def pretrained_backbone(cfg: ResNetTransferConfig) -> ResNet:
    """The ResNet the curriculum starts from, with its own 1000-class head: torchvision's
    ``resnet18`` (loading ``cfg.weights`` from the hub cache where named), or NarrowResNet."""
    if (cfg.width, cfg.blocks) == (RESNET18_WIDTH, RESNET18_BLOCKS):
        weights = ResNet18_Weights[cfg.weights] if cfg.weights else None
        return resnet18(weights=weights)
    return NarrowResNet(cfg.blocks, cfg.width, num_classes=1000)


class ResNetTransfer(nn.Module):
    """A ResNet whose backbone is frozen and whose new head ``resnet.fc`` alone trains.

    The backbone is frozen in every sense: no parameter of it requires a gradient, and it stays
    in eval mode even when the model is put in training mode (``train`` is overridden), so its
    BatchNorm layers use and keep their running statistics. A training step leaves the whole
    backbone state_dict, parameters and buffers, bit-identical; only ``resnet.fc`` changes.

    Shape: (B, 3, H, W) -> (B, K)
    """

    def __init__(self, cfg: ResNetTransferConfig) -> None:
        super().__init__()
        self.resnet = pretrained_backbone(cfg)
        self.resnet.requires_grad_(False)  # freeze everything, then replace the head
        self.resnet.fc = nn.Linear(self.resnet.fc.in_features, cfg.num_classes)
        self.train()

    def train(self, mode: bool = True) -> ResNetTransfer:
        """Training mode for the head only; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.resnet.eval()
        self.resnet.fc.train(mode)
        return self

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input (B, 3, H, W), got {list(x.shape)}")
        return self.resnet(x)  # (B, 3, H, W) -> (B, 8w, H/32, W/32) -> pooled (B, 8w) -> (B, K)


def _example_inputs(
    cfg: ResNetTransferConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor]:
    return (torch.randn(batch_size, 3, cfg.image_size, cfg.image_size, generator=generator),)


@register_model(
    family="conv",
    curriculum="002 Q37",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=class_logits_shape,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    # catalog: backbone 11,176,512 + head 512 * 10 + 10 = 5,130 trainable
    full_params=11_181_642,
    quick_size="small",  # full: 1.09 s per Adam step at batch 32 on 2 cores; 112x112: 0.26 s
)
def resnet18_transfer(cfg: ResNetTransferConfig) -> ResNetTransfer:
    """ResNet-18 transfer learning: frozen backbone (BatchNorm kept in eval), new trainable head."""
    return ResNetTransfer(cfg)
