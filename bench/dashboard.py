"""The dashboard: a static site of benchmark trends and hardware comparisons, from the history.

``torchgauge dashboard`` writes two pages into ``--out`` (default ``reports/dashboard``):

    index.html     per benchmark series (one benchmark, metric, machine and thread count), its
                   median over runs with a 95% band, and each run's change against the series'
                   previous run marked where ``bench.comparison.compare`` flags it
    hardware.html  the same benchmarks across machine configurations (machine + threads) as
                   speed-ups against a baseline chosen on the page, with geometric means

Each page is one self-contained file: its data as inline JSON, the hand-written script and style
sheet of ``bench/dashboard_site/`` inlined, the charts drawn as SVG by that script. Nothing is
fetched (Chromium refuses ``fetch`` on ``file://``, and a dashboard attached to a CI job must not
depend on a network), so the pages open from disk anywhere.

The statistics are ``bench.comparison``'s and ``bench.hardware``'s; this module only chooses what
to compare with what. A run is compared with the previous run of the same series through one
``compare`` call over the whole pair of runs, so that its false-discovery correction sees every
benchmark the two runs share, as ``torchgauge compare`` would.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.history import INSTRUCTIONS, SECONDS, History
from bench.journal import CASE_COLUMNS

DEFAULT_OUT = Path("reports/dashboard")
SITE = Path(__file__).with_name("dashboard_site")
PAGES = ("index.html", "hardware.html")
# how a metric is shown: its unit on the axes, and the factor from stored values to that unit
UNITS = {SECONDS: ("ms", 1e3), INSTRUCTIONS: ("instructions", 1.0)}
BAND_CONFIDENCE = 0.95


class DashboardError(ValueError):
    """A dashboard that cannot be written as asked (an unknown baseline); one line."""


# -- trends ----------------------------------------------------------------------------------


def _threads(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _series_key(row: Any) -> tuple:
    """What makes a series: the same benchmark and metric, on the same machine and threads."""
    return (row.name, row.metric, row.fingerprint, _threads(row.threads))


def flagged_changes(
    measurements: pd.DataFrame, noise: pd.DataFrame | None
) -> dict[tuple[int, str, str], dict]:
    """Each run's comparison with the previous run of the same series, keyed by (run id, name,
    metric): one ``compare`` per (previous run, run, metric) over every benchmark both share."""
    from bench.comparison import compare

    previous: dict[tuple, int] = {}
    pairs: set[tuple[int, int, str]] = set()
    for row in measurements.itertuples(index=False):  # oldest run first
        key = _series_key(row)
        if key in previous and previous[key] != row.run_id:
            pairs.add((previous[key], row.run_id, row.metric))
        previous[key] = row.run_id
    by_run_metric = dict(list(measurements.groupby(["run_id", "metric"])))
    changes = {}
    for base_run, cand_run, metric in sorted(pairs):
        table = compare(by_run_metric[base_run, metric], by_run_metric[cand_run, metric], noise)
        for change in table.to_dict("records"):
            changes[cand_run, change["name"], metric] = {"base_run": base_run, **change}
    return changes


def _point(row: Any, run: dict, sigma: float | None, change: dict | None) -> dict:
    """One run's point of a series, in the metric's display unit."""
    from bench.comparison import run_interval

    scale = UNITS[row.metric][1]
    low, high = run_interval(row.samples, sigma, BAND_CONFIDENCE)
    point = {
        "run": int(row.run_id),
        "run_key": run["source_key"],
        "started": row.started,
        "commit": row.commit_id,
        "median": row.median * scale,
        "low": low * scale,
        "high": high * scale,
        "rounds": len(row.samples),
        "sigma": sigma,
    }
    if change is not None:
        point["change"] = {
            key: change[key]
            for key in (
                "base_run",
                "verdict",
                "why",
                "ratio",
                "ci_low",
                "ci_high",
                "change_pct",
                "noise_pct",
                "mdc_pct",
                "q_value",
            )
        }
    return point


def trend_data(history: History) -> dict:
    """Every series with its points, oldest run first."""
    from bench.comparison import noise_of

    measurements = history.measurements()
    runs = {int(run["id"]): run for run in history.runs().to_dict("records")}
    noise = history.noise()
    noise = None if noise.empty else noise
    changes = flagged_changes(measurements, noise)
    sigmas: dict[tuple, pd.Series] = {}
    series: dict[tuple, dict] = {}
    for row in measurements.itertuples(index=False):
        key = _series_key(row)
        config = (int(row.machine_id), _threads(row.threads), row.metric)
        if config not in sigmas:
            sigmas[config] = noise_of(noise, *config)["sigma"]
        sigma = sigmas[config].get(row.name)
        if key not in series:
            series[key] = {
                "id": f"s{len(series)}",
                "name": row.name,
                "metric": row.metric,
                "unit": UNITS[row.metric][0],
                **{column: getattr(row, column) for column in CASE_COLUMNS},
                "machine": row.machine,
                "fingerprint": row.fingerprint,
                "threads": _threads(row.threads),
                "calibrated": sigma is not None,
                "points": [],
            }
        point = _point(
            row, runs[int(row.run_id)], sigma, changes.get((row.run_id, row.name, row.metric))
        )
        series[key]["points"].append(point)
    ordered = sorted(
        series.values(),
        key=lambda s: (s["machine"], s["threads"] or 0, s["metric"], s["kind"] or "", s["name"]),
    )
    return {"runs": len(runs), "series": ordered}


# -- hardware --------------------------------------------------------------------------------


def latest_per_config(measurements: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's (machine and threads) latest measurement of each benchmark: the
    hardware page compares machines as they are now, not an average over every commit."""
    keys = ["fingerprint", "threads", "name", "metric"]
    return measurements.groupby(keys, dropna=False, sort=False).tail(1).reset_index(drop=True)


