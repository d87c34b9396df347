"""The SyncMVD loop (predictors.texture.denoise) with tiny random diffusers models: seeded determinism,
synced views that agree texel by texel, and the ControlNet ramp direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

from predictors.diffusion.attention import (
    MultiViewSelfAttention,
    install_multiview_attention,
    neighbour_views,
    reference_view,
)
from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.projection_atlas import projection_atlas
from predictors.texture.denoise import Conditioning, Schedule, denoise_views
from predictors.texture.sync import build_projection

AZIMUTHS = [-180, -135, -90, -45, 0, 45, 90, 135, 0, 180]
ELEVATIONS = [0] * 8 + [30, 30]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8)).eval()
    return unet, controlnet


@pytest.fixture(scope="module")
def projection():
    box = trimesh.creation.box(extents=[1.2, 1.0, 0.8])
    mesh = projection_atlas(Mesh(np.asarray(box.vertices), np.asarray(box.faces)), texture_size=64)
    return build_projection(mesh, orbit_cameras(AZIMUTHS, ELEVATIONS), view_size=16, texture_size=64)


def run(models, projection, seed: int, schedule: Schedule, split_guidance: bool = False) -> torch.Tensor:
    unet, controlnet = models
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    )
    scheduler.set_timesteps(3)
    attention = install_multiview_attention(
        unet,
        MultiViewSelfAttention(neighbour_views(AZIMUTHS, ELEVATIONS), [reference_view(AZIMUTHS, ELEVATIONS)]),
    )
    text = torch.randn(20, 7, 16, generator=torch.Generator().manual_seed(1))
    conditions = torch.rand(10, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    colours = torch.randn(14, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return denoise_views(
            unet,
            controlnet,
            scheduler,
            projection,
            attention,
            Conditioning(text, conditions),
            colours,
            torch.Generator().manual_seed(seed),
            schedule,
            split_guidance=split_guidance,
        )


def test_same_seed_same_latents_and_synced_views_agree(models, projection):
    schedule = Schedule(guidance_scale=3.0, sync_end=1.0)
    first, again, other = (run(models, projection, seed, schedule) for seed in (5, 5, 6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.isfinite(first).all()
    # every texel shows one value in every pixel of every view that samples it
    texels = projection.pixel_texel.reshape(-1)
    values = first.permute(1, 0, 2, 3).reshape(4, -1)[:, texels >= 0]
    texels = texels[texels >= 0]
    high = torch.full((4, 64 * 64), -1e9).scatter_reduce(1, texels.expand(4, -1), values, "amax")
    low = torch.full((4, 64 * 64), 1e9).scatter_reduce(1, texels.expand(4, -1), values, "amin")
    spread = (high - low)[:, texels.unique()]
    assert spread.abs().max() < 1e-5


def test_split_guidance_batches_give_the_same_latents(models, projection):
    schedule = Schedule(guidance_scale=3.0, sync_end=1.0)
    joint = run(models, projection, 5, schedule)
    split = run(models, projection, 5, schedule, split_guidance=True)
    torch.testing.assert_close(split, joint, atol=1e-4, rtol=1e-4)


def test_unsynced_steps_let_views_drift_apart(models, projection):
    latents = run(models, projection, 5, Schedule(guidance_scale=3.0, sync_end=0.0))
    texels = projection.pixel_texel.reshape(-1)
    values = latents.permute(1, 0, 2, 3).reshape(4, -1)[:, texels >= 0]
    texels = texels[texels >= 0]
    high = torch.full((4, 64 * 64), -1e9).scatter_reduce(1, texels.expand(4, -1), values, "amax")
    low = torch.full((4, 64 * 64), 1e9).scatter_reduce(1, texels.expand(4, -1), values, "amin")
    assert (high - low)[:, texels.unique()].max() > 0.1  # the agreement check above can fail


def test_controlnet_scale_ramps_from_start_to_end():
    schedule = Schedule()
    assert schedule.controlnet_weight(0.0) == pytest.approx(0.7)
    assert schedule.controlnet_weight(0.99) == pytest.approx(0.9)
    assert schedule.controlnet_weight(0.5) == pytest.approx(0.7 + 0.2 * 0.5 / 0.99)
    assert schedule.controlnet_weight(0.995) == 0.0
