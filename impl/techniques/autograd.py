"""Autograd basics and gradient checking: derivatives by autograd, and checking them numerically.

Autograd basics. Curriculum: 002 Q5 (y = x³ + 2x² − 5x + 1 at x = 2), Q10 (sin at π/4), Q70
(x0² + x1³ at [2, 3]); 001 Q5 (backpropagation through a Linear layer); 004 L73-83
(``requires_grad``, ``.grad`` accumulation, ``no_grad``); catalog §2 ``autograd_basics``, bugs B01
and B10.

- 002 Q5's code is right: y(2) = 7 and dy/dx = 3x² + 4x − 5 = 15. The explanation's arithmetic,
  "3(2)^2 + 4(2) - 5 = 23", is wrong, since 12 + 8 − 5 = 15 (B01).
- ``backward()`` adds into ``.grad``. A second backward without ``zero_grad()`` doubles it.
  004 L77-79 says this correctly.
- Inside ``torch.no_grad()`` nothing is recorded: results have ``requires_grad=False`` and no
  ``grad_fn``. 004 L82 says the opposite, that the operations "are added to the graph" (B10). This
  is why manual parameter updates go inside ``no_grad`` (``sgd_step_``): an in-place update of a
  leaf that requires grad is refused outside it. ``no_grad`` does not switch Dropout or BatchNorm
  to eval mode; ``model.eval()`` does that.

Gradient checking. Curriculum: 002 Q91; catalog §2 ``gradient_check``, bug B14. The seed's
``numerical_gradient_check`` writes the perturbed value through ``inputs.view(-1)[i]``, where
``inputs`` is a leaf that requires grad. That raises a RuntimeError. Even written without the
crash, central differences in float32 with eps = 1e-5 are imprecise: float32 keeps about 7
digits, so the difference of two losses 2e-5 apart has few correct digits left. The seed also
checks only the input's gradient, not the parameters'. The corrected check
(``model_gradient_check``) works in float64 on copies and perturbs under ``no_grad``. It covers
the input and every parameter, and the two gradients agree to about 1e-6. The library way is
``torch.autograd.gradcheck`` on float64 inputs (``model_gradcheck``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, no_gradcheck, randn
from impl.techniques.registry import Category, register_technique

# ---------------------------------------------------------------------------------------------
# autograd_basics

# 002 Q5's polynomial, lowest power first (numpy.polynomial's order): 1 − 5x + 2x² + x³
Q5_COEFFICIENTS = (1.0, -5.0, 2.0, 1.0)


@gradcheck_function(lambda g: (randn(g, 6),), coefficients=Q5_COEFFICIENTS)
def polynomial(x: Tensor, coefficients: Sequence[float]) -> Tensor:
    """Σ_k c_k x^k elementwise, coefficients lowest power first, by Horner's rule."""
    result = torch.zeros_like(x)
    for c in reversed(coefficients):
        result = result * x + c
    return result


