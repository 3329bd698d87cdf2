"""A benchmark run survives what its cases do: a case that raises, hangs or kills its process
becomes a row with its status and the run goes on; a run killed with -9 keeps what it measured and
``--resume`` finishes it as if it had never stopped. Run as a user would, through the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bench.cases import bench_cases as selected_cases  # not bench_*: pytest would collect it
from bench.cases import skip_reason
from bench.cli import _benchmark_machine_info
from bench.history import History
from bench.journal import Journal
from bench.report import collate
from bench.runner import RunDir, RunSettings
from checks.commands import REPO, torchgauge, torchgauge_in_this_process
from impl import Cap, get_spec
from impl.backends import Backend, get_backend
from impl.machine import CUDA, ONEDNN_BF16
from impl.plugins import PLUGINS_ENV

PLUGIN_DIR = Path(__file__).parent / "plugin_models"


def run_dir_of(runs: Path) -> Path:
    (run,) = list(runs.iterdir())
    return run


@pytest.mark.slow
def test_a_case_that_raises_hangs_or_aborts_is_a_row_and_the_run_goes_on(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = torchgauge(
        "run",
        "--quick",
        "--sizes=tiny",
        "--batch-sizes=1",
        "--kinds=inference",
        "--backends=eager,torchscript",
        "--plugin=misbehaving_models",  # importable from the current directory, as with python -m
        "--models=mlp_784_128_10,raises_in_forward,sleeps_in_forward,aborts_in_forward,"
        "needs_a_teleporter",
        "--case-timeout=20",
        f"--out={runs}",
        f"--db={tmp_path / 'history.sqlite'}",
        cwd=PLUGIN_DIR,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # some cases failed
    run = run_dir_of(runs)
    frame = pd.read_csv(run / "results.csv")
    assert frame["case"].is_unique and len(frame) == 7
    row = {(r.model, r.backend): r for r in frame.itertuples()}
    assert row["mlp_784_128_10", "eager"].status == "passed"
    assert row["mlp_784_128_10", "torchscript"].status == "passed"

    raised = row["raises_in_forward", "eager"]
    assert (raised.status, raised.error_type) == ("error", "RuntimeError")
    assert raised.reason == "RuntimeError: forward failed on purpose"

    hung = row["sleeps_in_forward", "eager"]
    assert hung.status == "timeout" and "case timeout of 20 s" in hung.reason

    aborted = row["aborts_in_forward", "eager"]
    assert (aborted.status, aborted.signal, aborted.exit_code) == ("crashed", "SIGABRT", -6)
    assert "in forward (misbehaving_models.py:" in aborted.reason  # the fault handler's frame

    # a case this machine cannot run is a row with its reason; the model's other case still runs
    assert row["needs_a_teleporter", "torchscript"].status == "skipped"
    assert row["needs_a_teleporter", "torchscript"].reason.startswith("needs teleporter (")
    assert row["needs_a_teleporter", "eager"].status == "passed"

    report = (run / "report.md").read_text()
    assert "## Failed, crashed or timed-out cases" in report
    assert "## Not measured on this machine" in report
    results = Counter(r["case"] for r in Journal(run / "journal.jsonl") if r["record"] == "result")
    assert set(results.values()) == {1}
    # pytest-benchmark's JSON holds the measured cases; the others are listed beside them
    raw = json.loads((run / "benchmark.json").read_text())
    assert len(raw["benchmarks"]) == 3 and len(raw["torchgauge"]["outcomes"]) == 4
    # and the history has the run, every case with its status, the measured ones with rounds
    with History.open(tmp_path / "history.sqlite", create=False) as history:
        (recorded,) = history.runs().itertuples()
        assert recorded.source_key == run.name and recorded.measured == 3
        statuses = dict(
            history.db.execute("SELECT name, status FROM benchmarks WHERE run_id = ?", (1,))
        )
        measured = history.measurements([recorded.id])
    assert statuses == dict(zip(frame["case"], frame["status"], strict=True))
    assert all(len(s) == r for s, r in zip(measured["samples"], measured["rounds"], strict=True))


def _inside_a_case_after(journal: Path, results: int) -> bool:
    """At least ``results`` results are journaled and a worker has started its next case."""
    records = list(Journal(journal)) if journal.exists() else []
    done = sum(r["record"] == "result" for r in records)
    return done >= results and records[-1]["record"] == "start"


def _living_workers(journal: Path) -> list[int]:
    """The pids of the run's workers (from their journaled start records) still running."""
    pids = {r["pid"] for r in Journal(journal) if r["record"] == "start"}
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone
            continue
        if state != "Z":  # a zombie has exited; it only waits for its parent to reap it
            living.append(pid)
    return living


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the worker dies with its supervisor on Linux")
def test_a_run_killed_with_sigkill_resumes_to_the_outputs_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    selection = {"models": ["mlp_784_128_10", "cifar_cnn_2conv", "sentiment_lstm"]}
    selection |= {"sizes": ["tiny"], "backends": ["eager", "torchscript"], "batch_sizes": [1]}
    selection |= {"kinds": ["inference"]}
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--quick", "--sizes=tiny", "--batch-sizes=1"]
        + ["--kinds=inference", "--backends=eager,torchscript"]
        + [f"--models={','.join(selection['models'])}"]
        + [f"--out={runs}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and supervisor.poll() is None:
        started = runs.exists() and any(runs.iterdir())
        if started and _inside_a_case_after(run_dir_of(runs) / "journal.jsonl", results=2):
            break
        time.sleep(0.02)
    supervisor.kill()  # SIGKILL, while its worker is inside a case: no handler runs
    supervisor.wait()
    run = run_dir_of(runs)
    done_before = {r["case"] for r in Journal(run / "journal.jsonl") if r["record"] == "result"}
    before = len(done_before)
    assert 2 <= before < 6, f"the kill came at {before} of 6 results: not mid-run"
    # the worker went with its supervisor: no orphan goes on timing and writing the journal
    deadline = time.monotonic() + 10
    while _living_workers(run / "journal.jsonl") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _living_workers(run / "journal.jsonl")
    time.sleep(1)
    assert sum(r["record"] == "result" for r in Journal(run / "journal.jsonl")) == before
    assert not (run / "results.csv").exists()

    resumed = torchgauge("run", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{before} of 6 cases have results" in resumed.stderr
    frame = pd.read_csv(run / "results.csv")
    expected = [case.id for case in selected_cases(devices=["cpu"], **selection)]
    assert sorted(frame["case"]) == sorted(expected)  # one row per case, none twice
    assert (frame["status"] == "passed").all()
    # the cases measured before the kill were not started again; no case has two results
    journal = list(Journal(run / "journal.jsonl"))
    starts = Counter(r["case"] for r in journal if r["record"] == "start")
    assert all(starts[case] == 1 for case in done_before)
    assert Counter(r["case"] for r in journal if r["record"] == "result") == dict.fromkeys(
        expected, 1
    )
    assert json.loads((run / "run.json").read_text())["state"] == "complete"
    again = torchgauge("run", "--resume", str(run), cwd=tmp_path)
    assert again.returncode == 2 and "is complete" in again.stderr


@pytest.fixture
def unfinished_run(tmp_path: Path) -> RunDir:
    """A run directory as ``torchgauge run`` leaves it when killed before its first result."""
    cases = selected_cases(
        models=["mlp_784_128_10"],
        sizes=["tiny"],
        backends=["eager"],
        batch_sizes=[1],
        kinds=["inference"],
    )
    settings = RunSettings(device="cpu", threads=1, timing=("--benchmark-max-time=0.01",))
    return RunDir.create(
        tmp_path / "run", cases, settings, _benchmark_machine_info(1), commit={"id": None}
    )


def test_resume_refuses_a_run_made_on_another_machine(unfinished_run: RunDir) -> None:
    unfinished_run.meta["machine_info"]["torchgauge"]["cpu_model"] = "Some Other CPU"
    unfinished_run.save()
    result = torchgauge_in_this_process(
        "run", "--resume", str(unfinished_run.path), cwd=unfinished_run.path
    )
    assert result.returncode == 2
    assert "started on another machine or software (cpu_model 'Some Other CPU' -> " in (
        result.stderr
    )
    assert not unfinished_run.journal.path.exists()


def test_resume_refuses_a_run_another_process_holds(unfinished_run: RunDir) -> None:
    with unfinished_run.lock():
        result = torchgauge("run", "--resume", str(unfinished_run.path), cwd=unfinished_run.path)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is in use by another torchgauge process")


def test_resume_keeps_the_run_s_own_selection(unfinished_run: RunDir) -> None:
    result = torchgauge_in_this_process(
        "run", "--resume", str(unfinished_run.path), "--models=sentiment_lstm", cwd=Path("/")
    )
    assert result.returncode == 2 and "drop --models" in result.stderr


RECORD = st.dictionaries(
    st.sampled_from(["case", "status", "reason"]), st.text(max_size=20), min_size=1
).map(lambda r: {"record": "result", **r})


@given(records=st.lists(RECORD, min_size=1, max_size=6), cut=st.integers(1, 200))
def test_a_record_cut_short_by_a_kill_is_ignored_then_cut_off(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict], cut: int
) -> None:
    """A journal whose last line a kill cut short reads as the complete records before it, and
    the next append starts on a line of its own."""
    journal = Journal(tmp_path_factory.mktemp("journal") / "journal.jsonl")
    for record in records:
        journal.append(record)
    whole = journal.path.read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1  # where the last record's line starts
    journal.path.write_bytes(whole[: last + min(cut, len(whole) - last - 1)])
    assert journal.records()[0] == records[:-1]
    journal.repair()
    journal.append({"record": "start", "case": "next"})
    assert journal.records()[0] == [*records[:-1], {"record": "start", "case": "next"}]
    assert os.path.getsize(journal.path) == journal.records()[1]


def test_the_matrix_keeps_cases_that_cannot_run_here_with_their_reason() -> None:
    def backend(requires: Cap, devices: tuple[str, ...]) -> Backend:
        return Backend(
            "probe", requires, devices, "inference", prepare=lambda *args: None, summary=""
        )

    transformer, lstm = get_spec("transformer_text_classifier"), get_spec("sentiment_lstm")
    known = skip_reason(transformer, backend(Cap.QUANT_DYNAMIC, ("cpu",)), "cpu")
    assert known == f"known failure: {transformer.known_failures[Cap.QUANT_DYNAMIC]}"
    assert skip_reason(lstm, get_backend("onnxruntime"), "cuda") == (
        "backend onnxruntime runs on cpu only"
    )
    autocast = backend(Cap.AMP, ("cpu", "cuda"))
    bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # torch's own word, not our probe
    assert skip_reason(lstm, autocast, "cpu") == (None if bf16 else ONEDNN_BF16.missing_reason())
    # a CPU feature does not matter to a CUDA run; CUDA itself does
    cuda = torch.cuda.is_available()
    assert skip_reason(lstm, autocast, "cuda") == (None if cuda else CUDA.missing_reason())


@pytest.mark.slow
def test_plain_pytest_benchmark_json_lists_the_cases_skipped_here(tmp_path: Path) -> None:
    out = tmp_path / "plain.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "bench"), "-q", "-p", "no:cacheprovider"]
        + ["--benchmark-only", f"--benchmark-json={out}", "--benchmark-max-time=0.01"]
        + ["--bench-warmup=0", "--bench-models=needs_a_teleporter", "--bench-sizes=tiny"]
        + ["--bench-batch-sizes=1", "--bench-kinds=inference", "-rs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, PLUGINS_ENV: "misbehaving_models", "PYTHONPATH": str(PLUGIN_DIR)},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "SKIPPED [1] bench/bench_inference.py: needs teleporter (" in result.stdout
    frame = collate([out]).set_index("backend")
    assert frame.loc["eager", "status"] == "passed"
    assert frame.loc["torchscript", "status"] == "skipped"
    assert frame.loc["torchscript", "reason"].startswith("needs teleporter (a device that")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a torchgauge run directory (no run.json)"),
        ("{not json", "run.json: not a usable run description"),
        ('{"format": 99}', "run.json: not a usable run description (format 99, expected 2)"),
    ],
)
def test_resume_of_what_is_not_a_run_is_one_line_exit_2(
    content: str | None, message: str, tmp_path: Path
) -> None:
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    before = sorted(tmp_path.iterdir())
    result = torchgauge_in_this_process("run", "--resume", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchgauge: error: ") and message in lines[0]
    assert sorted(tmp_path.iterdir()) == before