def choose_baseline(configs: list[str], wanted: str | None) -> str:
    """``wanted`` as given, or the one configuration whose label contains it (any case); the
    first configuration when nothing is asked for."""
    if wanted is None:
        return configs[0]
    if wanted in configs:
        return wanted
    found = [c for c in configs if wanted.lower() in c.lower()]
    if len(found) == 1:
        return found[0]
    which = "matches several" if found else "matches no"
    raise DashboardError(
        f"--baseline {wanted!r} {which} configuration; configurations: {'; '.join(configs)}"
    )


def _records(frame: pd.DataFrame) -> dict:
    return {"columns": list(frame.columns), "rows": frame.to_dict("records")}


def hardware_data(history: History, baseline: str | None) -> dict:
    """Speed-ups and their geometric means for each possible baseline configuration (the page's
    select box switches among them), wall-clock only."""
    from bench.hardware import configs, geometric_means, speedups

    measured = history.measurements(metric=SECONDS)
    if measured.empty:
        if baseline is not None:
            raise DashboardError(f"--baseline {baseline!r}: the history has no timed runs")
        return {"configs": [], "baseline": None, "by_baseline": {}}
    names = configs(measured)  # in the order of each configuration's first run
    latest = latest_per_config(measured)
    chosen = choose_baseline(names, baseline)
    scale = UNITS[SECONDS][1]
    by_baseline = {}
    for config in names:
        table = speedups(latest, config)
        shown = table[["name", *CASE_COLUMNS, "config", "runs", "speedup", "pct_of_peak"]]
        by_baseline[config] = {
            "speedups": shown.assign(median_ms=table["median"] * scale).to_dict("records"),
            "geomeans": _records(geometric_means(table)),
            "geomeans_by_kind": _records(geometric_means(table, by=["kind"])),
        }
    return {"configs": names, "baseline": chosen, "by_baseline": by_baseline}


# -- the site --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: numpy scalars as Python's, NaN and NA as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _embedded_json(data: dict) -> str:
    """JSON safe inside ``<script>``: no ``</`` that could end the element early."""
    return json.dumps(_plain(data), allow_nan=False).replace("</", "<\\/")


