"""The technique registry: one declaration per technique of the curriculum (catalog §2).

A technique module, ``impl/techniques/<module>.py``, holds the reference implementation and
declares each technique it implements with ``register_technique``: its name (the catalog id), the
curriculum reference, a category, a one-line summary and the library API the checks hold it to.
Its checks live in ``checks/techniques/test_<module>.py``, each test named after its technique, so
``pytest -k lr_plateau`` selects one technique's checks and ``torchgauge list --techniques`` says
where everything is.

A declaration can also name what generic checks need (``checks/techniques/test_generated.py``):
losses, whose reductions must be what their documentation says, and schedulers, which must keep
the optimizer's parameter groups as they found them.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[2]
CATALOG_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class Category(StrEnum):
    INIT = "initialisation"
    REGULARISATION = "regularisation"
    TRAINING = "training control"
    LOSS = "losses"
    NUMERICS = "numerics"
    MODULE = "modules"
    CHECKPOINTING = "checkpointing and logging"
    DEPLOYMENT = "deployment"


@dataclass(frozen=True, kw_only=True)
class LossCase:
    """A loss whose ``reduction`` argument the generated checks hold to its documentation.

    ``make(generator)`` returns ``(loss, inputs)``: ``loss(*inputs, reduction=r)`` for r in
    none/mean/sum. "none" has ``elementwise_shape`` (the batch shape); "sum" is the sum of "none";
    "mean" is that sum divided by ``mean_divisor(inputs)`` (the element count by default; a
    class-weighted cross entropy divides by the summed weights of the targets).
    """

    name: str
    make: Callable[[torch.Generator], tuple[Callable[..., Tensor], tuple[Tensor, ...]]]
    elementwise_shape: Callable[[tuple[Tensor, ...]], tuple[int, ...]]
    mean_divisor: Callable[[tuple[Tensor, ...]], float] | None = None


@dataclass(frozen=True, kw_only=True)
class TechniqueSpec:
    """What ``torchgauge list --techniques``, the README and the generated checks know of one
    technique."""

    name: str  # the catalog §2 id, e.g. "lr_plateau"
    category: Category
    curriculum: str  # where the curriculum teaches it, e.g. "000 §11.5; 002 Q69"
    summary: str  # one line
    api: str  # the library API the checks hold it to, e.g. "torch.optim.lr_scheduler.StepLR"
    module: str  # the declaring module, e.g. "impl.techniques.schedules" (filled in)
    # other modules holding part of the implementation (a model's layer, e.g. hand-written BN)
    also_in: tuple[str, ...] = ()
    bugs: tuple[str, ...] = ()  # catalog §5 bugs whose seed code a check shows failing, "B03"
    losses: tuple[LossCase, ...] = ()
    # name -> (optimizer -> scheduler); the generated checks step each on a two-group optimizer
    schedulers: Mapping[str, Callable[[torch.optim.Optimizer], Any]] = field(default_factory=dict)

    @property
    def implementation(self) -> tuple[str, ...]:
        """Source files, relative to the repository root."""
        return tuple(module_path(m) for m in (self.module, *self.also_in))

    @property
    def checks(self) -> str:
        """The check file, relative to the repository root."""
        return f"checks/techniques/test_{self.module.rsplit('.', 1)[-1]}.py"


_REGISTRY: dict[str, TechniqueSpec] = {}


def module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


class UnknownTechniqueError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register_technique(**fields: Any) -> TechniqueSpec:
    """Declare a technique from the module that implements it; returns the spec."""
    name = fields["name"]
    if not name or set(name) - CATALOG_ID_CHARS:
        raise ValueError(f"technique name {name!r} must be a catalog id (lower case, digits, _)")
    if name in _REGISTRY:
        raise ValueError(f"technique {name!r} is registered twice")
    caller = inspect.currentframe().f_back  # the declaring module's frame (no source read)
    fields.setdefault("module", caller.f_globals["__name__"])
    fields["category"] = Category(fields["category"])
    spec = TechniqueSpec(**fields)
    _REGISTRY[name] = spec
    return spec


def _load_techniques() -> None:
    """Import every module of ``impl.techniques`` (each declares its techniques on import)."""
    import impl.techniques as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def list_techniques(*, category: Category | str | None = None) -> list[str]:
    """Registered technique names, sorted by category then name; optionally one category."""
    _load_techniques()
    order = list(Category)
    specs = sorted(_REGISTRY.values(), key=lambda s: (order.index(s.category), s.name))
    return [s.name for s in specs if category is None or s.category == Category(category)]


def get_technique(name: str) -> TechniqueSpec:
    _load_techniques()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(_REGISTRY)}"
        raise UnknownTechniqueError(f"unknown technique {name!r}; {hint}") from None


def techniques_markdown() -> str:
    """The README's technique table (``torchgauge list --techniques --markdown``); a check holds
    the README to it."""
    lines = [
        "| technique | category | curriculum | checked against | bugs shown | code | checks |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in list_techniques():
        spec = get_technique(name)
        code = "<br>".join(f"`{path}`" for path in spec.implementation)
        lines.append(
            f"| `{name}` | {spec.category.value} | {spec.curriculum} | {spec.api} | "
            f"{', '.join(spec.bugs) or '—'} | {code} | `{spec.checks}` |"
        )
    return "\n".join(lines)
