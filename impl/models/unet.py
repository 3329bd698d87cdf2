"""U-Net for binary segmentation (curriculum 002 Q49, the milesial style), and synthetic scenes.

The seed's network, kept layer for layer and name for name (its state_dict loads into ours):

- ``DoubleConv`` = (Conv3x3, no bias -> BatchNorm2d -> ReLU) x 2; padding 1 keeps H and W, so a
  (1, 3, 572, 572) input gives (1, 1, 572, 572) (the paper's valid convolutions give 388x388).
- ``inc`` n_channels -> 64, then 4 ``Down`` stages (MaxPool2d(2) -> DoubleConv) 64 -> 128 ->
  256 -> 512 -> 1024 / f, where f = 2 with bilinear upsampling and 1 with transposed convs.
- 4 ``Up`` stages: bilinear ``Upsample(x2, align_corners=True)`` + DoubleConv(mid = in / 2), or
  ``ConvTranspose2d(in, in / 2, k=2, s=2)`` + DoubleConv; then ``F.pad`` to the skip's size (so
  odd sizes work: 100 -> 50 -> 25 -> 12 -> 6 and back to 100) and ``cat([skip, up])``.
- ``OutConv`` 1x1 -> per-pixel logits (B, n_classes, H, W), no activation: the loss is BCE with
  logits (``impl.tasks.SEGMENTATION``).
- Init as the seed's ``_init_weights``: Kaiming normal, mode ``fan_out``, for ReLU on every conv
  (ConvTranspose2d is no ``nn.Conv2d`` and keeps PyTorch's default), zero conv biases, BatchNorm
  weight 1 and bias 0 (``impl.techniques.init.unet_init_weights``).

Parameters at n_channels 3, n_classes 1: 17,262,977 bilinear (``full``, the seed's default) and
31,037,633 transposed (``full_transposed``), as the catalog measured on the seed's class.
Widths are ``base_width`` x (1, 2, 4, 8, 16): 64 is the seed's; the other sizes narrow it.
The seed's explanation promises "5 down-sampling stages" and "transposed-conv upsampling"; its
code has 4 ``Down`` modules and defaults to bilinear (catalog B39,
checks/test_curriculum_bugs_unet.py). We follow the code.

Deviations: widths and the depth-4 network's input channels and classes are config fields; the
forward checks its input (4-D, n_channels, H and W at least 16, which four 2x2 pools need) and
fails with the expected shape instead of a pooling error deep inside.

Synthetic data (no downloads): ``synthetic_scenes`` draws rectangles and discs on noise with
their masks. Noise lies in [-0.4, 0.4] and a shape adds an intensity in [1, 1.5] to every
channel, so the channel mean exceeds 0.5 exactly inside the shapes: ``scene_masks`` recovers the
mask from the image, which is how the registry's targets (made from the inputs) get it.

Capabilities: TorchScript, ONNX (dynamic batch) and CPU autocast. No int8: quantize_dynamic
converts only Linear and LSTM (U-Net has none), and eager static int8 would need
``FloatFunctional`` for the skip concatenation.
Dimension key: B batch, C channels, H height, W width, K classes (n_classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_module, no_gradcheck, randn
from impl.registry import Cap, register_model
from impl.tasks import SEGMENTATION, Shape
from impl.techniques.init import unet_init_weights

DEPTH = 4  # Down (and Up) stages, as the seed's code (its explanation says 5: B39)
MIN_SIZE = 2**DEPTH  # smallest H, W: four 2x2 max pools leave one pixel
NOISE = 0.4  # background noise amplitude: uniform in [-NOISE, NOISE]
INTENSITY = (1.0, 1.5)  # a shape adds this much (uniform) to every channel
THRESHOLD = 0.5  # NOISE < THRESHOLD < INTENSITY[0] - NOISE: the mask is recoverable


@dataclass(frozen=True)
class UNetConfig:
    n_channels: int = 3
    n_classes: int = 1
    bilinear: bool = True  # the seed's default; False: ConvTranspose2d(k=2, s=2)
    base_width: int = 64  # inc's channels; Down stages double it: 64, 128, 256, 512, 1024 / f
    image_size: int = 100  # example inputs are (B, C, image_size, image_size)
    # the H, W the checks may draw; the model takes any H, W >= 16, but a training batch of one
    # image under 32x32 leaves one value per channel at the bottleneck, which BatchNorm refuses
    min_image_size: int = 2 * MIN_SIZE
    max_image_size: int = 1024

    def __post_init__(self) -> None:
        if not MIN_SIZE <= self.min_image_size <= self.image_size <= self.max_image_size:
            raise ValueError(
                f"need {MIN_SIZE} <= min_image_size <= image_size <= max_image_size, got "
                f"{self.min_image_size}, {self.image_size}, {self.max_image_size}"
            )
        if self.base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {self.base_width}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of inc, down1, ..., down4 before the bilinear factor."""
        return tuple(self.base_width * 2**i for i in range(DEPTH + 1))


