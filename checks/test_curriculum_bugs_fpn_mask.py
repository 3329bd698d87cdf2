"""The curriculum's "Segment Anything" v1 (002 Q52 v1) and ours, ``fpn_mask_head``.

The seed's code, copied as written, shows its defects: its backbone never downsamples after the
stride-4 stem, so every pyramid level has the same size and the FPN's upsampling is the identity
(catalog §1), and it is a backbone, a pyramid and a mask head, not SAM, with no model that joins
them (catalog B72). Ours keeps the seed's layers (its backbone's state_dict loads into ours) with
levels at strides 4, 8 and 16 and a mask at the input resolution.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.techniques.test_upsampling import CurriculumBackboneQ52v1 as BackboneNetwork
from impl import count_parameters, get_spec
from impl.models import fpn_mask as ours

# --- 002 Q52 v1 as written (three classes, no model that uses them together) ---


# BackboneNetwork: the upsampling checks' copy (checks/techniques/test_upsampling.py)


class FeaturePyramidNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.toplayer = nn.Conv2d(512, 256, kernel_size=1)
        self.lateral3 = nn.Conv2d(256, 256, kernel_size=1)
        self.lateral2 = nn.Conv2d(128, 256, kernel_size=1)
        self.smooth3 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.smooth2 = nn.Conv2d(256, 256, kernel_size=3, padding=1)

    def forward(self, c2, c3, c4):
        p4 = self.toplayer(c4)
        p3 = self._upsample_add(p4, self.lateral3(c3))
        p2 = self._upsample_add(p3, self.lateral2(c2))
        p3 = self.smooth3(p3)
        p2 = self.smooth2(p2)
        return p2, p3, p4

    def _upsample_add(self, x, y):
        return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=False) + y


class MaskHead(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.deconv = nn.ConvTranspose2d(256, 256, kernel_size=2, stride=2)
        self.mask_pred = nn.Conv2d(256, num_classes, kernel_size=1)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.deconv(x))
        return self.mask_pred(x)


SEED_CLASSES = (BackboneNetwork, FeaturePyramidNetwork, MaskHead)
SEED_PARAMS = 18_875_650  # the catalog's "18.9M for C=2", counted on the seed's classes below
SPEC = get_spec("fpn_mask_head")
CLASSES = 2  # the scenes' rectangle and disc


def seed_parts() -> tuple[BackboneNetwork, FeaturePyramidNetwork, MaskHead]:
    return BackboneNetwork(), FeaturePyramidNetwork(), MaskHead(CLASSES)


def test_fpn_mask_head_seed_levels_are_all_64x64_at_256_and_ours_are_64_32_16() -> None:
    """The catalog's figures at (1, 3, 256, 256), on the meta device (shapes without arithmetic):
    the seed's c2, c3, c4 and p2, p3, p4 are all 64x64 and its mask 128x128; ours are 64, 32, 16
    and the mask 256x256."""
    x = torch.empty(1, 3, 256, 256, device="meta")
    with torch.device("meta"):
        backbone, fpn, head = seed_parts()
        model = SPEC.create("full")
    _, c2, c3, c4 = backbone(x)
    seed_levels = fpn(c2, c3, c4)
    assert [tuple(c.shape[-2:]) for c in (c2, c3, c4)] == [(64, 64)] * 3
    assert [tuple(p.shape) for p in seed_levels] == [(1, 256, 64, 64)] * 3
    assert tuple(head(seed_levels[0]).shape) == (1, CLASSES, 128, 128)

    _, c2, c3, c4 = model.backbone(x)
    assert [tuple(c.shape[-2:]) for c in (c2, c3, c4)] == [(64, 64), (32, 32), (16, 16)]
    levels = model.features(x)
    assert [tuple(p.shape) for p in levels] == [
        (1, 256, 64, 64),
        (1, 256, 32, 32),
        (1, 256, 16, 16),
    ]
    assert tuple(model(x).shape) == (1, CLASSES, 256, 256)


def test_fpn_mask_head_seed_fpn_upsampling_is_the_identity() -> None:
    """In the seed, resizing p4 "up" to c3's size changes nothing, bit for bit: its top-down
    pathway is p3 = toplayer(c4) + lateral3(c3), a sum of 1x1 convolutions of same-size maps.
    In ours the same step doubles the resolution."""
    torch.manual_seed(0)
    backbone, fpn, _ = seed_parts()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, c2, c3, c4 = backbone.eval()(x)
        p4 = fpn.toplayer(c4)
        resized = F.interpolate(p4, size=c3.shape[2:], mode="bilinear", align_corners=False)
        assert torch.equal(resized, p4)
        assert torch.equal(fpn._upsample_add(p4, fpn.lateral3(c3)), p4 + fpn.lateral3(c3))

        model = SPEC.create("tiny").eval()
        _, _, c3, c4 = model.backbone(x)
    assert c3.shape[-2:] == (4, 4) and c4.shape[-2:] == (2, 2)


def test_fpn_mask_head_seed_parts_hold_18_9m_params_and_ours_adds_two_layers() -> None:
    """The seed's three parts (C = 2) hold 18,875,650 parameters; ours holds those plus a 3x3
    smoothing conv on p4 (256 * 256 * 9 + 256) and the head's second ConvTranspose2d k2
    (256 * 256 * 4 + 256), counted from the layer shapes, not from our model."""
    with torch.device("meta"):
        parts = seed_parts()
        model = SPEC.create("full")
    assert sum(count_parameters(p) for p in parts) == SEED_PARAMS
    smooth_p4, deconv2 = 256 * 256 * 9 + 256, 256 * 256 * 4 + 256
    assert count_parameters(model) == SEED_PARAMS + smooth_p4 + deconv2 == SPEC.full_params
    assert count_parameters(model.backbone) == count_parameters(parts[0])


def test_fpn_mask_head_backbone_is_the_seeds_but_for_two_strides() -> None:
    """The seed's backbone state_dict loads into ours (strict: same names and shapes), and with
    the first conv of stages 3 and 4 set back to stride 1 ours computes the seed's features bit
    for bit: the two strides are the only difference."""
    torch.manual_seed(0)
    seed = BackboneNetwork().eval()
    mine = SPEC.create("full").backbone.eval()
    mine.load_state_dict(seed.state_dict())
    x = torch.randn(2, 3, 32, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        strided = mine(x)
        assert [tuple(c.shape[-2:]) for c in strided] == [(8, 10), (8, 10), (4, 5), (2, 3)]
        for stage in (mine.conv3, mine.conv4):
            assert stage[0].stride == (2, 2)
            stage[0].stride = (1, 1)
        for a, b in zip(mine(x), seed(x), strict=True):
            assert torch.equal(a, b)


def test_fpn_mask_head_seed_is_no_segment_anything_b72() -> None:
    """Catalog B72: the seed titled "Segment Anything" holds no attention (no ViT image encoder,
    no promptable decoder), takes no prompt (every forward gets images or feature maps only) and
    no class holds another (nothing assembles a model). Ours is one module holding all three."""
    parts = seed_parts()
    for part in parts:
        assert not any(isinstance(m, nn.MultiheadAttention | nn.Linear) for m in part.modules())
        held = {type(m) for m in part.modules()} - {type(part)}
        assert not held & set(SEED_CLASSES)
    model = SPEC.create("tiny")
    kinds = {type(m) for m in model.modules()}
    assert {ours.BackboneNetwork, ours.MaskHead, ours.FPNTopDown} <= kinds


@settings(max_examples=10)
@given(height=st.integers(32, 70), width=st.integers(32, 70), batch=st.integers(1, 3))
def test_fpn_mask_head_mask_is_at_the_input_resolution_for_any_size(
    height: int, width: int, batch: int
) -> None:
    """Sizes that are no multiple of 4 or 16 too: the stride-2 layers round up and the logits are
    cropped to (H, W); the targets are the drawn masks, at the same size."""
    cfg = SPEC.config("small")
    model = SPEC.create("small").eval()
    (x,) = SPEC.inputs(cfg, batch, height=height, width=width)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (batch, CLASSES, height, width)
    targets = SPEC.make_targets(cfg, (x,), height=height, width=width)
    assert targets.shape == logits.shape and targets.sum() > 0


def test_fpn_mask_head_rejects_an_input_too_small_for_stride_16() -> None:
    """Under 32 pixels c4 has one value per channel, which BatchNorm cannot train on with one
    image: the input check names the expected shape; 32x32 trains with a batch of one."""
    model = SPEC.create("tiny").train()
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\) with H, W >= 32"):
        model(torch.randn(1, 3, 31, 40))
    model(torch.randn(1, 3, 32, 32)).sum().backward()


@pytest.mark.slow
def test_fpn_mask_head_adam_steps_on_scenes_learn_both_class_masks() -> None:
    """The rectangle and disc masks are learnt, not just the background (which alone is ~90% of
    the pixels, so pixel accuracy says little): 150 Adam steps on 8 scenes lower the BCE below a
    quarter of its start, and the mean over the two classes of the eval-mode intersection over
    union with the drawn masks exceeds 0.5 (0 for an all-background prediction). Over scene seeds
    3 to 6 these steps reached losses of 4% to 16% of the start and mean IoUs of 0.64 to 1.0."""
    torch.manual_seed(0)
    cfg = SPEC.config("tiny")
    model = SPEC.create("tiny").train()
    inputs = SPEC.inputs(cfg, 8, seed=3)
    targets = SPEC.make_targets(cfg, inputs, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        optimizer.zero_grad()
        loss = SPEC.loss(model(*inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        predicted = model.eval()(*inputs) > 0
    truth = targets > 0.5
    iou = (predicted & truth).sum((0, 2, 3)) / (predicted | truth).sum((0, 2, 3))
    assert losses[-1] < 0.25 * losses[0], losses
    assert iou.mean() > 0.5, iou
