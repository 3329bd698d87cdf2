"""LSTM encoder-decoders for translation, trained with teacher forcing: plain, and with attention.

Both read source ids (B, S) and target ids (B, T), right-padded with ``pad_token``. The target is
the decoder's input, starting with ``bos_token``; the loss's labels are the target shifted by one
(``impl.tasks.next_token_targets``), so the logits at step t predict target token t + 1 from the
source and the target tokens up to t. Source padding changes no output, and target padding changes
none at the real positions.

- ``seq2seq_lstm``, curriculum 002 Q47: Embedding(3000, 128) -> encoder LSTM(128 -> 256); the
  decoder LSTM(128 -> 256) starts from the encoder's (h, c) and a per-step Linear(256 -> 3000)
  gives the logits (B, T, V_tgt). Deviations, each a fix (catalog B37):
  - The seed looks the target ids up in the *source* embedding, which works only while both
    vocabularies are the same size: a target id >= the source vocabulary raises IndexError. We
    give the target its own embedding (so full has one more Embedding(3000, 128)).
  - The seed's encoder runs over the padded source, so source padding changes the decoder's
    initial state; ours runs over the packed source (``pack_padded_sequence``), so (h, c) is the
    state after each sample's last real token.
  - The seed trains on ``tgt`` itself as the label of step t, which the decoder sees as its
    input at step t: it learns to copy. Our labels are the next tokens (teacher forcing).
- ``seq2seq_attention``, curriculum 002 Q35, an "attention-based translation model" that crashes
  twice as written (catalog B20: its decoder LSTM takes 32 features from a 16-dim target, and
  its attention concatenates along time into a Linear expecting 64 features; its softmax over
  dim 1 is no alignment either). We keep its sizes and write the additive attention of Bahdanau
  et al. (2015, arXiv:1409.0473): at target step t, with the decoder's previous state s,
  score_j = v^T tanh(W_q s + W_k h_j) over the encoder outputs h_j, -inf at source padding,
  a = softmax_j(score), context = sum_j a_j h_j; an LSTMCell takes [embedded token t; context]
  and its new state gives the logits through Linear(H, V). The encoder runs over the padded
  source: a forward LSTM's outputs at the real tokens do not depend on the padding after them,
  and attention gives the padding weight 0. The decoder starts from the encoder output at the
  last real token and a zero cell state (the seed hands over the encoder's final (h, c); the
  cell state after the last real token would need packing, and CPU autocast of a packed LSTM
  fails here or not depending on whether the lengths in the batch are all equal).
  The seed's inputs are float features (8, 10, 16) and (8, 5, 16) with 50 outputs; for token
  ids we embed both sides into those 16 dims. Full: source and target vocabularies of 50 (the
  seed's 50 outputs), embeddings 16, hidden 32, source length 10 and target length 5. It returns
  ``{"logits": (B, T, V), "attention": (B, T, S)}``: the alignment is what a translation model's
  attention is inspected for.

Capabilities: TorchScript and dynamic int8 quantisation for both (``quantize_dynamic`` converts
the Linear and LSTM layers; the attention decoder's LSTMCell stays float32). CPU autocast
(bfloat16) runs ``nn.LSTM`` over a padded batch through oneDNN, which has no bfloat16 LSTM
without native bf16 ("could not create a primitive descriptor for the LSTM forward propagation
primitive" on AMD EPYC with AVX2), so both declare that need. No ONNX: ``torch.export`` cannot
trace ``pack_padded_sequence`` (its shapes depend on the lengths' values), and
``seq2seq_attention`` returns a mapping.
Dimension key: B batch, S source tokens, T target tokens, E embedding, H hidden units,
V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from impl.differentiable import gradcheck_module, no_gradcheck, randn
from impl.machine import ONEDNN_BF16
from impl.models._tokens import right_padded_token_ids
from impl.registry import Cap, register_model
from impl.tasks import LANGUAGE_MODEL


@dataclass(frozen=True)
class Seq2SeqConfig:
    src_vocab_size: int = 3000
    tgt_vocab_size: int = 3000
    embed_dim: int = 128  # E, both embeddings
    hidden_size: int = 256  # H, encoder and decoder
    max_src_len: int = 10  # longest example source (the LSTMs themselves take any length)
    max_tgt_len: int = 10  # longest example target
    pad_token: int = 0  # both sides are right-padded with this id
    bos_token: int = 1  # the target's first token: the decoder's input at step 0

    def __post_init__(self) -> None:
        if min(self.src_vocab_size, self.tgt_vocab_size) <= max(self.pad_token, self.bos_token):
            raise ValueError("pad_token and bos_token must lie inside both vocabularies")


SEQ2SEQ_LSTM_SIZES = {
    # a target vocabulary larger than the source's: the seed's shared embedding raises (B37)
    "tiny": Seq2SeqConfig(
        src_vocab_size=40, tgt_vocab_size=60, embed_dim=16, hidden_size=32, max_tgt_len=8
    ),
    "full": Seq2SeqConfig(),  # 002 Q47: vocabularies 3000, embeddings 128, hidden 256
}
SEQ2SEQ_ATTENTION_SIZES = {
    "tiny": Seq2SeqConfig(
        src_vocab_size=40, tgt_vocab_size=30, embed_dim=16, hidden_size=32, max_tgt_len=5
    ),
    # 002 Q35: 16-dim inputs, hidden 32, 50 outputs, source 10 and target 5 steps
    "full": Seq2SeqConfig(
        src_vocab_size=50, tgt_vocab_size=50, embed_dim=16, hidden_size=32, max_tgt_len=5
    ),
}


def _check_ids(src: Tensor, tgt: Tensor) -> None:
    if src.dim() != 2:
        raise ValueError(f"expected source ids (B, S), got {list(src.shape)}")
    if tgt.dim() != 2 or tgt.shape[0] != src.shape[0]:
        raise ValueError(
            f"expected target ids (B, T) with B = {src.shape[0]}, got {list(tgt.shape)}"
        )


@no_gradcheck("counts tokens: an integer output of integer ids")
def source_lengths(src: Tensor, pad_token: int) -> Tensor:
    """Real tokens per sample (B,); an all-pad source counts as one token, read at step 0."""
    return (src != pad_token).sum(dim=1).clamp(min=1)


class Seq2SeqLSTM(nn.Module):
    """Packed LSTM encoder -> (h, c) -> LSTM decoder over the embedded target -> Linear per step.

    Shape: source ids (B, S), target ids (B, T) -> next-token logits (B, T, V)
    """

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.pad_token = cfg.pad_token
        self.src_embedding = nn.Embedding(
            cfg.src_vocab_size, cfg.embed_dim, padding_idx=cfg.pad_token
        )
        self.tgt_embedding = nn.Embedding(
            cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=cfg.pad_token
        )
        self.encoder = nn.LSTM(cfg.embed_dim, cfg.hidden_size, batch_first=True)
        self.decoder = nn.LSTM(cfg.embed_dim, cfg.hidden_size, batch_first=True)
        self.fc = nn.Linear(cfg.hidden_size, cfg.tgt_vocab_size)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        _check_ids(src, tgt)
        packed = pack_padded_sequence(
            self.src_embedding(src),  # (B, S, E)
            source_lengths(src, self.pad_token).cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        _, state = self.encoder(packed)  # (h, c), each (1, B, H): after the last real token
        out, _ = self.decoder(self.tgt_embedding(tgt), state)  # (B, T, H)
        return self.fc(out)  # (B, T, V)


@gradcheck_module(
    lambda: AdditiveAttention(hidden_size=3),
    lambda g: (
        randn(g, 2, 3),
        randn(g, 2, 4, 3),
        randn(g, 2, 4, 3),
        torch.tensor([[False, False, False, True], [False, False, False, False]]),
    ),
)
class AdditiveAttention(nn.Module):
    """Bahdanau attention: score_j = v^T tanh(W_q s + W_k h_j), softmax over real source tokens.

    ``keys`` (W_k h_j) depend on the source only, so the decoder projects them once per batch.
    Shape: query s (B, H), keys (B, S, H), values h (B, S, H), padding (B, S) True at padding
    -> context (B, H) and weights (B, S), 0 at padding and summing to 1 over the source
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)  # W_q
        self.key = nn.Linear(hidden_size, hidden_size)  # W_k, and the one bias
        self.score = nn.Linear(hidden_size, 1, bias=False)  # v

    def keys(self, values: Tensor) -> Tensor:
        return self.key(values)  # (B, S, H)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, padding: Tensor
    ) -> tuple[Tensor, Tensor]:
        energy = torch.tanh(self.query(query).unsqueeze(1) + keys)  # (B, S, H)
        scores = self.score(energy).squeeze(2)  # (B, S)
        weights = torch.softmax(scores.masked_fill(padding, float("-inf")), dim=1)  # (B, S)
        context = (weights.unsqueeze(2) * values).sum(dim=1)  # (B, H)
        return context, weights


