"""torchgauge reference implementations: ``impl.models`` and ``impl.techniques``."""

from impl.registry import (
    Cap,
    ModelSpec,
    UnknownModelError,
    cast_inputs,
    count_parameters,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "Cap",
    "ModelSpec",
    "UnknownModelError",
    "cast_inputs",
    "count_parameters",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
