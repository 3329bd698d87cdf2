"""Gradient checking of everything hand-written in ``impl``, generated from the declarations.

Two sources, no list kept by hand:
- every registered model, whole: its parameters and float inputs, through its outputs and its
  declared loss, in float64 (``ModelSpec.no_gradcheck`` says why where it cannot apply);
- every ``nn.Module`` subclass and tensor function defined in ``impl``, found by walking the
  package: each carries a declaration in ``impl.differentiable`` (a small case, run in exact mode,
  or the reason gradcheck cannot apply). A registered model's top-level class is covered by the
  first kind.

``torch.autograd.gradcheck`` compares autograd's Jacobian with central finite differences. Models
run in fast mode (a random projection u^T J v per input instead of the whole Jacobian, PyTorch's
``fast_mode``), the declared cases in exact mode (the whole Jacobian) while they stay small.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from impl.differentiable import (
    GradcheckCase,
    NoGradcheck,
    declaration,
    hand_written,
    module_as_function,
)
from impl.registry import cast_inputs, get_spec, list_models
from impl.tasks import output_tensors


@functools.cache
def _hand_written() -> dict[str, object]:
    return dict(hand_written())


@functools.cache
def _model_classes() -> dict[type, str]:
    """The top-level class of each registered model (its tiny size) -> a model's name."""
    return {type(get_spec(name).create("tiny")): name for name in reversed(list_models())}


def _declared(kind: type) -> list[str]:
    return [name for name, obj in _hand_written().items() if isinstance(declaration(obj), kind)]


def test_every_hand_written_module_and_tensor_function_declares_how_it_is_gradient_checked():
    undeclared = [
        name
        for name, obj in _hand_written().items()
        if declaration(obj) is None and obj not in _model_classes()
    ]
    assert not undeclared, (
        "declare @gradcheck_module, @gradcheck_function or @no_gradcheck (impl/differentiable.py) "
        f"on: {', '.join(undeclared)}"
    )


@pytest.mark.parametrize("name", _declared(NoGradcheck))
def test_an_exclusion_from_gradcheck_gives_its_reason(name: str) -> None:
    reason = declaration(_hand_written()[name]).reason
    assert len(reason.split()) >= 3 and "\n" not in reason, f"{name}: {reason!r}"


# Exact mode costs two forwards per checked input element and one backward per output element:
# past this many of both together the check projects instead, as for models.
EXACT_MODE_ELEMENTS = 400


def _numel(output: object) -> int:
    if isinstance(output, torch.Tensor):
        return output.numel() if output.is_floating_point() else 0
    if isinstance(output, tuple | list):
        return sum(_numel(o) for o in output)
    if isinstance(output, dict):
        return sum(_numel(o) for o in output.values())
    return 0


@pytest.mark.parametrize("name", _declared(GradcheckCase))
@settings(max_examples=2)
@given(seed=st.integers(0, 2**31 - 1))
def test_declared_gradients_match_finite_differences(name: str, seed: int) -> None:
    case = declaration(_hand_written()[name])
    fn, args = case.make(torch.Generator().manual_seed(seed))
    checked = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    assert checked, f"{name}: the case checks no input"
    assert all(a.dtype == torch.float64 for a in checked), f"{name}: gradcheck needs float64"
    elements = sum(a.numel() for a in checked) + _numel(fn(*args))
    assert torch.autograd.gradcheck(fn, args, fast_mode=elements > EXACT_MODE_ELEMENTS)


def _constant_embeddings(model: nn.Module) -> set[int]:
    """Embedding tables with a ``padding_idx``: autograd gives that row no gradient by design
    (it stays the padding vector), while a finite difference of it does move the output, so these
    tables are inputs held constant rather than checked."""
    return {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, nn.Embedding) and m.padding_idx is not None
    }


@pytest.mark.parametrize("name", list_models())
def test_model_gradients_match_finite_differences(name: str) -> None:
    spec = get_spec(name)
    if spec.no_gradcheck:
        pytest.skip(f"{name}: {spec.no_gradcheck}")
    cfg = spec.config("tiny")
    torch.manual_seed(0)  # the same weights whatever ran before in this worker
    model = spec.build(cfg).double().train()
    for p in model.parameters():
        if id(p) in _constant_embeddings(model):
            p.requires_grad_(False)
    inputs = cast_inputs(
        spec.inputs(cfg, max(2, spec.min_train_batch), seed=0), "cpu", torch.float64
    )
    targets = spec.make_targets(cfg, inputs, seed=0)
    if targets.is_floating_point():
        targets = targets.double()
    forward, params = module_as_function(model)
    inputs = tuple(x.requires_grad_(True) if x.is_floating_point() else x for x in inputs)

    def outputs_and_loss(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = forward(*args)
        floating = [t for t in output_tensors(output).values() if t.is_floating_point()]
        return (*floating, spec.loss(output, targets))

    assert torch.autograd.gradcheck(outputs_and_loss, (*params, *inputs), fast_mode=True)
