"""Automatic mixed precision (002 Q58, Q71; catalog ``amp``, B16): GradScaler and autocast.

GradScaler's rules are checked on CPU, where ``torch.amp.GradScaler("cpu")`` is a working scaler,
and again on CUDA where a GPU exists. The expected values come from the documentation
(https://pytorch.org/docs/stable/amp.html): ``scale(loss) = loss · scale``; a step with inf/NaN
gradients is skipped and the scale multiplied by ``backoff_factor`` 0.5; it is multiplied by
``growth_factor`` 2 after ``growth_interval`` (2000) finite steps in a row; it starts at 2**16.
Autocast's per-op dtypes come from the "Autocast Op Reference" of the same page.

The training-step checks use small dyadic rationals as data (inputs in {-1, 0, 1}, weights and
targets multiples of 1/4), so every intermediate is exactly representable in bfloat16 and
float16: the mixed-precision gradient must then equal the float32 one bit for bit, and no
tolerance is needed.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.machine import CUDA, CUDA_BF16
from impl.techniques.amp import DEFAULT_AUTOCAST_DTYPE, amp_train_step, grad_scaler

SEEDS = st.integers(0, 2**31 - 1)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


# ---------------------------------------------------------------------------------------------
# The seed's code, as written (002 Q58; Q71 is the same loop over 5 epochs)


def curriculum_002_q58(model, x, y, criterion, optimizer, epochs=50):
    """002 Q58 as written (its undefined ``model``, ``x``, ``y``, ``criterion``, ``optimizer``
    passed in; ``epochs`` for its 50; the print left out). Returns the scaler."""
    from torch.cuda.amp import GradScaler, autocast

    scaler = GradScaler()

    for _epoch in range(epochs):
        optimizer.zero_grad()
        with autocast():
            outputs = model(x)
            loss = criterion(outputs, y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return scaler


# ---------------------------------------------------------------------------------------------
# Helpers


def one_step(scaler, model, optimizer, loss_factor: float = 1.0) -> None:
    """A scaled step of a float32 model on fixed data; ``loss_factor`` inf or NaN poisons it."""
    optimizer.zero_grad()
    x = torch.ones(2, model.in_features, device=model.weight.device)
    loss = model(x).square().mean() * loss_factor
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def linear_setup(device: str, seed: int = 0, momentum: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 3, generator=g))
        model.bias.copy_(torch.randn(2, generator=g))
    model = model.to(device)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)


def dyadic_problem(seed: int, batch: int = 8, features: int = 4):
    """Linear(features, 1) with weights and bias in multiples of 1/4 in [-1, 1], inputs in
    {-1, 0, 1}, targets so that each residual is a multiple of 1/4 in [-4, 4]. Outputs are then
    multiples of 1/4 below 5 in size (5 significant bits); the MSE gradient 2r/N is r/4 for
    N = 8; the weight gradient sums at most 8 of them, at most 128 quarter units (8 bits). Every
    value fits bfloat16's 8-bit and float16's 11-bit significand, and every scaling (the loss
    scale, the 1/N) is a power of two, so none of them is rounded."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(features, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randint(-4, 5, (1, features), generator=g) / 4)
        model.bias.copy_(torch.randint(-4, 5, (1,), generator=g) / 4)
    x = torch.randint(-1, 2, (batch, features), generator=g).float()
    residual = torch.randint(-16, 17, (batch, 1), generator=g) / 4
    with torch.no_grad():
        y = model(x) - residual
    return model, x, y


