"""What ``torchgauge compare`` prints and writes: Markdown, HTML and CSV of a comparison.

A run comparison (``bench.comparison.compare``) is one table sorted by change, worst slow-down
first, under a header naming both sides; a machine comparison (``bench.hardware``) is a table of
speed-ups per benchmark with a column per configuration, and the geometric-mean summary.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report import write_text_atomically

UNITS = {"seconds": ("ms", 1e3), "instructions": ("instructions", 1.0)}


@dataclass(frozen=True)
class Part:
    title: str
    table: pd.DataFrame


def run_comparison_parts(table: pd.DataFrame, wall: pd.DataFrame | None = None) -> list[Part]:
    """The comparison table as people read it: medians in their unit, the interval as one cell;
    for instruction counts, the same workloads' wall-clock comparison beside them."""
    unit, scale = UNITS[table["metric"].iloc[0]]
    shown = pd.DataFrame(
        {
            "benchmark": table["name"],
            f"base_{unit}": table["base_median"] * scale,
            f"cand_{unit}": table["cand_median"] * scale,
            "ratio": table["ratio"].round(4),
            "ci": [
                f"{low:.3f}-{high:.3f}"
                for low, high in zip(table["ci_low"], table["ci_high"], strict=True)
            ],
            "change_pct": table["change_pct"].round(2),
            "noise_pct": table["noise_pct"].round(2),
            "mdc_pct": table["mdc_pct"].round(1),
            "q_value": table["q_value"],
            "verdict": table["verdict"],
        }
    )
    if wall is not None and not wall.empty:
        key = table["name"].map(workload)
        by_workload = wall.assign(key=wall["name"].map(workload)).set_index("key")
        for column, source in (
            ("wall_change_pct", "change_pct"),
            ("wall_noise_pct", "noise_pct"),
            ("wall_verdict", "verdict"),
        ):
            values = key.map(by_workload[source])
            shown[column] = values.round(2) if source != "verdict" else values
    counts = table["verdict"].value_counts()
    summary = pd.DataFrame({"verdict": counts.index, "benchmarks": counts.to_numpy()}).sort_values(
        "verdict"
    )
    return [Part("Verdicts", summary), Part("Per benchmark, sorted by change", shown)]


def workload(name: str) -> str:
    """A case id without its kind: ``instructions-mlp.full-cpu-eager-b1`` and
    ``inference-mlp.full-cpu-eager-b1`` are the same workload, counted and timed."""
    return name.split("-", 1)[1] if "-" in name else name


def render_markdown(title: str, header: list[tuple[str, str]], parts: list[Part]) -> str:
    lines = [f"# {title}", ""] + [f"- **{k}**: {v}" for k, v in header]
    for part in parts:
        shown = part.table.astype(object).where(part.table.notna(), None)
        lines += ["", f"## {part.title}", "", shown.to_markdown(index=False, floatfmt=".4g")]
    return "\n".join(lines) + "\n"


def render_html(title: str, header: list[tuple[str, str]], parts: list[Part]) -> str:
    body = [f"<h1>{html.escape(title)}</h1><ul>"]
    body += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in header]
    body.append("</ul>")
    for part in parts:
        body.append(f"<h2>{html.escape(part.title)}</h2>")
        body.append(part.table.to_html(index=False, na_rep="", float_format="{:.4g}".format))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def write_outputs(
    out: Path, title: str, header: list[tuple[str, str]], parts: list[Part], csv: pd.DataFrame
) -> list[Path]:
    """comparison.md, comparison.html and comparison.csv in ``out``, each whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("comparison.md", render_markdown(title, header, parts)),
        ("comparison.html", render_html(title, header, parts)),
    ):
        write_text_atomically(out / name, text)
        written.append(out / name)
    with tempfile.NamedTemporaryFile("w", dir=out, suffix=".csv", delete=False) as file:
        csv.to_csv(file, index=False)
    Path(file.name).replace(out / "comparison.csv")
    written.append(out / "comparison.csv")
    return written
