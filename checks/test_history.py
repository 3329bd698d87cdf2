"""The history store: what goes in comes back (raw rounds included), a run is recorded once,
concurrent writers do not corrupt it, and a file that is not a torchgauge history is refused in
one line with nothing changed. Through the ``torchgauge`` command where a user would use it."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.history import SCHEMA_VERSION, History, HistoryError
from checks.benchmark_files import OTHER_MACHINE, Bench, benchmark_json
from checks.commands import snapshot, torchgauge

BENCHES = [Bench("mlp", 1e-3), Bench("cnn", 2e-2, batch_size=32, flops=10**9)]


@given(
    rounds=st.lists(
        st.floats(min_value=1e-9, max_value=1e3, allow_nan=False), min_size=2, max_size=300
    )
)
def test_raw_rounds_come_back_bit_for_bit(tmp_path_factory, rounds: list[float]) -> None:
    path = benchmark_json(
        tmp_path_factory.mktemp("run") / "b.json", "r", BENCHES[:1], seed=0, rounds=len(rounds)
    )
    data = json.loads(path.read_text())
    data["benchmarks"][0]["stats"]["data"] = rounds
    path.write_text(json.dumps(data))
    with History.open(path.parent / "h.sqlite") as history:
        history.record_file(path)
        (samples,) = history.measurements()["samples"]
    assert samples.tolist() == rounds


def test_a_run_is_recorded_once_whatever_its_file_is_called(tmp_path: Path) -> None:
    first = benchmark_json(tmp_path / "a.json", "run-1", BENCHES, seed=0)
    copy = tmp_path / "copy.json"
    copy.write_bytes(first.read_bytes())
    with History.open(tmp_path / "h.sqlite") as history:
        assert history.record_file(first).new
        again = history.record_file(copy)
        assert not again.new and again.benchmarks == len(BENCHES)
        assert len(history.runs()) == 1


def test_a_run_is_dated_by_its_start_other_json_by_when_it_was_written(tmp_path: Path) -> None:
    ours = benchmark_json(tmp_path / "a.json", "r", BENCHES, seed=0, started="2026-11-23T10:05")
    data = json.loads(ours.read_text())
    data["torchgauge"]["created"] = "2026-11-23T10:00"  # what runner.finish records
    ours.write_text(json.dumps(data))
    other = benchmark_json(tmp_path / "b.json", "x", BENCHES, seed=1, started="2026-11-23T11:05")
    data = json.loads(other.read_text())
    del data["torchgauge"]
    other.write_text(json.dumps(data))
    with History.open(tmp_path / "h.sqlite") as history:
        for path in (ours, other):
            history.record_file(path)
        assert history.runs()["started"].tolist() == ["2026-11-23T10:00", "2026-11-23T11:05"]


def test_plain_pytest_benchmark_json_is_keyed_by_its_contents(tmp_path: Path) -> None:
    """JSON from elsewhere has no torchgauge run id: the same bytes are the same run."""
    path = benchmark_json(tmp_path / "a.json", "x", BENCHES, seed=0)
    data = json.loads(path.read_text())
    del data["torchgauge"]
    path.write_text(json.dumps(data))
    other = benchmark_json(tmp_path / "b.json", "x", BENCHES, seed=1)
    data_b = json.loads(other.read_text())
    del data_b["torchgauge"]
    other.write_text(json.dumps(data_b))
    with History.open(tmp_path / "h.sqlite") as history:
        keys = {history.record_file(p).source_key for p in (path, other, path)}
    assert len(keys) == 2 and all(k.startswith("sha256:") for k in keys)


def test_machines_are_told_apart_by_hardware_not_by_threads(tmp_path: Path) -> None:
    files = [
        benchmark_json(tmp_path / "1.json", "r1", BENCHES, seed=0, threads=2),
        benchmark_json(tmp_path / "2.json", "r2", BENCHES, seed=1, threads=1),
        benchmark_json(tmp_path / "3.json", "r3", BENCHES, seed=2, machine=OTHER_MACHINE),
    ]
    with History.open(tmp_path / "h.sqlite") as history:
        for path in files:
            history.record_file(path)
        runs = history.runs()
    assert runs["threads"].tolist() == [2, 1, 2]
    assert runs["machine_id"].tolist() == [1, 1, 2]


def _record_many(db: str, paths: list[str]) -> None:
    with History.open(db) as history:
        for path in paths:
            history.record_file(path)


def test_concurrent_writers_lose_nothing_and_corrupt_nothing(tmp_path: Path) -> None:
    writers, per_writer = 4, 6
    paths = [
        [
            str(benchmark_json(tmp_path / f"{w}-{i}.json", f"run-{w}-{i}", BENCHES, seed=i))
            for i in range(per_writer)
        ]
        for w in range(writers)
    ]
    db = str(tmp_path / "h.sqlite")  # created by the writers themselves, at the same time
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_record_many, args=(db, p)) for p in paths]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * writers
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert connection.execute("SELECT count(*) FROM runs").fetchone() == (writers * per_writer,)
    assert connection.execute("SELECT count(*) FROM benchmarks").fetchone() == (
        writers * per_writer * len(BENCHES),
    )


def _foreign_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    connection.commit()
    connection.close()


def _newer_history(path: Path) -> None:
    History.open(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    ("make", "message", "command"),
    [
        (lambda p: p.write_bytes(b"not a database" * 100), "not a usable SQLite file", "ingest"),
        (_foreign_sqlite, "an SQLite file of another application", "run"),
        (_newer_history, f"history schema {SCHEMA_VERSION + 1} is newer", "history"),
    ],
    ids=["garbage", "foreign-sqlite", "newer-schema"],
)
def test_a_file_that_is_not_our_history_is_one_line_exit_2_and_untouched(
    tmp_path: Path, make, message: str, command: str
) -> None:
    db = tmp_path / "db" / "history.sqlite"
    db.parent.mkdir()
    make(db)
    before = snapshot(db.parent)
    args = {
        "ingest": [str(benchmark_json(tmp_path / "a.json", "r", BENCHES, seed=0))],
        "run": ["--models=linear_2_1", "--kinds=inference", f"--out={tmp_path / 'runs'}"],
        "history": [],
    }[command]
    result = torchgauge(command, *args, f"--db={db}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("torchgauge: error: ")
    assert message in result.stderr
    assert snapshot(db.parent) == before
    assert not (tmp_path / "runs").exists()


def test_ingest_checks_every_file_before_recording_any(tmp_path: Path) -> None:
    good = benchmark_json(tmp_path / "good.json", "r", BENCHES, seed=0)
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": [{"stats": {}}]}')
    db = tmp_path / "h.sqlite"
    result = torchgauge("ingest", str(good), str(bad), f"--db={db}", cwd=tmp_path)
    assert result.returncode == 2 and "bad.json: benchmark #0 has no numeric stats" in result.stderr
    assert not db.exists()


def test_ingest_then_history_lists_the_runs(tmp_path: Path) -> None:
    files = [benchmark_json(tmp_path / f"{i}.json", f"run-{i}", BENCHES, seed=i) for i in (1, 2)]
    db = tmp_path / "h.sqlite"
    ingested = torchgauge("ingest", *map(str, files), str(files[0]), f"--db={db}", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    lines = ingested.stdout.splitlines()
    assert "recorded as run 1 (run-1, 2 benchmarks)" in lines[0]
    assert "already recorded as run 1" in lines[2]
    listed = torchgauge("history", f"--db={db}", cwd=tmp_path)
    assert listed.returncode == 0
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == ["run-1", "run-2"]


def test_an_empty_file_becomes_a_history(tmp_path: Path) -> None:
    """SQLite's own view: a file of no bytes is an empty database (``touch`` made it, or another
    writer is creating it this instant)."""
    (tmp_path / "h.sqlite").touch()
    with History.open(tmp_path / "h.sqlite", create=False) as history:
        assert history.runs().empty


def test_history_of_a_missing_file_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    result = torchgauge("history", f"--db={tmp_path / 'none.sqlite'}", cwd=tmp_path)
    assert result.returncode == 2 and "no such history file" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_an_unknown_run_reference_names_itself(tmp_path: Path) -> None:
    with History.open(tmp_path / "h.sqlite") as history:
        history.record_file(benchmark_json(tmp_path / "a.json", "r", BENCHES, seed=0))
        with pytest.raises(HistoryError, match="no run 'nope'"):
            history.resolve("nope")
        assert history.resolve("r") == history.resolve("1") == 1


def test_noise_rows_replace_earlier_calibrations(tmp_path: Path) -> None:
    import pandas as pd

    row = {"machine_id": 1, "threads": 2, "name": "b", "metric": "seconds", "df": 4, "runs": [1]}
    with History.open(tmp_path / "h.sqlite") as history:
        history.record_file(benchmark_json(tmp_path / "a.json", "r", BENCHES, seed=0))
        history.save_noise(pd.DataFrame([{**row, "sigma": 0.05}]))
        history.save_noise(pd.DataFrame([{**row, "sigma": 0.02, "runs": [1, 2]}]))
        noise = history.noise()
    assert len(noise) == 1 and np.isclose(noise["sigma"].iloc[0], 0.02)
    assert noise["runs"].iloc[0] == [1, 2]
