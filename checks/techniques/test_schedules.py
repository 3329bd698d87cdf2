"""Learning-rate schedules (catalog §2 ``lr_step``, ``lr_exponential``, ``lr_cosine``,
``lr_plateau``, ``lr_manual``; bug B31): torch's schedulers against their closed forms, the
catalog's printed sequences, the step order, and setting the lr by hand."""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import math
import re
import warnings

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, TensorDataset

from impl.techniques.schedules import (
    ManualLR,
    cosine_annealing_lr,
    exponential_lr,
    plateau_lrs,
    scale_lr,
    set_lr,
    step_lr,
    train_epochs,
)

LR0 = st.floats(1e-4, 10.0)
GAMMA = st.floats(0.01, 0.99)
REL = 1e-12  # float64 rounding over at most ~60 multiplications: ~60 eps ≈ 1.3e-14


def optimizer(lr: float = 0.1, *, groups: int = 1, cls=optim.SGD, **kwargs) -> optim.Optimizer:
    params = [nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    return cls([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], **kwargs)


def lrs_after_each_step(scheduler, epochs: int) -> list[float]:
    """``get_last_lr()[0]`` after each of ``epochs`` (optimizer.step(), scheduler.step()) pairs;
    parameters without gradients, so the optimizer changes nothing."""
    out = []
    for _ in range(epochs):
        scheduler.optimizer.step()
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def lrs_used_by_optimizer_steps(opt: optim.Optimizer) -> list[float]:
    """Record the lr of group 0 at every ``opt.step()`` (a step pre-hook)."""
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: used.append(o.param_groups[0]["lr"]))
    return used


# ---------------------------------------------------------------------------------------------
# lr_step


@given(lr0=LR0, step_size=st.integers(1, 12), gamma=GAMMA, epochs=st.integers(1, 40))
def test_lr_step_matches_its_closed_form(lr0, step_size, gamma, epochs) -> None:
    scheduler = lr_scheduler.StepLR(optimizer(lr0), step_size=step_size, gamma=gamma)
    got = lrs_after_each_step(scheduler, epochs)
    want = [lr0 * gamma ** (e // step_size) for e in range(1, epochs + 1)]
    assert got == pytest.approx(want, rel=REL)
    assert [step_lr(lr0, e, step_size=step_size, gamma=gamma) for e in range(1, epochs + 1)] == (
        pytest.approx(want, rel=REL)
    )


class CurriculumSimpleNetQ15(nn.Module):
    """001 Q15's model as written."""

    def __init__(self):
        super(CurriculumSimpleNetQ15, self).__init__()  # noqa: UP008 (the seed's)
        self.fc1 = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc1(x)


def curriculum_001_q15() -> str:
    """001 Q15 as written (StepLR(step_size=5, gamma=0.1), 10 epochs); returns its stdout."""
    model = CurriculumSimpleNetQ15()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.1)
    input = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # noqa: A001 (the seed's name)
    target = torch.tensor([[2.0], [3.0]])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for epoch in range(10):
            optimizer.zero_grad()
            output = model(input)
            loss = nn.MSELoss()(output, target)
            loss.backward()
            optimizer.step()
            scheduler.step()
            print(
                f"Epoch {epoch + 1}, Loss: {loss.item()}, Learning Rate: {scheduler.get_last_lr()}"
            )
    return out.getvalue()


def test_lr_step_seed_q15_prints_the_catalog_sequence() -> None:
    """Catalog ``lr_step``: 001 Q15 prints [0.1×4, 0.01×5, 0.001] ✔ (re-checked here)."""
    printed = re.findall(r"Learning Rate: \[([^\]]+)\]", curriculum_001_q15())
    assert [float(v) for v in printed] == pytest.approx([0.1] * 4 + [0.01] * 5 + [0.001], rel=REL)


def test_lr_step_scheduler_before_optimizer_warns_and_skips_the_initial_lr() -> None:
    opt = optimizer(0.1)
    used = lrs_used_by_optimizer_steps(opt)
    scheduler = lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    with pytest.warns(UserWarning, match=r"lr_scheduler.step\(\)` before `optimizer.step\(\)"):
        scheduler.step()
        opt.step()
    assert used == [pytest.approx(0.01, rel=REL)]  # the first epoch never trained at 0.1


def test_lr_step_train_epochs_steps_the_optimizer_first() -> None:
    """``train_epochs`` steps the scheduler after the optimizer: no warning, and the lr each epoch
    trains with is lr(e) for e = 0, 1, 2, ..."""
    opt = optimizer(0.1)
    used = lrs_used_by_optimizer_steps(opt)
    scheduler = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reported = train_epochs(opt, scheduler, 6, lambda: (opt.step(), 0.0)[1])
    want = [step_lr(0.1, e, step_size=2, gamma=0.1) for e in range(6)]
    assert used == pytest.approx(want, rel=REL)
    assert reported == pytest.approx(want, rel=REL)


# ---------------------------------------------------------------------------------------------
# lr_exponential


@given(lr0=LR0, gamma=GAMMA, epochs=st.integers(1, 40))
def test_lr_exponential_matches_its_closed_form(lr0, gamma, epochs) -> None:
    scheduler = lr_scheduler.ExponentialLR(optimizer(lr0), gamma=gamma)
    want = [lr0 * gamma**e for e in range(1, epochs + 1)]
    assert lrs_after_each_step(scheduler, epochs) == pytest.approx(want, rel=REL)
    assert [exponential_lr(lr0, e, gamma=gamma) for e in range(1, epochs + 1)] == pytest.approx(
        want, rel=REL
    )


# ---------------------------------------------------------------------------------------------
# lr_cosine

COSINE = {"lr0": LR0, "t_max": st.integers(1, 50), "eta_min_fraction": st.floats(0.0, 0.9)}


@given(**COSINE)
def test_lr_cosine_matches_its_closed_form(lr0, t_max, eta_min_fraction) -> None:
    """torch's CosineAnnealingLR is recursive; the closed form of its documentation and ours
    agree to float64 rounding (relative to lr0: ~T_max roundings of size lr0·eps)."""
    eta_min = lr0 * eta_min_fraction
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer(lr0), T_max=t_max, eta_min=eta_min)
    got = lrs_after_each_step(scheduler, t_max)
    want = [
        eta_min + 0.5 * (lr0 - eta_min) * (1 + math.cos(math.pi * t / t_max))
        for t in range(1, t_max + 1)
    ]
    assert got == pytest.approx(want, rel=0, abs=1e-12 * lr0)
    ours = [cosine_annealing_lr(lr0, t, t_max=t_max, eta_min=eta_min) for t in range(1, t_max + 1)]
    assert ours == pytest.approx(want, rel=0, abs=1e-12 * lr0)