def float32_gradients(model, x, y, loss_fn) -> list[torch.Tensor]:
    model.zero_grad()
    loss_fn(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


# ---------------------------------------------------------------------------------------------
# GradScaler semantics


@pytest.mark.parametrize("device", DEVICES)
def test_amp_grad_scaler_is_enabled_with_the_documented_defaults(device: str) -> None:
    scaler = torch.amp.GradScaler(device)
    assert scaler.is_enabled()
    assert scaler.get_scale() == 2.0**16
    assert scaler.get_growth_factor() == 2.0
    assert scaler.get_backoff_factor() == 0.5
    assert scaler.get_growth_interval() == 2000


@pytest.mark.parametrize("device", DEVICES)
@given(loss=st.floats(-1e3, 1e3, allow_nan=False), exponent=st.integers(0, 24))
def test_amp_scale_multiplies_the_loss_by_the_scale(device, loss, exponent) -> None:
    """A power-of-two scale (at least 1, so no float32 subnormal loses bits) multiplies exactly,
    so the product is compared exactly."""
    scaler = torch.amp.GradScaler(device, init_scale=2.0**exponent)
    scaled = scaler.scale(torch.tensor(loss, device=device))
    assert scaled.item() == torch.tensor(loss).item() * 2.0**exponent


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=10)
@given(seed=SEEDS, exponent=st.integers(0, 20))
def test_amp_scaled_backward_gives_the_scale_times_the_gradient(device, seed, exponent) -> None:
    model, _ = linear_setup(device, seed)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed)).to(device)
    model(x).square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    scaler = torch.amp.GradScaler(device, init_scale=2.0**exponent)
    scaler.scale(model(x).square().mean()).backward()
    for p, g in zip(model.parameters(), plain, strict=True):
        torch.testing.assert_close(p.grad, g * 2.0**exponent, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=10)
@given(seed=SEEDS, exponent=st.integers(0, 20))
def test_amp_scaler_step_unscales_so_the_update_is_the_plain_one(device, seed, exponent) -> None:
    """After ``scaler.step`` the parameters are those of an unscaled ``optimizer.step()``:
    dividing by a power of two is exact, so the two agree to float32 rounding."""
    plain_model, plain_opt = linear_setup(device, seed, momentum=0.9)
    amp_model, amp_opt = linear_setup(device, seed, momentum=0.9)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**exponent)
    for _ in range(3):
        plain_opt.zero_grad()
        plain_model(torch.ones(2, 3, device=device)).square().mean().backward()
        plain_opt.step()
        one_step(scaler, amp_model, amp_opt)
    for p, q in zip(amp_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("poison", [float("inf"), float("nan")])
def test_amp_step_with_a_nonfinite_gradient_is_skipped(device: str, poison: float) -> None:
    model, optimizer = linear_setup(device, momentum=0.9)
    scaler = torch.amp.GradScaler(device)
    one_step(scaler, model, optimizer)  # a finite step first: momentum buffers exist
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    one_step(scaler, model, optimizer, loss_factor=poison)
    for p, before in zip(model.parameters(), params, strict=True):
        assert torch.equal(p, before)
    for p, before in zip(model.parameters(), buffers, strict=True):
        assert torch.equal(optimizer.state[p]["momentum_buffer"], before)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("poison", [float("inf"), float("nan")])
def test_amp_scale_backs_off_by_half_after_a_nonfinite_step(device: str, poison: float) -> None:
    model, optimizer = linear_setup(device)
    scaler = torch.amp.GradScaler(device, init_scale=1024.0)
    one_step(scaler, model, optimizer, loss_factor=poison)
    assert scaler.get_scale() == 512.0
    one_step(scaler, model, optimizer, loss_factor=poison)
    assert scaler.get_scale() == 256.0


@pytest.mark.parametrize("device", DEVICES)
def test_amp_scale_grows_after_2000_finite_steps_and_not_before(device: str) -> None:
    """The default growth_interval, 2000: the scale is 2**16 after 1,999 finite steps, 2**17
    after the 2,000th."""
    weight = torch.zeros(1, device=device, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.0)
    scaler = torch.amp.GradScaler(device)
    for step in range(1, 2001):
        optimizer.zero_grad()
        scaler.scale(weight.sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        if step == 1999:
            assert scaler.get_scale() == 2.0**16
    assert scaler.get_scale() == 2.0**17


def documented_scales(init: float, interval: int, finite_steps: list[bool]) -> list[float]:
    """The scale after each step by the documentation's rule: ×0.5 and the count restarts after
    a non-finite step; ×2 and the count restarts after ``interval`` finite steps in a row."""
    scale, run, scales = init, 0, []
    for finite in finite_steps:
        if finite:
            run += 1
            if run == interval:
                scale, run = scale * 2, 0
        else:
            scale, run = scale * 0.5, 0
        scales.append(scale)
    return scales


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=15)
@given(
    interval=st.integers(1, 4),
    finite_steps=st.lists(st.booleans(), min_size=1, max_size=16),
)
def test_amp_scale_follows_the_documented_rule_over_any_step_sequence(
    device: str, interval: int, finite_steps: list[bool]
) -> None:
    model, optimizer = linear_setup(device)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**10, growth_interval=interval)
    observed = []
    for finite in finite_steps:
        one_step(scaler, model, optimizer, loss_factor=1.0 if finite else float("inf"))
        observed.append(scaler.get_scale())
    assert observed == documented_scales(2.0**10, interval, finite_steps)


