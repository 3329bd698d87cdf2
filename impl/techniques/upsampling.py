"""Upsampling in segmentation and detection decoders: bilinear ``nn.Upsample`` against a learned
``nn.ConvTranspose2d``, ``F.pad`` to make an upsampled map match its skip connection, and the
feature pyramid's top-down upsample-add step.

Curriculum: 002 Q49 (UNet ``Up``: ``nn.Upsample(scale_factor=2, mode='bilinear',
align_corners=True)`` or ``nn.ConvTranspose2d(in, in // 2, kernel_size=2, stride=2)``, then
``F.pad`` by the size difference and ``torch.cat([x2, x1], dim=1)``), 002 Q51 v1 and 002 Q52 v1
(FPN ``_upsample_add``: ``F.interpolate(x, size=y.shape[2:], mode='bilinear') + y``).
Catalog §2 ``upsampling_fpn``: ConvTranspose2d(k2, s2) doubles H and W exactly; after ``F.pad``
the sizes match for odd inputs (UNet, e.g. 100×100 and 101×101).

Why the pad: a stride-2 max pool floors, so an odd map of 25 becomes 12, and upsampling 12 gives
24, one short of the 25-wide skip it is concatenated with. ``pad_to_match`` pads the difference,
split as evenly as possible (the extra column on the right and row at the bottom), as the seed
does; a negative difference crops.

Why FPN levels must differ in resolution: the top-down path upsamples a coarse, semantically
strong map and adds it to a finer lateral one. In 002 Q52 v1 (and Q51 v1) the backbone never
downsamples after its stride-4 stem, so every level has the same size, the "upsampling" is the
identity and the pyramid is a sum of 1×1 convolutions. ``DownsamplingBackbone`` halves the
resolution at every stage (strides 4, 8, 16, ...), and ``FPNTopDown`` is the pyramid of Lin et
al., 2017 (https://arxiv.org/abs/1612.03144): 1×1 laterals, nearest-neighbour upsampling to the
finer level's exact size (``F.interpolate(size=...)``, so odd sizes work), 3×3 smoothing. With
``mode="nearest"`` it computes what ``torchvision.ops.FeaturePyramidNetwork`` computes (the
checks load the same weights into both); ``mode="bilinear"`` is the seed's choice.

Dimension key: N batch, C channels, H×W spatial size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, randn
from impl.techniques.registry import Category, register_technique


def upsample2x(in_channels: int, *, bilinear: bool = True) -> nn.Module:
    """The two ways 002 Q49 doubles a map: a fixed bilinear interpolation (keeps the channels,
    no parameters) or a learned transposed convolution (halves the channels, as the seed's UNet
    does). Both map (N, C, H, W) to (N, C or C // 2, 2H, 2W)."""
    if bilinear:
        # align_corners=True: output corners sit on input corners (the seed's setting)
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    # kernel 2, stride 2: the 2×2 footprints tile the output without overlap, out = 2·in exactly
    return nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)


@gradcheck_function(lambda g: (randn(g, 1, 2, 3, 4), randn(g, 1, 1, 6, 5)), wrt=(0,))
def pad_to_match(x: Tensor, reference: Tensor) -> Tensor:
    """Zero-pad (or crop, for a negative difference) ``x``'s last two dimensions to
    ``reference``'s, splitting each difference as the seed does: ``d // 2`` before and
    ``d - d // 2`` after (a crop takes the odd row or column from the end too).

    Shape: x (..., h, w), reference (..., H, W) -> (..., H, W)
    """
    left, right = _split(reference.shape[-1] - x.shape[-1])
    top, bottom = _split(reference.shape[-2] - x.shape[-2])
    return F.pad(x, [left, right, top, bottom])  # F.pad lists the last dimension first


def _split(diff: int) -> tuple[int, int]:
    """(before, after): the odd one after, for padding (the seed's d // 2, d - d // 2) and for
    cropping alike, so that cropping undoes padding."""
    before = diff // 2 if diff >= 0 else -(-diff // 2)
    return before, diff - before


