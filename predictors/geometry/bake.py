"""Texture baking from posed images by gathering in UV space.

Every texel covered by the UV layout knows its 3D position and smooth normal. For each view the texel is
projected into the image; it takes the image's colour (bilinear) with weight
``view_weight * clamp(n . to_camera, 0) ** cos_exponent`` when it is visible there: its camera-axis depth
matches the view's depth buffer (nearest pixel) within ``depth_tolerance`` (relative) and it falls inside
the view's foreground mask eroded by ``MASK_EROSION_PX`` (silhouette pixels mix in background colour).
The texture is the weighted mean; texels no view saw, and the gutters between UV charts, take the colour
of the nearest seen texel. Gathering (rather than splatting pixels into UV space) leaves no holes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from predictors.geometry.cameras import Cameras, ndc_to_grid
from predictors.geometry.mesh import Mesh

MASK_EROSION_PX = 1  # foreground-mask erosion before use, in image pixels
MAX_DEPTH_RESOLUTION = 512  # the visibility depth buffers are rendered at most this large (longer side)


def bake_texture(
    mesh: Mesh,
    images: torch.Tensor,
    masks: torch.Tensor,
    cameras: Cameras,
    *,
    texture_size: int = 1024,
    cos_exponent: float = 4.0,
    view_weights: Sequence[float] | None = None,
    depth_tolerance: float = 0.01,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Bake posed views into the mesh's UV layout.

    Args:
        mesh: mesh with ``uvs``/``uv_faces``.
        images: views [N, H, W, 3] float in [0, 1], top-down rows.
        masks: foreground masks [N, H, W] bool of the views.
        cameras: the N cameras of the views.
        texture_size: side T of the square texture.
        cos_exponent: sharpness of the preference for views that face the surface.
        view_weights: per-view multipliers (default: all 1).
        depth_tolerance: accepted |texel depth - buffer depth| as a fraction of the buffer depth.

    Returns:
        texture uint8 [T, T, 3] in image layout (row 0 is v = 1) with unseen texels and gutters filled,
        and ``seen`` bool [T, T]: texels that got colour from at least one view.
    """
    from predictors.geometry.render import rasterize_uv_space, render_passes

    count = len(cameras)
    if not mesh.has_uvs:
        raise ValueError("bake_texture: the mesh has no UV layout (uvs and uv_faces); unwrap it first")
    if images.ndim != 4 or images.shape[0] != count or images.shape[-1] != 3:
        raise ValueError(f"bake_texture: images must be [{count}, H, W, 3], got {tuple(images.shape)}")
    if tuple(masks.shape) != tuple(images.shape[:3]):
        raise ValueError(f"bake_texture: masks must be {tuple(images.shape[:3])}, got {tuple(masks.shape)}")
    weights = [1.0] * count if view_weights is None else [float(w) for w in view_weights]
    if len(weights) != count or min(weights) < 0:
        raise ValueError(f"bake_texture: need {count} non-negative view weights, got {view_weights}")

    uv_passes = rasterize_uv_space(mesh, texture_size, device=device)
    covered = uv_passes.mask.to(device)
    positions = uv_passes.positions.to(device)[covered].float()
    normals = F.normalize(uv_passes.normals.to(device)[covered].float(), dim=-1)

    height, width = images.shape[1:3]
    scale = min(1.0, MAX_DEPTH_RESOLUTION / max(height, width))
    depth_size = (max(1, round(height * scale)), max(1, round(width * scale)))
    depth = render_passes(mesh, cameras, depth_size, device=device).depth.to(device)
    usable = _erode(masks.to(device).bool(), MASK_EROSION_PX)
    cameras = cameras.to(device)
    images = images.to(device).float().permute(0, 3, 1, 2)

    colour_sum = torch.zeros(positions.shape[0], 3, device=device)
    weight_sum = torch.zeros(positions.shape[0], device=device)
    for view in range(count):
        camera = cameras[view]
        ndc = camera.to_ndc(positions)[0, :, :2]
        visible = _lookup(usable[view], ndc) & _depth_matches(
            camera.depth(positions)[0], _lookup(depth[view], ndc), depth_tolerance
        )
        facing = (normals * camera.directions_to_camera(positions)[0]).sum(dim=-1).clamp_min(0.0)
        weight = weights[view] * facing.pow(cos_exponent) * visible
        grid = ndc_to_grid(ndc)[None, None]  # [1, 1, M, 2]
        colour = F.grid_sample(images[view : view + 1], grid, mode="bilinear", align_corners=False)[0, :, 0].T
        colour_sum += weight[:, None] * colour
        weight_sum += weight

    seen_texels = weight_sum > 0
    texture = torch.zeros(texture_size, texture_size, 3, device=device)
    texture[covered] = torch.where(
        seen_texels[:, None], colour_sum / weight_sum.clamp_min(1e-12)[:, None], 0.0
    )
    seen = torch.zeros(texture_size, texture_size, dtype=torch.bool, device=device)
    seen[covered] = seen_texels
    seen_np = seen.cpu().numpy()
    filled = fill_unseen(texture.cpu().numpy(), seen_np)
    return (np.clip(filled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), seen_np


def fill_unseen(texture: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """A copy of ``texture`` [T, T, C] where texels not ``seen`` [T, T] take the nearest seen texel's value.

    Nearest is Euclidean in texel space (a Voronoi fill); with nothing seen the texture is returned unchanged.
    """
    if seen.shape != texture.shape[:2]:
        raise ValueError(f"fill_unseen: seen must be {texture.shape[:2]}, got {seen.shape}")
    if seen.all() or not seen.any():
        return texture.copy()
    nearest = ndimage.distance_transform_edt(~seen, return_distances=False, return_indices=True)
    return texture[nearest[0], nearest[1]]


def _lookup(image: torch.Tensor, ndc: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel values of a top-down image [H, W] at NDC points [M, 2]; zero/False outside the image."""
    height, width = image.shape
    column = torch.floor((ndc[:, 0] + 1.0) * 0.5 * width).long()
    row = torch.floor((1.0 - ndc[:, 1]) * 0.5 * height).long()
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    values = image[row.clamp(0, height - 1), column.clamp(0, width - 1)]
    return torch.where(inside, values, torch.zeros((), dtype=image.dtype, device=image.device))


def _depth_matches(texel_depth: torch.Tensor, buffer_depth: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Texels whose depth equals the buffer's (0 = empty pixel) within a relative tolerance."""
    return (buffer_depth > 0) & ((texel_depth - buffer_depth).abs() <= tolerance * buffer_depth)


def _erode(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Masks [N, H, W] bool shrunk by ``pixels`` (square structuring element)."""
    if pixels <= 0:
        return masks
    background = (~masks)[:, None].float()
    grown = F.max_pool2d(background, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return grown[:, 0] == 0
