"""How each hand-written module and tensor function in ``impl`` is gradient-checked.

Every ``nn.Module`` subclass defined in ``impl`` and every public function that takes and returns
tensors carries one declaration beside its definition: a decorator saying how to build a small
float64 instance and inputs for ``torch.autograd.gradcheck``, or why gradcheck cannot apply (an
integer output, a quantised module). ``checks/test_gradients.py`` finds them all by walking the
package, so a new module without a declaration fails a check, and runs each declared case.
A registered model's top-level module needs none: every registered model is gradient-checked
whole, from its registry declaration (``ModelSpec.no_gradcheck`` says why where it cannot be).

    @gradcheck_module(lambda: Swish(beta=1.5, trainable=True), lambda g: (randn(g, 4, 3),))
    class Swish(nn.Module): ...

    @gradcheck_function(lambda g: (randn(g, 6), torch.randint(0, 2, (6,), generator=g).double()),
                        wrt=(0,))
    def sigmoid_focal_loss(logits, targets, ...): ...
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")
Inputs = Callable[[torch.Generator], tuple[Any, ...]]


@dataclass(frozen=True)
class GradcheckCase:
    """A small float64 instance: ``make(generator)`` returns ``(fn, args)`` for
    ``torch.autograd.gradcheck(fn, args)``, which checks the args that require grad."""

    make: Callable[[torch.Generator], tuple[Callable[..., Any], tuple[Any, ...]]]
    note: str = ""


@dataclass(frozen=True)
class NoGradcheck:
    reason: str


Declaration = GradcheckCase | NoGradcheck
_DECLARED: dict[Any, Declaration] = {}


def _declare(obj: T, declaration: Declaration) -> T:
    if obj in _DECLARED:
        raise ValueError(f"{obj.__qualname__} has two gradcheck declarations")
    _DECLARED[obj] = declaration
    return obj


def randn(generator: torch.Generator, *shape: int) -> Tensor:
    """Standard normal float64 values: the usual gradcheck input."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def _checked(args: tuple[Any, ...], wrt: tuple[int, ...] | None) -> tuple[Any, ...]:
    """``args`` with grad required on the floating tensors at ``wrt`` (all floating by default)."""
    return tuple(
        a.requires_grad_(True)
        if isinstance(a, Tensor) and a.is_floating_point() and (wrt is None or i in wrt)
        else a
        for i, a in enumerate(args)
    )


def module_as_function(module: nn.Module) -> tuple[Callable[..., Any], tuple[Tensor, ...]]:
    """``module``'s forward as a function of (its trainable parameters, then its inputs), with
    the RNG reseeded before each call: random layers (Dropout) draw the same mask every time, so
    the function gradcheck differentiates numerically is the one autograd differentiates."""
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    params = tuple(
        p.detach().clone().requires_grad_(True) for p in module.parameters() if p.requires_grad
    )

    def call(*args: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(0)  # CPU; torch.manual_seed would also queue CUDA
            return torch.func.functional_call(
                module, dict(zip(names, args[: len(names)], strict=True)), args[len(names) :]
            )

    return call, params


def gradcheck_module(
    build: Callable[[], nn.Module],
    inputs: Inputs,
    *,
    wrt: tuple[int, ...] | None = None,
    note: str = "",
) -> Callable[[type[T]], type[T]]:
    """Declare a module class checked as ``build()`` in float64 and train mode on ``inputs``:
    every trainable parameter, and the floating inputs at positions ``wrt`` (all by default)."""

    def make(generator: torch.Generator) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        module = build().double().train()
        fn, params = module_as_function(module)
        return fn, (*params, *_checked(inputs(generator), wrt))

    def decorator(cls: type[T]) -> type[T]:
        return _declare(cls, GradcheckCase(make, note))

    return decorator


def gradcheck_function(
    inputs: Inputs,
    *,
    wrt: tuple[int, ...] | None = None,
    note: str = "",
    **kwargs: Any,
) -> Callable[[T], T]:
    """Declare a function checked on ``inputs(generator)`` (float64), keyword args ``kwargs``."""

    def decorator(fn: T) -> T:
        def make(generator: torch.Generator) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            return (lambda *args: fn(*args, **kwargs)), _checked(inputs(generator), wrt)

        return _declare(fn, GradcheckCase(make, note))

    return decorator


def no_gradcheck(reason: str) -> Callable[[T], T]:
    """Declare that gradcheck cannot apply, and why (one line)."""
    if not reason.strip():
        raise ValueError("no_gradcheck needs a reason")
    return lambda obj: _declare(obj, NoGradcheck(reason))


def declaration(obj: Any) -> Declaration | None:
    return _DECLARED.get(obj)


def _takes_and_returns_tensors(fn: Callable[..., Any]) -> bool:
    annotations = {k: str(v) for k, v in getattr(fn, "__annotations__", {}).items()}
    returned = annotations.pop("return", "")
    return "Tensor" in returned and any("Tensor" in a for a in annotations.values())


def hand_written(package: str = "impl") -> Iterator[tuple[str, Any]]:
    """Every ``nn.Module`` subclass defined in ``package`` and every public function there that
    takes a tensor and returns one: ``(qualified name, object)``, in module order."""
    root = importlib.import_module(package)
    names = [root.__name__] + [
        info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{root.__name__}.")
    ]
    for module_name in names:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module_name:
                continue
            if (
                inspect.isclass(obj)
                and issubclass(obj, nn.Module)
                or (
                    inspect.isfunction(obj)
                    and not name.startswith("_")
                    and _takes_and_returns_tensors(obj)
                )
            ):
                yield f"{module_name}.{name}", obj
