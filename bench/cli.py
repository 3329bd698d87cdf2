"""The ``torchgauge`` command: list the registry, run benchmarks, collate reports.

    torchgauge list [--plugin MODULE]
    torchgauge machine
    torchgauge run [--kinds KINDS] [--models NAMES] [--device cpu|cuda] [--quick] [--out DIR]
                   [--plugin MODULE]
    torchgauge run --resume RUN_DIR
    torchgauge report FILES... [--out DIR]

Bad input (an unknown model, CUDA without a GPU, a missing or corrupt JSON file, a plugin that does
not import) prints one line ``torchgauge: error: ...`` and exits with 2, before anything is
written. ``run`` exits with 0 when every case passed or was skipped on this machine, 1 when some
case failed, crashed or timed out, and 130 when interrupted (its run can then be resumed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.cases import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_KINDS,
    KINDS,
    BenchConfigError,
    bench_cases,
    split_names,
)
from bench.measure import matmul_peaks
from bench.report import OUTPUT_FILES, ReportError, collate, write_report
from bench.runner import (
    DEFAULT_CASE_TIMEOUT_S,
    OUTPUTS,
    RunDir,
    RunError,
    RunSettings,
    check_same_machine,
    run_cases,
)
from impl import get_spec, list_models
from impl.backends import get_backend, list_backends
from impl.machine import machine_info, usable_cpus
from impl.plugins import PLUGINS_ENV, PluginError, env_plugins

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
QUICK_OPTIONS = ("--benchmark-max-time=0.1", "--benchmark-min-rounds=5", "--bench-warmup=3")
FULL_OPTIONS = ("--benchmark-max-time=1.0", "--benchmark-min-rounds=30", "--bench-warmup=10")
# ``run`` options that choose what to run; a resumed run keeps what it started with
SELECTION_OPTIONS = (
    "kinds",
    "models",
    "device",
    "backends",
    "sizes",
    "batch_sizes",
    "threads",
    "quick",
    "out",
    "plugin",
)


class UsageError(Exception):
    """Reported as one line and exit code 2."""


def new_run_id(device: str, parent: Path) -> str:
    """``YYYYMMDDTHHMMSSZ-<device>``, with a counter if that directory exists already."""
    base = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{device}"
    run_id, n = base, 1
    while (parent / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def use_plugins(modules: list[str] | None) -> None:
    """Add ``--plugin`` modules to ``TORCHGAUGE_PLUGINS`` (which benchmark workers inherit) and
    load every plugin now, so that a broken one is bad input. As with ``python -m``, modules in
    the current directory are importable."""
    if modules:
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys([*env_plugins(), *modules]))
    if env_plugins() and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        list_models()
    except PluginError as error:
        raise UsageError(str(error)) from None


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models():
        spec = get_spec(name)
        backends = [b for b in list_backends() if spec.supports(get_backend(b).requires)]
        kinds = [
            kind.name
            for kind in KINDS.values()
            if any(b in backends for b in kind.backends())
            and (kind.requires is None or spec.supports(kind.requires))
        ]
        rows.append(
            (
                name,
                spec.family,
                spec.task.name,
                spec.curriculum or "-",
                f"{spec.full_params:,}" if spec.full_params else "-",
                ",".join(sorted(spec.sizes)),
                spec.quick_size,
                ",".join(backends),
                ",".join(kinds),
                spec.summary,
            )
        )
    header = (
        "model",
        "family",
        "task",
        "curriculum",
        "full params",
        "sizes",
        "quick size",
        "backends",
        "kinds",
        "summary",
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        )
    return 0


def cmd_machine(args: argparse.Namespace) -> int:
    """What every run records about this machine, and which probed features it has."""
    for key, value in machine_info().items():
        print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def _benchmark_machine_info(threads: int, device: str | None = None) -> dict:
    """pytest-benchmark's machine_info, with ours under "torchgauge" as its hook adds it; with a
    device, also that device's matmul peak (measured now, a second or two)."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    ours = machine_info(threads)
    if device is not None:
        ours["matmul_peak_gflops"] = matmul_peaks([device], threads)
    return {**pytest_benchmark_generate_machine_info(), "torchgauge": ours}


