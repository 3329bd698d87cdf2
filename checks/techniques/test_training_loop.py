"""The canonical training step, the evaluation protocol and transfer learning (catalog §2
``train_step_canonical``, ``eval_protocol``, ``transfer_learning``). Curriculum: 003 §1-4,
002 Q27, Q37, 001 Q5, Q11, Q18, 004 L77-88, L132-137."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from impl import get_spec
from impl.models.resnet_transfer import NarrowResNet
from impl.techniques.training_loop import (
    count_correct,
    evaluate,
    prepare_transfer,
    set_transfer_mode,
    train_one_epoch,
    train_step,
)

SEEDS = st.integers(0, 2**31 - 1)


def _regression(seed: int, n: int = 24, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=generator, dtype=torch.float64) + 0.1 * torch.randn(
        n, 1, generator=generator, dtype=torch.float64
    )
    return x, y


def _gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> list:
    """The loss's gradients at ``model``'s current parameters, without touching ``.grad``."""
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss_fn(model(x), y), params))


# --- train_step_canonical ---------------------------------------------------------------------


@given(calls=st.integers(1, 5))
def test_train_step_canonical_backward_calls_accumulate_into_grad(calls) -> None:
    """Catalog (C-grad-accumulation, 004 L77-80): each backward adds into .grad; for d(3w)/dw
    two calls give 6.0, k calls give 3k. Why the step starts with zero_grad."""
    w = torch.tensor(2.0, requires_grad=True)
    for _ in range(calls):
        (3 * w).backward()
    assert w.grad.item() == 3.0 * calls


@given(seed=SEEDS)
@settings(max_examples=10)
def test_train_step_canonical_leaves_the_current_batch_gradient_only(seed) -> None:
    """After two train_steps, .grad is the second batch's gradient at the parameters it saw, not
    the sum of both batches' (zero_grad comes first)."""
    x, y = _regression(seed)
    torch.manual_seed(seed)
    model = nn.Linear(3, 1).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    train_step(model, x[:12], y[:12], F.mse_loss, optimizer)
    expected = _gradients(copy.deepcopy(model), x[12:], y[12:], F.mse_loss)
    train_step(model, x[12:], y[12:], F.mse_loss, optimizer)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)


@given(seed=SEEDS)
@settings(max_examples=15)
def test_train_step_canonical_one_step_lowers_a_convex_loss(seed) -> None:
    """Catalog: one step lowers a convex loss with a small lr. Least squares is quadratic with
    Hessian H = 2 X~^T X~ / n (X~ = [X, 1]); gradient descent with lr = 1 / lambda_max(H) gives
    f(w - lr g) <= f(w) - lr |g|^2 / 2 < f(w) whenever g != 0."""
    x, y = _regression(seed)
    torch.manual_seed(seed)
    model = nn.Linear(3, 1).double()
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    lipschitz = torch.linalg.eigvalsh(2 * x1.T @ x1 / len(x)).max().item()
    optimizer = torch.optim.SGD(model.parameters(), lr=1 / lipschitz)
    before = train_step(model, x, y, F.mse_loss, optimizer)
    with torch.no_grad():
        after = F.mse_loss(model(x), y).item()
    assert after < before


class _WithAnUnusedBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.frozen = nn.Linear(2, 1).requires_grad_(False)
        self.unused = nn.Linear(3, 1)  # not called in forward: its grad stays None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(torch.tanh(self.used(x)))


@pytest.mark.parametrize("optimizer_cls", [torch.optim.SGD, torch.optim.Adam])
def test_train_step_canonical_step_changes_only_parameters_with_a_grad(optimizer_cls) -> None:
    """Catalog: step() changes only parameters that have a grad, even with momentum and weight
    decay in the optimizer: the frozen and the unused layer stay bit-identical."""
    torch.manual_seed(0)
    model = _WithAnUnusedBranch()
    kwargs = {"momentum": 0.9} if optimizer_cls is torch.optim.SGD else {}
    optimizer = optimizer_cls(model.parameters(), lr=0.1, weight_decay=0.1, **kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    for _ in range(2):
        train_step(model, x, y, F.mse_loss, optimizer)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"used.weight", "used.bias"}
    assert model.unused.weight.grad is None and model.frozen.weight.grad is None


