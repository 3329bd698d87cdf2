"""The run journal: an append-only file of JSON lines, one record per event, written as it happens.

A benchmark worker appends ``start`` before each case and ``result`` after it; the supervising
``torchgauge run`` appends the results a worker could not write itself (crashed, timeout) and the
cases skipped on this machine. A run killed at any moment keeps every finished case, and
``torchgauge run --resume`` reads the journal to run only the rest.

Records (every one has ``record`` and ``case``, the case id)::

    {"record": "start", "case": ..., "pid": 1234, "time": 1763900000.0}
    {"record": "result", "case": ..., "status": "passed", "benchmark": {pytest-benchmark's}}
    {"record": "result", "case": ..., "status": "error", "reason": "RuntimeError: ..."}

A result's ``status`` is one of ``STATUSES``. Each record is one ``write`` of one line to a file
opened for appending, then flushed to disk, so records never interleave; a line cut short by a
kill is ignored on reading and cut off before the next append.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the report reads journals and JSON without loading torch
    from bench.cases import BenchCase

# what tells one benchmark case from another: the fields of ``bench.cases.BenchCase``
CASE_COLUMNS = ("kind", "model", "size", "device", "backend", "batch_size", "phase", "precision")
STATUSES = ("passed", "skipped", "error", "crashed", "timeout")
FAILED = frozenset({"error", "crashed", "timeout"})  # a run with any of these exits with 1


def outcome(case: BenchCase, status: str, reason: str | None = None, **fields: Any) -> dict:
    """A result row for ``case``: its case columns, its status and why, and any other fields."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
    return {
        "case": case.id,
        **{column: getattr(case, column) for column in CASE_COLUMNS},
        "status": status,
        "reason": reason,
        **fields,
    }


class Journal:
    """One run's journal file; safe to append from one process at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self, offset: int = 0) -> tuple[list[dict], int]:
        """Complete records from byte ``offset`` on, and the offset after the last complete one."""
        if not self.path.exists():
            return [], offset
        with open(self.path, "rb") as file:
            file.seek(offset)
            data = file.read()
        records, end = [], offset
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # being written, or cut short by a kill
            end += len(line)
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line mangled by a crash mid-write carries nothing we can use
        return records, end

    def results(self) -> dict[str, dict]:
        """The result of each finished case, by case id (the last one, should a case have two)."""
        return {r["case"]: r for r in self.records()[0] if r.get("record") == "result"}

    def repair(self) -> None:
        """Cut off a last line that a kill left unfinished, so the next append starts a line."""
        _, end = self.records()
        if self.path.exists() and self.path.stat().st_size != end:
            os.truncate(self.path, end)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records()[0])
