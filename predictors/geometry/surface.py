"""Occupancy grid -> clean, outward-facing triangle mesh (marching cubes, smoothing, decimation)."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch
import trimesh
from scipy.sparse import csgraph
from skimage import measure

from predictors.geometry.mesh import Mesh
from predictors.geometry.uv import decimate

# Taubin parameters: shrink by LAMBDA, re-inflate by NU (0 < 1/LAMBDA - 1/NU < 0.1 keeps the volume).
_TAUBIN_LAMBDA = 0.5
_TAUBIN_NU = 0.52


def extract_surface(
    grid: torch.Tensor | np.ndarray,
    bound: float = 1.0,
    *,
    smooth_iterations: int = 10,
    target_faces: int | None = 40_000,
    min_component_fraction: float = 0.01,
) -> Mesh:
    """The 0.5 level set of an occupancy grid as a closed mesh in world coordinates.

    Args:
        grid: occupancy [R, R, R] indexed [x, y, z], sampled at ``linspace(-bound, bound, R)`` per axis
            (the layout of ``carve_visual_hull``); it is padded with empty samples so the surface closes.
        bound: half side of the sampled cube.
        smooth_iterations: Taubin half-steps (alternating shrink / inflate; 0 disables smoothing).
        target_faces: decimate to about this many faces (None keeps the marching-cubes resolution).
        min_component_fraction: drop connected pieces with fewer faces than this fraction of the total.

    Raises:
        ValueError: if nothing in the grid reaches the 0.5 level (an empty hull).
    """
    values = grid.detach().cpu().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    values = values.astype(np.float32, copy=False)
    if values.ndim != 3 or len(set(values.shape)) != 1 or values.shape[0] < 2:
        raise ValueError(f"extract_surface: need a cubic grid [R, R, R], got {values.shape}")
    if not (values > 0.5).any():
        raise ValueError(
            "The reconstructed volume is empty: the silhouettes share no common 3D region. "
            "Check that each view shows the whole object and follows the documented camera convention."
        )
    step = 2.0 * bound / (values.shape[0] - 1)
    padded = np.pad(values, 1)
    vertices, faces, _, _ = measure.marching_cubes(padded, level=0.5, spacing=(step, step, step))
    vertices = vertices - (step + bound)  # padded sample index 1 is world coordinate -bound

    vertices, faces = _keep_large_components(vertices, faces.astype(np.int64), min_component_fraction)
    if smooth_iterations > 0:
        shape = trimesh.Trimesh(vertices, faces, process=False)
        trimesh.smoothing.filter_taubin(
            shape, lamb=_TAUBIN_LAMBDA, nu=_TAUBIN_NU, iterations=smooth_iterations
        )
        vertices = np.asarray(shape.vertices)
    mesh = Mesh(vertices=vertices, faces=faces)
    if target_faces is not None:
        mesh = decimate(mesh, target_faces)
    if signed_volume(mesh.vertices, mesh.faces) < 0:
        mesh = mesh.copy_with(faces=mesh.faces[:, ::-1])
    return mesh


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh; positive when its faces wind counter-clockwise seen from outside."""
    corners = vertices[faces].astype(np.float64)
    return float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0)


def _keep_large_components(
    vertices: np.ndarray, faces: np.ndarray, min_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected pieces smaller than ``min_fraction`` of all faces, then unreferenced vertices."""
    count = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)
    )
    _, labels = csgraph.connected_components(adjacency, directed=False)
    face_labels = labels[faces[:, 0]]
    sizes = np.bincount(face_labels)
    faces = faces[sizes[face_labels] >= min_fraction * len(faces)]
    used = np.unique(faces)
    remap = np.full(count, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]
