"""Run benchmark cases in supervised worker processes, journaling each result as it happens.

``torchgauge run`` hands this module a run directory whose ``run.json`` lists the cases. Each
model's pending cases go to a fresh worker process (``bench.worker``), so one model's state,
memory and crashes do not touch the next. The supervisor follows the journal the worker writes:

- a case that raises is an ``error`` row (exception type and message) and the worker goes on;
- a case that runs past the case timeout is a ``timeout`` row: the worker is killed;
- a case during which the worker dies (segfault, abort, out-of-memory kill) is a ``crashed`` row
  with the signal;

and after either of the last two a new worker takes the model's remaining cases. Cases this
machine cannot run are ``skipped`` rows with their reason. Killed at any point, a run keeps what
it journaled; ``resume`` runs only the cases without a result and writes the same outputs.

Run directory::

    run.json        what to run and where it was started: cases, settings, machine, commit, state
    journal.jsonl   one line per case started and per result (bench.journal)
    worker.log      the workers' own output, for the detail behind a crash
    traces/<case>/  the profile kind's traces: tensorboard --logdir <run dir>/traces
    benchmark.json, results.csv, report.md, report.html, latency.png   once every case has a result
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any, TextIO

import bench
from bench.cases import BenchCase
from bench.journal import FAILED, Journal, outcome
from bench.report import OUTPUT_FILES, collate, write_report, write_text_atomically
from bench.worker import forked_main
from impl.models import family_modules
from impl.plugins import PLUGINS_ENV

RUN_FORMAT = 2  # 2: cases have a kind, a phase and a precision
BENCH_DIR = Path(bench.__file__).parent
POLL_S = 0.1  # how often the supervisor reads the journal and checks its worker
DEFAULT_CASE_TIMEOUT_S = 300.0
OUTPUTS = (*OUTPUT_FILES, "benchmark.json")  # what a complete run adds to its directory
# A fresh interpreter spends 4-5 s here importing these before a worker's first case: over a quick
# run's 41 models, about 3 of its 10 minutes. Workers are forked instead from multiprocessing's
# forkserver, a process that imports them once and does nothing else: no tensor op runs there, so
# no thread pool is forked. Each model still gets a new process: its own memory, its own crash.
WARM_MODULES = ["torch", "torchvision", *family_modules(), "pytest", "pytest_benchmark.plugin"]


class RunError(Exception):
    """A run directory that cannot be used (not a run, in use, from another machine, complete)."""


@dataclass(frozen=True)
class RunSettings:
    """How a run's cases are timed; stored in run.json so that a resumed run times them the same."""

    device: str
    threads: int
    timing: tuple[str, ...]  # pytest-benchmark options (rounds, max time, warm-up)
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S
    plugins: tuple[str, ...] = ()  # modules registering the plugin models among the cases


