"""Collate pytest-benchmark JSON files into one tidy pandas table, and write the reports.

One row per case: timing statistics in milliseconds, derived throughput, every ``extra_info``
field, and the machine it ran on; a case that was not measured (skipped on this machine, failed,
crashed or timed out) is a row too, with its ``status`` and ``reason``. Outputs: ``results.csv``,
``report.md``, ``report.html`` and ``latency.png``. Column meanings: ``reports/README.md``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.journal import FAILED, STATUSES

STAT_COLUMNS = ("median", "iqr", "mean", "stddev", "min", "max", "q1", "q3")
CASE_COLUMNS = ["model", "size", "backend", "device", "batch_size"]
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
)
OUTPUT_FILES = ("results.csv", "report.md", "report.html", "latency.png")
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
        if missing := [c for c in CASE_COLUMNS if c not in row]:
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
        batch = extra.get("batch_size")
        # throughput counts samples, not calls (catalog B35): batch / median seconds per call
        row["samples_per_s"] = (
            batch / stats["median"] if isinstance(batch, int) and stats["median"] > 0 else None
        )
        row.update(context)
        if "input_shapes" in row:
            row["input_shapes"] = json.dumps(row["input_shapes"])
        yield row
    for outcome in _outcomes(data):
        yield {**outcome, "threads": ours.get("threads"), **context}


def collate(paths: Iterable[str | Path]) -> pd.DataFrame:
    """All benchmarks of all files in one DataFrame; every file is validated before any is used."""
    loaded = [(Path(p), _read_json(Path(p))) for p in paths]
    if not loaded:
        raise ReportError("no benchmark JSON files given")
    frame = pd.DataFrame([row for path, data in loaded for row in _rows(path, data)])
    if frame.empty:
        raise ReportError(f"no benchmarks in {', '.join(str(p) for p, _ in loaded)}")
    # counts stay integers where unmeasured rows leave gaps (pandas would make them floats)
    counts = [c for c in INTEGER_COLUMNS if c in frame.columns]
    frame[counts] = frame[counts].astype("Int64")
    leading = [c for c in LEADING_COLUMNS if c in frame.columns]
    return frame[leading + [c for c in frame.columns if c not in leading]]


def _has_cases(frame: pd.DataFrame) -> bool:
    """Rows from torchgauge's benchmarks carry the case columns; other suites' rows may not."""
    return set(CASE_COLUMNS) <= set(frame.columns)


def _latency_plot(frame: pd.DataFrame, path: Path) -> None:
    """Median latency (bars from q1 to q3) per model and backend, a panel per device and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no case was measured", ha="center", va="center")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    has_cases = _has_cases(frame)
    frame = frame.assign(
        label=frame["model"] + "." + frame["size"] if has_cases else frame["name"],
        backend=frame["backend"] if has_cases else "value",
        panel=(frame["device"] + ", batch " + frame["batch_size"].astype(str))
        if has_cases
        else "all",
    )
    panels = sorted(frame["panel"].unique())
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        part = frame[frame["panel"] == panel]
        median = part.pivot_table(
            index="label", columns="backend", values="median_ms", aggfunc="median"
        )
        quartiles = [
            part.pivot_table(
                index="label", columns="backend", values=q, aggfunc="median"
            ).reindex_like(median)
            for q in ("q1_ms", "q3_ms")
        ]
        # asymmetric bars from the first to the third quartile; shape (backends, 2, models)
        spans = np.stack(
            [(median - quartiles[0]).T.to_numpy(), (quartiles[1] - median).T.to_numpy()], axis=1
        )
        median.plot.bar(ax=ax, yerr=spans, logy=True, rot=0, capsize=2)
        ax.set_title(f"median latency ({panel})")
        ax.set_xlabel("")
        ax.set_ylabel("ms (log scale)")
        ax.legend(title="backend", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary_table(measured: pd.DataFrame) -> pd.DataFrame:
    """Median ms per (model, size, device, batch) x backend: the table people read first."""
    if measured.empty:
        return measured
    if not _has_cases(measured):
        return measured[["name", "median_ms"]]
    table = measured.pivot_table(
        index=["model", "size", "device", "batch_size"],
        columns="backend",
        values="median_ms",
        aggfunc="median",
    )
    return table.round(4).reset_index()


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


def _header(frame: pd.DataFrame) -> list[tuple[str, str]]:
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
    "parity_max_abs_diff",
    "parity_ok",
]
FAILURE_COLUMNS = [*CASE_COLUMNS, "status", "error_type", "signal", "reason"]
SKIP_COLUMNS = [*CASE_COLUMNS, "reason"]


def _sections(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame | None]]:
    """The report's parts in reading order: (title, table), or (alt text, None) for the plot.
    A part with nothing to show is left out."""
    measured = frame[frame["status"] == "passed"]
    failed = frame[frame["status"].isin(FAILED)]
    skipped = frame[frame["status"] == "skipped"]
    details = _columns(measured, DETAIL_COLUMNS)
    sections = [
        ("Median latency (ms) by backend", _summary_table(measured)),
        ("Failed, crashed or timed-out cases", _columns(failed, FAILURE_COLUMNS)),
        ("Not measured on this machine", _columns(skipped, SKIP_COLUMNS)),
        ("Backends outside their parity tolerance", details.loc[_parity_failures(measured).index]),
        ("median latency by model and backend", None),
        ("All measured benchmarks", details),
    ]
    return [(title, table) for title, table in sections if table is None or len(table)]


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``path`` so that readers see the old file or the whole new one, never a part."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}-", delete=False
    ) as f:
        f.write(text)
    os.replace(f.name, path)


def write_report(frame: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write every output into ``out_dir``; each appears whole or not at all (temp + rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    header, sections = _header(frame), _sections(frame)

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".report-") as staging:
        staged = Path(staging)
        frame.to_csv(staged / "results.csv", index=False)
        _latency_plot(frame[frame["status"] == "passed"], staged / "latency.png")
        png = base64.b64encode((staged / "latency.png").read_bytes()).decode()

        md = ["# torchgauge benchmark report", ""]
        md += [f"- **{key}**: {value}" for key, value in header]
        body = ["<h1>torchgauge benchmark report</h1><ul>"]
        body += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in header]
        body.append("</ul>")
        for title, table in sections:
            if table is None:
                md += ["", f"![{title}](latency.png)"]
                body.append(f"<img alt='{title}' src='data:image/png;base64,{png}'>")
            else:
                shown = table.astype(object).where(table.notna(), None)  # blank, not "nan"
                md += ["", f"## {title}", "", shown.to_markdown(index=False, floatfmt=".6g")]
                body.append(f"<h2>{html.escape(title)}</h2>{table.to_html(index=False, na_rep='')}")
        (staged / "report.md").write_text("\n".join([*md, ""]))
        (staged / "report.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>torchgauge report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
            + "".join(body)
            + "</body></html>"
        )
        written = {}
        for name in OUTPUT_FILES:
            os.replace(staged / name, out_dir / name)
            written[name] = out_dir / name
    return written
