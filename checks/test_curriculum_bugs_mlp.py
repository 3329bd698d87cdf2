"""The curriculum's own mistakes and caveats in its small MLPs and linear regressions (catalog
section 5 and the notes of ``binary_mlp_small``, ``binary_mlp_bn``, ``mlp_10_50_1_dropout``,
``linreg_1d``): its code, reproduced faithfully, shows the problem; our model, on the same input,
does not, or the property that justifies keeping the seed's choice holds."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
from hypothesis import given
from hypothesis import strategies as st

from impl import get_spec


class CurriculumBinaryClassifierQ26v1(nn.Module):
    """002 Q26 v1 as written: Linear -> ReLU -> Linear -> Sigmoid, trained with nn.BCELoss."""

    def __init__(self, input_size, hidden_size):
        super(CurriculumBinaryClassifierQ26v1, self).__init__()  # noqa: UP008 (the seed's)
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        x = self.sigmoid(x)
        return x


class CurriculumBinaryClassifierQ26v2(nn.Module):
    """002 Q26 v2 ("perplexity") as written, at its own size (10,113 parameters)."""

    def __init__(self, input_size, hidden_size1=128, hidden_size2=64):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(input_size, hidden_size1),
            nn.ReLU(),
            nn.BatchNorm1d(hidden_size1),
            nn.Dropout(0.3),
            nn.Linear(hidden_size1, hidden_size2),
            nn.ReLU(),
            nn.BatchNorm1d(hidden_size2),
            nn.Dropout(0.2),
            nn.Linear(hidden_size2, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.network(x)


class CurriculumSimpleNetQ3(nn.Module):
    """001 Q3/Q4 as written: Dropout between fc1 and the ReLU ("before the activation")."""

    def __init__(self):
        super(CurriculumSimpleNetQ3, self).__init__()  # noqa: UP008 (the seed's)
        self.fc1 = nn.Linear(10, 50)
        self.dropout = nn.Dropout(p=0.5)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(50, 1)

    def forward(self, x):
        x = self.fc1(x)
        x = self.dropout(x)
        x = self.relu(x)
        x = self.fc2(x)
        return x


class DropoutAfterActivation(CurriculumSimpleNetQ3):
    """The same layers in 004 L125-128's order: fc1 -> activation -> Dropout -> fc2."""

    def __init__(self, activation: nn.Module | None = None):
        super().__init__()
        if activation is not None:
            self.relu = activation

    def forward(self, x):
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


def _logit_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fc2's output (the pre-sigmoid logit), kept in the graph so its gradient can be read."""
    caught = []
    handle = model.fc2.register_forward_hook(lambda module, args, out: caught.append(out))
    try:
        output = model(x)
    finally:
        handle.remove()
    caught[0].retain_grad()
    return output, caught[0]


def test_q26_sigmoid_then_bce_saturates_and_our_logit_loss_does_not() -> None:
    """Catalog binary_mlp_small (002 Q26; its own loss table recommends BCEWithLogitsLoss): on a
    confidently wrong sample (logit 40, label 0) sigmoid(40) rounds to 1.0 in float32, so the
    seed's nn.BCELoss clamps at 100 and no gradient reaches the logit or any weight; our logit and
    the task's BCE with logits give loss 40 and gradient 1 on the logit."""
    torch.manual_seed(0)
    seed_model = CurriculumBinaryClassifierQ26v1(input_size=10, hidden_size=16)
    spec = get_spec("binary_mlp_small")
    ours = spec.create("full")
    x, label = torch.randn(1, 10), torch.zeros(1, 1)
    with torch.no_grad():  # drive the logit of this sample to 40: a confidently wrong positive
        seed_model.fc2.bias += 40.0 - seed_model.fc2(seed_model.relu(seed_model.fc1(x)))[0]
    ours.load_state_dict(seed_model.state_dict())  # same keys: the Sigmoid held no parameters

    probability, seed_logit = _logit_of(seed_model, x)
    seed_loss = nn.BCELoss()(probability, label)  # the seed's criterion
    seed_loss.backward()
    assert seed_logit.item() == pytest.approx(40.0, abs=1e-4)
    assert probability.item() == 1.0
    assert seed_loss.item() == 100.0  # log(1 - 1) = -inf, clamped at -100
    assert seed_logit.grad.item() == 0.0
    assert all(not p.grad.any() for p in seed_model.parameters()), "the seed learns nothing"

    our_logit = ours(x)
    our_logit.retain_grad()
    our_loss = spec.loss(our_logit, label)  # the task's: BCE with logits
    our_loss.backward()
    assert our_logit.item() == pytest.approx(40.0, abs=1e-4)
    assert our_loss.item() == pytest.approx(40.0, rel=1e-6)
    assert our_logit.grad.item() == pytest.approx(1.0)  # sigmoid(40) - 0
    assert all(p.grad.any() for p in ours.parameters())


