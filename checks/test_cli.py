"""The ``torchgauge`` command and the report pipeline, run as a user would: real pytest-benchmark
JSON from a real (short) benchmark run, real files, real exit codes. Listings and bad input that
is refused before anything runs go through ``main`` in the check's process
(``torchgauge_in_this_process``); commands that run or report do in their own."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.bench_profile import PROFILED_CALLS
from bench.cases import DEFAULT_KINDS
from bench.cli import RESULT_COMMANDS
from bench.report import OUTPUT_FILES, PLOT_FILES, ReportError, collate
from checks.benchmark_files import Bench, benchmark_json
from checks.commands import REPO, snapshot, torchgauge, torchgauge_in_this_process
from impl import list_models
from impl.machine import ONEDNN_BF16
from impl.techniques.registry import get_technique, list_techniques, techniques_markdown


@pytest.fixture(scope="module")
def plain_pytest_json(tmp_path_factory) -> Path:
    """A JSON file made by plain pytest-benchmark, as a user would (eager only, short timing)."""
    out = tmp_path_factory.mktemp("plain") / "plain.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "bench"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-only",
            f"--benchmark-json={out}",
            "--benchmark-max-time=0.02",
            "--benchmark-min-rounds=3",
            "--bench-warmup=1",
            "--bench-kinds=inference",
            "--bench-backends=eager",
            "--bench-sizes=tiny",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.xdist_group("plain_pytest_json")  # one worker, one pytest run
def test_collate_one_row_per_benchmark_with_derived_columns(plain_pytest_json: Path) -> None:
    raw = json.loads(plain_pytest_json.read_text())
    frame = collate([plain_pytest_json])
    assert len(frame) == len(raw["benchmarks"]) == 2 * len(list_models())  # batch 1 and 32, eager
    by_name = frame.set_index("name")
    for bench in raw["benchmarks"]:
        row = by_name.loc[bench["name"]]
        assert row["median_ms"] == pytest.approx(bench["stats"]["median"] * 1e3)
        assert row["rounds"] == bench["stats"]["rounds"]
        batch = bench["extra_info"]["batch_size"]
        # throughput in samples, not calls
        assert row["samples_per_s"] == pytest.approx(batch / bench["stats"]["median"])
        for key, value in bench["extra_info"].items():
            assert key in frame.columns
            if isinstance(value, bool | int | str):
                assert row[key] == value
    assert set(frame["model"]) == set(list_models())
    assert frame["torch_version"].unique().tolist() == [torch.__version__]
    assert (frame["parity_max_abs_diff"] == 0).all()  # eager against itself


@pytest.mark.xdist_group("plain_pytest_json")
def test_report_command_writes_every_output(plain_pytest_json: Path, tmp_path: Path) -> None:
    result = torchgauge(
        "report", str(plain_pytest_json), "--out", str(tmp_path / "r"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "r"
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(json.loads(plain_pytest_json.read_text())["benchmarks"])
    markdown = (out / "report.md").read_text()
    assert all(name in markdown for name in list_models())
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.xdist_group("plain_pytest_json")
def test_report_refuses_to_overwrite_unless_forced(plain_pytest_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert (
        torchgauge("report", str(plain_pytest_json), "--out", str(out), cwd=tmp_path).returncode
        == 0
    )
    before = snapshot(out)
    again = torchgauge("report", str(plain_pytest_json), "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "already holds a report" in again.stderr
    assert snapshot(out) == before
    assert (
        torchgauge(
            "report", str(plain_pytest_json), "--out", str(out), "--force", cwd=tmp_path
        ).returncode
        == 0
    )


def test_the_commands_that_read_results_import_neither_torch_nor_the_registries(
    tmp_path: Path,
) -> None:
    """report, ingest, history, compare and dashboard start in a second, not in the 3 s that
    importing torch, torchvision and every model takes (a property of imports, not a timing)."""
    benches = [Bench("mlp", 1e-3), Bench("cnn", 2e-2, batch_size=32)]
    files = [
        str(benchmark_json(tmp_path / f"{i}.json", f"run-{i}", benches, seed=i)) for i in (1, 2)
    ]
    commands = [
        ["ingest", *files, "--db=h.sqlite"],
        ["history", "--db=h.sqlite"],
        ["report", files[0], "--out=report"],
        ["compare", "run-1", "run-2", "--db=h.sqlite", "--out=comparison"],
        ["dashboard", "--db=h.sqlite", "--out=dashboard"],
    ]
    assert {argv[0] for argv in commands} == RESULT_COMMANDS
    script = (
        "import json, sys\n"
        "from bench.cli import main\n"
        f"codes = [main(argv) for argv in {commands!r}]\n"
        "roots = {name.split('.')[0] for name in sys.modules}\n"
        "print(json.dumps([codes, sorted(roots & {'torch', 'torchvision', 'impl'})]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    codes, imported = json.loads(result.stdout.splitlines()[-1])
    assert codes[:3] + codes[4:] == [0, 0, 0, 0] and codes[3] in (0, 1), result.stderr  # 1: slower
    assert imported == []


CORRUPT_FILES = {
    "truncated.json": ('{"benchmarks": [', "not valid JSON"),
    "list.json": ("[1, 2]", "not a pytest-benchmark JSON file"),
    "no_stats.json": ('{"benchmarks": [{"name": "x"}]}', "has no numeric stats"),
    "binary.json": ("\udcff", "not valid JSON"),
    "bad_outcome.json": (
        '{"benchmarks": [], "torchgauge": {"outcomes": [{"status": "exploded"}]}}',
        "outcome #0 has no status among",
    ),
    "outcome_without_case.json": (
        '{"benchmarks": [], "torchgauge": {"outcomes": [{"status": "error"}]}}',
        "outcome #0 lacks",
    ),
}


@pytest.mark.xdist_group("plain_pytest_json")
@pytest.mark.parametrize("filename", sorted(CORRUPT_FILES))
def test_corrupt_input_is_one_line_exit_2_and_nothing_changes(
    filename: str, plain_pytest_json: Path, tmp_path: Path
) -> None:
    content, message = CORRUPT_FILES[filename]
    bad = tmp_path / filename
    bad.write_bytes(content.encode("utf-8", "surrogateescape"))
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    # a good file first: nothing may be written for it either
    result = torchgauge("report", str(plain_pytest_json), str(bad), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchgauge: error: ") and filename in lines[0]
    assert message in lines[0]
    assert snapshot(out) == before
    with pytest.raises(ReportError, match=message):
        collate([bad])


def test_missing_file_is_named(tmp_path: Path) -> None:
    result = torchgauge(
        "report", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r"), cwd=tmp_path
    )
    assert result.returncode == 2 and "nope.json: no such file" in result.stderr
    assert not (tmp_path / "r").exists()


def test_run_with_an_unknown_model_fails_before_writing(tmp_path: Path) -> None:
    result = torchgauge_in_this_process(
        "run", "--models", "mlp_784_128", "--out", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "torchgauge: error: unknown model 'mlp_784_128'; did you mean mlp_784_128_10, "
        "mlp_784_256_10_act, mlp_2_h_1?"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has CUDA, so the request is valid"
)
def test_run_on_cuda_without_cuda_fails_before_writing(tmp_path: Path) -> None:
    result = torchgauge_in_this_process(
        "run", "--device", "cuda", "--out", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--device cuda requested but CUDA is not available" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_machine_prints_what_every_run_records(tmp_path: Path) -> None:
    result = torchgauge_in_this_process("machine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    facts = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["onednn_bf16"] == str(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert facts["quantized_engine"] == torch.backends.quantized.engine
    assert int(facts["usable_cpus"]) <= int(facts["cpu_count"])


def test_list_prints_every_registered_model(tmp_path: Path) -> None:
    result = torchgauge_in_this_process("list", cwd=tmp_path)
    assert result.returncode == 0
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert listed == list_models()


def test_list_techniques_names_each_techniques_code_and_checks(tmp_path: Path) -> None:
    """One row per registered technique, in the registry's order, with its files; --markdown is
    the README's table."""
    result = torchgauge_in_this_process("list", "--techniques", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == list_techniques()
    for row in rows:
        spec = get_technique(row[0])
        assert spec.checks in row and all(path in row for path in spec.implementation)
    markdown = torchgauge_in_this_process("list", "--techniques", "--markdown", cwd=tmp_path)
    assert markdown.returncode == 0 and markdown.stdout.strip() == techniques_markdown()


def test_list_markdown_without_techniques_is_a_usage_error(tmp_path: Path) -> None:
    result = torchgauge_in_this_process("list", "--markdown", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "torchgauge: error: --markdown goes with --techniques"
    ]


@dataclass(frozen=True)
class QuickRun:
    result: subprocess.CompletedProcess
    run: Path  # the run directory
    frame: pd.DataFrame  # its results.csv


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """The main job, narrowed to one small model: ``torchgauge run --quick`` through every
    default kind at the default batch sizes. One run serves the checks of a run's outputs (each
    run costs two processes importing torch, a supervisor and the workers' forkserver)."""
    cwd = tmp_path_factory.mktemp("quick")
    runs = cwd / "runs"
    result = torchgauge(
        "run", "--quick", "--models=cifar_cnn_2conv", "--sizes=tiny", f"--out={runs}", cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = list(runs.iterdir())
    return QuickRun(result, run, pd.read_csv(run / "results.csv"))


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")  # one worker, one run
def test_a_quick_run_directory_appears_whole_with_every_case_passed(quick_run: QuickRun) -> None:
    run, frame = quick_run.run, quick_run.frame
    outputs = {*OUTPUT_FILES, *PLOT_FILES, "benchmark.json", "run.json", "journal.jsonl"}
    assert {p.name for p in run.iterdir()} == outputs | {"worker.log", "traces"}
    assert json.loads((run / "run.json").read_text())["state"] == "complete"
    assert (frame["status"] == "passed").all(), frame[["case", "reason"]]
    assert f"[{len(frame)}/{len(frame)}]" in quick_run.result.stderr  # the progress display


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_a_run_records_what_its_numbers_depend_on_with_every_row(quick_run: QuickRun) -> None:
    frame = quick_run.frame
    assert frame["cpu_capability"].unique().tolist() == [torch.backends.cpu.get_cpu_capability()]
    assert frame["onednn_bf16"].unique().tolist() == [ONEDNN_BF16.available]
    assert frame["quantized_engine"].notna().all() and frame["threads"].notna().all()
    assert (
        f"**cpu_capability**: {torch.backends.cpu.get_cpu_capability()}"
        in (quick_run.run / "report.md").read_text()
    )


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_pytest_benchmark_s_own_compare_reads_a_run(quick_run: QuickRun, tmp_path: Path) -> None:
    compare = subprocess.run(  # in tmp_path: it makes a .benchmarks storage in its directory
        [
            sys.executable,
            "-c",
            "from pytest_benchmark.cli import main; main()",
            "compare",
            str(quick_run.run / "benchmark.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert compare.returncode == 0 and "cifar_cnn_2conv" in compare.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_inference_is_measured_on_every_backend_at_the_default_batch_sizes(
    quick_run: QuickRun,
) -> None:
    inference = quick_run.frame[quick_run.frame["kind"] == "inference"]
    backends = ["eager", "onnxruntime", "torchscript"]  # the model's float32 backends
    batches = (1, 32)  # the documented defaults
    assert sorted(zip(inference["backend"], inference["batch_size"], strict=True)) == [
        (backend, batch) for backend in backends for batch in batches
    ]
    assert inference["parity_ok"].all()
    by_backend = inference.set_index("backend")
    assert (by_backend.loc["eager", "peak_memory_bytes"] > 0).all()
    assert by_backend.loc["onnxruntime", "peak_memory_bytes"].isna().all()  # not torch's allocator


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_a_quick_run_measures_every_default_kind_of_a_model(quick_run: QuickRun) -> None:
    """Each default kind is a row of results.csv with what its section needs; training, amp and
    profile at the largest batch only."""
    frame = quick_run.frame
    assert set(frame["kind"]) == set(DEFAULT_KINDS)
    by_kind = {kind: rows for kind, rows in frame.groupby("kind")}
    for kind in ("training", "amp", "profile"):
        assert set(by_kind[kind]["batch_size"]) == {32}

    quantised = by_kind["quantised"].set_index("backend")
    assert set(quantised.index) == {"quant_dynamic", "quant_static"}
    assert (quantised["state_dict_bytes"] < quantised["float32_state_dict_bytes"]).all()
    assert (quantised["sqnr_db"] > 10).all() and quantised["top1_agreement"].between(0, 1).all()
    amp = by_kind["amp"]
    assert sorted(zip(amp["phase"], amp["precision"], strict=True)) == [
        ("inference", "bfloat16"),
        ("inference", "float32"),
        ("training", "bfloat16"),
        ("training", "float32"),
    ]
    (training,) = by_kind["training"].itertuples()
    assert training.steps >= 5 and training.samples_per_s > 0 and training.pct_of_peak > 0
    (profile,) = by_kind["profile"].itertuples()
    spots = json.loads(profile.hot_spots)
    assert any(spot["op"] == "aten::convolution" or "conv" in spot["op"] for spot in spots)
    peaks = json.loads((quick_run.run / "run.json").read_text())["machine_info"]["torchgauge"]
    # a bfloat16 peak only where the CPU has native bfloat16: emulated, it is no peak
    native_bf16 = {"bfloat16"} if ONEDNN_BF16.available else set()
    assert set(peaks["matmul_peak_gflops"]["cpu"]) == {"float32"} | native_bf16


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_the_report_has_a_section_for_every_kind(quick_run: QuickRun) -> None:
    report = (quick_run.run / "report.md").read_text()
    for section in (
        "## Time per kind",
        "## Median latency (ms) by backend",
        "## Training throughput",
        "## AMP speed-up and parity",
        "## Quantisation: size, SQNR and latency",
        "## Hot spots (top 5 operators by self time)",
        "## Efficiency (% of this machine's matmul peak)",
    ):
        assert section in report


@pytest.mark.slow
@pytest.mark.xdist_group("quick_run")
def test_the_profile_s_trace_loads_in_tensorboard_s_profiler_plugin(
    quick_run: QuickRun, tmp_path: Path
) -> None:
    """tensorboard --logdir <run>/traces: the plugin's own loader reads the case's run."""
    from torch_tb_profiler import io as tb_io
    from torch_tb_profiler.profiler.loader import RunLoader

    (profile,) = quick_run.frame[quick_run.frame["kind"] == "profile"].itertuples()
    (trace_run,) = (quick_run.run / "traces").iterdir()
    assert trace_run.name == profile.case
    with tb_io.Cache(str(tmp_path / "tb-cache")) as caches:
        loaded = RunLoader(trace_run.name, str(trace_run), caches).load()
    (operators,) = [p.operation_table_by_name["data"] for p in loaded.get_profiles()]
    assert {row["name"]: row["calls"] for row in operators}["aten::conv2d"] == 2 * PROFILED_CALLS
