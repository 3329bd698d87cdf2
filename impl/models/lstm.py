"""LSTM sentiment classifier: embedding, a stacked LSTM, and a linear head on the last real token.

Curriculum: 002 Q46 (Embedding(5000, 128) -> 2-layer LSTM(128 -> 64) -> Linear(64, 2), 723,074
parameters). Deviation, and the reason this file exists: the curriculum reads ``out[:, -1]``, the
output after the *padding*, so appending pad tokens changes the prediction (catalog B37). We read
the output at each sample's last real token instead. For a unidirectional LSTM that equals packing
the sequence, and unlike ``pack_padded_sequence`` it scripts and exports to ONNX.
Dimension key: B batch, T time steps, E embedding, H hidden units, V vocabulary, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from impl.machine import ONEDNN_BF16
from impl.models._tokens import padded_token_inputs, sequence_dims
from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape


@dataclass(frozen=True)
class SentimentLSTMConfig:
    vocab_size: int = 5000
    embed_dim: int = 128
    hidden_size: int = 64
    num_layers: int = 2
    num_classes: int = 2
    pad_token: int = 0  # sequences are right-padded with this id
    max_len: int = 50  # longest example sequence (the LSTM itself takes any length)


SIZES = {
    "tiny": SentimentLSTMConfig(vocab_size=100, embed_dim=16, hidden_size=16, max_len=16),
    "full": SentimentLSTMConfig(),
}


class SentimentLSTM(nn.Module):
    """Embedding -> LSTM -> Linear on the hidden state at each sample's last non-pad token.

    Shape: token ids (B, T), right-padded with ``pad_token`` -> logits (B, K)
    """

    def __init__(self, cfg: SentimentLSTMConfig) -> None:
        super().__init__()
        self.pad_token = cfg.pad_token
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_token)
        self.lstm = nn.LSTM(
            cfg.embed_dim, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True
        )
        self.fc = nn.Linear(cfg.hidden_size, cfg.num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"expected token ids (B, T), got {list(ids.shape)}")
        # (B,) real tokens per sample; an all-pad row reads step 0
        lengths = (ids != self.pad_token).sum(dim=1).clamp(min=1)
        out, _ = self.lstm(self.embedding(ids))  # (B, T, H)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))  # (B, 1, H)
        out = out.gather(1, last).squeeze(1)  # (B, H): the state after the last real token
        return self.fc(out)  # (B, K)


@register_model(
    family="recurrent",
    curriculum="002 Q46",
    sizes=SIZES,
    example_inputs=padded_token_inputs,
    output_shape=class_logits_shape,
    dynamic_dims=sequence_dims,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    # CPU autocast runs nn.LSTM in bfloat16, and oneDNN has no bfloat16 LSTM without native bf16:
    # "could not create a primitive descriptor for the LSTM forward propagation primitive"
    needs={Cap.AMP: (ONEDNN_BF16,)},
    padded_sequences=True,
    full_params=723_074,  # catalog: measured on the curriculum's own class (same layers)
)
def sentiment_lstm(cfg: SentimentLSTMConfig) -> SentimentLSTM:
    """Two-layer LSTM text classifier that ignores right padding."""
    return SentimentLSTM(cfg)
