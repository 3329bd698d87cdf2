"""The model registry: one declaration per model, the source of truth for checks and benchmarks.

A model file declares a config dataclass, its named sizes and how to make inputs, targets and
the expected output shape, then registers a builder with ``@register_model``. Everything else
(property checks, backend parity, benchmarks, reports) is generated from ``list_models()``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor, nn

from impl.differentiable import no_gradcheck
from impl.machine import CUDA, INT8_ENGINE, Feature
from impl.tasks import (
    CLASSIFICATION,
    DETECTION,
    Output,
    Shape,
    Task,
    output_shapes,
    output_tensors,
)


class Cap(StrEnum):
    """What a model declares it supports; checks verify every declared capability."""

    EAGER = "eager"
    TORCHSCRIPT = "torchscript"  # torch.jit.script, save and load
    ONNX = "onnx"  # torch.onnx.export (dynamo) and onnxruntime; a model with one output tensor
    QUANT_DYNAMIC = "quant_dynamic"  # torch.ao.quantization.quantize_dynamic on Linear/LSTM
    QUANT_STATIC = "quant_static"  # eager post-training static int8: stubs, calibrate, convert
    AMP = "amp"  # torch.autocast forward (bfloat16 on CPU, float16 on CUDA)


# What a capability needs of the machine on every model, and what a device needs; a model adds its
# own needs in ``ModelSpec.needs``.
CAP_NEEDS: Mapping[Cap, tuple[Feature, ...]] = {
    Cap.QUANT_DYNAMIC: (INT8_ENGINE,),
    Cap.QUANT_STATIC: (INT8_ENGINE,),
}
DEVICE_NEEDS: Mapping[str, tuple[Feature, ...]] = {"cuda": (CUDA,)}


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything checks and benchmarks need to know about one model."""

    name: str
    family: str  # "mlp" | "conv" | "recurrent" | "attention" | ...
    summary: str  # one line, taken from the builder's docstring
    build: Callable[[Any], nn.Module]
    # where the curriculum describes it, e.g. "002 Q27"; None for a plugin's own model
    curriculum: str | None = None
    # named configs: "tiny" (checks) and "full" (the curriculum's configuration) at least
    sizes: Mapping[str, Any]
    # (cfg, batch_size, generator, **dims) -> forward args on the CPU, default dtype
    example_inputs: Callable[..., tuple[Tensor, ...]]
    # (cfg, batch_size, **dims) -> the output shape; for a tuple or mapping output, a tuple or
    # mapping of shapes (see ``output_tensors``)
    output_shape: Callable[..., Shape | tuple[Shape, ...] | Mapping[str, Shape]]
    # cfg -> {dim name: (min, max)} for input dimensions other than batch, e.g. sequence length
    dynamic_dims: Callable[[Any], Mapping[str, tuple[int, int]]] = lambda cfg: {}
    task: Task = CLASSIFICATION
    # (cfg, inputs, shape of the ``prediction`` output, generator) -> targets; the task's by default
    targets: Callable[[Any, tuple[Tensor, ...], Any, torch.Generator], Tensor] | None = None
    # the output the task scores (its name in ``output_tensors``; "" for a lone tensor)
    prediction: str = ""
    # (the model's whole output, targets) -> scalar loss; by default the task's loss of the
    # ``prediction`` output. Declare one where the loss needs more than that output (a VAE's KL).
    loss: Callable[[Any, Tensor], Tensor] | None = None
    caps: frozenset[Cap] = frozenset({Cap.EAGER})
    # declared capabilities that fail for a reason outside the model; checks expect them to fail
    # (strict xfail, so a fix upstream shows up) and benchmarks skip them
    known_failures: Mapping[Cap, str] = dataclasses.field(default_factory=dict)
    # machine features a declared capability needs on this model, beyond ``CAP_NEEDS``: checks and
    # benchmarks skip it, naming the feature, where the probe says this machine lacks it
    needs: Mapping[Cap, tuple[Feature, ...]] = dataclasses.field(default_factory=dict)
    # Declared properties; each one generates a check (checks/test_properties.py).
    # Every integer input is token ids right-padded with cfg.pad_token, and appending pad tokens
    # leaves every output unchanged at the real positions.
    padded_sequences: bool = False
    # Inputs (by index) along whose dim 1 the model is causal: every output at position t (its
    # dim 1) depends on those inputs' positions <= t only (a decoder, a causal language model).
    causal_inputs: tuple[int, ...] = ()
    # Permuting dim 1 (the sequence) of every input permutes dim 1 of every output the same way.
    permutation_equivariant: bool = False
    # The output is an affine function of the (float) inputs: no nonlinearity anywhere.
    affine: bool = False
    # (output name, input index): that output holds attention weights over dim 1 of that token
    # input, on its last dim: they sum to 1 and are 0 at padding (``output_tensors`` names outputs)
    attention_weights: tuple[str, int] | None = None
    # Layers with batch statistics (BatchNorm) cannot train on fewer samples than this.
    min_train_batch: int = 1
    # How far (relative) the loss after 5 bfloat16-autocast Adam steps may end from float32's
    # (checks/test_kinds.py). bfloat16 keeps 8 bits of mantissa, so 5% holds where training moves
    # smoothly; a sharp loss (a deep, narrow BatchNorm stack at its tiny size) amplifies rounding
    # into a different trajectory, either way, and declares its spread measured over seeds and
    # over CPUs with and without native bfloat16, whose kernels round differently.
    amp_training_rtol: float = 0.05
    # {output name: why}: outputs that rank candidates (top-k, NMS) and so differ between devices
    # where scores tie within rounding; CPU-CUDA parity compares the other outputs, and these by
    # shape and dtype (checks/test_models.py)
    device_dependent_outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Why the shapes inside the model depend on its inputs' values (objects per image, boxes that
    # NMS keeps), where they do: a shape-specialised backend (torch.compile) then recompiles for
    # new inputs until torch marks those shapes dynamic, and past its recompile limit (8) would
    # run those frames eagerly. Its parity check compares one input per batch class.
    value_dependent_shapes: str | None = None
    # model -> a module made of PyTorch's own layers, weights and buffers copied from ``model``,
    # that computes the same function in training and eval mode (e.g. nn.MultiheadAttention)
    reference: Callable[[nn.Module], nn.Module] | None = None
    # why ``torch.autograd.gradcheck`` of the whole model cannot apply (checks/test_gradients.py
    # checks every registered model whole, in float64, unless this says why not)
    no_gradcheck: str | None = None
    full_params: int | None = None  # parameter count of "full", from the curriculum or by hand
    # the size ``torchgauge run --quick`` measures: "full" unless full is too heavy for minutes
    # on a 2-core CPU (then a smaller named size; the full one is measured by a full run)
    quick_size: str = "full"

    @property
    def builtin(self) -> bool:
        """Registered by ``impl.models`` rather than by a plugin."""
        return self.build.__module__.startswith("impl.models.")

    @property
    def classifier(self) -> bool:
        """Outputs class logits (B, K), so top-1 agreement and accuracy apply."""
        return self.task is CLASSIFICATION

    def predicted(self, output: Output) -> Tensor:
        """The output that the task scores: logits, a regression value."""
        return output_tensors(output)[self.prediction]

    def supports(self, cap: Cap) -> bool:
        """Declared and not known to fail (on any machine; see ``missing`` for this one)."""
        return cap in self.caps and cap not in self.known_failures

    def missing(self, cap: Cap, device: str) -> tuple[Feature, ...]:
        """The features that ``cap`` needs on ``device`` and this machine lacks."""
        needed = (*DEVICE_NEEDS.get(device, ()), *CAP_NEEDS.get(cap, ()), *self.needs.get(cap, ()))
        return tuple(f for f in needed if f.device == device and not f.available)

    def missing_reason(self, cap: Cap, device: str) -> str | None:
        """Why ``cap`` cannot run on ``device`` here, naming each missing feature, or None."""
        missing = self.missing(cap, device)
        return "; ".join(f.missing_reason() for f in missing) if missing else None

    def config(self, size: str = "tiny", **overrides: Any) -> Any:
        if size not in self.sizes:
            raise ValueError(
                f"model {self.name!r} has no size {size!r}; sizes: {sorted(self.sizes)}"
            )
        return dataclasses.replace(self.sizes[size], **overrides)

    def create(self, size: str = "tiny", **overrides: Any) -> nn.Module:
        return self.build(self.config(size, **overrides))

    def inputs(
        self, cfg: Any, batch_size: int, *, seed: int = 0, **dims: int
    ) -> tuple[Tensor, ...]:
        """Deterministic example inputs: equal (cfg, batch_size, seed, dims) give equal tensors."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        allowed = self.dynamic_dims(cfg)
        for dim, value in dims.items():
            if dim not in allowed:
                raise ValueError(
                    f"model {self.name!r} has no dynamic dim {dim!r}; has {sorted(allowed)}"
                )
            lo, hi = allowed[dim]
            if not lo <= value <= hi:
                raise ValueError(f"{dim}={value} is outside [{lo}, {hi}] for model {self.name!r}")
        generator = torch.Generator().manual_seed(seed)
        return self.example_inputs(cfg, batch_size, generator, **dims)

    def make_targets(
        self, cfg: Any, inputs: tuple[Tensor, ...], *, seed: int = 0, **dims: int
    ) -> Tensor:
        """Deterministic targets for ``inputs`` (made with the same ``dims``), on their device,
        shaped for the ``prediction`` output."""
        shapes = output_shapes(self.output_shape(cfg, inputs[0].shape[0], **dims))
        shape = shapes[self.prediction]
        targets = self.targets(cfg, inputs, shape, torch.Generator().manual_seed(seed))
        return targets.to(inputs[0].device)


_REGISTRY: dict[str, ModelSpec] = {}


def _task_loss(task: Task, prediction: str, output: Output, targets: Tensor) -> Tensor:
    """The default loss of a model: its task's loss on the output it predicts with."""
    return task.loss(output_tensors(output)[prediction], targets)


