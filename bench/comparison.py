"""Is a difference between two sets of runs real? Ratios, intervals and verdicts per benchmark.

On a shared machine the rounds of one run are correlated: the whole run is fast or slow together
(on the 2-core host an eager workload timed 22 ms in one process and 35 ms in the next). A test
on the rounds of two runs calls such a difference significant. So the error term here is the
**between-run** noise of each benchmark: the standard deviation of ln(run median) over A/A runs
(same code, same machine, same threads), measured by ``torchgauge calibrate`` and stored in the
history, or estimated from the runs themselves when a side has several.

Per benchmark, with ``m`` BASE runs and ``n`` CAND runs:

- ``ratio``: median of CAND's rounds / median of BASE's rounds (above 1: slower, or more
  instructions); the bootstrap (``scipy.stats.bootstrap``) gives its within-run uncertainty;
- ``se``: the standard error of ln(ratio): between-run ``sqrt(s_b^2/m + s_c^2/n)`` (the run
  median's noise already contains its within-run sampling), never less than the bootstrap's;
- ``p_value``: two-sided Student t on ln(ratio)/se with the noise estimate's degrees of freedom,
  and ``q_value``: Benjamini-Hochberg over every benchmark of the comparison, since hundreds of
  tests at 1% would flag a few by chance;
- the verdict: "slower" or "faster" where q <= alpha and the change is at least ``min_change``;
  "no change" where it is not and the minimum detectable change is within ``resolution``;
  otherwise "inconclusive" (no noise estimate, or noise too large to rule out such a change);
- ``noise_source``: where the between-run noise came from: ``calibrated`` (the history's A/A
  calibration for the side's machine and threads), ``replicates`` (the sides' own runs), both,
  or ``none``;
- ``noise_pct``: the between-run noise of one run (100 x s); ``mdc_pct``: the smallest change
  this comparison detects with 80% power at the unadjusted alpha (``(t_{1-alpha/2} + t_{0.8})
  x se``). More runs a side shrink it by their square root.

Calibration moderates each benchmark's variance toward the machine's typical noise by empirical
Bayes (Smyth 2004, as limma does for many genes and few replicates): three A/A runs give each
benchmark only 2 degrees of freedom, and borrowing strength from the others keeps the test's
power without trusting a variance that happened to come out small.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special, stats

from bench.journal import CASE_COLUMNS

ALPHA = 0.01  # false discovery rate of flagged changes; also the level of the MDC
MIN_CHANGE = 0.02  # a change smaller than 2% is never flagged, however significant
RESOLUTION = 0.10  # "no change" needs the comparison able to see a 10% change
POWER = 0.80
BOOTSTRAP_RESAMPLES = 999
BOOTSTRAP_MAX_ROUNDS = 2000  # rounds per side resampled; more only narrow a within-run interval
VERDICTS = ("slower", "faster", "no change", "inconclusive")
RESULT_COLUMNS = [
    "name",
    "metric",
    *CASE_COLUMNS,
    "base_runs",
    "cand_runs",
    "base_median",
    "cand_median",
    "ratio",
    "ci_low",
    "ci_high",
    "change_pct",
    "noise_pct",
    "mdc_pct",
    "p_value",
    "q_value",
    "noise_source",
    "verdict",
    "why",
]


class ComparisonError(ValueError):
    """Runs that cannot be compared (different machines, different metrics, nothing in common)."""


# -- calibration -----------------------------------------------------------------------------


def calibrate_noise(frame: pd.DataFrame) -> pd.DataFrame:
    """Between-run noise per benchmark from A/A runs (``History.measurements`` rows of runs of
    the same code): one row per (machine_id, threads, name, metric) measured in at least two runs,
    with the moderated ``sigma`` of ln(run median), its degrees of freedom ``df`` and the
    ``runs`` used. Moderation is done per (machine, threads, metric)."""
    rows = []
    keys = ["machine_id", "threads", "name", "metric"]
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        medians = group.groupby("run_id")["median"].median()
        medians = medians[medians > 0]
        if len(medians) < 2:
            continue
        logs = np.log(medians.to_numpy())
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "variance": float(np.var(logs, ddof=1)),
                "raw_df": len(logs) - 1,
                "runs": sorted(int(r) for r in medians.index),
            }
        )
    table = pd.DataFrame(rows, columns=[*keys, "variance", "raw_df", "runs"])
    parts = []
    for _, group in table.groupby(["machine_id", "threads", "metric"], sort=False):
        prior_df, prior_variance = _variance_prior(group["variance"], group["raw_df"])
        moderated = _moderate(group["variance"], group["raw_df"], prior_df, prior_variance)
        parts.append(
            group.assign(
                sigma=np.sqrt(moderated),
                df=np.minimum(group["raw_df"] + prior_df, 10_000).astype(int),
            )
        )
    if not parts:
        return pd.DataFrame(columns=[*keys, "sigma", "df", "runs"])
    return pd.concat(parts)[[*keys, "sigma", "df", "runs"]].reset_index(drop=True)


def _moderate(variance, df, prior_df: float, prior_variance: float):
    if math.isinf(prior_df):
        return pd.Series(prior_variance, index=variance.index)
    return (prior_df * prior_variance + df * variance) / (prior_df + df)


def _variance_prior(variance: pd.Series, df: pd.Series) -> tuple[float, float]:
    """Smyth's (2004) moment estimates of the scaled inverse-chi-square prior on the variances:
    prior degrees of freedom d0 and scale s0^2. Variances of zero (identical instruction counts)
    carry no information on the log scale and are left out; with fewer than 3 others there is
    no prior (d0 = 0)."""
    keep = variance > 0
    s2, d = variance[keep].to_numpy(), df[keep].to_numpy().astype(float)
    if len(s2) < 3:
        return 0.0, 0.0
    e = np.log(s2) - special.digamma(d / 2) + np.log(d / 2)
    e_mean = e.mean()
    e_var = np.var(e, ddof=1) - special.polygamma(1, d / 2).mean()
    if e_var <= 0:  # the variances agree as well as chance allows: one common variance
        return math.inf, float(np.exp(e_mean))
    d0 = 2 * _trigamma_inverse(e_var)
    return float(d0), float(np.exp(e_mean + special.digamma(d0 / 2) - np.log(d0 / 2)))


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x, by Newton's method from Smyth's starting point."""
    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        step = special.polygamma(1, y) * (1 - special.polygamma(1, y) / x) / special.polygamma(2, y)
        y += step
        if -step / y < 1e-8:
            break
    return float(y)


