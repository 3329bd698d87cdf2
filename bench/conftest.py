"""pytest-benchmark wiring: options, the case matrix from the registry, and machine info.

Plain ``pytest bench/ --benchmark-only --benchmark-json=out.json`` benchmarks every case;
``--bench-models``, ``--bench-sizes``, ``--bench-devices``, ``--bench-backends`` and
``--bench-batch-sizes`` narrow it; ``--bench-cases`` picks cases by id (what ``torchgauge run``'s
workers do). With ``--benchmark-disable`` each body runs once (smoke test). A case that cannot
run on this machine is skipped with its reason, and listed in the JSON (``torchgauge.outcomes``).
"""

from __future__ import annotations

import pytest
import torch

from bench.cases import BenchCase, BenchConfigError, bench_cases, split_names
from bench.journal import outcome
from bench.prepared import PreparedModels
from impl import machine

DEFAULT_THREADS = machine.usable_cpus()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchgauge", "torchgauge benchmark selection")
    group.addoption("--bench-models", help="comma-separated model names (default: all registered)")
    group.addoption("--bench-sizes", default="full", help="comma-separated sizes (default: full)")
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


def _selected_cases(config: pytest.Config) -> list[BenchCase]:
    try:
        batch_sizes = [int(b) for b in split_names(config.getoption("--bench-batch-sizes")) or []]
        cases = bench_cases(
            models=split_names(config.getoption("--bench-models")),
            sizes=split_names(config.getoption("--bench-sizes")) or ["full"],
            devices=split_names(config.getoption("--bench-devices")),
            backends=split_names(config.getoption("--bench-backends")),
            batch_sizes=batch_sizes,
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
    if "case" in metafunc.fixturenames:
        metafunc.parametrize(
            "case",
            [
                pytest.param(case, id=case.id, marks=[pytest.mark.skip(reason=case.skip)])
                if case.skip
                else pytest.param(case, id=case.id)
                for case in _selected_cases(metafunc.config)
            ],
        )


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


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record what the numbers depend on: CPU capability, bf16, int8 engine, threads, GPU."""
    machine_info["torchgauge"] = machine.machine_info(config.getoption("--bench-threads"))


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    """Cases skipped on this machine are rows of the report too, with their reason."""
    output_json["torchgauge"] = {
        "outcomes": [
            outcome(case, "skipped", case.skip)
            for case in _selected_cases(config)
            if case.skip is not None
        ]
    }
