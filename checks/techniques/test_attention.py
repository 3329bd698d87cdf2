"""Checks of ``impl.techniques.attention``: techniques ``attention_sdp`` and
``positional_encoding`` (catalog §2), beside the curriculum's attention code (002 Q36 and Q41),
reproduced faithfully and small.

``attention_sdp``: our core is ``F.scaled_dot_product_attention``'s function and our multi-head
layer ``nn.MultiheadAttention``'s; every row of weights sums to 1; causal masking makes the output
at t independent of what comes after t; a fully masked row gives the seed NaN (forward and
backward) and ours zero weights. The seed's Q36 and Q41 layers compute ours with the same weights,
and where they differ (no mask passed, dropout on the output) the test shows it.
``positional_encoding``: the sinusoidal table against its closed form, in [-1, 1] and unique per
position; the seed keeps it out of the state_dict and out of ``model.to()`` (B52), ours is a
buffer. The models' catalog rows (``transformer_lm_scratch``, ``self_attention_mh``,
``self_attention_single``) are the ones these layers come from.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from impl import get_spec
from impl.models.transformer_lm import MultiHeadAttention
from impl.techniques.attention import (
    SinusoidalPositionalEncoding,
    attention_weights,
    causal_mask,
    causal_padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)

# ---------------------------------------------------------------------------------------------
# 002 Q36 as written (only the sizes are passed in: the tiny config's). Names, wiring, the
# position table kept as a plain tensor and the caller-supplied mask are the seed's.


class CurriculumMultiHeadAttentionQ36(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads

        self.q_linear = nn.Linear(d_model, d_model)
        self.k_linear = nn.Linear(d_model, d_model)
        self.v_linear = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, q, k, v, mask=None):
        batch_size = q.size(0)

        q = self.q_linear(q).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_linear(k).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_linear(v).view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)

        if mask is not None:
            scores = scores.masked_fill(mask == 0, float("-inf"))

        attention = torch.softmax(scores, dim=-1)
        out = torch.matmul(attention, v)

        out = out.transpose(1, 2).contiguous().view(batch_size, -1, self.d_model)
        return self.out(out)


class CurriculumTransformerBlockQ36(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.attention = CurriculumMultiHeadAttentionQ36(d_model, num_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        attention = self.attention(x, x, x, mask)
        x = self.norm1(x + self.dropout(attention))

        ff = self.feed_forward(x)
        x = self.norm2(x + self.dropout(ff))
        return x


class CurriculumTransformerQ36(nn.Module):
    def __init__(
        self,
        d_model=32,  # the seed: 512, 8, 6, 2048, 100, 5000; here the tiny config's sizes
        num_heads=4,
        num_layers=2,
        d_ff=64,
        max_seq_length=12,
        vocab_size=256,
    ):
        super().__init__()

        self.embedding = nn.Embedding(vocab_size, d_model)
        self.pos_encoding = self.create_positional_encoding(max_seq_length, d_model)

        self.transformer_blocks = nn.ModuleList(
            [CurriculumTransformerBlockQ36(d_model, num_heads, d_ff) for _ in range(num_layers)]
        )

        self.fc = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(0.1)

    def create_positional_encoding(self, max_seq_length, d_model):
        pos_encoding = torch.zeros(max_seq_length, d_model)
        position = torch.arange(0, max_seq_length, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))

        pos_encoding[:, 0::2] = torch.sin(position * div_term)
        pos_encoding[:, 1::2] = torch.cos(position * div_term)
        return pos_encoding.unsqueeze(0)

    def forward(self, x, mask=None):
        seq_length = x.size(1)

        x = self.embedding(x)
        x = x + self.pos_encoding[:, :seq_length, :].to(x.device)
        x = self.dropout(x)

        for transformer in self.transformer_blocks:
            x = transformer(x, mask)

        output = self.fc(x)
        return output


# ---------------------------------------------------------------------------------------------
# 002 Q41 as written: v1 (fused qkv, 8 heads, one Dropout used twice) and v2 ("perplexity":
# one head, no output projection).


class CurriculumSelfAttentionQ41v1(nn.Module):
    def __init__(self, embed_dim, num_heads=8, dropout=0.0):
        super().__init__()
        assert embed_dim % num_heads == 0, "embed_dim 必須能被 num_heads 整除"

        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5

        self.qkv = nn.Linear(embed_dim, embed_dim * 3)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        batch_size, seq_len, embed_dim = x.shape

        qkv = self.qkv(x)
        qkv = qkv.reshape(batch_size, seq_len, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]

        attn = (q @ k.transpose(-2, -1)) * self.scale

        if mask is not None:
            attn = attn.masked_fill(mask == 0, float("-inf"))

        attn = F.softmax(attn, dim=-1)
        attn = self.dropout(attn)

        x = (attn @ v).transpose(1, 2)
        x = x.reshape(batch_size, seq_len, embed_dim)

        x = self.proj(x)
        x = self.dropout(x)

        return x


class CurriculumSelfAttentionQ41v2(nn.Module):
    def __init__(self, input_dim):
        super().__init__()
        self.input_dim = input_dim

        self.query = nn.Linear(input_dim, input_dim)
        self.key = nn.Linear(input_dim, input_dim)
        self.value = nn.Linear(input_dim, input_dim)

        self.softmax = nn.Softmax(dim=2)

    def forward(self, x):
        queries = self.query(x)
        keys = self.key(x)
        values = self.value(x)

        scores = torch.bmm(queries, keys.transpose(1, 2))

        scores = scores / (self.input_dim**0.5)

        attention = self.softmax(scores)

        weighted = torch.bmm(attention, values)

        return weighted


# ---------------------------------------------------------------------------------------------

LM = "transformer_lm_scratch"
PAD = 0


def _ours_lm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_spec(LM).create("tiny").eval()


@functools.cache
def _shared_lm() -> nn.Module:
    """One model for the examples of a hypothesis test, built once (each test sets its mode)."""
    return _ours_lm()


def _seed_lm_with_our_weights(ours: nn.Module) -> CurriculumTransformerQ36:
    """The seed's class with our tiny model's weights (its names are ours, bar the buffer)."""
    seed = CurriculumTransformerQ36().eval()
    result = seed.load_state_dict(ours.state_dict(), strict=False)
    assert result.unexpected_keys == ["pos_encoding"] and not result.missing_keys
    return seed


def _seed_mask(ids: torch.Tensor) -> torch.Tensor:
    """The mask a user of the seed would build: causal, and no attention to pad keys."""
    length = ids.shape[1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))  # (T, T)
    return (causal.unsqueeze(0) & (ids != PAD).unsqueeze(1)).unsqueeze(1)  # (B, 1, T, T)


def test_attention_sdp_q36_seed_weights_compute_our_function_on_right_padded_text() -> None:
    """Faithful reproduction: with the same weights, and the causal + padding mask a careful user
    would pass, the seed's network computes ours wherever a sample has a real first token."""
    ours = _ours_lm()
    seed = _seed_lm_with_our_weights(ours)
    ids = get_spec(LM).inputs(get_spec(LM).config("tiny"), 6, seed=3)[0]
    with torch.no_grad():
        torch.testing.assert_close(seed(ids, _seed_mask(ids)), ours(ids))


