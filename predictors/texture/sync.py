"""Synchronised multi-view denoising: a shared UV latent texture baked from, and rendered into, every view.

At each synced step (SyncMVD, canonical-space denoising): every view's predicted clean latent x0_v is baked
into one UV texture, weighting each view by ``visible * cos ** exponent``; the scheduler step is taken on the
texture (its noise drawn in texture space); the new texture is rendered back into every view with nearest
sampling and the background is composited with noise at the views' new noise level.

``UVProjection`` holds everything that depends only on the mesh and cameras, precomputed once, so a bake or
a render is a gather and a weighted sum:

* render: each foreground pixel reads the texel its interpolated UV falls in (nearest sampling);
* bake (gather): each texel covered by the UV layout reads, in every view, the pixel its centre projects to;
  it counts as visible there when its depth matches a ``visibility_size`` depth buffer (relative tolerance
  ``depth_tolerance``), that pixel is foreground and shows a surface point within a pixel width / cos of
  the texel (not an occluder or another part inside a coarse pixel), and the surface faces the camera. Texels no view
  sees, and the gutters between charts, take the value of the nearest seen texel (a Voronoi fill).

Textures are in image layout [C, T, T] (row 0 is v = 1); views are [N, C, H, W], top-down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from predictors.geometry.cameras import Cameras
from predictors.geometry.mesh import Mesh

DEFAULT_EXPONENT_START = 0.0  # SyncMVD mvd_exp_start
DEFAULT_EXPONENT_END = 6.0  # SyncMVD mvd_exp_end (also the final RGB bake's exponent)
DEFAULT_VISIBILITY_SIZE = 512  # SyncMVD tests visibility at 512 x 512
DEFAULT_DEPTH_TOLERANCE = 0.01
MIN_COSINE_FOR_SLACK = 0.1  # a view pixel may lie up to pixel_width / cos away on the surface (cos >= this)


class Projection(Protocol):
    """What a synced step needs: a bake of views into a texture and a render of a texture into the views."""

    def bake(self, views: torch.Tensor, exponent: float) -> torch.Tensor: ...

    def render(self, texture: torch.Tensor) -> torch.Tensor: ...


@dataclass
class UVProjection:
    """Precomputed view <-> texture correspondences of one mesh seen by N cameras.

    ``pixel_texel`` [N, H*W]: flat texel index of each pixel (-1 = background). ``texel_ids`` [M]: flat indices
    of the texels covered by the UV layout. ``texel_pixel`` [N, M]: flat pixel each covered texel projects to.
    ``cosine`` [N, M]: cos(normal, direction to camera) where visible, else 0. ``fill_index`` [T*T]: for every
    texel, the flat index of the nearest seen texel (itself when seen).
    """

    view_size: int
    texture_size: int
    masks: torch.Tensor  # bool [N, H, W]
    pixel_texel: torch.Tensor
    texel_ids: torch.Tensor
    texel_pixel: torch.Tensor
    cosine: torch.Tensor
    fill_index: torch.Tensor

    @property
    def num_views(self) -> int:
        return self.masks.shape[0]

    @property
    def visible(self) -> torch.Tensor:
        """bool [N, M]: covered texels each view sees."""
        return self.cosine > 0

    @property
    def seen(self) -> torch.Tensor:
        """bool [T, T]: texels at least one view sees."""
        seen = torch.zeros(self.texture_size**2, dtype=torch.bool, device=self.cosine.device)
        seen[self.texel_ids] = self.visible.any(dim=0)
        return seen.reshape(self.texture_size, self.texture_size)

    def weights(self, exponent: float) -> torch.Tensor:
        """Per-view bake weights [N, M]: ``cos ** exponent`` on visible texels (exponent 0: 1), else 0."""
        if exponent < 0:
            raise ValueError(f"the cosine exponent must be >= 0, got {exponent}")
        visible = self.visible
        return torch.where(visible, self.cosine.clamp_min(1e-12).pow(exponent), torch.zeros_like(self.cosine))

    def bake(self, views: torch.Tensor, exponent: float) -> torch.Tensor:
        """Weighted mean of the views [N, C, H, W] in UV space -> texture [C, T, T], unseen texels filled."""
        count, channels = views.shape[:2]
        if count != self.num_views or tuple(views.shape[2:]) != (self.view_size, self.view_size):
            raise ValueError(
                f"bake: views must be [{self.num_views}, C, {self.view_size}, {self.view_size}], "
                f"got {tuple(views.shape)}"
            )
        flat = views.float().reshape(count, channels, -1)
        values = torch.gather(flat, 2, self.texel_pixel[:, None, :].expand(-1, channels, -1))  # [N, C, M]
        weights = self.weights(exponent)[:, None, :]
        total = weights.sum(dim=0)
        mean = (weights * values).sum(dim=0) / total.clamp_min(1e-12)
        texture = torch.zeros(channels, self.texture_size**2, device=views.device)
        texture[:, self.texel_ids] = mean
        return texture[:, self.fill_index].reshape(channels, self.texture_size, self.texture_size)

    def render(self, texture: torch.Tensor) -> torch.Tensor:
        """Nearest-sampled views [N, C, H, W] of a texture [C, T, T]; background pixels are 0."""
        channels = texture.shape[0]
        if tuple(texture.shape[1:]) != (self.texture_size, self.texture_size):
            raise ValueError(
                f"render: texture must be [C, {self.texture_size}, {self.texture_size}], got {tuple(texture.shape)}"
            )
        flat = texture.reshape(channels, -1)
        values = flat[:, self.pixel_texel.clamp_min(0)]  # [C, N, H*W]
        values = values * (self.pixel_texel >= 0).to(values.dtype)
        return values.permute(1, 0, 2).reshape(self.num_views, channels, self.view_size, self.view_size)


def texel_index(uv: torch.Tensor, texture_size: int) -> torch.Tensor:
    """Flat index (row-major, image layout: row 0 is v = 1) of the texel containing each uv [..., 2]."""
    column = torch.floor(uv[..., 0] * texture_size).long().clamp(0, texture_size - 1)
    row = torch.floor((1.0 - uv[..., 1]) * texture_size).long().clamp(0, texture_size - 1)
    return row * texture_size + column


def pixel_index(ndc_xy: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat index of the pixel (top-down, ``size`` x ``size``) containing each NDC point [..., 2], and
    whether the point is inside the image."""
    column = torch.floor((ndc_xy[..., 0] + 1.0) * 0.5 * size).long()
    row = torch.floor((1.0 - ndc_xy[..., 1]) * 0.5 * size).long()
    inside = (column >= 0) & (column < size) & (row >= 0) & (row < size)
    return row.clamp(0, size - 1) * size + column.clamp(0, size - 1), inside


