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
    run beside the others on pytest-xdist rather than alone at the end; skip every
    ``cuda``-marked test, with the reason, where there is no GPU.

    The tests of an ``xdist_group`` (they share a module fixture that runs processes: a valgrind
    run, a benchmark run) come first of all: ``--dist=worksteal`` gives the first worker the
    first half of the queue and steals from the end, so they run together on one worker, and
    the fixture once. ``--dist=loadgroup`` would group them but, on pytest 9.2, silently does not
    (pytest-xdist#1386)."""
    # stable: otherwise as collected
    items.sort(
        key=lambda item: (not item.get_closest_marker("xdist_group"), "slow" not in item.keywords)
    )
    _run_after_what_they_reuse(items)
    if CUDA.available:
        return
    skip = pytest.mark.skip(reason=CUDA.missing_reason())
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _run_after_what_they_reuse(items: list[pytest.Item]) -> None:
    """Move each test marked ``reuses("test_name[id]")`` right after that test of its module.

    The two then read the same module-scoped artifact (an ONNX export: seconds for a large
    model) on one worker: ``--dist=worksteal`` hands out runs of the queue, so neighbours share
    a worker unless a steal falls between them. The id may name the test's parameters, as in
    ``"test_backend_matches_eager[{name}-onnxruntime]"``; a test whose leader is not collected
    keeps its place."""
    followers: dict[str, list[pytest.Item]] = {}
    for item in items:
        if marker := item.get_closest_marker("reuses"):
            params = item.callspec.params if hasattr(item, "callspec") else {}
            leader = f"{item.nodeid.split('::')[0]}::{marker.args[0].format(**params)}"
            followers.setdefault(leader, []).append(item)
    collected = {item.nodeid for item in items}
    moved = {id(f) for leader, group in followers.items() if leader in collected for f in group}
    if not moved:
        return
    ordered: list[pytest.Item] = []

    def place(item: pytest.Item) -> None:  # a follower may lead in turn
        ordered.append(item)
        for follower in followers.get(item.nodeid, []):
            place(follower)

    for item in items:
        if id(item) not in moved:
            place(item)
    items[:] = ordered


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
    tolerances were set at this count. One thread: ``nox -s checks`` runs one pytest-xdist worker
    per CPU, and a second OpenMP thread per worker would oversubscribe the CPUs (on the 2-core
    machine, two threads made the deepest model's overfitting check 3x slower beside a busy
    worker, not faster). Parallel kernels are the benchmarks' business."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def ieee_float32():
    """float32 math in IEEE precision on CUDA for one check: cuDNN's convolutions and RNNs default
    to TF32 (10 mantissa bits, about 1e-3 relative), which a float32 parity check must not mistake
    for a kernel's error. Restored afterwards."""
    settings = [torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn]
    before = [s.fp32_precision for s in settings]
    for backend in settings:
        backend.fp32_precision = "ieee"
    yield
    for backend, precision in zip(settings, before, strict=True):
        backend.fp32_precision = precision
