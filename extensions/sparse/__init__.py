"""Sparse voxel tensors and the operations TRELLIS runs on them, in pure PyTorch.

* ``SparseTensor`` (coords int32 ``[N, 4]`` = batch, x, y, z; batch-contiguous), ``sparse_cat``,
  ``sparse_unbind``; elementwise ``+ - * /`` with tensors, scalars or per-batch ``[B, C]`` tensors.
* Feature-wise layers: ``SparseLinear``, ``SparseGroupNorm(32)`` (per batch element), ``SparseLayerNorm(32)``,
  ``SparseSiLU``, ``SparseGELU``, ``SparseReLU``.
* ``SparseConv3d``: submanifold convolution, parameters ``conv.weight [Co, k, k, k, Ci]`` and ``conv.bias``
  as in TRELLIS's spconv backend (``k = 1`` reproduces spconv's weight reinterpretation).
* ``SparseDownsample``, ``SparseUpsample``, ``SparseSubdivide``: resolution changes with TRELLIS semantics.
* ``sparse_scaled_dot_product_attention`` (full, variable length) and
  ``sparse_windowed_scaled_dot_product_self_attention`` (windowed, optionally shifted).

Optional native backends: ``SPARSE_CONV_BACKEND=spconv`` (when importable) and flash-attn on CUDA
(``SPARSE_ATTN_BACKEND=sdpa`` turns it off).
"""

from extensions.sparse.attention import (
    sparse_scaled_dot_product_attention,
    sparse_windowed_scaled_dot_product_self_attention,
)
from extensions.sparse.conv import SparseConv3d
from extensions.sparse.nn import (
    SparseGELU,
    SparseGroupNorm,
    SparseGroupNorm32,
    SparseLayerNorm,
    SparseLayerNorm32,
    SparseLinear,
    SparseReLU,
    SparseSiLU,
)
from extensions.sparse.spatial import SparseDownsample, SparseSubdivide, SparseUpsample
from extensions.sparse.tensor import SparseTensor, sparse_cat, sparse_unbind

__all__ = [
    "SparseConv3d",
    "SparseDownsample",
    "SparseGELU",
    "SparseGroupNorm",
    "SparseGroupNorm32",
    "SparseLayerNorm",
    "SparseLayerNorm32",
    "SparseLinear",
    "SparseReLU",
    "SparseSiLU",
    "SparseSubdivide",
    "SparseTensor",
    "SparseUpsample",
    "sparse_cat",
    "sparse_scaled_dot_product_attention",
    "sparse_unbind",
    "sparse_windowed_scaled_dot_product_self_attention",
]