def build_projection(
    mesh: Mesh,
    cameras: Cameras,
    view_size: int,
    texture_size: int,
    *,
    visibility_size: int = DEFAULT_VISIBILITY_SIZE,
    depth_tolerance: float = DEFAULT_DEPTH_TOLERANCE,
    device: torch.device | str = "cpu",
) -> UVProjection:
    """Precompute the correspondences between ``view_size``-square views and a ``texture_size`` texture."""
    from predictors.geometry.render import rasterize_uv_space, render_passes

    if not mesh.has_uvs:
        raise ValueError("build_projection: the mesh has no UV layout; unwrap it first")
    if view_size < 1 or texture_size < 1:
        raise ValueError(f"view and texture sizes must be positive, got {view_size} and {texture_size}")
    cameras = cameras.to(device)
    views = render_passes(mesh, cameras, (view_size, view_size), device=device)
    pixel_texel = torch.where(
        views.mask, texel_index(views.uv, texture_size), torch.full_like(views.face_ids, -1)
    ).reshape(len(cameras), -1)

    uv_passes = rasterize_uv_space(mesh, texture_size, device=device)
    covered = uv_passes.mask.reshape(-1)
    texel_ids = torch.nonzero(covered).squeeze(1)
    positions = uv_passes.positions.reshape(-1, 3)[texel_ids].float()
    normals = F.normalize(uv_passes.normals.reshape(-1, 3)[texel_ids].float(), dim=-1)

    depth_size = max(visibility_size, view_size)
    depth = render_passes(mesh, cameras, (depth_size, depth_size), device=device).depth.reshape(
        len(cameras), -1
    )
    ndc = cameras.to_ndc(positions)[..., :2]  # [N, M, 2]
    texel_pixel, inside = pixel_index(ndc, view_size)
    depth_pixel, _ = pixel_index(ndc, depth_size)
    buffer_depth = torch.gather(depth, 1, depth_pixel)
    texel_depth = cameras.depth(positions)
    unoccluded = (buffer_depth > 0) & ((texel_depth - buffer_depth).abs() <= depth_tolerance * buffer_depth)
    foreground = torch.gather(views.mask.reshape(len(cameras), -1), 1, texel_pixel)
    cosine = (normals[None] * cameras.directions_to_camera(positions)).sum(dim=-1)
    # The pixel must show this surface, not an occluder or another part within the same (coarse) pixel.
    pixel_positions = views.positions.reshape(len(cameras), -1, 3)
    gap = (torch.gather(pixel_positions, 1, texel_pixel[..., None].expand(-1, -1, 3)) - positions).norm(
        dim=-1
    )
    pixel_width = 2.0 / (cameras.proj[:, 0, 0, None] * view_size)
    if not cameras.orthographic:
        pixel_width = pixel_width * texel_depth
    same_surface = gap <= pixel_width / cosine.clamp_min(MIN_COSINE_FOR_SLACK)
    visible = inside & unoccluded & foreground & same_surface & (cosine > 0)
    cosine = torch.where(visible, cosine, torch.zeros_like(cosine))

    seen = torch.zeros(texture_size**2, dtype=torch.bool, device=device)
    seen[texel_ids] = visible.any(dim=0)
    return UVProjection(
        view_size=view_size,
        texture_size=texture_size,
        masks=views.mask,
        pixel_texel=pixel_texel,
        texel_ids=texel_ids,
        texel_pixel=texel_pixel,
        cosine=cosine,
        fill_index=nearest_seen_index(seen.reshape(texture_size, texture_size).cpu().numpy()).to(device),
    )