@gradcheck_module(
    lambda: UpConcat(4, bilinear=False),
    lambda g: (randn(g, 1, 4, 2, 3), randn(g, 1, 2, 5, 7)),
)
class UpConcat(nn.Module):
    """The UNet decoder's join (002 Q49 ``Up`` without its DoubleConv): upsample the coarse map,
    pad it to the skip's size, concatenate ``[skip, upsampled]`` on channels.

    Shape: x (N, C, h, w), skip (N, C_s, H, W) with H ∈ {2h, 2h + 1} (a floored pooling)
        -> (N, C_s + C, H, W) bilinear, (N, C_s + C // 2, H, W) transposed
    """

    def __init__(self, in_channels: int, *, bilinear: bool = True):
        super().__init__()
        self.up = upsample2x(in_channels, bilinear=bilinear)
        self.out_extra = in_channels if bilinear else in_channels // 2

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = pad_to_match(self.up(x), skip)  # (N, C or C // 2, H, W)
        return torch.cat([skip, up], dim=1)  # (N, C_s + ..., H, W)


@gradcheck_module(
    lambda: DownsamplingBackbone(in_channels=1, widths=(2, 3)),
    lambda g: (randn(g, 1, 1, 8, 8),),
)
class DownsamplingBackbone(nn.Module):
    """A small backbone whose levels really differ in resolution: a stride-4 stem (conv 3×3 / 2
    + max pool 2, the seed's stem shape) to ``widths[0]`` channels, then one stride-2 3×3 conv +
    ReLU per further width. Returns every level, finest first: strides 4, 8, 16, ...

    Shape: (N, in_channels, H, W) -> [(N, widths[i], ~H / 2^(i+2), ~W / 2^(i+2)) for each i]
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU())
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = [self.stem(x)]  # stride 4
        for stage in self.stages:
            levels.append(stage(levels[-1]))  # each halves H and W (ceil for odd sizes)
        return levels


@gradcheck_module(
    lambda: FPNTopDown((2, 3), out_channels=2),
    lambda g: (randn(g, 1, 2, 5, 5), randn(g, 1, 3, 3, 3)),
)
class FPNTopDown(nn.Module):
    """Feature pyramid top-down pathway: ``p_top = lateral(c_top)``, then for each finer level
    ``p_i = lateral_i(c_i) + upsample(p_{i+1}, size of c_i)``; every p_i goes through a 3×3
    smoothing conv. Levels are given finest first, as a backbone returns them.

    Shape: [(N, in_channels[i], H_i, W_i)] -> [(N, out_channels, H_i, W_i)]
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        out_channels: int = 256,
        *,
        mode: Literal["nearest", "bilinear"] = "nearest",
    ):
        super().__init__()
        self.mode = mode
        self.laterals = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )

    def upsample_add(self, coarse: Tensor, lateral: Tensor) -> Tensor:
        """coarse (N, C, h, w) resized to lateral's (H, W) exactly, plus lateral."""
        extra = {} if self.mode == "nearest" else {"align_corners": False}
        return F.interpolate(coarse, size=lateral.shape[-2:], mode=self.mode, **extra) + lateral

    def forward(self, *features: Tensor) -> list[Tensor]:
        if len(features) != len(self.laterals):
            raise ValueError(f"expected {len(self.laterals)} levels, got {len(features)}")
        merged = [self.laterals[-1](features[-1])]  # coarsest first while merging
        for lateral, c in zip(reversed(self.laterals[:-1]), reversed(features[:-1]), strict=True):
            merged.append(self.upsample_add(merged[-1], lateral(c)))
        merged.reverse()  # finest first again
        return [smooth(p) for smooth, p in zip(self.smooth, merged, strict=True)]


register_technique(
    name="upsampling_fpn",
    category=Category.MODULE,
    curriculum="002 Q49, Q51 v1, Q52 v1",
    summary="2× upsampling (bilinear Upsample or ConvTranspose2d k2 s2), F.pad to the skip's size "
    "for odd inputs, and an FPN top-down upsample-add over levels of different resolution",
    api="nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True), "
    "nn.ConvTranspose2d(k=2, s=2), F.pad, F.interpolate(size=...), "
    "torchvision.ops.FeaturePyramidNetwork",
    also_in=("impl.models.fpn_mask",),
)
