"""``SLatFlowModel``: the sparse DiT that denoises the structured latent (8 channels on active voxels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from extensions.sparse import SparseConv3d, SparseDownsample, SparseTensor, SparseUpsample
from predictors.image_to_3d.trellis.models.dense_blocks import modulation_layer
from predictors.image_to_3d.trellis.models.layers import (
    LayerNorm32,
    TimestepEmbedder,
    absolute_position_embedding,
)
from predictors.image_to_3d.trellis.models.sparse_blocks import ModulatedSparseTransformerCrossBlock
from predictors.image_to_3d.trellis.models.sparse_structure_flow import require_ape


class SparseResBlock3d(nn.Module):
    """Time-modulated residual block of 3^3 sparse convs, optionally halving or doubling the resolution first.

    ``scale, shift = emb_layers(t)`` (scale first); ``norm1`` is affine, ``norm2`` is not.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        downsample: bool = False,
        upsample: bool = False,
    ):
        super().__init__()
        if downsample and upsample:
            raise ValueError("a SparseResBlock3d cannot both downsample and upsample")
        out_channels = out_channels or channels
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, out_channels, 3)
        self.conv2 = SparseConv3d(out_channels, out_channels, 3)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.skip_connection = (
            nn.Linear(channels, out_channels) if channels != out_channels else nn.Identity()
        )
        self.updown = SparseDownsample(2) if downsample else SparseUpsample(2) if upsample else None

    def forward(self, x: SparseTensor, emb: torch.Tensor) -> SparseTensor:
        scale, shift = self.emb_layers(emb).chunk(2, dim=1)
        if self.updown is not None:
            x = self.updown(x)
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        modulated = self.norm2(h.feats) * (1 + x.batch_broadcast(scale)) + x.batch_broadcast(shift)
        h = self.conv2(h.replace(F.silu(modulated)))
        return h.replace(h.feats + self.skip_connection(x.feats))


class SLatFlowModel(nn.Module):
    """Velocity model ``v(x: SparseTensor [N, Cin], t [B] (x1000), cond [B, L, Ccond]) -> SparseTensor``.

    Input res-blocks (the last one downsamples by 2 per ``io_block_channels`` stage) feed the transformer;
    output res-blocks upsample again, each taking the matching input-block features as a skip.
    ``use_fp16`` and ``use_checkpoint`` are accepted for config compatibility.
    """

    def __init__(
        self,
        resolution: int,
        in_channels: int,
        model_channels: int,
        cond_channels: int,
        out_channels: int,
        num_blocks: int,
        num_heads: int | None = None,
        num_head_channels: int = 64,
        mlp_ratio: float = 4,
        patch_size: int = 2,
        num_io_res_blocks: int = 2,
        io_block_channels: list[int] | None = None,
        pe_mode: str = "ape",
        use_fp16: bool = False,
        use_checkpoint: bool = False,
        use_skip_connection: bool = True,
        share_mod: bool = False,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
    ):
        super().__init__()
        require_ape(pe_mode)
        if io_block_channels is not None and 2 ** len(io_block_channels) != patch_size:
            raise ValueError(
                f"patch_size ({patch_size}) must be 2 ** len(io_block_channels) ({len(io_block_channels)})"
            )
        self.resolution = resolution
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.use_skip_connection = use_skip_connection
        self.share_mod = share_mod
        num_heads = num_heads or model_channels // num_head_channels
        io_channels = io_block_channels or []

        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = modulation_layer(model_channels)
        self.input_layer = nn.Linear(in_channels, io_channels[0] if io_channels else model_channels)
        self.input_blocks = nn.ModuleList()
        for chs, next_chs in zip(io_channels, [*io_channels[1:], model_channels], strict=True):
            self.input_blocks.extend(
                SparseResBlock3d(chs, model_channels, out_channels=chs) for _ in range(num_io_res_blocks - 1)
            )
            self.input_blocks.append(
                SparseResBlock3d(chs, model_channels, out_channels=next_chs, downsample=True)
            )
        self.blocks = nn.ModuleList(
            ModulatedSparseTransformerCrossBlock(
                model_channels,
                cond_channels,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                share_mod=share_mod,
                qk_rms_norm=qk_rms_norm,
                qk_rms_norm_cross=qk_rms_norm_cross,
            )
            for _ in range(num_blocks)
        )
        skip_factor = 2 if use_skip_connection else 1
        self.out_blocks = nn.ModuleList()
        for chs, prev_chs in zip(
            reversed(io_channels), [model_channels, *reversed(io_channels[1:])], strict=True
        ):
            self.out_blocks.append(
                SparseResBlock3d(prev_chs * skip_factor, model_channels, out_channels=chs, upsample=True)
            )
            self.out_blocks.extend(
                SparseResBlock3d(chs * skip_factor, model_channels, out_channels=chs)
                for _ in range(num_io_res_blocks - 1)
            )
        self.out_layer = nn.Linear(io_channels[0] if io_channels else model_channels, out_channels)

    def forward(self, x: SparseTensor, t: torch.Tensor, cond: torch.Tensor) -> SparseTensor:
        dtype = self.input_layer.weight.dtype
        h = x.replace(self.input_layer(x.feats.to(dtype)))
        emb = self.t_embedder(t)
        if self.share_mod:
            emb = self.adaLN_modulation(emb)
        cond = cond.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h.feats)
        h = h.replace(h.feats + absolute_position_embedding(h.coords[:, 1:], self.model_channels).to(dtype))
        for block in self.blocks:
            h = block(h, emb, cond)
        for block, skip in zip(self.out_blocks, reversed(skips), strict=False):
            h = block(h.replace(torch.cat([h.feats, skip], dim=1)) if self.use_skip_connection else h, emb)
        feats = F.layer_norm(h.feats.float(), h.feats.shape[-1:]).to(dtype)
        return h.replace(self.out_layer(feats).to(x.feats.dtype))
