"""Texture-space synchronisation (predictors.texture.sync) with real geometry and real scheduler math.

Oracles: the rasterizer's own UV pass (which pixels show which texel), an analytic colour field of the
3D point behind each texel, diffusers' per-view scheduler step, and the closed-form forward process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from diffusers import DDIMScheduler, DDPMScheduler
from scipy import ndimage

from predictors.geometry.cameras import orbit_cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.projection_atlas import projection_atlas
from predictors.geometry.render import rasterize_uv_space, render_passes
from predictors.texture.sync import (
    build_projection,
    composite_background,
    exponent_schedule,
    predicted_clean,
    sample_prediction_twin,
    synced_step,
    texel_index,
)

AZIMUTHS = [0, 45, 90, 135, 180, 225, 270, 315, 0, 180]
ELEVATIONS = [0] * 8 + [30, 30]
SD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "steps_offset": 1,
}


def make(kind, **extra):
    """A scheduler with SD1.5's schedule (DDIM also gets SD1.5's set_alpha_to_one=False)."""
    config = {**SD_SCHEDULER, **extra}
    if kind is DDIMScheduler:
        config["set_alpha_to_one"] = False
    return kind(**config)


def scene() -> Mesh:
    """A sphere with a box beside it (the box hides part of the sphere from some views), projection UVs."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.55)
    sphere.apply_translation([-0.3, 0.0, 0.0])
    box = trimesh.creation.box(extents=[0.5, 0.9, 0.5])
    box.apply_translation([0.5, 0.0, 0.1])
    both = trimesh.util.concatenate([sphere, box])
    mesh = Mesh(np.asarray(both.vertices), np.asarray(both.faces))
    return projection_atlas(mesh, texture_size=128)


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return scene()


@pytest.fixture(scope="module")
def cameras():
    return orbit_cameras(AZIMUTHS, ELEVATIONS)


@pytest.fixture(scope="module")
def projection(mesh, cameras):
    return build_projection(mesh, cameras, view_size=48, texture_size=128)


def smooth_texture(mesh: Mesh, size: int) -> torch.Tensor:
    """[3, T, T] analytic colour field of the 3D point behind each texel; gutter texels copy the nearest
    covered texel, as every texture the pipeline renders has its gutters filled."""
    passes = rasterize_uv_space(mesh, size)
    p = passes.positions
    field = torch.stack(
        [
            torch.sin(2.5 * p[..., 0] + p[..., 1]),
            torch.cos(2 * p[..., 1] - 1.5 * p[..., 2]),
            torch.sin(2 * p[..., 2]),
        ]
    )
    _, (rows, columns) = ndimage.distance_transform_edt(~passes.mask.numpy(), return_indices=True)
    return field[:, torch.from_numpy(rows), torch.from_numpy(columns)]


def test_render_reads_the_texel_under_each_pixel(mesh, cameras, projection):
    texture = torch.randn(4, 128, 128, generator=torch.Generator().manual_seed(0))
    views = projection.render(texture)
    passes = render_passes(mesh, cameras, (48, 48))
    expected = (
        texture.reshape(4, -1)[:, texel_index(passes.uv, 128)].permute(1, 0, 2, 3) * passes.mask[:, None]
    )
    torch.testing.assert_close(views, expected)
    assert torch.equal(projection.masks, passes.mask)


def view_disagreement(values: torch.Tensor, mesh: Mesh, cameras) -> float:
    """Largest |difference| between two views' pixels that show the same texel (oracle: the UV pass)."""
    passes = render_passes(mesh, cameras, (48, 48))
    texels = texel_index(passes.uv, 128)
    worst = 0.0
    for a in range(len(cameras)):
        for b in range(a + 1, len(cameras)):
            shared = np.intersect1d(texels[a][passes.mask[a]].numpy(), texels[b][passes.mask[b]].numpy())
            for texel in shared[:200]:
                in_a = values[a][:, (texels[a] == int(texel)) & passes.mask[a]]
                in_b = values[b][:, (texels[b] == int(texel)) & passes.mask[b]]
                worst = max(worst, float((in_a[:, :1] - in_b[:, :1]).abs().max()))
    return worst


def test_after_a_synced_step_every_pair_of_views_agrees(mesh, cameras, projection):
    generator = torch.Generator().manual_seed(1)
    scheduler = make(DDPMScheduler)
    scheduler.set_timesteps(30)
    twin = sample_prediction_twin(scheduler)
    timestep = int(scheduler.timesteps[3])
    views = torch.randn(10, 4, 48, 48, generator=generator)  # independent, inconsistent views
    output = torch.randn(10, 4, 48, 48, generator=generator)
    texture = torch.randn(4, 128, 128, generator=generator)
    assert view_disagreement(views, mesh, cameras) > 1.0  # the check can fail
    new_views, _ = synced_step(scheduler, twin, projection, output, timestep, views, texture, 2.0, generator)
    assert view_disagreement(new_views, mesh, cameras) < 1e-6