def test_positional_encoding_seed_table_is_missing_from_its_state_dict_ours_round_trips_b52() -> (
    None
):
    """Catalog B52: the seed's sinusoidal table is a plain tensor attribute, not a buffer, so
    its state_dict (what a checkpoint saves) has no position table. Ours registers it: saving
    and loading carries it, so a model whose table was changed (re-sized, trained, converted)
    comes back with the table it was saved with."""
    seed, ours = CurriculumTransformerQ36(), _ours_lm()
    assert not any("pos" in key for key in seed.state_dict())
    assert "pos_encoding" in ours.state_dict()
    torch.testing.assert_close(ours.pos_encoding, seed.pos_encoding, rtol=0, atol=0)

    saved = {key: value.clone() for key, value in ours.state_dict().items()}
    saved["pos_encoding"] = saved["pos_encoding"] * 0.5  # a table unlike the freshly computed one
    fresh = _ours_lm(seed=1)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.pos_encoding, saved["pos_encoding"])
    restored_seed = CurriculumTransformerQ36()
    restored_seed.load_state_dict({k: v for k, v in saved.items() if k != "pos_encoding"})
    assert not torch.equal(restored_seed.pos_encoding, saved["pos_encoding"])  # lost


def test_positional_encoding_seed_table_ignores_model_to_and_ours_follows_it_b52() -> None:
    """Catalog B52 again: not being a buffer, the seed's table stays float32 when the model is
    converted, so ``model.to(torch.bfloat16)`` crashes in the first Linear (a float32 sum meets
    bfloat16 weights). Our buffer converts with the weights."""
    ids = torch.randint(1, 256, (2, 7), generator=torch.Generator().manual_seed(0))
    seed = CurriculumTransformerQ36().eval().to(torch.bfloat16)
    assert seed.pos_encoding.dtype == torch.float32
    with pytest.raises(RuntimeError, match="dtype|scalar type"), torch.no_grad():
        seed(ids)
    ours = _ours_lm().to(torch.bfloat16)
    assert ours.pos_encoding.dtype == torch.bfloat16
    with torch.no_grad():
        out = ours(ids)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_attention_sdp_q36_seed_usage_passes_no_mask_so_the_past_sees_the_future() -> None:
    """The seed's usage line calls ``model(x)``: no mask, so changing the last token changes the
    logits at position 0. Ours builds its causal mask itself."""
    ours = _ours_lm()
    seed = _seed_lm_with_our_weights(ours)
    ids = torch.randint(1, 256, (3, 10), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, -1] = changed[:, -1] % 255 + 1
    with torch.no_grad():
        assert (seed(changed)[:, :-1] - seed(ids)[:, :-1]).abs().max() > 1e-3
        torch.testing.assert_close(ours(changed)[:, :-1], ours(ids)[:, :-1], rtol=0, atol=0)


