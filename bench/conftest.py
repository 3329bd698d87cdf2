"""pytest-benchmark wiring: options, the case matrix from the registry, and machine info.

Plain ``pytest bench/ --benchmark-only --benchmark-json=out.json`` benchmarks every case;
``--bench-models``, ``--bench-sizes``, ``--bench-devices``, ``--bench-backends`` and
``--bench-batch-sizes`` narrow it. With ``--benchmark-disable`` each body runs once (smoke test).
"""

from __future__ import annotations

import os
import platform

import pytest
import torch

from bench.cases import BenchCase, BenchConfigError, bench_cases, split_names
from bench.prepared import PreparedModels

DEFAULT_THREADS = os.cpu_count() or 1


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


def _selected_cases(config: pytest.Config) -> list[BenchCase]:
    try:
        batch_sizes = [int(b) for b in split_names(config.getoption("--bench-batch-sizes")) or []]
        return bench_cases(
            models=split_names(config.getoption("--bench-models")),
            sizes=split_names(config.getoption("--bench-sizes")) or ["full"],
            devices=split_names(config.getoption("--bench-devices")),
            backends=split_names(config.getoption("--bench-backends")),
            batch_sizes=batch_sizes,
        )
    except (BenchConfigError, ValueError) as error:
        raise pytest.UsageError(f"torchgauge: {error}") from None


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("--bench-threads")
    if threads < 1:
        raise pytest.UsageError(f"torchgauge: --bench-threads must be at least 1, got {threads}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = _selected_cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


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
    """Record what the numbers depend on: library versions, threads, CPU and GPU."""
    import onnxruntime

    cuda = torch.cuda.is_available()
    machine_info["torchgauge"] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "onnxruntime": onnxruntime.__version__,
        "threads": config.getoption("--bench-threads"),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": machine_info.get("cpu", {}).get("brand_raw") or platform.processor(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
