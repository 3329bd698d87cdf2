"""Scaled dot-product attention with masking, and sinusoidal positional encoding, written out.

Curriculum:
- ``attention_sdp``: 002 Q36 (``scores = q k^T / sqrt(head_dim)``, ``masked_fill(mask == 0,
  -inf)``, softmax, times v), Q38, Q41 (v1 fused qkv; v2 one head, scaled by sqrt(input_dim)),
  Q52 v2. Catalog §2 ``attention_sdp``: equal to ``F.scaled_dot_product_attention`` and
  ``nn.MultiheadAttention``; every row of weights sums to 1; causal masking makes the output at
  t independent of the keys and values after t; a fully masked row gives NaN in the seed's
  version, "an edge case to test or guard". Ours guards it: a query with no visible key gets
  zero weights (a zero output), as ``F.scaled_dot_product_attention`` does, and no NaN is made
  on the way, forward or backward.
- ``positional_encoding``: 002 Q36 (sinusoidal: sin on even and cos on odd dimensions,
  div_term = exp(-ln(10000) 2i / d)). Catalog §2 ``positional_encoding`` and B52: the seed keeps
  the table as a plain tensor attribute, so it is missing from the state_dict and ``model.to()``
  leaves it behind (float32, on the CPU). Ours is a registered buffer.

Mask convention (the seed's and SDPA's boolean one): a query may attend to a key where the mask
is True (non-zero) and may not where it is False (0).
Dimension key: B batch, T queries (or tokens), S keys, D per-head width, E model width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_function, gradcheck_module, no_gradcheck, randn
from impl.techniques.registry import Category, register_technique


def _qkv_with_an_empty_row(generator: torch.Generator) -> tuple[Tensor, ...]:
    """q (2, 3, 4), k and v (2, 5, 4) and a random boolean mask (3, 5) whose query 1 sees no key:
    gradcheck goes through masked, visible and fully masked rows."""
    q, k, v = randn(generator, 2, 3, 4), randn(generator, 2, 5, 4), randn(generator, 2, 5, 4)
    mask = torch.rand(3, 5, generator=generator) > 0.4
    mask[0, 0] = True  # query 0 sees at least one key
    mask[1] = False  # query 1 sees none
    return q, k, v, mask


def _qk_with_an_empty_row(generator: torch.Generator) -> tuple[Tensor, ...]:
    q, k, _, mask = _qkv_with_an_empty_row(generator)
    return q, k, mask


@gradcheck_function(_qk_with_an_empty_row)
def attention_weights(q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(D)) over the visible keys: each row sums to 1, or is all 0 where the
    mask hides every key (the seed's softmax of all -inf gives NaN there).

    Shape: q (..., T, D), k (..., S, D), mask broadcastable to (..., T, S) -> (..., T, S)
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    blocked = mask == 0  # (..., T, S)
    empty = blocked.all(dim=-1, keepdim=True)  # (..., T, 1): queries that see no key
    # an empty row is left unmasked (finite) and zeroed after the softmax: no NaN anywhere, so
    # nothing to leak through the backward pass either
    weights = torch.softmax(scores.masked_fill(blocked & ~empty, float("-inf")), dim=-1)
    return weights.masked_fill(empty, 0.0)


@gradcheck_function(_qkv_with_an_empty_row)
def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(D), masked) v: equal to ``F.scaled_dot_product_attention(q, k, v,
    attn_mask=mask)`` for a boolean mask, a fully masked query included (zero weights, not NaN).

    Shape: q (..., T, D), k and v (..., S, D), mask broadcastable to (..., T, S) -> (..., T, D)
    """
    return attention_weights(q, k, mask) @ v  # (..., T, D)


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """True where query t may attend to key s: s <= t. Shape: (T, T)"""
    positions = torch.arange(length, device=device)  # (T,)
    return positions.unsqueeze(0) <= positions.unsqueeze(1)  # [t, s] = s <= t


@no_gradcheck("integer token ids in, a boolean mask out: nothing to differentiate")
def causal_padding_mask(ids: Tensor, pad_token: int) -> Tensor:
    """True where query t may attend to key s: s <= t, and key s is a real token or s = 0.

    Keeping key 0 visible means no query ever has every key masked (an all-pad or a left-padded
    sequence); with right padding it changes only the outputs at pad positions.
    Shape: token ids (B, T) -> (B, 1, T, T), broadcast over the heads
    """
    positions = torch.arange(ids.shape[1], device=ids.device)  # (T,)
    causal = causal_mask(ids.shape[1], ids.device)  # (T, T)
    keys = (ids != pad_token) | (positions == 0)  # (B, T): key 0 stays visible, so no row is empty
    return (causal.unsqueeze(0) & keys.unsqueeze(1)).unsqueeze(1)  # (B, 1, T, T)


def sinusoidal_positions(max_len: int, d_model: int) -> Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/E)), PE[p, 2i + 1] = cos(the same): (1, max_len, E).

    Computed as the seed computes it (div_term = exp(-ln(10000) 2i / E)), in float32.
    """
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin and cos pairs), got {d_model}")
    table = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)  # (max_len, 1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table.unsqueeze(0)  # (1, max_len, E)


@gradcheck_module(lambda: SinusoidalPositionalEncoding(6, 4), lambda g: (randn(g, 2, 5, 4),))
class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[:T], the table a registered buffer (the fix of B52): saved in the state_dict,
    moved and converted by ``.to()`` with the model's weights, never trained.

    Shape: (B, T, E) with T <= max_len -> (B, T, E)
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.register_buffer("pos_encoding", sinusoidal_positions(max_len, d_model))

    def forward(self, x: Tensor) -> Tensor:
        length, max_len = x.shape[-2], self.pos_encoding.shape[1]
        if length > max_len:
            raise ValueError(f"sequence length {length} exceeds the table's {max_len} positions")
        return x + self.pos_encoding[:, :length]  # (B, T, E)


register_technique(
    name="attention_sdp",
    category=Category.MODULE,
    curriculum="002 Q36, Q38, Q41, Q52 v2",
    summary="softmax(q k^T / sqrt(d)) v with a boolean mask; rows sum to 1, causal, a fully "
    "masked row gets zero weights instead of NaN",
    api="torch.nn.functional.scaled_dot_product_attention, torch.nn.MultiheadAttention",
    also_in=("impl.models.transformer_lm", "impl.models.vit", "impl.models.sam"),
)

register_technique(
    name="positional_encoding",
    category=Category.MODULE,
    curriculum="002 Q36",
    summary="sinusoidal table PE[p, 2i] = sin(p / 10000^(2i/d)), cos on odd dims, kept in a "
    "registered buffer (saved, converted with the model)",
    api="nn.Module.register_buffer; torch.sin, torch.cos",
    also_in=("impl.models.transformer_lm",),
    bugs=("B52",),
)
