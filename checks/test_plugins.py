"""Your own models: a plugin registers them, and every part of torchgauge treats them like ours.

The plugin is the README's own example, taken from the README, so the documentation cannot drift
from what works. It is loaded the three documented ways: ``--plugin``, ``TORCHGAUGE_PLUGINS``, and
an installed distribution's entry point in the group ``torchgauge.models``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from checks.commands import REPO, snapshot, torchgauge, torchgauge_in_this_process
from impl.plugins import ENTRY_POINT_GROUP, PLUGINS_ENV


@pytest.fixture(scope="module")
def readme_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``my_models.py``: the README's plugin example, verbatim."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Your own models") :]
    code = re.search(r"```python\n(# my_models\.py\n.*?)```", section, re.DOTALL)
    assert code, "the README's plugin example is missing"
    directory = tmp_path_factory.mktemp("plugin")
    (directory / "my_models.py").write_text(code[1])
    return directory


def listed_models(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.split()[0] for line in result.stdout.splitlines()[1:]]


def test_plugin_option_adds_the_model_to_the_registry(readme_plugin: Path) -> None:
    listed = listed_models(torchgauge("list", "--plugin", "my_models", cwd=readme_plugin))
    assert "wide_mlp" in listed and "mlp_784_128_10" in listed
    without = listed_models(torchgauge_in_this_process("list", cwd=readme_plugin))
    assert "wide_mlp" not in without and "mlp_784_128_10" in without


def test_entry_point_of_an_installed_package_adds_the_model(
    readme_plugin: Path, tmp_path: Path
) -> None:
    """A distribution on sys.path whose metadata declares the entry point, as pip installs one."""
    site = tmp_path / "site"
    info = site / "my_models_dist-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "my_models.py").write_text((readme_plugin / "my_models.py").read_text())
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-models-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nwide = my_models\n")
    listed = listed_models(torchgauge("list", cwd=tmp_path, env={"PYTHONPATH": str(site)}))
    assert "wide_mlp" in listed


@pytest.mark.slow
def test_generated_checks_and_benchmarks_cover_a_plugin_model(readme_plugin: Path) -> None:
    """The registry's generated checks and the benchmark smoke run on the plugin's model too."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "checks/test_models.py", "checks/test_registry.py"]
        + [
            "bench/",
            "--benchmark-disable",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-k",
            "wide_mlp",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            PLUGINS_ENV: "my_models",
            "PYTHONPATH": str(readme_plugin),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:]
    passed = set(re.findall(r"^PASSED (\S+)", result.stdout, re.MULTILINE))
    for check in (
        "checks/test_models.py::test_output_matches_shape_contract[wide_mlp]",
        "checks/test_models.py::test_overfits_a_tiny_batch[wide_mlp]",
        "checks/test_models.py::test_full_size_builds_with_the_declared_parameter_count[wide_mlp]",
        "checks/test_registry.py::test_spec_is_complete[wide_mlp]",
        "checks/test_registry.py::test_wrong_input_shape_fails_with_the_expected_shape_in_the"
        "_message[wide_mlp]",
        "bench/bench_inference.py::bench_inference[inference-wide_mlp.full-cpu-eager-b1]",
        "bench/bench_inference.py::bench_inference[inference-wide_mlp.full-cpu-eager-b32]",
    ):
        assert check in passed, f"{check} did not pass:\n{result.stdout[-3000:]}"


@pytest.mark.slow
def test_a_run_measures_a_plugin_model(readme_plugin: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = torchgauge(
        "run",
        "--quick",
        "--plugin=my_models",
        "--models=wide_mlp",
        "--sizes=tiny",
        "--batch-sizes=1",
        f"--out={runs}",
        cwd=readme_plugin,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = list(runs.iterdir())
    frame = pd.read_csv(run / "results.csv")
    # a plugin model gets every kind its declaration allows: here eager only, so no int8 or amp
    assert sorted(frame[["kind", "model", "backend", "status"]].values.tolist()) == [
        [kind, "wide_mlp", "eager", "passed"] for kind in ("inference", "profile", "training")
    ]


BAD_PLUGINS = {
    "missing": (None, "plugin 'missing' could not be loaded: ModuleNotFoundError: No module named"),
    "broken": (
        "raise RuntimeError('bad plugin')",
        "plugin 'broken' could not be loaded: RuntimeError: bad plugin",
    ),
    "clashing": (
        "from impl import register_model\n"
        "@register_model(family='x', sizes={'tiny': 0, 'full': 0}, example_inputs=None, "
        "output_shape=None)\ndef mlp_784_128_10(cfg): 'Takes a name that is taken.'",
        "ValueError: model 'mlp_784_128_10' is registered twice",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_PLUGINS))
def test_a_bad_plugin_is_one_line_exit_2_and_nothing_written(name: str, tmp_path: Path) -> None:
    source, message = BAD_PLUGINS[name]
    if source is not None:
        (tmp_path / f"{name}.py").write_text(source)
    before = snapshot(tmp_path)
    result = torchgauge(
        "run",
        "--quick",
        "--plugin",
        name,
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
        env={"PYTHONDONTWRITEBYTECODE": "1"},  # the import itself may cache bytecode
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchgauge: error: ") and message in lines[0]
    assert snapshot(tmp_path) == before
