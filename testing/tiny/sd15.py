"""Tiny random stacks in the diffusers layouts of ``sd15`` and ``controlnet-sd15-{depth,normal,canny}``.

The tiny UNet has ``sample_size`` 8 (SD1.5: 64), so the task's views are 12 latents (96 px) wide.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from testing.tiny.sd_components import SPECIAL_TOKENS, TINY_CONTEXT_DIM, write_tiny_sd_components

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": TINY_CONTEXT_DIM,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
# SD1.5's scheduler settings (the official folder holds a PNDM config with these betas).
SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
TINY_MERGES = ["v i", "vi e", "vie w</w>"]


def build_tiny_sd15(folder: Path, seed: int) -> None:
    """``sd15``: tokenizer, text encoder, VAE, UNet and scheduler folders with tiny random models."""
    write_tiny_sd_components(
        folder, seed, merges=TINY_MERGES, pad_token=SPECIAL_TOKENS["eos_token"], hidden_act="quick_gelu"
    )
    _tiny_unet(seed + 2).save_pretrained(folder / "unet")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))


def build_tiny_controlnet(folder: Path, seed: int) -> None:
    """``controlnet-sd15-*``: a ControlNet shaped for the tiny UNet (8x conditioning downsampling)."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed + 3)
    controlnet = ControlNetModel.from_unet(
        _tiny_unet(seed + 2), conditioning_embedding_out_channels=(8, 8, 8, 8)
    )
    controlnet.save_pretrained(folder)


def _tiny_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_UNET_CONFIG)
