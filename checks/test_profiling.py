"""What benchmarks measure besides time: profiler hot spots, the TensorBoard trace, peak memory and
the machine's matmul rate, checked on calls whose operators and allocations are known."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bench.profiling import (
    CPU_MEMORY_SOURCE,
    CUDA_MEMORY_SOURCE,
    HotSpot,
    Profile,
    matmul_peak_gflops,
    peak_memory,
    profile_calls,
)

M, K, N = 48, 96, 32  # shapes of the known matmul: [M, K] @ [K, N]
CALLS = 3
MEBI_FLOATS = 1 << 20


def mm_then_relu(m: int = M, k: int = K, n: int = N, mm_per_call: int = 1) -> Callable[[], None]:
    """A call with a known operator count: ``mm_per_call`` ``aten::mm`` of [m, k] @ [k, n], each
    followed by a cheap element-wise op."""
    a, b = torch.randn(m, k), torch.randn(k, n)

    def call() -> None:
        for _ in range(mm_per_call):
            torch.mm(a, b).relu()

    return call


def hot_spot(profile: Profile, op: str) -> HotSpot:
    return next(spot for spot in profile.hot_spots if spot.op == op)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Profile, Path]:
    """One profile of the known matmul, with its trace written to a run directory."""
    run_dir = tmp_path_factory.mktemp("runs") / "mm"
    return profile_calls(mm_then_relu(), "cpu", calls=CALLS, trace_dir=run_dir), run_dir


# --- hot spots ------------------------------------------------------------------------------


@given(
    shape=st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 64)),
    mm_per_call=st.integers(1, 3),
    calls=st.integers(1, 4),
)
def test_matmul_hot_spot_counts_every_call_with_its_shapes(
    shape: tuple[int, int, int], mm_per_call: int, calls: int
) -> None:
    m, k, n = shape
    profile = profile_calls(mm_then_relu(m, k, n, mm_per_call), "cpu", calls=calls)
    mm = hot_spot(profile, "aten::mm")
    assert (profile.calls, mm.calls) == (calls, mm_per_call * calls)
    assert mm.input_shapes == str([[m, k], [k, n]])


def test_hot_spots_are_the_top_k_by_self_time() -> None:
    profile = profile_calls(mm_then_relu(), "cpu", calls=CALLS, top_k=2)
    self_ms = [spot.self_ms for spot in profile.hot_spots]
    assert len(self_ms) == 2  # mm, relu, clamp_min, resolve_conj: more ops than top_k
    assert self_ms == sorted(self_ms, reverse=True)
    assert all(0 <= spot.self_pct <= 100 for spot in profile.hot_spots)
    assert sum(spot.self_pct for spot in profile.hot_spots) <= 100 + 1e-9


def test_percentages_are_shares_of_the_total_self_time() -> None:
    """With every op listed, the shares add up to 100: the total counts exactly the listed ops."""
    profile = profile_calls(mm_then_relu(), "cpu", calls=CALLS, top_k=1000)
    assert sum(spot.self_ms for spot in profile.hot_spots) == pytest.approx(profile.total_self_ms)
    assert sum(spot.self_pct for spot in profile.hot_spots) == pytest.approx(100)
    for spot in profile.hot_spots:
        assert spot.self_pct == pytest.approx(100 * spot.self_ms / profile.total_self_ms)


def test_hot_spots_leave_out_step_ranges_and_annotations() -> None:
    """ProfilerStep#N and ``record_function`` labels hold the Python between operators."""
    matmul = mm_then_relu()

    def labelled() -> None:
        with torch.profiler.record_function("my_label"):
            matmul()

    ops = {spot.op for spot in profile_calls(labelled, "cpu", calls=CALLS, top_k=1000).hot_spots}
    assert "aten::mm" in ops
    assert not {op for op in ops if op.startswith(("ProfilerStep", "my_label", "[memory]"))}


# --- the TensorBoard trace ------------------------------------------------------------------


def test_trace_file_is_written_under_the_run_directory(traced: tuple[Profile, Path]) -> None:
    profile, run_dir = traced
    assert profile.trace_file is not None and profile.trace_file.is_file()
    assert profile.trace_file.parent == run_dir
    assert profile.trace_file.name.endswith(".pt.trace.json")


def test_no_trace_directory_no_trace() -> None:
    assert profile_calls(mm_then_relu(), "cpu", calls=1).trace_file is None


