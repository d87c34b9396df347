"""Faithfulness of the texture denoising loop: with ONE view, syncing off, a constant ControlNet scale and the
ControlNet active on every step, ``denoise_views`` must reproduce diffusers' own pipelines
(``StableDiffusionControlNetPipeline``, ``StableDiffusionXLControlNetPipeline``) step for step.

Both sides share the tiny stacks loaded through our loader (ControlNet, text embeddings, scheduler config,
image-prompt embeddings). Our side runs the stack's UNet as the task leaves it (IP-Adapter installed, at scale 0
without an image prompt, SyncMVD's multi-view self-attention on every ``attn1``); the pipeline gets a UNet that
diffusers loads from the same folder (plus ``load_ip_adapter`` for the image-prompt case), with its own
processors. The tiny ControlNets' zero convolutions are randomised so that the ControlNet path matters.

Random stream: ``denoise_views`` draws the texture noise, the view noise and a background pick, then only
``scheduler.step`` variance noise. The pipeline gets our initial latents and a generator in the state ours
has after those first draws, so both consume the same step noises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from predictors.diffusion.attention import (
    MultiViewSelfAttention,
    install_multiview_attention,
    neighbour_views,
    reference_view,
)
from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.projection_atlas import projection_atlas
from predictors.placement import Placement
from predictors.texture.denoise import Conditioning, Schedule, denoise_views
from predictors.texture.ip_adapter import ADAPTER_FILES, IP_ADAPTER_STACK
from predictors.texture.models import TextureModels, load_models
from predictors.texture.sync import UVProjection, build_projection

PROMPT, NEGATIVE = "a weathered bronze statue", "blurry, low quality"
STEPS = 4
GUIDANCE = 7.5
CONTROLNET_SCALE = 0.8
IMAGE_PROMPT_SCALE = 0.5
SEED = 1234
ATOL = 1e-5
AZIMUTHS, ELEVATIONS = [0.0], [0.0]  # one front view


@dataclass
class Run:
    """One single-view denoising problem, identical for both sides."""

    family: str
    text: torch.Tensor  # [2, L, D]: negative, positive
    added: dict  # SDXL pooled text and time ids (empty for SD1.5)
    control: torch.Tensor  # [1, 3, H, W] in [0, 1]
    projection: UVProjection
    image: Image.Image | None

    @property
    def view_pixels(self) -> int:
        return int(self.control.shape[-1])


@pytest.fixture(scope="module")
def models(tiny_weights) -> TextureModels:
    device = torch.device("cpu")
    models = load_models(tiny_weights, device, Placement(device))
    assert models.dtype == torch.float32
    generator = torch.Generator().manual_seed(7)
    for family in models.controlnets.values():
        for controlnet in family.values():
            _randomise_zero_convolutions(controlnet, generator)
    return models


def _randomise_zero_convolutions(controlnet: torch.nn.Module, generator: torch.Generator) -> None:
    """ControlNet's output convolutions start at zero (so its residuals are 0): give them random weights."""
    convolutions = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    with torch.no_grad():
        for conv in convolutions:
            conv.weight.copy_(0.3 * torch.randn(conv.weight.shape, generator=generator))
            conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=generator))


@pytest.fixture(scope="module")
def box() -> Mesh:
    shape = trimesh.creation.box(extents=[1.2, 1.0, 0.8])
    return projection_atlas(Mesh(np.asarray(shape.vertices), np.asarray(shape.faces)), texture_size=64)


def _problem(models: TextureModels, box: Mesh, family: str, image: Image.Image | None) -> Run:
    stack = models.base(family)
    view_pixels = stack.view_pixels
    text, added = stack.encode_text([NEGATIVE, PROMPT], models.device)
    control = torch.rand(1, 3, view_pixels, view_pixels, generator=torch.Generator().manual_seed(3))
    projection = build_projection(
        box, orbit_cameras(AZIMUTHS, ELEVATIONS), stack.view_latents, stack.texture_latents
    )
    return Run(family, text, added, control, projection, image)


def _prompt_image() -> Image.Image:
    pixels = np.random.default_rng(5).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _schedule(controlnet_scale: float) -> Schedule:
    """No syncing (every step a plain scheduler step), a constant ControlNet scale over the whole run and
    reference attention on every step (with one view it is the view's own self-attention)."""
    return Schedule(
        guidance_scale=GUIDANCE,
        controlnet_scale=controlnet_scale,
        controlnet_scale_end=controlnet_scale,
        control_start=0.0,
        control_end=1.0,
        sync_end=0.0,
        reference_end=1.0,
    )


@torch.no_grad()
def _ours(models: TextureModels, run: Run, controlnet_scale: float = CONTROLNET_SCALE) -> torch.Tensor:
    """Final latents of ``denoise_views``, set up as the texture task's ``_generate`` does."""
    stack = models.base(run.family)
    controlnet = models.controlnet(stack.family, "depth")
    image_added = models.image_conditioning(stack, run.image, IMAGE_PROMPT_SCALE, views=1)
    conditioning = Conditioning(run.text, run.control, {**run.added, **image_added}, run.added)
    attention = install_multiview_attention(
        stack.unet,
        MultiViewSelfAttention(neighbour_views(AZIMUTHS, ELEVATIONS), [reference_view(AZIMUTHS, ELEVATIONS)]),
    )
    scheduler = stack.new_scheduler()
    scheduler.set_timesteps(STEPS)
    return denoise_views(
        stack.unet,
        controlnet,
        scheduler,
        run.projection,
        attention,
        conditioning,
        models.colour_latents(stack),
        torch.Generator().manual_seed(SEED),
        _schedule(controlnet_scale),
    )


