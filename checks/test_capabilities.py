"""Every capability a model declares works: backend parity with eager, quantisation, autocast.

Generated from the model registry and the backend registry; a capability listed in a model's
``known_failures`` is expected to fail (strict xfail), so a fix upstream makes the check go red
until the entry is removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch._dynamo.exc import FailOnRecompileLimitHit

from bench.prepared import PreparedModels
from checks.strategies import MAX_BATCH, input_draws
from impl import Cap, ModelSpec, get_spec, list_models
from impl.backends import get_backend, list_backends
from impl.machine import Feature
from impl.tasks import output_tensors
from impl.techniques.quantization import quantize_dynamic_int8 as dynamic_quantised
from impl.techniques.quantization import quantize_static_int8, sqnr_db


def _case(name: str, cap: Cap, *extra: str):
    """A pytest param for (name, *extra) on the CPU, marked with the capability; skipped, with a
    reason that names the feature, where this machine lacks one the capability needs; xfail if
    known to fail."""
    spec = get_spec(name)
    marks = [getattr(pytest.mark, cap.value)] if cap in (Cap.ONNX, Cap.TORCHSCRIPT) else []
    if cap == Cap.ONNX or any(get_backend(backend).shape_specialised for backend in extra):
        marks.append(pytest.mark.slow)  # the export takes seconds, inductor's C++ build minutes
    if missing := spec.missing_reason(cap, "cpu"):
        marks.append(pytest.mark.skip(reason=missing))
    if cap in spec.known_failures:
        marks.append(pytest.mark.xfail(reason=spec.known_failures[cap], strict=True))
    return pytest.param(name, *extra, marks=marks, id="-".join((name, *extra)))


BACKEND_CASES = [
    _case(name, get_backend(backend).requires, backend)
    for backend in list_backends()
    if backend != "eager"
    for name in list_models(caps={get_backend(backend).requires})
]


# A backend that compiles a graph per class of input shapes (torch.compile: batch 1, and any
# other batch) is prepared here from a batch the check draws, not from the benchmarks' 32
# samples, which no draw reaches. Its batch is drawn from one batch per class and the largest:
# a model that specialises on its batch compiles one graph per batch size. The ``ci`` profile
# (``nox -s checks``, whose budget is 15 minutes on 2 cores) draws from the class of every batch
# from 2 alone: batch 1's graph is a second compile of every model (without it the check's 41
# models took 474 worker-seconds instead of 617); the ``dev`` and ``thorough`` profiles draw it
# too. A model whose inner shapes depend on its inputs' values
# (``ModelSpec.value_dependent_shapes``) recompiles for new inputs until torch marks those
# shapes dynamic (maskrcnn_small at batch 2: 11 more graphs over 3 new seeds, then none); its
# draws keep the example's seed, one input per batch class. ``compiled_frames_only`` makes a
# frame past torch's recompile limit fail: it would run eagerly and compare eager with eager.
SPECIALISED_EXAMPLE_BATCH = 2
EXAMPLE_SEED = 0  # ``ModelSpec.inputs``' default seed, from which ``PreparedModels`` prepares


def specialised_batches(spec: ModelSpec) -> tuple[int, ...]:
    """The batches a shape-specialised backend's check draws from, under the current profile: one
    per graph class and the largest, or one per class where every new input compiles anew."""
    from_2 = (
        (SPECIALISED_EXAMPLE_BATCH,)
        if spec.value_dependent_shapes
        else (SPECIALISED_EXAMPLE_BATCH, MAX_BATCH)
    )
    return from_2 if settings.get_current_profile_name() == "ci" else (1, *from_2)


@contextmanager
def compiled_frames_only() -> Iterator[None]:
    """A frame that torch.compile would run eagerly past its recompile limit raises instead: a
    parity check of the compiled model must not compare eager with eager."""
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield


# SQNR is a statistic of many outputs: on a drawn batch of one sample of a model with one output
# number it is the relative error of a single number near 0. Lossy backends (int8, autocast) are
# scored on this many samples, drawn with the example's seed and dimensions.
SQNR_BATCH = 64


def sqnr_inputs(spec, cfg, draw) -> tuple[torch.Tensor, ...]:
    return spec.inputs(cfg, SQNR_BATCH, seed=draw.seed, **draw.dims)


def output_shapes_of(output) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in output_tensors(output).items()}


@pytest.fixture(scope="module")
def prepared_models(tmp_path_factory: pytest.TempPathFactory) -> PreparedModels:
    """The benchmarks' cache of models and runners: each (model, backend) is exported once."""
    return PreparedModels(tmp_path_factory.mktemp("backends"), threads=1)


