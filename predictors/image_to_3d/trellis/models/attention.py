"""Dense multi-head self/cross attention with optional per-head RMS norm of queries and keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from predictors.image_to_3d.trellis.models.layers import MultiHeadRMSNorm


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention on ``[B, L, H, D]`` tensors (keys/values ``[B, Lk, H, D]``)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """Self (``to_qkv``) or cross (``to_q`` + ``to_kv``) attention followed by ``to_out``.

    Projected channels are grouped as (q | k | v), then by head, then head dimension.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        ctx_channels: int | None = None,
        kind: str = "self",
        qkv_bias: bool = True,
        qk_rms_norm: bool = False,
    ):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be a multiple of num_heads ({num_heads})")
        if kind not in ("self", "cross"):
            raise ValueError(f"attention kind must be 'self' or 'cross', got {kind!r}")
        self.num_heads = num_heads
        self.kind = kind
        self.qk_rms_norm = qk_rms_norm
        head_dim = channels // num_heads
        if kind == "self":
            self.to_qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        else:
            self.to_q = nn.Linear(channels, channels, bias=qkv_bias)
            self.to_kv = nn.Linear(ctx_channels or channels, 2 * channels, bias=qkv_bias)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Queries, keys and values as ``[..., L, H, D]``; leading dims of ``x`` are kept."""
        heads = self.num_heads
        if self.kind == "self":
            q, k, v = self.to_qkv(x).unflatten(-1, (3, heads, -1)).unbind(-3)
        else:
            if context is None:
                raise ValueError("cross attention needs a context tensor")
            q = self.to_q(x).unflatten(-1, (heads, -1))
            k, v = self.to_kv(context).unflatten(-1, (2, heads, -1)).unbind(-3)
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        return q, k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.project(x, context)
        return self.to_out(dense_attention(q, k, v).flatten(-2))
