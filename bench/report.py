"""Collate pytest-benchmark JSON files into one tidy pandas table, and write the reports.

One row per case: timing statistics in milliseconds, derived throughput and efficiency, every
``extra_info`` field, and the machine it ran on; a case that was not measured (skipped on this
machine, failed, crashed or timed out) is a row too, with its ``status`` and ``reason``. Outputs:
``results.csv``, ``report.md``, ``report.html``, ``latency.png``, and ``amp_speedup.png`` and
``quantisation.png`` where those kinds were measured; the sections are ``bench.tables``. Column
meanings: ``reports/README.md``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import tables
from bench.journal import CASE_COLUMNS, FAILED, STATUSES

STAT_COLUMNS = ("median", "iqr", "mean", "stddev", "min", "max", "q1", "q3")
LEADING_COLUMNS = [
    *CASE_COLUMNS,
    "status",
    "median_ms",
    "iqr_ms",
    "mean_ms",
    "stddev_ms",
    "rounds",
    "ops_per_s",
    "samples_per_s",
    "gflops_per_s",
    "pct_of_peak",
    "peak_memory_mb",
]
INTEGER_COLUMNS = (
    "batch_size",
    "rounds",
    "iterations",
    "params",
    "flops",
    "threads",
    "warmup_calls",
    "usable_cpus",
    "exit_code",
    "peak_memory_bytes",
    "state_dict_bytes",
    "float32_state_dict_bytes",
    "artifact_bytes",
    "quality_batch",
    "steps",
    "profiled_calls",
    "parity_steps",
)
OUTPUT_FILES = ("results.csv", "report.md", "report.html", "latency.png")
PLOT_FILES = ("latency.png", "amp_speedup.png", "quantisation.png")  # the last two where useful
# machine facts recorded by every torchgauge run (``impl.machine.machine_info``), as columns
MACHINE_COLUMNS = {
    "cpu": "cpu_model",
    "cpu_capability": "cpu_capability",
    "onednn_bf16": "onednn_bf16",
    "quantized_engine": "quantized_engine",
    "usable_cpus": "usable_cpus",
    "gpu": "gpu",
    "torch_version": "torch",
}
# what every torchgauge row has had since the first format; older rows lack the newer case columns,
# and were inference cases in float32
IDENTITY_COLUMNS = ("model", "size", "device", "backend", "batch_size")
BEFORE_KINDS = {"kind": "inference", "phase": "inference", "precision": "float32"}
# extra_info fields holding lists, kept in results.csv as JSON
JSON_COLUMNS = ("input_shapes", "hot_spots", "instructions")
# kinds whose timed quantity is a whole window or process, not one call: no throughput from it
NOT_ONE_CALL = ("profile", "instructions")


class ReportError(ValueError):
    """An input file that is missing, unreadable or not pytest-benchmark JSON."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ReportError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    for i, bench in enumerate(data["benchmarks"]):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not isinstance(stats, dict) or any(
            not isinstance(stats.get(k), int | float) for k in ("median", "mean")
        ):
            raise ReportError(f"{path}: benchmark #{i} has no numeric stats (median, mean)")
    if not isinstance(_outcomes(data), list):
        raise ReportError(f"{path}: 'torchgauge.outcomes' is not a list")
    for i, row in enumerate(_outcomes(data)):
        if not isinstance(row, dict) or row.get("status") not in STATUSES[1:]:
            raise ReportError(f"{path}: outcome #{i} has no status among {STATUSES[1:]}")
        if missing := [c for c in IDENTITY_COLUMNS if c not in row]:
            raise ReportError(f"{path}: outcome #{i} lacks {missing}")
    return data


def _outcomes(data: dict) -> list:
    """Cases a torchgauge run did not measure, with why (absent from other tools' JSON)."""
    ours = data.get("torchgauge")
    return ours.get("outcomes", []) if isinstance(ours, dict) else []


def _rows(path: Path, data: dict) -> Iterable[dict]:
    machine = data.get("machine_info", {}) or {}
    ours = machine.get("torchgauge", {}) or {}
    commit = data.get("commit_info", {}) or {}
    context = {
        "source": path.name,
        "datetime": data.get("datetime"),
        "commit": (commit.get("id") or "")[:12] or None,
        "machine": machine.get("node"),
        **{column: ours.get(key) for column, key in MACHINE_COLUMNS.items()},
        "python_version": machine.get("python_version"),
    }
    context["cpu"] = context["cpu"] or (machine.get("cpu") or {}).get("brand_raw")
    for bench in data["benchmarks"]:
        stats, extra = bench["stats"], bench.get("extra_info", {}) or {}
        row = {
            f"{k}_ms": stats[k] * 1e3 for k in STAT_COLUMNS if isinstance(stats.get(k), int | float)
        }
        row.update(
            name=bench.get("name"),
            group=bench.get("group"),
            rounds=stats.get("rounds"),
            iterations=stats.get("iterations"),
            ops_per_s=stats.get("ops"),
            case=bench.get("param"),
            status="passed",
        )
        row.update(extra)
        if "model" in row:
            row = {**BEFORE_KINDS, **row}
        row.update(_derived(row, stats["median"], ours.get("matmul_peak_gflops") or {}))
        row.update(context)
        for column in JSON_COLUMNS:
            if column in row:
                row[column] = json.dumps(row[column])
        yield row
    for outcome in _outcomes(data):
        yield {**BEFORE_KINDS, **outcome, "threads": ours.get("threads"), **context}