@pytest.mark.parametrize(("name", "backend_name"), BACKEND_CASES)
@given(data=st.data())
def test_backend_matches_eager(
    name: str, backend_name: str, data: st.DataObject, prepared_models: PreparedModels
) -> None:
    """One exported artifact serves every drawn batch size and sequence length, within tolerance
    (for int8 backends: at or above their SQNR floor)."""
    spec, backend = get_spec(name), get_backend(backend_name)
    cfg = spec.config("tiny")
    model = prepared_models.model(name, "tiny", "cpu")
    if backend.shape_specialised:
        example_batch, batch_sizes = SPECIALISED_EXAMPLE_BATCH, specialised_batches(spec)
        seeds = (EXAMPLE_SEED,) if spec.value_dependent_shapes else None
    else:
        example_batch, batch_sizes, seeds = None, None, None  # the backend's example, any batch
    runner = prepared_models.runner(name, "tiny", "cpu", backend_name, example_batch)
    draw = data.draw(input_draws(spec, cfg, batch_sizes=batch_sizes, seeds=seeds))
    inputs = draw.inputs(spec, cfg)
    with torch.no_grad():
        expected = model(*inputs)
    with compiled_frames_only():
        actual = runner(*inputs)
    if backend.min_sqnr_db is None:
        torch.testing.assert_close(actual, expected, rtol=backend.rtol, atol=backend.atol)
        return
    # the drawn batch runs and keeps the output's structure and shapes; SQNR over many samples
    assert output_shapes_of(actual) == output_shapes_of(expected)
    many = sqnr_inputs(spec, cfg, draw)
    with torch.no_grad(), compiled_frames_only():
        assert sqnr_db(model(*many), runner(*many)) >= backend.min_sqnr_db


@pytest.mark.parametrize("backend_name", ["quant_dynamic", "quant_static"])
def test_int8_parity_is_an_sqnr_floor(backend_name: str) -> None:
    """20 log10(|y| / |noise|): noise of 1/10 the output's norm is 20 dB, of 1/1000 is 60 dB."""
    backend = get_backend(backend_name)
    reference = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    direction = torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
    for db in (backend.min_sqnr_db - 1, backend.min_sqnr_db + 1):
        noise = direction / direction.norm() * reference.norm() * 10 ** (-db / 20)
        assert backend.parity_ok(reference + noise, reference) == (db > backend.min_sqnr_db)


def test_a_frame_past_the_recompile_limit_fails_instead_of_running_eagerly() -> None:
    """Outside ``compiled_frames_only`` torch runs such a frame eagerly and says nothing."""
    times = torch.compile(lambda x, n: x * n, dynamic=False, backend="eager")
    with torch._dynamo.config.patch(recompile_limit=2):
        torch._dynamo.reset()
        for n in range(1, 5):
            times(torch.ones(n), n)  # every call a new shape: past the limit, eager
        torch._dynamo.reset()
        with compiled_frames_only(), pytest.raises(FailOnRecompileLimitHit):
            for n in range(1, 5):
                times(torch.ones(n), n)
    torch._dynamo.reset()


@pytest.mark.onnx
@pytest.mark.slow
@pytest.mark.reuses("test_backend_matches_eager[{name}-onnxruntime]")  # its export
@pytest.mark.parametrize("name", list_models(caps={Cap.ONNX}))
def test_onnx_file_is_valid_with_a_dynamic_batch(
    name: str, prepared_models: PreparedModels
) -> None:
    runner = prepared_models.runner(name, "tiny", "cpu", "onnxruntime")
    proto = onnx.load(str(runner.artifact))
    onnx.checker.check_model(proto, full_check=True)
    batch_dims = [i.type.tensor_type.shape.dim[0] for i in proto.graph.input]
    assert all(d.dim_param and not d.dim_value for d in batch_dims), batch_dims


