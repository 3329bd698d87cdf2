"""Detection building blocks: spatial pyramid pooling, RoIAlign, and YOLO v1's grid encoding with
its box IoU, non-maximum suppression and loss.

Curriculum: 002 Q50 v1 (YOLO v1: ``x.view(batch_size, 7, 7, -1)``, a 7×7 grid, 2 boxes, 20
classes; the seed has no target encoding, no decoding, no NMS and no loss), 002 Q50 v2 (the
"YOLOv7" ``SPPCSPBlock``, max pools 5/9/13), 002 Q51 v2 (``torchvision.ops.RoIAlign``).

``spp`` (catalog §2; B11). Max pools with kernel k, stride 1 and padding k // 2 keep H and W, so
the input and its pooled copies concatenate on channels: (1 + number of pools)·C channels, 4·C
for 5/9/13. The seed's SPPCSP block concatenates a 1×1 branch (mid channels) with that pyramid
(4·mid) into a conv declared for 4·mid inputs; the concat has 5·mid (2,560 for the seed's 1,024
input) and the conv raises RuntimeError (catalog B11). ``SPPCSP`` below counts them right.

``roi_align`` (catalog §2). ``torchvision.ops.roi_align`` crops a fixed-size (out × out) feature
for each box by bilinear sampling. Boxes are (x1, y1, x2, y2) in *image* coordinates, either a
list of [L_i, 4] tensors (one per image) or one [K, 5] tensor whose first column is the image
index; ``spatial_scale`` = 1 / stride maps them onto the feature map (the seed's Q51 v2 passes
1.0 for a stride-4 map, reading the wrong region). ``aligned=True`` shifts by half a pixel so that
pixel centres sit at +0.5, which is what Detectron2 and torchvision's Mask R-CNN use.

``yolo_encoding`` (catalog §2). YOLO v1 (Redmon et al., 2016, https://arxiv.org/abs/1506.02640)
predicts an S×S×(B·5 + C) grid, 7×7×30 for S=7, B=2, C=20. The layout here, per cell:
``[x, y, w, h, confidence] × B`` then C class scores, where (x, y) is the box centre relative to
its cell (in [0, 1)) and (w, h) the box size relative to the image. A ground-truth box belongs to
the cell holding its centre; that cell's first predictor slot gets the box and confidence 1, its
class is one-hot; the other slots stay 0. YOLO v1 detects one object per cell, so a second box
whose centre falls in an occupied cell is dropped (the first one given wins). Boxes in and out are
(x1, y1, x2, y2) normalised by the image size (in [0, 1]).

The loss is the paper's sum-squared error, summed over the grid and averaged over the batch:

    λ_coord Σ_obj,resp [(x - x̂)² + (y - ŷ)² + (√w - √ŵ)² + (√h - √ĥ)²]
  + Σ_obj,resp (C - Ĉ)²  +  λ_noobj Σ_not resp (C - 0)²  +  Σ_obj cells Σ_c (p(c) - p̂(c))²

"resp" is the predictor slot of an object cell whose box has the highest IoU with the ground
truth (chosen without gradient); every other slot, in every cell, is "not resp". The confidence
target Ĉ is that IoU (the paper's definition; detached) or 1 (``confidence_target="one"``, what
most re-implementations use). √ keeps its sign, sign(v)·√(|v| + eps), so that a negative predicted
width still has a gradient. λ_coord = 5, λ_noobj = 0.5.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, no_gradcheck, randn
from impl.techniques.registry import Category, register_technique

# --- spp ---------------------------------------------------------------------------------------


@gradcheck_module(lambda: SPP(pool_sizes=(3, 5)), lambda g: (randn(g, 1, 2, 4, 4),))
class SPP(nn.Module):
    """Spatial pyramid pooling (YOLO style): the input beside its max pools with kernels
    ``pool_sizes`` at stride 1 and padding k // 2, which keep H and W.

    Shape: (N, C, H, W) -> (N, (1 + len(pool_sizes))·C, H, W)
    """

    def __init__(self, pool_sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        if any(k % 2 == 0 for k in pool_sizes):
            raise ValueError(f"pool sizes must be odd to keep the size, got {pool_sizes}")
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in pool_sizes)

    def out_channels(self, in_channels: int) -> int:
        return (1 + len(self.pools)) * in_channels

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for pool in self.pools:  # a loop, not a starred generator: TorchScript can script it
            features.append(pool(x))
        return torch.cat(features, dim=1)  # (N, (1+P)·C, H, W)


def conv_bn_silu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """The seed's ConvBNSiLU: conv without bias (BN has one), BatchNorm, SiLU; keeps H and W."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.SiLU(),
    )