SIZES = {
    # 36 -> 18 -> 9 -> 4 -> 2: the way up pads 8 to 9. One size only: torch.compile
    # recompiles for every pattern of odd levels (35 s each here), so the generated checks keep
    # 36 x 36 and checks/test_curriculum_bugs_unet.py draws the odd sizes (16 to 70)
    "tiny": UNetConfig(base_width=4, image_size=36, min_image_size=36, max_image_size=36),
    "tiny_transposed": UNetConfig(
        base_width=4, bilinear=False, image_size=36, min_image_size=36, max_image_size=36
    ),
    # the quick run's size: narrow (base 8) at 64x64. On a CPU without native bfloat16 a CPU
    # autocast training step costs 11x float32's (0.78 s against 0.07 s at batch 8; base 16
    # took 3.1 s), which the quick run's AMP benchmark repeats
    "small": UNetConfig(base_width=8, image_size=64),
    # the seed's network; the seed feeds 572x572, our example is the catalog's odd-size 100x100
    # so that the one full forward of the checks stays cheap (any size >= 16 works)
    "full": UNetConfig(),
    "full_transposed": UNetConfig(bilinear=False),
}


def check_unet_input(x: Tensor, n_channels: int, min_size: int = MIN_SIZE) -> None:
    """A wrong input fails here, naming the expected shape, rather than inside a pool or a pad."""
    if x.dim() != 4 or x.shape[1] != n_channels or min(x.shape[2], x.shape[3]) < min_size:
        raise ValueError(
            f"expected input (B, {n_channels}, H, W) with H, W >= {min_size}, got {list(x.shape)}"
        )