def noise_of(noise: pd.DataFrame | None, machine_id: int, threads, metric: str) -> pd.DataFrame:
    """Calibrated (sigma, df) by benchmark name for one machine, thread count and metric."""
    if noise is None or noise.empty:
        return pd.DataFrame(columns=["sigma", "df"])
    rows = noise[
        (noise["machine_id"] == machine_id)
        & (noise["threads"] == threads)
        & (noise["metric"] == metric)
    ]
    return rows.set_index("name")[["sigma", "df"]]


# -- intervals -------------------------------------------------------------------------------


def run_interval(
    samples: np.ndarray, sigma: float | None = None, confidence: float = 0.95
) -> tuple[float, float]:
    """A band for one run's median: the distribution-free order-statistic interval of the
    median (binomial, as asv's), widened on the log scale by the between-run noise ``sigma``
    where it is known: where the next run of the same code would put its median."""
    values = np.sort(np.asarray(samples, dtype=float))
    n = len(values)
    median = float(np.median(values))
    k = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))
    low, high = values[max(k - 1, 0)], values[min(n - k, n - 1)]
    if not sigma or median <= 0:
        return float(low), float(high)
    z = stats.norm.ppf(0.5 + confidence / 2)
    below = math.log(median / low) if low > 0 else 0.0
    above = math.log(high / median) if median > 0 else 0.0
    widen = (z * sigma) ** 2
    return (
        median * math.exp(-math.sqrt(below**2 + widen)),
        median * math.exp(math.sqrt(above**2 + widen)),
    )


