"""Texture (SyncMVD) synchronisation cost against the network it wraps, on this machine.

Figures:
* ``sync_step_seconds``: work per synced denoising step outside the networks at SyncMVD's default sizes
  (10 views, 96 x 96 latent views, 512 x 512 latent texture): x0, bake, texture-space DDPM step, render back,
  background compositing (median of ``REPEATS``); ``projection_setup_seconds``: the one-off precompute;
* ``unet_forward_seconds``: one forward of a full-size SD1.5 UNet (random weights, fp32) on the guided batch
  of the same views (20 x 4 x 96 x 96), with diffusers' default attention;
* ``ratio`` = sync step / UNet forward (target <= 0.05);
* ``final_bake_1024_seconds`` / ``final_bake_2048_seconds``: the final RGB bake of 10 views at 768 px.
Mesh: an icosphere with 20480 faces and a projection atlas.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import statistics
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictors.geometry.bake import bake_texture
from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.projection_atlas import projection_atlas
from predictors.texture.sync import (
    build_projection,
    composite_background,
    sample_prediction_twin,
    synced_step,
)

AZIMUTHS = [-180, -135, -90, -45, 0, 45, 90, 135, 0, 180]
ELEVATIONS = [0] * 8 + [30, 30]
REPEATS = 5
SD15_UNET = {
    "sample_size": 64,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
}


def sphere() -> Mesh:
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=5, radius=0.9)
    mesh = Mesh(np.asarray(ico.vertices), np.asarray(ico.faces))
    return projection_atlas(mesh, texture_size=2048)


def main() -> None:
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    mesh = sphere()
    cameras = orbit_cameras(AZIMUTHS, ELEVATIONS)
    start = time.perf_counter()
    projection = build_projection(mesh, cameras, view_size=96, texture_size=512)
    print(f"projection_setup_seconds: {time.perf_counter() - start:.3f}")

    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    )
    scheduler.set_timesteps(30)
    twin = sample_prediction_twin(scheduler)
    generator = torch.Generator().manual_seed(0)
    views = torch.randn(10, 4, 96, 96, generator=generator)
    output = torch.randn(10, 4, 96, 96, generator=generator)
    texture = torch.randn(4, 512, 512, generator=generator)
    background = torch.randn(10, 4, 1, 1, generator=generator)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        rendered, _ = synced_step(scheduler, twin, projection, output, 925, views, texture, 3.0, generator)
        noise = torch.randn(10, 4, 96, 96, generator=generator)
        composite_background(rendered, projection.masks, background, noise, scheduler, 892)
        times.append(time.perf_counter() - start)
    sync = statistics.median(times)
    print(f"sync_step_seconds: {sync:.4f}")

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    latents = torch.randn(20, 4, 96, 96)
    text = torch.randn(20, 77, 768)
    with torch.no_grad():
        start = time.perf_counter()
        unet(latents, 925, encoder_hidden_states=text)
        forward = time.perf_counter() - start
    print(f"unet_forward_seconds: {forward:.2f}")
    print(f"ratio: {sync / forward:.4f}")

    images = torch.rand(10, 768, 768, 3)
    masks = torch.ones(10, 768, 768, dtype=torch.bool)
    for size in (1024, 2048):
        start = time.perf_counter()
        bake_texture(mesh, images, masks, cameras, texture_size=size, cos_exponent=6.0)
        print(f"final_bake_{size}_seconds: {time.perf_counter() - start:.2f}")


if __name__ == "__main__":
    main()
