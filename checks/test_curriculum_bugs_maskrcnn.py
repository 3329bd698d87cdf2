"""The curriculum's Mask R-CNN (002 Q51 v1 and v2; catalog B23) beside ours
(``impl/models/maskrcnn.py``; registry ``maskrcnn_small``).

Both seed versions crash, and each step of v2's forward fails in its own way; the seed's code is
copied as written (classes renamed ``Seed*``) and run until it raises. Ours is v2's network made
whole on torchvision's parts: v2's backbone and RPN weights load into ours and compute the same
features and RPN outputs, RoIAlign reads the stride-4 map at scale 1/4 (v2 passes 1.0), and the
model trains on the synthetic scenes (``impl.models._scenes``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import RoIAlign

from impl import count_parameters, get_spec
from impl.models.maskrcnn import balanced_sample, mask_target_loss

SPEC = get_spec("maskrcnn_small")

# ---- 002 Q51 v1, as written (the parts its forward reaches) ----


class SeedBackboneNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        # ResNet-like 骨幹網路
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.conv2 = self._make_layer(64, 256, 3)
        self.conv3 = self._make_layer(256, 512, 4)
        self.conv4 = self._make_layer(512, 1024, 6)
        self.conv5 = self._make_layer(1024, 2048, 3)

    def _make_layer(self, in_channels, out_channels, blocks):
        layers = []
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        for _ in range(blocks - 1):
            layers.extend(
                [
                    nn.Conv2d(out_channels, out_channels, 3, padding=1),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                ]
            )
        return nn.Sequential(*layers)


class SeedMaskRCNNv1(nn.Module):
    """v1's ``MaskRCNN`` up to the call that fails (its FPN, RPN and mask head come after)."""

    def __init__(self, num_classes):
        super().__init__()
        self.backbone = SeedBackboneNetwork()

    def forward(self, x):
        # 特徵提取
        c2, c3, c4, c5 = self.backbone(x)
        return c2, c3, c4, c5


# ---- 002 Q51 v2, as written ----


class SeedBackbone(nn.Module):
    def __init__(self, out_channels=256):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, kernel_size=3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
        )
        self.layer2 = nn.Sequential(
            nn.Conv2d(128, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        features = self.layer2(x)
        return features


class SeedRPN(nn.Module):
    def __init__(self, in_channels=256, anchor_num=9):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 256, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True)
        )
        self.cls_layer = nn.Conv2d(256, anchor_num, kernel_size=1)
        self.reg_layer = nn.Conv2d(256, anchor_num * 4, kernel_size=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features):
        x = self.conv(features)
        objectness = self.cls_layer(x)
        bbox_reg = self.reg_layer(x)
        return objectness, bbox_reg


class SeedRoIHeads(nn.Module):
    def __init__(self, num_classes=21, in_channels=256, roi_size=7):
        super().__init__()
        self.roi_align = RoIAlign(
            output_size=(roi_size, roi_size), spatial_scale=1.0, sampling_ratio=2
        )
        roi_size = roi_size * roi_size * in_channels
        self.fc = nn.Sequential(
            nn.Linear(roi_size, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )
        self.cls_score = nn.Linear(1024, num_classes)
        self.bbox_pred = nn.Linear(1024, num_classes * 4)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features, proposals, image_shapes):
        roi_features = self.roi_align(features, proposals, image_shapes)
        roi_features = roi_features.flatten(start_dim=1)
        fc_features = self.fc(roi_features)
        cls_scores = self.cls_score(fc_features)
        bbox_deltas = self.bbox_pred(fc_features)
        return cls_scores, bbox_deltas


