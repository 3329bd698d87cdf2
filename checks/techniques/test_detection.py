"""spp, roi_align and yolo_encoding: spatial pyramid pooling with the seed's SPPCSP beside it
(002 Q50 v2; catalog B11), RoIAlign through torchvision (002 Q51 v2), and YOLO v1's grid encoding,
IoU, NMS and loss (002 Q50 v1) against torchvision and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from impl.techniques.detection import (
    SPP,
    SPPCSP,
    YoloV1Loss,
    as_yolo_grid,
    box_iou,
    boxes_to_rois,
    decode_yolo,
    encode_yolo_targets,
    nms,
    roi_align,
    yolo_v1_loss,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_boxes(seed: int, n: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """n valid (x1, y1, x2, y2) boxes in [0, scale]²."""
    g = _gen(seed)
    corner = torch.rand(n, 2, generator=g, dtype=dtype) * 0.7 * scale
    size = (torch.rand(n, 2, generator=g, dtype=dtype) * 0.29 + 0.01) * scale
    return torch.cat([corner, corner + size], dim=1)


# --- spp ---------------------------------------------------------------------------------------


@given(
    c=st.integers(1, 5),
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    pools=st.lists(st.sampled_from([1, 3, 5, 9, 13]), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_spp_keeps_h_w_and_has_1_plus_pools_times_c_channels(c, h, w, pools, seed) -> None:
    x = torch.randn(2, c, h, w, generator=_gen(seed))
    spp = SPP(tuple(pools))
    y = spp(x)
    assert y.shape == (2, (1 + len(pools)) * c, h, w) and spp.out_channels(c) == y.shape[1]
    torch.testing.assert_close(y[:, :c], x)  # the input itself comes first


@given(h=st.integers(1, 15), w=st.integers(1, 15), seed=st.integers(0, 2**16))
@settings(max_examples=15)
def test_spp_pools_are_the_max_over_each_clipped_k_by_k_window(h, w, seed) -> None:
    """Closed form by unfold: the max over the k×k window centred on each pixel, padded with
    -inf (MaxPool2d's padding never wins)."""
    x = torch.randn(1, 2, h, w, generator=_gen(seed))
    y = SPP((5, 9, 13))(x)
    for i, k in enumerate((5, 9, 13)):
        padded = F.pad(x, [k // 2] * 4, value=float("-inf"))
        windows = F.unfold(padded, k).view(1, 2, k * k, h, w)
        torch.testing.assert_close(y[:, 2 * (i + 1) : 2 * (i + 2)], windows.amax(dim=2))


def test_spp_rejects_even_pool_sizes() -> None:
    with pytest.raises(ValueError, match="odd"):
        SPP((5, 8))


@given(c=st.integers(2, 12), out=st.integers(1, 6), seed=st.integers(0, 2**16))
@settings(max_examples=10)
def test_spp_sppcsp_fuses_5_mid_channels_into_out_channels(c, out, seed) -> None:
    block = SPPCSP(c, out)
    assert block.fuse[0].in_channels == 5 * (c // 2)  # mid shortcut + (1 + 3)·mid pyramid
    assert block(torch.randn(2, c, 6, 7, generator=_gen(seed))).shape == (2, out, 6, 7)


class CurriculumConvBNSiLUQ50v2(nn.Module):
    """002 Q50 v2 ``ConvBNSiLU`` as written."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None, groups=1):
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class CurriculumSPPCSPBlockQ50v2(nn.Module):
    """002 Q50 v2 ``SPPCSPBlock`` as written: conv3 is declared for mid·4 inputs and gets the
    concat of x1 (mid) and the pyramid (4·mid)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        mid_channels = in_channels // 2
        self.conv1 = CurriculumConvBNSiLUQ50v2(in_channels, mid_channels, 1)
        self.conv2 = CurriculumConvBNSiLUQ50v2(in_channels, mid_channels, 1)
        self.conv3 = CurriculumConvBNSiLUQ50v2(mid_channels * 4, out_channels, 1)
        self.pools = nn.ModuleList(
            [nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in [5, 9, 13]]
        )

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(x)
        pools = [x2]
        pools.extend([pool(x2) for pool in self.pools])
        x2 = torch.cat(pools, dim=1)
        return self.conv3(torch.cat([x1, x2], dim=1))


@torch.no_grad()
def test_spp_seed_sppcsp_channel_mismatch_raises_b11() -> None:
    """Catalog B11 with the seed's widths (SPPCSPBlock(1024, 1024) on stage4's 1,024 channels):
    the concat has 5·512 = 2,560 channels and conv3 expects 4·512 = 2,048. Ours counts 2,560."""
    x = torch.randn(1, 1024, 3, 3)
    with pytest.raises(RuntimeError, match=r"expected input\[1, 2560, 3, 3\] to have 2048"):
        CurriculumSPPCSPBlockQ50v2(1024, 1024).eval()(x)
    assert SPPCSP(1024, 1024).eval()(x).shape == (1, 1024, 3, 3)


# --- roi_align ---------------------------------------------------------------------------------


@given(
    k=st.integers(1, 6),
    c=st.integers(1, 4),
    out=st.integers(1, 7),
    ratio=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_roi_align_output_is_k_c_out_out(k, c, out, ratio, seed) -> None:
    features = torch.randn(2, c, 12, 12, generator=_gen(seed))
    rois = boxes_to_rois([_random_boxes(seed, k, 48.0)])  # image index 0 for all
    y = roi_align(features, rois, out, spatial_scale=0.25, sampling_ratio=ratio)
    assert y.shape == (k, c, out, out)


@given(
    top=st.integers(0, 8),
    left=st.integers(0, 8),
    height=st.integers(2, 8),
    width=st.integers(2, 8),
    box=st.tuples(*[st.floats(0.0, 1.0)] * 4),
    value=st.floats(-5, 5),
    out=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_roi_align_box_over_a_constant_region_returns_the_constant(
    top, left, height, width, box, value, out, seed
) -> None:
    """Pixels [top, top + height) × [left, left + width) hold ``value``, noise elsewhere. With
    aligned=True a box from top + 1 to top + height - 1 (pixel units) samples only inside
    [top + 0.5, top + height - 1.5] in pixel-centre coordinates, whose bilinear neighbours are
    all in the region."""
    features = torch.randn(1, 3, 18, 18, generator=_gen(seed)) * 10
    features[..., top : top + height, left : left + width] = value
    fx1, fy1, fx2, fy2 = box
    lo_x, hi_x = left + 1.0, left + width - 1.0
    lo_y, hi_y = top + 1.0, top + height - 1.0
    x1, x2 = sorted((lo_x + fx1 * (hi_x - lo_x), lo_x + fx2 * (hi_x - lo_x)))
    y1, y2 = sorted((lo_y + fy1 * (hi_y - lo_y), lo_y + fy2 * (hi_y - lo_y)))
    # the box in image coordinates of a stride-2 map (spatial_scale 1/2)
    rois = torch.tensor([[0.0, 2 * x1, 2 * y1, 2 * x2, 2 * y2]])
    y = roi_align(features, rois, out, spatial_scale=0.5)
    torch.testing.assert_close(y, torch.full_like(y, value))


@given(counts=st.lists(st.integers(0, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_roi_align_list_and_k5_formats_agree(counts, seed) -> None:
    assume(sum(counts) > 0)
    features = torch.randn(len(counts), 2, 10, 10, generator=_gen(seed))
    boxes = [_random_boxes(seed + i, n, 40.0) for i, n in enumerate(counts)]
    rois = boxes_to_rois(boxes)
    assert rois.shape == (sum(counts), 5)
    expected_index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    torch.testing.assert_close(rois[:, 0], expected_index.float())
    from_list = roi_align(features, boxes, 3, spatial_scale=0.25)
    torch.testing.assert_close(roi_align(features, rois, 3, spatial_scale=0.25), from_list)
    module = torchvision.ops.RoIAlign(3, spatial_scale=0.25, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(module(features, boxes), from_list)
    torch.testing.assert_close(module(features, rois), from_list)


def _ramp_map(h: int, w: int) -> torch.Tensor:
    """A (1, 2, h, w) map whose channel 0 is the column index and channel 1 the row index."""
    cols = torch.arange(w, dtype=torch.float64).expand(h, w)
    rows = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    return torch.stack([cols, rows]).unsqueeze(0)


def _expected_bin_centres(lo: float, hi: float, scale: float, out: int) -> torch.Tensor:
    """aligned=True: image coordinate u sits at feature coordinate u·scale - 0.5 (pixel centres
    at integers); bilinear sampling of a linear ramp is exact, so bin j averages to its centre."""
    start, length = lo * scale - 0.5, (hi - lo) * scale
    return start + (torch.arange(out, dtype=torch.float64) + 0.5) * length / out


@given(
    stride=st.sampled_from([1, 2, 4, 8, 16]),
    box=st.tuples(*[st.floats(0.0, 1.0)] * 4),
    out=st.integers(1, 7),
)
def test_roi_align_spatial_scale_maps_image_boxes_onto_a_strided_map(stride, box, out) -> None:
    """A 10×12 map at stride ``stride`` of a (10·stride)×(12·stride) image; a box kept a pixel
    inside the map (no border clamping): each bin's value is its centre's feature coordinate."""
    feature = _ramp_map(10, 12)
    x1, x2 = sorted((stride * (1 + 9 * box[0]), stride * (1 + 9 * box[2])))
    y1, y2 = sorted((stride * (1 + 7 * box[1]), stride * (1 + 7 * box[3])))
    y = roi_align(feature, [torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)], out, 1 / stride)
    torch.testing.assert_close(y[0, 0, 0], _expected_bin_centres(x1, x2, 1 / stride, out))
    torch.testing.assert_close(y[0, 1, :, 0], _expected_bin_centres(y1, y2, 1 / stride, out))


def test_roi_align_seed_spatial_scale_1_reads_the_wrong_region_of_a_stride_4_map() -> None:
    """002 Q51 v2 builds ``RoIAlign(output_size=(7, 7), spatial_scale=1.0, sampling_ratio=2)``
    for a stride-4 map: an image box around x ∈ [8, 24] is read at feature columns 8..24 instead
    of 2..6 (and past the 16-column map's edge)."""
    feature = _ramp_map(16, 16)
    box = [torch.tensor([[8.0, 8.0, 24.0, 24.0]], dtype=torch.float64)]
    seed = torchvision.ops.RoIAlign(output_size=(7, 7), spatial_scale=1.0, sampling_ratio=2)
    ours = roi_align(feature, box, 7, spatial_scale=1 / 4)
    expected = _expected_bin_centres(8.0, 24.0, 1 / 4, 7)
    torch.testing.assert_close(ours[0, 0, 0], expected)
    assert (seed(feature, box)[0, 0, 0] - expected).abs().min() > 3.0


def test_roi_align_rejects_a_k_by_4_tensor() -> None:
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(2, 4), 2, 1.0)


# --- yolo_encoding -----------------------------------------------------------------------------


def test_yolo_encoding_layout_is_7x7x30() -> None:
    target = encode_yolo_targets(torch.tensor([[0.1, 0.2, 0.3, 0.4]]), torch.tensor([5]))
    assert target.shape == (7, 7, 2 * 5 + 20) == (7, 7, 30)
    flat = torch.randn(3, 1470)  # the Q50 v1 head's Linear(4096, 7·7·30)
    torch.testing.assert_close(as_yolo_grid(flat), flat.view(3, 7, 7, 30))
    with pytest.raises(ValueError, match="1470"):
        as_yolo_grid(torch.randn(3, 1000))


@st.composite
def boxes_in_distinct_cells(draw: st.DrawFn, S: int = 7, C: int = 20):
    """Boxes whose centres fall in distinct cells (inside, away from the cell edges by 1e-3),
    sizes such that the box stays in the image."""
    cells = draw(
        st.lists(
            st.tuples(st.integers(0, S - 1), st.integers(0, S - 1)),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    boxes, labels = [], []
    for row, col in cells:
        cx = (col + draw(st.floats(1e-3, 1 - 1e-3))) / S
        cy = (row + draw(st.floats(1e-3, 1 - 1e-3))) / S
        w = draw(st.floats(0.05, 1.0)) * 2 * min(cx, 1 - cx)
        h = draw(st.floats(0.05, 1.0)) * 2 * min(cy, 1 - cy)
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        labels.append(draw(st.integers(0, C - 1)))
    return torch.tensor(boxes, dtype=torch.float64), torch.tensor(labels), cells


@given(data=boxes_in_distinct_cells())
def test_yolo_encoding_decode_inverts_encode(data) -> None:
    boxes, labels, cells = data
    decoded, scores, decoded_labels = decode_yolo(encode_yolo_targets(boxes, labels))
    order = sorted(range(len(cells)), key=lambda k: cells[k])  # decode runs row by row
    torch.testing.assert_close(decoded, boxes[order])
    torch.testing.assert_close(decoded_labels, labels[order])
    torch.testing.assert_close(scores, torch.ones(len(cells), dtype=torch.float64))


@given(data=boxes_in_distinct_cells())
def test_yolo_encoding_puts_each_box_in_the_cell_of_its_centre(data) -> None:
    """Closed form per box: row = floor(7 cy), col = floor(7 cx), offsets 7c - cell, w, h raw,
    confidence 1 in the first slot only, one-hot class; every other cell is all zeros."""
    boxes, labels, cells = data
    target = encode_yolo_targets(boxes, labels)
    for (row, col), box, label in zip(cells, boxes.tolist(), labels.tolist(), strict=True):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        expected = torch.zeros(30, dtype=torch.float64)
        expected[:5] = torch.tensor(
            [7 * cx - col, 7 * cy - row, box[2] - box[0], box[3] - box[1], 1.0]
        )
        expected[10 + label] = 1.0
        torch.testing.assert_close(target[row, col], expected)
    empty = torch.ones(7, 7, dtype=torch.bool)
    empty[tuple(zip(*cells, strict=True))] = False
    assert (target[empty] == 0).all()


def test_yolo_encoding_keeps_the_first_of_two_boxes_in_one_cell() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.1, 0.1], [0.02, 0.02, 0.12, 0.1]])  # both centres in (0, 0)
    target = encode_yolo_targets(boxes, torch.tensor([1, 2]))
    assert target[..., 4].sum() == 1 and target[0, 0, 10 + 1] == 1 and target[0, 0, 10 + 2] == 0


@given(n=st.integers(1, 8), m=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_yolo_encoding_box_iou_matches_torchvision(n, m, seed) -> None:
    a, b = _random_boxes(seed, n), _random_boxes(seed + 1, m)
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b))


@given(
    n=st.integers(0, 30),
    threshold=st.floats(0.05, 0.95),
    spread=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_yolo_encoding_nms_matches_torchvision(n, threshold, spread, seed) -> None:
    """Boxes crowded into a ``spread``-wide square overlap a lot; distinct scores (a random
    permutation) so that the visiting order is unambiguous."""
    boxes = _random_boxes(seed, n, spread, dtype=torch.float64)
    scores = torch.randperm(n, generator=_gen(seed)).double()
    expected = torchvision.ops.nms(boxes, scores, threshold)
    assert torch.equal(nms(boxes, scores, threshold), expected)


@given(
    threshold=st.floats(0.05, 0.95),
    delta=st.floats(1e-6, 1e-3),
    above=st.booleans(),
)
def test_yolo_encoding_nms_suppresses_only_above_the_threshold(threshold, delta, above) -> None:
    """Closed form: [0, 0, 1, 1] and [0, 0, 1, v] have IoU v; the lower-scored one survives iff
    v <= threshold (strictly greater suppresses, as in torchvision)."""
    v = threshold + delta if above else threshold - delta
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, v]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    expected = [0] if above else [0, 1]
    assert nms(boxes, scores, threshold).tolist() == expected
    assert torchvision.ops.nms(boxes, scores, threshold).tolist() == expected


@given(n=st.integers(1, 30), threshold=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_yolo_encoding_nms_keeps_no_pair_above_the_threshold(n, threshold, seed) -> None:
    boxes = _random_boxes(seed, n, 0.3, dtype=torch.float64)
    scores = torch.rand(n, generator=_gen(seed), dtype=torch.float64)
    keep = nms(boxes, scores, threshold)
    iou = box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert (iou <= threshold).all()
    assert (scores[keep].diff() <= 0).all() and keep[0] == scores.argmax()


def _hand_made_case() -> tuple[torch.Tensor, torch.Tensor]:
    """S = 2, B = 2, C = 2. One object, label 1, centre (0.25, 0.25), w 0.3, h 0.2: cell (0, 0),
    offsets (0.5, 0.5); its box is [0.1, 0.15, 0.4, 0.35]. Slot 1 of that cell predicts the box
    [0, 0, 0.1, 0.1] (IoU 0); the other three cells predict confidence 0.2 in both slots and
    class scores 0.9 (no object there: their classes do not count)."""
    target = encode_yolo_targets(
        torch.tensor([[0.1, 0.15, 0.4, 0.35]], dtype=torch.float64), torch.tensor([1]), 2, 2, 2
    )
    pred = torch.zeros(1, 2, 2, 12, dtype=torch.float64)
    pred[..., [4, 9]] = 0.2
    pred[..., 10:] = 0.9
    pred[0, 0, 0, 5:10] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.3], dtype=torch.float64)
    pred[0, 0, 0, 10:] = torch.tensor([0.1, 0.7], dtype=torch.float64)
    return pred, target.unsqueeze(0)


def test_yolo_encoding_loss_on_a_hand_made_case_equals_its_closed_form() -> None:
    """Slot 0 = the true box with confidence 0.8: coordinates 0; objectness (0.8 - 1)² = 0.04;
    no-object 0.5·(0.3² + 6·0.2²) = 0.165; classes 0.1² + 0.3² = 0.10: 0.305."""
    pred, target = _hand_made_case()
    pred[0, 0, 0, :5] = torch.tensor([0.5, 0.5, 0.3, 0.2, 0.8], dtype=torch.float64)
    assert yolo_v1_loss(pred, target, eps=0.0).item() == pytest.approx(0.305, abs=1e-12)


def test_yolo_encoding_loss_with_a_box_error_equals_its_closed_form() -> None:
    """Slot 0 = (0.6, 0.4, 0.25, 0.36) → box [0.175, 0.02, 0.425, 0.38]; IoU with the truth
    0.045 / (0.09 + 0.06 - 0.045) = 3/7. Coordinates 5·(0.1² + 0.1² + (√0.25 - √0.3)²
    + (√0.36 - √0.2)²); objectness (0.8 - 3/7)² (the paper's IoU target) or (0.8 - 1)²."""
    pred, target = _hand_made_case()
    pred[0, 0, 0, :5] = torch.tensor([0.6, 0.4, 0.25, 0.36, 0.8], dtype=torch.float64)
    coord = 5 * (0.01 + 0.01 + (0.5 - math.sqrt(0.3)) ** 2 + (0.6 - math.sqrt(0.2)) ** 2)
    rest = 0.165 + 0.10
    iou_loss = yolo_v1_loss(pred, target, eps=0.0, confidence_target="iou").item()
    one_loss = yolo_v1_loss(pred, target, eps=0.0, confidence_target="one").item()
    assert iou_loss == pytest.approx(coord + (0.8 - 3 / 7) ** 2 + rest, abs=1e-12)
    assert one_loss == pytest.approx(coord + 0.04 + rest, abs=1e-12)


def test_yolo_encoding_loss_makes_the_slot_with_the_higher_iou_responsible() -> None:
    """Swap the two slots of the hand-made case: slot 1 now holds the true box, so slot 0
    (IoU 0) pays the no-object term; the loss is the same 0.305."""
    pred, target = _hand_made_case()
    pred[0, 0, 0, :5] = pred[0, 0, 0, 5:10].clone()
    pred[0, 0, 0, 5:10] = torch.tensor([0.5, 0.5, 0.3, 0.2, 0.8], dtype=torch.float64)
    assert yolo_v1_loss(pred, target, eps=0.0).item() == pytest.approx(0.305, abs=1e-12)


@given(data=boxes_in_distinct_cells(), seed=st.integers(0, 2**16), scale=st.floats(0.01, 5.0))
@settings(max_examples=15)
def test_yolo_encoding_loss_is_non_negative(data, seed, scale) -> None:
    boxes, labels, _ = data
    target = encode_yolo_targets(boxes, labels).unsqueeze(0)
    pred = torch.randn(1, 7, 7, 30, generator=_gen(seed), dtype=torch.float64) * scale
    assert yolo_v1_loss(pred, target).item() >= 0


@given(data=boxes_in_distinct_cells(), target_kind=st.sampled_from(["iou", "one"]))
@settings(max_examples=15)
def test_yolo_encoding_loss_is_zero_for_a_perfect_prediction(data, target_kind) -> None:
    boxes, labels, _ = data
    target = encode_yolo_targets(boxes, labels).unsqueeze(0)
    assert yolo_v1_loss(target.clone(), target, confidence_target=target_kind).item() == (
        pytest.approx(0.0, abs=1e-9)
    )


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3))
@settings(max_examples=10)
def test_yolo_encoding_loss_averages_over_the_batch_and_the_module_agrees(seed, batch) -> None:
    boxes = _random_boxes(seed, 2, dtype=torch.float64)
    target = encode_yolo_targets(boxes, torch.tensor([0, 3])).unsqueeze(0)
    pred = torch.randn(1, 7, 7, 30, generator=_gen(seed), dtype=torch.float64)
    single = yolo_v1_loss(pred, target)
    repeated = yolo_v1_loss(pred.repeat(batch, 1, 1, 1), target.repeat(batch, 1, 1, 1))
    torch.testing.assert_close(repeated, single)
    torch.testing.assert_close(YoloV1Loss()(pred, target), single)
