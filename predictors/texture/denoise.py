"""The SyncMVD denoising loop over N views of one mesh: ControlNet-conditioned UNet with classifier-free
guidance, multi-view self-attention, texture-space steps while syncing, background compositing.

Schedule (SyncMVD's defaults, with its defects fixed): progress p = 1 - t / T_train. Sync while
p < ``sync_end``; reference attention while p < ``reference_end``; backgrounds: a random colour per view
while p < ``colour_background_end``, black or white while p < ``background_freeze``, then frozen. The
ControlNet scale goes linearly from ``controlnet_scale`` to ``controlnet_scale_end`` over
[``control_start``, ``control_end``] of the progress (0 outside). Every random draw comes from ``generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from predictors.diffusion.attention import MultiViewSelfAttention
from predictors.runtime import log
from predictors.texture.sync import (
    UVProjection,
    composite_background,
    exponent_schedule,
    sample_prediction_twin,
    synced_step,
)

BLACK_AND_WHITE = 2  # the first two background colour latents are black and white


@dataclass(frozen=True)
class Schedule:
    """SyncMVD's defaults (``src/configs.py``)."""

    guidance_scale: float = 15.5
    controlnet_scale: float = 0.7
    controlnet_scale_end: float = 0.9
    control_start: float = 0.0
    control_end: float = 0.99
    sync_end: float = 0.8
    reference_end: float = 0.2
    exponent_start: float = 0.0
    exponent_end: float = 6.0
    colour_background_end: float = 0.4
    background_freeze: float = 0.8

    def controlnet_weight(self, progress: float) -> float:
        """ControlNet scale at ``progress``: ramps from ``controlnet_scale`` to ``controlnet_scale_end``."""
        if not self.control_start <= progress <= self.control_end:
            return 0.0
        span = max(self.control_end - self.control_start, 1e-8)
        ramp = (progress - self.control_start) / span
        return self.controlnet_scale + (self.controlnet_scale_end - self.controlnet_scale) * ramp


@dataclass
class Conditioning:
    """What the networks see besides the latents, for a batch of 2N rows (N negative-prompt views, then N
    positive ones): text embeddings, extra UNet / ControlNet conditioning (SDXL pooled text and size ids,
    IP-Adapter image embeddings: tensors or lists of tensors batched like ``text``) and the N condition images."""

    text: torch.Tensor  # [2N, L, D]
    images: torch.Tensor  # [N, 3, H, W] in [0, 1]
    unet_added: dict[str, Any] = field(default_factory=dict)
    controlnet_added: dict[str, Any] = field(default_factory=dict)

    def rows(self, half: int | None) -> Conditioning:
        """The whole batch (None) or one guidance half (0 negative, 1 positive)."""
        if half is None:
            return self
        views = self.images.shape[0]
        return Conditioning(
            _rows(self.text, half, views),
            self.images,
            {key: _rows(value, half, views) for key, value in self.unet_added.items()},
            {key: _rows(value, half, views) for key, value in self.controlnet_added.items()},
        )


def _rows(value: Any, half: int, views: int) -> Any:
    if isinstance(value, list | tuple):
        return [_rows(item, half, views) for item in value]
    return value[half * views : (half + 1) * views]


