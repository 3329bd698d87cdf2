"""Transformer text classifier: token and learned positional embeddings, an encoder, mean pooling.

Curriculum: 002 Q31 (Embedding(1000, 128), a zero-initialised learned position table of 50 rows,
d_model 128, 4 heads, 2 encoder layers, feed-forward 2048, 3 classes). Deviations, both fixes:
- The curriculum feeds (B, T, E) into ``nn.Transformer`` whose default is ``batch_first=False``,
  so attention runs across samples and changing one sample changes the others (catalog B22).
  We use ``batch_first=True`` and check batch independence.
- It runs a full encoder-decoder (6 decoder layers) with src = tgt; a classifier needs only the
  encoder. We keep ``nn.Transformer``'s encoder exactly (post-LN layers plus a final LayerNorm).
We also mask right padding out of attention and out of the mean, so pad tokens do not matter.
Dimension key: B batch, T tokens, E embedding (d_model), V vocabulary, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.models._tokens import padded_token_inputs, sequence_dims
from impl.registry import Cap, register_model
from impl.tasks import class_logits_shape


@dataclass(frozen=True)
class TransformerClassifierConfig:
    vocab_size: int = 1000
    max_len: int = 50  # rows of the learned position table
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    dim_feedforward: int = 2048  # nn.Transformer's default
    dropout: float = 0.1  # nn.Transformer's default
    num_classes: int = 3
    pad_token: int = 0  # sequences are right-padded with this id

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}"
            )


SIZES = {
    "tiny": TransformerClassifierConfig(
        vocab_size=100, max_len=16, d_model=32, num_heads=2, num_layers=1, dim_feedforward=64
    ),
    "full": TransformerClassifierConfig(),
}


class TransformerTextClassifier(nn.Module):
    """Embedding + positions -> TransformerEncoder (batch first) -> masked mean -> Linear.

    Shape: token ids (B, T) with T <= max_len, right-padded with ``pad_token`` -> logits (B, K)
    """

    def __init__(self, cfg: TransformerClassifierConfig) -> None:
        super().__init__()
        self.pad_token, self.max_len = cfg.pad_token, cfg.max_len
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_token)
        # learned positions, zero-initialised as in the curriculum
        self.pos_embedding = nn.Parameter(torch.zeros(1, cfg.max_len, cfg.d_model))
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.num_heads, cfg.dim_feedforward, cfg.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, norm=nn.LayerNorm(cfg.d_model))
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.max_len:
            raise ValueError(
                f"expected token ids (B, T) with T <= {self.max_len}, got {list(ids.shape)}"
            )
        pad = ids == self.pad_token  # (B, T), True at padding
        # an all-pad row attends to every position rather than to none (which would give NaN)
        pad = pad & ~pad.all(dim=1, keepdim=True)
        x = self.embedding(ids) + self.pos_embedding[:, : ids.shape[1]]  # (B, T, E)
        x = self.encoder(x, src_key_padding_mask=pad)  # (B, T, E)
        keep = (~pad).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        x = (x * keep).sum(dim=1) / keep.sum(dim=1)  # (B, E): mean over real tokens
        return self.head(x)  # (B, K)


@register_model(
    family="attention",
    curriculum="002 Q31",
    sizes=SIZES,
    example_inputs=padded_token_inputs,
    output_shape=class_logits_shape,
    dynamic_dims=sequence_dims,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    padded_sequences=True,
    known_failures={
        Cap.QUANT_DYNAMIC: "torch 2.14: quantize_dynamic replaces linear1 with a module whose "
        "'weight' is a method, and TransformerEncoderLayer's eval fast-path check then raises "
        "AttributeError: 'function' object has no attribute 'device'",
        Cap.AMP: "torch 2.14, CPU only: TransformerEncoderLayer's inference fast path checks "
        "torch.is_autocast_enabled(), which looks at CUDA only, so under CPU autocast it still "
        "runs and raises 'expected scalar type Float but found BFloat16'",
    },
    # Embedding 128,000 + positions 6,400 + 2 x encoder layer 593,024 + final LayerNorm 256
    # + head 387. The curriculum's encoder-decoder has 5,277,315.
    full_params=1_321_091,
)
def transformer_text_classifier(cfg: TransformerClassifierConfig) -> TransformerTextClassifier:
    """Batch-first Transformer encoder classifier with padding-aware mean pooling."""
    return TransformerTextClassifier(cfg)
