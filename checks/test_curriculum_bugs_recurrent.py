"""The curriculum's own mistakes in its recurrent and sequence-to-sequence models (catalog section
5): its code, reproduced faithfully, shows the bug; our model, on the same input, does not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from impl import get_spec
from impl.tasks import IGNORE_INDEX


class CurriculumSimpleRNNQ10(nn.Module):
    """001 Q10 as written: h0 is sized by the module-level global ``hidden_size`` and made on the
    CPU in float32, whatever the input."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        h0 = torch.zeros(1, x.size(0), hidden_size)  # noqa: F821  the seed's global
        out, hn = self.rnn(x, h0)
        out = self.fc(out[:, -1, :])
        return out


class CurriculumSeq2SeqQ47(nn.Module):
    """002 Q47 as written: one embedding, sized by the source vocabulary, for both sides."""

    def __init__(self, input_dim, output_dim, embed_size, hidden_size):
        super().__init__()
        self.encoder = nn.LSTM(embed_size, hidden_size, batch_first=True)
        self.decoder = nn.LSTM(embed_size, hidden_size, batch_first=True)
        self.embedding = nn.Embedding(input_dim, embed_size)
        self.fc = nn.Linear(hidden_size, output_dim)

    def forward(self, src, tgt):
        src_embedded = self.embedding(src)
        _, (hidden, cell) = self.encoder(src_embedded)
        tgt_embedded = self.embedding(tgt)
        decoder_output, _ = self.decoder(tgt_embedded, (hidden, cell))
        output = self.fc(decoder_output)
        return output


class CurriculumAttentionQ35(nn.Module):
    """002 Q35's ``Attention`` as written."""

    def __init__(self, hidden_size):
        super().__init__()
        self.attn = nn.Linear(hidden_size * 2, hidden_size)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, hidden, encoder_outputs):
        attn_weights = self.softmax(self.attn(torch.cat((hidden, encoder_outputs), dim=1)))
        context = torch.sum(attn_weights * encoder_outputs, dim=1)
        return context, attn_weights


class CurriculumSeq2SeqQ35(nn.Module):
    """002 Q35's ``Seq2SeqModel`` as written."""

    def __init__(self, input_dim, hidden_size, output_dim):
        super().__init__()
        self.encoder = nn.LSTM(input_dim, hidden_size, batch_first=True)
        self.decoder = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.attention = CurriculumAttentionQ35(hidden_size)
        self.fc = nn.Linear(hidden_size, output_dim)

    def forward(self, src, tgt):
        encoder_outputs, hidden = self.encoder(src)
        decoder_outputs, _ = self.decoder(tgt, hidden)
        context, _ = self.attention(decoder_outputs, encoder_outputs)
        output = self.fc(context)
        return output


def q10_models() -> tuple[nn.Module, nn.Module]:
    """The curriculum's model at its own size (input 3, hidden 5, output 1) and ours, same weights
    (both are ``rnn`` + ``fc``, so the state_dict loads as is)."""
    torch.manual_seed(0)
    seed_model = CurriculumSimpleRNNQ10(3, 5, 1)
    ours = get_spec("rnn_last_step").create("full")
    ours.load_state_dict(seed_model.state_dict())
    return seed_model, ours


def test_q10_h0_needs_a_global_and_ours_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catalog B47: without a module-level ``hidden_size`` the curriculum's forward raises
    NameError; ours takes the size from its own layer. With the global set, the two agree."""
    monkeypatch.delitem(globals(), "hidden_size", raising=False)
    seed_model, ours = q10_models()
    x = torch.randn(10, 5, 3)  # the curriculum's input: batch 10, 5 steps, 3 features
    with pytest.raises(NameError, match="hidden_size"):
        seed_model(x)
    monkeypatch.setitem(globals(), "hidden_size", 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed_model(x))


def test_q10_h0_stays_on_the_cpu_and_ours_follows_the_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Catalog B47: on any device but the CPU the curriculum's h0 is on the wrong device. The
    meta device (shapes, no data) stands in for a GPU on a machine without one: the curriculum's
    model raises for the device mismatch, ours returns a meta tensor."""
    monkeypatch.setitem(globals(), "hidden_size", 5)
    seed_model, ours = q10_models()
    x = torch.randn(10, 5, 3, device="meta")
    with pytest.raises(RuntimeError, match="Input and hidden tensors are not at the same device"):
        seed_model.to("meta")(x)
    out = ours.to("meta")(x)
    assert out.device.type == "meta" and out.shape == (10, 1)


def test_q10_h0_stays_float32_and_ours_follows_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catalog B47, the same cause in another guise: in float64 the curriculum's float32 h0 meets
    float64 weights and raises; ours makes its initial state in the input's dtype."""
    monkeypatch.setitem(globals(), "hidden_size", 5)
    seed_model, ours = q10_models()
    x = torch.randn(10, 5, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="dtype"):
        seed_model.double()(x)
    with torch.no_grad():
        out = ours.double()(x)
    assert out.dtype == torch.float64 and out.shape == (10, 1)


