"""Hypothesis strategies for model inputs, derived from each model's registry declaration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from torch import Tensor

from impl.registry import ModelSpec

MAX_BATCH = 6


@dataclass(frozen=True)
class InputDraw:
    """One drawn input configuration: batch size, dynamic dims (e.g. sequence length) and seed."""

    batch_size: int
    dims: dict[str, int]
    seed: int

    def inputs(self, spec: ModelSpec, cfg: Any) -> tuple[Tensor, ...]:
        """The model's example inputs for this draw."""
        return spec.inputs(cfg, self.batch_size, seed=self.seed, **self.dims)

    def targets(self, spec: ModelSpec, cfg: Any, inputs: tuple[Tensor, ...]) -> Tensor:
        """Targets for this draw's inputs, as the model's task makes them."""
        return spec.make_targets(cfg, inputs, seed=self.seed, **self.dims)


@st.composite
def input_draws(
    draw: st.DrawFn,
    spec: ModelSpec,
    cfg: Any,
    min_batch: int = 1,
    dim_headroom: int = 0,
    batch_sizes: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
) -> InputDraw:
    """Draw a batch size in [min_batch, MAX_BATCH] (or one of ``batch_sizes``), every dynamic dim
    of ``spec`` in its declared range (less ``dim_headroom`` at the top, for checks that lengthen
    the input), and an RNG seed (or one of ``seeds``).

    Example: ``input_draws(get_spec("sentiment_lstm"), cfg)`` -> InputDraw(3, {"seq_len": 7}, 12)
    """
    if batch_sizes is None:
        batch_size = draw(st.integers(min_batch, MAX_BATCH))
    else:
        batch_size = draw(st.sampled_from(batch_sizes))
    dims = {
        name: draw(st.integers(lo, max(lo, hi - dim_headroom)))
        for name, (lo, hi) in sorted(spec.dynamic_dims(cfg).items())
    }
    seed = draw(st.integers(0, 2**31 - 1) if seeds is None else st.sampled_from(seeds))
    return InputDraw(batch_size, dims, seed)
