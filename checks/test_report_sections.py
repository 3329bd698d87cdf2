"""The report's derived columns and per-kind sections, from pytest-benchmark JSON written by hand:
every expected figure here is worked out from the inputs, not taken from the code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench import tables
from bench.report import collate, write_report

CASE = {"model": "m", "size": "full", "backend": "eager", "batch_size": 1}


def bench(median_s: float, **extra) -> dict:
    """One benchmark entry as pytest-benchmark writes it, with torchgauge's extra_info."""
    info = {
        "kind": "inference",
        "phase": "inference",
        "precision": "float32",
        "device": "cpu",
        **CASE,
        **extra,
    }
    stats = {k: median_s for k in ("median", "mean", "min", "max", "q1", "q3")}
    return {
        "name": f"bench[{json.dumps(info, sort_keys=True)}]",
        "group": None,
        "param": f"{info['kind']}-{info['model']}-{info['backend']}-{info['device']}",
        "stats": {**stats, "iqr": 0.0, "stddev": 0.0, "rounds": 5, "iterations": 1, "ops": 1},
        "extra_info": info,
    }


def write(tmp_path: Path, name: str, benchmarks: list[dict], peaks: dict | None = None) -> Path:
    path = tmp_path / name
    machine = {"node": "host", "torchgauge": {"matmul_peak_gflops": peaks or {}}}
    path.write_text(json.dumps({"machine_info": machine, "benchmarks": benchmarks}))
    return path


def test_efficiency_is_flops_over_median_against_the_peak_in_the_same_precision(
    tmp_path: Path,
) -> None:
    peaks = {"cpu": {"float32": 40.0, "bfloat16": 8.0}}
    path = write(
        tmp_path,
        "a.json",
        [
            bench(0.5, flops=10_000_000_000, peak_memory_bytes=3_000_000),  # 20 GFLOP/s
            bench(0.5, kind="amp", precision="bfloat16", flops=2_000_000_000),  # 4 GFLOP/s
            bench(0.5, kind="quantised", backend="quant_dynamic", precision="int8", flops=10),
        ],
        peaks,
    )
    frame = collate([path]).set_index("kind")
    assert frame.loc["inference", "gflops_per_s"] == pytest.approx(20.0)
    assert frame.loc["inference", "pct_of_peak"] == pytest.approx(50.0)
    assert frame.loc["inference", "peak_memory_mb"] == pytest.approx(3.0)
    assert frame.loc["amp", "pct_of_peak"] == pytest.approx(50.0)  # 4 of bfloat16's 8
    assert pd.isna(frame.loc["quantised", "pct_of_peak"])  # no int8 peak was measured


def test_a_profiled_window_is_not_a_latency(tmp_path: Path) -> None:
    spots = [{"op": f"aten::op{i}", "calls": 1, "self_ms": 1.0, "self_pct": 10.0} for i in range(8)]
    path = write(tmp_path, "p.json", [bench(2.0, kind="profile", flops=10**9, hot_spots=spots)])
    frame = collate([path])
    assert frame[["samples_per_s", "gflops_per_s"]].isna().all(axis=None)
    assert tables.latency_by_backend(frame).empty
    shown = tables.hot_spots(frame)
    assert shown["rank"].tolist() == list(range(1, tables.HOT_SPOTS_SHOWN + 1))
    assert shown["op"].tolist() == [f"aten::op{i}" for i in range(tables.HOT_SPOTS_SHOWN)]


def test_amp_speedup_is_float32_median_over_autocast_median_per_phase(tmp_path: Path) -> None:
    amp = {"kind": "amp", "max_abs_diff": 0.01}
    path = write(
        tmp_path,
        "amp.json",
        [
            bench(0.010, **amp, phase="inference"),
            bench(0.004, **amp, phase="inference", precision="bfloat16"),
            bench(0.030, **amp, phase="training"),
            bench(0.060, **amp, phase="training", precision="bfloat16", loss_rel_diff=0.02),
        ],
    )
    table = tables.amp_speedup(collate([path])).set_index("phase")
    assert table.loc["inference", "speedup"] == pytest.approx(2.5)
    assert table.loc["training", "speedup"] == pytest.approx(0.5)  # slower: shown, not hidden
    assert table.loc["training", "float32_ms"] == pytest.approx(30.0)
    assert table.loc["training", "loss_rel_diff"] == pytest.approx(0.02)
    assert set(table["precision"]) == {"bfloat16"}


