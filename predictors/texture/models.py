"""SD1.5 + ControlNet stacks for texturing: offline loading from diffusers folders, prompt encoding, VAE work.

Stack layout (diffusers, as on the hub): ``<weights>/sd15/{tokenizer,text_encoder,vae,unet,scheduler}`` and one
``<weights>/controlnet-sd15-<condition>/`` folder (config.json + diffusion_pytorch_model.safetensors) per
condition. The scheduler is DDPM (SyncMVD samples with DDPM) built from the stack's scheduler config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from predictors.runtime import compute_dtype, log
from predictors.texture.conditions import CONDITIONS

BASE_STACK = "sd15"
CONTROLNET_STACKS = {condition: f"controlnet-sd15-{condition}" for condition in CONDITIONS}
# SyncMVD's background colours (black and white first: the late steps pick only those), sRGB 0-255.
BACKGROUND_COLOURS = (
    (0, 0, 0),
    (255, 255, 255),
    (128, 0, 0),
    (255, 0, 0),
    (128, 128, 0),
    (255, 255, 0),
    (0, 128, 0),
    (0, 255, 0),
    (0, 128, 128),
    (0, 255, 255),
    (0, 0, 128),
    (0, 0, 255),
    (128, 0, 128),
    (255, 0, 255),
)
COLOUR_IMAGE_SIZE = 64  # flat colour images encoded once; their mean latent is the background latent


@dataclass
class TextureModels:
    """The loaded SD1.5 stack, the installed ControlNets (by condition) and the background colour latents."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    controlnets: dict[str, torch.nn.Module]
    scheduler_config: dict[str, Any]
    colour_latents: torch.Tensor  # [K, 4] float32
    device: torch.device
    dtype: torch.dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def controlnet(self, condition: str) -> torch.nn.Module:
        """The ControlNet of ``condition``; ValueError naming the stack to install when it is absent."""
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; allowed: {', '.join(CONDITIONS)}")
        if condition not in self.controlnets:
            stack = CONTROLNET_STACKS[condition]
            raise ValueError(
                f"condition {condition!r} needs the {stack} weights, which are not installed; install them with "
                f"`python -m weights.download {stack} --unpinned` (installed: {', '.join(self.controlnets)})"
            )
        return self.controlnets[condition]

    def new_scheduler(self):
        """A fresh DDPM scheduler from the stack's configuration."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)


def load_models(weights_dir: Path, device: torch.device) -> TextureModels:
    """Load ``sd15`` and every installed ``controlnet-sd15-*`` folder (offline) onto ``device``."""
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextModel, CLIPTokenizer

    diffusers_logging.set_verbosity_error()  # one "accelerate not found" warning per model otherwise
    dtype = compute_dtype(device)
    base = weights_dir / BASE_STACK
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", local_files_only=True, dtype=dtype)
    vae = AutoencoderKL.from_pretrained(base / "vae", local_files_only=True, dtype=dtype)
    unet = UNet2DConditionModel.from_pretrained(base / "unet", local_files_only=True, dtype=dtype)
    scheduler_config = dict(DDPMScheduler.load_config(base / "scheduler", local_files_only=True))
    controlnets = {}
    for condition, stack in CONTROLNET_STACKS.items():
        if (weights_dir / stack / "config.json").is_file():
            controlnets[condition] = ControlNetModel.from_pretrained(
                weights_dir / stack, local_files_only=True, dtype=dtype
            )
    log(f"texture: ControlNets installed for {', '.join(controlnets) or 'no condition'}")
    for module in (text_encoder, vae, unet, *controlnets.values()):
        module.to(device).eval().requires_grad_(False)
    colours = encode_colours(vae, device, dtype)
    return TextureModels(
        tokenizer, text_encoder, vae, unet, controlnets, scheduler_config, colours, device, dtype
    )


@torch.no_grad()
def encode_colours(vae: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Latents [K, 4] of the flat background colours (the VAE posterior mean, spatially averaged)."""
    colours = torch.tensor(BACKGROUND_COLOURS, dtype=torch.float32) / 127.5 - 1.0
    images = colours[:, :, None, None].expand(-1, -1, COLOUR_IMAGE_SIZE, COLOUR_IMAGE_SIZE)
    # fp32 would be safer for the VAE, but the weights live in ``dtype``; encode one colour at a time.
    latents = [vae.encode(image[None].to(device, dtype)).latent_dist.mean for image in images]
    return (torch.cat(latents).float().mean(dim=(2, 3)) * vae.config.scaling_factor).cpu()


@torch.no_grad()
def decode_views(models: TextureModels, latents: torch.Tensor) -> np.ndarray:
    """Views [N, H, W, 3] float32 in [0, 1] from latents [N, 4, h, w], one view at a time."""
    scaled = latents.to(models.dtype) / models.vae.config.scaling_factor
    images = torch.cat([models.vae.decode(one[None]).sample for one in scaled])
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()