@gradcheck_module(lambda: DoubleConv(2, 3), lambda g: (randn(g, 2, 2, 4, 5),))
class DoubleConv(nn.Module):
    """(Conv3x3 no bias -> BN -> ReLU) x 2, the seed's; mid_channels defaults to out_channels.

    Shape: (B, C_in, H, W) -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        if not mid_channels:
            mid_channels = out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


@gradcheck_module(lambda: Down(2, 3), lambda g: (randn(g, 2, 2, 5, 6),))
class Down(nn.Module):
    """MaxPool2d(2) -> DoubleConv. Shape: (B, C_in, H, W) -> (B, C_out, H // 2, W // 2)"""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.maxpool_conv(x)


@gradcheck_module(
    lambda: Up(4, 2, bilinear=False),
    lambda g: (randn(g, 2, 4, 2, 3), randn(g, 2, 2, 5, 7)),
    note="transposed; an odd skip (5x7) makes F.pad add a row and a column",
)
class Up(nn.Module):
    """Upsample x2 (bilinear, or ConvTranspose2d(k=2, s=2) to C_in / 2 channels), pad to the
    skip's size, concatenate [skip, up], DoubleConv.

    Shape: x1 (B, C_in / 2 bilinear or C_in, h, w), skip x2 (B, C_in / 2, H, W) with
    H in {2h, 2h + 1}, W in {2w, 2w + 1} -> (B, C_out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        x1 = self.up(x1)  # (B, ., 2h, 2w)
        diff_y = x2.size()[2] - x1.size()[2]  # 0 or 1: the skip's size was odd
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        x = torch.cat([x2, x1], dim=1)  # (B, C_in, H, W)
        return self.conv(x)


@gradcheck_module(lambda: OutConv(3, 2), lambda g: (randn(g, 2, 3, 4, 4),))
class OutConv(nn.Module):
    """1x1 conv to per-pixel class logits. Shape: (B, C, H, W) -> (B, K, H, W)"""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """inc -> 4 Down -> 4 Up with skips -> OutConv; the seed's attribute names.

    Shape: (B, C, H, W) -> logits (B, K, H, W), any H, W >= 16
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.n_channels = cfg.n_channels
        self.n_classes = cfg.n_classes
        self.bilinear = cfg.bilinear
        factor = 2 if cfg.bilinear else 1
        w0, w1, w2, w3, w4 = cfg.widths  # 64, 128, 256, 512, 1024 in the seed
        self.inc = DoubleConv(cfg.n_channels, w0)  # (B, w0, H, W)
        self.down1 = Down(w0, w1)  # (B, w1, H/2, W/2)
        self.down2 = Down(w1, w2)  # (B, w2, H/4, W/4)
        self.down3 = Down(w2, w3)  # (B, w3, H/8, W/8)
        self.down4 = Down(w3, w4 // factor)  # (B, w4/f, H/16, W/16)
        self.up1 = Up(w4, w3 // factor, cfg.bilinear)  # (B, w3/f, H/8, W/8)
        self.up2 = Up(w3, w2 // factor, cfg.bilinear)  # (B, w2/f, H/4, W/4)
        self.up3 = Up(w2, w1 // factor, cfg.bilinear)  # (B, w1/f, H/2, W/2)
        self.up4 = Up(w1, w0, cfg.bilinear)  # (B, w0, H, W)
        self.outc = OutConv(w0, cfg.n_classes)  # (B, K, H, W)
        self.apply(unet_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        check_unet_input(x, self.n_channels)
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


# --- synthetic scenes: rectangles and discs on noise, with their masks ---


@no_gradcheck("draws random scenes from a generator: a data maker, nothing to differentiate")
def synthetic_scenes(
    generator: torch.Generator,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
    max_shapes: int = 3,
) -> tuple[Tensor, Tensor]:
    """Images (B, C, H, W) of 1 to ``max_shapes`` rectangles and discs on uniform noise, and
    their masks (B, 1, H, W) in {0., 1.}. Shape sides span 1/4 to 2/3 of the image's smaller
    side; shapes may overlap (the mask is their union; the brighter one sets the intensity)."""
    uniform = torch.rand(batch_size, channels, height, width, generator=generator)
    noise = (uniform * 2 - 1) * NOISE
    rows = torch.arange(height, dtype=torch.float32).view(height, 1)
    cols = torch.arange(width, dtype=torch.float32).view(1, width)
    side = min(height, width)
    lo, hi = max(2, side // 4), max(3, 2 * side // 3)
    intensity = torch.zeros(batch_size, 1, height, width)
    for b in range(batch_size):
        count = int(torch.randint(1, max_shapes + 1, (1,), generator=generator))
        for _ in range(count):
            h, w = (int(v) for v in torch.randint(lo, hi + 1, (2,), generator=generator))
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            if torch.rand(1, generator=generator) < 0.5:  # rectangle h x w
                inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
            else:  # disc of diameter min(h, w), centred in the box
                r = min(h, w) / 2
                cy, cx = top + h / 2 - 0.5, left + w / 2 - 0.5
                inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= r * r
            level = INTENSITY[0] + (INTENSITY[1] - INTENSITY[0]) * float(
                torch.rand(1, generator=generator)
            )
            intensity[b, 0] = torch.where(inside, intensity[b, 0].clamp(min=level), intensity[b, 0])
    return noise + intensity, (intensity > 0).float()


@no_gradcheck("thresholds an image into a {0, 1} mask: a step function, zero gradient a.e.")
def scene_masks(images: Tensor) -> Tensor:
    """The mask of a ``synthetic_scenes`` image: channel mean above 0.5. (B, C, H, W) ->
    (B, 1, H, W) in {0., 1.}; exact, since noise stays within 0.4 and shapes add at least 1."""
    return (images.mean(dim=1, keepdim=True) > THRESHOLD).float()


def _example_inputs(
    cfg: UNetConfig,
    batch_size: int,
    generator: torch.Generator,
    height: int | None = None,
    width: int | None = None,
) -> tuple[Tensor]:
    images, _ = synthetic_scenes(
        generator,
        batch_size,
        cfg.n_channels,
        height or cfg.image_size,
        width or cfg.image_size,
    )
    return (images,)


def _output_shape(
    cfg: UNetConfig, batch_size: int, height: int | None = None, width: int | None = None
) -> Shape:
    return (batch_size, cfg.n_classes, height or cfg.image_size, width or cfg.image_size)


def _image_dims(cfg: UNetConfig) -> dict[str, tuple[int, int]]:
    dims = (cfg.min_image_size, cfg.max_image_size)
    return {"height": dims, "width": dims}


def _scene_targets(
    cfg: UNetConfig, inputs: tuple[Tensor, ...], shape: Shape, generator: torch.Generator
) -> Tensor:
    """The foreground mask of each scene, (B, 1, H, W): the scenes have one class."""
    if shape[1] != 1:
        raise ValueError(f"synthetic scenes have one class (foreground), got n_classes {shape[1]}")
    return scene_masks(inputs[0])


@register_model(
    family="conv",
    curriculum="002 Q49",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=_output_shape,
    dynamic_dims=_image_dims,
    task=SEGMENTATION,
    targets=_scene_targets,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.AMP},
    # BatchNorm2d normalises over B x H/16 x W/16 at the bottleneck: one image of H, W >= 32
    # (every size the checks draw) trains; batch 1 under 32x32 raises ValueError
    min_train_batch=1,
    full_params=17_262_977,  # catalog: the seed's class, bilinear (transposed: 31,037,633)
    quick_size="small",
)
def unet(cfg: UNetConfig) -> UNet:
    """U-Net segmenter: 4 Down, 4 Up (bilinear or transposed) with skips, per-pixel logits."""
    return UNet(cfg)
