"""Properties a model declares in its registration, each one a generated check (``tiny`` sizes).

Padding invariance (``padded_sequences``), causality (``causal_inputs``), permutation equivariance
(``permutation_equivariant``), affinity and the least-squares fit (``affine``), attention weights
that are a distribution over the real source tokens (``attention_weights``), batch statistics that
refuse a too-small training batch (``min_train_batch``), and parity with a module made of
PyTorch's own layers (``reference``). A model that declares nothing gets none of these; one that
declares a property it lacks turns its check red.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from checks.strategies import input_draws
from impl import REGRESSION, cast_inputs, get_spec, list_models
from impl.tasks import output_tensors

MODELS = list_models()
# float32 rounding of equal computations done in a different order or batch
TOL = {"rtol": 1e-5, "atol": 1e-5}


def declaring(prop) -> list[str]:
    """The models whose spec satisfies ``prop``."""
    return [name for name in MODELS if prop(get_spec(name))]


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_spec(name).create("tiny")


def assert_equal_where_shared(actual, expected) -> None:
    """Every output of ``actual`` cut back to the shape of the same output of ``expected`` (so
    positions that exist only in ``actual``, such as appended padding, drop out) equals it."""
    actual, expected = output_tensors(actual), output_tensors(expected)
    for key, want in expected.items():
        got = actual[key][tuple(slice(0, n) for n in want.shape)]
        torch.testing.assert_close(got, want, **TOL, msg=key)


@pytest.mark.parametrize("name", declaring(lambda spec: spec.padded_sequences))
@given(data=st.data())
def test_appending_pad_tokens_changes_no_output_at_real_positions(
    name: str, data: st.DataObject
) -> None:
    """Catalog B37: the curriculum's LSTM reads the output after the padding; ours must not. Pad
    tokens are appended to every token input at once."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    extra = data.draw(st.integers(1, 5), label="pad tokens appended")
    draw = data.draw(input_draws(spec, cfg, dim_headroom=extra))
    model = build(name).eval()
    inputs = draw.inputs(spec, cfg)
    padded = tuple(
        x if x.is_floating_point() else F.pad(x, (0, extra), value=cfg.pad_token) for x in inputs
    )
    assert any(p.shape != x.shape for p, x in zip(padded, inputs, strict=True))
    with torch.no_grad():
        assert_equal_where_shared(model(*padded), model(*inputs))


@pytest.mark.parametrize("name", declaring(lambda spec: spec.causal_inputs))
@given(data=st.data())
def test_outputs_up_to_t_ignore_what_comes_after_t(name: str, data: st.DataObject) -> None:
    """Causal inputs: replacing their positions after t leaves every output's positions <= t
    unchanged (a causal language model, a decoder under teacher forcing)."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    inputs = draw.inputs(spec, cfg)
    lengths = {inputs[k].shape[1] for k in spec.causal_inputs}
    t = data.draw(st.integers(0, min(lengths) - 2), label="t") if min(lengths) > 1 else None
    assume(t is not None)
    others = spec.inputs(cfg, draw.batch_size, seed=draw.seed + 1, **draw.dims)
    changed = list(inputs)
    for k in spec.causal_inputs:
        changed[k] = inputs[k].clone()
        changed[k][:, t + 1 :] = others[k][:, t + 1 :]
    assume(any(not torch.equal(changed[k], inputs[k]) for k in spec.causal_inputs))
    model = build(name).eval()
    with torch.no_grad():
        before, after = output_tensors(model(*inputs)), output_tensors(model(*changed))
    for key, out in before.items():
        torch.testing.assert_close(after[key][:, : t + 1], out[:, : t + 1], **TOL, msg=key)


@pytest.mark.parametrize("name", declaring(lambda spec: spec.permutation_equivariant))
@given(data=st.data())
def test_permuting_the_sequence_permutes_the_outputs(name: str, data: st.DataObject) -> None:
    """Self-attention without a mask or positions: f(x[:, perm]) == f(x)[:, perm]."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    inputs = draw.inputs(spec, cfg)
    length = inputs[0].shape[1]
    perm = torch.tensor(data.draw(st.permutations(range(length)), label="permutation"))
    model = build(name).eval()
    with torch.no_grad():
        out = output_tensors(model(*inputs))
        permuted = output_tensors(model(*(x[:, perm] for x in inputs)))
    for key, tensor in out.items():
        torch.testing.assert_close(permuted[key], tensor[:, perm], **TOL, msg=key)