def test_attention_sdp_fully_masked_query_gives_nan_in_the_seed_and_zero_weights_in_ours() -> None:
    """Catalog attention_sdp: the seed's masked_fill(-inf) + softmax turns a query whose every key
    is masked into NaN. Our core gives it zero weights, as F.scaled_dot_product_attention does."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 32)
    mask = torch.tril(torch.ones(5, 5, dtype=torch.bool)).expand(2, 1, 5, 5).clone()
    mask[0, 0, 2] = False  # query 2 of sample 0 may attend to nothing
    seed_attention = CurriculumMultiHeadAttentionQ36(32, 4)
    with torch.no_grad():
        seed_out = seed_attention(x, x, x, mask)
    assert torch.isnan(seed_out[0, 2]).all() and torch.isfinite(seed_out[1]).all()

    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)
    ours = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(ours).all()
    assert torch.equal(ours[0, :, 2], torch.zeros_like(ours[0, :, 2]))
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param([[5, 6, 7, 0, 0], [0, 0, 0, 0, 0]], id="an-all-pad-sample"),
        pytest.param([[5, 6, 7, 0, 0], [0, 0, 8, 9, 10]], id="a-left-padded-sample"),
    ],
)
def test_attention_sdp_q36_causal_padding_mask_gives_the_seed_nan_and_ours_stays_finite(
    ids,
) -> None:
    """With the causal + padding mask, a query whose visible keys are all padding (every query of
    an empty sample; the first query of a left-padded one) is a fully masked row: NaN, which the
    next layer spreads to the sample's every position (0 weight times NaN is NaN). Ours keeps
    key 0 visible to every query, so no row is ever empty."""
    ids = torch.tensor(ids)
    ours = _ours_lm()
    seed = _seed_lm_with_our_weights(ours)
    with torch.no_grad():
        seed_out = seed(ids, _seed_mask(ids))
        our_out = ours(ids)
    assert torch.isfinite(seed_out[0]).all()
    assert torch.isnan(seed_out[1]).all()
    assert torch.isfinite(our_out).all()


@given(data=st.data())
def test_attention_sdp_q36_ours_gives_no_nan_for_any_token_ids(data: st.DataObject) -> None:
    """Any placement of pad tokens (none, all, left, right, scattered) and any length: no query
    of our mask is empty and every logit is finite, in eval and in training mode."""
    batch = data.draw(st.integers(1, 4), label="batch")
    length = data.draw(st.integers(1, 12), label="length")
    token = st.one_of(st.just(PAD), st.integers(1, 255))
    rows = st.lists(token, min_size=length, max_size=length)
    ids = torch.tensor(data.draw(st.lists(rows, min_size=batch, max_size=batch), label="ids"))
    assert causal_padding_mask(ids, PAD).any(dim=-1).all()
    ours = _shared_lm().eval()
    with torch.no_grad():
        assert torch.isfinite(ours(ids)).all()
        assert torch.isfinite(ours.train()(ids)).all()


@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    queries=st.integers(1, 9),
    keys=st.integers(1, 9),
    head_dim=st.sampled_from([1, 4, 8, 16]),
    seed=st.integers(0, 2**31 - 1),
    masking=st.sampled_from(["none", "causal", "random"]),
)
def test_attention_sdp_our_core_equals_torch_sdpa(
    batch: int, heads: int, queries: int, keys: int, head_dim: int, seed: int, masking: str
) -> None:
    """Catalog attention_sdp: softmax(q k^T / sqrt(D), masked) v is F.scaled_dot_product_attention
    (its default scale, its boolean mask convention: True attends), also with is_causal and with
    masks that leave some query nothing to attend to."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, queries, head_dim, generator=generator)
    k, v = torch.randn(2, batch, heads, keys, head_dim, generator=generator).unbind(0)
    mask = None
    if masking == "causal":
        mask = torch.ones(queries, keys, dtype=torch.bool).tril()
    elif masking == "random":
        mask = torch.rand(batch, 1, queries, keys, generator=generator) > 0.4
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask), expected)
    if masking == "causal":
        causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask), causal)