class CurriculumSimpleNN003(nn.Module):
    """003 §2 as written (784 -> 128 -> ReLU -> 10)."""

    def __init__(self):
        super(CurriculumSimpleNN003, self).__init__()  # noqa: UP008 (the seed's)
        self.fc1 = nn.Linear(784, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        return x


def curriculum_training_loop_003(model, train_loader, num_epochs):
    """003 §2's loop as written (SGD lr 0.01, CrossEntropyLoss); returns its printed losses."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    reported = []
    for _epoch in range(num_epochs):
        model.train()
        running_loss = 0.0
        for inputs_batch, labels_batch in train_loader:
            optimizer.zero_grad()
            outputs = model(inputs_batch)
            loss = criterion(outputs, labels_batch)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        reported.append(running_loss / len(train_loader))
    return reported


def _003_data(n: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(3)
    return TensorDataset(
        torch.randn(n, 784, generator=generator), torch.randint(0, 10, (n,), generator=generator)
    )


def test_train_step_canonical_equals_the_curriculum_003_loop_bit_for_bit() -> None:
    """Our train_one_epoch takes the same steps as 003 §2's loop: same data order, same
    initial weights, two epochs each; the final weights are identical."""
    dataset = _003_data(64)
    torch.manual_seed(0)
    seed_model = CurriculumSimpleNN003()
    ours = copy.deepcopy(seed_model)
    loader = DataLoader(dataset, batch_size=32, shuffle=True)
    torch.manual_seed(1)
    curriculum_training_loop_003(seed_model, loader, num_epochs=2)
    torch.manual_seed(1)  # the same shuffles
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.01)
    for _ in range(2):
        train_one_epoch(ours, loader, nn.CrossEntropyLoss(), optimizer)
    for (name, a), b in zip(
        seed_model.state_dict().items(), ours.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def curriculum_mean_of_batch_means(model: nn.Module, loader: DataLoader) -> float:
    """003 §2's reported figure, ``running_loss / len(train_loader)``, without the updates."""
    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        running_loss = sum(criterion(model(x), y).item() for x, y in loader)
    return running_loss / len(loader)


def test_train_step_canonical_epoch_loss_is_the_per_sample_mean() -> None:
    """With lr 0 (no update) an epoch's loss is the dataset's mean loss: train_one_epoch weights
    each batch by its size. 003 §2's ``running_loss / len(train_loader)`` weights the short last
    batch (10 samples in batches of 4, 4, 2) like the others and misses it."""
    dataset = _003_data(10)
    torch.manual_seed(0)
    model = CurriculumSimpleNN003()
    with torch.no_grad():
        expected = F.cross_entropy(model(dataset.tensors[0]), dataset.tensors[1]).item()
    loader = DataLoader(dataset, batch_size=4)
    ours = train_one_epoch(
        model, loader, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.0)
    )
    assert ours == pytest.approx(expected, rel=1e-6)
    assert curriculum_mean_of_batch_means(model, loader) != pytest.approx(expected, rel=1e-3)


# --- eval_protocol ------------------------------------------------------------------------------


def _dropout_bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)
    )
    model.train()(torch.randn(32, 6))  # some running statistics
    return model


def test_eval_protocol_eval_and_no_grad_give_deterministic_outputs_without_grad() -> None:
    """Catalog: in eval mode under no_grad the output has requires_grad=False and Dropout and
    BatchNorm are deterministic: two passes agree bit for bit, whatever else is in the batch."""
    model, x = _dropout_bn_model().eval(), torch.randn(8, 6)
    with torch.no_grad():
        first, second = model(x), model(x)
        alone = model(x[:1])
    assert not first.requires_grad
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[:1])


def test_eval_protocol_no_grad_alone_leaves_dropout_dropping() -> None:
    """C-eval-vs-nograd: no_grad does not touch Dropout or BatchNorm; in training mode under
    no_grad two passes differ (Dropout draws new masks) and the running statistics move."""
    model, x = _dropout_bn_model().train(), torch.randn(8, 6)
    running_mean = model[1].running_mean.clone()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
    assert not torch.equal(model[1].running_mean, running_mean)


