"""The SyncMVD denoising loop over N views of one mesh: ControlNet-conditioned UNet with classifier-free
guidance, multi-view self-attention, texture-space steps while syncing, background compositing.

Schedule (SyncMVD's defaults, with its defects fixed): progress p = 1 - t / T_train. Sync while
p < ``sync_end``; reference attention while p < ``reference_end``; backgrounds: a random colour per view
while p < ``colour_background_end``, black or white while p < ``background_freeze``, then frozen. The
ControlNet scale goes linearly from ``controlnet_scale`` to ``controlnet_scale_end`` over
[``control_start``, ``control_end``] of the progress (0 outside). Every random draw comes from ``generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from predictors.texture.attention import MultiViewSelfAttention
from predictors.texture.sync import (
    UVProjection,
    composite_background,
    exponent_schedule,
    sample_prediction_twin,
    synced_step,
)

BLACK, WHITE = 0, 1  # indices of black and white in the background colour latents


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


def denoise_views(
    unet: torch.nn.Module,
    controlnet: torch.nn.Module,
    scheduler,
    projection: UVProjection,
    attention: MultiViewSelfAttention,
    text: torch.Tensor,
    conditions: torch.Tensor,
    colour_latents: torch.Tensor,
    generator: torch.Generator,
    schedule: Schedule,
    extra_conditioning: dict | None = None,
) -> torch.Tensor:
    """Denoise N views; returns their latents [N, 4, h, w].

    Args:
        scheduler: a diffusers scheduler with ``set_timesteps`` already called.
        text: per-view prompt embeddings [2N, L, D]: negative prompts of the N views, then positive ones.
        conditions: ControlNet images [N, 3, H, W] in [0, 1].
        colour_latents: [K, 4] latents of flat background colours (0 black, 1 white).
        extra_conditioning: ``added_cond_kwargs`` for the UNet (e.g. IP-Adapter ``image_embeds``), for 2N.
    """
    views, size, device = projection.num_views, projection.view_size, text.device
    dtype = next(unet.parameters()).dtype
    train_steps = scheduler.config.num_train_timesteps
    twin = sample_prediction_twin(scheduler)
    masks = projection.masks.to(device)

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
        output = _guided_output(
            unet,
            controlnet,
            scheduler,
            latents,
            t,
            text,
            conditions,
            schedule,
            progress,
            dtype,
            extra_conditioning,
        )
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


def _pick_backgrounds(
    colour_latents: torch.Tensor, views: int, generator: torch.Generator, black_white: bool
) -> torch.Tensor:
    """Per-view background latents [N, 4, 1, 1]: random colours, or black/white only."""
    choices = 2 if black_white else colour_latents.shape[0]
    picks = torch.randint(0, choices, (views,), generator=generator)
    return colour_latents[picks.to(colour_latents.device)][:, :, None, None]


def _guided_output(
    unet, controlnet, scheduler, latents, t, text, conditions, schedule, progress, dtype, extra
) -> torch.Tensor:
    """Classifier-free guided model output for the views (negative and positive halves in one batch)."""
    model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t).to(dtype)
    kwargs = {"added_cond_kwargs": extra} if extra else {}
    weight = schedule.controlnet_weight(progress)
    residuals = {}
    if weight > 0:
        down, mid = controlnet(
            model_input,
            t,
            encoder_hidden_states=text.to(dtype),
            controlnet_cond=torch.cat([conditions, conditions]).to(dtype),
            conditioning_scale=weight,
            return_dict=False,
        )
        residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    output = unet(model_input, t, encoder_hidden_states=text.to(dtype), **residuals, **kwargs).sample
    negative, positive = output.float().chunk(2)
    return negative + schedule.guidance_scale * (positive - negative)
