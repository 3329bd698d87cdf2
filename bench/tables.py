"""The report's tables and plots, one function per section, each from the collated frame.

Every function takes the rows of measured cases (``status == "passed"``) as ``bench.report``
collates them, and returns a DataFrame a person reads top to bottom; an empty one means the
section has nothing to show and is left out. Column meanings: ``reports/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CASE_INDEX = ["model", "size", "device", "batch_size"]
# kinds whose rows time one inference call through a backend: their medians are latencies
LATENCY_KINDS = ("inference", "quantised", "compile")
HOT_SPOTS_SHOWN = 5  # per profiled case in the report; results.csv keeps all that were recorded
MB = 1e6


def _kind(measured: pd.DataFrame, *kinds: str) -> pd.DataFrame:
    if "kind" not in measured.columns:  # other suites' JSON: every row is a latency
        return measured if "inference" in kinds else measured.iloc[0:0]
    return measured[measured["kind"].isin(kinds)]


def _present(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in frame.columns]


def time_per_kind(frame: pd.DataFrame) -> pd.DataFrame:
    """Where a run's time went: cases and seconds (set-up included) per kind, and their share.
    Only torchgauge runs record ``case_duration_s``."""
    if "case_duration_s" not in frame.columns or frame["case_duration_s"].isna().all():
        return frame.iloc[0:0]
    table = frame.groupby("kind", sort=False).agg(
        cases=("case", "size"),
        measured=("status", lambda s: int((s == "passed").sum())),
        seconds=("case_duration_s", "sum"),
    )
    table["share_pct"] = 100 * table["seconds"] / table["seconds"].sum()
    return table.round({"seconds": 1, "share_pct": 1}).reset_index()


def latency_by_backend(measured: pd.DataFrame) -> pd.DataFrame:
    """Median ms per (model, size, device, batch) x backend: the table people read first."""
    rows = _kind(measured, *LATENCY_KINDS)
    if rows.empty or "backend" not in rows.columns:
        return rows[_present(rows, ["name", "median_ms"])]
    table = rows.pivot_table(
        index=CASE_INDEX, columns="backend", values="median_ms", aggfunc="median"
    )
    order = [b for b in rows["backend"].drop_duplicates() if b in table.columns]
    return table[order].round(4).reset_index().rename_axis(columns=None)


def training_throughput(measured: pd.DataFrame) -> pd.DataFrame:
    """One optimiser step: its median, samples/s, efficiency and memory, and the loss it reached."""
    rows = _kind(measured, "training")
    columns = [
        *CASE_INDEX,
        "median_ms",
        "samples_per_s",
        "gflops_per_s",
        "pct_of_peak",
        "peak_memory_mb",
        "steps",
        "first_loss",
        "last_loss",
    ]
    return rows[_present(rows, columns)].reset_index(drop=True)


def amp_speedup(measured: pd.DataFrame) -> pd.DataFrame:
    """Per (model, size, device, batch, phase) and autocast dtype: float32 and autocast medians,
    the speed-up (float32 median / autocast median) and the parity paid for it."""
    rows = _kind(measured, "amp")
    if rows.empty:
        return rows
    keys = [*CASE_INDEX, "phase"]
    fp32 = rows[rows["precision"] == "float32"][[*keys, "median_ms"]]
    fp32 = fp32.rename(columns={"median_ms": "float32_ms"})
    amp = rows[rows["precision"] != "float32"].rename(columns={"median_ms": "autocast_ms"})
    table = amp.merge(fp32, on=keys, how="left")
    table["speedup"] = table["float32_ms"] / table["autocast_ms"]
    parity = [
        "max_abs_diff",
        "max_rel_diff",
        "loss_after_steps",
        "float32_loss_after_steps",
        "loss_rel_diff",
    ]
    columns = [*keys, "precision", "float32_ms", "autocast_ms", "speedup", *parity, "onednn_bf16"]
    return table[_present(table, columns)].reset_index(drop=True)


def quantisation(measured: pd.DataFrame) -> pd.DataFrame:
    """Per int8 variant: serialised size against float32, output quality against float32, and
    the latency at each batch with its speed-up over eager float32 where eager was measured."""
    rows = _kind(measured, "quantised")
    if rows.empty:
        return rows
    keys = ["model", "size", "device", "backend"]
    quality = [
        "float32_state_dict_bytes",
        "state_dict_bytes",
        "compression",
        "artifact_bytes",
        "sqnr_db",
        "top1_agreement",
    ]
    table = rows.groupby(keys, sort=False)[_present(rows, quality)].first()
    eager = _kind(measured, "inference")
    eager = eager[eager["backend"] == "eager"].set_index(CASE_INDEX)["median_ms"]
    for batch, part in rows.groupby("batch_size"):
        at_batch = part.set_index(keys)["median_ms"]
        table[f"b{batch}_ms"] = at_batch
        baseline = [eager.get((m, s, d, batch), np.nan) for m, s, d, _ in at_batch.index]
        table[f"b{batch}_speedup"] = pd.Series(baseline, index=at_batch.index) / at_batch
    return table.reset_index()


def hot_spots(measured: pd.DataFrame) -> pd.DataFrame:
    """The top operators by self time of each profiled case: one row per operator."""
    rows = _kind(measured, "profile")
    if rows.empty or "hot_spots" not in rows.columns:
        return rows.iloc[0:0]
    records = []
    for _, row in rows.iterrows():
        spots = row["hot_spots"]
        spots = json.loads(spots) if isinstance(spots, str) else spots
        for rank, spot in enumerate(spots[:HOT_SPOTS_SHOWN], start=1):
            records.append({**{c: row[c] for c in CASE_INDEX}, "rank": rank, **spot})
    return pd.DataFrame(records)


def efficiency(measured: pd.DataFrame) -> pd.DataFrame:
    """Achieved GFLOP/s of every case with a FLOP count, as a % of this machine's matmul peak in
    the same precision, and its peak memory."""
    if "gflops_per_s" not in measured.columns:
        return measured.iloc[0:0]
    rows = measured[measured["gflops_per_s"].notna()]
    columns = [
        "kind",
        "model",
        "size",
        "device",
        "backend",
        "batch_size",
        "phase",
        "precision",
        "gflops_per_s",
        "peak_gflops",
        "pct_of_peak",
        "peak_memory_mb",
        "memory_source",
    ]
    return rows[_present(rows, columns)].reset_index(drop=True)


def cpu_vs_cuda(measured: pd.DataFrame) -> pd.DataFrame:
    """Where one selection ran on both devices: CPU and CUDA medians, the CUDA speed-up (CPU
    median / CUDA median) and which was faster; tiny models can be faster on the CPU, where the
    GPU's launch overhead outweighs its arithmetic."""
    if "device" not in measured.columns or set(measured["device"]) < {"cpu", "cuda"}:
        return measured.iloc[0:0]
    rows = measured[measured["kind"] != "profile"]  # a profiled window is not a latency
    keys = ["kind", "model", "size", "backend", "batch_size", "phase", "precision"]
    table = rows.pivot_table(index=keys, columns="device", values="median_ms", aggfunc="median")
    table = table.dropna(subset=["cpu", "cuda"]).rename(
        columns={"cpu": "cpu_ms", "cuda": "cuda_ms"}
    )
    table["cuda_speedup"] = table["cpu_ms"] / table["cuda_ms"]
    table["faster"] = np.where(table["cuda_speedup"] > 1, "cuda", "cpu")
    return table.reset_index().rename_axis(columns=None)


