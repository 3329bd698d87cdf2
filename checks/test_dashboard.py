"""``torchgauge dashboard``, read in a real browser: Debian's chromium, headless, driven by
Playwright.

The history is synthetic, so the checks know its truth (``checks/benchmark_files.py``): four runs
on this machine, where one benchmark steps 30% slower at the third run and stays there, and two
runs on another machine that is 2.5 times as fast on every benchmark. The site is written once by
the command's entry point (in this process), opened from ``file://`` in one browser for the whole
module, and read as a user reads it: what is visible, what is marked, what the tables say.

Set ``TORCHGAUGE_SCREENSHOTS=1`` to keep a screenshot of each page in ``/tmp/dashboard-*.png``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from bench.cli import main
from bench.dashboard import PAGES, write_dashboard
from bench.history import History
from checks.benchmark_files import OTHER_MACHINE, Bench, benchmark_json
from checks.commands import snapshot

BENCHES = [
    Bench("mlp_784_128_10", 2e-4),
    Bench("mlp_784_128_10", 5e-4, backend="torchscript"),
    Bench("cnn_small", 3e-3),
    Bench("cnn_small", 1.5e-3, kind="quantised", backend="quant_dynamic"),
]
STEP = BENCHES[2]  # 30% slower from this machine's third run on
STEP_FACTOR, STEP_RUN = 1.30, 3
OTHER_SPEEDUP = 2.5  # the other machine: every benchmark 2.5 times as fast
THIS_RUNS, OTHER_RUNS = 4, 2
CALIBRATED_SIGMA = 0.015  # between-run noise stored for every benchmark, as calibrate would
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _history(path: Path, work: Path) -> dict[str, int]:
    """Record the synthetic runs and their calibration; returns history ids by run name."""
    ids = {}
    with History.open(path) as history:
        for n in range(1, THIS_RUNS + 1):
            factor = {STEP.case: STEP_FACTOR} if n >= STEP_RUN else 1.0
            json_file = benchmark_json(
                work / f"this-{n}.json",
                f"this-{n}",
                BENCHES,
                seed=n,
                factor=factor,
                started=f"2026-11-2{n}T10:00:00+00:00",
                commit=f"{n:x}" * 40,
            )
            ids[f"this-{n}"] = history.record_file(json_file).run_id
        for n in range(1, OTHER_RUNS + 1):
            json_file = benchmark_json(
                work / f"other-{n}.json",
                f"other-{n}",
                BENCHES,
                seed=100 + n,
                factor=1 / OTHER_SPEEDUP,
                machine=OTHER_MACHINE,
                threads=16,
                started=f"2026-11-2{n}T12:00:00+00:00",
            )
            ids[f"other-{n}"] = history.record_file(json_file).run_id
        measured = history.measurements()
        calibration = measured.groupby(["machine_id", "threads", "name", "metric"]).agg(
            runs=("run_id", list)
        )
        history.save_noise(calibration.reset_index().assign(sigma=CALIBRATED_SIGMA, df=20))
    return ids


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """The dashboard of the synthetic history, written by ``torchgauge dashboard``."""
    work = tmp_path_factory.mktemp("dashboard")
    db = work / "history.sqlite"
    ids = _history(db, work)
    # the command's own entry point, in this process (``python -m bench`` is ``exit(main())``):
    # a second process would spend seconds importing torch again
    assert main(["dashboard", "--db", str(db), "--out", str(work / "site")]) == 0
    with History.open(db, create=False) as history:
        configs = list(dict.fromkeys(history.runs()["machine"]))
    return {"out": work / "site", "db": db, "ids": ids, "this": configs[0], "other": configs[1]}


# -- without a browser -----------------------------------------------------------------------


def test_the_site_reaches_for_nothing_outside_itself(site) -> None:
    for path in site["out"].iterdir():
        text = path.read_text()
        assert not re.search(r"https?://", text), path.name
        linked = set(re.findall(r"""(?:src|href)=["']?([^"' >]+)""", text))
        assert linked <= set(PAGES), (path.name, linked)


@pytest.fixture
def bad_histories(tmp_path: Path) -> dict[str, Path]:
    not_sqlite = tmp_path / "garbage.sqlite"
    not_sqlite.write_bytes(b"this is not a database\n" * 100)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    return {"missing": tmp_path / "missing.sqlite", "not SQLite": not_sqlite, "foreign": foreign}


@pytest.mark.parametrize("kind", ["missing", "not SQLite", "foreign"])
def test_a_bad_history_is_one_line_exit_2_and_writes_nothing(
    kind: str, bad_histories: dict[str, Path], tmp_path: Path, capsys
) -> None:
    before = snapshot(tmp_path)
    code = main(["dashboard", "--db", str(bad_histories[kind]), "--out", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert (code, len(err.splitlines())) == (2, 1), err
    assert err.startswith("torchgauge: error: ")
    assert snapshot(tmp_path) == before


def test_an_unknown_baseline_is_bad_input_and_writes_nothing(site, tmp_path: Path, capsys) -> None:
    out = tmp_path / "site"
    code = main(["dashboard", "--db", str(site["db"]), "--out", str(out), "--baseline", "z80"])
    assert code == 2 and "z80" in capsys.readouterr().err
    assert not out.exists()


def test_a_baseline_may_be_named_by_a_unique_part(site, tmp_path: Path) -> None:
    with History.open(site["db"], create=False) as history:
        write_dashboard(history, tmp_path, baseline="xeon")
    chosen = re.search(r'"baseline": "([^"]*)"', (tmp_path / "hardware.html").read_text())
    assert chosen and chosen.group(1).startswith(site["other"])


def test_an_empty_history_gives_pages_that_say_so(tmp_path: Path) -> None:
    with History.open(tmp_path / "empty.sqlite") as history:
        written = write_dashboard(history, tmp_path / "site")
    assert [p.name for p in written] == list(PAGES)
    for path in written:
        assert "No measured runs" in path.read_text()


def test_a_failed_write_leaves_the_previous_site(site, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "site"
    with History.open(tmp_path / "empty.sqlite") as empty:
        write_dashboard(empty, out)  # the previous site: different from what comes next
    before = snapshot(tmp_path)
    write_text = Path.write_text

    def disk_full_at_the_second_page(path: Path, *args, **kwargs):
        if path.name == PAGES[1]:
            raise OSError(28, "No space left on device")
        return write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_at_the_second_page)
    with History.open(site["db"], create=False) as history, pytest.raises(OSError):
        write_dashboard(history, out)
    assert snapshot(tmp_path) == before  # no page replaced, no staging directory left


# -- in the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module: Debian's, never a downloaded one."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield launched
        launched.close()


class Opened:
    """A page of the site in a fresh browser page, with everything it complained about and every
    request it made."""

    def __init__(self, browser, path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.page.set_default_timeout(5_000)  # everything is local: a wait this long is a failure
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")


@pytest.fixture
def opened(browser, site):
    pages = []

    def open_page(name: str) -> Opened:
        pages.append(Opened(browser, site["out"] / name))
        return pages[-1]

    yield open_page
    for page in pages:
        page.page.close()


@pytest.mark.parametrize("name", PAGES)
def test_a_page_loads_from_file_with_no_errors_and_no_network(opened, name: str) -> None:
    page = opened(name)
    if os.environ.get("TORCHGAUGE_SCREENSHOTS"):
        page.page.screenshot(path=f"/tmp/dashboard-{Path(name).stem}.png", full_page=True)
    assert page.errors == []
    assert page.requests and all(url.startswith("file://") for url in page.requests)


def _visible_charts(page) -> list:
    return [c for c in page.locator("section.chart").all() if c.is_visible()]


def test_there_is_one_chart_per_series(opened) -> None:
    page = opened("index.html").page
    charts = page.locator("section.chart")
    # a series: one benchmark on one machine (and thread count)
    assert charts.count() == len(BENCHES) * 2
    runs = sorted(chart.locator("g.run").count() for chart in charts.all())
    assert runs == [OTHER_RUNS] * len(BENCHES) + [THIS_RUNS] * len(BENCHES)


def test_every_run_is_drawn_with_a_size(opened) -> None:
    page = opened("index.html").page
    marks = page.locator("section.chart .point").all()
    assert len(marks) == len(BENCHES) * (THIS_RUNS + OTHER_RUNS)
    for mark in marks:
        box = mark.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0


def test_the_planted_step_is_the_only_flagged_change(opened, site) -> None:
    page = opened("index.html").page
    flagged = page.locator("section.chart g.run:has(.point.flagged)")
    assert flagged.count() == 1
    chart = page.locator("section.chart", has=page.locator("g.run:has(.point.flagged)"))
    assert chart.get_attribute("data-name") == STEP.case
    assert site["this"] in chart.inner_text()
    assert flagged.get_attribute("data-run") == str(site["ids"][f"this-{STEP_RUN}"])
    assert flagged.get_attribute("data-verdict") == "slower"


def test_a_flagged_point_explains_itself_in_its_title(opened) -> None:
    page = opened("index.html").page
    title = page.locator("g.run:has(.point.flagged) > title").text_content()
    percent = float(re.search(r"SLOWER, \+([\d.]+)%", title).group(1))
    assert percent == pytest.approx(100 * (STEP_FACTOR - 1), abs=2)


def test_choosing_a_model_shows_only_its_charts(opened) -> None:
    page = opened("index.html").page
    before = len(_visible_charts(page))
    page.select_option("#filter-model", "cnn_small")
    shown = _visible_charts(page)
    assert before == len(BENCHES) * 2
    assert len(shown) == 2 * sum(b.model == "cnn_small" for b in BENCHES)
    assert all("cnn_small" in chart.get_attribute("data-name") for chart in shown)


def test_choosing_a_backend_and_then_all_again_restores_every_chart(opened) -> None:
    page = opened("index.html").page
    page.select_option("#filter-backend", "torchscript")
    narrowed = len(_visible_charts(page))
    page.select_option("#filter-backend", "")
    assert (narrowed, len(_visible_charts(page))) == (2, len(BENCHES) * 2)


def _speedup(page, name: str, config: str) -> float:
    cell = page.locator(f'#speedup-table tr[data-name="{name}"] td[data-config^="{config}"]')
    return float(cell.get_attribute("data-speedup"))


def test_the_hardware_table_shows_the_planted_speedup(opened, site) -> None:
    page = opened("hardware.html").page
    unchanged = BENCHES[0].case
    assert _speedup(page, unchanged, site["other"]) == pytest.approx(OTHER_SPEEDUP, rel=0.03)
    # the step is in this machine's latest run: the other machine's lead grows by as much
    stepped = _speedup(page, STEP.case, site["other"])
    assert stepped == pytest.approx(OTHER_SPEEDUP * STEP_FACTOR, rel=0.03)


def test_the_geometric_mean_summarises_the_planted_speedups(opened, site) -> None:
    page = opened("hardware.html").page
    row = page.locator(f'#geomeans-table tr[data-config^="{site["other"]}"]')
    shown = float(row.locator('td[data-column="geomean_speedup"]').inner_text().rstrip("×"))
    planted = [OTHER_SPEEDUP * (STEP_FACTOR if b == STEP else 1) for b in BENCHES]
    expected = math.exp(sum(map(math.log, planted)) / len(planted))
    assert shown == pytest.approx(expected, rel=0.03)


def test_switching_the_baseline_inverts_the_speedups(opened, site) -> None:
    page = opened("hardware.html").page
    other = page.locator("#baseline option", has_text=site["other"]).get_attribute("value")
    page.select_option("#baseline", other)
    unchanged = BENCHES[0].case
    assert _speedup(page, unchanged, site["this"]) == pytest.approx(1 / OTHER_SPEEDUP, rel=0.03)
    assert _speedup(page, unchanged, other) == 1.0  # the new baseline against itself


def test_the_speedup_plot_has_a_mark_per_benchmark_and_the_geometric_mean(opened) -> None:
    page = opened("hardware.html").page
    marks = page.locator("svg.speedup-chart circle.speedup-mark").all()
    assert len(marks) == len(BENCHES) + 1
    assert all(m.bounding_box()["width"] > 0 for m in marks)