@pytest.mark.parametrize("name", declaring(lambda spec: spec.affine))
@given(data=st.data(), a=st.floats(-2.0, 3.0))
def test_affine_model_maps_affine_combinations_to_affine_combinations(
    name: str, data: st.DataObject, a: float
) -> None:
    """f(a x + (1 - a) y) == a f(x) + (1 - a) f(y): no nonlinearity anywhere (catalog: the
    fusion model of 002 Q33 has none, so it is affine as a whole). In float64."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    model = build(name).double().eval()
    x = cast_inputs(draw.inputs(spec, cfg), "cpu", torch.float64)
    y = cast_inputs(spec.inputs(cfg, draw.batch_size, seed=draw.seed + 1), "cpu", torch.float64)
    mixed = tuple(a * xi + (1 - a) * yi for xi, yi in zip(x, y, strict=True))
    with torch.no_grad():
        fx, fy, f_mixed = (output_tensors(model(*batch)) for batch in (x, y, mixed))
    for key, out in f_mixed.items():
        torch.testing.assert_close(out, a * fx[key] + (1 - a) * fy[key], msg=key)


# Least squares: the curriculum's data (002 Q59/Q62/Q63), y = 2x + 3 + 0.1 noise, generalised to
# y = 2 * sum(x) + 3 + 0.1 noise for several features, fitted with its optimiser (SGD lr 0.01)
# for long enough to converge (its own 100 epochs do not: catalog linreg_1d).
LSTSQ_SAMPLES, LSTSQ_STEPS, LSTSQ_LR = 100, 2000, 0.01


@pytest.mark.parametrize("name", declaring(lambda spec: spec.affine and spec.task is REGRESSION))
def test_affine_regression_converges_to_the_least_squares_fit(name: str) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    generator = torch.Generator().manual_seed(0)
    inputs = cast_inputs(spec.inputs(cfg, LSTSQ_SAMPLES, seed=0), "cpu", torch.float64)
    features = torch.cat([x.flatten(1) for x in inputs], dim=1)  # (N, D)
    noise = torch.randn(LSTSQ_SAMPLES, 1, generator=generator, dtype=torch.float64)
    y = 2 * features.sum(dim=1, keepdim=True) + 3 + 0.1 * noise  # (N, 1)
    model = build(name).double().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LSTSQ_LR)
    for _ in range(LSTSQ_STEPS):
        optimizer.zero_grad()
        spec.loss(model(*inputs), y).backward()
        optimizer.step()
    design = torch.cat([features, torch.ones(LSTSQ_SAMPLES, 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # (D + 1, 1): weights, then intercept
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), design @ solution, rtol=0, atol=1e-6)
    # and the fit is the generating line, to within the noise
    torch.testing.assert_close(
        solution[:-1], torch.full_like(solution[:-1], 2.0), rtol=0, atol=0.05
    )
    assert abs(float(solution[-1]) - 3.0) < 0.05


@pytest.mark.parametrize("name", declaring(lambda spec: spec.attention_weights))
@given(data=st.data())
def test_attention_weights_are_a_distribution_over_real_tokens(
    name: str, data: st.DataObject
) -> None:
    """Each query's weights over the source sum to 1 and give padding exactly 0."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    output_name, source = spec.attention_weights
    draw = data.draw(input_draws(spec, cfg))
    inputs = draw.inputs(spec, cfg)
    model = build(name).eval()
    with torch.no_grad():
        weights = output_tensors(model(*inputs))[output_name]  # (B, ..., S)
    pad = (inputs[source] == cfg.pad_token).view(weights.shape[0], *([1] * (weights.dim() - 2)), -1)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[:-1]), **TOL)
    assert (weights >= 0).all()
    assert (weights.masked_select(pad.expand_as(weights)) == 0).all()


@pytest.mark.parametrize("name", declaring(lambda spec: spec.min_train_batch > 1))
def test_batch_statistics_refuse_a_smaller_training_batch(name: str) -> None:
    """Catalog batch_norm: BatchNorm1d raises ValueError on a training batch of 1; a model with
    batch statistics declares the smallest batch it trains on, and evaluates any batch."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name)
    too_small = spec.inputs(cfg, spec.min_train_batch - 1)
    with pytest.raises(ValueError):
        model.train()(*too_small)
    model.train()(*spec.inputs(cfg, spec.min_train_batch))
    with torch.no_grad():
        model.eval()(*too_small)


def without_dropout(module: nn.Module) -> nn.Module:
    """Set every dropout probability to 0, so that training-mode outputs are deterministic."""
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return module


REFERENCE_BATCHES = 3


@pytest.mark.parametrize("name", declaring(lambda spec: spec.reference))
@given(data=st.data())
def test_matches_its_reference_made_of_pytorch_layers(name: str, data: st.DataObject) -> None:
    """The hand-written model equals PyTorch's own layers with the same weights: in training mode
    on several batches (so running statistics evolve alike), then in eval mode. Dropout is off."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg, min_batch=spec.min_train_batch))
    ours = without_dropout(build(name, draw.seed % 1000))
    reference = without_dropout(spec.reference(ours))
    for step in range(REFERENCE_BATCHES):
        inputs = spec.inputs(cfg, draw.batch_size, seed=draw.seed + step, **draw.dims)
        assert_equal_where_shared(reference.train()(*inputs), ours.train()(*inputs))
    inputs = draw.inputs(spec, cfg)
    with torch.no_grad():
        assert_equal_where_shared(reference.eval()(*inputs), ours.eval()(*inputs))