class Seq2SeqAttention(nn.Module):
    """LSTM encoder; an LSTMCell decoder that attends over the encoder outputs at every step.

    Shape: source ids (B, S), target ids (B, T) -> {"logits": (B, T, V), "attention": (B, T, S)}
    """

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.pad_token = cfg.pad_token
        self.src_embedding = nn.Embedding(
            cfg.src_vocab_size, cfg.embed_dim, padding_idx=cfg.pad_token
        )
        self.tgt_embedding = nn.Embedding(
            cfg.tgt_vocab_size, cfg.embed_dim, padding_idx=cfg.pad_token
        )
        self.encoder = nn.LSTM(cfg.embed_dim, cfg.hidden_size, batch_first=True)
        self.attention = AdditiveAttention(cfg.hidden_size)
        self.decoder = nn.LSTMCell(cfg.embed_dim + cfg.hidden_size, cfg.hidden_size)
        self.fc = nn.Linear(cfg.hidden_size, cfg.tgt_vocab_size)

    def forward(self, src: Tensor, tgt: Tensor) -> dict[str, Tensor]:
        _check_ids(src, tgt)
        positions = torch.arange(src.shape[1], device=src.device)  # (S,)
        # True at padding; step 0 always counts as real, as ``source_lengths`` reads it, so an
        # all-pad source still has one position to attend to (no softmax of all -inf)
        padding = (src == self.pad_token) & (positions != 0)  # (B, S)
        # Outputs at real steps ignore the padding that follows them (the LSTM runs forwards)
        values, _ = self.encoder(self.src_embedding(src))  # (B, S, H)
        keys = self.attention.keys(values)  # (B, S, H)
        last = source_lengths(src, self.pad_token) - 1  # (B,)
        # the decoder starts from the encoder output at the last real token, and a zero cell
        h = values[torch.arange(src.shape[0], device=src.device), last]  # (B, H)
        c = torch.zeros_like(h)  # (B, H)
        embedded = self.tgt_embedding(tgt)  # (B, T, E)
        logits, weights = [], []
        for t in range(tgt.shape[1]):
            context, a = self.attention(h, keys, values, padding)  # (B, H), (B, S)
            h, c = self.decoder(torch.cat([embedded[:, t], context], dim=1), (h, c))  # (B, H)
            logits.append(self.fc(h))  # (B, V)
            weights.append(a)
        return {"logits": torch.stack(logits, dim=1), "attention": torch.stack(weights, dim=1)}


