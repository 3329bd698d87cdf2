"""Inference latency per model x size x device x backend x batch size (generated; see conftest).

One benchmark body serves three kinds, so that every backend goes through the same pipeline:
``inference`` (eager, TorchScript, ONNX Runtime), ``quantised`` (the int8 backends) and
``compile`` (``torch.compile``). Each times one forward call on inputs already on the device and
already converted to the backend's format. On CUDA every call ends with
``torch.cuda.synchronize()`` so the timer sees the kernels finish. ``extra_info`` carries what a
report needs to read the number correctly: the backend's parity with eager on the same inputs (a
fast but wrong backend shows), its output quality and size against float32 on a fixed batch, FLOPs
and peak memory.
"""

from __future__ import annotations

import torch

from bench.cases import BenchCase
from bench.measure import case_info, synchronized, warm_up
from bench.profiling import peak_memory
from impl import get_spec
from impl.backends import get_backend
from impl.tasks import max_abs_diff

KINDS = ("inference", "quantised", "compile")


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
    if backend.torch_allocator:
        peak_bytes, memory_source = peak_memory(lambda: run(native), case.device)
    else:
        peak_bytes, memory_source = None, f"not measured: {backend.name} allocates outside torch"

    benchmark.group = case.group
    benchmark.extra_info.update(
        **case_info(case, model, inputs, bench_threads),
        flops=prepared_models.flops(case.model, case.size, case.device, inputs),
        parity_max_abs_diff=max_abs_diff(output, reference),
        parity_ok=backend.parity_ok(output, reference),
        peak_memory_bytes=peak_bytes,
        memory_source=memory_source,
        inputs_on_device=True,
        **prepared_models.quality(case.model, case.size, case.device, case.backend),
        **runner.info,
    )
    warm_up(benchmark, request.config, run, native)
    benchmark(run, native)
