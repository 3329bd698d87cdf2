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
from impl.tasks import (
    BINARY,
    CLASSIFICATION,
    LANGUAGE_MODEL,
    REGRESSION,
    Task,
    class_logits_shape,
    output_shapes,
    output_tensors,
    scalar_shape,
)

__all__ = [
    "BINARY",
    "CLASSIFICATION",
    "LANGUAGE_MODEL",
    "REGRESSION",
    "Task",
    "class_logits_shape",
    "output_shapes",
    "output_tensors",
    "scalar_shape",
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
