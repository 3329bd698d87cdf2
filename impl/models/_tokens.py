"""Example inputs shared by the text models: batches of token ids, right-padded to one length."""

from __future__ import annotations

import torch
from torch import Tensor


def right_padded_token_ids(
    batch_size: int, seq_len: int, vocab_size: int, pad_token: int, generator: torch.Generator
) -> Tensor:
    """Token ids (B, T) whose sample i has a random length L_i in [1, T], followed by pad tokens.

    Real tokens are drawn from the vocabulary without the pad id, so padding is unambiguous.
    """
    ids = torch.randint(0, vocab_size - 1, (batch_size, seq_len), generator=generator)
    ids = ids + (ids >= pad_token).long()  # skip the pad id
    lengths = torch.randint(1, seq_len + 1, (batch_size, 1), generator=generator)  # (B, 1)
    positions = torch.arange(seq_len).unsqueeze(0)  # (1, T)
    return ids.masked_fill(positions >= lengths, pad_token)  # (B, T)
