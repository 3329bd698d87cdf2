"""The history store: every benchmark run in one SQLite file, raw per-round samples included.

``torchgauge run`` records each run here when it finishes (default ``reports/history.sqlite``,
``--db`` for another file), and ``torchgauge ingest FILES...`` records pytest-benchmark JSON made
elsewhere. ``compare``, ``calibrate`` and ``dashboard`` read it back. Samples are kept so that any
statistic can be recomputed later, not only the summary a run printed.

Schema (version ``SCHEMA_VERSION``; ``PRAGMA application_id`` tells a torchgauge file from any
other SQLite file, ``PRAGMA user_version`` holds the version)::

    machines    one row per hardware fingerprint: CPU model, ISA capability, usable CPUs, GPU
    runs        one row per run: when, commit, machine, threads, torch/CUDA versions, source file
    benchmarks  one row per (run, benchmark, metric): case columns, status, summary statistics,
                and ``samples``, the raw per-round values as little-endian float64
                (``numpy.frombuffer(samples, "<f8")``): seconds per call, or instructions per call
    noise       calibrated between-run noise per (machine, threads, benchmark, metric): the
                standard deviation of ln(run median) over A/A runs, moderated toward the
                machine's typical noise (``bench.comparison.calibrate_noise``), and its degrees
                of freedom

Writers take SQLite's write lock for the whole of one run's insert (``BEGIN IMMEDIATE``) and wait
for one another (``busy_timeout``); readers never block writers (WAL journal). A file that is not
SQLite, or SQLite of another application or of a newer torchgauge, is refused with one line.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.journal import CASE_COLUMNS
from bench.report import ReportError, _outcomes, _read_json

DEFAULT_DB = Path("reports/history.sqlite")
APPLICATION_ID = 0x74676831  # "tgh1": this is a torchgauge history file
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000  # how long a writer waits for another writer's transaction
SECONDS, INSTRUCTIONS = "seconds", "instructions"
METRICS = (SECONDS, INSTRUCTIONS)
# what tells one machine from another: a run's threads and library versions are settings of a run
HARDWARE_FIELDS = ("cpu_model", "cpu_capability", "usable_cpus", "gpu")

SCHEMA = """
CREATE TABLE machines (
    id             INTEGER PRIMARY KEY,
    fingerprint    TEXT NOT NULL UNIQUE,  -- sha256 of HARDWARE_FIELDS, 16 hex digits
    label          TEXT NOT NULL,         -- what people read: "AMD EPYC 7B13 (AVX2, 2 CPUs)"
    cpu_model      TEXT,
    cpu_capability TEXT,
    usable_cpus    INTEGER,
    gpu            TEXT
);
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    source_key    TEXT NOT NULL UNIQUE,   -- the torchgauge run id, or sha256:<file digest>
    source        TEXT NOT NULL,          -- the file it was recorded from
    started       TEXT NOT NULL,          -- ISO 8601, UTC (other JSON: when it was written)
    recorded      TEXT NOT NULL,
    commit_id     TEXT,
    commit_dirty  INTEGER,
    branch        TEXT,
    machine_id    INTEGER NOT NULL REFERENCES machines(id),
    node          TEXT,                   -- host name
    threads       INTEGER,
    torch         TEXT,
    torch_cuda    TEXT,
    python        TEXT,
    machine_info  TEXT NOT NULL           -- the whole JSON object, as recorded
);
CREATE TABLE benchmarks (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,            -- the case id, or pytest-benchmark's fullname
    metric      TEXT NOT NULL CHECK (metric IN ('seconds', 'instructions')),
    kind        TEXT,
    model       TEXT,
    size        TEXT,
    device      TEXT,
    backend     TEXT,
    batch_size  INTEGER,
    phase       TEXT,
    precision   TEXT,
    status      TEXT NOT NULL,            -- passed, skipped, error, crashed, timeout
    reason      TEXT,
    median      REAL,
    iqr         REAL,
    mean        REAL,
    min         REAL,
    rounds      INTEGER,
    samples     BLOB,                     -- little-endian float64, one per round
    extra_info  TEXT,                     -- JSON
    UNIQUE (run_id, name, metric)
);
CREATE INDEX benchmarks_by_name ON benchmarks (name, metric);
CREATE TABLE noise (
    machine_id  INTEGER NOT NULL REFERENCES machines(id),
    threads     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    sigma       REAL NOT NULL,            -- sd of ln(run median) between A/A runs
    df          INTEGER NOT NULL,         -- its degrees of freedom: runs - 1 + the prior's
    runs        TEXT NOT NULL,            -- JSON list of the run ids it came from
    calibrated  TEXT NOT NULL,
    PRIMARY KEY (machine_id, threads, name, metric)
);
"""


class HistoryError(Exception):
    """A history file or input that cannot be used; the message is one line."""


@dataclass
class RunRecord:
    """One run as parsed from pytest-benchmark JSON, before or after it is stored."""

    source_key: str
    source: str
    started: str
    machine: dict[str, Any]  # HARDWARE_FIELDS
    run: dict[str, Any]  # the runs columns but ids
    benchmarks: list[dict[str, Any]] = field(default_factory=list)  # benchmarks columns


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def fingerprint(machine: dict[str, Any]) -> str:
    text = json.dumps([machine.get(k) for k in HARDWARE_FIELDS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine_label(machine: dict[str, Any]) -> str:
    cpu = machine.get("cpu_model") or "unknown CPU"
    details = ", ".join(
        str(x)
        for x in (
            machine.get("cpu_capability"),
            f"{machine['usable_cpus']} CPUs" if machine.get("usable_cpus") else None,
        )
        if x
    )
    label = f"{cpu} ({details})" if details else cpu
    return f"{label} + {machine['gpu']}" if machine.get("gpu") else label


def _samples_blob(values: Iterable[float] | None) -> bytes | None:
    if values is None:
        return None
    array = np.asarray(list(values), dtype="<f8")
    return array.tobytes() if array.size else None


def parse_benchmark_json(path: Path) -> RunRecord:
    """A pytest-benchmark JSON file (a torchgauge run's ``benchmark.json`` or any other) as a
    RunRecord; ReportError, one line, when it is not such a file."""
    data = _read_json(path)
    machine_info = data.get("machine_info") or {}
    ours = machine_info.get("torchgauge") or {}
    commit = data.get("commit_info") or {}
    run_id = (data.get("torchgauge") or {}).get("run_id")
    if run_id:
        source_key = str(run_id)
    else:
        source_key = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    cpu = ours.get("cpu_model") or (machine_info.get("cpu") or {}).get("brand_raw")
    machine = {
        "cpu_model": cpu or machine_info.get("processor") or machine_info.get("machine"),
        "cpu_capability": ours.get("cpu_capability"),
        "usable_cpus": ours.get("usable_cpus") or (machine_info.get("cpu") or {}).get("count"),
        "gpu": ours.get("gpu"),
    }
    # a torchgauge run says when it started; other JSON only when it was written, at its end
    started = (
        (data.get("torchgauge") or {}).get("created")
        or data.get("datetime")
        or datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    )
    record = RunRecord(
        source_key=source_key,
        source=str(path.resolve()),
        started=started,
        machine=machine,
        run={
            "commit_id": commit.get("id"),
            "commit_dirty": None if commit.get("dirty") is None else int(bool(commit["dirty"])),
            "branch": commit.get("branch"),
            "node": machine_info.get("node"),
            "threads": ours.get("threads"),
            "torch": ours.get("torch"),
            "torch_cuda": ours.get("torch_cuda"),
            "python": machine_info.get("python_version"),
            "machine_info": json.dumps(machine_info),
        },
    )
    for bench in data["benchmarks"]:
        record.benchmarks.extend(_benchmark_rows(bench))
    for outcome in _outcomes(data):
        record.benchmarks.append(
            {
                "name": outcome.get("case") or outcome.get("model"),
                "metric": SECONDS,
                **{c: outcome.get(c) for c in CASE_COLUMNS},
                "status": outcome["status"],
                "reason": outcome.get("reason"),
                "extra_info": json.dumps({k: v for k, v in outcome.items() if k != "reason"}),
            }
        )
    return record


def _benchmark_rows(bench: dict) -> list[dict]:
    """A measured benchmark's rows: its time per call, and its instruction counts where the
    ``instructions`` kind recorded them (whose timed call, a whole valgrind process, is no
    latency and is not kept as one)."""
    stats, extra = bench["stats"], dict(bench.get("extra_info") or {})
    case = {c: extra.get(c) for c in CASE_COLUMNS}
    name = bench.get("param") if "model" in extra else None
    name = name or bench.get("fullname") or bench.get("name")
    common = {"name": name, **case, "status": "passed", "reason": None}
    counts = extra.pop("instructions", None)
    if counts:
        values = np.asarray(counts, dtype=float)
        return [
            {
                **common,
                "metric": INSTRUCTIONS,
                "median": float(np.median(values)),
                "iqr": float(np.subtract(*np.percentile(values, [75, 25]))),
                "mean": float(values.mean()),
                "min": float(values.min()),
                "rounds": len(values),
                "samples": _samples_blob(values),
                "extra_info": json.dumps(extra),
            }
        ]
    return [
        {
            **common,
            "metric": SECONDS,
            "median": stats.get("median"),
            "iqr": stats.get("iqr"),
            "mean": stats.get("mean"),
            "min": stats.get("min"),
            "rounds": stats.get("rounds"),
            "samples": _samples_blob(stats.get("data")),
            "extra_info": json.dumps(extra),
        }
    ]


@dataclass(frozen=True)
class Recorded:
    run_id: int
    source_key: str
    new: bool  # False: the run was in the history already, and nothing was written
    benchmarks: int


class History:
    """An open history file. ``History.open(path)`` creates it if missing and validates it."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path, self.db = path, connection

    @classmethod
    def open(cls, path: str | Path = DEFAULT_DB, create: bool = True) -> History:
        path = Path(path)
        if path.is_dir():
            raise HistoryError(f"{path}: is a directory, not a history file")
        if not path.exists():
            if not create:
                raise HistoryError(f"{path}: no such history file")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA foreign_keys = ON")
            history = cls(path, db)
            history._check_or_create()
        except sqlite3.DatabaseError as error:
            raise HistoryError(f"{path}: not a usable SQLite file ({error})") from None
        return history

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its start (no lock upgrades, so two
        writers cannot deadlock); rolled back whole on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _check_or_create(self) -> None:
        application = self.db.execute("PRAGMA application_id").fetchone()[0]
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if application == APPLICATION_ID:
            self._check_version(version)
            return
        with self._write() as db:  # two processes creating the same file: one creates, one checks
            application = db.execute("PRAGMA application_id").fetchone()[0]
            if application == APPLICATION_ID:
                version = db.execute("PRAGMA user_version").fetchone()[0]
            else:
                tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if application != 0 or tables:
                    raise HistoryError(
                        f"{self.path}: an SQLite file of another application, not a torchgauge "
                        f"history (application_id {application:#x}, {tables} schema objects)"
                    )
                for statement in SCHEMA.split(";"):  # executescript would commit first
                    db.execute(statement)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                version = SCHEMA_VERSION
        self._check_version(version)
        self.db.execute("PRAGMA journal_mode = WAL")

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path}: history schema {version} is newer than this torchgauge's "
                f"({SCHEMA_VERSION}); upgrade torchgauge to read it"
            )
        if version < 1:
            raise HistoryError(f"{self.path}: torchgauge history with no schema version")

    # -- writing ---------------------------------------------------------------------------

    def record(self, record: RunRecord) -> Recorded:
        """Store one run and its benchmarks in one transaction; a run already stored (same
        torchgauge run id, or same file contents) is left as it is."""
        with self._write() as db:
            found = db.execute(
                "SELECT id, (SELECT count(*) FROM benchmarks WHERE run_id = runs.id) "
                "FROM runs WHERE source_key = ?",
                (record.source_key,),
            ).fetchone()
            if found:
                return Recorded(found[0], record.source_key, False, found[1])
            machine_id = self._machine_id(record.machine)
            run = {
                **record.run,
                "source_key": record.source_key,
                "source": record.source,
                "started": record.started,
                "recorded": _now(),
                "machine_id": machine_id,
            }
            run_id = _insert(db, "runs", run)
            for bench in record.benchmarks:
                _insert(db, "benchmarks", {**bench, "run_id": run_id})
        return Recorded(run_id, record.source_key, True, len(record.benchmarks))

    def record_file(self, path: str | Path) -> Recorded:
        try:
            return self.record(parse_benchmark_json(Path(path)))
        except ReportError as error:
            raise HistoryError(str(error)) from None

    def _machine_id(self, machine: dict[str, Any]) -> int:
        key = fingerprint(machine)
        found = self.db.execute("SELECT id FROM machines WHERE fingerprint = ?", (key,)).fetchone()
        if found:
            return found[0]
        row = {"fingerprint": key, "label": machine_label(machine), **machine}
        return _insert(self.db, "machines", row)

    def save_noise(self, frame: pd.DataFrame) -> int:
        """Store calibrated noise rows (machine_id, threads, name, metric, sigma, df, runs),
        replacing earlier calibrations of the same benchmarks. Returns how many."""
        with self._write() as db:
            for row in frame.itertuples(index=False):
                db.execute(
                    "INSERT OR REPLACE INTO noise "
                    "(machine_id, threads, name, metric, sigma, df, runs, calibrated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        int(row.machine_id),
                        int(row.threads),
                        row.name,
                        row.metric,
                        float(row.sigma),
                        int(row.df),
                        json.dumps([int(r) for r in row.runs]),
                        _now(),
                    ),
                )
        return len(frame)

    # -- reading ---------------------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        """Every run, oldest first, with its machine and how many benchmarks it measured."""
        return pd.read_sql_query(
            """
            SELECT runs.id, runs.source_key, runs.started, runs.commit_id, runs.commit_dirty,
                   runs.branch, runs.threads, runs.torch, runs.torch_cuda, runs.node, runs.source,
                   runs.machine_id, machines.fingerprint, machines.label AS machine,
                   (SELECT count(*) FROM benchmarks b
                    WHERE b.run_id = runs.id AND b.status = 'passed') AS measured
            FROM runs JOIN machines ON machines.id = runs.machine_id
            ORDER BY runs.started, runs.id
            """,
            self.db,
        )

    def resolve(self, ref: str) -> int:
        """A run by its id in this file or its torchgauge run id (the run directory's name)."""
        query = "SELECT id FROM runs WHERE source_key = ?"
        if ref.isdigit():
            query = "SELECT id FROM runs WHERE id = ? OR source_key = ?"
            found = self.db.execute(query, (int(ref), ref)).fetchone()
        else:
            found = self.db.execute(query, (ref,)).fetchone()
        if found is None:
            raise HistoryError(
                f"no run {ref!r} in {self.path} (`torchgauge history --db {self.path}` lists them)"
            )
        return found[0]

    def measurements(
        self, run_ids: Iterable[int] | None = None, metric: str | None = None
    ) -> pd.DataFrame:
        """One row per measured (run, benchmark, metric), with ``samples`` as a float64 array and
        the run's machine, threads and time; every run when ``run_ids`` is None."""
        where, params = ["b.status = 'passed'"], []
        if run_ids is not None:
            ids = [int(i) for i in run_ids]
            where.append(f"b.run_id IN ({','.join('?' * len(ids))})")
            params += ids
        if metric is not None:
            where.append("b.metric = ?")
            params.append(metric)
        frame = pd.read_sql_query(
            f"""
            SELECT b.run_id, b.name, b.metric, {", ".join(f"b.{c}" for c in CASE_COLUMNS)},
                   b.median, b.iqr, b.mean, b.min, b.rounds, b.samples, b.extra_info,
                   runs.started, runs.commit_id, runs.threads, runs.torch, runs.machine_id,
                   runs.machine_info, machines.fingerprint, machines.label AS machine
            FROM benchmarks b JOIN runs ON runs.id = b.run_id
                 JOIN machines ON machines.id = runs.machine_id
            WHERE {" AND ".join(where)}
            ORDER BY runs.started, b.run_id, b.name
            """,
            self.db,
            params=params,
        )
        frame["samples"] = [
            np.frombuffer(blob, "<f8") if blob is not None else np.array([m])
            for blob, m in zip(frame["samples"], frame["median"], strict=True)
        ]
        extra = frame["extra_info"].map(lambda text: json.loads(text) if text else {})
        frame["flops"] = [e.get("flops") for e in extra]
        runs = frame.drop_duplicates("run_id").set_index("run_id")["machine_info"]
        infos = runs.map(json.loads)  # once per run, not per benchmark
        frame["peak_gflops"] = [
            _peak(infos[run], device, precision)
            for run, device, precision in zip(
                frame["run_id"], frame["device"], frame["precision"], strict=True
            )
        ]
        return frame.drop(columns="machine_info")

    def noise(self) -> pd.DataFrame:
        """Every calibrated noise row."""
        frame = pd.read_sql_query("SELECT * FROM noise", self.db)
        frame["runs"] = frame["runs"].map(json.loads)
        return frame


def _peak(machine_info: dict, device: str | None, precision: str | None) -> float | None:
    """The run's measured matmul GFLOP/s on ``device`` in ``precision``, where it has one."""
    peaks = (machine_info.get("torchgauge") or {}).get("matmul_peak_gflops") or {}
    return (peaks.get(device) or {}).get(precision)


def _insert(db: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    cursor = db.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})",
        tuple(row.values()),
    )
    return int(cursor.lastrowid)
