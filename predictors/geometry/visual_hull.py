"""Visual-hull carving of a voxel grid from posed silhouettes (orthographic or perspective cameras).

Each view contributes the *signed distance to its silhouette edge* (positive inside), measured in the
image and converted to world units at the sample's depth. The hull's distance is the minimum over views,
and occupancy is a ramp of it, ``clamp(0.5 + 0.5 * distance / voxel, 0, 1)``: its 0.5 level set lies on
the silhouette cones to sub-voxel accuracy, so marching cubes gives a smooth surface, not stair steps.

Decisions:

* Outside its image, a view's distance keeps falling with the distance to the image rectangle, and points
  behind a perspective camera count as far outside: every view is assumed to show the whole object, so
  "not seen" means "not object".
* Masks much finer than the grid are area-downsampled (to about two pixels per voxel) before the distance
  transform; finer pixels cannot move the surface by more than a fraction of a voxel.
* The grid is evaluated coarse to fine: a block whose centre is farther from the hull surface than the
  block's reach (a 1.5 Lipschitz bound on the distance) is filled without sampling its voxels, so only a
  thin band around the surface is projected into the views.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from predictors.geometry.cameras import Cameras, ndc_to_grid

_CHUNK_POINTS = 1 << 18  # points projected per batch (memory ~ N views * 40 bytes * this)
_LIPSCHITZ = (
    1.5  # bound on how fast the hull distance changes per world unit (1 for ideal orthographic views)
)
_COARSEST_BLOCK = 8  # voxels per side of the first blocks tested
_BEHIND_CAMERA = -1e6  # distance given to points behind a perspective camera


def voxel_centres(resolution: int, bound: float) -> torch.Tensor:
    """Coordinates of the grid's samples along one axis: ``linspace(-bound, bound, resolution)``."""
    return torch.linspace(-bound, bound, resolution)


def carve_visual_hull(
    masks: torch.Tensor, cameras: Cameras, resolution: int = 128, bound: float = 1.0
) -> torch.Tensor:
    """Soft visual-hull occupancy on a regular grid.

    Args:
        masks: foreground silhouettes [N, H, W] bool, top-down rows, one per camera.
        cameras: the N cameras that took the views (orthographic or perspective).
        resolution: samples per axis R; sample ``[i, j, k]`` sits at ``(x_i, y_j, z_k)`` with
            ``x_i = -bound + i * 2 * bound / (R - 1)`` (see :func:`voxel_centres`).
        bound: half side of the carved cube.

    Returns:
        occupancy float32 [R, R, R] in [0, 1], indexed [x, y, z]; the hull surface is the 0.5 level set.
    """
    if masks.ndim != 3 or masks.shape[0] != len(cameras):
        raise ValueError(
            f"carve_visual_hull: need masks [N, H, W] for {len(cameras)} cameras, got {tuple(masks.shape)}"
        )
    if resolution < 2:
        raise ValueError(f"carve_visual_hull: resolution must be at least 2, got {resolution}")
    silhouettes = _Silhouettes(masks.detach().cpu().bool(), cameras.to("cpu"), resolution)
    step = 2.0 * bound / (resolution - 1)
    occupancy = torch.zeros(resolution, resolution, resolution)

    size = min(_COARSEST_BLOCK, 1 << max(0, (resolution - 1).bit_length() - 1))
    axis = torch.arange(0, resolution, size)
    starts = torch.cartesian_prod(axis, axis, axis).reshape(-1, 3)
    while size > 1:
        centres = -bound + (starts.float() + (size - 1) / 2.0) * step
        distance = silhouettes.hull_distance(centres)
        reach = _LIPSCHITZ * math.sqrt(3.0) * (size - 1) / 2.0 * step + step
        _fill_blocks(occupancy, starts[distance > reach], size)
        undecided = starts[distance.abs() <= reach]
        size //= 2
        children = (undecided[:, None, :] + size * _corner_offsets()).reshape(-1, 3)
        starts = children[(children < resolution).all(dim=1)]
    distance = silhouettes.hull_distance(-bound + starts.float() * step)
    occupancy[starts[:, 0], starts[:, 1], starts[:, 2]] = (0.5 + 0.5 * distance / step).clamp(0.0, 1.0)
    return occupancy