class Curriculum004L136:
    """004 L136 on ``model.eval()``: "該模式不會影響各層的gradient計算行為，即gradient計算和儲存與
    training模式一樣，只是不進行反向傳播（backprobagation）" - eval mode computes and stores
    gradients as training does, "only it does not backpropagate". Catalog B08."""

    backpropagates_in_eval_mode = False


def test_eval_protocol_eval_mode_still_backpropagates_b08() -> None:
    """Catalog B08: eval() does not stop backpropagation. After model.eval(), backward fills
    every .grad, with the gradients of the function eval mode computes (Dropout is the identity:
    the same weights without Dropout, in training mode, give the same gradients), and an SGD
    step on them lowers the loss: the curriculum's claim is false."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 1)).eval()
    plain = nn.Sequential(model[0], model[1], model[3]).train()
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    loss = F.mse_loss(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    backpropagated = all(g is not None and g.abs().sum() > 0 for g in grads)
    assert backpropagated != Curriculum004L136.backpropagates_in_eval_mode
    expected = torch.autograd.grad(F.mse_loss(plain(x), y), list(plain.parameters()))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e)
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert F.mse_loss(model(x), y).item() < loss.item()


CURRICULUM_003_SECTION_4 = """
model.eval()  # 設置模型為評估模式
with torch.no_grad():  # 禁用梯度計算
    correct = 0
    total = 0
    for inputs_batch, labels_batch in test_loader:  # test_loader 是測試數據集的 DataLoader
        outputs = model(inputs_batch)
        _, predicted = torch.max(outputs, 1)  # 獲得最大概率的索引
        total += labels_batch.size(0)
        correct += (predicted == labels_batch).sum().item()

accuracy = correct / total
"""


def test_eval_protocol_seed_003_test_loop_has_no_test_loader_and_no_signal_b49() -> None:
    """Catalog B49: 003 §4's test loop, run after its §2 training, reads a ``test_loader`` that
    is never defined (NameError). Given one, there is nothing to measure: §2's labels are
    ``randint(0, 10)``, independent of the inputs, so any model scores chance. A binomial test
    (scipy) cannot tell its accuracy on 1,000 fresh random samples from 10% (p > 1e-3), while
    ``evaluate`` on a held-out split of a real task (scikit-learn's digits, a 64-32-10 MLP fitted
    for 60 full-batch Adam steps) is far above it (p < 1e-30)."""
    from scipy.stats import binomtest
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    model = get_spec("mlp_784_128_10").create("full")
    namespace = {"torch": torch, "model": model}
    with pytest.raises(NameError, match="test_loader"):
        exec(CURRICULUM_003_SECTION_4, namespace)
    inputs, labels = torch.randn(1000, 784), torch.randint(0, 10, (1000,))
    namespace["test_loader"] = DataLoader(TensorDataset(inputs, labels), batch_size=64)
    exec(CURRICULUM_003_SECTION_4, namespace)
    assert binomtest(namespace["correct"], namespace["total"], 0.1).pvalue > 1e-3

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:1200], order[1200:]
    ours = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(ours.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(ours(x[train]), y[train]).backward()
        optimizer.step()
    result = evaluate(ours, DataLoader(TensorDataset(x[test], y[test]), batch_size=64))
    assert binomtest(result.correct, result.total, 0.1, alternative="greater").pvalue < 1e-30


@given(
    seed=SEEDS,
    n=st.integers(1, 40),
    classes=st.integers(2, 6),
    batch_size=st.integers(1, 16),
)
def test_eval_protocol_accuracy_is_the_mean_of_argmax_equal_label(
    seed, n, classes, batch_size
) -> None:
    """Catalog: accuracy lies in [0, 1] and equals the mean of (argmax == label) over all
    samples, whatever the batching; scikit-learn's accuracy_score is the reference."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator)
    labels = torch.randint(0, classes, (n,), generator=generator)
    loader = DataLoader(TensorDataset(logits, labels), batch_size=batch_size)
    result = evaluate(nn.Identity(), loader)  # the "model" returns the logits it is given
    expected = accuracy_score(labels.numpy(), logits.argmax(1).numpy())
    assert 0.0 <= result.accuracy <= 1.0
    assert result.accuracy == pytest.approx(expected, abs=1e-12)
    assert (result.correct, result.total) == (count_correct(logits, labels), n)


