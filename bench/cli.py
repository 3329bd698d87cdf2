"""The ``torchgauge`` command: list the registry, run benchmarks, collate reports.

    torchgauge list [--plugin MODULE]
    torchgauge machine
    torchgauge run [--kinds KINDS] [--models NAMES] [--device cpu|cuda] [--quick] [--out DIR]
                   [--plugin MODULE]
    torchgauge run --resume RUN_DIR
    torchgauge report FILES... [--out DIR]
    torchgauge ingest FILES_OR_RUN_DIRS... [--db PATH]
    torchgauge history [--db PATH]
    torchgauge calibrate [--repeats N | --runs RUNS] [run options] [--db PATH]
    torchgauge compare BASE CAND [--metric seconds|instructions] [--by machine] [--out DIR]
    torchgauge dashboard [--db PATH] [--out DIR] [--baseline CONFIG]

Every finished ``run`` is recorded in the history database (``--db``, default
``reports/history.sqlite``); ``compare`` and ``calibrate`` read it.

Bad input (an unknown model, CUDA without a GPU, a missing or corrupt JSON file, a plugin that does
not import, a history file that is corrupt or not torchgauge's) prints one line
``torchgauge: error: ...`` and exits with 2, before anything is written. ``run`` exits with 0 when
every case passed or was skipped on this machine, 1 when some case failed, crashed or timed out,
and 130 when interrupted (its run can then be resumed). ``compare`` exits with 1 when it flags a
slow-down (a CI gate), 0 otherwise.
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
from typing import TYPE_CHECKING

import pandas as pd

from bench.history import DEFAULT_DB, History, HistoryError, RunRecord, parse_benchmark_json
from bench.report import OUTPUT_FILES, ReportError, collate, write_report

if TYPE_CHECKING:
    from bench.runner import RunDir

# The commands that read results only. They import neither torch nor the registries (3 s of
# start-up, most of what a report or a comparison takes): the commands that build models import
# them where they need them, and the run options' help, which names the kinds and backends, is
# built for the other commands only.
RESULT_COMMANDS = frozenset({"report", "ingest", "history", "compare", "dashboard"})

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


def split_names(value: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``; empty or None -> None (meaning: the default selection)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


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
    from impl import list_models
    from impl.plugins import PLUGINS_ENV, PluginError, env_plugins

    if modules:
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys([*env_plugins(), *modules]))
    if env_plugins() and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        list_models()
    except PluginError as error:
        raise UsageError(str(error)) from None


def _print_columns(header: tuple[str, ...], rows: list[tuple]) -> None:
    """Aligned columns; the last (a summary) is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        )


def cmd_list_techniques(args: argparse.Namespace) -> int:
    """The technique registry: where each technique is implemented and checked."""
    from impl.techniques.registry import get_technique, list_techniques, techniques_markdown

    if args.markdown:
        print(techniques_markdown())
        return 0
    rows = []
    for name in list_techniques():
        spec = get_technique(name)
        rows.append(
            (
                name,
                spec.category.value,
                spec.curriculum,
                ",".join(spec.bugs) or "-",
                " ".join(spec.implementation),
                spec.checks,
                spec.summary,
            )
        )
    header = ("technique", "category", "curriculum", "bugs", "implementation", "checks", "summary")
    _print_columns(header, rows)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench.cases import KINDS
    from impl import get_spec, list_models
    from impl.backends import get_backend, list_backends

    if args.techniques or args.markdown:
        if not args.techniques:
            raise UsageError("--markdown goes with --techniques")
        return cmd_list_techniques(args)
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
    _print_columns(header, rows)
    return 0


