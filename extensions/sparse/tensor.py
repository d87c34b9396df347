"""``SparseTensor``: features on active voxels, with per-batch layout and caches shared along a network.

Coordinates are int32 ``[N, 4]`` rows ``(batch, x, y, z)``; the rows of one batch element are contiguous
and in batch order. ``layout[b]`` is the row slice of batch element ``b``. Operations that keep the
coordinates (``replace``, elementwise arithmetic, linear layers, norms) share one spatial-cache dict, so
neighbour maps and window partitions computed once are reused by every later layer at the same scale.

``scale`` is the resolution relative to the network input, per axis: ``SparseDownsample(2)`` halves it,
``SparseUpsample(2)`` and ``SparseSubdivide`` double it. Values below 1 are ``fractions.Fraction`` (TRELLIS
floors them to 0, which makes the input and the downsampled tensor share a cache key).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import torch

Scale = tuple[int | Fraction, ...]
SpatialCache = dict[Scale, dict[str, Any]]


def normalize_scale(scale: Sequence[int | Fraction]) -> Scale:
    """A hashable per-axis scale: whole numbers as ``int``, others as ``Fraction``."""
    values = tuple(Fraction(value) for value in scale)
    return tuple(int(value) if value.denominator == 1 else value for value in values)


def _layout_from_coords(coords: torch.Tensor, batch_size: int) -> list[slice]:
    batch = coords[:, 0].long()
    if batch.numel() and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("SparseTensor coords must be batch-contiguous: sort rows by batch index")
    counts = torch.bincount(batch, minlength=batch_size).tolist()
    if len(counts) > batch_size:
        raise ValueError(f"coords hold batch index {len(counts) - 1} but the batch size is {batch_size}")
    layout, start = [], 0
    for count in counts:
        layout.append(slice(start, start + count))
        start += count
    return layout


class SparseTensor:
    """Features ``feats [N, C...]`` at voxel coordinates ``coords [N, 4]`` (see the module docstring)."""

    def __init__(
        self,
        feats: torch.Tensor,
        coords: torch.Tensor,
        shape: Sequence[int] | None = None,
        layout: list[slice] | None = None,
        scale: Sequence[int | Fraction] = (1, 1, 1),
        spatial_cache: SpatialCache | None = None,
    ) -> None:
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must have shape [N, 4] (batch, x, y, z), got {tuple(coords.shape)}")
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats has {feats.shape[0]} rows but coords has {coords.shape[0]}")
        self.feats = feats
        self.coords = coords.to(torch.int32).contiguous()
        if shape is not None:
            batch_size = int(shape[0])
        elif layout is not None:
            batch_size = len(layout)
        else:
            batch_size = int(self.coords[:, 0].max()) + 1 if self.coords.shape[0] else 1
        self.layout = layout if layout is not None else _layout_from_coords(self.coords, batch_size)
        if len(self.layout) != batch_size:
            raise ValueError(f"layout has {len(self.layout)} slices for a batch of {batch_size}")
        self.scale = normalize_scale(scale)
        self.spatial_cache: SpatialCache = {} if spatial_cache is None else spatial_cache

    # ----------------------------------------------------------------------------------- properties
    @property
    def shape(self) -> torch.Size:
        """``[B, *feats.shape[1:]]``."""
        return torch.Size([len(self.layout), *self.feats.shape[1:]])

    @property
    def batch_size(self) -> int:
        return len(self.layout)

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    def dim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"SparseTensor(shape={tuple(self.shape)}, rows={self.feats.shape[0]}, scale={self.scale})"

    # ------------------------------------------------------------------------------- construction
    def replace(self, feats: torch.Tensor, coords: torch.Tensor | None = None) -> SparseTensor:
        """Same layout, scale and caches with new features (and optionally the same voxels elsewhere)."""
        return SparseTensor(
            feats,
            self.coords if coords is None else coords,
            layout=self.layout,
            scale=self.scale,
            spatial_cache=self.spatial_cache,
        )

    def to(self, *args: Any, **kwargs: Any) -> SparseTensor:
        """Like ``Tensor.to`` for the features; the coordinates follow the device and stay int32."""
        feats = self.feats.to(*args, **kwargs)
        return self.replace(feats, self.coords.to(feats.device))

    def type(self, dtype: torch.dtype) -> SparseTensor:
        return self.replace(self.feats.type(dtype))

    def cpu(self) -> SparseTensor:
        return self.to("cpu")

    def cuda(self) -> SparseTensor:
        return self.to("cuda")

    def half(self) -> SparseTensor:
        return self.type(torch.float16)

    def float(self) -> SparseTensor:
        return self.type(torch.float32)

    def detach(self) -> SparseTensor:
        return self.replace(self.feats.detach())

    def reshape(self, *shape: int) -> SparseTensor:
        """Reshape the per-voxel feature dimensions (the row count stays)."""
        return self.replace(self.feats.reshape(self.feats.shape[0], *shape))

    def unbind(self, dim: int = 0) -> list[SparseTensor]:
        return sparse_unbind(self, dim)

    def __getitem__(self, index: int | slice | Sequence[int]) -> SparseTensor:
        """The batch elements ``index`` as a new tensor, renumbered from 0 (fresh caches)."""
        if isinstance(index, int):
            picked = [index]
        elif isinstance(index, slice):
            picked = list(range(*index.indices(self.batch_size)))
        else:
            picked = [int(i) for i in index]
        rows = [self.layout[i] for i in picked]
        coords = torch.cat([self.coords[r] for r in rows])
        coords[:, 0] = torch.repeat_interleave(
            torch.arange(len(rows), dtype=torch.int32, device=coords.device),
            torch.tensor([r.stop - r.start for r in rows], device=coords.device),
        )
        return SparseTensor(torch.cat([self.feats[r] for r in rows]), coords, shape=(len(rows),))

    # -------------------------------------------------------------------------------- arithmetic
    def batch_broadcast(self, values: torch.Tensor) -> torch.Tensor:
        """Per-batch ``values [B, ...]`` repeated onto the rows of each batch element: ``[N, ...]``."""
        counts = torch.tensor([s.stop - s.start for s in self.layout], device=values.device)
        return torch.repeat_interleave(values, counts, dim=0, output_size=self.feats.shape[0])

    def _operand(self, other: SparseTensor | torch.Tensor | float) -> torch.Tensor | float:
        if isinstance(other, SparseTensor):
            return other.feats
        if isinstance(other, torch.Tensor) and other.dim() == len(self.shape) and other.shape[0] != 1:
            try:
                per_batch = torch.broadcast_to(other, self.shape)
            except RuntimeError:
                return other  # a per-row tensor [N, C...]
            return self.batch_broadcast(per_batch)
        return other

    def _merged_cache(self, other: object) -> SpatialCache:
        if not isinstance(other, SparseTensor) or other.spatial_cache is self.spatial_cache:
            return self.spatial_cache
        merged: SpatialCache = {key: dict(entries) for key, entries in other.spatial_cache.items()}
        for key, entries in self.spatial_cache.items():
            merged.setdefault(key, {}).update(entries)
        return merged

    def _elementwise(
        self, other: Any, op: Callable[[Any, Any], torch.Tensor], swap: bool = False
    ) -> SparseTensor:
        operand = self._operand(other)
        feats = op(operand, self.feats) if swap else op(self.feats, operand)
        return SparseTensor(
            feats, self.coords, layout=self.layout, scale=self.scale, spatial_cache=self._merged_cache(other)
        )

    def __add__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.add)

    def __radd__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.add, swap=True)

    def __sub__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.sub)

    def __rsub__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.sub, swap=True)

    def __mul__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.mul)

    def __rmul__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.mul, swap=True)

    def __truediv__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.truediv)

    def __rtruediv__(self, other: Any) -> SparseTensor:
        return self._elementwise(other, operator.truediv, swap=True)

    def __neg__(self) -> SparseTensor:
        return self.replace(-self.feats)

    # ------------------------------------------------------------------------------------ caches
    def register_spatial_cache(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for the current scale (shared with tensors derived from this one)."""
        self.spatial_cache.setdefault(self.scale, {})[key] = value

    def get_spatial_cache(self, key: str | None = None) -> Any:
        """The value stored under ``key`` at the current scale, or None (all entries when ``key`` is None)."""
        entries = self.spatial_cache.get(self.scale, {})
        return entries if key is None else entries.get(key)

    def cached_for_coords(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` cached under ``key``, reused only while the coordinates are unchanged."""
        cached = self.get_spatial_cache(key)
        if cached is not None:
            coords, value = cached
            if coords is self.coords or (
                coords.shape == self.coords.shape
                and coords.device == self.coords.device
                and torch.equal(coords, self.coords)
            ):
                return value
        value = build()
        self.register_spatial_cache(key, (self.coords, value))
        return value


def sparse_cat(inputs: Sequence[SparseTensor], dim: int = 0) -> SparseTensor:
    """Concatenate batches (``dim=0``, fresh caches) or feature dimensions (any other ``dim``)."""
    if not inputs:
        raise ValueError("sparse_cat needs at least one SparseTensor")
    if dim != 0:
        return inputs[0].replace(torch.cat([x.feats for x in inputs], dim=dim))
    coords, start = [], 0
    for x in inputs:
        shifted = x.coords.clone()
        shifted[:, 0] += start
        coords.append(shifted)
        start += x.batch_size
    return SparseTensor(torch.cat([x.feats for x in inputs]), torch.cat(coords), shape=(start,))


def sparse_unbind(x: SparseTensor, dim: int = 0) -> list[SparseTensor]:
    """Split into batch elements (``dim=0``) or along a feature dimension (same voxels and caches)."""
    if dim == 0:
        return [x[i] for i in range(x.batch_size)]
    return [x.replace(feats) for feats in x.feats.unbind(dim)]