def denoise_views(
    unet: torch.nn.Module,
    controlnet: torch.nn.Module,
    scheduler,
    projection: UVProjection,
    attention: MultiViewSelfAttention,
    conditioning: Conditioning,
    colour_latents: torch.Tensor,
    generator: torch.Generator,
    schedule: Schedule,
    split_guidance: bool = False,
) -> torch.Tensor:
    """Denoise N views; returns their latents [N, 4, h, w].

    Args:
        scheduler: a diffusers scheduler with ``set_timesteps`` already called.
        colour_latents: [K, 4] latents of flat background colours (0 black, 1 white).
        split_guidance: run the negative and positive halves as two network batches of N (half the
            activation memory, same result). Also switched on by itself when CUDA runs out of memory.
    """
    views, size, device = projection.num_views, projection.view_size, conditioning.text.device
    train_steps = scheduler.config.num_train_timesteps
    twin = sample_prediction_twin(scheduler)
    masks = projection.masks.to(device)
    guide = GuidedModel(unet, controlnet, conditioning, schedule, split_guidance)

    # Start: the foreground is the rendered noise texture, the background independent noise per view.
    texture = torch.randn(4, projection.texture_size, projection.texture_size, generator=generator).to(device)
    initial = torch.randn(views, 4, size, size, generator=generator).to(device)
    latents = torch.where(masks[:, None], projection.render(texture), initial) * scheduler.init_noise_sigma
    background = _pick_backgrounds(colour_latents, views, generator, black_white=False)

    timesteps = scheduler.timesteps
    for index, timestep in enumerate(timesteps):
        t = int(timestep)
        progress = 1.0 - t / train_steps
        attention.reference_weight = 1.0 if progress < schedule.reference_end else 0.0
        output = guide(scheduler.scale_model_input(latents, t), t, progress)
        syncing = progress < schedule.sync_end
        if syncing:
            exponent = exponent_schedule(
                index, len(timesteps), schedule.exponent_start, schedule.exponent_end
            )
            rendered, texture = synced_step(
                scheduler, twin, projection, output, t, latents, texture, exponent, generator
            )
            if progress < schedule.background_freeze:
                black_white = progress >= schedule.colour_background_end
                background = _pick_backgrounds(colour_latents, views, generator, black_white)
            previous = int(scheduler.previous_timestep(t)) if hasattr(scheduler, "previous_timestep") else -1
            noise = torch.randn(views, 4, size, size, generator=generator).to(device)
            latents = composite_background(
                rendered, masks, background, noise, scheduler, previous if previous >= 0 else None
            )
        else:
            latents = scheduler.step(output, timestep, latents, generator=generator).prev_sample
    return latents


class GuidedModel:
    """Classifier-free guided ControlNet + UNet output for N views. The 2N rows run as one batch, or as
    two batches of N (``split``): the multi-view attention never mixes the halves, so both give the same
    output, and the split needs about half the activation memory."""

    def __init__(self, unet, controlnet, conditioning: Conditioning, schedule: Schedule, split: bool) -> None:
        self.unet, self.controlnet, self.conditioning, self.schedule = (
            unet,
            controlnet,
            conditioning,
            schedule,
        )
        self.split = split
        self.dtype = next(unet.parameters()).dtype

    def __call__(self, latents: torch.Tensor, t: int, progress: float) -> torch.Tensor:
        weight = self.schedule.controlnet_weight(progress)
        if not self.split:
            try:
                both = self._output(torch.cat([latents, latents]), t, weight, self.conditioning)
                negative, positive = both.chunk(2)
                return negative + self.schedule.guidance_scale * (positive - negative)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                log("texture: out of GPU memory with both guidance halves in one batch; splitting them")
                self.split = True
        negative = self._output(latents, t, weight, self.conditioning.rows(0))
        positive = self._output(latents, t, weight, self.conditioning.rows(1))
        return negative + self.schedule.guidance_scale * (positive - negative)

    def _output(
        self, latents: torch.Tensor, t: int, weight: float, conditioning: Conditioning
    ) -> torch.Tensor:
        model_input = latents.to(self.dtype)
        text = conditioning.text.to(self.dtype)
        copies = model_input.shape[0] // conditioning.images.shape[0]
        residuals = {}
        if weight > 0:
            down, mid = self.controlnet(
                model_input,
                t,
                encoder_hidden_states=text,
                controlnet_cond=torch.cat([conditioning.images] * copies).to(self.dtype),
                conditioning_scale=weight,
                added_cond_kwargs=conditioning.controlnet_added or None,
                return_dict=False,
            )
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        added = {"added_cond_kwargs": conditioning.unet_added} if conditioning.unet_added else {}
        return self.unet(model_input, t, encoder_hidden_states=text, **residuals, **added).sample.float()


def _pick_backgrounds(
    colour_latents: torch.Tensor, views: int, generator: torch.Generator, black_white: bool
) -> torch.Tensor:
    """Per-view background latents [N, 4, 1, 1]: random colours, or black/white only."""
    choices = BLACK_AND_WHITE if black_white else colour_latents.shape[0]
    picks = torch.randint(0, choices, (views,), generator=generator)
    return colour_latents[picks.to(colour_latents.device)][:, :, None, None]
