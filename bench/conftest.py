"""pytest-benchmark wiring: options, the case matrix from the registry, and machine info.

Plain ``pytest bench/ --benchmark-only --benchmark-json=out.json`` benchmarks every case;
``--bench-models``, ``--bench-sizes``, ``--bench-devices``, ``--bench-backends`` and
``--bench-batch-sizes`` narrow it. With ``--benchmark-disable`` each body runs once (smoke test).
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path

import pytest
import torch

from bench.cases import BenchCase, BenchConfigError, bench_cases
from bench.measure import count_flops
from impl import get_spec
from impl.backends import Prepared, get_backend

DEFAULT_THREADS = os.cpu_count() or 1


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


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
        batch_sizes = [int(b) for b in _csv(config.getoption("--bench-batch-sizes")) or []]
        return bench_cases(
            models=_csv(config.getoption("--bench-models")),
            sizes=_csv(config.getoption("--bench-sizes")) or ["full"],
            devices=_csv(config.getoption("--bench-devices")),
            backends=_csv(config.getoption("--bench-backends")),
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


class PreparedModels:
    """Builds each model once per (model, size, device) and each backend once on top of it."""

    def __init__(self, workdir: Path, threads: int) -> None:
        self.workdir, self.threads = workdir, threads
        self._models: dict[tuple[str, str, str], torch.nn.Module] = {}
        self._runners: dict[tuple[str, str, str, str], Prepared] = {}
        self._flops: dict[tuple[str, str, int], int] = {}

    def model(self, case: BenchCase) -> torch.nn.Module:
        key = (case.model, case.size, case.device)
        if key not in self._models:
            torch.manual_seed(0)
            self._models[key] = get_spec(case.model).create(case.size).eval().to(case.device)
        return self._models[key]

    def flops(self, case: BenchCase, inputs: tuple[torch.Tensor, ...]) -> int:
        """FLOPs per call depend on the model and the batch, not on the backend: count once."""
        key = (case.model, case.size, case.batch_size)
        if key not in self._flops:
            self._flops[key] = count_flops(self.model(case), inputs)
        return self._flops[key]

    def runner(self, case: BenchCase) -> Prepared:
        key = (case.model, case.size, case.device, case.backend)
        if key not in self._runners:
            spec = get_spec(case.model)
            example = tuple(x.to(case.device) for x in spec.inputs(spec.config(case.size), 2))
            out = self.workdir / "-".join(key)
            out.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter progress and TorchScript deprecation
                self._runners[key] = get_backend(case.backend).prepare(
                    self.model(case), example, out, self.threads
                )
        return self._runners[key]


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
