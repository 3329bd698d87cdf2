"""Your own models: modules that call ``register_model``, found by entry point or by name.

A plugin is an importable module whose import registers models, exactly as ``impl/models/*.py``
do. torchgauge imports, once each and after its own models:

1. every entry point of the group ``torchgauge.models`` (a package declares, in pyproject.toml,
   ``[project.entry-points."torchgauge.models"] mine = "my_package.models"``);
2. every module named in ``TORCHGAUGE_PLUGINS`` (comma-separated, importable from ``sys.path``),
   which is also how ``torchgauge run --plugin MODULE`` reaches the benchmark workers.

Checks, benchmarks, ``torchgauge list`` and reports then treat those models like built-in ones.
A plugin that cannot be imported, or registers a name that is taken, raises ``PluginError``.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "torchgauge.models"
PLUGINS_ENV = "TORCHGAUGE_PLUGINS"


class PluginError(ImportError):
    """A plugin that cannot be loaded; the message names it and the cause, on one line."""


_outcomes: dict[str, PluginError | None] = {}  # each plugin is imported once: None, or its error


def env_plugins() -> list[str]:
    """Module names listed in ``TORCHGAUGE_PLUGINS``."""
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def load_plugins() -> None:
    """Import every plugin not yet imported: entry points first, then ``TORCHGAUGE_PLUGINS``."""
    for point in _entry_points():
        _load_once(f"entry point {point.name!r} ({point.value})", point.load)
    for module in env_plugins():
        _load_once(f"plugin {module!r}", lambda module=module: importlib.import_module(module))


@functools.cache
def _entry_points() -> tuple:
    """Installed packages do not change while we run: scan their metadata once."""
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def _load_once(key: str, load: Callable[[], object]) -> None:
    """Import a plugin the first time; a plugin that failed raises the same error every time."""
    if key not in _outcomes:
        try:
            load()
            _outcomes[key] = None
        except Exception as error:  # any failure of third-party code is reported, on one line
            reason = (str(error).splitlines() or [""])[0]
            _outcomes[key] = PluginError(
                f"{key} could not be loaded: {type(error).__name__}: {reason}"
            )
            _outcomes[key].__cause__ = error
    if _outcomes[key] is not None:
        raise _outcomes[key]