class RunDir:
    """One run's directory. ``create`` starts one, ``open`` takes an interrupted one back."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta
        self.journal = Journal(path / "journal.jsonl")

    @classmethod
    def create(
        cls,
        path: Path,
        cases: list[BenchCase],
        settings: RunSettings,
        machine: dict[str, Any],
        commit: dict[str, Any],
    ) -> RunDir:
        path.mkdir(parents=True)
        meta = {
            "format": RUN_FORMAT,
            "run_id": path.name,
            "created": datetime.now(UTC).isoformat(),
            "state": "running",
            "cwd": os.getcwd(),
            "settings": {**settings.__dict__, "timing": list(settings.timing)},
            "cases": [case._asdict() for case in cases],
            "machine_info": machine,
            "commit_info": commit,
        }
        run = cls(path, meta)
        run.save()
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        meta_path = path / "run.json"
        if not meta_path.is_file():
            raise RunError(f"{path} is not a torchgauge run directory (no run.json)")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != RUN_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {RUN_FORMAT}")
            run = cls(path, meta)
            if not run.cases or run.settings.threads < 1:  # both parse, and make sense
                raise ValueError("no cases or no threads")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RunError(f"{meta_path}: not a usable run description ({error})") from None
        return run

    @property
    def cases(self) -> list[BenchCase]:
        return [BenchCase(**case) for case in self.meta["cases"]]

    @property
    def settings(self) -> RunSettings:
        stored = self.meta["settings"]
        return RunSettings(**{**stored, "timing": tuple(stored["timing"])})

    def save(self) -> None:
        write_text_atomically(self.path / "run.json", json.dumps(self.meta, indent=2) + "\n")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run for this process (a lock on the directory itself, released even by
        kill -9); a second ``torchgauge`` on it fails at once."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(f"{self.path} is in use by another torchgauge process") from None
        try:
            yield
        finally:
            os.close(fd)


def check_same_machine(run: RunDir, machine: dict[str, Any]) -> None:
    """A resumed run must measure on the machine and software it started on."""
    before = run.meta["machine_info"].get("torchgauge", {})
    now = machine.get("torchgauge", {})
    keys = ("cpu_model", "cpu_capability", "torch", "gpu")
    changed = [
        f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k)
    ]
    if changed:
        raise RunError(
            f"{run.path} was started on another machine or software ({'; '.join(changed)}); "
            "start a new run instead"
        )


class Progress:
    """One line per finished case: [k/n] elapsed, median or reason, status, case id."""

    def __init__(self, total: int, done: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, done, stream
        self.start = time.perf_counter()

    def report(self, result: dict) -> None:
        self.done += 1
        stats = (result.get("benchmark") or {}).get("stats")
        detail = f"median {stats['median'] * 1e3:9.4f} ms" if stats else ""
        width = len(str(self.total))
        line = (
            f"[{self.done:>{width}}/{self.total}] {time.perf_counter() - self.start:6.1f}s  "
            f"{detail:<22}  {result['status']:<7}  {result['case']}"
        )
        if result["status"] != "passed":
            line += f"  ({result['reason']})"
        print(line, file=self.stream, flush=True)


def run_cases(run: RunDir, stream: TextIO = sys.stderr) -> int:
    """Run every case of ``run`` that has no result yet, then write the reports.

    Returns 0 if every case passed or was skipped on this machine, 1 if any failed.
    """
    with run.lock():
        run.journal.repair()
        done = run.journal.results()
        progress = Progress(len(run.cases), len(done), stream)
        for case in run.cases:
            if case.skip is not None and case.id not in done:
                result = {"record": "result", **outcome(case, "skipped", case.skip)}
                run.journal.append(result)
                progress.report(result)
        pending = [c for c in run.cases if c.id not in run.journal.results()]
        for _, group in groupby(pending, key=lambda case: case.model):
            _supervise(run, list(group), progress)
        finish(run)
    return 1 if any(r["status"] in FAILED for r in run.journal.results().values()) else 0


def _supervise(run: RunDir, cases: list[BenchCase], progress: Progress) -> None:
    """One model's cases: a worker at a time, until every case has a result."""
    remaining = cases
    while remaining:
        log = run.path / "worker.log"
        log_start = log.stat().st_size if log.exists() else 0
        code = _run_worker(run, remaining, progress, log_start)
        results = run.journal.results()
        left = [case for case in remaining if case.id not in results]
        if len(left) == len(remaining):  # the worker ran nothing: another would do the same
            last = (_new_output(log, log_start).strip().splitlines() or ["(no output)"])[-1]
            for case in left:
                reason = f"the worker exited with {_exit_text(code)} before this case: {last}"
                _record(run, progress, outcome(case, "error", reason, exit_code=code))
            left = []
        remaining = left


def _run_worker(run: RunDir, cases: list[BenchCase], progress: Progress, log_start: int) -> int:
    """Start a worker on ``cases`` and follow its journal until it exits or a case times out;
    record the case it died in or ran out of time in. Returns the worker's exit code."""
    settings = run.settings
    _, offset = run.journal.records()
    by_id = {case.id: case for case in cases}
    worker = _start_worker(run, cases)
    current: BenchCase | None = None  # the case the worker is in, per its last start record
    since = time.monotonic()  # the first case's clock includes the worker's start-up
    try:
        while True:
            exited = worker.exitcode is not None
            records, offset = run.journal.records(offset)
            for record in records:
                if record["record"] == "start":
                    current, since = by_id[record["case"]], time.monotonic()
                elif record["record"] == "result":
                    progress.report(record)
                    current, since = None, time.monotonic()
            if exited:
                break
            if time.monotonic() - since > settings.case_timeout_s:
                _kill(worker)
                late = current or _first_without_result(run, cases)
                if late is not None:
                    reason = (
                        f"no result within the case timeout of {settings.case_timeout_s:g} s; "
                        "the worker was killed"
                    )
                    _record(run, progress, outcome(late, "timeout", reason))
                return worker.exitcode
            time.sleep(POLL_S)
    except BaseException:  # interrupted: take the worker down with us, keep the journal
        _kill(worker)
        raise
    if current is not None:  # the worker died inside a case
        where = _fatal_error(_new_output(run.path / "worker.log", log_start))
        _record(run, progress, _crash(current, worker.exitcode, where))
    return worker.exitcode


def _record(run: RunDir, progress: Progress, result: dict) -> None:
    result = {"record": "result", **result}
    run.journal.append(result)
    progress.report(result)


