"""Properties every registered model must have, generated from the registry (``tiny`` sizes).

Output-shape contract, batch independence in eval mode, seeded determinism, a training step that
lowers the loss, overfitting a tiny batch, a bit-exact state_dict round trip, finite gradients on
every trainable parameter and none on a frozen one, and the ``full`` size built once. Every check
takes a model's inputs as a tuple and its output as one tensor, a tuple or a mapping
(``output_tensors``), and scores it by its task. Properties a model declares are checked in
``test_properties.py``.
"""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from checks.strategies import input_draws
from impl import REGRESSION, cast_inputs, count_parameters, get_spec, list_models
from impl.tasks import map_outputs, output_shapes, output_tensors

MODELS = list_models()
# Eval-mode float32 outputs of a sample computed in different batches: kernels may block the
# batch differently, so allow float32 rounding (PyTorch's own transformer tests use 1e-5).
BATCH_TOL = {"rtol": 1e-5, "atol": 1e-5}


def build(name: str, seed: int = 0, size: str = "tiny") -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_spec(name).create(size)


def trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def has_frozen_parameters(name: str) -> bool:
    model = build(name)
    return len(trainable(model)) < len(list(model.parameters()))


# Models with frozen parameters (transfer learning), found by building them
FROZEN_MODELS = [name for name in MODELS if has_frozen_parameters(name)]
# An affine model cannot fit 8 random regression targets; it must reach least squares instead
# (test_properties.py)
OVERFIT_MODELS = [
    name for name in MODELS if not (get_spec(name).affine and get_spec(name).task is REGRESSION)
]


def assert_outputs_equal(actual, expected, **tolerance) -> None:
    """Every named output equal (bit for bit without a tolerance)."""
    actual, expected = output_tensors(actual), output_tensors(expected)
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        if tolerance:
            torch.testing.assert_close(
                actual[name], tensor, **tolerance, msg=lambda m, name=name: f"{name!r}: {m}"
            )
        else:
            assert torch.equal(actual[name], tensor), f"output {name!r} differs"


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_output_matches_shape_contract(name: str, data: st.DataObject) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    model = build(name).eval()
    with torch.no_grad():
        outputs = output_tensors(model(*draw.inputs(spec, cfg)))
    declared = output_shapes(spec.output_shape(cfg, draw.batch_size, **draw.dims))
    assert {key: tuple(out.shape) for key, out in outputs.items()} == declared
    for key, out in outputs.items():
        assert out.dtype == torch.float32, key
        assert torch.isfinite(out).all(), key


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_eval_outputs_are_independent_of_other_samples(name: str, data: st.DataObject) -> None:
    """Sample i's output depends on sample i only: not on the other rows, nor on the batch size."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg, min_batch=2))
    i = data.draw(st.integers(0, draw.batch_size - 1), label="sample")
    model = build(name).eval()
    inputs = draw.inputs(spec, cfg)
    mixed = tuple(
        o.clone() for o in spec.inputs(cfg, draw.batch_size, seed=draw.seed + 1, **draw.dims)
    )
    for m, x in zip(mixed, inputs, strict=True):
        m[i] = x[i]
    assert any(not torch.equal(m, x) for m, x in zip(mixed, inputs, strict=True)), (
        "the other samples must actually change"
    )
    with torch.no_grad():
        out = output_tensors(model(*inputs))
        out_mixed = output_tensors(model(*mixed))
        out_alone = output_tensors(model(*(x[i : i + 1] for x in inputs)))
    for key, tensor in out.items():
        torch.testing.assert_close(out_mixed[key][i], tensor[i], **BATCH_TOL, msg=key)
        torch.testing.assert_close(out_alone[key][0], tensor[i], **BATCH_TOL, msg=key)


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
        assert_outputs_equal(first.eval()(*x1), second.eval()(*x2))
    # weight matrices and kernels are initialised at random; a model of vectors alone (BatchNorm:
    # ones and zeros) starts the same whatever the seed
    other = build(name, seed + 1)
    pairs = zip(first.parameters(), other.parameters(), strict=True)
    random_init = [(a, b) for a, b in pairs if a.dim() > 1]
    assert not random_init or any(not torch.equal(a, b) for a, b in random_init), (
        "a different seed must give different weights"
    )


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_one_sgd_step_lowers_the_loss(name: str, data: st.DataObject) -> None:
    """A small gradient step lowers the loss on its own batch (float64, dropout off)."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    # eval: dropout off, so the loss is deterministic
    model = build(name, draw.seed % 1000).double().eval()
    inputs = draw.inputs(spec, cfg)
    targets = draw.targets(spec, cfg, inputs)
    inputs, (targets,) = (
        cast_inputs(inputs, "cpu", torch.float64),
        cast_inputs((targets,), "cpu", torch.float64),
    )
    optimizer = torch.optim.SGD([p for _, p in trainable(model)], lr=1e-3)
    before = spec.loss(model(*inputs), targets)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = spec.loss(model(*inputs), targets)
    assert after < before