def _derived(row: dict, median_s: float, peaks: dict) -> dict:
    """Throughput and efficiency of a measured row. Throughput counts samples, not calls
    (catalog B35): batch / median seconds per call. GFLOP/s is FLOPs per call / median, and
    % of peak compares it with this machine's matmul rate in the row's precision. A profiled
    window, or a valgrind process counting instructions, is not one call: it gets neither."""
    batch, flops, memory = row.get("batch_size"), row.get("flops"), row.get("peak_memory_bytes")
    derived = {
        "samples_per_s": None,
        "gflops_per_s": None,
        "peak_gflops": None,
        "pct_of_peak": None,
        "peak_memory_mb": memory / 1e6 if isinstance(memory, int) else None,
    }
    if row.get("kind") in NOT_ONE_CALL or median_s <= 0:
        return derived
    if isinstance(batch, int):
        derived["samples_per_s"] = batch / median_s
    if isinstance(flops, int) and flops > 0:
        derived["gflops_per_s"] = flops / median_s / 1e9
        derived["peak_gflops"] = (peaks.get(row.get("device")) or {}).get(row.get("precision"))
        if derived["peak_gflops"]:
            derived["pct_of_peak"] = 100 * derived["gflops_per_s"] / derived["peak_gflops"]
    return derived


def collate(paths: Iterable[str | Path]) -> pd.DataFrame:
    """All benchmarks of all files in one DataFrame; every file is validated before any is used."""
    loaded = [(Path(p), _read_json(Path(p))) for p in paths]
    if not loaded:
        raise ReportError("no benchmark JSON files given")
    frame = pd.DataFrame([row for path, data in loaded for row in _rows(path, data)])
    if frame.empty:
        raise ReportError(f"no benchmarks in {', '.join(str(p) for p, _ in loaded)}")
    frame.attrs["matmul_peaks"] = _matmul_peaks(data for _, data in loaded)
    # counts stay integers where unmeasured rows leave gaps (pandas would make them floats)
    counts = [c for c in INTEGER_COLUMNS if c in frame.columns]
    frame[counts] = frame[counts].astype("Int64")
    leading = [c for c in LEADING_COLUMNS if c in frame.columns]
    return frame[leading + [c for c in frame.columns if c not in leading]]


def _matmul_peaks(files: Iterable[dict]) -> dict[str, list[str]]:
    """Each device's measured matmul peaks as the report header shows them, one entry per
    distinct measurement: "float32 95.1, bfloat16 12.3"."""
    peaks: dict[str, list[str]] = {}
    for data in files:
        ours = (data.get("machine_info") or {}).get("torchgauge") or {}
        for device, rates in (ours.get("matmul_peak_gflops") or {}).items():
            text = ", ".join(f"{precision} {gflops:,.1f}" for precision, gflops in rates.items())
            peaks.setdefault(device, [])
            if text not in peaks[device]:
                peaks[device].append(text)
    return peaks


HEADER_COLUMNS = (
    "machine",
    "cpu",
    "cpu_capability",
    "onednn_bf16",
    "quantized_engine",
    "threads",
    "usable_cpus",
    "gpu",
    "torch_version",
    "commit",
    "datetime",
)


def _header(frame: pd.DataFrame, peaks: dict[str, list[str]]) -> list[tuple[str, str]]:
    counts = frame["status"].value_counts()
    facts = [
        (
            "cases",
            f"{len(frame)} ({', '.join(f'{counts[s]} {s}' for s in STATUSES if s in counts)})",
        ),
        ("source files", ", ".join(sorted(frame["source"].unique()))),
    ]
    for column in HEADER_COLUMNS:
        if column in frame.columns:
            values = sorted({str(v) for v in frame[column].dropna()})
            facts.append((column, ", ".join(values) if values else "n/a"))
    for device, measurements in sorted(peaks.items()):
        facts.append((f"matmul peak GFLOP/s ({device})", " | ".join(measurements)))
    return facts


def _parity_failures(measured: pd.DataFrame) -> pd.DataFrame:
    if "parity_ok" not in measured.columns:
        return measured.iloc[0:0]
    return measured[measured["parity_ok"] == False]  # noqa: E712  (NaN, from other tools, is fine)


def _columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame.columns]]


