"""Properties every registered model must have, generated from the registry (``tiny`` sizes).

Output-shape contract, batch independence in eval mode, seeded determinism, a training step that
lowers the loss, overfitting a tiny batch, a bit-exact state_dict round trip, finite gradients on
every parameter, padding invariance for text models, and the ``full`` size built once.
"""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from checks.strategies import input_draws
from impl import cast_inputs, count_parameters, get_spec, list_models

MODELS = list_models()
PADDED_MODELS = [name for name in MODELS if get_spec(name).padded_sequences]
# Eval-mode float32 outputs of a sample computed in different batches: kernels may block the
# batch differently, so allow float32 rounding (PyTorch's own transformer tests use 1e-5).
BATCH_TOL = {"rtol": 1e-5, "atol": 1e-5}


def build(name: str, seed: int = 0, size: str = "tiny") -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_spec(name).create(size)


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_output_matches_shape_contract(name: str, data: st.DataObject) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    model = build(name).eval()
    with torch.no_grad():
        out = model(*draw.inputs(spec, cfg))
    assert tuple(out.shape) == spec.output_shape(cfg, draw.batch_size, **draw.dims)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_eval_outputs_are_independent_of_other_samples(name: str, data: st.DataObject) -> None:
    """Sample i's output depends on sample i only: not on the other rows, nor on the batch size."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg, min_batch=2))
    i = data.draw(st.integers(0, draw.batch_size - 1), label="sample")
    model = build(name).eval()
    (x,) = draw.inputs(spec, cfg)
    (others,) = spec.inputs(cfg, draw.batch_size, seed=draw.seed + 1, **draw.dims)
    mixed = others.clone()
    mixed[i] = x[i]
    assert not torch.equal(mixed, x), "the other samples must actually change"
    with torch.no_grad():
        out, out_mixed, out_alone = model(x), model(mixed), model(x[i : i + 1])
    torch.testing.assert_close(out_mixed[i], out[i], **BATCH_TOL)
    torch.testing.assert_close(out_alone[0], out[i], **BATCH_TOL)


@pytest.mark.parametrize("name", MODELS)
@given(seed=st.integers(0, 2**31 - 1))
def test_same_seed_same_model_and_inputs(name: str, seed: int) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    first, second = build(name, seed), build(name, seed)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    x1, x2 = spec.inputs(cfg, 3, seed=seed), spec.inputs(cfg, 3, seed=seed)
    assert all(torch.equal(a, b) for a, b in zip(x1, x2, strict=True))
    with torch.no_grad():
        assert torch.equal(first.eval()(*x1), second.eval()(*x2))
    other = build(name, seed + 1)
    assert any(
        not torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters(), strict=True)
    ), "a different seed must give different weights"


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_one_sgd_step_lowers_the_loss(name: str, data: st.DataObject) -> None:
    """A small gradient step lowers the loss on its own batch (float64, dropout off)."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    # eval: dropout off, so the loss is deterministic
    model = build(name, draw.seed % 1000).double().eval()
    inputs = cast_inputs(draw.inputs(spec, cfg), "cpu", torch.float64)
    targets = spec.make_targets(cfg, draw.batch_size, seed=draw.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = spec.loss(model(*inputs), targets)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = spec.loss(model(*inputs), targets)
    assert after < before


@pytest.mark.parametrize("name", MODELS)
def test_overfits_a_tiny_batch(name: str) -> None:
    """In training mode (dropout on), Adam fits 8 random labels exactly within 300 steps."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).train()
    inputs, targets = spec.inputs(cfg, 8, seed=1), spec.make_targets(cfg, 8, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        optimizer.zero_grad()
        loss = spec.loss(model(*inputs), targets)
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(*inputs)
    assert torch.equal(logits.argmax(dim=1), targets)
    assert spec.loss(logits, targets).item() < 0.05 * first


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_is_bit_exact(name: str, tmp_path) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    trained, fresh = build(name, seed=1).eval(), build(name, seed=2).eval()
    path = tmp_path / f"{name}.pt"
    torch.save(trained.state_dict(), path)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = spec.inputs(cfg, 4, seed=3)
    with torch.no_grad():
        assert torch.equal(fresh(*x), trained(*x))
    # and through an in-memory buffer, as model-versioning code does
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True).keys() == trained.state_dict().keys()


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_every_parameter_gets_a_finite_gradient(name: str, data: st.DataObject) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    model = build(name, draw.seed % 1000).train()
    inputs = draw.inputs(spec, cfg)
    spec.loss(model(*inputs), spec.make_targets(cfg, draw.batch_size, seed=draw.seed)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_no_parameter_is_dead(name: str) -> None:
    """On a full-length batch every parameter influences the loss (a non-zero gradient).
    Short inputs may leave some at zero legitimately: with one time step, weight_hh never acts."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).train()
    spec.loss(model(*spec.inputs(cfg, 8)), spec.make_targets(cfg, 8)).backward()
    dead = [pname for pname, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, f"parameters with no gradient: {dead}"


@pytest.mark.parametrize("name", PADDED_MODELS)
@given(data=st.data())
def test_appending_pad_tokens_does_not_change_the_prediction(
    name: str, data: st.DataObject
) -> None:
    """Catalog B37: the curriculum's LSTM reads the output after the padding; ours must not."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    extra = data.draw(st.integers(1, 5), label="pad tokens appended")
    draw = data.draw(input_draws(spec, cfg, dim_headroom=extra))
    model = build(name).eval()
    (ids,) = draw.inputs(spec, cfg)
    padded = torch.nn.functional.pad(ids, (0, extra), value=cfg.pad_token)
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(ids), **BATCH_TOL)


@pytest.mark.parametrize("name", MODELS)
def test_full_size_builds_with_the_declared_parameter_count(name: str) -> None:
    """The curriculum's configuration is built once (never trained here): size and shapes."""
    spec = get_spec(name)
    cfg = spec.config("full")
    model = build(name, size="full").eval()
    assert count_parameters(model) == spec.full_params
    with torch.no_grad():
        out = model(*spec.inputs(cfg, 2))
    assert tuple(out.shape) == spec.output_shape(cfg, 2)


@pytest.mark.cuda
@pytest.mark.parametrize("name", MODELS)
def test_cpu_and_cuda_agree(name: str) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).eval()
    x = spec.inputs(cfg, 4)
    with torch.no_grad():
        cpu = model(*x)
        cuda = model.cuda()(*(t.cuda() for t in x)).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-4)  # TF32 and kernel choice differ