def test_known_texture_is_recovered_from_rendered_views(mesh, cameras):
    size = 128
    fine = build_projection(mesh, cameras, view_size=384, texture_size=size)
    truth = smooth_texture(mesh, size)
    baked = fine.bake(fine.render(truth), exponent=6.0)
    seen = fine.seen
    assert seen.float().mean() > 0.3
    error = (baked - truth)[:, seen]
    psnr = 10 * torch.log10(4.0 / error.pow(2).mean())  # the field spans [-1, 1]
    assert psnr >= 40.0, f"PSNR {psnr:.1f} dB"


def test_bake_weights_views_by_cosine_power(projection):
    constant = torch.ones(10, 1, 48, 48) * torch.arange(10.0)[:, None, None, None]
    for exponent in (0.0, 3.0):
        baked = projection.bake(constant, exponent).reshape(-1)[projection.texel_ids]
        weights = projection.cosine.pow(exponent) * projection.visible
        seen = weights.sum(0) > 0
        expected = (weights * torch.arange(10.0)[:, None]).sum(0) / weights.sum(0).clamp_min(1e-12)
        torch.testing.assert_close(baked[seen], expected[seen])
    # exponent 0 means 0: every visible view counts equally
    assert torch.equal(projection.weights(0.0), projection.visible.float())


class Identity:
    """Texture = the single view: the synced step must reduce to the plain per-view step."""

    def bake(self, views: torch.Tensor, exponent: float) -> torch.Tensor:
        return views[0]

    def render(self, texture: torch.Tensor) -> torch.Tensor:
        return texture[None]


@pytest.mark.parametrize("kind", [DDPMScheduler, DDIMScheduler])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_texture_step_equals_the_scheduler_step_for_one_view(kind, prediction):
    scheduler = make(kind, prediction_type=prediction)
    scheduler.set_timesteps(30)
    twin = sample_prediction_twin(scheduler)
    data = torch.Generator().manual_seed(2)
    sample, output = torch.randn(1, 4, 16, 16, generator=data), torch.randn(1, 4, 16, 16, generator=data)
    for timestep in scheduler.timesteps[[0, 10, 29]]:
        expected = scheduler.step(
            output, timestep, sample, generator=torch.Generator().manual_seed(5)
        ).prev_sample
        ours, texture = synced_step(
            scheduler,
            twin,
            Identity(),
            output,
            timestep,
            sample,
            sample[0],
            0.0,
            torch.Generator().manual_seed(5),
        )
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(texture, expected[0], rtol=1e-5, atol=1e-5)


def test_texture_step_equals_per_view_steps_when_views_are_consistent(mesh, cameras):
    fine = build_projection(mesh, cameras, view_size=256, texture_size=128)
    scheduler = make(DDIMScheduler)
    scheduler.set_timesteps(30)
    twin = sample_prediction_twin(scheduler)
    timestep = int(scheduler.timesteps[5])
    texture = torch.randn(3, 128, 128, generator=torch.Generator().manual_seed(3))
    clean = smooth_texture(mesh, 128)
    views, clean_views = fine.render(texture), fine.render(clean)
    alpha = scheduler.alphas_cumprod[timestep]
    output = (views - alpha.sqrt() * clean_views) / (1 - alpha).sqrt()  # epsilon whose x0 is consistent
    per_view = scheduler.step(output, timestep, views).prev_sample
    synced, _ = synced_step(scheduler, twin, fine, output, timestep, views, texture, 6.0, None)
    mask = fine.masks[:, None].expand_as(synced)
    covered = fine.seen.reshape(-1)[fine.pixel_texel.clamp_min(0)].reshape(10, 1, 256, 256).expand_as(synced)
    difference = (synced - per_view)[mask & covered]
    assert difference.abs().mean() < 2e-3 and difference.abs().max() < 0.05


def test_predicted_clean_inverts_the_forward_process():
    scheduler = make(DDPMScheduler)
    clean, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = 700
    noisy = scheduler.add_noise(clean, noise, torch.tensor([t, t]))
    torch.testing.assert_close(predicted_clean(scheduler, noise, t, noisy), clean, rtol=1e-4, atol=1e-4)


def test_background_noise_uses_the_forward_process_coefficients():
    scheduler = make(DDPMScheduler)
    views = torch.full((2, 4, 8, 8), 7.0)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    background = torch.tensor([0.5, -0.2, 0.1, 0.3])[None, :, None, None]
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    out = composite_background(views, masks, background, noise, scheduler, 600)
    alpha = scheduler.alphas_cumprod[600]
    expected_bg = alpha.sqrt() * background + (1 - alpha).sqrt() * noise
    torch.testing.assert_close(
        out[~masks[:, None].expand_as(out)], expected_bg[~masks[:, None].expand_as(out)]
    )
    assert torch.all(out[masks[:, None].expand_as(out)] == 7.0)
    clean = composite_background(views, masks, background, noise, scheduler, None)
    torch.testing.assert_close(clean[:, :, 0, 0], background[:, :, 0, 0].expand(2, 4))


def test_exponent_schedule_is_linear_from_zero():
    assert exponent_schedule(0, 30) == 0.0
    assert exponent_schedule(15, 30) == pytest.approx(3.0)
    assert exponent_schedule(29, 30) == pytest.approx(5.8)
