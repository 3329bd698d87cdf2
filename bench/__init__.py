"""torchgauge benchmarks: pytest-benchmark suites from the registry, a runner, reports."""
