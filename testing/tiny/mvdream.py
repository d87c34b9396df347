"""Tiny random stacks in the official layouts of ``mvdream-sd21`` and ``sd21-base``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from predictors.text_to_multiview.unet import CAMERA_DIM, MVDREAM_UNET_CONFIG, build_unet, write_stack
from testing.tiny.sd_components import TINY_CONTEXT_DIM, write_tiny_sd_components

# Same structure as MVDREAM_UNET_CONFIG (projection camera embedding, linear projections), two levels,
# 32/64 channels, head width 8.
TINY_UNET_CONFIG: dict[str, Any] = {
    **MVDREAM_UNET_CONFIG,
    "sample_size": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": TINY_CONTEXT_DIM,
    "attention_head_dim": [4, 8],
    "norm_num_groups": 8,
    "projection_class_embeddings_input_dim": CAMERA_DIM,
}
# A few byte-pair merges so that the tiny tokenizer exercises merging ("3d asset" appears in every prompt).
TINY_MERGES = ["a s", "as s", "ass e", "asse t</w>", "3 d</w>"]


def build_tiny_mvdream(folder: Path, seed: int) -> None:
    """``mvdream-sd21``: ``unet/`` (tiny config, random weights) and ``scheduler/``, as the converter writes."""
    torch.manual_seed(seed)
    write_stack(build_unet(TINY_UNET_CONFIG).state_dict(), folder, TINY_UNET_CONFIG)


def build_tiny_sd21_base(folder: Path, seed: int) -> None:
    """``sd21-base``: ``tokenizer/`` (byte-level BPE files), ``text_encoder/`` and ``vae/`` with tiny configs."""
    write_tiny_sd_components(folder, seed, merges=TINY_MERGES, pad_token="!", hidden_act="gelu")
