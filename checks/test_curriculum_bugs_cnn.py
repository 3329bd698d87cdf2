"""The curriculum's own mistakes in its CNNs and its ResNet transfer learning (catalog section 5):
its code, reproduced faithfully, shows the bug; our model, on the same input, does not."""

from __future__ import annotations

import os
import warnings
from urllib.parse import urlparse

import pytest
import torch
import torch.optim as optim
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import models
from torchvision.models import ResNet18_Weights

from impl import get_spec


class CurriculumCNNQ27v2(nn.Module):
    """002 Q27 v2 ("perplexity") as written, at its own size (1,147,466 parameters)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(128 * 4 * 4, 512)
        self.fc2 = nn.Linear(512, 10)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = self.pool(torch.relu(self.conv3(x)))
        x = x.view(-1, 128 * 4 * 4)
        x = self.dropout(torch.relu(self.fc1(x)))
        x = self.fc2(x)
        return x


def curriculum_evaluate_model_q27(model, testloader, device):
    """002 Q27 v2's ``evaluate_model`` as written: no_grad, but no ``model.eval()``."""
    correct = 0
    total = 0
    with torch.no_grad():
        for data in testloader:
            images, labels = data[0].to(device), data[1].to(device)
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()

    print(f"準確率: {100 * correct / total}%")


def evaluation_outputs(model: nn.Module, testloader: DataLoader) -> torch.Tensor:
    """The logits that ``curriculum_evaluate_model_q27`` computes, caught by a forward hook so
    that the curriculum's function runs unchanged: (N, 10)."""
    caught = []
    handle = model.register_forward_hook(lambda module, args, out: caught.append(out))
    try:
        curriculum_evaluate_model_q27(model, testloader, torch.device("cpu"))
    finally:
        handle.remove()
    return torch.cat(caught)


def our_q27_cnn_with_weights_of(seed_model: nn.Module) -> nn.Module:
    """``cifar_cnn_3conv_dropout`` at full size holding the curriculum model's weights (it keeps
    the curriculum's layer names, so the state_dict loads as is)."""
    ours = get_spec("cifar_cnn_3conv_dropout").create("full")
    ours.load_state_dict(seed_model.state_dict())
    return ours


def test_q27_view_bug_changes_the_batch_size_and_ours_raises() -> None:
    """Catalog B36: ``view(-1, 128 * 4 * 4)`` turns a (2, 3, 64, 64) batch into 8 rows without a
    word; ours names the shape it expects. At 32x32 the two compute the same function."""
    torch.manual_seed(0)
    seed_model = CurriculumCNNQ27v2().eval()
    ours = our_q27_cnn_with_weights_of(seed_model).eval()
    wrong = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert seed_model(wrong).shape == (8, 10)
        with pytest.raises(
            ValueError, match=r"expected input \(B, 3, 32, 32\), got \[2, 3, 64, 64\]"
        ):
            ours(wrong)
        right = torch.randn(2, 3, 32, 32)
        assert torch.equal(ours(right), seed_model(right))


def test_q27_evaluation_without_eval_is_random_and_ours_is_not() -> None:
    """Catalog B36, second half: the curriculum's ``evaluate_model`` leaves Dropout on (a model
    fresh from ``train_model`` is in training mode), so two evaluations of the same test set
    disagree; our model in eval mode, with the same weights, gives the same logits every time,
    and they are the curriculum model's own logits without Dropout."""
    torch.manual_seed(0)
    testloader = DataLoader(
        TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))),
        batch_size=64,
        shuffle=False,
    )
    seed_model = CurriculumCNNQ27v2().train()  # as train_model returns it
    first, second = (
        evaluation_outputs(seed_model, testloader),
        evaluation_outputs(seed_model, testloader),
    )
    assert not torch.equal(first, second)

    ours = our_q27_cnn_with_weights_of(seed_model).eval()
    first, second = evaluation_outputs(ours, testloader), evaluation_outputs(ours, testloader)
    assert torch.equal(first, second)
    assert torch.equal(first, evaluation_outputs(seed_model.eval(), testloader))


