"""The same benchmarks on different machines, side by side: speed-ups against a baseline machine.

A *configuration* is a machine (its hardware fingerprint: CPU model and ISA capability, usable
CPUs, GPU) with the thread count its runs used, since a machine at 1 thread and at 16 are
different points of comparison. Per benchmark and configuration the typical median is the median
of its runs' medians. ``speedup`` is the baseline configuration's median over this one's (above
1: faster than the baseline); the summary is the geometric mean of the speed-ups, the right mean
for ratios. ``pct_of_peak`` says how much of its *own* measured matmul peak a configuration
reaches on the benchmarks with a FLOP count: a machine can be fast and still far from its peak.

``torchgauge compare --by machine`` prints these tables; ``torchgauge dashboard`` plots them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.journal import CASE_COLUMNS

BENCHMARK_COLUMNS = ["name", "metric", *CASE_COLUMNS]


def with_configs(measurements: pd.DataFrame) -> pd.DataFrame:
    """``History.measurements`` rows with their configuration label."""
    threads = measurements["threads"].map(
        lambda t: "threads unknown" if pd.isna(t) else f"{t} thread{'s' if t != 1 else ''}"
    )
    return measurements.assign(config=measurements["machine"] + ", " + threads)


def configs(measurements: pd.DataFrame) -> list[str]:
    """The configurations, in the order their first run was recorded."""
    return list(dict.fromkeys(with_configs(measurements)["config"]))


def speedups(measurements: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per (benchmark, configuration) of the benchmarks measured on ``baseline``: runs,
    typical ``median``, ``speedup`` against the baseline and ``pct_of_peak``."""
    frame = with_configs(measurements)
    if baseline not in set(frame["config"]):
        raise ValueError(
            f"no runs of configuration {baseline!r}; configurations: {', '.join(configs(frame))}"
        )
    typical = (
        frame.groupby([*BENCHMARK_COLUMNS, "config"], dropna=False, sort=False)
        .agg(
            runs=("run_id", "nunique"),
            median=("median", "median"),
            flops=("flops", "first"),
            peak_gflops=("peak_gflops", "median"),
        )
        .reset_index()
    )
    achieved = pd.to_numeric(typical["flops"], errors="coerce") / typical["median"] / 1e9
    typical["pct_of_peak"] = (100 * achieved / typical["peak_gflops"]).where(
        typical["metric"].eq("seconds") & typical["kind"].ne("profile")
    )
    typical = typical.drop(columns=["flops", "peak_gflops"])
    base = typical[typical["config"] == baseline].set_index("name")["median"]
    typical = typical[typical["name"].isin(base.index)]
    typical["speedup"] = typical["name"].map(base) / typical["median"]
    order = {config: i for i, config in enumerate(dict.fromkeys(frame["config"]))}
    return typical.sort_values(
        ["kind", "model", "name", "config"], key=lambda s: s.map(order) if s.name == "config" else s
    ).reset_index(drop=True)


def geometric_means(table: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Per configuration (and ``by`` columns): benchmarks compared, the geometric mean speed-up,
    and the median and best % of the configuration's own matmul peak."""
    keys = [*(by or []), "config"]
    summary = table.groupby(keys, sort=False).agg(
        benchmarks=("speedup", "count"),
        geomean_speedup=("speedup", lambda s: float(np.exp(np.log(s.dropna()).mean()))),
        median_pct_of_peak=("pct_of_peak", "median"),
        best_pct_of_peak=("pct_of_peak", "max"),
    )
    return summary.reset_index()


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """The speed-ups as a person reads them: a row per benchmark, a column per configuration."""
    index = ["model", "size", "kind", "backend", "device", "batch_size", "phase", "precision"]
    order = list(dict.fromkeys(table["config"]))
    pivot = table.pivot_table(
        index=index, columns="config", values="speedup", aggfunc="first", dropna=False
    )
    return pivot[[c for c in order if c in pivot.columns]].reset_index().rename_axis(columns=None)