def test_q47_shared_embedding_rejects_a_larger_target_vocabulary_and_ours_does_not() -> None:
    """Catalog B37: the curriculum looks target ids up in the source embedding, so a target id
    at or above the source vocabulary size raises IndexError. Our tiny size has a source
    vocabulary of 40 and a target vocabulary of 60, the direction that breaks the curriculum."""
    spec = get_spec("seq2seq_lstm")
    cfg = spec.config("tiny")
    assert cfg.tgt_vocab_size > cfg.src_vocab_size
    src, tgt = spec.inputs(cfg, 8, seed=0)
    assert tgt.max() >= cfg.src_vocab_size  # some target id the source embedding lacks
    torch.manual_seed(0)
    seed_model = CurriculumSeq2SeqQ47(
        cfg.src_vocab_size, cfg.tgt_vocab_size, cfg.embed_dim, cfg.hidden_size
    )
    with pytest.raises(IndexError, match="index out of range"):
        seed_model(src, tgt)
    ours = spec.create("tiny").eval()
    with torch.no_grad():
        logits = ours(src, tgt)
    assert logits.shape == (8, tgt.shape[1], cfg.tgt_vocab_size)
    assert torch.isfinite(logits).all()


def copy_logits(tgt: torch.Tensor, vocab_size: int, confidence: float = 20.0) -> torch.Tensor:
    """The logits of a decoder that copies its input token at every step: (B, T) -> (B, T, V)."""
    return confidence * F.one_hot(tgt, vocab_size).float()


def test_q47_unshifted_target_is_solved_by_copying_and_ours_is_not() -> None:
    """Catalog B37: the curriculum's decoder reads tgt and is scored against tgt itself, so the
    label at step t is the decoder's own input at step t. A decoder that copies its input, and
    knows nothing of the source, then has near-zero loss. Our labels (teacher forcing) are the
    next tokens, so copying scores as badly as it should."""
    spec = get_spec("seq2seq_lstm")
    cfg = spec.config("tiny")
    inputs = spec.inputs(cfg, 8, seed=0)
    tgt = inputs[1]
    logits = copy_logits(tgt, cfg.tgt_vocab_size)  # (B, T, V)
    # the curriculum's objective: cross entropy against tgt itself (Q47 shifts nothing)
    seed_loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten())
    assert seed_loss < 1e-6
    # ours: the label at step t is target token t + 1, and padding is ignored
    labels = spec.make_targets(cfg, inputs)  # the targets the model declares: the task's
    real = tgt[:, 1:] != cfg.pad_token
    assert torch.equal(labels[:, :-1][real], tgt[:, 1:][real])
    assert (labels[:, -1] == IGNORE_INDEX).all()
    assert spec.loss(logits, labels) > 10.0  # copying is wrong almost everywhere


def test_q47_unshifted_target_trains_the_curriculum_model_to_copy() -> None:
    """Catalog B37, the copy learned: the curriculum's model trained on its own objective over
    random (source, target) pairs, which hold nothing to translate, still drives its loss down
    by predicting its input token, and does so on pairs it has never seen."""
    torch.manual_seed(0)
    vocab, steps = 20, 60
    model = CurriculumSeq2SeqQ47(vocab, vocab, 16, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        src = torch.randint(vocab, (8, 6), generator=generator)
        tgt = torch.randint(vocab, (8, 6), generator=generator)
        loss = F.cross_entropy(model(src, tgt).flatten(0, 1), tgt.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss < 0.2  # near zero on a batch it has not trained on
    src = torch.randint(vocab, (64, 6), generator=generator)
    tgt = torch.randint(vocab, (64, 6), generator=generator)
    with torch.no_grad():
        copied = (model(src, tgt).argmax(dim=-1) == tgt).float().mean()
    assert copied > 0.95  # chance is 1 / 20


def test_q35_attention_model_crashes_twice_and_ours_runs() -> None:
    """Catalog B20: on its own example input (src (8, 10, 16), tgt (8, 5, 16)) the curriculum's
    decoder LSTM(32 -> 32) gets 16-dim targets and raises. Given 32-dim targets, its attention
    concatenates decoder and encoder outputs along time, (8, 15, 32), and its Linear(64, 32)
    raises. Ours, at the curriculum's sizes (full) with token ids of the same lengths, returns
    attention weights whose rows sum to 1 and give source padding 0."""
    torch.manual_seed(0)
    src = torch.randn(8, 10, 16)
    tgt = torch.randn(8, 5, 16)
    seed_model = CurriculumSeq2SeqQ35(input_dim=16, hidden_size=32, output_dim=50)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        seed_model(src, tgt)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        seed_model(src, torch.randn(8, 5, 32))

    spec = get_spec("seq2seq_attention")
    cfg = spec.config("full")
    src_ids, tgt_ids = spec.inputs(cfg, 8, seed=0)  # (8, 10) and (8, 5)
    ours = spec.create("full").eval()
    with torch.no_grad():
        out = ours(src_ids, tgt_ids)
    assert out["logits"].shape == (8, 5, 50)
    weights = out["attention"]  # (8, 5, 10)
    assert weights.shape == (8, 5, 10)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(8, 5))
    padding = (src_ids == cfg.pad_token).unsqueeze(1).expand_as(weights)
    assert padding.any() and (weights[padding] == 0).all()