# ---------------------------------------------------------------------------------------------


def _x(batch: int = 4, length: int = 10, width: int = 64) -> torch.Tensor:
    return torch.randn(batch, length, width, generator=torch.Generator().manual_seed(2))


def test_attention_sdp_q41_v1_seed_and_ours_compute_the_same_attention() -> None:
    """Faithful reproduction: with the same weights and dropout 0, the seed's layer and ours agree,
    without a mask and with the seed's own all-ones (B, heads, T, T) mask."""
    torch.manual_seed(0)
    ours = get_spec("self_attention_mh").create("tiny").eval()
    seed = CurriculumSelfAttentionQ41v1(64, 8).eval()
    seed.load_state_dict(ours.state_dict())
    x = _x()
    mask = torch.ones(4, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed(x))
        torch.testing.assert_close(ours(x, mask), seed(x, mask))


def test_attention_sdp_q41_v1_seed_drops_its_output_too_and_ours_only_the_weights() -> None:
    """The seed reuses its one Dropout on the projected output, so in training mode whole output
    elements are 0 (about p of them); nn.MultiheadAttention, whose function we keep, drops the
    attention weights only, which leaves no output element exactly 0."""
    torch.manual_seed(0)
    p = 0.5
    ours = get_spec("self_attention_mh").create("tiny", dropout=p).train()
    seed = CurriculumSelfAttentionQ41v1(64, 8, dropout=p).train()
    seed.load_state_dict(ours.state_dict())
    reference = get_spec("self_attention_mh").reference(ours).train()
    x = _x()
    zero_fraction = (seed(x) == 0).float().mean().item()
    assert zero_fraction == pytest.approx(p, abs=0.05)
    assert not (ours(x) == 0).any()
    assert not (reference(x) == 0).any()


