"""Image conditioning of TRELLIS v1: DINOv2 ViT-L/14 with registers, all tokens, non-affine layer norm.

The hub model's ``x_prenorm`` (tokens before its final norm) equals ``hidden_states[-1]`` of transformers'
``Dinov2WithRegistersModel``; the weights folder is in transformers' layout (e.g.
``facebook/dinov2-with-registers-large``, or converted from the hub ``.pth`` with ``weights/convert_dinov2.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_SIZE = 518
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def images_to_tensor(images: list[Image.Image], size: int = IMAGE_SIZE) -> torch.Tensor:
    """RGB images resized to ``size``^2 with Lanczos, as a ``[B, 3, size, size]`` float tensor in [0, 1]."""
    arrays = [
        np.asarray(image.convert("RGB").resize((size, size), Image.LANCZOS), dtype=np.float32)
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays) / 255.0).permute(0, 3, 1, 2).float().contiguous()


def normalize_imagenet(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [0, 1] -> ImageNet-normalised pixels."""
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels - mean) / std


class DinoV2Conditioner:
    """Encodes images into TRELLIS conditioning tokens ``[B, 1 + registers + patches, C]`` (1374 x 1024 at 518 px)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()

    @classmethod
    def from_folder(
        cls, folder: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> DinoV2Conditioner:
        """Load a transformers-layout ``Dinov2WithRegistersModel`` folder (``config.json`` + safetensors)."""
        from transformers import Dinov2WithRegistersModel

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"DINOv2 folder {folder} has no config.json (expected transformers layout)"
            )
        model = Dinov2WithRegistersModel.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
        return cls(model.to(device))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode(self, images: list[Image.Image] | torch.Tensor) -> torch.Tensor:
        """PIL images (resized to 518^2) or a ``[B, 3, H, W]`` tensor in [0, 1] -> float32 tokens."""
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"image tensor must be [B, 3, H, W], got {list(images.shape)}")
            pixels = images
        else:
            pixels = images_to_tensor(list(images))
        dtype = next(self.model.parameters()).dtype
        pixels = normalize_imagenet(pixels.to(self.device, torch.float32)).to(dtype)
        tokens = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1].float()
        return F.layer_norm(tokens, tokens.shape[-1:])

    def conditions(self, images: list[Image.Image] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cond, neg_cond)``: the image tokens and zeros of the same shape."""
        cond = self.encode(images)
        return cond, torch.zeros_like(cond)