def nearest_seen_index(seen: np.ndarray) -> torch.Tensor:
    """For every texel of a [T, T] mask, the flat index of the nearest ``seen`` texel (identity if none)."""
    size = seen.shape[1]
    if seen.all() or not seen.any():
        return torch.arange(seen.size)
    rows, columns = ndimage.distance_transform_edt(~seen, return_distances=False, return_indices=True)
    return torch.from_numpy((rows * size + columns).reshape(-1).astype(np.int64))


def exponent_schedule(
    step: int, steps: int, start: float = DEFAULT_EXPONENT_START, end: float = DEFAULT_EXPONENT_END
) -> float:
    """The cosine exponent at denoising step ``step`` of ``steps``: linear from ``start`` (0 means 0)."""
    return start + (end - start) * step / steps


def predicted_clean(
    scheduler, model_output: torch.Tensor, timestep: int, sample: torch.Tensor
) -> torch.Tensor:
    """Tweedie's x0 from a model output (epsilon, v or sample prediction, as the scheduler is configured)."""
    alpha = scheduler.alphas_cumprod.to(sample.device)[int(timestep)].to(torch.float32)
    signal, noise = alpha.sqrt(), (1.0 - alpha).sqrt()
    kind = scheduler.config.prediction_type
    sample32, output32 = sample.float(), model_output.float()
    if kind == "epsilon":
        clean = (sample32 - noise * output32) / signal
    elif kind == "v_prediction":
        clean = signal * sample32 - noise * output32
    elif kind == "sample":
        clean = output32
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}; allowed: epsilon, v_prediction, sample")
    return clean.to(sample.dtype)


def sample_prediction_twin(scheduler):
    """A scheduler with the same configuration and timesteps that takes x0 ('sample') as model output."""
    config = {key: value for key, value in scheduler.config.items() if not key.startswith("_")}
    twin = type(scheduler).from_config({**config, "prediction_type": "sample"})
    twin.set_timesteps(num_inference_steps=scheduler.num_inference_steps, device=scheduler.timesteps.device)
    return twin


def synced_step(
    scheduler,
    texture_scheduler,
    projection: Projection,
    model_output: torch.Tensor,
    timestep: int,
    views: torch.Tensor,
    texture: torch.Tensor,
    exponent: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One denoising step in texture space.

    Args:
        scheduler: the views' scheduler (gives x0 from ``model_output``).
        texture_scheduler: its ``sample_prediction_twin`` (the step on the texture).
        model_output: guided model output [N, C, H, W] for the views ``views`` at ``timestep``.
        texture: the texture state z_t [C, T, T].

    Returns:
        the views rendered from z_{t-1} (background 0; composite it next) and z_{t-1} itself.
    """
    clean = predicted_clean(scheduler, model_output, timestep, views)
    baked = projection.bake(clean, exponent)
    stepped = texture_scheduler.step(baked[None], timestep, texture[None].float(), generator=generator)
    texture_prev = stepped.prev_sample[0]
    return projection.render(texture_prev).to(views.dtype), texture_prev


def composite_background(
    views: torch.Tensor,
    masks: torch.Tensor,
    background: torch.Tensor,
    noise: torch.Tensor,
    scheduler,
    timestep: int | None,
) -> torch.Tensor:
    """Foreground of ``views`` [N, C, H, W] over ``background`` noised to ``timestep`` as the scheduler's
    forward process does (sqrt(a) x0 + sqrt(1 - a) noise); ``timestep`` None keeps the background clean."""
    if timestep is None:
        noisy = background.to(views.dtype).expand_as(views)
    else:
        index = torch.full((views.shape[0],), int(timestep), dtype=torch.long)
        noisy = scheduler.add_noise(background.float().expand_as(views), noise.float(), index).to(views.dtype)
    return torch.where(masks[:, None].to(views.device), views, noisy)
