"""Submanifold sparse convolution with spconv's parameter layout, in pure PyTorch (spconv optional).

``SparseConv3d(...).conv`` holds ``weight [Co, k, k, k, Ci]`` and ``bias [Co]``, so TRELLIS checkpoints load
under ``<prefix>.conv.weight`` / ``<prefix>.conv.bias``. The output voxels are the input voxels, in the same
order. ``SPARSE_CONV_BACKEND=spconv`` runs layers built afterwards through ``spconv.SubMConv3d`` when it
is importable (on CPU pinned to one thread: its CPU kernels are not thread-safe).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from extensions.sparse.kernel_map import KernelMap, build_kernel_map
from extensions.sparse.tensor import SparseTensor

_BACKEND_ENV = "SPARSE_CONV_BACKEND"
_BACKEND_CHOICES = ("torch", "spconv")


def _single(value: int | tuple[int, ...], name: str) -> int:
    values = value if isinstance(value, tuple | list) else (value,)
    if len(set(values)) != 1:
        raise ValueError(f"{name} must be the same on all axes, got {value}")
    return int(values[0])


def submanifold_conv3d(
    feats: torch.Tensor, kernel_map: KernelMap, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``feats [N, Ci]`` convolved with ``weight [Co, k, k, k, Ci]`` over the pairs of ``kernel_map``.

    For ``k = 1`` this reproduces spconv 2.x, which multiplies by the weight's memory read as ``[Ci, Co]``
    (not by its transpose; spconv issue #450) — the convention TRELLIS checkpoints were trained with.
    Larger kernels accumulate one gather-GEMM-scatter per offset that has neighbours.
    """
    out_channels, in_channels = weight.shape[0], weight.shape[-1]
    if feats.dim() != 2 or feats.shape[1] != in_channels:
        raise ValueError(f"expected features [N, {in_channels}], got {tuple(feats.shape)}")
    if weight.shape[1:4] == (1, 1, 1):
        return feats @ weight.reshape(in_channels, out_channels) + (0 if bias is None else bias)

    taps = weight.reshape(out_channels, -1, in_channels)
    if taps.shape[1] != kernel_map.kernel_size**3:
        raise ValueError(
            f"weight {tuple(weight.shape)} does not fit a kernel map of size {kernel_map.kernel_size}"
        )
    center = taps[:, kernel_map.center].T
    out = torch.addmm(bias, feats, center) if bias is not None else feats @ center
    differentiable = torch.is_grad_enabled() and (feats.requires_grad or weight.requires_grad)
    if differentiable:
        for offset, input_rows, output_rows in kernel_map.pairs:
            out = out.index_add(0, output_rows, feats[input_rows] @ taps[:, offset].T)
        return out

    # Inference: reuse one gather buffer and one product buffer across offsets.
    most = max((rows.numel() for _, rows, _ in kernel_map.pairs), default=0)
    gathered = feats.new_empty(most, in_channels)
    product = feats.new_empty(most, out_channels)
    for offset, input_rows, output_rows in kernel_map.pairs:
        count = input_rows.numel()
        torch.index_select(feats, 0, input_rows, out=gathered[:count])
        torch.mm(gathered[:count], taps[:, offset].T, out=product[:count])
        out.index_add_(0, output_rows, product[:count])
    return out


class SubmanifoldConvParameters(nn.Module):
    """The parameters of a submanifold convolution, named and shaped as spconv's ``SubMConv3d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(
            torch.empty(out_channels, kernel_size, kernel_size, kernel_size, in_channels)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        fan_in = in_channels * kernel_size**3
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)


def _wants_spconv() -> bool:
    choice = os.environ.get(_BACKEND_ENV, "torch").strip().lower() or "torch"
    if choice not in _BACKEND_CHOICES:
        raise ValueError(
            f"{_BACKEND_ENV}={choice!r} is not supported; use one of {', '.join(_BACKEND_CHOICES)}"
        )
    if choice != "spconv":
        return False
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        warnings.warn(f"{_BACKEND_ENV}=spconv but spconv cannot be imported; using PyTorch", stacklevel=3)
        return False
    return True


@contextmanager
def _spconv_cpu_call(module: nn.Module, device: torch.device) -> Iterator[None]:
    """On CPU: one thread, and spconv's training path (its CPU inference path rejects a bias)."""
    if device.type != "cpu":
        yield
        return
    threads, training = torch.get_num_threads(), module.training
    torch.set_num_threads(1)
    module.training = True
    try:
        yield
    finally:
        module.training = training
        torch.set_num_threads(threads)


class SparseConv3d(nn.Module):
    """Submanifold (stride 1) 3D convolution of a ``SparseTensor``, TRELLIS's ``sp.SparseConv3d`` interface.

    The neighbour map is built once per coordinate set and cached on the tensor's spatial cache.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        dilation: int | tuple[int, int, int] = 1,
        padding: int | None = None,
        bias: bool = True,
        indice_key: str | None = None,
    ) -> None:
        super().__init__()
        if _single(stride, "stride") != 1 or padding is not None:
            raise ValueError("only submanifold convolution is supported: stride 1 and padding None")
        self.kernel_size = _single(kernel_size, "kernel_size")
        self.dilation = _single(dilation, "dilation")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        self.uses_spconv = _wants_spconv()
        if self.uses_spconv:
            import spconv.pytorch as spconv

            self.conv = spconv.SubMConv3d(
                in_channels,
                out_channels,
                self.kernel_size,
                dilation=self.dilation,
                bias=bias,
                indice_key=indice_key,
            )
        else:
            self.conv = SubmanifoldConvParameters(in_channels, out_channels, self.kernel_size, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.uses_spconv:
            return x.replace(self._spconv_forward(x))
        kernel_map = x.cached_for_coords(
            f"submanifold_map_{self.kernel_size}_{self.dilation}",
            lambda: build_kernel_map(x.coords, self.kernel_size, self.dilation),
        )
        return x.replace(submanifold_conv3d(x.feats, kernel_map, self.conv.weight, self.conv.bias))

    def _spconv_forward(self, x: SparseTensor) -> torch.Tensor:
        import spconv.pytorch as spconv

        def wrap() -> spconv.SparseConvTensor:
            spatial_shape = (x.coords[:, 1:].amax(0) + 1).tolist()
            return spconv.SparseConvTensor(x.feats, x.coords, spatial_shape, x.batch_size)

        data = x.cached_for_coords("spconv_tensor", wrap).replace_feature(x.feats)
        with _spconv_cpu_call(self.conv, x.device):
            return self.conv(data).features
