"""The benchmark kinds: generated from the registries, every model gets every measurement it
declares, each kind is measured by exactly one benchmark module, and the calls they time do what
they say (an optimiser step trains; autocast runs in the lower precision)."""

from __future__ import annotations

import dataclasses
import importlib
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bench.cases
from bench.cases import DEFAULT_KINDS, KINDS, BenchConfigError, skip_reason
from bench.cases import bench_cases as selected_cases  # not bench_*: pytest would collect it
from bench.steps import TrainingStep, autocast_forward, loss_after_steps
from impl import Cap, get_spec, list_models
from impl.backends import get_backend, list_backends
from impl.machine import Feature

BENCH_DIR = Path(__file__).parents[1] / "bench"


def test_each_kind_is_measured_by_exactly_one_benchmark_module() -> None:
    measured = [
        kind
        for path in sorted(BENCH_DIR.glob("bench_*.py"))
        for kind in importlib.import_module(f"bench.{path.stem}").KINDS
    ]
    assert sorted(measured) == sorted(KINDS)


def test_every_backend_belongs_to_a_kind_that_measures_it() -> None:
    for name in list_backends():
        kind = KINDS[get_backend(name).kind]
        assert name in kind.backends()


def test_case_ids_are_unique_across_every_kind() -> None:
    cases = selected_cases(devices=["cpu"], kinds=list(KINDS))
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids))