def test_quantisation_puts_size_quality_and_speedup_over_eager_side_by_side(
    tmp_path: Path,
) -> None:
    quality = {
        "kind": "quantised",
        "backend": "quant_dynamic",
        "precision": "int8",
        "state_dict_bytes": 250,
        "float32_state_dict_bytes": 1000,
        "compression": 4.0,
        "sqnr_db": 31.5,
    }
    path = write(
        tmp_path,
        "q.json",
        [
            bench(0.002),
            bench(0.008, batch_size=32),
            bench(0.001, **quality),
            bench(0.016, **quality, batch_size=32),
        ],
    )
    (row,) = tables.quantisation(collate([path])).to_dict("records")
    assert row["backend"] == "quant_dynamic" and row["compression"] == 4.0
    assert row["b1_ms"] == pytest.approx(1.0) and row["b1_speedup"] == pytest.approx(2.0)
    assert row["b32_ms"] == pytest.approx(16.0) and row["b32_speedup"] == pytest.approx(0.5)


def test_cpu_vs_cuda_names_the_faster_device_per_case(tmp_path: Path) -> None:
    cpu = write(tmp_path, "cpu.json", [bench(0.010), bench(0.0001, model="tiny")])
    cuda = write(
        tmp_path,
        "cuda.json",
        [bench(0.002, device="cuda"), bench(0.0004, model="tiny", device="cuda")],
    )
    table = tables.cpu_vs_cuda(collate([cpu, cuda])).set_index("model")
    assert table.loc["m", "cuda_speedup"] == pytest.approx(5.0)
    assert table.loc["m", "faster"] == "cuda"
    assert table.loc["tiny", "cuda_speedup"] == pytest.approx(0.25)
    assert table.loc["tiny", "faster"] == "cpu"  # launch overhead outweighs the arithmetic
    assert tables.cpu_vs_cuda(collate([cpu])).empty  # one device: nothing to compare


def test_time_per_kind_sums_case_durations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.json",
        [
            bench(0.1, case_duration_s=3.0),
            bench(0.1, batch_size=32, case_duration_s=1.0),
            bench(0.1, kind="training", case_duration_s=4.0),
        ],
    )
    table = tables.time_per_kind(collate([path])).set_index("kind")
    assert table.loc["inference", "seconds"] == pytest.approx(4.0)
    assert table.loc["inference", "cases"] == 2
    assert table["share_pct"].tolist() == pytest.approx([50.0, 50.0])


def test_a_report_has_a_section_and_plot_only_for_what_was_measured(tmp_path: Path) -> None:
    amp = {"kind": "amp", "max_abs_diff": 0.01}
    with_amp = write(
        tmp_path,
        "amp.json",
        [bench(0.01), bench(0.01, **amp), bench(0.005, **amp, precision="bfloat16")],
    )
    out = tmp_path / "report"
    written = write_report(collate([with_amp]), out)
    assert "amp_speedup.png" in written and "quantisation.png" not in written
    report = (out / "report.md").read_text()
    assert "## AMP speed-up and parity" in report and "![AMP speed-up and parity]" in report
    assert "## Quantisation" not in report and "## Training throughput" not in report

    without = write(tmp_path, "plain.json", [bench(0.01)])
    write_report(collate([without]), out)  # the same directory, as --force does
    assert not (out / "amp_speedup.png").exists()  # no stale plot from the earlier report
    assert "## AMP speed-up" not in (out / "report.md").read_text()


def test_rows_from_before_kinds_read_as_float32_inference(tmp_path: Path) -> None:
    old = bench(0.01)
    for field in ("kind", "phase", "precision"):
        del old["extra_info"][field]
    outcome = {**CASE, "device": "cpu", "case": "m.full-cpu-eager-b32", "status": "skipped"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"benchmarks": [old], "torchgauge": {"outcomes": [outcome]}}))
    frame = collate([path])
    assert frame["kind"].tolist() == ["inference", "inference"]
    assert frame["precision"].tolist() == ["float32", "float32"]