@given(**COSINE)
def test_lr_cosine_reaches_eta_min_at_t_max(lr0, t_max, eta_min_fraction) -> None:
    eta_min = lr0 * eta_min_fraction
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer(lr0), T_max=t_max, eta_min=eta_min)
    assert lrs_after_each_step(scheduler, t_max)[-1] == pytest.approx(eta_min, rel=0, abs=1e-12)
    assert cosine_annealing_lr(lr0, t_max, t_max=t_max, eta_min=eta_min) == pytest.approx(
        eta_min, rel=0, abs=1e-12
    )


@given(**COSINE)
def test_lr_cosine_never_rises_before_t_max(lr0, t_max, eta_min_fraction) -> None:
    scheduler = lr_scheduler.CosineAnnealingLR(
        optimizer(lr0), T_max=t_max, eta_min=lr0 * eta_min_fraction
    )
    lrs = [lr0, *lrs_after_each_step(scheduler, t_max)]
    assert all(b <= a + 1e-12 * lr0 for a, b in zip(lrs, lrs[1:], strict=False))


def test_lr_cosine_closed_form_rejects_epochs_past_t_max() -> None:
    with pytest.raises(ValueError, match="0 <= epoch <= t_max"):
        cosine_annealing_lr(1.0, 11, t_max=10)


# ---------------------------------------------------------------------------------------------
# lr_plateau


def plateau_trace(metrics, lr0=1.0, **kwargs) -> list[float]:
    """torch's ReduceLROnPlateau: group 0's lr after each ``step(metric)``."""
    opt = optimizer(lr0)
    scheduler = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for m in metrics:
        scheduler.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_lr_plateau_constant_metric_drops_on_the_fifth_step_then_every_fourth() -> None:
    """Catalog ``lr_plateau`` (002 Q69's settings, mode='min', factor=0.1, patience=3):
    [1,1,1,1,0.1,0.1,0.1,0.1,0.01,0.01] ✔, from torch and from the written-out form."""
    want = [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01]
    kwargs = {"mode": "min", "factor": 0.1, "patience": 3}
    assert plateau_trace([0.5] * 10, **kwargs) == pytest.approx(want, rel=REL)
    assert plateau_lrs([0.5] * 10, 1.0, **kwargs) == pytest.approx(want, rel=REL)