class _Silhouettes:
    """Per-view signed distance images and the scale that turns them into world units."""

    def __init__(self, masks: torch.Tensor, cameras: Cameras, resolution: int) -> None:
        self.cameras = cameras
        self.signed = _signed_distance_pixels(masks, resolution)  # [N, 1, h, w]
        height, width = self.signed.shape[-2:]
        self.half_size = torch.tensor([width / 2.0, height / 2.0])
        # World size of one pixel at clip w = 1 (orthographic: everywhere; perspective: times the depth).
        self.pixel_world = 1.0 / (width * cameras.proj[:, 0, 0].abs()) + 1.0 / (
            height * cameras.proj[:, 1, 1].abs()
        )

    def hull_distance(self, points: torch.Tensor) -> torch.Tensor:
        """Signed world distance [P] of points [P, 3] to the visual hull (min over views, positive inside)."""
        out = torch.empty(points.shape[0])
        for start in range(0, points.shape[0], _CHUNK_POINTS):
            out[start : start + _CHUNK_POINTS] = self._chunk_distance(points[start : start + _CHUNK_POINTS])
        return out

    def _chunk_distance(self, points: torch.Tensor) -> torch.Tensor:
        clip = self.cameras.to_clip(points)  # [N, P, 4]
        w = clip[..., 3]
        in_front = w > 1e-6
        safe_w = torch.where(in_front, w, torch.ones_like(w))
        ndc_xy = clip[..., :2] / safe_w[..., None]
        sampled = F.grid_sample(
            self.signed,
            ndc_to_grid(ndc_xy)[:, :, None, :],
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )[:, 0, :, 0]
        beyond_image = ((ndc_xy.abs() - 1.0).clamp_min(0.0) * self.half_size).norm(dim=-1)
        distance = (sampled - beyond_image) * self.pixel_world[:, None] * safe_w
        return torch.where(in_front, distance, _BEHIND_CAMERA).amin(dim=0)


def _signed_distance_pixels(masks: torch.Tensor, resolution: int) -> torch.Tensor:
    """Signed distance (pixels, positive inside) of each mask's pixel centres to its silhouette edge.

    The image border counts as background, so a mask that fills its image still has a finite distance.
    Masks larger than ``2 * resolution`` pixels per side are area-downsampled first.
    """
    height, width = masks.shape[-2:]
    factor = max(1, max(height, width) // (2 * resolution))
    if factor > 1:
        pooled = F.interpolate(masks[:, None].float(), size=(height // factor, width // factor), mode="area")
        masks = pooled[:, 0] > 0.5
    signed = []
    for mask in masks.numpy():
        if not mask.any():  # no foreground to measure a distance to: the whole view is far outside
            signed.append(np.full(mask.shape, -float(sum(mask.shape))))
            continue
        padded = np.pad(mask, 1)
        inside = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
        outside = ndimage.distance_transform_edt(~padded)[1:-1, 1:-1]
        signed.append(np.where(mask, inside - 0.5, 0.5 - outside))
    return torch.from_numpy(np.stack(signed)).float()[:, None]


def _corner_offsets() -> torch.Tensor:
    """The 8 child-block offsets (0/1 per axis) [1, 8, 3]."""
    bits = torch.tensor([0, 1])
    return torch.cartesian_prod(bits, bits, bits)[None]


def _fill_blocks(occupancy: torch.Tensor, starts: torch.Tensor, size: int) -> None:
    """Set every voxel of the blocks [B, 3] of side ``size`` (clipped to the grid) to 1."""
    if starts.numel() == 0:
        return
    span = torch.arange(size)
    offsets = torch.cartesian_prod(span, span, span)
    index = (starts[:, None, :] + offsets[None]).reshape(-1, 3)
    index = index[(index < occupancy.shape[0]).all(dim=1)]
    occupancy[index[:, 0], index[:, 1], index[:, 2]] = 1.0