def test_tensorboard_profiler_plugin_loads_the_run(
    traced: tuple[Profile, Path], tmp_path: Path
) -> None:
    """torch-tb-profiler's own loader, as ``tensorboard --logdir`` runs it: it parses every trace
    in the run directory (in spawned processes) into one profile per worker and span, whose
    operator view lists each op with its call count."""
    from torch_tb_profiler import io as tb_io
    from torch_tb_profiler.profiler.loader import RunLoader

    _, run_dir = traced
    with tb_io.Cache(str(tmp_path)) as caches:
        run = RunLoader("mm", str(run_dir), caches).load()
    tables = [profile.operation_table_by_name["data"] for profile in run.get_profiles()]
    assert len(tables) == 1
    calls_by_op = {row["name"]: row["calls"] for row in tables[0]}
    assert calls_by_op["aten::mm"] == CALLS


# --- peak memory ----------------------------------------------------------------------------


@given(floats=st.integers(1, MEBI_FLOATS))
def test_peak_memory_counts_a_tensor_the_call_returns(floats: int) -> None:
    peak, source = peak_memory(lambda: torch.ones(floats), "cpu")
    assert peak >= 4 * floats
    assert source == CPU_MEMORY_SOURCE


def test_two_tensors_at_once_peak_above_one() -> None:
    one, _ = peak_memory(lambda: torch.ones(MEBI_FLOATS), "cpu")
    two, _ = peak_memory(lambda: (torch.ones(MEBI_FLOATS), torch.ones(MEBI_FLOATS)), "cpu")
    assert two >= 2 * 4 * MEBI_FLOATS
    assert two > one


def test_memory_freed_between_allocations_is_not_counted_twice() -> None:
    """The peak of live bytes, not the sum of allocations: four temporaries, one at a time."""

    def one_temporary_at_a_time() -> None:
        for _ in range(4):
            torch.ones(MEBI_FLOATS).sum()

    peak, _ = peak_memory(one_temporary_at_a_time, "cpu")
    assert 4 * MEBI_FLOATS <= peak < 2 * 4 * MEBI_FLOATS


def test_a_call_that_allocates_nothing_new_has_a_small_peak() -> None:
    existing = torch.ones(MEBI_FLOATS)
    peak, _ = peak_memory(lambda: existing.add_(1).view(-1), "cpu")
    assert 0 <= peak < 1024  # a scalar at most, not the 4 MiB tensor it works on


def test_profile_peak_covers_the_outputs_of_a_call(traced: tuple[Profile, Path]) -> None:
    profile, _ = traced
    assert profile.peak_memory_bytes >= 4 * M * N  # the mm output, alive while relu runs
    assert profile.memory_source == CPU_MEMORY_SOURCE


# --- the machine's matmul rate --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_peak_is_a_finite_positive_rate_on_cpu(dtype: torch.dtype) -> None:
    """bfloat16 is measured too: slow without native bf16 kernels, but a rate all the same."""
    gflops = matmul_peak_gflops("cpu", dtype, threads=2, n=64)
    assert math.isfinite(gflops) and gflops > 0


@pytest.mark.parametrize(
    "measure",
    [
        lambda device: matmul_peak_gflops(device, torch.float32, threads=1, n=8),
        lambda device: peak_memory(lambda: None, device),
        lambda device: profile_calls(lambda: None, device, calls=1),
    ],
    ids=["matmul_peak_gflops", "peak_memory", "profile_calls"],
)
def test_an_unknown_device_is_refused(measure: Callable[[str], object]) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        measure("tpu")


# --- CUDA -----------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_hot_spots_are_ranked_by_device_time() -> None:
    a, b = torch.randn(M, K, device="cuda"), torch.randn(K, N, device="cuda")
    profile = profile_calls(lambda: torch.mm(a, b).relu(), "cuda", calls=CALLS)
    mm = hot_spot(profile, "aten::mm")
    assert (mm.calls, mm.input_shapes) == (CALLS, str([[M, K], [K, N]]))
    assert mm.self_ms > 0 and profile.total_self_ms > 0  # device time: a kernel ran
    assert sum(spot.self_pct for spot in profile.hot_spots) <= 100 + 1e-9
    assert profile.memory_source == CUDA_MEMORY_SOURCE


@pytest.mark.cuda
def test_cuda_peak_memory_counts_a_tensor_the_call_returns() -> None:
    peak, source = peak_memory(lambda: torch.ones(MEBI_FLOATS, device="cuda"), "cuda")
    assert peak >= 4 * MEBI_FLOATS
    assert source == CUDA_MEMORY_SOURCE


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_matmul_peak_is_a_finite_positive_rate(dtype: torch.dtype) -> None:
    gflops = matmul_peak_gflops("cuda", dtype, threads=1, n=512)
    assert math.isfinite(gflops) and gflops > 0