def register_model(
    **spec_fields: Any,
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Register the decorated builder under its function name; see ``ModelSpec`` for the fields."""

    def decorator(builder: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        missing = {"tiny", "full", spec_fields.get("quick_size", "full")} - set(
            spec_fields.get("sizes", {})
        )
        if missing:
            raise ValueError(f"model {name!r} lacks sizes {sorted(missing)}")
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        caps = frozenset(spec_fields.pop("caps", ())) | {Cap.EAGER}
        for field in ("known_failures", "needs"):
            stray = set(spec_fields.get(field, {})) - caps
            if stray:
                raise ValueError(f"model {name!r}: {field} {sorted(stray)} are not declared caps")
        task = spec_fields.setdefault("task", CLASSIFICATION)
        if task is DETECTION and not (spec_fields.get("targets") and spec_fields.get("loss")):
            raise ValueError(f"model {name!r}: a detection model declares its targets and loss")
        spec_fields["targets"] = spec_fields.get("targets") or task.targets
        spec_fields["loss"] = spec_fields.get("loss") or functools.partial(
            _task_loss, task, spec_fields.get("prediction", "")
        )
        if spec_fields.get("min_train_batch", 1) < 1:
            raise ValueError(f"model {name!r}: min_train_batch must be >= 1")
        _REGISTRY[name] = ModelSpec(
            name=name, build=builder, summary=summary, caps=caps, **spec_fields
        )
        return builder

    return decorator


def _load_models() -> None:
    """Built-in models first, then plugins (``impl.plugins``): both register on import."""
    from impl.models import import_families
    from impl.plugins import load_plugins

    import_families()
    load_plugins()


def list_models(
    *, family: str | None = None, caps: frozenset[Cap] | set[Cap] = frozenset()
) -> list[str]:
    """Registered model names, sorted; optionally one family, or those declaring all ``caps``."""
    _load_models()
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if (family is None or spec.family == family) and set(caps) <= spec.caps
    )


def get_spec(name: str) -> ModelSpec:
    """The spec of a model; an unknown name raises ``UnknownModelError`` with suggestions.

    A name already registered (its family imported alone, as by the instructions kind's counting
    process) is looked up without importing every other family."""
    if name not in _REGISTRY:
        _load_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        if close:  # the list of every model would bury the likely one
            raise UnknownModelError(
                f"unknown model {name!r}; did you mean {', '.join(close)}?"
            ) from None
        raise UnknownModelError(
            f"unknown model {name!r} (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def create_model(name: str, size: str = "tiny", **overrides: Any) -> nn.Module:
    """Build a registered model at a named size, with config fields overridden by keyword."""
    return get_spec(name).create(size, **overrides)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@no_gradcheck("moves tensors between devices and dtypes: no computation to check")
def cast_inputs(
    inputs: tuple[Tensor, ...], device: torch.device | str, dtype: torch.dtype
) -> tuple[Tensor, ...]:
    """Move inputs to ``device``; floating inputs also take ``dtype`` (token ids stay integer)."""
    return tuple(
        x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device=device)
        for x in inputs
    )
