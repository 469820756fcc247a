"""Latent-diffusion cross-attention blocks used inside the UNet: CrossAttention, GEGLU FeedForward,
BasicTransformerBlock and SpatialTransformer, with LDM's module names (attn1/attn2/ff/norm1..3, proj_in/proj_out)."""

import torch
import torch.nn.functional as F
from torch import nn

# GroupNorm groups everywhere in the UNet: the original used 8 so that 8-channel levels can be normalised.
NORM_GROUPS = 8


class CrossAttention(nn.Module):
    """Multi-head attention of `heads` x `head_dim` from queries [B, N, query_dim] to a context [B, M, context_dim].

    Without a context it is self-attention. Uses torch's scaled_dot_product_attention: softmax(Q K^T / sqrt(d)) V.
    """

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner_dim = heads * head_dim
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.heads, -1).transpose(1, 2)  # [B, heads, tokens, head_dim]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = (self._split_heads(t) for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.to_out(out)


class GEGLU(nn.Module):
    """Gated GELU (Shazeer 2020): one projection to 2 x dim_out, the second half gates the first through GELU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with a hidden width of 4 x dim (LDM's gated variant)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention, cross-attention to the context, feed-forward; each residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, dropout: float = 0.0):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, head_dim, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, heads, head_dim, context_dim=context_dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context=context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """LDM's SpatialTransformer: GroupNorm, 1x1 conv in, `depth` transformer blocks over the h*w cells, 1x1 conv out,
    added to the input. Head width is channels // heads (so inner width = heads * (channels // heads))."""

    def __init__(self, channels: int, heads: int, depth: int, context_dim: int, dropout: float = 0.0):
        super().__init__()
        head_dim = channels // heads
        if head_dim < 1:
            raise ValueError(f"SpatialTransformer with {channels} channels cannot have {heads} heads (head width 0)")
        inner_dim = heads * head_dim
        self.norm = nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, heads, head_dim, context_dim, dropout) for _ in range(depth)]
        )
        self.proj_out = nn.Conv2d(inner_dim, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        h = self.proj_in(self.norm(x))
        h = h.flatten(2).transpose(1, 2)  # [B, h*w, inner], cells in row-major order
        for block in self.transformer_blocks:
            h = block(h, context)
        h = h.transpose(1, 2).reshape(batch, -1, height, width)
        return x + self.proj_out(h)
