"""Pin down the curriculum's own mistakes: its code, reproduced faithfully and small, shows the bug;
our reference implementation, on the same input, does not. Catalog section 5."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from impl import get_spec


class CurriculumTransformerQ31(nn.Module):
    """002 Q31 as written: nn.Transformer with its default batch_first=False, fed (B, T, E)."""

    def __init__(
        self, vocab_size=100, d_model=32, nhead=2, num_layers=1, num_classes=3, max_len=16
    ):
        super().__init__()  # sizes shrunk to the tiny config; the layer wiring is the curriculum's
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.pos_encoder = nn.Parameter(torch.zeros(1, max_len, d_model))
        self.transformer = nn.Transformer(
            d_model=d_model,
            nhead=nhead,
            num_encoder_layers=num_layers,
            num_decoder_layers=num_layers,
            dim_feedforward=64,
        )
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, x):
        x = self.embedding(x) + self.pos_encoder[:, : x.size(1)]
        x = self.transformer(x, x)
        return self.fc(x.mean(dim=1))


class CurriculumLSTMQ46(nn.Module):
    """002 Q46 as written: the classifier reads out[:, -1], whatever padding follows the text."""

    def __init__(self, vocab_size=100, embed_dim=16, hidden_dim=16, num_classes=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1, :])


def _changing_sample_0_moves_sample_1(model: nn.Module, ids: torch.Tensor) -> float:
    changed = ids.clone()
    changed[0] = (changed[0] + 1) % 99 + 1
    with torch.no_grad():
        return float((model(ids)[1] - model(changed)[1]).abs().max())


def test_q31_batch_first_bug_mixes_samples_and_ours_does_not() -> None:
    """Catalog B22: nn.Transformer's default batch_first=False reads (B, T, E) as (T, B, E)."""
    torch.manual_seed(0)
    ids = torch.randint(1, 100, (4, 16))
    assert _changing_sample_0_moves_sample_1(CurriculumTransformerQ31().eval(), ids) > 1e-3
    ours = get_spec("transformer_text_classifier").create("tiny").eval()
    assert _changing_sample_0_moves_sample_1(ours, ids) < 1e-6


def test_q46_last_step_bug_lets_padding_decide_and_ours_does_not() -> None:
    """Catalog B37: appending pad tokens changes the curriculum's prediction."""
    torch.manual_seed(0)
    ids = torch.randint(1, 100, (4, 10))
    padded = F.pad(ids, (0, 6), value=0)
    seed_model = CurriculumLSTMQ46().eval()
    ours = get_spec("sentiment_lstm").create("tiny").eval()
    with torch.no_grad():
        assert (seed_model(padded) - seed_model(ids)).abs().max() > 1e-3
        torch.testing.assert_close(ours(padded), ours(ids), rtol=1e-6, atol=1e-6)
