"""Checkpointing (catalog ``checkpointing``): bit-exact state_dict round trips, ``weights_only``
loading (B21), strict and non-strict loading (B32), resuming, best-model saving and versions."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset
from torchvision.models.vision_transformer import VisionTransformer

from impl.techniques.checkpointing import (
    BestModelCheckpoint,
    load_checkpoint,
    load_tensors,
    load_weights,
    save_checkpoint,
    save_tensors,
    save_weights,
    versioned_path,
)

SEEDS = st.integers(0, 2**31 - 1)


def _mlp(seed: int, widths: list[int], batchnorm: bool = True, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b) if batchnorm else nn.Identity(), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


WIDTHS = st.lists(st.integers(1, 8), min_size=2, max_size=4)


@given(seed=SEEDS, widths=WIDTHS)
@settings(max_examples=15)
def test_checkpointing_round_trip_is_bitwise_equal_with_identical_outputs(
    tmp_path_factory, seed, widths
) -> None:
    """BatchNorm's running statistics and step count are buffers: they travel too."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    model = _mlp(seed, widths)
    x = torch.randn(4, widths[0], generator=torch.Generator().manual_seed(seed))
    model.train()(x)  # move the running statistics off their initial values
    save_weights(model.eval(), path)
    loaded = load_weights(_mlp(seed + 1, widths), path)
    saved, restored = model.state_dict(), loaded.state_dict()
    assert list(saved) == list(restored)
    for key, tensor in saved.items():
        assert restored[key].dtype == tensor.dtype and torch.equal(restored[key], tensor), key
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpointing_load_weights_switches_to_eval_mode_as_002_q64_does(tmp_path) -> None:
    """002 Q64 calls ``loaded_model.eval()``: without it Dropout still drops at inference."""
    model = _mlp(0, [4, 16, 2], batchnorm=False, dropout=0.5)
    save_weights(model, tmp_path / "w.pth")
    loaded = load_weights(
        _mlp(1, [4, 16, 2], batchnorm=False, dropout=0.5).train(), tmp_path / "w.pth"
    )
    assert not any(m.training for m in loaded.modules())
    x = torch.randn(8, 4)
    assert torch.equal(loaded(x), loaded(x))  # deterministic: Dropout is off


