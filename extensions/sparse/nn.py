"""Feature-wise layers on ``SparseTensor``s, with the parameter names of their ``torch.nn`` bases."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from extensions.sparse.tensor import SparseTensor


class SparseLinear(nn.Linear):
    """``nn.Linear`` on the features of every voxel."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


class SparseSiLU(nn.SiLU):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


class SparseGELU(nn.GELU):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


class SparseReLU(nn.ReLU):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(super().forward(x.feats))


def sparse_group_norm(
    x: SparseTensor,
    num_groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """GroupNorm of ``x.feats [N, C]`` with statistics over all voxels of each batch element separately.

    Equal to ``F.group_norm`` on each element's features laid out as ``[1, C, n_b]``. Statistics are
    accumulated in at least float32; the result has the dtype of the features.
    """
    rows, channels = x.feats.shape
    if channels % num_groups:
        raise ValueError(f"{channels} channels cannot be split into {num_groups} groups")
    stats_dtype = torch.promote_types(x.dtype, torch.float32)
    grouped = x.feats.to(stats_dtype).reshape(rows, num_groups, channels // num_groups)
    batch = x.coords[:, 0].long()
    counts = torch.tensor([s.stop - s.start for s in x.layout], device=x.device, dtype=stats_dtype)
    per_group = counts[:, None] * grouped.shape[2]
    zeros = grouped.new_zeros(x.batch_size, num_groups)
    mean = zeros.index_add(0, batch, grouped.sum(2)) / per_group
    centered = grouped - mean[batch].unsqueeze(2)
    var = zeros.index_add(0, batch, centered.square().sum(2)) / per_group
    normed = (centered * torch.rsqrt(var + eps)[batch].unsqueeze(2)).reshape(rows, channels)
    normed = normed.to(x.dtype)
    if weight is not None:
        normed = torch.addcmul(bias, normed, weight) if bias is not None else normed * weight
    return normed


class SparseGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` computed per batch element over all of its voxels (TRELLIS semantics)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(sparse_group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


class SparseGroupNorm32(SparseGroupNorm):
    """``SparseGroupNorm`` computed in float32, returned in the input dtype."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return super().forward(x.float()).type(x.dtype)


class SparseLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the channels of every voxel."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(F.layer_norm(x.feats, self.normalized_shape, self.weight, self.bias, self.eps))


class SparseLayerNorm32(SparseLayerNorm):
    """``SparseLayerNorm`` computed in float32, returned in the input dtype."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return super().forward(x.float()).type(x.dtype)
