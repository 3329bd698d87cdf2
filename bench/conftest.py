"""pytest-benchmark wiring: options, the case matrix from the registry, and machine info.

Plain ``pytest bench/ --benchmark-only --benchmark-json=out.json`` benchmarks every case of the
default kinds; ``--bench-kinds``, ``--bench-models``, ``--bench-sizes``, ``--bench-devices``,
``--bench-backends`` and ``--bench-batch-sizes`` narrow it, ``--bench-quick`` takes the selection of
``torchgauge run --quick``; ``--bench-cases`` picks cases by id
(what ``torchgauge run``'s workers do). Each ``bench_*.py`` module names the kinds its body
measures (``KINDS``) and gets their cases. With ``--benchmark-disable`` each body runs once (smoke
test). A case that cannot run on this machine is skipped with its reason, and listed in the JSON
(``torchgauge.outcomes``). The JSON's machine info includes this machine's measured matmul peak
per device and precision, the base of each row's % of peak.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cases import KINDS, BenchCase, BenchConfigError, bench_cases
from bench.cli import split_names
from bench.journal import outcome
from bench.measure import matmul_peaks
from bench.prepared import PreparedModels
from impl import machine

DEFAULT_THREADS = machine.usable_cpus()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchgauge", "torchgauge benchmark selection")
    group.addoption(
        "--bench-kinds",
        help=f"comma-separated, from {', '.join(KINDS)} (default: all but compile)",
    )
    group.addoption("--bench-models", help="comma-separated model names (default: all registered)")
    group.addoption("--bench-sizes", help="comma-separated sizes (default: full)")
    group.addoption(
        "--bench-quick",
        action="store_true",
        help="the selection of `torchgauge run --quick`: each model at its quick size unless "
        "--bench-sizes names sizes, throughput kinds at the largest batch only",
    )
    group.addoption("--bench-devices", help="cpu,cuda (default: cpu, plus cuda when available)")
    group.addoption("--bench-backends", help="comma-separated backends (default: all)")
    group.addoption("--bench-batch-sizes", default="1,32", help="comma-separated (default: 1,32)")
    group.addoption(
        "--bench-threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch and onnxruntime intra-op threads (default: {DEFAULT_THREADS}, the CPU count)",
    )
    group.addoption(
        "--bench-warmup", type=int, default=10, help="untimed calls before timing (default: 10)"
    )
    group.addoption("--bench-cases", help="comma-separated case ids: run only these")
    group.addoption(
        "--bench-trace-dir",
        help="where the profile kind writes TensorBoard traces, a subdirectory per case "
        "(default: a temporary directory)",
    )


SELECTED = pytest.StashKey[list[BenchCase]]()


def _selected_cases(config: pytest.Config) -> list[BenchCase]:
    """The selection, worked out once per session: each benchmark module, the machine-info hook
    and the JSON hook all read it."""
    if SELECTED not in config.stash:
        config.stash[SELECTED] = _select(config)
    return config.stash[SELECTED]


def _select(config: pytest.Config) -> list[BenchCase]:
    try:
        batch_sizes = [int(b) for b in split_names(config.getoption("--bench-batch-sizes")) or []]
        quick = config.getoption("--bench-quick")
        cases = bench_cases(
            models=split_names(config.getoption("--bench-models")),
            sizes=split_names(config.getoption("--bench-sizes")) or (None if quick else ["full"]),
            devices=split_names(config.getoption("--bench-devices")),
            backends=split_names(config.getoption("--bench-backends")),
            batch_sizes=batch_sizes,
            kinds=split_names(config.getoption("--bench-kinds")),
            quick=quick,
        )
    except (BenchConfigError, ValueError) as error:
        raise pytest.UsageError(f"torchgauge: {error}") from None
    wanted = split_names(config.getoption("--bench-cases"))
    if wanted is None:
        return cases
    unknown = set(wanted) - {case.id for case in cases}
    if unknown:
        raise pytest.UsageError(f"torchgauge: no such cases in the selection: {sorted(unknown)}")
    return [case for case in cases if case.id in wanted]


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("--bench-threads")
    if threads < 1:
        raise pytest.UsageError(f"torchgauge: --bench-threads must be at least 1, got {threads}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each benchmark module gets the selected cases of the kinds it declares in ``KINDS``."""
    if "case" in metafunc.fixturenames:
        kinds = metafunc.module.KINDS
        metafunc.parametrize(
            "case",
            [
                pytest.param(case, id=case.id, marks=[pytest.mark.skip(reason=case.skip)])
                if case.skip
                else pytest.param(case, id=case.id)
                for case in _selected_cases(metafunc.config)
                if case.kind in kinds
            ],
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A benchmark module none of whose kinds is selected has no cases: deselect its placeholder
    (pytest would report it as a skip named "got empty parameter set")."""
    empty = [
        item
        for item in items
        if hasattr(item, "callspec")
        and "case" in item.callspec.params
        and not isinstance(item.callspec.params["case"], BenchCase)
    ]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]


@pytest.fixture(scope="session", autouse=True)
def bench_threads(request: pytest.FixtureRequest) -> int:
    """Set the intra-op thread count explicitly for the whole session, and record it."""
    threads = request.config.getoption("--bench-threads")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield threads
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def prepared_models(tmp_path_factory: pytest.TempPathFactory, bench_threads: int) -> PreparedModels:
    return PreparedModels(tmp_path_factory.mktemp("artifacts"), bench_threads)


@pytest.fixture(scope="session")
def trace_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = request.config.getoption("--bench-trace-dir")
    return Path(chosen) if chosen else tmp_path_factory.mktemp("traces")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record what the numbers depend on: CPU capability, bf16, int8 engine, threads, GPU, and
    the matmul peak of each selected device (measured once, here)."""
    threads = config.getoption("--bench-threads")
    devices = sorted({case.device for case in _selected_cases(config)})
    machine_info["torchgauge"] = {
        **machine.machine_info(threads),
        "matmul_peak_gflops": matmul_peaks(devices, threads),
    }


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    """Cases skipped on this machine are rows of the report too, with their reason."""
    output_json["torchgauge"] = {
        "outcomes": [
            outcome(case, "skipped", case.skip)
            for case in _selected_cases(config)
            if case.skip is not None
        ]
    }
