"""Submanifold sparse convolution against dense ``F.conv3d`` (and spconv when it is installed)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from extensions.sparse import SparseConv3d, SparseTensor
from extensions.sparse.kernel_map import build_kernel_map
from tests.extensions.sparse.cases import random_coords, random_sparse, sample_dense, to_dense


def dense_oracle(
    x: SparseTensor, resolution: int, weight: torch.Tensor, bias: torch.Tensor, dilation: int = 1
):
    """Dense cross-correlation with ``weight [Co, k, k, k, Ci]`` sampled at the active voxels."""
    kernel = weight.permute(0, 4, 1, 2, 3)
    padding = weight.shape[1] // 2 * dilation
    out = F.conv3d(to_dense(x, resolution), kernel, bias, padding=padding, dilation=dilation)
    return sample_dense(out, x.coords)


def make_conv(ci: int, co: int, kernel_size: int, dilation: int = 1) -> SparseConv3d:
    conv = SparseConv3d(ci, co, kernel_size, dilation=dilation).double()
    with torch.no_grad():
        conv.conv.bias.normal_()
    return conv.eval()


@pytest.mark.parametrize(
    ("resolution", "ci", "co", "dilation", "density"),
    [(8, 5, 7, 1, 0.3), (12, 16, 4, 1, 0.15), (16, 3, 9, 2, 0.2), (9, 6, 6, 1, 0.9)],
)
def test_conv3_matches_dense_conv3d(resolution, ci, co, dilation, density):
    g = torch.Generator().manual_seed(resolution * 100 + ci)
    x = random_sparse(g, 2, resolution, (ci,), density)
    conv = make_conv(ci, co, 3, dilation)
    assert tuple(conv.conv.weight.shape) == (co, 3, 3, 3, ci)
    with torch.no_grad():
        out = conv(x)
    assert torch.equal(out.coords, x.coords) and out.layout == x.layout
    expected = dense_oracle(x, resolution, conv.conv.weight, conv.conv.bias, dilation)
    torch.testing.assert_close(out.feats, expected, rtol=1e-10, atol=1e-10)


def test_conv5_matches_dense_conv3d():
    g = torch.Generator().manual_seed(5)
    x = random_sparse(g, 1, 10, (4,), 0.25)
    conv = make_conv(4, 3, 5)
    with torch.no_grad():
        out = conv(x)
    expected = dense_oracle(x, 10, conv.conv.weight, conv.conv.bias)
    torch.testing.assert_close(out.feats, expected, rtol=1e-10, atol=1e-10)


def test_conv1_reinterprets_weight_memory_like_spconv():
    g = torch.Generator().manual_seed(1)
    x = random_sparse(g, 2, 8, (6,))
    conv = make_conv(6, 4, 1)
    weight, bias = conv.conv.weight, conv.conv.bias
    with torch.no_grad():
        out = conv(x).feats
    # spconv's 1x1 path reads the stored [Co, 1, 1, 1, Ci] memory as a [Ci, Co] matrix.
    reinterpreted = weight.reshape(6, 4).T.reshape(4, 6, 1, 1, 1).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(out, dense_oracle(x, 8, reinterpreted, bias), rtol=1e-10, atol=1e-10)
    true_conv = dense_oracle(x, 8, weight, bias)
    assert (out - true_conv).abs().max() > 0.1


def test_conv1_equals_true_conv_only_for_symmetric_reinterpretation():
    """With Ci == Co the reinterpretation is a transpose: a symmetric weight gives the true 1x1 conv."""
    g = torch.Generator().manual_seed(2)
    x = random_sparse(g, 1, 8, (5,))
    conv = make_conv(5, 5, 1)
    with torch.no_grad():
        square = torch.randn(5, 5, generator=g, dtype=torch.float64)
        conv.conv.weight.copy_((square + square.T).reshape(5, 1, 1, 1, 5))
        out = conv(x).feats
    torch.testing.assert_close(out, dense_oracle(x, 8, conv.conv.weight, conv.conv.bias))


def test_gradients_match_dense_conv3d():
    g = torch.Generator().manual_seed(3)
    x = random_sparse(g, 2, 8, (4,))
    conv = make_conv(4, 3, 3)
    feats = x.feats.clone().requires_grad_(True)
    upstream = torch.randn(x.feats.shape[0], 3, generator=g, dtype=torch.float64)
    (conv(x.replace(feats)).feats * upstream).sum().backward()
    ours = (feats.grad, conv.conv.weight.grad, conv.conv.bias.grad)

    weight = conv.conv.weight.detach().clone().requires_grad_(True)
    bias = conv.conv.bias.detach().clone().requires_grad_(True)
    dense_feats = x.feats.clone().requires_grad_(True)
    (dense_oracle(x.replace(dense_feats), 8, weight, bias) * upstream).sum().backward()
    for got, want in zip(ours, (dense_feats.grad, weight.grad, bias.grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_neighbour_map_is_cached_and_checked_against_coords():
    g = torch.Generator().manual_seed(4)
    x = random_sparse(g, 1, 8, (3,))
    conv = make_conv(3, 3, 3)
    with torch.no_grad():
        conv(x)
        cached = x.get_spatial_cache("submanifold_map_3_1")
        conv(conv(x))
        assert x.get_spatial_cache("submanifold_map_3_1") is cached
        # Other voxels sharing the cache dict at the same scale must not reuse the stale map.
        other_coords = random_coords(g, 1, 8, 0.5)
        other = SparseTensor(
            torch.randn(other_coords.shape[0], 3, generator=g, dtype=torch.float64),
            other_coords,
            spatial_cache=x.spatial_cache,
        )
        out = conv(other)
    expected = dense_oracle(other, 8, conv.conv.weight, conv.conv.bias)
    torch.testing.assert_close(out.feats, expected, rtol=1e-10, atol=1e-10)


def test_state_dict_keys_follow_trellis_spconv_backend():
    conv = SparseConv3d(8, 16, 3)
    assert {k: tuple(v.shape) for k, v in conv.state_dict().items()} == {
        "conv.weight": (16, 3, 3, 3, 8),
        "conv.bias": (16,),
    }
    assert set(SparseConv3d(8, 16, 1, bias=False).state_dict()) == {"conv.weight"}


def test_rejects_unsupported_layers_and_inputs():
    with pytest.raises(ValueError, match="submanifold"):
        SparseConv3d(4, 4, 3, stride=2)
    with pytest.raises(ValueError, match="odd"):
        SparseConv3d(4, 4, 2)
    coords = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="more than once"):
        build_kernel_map(coords, 3)


def _spconv():
    return pytest.importorskip("spconv.pytorch", reason="spconv is not installed")


@pytest.mark.parametrize(("kernel_size", "ci", "co"), [(3, 6, 5), (1, 6, 4)])
def test_matches_spconv(kernel_size, ci, co):
    spconv = _spconv()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU kernels are not thread-safe
    try:
        g = torch.Generator().manual_seed(kernel_size)
        x = random_sparse(g, 2, 12, (ci,), dtype=torch.float32)
        reference = spconv.SubMConv3d(ci, co, kernel_size, bias=True).train()
        ours = SparseConv3d(ci, co, kernel_size)
        ours.conv.load_state_dict(reference.state_dict())
        with torch.no_grad():
            spatial = (x.coords[:, 1:].amax(0) + 1).tolist()
            expected = reference(spconv.SparseConvTensor(x.feats, x.coords, spatial, 2)).features
            got = ours(x).feats
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_spconv_backend_matches_torch_backend(monkeypatch):
    _spconv()
    g = torch.Generator().manual_seed(7)
    x = random_sparse(g, 2, 10, (4,), dtype=torch.float32)
    ours = SparseConv3d(4, 6, 3).eval()
    monkeypatch.setenv("SPARSE_CONV_BACKEND", "spconv")
    native = SparseConv3d(4, 6, 3).eval()
    assert native.uses_spconv and not ours.uses_spconv
    native.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(native(x).feats, ours(x).feats, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(native(x).feats, ours(x).feats, rtol=1e-5, atol=1e-5)  # cached indices


@pytest.mark.cuda
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    g = torch.Generator().manual_seed(8)
    x = random_sparse(g, 2, 12, (8,), dtype=torch.float32)
    conv = SparseConv3d(8, 6, 3).eval()
    with torch.no_grad():
        expected = conv(x).feats
        got = conv.cuda()(x.cuda()).feats.cpu()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