@given(
    metrics=st.lists(
        st.one_of(st.integers(0, 4).map(float), st.floats(-5.0, 5.0)), min_size=1, max_size=30
    ),
    mode=st.sampled_from(["min", "max"]),
    factor=st.floats(0.05, 0.9),
    patience=st.integers(0, 4),
    threshold=st.sampled_from([0.0, 1e-4, 0.1, 0.5]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 0.05]),
    lr0=st.sampled_from([1.0, 3e-8]),  # 3e-8: a few cuts fall below eps=1e-8 and are skipped
)
def test_lr_plateau_written_out_matches_torch(
    metrics, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, lr0
) -> None:
    kwargs = {
        "mode": mode,
        "factor": factor,
        "patience": patience,
        "threshold": threshold,
        "threshold_mode": threshold_mode,
        "cooldown": cooldown,
        "min_lr": min_lr,
    }
    assert plateau_lrs(metrics, lr0, **kwargs) == pytest.approx(
        plateau_trace(metrics, lr0, **kwargs), rel=REL
    )


def test_lr_plateau_skips_a_cut_of_eps_or_less() -> None:
    """A cut from 1e-8 to 1e-9 changes the lr by 9e-9 <= eps (1e-8): torch skips it."""
    assert plateau_trace([1.0] * 4, 1e-8, patience=0) == [1e-8] * 4
    assert plateau_lrs([1.0] * 4, 1e-8, patience=0) == [1e-8] * 4


@given(patience=st.integers(0, 6))
def test_lr_plateau_relative_threshold_counts_tiny_gains_as_bad(patience) -> None:
    """A metric falling by a relative 1e-5 each epoch is no gain for the default threshold 1e-4:
    the lr drops at step patience + 2, as if the metric were constant."""
    metrics = [1.0 * (1 - 1e-5) ** i for i in range(patience + 2)]
    assert plateau_trace(metrics, patience=patience)[-1] == pytest.approx(0.1, rel=REL)
    assert plateau_trace(metrics, patience=patience, threshold=0.0)[-1] == 1.0


def test_lr_plateau_train_epochs_passes_the_metric() -> None:
    """``train_epochs`` hands ReduceLROnPlateau the metric each epoch returns: a validation loss
    that stops improving after epoch 2 cuts the lr after patience + 1 more epochs."""
    opt = optimizer(1.0)
    scheduler = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    val_losses = iter([3.0, 2.0, 2.5, 2.5, 2.5, 2.5])
    used = train_epochs(opt, scheduler, 6, lambda: next(val_losses))
    assert used == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]


# ---------------------------------------------------------------------------------------------
# lr_manual


def sgd_on_quadratic(lr: float, **kwargs) -> tuple[nn.Parameter, optim.Optimizer]:
    """One parameter p = [1, -2, 3] with loss ½‖p‖², so grad = p."""
    p = nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    return p, optim.SGD([p], lr=lr, **kwargs)


def sgd_step(p: nn.Parameter, opt: optim.Optimizer) -> torch.Tensor:
    """One step on ½‖p‖²; returns the change of p."""
    before = p.detach().clone()
    opt.zero_grad()
    (0.5 * (p**2).sum()).backward()
    opt.step()
    return p.detach() - before


@given(lr0=st.floats(1e-3, 0.5), v=st.floats(1e-3, 0.5))
def test_lr_manual_set_lr_takes_effect_on_the_next_step(lr0, v) -> None:
    """SGD moves p by -lr·grad: by -lr0·p before the write, by -v·p on the step after it."""
    p, opt = sgd_on_quadratic(lr0)
    grad = p.detach().clone()
    torch.testing.assert_close(sgd_step(p, opt), -lr0 * grad)
    set_lr(opt, v)
    grad = p.detach().clone()
    torch.testing.assert_close(sgd_step(p, opt), -v * grad)


