"""The curriculum's ViT (002 Q38) beside ours (``impl/models/vit.py``; catalog row ``vit``).

The seed's classes are copied as written (renamed ``Seed*``; its ``create_vit_model`` and the
module-level code that builds a second ViT-B on import, catalog B62, left out). Its weights load
into ours and give the same logits; ours differs from torchvision's ViT by the seed's patch
LayerNorm alone; and ours initialises as the seed does.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from impl import count_parameters, get_spec

# ---- 002 Q38, as written ----


class SeedPatchEmbed(nn.Module):
    """將圖像分割成patch並進行線性嵌入"""

    def __init__(self, img_size=224, patch_size=16, in_channels=3, embed_dim=768):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2

        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        B, C, H, W = x.shape
        assert self.img_size[0] == H and self.img_size[1] == W, (
            f"Input image size ({H}*{W}) doesn't match model ({self.img_size[0]}*{self.img_size[1]})."  # noqa: E501
        )

        # (B, C, H, W) -> (B, D, H/P, W/P) -> (B, H/P*W/P, D)
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = self.norm(x)
        return x


class SeedAttention(nn.Module):
    """多頭自注意力機制"""

    def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        assert dim % num_heads == 0, "dim should be divisible by num_heads"
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5

        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = (
            self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv.unbind(0)

        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)

        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class SeedMLP(nn.Module):
    """多層感知機"""

    def __init__(
        self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0
    ):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features

        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x


class SeedBlock(nn.Module):
    """Transformer 編碼器塊"""

    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=False,
        drop=0.0,
        attn_drop=0.0,
        act_layer=nn.GELU,
        norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SeedAttention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = SeedMLP(
            in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer, drop=drop
        )

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class SeedVisionTransformer(nn.Module):
    """Vision Transformer"""

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_channels=3,
        num_classes=1000,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim

        # Patch embedding
        self.patch_embed = SeedPatchEmbed(
            img_size=img_size, patch_size=patch_size, in_channels=in_channels, embed_dim=embed_dim
        )
        num_patches = self.patch_embed.num_patches

        # Class token and position embedding
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)

        # Transformer blocks
        self.blocks = nn.Sequential(
            *[
                SeedBlock(
                    dim=embed_dim,
                    num_heads=num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    norm_layer=norm_layer,
                )
                for _ in range(depth)
            ]
        )

        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

        # Initialize weights
        self.initialize_weights()

    def initialize_weights(self):
        # Initialize patch_embed like nn.Linear (instead of nn.Conv2d)
        w = self.patch_embed.proj.weight.data
        torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))

        # Initialize cls token
        torch.nn.init.normal_(self.cls_token, std=0.02)

        # Initialize position embedding
        torch.nn.init.normal_(self.pos_embed, std=0.02)

        # Initialize all other Linear layers
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x):
        B = x.shape[0]
        x = self.patch_embed(x)

        # Add class token
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)

        # Add position embedding
        x = x + self.pos_embed
        x = self.pos_drop(x)

        # Apply Transformer blocks
        x = self.blocks(x)
        x = self.norm(x)

        return x[:, 0]  # Return class token

    def forward(self, x):
        x = self.forward_features(x)
        x = self.head(x)
        return x


# ---- checks ----

TINY = get_spec("vit").config("tiny")


def _seed_tiny() -> SeedVisionTransformer:
    return SeedVisionTransformer(
        img_size=TINY.image_size,
        patch_size=TINY.patch_size,
        num_classes=TINY.num_classes,
        embed_dim=TINY.embed_dim,
        depth=TINY.depth,
        num_heads=TINY.num_heads,
    )


def test_q38_seed_weights_load_into_ours_and_give_the_same_logits() -> None:
    torch.manual_seed(0)
    seed = _seed_tiny().eval()
    ours = get_spec("vit").create("tiny").eval()
    ours.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(4, 3, TINY.image_size, TINY.image_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed(x))


def test_q38_full_differs_from_torchvisions_vit_b_16_by_the_seeds_patch_layernorm() -> None:
    """The catalog's 86,569,192 against torchvision's 86,567,656 is 1,536 = 2 x 768, the weight and
    bias of one LayerNorm of width 768; at the tiny size, built both ways, the difference is
    again exactly the patch LayerNorm's parameters."""
    assert get_spec("vit").full_params - 86_567_656 == 2 * 768
    ours = get_spec("vit").create("tiny")
    torchvision = TorchvisionViT(
        image_size=TINY.image_size,
        patch_size=TINY.patch_size,
        num_layers=TINY.depth,
        num_heads=TINY.num_heads,
        hidden_dim=TINY.embed_dim,
        mlp_dim=int(TINY.embed_dim * TINY.mlp_ratio),
        num_classes=TINY.num_classes,
    )
    patch_norm = count_parameters(ours.patch_embed.norm)
    assert patch_norm == 2 * TINY.embed_dim
    assert count_parameters(ours) - count_parameters(torchvision) == patch_norm


def test_q38_a_wrong_image_size_is_refused_naming_the_expected_shape() -> None:
    ours = get_spec("vit").create("tiny")
    with pytest.raises(ValueError, match=r"expected input \(B, 3, 16, 16\), got \[1, 3, 32, 32\]"):
        ours(torch.randn(1, 3, 32, 32))
    with pytest.raises(AssertionError, match="doesn't match model"):  # the seed asserts
        _seed_tiny()(torch.randn(1, 3, 32, 32))


def test_q38_initialisation_is_the_seeds() -> None:
    """At the quick size (width 192, 17 tokens): Linear biases 0, LayerNorm 1/0; class token and
    position table N(0, 0.02^2), their sample std within 5 sd of 0.02 (sd of a normal sample's std:
    0.02 / sqrt(2n)); the patch conv drawn Xavier-uniform as the (E, C*P*P) matrix it is, so its
    largest weight is within the 2-D bound sqrt(6 / (C*P*P + E)) and beyond the bound Xavier on
    the 4-D weight would give, sqrt(6 / (C*P*P + E*P*P))."""
    torch.manual_seed(0)
    model = get_spec("vit").create("small")
    cfg = get_spec("vit").config("small")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert (module.bias == 0).all()
        if isinstance(module, nn.LayerNorm):
            assert (module.weight == 1).all() and (module.bias == 0).all()
    for table in (model.cls_token.detach(), model.pos_embed.detach()):
        n = table.numel()
        assert abs(float(table.std()) - 0.02) <= 5 * 0.02 / math.sqrt(2 * n)
    patch = model.patch_embed.proj.weight.detach()
    fan_in = cfg.in_channels * cfg.patch_size**2
    bound_2d = math.sqrt(6 / (fan_in + cfg.embed_dim))
    bound_4d = math.sqrt(6 / (fan_in + cfg.embed_dim * cfg.patch_size**2))
    assert bound_4d < float(patch.abs().max()) <= bound_2d
