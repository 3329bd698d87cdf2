"""Mixed precision: the inference call and the training step under ``torch.autocast``, beside the
same call in float32 on the same inputs (generated; see conftest).

Each (model, size, device, batch, phase) has a float32 case and one per autocast dtype
(bfloat16 on CPU; float16 and bfloat16 on CUDA), so the report divides medians measured the same
way: speed-up = float32 median / autocast median. Beside the speed-up, the parity a user trades
for it, measured before timing:

- inference: max absolute and relative difference of the outputs from float32;
- training: the loss after ``PARITY_STEPS`` steps of a fresh model, against float32 from the
  same initial weights and batch; float16 scales its loss with ``torch.amp.GradScaler``.

CPU autocast on a CPU without native bfloat16 (``onednn_bf16`` false) runs emulated kernels; the
row records ``onednn_bf16`` so that a slowdown reads as what it is.
Curriculum: 002 Q58, Q71; catalog P-amp-bench.
"""

from __future__ import annotations

import math

import torch

from bench.cases import BenchCase
from bench.measure import case_info, count_flops, count_training_flops, synchronized, warm_up
from bench.profiling import peak_memory
from bench.steps import TrainingStep, autocast_forward, loss_after_steps
from impl import get_spec
from impl.machine import ONEDNN_BF16
from impl.tasks import max_abs_diff, output_tensors

KINDS = ("amp",)
PARITY_STEPS = 5


def bench_amp(benchmark, case: BenchCase, bench_threads: int, request) -> None:
    spec = get_spec(case.model)
    cfg = spec.config(case.size)
    inputs = tuple(x.to(case.device) for x in spec.inputs(cfg, case.batch_size, seed=1))
    targets = spec.make_targets(cfg, inputs, seed=1)

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return spec.create(case.size).to(case.device)

    model = build()
    if case.phase == "training":
        call, parity, flops = _training(case, spec, build, model, inputs, targets)
    else:
        call, parity, flops = _inference(case, model.eval(), inputs)
    peak_bytes, memory_source = peak_memory(lambda: call(None), case.device)

    benchmark.group = case.group
    benchmark.extra_info.update(
        **case_info(case, model, inputs, bench_threads),
        flops=flops,
        onednn_bf16=ONEDNN_BF16.available if case.device == "cpu" else None,
        peak_memory_bytes=peak_bytes,
        memory_source=memory_source,
        **parity,
    )
    warm_up(benchmark, request.config, call, None)
    benchmark(call, None)


def _inference(case: BenchCase, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]):
    """The autocast forward; parity of its output with the float32 output."""
    forward = autocast_forward(model, case.device, case.precision)
    reference = output_tensors(autocast_forward(model, case.device, "float32")(inputs))
    output = output_tensors(forward(inputs))
    if not all(torch.isfinite(out).all() for out in output.values()):
        raise FloatingPointError(f"{case.precision} autocast output has inf or NaN")
    diff = max_abs_diff(output, reference)
    largest = max(float(ref.float().abs().max()) for ref in reference.values())
    parity = {"max_abs_diff": diff, "max_rel_diff": diff / max(largest, 1e-12)}
    call = synchronized(lambda _: forward(inputs), case.device)
    return call, parity, count_flops(model, inputs)


def _training(case: BenchCase, spec, build, model, inputs, targets):
    """The autocast training step; parity of the loss after some steps with float32's."""
    losses = {
        precision: loss_after_steps(
            build,
            spec.loss,
            inputs,
            targets,
            device=case.device,
            precision=precision,
            steps=PARITY_STEPS,
        )
        for precision in dict.fromkeys(("float32", case.precision))
    }
    fp32, ours = losses["float32"], losses[case.precision]
    if math.isnan(ours):
        raise FloatingPointError(f"{case.precision} training diverged in {PARITY_STEPS} steps")
    parity = {
        "parity_steps": PARITY_STEPS,
        "loss_after_steps": ours,
        "float32_loss_after_steps": fp32,
        "loss_rel_diff": abs(ours - fp32) / max(abs(fp32), 1e-12),
    }
    flops = count_training_flops(model, spec.loss, inputs, targets)
    step = TrainingStep(
        model, spec.loss, inputs, targets, device=case.device, precision=case.precision
    )
    return synchronized(lambda _: step(), case.device), parity, flops