@gradcheck_module(lambda: SPPCSP(4, 3, pool_sizes=(3,)), lambda g: (randn(g, 2, 4, 3, 3),))
class SPPCSP(nn.Module):
    """002 Q50 v2's SPPCSP block with its channels counted: a 1×1 branch (mid = in // 2) beside
    1×1 → SPP (4·mid for three pools), concatenated to (1 + 1 + len(pools))·mid = 5·mid and fused
    by a 1×1 conv to ``out_channels``. The seed declares the fusing conv for 4·mid (B11).

    Shape: (N, in_channels, H, W) -> (N, out_channels, H, W)
    """

    def __init__(
        self, in_channels: int, out_channels: int, pool_sizes: tuple[int, ...] = (5, 9, 13)
    ):
        super().__init__()
        mid = in_channels // 2
        self.shortcut = conv_bn_silu(in_channels, mid)
        self.reduce = conv_bn_silu(in_channels, mid)
        self.spp = SPP(pool_sizes)
        self.fuse = conv_bn_silu(mid + self.spp.out_channels(mid), out_channels)

    def forward(self, x: Tensor) -> Tensor:
        pyramid = self.spp(self.reduce(x))  # (N, (1+P)·mid, H, W)
        return self.fuse(torch.cat([self.shortcut(x), pyramid], dim=1))  # (N, out, H, W)


# --- roi_align ---------------------------------------------------------------------------------


