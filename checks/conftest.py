"""Hypothesis profiles, device helpers and markers shared by every check.

Profiles: ``ci`` (derandomised, bounded, no database; the default when CI is set), ``dev``
(the default otherwise: random, bounded) and ``thorough`` (many examples, for users hunting
counterexamples). Select one with ``--hypothesis-profile NAME`` or ``TORCHGAUGE_PROFILE=NAME``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from impl.machine import CUDA

_COMMON = {
    "deadline": None,  # the first call of a torch op is slow (lazy init); timing belongs in bench/
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile(
    "ci", max_examples=25, derandomize=True, database=None, print_blob=True, **_COMMON
)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("TORCHGAUGE_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the ``slow`` checks first, so that the longest (one valgrind process, a few minutes)
    runs beside the others on pytest-xdist rather than alone at the end; skip every
    ``cuda``-marked test, with the reason, where there is no GPU."""
    items.sort(key=lambda item: "slow" not in item.keywords)  # stable: otherwise as collected
    if CUDA.available:
        return
    skip = pytest.mark.skip(reason=CUDA.missing_reason())
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _commands_are_not_xdist_workers():
    """pytest-xdist (``nox -s checks`` runs the checks on every CPU) marks its workers'
    environment with ``PYTEST_XDIST_*``; a ``torchgauge`` or ``pytest`` command a check starts
    would inherit it, and pytest-benchmark disables itself in what it takes for a worker. The
    commands a check starts are a user's, so they get the environment without it."""
    marks = {
        name: os.environ.pop(name) for name in list(os.environ) if name.startswith("PYTEST_XDIST_")
    }
    yield
    os.environ.update(marks)


@pytest.fixture(autouse=True)
def _fixed_threads():
    """Every check runs with the same intra-op thread count, whatever the host has (1 core or 16):
    tolerances were set at this count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