def _page(page: str, title: str, body: str, data: dict) -> str:
    style = (SITE / "dashboard.css").read_text()
    scripts = "".join(
        f"<script>\n{(SITE / name).read_text()}</script>\n" for name in ("common.js", f"{page}.js")
    )
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if href.startswith(page) else ""}>{label}</a>'
        for href, label in (("index.html", "Trends"), ("hardware.html", "Hardware"))
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{escape(title)}</title>"
        f"<style>\n{style}</style></head>\n"
        f'<body data-page="{page}"><header><h1>{escape(title)}</h1><nav>{nav}</nav>'
        f'<p class="meta">{escape(data["about"])}</p></header>\n{body}\n'
        f'<script type="application/json" id="dashboard-data">{_embedded_json(data)}</script>\n'
        f"{scripts}</body></html>\n"
    )


FILTERS = (
    '<form id="filters" class="filters" aria-label="filters"></form><p id="shown" class="meta"></p>'
)
TREND_LEGEND = """<figure class="legend" aria-label="legend"><ul>
<li><svg width="14" height="14"><circle class="point" cx="7" cy="7" r="4"/></svg>run median</li>
<li><svg width="14" height="16"><line class="band" x1="7" y1="3" x2="7" y2="13"/></svg>95% band
(the rounds' interval, widened by the calibrated between-run noise where known)</li>
<li><svg width="14" height="14"><path class="point slower" d="M7,1 L13,12 L1,12 Z"/></svg>
slower</li>
<li><svg width="14" height="14"><path class="point faster" d="M7,13 L13,2 L1,2 Z"/></svg>
faster</li>
<li><svg width="14" height="14"><circle class="point inconclusive" cx="7" cy="7" r="4"/></svg>
inconclusive</li></ul>
<figcaption>Each run is compared with the previous run of its series as
<code>torchgauge compare</code> would; slower and faster are the changes it flags. Hover a point
for its run, commit, band and comparison.</figcaption></figure>"""
HARDWARE_BODY = """<p><label>baseline configuration <select id="baseline"></select></label></p>
<h2>Geometric-mean speed-up against the baseline</h2>
<p class="meta">Over every benchmark the configuration shares with the baseline (filters do not
apply); % of peak is of the configuration's own measured matmul peak.</p>
<div id="geomeans"></div><div id="geomeans-by-kind"></div>
<h2>Speed-up per benchmark</h2>
<p class="meta">Baseline median / this configuration's median (above 1: faster); each
configuration's latest run of each benchmark.</p>
FILTERS<div id="speedup-plot"></div><div id="speedups"></div>""".replace("FILTERS", FILTERS)


def _empty(history: History) -> str:
    return (
        f'<p class="empty">No measured runs in {escape(str(history.path))} yet: '
        "<code>torchgauge run</code> records one, <code>torchgauge ingest FILES</code> "
        "imports pytest-benchmark JSON.</p>"
    )


def render_pages(history: History, baseline: str | None = None) -> dict[str, str]:
    """Both pages' HTML, by file name."""
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    trends = trend_data(history)
    hardware = hardware_data(history, baseline)
    about = f"{trends['runs']} runs in {history.path}; written {written}"
    trend_body = f"{FILTERS}{TREND_LEGEND}<main id=charts></main>" if trends["series"] else ""
    hardware_body = HARDWARE_BODY if hardware["configs"] else ""
    return {
        "index.html": _page(
            "index",
            "torchgauge: benchmark trends",
            trend_body or _empty(history),
            {"about": f"{len(trends['series'])} series, {about}", **trends},
        ),
        "hardware.html": _page(
            "hardware",
            "torchgauge: hardware comparison",
            hardware_body or _empty(history),
            {"about": f"{len(hardware['configs'])} configurations, {about}", **hardware},
        ),
    }


def write_dashboard(
    history: History, out_dir: str | Path = DEFAULT_OUT, baseline: str | None = None
) -> list[Path]:
    """Write the site into ``out_dir``. Everything is rendered and staged beside it first, then
    each page renamed into place: a failure leaves the previous site as it was."""
    out_dir = Path(out_dir)
    pages = render_pages(history, baseline)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        for name, text in pages.items():
            (staging / name).write_text(text, encoding="utf-8")
        out_dir.mkdir(exist_ok=True)
        for name in pages:
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in pages]
