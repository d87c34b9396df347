"""Resolution changes of a ``SparseTensor`` with TRELLIS's semantics.

* ``SparseDownsample(f)``: voxels ``coords // f`` with TRELLIS's pooled features, ``sum / (count + 1)`` (its
  mean includes the zero it reduces onto), sorted by ``(batch, x, y, z)``; it caches the fine coordinates, layout and parent index for the matching upsample.
* ``SparseUpsample(f)``: back to the cached fine voxels (in their original order), each copying its parent.
* ``SparseSubdivide()``: every voxel becomes its 8 children at ``2 * coords + (i, j, k)``, in the order
  ``(0,0,0), (0,0,1), (0,1,0), ..., (1,1,1)``, parent by parent, each copying the parent's features.
"""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

from extensions.sparse.tensor import SparseTensor


def _factor(factor: int | tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    values = tuple(factor) if isinstance(factor, tuple | list) else (factor,) * 3
    if len(values) != 3 or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"factor must be a positive int or three positive ints, got {factor}")
    return tuple(int(v) for v in values)


def _cache_key(factor: tuple[int, int, int], what: str) -> str:
    return f"upsample_{factor}_{what}"


class SparseDownsample(nn.Module):
    """Mean pooling onto the voxels ``coords // factor``."""

    def __init__(self, factor: int | tuple[int, int, int] | list[int]) -> None:
        super().__init__()
        self.factor = _factor(factor)

    def forward(self, x: SparseTensor) -> SparseTensor:
        factor = torch.tensor(self.factor, device=x.device, dtype=torch.int64)
        coarse = x.coords.long()
        coarse[:, 1:] = torch.div(coarse[:, 1:], factor, rounding_mode="floor")
        size_x, size_y, size_z = (coarse[:, 1:].amax(0) + 1).tolist()
        keys = ((coarse[:, 0] * size_x + coarse[:, 1]) * size_y + coarse[:, 2]) * size_z + coarse[:, 3]
        keys, parent = torch.unique(keys, return_inverse=True)  # sorted, i.e. in (batch, x, y, z) order
        count = keys.numel()
        columns = []
        for size in (size_z, size_y, size_x):
            columns.append(keys % size)
            keys = keys.div(size, rounding_mode="floor")
        coords = torch.stack([keys, *reversed(columns)], dim=1)

        counts = torch.bincount(parent, minlength=count).to(x.dtype)
        sums = x.feats.new_zeros(count, *x.feats.shape[1:]).index_add_(0, parent, x.feats)
        # TRELLIS pools with scatter_reduce(..., "mean") onto zeros with include_self=True, so the initial zero
        # counts as one more member: sum / (count + 1). The released weights were trained with it.
        feats = sums / (counts + 1).reshape(-1, *([1] * (x.feats.dim() - 1)))

        out = SparseTensor(
            feats,
            coords,
            shape=x.shape,
            scale=tuple(Fraction(s) / f for s, f in zip(x.scale, self.factor, strict=True)),
            spatial_cache=x.spatial_cache,
        )
        out.register_spatial_cache(_cache_key(self.factor, "coords"), x.coords)
        out.register_spatial_cache(_cache_key(self.factor, "layout"), x.layout)
        out.register_spatial_cache(_cache_key(self.factor, "idx"), parent)
        return out


class SparseUpsample(nn.Module):
    """Nearest-neighbour upsampling onto the voxels cached by the matching ``SparseDownsample``."""

    def __init__(self, factor: int | tuple[int, int, int] | list[int]) -> None:
        super().__init__()
        self.factor = _factor(factor)

    def forward(self, x: SparseTensor) -> SparseTensor:
        coords = x.get_spatial_cache(_cache_key(self.factor, "coords"))
        layout = x.get_spatial_cache(_cache_key(self.factor, "layout"))
        parent = x.get_spatial_cache(_cache_key(self.factor, "idx"))
        if coords is None or layout is None or parent is None:
            raise ValueError(
                f"SparseUpsample({self.factor}) needs a tensor produced by SparseDownsample({self.factor}) "
                "(or derived from one at the same scale)"
            )
        return SparseTensor(
            x.feats[parent],
            coords,
            layout=layout,
            scale=tuple(s * f for s, f in zip(x.scale, self.factor, strict=True)),
            spatial_cache=x.spatial_cache,
        )


class SparseSubdivide(nn.Module):
    """Each voxel to its 8 children at twice the resolution, features copied (see the module docstring)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        children = torch.cartesian_prod(*[torch.arange(2, device=x.device, dtype=torch.int32)] * 3)
        coords = x.coords.clone()
        coords[:, 1:] *= 2
        coords = coords[:, None, :].repeat(1, 8, 1)
        coords[:, :, 1:] += children
        feats = x.feats.unsqueeze(1).expand(-1, 8, *x.feats.shape[1:]).flatten(0, 1)
        return SparseTensor(
            feats,
            coords.flatten(0, 1),
            layout=[slice(s.start * 8, s.stop * 8) for s in x.layout],
            scale=tuple(s * 2 for s in x.scale),
            spatial_cache=x.spatial_cache,
        )