def cmd_run(args: argparse.Namespace) -> int:
    if args.case_timeout is not None and args.case_timeout <= 0:
        raise UsageError(f"--case-timeout must be positive, got {args.case_timeout:g}")
    if args.resume:
        return _resume(args)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    device = args.device or "cpu"
    try:
        batch_sizes = [int(b) for b in split_names(args.batch_sizes) or DEFAULT_BATCH_SIZES]
    except ValueError:
        raise UsageError(f"--batch-sizes takes integers, got {args.batch_sizes!r}") from None
    try:
        cases = bench_cases(
            models=split_names(args.models),
            sizes=split_names(args.sizes) or (None if args.quick else ["full"]),
            devices=[device],
            backends=split_names(args.backends),
            batch_sizes=batch_sizes,
            kinds=split_names(args.kinds),
            quick=args.quick,
        )
    except BenchConfigError as error:
        raise UsageError(str(error)) from None
    if not cases:
        raise UsageError(
            "the selection has no benchmark cases (no model supports those kinds and backends)"
        )
    settings = RunSettings(
        device=device,
        threads=args.threads or usable_cpus(),
        timing=QUICK_OPTIONS if args.quick else FULL_OPTIONS,
        case_timeout_s=args.case_timeout or DEFAULT_CASE_TIMEOUT_S,
        plugins=tuple(env_plugins()),
    )
    from pytest_benchmark.utils import get_commit_info

    out = Path(args.out or "reports/runs")
    out.mkdir(parents=True, exist_ok=True)
    run = RunDir.create(
        out / new_run_id(device, out),
        cases,
        settings,
        machine=_benchmark_machine_info(settings.threads, device),
        commit=get_commit_info(),
    )
    skipped = sum(case.skip is not None for case in cases)
    print(
        f"torchgauge: run {run.path.name}: {len(cases)} cases ({skipped} skipped on this "
        f"machine) -> {run.path}",
        file=sys.stderr,
    )
    return _execute(run)


def _resume(args: argparse.Namespace) -> int:
    given = [f"--{name}" for name in SELECTION_OPTIONS if getattr(args, name) not in (None, False)]
    if given:
        raise UsageError(
            f"--resume continues a run with its own selection; drop {', '.join(given)}"
        )
    try:
        run = RunDir.open(Path(args.resume))
        if run.meta["state"] == "complete":
            raise RunError(f"{run.path} is complete: every case has a result")
        check_same_machine(run, _benchmark_machine_info(run.settings.threads))
    except RunError as error:
        raise UsageError(str(error)) from None
    if args.case_timeout:
        run.meta["settings"]["case_timeout_s"] = args.case_timeout
        run.save()
    done = len(run.journal.results())
    print(
        f"torchgauge: resume {run.path.name}: {done} of {len(run.cases)} cases have results; "
        f"running the other {len(run.cases) - done}",
        file=sys.stderr,
    )
    return _execute(run)


def _execute(run: RunDir) -> int:
    """Run the cases; on Ctrl-C or SIGTERM, keep the journal and say how to resume."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        status = run_cases(run)
    except KeyboardInterrupt:
        done = len(run.journal.results())
        print(
            f"torchgauge: interrupted with {done} of {len(run.cases)} cases done; "
            f"finish with: torchgauge run --resume {run.path}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except RunError as error:
        raise UsageError(str(error)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts = Counter(r["status"] for r in run.journal.results().values())
    print(
        f"torchgauge: wrote {len(run.cases)} results "
        f"({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))}) "
        f"to {run.path}/ ({', '.join(OUTPUTS)})"
    )
    return status


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
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help=f"import MODULE, which registers models (repeatable; also ${PLUGINS_ENV})",
    )

    listing = commands.add_parser("list", parents=[plugins], help="print the model registry")
    listing.set_defaults(func=cmd_list)
    machine = commands.add_parser("machine", help="print what runs record about this machine")
    machine.set_defaults(func=cmd_machine, plugin=None)

    run = commands.add_parser(
        "run", parents=[plugins], help="run the benchmarks and write a report"
    )
    run.add_argument(
        "--kinds",
        help=f"comma-separated, from {', '.join(KINDS)} (default: {','.join(DEFAULT_KINDS)})",
    )
    run.add_argument(
        "--models", help="comma-separated model names (default: every registered model)"
    )
    run.add_argument("--device", choices=["cpu", "cuda"], help="default: cpu")
    run.add_argument(
        "--backends", help=f"comma-separated, from {', '.join(list_backends())} (default: all)"
    )
    run.add_argument("--sizes", help="comma-separated model sizes (default: full)")
    run.add_argument(
        "--batch-sizes",
        help=f"comma-separated (default: {','.join(map(str, DEFAULT_BATCH_SIZES))})",
    )
    run.add_argument(
        "--threads",
        type=int,
        help="intra-op threads for torch and onnxruntime (default: the CPUs this process may use)",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="short timing (0.1 s, >= 5 rounds per benchmark); each model at its quick size, and "
        "training, amp and profile at the largest batch only",
    )
    run.add_argument(
        "--case-timeout",
        type=float,
        metavar="SECONDS",
        help=f"kill a case that has no result after this long (default: "
        f"{DEFAULT_CASE_TIMEOUT_S:g}; the first case of a model includes the worker's start-up)",
    )
    run.add_argument("--out", help="directory that receives <run-id>/ (default: reports/runs)")
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="finish an interrupted run: run only the cases that have no result yet",
    )
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="collate pytest-benchmark JSON files into a report")
    report.add_argument(
        "files", nargs="+", help="pytest-benchmark JSON files (--benchmark-json output)"
    )
    report.add_argument("--out", help="output directory (default: reports/runs/<timestamp>-report)")
    report.add_argument("--force", action="store_true", help="replace a report already in --out")
    report.set_defaults(func=cmd_report, plugin=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        use_plugins(args.plugin)
        return args.func(args)
    except UsageError as error:
        print(f"torchgauge: error: {error}", file=sys.stderr)
        return EXIT_USAGE
