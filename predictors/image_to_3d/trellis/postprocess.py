"""TRELLIS's decoded mesh -> this project's textured Mesh.

The decoder frame is z-up in [-0.5, 0.5]³; the mesh is rotated to y-up (``(x, y, z) -> (x, z, -y)``, as
upstream's GLB export) and scaled by 2 to fill [-1, 1]³ (this project's world convention), decimated to the face
budget, unwrapped, and textured with the colour of the nearest vertex of the fine, vertex-coloured mesh.
"""

from __future__ import annotations

import numpy as np
import torch

from predictors.geometry.bake import fill_unseen
from predictors.geometry.mesh import Mesh

# Upstream's GLB rotation from the decoder's z-up frame to y-up, applied to row vectors.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
WORLD_SCALE = 2.0
NEAREST_CHUNK = 1 << 20  # texels per nearest-vertex query


def to_world_mesh(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> Mesh:
    """Decoder-frame mesh (z-up, [-0.5, 0.5]³, colours in [0, 1]) -> y-up Mesh in [-1, 1]³ with vertex colours."""
    positions = vertices.detach().cpu().double().numpy() @ Z_UP_TO_Y_UP * WORLD_SCALE
    rgb = np.round(np.clip(colors[:, :3].detach().cpu().numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)
    return Mesh(vertices=positions, faces=faces.detach().cpu().numpy(), vertex_colors=rgb)


def bake_vertex_colours(target: Mesh, source: Mesh, texture_size: int) -> np.ndarray:
    """Texture uint8 [T, T, 3] for ``target`` (with UVs): each texel takes the colour of the nearest vertex of
    the finely tessellated, vertex-coloured ``source``; gutters take the nearest covered texel's colour."""
    from scipy.spatial import cKDTree

    from predictors.geometry.render import rasterize_uv_space

    passes = rasterize_uv_space(target, texture_size)
    covered = passes.mask.numpy()
    points = passes.positions.numpy()[covered]
    tree = cKDTree(source.vertices)
    nearest = np.concatenate(
        [
            tree.query(points[start : start + NEAREST_CHUNK])[1]
            for start in range(0, len(points), NEAREST_CHUNK)
        ]
    )
    texture = np.zeros((texture_size, texture_size, 3), dtype=np.uint8)
    texture[covered] = source.vertex_colors[nearest]
    return fill_unseen(texture, covered)
