"""Posed views -> textured mesh: visual hull, surface extraction, UV unwrap and texture bake."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from predictors.geometry.bake import bake_texture
from predictors.geometry.cameras import Cameras
from predictors.geometry.mesh import Mesh
from predictors.geometry.surface import extract_surface
from predictors.geometry.uv import atlas_with_fallback
from predictors.geometry.visual_hull import carve_visual_hull
from predictors.runtime import StageTimer, log, timed_stage

# Face budget of reconstructed meshes: a smoothed 128^3 hull keeps its shape at 20k faces.
DEFAULT_TARGET_FACES = 20_000


def reconstruct(
    images: torch.Tensor,
    masks: torch.Tensor,
    cameras: Cameras,
    *,
    resolution: int = 128,
    texture_size: int = 1024,
    target_faces: int = DEFAULT_TARGET_FACES,
    bound: float = 1.0,
    view_weights: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    stage: StageTimer = timed_stage,
) -> Mesh:
    """Textured mesh of the object seen in posed views (any orthographic or perspective cameras).

    Args:
        images: views [N, H, W, 3] float in [0, 1], top-down rows.
        masks: their foreground masks [N, H, W] bool.
        cameras: the N cameras; the object must lie inside the cube [-bound, bound]^3.
        resolution: voxel samples per axis of the visual hull.
        texture_size: side of the baked texture.
        target_faces: face budget of the output mesh.
        view_weights: per-view bake weights (default: equal).
        stage: context-manager factory that times and logs each named stage.
    """
    with stage("carve"):
        occupancy = carve_visual_hull(masks, cameras, resolution=resolution, bound=bound)
    with stage("surface"):
        mesh = extract_surface(occupancy, bound, target_faces=target_faces)
    log(f"surface: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
    with stage("unwrap"):
        mesh = atlas_with_fallback(mesh, texture_size=texture_size, max_faces=target_faces)
    with stage("bake"):
        texture, seen = bake_texture(
            mesh, images, masks, cameras, texture_size=texture_size, view_weights=view_weights, device=device
        )
    log(f"bake: {texture_size}^2 texels, {seen.mean():.0%} seen by some view")
    return mesh.copy_with(texture=texture)
