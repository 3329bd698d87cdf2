"""Self-attention layers: multi-head with a fused qkv projection, and a single-head layer.

Curriculum: 002 Q41. Both map a sequence of vectors to one of the same shape and have no
positions, so permuting the sequence permutes the output the same way.
- ``self_attention_mh`` (Q41 v1): Linear(E -> 3E) makes q, k, v for 8 heads, scores scaled by
  head_dim^-0.5, an optional mask, softmax, dropout on the weights, and Linear(E -> E). With its
  weights copied it equals ``nn.MultiheadAttention(E, 8, batch_first=True)`` (the reference).
- ``self_attention_single`` (Q41 v2): separate query/key/value Linear(E, E), scores scaled by
  sqrt(E), softmax over the keys and no output projection. One head of width E, so it equals
  ``nn.MultiheadAttention(E, 1)`` whose output projection is the identity (the reference).

Deliberate deviations from Q41 v1, each making it the function nn.MultiheadAttention computes:
- The seed applies its one ``nn.Dropout`` twice, to the attention weights and again to the
  projected output. nn.MultiheadAttention drops the attention weights only (dropping the layer's
  output is the enclosing block's job: TransformerEncoderLayer's ``dropout1``), so we keep one
  ``attn_drop`` on the weights and no output dropout. The seed's default p is 0.0, so at the
  curriculum's configuration both compute the same function; they differ only when p > 0 in
  training mode (checks/techniques/test_attention.py shows the seed's zeroed outputs).
- Mask convention, the seed's: ``mask`` broadcasts to (B, heads, T, T) (e.g. (T, T), (B, 1, T, T)
  or the seed's (B, heads, T, T)); a query may attend to a key where the mask is non-zero (True)
  and may not where it is 0 (False). That is ``F.scaled_dot_product_attention``'s boolean
  convention and the opposite of nn.MultiheadAttention's ``attn_mask``, where True blocks.
  Where a query's every key is masked the seed's softmax of all -inf gives NaN; we give it zero
  weights instead (its output is the projection's bias), as F.scaled_dot_product_attention and
  nn.MultiheadAttention do in torch 2.14.

Dimension key: B batch, T sequence length, E embedding, H heads, D = E / H per-head width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impl.differentiable import gradcheck_module, randn
from impl.registry import Cap, register_model
from impl.tasks import REGRESSION


@dataclass(frozen=True)
class SelfAttentionConfig:
    embed_dim: int = 256
    num_heads: int = 8  # Q41 v2 is a single head whatever this says
    dropout: float = 0.0  # on the attention weights (Q41 v1 only); the seed's default
    max_len: int = 10  # longest example sequence (the layer takes any length)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )


SIZES = {
    # 8 samples x 6 positions = 48 rows to fit with 64-wide linear maps: the overfit check can
    "tiny": SelfAttentionConfig(embed_dim=64, max_len=6),
    "full": SelfAttentionConfig(),  # the seed's test: (4, 10, 256) and (32, 10, 256)
}


def _check_input(x: Tensor, embed_dim: int) -> None:
    if x.dim() != 3 or x.shape[2] != embed_dim:
        raise ValueError(f"expected input (B, T, {embed_dim}), got {list(x.shape)}")


class MultiHeadSelfAttention(nn.Module):
    """Fused qkv -> H heads of scaled dot-product attention -> output projection (Q41 v1).

    Shape: x (B, T, E), optional mask broadcastable to (B, H, T, T) -> (B, T, E)
    """

    def __init__(self, cfg: SelfAttentionConfig) -> None:
        super().__init__()
        self.embed_dim, self.num_heads = cfg.embed_dim, cfg.num_heads
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)  # rows: q, then k, then v
        self.attn_drop = nn.Dropout(cfg.dropout)  # on the weights, as nn.MultiheadAttention
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_input(x, self.embed_dim)
        batch, length = x.shape[0], x.shape[1]
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, D) each
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T, T)
        if mask is not None:
            blocked = mask == 0
            attn = attn.masked_fill(blocked, float("-inf"))
            attn = F.softmax(attn, dim=-1)
            # a query with every key masked: zero weights rather than softmax's NaN
            attn = attn.masked_fill(blocked.all(dim=-1, keepdim=True), 0.0)
        else:
            attn = F.softmax(attn, dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(batch, length, self.embed_dim)  # (B, T, E)
        return self.proj(x)  # (B, T, E)


class SingleHeadSelfAttention(nn.Module):
    """query/key/value Linear -> softmax(q k^T / sqrt(E)) v, no output projection (Q41 v2).

    Shape: x (B, T, E) -> (B, T, E)
    """

    def __init__(self, cfg: SelfAttentionConfig) -> None:
        super().__init__()
        self.input_dim = cfg.embed_dim
        self.query = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.key = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.value = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.softmax = nn.Softmax(dim=2)  # over the keys

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.input_dim)
        queries, keys, values = self.query(x), self.key(x), self.value(x)  # (B, T, E) each
        scores = torch.bmm(queries, keys.transpose(1, 2))  # (B, T, T)
        scores = scores / (self.input_dim**0.5)  # = F.scaled_dot_product_attention's default
        attention = self.softmax(scores)  # (B, T, T)
        return torch.bmm(attention, values)  # (B, T, E)


@gradcheck_module(
    lambda: TorchSelfAttention(embed_dim=4, num_heads=2, dropout=0.0),
    lambda g: (randn(g, 2, 3, 4), torch.tensor([[[1.0, 1.0, 0.0]]])),
    wrt=(0,),
)
class TorchSelfAttention(nn.Module):
    """nn.MultiheadAttention(batch_first=True) used as self-attention, returning the attended
    output only; ``mask`` as our layers take it (non-zero attends), turned into its ``attn_mask``.

    Shape: x (B, T, E), optional mask broadcastable to (B, H, T, T) -> (B, T, E)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        attn_mask = None
        if mask is not None:
            batch, length, heads = x.shape[0], x.shape[1], self.mha.num_heads
            blocked = (mask == 0).expand(batch, heads, length, length)  # True blocks here
            attn_mask = blocked.reshape(batch * heads, length, length)
        return self.mha(x, x, x, attn_mask=attn_mask, need_weights=False)[0]


