"""Checks of ``impl.techniques.fusion``: technique ``multimodal_fusion`` (catalog §2; 002 Q33).

The fused output depends on every input (each input's Jacobian block is non-zero) and the shapes
compose (the fused width is the sum of the branches'). The model built on it,
``multi_input_fusion``, is affine, so its Jacobian blocks have a closed form from its weights,
which the check holds autograd's Jacobian to. The seed's own Q33 class and its parity with ours
are in ``checks/test_curriculum_bugs_q28_q33_q48.py``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

from impl import get_spec
from impl.techniques.fusion import concat_fusion

FUSION = "multi_input_fusion"


@given(
    batch=st.integers(1, 6),
    first=st.integers(1, 9),
    second=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_multimodal_fusion_widths_add_up_and_each_branch_keeps_its_place(
    batch: int, first: int, second: int, seed: int
) -> None:
    """(B, F1) and (B, F2) fuse to (B, F1 + F2): the first branch in columns [0, F1), the second
    in [F1, F1 + F2), unchanged."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, first, generator=generator)
    b = torch.randn(batch, second, generator=generator)
    fused = concat_fusion(a, b)
    assert fused.shape == (batch, first + second)
    assert torch.equal(fused[:, :first], a) and torch.equal(fused[:, first:], b)


@given(
    batch=st.integers(1, 4),
    image_features=st.integers(1, 12),
    text_features=st.integers(1, 12),
    hidden=st.integers(1, 6),
    classes=st.integers(1, 5),
)
def test_multimodal_fusion_shapes_compose_through_the_model(
    batch: int, image_features: int, text_features: int, hidden: int, classes: int
) -> None:
    """Any branch widths compose: (B, I) and (B, T) give logits (B, K) through the two
    projections, the fusion (B, 2H) and the classifier."""
    spec = get_spec(FUSION)
    cfg = spec.config(
        "tiny",
        image_features=image_features,
        text_features=text_features,
        hidden_features=hidden,
        num_classes=classes,
    )
    model = spec.build(cfg)
    image, text = spec.inputs(cfg, batch, seed=0)
    with torch.no_grad():
        assert model(image, text).shape == (batch, classes)
    assert model.classifier.in_features == 2 * hidden


def test_multimodal_fusion_output_depends_on_both_inputs_as_its_weights_say() -> None:
    """The Jacobian of the logits with respect to each input is non-zero, and (the model being
    affine) equals its closed form: d out / d image = C[:, :H] W_img, d out / d text =
    C[:, H:] W_text for every sample (block-diagonal over the batch), C the classifier's
    weight. In float64."""
    spec = get_spec(FUSION)
    torch.manual_seed(0)
    model = spec.create("tiny").double()
    cfg = spec.config("tiny")
    image, text = (t.double() for t in spec.inputs(cfg, 3, seed=1))
    j_image, j_text = jacobian(model, (image, text))  # (B, K, B, I) and (B, K, B, T)
    hidden = cfg.hidden_features
    weight = model.classifier.weight.detach()
    expected = {
        "image": weight[:, :hidden] @ model.img_fc.weight.detach(),
        "text": weight[:, hidden:] @ model.text_fc.weight.detach(),
    }
    for name, block in (("image", j_image), ("text", j_text)):
        assert block.abs().max() > 0, f"the output ignores the {name} input"
        for i in range(3):
            for j in range(3):
                target = expected[name] if i == j else torch.zeros_like(expected[name])
                torch.testing.assert_close(block[i, :, j], target, rtol=1e-12, atol=1e-12)


def test_multimodal_fusion_a_branch_with_zero_weight_would_show_as_a_zero_block() -> None:
    """The dependence check can fail: zero the text projection and the text block is 0."""
    spec = get_spec(FUSION)
    torch.manual_seed(0)
    model = spec.create("tiny").double()
    with torch.no_grad():
        model.text_fc.weight.zero_()
    image, text = (t.double() for t in spec.inputs(spec.config("tiny"), 2, seed=1))
    j_image, j_text = jacobian(model, (image, text))
    assert j_image.abs().max() > 0 and j_text.abs().max() == 0


@pytest.mark.parametrize(
    ("first", "second", "match"),
    [
        pytest.param((4, 3), (5, 2), "first's B = 4", id="batch-sizes-differ"),
        pytest.param((4,), (4, 2), "first features as", id="first-is-1d"),
        pytest.param((4, 3), (4, 2, 2), "second features as", id="second-is-3d"),
        pytest.param((4, 5, 3), (4, 5, 2), "first features as", id="both-are-sequences"),
    ],
)
def test_multimodal_fusion_refuses_branches_that_do_not_line_up(first, second, match) -> None:
    """Two sequence branches (B, T, F) would concatenate along time, dim 1, with a bare
    torch.cat; ours refuses every branch that is not (B, F), and different batch sizes, naming
    the shapes."""
    with pytest.raises(ValueError, match=match):
        concat_fusion(torch.zeros(first), torch.zeros(second))
