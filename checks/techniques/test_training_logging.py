"""Training logs (catalog ``training_logging``): a log file with one line per epoch in 002 Q61's
format, a TensorBoard event file read back with tensorboard's ``EventAccumulator``, the model
graph, and loss curves rendered to PNG with Agg."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from datetime import datetime

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from impl.techniques.training_logging import TrainingLogger, file_logger, plot_loss_curves

LOSSES = st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)), min_size=1, max_size=8)
# 002 Q61: format "%(asctime)s - %(levelname)s - %(message)s", datefmt "%Y-%m-%d %H:%M:%S",
# message f"Epoch {epoch+1}: Train Loss: {train_loss:.4f}, Val Loss: {val_loss:.4f}"
Q61_LINE = re.compile(
    r"(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) - INFO - "
    r"Epoch (?P<epoch>\d+): Train Loss: (?P<train>\d+\.\d{4}), Val Loss: (?P<val>\d+\.\d{4})"
)


def _read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


@given(losses=LOSSES)
@settings(max_examples=15)
def test_training_logging_log_file_has_one_line_per_epoch_in_q61s_format(
    tmp_path_factory, losses
) -> None:
    path = tmp_path_factory.mktemp("log") / "training.log"
    with TrainingLogger(log_file=path) as log:
        for epoch, (train, val) in enumerate(losses, start=1):
            log.log_epoch(epoch, train=train, val=val)
    lines = path.read_text().splitlines()
    assert len(lines) == len(losses)
    for epoch, (line, (train, val)) in enumerate(zip(lines, losses, strict=True), start=1):
        match = Q61_LINE.fullmatch(line)
        assert match, line
        datetime.strptime(match["time"], "%Y-%m-%d %H:%M:%S")  # a real date and time
        assert int(match["epoch"]) == epoch
        assert match["train"] == f"{train:.4f}" and match["val"] == f"{val:.4f}"


@given(losses=LOSSES)
@settings(max_examples=8)
def test_training_logging_tensorboard_event_file_reads_back_with_event_accumulator(
    tmp_path_factory, losses
) -> None:
    """Every series, every step, its value as float32 (what the event file stores)."""
    logdir = tmp_path_factory.mktemp("runs")
    with TrainingLogger(tensorboard_dir=logdir) as log:
        for epoch, (train, val) in enumerate(losses, start=1):
            log.log_epoch(epoch, train=train, val=val)
    assert list(logdir.glob("events.out.tfevents.*"))
    scalars = _read_scalars(logdir)
    assert set(scalars) == {"Loss/train", "Loss/val"}
    for tag, column in (("Loss/train", 0), ("Loss/val", 1)):
        steps = [step for step, _ in scalars[tag]]
        assert steps == list(range(1, len(losses) + 1))
        values = torch.tensor([v for _, v in scalars[tag]], dtype=torch.float32)
        expected = torch.tensor([pair[column] for pair in losses], dtype=torch.float32)
        assert torch.equal(values, expected)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_training_logging_model_graph_reads_back_from_the_event_file(tmp_path) -> None:
    """002 Q90's ``add_graph``: the traced graph is in the event file, with the model's ops."""
    model = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 1))
    with TrainingLogger(tensorboard_dir=tmp_path) as log:
        log.add_graph(model, torch.randn(1, 10))
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert accumulator.Tags()["graph"]
    ops = {node.op for node in accumulator.Graph().node}
    assert "aten::linear" in ops and "aten::relu" in ops


def test_training_logging_history_keeps_every_series_in_order(tmp_path) -> None:
    log = TrainingLogger()
    for epoch in range(1, 4):
        log.log_epoch(epoch, train=1.0 / epoch, val=2.0 / epoch)
    assert log.history == {"train": [1.0, 0.5, 1 / 3], "val": [2.0, 1.0, 2 / 3]}
    with pytest.raises(RuntimeError, match="tensorboard_dir"):
        log.add_graph(nn.Linear(1, 1), torch.zeros(1, 1))


CURRICULUM_Q61 = """
import logging

logging.basicConfig(
    filename="training.log",
    level=logging.INFO,
    format="%(asctime)s - %(levelname)s - %(message)s",
    datefmt="%Y-%m-%d %H:%M:%S",
)

for epoch in range(5):
    train_loss = 0.01 * (5 - epoch)
    val_loss = 0.01 * (5 - epoch) + 0.002
    logging.info(f"Epoch {epoch+1}: Train Loss: {train_loss:.4f}, Val Loss: {val_loss:.4f}")
"""


def test_training_logging_ours_writes_the_lines_q61_writes_in_a_fresh_process(tmp_path) -> None:
    """002 Q61 as written, in its own interpreter (a root logger without handlers, where
    ``basicConfig`` works): the same five lines as ours, timestamps aside."""
    subprocess.run([sys.executable, "-c", CURRICULUM_Q61], cwd=tmp_path, check=True, timeout=60)
    theirs = (tmp_path / "training.log").read_text().splitlines()
    with TrainingLogger(log_file=tmp_path / "ours.log") as log:
        for epoch in range(5):
            train_loss = 0.01 * (5 - epoch)
            log.log_epoch(epoch + 1, train=train_loss, val=train_loss + 0.002)
    ours = (tmp_path / "ours.log").read_text().splitlines()
    assert len(theirs) == len(ours) == 5
    assert [line[19:] for line in theirs] == [line[19:] for line in ours]  # after the time
    assert all(Q61_LINE.fullmatch(line) for line in theirs + ours)


def test_training_logging_basicconfig_writes_nothing_once_the_root_has_a_handler(
    tmp_path, monkeypatch
) -> None:
    """Why ``file_logger`` uses its own handler: 002 Q61's ``basicConfig`` is a no-op when the
    root logger already has one (Jupyter, pytest, an earlier library), so no file appears.
    ``file_logger`` writes either way."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])
    monkeypatch.chdir(tmp_path)
    exec(CURRICULUM_Q61, {})
    assert not (tmp_path / "training.log").exists()
    logger = file_logger(tmp_path / "ours.log", name="torchgauge.training.check")
    logger.info("Epoch 1: Train Loss: 0.0500, Val Loss: 0.0520")
    logger.handlers[0].close()
    assert len((tmp_path / "ours.log").read_text().splitlines()) == 1


def test_training_logging_file_logger_again_writes_only_to_the_new_file(tmp_path) -> None:
    first = file_logger(tmp_path / "a.log", name="torchgauge.training.again")
    first.info("one")
    second = file_logger(tmp_path / "b.log", name="torchgauge.training.again")
    second.info("two")
    second.handlers[0].close()
    assert (tmp_path / "a.log").read_text().count("\n") == 1
    assert (tmp_path / "b.log").read_text().endswith("INFO - two\n")


def test_training_logging_loss_curves_render_to_png_with_agg(tmp_path) -> None:
    path = plot_loss_curves({"train": [1.0, 0.5, 0.3], "val": [1.1, 0.7, 0.6]}, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)  # (height, width, RGBA)
    assert image.shape == (400, 600, 4)  # figsize (6, 4) inches at 100 dpi
    assert image[..., :3].std() > 0  # something was drawn
