"""What benchmarks record besides time: FLOPs per call, checked against hand-derived counts."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from bench.measure import count_flops, count_training_flops
from impl import get_spec


@given(batch=st.integers(1, 64))
def test_mlp_flops_are_two_per_multiply_add(batch: int) -> None:
    spec = get_spec("mlp_784_128_10")
    cfg = spec.config("full")
    expected = 2 * batch * (784 * 128 + 128 * 10)  # two matmuls; bias and ReLU are not counted
    assert count_flops(spec.create("full"), spec.inputs(cfg, batch)) == expected


@given(batch=st.integers(1, 8), seq_len=st.integers(1, 16))
def test_lstm_flops_count_every_gate_of_every_step(batch: int, seq_len: int) -> None:
    """Per layer and step, 4 gates x (input + hidden) x hidden multiply-adds; then the head."""
    spec = get_spec("sentiment_lstm")
    cfg = spec.config("tiny")
    h = cfg.hidden_size
    layers = [(cfg.embed_dim, h)] + [(h, h)] * (cfg.num_layers - 1)
    expected = (
        sum(2 * batch * seq_len * 4 * out * (i + out) for i, out in layers)
        + 2 * batch * h * cfg.num_classes
    )
    assert count_flops(spec.create("tiny"), spec.inputs(cfg, batch, seq_len=seq_len)) == expected


def test_counting_restores_the_fast_paths() -> None:
    spec = get_spec("transformer_text_classifier")
    fastpath, mkldnn = torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled
    assert count_flops(spec.create("tiny").eval(), spec.inputs(spec.config("tiny"), 2)) > 0
    assert torch.backends.mha.get_fastpath_enabled() == fastpath
    assert torch.backends.mkldnn.enabled == mkldnn


@given(batch=st.integers(1, 64))
def test_mlp_training_flops_count_the_forward_and_both_backward_matmuls(batch: int) -> None:
    """Backward of a Linear is two matmuls of the forward's size: the input gradient and the
    weight gradient. The first layer's input needs no gradient, so it has only the second."""
    spec = get_spec("mlp_784_128_10")
    cfg = spec.config("full")
    first, second = 2 * batch * 784 * 128, 2 * batch * 128 * 10
    expected = 2 * first + 3 * second
    model = spec.create("full")
    inputs = spec.inputs(cfg, batch)
    counted = count_training_flops(model, spec.loss, inputs, spec.make_targets(cfg, inputs))
    assert counted == expected
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients behind
