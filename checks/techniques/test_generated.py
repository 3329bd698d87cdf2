"""Checks generated from the technique registry (``impl/techniques/registry.py``).

Findability: every technique's code and check file exist, and ``pytest -k <technique>`` selects
checks of it; every curriculum bug a technique declares has a check named after it. Then the shape
invariants the declarations ask for: a loss reduces as its ``reduction`` documents, and a learning
-rate scheduler keeps the optimizer's parameter groups and scales every group alike.
"""

from __future__ import annotations

import ast
import functools
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from impl.techniques.registry import (
    ROOT,
    LossCase,
    get_technique,
    list_techniques,
    techniques_markdown,
)

TECHNIQUES = list_techniques()


@functools.cache
def _test_names(path: str) -> tuple[str, ...]:
    tree = ast.parse((ROOT / path).read_text())
    return tuple(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    )


@pytest.mark.parametrize("name", TECHNIQUES)
def test_a_technique_names_its_code_and_checks_and_they_exist(name: str) -> None:
    spec = get_technique(name)
    for path in (*spec.implementation, spec.checks):
        assert (ROOT / path).is_file(), f"{name}: {path} does not exist"
    assert spec.summary and "\n" not in spec.summary and spec.curriculum and spec.api


@pytest.mark.parametrize("name", TECHNIQUES)
def test_pytest_k_with_a_techniques_name_selects_its_checks(name: str) -> None:
    spec = get_technique(name)
    named = [test for test in _test_names(spec.checks) if name in test]
    assert named, f"no test in {spec.checks} has {name!r} in its name"


@pytest.mark.parametrize(
    ("name", "bug"), [(name, bug) for name in TECHNIQUES for bug in get_technique(name).bugs]
)
def test_each_curriculum_bug_a_technique_declares_has_a_check_named_after_it(
    name: str, bug: str
) -> None:
    spec = get_technique(name)
    assert re.fullmatch(r"B\d{2}b?", bug), f"{name}: {bug!r} is not a catalog bug id"
    pattern = re.compile(rf"(^|_){bug.lower()}($|_)")
    assert any(name in test and pattern.search(test) for test in _test_names(spec.checks)), (
        f"no test in {spec.checks} is named after both {name!r} and {bug.lower()!r}"
    )


def test_every_technique_module_declares_a_technique_and_every_check_file_has_one() -> None:
    declared = {get_technique(n).module.rsplit(".", 1)[-1] for n in TECHNIQUES}
    modules = {p.stem for p in (ROOT / "impl/techniques").glob("*.py")} - {"__init__", "registry"}
    assert modules - declared == set(), "technique modules that declare no technique"
    checks = {p.stem.removeprefix("test_") for p in (ROOT / "checks/techniques").glob("test_*.py")}
    assert checks - declared - {"generated"} == set(), "check files of no technique"


def test_the_readme_table_is_the_registry() -> None:
    """``torchgauge list --techniques --markdown`` prints it; paste it over the README's."""
    assert techniques_markdown() in (ROOT / "README.md").read_text()


# --- losses: reductions as documented ---

LOSSES = {f"{name}-{case.name}": case for name in TECHNIQUES for case in get_technique(name).losses}


@pytest.mark.parametrize("key", sorted(LOSSES))
@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1))
def test_losses_reduce_as_documented(key: str, seed: int) -> None:
    case: LossCase = LOSSES[key]
    loss, inputs = case.make(torch.Generator().manual_seed(seed))
    none = loss(*inputs, reduction="none")
    assert tuple(none.shape) == tuple(case.elementwise_shape(inputs))
    divisor = case.mean_divisor(inputs) if case.mean_divisor else none.numel()
    torch.testing.assert_close(loss(*inputs, reduction="sum"), none.sum())
    torch.testing.assert_close(loss(*inputs, reduction="mean"), none.sum() / divisor)


# --- schedulers: parameter groups kept, each group scheduled on its own ---

SCHEDULERS = {
    f"{name}-{label}": make
    for name in TECHNIQUES
    for label, make in get_technique(name).schedulers.items()
}
GROUPS = ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.02, "weight_decay": 1e-3})


def _optimizer(*groups: dict) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": nn.Linear(3, 2).parameters(), **g} for g in groups])


def _epoch(optimizer: torch.optim.Optimizer, scheduler) -> None:
    optimizer.step()
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(1.0)  # a metric that never improves
    else:
        scheduler.step()


@pytest.mark.parametrize("key", sorted(SCHEDULERS))
def test_schedulers_keep_the_parameter_groups_and_schedule_each_on_its_own(key: str) -> None:
    """12 epochs on a two-group optimizer: the same groups, the same tensors in each, every
    hyperparameter but lr untouched, and each group's lr what the scheduler gives an optimizer
    holding that group alone."""
    optimizer = _optimizer(*GROUPS)
    scheduler = SCHEDULERS[key](optimizer)
    alone = [_optimizer(group) for group in GROUPS]
    alone_schedulers = [SCHEDULERS[key](o) for o in alone]
    before = [
        ({k: v for k, v in g.items() if k not in ("lr", "params")}, list(g["params"]))
        for g in optimizer.param_groups
    ]
    for _ in range(12):
        _epoch(optimizer, scheduler)
        for o, s in zip(alone, alone_schedulers, strict=True):
            _epoch(o, s)
        assert len(optimizer.param_groups) == len(GROUPS)
        for group, (hyper, params), single in zip(
            optimizer.param_groups, before, alone, strict=True
        ):
            assert group["params"] == params  # the same tensors, in order
            assert {k: v for k, v in group.items() if k not in ("lr", "params")} == hyper
            assert group["lr"] == pytest.approx(single.param_groups[0]["lr"], rel=1e-12)
