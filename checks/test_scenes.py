"""The synthetic scenes the detectors and segmenters train on (impl/models/_scenes.py).

Their one promise is that every target is recovered exactly from the image: the decoded boxes,
labels and masks equal the objects as drawn, whatever the noise, the levels and the sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from impl.models._scenes import (
    CLASSES,
    MIN_SIDE,
    draw_scenes,
    draw_scenes_with_instances,
    scene_class_masks,
    scene_instances,
)

GRIDS = st.integers(1, 4)


@st.composite
def scenes(draw):
    grid = draw(GRIDS)
    height = draw(st.integers(5 * grid, 80))
    width = draw(st.integers(5 * grid, 80))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    images, drawn = draw_scenes_with_instances(generator, 2, height, width, grid)
    return grid, images, drawn


@given(scenes())
def test_scene_instances_decode_every_drawn_object_exactly(scene):
    grid, images, drawn = scene
    decoded = scene_instances(images, grid)
    assert len(decoded) == len(drawn)
    for got, want in zip(decoded, drawn, strict=True):
        assert torch.equal(got["labels"], want["labels"])
        assert torch.equal(got["masks"], want["masks"])
        assert torch.equal(got["boxes"], want["boxes"])


@given(scenes())
def test_scene_objects_are_nonempty_boxes_that_never_touch(scene):
    _, images, drawn = scene
    for target in drawn:
        assert len(target["labels"]) >= 1  # every image holds an object
        assert set(target["labels"].tolist()) <= set(range(1, len(CLASSES)))
        boxes = target["boxes"]
        # masks_to_boxes gives the last pixel's index: a side of n pixels spans n - 1
        assert ((boxes[:, 2:] - boxes[:, :2]) >= MIN_SIDE - 1).all()
        masks = target["masks"].float().unsqueeze(1)  # (N, 1, H, W)
        grown = F.max_pool2d(masks, 3, stride=1, padding=1) > 0  # each mask and its 8-neighbours
        touching = grown.squeeze(1).sum(0) > 1
        assert not touching.any()


@given(scenes())
def test_scene_class_masks_are_the_union_of_each_class_instances(scene):
    _, images, drawn = scene
    class_masks = scene_class_masks(images)
    assert class_masks.shape == (images.shape[0], len(CLASSES) - 1, *images.shape[-2:])
    for b, target in enumerate(drawn):
        for k in range(1, len(CLASSES)):
            union = target["masks"][target["labels"] == k].bool().any(0)
            assert torch.equal(class_masks[b, k - 1].bool(), union)


def test_draw_scenes_is_reproducible_from_the_generator_seed():
    first = draw_scenes(torch.Generator().manual_seed(3), 4, 32, 32)
    again = draw_scenes(torch.Generator().manual_seed(3), 4, 32, 32)
    other = draw_scenes(torch.Generator().manual_seed(4), 4, 32, 32)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("size", [(8, 30), (30, 9)])
def test_draw_scenes_refuses_cells_too_small_for_an_object(size):
    with pytest.raises(ValueError, match="cells under 5 pixels"):
        draw_scenes(torch.Generator().manual_seed(0), 1, *size, grid=2)
