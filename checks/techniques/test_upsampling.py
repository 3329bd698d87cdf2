"""upsampling_fpn: 2× upsampling (bilinear and transposed convolution), F.pad for odd skip sizes
(002 Q49 UNet), and the FPN top-down upsample-add (002 Q51 v1, Q52 v1) against torchvision's
FeaturePyramidNetwork, with the seed's Q52 v1 backbone beside it."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from impl.techniques.upsampling import (
    DownsamplingBackbone,
    FPNTopDown,
    UpConcat,
    pad_to_match,
    upsample2x,
)

SIZES = st.integers(1, 24)


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@given(h=SIZES, w=SIZES, c=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_upsampling_fpn_conv_transpose_k2_s2_doubles_h_and_w(h, w, c, seed) -> None:
    up = upsample2x(c, bilinear=False)
    assert isinstance(up, nn.ConvTranspose2d)
    assert up(_randn(seed, 1, c, h, w)).shape == (1, c // 2, 2 * h, 2 * w)


@given(seed=st.integers(0, 2**16))
@settings(max_examples=10)
def test_upsampling_fpn_conv_transpose_k2_s2_writes_one_2x2_block_per_input_pixel(seed) -> None:
    """Closed form: with kernel 2 and stride 2 the footprints do not overlap, so
    out[o, 2i + a, 2j + b] = Σ_c x[c, i, j] W[c, o, a, b] + bias[o]."""
    torch.manual_seed(seed)
    up = upsample2x(4, bilinear=False).double()
    x = _randn(seed, 1, 4, 3, 5).double()
    block = torch.einsum("ncij,coab->noiajb", x, up.weight)  # (1, 2, 3, 2, 5, 2)
    expected = block.reshape(1, 2, 6, 10) + up.bias.view(1, 2, 1, 1)
    torch.testing.assert_close(up(x), expected)


@given(h=st.integers(2, 12), w=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_upsampling_fpn_bilinear_align_corners_doubles_and_keeps_the_corners(h, w, seed) -> None:
    up = upsample2x(3, bilinear=True)
    x = _randn(seed, 1, 3, h, w)
    y = up(x)
    assert y.shape == (1, 3, 2 * h, 2 * w)
    corners = (slice(None), slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
    torch.testing.assert_close(y[corners], x[corners])


@given(h=st.integers(2, 12), w=st.integers(2, 12), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_upsampling_fpn_bilinear_is_exact_on_a_linear_ramp(h, w, a, b) -> None:
    """align_corners=True maps output index i to input coordinate i (H - 1) / (2H - 1); bilinear
    interpolation reproduces a linear function exactly, so the output is the ramp there."""
    i = torch.arange(h, dtype=torch.float64).view(h, 1)
    j = torch.arange(w, dtype=torch.float64).view(1, w)
    ramp = (a * i + b * j + 1.0).expand(1, 1, h, w)
    oi = torch.arange(2 * h, dtype=torch.float64).view(-1, 1) * (h - 1) / (2 * h - 1)
    oj = torch.arange(2 * w, dtype=torch.float64).view(1, -1) * (w - 1) / (2 * w - 1)
    expected = (a * oi + b * oj + 1.0).expand(1, 1, 2 * h, 2 * w)
    torch.testing.assert_close(upsample2x(1)(ramp), expected)


@given(size=st.integers(2, 130), bilinear=st.booleans(), seed=st.integers(0, 2**16))
@example(size=100, bilinear=True, seed=0)
@example(size=101, bilinear=False, seed=0)
@settings(max_examples=15)
def test_upsampling_fpn_pad_makes_the_unet_skip_concat_work_for_every_size(
    size, bilinear, seed
) -> None:
    """UNet: skip (size), pooled to size // 2, upsampled back: one short for odd sizes, and the
    padded map concatenates with the skip."""
    skip = _randn(seed, 1, 4, size, size + 1)
    coarse = F.max_pool2d(skip, 2)  # floors: (size // 2, (size + 1) // 2)
    joined = UpConcat(4, bilinear=bilinear)(coarse, skip)
    assert joined.shape == (1, 4 + (4 if bilinear else 2), size, size + 1)


def test_upsampling_fpn_without_the_pad_an_odd_skip_does_not_concatenate() -> None:
    """Why the pad is there: 25 → pool → 12 → upsample → 24, and cat refuses 24 beside 25."""
    skip = torch.randn(1, 2, 25, 25)
    up = upsample2x(2)(F.max_pool2d(skip, 2))
    assert up.shape[-1] == 24
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        torch.cat([skip, up], dim=1)


@given(h=SIZES, w=SIZES, dh=st.integers(0, 5), dw=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_upsampling_fpn_pad_to_match_centres_the_map_in_zeros(h, w, dh, dw, seed) -> None:
    x = _randn(seed, 1, 2, h, w)
    padded = pad_to_match(x, torch.empty(1, 1, h + dh, w + dw))
    assert padded.shape == (1, 2, h + dh, w + dw)
    top, left = dh // 2, dw // 2  # the seed's split: the extra row and column after
    torch.testing.assert_close(padded[..., top : top + h, left : left + w], x)
    assert padded.abs().sum() == pytest.approx(x.abs().sum().item(), rel=1e-6)  # the rest is 0


@given(h=SIZES, w=SIZES, dh=st.integers(0, 5), dw=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_upsampling_fpn_pad_to_match_crops_back_what_it_padded(h, w, dh, dw, seed) -> None:
    x = _randn(seed, 1, 2, h, w)
    padded = pad_to_match(x, torch.empty(h + dh, w + dw))
    torch.testing.assert_close(pad_to_match(padded, x), x)


@given(size=st.integers(16, 70), seed=st.integers(0, 2**16))
@settings(max_examples=10)
def test_upsampling_fpn_backbone_levels_halve_in_resolution(size, seed) -> None:
    """Strides 4, 8, 16: each level is ceil(previous / 2), so the pyramid really is one."""
    levels = DownsamplingBackbone(1, widths=(2, 3, 4))(_randn(seed, 1, 1, size, size))
    sizes = [lvl.shape[-1] for lvl in levels]
    assert sizes[0] == (size + 1) // 2 // 2
    assert sizes[1:] == [(s + 1) // 2 for s in sizes[:-1]]
    assert len(set(sizes)) == len(sizes) or sizes[-1] == 1


@given(seed=st.integers(0, 2**16), size=st.integers(9, 40))
@settings(max_examples=10)
def test_upsampling_fpn_top_down_equals_torchvision_feature_pyramid_network(seed, size) -> None:
    """Same weights in both: 1×1 laterals (torchvision's inner blocks), nearest upsampling to the
    finer level's size, 3×3 smoothing (layer blocks)."""
    torch.manual_seed(seed)
    widths = (3, 4, 5)
    ours = FPNTopDown(widths, out_channels=6)
    theirs = FeaturePyramidNetwork(list(widths), 6)
    for i in range(len(widths)):
        theirs.inner_blocks[i][0].load_state_dict(ours.laterals[i].state_dict())
        theirs.layer_blocks[i][0].load_state_dict(ours.smooth[i].state_dict())
    features = DownsamplingBackbone(2, widths)(_randn(seed, 1, 2, size, size + 3))
    expected = theirs(OrderedDict((str(i), f) for i, f in enumerate(features)))
    for p, q in zip(ours(*features), expected.values(), strict=True):
        torch.testing.assert_close(p, q)


@given(seed=st.integers(0, 2**16), mode=st.sampled_from(["nearest", "bilinear"]))
@settings(max_examples=10)
def test_upsampling_fpn_coarsest_level_reaches_the_finest_output(seed, mode) -> None:
    """The top-down path: changing only the coarsest backbone level changes the finest output,
    and every output keeps its level's size."""
    torch.manual_seed(seed)
    fpn = FPNTopDown((2, 3, 4), out_channels=3, mode=mode)
    c2, c3, c4 = _randn(seed, 1, 2, 13, 13), _randn(seed + 1, 1, 3, 7, 7), _randn(seed, 1, 4, 4, 4)
    p2, p3, p4 = fpn(c2, c3, c4)
    assert [p.shape[-1] for p in (p2, p3, p4)] == [13, 7, 4]
    assert not torch.allclose(fpn(c2, c3, c4 + 1.0)[0], p2)


def test_upsampling_fpn_rejects_a_wrong_number_of_levels() -> None:
    with pytest.raises(ValueError, match="expected 2 levels"):
        FPNTopDown((2, 3), 4)(torch.zeros(1, 2, 4, 4))


class CurriculumBackboneQ52v1(nn.Module):
    """002 Q52 v1 ``BackboneNetwork`` as written: a stride-4 stem, then 3×3 conv stacks that
    never downsample."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = self._make_layer(64, 128, 3)
        self.conv3 = self._make_layer(128, 256, 4)
        self.conv4 = self._make_layer(256, 512, 6)

    def _make_layer(self, in_channels, out_channels, blocks):
        layers = []
        for _ in range(blocks):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
            layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x):
        c1 = self.conv1(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return c1, c2, c3, c4


def curriculum_upsample_add_q52v1(x, y):
    """002 Q52 v1 ``FeaturePyramidNetwork._upsample_add`` as written."""
    return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=False) + y


@torch.no_grad()
def test_upsampling_fpn_seed_q52_v1_never_downsamples_so_its_upsample_does_nothing() -> None:
    """Catalog §1 ``fpn_mask_head``: every c* of the seed's backbone has one size (64×64 for a
    256 input; 8×8 for the 32 input here), so its FPN's upsample is the identity; our backbone's
    levels are 8×8, 4×4, 2×2 for the same input."""
    x = torch.randn(1, 3, 32, 32)
    _, c2, c3, c4 = CurriculumBackboneQ52v1().eval()(x)
    assert c2.shape[-2:] == c3.shape[-2:] == c4.shape[-2:] == (8, 8)
    coarse = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(
        curriculum_upsample_add_q52v1(coarse, torch.zeros_like(coarse)), coarse
    )
    ours = DownsamplingBackbone(3, widths=(8, 16, 32))(x)
    assert [tuple(c.shape[-2:]) for c in ours] == [(8, 8), (4, 4), (2, 2)]
