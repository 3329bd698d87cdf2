"""Inference latency per model x size x device x backend x batch size (generated; see conftest).

Each benchmark times one forward call on inputs already on the device and already converted to
the backend's format. On CUDA every call ends with ``torch.cuda.synchronize()`` so the timer sees
the kernels finish. ``extra_info`` carries what a report needs to read the number correctly,
including the backend's parity with eager on the same inputs: a fast but wrong backend shows.
"""

from __future__ import annotations

import torch

from bench.cases import BenchCase
from bench.measure import synchronized
from impl import count_parameters, get_spec
from impl.backends import get_backend


def bench_inference(
    benchmark, case: BenchCase, prepared_models, bench_threads: int, request
) -> None:
    spec, backend = get_spec(case.model), get_backend(case.backend)
    cfg = spec.config(case.size)
    model = prepared_models.model(case.model, case.size, case.device)
    runner = prepared_models.runner(case.model, case.size, case.device, case.backend)
    inputs = tuple(x.to(case.device) for x in spec.inputs(cfg, case.batch_size, seed=1))
    native = runner.convert(inputs)
    run = synchronized(runner.run, case.device)

    with torch.inference_mode():
        reference = model(*inputs)
    output = runner.to_torch(run(native))
    max_abs_diff = float((output.float().cpu() - reference.float().cpu()).abs().max())

    benchmark.group = case.group
    benchmark.extra_info.update(
        model=case.model,
        size=case.size,
        family=spec.family,
        curriculum=spec.curriculum,
        backend=case.backend,
        device=case.device,
        batch_size=case.batch_size,
        dtype=str(reference.dtype).removeprefix("torch."),
        input_shapes=[list(x.shape) for x in inputs],
        params=count_parameters(model),
        flops=prepared_models.flops(case.model, case.size, case.device, inputs),
        parity_max_abs_diff=max_abs_diff,
        parity_ok=backend.parity_ok(max_abs_diff, reference),
        threads=bench_threads,
        inputs_on_device=True,
    )
    if not benchmark.disabled:
        warmup = request.config.getoption("--bench-warmup")
        benchmark.extra_info["warmup_calls"] = warmup
        for _ in range(warmup):
            run(native)
    benchmark(run, native)
