"""``SLatMeshDecoder``: swin transformer over the structured latent, two 2x subdivisions, 101-channel head.

The output channels per voxel at 4x resolution are, in order: sdf 0:8, deform 8:32, FlexiCubes weights
32:53, colour and normal 53:101 (8 corners x 6). Mesh extraction from them is a separate step.
"""

from __future__ import annotations

from torch import nn

from extensions.sparse import SparseConv3d, SparseGroupNorm32, SparseSiLU, SparseSubdivide, SparseTensor
from predictors.image_to_3d.trellis.models.layers import absolute_position_embedding
from predictors.image_to_3d.trellis.models.sparse_blocks import SparseTransformerBlock
from predictors.image_to_3d.trellis.models.sparse_structure_flow import require_ape

# FlexiCubes features per voxel: 8 sdf + 8x3 deform + 21 weights (+ 8x6 colour/normal with use_color).
MESH_CHANNELS = 8 + 24 + 21
COLOR_CHANNELS = 48


class SparseTransformerBase(nn.Module):
    """``input_layer`` + absolute position embedding, then transformer blocks (swin: shift every other block)."""

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        num_blocks: int,
        num_heads: int | None = None,
        num_head_channels: int = 64,
        mlp_ratio: float = 4.0,
        attn_mode: str = "full",
        window_size: int | None = None,
        pe_mode: str = "ape",
        qk_rms_norm: bool = False,
    ):
        super().__init__()
        require_ape(pe_mode)
        if attn_mode not in ("full", "swin"):
            raise ValueError(f"attn_mode {attn_mode!r} is not supported; implemented: 'full', 'swin'")
        self.model_channels = model_channels
        num_heads = num_heads or model_channels // num_head_channels
        self.input_layer = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList(
            SparseTransformerBlock(
                model_channels,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                attn_mode="windowed" if attn_mode == "swin" else "full",
                window_size=window_size if attn_mode == "swin" else None,
                shift_window=window_size // 2 * (i % 2) if attn_mode == "swin" else 0,
                qk_rms_norm=qk_rms_norm,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        dtype = self.input_layer.weight.dtype
        feats = self.input_layer(x.feats.to(dtype))
        h = x.replace(feats + absolute_position_embedding(x.coords[:, 1:], self.model_channels).to(dtype))
        for block in self.blocks:
            h = block(h)
        return h


class SparseSubdivideBlock3d(nn.Module):
    """GroupNorm + SiLU, subdivide each voxel into 8 children, then two 3^3 convs; a 1^3 conv skip."""

    def __init__(self, channels: int, out_channels: int | None = None, num_groups: int = 32):
        super().__init__()
        out_channels = out_channels or channels
        self.act_layers = nn.Sequential(SparseGroupNorm32(num_groups, channels), SparseSiLU())
        self.sub = SparseSubdivide()
        self.out_layers = nn.Sequential(
            SparseConv3d(channels, out_channels, 3),
            SparseGroupNorm32(num_groups, out_channels),
            SparseSiLU(),
            SparseConv3d(out_channels, out_channels, 3),
        )
        self.skip_connection = (
            SparseConv3d(channels, out_channels, 1) if out_channels != channels else nn.Identity()
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        h = self.out_layers(self.sub(self.act_layers(x)))
        return h + self.skip_connection(self.sub(x))


class SLatMeshDecoder(SparseTransformerBase):
    """Structured latent ``[N, 8]`` at ``resolution`` -> FlexiCubes features ``[N', 101]`` at 4x resolution.

    ``use_fp16`` and ``use_checkpoint`` are accepted for config compatibility.
    """

    def __init__(
        self,
        resolution: int,
        model_channels: int,
        latent_channels: int,
        num_blocks: int,
        num_heads: int | None = None,
        num_head_channels: int = 64,
        mlp_ratio: float = 4,
        attn_mode: str = "swin",
        window_size: int = 8,
        pe_mode: str = "ape",
        use_fp16: bool = False,
        use_checkpoint: bool = False,
        qk_rms_norm: bool = False,
        representation_config: dict | None = None,
    ):
        super().__init__(
            in_channels=latent_channels,
            model_channels=model_channels,
            num_blocks=num_blocks,
            num_heads=num_heads,
            num_head_channels=num_head_channels,
            mlp_ratio=mlp_ratio,
            attn_mode=attn_mode,
            window_size=window_size,
            pe_mode=pe_mode,
            qk_rms_norm=qk_rms_norm,
        )
        self.resolution = resolution
        self.use_color = bool((representation_config or {}).get("use_color", False))
        self.out_channels = MESH_CHANNELS + (COLOR_CHANNELS if self.use_color else 0)
        self.upsample = nn.ModuleList(
            [
                SparseSubdivideBlock3d(model_channels, out_channels=model_channels // 4),
                SparseSubdivideBlock3d(model_channels // 4, out_channels=model_channels // 8),
            ]
        )
        self.out_layer = nn.Linear(model_channels // 8, self.out_channels)

    def forward(self, x: SparseTensor) -> SparseTensor:
        h = super().forward(x)
        for block in self.upsample:
            h = block(h)
        return h.replace(self.out_layer(h.feats).to(x.feats.dtype))