def _torch_multi_head(model: MultiHeadSelfAttention) -> TorchSelfAttention:
    """nn.MultiheadAttention with our weights: the fused qkv rows are its in_proj layout."""
    reference = TorchSelfAttention(model.embed_dim, model.num_heads, model.attn_drop.p)
    with torch.no_grad():
        reference.mha.in_proj_weight.copy_(model.qkv.weight)
        reference.mha.in_proj_bias.copy_(model.qkv.bias)
        reference.mha.out_proj.weight.copy_(model.proj.weight)
        reference.mha.out_proj.bias.copy_(model.proj.bias)
    return reference


def _torch_single_head(model: SingleHeadSelfAttention) -> TorchSelfAttention:
    """One head of width E (so the scale is E^-0.5) and an identity output projection."""
    reference = TorchSelfAttention(model.input_dim, 1, 0.0)
    with torch.no_grad():
        layers = (model.query, model.key, model.value)
        reference.mha.in_proj_weight.copy_(torch.cat([m.weight for m in layers]))
        reference.mha.in_proj_bias.copy_(torch.cat([m.bias for m in layers]))
        reference.mha.out_proj.weight.copy_(torch.eye(model.input_dim))
        reference.mha.out_proj.bias.zero_()
    return reference


def _example_inputs(
    cfg: SelfAttentionConfig, batch_size: int, generator: torch.Generator, seq_len: int = 0
) -> tuple[Tensor]:
    seq_len = seq_len or cfg.max_len
    return (torch.randn(batch_size, seq_len, cfg.embed_dim, generator=generator),)


def _output_shape(
    cfg: SelfAttentionConfig, batch_size: int, seq_len: int = 0
) -> tuple[int, int, int]:
    return (batch_size, seq_len or cfg.max_len, cfg.embed_dim)


def _sequence_dims(cfg: SelfAttentionConfig) -> dict[str, tuple[int, int]]:
    return {"seq_len": (1, cfg.max_len)}


_COMMON = {
    "family": "attention",
    "sizes": SIZES,
    "example_inputs": _example_inputs,
    "output_shape": _output_shape,
    "dynamic_dims": _sequence_dims,
    "task": REGRESSION,
    "caps": {Cap.TORCHSCRIPT, Cap.ONNX, Cap.QUANT_DYNAMIC, Cap.AMP},
    "permutation_equivariant": True,
}


@register_model(
    curriculum="002 Q41",
    reference=_torch_multi_head,
    # qkv 256 x 768 + 768 = 197,376 and proj 256 x 256 + 256 = 65,792 (the catalog gives none)
    full_params=263_168,
    **_COMMON,
)
def self_attention_mh(cfg: SelfAttentionConfig) -> MultiHeadSelfAttention:
    """Multi-head self-attention with a fused qkv projection (equals nn.MultiheadAttention)."""
    return MultiHeadSelfAttention(cfg)


@register_model(
    curriculum="002 Q41",
    reference=_torch_single_head,
    # query, key, value: 3 x (256 x 256 + 256) (the catalog gives none)
    full_params=197_376,
    **_COMMON,
)
def self_attention_single(cfg: SelfAttentionConfig) -> SingleHeadSelfAttention:
    """Single-head self-attention scaled by sqrt(E), without an output projection."""
    return SingleHeadSelfAttention(cfg)
