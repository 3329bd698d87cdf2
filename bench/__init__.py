"""torchgauge benchmarks: pytest-benchmark suites generated from the registry, a runner and reports."""
