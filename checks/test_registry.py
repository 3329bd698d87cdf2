"""Registry invariants: every model module registers, specs are complete, lookups fail clearly."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

import impl.models
from impl import Cap, UnknownModelError, count_parameters, create_model, get_spec, list_models
from impl.backends import get_backend, list_backends
from impl.registry import register_model
from impl.tasks import DETECTION, output_shapes

MODELS = list_models()
MODEL_DIR = Path(impl.models.__file__).parent
TINY_PARAM_BUDGET = 100_000  # keeps the checks fast on two CPU cores


def _registered_in(path: Path) -> set[str]:
    """Names of functions decorated with @register_model in one source file."""
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register_model"
            for d in node.decorator_list
        )
    }


def test_every_model_module_registers_what_it_defines() -> None:
    modules = sorted(p for p in MODEL_DIR.glob("*.py") if not p.name.startswith("_"))
    assert modules, "no model modules found"
    declared = set()
    for path in modules:
        names = _registered_in(path)
        assert names, f"{path.name} registers no model"
        declared |= names
    assert declared == {name for name in MODELS if get_spec(name).builtin}


@pytest.mark.parametrize("declared", [{}, {"loss": sum}, {"targets": lambda *args: None}])
def test_a_detection_model_must_declare_its_targets_and_loss(declared: dict) -> None:
    """Detection has no default loss or targets: registering without both fails, and registers
    nothing."""

    def detector_without_a_loss(cfg):
        """A detector that forgot its declarations."""

    fields = {"family": "detection", "sizes": {"tiny": None, "full": None}, "task": DETECTION}
    with pytest.raises(ValueError, match="a detection model declares its targets and loss"):
        register_model(**fields, **declared, example_inputs=None, output_shape=None)(
            detector_without_a_loss
        )
    assert "detector_without_a_loss" not in list_models()


@pytest.mark.parametrize("name", MODELS)
def test_spec_is_complete(name: str) -> None:
    spec = get_spec(name)
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert {"tiny", "full"} <= set(spec.sizes)
    if spec.builtin:  # a plugin's own model need not come from the curriculum
        assert re.fullmatch(r"00[0-4] (Q\d+|§[\d.]+)", spec.curriculum), spec.curriculum
    assert spec.summary, "the builder needs a one-line docstring"
    assert Cap.EAGER in spec.caps
    assert set(spec.known_failures) <= spec.caps and set(spec.needs) <= spec.caps
    outputs = output_shapes(spec.output_shape(spec.config("tiny"), 1))
    assert set(spec.device_dependent_outputs) <= set(outputs), "name outputs the model returns"
    assert spec.full_params, "record the full size's parameter count"
    assert count_parameters(spec.create("tiny")) <= TINY_PARAM_BUDGET


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(
        UnknownModelError,
        match=r"^unknown model 'mlp_784'; did you mean mlp_784_128_10, mlp_784_256_10_act, \w+\?$",
    ):
        get_spec("mlp_784")
    with pytest.raises(UnknownModelError, match=r"unknown model 'zzz' \(known: "):
        create_model("zzz")


def test_unknown_size_and_bad_dims_are_rejected() -> None:
    spec = get_spec(MODELS[0])
    with pytest.raises(ValueError, match="has no size 'huge'"):
        spec.config("huge")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        spec.inputs(spec.config(), 0)
    with pytest.raises(ValueError, match="has no dynamic dim 'nonsense'"):
        spec.inputs(spec.config(), 1, nonsense=3)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_input_shape_fails_with_the_expected_shape_in_the_message(name: str) -> None:
    spec = get_spec(name)
    cfg = spec.config()
    x, *others = spec.inputs(cfg, 2)
    wrong = x.unsqueeze(0)  # one dimension too many on the first input
    with pytest.raises(ValueError, match=r"expected .*\(B, .*got \["):
        spec.create()(wrong, *others)


def test_list_models_filters_by_capability_and_family() -> None:
    assert list_models(caps={Cap.EAGER}) == MODELS
    for name in list_models(caps={Cap.ONNX}):
        assert Cap.ONNX in get_spec(name).caps
    for name in list_models(family="recurrent"):
        assert get_spec(name).family == "recurrent"


def test_backends_are_declared_once_with_known_capabilities() -> None:
    names = list_backends()
    assert len(names) == len(set(names)) and "eager" in names
    for name in names:
        backend = get_backend(name)
        assert backend.requires in set(Cap) and set(backend.devices) <= {"cpu", "cuda"}
    with pytest.raises(KeyError, match="unknown backend 'onnx'; did you mean onnxruntime"):
        get_backend("onnx")


def test_cast_inputs_keeps_token_ids_integer() -> None:
    from impl import cast_inputs

    ids, image = torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)
    out_ids, out_image = cast_inputs((ids, image), "cpu", torch.float64)
    assert out_ids.dtype == torch.long and out_image.dtype == torch.float64