def curriculum_q19_save_and_load(dataset, path: Path):
    """002 Q19 as written, the MNIST download replaced by the dataset given, and the file names
    by ``path``: ``torch.save(mnist_train, ...)`` then ``torch.load(...)``."""
    torch.save(dataset, path)
    loaded_train = torch.load(path)
    return loaded_train


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The catalog's offline stand-in for MNIST (D-mnist-pt): scikit-learn's 8x8 digits as uint8
    images (N, 8, 8), values 0..16, and int64 labels."""
    digits = load_digits()
    data = torch.from_numpy(digits.images).to(torch.uint8)  # (1797, 8, 8)
    return data, torch.from_numpy(digits.target).long()  # (1797,)


def test_checkpointing_seed_q19_pickled_dataset_is_refused_by_weights_only_load_b21(
    tmp_path,
) -> None:
    """Catalog B21: the seed pickles a Dataset object; PyTorch >= 2.6 loads with
    ``weights_only=True`` by default and refuses it. Saving the tensors round-trips exactly."""
    data, targets = _digits()
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        curriculum_q19_save_and_load(TensorDataset(data, targets), tmp_path / "mnist_train.pt")
    save_tensors(tmp_path / "digits.pt", data=data, targets=targets)
    loaded = load_tensors(tmp_path / "digits.pt")
    assert loaded["data"].dtype == torch.uint8 and torch.equal(loaded["data"], data)
    assert loaded["targets"].dtype == torch.int64 and torch.equal(loaded["targets"], targets)


def test_checkpointing_weights_only_false_loads_a_pickled_dataset_from_a_trusted_file(
    tmp_path,
) -> None:
    data, targets = _digits()
    torch.save(TensorDataset(data, targets), tmp_path / "trusted.pt")
    dataset = torch.load(tmp_path / "trusted.pt", weights_only=False)
    assert len(dataset) == 1797 and torch.equal(dataset[5][0], data[5])


class _RunsCodeWhenUnpickled:
    """An object whose unpickling calls ``Path.touch(marker)``: any callable could stand there."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpointing_weights_only_load_runs_no_code_from_the_file(tmp_path) -> None:
    """Why the default changed: unpickling calls whatever the file names. With
    ``weights_only=True`` the load fails before calling it; with False it runs."""
    marker = tmp_path / "code_ran"
    torch.save({"state": _RunsCodeWhenUnpickled(marker)}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pth", weights_only=True)
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def test_checkpointing_save_tensors_accepts_tensors_only(tmp_path) -> None:
    with pytest.raises(TypeError, match="not a Tensor"):
        save_tensors(tmp_path / "x.pt", data=TensorDataset(torch.zeros(2)))  # type: ignore[arg-type]


def test_checkpointing_another_architecture_fails_unless_strict_false(tmp_path) -> None:
    """A model with one more layer: strict loading names the missing keys; ``strict=False`` loads
    the shared layers and reports the rest."""
    small, large = _mlp(0, [4, 8, 2], batchnorm=False), _mlp(1, [4, 8, 8, 2], batchnorm=False)
    small[0].weight.data.fill_(0.5)
    save_weights(small, tmp_path / "small.pth")
    state = torch.load(tmp_path / "small.pth", weights_only=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        large.load_state_dict(state)
    small_state = {k: v for k, v in state.items() if k.startswith("0.")}  # the first Linear only
    result = large.load_state_dict(small_state, strict=False)
    assert set(result.missing_keys) == {"3.weight", "3.bias", "6.weight", "6.bias"}
    assert result.unexpected_keys == []
    assert torch.equal(large[0].weight, small[0].weight)


def test_checkpointing_a_shape_mismatch_fails_even_with_strict_false(tmp_path) -> None:
    save_weights(_mlp(0, [4, 8, 2], batchnorm=False), tmp_path / "w.pth")
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_weights(_mlp(0, [4, 9, 2], batchnorm=False), tmp_path / "w.pth", strict=False)


class SimpleFeedForward(nn.Module):
    """The 4-8-2 feed-forward network 002 Q40 means to load into (its arguments' sizes); the
    curriculum defines it nowhere."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


CURRICULUM_Q40 = """
torch.save(model.state_dict(), "model.pth")
loaded_model = SimpleFeedForward(input_size=4, hidden_size=8, output_size=2)
loaded_model.load_state_dict(torch.load("model.pth"))
"""


def _tiny_vit() -> nn.Module:
    """A ViT like 002 Q38's ``model`` (the one Q40 saves), at a tiny size."""
    torch.manual_seed(0)
    return VisionTransformer(
        image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )


def test_checkpointing_seed_q40_loads_into_an_undefined_class_b32(tmp_path, monkeypatch) -> None:
    """Catalog B32: 002 Q40 as written raises NameError (``SimpleFeedForward`` is defined
    nowhere); with the class supplied, the ViT's state_dict it saved does not fit it, and strict
    loading says so rather than loading nothing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NameError, match="SimpleFeedForward"):
        exec(CURRICULUM_Q40, {"torch": torch, "model": _tiny_vit()})
    namespace = {"torch": torch, "model": _tiny_vit(), "SimpleFeedForward": SimpleFeedForward}
    with pytest.raises(RuntimeError, match="Missing key.*fc1.weight"):
        exec(CURRICULUM_Q40, namespace)


def _train(model: nn.Module, opt, scheduler, steps: range) -> None:
    for step in steps:
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        scheduler.step()


def _run(seed: int):
    model = _mlp(seed, [4, 8, 2])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


@given(seed=SEEDS, split=st.integers(1, 5))
@settings(max_examples=8)
def test_checkpointing_resumed_training_equals_uninterrupted_training(
    tmp_path_factory, seed, split
) -> None:
    """Six Adam steps with a StepLR schedule, in one go or stopped after ``split`` steps, saved,
    and resumed into freshly built objects: the same parameters, bit for bit."""
    path = tmp_path_factory.mktemp("resume") / "ckpt.pth"
    whole, opt, sched = _run(seed)
    _train(whole, opt, sched, range(6))
    first, opt, sched = _run(seed)
    _train(first, opt, sched, range(split))
    save_checkpoint(path, first, opt, epoch=split, scheduler=sched, note="mid-run")
    resumed, opt, sched = _run(seed + 1)  # another init: everything must come from the file
    checkpoint = load_checkpoint(path, resumed, opt, scheduler=sched)
    assert checkpoint["epoch"] == split and checkpoint["metadata"] == {"note": "mid-run"}
    _train(resumed.train(), opt, sched, range(split, 6))
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@given(losses=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=12))
@settings(max_examples=15)
def test_checkpointing_best_model_file_holds_the_weights_of_the_lowest_loss_epoch(
    tmp_path_factory, losses
) -> None:
    """Weights set to the epoch number at each epoch: the file ends up with the first epoch of
    the lowest loss (ties keep the earlier, as ``min_delta=0`` needs a strict improvement)."""
    path = tmp_path_factory.mktemp("best") / "best.pth"
    best = BestModelCheckpoint(path)
    model = nn.Linear(1, 1)
    for epoch, loss in enumerate(losses):
        nn.init.constant_(model.weight, float(epoch))
        best.step(loss, model, epoch)
    expected = losses.index(min(losses))
    assert best.best_epoch == expected and best.best == min(losses)
    assert load_weights(nn.Linear(1, 1), path).weight.item() == expected


def test_checkpointing_best_model_in_max_mode_tracks_the_highest_accuracy(tmp_path) -> None:
    best = BestModelCheckpoint(tmp_path / "best.pth", mode="max")
    saved = [best.step(acc, nn.Linear(1, 1), i) for i, acc in enumerate([0.5, 0.7, 0.6, 0.9])]
    assert saved == [True, True, False, True] and best.best_epoch == 3


def test_checkpointing_versions_never_overwrite_and_load_back_by_number(tmp_path) -> None:
    """002 Q87's ``model_v{n}.pth``, with a different model per version (the seed saves one model
    three times, so its versions are identical)."""
    models = [nn.Linear(3, 1) for _ in range(3)]
    paths = []
    for model in models:
        paths.append(versioned_path(tmp_path))
        save_weights(model, paths[-1])
    assert [p.name for p in paths] == ["model_v1.pth", "model_v2.pth", "model_v3.pth"]
    loaded = load_weights(nn.Linear(3, 1), tmp_path / "model_v2.pth")
    assert torch.equal(loaded.weight, models[1].weight)
    assert not torch.equal(loaded.weight, models[2].weight)
