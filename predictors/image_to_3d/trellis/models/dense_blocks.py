"""The dense DiT block of the sparse-structure flow: adaLN-modulated self-attention, cross-attention, MLP."""

from __future__ import annotations

import torch
from torch import nn

from predictors.image_to_3d.trellis.models.attention import MultiHeadAttention
from predictors.image_to_3d.trellis.models.layers import FeedForwardNet, LayerNorm32


def modulation_layer(channels: int) -> nn.Sequential:
    """``adaLN_modulation``: SiLU -> Linear(C, 6C), chunks (shift, scale, gate) for attention then MLP."""
    return nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))


class ModulatedTransformerCrossBlock(nn.Module):
    """``x += gate*attn(mod(norm1 x))``; ``x += cross(norm2 x, ctx)``; ``x += gate*mlp(mod(norm3 x))``.

    Only ``norm2`` (before cross-attention) has affine parameters.
    """

    def __init__(
        self,
        channels: int,
        ctx_channels: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        share_mod: bool = False,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
        qkv_bias: bool = True,
    ):
        super().__init__()
        self.share_mod = share_mod
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = MultiHeadAttention(
            channels, num_heads, kind="self", qkv_bias=qkv_bias, qk_rms_norm=qk_rms_norm
        )
        self.cross_attn = MultiHeadAttention(
            channels,
            num_heads,
            ctx_channels=ctx_channels,
            kind="cross",
            qkv_bias=qkv_bias,
            qk_rms_norm=qk_rms_norm_cross,
        )
        self.mlp = FeedForwardNet(channels, mlp_ratio)
        if not share_mod:
            self.adaLN_modulation = modulation_layer(channels)

    def forward(self, x: torch.Tensor, mod: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x [B, L, C]``, ``mod [B, C]`` (``[B, 6C]`` when shared), ``context [B, Lc, Cc]``."""
        params = mod if self.share_mod else self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = params.unsqueeze(1).chunk(6, dim=-1)
        x = x + gate_msa * self.self_attn(self.norm1(x) * (1 + scale_msa) + shift_msa)
        x = x + self.cross_attn(self.norm2(x), context)
        return x + gate_mlp * self.mlp(self.norm3(x) * (1 + scale_mlp) + shift_mlp)