# ---------------------------------------------------------------------------------------------
# Autocast: the dtype of each op (the documentation's "Autocast Op Reference")

_T = torch.tensor([0, 1, 2, 3])

# ops that autocast runs in the lower precision, whatever their input's dtype
MATMUL_OPS = {
    "mm": lambda x: torch.mm(x, x),
    "matmul": lambda x: x @ x,
    "addmm": lambda x: torch.addmm(x, x, x),
    "bmm": lambda x: torch.bmm(x[None], x[None]),
    "linear": lambda x: F.linear(x, x),
    "conv1d": lambda x: F.conv1d(x[None], x[:, :, None]),
}
# losses: float32 on both devices, even for low-precision inputs
LOSS_OPS = {
    "mse_loss": lambda x: F.mse_loss(x, torch.zeros_like(x)),
    "l1_loss": lambda x: F.l1_loss(x, torch.zeros_like(x)),
    "smooth_l1_loss": lambda x: F.smooth_l1_loss(x, torch.zeros_like(x)),
    "cross_entropy": lambda x: F.cross_entropy(x, _T.to(x.device)),
    "nll_loss": lambda x: F.nll_loss(x, _T.to(x.device)),
    "binary_cross_entropy_with_logits": lambda x: F.binary_cross_entropy_with_logits(
        x, torch.zeros_like(x)
    ),
    "kl_div": lambda x: F.kl_div(x, x.softmax(1), reduction="batchmean"),
}
# reductions and the exp/log family: float32 on CUDA; on CPU on no list (the input's dtype)
REDUCTION_OPS = {
    "sum": lambda x: x.sum(),
    "softmax": lambda x: F.softmax(x, 1),
    "log_softmax": lambda x: F.log_softmax(x, 1),
    "exp": torch.exp,
    "layer_norm": lambda x: F.layer_norm(x, (4,)),
    "cumsum": lambda x: x.cumsum(0),
}
# ops that take several tensors run in the widest dtype among them
PROMOTE_OPS = {
    "cat": lambda x: torch.cat([x, x.float()]),
    "stack": lambda x: torch.stack([x, x.float()]),
}


def op_input(device: str, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 4, generator=g).to(device=device, dtype=dtype)


@pytest.mark.parametrize("op", MATMUL_OPS)
def test_amp_autocast_cpu_runs_matmuls_in_bfloat16(op: str) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MATMUL_OPS[op](op_input("cpu", torch.float32)).dtype == torch.bfloat16