QUANT_CASES = [_case(name, Cap.QUANT_DYNAMIC) for name in list_models(caps={Cap.QUANT_DYNAMIC})]


def cpu_autocast_forward(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(*inputs)


@pytest.mark.parametrize("name", QUANT_CASES)
@given(data=st.data())
def test_dynamic_quantisation_is_close_to_float(name: str, data: st.DataObject) -> None:
    """int8 dynamic quantisation of Linear and LSTM layers: every one converted, SQNR >= 25 dB
    (over ``SQNR_BATCH`` samples)."""
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    torch.manual_seed(draw.seed % 1000)
    model = spec.create("tiny").eval()
    quantized = dynamic_quantised(model)
    left = [n for n, m in quantized.named_modules() if type(m) in (torch.nn.Linear, torch.nn.LSTM)]
    assert not left, f"still float: {left}"
    inputs = sqnr_inputs(spec, cfg, draw)
    with torch.no_grad():
        assert sqnr_db(model(*inputs), quantized(*inputs)) >= 25.0


AMP_CASES = [_case(name, Cap.AMP) for name in list_models(caps={Cap.AMP})]


@pytest.mark.parametrize("name", AMP_CASES)
@given(data=st.data())
def test_cpu_autocast_runs_in_bfloat16_and_stays_close(name: str, data: st.DataObject) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    draw = data.draw(input_draws(spec, cfg))
    model = spec.create("tiny").eval()
    inputs = sqnr_inputs(spec, cfg, draw)
    with torch.no_grad():
        expected = model(*inputs)
    out = cpu_autocast_forward(model, inputs)
    assert spec.predicted(out).dtype == torch.bfloat16  # the final Linear ran in lower precision
    assert sqnr_db(expected, out) >= 30.0


# How each capability that can need a CPU feature is exercised
EXERCISE = {
    Cap.AMP: cpu_autocast_forward,
    Cap.QUANT_DYNAMIC: lambda model, inputs: dynamic_quantised(model)(*inputs),
    Cap.QUANT_STATIC: lambda model, inputs: quantize_static_int8(model, [inputs])(*inputs),
}
DECLARED_NEEDS = [
    pytest.param(name, cap, feature, id=f"{name}-{cap}-{feature.name}")
    for name in list_models()
    for cap, features in get_spec(name).needs.items()
    for feature in features
]


@pytest.mark.parametrize(("name", "cap", "feature"), DECLARED_NEEDS)
def test_a_declared_need_is_real_and_its_probe_tells_the_truth(
    name: str, cap: Cap, feature: Feature
) -> None:
    """The probe, not the error, decides a skip: so pin it. Where the probe finds the feature the
    capability runs; where it does not, the capability really fails here. Either way a stale or
    over-broad declaration, or a probe that lies, turns this red."""
    assert feature.device == "cpu", "only CPU features can be exercised on every machine"
    spec = get_spec(name)
    model = spec.create("tiny").eval()
    inputs = spec.inputs(spec.config("tiny"), 2)
    if feature.available:
        EXERCISE[cap](model, inputs)
    else:
        with pytest.raises(RuntimeError):
            EXERCISE[cap](model, inputs)


@pytest.mark.cuda
@pytest.mark.parametrize("name", list_models(caps={Cap.AMP}))  # known AMP failures are CPU-only
def test_cuda_autocast_runs_in_float16_and_stays_close(name: str) -> None:
    spec = get_spec(name)
    cfg = spec.config("tiny")
    model = spec.create("tiny").eval().cuda()
    inputs = tuple(x.cuda() for x in spec.inputs(cfg, 4))
    with torch.no_grad():
        expected = model(*inputs)
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(*inputs)
    assert spec.predicted(out).dtype == torch.float16
    assert sqnr_db(expected, out) >= 30.0