def curriculum_transfer_q37(**resnet18_kwargs) -> nn.Module:
    """002 Q37 (and 001 Q11 with K = 2) as written: ``models.resnet18(pretrained=True)``, freeze
    every parameter, replace ``fc``. The keyword arguments stand in for ``pretrained=True``."""
    resnet = models.resnet18(**resnet18_kwargs)
    for param in resnet.parameters():
        param.requires_grad = False
    num_features = resnet.fc.in_features
    resnet.fc = nn.Linear(num_features, 10)  # 10 個分類
    return resnet


def curriculum_training_step_q37(resnet: nn.Module, inputs, labels) -> None:
    """002 Q37's training step as written: Adam over the head, one step."""
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(resnet.fc.parameters(), lr=0.001)
    outputs = resnet(inputs)
    loss = criterion(outputs, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


BATCHNORM_BUFFERS = {"running_mean", "running_var", "num_batches_tracked"}


def _refuse_download(url, dst, *args, **kwargs):
    raise AssertionError(f"tried to download {url}")


@pytest.fixture
def hub_with_resnet18_weights(tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """A temporary torch hub dir whose cache holds a file where torchvision looks for
    ResNet18_Weights.IMAGENET1K_V1: the state_dict of a seeded random resnet18. Downloads are
    refused. Yields that state_dict; the hub dir is restored afterwards."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _refuse_download)
    torch.manual_seed(1234)
    state = models.resnet18(weights=None).state_dict()
    name = os.path.basename(urlparse(ResNet18_Weights.IMAGENET1K_V1.url).path)
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, tmp_path / "checkpoints" / name)
    try:
        yield state
    finally:
        torch.hub.set_dir(previous)


def test_q37_pretrained_true_is_deprecated_and_our_weights_load_from_the_hub_cache(
    hub_with_resnet18_weights: dict[str, torch.Tensor],
) -> None:
    """Catalog B42: ``resnet18(pretrained=True)`` is deprecated since torchvision 0.13. In 0.29 it
    still works, with two UserWarnings, as ``weights=IMAGENET1K_V1``, and like it reads the hub
    cache (downloads are refused here). Ours names the weights, warns nothing, and its backbone is
    the cached file's tensors bit for bit while its head is new."""
    state = hub_with_resnet18_weights
    with pytest.warns(UserWarning) as caught:
        seed_model = curriculum_transfer_q37(pretrained=True)
    messages = [str(w.message) for w in caught]
    assert any("'pretrained' is deprecated since 0.13" in m for m in messages), messages
    assert any(
        "equivalent to passing `weights=ResNet18_Weights.IMAGENET1K_V1`" in m for m in messages
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = get_spec("resnet18_transfer").create("full", weights="IMAGENET1K_V1")
    backbone = {k: v for k, v in ours.resnet.state_dict().items() if not k.startswith("fc.")}
    assert backbone.keys() == {k for k in state if not k.startswith("fc.")}
    for key, tensor in backbone.items():
        assert torch.equal(tensor, state[key]), key
        assert torch.equal(tensor, seed_model.state_dict()[key]), key
    assert ours.resnet.fc.weight.shape == (10, 512) and state["fc.weight"].shape == (1000, 512)
    assert all(p.requires_grad == n.startswith("fc.") for n, p in ours.resnet.named_parameters())


def test_q37_training_step_moves_the_frozen_backbone_statistics_and_ours_does_not() -> None:
    """``requires_grad = False`` freezes the parameters only: in the curriculum's training step
    the backbone's BatchNorm running statistics still move. Ours keeps the backbone in eval mode,
    so its whole state_dict, buffers included, stays bit-identical while the head learns. (The
    generic check covers parameters only.) Same architecture, same step, 64x64 inputs."""
    torch.manual_seed(0)
    inputs, labels = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
    for model, moves in (
        (curriculum_transfer_q37(weights=None), True),
        (get_spec("resnet18_transfer").create("full").train(), False),
    ):
        resnet = getattr(model, "resnet", model)
        before = {k: v.clone() for k, v in resnet.state_dict().items()}
        head_before = resnet.fc.weight.detach().clone()
        curriculum_training_step_q37(resnet, inputs, labels)
        changed = [
            k
            for k, v in resnet.state_dict().items()
            if not k.startswith("fc.") and not torch.equal(v, before[k])
        ]
        assert bool(changed) == moves, changed
        if moves:  # the parameters themselves stay put: only BatchNorm buffers move
            assert {k.rsplit(".", 1)[1] for k in changed} == BATCHNORM_BUFFERS
        assert not torch.equal(resnet.fc.weight, head_before)