def _start(models: TextureModels, run: Run) -> tuple[torch.Tensor, torch.Generator]:
    """Our initial latents (before the scheduler's init sigma) and a generator in the state ``denoise_views``'
    generator has after its initial draws: texture noise, view noise, background pick."""
    stack, projection = models.base(run.family), run.projection
    generator = torch.Generator().manual_seed(SEED)
    texture = torch.randn(4, projection.texture_size, projection.texture_size, generator=generator)
    noise = torch.randn(1, 4, projection.view_size, projection.view_size, generator=generator)
    latents = torch.where(projection.masks[:, None], projection.render(texture), noise)
    torch.randint(0, models.colour_latents(stack).shape[0], (1,), generator=generator)
    follower = torch.Generator()
    follower.set_state(generator.get_state())
    return latents, follower


def _pipeline_unet(tiny_weights: Path, family: str) -> torch.nn.Module:
    """The UNet as diffusers loads it from the stack folder (diffusers' own attention processors)."""
    from diffusers import UNet2DConditionModel

    folder = tiny_weights / ("sd15" if family == "sd15" else "sdxl-base") / "unet"
    variant = "fp16" if any(folder.glob("*.fp16.safetensors")) else None
    unet = UNet2DConditionModel.from_pretrained(
        folder, local_files_only=True, dtype=torch.float32, variant=variant
    )
    return unet.eval().requires_grad_(False)


@torch.no_grad()
def _diffusers(models: TextureModels, tiny_weights: Path, run: Run) -> torch.Tensor:
    """Final latents of diffusers' ControlNet pipeline on the same problem."""
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline

    stack = models.base(run.family)
    common = {
        "vae": stack.vae,
        "unet": _pipeline_unet(tiny_weights, run.family),
        "controlnet": models.controlnet(stack.family, "depth"),
        "scheduler": stack.new_scheduler(),
        "feature_extractor": None,
        "image_encoder": None,
    }
    if run.family == "sd15":
        pipe = StableDiffusionControlNetPipeline(
            text_encoder=stack.text_encoders[0],
            tokenizer=stack.tokenizers[0],
            safety_checker=None,
            requires_safety_checker=False,
            **common,
        )
    else:
        pipe = StableDiffusionXLControlNetPipeline(
            text_encoder=stack.text_encoders[0],
            text_encoder_2=stack.text_encoders[1],
            tokenizer=stack.tokenizers[0],
            tokenizer_2=stack.tokenizers[1],
            add_watermarker=False,
            **common,
        )
    pipe.set_progress_bar_config(disable=True)
    height = width = run.view_pixels
    # The pipeline's control-image preprocessing is the identity for a [1, 3, H, W] tensor in [0, 1].
    assert torch.equal(
        pipe.control_image_processor.preprocess(run.control, height=height, width=width), run.control
    )

    extra = {}
    if run.image is not None:  # diffusers' own adapter loading, then our image embeddings
        subfolder, weight_name = ADAPTER_FILES[run.family].split("/")
        pipe.load_ip_adapter(
            str(tiny_weights / IP_ADAPTER_STACK),
            subfolder=subfolder,
            weight_name=weight_name,
            image_encoder_folder=None,
            local_files_only=True,
        )
        pipe.set_ip_adapter_scale(IMAGE_PROMPT_SCALE)
        embeds = models.image_conditioning(stack, run.image, IMAGE_PROMPT_SCALE, views=1)["image_embeds"]
        extra["ip_adapter_image_embeds"] = embeds
    if run.family == "sdxl":
        pooled = run.added["text_embeds"]
        extra |= {
            "pooled_prompt_embeds": pooled[1:],
            "negative_pooled_prompt_embeds": pooled[:1],
            "original_size": (height, width),
            "target_size": (height, width),
        }
    latents, generator = _start(models, run)
    return pipe(
        prompt_embeds=run.text[1:],
        negative_prompt_embeds=run.text[:1],
        image=run.control,
        height=height,
        width=width,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        controlnet_conditioning_scale=CONTROLNET_SCALE,
        control_guidance_start=0.0,
        control_guidance_end=1.0,
        latents=latents,
        generator=generator,
        output_type="latent",
        **extra,
    ).images


def _assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0.0)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_single_view_loop_is_the_controlnet_pipeline(models, tiny_weights, box, family):
    run = _problem(models, box, family, image=None)
    ours = _ours(models, run)
    _assert_same(ours, _diffusers(models, tiny_weights, run))
    # the ControlNet path matters: without it the result is far from the pipeline's
    assert (ours - _ours(models, run, controlnet_scale=0.0)).abs().max() > 1e-2


def test_single_view_loop_with_image_prompt_is_the_pipeline_with_ip_adapter(models, tiny_weights, box):
    run = _problem(models, box, "sd15", image=_prompt_image())
    ours = _ours(models, run)
    _assert_same(ours, _diffusers(models, tiny_weights, run))
    # the image prompt matters: the same problem without it ends elsewhere
    plain = _ours(models, _problem(models, box, "sd15", image=None))
    assert (ours - plain).abs().max() > 1e-2