def _bootstrap_log_ratio(
    base: np.ndarray, cand: np.ndarray, rng: np.random.Generator
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ln(median(cand) / median(base)), resampling rounds."""
    if len(np.unique(base)) < 2 and len(np.unique(cand)) < 2:
        point = math.log(np.median(cand) / np.median(base))
        return point, point
    base = _at_most(base, rng)
    cand = _at_most(cand, rng)

    def log_ratio(c, b, axis=-1):
        return np.log(np.median(c, axis=axis) / np.median(b, axis=axis))

    result = stats.bootstrap(
        (cand, base),
        log_ratio,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        vectorized=True,
        random_state=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _at_most(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= BOOTSTRAP_MAX_ROUNDS:
        return values
    return rng.choice(values, BOOTSTRAP_MAX_ROUNDS, replace=False)


# -- comparison ------------------------------------------------------------------------------


def compare(
    base: pd.DataFrame,
    cand: pd.DataFrame,
    noise: pd.DataFrame | None = None,
    *,
    alpha: float = ALPHA,
    min_change: float = MIN_CHANGE,
    resolution: float = RESOLUTION,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per benchmark measured on both sides (``History.measurements`` frames of one
    metric), sorted from the largest slow-down to the largest speed-up. See the module doc."""
    for side, frame in (("BASE", base), ("CAND", cand)):
        if frame.empty:
            raise ComparisonError(f"{side} has no measured benchmarks")
    metrics = set(base["metric"]) | set(cand["metric"])
    if len(metrics) > 1:
        raise ComparisonError(f"BASE and CAND mix metrics {sorted(metrics)}; choose one")
    machines = set(base["fingerprint"]) | set(cand["fingerprint"])
    if len(machines) > 1:
        labels = sorted(set(base["machine"]) | set(cand["machine"]))
        raise ComparisonError(
            f"BASE and CAND ran on different machines ({'; '.join(labels)}); "
            "compare machines with `torchgauge compare --by machine`"
        )
    common = sorted(set(base["name"]) & set(cand["name"]))
    if not common:
        raise ComparisonError("BASE and CAND have no benchmark in common")
    metric = metrics.pop()
    base_noise = _side_noise(base, noise, metric)
    cand_noise = _side_noise(cand, noise, metric)
    rng = np.random.default_rng(seed)
    by_name_base, by_name_cand = dict(list(base.groupby("name"))), dict(list(cand.groupby("name")))
    rows = [
        _compare_one(
            by_name_base[name], by_name_cand[name], base_noise, cand_noise, alpha, resolution, rng
        )
        for name in common
    ]
    table = pd.DataFrame(rows)
    tested = table["p_value"].notna()
    table["q_value"] = np.nan
    if tested.any():
        table.loc[tested, "q_value"] = stats.false_discovery_control(
            table.loc[tested, "p_value"].to_numpy(), method="bh"
        )
    table[["verdict", "why"]] = [
        _verdict(row, alpha, min_change, resolution) for row in table.itertuples()
    ]
    table = table.sort_values("ratio", ascending=False, kind="stable").reset_index(drop=True)
    return table[RESULT_COLUMNS]


def _side_noise(frame: pd.DataFrame, noise: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """Calibrated noise for a side's (machine, threads); a side of several configurations takes
    the noisiest calibration of each benchmark."""
    configs = frame[["machine_id", "threads"]].drop_duplicates().itertuples(index=False)
    found = [noise_of(noise, int(c.machine_id), c.threads, metric) for c in configs]
    found = [f for f in found if not f.empty]
    if not found:
        return pd.DataFrame(columns=["sigma", "df"])
    merged = pd.concat(found)
    return merged.groupby(level=0).agg({"sigma": "max", "df": "min"})


def _replicate_variance(base: pd.DataFrame, cand: pd.DataFrame) -> tuple[float, int]:
    """Pooled variance of ln(run median) within each side, and its degrees of freedom."""
    squares, df = 0.0, 0
    for side in (base, cand):
        logs = np.log(side.groupby("run_id")["median"].median().to_numpy())
        if len(logs) > 1:
            squares += float(((logs - logs.mean()) ** 2).sum())
            df += len(logs) - 1
    return (squares / df if df else math.nan), df


def _compare_one(
    base: pd.DataFrame,
    cand: pd.DataFrame,
    base_noise: pd.DataFrame,
    cand_noise: pd.DataFrame,
    alpha: float,
    resolution: float,
    rng: np.random.Generator,
) -> dict:
    name = base["name"].iloc[0]
    first = base.iloc[0]
    m, n = base["run_id"].nunique(), cand["run_id"].nunique()
    base_samples = np.concatenate(list(base["samples"]))
    cand_samples = np.concatenate(list(cand["samples"]))
    base_median, cand_median = float(np.median(base_samples)), float(np.median(cand_samples))
    log_ratio = math.log(cand_median / base_median)
    boot_low, boot_high = _bootstrap_log_ratio(base_samples, cand_samples, rng)
    se_within = (boot_high - boot_low) / (2 * stats.norm.ppf(0.975))

    # between-run variance of one run's ln(median), per side: calibrated, pooled with the
    # replicates the sides bring themselves
    replicate_var, replicate_df = _replicate_variance(base, cand)
    calibrated = [t.loc[name] for t in (base_noise, cand_noise) if name in t.index]
    if calibrated and len(calibrated) == 1:
        calibrated = calibrated * 2  # the side without its own calibration is assumed alike
    if calibrated:
        var_b, var_c = (float(c["sigma"]) ** 2 for c in calibrated)
        df = int(min(c["df"] for c in calibrated))
        if replicate_df:
            var_b = (df * var_b + replicate_df * replicate_var) / (df + replicate_df)
            var_c = (df * var_c + replicate_df * replicate_var) / (df + replicate_df)
            df += replicate_df
    elif replicate_df:
        var_b = var_c = replicate_var
        df = replicate_df
    else:
        var_b = var_c = math.nan
        df = 0
    source = " + ".join(
        name for name, used in (("calibrated", calibrated), ("replicates", replicate_df)) if used
    )
    se_between = math.sqrt(var_b / m + var_c / n) if df else math.nan
    se = max(se_between, se_within) if df else math.nan

    row = {
        "name": name,
        "metric": first["metric"],
        **{c: first[c] for c in CASE_COLUMNS},
        "base_runs": m,
        "cand_runs": n,
        "base_median": base_median,
        "cand_median": cand_median,
        "ratio": cand_median / base_median,
        "change_pct": 100 * (cand_median / base_median - 1),
        "noise_pct": 100 * math.sqrt((var_b + var_c) / 2) if df else math.nan,
        "p_value": math.nan,
        "noise_source": source or "none",
        "mdc_pct": math.nan,
        "ci_low": math.exp(boot_low),
        "ci_high": math.exp(boot_high),
    }
    if df:
        critical = stats.t.ppf(1 - alpha / 2, df)
        row["ci_low"] = math.exp(log_ratio - critical * se)
        row["ci_high"] = math.exp(log_ratio + critical * se)
        row["mdc_pct"] = 100 * (math.exp((critical + stats.t.ppf(POWER, df)) * se) - 1)
        if se > 0:
            row["p_value"] = float(2 * stats.t.sf(abs(log_ratio) / se, df))
        else:
            row["p_value"] = 0.0 if log_ratio != 0 else 1.0
    return row


def _verdict(row, alpha: float, min_change: float, resolution: float) -> tuple[str, str]:
    if math.isnan(row.p_value):
        return (
            "inconclusive",
            "no between-run noise estimate: run `torchgauge calibrate`, or give a side 2+ runs",
        )
    big_enough = abs(math.log(row.ratio)) >= math.log1p(min_change)
    if row.q_value <= alpha and big_enough:
        return (
            "slower" if row.ratio > 1 else "faster",
            f"q = {row.q_value:.2g} <= {alpha:g} and |change| >= {100 * min_change:g}%",
        )
    if row.mdc_pct <= 100 * resolution:
        if row.q_value <= alpha:
            return "no change", f"significant but under the minimum change of {100 * min_change:g}%"
        return "no change", f"within noise; this comparison detects {row.mdc_pct:.1f}% or more"
    return (
        "inconclusive",
        f"within noise, but the noise hides changes under {row.mdc_pct:.1f}% "
        f"(more runs a side narrow it)",
    )