def fit_of(spec, model: torch.nn.Module, inputs, targets) -> tuple[float, bool]:
    """The eval-mode loss on the batch and whether every prediction is right (where the task
    has right answers); the model goes back to training mode."""
    model.eval()
    with torch.no_grad():
        output = model(*inputs)
    model.train()
    right = spec.task.correct is None or spec.task.correct(spec.predicted(output), targets).all()
    return spec.loss(output, targets).item(), bool(right)


@pytest.mark.parametrize("name", OVERFIT_MODELS)
def test_overfits_a_tiny_batch(name: str) -> None:
    """In training mode (dropout on), Adam fits 8 random targets within 300 steps: the loss, in
    eval mode, falls below 5% of its start and, where the task has right answers, every
    prediction is right. Looked at every 25 steps; the first fit ends the check."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).train()
    inputs = spec.inputs(cfg, 8, seed=1)
    targets = spec.make_targets(cfg, inputs, seed=1)
    optimizer = torch.optim.Adam([p for _, p in trainable(model)], lr=1e-2)
    first = None
    for step in range(1, 301):
        optimizer.zero_grad()
        loss = spec.loss(model(*inputs), targets)
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            last, right = fit_of(spec, model, inputs, targets)
            if right and last < 0.05 * first:
                return
    pytest.fail(f"after 300 steps: loss {last:.4g} of a first {first:.4g}, all right: {right}")


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
        assert_outputs_equal(fresh(*x), trained(*x))
    # and through an in-memory buffer, as model-versioning code does
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True).keys() == trained.state_dict().keys()


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_every_parameter_gets_a_finite_gradient(name: str, data: st.DataObject) -> None:
    """Every trainable parameter, that is: a frozen one (requires_grad=False) gets none."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg, min_batch=spec.min_train_batch))
    model = build(name, draw.seed % 1000).train()
    inputs = draw.inputs(spec, cfg)
    spec.loss(model(*inputs), draw.targets(spec, cfg, inputs)).backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, f"frozen {pname} got a gradient"
            continue
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", MODELS)
def test_no_parameter_is_dead(name: str) -> None:
    """On a full-length batch every parameter influences the loss (a non-zero gradient).
    Short inputs may leave some at zero legitimately: with one time step, weight_hh never acts."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).train()
    inputs = spec.inputs(cfg, 8)
    spec.loss(model(*inputs), spec.make_targets(cfg, inputs)).backward()
    dead = [pname for pname, p in trainable(model) if p.grad is None or not p.grad.any()]
    assert not dead, f"parameters with no gradient: {dead}"


@pytest.mark.parametrize("name", FROZEN_MODELS)
def test_a_training_step_leaves_frozen_parameters_bit_identical(name: str) -> None:
    """Transfer learning: an optimiser over every parameter (as a careless loop builds it) still
    moves only the trainable ones, and moves each of them."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).train()
    before = {pname: p.detach().clone() for pname, p in model.named_parameters()}
    inputs = spec.inputs(cfg, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    spec.loss(model(*inputs), spec.make_targets(cfg, inputs)).backward()
    optimizer.step()
    for pname, p in model.named_parameters():
        assert torch.equal(p, before[pname]) != p.requires_grad, pname


@pytest.mark.parametrize("name", MODELS)
def test_full_size_builds_with_the_declared_parameter_count(name: str) -> None:
    """The curriculum's configuration is built once (never trained here): size and shapes."""
    spec = get_spec(name)
    cfg = spec.config("full")
    model = build(name, size="full").eval()
    assert count_parameters(model) == spec.full_params
    with torch.no_grad():
        outputs = output_tensors(model(*spec.inputs(cfg, 2)))
    declared = output_shapes(spec.output_shape(cfg, 2))
    assert {key: tuple(out.shape) for key, out in outputs.items()} == declared


@pytest.mark.cuda
@pytest.mark.usefixtures("ieee_float32")
@pytest.mark.parametrize("name", MODELS)
def test_cpu_and_cuda_agree(name: str) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = build(name).eval()
    x = spec.inputs(cfg, 4)
    with torch.no_grad():
        cpu = output_tensors(model(*x))
        cuda = output_tensors(map_outputs(torch.Tensor.cpu, model.cuda()(*(t.cuda() for t in x))))
    for output in spec.device_dependent_outputs:  # ranked among ties: the same layout, not values
        on_cpu, on_cuda = cpu.pop(output), cuda.pop(output)
        assert (on_cuda.shape, on_cuda.dtype) == (on_cpu.shape, on_cpu.dtype)
    assert_outputs_equal(cuda, cpu, rtol=1e-4, atol=1e-4)  # kernels' summation orders differ


@pytest.mark.cuda
@pytest.mark.parametrize("name", MODELS)
def test_targets_are_made_on_the_inputs_device(name: str) -> None:
    """A benchmark moves the inputs to the GPU first and makes the targets from them there."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    x = spec.inputs(cfg, 4, seed=1)
    on_cuda = spec.make_targets(cfg, tuple(t.cuda() for t in x), seed=1)
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), spec.make_targets(cfg, x, seed=1))