@no_gradcheck("takes a list of tensors, which gradcheck cannot mark; it only stacks box values")
def boxes_to_rois(boxes: list[Tensor]) -> Tensor:
    """The list-of-[L_i, 4] box format to the [K, 5] one: each row (image index, x1, y1, x2, y2).

    Shape: [(L_i, 4)] -> (sum L_i, 5)
    """
    index = torch.cat(
        [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
    )
    return torch.cat([index, torch.cat(boxes)], dim=1)


def _one_box_roi(generator: torch.Generator) -> tuple[Tensor, ...]:
    features = randn(generator, 1, 2, 5, 5)
    corner = torch.rand(2, generator=generator, dtype=torch.float64) * 2
    rois = torch.cat([torch.zeros(1), corner, corner + 2]).unsqueeze(0).double()  # (1, 5)
    return features, rois


@gradcheck_function(_one_box_roi, wrt=(0,), output_size=2, spatial_scale=1.0)
def roi_align(
    features: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign (He et al., 2017) by ``torchvision.ops.roi_align``: for each box (image
    coordinates, [K, 5] or a list of [L_i, 4]), an ``output_size`` grid of bins, each the mean of
    ``sampling_ratio``² bilinear samples of ``features`` at ``box · spatial_scale``. Pass
    ``spatial_scale = 1 / stride`` of the feature map. Linear in ``features``.

    Shape: features (N, C, H, W), boxes K in all -> (K, C, out_h, out_w)
    """
    if isinstance(boxes, Tensor) and (boxes.dim() != 2 or boxes.shape[1] != 5):
        raise ValueError(f"boxes as one tensor must be [K, 5], got {list(boxes.shape)}")
    return torchvision.ops.roi_align(
        features, boxes, output_size, spatial_scale, sampling_ratio, aligned
    )


# --- yolo_encoding -----------------------------------------------------------------------------


@no_gradcheck("pairwise IoU is piecewise (min/max/clamp kinks); checked against torchvision")
def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union of (x1, y1, x2, y2) boxes; equal to
    ``torchvision.ops.box_iou``.

    Shape: (N, 4), (M, 4) -> (N, M)
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2): 0 where they do not overlap
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    return inter / (area1[:, None] + area2[None, :] - inter)


@no_gradcheck("returns integer indices of the kept boxes: nothing to differentiate")
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: visit boxes by decreasing score, keep one unless its IoU
    with an already kept box exceeds ``iou_threshold``. Returns the kept indices, highest score
    first, as ``torchvision.ops.nms`` does.

    Shape: boxes (N, 4), scores (N,) -> (K,) int64
    """
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes, boxes)  # (N, N)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


@no_gradcheck("integer grid assignment: a target built from labels and cell indices")
def encode_yolo_targets(
    boxes: Tensor, labels: Tensor, S: int = 7, B: int = 2, C: int = 20
) -> Tensor:
    """YOLO v1 target grid for one image from normalised (x1, y1, x2, y2) boxes and class labels.
    The cell holding a box's centre gets, in its first slot, (x, y) the centre relative to the
    cell, (w, h) relative to the image, confidence 1, and the one-hot class; a later box in an
    occupied cell is dropped (one object per cell).

    Shape: boxes (n, 4), labels (n,) -> (S, S, B·5 + C)
    """
    target = torch.zeros(S, S, B * 5 + C, dtype=boxes.dtype, device=boxes.device)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (n, 2) as (cx, cy)
    size = boxes[:, 2:] - boxes[:, :2]  # (n, 2) as (w, h)
    cell = (centre * S).floor().long().clamp(0, S - 1)  # (n, 2) as (column, row)
    offset = centre * S - cell  # (n, 2) in [0, 1)
    for k in range(len(boxes)):
        col, row = cell[k].tolist()
        if target[row, col, 4] == 1:
            continue  # the cell already holds an object
        target[row, col, 0:2] = offset[k]
        target[row, col, 2:4] = size[k]
        target[row, col, 4] = 1.0
        target[row, col, B * 5 + int(labels[k])] = 1.0
    return target


def _cell_boxes(grid: Tensor, B: int) -> Tensor:
    """Every predictor slot's box as normalised (x1, y1, x2, y2).

    Shape: (..., S, S, B·5 + C) -> (..., S, S, B, 4)
    """
    S = grid.shape[-2]
    slots = grid[..., : B * 5].unflatten(-1, (B, 5))  # (..., S, S, B, 5)
    index = torch.arange(S, dtype=grid.dtype, device=grid.device)
    col = index.view(1, S, 1)  # broadcast over (row, col, slot)
    row = index.view(S, 1, 1)
    cx = (col + slots[..., 0]) / S  # (..., S, S, B)
    cy = (row + slots[..., 1]) / S
    w, h = slots[..., 2], slots[..., 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


@no_gradcheck("selects boxes by thresholds and argmax: the output's size depends on the values")
def decode_yolo(
    grid: Tensor, B: int = 2, score_threshold: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's grid back to boxes: per cell, the slot with the highest confidence; score =
    confidence × the highest class score, label = that class; cells scoring at or below
    ``score_threshold`` are dropped. Boxes come out row by row, column by column (the grid's
    order). Inverts ``encode_yolo_targets`` for boxes in distinct cells; run ``nms`` after it on
    predictions.

    Shape: (S, S, B·5 + C) -> boxes (n, 4), scores (n,), labels (n,) int64
    """
    confidence = grid[..., 4 : B * 5 : 5]  # (S, S, B)
    best_conf, best_slot = confidence.max(dim=-1)  # (S, S)
    class_score, label = grid[..., B * 5 :].max(dim=-1)  # (S, S)
    score = best_conf * class_score  # (S, S)
    boxes = _cell_boxes(grid, B).gather(-2, best_slot[..., None, None].expand(-1, -1, 1, 4))
    keep = score > score_threshold  # (S, S)
    return boxes.squeeze(-2)[keep], score[keep], label[keep]


@gradcheck_function(lambda g: (randn(g, 2, 2 * 2 * 13),), S=2, B=2, C=3)
def as_yolo_grid(flat: Tensor, S: int = 7, B: int = 2, C: int = 20) -> Tensor:
    """The YOLO v1 head's flat output viewed as the grid (002 Q50 v1's ``view(batch, 7, 7, -1)``,
    with the width checked rather than inferred).

    Shape: (N, S·S·(B·5 + C)) -> (N, S, S, B·5 + C)
    """
    if flat.shape[-1] != S * S * (B * 5 + C):
        raise ValueError(
            f"expected {S}·{S}·({B}·5 + {C}) = {S * S * (B * 5 + C)} features, got {flat.shape[-1]}"
        )
    return flat.view(flat.shape[0], S, S, B * 5 + C)


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of corresponding (x1, y1, x2, y2) boxes, broadcast. Shape: (..., 4), (..., 4) -> (...)"""
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def _signed_sqrt(v: Tensor, eps: float) -> Tensor:
    return torch.sign(v) * torch.sqrt(v.abs() + eps)


def _yolo_pair(generator: torch.Generator, S: int = 2, B: int = 2, C: int = 3):
    """A (1, S, S, B·5 + C) prediction with positive sizes and a target with one object."""
    pred = randn(generator, 1, S, S, B * 5 + C)
    for b in range(B):  # sizes well away from 0, where √ is steep
        pred[..., b * 5 + 2 : b * 5 + 4] = pred[..., b * 5 + 2 : b * 5 + 4].abs() * 0.3 + 0.2
    corner = torch.rand(2, generator=generator, dtype=torch.float64) * 0.5
    box = torch.cat([corner, corner + 0.4]).unsqueeze(0)
    label = torch.randint(0, C, (1,), generator=generator)
    return pred, encode_yolo_targets(box, label, S, B, C).unsqueeze(0)


@gradcheck_function(_yolo_pair, wrt=(0,), B=2, confidence_target="one")
def yolo_v1_loss(
    pred: Tensor,
    target: Tensor,
    B: int = 2,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    confidence_target: Literal["iou", "one"] = "iou",
    eps: float = 1e-6,
) -> Tensor:
    """The YOLO v1 sum-squared loss (module docstring), summed over the grid, averaged over the
    batch. ``target`` comes from ``encode_yolo_targets`` (stacked). Gradcheck runs with
    ``confidence_target="one"``: the IoU target is a detached function of the prediction, which
    finite differences move and autograd, by design, does not.

    Shape: pred, target (N, S, S, B·5 + C) -> ()
    """
    obj = target[..., 4] == 1  # (N, S, S): cells holding an object
    pred_slots = pred[..., : B * 5].unflatten(-1, (B, 5))  # (N, S, S, B, 5)
    truth = target[..., :4]  # (N, S, S, 4): the box sits in the target's first slot
    with torch.no_grad():
        pred_boxes = _cell_boxes(pred.detach(), B)  # (N, S, S, B, 4)
        pred_boxes[..., 2:] = torch.maximum(pred_boxes[..., 2:], pred_boxes[..., :2])  # w, h ≥ 0
        truth_box = _cell_boxes(target, B)[..., 0, :]  # (N, S, S, 4)
        iou = _paired_iou(pred_boxes, truth_box[..., None, :]).nan_to_num(0.0)  # (N, S, S, B)
        best_iou, best = iou.max(dim=-1)  # (N, S, S)
    responsible = nn.functional.one_hot(best, B).bool() & obj[..., None]  # (N, S, S, B)
    resp = pred_slots[responsible]  # (n_obj, 5), one row per object cell
    t = truth[obj]  # (n_obj, 4)
    coord = ((resp[:, :2] - t[:, :2]) ** 2).sum() + (
        (_signed_sqrt(resp[:, 2:4], eps) - _signed_sqrt(t[:, 2:4], eps)) ** 2
    ).sum()
    conf_target = best_iou[obj] if confidence_target == "iou" else torch.ones_like(resp[:, 4])
    objectness = ((resp[:, 4] - conf_target) ** 2).sum()
    noobj = (pred_slots[..., 4][~responsible] ** 2).sum()
    classes = ((pred[..., B * 5 :][obj] - target[..., B * 5 :][obj]) ** 2).sum()
    total = lambda_coord * coord + objectness + lambda_noobj * noobj + classes
    return total / pred.shape[0]


@gradcheck_module(
    lambda: YoloV1Loss(B=2, confidence_target="one"), lambda g: _yolo_pair(g), wrt=(0,)
)
class YoloV1Loss(nn.Module):
    """Module form of ``yolo_v1_loss``."""

    def __init__(
        self,
        B: int = 2,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        confidence_target: Literal["iou", "one"] = "iou",
    ):
        super().__init__()
        self.B, self.lambda_coord, self.lambda_noobj = B, lambda_coord, lambda_noobj
        self.confidence_target = confidence_target

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return yolo_v1_loss(
            pred, target, self.B, self.lambda_coord, self.lambda_noobj, self.confidence_target
        )


register_technique(
    name="spp",
    category=Category.MODULE,
    curriculum="002 Q50 v2",
    summary="spatial pyramid pooling: size-preserving max pools 5/9/13 concatenated to "
    "(1 + 3)·C channels; the SPPCSP fuse conv counts the 5·mid channels it gets",
    api="nn.MaxPool2d(k, stride=1, padding=k // 2)",
    bugs=("B11",),
    also_in=("impl.models.yolov7",),
)

register_technique(
    name="roi_align",
    category=Category.MODULE,
    curriculum="002 Q51 v2",
    summary="RoIAlign crops (K, C, out, out) features for K boxes in image coordinates "
    "([K, 5] or a list of [L, 4]), spatial_scale = 1 / stride",
    api="torchvision.ops.roi_align, torchvision.ops.RoIAlign",
    also_in=("impl.models.maskrcnn",),
)

register_technique(
    name="yolo_encoding",
    category=Category.MODULE,
    curriculum="002 Q50 v1",
    summary="YOLO v1 S×S×(B·5 + C) grid: target encoding and decoding, box IoU, greedy NMS and "
    "the λ_coord = 5, λ_noobj = 0.5 sum-squared loss",
    api="torchvision.ops.box_iou, torchvision.ops.nms",
    also_in=("impl.models.yolov1",),
)
