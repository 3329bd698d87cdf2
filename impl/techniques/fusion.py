"""Late fusion by concatenation: per-modality features joined along the feature axis.

Curriculum: 002 Q33 (``MultiInputModel``: ``combined = torch.cat((img_features, text_features),
dim=1)`` before one classifier). Catalog §2 ``multimodal_fusion``: the fused output depends on
every input (each input's Jacobian block is non-zero) and the shapes compose (the fused width is
the sum of the branches' widths). The model built on it is ``impl.models.fusion``
(``multi_input_fusion``).

What ``concat_fusion`` adds to a bare ``torch.cat``: it checks that both branches are (B, F_i)
with one batch size B. ``torch.cat`` would reject different batch sizes too, but it also accepts 1-D
or 3-D features and then joins along the wrong axis (dim=1 of a (B, T, F) sequence is time),
which a classifier after it may not notice until the shapes stop composing.
Dimension key: B batch, F_i the features of branch i.
"""

from __future__ import annotations

import torch
from torch import Tensor

from impl.differentiable import gradcheck_function, randn
from impl.techniques.registry import Category, register_technique


@gradcheck_function(lambda g: (randn(g, 3, 4), randn(g, 3, 2)))
def concat_fusion(first: Tensor, second: Tensor) -> Tensor:
    """Concatenate two modalities' features (B, F_1) and (B, F_2) into (B, F_1 + F_2).

    Two arguments rather than a list, so that TorchScript compiles the models that call it; a
    third modality is a second call.
    """
    if first.dim() != 2:
        raise ValueError(f"expected the first features as (B, F), got {list(first.shape)}")
    if second.dim() != 2 or second.shape[0] != first.shape[0]:
        raise ValueError(
            f"expected the second features as (B, F) with the first's B = {first.shape[0]}, "
            f"got {list(second.shape)}"
        )
    return torch.cat((first, second), dim=1)  # (B, F_1 + F_2)


register_technique(
    name="multimodal_fusion",
    category=Category.MODULE,
    curriculum="002 Q33",
    summary="late fusion: per-modality features concatenated along dim 1; the output depends "
    "on every input and the widths add up",
    api="torch.cat(dim=1); torch.autograd.functional.jacobian",
    also_in=("impl.models.fusion",),
)