def test_attention_sdp_q41_v2_scaling_by_sqrt_input_dim_is_sdpas_default_scale() -> None:
    """Dividing by sqrt(input_dim) is F.scaled_dot_product_attention's default scale
    1 / sqrt(q.size(-1)) for one head of width E; and the seed's layer is ours."""
    torch.manual_seed(0)
    ours = get_spec("self_attention_single").create("tiny").eval()
    seed = CurriculumSelfAttentionQ41v2(64).eval()
    seed.load_state_dict(ours.state_dict())
    x = _x()
    with torch.no_grad():
        q, k, v = ours.query(x), ours.key(x), ours.value(x)
        expected = F.scaled_dot_product_attention(q, k, v)  # default scale 64 ** -0.5
        torch.testing.assert_close(ours(x), expected)
        torch.testing.assert_close(seed(x), expected)
        unscaled = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        assert (ours(x) - unscaled).abs().max() > 1e-3  # the scale matters at these sizes


# ---------------------------------------------------------------------------------------------
# attention_sdp: the core's properties


def curriculum_attention_q36(q, k, v, mask=None):
    """The attention core of 002 Q36's ``MultiHeadAttention.forward``, as written (its head split
    and projections left out): masked_fill(mask == 0, -inf), then softmax."""
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    attention = torch.softmax(scores, dim=-1)
    return torch.matmul(attention, v)


shapes = st.tuples(
    st.integers(1, 3),  # batch
    st.integers(1, 3),  # heads
    st.integers(1, 8),  # queries
    st.integers(1, 8),  # keys
    st.sampled_from([1, 4, 8]),  # head width
)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), p_visible=st.sampled_from([0.2, 0.6, 1.0]))
def test_attention_sdp_rows_sum_to_one_and_hidden_keys_get_zero_weight(
    shape: tuple[int, ...], seed: int, p_visible: float
) -> None:
    """Every query's weights are >= 0 and sum to 1 over its visible keys (to 1e-6 in float32),
    hidden keys get exactly 0, and a query that sees no key gets a row of exact zeros."""
    batch, heads, queries, keys, width = shape
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, queries, width, generator=generator)
    k = torch.randn(batch, heads, keys, width, generator=generator)
    mask = torch.rand(batch, 1, queries, keys, generator=generator) < p_visible
    weights = attention_weights(q, k, mask)
    assert weights.shape == (batch, heads, queries, keys)
    assert (weights >= 0).all()
    assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()
    seen = mask.any(dim=-1).expand(batch, heads, queries)
    sums = weights.sum(dim=-1)
    torch.testing.assert_close(sums[seen], torch.ones_like(sums[seen]), rtol=0, atol=1e-6)
    assert (sums[~seen] == 0).all()
    torch.testing.assert_close(attention_weights(q, k).sum(-1), torch.ones(sums.shape))


@given(shape=shapes, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_attention_sdp_causal_output_at_t_ignores_every_key_and_value_after_t(
    shape: tuple[int, ...], seed: int, data: st.DataObject
) -> None:
    """With ``causal_mask``, changing the keys and values at positions > t leaves the outputs at
    positions <= t unchanged, bit for bit; the output at t + 1 does change (it sees them)."""
    batch, heads, length, _, width = shape
    t = data.draw(st.integers(0, length - 1), label="t")
    generator = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, batch, heads, length, width, generator=generator).unbind(0)
    mask = causal_mask(length)
    assert torch.equal(mask, torch.ones(length, length, dtype=torch.bool).tril())
    changed_k, changed_v = k.clone(), v.clone()
    changed_k[..., t + 1 :, :] += 1.0 + torch.rand(changed_k[..., t + 1 :, :].shape)
    changed_v[..., t + 1 :, :] -= 1.0 + torch.rand(changed_v[..., t + 1 :, :].shape)
    before = scaled_dot_product_attention(q, k, v, mask)
    after = scaled_dot_product_attention(q, changed_k, changed_v, mask)
    assert torch.equal(before[..., : t + 1, :], after[..., : t + 1, :])
    if t + 1 < length:
        assert not torch.equal(before[..., t + 1, :], after[..., t + 1, :])