DETAIL_COLUMNS = [
    *CASE_COLUMNS,
    "median_ms",
    "iqr_ms",
    "rounds",
    "samples_per_s",
    "params",
    "flops",
    "gflops_per_s",
    "pct_of_peak",
    "peak_memory_mb",
    "parity_max_abs_diff",
    "parity_ok",
]
FAILURE_COLUMNS = [*CASE_COLUMNS, "status", "error_type", "signal", "reason"]
SKIP_COLUMNS = [*CASE_COLUMNS, "reason"]


@dataclass(frozen=True)
class Section:
    """One part of the report: a table, a plot, or both (the plot under the table)."""

    title: str
    table: pd.DataFrame | None = None
    plot: str | None = None  # a PNG in the report's directory


def _sections(frame: pd.DataFrame, plots: set[str]) -> list[Section]:
    """The report's parts in reading order; a part with nothing to show is left out."""
    measured = frame[frame["status"] == "passed"]
    failed = frame[frame["status"].isin(FAILED)]
    skipped = frame[frame["status"] == "skipped"]
    details = _columns(measured, DETAIL_COLUMNS)
    sections = [
        Section("Time per kind", tables.time_per_kind(frame)),
        Section("Median latency (ms) by backend", tables.latency_by_backend(measured)),
        Section("Failed, crashed or timed-out cases", _columns(failed, FAILURE_COLUMNS)),
        Section("Not measured on this machine", _columns(skipped, SKIP_COLUMNS)),
        Section(
            "Backends outside their parity tolerance",
            details.loc[_parity_failures(measured).index],
        ),
        Section("Median latency by model and backend", plot="latency.png"),
        Section("Training throughput", tables.training_throughput(measured)),
        Section("AMP speed-up and parity", tables.amp_speedup(measured), "amp_speedup.png"),
        Section(
            "Quantisation: size, SQNR and latency",
            tables.quantisation(measured),
            "quantisation.png",
        ),
        Section(
            f"Hot spots (top {tables.HOT_SPOTS_SHOWN} operators by self time)",
            tables.hot_spots(measured),
        ),
        Section("Efficiency (% of this machine's matmul peak)", tables.efficiency(measured)),
        Section("CPU vs CUDA", tables.cpu_vs_cuda(measured)),
        Section("All measured benchmarks", details),
    ]
    shown = []
    for section in sections:
        plot = section.plot if section.plot in plots else None
        table = section.table if section.table is not None and len(section.table) else None
        if table is not None or plot is not None:
            shown.append(Section(section.title, table, plot))
    return shown


def _plots(frame: pd.DataFrame, staged: Path) -> set[str]:
    """Draw into ``staged`` every plot that has data, and latency.png always (saying so when no
    case was measured). Returns the names of the files written."""
    measured = frame[frame["status"] == "passed"]
    tables.latency_plot(measured, staged / "latency.png")
    tables.amp_plot(tables.amp_speedup(measured), staged / "amp_speedup.png")
    tables.quantisation_plot(tables.quantisation(measured), staged / "quantisation.png")
    return {name for name in PLOT_FILES if (staged / name).exists()}


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``path`` so that readers see the old file or the whole new one, never a part."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}-", delete=False
    ) as f:
        f.write(text)
    os.replace(f.name, path)


def write_report(frame: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write every output into ``out_dir``; each appears whole or not at all (temp + rename).
    A plot with nothing to show is not written, and one left from an earlier report is removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".report-") as staging:
        staged = Path(staging)
        frame.to_csv(staged / "results.csv", index=False)
        header = _header(frame, frame.attrs.get("matmul_peaks", {}))
        sections = _sections(frame, _plots(frame, staged))
        md = ["# torchgauge benchmark report", ""]
        md += [f"- **{key}**: {value}" for key, value in header]
        body = ["<h1>torchgauge benchmark report</h1><ul>"]
        body += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in header]
        body.append("</ul>")
        for section in sections:
            md += ["", f"## {section.title}"]
            body.append(f"<h2>{html.escape(section.title)}</h2>")
            if section.table is not None:
                table = section.table
                shown = table.astype(object).where(table.notna(), None)  # blank, not "nan"
                md += ["", shown.to_markdown(index=False, floatfmt=".6g")]
                body.append(table.to_html(index=False, na_rep=""))
            if section.plot is not None:
                png = base64.b64encode((staged / section.plot).read_bytes()).decode()
                md += ["", f"![{section.title}]({section.plot})"]
                body.append(
                    f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{png}'>"
                )
        (staged / "report.md").write_text("\n".join([*md, ""]))
        (staged / "report.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>torchgauge report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
            + "".join(body)
            + "</body></html>"
        )
        written = {}
        for name in dict.fromkeys((*OUTPUT_FILES, *PLOT_FILES)):
            if (staged / name).exists():
                os.replace(staged / name, out_dir / name)
                written[name] = out_dir / name
            elif name in PLOT_FILES:
                (out_dir / name).unlink(missing_ok=True)  # stale: this report has no such plot
    return written
