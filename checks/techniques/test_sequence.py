"""Teacher forcing (catalog ``teacher_forcing``, 002 Q47) on the LSTM encoder-decoder of
``impl.models.seq2seq``, at a small size: one decoder pass over the true target, causal logits,
next-token labels, and agreement with free-running greedy decoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from impl.models.seq2seq import Seq2SeqConfig, Seq2SeqLSTM
from impl.techniques.sequence import (
    IGNORE_INDEX,
    greedy_decode,
    shift_labels,
    teacher_forcing_loss,
)

CFG = Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=25, embed_dim=8, hidden_size=12)
PAD, BOS = CFG.pad_token, CFG.bos_token
SEEDS = st.integers(0, 2**31 - 1)


def _model(seed: int = 0) -> Seq2SeqLSTM:
    torch.manual_seed(seed)
    return Seq2SeqLSTM(CFG).eval()


def _ids(seed: int, batch: int, src_len: int, tgt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpadded source and target ids (no PAD); the target starts with BOS."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(2, CFG.src_vocab_size, (batch, src_len), generator=g)
    tgt = torch.randint(2, CFG.tgt_vocab_size, (batch, tgt_len), generator=g)
    tgt[:, 0] = BOS
    return src, tgt


@given(seed=SEEDS, batch=st.integers(1, 4), src_len=st.integers(1, 6), tgt_len=st.integers(1, 8))
@settings(max_examples=15)
def test_teacher_forcing_output_length_equals_target_length(seed, batch, src_len, tgt_len) -> None:
    src, tgt = _ids(seed, batch, src_len, tgt_len)
    assert _model()(src, tgt).shape == (batch, tgt_len, CFG.tgt_vocab_size)


@given(seed=SEEDS, tgt_len=st.integers(2, 8), data=st.data())
@settings(max_examples=10)
def test_teacher_forcing_logits_at_step_t_depend_only_on_src_and_tgt_up_to_t(
    seed, tgt_len, data
) -> None:
    """Replace every target token after t: the logits at steps 0..t do not move (bit for bit),
    so step t cannot see its own label tgt[t + 1]; the logits after t do move."""
    t = data.draw(st.integers(0, tgt_len - 2), label="t")
    src, tgt = _ids(seed, 3, 5, tgt_len)
    other = tgt.clone()
    other[:, t + 1 :] = (tgt[:, t + 1 :] - 2 + 1) % (CFG.tgt_vocab_size - 2) + 2  # each differs
    model = _model()
    with torch.no_grad():
        a, b = model(src, tgt), model(src, other)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    assert not torch.equal(a[:, t + 1 :], b[:, t + 1 :])


@given(seed=SEEDS, tgt_len=st.integers(1, 7))
@settings(max_examples=5)
def test_teacher_forcing_one_pass_equals_feeding_the_true_prefix_step_by_step(
    seed, tgt_len
) -> None:
    """Teacher forcing is decoding with the ground truth as the decoder's input: step t of the
    one-pass logits equals the last step of a run over the true prefix tgt[:, : t + 1]."""
    src, tgt = _ids(seed, 2, 4, tgt_len)
    model = _model()
    with torch.no_grad():
        full = model(src, tgt)
        for t in range(tgt_len):
            torch.testing.assert_close(full[:, t], model(src, tgt[:, : t + 1])[:, -1])


@given(seed=SEEDS, steps=st.integers(1, 6))
@settings(max_examples=10)
def test_teacher_forcing_the_greedy_output_reproduces_its_own_argmaxes(seed, steps) -> None:
    """Free-running greedy decoding, then one teacher-forced pass over what it produced: the
    argmax at step t is the token greedy decoding appended at t + 1."""
    src, _ = _ids(seed, 3, 5, 1)
    model = _model(seed % 100)
    out = greedy_decode(model, src, BOS, steps)
    assert out.shape == (3, steps + 1) and (out[:, 0] == BOS).all()
    with torch.no_grad():
        assert torch.equal(model(src, out[:, :-1]).argmax(-1), out[:, 1:])


@given(seed=SEEDS, tgt_len=st.integers(1, 8), data=st.data())
def test_teacher_forcing_labels_are_the_next_tokens_with_padding_ignored(
    seed, tgt_len, data
) -> None:
    _, tgt = _ids(seed, 3, 1, tgt_len)
    lengths = data.draw(st.lists(st.integers(1, tgt_len), min_size=3, max_size=3), label="lengths")
    for i, n in enumerate(lengths):
        tgt[i, n:] = PAD  # right-padded
    labels = shift_labels(tgt, PAD)
    for i, n in enumerate(lengths):
        assert labels[i, : n - 1].tolist() == tgt[i, 1:n].tolist()  # label t = token t + 1
        assert (labels[i, n - 1 :] == IGNORE_INDEX).all()  # the last real step, then padding


@given(seed=SEEDS)
@settings(max_examples=10)
def test_teacher_forcing_loss_is_the_mean_negative_log_likelihood_of_the_next_tokens(seed) -> None:
    src, tgt = _ids(seed, 3, 4, 6)
    tgt[0, 4:] = PAD
    model = _model()
    with torch.no_grad():
        log_p = F.log_softmax(model(src, tgt), dim=-1)  # (B, T, V)
    terms = [
        -log_p[b, t, tgt[b, t + 1]]
        for b in range(3)
        for t in range(5)
        if tgt[b, t + 1] != PAD  # the next token is real
    ]
    with torch.no_grad():
        loss = teacher_forcing_loss(model, src, tgt, PAD)
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_teacher_forcing_loss_gives_padding_and_the_last_step_no_gradient() -> None:
    logits = torch.randn(2, 5, CFG.tgt_vocab_size, requires_grad=True)
    src, tgt = _ids(0, 2, 3, 5)
    tgt[1, 3:] = PAD
    teacher_forcing_loss(lambda s, t: logits, src, tgt, PAD).backward()
    scored = logits.grad.abs().sum(-1) > 0  # (B, T)
    assert scored.tolist() == [[True] * 4 + [False], [True, True, False, False, False]]


def test_teacher_forcing_loss_rejects_logits_of_another_length() -> None:
    src, tgt = _ids(0, 2, 3, 5)
    with pytest.raises(ValueError, match="do not match the target"):
        teacher_forcing_loss(lambda s, t: torch.zeros(2, 4, 7), src, tgt, PAD)


@pytest.mark.slow
def test_teacher_forcing_trains_a_copy_task_that_greedy_decoding_then_solves() -> None:
    """Teacher-forced training on tgt = [BOS, src]: 150 Adam steps, then greedy decoding (no
    teacher) reproduces the source. A model trained on the seed's unshifted labels (B37) would
    learn to echo its input, and greedy decoding from BOS would repeat BOS."""
    torch.manual_seed(0)
    model = Seq2SeqLSTM(
        Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=8, embed_dim=16, hidden_size=32)
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        src = torch.randint(2, 8, (32, 4), generator=g)
        tgt = torch.cat([torch.full((32, 1), BOS), src], dim=1)
        loss = teacher_forcing_loss(model, src, tgt, PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    src = torch.randint(2, 8, (64, 4), generator=g)
    out = greedy_decode(model.eval(), src, BOS, 4)
    assert (out[:, 1:] == src).float().mean() > 0.9  # chance is 1/6