@given(
    rows=st.lists(
        st.lists(st.floats(-100.0, 100.0, width=32), min_size=10, max_size=10),
        min_size=1,
        max_size=6,
    ),
    rng_seed=st.integers(0, 2**31 - 1),
)
def test_dropout_before_relu_equals_dropout_after_it_under_the_same_mask(
    rows: list[list[float]], rng_seed: int
) -> None:
    """Catalog C-dropout-relu-commute: 001 Q3 puts Dropout before the ReLU, 004 after it; under
    the same mask relu(m * x / (1 - p)) == m * relu(x) / (1 - p), so both orders are one function
    in training mode too, and our ``mlp_10_50_1_dropout`` keeps the seed's order (and weights).
    Not vacuous: with Sigmoid (sigmoid(0) != 0) the two orders differ under the same mask."""
    x = torch.tensor(rows)
    torch.manual_seed(0)
    seed_model = CurriculumSimpleNetQ3().train()
    after = DropoutAfterActivation().train()
    after.load_state_dict(seed_model.state_dict())
    ours = get_spec("mlp_10_50_1_dropout").create("full").train()
    ours.load_state_dict(seed_model.state_dict())
    outputs = []
    for model in (seed_model, after, ours):
        torch.manual_seed(rng_seed)  # the same Bernoulli mask (B, 50) for each
        outputs.append(model(x))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=0)

    sigmoid_before, sigmoid_after = CurriculumSimpleNetQ3(), DropoutAfterActivation(nn.Sigmoid())
    sigmoid_before.relu = nn.Sigmoid()
    sigmoid_after.load_state_dict(seed_model.state_dict())
    sigmoid_before.load_state_dict(seed_model.state_dict())
    torch.manual_seed(rng_seed)
    before_out = sigmoid_before.train()(x)
    torch.manual_seed(rng_seed)
    after_out = sigmoid_after.train()(x)
    assert not torch.equal(before_out, after_out)


def test_q26_v2_batchnorm_rejects_a_training_batch_of_one_as_ours_declares() -> None:
    """Catalog binary_mlp_bn: BatchNorm1d raises ValueError on a training batch of 1, in the
    seed's model as in ours (declared ``min_train_batch=2``; the generated check covers our
    side); in eval both take a batch of 1 and agree once the logit passes the seed's Sigmoid."""
    torch.manual_seed(0)
    seed_model = CurriculumBinaryClassifierQ26v2(10)
    ours = get_spec("binary_mlp_bn").create("full")
    ours.load_state_dict(seed_model.state_dict())  # the seed's keys: network.0 ... network.8
    assert get_spec("binary_mlp_bn").min_train_batch == 2
    x = torch.randn(1, 10)
    for model in (seed_model, ours):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            model.train()(x)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(ours.eval()(x)), seed_model.eval()(x))


def test_q53_hundred_epochs_do_not_converge_and_more_of_the_same_loop_does() -> None:
    """Catalog linreg_1d: 002 Q53's loop (SGD lr 0.01, MSE, x = 1..4, y = 2x) stops after 100
    epochs at w ~ 1.72, b ~ 0.81, loss ~ 0.11 (from torch.manual_seed(0)): not converged. Our
    ``linreg_1d`` from the same initial weights follows the same path, and 3,000 epochs of the
    same loop reach the exact fit w = 2, b = 0."""
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = torch.tensor([[2.0], [4.0], [6.0], [8.0]])

    def q53_loop(model, epochs):
        criterion = nn.MSELoss()
        optimizer = optim.SGD(model.parameters(), lr=0.01)
        for _ in range(epochs):
            outputs = model(x)
            loss = criterion(outputs, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    torch.manual_seed(0)
    seed_model = nn.Linear(1, 1)
    ours = get_spec("linreg_1d").create("full")
    ours.fc.load_state_dict(seed_model.state_dict())
    seed_loss = q53_loop(seed_model, 100)
    assert seed_model.weight.item() == pytest.approx(1.72, abs=0.01)
    assert seed_model.bias.item() == pytest.approx(0.81, abs=0.01)
    assert seed_loss == pytest.approx(0.11, abs=0.01)
    assert q53_loop(ours, 100) == pytest.approx(seed_loss, rel=1e-5)
    q53_loop(ours, 2900)
    assert ours.fc.weight.item() == pytest.approx(2.0, abs=1e-3)
    assert ours.fc.bias.item() == pytest.approx(0.0, abs=3e-3)