def test_attention_sdp_fully_masked_row_backward_is_finite_where_the_seeds_is_nan() -> None:
    """The guard holds backward too. In the seed's core the NaN weights of a query that sees no
    key reach v's gradient at every key (weights^T times the output's gradient); q and k are
    spared only because masked_fill's backward zeroes the hidden scores, which is all of that
    row. Ours gives finite gradients everywhere and exactly zero to that query."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=generator) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    mask[2] = False  # query 2 sees nothing
    grads = {}
    for name, core in (("seed", curriculum_attention_q36), ("ours", scaled_dot_product_attention)):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        core(*leaves, mask).sum().backward()
        grads[name] = [leaf.grad for leaf in leaves]
    assert torch.isnan(grads["seed"][2]).all()  # dL/dv: NaN at every key
    assert all(torch.isfinite(g).all() for g in grads["ours"])
    assert (grads["ours"][0][:, :, 2] == 0).all()


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled:UserWarning")
@pytest.mark.filterwarnings("ignore:Error detected in:UserWarning")  # the seed's, expected
def test_attention_sdp_a_fully_masked_row_makes_no_nan_even_inside_the_backward_pass() -> None:
    """Zeroing the NaN row after the softmax would already give finite results (masked_fill's
    backward drops the NaN again); ours makes none at all, so anomaly detection, which raises
    when any backward function returns NaN, stays quiet, where the seed's core trips it."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 3, 4, generator=generator) for _ in range(3))
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    mask[1] = False
    with torch.autograd.detect_anomaly(check_nan=True):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        scaled_dot_product_attention(*leaves, mask).sum().backward()
        seed_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        with pytest.raises(RuntimeError, match="returned nan"):
            curriculum_attention_q36(*seed_leaves, mask).sum().backward()


small_shapes = st.tuples(
    st.integers(1, 2), st.integers(1, 2), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)
)


@settings(max_examples=10)
@given(shape=small_shapes, seed=st.integers(0, 2**31 - 1))
def test_attention_sdp_gradient_matches_finite_differences_with_any_mask(
    shape: tuple[int, ...], seed: int
) -> None:
    """float64 gradcheck of q, k and v through random masks, empty rows included, in gradcheck's
    fast mode (random projections of the Jacobian: a few passes instead of one per element; the
    generated gradient checks run the declared case exactly)."""
    batch, heads, queries, keys, width = shape
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, queries, width, generator=generator, dtype=torch.float64)
    k, v = torch.randn(2, batch, heads, keys, width, generator=generator, dtype=torch.float64)
    mask = torch.rand(batch, 1, queries, keys, generator=generator) > 0.5
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(
        lambda *a: scaled_dot_product_attention(*a, mask), inputs, fast_mode=True
    )


@given(
    batch=st.integers(1, 3),
    heads=st.sampled_from([1, 2, 4]),
    queries=st.integers(1, 7),
    keys=st.integers(1, 7),
    causal=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_attention_sdp_multi_head_layer_equals_nn_multiheadattention(
    batch: int, heads: int, queries: int, keys: int, causal: bool, seed: int
) -> None:
    """Our ``MultiHeadAttention`` (the transformer_lm layer) with its q/k/v/out weights copied
    into ``nn.MultiheadAttention(batch_first=True)``: the same outputs for distinct query, key
    and value inputs, unmasked or causal (torch's boolean attn_mask is the complement: True
    blocks)."""
    width = 8
    torch.manual_seed(seed % 10_000)
    ours = MultiHeadAttention(width, heads).eval()
    torch_mha = nn.MultiheadAttention(width, heads, batch_first=True).eval()
    with torch.no_grad():
        projections = (ours.q_linear, ours.k_linear, ours.v_linear)
        torch_mha.in_proj_weight.copy_(torch.cat([m.weight for m in projections]))
        torch_mha.in_proj_bias.copy_(torch.cat([m.bias for m in projections]))
        torch_mha.out_proj.load_state_dict(ours.out.state_dict())
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, queries, width, generator=generator)
    key, value = torch.randn(2, batch, keys, width, generator=generator).unbind(0)
    mask = torch.ones(queries, keys, dtype=torch.bool).tril() if causal else None
    with torch.no_grad():
        expected, _ = torch_mha(
            query, key, value, attn_mask=None if mask is None else ~mask, need_weights=False
        )
        torch.testing.assert_close(ours(query, key, value, mask), expected)


