"""Loading diffusers / transformers components from installed folders, and decoding latents with their VAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def from_folder(cls, folder: Path, dtype: torch.dtype):
    """``cls.from_pretrained`` offline, with the fp16 weight variant when only that file is installed."""
    files = {path.name for path in folder.glob("*.safetensors")}
    variant = "fp16" if files and all(name.endswith(".fp16.safetensors") for name in files) else None
    return cls.from_pretrained(folder, local_files_only=True, dtype=dtype, variant=variant)


def vae_scale_factor(vae: torch.nn.Module) -> int:
    """Pixels per latent of a diffusers ``AutoencoderKL`` (8 for SD)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def decode_latents(vae: torch.nn.Module, latents: torch.Tensor) -> np.ndarray:
    """Images [N, H, W, 3] float32 in [0, 1] from latents [N, 4, h, w], one image at a time (bounded memory)."""
    dtype = next(vae.parameters()).dtype
    scaled = latents.to(dtype) / vae.config.scaling_factor
    images = torch.cat([vae.decode(one[None]).sample for one in scaled])
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()
