"""Comparison statistics on runs whose truth is known: A/A runs flag nothing, a planted change
beyond the noise is flagged in its direction, within-run spread alone never flags, calibration
recovers the between-run noise, and machine comparisons recover a planted speed-up."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import hardware
from bench.comparison import ComparisonError, calibrate_noise, compare, run_interval
from bench.history import History
from checks.benchmark_files import OTHER_MACHINE, Bench, benchmark_json
from checks.commands import torchgauge

BENCHES = [Bench(f"m{i}", 1e-3 * (1 + i), flops=10**7) for i in range(24)]


class Simulated:
    """Runs of BENCHES recorded in a history: each run scales each benchmark by a between-run
    factor exp(N(0, sigma)), and its rounds spread around that within the run."""

    def __init__(self, directory: Path, sigma: dict[str, float], seed: int) -> None:
        self.directory, self.sigma = directory, sigma
        self.rng = np.random.default_rng(seed)
        self.history = History.open(directory / "h.sqlite")
        self.count = 0

    def run(self, change: dict[str, float] | None = None, **options) -> int:
        self.count += 1
        factor = {
            case: math.exp(self.rng.normal(0, s)) * (change or {}).get(case, 1.0)
            for case, s in self.sigma.items()
        }
        path = benchmark_json(
            self.directory / f"{self.count}.json",
            f"run-{self.count}",
            options.pop("benches", BENCHES),
            seed=int(self.rng.integers(1 << 30)),
            factor=factor,
            **options,
        )
        return self.history.record_file(path).run_id

    def calibrate(self, runs: int = 8) -> pd.DataFrame:
        ids = [self.run() for _ in range(runs)]
        self.history.save_noise(calibrate_noise(self.history.measurements(ids)))
        return self.history.noise()

    def frames(self, *sides: list[int]) -> list[pd.DataFrame]:
        return [self.history.measurements(ids) for ids in sides]


def noise_levels(seed: int, low: float = 0.002, high: float = 0.08) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {b.case: float(rng.uniform(low, high)) for b in BENCHES}


def test_a_a_comparisons_flag_nothing(tmp_path: Path) -> None:
    """Twenty A/A pairs after calibration, noise 0.2-8% per benchmark: at a 1% false discovery
    rate, hardly any pair flags anything (expected: 0.2 of 20)."""
    world = Simulated(tmp_path, noise_levels(0), seed=0)
    noise = world.calibrate()
    flagged_pairs = 0
    for _ in range(20):
        base, cand = world.frames([world.run()], [world.run()])
        verdicts = compare(base, cand, noise)["verdict"]
        flagged_pairs += verdicts.isin(["slower", "faster"]).any()
    assert flagged_pairs <= 2


@settings(max_examples=4, deadline=None)
@given(
    factor=st.floats(1.3, 3.0),
    slower=st.booleans(),
    which=st.integers(0, len(BENCHES) - 1),
    seed=st.integers(0, 2**16),
)
def test_a_change_well_beyond_the_noise_is_flagged_in_its_direction(
    tmp_path_factory, factor: float, slower: bool, which: int, seed: int
) -> None:
    world = Simulated(tmp_path_factory.mktemp("h"), noise_levels(seed, high=0.02), seed=seed)
    noise = world.calibrate(runs=6)
    planted = BENCHES[which].case
    change = {planted: factor if slower else 1 / factor}
    table = compare(*world.frames([world.run()], [world.run(change)]), noise).set_index("name")
    assert table.at[planted, "verdict"] == ("slower" if slower else "faster")
    # a false discovery rate, not a family-wise one: a true discovery lets BH flag the
    # next-smallest p-value more easily, and six A/A runs can understate a benchmark's noise
    others = table.drop(index=planted)["verdict"]
    assert others.isin(["slower", "faster"]).sum() <= 1


def test_within_run_spread_alone_never_flags(tmp_path: Path) -> None:
    """Two runs 5% apart with tight, many rounds: a test on rounds would call it significant.
    Without a between-run noise estimate the verdict is inconclusive; with a calibrated noise
    of 10%, it is not flagged either."""
    world = Simulated(tmp_path, dict.fromkeys((b.case for b in BENCHES), 0.0), seed=1)
    base = world.run(spread=0.005, rounds=500)
    cand = world.run({b.case: 1.05 for b in BENCHES}, spread=0.005, rounds=500)
    frames = world.frames([base], [cand])
    table = compare(*frames)
    assert (table["verdict"] == "inconclusive").all() and table["p_value"].isna().all()
    assert (table["noise_source"] == "none").all()
    noise = frames[0][["machine_id", "threads", "name", "metric"]].assign(sigma=0.10, df=8)
    assert not compare(*frames, noise)["verdict"].isin(["slower", "faster"]).any()


def test_swapping_sides_inverts_the_ratio_and_the_verdict(tmp_path: Path) -> None:
    world = Simulated(tmp_path, noise_levels(2, high=0.01), seed=2)
    noise = world.calibrate(runs=5)
    base, cand = world.frames([world.run()], [world.run({BENCHES[0].case: 1.5})])
    forward = compare(base, cand, noise).set_index("name")
    backward = compare(cand, base, noise).set_index("name").loc[forward.index]
    assert np.allclose(forward["ratio"] * backward["ratio"], 1.0)
    swap = {"slower": "faster", "faster": "slower", "no change": "no change"}
    swap["inconclusive"] = "inconclusive"
    assert backward["verdict"].tolist() == forward["verdict"].map(swap).tolist()
    assert forward.at[BENCHES[0].case, "verdict"] == "slower"


@given(scale=st.floats(1e-3, 1e3))
@settings(max_examples=5, deadline=None)
def test_verdicts_do_not_depend_on_the_unit(tmp_path_factory, scale: float) -> None:
    world = Simulated(tmp_path_factory.mktemp("h"), noise_levels(3, high=0.02), seed=3)
    noise = world.calibrate(runs=4)
    base, cand = world.frames([world.run()], [world.run({BENCHES[1].case: 1.4})])
    scaled = [
        f.assign(median=f["median"] * scale, samples=[s * scale for s in f["samples"]])
        for f in (base, cand)
    ]
    plain, rescaled = compare(base, cand, noise), compare(*scaled, noise)
    assert np.allclose(plain["ratio"], rescaled["ratio"])
    assert plain["verdict"].tolist() == rescaled["verdict"].tolist()


def test_more_runs_a_side_shrink_the_minimum_detectable_change(tmp_path: Path) -> None:
    world = Simulated(tmp_path, noise_levels(4), seed=4)
    noise = world.calibrate()
    ones = compare(*world.frames([world.run()], [world.run()]), noise).set_index("name")
    assert (ones["noise_source"] == "calibrated").all()
    threes = compare(
        *world.frames([world.run() for _ in range(3)], [world.run() for _ in range(3)]), noise
    ).set_index("name")
    assert (threes["noise_source"] == "calibrated + replicates").all()
    shrink = np.log1p(ones["mdc_pct"] / 100) / np.log1p(threes.loc[ones.index, "mdc_pct"] / 100)
    assert 1.4 < shrink.median() < 2.0  # sqrt(3) = 1.73, less the runs' own degrees of freedom


def test_calibration_recovers_the_between_run_noise(tmp_path: Path) -> None:
    truth = noise_levels(5, low=0.01, high=0.06)
    world = Simulated(tmp_path, truth, seed=5)
    noise = world.calibrate(runs=30).set_index("name")
    ratio = noise["sigma"] / pd.Series(truth)
    assert 0.8 < ratio.median() < 1.25
    assert (ratio.between(0.5, 2.0)).all()


def test_the_run_band_covers_the_code_s_true_level_as_often_as_it_claims(
    tmp_path: Path,
) -> None:
    """With the calibrated sigma, a run's 95% band holds the level the code's runs scatter
    around (here known: the benchmark's median) about 95% of the time; the within-run interval
    alone holds it far less often, since whole runs are fast or slow together."""
    world = Simulated(tmp_path, dict.fromkeys((b.case for b in BENCHES), 0.05), seed=6)
    runs = world.frames([world.run() for _ in range(10)])[0]
    truth = {b.case: b.median_s for b in BENCHES}
    covered, within_only = [], []
    for row in runs.itertuples():
        low, high = run_interval(row.samples, sigma=0.05)
        covered.append(low <= truth[row.name] <= high)
        low, high = run_interval(row.samples)
        within_only.append(low <= truth[row.name] <= high)
    assert 0.9 <= np.mean(covered) <= 0.99
    assert np.mean(within_only) < 0.5


def test_runs_of_different_machines_are_not_compared_for_regressions(tmp_path: Path) -> None:
    world = Simulated(tmp_path, noise_levels(7), seed=7)
    base, cand = world.frames([world.run()], [world.run(machine=OTHER_MACHINE)])
    with pytest.raises(ComparisonError, match="different machines.*--by machine"):
        compare(base, cand)


def test_a_machine_comparison_recovers_a_planted_speed_up(tmp_path: Path) -> None:
    world = Simulated(tmp_path, noise_levels(8, high=0.01), seed=8)
    here = [world.run(), world.run()]
    other = [world.run({b.case: 0.5 for b in BENCHES}, machine=OTHER_MACHINE, threads=16)]
    every = world.history.measurements(here + other)
    baseline = hardware.configs(every)[0]
    table = hardware.speedups(every, baseline)
    means = hardware.geometric_means(table).set_index("config")["geomean_speedup"]
    assert means[baseline] == 1.0
    assert means.drop(index=baseline).iloc[0] == pytest.approx(2.0, rel=0.05)
    # % of each machine's own peak: FLOPs / median / its matmul peak (100 GFLOP/s here)
    row = table[(table["config"] == baseline) & (table["name"] == BENCHES[0].case)].iloc[0]
    assert row["pct_of_peak"] == pytest.approx(100 * 10**7 / row["median"] / 1e9 / 100)


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory) -> tuple[Path, list[Path]]:
    """JSON files on disk, all of them in the history: three A/A runs (calibrated), one more, a
    run with one benchmark 40% slower, and a run from another machine twice as fast."""
    directory = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(9)
    files = []
    for i, change in enumerate([None, None, None, None, {BENCHES[5].case: 1.4}]):
        factor = {b.case: math.exp(rng.normal(0, 0.005)) for b in BENCHES}
        if change:
            factor = {k: v * change.get(k, 1.0) for k, v in factor.items()}
        files.append(
            benchmark_json(directory / f"{i}.json", f"run-{i}", BENCHES, seed=i, factor=factor)
        )
    files.append(
        benchmark_json(
            directory / "other.json",
            "other",
            BENCHES,
            seed=9,
            factor=0.5,
            machine=OTHER_MACHINE,
            threads=16,
        )
    )
    calibrated = torchgauge(
        "calibrate", f"--runs={','.join(map(str, files[:3]))}", "--db=h.sqlite", cwd=directory
    )
    assert calibrated.returncode == 0, calibrated.stderr
    # every run in the history, whichever of these tests a pytest-xdist worker runs first
    ingested = torchgauge("ingest", *map(str, files[3:]), "--db=h.sqlite", cwd=directory)
    assert ingested.returncode == 0, ingested.stderr
    return directory, files


def test_compare_exits_0_when_nothing_slowed_down(cli_world) -> None:
    directory, files = cli_world
    result = torchgauge("compare", str(files[2]), str(files[3]), "--db=h.sqlite", cwd=directory)
    assert result.returncode == 0, result.stderr
    assert "| slower" not in result.stdout


def test_compare_exits_1_on_a_slow_down_listed_first(cli_world, tmp_path: Path) -> None:
    directory, files = cli_world
    result = torchgauge(
        "compare", str(files[3]), str(files[4]), "--db=h.sqlite", f"--out={tmp_path}", cwd=directory
    )
    assert result.returncode == 1, result.stderr
    table = result.stdout.split("## Per benchmark, sorted by change")[1].strip().splitlines()
    assert BENCHES[5].case in table[2] and "slower" in table[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "comparison.csv",
        "comparison.html",
        "comparison.md",
    ]
    csv = pd.read_csv(tmp_path / "comparison.csv")
    assert csv["verdict"].value_counts().get("slower") == 1


def test_an_injected_slow_down_beyond_the_noise_flags_every_benchmark(cli_world) -> None:
    """The power check: A/A runs (noise 0.5%) with CAND's rounds x 1.25."""
    directory, files = cli_world
    result = torchgauge(
        "compare",
        str(files[2]),
        str(files[3]),
        "--inject-slowdown=1.25",
        "--db=h.sqlite",
        cwd=directory,
    )
    assert result.returncode == 1, result.stderr
    summary = result.stdout.split("## Verdicts")[1].split("##")[0].strip().splitlines()[2:]
    counts = {row.split("|")[1].strip(): int(row.split("|")[2]) for row in summary}
    assert counts == {"slower": len(BENCHES)}


def test_compare_by_machine_shows_the_speed_up(cli_world) -> None:
    directory, files = cli_world
    result = torchgauge(
        "compare", str(files[3]), str(files[5]), "--by=machine", "--db=h.sqlite", cwd=directory
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("## Geometric-mean speed-up")[1]
    other = next(line for line in summary.splitlines() if "Intel Xeon" in line)
    assert float(other.split("|")[3]) == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "run-1"], "missing.json: no such file"),
        (["run-1", "nope"], "no run 'nope'"),
        (["run-1", "other"], "ran on different machines"),
    ],
)
def test_compare_bad_input_is_one_line_exit_2(cli_world, args, message: str) -> None:
    directory, _ = cli_world
    result = torchgauge("compare", *args, "--db=h.sqlite", cwd=directory)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