# ---------------------------------------------------------------------------------------------
# positional_encoding


@given(max_len=st.integers(1, 128), half_width=st.integers(1, 32))
def test_positional_encoding_matches_the_closed_form(max_len: int, half_width: int) -> None:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i + 1] = cos(the same), computed here in float64
    with ``math``; the table is float32 (as the seed's), so within 1e-4: float32's relative error
    2^-24 on an angle of at most 128 rad is 1e-5 rad, plus sin's own rounding."""
    d_model = 2 * half_width
    table = sinusoidal_positions(max_len, d_model)
    assert table.shape == (1, max_len, d_model) and table.dtype == torch.float32
    expected = torch.tensor(
        [
            [
                (math.sin if j % 2 == 0 else math.cos)(p / 10000 ** ((j - j % 2) / d_model))
                for j in range(d_model)
            ]
            for p in range(max_len)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(table[0].double(), expected, rtol=0, atol=1e-4)


@given(max_len=st.integers(2, 100), half_width=st.integers(1, 32))
def test_positional_encoding_is_in_minus_one_one_and_unique_per_position(
    max_len: int, half_width: int
) -> None:
    """Values in [-1, 1]; no two positions share an encoding: the smallest distance between two
    rows is at least 0.01 (for d = 2 the rows are (sin p, cos p), whose closest pair below 100 is
    p and p + 44, 44 being 7 turns of 2 pi less 0.018 rad)."""
    table = sinusoidal_positions(max_len, 2 * half_width)[0].double()
    assert table.abs().max() <= 1.0
    distances = torch.cdist(table, table) + torch.eye(max_len) * 10
    assert distances.min() > 0.01


def test_positional_encoding_module_keeps_its_table_in_a_buffer() -> None:
    """The fix of B52 in reusable form: the table is a buffer (in the state_dict, not a
    parameter), ``.to(dtype)`` converts it, and forward adds its first T rows."""
    encoding = SinusoidalPositionalEncoding(10, 6)
    assert list(encoding.state_dict()) == ["pos_encoding"] and list(encoding.parameters()) == []
    x = torch.randn(2, 7, 6)
    torch.testing.assert_close(encoding(x) - x, sinusoidal_positions(10, 6)[:, :7].expand(2, 7, 6))
    assert encoding.to(torch.float64).pos_encoding.dtype == torch.float64
    with pytest.raises(ValueError, match="exceeds the table's 10 positions"):
        encoding(torch.randn(1, 11, 6))
    with pytest.raises(ValueError, match="must be even"):
        sinusoidal_positions(4, 5)


def test_positional_encoding_is_the_table_of_the_language_model() -> None:
    """The model's ``pos_encoding`` buffer is this technique's table at its sizes, bit for bit,
    and the seed's own table too (002 Q36's ``create_positional_encoding``)."""
    cfg = get_spec(LM).config("tiny")
    table = sinusoidal_positions(cfg.max_len, cfg.d_model)
    assert torch.equal(_ours_lm().pos_encoding, table)
    seed = CurriculumTransformerQ36()
    assert torch.equal(seed.create_positional_encoding(cfg.max_len, cfg.d_model), table)
