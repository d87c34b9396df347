"""MVDream sampling: prompt encoding, DDIM with classifier-free guidance over the views, VAE decoding.

Batch layout as in the original sampler (``mvdream/ldm/models/diffusion/ddim.py``): the UNet sees
``[uncond x F, cond x F]`` (the views of one object consecutive in each half), every view gets its own camera
vector and the same timestep, and ``eps = uncond + scale * (cond - uncond)``; DDIM with eta 0. With a guidance
scale of 1 only the conditional half runs, as there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from predictors.diffusion.components import decode_latents, vae_scale_factor
from predictors.runtime import compute_dtype, log
from predictors.text_to_multiview.unet import MultiViewUNet, ldm_step_count

LATENT_CHANNELS = 4
PROGRESS_EVERY = 10  # log every this many denoising steps


@dataclass
class MVDreamModels:
    """The loaded stacks: SD2.1-base tokenizer, text encoder and VAE; MVDream's UNet and scheduler config.

    ``device`` is where they run (they live wherever the placement policy keeps them between runs)."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: MultiViewUNet
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.text_encoder, self.vae, self.unet]


def load_models(mvdream_dir: Path, sd21_dir: Path, device: torch.device) -> MVDreamModels:
    """Load the ``mvdream-sd21`` and ``sd21-base`` diffusers folders (offline) on the CPU, in ``device``'s
    compute dtype."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype = compute_dtype(device)
    tokenizer = CLIPTokenizer.from_pretrained(sd21_dir / "tokenizer", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(
        sd21_dir / "text_encoder", local_files_only=True, dtype=dtype
    )
    vae = AutoencoderKL.from_pretrained(sd21_dir / "vae", local_files_only=True, dtype=dtype)
    unet = UNet2DConditionModel.from_pretrained(mvdream_dir / "unet", local_files_only=True, dtype=dtype)
    scheduler_config = dict(DDIMScheduler.load_config(mvdream_dir / "scheduler", local_files_only=True))
    modules = [module.eval().requires_grad_(False) for module in (text_encoder, vae, unet)]
    return MVDreamModels(
        tokenizer, modules[0], modules[1], MultiViewUNet(modules[2]), scheduler_config, device, dtype
    )


def initial_latents(
    models: MVDreamModels, num_views: int, image_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian latents [F, 4, s, s] drawn on the CPU from ``generator`` (same seed -> same noise on any device)."""
    side = image_size // vae_scale_factor(models.vae)
    noise = torch.randn((num_views, LATENT_CHANNELS, side, side), generator=generator, dtype=torch.float32)
    return noise.to(models.device, models.dtype)


@torch.no_grad()
def denoise(
    models: MVDreamModels,
    latents: torch.Tensor,
    text: torch.Tensor,
    cameras: torch.Tensor,
    *,
    steps: int,
    guidance_scale: float,
    progress: Callable[[str], None] = log,
) -> torch.Tensor:
    """Run DDIM (eta 0) from ``latents`` [F, 4, s, s] of one object.

    Args:
        text: embeddings [2, 77, D] of (negative prompt, prompt).
        cameras: MVDream camera vectors [F, 16].
    """
    from diffusers import DDIMScheduler

    num_views = latents.shape[0]
    scheduler = DDIMScheduler.from_config(models.scheduler_config)
    scheduler.set_timesteps(steps, device=models.device)
    if ldm_step_count(steps) != steps:
        progress(
            f"note: {steps} steps do not divide 1000; the original MVDream sampler would run "
            f"{ldm_step_count(steps)} steps on a different grid (50, 25, 20, ... match it exactly)"
        )
    guided = guidance_scale != 1.0
    halves = [0, 1] if guided else [1]
    context = torch.cat([text[index : index + 1].expand(num_views, -1, -1) for index in halves]).to(
        models.dtype
    )
    camera_batch = cameras.to(models.device, models.dtype).repeat(len(halves), 1)
    for index, timestep in enumerate(scheduler.timesteps):
        model_input = latents.repeat(len(halves), 1, 1, 1)
        eps = models.unet(model_input, timestep, context, camera_batch, num_views)
        if guided:
            eps_uncond, eps_cond = eps.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        latents = scheduler.step(eps, timestep, latents, eta=0.0).prev_sample
        if (index + 1) % PROGRESS_EVERY == 0 or index + 1 == len(scheduler.timesteps):
            progress(f"denoise: step {index + 1}/{len(scheduler.timesteps)} (t={int(timestep)})")
    return latents


def decode(models: MVDreamModels, latents: torch.Tensor) -> np.ndarray:
    """Views [F, H, W, 3] float32 in [0, 1] from latents."""
    return decode_latents(models.vae, latents)
