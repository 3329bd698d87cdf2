"""Pin down the curriculum's own mistakes: its code, reproduced faithfully and small, shows the bug;
our reference implementation, on the same input, does not. Catalog section 5."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from impl import get_spec
from impl.techniques.focal_loss import sigmoid_focal_loss
from impl.techniques.quantization import quantize_static_int8, sqnr_db


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


class CurriculumSimpleModelQ92(torch.nn.Module):
    """002 Q92 as written: one Linear(10, 1), and no QuantStub or DeQuantStub around it."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(10, 1)

    def forward(self, x):
        return self.fc(x)


def curriculum_static_quantization_q92(model, data):
    """002 Q75, Q83, Q92 as written: qconfig, prepare, calibrate (Q92's 10 passes), convert."""
    model.qconfig = torch.quantization.get_default_qconfig("fbgemm")
    model_prepared = torch.quantization.prepare(model)
    with torch.no_grad():
        for _ in range(10):
            model_prepared(data)
    return torch.quantization.convert(model_prepared)


def curriculum_focal_loss_q29(logits, targets, alpha=0.25, gamma=2.0):
    """002 Q29 v1 as written: the weight uses p (not p_t) and a constant alpha (not alpha_t)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    probs = torch.sigmoid(logits)
    return (alpha * (1 - probs) ** gamma * bce).mean()


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


def test_q29_focal_loss_ignores_hard_negatives_and_ours_does_not() -> None:
    """Catalog B13, figures from the catalog: a confidently wrong negative (logit 5, label 0) costs
    5.6e-5 in the curriculum and 3.70 in the paper's loss; an easy negative (logit -5) 1.7e-3 and
    2.3e-7: the curriculum's weighting is upside down for negatives."""
    hard, easy, negative = torch.tensor([5.0]), torch.tensor([-5.0]), torch.tensor([0.0])
    assert curriculum_focal_loss_q29(hard, negative).item() == pytest.approx(5.6e-5, rel=0.02)
    assert sigmoid_focal_loss(hard, negative).item() == pytest.approx(3.70, rel=0.01)
    assert curriculum_focal_loss_q29(easy, negative).item() == pytest.approx(1.7e-3, rel=0.03)
    assert sigmoid_focal_loss(easy, negative).item() == pytest.approx(2.3e-7, rel=0.05)
    # positives agree: for y = 1, p_t = p and alpha_t = alpha
    positive = torch.tensor([1.0])
    for logit in (hard, easy):
        torch.testing.assert_close(
            curriculum_focal_loss_q29(logit, positive), sigmoid_focal_loss(logit, positive)
        )


@pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning")
def test_q92_static_quantization_rejects_float_input_and_ours_does_not() -> None:
    """Catalog B15: without QuantStub the converted quantized.Linear is handed a float tensor and
    raises; with the stubs the same model takes and returns float. The model is put in eval, which
    the curriculum forgets too, so only the missing stubs are on trial."""
    torch.manual_seed(0)
    data = torch.randn(100, 10)
    model = CurriculumSimpleModelQ92().eval()
    ours = quantize_static_int8(model, [(data,)])  # first: it leaves ``model`` untouched
    seed_quantized = curriculum_static_quantization_q92(model, data)
    assert type(seed_quantized.fc) is torch.ao.nn.quantized.Linear
    with pytest.raises(NotImplementedError, match="quantized::linear"):
        seed_quantized(data)
    with torch.no_grad():
        out = ours(data)
        assert out.dtype == torch.float32 and out.shape == (100, 1)
        assert sqnr_db(model(data), out) >= 25.0
