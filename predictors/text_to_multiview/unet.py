"""MVDream's UNet in diffusers terms, its scheduler, and the wrapper the sampler calls.

MVDream = SD2.1-base UNet + (a) joint multi-view self-attention (``predictors.diffusion.attention``) and (b) a camera embedding
``Linear(16, 1280) -> SiLU -> Linear(1280, 1280)`` added to the timestep embedding, which is exactly diffusers'
``class_embed_type="projection"`` with ``projection_class_embeddings_input_dim=16``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from predictors.diffusion.attention import MultiViewSelfAttention, install_multiview_attention

CAMERA_DIM = 16

# SD2.1-base's UNet (stabilityai/stable-diffusion-2-1-base unet/config.json) plus the camera embedding.
# ``attention_head_dim`` is diffusers' legacy name for the number of heads (head width 64).
MVDREAM_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "class_embed_type": "projection",
    "projection_class_embeddings_input_dim": CAMERA_DIM,
}

# The original LDM DDIM sampler ("uniform" discretisation: t = 1, 1 + c, ..., c = 1000 // steps, eta 0, final
# alpha = alphas_cumprod[0]) in diffusers terms. Equal for step counts that divide 1000; see ``ldm_step_count``.
MVDREAM_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def build_unet(config: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised ``UNet2DConditionModel`` with ``config`` (e.g. under ``torch.device('meta')``)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def build_scheduler(config: dict[str, Any] = MVDREAM_SCHEDULER_CONFIG) -> Any:
    """The DDIM scheduler that reproduces MVDream's sampler."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(config)


def write_stack(unet_state: dict[str, torch.Tensor], out_dir: Path, config: dict[str, Any]) -> None:
    """Write the ``mvdream-sd21`` layout: ``unet/{config.json, diffusion_pytorch_model.safetensors}`` and
    ``scheduler/scheduler_config.json`` (used by the converter and by the tiny builder alike)."""
    from safetensors.torch import save_file

    unet_dir, scheduler_dir = out_dir / "unet", out_dir / "scheduler"
    unet_dir.mkdir(parents=True, exist_ok=True)
    scheduler_dir.mkdir(parents=True, exist_ok=True)
    (unet_dir / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DConditionModel", **config}, indent=2)
    )
    tensors = {key: value.detach().contiguous() for key, value in unet_state.items()}
    save_file(tensors, str(unet_dir / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    (scheduler_dir / "scheduler_config.json").write_text(json.dumps(MVDREAM_SCHEDULER_CONFIG, indent=2))


def ldm_step_count(steps: int, train_timesteps: int = 1000) -> int:
    """Steps the original LDM sampler runs when asked for ``steps`` (more when ``steps`` does not divide 1000)."""
    stride = train_timesteps // steps
    return len(range(0, train_timesteps, stride))


class MultiViewUNet(torch.nn.Module):
    """A diffusers UNet with MVDream's multi-view self-attention installed on every ``attn1``."""

    def __init__(self, unet: torch.nn.Module, multiview: bool = True) -> None:
        super().__init__()
        self.unet = unet
        self.processor = (
            install_multiview_attention(unet, MultiViewSelfAttention.joint(1)) if multiview else None
        )

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | int,
        context: torch.Tensor,
        cameras: torch.Tensor,
        num_views: int,
    ) -> torch.Tensor:
        """Noise prediction for latents [B * F, 4, h, w] (views of one object consecutive), text context
        [B * F, 77, D] and camera vectors [B * F, 16]."""
        if self.processor is not None:
            self.processor.set_joint(num_views)
        return self.unet(
            latents, timestep, encoder_hidden_states=context, class_labels=cameras.to(latents.dtype)
        ).sample