def _example_inputs(
    cfg: Seq2SeqConfig,
    batch_size: int,
    generator: torch.Generator,
    src_len: int | None = None,
    tgt_len: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Right-padded source ids (B, S) and target ids (B, T) starting with ``bos_token``; every
    target is at least 2 tokens long, so every sample has a next-token label."""
    src_len = cfg.max_src_len if src_len is None else src_len
    tgt_len = cfg.max_tgt_len if tgt_len is None else tgt_len
    src = right_padded_token_ids(batch_size, src_len, cfg.src_vocab_size, cfg.pad_token, generator)
    tgt = right_padded_token_ids(
        batch_size, tgt_len, cfg.tgt_vocab_size, cfg.pad_token, generator, min_len=2
    )
    tgt[:, 0] = cfg.bos_token
    return src, tgt


def _sequence_dims(cfg: Seq2SeqConfig) -> dict[str, tuple[int, int]]:
    # a target of one token (BOS) has no next token to predict
    return {"src_len": (1, cfg.max_src_len), "tgt_len": (2, cfg.max_tgt_len)}


def _logits_shape(
    cfg: Seq2SeqConfig, batch_size: int, src_len: int | None = None, tgt_len: int | None = None
) -> tuple[int, int, int]:
    tgt_len = cfg.max_tgt_len if tgt_len is None else tgt_len
    return (batch_size, tgt_len, cfg.tgt_vocab_size)


def _attention_shapes(
    cfg: Seq2SeqConfig, batch_size: int, src_len: int | None = None, tgt_len: int | None = None
) -> dict[str, tuple[int, int, int]]:
    src_len = cfg.max_src_len if src_len is None else src_len
    logits = _logits_shape(cfg, batch_size, src_len, tgt_len)
    return {"logits": logits, "attention": (batch_size, logits[1], src_len)}


@register_model(
    family="seq2seq",
    curriculum="002 Q47",
    sizes=SEQ2SEQ_LSTM_SIZES,
    example_inputs=_example_inputs,
    output_shape=_logits_shape,
    dynamic_dims=_sequence_dims,
    task=LANGUAGE_MODEL,
    caps={Cap.TORCHSCRIPT, Cap.QUANT_DYNAMIC, Cap.AMP},
    # CPU autocast runs the decoder's nn.LSTM in bfloat16 through oneDNN, which has no bfloat16
    # LSTM without native bf16
    needs={Cap.AMP: (ONEDNN_BF16,)},
    padded_sequences=True,
    causal_inputs=(1,),
    # The seed's 1,945,528 (shared Embedding(3000, 128) 384,000 + encoder LSTM(128 -> 256)
    # 395,264 + decoder LSTM 395,264 + Linear(256, 3000) 771,000) plus our target Embedding(3000,
    # 128), 384,000.
    full_params=2_329_528,
)
def seq2seq_lstm(cfg: Seq2SeqConfig) -> Seq2SeqLSTM:
    """LSTM encoder-decoder with separate source and target embeddings and a packed source."""
    return Seq2SeqLSTM(cfg)


@register_model(
    family="seq2seq",
    curriculum="002 Q35",
    sizes=SEQ2SEQ_ATTENTION_SIZES,
    example_inputs=_example_inputs,
    output_shape=_attention_shapes,
    dynamic_dims=_sequence_dims,
    task=LANGUAGE_MODEL,
    prediction="logits",  # the task's loss and accuracy score the logits
    caps={Cap.TORCHSCRIPT, Cap.QUANT_DYNAMIC, Cap.AMP},
    # CPU autocast runs the encoder's nn.LSTM in bfloat16 through oneDNN (see seq2seq_lstm)
    needs={Cap.AMP: (ONEDNN_BF16,)},
    padded_sequences=True,
    causal_inputs=(1,),
    attention_weights=("attention", 0),
    # The seed crashes, so no count of its own: source and target Embedding(50, 16) 800 each +
    # encoder LSTM(16 -> 32) 6,400 + attention W_q 1,024, W_k 1,056, v 32 + decoder
    # LSTMCell(16 + 32 -> 32) 10,496 + Linear(32, 50) 1,650.
    full_params=22_258,
)
def seq2seq_attention(cfg: Seq2SeqConfig) -> Seq2SeqAttention:
    """LSTM encoder-decoder with additive (Bahdanau) attention over the real source tokens."""
    return Seq2SeqAttention(cfg)
