"""Example inputs shared by the text models: batches of token ids, right-padded to one length.

A text model's config has ``vocab_size``, ``pad_token`` and ``max_len`` (the longest example).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def right_padded_token_ids(
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    pad_token: int,
    generator: torch.Generator,
    min_len: int = 1,
) -> Tensor:
    """Token ids (B, T) whose sample i has a random length L_i in [min(min_len, T), T], followed
    by pad tokens (a language model asks for min_len=2, so every sample has a next token).

    Real tokens are drawn from the vocabulary without the pad id, so padding is unambiguous.
    """
    ids = torch.randint(0, vocab_size - 1, (batch_size, seq_len), generator=generator)
    ids = ids + (ids >= pad_token).long()  # skip the pad id
    low = min(min_len, seq_len)
    lengths = torch.randint(low, seq_len + 1, (batch_size, 1), generator=generator)  # (B, 1)
    positions = torch.arange(seq_len).unsqueeze(0)  # (1, T)
    return ids.masked_fill(positions >= lengths, pad_token)  # (B, T)


def padded_token_inputs(
    cfg: Any,
    batch_size: int,
    generator: torch.Generator,
    seq_len: int | None = None,
    min_len: int = 1,
) -> tuple[Tensor]:
    """The ``example_inputs`` of a text model: one (B, T) batch, T = seq_len or cfg.max_len, each
    sample at least ``min_len`` real tokens long (where T allows)."""
    seq_len = cfg.max_len if seq_len is None else seq_len
    ids = right_padded_token_ids(
        batch_size, seq_len, cfg.vocab_size, cfg.pad_token, generator, min_len=min_len
    )
    return (ids,)


def sequence_dims(cfg: Any) -> dict[str, tuple[int, int]]:
    """The ``dynamic_dims`` of a text model: any sequence length from 1 to cfg.max_len."""
    return {"seq_len": (1, cfg.max_len)}