@pytest.mark.parametrize("op", LOSS_OPS)
def test_amp_autocast_cpu_runs_losses_in_float32(op: str) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert LOSS_OPS[op](op_input("cpu", torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize("op", REDUCTION_OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_amp_autocast_cpu_leaves_reductions_in_their_input_dtype(op, dtype) -> None:
    """On CPU, sum/softmax/exp/layer_norm are on neither list: they keep their input's dtype."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert REDUCTION_OPS[op](op_input("cpu", dtype)).dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", PROMOTE_OPS)
def test_amp_autocast_promotes_mixed_inputs_to_the_widest(device: str, op: str) -> None:
    dtype = DEFAULT_AUTOCAST_DTYPE[device]
    with torch.autocast(device, dtype=dtype):
        assert PROMOTE_OPS[op](op_input(device, dtype)).dtype == torch.float32


def test_amp_autocast_cpu_float16_is_also_accepted() -> None:
    with torch.autocast("cpu", dtype=torch.float16):
        assert MATMUL_OPS["linear"](op_input("cpu", torch.float32)).dtype == torch.float16


def test_amp_default_autocast_dtypes_are_torchs() -> None:
    assert {d: torch.get_autocast_dtype(d) for d in DEFAULT_AUTOCAST_DTYPE} == (
        DEFAULT_AUTOCAST_DTYPE
    )


@pytest.mark.cuda
@pytest.mark.parametrize("op", MATMUL_OPS)
def test_amp_autocast_cuda_runs_matmuls_in_float16(op: str) -> None:
    with torch.autocast("cuda", dtype=torch.float16):
        assert MATMUL_OPS[op](op_input("cuda", torch.float32)).dtype == torch.float16


@pytest.mark.cuda
@pytest.mark.parametrize("op", {**LOSS_OPS, **REDUCTION_OPS})
def test_amp_autocast_cuda_runs_losses_and_reductions_in_float32(op: str) -> None:
    ops = {**LOSS_OPS, **REDUCTION_OPS}
    with torch.autocast("cuda", dtype=torch.float16):
        assert ops[op](op_input("cuda", torch.float16)).dtype == torch.float32


@pytest.mark.cuda
def test_amp_autocast_cuda_refuses_binary_cross_entropy() -> None:
    """On CUDA, BCE on probabilities is refused under autocast: use the logits form."""
    x = op_input("cuda", torch.float32)
    with torch.autocast("cuda", dtype=torch.float16), pytest.raises(RuntimeError, match="unsafe"):
        F.binary_cross_entropy(torch.sigmoid(x), torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------
# amp_train_step


def test_amp_grad_scaler_helper_enables_scaling_for_float16_only() -> None:
    assert grad_scaler("cpu", torch.float16).is_enabled()
    assert not grad_scaler("cpu", torch.bfloat16).is_enabled()


@pytest.mark.parametrize("device", DEVICES)
def test_amp_train_step_runs_the_model_low_and_the_loss_in_float32(device: str) -> None:
    model, x, y = dyadic_problem(0)
    model, x, y = model.to(device), x.to(device), y.to(device)
    seen = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8)  # no float16 overflow on CUDA
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = amp_train_step(model, F.mse_loss, optimizer, scaler, x, y, device_type=device)
    assert seen == [DEFAULT_AUTOCAST_DTYPE[device]]
    assert loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float32 master weights


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@settings(max_examples=10)
@given(seed=SEEDS)
def test_amp_train_step_gradient_equals_float32_on_exact_data(device, dtype, seed) -> None:
    """On data exactly representable in the low precision (``dyadic_problem``), autocast plus an
    enabled scaler gives, after unscaling, exactly float32's gradient; so does the update. The
    scale is 2**8: the weight gradient reaches 8, and 8 · 2**16 would overflow float16 (max
    65504), which GradScaler would answer by skipping the step."""
    if device == "cuda" and dtype == torch.bfloat16 and not CUDA_BF16.available:
        pytest.skip(CUDA_BF16.missing_reason())
    model, x, y = dyadic_problem(seed)
    model, x, y = model.to(device), x.to(device), y.to(device)
    expected = float32_gradients(model, x, y, F.mse_loss)
    params = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8)
    amp_train_step(model, F.mse_loss, optimizer, scaler, x, y, device_type=device, dtype=dtype)
    for p, g, before in zip(model.parameters(), expected, params, strict=True):
        assert torch.equal(p.grad, g)  # unscale_ leaves the true gradient in .grad
        assert torch.equal(p.detach(), before - 0.25 * g)


def tiny_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE times 2**-28: its gradient with respect to the float16 outputs, at most 2**-28 here,
    is below half float16's smallest subnormal (2**-24) and rounds to zero; times the default
    scale 2**16 it is a multiple of 2**-16, which float16 holds exactly."""
    return F.mse_loss(outputs, targets) * 2.0**-28


def test_amp_train_step_float16_gradients_underflow_to_zero_without_the_scaler() -> None:
    model, x, y = dyadic_problem(1)
    assert any(g.abs().sum() > 0 for g in float32_gradients(model, x, y, tiny_loss))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    off = torch.amp.GradScaler("cpu", enabled=False)
    amp_train_step(model, tiny_loss, optimizer, off, x, y, device_type="cpu", dtype=torch.float16)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


@settings(max_examples=10)
@given(seed=SEEDS)
def test_amp_train_step_float16_gradients_survive_with_the_scaler(seed: int) -> None:
    model, x, y = dyadic_problem(seed)
    expected = float32_gradients(model, x, y, tiny_loss)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = grad_scaler("cpu", torch.float16)
    amp_train_step(
        model, tiny_loss, optimizer, scaler, x, y, device_type="cpu", dtype=torch.float16
    )
    for p, g in zip(model.parameters(), expected, strict=True):
        assert torch.equal(p.grad, g)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("poison", [float("inf"), float("nan")])
def test_amp_train_step_skips_the_update_and_backs_off_on_a_nonfinite_loss(device, poison):
    model, x, y = dyadic_problem(2)
    model, x, y = model.to(device), x.to(device), y.to(device)
    params = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device, init_scale=64.0)
    amp_train_step(
        model, lambda o, t: F.mse_loss(o, t) * poison, optimizer, scaler, x, y, device_type=device
    )
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), params, strict=True))
    assert scaler.get_scale() == 32.0


