"""Sparse attention against explicit softmax attention computed per window / per sample."""

from __future__ import annotations

import math

import pytest
import torch

from extensions.sparse import (
    SparseTensor,
    sparse_scaled_dot_product_attention,
    sparse_windowed_scaled_dot_product_self_attention,
)
from extensions.sparse import attention as attention_module
from tests.extensions.sparse.cases import random_coords, random_sparse


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[L, H, D]`` queries over ``[S, H, D]`` keys/values, written out in float64."""
    scores = torch.einsum("lhd,shd->hls", q.double(), k.double()) / math.sqrt(q.shape[-1])
    return torch.einsum("hls,shd->lhd", scores.softmax(-1), v.double())


def window_loop_oracle(qkv: SparseTensor, window: int, shift: int) -> torch.Tensor:
    """Group rows by ``(batch, (xyz + shift) // window)`` in Python and attend within each group."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, (b, x, y, z) in enumerate(qkv.coords.tolist()):
        groups.setdefault(
            (b, (x + shift) // window, (y + shift) // window, (z + shift) // window), []
        ).append(row)
    out = torch.zeros(qkv.feats.shape[0], *qkv.feats.shape[2:], dtype=torch.float64)
    for rows in groups.values():
        q, k, v = qkv.feats[rows].unbind(1)
        out[rows] = softmax_attention(q, k, v)
    return out


@pytest.mark.parametrize(
    ("resolution", "window", "shift", "density"),
    [(16, 8, 0, 0.2), (16, 8, 4, 0.2), (12, 4, 2, 0.3), (16, 4, 0, 0.05)],
)
def test_windowed_attention_matches_per_window_loop(resolution, window, shift, density):
    g = torch.Generator().manual_seed(resolution + window + shift)
    qkv = random_sparse(g, 2, resolution, (3, 2, 8), density)
    out = sparse_windowed_scaled_dot_product_self_attention(qkv, window, (shift, shift, shift))
    assert out.feats.shape == (qkv.feats.shape[0], 2, 8) and torch.equal(out.coords, qkv.coords)
    torch.testing.assert_close(out.feats, window_loop_oracle(qkv, window, shift), rtol=1e-10, atol=1e-10)


def test_windowed_attention_chunks_and_full_windows(monkeypatch):
    """Small chunks force several padded batches; a fully occupied grid has windows without padding."""
    monkeypatch.setattr(attention_module, "_WINDOW_CHUNK_TOKENS", 40)
    g = torch.Generator().manual_seed(11)
    qkv = random_sparse(g, 1, 16, (3, 2, 4), 0.15)
    out = sparse_windowed_scaled_dot_product_self_attention(qkv, 4, 3)  # int shift, as TRELLIS's swin passes
    torch.testing.assert_close(out.feats, window_loop_oracle(qkv, 4, 3), rtol=1e-10, atol=1e-10)

    full = random_sparse(g, 2, 8, (3, 2, 4), density=1.1)
    out = sparse_windowed_scaled_dot_product_self_attention(full, 4)
    torch.testing.assert_close(out.feats, window_loop_oracle(full, 4, 0), rtol=1e-10, atol=1e-10)


def test_window_partition_is_cached_per_shift():
    g = torch.Generator().manual_seed(12)
    qkv = random_sparse(g, 1, 8, (3, 1, 4))
    sparse_windowed_scaled_dot_product_self_attention(qkv, 4, 0)
    sparse_windowed_scaled_dot_product_self_attention(qkv, 4, 2)
    cached = qkv.get_spatial_cache()
    assert {"window_partition_(4, 4, 4)_(0, 0, 0)", "window_partition_(4, 4, 4)_(2, 2, 2)"} <= set(cached)


def per_sample_oracle(q: SparseTensor | torch.Tensor, k, v) -> list[torch.Tensor]:
    """Attention of batch element ``b`` of ``q`` over element ``b`` of ``k``/``v``, one sample at a time."""

    def sample(x, b):
        return x.feats[x.layout[b]] if isinstance(x, SparseTensor) else x[b]

    batch = q.batch_size if isinstance(q, SparseTensor) else q.shape[0]
    return [softmax_attention(sample(q, b), sample(k, b), sample(v, b)) for b in range(batch)]


def test_varlen_self_attention_matches_per_sample_loop():
    g = torch.Generator().manual_seed(21)
    qkv = random_sparse(g, 3, 7, (3, 2, 8), 0.2)
    assert len({s.stop - s.start for s in qkv.layout}) == 3  # different lengths
    out = sparse_scaled_dot_product_attention(qkv)
    q, k, v = (qkv.replace(t) for t in qkv.feats.unbind(1))
    torch.testing.assert_close(out.feats, torch.cat(per_sample_oracle(q, k, v)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sparse_scaled_dot_product_attention(q=q, k=k, v=v).feats, out.feats)


def test_varlen_cross_attention_with_dense_kv():
    g = torch.Generator().manual_seed(22)
    q = random_sparse(g, 2, 6, (4, 8), 0.3)
    kv = torch.randn(2, 5, 2, 4, 8, generator=g, dtype=torch.float64)
    out = sparse_scaled_dot_product_attention(q, kv)
    expected = per_sample_oracle(q, kv[:, :, 0], kv[:, :, 1])
    torch.testing.assert_close(out.feats, torch.cat(expected), rtol=1e-10, atol=1e-10)
    separate = sparse_scaled_dot_product_attention(q, kv[:, :, 0], kv[:, :, 1])
    torch.testing.assert_close(separate.feats, out.feats)


def test_dense_queries_over_sparse_keys():
    g = torch.Generator().manual_seed(23)
    kv = random_sparse(g, 2, 6, (2, 2, 4), 0.3)
    q = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64)
    out = sparse_scaled_dot_product_attention(q, kv)
    k, v = (kv.replace(t) for t in kv.feats.unbind(1))
    torch.testing.assert_close(out, torch.stack(per_sample_oracle(q, k, v)), rtol=1e-10, atol=1e-10)


def test_attention_rejects_bad_calls():
    g = torch.Generator().manual_seed(24)
    qkv = random_sparse(g, 1, 4, (3, 1, 4))
    with pytest.raises(ValueError, match="arguments"):
        sparse_scaled_dot_product_attention()
    with pytest.raises(ValueError, match=r"\[N, 3, H, D\]"):
        sparse_scaled_dot_product_attention(qkv.replace(qkv.feats[:, :2]))
    with pytest.raises(ValueError, match="batch sizes"):
        sparse_scaled_dot_product_attention(qkv.replace(qkv.feats[:, 0]), torch.zeros(2, 3, 2, 1, 4))
    with pytest.raises(ValueError, match="window_size"):
        sparse_windowed_scaled_dot_product_self_attention(qkv, 0)
    coords = random_coords(g, 1, 4, 0.5)
    with pytest.raises(ValueError, match=r"\[N, 3, H, D\]"):
        sparse_windowed_scaled_dot_product_self_attention(
            SparseTensor(torch.zeros(len(coords), 4), coords), 2
        )


@pytest.mark.cuda
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    g = torch.Generator().manual_seed(25)
    qkv = random_sparse(g, 2, 12, (3, 2, 16), 0.3, dtype=torch.float32)
    for attend in (
        lambda t: sparse_windowed_scaled_dot_product_self_attention(t, 4, 2),
        sparse_scaled_dot_product_attention,
    ):
        expected = attend(qkv).feats
        for dtype, tolerance in ((torch.float32, 1e-4), (torch.float16, 2e-2)):
            got = attend(qkv.to("cuda", dtype)).feats.float().cpu()
            torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