@given(v1=st.floats(1e-4, 1e-1), v2=st.floats(1e-4, 1e-1))
@settings(max_examples=10)
def test_lr_manual_adam_update_is_proportional_to_lr(v1, v2) -> None:
    """Adam's step is lr·m̂/(√v̂ + eps): from the same state (one step taken at 1e-2), the next
    updates at lr v1 and at lr v2 are in the ratio v1/v2."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    opt = optim.Adam(model.parameters(), lr=1e-2)

    def step() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    step()
    weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    deltas = []
    for v in (v1, v2):
        model.load_state_dict(weights)
        opt.load_state_dict(copy.deepcopy(state))  # loading keeps the tensors; steps mutate them
        set_lr(opt, v)
        step()
        deltas.append(torch.cat([(model.state_dict()[k] - weights[k]).flatten() for k in weights]))
    torch.testing.assert_close(deltas[0] / v1, deltas[1] / v2, rtol=1e-9, atol=0)


def test_lr_manual_set_lr_keeps_the_momentum_buffer() -> None:
    """Writing param_groups keeps the optimizer's state: with momentum μ, the step after the
    write is -v·(μ·buf + grad). A new optimizer at v would lose buf and step by -v·grad."""
    mu = 0.9
    p, opt = sgd_on_quadratic(0.1, momentum=mu)
    first = sgd_step(p, opt)  # buf = grad of the first step = -first / 0.1
    buf = -first / 0.1
    set_lr(opt, 0.05)
    grad = p.detach().clone()
    torch.testing.assert_close(sgd_step(p, opt), -0.05 * (mu * buf + grad))


@given(lr0=LR0, factor=st.floats(1e-3, 10.0), groups=st.integers(1, 4))
def test_lr_manual_scale_lr_keeps_group_ratios(lr0, factor, groups) -> None:
    opt = optimizer(lr0, groups=groups)
    before = [g["lr"] for g in opt.param_groups]
    scale_lr(opt, factor)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [lr * factor for lr in before], rel=REL
    )


def test_lr_manual_set_lr_needs_one_value_per_group() -> None:
    with pytest.raises(ValueError, match="2 learning rates for 3 parameter groups"):
        set_lr(optimizer(groups=3), [0.1, 0.2])


@given(
    milestones=st.lists(st.integers(1, 20), min_size=1, max_size=4, unique=True),
    gamma=GAMMA,
    groups=st.integers(1, 3),
)
@settings(max_examples=15)
def test_lr_manual_manuallr_matches_multisteplr(milestones, gamma, groups) -> None:
    """ManualLR({m: γ}) is torch's MultiStepLR(milestones, γ): the same lr in every group after
    every epoch."""
    ours = ManualLR(optimizer(0.3, groups=groups), dict.fromkeys(milestones, gamma))
    torch_ = lr_scheduler.MultiStepLR(optimizer(0.3, groups=groups), milestones, gamma=gamma)
    for _ in range(22):
        ours.optimizer.step()
        torch_.optimizer.step()
        ours.step()
        torch_.step()
        assert ours.get_last_lr() == pytest.approx(torch_.get_last_lr(), rel=REL)


def curriculum_002_q55(model, optimizer, criterion, train_loader, epochs=50):
    """002 Q55 as written ("train with torch.optim.SGD and adjust the learning rate manually"):
    the answer builds a StepLR. ``model``, ``optimizer``, ``criterion`` and ``train_loader`` are
    names it uses without defining (B66); ``epochs`` shortens its 50. Returns its stdout."""
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for epoch in range(epochs):
            model.train()
            for inputs, labels in train_loader:
                outputs = model(inputs)
                loss = criterion(outputs, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            scheduler.step()
            print(f"Epoch {epoch + 1}, Learning Rate: {scheduler.get_last_lr()[0]:.5f}")
    return out.getvalue()


def test_lr_manual_seed_q55_uses_steplr_not_a_manual_change_b31() -> None:
    """B31: 002 Q55's title asks for a manual lr change; its code holds no ``param_groups`` write
    and trains with StepLR's lr0·0.1^⌊e/10⌋ whatever lr a user wants. Writing param_groups each
    epoch (``set_lr``) trains with exactly the requested lrs."""
    requested = [0.1, 0.1, 0.05, 0.05, 0.02, 0.02, 0.01]
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g))

    assert "param_groups" not in inspect.getsource(curriculum_002_q55)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    used = lrs_used_by_optimizer_steps(opt)
    curriculum_002_q55(model, opt, nn.MSELoss(), DataLoader(data, batch_size=8), len(requested))
    assert used == [0.1] * len(requested) != requested

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    used = lrs_used_by_optimizer_steps(opt)
    for lr in requested:
        set_lr(opt, lr)
        for inputs, labels in DataLoader(data, batch_size=8):
            loss = nn.MSELoss()(model(inputs), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert used == requested