@gradcheck_function(lambda g: (randn(g, 5),), fn=torch.sin)
def grad_of(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """The gradient of ``fn(x).sum()`` with respect to ``x``, by autograd.

    For a scalar ``fn`` this is its gradient (002 Q70: [4, 27]). For an elementwise ``fn`` it is
    the elementwise derivative (002 Q5, Q10). If ``x`` itself requires grad, the result stays in
    the graph (``create_graph``), so it can be differentiated again.
    """
    with torch.enable_grad():
        leaf = x if x.requires_grad else x.detach().requires_grad_(True)
        y = fn(leaf).sum()
        if not y.requires_grad:  # fn does not depend on x (a constant): its derivative is 0
            return torch.zeros_like(x)
        (grad,) = torch.autograd.grad(
            y, leaf, create_graph=x.requires_grad, allow_unused=True, materialize_grads=True
        )
    return grad


def sgd_step_(params: Iterable[nn.Parameter], lr: float) -> None:
    """A hand-written SGD step, ``p -= lr * p.grad``, then the gradients are cleared.

    It runs under ``no_grad``: the update must not be recorded, and autograd refuses an in-place
    change to a leaf that requires grad anywhere else (004 L83). Clearing the gradients
    matters because backward accumulates into ``.grad`` (004 L77-79).
    """
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None


# ---------------------------------------------------------------------------------------------
# gradient_check


@no_gradcheck("finite differences taken under no_grad: the result carries no graph by design")
def numerical_gradients(
    fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6
) -> tuple[Tensor, ...]:
    """Central differences ``(f(x + eps) − f(x − eps)) / 2 eps`` of the scalar ``fn(*inputs)``
    with respect to every element of every input, in float64.

    The inputs are copied, never written. Each element is perturbed under ``no_grad``. float64
    makes the truncation error (about eps²) and the rounding error (about 1e-16 / eps) both far
    below 1e-6.
    """
    with torch.no_grad():
        points = [x.detach().to(torch.float64, copy=True).contiguous() for x in inputs]
        grads = []
        for x in points:
            grad = torch.zeros_like(x)
            flat, grad_flat = x.view(-1), grad.view(-1)
            for i in range(flat.numel()):
                original = flat[i].item()
                flat[i] = original + eps
                plus = fn(*points).item()
                flat[i] = original - eps
                minus = fn(*points).item()
                flat[i] = original
                grad_flat[i] = (plus - minus) / (2 * eps)
            grads.append(grad)
    return tuple(grads)


def _loss_of_input_and_parameters(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], targets: Tensor
) -> tuple[list[str], Callable[..., Tensor]]:
    names = [name for name, _ in model.named_parameters()]

    def loss(x: Tensor, *params: Tensor) -> Tensor:
        outputs = torch.func.functional_call(model, dict(zip(names, params, strict=True)), (x,))
        return loss_fn(outputs, targets)

    return names, loss


@no_gradcheck("a check, not a differentiable map: it returns gradients taken apart from the graph")
def model_gradient_check(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    eps: float = 1e-6,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Autograd's and the numerical gradient of ``loss_fn(model(inputs), targets)``, for the
    input (key ``"input"``) and every parameter (keys from ``named_parameters``), in float64.
    This is the corrected 002 Q91.

    The model and inputs are left untouched: the check runs on a float64 copy. The model must be
    deterministic (no Dropout in train mode), or the two gradients differentiate different
    functions. Compare with ``torch.testing.assert_close(a, n, rtol=1e-6, atol=1e-6)``.
    """
    model = copy.deepcopy(model).double()
    names, loss = _loss_of_input_and_parameters(model, loss_fn, targets.double())
    point = [inputs.double(), *(p.detach() for p in model.parameters())]
    leaves = [t.detach().clone().requires_grad_(True) for t in point]
    analytic = torch.autograd.grad(loss(*leaves), leaves)
    numeric = numerical_gradients(loss, point, eps)
    return {name: (a, n) for name, a, n in zip(["input", *names], analytic, numeric, strict=True)}


def model_gradcheck(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
) -> bool:
    """``torch.autograd.gradcheck`` of the loss against the input and every parameter, on a
    float64 copy: the library's version of 002 Q91. It returns False rather than raising when
    the gradients disagree."""
    model = copy.deepcopy(model).double()
    _, loss = _loss_of_input_and_parameters(model, loss_fn, targets.double())
    point = [inputs.double(), *(p.detach() for p in model.parameters())]
    leaves = tuple(t.detach().clone().requires_grad_(True) for t in point)
    return torch.autograd.gradcheck(loss, leaves, raise_exception=False)


register_technique(
    name="autograd_basics",
    category=Category.NUMERICS,
    curriculum="002 Q5, Q10, Q70; 001 Q5; 004 L73-83",
    summary=(
        "autograd equals the analytic derivative (002 Q5: 15, not 23); backward accumulates; "
        "no_grad records nothing"
    ),
    api="requires_grad=True, Tensor.backward, Tensor.grad, torch.autograd.grad, torch.no_grad",
    bugs=("B01", "B10"),
)

register_technique(
    name="gradient_check",
    category=Category.NUMERICS,
    curriculum="002 Q91",
    summary=(
        "numerical vs autograd gradients of the input and every parameter, float64, perturbed "
        "on copies under no_grad; agree within 1e-6"
    ),
    api="torch.autograd.gradcheck (float64); central differences under torch.no_grad",
    bugs=("B14",),
)
