"""A benchmark worker: pytest-benchmark over some cases, each result journaled as soon as it ends.

``torchgauge run`` starts one worker process per model (as TorchBench isolates each model) and
supervises it: if the worker dies or hangs, the cases it has finished are already on disk, and the
supervisor records the case it was in and starts a new worker for the rest. The supervisor forks
its workers from a warm server process (``forked_main``); by hand a worker runs as

    python -m bench.worker JOURNAL -- PYTEST_ARGS...
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.journal import Journal, outcome

MESSAGE_LIMIT = 500  # characters of an exception message kept in a result row


class JournalWriter:
    """A pytest plugin: a ``start`` record before each benchmark case, a ``result`` record after."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.failure: pytest.ExceptionInfo | None = None
        self.skip_reason: str | None = None
        self.stats = None  # pytest-benchmark's Metadata of the case's timed call

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        case = item.callspec.params["case"]
        self.failure, self.skip_reason, self.stats = None, None, None
        self.journal.append(
            {"record": "start", "case": case.id, "pid": os.getpid(), "time": time.time()}
        )
        start = time.perf_counter()
        yield
        fields = {"record": "result", "duration_s": round(time.perf_counter() - start, 3)}
        self.journal.append({**fields, **self._result(case)})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = (yield).get_result()
        if report.when == "call":  # fixtures are released by the end of the protocol
            self.stats = getattr(item.funcargs.get("benchmark"), "stats", None)
        if report.skipped and self.skip_reason is None:
            self.skip_reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else None
        elif report.failed and self.failure is None:
            self.failure = call.excinfo  # the first phase that failed: setup, call or teardown

    def _result(self, case) -> dict:
        if self.failure is not None:
            message = (str(self.failure.value).strip().splitlines() or [""])[0][:MESSAGE_LIMIT]
            reason = f"{self.failure.typename}: {message}" if message else self.failure.typename
            return outcome(case, "error", reason, error_type=self.failure.typename)
        if self.skip_reason is not None:
            return outcome(case, "skipped", self.skip_reason)
        if self.stats is None:
            return outcome(case, "error", "the benchmark fixture timed nothing")
        return outcome(case, "passed", benchmark=self.stats.as_dict(include_data=True))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m bench.worker JOURNAL -- PYTEST_ARGS...", file=sys.stderr)
        return 2
    return int(pytest.main(argv[2:], plugins=[JournalWriter(Journal(Path(argv[0])))]))


def forked_main(argv: list[str], log: str, cwd: str, env: dict[str, str], supervisor: int) -> None:
    """``main(argv)`` in a process forked from the supervisor's warm server (bench.runner), set up
    as ``python -m bench.worker`` would be in a fresh one: a session of its own (a timeout kills
    its process group), output appended to ``log``, ``cwd`` its directory and first import path,
    ``env`` its environment. It dies with the supervisor (``_die_with``)."""
    os.setsid()
    _die_with(supervisor)
    output = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # as ``python -m`` puts it: plugin modules import from there
    os.environ.clear()
    os.environ.update(env)
    raise SystemExit(main(argv))


def _die_with(supervisor: int) -> None:
    """SIGKILL this worker's process group the moment ``supervisor`` exits, even by kill -9, so
    no orphan goes on timing and writing the journal behind a resumed run. The worker's parent is
    the warm server, which outlives the supervisor by the seconds an interpreter holding torch
    takes to shut down, so the worker watches the supervisor itself: a thread blocked on a pidfd
    (Linux 5.3+), which costs no CPU until the supervisor exits."""
    if not hasattr(os, "pidfd_open"):  # not Linux: no such guarantee
        return
    try:
        pidfd = os.pidfd_open(supervisor)
    except ProcessLookupError:  # the supervisor is already gone
        os._exit(1)
    except OSError:  # a kernel before 5.3: no such guarantee
        return

    def watch() -> None:
        select.select([pidfd], [], [])  # readable when the supervisor exits
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-supervisor", daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main())
