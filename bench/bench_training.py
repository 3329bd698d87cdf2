"""Training throughput: one optimiser step per call, per model x size x device x batch size.

The timed call is ``bench.steps.TrainingStep``: zero_grad, forward, the model's declared loss,
backward, Adam step, on one fixed batch already on the device (synchronised on CUDA). The model
trains as it is timed; after the last timed step its parameters must be finite, or the case
fails: a step time of a model that diverged measures nothing. Throughput (samples/s) is the
batch over the median step. FLOPs count the forward and the backward pass, not the optimiser.
"""

from __future__ import annotations

import torch

from bench.cases import BenchCase
from bench.measure import case_info, count_training_flops, synchronized, warm_up
from bench.profiling import peak_memory
from bench.steps import TrainingStep
from impl import get_spec

KINDS = ("training",)


def bench_training(benchmark, case: BenchCase, bench_threads: int, request) -> None:
    spec = get_spec(case.model)
    cfg = spec.config(case.size)
    inputs = tuple(x.to(case.device) for x in spec.inputs(cfg, case.batch_size, seed=1))
    targets = spec.make_targets(cfg, inputs, seed=1)
    torch.manual_seed(0)
    model = spec.create(case.size).to(case.device)
    flops = count_training_flops(model, spec.loss, inputs, targets)
    step = TrainingStep(model, spec.loss, inputs, targets, device=case.device)
    timed_step = synchronized(lambda _: step(), case.device)
    peak_bytes, memory_source = peak_memory(lambda: timed_step(None), case.device)

    benchmark.group = case.group
    benchmark.extra_info.update(
        **case_info(case, model, inputs, bench_threads),
        flops=flops,
        optimizer="Adam(lr=1e-3)",
        peak_memory_bytes=peak_bytes,
        memory_source=memory_source,
        inputs_on_device=True,
    )
    warm_up(benchmark, request.config, timed_step, None)
    benchmark(timed_step, None)

    benchmark.extra_info.update(
        steps=step.steps,
        first_loss=float(step.losses[0]),
        last_loss=float(step.losses[-1]),
    )
    assert step.parameters_finite(), f"parameters are not finite after {step.steps} steps"