def cmd_machine(args: argparse.Namespace) -> int:
    """What every run records about this machine, and which probed features it has."""
    from impl.machine import machine_info

    for key, value in machine_info().items():
        print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def _benchmark_machine_info(threads: int, device: str | None = None) -> dict:
    """pytest-benchmark's machine_info, with ours under "torchgauge" as its hook adds it; with a
    device, also that device's matmul peak (measured now, a second or two)."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    from bench.measure import matmul_peaks
    from impl.machine import machine_info

    ours = machine_info(threads)
    if device is not None:
        ours["matmul_peak_gflops"] = matmul_peaks([device], threads)
    return {**pytest_benchmark_generate_machine_info(), "torchgauge": ours}


def open_history(args: argparse.Namespace, create: bool = True) -> History:
    """The ``--db`` history file, validated: a corrupt or foreign file is bad input."""
    try:
        return History.open(args.db or DEFAULT_DB, create=create)
    except HistoryError as error:
        raise UsageError(str(error)) from None


def check_history(args: argparse.Namespace) -> None:
    """Refuse a ``--db`` that exists and is not a torchgauge history before anything runs; a
    missing one is created when there is something to record."""
    if Path(args.db or DEFAULT_DB).exists():
        open_history(args, create=False).close()


def record_run(args: argparse.Namespace, run: RunDir) -> None:
    """Record a finished run in the history."""
    with open_history(args) as history:
        try:
            recorded = history.record_file(run.path / "benchmark.json")
        except HistoryError as error:
            raise UsageError(
                f"{error}; the run itself is complete: record it later with "
                f"`torchgauge ingest {run.path}`"
            ) from None
    print(f"torchgauge: recorded as run {recorded.run_id} in {history.path}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    if args.case_timeout is not None and args.case_timeout <= 0:
        raise UsageError(f"--case-timeout must be positive, got {args.case_timeout:g}")
    check_history(args)
    run = _resumed_run(args) if args.resume else _new_run(args)
    status = _execute(run)
    if status != EXIT_INTERRUPTED:
        record_run(args, run)
    return status


def _new_run(args: argparse.Namespace) -> RunDir:
    """A new run directory for the selection ``args`` names; the cases are not run yet."""
    from pytest_benchmark.utils import get_commit_info

    from bench.cases import DEFAULT_BATCH_SIZES, BenchConfigError, bench_cases
    from bench.runner import DEFAULT_CASE_TIMEOUT_S, RunDir, RunSettings
    from impl.machine import usable_cpus
    from impl.plugins import env_plugins

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
    return run


def _selection_given(args: argparse.Namespace) -> list[str]:
    """The ``run`` selection options given on the command line, as ``--name``."""
    return [f"--{name}" for name in SELECTION_OPTIONS if getattr(args, name) not in (None, False)]


def _resumed_run(args: argparse.Namespace) -> RunDir:
    from bench.runner import RunDir, RunError, check_same_machine

    if given := _selection_given(args):
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
    return run


def _execute(run: RunDir) -> int:
    """Run the cases; on Ctrl-C or SIGTERM, keep the journal and say how to resume."""
    from bench.runner import OUTPUTS, RunError, run_cases

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


def _parse_inputs(refs: list[str]) -> list[RunRecord | str]:
    """Each reference as a parsed JSON file (a file, or a run directory's benchmark.json) or, if
    it names no file, as a run reference for the history; every file is read before any is
    recorded, so one bad file records nothing."""
    parsed: list[RunRecord | str] = []
    for ref in refs:
        path = Path(ref)
        if path.is_dir():
            path = path / "benchmark.json"
            if not path.is_file():
                raise UsageError(
                    f"{ref}: a directory without benchmark.json (an unfinished run? "
                    f"`torchgauge run --resume {ref}`)"
                )
        if path.exists() or path.suffix == ".json":
            try:
                parsed.append(parse_benchmark_json(path))
            except ReportError as error:
                raise UsageError(str(error)) from None
        else:
            parsed.append(ref)
    return parsed


def _run_ids(history: History, parsed: list[RunRecord | str]) -> list[int]:
    """History run ids of ``_parse_inputs``' items: run references are resolved first, so that an
    unknown one records nothing, then parsed files are recorded, as ``ingest`` would."""
    try:
        ids = [history.resolve(item) for item in parsed if isinstance(item, str)]
        return list(
            dict.fromkeys(
                history.record(item).run_id if isinstance(item, RunRecord) else ids.pop(0)
                for item in parsed
            )
        )
    except HistoryError as error:
        raise UsageError(str(error)) from None


def cmd_ingest(args: argparse.Namespace) -> int:
    parsed = _parse_inputs(args.files)
    if missing := [item for item in parsed if isinstance(item, str)]:
        raise UsageError(f"{missing[0]}: no such file or run directory")
    with open_history(args) as history:
        for path, record in zip(args.files, parsed, strict=True):
            recorded = history.record(record)
            state = "recorded as" if recorded.new else "already recorded as"
            print(
                f"{path}: {state} run {recorded.run_id} ({recorded.source_key}, "
                f"{recorded.benchmarks} benchmarks)"
            )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with open_history(args, create=False) as history:
        runs = history.runs()
    if runs.empty:
        print(f"{history.path}: no runs recorded yet")
        return 0
    runs["commit"] = runs["commit_id"].str[:10]
    columns = ["id", "source_key", "started", "commit", "machine", "threads", "torch", "measured"]
    print(runs[columns].to_string(index=False))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench.comparison import calibrate_noise

    if args.repeats < 2:
        raise UsageError(f"--repeats must be at least 2 (A/A runs), got {args.repeats}")
    made: list[str] = []  # the A/A runs made here
    check_history(args)
    if args.runs:
        if given := _selection_given(args):
            raise UsageError(f"--runs calibrates recorded runs; drop {', '.join(given)}")
    else:
        for repeat in range(args.repeats):
            print(f"torchgauge: A/A run {repeat + 1} of {args.repeats}", file=sys.stderr)
            run = _new_run(args)
            status = _execute(run)
            if status == EXIT_INTERRUPTED:
                return status
            record_run(args, run)
            made.append(run.path.name)
    with open_history(args) as history:
        if args.runs:
            ids = _run_ids(history, _parse_inputs(split_names(args.runs) or []))
            if len(ids) < 2:
                raise UsageError("calibration needs at least 2 A/A runs")
            chosen = history.runs().set_index("id").loc[ids]
            commits = sorted(set(chosen["commit_id"].fillna("unknown")))
            if len(commits) > 1:
                raise UsageError(
                    "calibration needs A/A runs of the same code; these runs have commits "
                    + ", ".join(c[:10] for c in commits)
                )
        else:
            ids = [history.resolve(name) for name in made]
        noise = calibrate_noise(history.measurements(ids))
        if noise.empty:
            raise UsageError("the runs have no benchmark measured in two of them")
        history.save_noise(noise)
    pct = 100 * noise["sigma"]
    print(
        f"torchgauge: calibrated {len(noise)} benchmarks from runs {', '.join(map(str, ids))}: "
        f"between-run noise (sd of ln median) median {pct.median():.2f}%, 90th percentile "
        f"{pct.quantile(0.9):.2f}%, max {pct.max():.2f}%; {int((pct < 2).sum())} under 2%, "
        f"{int((pct < 5).sum())} under 5%; degrees of freedom {int(noise['df'].min())}"
        f"-{int(noise['df'].max())}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench import compare_report, hardware
    from bench.comparison import ComparisonError, compare

    if args.inject_slowdown is not None and args.inject_slowdown <= 0:
        raise UsageError(f"--inject-slowdown must be positive, got {args.inject_slowdown:g}")
    sides = [_parse_inputs(split_names(ref) or []) for ref in (args.base, args.cand)]
    files = any(isinstance(item, RunRecord) for side in sides for item in side)
    with open_history(args, create=files) as history:
        base_ids, cand_ids = (_run_ids(history, side) for side in sides)
        if not base_ids or not cand_ids:
            raise UsageError("BASE and CAND each need at least one run")
        runs = history.runs().set_index("id")
        base = history.measurements(base_ids, args.metric)
        cand = _slowed_down(history.measurements(cand_ids, args.metric), args.inject_slowdown)
        noise = history.noise()
        wall = None
        if args.by == "machine":
            every = pd.concat([base, cand])
            if every.empty:
                raise UsageError(f"the runs have no {args.metric} measurements")
            if base.empty and not args.baseline:
                raise UsageError(f"BASE has no {args.metric} measurements to be the baseline")
            baseline = args.baseline or hardware.configs(base)[0]
            try:
                table = hardware.speedups(every, baseline)
            except ValueError as error:
                raise UsageError(str(error)) from None
            parts = [
                compare_report.Part("Geometric-mean speed-up", hardware.geometric_means(table)),
                compare_report.Part(
                    "Geometric-mean speed-up per kind", hardware.geometric_means(table, ["kind"])
                ),
                compare_report.Part("Speed-up per benchmark", hardware.wide(table)),
            ]
            title = f"torchgauge machine comparison (baseline: {baseline})"
            header = [("baseline", baseline), ("metric", args.metric)]
            header += [("runs", ", ".join(map(str, base_ids + cand_ids)))]
            csv, status = table, 0
        else:
            try:
                table = compare(
                    base,
                    cand,
                    noise,
                    alpha=args.alpha,
                    min_change=args.min_change / 100,
                    resolution=args.resolution / 100,
                )
                if args.metric == "instructions":
                    wall = compare(
                        history.measurements(base_ids, "seconds"),
                        _slowed_down(
                            history.measurements(cand_ids, "seconds"), args.inject_slowdown
                        ),
                        noise,
                        alpha=args.alpha,
                        min_change=args.min_change / 100,
                        resolution=args.resolution / 100,
                    )
            except ComparisonError as error:
                raise UsageError(str(error)) from None
            parts = compare_report.run_comparison_parts(table, wall)
            title = f"torchgauge comparison ({args.metric})"
            header = [
                ("BASE", _describe_runs(runs, base_ids)),
                ("CAND", _describe_runs(runs, cand_ids)),
                ("machine", base["machine"].iloc[0]),
                *_differences(runs, base_ids, cand_ids),
                (
                    "between-run noise from",
                    ", ".join(
                        f"{source} for {n}"
                        for source, n in table["noise_source"].value_counts().items()
                    ),
                ),
                *(
                    [("injected", f"CAND's rounds x {args.inject_slowdown:g} (a power check)")]
                    if args.inject_slowdown
                    else []
                ),
                (
                    "flagged",
                    f"q <= {args.alpha:g} (Benjamini-Hochberg over {len(table)} benchmarks) and "
                    f"|change| >= {args.min_change:g}%",
                ),
            ]
            csv = table
            status = 1 if (table["verdict"] == "slower").any() else 0
    if args.out:
        written = compare_report.write_outputs(Path(args.out), title, header, parts, csv)
        print(f"torchgauge: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    print(compare_report.render_markdown(title, header, parts))
    return status


def _slowed_down(frame: pd.DataFrame, factor: float | None) -> pd.DataFrame:
    """CAND with every round multiplied by ``factor``: a power check of the comparison."""
    if factor is None:
        return frame
    return frame.assign(
        median=frame["median"] * factor, samples=[s * factor for s in frame["samples"]]
    )


def _describe_runs(runs: pd.DataFrame, ids: list[int]) -> str:
    return "; ".join(
        f"run {i} ({runs.at[i, 'source_key']}, commit {str(runs.at[i, 'commit_id'])[:10]}, "
        f"{runs.at[i, 'threads']} thread{'' if runs.at[i, 'threads'] == 1 else 's'})"
        for i in ids
    )


def _differences(runs: pd.DataFrame, base: list[int], cand: list[int]) -> list[tuple[str, str]]:
    """Settings that differ between the sides, which may explain a change."""
    found = []
    for column in ("threads", "torch", "torch_cuda", "commit_id"):
        before = sorted({str(v) for v in runs.loc[base, column]})
        after = sorted({str(v) for v in runs.loc[cand, column]})
        if before != after:
            found.append((f"differs: {column}", f"{', '.join(before)} -> {', '.join(after)}"))
    return found


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Write the static dashboard of the history: trends per benchmark and the hardware page."""
    from bench.dashboard import DEFAULT_OUT, DashboardError, write_dashboard

    with open_history(args, create=False) as history:
        try:
            written = write_dashboard(history, args.out or DEFAULT_OUT, args.baseline)
        except DashboardError as error:
            raise UsageError(str(error)) from None
    print(f"torchgauge: wrote {', '.join(str(path) for path in written)}")
    return 0


def registry_options(registry: bool) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The parent parsers of the commands that build models: ``--plugin``, and the run selection,
    whose help names the registries' kinds and backends. Without ``registry`` (for a command in
    ``RESULT_COMMANDS``, which parses none of these options) both are empty."""
    plugins = argparse.ArgumentParser(add_help=False)
    selection = argparse.ArgumentParser(add_help=False)
    if not registry:
        return plugins, selection
    from bench.cases import DEFAULT_BATCH_SIZES, DEFAULT_KINDS, KINDS
    from bench.runner import DEFAULT_CASE_TIMEOUT_S
    from impl.backends import list_backends
    from impl.plugins import PLUGINS_ENV

    plugins.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help=f"import MODULE, which registers models (repeatable; also ${PLUGINS_ENV})",
    )
    selection.add_argument(
        "--kinds",
        help=f"comma-separated, from {', '.join(KINDS)} (default: {','.join(DEFAULT_KINDS)})",
    )
    selection.add_argument(
        "--models", help="comma-separated model names (default: every registered model)"
    )
    selection.add_argument("--device", choices=["cpu", "cuda"], help="default: cpu")
    selection.add_argument(
        "--backends", help=f"comma-separated, from {', '.join(list_backends())} (default: all)"
    )
    selection.add_argument("--sizes", help="comma-separated model sizes (default: full)")
    selection.add_argument(
        "--batch-sizes",
        help=f"comma-separated (default: {','.join(map(str, DEFAULT_BATCH_SIZES))})",
    )
    selection.add_argument(
        "--threads",
        type=int,
        help="intra-op threads for torch and onnxruntime (default: the CPUs this process may use)",
    )
    selection.add_argument(
        "--quick",
        action="store_true",
        help="short timing (0.1 s, >= 5 rounds per benchmark); each model at its quick size, and "
        "training, amp and profile at the largest batch only",
    )
    selection.add_argument(
        "--case-timeout",
        type=float,
        metavar="SECONDS",
        help=f"kill a case that has no result after this long (default: "
        f"{DEFAULT_CASE_TIMEOUT_S:g}; the first case of a model includes the worker's start-up)",
    )
    selection.add_argument(
        "--out", help="directory that receives <run-id>/ (default: reports/runs)"
    )
    return plugins, selection


def build_parser(registry: bool = True) -> argparse.ArgumentParser:
    """The command line; ``registry=False`` leaves out the options of the commands that build
    models (see ``registry_options``)."""
    parser = argparse.ArgumentParser(prog="torchgauge", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plugins, selection = registry_options(registry)

    listing = commands.add_parser(
        "list", parents=[plugins], help="print the model registry (or --techniques)"
    )
    listing.add_argument(
        "--techniques",
        action="store_true",
        help="the technique registry instead: where each is implemented and checked",
    )
    listing.add_argument(
        "--markdown", action="store_true", help="with --techniques: the README's table"
    )
    listing.set_defaults(func=cmd_list)
    machine = commands.add_parser("machine", help="print what runs record about this machine")
    machine.set_defaults(func=cmd_machine, plugin=None)

    history = argparse.ArgumentParser(add_help=False)
    history.add_argument(
        "--db", metavar="PATH", help=f"the history database (default: {DEFAULT_DB})"
    )
    run = commands.add_parser(
        "run",
        parents=[plugins, selection, history],
        help="run the benchmarks, write a report and record the run in the history",
    )
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
    report.set_defaults(func=cmd_report)

    ingest = commands.add_parser(
        "ingest", parents=[history], help="record pytest-benchmark JSON files in the history"
    )
    ingest.add_argument(
        "files", nargs="+", help="pytest-benchmark JSON files or torchgauge run directories"
    )
    ingest.set_defaults(func=cmd_ingest)

    listing_runs = commands.add_parser(
        "history", parents=[history], help="list the runs the history holds"
    )
    listing_runs.set_defaults(func=cmd_history)

    calibrate = commands.add_parser(
        "calibrate",
        parents=[plugins, selection, history],
        help="measure each benchmark's between-run noise from A/A runs and store it",
    )
    calibrate.add_argument(
        "--repeats", type=int, default=3, help="A/A runs to make with the selection (default: 3)"
    )
    calibrate.add_argument(
        "--runs",
        metavar="RUNS",
        help="calibrate from these recorded runs of one commit instead (comma-separated ids, "
        "run names, run directories or JSON files)",
    )
    calibrate.set_defaults(func=cmd_calibrate)

    compare = commands.add_parser(
        "compare",
        parents=[history],
        help="compare runs per benchmark; exit 1 when a slow-down is flagged",
    )
    compare.add_argument(
        "base", help="BASE: comma-separated run ids, run names, run directories or JSON files"
    )
    compare.add_argument("cand", help="CAND: the same forms")
    compare.add_argument(
        "--metric",
        choices=["seconds", "instructions"],
        default="seconds",
        help="wall-clock seconds per call (default) or callgrind instruction counts (the "
        "`instructions` kind), shown beside the same workloads' wall-clock comparison",
    )
    compare.add_argument(
        "--by",
        choices=["run", "machine"],
        default="run",
        help="run: BASE against CAND (default); machine: speed-ups of every machine "
        "configuration among the runs against the baseline (BASE's, or --baseline)",
    )
    compare.add_argument("--baseline", help="with --by machine: the baseline configuration")
    compare.add_argument(
        "--alpha", type=float, default=0.01, help="false discovery rate of flagged changes"
    )
    compare.add_argument(
        "--min-change",
        type=float,
        default=2.0,
        metavar="PCT",
        help="never flag a change under this many percent (default: 2)",
    )
    compare.add_argument(
        "--resolution",
        type=float,
        default=10.0,
        metavar="PCT",
        help="'no change' only where the comparison could see a change this large (default: 10)",
    )
    compare.add_argument(
        "--inject-slowdown",
        type=float,
        metavar="FACTOR",
        help="multiply CAND's rounds by FACTOR before comparing: which benchmarks would a "
        "slow-down of that size flag? (a power check of the comparison on your machine)",
    )
    compare.add_argument("--out", help="also write comparison.md, .html and .csv here")
    compare.set_defaults(func=cmd_compare)

    dashboard = commands.add_parser(
        "dashboard",
        parents=[history],
        help="write a static HTML dashboard of the history (trends, hardware comparison)",
    )
    dashboard.add_argument(
        "--out", metavar="DIR", help="output directory (default: reports/dashboard)"
    )
    dashboard.add_argument(
        "--baseline",
        metavar="CONFIG",
        help="the hardware page's initial baseline configuration, or a unique part of its name "
        "(default: the first recorded)",
    )
    dashboard.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(registry=command not in RESULT_COMMANDS).parse_args(argv)
    try:
        if args.command not in RESULT_COMMANDS:
            use_plugins(args.plugin)
        return args.func(args)
    except UsageError as error:
        print(f"torchgauge: error: {error}", file=sys.stderr)
        return EXIT_USAGE
