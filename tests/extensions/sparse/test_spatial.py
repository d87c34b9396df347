"""Sparse downsample / upsample / subdivide against per-voxel Python oracles."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from extensions.sparse import SparseDownsample, SparseSubdivide, SparseUpsample
from tests.extensions.sparse.cases import random_sparse


def test_downsample_pools_like_trellis_in_sorted_order():
    g = torch.Generator().manual_seed(0)
    x = random_sparse(g, 2, 9, (3,))
    down = SparseDownsample(2)(x)
    children: dict[tuple[int, ...], list[int]] = {}
    for row, (b, i, j, k) in enumerate(x.coords.tolist()):
        children.setdefault((b, i // 2, j // 2, k // 2), []).append(row)
    parents = sorted(children)
    assert down.coords.tolist() == [list(p) for p in parents]
    # TRELLIS's mean includes the zero it reduces onto: sum / (count + 1).
    expected = torch.stack([x.feats[children[p]].sum(0) / (len(children[p]) + 1) for p in parents])
    torch.testing.assert_close(down.feats, expected)
    assert down.layout == [
        slice(0, sum(p[0] == 0 for p in parents)),
        slice(sum(p[0] == 0 for p in parents), len(parents)),
    ]
    assert down.scale == (Fraction(1, 2),) * 3


def test_downsample_upsample_round_trip_restores_voxels():
    g = torch.Generator().manual_seed(1)
    x = random_sparse(g, 2, 10, (4,))
    down = SparseDownsample(2)(x)
    coarse = down.replace(down.feats * 3 + 1)  # layers in between keep the cache
    up = SparseUpsample(2)(coarse)
    assert torch.equal(up.coords, x.coords) and up.layout == x.layout and up.scale == (1, 1, 1)
    row_of = {tuple(c): r for r, c in enumerate(coarse.coords.tolist())}
    parent = [row_of[(b, i // 2, j // 2, k // 2)] for b, i, j, k in x.coords.tolist()]
    torch.testing.assert_close(up.feats, coarse.feats[parent])


def test_upsample_needs_a_matching_downsample():
    g = torch.Generator().manual_seed(2)
    x = random_sparse(g, 1, 6, (2,))
    with pytest.raises(ValueError, match="SparseDownsample"):
        SparseUpsample(2)(x)
    with pytest.raises(ValueError, match="SparseDownsample"):
        SparseUpsample(3)(SparseDownsample(2)(x))


def test_subdivide_makes_eight_children_per_voxel():
    g = torch.Generator().manual_seed(3)
    x = random_sparse(g, 2, 5, (3,))
    sub = SparseSubdivide()(x)
    assert sub.feats.shape[0] == 8 * x.feats.shape[0]
    expected_coords = [
        [b, 2 * i + di, 2 * j + dj, 2 * k + dk]
        for b, i, j, k in x.coords.tolist()
        for di in (0, 1)
        for dj in (0, 1)
        for dk in (0, 1)
    ]
    assert sub.coords.tolist() == expected_coords
    assert torch.equal(sub.feats, x.feats.repeat_interleave(8, dim=0))
    assert sub.layout == [slice(s.start * 8, s.stop * 8) for s in x.layout]
    assert sub.scale == (2, 2, 2) and SparseSubdivide()(sub).scale == (4, 4, 4)