class SeedMaskBranch(nn.Module):
    def __init__(self, in_channels=256, num_classes=21):
        super().__init__()
        self.mask_head = nn.Sequential(
            nn.Conv2d(in_channels, 256, 3, padding=1),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(256, 256, 2, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        self.roi_align = RoIAlign(output_size=(14, 14), spatial_scale=1.0, sampling_ratio=2)

    def forward(self, features, proposals, image_shapes):
        roi_features = self.roi_align(features, proposals, image_shapes)
        masks = self.mask_head(roi_features)
        return masks


class SeedMaskRCNNv2(nn.Module):
    def __init__(self, num_classes=21, min_size=800, max_size=1333):
        super().__init__()
        self.backbone = SeedBackbone(out_channels=256)
        self.rpn = SeedRPN(in_channels=256, anchor_num=9)
        self.roi_heads = SeedRoIHeads(num_classes=num_classes, in_channels=256)
        self.mask_branch = SeedMaskBranch(in_channels=256, num_classes=num_classes)
        self.min_size = min_size
        self.max_size = max_size

    def transform_image(self, images):
        # 圖像預處理
        original_sizes = [(img.shape[-2], img.shape[-1]) for img in images]
        # 標準化
        mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
        images = [(img / 255.0 - mean) / std for img in images]
        return images, original_sizes

    def forward(self, images, targets=None):
        if self.training and targets is None:
            raise ValueError("在訓練模式下必須提供targets")
        images, original_sizes = self.transform_image(images)
        # 特徵提取
        features = self.backbone(images)
        # RPN 處理
        objectness, bbox_reg = self.rpn(features)
        # 生成proposals (簡化版本)
        proposals = torch.rand((len(images), 100, 4))
        image_shapes = [(images.size(2), images.size(3))] * len(images)
        # RoI 處理
        cls_scores, bbox_deltas = self.roi_heads(features, proposals, image_shapes)
        # Mask 預測
        masks = self.mask_branch(features, proposals, image_shapes)
        result = {
            "cls_scores": cls_scores,
            "bbox_deltas": bbox_deltas,
            "masks": masks,
            "proposals": proposals,
        }
        if self.training:
            losses = self.compute_losses(result, targets)
            result.update(losses)
        return result


class StackedSeedMaskRCNNv2(SeedMaskRCNNv2):
    """v2 with its first crash mended (the normalised images stacked into a batch), to reach the
    next one."""

    def transform_image(self, images):
        images, original_sizes = super().transform_image(images)
        return torch.stack(images), original_sizes


@pytest.fixture(scope="module")
def seed_v2() -> SeedMaskRCNNv2:
    torch.manual_seed(0)
    return SeedMaskRCNNv2().eval()


def test_b23_q51_v1_backbone_has_no_forward() -> None:
    """v1's ``BackboneNetwork`` defines layers and no ``forward``: the first call of the model
    raises NotImplementedError. Built on the meta device (v1's backbone alone is 60M+ weights)."""
    with torch.device("meta"):
        seed = SeedMaskRCNNv1(num_classes=21)
        x = torch.empty(1, 3, 64, 64)
    assert "forward" not in vars(SeedBackboneNetwork)
    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        seed(x)


def test_b23_q51_v1_stages_never_downsample_after_the_stem() -> None:
    """Had it a forward running its stages in turn, c2..c5 would all sit at the stem's stride 4
    (3x3 convs with padding 1 and no stride): v1's FPN would add maps of one resolution."""
    with torch.device("meta"):
        seed = SeedBackboneNetwork()
        x = seed.conv1(torch.empty(1, 3, 64, 64))
        shapes = []
        for stage in (seed.conv2, seed.conv3, seed.conv4, seed.conv5):
            x = stage(x)
            shapes.append(tuple(x.shape[2:]))
    assert shapes == [(16, 16)] * 4


def test_b23_q51_v2_feeds_a_list_to_conv2d(seed_v2) -> None:
    """v2's ``transform_image`` returns a list, which reaches ``Conv2d``: TypeError, for the list
    of images it is documented to take and for a batch tensor alike."""
    images = [torch.rand(3, 64, 64) * 255, torch.rand(3, 64, 64) * 255]
    with pytest.raises(TypeError, match="conv2d"), torch.no_grad():
        seed_v2(images)
    with pytest.raises(TypeError, match="conv2d"), torch.no_grad():
        seed_v2(torch.stack(images))


def test_b23_q51_v2_then_calls_roi_align_with_an_extra_argument(seed_v2) -> None:
    """With the images stacked, the RoI heads call ``RoIAlign(features, proposals,
    image_shapes)``: ``forward`` takes two, TypeError. And its random "proposals" (N, 100, 4) are
    no rois format: RoIAlign wants [K, 5] (image index, box) or a list of [L, 4]."""
    stacked = StackedSeedMaskRCNNv2()
    stacked.load_state_dict(seed_v2.state_dict())
    with pytest.raises(TypeError, match="positional arguments"), torch.no_grad():
        stacked.eval()(torch.rand(2, 3, 64, 64) * 255)
    features = torch.randn(2, 256, 16, 16)
    with pytest.raises(AssertionError, match=r"Tensor\[K, 5\]"):
        seed_v2.roi_heads.roi_align(features, torch.rand((2, 100, 4)))


def test_b23_q51_v2_training_calls_compute_losses_which_is_undefined() -> None:
    assert not hasattr(SeedMaskRCNNv2, "compute_losses")


def test_b23_q51_v2_roi_align_reads_a_stride_4_map_at_scale_1_and_ours_at_one_quarter() -> None:
    """A box over one quadrant of the image, on a stride-4 feature map whose quadrants hold
    0, 1, 2, 3: v2's ``spatial_scale=1.0`` reads the box's coordinates as feature cells (the
    top-left corner of the map), ours (the registered model's pooler, scale inferred from the
    map) reads the quadrant."""
    cfg = SPEC.config("tiny")
    model = SPEC.create("tiny").eval()
    with torch.no_grad():
        model(*SPEC.inputs(cfg, 1))
    assert model.roi_heads.box_roi_pool.scales == [0.25]
    assert model.roi_heads.mask_roi_pool.scales == [0.25]
    side = cfg.image_size // 4  # the feature map's side
    half = side // 2
    quadrants = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).repeat_interleave(half, 0)
    features = quadrants.repeat_interleave(half, 1).expand(1, 1, side, side).contiguous()
    box = torch.tensor(
        [[cfg.image_size / 2, cfg.image_size / 2, cfg.image_size - 1.0, cfg.image_size - 1.0]]
    )
    ours = model.roi_heads.box_roi_pool({"0": features}, [box], [(cfg.image_size,) * 2])
    torch.testing.assert_close(ours, torch.full_like(ours, 3.0))
    seeds = RoIAlign(output_size=(7, 7), spatial_scale=1.0, sampling_ratio=2)(features, [box])
    assert not torch.allclose(seeds, torch.full_like(seeds, 3.0))


def test_q51_v2_backbone_and_rpn_weights_give_ours_the_same_outputs(seed_v2) -> None:
    """Our ``full`` backbone is v2's (its state_dict loads as is) and our RPN head is v2's
    ``RPN`` under torchvision's names (conv.0 -> conv.0.0, cls_layer -> cls_logits, reg_layer ->
    bbox_pred)."""
    torch.manual_seed(1)
    ours = SPEC.create("full").eval()
    ours.backbone.load_state_dict(seed_v2.backbone.state_dict())
    names = {"conv.0": "conv.0.0", "cls_layer": "cls_logits", "reg_layer": "bbox_pred"}
    rpn_state = {
        next(new + key[len(old) :] for old, new in names.items() if key.startswith(old)): value
        for key, value in seed_v2.rpn.state_dict().items()
    }
    ours.rpn.head.load_state_dict(rpn_state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = seed_v2.backbone(x)
        torch.testing.assert_close(ours.backbone(x), features)
        (objectness,), (deltas,) = ours.rpn.head([features])
        seed_objectness, seed_deltas = seed_v2.rpn(features)
    torch.testing.assert_close(objectness, seed_objectness)
    torch.testing.assert_close(deltas, seed_deltas)


def test_q51_v2_parameter_count_differs_from_ours_by_the_mask_convs_biases(seed_v2) -> None:
    """Our ``full`` (v2's widths, 21 classes) has v2's parameters less the four mask-head conv
    biases that BatchNorm makes redundant (``MaskRCNNHeads`` with a norm layer): 4 x 256."""
    ours = SPEC.create("full")
    assert count_parameters(ours) == SPEC.full_params == count_parameters(seed_v2) - 4 * 256


def test_mask_loss_binarises_torchvisions_targets() -> None:
    """On a rectangle whose RoI is its own box, torchvision's RoIAlign crop of the mask is
    exactly {0, 1}, and our mask loss equals torchvision's ``maskrcnn_loss``; on a disc the crop
    interpolates, torchvision's loss keeps the fractions (a floor above 0) and ours thresholds
    them, so logits of the thresholded crop drive ours toward 0."""
    masks = torch.zeros(2, 20, 20, dtype=torch.uint8)
    masks[0, 3:9, 4:12] = 1  # rectangle: rows 3..8, cols 4..11
    rows, cols = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    masks[1] = ((rows - 13) ** 2 + (cols - 13) ** 2 <= 9).to(torch.uint8)  # disc of radius 3
    boxes = torch.tensor([[4.0, 3.0, 11.0, 8.0], [10.0, 10.0, 16.0, 16.0]])
    labels, matches = torch.tensor([1, 2]), torch.tensor([0, 1])
    logits = torch.randn(2, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    ours_rect = mask_target_loss(logits[:1], boxes[:1], masks, labels[:1], matches[:1])
    theirs_rect = maskrcnn_loss(logits[:1], [boxes[:1]], [masks], [labels], [matches[:1]])
    torch.testing.assert_close(ours_rect, theirs_rect)
    # the disc: perfect logits for the thresholded crop give ours ~0, not torchvision's
    crop = RoIAlign((14, 14), 1.0, -1)(masks[1:2, None].float(), [boxes[1:]])[0, 0]
    assert ((crop > 0) & (crop < 1)).any()
    perfect = torch.zeros(1, 3, 14, 14)
    perfect[0, 2] = 20 * ((crop >= 0.5).float() * 2 - 1)
    ours_disc = mask_target_loss(perfect, boxes[1:], masks, labels[1:], matches[1:])
    theirs_disc = maskrcnn_loss(perfect, [boxes[1:]], [masks], [labels], [matches[1:]])
    assert ours_disc < 1e-6 < 0.01 < theirs_disc


def test_balanced_sample_keeps_torchvisions_proportions_and_seeds_each_image() -> None:
    labels = torch.tensor([1] * 10 + [0] * 30 + [-1] * 5)
    pos, neg = balanced_sample(labels, 16, 0.25, seeded=True)
    assert len(pos) == 4 and len(neg) == 12
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    again = balanced_sample(labels, 16, 0.25, seeded=True)
    assert torch.equal(pos, again[0]) and torch.equal(neg, again[1])
    few = balanced_sample(labels, 100, 0.5, seeded=False)  # fewer than asked: all of them
    assert len(few[0]) == 10 and len(few[1]) == 30


def test_training_mode_returns_the_five_losses_and_eval_adds_padded_detections() -> None:
    cfg = SPEC.config("tiny")
    torch.manual_seed(0)
    model = SPEC.create("tiny")
    inputs = SPEC.inputs(cfg, 3, seed=2)
    losses = model.train()(*inputs)
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
    }
    assert all(v.shape == (3,) and torch.isfinite(v).all() for v in losses.values())
    with torch.no_grad():
        out = model.eval()(*inputs)
    scores, labels = out["scores"], out["labels"]
    assert scores.shape == (3, cfg.detections_per_image)
    # padding: score 0 with label 0 and an empty mask, after the real detections
    none = scores == 0
    assert (labels[none] == 0).all() and (out["masks"][none] == 0).all()
    assert (labels[~none] >= 1).all() and (scores[~none] > cfg.score_threshold).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_a_short_training_run_on_scenes_detects_half_of_their_objects() -> None:
    """Adam on 4 scenes for 150 steps: at least half the ground-truth objects are then found, by a
    detection of their class with IoU >= 0.5 and score > 0.5 (the model's own eval output; the
    smallest objects, 3 pixels a side, are the last to be found). An untrained model finds none."""
    from torchvision.ops import box_iou

    cfg = SPEC.config("tiny")
    torch.manual_seed(0)
    model = SPEC.create("tiny").train()
    inputs = SPEC.inputs(cfg, 4, seed=5)
    targets = SPEC.make_targets(cfg, inputs, seed=5)
    _, boxes, labels, _ = inputs

    def found() -> tuple[int, int]:
        with torch.no_grad():
            out = model.eval()(*inputs)
        hits = total = 0
        for b in range(len(boxes)):
            real = labels[b] > 0
            kept = out["scores"][b] > 0.5
            iou = box_iou(boxes[b][real], out["boxes"][b][kept])  # (objects, detections)
            same = labels[b][real][:, None] == out["labels"][b][kept][None].long()
            hits += int(((iou >= 0.5) & same).any(dim=1).sum())
            total += int(real.sum())
        return hits, total

    assert found()[0] == 0
    optimizer = torch.optim.Adam(model.train().parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        SPEC.loss(model(*inputs), targets).backward()
        optimizer.step()
    hits, total = found()
    assert hits >= 0.5 * total, f"{hits} of {total} objects found"
