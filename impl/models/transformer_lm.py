"""Causal Transformer language model written from scratch: post-LN blocks over sinusoidal positions.

Curriculum: 002 Q36 ("implement a Transformer"): multi-head attention with separate q/k/v
Linear layers, scores / sqrt(head_dim), masked positions -> -inf, softmax, an output Linear;
post-LN blocks x = LN(x + drop(attn(x))), x = LN(x + drop(FFN_relu(x))); token embedding plus a
sinusoidal position table, dropout 0.1; a Linear head to the vocabulary. The full configuration
is the seed's defaults (d_model 512, 8 heads, 6 layers, d_ff 2048, max_len 100, vocabulary 5000;
catalog: 24,039,304 parameters). Module and attribute names are the seed's, so a state_dict of
the seed's class loads into ours (ours adds only ``pos_encoding``).

Deliberate deviations from the seed, each a fix:
- The seed keeps its position table as a plain tensor attribute, so it is missing from the
  state_dict and ``model.to(dtype)`` leaves it float32 (catalog B52). Ours is a registered
  buffer: it is saved, loaded and converted with the weights.
- The seed takes an optional ``mask`` from its caller and its usage line passes none, so nothing
  stops a position from seeing the future. It is encoder-only (no cross-attention), so it suits
  language modelling rather than the translation its text promises (B52): we make it a causal
  language model that builds its own mask from the token ids: a causal mask (the output at t
  depends on tokens <= t only) combined with a key padding mask (no query attends to a pad
  token), except that key 0 stays visible to every query. Right padding comes after every real
  token, so the padding mask changes only the outputs at pad positions; keeping key 0 visible
  means no query ever has all of its keys masked (an all-pad or a left-padded sequence), which
  in the seed's softmax of all -inf gives NaN that the next layer spreads to the whole sequence
  (catalog attention_sdp). The attention core also gives zero weights to a fully masked query,
  as ``F.scaled_dot_product_attention`` does, so that it equals SDPA for every mask.
The attention core, the masks and the position table are the techniques ``attention_sdp`` and
``positional_encoding`` (``impl.techniques.attention``); this module wires them into the model.
Mask convention (the seed's and SDPA's boolean one): a query may attend to a key where the mask
is True (non-zero) and may not where it is False (0).

Dimension key: B batch, T tokens, E d_model, H heads, D = E / H per head, F feed-forward width,
V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impl.differentiable import gradcheck_module, randn
from impl.models._tokens import padded_token_inputs
from impl.registry import Cap, register_model
from impl.tasks import LANGUAGE_MODEL
from impl.techniques.attention import (
    causal_padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)


@dataclass(frozen=True)
class TransformerLMConfig:
    vocab_size: int = 5000
    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 6
    d_ff: int = 2048
    max_len: int = 100  # rows of the sinusoidal position table: the longest input
    dropout: float = 0.1
    pad_token: int = 0  # sequences are right-padded with this id

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}"
            )


SIZES = {
    # vocabulary 256: two random samples that start with the same token need two next tokens
    # from one context, which no causal model can fit; with 64 the overfit check's 8 samples do
    "tiny": TransformerLMConfig(
        vocab_size=256, d_model=32, num_heads=4, num_layers=2, d_ff=64, max_len=12
    ),
    # the quick size: the full one takes seconds per training step at batch 32 on 2 cores
    "small": TransformerLMConfig(
        vocab_size=1000, d_model=128, num_heads=4, num_layers=2, d_ff=512, max_len=64
    ),
    "full": TransformerLMConfig(),
}


def _sequence(generator: torch.Generator) -> tuple[Tensor, ...]:
    """x (1, 3, 4) and a causal mask (3, 3): the gradcheck inputs of the layers below (E = 4 in
    2 heads; each parameter costs gradcheck two forward passes, each output one backward)."""
    return randn(generator, 1, 3, 4), torch.ones(3, 3, dtype=torch.bool).tril()


@gradcheck_module(
    lambda: MultiHeadAttention(4, 2),
    lambda g: (lambda x, mask: (x, x.clone(), x.clone(), mask))(*_sequence(g)),
)
class MultiHeadAttention(nn.Module):
    """q/k/v Linear -> split into H heads -> scaled dot-product attention -> concat -> Linear.

    Shape: q, k, v (B, T, E), mask broadcastable to (B, H, T, T) -> (B, T, E)
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.d_model, self.num_heads = d_model, num_heads
        self.head_dim = d_model // num_heads
        self.q_linear = nn.Linear(d_model, d_model)
        self.k_linear = nn.Linear(d_model, d_model)
        self.v_linear = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], -1, self.num_heads, self.head_dim).transpose(1, 2)  # (B,H,T,D)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        batch_size = q.shape[0]
        q = self._heads(self.q_linear(q))  # (B, H, T, D)
        k = self._heads(self.k_linear(k))
        v = self._heads(self.v_linear(v))
        out = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, D)
        out = out.transpose(1, 2).contiguous().view(batch_size, -1, self.d_model)  # (B, T, E)
        return self.out(out)


