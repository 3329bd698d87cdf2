"""Synthetic detection and segmentation scenes: rectangles and discs on noise, no download.

The curriculum's detectors and segmenters (002 Q50-Q52) train on COCO or VOC, which cannot be
downloaded here (issue 10, "Data without downloads"). These scenes stand in for them with what a
detection loss needs, boxes, labels and instance masks, and one property that keeps the model
registry simple: **every target is recovered exactly from the image**. A registered model's
``targets`` receives the inputs, not the generator that drew them, so the targets are decoded:

- uniform noise in [-0.4, 0.4] on every channel;
- an object of label k (1 rectangle, 2 disc) raises channel k-1 by a level drawn from [1.0, 1.5],
  so channel k-1 exceeds 0.5 exactly on the object (noise < 0.5 < level - noise);
- the image is cut into a ``grid`` x ``grid`` array of cells; a cell holds at most one object,
  at least 3 pixels a side and 1 pixel inside the cell's edges, so objects never touch and each
  cell's thresholded pixels are one whole object. Every image holds at least one object.

``draw_scenes`` makes the images; ``scene_instances`` gives torchvision's detection targets
(``{"boxes", "labels", "masks"}`` per image, boxes from ``torchvision.ops.masks_to_boxes``);
``scene_class_masks`` the per-class (semantic) masks.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import masks_to_boxes

from impl.differentiable import no_gradcheck

CLASSES = ("background", "rectangle", "disc")  # label 0 is background, torchvision's convention
NOISE = 0.4  # background noise: uniform in [-NOISE, NOISE]
LEVEL = (1.0, 1.5)  # an object raises its class's channel by a level drawn from this range
THRESHOLD = 0.5  # NOISE < THRESHOLD < LEVEL[0] - NOISE: thresholding recovers every mask
MIN_SIDE = 3  # smallest object side in pixels: a box of positive width and height
MARGIN = 1  # empty pixels between an object and its cell's edges: objects never touch
OBJECT_PROBABILITY = 0.75  # chance that a cell holds an object (one cell always does)


def _cell_bounds(size: int, grid: int) -> list[tuple[int, int]]:
    """[start, stop) of each of ``grid`` cells along a side of ``size`` pixels."""
    return [(i * size // grid, (i + 1) * size // grid) for i in range(grid)]


def _check_size(height: int, width: int, grid: int) -> None:
    smallest = MIN_SIDE + 2 * MARGIN
    if grid < 1 or min(height, width) // grid < smallest:
        raise ValueError(
            f"a {height}x{width} scene with a {grid}x{grid} grid has cells under "
            f"{smallest} pixels a side; use a larger image or a smaller grid"
        )


@no_gradcheck("draws random scenes from a generator: a data maker, nothing to differentiate")
def draw_scenes(
    generator: torch.Generator, batch_size: int, height: int, width: int, grid: int = 2
) -> Tensor:
    """(B, 3, H, W) float32 scenes: rectangles (channel 0) and discs (channel 1) on noise."""
    return draw_scenes_with_instances(generator, batch_size, height, width, grid)[0]


def draw_scenes_with_instances(
    generator: torch.Generator, batch_size: int, height: int, width: int, grid: int = 2
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """``draw_scenes`` and the objects as drawn, in ``scene_instances``' format: what the
    decoding must recover (checks/test_scenes.py)."""
    _check_size(height, width, grid)
    noise = (torch.rand(batch_size, 3, height, width, generator=generator) * 2 - 1) * NOISE
    objects = torch.zeros(batch_size, 3, height, width)
    rows_of, cols_of = _cell_bounds(height, grid), _cell_bounds(width, grid)
    cells = [(r, c) for r in range(grid) for c in range(grid)]
    drawn = []
    for b in range(batch_size):
        occupied = torch.rand(len(cells), generator=generator) < OBJECT_PROBABILITY
        occupied[int(torch.randint(len(cells), (1,), generator=generator))] = True
        labels, masks = [], []
        for (r, c), has_object in zip(cells, occupied.tolist(), strict=True):
            if has_object:
                (top, bottom), (left, right) = rows_of[r], cols_of[c]
                label, level, cell_mask = _draw_object(generator, top, bottom, left, right)
                objects[b, label - 1, top:bottom, left:right] = cell_mask * level
                mask = torch.zeros(height, width, dtype=torch.bool)
                mask[top:bottom, left:right] = cell_mask.bool()
                labels.append(label)
                masks.append(mask)
        drawn.append(_target(labels, masks, height, width))
    return noise + objects, drawn


def _target(labels: list[int], masks: list[Tensor], height: int, width: int) -> dict[str, Tensor]:
    stacked = torch.stack(masks) if masks else torch.zeros(0, height, width, dtype=torch.bool)
    return {
        "boxes": masks_to_boxes(stacked).float(),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": stacked.to(torch.uint8),
    }


def _draw_object(
    generator: torch.Generator, top: int, bottom: int, left: int, right: int
) -> tuple[int, float, Tensor]:
    """One object inside the cell rows [top, bottom), cols [left, right): its label, its level
    and its mask over the cell, (bottom - top, right - left) float {0, 1}."""

    def draw(low: int, high: int) -> int:  # uniform integer in [low, high]
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    cell_h, cell_w = bottom - top, right - left
    h, w = draw(MIN_SIDE, cell_h - 2 * MARGIN), draw(MIN_SIDE, cell_w - 2 * MARGIN)
    y0, x0 = draw(MARGIN, cell_h - MARGIN - h), draw(MARGIN, cell_w - MARGIN - w)
    label = draw(1, len(CLASSES) - 1)
    level = LEVEL[0] + (LEVEL[1] - LEVEL[0]) * float(torch.rand(1, generator=generator))
    rows = torch.arange(cell_h, dtype=torch.float32).view(-1, 1)
    cols = torch.arange(cell_w, dtype=torch.float32).view(1, -1)
    if label == 1:  # rectangle h x w
        inside = (rows >= y0) & (rows < y0 + h) & (cols >= x0) & (cols < x0 + w)
    else:  # disc of diameter min(h, w) centred in the h x w box: at least the centre pixel
        radius = max(min(h, w) / 2, 1.0)
        cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
        inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius * radius
    return label, level, inside.float()


@no_gradcheck("thresholds an image into {0, 1} masks: a step function, zero gradient a.e.")
def scene_class_masks(images: Tensor) -> Tensor:
    """(B, 3, H, W) scenes -> (B, 2, H, W) float {0, 1}: the rectangle and the disc masks."""
    return (images[:, : len(CLASSES) - 1] > THRESHOLD).float()


@no_gradcheck("thresholds images into integer labels, pixel-index boxes and uint8 masks")
def scene_instances(images: Tensor, grid: int = 2) -> list[dict[str, Tensor]]:
    """torchvision's detection targets of each scene, objects in row-major cell order:
    ``boxes`` (N, 4) float32 x1, y1, x2, y2 (``masks_to_boxes``: x2, y2 are the last pixel's
    indices), ``labels`` (N,) int64 in {1, 2}, ``masks`` (N, H, W) uint8."""
    height, width = images.shape[-2:]
    _check_size(height, width, grid)
    class_masks = scene_class_masks(images.detach().float().cpu()).bool()  # (B, 2, H, W)
    targets = []
    for masks_of_image in class_masks:
        labels, masks = [], []
        for top, bottom in _cell_bounds(height, grid):
            for left, right in _cell_bounds(width, grid):
                for k in range(len(CLASSES) - 1):
                    mask = torch.zeros(height, width, dtype=torch.bool)
                    mask[top:bottom, left:right] = masks_of_image[k, top:bottom, left:right]
                    if mask.any():
                        labels.append(k + 1)
                        masks.append(mask)
        targets.append(_target(labels, masks, height, width))
    return targets
