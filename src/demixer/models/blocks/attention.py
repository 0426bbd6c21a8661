"""Pre-norm transformer blocks with rotary position embeddings and gated heads.

Module and parameter names follow the ``bs-roformer`` package (0.3.x), whose layout the
community's BS-/Mel-RoFormer checkpoints use, so their state dicts load unchanged. Attention
runs on ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """``x / ||x|| * sqrt(dim) * gamma`` over the last axis."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) on interleaved pairs of features.

    ``freqs`` is stored as a frozen parameter, as the reference implementation does, so that
    checkpoints carry it.

    Shape:
        ``rotate``: ``[..., N, D]`` -> ``[..., N, D]`` (positions along ``N``).
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def rotate(self, x: Tensor) -> Tensor:
        n = x.shape[-2]
        angles = torch.arange(n, device=x.device, dtype=self.freqs.dtype)[:, None] * self.freqs  # [N, D/2]
        angles = angles.repeat_interleave(2, dim=-1)  # [N, D]: each angle for a pair
        pairs = rearrange(x, "... (d r) -> ... d r", r=2)
        rotated = rearrange(torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1), "... d r -> ... (d r)")
        return (x * angles.cos() + rotated * angles.sin()).type(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with a sigmoid gate per head.

    Shape:
        ``forward``: ``[B, N, dim]`` -> ``[B, N, dim]``.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        rotary_embed: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.rotary_embed = rotary_embed
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        q, k, v = rearrange(self.to_qkv(x), "b n (qkv h d) -> qkv b h n d", qkv=3, h=self.heads)
        if self.rotary_embed is not None:
            q, k = self.rotary_embed.rotate(q), self.rotary_embed.rotate(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        out = out * rearrange(self.to_gates(x), "b n h -> b h n 1").sigmoid()
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    """Pre-norm MLP: RMSNorm, Linear, GELU, Linear.

    Shape:
        ``forward``: ``[..., dim]`` -> ``[..., dim]``.
    """

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(
            RMSNorm(dim),
            nn.Linear(dim, inner),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(inner, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """``depth`` residual (attention, feed-forward) pairs, optionally followed by an RMSNorm.

    Shape:
        ``forward``: ``[B, N, dim]`` -> ``[B, N, dim]``.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        ff_mult: int = 4,
        norm_output: bool = True,
        rotary_embed: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [Attention(dim, heads, dim_head, attn_dropout, rotary_embed), FeedForward(dim, ff_mult, ff_dropout)]
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            attn, ff = cast(nn.ModuleList, layer)
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)
