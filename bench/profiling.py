"""What a benchmark measures besides time: hot spots, peak memory, the machine's matmul rate.

Time says how long a call takes; it does not say where the time goes, how much memory the call
needs, or how far the number is from what this machine can do at all. Curriculum 002 Q80 profiles a
model with ``torch.profiler`` (CUDA activity, ``record_shapes``, ``profile_memory``, a TensorBoard
trace) and sorts by ``cuda_time_total``; on a CPU-only machine those CUDA columns are all zero
(catalog B57). Here the CUDA activity and the device clock are used on CUDA only, and hot spots are
ranked by self CPU time on CPU:

    >>> profile = profile_calls(lambda: model(x), "cpu", trace_dir=Path("runs/mlp"))
    >>> profile.hot_spots[0]         # HotSpot(op="aten::addmm", calls=5, self_pct=61.2, ...)
    >>> profile.peak_memory_bytes    # the most bytes the calls had allocated at once
    $ tensorboard --logdir runs      # torch-tb-profiler reads runs/mlp as a run

``peak_memory`` profiles one call for memory alone (cheap enough for every benchmark case), and
``matmul_peak_gflops`` measures the matmul rate a report divides achieved FLOP/s by.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler_util import FunctionEventAvg
from torch.profiler import ProfilerActivity

DEVICES = ("cpu", "cuda")

# Rows of key_averages() that are not operators: the profiler's step ranges and the memory events
# it reports outside any operator. Their "self time" is the Python between operators, not work.
_BOOKKEEPING_PREFIXES = ("ProfilerStep", "[memory]", "[OutOfMemory]")

CPU_MEMORY_SOURCE = "torch.profiler CPU allocator events (running sum of [memory] bytes)"
CUDA_MEMORY_SOURCE = "torch.cuda.max_memory_allocated above torch.cuda.memory_allocated before"


@dataclass(frozen=True)
class HotSpot:
    """One operator's share of the profiled time."""

    op: str  # e.g. "aten::addmm"
    calls: int  # over all profiled calls
    self_ms: float  # self time summed over the profiled calls: CPU time on CPU, device time on CUDA
    self_pct: float  # % of the total self time of all ops in the window
    input_shapes: str  # the most frequent input shapes, e.g. "[[32, 784], [128, 784]]"; "" if none


@dataclass(frozen=True)
class Profile:
    """Where the time of ``calls`` calls went, and the most memory they held at once."""

    hot_spots: list[HotSpot]  # top-k by self time, descending
    total_self_ms: float  # self time of all ops (per the same clock), the base of self_pct
    calls: int  # how many profiled calls
    peak_memory_bytes: int | None
    memory_source: str  # where the peak came from
    trace_file: Path | None  # the *.pt.trace.json written, if a trace_dir was given


def profile_calls(
    call: Callable[[], Any],
    device: str,
    *,
    calls: int = 5,
    warmup: int = 1,
    top_k: int = 10,
    trace_dir: Path | None = None,
) -> Profile:
    """Profile ``calls`` calls of ``call`` after ``warmup`` unrecorded ones.

    With ``trace_dir``, the trace goes there through ``tensorboard_trace_handler``, so
    ``tensorboard --logdir <parent of trace_dir>`` (with torch-tb-profiler) shows it as a run.
    """
    _check_device(device)
    profiler = torch.profiler.profile(
        activities=_activities(device),
        record_shapes=True,
        profile_memory=True,
        schedule=torch.profiler.schedule(wait=0, warmup=warmup, active=calls, repeat=1),
        on_trace_ready=(
            torch.profiler.tensorboard_trace_handler(str(trace_dir)) if trace_dir else None
        ),
    )
    with profiler as prof:
        for _ in range(warmup):
            _profiled_step(prof, call, device)
        cuda_base = _start_cuda_peak() if device == "cuda" else None
        for _ in range(calls):
            _profiled_step(prof, call, device)
        cuda_peak = _cuda_peak_above(cuda_base) if cuda_base is not None else None

    ops = _operator_rows(prof.key_averages(group_by_input_shape=True))
    hot_spots, total_ms = _hot_spots(ops, _self_time_us(device), top_k)
    if device == "cuda":
        peak, source = cuda_peak, CUDA_MEMORY_SOURCE
    else:
        peak, source = _cpu_peak_bytes(prof), CPU_MEMORY_SOURCE
    return Profile(
        hot_spots=hot_spots,
        total_self_ms=total_ms,
        calls=calls,
        peak_memory_bytes=peak,
        memory_source=source,
        trace_file=_newest_trace(trace_dir) if trace_dir else None,
    )


def peak_memory(call: Callable[[], Any], device: str) -> tuple[int | None, str]:
    """The most bytes one call of ``call`` had allocated at once, above what was live before it,
    and where that number comes from. The call's result is kept until the measurement ends: the
    memory a call returns counts, its release afterwards is not part of the call."""
    _check_device(device)
    if device == "cuda":
        before = _start_cuda_peak()
        result = call()
        peak = _cuda_peak_above(before)
        del result
        return peak, CUDA_MEMORY_SOURCE
    with torch.profiler.profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = call()
    del result
    return _cpu_peak_bytes(prof), CPU_MEMORY_SOURCE