def _figure(rows: int, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(9, height * rows), squeeze=False)
    return plt, fig, axes[:, 0]


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_plot(measured: pd.DataFrame, path: Path) -> None:
    """Median latency (bars from q1 to q3) per model and backend, a panel per device and batch;
    always drawn, saying so when no case was measured."""
    rows = _kind(measured, *LATENCY_KINDS)
    if rows.empty:
        plt, fig, axes = _figure(1, height=1.5)
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no case was measured", ha="center", va="center")
        _save(plt, fig, path)
        return
    has_cases = "backend" in rows.columns
    rows = rows.assign(
        label=rows["model"] + "." + rows["size"] if has_cases else rows["name"],
        backend=rows["backend"] if has_cases else "value",
        panel=(rows["device"] + ", batch " + rows["batch_size"].astype(str))
        if has_cases
        else "all",
    )
    panels = sorted(rows["panel"].unique())
    plt, fig, axes = _figure(len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        part = rows[rows["panel"] == panel]
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
    _save(plt, fig, path)


def amp_plot(table: pd.DataFrame, path: Path) -> bool:
    """Speed-up bars per model, a panel per device and phase; the line at 1 is float32."""
    if table.empty:
        return False
    table = table.assign(
        label=table["model"] + " b" + table["batch_size"].astype(str),
        panel=table["device"] + ", " + table["phase"],
    )
    panels = sorted(table["panel"].unique())
    plt, fig, axes = _figure(len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        part = table[table["panel"] == panel]
        part.pivot_table(index="label", columns="precision", values="speedup").plot.bar(
            ax=ax, rot=0
        )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"autocast speed-up over float32 ({panel}); below 1 is slower")
        ax.set_xlabel("")
        ax.set_ylabel("float32 median / autocast median")
    _save(plt, fig, path)
    return True


def quantisation_plot(table: pd.DataFrame, path: Path) -> bool:
    """Compression against SQNR, one point per model and int8 variant: up and right is better."""
    if table.empty or table["compression"].isna().all():
        return False
    plt, fig, axes = _figure(1, height=4.5)
    ax = axes[0]
    for backend, part in table.groupby("backend"):
        ax.scatter(part["compression"], part["sqnr_db"], label=backend)
        for _, row in part.iterrows():
            ax.annotate(row["model"], (row["compression"], row["sqnr_db"]), fontsize="small")
    ax.set_xlabel("compression (float32 state_dict bytes / int8 state_dict bytes)")
    ax.set_ylabel("SQNR of outputs vs float32 (dB)")
    ax.set_title("int8 variants: size against output quality")
    ax.legend(title="backend")
    _save(plt, fig, path)
    return True
