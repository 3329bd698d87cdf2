"""pytest-benchmark JSON files written by the tests, shaped as ``torchgauge run`` writes them.

The history, comparison and dashboard checks need runs whose truth they know: which benchmarks
changed and by how much, on which machine. ``benchmark_json`` writes such a file: per benchmark,
per-round times drawn around a chosen median, with a chosen between-run factor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

THIS_MACHINE = {
    "cpu_model": "AMD EPYC 7B13",
    "cpu_capability": "AVX2",
    "usable_cpus": 2,
    "gpu": None,
}
OTHER_MACHINE = {
    "cpu_model": "Intel Xeon Platinum 8480+",
    "cpu_capability": "AVX512",
    "usable_cpus": 16,
    "gpu": None,
}


@dataclass(frozen=True)
class Bench:
    """One benchmark case of a synthetic run."""

    model: str
    median_s: float
    kind: str = "inference"
    backend: str = "eager"
    batch_size: int = 1
    device: str = "cpu"
    flops: int | None = None

    @property
    def case(self) -> str:
        return f"{self.kind}-{self.model}.full-{self.device}-{self.backend}-b{self.batch_size}"


def benchmark_json(
    path: Path,
    run_id: str,
    benches: list[Bench],
    *,
    seed: int,
    factor: float | dict[str, float] = 1.0,
    spread: float = 0.02,
    rounds: int = 50,
    machine: dict | None = None,
    threads: int = 2,
    commit: str = "a" * 40,
    started: str = "2026-11-23T10:00:00+00:00",
    matmul_peak_gflops: float = 100.0,
) -> Path:
    """Write a torchgauge-shaped ``benchmark.json`` to ``path``.

    Each benchmark's rounds are lognormal around ``median_s x factor`` (``factor`` per case id,
    or one for all), with a within-run spread of ``spread`` (sd of the log).
    """
    rng = np.random.default_rng(seed)
    machine = {**THIS_MACHINE, **(machine or {})}
    entries = []
    for bench in benches:
        scale = factor.get(bench.case, 1.0) if isinstance(factor, dict) else factor
        data = bench.median_s * scale * np.exp(rng.normal(0.0, spread, rounds))
        q1, median, q3 = np.percentile(data, [25, 50, 75])
        stats = {
            "min": float(data.min()),
            "max": float(data.max()),
            "mean": float(data.mean()),
            "stddev": float(data.std(ddof=1)),
            "rounds": rounds,
            "median": float(median),
            "iqr": float(q3 - q1),
            "q1": float(q1),
            "q3": float(q3),
            "iterations": 1,
            "ops": float(1 / data.mean()),
            "total": float(data.sum()),
            "data": [float(x) for x in data],
        }
        extra = {
            "kind": bench.kind,
            "model": bench.model,
            "size": "full",
            "device": bench.device,
            "backend": bench.backend,
            "batch_size": bench.batch_size,
            "phase": "inference",
            "precision": "float32",
            "threads": threads,
            "flops": bench.flops,
        }
        entries.append(
            {
                "group": None,
                "name": f"bench_inference[{bench.case}]",
                "fullname": f"bench/bench_inference.py::bench_inference[{bench.case}]",
                "params": {"case": bench.case},
                "param": bench.case,
                "extra_info": extra,
                "options": {"timer": "perf_counter"},
                "stats": stats,
            }
        )
    data = {
        "machine_info": {
            "node": "test-host",
            "python_version": "3.11.7",
            "torchgauge": {
                **machine,
                "torch": "2.14.1",
                "torch_cuda": None,
                "threads": threads,
                "matmul_peak_gflops": {"cpu": {"float32": matmul_peak_gflops}},
            },
        },
        "commit_info": {"id": commit, "dirty": False, "branch": "main"},
        "benchmarks": entries,
        "datetime": started,
        "version": "5.1.0",
        "torchgauge": {"run_id": run_id, "outcomes": []},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