def matmul_peak_gflops(device: str, dtype: torch.dtype, threads: int, n: int = 1024) -> float:
    """This machine's achievable matmul rate: GFLOP/s of an ``n x n @ n x n`` product in ``dtype``.

    Measured once per run with ``torch.utils.benchmark.Timer`` (which synchronises CUDA) at
    ``threads`` intra-op threads, median of ``blocked_autorange``. A dtype without native kernels
    (bfloat16 on a CPU without AVX-512 BF16 or AMX) gives a low number: a fact about the machine.
    """
    _check_device(device)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(device=device, dtype=dtype) for _ in "ab")
    # imported here: torch.utils.benchmark loads torch.utils.cpp_extension, which logs a warning
    # about CUDA_HOME on every CPU-only start of the command line
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="a @ b", globals={"a": a, "b": b}, num_threads=threads)
    median_s = timer.blocked_autorange(min_run_time=0.5).median
    return 2 * n**3 / median_s / 1e9


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {', '.join(DEVICES)}")


def _activities(device: str) -> list[ProfilerActivity]:
    """CPU always; CUDA only on CUDA, where its columns mean something (catalog B57)."""
    if device == "cuda":
        return [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    return [ProfilerActivity.CPU]


def _profiled_step(prof: torch.profiler.profile, call: Callable[[], Any], device: str) -> None:
    """One call, finished on the device before the profiler moves to the next step."""
    call()
    if device == "cuda":
        torch.cuda.synchronize()
    prof.step()


def _self_time_us(device: str) -> Callable[[FunctionEventAvg], float]:
    """The clock hot spots are ranked by: self CPU time on CPU, self device time on CUDA."""
    if device == "cuda":
        return lambda row: row.self_device_time_total
    return lambda row: row.self_cpu_time_total


def _operator_rows(rows: Iterable[FunctionEventAvg]) -> list[FunctionEventAvg]:
    """The host-side operator rows: no step ranges, memory rows or ``record_function`` labels
    (their self time is Python between operators), no kernel rows (on CUDA a kernel's time is
    already the self device time of the operator that launched it)."""
    return [
        row
        for row in rows
        if not row.key.startswith(_BOOKKEEPING_PREFIXES)
        and not row.is_user_annotation
        and row.device_type == torch.autograd.DeviceType.CPU
    ]


def _hot_spots(
    rows: list[FunctionEventAvg], self_time_us: Callable[[FunctionEventAvg], float], top_k: int
) -> tuple[list[HotSpot], float]:
    """Rows grouped by (op, input shapes) merged per op; the top ``top_k`` and the total, in ms."""
    by_op: dict[str, list[FunctionEventAvg]] = defaultdict(list)
    for row in rows:
        by_op[row.key].append(row)
    self_ms = {op: sum(self_time_us(r) for r in group) / 1e3 for op, group in by_op.items()}
    total_ms = sum(self_ms.values())
    # an op that took no time on this clock is no hot spot (on CUDA: one that launched no kernel)
    timed = [op for op in by_op if self_ms[op] > 0]
    ranked = sorted(timed, key=lambda op: self_ms[op], reverse=True)[:top_k]
    hot_spots = [
        HotSpot(
            op=op,
            calls=sum(r.count for r in by_op[op]),
            self_ms=self_ms[op],
            self_pct=100 * self_ms[op] / total_ms if total_ms > 0 else 0.0,
            input_shapes=_most_frequent_shapes(by_op[op]),
        )
        for op in ranked
    ]
    return hot_spots, total_ms


def _most_frequent_shapes(rows: list[FunctionEventAvg]) -> str:
    """The input shapes of the row with the most calls, as a compact string; "" if none recorded."""
    calls_by_shapes = Counter[str]()
    for row in rows:
        if row.input_shapes:
            calls_by_shapes[str(row.input_shapes)] += row.count
    return calls_by_shapes.most_common(1)[0][0] if calls_by_shapes else ""


def _cpu_peak_bytes(prof: torch.profiler.profile) -> int:
    """The peak of the running sum of CPU allocations (+) and frees (-), in time order.

    No public API gives the allocator events in order: ``prof.events()`` folds them into
    per-operator net totals (``cpu_memory_usage``), which hides a workspace an operator allocates
    and frees inside itself, and ``export_memory_timeline`` needs ``with_stack`` and writes files.
    So this reads the raw events the profiler recorded, ``prof.profiler.kineto_results.events()``,
    the same ones (and the same ``nbytes()``) torch's own ``_parse_kineto_results`` sums.
    """
    events = [
        event
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]
    live = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _start_cuda_peak() -> int:
    """Reset CUDA's peak counter; the bytes allocated now, the base the peak is reported above."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _cuda_peak_above(before: int) -> int:
    """The most bytes allocated since ``_start_cuda_peak``, above what was allocated then."""
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _newest_trace(trace_dir: Path) -> Path | None:
    """The trace ``tensorboard_trace_handler`` wrote last: ``<worker>.<time_ns>.pt.trace.json``."""
    traces = list(Path(trace_dir).glob("*.pt.trace.json"))
    return max(traces, key=lambda path: path.stat().st_mtime_ns) if traces else None
