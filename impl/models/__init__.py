"""The model families, one module each; a family registers its models when it is imported.

Importing this package imports no family. ``impl.registry`` imports every family the first time
models are listed or an unregistered name is looked up, so ``get_spec`` and ``list_models`` see
them all; a process that needs one model may import its family alone
(``spec.build.__module__``). The instructions kind counts a model in a process under valgrind,
where each import runs 50 times slower: torchvision's import alone (it imports
``torch._dynamo``) costs about 50 s there, and most families do not need it.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.cache
def family_modules() -> tuple[str, ...]:
    """Every family module, ``impl.models.<family>``: the package's modules not named ``_*``."""
    return tuple(
        f"{__name__}.{module.name}"
        for module in pkgutil.iter_modules(__path__)
        if not module.name.startswith("_")
    )


def import_families() -> None:
    """Import every family module, registering every built-in model."""
    for module in family_modules():
        importlib.import_module(module)
