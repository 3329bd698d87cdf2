"""Teacher forcing: a sequence decoder trained on the ground-truth target, not on its own guesses.

Curriculum: 002 Q47 (``Seq2Seq.forward(src, tgt)`` feeds the embedded ``tgt`` to the decoder
LSTM). In training, the decoder's input at step t is the true target token t, whatever it would
have predicted there, so all T steps run in one pass over the target (one ``nn.LSTM`` call) and
the errors of early steps do not compound. The labels are the target shifted by one: the logits
at step t predict token t + 1 from the source and the target tokens 0..t (the first is BOS). The
seed scores the logits at step t against ``tgt[t]`` itself, the token the decoder has just read,
which teaches it to copy (catalog B37, pinned on the model in
``checks/test_curriculum_bugs_recurrent.py``).

At inference there is no target: ``greedy_decode`` starts from BOS and feeds the decoder its own
argmax, one step at a time. For a causal decoder (an LSTM, or masked attention) the two agree:
teacher-forcing the greedy output reproduces its argmaxes, which is what the checks use to tie
them together.

Any model called as ``model(src, tgt) -> logits (B, T, V)`` fits, e.g.
``impl.models.seq2seq.Seq2SeqLSTM``.
Dimension key: B batch, S source tokens, T target tokens, V target vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from impl.differentiable import no_gradcheck
from impl.techniques.registry import Category, register_technique

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index

Seq2SeqModel = Callable[[Tensor, Tensor], Tensor]


@no_gradcheck("token ids in, token ids out: integers, nothing to differentiate")
def shift_labels(tgt: Tensor, pad_token: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The labels of teacher forcing: label t is ``tgt[t + 1]``; the last step, which has no next
    token, and padding get ``ignore_index``.

    Shape: target ids (B, T), starting with BOS and right-padded with ``pad_token`` -> (B, T)
    """
    labels = torch.full_like(tgt, ignore_index)  # (B, T)
    labels[:, :-1] = tgt[:, 1:]
    return labels.masked_fill(labels == pad_token, ignore_index)


@no_gradcheck("takes a model; its layers are gradient-checked with the model (seq2seq_lstm)")
def teacher_forcing_loss(model: Seq2SeqModel, src: Tensor, tgt: Tensor, pad_token: int) -> Tensor:
    """Mean cross entropy of ``model(src, tgt)`` against ``shift_labels(tgt)``: one decoder
    pass over the true target, next-token labels, padding ignored.

    Shape: src (B, S), tgt (B, T) -> scalar
    """
    logits = model(src, tgt)  # (B, T, V): step t has read tgt[:, : t + 1]
    if logits.shape[:2] != tgt.shape:
        raise ValueError(f"logits {list(logits.shape)} do not match the target {list(tgt.shape)}")
    labels = shift_labels(tgt, pad_token)  # (B, T)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


@no_gradcheck("returns token ids chosen by argmax: piecewise constant, no gradient")
@torch.no_grad()
def greedy_decode(model: Seq2SeqModel, src: Tensor, bos_token: int, steps: int) -> Tensor:
    """Free-running decoding: start from BOS, append the argmax of the last step's logits, and
    run again, ``steps`` times (no teacher: the decoder reads its own predictions).

    Re-running the decoder over the whole prefix at every step costs O(T^2) decoder steps; a
    decoder that returned its state could run one step at a time. Kept simple, as a reference.
    Shape: src (B, S) -> ids (B, steps + 1), column 0 is BOS
    """
    out = torch.full((src.shape[0], 1), bos_token, dtype=torch.long, device=src.device)  # (B, 1)
    for _ in range(steps):
        logits = model(src, out)  # (B, t, V)
        out = torch.cat([out, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)  # (B, t + 1)
    return out


register_technique(
    name="teacher_forcing",
    category=Category.MODULE,
    curriculum="002 Q47",
    summary="decoder reads the true target (one pass); labels are the target shifted by one",
    api="torch.nn.LSTM over the embedded target; F.cross_entropy(ignore_index=-100)",
    also_in=("impl.models.seq2seq",),
)
