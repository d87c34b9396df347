"""Transformer blocks on sparse voxel tensors: full or windowed self-attention, dense cross-attention.

Parameter names match TRELLIS's sparse modules; the per-voxel layers act on ``x.feats`` directly.
"""

from __future__ import annotations

import torch
from torch import nn

from extensions.sparse import (
    SparseTensor,
    sparse_scaled_dot_product_attention,
    sparse_windowed_scaled_dot_product_self_attention,
)
from predictors.image_to_3d.trellis.models.attention import MultiHeadAttention
from predictors.image_to_3d.trellis.models.dense_blocks import modulation_layer
from predictors.image_to_3d.trellis.models.layers import FeedForwardNet, LayerNorm32


class SparseMultiHeadAttention(MultiHeadAttention):
    """``MultiHeadAttention`` over the voxels of a ``SparseTensor`` (per batch element).

    Self-attention is ``"full"`` or ``"windowed"`` (cubic windows of ``window_size`` shifted by
    ``shift_window``); cross-attention attends to a dense context ``[B, L, Cctx]``.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        ctx_channels: int | None = None,
        kind: str = "self",
        attn_mode: str = "full",
        window_size: int | None = None,
        shift_window: int = 0,
        qkv_bias: bool = True,
        qk_rms_norm: bool = False,
    ):
        super().__init__(channels, num_heads, ctx_channels, kind, qkv_bias, qk_rms_norm)
        if attn_mode not in ("full", "windowed") or (
            attn_mode == "windowed" and (kind != "self" or not window_size)
        ):
            raise ValueError(
                f"attn_mode must be 'full', or 'windowed' (self-attention with a window_size); got {attn_mode!r}"
            )
        self.attn_mode = attn_mode
        self.window_size = window_size
        self.shift_window = shift_window

    def forward(self, x: SparseTensor, context: torch.Tensor | None = None) -> SparseTensor:
        q, k, v = self.project(x.feats, context)
        if self.kind == "cross":
            h = sparse_scaled_dot_product_attention(x.replace(q), k, v)
        elif self.attn_mode == "windowed":
            qkv = x.replace(torch.stack([q, k, v], dim=1))
            h = sparse_windowed_scaled_dot_product_self_attention(qkv, self.window_size, self.shift_window)
        else:
            h = sparse_scaled_dot_product_attention(x.replace(torch.stack([q, k, v], dim=1)))
        return x.replace(self.to_out(h.feats.flatten(-2)))


class SparseTransformerBlock(nn.Module):
    """``x += attn(norm1 x)``; ``x += mlp(norm2 x)`` with non-affine norms (the SLat VAE blocks)."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        attn_mode: str = "full",
        window_size: int | None = None,
        shift_window: int = 0,
        qk_rms_norm: bool = False,
        qkv_bias: bool = True,
    ):
        super().__init__()
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.attn = SparseMultiHeadAttention(
            channels,
            num_heads,
            attn_mode=attn_mode,
            window_size=window_size,
            shift_window=shift_window,
            qkv_bias=qkv_bias,
            qk_rms_norm=qk_rms_norm,
        )
        self.mlp = FeedForwardNet(channels, mlp_ratio)

    def forward(self, x: SparseTensor) -> SparseTensor:
        feats = x.feats + self.attn(x.replace(self.norm1(x.feats))).feats
        return x.replace(feats + self.mlp(self.norm2(feats)))


class ModulatedSparseTransformerCrossBlock(nn.Module):
    """Sparse twin of ``ModulatedTransformerCrossBlock`` (full self-attention over each sample's voxels)."""

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
        self.self_attn = SparseMultiHeadAttention(
            channels, num_heads, qkv_bias=qkv_bias, qk_rms_norm=qk_rms_norm
        )
        self.cross_attn = SparseMultiHeadAttention(
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

    def forward(self, x: SparseTensor, mod: torch.Tensor, context: torch.Tensor) -> SparseTensor:
        """``x [N, C]`` voxels, ``mod [B, C]`` (``[B, 6C]`` when shared), ``context [B, L, Cctx]``."""
        params = x.batch_broadcast(mod if self.share_mod else self.adaLN_modulation(mod))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = params.chunk(6, dim=-1)
        feats = x.feats
        h = self.self_attn(x.replace(self.norm1(feats) * (1 + scale_msa) + shift_msa)).feats
        feats = feats + gate_msa * h
        feats = feats + self.cross_attn(x.replace(self.norm2(feats)), context).feats
        h = self.mlp(self.norm3(feats) * (1 + scale_mlp) + shift_mlp)
        return x.replace(feats + gate_mlp * h)
