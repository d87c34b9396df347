"""FlexiCubes extraction (predictors.image_to_3d.trellis.flexicubes) on analytic and random fields."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from predictors.geometry.export import is_closed
from predictors.geometry.surface import signed_volume
from predictors.image_to_3d.trellis.flexicubes import (
    CHANNELS,
    CUBE_EDGES,
    EDGE_PATCH,
    PATCH_COUNT,
    extract_mesh,
)

CORNERS = torch.tensor([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)])


def _dense_voxels(resolution: int) -> torch.Tensor:
    axis = torch.arange(resolution)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def _corner_points(coords: torch.Tensor, resolution: int) -> torch.Tensor:
    """Corner positions [N, 8, 3] in the decoder frame [-0.5, 0.5]³."""
    return (coords[:, None, :] + CORNERS).double() / resolution - 0.5


def _sphere_feats(coords: torch.Tensor, resolution: int, radius: float) -> torch.Tensor:
    feats = torch.zeros(len(coords), CHANNELS)
    # The extractor subtracts 1/R from every sdf; add it back so the zero set is the sphere itself.
    feats[:, 0:8] = (_corner_points(coords, resolution).norm(dim=-1) - radius + 1.0 / resolution).float()
    return feats


def _euler_characteristic(faces: np.ndarray, vertex_count: int) -> int:
    edges = np.unique(
        np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0
    )
    return vertex_count - len(edges) + len(faces)


def test_sphere_is_closed_outward_and_on_the_surface():
    resolution, radius = 32, 0.3
    coords = _dense_voxels(resolution)
    mesh = extract_mesh(coords, _sphere_feats(coords, resolution, radius), resolution)
    vertices, faces = mesh.vertices.numpy().astype(np.float64), mesh.faces.numpy()
    voxel = 1.0 / resolution

    assert is_closed(faces)
    assert _euler_characteristic(faces, len(vertices)) == 2  # one sphere-like surface
    assert np.abs(np.linalg.norm(vertices, axis=1) - radius).max() < 0.1 * voxel
    volume = signed_volume(vertices, faces)
    assert volume > 0 and abs(volume / (4.0 / 3.0 * np.pi * radius**3) - 1.0) < 0.02

    rng = np.random.default_rng(0)
    samples = rng.normal(size=(20_000, 3))
    samples = radius * samples / np.linalg.norm(samples, axis=1, keepdims=True)
    centroids = vertices[faces].mean(axis=1)
    to_mesh = cKDTree(np.concatenate([vertices, centroids])).query(samples)[0]
    to_sphere = np.abs(np.linalg.norm(centroids, axis=1) - radius)
    assert (to_mesh.mean() + to_sphere.mean()) < 0.5 * voxel  # symmetric Chamfer distance
    assert to_mesh.max() < voxel


def test_colours_are_sigmoid_of_constant_logits_and_deform_moves_vertices():
    resolution, radius = 16, 0.3
    coords = _dense_voxels(resolution)
    feats = _sphere_feats(coords, resolution, radius)
    feats[:, 53:101] = 1.5
    plain = extract_mesh(coords, feats, resolution)
    assert torch.allclose(
        plain.colors, torch.full_like(plain.colors, torch.sigmoid(torch.tensor(1.5))), atol=1e-6
    )
    assert plain.colors.shape[1] == 6

    feats[:, 8:32] = 50.0  # tanh saturates: every grid vertex moves by +1/(2R) on every axis
    moved = extract_mesh(coords, feats, resolution)
    assert torch.equal(moved.faces, plain.faces)
    shift = moved.vertices - plain.vertices
    assert torch.allclose(shift, torch.full_like(shift, 0.5 / resolution), atol=1e-5)


def _directed_edge_counts(faces: np.ndarray) -> tuple[dict, dict]:
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges, counts = np.unique(directed, axis=0, return_counts=True)
    return dict(zip(map(tuple, edges), counts, strict=True)), dict(
        zip(map(tuple, edges[:, ::-1]), counts, strict=True)
    )


def test_random_fields_give_closed_consistently_wound_meshes():
    """Smooth random fields hit ambiguous faces; neighbouring cubes must agree (no holes, one winding).

    Where two neighbours both join the two segments of an ambiguous face through their interiors, dual
    marching cubes gives an edge with four faces; such edges are allowed but must stay rare.
    """
    resolution = 16
    rng = np.random.default_rng(3)
    coords = _dense_voxels(resolution)
    corners = coords[:, None, :] + CORNERS
    for _ in range(3):
        grid = ndimage.gaussian_filter(rng.normal(size=(resolution + 1,) * 3), 1.0)
        grid[[0, -1], :, :] = grid[:, [0, -1], :] = grid[:, :, [0, -1]] = 1.0  # outside at the border
        feats = torch.zeros(len(coords), CHANNELS)
        values = grid[corners[..., 0], corners[..., 1], corners[..., 2]]
        feats[:, 0:8] = torch.from_numpy(values).float() + 1.0 / resolution
        feats[:, 32:53] = torch.from_numpy(rng.normal(size=(len(coords), 21))).float()
        mesh = extract_mesh(coords, feats, resolution)
        faces = mesh.faces.numpy()
        forward, backward = _directed_edge_counts(faces)
        assert len(faces) > 1000 and forward == backward  # every edge used equally often in both directions
        assert sum(count > 1 for count in forward.values()) < 0.01 * len(forward)
        assert np.isfinite(mesh.vertices.numpy()).all() and mesh.vertices.abs().max() <= 0.5 + 1e-6


def test_patch_table_cases():
    edge_sets = {
        case: [set(np.flatnonzero(EDGE_PATCH[case] == patch)) for patch in range(PATCH_COUNT[case])]
        for case in range(256)
    }
    assert PATCH_COUNT[0] == PATCH_COUNT[255] == 0
    for corner in range(8):  # one corner inside: one triangle-like patch over its three edges
        patches = edge_sets[1 << corner]
        assert len(patches) == 1 and all(corner in CUBE_EDGES[e] for e in patches[0]) and len(patches[0]) == 3
    assert len(edge_sets[(1 << 0) | (1 << 7)]) == 2  # opposite corners inside: two separate caps
    assert len(edge_sets[(1 << 0) | (1 << 3)]) == 2  # face diagonal inside: separated on the face
    tube = 255 & ~((1 << 0) | (1 << 3))  # its complement: one patch (a tube) over all six crossing edges
    assert len(edge_sets[tube]) == 1 and len(edge_sets[tube][0]) == 6
    for case in range(256):  # every crossing edge belongs to exactly one patch
        inside = [(case >> c) & 1 for c in range(8)]
        crossing = {e for e, (a, b) in enumerate(CUBE_EDGES) if inside[a] != inside[b]}
        assert set().union(*edge_sets[case]) == crossing


def test_empty_and_bad_inputs():
    coords = _dense_voxels(4)
    empty = extract_mesh(coords, torch.ones(len(coords), CHANNELS), 4)
    assert empty.vertices.shape == (0, 3) and empty.faces.shape == (0, 3)
    with pytest.raises(ValueError, match="feats"):
        extract_mesh(coords, torch.zeros(len(coords), 100), 4)
    with pytest.raises(ValueError, match="coords must lie"):
        extract_mesh(coords + 1, torch.zeros(len(coords), CHANNELS), 4)
