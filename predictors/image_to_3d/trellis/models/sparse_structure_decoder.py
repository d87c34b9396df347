"""``SparseStructureDecoder``: dense 3D conv VAE decoder, latent 16^3 x 8 -> occupancy logits 64^3."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from predictors.image_to_3d.trellis.models.layers import ChannelLayerNorm32, GroupNorm32, pixel_shuffle_3d


def norm_layer(norm_type: str, channels: int) -> nn.Module:
    """Affine channel LayerNorm (eps 1e-5) or 32-group GroupNorm, both computed in float32."""
    if norm_type == "layer":
        return ChannelLayerNorm32(channels)
    if norm_type == "group":
        return GroupNorm32(32, channels)
    raise ValueError(f"norm_type must be 'layer' or 'group', got {norm_type!r}")


class ResBlock3d(nn.Module):
    """norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus a 1^3 conv skip when channels change."""

    def __init__(self, channels: int, out_channels: int | None = None, norm_type: str = "layer"):
        super().__init__()
        out_channels = out_channels or channels
        self.norm1 = norm_layer(norm_type, channels)
        self.norm2 = norm_layer(norm_type, out_channels)
        self.conv1 = nn.Conv3d(channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.skip_connection = (
            nn.Conv3d(channels, out_channels, 1) if channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip_connection(x)


class UpsampleBlock3d(nn.Module):
    """Conv3d(C -> 8 C') then a 3D pixel shuffle to twice the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels * 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.conv(x), 2)


class SparseStructureDecoder(nn.Module):
    """input conv -> middle res-blocks -> (res-blocks, upsample) per stage -> norm, SiLU, conv.

    As in the official code, ``norm_type`` applies to the output norm only; res-blocks use LayerNorm.
    ``use_fp16`` is accepted for config compatibility; the dtype is chosen at load time.
    """

    def __init__(
        self,
        out_channels: int,
        latent_channels: int,
        num_res_blocks: int,
        channels: list[int],
        num_res_blocks_middle: int = 2,
        norm_type: str = "layer",
        use_fp16: bool = False,
    ):
        super().__init__()
        self.input_layer = nn.Conv3d(latent_channels, channels[0], 3, padding=1)
        self.middle_block = nn.Sequential(*[ResBlock3d(channels[0]) for _ in range(num_res_blocks_middle)])
        self.blocks = nn.ModuleList()
        for i, ch in enumerate(channels):
            self.blocks.extend(ResBlock3d(ch) for _ in range(num_res_blocks))
            if i < len(channels) - 1:
                self.blocks.append(UpsampleBlock3d(ch, channels[i + 1]))
        self.out_layer = nn.Sequential(
            norm_layer(norm_type, channels[-1]),
            nn.SiLU(),
            nn.Conv3d(channels[-1], out_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, latent, R, R, R]`` -> ``[B, out, 4R, 4R, 4R]`` logits (for three stages)."""
        h = self.input_layer(x.to(self.input_layer.weight.dtype))
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h).to(x.dtype)
