"""SparseTensor bookkeeping, arithmetic and feature-wise layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from extensions.sparse import (
    SparseGroupNorm,
    SparseGroupNorm32,
    SparseLayerNorm,
    SparseLinear,
    SparseSiLU,
    SparseTensor,
    sparse_cat,
    sparse_unbind,
)
from tests.extensions.sparse.cases import random_sparse


def test_layout_shape_and_contiguous_int32_coords():
    coords = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0], [2, 5, 5, 5]], dtype=torch.int64).T.contiguous().T
    assert not coords.is_contiguous()
    x = SparseTensor(torch.zeros(3, 4, 2), coords)
    assert x.coords.dtype == torch.int32 and x.coords.is_contiguous()
    assert x.layout == [slice(0, 2), slice(2, 2), slice(2, 3)]
    assert x.shape == torch.Size([3, 4, 2]) and x.batch_size == 3
    with pytest.raises(ValueError, match="batch-contiguous"):
        SparseTensor(torch.zeros(3, 1), coords.flip(0))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        SparseTensor(torch.zeros(3, 1), coords[:, :3])


def test_replace_and_casts_share_layout_and_caches():
    g = torch.Generator().manual_seed(0)
    x = random_sparse(g, 2, 6, (3,))
    x.register_spatial_cache("answer", 42)
    for y in (
        x.replace(x.feats * 2),
        x.float(),
        x.to(torch.float16),
        x.type(torch.float32),
        x.cpu(),
        x.detach(),
    ):
        assert y.layout is x.layout and y.coords is x.coords
        assert y.get_spatial_cache("answer") == 42
    assert x.to(torch.float16).dtype == torch.float16


def per_row(x: SparseTensor, per_batch: torch.Tensor) -> torch.Tensor:
    return torch.stack([per_batch[b] for b in x.coords[:, 0].tolist()])


def test_elementwise_ops_broadcast_per_batch():
    g = torch.Generator().manual_seed(1)
    x = random_sparse(g, 3, 5, (4,))
    y = x.replace(torch.rand(x.feats.shape, generator=g, dtype=torch.float64) + 1)
    per_batch = torch.rand(3, 4, generator=g, dtype=torch.float64) + 1
    rows = per_row(x, per_batch)
    torch.testing.assert_close((x + per_batch).feats, x.feats + rows)
    torch.testing.assert_close((x * per_batch).feats, x.feats * rows)
    torch.testing.assert_close((x - per_batch).feats, x.feats - rows)
    torch.testing.assert_close((x / per_batch).feats, x.feats / rows)
    torch.testing.assert_close((x * (1 + per_batch) + per_batch).feats, x.feats * (1 + rows) + rows)
    torch.testing.assert_close((2 - x).feats, 2 - x.feats)
    torch.testing.assert_close((2 / y).feats, 2 / y.feats)
    torch.testing.assert_close((x + y).feats, x.feats + y.feats)
    torch.testing.assert_close((-x).feats, -x.feats)
    channel = torch.rand(4, generator=g, dtype=torch.float64)
    torch.testing.assert_close((x * channel).feats, x.feats * channel)
    torch.testing.assert_close((x + x.feats).feats, 2 * x.feats)  # a per-row tensor


def test_elementwise_op_merges_caches_of_different_tensors():
    g = torch.Generator().manual_seed(2)
    x = random_sparse(g, 1, 5, (2,))
    y = SparseTensor(torch.ones_like(x.feats), x.coords)
    x.register_spatial_cache("a", 1)
    y.register_spatial_cache("b", 2)
    z = x + y
    assert z.get_spatial_cache("a") == 1 and z.get_spatial_cache("b") == 2
    assert x.get_spatial_cache("b") is None


def test_cat_unbind_and_batch_selection_round_trip():
    g = torch.Generator().manual_seed(3)
    a, b = random_sparse(g, 2, 5, (3,)), random_sparse(g, 1, 5, (3,))
    both = sparse_cat([a, b])
    assert both.batch_size == 3 and both.coords[:, 0].tolist() == sorted(both.coords[:, 0].tolist())
    parts = sparse_unbind(both, 0)
    for part, (source, index) in zip(parts, [(a, 0), (a, 1), (b, 0)], strict=True):
        rows = source.layout[index]
        assert torch.equal(part.feats, source.feats[rows])
        assert torch.equal(part.coords[:, 1:], source.coords[rows, 1:]) and (part.coords[:, 0] == 0).all()
    wide = sparse_cat([a, a * 2], dim=-1)
    assert wide.shape == torch.Size([2, 6]) and wide.layout is a.layout
    halves = wide.reshape(2, 3).unbind(1)
    torch.testing.assert_close(halves[1].feats, 2 * a.feats)
    assert torch.equal(both[1:].feats, torch.cat([a.feats[a.layout[1]], b.feats]))


def test_group_norm_is_per_batch_element():
    g = torch.Generator().manual_seed(4)
    x = random_sparse(g, 3, 6, (8,))
    norm = SparseGroupNorm(4, 8).double()
    with torch.no_grad():
        norm.weight.normal_(generator=g)
        norm.bias.normal_(generator=g)
    out = norm(x).feats
    for rows in x.layout:
        element = x.feats[rows].T.unsqueeze(0)  # [1, C, n]
        expected = F.group_norm(element, 4, norm.weight, norm.bias, norm.eps)[0].T
        torch.testing.assert_close(out[rows], expected)


def test_group_norm32_computes_in_float32():
    g = torch.Generator().manual_seed(5)
    x = random_sparse(g, 2, 6, (8,), dtype=torch.float32)
    norm = SparseGroupNorm32(2, 8)
    out = norm(x.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.feats.float(), norm(x.half().float()).feats, rtol=1e-3, atol=1e-3)
    assert set(norm.state_dict()) == {"weight", "bias"}


def test_layer_norm_linear_and_activation_act_per_voxel():
    g = torch.Generator().manual_seed(6)
    x = random_sparse(g, 2, 5, (6,), dtype=torch.float32)
    norm, linear = SparseLayerNorm(6), SparseLinear(6, 3)
    torch.testing.assert_close(norm(x).feats, F.layer_norm(x.feats, (6,), norm.weight, norm.bias))
    torch.testing.assert_close(linear(x).feats, x.feats @ linear.weight.T + linear.bias)
    torch.testing.assert_close(SparseSiLU()(x).feats, F.silu(x.feats))
    assert set(linear.state_dict()) == {"weight", "bias"}
