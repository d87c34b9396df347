"""``SparseStructureFlowModel``: the dense DiT that denoises the 16^3 x 8 sparse-structure latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from predictors.image_to_3d.trellis.models.dense_blocks import (
    ModulatedTransformerCrossBlock,
    modulation_layer,
)
from predictors.image_to_3d.trellis.models.layers import (
    TimestepEmbedder,
    absolute_position_embedding,
    patchify,
    unpatchify,
)


def require_ape(pe_mode: str) -> None:
    """Image-large uses absolute position embeddings only."""
    if pe_mode != "ape":
        raise ValueError(f"pe_mode {pe_mode!r} is not supported; only 'ape' (absolute) is implemented")


class SparseStructureFlowModel(nn.Module):
    """Velocity model ``v(x [B, Cin, R, R, R], t [B] (x1000), cond [B, L, Ccond])``.

    ``use_fp16`` and ``use_checkpoint`` are accepted for config compatibility; the dtype is chosen at
    load time and checkpointing is a training feature.
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
        pe_mode: str = "ape",
        use_fp16: bool = False,
        use_checkpoint: bool = False,
        share_mod: bool = False,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
    ):
        super().__init__()
        require_ape(pe_mode)
        self.resolution = resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.patch_size = patch_size
        self.share_mod = share_mod
        num_heads = num_heads or model_channels // num_head_channels
        grid = resolution // patch_size

        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = modulation_layer(model_channels)
        axes = torch.meshgrid(*[torch.arange(grid)] * 3, indexing="ij")
        positions = torch.stack(axes, dim=-1).reshape(-1, 3)
        self.register_buffer("pos_emb", absolute_position_embedding(positions, model_channels))
        self.input_layer = nn.Linear(in_channels * patch_size**3, model_channels)
        self.blocks = nn.ModuleList(
            ModulatedTransformerCrossBlock(
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
        self.out_layer = nn.Linear(model_channels, out_channels * patch_size**3)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, *[self.resolution] * 3)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected input of shape [B, {', '.join(map(str, expected))}], got {list(x.shape)}"
            )
        dtype = self.input_layer.weight.dtype
        tokens = patchify(x, self.patch_size).flatten(2).transpose(1, 2)
        h = self.input_layer(tokens.to(dtype)) + self.pos_emb.to(dtype)
        mod = self.t_embedder(t)
        if self.share_mod:
            mod = self.adaLN_modulation(mod)
        cond = cond.to(dtype)
        for block in self.blocks:
            h = block(h, mod, cond)
        h = self.out_layer(F.layer_norm(h.float(), h.shape[-1:]).to(dtype))
        grid = self.resolution // self.patch_size
        h = h.transpose(1, 2).reshape(h.shape[0], -1, grid, grid, grid)
        return unpatchify(h, self.patch_size).to(x.dtype)
