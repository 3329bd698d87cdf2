"""The instructions kind: instruction counts by callgrind are deterministic where time is not.

One end-to-end run counts a small model through ``torchgauge run`` as a user would: that is one
valgrind process, about 105 s on the 2-core machine (80 of them importing torch under valgrind),
so every check of a counted run reads the same module-scoped run. The other checks need no
valgrind: which cases the kind has, why some cannot run, and that the counting process builds
the case's model and imports no other model family.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.bench_instructions import (
    FLOPS_PER_COUNT,
    REPEATS,
    STATEMENT,
    callgrind_setup,
    calls_per_count,
)
from bench.cases import KINDS, BenchCase, skip_reason
from bench.cases import bench_cases as selected_cases  # not bench_*: pytest would collect it
from bench.cli import main
from bench.history import History
from checks.commands import torchgauge
from impl import get_spec, list_models, machine
from impl.backends import get_backend
from impl.machine import VALGRIND
from impl.plugins import PLUGINS_ENV

PLUGIN_DIR = Path(__file__).parent / "plugin_models"
SETUP_OF = "from bench.bench_instructions import callgrind_setup\nfrom bench.cases import BenchCase"
COUNTED_MODEL = "mlp_784_128_10"  # small, but with parallel regions (see COUNTING_THREADS)


@dataclass(frozen=True)
class CountedRun:
    result: subprocess.CompletedProcess
    cwd: Path  # where ``torchgauge run`` ran
    run: Path  # the run directory
    benchmark: dict  # the counted case's entry in the run's benchmark.json


@pytest.fixture(scope="module")
def counted_run(tmp_path_factory: pytest.TempPathFactory) -> CountedRun:
    """``torchgauge run --kinds instructions`` on one model at batch 1: one valgrind process."""
    if not VALGRIND.available:
        pytest.skip(VALGRIND.missing_reason())
    cwd = tmp_path_factory.mktemp("instructions")
    runs = cwd / "runs"
    result = torchgauge(
        "run",
        "--kinds",
        "instructions,inference",  # the same call counted and timed
        "--backends",
        "eager",
        "--quick",
        "--models",
        COUNTED_MODEL,
        "--batch-sizes",
        "1",
        "--out",
        str(runs),
        "--db",
        str(cwd / "history.sqlite"),
        # about 105 s alone (163 s while it imported every model family); more on a shared machine
        "--case-timeout",
        "600",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = list(runs.iterdir())
    (benchmark,) = [
        entry
        for entry in json.loads((run / "benchmark.json").read_text())["benchmarks"]
        if entry["extra_info"]["kind"] == "instructions"
    ]
    return CountedRun(result, cwd, run, benchmark)


@pytest.mark.slow
@pytest.mark.xdist_group("counted_run")  # first in the queue: one worker, one valgrind run
def test_a_counted_run_measures_the_instructions_case(counted_run: CountedRun) -> None:
    info = counted_run.benchmark["extra_info"]
    measured = (info["kind"], info["model"], info["backend"], info["device"])
    assert measured == ("instructions", COUNTED_MODEL, "eager", "cpu")


@pytest.mark.slow
@pytest.mark.xdist_group("counted_run")
def test_each_repeat_gives_one_count_per_call(counted_run: CountedRun) -> None:
    info = counted_run.benchmark["extra_info"]
    assert len(info["instructions"]) == REPEATS
    assert info["instructions_number"] >= 1


@pytest.mark.slow
@pytest.mark.xdist_group("counted_run")
def test_most_repeated_counts_agree_within_half_a_percent(counted_run: CountedRun) -> None:
    """The median, which a comparison reads, and the counts below it lie within 0.5% of the
    least: a repeat that holds an allocator's bookkeeping (up to 1.4% more) is not the median."""
    counts = sorted(counted_run.benchmark["extra_info"]["instructions"])
    median = counts[len(counts) // 2]
    assert (median - counts[0]) / counts[0] < 0.005, counts


@pytest.mark.slow
@pytest.mark.xdist_group("counted_run")
def test_a_count_is_that_of_a_torch_forward(counted_run: CountedRun) -> None:
    """Even a 2-in 1-out linear layer goes through torch's dispatcher: tens of thousands of
    instructions a call. Fewer would mean the loop counted nothing, or only the interpreter."""
    assert min(counted_run.benchmark["extra_info"]["instructions"]) > 10_000


@pytest.mark.slow
@pytest.mark.xdist_group("counted_run")
def test_the_history_keeps_the_counts_as_the_instructions_metric(counted_run: CountedRun) -> None:
    counts = counted_run.benchmark["extra_info"]["instructions"]
    with History.open(counted_run.cwd / "history.sqlite", create=False) as history:
        rows = history.measurements()
    by_metric = {metric: group for metric, group in rows.groupby("metric")}
    (counted,) = by_metric["instructions"].itertuples()
    assert counted.kind == "instructions" and counted.samples.tolist() == counts
    # the valgrind process's duration is no latency: the timed rows are the inference kind's
    assert set(by_metric["seconds"]["kind"]) == {"inference"}


@pytest.mark.slow
@pytest.mark.xdist_group("counted_run")
def test_compare_by_instructions_shows_the_wall_clock_beside(counted_run: CountedRun) -> None:
    run = str(counted_run.run)
    result = torchgauge(
        "compare", run, run, "--metric=instructions", "--db=history.sqlite", cwd=counted_run.cwd
    )
    assert result.returncode == 0, result.stderr
    header, _, row = result.stdout.split("## Per benchmark, sorted by change")[1].split("\n")[2:5]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    cells = {k.strip(): v.strip() for k, v in cells.items()}
    assert cells["benchmark"].startswith(f"instructions-{COUNTED_MODEL}")
    assert float(cells["ratio"]) == 1.0 and float(cells["wall_change_pct"]) == 0.0


@given(flops=st.integers(0, 10**12), more=st.integers(0, 10**12))
def test_a_larger_call_is_counted_no_more_often(flops: int, more: int) -> None:
    assert calls_per_count(flops + more) <= calls_per_count(flops)


@given(flops=st.integers(0, 10**12))
def test_a_count_of_several_calls_keeps_to_the_flop_budget(flops: int) -> None:
    calls = calls_per_count(flops)
    assert calls == 1 or calls * flops <= FLOPS_PER_COUNT


def test_the_kind_counts_eager_inference_in_float32_only() -> None:
    cases = selected_cases(devices=["cpu"], kinds=["instructions"], batch_sizes=[1])
    assert {(case.backend, case.phase, case.precision) for case in cases} == {
        ("eager", "inference", "float32")
    }
    assert sorted(case.model for case in cases) == sorted(list_models())


def test_the_kind_is_opt_in() -> None:
    assert "instructions" not in {case.kind for case in selected_cases(devices=["cpu"])}


def test_a_cuda_case_is_skipped_because_callgrind_does_not_see_gpu_work() -> None:
    reason = skip_reason(
        get_spec(COUNTED_MODEL), get_backend("eager"), "cuda", KINDS["instructions"]
    )
    assert reason is not None and "cpu only" in reason and "GPU" in reason


def test_the_counting_process_imports_the_counted_models_family_alone(tmp_path: Path) -> None:
    """Under valgrind each import runs 50 times slower: the process counting an MLP imports no
    other model family, and so not torchvision, which imports ``torch._dynamo``."""
    case = BenchCase("instructions", COUNTED_MODEL, "tiny", "cpu", "eager", batch_size=1)
    script = tmp_path / "count.py"
    imported = "sorted(m for m in sys.modules if m.startswith(('impl.models.', 'torchvision')))"
    script.write_text(f"{callgrind_setup(case, threads=1)}\n{STATEMENT}\nprint(*{imported})\n")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [get_spec(COUNTED_MODEL).build.__module__]


@pytest.fixture
def no_valgrind_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without valgrind: an empty PATH, and features probed afresh (a probe's answer is
    kept for the process, so it is forgotten before and after)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    machine._probe.cache_clear()
    yield
    machine._probe.cache_clear()


@pytest.mark.usefixtures("no_valgrind_on_path")
def test_without_valgrind_the_cases_are_kept_and_skipped_naming_it() -> None:
    cases = selected_cases(devices=["cpu"], kinds=["instructions"], batch_sizes=[1])
    assert {case.model for case in cases} == set(list_models())
    assert {case.skip for case in cases} == {VALGRIND.missing_reason()}
    assert "valgrind not on PATH" in VALGRIND.missing_reason()


def test_list_shows_the_kind_for_every_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    kinds_at = header.index("kinds")
    kinds = {row.split()[0]: row[kinds_at:].split()[0].split(",") for row in rows}
    assert [name for name, listed in kinds.items() if "instructions" not in listed] == []
    assert list(kinds) == list_models()


def test_the_counting_process_builds_a_plugin_model(tmp_path: Path) -> None:
    """valgrind's process runs a script from a temporary directory, where neither the repository
    nor a plugin in the worker's directory is importable by itself: the setup brings the worker's
    import path. Here the setup, made by a process that loaded the plugin, runs in a plain Python
    process from another directory (the statement once, without valgrind)."""
    case = BenchCase("instructions", "needs_a_teleporter", "full", "cpu", "eager", batch_size=2)
    plugin = {PLUGINS_ENV: "misbehaving_models", "PYTHONPATH": str(PLUGIN_DIR)}
    made = subprocess.run(
        [sys.executable, "-c", f"{SETUP_OF}\nprint(callgrind_setup({case!r}, threads=1))"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **plugin},
    )
    assert made.returncode == 0, made.stderr[-3000:]
    script = tmp_path / "count.py"
    script.write_text(f"{made.stdout}\n{STATEMENT}\nprint(model)\n")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, PLUGINS_ENV: "misbehaving_models"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Misbehaving" in result.stdout
