"""Hot spots: ``torch.profiler`` over a few warm inference calls per model x size x device x batch.

What a performance engineer asks after "how fast": where does the time go. Each case profiles
``PROFILED_CALLS`` eager calls after a warm-up and records the top ``TOP_K`` operators by self
time (self CPU time on CPU, self CUDA time on CUDA) with their calls, share of the total and
input shapes, and the peak memory the profiler saw. Its trace goes to
``<trace dir>/<case id>/``, the layout TensorBoard's PyTorch profiler plugin reads:
``tensorboard --logdir reports/runs/<run-id>/traces``.

The timed quantity is the whole profiled window, profiler overhead included, measured once: it
is not a latency (the ``inference`` kind measures that) and reports leave it out of latency
tables. Curriculum: 002 Q80; catalog P-profiler, B57 (CUDA activity only on a GPU).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.cases import BenchCase
from bench.measure import case_info, synchronized
from bench.profiling import Profile, profile_calls
from impl import get_spec

KINDS = ("profile",)
PROFILED_CALLS = 5
TOP_K = 10


def bench_profile(
    benchmark, case: BenchCase, prepared_models, bench_threads: int, trace_dir: Path
) -> None:
    spec = get_spec(case.model)
    cfg = spec.config(case.size)
    model = prepared_models.model(case.model, case.size, case.device)
    inputs = tuple(x.to(case.device) for x in spec.inputs(cfg, case.batch_size, seed=1))
    runner = prepared_models.runner(case.model, case.size, case.device, case.backend)
    run = synchronized(runner.run, case.device)

    def profile_window() -> Profile:
        return profile_calls(
            lambda: run(inputs),
            case.device,
            calls=PROFILED_CALLS,
            top_k=TOP_K,
            trace_dir=trace_dir / case.id,
        )

    benchmark.group = case.group
    profile = benchmark.pedantic(profile_window, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(
        **case_info(case, model, inputs, bench_threads),
        profiled_calls=profile.calls,
        total_self_ms=profile.total_self_ms,
        hot_spots=[dataclasses.asdict(spot) for spot in profile.hot_spots],
        peak_memory_bytes=profile.peak_memory_bytes,
        memory_source=profile.memory_source,
        trace_file=str(profile.trace_file) if profile.trace_file else None,
    )