def _crash(case: BenchCase, code: int, where: str) -> dict:
    signal_name = signal.Signals(-code).name if code < 0 else None
    return outcome(
        case,
        "crashed",
        f"the worker died with {_exit_text(code)} during this case{where} (see worker.log)",
        signal=signal_name,
        exit_code=code,
    )


def _exit_text(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _first_without_result(run: RunDir, cases: list[BenchCase]) -> BenchCase | None:
    results = run.journal.results()
    return next((case for case in cases if case.id not in results), None)


def _new_output(log: Path, start: int) -> str:
    """What the worker wrote to ``log`` from byte ``start`` on."""
    with open(log, "rb") as file:
        file.seek(start)
        return file.read().decode(errors="replace")


def _fatal_error(output: str) -> str:
    """Python's fault handler (on in pytest) names a fatal signal and the innermost frame of the
    thread it hit: ": Fatal Python error: Aborted, in forward (models.py:50)", or "" if it said
    nothing. It lists the other threads first (the worker's supervisor watch among them)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Fatal Python error:"):
            after = lines[i + 1 :]
            current = next((j for j, f in enumerate(after) if f.startswith("Current thread")), 0)
            frame = next((f.strip() for f in after[current:] if f.strip().startswith("File ")), "")
            found = re.match(r'File "(.+)", line (\d+) in (\S+)', frame)
            where = f", in {found[3]} ({Path(found[1]).name}:{found[2]})" if found else ""
            return f": {line.strip()}{where}"
    return ""


def _start_worker(run: RunDir, cases: list[BenchCase]) -> multiprocessing.Process:
    """A worker on ``cases``, forked from the warm server (``WARM_MODULES``)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WARM_MODULES)  # read when the server starts: once per process
    env = {**os.environ, PLUGINS_ENV: ",".join(run.settings.plugins)}
    log = str((run.path / "worker.log").resolve())
    arguments = (_worker_arguments(run, cases), log, run.meta["cwd"], env, os.getpid())
    worker = context.Process(target=forked_main, args=arguments, name=f"worker-{cases[0].model}")
    worker.start()
    return worker


def _kill(worker: multiprocessing.Process) -> None:
    """SIGKILL the worker's process group: a hung native kernel does not answer SIGTERM."""
    if worker.exitcode is None:
        with suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
    worker.join()


def _worker_arguments(run: RunDir, cases: list[BenchCase]) -> list[str]:
    """``bench.worker.main``'s arguments: the journal, then pytest's."""
    settings = run.settings

    def joined(field: str) -> str:
        return ",".join(dict.fromkeys(str(getattr(case, field)) for case in cases))

    return [
        str(run.journal.path.resolve()),
        "--",
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
        "--benchmark-columns=median,iqr,ops,rounds",
        "--benchmark-sort=name",
        f"--bench-kinds={joined('kind')}",
        f"--bench-models={joined('model')}",
        f"--bench-sizes={joined('size')}",
        f"--bench-devices={joined('device')}",
        f"--bench-backends={joined('backend')}",
        f"--bench-batch-sizes={joined('batch_size')}",
        f"--bench-cases={','.join(case.id for case in cases)}",
        f"--bench-threads={settings.threads}",
        f"--bench-trace-dir={run.path.resolve() / 'traces'}",
        *settings.timing,
    ]


def finish(run: RunDir) -> None:
    """Every case has a result: write benchmark.json (pytest-benchmark's format, plus the cases
    that were not measured) and the reports, then mark the run complete."""
    import pytest_benchmark

    results = run.journal.results()
    ordered = [results[case.id] for case in run.cases]
    for result in ordered:  # how long each case took, set-up included: where a run's time goes
        if result["status"] == "passed":
            result["benchmark"]["extra_info"]["case_duration_s"] = result.get("duration_s")
    data = {
        "machine_info": run.meta["machine_info"],
        "commit_info": run.meta["commit_info"],
        "benchmarks": [r["benchmark"] for r in ordered if r["status"] == "passed"],
        "datetime": datetime.now(UTC).isoformat(),
        "version": pytest_benchmark.__version__,
        "torchgauge": {
            "run_id": run.meta["run_id"],
            "created": run.meta["created"],  # when the run started; "datetime" is its end
            "outcomes": [
                {
                    ("case_duration_s" if k == "duration_s" else k): v
                    for k, v in r.items()
                    if k not in ("record", "benchmark")
                }
                for r in ordered
                if r["status"] != "passed"
            ],
        },
    }
    raw = run.path / "benchmark.json"
    write_text_atomically(raw, json.dumps(data, indent=2))
    write_report(collate([raw]), run.path)
    run.meta["state"] = "complete"
    run.save()