# which models each kind measures, by the capabilities they declare, written out by hand
MEASURES = {
    "inference": lambda caps: True,
    "quantised": lambda caps: bool({Cap.QUANT_DYNAMIC, Cap.QUANT_STATIC} & caps),
    "training": lambda caps: True,
    "amp": lambda caps: Cap.AMP in caps,
    "profile": lambda caps: True,
    "compile": lambda caps: True,
    "instructions": lambda caps: True,
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_kind_measures_exactly_the_models_declaring_what_it_needs(kind: str) -> None:
    cases = selected_cases(devices=["cpu"], kinds=[kind], batch_sizes=[1])
    expected = {name for name in list_models() if MEASURES[kind](get_spec(name).caps)}
    assert {case.model for case in cases} == expected
    assert {case.kind for case in cases} == {kind}


def test_a_model_declaring_only_eager_gets_the_kinds_that_need_nothing_more(monkeypatch) -> None:
    mlp = get_spec("mlp_784_128_10")
    eager_only = dataclasses.replace(mlp, name="eager_only", caps=frozenset({Cap.EAGER}))
    monkeypatch.setattr(
        bench.cases, "get_spec", lambda name: eager_only if name == "eager_only" else get_spec(name)
    )
    cases = selected_cases(models=["eager_only"], devices=["cpu"], kinds=list(KINDS))
    assert {(case.kind, case.backend) for case in cases} == {
        ("inference", "eager"),
        ("training", "eager"),
        ("profile", "eager"),
        ("compile", "compile"),
        ("instructions", "eager"),
    }


def test_amp_times_float32_beside_each_autocast_dtype_with_one_skip_reason() -> None:
    cases = selected_cases(devices=["cpu"], kinds=["amp"])
    by_setting: dict[tuple, list] = {}
    for case in cases:
        by_setting.setdefault((case.model, case.batch_size, case.phase), []).append(case)
    assert {case.model for case in cases} == set(list_models(caps={Cap.AMP}))
    for group in by_setting.values():
        assert sorted(c.precision for c in group) == ["bfloat16", "float32"]
        assert len({c.skip for c in group}) == 1  # a float32 baseline without its pair is useless
    assert {case.phase for case in cases} == {"inference", "training"}


@pytest.mark.parametrize("present", [True, False])
def test_a_precision_skips_only_where_a_feature_it_needs_is_missing(monkeypatch, present) -> None:
    feature = Feature("wish", "cpu", "a probed feature", lambda: present, lambda: "as probed")
    monkeypatch.setitem(bench.cases.PRECISION_NEEDS, ("cpu", "float32"), (feature,))
    reason = skip_reason(get_spec("mlp_784_128_10"), get_backend("eager"), "cpu", KINDS["amp"])
    assert reason == (None if present else feature.missing_reason())


def test_compile_is_opt_in_and_a_named_backend_brings_its_kind() -> None:
    assert "compile" not in DEFAULT_KINDS
    assert {case.kind for case in selected_cases(devices=["cpu"])} == set(DEFAULT_KINDS)
    named = selected_cases(devices=["cpu"], backends=["compile"], batch_sizes=[1])
    assert {(case.kind, case.backend) for case in named} == {("compile", "compile")}


def test_an_unknown_kind_is_named() -> None:
    with pytest.raises(BenchConfigError, match=r"unknown kinds \['latency'\]"):
        selected_cases(devices=["cpu"], kinds=["latency"])


@given(steps=st.integers(3, 8))
def test_training_steps_lower_the_loss_on_their_fixed_batch(steps: int) -> None:
    spec = get_spec("mlp_784_128_10")
    cfg = spec.config("tiny")
    inputs = spec.inputs(cfg, 16)
    targets = spec.make_targets(cfg, inputs)
    torch.manual_seed(0)
    step = TrainingStep(spec.create("tiny"), spec.loss, inputs, targets, device="cpu")
    for _ in range(steps):
        step()
    assert step.steps == steps
    assert float(step.losses[-1]) < float(step.losses[0])
    assert step.parameters_finite()


def test_only_float16_scales_the_loss() -> None:
    spec = get_spec("mlp_784_128_10")
    cfg = spec.config("tiny")
    inputs = spec.inputs(cfg, 2)
    args = (spec.create("tiny"), spec.loss, inputs, spec.make_targets(cfg, inputs))
    assert not TrainingStep(*args, device="cpu", precision="bfloat16").scaler.is_enabled()
    assert not TrainingStep(*args, device="cpu").scaler.is_enabled()


@pytest.mark.parametrize(
    "name", [n for n in list_models(caps={Cap.AMP}) if get_spec(n).supports(Cap.AMP)]
)
def test_autocast_forward_runs_in_bfloat16_and_float32_does_not(name: str) -> None:
    spec = get_spec(name)
    if reason := spec.missing_reason(Cap.AMP, "cpu"):
        pytest.skip(reason)
    model = spec.create("tiny").eval()
    inputs = spec.inputs(spec.config("tiny"), 4)
    # the output the task scores (a model may return a tuple, e.g. a VAE's (recon, mu, logvar))
    bf16 = spec.predicted(autocast_forward(model, "cpu", "bfloat16")(inputs))
    assert bf16.dtype == torch.bfloat16
    assert spec.predicted(autocast_forward(model, "cpu", "float32")(inputs)).dtype == torch.float32


@pytest.mark.parametrize(
    "name", [n for n in list_models(caps={Cap.AMP}) if get_spec(n).supports(Cap.AMP)]
)
def test_bfloat16_training_tracks_float32_from_the_same_start(name: str) -> None:
    """The amp kind's training parity: a few bfloat16 steps end near float32's loss (bfloat16
    keeps 8 bits of mantissa, so about 1% per value; the loss averages many), within the
    model's declared ``amp_training_rtol``."""
    spec = get_spec(name)
    if reason := spec.missing_reason(Cap.AMP, "cpu"):
        pytest.skip(reason)
    cfg = spec.config("tiny")
    inputs = spec.inputs(cfg, 16)
    targets = spec.make_targets(cfg, inputs)

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return spec.create("tiny")

    losses = [
        loss_after_steps(
            build, spec.loss, inputs, targets, device="cpu", precision=precision, steps=5
        )
        for precision in ("float32", "bfloat16")
    ]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[1] == pytest.approx(losses[0], rel=spec.amp_training_rtol)


def test_quick_measures_latency_at_every_batch_and_throughput_at_the_largest() -> None:
    full = selected_cases(devices=["cpu"], batch_sizes=[1, 8, 32])
    quick = selected_cases(devices=["cpu"], sizes=None, batch_sizes=[1, 8, 32], quick=True)
    for kind in DEFAULT_KINDS:
        batches = {case.batch_size for case in quick if case.kind == kind}
        assert batches == ({32} if KINDS[kind].quick_largest_batch else {1, 8, 32}), kind
    assert {case.kind for case in quick} == {case.kind for case in full}
    assert {case.model for case in quick} == {case.model for case in full}
    assert {(case.model, case.size) for case in quick} == {
        (name, get_spec(name).quick_size) for name in list_models()
    }
