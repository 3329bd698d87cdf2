"""The ``torchgauge`` command: list the registry, run benchmarks, collate reports.

    torchgauge list
    torchgauge run [--models NAMES] [--device cpu|cuda] [--quick] [--out DIR]
    torchgauge report FILES... [--out DIR]

Bad input (an unknown model, CUDA without a GPU, a missing or corrupt JSON file) prints one line
``torchgauge: error: ...`` and exits with 2, before anything is written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import bench
from bench.cases import BenchConfigError, bench_cases, split_names
from bench.report import OUTPUT_FILES, ReportError, collate, write_report
from impl import get_spec, list_models
from impl.backends import get_backend, list_backends

EXIT_USAGE = 2
BENCH_DIR = Path(bench.__file__).parent
QUICK_OPTIONS = ["--benchmark-max-time=0.1", "--benchmark-min-rounds=5", "--bench-warmup=3"]
FULL_OPTIONS = ["--benchmark-max-time=1.0", "--benchmark-min-rounds=30", "--bench-warmup=10"]


class UsageError(Exception):
    """Reported as one line and exit code 2."""


def new_run_id(device: str, parent: Path) -> str:
    """``YYYYMMDDTHHMMSSZ-<device>``, with a counter if that directory exists already."""
    base = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{device}"
    run_id, n = base, 1
    while (parent / run_id).exists() or (parent / f".{run_id}.partial").exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


class Progress:
    """A pytest plugin that prints one line per finished benchmark: [k/n] id, median, outcome."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream, self.total, self.done, self.start = stream, 0, 0, time.perf_counter()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)
        print(f"torchgauge: {self.total} benchmarks to run", file=self.stream, flush=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        """Silence pytest's progress dots for finished tests: this plugin prints a line instead."""
        if report.when == "call":
            return report.outcome, "", report.outcome.upper()
        return None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        self.done += 1
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        stats = getattr(getattr(fixture, "stats", None), "stats", None)
        median = f"median {stats.median * 1e3:9.4f} ms" if stats is not None else " " * 22
        elapsed = time.perf_counter() - self.start
        width = len(str(self.total))
        print(
            f"[{self.done:>{width}}/{self.total}] {elapsed:6.1f}s  {median}  {report.outcome:<7} "
            f"{item.callspec.id if hasattr(item, 'callspec') else item.name}",
            file=self.stream,
            flush=True,
        )


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models():
        spec = get_spec(name)
        backends = [b for b in list_backends() if spec.supports(get_backend(b).requires)]
        rows.append(
            (
                name,
                spec.family,
                spec.curriculum,
                f"{spec.full_params:,}",
                ",".join(sorted(spec.sizes)),
                ",".join(backends),
                spec.summary,
            )
        )
    header = ("model", "family", "curriculum", "full params", "sizes", "backends", "summary")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    models = split_names(args.models)
    backends = split_names(args.backends)
    sizes = split_names(args.sizes) or ["full"]
    try:
        cases = bench_cases(models=models, sizes=sizes, devices=[args.device], backends=backends)
    except BenchConfigError as error:
        raise UsageError(str(error)) from None
    if not cases:
        raise UsageError("the selection has no benchmark cases (no model supports those backends)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(args.device, out)
    staging, final = out / f".{run_id}.partial", out / run_id
    staging.mkdir()
    raw = staging / "benchmark.json"
    pytest_args = [
        str(BENCH_DIR),
        f"--rootdir={BENCH_DIR.parent}",
        "-p",
        "no:cacheprovider",
        "-o",
        "python_files=bench_*.py",  # also when installed without this repo's pyproject
        "-o",
        "python_functions=bench_*",
        "-q",
        "--no-header",
        "--benchmark-only",
        f"--benchmark-json={raw}",
        "--benchmark-columns=median,iqr,ops,rounds",
        "--benchmark-sort=name",
        f"--bench-devices={args.device}",
        f"--bench-sizes={','.join(sizes)}",
        f"--bench-models={','.join(sorted({c.model for c in cases}))}",
        f"--bench-backends={','.join(sorted({c.backend for c in cases}))}",
        *(QUICK_OPTIONS if args.quick else FULL_OPTIONS),
    ]
    if args.threads:
        pytest_args.append(f"--bench-threads={args.threads}")
    print(f"torchgauge: run {run_id}: {len(cases)} cases -> {final}", file=sys.stderr)
    try:
        status = pytest.main(pytest_args, plugins=[Progress()])
        if status != 0 or not raw.is_file():
            shutil.rmtree(staging, ignore_errors=True)
            print(
                f"torchgauge: error: the benchmark run failed (pytest exit code {int(status)}); "
                "nothing was kept",
                file=sys.stderr,
            )
            return 1
        frame = collate([raw])
        write_report(frame, staging)
    except BaseException:  # interrupted or crashed: leave no half-written run behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(final)  # the run appears whole, or not at all
    print(
        f"torchgauge: wrote {len(frame)} results to {final}/ "
        f"({', '.join(OUTPUT_FILES)}, benchmark.json)"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = (
        Path(args.out)
        if args.out
        else Path("reports/runs") / new_run_id("report", Path("reports/runs"))
    )
    if out.exists() and any((out / name).exists() for name in OUTPUT_FILES) and not args.force:
        raise UsageError(
            f"{out} already holds a report; choose another --out or pass --force to replace it"
        )
    try:
        frame = collate(args.files)
    except ReportError as error:
        raise UsageError(str(error)) from None
    write_report(frame, out)
    print(
        f"torchgauge: wrote {len(frame)} results from {len(args.files)} file(s) "
        f"to {out}/ ({', '.join(OUTPUT_FILES)})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchgauge", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="print the model registry").set_defaults(func=cmd_list)

    run = commands.add_parser("run", help="run the benchmarks and write a report")
    run.add_argument(
        "--models", help="comma-separated model names (default: every registered model)"
    )
    run.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    run.add_argument(
        "--backends", help=f"comma-separated, from {', '.join(list_backends())} (default: all)"
    )
    run.add_argument("--sizes", help="comma-separated model sizes (default: full)")
    run.add_argument(
        "--threads",
        type=int,
        help="intra-op threads for torch and onnxruntime (default: CPU count)",
    )
    run.add_argument(
        "--quick", action="store_true", help="short timing (0.1 s, >= 5 rounds per benchmark)"
    )
    run.add_argument(
        "--out",
        default="reports/runs",
        help="directory that receives <run-id>/ (default: reports/runs)",
    )
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="collate pytest-benchmark JSON files into a report")
    report.add_argument(
        "files", nargs="+", help="pytest-benchmark JSON files (--benchmark-json output)"
    )
    report.add_argument("--out", help="output directory (default: reports/runs/<timestamp>-report)")
    report.add_argument("--force", action="store_true", help="replace a report already in --out")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"torchgauge: error: {error}", file=sys.stderr)
        return EXIT_USAGE