@gradcheck_module(
    lambda: TransformerBlock(2, 2, 2, dropout=0.1),
    lambda g: (randn(g, 1, 3, 2), torch.ones(3, 3, dtype=torch.bool).tril()),
    note="E = 2 in 2 heads: 44 parameters (MultiHeadAttention is checked at E = 4 on its own)",
)
class TransformerBlock(nn.Module):
    """Post-LN: x = LN(x + drop(attn(x))); x = LN(x + drop(FFN(x))), FFN = Linear-ReLU-Linear.

    Shape: (B, T, E) -> (B, T, E)
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, x, mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class TransformerLM(nn.Module):
    """Embedding + sinusoidal positions -> dropout -> N post-LN blocks (causal) -> Linear to V.

    Shape: token ids (B, T) with T <= max_len, right-padded with ``pad_token`` -> logits (B, T, V)
    """

    def __init__(self, cfg: TransformerLMConfig) -> None:
        super().__init__()
        self.pad_token, self.max_len = cfg.pad_token, cfg.max_len
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # a buffer, unlike the seed's plain tensor (B52): saved and converted with the model
        self.register_buffer("pos_encoding", sinusoidal_positions(cfg.max_len, cfg.d_model))
        self.transformer_blocks = nn.ModuleList(
            [
                TransformerBlock(cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.dropout)
                for _ in range(cfg.num_layers)
            ]
        )
        self.fc = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.max_len:
            raise ValueError(
                f"expected token ids (B, T) with T <= {self.max_len}, got {list(ids.shape)}"
            )
        mask = causal_padding_mask(ids, self.pad_token)  # (B, 1, T, T)
        x = self.embedding(ids) + self.pos_encoding[:, : ids.shape[1]]  # (B, T, E)
        x = self.dropout(x)
        for block in self.transformer_blocks:
            x = block(x, mask)  # (B, T, E)
        return self.fc(x)  # (B, T, V)


# the smallest network with every kind of layer: 59 parameters
_GRADCHECK_LM = TransformerLMConfig(
    vocab_size=3, d_model=2, num_heads=1, num_layers=1, d_ff=2, max_len=3
)


@gradcheck_module(
    lambda: TorchTransformerLM(TransformerLM(_GRADCHECK_LM)),
    lambda g: (torch.tensor([[2, 1, 0]]),),  # right-padded: the padding mask is in play
    note="the parameters (token ids are integers), with right padding and dropout",
)
class TorchTransformerLM(nn.Module):
    """The same network from PyTorch's own layers: one nn.TransformerEncoderLayer (post-LN, ReLU,
    batch first; its nn.MultiheadAttention runs F.scaled_dot_product_attention) per block, with
    the causal mask as ``src_mask`` and the padding (key 0 exempt) as ``src_key_padding_mask``.
    Only its residual dropouts (dropout1, dropout2) keep p: like the seed, ours has no dropout on
    the attention weights nor inside the feed-forward, so those two are set to 0.

    Shape: token ids (B, T) -> logits (B, T, V)
    """

    def __init__(self, model: TransformerLM) -> None:
        super().__init__()
        first = model.transformer_blocks[0]
        d_model, d_ff = first.attention.d_model, first.feed_forward[0].out_features
        self.pad_token = model.pad_token
        self.embedding = nn.Embedding(model.embedding.num_embeddings, d_model)
        self.embedding.load_state_dict(model.embedding.state_dict())
        self.register_buffer("pos_encoding", model.pos_encoding.clone())
        self.dropout = nn.Dropout(model.dropout.p)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model,
                first.attention.num_heads,
                d_ff,
                first.dropout.p,
                activation="relu",
                batch_first=True,
                norm_first=False,
            )
            for _ in model.transformer_blocks
        )
        for layer in self.layers:  # the seed drops neither attention weights nor FFN hiddens
            layer.self_attn.dropout = 0.0
            layer.dropout.p = 0.0
        with torch.no_grad():
            for layer, block in zip(self.layers, model.transformer_blocks, strict=True):
                attention = block.attention
                projections = (attention.q_linear, attention.k_linear, attention.v_linear)
                layer.self_attn.in_proj_weight.copy_(torch.cat([m.weight for m in projections]))
                layer.self_attn.in_proj_bias.copy_(torch.cat([m.bias for m in projections]))
                layer.self_attn.out_proj.load_state_dict(attention.out.state_dict())
                layer.linear1.load_state_dict(block.feed_forward[0].state_dict())
                layer.linear2.load_state_dict(block.feed_forward[2].state_dict())
                layer.norm1.load_state_dict(block.norm1.state_dict())
                layer.norm2.load_state_dict(block.norm2.state_dict())
        self.fc = nn.Linear(d_model, model.fc.out_features)
        self.fc.load_state_dict(model.fc.state_dict())

    def forward(self, ids: Tensor) -> Tensor:
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)
        future = positions.unsqueeze(0) > positions.unsqueeze(1)  # (T, T): True blocks
        padding = (ids == self.pad_token) & (positions != 0)  # (B, T): True blocks
        x = self.dropout(self.embedding(ids) + self.pos_encoding[:, :length])
        for layer in self.layers:
            x = layer(x, src_mask=future, src_key_padding_mask=padding)
        return self.fc(x)


def _example_inputs(
    cfg: TransformerLMConfig, batch_size: int, generator: torch.Generator, seq_len: int = 0
) -> tuple[Tensor]:
    """Right-padded ids, every sample at least 2 tokens long, so each has a next-token label."""
    return padded_token_inputs(cfg, batch_size, generator, seq_len or None, min_len=2)


def _output_shape(
    cfg: TransformerLMConfig, batch_size: int, seq_len: int = 0
) -> tuple[int, int, int]:
    return (batch_size, seq_len or cfg.max_len, cfg.vocab_size)


def _sequence_dims(cfg: TransformerLMConfig) -> dict[str, tuple[int, int]]:
    return {"seq_len": (2, cfg.max_len)}  # one token has no next token to predict


@register_model(
    family="attention",
    curriculum="002 Q36",
    sizes=SIZES,
    example_inputs=_example_inputs,
    output_shape=_output_shape,
    dynamic_dims=_sequence_dims,
    task=LANGUAGE_MODEL,
    caps={Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    padded_sequences=True,
    causal_inputs=(0,),
    reference=TorchTransformerLM,
    # catalog: measured on the seed's own class (same layers; the position buffer is no parameter)
    full_params=24_039_304,
    quick_size="small",
)
def transformer_lm_scratch(cfg: TransformerLMConfig) -> TransformerLM:
    """Causal post-LN Transformer language model built from scratch (sinusoidal positions)."""
    return TransformerLM(cfg)