@pytest.mark.parametrize("device", DEVICES)
@given(max_norm=st.floats(0.01, 0.5))
@settings(max_examples=10)
def test_amp_train_step_clips_the_unscaled_gradient(device: str, max_norm: float) -> None:
    """Clipping after ``unscale_``: the true gradient's norm (≥ 1 here) is brought to max_norm.
    Clipping the scaled gradient instead would leave a norm of max_norm / 2**16."""
    model, x, y = dyadic_problem(3)
    model, x, y = model.to(device), x.to(device), y.to(device)
    assert torch.cat([g.flatten() for g in float32_gradients(model, x, y, F.mse_loss)]).norm() >= 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8)  # no float16 overflow on CUDA
    amp_train_step(
        model, F.mse_loss, optimizer, scaler, x, y, device_type=device, max_norm=max_norm
    )
    norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    # clip multiplies by max_norm / (norm + 1e-6): off by 1e-6 relative, plus float32 rounding
    assert norm.item() == pytest.approx(max_norm, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# B16: the seed's torch.cuda.amp API


@pytest.mark.filterwarnings("ignore:.*CUDA.*:UserWarning")
def test_amp_seed_torch_cuda_amp_api_is_deprecated_b16() -> None:
    """B16: ``torch.cuda.amp.GradScaler()`` and ``autocast()`` give a FutureWarning on 2.14;
    ``torch.amp``'s do not."""
    from torch.cuda.amp import GradScaler, autocast

    for seed_constructor in (GradScaler, autocast):
        with pytest.warns(FutureWarning, match="is deprecated"):
            seed_constructor()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        torch.amp.GradScaler("cpu")
        torch.amp.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.skipif(CUDA.available, reason="the seed's scaler disables itself only without CUDA")
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:.*CUDA.*:UserWarning")
def test_amp_seed_scaler_disables_itself_without_cuda_b16() -> None:
    """B16: on a CPU-only machine the seed's GradScaler() is off, so ``scale(loss)`` is the loss,
    not loss · scale; ours, ``torch.amp.GradScaler("cpu")``, scales."""
    model, x, y = dyadic_problem(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seed_scaler = curriculum_002_q58(model, x, y, nn.MSELoss(), optimizer, epochs=2)
    loss = torch.tensor(3.0)
    assert not seed_scaler.is_enabled()
    assert seed_scaler.scale(loss).item() == 3.0
    assert torch.amp.GradScaler("cpu").scale(loss).item() == 3.0 * 2**16


@pytest.mark.skipif(CUDA.available, reason="the seed's loop runs on CPU only without CUDA")
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:.*CUDA.*:UserWarning")
def test_amp_seed_autocast_leaves_a_cpu_model_in_float32_b16() -> None:
    """B16: the seed's ``autocast()`` is CUDA's: on a CPU model the forward stays float32, so the
    seed's loop trains without mixed precision. Ours, ``torch.amp.autocast("cpu")``, runs the
    Linear in bfloat16."""
    model, x, y = dyadic_problem(5)
    seen = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    curriculum_002_q58(model, x, y, nn.MSELoss(), optimizer, epochs=2)
    assert seen == [torch.float32, torch.float32]
    seen.clear()
    amp_train_step(
        model, F.mse_loss, optimizer, grad_scaler("cpu", torch.bfloat16), x, y, device_type="cpu"
    )
    assert seen == [torch.bfloat16]
