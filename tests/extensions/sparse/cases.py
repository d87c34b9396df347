"""Random sparse voxel sets for the extensions.sparse tests."""

from __future__ import annotations

import torch

from extensions.sparse import SparseTensor


def random_coords(
    generator: torch.Generator, batch: int, resolution: int, density: float, shuffle: bool = True
) -> torch.Tensor:
    """int32 ``[N, 4]`` voxels of a random occupancy, batch-contiguous; rows shuffled within each batch."""
    occupied = torch.rand(batch, resolution, resolution, resolution, generator=generator) < density
    coords = torch.argwhere(occupied).int()
    if shuffle:
        keys = coords[:, 0].double() + torch.rand(coords.shape[0], generator=generator, dtype=torch.float64)
        coords = coords[torch.argsort(keys)]
    return coords


def random_sparse(
    generator: torch.Generator,
    batch: int,
    resolution: int,
    feature_shape: tuple[int, ...],
    density: float = 0.3,
    dtype: torch.dtype = torch.float64,
) -> SparseTensor:
    coords = random_coords(generator, batch, resolution, density)
    feats = torch.randn(coords.shape[0], *feature_shape, generator=generator, dtype=dtype)
    return SparseTensor(feats, coords)


def to_dense(x: SparseTensor, resolution: int) -> torch.Tensor:
    """``[B, C, R, R, R]`` grid with the features of ``x`` (2-D features) at its voxels, zeros elsewhere."""
    grid = x.feats.new_zeros(x.batch_size, x.feats.shape[1], resolution, resolution, resolution)
    b, i, j, k = x.coords.long().unbind(1)
    grid[b, :, i, j, k] = x.feats
    return grid


def sample_dense(grid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The ``[N, C]`` values of a ``[B, C, X, Y, Z]`` grid at ``coords``."""
    b, i, j, k = coords.long().unbind(1)
    return grid[b, :, i, j, k]