def test_eval_protocol_evaluate_restores_the_mode_and_reports_the_dataset_loss() -> None:
    """evaluate runs in eval mode and hands the model back in the mode it found it, BatchNorm
    statistics untouched; its loss is the per-sample mean over the whole dataset."""
    model = _dropout_bn_model().train()
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=4), F.cross_entropy)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        expected = F.cross_entropy(model.eval()(x), y).item()
    assert result.loss == pytest.approx(expected, rel=1e-6)
    assert evaluate(model, [(x, y)]).loss is None  # no loss function given
    assert not model.training  # a model found in eval mode stays in eval mode


def test_eval_protocol_count_correct_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="expected logits"):
        count_correct(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one sample"):
        evaluate(nn.Identity(), [])


# --- transfer_learning --------------------------------------------------------------------------


def _pretrained_stand_in() -> nn.Module:
    """A randomly initialised ResNet (the property needs no pretrained weights; catalog)."""
    torch.manual_seed(0)
    return NarrowResNet((1, 1, 1, 1), width=2, num_classes=1000)


def _one_step(model: nn.Module, params, *, mode: str, lr: float = 0.1) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 3, (4,))  # 1x1 after layer3
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)  # 001 Q11's optimizer
    set_transfer_mode(model, training=True, mode=mode)
    train_step(model, x, y, F.cross_entropy, optimizer)


def test_transfer_learning_feature_extraction_changes_only_the_head() -> None:
    """Catalog: after a feature-extraction step only the head changes; every backbone parameter
    is bitwise unchanged with grad None, and (backbone in eval mode) so are its BatchNorm
    buffers."""
    model = _pretrained_stand_in()
    params = prepare_transfer(model, 3, mode="feature_extraction")
    assert [id(p) for p in params] == [id(p) for p in model.fc.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(model, params, mode="feature_extraction")
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("fc."))


def test_transfer_learning_frozen_backbone_in_training_mode_drifts() -> None:
    """The contrast: 001 Q11's loop leaves the whole model in training mode; requires_grad=False
    freezes the parameters, not the BatchNorm running statistics, which move on every batch.
    ``set_transfer_mode`` is what keeps them."""
    model = _pretrained_stand_in()
    params = prepare_transfer(model, 3, mode="feature_extraction")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(model, params, mode="fine_tuning")  # plain model.train(), as the seed
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {k.rsplit(".", 1)[1] for k in moved - {"fc.weight", "fc.bias"}} == {
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }


def test_transfer_learning_fine_tuning_changes_every_parameter() -> None:
    """Catalog: fine-tuning mode updates everything: every parameter tensor gets a grad and
    moves."""
    model = _pretrained_stand_in()
    params = prepare_transfer(model, 3, mode="fine_tuning")
    assert len(params) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _one_step(model, params, mode="fine_tuning")
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged


def test_transfer_learning_optimizer_over_all_parameters_equals_the_head_only_one() -> None:
    """001 Q11 hands the optimizer ``model.fc.parameters()``; handing it every parameter gives
    bit-identical weights, since step() skips the frozen ones (grad None)."""
    head_only, everything = _pretrained_stand_in(), _pretrained_stand_in()
    for model in (head_only, everything):
        torch.manual_seed(2)  # the same new head
        prepare_transfer(model, 3)
    params = list(head_only.fc.parameters())
    _one_step(head_only, params, mode="feature_extraction")
    _one_step(everything, everything.parameters(), mode="feature_extraction")
    for (name, a), b in zip(
        head_only.state_dict().items(), everything.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_transfer_learning_registered_model_trains_what_prepare_transfer_trains() -> None:
    """The registered ``resnet18_transfer`` (tiny: a NarrowResNet backbone) trains exactly the
    parameters feature extraction hands the optimizer: the head's."""
    registered = get_spec("resnet18_transfer").create("tiny")
    trainable = {
        n.removeprefix("resnet.") for n, p in registered.named_parameters() if p.requires_grad
    }
    model = _pretrained_stand_in()
    prepare_transfer(model, 10)
    assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def test_transfer_learning_prepare_transfer_rejects_a_head_that_is_not_linear() -> None:
    with pytest.raises(TypeError, match="must be an nn.Linear"):
        prepare_transfer(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), 3, head="1")
